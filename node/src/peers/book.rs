//! What the node remembers about other peers: bytes each way, bans and past offences (the book).
//!
//! [`PeerBook`] is plain data behind the lock of [`super::Peers`]; it never talks to the network.
//! `Peers` blocks a banned peer in the swarm and unblocks the peers [`PeerBook::sweep`] returns. Every
//! method takes the time (`now`) from its caller, so tests drive the clock.
//!
//! Invariants:
//! - a ban ends: the first lasts [`BAN_FIRST`], each repeat twice the one before, at most
//!   [`BAN_MAX`]. An offence is remembered for [`OFFENCE_MEMORY`] after its ban ends; a peer
//!   banned again later starts from [`BAN_FIRST`];
//! - a peer whose ban has ended is not banned, whether or not a sweep has run since;
//! - the book holds at most [`MAX_TRACKED_PEERS`] peers that are not banned and
//!   [`MAX_BANNED_PEERS`] banned peers, whatever peers do (a peer id costs nothing to make): a
//!   newcomer over the first bound pushes out the peer idle longest, a ban over the second ends
//!   the ban that would end first (returned, so the swarm unblocks it too);
//! - a sweep forgets a peer that is not connected, not banned, has no offence to remember and
//!   has been idle for [`PEER_IDLE`].

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use libp2p::PeerId;

/// How long a peer's first ban lasts.
pub const BAN_FIRST: Duration = Duration::from_secs(10 * 60);
/// The longest ban: repeat offenders' bans double up to this.
pub const BAN_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// How long an offence is remembered after its ban ends (so a repeat doubles the ban).
pub const OFFENCE_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);
/// A peer not connected and without a ban is forgotten after this long without traffic.
pub const PEER_IDLE: Duration = Duration::from_secs(10 * 60);
/// Most peers remembered that are not banned (connections are capped lower, at 512).
pub const MAX_TRACKED_PEERS: usize = 2048;
/// Most peers banned at once: new peer ids cost nothing, so bans cannot be unbounded.
pub const MAX_BANNED_PEERS: usize = 4096;
/// How often the node sweeps the book (ends bans in the swarm, forgets idle peers).
pub const PEER_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// A ban in force.
#[derive(Clone, Debug)]
struct Ban {
    reason: String,
    until: Instant,
}

/// One peer's entry.
#[derive(Clone, Debug)]
struct Entry {
    bytes_in: u64,
    bytes_out: u64,
    last_active: Instant,
    ban: Option<Ban>,
    /// Bans so far that are still remembered.
    offences: u32,
    /// When the offences are forgotten (the end of the last ban plus [`OFFENCE_MEMORY`]).
    remember_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            bytes_in: 0,
            bytes_out: 0,
            last_active: now,
            ban: None,
            offences: 0,
            remember_until: None,
        }
    }

    fn banned_at(&self, now: Instant) -> Option<&Ban> {
        self.ban.as_ref().filter(|ban| ban.until > now)
    }
}

/// What the book says about one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// Chunk bytes received from it.
    pub bytes_in: u64,
    /// Chunk bytes sent to it.
    pub bytes_out: u64,
    /// Why it is banned, while it is.
    pub ban_reason: Option<String>,
    /// How long its ban still lasts, while it is banned.
    pub banned_for: Option<Duration>,
    /// Bans it earned that are still remembered (the next lasts twice the last).
    pub offences: u32,
}

/// A ban just made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBan {
    /// How long it lasts.
    pub duration: Duration,
    /// Its place in the peer's remembered offences (1 for a first offence).
    pub offence: u32,
    /// A peer whose ban was ended early to keep within [`MAX_BANNED_PEERS`]: unblock it.
    pub released: Option<PeerId>,
}

/// How long ban number `offence` (1 for the first) lasts.
pub fn ban_duration(offence: u32) -> Duration {
    let doublings = offence.saturating_sub(1).min(31);
    BAN_FIRST.saturating_mul(1 << doublings).min(BAN_MAX)
}

/// Every peer the node remembers (see the module docs).
#[derive(Default)]
pub struct PeerBook {
    entries: HashMap<PeerId, Entry>,
}

impl PeerBook {
    /// An empty book.
    pub fn new() -> PeerBook {
        PeerBook::default()
    }

    /// Peers remembered, banned or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no peer is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `peer`, made if needed (pushing out the peer idle longest at the bound).
    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Entry {
        if !self.entries.contains_key(&peer) {
            let unbanned = self
                .entries
                .values()
                .filter(|e| e.banned_at(now).is_none())
                .count();
            if unbanned >= MAX_TRACKED_PEERS
                && let Some(idlest) = self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.banned_at(now).is_none())
                    .min_by_key(|(_, e)| e.last_active)
                    .map(|(p, _)| *p)
            {
                self.entries.remove(&idlest);
            }
        }
        self.entries.entry(peer).or_insert_with(|| Entry::new(now))
    }

    /// Counts chunk bytes received from `peer`.
    pub fn received(&mut self, peer: PeerId, bytes: u64, now: Instant) {
        let entry = self.entry(peer, now);
        entry.bytes_in = entry.bytes_in.saturating_add(bytes);
        entry.last_active = now;
    }

    /// Counts chunk bytes sent to `peer`.
    pub fn sent(&mut self, peer: PeerId, bytes: u64, now: Instant) {
        let entry = self.entry(peer, now);
        entry.bytes_out = entry.bytes_out.saturating_add(bytes);
        entry.last_active = now;
    }

    /// Whether `peer` is banned now.
    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.entries
            .get(peer)
            .is_some_and(|e| e.banned_at(now).is_some())
    }

    /// Bans `peer` for `reason`; `None` if it is banned already (the ban in force stands).
    pub fn ban(&mut self, peer: PeerId, reason: &str, now: Instant) -> Option<NewBan> {
        if self.is_banned(&peer, now) {
            return None;
        }
        let banned = self
            .entries
            .values()
            .filter(|e| e.banned_at(now).is_some())
            .count();
        let mut released = None;
        if banned >= MAX_BANNED_PEERS
            && let Some(first) = self
                .entries
                .iter()
                .filter_map(|(p, e)| e.banned_at(now).map(|b| (*p, b.until)))
                .min_by_key(|(_, until)| *until)
                .map(|(p, _)| p)
        {
            self.entries.remove(&first);
            released = Some(first);
        }
        let entry = self.entry(peer, now);
        if entry.remember_until.is_some_and(|until| until <= now) {
            entry.offences = 0;
        }
        entry.offences = entry.offences.saturating_add(1);
        let duration = ban_duration(entry.offences);
        let until = now + duration;
        entry.ban = Some(Ban {
            reason: reason.to_owned(),
            until,
        });
        entry.remember_until = Some(until + OFFENCE_MEMORY);
        entry.last_active = now;
        Some(NewBan {
            duration,
            offence: entry.offences,
            released,
        })
    }

    /// Ends the bans whose time is up (returning those peers, to unblock in the swarm) and
    /// forgets peers that are not `connected`, not banned, idle for [`PEER_IDLE`] and without
    /// an offence still remembered.
    pub fn sweep(&mut self, now: Instant, connected: &HashSet<PeerId>) -> Vec<PeerId> {
        let mut ended = Vec::new();
        for (peer, entry) in &mut self.entries {
            if entry.ban.as_ref().is_some_and(|ban| ban.until <= now) {
                entry.ban = None;
                ended.push(*peer);
            }
        }
        self.entries.retain(|peer, entry| {
            entry.ban.is_some()
                || connected.contains(peer)
                || now.saturating_duration_since(entry.last_active) < PEER_IDLE
                || entry.remember_until.is_some_and(|until| until > now)
        });
        ended
    }

    /// What the book says about `peer`.
    pub fn view(&self, peer: &PeerId, now: Instant) -> Option<PeerView> {
        let entry = self.entries.get(peer)?;
        let ban = entry.banned_at(now);
        Some(PeerView {
            bytes_in: entry.bytes_in,
            bytes_out: entry.bytes_out,
            ban_reason: ban.map(|b| b.reason.clone()),
            banned_for: ban.map(|b| b.until.saturating_duration_since(now)),
            offences: if entry.remember_until.is_some_and(|until| until > now) {
                entry.offences
            } else {
                0
            },
        })
    }

    /// Every peer banned now.
    pub fn banned(&self, now: Instant) -> Vec<(PeerId, PeerView)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.banned_at(now).is_some())
            .filter_map(|(peer, _)| self.view(peer, now).map(|view| (*peer, view)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn bans_double_for_repeat_offenders_up_to_a_day() {
        assert_eq!(ban_duration(1), BAN_FIRST);
        assert_eq!(ban_duration(2), BAN_FIRST * 2);
        assert_eq!(ban_duration(3), BAN_FIRST * 4);
        assert_eq!(ban_duration(8), BAN_FIRST * 128, "21 h 20 min");
        assert_eq!(ban_duration(9), BAN_MAX, "10 min × 256 is over a day");
        assert_eq!(ban_duration(u32::MAX), BAN_MAX);

        let mut book = PeerBook::new();
        let liar = peer();
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..10 {
            let ban = book
                .ban(liar, "sent a bad chunk", now)
                .expect("not banned yet");
            assert!(book.is_banned(&liar, now));
            assert!(
                book.ban(liar, "again", now).is_none(),
                "a ban in force stands"
            );
            lengths.push(ban.duration);
            now += ban.duration;
            assert!(!book.is_banned(&liar, now), "the ban ends at its end");
        }
        assert_eq!(
            lengths[..4],
            [BAN_FIRST, BAN_FIRST * 2, BAN_FIRST * 4, BAN_FIRST * 8]
        );
        assert!(lengths.iter().all(|d| *d <= BAN_MAX));
        assert_eq!(*lengths.last().unwrap(), BAN_MAX);
    }

    #[test]
    fn a_ban_expires_and_the_swarm_is_told_once() {
        let mut book = PeerBook::new();
        let liar = peer();
        let start = Instant::now();
        book.ban(liar, "protocol violation: garbage", start);
        let view = book.view(&liar, start).unwrap();
        assert_eq!(
            view.ban_reason.as_deref(),
            Some("protocol violation: garbage")
        );
        assert_eq!(view.banned_for, Some(BAN_FIRST));
        assert_eq!(book.banned(start).len(), 1);

        let later = start + BAN_FIRST - Duration::from_secs(1);
        assert!(book.sweep(later, &HashSet::new()).is_empty());
        assert!(book.is_banned(&liar, later));

        let after = start + BAN_FIRST;
        assert!(!book.is_banned(&liar, after), "ended even before a sweep");
        assert!(book.banned(after).is_empty());
        assert_eq!(book.sweep(after, &HashSet::new()), vec![liar]);
        assert!(book.sweep(after, &HashSet::new()).is_empty(), "told once");
        // Its offence is remembered: the next ban is longer.
        assert_eq!(book.view(&liar, after).unwrap().offences, 1);
        assert_eq!(
            book.ban(liar, "again", after).unwrap().duration,
            BAN_FIRST * 2
        );
    }

    #[test]
    fn an_offence_is_forgotten_a_day_after_its_ban_ends() {
        let mut book = PeerBook::new();
        let liar = peer();
        let start = Instant::now();
        book.ban(liar, "bad chunk", start);
        let forgotten = start + BAN_FIRST + OFFENCE_MEMORY;
        book.sweep(forgotten - Duration::from_secs(1), &HashSet::new());
        assert_eq!(book.len(), 1, "kept while its offence is remembered");
        book.sweep(forgotten, &HashSet::new());
        assert!(book.is_empty(), "forgotten once idle and its offence old");
        assert_eq!(
            book.ban(liar, "bad chunk", forgotten).unwrap().duration,
            BAN_FIRST
        );
    }

    #[test]
    fn idle_peers_are_forgotten_but_connected_and_busy_ones_kept() {
        let mut book = PeerBook::new();
        let (idle, connected, busy) = (peer(), peer(), peer());
        let start = Instant::now();
        for p in [idle, connected, busy] {
            book.received(p, 100, start);
        }
        let later = start + PEER_IDLE;
        book.sent(busy, 50, later - Duration::from_secs(1));
        book.sweep(later, &HashSet::from([connected]));
        assert!(book.view(&idle, later).is_none());
        assert_eq!(book.view(&connected, later).unwrap().bytes_in, 100);
        assert_eq!(book.view(&busy, later).unwrap().bytes_out, 50);
    }

    /// Regression (issue 13: "the peers map is never pruned"): liars that take a new peer id
    /// for every bad chunk, round after round as their bans run out, and thousands of peers
    /// fed or served once, never take the book past its bound, even before a sweep.
    #[test]
    fn liars_changing_ids_round_after_round_keep_the_book_bounded() {
        let mut book = PeerBook::new();
        let mut now = Instant::now();
        let bound = MAX_TRACKED_PEERS + MAX_BANNED_PEERS;
        for _round in 0..2 {
            for i in 0..MAX_BANNED_PEERS + 100 {
                now += Duration::from_millis(1);
                // A bad chunk bans its sender (`Peers::bad_chunk`); others are fed or served.
                book.ban(peer(), "bad chunk", now);
                book.received(peer(), 1, now);
                book.sent(peer(), 1, now);
                if i % 512 == 0 {
                    assert!(book.len() <= bound, "{} peers", book.len());
                }
            }
            assert!(book.len() <= bound, "{} peers", book.len());
            assert_eq!(book.banned(now).len(), MAX_BANNED_PEERS);
            // Every ban runs out; the offences are still remembered.
            now += BAN_MAX;
            assert!(book.banned(now).is_empty());
        }
        book.sweep(now, &HashSet::new());
        assert!(book.len() <= bound, "{} peers", book.len());
    }

    #[test]
    fn the_book_stays_bounded_whatever_peers_do() {
        let mut book = PeerBook::new();
        let mut now = Instant::now();
        for _ in 0..MAX_TRACKED_PEERS + 100 {
            now += Duration::from_millis(1);
            book.received(peer(), 1, now);
        }
        assert_eq!(book.len(), MAX_TRACKED_PEERS);

        let mut released = 0;
        let first_liar = peer();
        book.ban(first_liar, "bad chunk", now);
        for _ in 0..MAX_BANNED_PEERS + 9 {
            now += Duration::from_millis(1);
            if let Some(p) = book.ban(peer(), "bad chunk", now).unwrap().released {
                released += 1;
                if released == 1 {
                    assert_eq!(p, first_liar, "the ban ending first goes first");
                }
            }
        }
        assert_eq!(released, 10);
        assert_eq!(book.banned(now).len(), MAX_BANNED_PEERS);
        assert!(book.len() <= MAX_TRACKED_PEERS + MAX_BANNED_PEERS);
        // Bans are not pushed out by newcomers that are not banned.
        for _ in 0..100 {
            book.received(peer(), 1, now);
        }
        assert_eq!(book.banned(now).len(), MAX_BANNED_PEERS);
    }
}
