//! The licences `deliveries merge --licences` counts: for encrypted releases, the exact number
//! of licences issued, shown beside the delivery reports' estimate.
//!
//! A licence counts only if all of these hold, checked in this order (the first that fails is
//! its refusal reason):
//! 1. it verifies ([`VerifiedLicence::from_bytes`]: signature over the stored body, well-formed
//!    body, signed by its publisher or by a delegate carrying that publisher's delegation);
//! 2. its publisher is the catalog's publisher;
//! 3. it was not issued in the future (more than the allowed clock skew after now);
//! 4. when a delegate signed it: the catalog does not revoke that delegate, the delegation
//!    covered the licence's issue time, and its scope covers the release's title as the catalog
//!    lists it (so a release the catalog does not list counts only licences the publisher
//!    signed itself).
//!
//! Invariant of [`LicenceTally`]: each licence counts once, by id, however often it is given;
//! a licence the catalog revokes still counts as issued, and is counted as revoked too.

use std::collections::{BTreeMap, BTreeSet};

use licet_proto::{
    LicenceId, ManifestId, Timestamp, catalog::Catalog, delegation::Delegation,
    licence::VerifiedLicence, policy::CLOCK_SKEW_SECONDS,
};

/// The distinct licences counted, by release.
#[derive(Default)]
pub struct LicenceTally {
    by_release: BTreeMap<ManifestId, BTreeSet<LicenceId>>,
}

/// One release's licences.
pub struct ReleaseLicences {
    /// The release.
    pub release: ManifestId,
    /// Distinct licences issued for it.
    pub issued: u64,
    /// How many of those the catalog revokes.
    pub revoked: u64,
}

impl LicenceTally {
    /// Counts `licence` (checked with [`check`] first).
    pub fn add(&mut self, licence: &VerifiedLicence) {
        self.by_release
            .entry(licence.licence().manifest_id)
            .or_default()
            .insert(licence.id());
    }

    /// Each release with at least one licence counted, in release id order.
    pub fn releases(&self, catalog: &Catalog) -> Vec<ReleaseLicences> {
        self.by_release
            .iter()
            .map(|(release, ids)| ReleaseLicences {
                release: *release,
                issued: ids.len() as u64,
                revoked: ids.iter().filter(|id| catalog.revokes_licence(id)).count() as u64,
            })
            .collect()
    }
}

/// Why `licence` does not count for `catalog`'s publisher at `now` (steps 2–4 of the module
/// docs; step 1 is [`VerifiedLicence::from_bytes`]).
pub fn check(licence: &VerifiedLicence, catalog: &Catalog, now: Timestamp) -> Result<(), String> {
    let body = licence.licence();
    if body.publisher != catalog.publisher {
        return Err(format!(
            "it is a licence of publisher {}, not of the catalog's publisher {}",
            body.publisher, catalog.publisher
        ));
    }
    if body.issued_at > now.plus_seconds(CLOCK_SKEW_SECONDS) {
        return Err(format!(
            "it says it was issued at {}, in the future (it is {now})",
            body.issued_at
        ));
    }
    let signer = licence.envelope().signer;
    if signer == catalog.publisher {
        return Ok(());
    }
    if catalog.revokes_delegate(&signer) {
        return Err(format!(
            "it is signed by delegate {signer}, which the catalog revokes"
        ));
    }
    // Verification guarantees a delegate carries a valid delegation to itself.
    let delegation = licence
        .envelope()
        .delegation
        .as_ref()
        .ok_or_else(|| format!("delegate {signer} signed it without a delegation"))
        .and_then(|carried| Delegation::verify_carried(carried).map_err(|e| e.to_string()))?;
    if body.issued_at.plus_seconds(CLOCK_SKEW_SECONDS) < delegation.not_before
        || body.issued_at >= delegation.not_after
    {
        return Err(format!(
            "it was issued at {}, outside the delegation to {signer} ({} to {})",
            body.issued_at, delegation.not_before, delegation.not_after
        ));
    }
    let title = catalog
        .entries
        .binary_search_by(|e| e.manifest_id.cmp(&body.manifest_id))
        .map(|i| catalog.entries[i].title.as_str())
        .map_err(|_| {
            format!(
                "release {} is not listed in the catalog, so the scope of delegate {signer} \
                 cannot be checked",
                body.manifest_id
            )
        })?;
    if !delegation.scope.allows_title(title) {
        return Err(format!(
            "the delegation to {signer} covers {}, not {title:?}",
            delegation.scope
        ));
    }
    Ok(())
}
