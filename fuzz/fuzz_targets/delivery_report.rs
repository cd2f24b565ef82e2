//! Delivery report verification and the ledger's replay rules
//! (`delivery::VerifiedDeliveryReport::from_bytes`, `delivery::DeliveryLedger::accept`), on
//! arbitrary bytes and on reports signed by fixed keys with arbitrary fields.
//!
//! The input (read with `arbitrary`) is a list of offered reports. Each is raw bytes or a report
//! signed by one of three fixed keys (key 0 is the publisher whose catalog lists release 0x11),
//! with or without a delegation of one of the scopes, optionally with one byte flipped.
//!
//! Properties checked (a failed assertion is a bug):
//! - nothing panics, and a refusal's message holds no character `is_unsafe_to_show` refuses;
//! - an accepted report was signed by the publisher, or by a delegate carrying the publisher's
//!   delegation, and names the catalog's publisher and a listed release;
//! - a report made here and signed by a key that is neither is never accepted;
//! - a report the ledger refuses leaves its merged counts exactly as they were, and counts only
//!   ever grow as reports are accepted (later reports are cumulative only when made so, so this
//!   holds per kept key, not overall: checked as "refused ⇒ unchanged").

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use licet_proto::{
    ManifestId, PublicKey, SecretKey, Timestamp,
    catalog::{Catalog, CatalogEntry, VerifiedCatalog},
    delegation::{Delegation, DelegationScope},
    delivery::{DeliveryLedger, DeliveryReport, DistinctSketch, UtcDay, VerifiedDeliveryReport},
    text::is_unsafe_to_show,
};

const NOW: Timestamp = Timestamp(1_800_000_000);

static KEYS: LazyLock<Vec<(SecretKey, PublicKey)>> = LazyLock::new(|| {
    (1..=3u8)
        .map(|seed| {
            let key = SecretKey::from_seed(&[seed; 32]);
            let public = key.public_key();
            (key, public)
        })
        .collect()
});

static CATALOG: LazyLock<VerifiedCatalog> = LazyLock::new(|| {
    Catalog {
        publisher: KEYS[0].1,
        sequence: 1,
        issued_at: NOW.plus_seconds(-86_400),
        expires_at: NOW.plus_seconds(86_400),
        entries: vec![CatalogEntry {
            manifest_id: ManifestId([0x11; 32]),
            title: "Film".into(),
        }],
        revoked_manifests: vec![],
        revoked_delegates: vec![KEYS[2].1],
        revoked_licences: Vec::new(),
    }
    .sign(&KEYS[0].0)
    .unwrap_or_else(|e| panic!("the fixed catalog does not sign: {e}"))
});

fn key(which: u8) -> &'static (SecretKey, PublicKey) {
    &KEYS[usize::from(which) % KEYS.len()]
}

#[derive(Arbitrary, Debug)]
enum Scope {
    All,
    Prefix(String),
    Reports,
}

#[derive(Arbitrary, Debug)]
enum Offered {
    Raw(Vec<u8>),
    Report {
        signer: u8,
        publisher: u8,
        /// Release 0x11 (listed) when true, else 0x22.
        listed: bool,
        /// Relative to NOW, in seconds.
        issued_offset: i32,
        day_offset: i8,
        sequence: u8,
        share: u8,
        peers: Vec<u16>,
        /// (granted by, scope, window start offset, window length) of a carried delegation.
        delegation: Option<(u8, Scope, i32, u32)>,
        flip: Option<(u16, u8)>,
    },
}

impl Offered {
    /// The bytes, and whether the signer is neither the publisher nor a delegate of it.
    fn bytes(&self) -> (Vec<u8>, bool) {
        let (signer, publisher, listed, issued_offset, day_offset, sequence, share, peers, delegation, flip) =
            match self {
                Offered::Raw(bytes) => return (bytes.clone(), false),
                Offered::Report {
                    signer,
                    publisher,
                    listed,
                    issued_offset,
                    day_offset,
                    sequence,
                    share,
                    peers,
                    delegation,
                    flip,
                } => (
                    signer,
                    publisher,
                    listed,
                    issued_offset,
                    day_offset,
                    sequence,
                    share,
                    peers,
                    delegation,
                    flip,
                ),
            };
        let release = ManifestId(if *listed { [0x11; 32] } else { [0x22; 32] });
        let issued_at = NOW.plus_seconds(i64::from(*issued_offset));
        let day = UtcDay(UtcDay::of(issued_at).0.saturating_add_signed(i32::from(*day_offset)));
        let mut sketch = DistinctSketch::new();
        for peer in peers.iter().take(64) {
            sketch.insert_peer(&release, day, &peer.to_be_bytes());
        }
        let report = DeliveryReport {
            publisher: key(*publisher).1,
            release,
            day,
            sequence: u64::from(*sequence),
            issued_at,
            min_share_percent: *share,
            peers_served: peers.len() as u64,
            sketch,
        };
        let signer = key(*signer);
        let carried = delegation.as_ref().and_then(|(by, scope, start, length)| {
            let not_before = NOW.plus_seconds(i64::from(*start));
            Delegation {
                publisher: key(*by).1,
                delegate: signer.1,
                not_before,
                not_after: not_before.plus_seconds(i64::from(*length)),
                scope: match scope {
                    Scope::All => DelegationScope::AllManifests,
                    Scope::Prefix(p) => DelegationScope::TitlePrefix(p.clone()),
                    Scope::Reports => DelegationScope::DeliveryReports,
                },
            }
            .sign(&key(*by).0)
            .into_carried_delegation()
            .ok()
        });
        let granted_by_publisher = carried
            .as_ref()
            .is_some_and(|c| c.signer == KEYS[0].1);
        let mut bytes = report.sign(&signer.0, carried).encode();
        if let Some((at, mask)) = flip
            && *mask != 0
        {
            let at = usize::from(*at) % bytes.len();
            bytes[at] ^= mask;
            return (bytes, false);
        }
        let stranger = signer.1 != KEYS[0].1 && !granted_by_publisher;
        (bytes, stranger)
    }
}

fuzz_target!(|offered: Vec<Offered>| {
    let mut ledger = DeliveryLedger::new();
    for offer in offered.iter().take(16) {
        let (bytes, stranger) = offer.bytes();
        let verified = match VerifiedDeliveryReport::from_bytes(&bytes, &CATALOG, NOW) {
            Ok(verified) => verified,
            Err(e) => {
                let message = e.to_string();
                assert!(
                    !message.chars().any(is_unsafe_to_show),
                    "unsafe to show: {message:?}"
                );
                continue;
            }
        };
        assert!(!stranger, "a report signed by a stranger was accepted");
        let report = verified.report();
        assert_eq!(report.publisher, KEYS[0].1);
        assert_eq!(report.release, ManifestId([0x11; 32]));
        let signer = verified.signer();
        match &verified.envelope().delegation {
            None => assert_eq!(signer, KEYS[0].1),
            Some(carried) => assert_eq!(carried.signer, KEYS[0].1),
        }
        let before = ledger.counts();
        if let Err(refusal) = ledger.accept(verified) {
            assert_eq!(ledger.counts(), before, "a refused report ({refusal}) changed the counts");
        }
    }
});
