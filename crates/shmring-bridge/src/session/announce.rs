//! Naming the session's stream in the ring: an announce record (stream id,
//! kind and the label the page declared) before the stream's first frame,
//! and again when a declaration changes the kind or the label. When no
//! producer is free or the ring is full the announcement waits and is tried
//! again before the next frame and on every tick: it is never dropped.

use std::time::{SystemTime, UNIX_EPOCH};

use shmring_media::{Announcement, KIND_ANNOUNCE};

use super::Session;
use crate::connection::Env;
use crate::inflight::InFlight;
use crate::protocol::StreamSpec;
use crate::stats::Counters;

impl Session {
    /// After a declaration of `spec` with `label`: announce the stream
    /// unless it is already announced so.
    pub(super) fn declared(&mut self, spec: &StreamSpec, label: String, env: &mut Env<'_>) {
        let kind = spec.kind();
        let same = |a: &Announcement| a.kind == kind && a.label == label;
        if self.announced.as_ref().is_some_and(same) || self.to_announce.as_ref().is_some_and(same) {
            return;
        }
        let timestamp_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        self.to_announce = Some(Announcement { stream_id: self.stream_id, kind, timestamp_us, label });
        self.announce_if_pending(env);
    }

    /// Writes the waiting announcement, if there is one and room for it.
    pub(super) fn announce_if_pending(&mut self, env: &mut Env<'_>) {
        let Some(announcement) = &self.to_announce else { return };
        let Some(producer) = env.pool.take() else { return };
        let mut inflight = match InFlight::reserve(producer, announcement.payload_len(), KIND_ANNOUNCE) {
            Ok(inflight) => inflight,
            Err((producer, _)) => {
                env.pool.give_back(producer);
                return;
            }
        };
        match announcement.encode_into(inflight.bytes_mut()) {
            Ok(()) => {
                env.pool.give_back(inflight.commit());
                Counters::bump(&env.counters.announcements);
                self.announced = self.to_announce.take();
            }
            Err(error) => {
                // The label was checked when it was declared; never here.
                tracing::warn!(stream_id = self.stream_id, %error, "announcement not written");
                env.pool.give_back(inflight.abandon());
                self.to_announce = None;
            }
        }
    }
}
