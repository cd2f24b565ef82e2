//! The seed's count of deliveries: per release and UTC day, the distinct peers this node served
//! at least a share of the release's bytes to.
//!
//! Invariants:
//! - memory is bounded: at most [`MAX_IN_PROGRESS`] (release, day, peer) byte counters for
//!   peers not counted yet, at most [`MAX_EXACT_PEERS`] counted peers' hashes kept exactly over
//!   all tallies, and tallies (one 1 KiB sketch each) only for today and yesterday of releases
//!   served;
//! - when the in-progress table is full, the entry with the fewest bytes makes room: a peer
//!   evicted starts again from zero if it comes back, so eviction can only under-count, never
//!   count a peer that was not served the share;
//! - a peer is counted once per release and day, however often it reaches the share (the
//!   sketch and the exact set are both idempotent); past [`MAX_EXACT_PEERS`] the own count
//!   becomes the sketch's estimate;
//! - bytes are chunk bytes that left this node past the serving policy's second check; a chunk
//!   sent twice counts twice (the receiver paid for both).

use std::collections::{BTreeMap, HashMap, HashSet};

use libp2p::PeerId;
use licet_proto::{
    ManifestId, PublicKey, Timestamp,
    delivery::{DeliveryReport, DistinctSketch, UtcDay, sketch::peer_hash},
};
use serde::{Deserialize, Serialize};

/// Most peers being counted (served something, not the share yet) at once.
pub const MAX_IN_PROGRESS: usize = 16_384;
/// Most counted peers remembered exactly (8 bytes each), over all releases and days.
pub const MAX_EXACT_PEERS: usize = 1_000_000;
/// The share of a release a peer must be served to count, unless configured.
pub const DEFAULT_MIN_SHARE_PERCENT: u8 = 90;

/// One release's count on one day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DayTally {
    /// The release's publisher.
    pub publisher: PublicKey,
    /// The peers counted.
    pub sketch: DistinctSketch,
    /// Their hashes, while the exact bound allows.
    counted: HashSet<u64>,
    /// Whether a counted peer could not be kept exactly.
    overflowed: bool,
    /// The sequence of the last report signed for this tally.
    pub last_sequence: u64,
    /// Whether peers were counted since the last report.
    pub changed: bool,
}

impl DayTally {
    /// This node's own count of distinct peers.
    pub fn peers_served(&self) -> u64 {
        let exact = self.counted.len() as u64;
        if self.overflowed {
            exact.max(self.sketch.count())
        } else {
            exact
        }
    }
}

/// The counts of one node (see the module docs).
#[derive(Debug)]
pub struct DeliveryCounter {
    min_share_percent: u8,
    tallies: BTreeMap<(ManifestId, UtcDay), DayTally>,
    in_progress: HashMap<(ManifestId, UtcDay, PeerId), u64>,
    exact_peers: usize,
}

/// The tallies as saved to disk between runs (in-progress bytes are not saved: a restart can
/// only under-count).
#[derive(Serialize, Deserialize)]
pub struct SavedTallies(pub Vec<(ManifestId, UtcDay, DayTally)>);

impl DeliveryCounter {
    /// A counter that counts a peer once it was served `min_share_percent` of a release.
    pub fn new(min_share_percent: u8) -> DeliveryCounter {
        DeliveryCounter {
            min_share_percent: min_share_percent.clamp(1, 100),
            tallies: BTreeMap::new(),
            in_progress: HashMap::new(),
            exact_peers: 0,
        }
    }

    /// The share a peer must be served to count, in percent.
    pub fn min_share_percent(&self) -> u8 {
        self.min_share_percent
    }

    /// Takes back tallies saved by an earlier run (those of days already forgotten are not).
    pub fn restore(&mut self, saved: SavedTallies, now: Timestamp) {
        for (release, day, tally) in saved.0 {
            if day >= yesterday(now) && !self.tallies.contains_key(&(release, day)) {
                self.exact_peers += tally.counted.len();
                self.tallies.insert((release, day), tally);
            }
        }
    }

    /// The tallies to save.
    pub fn saved(&self) -> SavedTallies {
        SavedTallies(
            self.tallies
                .iter()
                .map(|((release, day), tally)| (*release, *day, tally.clone()))
                .collect(),
        )
    }

    /// Records that `bytes` of `release` (of `publisher`, `release_bytes` in all) went to
    /// `peer` at `now`.
    pub fn served(
        &mut self,
        release: ManifestId,
        publisher: PublicKey,
        release_bytes: u64,
        peer: &PeerId,
        bytes: u64,
        now: Timestamp,
    ) {
        let day = UtcDay::of(now);
        self.forget_before(yesterday(now));
        let peer_bytes = peer.to_bytes();
        let hash = peer_hash(&release, day, &peer_bytes);
        if self
            .tallies
            .get(&(release, day))
            .is_some_and(|t| t.counted.contains(&hash))
        {
            return;
        }
        let key = (release, day, *peer);
        if !self.in_progress.contains_key(&key) && self.in_progress.len() >= MAX_IN_PROGRESS {
            self.evict_least_progressed();
        }
        let total = self.in_progress.entry(key).or_insert(0);
        *total = total.saturating_add(bytes);
        let reached = u128::from(*total) * 100
            >= u128::from(release_bytes) * u128::from(self.min_share_percent);
        if !reached {
            return;
        }
        self.in_progress.remove(&key);
        let tally = self
            .tallies
            .entry((release, day))
            .or_insert_with(|| DayTally {
                publisher,
                sketch: DistinctSketch::new(),
                counted: HashSet::new(),
                overflowed: false,
                last_sequence: 0,
                changed: false,
            });
        tally.sketch.insert_hash(hash);
        if self.exact_peers < MAX_EXACT_PEERS {
            if tally.counted.insert(hash) {
                self.exact_peers += 1;
            }
        } else {
            tally.overflowed = true;
        }
        tally.changed = true;
    }

    fn evict_least_progressed(&mut self) {
        if let Some(key) = self
            .in_progress
            .iter()
            .min_by_key(|(_, bytes)| **bytes)
            .map(|(key, _)| *key)
        {
            self.in_progress.remove(&key);
        }
    }

    fn forget_before(&mut self, first_kept: UtcDay) {
        let before = self.tallies.len();
        self.tallies.retain(|(_, day), _| *day >= first_kept);
        if self.tallies.len() != before {
            self.exact_peers = self.tallies.values().map(|t| t.counted.len()).sum();
        }
        self.in_progress.retain(|(_, day, _), _| *day >= first_kept);
    }

    /// The reports due at `now` for releases of `publisher`: one per tally counted since its
    /// last report, each with a sequence above the last (the clock's seconds, or one more than
    /// the last if the clock went back). Marks them reported.
    pub fn due_reports(&mut self, publisher: &PublicKey, now: Timestamp) -> Vec<DeliveryReport> {
        self.forget_before(yesterday(now));
        let share = self.min_share_percent;
        let mut due = Vec::new();
        for ((release, day), tally) in &mut self.tallies {
            if &tally.publisher != publisher || !tally.changed {
                continue;
            }
            let sequence = u64::try_from(now.0)
                .unwrap_or(0)
                .max(tally.last_sequence.saturating_add(1));
            tally.last_sequence = sequence;
            tally.changed = false;
            due.push(DeliveryReport {
                publisher: *publisher,
                release: *release,
                day: *day,
                sequence,
                // A report of yesterday signed today is still about yesterday.
                issued_at: now.max(day.start()),
                min_share_percent: share,
                peers_served: tally.peers_served(),
                sketch: tally.sketch.clone(),
            });
        }
        due
    }

    /// Marks every tally of `publisher` as changed, so the next [`Self::due_reports`] reports
    /// them all again (a report asked for by hand, or republished after a restart).
    pub fn mark_all_changed(&mut self, publisher: &PublicKey) {
        for tally in self.tallies.values_mut() {
            if &tally.publisher == publisher {
                tally.changed = true;
            }
        }
    }

    /// The tallies held, for status output.
    pub fn tallies(&self) -> impl Iterator<Item = (&(ManifestId, UtcDay), &DayTally)> {
        self.tallies.iter()
    }
}

fn yesterday(now: Timestamp) -> UtcDay {
    UtcDay(UtcDay::of(now).0.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use licet_proto::{
        SecretKey,
        catalog::{Catalog, CatalogEntry},
        delegation::{Delegation, DelegationScope},
        delivery::{DeliveryLedger, VerifiedDeliveryReport},
    };

    use super::*;

    const RELEASE: ManifestId = ManifestId([0x11; 32]);
    const RELEASE_BYTES: u64 = 10 * 1024 * 1024;
    const NOW: Timestamp = Timestamp(1_800_000_000);

    fn publisher_key() -> SecretKey {
        SecretKey::from_seed(&[1; 32])
    }

    /// Serves `peer` `bytes` of the release, in 1 MiB chunks.
    fn serve(counter: &mut DeliveryCounter, peer: &PeerId, bytes: u64) {
        let mut left = bytes;
        while left > 0 {
            let chunk = left.min(1 << 20);
            counter.served(
                RELEASE,
                publisher_key().public_key(),
                RELEASE_BYTES,
                peer,
                chunk,
                NOW,
            );
            left -= chunk;
        }
    }

    /// A partner's signed reports of what its counter counted.
    fn signed_reports(counter: &mut DeliveryCounter, partner: &SecretKey) -> Vec<Vec<u8>> {
        let delegation = Delegation {
            publisher: publisher_key().public_key(),
            delegate: partner.public_key(),
            not_before: NOW.plus_seconds(-86_400),
            not_after: NOW.plus_seconds(86_400),
            scope: DelegationScope::DeliveryReports,
        }
        .sign(&publisher_key())
        .into_carried_delegation()
        .unwrap();
        counter
            .due_reports(&publisher_key().public_key(), NOW)
            .into_iter()
            .map(|r| r.sign(partner, Some(delegation.clone())).encode())
            .collect()
    }

    #[test]
    fn two_partners_ten_downloaders_merge_to_ten() {
        // Fixed identities: with random ones, two of ten share a sketch register about 4 % of
        // the time, and the merged estimate is then 9 (within the sketch's stated error).
        let downloaders: Vec<PeerId> = (0..10u8)
            .map(|n| {
                libp2p::identity::Keypair::ed25519_from_bytes([n; 32])
                    .unwrap()
                    .public()
                    .to_peer_id()
            })
            .collect();
        let mut first = DeliveryCounter::new(90);
        let mut second = DeliveryCounter::new(90);
        // 0..6 took the whole release from the first partner, 4..10 from the second (4 and 5
        // from both); 0 also took a little from the second, not enough to count there.
        for peer in &downloaders[..6] {
            serve(&mut first, peer, RELEASE_BYTES);
        }
        for peer in &downloaders[4..] {
            serve(&mut second, peer, RELEASE_BYTES);
        }
        serve(&mut second, &downloaders[0], RELEASE_BYTES / 2);
        let catalog = Catalog {
            publisher: publisher_key().public_key(),
            sequence: 1,
            issued_at: NOW.plus_seconds(-60),
            expires_at: NOW.plus_seconds(86_400),
            entries: vec![CatalogEntry {
                manifest_id: RELEASE,
                title: "Film".into(),
            }],
            revoked_manifests: vec![],
            revoked_delegates: vec![],
            revoked_licences: Vec::new(),
        }
        .sign(&publisher_key())
        .unwrap();
        let mut ledger = DeliveryLedger::new();
        let partners = [
            SecretKey::from_seed(&[5; 32]),
            SecretKey::from_seed(&[6; 32]),
        ];
        for (counter, partner) in [(&mut first, &partners[0]), (&mut second, &partners[1])] {
            for bytes in signed_reports(counter, partner) {
                let report = VerifiedDeliveryReport::from_bytes(&bytes, &catalog, NOW).unwrap();
                ledger.accept(report).unwrap();
            }
        }
        let counts = ledger.counts();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].distinct_peers, 10);
        let own: Vec<u64> = counts[0].partners.iter().map(|p| p.peers_served).collect();
        assert_eq!(own.iter().sum::<u64>(), 12);
        // Nothing new counted: no report due.
        assert!(signed_reports(&mut first, &partners[0]).is_empty());
    }

    #[test]
    fn a_peer_counts_once_and_only_past_the_share() {
        let mut counter = DeliveryCounter::new(90);
        let peer = PeerId::random();
        serve(&mut counter, &peer, RELEASE_BYTES * 89 / 100);
        assert!(
            counter
                .due_reports(&publisher_key().public_key(), NOW)
                .is_empty()
        );
        serve(&mut counter, &peer, RELEASE_BYTES / 100 + 1);
        serve(&mut counter, &peer, RELEASE_BYTES);
        let reports = counter.due_reports(&publisher_key().public_key(), NOW);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].peers_served, 1);
        assert_eq!(reports[0].sketch.count(), 1);
        assert_eq!(reports[0].min_share_percent, 90);
        // Another publisher's releases are not in this publisher's reports.
        counter.mark_all_changed(&publisher_key().public_key());
        assert!(
            counter
                .due_reports(&SecretKey::from_seed(&[9; 32]).public_key(), NOW)
                .is_empty()
        );
    }

    #[test]
    fn sequences_rise_even_when_the_clock_goes_back() {
        let mut counter = DeliveryCounter::new(50);
        serve(&mut counter, &PeerId::random(), RELEASE_BYTES);
        let first = counter.due_reports(&publisher_key().public_key(), NOW);
        counter.mark_all_changed(&publisher_key().public_key());
        let second = counter.due_reports(&publisher_key().public_key(), NOW.plus_seconds(-30));
        assert_eq!(first[0].sequence, NOW.0 as u64);
        assert_eq!(second[0].sequence, NOW.0 as u64 + 1);
    }

    #[test]
    fn a_full_table_evicts_the_least_served_peer() {
        let mut counter = DeliveryCounter::new(90);
        let far_along = PeerId::random();
        serve(&mut counter, &far_along, RELEASE_BYTES / 2);
        for _ in 0..MAX_IN_PROGRESS {
            serve(&mut counter, &PeerId::random(), 1);
        }
        assert!(counter.in_progress.len() <= MAX_IN_PROGRESS);
        serve(&mut counter, &far_along, RELEASE_BYTES / 2);
        let reports = counter.due_reports(&publisher_key().public_key(), NOW);
        assert_eq!(reports[0].peers_served, 1, "the peer far along was kept");
    }

    #[test]
    fn days_before_yesterday_are_forgotten_and_saved_tallies_restored() {
        let mut counter = DeliveryCounter::new(90);
        serve(&mut counter, &PeerId::random(), RELEASE_BYTES);
        let saved = counter.saved();
        let mut restarted = DeliveryCounter::new(90);
        restarted.restore(saved, NOW);
        assert_eq!(restarted.tallies().count(), 1);
        let two_days_on = NOW.plus_seconds(2 * 86_400);
        assert!(
            restarted
                .due_reports(&publisher_key().public_key(), two_days_on)
                .is_empty()
        );
        assert_eq!(restarted.tallies().count(), 0);
    }
}
