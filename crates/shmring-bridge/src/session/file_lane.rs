//! The file lane: the page writes each frame into its frame file (see
//! [`crate::frame_file`]) and sends only a small control message over the
//! WebSocket (position, length, frame number); the bridge reads the frame
//! with one `pread` straight into a reserved ring slot, checks it with
//! shmring-media's reader as it checks a binary message, and acknowledges
//! the bytes it has taken so the page may write over them.
//!
//! Control messages are hostile input like everything from the page: a
//! frame must lie inside the data region without crossing its end, start
//! at or after the end of the previous one (no overlap, no replay), have
//! the length its media header describes and the frame number its header
//! carries, which must go forward. A file truncated, resized or unlinked
//! under the bridge ends the session. Nothing partial is ever committed:
//! until every check has passed, the slot is a reservation that becomes a
//! skip record if it is given up.

use super::*;
use crate::frame_file::{self, FrameFile};
use crate::protocol::{ack_notice, file_notice, FrameControl};

/// An open file lane of one connection.
#[derive(Debug)]
pub(crate) struct FileLane {
    file: FrameFile,
    /// Data position the next frame may start at: everything before it has
    /// been taken.
    next: u64,
    /// What the last acknowledgement released.
    acked: u64,
}

/// Acknowledgements are sent once a quarter of the file has been taken
/// since the last one: a page always has most of its file to write into,
/// and pays for one small message every few frames, not every frame. (A
/// page needs no acknowledgement at the end: the close handshake comes
/// after every frame it announced.)
const ACK_FRACTION: u64 = 4;

impl Session {
    /// `{"type":"file"}`: finds the page's file and opens the lane, or
    /// tells the page why not (it then sends binary messages instead).
    pub(super) fn open_file_lane(
        &mut self,
        token: [u8; 16],
        size: u64,
        env: &mut Env<'_>,
        out: &mut Outbox,
    ) -> Result<(), End> {
        if self.file.is_some() {
            Counters::bump(&env.counters.bad_controls);
            return Err(close(code::INVALID_PAYLOAD, "a second file declaration on one stream"));
        }
        let started = Instant::now();
        match frame_file::find(&env.limits.profile_dirs, &token, size) {
            Ok(file) => {
                let warning = (!file.on_tmpfs).then_some(
                    "the frame file is not on tmpfs: its pages are written back to disk (put the browser's \
                     profile on tmpfs, e.g. under /dev/shm)",
                );
                if let Some(warning) = warning {
                    tracing::warn!(stream_id = self.stream_id, path = %file.path.display(), "{warning}");
                }
                tracing::debug!(
                    stream_id = self.stream_id,
                    path = %file.path.display(),
                    search_us = started.elapsed().as_micros() as u64,
                    "file lane open"
                );
                Counters::bump(&env.counters.file_lanes);
                frames::push_text(&file_notice(Ok((file.capacity(), warning))), &mut out.buf);
                self.file = Some(FileLane { file, next: 0, acked: 0 });
            }
            Err(error) => {
                tracing::debug!(stream_id = self.stream_id, %error, "no file lane");
                Counters::bump(&env.counters.file_lanes_refused);
                frames::push_text(&file_notice(Err(error.to_string())), &mut out.buf);
            }
        }
        Ok(())
    }

    /// `{"type":"frame"}`: reads the frame from the file into the ring.
    pub(super) fn on_file_frame(
        &mut self,
        control: FrameControl,
        env: &mut Env<'_>,
        out: &mut Outbox,
    ) -> Result<(), End> {
        let bad = |env: &mut Env<'_>, reason: String| {
            Counters::bump(&env.counters.bad_controls);
            Err(close(code::INVALID_PAYLOAD, reason))
        };
        let Some(lane) = &self.file else {
            return bad(env, "a frame control message, but no file lane is open".into());
        };
        let Some(spec) = self.spec else {
            return bad(env, "a frame control message before the stream was declared".into());
        };
        let FrameControl { position, length, frame_number } = control;
        let capacity = lane.file.capacity();
        let max = env.limits.max_message as u64;
        if length > max {
            Counters::bump(&env.counters.bad_controls);
            return Err(too_big(length, max));
        }
        if length < spec.header_len() as u64 {
            return bad(env, format!("frame of {length} bytes is shorter than its media header"));
        }
        if position < lane.next {
            return bad(
                env,
                format!("frame at {position} overlaps or repeats frames already taken (next free {})", lane.next),
            );
        }
        let offset = position % capacity;
        if offset + length > capacity {
            let reason =
                format!("frame of {length} bytes at {position} crosses the end of the {capacity}-byte data region");
            return bad(env, reason);
        }
        // The page may not write over bytes not yet taken, and everything
        // before `next` has been: a frame lies within one lap of it.
        if position - lane.next > capacity - length {
            let reason = format!("frame at {position} is more than one lap of the file ahead of {}", lane.next);
            return bad(env, reason);
        }
        if let Some(last) = self.last_frame_number.filter(|&last| frame_number <= last) {
            return bad(env, format!("frame number {frame_number} does not follow {last}"));
        }
        let released = position + length;
        self.last_frame_number = Some(frame_number);
        let plan = MessagePlan { len: length as usize, frame_number };

        self.announce_if_pending(env);
        let dropped = match env.pool.take() {
            None => {
                Counters::bump(&env.counters.dropped_busy);
                Some("no producer free")
            }
            Some(producer) => match InFlight::reserve(producer, plan.len, spec.kind()) {
                Ok(inflight) => {
                    self.read_file_frame(inflight, offset, plan, env)?;
                    None
                }
                Err((producer, error)) => {
                    env.pool.give_back(producer);
                    Some(self.refused_reservation(error, env)?)
                }
            },
        };
        let lane = self.file.as_mut().expect("checked above");
        lane.next = released;
        if released - lane.acked >= capacity / ACK_FRACTION {
            lane.acked = released;
            frames::push_text(&ack_notice(frame_number, released), &mut out.buf);
        }
        if let Some(reason) = dropped {
            self.note_drop(frame_number, reason, out);
        }
        Ok(())
    }

    /// Reads a frame into its slot, checks it, and commits it; on any
    /// failure the slot becomes a skip record and the session ends.
    fn read_file_frame(
        &mut self,
        mut inflight: InFlight,
        offset: u64,
        plan: MessagePlan,
        env: &mut Env<'_>,
    ) -> Result<(), End> {
        let lane = self.file.as_ref().expect("a file lane is open");
        let spec = self.spec.expect("declared");
        let give_up = |inflight: InFlight, env: &mut Env<'_>| {
            env.pool.give_back(inflight.abandon());
            Counters::bump(&env.counters.abandoned);
        };
        if let Err(lost) = lane.file.read_at(inflight.bytes_mut(), offset) {
            give_up(inflight, env);
            Counters::bump(&env.counters.file_errors);
            tracing::debug!(stream_id = self.stream_id, %lost, "file lane lost its file");
            return Err(close(code::INVALID_PAYLOAD, lost.to_string()));
        }
        let header_len = spec.header_len();
        let checked = match spec.plan(&inflight.bytes()[..header_len], env.limits.max_message) {
            Err(HeaderError::TooBig { len, max }) => Err(format!("its header describes {len} bytes, over {max}")),
            Err(HeaderError::Invalid(reason)) => Err(reason),
            Ok(found) if found.len != plan.len => {
                Err(format!("the control message says {} bytes, its header describes {}", plan.len, found.len))
            }
            Ok(found) if found.frame_number != plan.frame_number => Err(format!(
                "the control message says frame {}, its header says {}",
                plan.frame_number, found.frame_number
            )),
            Ok(_) => spec.verify(inflight.bytes()).map_err(|e| format!("bad media header: {e}")),
        };
        if let Err(reason) = checked {
            give_up(inflight, env);
            Counters::bump(&env.counters.bad_controls);
            return Err(close(code::INVALID_PAYLOAD, reason));
        }
        inflight.bytes_mut()[STREAM_ID_OFFSET..STREAM_ID_OFFSET + 4].copy_from_slice(&self.stream_id.to_ne_bytes());
        env.pool.give_back(inflight.commit());
        Counters::bump(&env.counters.messages);
        Counters::bump(&env.counters.file_messages);
        Counters::add(&env.counters.bytes, plan.len as u64);
        Ok(())
    }
}
