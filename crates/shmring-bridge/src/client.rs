//! A small blocking client of the bridge, speaking the same protocol as the
//! JS client: for tests, the load generator, and Rust programs that must go
//! through a bridge (a program on the same machine that can attach to the
//! ring should write to it directly instead).
//!
//! It also builds media messages as the JS client does: the header of
//! `ffi/include/shmring/media.h`, then planes (or samples) at 64-byte
//! aligned offsets with 64-byte aligned strides.
//!
//! ```
//! use shmring::{Consumer, RingOptions};
//! use shmring_bridge::client::{audio_message, Client};
//! use shmring_bridge::{Bridge, BridgeConfig};
//! use shmring_media::{AudioFrame, AudioMeta, SampleFormat};
//!
//! let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 20))?;
//! let bridge = Bridge::start(BridgeConfig::listening_on("127.0.0.1:0".parse()?), consumer.fds().try_clone()?)?;
//!
//! let mut client = Client::connect(bridge.local_addr())?;
//! let ready = client.declare(r#"{"type":"declare","kind":"audio","format":"s16","sample_rate":48000,"channels":1}"#)?;
//! let meta = AudioMeta { timestamp_us: 0, frame_number: 0, sample_rate: 48000, stream_id: 0 };
//! client.send_binary(&audio_message(SampleFormat::S16Interleaved, 48000, 1, 480, &meta), 131_000)?;
//!
//! drop(consumer.recv()?); // the stream's announce record
//! let frame = consumer.recv()?;
//! let audio = AudioFrame::parse(&frame)?;
//! assert_eq!((audio.frame_count(), u64::from(audio.stream_id())), (480, ready["stream_id"].as_u64().unwrap()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::mem::offset_of;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use shmring_media::sys::{shmring_audio_header, shmring_video_header};
use shmring_media::{
    AudioMeta, PixelFormat, SampleFormat, VideoLayout, VideoMeta, AUDIO_HEADER_SIZE, AUDIO_MAGIC, MEDIA_ALIGN,
    MEDIA_VERSION, VIDEO_HEADER_SIZE, VIDEO_MAGIC,
};
use tungstenite::handshake::client::{generate_key, Response};
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;
use tungstenite::protocol::frame::coding::OpCode;
use tungstenite::protocol::frame::FrameHeader;

use crate::frames;

/// Fragment size Chromium uses for large messages.
pub const CHROMIUM_FRAGMENT: usize = 131_000;

/// A message from the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame (code 1005 when it carried none).
    Close {
        code: u16,
        reason: String,
    },
}

/// Masks for client frames, from a generator seeded per client. (A browser
/// must use unpredictable masks against proxies; a test client need not.)
struct Masks(u64);

impl Masks {
    fn new() -> Masks {
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Masks(seed | 1)
    }

    fn next(&mut self) -> [u8; 4] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as u32).to_ne_bytes()
    }
}

/// A blocking WebSocket connection to a bridge.
pub struct Client {
    stream: TcpStream,
    /// Bytes read from the bridge and not yet parsed.
    inbox: Vec<u8>,
    masks: Masks,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("peer", &self.stream.peer_addr().ok()).finish()
    }
}

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// The request line and headers of an upgrade to `host`.
pub fn upgrade_request(host: &str, key: &str, origin: Option<&str>) -> String {
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n{origin}\r\n"
    )
}

impl Client {
    /// Connects and completes the WebSocket handshake (no `Origin`).
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        Client::connect_with_origin(addr, None)
    }

    /// Connects sending `Origin: origin`, as a browser page would.
    pub fn connect_with_origin(addr: SocketAddr, origin: Option<&str>) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        Client::handshake(stream, &addr.to_string(), origin)
    }

    /// Completes the handshake over an open stream.
    pub fn handshake(mut stream: TcpStream, host: &str, origin: Option<&str>) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let key = generate_key();
        stream.write_all(upgrade_request(host, &key, origin).as_bytes())?;
        let mut inbox = Vec::new();
        let mut chunk = [0u8; 1024];
        let (consumed, response) = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(invalid("the bridge closed during the handshake"));
            }
            inbox.extend_from_slice(&chunk[..n]);
            if let Some(done) = Response::try_parse(&inbox).map_err(|e| invalid(e.to_string()))? {
                break done;
            }
        };
        if response.status() != 101 {
            return Err(invalid(format!("handshake refused: {}", response.status())));
        }
        let accept = response.headers().get("Sec-WebSocket-Accept").and_then(|v| v.to_str().ok());
        if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
            return Err(invalid("wrong Sec-WebSocket-Accept"));
        }
        if response.headers().contains_key("Sec-WebSocket-Extensions") {
            return Err(invalid("the bridge accepted an extension"));
        }
        inbox.drain(..consumed);
        Ok(Client { stream, inbox, masks: Masks::new(), scratch: Vec::new() })
    }

    /// The TCP stream (to set timeouts, or shut it down abruptly).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The TCP stream and the bytes already read from it but not parsed,
    /// for a caller that drives the connection itself (the load generator).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.inbox)
    }

    /// Sends a declaration and waits for the bridge's `ready` reply.
    pub fn declare(&mut self, declaration: &str) -> io::Result<serde_json::Value> {
        self.send_text(declaration)?;
        loop {
            match self.recv()? {
                ServerMessage::Text(text) => {
                    let reply: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
                    if reply["type"] == "ready" {
                        return Ok(reply);
                    }
                }
                ServerMessage::Close { code, reason } => {
                    return Err(invalid(format!("declaration refused with {code}: {reason}")))
                }
                _ => {}
            }
        }
    }

    /// Sends one text message.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(true, 1, text.as_bytes())
    }

    /// Sends one binary message as frames of at most `fragment` bytes, as
    /// Chromium does with [`CHROMIUM_FRAGMENT`].
    pub fn send_binary(&mut self, payload: &[u8], fragment: usize) -> io::Result<()> {
        let fragment = fragment.max(1);
        let count = payload.len().div_ceil(fragment).max(1);
        for i in 0..count {
            let part = &payload[(i * fragment).min(payload.len())..((i + 1) * fragment).min(payload.len())];
            self.send_frame(i + 1 == count, if i == 0 { 2 } else { 0 }, part)?;
        }
        Ok(())
    }

    /// Sends one masked frame with any opcode (for tests of bad frames).
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.scratch.clear();
        let mask = self.masks.next();
        encode_frame(fin, opcode, payload, Some(mask), &mut self.scratch);
        self.stream.write_all(&self.scratch)
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a close frame with `code`.
    pub fn close(&mut self, code: u16) -> io::Result<()> {
        self.send_frame(true, 8, &code.to_be_bytes())
    }

    /// The next message from the bridge (blocks up to the read timeout).
    /// Server frames are never fragmented by the bridge.
    pub fn recv(&mut self) -> io::Result<ServerMessage> {
        loop {
            if let Some((header, len)) = FrameHeader::parse(&mut io::Cursor::new(&self.inbox))
                .map_err(|e| invalid(format!("bad frame from the bridge: {e}")))?
            {
                let head = header.len(len);
                let total = head + len as usize;
                if self.inbox.len() >= total {
                    let payload: Vec<u8> = self.inbox[head..total].to_vec();
                    self.inbox.drain(..total);
                    return match header.opcode {
                        OpCode::Data(tungstenite::protocol::frame::coding::Data::Text) => {
                            String::from_utf8(payload).map(ServerMessage::Text).map_err(|e| invalid(e.to_string()))
                        }
                        OpCode::Data(_) => Ok(ServerMessage::Binary(payload)),
                        OpCode::Control(tungstenite::protocol::frame::coding::Control::Ping) => {
                            Ok(ServerMessage::Ping(payload))
                        }
                        OpCode::Control(tungstenite::protocol::frame::coding::Control::Pong) => {
                            Ok(ServerMessage::Pong(payload))
                        }
                        OpCode::Control(_) => Ok(ServerMessage::Close {
                            code: frames::close_code(&payload),
                            reason: String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned(),
                        }),
                    };
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.inbox.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until a close frame arrives; returns its code and reason.
    /// Other messages (notices, pings) are skipped.
    pub fn recv_close(&mut self) -> io::Result<(u16, String)> {
        loop {
            if let ServerMessage::Close { code, reason } = self.recv()? {
                return Ok((code, reason));
            }
        }
    }
}

/// Appends one frame to `out`: the header (tungstenite's encoder), then the
/// payload, masked with `mask` when given (client frames must be).
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let header = FrameHeader { is_final: fin, opcode: OpCode::from(opcode), mask, ..FrameHeader::default() };
    header.format(payload.len() as u64, out).expect("writing into a Vec cannot fail");
    let start = out.len();
    out.resize(start + payload.len(), 0);
    match mask {
        Some(key) => frames::copy_unmasked(&mut out[start..], payload, key, 0),
        None => out[start..].copy_from_slice(payload),
    }
}

fn put_u16(buf: &mut [u8], offset: usize, value: u16) {
    buf[offset..offset + 2].copy_from_slice(&value.to_ne_bytes());
}

fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], offset: usize, value: u64) {
    buf[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
}

/// A video message of zeroed planes, laid out as the writers lay it out.
///
/// # Panics
///
/// If the size is impossible (see [`VideoLayout::new`]).
pub fn video_message(format: PixelFormat, width: u32, height: u32, meta: &VideoMeta) -> Vec<u8> {
    let layout = VideoLayout::new(format, width, height).expect("a possible frame size");
    let mut message = vec![0u8; layout.payload_len()];
    write_video_header(&mut message, &layout, meta);
    message
}

/// Writes the header of a frame laid out as `layout` into `message`.
pub fn write_video_header(message: &mut [u8], layout: &VideoLayout, meta: &VideoMeta) {
    type H = shmring_video_header;
    let h = &mut message[..VIDEO_HEADER_SIZE];
    h.fill(0);
    put_u32(h, offset_of!(H, magic), VIDEO_MAGIC);
    put_u16(h, offset_of!(H, version), MEDIA_VERSION);
    put_u16(h, offset_of!(H, header_size), VIDEO_HEADER_SIZE as u16);
    put_u32(h, offset_of!(H, stream_id), meta.stream_id);
    put_u32(h, offset_of!(H, pixel_format), layout.format() as u32);
    put_u64(h, offset_of!(H, timestamp_us), meta.timestamp_us as u64);
    put_u64(h, offset_of!(H, frame_number), meta.frame_number);
    put_u32(h, offset_of!(H, width), layout.width());
    put_u32(h, offset_of!(H, height), layout.height());
    put_u32(h, offset_of!(H, plane_count), layout.format().plane_count() as u32);
    for plane in 0..layout.format().plane_count() {
        put_u32(h, offset_of!(H, plane_offset) + 4 * plane, layout.plane_range(plane).start as u32);
        put_u32(h, offset_of!(H, plane_stride) + 4 * plane, layout.stride(plane) as u32);
    }
}

/// Bytes of an audio chunk: the header, then samples at offset 64 (planar
/// channels each padded to a multiple of 64 bytes).
pub fn audio_message_len(format: SampleFormat, channels: u32, frames: u32) -> usize {
    let bytes = format.bytes_per_sample() * frames as usize;
    AUDIO_HEADER_SIZE
        + match format {
            SampleFormat::F32Planar => bytes.next_multiple_of(MEDIA_ALIGN) * channels as usize,
            SampleFormat::S16Interleaved => bytes * channels as usize,
        }
}

/// An audio chunk of silence.
pub fn audio_message(format: SampleFormat, sample_rate: u32, channels: u32, frames: u32, meta: &AudioMeta) -> Vec<u8> {
    let mut message = vec![0u8; audio_message_len(format, channels, frames)];
    write_audio_header(&mut message, format, sample_rate, channels, frames, meta);
    message
}

/// Writes an audio chunk's header into `message`.
pub fn write_audio_header(
    message: &mut [u8],
    format: SampleFormat,
    sample_rate: u32,
    channels: u32,
    frames: u32,
    meta: &AudioMeta,
) {
    type H = shmring_audio_header;
    let h = &mut message[..AUDIO_HEADER_SIZE];
    h.fill(0);
    put_u32(h, offset_of!(H, magic), AUDIO_MAGIC);
    put_u16(h, offset_of!(H, version), MEDIA_VERSION);
    put_u16(h, offset_of!(H, header_size), AUDIO_HEADER_SIZE as u16);
    put_u32(h, offset_of!(H, stream_id), meta.stream_id);
    put_u32(h, offset_of!(H, sample_format), format as u32);
    put_u64(h, offset_of!(H, timestamp_us), meta.timestamp_us as u64);
    put_u64(h, offset_of!(H, frame_number), meta.frame_number);
    put_u32(h, offset_of!(H, sample_rate), sample_rate);
    put_u32(h, offset_of!(H, channels), channels);
    put_u32(h, offset_of!(H, frame_count), frames);
    put_u32(h, offset_of!(H, data_offset), AUDIO_HEADER_SIZE as u32);
    let stride = match format {
        SampleFormat::F32Planar => (4 * frames as usize).next_multiple_of(MEDIA_ALIGN) as u32,
        SampleFormat::S16Interleaved => 0,
    };
    put_u32(h, offset_of!(H, channel_stride), stride);
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmring_media::{AudioFrame, VideoFrame};

    #[test]
    fn built_messages_read_back_with_shmring_media() {
        let meta = VideoMeta { stream_id: 3, timestamp_us: 1234, frame_number: 5 };
        for (format, w, h) in [(PixelFormat::I420, 1920, 1080), (PixelFormat::Nv12, 33, 17), (PixelFormat::Bgra, 7, 3)]
        {
            let message = video_message(format, w, h, &meta);
            let frame = VideoFrame::from_payload(&message).unwrap();
            assert_eq!((frame.width(), frame.height(), frame.format()), (w, h, format));
            assert_eq!((frame.stream_id(), frame.timestamp_us(), frame.frame_number()), (3, 1234, 5));
        }
        let meta = AudioMeta { stream_id: 4, timestamp_us: -5, frame_number: 6, sample_rate: 44100 };
        for format in [SampleFormat::F32Planar, SampleFormat::S16Interleaved] {
            let message = audio_message(format, 44100, 2, 441, &meta);
            let chunk = AudioFrame::from_payload(&message).unwrap();
            assert_eq!((chunk.channels(), chunk.frame_count(), chunk.sample_rate()), (2, 441, 44100));
            assert_eq!((chunk.stream_id(), chunk.timestamp_us(), chunk.frame_number()), (4, -5, 6));
        }
    }
}
