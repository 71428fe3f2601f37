//! The file a page writes its frames into (the file lane): its format, how
//! the bridge finds it without trusting the page, and how it reads from it.
//!
//! The page's JS client keeps a fixed-size file in its origin's private
//! file system (OPFS); with the browser's profile on tmpfs that is an
//! ordinary file of the browser's user. The page writes a header at offset
//! 0 (a magic, a random 128-bit token, the file's size) and declares the
//! token and size over its WebSocket. The bridge then looks for the file
//! itself, never at a path the page gives: only under the profile
//! directories it was started with, never following a symbolic link
//! (every directory and the file are opened with `O_NOFOLLOW` relative to
//! their parent), never leaving the directory's file system, only regular
//! files owned by the bridge's own user whose size is the declared one, and
//! it keeps the first whose header carries the token.
//!
//! Frames are read with `pread` into the caller's buffer (a reserved ring
//! slot), never through a mapping: the page's browser can truncate or
//! replace its file at any time, and a read then comes back short or finds
//! the file unlinked, where a mapping would fault (SIGBUS).

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, statfs, TMPFS_MAGIC};
use nix::unistd::geteuid;

/// The first bytes of a frame file.
pub const FILE_MAGIC: [u8; 8] = *b"SHMRFILE";
/// Version of the file's header layout.
pub const FILE_VERSION: u32 = 1;
/// Bytes of the header the page writes at offset 0.
pub const FILE_HEADER_LEN: usize = 64;
/// Where the data region starts: frames live between here and the end.
pub const DATA_OFFSET: u64 = 4096;
/// Smallest and largest file the bridge accepts.
pub const MIN_FILE_SIZE: u64 = DATA_OFFSET + (1 << 20);
pub const MAX_FILE_SIZE: u64 = 4 << 30;

/// How deep and how wide a search goes before it gives up: a browser
/// profile holds a few hundred files, a few directories deep.
const MAX_DEPTH: usize = 12;
const MAX_ENTRIES: usize = 50_000;

/// The header a page writes at offset 0 (host byte order):
/// magic (8), version (u32), data offset (u32), token (16), file size (u64).
pub fn file_header(token: &[u8; 16], size: u64) -> [u8; FILE_HEADER_LEN] {
    let mut header = [0u8; FILE_HEADER_LEN];
    header[..8].copy_from_slice(&FILE_MAGIC);
    header[8..12].copy_from_slice(&FILE_VERSION.to_ne_bytes());
    header[12..16].copy_from_slice(&(DATA_OFFSET as u32).to_ne_bytes());
    header[16..32].copy_from_slice(token);
    header[32..40].copy_from_slice(&size.to_ne_bytes());
    header
}

/// Why no file lane could be opened; the text goes back to the page.
#[derive(Debug, PartialEq, Eq)]
pub enum FindError {
    /// The bridge was started without `--profile-dir`.
    NoProfileDirs,
    /// The declared size is outside what the bridge accepts.
    BadSize(u64),
    /// No file with the token under any profile directory.
    NotFound { searched: usize },
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FindError::NoProfileDirs => write!(f, "the bridge was given no profile directory (--profile-dir)"),
            FindError::BadSize(size) => {
                write!(f, "file size {size} outside {MIN_FILE_SIZE}..={MAX_FILE_SIZE}")
            }
            FindError::NotFound { searched } => write!(
                f,
                "no file with this token under the bridge's profile directories ({searched} entries looked at; \
                 an incognito or in-memory profile keeps its files out of reach)"
            ),
        }
    }
}

/// Why a frame could not be read from an open file.
#[derive(Debug, PartialEq, Eq)]
pub enum FileLost {
    /// The file is shorter (or longer) than when it was found.
    Resized { size: u64, expected: u64 },
    /// The file was unlinked (removed, renamed over, or swapped for a link).
    Unlinked,
    /// A read failed.
    Io(String),
}

impl std::fmt::Display for FileLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileLost::Resized { size, expected } => {
                write!(f, "the frame file was truncated or resized ({size} bytes, was {expected})")
            }
            FileLost::Unlinked => write!(f, "the frame file was removed or replaced"),
            FileLost::Io(e) => write!(f, "reading the frame file: {e}"),
        }
    }
}

/// A page's frame file, found and opened read-only.
#[derive(Debug)]
pub struct FrameFile {
    file: File,
    size: u64,
    /// Where it was found (for logs; never opened again by path).
    pub path: PathBuf,
    /// Whether it lives on tmpfs (otherwise its pages are written back to disk).
    pub on_tmpfs: bool,
}

impl FrameFile {
    /// Bytes of the data region.
    pub fn capacity(&self) -> u64 {
        self.size - DATA_OFFSET
    }

    /// Reads `buf.len()` bytes at `offset` of the data region (which the
    /// caller has checked lies inside it), then checks that the file is
    /// still the one found, at its size: bytes read from a file that was
    /// truncated, resized or unlinked meanwhile are not to be trusted.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), FileLost> {
        debug_assert!(offset + buf.len() as u64 <= self.capacity());
        match self.file.read_exact_at(buf, DATA_OFFSET + offset) {
            Ok(()) => self.check(),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // A short read: say how it was changed.
                self.check()?;
                Err(FileLost::Io("short read".into()))
            }
            Err(e) => Err(FileLost::Io(e.to_string())),
        }
    }

    /// `fstat` of the open descriptor: still linked, still its size.
    pub fn check(&self) -> Result<(), FileLost> {
        let meta = self.file.metadata().map_err(|e| FileLost::Io(e.to_string()))?;
        if meta.nlink() == 0 {
            return Err(FileLost::Unlinked);
        }
        if meta.size() != self.size {
            return Err(FileLost::Resized { size: meta.size(), expected: self.size });
        }
        Ok(())
    }
}

/// Whether `path` is on tmpfs (`None` when it cannot be told, e.g. it does
/// not exist yet).
pub fn is_on_tmpfs(path: &Path) -> Option<bool> {
    statfs(path).ok().map(|s| s.filesystem_type() == TMPFS_MAGIC)
}

/// Looks for the file whose header carries `token` and whose size is
/// `size`, under `dirs` (see the module's documentation for the rules).
pub fn find(dirs: &[PathBuf], token: &[u8; 16], size: u64) -> Result<FrameFile, FindError> {
    if dirs.is_empty() {
        return Err(FindError::NoProfileDirs);
    }
    if !(MIN_FILE_SIZE..=MAX_FILE_SIZE).contains(&size) {
        return Err(FindError::BadSize(size));
    }
    let mut search = Search { token, size, uid: geteuid().as_raw(), entries: 0 };
    for dir in dirs {
        let Ok(listing) = Dir::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) else {
            continue;
        };
        let Ok(meta) = nix::sys::stat::fstat(listing.as_raw_fd()) else {
            continue;
        };
        if let Some(found) = search.walk(listing, dir.clone(), meta.st_dev, 0) {
            return Ok(found);
        }
    }
    Err(FindError::NotFound { searched: search.entries })
}

struct Search<'a> {
    token: &'a [u8; 16],
    size: u64,
    uid: u32,
    entries: usize,
}

impl Search<'_> {
    /// Searches the open directory `listing` (named `path`, on device `dev`).
    fn walk(&mut self, mut listing: Dir, path: PathBuf, dev: u64, depth: usize) -> Option<FrameFile> {
        let dir_fd = listing.as_raw_fd();
        let mut subdirs = Vec::new();
        for entry in listing.iter() {
            let Ok(entry) = entry else { break };
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return None;
            }
            // A link is looked at as itself, never followed.
            let Ok(stat) = fstatat(Some(dir_fd), name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            if stat.st_dev != dev || stat.st_uid != self.uid {
                continue;
            }
            let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR && depth < MAX_DEPTH {
                subdirs.push(name.to_owned());
            } else if kind == SFlag::S_IFREG && stat.st_size as u64 == self.size {
                if let Some(found) = self.try_file(dir_fd, name, &path, (stat.st_dev, stat.st_ino)) {
                    return Some(found);
                }
            }
        }
        for name in subdirs {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let Ok(sub) = Dir::openat(Some(dir_fd), name.as_c_str(), flags, Mode::empty()) else {
                continue;
            };
            if let Some(found) = self.walk(sub, path.join(OsStr::from_bytes(name.to_bytes())), dev, depth + 1) {
                return Some(found);
            }
        }
        None
    }

    /// Opens the regular file `name` of `dir_fd` (no link followed, no
    /// blocking open of a FIFO put there meanwhile), checks it is still the
    /// file seen, and reads its header.
    fn try_file(&self, dir_fd: RawFd, name: &CStr, dir: &Path, seen: (u64, u64)) -> Option<FrameFile> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = openat(Some(dir_fd), name, flags, Mode::empty()).ok()?;
        // SAFETY: `openat` just returned this descriptor and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let meta = file.metadata().ok()?;
        if !meta.file_type().is_file() || (meta.dev(), meta.ino()) != seen || meta.uid() != self.uid {
            return None;
        }
        if meta.size() != self.size || meta.nlink() == 0 {
            return None;
        }
        let mut header = [0u8; FILE_HEADER_LEN];
        file.read_exact_at(&mut header, 0).ok()?;
        if header != file_header(self.token, self.size) {
            return None;
        }
        let on_tmpfs = fstatfs(file.as_fd()).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC);
        let path = dir.join(OsStr::from_bytes(name.to_bytes()));
        Some(FrameFile { file, size: self.size, path, on_tmpfs })
    }
}
