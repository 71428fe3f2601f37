//! Ring names: what is allowed, and where the named objects of a ring live.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// Creates the runtime directory with mode 0700 and checks that we own it
/// and nobody else can enter it.
pub fn ensure_runtime_dir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(Error::os_from("create runtime directory", e)),
    }
    let meta = std::fs::metadata(dir).map_err(|e| Error::os_from("stat runtime directory", e))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(Error::PermissionDenied {
            reason: format!("{} belongs to uid {}, not to us ({uid})", dir.display(), meta.uid()),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::os_from("chmod runtime directory", e))?;
    }
    Ok(())
}

/// The file naming the process that owns ring `name`.
pub fn owner_path(name: &str) -> PathBuf {
    runtime_dir().join(format!("{name}.owner"))
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
