//! Python exceptions for every error of the ring and of the media views,
//! carrying the Rust error's message word for word.
//!
//! `shmring.Error` is the base of them all. Where a builtin says the same
//! thing, the exception derives from it too (`shmring.BadName` is a
//! `ValueError`, `shmring.Timeout` a `TimeoutError`), so code that knows
//! nothing of shmring still catches what it expects.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// One exception class: its name, its builtin base besides `Error` (if
/// any), and what it means.
struct Class {
    name: &'static str,
    builtin: Option<&'static str>,
    doc: &'static str,
}

macro_rules! exceptions {
    ($($field:ident = $name:literal $(($builtin:literal))?: $doc:literal;)*) => {
        /// The exception classes, created once when the module is imported.
        pub struct Exceptions {
            /// `shmring.Error`, the base of the others.
            pub error: Py<PyType>,
            $(pub $field: Py<PyType>,)*
        }

        const CLASSES: &[Class] = &[$(Class { name: $name, builtin: exceptions!(@builtin $($builtin)?), doc: $doc },)*];

        impl Exceptions {
            fn build(py: Python<'_>) -> PyResult<Exceptions> {
                let error = PyErr::new_type(
                    py,
                    c"shmring.Error",
                    Some(c"Base class of every error raised by shmring."),
                    Some(&py.get_type::<PyException>()),
                    None,
                )?;
                let mut made = CLASSES.iter().map(|class| derive(py, error.bind(py), class));
                Ok(Exceptions {
                    $($field: made.next().expect("one class per field")?,)*
                    error,
                })
            }

            /// Every class with its Python name, to add to the module.
            pub fn all(&self) -> Vec<(&'static str, &Py<PyType>)> {
                let mut all = vec![("Error", &self.error)];
                let mut names = CLASSES.iter().map(|class| class.name);
                $(all.push((names.next().expect("one name per field"), &self.$field));)*
                all
            }
        }
    };
    (@builtin) => { None };
    (@builtin $builtin:literal) => { Some($builtin) };
}

exceptions! {
    bad_name = "BadName" ("ValueError"): "A ring name must be 1 to 48 ASCII letters, digits, '.', '_' or '-', not starting with '.'.";
    bad_capacity = "BadCapacity" ("ValueError"): "The capacity asked for cannot be a ring (a power of two, one page to 1 TiB).";
    not_a_ring = "NotARing": "The descriptor does not hold a shmring segment.";
    not_initialised = "NotInitialised": "The segment's creator had not finished writing its header; retry.";
    version_mismatch = "VersionMismatch": "The segment was made by an incompatible version of shmring.";
    bad_geometry = "BadGeometry": "The segment header's sizes contradict each other or this build.";
    bad_segment = "BadSegment": "The descriptor is not a sealed segment of the right size.";
    too_large = "TooLarge" ("ValueError"): "A payload larger than the ring's largest record.";
    full = "Full": "The ring is full and the producer's policy is to fail.";
    dropped = "Dropped": "The ring is full and the frame was dropped (and counted).";
    timeout = "Timeout" ("TimeoutError"): "Waiting for a frame or for space took longer than allowed.";
    consumer_gone = "ConsumerGone": "The consumer process is gone: stop sending, or wait for a new one.";
    too_many_producers = "TooManyProducers": "Every producer slot of the ring is taken.";
    corrupt = "Corrupt": "The segment holds something the consumer refuses to trust; it was counted and stepped over.";
    in_use = "InUse": "The ring already has a live owner (or consumer).";
    permission_denied = "PermissionDenied" ("PermissionError"): "A peer was refused by the rendezvous socket, or refused us.";
    bad_descriptor_spec = "BadDescriptorSpec" ("ValueError"): "A descriptor spec (SHMRING_FD) could not be parsed.";
    os_error = "OsError" ("OSError"): "An operating-system call failed.";
    too_many_held = "TooManyHeld": "The consumer holds as many frames as it may (max_frames): release or delete some, or copy frames out.";
    media_error = "MediaError" ("ValueError"): "A media record's header is impossible, or a frame is not of the kind asked for.";
    released = "Released" ("ValueError"): "The frame (or reservation) was released: its bytes are no longer reachable.";
    exported = "Exported" ("BufferError"): "The frame (or reservation) is still borrowed by a memoryview or array.";
    closed = "Closed" ("ValueError"): "The consumer or producer was closed.";
}

/// `class` as a subclass of `error` (and of its builtin, if any).
fn derive(py: Python<'_>, error: &Bound<'_, PyType>, class: &Class) -> PyResult<Py<PyType>> {
    let builtins = py.import("builtins")?;
    let bases = match class.builtin {
        Some(builtin) => PyTuple::new(py, [error.as_any().clone(), builtins.getattr(builtin)?])?,
        None => PyTuple::new(py, [error.as_any().clone()])?,
    };
    let namespace = PyDict::new(py);
    namespace.set_item("__doc__", class.doc)?;
    namespace.set_item("__module__", "shmring")?;
    let made = builtins.getattr("type")?.call1((class.name, bases, namespace))?;
    Ok(made.cast_into::<PyType>()?.unbind())
}

static EXCEPTIONS: PyOnceLock<Exceptions> = PyOnceLock::new();

/// The exception classes (made on first use).
pub fn exceptions(py: Python<'_>) -> PyResult<&'static Exceptions> {
    EXCEPTIONS.get_or_try_init(py, || Exceptions::build(py))
}

/// An exception of class `pick(..)` with `message`.
pub fn raise(pick: impl FnOnce(&Exceptions) -> &Py<PyType>, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| match exceptions(py) {
        Ok(classes) => PyErr::from_type(pick(classes).bind(py).clone(), message),
        Err(e) => e,
    })
}

/// A ring error as its Python exception, with the same message.
pub fn ring_error(error: shmring::Error) -> PyErr {
    use shmring::Error as E;
    let message = error.to_string();
    let pick: fn(&Exceptions) -> &Py<PyType> = match error {
        E::BadName { .. } => |e| &e.bad_name,
        E::BadCapacity { .. } => |e| &e.bad_capacity,
        E::NotARing { .. } => |e| &e.not_a_ring,
        E::NotInitialised => |e| &e.not_initialised,
        E::VersionMismatch { .. } => |e| &e.version_mismatch,
        E::BadGeometry { .. } => |e| &e.bad_geometry,
        E::BadSegment { .. } => |e| &e.bad_segment,
        E::TooLarge { .. } => |e| &e.too_large,
        E::Full => |e| &e.full,
        E::Dropped => |e| &e.dropped,
        E::Timeout => |e| &e.timeout,
        E::ConsumerGone { .. } => |e| &e.consumer_gone,
        E::TooManyProducers { .. } => |e| &e.too_many_producers,
        E::Corrupt { .. } => |e| &e.corrupt,
        E::InUse { .. } => |e| &e.in_use,
        E::PermissionDenied { .. } => |e| &e.permission_denied,
        E::BadDescriptorSpec { .. } => |e| &e.bad_descriptor_spec,
        E::TooManyHeld { .. } => |e| &e.too_many_held,
        E::Os { .. } => |e| &e.os_error,
        _ => |e| &e.error,
    };
    raise(pick, message)
}

/// A media error as `shmring.MediaError` (or, for a ring error inside it,
/// as that ring error), with the same message.
pub fn media_error(error: shmring_media::MediaError) -> PyErr {
    match error {
        shmring_media::MediaError::Ring(ring) => ring_error(ring),
        other => raise(|e| &e.media_error, other.to_string()),
    }
}

/// Ring and media results as Python results: `result.or_raise()?`.
pub trait OrRaise<T> {
    /// The value, or the Python exception for the error.
    fn or_raise(self) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, shmring::Error> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(ring_error)
    }
}

impl<T> OrRaise<T> for Result<T, shmring_media::MediaError> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(media_error)
    }
}
