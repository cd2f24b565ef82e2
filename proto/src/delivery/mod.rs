//! Delivery reports: a partner seed's signed count of the distinct peers it served a release to
//! on one UTC day, and the publisher's merge of many such reports.
//!
//! ```text
//! DeliveryReport { publisher, release: ManifestId, day: UtcDay, sequence: u64, issued_at,
//!                  min_share_percent: u8, peers_served: u64, sketch: DistinctSketch }
//! signed as kind "delivery-report": "licet/v1/delivery-report" ‖ 0x00 ‖ body
//! ```
//!
//! A report is cumulative: it covers everything its signer served of `release` on `day` so far,
//! and a later report of the same signer, release and day carries a higher `sequence` and
//! replaces the earlier one. `peers_served` is the signer's own count of distinct peers that
//! fetched at least `min_share_percent` of the release's bytes from it; `sketch` holds the same
//! peers, so the reports of several partners merge without counting a peer twice.
//!
//! Verification ([`VerifiedDeliveryReport::verify`]), against the publisher's own catalog:
//! 1. the envelope is of kind `delivery-report` and its signature holds over the stored body;
//! 2. the body decodes within [`MAX_DELIVERY_REPORT_BODY_BYTES`] and is well-formed
//!    (share 1..=100 %, issued no earlier than its day begins, no more peers claimed served
//!    than the sketch can hold is not checked: the claim is the signer's, the sketch is the count);
//! 3. the body's publisher is the catalog's, and the catalog lists the release;
//! 4. the signer is the publisher itself, or a delegate whose delegation (signed by that
//!    publisher, for that signer) covers `issued_at`, allows delivery reports for the release's
//!    title ([`DelegationScope::allows_delivery_reports`]), and is not revoked by the catalog.
//!
//! The [`DeliveryLedger`] keeps, per (signer, release, day), the report with the highest
//! sequence. A report with a lower sequence than one kept is refused as a replay; one with the
//! same sequence must be byte-identical (then it changes nothing). Merged counts are the
//! register-wise maximum of the kept reports' sketches, so a refused report changes nothing.

pub mod sketch;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    ManifestId, PublicKey, SecretKey, Timestamp,
    catalog::VerifiedCatalog,
    delegation::{Delegation, DelegationError},
    encoding::{self, DecodeError},
    policy::CLOCK_SKEW_SECONDS,
    signed::{EnvelopeError, Signed, SignedDelegation, SignedKind},
};
pub use sketch::{DistinctSketch, SKETCH_STANDARD_ERROR, UtcDay};

/// The DHT key under which the nodes subscribed to `publisher`'s delivery report topic (its
/// collectors and the partners that report to it) announce themselves as providers, so that a
/// partner finds a collector it is not connected to (as `catalog::catalog_topic_key` does for
/// catalogs).
pub fn deliveries_topic_key(publisher: &PublicKey) -> [u8; 32] {
    crate::ids::sha256(&[b"licet/v1/deliveries-topic", publisher.as_bytes()])
}

/// Largest encoded report body: the fixed fields (under 100 bytes) and the 1,026-byte sketch.
pub const MAX_DELIVERY_REPORT_BODY_BYTES: usize = 1280;

/// The body of a delivery report (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// The publisher of the release (not necessarily the signer).
    pub publisher: PublicKey,
    /// The release served.
    pub release: ManifestId,
    /// The UTC day counted.
    pub day: UtcDay,
    /// Increases with each report of this signer for this release and day.
    pub sequence: u64,
    /// When the report was signed.
    pub issued_at: Timestamp,
    /// The share of the release's bytes (percent, 1..=100) a peer must have been served to count.
    pub min_share_percent: u8,
    /// The signer's own count of distinct peers served at least that share.
    pub peers_served: u64,
    /// The same peers, as a mergeable sketch.
    pub sketch: DistinctSketch,
}

/// Why a delivery report is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryReportError {
    /// Malformed envelope, another kind, or a signature that does not hold (forged).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body does not decode.
    #[error(transparent)]
    Body(#[from] DecodeError),
    /// The share is 0 or over 100.
    #[error("the report's minimum share is {0} %, outside 1..=100")]
    BadShare(u8),
    /// Signed before the day it reports began.
    #[error("the report for {day} was issued at {issued_at}, before that day began")]
    IssuedBeforeDay {
        /// The day reported.
        day: UtcDay,
        /// When it says it was issued.
        issued_at: Timestamp,
    },
    /// Signed more than the allowed clock skew in the future.
    #[error("the report was issued at {issued_at}, in the future")]
    IssuedInFuture {
        /// When it says it was issued.
        issued_at: Timestamp,
    },
    /// The report is about another publisher's release.
    #[error("the report is for publisher {found}'s release, not {expected}'s")]
    OtherPublisher {
        /// The catalog's publisher.
        expected: PublicKey,
        /// The report's.
        found: PublicKey,
    },
    /// The publisher's catalog does not list the release.
    #[error("release {0} is not in the publisher's catalog")]
    ReleaseNotListed(ManifestId),
    /// A key other than the publisher signed without a delegation.
    #[error("signed by {signer}, which is not the publisher and carries no delegation")]
    DelegationMissing {
        /// The signer.
        signer: PublicKey,
    },
    /// The carried delegation is invalid in itself.
    #[error("its delegation is not valid: {0}")]
    Delegation(#[from] DelegationError),
    /// The delegation is from another publisher or to another key.
    #[error(
        "its delegation is from {publisher} to {delegate}, not from the publisher to the signer {signer}"
    )]
    DelegationMismatch {
        /// Who granted it.
        publisher: PublicKey,
        /// To whom.
        delegate: PublicKey,
        /// Who signed the report.
        signer: PublicKey,
    },
    /// The delegation does not cover the time the report was signed.
    #[error("its delegation to {delegate} does not cover {issued_at}, when the report was signed")]
    DelegationNotCurrent {
        /// The delegate.
        delegate: PublicKey,
        /// When the report was signed.
        issued_at: Timestamp,
    },
    /// The delegation's scope does not allow reports for this release.
    #[error("its delegation's scope ({scope}) does not allow delivery reports for {title:?}")]
    OutOfScope {
        /// The scope, in words.
        scope: String,
        /// The release's title in the catalog.
        title: String,
    },
    /// The publisher's catalog revokes the delegate.
    #[error("the publisher's catalog revokes the delegate {0}")]
    DelegateRevoked(PublicKey),
}

impl DeliveryReport {
    /// Checks the body alone.
    fn validate(&self) -> Result<(), DeliveryReportError> {
        if !(1..=100).contains(&self.min_share_percent) {
            return Err(DeliveryReportError::BadShare(self.min_share_percent));
        }
        if self.issued_at < self.day.start() {
            return Err(DeliveryReportError::IssuedBeforeDay {
                day: self.day,
                issued_at: self.issued_at,
            });
        }
        Ok(())
    }

    /// Signs this report with `key` (the publisher's, or a delegate's carrying `delegation`).
    pub fn sign(&self, key: &SecretKey, delegation: Option<SignedDelegation>) -> Signed {
        Signed::sign(
            SignedKind::DeliveryReport,
            encoding::encode(self),
            key,
            delegation,
        )
    }
}

/// A report that passed every check in the module docs against its publisher's catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDeliveryReport {
    report: DeliveryReport,
    envelope: Signed,
}

impl VerifiedDeliveryReport {
    /// Decodes and verifies report bytes against the publisher's `catalog` at time `now`.
    pub fn from_bytes(
        bytes: &[u8],
        catalog: &VerifiedCatalog,
        now: Timestamp,
    ) -> Result<VerifiedDeliveryReport, DeliveryReportError> {
        let envelope = Signed::decode_kind(bytes, SignedKind::DeliveryReport)?;
        VerifiedDeliveryReport::verify(envelope, catalog, now)
    }

    /// Verifies an envelope (steps 1-4 of the module docs).
    pub fn verify(
        envelope: Signed,
        catalog: &VerifiedCatalog,
        now: Timestamp,
    ) -> Result<VerifiedDeliveryReport, DeliveryReportError> {
        // 1. Kind and signature over the stored body, before decoding it.
        envelope.expect_kind(SignedKind::DeliveryReport)?;
        envelope.verify_signature()?;
        // 2. The body.
        let report: DeliveryReport = encoding::decode(
            "delivery report body",
            &envelope.body,
            MAX_DELIVERY_REPORT_BODY_BYTES,
        )?;
        report.validate()?;
        if report.issued_at > now.plus_seconds(CLOCK_SKEW_SECONDS) {
            return Err(DeliveryReportError::IssuedInFuture {
                issued_at: report.issued_at,
            });
        }
        // 3. The publisher's release.
        let catalog = catalog.catalog();
        if report.publisher != catalog.publisher {
            return Err(DeliveryReportError::OtherPublisher {
                expected: catalog.publisher,
                found: report.publisher,
            });
        }
        let Ok(entry) = catalog
            .entries
            .binary_search_by(|e| e.manifest_id.cmp(&report.release))
            .map(|i| &catalog.entries[i])
        else {
            return Err(DeliveryReportError::ReleaseNotListed(report.release));
        };
        // 4. The signer.
        if envelope.signer != report.publisher || envelope.delegation.is_some() {
            let Some(carried) = &envelope.delegation else {
                return Err(DeliveryReportError::DelegationMissing {
                    signer: envelope.signer,
                });
            };
            let delegation = Delegation::verify_carried(carried)?;
            if delegation.publisher != report.publisher || delegation.delegate != envelope.signer {
                return Err(DeliveryReportError::DelegationMismatch {
                    publisher: delegation.publisher,
                    delegate: delegation.delegate,
                    signer: envelope.signer,
                });
            }
            if report.issued_at < delegation.not_before.plus_seconds(-CLOCK_SKEW_SECONDS)
                || report.issued_at >= delegation.not_after
            {
                return Err(DeliveryReportError::DelegationNotCurrent {
                    delegate: delegation.delegate,
                    issued_at: report.issued_at,
                });
            }
            if !delegation.scope.allows_delivery_reports(&entry.title) {
                return Err(DeliveryReportError::OutOfScope {
                    scope: delegation.scope.to_string(),
                    title: entry.title.clone(),
                });
            }
            if catalog.revokes_delegate(&delegation.delegate) {
                return Err(DeliveryReportError::DelegateRevoked(delegation.delegate));
            }
        }
        Ok(VerifiedDeliveryReport { report, envelope })
    }

    /// The report's body.
    pub fn report(&self) -> &DeliveryReport {
        &self.report
    }

    /// The key that signed it.
    pub fn signer(&self) -> PublicKey {
        self.envelope.signer
    }

    /// The envelope, exactly as signed.
    pub fn envelope(&self) -> &Signed {
        &self.envelope
    }
}

/// Why the ledger refuses a verified report.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LedgerRefusal {
    /// An older report of the same signer, release and day than one already kept.
    #[error(
        "replayed or superseded: sequence {sequence} is below {kept}, already kept from the same partner for this release and day"
    )]
    Superseded {
        /// The refused report's sequence.
        sequence: u64,
        /// The kept one's.
        kept: u64,
    },
    /// The same sequence with other contents.
    #[error(
        "sequence {0} was already kept from the same partner for this release and day with other contents"
    )]
    Conflicting(u64),
}

/// What [`DeliveryLedger::accept`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerOutcome {
    /// The first report of its signer, release and day.
    Added,
    /// It replaced an older report of the same signer, release and day.
    Replaced {
        /// The sequence replaced.
        previous: u64,
    },
    /// Byte-identical to the report already kept: nothing changed.
    AlreadyKept,
}

/// The key the ledger keeps one report under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LedgerKey {
    /// The release.
    pub release: ManifestId,
    /// The day.
    pub day: UtcDay,
    /// The partner's signing key.
    pub signer: PublicKey,
}

/// The newest report per (release, day, signer), and their merged counts.
#[derive(Clone, Debug, Default)]
pub struct DeliveryLedger {
    kept: BTreeMap<LedgerKey, VerifiedDeliveryReport>,
}

/// One partner's part in a day's count.
#[derive(Clone, Debug, PartialEq)]
pub struct PartnerCount {
    /// The partner's signing key.
    pub signer: PublicKey,
    /// The sequence of its report kept.
    pub sequence: u64,
    /// Its own count of distinct peers.
    pub peers_served: u64,
    /// Its sketch's estimate.
    pub sketch_estimate: u64,
    /// The share a peer had to be served to count.
    pub min_share_percent: u8,
}

/// The merged count for one release on one day.
#[derive(Clone, Debug, PartialEq)]
pub struct DayCount {
    /// The release.
    pub release: ManifestId,
    /// The day.
    pub day: UtcDay,
    /// The merged sketch's estimate of distinct peers served by any partner.
    pub distinct_peers: u64,
    /// The merged sketch itself.
    pub sketch: DistinctSketch,
    /// Each partner's report, by signer.
    pub partners: Vec<PartnerCount>,
}

impl DeliveryLedger {
    /// An empty ledger.
    pub fn new() -> DeliveryLedger {
        DeliveryLedger::default()
    }

    /// Keeps `report` unless the ledger holds a newer or conflicting one of the same signer,
    /// release and day (see the module docs).
    pub fn accept(
        &mut self,
        report: VerifiedDeliveryReport,
    ) -> Result<LedgerOutcome, LedgerRefusal> {
        let key = LedgerKey {
            release: report.report.release,
            day: report.report.day,
            signer: report.signer(),
        };
        let sequence = report.report.sequence;
        let outcome = match self.kept.get(&key) {
            None => LedgerOutcome::Added,
            Some(kept) if kept.report.sequence > sequence => {
                return Err(LedgerRefusal::Superseded {
                    sequence,
                    kept: kept.report.sequence,
                });
            }
            Some(kept) if kept.report.sequence == sequence => {
                if kept.envelope == report.envelope {
                    return Ok(LedgerOutcome::AlreadyKept);
                }
                return Err(LedgerRefusal::Conflicting(sequence));
            }
            Some(kept) => LedgerOutcome::Replaced {
                previous: kept.report.sequence,
            },
        };
        self.kept.insert(key, report);
        Ok(outcome)
    }

    /// The reports kept, ordered by release, day and signer.
    pub fn reports(&self) -> impl Iterator<Item = &VerifiedDeliveryReport> {
        self.kept.values()
    }

    /// The merged count per release and day, ordered by release then day.
    pub fn counts(&self) -> Vec<DayCount> {
        let mut counts: Vec<DayCount> = Vec::new();
        for (key, kept) in &self.kept {
            let report = &kept.report;
            let partner = PartnerCount {
                signer: key.signer,
                sequence: report.sequence,
                peers_served: report.peers_served,
                sketch_estimate: report.sketch.count(),
                min_share_percent: report.min_share_percent,
            };
            match counts.last_mut() {
                Some(last) if last.release == key.release && last.day == key.day => {
                    last.sketch.merge(&report.sketch);
                    last.partners.push(partner);
                }
                _ => counts.push(DayCount {
                    release: key.release,
                    day: key.day,
                    distinct_peers: 0,
                    sketch: report.sketch.clone(),
                    partners: vec![partner],
                }),
            }
        }
        for count in &mut counts {
            count.distinct_peers = count.sketch.count();
        }
        counts
    }
}
