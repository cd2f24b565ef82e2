//! Catalogs and catalog heads: a publisher's signed list of what it publishes and what it has
//! withdrawn, and the short signed pointer to the newest one that travels through the DHT.
//!
//! A catalog is signed and travels in format 2 ([`crate::catalog_parts`]): a small signed root
//! that names content-addressed parts (pages of bucket hashes, and buckets of entries and
//! revocations), so a node that holds the previous catalog fetches only the parts that changed.
//! [`Catalog`] is what they make together; [`Catalog::sign`] cuts it into parts and signs the
//! root.
//!
//! Invariants of a [`VerifiedCatalog`] (built only by [`VerifiedCatalog::from_bytes`],
//! [`VerifiedCatalog::assemble`] or [`Catalog::sign`]):
//! - its root is signed by the publisher named in it, with its own key (never a delegate);
//! - every part is the one its parent names (checked by hash before it is decoded);
//! - `expires_at` is after `issued_at`;
//! - `entries` strictly ascending by manifest id, `revoked_manifests`, `revoked_delegates` and
//!   `revoked_licences` strictly ascending (so each is unique and lookups are binary searches,
//!   at 100,000 entries as at 1), and no manifest both listed and revoked;
//! - [`VerifiedCatalog::hash`] is SHA-256(`"licet/v1/catalog"` ‖ the root envelope bytes exactly
//!   as received), which is what a [`CatalogHead`] commits to; the root names every part by
//!   hash, so one hash pins the whole catalog.
//!
//! Whether a catalog is *accepted* (trusted publisher, not expired, sequence above the highest
//! seen) is [`crate::policy::CatalogSet::accept`]'s job.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    catalog_parts::{
        self, CATALOG_FORMAT, CatalogFile, CatalogPart, CatalogRoot, MAX_CATALOG_PART_BYTES,
        MAX_CATALOG_PARTS, MAX_CATALOG_ROOT_BODY_BYTES, MAX_REVOKED_DELEGATES, catalog_part_hash,
    },
    encoding::{self, DecodeError},
    ids::{CatalogHash, CatalogHeadKey, CatalogPartHash, LicenceId, ManifestId, sha256},
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

/// The body of a catalog: what its root and parts make together.
///
/// Its serde encoding is the body of a format-1 catalog envelope (no longer read, kept for
/// `inspect` and the golden tests of that format), which never held revoked licences: they
/// travel only in format 2's `LicenceBucket` parts, so `revoked_licences` is not serialized.
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
    /// Withdrawn licences, ascending: a node no longer opens a release with one of these.
    /// Not part of the serde encoding (see above).
    #[serde(skip)]
    pub revoked_licences: Vec<LicenceId>,
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
    /// A catalog of another format than this crate reads.
    #[error(
        "catalog format {version} is not read here (this version reads format {CATALOG_FORMAT}: \
         a signed root and its parts); sign the catalog again with `licet-manifest catalog sign`"
    )]
    OldFormat {
        /// The format found.
        version: u32,
    },
    /// The root, a page or the file does not have the shape the format requires.
    #[error("catalog is malformed: {0}")]
    BadShape(String),
    /// A part is over [`MAX_CATALOG_PART_BYTES`].
    #[error("a {len}-byte catalog part is over the limit of {MAX_CATALOG_PART_BYTES} bytes")]
    PartTooLarge {
        /// Its length.
        len: usize,
    },
    /// A part's bytes do not hash to the hash that names it.
    #[error("catalog part {0} is not the part its hash names (its bytes hash otherwise)")]
    PartMismatch(CatalogPartHash),
    /// A part the catalog names is not at hand.
    #[error("catalog part {0} is missing")]
    MissingPart(CatalogPartHash),
    /// A catalog file holds a part its root does not name (of another catalog).
    #[error("catalog part {0} is not a part of this catalog")]
    StrayPart(CatalogPartHash),
    /// More revoked delegates than one catalog names.
    #[error("catalog revokes {0} delegates, over {MAX_REVOKED_DELEGATES}")]
    TooManyRevokedDelegates(usize),
    /// An entry title is too long.
    #[error("catalog entry {manifest_id} has a {len}-byte title, over {MAX_ENTRY_TITLE_BYTES}")]
    TitleTooLong {
        /// The entry.
        manifest_id: ManifestId,
        /// Its title length.
        len: usize,
    },
}

pub(crate) fn first_unsorted<T: Ord>(items: impl Iterator<Item = T>) -> Option<usize> {
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
        self.revoked_licences.sort();
        self.revoked_licences.dedup();
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
        unsorted(
            "revoked licences",
            first_unsorted(self.revoked_licences.iter()),
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

    /// Whether the licence `id` is revoked.
    pub fn revokes_licence(&self, id: &LicenceId) -> bool {
        self.revoked_licences.binary_search(id).is_ok()
    }

    /// Canonicalizes, validates and signs with the publisher's own key.
    pub fn sign(mut self, key: &SecretKey) -> Result<VerifiedCatalog, CatalogError> {
        self.canonicalize();
        self.validate()?;
        check_signer_key(key, self.publisher)?;
        let split = catalog_parts::split(&self)?;
        let signed = Signed::sign(
            SignedKind::CatalogRoot,
            encoding::encode(&split.root),
            key,
            None,
        );
        let root = VerifiedCatalogRoot::from_bytes(&signed.encode())?;
        VerifiedCatalog::assemble(root, |hash| split.parts.get(hash).map(Vec::as_slice))
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

/// A format-2 catalog root whose signature and body were checked: signed by its publisher's own
/// key, [`CatalogRoot::validate`] passed. Its parts are not checked yet ([`VerifiedCatalog`]).
#[derive(Clone, Debug)]
pub struct VerifiedCatalogRoot {
    root: CatalogRoot,
    envelope_bytes: Vec<u8>,
    hash: CatalogHash,
}

impl VerifiedCatalogRoot {
    /// Decodes and verifies a root envelope: kind, signature over the stored body, body, signer
    /// is the publisher itself, [`CatalogRoot::validate`]. A format-1 catalog envelope is
    /// refused as [`CatalogError::OldFormat`].
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedCatalogRoot, CatalogError> {
        let signed = match Signed::decode_kind(bytes, SignedKind::CatalogRoot) {
            Ok(signed) => signed,
            Err(e) => {
                if Signed::decode_kind(bytes, SignedKind::Catalog).is_ok() {
                    return Err(CatalogError::OldFormat { version: 1 });
                }
                return Err(e.into());
            }
        };
        signed.verify_signature()?;
        let root: CatalogRoot = encoding::decode(
            "catalog root body",
            &signed.body,
            MAX_CATALOG_ROOT_BODY_BYTES,
        )?;
        check_signer(&signed, root.publisher)?;
        root.validate()?;
        Ok(VerifiedCatalogRoot {
            root,
            hash: catalog_hash(bytes),
            envelope_bytes: bytes.to_vec(),
        })
    }

    /// The verified body.
    pub fn root(&self) -> &CatalogRoot {
        &self.root
    }

    /// The envelope bytes exactly as verified.
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.envelope_bytes
    }

    /// What a head for this catalog commits to.
    pub fn hash(&self) -> CatalogHash {
        self.hash
    }
}

/// A catalog whose root signature, parts and body were checked (see the module docs and
/// [`crate::catalog_parts`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct VerifiedCatalog(Arc<VerifiedParts>);

#[derive(Debug)]
struct VerifiedParts {
    catalog: Catalog,
    root: VerifiedCatalogRoot,
    parts: BTreeMap<CatalogPartHash, Vec<u8>>,
}

/// SHA-256(`"licet/v1/catalog"` ‖ root envelope bytes).
pub fn catalog_hash(envelope_bytes: &[u8]) -> CatalogHash {
    CatalogHash(sha256(&[b"licet/v1/catalog", envelope_bytes]))
}

impl VerifiedCatalog {
    /// Decodes and verifies a catalog file ([`CatalogFile`]): its root as
    /// [`VerifiedCatalogRoot::from_bytes`] does, then every part against the hash that names it,
    /// then the catalog they make. Every part in the file must be one the root names. A format-1
    /// catalog envelope is refused as [`CatalogError::OldFormat`].
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedCatalog, CatalogError> {
        let file = CatalogFile::decode(bytes)?;
        if file.parts.len() > MAX_CATALOG_PARTS {
            return Err(CatalogError::BadShape(format!(
                "the file holds {} parts, over {MAX_CATALOG_PARTS}",
                file.parts.len()
            )));
        }
        let root = VerifiedCatalogRoot::from_bytes(&file.root)?;
        let count = file.parts.len();
        let parts: BTreeMap<CatalogPartHash, Vec<u8>> = file
            .parts
            .into_iter()
            .map(|bytes| (catalog_part_hash(&bytes), bytes))
            .collect();
        if parts.len() != count {
            return Err(CatalogError::BadShape(
                "the file holds a part twice".to_owned(),
            ));
        }
        let catalog = VerifiedCatalog::assemble(root, |hash| parts.get(hash).map(Vec::as_slice))?;
        if catalog.0.parts.len() != parts.len() {
            let stray = parts
                .keys()
                .find(|hash| !catalog.0.parts.contains_key(hash))
                .copied()
                .unwrap_or(CatalogPartHash([0; 32]));
            return Err(CatalogError::StrayPart(stray));
        }
        Ok(catalog)
    }

    /// The catalog `root` names, from its parts (`held` answers by hash; it may hold more, of
    /// other catalogs): every part checked against the hash that names it before it is decoded
    /// ([`crate::catalog_parts::assemble`]). Keeps a copy of exactly the parts it names.
    pub fn assemble<'a>(
        root: VerifiedCatalogRoot,
        held: impl Fn(&CatalogPartHash) -> Option<&'a [u8]>,
    ) -> Result<VerifiedCatalog, CatalogError> {
        let catalog = catalog_parts::assemble(root.root(), &held)?;
        let mut parts = BTreeMap::new();
        let mut keep = |hash: &CatalogPartHash| {
            if let Some(bytes) = held(hash) {
                parts.entry(*hash).or_insert_with(|| bytes.to_vec());
            }
        };
        for page in &root.root().pages {
            keep(page);
            if let Some(Ok(CatalogPart::Page { buckets })) = held(page).map(|bytes| {
                encoding::decode::<CatalogPart>("catalog part", bytes, MAX_CATALOG_PART_BYTES)
            }) {
                buckets.iter().for_each(&mut keep);
            }
        }
        Ok(VerifiedCatalog(Arc::new(VerifiedParts {
            catalog,
            root,
            parts,
        })))
    }

    /// The verified body.
    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    /// The verified root.
    pub fn root(&self) -> &VerifiedCatalogRoot {
        &self.0.root
    }

    /// The part named `hash`, if it is one of this catalog's.
    pub fn part(&self, hash: &CatalogPartHash) -> Option<&[u8]> {
        self.0.parts.get(hash).map(Vec::as_slice)
    }

    /// How many distinct parts the catalog has, and their bytes together.
    pub fn parts_size(&self) -> (usize, usize) {
        (
            self.0.parts.len(),
            self.0.parts.values().map(Vec::len).sum(),
        )
    }

    /// The catalog as one file ([`CatalogFile`]): the root envelope, then every part, pages
    /// first. [`VerifiedCatalog::from_bytes`] reads it back.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let pages = &self.0.root.root().pages;
        let mut parts: Vec<Vec<u8>> = Vec::with_capacity(self.0.parts.len());
        let mut written = std::collections::BTreeSet::new();
        for hash in pages.iter().chain(self.0.parts.keys()) {
            if written.insert(*hash)
                && let Some(bytes) = self.0.parts.get(hash)
            {
                parts.push(bytes.clone());
            }
        }
        encoding::encode(&CatalogFile {
            format: CATALOG_FORMAT,
            root: self.0.root.envelope_bytes().to_vec(),
            parts,
        })
    }

    /// What a head for this catalog commits to (the hash of its root envelope, which names
    /// every part by hash); two catalogs with the same hash are the same catalog, byte for byte.
    pub fn hash(&self) -> CatalogHash {
        self.0.root.hash()
    }

    /// The signed head for this catalog.
    pub fn head(&self, key: &SecretKey) -> Result<VerifiedCatalogHead, CatalogError> {
        let catalog = &self.0.catalog;
        check_signer_key(key, catalog.publisher)?;
        let head = CatalogHead {
            publisher: catalog.publisher,
            sequence: catalog.sequence,
            expires_at: catalog.expires_at,
            catalog_hash: self.hash(),
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
