//! What a command reports when it fails: a message and the exit code a
//! shell script can act on (listed in `shmring --help`).

use std::fmt::Display;

use shmring::Error;

/// Exit codes.
pub mod code {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NO_SUCH_RING: u8 = 3;
    pub const CORRUPT: u8 = 4;
    pub const IN_USE: u8 = 5;
}

#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub type Outcome = Result<(), Failure>;

impl Failure {
    pub fn new(code: u8, message: impl Display) -> Failure {
        Failure { code, message: message.to_string() }
    }

    pub fn failed(message: impl Display) -> Failure {
        Failure::new(code::FAILED, message)
    }

    pub fn usage(message: impl Display) -> Failure {
        Failure::new(code::USAGE, message)
    }

    /// A ring error met while working on ring `name`.
    pub fn ring(name: &str, error: Error) -> Failure {
        let code = match &error {
            Error::BadName { .. } | Error::BadCapacity { .. } | Error::BadDescriptorSpec { .. } => code::USAGE,
            Error::NotARing { .. }
            | Error::NotInitialised
            | Error::VersionMismatch { .. }
            | Error::BadGeometry { .. }
            | Error::BadSegment { .. }
            | Error::Corrupt { .. } => code::CORRUPT,
            Error::InUse { .. } => code::IN_USE,
            Error::Os { op, source } if op.starts_with("connect to the ring") => {
                use std::io::ErrorKind;
                if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) {
                    return Failure::new(
                        code::NO_SUCH_RING,
                        format!(
                            "no ring named {name:?}: nothing serves {} (create it with `shmring create {name}`)",
                            shmring::socket_path(name).display()
                        ),
                    );
                }
                code::FAILED
            }
            _ => code::FAILED,
        };
        let message = match &error {
            Error::NotARing { .. }
            | Error::NotInitialised
            | Error::VersionMismatch { .. }
            | Error::BadGeometry { .. }
            | Error::BadSegment { .. } => format!("ring {name:?} is unusable: {error}"),
            Error::InUse { pid, .. } if *pid != 0 => {
                format!("ring {name:?} is in use by live process {pid} (a ring has one consumer, one owner)")
            }
            _ => format!("ring {name:?}: {error}"),
        };
        Failure { code, message }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::failed(error)
    }
}
