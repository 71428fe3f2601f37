//! Socket options the stream transports share.

use std::os::fd::AsRawFd;

/// Socket buffer size asked for on both ends of the UDS and TCP transports:
/// room for more than one 1080p frame in flight (the kernel doubles it, up
/// to `net.core.wmem_max` / `rmem_max`).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for `bytes` of send and receive buffer; returns the sizes the
/// kernel granted (send, receive).
pub fn set_buffers(socket: &impl AsRawFd, bytes: usize) -> (usize, usize) {
    let fd = socket.as_raw_fd();
    let value = bytes as libc::c_int;
    for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: `fd` is an open socket owned by `socket`; `value` is a
        // c_int that outlives the call and its size is passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    (get(fd, libc::SO_SNDBUF), get(fd, libc::SO_RCVBUF))
}

fn get(fd: libc::c_int, option: libc::c_int) -> usize {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket; `value` and `len` are valid for
    // writes of the sizes given.
    let rc =
        unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, (&mut value as *mut libc::c_int).cast(), &mut len) };
    if rc == 0 {
        value as usize
    } else {
        0
    }
}
