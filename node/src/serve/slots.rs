//! A seed's upload slots (choking, as BitTorrent seeds do): while more peers fetch a release
//! this node holds whole than it has slots, it sends chunks of it to at most [`UPLOAD_SLOTS`]
//! peers at a time and answers the others' chunk requests `Busy`; they fetch from the peers
//! that got chunks from it, and take their turn. A seed's uplink is what a swarm has least of:
//! spread over every downloader at once, it sends the same chunks to many of them while they
//! could have carried them to each other; given to a few at a time, with the chunks it sent
//! least often offered first (`spread.rs`), nearly every chunk it sends is one the swarm did
//! not have.
//!
//! Slots turn over, so nobody waits long: a peer holds a slot for at most [`SLOT_TURN`] while
//! others wait, and frees it once it has not asked for [`SLOT_IDLE`] (it has what it wanted
//! from here, or it left). A peer that finds every slot held by another that asked lately and
//! got its slot less than [`SLOT_TURN`] ago is choked; otherwise it takes a free slot, an idle
//! one, or the one held longest.
//!
//! Invariants: at most [`MAX_SLOT_MANIFESTS`] releases are tracked (the one asked about longest
//! ago is forgotten first) and at most [`UPLOAD_SLOTS`] peers per release, whatever peers do;
//! only requests for a release held whole, while other peers fetch it too, are ever choked (the
//! caller's decision), so a lone downloader and a partial holder's peers are never slowed.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use licet_proto::ManifestId;

/// Peers a seed sends chunks of one release to at once.
pub const UPLOAD_SLOTS: usize = 2;
/// How long a peer keeps a slot while others wait for one.
pub const SLOT_TURN: Duration = Duration::from_secs(5);
/// A slot whose peer has not asked for this long is free.
pub const SLOT_IDLE: Duration = Duration::from_secs(2);
/// What a choked peer is told to wait before it asks again.
pub const CHOKED_RETRY_MS: u32 = 500;
/// Most releases whose slots are kept.
pub const MAX_SLOT_MANIFESTS: usize = 64;

/// See the module docs.
#[derive(Default)]
pub struct UploadSlots {
    releases: HashMap<ManifestId, Release>,
}

/// The slots of one release.
#[derive(Default)]
struct Release {
    slots: Vec<Slot>,
    /// The peers whose turn ended lately, and when (at most [`UPLOAD_SLOTS`] · 2): they may
    /// take a free or idle slot, but not end another's turn until [`SLOT_TURN`] has passed.
    rested: Vec<(PeerId, Instant)>,
}

#[derive(Clone, Copy)]
struct Slot {
    peer: PeerId,
    /// When the peer took the slot.
    since: Instant,
    /// When it last asked for a chunk.
    asked: Instant,
}

impl UploadSlots {
    /// Whether `peer` may be sent a chunk of `manifest` now; takes it a slot if one is to be
    /// had (see the module docs).
    pub fn admit(&mut self, manifest: ManifestId, peer: PeerId, now: Instant) -> bool {
        if !self.releases.contains_key(&manifest) && self.releases.len() >= MAX_SLOT_MANIFESTS {
            let stalest = self
                .releases
                .iter()
                .min_by_key(|(_, release)| release.slots.iter().map(|s| s.asked).max())
                .map(|(id, _)| *id);
            if let Some(stalest) = stalest {
                self.releases.remove(&stalest);
            }
        }
        let release = self.releases.entry(manifest).or_default();
        let slots = &mut release.slots;
        if let Some(slot) = slots.iter_mut().find(|s| s.peer == peer) {
            slot.asked = now;
            return true;
        }
        let taken = Slot {
            peer,
            since: now,
            asked: now,
        };
        if slots.len() < UPLOAD_SLOTS {
            slots.push(taken);
            return true;
        }
        if let Some(index) = slots
            .iter()
            .position(|s| now.saturating_duration_since(s.asked) >= SLOT_IDLE)
        {
            slots[index] = taken;
            return true;
        }
        release
            .rested
            .retain(|(_, at)| now.saturating_duration_since(*at) < SLOT_TURN);
        if release.rested.iter().any(|(p, _)| *p == peer) {
            return false;
        }
        let over = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| now.saturating_duration_since(s.since) >= SLOT_TURN)
            .min_by_key(|(_, s)| s.since)
            .map(|(i, _)| i);
        let Some(index) = over else {
            return false;
        };
        if release.rested.len() >= 2 * UPLOAD_SLOTS {
            release.rested.remove(0);
        }
        release.rested.push((slots[index].peer, now));
        slots[index] = taken;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_peers_take_the_slots_and_the_next_waits_its_turn() {
        let mut slots = UploadSlots::default();
        let id = ManifestId([1; 32]);
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..UPLOAD_SLOTS + 1).map(|_| PeerId::random()).collect();
        for peer in &peers[..UPLOAD_SLOTS] {
            assert!(slots.admit(id, *peer, t0));
        }
        let waiting = peers[UPLOAD_SLOTS];
        assert!(!slots.admit(id, waiting, t0), "every slot is held");
        // The holders keep asking; the waiting peer is choked until a turn is over.
        let mut now = t0;
        while now < t0 + SLOT_TURN {
            now += Duration::from_millis(500);
            for peer in &peers[..UPLOAD_SLOTS] {
                slots.admit(id, *peer, now);
            }
            if now < t0 + SLOT_TURN {
                assert!(!slots.admit(id, waiting, now), "at {:?}", now - t0);
            }
        }
        assert!(slots.admit(id, waiting, now), "its turn came");
        // The peer that held its slot longest gave it up, and rests before it ends another's
        // turn.
        assert!(!slots.admit(id, peers[0], now));
        let mid = now + SLOT_TURN / 2;
        for peer in &peers[1..] {
            assert!(slots.admit(id, *peer, mid));
        }
        assert!(!slots.admit(id, peers[0], mid));
        // Another release has slots of its own.
        assert!(slots.admit(ManifestId([2; 32]), peers[0], now));
    }

    #[test]
    fn a_slot_whose_peer_stopped_asking_is_free() {
        let mut slots = UploadSlots::default();
        let id = ManifestId([1; 32]);
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..UPLOAD_SLOTS).map(|_| PeerId::random()).collect();
        for peer in &peers {
            assert!(slots.admit(id, *peer, t0));
        }
        let later = t0 + Duration::from_secs(1);
        for peer in &peers[1..] {
            slots.admit(id, *peer, later);
        }
        let newcomer = PeerId::random();
        assert!(!slots.admit(id, newcomer, later));
        // peers[0] last asked at t0: idle once SLOT_IDLE has passed.
        assert!(slots.admit(id, newcomer, t0 + SLOT_IDLE));
    }

    #[test]
    fn releases_tracked_are_bounded() {
        let mut slots = UploadSlots::default();
        let now = Instant::now();
        for i in 0..(MAX_SLOT_MANIFESTS + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            slots.admit(ManifestId(id), PeerId::random(), now);
        }
        assert_eq!(slots.releases.len(), MAX_SLOT_MANIFESTS);
    }
}
