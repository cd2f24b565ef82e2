//! Golden bytes for every encoded type, so the signed and wire formats can never drift silently.
//!
//! Each golden is written as annotated segments following postcard 1.x's documented format:
//! unsigned integers are LEB128 varints, `i64` is a zigzag varint, fixed-size arrays (keys, ids,
//! hashes, signatures) are their raw bytes with no length, strings and sequences are a varint
//! length then their contents, `Option` is a `00`/`01` tag, and an enum is its variant index as a
//! varint followed by the variant's fields. Keys come from fixed seeds and ed25519 signatures are
//! deterministic, so signatures, manifest ids, catalog part hashes and catalog hashes are golden
//! too; those values were cross-checked against an independent ed25519/SHA-256 implementation
//! (Python `cryptography` and `hashlib`).
//!
//! Every golden also decodes back to the value it came from.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "clippy.toml's allow-*-in-tests covers #[test] bodies, not these test helpers"
)]

use std::fmt::Debug;

use licet_proto::{
    CatalogHash, CatalogHeadKey, CatalogPartHash, LicenceId, ManifestId, MerkleHash, PublicKey,
    SecretKey, Timestamp,
    catalog::{
        Catalog, CatalogEntry, CatalogError, CatalogHead, VerifiedCatalog, VerifiedCatalogHead,
        catalog_hash, catalog_head_key, catalog_topic_key,
    },
    catalog_parts::{CatalogFile, CatalogPart, CatalogRoot, catalog_part_hash},
    delegation::{Delegation, DelegationScope},
    encoding,
    manifest::{FileEntry, Licence, Manifest, Region, ShareLink, VerifiedManifest, manifest_id},
    merkle::{AuditPath, leaf_hash},
    path::SafePath,
    policy::{RefusalReason, TrustedPublisher},
    signed::{Signed, SignedDelegation, SignedKind, signing_message},
    wire::{
        self, Bitfield, Request, RequestFrame, RequestId, Response, ResponseFrame, decode_request,
        decode_response, encode_request, encode_response_header,
    },
};
use serde::{Serialize, de::DeserializeOwned};

// ---------------------------------------------------------------------------------------------
// Fixed inputs and their golden byte segments.

/// ed25519 public key of the seed `[1; 32]`: the publisher.
const PUBLISHER: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
/// ed25519 public key of the seed `[2; 32]`: the delegate.
const DELEGATE: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";

/// 2027-01-15T08:00:00Z = 1_800_000_000 s; zigzag 3_600_000_000 as a 5-byte varint.
const CREATED: Timestamp = Timestamp(1_800_000_000);
const CREATED_HEX: &str = "80c8ceb40d";
/// 2030-03-17T17:46:40Z = 1_900_000_000 s; zigzag 3_800_000_000.
const ENDS: Timestamp = Timestamp(1_900_000_000);
const ENDS_HEX: &str = "80ccfd930e";
/// CREATED + 30 days = 1_802_592_000 s; zigzag 3_605_184_000.
const CATALOG_EXPIRES: Timestamp = Timestamp(1_802_592_000);
const CATALOG_EXPIRES_HEX: &str = "80fc8ab70d";

const AA32: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BB32: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const CC32: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const DD32: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
const ID11: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const ID22: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const ID33: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const ZERO32: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// SHA-256(0x00): the leaf of an empty file (also golden in `merkle`'s unit tests).
const EMPTY_LEAF: &str = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";

/// The encoding of [`full_manifest`]: 207 bytes.
const FULL_MANIFEST: &[&str] = &[
    "01",       // version: varint 1
    PUBLISHER,  // publisher: 32 raw bytes
    "04",       // title: length 4
    "46696c6d", // "Film"
    "01",       // description: Some
    "03",       // length 3
    "437574",   // "Cut"
    CREATED_HEX,
    "808040",                     // chunk_size: 1 MiB = 0x10_0000 as a varint
    "03",                         // 3 files
    "0d",                         // path: length 13
    "66696c6d2f6d61696e2e6d6b76", // "film/main.mkv"
    "e0a712",                     // size: 300_000
    AA32,                         // root
    "0b",                         // path: length 11 (é is two UTF-8 bytes)
    "66696c6d2fc3a92e737274",     // "film/é.srt"
    "01",                         // size: 1
    BB32,
    "06",           // path: length 6
    "524541444d45", // "README"
    "00",           // size: 0
    EMPTY_LEAF,
    "02",        // licence terms: length 2
    "4343",      // "CC"
    CREATED_HEX, // not_before
    "01",        // not_after: Some
    ENDS_HEX,
    "02",     // 2 regions, each a 2-byte string
    "024652", // "FR"
    "024445", // "DE"
];
const FULL_MANIFEST_LEN: &str = "cf01"; // 207 as a varint

/// The encoding of [`minimal_manifest`].
const MINIMAL_MANIFEST: &[&str] = &[
    "01", PUBLISHER, "0141",   // title "A"
    "00",     // description: None
    "00",     // created_at: 0 (zigzag 0)
    "808001", // chunk_size: 16 KiB = 0x4000
    "01",     // 1 file
    "0161",   // path "a"
    "01",     // size 1
    ZERO32,   // root
    "00",     // terms ""
    "01",     // not_before: -1 (zigzag 1)
    "00",     // not_after: None
    "00",     // regions: none (worldwide)
];

/// The encoding of [`delegation_all`]: 75 bytes.
const DELEGATION_ALL: &[&str] = &[
    PUBLISHER,
    DELEGATE,
    CREATED_HEX, // not_before
    ENDS_HEX,    // not_after
    "00",        // scope: AllManifests (variant 0, no fields)
];
const DELEGATION_ALL_LEN: &str = "4b"; // 75

/// The encoding of [`catalog`]: 182 bytes.
const CATALOG: &[&str] = &[
    PUBLISHER,
    "07", // sequence
    CREATED_HEX,
    CATALOG_EXPIRES_HEX,
    "02", // 2 entries
    ID11,
    "03",
    "4f6e65", // "One"
    ID22,
    "03",
    "54776f", // "Two"
    "01",     // 1 revoked manifest
    ID33,
    "01", // 1 revoked delegate
    DELEGATE,
];
const CATALOG_LEN: &str = "b601"; // 182

/// The catalog hash of the format-1 envelope of [`catalog`] signed by the publisher.
const CATALOG_HASH: &str = "a44e0bdc758dd30bc280700ee20dd3c0ba658471052ae2362a218978a0fb9500";

/// The encoding of the one bucket of [`catalog`] in format 2: 107 bytes.
const CATALOG_BUCKET: &[&str] = &[
    "01", // variant Bucket
    "02", // 2 entries
    ID11, "03", "4f6e65", // "One"
    ID22, "03", "54776f", // "Two"
    "01",     // 1 revoked manifest
    ID33,
];
/// SHA-256("licet/v1/catalog-part" ‖ [`CATALOG_BUCKET`]).
const CATALOG_BUCKET_HASH: &str =
    "4c48640aa901e3e8605bc6d3db87d0a00e19bfd3cc9ebfd2ff75995d660e209a";
/// The encoding of the one page of [`catalog`] in format 2: 34 bytes.
const CATALOG_PAGE: &[&str] = &[
    "00", // variant Page
    "01", // 1 bucket
    CATALOG_BUCKET_HASH,
];
/// SHA-256("licet/v1/catalog-part" ‖ [`CATALOG_PAGE`]).
const CATALOG_PAGE_HASH: &str = "2160f0bd392224e28b96713cb212c392ebea395c967158d18d96c31f8c7ec664";
/// The encoding of the root of [`catalog`] in format 2: 111 bytes.
const CATALOG_ROOT: &[&str] = &[
    "02", // format 2
    PUBLISHER,
    "07", // sequence
    CREATED_HEX,
    CATALOG_EXPIRES_HEX,
    "00", // bucket bits: one bucket
    "01", // 1 page
    CATALOG_PAGE_HASH,
    "01", // 1 revoked delegate
    DELEGATE,
];
const CATALOG_ROOT_LEN: &str = "6f"; // 111
/// The catalog hash of the root envelope of [`catalog`] signed by the publisher.
const CATALOG_ROOT_HASH: &str = "ba7f0878849c60b295521261ae137563a52d9fac6ff078cf801951b6f7e6b116";

/// A revoked licence's id in [`catalog_revoking_a_licence`].
const LICENCE44: &str = "4444444444444444444444444444444444444444444444444444444444444444";
/// The encoding of the one bucket of [`catalog_revoking_a_licence`]: 140 bytes.
const LICENCE_BUCKET: &[&str] = &[
    "02", // variant LicenceBucket
    "02", // 2 entries
    ID11, "03", "4f6e65", // "One"
    ID22, "03", "54776f", // "Two"
    "01",     // 1 revoked manifest
    ID33, "01", // 1 revoked licence
    LICENCE44,
];
/// SHA-256("licet/v1/catalog-part" ‖ [`LICENCE_BUCKET`]).
const LICENCE_BUCKET_HASH: &str =
    "4d3e6ec6a19c7a6ff8f69139ea336174dce54287466ba6523c9ef283deefb8ea";
/// The catalog hash of the root envelope of [`catalog_revoking_a_licence`].
const LICENCE_CATALOG_HASH: &str =
    "de8b9886dd038a327d181bc0fce2d354ea5c2099477f3306a5bbdfc3e6f0d8dc";

/// The catalog hash of [`forty_entries`] signed by the publisher, and SHA-256 of its whole file,
/// as the code before revoked licences existed wrote them (four buckets, one page).
const FORTY_ENTRIES_HASH: &str = "12267a5cf31b6d0fbed96b10df9630b2180be77f712fb93de6a07f949519c89c";
const FORTY_ENTRIES_FILE_SHA256: &str =
    "501561ff7f6005878bed38e7bbdb3c3cb254c1135bf7a3215f567f23f6eb9155";

/// The encoding of [`catalog_head`]: 70 bytes.
const CATALOG_HEAD: &[&str] = &[PUBLISHER, "07", CATALOG_EXPIRES_HEX, CATALOG_HASH];
const CATALOG_HEAD_LEN: &str = "46"; // 70

/// ed25519 signatures (deterministic, RFC 8032) of the fixtures above.
const SIG_MANIFEST: &str = concat!(
    "aed833c03e67d200b22fee071b3ce6602b152079c48518169b566da358a5af1c", // R
    "b476412af37ac2bf48f07d4ed814dd5cab01872f6c871305b614e4faef838101", // S
);
const SIG_MANIFEST_BY_DELEGATE: &str = concat!(
    "d649f8537c4768ea09aa9564862250433678c377fae5ee4123c51e5f49002a77", // R
    "2f1450b615d93f3ec5d1d3298fdab70bb471d4a9e9e9580b62f1360981354f04", // S
);
const SIG_DELEGATION: &str = concat!(
    "8e882ae99b0344b7b01237d29dc7ff940bc4a20e1a675cfc53c9d88260da470e", // R
    "721ac2815d2ba059062c4a868de4d91b5cbbb93cb154463cedea4467de8d7009", // S
);
const SIG_CATALOG: &str = concat!(
    "ee285e7f4a2f426d9c9b95bcbc58f09b4cea5fcab527fc5ddddfe1e06b4263a3", // R
    "36ed5180386912d4b70c3c52e80dc43c582ca86b9ad9c83f3a24aeeeb1a54609", // S
);
const SIG_CATALOG_ROOT: &str = concat!(
    "dd0c1463b3620ff6f31f810b3ad1df8e6e53add3ce01f7b81480903b34bdd97a", // R
    "9cb8b7ea7cfa5f57dd5f9dca0d8545cad1e6c3fbb6bb693f7786d0fb58d6e403", // S
);
const SIG_CATALOG_HEAD: &str = concat!(
    "9b918930d71c11da7ec11f8900d615e6538a064fa38f6b0c3e99faf711817eff", // R
    "a64662a87d2a0a08de753a42e5340f64eb68e240fe071a608396a200c30ef10e", // S
);

/// The carried delegation [`delegation_all`] signed by the publisher.
fn carried_delegation_parts() -> Vec<&'static str> {
    [
        &[PUBLISHER, DELEGATION_ALL_LEN],
        DELEGATION_ALL,
        &[SIG_DELEGATION],
    ]
    .concat()
}

fn publisher_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn delegate_key() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

fn path(text: &str) -> SafePath {
    SafePath::new(text).unwrap()
}

fn region(text: &str) -> Region {
    text.parse().unwrap()
}

fn full_manifest() -> Manifest {
    Manifest {
        version: 1,
        publisher: publisher_key().public_key(),
        title: "Film".into(),
        description: Some("Cut".into()),
        created_at: CREATED,
        chunk_size: 1 << 20,
        files: vec![
            FileEntry {
                path: path("film/main.mkv"),
                size: 300_000,
                root: MerkleHash([0xaa; 32]),
            },
            FileEntry {
                path: path("film/é.srt"),
                size: 1,
                root: MerkleHash([0xbb; 32]),
            },
            FileEntry {
                path: path("README"),
                size: 0,
                root: leaf_hash(&[]),
            },
        ],
        licence: Licence {
            terms: "CC".into(),
            not_before: CREATED,
            not_after: Some(ENDS),
            regions: vec![region("FR"), region("DE")],
        },
        encryption: None,
    }
}

fn minimal_manifest() -> Manifest {
    Manifest {
        version: 1,
        publisher: publisher_key().public_key(),
        title: "A".into(),
        description: None,
        created_at: Timestamp(0),
        chunk_size: 16 * 1024,
        files: vec![FileEntry {
            path: path("a"),
            size: 1,
            root: MerkleHash([0; 32]),
        }],
        licence: Licence {
            terms: String::new(),
            not_before: Timestamp(-1),
            not_after: None,
            regions: vec![],
        },
        encryption: None,
    }
}

fn delegation_all() -> Delegation {
    Delegation {
        publisher: publisher_key().public_key(),
        delegate: delegate_key().public_key(),
        not_before: CREATED,
        not_after: ENDS,
        scope: DelegationScope::AllManifests,
    }
}

fn catalog() -> Catalog {
    Catalog {
        publisher: publisher_key().public_key(),
        sequence: 7,
        issued_at: CREATED,
        expires_at: CATALOG_EXPIRES,
        entries: vec![
            CatalogEntry {
                manifest_id: ManifestId([0x11; 32]),
                title: "One".into(),
            },
            CatalogEntry {
                manifest_id: ManifestId([0x22; 32]),
                title: "Two".into(),
            },
        ],
        revoked_manifests: vec![ManifestId([0x33; 32])],
        revoked_delegates: vec![delegate_key().public_key()],
        revoked_licences: Vec::new(),
    }
}

/// [`catalog`], revoking the licence `44…44` too.
fn catalog_revoking_a_licence() -> Catalog {
    Catalog {
        revoked_licences: vec![LicenceId([0x44; 32])],
        ..catalog()
    }
}

/// Forty listed and five revoked manifests (four buckets), and a revoked delegate.
fn forty_entries() -> Catalog {
    Catalog {
        publisher: publisher_key().public_key(),
        sequence: 3,
        issued_at: CREATED,
        expires_at: CATALOG_EXPIRES,
        entries: (0u32..40)
            .map(|i| CatalogEntry {
                manifest_id: manifest_id(&i.to_le_bytes()),
                title: format!("Episode {i}"),
            })
            .collect(),
        revoked_manifests: (40u32..45).map(|i| manifest_id(&i.to_le_bytes())).collect(),
        revoked_delegates: vec![delegate_key().public_key()],
        revoked_licences: Vec::new(),
    }
}

fn catalog_envelope() -> Signed {
    Signed::sign(
        SignedKind::Catalog,
        encoding::encode(&catalog()),
        &publisher_key(),
        None,
    )
}

fn catalog_root() -> CatalogRoot {
    CatalogRoot {
        format: 2,
        publisher: publisher_key().public_key(),
        sequence: 7,
        issued_at: CREATED,
        expires_at: CATALOG_EXPIRES,
        bucket_bits: 0,
        pages: vec![catalog_part_hash(&encoding::encode(&catalog_page()))],
        revoked_delegates: vec![delegate_key().public_key()],
    }
}

fn catalog_bucket() -> CatalogPart {
    CatalogPart::Bucket {
        entries: catalog().entries,
        revoked_manifests: catalog().revoked_manifests,
    }
}

fn catalog_page() -> CatalogPart {
    CatalogPart::Page {
        buckets: vec![catalog_part_hash(&encoding::encode(&catalog_bucket()))],
    }
}

fn catalog_root_envelope() -> Signed {
    Signed::sign(
        SignedKind::CatalogRoot,
        encoding::encode(&catalog_root()),
        &publisher_key(),
        None,
    )
}

fn catalog_head() -> CatalogHead {
    CatalogHead {
        publisher: publisher_key().public_key(),
        sequence: 7,
        expires_at: CATALOG_EXPIRES,
        catalog_hash: catalog_hash(&catalog_envelope().encode()),
    }
}

fn carried_delegation() -> SignedDelegation {
    delegation_all()
        .sign(&publisher_key())
        .into_carried_delegation()
        .unwrap()
}

/// SHA-256 of `bytes` (a catalog part hash is domain-separated, so not that).
fn plain_sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn hex32(text: &str) -> [u8; 32] {
    let mut bytes = [0; 32];
    hex::decode_to_slice(text, &mut bytes).unwrap();
    bytes
}

/// Asserts that `value` encodes to exactly the concatenated `parts` and decodes back to itself.
#[track_caller]
fn golden<T>(value: &T, parts: &[&str])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let expected = parts.concat();
    let bytes = encoding::encode(value);
    assert_eq!(
        hex::encode(&bytes),
        expected,
        "the encoding of {value:?} drifted"
    );
    let back: T = encoding::decode("golden value", &bytes, bytes.len()).unwrap();
    assert_eq!(&back, value, "the golden bytes decode to another value");
}

// ---------------------------------------------------------------------------------------------
// Keys, hashes and ids.

#[test]
fn public_keys_of_fixed_seeds() {
    assert_eq!(publisher_key().public_key().to_hex(), PUBLISHER);
    assert_eq!(delegate_key().public_key().to_hex(), DELEGATE);
    golden(&publisher_key().public_key(), &[PUBLISHER]);
    golden(&PublicKey(hex32(DELEGATE)), &[DELEGATE]);
}

#[test]
fn fixed_size_ids_are_raw_bytes_without_a_length() {
    golden(&ManifestId([0x11; 32]), &[ID11]);
    golden(&MerkleHash([0xaa; 32]), &[AA32]);
    golden(&CatalogHash(hex32(CATALOG_HASH)), &[CATALOG_HASH]);
    golden(&CatalogHeadKey([0x22; 32]), &[ID22]);
}

#[test]
fn manifest_id_of_a_fixed_body() {
    let body = encoding::encode(&full_manifest());
    let id = manifest_id(&body);
    assert_eq!(
        id.to_hex(),
        "be8344bccd6d43e4c4e123612305780b94c189d4259083282e1c567e956304c4"
    );
    // The id depends on the body only, not on who signed it.
    let by_publisher = full_manifest().sign(&publisher_key(), None).unwrap();
    let by_delegate = full_manifest()
        .sign(&delegate_key(), Some(carried_delegation()))
        .unwrap();
    assert_eq!(by_publisher.id(), id);
    assert_eq!(by_delegate.id(), id);
    assert_eq!(
        by_publisher.share_link(&[]).to_string(),
        "licet:be8344bccd6d43e4c4e123612305780b94c189d4259083282e1c567e956304c4"
    );
    let peers = [
        "/ip4/10.0.0.1/tcp/4001".to_owned(),
        "/dns/a.example/udp/1/quic-v1".to_owned(),
    ];
    let link = by_publisher.share_link(&peers);
    let text = "licet:be8344bccd6d43e4c4e123612305780b94c189d4259083282e1c567e956304c4\
                ?peer=/ip4/10.0.0.1/tcp/4001&peer=/dns/a.example/udp/1/quic-v1";
    assert_eq!(link.to_string(), text);
    assert_eq!(text.parse::<ShareLink>().unwrap(), link);
}

#[test]
fn catalog_hash_and_head_key_of_fixed_values() {
    let envelope = catalog_envelope().encode();
    assert_eq!(catalog_hash(&envelope).to_hex(), CATALOG_HASH);
    // Format 1 is refused, naming its version.
    let err = VerifiedCatalog::from_bytes(&envelope).unwrap_err();
    assert_eq!(err, CatalogError::OldFormat { version: 1 });
    assert!(
        err.to_string().contains("catalog format 1 is not read"),
        "{err}"
    );
    // Format 2: the hash is of the root envelope, and Catalog::sign writes the same root as
    // signing the encoded root body by hand.
    let root = catalog_root_envelope().encode();
    assert_eq!(catalog_hash(&root).to_hex(), CATALOG_ROOT_HASH);
    let signed = catalog().sign(&publisher_key()).unwrap();
    assert_eq!(signed.root().envelope_bytes(), root.as_slice());
    assert_eq!(signed.hash().to_hex(), CATALOG_ROOT_HASH);
    assert_eq!(
        catalog_head_key(&publisher_key().public_key()).to_hex(),
        "e30dfd7b451d25eebce93889ca084af2877f203b1ae57e97f14cd812a1c9063a"
    );
    // The key the nodes subscribed to the publisher's gossip topic provide.
    assert_eq!(
        hex::encode(catalog_topic_key(&publisher_key().public_key())),
        "eee7a117ea5d1e2bb1a418c24bf29b617a017d3c0abea526789ee9f302747dfd"
    );
    // And the key of its delivery report topic.
    assert_eq!(
        hex::encode(licet_proto::delivery::deliveries_topic_key(
            &publisher_key().public_key()
        )),
        "bfc2fafb9d2e97b9394faa0c1269bcd37be12dfd41686ff636fee3b796637f6f"
    );
}

// ---------------------------------------------------------------------------------------------
// Scalars and validated types.

#[test]
fn timestamps_are_zigzag_varints() {
    golden(&Timestamp(0), &["00"]);
    golden(&Timestamp(1), &["02"]);
    golden(&Timestamp(-1), &["01"]);
    golden(&Timestamp(63), &["7e"]);
    golden(&Timestamp(-64), &["7f"]);
    golden(&Timestamp(64), &["8001"]);
    golden(&CREATED, &[CREATED_HEX]);
    golden(&ENDS, &[ENDS_HEX]);
    golden(&Timestamp(i64::MAX), &["feffffffffffffffff01"]);
    golden(&Timestamp(i64::MIN), &["ffffffffffffffffff01"]);
}

#[test]
fn safe_paths_are_length_prefixed_utf8() {
    golden(&path("a/b.mkv"), &["07", "612f622e6d6b76"]);
    golden(&path("é"), &["02", "c3a9"]);
}

#[test]
fn regions_are_two_byte_strings() {
    golden(&region("FR"), &["02", "4652"]);
    // Parsing upper-cases, so "de" and "DE" are the same region with one encoding.
    golden(&region("de"), &["02", "4445"]);
}

#[test]
fn audit_paths_are_a_count_then_raw_hashes() {
    golden(&AuditPath(vec![]), &["00"]);
    golden(
        &AuditPath(vec![MerkleHash([0xcc; 32]), MerkleHash([0xdd; 32])]),
        &["02", CC32, DD32],
    );
}

#[test]
fn bitfields_are_a_bit_length_then_bytes() {
    golden(&Bitfield::new(0), &["00", "00"]);
    let mut ten = Bitfield::new(10);
    ten.set(0, true);
    ten.set(9, true);
    golden(&ten, &["0a", "02", "0102"]); // 10 bits; 2 bytes; bit 0, then bit 9 = bit 1 of byte 1
    let mut eight = Bitfield::new(8);
    (0..8).for_each(|i| eight.set(i, true));
    golden(&eight, &["08", "01", "ff"]);
    let mut nine = Bitfield::new(9);
    nine.set(8, true);
    golden(&nine, &["09", "02", "0001"]);
}

#[test]
fn enum_variant_indexes_are_append_only() {
    let kinds = [
        (SignedKind::Manifest, "00"),
        (SignedKind::Delegation, "01"),
        (SignedKind::Catalog, "02"),
        (SignedKind::CatalogHead, "03"),
        (SignedKind::CatalogRoot, "04"),
        (SignedKind::Licence, "05"),
        (SignedKind::DeliveryReport, "06"),
    ];
    for (kind, hex) in kinds {
        golden(&kind, &[hex]);
    }
    let reasons = [
        (RefusalReason::UntrustedPublisher, "00"),
        (RefusalReason::InvalidSignature, "01"),
        (RefusalReason::InvalidDelegation, "02"),
        (RefusalReason::DelegationNotValidNow, "03"),
        (RefusalReason::DelegateRevoked, "04"),
        (RefusalReason::NotYetValid, "05"),
        (RefusalReason::Expired, "06"),
        (RefusalReason::RegionNotLicensed, "07"),
        (RefusalReason::Revoked, "08"),
        (RefusalReason::NotInCatalog, "09"),
        (RefusalReason::NoValidCatalog, "0a"),
        (RefusalReason::NotHeld, "0b"),
        (RefusalReason::BadRequest, "0c"),
    ];
    for (reason, hex) in reasons {
        golden(&reason, &[hex]);
    }
    // `RefusalReason::ALL` lists every reason, in wire order (metrics rely on it).
    assert_eq!(
        RefusalReason::ALL.to_vec(),
        reasons.map(|(r, _)| r).to_vec()
    );
    assert!(
        postcard::from_bytes::<RefusalReason>(&[RefusalReason::ALL.len() as u8]).is_err(),
        "a reason past RefusalReason::ALL exists: add it there"
    );
    golden(&DelegationScope::AllManifests, &["00"]);
    golden(
        &DelegationScope::TitlePrefix("Film".into()),
        &["01", "04", "46696c6d"],
    );
}

#[test]
fn trusted_publisher_settings() {
    golden(&TrustedPublisher::default(), &["00", "00"]);
    golden(
        &TrustedPublisher {
            name: Some("Acme".into()),
            require_catalog: true,
        },
        &["01", "04", "41636d65", "01"],
    );
}

// ---------------------------------------------------------------------------------------------
// Signed bodies.

#[test]
fn manifest_with_description_regions_and_several_files() {
    golden(&full_manifest(), FULL_MANIFEST);
    full_manifest().validate().unwrap();
}

#[test]
fn manifest_without_description_end_or_regions() {
    golden(&minimal_manifest(), MINIMAL_MANIFEST);
    minimal_manifest().validate().unwrap();
}

#[test]
fn file_entry_and_licence() {
    golden(
        &FileEntry {
            path: path("README"),
            size: 0,
            root: leaf_hash(&[]),
        },
        &["06", "524541444d45", "00", EMPTY_LEAF],
    );
    golden(
        &full_manifest().licence,
        &[
            "02",
            "4343",
            CREATED_HEX,
            "01",
            ENDS_HEX,
            "02",
            "024652",
            "024445",
        ],
    );
}

#[test]
fn delegation_for_all_manifests() {
    golden(&delegation_all(), DELEGATION_ALL);
}

#[test]
fn delegation_for_a_title_prefix() {
    let delegation = Delegation {
        scope: DelegationScope::TitlePrefix("Film".into()),
        ..delegation_all()
    };
    golden(
        &delegation,
        &[
            PUBLISHER,
            DELEGATE,
            CREATED_HEX,
            ENDS_HEX,
            "01",
            "04",
            "46696c6d",
        ],
    );
}

#[test]
fn catalog_with_entries_and_revocations() {
    golden(&catalog(), CATALOG);
    catalog().validate().unwrap();
}

#[test]
fn empty_catalog_at_the_highest_sequence() {
    let empty = Catalog {
        publisher: publisher_key().public_key(),
        sequence: u64::MAX,
        issued_at: Timestamp(0),
        expires_at: Timestamp(1),
        entries: vec![],
        revoked_manifests: vec![],
        revoked_delegates: vec![],
        revoked_licences: Vec::new(),
    };
    golden(
        &empty,
        &[
            PUBLISHER,
            "ffffffffffffffffff01", // u64::MAX: a 10-byte varint
            "00",
            "02",
            "00",
            "00",
            "00",
        ],
    );
    golden(
        &CatalogEntry {
            manifest_id: ManifestId([0x11; 32]),
            title: "One".into(),
        },
        &[ID11, "03", "4f6e65"],
    );
}

#[test]
fn catalog_root_page_and_bucket() {
    golden(&catalog_bucket(), CATALOG_BUCKET);
    assert_eq!(
        catalog_part_hash(&encoding::encode(&catalog_bucket())).to_hex(),
        CATALOG_BUCKET_HASH
    );
    golden(&catalog_page(), CATALOG_PAGE);
    assert_eq!(
        catalog_part_hash(&encoding::encode(&catalog_page())).to_hex(),
        CATALOG_PAGE_HASH
    );
    golden(&catalog_root(), CATALOG_ROOT);
    assert_eq!(
        hex::encode([encoding::encode(&catalog_root()).len() as u8]),
        CATALOG_ROOT_LEN
    );
    catalog_root().validate().unwrap();
}

#[test]
fn a_catalog_without_revoked_licences_signs_exactly_as_before_they_existed() {
    // One bucket: its part is a plain `Bucket`, root and hash the goldens above.
    let signed = catalog().sign(&publisher_key()).unwrap();
    assert_eq!(signed.hash().to_hex(), CATALOG_ROOT_HASH);
    let bucket = encoding::encode(&catalog_bucket());
    assert_eq!(hex::encode(&bucket), CATALOG_BUCKET.concat());
    assert_eq!(
        signed.part(&catalog_part_hash(&bucket)),
        Some(bucket.as_slice())
    );
    assert_eq!(signed.parts_size().0, 2);
    // Four buckets: the same catalog hash and file as before revoked licences existed.
    let signed = forty_entries().sign(&publisher_key()).unwrap();
    assert_eq!(signed.root().root().bucket_bits, 2);
    assert_eq!(signed.hash().to_hex(), FORTY_ENTRIES_HASH);
    assert_eq!(
        hex::encode(plain_sha256(&signed.to_file_bytes())),
        FORTY_ENTRIES_FILE_SHA256
    );
    assert_eq!(signed.parts_size().0, 5);
    // And the file still verifies to the same catalog, revoking no licence.
    let back = VerifiedCatalog::from_bytes(&signed.to_file_bytes()).unwrap();
    let mut canonical = forty_entries();
    canonical.canonicalize();
    assert_eq!(back.catalog(), &canonical);
    assert!(back.catalog().revoked_licences.is_empty());
}

#[test]
fn catalog_revoking_a_licence_writes_a_licence_bucket() {
    let bucket = CatalogPart::LicenceBucket {
        entries: catalog().entries,
        revoked_manifests: catalog().revoked_manifests,
        revoked_licences: vec![LicenceId([0x44; 32])],
    };
    golden(&bucket, LICENCE_BUCKET);
    let bucket = encoding::encode(&bucket);
    assert_eq!(catalog_part_hash(&bucket).to_hex(), LICENCE_BUCKET_HASH);
    let signed = catalog_revoking_a_licence().sign(&publisher_key()).unwrap();
    assert_eq!(
        signed.part(&catalog_part_hash(&bucket)),
        Some(bucket.as_slice())
    );
    let page = encoding::encode(&CatalogPart::Page {
        buckets: vec![catalog_part_hash(&bucket)],
    });
    assert_eq!(
        hex::encode(&page),
        ["00", "01", LICENCE_BUCKET_HASH].concat()
    );
    // The root is the one of `catalog` but for the page it names.
    let root = CatalogRoot {
        pages: vec![catalog_part_hash(&page)],
        ..catalog_root()
    };
    assert_eq!(signed.root().root(), &root);
    assert_eq!(signed.hash().to_hex(), LICENCE_CATALOG_HASH);
    let back = VerifiedCatalog::from_bytes(&signed.to_file_bytes()).unwrap();
    assert_eq!(back.catalog(), &catalog_revoking_a_licence());
    assert!(back.catalog().revokes_licence(&LicenceId([0x44; 32])));
    assert!(!back.catalog().revokes_licence(&LicenceId([0x45; 32])));
}

#[test]
fn catalog_file_is_the_root_then_each_part_pages_first() {
    let root = catalog_root_envelope().encode();
    let page = encoding::encode(&catalog_page());
    let bucket = encoding::encode(&catalog_bucket());
    let file = CatalogFile {
        format: 2,
        root: root.clone(),
        parts: vec![page.clone(), bucket.clone()],
    };
    let root_len = hex::encode([0x80 | (root.len() & 0x7f) as u8, (root.len() >> 7) as u8]);
    golden(
        &file,
        &[
            "02",
            &root_len,
            &hex::encode(&root),
            "02", // 2 parts
            &hex::encode([page.len() as u8]),
            &hex::encode(&page),
            &hex::encode([bucket.len() as u8]),
            &hex::encode(&bucket),
        ],
    );
    let signed = catalog().sign(&publisher_key()).unwrap();
    assert_eq!(signed.to_file_bytes(), encoding::encode(&file));
    let back = VerifiedCatalog::from_bytes(&encoding::encode(&file)).unwrap();
    assert_eq!(back.catalog(), &catalog());
}

#[test]
fn catalog_head_body() {
    golden(&catalog_head(), CATALOG_HEAD);
}

// ---------------------------------------------------------------------------------------------
// Envelopes.

#[test]
fn signing_message_is_domain_separated_by_kind() {
    let cases = [
        (SignedKind::Manifest, "6d616e6966657374"),
        (SignedKind::Delegation, "64656c65676174696f6e"),
        (SignedKind::Catalog, "636174616c6f67"),
        (SignedKind::CatalogHead, "636174616c6f672d68656164"),
        (SignedKind::CatalogRoot, "636174616c6f672d726f6f74"),
    ];
    for (kind, name) in cases {
        assert_eq!(
            hex::encode(signing_message(kind, &[1, 2])),
            // "licet/v1/" ‖ name ‖ 0x00 ‖ body
            ["6c696365742f76312f", name, "00", "0102"].concat(),
            "{kind:?}"
        );
        assert_eq!(
            hex::encode(signing_message(kind, &[])),
            ["6c696365742f76312f", name, "00"].concat()
        );
    }
}

/// Every envelope kind signed by the publisher, with its golden segments.
fn publisher_envelopes() -> Vec<(Signed, Vec<&'static str>)> {
    let key = publisher_key();
    let sign = |kind, body| Signed::sign(kind, body, &key, None);
    vec![
        (
            sign(SignedKind::Manifest, encoding::encode(&full_manifest())),
            [
                &["00", PUBLISHER, FULL_MANIFEST_LEN],
                FULL_MANIFEST,
                &[SIG_MANIFEST, "00"],
            ]
            .concat(),
        ),
        (
            sign(SignedKind::Delegation, encoding::encode(&delegation_all())),
            [
                &["01", PUBLISHER, DELEGATION_ALL_LEN],
                DELEGATION_ALL,
                &[SIG_DELEGATION, "00"],
            ]
            .concat(),
        ),
        (
            sign(SignedKind::Catalog, encoding::encode(&catalog())),
            [
                &["02", PUBLISHER, CATALOG_LEN],
                CATALOG,
                &[SIG_CATALOG, "00"],
            ]
            .concat(),
        ),
        (
            sign(SignedKind::CatalogHead, encoding::encode(&catalog_head())),
            [
                &["03", PUBLISHER, CATALOG_HEAD_LEN],
                CATALOG_HEAD,
                &[SIG_CATALOG_HEAD, "00"],
            ]
            .concat(),
        ),
        (
            catalog_root_envelope(),
            [
                &["04", PUBLISHER, CATALOG_ROOT_LEN],
                CATALOG_ROOT,
                &[SIG_CATALOG_ROOT, "00"],
            ]
            .concat(),
        ),
    ]
}

#[test]
fn envelope_of_each_kind_without_a_delegation() {
    let envelopes = publisher_envelopes();
    for (envelope, parts) in &envelopes {
        golden(envelope, parts);
        assert_eq!(hex::encode(envelope.encode()), parts.concat());
        assert_eq!(
            Signed::decode_kind(&envelope.encode(), envelope.kind).unwrap(),
            *envelope
        );
        envelope.verify_signature().unwrap();
    }
    // And each is a valid object of its kind.
    VerifiedManifest::from_bytes(&envelopes[0].0.encode()).unwrap();
    Delegation::verify_envelope(&envelopes[1].0).unwrap();
    // Format 1 is refused by name; its head is still a valid head (of a catalog never read).
    assert_eq!(
        VerifiedCatalog::from_bytes(&envelopes[2].0.encode()).unwrap_err(),
        CatalogError::OldFormat { version: 1 }
    );
    VerifiedCatalogHead::from_bytes(&envelopes[3].0.encode()).unwrap();
    let root = licet_proto::catalog::VerifiedCatalogRoot::from_bytes(&envelopes[4].0.encode());
    assert_eq!(root.unwrap().root(), &catalog_root());
}

#[test]
fn envelope_of_each_kind_with_a_carried_delegation() {
    // The carried delegation is outside the signed message: adding one changes only the last
    // field, from `00` (None) to `01` and the delegation's signer, body and signature.
    for (envelope, parts) in publisher_envelopes() {
        let with = Signed {
            delegation: Some(carried_delegation()),
            ..envelope
        };
        let mut expected = parts[..parts.len() - 1].to_vec();
        expected.push("01");
        expected.extend(carried_delegation_parts());
        golden(&with, &expected);
    }
}

#[test]
fn manifest_signed_by_a_delegate() {
    let verified = full_manifest()
        .sign(&delegate_key(), Some(carried_delegation()))
        .unwrap();
    let parts = [
        &["00", DELEGATE, FULL_MANIFEST_LEN],
        FULL_MANIFEST,
        &[SIG_MANIFEST_BY_DELEGATE, "01"],
        &carried_delegation_parts(),
    ]
    .concat();
    golden(verified.envelope(), &parts);
    let back = VerifiedManifest::from_bytes(&verified.envelope().encode()).unwrap();
    assert_eq!(back.delegation(), Some(&delegation_all()));
    assert_eq!(back.signer().to_hex(), DELEGATE);
}

#[test]
fn carried_delegation_alone() {
    golden(&carried_delegation(), &carried_delegation_parts());
}

#[test]
fn signed_helpers_produce_the_golden_envelopes() {
    // Manifest::sign, Catalog::sign and VerifiedCatalog::head write the same bytes as the
    // generic envelope above.
    let envelopes = publisher_envelopes();
    let manifest = full_manifest().sign(&publisher_key(), None).unwrap();
    assert_eq!(manifest.envelope(), &envelopes[0].0);
    assert_eq!(delegation_all().sign(&publisher_key()), envelopes[1].0);
    let catalog = catalog().sign(&publisher_key()).unwrap();
    assert_eq!(catalog.root().envelope_bytes(), envelopes[4].0.encode());
    let head = catalog.head(&publisher_key()).unwrap();
    assert_eq!(head.head().catalog_hash.to_hex(), CATALOG_ROOT_HASH);
}

// ---------------------------------------------------------------------------------------------
// Wire messages.

fn request_frames() -> Vec<(RequestFrame, Vec<&'static str>)> {
    let frame = |id, request| RequestFrame {
        id: RequestId(id),
        request,
    };
    vec![
        (
            frame(
                0,
                Request::Manifest {
                    id: ManifestId([0x11; 32]),
                },
            ),
            vec!["00", "00", ID11], // id 0; variant 0; manifest id
        ),
        (
            frame(
                1,
                Request::Availability {
                    manifest: ManifestId([0x22; 32]),
                },
            ),
            vec!["01", "01", ID22],
        ),
        (
            frame(
                300,
                Request::Chunk {
                    manifest: ManifestId([0x33; 32]),
                    file: 2,
                    index: 1_000_000,
                },
            ),
            vec!["ac02", "02", ID33, "02", "c0843d"], // id 300; variant 2; id; file 2; index
        ),
        (
            frame(
                u32::MAX,
                Request::CatalogHead {
                    publisher: publisher_key().public_key(),
                },
            ),
            vec!["ffffffff0f", "03", PUBLISHER],
        ),
        (
            frame(
                5,
                Request::CatalogPart {
                    publisher: publisher_key().public_key(),
                    catalog_hash: CatalogHash(hex32(CATALOG_HASH)),
                    offset: 1 << 20,
                },
            ),
            vec!["05", "04", PUBLISHER, CATALOG_HASH, "808040"],
        ),
        (
            frame(
                7,
                Request::ChunkForRegion {
                    manifest: ManifestId([0x33; 32]),
                    file: 2,
                    index: 1_000_000,
                    region: "FR".parse().unwrap(),
                },
            ),
            // id 7; variant 5; id; file 2; index; region "FR" as a string of 2 bytes
            vec!["07", "05", ID33, "02", "c0843d", "024652"],
        ),
        (
            frame(
                8,
                Request::Peers {
                    manifest: ManifestId([0x22; 32]),
                },
            ),
            vec!["08", "06", ID22], // id 8; variant 6; manifest id
        ),
        (
            frame(
                9,
                Request::CatalogParts {
                    publisher: publisher_key().public_key(),
                    hashes: vec![
                        CatalogPartHash(hex32(CATALOG_PAGE_HASH)),
                        CatalogPartHash(hex32(CATALOG_BUCKET_HASH)),
                    ],
                },
            ),
            // id 9; variant 7; publisher; 2 hashes
            vec![
                "09",
                "07",
                PUBLISHER,
                "02",
                CATALOG_PAGE_HASH,
                CATALOG_BUCKET_HASH,
            ],
        ),
        (frame(10, Request::Time), vec!["0a", "08"]), // id 10; variant 8
    ]
}

fn response_frames() -> Vec<(ResponseFrame, Vec<&'static str>)> {
    let frame = |id, response| ResponseFrame {
        id: RequestId(id),
        response,
    };
    let mut ten = Bitfield::new(10);
    ten.set(0, true);
    ten.set(9, true);
    vec![
        (
            frame(
                0,
                Response::Manifest {
                    envelope: vec![1, 2, 3],
                },
            ),
            vec!["00", "00", "03", "010203"],
        ),
        (
            frame(
                1,
                Response::Availability {
                    files: vec![ten, Bitfield::new(0)],
                },
            ),
            vec!["01", "01", "02", "0a020102", "0000"], // 2 bitfields
        ),
        (
            frame(
                2,
                Response::Chunk {
                    proof: AuditPath(vec![MerkleHash([0xcc; 32]), MerkleHash([0xdd; 32])]),
                    len: 16 * 1024,
                },
            ),
            vec!["02", "02", "02", CC32, DD32, "808001"], // proof of 2 hashes; len 16 KiB
        ),
        (
            frame(3, Response::CatalogHead { envelope: vec![] }),
            vec!["03", "03", "00"],
        ),
        (
            frame(
                4,
                Response::CatalogPart {
                    total_len: 3_000_000,
                    offset: 1 << 20,
                    len: 1 << 20,
                },
            ),
            vec!["04", "04", "c08db701", "808040", "808040"],
        ),
        (
            frame(
                5,
                Response::Refused {
                    reason: RefusalReason::Expired,
                    detail: "ended".into(),
                },
            ),
            vec!["05", "05", "06", "05", "656e646564"], // reason Expired = 6; "ended"
        ),
        (
            frame(
                300,
                Response::Busy {
                    retry_after_ms: 1500,
                },
            ),
            vec!["ac02", "06", "dc0b"],
        ),
        (
            frame(
                9,
                Response::Peers {
                    peers: vec![wire::PeerContact {
                        peer: vec![0xaa, 0xbb],
                        addrs: vec![vec![0x04, 1, 2, 3, 4], vec![]],
                    }],
                },
            ),
            // id 9; variant 7; one contact: a 2-byte id, two addresses of 5 and 0 bytes
            vec!["09", "07", "01", "02aabb", "02", "050401020304", "00"],
        ),
        (
            frame(
                10,
                Response::CatalogParts {
                    lens: vec![34, 107],
                },
            ),
            // id 10; variant 8; 2 lengths (the page and bucket above, 141 bytes, follow as the
            // payload)
            vec!["0a", "08", "02", "22", "6b"],
        ),
        (
            frame(11, Response::Time { unix_seconds: -2 }),
            vec!["0b", "09", "03"], // id 11; variant 9; -2 zigzag-encoded
        ),
    ]
}

#[test]
fn request_frame_of_each_variant() {
    for (frame, parts) in request_frames() {
        golden(&frame, &parts);
        golden(&frame.request, &parts[1..]);
    }
    golden(&RequestId(300), &["ac02"]);
}

#[test]
fn response_frame_of_each_variant() {
    for (frame, parts) in response_frames() {
        golden(&frame, &parts);
        golden(&frame.response, &parts[1..]);
    }
}

#[test]
fn whole_request_frames_are_length_prefixed() {
    for (frame, parts) in request_frames() {
        let header = parts.concat();
        let len = u32::try_from(header.len() / 2).unwrap();
        let mut out = vec![0xee]; // encode_request appends to what is already there
        encode_request(&frame, &mut out);
        assert_eq!(
            hex::encode(&out),
            format!("ee{}{header}", hex::encode(len.to_le_bytes()))
        );
        let body = &out[1 + wire::LENGTH_PREFIX_BYTES..];
        assert_eq!(
            wire::frame_length(out[1..5].try_into().unwrap()).unwrap(),
            body.len()
        );
        assert_eq!(decode_request(body).unwrap(), frame);
    }
    // One fully literal frame: length 34 = 0x22, little-endian.
    let mut out = Vec::new();
    encode_request(&request_frames()[0].0, &mut out);
    assert_eq!(hex::encode(&out), ["22000000", "00", "00", ID11].concat());
}

#[test]
fn whole_response_frames_count_the_payload_in_their_length() {
    // A chunk header of 70 bytes announcing 16 KiB: 70 + 16_384 = 16_454 = 0x4046.
    let (chunk, parts) = response_frames().swap_remove(2);
    let mut out = Vec::new();
    encode_response_header(&chunk, &mut out);
    assert_eq!(hex::encode(&out), format!("46400000{}", parts.concat()));
    let payload = vec![0x5a; 16 * 1024];
    let mut body = out[wire::LENGTH_PREFIX_BYTES..].to_vec();
    body.extend_from_slice(&payload);
    assert_eq!(
        wire::frame_length(out[..4].try_into().unwrap()).unwrap(),
        body.len()
    );
    let (decoded, got) = decode_response(&body).unwrap();
    assert_eq!(decoded, chunk);
    assert_eq!(got, payload.as_slice());

    // Frames without a payload: the length is the header's alone.
    for (frame, parts) in response_frames() {
        let header = parts.concat();
        let mut out = Vec::new();
        encode_response_header(&frame, &mut out);
        let payload_len = match frame.response {
            Response::Chunk { len, .. } | Response::CatalogPart { len, .. } => len,
            Response::CatalogParts { ref lens } => lens.iter().sum(),
            _ => 0,
        };
        let len = u32::try_from(header.len() / 2).unwrap() + payload_len;
        assert_eq!(
            hex::encode(&out),
            format!("{}{header}", hex::encode(len.to_le_bytes()))
        );
    }
    let mut busy = Vec::new();
    encode_response_header(&response_frames()[6].0, &mut busy);
    assert_eq!(hex::encode(&busy), "05000000ac0206dc0b");
}
