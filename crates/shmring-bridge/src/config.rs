//! How a bridge is set up: where it listens and the limits it enforces.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The port a bridge listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8787;

/// A bridge's settings. `BridgeConfig::default()` listens on
/// `127.0.0.1:8787` with limits suited to a few browser tabs and to
/// thousands of small streams alike.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// Address to listen on. Keep it on loopback: the bridge trusts whoever
    /// can connect to write into the ring (see `allowed_origins`).
    pub listen: SocketAddr,
    /// Worker threads, each with its own event loop and connections.
    /// Default: the number of CPUs, at most 4.
    pub workers: usize,
    /// Producer slots per worker: at most this many messages per worker are
    /// in flight (reserved in the ring, not yet complete) at once. The
    /// bridge takes `workers * in_flight_per_worker` of the ring's 64 slots
    /// (fewer if the ring has fewer free). Default 4.
    pub in_flight_per_worker: usize,
    /// Connections held at once; more are refused at accept. Default 4096.
    pub max_connections: usize,
    /// Longest binary message accepted, clamped to the ring's largest
    /// record; longer ones close the connection with 1009. Default: the
    /// ring's largest record.
    pub max_message: Option<usize>,
    /// A connection must complete its HTTP request (page or upgrade) within
    /// this. Default 5 s.
    pub handshake_timeout: Duration,
    /// Once a message's ring slot is reserved, the rest of the message must
    /// arrive within this; otherwise the slot is given up as a skip record
    /// (the ring's consumer is never held up longer than this by one slow
    /// client), the rest of the message is read and discarded, and the
    /// client is sent a drop notice. Default 500 ms.
    pub message_timeout: Duration,
    /// A connection that sends nothing for this long is closed with 1008;
    /// after half of it the bridge pings (browsers answer by themselves).
    /// A message still incomplete this long after it started also closes
    /// the connection. Default 30 s.
    pub idle_timeout: Duration,
    /// Origins (`scheme://host:port`) allowed to open a WebSocket; `None`
    /// allows any page. Requests without an `Origin` header (non-browser
    /// clients) and the bridge's own pages are always allowed.
    pub allowed_origins: Option<Vec<String>>,
    /// Serve the capture page (`/`), the JS client (`/shmring-bridge.js`)
    /// and `/stats` over plain HTTP on the same port. Default true.
    pub serve_pages: bool,
    /// Stream id given to the first connection; each connection gets the
    /// next one, written into every header it sends. Default 1.
    pub first_stream_id: u32,
    /// Browser profile directories under which pages' frame files may be
    /// looked for (the file lane). Empty: no file lane, pages send their
    /// frames as binary messages. Put them on tmpfs.
    pub profile_dirs: Vec<PathBuf>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()).min(4),
            in_flight_per_worker: 4,
            max_connections: 4096,
            max_message: None,
            handshake_timeout: Duration::from_secs(5),
            message_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(30),
            allowed_origins: None,
            serve_pages: true,
            first_stream_id: 1,
            profile_dirs: Vec::new(),
        }
    }
}

impl BridgeConfig {
    /// The default settings, listening on `listen`.
    pub fn listening_on(listen: SocketAddr) -> Self {
        BridgeConfig { listen, ..Default::default() }
    }
}
