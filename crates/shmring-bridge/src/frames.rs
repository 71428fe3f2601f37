//! WebSocket frames on the wire: parsing a client frame's header (with
//! tungstenite's `FrameHeader::parse`, plus the checks a server owes RFC
//! 6455 on top of it), unmasking payload bytes where they lie, and encoding
//! the few frames the bridge sends.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
pub(crate) const MAX_HEADER: usize = 14;
/// Longest payload of a control frame (RFC 6455 section 5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    pub(crate) fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed, checked client frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub fin: bool,
    pub opcode: Opcode,
    pub len: u64,
    pub mask: [u8; 4],
}

/// A frame the client must not send; the connection is closed with 1002.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProtocolViolation(pub &'static str);

/// Bytes of a header whose second byte (mask bit, length form) is `second_byte`.
pub(crate) fn header_len(second_byte: u8) -> usize {
    let extended = match second_byte & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second_byte & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// Parses a complete header (`bytes.len() == header_len(bytes[1])`).
pub(crate) fn parse_head(bytes: &[u8]) -> Result<FrameHead, ProtocolViolation> {
    let parsed = FrameHeader::parse(&mut Cursor::new(bytes))
        .map_err(|_| ProtocolViolation("reserved opcode"))?
        .ok_or(ProtocolViolation("incomplete frame header"))?;
    let (header, len) = parsed;
    if header.rsv1 || header.rsv2 || header.rsv3 {
        // No extension is negotiated (permessage-deflate is declined).
        return Err(ProtocolViolation("reserved bits set without a negotiated extension"));
    }
    let mask = header.mask.ok_or(ProtocolViolation("client frame not masked"))?;
    if len >> 63 != 0 {
        return Err(ProtocolViolation("frame length has its most significant bit set"));
    }
    let opcode = match header.opcode {
        OpCode::Data(Data::Continue) => Opcode::Continuation,
        OpCode::Data(Data::Text) => Opcode::Text,
        OpCode::Data(Data::Binary) => Opcode::Binary,
        OpCode::Control(Control::Close) => Opcode::Close,
        OpCode::Control(Control::Ping) => Opcode::Ping,
        OpCode::Control(Control::Pong) => Opcode::Pong,
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
            return Err(ProtocolViolation("reserved opcode"))
        }
    };
    if opcode.is_control() {
        if !header.is_final {
            return Err(ProtocolViolation("fragmented control frame"));
        }
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolViolation("control frame longer than 125 bytes"));
        }
    }
    Ok(FrameHead { fin: header.is_final, opcode, len, mask })
}

/// The mask key repeated from byte `phase` of the key (the payload offset
/// modulo 4), over 64 bytes: XOR with it lines up with any 64-byte block
/// that starts at that phase.
fn mask_pattern(key: [u8; 4], phase: usize) -> [u8; 64] {
    std::array::from_fn(|i| key[(phase + i) % 4])
}

/// Unmasks `buf` in place; `phase` is the offset of `buf[0]` in its frame's
/// payload. Whole 64-byte blocks XOR with a 64-byte pattern, which the
/// compiler vectorises.
pub(crate) fn unmask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let pattern = mask_pattern(key, phase);
    let mut blocks = buf.chunks_exact_mut(pattern.len());
    for block in &mut blocks {
        for (byte, k) in block.iter_mut().zip(&pattern) {
            *byte ^= k;
        }
    }
    for (byte, k) in blocks.into_remainder().iter_mut().zip(&pattern) {
        *byte ^= k;
    }
}

/// Copies masked `src` into `dst` (same length), unmasking on the way: one
/// pass over the bytes.
pub(crate) fn copy_unmasked(dst: &mut [u8], src: &[u8], key: [u8; 4], phase: usize) {
    debug_assert_eq!(dst.len(), src.len());
    let pattern = mask_pattern(key, phase);
    let mut dst_blocks = dst.chunks_exact_mut(pattern.len());
    let mut src_blocks = src.chunks_exact(pattern.len());
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        for ((d, s), k) in d.iter_mut().zip(s).zip(&pattern) {
            *d = s ^ k;
        }
    }
    for ((d, s), k) in dst_blocks.into_remainder().iter_mut().zip(src_blocks.remainder()).zip(&pattern) {
        *d = s ^ k;
    }
}

/// Appends an unmasked server frame (text, pong, ping or close) to `out`.
fn push(frame: Frame, out: &mut Vec<u8>) {
    frame.format(out).expect("writing into a Vec cannot fail");
}

pub(crate) fn push_text(text: &str, out: &mut Vec<u8>) {
    push(Frame::message(text.as_bytes().to_vec(), OpCode::Data(Data::Text), true), out);
}

pub(crate) fn push_pong(payload: &[u8], out: &mut Vec<u8>) {
    push(Frame::pong(payload.to_vec()), out);
}

pub(crate) fn push_ping(payload: &[u8], out: &mut Vec<u8>) {
    push(Frame::ping(payload.to_vec()), out);
}

/// A close frame with `code` and a reason cut to fit the 125-byte limit.
pub(crate) fn push_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason[..end].into() };
    push(Frame::close(Some(frame)), out);
}

/// The code of a close frame's payload (1005 "no status" when it has none).
pub(crate) fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

/// A client's close frame the bridge must fail the connection over
/// (RFC 6455 sections 5.5.1, 7.1.5 and 7.4): the close code to answer
/// with and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadClose {
    pub code: u16,
    pub reason: &'static str,
}

/// Whether a peer may send close code `code`: 1000-1003 and 1007-1014
/// (the registered ones; 1004 is reserved, 1005, 1006 and 1015 are never
/// sent on the wire), 3000-3999 (registered with IANA) and 4000-4999
/// (private use). Everything else, 0-999 included, is invalid.
pub(crate) fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Checks a client's close payload: empty (no status), or a valid code
/// followed by a UTF-8 reason. Returns the client's code (1005, "no
/// status", for an empty payload).
pub(crate) fn check_close(payload: &[u8]) -> Result<u16, BadClose> {
    match payload {
        [] => Ok(1005),
        [_] => Err(BadClose { code: 1002, reason: "close frame with a one-byte payload" }),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !close_code_allowed(code) {
                return Err(BadClose { code: 1002, reason: "close frame with an invalid close code" });
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(BadClose { code: 1007, reason: "close reason is not valid UTF-8" });
            }
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let header =
            FrameHeader { is_final: fin, opcode: OpCode::from(opcode), mask: Some(key), ..FrameHeader::default() };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        let mut body = payload.to_vec();
        unmask(&mut body, key, 0); // masking and unmasking are the same XOR
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn headers_of_every_length_form_parse() {
        for len in [0usize, 125, 126, 65_535, 65_536, 131_000] {
            let payload = vec![7u8; len];
            let bytes = masked_frame(false, 2, &payload, [1, 2, 3, 4]);
            let hlen = header_len(bytes[1]);
            let head = parse_head(&bytes[..hlen]).unwrap();
            assert_eq!(head, FrameHead { fin: false, opcode: Opcode::Binary, len: len as u64, mask: [1, 2, 3, 4] });
            assert_eq!(bytes.len() - hlen, len);
        }
    }

    #[test]
    fn unmasked_reserved_and_oversized_control_frames_are_refused() {
        let mut bytes = masked_frame(true, 2, b"abc", [9, 9, 9, 9]);
        bytes[1] &= 0x7f; // clear the mask bit
        let hlen = header_len(bytes[1]);
        assert_eq!(parse_head(&bytes[..hlen]), Err(ProtocolViolation("client frame not masked")));
        let reserved = masked_frame(true, 3, b"", [0; 4]);
        assert!(parse_head(&reserved[..6]).is_err());
        let mut rsv = masked_frame(true, 2, b"", [0; 4]);
        rsv[0] |= 0x40;
        assert!(parse_head(&rsv[..6]).is_err());
        let long_ping = masked_frame(true, 9, &[0; 126], [0; 4]);
        assert!(parse_head(&long_ping[..header_len(long_ping[1])]).is_err());
        let fragmented_close = masked_frame(false, 8, b"", [0; 4]);
        assert!(parse_head(&fragmented_close[..6]).is_err());
    }

    #[test]
    fn unmasking_in_pieces_at_any_phase_matches_one_pass() {
        let key = [0xa1, 0x5c, 0x03, 0xfe];
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut masked = plain.clone();
        unmask(&mut masked, key, 0);
        for split in [0, 1, 3, 63, 64, 65, 500, 999] {
            let mut a = masked.clone();
            let (head, tail) = a.split_at_mut(split);
            unmask(head, key, 0);
            unmask(tail, key, split);
            assert_eq!(a, plain, "split at {split}");
            let mut b = vec![0u8; plain.len()];
            let (bh, bt) = b.split_at_mut(split);
            copy_unmasked(bh, &masked[..split], key, 0);
            copy_unmasked(bt, &masked[split..], key, split);
            assert_eq!(b, plain, "copy split at {split}");
        }
    }

    #[test]
    fn close_payloads_are_checked_as_rfc_6455_requires() {
        assert_eq!(check_close(b""), Ok(1005));
        for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 3999, 4000, 4999] {
            assert_eq!(check_close(&code.to_be_bytes()), Ok(code), "{code}");
        }
        let mut with_reason = 1000u16.to_be_bytes().to_vec();
        with_reason.extend_from_slice("fin é".as_bytes());
        assert_eq!(check_close(&with_reason), Ok(1000));
        assert_eq!(check_close(&[3]).unwrap_err().code, 1002);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, u16::MAX] {
            assert_eq!(check_close(&code.to_be_bytes()).unwrap_err().code, 1002, "{code}");
        }
        let mut bad_utf8 = 1000u16.to_be_bytes().to_vec();
        bad_utf8
            .extend_from_slice(&[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80]);
        assert_eq!(check_close(&bad_utf8).unwrap_err().code, 1007);
    }

    #[test]
    fn close_reasons_are_cut_to_the_control_frame_limit() {
        let mut out = Vec::new();
        push_close(1009, &"é".repeat(200), &mut out);
        assert_eq!(out[0], 0x88);
        let len = out[1] as usize;
        assert!(len <= MAX_CONTROL_PAYLOAD);
        assert_eq!(close_code(&out[2..]), 1009);
        assert!(std::str::from_utf8(&out[4..2 + len]).is_ok());
    }
}
