//! The trust policy: may this node serve, fetch, store or announce a manifest's content now?
//!
//! [`evaluate`] is one pure function of the trust store, the accepted catalogs, the clock and the
//! [`Territory`] asked about. The node calls it before fetching a byte and again on every chunk it serves,
//! so a revocation or the end of a licence window bites on the next chunk. Its steps, in the
//! order they are checked (DESIGN.md "Trust policy"):
//!
//! 1. the manifest's publisher is in the trust store;
//! 2. the envelope signature is valid (guaranteed by [`VerifiedManifest`]), and a delegation, if
//!    any, is valid (also guaranteed), covers now, and its delegate is not revoked by the
//!    publisher's newest accepted catalog;
//! 3. the licence window contains now;
//! 4. if the licence lists regions, the territory asked about is listed, and it fails closed: to
//!    fetch, the node's own configured region (none configured = refused); to serve a chunk, the
//!    region the requester stated (none stated = refused). Holding, announcing and answering
//!    about content need no region, so a partner's seed may serve every listed territory. A
//!    territorial licence is about where the user is; the stated region is self-declared;
//! 5. the manifest is not revoked by the publisher's newest accepted catalog;
//! 6. if the operator set `require_catalog` for the publisher, the manifest is listed in that
//!    publisher's newest accepted catalog and that catalog has not expired.
//!
//! Clock skew: a start (`not_before`) is honoured [`CLOCK_SKEW_SECONDS`] early, so a node whose
//! clock runs a little behind does not refuse a release that has just begun. An end
//! (`not_after`, `expires_at`) is exact: a time-limited release really ends, on every node, on
//! the second its own clock reaches it.
//!
//! Time floor: [`PolicyInputs::now`] is the node's *judged* time, [`judged_now`]: its clock, or,
//! if the clock is behind it, the newest publisher-signed `issued_at` among the catalogs it
//! accepted ([`CatalogSet::time_floor`]) less [`CLOCK_SKEW_SECONDS`] (the publisher's own clock
//! may run that much ahead). A signed catalog proves that time has come, so a clock set back by
//! mistake cannot reopen an ended window or revive an expired catalog or delegation. The floor
//! only ever raises the time: a clock that runs *fast* is not corrected (nothing signed can
//! prove that a time has not come yet), so such a node ends windows early. A catalog issued in
//! the node's future is still accepted (a takedown must never wait for a clock); it raises the
//! floor, and [`clock_behind_floor`] says by how much the clock is behind.
//!
//! [`CatalogSet::accept`] is the other half: which catalogs count. A catalog is accepted only if
//! it is signed by a trusted publisher's own key, has not expired, and its sequence is above the
//! highest accepted one (an equal sequence must be the byte-identical catalog). The caller
//! persists the set, so a restart cannot roll it back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    catalog::{VerifiedCatalog, VerifiedCatalogHead},
    keys::PublicKey,
    manifest::{Region, VerifiedManifest},
    time::Timestamp,
};

/// How early a start time is honoured, in seconds.
pub const CLOCK_SKEW_SECONDS: i64 = 5 * 60;

/// Why content is refused. Sent on the wire: append-only, never reorder or remove a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefusalReason {
    /// The publisher is not in the trust store.
    UntrustedPublisher,
    /// A signature does not verify, or the object is malformed.
    InvalidSignature,
    /// The delegation does not match the manifest (publisher, delegate or scope).
    InvalidDelegation,
    /// The delegation's window does not contain now.
    DelegationNotValidNow,
    /// The publisher's catalog revokes the delegate that signed.
    DelegateRevoked,
    /// The licence has not started.
    NotYetValid,
    /// The licence has ended.
    Expired,
    /// The licence does not cover the node's region.
    RegionNotLicensed,
    /// The publisher's catalog revokes the manifest.
    Revoked,
    /// `require_catalog` is set and the publisher's catalog does not list the manifest.
    NotInCatalog,
    /// `require_catalog` is set and there is no unexpired catalog of the publisher.
    NoValidCatalog,
    /// The node does not hold this content (or this chunk).
    NotHeld,
    /// The request itself is malformed (unknown file or chunk index, bad sizes).
    BadRequest,
}

impl RefusalReason {
    /// Every reason, in wire order (so metrics can show each one from the start, at zero).
    pub const ALL: [RefusalReason; 13] = [
        RefusalReason::UntrustedPublisher,
        RefusalReason::InvalidSignature,
        RefusalReason::InvalidDelegation,
        RefusalReason::DelegationNotValidNow,
        RefusalReason::DelegateRevoked,
        RefusalReason::NotYetValid,
        RefusalReason::Expired,
        RefusalReason::RegionNotLicensed,
        RefusalReason::Revoked,
        RefusalReason::NotInCatalog,
        RefusalReason::NoValidCatalog,
        RefusalReason::NotHeld,
        RefusalReason::BadRequest,
    ];

    /// A short description, as shown to people.
    pub fn describe(self) -> &'static str {
        match self {
            RefusalReason::UntrustedPublisher => "publisher is not trusted",
            RefusalReason::InvalidSignature => "signature is not valid",
            RefusalReason::InvalidDelegation => "delegation is not valid for this manifest",
            RefusalReason::DelegationNotValidNow => "delegation is not valid now",
            RefusalReason::DelegateRevoked => "delegate key is revoked by the publisher",
            RefusalReason::NotYetValid => "licence window has not started",
            RefusalReason::Expired => "licence window has ended",
            RefusalReason::RegionNotLicensed => "not licensed in this region",
            RefusalReason::Revoked => "manifest is revoked by the publisher",
            RefusalReason::NotInCatalog => "manifest is not in the publisher's catalog",
            RefusalReason::NoValidCatalog => "publisher has no unexpired catalog",
            RefusalReason::NotHeld => "content is not held here",
            RefusalReason::BadRequest => "request is malformed",
        }
    }
}

/// A refusal: the reason and the particulars.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("refused: {}: {detail}", reason.describe())]
pub struct Refusal {
    /// Why, as a machine-readable reason.
    pub reason: RefusalReason,
    /// The particulars (keys, times, region), for people.
    pub detail: String,
}

impl Refusal {
    fn new(reason: RefusalReason, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

/// How an operator trusts one publisher.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPublisher {
    /// A name for people.
    pub name: Option<String>,
    /// Serve only what the publisher's unexpired catalog lists.
    pub require_catalog: bool,
}

/// The publishers this node trusts (operator-managed; the node persists it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustStore {
    publishers: BTreeMap<PublicKey, TrustedPublisher>,
}

impl TrustStore {
    /// An empty store: nothing is trusted.
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Trusts `publisher` (replacing its settings if already trusted).
    pub fn insert(&mut self, publisher: PublicKey, settings: TrustedPublisher) {
        self.publishers.insert(publisher, settings);
    }

    /// Stops trusting `publisher`; returns whether it was trusted.
    pub fn remove(&mut self, publisher: &PublicKey) -> bool {
        self.publishers.remove(publisher).is_some()
    }

    /// The settings for `publisher`, if trusted.
    pub fn get(&self, publisher: &PublicKey) -> Option<&TrustedPublisher> {
        self.publishers.get(publisher)
    }

    /// All trusted publishers, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &TrustedPublisher)> {
        self.publishers.iter()
    }
}

/// What [`CatalogSet::accept`] did with a catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogAcceptance {
    /// It is the publisher's newest catalog now.
    Accepted {
        /// The sequence accepted before, if any.
        previous: Option<u64>,
    },
    /// The byte-identical catalog was already accepted.
    AlreadyHeld,
}

/// Why a catalog (or head) is not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogRejection {
    /// The publisher is not trusted.
    #[error("catalog of untrusted publisher {0}")]
    UntrustedPublisher(PublicKey),
    /// The catalog has expired.
    #[error("catalog {sequence} of {publisher} expired at {expires_at}")]
    Expired {
        /// The publisher.
        publisher: PublicKey,
        /// Its sequence.
        sequence: u64,
        /// Its expiry.
        expires_at: Timestamp,
    },
    /// A lower sequence than one already accepted (a rollback).
    #[error(
        "catalog {offered} of {publisher} is older than the accepted catalog {accepted} (rollback refused)"
    )]
    Rollback {
        /// The publisher.
        publisher: PublicKey,
        /// The offered sequence.
        offered: u64,
        /// The highest accepted sequence.
        accepted: u64,
    },
    /// The same sequence as the accepted catalog with different bytes.
    #[error(
        "catalog {sequence} of {publisher} differs from the accepted catalog with the same sequence"
    )]
    EqualSequenceDifferentBytes {
        /// The publisher.
        publisher: PublicKey,
        /// The sequence.
        sequence: u64,
    },
}

/// The newest accepted catalog of each publisher.
#[derive(Clone, Debug, Default)]
pub struct CatalogSet {
    newest: BTreeMap<PublicKey, VerifiedCatalog>,
}

impl CatalogSet {
    /// No catalogs.
    pub fn new() -> CatalogSet {
        CatalogSet::default()
    }

    /// The newest accepted catalog of `publisher`.
    pub fn newest(&self, publisher: &PublicKey) -> Option<&VerifiedCatalog> {
        self.newest.get(publisher)
    }

    /// All newest catalogs, by publisher.
    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &VerifiedCatalog)> {
        self.newest.iter()
    }

    /// The time floor: the newest `issued_at` among the accepted catalogs (signed by their
    /// publishers, so that time has come). It never goes down: accepted catalogs only get
    /// newer, and the caller persists them. See [`judged_now`].
    pub fn time_floor(&self) -> Option<Timestamp> {
        self.newest.values().map(|c| c.catalog().issued_at).max()
    }

    /// Would a head announcing this catalog be worth following? The same checks as
    /// [`CatalogSet::accept`], on the head alone, so a node never fetches a catalog it would
    /// then refuse. `Ok(false)` means the head points at the catalog already held.
    pub fn head_is_newer(
        &self,
        trust: &TrustStore,
        now: Timestamp,
        head: &VerifiedCatalogHead,
    ) -> Result<bool, CatalogRejection> {
        let h = head.head();
        self.check(trust, now, h.publisher, h.sequence, h.expires_at, |held| {
            held.hash() == h.catalog_hash
        })
        .map(|acceptance| matches!(acceptance, CatalogAcceptance::Accepted { .. }))
    }

    fn check(
        &self,
        trust: &TrustStore,
        now: Timestamp,
        publisher: PublicKey,
        sequence: u64,
        expires_at: Timestamp,
        same_bytes: impl Fn(&VerifiedCatalog) -> bool,
    ) -> Result<CatalogAcceptance, CatalogRejection> {
        if trust.get(&publisher).is_none() {
            return Err(CatalogRejection::UntrustedPublisher(publisher));
        }
        let held = self.newest.get(&publisher);
        if let Some(held) = held {
            let accepted = held.catalog().sequence;
            if sequence < accepted {
                return Err(CatalogRejection::Rollback {
                    publisher,
                    offered: sequence,
                    accepted,
                });
            }
            if sequence == accepted {
                return if same_bytes(held) {
                    Ok(CatalogAcceptance::AlreadyHeld)
                } else {
                    Err(CatalogRejection::EqualSequenceDifferentBytes {
                        publisher,
                        sequence,
                    })
                };
            }
        }
        if now >= expires_at {
            return Err(CatalogRejection::Expired {
                publisher,
                sequence,
                expires_at,
            });
        }
        Ok(CatalogAcceptance::Accepted {
            previous: held.map(|h| h.catalog().sequence),
        })
    }

    /// Accepts `catalog` as its publisher's newest if the rules in the module docs allow.
    pub fn accept(
        &mut self,
        trust: &TrustStore,
        now: Timestamp,
        catalog: VerifiedCatalog,
    ) -> Result<CatalogAcceptance, CatalogRejection> {
        let c = catalog.catalog();
        let acceptance = self.check(trust, now, c.publisher, c.sequence, c.expires_at, |held| {
            held.hash() == catalog.hash()
        })?;
        if let CatalogAcceptance::Accepted { .. } = acceptance {
            self.newest.insert(c.publisher, catalog);
        }
        Ok(acceptance)
    }

    /// Restores a catalog read back from the node's own store, without the expiry check (an
    /// expired newest catalog must still count for rollback protection and `require_catalog`).
    /// Keeps whichever of the held and restored catalogs has the higher sequence.
    pub fn restore(&mut self, catalog: VerifiedCatalog) {
        let publisher = catalog.catalog().publisher;
        let higher = self
            .newest
            .get(&publisher)
            .is_none_or(|held| held.catalog().sequence < catalog.catalog().sequence);
        if higher {
            self.newest.insert(publisher, catalog);
        }
    }
}

/// The time windows are judged at, from the node's `clock` and its time `floor`
/// ([`CatalogSet::time_floor`]): the clock, unless it is behind the floor less
/// [`CLOCK_SKEW_SECONDS`], then that time. See the module docs.
pub fn judged_now(clock: Timestamp, floor: Option<Timestamp>) -> Timestamp {
    floor.map_or(clock, |floor| {
        clock.max(floor.plus_seconds(-CLOCK_SKEW_SECONDS))
    })
}

/// By how many seconds `clock` is behind the time `floor` beyond the allowed
/// [`CLOCK_SKEW_SECONDS`] (`None`: it is not, or there is no floor). A node reports this: its
/// clock is wrong, and windows are judged by the floor instead ([`judged_now`]).
pub fn clock_behind_floor(clock: Timestamp, floor: Option<Timestamp>) -> Option<i64> {
    let behind = floor?.0.saturating_sub(clock.0);
    (behind > CLOCK_SKEW_SECONDS).then_some(behind)
}

/// Everything the policy looks at besides the manifest.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInputs<'a> {
    /// The operator's trust store.
    pub trust: &'a TrustStore,
    /// The newest accepted catalogs.
    pub catalogs: &'a CatalogSet,
    /// The time to judge windows at: the node's clock raised to its time floor
    /// ([`judged_now`]).
    pub now: Timestamp,
    /// Whose region step 4 asks about.
    pub territory: Territory,
}

/// What the node is about to do with a manifest's content, for step 4: a licence that lists
/// regions binds where the *user* is, so the region that counts depends on who gets the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Territory {
    /// Fetching it for this node's user: the node's own configured region, if any. A node
    /// without a region is refused content that lists regions.
    Fetcher(Option<Region>),
    /// Serving a chunk of it to a requester: the region the requester stated, if any. A
    /// requester that stated none is refused content that lists regions.
    Requester(Option<Region>),
    /// Holding, announcing or describing it (manifest, availability), handing no content to a
    /// user: no region applies.
    Holder,
}

/// Decides whether `manifest`'s content may be served, fetched, stored or announced now.
/// See the module docs for the numbered steps.
pub fn evaluate(inputs: &PolicyInputs<'_>, manifest: &VerifiedManifest) -> Result<(), Refusal> {
    let body = manifest.manifest();
    let publisher = body.publisher;
    let now = inputs.now;
    let catalog = inputs.catalogs.newest(&publisher).map(|c| c.catalog());

    // 1. Trusted publisher.
    let Some(trusted) = inputs.trust.get(&publisher) else {
        return Err(Refusal::new(
            RefusalReason::UntrustedPublisher,
            format!("publisher {publisher} is not in this node's trust store"),
        ));
    };

    // 2. Signature (checked by VerifiedManifest) and delegation now.
    if let Some(delegation) = manifest.delegation() {
        if now.plus_seconds(CLOCK_SKEW_SECONDS) < delegation.not_before
            || now >= delegation.not_after
        {
            return Err(Refusal::new(
                RefusalReason::DelegationNotValidNow,
                format!(
                    "delegation to {} is valid from {} to {}, and it is {now}",
                    delegation.delegate, delegation.not_before, delegation.not_after
                ),
            ));
        }
        if catalog.is_some_and(|c| c.revokes_delegate(&delegation.delegate)) {
            return Err(Refusal::new(
                RefusalReason::DelegateRevoked,
                format!(
                    "delegate {} is revoked by publisher {publisher}",
                    delegation.delegate
                ),
            ));
        }
    }

    // 3. Licence window.
    let licence = &body.licence;
    if now.plus_seconds(CLOCK_SKEW_SECONDS) < licence.not_before {
        return Err(Refusal::new(
            RefusalReason::NotYetValid,
            format!("licence starts at {}, and it is {now}", licence.not_before),
        ));
    }
    if let Some(not_after) = licence.not_after
        && now >= not_after
    {
        return Err(Refusal::new(
            RefusalReason::Expired,
            format!("licence ended at {not_after}, and it is {now}"),
        ));
    }

    // 4. Region: fails closed where a user gets the bytes.
    if !licence.regions.is_empty() {
        let listed = || {
            let listed: Vec<String> = licence.regions.iter().map(Region::to_string).collect();
            listed.join(",")
        };
        let refused = |detail: String| Err(Refusal::new(RefusalReason::RegionNotLicensed, detail));
        match inputs.territory {
            Territory::Holder => {}
            Territory::Fetcher(Some(region)) | Territory::Requester(Some(region))
                if licence.regions.contains(&region) => {}
            Territory::Fetcher(Some(region)) => {
                return refused(format!(
                    "this node is in {region}; the licence covers {}",
                    listed()
                ));
            }
            Territory::Fetcher(None) => {
                return refused(format!(
                    "the licence covers only {} and this node has no region: set it with \
                     --region, LICET_REGION or `region` in config.toml",
                    listed()
                ));
            }
            Territory::Requester(Some(region)) => {
                return refused(format!(
                    "the requester is in {region}; the licence covers {}",
                    listed()
                ));
            }
            Territory::Requester(None) => {
                return refused(format!(
                    "the requester stated no region; the licence covers only {}",
                    listed()
                ));
            }
        }
    }

    // 5. Revocation.
    if catalog.is_some_and(|c| c.revokes_manifest(&manifest.id())) {
        return Err(Refusal::new(
            RefusalReason::Revoked,
            format!(
                "manifest {} is revoked by publisher {publisher}",
                manifest.id()
            ),
        ));
    }

    // 6. require_catalog.
    if trusted.require_catalog {
        match catalog {
            None => {
                return Err(Refusal::new(
                    RefusalReason::NoValidCatalog,
                    format!("publisher {publisher} requires a catalog and none is held"),
                ));
            }
            Some(c) if now >= c.expires_at => {
                return Err(Refusal::new(
                    RefusalReason::NoValidCatalog,
                    format!(
                        "the newest catalog ({}) of publisher {publisher} expired at {}",
                        c.sequence, c.expires_at
                    ),
                ));
            }
            Some(c) if !c.lists(&manifest.id()) => {
                return Err(Refusal::new(
                    RefusalReason::NotInCatalog,
                    format!(
                        "manifest {} is not listed in catalog {} of publisher {publisher}",
                        manifest.id(),
                        c.sequence
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
