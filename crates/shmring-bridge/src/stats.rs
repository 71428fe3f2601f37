//! The bridge's counters: one set per thread (each on its own cache line,
//! written by that thread only, with relaxed increments: they order
//! nothing), summed into a [`BridgeStats`] snapshot on demand.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use serde::Serialize;

/// Close codes counted one by one: 1000 ..= 1015.
const CODES: usize = 16;

#[derive(Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub closed: AtomicU64,
    pub upgrades: AtomicU64,
    pub pages_served: AtomicU64,
    pub bad_requests: AtomicU64,
    pub declarations: AtomicU64,
    pub announcements: AtomicU64,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_busy: AtomicU64,
    pub abandoned: AtomicU64,
    pub message_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub disconnects: AtomicU64,
    pub client_closes: AtomicU64,
    pub consumer_gone: AtomicU64,
    pub file_lanes: AtomicU64,
    pub file_lanes_refused: AtomicU64,
    pub file_messages: AtomicU64,
    pub file_errors: AtomicU64,
    pub bad_controls: AtomicU64,
    pub in_flight: AtomicU64,
    pub producers: AtomicU64,
    closes_sent: [AtomicU64; CODES],
    closes_sent_other: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: a statistic, read by snapshots only; orders nothing.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub(crate) fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }

    pub(crate) fn close_sent(&self, code: u16) {
        match code.checked_sub(1000).map(usize::from).filter(|&i| i < CODES) {
            Some(i) => Self::bump(&self.closes_sent[i]),
            None => Self::bump(&self.closes_sent_other),
        }
    }
}

/// Counters of every thread of one bridge.
pub(crate) struct Registry {
    threads: Vec<CachePadded<Counters>>,
}

impl Registry {
    pub(crate) fn new(threads: usize) -> Registry {
        Registry { threads: (0..threads).map(|_| CachePadded::new(Counters::default())).collect() }
    }

    pub(crate) fn thread(&self, index: usize) -> &Counters {
        &self.threads[index]
    }

    /// Connections accepted and not yet closed, over all threads.
    pub(crate) fn open_connections(&self) -> u64 {
        // Relaxed: see `Counters::add`; an estimate is enough for a limit.
        let sum =
            |f: fn(&Counters) -> &AtomicU64| -> u64 { self.threads.iter().map(|c| f(c).load(Ordering::Relaxed)).sum() };
        sum(|c| &c.accepted).saturating_sub(sum(|c| &c.closed))
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        let load = |f: fn(&Counters) -> &AtomicU64| -> u64 {
            // Relaxed: see `Counters::add`.
            self.threads.iter().map(|c| f(c).load(Ordering::Relaxed)).sum()
        };
        let accepted = load(|c| &c.accepted);
        let closed = load(|c| &c.closed);
        let mut closes_sent: Vec<CloseCount> = (0..CODES)
            .map(|i| CloseCount {
                code: 1000 + i as u16,
                count: self.threads.iter().map(|c| c.closes_sent[i].load(Ordering::Relaxed)).sum(),
            })
            .filter(|c| c.count > 0)
            .collect();
        let other = load(|c| &c.closes_sent_other);
        if other > 0 {
            closes_sent.push(CloseCount { code: 0, count: other });
        }
        BridgeStats {
            connections_open: accepted.saturating_sub(closed),
            connections_accepted: accepted,
            connections_refused: load(|c| &c.refused),
            upgrades: load(|c| &c.upgrades),
            pages_served: load(|c| &c.pages_served),
            bad_requests: load(|c| &c.bad_requests),
            declarations: load(|c| &c.declarations),
            announcements: load(|c| &c.announcements),
            messages: load(|c| &c.messages),
            bytes: load(|c| &c.bytes),
            dropped_full: load(|c| &c.dropped_full),
            dropped_busy: load(|c| &c.dropped_busy),
            abandoned: load(|c| &c.abandoned),
            message_timeouts: load(|c| &c.message_timeouts),
            idle_timeouts: load(|c| &c.idle_timeouts),
            handshake_timeouts: load(|c| &c.handshake_timeouts),
            disconnects: load(|c| &c.disconnects),
            client_closes: load(|c| &c.client_closes),
            consumer_gone: load(|c| &c.consumer_gone),
            file_lanes: load(|c| &c.file_lanes),
            file_lanes_refused: load(|c| &c.file_lanes_refused),
            file_messages: load(|c| &c.file_messages),
            file_errors: load(|c| &c.file_errors),
            bad_controls: load(|c| &c.bad_controls),
            in_flight: load(|c| &c.in_flight),
            producers: load(|c| &c.producers),
            closes_sent,
        }
    }
}

/// How many closes the bridge sent with one code (0: codes outside
/// 1000..=1015).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CloseCount {
    pub code: u16,
    pub count: u64,
}

/// A snapshot of a bridge's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BridgeStats {
    /// Connections open now (HTTP, WebSocket and closing; a `/stats`
    /// request counts itself).
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused at accept (over `max_connections`).
    pub connections_refused: u64,
    /// Completed WebSocket handshakes.
    pub upgrades: u64,
    /// Plain HTTP requests answered (the page, the client, `/stats`).
    pub pages_served: u64,
    /// Requests refused: malformed, too long, unknown path, wrong origin,
    /// bad upgrade.
    pub bad_requests: u64,
    /// Stream declarations accepted.
    pub declarations: u64,
    /// Announce records written (one per stream, and one more per change
    /// of kind or label).
    pub announcements: u64,
    /// Messages committed to the ring as records.
    pub messages: u64,
    /// Payload bytes of those records.
    pub bytes: u64,
    /// Messages dropped because the ring was full (the client was told).
    pub dropped_full: u64,
    /// Messages dropped because no producer slot was free.
    pub dropped_busy: u64,
    /// Reservations published as skip records: a message that broke off
    /// (timeout, protocol error, disconnect) after its slot was reserved.
    pub abandoned: u64,
    /// Messages not completed within `message_timeout`.
    pub message_timeouts: u64,
    /// Connections closed for silence.
    pub idle_timeouts: u64,
    /// Connections that did not finish their HTTP request in time.
    pub handshake_timeouts: u64,
    /// Connections that ended without a close frame (EOF or reset).
    pub disconnects: u64,
    /// Close frames received from clients.
    pub client_closes: u64,
    /// Reservations refused because the ring's consumer is gone.
    pub consumer_gone: u64,
    /// File lanes opened: the page's frame file was found.
    pub file_lanes: u64,
    /// File declarations refused (no profile directory, file not found):
    /// those pages send binary messages instead.
    pub file_lanes_refused: u64,
    /// Records read from a page's frame file (part of `messages`).
    pub file_messages: u64,
    /// Sessions ended because their frame file was truncated, resized,
    /// removed or replaced.
    pub file_errors: u64,
    /// Sessions ended over a hostile file-lane control message (out of
    /// range, overlapping, replayed, stale, or disagreeing with the frame's
    /// header).
    pub bad_controls: u64,
    /// Messages in flight now (each holds a producer slot).
    pub in_flight: u64,
    /// Producer slots the bridge holds.
    pub producers: u64,
    /// Close frames the bridge sent, by code.
    pub closes_sent: Vec<CloseCount>,
}

impl BridgeStats {
    /// Close frames the bridge sent with `code`.
    pub fn closes_with(&self, code: u16) -> u64 {
        self.closes_sent.iter().filter(|c| c.code == code).map(|c| c.count).sum()
    }
}
