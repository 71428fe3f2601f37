//! `stat` and `top`: a ring's state read from another process through a
//! read-only mapping, so looking never disturbs the ring.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use shmring::layout::{Geometry, FLAG_HUGEPAGES, LAYOUT_VERSION};
use shmring::{RingFds, RingView, Stats};

use crate::cli::{StatArgs, StatFormat, TopArgs};
use crate::failure::{Failure, Outcome};
use crate::size::{human_bytes, human_capacity};
use crate::stream_table::{printable, StreamTable};

/// What `stat` knows of a ring's streams: the table its consumer publishes
/// (see [`crate::stream_table`]).
#[derive(Clone, Debug)]
pub enum StreamsSeen {
    /// The consumer attached now (or the last one, closed) published it.
    Current(StreamTable),
    /// No table, or one left by another consumer.
    Unknown(&'static str),
    /// A table that failed the checks.
    Invalid(String),
}

impl StreamsSeen {
    pub fn read(stats: &Stats) -> StreamsSeen {
        match StreamTable::read(&stats.name) {
            Ok(None) => StreamsSeen::Unknown("the consumer publishes none"),
            Ok(Some(table))
                if table.consumer_pid == stats.consumer_pid
                    && table.consumer_generation == stats.consumer_generation
                    && stats.consumer_state != "none" =>
            {
                StreamsSeen::Current(table)
            }
            Ok(Some(_)) => StreamsSeen::Unknown("the table there is another consumer's"),
            Err(reason) => StreamsSeen::Invalid(reason),
        }
    }

    fn table(&self) -> Option<&StreamTable> {
        match self {
            StreamsSeen::Current(table) => Some(table),
            _ => None,
        }
    }
}

/// Longest label `stat` and `top` print (`--json` has them whole).
const LABEL_COLUMN: usize = 72;

/// Maps ring `name` read-only, through its rendezvous socket.
pub fn open_view(name: &str) -> Result<RingView, Failure> {
    shmring::validate_name(name).map_err(|e| Failure::ring(name, e))?;
    let fds = RingFds::request(name).map_err(|e| Failure::ring(name, e))?;
    RingView::open(&fds.memfd).map_err(|e| Failure::ring(name, e))
}

pub fn stat(args: StatArgs) -> Outcome {
    let view = open_view(&args.name)?;
    let stats = view.stats();
    let streams = StreamsSeen::read(&stats);
    let text = match args.format() {
        StatFormat::Text => text(&stats, view.geometry(), &streams),
        StatFormat::Json => {
            serde_json::to_string_pretty(&json(&stats, view.geometry(), &streams)).expect("json") + "\n"
        }
        StatFormat::Prometheus => prometheus(&stats, &streams),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn pages(geometry: &Geometry) -> &'static str {
    if geometry.flags & FLAG_HUGEPAGES != 0 {
        "huge pages"
    } else {
        "normal pages"
    }
}

fn consumer_line(stats: &Stats) -> String {
    match stats.consumer_state {
        "attached" => format!("pid {} attached (consumer #{})", stats.consumer_pid, stats.consumer_generation),
        "closed" => format!("none (the last one, pid {}, closed)", stats.consumer_pid),
        _ => "none yet".to_string(),
    }
}

/// The human-readable view.
pub fn text(stats: &Stats, geometry: &Geometry, streams: &StreamsSeen) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ring        {} (layout v{LAYOUT_VERSION}, {} of data, {} header, {})",
        stats.name,
        human_capacity(stats.capacity),
        human_capacity(geometry.header_size),
        pages(geometry)
    );
    let _ = writeln!(out, "consumer    {}", consumer_line(stats));
    let _ = writeln!(
        out,
        "cursors     write {}  peek {}  read {}  (fill {:.1}%, largest record {} B)",
        stats.write,
        stats.peek,
        stats.read,
        stats.fill_percent(),
        stats.max_payload
    );
    let _ = writeln!(
        out,
        "frames      {} committed ({}), {} consumed ({})",
        stats.committed_frames,
        human_bytes(stats.committed_bytes),
        stats.consumed_frames,
        human_bytes(stats.consumed_bytes)
    );
    let _ = writeln!(
        out,
        "lost        {} dropped when full, {} refused, {} skipped, {} recovered, {} corrupt",
        stats.drops, stats.rejected, stats.skipped, stats.recovered, stats.corrupt
    );
    let _ = writeln!(
        out,
        "stalls      {} claims held past the stall timeout by live producers, {} stuck now, {} delivered late, {} stuck producers killed",
        stats.stalls, stats.stuck, stats.late, stats.killed
    );
    let _ = writeln!(
        out,
        "signalling  consumer slept {} times ({} wake-ups); producers waited {} times ({} wake-ups)",
        stats.consumer_sleeps, stats.data_posts, stats.producer_waits, stats.space_posts
    );
    let _ = writeln!(out, "producers   {}", stats.producers.len());
    if !stats.producers.is_empty() {
        let _ = writeln!(
            out,
            "  {:>4}  {:>8}  {:>10}  {:>10}  {:>8}  {:>8}",
            "slot", "pid", "frames", "bytes", "drops", "refused"
        );
        for p in &stats.producers {
            let _ = writeln!(
                out,
                "  {:>4}  {:>8}  {:>10}  {:>10}  {:>8}  {:>8}",
                p.slot,
                p.pid,
                p.frames,
                human_bytes(p.bytes),
                p.drops,
                p.rejected
            );
        }
    }
    stream_rows(&mut out, streams);
    out
}

/// The `streams` part of `stat`.
fn stream_rows(out: &mut String, streams: &StreamsSeen) {
    let table = match streams {
        StreamsSeen::Current(table) => table,
        StreamsSeen::Unknown(why) => {
            let _ = writeln!(out, "streams     unknown ({why})");
            return;
        }
        StreamsSeen::Invalid(why) => {
            let _ = writeln!(out, "streams     unknown (refused the consumer's table: {})", printable(why, 200));
            return;
        }
    };
    let _ =
        writeln!(out, "streams     {} (as the consumer, pid {}, names them)", table.streams.len(), table.consumer_pid);
    if table.streams.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:>6}  {:<5}  {:>8}  {:>10}  {:>7}  {:>8}  {:>7}  {:<15}  {:<22}  label",
        "stream", "kind", "records", "bytes", "missing", "recorded", "dropped", "format", "output"
    );
    for s in &table.streams {
        let _ = writeln!(
            out,
            "  {:>6}  {:<5}  {:>8}  {:>10}  {:>7}  {:>8}  {:>7}  {:<15}  {:<22}  {}",
            s.id,
            s.kind.name(),
            s.records,
            human_bytes(s.bytes),
            s.missing,
            s.used,
            s.dropped,
            printable(&s.format, 15),
            printable(s.output.as_deref().unwrap_or("-"), 22),
            s.label.as_deref().map_or("(not announced)".to_string(), |l| printable(l, LABEL_COLUMN))
        );
    }
}

/// The JSON view: every counter, raw numbers.
pub fn json(stats: &Stats, geometry: &Geometry, streams: &StreamsSeen) -> serde_json::Value {
    let stream_rows = match streams {
        StreamsSeen::Current(table) => table.to_json()["streams"].clone(),
        _ => serde_json::Value::Null,
    };
    let streams_state = match streams {
        StreamsSeen::Current(_) => "known".to_string(),
        StreamsSeen::Unknown(why) => format!("unknown: {why}"),
        StreamsSeen::Invalid(why) => format!("refused: {why}"),
    };
    let producers: Vec<_> = stats
        .producers
        .iter()
        .map(|p| {
            serde_json::json!({
                "slot": p.slot, "pid": p.pid, "frames": p.frames, "bytes": p.bytes,
                "drops": p.drops, "rejected": p.rejected, "last_claim": p.last_claim,
                "unpublished": p.unpublished,
            })
        })
        .collect();
    serde_json::json!({
        "name": stats.name,
        "layout_version": LAYOUT_VERSION,
        "capacity": stats.capacity,
        "header_size": geometry.header_size,
        "hugepages": geometry.flags & FLAG_HUGEPAGES != 0,
        "max_payload": stats.max_payload,
        "stall_timeout_us": geometry.stall_timeout_us,
        "cursors": { "write": stats.write, "peek": stats.peek, "read": stats.read },
        "fill_percent": stats.fill_percent(),
        "consumer": {
            "state": stats.consumer_state, "pid": stats.consumer_pid, "generation": stats.consumer_generation,
        },
        "committed_frames": stats.committed_frames,
        "committed_bytes": stats.committed_bytes,
        "consumed_frames": stats.consumed_frames,
        "consumed_bytes": stats.consumed_bytes,
        "drops": stats.drops,
        "rejected": stats.rejected,
        "skipped": stats.skipped,
        "recovered": stats.recovered,
        "corrupt": stats.corrupt,
        "consumer_sleeps": stats.consumer_sleeps,
        "data_posts": stats.data_posts,
        "producer_waits": stats.producer_waits,
        "space_posts": stats.space_posts,
        "stalls": stats.stalls,
        "stuck": stats.stuck,
        "late": stats.late,
        "killed": stats.killed,
        "producers": producers,
        "streams": stream_rows,
        "streams_state": streams_state,
    })
}

/// The Prometheus text exposition format.
pub fn prometheus(stats: &Stats, streams: &StreamsSeen) -> String {
    let ring = &stats.name;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP shmring_{name} {help}\n# TYPE shmring_{name} {kind}");
        let _ = writeln!(out, "shmring_{name}{{ring=\"{ring}\"}} {value}");
    };
    metric("capacity_bytes", "gauge", "Data capacity of the ring.", stats.capacity as f64);
    metric("fill_ratio", "gauge", "Bytes claimed and not yet released, over capacity.", stats.fill_percent() / 100.0);
    metric(
        "consumer_attached",
        "gauge",
        "1 while a consumer is attached.",
        f64::from(stats.consumer_state == "attached"),
    );
    metric("producers", "gauge", "Producers attached.", stats.producers.len() as f64);
    metric("stuck_records", "gauge", "Records a live producer holds past the stall timeout.", stats.stuck as f64);
    let counters: [(&str, &str, u64); 15] = [
        ("committed_frames_total", "Records published by producers.", stats.committed_frames),
        ("committed_bytes_total", "Payload bytes published by producers.", stats.committed_bytes),
        ("consumed_frames_total", "Records handed to the consumer.", stats.consumed_frames),
        ("consumed_bytes_total", "Payload bytes handed to the consumer.", stats.consumed_bytes),
        ("dropped_frames_total", "Frames dropped because the ring was full.", stats.drops),
        ("rejected_frames_total", "Sends refused because the ring was full.", stats.rejected),
        ("skipped_records_total", "Reservations dropped without commit.", stats.skipped),
        ("recovered_records_total", "Records of producers that died mid-write.", stats.recovered),
        ("corrupt_records_total", "Corrupt records or cursors found by the consumer.", stats.corrupt),
        ("consumer_sleeps_total", "Times the consumer slept waiting for data.", stats.consumer_sleeps),
        ("data_posts_total", "Times a producer woke the consumer.", stats.data_posts),
        ("producer_waits_total", "Times a producer slept waiting for space.", stats.producer_waits),
        ("stalls_total", "Claims live producers held past the stall timeout.", stats.stalls),
        ("late_records_total", "Records committed after later ones were delivered.", stats.late),
        ("killed_producers_total", "Stuck producers the consumer killed.", stats.killed),
    ];
    for (name, help, value) in counters {
        metric(name, "counter", help, value as f64);
    }
    type Counter = fn(&shmring::ProducerStats) -> u64;
    let per_producer: [(&str, &str, Counter); 3] = [
        ("producer_frames_total", "Records published by one producer.", |p| p.frames),
        ("producer_bytes_total", "Payload bytes published by one producer.", |p| p.bytes),
        ("producer_dropped_frames_total", "Frames one producer dropped on a full ring.", |p| p.drops),
    ];
    for (name, help, value) in per_producer {
        let _ = writeln!(out, "# HELP shmring_{name} {help}\n# TYPE shmring_{name} counter");
        for p in &stats.producers {
            let _ =
                writeln!(out, "shmring_{name}{{ring=\"{ring}\",slot=\"{}\",pid=\"{}\"}} {}", p.slot, p.pid, value(p));
        }
    }
    // Labels stay out of metric labels (unbounded, producer-chosen text):
    // streams are named by id and kind.
    type StreamCounter = fn(&crate::stream_table::StreamRow) -> u64;
    let per_stream: [(&str, &str, StreamCounter); 4] = [
        ("stream_records_total", "Records of one stream the consumer received.", |s| s.records),
        ("stream_bytes_total", "Payload bytes of one stream the consumer received.", |s| s.bytes),
        ("stream_missing_total", "Frame numbers missing in one stream (lost upstream).", |s| s.missing),
        ("stream_dropped_total", "Records of one stream the consumer dropped.", |s| s.dropped),
    ];
    if let Some(table) = streams.table() {
        for (name, help, value) in per_stream {
            let _ = writeln!(out, "# HELP shmring_{name} {help}\n# TYPE shmring_{name} counter");
            for s in &table.streams {
                let _ = writeln!(
                    out,
                    "shmring_{name}{{ring=\"{ring}\",stream=\"{}\",kind=\"{}\"}} {}",
                    s.id,
                    s.kind.name(),
                    value(s)
                );
            }
        }
    }
    out
}

pub fn top(args: TopArgs) -> Outcome {
    let view = open_view(&args.name)?;
    let tty = std::io::stdout().is_terminal();
    let stats = view.stats();
    let mut before = (Instant::now(), StreamsSeen::read(&stats), stats);
    let mut refreshes = 0;
    while args.count.is_none_or(|count| refreshes < count) {
        std::thread::sleep(args.interval);
        let stats = view.stats();
        let now = (Instant::now(), StreamsSeen::read(&stats), stats);
        let mut screen = top_screen(&before.2, &now.2, now.0.duration_since(before.0).as_secs_f64());
        screen.push_str(&top_streams(&before.1, &now.1));
        let mut stdout = std::io::stdout().lock();
        if tty {
            // Home and clear: one screen that refreshes in place.
            stdout.write_all(b"\x1b[H\x1b[2J")?;
        } else if refreshes > 0 {
            stdout.write_all(b"\n")?;
        }
        stdout.write_all(screen.as_bytes())?;
        stdout.flush()?;
        before = now;
        refreshes += 1;
    }
    Ok(())
}

/// The per-stream part of a `top` refresh: rates between two tables (over
/// the time the consumer says passed between them).
pub fn top_streams(before: &StreamsSeen, now: &StreamsSeen) -> String {
    let mut out = String::new();
    let Some(table) = now.table() else {
        let mut why = String::new();
        stream_rows(&mut why, now);
        return why;
    };
    let old = before.table().filter(|old| old.consumer_pid == table.consumer_pid);
    let seconds = old.map_or(0.0, |old| table.elapsed_ms.saturating_sub(old.elapsed_ms) as f64 / 1e3);
    let _ = writeln!(
        out,
        "{:>6}  {:<5}  {:>9}  {:>8}  {:>8}  {:>7}  {:<15}  label",
        "stream", "kind", "records/s", "MB/s", "records", "dropped", "format"
    );
    for s in &table.streams {
        let previous = old.and_then(|old| old.streams.iter().find(|o| o.id == s.id));
        let rate = |now: u64, then: Option<u64>| match then {
            Some(then) if seconds > 0.0 => now.saturating_sub(then) as f64 / seconds,
            _ => 0.0,
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<5}  {:>9.1}  {:>8.1}  {:>8}  {:>7}  {:<15}  {}",
            s.id,
            s.kind.name(),
            rate(s.records, previous.map(|p| p.records)),
            rate(s.bytes, previous.map(|p| p.bytes)) / 1e6,
            s.records,
            s.dropped,
            printable(&s.format, 15),
            s.label.as_deref().map_or("(not announced)".to_string(), |l| printable(l, LABEL_COLUMN))
        );
    }
    out
}

/// One refresh of `top`: rates over the last `seconds`.
pub fn top_screen(before: &Stats, now: &Stats, seconds: f64) -> String {
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds.max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ring {}  {}  fill {:.1}%  consumer {}",
        now.name,
        human_capacity(now.capacity),
        now.fill_percent(),
        consumer_line(now)
    );
    let _ = writeln!(
        out,
        "in   {:>8.1} frames/s {:>9.1} MB/s    out {:>8.1} frames/s {:>9.1} MB/s",
        rate(before.committed_frames, now.committed_frames),
        rate(before.committed_bytes, now.committed_bytes) / 1e6,
        rate(before.consumed_frames, now.consumed_frames),
        rate(before.consumed_bytes, now.consumed_bytes) / 1e6
    );
    let _ = writeln!(
        out,
        "lost {:>8.1} drops/s  (total {} dropped, {} refused, {} skipped, {} recovered, {} corrupt)",
        rate(before.drops, now.drops),
        now.drops,
        now.rejected,
        now.skipped,
        now.recovered,
        now.corrupt
    );
    let _ = writeln!(
        out,
        "wait {:>8.1} consumer sleeps/s {:>8.1} producer waits/s",
        rate(before.consumer_sleeps, now.consumer_sleeps),
        rate(before.producer_waits, now.producer_waits)
    );
    let _ = writeln!(
        out,
        "{:>4}  {:>8}  {:>10}  {:>10}  {:>10}  {:>8}",
        "slot", "pid", "frames/s", "MB/s", "frames", "drops"
    );
    for p in &now.producers {
        let old = before.producers.iter().find(|o| o.slot == p.slot && o.pid == p.pid);
        let (frames, bytes) = old.map_or((p.frames, p.bytes), |o| (o.frames, o.bytes));
        let _ = writeln!(
            out,
            "{:>4}  {:>8}  {:>10.1}  {:>10.1}  {:>10}  {:>8}",
            p.slot,
            p.pid,
            rate(frames, p.frames),
            rate(bytes, p.bytes) / 1e6,
            p.frames,
            p.drops
        );
    }
    out
}
