//! The stream table: which streams a ring carries, named by their labels,
//! with per-stream counters. Announce records are taken by the ring's
//! consumer, so `stat` (another process, which must not consume anything)
//! cannot read them from the ring. The consumer publishes what it learned
//! instead, as a small JSON file beside the ring's rendezvous socket
//! (`RUNTIME_DIR/NAME.streams`, mode 0600, replaced atomically by rename
//! about once a second), and `stat`/`top` read that.
//!
//! Whatever `stat` reads there is hostile input: the file is opened without
//! following links and must be a regular file of ours no larger than
//! [`MAX_TABLE_BYTES`]; every field is type- and range-checked; a table
//! names the consumer (pid and generation) that wrote it and is shown only
//! while the ring's header names the same consumer, so a table left by a
//! crashed consumer is never passed off as current; labels are shown with
//! control characters escaped.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use serde_json::{json, Value};
use shmring_media::MAX_LABEL;

/// Largest table file `stat` reads.
pub const MAX_TABLE_BYTES: u64 = 1 << 20;
/// Most streams a table may list.
pub const MAX_STREAMS: usize = 4096;
/// The format word of the file.
const FORMAT: &str = "shmring-streams/1";
/// Longest format description and output name a row may carry.
const MAX_SHORT_TEXT: usize = 256;

/// What a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StreamKind {
    Video,
    Audio,
}

impl StreamKind {
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Video => "video",
            StreamKind::Audio => "audio",
        }
    }
}

/// One stream as the consumer has seen it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRow {
    pub id: u32,
    pub kind: StreamKind,
    /// The label of its announce record (`None`: never announced).
    pub label: Option<String>,
    /// Records received and their payload bytes.
    pub records: u64,
    pub bytes: u64,
    /// Frame numbers missing in the stream (lost before the consumer).
    pub missing: u64,
    /// Records the consumer used (recorded into a file) and dropped.
    pub used: u64,
    pub dropped: u64,
    /// `1280x720 I420`, `48000 Hz 2 ch`: what its latest record carried.
    pub format: String,
    /// Where it goes (a file name), if anywhere.
    pub output: Option<String>,
}

/// The table one consumer publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTable {
    pub consumer_pid: u32,
    pub consumer_generation: u64,
    /// Milliseconds since the consumer started consuming, when written.
    pub elapsed_ms: u64,
    pub streams: Vec<StreamRow>,
}

/// Where ring `name`'s table lives.
pub fn path(name: &str) -> PathBuf {
    shmring::runtime_dir().join(format!("{name}.streams"))
}

impl StreamTable {
    pub fn to_json(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .iter()
            .map(|s| {
                json!({
                    "id": s.id, "kind": s.kind.name(), "label": s.label, "records": s.records, "bytes": s.bytes,
                    "missing": s.missing, "used": s.used, "dropped": s.dropped, "format": s.format, "output": s.output,
                })
            })
            .collect();
        json!({
            "format": FORMAT,
            "consumer_pid": self.consumer_pid,
            "consumer_generation": self.consumer_generation,
            "elapsed_ms": self.elapsed_ms,
            "streams": streams,
        })
    }

    /// Checks and reads a table's text. Everything in it is untrusted.
    pub fn from_json(text: &[u8]) -> Result<StreamTable, String> {
        if text.len() as u64 > MAX_TABLE_BYTES {
            return Err(format!("larger than {MAX_TABLE_BYTES} bytes"));
        }
        let value: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(format!("not a {FORMAT} table"));
        }
        let number =
            |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).ok_or_else(|| format!("no number {key}"));
        let consumer_pid = u32::try_from(number(&value, "consumer_pid")?).map_err(|_| "consumer_pid out of range")?;
        let consumer_generation = number(&value, "consumer_generation")?;
        let elapsed_ms = number(&value, "elapsed_ms")?;
        let rows = value.get("streams").and_then(Value::as_array).ok_or("no streams array")?;
        if rows.len() > MAX_STREAMS {
            return Err(format!("more than {MAX_STREAMS} streams"));
        }
        let mut streams = Vec::with_capacity(rows.len());
        for row in rows {
            streams.push(row_from_json(row, &number)?);
        }
        Ok(StreamTable { consumer_pid, consumer_generation, elapsed_ms, streams })
    }

    /// Writes the table for ring `name`: a temporary file renamed over the
    /// last one, so a reader sees one whole table or the previous one.
    pub fn publish(&self, name: &str) -> io::Result<()> {
        let target = path(name);
        let temporary = target.with_extension(format!("streams.{}.tmp", std::process::id()));
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
        let written = file.write_all(self.to_json().to_string().as_bytes());
        drop(file);
        match written.and_then(|()| std::fs::rename(&temporary, &target)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                Err(e)
            }
        }
    }

    /// Reads ring `name`'s table: `Ok(None)` if there is none.
    pub fn read(name: &str) -> Result<Option<StreamTable>, String> {
        let path = path(name);
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path);
        let file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let meta = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        if !meta.is_file() || meta.uid() != uid {
            return Err(format!("{} is not a regular file of ours", path.display()));
        }
        let mut text = Vec::new();
        file.take(MAX_TABLE_BYTES + 1).read_to_end(&mut text).map_err(|e| format!("{}: {e}", path.display()))?;
        StreamTable::from_json(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Removes ring `name`'s table if this process wrote it.
    pub fn withdraw(name: &str) {
        if let Ok(Some(table)) = StreamTable::read(name) {
            if table.consumer_pid == std::process::id() {
                let _ = std::fs::remove_file(path(name));
            }
        }
    }
}

fn row_from_json(row: &Value, number: &dyn Fn(&Value, &str) -> Result<u64, String>) -> Result<StreamRow, String> {
    let id = u32::try_from(number(row, "id")?).map_err(|_| "stream id out of range")?;
    let kind = match row.get("kind").and_then(Value::as_str) {
        Some("video") => StreamKind::Video,
        Some("audio") => StreamKind::Audio,
        _ => return Err(format!("stream {id}: kind is neither video nor audio")),
    };
    let text = |key: &str, limit: usize| -> Result<Option<String>, String> {
        match row.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= limit => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(format!("stream {id}: {key} longer than {limit} bytes")),
            Some(_) => Err(format!("stream {id}: {key} is not a string")),
        }
    };
    Ok(StreamRow {
        id,
        kind,
        label: text("label", MAX_LABEL)?,
        records: number(row, "records")?,
        bytes: number(row, "bytes")?,
        missing: number(row, "missing")?,
        used: number(row, "used")?,
        dropped: number(row, "dropped")?,
        format: text("format", MAX_SHORT_TEXT)?.unwrap_or_default(),
        output: text("output", MAX_SHORT_TEXT)?,
    })
}

/// `text` for a terminal: control characters (escape sequences a hostile
/// label could carry) written as `\u{..}`, and at most `limit` characters
/// (an ellipsis marks the cut).
pub fn printable(text: &str, limit: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == limit {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StreamTable {
        StreamTable {
            consumer_pid: 42,
            consumer_generation: 3,
            elapsed_ms: 1500,
            streams: vec![StreamRow {
                id: 7,
                kind: StreamKind::Video,
                label: Some(r#"{"participant":"p1","kind":"video"}"#.into()),
                records: 30,
                bytes: 1 << 20,
                missing: 1,
                used: 29,
                dropped: 1,
                format: "1280x720 I420".into(),
                output: Some("participant-1.mp4".into()),
            }],
        }
    }

    #[test]
    fn a_table_reads_back_as_written() {
        let text = sample().to_json().to_string();
        assert_eq!(StreamTable::from_json(text.as_bytes()).unwrap(), sample());
    }

    #[test]
    fn hostile_tables_are_refused_with_a_reason() {
        let good = sample().to_json();
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut value = good.clone();
            edit(&mut value);
            StreamTable::from_json(value.to_string().as_bytes())
        };
        assert!(StreamTable::from_json(b"\xff\xfe").is_err());
        assert!(StreamTable::from_json(&vec![b' '; MAX_TABLE_BYTES as usize + 1]).is_err());
        assert!(with(&|v| v["format"] = json!("other/1")).is_err());
        assert!(with(&|v| v["consumer_pid"] = json!(-1)).is_err());
        assert!(with(&|v| v["consumer_pid"] = json!(u64::MAX)).is_err());
        assert!(with(&|v| v["streams"] = json!({})).is_err());
        assert!(with(&|v| v["streams"][0]["id"] = json!(1u64 << 40)).is_err());
        assert!(with(&|v| v["streams"][0]["kind"] = json!("smell")).is_err());
        assert!(with(&|v| v["streams"][0]["records"] = json!("many")).is_err());
        assert!(with(&|v| v["streams"][0]["label"] = json!("x".repeat(MAX_LABEL + 1))).is_err());
        assert!(with(&|v| v["streams"][0]["label"] = json!(5)).is_err());
        assert!(with(&|v| v["streams"][0]["format"] = json!("x".repeat(1000))).is_err());
        let many: Vec<Value> = (0..=MAX_STREAMS).map(|_| good["streams"][0].clone()).collect();
        assert!(with(&|v| v["streams"] = json!(many)).is_err());
        assert!(with(&|v| v["streams"][0]["label"] = Value::Null).unwrap().streams[0].label.is_none());
    }

    #[test]
    fn labels_cannot_drive_the_terminal() {
        assert_eq!(printable("a\x1b[2Jb\n", 100), "a\\u{1b}[2Jb\\u{a}");
        assert_eq!(printable("abcdef", 3), "abc…");
    }
}
