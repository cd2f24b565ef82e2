//! The Kademlia record store: the node's own provider records kept apart from other peers', so
//! that no peer can use up the room the node needs to announce its own content.
//!
//! libp2p's `MemoryStore` keeps every provider record in one table with one bound on keys; a
//! peer that fills it with records for made-up keys makes the node's own `start_providing` fail,
//! and a key whose provider list is full silently drops the node's own record. [`ProviderStore`]
//! keeps:
//!
//! - **the node's own provider records** (`start_providing`) in their own table with no bound
//!   for space: their number is the content and catalogs this node holds, which its operator
//!   chooses, not a peer. They are what kad re-announces ([`RecordStore::provided`]).
//! - **other peers' provider records**, bounded in total ([`MAX_REMOTE_PROVIDER_RECORDS`]), per
//!   providing peer ([`MAX_PROVIDER_RECORDS_PER_PEER`]) and per key ([`MAX_PROVIDERS_PER_KEY`]);
//!   each keeps at most [`MAX_ADDRS_PER_PROVIDER`] addresses of at most [`MAX_PROVIDER_ADDR_BYTES`]
//!   bytes. A record over a bound is refused ([`ProviderRefused`]) and counted in [`Refused`];
//!   a record a peer already has here for that key is replaced (a re-announcement) whatever the
//!   bounds. When the total or a peer's bound is reached, expired records are swept (at most
//!   once every [`EXPIRED_SWEEP_INTERVAL`]) before a record is refused: kad itself drops an
//!   expired record only when its key is looked up.
//! - **value records** (catalog heads) in a `MemoryStore`, bounded by [`MAX_RECORDS`] and
//!   [`MAX_VALUE_BYTES`].
//!
//! Invariants: the count of other peers' records, in all and per peer, always equals what the
//! table holds; per-peer counts of zero are removed; no record of this node is ever in the
//! table of other peers' records.

use std::{
    borrow::Cow,
    collections::{HashMap, hash_map},
    iter,
    time::{Duration, Instant},
};

use libp2p::{
    PeerId,
    kad::{
        ProviderRecord, Record, RecordKey,
        store::{self, MemoryStore, MemoryStoreConfig, RecordStore},
    },
};
use prometheus_client::metrics::counter::Counter;

/// Most provider records of other peers kept. A record with its addresses is a few hundred
/// bytes (at most about 1.3 KiB with the address bounds below), so this is typically tens of
/// MiB and at worst about 170 MiB. An honest node holds the records of the keys closest to it:
/// about 20 × (keys in the swarm) / (nodes in the swarm).
pub const MAX_REMOTE_PROVIDER_RECORDS: usize = 128 * 1024;
/// Most provider records one peer may have here: a sixteenth of the total, so one peer id
/// cannot fill the store, while a partner's seed that mirrors a catalog of 100,000 manifests
/// still fits at every node once the swarm has a few hundred nodes.
pub const MAX_PROVIDER_RECORDS_PER_PEER: usize = 8 * 1024;
/// Most providers of other peers kept per key (Kademlia's replication factor; the node's own
/// record comes on top).
pub const MAX_PROVIDERS_PER_KEY: usize = 20;
/// Most addresses kept from one provider record (a peer sends as many as fit in a DHT message).
pub const MAX_ADDRS_PER_PROVIDER: usize = 4;
/// Longest address kept from a provider record, in bytes (an IPv6 or DNS address with a port and
/// a peer id is well under this).
pub const MAX_PROVIDER_ADDR_BYTES: usize = 256;
/// Least time between two sweeps of expired records when the store is full (a sweep walks
/// every record).
pub const EXPIRED_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Most value records (catalog heads, one per publisher) kept.
pub const MAX_RECORDS: usize = 16 * 1024;
/// Largest value record kept, in bytes.
pub const MAX_VALUE_BYTES: usize = 65 * 1024;

/// Why another peer's provider record was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderRefused {
    /// The peer has its share of records here.
    #[error("peer {peer} already has {limit} provider records here, its share")]
    PeerShare {
        /// The providing peer.
        peer: PeerId,
        /// The bound it reached.
        limit: usize,
    },
    /// The store holds as many records of other peers as it keeps.
    #[error(
        "the store already holds {limit} provider records of other peers; \
         the record of peer {peer} is not kept"
    )]
    Full {
        /// The providing peer.
        peer: PeerId,
        /// The bound.
        limit: usize,
    },
    /// The key has as many providers as are kept.
    #[error("key {key} already has {limit} providers; peer {peer} is not added")]
    KeyFull {
        /// The key, hex.
        key: String,
        /// The providing peer.
        peer: PeerId,
        /// The bound.
        limit: usize,
    },
}

/// The bounds on other peers' provider records (the constants above in the node; smaller in
/// tests).
#[derive(Debug, Clone, Copy)]
pub struct ProviderLimits {
    /// Most records of other peers in all.
    pub total: usize,
    /// Most records of one peer.
    pub per_peer: usize,
    /// Most providers of other peers per key.
    pub per_key: usize,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits {
            total: MAX_REMOTE_PROVIDER_RECORDS,
            per_peer: MAX_PROVIDER_RECORDS_PER_PEER,
            per_key: MAX_PROVIDERS_PER_KEY,
        }
    }
}

/// Other peers' provider records refused, by the bound they met (clones share their counts).
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// The peer had its share.
    pub per_peer: Counter,
    /// The store was full.
    pub total: Counter,
    /// The key had its providers.
    pub per_key: Counter,
}

/// The store (see the module docs).
pub struct ProviderStore {
    local: PeerId,
    limits: ProviderLimits,
    refused: Refused,
    values: MemoryStore,
    own: HashMap<RecordKey, ProviderRecord>,
    remote: HashMap<RecordKey, Vec<ProviderRecord>>,
    remote_count: usize,
    per_peer: HashMap<PeerId, usize>,
    last_sweep: Option<Instant>,
}

impl ProviderStore {
    /// An empty store for the node `local`, keeping other peers' records within `limits` and
    /// counting refusals in `refused`.
    pub fn new(local: PeerId, limits: ProviderLimits, refused: Refused) -> ProviderStore {
        ProviderStore {
            local,
            limits,
            refused,
            values: MemoryStore::with_config(
                local,
                MemoryStoreConfig {
                    max_records: MAX_RECORDS,
                    max_value_bytes: MAX_VALUE_BYTES,
                    // Unused: provider records never reach this store.
                    max_provided_keys: 0,
                    max_providers_per_key: 0,
                },
            ),
            own: HashMap::new(),
            remote: HashMap::new(),
            remote_count: 0,
            per_peer: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Stores another peer's provider record received from the network, or says which bound
    /// refused it (and counts that). A record of this node goes to its own table.
    pub fn add_remote_provider(
        &mut self,
        mut record: ProviderRecord,
    ) -> Result<(), ProviderRefused> {
        if record.provider == self.local {
            self.own.insert(record.key.clone(), record);
            return Ok(());
        }
        record
            .addresses
            .retain(|addr| addr.as_ref().len() <= MAX_PROVIDER_ADDR_BYTES);
        record.addresses.truncate(MAX_ADDRS_PER_PROVIDER);
        let peer = record.provider;
        if let Some(held) = self
            .remote
            .get_mut(&record.key)
            .and_then(|held| held.iter_mut().find(|held| held.provider == peer))
        {
            *held = record;
            return Ok(());
        }
        let peer_held = |store: &ProviderStore| store.per_peer.get(&peer).copied().unwrap_or(0);
        if peer_held(self) >= self.limits.per_peer || self.remote_count >= self.limits.total {
            self.sweep_expired(Instant::now());
        }
        if peer_held(self) >= self.limits.per_peer {
            self.refused.per_peer.inc();
            return Err(ProviderRefused::PeerShare {
                peer,
                limit: self.limits.per_peer,
            });
        }
        if self.remote_count >= self.limits.total {
            self.refused.total.inc();
            return Err(ProviderRefused::Full {
                peer,
                limit: self.limits.total,
            });
        }
        if self.remote.get(&record.key).map_or(0, Vec::len) >= self.limits.per_key {
            self.refused.per_key.inc();
            return Err(ProviderRefused::KeyFull {
                key: hex::encode(record.key.as_ref()),
                peer,
                limit: self.limits.per_key,
            });
        }
        let providers = self.remote.entry(record.key.clone()).or_default();
        providers.push(record);
        self.remote_count += 1;
        *self.per_peer.entry(peer).or_insert(0) += 1;
        Ok(())
    }

    /// How many provider records of other peers are held.
    #[cfg(test)]
    pub fn remote_records(&self) -> usize {
        self.remote_count
    }

    /// Drops other peers' expired records, unless that was done less than
    /// [`EXPIRED_SWEEP_INTERVAL`] before `now`.
    fn sweep_expired(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < EXPIRED_SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        let per_peer = &mut self.per_peer;
        let mut removed = 0;
        self.remote.retain(|_, providers| {
            providers.retain(|record| {
                let expired = record.is_expired(now);
                if expired {
                    removed += 1;
                    forget_one(per_peer, &record.provider);
                }
                !expired
            });
            !providers.is_empty()
        });
        self.remote_count -= removed;
    }
}

/// Lowers `peer`'s count by one, removing it at zero.
fn forget_one(per_peer: &mut HashMap<PeerId, usize>, peer: &PeerId) {
    if let hash_map::Entry::Occupied(mut count) = per_peer.entry(*peer) {
        *count.get_mut() -= 1;
        if *count.get() == 0 {
            count.remove();
        }
    }
}

impl RecordStore for ProviderStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = iter::Map<
        hash_map::Values<'a, RecordKey, ProviderRecord>,
        fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
    >;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.values.get(key)
    }

    fn put(&mut self, record: Record) -> store::Result<()> {
        self.values.put(record)
    }

    fn remove(&mut self, key: &RecordKey) {
        self.values.remove(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.values.records()
    }

    /// Kad calls this only for this node's own records (`start_providing`; inbound records are
    /// filtered and go through [`ProviderStore::add_remote_provider`]), which are never refused.
    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        self.add_remote_provider(record)
            .map_err(|_| store::Error::MaxProvidedKeys)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.own
            .get(key)
            .into_iter()
            .chain(self.remote.get(key).into_iter().flatten())
            .cloned()
            .collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.own.values().map(Cow::Borrowed)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if *provider == self.local {
            self.own.remove(key);
            return;
        }
        if let hash_map::Entry::Occupied(mut entry) = self.remote.entry(key.clone()) {
            let providers = entry.get_mut();
            if let Some(index) = providers.iter().position(|p| p.provider == *provider) {
                providers.swap_remove(index);
                self.remote_count -= 1;
                forget_one(&mut self.per_peer, provider);
            }
            if providers.is_empty() {
                entry.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use libp2p::Multiaddr;

    use super::*;

    fn key(n: u32) -> RecordKey {
        RecordKey::new(&n.to_be_bytes())
    }

    fn record(n: u32, provider: PeerId) -> ProviderRecord {
        ProviderRecord::new(key(n), provider, Vec::new())
    }

    fn store(total: usize, per_peer: usize, per_key: usize) -> (ProviderStore, PeerId, Refused) {
        let local = PeerId::random();
        let refused = Refused::default();
        let store = ProviderStore::new(
            local,
            ProviderLimits {
                total,
                per_peer,
                per_key,
            },
            refused.clone(),
        );
        (store, local, refused)
    }

    #[test]
    fn a_peer_over_its_share_is_refused_and_others_are_not() {
        let (mut store, _, refused) = store(100, 10, 20);
        let flooder = PeerId::random();
        for n in 0..10 {
            store.add_remote_provider(record(n, flooder)).unwrap();
        }
        let over = store.add_remote_provider(record(10, flooder)).unwrap_err();
        assert!(matches!(over, ProviderRefused::PeerShare { limit: 10, .. }));
        assert_eq!(
            over.to_string(),
            format!("peer {flooder} already has 10 provider records here, its share")
        );
        assert_eq!(refused.per_peer.get(), 1);
        assert!(store.providers(&key(10)).is_empty());
        // Its re-announcement of a key it has is still taken.
        store.add_remote_provider(record(3, flooder)).unwrap();
        // Another peer is not held back.
        let honest = PeerId::random();
        store.add_remote_provider(record(10, honest)).unwrap();
        assert_eq!(store.providers(&key(10))[0].provider, honest);
        assert_eq!(store.remote_records(), 11);
    }

    #[test]
    fn own_keys_are_stored_when_peers_have_filled_the_store() {
        let (mut store, local, refused) = store(30, 10, 20);
        for (peer, range) in [(PeerId::random(), 0..10), (PeerId::random(), 10..20)] {
            for n in range {
                store.add_remote_provider(record(n, peer)).unwrap();
            }
        }
        let third = PeerId::random();
        for n in 20..30 {
            store.add_remote_provider(record(n, third)).unwrap();
        }
        let fourth = PeerId::random();
        let full = store.add_remote_provider(record(30, fourth)).unwrap_err();
        assert!(matches!(full, ProviderRefused::Full { limit: 30, .. }));
        assert_eq!(refused.total.get(), 1);
        // The node's own records, as kad's `start_providing` adds them, are always taken:
        // new keys, and keys other peers provide too.
        for n in [1000, 1001, 5] {
            RecordStore::add_provider(&mut store, record(n, local)).unwrap();
        }
        let provided: Vec<RecordKey> = store.provided().map(|r| r.key.clone()).collect();
        assert_eq!(provided.len(), 3);
        assert!(provided.contains(&key(1000)) && provided.contains(&key(5)));
        assert_eq!(store.providers(&key(1000))[0].provider, local);
        assert_eq!(store.providers(&key(5)).len(), 2);
        assert_eq!(
            store.remote_records(),
            30,
            "own records do not use the peers' room"
        );
        store.remove_provider(&key(1000), &local);
        assert_eq!(store.provided().count(), 2);
    }

    #[test]
    fn a_key_with_its_providers_takes_no_more_but_keeps_the_own_record() {
        let (mut store, local, refused) = store(100, 10, 3);
        for _ in 0..3 {
            store
                .add_remote_provider(record(7, PeerId::random()))
                .unwrap();
        }
        let late = store
            .add_remote_provider(record(7, PeerId::random()))
            .unwrap_err();
        assert!(matches!(late, ProviderRefused::KeyFull { limit: 3, .. }));
        assert_eq!(refused.per_key.get(), 1);
        RecordStore::add_provider(&mut store, record(7, local)).unwrap();
        assert_eq!(store.providers(&key(7)).len(), 4);
        assert_eq!(store.provided().count(), 1);
    }

    #[test]
    fn removing_and_expiring_records_frees_room() {
        let (mut store, _, _) = store(4, 4, 20);
        let peer = PeerId::random();
        for n in 0..4 {
            let mut r = record(n, peer);
            if n < 2 {
                r.expires = Some(Instant::now() - Duration::from_secs(1));
            }
            store.add_remote_provider(r).unwrap();
        }
        store.remove_provider(&key(3), &peer);
        assert_eq!(store.remote_records(), 3);
        store.add_remote_provider(record(3, peer)).unwrap();
        // Full: the expired two are swept to make room.
        store.add_remote_provider(record(4, peer)).unwrap();
        assert_eq!(store.remote_records(), 3);
        assert!(store.providers(&key(0)).is_empty());
        assert_eq!(store.per_peer.get(&peer), Some(&3));
        for n in 2..5 {
            store.remove_provider(&key(n), &peer);
        }
        assert!(store.remote.is_empty() && store.per_peer.is_empty());
        assert_eq!(store.remote_records(), 0);
    }

    #[test]
    fn a_record_keeps_a_few_short_addresses() {
        let (mut store, _, _) = store(10, 10, 10);
        let peer = PeerId::random();
        let long: Multiaddr = format!("/dns/{}/tcp/1", "a".repeat(300)).parse().unwrap();
        let mut addresses = vec![long];
        addresses.extend((0..10).map(|port| {
            format!("/ip4/10.0.0.1/tcp/{port}")
                .parse::<Multiaddr>()
                .unwrap()
        }));
        store
            .add_remote_provider(ProviderRecord::new(key(1), peer, addresses))
            .unwrap();
        let kept = &store.providers(&key(1))[0].addresses;
        assert_eq!(kept.len(), MAX_ADDRS_PER_PROVIDER);
        assert_eq!(kept[0].to_string(), "/ip4/10.0.0.1/tcp/0");
    }

    #[test]
    fn value_records_are_kept_as_before() {
        let (mut store, _, _) = store(1, 1, 1);
        let value = Record::new(key(1), b"head".to_vec());
        store.put(value.clone()).unwrap();
        assert_eq!(store.get(&key(1)).unwrap().value, b"head");
        assert_eq!(store.records().count(), 1);
        store.remove(&key(1));
        assert!(store.get(&key(1)).is_none());
    }
}
