//! `shmringsrc`: a live source that pushes one video or audio stream of a
//! shmring ring into a pipeline, each buffer wrapping its frame where it
//! lies in the ring.
//!
//! ```text
//! gst-launch-1.0 -e shmringsrc ring=bot-17 stream=1 ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
//! ```
//!
//! - **Attach**: `ring` names a ring served by name (`shmring create`,
//!   or a consumer that died); `fd-spec` takes the descriptors of an
//!   inherited ring instead (written as in `SHMRING_FD`). The
//!   element becomes the ring's consumer.
//! - **Stream**: `kind` picks video or audio records; `stream` picks one
//!   stream of that kind by id, or by the label an announcement record gave
//!   it; empty follows the first one that shows up. Other records are
//!   stepped over (counted in `stats`).
//! - **Caps** come from each frame's media header: `video/x-raw` I420,
//!   NV12, RGBA or BGRA with the header's size and a frame rate read from
//!   the first two frames' capture times (0/1 when they are irregular);
//!   `audio/x-raw` F32LE non-interleaved (planar float) or S16LE
//!   interleaved with the header's rate and channels. A change of size or
//!   format renegotiates before the first buffer of the new shape, which is
//!   flagged `DISCONT`.
//! - **In place**: a buffer wraps its frame's planes in the ring
//!   (read-only memory, a `VideoMeta` where strides or plane offsets are
//!   not GStreamer's defaults, an `AudioMeta` for planar audio). When the
//!   last reference to the buffer goes, on any thread, the frame's ring
//!   space is released. When downstream already holds `max-held` frames,
//!   or the frames it holds pin half the ring, the next frames are copied
//!   into a pool instead (`copied-held` in `stats`), so a slow element
//!   cannot fill the ring; frames whose layout needs a `VideoMeta` that
//!   downstream cannot read are copied too (`copied-layout`).
//! - **Time**: producers stamp frames with their capture time on
//!   `CLOCK_MONOTONIC`. The element is a live source; each buffer's PTS is
//!   that capture time mapped onto the pipeline clock, minus the base time
//!   (frames captured before the pipeline started playing are not pushed:
//!   `before-start`). With `do-timestamp=true` the element sets no PTS and
//!   `GstBaseSrc` stamps each buffer with the running time at which it
//!   left the element (arrival time instead of capture time). A gap in a
//!   stream's frame numbers (frames dropped upstream) flags the next
//!   buffer `DISCONT` and is counted (`missing`). The latency query is
//!   answered with one frame (or audio chunk) as the minimum.
//! - **Ending**: `unlock` (flushing, stopping) interrupts a wait on the
//!   ring at once (`shmring::Interrupter`; counted, `interrupted-waits`). An error of the ring (a ring that refuses records
//!   again and again, a ring removed while nothing arrives, `timeout`
//!   without a frame) is posted as an error message with the library's
//!   text. With `eos-when-producers-leave`, the element ends the stream
//!   once every producer has left and the ring is drained.

use gst::glib;
use gst::prelude::*;

mod counters;
mod imp;
mod payload;
mod properties;
mod ring_stream;
mod settings;
mod shape;
mod streaming;
mod timing;

pub use settings::Kind;

glib::wrapper! {
    /// The `shmringsrc` element.
    pub struct ShmringSrc(ObjectSubclass<imp::ShmringSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// Registers `shmringsrc` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Kind::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "shmringsrc", gst::Rank::NONE, ShmringSrc::static_type())
}
