//! What other peers say the time is: the hint that tells an operator this node's clock is wrong.
//!
//! The node asks a few connected peers for their clock (`Request::Time`) every
//! [`CLOCK_ASK_INTERVAL`], and keeps one sample per peer: how far the peer's clock is from its
//! own, measured at the middle of the round trip.
//!
//! Invariants:
//! - at most [`MAX_CLOCK_SAMPLES`] samples, one per peer (its newest); a sample older than
//!   [`CLOCK_SAMPLE_TTL`] is neither counted nor kept, so what a peer said long ago, or a
//!   peer long gone, does not linger;
//! - a verdict needs [`MIN_CLOCK_PEERS`] peers, and is their median offset: fewer than half of
//!   the peers sampled cannot move it past what the honest ones say;
//! - it is a warning and nothing else: licence windows are judged by this node's clock and the
//!   publisher-signed time floor, never by what peers say (a peer is anyone).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use licet_proto::policy::CLOCK_SKEW_SECONDS;

/// How often the node asks peers for their clocks.
pub const CLOCK_ASK_INTERVAL: Duration = Duration::from_secs(10);
/// Most peers asked in one round.
pub const CLOCK_ASKS_PER_ROUND: usize = 4;
/// How long a sample counts.
pub const CLOCK_SAMPLE_TTL: Duration = Duration::from_secs(30 * 60);
/// Most samples kept (one per peer).
pub const MAX_CLOCK_SAMPLES: usize = 64;
/// Fewest peers whose samples make a verdict.
pub const MIN_CLOCK_PEERS: usize = 3;

/// One peer's clock against this node's.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// The peer's clock minus this node's, in seconds.
    offset: i64,
    /// When it was taken.
    at: Instant,
}

/// What peers said of the time lately.
#[derive(Debug, Default)]
pub struct PeerClocks {
    samples: HashMap<PeerId, Sample>,
}

/// Where this node's clock stands against its peers', in the median of their samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeersTime {
    /// The peers' median clock minus this node's, in seconds: positive when this clock is behind.
    pub offset_seconds: i64,
    /// How many peers the median is of.
    pub peers: usize,
}

impl PeersTime {
    /// The offset, if it is beyond the allowed skew.
    pub fn beyond_skew(self) -> Option<i64> {
        (self.offset_seconds.abs() > CLOCK_SKEW_SECONDS).then_some(self.offset_seconds)
    }
}

/// The peer's clock minus this node's, from an answer of `peer_seconds` to a question asked at
/// `asked` and answered at `answered` (this node's clock, Unix seconds): the peer read its clock
/// somewhere in between, taken to be the middle.
pub fn offset_of(peer_seconds: i64, asked: i64, answered: i64) -> i64 {
    let middle = asked.saturating_add(answered.saturating_sub(asked) / 2);
    peer_seconds.saturating_sub(middle)
}

impl PeerClocks {
    /// Keeps `peer`'s newest sample; drops samples past their time, and the oldest beyond
    /// [`MAX_CLOCK_SAMPLES`].
    pub fn record(&mut self, peer: PeerId, offset: i64, now: Instant) {
        self.forget_old(now);
        self.samples.insert(peer, Sample { offset, at: now });
        while self.samples.len() > MAX_CLOCK_SAMPLES {
            let Some(oldest) = self
                .samples
                .iter()
                .min_by_key(|(_, s)| s.at)
                .map(|(peer, _)| *peer)
            else {
                break;
            };
            self.samples.remove(&oldest);
        }
    }

    /// Of `connected`, the peers to ask this round: those with no sample yet, then those with
    /// the oldest, at most [`CLOCK_ASKS_PER_ROUND`]; none whose sample is younger than half its
    /// time to live.
    pub fn to_ask(&self, connected: &[PeerId], now: Instant) -> Vec<PeerId> {
        let fresh = CLOCK_SAMPLE_TTL / 2;
        let mut candidates: Vec<(Option<Instant>, PeerId)> = connected
            .iter()
            .map(|peer| (self.samples.get(peer).map(|s| s.at), *peer))
            .filter(|(at, _)| at.is_none_or(|at| now.saturating_duration_since(at) >= fresh))
            .collect();
        // `None` (never asked) sorts first, then the oldest samples.
        candidates.sort_by_key(|(at, _)| *at);
        candidates
            .into_iter()
            .take(CLOCK_ASKS_PER_ROUND)
            .map(|(_, peer)| peer)
            .collect()
    }

    /// The median of the samples that still count, once [`MIN_CLOCK_PEERS`] peers gave one.
    pub fn peers_time(&self, now: Instant) -> Option<PeersTime> {
        let mut offsets: Vec<i64> = self
            .samples
            .values()
            .filter(|s| now.saturating_duration_since(s.at) < CLOCK_SAMPLE_TTL)
            .map(|s| s.offset)
            .collect();
        if offsets.len() < MIN_CLOCK_PEERS {
            return None;
        }
        offsets.sort_unstable();
        let n = offsets.len();
        // The lower middle of an even count: a lying half cannot pick the larger value.
        let median = if n % 2 == 1 {
            offsets[n / 2]
        } else {
            let (low, high) = (offsets[n / 2 - 1], offsets[n / 2]);
            if low.abs() <= high.abs() { low } else { high }
        };
        Some(PeersTime {
            offset_seconds: median,
            peers: n,
        })
    }

    fn forget_old(&mut self, now: Instant) {
        self.samples
            .retain(|_, s| now.saturating_duration_since(s.at) < CLOCK_SAMPLE_TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn no_verdict_until_three_peers_answered() {
        let now = Instant::now();
        let mut clocks = PeerClocks::default();
        let p = peers(3);
        clocks.record(p[0], 1200, now);
        clocks.record(p[1], 1200, now);
        assert_eq!(clocks.peers_time(now), None);
        clocks.record(p[2], 1199, now);
        let time = clocks.peers_time(now).unwrap();
        assert_eq!(time.offset_seconds, 1200);
        assert_eq!(time.peers, 3);
        assert_eq!(time.beyond_skew(), Some(1200));
    }

    #[test]
    fn a_minority_of_liars_does_not_move_the_median() {
        let now = Instant::now();
        let mut clocks = PeerClocks::default();
        let p = peers(5);
        for honest in &p[..3] {
            clocks.record(*honest, 1, now);
        }
        for liar in &p[3..] {
            clocks.record(*liar, -86_400, now);
        }
        let time = clocks.peers_time(now).unwrap();
        assert_eq!(time.offset_seconds, 1);
        assert_eq!(time.beyond_skew(), None);
        // An even count takes the middle value nearer zero: half the peers cannot raise an alarm.
        let mut even = PeerClocks::default();
        for (i, peer) in peers(4).into_iter().enumerate() {
            even.record(peer, if i < 2 { 0 } else { 9_999 }, now);
        }
        assert_eq!(even.peers_time(now).unwrap().offset_seconds, 0);
    }

    #[test]
    fn within_the_allowed_skew_is_no_warning_and_either_side_beyond_is() {
        let at = |offset| PeersTime {
            offset_seconds: offset,
            peers: 3,
        };
        assert_eq!(at(CLOCK_SKEW_SECONDS).beyond_skew(), None);
        assert_eq!(at(-CLOCK_SKEW_SECONDS).beyond_skew(), None);
        assert_eq!(at(CLOCK_SKEW_SECONDS + 1).beyond_skew(), Some(301));
        assert_eq!(at(-CLOCK_SKEW_SECONDS - 1).beyond_skew(), Some(-301));
    }

    #[test]
    fn samples_expire_and_are_bounded() {
        let start = Instant::now();
        let mut clocks = PeerClocks::default();
        let p = peers(MAX_CLOCK_SAMPLES + 10);
        for (i, peer) in p.iter().enumerate() {
            clocks.record(*peer, 0, start + Duration::from_millis(i as u64));
        }
        assert_eq!(clocks.samples.len(), MAX_CLOCK_SAMPLES);
        // The oldest went first.
        assert!(!clocks.samples.contains_key(&p[0]));
        assert!(clocks.samples.contains_key(&p[MAX_CLOCK_SAMPLES + 9]));
        let later = start + CLOCK_SAMPLE_TTL + Duration::from_secs(1);
        assert_eq!(clocks.peers_time(later), None);
    }

    #[test]
    fn asks_new_peers_first_and_not_those_asked_lately() {
        let start = Instant::now();
        let mut clocks = PeerClocks::default();
        let p = peers(7);
        clocks.record(p[0], 0, start);
        clocks.record(p[1], 0, start + Duration::from_secs(1));
        let now = start + Duration::from_secs(5);
        let asked = clocks.to_ask(&p, now);
        assert_eq!(asked.len(), CLOCK_ASKS_PER_ROUND);
        assert!(
            !asked.contains(&p[0]) && !asked.contains(&p[1]),
            "{asked:?}"
        );
        // Once their samples age, the oldest is asked again.
        let later = start + CLOCK_SAMPLE_TTL / 2 + Duration::from_millis(500);
        assert_eq!(clocks.to_ask(&p[..2], later), vec![p[0]]);
    }

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        assert_eq!(offset_of(1_000, 900, 904), 98);
        assert_eq!(offset_of(900, 1_000, 1_000), -100);
        assert_eq!(offset_of(i64::MAX, i64::MIN, i64::MAX), i64::MAX);
    }
}
