//! Who fetches what: the peers that asked this node what it has of each manifest lately, for
//! peer exchange (`Request::Peers`): downloaders that fetch from this node find each other
//! through it at once, without waiting for the DHT.
//!
//! Invariants (whatever peers do, a peer id costing nothing to make):
//! - at most [`MAX_MEMBERS`] peers per manifest (the one that asked longest ago goes first) and
//!   [`MAX_SWARMS`] manifests (the one asked about longest ago goes first);
//! - a peer that has not asked for [`MEMBER_MEMORY`] is no longer handed out;
//! - every method takes the time from its caller, so tests drive the clock.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use licet_proto::ManifestId;

/// How recently another peer must have asked about a manifest for it to count as fetching it
/// now (a downloader asks what a peer has every quarter second or so).
pub const FETCHING_NOW: Duration = Duration::from_secs(10);
/// How long a peer that asked about a manifest is handed out to others.
pub const MEMBER_MEMORY: Duration = Duration::from_secs(10 * 60);
/// Most peers remembered per manifest.
pub const MAX_MEMBERS: usize = 64;
/// Most manifests whose askers are remembered.
pub const MAX_SWARMS: usize = 1024;

/// See the module docs.
#[derive(Default)]
pub struct Swarms {
    /// Per manifest, its askers, the one that asked longest ago first, with when they asked.
    swarms: HashMap<ManifestId, VecDeque<(PeerId, Instant)>>,
}

impl Swarms {
    /// `peer` asked what this node has of `manifest`, at `now`.
    pub fn asked(&mut self, manifest: ManifestId, peer: PeerId, now: Instant) {
        if !self.swarms.contains_key(&manifest) && self.swarms.len() >= MAX_SWARMS {
            let stalest = self
                .swarms
                .iter()
                .min_by_key(|(_, members)| members.back().map(|(_, at)| *at))
                .map(|(id, _)| *id);
            if let Some(stalest) = stalest {
                self.swarms.remove(&stalest);
            }
        }
        let members = self.swarms.entry(manifest).or_default();
        members.retain(|(member, _)| *member != peer);
        members.push_back((peer, now));
        while members.len() > MAX_MEMBERS {
            members.pop_front();
        }
    }

    /// Whether a peer other than `asker` asked about `manifest` within [`FETCHING_NOW`] of
    /// `now`.
    pub fn others_fetching(&self, manifest: &ManifestId, asker: &PeerId, now: Instant) -> bool {
        self.swarms.get(manifest).is_some_and(|members| {
            members.iter().rev().any(|(peer, at)| {
                peer != asker && now.saturating_duration_since(*at) < FETCHING_NOW
            })
        })
    }

    /// Up to `max` peers that asked about `manifest` within [`MEMBER_MEMORY`] of `now`, the
    /// latest first, `asker` left out.
    pub fn members(
        &self,
        manifest: &ManifestId,
        asker: &PeerId,
        now: Instant,
        max: usize,
    ) -> Vec<PeerId> {
        let Some(members) = self.swarms.get(manifest) else {
            return Vec::new();
        };
        members
            .iter()
            .rev()
            .filter(|(peer, at)| {
                peer != asker && now.saturating_duration_since(*at) < MEMBER_MEMORY
            })
            .map(|(peer, _)| *peer)
            .take(max)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn askers_are_handed_out_latest_first_without_the_asker_until_they_are_stale() {
        let mut swarms = Swarms::default();
        let manifest = ManifestId([1; 32]);
        let start = Instant::now();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        swarms.asked(manifest, a, start);
        swarms.asked(manifest, b, start + Duration::from_secs(1));
        swarms.asked(manifest, c, start + Duration::from_secs(2));
        // `a` asks again: it is the latest now, and listed once.
        swarms.asked(manifest, a, start + Duration::from_secs(3));
        let now = start + Duration::from_secs(4);
        assert_eq!(swarms.members(&manifest, &c, now, 10), vec![a, b]);
        assert_eq!(
            swarms.members(&manifest, &PeerId::random(), now, 2),
            vec![a, c]
        );
        assert!(swarms.members(&ManifestId([2; 32]), &a, now, 10).is_empty());
        let later = start + Duration::from_secs(2) + MEMBER_MEMORY;
        assert_eq!(swarms.members(&manifest, &b, later, 10), vec![a]);
        assert!(swarms.others_fetching(&manifest, &a, now));
        assert!(!swarms.others_fetching(&manifest, &a, start + FETCHING_NOW * 2));
        let alone = ManifestId([3; 32]);
        swarms.asked(alone, a, now);
        assert!(!swarms.others_fetching(&alone, &a, now), "only the asker");
    }

    #[test]
    fn what_is_remembered_stays_bounded_whatever_peers_do() {
        let mut swarms = Swarms::default();
        let now = Instant::now();
        let first = ManifestId([0; 32]);
        for _ in 0..MAX_MEMBERS + 10 {
            swarms.asked(first, PeerId::random(), now);
        }
        assert_eq!(
            swarms
                .members(&first, &PeerId::random(), now, usize::MAX)
                .len(),
            MAX_MEMBERS
        );
        for n in 1..=MAX_SWARMS as u32 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&n.to_le_bytes());
            swarms.asked(
                ManifestId(id),
                PeerId::random(),
                now + Duration::from_millis(u64::from(n)),
            );
        }
        assert_eq!(swarms.swarms.len(), MAX_SWARMS);
        assert!(
            swarms
                .members(&first, &PeerId::random(), now, usize::MAX)
                .is_empty(),
            "the manifest asked about longest ago went first"
        );
    }
}
