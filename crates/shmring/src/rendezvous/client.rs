//! The calls a peer makes on a ring's rendezvous socket: ask for the
//! segment, hand over a liveness watch, subscribe to the watches.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::socket::MsgFlags;

use super::feed::Feed;
use super::wire::{self, Message};
use crate::error::{Error, Result};
use crate::liveness::ProducerWatch;
use crate::ring::RingFds;

/// How long a client waits for the server's answers.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to ring `name`'s socket and takes the segment it grants.
fn open(name: &str) -> Result<(UnixStream, RingFds)> {
    crate::name::validate(name)?;
    let path = crate::name::socket_path(name);
    let stream = UnixStream::connect(&path).map_err(|e| Error::Os {
        op: "connect to the ring's rendezvous socket (is its consumer running?)",
        source: e,
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(|e| Error::os_from("set socket timeout", e))?;
    let Message { bytes, mut fds, .. } = receive(&stream, "receive ring descriptors")?;
    if bytes.starts_with(wire::DENIED) {
        return Err(Error::PermissionDenied { reason: String::from_utf8_lossy(&bytes[8..]).into_owned() });
    }
    if bytes != wire::GRANT || fds.len() != 1 {
        return Err(Error::PermissionDenied {
            reason: format!(
                "unexpected answer from {} ({} bytes, {} descriptors)",
                path.display(),
                bytes.len(),
                fds.len()
            ),
        });
    }
    let memfd = fds.pop().expect("one descriptor checked above");
    Ok((stream, RingFds::new(memfd)))
}

fn receive(stream: &UnixStream, op: &'static str) -> Result<Message> {
    wire::receive(stream.as_fd(), MsgFlags::empty()).map_err(|e| Error::os_from(op, e.into()))
}

/// Asks the consumer of ring `name` for its descriptors.
pub fn request(name: &str) -> Result<RingFds> {
    open(name).map(|(_, fds)| fds)
}

/// Hands the consumer of ring `name` (or the host serving its name) the
/// watch of a producer this process launches or is about to launch, with
/// the other half of the [`liveness_pair`](crate::liveness_pair): from
/// then on the consumer confirms that producer's death by the watch's
/// hang-up, wherever its pid namespace. Register it before the producer
/// starts, so that its first claim is covered.
///
/// A host keeps the watch for every consumer that attaches through it
/// later; a consumer that serves its own ring keeps it until it closes.
/// Refused (`PermissionDenied`, with the reason) for a token watched
/// already, a producer gone already, and past the limits in
/// [`watches`](crate::watches).
///
/// ```no_run
/// # fn main() -> shmring::Result<()> {
/// let fds = shmring::RingFds::request("meeting")?;
/// let (producer_half, watch) = shmring::liveness_pair()?;
/// shmring::rendezvous::hand_over_watch("meeting", &watch)?;
/// let for_the_child = fds.with_liveness(producer_half)?;
/// let mut command = std::process::Command::new("unshare");
/// command.args(["--pid", "--fork", "my-producer"]);
/// for_the_child.pass_to(&mut command);
/// let child = command.spawn();
/// drop(command); // from here only the child holds its half
/// # Ok(()) }
/// ```
pub fn hand_over_watch(name: &str, watch: &ProducerWatch) -> Result<()> {
    let (stream, _) = open(name)?;
    wire::send_watch(stream.as_fd(), watch, MsgFlags::empty())
        .map_err(|e| Error::os_from("send the liveness watch", e.into()))?;
    let answer = receive(&stream, "receive the answer to a liveness watch")?.bytes;
    if answer == wire::WATCHED {
        return Ok(());
    }
    let reason = match answer.strip_prefix(wire::REFUSED) {
        Some(reason) => String::from_utf8_lossy(reason).into_owned(),
        None => format!("unexpected answer ({} bytes)", answer.len()),
    };
    Err(Error::PermissionDenied { reason: format!("the ring's consumer refused the liveness watch: {reason}") })
}

/// Takes the segment of ring `name` and subscribes to its watches: those
/// held now (returned), and a feed of those registered later.
pub(super) fn subscribe(name: &str) -> Result<(RingFds, Feed, Vec<ProducerWatch>)> {
    let (stream, fds) = open(name)?;
    wire::send(stream.as_fd(), wire::FEED, &[], MsgFlags::empty())
        .map_err(|e| Error::os_from("subscribe to the ring's watches", e.into()))?;
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut watches = Vec::new();
    loop {
        let message = receive(&stream, "receive the ring's watches")?;
        if message.bytes == wire::FEED_SYNC {
            break;
        }
        if let Some(reason) = message.bytes.strip_prefix(wire::REFUSED) {
            let reason = String::from_utf8_lossy(reason).into_owned();
            return Err(Error::PermissionDenied {
                reason: format!("the ring's host refused the watch feed: {reason}"),
            });
        }
        // A watch hung up already still serves: the dead producer's
        // slots need it to be judged dead.
        match wire::watch_of(message) {
            Ok(watch) => watches.push(watch),
            Err(reason) => {
                return Err(Error::PermissionDenied { reason: format!("bad watch from the ring's host: {reason}") })
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout);
        }
    }
    Ok((fds, Feed::new(stream)?, watches))
}
