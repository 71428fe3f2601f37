//! Everything that can go wrong, said so that the caller knows what to do.

use std::fmt;
use std::io;

/// Errors of every shmring operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A ring name must be 1 to 48 ASCII letters, digits, `.`, `_` or `-`,
    /// not starting with `.`.
    BadName { name: String, reason: &'static str },
    /// The capacity asked for cannot be a ring.
    BadCapacity { requested: u64, reason: &'static str },
    /// The descriptor does not hold a shmring segment (wrong magic word).
    NotARing { found: u64 },
    /// The creator had not finished writing the header.
    NotInitialised,
    /// The segment was made by an incompatible version of shmring.
    VersionMismatch { found: u32, expected: u32 },
    /// The header's sizes contradict each other or this build.
    BadGeometry { reason: &'static str },
    /// The descriptor is not a sealed segment of the right size.
    BadSegment { reason: String },
    /// A payload larger than the ring's largest record.
    TooLarge { len: u64, max: u64 },
    /// The ring is full and the producer's policy is to fail.
    Full,
    /// The ring is full and the frame was dropped (and counted) under the
    /// producer's drop policy.
    Dropped,
    /// Waiting for space or for a frame took longer than allowed.
    Timeout,
    /// A wait for a frame was interrupted by an `Interrupter`.
    Interrupted,
    /// The consumer process is gone: stop sending, or wait for a new one.
    ConsumerGone { pid: u32 },
    /// Every producer slot of the ring is taken.
    TooManyProducers { max: usize },
    /// The segment holds something the consumer refuses to trust. The
    /// record or cursor was counted and stepped over when possible.
    Corrupt { position: u64, reason: String },
    /// The ring already has a live owner.
    InUse { name: String, pid: u32 },
    /// A peer was refused by the rendezvous socket, or refused us.
    PermissionDenied { reason: String },
    /// A descriptor spec (`SHMRING_FD`, `--shmring-fd`) could not be parsed.
    BadDescriptorSpec { spec: String, reason: &'static str },
    /// The consumer holds as many leases as its limit allows: drop some,
    /// copy frames out instead, or raise the limit.
    TooManyHeld { held: usize, limit: usize },
    /// An operating-system call failed.
    Os { op: &'static str, source: io::Error },
}

impl Error {
    pub(crate) fn os(op: &'static str) -> Self {
        Error::Os { op, source: io::Error::last_os_error() }
    }

    pub(crate) fn os_from(op: &'static str, source: io::Error) -> Self {
        Error::Os { op, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadName { name, reason } => write!(
                f,
                "bad ring name {name:?}: {reason} (use 1-48 characters from A-Z a-z 0-9 . _ -)"
            ),
            Error::BadCapacity { requested, reason } => {
                write!(f, "bad capacity {requested} bytes: {reason}")
            }
            Error::NotARing { found } => write!(
                f,
                "not a shmring segment (magic word {found:#018x}); check the descriptor you were given"
            ),
            Error::NotInitialised => write!(f, "the segment's creator has not finished initialising it; retry"),
            Error::VersionMismatch { found, expected } => write!(
                f,
                "segment layout version {found}, this build speaks {expected}: run the same shmring version on both sides"
            ),
            Error::BadGeometry { reason } => write!(f, "corrupt segment header: {reason}"),
            Error::BadSegment { reason } => write!(f, "refusing segment: {reason}"),
            Error::TooLarge { len, max } => write!(
                f,
                "payload of {len} bytes exceeds the ring's largest record ({max} bytes): create a larger ring"
            ),
            Error::Full => write!(f, "ring full"),
            Error::Dropped => write!(f, "ring full: frame dropped and counted"),
            Error::Timeout => write!(f, "timed out"),
            Error::Interrupted => write!(f, "the wait for a frame was interrupted"),
            Error::ConsumerGone { pid } => write!(
                f,
                "the consumer (pid {pid}) is gone: stop sending or wait for a new consumer to attach"
            ),
            Error::TooManyProducers { max } => {
                write!(f, "all {max} producer slots of the ring are in use")
            }
            Error::Corrupt { position, reason } => {
                write!(f, "corrupt record at position {position}: {reason}")
            }
            Error::InUse { name, pid } => write!(
                f,
                "ring {name:?} is in use by live process {pid}: pick another name or stop that process"
            ),
            Error::PermissionDenied { reason } => write!(f, "permission denied: {reason}"),
            Error::BadDescriptorSpec { spec, reason } => write!(
                f,
                "bad descriptor spec {spec:?}: {reason} (expected MEMFD or MEMFD:DATA_SEM:SPACE_SEM)"
            ),
            Error::TooManyHeld { held, limit } => {
                write!(f, "{held} leases held, the limit is {limit}: drop some or copy frames out")
            }
            Error::Os { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
