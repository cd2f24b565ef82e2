//! One test per refusal: each builds the bad input a user, a file or a peer could present and
//! asserts the exact error variant or `RefusalReason` that comes back, and that its message names
//! what was wrong.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "clippy.toml's allow-*-in-tests covers #[test] bodies, not these test helpers"
)]

use licet_proto::{
    CatalogPartHash, LicenceId, ManifestId, MerkleHash, PublicKey, SecretKey, Timestamp,
    catalog::{
        Catalog, CatalogEntry, CatalogError, CatalogHead, HeadRecordRejection,
        MAX_ENTRY_TITLE_BYTES, VerifiedCatalog, VerifiedCatalogHead, VerifiedCatalogRoot,
        catalog_head_key, check_head_record,
    },
    catalog_parts::{self, CatalogFile, CatalogPart, MAX_CATALOG_PART_BYTES, catalog_part_hash},
    delegation::{Delegation, DelegationError, DelegationScope, MAX_DELEGATION_BODY_BYTES},
    encoding::{self, DecodeError},
    manifest::{
        FileEntry, Licence, MAX_CHUNK_SIZE, MAX_FILE_SIZE, MAX_TITLE_BYTES, MIN_CHUNK_SIZE,
        Manifest, ManifestError, Region, VerifiedManifest,
    },
    merkle::{AuditPath, MAX_AUDIT_PATH_LEN},
    path::{PathError, SafePath},
    policy::{
        CLOCK_SKEW_SECONDS, CatalogAcceptance, CatalogRejection, CatalogSet, PolicyInputs, Refusal,
        RefusalReason, Territory, TrustStore, TrustedPublisher, evaluate,
    },
    signed::{EnvelopeError, Signed, SignedDelegation, SignedKind},
    wire::{
        self, Bitfield, MAX_CONTACT_ADDRS, MAX_CONTACT_BYTES, MAX_DETAIL_BYTES,
        MAX_EXCHANGED_PEERS, MAX_FRAME_BYTES, PeerContact, RequestId, Response, ResponseFrame,
        WireError, decode_request, decode_response, encode_response_header,
    },
};
use serde::Serialize;

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// 2027-01-15T08:00:00Z: the licence and delegation start.
const START: Timestamp = Timestamp(1_800_000_000);
/// 30 days later: the licence and delegation end (exclusive).
const END: Timestamp = Timestamp(1_800_000_000 + 30 * 86_400);
/// A day into the window.
const NOW: Timestamp = Timestamp(1_800_000_000 + 86_400);

fn publisher_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn delegate_key() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

fn stranger_key() -> SecretKey {
    SecretKey::from_seed(&[3; 32])
}

fn other_publisher_key() -> SecretKey {
    SecretKey::from_seed(&[4; 32])
}

fn publisher() -> PublicKey {
    publisher_key().public_key()
}

fn region(code: &str) -> Region {
    code.parse().unwrap()
}

fn file(path: &str) -> FileEntry {
    FileEntry {
        path: SafePath::new(path).unwrap(),
        size: 5_000_000,
        root: MerkleHash([0xaa; 32]),
    }
}

/// A valid manifest of `publisher`: worldwide, from START to END.
fn manifest_of(publisher: PublicKey) -> Manifest {
    Manifest {
        version: 1,
        publisher,
        title: "Film: Part 1".into(),
        description: None,
        created_at: START,
        chunk_size: 1 << 20,
        files: vec![file("film/part1.mkv"), file("film/part1.srt")],
        licence: Licence {
            terms: "Shared with the rights holder's permission".into(),
            not_before: START,
            not_after: Some(END),
            regions: vec![],
        },
        encryption: None,
    }
}

fn manifest() -> Manifest {
    manifest_of(publisher())
}

fn signed_by_publisher(manifest: &Manifest) -> VerifiedManifest {
    manifest.sign(&publisher_key(), None).unwrap()
}

/// The publisher's delegation to the delegate over START..END.
fn delegation(scope: DelegationScope) -> Delegation {
    Delegation {
        publisher: publisher(),
        delegate: delegate_key().public_key(),
        not_before: START,
        not_after: END,
        scope,
    }
}

fn carried(delegation: &Delegation, signer: &SecretKey) -> SignedDelegation {
    delegation.sign(signer).into_carried_delegation().unwrap()
}

/// The manifest signed by the delegate under an all-manifests delegation.
fn signed_by_delegate(manifest: &Manifest) -> VerifiedManifest {
    let carried = carried(&delegation(DelegationScope::AllManifests), &publisher_key());
    manifest.sign(&delegate_key(), Some(carried)).unwrap()
}

/// Signs an arbitrary body as `kind` (bypassing the validating `sign` helpers).
fn sign_raw<T: Serialize>(kind: SignedKind, body: &T, key: &SecretKey) -> Signed {
    Signed::sign(kind, encoding::encode(body), key, None)
}

/// A format-2 catalog file of `body` exactly as given (neither put in order nor checked), its
/// root signed by `key`, carrying `delegation`.
fn raw_catalog_file(
    body: &Catalog,
    key: &SecretKey,
    delegation: Option<SignedDelegation>,
) -> Vec<u8> {
    let split = catalog_parts::split(body).unwrap();
    let root = Signed::sign(
        SignedKind::CatalogRoot,
        encoding::encode(&split.root),
        key,
        delegation,
    );
    encoding::encode(&CatalogFile {
        format: 2,
        root: root.encode(),
        parts: split.parts.into_values().collect(),
    })
}

fn catalog(sequence: u64) -> Catalog {
    Catalog {
        publisher: publisher(),
        sequence,
        issued_at: START,
        expires_at: END,
        entries: vec![],
        revoked_manifests: vec![],
        revoked_delegates: vec![],
        revoked_licences: Vec::new(),
    }
}

fn listing(ids: &[ManifestId]) -> Vec<CatalogEntry> {
    ids.iter()
        .map(|id| CatalogEntry {
            manifest_id: *id,
            title: "listed".into(),
        })
        .collect()
}

fn trusting(publisher: PublicKey, require_catalog: bool) -> TrustStore {
    let mut trust = TrustStore::new();
    trust.insert(
        publisher,
        TrustedPublisher {
            name: Some("Studio".into()),
            require_catalog,
        },
    );
    trust
}

fn catalogs_with(catalog: Catalog) -> CatalogSet {
    let mut set = CatalogSet::new();
    let verified = catalog.sign(&publisher_key()).unwrap();
    set.accept(&trusting(publisher(), false), START, verified)
        .unwrap();
    set
}

/// The policy's answer for `manifest` at `now`, about `territory`.
fn evaluate_with(
    manifest: &VerifiedManifest,
    trust: &TrustStore,
    catalogs: &CatalogSet,
    now: Timestamp,
    territory: Territory,
) -> Result<(), Refusal> {
    evaluate(
        &PolicyInputs {
            trust,
            catalogs,
            now,
            territory,
        },
        manifest,
    )
}

/// The policy's answer for a trusted publisher, no catalogs, as a holder (no region).
fn evaluate_at(manifest: &VerifiedManifest, now: Timestamp) -> Result<(), Refusal> {
    evaluate_with(
        manifest,
        &trusting(publisher(), false),
        &CatalogSet::new(),
        now,
        Territory::Holder,
    )
}

/// Asserts a refusal with `reason` whose message contains every one of `names`.
#[track_caller]
fn assert_refused(result: Result<(), Refusal>, reason: RefusalReason, names: &[&str]) {
    let refusal = result.expect_err("the policy allowed what it must refuse");
    assert_eq!(refusal.reason, reason, "{refusal}");
    let message = refusal.to_string();
    assert!(message.contains(reason.describe()), "{message}");
    for name in names {
        assert!(message.contains(name), "{message:?} does not name {name:?}");
    }
}

#[track_caller]
fn assert_names(error: &impl std::fmt::Display, names: &[&str]) {
    let message = error.to_string();
    for name in names {
        assert!(message.contains(name), "{message:?} does not name {name:?}");
    }
}

/// A manifest body with raw strings where [`Manifest`] has validated types, field for field the
/// same layout, to sign bodies that [`SafePath::new`] and [`Region`] would not let us build.
#[derive(Serialize)]
struct RawManifest {
    version: u32,
    publisher: PublicKey,
    title: String,
    description: Option<String>,
    created_at: Timestamp,
    chunk_size: u32,
    files: Vec<RawFile>,
    licence: RawLicence,
}

#[derive(Serialize)]
struct RawFile {
    path: String,
    size: u64,
    root: MerkleHash,
}

#[derive(Serialize)]
struct RawLicence {
    terms: String,
    not_before: Timestamp,
    not_after: Option<Timestamp>,
    regions: Vec<String>,
}

impl From<&Manifest> for RawManifest {
    fn from(m: &Manifest) -> Self {
        RawManifest {
            version: m.version,
            publisher: m.publisher,
            title: m.title.clone(),
            description: m.description.clone(),
            created_at: m.created_at,
            chunk_size: m.chunk_size,
            files: m
                .files
                .iter()
                .map(|f| RawFile {
                    path: f.path.to_string(),
                    size: f.size,
                    root: f.root,
                })
                .collect(),
            licence: RawLicence {
                terms: m.licence.terms.clone(),
                not_before: m.licence.not_before,
                not_after: m.licence.not_after,
                regions: m.licence.regions.iter().map(Region::to_string).collect(),
            },
        }
    }
}

/// The fixture manifest as a raw body with these file paths, signed by the publisher.
fn raw_manifest_with_paths(paths: &[&str]) -> Signed {
    let mut raw = RawManifest::from(&manifest());
    raw.files = paths
        .iter()
        .map(|path| RawFile {
            path: (*path).to_owned(),
            size: 1,
            root: MerkleHash([0xbb; 32]),
        })
        .collect();
    sign_raw(SignedKind::Manifest, &raw, &publisher_key())
}

#[test]
fn the_raw_mirror_encodes_exactly_like_a_manifest() {
    // Guards every test below that signs a RawManifest: same bytes for the same contents.
    let mut with_everything = manifest();
    with_everything.description = Some("d".into());
    with_everything.licence.regions = vec![region("FR"), region("DE")];
    assert_eq!(
        encoding::encode(&RawManifest::from(&with_everything)),
        encoding::encode(&with_everything)
    );
    let signed = raw_manifest_with_paths(&["a", "b/c"]);
    VerifiedManifest::verify(signed).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Signatures and envelopes.

#[test]
fn tampered_manifest_body_fails_its_signature() {
    let signed = signed_by_publisher(&manifest());
    let mut envelope = signed.envelope().clone();
    // "Film: Part 1" → "Film: Part 2": the body still decodes; only the signature can tell.
    let at = envelope
        .body
        .windows(6)
        .position(|w| w == b"Part 1")
        .unwrap();
    envelope.body[at + 5] = b'2';
    assert!(encoding::decode::<Manifest>("manifest body", &envelope.body, 1 << 20).is_ok());

    let expected = ManifestError::Envelope(EnvelopeError::BadSignature {
        kind: "manifest",
        signer: publisher(),
    });
    let err = VerifiedManifest::from_bytes(&envelope.encode()).unwrap_err();
    assert_eq!(err, expected);
    assert_eq!(
        err.to_string(),
        format!("the manifest signature by {} is not valid", publisher())
    );
    assert_eq!(VerifiedManifest::verify(envelope).unwrap_err(), expected);
}

#[test]
fn tampered_catalog_and_head_fail_their_signatures() {
    let verified = catalog(1).sign(&publisher_key()).unwrap();
    let mut envelope = Signed::decode(verified.root().envelope_bytes()).unwrap();
    envelope.body[33] = 2; // sequence 1 → 2 (after the format byte and the publisher)
    let err = VerifiedCatalogRoot::from_bytes(&envelope.encode()).unwrap_err();
    assert_eq!(
        err,
        CatalogError::Envelope(EnvelopeError::BadSignature {
            kind: "catalog-root",
            signer: publisher(),
        })
    );
    assert_names(&err, &["catalog-root signature", &publisher().to_hex()]);

    let head = verified.head(&publisher_key()).unwrap();
    let mut envelope = Signed::decode(head.envelope_bytes()).unwrap();
    envelope.body[32] = 2;
    let err = VerifiedCatalogHead::from_bytes(&envelope.encode()).unwrap_err();
    assert_eq!(
        err,
        CatalogError::Envelope(EnvelopeError::BadSignature {
            kind: "catalog-head",
            signer: publisher(),
        })
    );
}

#[test]
fn tampered_carried_delegation_fails_its_signature() {
    let mut carried = carried(&delegation(DelegationScope::AllManifests), &publisher_key());
    // Stretch the window's end: the body still decodes, the publisher never signed it.
    let mut body: Delegation = encoding::decode("delegation", &carried.body, 4096).unwrap();
    body.not_after = Timestamp(i64::MAX);
    carried.body = encoding::encode(&body);
    let err = manifest().sign(&delegate_key(), Some(carried)).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Delegation(DelegationError::Envelope(EnvelopeError::BadSignature {
            kind: "delegation",
            signer: publisher(),
        }))
    );
    assert_names(&err, &["delegation signature", &publisher().to_hex()]);
}

#[test]
fn a_signature_of_one_kind_does_not_verify_as_another() {
    let key = publisher_key();
    let manifest_envelope = signed_by_publisher(&manifest()).envelope().clone();
    let delegation_envelope = delegation(DelegationScope::AllManifests).sign(&key);
    let catalog = catalog(1).sign(&key).unwrap();
    let catalog_envelope = Signed::decode(catalog.root().envelope_bytes()).unwrap();
    let relabel = |envelope: &Signed, kind| Signed {
        kind,
        ..envelope.clone()
    };

    // A delegation re-labelled as a manifest: refused on the signature, before its body is
    // even decoded.
    assert_eq!(
        VerifiedManifest::verify(relabel(&delegation_envelope, SignedKind::Manifest)).unwrap_err(),
        ManifestError::Envelope(EnvelopeError::BadSignature {
            kind: "manifest",
            signer: publisher(),
        })
    );
    // A manifest re-labelled as a catalog, a catalog as a catalog head, a delegation as a head.
    assert_eq!(
        VerifiedCatalogRoot::from_bytes(
            &relabel(&manifest_envelope, SignedKind::CatalogRoot).encode()
        )
        .unwrap_err(),
        CatalogError::Envelope(EnvelopeError::BadSignature {
            kind: "catalog-root",
            signer: publisher(),
        })
    );
    assert_eq!(
        VerifiedCatalogHead::from_bytes(
            &relabel(&catalog_envelope, SignedKind::CatalogHead).encode()
        )
        .unwrap_err(),
        CatalogError::Envelope(EnvelopeError::BadSignature {
            kind: "catalog-head",
            signer: publisher(),
        })
    );
    assert_eq!(
        VerifiedCatalogHead::from_bytes(
            &relabel(&delegation_envelope, SignedKind::CatalogHead).encode()
        )
        .unwrap_err(),
        CatalogError::Envelope(EnvelopeError::BadSignature {
            kind: "catalog-head",
            signer: publisher(),
        })
    );
}

#[test]
fn a_catalog_head_whose_bytes_are_also_a_delegation_is_not_a_delegation() {
    // A head body chosen so that the same bytes also decode as a well-formed delegation from
    // the publisher (sequence 300 takes two bytes; the hash's last bytes become the window
    // 1..2 and scope "all manifests"). Only the kind inside the signed message keeps the
    // publisher's head signature from being replayed as a delegation.
    let mut hash = [0x44; 32];
    hash[29] = 0x02; // not_before: zigzag 1
    hash[30] = 0x04; // not_after: zigzag 2
    hash[31] = 0x00; // scope: AllManifests
    let head = CatalogHead {
        publisher: publisher(),
        sequence: 300,
        expires_at: Timestamp(0),
        catalog_hash: licet_proto::CatalogHash(hash),
    };
    let envelope = sign_raw(SignedKind::CatalogHead, &head, &publisher_key());
    VerifiedCatalogHead::from_bytes(&envelope.encode()).unwrap();
    let as_delegation: Delegation =
        encoding::decode("delegation body", &envelope.body, MAX_DELEGATION_BODY_BYTES).unwrap();
    assert_eq!(as_delegation.publisher, publisher());
    assert_eq!(as_delegation.scope, DelegationScope::AllManifests);
    assert!(as_delegation.not_before < as_delegation.not_after);

    let replayed = Signed {
        kind: SignedKind::Delegation,
        ..envelope
    };
    let err = Delegation::verify_envelope(&replayed).unwrap_err();
    assert_eq!(
        err,
        DelegationError::Envelope(EnvelopeError::BadSignature {
            kind: "delegation",
            signer: publisher(),
        })
    );
    assert_names(&err, &["delegation signature", "not valid"]);
}

#[test]
fn an_envelope_of_another_kind_is_named() {
    let bytes = delegation(DelegationScope::AllManifests)
        .sign(&publisher_key())
        .encode();
    let err = VerifiedManifest::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Envelope(EnvelopeError::WrongKind {
            expected: "manifest",
            found: "delegation",
        })
    );
    assert_eq!(
        err.to_string(),
        "expected a signed manifest, found a signed delegation"
    );
    let err = VerifiedCatalog::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        err,
        CatalogError::Envelope(EnvelopeError::WrongKind {
            expected: "catalog",
            found: "delegation",
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Trust policy.

#[test]
fn untrusted_publisher() {
    let manifest = signed_by_publisher(&manifest());
    let only_another = trusting(other_publisher_key().public_key(), false);
    assert_refused(
        evaluate_with(
            &manifest,
            &only_another,
            &CatalogSet::new(),
            NOW,
            Territory::Holder,
        ),
        RefusalReason::UntrustedPublisher,
        &[&publisher().to_hex(), "trust store"],
    );
    assert_refused(
        evaluate_with(
            &manifest,
            &TrustStore::new(),
            &CatalogSet::new(),
            NOW,
            Territory::Holder,
        ),
        RefusalReason::UntrustedPublisher,
        &[&publisher().to_hex()],
    );
    // Removing a trusted publisher takes effect at once.
    let mut trust = trusting(publisher(), false);
    assert!(
        evaluate_with(
            &manifest,
            &trust,
            &CatalogSet::new(),
            NOW,
            Territory::Holder
        )
        .is_ok()
    );
    assert!(trust.remove(&publisher()));
    assert_refused(
        evaluate_with(
            &manifest,
            &trust,
            &CatalogSet::new(),
            NOW,
            Territory::Holder,
        ),
        RefusalReason::UntrustedPublisher,
        &[],
    );
}

#[test]
fn licence_not_yet_valid_until_five_minutes_before_its_start() {
    assert_eq!(CLOCK_SKEW_SECONDS, 300);
    let manifest = signed_by_publisher(&manifest());
    assert_refused(
        evaluate_at(&manifest, START.plus_seconds(-301)),
        RefusalReason::NotYetValid,
        &[
            "licence starts at 2027-01-15T08:00:00Z",
            "2027-01-15T07:54:59Z",
        ],
    );
    assert_refused(
        evaluate_at(&manifest, Timestamp(0)),
        RefusalReason::NotYetValid,
        &["1970-01-01T00:00:00Z"],
    );
    assert_eq!(evaluate_at(&manifest, START.plus_seconds(-300)), Ok(()));
    assert_eq!(evaluate_at(&manifest, START), Ok(()));
}

#[test]
fn licence_ends_exactly_at_its_end() {
    let manifest = signed_by_publisher(&manifest());
    assert_eq!(evaluate_at(&manifest, END.plus_seconds(-1)), Ok(()));
    // No skew at the end: a time-limited release ends on the second.
    assert_refused(
        evaluate_at(&manifest, END),
        RefusalReason::Expired,
        &[
            "licence ended at 2027-02-14T08:00:00Z",
            "it is 2027-02-14T08:00:00Z",
        ],
    );
    assert_refused(
        evaluate_at(&manifest, END.plus_seconds(86_400)),
        RefusalReason::Expired,
        &[],
    );
}

#[test]
fn licence_without_an_end_never_expires() {
    let mut open_ended = manifest();
    open_ended.licence.not_after = None;
    let manifest = signed_by_publisher(&open_ended);
    assert_eq!(evaluate_at(&manifest, Timestamp(i64::MAX)), Ok(()));
}

#[test]
fn region_not_licensed_fails_closed_where_a_user_gets_the_bytes() {
    let mut regional = manifest();
    regional.licence.regions = vec![region("FR"), region("DE")];
    let regional = signed_by_publisher(&regional);
    let trust = trusting(publisher(), false);
    let catalogs = CatalogSet::new();
    let check = |territory| evaluate_with(&regional, &trust, &catalogs, NOW, territory);

    // Fetching: the node's own region must be listed; a node without one is refused.
    assert_refused(
        check(Territory::Fetcher(Some(region("US")))),
        RefusalReason::RegionNotLicensed,
        &["this node is in US", "FR,DE"],
    );
    assert_refused(
        check(Territory::Fetcher(None)),
        RefusalReason::RegionNotLicensed,
        &["this node has no region", "FR,DE", "--region"],
    );
    // Serving a chunk: the requester's stated region must be listed; stating none is refused.
    assert_refused(
        check(Territory::Requester(Some(region("US")))),
        RefusalReason::RegionNotLicensed,
        &["the requester is in US", "FR,DE"],
    );
    assert_refused(
        check(Territory::Requester(None)),
        RefusalReason::RegionNotLicensed,
        &["the requester stated no region", "FR,DE"],
    );
    for listed in ["FR", "DE", "fr"] {
        assert_eq!(
            check(Territory::Fetcher(Some(region(listed)))),
            Ok(()),
            "{listed}"
        );
        assert_eq!(
            check(Territory::Requester(Some(region(listed)))),
            Ok(()),
            "{listed}"
        );
    }
    // Holding, announcing and describing content hand no bytes to a user: no region applies.
    assert_eq!(check(Territory::Holder), Ok(()));

    // A licence without regions is worldwide, for everyone, stated region or not.
    let worldwide = signed_by_publisher(&manifest());
    for territory in [
        Territory::Fetcher(None),
        Territory::Fetcher(Some(region("US"))),
        Territory::Requester(None),
        Territory::Requester(Some(region("US"))),
        Territory::Holder,
    ] {
        assert_eq!(
            evaluate_with(&worldwide, &trust, &catalogs, NOW, territory),
            Ok(()),
            "{territory:?}"
        );
    }
}

#[test]
fn revoked_manifest() {
    let manifest = signed_by_publisher(&manifest());
    let mut revoking = catalog(1);
    revoking.revoked_manifests = vec![manifest.id()];
    assert_refused(
        evaluate_with(
            &manifest,
            &trusting(publisher(), false),
            &catalogs_with(revoking),
            NOW,
            Territory::Holder,
        ),
        RefusalReason::Revoked,
        &[&manifest.id().to_hex(), &publisher().to_hex()],
    );
    // A catalog that revokes something else does not.
    let mut other = catalog(1);
    other.revoked_manifests = vec![ManifestId([0x33; 32])];
    assert_eq!(
        evaluate_with(
            &manifest,
            &trusting(publisher(), false),
            &catalogs_with(other),
            NOW,
            Territory::Holder
        ),
        Ok(())
    );
}

#[test]
fn revoked_delegate() {
    let by_delegate = signed_by_delegate(&manifest());
    let by_publisher = signed_by_publisher(&manifest());
    let mut revoking = catalog(1);
    revoking.revoked_delegates = vec![delegate_key().public_key()];
    let catalogs = catalogs_with(revoking);
    let trust = trusting(publisher(), false);
    assert_refused(
        evaluate_with(&by_delegate, &trust, &catalogs, NOW, Territory::Holder),
        RefusalReason::DelegateRevoked,
        &[
            &format!("delegate {}", delegate_key().public_key()),
            &publisher().to_hex(),
        ],
    );
    // The same manifest signed by the publisher itself is unaffected.
    assert_eq!(
        evaluate_with(&by_publisher, &trust, &catalogs, NOW, Territory::Holder),
        Ok(())
    );
}

#[test]
fn delegation_window_over_or_not_begun() {
    let by_delegate = signed_by_delegate(&manifest());
    let delegate = delegate_key().public_key().to_hex();
    assert_eq!(evaluate_at(&by_delegate, END.plus_seconds(-1)), Ok(()));
    assert_refused(
        evaluate_at(&by_delegate, END),
        RefusalReason::DelegationNotValidNow,
        &[
            &format!("delegation to {delegate}"),
            "valid from 2027-01-15T08:00:00Z to 2027-02-14T08:00:00Z",
        ],
    );
    // The start has the same five minutes of skew as a licence.
    assert_eq!(evaluate_at(&by_delegate, START.plus_seconds(-300)), Ok(()));
    assert_refused(
        evaluate_at(&by_delegate, START.plus_seconds(-301)),
        RefusalReason::DelegationNotValidNow,
        &[&delegate],
    );
}

#[test]
fn delegation_window_is_checked_before_the_licence_window() {
    // A delegation that ended while the licence still runs refuses the delegate's manifest.
    let mut short = delegation(DelegationScope::AllManifests);
    short.not_after = START.plus_seconds(3600);
    let manifest = manifest()
        .sign(&delegate_key(), Some(carried(&short, &publisher_key())))
        .unwrap();
    assert_refused(
        evaluate_at(&manifest, NOW),
        RefusalReason::DelegationNotValidNow,
        &["2027-01-15T09:00:00Z"],
    );
}

#[test]
fn delegation_by_the_wrong_publisher() {
    // Another publisher delegates to our delegate, who signs a manifest of our publisher.
    let other = other_publisher_key();
    let foreign = Delegation {
        publisher: other.public_key(),
        ..delegation(DelegationScope::AllManifests)
    };
    let err = manifest()
        .sign(&delegate_key(), Some(carried(&foreign, &other)))
        .unwrap_err();
    assert_eq!(
        err,
        ManifestError::DelegationWrongPublisher {
            manifest_publisher: publisher(),
            delegation_publisher: other.public_key(),
        }
    );
    assert_names(&err, &[&publisher().to_hex(), &other.public_key().to_hex()]);
}

#[test]
fn delegation_not_signed_by_the_publisher_it_names() {
    // A delegation naming our publisher, signed by someone else.
    let forged = carried(&delegation(DelegationScope::AllManifests), &stranger_key());
    let err = manifest().sign(&delegate_key(), Some(forged)).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Delegation(DelegationError::NotSignedByPublisher {
            publisher: publisher(),
            signer: stranger_key().public_key(),
        })
    );
    assert_names(
        &err,
        &[&publisher().to_hex(), &stranger_key().public_key().to_hex()],
    );
}

#[test]
fn delegation_to_another_key() {
    // A genuine delegation to the delegate, carried by a manifest a stranger signed.
    let genuine = carried(&delegation(DelegationScope::AllManifests), &publisher_key());
    let err = manifest().sign(&stranger_key(), Some(genuine)).unwrap_err();
    assert_eq!(
        err,
        ManifestError::DelegationWrongDelegate {
            delegate: delegate_key().public_key(),
            signer: stranger_key().public_key(),
        }
    );
    assert_names(
        &err,
        &[
            &delegate_key().public_key().to_hex(),
            &stranger_key().public_key().to_hex(),
        ],
    );
}

#[test]
fn delegation_out_of_scope() {
    let scope = DelegationScope::TitlePrefix("Series ".into());
    let err = manifest()
        .sign(
            &delegate_key(),
            Some(carried(&delegation(scope.clone()), &publisher_key())),
        )
        .unwrap_err();
    assert_eq!(
        err,
        ManifestError::OutOfScope {
            scope,
            title: "Film: Part 1".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "the delegation covers manifests titled \"Series \"…, not a manifest titled \"Film: Part 1\""
    );
    // The prefix matches bytes exactly: a case change is out of scope, the right prefix is in.
    for (prefix, allowed) in [("film", false), ("Film:", true), ("", true)] {
        let scope = DelegationScope::TitlePrefix(prefix.into());
        let result = manifest().sign(
            &delegate_key(),
            Some(carried(&delegation(scope), &publisher_key())),
        );
        assert_eq!(result.is_ok(), allowed, "{prefix:?}: {result:?}");
    }
}

#[test]
fn delegate_signature_without_a_delegation_and_publisher_signature_with_one() {
    let err = manifest().sign(&delegate_key(), None).unwrap_err();
    assert_eq!(
        err,
        ManifestError::DelegationMissing {
            publisher: publisher(),
            signer: delegate_key().public_key(),
        }
    );
    assert_names(&err, &["without a delegation", &publisher().to_hex()]);

    let genuine = carried(&delegation(DelegationScope::AllManifests), &publisher_key());
    assert_eq!(
        manifest()
            .sign(&publisher_key(), Some(genuine))
            .unwrap_err(),
        ManifestError::UnexpectedDelegation
    );
}

#[test]
fn delegation_invalid_in_itself() {
    let mut empty_window = delegation(DelegationScope::AllManifests);
    empty_window.not_after = empty_window.not_before;
    let err = manifest()
        .sign(
            &delegate_key(),
            Some(carried(&empty_window, &publisher_key())),
        )
        .unwrap_err();
    assert_eq!(
        err,
        ManifestError::Delegation(DelegationError::EmptyWindow {
            not_before: START,
            not_after: START,
        })
    );
    assert_names(
        &err,
        &["delegation window is empty", "2027-01-15T08:00:00Z"],
    );

    let long = delegation(DelegationScope::TitlePrefix("x".repeat(257)));
    let err = Delegation::verify_envelope(&long.sign(&publisher_key())).unwrap_err();
    assert_eq!(err, DelegationError::ScopeTooLong(257));
    assert_names(&err, &["257 bytes"]);

    // A stand-alone delegation may not carry a delegation of its own (one level only).
    let nested = Signed {
        delegation: Some(carried(
            &delegation(DelegationScope::AllManifests),
            &publisher_key(),
        )),
        ..delegation(DelegationScope::AllManifests).sign(&publisher_key())
    };
    assert!(matches!(
        Delegation::verify_envelope(&nested),
        Err(DelegationError::Envelope(EnvelopeError::WrongKind { .. }))
    ));
}

// ---------------------------------------------------------------------------------------------
// Catalogs.

/// The head of `catalog(sequence)` (optionally revoking one more manifest, so two heads of one
/// sequence differ), as DHT record bytes.
fn head_record(sequence: u64, variant: u8) -> Vec<u8> {
    let mut body = catalog(sequence);
    if variant != 0 {
        body.revoked_manifests = vec![ManifestId([variant; 32])];
    }
    let verified = body.sign(&publisher_key()).unwrap();
    verified
        .head(&publisher_key())
        .unwrap()
        .envelope_bytes()
        .to_vec()
}

#[test]
fn dht_head_records_are_checked_before_they_are_stored() {
    let key = catalog_head_key(&publisher()).0;
    let five = head_record(5, 0);
    let head = check_head_record(&key, &five, None, NOW).unwrap();
    assert_eq!(head.head().sequence, 5);
    // The same bytes again, or a higher sequence, over a stored head.
    check_head_record(&key, &five, Some(&five), NOW).unwrap();
    check_head_record(&key, &head_record(6, 0), Some(&five), NOW).unwrap();

    // Oversize: refused before decoding.
    let big = vec![0u8; 64 * 1024];
    assert!(matches!(
        check_head_record(&key, &big, None, NOW),
        Err(HeadRecordRejection::Oversize { len: 65536, .. })
    ));
    // Junk, a forged signature, a head signed by a stranger in the publisher's name.
    assert!(matches!(
        check_head_record(&key, b"junk", None, NOW),
        Err(HeadRecordRejection::Invalid(_))
    ));
    let mut forged = Signed::decode(&five).unwrap();
    forged.signature.0[0] ^= 1;
    assert!(matches!(
        check_head_record(&key, &forged.encode(), None, NOW),
        Err(HeadRecordRejection::Invalid(_))
    ));
    let head_body = Signed::decode(&five).unwrap().body;
    let by_stranger = Signed::sign(SignedKind::CatalogHead, head_body, &stranger_key(), None);
    assert!(matches!(
        check_head_record(&key, &by_stranger.encode(), None, NOW),
        Err(HeadRecordRejection::Invalid(
            CatalogError::NotSignedByPublisher { .. }
        ))
    ));
    // Another publisher's key: a valid head under the wrong key.
    let other_key = catalog_head_key(&other_publisher_key().public_key()).0;
    let err = check_head_record(&other_key, &five, None, NOW).unwrap_err();
    assert_eq!(
        err,
        HeadRecordRejection::WrongKey {
            publisher: publisher()
        }
    );
    // Expired at its catalog's expiry.
    let err = check_head_record(&key, &five, None, END).unwrap_err();
    assert!(matches!(
        err,
        HeadRecordRejection::Expired { sequence: 5, .. }
    ));
    assert_names(&err, &["expired", &publisher().to_hex()]);
    // Lower sequence than stored; equal sequence, other bytes.
    let err = check_head_record(&key, &head_record(4, 0), Some(&five), NOW).unwrap_err();
    assert_eq!(
        err,
        HeadRecordRejection::LowerSequence {
            publisher: publisher(),
            offered: 4,
            stored: 5
        }
    );
    assert_names(&err, &["4", "below", "5"]);
    assert!(matches!(
        check_head_record(&key, &head_record(5, 7), Some(&five), NOW),
        Err(HeadRecordRejection::EqualSequenceDifferentBytes { sequence: 5, .. })
    ));
    // A stored value that does not verify does not protect anything.
    check_head_record(&key, &head_record(1, 0), Some(b"damaged"), NOW).unwrap();
}

#[test]
fn catalog_rollback_is_refused() {
    let trust = trusting(publisher(), false);
    let mut set = CatalogSet::new();
    let five = catalog(5).sign(&publisher_key()).unwrap();
    assert_eq!(
        set.accept(&trust, NOW, five.clone()),
        Ok(CatalogAcceptance::Accepted { previous: None })
    );
    let four = catalog(4).sign(&publisher_key()).unwrap();
    let err = set.accept(&trust, NOW, four.clone()).unwrap_err();
    assert_eq!(
        err,
        CatalogRejection::Rollback {
            publisher: publisher(),
            offered: 4,
            accepted: 5,
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "catalog 4 of {} is older than the accepted catalog 5 (rollback refused)",
            publisher()
        )
    );
    assert_eq!(set.newest(&publisher()).unwrap().catalog().sequence, 5);
    // A head announcing the older catalog is not followed either.
    assert_eq!(
        set.head_is_newer(&trust, NOW, &four.head(&publisher_key()).unwrap()),
        Err(CatalogRejection::Rollback {
            publisher: publisher(),
            offered: 4,
            accepted: 5,
        })
    );
    // Even an expired newest catalog, restored after a restart, still blocks a rollback.
    let mut restored = CatalogSet::new();
    restored.restore(five);
    assert!(matches!(
        restored.accept(&trust, NOW, four),
        Err(CatalogRejection::Rollback { .. })
    ));
}

#[test]
fn equal_sequence_must_be_the_identical_catalog() {
    let trust = trusting(publisher(), false);
    let mut set = CatalogSet::new();
    let held = catalog(5).sign(&publisher_key()).unwrap();
    set.accept(&trust, NOW, held.clone()).unwrap();

    let mut different = catalog(5);
    different.revoked_manifests = vec![ManifestId([0x33; 32])];
    let different = different.sign(&publisher_key()).unwrap();
    let err = set.accept(&trust, NOW, different.clone()).unwrap_err();
    assert_eq!(
        err,
        CatalogRejection::EqualSequenceDifferentBytes {
            publisher: publisher(),
            sequence: 5,
        }
    );
    assert_names(&err, &["catalog 5", "differs", &publisher().to_hex()]);
    assert_eq!(set.newest(&publisher()).unwrap().hash(), held.hash());

    assert_eq!(
        set.accept(&trust, NOW, held.clone()),
        Ok(CatalogAcceptance::AlreadyHeld)
    );
    // Heads: the held catalog's head is not newer; a different one at the same sequence is
    // refused; a higher sequence is followed.
    assert_eq!(
        set.head_is_newer(&trust, NOW, &held.head(&publisher_key()).unwrap()),
        Ok(false)
    );
    assert!(matches!(
        set.head_is_newer(&trust, NOW, &different.head(&publisher_key()).unwrap()),
        Err(CatalogRejection::EqualSequenceDifferentBytes { sequence: 5, .. })
    ));
    let six = catalog(6).sign(&publisher_key()).unwrap();
    assert_eq!(
        set.head_is_newer(&trust, NOW, &six.head(&publisher_key()).unwrap()),
        Ok(true)
    );
    assert_eq!(
        set.accept(&trust, NOW, six),
        Ok(CatalogAcceptance::Accepted { previous: Some(5) })
    );
}

#[test]
fn expired_catalog_is_not_accepted() {
    let trust = trusting(publisher(), false);
    let mut set = CatalogSet::new();
    let catalog = catalog(3).sign(&publisher_key()).unwrap();
    let err = set.accept(&trust, END, catalog.clone()).unwrap_err();
    assert_eq!(
        err,
        CatalogRejection::Expired {
            publisher: publisher(),
            sequence: 3,
            expires_at: END,
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "catalog 3 of {} expired at 2027-02-14T08:00:00Z",
            publisher()
        )
    );
    assert!(set.newest(&publisher()).is_none());
    assert!(matches!(
        set.head_is_newer(&trust, END, &catalog.head(&publisher_key()).unwrap()),
        Err(CatalogRejection::Expired { .. })
    ));
    // One second earlier it is still valid.
    assert!(set.accept(&trust, END.plus_seconds(-1), catalog).is_ok());
}

#[test]
fn catalog_of_an_untrusted_publisher_is_not_accepted() {
    let mut set = CatalogSet::new();
    let catalog = catalog(1).sign(&publisher_key()).unwrap();
    let err = set
        .accept(&TrustStore::new(), NOW, catalog.clone())
        .unwrap_err();
    assert_eq!(err, CatalogRejection::UntrustedPublisher(publisher()));
    assert_names(&err, &["untrusted", &publisher().to_hex()]);
    assert!(matches!(
        set.head_is_newer(
            &TrustStore::new(),
            NOW,
            &catalog.head(&publisher_key()).unwrap()
        ),
        Err(CatalogRejection::UntrustedPublisher(_))
    ));
}

#[test]
fn require_catalog_without_any_catalog() {
    let manifest = signed_by_publisher(&manifest());
    assert_refused(
        evaluate_with(
            &manifest,
            &trusting(publisher(), true),
            &CatalogSet::new(),
            NOW,
            Territory::Holder,
        ),
        RefusalReason::NoValidCatalog,
        &[&publisher().to_hex(), "none is held"],
    );
    // Without require_catalog no catalog is needed.
    assert_eq!(evaluate_at(&manifest, NOW), Ok(()));
}

#[test]
fn require_catalog_with_an_expired_newest_catalog() {
    let manifest = signed_by_publisher(&manifest());
    let mut listing_catalog = catalog(2);
    listing_catalog.entries = listing(&[manifest.id()]);
    listing_catalog.expires_at = NOW;
    // Accepted while valid, then the clock passes its expiry.
    let mut set = CatalogSet::new();
    set.accept(
        &trusting(publisher(), true),
        START,
        listing_catalog.sign(&publisher_key()).unwrap(),
    )
    .unwrap();
    let trust = trusting(publisher(), true);
    assert_eq!(
        evaluate_with(
            &manifest,
            &trust,
            &set,
            NOW.plus_seconds(-1),
            Territory::Holder
        ),
        Ok(())
    );
    assert_refused(
        evaluate_with(&manifest, &trust, &set, NOW, Territory::Holder),
        RefusalReason::NoValidCatalog,
        &["newest catalog (2)", "expired at 2027-01-16T08:00:00Z"],
    );
}

#[test]
fn require_catalog_and_not_listed() {
    let manifest = signed_by_publisher(&manifest());
    let mut other = catalog(4);
    other.entries = listing(&[ManifestId([0x11; 32])]);
    let trust = trusting(publisher(), true);
    assert_refused(
        evaluate_with(
            &manifest,
            &trust,
            &catalogs_with(other),
            NOW,
            Territory::Holder,
        ),
        RefusalReason::NotInCatalog,
        &[&manifest.id().to_hex(), "catalog 4", &publisher().to_hex()],
    );
    let mut listed = catalog(4);
    listed.entries = listing(&[ManifestId([0x11; 32]), manifest.id()]);
    assert_eq!(
        evaluate_with(
            &manifest,
            &trust,
            &catalogs_with(listed),
            NOW,
            Territory::Holder
        ),
        Ok(())
    );
}

#[test]
fn catalog_signed_by_a_delegate_or_another_key_is_refused() {
    let body = catalog(1);
    let expected = |signer: &SecretKey| CatalogError::NotSignedByPublisher {
        publisher: publisher(),
        signer: signer.public_key(),
    };
    // A delegate, even with a genuine delegation.
    let by_delegate = raw_catalog_file(
        &body,
        &delegate_key(),
        Some(carried(
            &delegation(DelegationScope::AllManifests),
            &publisher_key(),
        )),
    );
    let err = VerifiedCatalog::from_bytes(&by_delegate).unwrap_err();
    assert_eq!(err, expected(&delegate_key()));
    assert_eq!(
        err.to_string(),
        format!(
            "a catalog of publisher {} must be signed by that key itself, not {}",
            publisher(),
            delegate_key().public_key()
        )
    );
    // A stranger.
    let by_stranger = raw_catalog_file(&body, &stranger_key(), None);
    assert_eq!(
        VerifiedCatalog::from_bytes(&by_stranger).unwrap_err(),
        expected(&stranger_key())
    );
    // The publisher, but carrying a delegation.
    let with_delegation = raw_catalog_file(
        &body,
        &publisher_key(),
        Some(carried(
            &delegation(DelegationScope::AllManifests),
            &publisher_key(),
        )),
    );
    assert_eq!(
        VerifiedCatalog::from_bytes(&with_delegation).unwrap_err(),
        expected(&publisher_key())
    );
    // The signing helpers refuse the wrong key up front.
    assert_eq!(
        body.clone().sign(&delegate_key()).unwrap_err(),
        expected(&delegate_key())
    );
    let verified = body.sign(&publisher_key()).unwrap();
    assert!(matches!(
        verified.head(&stranger_key()),
        Err(CatalogError::NotSignedByPublisher { .. })
    ));
    // A head signed by another key.
    let head = CatalogHead {
        publisher: publisher(),
        sequence: 1,
        expires_at: END,
        catalog_hash: verified.hash(),
    };
    let forged_head = sign_raw(SignedKind::CatalogHead, &head, &stranger_key());
    assert_eq!(
        VerifiedCatalogHead::from_bytes(&forged_head.encode()).unwrap_err(),
        expected(&stranger_key())
    );
}

#[test]
fn catalog_head_does_not_match_another_catalog() {
    let key = publisher_key();
    let a = catalog(5).sign(&key).unwrap();
    let mut b = catalog(5);
    b.entries = listing(&[ManifestId([0x11; 32])]);
    let b = b.sign(&key).unwrap();
    let head_a = a.head(&key).unwrap();
    assert!(head_a.matches(&a));
    assert!(
        !head_a.matches(&b),
        "same publisher and sequence, other bytes"
    );
    // Another publisher's catalog with the same sequence.
    let other = other_publisher_key();
    let foreign = Catalog {
        publisher: other.public_key(),
        ..catalog(5)
    }
    .sign(&other)
    .unwrap();
    assert!(!head_a.matches(&foreign));
    // A head with the right hash but a sequence or expiry that the catalog does not have.
    for head in [
        CatalogHead {
            publisher: publisher(),
            sequence: 6,
            expires_at: END,
            catalog_hash: a.hash(),
        },
        CatalogHead {
            publisher: publisher(),
            sequence: 5,
            expires_at: END.plus_seconds(1),
            catalog_hash: a.hash(),
        },
    ] {
        let signed = sign_raw(SignedKind::CatalogHead, &head, &key);
        let head = VerifiedCatalogHead::from_bytes(&signed.encode()).unwrap();
        assert!(!head.matches(&a), "{:?}", head.head());
    }
}

#[test]
fn catalog_lists_must_be_strictly_ascending() {
    let key = publisher_key();
    let cases: Vec<(Catalog, &str, usize)> = vec![
        (
            Catalog {
                entries: listing(&[ManifestId([0x22; 32]), ManifestId([0x11; 32])]),
                ..catalog(1)
            },
            "entries",
            1,
        ),
        (
            Catalog {
                entries: listing(&[
                    ManifestId([0x11; 32]),
                    ManifestId([0x22; 32]),
                    ManifestId([0x22; 32]),
                ]),
                ..catalog(1)
            },
            "entries",
            2,
        ),
        (
            Catalog {
                revoked_manifests: vec![ManifestId([0x33; 32]), ManifestId([0x33; 32])],
                ..catalog(1)
            },
            "revoked manifests",
            1,
        ),
        (
            Catalog {
                revoked_delegates: vec![stranger_key().public_key(), delegate_key().public_key()],
                ..catalog(1)
            },
            "revoked delegates",
            1,
        ),
        (
            Catalog {
                revoked_licences: vec![LicenceId([0x44; 32]), LicenceId([0x44; 32])],
                ..catalog(1)
            },
            "revoked licences",
            1,
        ),
    ];
    // (The stranger's key sorts after the delegate's.)
    assert!(stranger_key().public_key() > delegate_key().public_key());
    for (body, list, position) in cases {
        let file = raw_catalog_file(&body, &key, None);
        let err = VerifiedCatalog::from_bytes(&file).unwrap_err();
        assert_eq!(err, CatalogError::NotSorted { list, position });
        assert_eq!(
            err.to_string(),
            format!(
                "catalog {list} are not strictly ascending (duplicate or out of order at position {position})"
            )
        );
        // Catalog::sign puts the lists in order before signing, so the tool never writes one.
        body.sign(&key).unwrap();
    }
}

#[test]
fn catalog_invalid_in_itself() {
    let key = publisher_key();
    let id = ManifestId([0x11; 32]);
    let both = Catalog {
        entries: listing(&[id]),
        revoked_manifests: vec![id],
        ..catalog(1)
    };
    let err = both.clone().sign(&key).unwrap_err();
    assert_eq!(err, CatalogError::ListedAndRevoked(id));
    assert_names(&err, &[&id.to_hex(), "both listed and revoked"]);

    let backwards = Catalog {
        expires_at: START,
        ..catalog(1)
    };
    let file = raw_catalog_file(&backwards, &key, None);
    assert_eq!(
        VerifiedCatalog::from_bytes(&file).unwrap_err(),
        CatalogError::EmptyWindow {
            issued_at: START,
            expires_at: START,
        }
    );

    let long_title = Catalog {
        entries: vec![CatalogEntry {
            manifest_id: id,
            title: "t".repeat(MAX_ENTRY_TITLE_BYTES + 1),
        }],
        ..catalog(1)
    };
    let err = long_title.sign(&key).unwrap_err();
    assert_eq!(
        err,
        CatalogError::TitleTooLong {
            manifest_id: id,
            len: MAX_ENTRY_TITLE_BYTES + 1,
        }
    );
    assert_names(&err, &[&id.to_hex(), "257-byte title"]);
}

// ---------------------------------------------------------------------------------------------
// Manifest bodies.

#[test]
fn escaping_or_malformed_paths_are_refused() {
    let cases: &[(&str, PathError)] = &[
        ("..", PathError::BadComponent("..".into())),
        (
            "../etc/passwd",
            PathError::BadComponent("../etc/passwd".into()),
        ),
        (
            "film/../../x",
            PathError::BadComponent("film/../../x".into()),
        ),
        ("./a", PathError::BadComponent("./a".into())),
        ("a//b", PathError::BadComponent("a//b".into())),
        ("a/", PathError::BadComponent("a/".into())),
        ("/etc/passwd", PathError::Absolute("/etc/passwd".into())),
        (
            "film\\..\\..\\x",
            PathError::ForbiddenCharacter("film\\..\\..\\x".into()),
        ),
        ("a\0b", PathError::ForbiddenCharacter("a\0b".into())),
        (
            "C:/Windows/x",
            PathError::ForbiddenCharacter("C:/Windows/x".into()),
        ),
        ("", PathError::Empty),
    ];
    for (path, expected) in cases {
        // The manifest body is signed by the genuine publisher: only the path is wrong.
        let signed = raw_manifest_with_paths(&["ok.txt", path]);
        let err = VerifiedManifest::verify(signed).unwrap_err();
        assert_eq!(
            err,
            ManifestError::Body(DecodeError::Malformed {
                what: "manifest body",
                reason: expected.to_string(),
            }),
            "{path:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("manifest body is malformed: {expected}")
        );
        if !path.is_empty() {
            assert!(err.to_string().contains(&format!("{path:?}")), "{err}");
        }
    }
}

#[test]
fn duplicate_paths_and_file_directory_clashes_are_refused() {
    let cases: &[(&[&str], PathError)] = &[
        (&["a/b", "c", "a/b"], PathError::Duplicate("a/b".into())),
        (
            &["a", "a/b"],
            PathError::FileIsDirectory {
                file: "a".into(),
                other: "a/b".into(),
            },
        ),
        (
            &["a/b/c", "a/b"],
            PathError::FileIsDirectory {
                file: "a/b".into(),
                other: "a/b/c".into(),
            },
        ),
    ];
    for (paths, expected) in cases {
        let err = VerifiedManifest::verify(raw_manifest_with_paths(paths)).unwrap_err();
        assert_eq!(err, ManifestError::Path(expected.clone()), "{paths:?}");
        assert_eq!(err.to_string(), expected.to_string());
        // Manifest::sign refuses the same before signing anything.
        let mut body = manifest();
        body.files = paths.iter().map(|p| file(p)).collect();
        assert_eq!(
            body.sign(&publisher_key(), None).unwrap_err(),
            ManifestError::Path(expected.clone())
        );
    }
    // Files sharing a directory, or names that only start alike, are fine.
    VerifiedManifest::verify(raw_manifest_with_paths(&["a/b", "a/c", "ab", "a.b"])).unwrap();
}

/// Asserts that a manifest naming `path` beside an ordinary file is refused while its body is
/// decoded, with `expected` as the reason, and that the message shows no refused character raw.
fn assert_path_refused(path: &str, expected: &PathError) {
    // The manifest body is signed by the genuine publisher: only the path is wrong.
    let err = VerifiedManifest::verify(raw_manifest_with_paths(&["ok.txt", path])).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Body(DecodeError::Malformed {
            what: "manifest body",
            reason: expected.to_string(),
        }),
        "{path:?}"
    );
    let message = err.to_string();
    assert!(
        !message.chars().any(licet_proto::text::is_unsafe_to_show),
        "{message:?}"
    );
    assert!(message.contains(&format!("{path:?}")), "{message}");
}

#[test]
fn paths_with_control_bidirectional_or_invisible_characters_are_refused() {
    for (path, character) in [
        ("clip\u{1b}]0;owned\u{7}.mkv", '\u{1b}'),
        ("sub/a\u{7f}b", '\u{7f}'),
        ("a\u{9b}31m", '\u{9b}'),
        ("tab\there", '\t'),
        ("line\nbreak", '\n'),
        // Shows as `evilexe.mkv`.
        ("evil\u{202e}vkm.exe", '\u{202e}'),
        ("a\u{2066}b", '\u{2066}'),
        ("a\u{200f}b", '\u{200f}'),
        ("a\u{61c}b", '\u{61c}'),
        ("log\u{2028}line", '\u{2028}'),
        // Looks exactly like `film.mkv`.
        ("fi\u{200b}lm.mkv", '\u{200b}'),
        ("\u{feff}film.mkv", '\u{feff}'),
    ] {
        let expected = PathError::UnsafeCharacter {
            path: path.into(),
            character,
        };
        assert_path_refused(path, &expected);
        assert!(
            expected
                .to_string()
                .contains(&format!("{}", character.escape_debug())),
            "{expected}"
        );
    }
}

#[test]
fn names_windows_cannot_hold_are_refused() {
    let reserved = |path: &str, name: &str| PathError::ReservedOnWindows {
        path: path.into(),
        name: name.into(),
    };
    let forbidden = |path: &str, character| PathError::ForbiddenOnWindows {
        path: path.into(),
        character,
    };
    let cases = [
        ("CON", reserved("CON", "CON")),
        ("extras/nul.txt", reserved("extras/nul.txt", "nul.txt")),
        ("Aux.tar.gz", reserved("Aux.tar.gz", "Aux.tar.gz")),
        ("com1/a", reserved("com1/a", "com1")),
        ("LPT9.log", reserved("LPT9.log", "LPT9.log")),
        ("lpt\u{b2}", reserved("lpt\u{b2}", "lpt\u{b2}")),
        ("Con .srt", reserved("Con .srt", "Con .srt")),
        ("film.", PathError::TrailingDotOrSpace("film.".into())),
        ("film ", PathError::TrailingDotOrSpace("film ".into())),
        ("dir./a", PathError::TrailingDotOrSpace("dir./a".into())),
        ("what?.mkv", forbidden("what?.mkv", '?')),
        ("a/b:c", forbidden("a/b:c", ':')),
        ("a*", forbidden("a*", '*')),
        ("\"quoted\"", forbidden("\"quoted\"", '"')),
        ("a<b>", forbidden("a<b>", '<')),
        ("a|b", forbidden("a|b", '|')),
    ];
    for (path, expected) in &cases {
        assert_path_refused(path, expected);
    }
    // Names that only start like a device are fine.
    VerifiedManifest::verify(raw_manifest_with_paths(&[
        "CONSOLE.txt",
        "com10",
        "nul-and-void/lpt",
        ".hidden",
        "x..y",
    ]))
    .unwrap();
}

#[test]
fn paths_that_are_one_name_where_case_or_normalisation_is_ignored_are_refused() {
    let collision = |path: &str, other: &str| PathError::Collision {
        path: path.into(),
        other: other.into(),
    };
    let cases: &[(&[&str], PathError)] = &[
        (&["Film.mkv", "film.mkv"], collision("film.mkv", "Film.mkv")),
        (
            &["STRASSE.srt", "Stra\u{df}e.srt"],
            collision("Stra\u{df}e.srt", "STRASSE.srt"),
        ),
        // NFC and NFD forms of `é`: one file on macOS.
        (
            &["caf\u{e9}.mkv", "cafe\u{301}.mkv"],
            collision("cafe\u{301}.mkv", "caf\u{e9}.mkv"),
        ),
        // Two directories that macOS and Windows would merge.
        (
            &["Season 1/e1.mkv", "season 1/e2.mkv"],
            collision("season 1/e2.mkv", "Season 1/e1.mkv"),
        ),
        // A file where another path needs a directory of the same folded name.
        (
            &["extras", "Extras/trailer.mkv"],
            collision("Extras/trailer.mkv", "extras"),
        ),
    ];
    for (paths, expected) in cases {
        let err = VerifiedManifest::verify(raw_manifest_with_paths(paths)).unwrap_err();
        assert_eq!(err, ManifestError::Path(expected.clone()), "{paths:?}");
        assert_eq!(err.to_string(), expected.to_string());
        assert!(err.to_string().contains("ignore case"), "{err}");
        // Manifest::sign refuses the same before signing anything.
        let mut body = manifest();
        body.files = paths.iter().map(|p| file(p)).collect();
        assert_eq!(
            body.sign(&publisher_key(), None).unwrap_err(),
            ManifestError::Path(expected.clone())
        );
    }
    // One directory spelled the same way twice is still one directory.
    VerifiedManifest::verify(raw_manifest_with_paths(&[
        "Season 1/a",
        "Season 1/B",
        "b/c",
    ]))
    .unwrap();
}

#[test]
fn bad_chunk_size() {
    for size in [
        0,
        1,
        MIN_CHUNK_SIZE / 2,
        MIN_CHUNK_SIZE * 3,
        MAX_CHUNK_SIZE * 2,
        1 << 31,
        u32::MAX,
    ] {
        let mut raw = RawManifest::from(&manifest());
        raw.chunk_size = size;
        let err = VerifiedManifest::verify(sign_raw(SignedKind::Manifest, &raw, &publisher_key()))
            .unwrap_err();
        assert_eq!(err, ManifestError::BadChunkSize(size));
        assert_eq!(
            err.to_string(),
            format!("chunk size {size} is not a power of two from 16 KiB to 16 MiB")
        );
    }
    for size in [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE] {
        let mut body = manifest();
        body.chunk_size = size;
        body.sign(&publisher_key(), None).unwrap();
    }
}

#[test]
fn zero_files() {
    let mut raw = RawManifest::from(&manifest());
    raw.files.clear();
    let err = VerifiedManifest::verify(sign_raw(SignedKind::Manifest, &raw, &publisher_key()))
        .unwrap_err();
    assert_eq!(err, ManifestError::FileCount(0));
    assert_eq!(
        err.to_string(),
        "a manifest must list 1 to 100000 files, this one lists 0"
    );
    let mut body = manifest();
    body.files.clear();
    assert_eq!(
        body.sign(&publisher_key(), None).unwrap_err(),
        ManifestError::FileCount(0)
    );
}

#[test]
fn other_malformed_manifest_bodies() {
    let refused = |change: &dyn Fn(&mut Manifest)| {
        let mut body = manifest();
        change(&mut body);
        // Signed by hand, so verification (not just Manifest::sign) is what refuses it.
        let signed = sign_raw(SignedKind::Manifest, &body, &publisher_key());
        VerifiedManifest::verify(signed).unwrap_err()
    };
    assert_eq!(
        refused(&|m| m.version = 3),
        ManifestError::UnsupportedVersion(3)
    );
    assert_eq!(
        refused(&|m| m.title.clear()),
        ManifestError::BadText {
            field: "title",
            len: 0,
            limit: MAX_TITLE_BYTES,
        }
    );
    let err = refused(&|m| m.title = "t".repeat(MAX_TITLE_BYTES + 1));
    assert_eq!(
        err.to_string(),
        "manifest title is 1025 bytes; it must be 1 to 1024 bytes"
    );
    let err = refused(&|m| m.files[1].size = MAX_FILE_SIZE + 1);
    assert!(matches!(err, ManifestError::FileTooLarge { .. }), "{err:?}");
    assert_names(&err, &["film/part1.srt", &(MAX_FILE_SIZE + 1).to_string()]);
    let err = refused(&|m| m.licence.not_after = Some(m.licence.not_before));
    assert_eq!(
        err,
        ManifestError::EmptyWindow {
            not_before: START,
            not_after: START,
        }
    );
    let err = refused(&|m| m.licence.regions = vec![region("FR"), region("DE"), region("FR")]);
    assert_eq!(err, ManifestError::BadRegions("FR,DE,FR".into()));

    // A region must be canonical upper case in the signed bytes.
    let mut raw = RawManifest::from(&manifest());
    raw.licence.regions = vec!["fr".into()];
    let err = VerifiedManifest::verify(sign_raw(SignedKind::Manifest, &raw, &publisher_key()))
        .unwrap_err();
    assert_eq!(
        err,
        ManifestError::Body(DecodeError::Malformed {
            what: "manifest body",
            reason: "\"fr\" is not an assigned ISO 3166-1 alpha-2 region code such as FR or DE"
                .into(),
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Sizes and framing.

#[test]
fn oversize_input_is_rejected_on_its_length() {
    let err = encoding::decode::<Manifest>("manifest body", &[0; 101], 100).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLarge {
            what: "manifest body",
            len: 101,
            limit: 100,
        }
    );

    // An envelope one byte over its kind's limit is refused on its length.
    let limit = SignedKind::CatalogHead.max_envelope_bytes();
    let err = Signed::decode_kind(&vec![0; limit + 1], SignedKind::CatalogHead).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::Decode(DecodeError::TooLarge {
            what: "catalog head",
            len: limit + 1,
            limit,
        })
    );
    let err = VerifiedCatalogHead::from_bytes(&vec![0; limit + 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "catalog head is {} bytes, over the limit of {limit} bytes",
            limit + 1
        )
    );
    let limit = SignedKind::Manifest.max_envelope_bytes();
    let err = VerifiedManifest::from_bytes(&vec![0; limit + 1]).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Envelope(EnvelopeError::Decode(DecodeError::TooLarge {
            what: "manifest",
            len: limit + 1,
            limit,
        }))
    );

    // A signed delegation body over its limit is refused after its signature, before decoding.
    let mut huge = carried(&delegation(DelegationScope::AllManifests), &publisher_key());
    huge.body.resize(MAX_DELEGATION_BODY_BYTES + 1, 0);
    let huge = Signed::sign(SignedKind::Delegation, huge.body, &publisher_key(), None)
        .into_carried_delegation()
        .unwrap();
    assert_eq!(
        Delegation::verify_carried(&huge).unwrap_err(),
        DelegationError::Body(DecodeError::TooLarge {
            what: "delegation body",
            len: MAX_DELEGATION_BODY_BYTES + 1,
            limit: MAX_DELEGATION_BODY_BYTES,
        })
    );
}

#[test]
fn huge_length_prefix_inside_a_small_envelope_fails_cleanly() {
    // Kind, signer, then a body length of u32::MAX in a 40-byte input: postcard never
    // allocates more than the input holds, so this is a plain decode error.
    let mut bytes = vec![0x00];
    bytes.extend_from_slice(publisher().as_bytes());
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
    let err = VerifiedManifest::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::Envelope(EnvelopeError::Decode(DecodeError::Malformed {
                what: "manifest",
                ..
            }))
        ),
        "{err:?}"
    );
}

#[test]
fn huge_frame_length_is_refused_before_reading_the_frame() {
    assert_eq!(
        wire::frame_length([0xff; 4]),
        Err(WireError::FrameTooLarge(u64::from(u32::MAX)))
    );
    let max = u32::try_from(MAX_FRAME_BYTES).unwrap();
    assert_eq!(wire::frame_length(max.to_le_bytes()), Ok(MAX_FRAME_BYTES));
    let err = wire::frame_length((max + 1).to_le_bytes()).unwrap_err();
    assert_eq!(err, WireError::FrameTooLarge(u64::from(max) + 1));
    assert_eq!(
        err.to_string(),
        format!(
            "frame of {} bytes is over the limit of {MAX_FRAME_BYTES}",
            max + 1
        )
    );
    assert_eq!(
        decode_response(&vec![0; MAX_FRAME_BYTES + 1]).unwrap_err(),
        WireError::FrameTooLarge(MAX_FRAME_BYTES as u64 + 1)
    );
    assert!(matches!(
        decode_request(&vec![0; MAX_FRAME_BYTES + 1]),
        Err(WireError::Decode(DecodeError::TooLarge { .. }))
    ));
}

#[test]
fn trailing_bytes_after_a_signed_body_are_refused() {
    let key = publisher_key();
    let with_extra = |mut body: Vec<u8>| {
        body.push(0);
        body
    };
    // Manifest: the publisher signed the body *with* the extra byte; the signature is fine, the
    // body is not.
    let signed = Signed::sign(
        SignedKind::Manifest,
        with_extra(encoding::encode(&manifest())),
        &key,
        None,
    );
    let err = VerifiedManifest::verify(signed).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Body(DecodeError::TrailingBytes {
            what: "manifest body",
            extra: 1,
        })
    );
    assert_eq!(
        err.to_string(),
        "manifest body has 1 trailing bytes after its end"
    );

    let root = catalog(1).sign(&key).unwrap().root().root().clone();
    let signed = Signed::sign(
        SignedKind::CatalogRoot,
        with_extra(encoding::encode(&root)),
        &key,
        None,
    );
    assert_eq!(
        VerifiedCatalogRoot::from_bytes(&signed.encode()).unwrap_err(),
        CatalogError::Body(DecodeError::TrailingBytes {
            what: "catalog root body",
            extra: 1,
        })
    );

    let head = catalog(1).sign(&key).unwrap().head(&key).unwrap();
    let body = Signed::decode(head.envelope_bytes()).unwrap().body;
    let signed = Signed::sign(SignedKind::CatalogHead, with_extra(body), &key, None);
    assert_eq!(
        VerifiedCatalogHead::from_bytes(&signed.encode()).unwrap_err(),
        CatalogError::Body(DecodeError::TrailingBytes {
            what: "catalog head body",
            extra: 1,
        })
    );

    let signed = Signed::sign(
        SignedKind::Delegation,
        with_extra(encoding::encode(&delegation(DelegationScope::AllManifests))),
        &key,
        None,
    );
    assert_eq!(
        Delegation::verify_envelope(&signed).unwrap_err(),
        DelegationError::Body(DecodeError::TrailingBytes {
            what: "delegation body",
            extra: 1,
        })
    );
}

#[test]
fn trailing_bytes_after_an_envelope_are_refused() {
    let mut bytes = signed_by_publisher(&manifest()).envelope().encode();
    bytes.push(0);
    let err = VerifiedManifest::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Envelope(EnvelopeError::Decode(DecodeError::TrailingBytes {
            what: "manifest",
            extra: 1,
        }))
    );
    assert_eq!(
        err.to_string(),
        "manifest has 1 trailing bytes after its end"
    );
}

#[test]
fn regression_re_encoded_envelope_with_an_overlong_varint_is_refused() {
    // postcard decodes overlong varints, so the publisher's catalog could be re-encoded with
    // its kind written as 0x82 0x00 instead of 0x02: the signature still verified and the
    // catalog hash (taken over the bytes as received) changed, so a node that accepted the copy
    // then refused the publisher's own catalog and head as a different catalog of the same
    // sequence.
    let catalog = catalog(1).sign(&publisher_key()).unwrap();
    let canonical = catalog.root().envelope_bytes().to_vec();
    let mut overlong_kind = canonical.clone();
    overlong_kind.splice(0..1, [0x84, 0x00]);
    let mut overlong_length = canonical.clone();
    let body_len = encoding::encode(catalog.root().root()).len();
    assert!(body_len < 128);
    overlong_length.splice(33..34, [0x80 | body_len as u8, 0x00]);
    for bytes in [overlong_kind, overlong_length] {
        let err = VerifiedCatalogRoot::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(
                &err,
                CatalogError::Envelope(EnvelopeError::Decode(DecodeError::Malformed {
                    what: "catalog root",
                    ..
                }))
            ),
            "{err:?}"
        );
        assert_names(&err, &["canonical"]);
        assert!(Signed::decode(&bytes).is_err());
    }
    // The same for a manifest envelope.
    let mut manifest_bytes = signed_by_publisher(&manifest()).envelope().encode();
    manifest_bytes.splice(0..1, [0x80, 0x00]);
    assert!(matches!(
        VerifiedManifest::from_bytes(&manifest_bytes),
        Err(ManifestError::Envelope(EnvelopeError::Decode(
            DecodeError::Malformed { .. }
        )))
    ));
}

#[test]
fn regression_a_valid_bitfield_does_not_become_the_reason_of_a_later_failure() {
    // A valid bitfield followed by an unknown refusal reason: the error must not blame the
    // bitfield (its validation used to record a failure note even when it passed).
    let mut bytes = encoding::encode(&Bitfield::new(3));
    bytes.push(99);
    let err = encoding::decode::<(Bitfield, RefusalReason)>("pair", &bytes, 100).unwrap_err();
    assert!(
        matches!(err, DecodeError::Malformed { what: "pair", .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("bitfield"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Wire messages a receiver refuses.

fn response_body(response: Response, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response_header(
        &ResponseFrame {
            id: RequestId(1),
            response,
        },
        &mut out,
    );
    let mut body = out.split_off(wire::LENGTH_PREFIX_BYTES);
    body.resize(body.len() + payload_len, 0);
    body
}

#[test]
fn payload_length_must_match_the_header() {
    let chunk = || Response::Chunk {
        proof: AuditPath(vec![]),
        len: 10,
    };
    let mut short = response_body(chunk(), 10);
    short.pop();
    let err = decode_response(&short).unwrap_err();
    assert_eq!(
        err,
        WireError::PayloadLength {
            declared: 10,
            actual: 9,
        }
    );
    assert_eq!(
        err.to_string(),
        "frame declares a 10-byte payload but carries 9"
    );
    let long = response_body(chunk(), 11);
    assert_eq!(
        decode_response(&long).unwrap_err(),
        WireError::PayloadLength {
            declared: 10,
            actual: 11,
        }
    );
    // A frame without a payload may not carry one.
    let busy = response_body(Response::Busy { retry_after_ms: 10 }, 1);
    assert_eq!(
        decode_response(&busy).unwrap_err(),
        WireError::PayloadLength {
            declared: 0,
            actual: 1,
        }
    );
}

#[test]
fn response_fields_over_their_limits() {
    let over = |response, payload| decode_response(&response_body(response, payload)).unwrap_err();
    assert_eq!(
        over(
            Response::Refused {
                reason: RefusalReason::Expired,
                detail: "x".repeat(MAX_DETAIL_BYTES + 1),
            },
            0
        ),
        WireError::OverLimit("refusal detail is too long")
    );
    assert_eq!(
        over(
            Response::Chunk {
                proof: AuditPath(vec![MerkleHash([0; 32]); MAX_AUDIT_PATH_LEN + 1]),
                len: 0,
            },
            0
        ),
        WireError::OverLimit("audit path is too long")
    );
    assert_eq!(
        over(
            Response::CatalogPart {
                total_len: 10,
                offset: 8,
                len: 3,
            },
            3
        ),
        WireError::OverLimit("catalog part is out of bounds")
    );
    assert_eq!(
        over(
            Response::CatalogPart {
                total_len: SignedKind::CatalogRoot.max_envelope_bytes() as u64 + 1,
                offset: 0,
                len: 0,
            },
            0
        ),
        WireError::OverLimit("catalog part is out of bounds")
    );
    let contact = |peer: usize, addrs: usize, addr: usize| PeerContact {
        peer: vec![1; peer],
        addrs: vec![vec![2; addr]; addrs],
    };
    let peers = |peers: Vec<PeerContact>| over(Response::Peers { peers }, 0);
    assert_eq!(
        peers(vec![contact(38, 1, 10); MAX_EXCHANGED_PEERS + 1]),
        WireError::OverLimit("too many peers in a peer exchange")
    );
    for (peer, addrs, addr) in [
        (38, MAX_CONTACT_ADDRS + 1, 10),
        (MAX_CONTACT_BYTES + 1, 1, 10),
        (38, 1, MAX_CONTACT_BYTES + 1),
    ] {
        assert_eq!(
            peers(vec![contact(peer, addrs, addr)]),
            WireError::OverLimit("a peer contact is out of bounds"),
            "{peer}-byte id, {addrs} addresses of {addr} bytes"
        );
    }
    // Everything exactly at the limits passes.
    let full =
        vec![contact(MAX_CONTACT_BYTES, MAX_CONTACT_ADDRS, MAX_CONTACT_BYTES); MAX_EXCHANGED_PEERS];
    let (frame, _) = decode_response(&response_body(
        Response::Peers {
            peers: full.clone(),
        },
        0,
    ))
    .unwrap();
    assert_eq!(frame.response, Response::Peers { peers: full });
    // A refusal detail exactly at the limit passes.
    let (frame, _) = decode_response(&response_body(
        Response::Refused {
            reason: RefusalReason::Expired,
            detail: wire::bounded_detail(&"é".repeat(MAX_DETAIL_BYTES)),
        },
        0,
    ))
    .unwrap();
    assert!(matches!(frame.response, Response::Refused { .. }));
}

#[test]
fn unknown_variants_and_bad_bitfields_are_protocol_violations() {
    // Request variant 5 does not exist (yet): the frame is malformed, not misread.
    let err = decode_request(&[0x01, 0x05]).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::Decode(DecodeError::Malformed {
                what: "request frame",
                ..
            })
        ),
        "{err:?}"
    );
    let err = decode_response(&[0x01, 0x07]).unwrap_err();
    assert!(matches!(err, WireError::Decode(_)), "{err:?}");
    // An availability bitfield of 3 bits with a bit set past its end.
    let err = decode_response(&[0x01, 0x01, 0x01, 0x03, 0x01, 0x08]).unwrap_err();
    assert_eq!(
        err,
        WireError::Decode(DecodeError::Malformed {
            what: "response frame",
            reason: "bitfield of 3 bits has 1 bytes or stray bits set past its end".into(),
        })
    );
    // And one whose byte count does not match its bit count.
    let err = decode_response(&[0x01, 0x01, 0x01, 0x09, 0x01, 0x00]).unwrap_err();
    assert!(
        err.to_string().contains("bitfield of 9 bits has 1 bytes"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Catalog parts (format 2).

/// A catalog of `n` entries with ids spread over every bucket, and its file decoded.
fn catalog_of(n: u32, sequence: u64) -> (VerifiedCatalog, CatalogFile) {
    let entries = (0..n)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&(i.wrapping_mul(2_654_435_761)).to_be_bytes());
            id[31] = 1;
            CatalogEntry {
                manifest_id: ManifestId(id),
                title: format!("title {i}"),
            }
        })
        .collect();
    let verified = Catalog {
        entries,
        ..catalog(sequence)
    }
    .sign(&publisher_key())
    .unwrap();
    let file: CatalogFile =
        encoding::decode("file", &verified.to_file_bytes(), usize::MAX).unwrap();
    (verified, file)
}

#[test]
fn a_catalog_of_format_1_is_refused_naming_its_version() {
    let v1 = sign_raw(SignedKind::Catalog, &catalog(1), &publisher_key()).encode();
    let err = VerifiedCatalog::from_bytes(&v1).unwrap_err();
    assert_eq!(err, CatalogError::OldFormat { version: 1 });
    assert_names(
        &err,
        &[
            "catalog format 1",
            "format 2",
            "licet-manifest catalog sign",
        ],
    );
    // A file that says it is of another format, too.
    let (_, mut file) = catalog_of(3, 1);
    file.format = 3;
    assert_eq!(
        VerifiedCatalog::from_bytes(&encoding::encode(&file)).unwrap_err(),
        CatalogError::OldFormat { version: 3 }
    );
}

#[test]
fn a_tampered_catalog_part_is_refused_by_its_hash() {
    let (_, mut file) = catalog_of(100, 1);
    let last = file.parts.len() - 1;
    let part = &mut file.parts[last];
    let len = part.len();
    part[len - 1] ^= 1;
    let err = VerifiedCatalog::from_bytes(&encoding::encode(&file)).unwrap_err();
    // The tampered part no longer hashes to what its page names: that part is missing, and
    // the altered bytes are a part the catalog does not name.
    assert!(
        matches!(
            err,
            CatalogError::MissingPart(_) | CatalogError::StrayPart(_)
        ),
        "{err:?}"
    );
    // Assembled by hash lookup, the altered bytes under the true hash are named as such.
    let (verified, _) = catalog_of(100, 1);
    let root = verified.root().clone();
    let wanted = root.root().pages[0];
    let mut tampered = verified.part(&wanted).unwrap().to_vec();
    tampered[3] ^= 1;
    let err = VerifiedCatalog::assemble(root, |hash| {
        if *hash == wanted {
            Some(tampered.as_slice())
        } else {
            verified.part(hash)
        }
    })
    .unwrap_err();
    assert_eq!(err, CatalogError::PartMismatch(wanted));
    assert_names(&err, &[&wanted.to_hex(), "not the part its hash names"]);
}

#[test]
fn a_part_of_another_catalog_is_refused() {
    let (_, mut file) = catalog_of(100, 1);
    let (_, other) = catalog_of(101, 2);
    let stray = other
        .parts
        .iter()
        .find(|part| !file.parts.contains(part))
        .unwrap()
        .clone();
    file.parts.push(stray.clone());
    let err = VerifiedCatalog::from_bytes(&encoding::encode(&file)).unwrap_err();
    assert_eq!(err, CatalogError::StrayPart(catalog_part_hash(&stray)));
    assert_names(&err, &["not a part of this catalog"]);
    // Twice the same part.
    let (_, mut file) = catalog_of(100, 1);
    file.parts.push(file.parts[0].clone());
    let err = VerifiedCatalog::from_bytes(&encoding::encode(&file)).unwrap_err();
    assert_names(&err, &["holds a part twice"]);
    // A part left out.
    let (_, mut file) = catalog_of(100, 1);
    let gone = catalog_part_hash(&file.parts.pop().unwrap());
    assert_eq!(
        VerifiedCatalog::from_bytes(&encoding::encode(&file)).unwrap_err(),
        CatalogError::MissingPart(gone)
    );
}

#[test]
fn a_catalog_whose_parts_have_the_wrong_shape_is_refused() {
    let key = publisher_key();
    // A bucket that holds an id of another bucket (two buckets: ids starting 0x80 go in 1).
    let mut high = [0u8; 32];
    high[0] = 0x80;
    let misplaced = CatalogPart::Bucket {
        entries: vec![CatalogEntry {
            manifest_id: ManifestId(high),
            title: "x".into(),
        }],
        revoked_manifests: vec![],
    };
    let empty = CatalogPart::Bucket {
        entries: vec![],
        revoked_manifests: vec![],
    };
    let (misplaced, empty) = (encoding::encode(&misplaced), encoding::encode(&empty));
    let page = encoding::encode(&CatalogPart::Page {
        buckets: vec![catalog_part_hash(&misplaced), catalog_part_hash(&empty)],
    });
    let root_with = |bits: u8, pages: Vec<CatalogPartHash>| {
        let mut root = catalog(1).sign(&key).unwrap().root().root().clone();
        root.bucket_bits = bits;
        root.pages = pages;
        Signed::sign(SignedKind::CatalogRoot, encoding::encode(&root), &key, None).encode()
    };
    let file = |root: Vec<u8>, parts: Vec<Vec<u8>>| {
        VerifiedCatalog::from_bytes(&encoding::encode(&CatalogFile {
            format: 2,
            root,
            parts,
        }))
        .unwrap_err()
    };
    let err = file(
        root_with(1, vec![catalog_part_hash(&page)]),
        vec![page.clone(), misplaced.clone(), empty.clone()],
    );
    assert_names(&err, &[&ManifestId(high).to_hex(), "bucket 0, not its own"]);
    // A bucket where the root names a page.
    let err = file(
        root_with(1, vec![catalog_part_hash(&empty)]),
        vec![empty.clone()],
    );
    assert_names(&err, &["named as page 0, is a bucket"]);
    // A root that names too few pages for its buckets.
    let err = file(root_with(8, vec![catalog_part_hash(&page)]), vec![]);
    assert_names(&err, &["names 1 pages where 2^8 buckets take 2"]);
    // A page that names too few buckets.
    let err = file(
        root_with(2, vec![catalog_part_hash(&page)]),
        vec![page, misplaced, empty],
    );
    assert_names(&err, &["page 0 names 2 buckets, not 4"]);
}

#[test]
fn a_licence_bucket_of_the_wrong_shape_is_refused() {
    let key = publisher_key();
    let root_naming = |buckets: &[&[u8]]| {
        let page = encoding::encode(&CatalogPart::Page {
            buckets: buckets.iter().map(|b| catalog_part_hash(b)).collect(),
        });
        let mut root = catalog(1).sign(&key).unwrap().root().root().clone();
        root.bucket_bits = u8::from(buckets.len() == 2);
        root.pages = vec![catalog_part_hash(&page)];
        let root = Signed::sign(SignedKind::CatalogRoot, encoding::encode(&root), &key, None);
        let mut parts = vec![page];
        parts.extend(buckets.iter().map(|b| b.to_vec()));
        VerifiedCatalog::from_bytes(&encoding::encode(&CatalogFile {
            format: 2,
            root: root.encode(),
            parts,
        }))
    };
    let licence_bucket = |revoked_licences: Vec<LicenceId>| {
        encoding::encode(&CatalogPart::LicenceBucket {
            entries: vec![],
            revoked_manifests: vec![],
            revoked_licences,
        })
    };
    // One catalog, one encoding: a bucket without a revoked licence is a plain `Bucket`.
    let err = root_naming(&[&licence_bucket(vec![])]).unwrap_err();
    assert_names(
        &err,
        &["bucket 0", "licence bucket without a revoked licence"],
    );
    // A licence id in another bucket than its own (two buckets: ids starting 0x80 go in 1).
    let mut high = [0u8; 32];
    high[0] = 0x80;
    let plain = encoding::encode(&CatalogPart::Bucket {
        entries: vec![],
        revoked_manifests: vec![],
    });
    let misplaced = licence_bucket(vec![LicenceId(high)]);
    let err = root_naming(&[&misplaced, &plain]).unwrap_err();
    assert_names(&err, &[&LicenceId(high).to_hex(), "bucket 0, not its own"]);
    // In its own bucket, the same licence is revoked.
    let catalog = root_naming(&[&plain, &misplaced]).unwrap();
    assert!(catalog.catalog().revokes_licence(&LicenceId(high)));
    assert_eq!(catalog.catalog().revoked_licences, [LicenceId(high)]);
    // Out of order within a bucket.
    let err = root_naming(&[&licence_bucket(vec![
        LicenceId([2; 32]),
        LicenceId([1; 32]),
    ])])
    .unwrap_err();
    assert_eq!(
        err,
        CatalogError::NotSorted {
            list: "revoked licences",
            position: 1
        }
    );
}

#[test]
fn catalog_parts_messages_over_their_limits_are_protocol_violations() {
    let request = |hashes: usize| {
        let frame = wire::RequestFrame {
            id: RequestId(1),
            request: wire::Request::CatalogParts {
                publisher: publisher(),
                hashes: vec![CatalogPartHash([7; 32]); hashes],
            },
        };
        let mut out = Vec::new();
        wire::encode_request(&frame, &mut out);
        decode_request(&out[wire::LENGTH_PREFIX_BYTES..])
    };
    request(wire::MAX_CATALOG_PARTS_PER_REQUEST).unwrap();
    for hashes in [0, wire::MAX_CATALOG_PARTS_PER_REQUEST + 1] {
        assert_eq!(
            request(hashes).unwrap_err(),
            WireError::OverLimit("a catalog parts request names no part or too many")
        );
    }
    let response = |lens: Vec<u32>| {
        let total: u32 = lens.iter().sum();
        let mut out = Vec::new();
        encode_response_header(
            &ResponseFrame {
                id: RequestId(1),
                response: Response::CatalogParts { lens },
            },
            &mut out,
        );
        out.resize(out.len() + total as usize, 0);
        decode_response(&out[wire::LENGTH_PREFIX_BYTES..]).map(|_| ())
    };
    response(vec![1, 2, 3]).unwrap();
    assert_eq!(
        response(vec![MAX_CATALOG_PART_BYTES as u32 + 1]).unwrap_err(),
        WireError::OverLimit("catalog parts are out of bounds")
    );
    assert_eq!(
        response(vec![1; wire::MAX_CATALOG_PARTS_PER_REQUEST + 1]).unwrap_err(),
        WireError::OverLimit("catalog parts are out of bounds")
    );
}
