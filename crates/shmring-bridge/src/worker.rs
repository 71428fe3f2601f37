//! A worker thread: one event loop (epoll through mio, edge-triggered), the
//! connections handed to it, its pool of producers and one scratch buffer
//! shared by all its connections.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::connection::{Connection, Env, Limits};
use crate::http::Site;
use crate::inflight::Pool;
use crate::stats::{Counters, Registry};

/// The token of a worker's waker (new connections, shutdown).
pub(crate) const WAKER: Token = Token(usize::MAX);
/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(50);
/// The scratch buffer every read of small things goes through.
const SCRATCH: usize = 64 * 1024;

/// What all threads of a bridge share.
pub(crate) struct Shared {
    pub limits: Limits,
    pub site: Site,
    pub registry: Arc<Registry>,
    pub next_stream_id: AtomicU32,
    pub max_connections: usize,
    pub stop: AtomicBool,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        // Acquire: SYNC POINT: pairs with the Release store in
        // `ShutdownHandle::shutdown`; nothing else is published with it, so
        // this only makes the intent explicit.
        self.stop.load(Ordering::Acquire)
    }
}

/// Runs `f` on one connection. A panic there is a bug, but it costs that
/// connection only (the caller drops it: a message in flight becomes a
/// skip record), never the worker and its other connections.
fn contain(f: impl FnOnce()) -> bool {
    let contained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
    if !contained {
        tracing::error!("internal error on a connection; dropped it");
    }
    contained
}

/// What a connection of worker `index` may touch.
fn env_of<'a>(pool: &'a mut Pool, shared: &'a Shared, index: usize, now: Instant) -> Env<'a> {
    Env {
        pool,
        counters: shared.registry.thread(index),
        limits: &shared.limits,
        site: &shared.site,
        next_stream_id: &shared.next_stream_id,
        now,
    }
}

pub(crate) struct Worker {
    pub index: usize,
    pub poll: Poll,
    pub incoming: Receiver<TcpStream>,
    pub pool: Pool,
    pub shared: Arc<Shared>,
    conns: Slab<Connection>,
    parked: VecDeque<usize>,
    scratch: Box<[u8]>,
    done: Vec<usize>,
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        incoming: Receiver<TcpStream>,
        pool: Pool,
        shared: Arc<Shared>,
    ) -> Worker {
        Worker {
            index,
            poll,
            incoming,
            pool,
            shared,
            conns: Slab::new(),
            parked: VecDeque::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            done: Vec::new(),
        }
    }

    fn counters(&self) -> &Counters {
        self.shared.registry.thread(self.index)
    }

    pub(crate) fn run(mut self) {
        Counters::set(&self.counters().producers, self.pool.size() as u64);
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(worker = self.index, error = %e, "event loop failed");
                break;
            }
            if self.shared.stopping() {
                break;
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.take_new_connections(now),
                    Token(key) => {
                        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                        self.on_event(key, readable, event.is_writable(), now);
                    }
                }
            }
            self.resume_parked(now);
            if now >= next_tick {
                self.tick(now);
                next_tick = now + TICK;
            }
            Counters::set(&self.counters().in_flight, self.pool.in_use() as u64);
        }
        self.shut_down();
    }

    fn take_new_connections(&mut self, now: Instant) {
        while let Ok(mut stream) = self.incoming.try_recv() {
            let entry = self.conns.vacant_entry();
            let token = Token(entry.key());
            // Registering a socket that already has data queues an event
            // for it at once (epoll checks readiness on insertion).
            if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE) {
                tracing::warn!(error = %e, "cannot watch a new connection");
                Counters::bump(&self.shared.registry.thread(self.index).closed);
                continue;
            }
            entry.insert(Connection::new(stream, now, &self.shared.limits));
        }
    }

    fn on_event(&mut self, key: usize, readable: bool, writable: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut env = env_of(&mut self.pool, &self.shared, self.index, now);
        let scratch = &mut self.scratch;
        let was_parked = conn.parked;
        let contained = contain(|| {
            if readable && !conn.parked {
                conn.on_readable(&mut env, scratch);
            }
            if writable {
                conn.on_writable(&mut env);
            }
        });
        if !contained || conn.is_done() {
            self.remove(key);
        } else if conn.parked && !was_parked {
            // Queued once, when it starts waiting.
            self.parked.push_back(key);
        }
    }

    /// Lets connections that waited for a producer read on.
    fn resume_parked(&mut self, now: Instant) {
        while self.pool.has_free() {
            let Some(key) = self.parked.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.parked) else {
                continue;
            };
            let mut env = env_of(&mut self.pool, &self.shared, self.index, now);
            let scratch = &mut self.scratch;
            let contained = contain(|| conn.on_readable(&mut env, scratch));
            if !contained || conn.is_done() {
                self.remove(key);
            } else if conn.parked {
                self.parked.push_back(key);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut env = env_of(&mut self.pool, &self.shared, self.index, now);
        let scratch = &mut self.scratch;
        for (key, conn) in self.conns.iter_mut() {
            let was_parked = conn.parked;
            if !contain(|| conn.on_tick(&mut env, scratch)) || conn.is_done() {
                self.done.push(key);
            } else if conn.parked && !was_parked {
                // A tick may read on (see `Connection::on_tick`) and find
                // the pool empty.
                self.parked.push_back(key);
            }
        }
        let done = std::mem::take(&mut self.done);
        for &key in &done {
            self.remove(key);
        }
        self.done = done;
        self.done.clear();
        // A tick may have freed producers (slow messages given up).
        self.resume_parked(now);
    }

    fn remove(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if conn.parked {
                self.parked.retain(|&k| k != key);
            }
        }
    }

    fn shut_down(&mut self) {
        let mut env = env_of(&mut self.pool, &self.shared, self.index, Instant::now());
        for (_, conn) in self.conns.iter_mut() {
            conn.shut_down(&mut env);
        }
        self.conns.clear();
        Counters::set(&self.counters().in_flight, 0);
        Counters::set(&self.counters().producers, 0);
    }
}
