//! Encrypted releases and licences: known answers (RFC 9180's HPKE vector, and our own chunked
//! AEAD vectors cross-checked against Python `cryptography`'s HKDF and ChaCha20-Poly1305),
//! golden bytes of the new formats, round trips at edge sizes, and tampering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "clippy.toml's allow-*-in-tests covers #[test] bodies, not these test helpers"
)]

use hpke::{
    Deserializable as _, Kem as _, OpModeR, Serializable as _, aead::ChaCha20Poly1305,
    kdf::HkdfSha256, kem::X25519HkdfSha256,
};
use licet_proto::{
    ContentKeyId, ManifestId, MerkleHash, SecretKey, Timestamp, encoding,
    encryption::{ContentKey, EncryptionAlgorithm, TAG_BYTES, ciphertext_size, segment_bytes},
    licence::{
        ContentLicence, LICENCE_FORMAT_VERSION, LicenceError, SealedKey, VerifiedLicence,
        seal_content_key,
    },
    manifest::{
        ENCRYPTED_MANIFEST_FORMAT_VERSION, FileEntry, Licence, Manifest, ManifestError,
        ReleaseEncryption, VerifiedManifest,
    },
    path::SafePath,
    signed::{Signed, SignedKind},
};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

const CHUNK: u32 = 16 * 1024;

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

#[test]
fn hpke_opens_rfc_9180_vector_a_2_1() {
    // RFC 9180 appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base
    // mode, sequence number 0: the suite licences use.
    let (secret, public) = X25519HkdfSha256::derive_keypair(&unhex(
        "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df",
    ));
    // skRm as the RFC prints it (unclamped) and as the crate keeps it (clamped) are one key.
    let rfc_secret = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(&unhex(
        "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
    ))
    .unwrap();
    assert_eq!(
        X25519HkdfSha256::sk_to_pk(&rfc_secret).to_bytes(),
        public.to_bytes()
    );
    assert_eq!(
        hex::encode(public.to_bytes()),
        "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a"
    );
    let encapsulated = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&unhex(
        "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
    ))
    .unwrap();
    let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &secret,
        &encapsulated,
        &unhex("4f6465206f6e2061204772656369616e2055726e"),
        &unhex("1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28"),
        &unhex("436f756e742d30"),
    )
    .unwrap();
    assert_eq!(plaintext, b"Beauty is truth, truth beauty");
}

#[test]
fn content_key_id_and_segments_match_known_answers() {
    let key = ContentKey::from_bytes([0x42; 32]);
    assert_eq!(
        key.id().to_hex(),
        "79d7f2620926093b16167f922a6396083bd2853a16c5ce3d616ef0acde8decca"
    );
    // One last segment of file 0: "licet" then its tag.
    let file0 = key.file_cipher(0, CHUNK);
    assert_eq!(
        hex::encode(file0.seal_all(b"licet")),
        "bb77ae21dd1eee20b902ecb5c2f650657e1051a744"
    );
    // An empty file 1 is one empty last segment: a tag alone.
    assert_eq!(
        hex::encode(key.file_cipher(1, CHUNK).seal_all(b"")),
        "5186753a8261a506de6b614651bf14c3"
    );
    // Two segments: a full one (not last) and one byte (last).
    let plain: Vec<u8> = (0..segment_bytes(CHUNK) + 1)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let sealed = file0.seal_all(&plain);
    assert_eq!(sealed.len(), 16401);
    assert_eq!(
        hex::encode(Sha256::digest(&sealed)),
        "f8c1f4c54b8febe470eef2757da98efc2872378c810ea3523ce4b4a3da0141b1"
    );
}

fn sizes_to_test() -> Vec<u64> {
    let seg = segment_bytes(CHUNK);
    vec![0, 1, seg - 1, seg, seg + 1, 2 * seg, 5 * seg + 3]
}

#[test]
fn every_edge_size_round_trips_and_fills_whole_chunks() {
    let key = ContentKey::from_bytes([7; 32]);
    for size in sizes_to_test() {
        let plain: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let cipher = key.file_cipher(3, CHUNK);
        let sealed = cipher.seal_all(&plain);
        assert_eq!(sealed.len() as u64, ciphertext_size(size, CHUNK), "{size}");
        // Every ciphertext chunk but the last is exactly a merkle chunk.
        let chunks: Vec<&[u8]> = sealed.chunks(CHUNK as usize).collect();
        for chunk in &chunks[..chunks.len() - 1] {
            assert_eq!(chunk.len(), CHUNK as usize);
        }
        assert_eq!(cipher.open_all(&sealed, size).unwrap(), plain, "{size}");
        // Each chunk decrypts on its own.
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            let mut buffer = chunk.to_vec();
            cipher
                .open_segment(i as u64, i == last, &mut buffer)
                .unwrap();
            let start = i * segment_bytes(CHUNK) as usize;
            assert_eq!(buffer, plain[start..start + buffer.len()]);
        }
    }
}

#[test]
fn truncation_reordering_swapping_and_flipped_bits_are_detected() {
    let key = ContentKey::from_bytes([8; 32]);
    let seg = segment_bytes(CHUNK);
    let plain: Vec<u8> = (0..3 * seg + 10).map(|i| (i % 241) as u8).collect();
    let cipher = key.file_cipher(0, CHUNK);
    let sealed = cipher.seal_all(&plain);
    let chunk = CHUNK as usize;
    let size = plain.len() as u64;

    // Truncation: the file ends after chunk 2, whose flag says "not last".
    let truncated = &sealed[..3 * chunk];
    assert!(cipher.open_all(truncated, 3 * seg).is_err());
    let mut chunk2 = sealed[2 * chunk..3 * chunk].to_vec();
    let err = cipher.open_segment(2, true, &mut chunk2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "chunk 2 does not decrypt: it was altered, moved, cut short, or the key is another release's"
    );

    // Reordering: chunks 0 and 1 swapped.
    let mut reordered = sealed.clone();
    reordered[..chunk].copy_from_slice(&sealed[chunk..2 * chunk]);
    reordered[chunk..2 * chunk].copy_from_slice(&sealed[..chunk]);
    assert!(cipher.open_all(&reordered, size).is_err());

    // Swapping between files: chunk 0 of file 0 given as chunk 0 of file 1.
    let other_file = key.file_cipher(1, CHUNK);
    let mut moved = sealed[..chunk].to_vec();
    assert!(other_file.open_segment(0, false, &mut moved).is_err());
    // And another release's key.
    let other_key = ContentKey::from_bytes([9; 32]).file_cipher(0, CHUNK);
    let mut foreign = sealed[..chunk].to_vec();
    assert!(other_key.open_segment(0, false, &mut foreign).is_err());

    // A flipped bit anywhere, in data or tag.
    for position in [0, chunk - 1, chunk + 5, sealed.len() - 1] {
        let mut flipped = sealed.clone();
        flipped[position] ^= 0x01;
        assert!(cipher.open_all(&flipped, size).is_err(), "{position}");
    }
    // And the untouched ciphertext still opens.
    assert_eq!(cipher.open_all(&sealed, size).unwrap(), plain);
}

proptest! {
    #[test]
    fn any_plaintext_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..40_000), index in 0u64..4) {
        let key = ContentKey::from_bytes([5; 32]);
        let cipher = key.file_cipher(index, CHUNK);
        let sealed = cipher.seal_all(&plain);
        prop_assert_eq!(sealed.len() as u64, ciphertext_size(plain.len() as u64, CHUNK));
        prop_assert_eq!(cipher.open_all(&sealed, plain.len() as u64).unwrap(), plain);
    }
}

fn publisher_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn buyer_key() -> SecretKey {
    SecretKey::from_seed(&[5; 32])
}

fn encrypted_manifest(key: &ContentKey, plaintext_sizes: &[u64]) -> Manifest {
    Manifest {
        version: ENCRYPTED_MANIFEST_FORMAT_VERSION,
        publisher: publisher_key().public_key(),
        title: "Paid".into(),
        description: None,
        created_at: Timestamp(1_800_000_000),
        chunk_size: CHUNK,
        files: plaintext_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| FileEntry {
                path: SafePath::new(format!("f{i}")).unwrap(),
                size: ciphertext_size(size, CHUNK),
                root: MerkleHash([0xaa; 32]),
            })
            .collect(),
        licence: Licence {
            terms: String::new(),
            not_before: Timestamp(0),
            not_after: None,
            regions: vec![],
        },
        encryption: Some(ReleaseEncryption {
            algorithm: EncryptionAlgorithm::ChaCha20Poly1305Stream,
            key_id: key.id(),
            plaintext_sizes: plaintext_sizes.to_vec(),
        }),
    }
}

#[test]
fn an_encrypted_manifest_is_version_2_with_its_encryption_last() {
    let key = ContentKey::from_bytes([0x42; 32]);
    let manifest = encrypted_manifest(&key, &[5]);
    let bytes = encoding::encode(&manifest);
    // Version 2, then the version 1 fields, then the encryption: algorithm 0, key id, one size.
    assert_eq!(bytes[0], 2);
    let tail = [
        "00",
        "79d7f2620926093b16167f922a6396083bd2853a16c5ce3d616ef0acde8decca",
        "01",
        "05",
    ]
    .concat();
    assert!(
        hex::encode(&bytes).ends_with(&tail),
        "{}",
        hex::encode(&bytes)
    );
    let back: Manifest = encoding::decode("manifest", &bytes, bytes.len()).unwrap();
    assert_eq!(back, manifest);
    let verified = manifest.sign(&publisher_key(), None).unwrap();
    assert_eq!(verified.manifest().encryption, manifest.encryption);

    // A version 1 body of the same fields is the same bytes without the encryption.
    let mut clear = manifest.clone();
    clear.version = 1;
    clear.encryption = None;
    let clear_bytes = encoding::encode(&clear);
    assert_eq!(&bytes[1..clear_bytes.len()], &clear_bytes[1..]);
}

#[test]
fn an_encryption_that_does_not_fit_the_files_is_refused() {
    let key = ContentKey::from_bytes([1; 32]);
    let mut manifest = encrypted_manifest(&key, &[100]);
    manifest.files[0].size = 100;
    let err = manifest.sign(&publisher_key(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the manifest's encryption does not fit its files: file f0 is 100 bytes, but a 100-byte plaintext encrypts to 116"
    );
    let mut manifest = encrypted_manifest(&key, &[1, 2]);
    manifest.encryption.as_mut().unwrap().plaintext_sizes.pop();
    assert!(matches!(
        manifest.sign(&publisher_key(), None),
        Err(ManifestError::BadEncryption(_))
    ));
    let mut manifest = encrypted_manifest(&key, &[1]);
    manifest.version = 1;
    assert!(matches!(
        manifest.sign(&publisher_key(), None),
        Err(ManifestError::BadEncryption(_))
    ));
}

fn licence_for(manifest: &VerifiedManifest, key: &ContentKey, to: &SecretKey) -> ContentLicence {
    ContentLicence {
        version: LICENCE_FORMAT_VERSION,
        publisher: publisher_key().public_key(),
        manifest_id: manifest.id(),
        key_id: key.id(),
        recipient: to.public_key(),
        issued_at: Timestamp(1_800_000_000),
        not_before: Timestamp(1_800_000_000),
        not_after: Some(Timestamp(1_900_000_000)),
        regions: vec![],
        sealed_key: seal_content_key(key, &manifest.id(), &to.public_key()).unwrap(),
    }
}

const NOW: Timestamp = Timestamp(1_850_000_000);

#[test]
fn a_licence_opens_the_release_for_its_node_only() {
    let key = ContentKey::generate().unwrap();
    let manifest = encrypted_manifest(&key, &[10])
        .sign(&publisher_key(), None)
        .unwrap();
    let licence = licence_for(&manifest, &key, &buyer_key())
        .sign(&publisher_key(), None)
        .unwrap();
    let from_file = VerifiedLicence::from_bytes(&licence.envelope().encode()).unwrap();
    let buyer = buyer_key().public_key();
    from_file.check_for(&manifest, &buyer, NOW, None).unwrap();
    assert_eq!(from_file.unseal(&buyer_key()).unwrap(), key);

    // Another node: refused by the check, and its key cannot open the seal either.
    let other = SecretKey::from_seed(&[6; 32]);
    let err = from_file
        .check_for(&manifest, &other.public_key(), NOW, None)
        .unwrap_err();
    assert!(
        err.to_string().starts_with("the licence is for node key "),
        "{err}"
    );
    assert_eq!(
        from_file.unseal(&other).unwrap_err().to_string(),
        "the sealed content key does not open with this node's key: it was sealed to another key, or altered"
    );

    // Expired, and not yet valid.
    let err = from_file
        .check_for(&manifest, &buyer, Timestamp(1_900_000_000), None)
        .unwrap_err();
    assert!(matches!(err, LicenceError::Expired { .. }), "{err}");
    assert!(err.to_string().starts_with("the licence expired at "));
    assert!(matches!(
        from_file.check_for(&manifest, &buyer, Timestamp(1_000), None),
        Err(LicenceError::NotYetValid { .. })
    ));

    // A key id other than the manifest's.
    let mut wrong_key = licence_for(&manifest, &key, &buyer_key());
    wrong_key.key_id = ContentKeyId([3; 32]);
    let wrong_key = wrong_key.sign(&publisher_key(), None).unwrap();
    let err = wrong_key
        .check_for(&manifest, &buyer, NOW, None)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the licence seals key 0303030303"),
        "{err}"
    );

    // Another release.
    let other_release = encrypted_manifest(&key, &[11])
        .sign(&publisher_key(), None)
        .unwrap();
    assert!(matches!(
        from_file.check_for(&other_release, &buyer, NOW, None),
        Err(LicenceError::OtherRelease { .. })
    ));
}

#[test]
fn a_licence_is_bound_to_its_signer_and_its_regions() {
    let key = ContentKey::from_bytes([2; 32]);
    let manifest = encrypted_manifest(&key, &[10])
        .sign(&publisher_key(), None)
        .unwrap();
    // Signed by a stranger without a delegation.
    let stranger = SecretKey::from_seed(&[9; 32]);
    let err = licence_for(&manifest, &key, &buyer_key())
        .sign(&stranger, None)
        .unwrap_err();
    assert!(
        err.to_string().contains("it carries no delegation"),
        "{err}"
    );
    // A flipped bit in the signed body.
    let licence = licence_for(&manifest, &key, &buyer_key())
        .sign(&publisher_key(), None)
        .unwrap();
    let mut envelope = licence.envelope().clone();
    let last = envelope.body.len() - 1;
    envelope.body[last] ^= 1;
    assert!(matches!(
        VerifiedLicence::verify(envelope),
        Err(LicenceError::Envelope(_))
    ));
    // Regions: the node's configured region must be listed.
    let mut regional = licence_for(&manifest, &key, &buyer_key());
    regional.regions = vec!["FR".parse().unwrap()];
    let regional = regional.sign(&publisher_key(), None).unwrap();
    let buyer = buyer_key().public_key();
    assert!(
        regional
            .check_for(&manifest, &buyer, NOW, Some("FR".parse().unwrap()))
            .is_ok()
    );
    let err = regional
        .check_for(&manifest, &buyer, NOW, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the licence is for regions FR, and this node's region is not configured"
    );
    // A manifest is not a licence.
    assert!(matches!(
        VerifiedLicence::from_bytes(&manifest.envelope().encode()),
        Err(LicenceError::Envelope(_))
    ));
}

#[test]
fn licence_golden_bytes() {
    // A fixed sealed key (HPKE sealing is randomised), so the whole envelope is golden.
    let licence = ContentLicence {
        version: LICENCE_FORMAT_VERSION,
        publisher: publisher_key().public_key(),
        manifest_id: ManifestId([0x11; 32]),
        key_id: ContentKeyId([0x22; 32]),
        recipient: buyer_key().public_key(),
        issued_at: Timestamp(1_800_000_000),
        not_before: Timestamp(1_800_000_000),
        not_after: None,
        regions: vec!["FR".parse().unwrap()],
        sealed_key: SealedKey {
            encapsulated: [0x33; 32],
            ciphertext: vec![0x44; 48],
        },
    };
    let body = encoding::encode(&licence);
    let expected_body = [
        "01",
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        &"11".repeat(32),
        &"22".repeat(32),
        &hex::encode(buyer_key().public_key().as_bytes()),
        "80c8ceb40d",
        "80c8ceb40d",
        "00",
        "01",
        "02",
        "4652",
        &"33".repeat(32),
        "30",
        &"44".repeat(48),
    ]
    .concat();
    assert_eq!(hex::encode(&body), expected_body);
    let back: ContentLicence = encoding::decode("licence", &body, body.len()).unwrap();
    assert_eq!(back, licence);
    let signed = Signed::sign(SignedKind::Licence, body, &publisher_key(), None);
    let bytes = signed.encode();
    // Kind 5, then the signer, the body, the signature and no delegation.
    assert_eq!(bytes[0], 5);
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        LICENCE_ENVELOPE_SHA256,
        "the signed licence envelope drifted"
    );
    assert_eq!(
        licet_proto::licence::licence_id(&signed.body).to_hex(),
        LICENCE_ID
    );
    assert_eq!(
        Signed::decode_kind(&bytes, SignedKind::Licence).unwrap(),
        signed
    );
    // Oversize licences are refused before decoding.
    let huge = vec![0u8; SignedKind::Licence.max_envelope_bytes() + 1];
    assert!(Signed::decode_kind(&huge, SignedKind::Licence).is_err());
    assert_eq!(TAG_BYTES, 16);
}

/// SHA-256 of the signed envelope and the licence id, both cross-checked against Python
/// `cryptography`'s ed25519 over the same body (the envelope's hash again after its kind byte
/// moved from 4 to 5, when catalog roots took 4).
const LICENCE_ENVELOPE_SHA256: &str =
    "f65c29ad2da16d13f5a2d32732b4e1e5043fccaa9fa40df9cf7a1c1d3e79b035";
const LICENCE_ID: &str = "e56818031a093d9891f653a3f9ce999301a8c9d30777f3012be42504f72bbf87";
