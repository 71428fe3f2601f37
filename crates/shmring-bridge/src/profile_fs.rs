//! Where a browser's profile lives, and so the file lane's frame files: a
//! tmpfs of its own mounted `huge=within_size` when this process may mount
//! one (root), else a fresh directory in `/dev/shm`. On the huge-page tmpfs
//! a 3 MB frame's write (the page) and read (the bridge) walk two 2 MiB
//! pages rather than 760 of 4 KiB, which is what makes the file lane cheap
//! for the browser.
//!
//! One place for the launcher (`shmring chromium`, stock path) and the
//! bot bench alike, so that the bench measures the profile the launcher
//! runs with. A mount outlives a process killed before it could unmount
//! it: [`ProfileDir::mount`] first unmounts and removes those of processes
//! that are gone ([`unmount_abandoned`]).

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The mount options of a profile's own tmpfs: huge pages where a file is
/// big enough for them, no more than half the memory (as `/dev/shm`).
pub const TMPFS_OPTIONS: &str = "huge=within_size,size=50%,mode=0700";

/// A fresh directory's path (not created yet), `PREFIX-PID-NANOS`, in
/// `/dev/shm` where that is a tmpfs, else in the temporary directory.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if crate::frame_file::is_on_tmpfs(shm) == Some(true) { shm.to_path_buf() } else { std::env::temp_dir() };
    base.join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    ))
}

/// A directory for profiles, unmounted (when mounted here) and removed
/// with everything in it when dropped.
#[derive(Debug)]
pub struct ProfileDir {
    dir: PathBuf,
    mounted: bool,
    mount_error: Option<String>,
    reclaimed: Vec<(PathBuf, u32)>,
}

impl ProfileDir {
    /// Makes `dir` (a [`fresh_dir`]) and mounts a tmpfs with
    /// [`TMPFS_OPTIONS`] on it when this process may; else `dir` stays a
    /// plain directory where it is ([`ProfileDir::mount_error`] says why).
    /// First unmounts the abandoned mounts beside it.
    pub fn mount(dir: PathBuf) -> io::Result<ProfileDir> {
        std::fs::create_dir_all(&dir)?;
        let reclaimed = unmount_abandoned(&dir);
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let (mounted, mount_error) = match mount(Some("tmpfs"), &dir, Some("tmpfs"), flags, Some(TMPFS_OPTIONS)) {
            Ok(()) => (true, None),
            Err(e) => (false, Some(io::Error::from(e).to_string())),
        };
        Ok(ProfileDir { dir, mounted, mount_error, reclaimed })
    }

    /// Makes `dir` a plain directory (no mount), removed when dropped.
    pub fn create(dir: PathBuf) -> io::Result<ProfileDir> {
        std::fs::create_dir_all(&dir)?;
        Ok(ProfileDir { dir, mounted: false, mount_error: None, reclaimed: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether a tmpfs with [`TMPFS_OPTIONS`] was mounted here.
    pub fn mounted(&self) -> bool {
        self.mounted
    }

    /// Why [`ProfileDir::mount`] could not mount (it takes root).
    pub fn mount_error(&self) -> Option<&str> {
        self.mount_error.as_deref()
    }

    /// The abandoned mounts [`ProfileDir::mount`] unmounted and removed,
    /// each with the pid that was gone.
    pub fn reclaimed(&self) -> &[(PathBuf, u32)] {
        &self.reclaimed
    }

    /// Which filesystem the directory is on, in words: "a tmpfs of its own
    /// mounted huge=within_size", or the mount it is in with its type and
    /// huge-page setting ("/dev/shm (tmpfs, huge=never)").
    pub fn filesystem(&self) -> String {
        if self.mounted {
            return "a tmpfs of its own mounted huge=within_size".to_string();
        }
        let Some((point, fstype, options)) = mount_of(&self.dir) else { return "unknown".to_string() };
        if fstype != "tmpfs" {
            return format!("{point} ({fstype})");
        }
        let huge = options.split(',').find(|o| o.starts_with("huge=")).unwrap_or("huge=never");
        format!("{point} (tmpfs, {huge})")
    }
}

impl Drop for ProfileDir {
    fn drop(&mut self) {
        if self.mounted {
            unmount(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The mount that holds `path`: its mount point, type and options, from
/// `/proc/self/mounts` (the last of the longest matching point: the one on
/// top).
fn mount_of(path: &Path) -> Option<(String, String, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_, point, fstype, options) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point).then(|| (point.to_string(), fstype.to_string(), options.to_string()))
        })
        .fold(None, |best: Option<(String, String, String)>, m| match &best {
            Some(b) if b.0.len() > m.0.len() => best,
            _ => Some(m),
        })
}

/// Detaches the mount at `point`: a process still holding a file there
/// (a browser's crash handler) does not keep it busy.
fn unmount(point: &Path) -> bool {
    umount2(point, MntFlags::MNT_DETACH).is_ok()
}

/// Unmounts and removes the tmpfs mounts of processes killed before they
/// could: mounts in the directory of `fresh` named as [`fresh_dir`] named
/// it (the same prefix) whose pid is gone. A live pid (even a reused one)
/// keeps its mount. Returns each mount removed, with its pid.
pub fn unmount_abandoned(fresh: &Path) -> Vec<(PathBuf, u32)> {
    let mut removed = Vec::new();
    let (Some(parent), Some(name)) = (fresh.parent(), fresh.file_name().and_then(|n| n.to_str())) else {
        return removed;
    };
    // `PREFIX-PID-NANOS`: this directory's own name says what the prefix is.
    let Some(prefix) = name.rsplitn(3, '-').nth(2).map(|p| format!("{p}-")) else { return removed };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return removed };
    for line in mounts.lines() {
        let mut fields = line.split(' ');
        let (Some(_), Some(point), Some("tmpfs")) = (fields.next(), fields.next(), fields.next()) else { continue };
        let point = Path::new(point);
        let Some(pid) = (point.parent() == Some(parent))
            .then(|| point.file_name()?.to_str()?.strip_prefix(&prefix)?.split('-').next()?.parse::<u32>().ok())
            .flatten()
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if unmount(point) {
            let _ = std::fs::remove_dir_all(point);
            removed.push((point.to_path_buf(), pid));
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_dir_is_named_prefix_pid_nanos() {
        let dir = fresh_dir("shmring-test-profile");
        let name = dir.file_name().unwrap().to_str().unwrap();
        let rest = name.strip_prefix("shmring-test-profile-").unwrap();
        let (pid, nanos) = rest.split_once('-').unwrap();
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
        assert!(nanos.parse::<u128>().is_ok(), "{name}");
    }

    #[test]
    fn a_plain_profile_dir_says_its_filesystem_and_is_removed_on_drop() {
        let dir = ProfileDir::create(fresh_dir("shmring-test-profile")).unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.is_dir());
        assert!(!dir.mounted());
        let filesystem = dir.filesystem();
        assert!(!filesystem.is_empty() && filesystem != "unknown", "{filesystem}");
        if path.starts_with("/dev/shm") {
            assert!(filesystem.starts_with("/dev/shm (tmpfs, huge="), "{filesystem}");
        }
        std::fs::write(path.join("file"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_mounted_profile_dir_is_a_huge_tmpfs_or_says_why_not() {
        let dir = ProfileDir::mount(fresh_dir("shmring-test-profile")).unwrap();
        let path = dir.path().to_path_buf();
        let mount = mount_of(&path).unwrap();
        if dir.mounted() {
            assert_eq!((mount.0.as_str(), mount.1.as_str()), (path.to_str().unwrap(), "tmpfs"));
            assert!(mount.2.contains("huge=within_size"), "{mount:?}");
            assert_eq!(dir.filesystem(), "a tmpfs of its own mounted huge=within_size");
        } else {
            assert!(dir.mount_error().is_some());
            assert_ne!(mount.0, path.to_str().unwrap());
        }
        drop(dir);
        assert!(!path.exists());
        assert!(mount_of(&path).is_none_or(|m| m.0 != path.to_str().unwrap()), "unmounted");
    }
}
