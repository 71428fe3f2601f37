//! The Python module `shmring`: a ring's frames as zero-copy buffers and
//! numpy arrays.
//!
//! ```python
//! import shmring
//!
//! with shmring.Consumer.create("cam", capacity=64 << 20) as consumer:
//!     for frame in consumer:            # waits without the GIL; Ctrl-C works
//!         if frame.media_kind == "video":
//!             y = frame.y               # height x width uint8, in the ring
//!             print(frame.stream, frame.label, frame.frame_number, y.mean())
//!         del frame                     # the ring space goes with the last borrower
//! ```
//!
//! Modules: `consumer` (receiving), `frame` (a received record and its
//! buffer export), `media` (the media header read at receipt), `arrays`
//! (numpy views over a frame), `producer` (sending and reserving), `wait`
//! (GIL-free, interruptible waits), `stats`, `errors`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod arrays;
mod consumer;
mod errors;
mod frame;
mod media;
mod producer;
mod stats;
mod wait;

use pyo3::prelude::*;

use crate::errors::OrRaise;

/// Takes the descriptors a parent passed this process: `spec` names them
/// ("MEMFD", optionally with a liveness token and descriptor), by default
/// `SHMRING_FD` does.
/// The Python API says they become the new handle's (closed with it).
fn inherited_fds(spec: Option<&str>) -> PyResult<shmring::RingFds> {
    match spec {
        // SAFETY: the caller hands these descriptors over, as the Python
        // API documents; `from_spec` checks that each one is open.
        Some(spec) => unsafe { shmring::RingFds::from_spec(spec) },
        // SAFETY: as above, for the descriptors `SHMRING_FD` names.
        None => unsafe { shmring::RingFds::from_env() },
    }
    .or_raise()
}

#[pymodule]
#[pyo3(name = "shmring")]
fn shmring_module(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<consumer::Consumer>()?;
    module.add_class::<frame::Frame>()?;
    module.add_class::<producer::Producer>()?;
    module.add_class::<producer::Reservation>()?;
    for (name, class) in errors::exceptions(py)?.all() {
        module.add(name, class.bind(py))?;
    }
    module.add("KIND_VIDEO", shmring_media::KIND_VIDEO)?;
    module.add("KIND_AUDIO", shmring_media::KIND_AUDIO)?;
    module.add("KIND_ANNOUNCE", shmring_media::KIND_ANNOUNCE)?;
    module.add("DEFAULT_MAX_FRAMES", consumer::DEFAULT_MAX_FRAMES)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
