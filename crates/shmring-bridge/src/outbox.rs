//! What a connection has to send (replies, notices, pongs, its close
//! frame), queued only while the socket does not take it at once.

use std::io::{self, Write};

use mio::net::TcpStream;

/// Output (replies, notices, pongs) allowed to queue for a client that does
/// not read; past it notices and pongs are not queued, and past four times
/// it the connection is dropped.
pub(crate) const OUTBOX_SOFT_LIMIT: usize = 16 * 1024;

/// Frames queued for the client.
#[derive(Default)]
pub(crate) struct Outbox {
    pub buf: Vec<u8>,
    sent: usize,
}

impl Outbox {
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub(crate) fn has_room(&self) -> bool {
        self.pending() < OUTBOX_SOFT_LIMIT
    }

    /// Writes until done or the socket is full.
    pub(crate) fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        while self.sent < self.buf.len() {
            match stream.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.buf.len() {
            self.sent = 0;
            self.buf.clear();
            if self.buf.capacity() > 1024 {
                self.buf = Vec::new(); // an idle connection keeps no buffer
            }
        }
        Ok(())
    }
}
