//! Waiting without holding the GIL, and without going deaf to Ctrl-C.
//!
//! A wait is cut into slices of at most [`SLICE`]: each slice runs with the
//! GIL released (other Python threads run meanwhile), and between slices
//! the GIL is taken back to run pending signal handlers, so a
//! `KeyboardInterrupt` arrives within one slice of Ctrl-C.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::errors::{raise, ring_error};

/// Why a wait ended without a value (made without the GIL, raised with it).
pub enum Failure {
    Ring(shmring::Error),
    Closed,
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> PyErr {
        match failure {
            Failure::Ring(error) => ring_error(error),
            Failure::Closed => raise(|e| &e.closed, "the consumer was closed"),
        }
    }
}

/// Longest stretch without a look at pending signals.
pub const SLICE: Duration = Duration::from_millis(50);

/// A timeout given in seconds by Python: `None` waits for ever.
pub fn seconds(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds or None, not {s}"
        ))),
    }
}

/// Calls `attempt(slice)` with the GIL released until it gives a value or
/// `timeout` passes (`Ok(None)`), checking signals between attempts: an
/// exception raised by a signal handler (`KeyboardInterrupt`) ends the
/// wait. `attempt` may wait up to its slice itself.
pub fn wait_for<T, F>(py: Python<'_>, timeout: Option<Duration>, mut attempt: F) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Duration) -> Result<Option<T>, Failure> + Send,
{
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                (deadline - now).min(SLICE)
            }
        };
        if let Some(value) = py.detach(|| attempt(slice))? {
            return Ok(Some(value));
        }
        py.check_signals()?;
    }
}
