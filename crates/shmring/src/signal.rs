//! Sleeping and waking across processes without a syscall per frame.
//!
//! A side that is about to sleep announces it in a word of the header
//! (`Waiters`), issues a SeqCst fence, re-checks the condition it waits for,
//! and only then sleeps on a semaphore. The other side makes its change
//! visible, issues a SeqCst fence, and posts only if the announcement is
//! there. The two fences make the pattern a Dekker handshake: at least one
//! side sees the other's store, so a wake-up is never lost, and while both
//! sides are busy nobody enters the kernel.
//!
//! The semaphores are named POSIX semaphores (`sem_open`, mode 0600) created
//! by the consumer. Their backing files are passed as descriptors and mapped
//! here, so a sandboxed producer that cannot `open()` still posts with a
//! plain `sem_post` (a futex wake) on the mapping.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use crate::error::{Error, Result};

/// Something a side can sleep on and the other side can post.
pub trait Signal: Send + Sync {
    /// Wakes one sleeper, or lets the next `wait` return at once.
    fn post(&self);
    /// Sleeps until posted (`true`) or until `timeout` passes (`false`).
    fn wait(&self, timeout: Duration) -> bool;
}

/// A process-shared POSIX semaphore, mapped from its backing file.
pub struct Semaphore {
    sem: NonNull<libc::sem_t>,
    map_len: usize,
}

// SAFETY: a process-shared `sem_t` is designed to be used concurrently from
// any thread of any process; the pointer is only handed to `sem_*`.
unsafe impl Send for Semaphore {}
// SAFETY: as above; every operation goes through the thread-safe `sem_*` API.
unsafe impl Sync for Semaphore {}

impl Semaphore {
    /// Maps the semaphore whose backing file is `fd` (a `/dev/shm/sem.*`
    /// file made by `sem_open`). Needs only `mmap`, so it works inside a
    /// sandbox that forbids `open()`.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Self> {
        let sem_size = std::mem::size_of::<libc::sem_t>();
        // SAFETY: `fstat` writes into the zeroed struct we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is a valid open descriptor for the borrow's lifetime.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(Error::os("fstat(semaphore)"));
        }
        if (st.st_mode & libc::S_IFMT) != libc::S_IFREG || (st.st_size as usize) < sem_size {
            return Err(Error::BadSegment { reason: format!("descriptor {} is not a semaphore file", fd.as_raw_fd()) });
        }
        // SAFETY: a fresh shared mapping of a regular file we checked is at
        // least `sem_size` bytes long; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                sem_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::os("mmap(semaphore)"));
        }
        Ok(Semaphore { sem: NonNull::new(ptr.cast()).expect("mmap never returns null on success"), map_len: sem_size })
    }

    fn raw(&self) -> *mut libc::sem_t {
        self.sem.as_ptr()
    }
}

impl Signal for Semaphore {
    fn post(&self) {
        // SAFETY: `sem` points to a mapped, initialised process-shared
        // semaphore for as long as `self` lives. A failure (EOVERFLOW) only
        // means the count is already huge: the sleeper will wake anyway.
        unsafe { libc::sem_post(self.raw()) };
    }

    fn wait(&self, timeout: Duration) -> bool {
        let deadline = realtime_deadline(timeout);
        loop {
            // SAFETY: as in `post`; `deadline` is a valid timespec.
            let rc = unsafe { libc::sem_timedwait(self.raw(), &deadline) };
            if rc == 0 {
                return true;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => return false,
            }
        }
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `from_fd`; nothing
        // borrows it past `self`.
        unsafe { libc::munmap(self.sem.as_ptr().cast(), self.map_len) };
    }
}

fn realtime_deadline(timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into `now`, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let timeout = timeout.min(Duration::from_secs(3600));
    let mut sec = now.tv_sec + timeout.as_secs() as libc::time_t;
    let mut nsec = now.tv_nsec + timeout.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        sec += 1;
        nsec -= 1_000_000_000;
    }
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

/// The name `sem_open` takes for ring `ring` and role `role`.
pub fn semaphore_name(ring: &str, role: &str) -> String {
    format!("/shmring.{ring}.{role}")
}

/// Where glibc keeps the backing file of a named semaphore.
pub fn semaphore_path(ring: &str, role: &str) -> String {
    format!("/dev/shm/sem.shmring.{ring}.{role}")
}

/// Creates a named semaphore (mode 0600, value 0) and returns a descriptor
/// of its backing file. Fails with `EEXIST` (as `Error::Os`) when one by
/// that name exists.
pub fn create_named(ring: &str, role: &str) -> Result<OwnedFd> {
    let name = CString::new(semaphore_name(ring, role)).expect("validated names hold no NUL");
    // SAFETY: `name` is a valid C string; O_CREAT|O_EXCL takes mode and value.
    let sem = unsafe {
        libc::sem_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600 as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if sem == libc::SEM_FAILED {
        return Err(Error::os("sem_open(create)"));
    }
    let fd = open_backing_file(ring, role);
    // SAFETY: `sem` came from `sem_open` above and is closed once.
    unsafe { libc::sem_close(sem) };
    fd
}

/// Opens the backing file of an existing named semaphore (for producers
/// that are not sandboxed and attach with only the segment descriptor).
pub fn open_backing_file(ring: &str, role: &str) -> Result<OwnedFd> {
    let path = CString::new(semaphore_path(ring, role)).expect("validated names hold no NUL");
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::os("open(semaphore file)"));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes a named semaphore; existing mappings keep working.
pub fn unlink_named(ring: &str, role: &str) -> io::Result<()> {
    let name = CString::new(semaphore_name(ring, role)).expect("validated names hold no NUL");
    // SAFETY: `name` is a valid C string.
    if unsafe { libc::sem_unlink(name.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A semaphore on the heap, for heap-backed rings (tests, miri) and loom
/// models, where it is built from loom's mutex and condvar.
#[cfg(any(test, loom, feature = "heap"))]
pub(crate) mod heap {
    use super::Signal;
    use std::time::Duration;

    #[cfg(loom)]
    use loom::sync::{Condvar, Mutex};
    #[cfg(not(loom))]
    use std::sync::{Condvar, Mutex};

    #[derive(Default)]
    pub struct HeapSemaphore {
        count: Mutex<u32>,
        posted: Condvar,
    }

    impl HeapSemaphore {
        pub fn new() -> Self {
            HeapSemaphore { count: Mutex::new(0), posted: Condvar::new() }
        }
    }

    impl Signal for HeapSemaphore {
        fn post(&self) {
            let mut count = self.count.lock().unwrap();
            *count += 1;
            self.posted.notify_one();
        }

        #[cfg(loom)]
        fn wait(&self, _timeout: Duration) -> bool {
            // Loom has no time: a wait lasts until a post, so a lost wake-up
            // shows up as a deadlock in the model.
            let mut count = self.count.lock().unwrap();
            while *count == 0 {
                count = self.posted.wait(count).unwrap();
            }
            *count -= 1;
            true
        }

        #[cfg(not(loom))]
        fn wait(&self, timeout: Duration) -> bool {
            let count = self.count.lock().unwrap();
            let (mut count, _) = self.posted.wait_timeout_while(count, timeout, |c| *c == 0).unwrap();
            if *count == 0 {
                return false;
            }
            *count -= 1;
            true
        }
    }
}
