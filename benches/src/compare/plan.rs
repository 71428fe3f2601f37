//! What runs: transports, workloads, and the runs they make together.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::FRAME_1080P;

/// How a message travels from the producer process to the consumer process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `Producer::send`: one copy from the producer's frame into the ring.
    Shmring,
    /// `Producer::reserve`, produce in place, `commit`: no copy.
    ShmringReserve,
    /// `send`, and a consumer that never reads the payload (recv + drop).
    ShmringUntouched,
    /// `send`, and a consumer that busy-polls `try_recv` instead of sleeping
    /// (the producer busy-waits for its pacing deadline too).
    ShmringSpin,
    /// tungstenite over loopback TCP, masked 131,000-byte fragments.
    Websocket,
    /// Unix stream socket.
    Uds,
    /// Loopback TCP with `TCP_NODELAY`.
    Tcp,
    /// One copy of each frame into a ring-sized buffer, in one process.
    Memcpy,
}

pub const TRANSPORTS: [Transport; 8] = [
    Transport::Shmring,
    Transport::ShmringReserve,
    Transport::ShmringUntouched,
    Transport::ShmringSpin,
    Transport::Websocket,
    Transport::Uds,
    Transport::Tcp,
    Transport::Memcpy,
];

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Shmring => "shmring",
            Transport::ShmringReserve => "shmring-reserve",
            Transport::ShmringUntouched => "shmring-untouched",
            Transport::ShmringSpin => "shmring-spin",
            Transport::Websocket => "websocket",
            Transport::Uds => "uds",
            Transport::Tcp => "tcp",
            Transport::Memcpy => "memcpy",
        }
    }

    pub fn is_shmring(self) -> bool {
        matches!(
            self,
            Transport::Shmring | Transport::ShmringReserve | Transport::ShmringUntouched | Transport::ShmringSpin
        )
    }

    /// Whether the consumer reads the payload (checks the sample words).
    pub fn touches_payload(self) -> bool {
        self != Transport::ShmringUntouched
    }

    /// Whether this transport runs `workload`.
    pub fn runs(self, workload: Workload) -> bool {
        match self {
            // Busy-polling only makes sense where latency is the question.
            Transport::ShmringSpin => workload == Workload::Latency,
            // Without reading the payload there is no send time to measure.
            Transport::ShmringUntouched | Transport::Memcpy => workload != Workload::Latency,
            _ => true,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TRANSPORTS.into_iter().find(|t| t.name() == s).ok_or_else(|| format!("unknown transport {s:?}"))
    }
}

/// What is sent, how big, and how fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 1080p I420 frames at 30 fps.
    Video1080p30,
    /// The same frames as fast as the transport goes.
    VideoMax,
    /// 64-byte messages as fast as the transport goes.
    Small64,
    /// 4 KiB messages as fast as the transport goes.
    Small4k,
    /// 64-byte messages at 1 kHz: the time from send to receipt.
    Latency,
}

pub const WORKLOADS: [Workload; 5] =
    [Workload::Video1080p30, Workload::VideoMax, Workload::Small64, Workload::Small4k, Workload::Latency];

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Video1080p30 => "video-1080p30",
            Workload::VideoMax => "video-max",
            Workload::Small64 => "small-64",
            Workload::Small4k => "small-4k",
            Workload::Latency => "latency-64",
        }
    }

    /// Bytes per message, header included.
    pub fn message_len(self) -> usize {
        match self {
            Workload::Video1080p30 | Workload::VideoMax => FRAME_1080P,
            Workload::Small64 | Workload::Latency => 64,
            Workload::Small4k => 4096,
        }
    }

    /// Time between two sends, or `None` for as fast as possible.
    pub fn interval(self) -> Option<Duration> {
        match self {
            Workload::Video1080p30 => Some(Duration::from_nanos(1_000_000_000 / 30)),
            Workload::Latency => Some(Duration::from_millis(1)),
            _ => None,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            // `small` names both unpaced small-message workloads.
            "video" => Err("use video-1080p30 or video-max".to_string()),
            _ => WORKLOADS.into_iter().find(|w| w.name() == s).ok_or_else(|| format!("unknown workload {s:?}")),
        }
    }
}

/// How long runs last and how many frames they may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Duration of the paced video run.
    pub paced_video: Duration,
    /// Duration of every other run.
    pub other: Duration,
    /// At most this many messages per run (0: no cap).
    pub max_frames: u64,
}

impl Limits {
    pub fn for_workload(&self, workload: Workload) -> Duration {
        if workload == Workload::Video1080p30 {
            self.paced_video
        } else {
            self.other
        }
    }
}
