//! The payload every transport carries, and the check every consumer makes.
//!
//! A message starts with a 64-byte header (magic, kind, sequence, send time
//! on `CLOCK_MONOTONIC`, total length). After it, one 8-byte word every
//! [`SAMPLE_STRIDE`] bytes (and the last 8 bytes) is stamped with a value
//! derived from the sequence and the offset. The consumer reads those words
//! back and compares their checksum with the expected one: a transport that
//! delivers a stale, torn or short message is caught, and every transport's
//! consumer touches its payload the same way (one cache line per 4 KiB
//! page), whatever the transport.

/// Length of the header at the start of every message.
pub const HEADER_LEN: usize = 64;
/// Distance between stamped sample words.
pub const SAMPLE_STRIDE: usize = 4096;
/// First word of every header ("SHMB" little-endian).
pub const MAGIC: u32 = u32::from_le_bytes(*b"SHMB");

/// Kind of message.
pub mod kind {
    /// A data message (a frame).
    pub const DATA: u32 = 1;
    /// The producer's last message: no more frames follow.
    pub const END: u32 = 2;
    /// Sent before the timed run to warm caches, page tables and socket
    /// buffers; checked, not counted.
    pub const WARMUP: u32 = 3;
}

/// The fields of a message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub sequence: u64,
    /// When the producer started handing the message over, in
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub send_ns: u64,
    /// Length of the whole message, header included.
    pub len: u64,
}

/// Why a message failed its check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Shorter than a header, or a wrong magic.
    BadHeader,
    /// The header's length differs from the bytes delivered.
    WrongLength { header: u64, delivered: u64 },
    /// A sample word differs from what the producer stamped.
    BadSample,
}

/// Writes `header` into the first [`HEADER_LEN`] bytes of `buf`.
pub fn write_header(buf: &mut [u8], header: &Header) {
    let h = &mut buf[..HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&header.kind.to_le_bytes());
    h[8..16].copy_from_slice(&header.sequence.to_le_bytes());
    h[16..24].copy_from_slice(&header.send_ns.to_le_bytes());
    h[24..32].copy_from_slice(&header.len.to_le_bytes());
    h[32..].fill(0);
}

/// Reads the header at the start of `buf`; `None` if it is too short or
/// the magic is wrong.
pub fn read_header(buf: &[u8]) -> Option<Header> {
    let h = buf.get(..HEADER_LEN)?;
    let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
    if u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) != MAGIC {
        return None;
    }
    Some(Header {
        kind: u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")),
        sequence: word(8),
        send_ns: word(16),
        len: word(24),
    })
}

/// Offsets of the sample words in a message of `len` bytes.
pub fn sample_offsets(len: usize) -> impl Iterator<Item = usize> {
    let strided = (HEADER_LEN..).step_by(SAMPLE_STRIDE).take_while(move |&o| o + 8 <= len);
    let last_strided =
        if len >= HEADER_LEN + 8 { HEADER_LEN + (len - HEADER_LEN - 8) / SAMPLE_STRIDE * SAMPLE_STRIDE } else { 0 };
    let tail = (len >= HEADER_LEN + 8 && len - 8 >= last_strided + 8).then(|| len - 8);
    strided.chain(tail)
}

/// The word the producer stamps at `offset` of message `sequence`.
pub fn sample_word(sequence: u64, offset: usize) -> u64 {
    ((sequence << 32) ^ offset as u64 ^ 0x5eed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn fold(sum: u64, word: u64) -> u64 {
    sum.rotate_left(7) ^ word
}

/// Stamps a complete message into `buf` (its whole length): the header and
/// the sample words. The bytes in between are left as they are: they stand
/// for the frame's content, produced before the transport is involved.
pub fn stamp(buf: &mut [u8], kind: u32, sequence: u64, send_ns: u64) {
    let len = buf.len();
    write_header(buf, &Header { kind, sequence, send_ns, len: len as u64 });
    for offset in sample_offsets(len) {
        buf[offset..offset + 8].copy_from_slice(&sample_word(sequence, offset).to_le_bytes());
    }
}

/// Checksum of the sample words as delivered.
pub fn checksum(buf: &[u8]) -> u64 {
    sample_offsets(buf.len())
        .fold(0, |sum, o| fold(sum, u64::from_le_bytes(buf[o..o + 8].try_into().expect("8 bytes"))))
}

/// Checksum the sample words of message `sequence` must have.
pub fn expected_checksum(len: usize, sequence: u64) -> u64 {
    sample_offsets(len).fold(0, |sum, o| fold(sum, sample_word(sequence, o)))
}

/// The consumer's check of one delivered message: header, length, and the
/// checksum of the sample words.
pub fn verify(buf: &[u8]) -> Result<Header, Fault> {
    let header = read_header(buf).ok_or(Fault::BadHeader)?;
    if header.len != buf.len() as u64 {
        return Err(Fault::WrongLength { header: header.len, delivered: buf.len() as u64 });
    }
    if checksum(buf) != expected_checksum(buf.len(), header.sequence) {
        return Err(Fault::BadSample);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_message_verifies() {
        for len in [64, 72, 100, 4096, 4160, crate::FRAME_1080P] {
            let mut buf = vec![0u8; len];
            stamp(&mut buf, kind::DATA, 42, 7);
            let header = verify(&buf).expect("intact");
            assert_eq!((header.sequence, header.send_ns, header.len), (42, 7, len as u64));
        }
    }

    #[test]
    fn sample_offsets_do_not_overlap() {
        for len in [64, 71, 72, 79, 80, 4160, 4168, 4175, 8192, crate::FRAME_1080P] {
            let offsets: Vec<usize> = sample_offsets(len).collect();
            assert!(offsets.windows(2).all(|w| w[0] + 8 <= w[1]), "{len}: {offsets:?}");
            assert!(offsets.iter().all(|&o| o >= HEADER_LEN && o + 8 <= len));
        }
    }

    #[test]
    fn stale_or_torn_message_is_caught() {
        let mut buf = vec![0u8; crate::FRAME_1080P];
        stamp(&mut buf, kind::DATA, 1, 0);
        let mut stale = buf.clone();
        stamp(&mut buf, kind::DATA, 2, 0);
        stale[..HEADER_LEN].copy_from_slice(&buf[..HEADER_LEN]);
        assert_eq!(verify(&stale), Err(Fault::BadSample));
        assert!(matches!(verify(&buf[..4096]), Err(Fault::WrongLength { .. })));
        assert_eq!(verify(&[0u8; 64]), Err(Fault::BadHeader));
    }
}
