//! The places for inbound transfer streams, and which stream loses its place to a newcomer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use tokio::sync::Notify;
use tracing::debug;

/// How long a served stream must have been waiting on its peer before its place may go to a
/// newcomer (a moment of flow control on a busy honest stream is shorter).
pub const MIN_WAIT_BEFORE_EVICTION: Duration = Duration::from_secs(2);

/// The places for inbound transfer streams: at most `max` served at once and `per_peer` for
/// one peer. When every place is taken, a newcomer gets the place of the stream that has been
/// waiting on its peer the longest (idle, trickling a request, or not reading its answers: any
/// time it is not preparing an answer), if that wait is at least [`MIN_WAIT_BEFORE_EVICTION`];
/// that stream is closed. So peers that open streams and then do nothing cannot lock others out:
/// only streams kept busy hold a place.
pub struct StreamSlots {
    max: usize,
    per_peer: usize,
    min_wait: Duration,
    now: Clock,
    state: Mutex<Places>,
}

/// Where [`StreamSlots`] reads the time: the monotonic clock (a unit test moves its own).
type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

#[derive(Default)]
struct Places {
    next: u64,
    taken: HashMap<u64, Place>,
}

struct Place {
    peer: PeerId,
    waiting_since: Option<Instant>,
    evict: Arc<Notify>,
}

/// One stream's place (see [`StreamSlots`]); given back when dropped.
pub struct Slot {
    slots: Arc<StreamSlots>,
    id: u64,
    evict: Arc<Notify>,
}

impl StreamSlots {
    /// Places for at most `max` streams, `per_peer` of them for one peer.
    pub fn new(max: usize, per_peer: usize) -> Arc<StreamSlots> {
        StreamSlots::with_clock(
            max,
            per_peer,
            MIN_WAIT_BEFORE_EVICTION,
            Box::new(Instant::now),
        )
    }

    fn with_clock(max: usize, per_peer: usize, min_wait: Duration, now: Clock) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            max,
            per_peer,
            min_wait,
            now,
            state: Mutex::new(Places::default()),
        })
    }

    fn places(&self) -> std::sync::MutexGuard<'_, Places> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new stream of `peer`, or `None` (the peer has its share, or every place is
    /// held by a stream that is working or has waited less than [`MIN_WAIT_BEFORE_EVICTION`]).
    pub fn admit(self: &Arc<Self>, peer: PeerId) -> Option<Slot> {
        let mut places = self.places();
        if places.taken.values().filter(|p| p.peer == peer).count() >= self.per_peer {
            return None;
        }
        if places.taken.len() >= self.max {
            let now = (self.now)();
            let (_, victim) = places
                .taken
                .iter()
                .filter_map(|(id, p)| p.waiting_since.map(|since| (since, *id)))
                .filter(|(since, _)| now.duration_since(*since) >= self.min_wait)
                .min()?;
            if let Some(evicted) = places.taken.remove(&victim) {
                debug!(peer = %evicted.peer, "served stream gives its place to a new one");
                evicted.evict.notify_one();
            }
        }
        let id = places.next;
        places.next += 1;
        let evict = Arc::new(Notify::new());
        places.taken.insert(
            id,
            Place {
                peer,
                // A new stream waits for its first request.
                waiting_since: Some((self.now)()),
                evict: evict.clone(),
            },
        );
        Some(Slot {
            slots: self.clone(),
            id,
            evict,
        })
    }

    /// Places taken now.
    pub fn taken(&self) -> usize {
        self.places().taken.len()
    }
}

impl Slot {
    /// The stream prepares an answer; returns since when it had been waiting.
    pub(super) fn start_answer(&self) -> Option<Instant> {
        self.slots
            .places()
            .taken
            .get_mut(&self.id)
            .and_then(|place| place.waiting_since.take())
    }

    /// The answer is prepared. Only content served (a chunk, a catalog part) counts as work:
    /// after anything else the stream is waiting since `waiting_since` still, so that cheap
    /// requests (refusals, availability) cannot keep a place that honest transfers need.
    pub(super) fn end_answer(&self, served_content: bool, waiting_since: Option<Instant>) {
        let now = (self.slots.now)();
        if let Some(place) = self.slots.places().taken.get_mut(&self.id) {
            place.waiting_since = Some(if served_content {
                now
            } else {
                waiting_since.unwrap_or(now)
            });
        }
    }

    pub(super) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.places().taken.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when the test moves it, so a wait is exactly what the test says
    /// however slowly it runs.
    #[derive(Clone)]
    struct TestClock {
        start: Instant,
        elapsed: Arc<Mutex<Duration>>,
    }

    impl TestClock {
        fn new() -> TestClock {
            TestClock {
                start: Instant::now(),
                elapsed: Arc::default(),
            }
        }

        fn advance(&self, by: Duration) {
            *self.elapsed.lock().unwrap() += by;
        }

        /// [`StreamSlots`] that read this clock.
        fn slots(&self, max: usize, per_peer: usize, min_wait: Duration) -> Arc<StreamSlots> {
            let clock = self.clone();
            StreamSlots::with_clock(
                max,
                per_peer,
                min_wait,
                Box::new(move || clock.start + *clock.elapsed.lock().unwrap()),
            )
        }
    }

    #[tokio::test]
    async fn slots_bound_streams_per_peer_and_in_all() {
        let clock = TestClock::new();
        let slots = clock.slots(3, 2, MIN_WAIT_BEFORE_EVICTION);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let a1 = slots.admit(a).unwrap();
        let _a2 = slots.admit(a).unwrap();
        assert!(slots.admit(a).is_none(), "a third stream of one peer");
        let _b1 = slots.admit(b).unwrap();
        // Full, and nobody has waited long enough: refused.
        // (a1 waits for its first request, but not for long enough.)
        assert!(slots.admit(c).is_none());
        clock.advance(MIN_WAIT_BEFORE_EVICTION - Duration::from_nanos(1));
        assert!(slots.admit(c).is_none(), "a moment short of the wait");
        assert_eq!(slots.taken(), 3);
        drop(a1);
        assert_eq!(slots.taken(), 2);
        assert!(slots.admit(c).is_some());
    }

    #[test]
    fn only_content_served_counts_as_work_for_a_place() {
        let wait = MIN_WAIT_BEFORE_EVICTION;
        let clock = TestClock::new();
        let slots = clock.slots(1, 1, wait);
        let (asker, newcomer) = (PeerId::random(), PeerId::random());
        let slot = slots.admit(asker).unwrap();
        clock.advance(wait);
        // A refusal answered keeps the old wait: the place can still go.
        let since = slot.start_answer();
        clock.advance(Duration::from_millis(1));
        slot.end_answer(false, since);
        let taken = slots
            .admit(newcomer)
            .expect("cheap answers do not hold a place");
        // A chunk served restarts the wait when it is sent (however long it took to prepare,
        // the stream was working meanwhile): the place is kept until it has waited again.
        let since = taken.start_answer();
        clock.advance(wait);
        taken.end_answer(true, since);
        assert!(slots.admit(PeerId::random()).is_none(), "just served");
        clock.advance(wait - Duration::from_nanos(1));
        assert!(
            slots.admit(PeerId::random()).is_none(),
            "a moment short of the wait"
        );
        clock.advance(Duration::from_nanos(1));
        assert!(
            slots.admit(PeerId::random()).is_some(),
            "once it has waited as long again, its place may go"
        );
    }

    #[tokio::test]
    async fn a_newcomer_takes_the_place_of_the_stream_waiting_longest() {
        let slots = TestClock::new().slots(2, 2, Duration::ZERO);
        let (idle, busy, newcomer) = (PeerId::random(), PeerId::random(), PeerId::random());
        let idle_slot = slots.admit(idle).unwrap();
        let busy_slot = slots.admit(busy).unwrap();
        busy_slot.start_answer();
        let taken = slots.admit(newcomer).expect("the idle stream's place");
        taken.start_answer();
        assert_eq!(slots.taken(), 2);
        // The idle stream is told, even though it was not listening yet.
        tokio::time::timeout(Duration::from_secs(5), idle_slot.evicted())
            .await
            .expect("the idle stream learns its place is gone");
        // Working streams keep their place.
        assert!(slots.admit(PeerId::random()).is_none());
        drop(idle_slot);
        assert_eq!(
            slots.taken(),
            2,
            "an evicted stream's drop frees nothing twice"
        );
        drop((busy_slot, taken));
        assert_eq!(slots.taken(), 0);
    }
}
