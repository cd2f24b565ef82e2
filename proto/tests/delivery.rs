//! Delivery reports: golden bytes, the sketch's merge laws, verification refusals and the
//! ledger's replay rules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "clippy.toml's allow-*-in-tests covers #[test] bodies, not these test helpers"
)]

use licet_proto::{
    ManifestId, MerkleHash, PublicKey, SecretKey, Timestamp,
    catalog::{Catalog, CatalogEntry, VerifiedCatalog},
    delegation::{Delegation, DelegationScope},
    delivery::{
        DeliveryLedger, DeliveryReport, DeliveryReportError, LedgerOutcome, LedgerRefusal, UtcDay,
        VerifiedDeliveryReport,
        sketch::{DistinctSketch, MAX_REGISTER_VALUE, SKETCH_REGISTERS},
    },
    encoding,
    manifest::{FileEntry, Licence, Manifest, ManifestError},
    path::SafePath,
    signed::{Signed, SignedDelegation, SignedKind},
};
use proptest::prelude::*;

/// ed25519 public key of the seed `[1; 32]`: the publisher.
const PUBLISHER: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
/// 2027-01-15T08:00:00Z; zigzag varint.
const ISSUED: Timestamp = Timestamp(1_800_000_000);
const ISSUED_HEX: &str = "80c8ceb40d";
/// Day 20833 (2027-01-15) as a varint.
const DAY_HEX: &str = "e1a201";
/// ed25519 by the publisher over `"licet/v1/delivery-report" ‖ 0x00 ‖ body` of [`report`],
/// computed independently with Python `cryptography`.
const SIG_REPORT: &str = "114c2b19147106c472c0365fa22084d5456a746399ecf346acdcaf26e319a0a3\
                          d38c321763857544caf7123b947f804f45cda7f67d28201b001d9491c971c407";

fn publisher_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn partner_key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[10 + n; 32])
}

const RELEASE: ManifestId = ManifestId([0x11; 32]);
const SERIES_RELEASE: ManifestId = ManifestId([0x22; 32]);
const UNLISTED: ManifestId = ManifestId([0x33; 32]);

fn golden_sketch() -> DistinctSketch {
    let mut registers = vec![0u8; SKETCH_REGISTERS];
    registers[0] = 1;
    registers[SKETCH_REGISTERS - 1] = MAX_REGISTER_VALUE;
    DistinctSketch::try_from(registers).unwrap()
}

fn report() -> DeliveryReport {
    DeliveryReport {
        publisher: publisher_key().public_key(),
        release: RELEASE,
        day: UtcDay::of(ISSUED),
        sequence: 3,
        issued_at: ISSUED,
        min_share_percent: 90,
        peers_served: 10,
        sketch: golden_sketch(),
    }
}

fn report_body_hex() -> String {
    [
        PUBLISHER,
        &"11".repeat(32), // release: 32 raw bytes
        DAY_HEX,          // day: varint 20833
        "03",             // sequence
        ISSUED_HEX,       // issued_at
        "5a",             // min_share_percent: one byte, 90
        "0a",             // peers_served: varint 10
        "8008",           // sketch: length 1024
        "01",             // register 0
        &"00".repeat(SKETCH_REGISTERS - 2),
        "37", // register 1023: 55
    ]
    .concat()
}

fn catalog_with(revoked_delegates: Vec<PublicKey>) -> VerifiedCatalog {
    Catalog {
        publisher: publisher_key().public_key(),
        sequence: 1,
        issued_at: ISSUED.plus_seconds(-86_400),
        expires_at: ISSUED.plus_seconds(30 * 86_400),
        entries: vec![
            CatalogEntry {
                manifest_id: RELEASE,
                title: "Film".into(),
            },
            CatalogEntry {
                manifest_id: SERIES_RELEASE,
                title: "Series 1".into(),
            },
        ],
        revoked_manifests: vec![],
        revoked_delegates,
        revoked_licences: Vec::new(),
    }
    .sign(&publisher_key())
    .unwrap()
}

fn catalog() -> VerifiedCatalog {
    catalog_with(vec![])
}

fn delegation_to(key: &SecretKey, scope: DelegationScope) -> SignedDelegation {
    Delegation {
        publisher: publisher_key().public_key(),
        delegate: key.public_key(),
        not_before: ISSUED.plus_seconds(-86_400),
        not_after: ISSUED.plus_seconds(86_400),
        scope,
    }
    .sign(&publisher_key())
    .into_carried_delegation()
    .unwrap()
}

/// A report by partner `n` (delegated for reports) of `peers` on the golden day.
fn partner_report(n: u8, sequence: u64, peers: impl IntoIterator<Item = u32>) -> Vec<u8> {
    let mut sketch = DistinctSketch::new();
    let mut served = 0;
    for peer in peers {
        sketch.insert_peer(&RELEASE, report().day, &peer.to_be_bytes());
        served += 1;
    }
    DeliveryReport {
        sequence,
        peers_served: served,
        sketch,
        ..report()
    }
    .sign(
        &partner_key(n),
        Some(delegation_to(
            &partner_key(n),
            DelegationScope::DeliveryReports,
        )),
    )
    .encode()
}

fn verify(bytes: &[u8]) -> Result<VerifiedDeliveryReport, DeliveryReportError> {
    VerifiedDeliveryReport::from_bytes(bytes, &catalog(), ISSUED)
}

#[test]
fn report_body_golden_bytes() {
    let bytes = encoding::encode(&report());
    assert_eq!(hex::encode(&bytes), report_body_hex());
    assert_eq!(bytes.len(), 1101);
    let back: DeliveryReport = encoding::decode("report", &bytes, bytes.len()).unwrap();
    assert_eq!(back, report());
}

#[test]
fn report_envelope_golden_bytes() {
    let envelope = report().sign(&publisher_key(), None);
    let expected = [
        "06", // kind: DeliveryReport, variant 6 (after CatalogRoot and Licence)
        PUBLISHER,
        "cd08", // body length 1101
        &report_body_hex(),
        SIG_REPORT,
        "00", // delegation: None
    ]
    .concat();
    assert_eq!(hex::encode(envelope.encode()), expected);
    let verified = verify(&envelope.encode()).unwrap();
    assert_eq!(verified.report(), &report());
    assert_eq!(verified.signer(), publisher_key().public_key());
}

#[test]
fn delivery_reports_scope_golden_bytes() {
    assert_eq!(
        hex::encode(encoding::encode(&DelegationScope::DeliveryReports)),
        "02"
    );
    assert_eq!(SignedKind::DeliveryReport.name(), "delivery-report");
}

#[test]
fn a_report_with_the_largest_delegation_fits_one_gossip_message() {
    // A node's gossip messages are at most 4 KiB; the report must fit with any valid delegation.
    let long_prefix = DelegationScope::TitlePrefix("x".repeat(256));
    let mut delegation = delegation_to(&partner_key(1), long_prefix);
    delegation
        .body
        .resize(licet_proto::delegation::MAX_DELEGATION_BODY_BYTES, 0);
    let envelope = DeliveryReport {
        sequence: u64::MAX,
        peers_served: u64::MAX,
        issued_at: Timestamp(i64::MAX),
        ..report()
    }
    .sign(&partner_key(1), Some(delegation));
    assert!(
        envelope.encode().len() <= 4 * 1024,
        "{}",
        envelope.encode().len()
    );
    assert!(envelope.encode().len() <= SignedKind::DeliveryReport.max_envelope_bytes());
}

#[test]
fn two_partners_ten_downloaders_merge_to_ten() {
    let mut ledger = DeliveryLedger::new();
    // Downloaders 0..7 fetched from partner 1, 4..10 from partner 2: 4, 5 and 6 from both.
    for bytes in [partner_report(1, 1, 0..7), partner_report(2, 1, 4..10)] {
        assert_eq!(
            ledger.accept(verify(&bytes).unwrap()),
            Ok(LedgerOutcome::Added)
        );
    }
    let counts = ledger.counts();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].distinct_peers, 10);
    let served: Vec<u64> = counts[0].partners.iter().map(|p| p.peers_served).collect();
    assert_eq!(
        served.iter().sum::<u64>(),
        13,
        "the partners' own counts overlap"
    );
}

#[test]
fn forged_replayed_and_conflicting_reports_change_nothing() {
    let mut ledger = DeliveryLedger::new();
    ledger
        .accept(verify(&partner_report(1, 5, 0..7)).unwrap())
        .unwrap();
    let before = ledger.counts();

    // Forged: the body changed after signing.
    let mut forged = Signed::decode(&partner_report(1, 6, 0..7)).unwrap();
    forged.body[70] ^= 1;
    let err = verify(&forged.encode()).unwrap_err();
    assert!(matches!(err, DeliveryReportError::Envelope(_)), "{err}");
    assert!(err.to_string().contains("signature"), "{err}");

    // Replayed: an older sequence of the same partner, release and day.
    let older = verify(&partner_report(1, 4, 0..50)).unwrap();
    assert_eq!(
        ledger.accept(older),
        Err(LedgerRefusal::Superseded {
            sequence: 4,
            kept: 5
        })
    );
    // The same sequence with other contents.
    let conflicting = verify(&partner_report(1, 5, 0..50)).unwrap();
    assert_eq!(
        ledger.accept(conflicting),
        Err(LedgerRefusal::Conflicting(5))
    );
    // The same report again.
    let again = verify(&partner_report(1, 5, 0..7)).unwrap();
    assert_eq!(ledger.accept(again), Ok(LedgerOutcome::AlreadyKept));
    assert_eq!(ledger.counts(), before);

    // A newer report replaces the kept one.
    let newer = verify(&partner_report(1, 9, 0..8)).unwrap();
    assert_eq!(
        ledger.accept(newer),
        Ok(LedgerOutcome::Replaced { previous: 5 })
    );
    assert_eq!(ledger.counts()[0].distinct_peers, 8);
}

#[test]
fn out_of_scope_reports_are_refused_with_reasons() {
    let partner = partner_key(1);
    let sign = |report: DeliveryReport, scope: Option<DelegationScope>| {
        let delegation = scope.map(|s| delegation_to(&partner, s));
        report.sign(&partner, delegation).encode()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            sign(report(), None),
            "is not the publisher and carries no delegation",
        ),
        (
            sign(
                report(),
                Some(DelegationScope::TitlePrefix("Series ".into())),
            ),
            "does not allow delivery reports for \"Film\"",
        ),
        (
            sign(
                DeliveryReport {
                    release: UNLISTED,
                    ..report()
                },
                Some(DelegationScope::DeliveryReports),
            ),
            "is not in the publisher's catalog",
        ),
        (
            sign(
                DeliveryReport {
                    publisher: partner.public_key(),
                    ..report()
                },
                Some(DelegationScope::DeliveryReports),
            ),
            "release, not 8a88e3dd",
        ),
        (
            sign(
                DeliveryReport {
                    issued_at: ISSUED.plus_seconds(2 * 86_400),
                    day: UtcDay::of(ISSUED.plus_seconds(2 * 86_400)),
                    ..report()
                },
                Some(DelegationScope::DeliveryReports),
            ),
            "in the future",
        ),
        (
            sign(
                DeliveryReport {
                    min_share_percent: 0,
                    ..report()
                },
                Some(DelegationScope::DeliveryReports),
            ),
            "outside 1..=100",
        ),
        (
            sign(
                DeliveryReport {
                    day: UtcDay(report().day.0 + 1),
                    ..report()
                },
                Some(DelegationScope::DeliveryReports),
            ),
            "before that day began",
        ),
    ];
    for (bytes, expected) in cases {
        let err = verify(&bytes).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    // A delegation that does not cover the time of signing.
    let late = DeliveryReport {
        issued_at: ISSUED.plus_seconds(86_400),
        day: UtcDay::of(ISSUED.plus_seconds(86_400)),
        ..report()
    }
    .sign(
        &partner,
        Some(delegation_to(&partner, DelegationScope::DeliveryReports)),
    );
    let err =
        VerifiedDeliveryReport::verify(late, &catalog(), ISSUED.plus_seconds(86_400)).unwrap_err();
    assert!(err.to_string().contains("does not cover"), "{err}");
    // A delegate the catalog revokes.
    let bytes = partner_report(1, 1, 0..3);
    let err = VerifiedDeliveryReport::from_bytes(
        &bytes,
        &catalog_with(vec![partner.public_key()]),
        ISSUED,
    )
    .unwrap_err();
    assert!(err.to_string().contains("revokes the delegate"), "{err}");
    // A delegate for manifests titled "Series " may report on those.
    let series = sign(
        DeliveryReport {
            release: SERIES_RELEASE,
            ..report()
        },
        Some(DelegationScope::TitlePrefix("Series ".into())),
    );
    assert!(verify(&series).is_ok());
}

#[test]
fn a_reports_only_delegate_cannot_sign_a_manifest() {
    let partner = partner_key(1);
    let manifest = Manifest {
        version: 1,
        publisher: publisher_key().public_key(),
        title: "Film".into(),
        description: None,
        created_at: ISSUED,
        chunk_size: 1 << 20,
        files: vec![FileEntry {
            path: SafePath::new("a").unwrap(),
            size: 1,
            root: MerkleHash([0; 32]),
        }],
        licence: Licence {
            terms: String::new(),
            not_before: ISSUED,
            not_after: None,
            regions: vec![],
        },
        encryption: None,
    };
    let err = manifest
        .sign(
            &partner,
            Some(delegation_to(&partner, DelegationScope::DeliveryReports)),
        )
        .unwrap_err();
    assert!(matches!(err, ManifestError::OutOfScope { .. }), "{err}");
}

fn sketch_strategy() -> impl Strategy<Value = DistinctSketch> {
    proptest::collection::vec(any::<u64>(), 0..200).prop_map(|hashes| {
        let mut sketch = DistinctSketch::new();
        for hash in hashes {
            sketch.insert_hash(hash);
        }
        sketch
    })
}

fn merged(a: &DistinctSketch, b: &DistinctSketch) -> DistinctSketch {
    let mut out = a.clone();
    out.merge(b);
    out
}

proptest! {
    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        a in sketch_strategy(),
        b in sketch_strategy(),
        c in sketch_strategy(),
    ) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &a), a.clone());
        prop_assert!(merged(&a, &b).estimate() >= a.estimate());
    }

    #[test]
    fn report_round_trips(
        sketch in sketch_strategy(),
        sequence in any::<u64>(),
        share in 1u8..=100,
        peers in any::<u64>(),
        day in any::<u32>(),
    ) {
        let report = DeliveryReport {
            sketch,
            sequence,
            min_share_percent: share,
            peers_served: peers,
            day: UtcDay(day),
            ..report()
        };
        let bytes = encoding::encode(&report);
        let back: DeliveryReport = encoding::decode("report", &bytes, bytes.len()).unwrap();
        prop_assert_eq!(back, report);
    }
}
