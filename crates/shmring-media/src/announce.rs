//! Announcements: a small record that names a stream (its id, its kind and a
//! label), written once per stream by its producer, so that any consumer can
//! say what it receives. The label is the producer's: for a meeting, JSON
//! naming the participant and the track.

use shmring::{Backing, Frame, Producer, SharedBytes};

use crate::error::MediaError;
use crate::format::MEDIA_VERSION;
use crate::format::{ANNOUNCE_HEADER_SIZE, ANNOUNCE_MAGIC, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO, MAX_LABEL};
use crate::sys::shmring_announce_header;
use crate::wire;

/// Which stream id carries what.
///
/// ```
/// use shmring_media::{Announcement, KIND_VIDEO};
///
/// let announcement = Announcement { stream_id: 7, kind: KIND_VIDEO, timestamp_us: 0, label: "camera".into() };
/// let payload = announcement.to_payload()?;
/// assert_eq!(Announcement::from_payload(&payload)?, announcement);
/// # Ok::<(), shmring_media::MediaError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The stream named, as its producer numbers streams.
    pub stream_id: u32,
    /// [`KIND_VIDEO`] or [`KIND_AUDIO`]: what the stream's records are.
    pub kind: u32,
    /// When it was announced, in microseconds.
    pub timestamp_us: i64,
    /// At most [`MAX_LABEL`] bytes.
    pub label: String,
}

impl Announcement {
    /// Bytes of the record: the header and the label.
    pub fn payload_len(&self) -> usize {
        ANNOUNCE_HEADER_SIZE + self.label.len()
    }

    fn check(&self) -> Result<(), MediaError> {
        if self.kind != KIND_VIDEO && self.kind != KIND_AUDIO {
            return Err(MediaError::InvalidInput { reason: "an announced stream is video or audio" });
        }
        if self.label.len() > MAX_LABEL {
            return Err(MediaError::InvalidInput { reason: "label longer than MAX_LABEL bytes" });
        }
        Ok(())
    }

    /// Writes the record into `bytes`, which must be [`payload_len`]
    /// long (a reserved ring slot, say).
    ///
    /// [`payload_len`]: Announcement::payload_len
    pub fn encode_into(&self, bytes: &mut [u8]) -> Result<(), MediaError> {
        self.check()?;
        if bytes.len() != self.payload_len() {
            return Err(MediaError::InvalidInput { reason: "slot is not the announcement's length" });
        }
        let header = shmring_announce_header {
            magic: ANNOUNCE_MAGIC,
            version: MEDIA_VERSION,
            header_size: ANNOUNCE_HEADER_SIZE as u16,
            stream_id: self.stream_id,
            stream_kind: self.kind,
            timestamp_us: self.timestamp_us,
            label_offset: ANNOUNCE_HEADER_SIZE as u32,
            label_length: self.label.len() as u32,
            reserved0: [0; 8],
        };
        wire::write(bytes, &header);
        bytes[ANNOUNCE_HEADER_SIZE..].copy_from_slice(self.label.as_bytes());
        Ok(())
    }

    /// The record's bytes.
    pub fn to_payload(&self) -> Result<Vec<u8>, MediaError> {
        let mut payload = vec![0; self.payload_len()];
        self.encode_into(&mut payload)?;
        Ok(payload)
    }

    /// Reads a ring record of kind [`KIND_ANNOUNCE`].
    pub fn parse<B: Backing>(frame: &Frame<'_, B>) -> Result<Announcement, MediaError> {
        if frame.kind() != KIND_ANNOUNCE {
            return Err(MediaError::WrongKind { found: frame.kind(), expected: KIND_ANNOUNCE });
        }
        Announcement::from_payload(frame.bytes())
    }

    /// Reads an announce payload (a ring record's [`SharedBytes`], or
    /// private bytes). The header and the label are copied out before they
    /// are checked (UTF-8, length), so a producer rewriting the record
    /// meanwhile cannot change what was checked.
    pub fn from_payload<'a>(payload: impl Into<SharedBytes<'a>>) -> Result<Announcement, MediaError> {
        let payload = payload.into();
        let header: shmring_announce_header = wire::read::<_, ANNOUNCE_HEADER_SIZE>(payload)
            .ok_or_else(|| MediaError::Truncated { needed: ANNOUNCE_HEADER_SIZE as u64, len: payload.len() })?;
        if header.magic != ANNOUNCE_MAGIC {
            return Err(MediaError::BadMagic { found: header.magic, expected: ANNOUNCE_MAGIC });
        }
        if header.version != MEDIA_VERSION {
            return Err(MediaError::BadVersion { found: header.version, expected: MEDIA_VERSION });
        }
        let header_size = usize::from(header.header_size);
        if header_size < ANNOUNCE_HEADER_SIZE || header_size > payload.len() {
            return Err(MediaError::BadHeaderSize { found: header.header_size });
        }
        let bad = |reason| MediaError::BadAnnounce { reason };
        if header.stream_kind != KIND_VIDEO && header.stream_kind != KIND_AUDIO {
            return Err(bad("the announced kind is neither video nor audio"));
        }
        let start = header.label_offset as usize;
        let len = header.label_length as usize;
        if start < header_size {
            return Err(bad("label inside the header"));
        }
        if len > MAX_LABEL {
            return Err(bad("label longer than MAX_LABEL bytes"));
        }
        let end = start.checked_add(len).filter(|&end| end <= payload.len());
        let Some(end) = end else {
            return Err(MediaError::Truncated { needed: start as u64 + len as u64, len: payload.len() });
        };
        let label = payload.get(start..end).expect("checked against the payload's length").to_vec();
        let label = String::from_utf8(label).map_err(|_| bad("label is not UTF-8"))?;
        Ok(Announcement {
            stream_id: header.stream_id,
            kind: header.stream_kind,
            timestamp_us: header.timestamp_us,
            label,
        })
    }
}

/// Writes `announcement` into the ring as one record.
pub fn write_announce<B: Backing>(producer: &mut Producer<B>, announcement: &Announcement) -> Result<(), MediaError> {
    announcement.check()?;
    let mut reservation = producer.reserve(announcement.payload_len())?;
    reservation.set_kind(KIND_ANNOUNCE);
    announcement.encode_into(&mut reservation)?;
    reservation.commit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Announcement {
        Announcement { stream_id: 3, kind: KIND_AUDIO, timestamp_us: 42, label: r#"{"participant":"p1"}"#.into() }
    }

    #[test]
    fn round_trip_and_limits() {
        let payload = sample().to_payload().unwrap();
        assert_eq!(payload.len(), 64 + 20);
        assert_eq!(Announcement::from_payload(&payload).unwrap(), sample());
        let long = Announcement { label: "x".repeat(MAX_LABEL + 1), ..sample() };
        assert!(matches!(long.to_payload(), Err(MediaError::InvalidInput { .. })));
        let other = Announcement { kind: KIND_ANNOUNCE, ..sample() };
        assert!(matches!(other.to_payload(), Err(MediaError::InvalidInput { .. })));
    }

    #[test]
    fn lying_headers_are_refused() {
        let good = sample().to_payload().unwrap();
        let with = |offset: usize, bytes: &[u8]| {
            let mut payload = good.clone();
            payload[offset..offset + bytes.len()].copy_from_slice(bytes);
            Announcement::from_payload(&payload)
        };
        assert!(matches!(with(0, b"SHMV"), Err(MediaError::BadMagic { .. })));
        assert!(matches!(with(4, &2u16.to_ne_bytes()), Err(MediaError::BadVersion { .. })));
        assert!(matches!(with(6, &4000u16.to_ne_bytes()), Err(MediaError::BadHeaderSize { .. })));
        assert!(matches!(with(12, &9u32.to_ne_bytes()), Err(MediaError::BadAnnounce { .. })));
        assert!(matches!(with(24, &8u32.to_ne_bytes()), Err(MediaError::BadAnnounce { .. })));
        assert!(matches!(with(24, &u32::MAX.to_ne_bytes()), Err(MediaError::Truncated { .. })));
        assert!(matches!(with(28, &21u32.to_ne_bytes()), Err(MediaError::Truncated { .. })));
        assert!(matches!(with(28, &5000u32.to_ne_bytes()), Err(MediaError::BadAnnounce { .. })));
        assert!(matches!(with(64, &[0xff]), Err(MediaError::BadAnnounce { .. })));
        assert!(matches!(Announcement::from_payload(&good[..63]), Err(MediaError::Truncated { .. })));
    }
}
