//! A ring's counters as a dict with the fields, names and nesting of
//! `shmring stat --json`, so a script can read either (the stream table,
//! which only the command's consumers publish, aside).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use shmring::layout::{Geometry, FLAG_HUGEPAGES, LAYOUT_VERSION};
use shmring::Stats;

/// The snapshot as `stat --json` prints it.
pub fn stats_dict<'py>(py: Python<'py>, stats: &Stats, geometry: &Geometry) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("name", &stats.name)?;
    dict.set_item("layout_version", LAYOUT_VERSION)?;
    dict.set_item("capacity", stats.capacity)?;
    dict.set_item("header_size", geometry.header_size)?;
    dict.set_item("hugepages", geometry.flags & FLAG_HUGEPAGES != 0)?;
    dict.set_item("max_payload", stats.max_payload)?;
    dict.set_item("stall_timeout_us", geometry.stall_timeout_us)?;
    let cursors = PyDict::new(py);
    cursors.set_item("write", stats.write)?;
    cursors.set_item("peek", stats.peek)?;
    cursors.set_item("read", stats.read)?;
    dict.set_item("cursors", cursors)?;
    dict.set_item("fill_percent", stats.fill_percent())?;
    let consumer = PyDict::new(py);
    consumer.set_item("state", stats.consumer_state)?;
    consumer.set_item("pid", stats.consumer_pid)?;
    consumer.set_item("generation", stats.consumer_generation)?;
    dict.set_item("consumer", consumer)?;
    let counters = [
        ("committed_frames", stats.committed_frames),
        ("committed_bytes", stats.committed_bytes),
        ("consumed_frames", stats.consumed_frames),
        ("consumed_bytes", stats.consumed_bytes),
        ("drops", stats.drops),
        ("rejected", stats.rejected),
        ("skipped", stats.skipped),
        ("recovered", stats.recovered),
        ("corrupt", stats.corrupt),
        ("consumer_sleeps", stats.consumer_sleeps),
        ("data_posts", stats.data_posts),
        ("producer_waits", stats.producer_waits),
        ("space_posts", stats.space_posts),
        ("stalls", stats.stalls),
        ("stuck", stats.stuck),
        ("late", stats.late),
        ("killed", stats.killed),
    ];
    for (name, value) in counters {
        dict.set_item(name, value)?;
    }
    let producers = PyList::empty(py);
    for p in &stats.producers {
        let row = PyDict::new(py);
        row.set_item("slot", p.slot)?;
        row.set_item("pid", p.pid)?;
        row.set_item("frames", p.frames)?;
        row.set_item("bytes", p.bytes)?;
        row.set_item("drops", p.drops)?;
        row.set_item("rejected", p.rejected)?;
        row.set_item("last_claim", p.last_claim)?;
        row.set_item("unpublished", p.unpublished)?;
        producers.append(row)?;
    }
    dict.set_item("producers", producers)?;
    // `stat` reads a stream table that the command's own consumers publish
    // beside the socket; a Python consumer publishes none (its streams are
    // `Consumer.labels`), and `stat` says so the same way.
    dict.set_item("streams", py.None())?;
    dict.set_item(
        "streams_state",
        "unknown: no stream table (a Python consumer keeps its streams in Consumer.labels)",
    )?;
    Ok(dict)
}
