//! What a crashed consumer leaves behind (a rendezvous socket, its owner
//! file, and the named semaphores of rings of layout version 2) and taking
//! it back.
//!
//! A named ring is owned through `RUNTIME_DIR/NAME.owner`, created with
//! `O_EXCL` and holding the owner's pid and start time. Creating a ring whose
//! owner file names a live process is refused; one naming a dead process
//! (or a recycled pid) is stale, and everything of that name is removed
//! before the new ring takes the name.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::liveness::{self, Liveness};
use crate::name;

/// Where glibc kept the semaphores of rings of layout version 2 (version 3
/// keeps its signalling words in the segment): found and removed as
/// leftovers.
fn semaphore_path(ring: &str, role: &str) -> String {
    format!("/dev/shm/sem.shmring.{ring}.{role}")
}

/// Ownership of a ring name; the owner file is removed on drop.
#[derive(Debug)]
pub(crate) struct OwnerFile {
    path: PathBuf,
}

impl Drop for OwnerFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes ring name `ring` for this process, reclaiming leftovers of a dead
/// owner.
pub(crate) fn take_name(ring: &str) -> Result<OwnerFile> {
    let path = name::owner_path(ring);
    name::ensure_runtime_dir(path.parent().expect("owner file has a directory"))?;
    for _ in 0..2 {
        let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        match created {
            Ok(mut file) => {
                let line = format!("{} {}\n", liveness::own_pid(), liveness::own_start_time());
                file.write_all(line.as_bytes()).map_err(|e| Error::os_from("write owner file", e))?;
                // We own the name: objects still there are leftovers of an
                // owner that died before writing its owner file.
                remove_named_objects(ring);
                return Ok(OwnerFile { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_owner(&path) {
                Some((pid, start)) if liveness::check(pid, start) == Liveness::Alive => {
                    return Err(Error::InUse { name: ring.to_string(), pid });
                }
                owner => {
                    #[cfg(feature = "tracing")]
                    tracing::info!(ring, dead_owner = ?owner.map(|o| o.0), "reclaiming leftovers of a dead owner");
                    let _ = owner;
                    remove_named_objects(ring);
                    let _ = std::fs::remove_file(&path);
                }
            },
            Err(e) => return Err(Error::os_from("create owner file", e)),
        }
    }
    Err(Error::InUse { name: ring.to_string(), pid: 0 })
}

fn read_owner(path: &std::path::Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Removes the rendezvous socket (and old semaphores) of ring `ring`.
fn remove_named_objects(ring: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for role in ["data", "space"] {
        let path = PathBuf::from(semaphore_path(ring, role));
        if std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    let socket = name::socket_path(ring);
    if std::fs::remove_file(&socket).is_ok() {
        removed.push(socket);
    }
    removed
}

/// The named objects of one ring found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub name: String,
    /// Pid in the owner file, if there is one.
    pub owner_pid: Option<u32>,
    /// Whether that owner is alive (then nothing is removed).
    pub owner_alive: bool,
    /// A process that has the ring's segment mapped: the ring is in use,
    /// whatever its owner file says (its owner may keep its files in
    /// another runtime directory), and nothing is removed.
    pub mapped_by: Option<u32>,
    pub paths: Vec<PathBuf>,
}

impl Leftover {
    /// Whether something still uses the ring.
    pub fn in_use(&self) -> bool {
        self.owner_alive || self.mapped_by.is_some()
    }
}

/// A process that has the segment of ring `ring` mapped, from
/// `/proc/PID/maps` (a memfd maps as `/memfd:shmring.NAME (deleted)`).
fn mapped_by(ring: &str) -> Option<u32> {
    let segment = format!("/memfd:shmring.{ring} (deleted)");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { continue };
        if maps.lines().any(|line| line.ends_with(segment.as_str())) {
            return Some(pid);
        }
    }
    None
}

/// Lists every ring name with objects on this machine: sockets and owner
/// files in the runtime directory, old semaphores in `/dev/shm`.
pub fn scan() -> Vec<Leftover> {
    let mut names = std::collections::BTreeMap::<String, Vec<PathBuf>>::new();
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = file.strip_prefix("sem.shmring.") else { continue };
            let Some((ring, _role)) = rest.rsplit_once('.') else { continue };
            names.entry(ring.to_string()).or_default().push(entry.path());
        }
    }
    if let Ok(entries) = std::fs::read_dir(name::runtime_dir()) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let ring = file.strip_suffix(".sock").or_else(|| file.strip_suffix(".owner"));
            if let Some(ring) = ring {
                names.entry(ring.to_string()).or_default().push(entry.path());
            }
        }
    }
    names
        .into_iter()
        .filter(|(ring, _)| name::validate(ring).is_ok())
        .map(|(ring, paths)| {
            let owner = read_owner(&name::owner_path(&ring));
            let owner_alive = owner.is_some_and(|(pid, start)| liveness::check(pid, start) == Liveness::Alive);
            let mapped_by = if owner_alive { None } else { mapped_by(&ring) };
            Leftover { name: ring, owner_pid: owner.map(|o| o.0), owner_alive, mapped_by, paths }
        })
        .collect()
}

/// Removes the objects of ring `ring` if its owner is dead (or unknown)
/// and no process uses them, and returns the paths removed; refused while
/// the owner lives or a process has the ring's segment mapped.
pub fn remove(ring: &str) -> Result<Vec<PathBuf>> {
    name::validate(ring)?;
    let owner_path = name::owner_path(ring);
    if let Some((pid, start)) = read_owner(&owner_path) {
        if liveness::check(pid, start) == Liveness::Alive {
            return Err(Error::InUse { name: ring.to_string(), pid });
        }
    }
    if let Some(pid) = mapped_by(ring) {
        return Err(Error::InUse { name: ring.to_string(), pid });
    }
    let mut removed = remove_named_objects(ring);
    if std::fs::remove_file(&owner_path).is_ok() {
        removed.push(owner_path);
    }
    Ok(removed)
}

/// Removes the objects of every ring whose owner is dead (or unknown) and
/// that no process uses, and returns what was removed. Rings in use are
/// left alone.
pub fn collect() -> Vec<Leftover> {
    scan()
        .into_iter()
        .filter(|leftover| !leftover.in_use())
        .inspect(|leftover| {
            remove_named_objects(&leftover.name);
            let _ = std::fs::remove_file(name::owner_path(&leftover.name));
        })
        .collect()
}
