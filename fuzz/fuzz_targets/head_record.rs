//! The check a node makes before it stores a DHT record as a catalog head
//! (`catalog::check_head_record`), on arbitrary keys, values, stored values and clocks.
//!
//! The input (read with `arbitrary`) describes an offered record and an optional stored one.
//! Each value is either raw bytes or a head signed by one of three fixed keys while naming one of
//! them as its publisher, optionally with one byte flipped; the key is the true head key of one of
//! the keys, or raw bytes. Signed heads let the fuzzer reach every check after the signature.
//!
//! Properties checked against a model written from the rules in the function's docs (a failed
//! assertion is a bug):
//! - the first rule a record breaks is the one it is refused for, in the documented order: size,
//!   signature (a head signed by a key other than the one it names is never accepted), key,
//!   expiry, then sequence against a stored head that still verifies;
//! - an accepted record verifies to exactly the bytes offered;
//! - accepted once, the same record is accepted again over itself (a re-put is not refused), and
//!   the head it replaced is then refused over it unless they are the same bytes (no rollback);
//! - a refusal's message holds no character `is_unsafe_to_show` refuses (it is logged).

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use licet_proto::{
    CatalogHash, PublicKey, SecretKey, Timestamp,
    catalog::{
        CatalogHead, HeadRecordRejection, VerifiedCatalogHead, catalog_head_key, check_head_record,
    },
    encoding,
    signed::{Signed, SignedKind},
    text::is_unsafe_to_show,
};

static KEYS: LazyLock<Vec<(SecretKey, PublicKey)>> = LazyLock::new(|| {
    (1..=3u8)
        .map(|seed| {
            let key = SecretKey::from_seed(&[seed; 32]);
            let public = key.public_key();
            (key, public)
        })
        .collect()
});

fn key(which: u8) -> &'static (SecretKey, PublicKey) {
    &KEYS[usize::from(which) % KEYS.len()]
}

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    Head {
        signer: u8,
        publisher: u8,
        /// Small, so that offered and stored sequences meet often.
        sequence: u8,
        expires_at: i64,
        catalog_hash: [u8; 32],
        /// A byte to flip: (position, mask).
        flip: Option<(u16, u8)>,
    },
}

/// What a value was made as: `Some((head, signed_by_its_publisher))` unless raw or flipped.
type Made = Option<(CatalogHead, bool)>;

impl Value {
    fn bytes(&self) -> (Vec<u8>, Made) {
        match self {
            Value::Raw(bytes) => (bytes.clone(), None),
            Value::Head {
                signer,
                publisher,
                sequence,
                expires_at,
                catalog_hash,
                flip,
            } => {
                let head = CatalogHead {
                    publisher: key(*publisher).1,
                    sequence: u64::from(*sequence),
                    expires_at: Timestamp(*expires_at),
                    catalog_hash: CatalogHash(*catalog_hash),
                };
                let signer = key(*signer);
                let mut bytes = Signed::sign(
                    SignedKind::CatalogHead,
                    encoding::encode(&head),
                    &signer.0,
                    None,
                )
                .encode();
                match flip {
                    Some((at, mask)) if *mask != 0 => {
                        let at = usize::from(*at) % bytes.len();
                        bytes[at] ^= mask;
                        (bytes, None)
                    }
                    _ => {
                        let by_publisher = signer.1 == head.publisher;
                        (bytes, Some((head, by_publisher)))
                    }
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Key {
    /// The head key of one of the fixed keys.
    Of(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    key: Key,
    value: Value,
    stored: Option<Value>,
    now: i64,
}

fn check_message(rejection: &HeadRecordRejection) {
    let message = rejection.to_string();
    assert!(
        !message.chars().any(is_unsafe_to_show),
        "unsafe to show: {message:?}"
    );
}

fuzz_target!(|input: Input| {
    let record_key: Vec<u8> = match &input.key {
        Key::Of(which) => catalog_head_key(&key(*which).1).0.to_vec(),
        Key::Raw(bytes) => bytes.clone(),
    };
    let (value, made) = input.value.bytes();
    let stored = input.stored.as_ref().map(Value::bytes);
    let stored_bytes = stored.as_ref().map(|(bytes, _)| bytes.as_slice());
    let now = Timestamp(input.now);

    let result = check_head_record(&record_key, &value, stored_bytes, now);
    if let Err(rejection) = &result {
        check_message(rejection);
    }

    // The model, rule by rule.
    let limit = SignedKind::CatalogHead.max_envelope_bytes();
    if value.len() > limit {
        assert!(
            matches!(result, Err(HeadRecordRejection::Oversize { len, limit: l }) if len == value.len() && l == limit),
            "{result:?}"
        );
        return;
    }
    let verified = VerifiedCatalogHead::from_bytes(&value);
    if let Some((head, by_publisher)) = &made {
        // Made here, unchanged: valid exactly when signed by the key it names.
        assert_eq!(verified.is_ok(), *by_publisher, "{verified:?}");
        if let Ok(verified) = &verified {
            assert_eq!(verified.head(), head);
        }
    }
    let verified = match verified {
        Ok(verified) => verified,
        Err(_) => {
            assert!(
                matches!(result, Err(HeadRecordRejection::Invalid(_))),
                "{result:?}"
            );
            return;
        }
    };
    let head = verified.head();
    if record_key != catalog_head_key(&head.publisher).0 {
        assert!(
            matches!(result, Err(HeadRecordRejection::WrongKey { publisher }) if publisher == head.publisher),
            "{result:?}"
        );
        return;
    }
    if now >= head.expires_at {
        assert!(
            matches!(result, Err(HeadRecordRejection::Expired { .. })),
            "{result:?}"
        );
        return;
    }
    let held = stored_bytes.and_then(|bytes| VerifiedCatalogHead::from_bytes(bytes).ok());
    if let Some(held) = &held {
        let held_sequence = held.head().sequence;
        if head.sequence < held_sequence {
            assert!(
                matches!(result, Err(HeadRecordRejection::LowerSequence { offered, stored, .. }) if offered == head.sequence && stored == held_sequence),
                "{result:?}"
            );
            return;
        }
        if head.sequence == held_sequence && held.envelope_bytes() != value.as_slice() {
            assert!(
                matches!(
                    result,
                    Err(HeadRecordRejection::EqualSequenceDifferentBytes { .. })
                ),
                "{result:?}"
            );
            return;
        }
    }
    let accepted = result.unwrap_or_else(|e| panic!("refused a record the rules accept: {e}"));
    assert_eq!(accepted.envelope_bytes(), value.as_slice());
    assert_eq!(accepted.head(), head);

    // Stored now: a re-put of the same record is accepted, the replaced head is refused.
    check_head_record(&record_key, &value, Some(&value), now)
        .unwrap_or_else(|e| panic!("a record was refused over itself: {e}"));
    if let Some(held) = &held {
        let back = check_head_record(&record_key, held.envelope_bytes(), Some(&value), now);
        if held.envelope_bytes() != value.as_slice() {
            assert!(back.is_err(), "the replaced head was accepted back");
        }
    }
});
