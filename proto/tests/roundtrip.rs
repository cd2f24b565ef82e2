//! Property tests: every encoded type survives encode → decode unchanged, a signed manifest of
//! any valid contents verifies and no single flipped byte of its envelope is accepted, and no
//! input whatsoever makes the decoders panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "clippy.toml's allow-*-in-tests covers #[test] bodies, not these test helpers"
)]

use std::fmt::Debug;

use licet_proto::{
    CatalogHash, CatalogHeadKey, CatalogPartHash, LicenceId, ManifestId, MerkleHash, PublicKey,
    SecretKey, Timestamp,
    catalog::{Catalog, CatalogEntry, CatalogHead, VerifiedCatalog, VerifiedCatalogHead},
    delegation::{Delegation, DelegationScope},
    encoding::{self, DecodeError},
    encryption::{ContentKeyId, EncryptionAlgorithm},
    keys::SignatureBytes,
    manifest::{
        ENCRYPTED_MANIFEST_FORMAT_VERSION, FileEntry, Licence, MAX_CHUNK_SIZE, MAX_FILE_SIZE,
        Manifest, Region, ReleaseEncryption, VerifiedManifest, manifest_id,
    },
    merkle::{AuditPath, MAX_AUDIT_PATH_LEN},
    path::{SafePath, check_path_set},
    policy::{RefusalReason, TrustedPublisher},
    portable_name::folded,
    signed::{Signed, SignedDelegation, SignedKind},
    wire::{
        self, Bitfield, CATALOG_PART_BYTES, MAX_CONTACT_ADDRS, MAX_DETAIL_BYTES,
        MAX_EXCHANGED_PEERS, PeerContact, Request, RequestFrame, RequestId, Response,
        ResponseFrame, decode_request, decode_response, encode_request, encode_response_header,
    },
};
use proptest::{collection::vec, option, prelude::*, sample::Index};
use serde::{Serialize, de::DeserializeOwned};

// ---------------------------------------------------------------------------------------------
// Strategies.

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp)
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn manifest_id_value() -> impl Strategy<Value = ManifestId> {
    any::<[u8; 32]>().prop_map(ManifestId)
}

fn merkle_hash() -> impl Strategy<Value = MerkleHash> {
    any::<[u8; 32]>().prop_map(MerkleHash)
}

fn catalog_hash_value() -> impl Strategy<Value = CatalogHash> {
    any::<[u8; 32]>().prop_map(CatalogHash)
}

fn signature() -> impl Strategy<Value = SignatureBytes> {
    vec(any::<u8>(), 64).prop_map(|bytes| SignatureBytes(bytes.try_into().unwrap()))
}

/// Valid paths: 1 to 4 components of any characters but `/`, `\` and NUL (and `:` in the first),
/// keeping those [`SafePath::new`] accepts (never `.` or `..`, no name that cannot travel).
fn safe_path() -> impl Strategy<Value = SafePath> {
    ("[^/\\\\\\x00:]{1,12}", vec("[^/\\\\\\x00]{1,12}", 0..4)).prop_filter_map(
        "'.', '..' and names that cannot travel are not path components",
        |(first, rest)| {
            let mut components = vec![first];
            components.extend(rest);
            SafePath::new(components.join("/")).ok()
        },
    )
}

fn region() -> impl Strategy<Value = Region> {
    // Any code of the format, as decoding takes it (a user's text must also be assigned).
    "[A-Z]{2}".prop_map(|code| Region::try_from(code).unwrap())
}

fn file_entry() -> impl Strategy<Value = FileEntry> {
    (safe_path(), any::<u64>(), merkle_hash()).prop_map(|(path, size, root)| FileEntry {
        path,
        size,
        root,
    })
}

fn licence() -> impl Strategy<Value = Licence> {
    (
        ".{0,20}",
        timestamp(),
        option::of(timestamp()),
        vec(region(), 0..5),
    )
        .prop_map(|(terms, not_before, not_after, regions)| Licence {
            terms,
            not_before,
            not_after,
            regions,
        })
}

fn release_encryption() -> impl Strategy<Value = ReleaseEncryption> {
    (any::<[u8; 32]>(), vec(any::<u64>(), 0..5)).prop_map(|(key_id, plaintext_sizes)| {
        ReleaseEncryption {
            algorithm: EncryptionAlgorithm::ChaCha20Poly1305Stream,
            key_id: ContentKeyId(key_id),
            plaintext_sizes,
        }
    })
}

/// Any manifest body, valid or not: only the field types are respected.
fn any_manifest() -> impl Strategy<Value = Manifest> {
    (
        prop_oneof![Just(1u32), Just(2u32), any::<u32>()],
        public_key(),
        ".{0,20}",
        option::of(".{0,20}"),
        timestamp(),
        any::<u32>(),
        vec(file_entry(), 0..5),
        licence(),
        release_encryption(),
    )
        .prop_map(
            |(
                version,
                publisher,
                title,
                description,
                created_at,
                chunk_size,
                files,
                licence,
                encryption,
            )| {
                // A body carries an encryption exactly when its version says so.
                let encryption =
                    (version == ENCRYPTED_MANIFEST_FORMAT_VERSION).then_some(encryption);
                Manifest {
                    version,
                    publisher,
                    title,
                    description,
                    created_at,
                    chunk_size,
                    files,
                    licence,
                    encryption,
                }
            },
        )
}

fn scope() -> impl Strategy<Value = DelegationScope> {
    prop_oneof![
        Just(DelegationScope::AllManifests),
        ".{0,20}".prop_map(DelegationScope::TitlePrefix),
        Just(DelegationScope::DeliveryReports),
    ]
}

fn delegation() -> impl Strategy<Value = Delegation> {
    (
        public_key(),
        public_key(),
        timestamp(),
        timestamp(),
        scope(),
    )
        .prop_map(
            |(publisher, delegate, not_before, not_after, scope)| Delegation {
                publisher,
                delegate,
                not_before,
                not_after,
                scope,
            },
        )
}

fn catalog() -> impl Strategy<Value = Catalog> {
    (
        public_key(),
        any::<u64>(),
        timestamp(),
        timestamp(),
        vec(
            (manifest_id_value(), ".{0,20}")
                .prop_map(|(manifest_id, title)| CatalogEntry { manifest_id, title }),
            0..5,
        ),
        vec(manifest_id_value(), 0..5),
        vec(public_key(), 0..5),
    )
        .prop_map(
            |(
                publisher,
                sequence,
                issued_at,
                expires_at,
                entries,
                revoked_manifests,
                revoked_delegates,
            )| Catalog {
                publisher,
                sequence,
                issued_at,
                expires_at,
                entries,
                revoked_manifests,
                revoked_delegates,
                revoked_licences: Vec::new(),
            },
        )
}

fn catalog_head() -> impl Strategy<Value = CatalogHead> {
    (
        public_key(),
        any::<u64>(),
        timestamp(),
        catalog_hash_value(),
    )
        .prop_map(
            |(publisher, sequence, expires_at, catalog_hash)| CatalogHead {
                publisher,
                sequence,
                expires_at,
                catalog_hash,
            },
        )
}

fn signed_kind() -> impl Strategy<Value = SignedKind> {
    prop_oneof![
        Just(SignedKind::Manifest),
        Just(SignedKind::Delegation),
        Just(SignedKind::Catalog),
        Just(SignedKind::CatalogHead),
        Just(SignedKind::CatalogRoot),
    ]
}

fn signed_delegation() -> impl Strategy<Value = SignedDelegation> {
    (public_key(), vec(any::<u8>(), 0..64), signature()).prop_map(|(signer, body, signature)| {
        SignedDelegation {
            signer,
            body,
            signature,
        }
    })
}

fn signed() -> impl Strategy<Value = Signed> {
    (
        signed_kind(),
        public_key(),
        vec(any::<u8>(), 0..300),
        signature(),
        option::of(signed_delegation()),
    )
        .prop_map(|(kind, signer, body, signature, delegation)| Signed {
            kind,
            signer,
            body,
            signature,
            delegation,
        })
}

fn audit_path(max: usize) -> impl Strategy<Value = AuditPath> {
    vec(merkle_hash(), 0..=max).prop_map(AuditPath)
}

fn bitfield() -> impl Strategy<Value = Bitfield> {
    (0u64..300, vec(any::<u64>(), 0..40)).prop_map(|(len, set)| {
        let mut bits = Bitfield::new(len);
        for i in set {
            bits.set(i % len.max(1), true);
        }
        bits
    })
}

fn refusal_reason() -> impl Strategy<Value = RefusalReason> {
    prop::sample::select(RefusalReason::ALL.to_vec())
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        manifest_id_value().prop_map(|id| Request::Manifest { id }),
        manifest_id_value().prop_map(|manifest| Request::Availability { manifest }),
        (manifest_id_value(), any::<u32>(), any::<u64>()).prop_map(|(manifest, file, index)| {
            Request::Chunk {
                manifest,
                file,
                index,
            }
        }),
        (manifest_id_value(), any::<u32>(), any::<u64>(), region()).prop_map(
            |(manifest, file, index, region)| Request::ChunkForRegion {
                manifest,
                file,
                index,
                region,
            }
        ),
        public_key().prop_map(|publisher| Request::CatalogHead { publisher }),
        (public_key(), catalog_hash_value(), any::<u64>()).prop_map(
            |(publisher, catalog_hash, offset)| Request::CatalogPart {
                publisher,
                catalog_hash,
                offset,
            }
        ),
        manifest_id_value().prop_map(|manifest| Request::Peers { manifest }),
        (public_key(), vec(any::<[u8; 32]>(), 1..=4)).prop_map(|(publisher, hashes)| {
            Request::CatalogParts {
                publisher,
                hashes: hashes.into_iter().map(CatalogPartHash).collect(),
            }
        }),
        Just(Request::Time),
    ]
}

fn request_frame() -> impl Strategy<Value = RequestFrame> {
    (any::<u32>(), request()).prop_map(|(id, request)| RequestFrame {
        id: RequestId(id),
        request,
    })
}

/// Any response, its fields unconstrained.
fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        vec(any::<u8>(), 0..100).prop_map(|envelope| Response::Manifest { envelope }),
        vec(bitfield(), 0..4).prop_map(|files| Response::Availability { files }),
        (audit_path(70), any::<u32>()).prop_map(|(proof, len)| Response::Chunk { proof, len }),
        vec(any::<u8>(), 0..100).prop_map(|envelope| Response::CatalogHead { envelope }),
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(total_len, offset, len)| {
            Response::CatalogPart {
                total_len,
                offset,
                len,
            }
        }),
        (refusal_reason(), ".{0,40}")
            .prop_map(|(reason, detail)| Response::Refused { reason, detail }),
        any::<u32>().prop_map(|retry_after_ms| Response::Busy { retry_after_ms }),
        vec(peer_contact(60, 12), 0..40).prop_map(|peers| Response::Peers { peers }),
        vec(any::<u32>(), 0..80).prop_map(|lens| Response::CatalogParts { lens }),
        any::<i64>().prop_map(|unix_seconds| Response::Time { unix_seconds }),
    ]
}

/// A peer contact of ids and addresses up to `max_bytes` long, up to `max_addrs` of them.
fn peer_contact(max_bytes: usize, max_addrs: usize) -> impl Strategy<Value = PeerContact> {
    (
        vec(any::<u8>(), 0..=max_bytes),
        vec(vec(any::<u8>(), 0..=max_bytes), 0..=max_addrs),
    )
        .prop_map(|(peer, addrs)| PeerContact { peer, addrs })
}

fn response_frame() -> impl Strategy<Value = ResponseFrame> {
    (any::<u32>(), response()).prop_map(|(id, response)| ResponseFrame {
        id: RequestId(id),
        response,
    })
}

/// A response a well-behaved peer may send, within every limit, with a small payload.
fn sendable_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        vec(any::<u8>(), 0..100).prop_map(|envelope| Response::Manifest { envelope }),
        vec(bitfield(), 0..4).prop_map(|files| Response::Availability { files }),
        (audit_path(MAX_AUDIT_PATH_LEN), 0u32..64)
            .prop_map(|(proof, len)| Response::Chunk { proof, len }),
        vec(any::<u8>(), 0..100).prop_map(|envelope| Response::CatalogHead { envelope }),
        // A catalog root is smaller than one piece: only offset 0 is within bounds.
        (0u64..1, 0u32..64, 0u64..64).prop_map(|(part, len, extra)| {
            let offset = part * u64::from(CATALOG_PART_BYTES);
            Response::CatalogPart {
                total_len: offset + u64::from(len) + extra,
                offset,
                len,
            }
        }),
        (refusal_reason(), ".{0,40}")
            .prop_map(|(reason, detail)| Response::Refused { reason, detail }),
        any::<u32>().prop_map(|retry_after_ms| Response::Busy { retry_after_ms }),
        vec(peer_contact(40, MAX_CONTACT_ADDRS), 0..=MAX_EXCHANGED_PEERS)
            .prop_map(|peers| Response::Peers { peers }),
        vec(0u32..64, 0..=wire::MAX_CATALOG_PARTS_PER_REQUEST)
            .prop_map(|lens| Response::CatalogParts { lens }),
    ]
}

fn declared_payload(response: &Response) -> usize {
    match response {
        Response::Chunk { len, .. } | Response::CatalogPart { len, .. } => *len as usize,
        Response::CatalogParts { lens } => lens.iter().map(|len| *len as usize).sum(),
        _ => 0,
    }
}

/// A manifest that passes [`Manifest::validate`], published by `publisher`.
fn valid_manifest(publisher: PublicKey) -> impl Strategy<Value = Manifest> {
    (
        "\\PC{1,30}",
        option::of("\\PC{0,30}"),
        timestamp(),
        14u32..=24,
        vec((safe_path(), 0..=MAX_FILE_SIZE, merkle_hash()), 1..6),
        "\\PC{0,30}",
        -4_000_000_000i64..4_000_000_000,
        option::of(1i64..4_000_000_000),
        prop::collection::btree_set(region(), 0..6),
    )
        .prop_filter_map(
            "file paths must be unique and not nest",
            move |(
                title,
                description,
                created_at,
                chunk_exponent,
                files,
                terms,
                not_before,
                length,
                regions,
            )| {
                let files: Vec<FileEntry> = files
                    .into_iter()
                    .map(|(path, size, root)| FileEntry { path, size, root })
                    .collect();
                check_path_set(files.iter().map(|f| &f.path)).ok()?;
                Some(Manifest {
                    version: 1,
                    publisher,
                    title,
                    description,
                    created_at,
                    chunk_size: 1 << chunk_exponent,
                    files,
                    licence: Licence {
                        terms,
                        not_before: Timestamp(not_before),
                        not_after: length.map(|l| Timestamp(not_before + l)),
                        regions: regions.into_iter().collect(),
                    },
                    encryption: None,
                })
            },
        )
}

/// How a generated manifest is signed.
#[derive(Debug, Clone)]
enum Signer {
    Publisher,
    /// A delegate, under a delegation whose scope is the title's first `prefix_chars`
    /// characters, or all manifests.
    Delegate {
        prefix_chars: Option<usize>,
    },
}

fn signer() -> impl Strategy<Value = Signer> {
    prop_oneof![
        Just(Signer::Publisher),
        option::of(0usize..40).prop_map(|prefix_chars| Signer::Delegate { prefix_chars }),
    ]
}

/// A publisher seed, a valid manifest of it, and how it is signed.
fn signed_manifest() -> impl Strategy<Value = (SignedManifestCase, Manifest)> {
    (any::<[u8; 32]>(), any::<[u8; 32]>(), signer()).prop_flat_map(
        |(publisher_seed, delegate_seed, signer)| {
            let publisher = SecretKey::from_seed(&publisher_seed).public_key();
            (
                Just(SignedManifestCase {
                    publisher_seed,
                    delegate_seed,
                    signer,
                }),
                valid_manifest(publisher),
            )
        },
    )
}

#[derive(Debug, Clone)]
struct SignedManifestCase {
    publisher_seed: [u8; 32],
    delegate_seed: [u8; 32],
    signer: Signer,
}

impl SignedManifestCase {
    fn sign(&self, manifest: &Manifest) -> VerifiedManifest {
        let publisher = SecretKey::from_seed(&self.publisher_seed);
        match self.signer {
            Signer::Publisher => manifest.sign(&publisher, None).unwrap(),
            Signer::Delegate { prefix_chars } => {
                let delegate = SecretKey::from_seed(&self.delegate_seed);
                let scope = match prefix_chars {
                    None => DelegationScope::AllManifests,
                    Some(n) => {
                        DelegationScope::TitlePrefix(manifest.title.chars().take(n).collect())
                    }
                };
                let delegation = Delegation {
                    publisher: publisher.public_key(),
                    delegate: delegate.public_key(),
                    not_before: Timestamp(0),
                    not_after: Timestamp(1),
                    scope,
                }
                .sign(&publisher)
                .into_carried_delegation()
                .unwrap();
                manifest.sign(&delegate, Some(delegation)).unwrap()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// encode → decode gives the value back; one byte fewer never decodes and one byte more is
/// trailing garbage.
fn round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encoding::encode(value);
    let back: T = encoding::decode("value", &bytes, bytes.len())
        .map_err(|e| TestCaseError::fail(format!("{value:?} does not decode: {e}")))?;
    prop_assert_eq!(&back, value);
    prop_assert!(encoding::decode::<T>("value", &bytes[..bytes.len() - 1], bytes.len()).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    prop_assert_eq!(
        encoding::decode::<T>("value", &longer, longer.len()),
        Err(DecodeError::TrailingBytes {
            what: "value",
            extra: 1
        })
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Round trips.

proptest! {
    #[test]
    fn timestamps_round_trip(value in timestamp()) {
        round_trip(&value)?;
    }

    #[test]
    fn ids_and_keys_round_trip(
        key in public_key(),
        id in manifest_id_value(),
        hash in merkle_hash(),
        catalog in catalog_hash_value(),
        head_key in any::<[u8; 32]>(),
    ) {
        round_trip(&key)?;
        round_trip(&id)?;
        round_trip(&hash)?;
        round_trip(&catalog)?;
        round_trip(&CatalogHeadKey(head_key))?;
    }

    #[test]
    fn safe_paths_round_trip(path in safe_path()) {
        round_trip(&path)?;
    }

    #[test]
    fn regions_round_trip(region in region()) {
        round_trip(&region)?;
    }

    #[test]
    fn manifests_round_trip(manifest in any_manifest()) {
        round_trip(&manifest)?;
    }

    #[test]
    fn delegations_round_trip(delegation in delegation()) {
        round_trip(&delegation)?;
    }

    #[test]
    fn catalogs_round_trip(catalog in catalog()) {
        round_trip(&catalog)?;
    }

    #[test]
    fn catalog_heads_round_trip(head in catalog_head()) {
        round_trip(&head)?;
    }

    #[test]
    fn envelopes_round_trip(envelope in signed()) {
        round_trip(&envelope)?;
        if let Some(delegation) = &envelope.delegation {
            round_trip(delegation)?;
        }
        round_trip(&envelope.kind)?;
    }

    #[test]
    fn audit_paths_round_trip(path in audit_path(70)) {
        round_trip(&path)?;
    }

    #[test]
    fn bitfields_round_trip(bits in bitfield()) {
        round_trip(&bits)?;
    }

    #[test]
    fn request_frames_round_trip(frame in request_frame()) {
        round_trip(&frame)?;
        round_trip(&frame.request)?;
    }

    #[test]
    fn response_frames_round_trip(frame in response_frame()) {
        round_trip(&frame)?;
        round_trip(&frame.response)?;
    }

    #[test]
    fn policy_values_round_trip(
        reason in refusal_reason(),
        name in option::of(".{0,20}"),
        require_catalog in any::<bool>(),
    ) {
        round_trip(&reason)?;
        round_trip(&TrustedPublisher { name, require_catalog })?;
    }

    #[test]
    fn whole_request_frames_round_trip(frames in vec(request_frame(), 1..4)) {
        // Several frames on one stream: each length prefix delimits exactly its frame.
        let mut stream = Vec::new();
        for frame in &frames {
            encode_request(frame, &mut stream);
        }
        let mut rest = stream.as_slice();
        for frame in &frames {
            let (prefix, after) = rest.split_at(wire::LENGTH_PREFIX_BYTES);
            let len = wire::frame_length(prefix.try_into().unwrap()).unwrap();
            let (body, after) = after.split_at(len);
            prop_assert_eq!(&decode_request(body).unwrap(), frame);
            rest = after;
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn whole_response_frames_round_trip(
        id in any::<u32>(),
        response in sendable_response(),
        fill in any::<u8>(),
    ) {
        let frame = ResponseFrame { id: RequestId(id), response };
        let payload = vec![fill; declared_payload(&frame.response)];
        let mut stream = Vec::new();
        encode_response_header(&frame, &mut stream);
        stream.extend_from_slice(&payload);
        let (prefix, body) = stream.split_at(wire::LENGTH_PREFIX_BYTES);
        prop_assert_eq!(wire::frame_length(prefix.try_into().unwrap()).unwrap(), body.len());
        let (decoded, got) = decode_response(body).unwrap();
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(got, payload.as_slice());
    }
}

// Path sets.

/// Components drawn from names that collide on macOS or Windows in every way the rules know:
/// case (`a`/`A`, `ß`/`SS`), NFC and NFD (`é`), dotless `ı`, final sigma, and one that does not.
fn colliding_component() -> impl Strategy<Value = String> {
    vec(
        prop::sample::select(vec![
            "a", "A", "b", "\u{e9}", "e\u{301}", "\u{c9}", "\u{df}", "SS", "ss", "\u{131}", "i",
            "I", "\u{3c3}", "\u{3c2}", "\u{3a3}", "-",
        ]),
        1..4,
    )
    .prop_map(|parts| parts.concat())
}

fn colliding_path() -> impl Strategy<Value = SafePath> {
    vec(colliding_component(), 1..4).prop_map(|components| {
        SafePath::new(components.join("/")).expect("the alphabet holds only safe characters")
    })
}

/// `path` as its folded components: two paths with equal keys are one file on macOS or Windows.
fn folded_components(path: &SafePath) -> Vec<String> {
    path.as_str().split('/').map(folded).collect()
}

proptest! {
    #[test]
    fn an_accepted_path_set_has_no_two_paths_one_name_on_macos_or_windows(
        paths in vec(colliding_path(), 1..8)
    ) {
        if check_path_set(&paths).is_ok() {
            let keys: Vec<Vec<String>> = paths.iter().map(folded_components).collect();
            for (i, a) in keys.iter().enumerate() {
                for (j, b) in keys.iter().enumerate() {
                    if i != j {
                        // Neither the same file nor a file where the other needs a directory.
                        prop_assert!(!b.starts_with(a), "{:?} and {:?}", paths[i], paths[j]);
                    }
                }
            }
        }
    }

    #[test]
    fn a_path_set_with_one_name_twice_under_folding_is_refused(
        paths in vec(colliding_path(), 2..8)
    ) {
        let keys: Vec<Vec<String>> = paths.iter().map(folded_components).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() < keys.len() {
            prop_assert!(check_path_set(&paths).is_err(), "{:?}", paths);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signed manifests.

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn signed_manifests_of_valid_contents_verify((case, manifest) in signed_manifest()) {
        let signed = case.sign(&manifest);
        let bytes = signed.envelope().encode();
        let verified = VerifiedManifest::from_bytes(&bytes).unwrap();
        prop_assert_eq!(verified.manifest(), &manifest);
        prop_assert_eq!(verified.id(), manifest_id(&encoding::encode(&manifest)));
        prop_assert_eq!(verified.envelope().encode(), bytes);
        match case.signer {
            Signer::Publisher => {
                prop_assert_eq!(verified.signer(), manifest.publisher);
                prop_assert!(verified.delegation().is_none());
            }
            Signer::Delegate { .. } => {
                let delegation = verified.delegation().unwrap();
                prop_assert_eq!(delegation.publisher, manifest.publisher);
                prop_assert_eq!(verified.signer(), delegation.delegate);
            }
        }
    }

    #[test]
    fn no_single_flipped_byte_of_a_signed_manifest_is_accepted(
        (case, manifest) in signed_manifest(),
        at in any::<Index>(),
        flip in 1u8..=255,
    ) {
        let signed = case.sign(&manifest);
        let mut bytes = signed.envelope().encode();
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        // Every byte is the kind (in the signed message), covered by a signature (signer, body,
        // signature, the carried delegation's signer, body and signature) or framing whose
        // change leaves the envelope undecodable or splits it differently: nothing verifies,
        // not even as another manifest.
        let result = VerifiedManifest::from_bytes(&bytes);
        prop_assert!(
            result.is_err(),
            "byte {} xor {:#04x} still verifies, as manifest {:?} (was {})",
            at, flip, result.map(|m| m.id()), signed.id()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Decoders never panic.

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in vec(any::<u8>(), 0..600)) {
        let _ = decode_request(&bytes);
        if let Ok((frame, payload)) = decode_response(&bytes) {
            prop_assert_eq!(payload.len(), declared_payload(&frame.response));
        }
        let _ = Signed::decode(&bytes);
        let _ = VerifiedManifest::from_bytes(&bytes);
        let _ = VerifiedCatalog::from_bytes(&bytes);
        let _ = VerifiedCatalogHead::from_bytes(&bytes);
        let _ = encoding::decode::<Manifest>("manifest body", &bytes, bytes.len());
        let _ = encoding::decode::<Catalog>("catalog body", &bytes, bytes.len());
        let _ = encoding::decode::<Delegation>("delegation body", &bytes, bytes.len());
    }

    #[test]
    fn arbitrary_frame_headers_never_panic(
        variant in 0u8..10,
        id in any::<u32>(),
        rest in vec(any::<u8>(), 0..200),
    ) {
        // Start like a real frame (an id, then a known or unknown variant) so decoding gets past the
        // first bytes and into the variants' fields.
        let mut bytes = encoding::encode(&RequestId(id));
        bytes.push(variant);
        bytes.extend_from_slice(&rest);
        let _ = decode_request(&bytes);
        if let Ok((frame, payload)) = decode_response(&bytes) {
            prop_assert_eq!(payload.len(), declared_payload(&frame.response));
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        response in sendable_response(),
        request in request_frame(),
        edits in vec((any::<Index>(), any::<u8>()), 1..4),
        cut in any::<Index>(),
    ) {
        let frame = ResponseFrame { id: RequestId(1), response };
        let mut body = encoding::encode(&frame);
        body.extend(std::iter::repeat_n(0u8, declared_payload(&frame.response)));
        let mut request = encoding::encode(&request);
        for (at, byte) in &edits {
            let i = at.index(body.len());
            body[i] = *byte;
            let j = at.index(request.len());
            request[j] = *byte;
        }
        let _ = decode_request(&request);
        let _ = decode_request(&request[..cut.index(request.len())]);
        for body in [&body[..], &body[..cut.index(body.len())]] {
            // Whatever the edit, a frame that decodes is within every limit.
            if let Ok((frame, payload)) = decode_response(body) {
                prop_assert_eq!(payload.len(), declared_payload(&frame.response));
                match &frame.response {
                    Response::Refused { detail, .. } => {
                        prop_assert!(detail.len() <= MAX_DETAIL_BYTES);
                    }
                    Response::Chunk { proof, len } => {
                        prop_assert!(proof.0.len() <= MAX_AUDIT_PATH_LEN);
                        prop_assert!(*len <= MAX_CHUNK_SIZE);
                    }
                    Response::CatalogPart { total_len, offset, len } => {
                        prop_assert!(*len <= CATALOG_PART_BYTES);
                        prop_assert!(offset.saturating_add(u64::from(*len)) <= *total_len);
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn mutated_envelopes_never_panic(
        envelope in signed(),
        edits in vec((any::<Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = envelope.encode();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = Signed::decode(&bytes);
        let _ = VerifiedManifest::from_bytes(&bytes);
        let _ = VerifiedCatalog::from_bytes(&bytes);
        let _ = VerifiedCatalogHead::from_bytes(&bytes);
        if let Ok(signed) = Signed::decode(&bytes) {
            let _ = Delegation::verify_envelope(&signed);
            let _ = VerifiedManifest::verify(signed);
        }
    }
}

/// A valid catalog of up to `max` entries (ids spread over every bucket), of a fixed publisher.
fn valid_catalog(max: usize) -> impl Strategy<Value = Catalog> {
    (
        vec((manifest_id_value(), "[a-z ]{0,30}"), 0..max),
        vec(manifest_id_value(), 0..8),
        vec(public_key(), 0..4),
        1u64..u64::MAX,
        vec(any::<[u8; 32]>().prop_map(LicenceId), 0..8),
    )
        .prop_map(
            |(entries, revoked_manifests, revoked_delegates, sequence, revoked_licences)| {
                let issued_at = Timestamp(1_800_000_000);
                let mut catalog = Catalog {
                    publisher: catalog_key().public_key(),
                    sequence,
                    issued_at,
                    expires_at: issued_at.plus_seconds(86_400),
                    entries: entries
                        .into_iter()
                        .map(|(manifest_id, title)| CatalogEntry { manifest_id, title })
                        .collect(),
                    revoked_manifests,
                    revoked_delegates,
                    revoked_licences,
                };
                catalog.canonicalize();
                let revoked = catalog.revoked_manifests.clone();
                catalog
                    .entries
                    .retain(|e| !revoked.contains(&e.manifest_id));
                catalog
            },
        )
}

fn catalog_key() -> SecretKey {
    SecretKey::from_seed(&[9; 32])
}

/// The parts `new` has that `old` does not, fetched the way a node fetches them: ask
/// `missing_parts` with what is held, fetch those, until nothing is missing. Returns the bytes
/// fetched and the rounds taken, and checks the result is `new`.
fn fetch_update(old: Option<&VerifiedCatalog>, new: &VerifiedCatalog) -> (usize, usize) {
    let mut fetched: std::collections::BTreeMap<CatalogPartHash, Vec<u8>> = Default::default();
    let mut rounds = 0;
    loop {
        let held = |hash: &CatalogPartHash| {
            fetched
                .get(hash)
                .map(Vec::as_slice)
                .or_else(|| old.and_then(|old| old.part(hash)))
        };
        let missing = new.root().root().missing_parts(held).unwrap();
        if missing.is_empty() {
            break;
        }
        rounds += 1;
        assert!(rounds <= 2, "more than two rounds");
        for hash in missing {
            fetched.insert(hash, new.part(&hash).unwrap().to_vec());
        }
    }
    let held = |hash: &CatalogPartHash| {
        fetched
            .get(hash)
            .map(Vec::as_slice)
            .or_else(|| old.and_then(|old| old.part(hash)))
    };
    let assembled = VerifiedCatalog::assemble(new.root().clone(), held).unwrap();
    assert_eq!(assembled.catalog(), new.catalog());
    assert_eq!(assembled.to_file_bytes(), new.to_file_bytes());
    (fetched.values().map(Vec::len).sum(), rounds)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_catalogs_round_trip_through_their_file(catalog in valid_catalog(300)) {
        let signed = catalog.clone().sign(&catalog_key()).unwrap();
        prop_assert_eq!(signed.catalog(), &catalog);
        let back = VerifiedCatalog::from_bytes(&signed.to_file_bytes()).unwrap();
        prop_assert_eq!(back.catalog(), &catalog);
        prop_assert_eq!(back.hash(), signed.hash());
        prop_assert_eq!(back.to_file_bytes(), signed.to_file_bytes());
        // Signing is deterministic: the same catalog, the same bytes.
        prop_assert_eq!(catalog.sign(&catalog_key()).unwrap().hash(), signed.hash());
    }

    #[test]
    fn a_takedown_changes_one_bucket_and_one_page(
        catalog in valid_catalog(300),
        which in any::<Index>(),
    ) {
        prop_assume!(!catalog.entries.is_empty());
        let old = catalog.clone().sign(&catalog_key()).unwrap();
        let mut next = catalog.clone();
        let taken = next.entries.remove(which.index(next.entries.len()));
        next.revoked_manifests.push(taken.manifest_id);
        next.sequence = next.sequence.wrapping_add(1).max(1);
        let new = next.sign(&catalog_key()).unwrap();
        // Unless the catalog now takes another number of buckets, the node fetches one page
        // and one bucket (or nothing more than that).
        if new.root().root().bucket_bits == old.root().root().bucket_bits {
            let changed: Vec<_> = new.root().root().pages.iter().filter(|p| old.part(p).is_none()).collect();
            prop_assert!(changed.len() <= 1, "{} pages changed", changed.len());
            let (bytes, rounds) = fetch_update(Some(&old), &new);
            prop_assert!(rounds <= 2);
            let (_, whole) = new.parts_size();
            prop_assert!(bytes <= 4_200 + 300 * 40, "fetched {bytes} of {whole}");
        }
    }

    #[test]
    fn a_licence_revocation_changes_one_bucket_and_one_page(
        catalog in valid_catalog(300),
        licence in any::<[u8; 32]>().prop_map(LicenceId),
    ) {
        prop_assume!(!catalog.revokes_licence(&licence));
        let old = catalog.clone().sign(&catalog_key()).unwrap();
        let mut next = catalog.clone();
        next.revoked_licences.push(licence);
        next.sequence = next.sequence.wrapping_add(1).max(1);
        let new = next.sign(&catalog_key()).unwrap();
        prop_assert!(new.catalog().revokes_licence(&licence));
        if new.root().root().bucket_bits == old.root().root().bucket_bits {
            let changed: Vec<_> = new.root().root().pages.iter().filter(|p| old.part(p).is_none()).collect();
            prop_assert_eq!(changed.len(), 1);
            let (bytes, rounds) = fetch_update(Some(&old), &new);
            prop_assert_eq!(rounds, 2);
            prop_assert!(bytes <= 4_200 + 300 * 40, "fetched {bytes}");
        }
    }

    #[test]
    fn a_node_many_versions_behind_or_holding_nothing_converges(
        first in valid_catalog(200),
        last in valid_catalog(200),
    ) {
        let old = first.sign(&catalog_key()).unwrap();
        let new = last.sign(&catalog_key()).unwrap();
        let (from_old, _) = fetch_update(Some(&old), &new);
        let (from_nothing, _) = fetch_update(None, &new);
        // Holding nothing, it fetches every part; holding something, never more.
        prop_assert_eq!(from_nothing, new.parts_size().1);
        prop_assert!(from_old <= from_nothing);
    }
}
