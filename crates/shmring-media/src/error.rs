//! What can go wrong when writing or reading media records.

use std::fmt;

/// Errors of the media writers and views.
#[derive(Debug)]
#[non_exhaustive]
pub enum MediaError {
    /// The ring refused the record (full and dropped, consumer gone, ...).
    Ring(shmring::Error),
    /// The record's kind is not the one this view reads.
    WrongKind { found: u32, expected: u32 },
    /// The payload is shorter than its header says it must be.
    Truncated { needed: u64, len: usize },
    /// The header does not start with the magic word of its kind.
    BadMagic { found: u32, expected: u32 },
    /// The header was written by an incompatible layout version.
    BadVersion { found: u16, expected: u16 },
    /// The header's own size field is impossible.
    BadHeaderSize { found: u16 },
    /// An unknown pixel format number.
    UnknownPixelFormat(u32),
    /// An unknown sample format number.
    UnknownSampleFormat(u32),
    /// Width or height is zero or larger than [`crate::MAX_DIMENSION`].
    BadDimensions { width: u32, height: u32 },
    /// The plane count does not match the pixel format.
    BadPlaneCount { found: u32, expected: u32 },
    /// A plane's offset or stride is impossible for this record.
    BadPlane { plane: usize, reason: &'static str },
    /// An audio header field is impossible for this record.
    BadAudio { reason: &'static str },
    /// Sample data would not be aligned for its type in memory.
    Misaligned { offset: u64, align: usize },
    /// An announce header field is impossible for this record.
    BadAnnounce { reason: &'static str },
    /// A writer was handed arguments that do not describe a frame.
    InvalidInput { reason: &'static str },
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaError::Ring(e) => write!(f, "ring: {e}"),
            MediaError::WrongKind { found, expected } => write!(f, "record kind {found}, expected {expected}"),
            MediaError::Truncated { needed, len } => write!(f, "payload of {len} bytes, header needs {needed}"),
            MediaError::BadMagic { found, expected } => write!(f, "magic {found:#010x}, expected {expected:#010x}"),
            MediaError::BadVersion { found, expected } => {
                write!(f, "media layout version {found}, expected {expected}")
            }
            MediaError::BadHeaderSize { found } => write!(f, "impossible header size {found}"),
            MediaError::UnknownPixelFormat(raw) => write!(f, "unknown pixel format {raw}"),
            MediaError::UnknownSampleFormat(raw) => write!(f, "unknown sample format {raw}"),
            MediaError::BadDimensions { width, height } => write!(f, "impossible frame size {width}x{height}"),
            MediaError::BadPlaneCount { found, expected } => write!(f, "{found} planes, format has {expected}"),
            MediaError::BadPlane { plane, reason } => write!(f, "plane {plane}: {reason}"),
            MediaError::BadAudio { reason } => write!(f, "audio header: {reason}"),
            MediaError::Misaligned { offset, align } => {
                write!(f, "samples at offset {offset} are not {align}-byte aligned in memory")
            }
            MediaError::BadAnnounce { reason } => write!(f, "announcement: {reason}"),
            MediaError::InvalidInput { reason } => write!(f, "invalid frame: {reason}"),
        }
    }
}

impl std::error::Error for MediaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MediaError::Ring(e) => Some(e),
            _ => None,
        }
    }
}

impl From<shmring::Error> for MediaError {
    fn from(e: shmring::Error) -> Self {
        MediaError::Ring(e)
    }
}
