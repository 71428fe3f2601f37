//! What the element counts, readable at any time from any thread (the
//! `stats` property) and posted as an element message when the stream
//! ends.

use std::sync::atomic::{AtomicU64, Ordering};

/// Relaxed counters: each is a tally read on its own, nothing is
/// published through them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Buffers pushed.
    pub buffers: AtomicU64,
    /// Buffers that wrap their frame in the ring (no copy).
    pub in_place: AtomicU64,
    /// Frames copied into a pool because downstream held `max-held`
    /// frames, or the held frames pinned half the ring.
    pub copied_held: AtomicU64,
    /// Frames copied because their planes are not where GStreamer expects
    /// them and downstream cannot read a `VideoMeta`.
    pub copied_layout: AtomicU64,
    /// In-place buffers that carry a `VideoMeta` (strides or plane offsets
    /// not GStreamer's defaults).
    pub video_meta: AtomicU64,
    /// Frames missing from the stream's numbering (dropped upstream).
    pub missing: AtomicU64,
    /// Buffers flagged `DISCONT`.
    pub discont: AtomicU64,
    /// Frames captured before the pipeline started, not pushed.
    pub before_start: AtomicU64,
    /// Frames whose capture time went backwards (pushed at the last PTS).
    pub backwards: AtomicU64,
    /// Records of other streams or kinds, stepped over.
    pub other_streams: AtomicU64,
    /// Frames whose media header was refused.
    pub invalid: AtomicU64,
    /// Records the ring refused as corrupt.
    pub corrupt: AtomicU64,
    /// Caps changes after the first.
    pub renegotiations: AtomicU64,
    /// Waits on the ring that `unlock` (flushing, stopping) cut short.
    pub interrupted_waits: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bump(counter: &AtomicU64) {
        Counters::add(counter, 1);
    }

    /// Every counter with its name in `stats`.
    fn named(&self) -> [(&'static str, &AtomicU64); 14] {
        [
            ("buffers", &self.buffers),
            ("in-place", &self.in_place),
            ("copied-held", &self.copied_held),
            ("copied-layout", &self.copied_layout),
            ("video-meta", &self.video_meta),
            ("missing", &self.missing),
            ("discont", &self.discont),
            ("before-start", &self.before_start),
            ("backwards", &self.backwards),
            ("other-streams", &self.other_streams),
            ("invalid", &self.invalid),
            ("corrupt", &self.corrupt),
            ("renegotiations", &self.renegotiations),
            ("interrupted-waits", &self.interrupted_waits),
        ]
    }

    /// A snapshot, as the `stats` property and the end-of-stream message
    /// give it.
    pub fn structure(&self) -> gst::Structure {
        let mut builder = gst::Structure::builder("shmringsrc-stats");
        for (name, counter) in self.named() {
            builder = builder.field(name, counter.load(Ordering::Relaxed));
        }
        builder.build()
    }

    pub fn reset(&self) {
        for (_, counter) in self.named() {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
