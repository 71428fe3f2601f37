//! Ring names: what is allowed, and where the named objects of a ring live.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::layout::MAX_NAME_LEN;

/// Checks a ring name: 1 to 48 bytes of `A-Z a-z 0-9 . _ -`, not starting
/// with `.` or `-` (it becomes part of file and semaphore names).
pub fn validate(name: &str) -> Result<()> {
    let bad = |reason| Err(Error::BadName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 48 bytes");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("starts with '.' or '-'");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("holds a character other than A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

/// The directory of rendezvous sockets: `$XDG_RUNTIME_DIR/shmring`, or
/// `/tmp/shmring-UID` when that is unset. Created with mode 0700.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("SHMRING_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("shmring"),
            // SAFETY: getuid has no preconditions and cannot fail.
            _ => PathBuf::from(format!("/tmp/shmring-{}", unsafe { libc::getuid() })),
        },
    }
}

/// The rendezvous socket of ring `name`.
pub fn socket_path(name: &str) -> PathBuf {
    runtime_dir().join(format!("{name}.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "bot-17.video", "A_b-c.9", &"x".repeat(48)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "é", "a\0b", &"x".repeat(49)] {
            assert!(matches!(validate(bad), Err(Error::BadName { .. })), "{bad:?}");
        }
    }
}
