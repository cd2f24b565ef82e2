//! Catalogs and catalog heads: a publisher's signed list of what it publishes and what it has
//! withdrawn, and the short signed pointer to the newest one that travels through the DHT.
//!
//! Invariants of a [`VerifiedCatalog`] (built only by [`VerifiedCatalog::from_bytes`] or
//! [`Catalog::sign`]):
//! - signed by the publisher named in the body, with its own key (never a delegate);
//! - `expires_at` is after `issued_at`;
//! - `entries` strictly ascending by manifest id, `revoked_manifests` and `revoked_delegates`
//!   strictly ascending (so each is unique and lookups are binary searches, at 100,000 entries
//!   as at 1), and no manifest both listed and revoked;
//! - [`VerifiedCatalog::hash`] is SHA-256(`"licet/v1/catalog"` ‖ the envelope bytes exactly as
//!   received), which is what a [`CatalogHead`] commits to.
//!
//! Whether a catalog is *accepted* (trusted publisher, not expired, sequence above the highest
//! seen) is [`crate::policy::CatalogSet::accept`]'s job.

use serde::{Deserialize, Serialize};

use crate::{
    encoding::{self, DecodeError},
    ids::{CatalogHash, CatalogHeadKey, ManifestId, sha256},
    keys::{PublicKey, SecretKey},
    signed::{EnvelopeError, Signed, SignedKind},
    time::Timestamp,
};

/// Largest encoded catalog body (100,000 entries with 256-byte titles fit with room to spare).
pub const MAX_CATALOG_BODY_BYTES: usize = 48 * 1024 * 1024;
/// Largest encoded catalog head body.
pub const MAX_CATALOG_HEAD_BODY_BYTES: usize = 256;
/// Longest entry title, in bytes.
pub const MAX_ENTRY_TITLE_BYTES: usize = 256;

/// One listed manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The manifest's id.
    pub manifest_id: ManifestId,
    /// Its title, for people browsing the catalog.
    pub title: String,
}

/// The body of a catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// The publisher (also the signer).
    pub publisher: PublicKey,
    /// Strictly increasing with each catalog the publisher issues.
    pub sequence: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops being valid (exclusive).
    pub expires_at: Timestamp,
    /// Listed manifests, ascending by id.
    pub entries: Vec<CatalogEntry>,
    /// Withdrawn manifests, ascending.
    pub revoked_manifests: Vec<ManifestId>,
    /// Withdrawn delegate keys, ascending.
    pub revoked_delegates: Vec<PublicKey>,
}

/// Why a catalog or catalog head is not valid in itself.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogError {
    /// Malformed envelope, wrong kind, or bad signature.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body does not decode.
    #[error(transparent)]
    Body(#[from] DecodeError),
    /// Not signed by the publisher named in the body, or signed with a delegation.
    #[error("a catalog of publisher {publisher} must be signed by that key itself, not {signer}")]
    NotSignedByPublisher {
        /// The publisher in the body.
        publisher: PublicKey,
        /// The signer.
        signer: PublicKey,
    },
    /// `expires_at` is not after `issued_at`.
    #[error("catalog expires ({expires_at}) before it is issued ({issued_at})")]
    EmptyWindow {
        /// Issued.
        issued_at: Timestamp,
        /// Expires.
        expires_at: Timestamp,
    },
    /// A list is not strictly ascending.
    #[error(
        "catalog {list} are not strictly ascending (duplicate or out of order at position {position})"
    )]
    NotSorted {
        /// Which list.
        list: &'static str,
        /// The first offending index.
        position: usize,
    },
    /// A manifest is both listed and revoked.
    #[error("manifest {0} is both listed and revoked")]
    ListedAndRevoked(ManifestId),
    /// An entry title is too long.
    #[error("catalog entry {manifest_id} has a {len}-byte title, over {MAX_ENTRY_TITLE_BYTES}")]
    TitleTooLong {
        /// The entry.
        manifest_id: ManifestId,
        /// Its title length.
        len: usize,
    },
}

fn first_unsorted<T: Ord>(items: impl Iterator<Item = T>) -> Option<usize> {
    let mut previous: Option<T> = None;
    for (i, item) in items.enumerate() {
        if previous.as_ref().is_some_and(|p| *p >= item) {
            return Some(i);
        }
        previous = Some(item);
    }
    None
}

fn check_signer(signed: &Signed, publisher: PublicKey) -> Result<(), CatalogError> {
    if signed.signer != publisher || signed.delegation.is_some() {
        return Err(CatalogError::NotSignedByPublisher {
            publisher,
            signer: signed.signer,
        });
    }
    Ok(())
}

impl Catalog {
    /// Puts the lists in canonical order (ascending, deduplicated). The tool calls this before
    /// signing; verification rejects catalogs that are not canonical.
    pub fn canonicalize(&mut self) {
        self.entries.sort_by_key(|a| a.manifest_id);
        self.entries.dedup_by(|a, b| a.manifest_id == b.manifest_id);
        self.revoked_manifests.sort();
        self.revoked_manifests.dedup();
        self.revoked_delegates.sort();
        self.revoked_delegates.dedup();
    }

    /// Checks everything about the body that does not depend on the clock or other catalogs.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if self.expires_at <= self.issued_at {
            return Err(CatalogError::EmptyWindow {
                issued_at: self.issued_at,
                expires_at: self.expires_at,
            });
        }
        let unsorted = |list, position: Option<usize>| match position {
            Some(position) => Err(CatalogError::NotSorted { list, position }),
            None => Ok(()),
        };
        unsorted(
            "entries",
            first_unsorted(self.entries.iter().map(|e| e.manifest_id)),
        )?;
        unsorted(
            "revoked manifests",
            first_unsorted(self.revoked_manifests.iter()),
        )?;
        unsorted(
            "revoked delegates",
            first_unsorted(self.revoked_delegates.iter()),
        )?;
        for entry in &self.entries {
            if entry.title.len() > MAX_ENTRY_TITLE_BYTES {
                return Err(CatalogError::TitleTooLong {
                    manifest_id: entry.manifest_id,
                    len: entry.title.len(),
                });
            }
            if self.revokes_manifest(&entry.manifest_id) {
                return Err(CatalogError::ListedAndRevoked(entry.manifest_id));
            }
        }
        Ok(())
    }

    /// Whether `id` is listed.
    pub fn lists(&self, id: &ManifestId) -> bool {
        self.entries
            .binary_search_by(|e| e.manifest_id.cmp(id))
            .is_ok()
    }

    /// Whether `id` is revoked.
    pub fn revokes_manifest(&self, id: &ManifestId) -> bool {
        self.revoked_manifests.binary_search(id).is_ok()
    }

    /// Whether `delegate` is revoked.
    pub fn revokes_delegate(&self, delegate: &PublicKey) -> bool {
        self.revoked_delegates.binary_search(delegate).is_ok()
    }

    /// Canonicalizes, validates and signs with the publisher's own key.
    pub fn sign(mut self, key: &SecretKey) -> Result<VerifiedCatalog, CatalogError> {
        self.canonicalize();
        self.validate()?;
        check_signer_key(key, self.publisher)?;
        let signed = Signed::sign(SignedKind::Catalog, encoding::encode(&self), key, None);
        VerifiedCatalog::from_bytes(&signed.encode())
    }
}

fn check_signer_key(key: &SecretKey, publisher: PublicKey) -> Result<(), CatalogError> {
    if key.public_key() != publisher {
        return Err(CatalogError::NotSignedByPublisher {
            publisher,
            signer: key.public_key(),
        });
    }
    Ok(())
}

/// A catalog whose signature and body were checked (see the module docs).
#[derive(Clone, Debug)]
pub struct VerifiedCatalog {
    catalog: Catalog,
    envelope_bytes: Vec<u8>,
    hash: CatalogHash,
}

/// SHA-256(`"licet/v1/catalog"` ‖ envelope bytes).
pub fn catalog_hash(envelope_bytes: &[u8]) -> CatalogHash {
    CatalogHash(sha256(&[b"licet/v1/catalog", envelope_bytes]))
}

impl VerifiedCatalog {
    /// Decodes and verifies a catalog envelope: kind, signature over the stored body, body,
    /// signer is the publisher itself, canonical lists.
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedCatalog, CatalogError> {
        let signed = Signed::decode_kind(bytes, SignedKind::Catalog)?;
        signed.verify_signature()?;
        let catalog: Catalog =
            encoding::decode("catalog body", &signed.body, MAX_CATALOG_BODY_BYTES)?;
        check_signer(&signed, catalog.publisher)?;
        catalog.validate()?;
        Ok(VerifiedCatalog {
            catalog,
            hash: catalog_hash(bytes),
            envelope_bytes: bytes.to_vec(),
        })
    }

    /// The verified body.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The envelope bytes exactly as verified.
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.envelope_bytes
    }

    /// What a head for this catalog commits to; two catalogs with the same hash are
    /// byte-identical envelopes.
    pub fn hash(&self) -> CatalogHash {
        self.hash
    }

    /// The signed head for this catalog.
    pub fn head(&self, key: &SecretKey) -> Result<VerifiedCatalogHead, CatalogError> {
        check_signer_key(key, self.catalog.publisher)?;
        let head = CatalogHead {
            publisher: self.catalog.publisher,
            sequence: self.catalog.sequence,
            expires_at: self.catalog.expires_at,
            catalog_hash: self.hash,
        };
        let signed = Signed::sign(SignedKind::CatalogHead, encoding::encode(&head), key, None);
        VerifiedCatalogHead::from_bytes(&signed.encode())
    }
}

/// The signed pointer to a publisher's newest catalog, stored in the DHT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogHead {
    /// The publisher (also the signer).
    pub publisher: PublicKey,
    /// The catalog's sequence.
    pub sequence: u64,
    /// The catalog's expiry.
    pub expires_at: Timestamp,
    /// [`catalog_hash`] of the catalog's envelope.
    pub catalog_hash: CatalogHash,
}

/// The DHT key of `publisher`'s catalog head: SHA-256(`"licet/v1/catalog-head"` ‖ publisher).
pub fn catalog_head_key(publisher: &PublicKey) -> CatalogHeadKey {
    CatalogHeadKey(sha256(&[b"licet/v1/catalog-head", publisher.as_bytes()]))
}

/// The DHT key under which the nodes subscribed to `publisher`'s catalog gossip topic announce
/// themselves as providers, so that a node whose topic mesh is small or cut off finds others
/// (the catalog head key is provided only by nodes that hold a catalog, none before the first).
pub fn catalog_topic_key(publisher: &PublicKey) -> [u8; 32] {
    sha256(&[b"licet/v1/catalog-topic", publisher.as_bytes()])
}

/// A catalog head whose signature and body were checked: signed by its publisher's own key.
#[derive(Clone, Debug)]
pub struct VerifiedCatalogHead {
    head: CatalogHead,
    envelope_bytes: Vec<u8>,
}

impl VerifiedCatalogHead {
    /// Decodes and verifies a head envelope.
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedCatalogHead, CatalogError> {
        let signed = Signed::decode_kind(bytes, SignedKind::CatalogHead)?;
        signed.verify_signature()?;
        let head: CatalogHead = encoding::decode(
            "catalog head body",
            &signed.body,
            MAX_CATALOG_HEAD_BODY_BYTES,
        )?;
        check_signer(&signed, head.publisher)?;
        Ok(VerifiedCatalogHead {
            head,
            envelope_bytes: bytes.to_vec(),
        })
    }

    /// The verified body.
    pub fn head(&self) -> &CatalogHead {
        &self.head
    }

    /// The envelope bytes exactly as verified (the DHT record value).
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.envelope_bytes
    }

    /// Whether `catalog` is the one this head points to (mix-and-match defence).
    pub fn matches(&self, catalog: &VerifiedCatalog) -> bool {
        self.head.catalog_hash == catalog.hash()
            && self.head.publisher == catalog.catalog().publisher
            && self.head.sequence == catalog.catalog().sequence
            && self.head.expires_at == catalog.catalog().expires_at
    }
}

/// Why a DHT record is not stored as a catalog head.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadRecordRejection {
    /// The value is larger than any catalog head envelope.
    #[error("a {len}-byte record is over the catalog head limit of {limit} bytes")]
    Oversize {
        /// The value's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The value is not a catalog head signed by its publisher.
    #[error("not a valid catalog head: {0}")]
    Invalid(CatalogError),
    /// The record is stored under another key than the publisher's catalog head key.
    #[error("the record key is not the catalog head key of publisher {publisher}")]
    WrongKey {
        /// The head's publisher.
        publisher: PublicKey,
    },
    /// The head's catalog has expired.
    #[error("catalog head {sequence} of {publisher} expired at {expires_at}")]
    Expired {
        /// The publisher.
        publisher: PublicKey,
        /// The sequence.
        sequence: u64,
        /// Its expiry.
        expires_at: Timestamp,
    },
    /// A head with a lower sequence than the stored one (a rollback).
    #[error("catalog head {offered} of {publisher} is below the stored head {stored}")]
    LowerSequence {
        /// The publisher.
        publisher: PublicKey,
        /// The offered sequence.
        offered: u64,
        /// The stored sequence.
        stored: u64,
    },
    /// The same sequence as the stored head with different bytes.
    #[error(
        "catalog head {sequence} of {publisher} differs from the stored head with that sequence"
    )]
    EqualSequenceDifferentBytes {
        /// The publisher.
        publisher: PublicKey,
        /// The sequence.
        sequence: u64,
    },
}

/// What a DHT node checks before it stores the record `key` → `value` as a catalog head,
/// whether or not it trusts the publisher (it only keeps the DHT honest):
/// 1. the value is no larger than a catalog head envelope (checked before decoding);
/// 2. it is a catalog head signed by its publisher's own key;
/// 3. `key` is that publisher's [`catalog_head_key`];
/// 4. its catalog has not expired at `now`;
/// 5. if a head is stored under `key` already (`stored`), the new one's sequence is not lower,
///    and an equal sequence is the same bytes. A stored value that no longer verifies counts as
///    absent.
pub fn check_head_record(
    key: &[u8],
    value: &[u8],
    stored: Option<&[u8]>,
    now: Timestamp,
) -> Result<VerifiedCatalogHead, HeadRecordRejection> {
    let limit = SignedKind::CatalogHead.max_envelope_bytes();
    if value.len() > limit {
        return Err(HeadRecordRejection::Oversize {
            len: value.len(),
            limit,
        });
    }
    let verified = VerifiedCatalogHead::from_bytes(value).map_err(HeadRecordRejection::Invalid)?;
    let head = verified.head();
    if key != catalog_head_key(&head.publisher).0.as_slice() {
        return Err(HeadRecordRejection::WrongKey {
            publisher: head.publisher,
        });
    }
    if now >= head.expires_at {
        return Err(HeadRecordRejection::Expired {
            publisher: head.publisher,
            sequence: head.sequence,
            expires_at: head.expires_at,
        });
    }
    if let Some(held) = stored.and_then(|bytes| VerifiedCatalogHead::from_bytes(bytes).ok()) {
        let held_sequence = held.head().sequence;
        if head.sequence < held_sequence {
            return Err(HeadRecordRejection::LowerSequence {
                publisher: head.publisher,
                offered: head.sequence,
                stored: held_sequence,
            });
        }
        if head.sequence == held_sequence && held.envelope_bytes() != value {
            return Err(HeadRecordRejection::EqualSequenceDifferentBytes {
                publisher: head.publisher,
                sequence: head.sequence,
            });
        }
    }
    Ok(verified)
}
