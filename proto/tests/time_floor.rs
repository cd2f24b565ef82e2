//! The time floor: a clock that is behind the newest publisher-signed `issued_at` a node
//! accepted cannot keep an ended release alive (issue 20, item 3).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "clippy.toml's allow-*-in-tests covers #[test] bodies, not these test helpers"
)]

use licet_proto::{
    MerkleHash, SecretKey, Timestamp,
    catalog::Catalog,
    manifest::{FileEntry, Licence, Manifest, VerifiedManifest},
    path::SafePath,
    policy::{
        CLOCK_SKEW_SECONDS, CatalogAcceptance, CatalogSet, PolicyInputs, RefusalReason, Territory,
        TrustStore, TrustedPublisher, clock_behind_floor, evaluate, judged_now,
    },
};

/// The node's (slow) clock.
const CLOCK: Timestamp = Timestamp(1_800_000_000);
const MINUTE: i64 = 60;

fn key() -> SecretKey {
    SecretKey::from_seed(&[7; 32])
}

fn trust() -> TrustStore {
    let mut trust = TrustStore::new();
    trust.insert(key().public_key(), TrustedPublisher::default());
    trust
}

/// A release whose window ends `ends_in` seconds after [`CLOCK`].
fn release(ends_in: i64) -> VerifiedManifest {
    Manifest {
        version: 1,
        publisher: key().public_key(),
        title: "Film".into(),
        description: None,
        created_at: Timestamp(CLOCK.0 - 86_400),
        chunk_size: 1 << 20,
        files: vec![FileEntry {
            path: SafePath::new("film.mkv").unwrap(),
            size: 1,
            root: MerkleHash([1; 32]),
        }],
        licence: Licence {
            terms: "t".into(),
            not_before: Timestamp(CLOCK.0 - 86_400),
            not_after: Some(CLOCK.plus_seconds(ends_in)),
            regions: vec![],
        },
        encryption: None,
    }
    .sign(&key(), None)
    .unwrap()
}

/// Catalog `sequence` of the publisher, issued at `issued_at`, valid for a day.
fn catalog_set_with(issued_at: Timestamp) -> CatalogSet {
    let catalog = Catalog {
        publisher: key().public_key(),
        sequence: 1,
        issued_at,
        expires_at: issued_at.plus_seconds(86_400),
        entries: vec![],
        revoked_manifests: vec![],
        revoked_delegates: vec![],
        revoked_licences: Vec::new(),
    }
    .sign(&key())
    .unwrap();
    let mut set = CatalogSet::new();
    // Issued in the node's future: accepted all the same (a takedown never waits for a clock).
    let judged = judged_now(CLOCK, set.time_floor());
    assert_eq!(
        set.accept(&trust(), judged, catalog).unwrap(),
        CatalogAcceptance::Accepted { previous: None }
    );
    set
}

fn decide(set: &CatalogSet, manifest: &VerifiedManifest) -> Result<(), RefusalReason> {
    evaluate(
        &PolicyInputs {
            trust: &trust(),
            catalogs: set,
            now: judged_now(CLOCK, set.time_floor()),
            territory: Territory::Holder,
        },
        manifest,
    )
    .map_err(|r| r.reason)
}

#[test]
fn a_catalog_issued_in_the_future_raises_the_floor_past_a_window_that_the_slow_clock_keeps_open() {
    let ends_in_5_min = release(5 * MINUTE);
    // No catalog: the slow clock alone says the window is open.
    assert_eq!(decide(&CatalogSet::new(), &ends_in_5_min), Ok(()));
    // A catalog issued 20 minutes ahead of the clock proves that the window ended.
    let set = catalog_set_with(CLOCK.plus_seconds(20 * MINUTE));
    assert_eq!(set.time_floor(), Some(CLOCK.plus_seconds(20 * MINUTE)));
    assert_eq!(
        decide(&set, &ends_in_5_min),
        Err(RefusalReason::Expired),
        "an ended release is still allowed on a clock that is 20 minutes slow"
    );
    assert_eq!(
        clock_behind_floor(CLOCK, set.time_floor()),
        Some(20 * MINUTE)
    );
    // A release that ends after the floor is still served.
    assert_eq!(decide(&set, &release(60 * MINUTE)), Ok(()));
}

#[test]
fn the_floor_allows_the_publishers_clock_the_usual_skew() {
    // The catalog's issued_at is up to the skew ahead of true time: a window ending within
    // the skew before it is not cut short.
    let set = catalog_set_with(CLOCK.plus_seconds(2 * MINUTE));
    assert_eq!(decide(&set, &release(MINUTE)), Ok(()));
    assert_eq!(clock_behind_floor(CLOCK, set.time_floor()), None);
    assert_eq!(
        judged_now(CLOCK, Some(CLOCK.plus_seconds(CLOCK_SKEW_SECONDS + 1))),
        CLOCK.plus_seconds(1)
    );
    // The floor never moves a clock back.
    assert_eq!(judged_now(CLOCK, Some(Timestamp(CLOCK.0 - 86_400))), CLOCK);
    assert_eq!(judged_now(CLOCK, None), CLOCK);
}
