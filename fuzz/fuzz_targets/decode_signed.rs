//! Every decoder and verifier of signed objects, on arbitrary bytes.
//!
//! The input is tried as an envelope (any kind, each kind, each `Verified*` constructor, a
//! stand-alone delegation) and as each body type directly, so the fuzzer reaches body parsing
//! without having to forge a signature. A body that decodes is then re-encoded, given a fixed
//! test key as its publisher, signed and verified, which reaches everything after the signature
//! check too.
//!
//! Properties checked (a failed assertion is a bug):
//! - an envelope decodes only from its canonical encoding (it re-encodes to the same bytes);
//! - a body that decodes re-encodes to bytes that decode to the same value;
//! - `decode_kind(bytes, k)` succeeds only with kind `k`, and agrees with `decode`;
//! - a body that passes its own `validate`, signed by its publisher, verifies, and the verified
//!   value is exactly the body that was signed (manifests also through a delegate);
//! - a verified catalog finds every entry, revoked manifest and revoked delegate it lists, and
//!   the head signed for it matches it.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use licet_proto::{
    PublicKey, SecretKey, Timestamp,
    catalog::{
        Catalog, CatalogHead, MAX_CATALOG_BODY_BYTES, MAX_CATALOG_HEAD_BODY_BYTES, VerifiedCatalog,
        VerifiedCatalogHead,
    },
    delegation::{Delegation, DelegationScope, MAX_DELEGATION_BODY_BYTES, MAX_SCOPE_PREFIX_BYTES},
    encoding,
    manifest::{MAX_MANIFEST_BODY_BYTES, Manifest, ManifestError, VerifiedManifest, manifest_id},
    merkle::chunk_range,
    signed::{Signed, SignedKind},
};

const KINDS: [SignedKind; 4] = [
    SignedKind::Manifest,
    SignedKind::Delegation,
    SignedKind::Catalog,
    SignedKind::CatalogHead,
];

/// Fixed test keys (computing a public key costs a scalar multiplication: do it once).
struct Keys {
    publisher: SecretKey,
    publisher_pk: PublicKey,
    delegate: SecretKey,
    delegate_pk: PublicKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let publisher = SecretKey::from_seed(&[0x11; 32]);
    let delegate = SecretKey::from_seed(&[0x22; 32]);
    Keys {
        publisher_pk: publisher.public_key(),
        delegate_pk: delegate.public_key(),
        publisher,
        delegate,
    }
});

fuzz_target!(|data: &[u8]| {
    envelopes(data);
    manifest_body(data);
    catalog_body(data);
    catalog_head_body(data);
    delegation_body(data);
});

/// The input as an envelope, through every public entry point.
fn envelopes(data: &[u8]) {
    let any = Signed::decode(data);
    if let Ok(signed) = &any {
        // Only an envelope's one canonical encoding decodes (no overlong varints), so the bytes
        // a signature or a catalog hash is checked over cannot be re-encoded by anyone.
        assert_eq!(signed.encode(), data, "a non-canonical envelope decoded");
        let _ = signed.verify_signature();
        let _ = Delegation::verify_envelope(signed);
        if let Some(carried) = &signed.delegation {
            let _ = carried.verify_signature();
            let _ = Delegation::verify_carried(carried);
        }
        for kind in KINDS {
            assert_eq!(signed.expect_kind(kind).is_ok(), signed.kind == kind);
        }
        let carried = signed.clone().into_carried_delegation();
        assert_eq!(carried.is_ok(), signed.kind == SignedKind::Delegation);
    }
    for kind in KINDS {
        if let Ok(signed) = Signed::decode_kind(data, kind) {
            assert_eq!(signed.kind, kind);
            assert_eq!(
                any.as_ref().ok(),
                Some(&signed),
                "decode_kind and decode disagree"
            );
            let _ = Delegation::verify_envelope(&signed);
        }
    }
    if let Ok(verified) = VerifiedManifest::from_bytes(data) {
        assert_eq!(verified.id(), manifest_id(&verified.envelope().body));
    }
    if let Ok(verified) = VerifiedCatalog::from_bytes(data) {
        let again = VerifiedCatalog::from_bytes(&verified.to_file_bytes())
            .expect("a verified catalog's own file verifies");
        assert_eq!(again.hash(), verified.hash());
        assert_eq!(again.catalog(), verified.catalog());
    }
    if let Ok(verified) = VerifiedCatalogHead::from_bytes(data) {
        assert_eq!(verified.envelope_bytes(), data);
    }
}

/// Decodes `T` with `limit` and checks that its encoding decodes back to it.
fn body<T>(what: &'static str, data: &[u8], limit: usize) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = encoding::decode(what, data, limit).ok()?;
    let bytes = encoding::encode(&value);
    let again: T = encoding::decode(what, &bytes, limit).expect("a decoded body re-encodes");
    assert_eq!(again, value);
    Some(value)
}

fn manifest_body(data: &[u8]) {
    let Some(mut manifest) = body::<Manifest>("manifest body", data, MAX_MANIFEST_BODY_BYTES)
    else {
        return;
    };
    if manifest.validate().is_err() {
        return;
    }
    for file in &manifest.files {
        let count = file.chunk_count(manifest.chunk_size);
        assert!(count >= 1);
        let last = chunk_range(count - 1, file.size, manifest.chunk_size)
            .expect("the last chunk has a range");
        assert_eq!(last.end, file.size);
        assert!(chunk_range(count, file.size, manifest.chunk_size).is_none());
    }
    let keys = &*KEYS;
    // Signed by a key other than the publisher, without a delegation: refused.
    if manifest.publisher != keys.publisher_pk {
        let signed = Signed::sign(SignedKind::Manifest, data.to_vec(), &keys.publisher, None);
        let result = VerifiedManifest::verify(signed);
        assert!(
            matches!(result, Err(ManifestError::DelegationMissing { .. })),
            "{result:?}"
        );
    }
    // Signed by its publisher: verifies, through the envelope's bytes too.
    manifest.publisher = keys.publisher_pk;
    let body = encoding::encode(&manifest);
    let signed = Signed::sign(SignedKind::Manifest, body.clone(), &keys.publisher, None);
    let verified = VerifiedManifest::from_bytes(&signed.encode())
        .expect("a valid manifest signed by its publisher verifies");
    assert_eq!(verified.manifest(), &manifest);
    assert_eq!(verified.id(), manifest_id(&body));
    assert!(verified.delegation().is_none());

    // Signed by a delegate whose scope covers the title: verifies.
    let prefix: String = manifest.title.chars().take(data.len() % 8).collect();
    let scope = if prefix.is_empty() {
        DelegationScope::AllManifests
    } else {
        DelegationScope::TitlePrefix(prefix)
    };
    let delegation = Delegation {
        publisher: keys.publisher_pk,
        delegate: keys.delegate_pk,
        not_before: Timestamp(0),
        not_after: Timestamp(1),
        scope,
    };
    let carried = delegation
        .sign(&keys.publisher)
        .into_carried_delegation()
        .expect("a delegation envelope can be carried");
    let signed = Signed::sign(SignedKind::Manifest, body, &keys.delegate, Some(carried));
    let verified = VerifiedManifest::verify(signed)
        .expect("a valid manifest signed by a delegate in scope verifies");
    assert_eq!(verified.manifest(), &manifest);
    assert_eq!(verified.delegation(), Some(&delegation));
    assert_eq!(verified.signer(), keys.delegate_pk);
}

fn catalog_body(data: &[u8]) {
    let Some(mut catalog) = body::<Catalog>("catalog body", data, MAX_CATALOG_BODY_BYTES) else {
        return;
    };
    if catalog.validate().is_err() {
        return;
    }
    for entry in &catalog.entries {
        assert!(catalog.lists(&entry.manifest_id));
        assert!(!catalog.revokes_manifest(&entry.manifest_id));
    }
    for id in &catalog.revoked_manifests {
        assert!(catalog.revokes_manifest(id));
        assert!(!catalog.lists(id));
    }
    for key in &catalog.revoked_delegates {
        assert!(catalog.revokes_delegate(key));
    }
    // A valid catalog is already canonical.
    let mut canonical = catalog.clone();
    canonical.canonicalize();
    assert_eq!(canonical, catalog);

    let keys = &*KEYS;
    catalog.publisher = keys.publisher_pk;
    // Format 1 (every entry in one envelope) is refused by name; format 2 is what signing writes.
    let old = Signed::sign(
        SignedKind::Catalog,
        encoding::encode(&catalog),
        &keys.publisher,
        None,
    );
    assert!(VerifiedCatalog::from_bytes(&old.encode()).is_err());
    let bytes = catalog
        .clone()
        .sign(&keys.publisher)
        .expect("a valid catalog signs")
        .to_file_bytes();
    let verified = VerifiedCatalog::from_bytes(&bytes)
        .expect("a valid catalog signed by its publisher verifies");
    assert_eq!(verified.catalog(), &catalog);
    assert_eq!(verified.to_file_bytes(), bytes);
    let head = verified
        .head(&keys.publisher)
        .expect("the publisher can sign a head");
    assert!(head.matches(&verified));
    assert!(verified.head(&keys.delegate).is_err());
}

fn catalog_head_body(data: &[u8]) {
    let Some(mut head) =
        body::<CatalogHead>("catalog head body", data, MAX_CATALOG_HEAD_BODY_BYTES)
    else {
        return;
    };
    let keys = &*KEYS;
    head.publisher = keys.publisher_pk;
    let signed = Signed::sign(
        SignedKind::CatalogHead,
        encoding::encode(&head),
        &keys.publisher,
        None,
    );
    let verified = VerifiedCatalogHead::from_bytes(&signed.encode())
        .expect("a head signed by its publisher verifies");
    assert_eq!(verified.head(), &head);
    // Signed by anyone else: refused.
    let signed = Signed::sign(
        SignedKind::CatalogHead,
        encoding::encode(&head),
        &keys.delegate,
        None,
    );
    assert!(VerifiedCatalogHead::from_bytes(&signed.encode()).is_err());
}

fn delegation_body(data: &[u8]) {
    let Some(mut delegation) =
        body::<Delegation>("delegation body", data, MAX_DELEGATION_BODY_BYTES)
    else {
        return;
    };
    if let DelegationScope::TitlePrefix(prefix) = &delegation.scope {
        let title = format!("{prefix}…");
        assert!(delegation.scope.allows_title(&title));
    }
    let keys = &*KEYS;
    delegation.publisher = keys.publisher_pk;
    let in_itself_valid = delegation.not_after > delegation.not_before
        && match &delegation.scope {
            DelegationScope::AllManifests | DelegationScope::DeliveryReports => true,
            DelegationScope::TitlePrefix(p) => p.len() <= MAX_SCOPE_PREFIX_BYTES,
        };
    let result = Delegation::verify_envelope(&delegation.sign(&keys.publisher));
    assert_eq!(result.is_ok(), in_itself_valid, "{result:?}");
    if let Ok(verified) = result {
        assert_eq!(verified, delegation);
    }
    // Signed by a key other than the publisher it names: refused.
    assert!(Delegation::verify_envelope(&delegation.sign(&keys.delegate)).is_err());
}
