//! The liveness watches a consumer judges producers by, and who keeps them.
//!
//! A watch reaches the consumer three ways: in process
//! ([`Consumer::watch_producer`](crate::Consumer::watch_producer)), from a
//! launcher over the ring's rendezvous socket (see
//! [`hand_over_watch`](crate::rendezvous::hand_over_watch)), or from the
//! host that serves the ring's name, which keeps every watch registered
//! with it and feeds them to each consumer that attaches through it, so
//! that a restarted consumer still confirms the deaths of producers started
//! before it.
//!
//! A set holds at most [`MAX_WATCHES`] watches registered from outside, at
//! most [`MAX_WATCHES_PER_PEER`] from one launcher, one per token. A watch
//! leaves the set once its producer is dead and no slot carries its token
//! any more: nobody can need it again.

use std::sync::Mutex;

use crate::layout::{owner_state, slot_state, Header};
use crate::liveness::ProducerWatch;
use crate::sync::Ordering;

/// Watches registered from outside the consumer's process, in all.
pub const MAX_WATCHES: usize = 256;
/// Watches one launcher (one pid) may have registered at a time.
pub const MAX_WATCHES_PER_PEER: usize = 32;

/// Why a registration was refused.
#[cfg(feature = "rendezvous")]
pub(crate) type Refusal = &'static str;

/// The watches of one ring, shared by its consumer and the rendezvous
/// thread that registers them.
#[derive(Debug, Default)]
pub(crate) struct WatchSet {
    watches: Mutex<Vec<ProducerWatch>>,
    /// Where a host sends further watches (a consumer attached by name).
    #[cfg(feature = "rendezvous")]
    feed: Mutex<Option<crate::rendezvous::Feed>>,
}

impl WatchSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<ProducerWatch>> {
        // A panic while holding the lock left a valid Vec behind.
        self.watches.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a watch handed over in this process: trusted, not counted
    /// against the limits.
    pub(crate) fn add_local(&self, watch: ProducerWatch) {
        self.list().push(watch);
    }

    #[cfg(feature = "rendezvous")]
    /// Adds a watch registered by process `peer`, after pruning the ones
    /// nobody needs any more (judged against `header`'s slots).
    pub(crate) fn register(&self, watch: ProducerWatch, peer: u32, header: &Header) -> Result<(), Refusal> {
        let mut list = self.list();
        prune(&mut list, header);
        if list.iter().any(|w| w.token() == watch.token()) {
            return Err("its token is watched already");
        }
        let registered = list.iter().filter(|w| w.peer != 0);
        if registered.clone().filter(|w| w.peer == peer).count() >= MAX_WATCHES_PER_PEER {
            return Err("this launcher registered as many watches as one may");
        }
        if registered.count() >= MAX_WATCHES {
            return Err("the consumer holds as many watches as it may");
        }
        list.push(ProducerWatch { peer: peer.max(1), ..watch });
        Ok(())
    }

    #[cfg(feature = "rendezvous")]
    /// Copies of every watch (what a host feeds a consumer attaching now).
    pub(crate) fn copies(&self) -> Vec<ProducerWatch> {
        self.list().iter().filter_map(|w| w.try_clone().ok()).collect()
    }

    #[cfg(feature = "rendezvous")]
    /// How many watches the set holds.
    pub(crate) fn len(&self) -> usize {
        self.list().len()
    }

    /// Runs `f` over every watch, after taking what a host fed meanwhile.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&[ProducerWatch]) -> T) -> T {
        #[cfg_attr(not(feature = "rendezvous"), allow(unused_mut))]
        let mut list = self.list();
        #[cfg(feature = "rendezvous")]
        self.take_fed(&mut list);
        f(&list)
    }

    /// Drops the watches of dead producers whose tokens no slot carries.
    pub(crate) fn prune(&self, header: &Header) {
        prune(&mut self.list(), header);
    }

    #[cfg(feature = "rendezvous")]
    pub(crate) fn set_feed(&self, feed: crate::rendezvous::Feed) {
        *self.feed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(feed);
    }

    #[cfg(feature = "rendezvous")]
    fn take_fed(&self, list: &mut Vec<ProducerWatch>) {
        let mut feed = self.feed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(open) = feed.as_mut() else { return };
        let open = open.take_into(list);
        if !open {
            #[cfg(feature = "tracing")]
            tracing::warn!("the ring's host closed the watch feed: producers it registers later go unwatched");
            *feed = None;
        }
    }
}

fn prune(list: &mut Vec<ProducerWatch>, header: &Header) {
    list.retain(|watch| !watch.hung_up() || carried(header, watch.token()));
}

/// Whether a taken slot carries `token`.
fn carried(header: &Header, token: u64) -> bool {
    header.slots.iter().any(|slot| {
        owner_state(slot.owner.load(Ordering::Relaxed)) != slot_state::FREE
            && slot.liveness_token.load(Ordering::Relaxed) == token
    })
}
