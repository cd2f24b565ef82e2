//! Spreading a seed's upload across the chunks (super-seeding, as BitTorrent's BEP 16 does):
//! while several peers fetch a release this node holds whole, its availability answers offer
//! only the chunks it has sent least often, so each downloader asks it for chunks nobody else
//! got from it, and fetches the rest from the peers that did. A seed's uplink is what a swarm
//! has least of: every chunk it sends twice is a copy the peers could have carried.
//!
//! The offer is advice, never a refusal: a chunk this node holds is served to whoever asks for
//! it (a downloader with a stale view, or one whose peers left). No chunk is held back for
//! long: once every chunk has been sent as often as the least-sent one, all are offered again,
//! and a chunk last sent [`OFFERED_AGAIN_AFTER`] ago or more is offered again whatever its
//! count (the peers that got it may have left), so downloaders that hold everything offered
//! and still miss chunks are never stuck.
//!
//! Invariants: counts are kept for at most [`MAX_SPREAD_MANIFESTS`] releases (the one served
//! longest ago is forgotten first, and starts again from nothing), two bytes per chunk (a
//! saturating count and the tick of [`TICK`] it was last sent in, which wraps: a chunk last sent
//! a multiple of 256 ticks ago may wait up to [`OFFERED_AGAIN_AFTER`] longer); an offer is a
//! subset of what this node holds, and never empty when it holds something.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use licet_proto::{ManifestId, wire::Bitfield};

/// Most releases whose chunks' send counts are kept.
pub const MAX_SPREAD_MANIFESTS: usize = 32;
/// The unit of time a chunk's last send is kept in.
pub const TICK: Duration = Duration::from_secs(1);
/// A chunk last sent this long ago is offered again whatever its count.
pub const OFFERED_AGAIN_AFTER: Duration = Duration::from_secs(4);
/// [`OFFERED_AGAIN_AFTER`] in ticks.
const TICKS_AGAIN: u8 = (OFFERED_AGAIN_AFTER.as_secs() / TICK.as_secs()) as u8;

/// See the module docs.
#[derive(Default)]
pub struct Spread {
    releases: HashMap<ManifestId, Counts>,
}

struct Counts {
    /// Per file, for each chunk, how often and when it was last sent.
    sent: Vec<Vec<Sent>>,
    /// Where ticks count from.
    epoch: Instant,
    /// When a chunk of it was last sent.
    last: Instant,
}

#[derive(Clone, Copy, Default)]
struct Sent {
    count: u8,
    tick: u8,
}

impl Counts {
    /// The tick `now` falls in (wrapping).
    fn tick(&self, now: Instant) -> u8 {
        (now.saturating_duration_since(self.epoch).as_secs() / TICK.as_secs()) as u8
    }
}

impl Spread {
    /// Chunk `index` of file `file` of `manifest`, whose files have `chunks` chunks each, was
    /// sent at `now`.
    pub fn sent(
        &mut self,
        manifest: ManifestId,
        chunks: impl Fn() -> Vec<u64>,
        (file, index): (u32, u64),
        now: Instant,
    ) {
        if !self.releases.contains_key(&manifest) && self.releases.len() >= MAX_SPREAD_MANIFESTS {
            let stalest = self
                .releases
                .iter()
                .min_by_key(|(_, counts)| counts.last)
                .map(|(id, _)| *id);
            if let Some(stalest) = stalest {
                self.releases.remove(&stalest);
            }
        }
        let counts = self.releases.entry(manifest).or_insert_with(|| Counts {
            sent: chunks()
                .into_iter()
                .map(|n| vec![Sent::default(); n as usize])
                .collect(),
            epoch: now,
            last: now,
        });
        counts.last = now;
        let tick = counts.tick(now);
        if let Some(sent) = counts
            .sent
            .get_mut(file as usize)
            .and_then(|file| file.get_mut(index as usize))
        {
            sent.count = sent.count.saturating_add(1);
            sent.tick = tick;
        }
    }

    /// The chunks of `have` (what this node holds of `manifest`) to offer at `now`: those sent
    /// least often among them, and those last sent [`OFFERED_AGAIN_AFTER`] ago or more.
    pub fn offer(&self, manifest: &ManifestId, have: &[Bitfield], now: Instant) -> Vec<Bitfield> {
        let Some(counts) = self.releases.get(manifest) else {
            return have.to_vec();
        };
        let sent = |file: usize, chunk: u64| {
            counts
                .sent
                .get(file)
                .and_then(|f| f.get(chunk as usize))
                .copied()
                .unwrap_or_default()
        };
        let count = |file: usize, chunk: u64| sent(file, chunk).count;
        let tick = counts.tick(now);
        let long_ago =
            |file: usize, chunk: u64| tick.wrapping_sub(sent(file, chunk).tick) >= TICKS_AGAIN;
        let held = || {
            have.iter()
                .enumerate()
                .flat_map(|(file, bits)| (0..bits.len()).map(move |chunk| (file, chunk)))
                .filter(|&(file, chunk)| have[file].get(chunk))
        };
        let Some(least) = held().map(|(file, chunk)| count(file, chunk)).min() else {
            return have.to_vec();
        };
        let mut offer: Vec<Bitfield> = have.iter().map(|bits| Bitfield::new(bits.len())).collect();
        for (file, chunk) in held() {
            if count(file, chunk) == least || long_ago(file, chunk) {
                offer[file].set(chunk, true);
            }
        }
        offer
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn full(lens: &[u64]) -> Vec<Bitfield> {
        lens.iter()
            .map(|&len| {
                let mut bits = Bitfield::new(len);
                (0..len).for_each(|i| bits.set(i, true));
                bits
            })
            .collect()
    }

    fn offered(bits: &[Bitfield]) -> Vec<(usize, u64)> {
        bits.iter()
            .enumerate()
            .flat_map(|(f, b)| (0..b.len()).filter(|&c| b.get(c)).map(move |c| (f, c)))
            .collect()
    }

    #[test]
    fn the_chunks_sent_least_often_are_offered_until_all_were_sent_as_often() {
        let id = ManifestId([1; 32]);
        let have = full(&[3, 2]);
        let mut spread = Spread::default();
        let now = Instant::now();
        assert_eq!(spread.offer(&id, &have, now), have, "nothing sent yet: all");
        let chunks = || vec![3, 2];
        spread.sent(id, chunks, (0, 1), now);
        spread.sent(id, chunks, (1, 0), now);
        assert_eq!(
            offered(&spread.offer(&id, &have, now)),
            vec![(0, 0), (0, 2), (1, 1)]
        );
        spread.sent(id, chunks, (0, 1), now);
        for chunk in [(0, 0), (0, 2), (1, 1)] {
            spread.sent(id, chunks, chunk, now);
        }
        assert_eq!(
            offered(&spread.offer(&id, &have, now)),
            vec![(0, 0), (0, 2), (1, 0), (1, 1)],
            "every chunk sent once: all but the one sent twice"
        );
        let later = now + OFFERED_AGAIN_AFTER;
        assert_eq!(
            spread.offer(&id, &have, later),
            have,
            "sent long enough ago: offered again"
        );
    }

    #[test]
    fn an_offer_is_what_is_held_and_never_empty_when_something_is() {
        let id = ManifestId([2; 32]);
        let mut have = full(&[4]);
        have[0].set(3, false);
        let mut spread = Spread::default();
        for chunk in 0..3 {
            spread.sent(id, || vec![4], (0, chunk), Instant::now());
        }
        // Chunk 3, never sent, is not held: the least sent of what is held are offered.
        assert_eq!(
            offered(&spread.offer(&id, &have, Instant::now())),
            vec![(0, 0), (0, 1), (0, 2)]
        );
        let nothing = vec![Bitfield::new(4)];
        assert_eq!(spread.offer(&id, &nothing, Instant::now()), nothing);
        // Out-of-range chunks are ignored.
        spread.sent(id, || vec![4], (5, 0), Instant::now());
        spread.sent(id, || vec![4], (0, 99), Instant::now());
    }

    #[test]
    fn counts_are_kept_for_a_bounded_number_of_releases() {
        let mut spread = Spread::default();
        let start = Instant::now();
        let first = ManifestId([0; 32]);
        spread.sent(first, || vec![2], (0, 0), start);
        for n in 1..=MAX_SPREAD_MANIFESTS as u8 {
            let at = start + Duration::from_secs(u64::from(n));
            spread.sent(ManifestId([n; 32]), || vec![2], (0, 0), at);
        }
        assert_eq!(spread.releases.len(), MAX_SPREAD_MANIFESTS);
        let have = full(&[2]);
        assert_eq!(
            spread.offer(&first, &have, start),
            have,
            "forgotten: all offered"
        );
    }
}
