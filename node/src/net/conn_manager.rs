//! The connection manager: a bounded set of connections per node, with low and high water
//! marks as kubo's connection manager has them.
//!
//! Why it exists: every Kademlia query (a bootstrap, a provider lookup, a record put) dials the
//! peers closest to its key, and gossipsub then opens a long-lived stream on each connection
//! to a peer that speaks it, which every Licet node does. The swarm closes a connection only
//! when no stream is open on it (rust-libp2p issue 5190), so the idle timeout never fires and
//! a node ends up connected to every peer any of its queries touched: the whole swarm. rust-libp2p
//! offers hard limits only (`connection_limits`, which refuse new connections, Kademlia's
//! among them), no manager that trims; this module is that manager, driven by the event loop.
//!
//! How it trims: while more than [`Watermarks::high`] connections are open, the event loop asks
//! [`ConnManager::to_trim`] (at once when a connection is established, then every
//! [`TRIM_CHECK_INTERVAL`]) which peers to disconnect to get down to [`Watermarks::low`].
//! Spared are the peers the caller names as protected (gossipsub mesh peers of the topics this
//! node subscribes to, relays it holds a reservation on, peers it fetches from or serves to,
//! see `topic_mesh.rs`) and every peer with a connection younger than [`Watermarks::grace`]
//! (a new connection gets time to be used). Of the others, peers that share no topic with this
//! node go first, then the most recently connected (long-lived connections are kept: they
//! have proved themselves).
//!
//! Invariants: the count of open connections is exact (every established connection is added
//! once and removed once); `to_trim` never names a protected peer, a peer inside its grace
//! period, or more peers than needed to reach the low mark; it names none while the count is
//! at or below the high mark. Bootstrap peers are not protected: the peer a node bootstraps
//! from is in its routing table and is dialled again by Kademlia when needed, and protecting
//! them would keep a popular bootstrap node (every newcomer's first contact) full.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use libp2p::{PeerId, swarm::ConnectionId};

/// How often the event loop checks the count against the high mark besides when a connection
/// is established (connections inside their grace period become trimmable later).
pub const TRIM_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The connection manager's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Trimming stops at this many connections.
    pub low: u32,
    /// Above this many connections, trimming starts.
    pub high: u32,
    /// A connection this young is never trimmed.
    pub grace: Duration,
}

impl Watermarks {
    /// Low mark by default: enough peers for a gossip mesh per topic (6 to 12) and a routing
    /// table's nearest bucket, far below the 512-connection limit.
    pub const DEFAULT_LOW: u32 = 32;
    /// High mark by default: three times the low mark, so trims are rare batches.
    pub const DEFAULT_HIGH: u32 = 96;
    /// Grace period by default: kubo's 20 s is made 10 s, the time a Kademlia query or a first
    /// transfer request takes with room to spare.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

    /// Checks that the marks make sense: a low mark of at least 1, below the high mark.
    pub fn new(low: u32, high: u32, grace: Duration) -> Result<Watermarks, WatermarkError> {
        if low == 0 || low >= high {
            return Err(WatermarkError { low, high });
        }
        Ok(Watermarks { low, high, grace })
    }
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            low: Self::DEFAULT_LOW,
            high: Self::DEFAULT_HIGH,
            grace: Self::DEFAULT_GRACE,
        }
    }
}

/// The water marks given do not make sense.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "connection water marks low {low} and high {high} do not make sense: the low mark must be \
     at least 1 and below the high mark"
)]
pub struct WatermarkError {
    /// The low mark given.
    pub low: u32,
    /// The high mark given.
    pub high: u32,
}

/// One established connection.
#[derive(Debug, Clone, Copy)]
struct Open {
    peer: PeerId,
    since: Instant,
}

/// The open connections and the marks (see the module docs).
#[derive(Debug)]
pub struct ConnManager {
    marks: Watermarks,
    open: HashMap<ConnectionId, Open>,
}

impl ConnManager {
    /// No connection open yet.
    pub fn new(marks: Watermarks) -> ConnManager {
        ConnManager {
            marks,
            open: HashMap::new(),
        }
    }

    /// The marks in force.
    pub fn marks(&self) -> Watermarks {
        self.marks
    }

    /// `connection` to `peer` was established at `now`.
    pub fn established(&mut self, connection: ConnectionId, peer: PeerId, now: Instant) {
        self.open.insert(connection, Open { peer, since: now });
    }

    /// `connection` closed.
    pub fn closed(&mut self, connection: ConnectionId) {
        self.open.remove(&connection);
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.open.len()
    }

    /// The connected peers, each once, the one with the oldest connection first.
    pub fn peers_oldest_first(&self) -> Vec<PeerId> {
        let mut oldest: HashMap<PeerId, Instant> = HashMap::new();
        for open in self.open.values() {
            let since = oldest.entry(open.peer).or_insert(open.since);
            *since = (*since).min(open.since);
        }
        let mut peers: Vec<(PeerId, Instant)> = oldest.into_iter().collect();
        peers.sort_by_key(|(_, since)| *since);
        peers.into_iter().map(|(peer, _)| peer).collect()
    }

    /// Whether more connections than the high mark are open.
    pub fn over_high(&self) -> bool {
        self.open.len() > self.marks.high as usize
    }

    /// The peers to disconnect now (see the module docs): none at or below the high mark;
    /// above it, unprotected peers out of their grace period, those in no shared topic first,
    /// then the most recently connected, until the low mark would be reached.
    pub fn to_trim(
        &self,
        now: Instant,
        protected: &HashSet<PeerId>,
        shares_a_topic: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        if !self.over_high() {
            return Vec::new();
        }
        // Per peer: its connection count and its newest connection's age.
        let mut peers: HashMap<PeerId, (usize, Instant)> = HashMap::new();
        for open in self.open.values() {
            let entry = peers.entry(open.peer).or_insert((0, open.since));
            entry.0 += 1;
            entry.1 = entry.1.max(open.since);
        }
        let mut candidates: Vec<(PeerId, usize, Instant, bool)> = peers
            .into_iter()
            .filter(|(peer, (_, newest))| {
                !protected.contains(peer)
                    && now.saturating_duration_since(*newest) >= self.marks.grace
            })
            .map(|(peer, (count, newest))| (peer, count, newest, shares_a_topic(&peer)))
            .collect();
        // Sharing no topic first (false < true), then the newest first.
        candidates.sort_by(|a, b| a.3.cmp(&b.3).then(b.2.cmp(&a.2)));
        let mut remaining = self.open.len();
        let low = self.marks.low as usize;
        let mut trimmed = Vec::new();
        for (peer, count, _, _) in candidates {
            if remaining <= low {
                break;
            }
            remaining -= count;
            trimmed.push(peer);
        }
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(low: u32, high: u32) -> Watermarks {
        Watermarks::new(low, high, Duration::from_secs(10)).unwrap()
    }

    /// A manager with `n` peers, one connection each, connected one second apart starting
    /// `age` before `now`.
    fn with_peers(
        m: Watermarks,
        n: usize,
        now: Instant,
        age: Duration,
    ) -> (ConnManager, Vec<PeerId>) {
        let mut manager = ConnManager::new(m);
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            let since = now - age + Duration::from_secs(i as u64);
            manager.established(ConnectionId::new_unchecked(i), *peer, since);
        }
        (manager, peers)
    }

    #[test]
    fn nothing_is_trimmed_at_or_below_the_high_mark() {
        let now = Instant::now();
        let (manager, _) = with_peers(marks(2, 4), 4, now, Duration::from_secs(60));
        assert!(manager.to_trim(now, &HashSet::new(), |_| false).is_empty());
    }

    #[test]
    fn above_the_high_mark_it_trims_down_to_the_low_mark_newest_first() {
        let now = Instant::now();
        let (manager, peers) = with_peers(marks(2, 4), 6, now, Duration::from_secs(60));
        let trimmed = manager.to_trim(now, &HashSet::new(), |_| false);
        assert_eq!(trimmed, vec![peers[5], peers[4], peers[3], peers[2]]);
    }

    #[test]
    fn protected_peers_and_young_connections_are_spared() {
        let now = Instant::now();
        let (mut manager, peers) = with_peers(marks(2, 4), 6, now, Duration::from_secs(60));
        let young = PeerId::random();
        manager.established(ConnectionId::new_unchecked(100), young, now);
        let protected: HashSet<PeerId> = [peers[5], peers[4]].into();
        let trimmed = manager.to_trim(now, &protected, |_| false);
        assert!(
            !trimmed.contains(&young),
            "a connection in its grace period is spared"
        );
        assert!(!trimmed.iter().any(|p| protected.contains(p)));
        assert_eq!(trimmed, vec![peers[3], peers[2], peers[1], peers[0]]);
        // Once out of its grace period, the young one goes too (it is now the newest).
        let later = now + Duration::from_secs(11);
        let trimmed = manager.to_trim(later, &protected, |_| false);
        assert_eq!(trimmed.first(), Some(&young));
    }

    #[test]
    fn peers_sharing_no_topic_go_before_those_that_do() {
        let now = Instant::now();
        let (manager, peers) = with_peers(marks(3, 4), 5, now, Duration::from_secs(60));
        let topical: HashSet<PeerId> = [peers[0], peers[1], peers[4]].into();
        let trimmed = manager.to_trim(now, &HashSet::new(), |p| topical.contains(p));
        assert_eq!(trimmed, vec![peers[3], peers[2]]);
    }

    #[test]
    fn a_peer_with_several_connections_counts_them_all() {
        let now = Instant::now();
        let (mut manager, peers) = with_peers(marks(2, 3), 3, now, Duration::from_secs(60));
        manager.established(
            ConnectionId::new_unchecked(50),
            peers[2],
            now - Duration::from_secs(30),
        );
        manager.established(
            ConnectionId::new_unchecked(51),
            peers[2],
            now - Duration::from_secs(30),
        );
        // Five connections; the newest peer holds three of them: trimming it reaches 2.
        assert_eq!(
            manager.to_trim(now, &HashSet::new(), |_| false),
            vec![peers[2]]
        );
        manager.closed(ConnectionId::new_unchecked(50));
        manager.closed(ConnectionId::new_unchecked(51));
        assert_eq!(manager.connections(), 3);
        assert!(!manager.over_high());
    }

    #[test]
    fn peers_are_listed_once_by_their_oldest_connection() {
        let now = Instant::now();
        let (mut manager, peers) = with_peers(marks(2, 4), 3, now, Duration::from_secs(60));
        // peers[2] also holds a connection older than every other.
        manager.established(
            ConnectionId::new_unchecked(50),
            peers[2],
            now - Duration::from_secs(120),
        );
        assert_eq!(
            manager.peers_oldest_first(),
            vec![peers[2], peers[0], peers[1]]
        );
    }

    #[test]
    fn marks_that_make_no_sense_are_refused() {
        assert!(Watermarks::new(0, 4, Duration::ZERO).is_err());
        assert!(Watermarks::new(4, 4, Duration::ZERO).is_err());
        let err = Watermarks::new(8, 4, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("low 8 and high 4"), "{err}");
        assert!(Watermarks::new(1, 2, Duration::ZERO).is_ok());
    }
}
