//! Licences and encrypted chunks, on arbitrary bytes.
//!
//! The input is tried as a signed licence envelope, as a licence body (re-signed by a fixed
//! publisher key, so the fuzzer reaches everything after the signature check), and as a
//! ciphertext chunk of an encrypted release.
//!
//! Properties checked (a failed assertion is a bug):
//! - a licence envelope decodes only from its canonical encoding;
//! - a body that decodes re-encodes to bytes that decode to the same value;
//! - a body that passes `validate`, signed by its publisher, verifies to exactly that body, and
//!   signed by another key without a delegation does not;
//! - a sealed key in a fuzzed body never opens with a key it was not sealed to, and unsealing
//!   never panics;
//! - no ciphertext chunk the fuzzer makes decrypts under a fixed content key (it would need a
//!   Poly1305 forgery), and opening one never panics.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use licet_proto::{
    SecretKey,
    encoding,
    encryption::ContentKey,
    licence::{ContentLicence, MAX_LICENCE_BODY_BYTES, VerifiedLicence},
    signed::{Signed, SignedKind},
};

struct Keys {
    publisher: SecretKey,
    node: SecretKey,
    content: ContentKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    publisher: SecretKey::from_seed(&[0x11; 32]),
    node: SecretKey::from_seed(&[0x33; 32]),
    content: ContentKey::from_bytes([0x44; 32]),
});

fuzz_target!(|data: &[u8]| {
    envelope(data);
    licence_body(data);
    chunk(data);
});

fn envelope(data: &[u8]) {
    if let Ok(signed) = Signed::decode_kind(data, SignedKind::Licence) {
        assert_eq!(signed.encode(), data, "a non-canonical envelope decoded");
    }
    if let Ok(verified) = VerifiedLicence::from_bytes(data) {
        assert_eq!(verified.envelope().encode(), data);
        let _ = verified.unseal(&KEYS.node);
    }
}

fn licence_body(data: &[u8]) {
    let Ok(mut licence) =
        encoding::decode::<ContentLicence>("licence body", data, MAX_LICENCE_BODY_BYTES)
    else {
        return;
    };
    let again: ContentLicence =
        encoding::decode("licence body", &encoding::encode(&licence), MAX_LICENCE_BODY_BYTES)
            .expect("a decoded licence re-encodes");
    assert_eq!(again, licence);
    if licence.validate().is_err() {
        return;
    }
    let keys = &*KEYS;
    licence.publisher = keys.publisher.public_key();
    let verified = licence
        .sign(&keys.publisher, None)
        .expect("a valid licence signed by its publisher verifies");
    assert_eq!(verified.licence(), &licence);
    // Nothing the fuzzer wrote was sealed to this node's key by anyone holding a content key.
    assert!(verified.unseal(&keys.node).is_err());
    assert!(licence.sign(&keys.node, None).is_err());
}

fn chunk(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let cipher = KEYS.content.file_cipher(u64::from(selector >> 1), 16 * 1024);
    let mut buffer = rest.to_vec();
    assert!(
        cipher
            .open_segment(u64::from(selector), selector & 1 == 1, &mut buffer)
            .is_err(),
        "a forged chunk decrypted"
    );
}
