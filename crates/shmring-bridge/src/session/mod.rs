//! A WebSocket session: frames parsed from the worker's scratch buffer
//! (headers, text, control frames, the media header), the stream's
//! declaration, and the two lanes frames arrive by: binary messages
//! ([`payload_lane`]) or a file the page writes ([`file_lane`]).

mod announce;
mod file_lane;
mod payload_lane;

use std::borrow::Cow;
use std::time::Instant;

use crate::connection::Env;
use crate::frames::{self, FrameHead, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER};
use crate::inflight::InFlight;
use crate::outbox::Outbox;
use crate::protocol::{
    declared_label, dropped_notice, parse_text, ready_notice, HeaderError, MessagePlan, StreamSpec, Text, TextError,
    MAX_MEDIA_HEADER, MAX_TEXT, STREAM_ID_OFFSET,
};
use crate::stats::Counters;

pub(crate) use payload_lane::{DIRECT_MIN, LARGE_MESSAGE};

/// Why a session ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The bridge closes with `code` and a reason.
    Close { code: u16, reason: Cow<'static, str> },
    /// The client sent a close frame with `code`.
    ClientClosed { code: u16 },
}

pub(crate) fn close(code: u16, reason: impl Into<Cow<'static, str>>) -> End {
    End::Close { code, reason: reason.into() }
}

/// Close codes (RFC 6455 section 7.4.1).
pub(crate) mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
}

/// The frame being read.
#[derive(Clone, Copy)]
pub(crate) struct CurrentFrame {
    opcode: Opcode,
    fin: bool,
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes read so far (the mask's phase).
    offset: u64,
    key: [u8; 4],
}

/// The data message being read.
pub(crate) enum Message {
    None,
    Text(Vec<u8>),
    /// Collecting the media header (in `Session::media_head`); `frames_len`
    /// is the sum of the lengths of the message's frames seen so far.
    Header {
        frames_len: u64,
    },
    /// Reading into a reserved slot.
    Body {
        inflight: InFlight,
        plan: MessagePlan,
        written: usize,
        frames_len: u64,
        reserved_at: Instant,
    },
    /// Reading and throwing away a message that has no slot (ring full,
    /// or its slot given up after `message_timeout`).
    Discard {
        plan: MessagePlan,
        seen: u64,
        frames_len: u64,
    },
}

pub(crate) struct Session {
    pub stream_id: u32,
    spec: Option<StreamSpec>,
    head: [u8; MAX_HEADER],
    head_len: usize,
    frame: Option<CurrentFrame>,
    message: Message,
    message_started: Option<Instant>,
    media_head: [u8; MAX_MEDIA_HEADER],
    media_head_len: usize,
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    last_frame_number: Option<u64>,
    dropped: u64,
    last_message_large: bool,
    /// The file lane, once the page's file has been found.
    file: Option<file_lane::FileLane>,
    /// The stream as last announced in the ring, and an announcement
    /// waiting for room.
    announced: Option<shmring_media::Announcement>,
    to_announce: Option<shmring_media::Announcement>,
}

impl Session {
    pub(crate) fn new(stream_id: u32) -> Session {
        Session {
            stream_id,
            spec: None,
            head: [0; MAX_HEADER],
            head_len: 0,
            frame: None,
            message: Message::None,
            message_started: None,
            media_head: [0; MAX_MEDIA_HEADER],
            media_head_len: 0,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            last_frame_number: None,
            dropped: 0,
            last_message_large: false,
            file: None,
            announced: None,
            to_announce: None,
        }
    }

    pub(crate) fn message_in_progress(&self) -> bool {
        !matches!(self.message, Message::None)
    }

    pub(crate) fn frame_is_final(&self) -> bool {
        self.frame.is_some_and(|f| f.fin)
    }

    /// Parses masked bytes from the scratch buffer.
    pub(crate) fn feed(&mut self, mut data: &mut [u8], env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        while !data.is_empty() {
            let Some(frame) = self.frame else {
                let need = if self.head_len < 2 { 2 } else { frames::header_len(self.head[1]) };
                let take = (need - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &mut data[take..];
                if self.head_len >= 2 && self.head_len == frames::header_len(self.head[1]) {
                    let head = frames::parse_head(&self.head[..self.head_len])
                        .map_err(|v| close(code::PROTOCOL_ERROR, v.0))?;
                    self.head_len = 0;
                    self.start_frame(head, env, out)?;
                }
                continue;
            };
            let take = frame.remaining.min(data.len() as u64) as usize;
            let (chunk, rest) = std::mem::take(&mut data).split_at_mut(take);
            data = rest;
            self.payload(chunk, env, out)?;
        }
        Ok(())
    }

    fn start_frame(&mut self, head: FrameHead, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let max = env.limits.max_message as u64;
        if !head.opcode.is_control() {
            match (&mut self.message, head.opcode) {
                (Message::None, Opcode::Continuation) => {
                    return Err(close(code::PROTOCOL_ERROR, "continuation frame without a message to continue"))
                }
                (Message::None, Opcode::Text) => {
                    if head.len > MAX_TEXT as u64 {
                        return Err(close(code::TOO_BIG, format!("text messages are at most {MAX_TEXT} bytes")));
                    }
                    self.message = Message::Text(Vec::with_capacity(head.len as usize));
                }
                (Message::None, Opcode::Binary) => {
                    if self.spec.is_none() {
                        return Err(close(
                            code::UNSUPPORTED_DATA,
                            "binary message before the stream was declared (send a text declaration first)",
                        ));
                    }
                    if head.len > max {
                        return Err(too_big(head.len, max));
                    }
                    self.message = Message::Header { frames_len: head.len };
                    self.media_head_len = 0;
                    self.message_started = Some(env.now);
                }
                (_, Opcode::Text | Opcode::Binary) => {
                    return Err(close(code::PROTOCOL_ERROR, "a new message began before the previous one ended"))
                }
                (Message::Text(bytes), _) => {
                    if bytes.len() as u64 + head.len > MAX_TEXT as u64 {
                        return Err(close(code::TOO_BIG, format!("text messages are at most {MAX_TEXT} bytes")));
                    }
                }
                (Message::Header { frames_len }, _) => {
                    *frames_len += head.len;
                    if *frames_len > max {
                        return Err(too_big(*frames_len, max));
                    }
                }
                (Message::Body { plan, frames_len, .. } | Message::Discard { plan, frames_len, .. }, _) => {
                    *frames_len += head.len;
                    if *frames_len > plan.len as u64 {
                        return Err(wrong_length(*frames_len, plan.len, "or more"));
                    }
                }
                (_, Opcode::Close | Opcode::Ping | Opcode::Pong) => unreachable!("control frames are handled below"),
            }
        } else {
            self.control_len = 0;
        }
        self.frame =
            Some(CurrentFrame { opcode: head.opcode, fin: head.fin, remaining: head.len, offset: 0, key: head.mask });
        if head.len == 0 {
            self.end_frame(env, out)?;
        }
        Ok(())
    }

    /// Routes a run of the current frame's masked payload.
    fn payload(&mut self, mut chunk: &mut [u8], env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        while !chunk.is_empty() {
            let frame = self.frame.expect("a frame is being read");
            let phase = frame.offset as usize;
            let n = if frame.opcode.is_control() {
                let n = chunk.len();
                let dst = &mut self.control[self.control_len..self.control_len + n];
                frames::copy_unmasked(dst, chunk, frame.key, phase);
                self.control_len += n;
                n
            } else {
                match &mut self.message {
                    Message::None => unreachable!("data frames always belong to a message"),
                    Message::Text(bytes) => {
                        let start = bytes.len();
                        bytes.resize(start + chunk.len(), 0);
                        frames::copy_unmasked(&mut bytes[start..], chunk, frame.key, phase);
                        chunk.len()
                    }
                    Message::Header { .. } => {
                        let spec = self.spec.expect("binary messages need a declaration");
                        let n = (spec.header_len() - self.media_head_len).min(chunk.len());
                        let dst = &mut self.media_head[self.media_head_len..self.media_head_len + n];
                        frames::copy_unmasked(dst, &chunk[..n], frame.key, phase);
                        self.media_head_len += n;
                        n
                    }
                    Message::Body { inflight, written, .. } => {
                        let n = chunk.len();
                        // In bounds: every frame's length was checked
                        // against the planned length when it started.
                        let dst = &mut inflight.bytes_mut()[*written..*written + n];
                        frames::copy_unmasked(dst, chunk, frame.key, phase);
                        *written += n;
                        n
                    }
                    Message::Discard { seen, .. } => {
                        *seen += chunk.len() as u64;
                        chunk.len()
                    }
                }
            };
            chunk = &mut std::mem::take(&mut chunk)[n..];
            let frame = self.frame.as_mut().expect("a frame is being read");
            frame.remaining -= n as u64;
            frame.offset += n as u64;
            if let Message::Header { .. } = self.message {
                if self.media_head_len == self.spec.map_or(0, |s| s.header_len()) {
                    self.begin_body(env, out)?;
                }
            }
            if self.frame.is_some_and(|f| f.remaining == 0) {
                self.end_frame(env, out)?;
            }
        }
        Ok(())
    }

    fn end_frame(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let frame = self.frame.take().expect("a frame is being read");
        match frame.opcode {
            Opcode::Ping => {
                if out.has_room() {
                    frames::push_pong(&self.control[..self.control_len], &mut out.buf);
                }
                Ok(())
            }
            Opcode::Pong => Ok(()),
            Opcode::Close => match frames::check_close(&self.control[..self.control_len]) {
                Ok(code) => Err(End::ClientClosed { code }),
                Err(bad) => Err(close(bad.code, bad.reason)),
            },
            _ if frame.fin => self.end_message(env, out),
            _ => Ok(()),
        }
    }

    fn end_message(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        self.message_started = None;
        match std::mem::replace(&mut self.message, Message::None) {
            Message::None => unreachable!("a final data frame ends a message"),
            Message::Text(bytes) => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| close(code::INVALID_PAYLOAD, "text message is not valid UTF-8"))?;
                self.on_text(text, env, out)
            }
            Message::Header { frames_len } => {
                let header_len = self.spec.map_or(0, |s| s.header_len());
                Err(close(
                    code::INVALID_PAYLOAD,
                    format!("message of {frames_len} bytes is shorter than its {header_len}-byte media header"),
                ))
            }
            Message::Body { inflight, plan, written, .. } => {
                if written != plan.len {
                    env.pool.give_back(inflight.abandon());
                    Counters::bump(&env.counters.abandoned);
                    return Err(wrong_length(written as u64, plan.len, ""));
                }
                env.pool.give_back(inflight.commit());
                Counters::bump(&env.counters.messages);
                Counters::add(&env.counters.bytes, plan.len as u64);
                self.last_message_large = plan.len > LARGE_MESSAGE;
                Ok(())
            }
            Message::Discard { plan, seen, .. } => {
                if seen != plan.len as u64 {
                    return Err(wrong_length(seen, plan.len, ""));
                }
                self.last_message_large = plan.len > LARGE_MESSAGE;
                Ok(())
            }
        }
    }

    fn on_text(&mut self, text: &str, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        match parse_text(text) {
            Ok(Text::Declare(spec)) => {
                let label = declared_label(text).map_err(|reason| close(code::INVALID_PAYLOAD, reason))?;
                let max = env.limits.max_message;
                if let Some(len) = spec.packed_len().filter(|&len| len > max) {
                    return Err(close(
                        code::TOO_BIG,
                        format!("frames of this size take {len} bytes; the largest record is {max}"),
                    ));
                }
                self.spec = Some(spec);
                Counters::bump(&env.counters.declarations);
                self.declared(&spec, label, env);
                tracing::debug!(stream_id = self.stream_id, ?spec, "stream declared");
                frames::push_text(&ready_notice(self.stream_id, &spec, max), &mut out.buf);
                Ok(())
            }
            Ok(Text::OpenFile { token, size }) => self.open_file_lane(token, size, env, out),
            Ok(Text::Frame(control)) => self.on_file_frame(control, env, out),
            Err(TextError::Unknown) if self.spec.is_some() => Err(close(
                code::UNSUPPORTED_DATA,
                "text message where binary media frames were expected (text is for declarations and file frames)",
            )),
            Err(TextError::Unknown) => {
                Err(close(code::INVALID_PAYLOAD, "the first message must be a stream declaration"))
            }
            Err(TextError::Bad(reason)) => {
                if reason.starts_with("bad frame") {
                    Counters::bump(&env.counters.bad_controls);
                }
                Err(close(code::INVALID_PAYLOAD, reason))
            }
        }
    }

    pub(crate) fn on_tick(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        self.announce_if_pending(env);
        let now = env.now;
        if let Message::Body { reserved_at, .. } = &self.message {
            if now.saturating_duration_since(*reserved_at) >= env.limits.message_timeout {
                let Message::Body { inflight, plan, written, frames_len, .. } =
                    std::mem::replace(&mut self.message, Message::None)
                else {
                    unreachable!()
                };
                env.pool.give_back(inflight.abandon());
                Counters::bump(&env.counters.abandoned);
                Counters::bump(&env.counters.message_timeouts);
                let ms = env.limits.message_timeout.as_millis();
                tracing::debug!(stream_id = self.stream_id, written, len = plan.len, "message too slow; slot given up");
                self.discard(plan, written as u64, frames_len, &format!("message not completed within {ms} ms"), out);
            }
        }
        if let Some(started) = self.message_started {
            if now.saturating_duration_since(started) >= env.limits.idle_timeout {
                return Err(close(
                    code::POLICY,
                    format!("message not completed within {} s", env.limits.idle_timeout.as_secs()),
                ));
            }
        }
        Ok(())
    }

    /// Gives up a slot in flight (a skip record) and forgets the message.
    pub(crate) fn abandon(&mut self, env: &mut Env<'_>) {
        if let Message::Body { inflight, .. } = std::mem::replace(&mut self.message, Message::None) {
            env.pool.give_back(inflight.abandon());
            Counters::bump(&env.counters.abandoned);
        }
        self.frame = None;
        self.message_started = None;
    }

    /// What a refused reservation means: the frame is dropped (ring full,
    /// consumer gone: counted, the page told) or, for anything else, the
    /// session ends with 1011.
    pub(super) fn refused_reservation(&self, error: shmring::Error, env: &mut Env<'_>) -> Result<&'static str, End> {
        match error {
            shmring::Error::ConsumerGone { .. } => {
                Counters::bump(&env.counters.consumer_gone);
                Ok("the ring's consumer is gone")
            }
            shmring::Error::Dropped | shmring::Error::Full | shmring::Error::Timeout => {
                Counters::bump(&env.counters.dropped_full);
                Ok("ring full")
            }
            other => Err(close(code::INTERNAL, format!("ring refused the frame: {other}"))),
        }
    }

    /// Counts a frame that did not reach the ring and tells the page.
    pub(super) fn note_drop(&mut self, frame_number: u64, reason: &str, out: &mut Outbox) {
        self.dropped += 1;
        tracing::trace!(stream_id = self.stream_id, frame_number, reason, "frame dropped");
        if out.has_room() {
            frames::push_text(&dropped_notice(frame_number, self.dropped, reason), &mut out.buf);
        }
    }
}

fn too_big(len: u64, max: u64) -> End {
    close(code::TOO_BIG, format!("message of {len} bytes exceeds the largest record ({max} bytes)"))
}

fn wrong_length(len: u64, expected: usize, qualifier: &str) -> End {
    let sep = if qualifier.is_empty() { "" } else { " " };
    close(code::INVALID_PAYLOAD, format!("message of {len}{sep}{qualifier} bytes, its header describes {expected}"))
}
