//! The bridge's protocol above WebSocket: the declaration a connection
//! opens with, the bridge's replies and notices, and the checks a binary
//! message's media header passes before its ring slot is reserved and once
//! the header sits in the slot.
//!
//! The wire format is described in the crate's README.

use std::mem::offset_of;

use serde::Deserialize;
use serde_json::json;
use shmring_media::sys::{shmring_audio_header, shmring_video_header};
use shmring_media::{
    AudioFrame, MediaError, PixelFormat, SampleFormat, VideoFrame, VideoLayout, AUDIO_HEADER_SIZE, AUDIO_MAGIC,
    KIND_AUDIO, KIND_VIDEO, MAX_CHANNELS, MAX_DIMENSION, MAX_LABEL, MAX_SAMPLE_RATE, MEDIA_VERSION, VIDEO_HEADER_SIZE,
    VIDEO_MAGIC,
};

/// Version of this protocol, sent in the `ready` reply.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest text message (a declaration) the bridge reads.
pub const MAX_TEXT: usize = 4096;
/// Longest media header the bridge collects before it reserves a slot.
pub(crate) const MAX_MEDIA_HEADER: usize = VIDEO_HEADER_SIZE;

/// What a connection's binary messages carry, as its declaration says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamSpec {
    /// Video frames of one pixel format and size.
    Video { format: PixelFormat, width: u32, height: u32 },
    /// Audio chunks of one sample format, rate and channel count.
    Audio { format: SampleFormat, sample_rate: u32, channels: u32 },
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Declaration {
    Video { format: String, width: u32, height: u32 },
    Audio { format: String, sample_rate: u32, channels: u32 },
}

/// A text message from the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    /// `{"type":"declare",...}`: what the binary messages (or file frames) carry.
    Declare(StreamSpec),
    /// `{"type":"file","token":"<32 hex digits>","size":N}`: frames will
    /// come through the file with this token at offset 0.
    OpenFile { token: [u8; 16], size: u64 },
    /// `{"type":"frame","position":P,"length":L,"frame_number":N}`: a frame
    /// the page wrote into its file at data position `P` (an absolute,
    /// increasing position: the file offset is `P` modulo the data region).
    Frame(FrameControl),
}

/// Where a frame of the file lane lies, as the page says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct FrameControl {
    pub position: u64,
    pub length: u64,
    pub frame_number: u64,
}

#[derive(Deserialize)]
struct FileDeclaration {
    token: String,
    size: u64,
}

/// Why a text message was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TextError {
    /// Not a message of this protocol (`"type"` is none of its types).
    Unknown,
    /// A message of a known type with impossible or unknown fields.
    Bad(String),
}

/// The pixel format a declaration names (WebCodecs' names).
pub fn pixel_format_by_name(name: &str) -> Option<PixelFormat> {
    match name {
        "I420" => Some(PixelFormat::I420),
        "NV12" => Some(PixelFormat::Nv12),
        "RGBA" => Some(PixelFormat::Rgba),
        "BGRA" => Some(PixelFormat::Bgra),
        _ => None,
    }
}

/// The sample format a declaration names (WebCodecs' names).
pub fn sample_format_by_name(name: &str) -> Option<SampleFormat> {
    match name {
        "f32-planar" => Some(SampleFormat::F32Planar),
        "s16" => Some(SampleFormat::S16Interleaved),
        _ => None,
    }
}

fn pixel_format_name(format: PixelFormat) -> &'static str {
    match format {
        PixelFormat::I420 => "I420",
        PixelFormat::Nv12 => "NV12",
        PixelFormat::Rgba => "RGBA",
        PixelFormat::Bgra => "BGRA",
    }
}

fn sample_format_name(format: SampleFormat) -> &'static str {
    match format {
        SampleFormat::F32Planar => "f32-planar",
        SampleFormat::S16Interleaved => "s16",
    }
}

/// Reads a text message of the page.
pub(crate) fn parse_text(text: &str) -> Result<Text, TextError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| TextError::Unknown)?;
    let bad = |reason: String| TextError::Bad(reason);
    match value.get("type").and_then(|t| t.as_str()) {
        Some("declare") => parse_declaration(value).map(Text::Declare),
        Some("frame") => {
            let control: FrameControl = serde_json::from_value(value).map_err(|e| bad(format!("bad frame: {e}")))?;
            Ok(Text::Frame(control))
        }
        Some("file") => {
            let file: FileDeclaration =
                serde_json::from_value(value).map_err(|e| bad(format!("bad file declaration: {e}")))?;
            let token = parse_token(&file.token)
                .ok_or_else(|| bad("bad file declaration: the token is not 32 hex digits".into()))?;
            Ok(Text::OpenFile { token, size: file.size })
        }
        _ => Err(TextError::Unknown),
    }
}

fn parse_token(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut token = [0u8; 16];
    for (i, byte) in token.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(token)
}

/// The `label` of a declaration (`""` when it has none): at most
/// [`MAX_LABEL`] bytes. Anything else is refused with the reason.
pub(crate) fn declared_label(text: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("bad declaration: {e}"))?;
    match value.get("label") {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(label)) if label.len() <= MAX_LABEL => Ok(label.clone()),
        Some(serde_json::Value::String(label)) => {
            Err(format!("bad declaration: label of {} bytes, at most {MAX_LABEL}", label.len()))
        }
        Some(_) => Err("bad declaration: the label is not a string".into()),
    }
}

fn parse_declaration(value: serde_json::Value) -> Result<StreamSpec, TextError> {
    let bad = |reason: String| TextError::Bad(format!("bad declaration: {reason}"));
    let declaration: Declaration = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    match declaration {
        Declaration::Video { format, width, height } => {
            let format = pixel_format_by_name(&format)
                .ok_or_else(|| bad(format!("unknown pixel format {format:?} (I420, NV12, RGBA, BGRA)")))?;
            if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
                return Err(bad(format!("impossible frame size {width}x{height}")));
            }
            Ok(StreamSpec::Video { format, width, height })
        }
        Declaration::Audio { format, sample_rate, channels } => {
            let format = sample_format_by_name(&format)
                .ok_or_else(|| bad(format!("unknown sample format {format:?} (f32-planar, s16)")))?;
            if sample_rate == 0 || sample_rate > MAX_SAMPLE_RATE {
                return Err(bad(format!("sample rate {sample_rate} outside 1..={MAX_SAMPLE_RATE}")));
            }
            if channels == 0 || channels > MAX_CHANNELS {
                return Err(bad(format!("{channels} channels, outside 1..={MAX_CHANNELS}")));
            }
            Ok(StreamSpec::Audio { format, sample_rate, channels })
        }
    }
}

/// What a media header says about its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MessagePlan {
    /// Length of the whole message (header and planes or samples).
    pub len: usize,
    /// The per-stream counter the client wrote.
    pub frame_number: u64,
}

/// Why a media header was refused before a slot was reserved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The message it describes is longer than the largest record (1009).
    TooBig { len: u64, max: usize },
    /// Wrong magic, version, format or size, or impossible planes (1007).
    Invalid(String),
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_ne_bytes([bytes[offset], bytes[offset + 1]])
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_ne_bytes(bytes[offset..offset + 8].try_into().expect("eight bytes"))
}

/// Where the stream id sits in both headers; the bridge writes its own.
pub(crate) const STREAM_ID_OFFSET: usize = offset_of!(shmring_video_header, stream_id);
const _: () = assert!(STREAM_ID_OFFSET == offset_of!(shmring_audio_header, stream_id));

impl StreamSpec {
    /// The ring record kind of this stream's messages.
    pub fn kind(&self) -> u32 {
        match self {
            StreamSpec::Video { .. } => KIND_VIDEO,
            StreamSpec::Audio { .. } => KIND_AUDIO,
        }
    }

    /// Bytes of the media header at the front of each message.
    pub fn header_len(&self) -> usize {
        match self {
            StreamSpec::Video { .. } => VIDEO_HEADER_SIZE,
            StreamSpec::Audio { .. } => AUDIO_HEADER_SIZE,
        }
    }

    /// The length of a video message laid out as the C and Rust writers lay
    /// it out (64-byte strides, planes back to back); `None` for audio,
    /// whose chunks vary.
    pub fn packed_len(&self) -> Option<usize> {
        match *self {
            StreamSpec::Video { format, width, height } => {
                VideoLayout::new(format, width, height).ok().map(|l| l.payload_len())
            }
            StreamSpec::Audio { .. } => None,
        }
    }

    /// Checks the first [`header_len`](Self::header_len) bytes of a message
    /// against the declaration and works out the message's length from its
    /// planes (or samples). Arithmetic is in `u64` on 32-bit fields and
    /// dimensions of at most 2^15, so it cannot overflow.
    pub(crate) fn plan(&self, header: &[u8], max: usize) -> Result<MessagePlan, HeaderError> {
        let invalid = |reason: String| Err(HeaderError::Invalid(reason));
        let len = match *self {
            StreamSpec::Video { format, width, height } => {
                type H = shmring_video_header;
                let magic = u32_at(header, offset_of!(H, magic));
                if magic != VIDEO_MAGIC {
                    return invalid(format!("not a video header (magic {magic:#010x})"));
                }
                check_version_and_size(header, offset_of!(H, version), offset_of!(H, header_size), VIDEO_HEADER_SIZE)?;
                let found = u32_at(header, offset_of!(H, pixel_format));
                if found != format as u32 {
                    return invalid(format!("pixel format {found}, the stream declared {}", pixel_format_name(format)));
                }
                let (w, h) = (u32_at(header, offset_of!(H, width)), u32_at(header, offset_of!(H, height)));
                if (w, h) != (width, height) {
                    return invalid(format!(
                        "frame of {w}x{h}, the stream declared {width}x{height} (declare again to change size)"
                    ));
                }
                let planes = u32_at(header, offset_of!(H, plane_count));
                if planes as usize != format.plane_count() {
                    return invalid(format!(
                        "{planes} planes, {} has {}",
                        pixel_format_name(format),
                        format.plane_count()
                    ));
                }
                let mut end = u64::from(u16_at(header, offset_of!(H, header_size)));
                for plane in 0..format.plane_count() {
                    let offset = u64::from(u32_at(header, offset_of!(H, plane_offset) + 4 * plane));
                    let stride = u64::from(u32_at(header, offset_of!(H, plane_stride) + 4 * plane));
                    let (_, rows) = format.plane_geometry(plane, width, height).expect("plane within the count");
                    end = end.max(offset + stride * rows);
                }
                end
            }
            StreamSpec::Audio { format, sample_rate, channels } => {
                type H = shmring_audio_header;
                let magic = u32_at(header, offset_of!(H, magic));
                if magic != AUDIO_MAGIC {
                    return invalid(format!("not an audio header (magic {magic:#010x})"));
                }
                check_version_and_size(header, offset_of!(H, version), offset_of!(H, header_size), AUDIO_HEADER_SIZE)?;
                let found = u32_at(header, offset_of!(H, sample_format));
                if found != format as u32 {
                    return invalid(format!(
                        "sample format {found}, the stream declared {}",
                        sample_format_name(format)
                    ));
                }
                let rate = u32_at(header, offset_of!(H, sample_rate));
                let count = u32_at(header, offset_of!(H, channels));
                if (rate, count) != (sample_rate, channels) {
                    return invalid(format!(
                        "{count} channels at {rate} Hz, the stream declared {channels} at {sample_rate} Hz"
                    ));
                }
                let frames = u64::from(u32_at(header, offset_of!(H, frame_count)));
                let data_offset = u64::from(u32_at(header, offset_of!(H, data_offset)));
                let data = match format {
                    SampleFormat::F32Planar => {
                        u64::from(u32_at(header, offset_of!(H, channel_stride))) * u64::from(channels)
                    }
                    SampleFormat::S16Interleaved => frames * u64::from(channels) * 2,
                };
                (data_offset + data).max(u64::from(u16_at(header, offset_of!(H, header_size))))
            }
        };
        if len > max as u64 {
            return Err(HeaderError::TooBig { len, max });
        }
        let frame_number = u64_at(header, offset_of!(shmring_video_header, frame_number));
        const _: () =
            assert!(offset_of!(shmring_video_header, frame_number) == offset_of!(shmring_audio_header, frame_number));
        Ok(MessagePlan { len: len as usize, frame_number })
    }

    /// The full check, by shmring-media's own reader, of a message whose
    /// header has been copied into its reserved slot (`payload` is the
    /// whole slot; bytes past the header are not looked at).
    pub(crate) fn verify(&self, payload: &[u8]) -> Result<(), MediaError> {
        match self {
            StreamSpec::Video { .. } => VideoFrame::from_payload(payload).map(drop),
            StreamSpec::Audio { .. } => AudioFrame::from_payload(payload).map(drop),
        }
    }

    fn describe(&self) -> serde_json::Value {
        match *self {
            StreamSpec::Video { format, width, height } => {
                json!({"kind": "video", "format": pixel_format_name(format), "width": width, "height": height})
            }
            StreamSpec::Audio { format, sample_rate, channels } => json!({
                "kind": "audio", "format": sample_format_name(format),
                "sample_rate": sample_rate, "channels": channels,
            }),
        }
    }
}

fn check_version_and_size(
    header: &[u8],
    version_at: usize,
    size_at: usize,
    expected_size: usize,
) -> Result<(), HeaderError> {
    let version = u16_at(header, version_at);
    if version != MEDIA_VERSION {
        return Err(HeaderError::Invalid(format!("media layout version {version}, expected {MEDIA_VERSION}")));
    }
    let size = u16_at(header, size_at);
    if usize::from(size) < expected_size {
        return Err(HeaderError::Invalid(format!("header size {size}, at least {expected_size}")));
    }
    Ok(())
}

/// The reply to a declaration.
pub(crate) fn ready_notice(stream_id: u32, spec: &StreamSpec, max_message: usize) -> String {
    json!({
        "type": "ready",
        "version": PROTOCOL_VERSION,
        "stream_id": stream_id,
        "max_message": max_message,
        "stream": spec.describe(),
    })
    .to_string()
}

/// The answer to a file declaration: the file lane is open, or why not
/// (the page then sends its frames as binary messages).
pub(crate) fn file_notice(result: Result<(u64, Option<&str>), String>) -> String {
    match result {
        Ok((capacity, warning)) => json!({"type": "file", "ok": true, "capacity": capacity, "warning": warning}),
        Err(reason) => json!({"type": "file", "ok": false, "reason": reason}),
    }
    .to_string()
}

/// A file-lane frame has been taken (read into the ring, or dropped): the
/// page may write over its data positions before `released`.
pub(crate) fn ack_notice(frame_number: u64, released: u64) -> String {
    json!({"type": "ack", "frame_number": frame_number, "released": released}).to_string()
}

/// A message that did not reach the ring: the page may skip frames.
pub(crate) fn dropped_notice(frame_number: u64, dropped: u64, reason: &str) -> String {
    json!({"type": "dropped", "frame_number": frame_number, "dropped": dropped, "reason": reason}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{audio_message, video_message};
    use shmring_media::{AudioMeta, VideoMeta};

    const VIDEO: StreamSpec = StreamSpec::Video { format: PixelFormat::I420, width: 1920, height: 1080 };

    #[test]
    fn declarations_parse_and_refuse() {
        assert_eq!(
            parse_text(r#"{"type":"declare","kind":"video","format":"I420","width":1920,"height":1080}"#),
            Ok(Text::Declare(VIDEO))
        );
        assert_eq!(
            parse_text(r#"{"type":"declare","kind":"audio","format":"f32-planar","sample_rate":48000,"channels":2}"#),
            Ok(Text::Declare(StreamSpec::Audio { format: SampleFormat::F32Planar, sample_rate: 48000, channels: 2 }))
        );
        assert_eq!(parse_text("hello"), Err(TextError::Unknown));
        assert_eq!(parse_text(r#"{"type":"hello"}"#), Err(TextError::Unknown));
        for bad in [
            r#"{"type":"declare","kind":"video","format":"YUY2","width":2,"height":2}"#,
            r#"{"type":"declare","kind":"video","format":"I420","width":0,"height":2}"#,
            r#"{"type":"declare","kind":"audio","format":"s16","sample_rate":48000,"channels":33}"#,
            r#"{"type":"declare","kind":"subtitles"}"#,
        ] {
            assert!(matches!(parse_text(bad), Err(TextError::Bad(_))), "{bad}");
        }
    }

    #[test]
    fn file_lane_messages_parse_and_refuse() {
        assert_eq!(
            parse_text(r#"{"type":"file","token":"00112233445566778899aabbccddeeff","size":33554432}"#),
            Ok(Text::OpenFile {
                token: [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
                size: 32 << 20
            })
        );
        assert_eq!(
            parse_text(r#"{"type":"frame","position":4096,"length":3110528,"frame_number":7}"#),
            Ok(Text::Frame(FrameControl { position: 4096, length: 3_110_528, frame_number: 7 }))
        );
        for bad in [
            r#"{"type":"file","token":"0011","size":33554432}"#,
            r#"{"type":"file","token":"zz112233445566778899aabbccddeeff","size":1}"#,
            r#"{"type":"frame","position":-1,"length":3,"frame_number":7}"#,
            r#"{"type":"frame","position":1.5,"length":3,"frame_number":7}"#,
            r#"{"type":"frame","position":1,"frame_number":7}"#,
        ] {
            assert!(matches!(parse_text(bad), Err(TextError::Bad(_))), "{bad}");
        }
    }

    #[test]
    fn a_packed_1080p_frame_plans_to_its_full_length() {
        let message =
            video_message(PixelFormat::I420, 1920, 1080, &VideoMeta { frame_number: 9, ..Default::default() });
        assert_eq!(message.len(), 128 + 3_110_400);
        assert_eq!(VIDEO.packed_len(), Some(message.len()));
        let plan = VIDEO.plan(&message[..128], usize::MAX).unwrap();
        assert_eq!(plan, MessagePlan { len: message.len(), frame_number: 9 });
        VIDEO.verify(&message).unwrap();
        assert_eq!(
            VIDEO.plan(&message[..128], 1 << 20),
            Err(HeaderError::TooBig { len: message.len() as u64, max: 1 << 20 })
        );
    }

    #[test]
    fn headers_that_contradict_the_declaration_are_refused() {
        let other = StreamSpec::Video { format: PixelFormat::I420, width: 1280, height: 720 };
        let message = video_message(PixelFormat::I420, 1920, 1080, &VideoMeta::default());
        assert!(matches!(other.plan(&message[..128], usize::MAX), Err(HeaderError::Invalid(_))));
        let mut broken = message[..128].to_vec();
        broken[0] ^= 1;
        assert!(matches!(VIDEO.plan(&broken, usize::MAX), Err(HeaderError::Invalid(_))));
        let audio = audio_message(SampleFormat::F32Planar, 48000, 1, 480, &AudioMeta::default());
        assert!(matches!(VIDEO.plan(&audio[..64].repeat(2), usize::MAX), Err(HeaderError::Invalid(_))));
    }

    #[test]
    fn audio_chunks_plan_and_verify() {
        let spec = StreamSpec::Audio { format: SampleFormat::S16Interleaved, sample_rate: 48000, channels: 1 };
        let message = audio_message(SampleFormat::S16Interleaved, 48000, 1, 480, &AudioMeta::default());
        assert_eq!(message.len(), 1024);
        assert_eq!(spec.plan(&message[..64], usize::MAX).unwrap().len, 1024);
        spec.verify(&message).unwrap();
    }
}
