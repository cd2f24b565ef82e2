//! The trust policy state of the node: the trust store and the accepted catalogs (in memory,
//! mirrored from the store), and the node's region. Every question "may this be served or
//! fetched now?" is asked here.
//!
//! Invariants:
//! - the policy is asked on every request served and before every fetch, so a change made here
//!   (a revocation, a trust removal) bites on the next request;
//! - windows are judged at [`policy::judged_now`]: the clock, raised to the time floor of the
//!   accepted catalogs, so a clock set back cannot reopen an ended release;
//! - a poisoned lock is taken over, not propagated: the state is replaced whole by each writer,
//!   so it is never half-written.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use licet_proto::{
    Timestamp,
    manifest::{Region, VerifiedManifest},
    policy::{self, CatalogSet, PolicyInputs, Territory, TrustStore},
};

/// The trust store and the catalogs in force, and the node's region.
pub struct PolicyState {
    region: Option<Region>,
    rules: RwLock<(TrustStore, CatalogSet)>,
}

impl PolicyState {
    /// The state the node starts with (as loaded from its store).
    pub fn new(trust: TrustStore, catalogs: CatalogSet, region: Option<Region>) -> PolicyState {
        PolicyState {
            region,
            rules: RwLock::new((trust, catalogs)),
        }
    }

    /// The trust store and the catalogs, to read.
    pub fn read(&self) -> RwLockReadGuard<'_, (TrustStore, CatalogSet)> {
        self.rules.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The trust store and the catalogs, to change.
    pub fn write(&self) -> RwLockWriteGuard<'_, (TrustStore, CatalogSet)> {
        self.rules.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the trust policy about `manifest` now, for what `territory` says is done with it.
    pub fn check(
        &self,
        manifest: &VerifiedManifest,
        territory: Territory,
    ) -> Result<(), policy::Refusal> {
        let guard = self.read();
        let (trust, catalogs) = &*guard;
        policy::evaluate(
            &PolicyInputs {
                trust,
                catalogs,
                now: policy::judged_now(Timestamp::now(), catalogs.time_floor()),
                territory,
            },
            manifest,
        )
    }

    /// The time to judge windows at: the clock, raised to the time floor (module docs).
    pub fn judged_now(&self) -> Timestamp {
        policy::judged_now(Timestamp::now(), self.read().1.time_floor())
    }

    /// The node's configured region, if any.
    pub fn region(&self) -> Option<Region> {
        self.region
    }

    /// The territory of a fetch for this node's user: the node's own region.
    pub fn as_fetcher(&self) -> Territory {
        Territory::Fetcher(self.region)
    }
}
