//! Which chunk to ask which peer for next: rarest first, several in flight per peer, and an
//! endgame for the last chunks.
//!
//! Among equally rare chunks the order is sequential (file order, then chunk order), starting at
//! a point each download picks at random and wrapping around: downloaders that start together
//! then ask a seeder for different chunks, which they can next fetch from each other, instead
//! of all asking for the same ones in the same order.
//!
//! A seed (a peer that has every chunk) is asked first for chunks that no peer still downloading
//! has: a seed's upload is what a swarm has least of, so it goes to chunks nobody else can give.
//! Downloaders that started together must not then chase each other: when the run of such chunks
//! a seed is being asked for meets chunks another downloader has, the next one asked for is near
//! the middle of the longest run left (at random in its middle half, so that downloaders that see
//! the same runs do not all jump to the same chunk), far from the point where every other
//! downloader is asking for its next chunk. (Going on to the next chunk nobody has would be the
//! very chunk the other downloader is asking the seed for.) A chunk a downloading peer claims is
//! only deferred, never withheld from the seed: a peer that claims chunks and does not send them
//! cannot stall the download; but a seed has at most [`SHARED_PER_SEED`] chunks in flight that
//! another peer could send too (deferred ones and endgame duplicates), so the bulk of them comes
//! from the peers that have them.
//!
//! Pure bookkeeping, no I/O (it reads the clock, for the endgame's wait), so every rule is
//! unit-tested. Invariants:
//! - a chunk is handed out at most once at a time outside the endgame; in the endgame (every
//!   chunk still needed is in flight) a chunk in flight for at least [`ENDGAME_WAIT`] may be
//!   handed to a second peer that has it, but never twice to the same peer, and a peer has at
//!   most [`ENDGAME_PER_PEER`] such duplicates in flight;
//! - [`Scheduler::release`] puts a chunk back (its peer failed or sent garbage);
//!   [`Scheduler::complete`] retires it for good;
//! - each pick costs time linear in the chunks not yet complete (the order is kept compacted),
//!   except a seed's jump to another free run, which looks at every chunk once.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use licet_proto::wire::Bitfield;

/// A chunk of a manifest: (file index, chunk index).
pub type ChunkRef = (u32, u64);

/// Most chunks in flight from one seed at once that another peer could send too: a downloading
/// peer has them, or they are in flight from another peer (the endgame).
pub const SHARED_PER_SEED: usize = 2;
/// How long a chunk must have been in flight before it is asked of a second peer (the endgame):
/// a peer with a pipeline of chunks answers the last of them well after the first, and a copy
/// asked for sooner is mostly thrown away.
pub const ENDGAME_WAIT: Duration = Duration::from_secs(2);
/// Most endgame duplicates in flight from one peer at once (chunks in flight from another peer
/// too). With several peers and pipelines of 16, every chunk left may be in flight long before
/// the end; duplicating them all threw away 207 of the 1,280 chunks of a swarm of 5 downloaders
/// (165 and 182 with this limit).
pub const ENDGAME_PER_PEER: usize = 2;

/// A chunk in flight.
struct InFlight {
    /// The peers it is being fetched from (more than one in the endgame).
    peers: Vec<PeerId>,
    /// When the first of them was asked.
    since: Instant,
}

/// The download's chunk bookkeeping.
pub struct Scheduler {
    /// Chunks not yet complete, rarest first (recomputed when availability changes).
    order: Vec<ChunkRef>,
    /// Chunks held (complete), per file.
    held: Vec<Bitfield>,
    /// Each chunk in flight: who it is being fetched from, and since when.
    in_flight: HashMap<ChunkRef, InFlight>,
    /// How long a chunk is in flight before the endgame may duplicate it ([`ENDGAME_WAIT`]).
    endgame_wait: Duration,
    /// What each peer said it has.
    availability: HashMap<PeerId, Vec<Bitfield>>,
    /// Peers that have every chunk.
    seeds: HashSet<PeerId>,
    /// Chunks not complete that a peer other than a seed has (recomputed with `order`).
    held_by_partial_peers: HashSet<ChunkRef>,
    /// The chunk each seed was last asked for that no downloading peer had: the next one asked
    /// for is the one after it, while that one is still free.
    seed_cursor: HashMap<PeerId, ChunkRef>,
    /// Where each file's chunks start in the order of all chunks (file, then chunk).
    file_starts: Vec<u64>,
    /// State of the generator that picks where in a free run a seed jumps to.
    jump_state: u64,
    remaining: u64,
}

impl Scheduler {
    /// A scheduler for files whose held chunks are `held`; among equally rare chunks it starts at
    /// the missing chunk `start` (modulo their number) and goes on in order, wrapping around.
    pub fn new(held: Vec<Bitfield>, start: u64) -> Scheduler {
        let mut order = Vec::new();
        for (file, bits) in held.iter().enumerate() {
            for chunk in 0..bits.len() {
                if !bits.get(chunk) {
                    order.push((file as u32, chunk));
                }
            }
        }
        if !order.is_empty() {
            let len = order.len();
            order.rotate_left((start % len as u64) as usize);
        }
        let remaining = order.len() as u64;
        let file_starts = held
            .iter()
            .scan(0, |next, bits| {
                let start = *next;
                *next += bits.len();
                Some(start)
            })
            .collect();
        Scheduler {
            order,
            held,
            in_flight: HashMap::new(),
            endgame_wait: ENDGAME_WAIT,
            availability: HashMap::new(),
            seeds: HashSet::new(),
            held_by_partial_peers: HashSet::new(),
            seed_cursor: HashMap::new(),
            file_starts,
            jump_state: start,
            remaining,
        }
    }

    /// The same scheduler with another [`ENDGAME_WAIT`].
    #[cfg(test)]
    fn with_endgame_wait(mut self, wait: Duration) -> Scheduler {
        self.endgame_wait = wait;
        self
    }

    /// Chunks not yet complete.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether every chunk is complete.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Whether `bits` has the right shape for these files.
    pub fn fits(&self, bits: &[Bitfield]) -> bool {
        bits.len() == self.held.len()
            && bits.iter().zip(&self.held).all(|(a, b)| a.len() == b.len())
    }

    /// Records what `peer` has (replacing what it said before) and re-sorts rarest first.
    /// `bits` must [`fit`](Scheduler::fits).
    pub fn set_availability(&mut self, peer: PeerId, bits: Vec<Bitfield>) {
        if self.availability.get(&peer) == Some(&bits) {
            return;
        }
        let complete = bits.iter().all(|b| b.count_ones() == b.len());
        if complete {
            self.seeds.insert(peer);
        } else {
            self.seeds.remove(&peer);
        }
        self.availability.insert(peer, bits);
        self.resort();
    }

    /// Forgets `peer` (gone or banned) and puts back what it was fetching.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        self.availability.remove(peer);
        self.seeds.remove(peer);
        self.seed_cursor.remove(peer);
        for chunk in self.in_flight.values_mut() {
            chunk.peers.retain(|p| p != peer);
        }
        self.in_flight.retain(|_, chunk| !chunk.peers.is_empty());
        self.resort();
    }

    /// Whether `peer`'s latest availability claims `chunk`.
    pub fn claims(&self, peer: &PeerId, (file, chunk): ChunkRef) -> bool {
        self.availability
            .get(peer)
            .and_then(|bits| bits.get(file as usize))
            .is_some_and(|bits| bits.get(chunk))
    }

    /// Whether `peer` has every chunk.
    pub fn is_seed(&self, peer: &PeerId) -> bool {
        self.seeds.contains(peer)
    }

    /// Whether a peer still downloading has a chunk this download needs.
    pub fn partial_peers_help(&self) -> bool {
        !self.held_by_partial_peers.is_empty()
    }

    fn resort(&mut self) {
        let held = &self.held;
        self.order.retain(|&(f, c)| !held[f as usize].get(c));
        let availability = &self.availability;
        let holders = |&(f, c): &ChunkRef| {
            availability
                .values()
                .filter(|bits| bits[f as usize].get(c))
                .count()
        };
        // Stable: equally rare chunks keep the order they had (sequential from `start`).
        self.order.sort_by_cached_key(holders);
        let partial: Vec<&Vec<Bitfield>> = self
            .availability
            .iter()
            .filter(|(peer, _)| !self.seeds.contains(peer))
            .map(|(_, bits)| bits)
            .collect();
        self.held_by_partial_peers = self
            .order
            .iter()
            .copied()
            .filter(|&(f, c)| partial.iter().any(|bits| bits[f as usize].get(c)))
            .collect();
    }

    /// The next chunk to ask `peer` for, marked in flight; `None` if it has nothing needed now.
    pub fn next_for(&mut self, peer: PeerId) -> Option<ChunkRef> {
        let now = Instant::now();
        let is_seed = self.seeds.contains(&peer);
        if is_seed && let Some(chunk) = self.next_free_for_seed(&peer) {
            self.seed_cursor.insert(peer, chunk);
            self.mark_in_flight(chunk, peer, now);
            return Some(chunk);
        }
        let bits = self.availability.get(&peer)?;
        let held = &self.held;
        // The download's end: every chunk still needed is in flight. Before it, a chunk is
        // never asked of a second peer: a peer that offers only a few chunks (a seed spreading
        // its upload, a peer just started) would otherwise get every one of them asked again
        // while they are on their way from elsewhere.
        let at_the_end = self.in_flight.len() as u64 >= self.remaining;
        let mut fresh = None;
        let mut deferred = None;
        let mut endgame = None;
        let mut stale = false;
        for &chunk in &self.order {
            let (f, c) = chunk;
            if held[f as usize].get(c) {
                stale = true;
                continue;
            }
            if !bits[f as usize].get(c) {
                continue;
            }
            match self.in_flight.get(&chunk) {
                // Left to the peer still downloading that has it, unless nothing else is left.
                None if is_seed && self.held_by_partial_peers.contains(&chunk) => {
                    deferred = deferred.or(Some(chunk));
                }
                None => {
                    fresh = Some(chunk);
                    break;
                }
                Some(asked)
                    if at_the_end
                        && endgame.is_none()
                        && !asked.peers.contains(&peer)
                        && now.duration_since(asked.since) >= self.endgame_wait =>
                {
                    endgame = Some(chunk);
                }
                Some(_) => {}
            }
        }
        if stale {
            self.order.retain(|&(f, c)| !held[f as usize].get(c));
        }
        if is_seed && fresh.is_none() && self.shared_in_flight(&peer) >= SHARED_PER_SEED {
            // The other peers that have them are asked; the seed gets more as these arrive.
            return None;
        }
        if fresh.is_none()
            && deferred.is_none()
            && self.duplicates_in_flight(&peer) >= ENDGAME_PER_PEER
        {
            // Every copy but the first is thrown away: a few at a time are enough to get past
            // a slow peer.
            return None;
        }
        // Endgame: every needed chunk is already in flight, one this peer has for a while;
        // duplicate the rarest so a slow peer cannot hold up the end.
        let chunk = fresh.or(deferred).or(endgame)?;
        self.mark_in_flight(chunk, peer, now);
        Some(chunk)
    }

    /// Records that `chunk` is being fetched from `peer` too.
    fn mark_in_flight(&mut self, chunk: ChunkRef, peer: PeerId, now: Instant) {
        self.in_flight
            .entry(chunk)
            .or_insert_with(|| InFlight {
                peers: Vec::new(),
                since: now,
            })
            .peers
            .push(peer);
    }

    /// Whether `chunk` is one a seed should be asked for first: not held, not in flight, and no
    /// downloading peer has it.
    fn free_for_seed(&self, chunk: ChunkRef) -> bool {
        !self.held[chunk.0 as usize].get(chunk.1)
            && !self.in_flight.contains_key(&chunk)
            && !self.held_by_partial_peers.contains(&chunk)
    }

    /// How many chunks in flight from `seed` another peer could send too.
    fn shared_in_flight(&self, seed: &PeerId) -> usize {
        self.in_flight
            .iter()
            .filter(|(chunk, asked)| {
                asked.peers.contains(seed)
                    && (asked.peers.len() > 1 || self.held_by_partial_peers.contains(chunk))
            })
            .count()
    }

    /// How many chunks in flight from `peer` are in flight from another peer too.
    fn duplicates_in_flight(&self, peer: &PeerId) -> usize {
        self.in_flight
            .values()
            .filter(|asked| asked.peers.len() > 1 && asked.peers.contains(peer))
            .count()
    }

    /// The chunk after `chunk` in the order of all chunks, if there is one.
    fn chunk_after(&self, (file, chunk): ChunkRef) -> Option<ChunkRef> {
        if chunk + 1 < self.held[file as usize].len() {
            return Some((file, chunk + 1));
        }
        (file as usize + 1..self.held.len())
            .find(|&f| !self.held[f].is_empty())
            .map(|f| (f as u32, 0))
    }

    /// The chunk at `position` in the order of all chunks.
    fn chunk_at(&self, position: u64) -> ChunkRef {
        let file = self.file_starts.partition_point(|&start| start <= position) - 1;
        (file as u32, position - self.file_starts[file])
    }

    /// The next chunk for `seed` that no downloading peer has: the one after the last it was
    /// asked for while that one is free; otherwise one at random in the middle half of the longest
    /// run of free chunks (or, while every missing chunk is free, the download's random starting
    /// point).
    fn next_free_for_seed(&mut self, seed: &PeerId) -> Option<ChunkRef> {
        if let Some(&last) = self.seed_cursor.get(seed)
            && let Some(next) = self.chunk_after(last)
            && self.free_for_seed(next)
        {
            return Some(next);
        }
        let (mut longest_start, mut longest_len) = (0, 0);
        let (mut run_start, mut run_len) = (0, 0);
        let mut position = 0;
        for (file, bits) in self.held.iter().enumerate() {
            for chunk in 0..bits.len() {
                if self.free_for_seed((file as u32, chunk)) {
                    if run_len == 0 {
                        run_start = position;
                    }
                    run_len += 1;
                    if run_len > longest_len {
                        (longest_start, longest_len) = (run_start, run_len);
                    }
                } else {
                    run_len = 0;
                }
                position += 1;
            }
        }
        if longest_len == 0 {
            return None;
        }
        if longest_len == self.remaining {
            // Nothing in flight and no downloading peer has anything: where this download starts.
            return self
                .order
                .iter()
                .copied()
                .find(|&chunk| self.free_for_seed(chunk));
        }
        let spread = longest_len / 4;
        let offset = longest_len / 2 - spread + self.next_random() % (2 * spread + 1);
        Some(self.chunk_at(longest_start + offset))
    }

    /// The next number of a SplitMix64 sequence (spreading jumps needs no more than that).
    fn next_random(&mut self) -> u64 {
        self.jump_state = self.jump_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.jump_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `peer` did not deliver `chunk`; it may be handed out again.
    pub fn release(&mut self, peer: &PeerId, chunk: ChunkRef) {
        if let Some(asked) = self.in_flight.get_mut(&chunk) {
            asked.peers.retain(|p| p != peer);
            if asked.peers.is_empty() {
                self.in_flight.remove(&chunk);
            }
        }
    }

    /// `chunk` was verified; it is never handed out again. Returns false if it already was
    /// (a duplicate from the endgame, to be dropped).
    pub fn complete(&mut self, chunk: ChunkRef) -> bool {
        let (f, c) = chunk;
        self.in_flight.remove(&chunk);
        if self.held[f as usize].get(c) {
            return false;
        }
        self.held[f as usize].set(c, true);
        self.remaining -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(len: u64, set: &[u64]) -> Bitfield {
        let mut b = Bitfield::new(len);
        for &i in set {
            b.set(i, true);
        }
        b
    }

    #[test]
    fn rarest_first_then_in_order() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(vec![bits(4, &[])], 0);
        s.set_availability(a, vec![bits(4, &[0, 1, 2])]);
        s.set_availability(b, vec![bits(4, &[0, 1, 3])]);
        // Chunk 2 only a has, chunk 3 only b: rarest.
        assert_eq!(s.next_for(a), Some((0, 2)));
        assert_eq!(s.next_for(a), Some((0, 0)));
        assert_eq!(s.next_for(b), Some((0, 3)));
        assert_eq!(s.next_for(b), Some((0, 1)));
    }

    #[test]
    fn equally_rare_chunks_go_in_order_from_the_start_and_wrap() {
        let (a, b) = (PeerId::random(), PeerId::random());
        // Chunk 1 of file 0 is held; the missing ones are (0,0) (0,2) (1,0) (1,1).
        let mut s = Scheduler::new(vec![bits(3, &[1]), bits(2, &[])], 6);
        s.set_availability(a, vec![bits(3, &[0, 1, 2]), bits(2, &[0, 1])]);
        let picked: Vec<_> = (0..4).map(|_| s.next_for(a).unwrap()).collect();
        assert_eq!(
            picked,
            vec![(1, 0), (1, 1), (0, 0), (0, 2)],
            "6 mod 4 = 2: from (1,0)"
        );
        // Rarity still comes first: a second holder makes a chunk less rare.
        let mut s = Scheduler::new(vec![bits(5, &[])], 1);
        s.set_availability(a, vec![bits(5, &[0, 1, 2, 3])]);
        s.set_availability(b, vec![bits(5, &[1, 2])]);
        let picked: Vec<_> = (0..4).map(|_| s.next_for(a).unwrap()).collect();
        assert_eq!(picked, vec![(0, 3), (0, 0), (0, 1), (0, 2)]);
    }

    #[test]
    fn a_seed_is_asked_first_for_what_no_downloading_peer_has() {
        let (seed, partial) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(vec![bits(4, &[])], 0).with_endgame_wait(Duration::ZERO);
        s.set_availability(seed, vec![bits(4, &[0, 1, 2, 3])]);
        s.set_availability(partial, vec![bits(4, &[0, 1])]);
        // The middle of the free run 2..=3, away from chunk 2, where the partial peer goes on.
        assert_eq!(s.next_for(seed), Some((0, 3)));
        assert_eq!(s.next_for(seed), Some((0, 2)));
        // 0 and 1 are left to the partial peer while the seed has other work ...
        assert_eq!(s.next_for(partial), Some((0, 0)));
        // ... and a seed with nothing else takes what the partial peer was not asked for yet,
        // before it duplicates what is in flight there (the endgame).
        assert_eq!(s.next_for(seed), Some((0, 1)));
        assert_eq!(
            s.next_for(seed),
            Some((0, 0)),
            "endgame: in flight elsewhere"
        );
        assert_eq!(s.next_for(seed), None);
    }

    #[test]
    fn a_seed_run_that_meets_another_downloader_jumps_to_the_middle_of_the_longest_free_run() {
        let (seed, other) = (PeerId::random(), PeerId::random());
        // Sixteen chunks over two files of eight; this download starts at chunk 2.
        let mut s = Scheduler::new(vec![bits(8, &[]), bits(8, &[])], 2);
        s.set_availability(seed, vec![bits(8, &[0, 1, 2, 3, 4, 5, 6, 7]); 2]);
        let first: Vec<_> = (0..3).map(|_| s.next_for(seed).unwrap()).collect();
        assert_eq!(
            first,
            vec![(0, 2), (0, 3), (0, 4)],
            "in order from the start"
        );
        // Another downloader started at chunk 5 and has 5..=7: going on to (1, 0) would ask the
        // seed for what it is asking for now. The free runs are 0..=1 and (1,0)..=(1,7).
        s.set_availability(other, vec![bits(8, &[5, 6, 7]), bits(8, &[])]);
        let (file, jumped) = s.next_for(seed).unwrap();
        assert_eq!(file, 1, "into the longest free run");
        assert!((2..=6).contains(&jumped), "in its middle half: {jumped}");
        assert_eq!(
            s.next_for(seed),
            Some((1, jumped + 1)),
            "then in order again"
        );
    }

    #[test]
    fn a_seed_has_few_chunks_a_downloading_peer_has_in_flight() {
        let (seed, partial) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(vec![bits(6, &[])], 0);
        s.set_availability(seed, vec![bits(6, &[0, 1, 2, 3, 4, 5])]);
        s.set_availability(partial, vec![bits(6, &[0, 1, 2, 3, 4])]);
        assert_eq!(s.next_for(seed), Some((0, 5)), "the one only the seed has");
        let deferred: Vec<_> = (0..SHARED_PER_SEED)
            .map(|_| s.next_for(seed).unwrap())
            .collect();
        assert_eq!(deferred, vec![(0, 0), (0, 1)]);
        assert_eq!(
            s.next_for(seed),
            None,
            "the rest is left to the peer that has it, no endgame yet"
        );
        assert_eq!(s.next_for(partial), Some((0, 2)));
        assert!(s.complete((0, 0)));
        assert_eq!(s.next_for(seed), Some((0, 3)), "one more as one arrives");
    }

    #[test]
    fn a_peer_that_claims_chunks_and_never_sends_them_does_not_hold_back_a_seed() {
        let (seed, liar) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(vec![bits(3, &[])], 0);
        s.set_availability(seed, vec![bits(3, &[0, 1, 2])]);
        s.set_availability(liar, vec![bits(3, &[0, 1])]);
        // The liar answers Busy: its chunks go back, and the seed still gets all of them.
        let taken = s.next_for(liar).unwrap();
        s.release(&liar, taken);
        let mut got: Vec<_> = (0..3).map(|_| s.next_for(seed).unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![(0, 0), (0, 1), (0, 2)]);
    }

    #[test]
    fn claims_follows_the_latest_availability() {
        let a = PeerId::random();
        let mut s = Scheduler::new(vec![bits(3, &[])], 0);
        assert!(!s.claims(&a, (0, 1)), "nothing known yet");
        s.set_availability(a, vec![bits(3, &[1])]);
        assert!(s.claims(&a, (0, 1)));
        assert!(!s.claims(&a, (0, 2)));
        assert!(!s.claims(&a, (1, 0)), "no such file");
        s.set_availability(a, vec![bits(3, &[])]);
        assert!(!s.claims(&a, (0, 1)));
    }

    #[test]
    fn held_chunks_are_never_asked_for() {
        let a = PeerId::random();
        let mut s = Scheduler::new(vec![bits(3, &[0, 2]), bits(1, &[])], 0);
        assert_eq!(s.remaining(), 2);
        s.set_availability(a, vec![bits(3, &[0, 1, 2]), bits(1, &[0])]);
        let mut got = vec![s.next_for(a).unwrap(), s.next_for(a).unwrap()];
        got.sort();
        assert_eq!(got, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn endgame_duplicates_to_another_peer_once() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(vec![bits(1, &[])], 0).with_endgame_wait(Duration::ZERO);
        s.set_availability(a, vec![bits(1, &[0])]);
        s.set_availability(b, vec![bits(1, &[0])]);
        assert_eq!(s.next_for(a), Some((0, 0)));
        assert_eq!(s.next_for(a), None, "never twice to the same peer");
        assert_eq!(s.next_for(b), Some((0, 0)), "endgame: a second peer");
        assert!(s.complete((0, 0)));
        assert!(!s.complete((0, 0)), "the duplicate is dropped");
        assert!(s.is_done());
        assert_eq!(s.next_for(a), None);
    }

    #[test]
    fn a_peer_has_few_endgame_duplicates_in_flight_seed_or_not() {
        // Both have every chunk (seeds), or neither has the last (both still downloading).
        for (chunks, limit) in [(4, SHARED_PER_SEED), (5, ENDGAME_PER_PEER)] {
            let (a, b) = (PeerId::random(), PeerId::random());
            let mut s =
                Scheduler::new(vec![bits(chunks, &[])], 0).with_endgame_wait(Duration::ZERO);
            s.set_availability(a, vec![bits(chunks, &[0, 1, 2, 3])]);
            s.set_availability(b, vec![bits(chunks, &[0, 1, 2, 3])]);
            assert_eq!(s.is_seed(&b), chunks == 4);
            for _ in 0..4 {
                assert!(s.next_for(a).is_some());
            }
            if chunks == 5 {
                assert_eq!(
                    s.next_for(b),
                    None,
                    "not the end while chunk 4, which no peer has yet, is still to be asked"
                );
                s.set_availability(a, vec![bits(chunks, &[0, 1, 2, 3, 4])]);
                assert_eq!(s.next_for(a), Some((0, 4)));
            }
            let duplicated: Vec<_> = (0..limit).map(|_| s.next_for(b)).collect();
            assert!(
                duplicated.iter().all(Option::is_some),
                "endgame: {duplicated:?}"
            );
            assert_eq!(s.next_for(b), None, "no more while those are in flight");
            assert!(s.complete(duplicated[0].unwrap()));
            assert!(s.next_for(b).is_some(), "one more as one arrives");
        }
    }

    #[test]
    fn a_chunk_is_duplicated_only_after_it_has_been_in_flight_a_while() {
        let (a, b) = (PeerId::random(), PeerId::random());
        for (wait, duplicated) in [(Duration::from_secs(3600), false), (Duration::ZERO, true)] {
            let mut s = Scheduler::new(vec![bits(1, &[])], 0).with_endgame_wait(wait);
            s.set_availability(a, vec![bits(1, &[0])]);
            s.set_availability(b, vec![bits(1, &[0])]);
            assert_eq!(s.next_for(a), Some((0, 0)));
            assert_eq!(s.next_for(b).is_some(), duplicated, "endgame wait {wait:?}");
        }
        // The wait runs from when the chunk was first asked for.
        let wait = Duration::from_millis(50);
        let mut s = Scheduler::new(vec![bits(1, &[])], 0).with_endgame_wait(wait);
        s.set_availability(a, vec![bits(1, &[0])]);
        s.set_availability(b, vec![bits(1, &[0])]);
        assert_eq!(s.next_for(a), Some((0, 0)));
        std::thread::sleep(wait * 2);
        assert_eq!(s.next_for(b), Some((0, 0)), "a is slow: b is asked too");
    }

    #[test]
    fn released_and_removed_chunks_go_back() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut s = Scheduler::new(vec![bits(2, &[])], 0);
        s.set_availability(a, vec![bits(2, &[0, 1])]);
        let first = s.next_for(a).unwrap();
        s.release(&a, first);
        let mut again = vec![s.next_for(a).unwrap(), s.next_for(a).unwrap()];
        again.sort();
        assert_eq!(
            again,
            vec![(0, 0), (0, 1)],
            "the released chunk is handed out again"
        );
        s.set_availability(b, vec![bits(2, &[0, 1])]);
        s.remove_peer(&a);
        assert!(!s.claims(&a, first), "a is forgotten");
        assert_eq!(s.next_for(b), Some(first), "a's chunks are free again");
    }

    #[test]
    fn availability_must_fit() {
        let s = Scheduler::new(vec![bits(3, &[]), bits(1, &[])], 0);
        assert!(s.fits(&[bits(3, &[]), bits(1, &[])]));
        assert!(!s.fits(&[bits(3, &[])]));
        assert!(!s.fits(&[bits(4, &[]), bits(1, &[])]));
    }
}
