//! The WebSocket payload lane: each binary message is one frame, read from
//! the socket straight into its reserved ring slot.
//!
//! Once a message's media header has been checked and its slot reserved,
//! each fragment's payload is read by the kernel directly into the slot
//! (`readv` with the slot first and a few bytes of scratch after it, for
//! the next frame header) and unmasked there, while it is still in cache.

use super::*;

/// A frame payload at least this long is read straight into its slot;
/// shorter runs come through the scratch buffer (one small copy).
pub(crate) const DIRECT_MIN: usize = 2048;
/// A message longer than this makes the next read stop after the next
/// message's headers, so its body too can be read in place.
pub(crate) const LARGE_MESSAGE: usize = 64 * 1024;

impl Session {
    /// Whether the next bytes may start a message body (which needs a
    /// producer from the pool).
    pub(crate) fn needs_producer(&self) -> bool {
        matches!(self.message, Message::None | Message::Header { .. })
    }

    /// How many bytes of the current frame can be read straight into the
    /// slot, if that is worth it.
    pub(crate) fn direct_len(&self) -> Option<usize> {
        let frame = self.frame.filter(|f| !f.opcode.is_control())?;
        let Message::Body { plan, written, .. } = &self.message else {
            return None;
        };
        let len = usize::try_from(frame.remaining).ok()?.min(plan.len - written);
        (len >= DIRECT_MIN).then_some(len)
    }

    pub(crate) fn direct_buf(&mut self, len: usize) -> &mut [u8] {
        let Message::Body { inflight, written, .. } = &mut self.message else { unreachable!() };
        &mut inflight.bytes_mut()[*written..*written + len]
    }

    /// Payload bytes of the message being read into a slot that have not
    /// arrived yet.
    pub(crate) fn body_left(&self) -> Option<usize> {
        match &self.message {
            Message::Body { plan, written, .. } if plan.len > LARGE_MESSAGE => Some(plan.len - written),
            _ => None,
        }
    }

    /// How much to read into scratch: between the fragments of a message
    /// in a slot, only the next frame header; after a large message, only
    /// up to the end of the next message's headers, so that bodies go in
    /// place.
    pub(crate) fn read_size(&self, scratch: usize) -> usize {
        let header = self.spec.map_or(0, |s| s.header_len());
        match (&self.message, self.frame) {
            (Message::Body { .. }, None) => MAX_HEADER - self.head_len,
            (Message::None, None) if self.last_message_large => (MAX_HEADER - self.head_len) + header,
            (Message::Header { .. }, Some(frame)) if self.last_message_large => {
                (header - self.media_head_len).min(frame.remaining as usize).max(1)
            }
            _ => scratch,
        }
    }

    /// Bytes the kernel wrote into the slot at `direct_buf`: unmask them in
    /// place and move on.
    pub(crate) fn direct_filled(&mut self, n: usize, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let frame = self.frame.as_mut().expect("a frame is being read");
        let Message::Body { inflight, written, .. } = &mut self.message else { unreachable!() };
        frames::unmask(&mut inflight.bytes_mut()[*written..*written + n], frame.key, frame.offset as usize);
        *written += n;
        frame.remaining -= n as u64;
        frame.offset += n as u64;
        if frame.remaining == 0 {
            self.end_frame(env, out)?;
        }
        Ok(())
    }

    /// The media header is complete: check it, reserve the slot, copy the
    /// header in and let shmring-media check it in place.
    pub(super) fn begin_body(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let Message::Header { frames_len } = self.message else { unreachable!() };
        let spec = self.spec.expect("binary messages need a declaration");
        let header_len = spec.header_len();
        let plan = match spec.plan(&self.media_head[..header_len], env.limits.max_message) {
            Ok(plan) => plan,
            Err(HeaderError::TooBig { len, max }) => return Err(too_big(len, max as u64)),
            Err(HeaderError::Invalid(reason)) => return Err(close(code::INVALID_PAYLOAD, reason)),
        };
        if let Some(last) = self.last_frame_number.filter(|&last| plan.frame_number <= last) {
            return Err(close(
                code::INVALID_PAYLOAD,
                format!("frame number {} does not follow {last}", plan.frame_number),
            ));
        }
        if frames_len > plan.len as u64 {
            return Err(wrong_length(frames_len, plan.len, "or more"));
        }
        self.last_frame_number = Some(plan.frame_number);
        let seen = header_len as u64;
        self.announce_if_pending(env);
        let Some(producer) = env.pool.take() else {
            Counters::bump(&env.counters.dropped_busy);
            self.discard(plan, seen, frames_len, "no producer free", out);
            return Ok(());
        };
        let mut inflight = match InFlight::reserve(producer, plan.len, spec.kind()) {
            Ok(inflight) => inflight,
            Err((producer, error)) => {
                env.pool.give_back(producer);
                let reason = self.refused_reservation(error, env)?;
                self.discard(plan, seen, frames_len, reason, out);
                return Ok(());
            }
        };
        inflight.bytes_mut()[..header_len].copy_from_slice(&self.media_head[..header_len]);
        if let Err(error) = spec.verify(inflight.bytes()) {
            env.pool.give_back(inflight.abandon());
            Counters::bump(&env.counters.abandoned);
            return Err(close(code::INVALID_PAYLOAD, format!("bad media header: {error}")));
        }
        inflight.bytes_mut()[STREAM_ID_OFFSET..STREAM_ID_OFFSET + 4].copy_from_slice(&self.stream_id.to_ne_bytes());
        self.message = Message::Body { inflight, plan, written: header_len, frames_len, reserved_at: env.now };
        Ok(())
    }

    /// Goes on reading the message without a slot, and tells the client.
    pub(super) fn discard(&mut self, plan: MessagePlan, seen: u64, frames_len: u64, reason: &str, out: &mut Outbox) {
        self.note_drop(plan.frame_number, reason, out);
        self.message = Message::Discard { plan, seen, frames_len };
    }
}
