//! The trust policy state of the node, as one part: the trust store, the catalogs in force,
//! each publisher's held catalog (its head and envelope, as served to peers), the publishers
//! mirrored, the catalogs in force but not saved yet (the database was closed), and the lock
//! held while a catalog is accepted or the trust store changes. Every question "may this be
//! served or fetched now?" is asked here.
//!
//! Invariants:
//! - the policy is asked on every request served and before every fetch, so a change made here
//!   (a revocation, a trust removal) bites on the next request;
//! - windows are judged at [`policy::judged_now`]: the clock, raised to the time floor of the
//!   accepted catalogs, so a clock set back cannot reopen an ended release;
//! - what is in force is what the store says, except what waits to be saved while the
//!   database is closed (catalogs accepted, trust removed): kept here until it is saved;
//! - every change (accepting a catalog, marking it saved or not, changing the trust store or
//!   the mirrors) takes an [`Updating`], the proof that the caller holds the update lock, so
//!   the check before a store write and the change after it are never interleaved with another
//!   change;
//! - a held catalog is always the head and envelope of the catalog in force for its publisher
//!   (they change together, in [`PolicyState::accept`]);
//! - a poisoned lock is taken over, not propagated: each writer replaces whole values, so the
//!   state is never half-written.

mod acceptance;

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use licet_proto::{
    ManifestId, PublicKey, Timestamp,
    catalog::{VerifiedCatalog, VerifiedCatalogHead},
    manifest::{Region, VerifiedManifest},
    policy::{self, CatalogSet, PolicyInputs, Territory, TrustStore, TrustedPublisher},
};
use tracing::warn;

use crate::{
    contract::{CatalogInfo, TrustEntry},
    store::{Store, StoreError},
};

pub use acceptance::{CatalogOffer, CatalogOutcome, CatalogRefused};

/// A catalog this node accepted, as it serves it to peers: its signed head and the catalog (its
/// signed root and every part), exactly as verified. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HeldCatalog {
    head: VerifiedCatalogHead,
    catalog: VerifiedCatalog,
}

impl HeldCatalog {
    /// Its signed head.
    pub fn head(&self) -> &VerifiedCatalogHead {
        &self.head
    }

    /// The catalog: its root envelope (served in pieces) and its parts (served by hash).
    pub fn catalog(&self) -> &VerifiedCatalog {
        &self.catalog
    }

    /// Its publisher.
    pub fn publisher(&self) -> PublicKey {
        self.head.head().publisher
    }
}

/// The trust store and the catalogs in force.
#[derive(Default)]
struct Rules {
    trust: TrustStore,
    catalogs: CatalogSet,
}

/// Proof that the update lock is held: accepting a catalog and changing the trust store take
/// one (module docs).
pub struct Updating<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

/// The trust policy state (module docs).
#[derive(Default)]
pub struct PolicyState {
    region: Option<Region>,
    rules: RwLock<Rules>,
    /// Each trusted publisher's accepted catalog with its head, by publisher.
    held: Mutex<HashMap<PublicKey, HeldCatalog>>,
    /// Publishers whose catalogs this node mirrors.
    mirrors: Mutex<HashSet<PublicKey>>,
    /// Accepted catalogs in force but not saved yet, by publisher.
    unsaved: Mutex<HashMap<PublicKey, HeldCatalog>>,
    /// Publishers no longer trusted, though the store still says they are (the database was
    /// closed when trust was removed).
    unsaved_distrust: Mutex<HashSet<PublicKey>>,
    /// Held while a catalog is accepted and while the trust store changes.
    updates: tokio::sync::Mutex<()>,
}

impl PolicyState {
    /// An empty state (nothing trusted) for a node in `region`.
    pub fn new(region: Option<Region>) -> PolicyState {
        PolicyState {
            region,
            ..PolicyState::default()
        }
    }

    /// The state the node starts with, as saved in `store`: the trust store, the mirrors, each
    /// publisher's newest catalog (one that no longer verifies is left out, with a warning) and
    /// its head (left out if it is not that catalog's head: the catalog is still enforced).
    pub fn load(store: &Store, region: Option<Region>) -> Result<PolicyState, StoreError> {
        let mut rules = Rules::default();
        for (publisher, settings) in store.trust_list()? {
            rules.trust.insert(publisher, settings);
        }
        for (publisher, envelope) in store.catalogs()? {
            match VerifiedCatalog::from_bytes(&envelope) {
                Ok(catalog) => rules.catalogs.restore(catalog),
                Err(e) => warn!(%publisher, "stored catalog no longer verifies: {e}"),
            }
        }
        let mut held = HashMap::new();
        for (publisher, head) in store.catalog_heads()? {
            if let Some(catalog) = rules.catalogs.newest(&publisher)
                && head.matches(catalog)
            {
                let catalog = catalog.clone();
                held.insert(publisher, HeldCatalog { head, catalog });
            }
        }
        Ok(PolicyState {
            region,
            rules: RwLock::new(rules),
            held: Mutex::new(held),
            mirrors: Mutex::new(store.mirrors()?.into_iter().collect()),
            ..PolicyState::default()
        })
    }

    fn rules(&self) -> RwLockReadGuard<'_, Rules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner())
    }

    fn rules_mut(&self) -> RwLockWriteGuard<'_, Rules> {
        self.rules.write().unwrap_or_else(|p| p.into_inner())
    }

    fn held(&self) -> MutexGuard<'_, HashMap<PublicKey, HeldCatalog>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mirrors(&self) -> MutexGuard<'_, HashSet<PublicKey>> {
        self.mirrors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unsaved(&self) -> MutexGuard<'_, HashMap<PublicKey, HeldCatalog>> {
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unsaved_distrust(&self) -> MutexGuard<'_, HashSet<PublicKey>> {
        self.unsaved_distrust
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the update lock (module docs), waiting for the change under way.
    pub async fn updating(&self) -> Updating<'_> {
        Updating {
            _guard: self.updates.lock().await,
        }
    }

    /// Asks the trust policy about `manifest` now, for what `territory` says is done with it.
    pub fn check(
        &self,
        manifest: &VerifiedManifest,
        territory: Territory,
    ) -> Result<(), policy::Refusal> {
        let rules = self.rules();
        policy::evaluate(
            &PolicyInputs {
                trust: &rules.trust,
                catalogs: &rules.catalogs,
                now: policy::judged_now(Timestamp::now(), rules.catalogs.time_floor()),
                territory,
            },
            manifest,
        )
    }

    /// The time to judge windows at: the clock, raised to the time floor (module docs).
    pub fn judged_now(&self) -> Timestamp {
        policy::judged_now(Timestamp::now(), self.time_floor())
    }

    /// The time floor: the newest `issued_at` of the catalogs in force.
    pub fn time_floor(&self) -> Option<Timestamp> {
        self.rules().catalogs.time_floor()
    }

    /// How far the clock is behind the time floor beyond the allowed skew, if it is.
    pub fn clock_behind(&self) -> Option<i64> {
        policy::clock_behind_floor(Timestamp::now(), self.time_floor())
    }

    /// The node's configured region, if any.
    pub fn region(&self) -> Option<Region> {
        self.region
    }

    /// The territory of a fetch for this node's user: the node's own region.
    pub fn as_fetcher(&self) -> Territory {
        Territory::Fetcher(self.region)
    }

    /// The trusted publishers, by key.
    pub fn trusted_publishers(&self) -> Vec<PublicKey> {
        let mut publishers: Vec<PublicKey> = self.rules().trust.iter().map(|(p, _)| *p).collect();
        publishers.sort();
        publishers
    }

    /// How many publishers are trusted.
    pub fn trusted_count(&self) -> usize {
        self.rules().trust.iter().count()
    }

    /// The trust store as `trust list` shows it.
    pub fn trust_entries(&self) -> Vec<TrustEntry> {
        let rules = self.rules();
        rules
            .trust
            .iter()
            .map(|(publisher, settings)| TrustEntry {
                publisher: *publisher,
                name: settings.name.clone(),
                require_catalog: settings.require_catalog,
                mirror: self.is_mirrored(publisher),
            })
            .collect()
    }

    /// Trusts `publisher` with `settings` (replacing what it had), mirrored or not, as saved
    /// (an unsaved removal of its trust is void).
    pub fn trust(
        &self,
        _: &Updating<'_>,
        publisher: PublicKey,
        settings: TrustedPublisher,
        mirror: bool,
    ) {
        self.rules_mut().trust.insert(publisher, settings);
        self.unsaved_distrust().remove(&publisher);
        let mut mirrors = self.mirrors();
        if mirror {
            mirrors.insert(publisher);
        } else {
            mirrors.remove(&publisher);
        }
    }

    /// Stops trusting (and mirroring) `publisher`; `false` if it was not trusted.
    pub fn distrust(&self, _: &Updating<'_>, publisher: &PublicKey) -> bool {
        let removed = self.rules_mut().trust.remove(publisher);
        self.mirrors().remove(publisher);
        removed
    }

    /// Keeps the removal of `publisher`'s trust (in force) as not saved: the database is closed.
    pub fn mark_distrust_unsaved(&self, _: &Updating<'_>, publisher: PublicKey) {
        self.unsaved_distrust().insert(publisher);
    }

    /// The removal of `publisher`'s trust no longer waits to be saved.
    pub fn mark_distrust_saved(&self, _: &Updating<'_>, publisher: &PublicKey) {
        self.unsaved_distrust().remove(publisher);
    }

    /// The publishers whose trust was removed but the store still trusts, by key.
    pub fn unsaved_distrusts(&self) -> Vec<PublicKey> {
        let mut publishers: Vec<PublicKey> = self.unsaved_distrust().iter().copied().collect();
        publishers.sort();
        publishers
    }

    /// Whether anything in force waits to be saved (a catalog, a trust removal).
    pub fn has_unsaved(&self) -> bool {
        !self.unsaved().is_empty() || !self.unsaved_distrust().is_empty()
    }

    /// Whether this node mirrors `publisher`'s catalog.
    pub fn is_mirrored(&self, publisher: &PublicKey) -> bool {
        self.mirrors().contains(publisher)
    }

    /// The manifests `publisher`'s catalog in force lists, if it has one.
    pub fn listed(&self, publisher: &PublicKey) -> Option<Vec<ManifestId>> {
        let rules = self.rules();
        let catalog = rules.catalogs.newest(publisher)?;
        Some(
            catalog
                .catalog()
                .entries
                .iter()
                .map(|e| e.manifest_id)
                .collect(),
        )
    }

    /// The `issued_at` of `publisher`'s catalog in force.
    pub fn newest_issued_at(&self, publisher: &PublicKey) -> Option<Timestamp> {
        let rules = self.rules();
        rules
            .catalogs
            .newest(publisher)
            .map(|c| c.catalog().issued_at)
    }

    /// The catalog of `publisher` in force here (cheap: it shares its parts).
    pub fn newest_catalog(&self, publisher: &PublicKey) -> Option<VerifiedCatalog> {
        self.rules().catalogs.newest(publisher).cloned()
    }

    /// The catalog `publisher` has held here with its head, as served to peers.
    pub fn held_catalog(&self, publisher: &PublicKey) -> Option<HeldCatalog> {
        self.held().get(publisher).cloned()
    }

    /// Every held catalog.
    pub fn held_catalogs(&self) -> Vec<HeldCatalog> {
        self.held().values().cloned().collect()
    }

    /// Keeps `held` (in force) as not saved: the database is closed.
    pub fn mark_unsaved(&self, _: &Updating<'_>, held: &HeldCatalog) {
        self.unsaved().insert(held.publisher(), held.clone());
    }

    /// `publisher`'s catalog no longer waits to be saved (it was, or cannot be).
    pub fn mark_saved(&self, _: &Updating<'_>, publisher: &PublicKey) {
        self.unsaved().remove(publisher);
    }

    /// Whether `publisher`'s catalog in force is not saved.
    pub fn is_unsaved(&self, publisher: &PublicKey) -> bool {
        self.unsaved().contains_key(publisher)
    }

    /// The publishers whose catalog in force is not saved, by key.
    pub fn unsaved_publishers(&self) -> Vec<PublicKey> {
        let mut publishers: Vec<PublicKey> = self.unsaved().keys().copied().collect();
        publishers.sort();
        publishers
    }

    /// The catalogs in force that are not saved.
    pub fn unsaved_catalogs(&self) -> Vec<HeldCatalog> {
        self.unsaved().values().cloned().collect()
    }

    /// `f` of trusted `publisher`'s newest accepted catalog, if one is held.
    pub fn with_newest_catalog<T>(
        &self,
        publisher: &PublicKey,
        f: impl FnOnce(&VerifiedCatalog) -> T,
    ) -> Option<T> {
        let rules = self.rules();
        rules.trust.get(publisher)?;
        rules.catalogs.newest(publisher).map(f)
    }

    /// The catalog state of trusted `publisher`, for the API (`None` if it is not trusted).
    pub fn catalog_info(&self, publisher: &PublicKey) -> Option<CatalogInfo> {
        let rules = self.rules();
        let settings = rules.trust.get(publisher)?;
        let newest = rules.catalogs.newest(publisher);
        let catalog = newest.map(VerifiedCatalog::catalog);
        let now = policy::judged_now(Timestamp::now(), rules.catalogs.time_floor());
        Some(CatalogInfo {
            publisher: *publisher,
            name: settings.name.clone(),
            require_catalog: settings.require_catalog,
            mirror: self.is_mirrored(publisher),
            sequence: catalog.map(|c| c.sequence),
            issued_at: catalog.map(|c| c.issued_at.to_string()),
            expires_at: catalog.map(|c| c.expires_at.to_string()),
            expires_at_unix: catalog.map(|c| c.expires_at.0),
            expired: catalog.is_some_and(|c| now >= c.expires_at),
            catalog_hash: newest.map(|c| c.hash().to_string()),
            entries: catalog.map_or(0, |c| c.entries.len() as u64),
            revoked_manifests: catalog.map_or(0, |c| c.revoked_manifests.len() as u64),
            revoked_delegates: catalog.map_or(0, |c| c.revoked_delegates.len() as u64),
            revoked_licences: catalog.map_or(0, |c| c.revoked_licences.len() as u64),
        })
    }

    /// The catalog state of every trusted publisher, by key.
    pub fn catalog_infos(&self) -> Vec<CatalogInfo> {
        self.trusted_publishers()
            .iter()
            .filter_map(|p| self.catalog_info(p))
            .collect()
    }
}
