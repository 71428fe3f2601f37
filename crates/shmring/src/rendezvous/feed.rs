//! A consumer's subscription to the watches its ring's host keeps: read
//! without waiting whenever the consumer is about to judge producers.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;

use super::wire;
use crate::error::{Error, Result};
use crate::liveness::ProducerWatch;

/// The open subscription.
#[derive(Debug)]
pub(crate) struct Feed {
    stream: UnixStream,
}

impl Feed {
    pub(super) fn new(stream: UnixStream) -> Result<Self> {
        stream.set_nonblocking(true).map_err(|e| Error::os_from("make the watch feed non-blocking", e))?;
        Ok(Feed { stream })
    }

    /// Adds the watches that arrived to `list` (one per token). Returns
    /// whether the feed is still open: false once the host hung up or sent
    /// something that is not a watch.
    pub(crate) fn take_into(&mut self, list: &mut Vec<ProducerWatch>) -> bool {
        loop {
            let message = match wire::receive(self.stream.as_fd(), MsgFlags::MSG_DONTWAIT) {
                Ok(message) => message,
                Err(Errno::EAGAIN | Errno::EINTR) => return true,
                Err(_) => return false,
            };
            if message.bytes.is_empty() {
                return false;
            }
            match wire::watch_of(message) {
                Ok(watch) if !list.iter().any(|w| w.token() == watch.token()) => list.push(watch),
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}
