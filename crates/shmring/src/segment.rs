//! One memfd per ring: created, sized once, sealed so no peer can shrink
//! (SIGBUS for everyone else) or grow it, and mapped with its data region
//! twice back to back so every record is contiguous in virtual memory.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::error::{Error, Result};

/// Huge pages for the segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HugePages {
    /// Normal pages.
    #[default]
    Never,
    /// `MFD_HUGETLB` when the system has a huge page pool, else normal pages.
    IfAvailable,
    /// `MFD_HUGETLB` or fail.
    Require,
}

/// Size of a huge page (x86-64 and aarch64 default).
pub const HUGE_PAGE: u64 = 2 << 20;
/// Seals every segment carries.
pub const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// The system page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// A created (not yet mapped) segment descriptor.
pub(crate) struct NewSegment {
    pub fd: OwnedFd,
    pub hugepages: bool,
}

/// Creates, sizes and seals a memfd of `len` bytes.
pub(crate) fn create(name: &str, len: u64, huge: bool) -> Result<NewSegment> {
    let cname = CString::new(format!("shmring.{name}")).expect("validated names hold no NUL");
    let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    if huge {
        flags |= libc::MFD_HUGETLB;
    }
    // SAFETY: `cname` is a valid C string.
    let raw = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
    if raw < 0 {
        return Err(Error::os("memfd_create"));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `fd` is a valid memfd.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        return Err(Error::os("ftruncate(segment)"));
    }
    // SAFETY: `fd` is a valid memfd created with MFD_ALLOW_SEALING.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, REQUIRED_SEALS) } != 0 {
        return Err(Error::os("fcntl(F_ADD_SEALS)"));
    }
    Ok(NewSegment { fd, hugepages: huge })
}

/// Checks that `fd` is a sealed segment and returns its length.
pub(crate) fn check_sealed(fd: BorrowedFd<'_>) -> Result<u64> {
    // SAFETY: F_GET_SEALS only reads the descriptor's seals.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(Error::BadSegment {
            reason: format!("descriptor {} is not a memfd ({})", fd.as_raw_fd(), std::io::Error::last_os_error()),
        });
    }
    if seals & REQUIRED_SEALS != REQUIRED_SEALS {
        return Err(Error::BadSegment {
            reason: format!("segment is not sealed against shrink, grow and reseal (seals {seals:#x})"),
        });
    }
    if seals & (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) != 0 {
        return Err(Error::BadSegment { reason: "segment is sealed against writing".into() });
    }
    fd_len(fd)
}

pub(crate) fn fd_len(fd: BorrowedFd<'_>) -> Result<u64> {
    // SAFETY: `fstat` writes into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid for the borrow.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::os("fstat(segment)"));
    }
    Ok(st.st_size as u64)
}

/// The header followed by the data region and its mirror, in one
/// reservation of address space.
pub(crate) struct Mapping {
    reservation: NonNull<u8>,
    reservation_len: usize,
    base: NonNull<u8>,
    header_size: u64,
    capacity: u64,
}

// SAFETY: the mapping is plain shared memory; all access goes through
// atomics or the ring protocol.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `fd` (`header_size + capacity` bytes) as header + data + mirror.
    ///
    /// The caller must have checked that the file is that long and sealed
    /// against shrinking: otherwise touching the mapping may raise SIGBUS.
    pub(crate) fn map(fd: BorrowedFd<'_>, header_size: u64, capacity: u64, align: u64, prefault: bool) -> Result<Self> {
        let span = header_size + 2 * capacity;
        let reservation_len = (span + align) as usize;
        // SAFETY: a fresh anonymous PROT_NONE mapping only reserves address
        // space; it aliases nothing.
        let reservation = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reservation_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if reservation == libc::MAP_FAILED {
            return Err(Error::os("mmap(reserve)"));
        }
        let reservation = NonNull::new(reservation.cast::<u8>()).expect("mmap never returns null on success");
        // Owns the reservation from here on: an early return unmaps it.
        let mut mapping = Mapping { reservation, reservation_len, base: reservation, header_size, capacity };
        let aligned = (reservation.as_ptr() as u64).next_multiple_of(align);
        let base = aligned as *mut u8;
        let populate = if prefault { libc::MAP_POPULATE } else { 0 };
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: `base .. base + header_size + capacity` lies inside our
        // reservation (aligned start + span <= reservation end), so
        // MAP_FIXED replaces only our own PROT_NONE pages.
        let first = unsafe {
            libc::mmap(
                base.cast(),
                (header_size + capacity) as usize,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED | populate,
                fd.as_raw_fd(),
                0,
            )
        };
        if first == libc::MAP_FAILED {
            return Err(Error::os("mmap(segment)"));
        }
        // SAFETY: the mirror range `base + header_size + capacity ..
        // base + span` also lies inside the reservation; it maps the data
        // region (file offset `header_size`) a second time.
        let mirror = unsafe {
            libc::mmap(
                base.add((header_size + capacity) as usize).cast(),
                capacity as usize,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                header_size as libc::off_t,
            )
        };
        if mirror == libc::MAP_FAILED {
            return Err(Error::os("mmap(mirror)"));
        }
        mapping.base = NonNull::new(base).expect("inside a non-null reservation");
        Ok(mapping)
    }

    /// Faults in every page of the header, data region and mirror as
    /// writable without changing a byte (`MADV_POPULATE_WRITE`, Linux
    /// 5.14), so the first lap of frames does not pay page faults. Unlike
    /// `MAP_POPULATE` it can run at any time, in any process.
    pub(crate) fn populate(&self) -> Result<()> {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        let len = (self.header_size + 2 * self.capacity) as usize;
        // SAFETY: the range is exactly our shared mappings; populating
        // pages does not change their contents.
        if unsafe { libc::madvise(self.base.as_ptr().cast(), len, MADV_POPULATE_WRITE) } != 0 {
            return Err(Error::os("madvise(MADV_POPULATE_WRITE)"));
        }
        Ok(())
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Start of the data region.
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: `header_size` is within the mapping.
        unsafe { self.base.as_ptr().add(self.header_size as usize) }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly our reservation (and the fixed mappings
        // inside it); no reference into it outlives the owning backing.
        unsafe { libc::munmap(self.reservation.as_ptr().cast(), self.reservation_len) };
    }
}

/// Maps only the header of `fd`, read-only: what `stat` uses to look at a
/// live ring without disturbing it.
pub(crate) struct HeaderView {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: read-only shared memory read through atomics.
unsafe impl Send for HeaderView {}
// SAFETY: as above.
unsafe impl Sync for HeaderView {}

impl HeaderView {
    pub(crate) fn map(fd: BorrowedFd<'_>, len: u64) -> Result<Self> {
        // SAFETY: a fresh read-only shared mapping of a file at least `len`
        // bytes long (checked by the caller); aliases nothing of ours.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len as usize, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::os("mmap(header)"));
        }
        Ok(HeaderView { ptr: NonNull::new(ptr.cast()).expect("non-null on success"), len: len as usize })
    }

    pub(crate) fn ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for HeaderView {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Duplicates a descriptor (close-on-exec).
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    fd.try_clone_to_owned().map_err(|e| Error::os_from("dup", e))
}
