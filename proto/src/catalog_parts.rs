//! Catalog format 2: a catalog travels as a small signed **root** and content-addressed
//! **parts**, so that an update costs a node what changed, not the whole catalog.
//!
//! ```text
//! root (signed, kind "catalog-root") = { format: 2, publisher, sequence, issued_at, expires_at,
//!                                        bucket_bits, pages: [part hash], revoked_delegates }
//! part  = Page { buckets: [part hash] }                       (BUCKETS_PER_PAGE per page)
//!       | Bucket { entries: [{ manifest_id, title }], revoked_manifests: [manifest id] }
//!       | LicenceBucket { entries, revoked_manifests, revoked_licences: [licence id] }
//! part hash    = SHA-256("licet/v1/catalog-part" ‖ encoded part)
//! catalog hash = SHA-256("licet/v1/catalog" ‖ root envelope)       (what the head commits to)
//! bucket(id)   = the first `bucket_bits` bits of the id (a manifest id or a licence id)
//! file         = { format: 2, root: root envelope, parts: [encoded part] }
//! ```
//!
//! Manifest ids and licence ids are SHA-256 outputs, so buckets fill evenly; the signing tool
//! picks the fewest buckets that hold about [`TARGET_ITEMS_PER_BUCKET`] ids each (2^13 = 8,192
//! buckets, 64 pages at 100,000 entries). A listed manifest and its revocation live in the same
//! bucket, so a takedown (one id moves from `entries` to `revoked_manifests`) changes one bucket,
//! the one page that names it, and the root: about 7 KB at 100,000 entries, against 5.6 MB for
//! the whole catalog. A licence revocation likewise changes the one bucket its id falls in.
//!
//! `LicenceBucket` came after catalogs without revoked licences were deployed. So that those
//! stay byte for byte what they were (same parts, same hashes), a bucket is written as a
//! `Bucket` unless it holds at least one revoked licence, and a `LicenceBucket` with no revoked
//! licence is refused: every catalog has exactly one encoding.
//!
//! Invariants of what [`assemble`] returns (and so of every `VerifiedCatalog`):
//! - every part is the one its parent names: its bytes hash to the hash the signed root (for a
//!   page) or a page (for a bucket) holds, checked before it is decoded;
//! - a root names exactly `page_count(bucket_bits)` pages, a page exactly the buckets it covers,
//!   each bucket (of either variant) holds only ids of its own bucket, ascending, titles within
//!   bounds, and no id both listed and revoked; so the buckets in order are the catalog's lists
//!   in ascending order;
//! - no part is over [`MAX_CATALOG_PART_BYTES`] and all parts together are at most
//!   [`crate::catalog::MAX_CATALOG_BODY_BYTES`].
//!
//! Catalog format 1 (every entry inside one signed envelope of kind "catalog") is no longer
//! read: it is refused with [`CatalogError::OldFormat`], naming the version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    catalog::{Catalog, CatalogEntry, CatalogError, MAX_CATALOG_BODY_BYTES},
    encoding,
    ids::{CatalogPartHash, LicenceId, ManifestId, sha256},
    keys::PublicKey,
    signed::{EnvelopeError, Signed, SignedKind},
    time::Timestamp,
};

/// The catalog format this crate writes and reads.
pub const CATALOG_FORMAT: u8 = 2;
/// Buckets named by one page.
pub const BUCKETS_PER_PAGE: usize = 128;
/// Most bucket bits (65,536 buckets, 512 pages).
pub const MAX_BUCKET_BITS: u8 = 16;
/// About how many ids (listed or revoked) the signing tool puts in one bucket.
pub const TARGET_ITEMS_PER_BUCKET: usize = 16;
/// Largest encoded part.
pub const MAX_CATALOG_PART_BYTES: usize = 256 * 1024;
/// Most revoked delegates one catalog names (they live in the root, which every update sends).
pub const MAX_REVOKED_DELEGATES: usize = 4096;
/// Largest encoded root body: 512 page hashes and [`MAX_REVOKED_DELEGATES`] keys, with room.
pub const MAX_CATALOG_ROOT_BODY_BYTES: usize = 256 * 1024;
/// Largest catalog file (root envelope and every part, with their length prefixes).
pub const MAX_CATALOG_FILE_BYTES: usize = MAX_CATALOG_BODY_BYTES + 2 * 1024 * 1024;
/// Most parts in one catalog: every bucket and every page.
pub const MAX_CATALOG_PARTS: usize =
    (1 << MAX_BUCKET_BITS) + (1 << MAX_BUCKET_BITS) / BUCKETS_PER_PAGE;

/// The signed body of a format-2 catalog (kind `catalog-root`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRoot {
    /// [`CATALOG_FORMAT`].
    pub format: u8,
    /// The publisher (also the signer).
    pub publisher: PublicKey,
    /// Strictly increasing with each catalog the publisher issues.
    pub sequence: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops being valid (exclusive).
    pub expires_at: Timestamp,
    /// The catalog has 2^`bucket_bits` buckets.
    pub bucket_bits: u8,
    /// The hash of each page, in order.
    pub pages: Vec<CatalogPartHash>,
    /// Withdrawn delegate keys, ascending.
    pub revoked_delegates: Vec<PublicKey>,
}

/// One part of a catalog. Append-only: never reorder or remove a variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogPart {
    /// The hashes of the buckets this page covers, in order.
    Page {
        /// Bucket hashes.
        buckets: Vec<CatalogPartHash>,
    },
    /// The listed and revoked manifests whose ids fall in one bucket, each ascending.
    Bucket {
        /// Listed manifests.
        entries: Vec<CatalogEntry>,
        /// Withdrawn manifests.
        revoked_manifests: Vec<ManifestId>,
    },
    /// A bucket that also holds withdrawn licences (at least one), each list ascending. A bucket
    /// without one is written as [`CatalogPart::Bucket`].
    LicenceBucket {
        /// Listed manifests.
        entries: Vec<CatalogEntry>,
        /// Withdrawn manifests.
        revoked_manifests: Vec<ManifestId>,
        /// Withdrawn licences: never empty.
        revoked_licences: Vec<LicenceId>,
    },
}

/// A catalog as one file (what `licet-manifest catalog sign` writes and `catalog publish`
/// takes): the root envelope and every distinct part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogFile {
    /// [`CATALOG_FORMAT`].
    pub format: u8,
    /// The signed root envelope.
    pub root: Vec<u8>,
    /// Every distinct part the root names, pages first.
    pub parts: Vec<Vec<u8>>,
}

impl CatalogFile {
    /// Decodes a catalog file (not verified: [`crate::catalog::VerifiedCatalog::from_bytes`] does that). Bytes
    /// that are a signed object instead are named: a format-1 catalog as
    /// [`CatalogError::OldFormat`], another kind as the kind it is.
    pub fn decode(bytes: &[u8]) -> Result<CatalogFile, CatalogError> {
        let file: CatalogFile =
            match encoding::decode("catalog file", bytes, MAX_CATALOG_FILE_BYTES) {
                Ok(file) => file,
                Err(e) => {
                    return Err(match Signed::decode(bytes) {
                        Ok(signed) if signed.kind == SignedKind::Catalog => {
                            CatalogError::OldFormat { version: 1 }
                        }
                        Ok(signed) => CatalogError::Envelope(EnvelopeError::WrongKind {
                            expected: "catalog",
                            found: signed.kind.noun(),
                        }),
                        Err(_) => e.into(),
                    });
                }
            };
        if file.format != CATALOG_FORMAT {
            return Err(CatalogError::OldFormat {
                version: u32::from(file.format),
            });
        }
        Ok(file)
    }

    /// In the words of a person who gave `bytes` as a catalog file, why [`CatalogFile::decode`]
    /// refused them with `error`: what the file is instead (text, another signed object) or
    /// what is wrong with it. Both tools say `NAME is not a Licet catalog (this)`.
    pub fn why_not(bytes: &[u8], error: CatalogError) -> String {
        match error {
            CatalogError::Envelope(EnvelopeError::WrongKind { found, .. }) => {
                crate::signed::NotSignedError::OtherKind(found).to_string()
            }
            CatalogError::Body(_) => match Signed::identify(bytes, None) {
                Err(not_signed) => not_signed.to_string(),
                Ok(_) => error.to_string(),
            },
            error => error.to_string(),
        }
    }
}

/// SHA-256(`"licet/v1/catalog-part"` ‖ `bytes`).
pub fn catalog_part_hash(bytes: &[u8]) -> CatalogPartHash {
    CatalogPartHash(sha256(&[b"licet/v1/catalog-part", bytes]))
}

/// The bucket of the manifest `id` among 2^`bits` buckets: the first `bits` bits of the id.
pub fn bucket_of(id: &ManifestId, bits: u8) -> u32 {
    bucket_of_bytes(&id.0, bits)
}

/// The bucket of the licence `id` among 2^`bits` buckets: the first `bits` bits of the id.
pub fn licence_bucket_of(id: &LicenceId, bits: u8) -> u32 {
    bucket_of_bytes(&id.0, bits)
}

fn bucket_of_bytes(id: &[u8; 32], bits: u8) -> u32 {
    if bits == 0 {
        return 0;
    }
    let prefix = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    prefix >> (32 - u32::from(bits.min(32)))
}

/// How many pages name 2^`bits` buckets.
pub fn page_count(bits: u8) -> usize {
    (1usize << bits).div_ceil(BUCKETS_PER_PAGE)
}

/// The buckets page `page` names among 2^`bits`.
fn page_buckets(bits: u8, page: usize) -> std::ops::Range<usize> {
    let start = page * BUCKETS_PER_PAGE;
    start..(start + BUCKETS_PER_PAGE).min(1 << bits)
}

/// The fewest bucket bits that keep about [`TARGET_ITEMS_PER_BUCKET`] ids in a bucket.
fn bucket_bits_for(ids: usize) -> u8 {
    let mut bits = 0;
    while bits < MAX_BUCKET_BITS && ids > TARGET_ITEMS_PER_BUCKET << bits {
        bits += 1;
    }
    bits
}

/// A catalog cut into parts: its root body (unsigned) and each distinct part by hash.
#[derive(Clone, Debug)]
pub struct SplitCatalog {
    /// The root body to sign.
    pub root: CatalogRoot,
    /// Every distinct part, by hash.
    pub parts: BTreeMap<CatalogPartHash, Vec<u8>>,
}

/// Cuts a canonical, valid `catalog` into parts (the signing tool's job). Grows the bucket count
/// past the target if a bucket would be over [`MAX_CATALOG_PART_BYTES`].
pub fn split(catalog: &Catalog) -> Result<SplitCatalog, CatalogError> {
    if catalog.revoked_delegates.len() > MAX_REVOKED_DELEGATES {
        return Err(CatalogError::TooManyRevokedDelegates(
            catalog.revoked_delegates.len(),
        ));
    }
    let ids =
        catalog.entries.len() + catalog.revoked_manifests.len() + catalog.revoked_licences.len();
    let mut bits = bucket_bits_for(ids);
    loop {
        match split_with(catalog, bits) {
            Err(CatalogError::PartTooLarge { .. }) if bits < MAX_BUCKET_BITS => bits += 1,
            other => return other,
        }
    }
}

fn split_with(catalog: &Catalog, bits: u8) -> Result<SplitCatalog, CatalogError> {
    let bucket_count = 1usize << bits;
    let mut buckets: Vec<(Vec<CatalogEntry>, Vec<ManifestId>, Vec<LicenceId>)> =
        vec![Default::default(); bucket_count];
    for entry in &catalog.entries {
        buckets[bucket_of(&entry.manifest_id, bits) as usize]
            .0
            .push(entry.clone());
    }
    for id in &catalog.revoked_manifests {
        buckets[bucket_of(id, bits) as usize].1.push(*id);
    }
    for id in &catalog.revoked_licences {
        buckets[licence_bucket_of(id, bits) as usize].2.push(*id);
    }
    let mut parts = BTreeMap::new();
    let mut add = |part: &CatalogPart| -> Result<CatalogPartHash, CatalogError> {
        let bytes = encoding::encode(part);
        if bytes.len() > MAX_CATALOG_PART_BYTES {
            return Err(CatalogError::PartTooLarge { len: bytes.len() });
        }
        let hash = catalog_part_hash(&bytes);
        parts.insert(hash, bytes);
        Ok(hash)
    };
    let bucket_hashes = buckets
        .into_iter()
        .map(|(entries, revoked_manifests, revoked_licences)| {
            // Only a bucket with a revoked licence takes the newer variant: a catalog without
            // one encodes exactly as before `LicenceBucket` existed.
            add(&if revoked_licences.is_empty() {
                CatalogPart::Bucket {
                    entries,
                    revoked_manifests,
                }
            } else {
                CatalogPart::LicenceBucket {
                    entries,
                    revoked_manifests,
                    revoked_licences,
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pages = bucket_hashes
        .chunks(BUCKETS_PER_PAGE)
        .map(|buckets| {
            add(&CatalogPart::Page {
                buckets: buckets.to_vec(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SplitCatalog {
        root: CatalogRoot {
            format: CATALOG_FORMAT,
            publisher: catalog.publisher,
            sequence: catalog.sequence,
            issued_at: catalog.issued_at,
            expires_at: catalog.expires_at,
            bucket_bits: bits,
            pages,
            revoked_delegates: catalog.revoked_delegates.clone(),
        },
        parts,
    })
}

impl CatalogRoot {
    /// Checks everything about the root alone: format, window, bucket bits, page count, and
    /// revoked delegates ascending and bounded.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if self.format != CATALOG_FORMAT {
            return Err(CatalogError::OldFormat {
                version: u32::from(self.format),
            });
        }
        if self.expires_at <= self.issued_at {
            return Err(CatalogError::EmptyWindow {
                issued_at: self.issued_at,
                expires_at: self.expires_at,
            });
        }
        if self.bucket_bits > MAX_BUCKET_BITS {
            return Err(CatalogError::BadShape(format!(
                "{} bucket bits, over {MAX_BUCKET_BITS}",
                self.bucket_bits
            )));
        }
        let pages = page_count(self.bucket_bits);
        if self.pages.len() != pages {
            return Err(CatalogError::BadShape(format!(
                "the root names {} pages where 2^{} buckets take {pages}",
                self.pages.len(),
                self.bucket_bits
            )));
        }
        if self.revoked_delegates.len() > MAX_REVOKED_DELEGATES {
            return Err(CatalogError::TooManyRevokedDelegates(
                self.revoked_delegates.len(),
            ));
        }
        if let Some(position) = crate::catalog::first_unsorted(self.revoked_delegates.iter()) {
            return Err(CatalogError::NotSorted {
                list: "revoked delegates",
                position,
            });
        }
        Ok(())
    }

    /// The parts of this catalog that `held` lacks, as far as what it holds shows: the pages it
    /// lacks, and the buckets the held pages name that it lacks. Empty once it holds every part.
    /// A held page must be the one asked for (`held` answers by hash) and decode as a page.
    pub fn missing_parts<'a>(
        &self,
        held: impl Fn(&CatalogPartHash) -> Option<&'a [u8]>,
    ) -> Result<Vec<CatalogPartHash>, CatalogError> {
        let mut missing = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (index, hash) in self.pages.iter().enumerate() {
            match held(hash) {
                None => {
                    if seen.insert(*hash) {
                        missing.push(*hash);
                    }
                }
                Some(bytes) => {
                    for bucket in page(self.bucket_bits, index, hash, bytes)? {
                        if held(&bucket).is_none() && seen.insert(bucket) {
                            missing.push(bucket);
                        }
                    }
                }
            }
        }
        Ok(missing)
    }
}

/// Checks `bytes` are the part `hash` names, then decodes it.
fn part(hash: &CatalogPartHash, bytes: &[u8]) -> Result<CatalogPart, CatalogError> {
    if bytes.len() > MAX_CATALOG_PART_BYTES {
        return Err(CatalogError::PartTooLarge { len: bytes.len() });
    }
    if catalog_part_hash(bytes) != *hash {
        return Err(CatalogError::PartMismatch(*hash));
    }
    Ok(encoding::decode(
        "catalog part",
        bytes,
        MAX_CATALOG_PART_BYTES,
    )?)
}

/// Page `index` (named `hash`) of a catalog with 2^`bits` buckets: its bucket hashes.
fn page(
    bits: u8,
    index: usize,
    hash: &CatalogPartHash,
    bytes: &[u8],
) -> Result<Vec<CatalogPartHash>, CatalogError> {
    let CatalogPart::Page { buckets } = part(hash, bytes)? else {
        return Err(CatalogError::BadShape(format!(
            "part {hash}, named as page {index}, is a bucket"
        )));
    };
    let expected = page_buckets(bits, index).len();
    if buckets.len() != expected {
        return Err(CatalogError::BadShape(format!(
            "page {index} names {} buckets, not {expected}",
            buckets.len()
        )));
    }
    Ok(buckets)
}

/// The catalog `root` names, put together from its parts (`held` answers by hash), with every
/// check of the module docs. Fails naming the first part missing or wrong.
pub fn assemble<'a>(
    root: &CatalogRoot,
    held: impl Fn(&CatalogPartHash) -> Option<&'a [u8]>,
) -> Result<Catalog, CatalogError> {
    root.validate()?;
    let lookup = |hash: &CatalogPartHash| held(hash).ok_or(CatalogError::MissingPart(*hash));
    let mut catalog = Catalog {
        publisher: root.publisher,
        sequence: root.sequence,
        issued_at: root.issued_at,
        expires_at: root.expires_at,
        entries: Vec::new(),
        revoked_manifests: Vec::new(),
        revoked_delegates: root.revoked_delegates.clone(),
        revoked_licences: Vec::new(),
    };
    let mut total = 0usize;
    for (index, page_hash) in root.pages.iter().enumerate() {
        let bytes = lookup(page_hash)?;
        total += bytes.len();
        let buckets = page(root.bucket_bits, index, page_hash, bytes)?;
        for (bucket, hash) in page_buckets(root.bucket_bits, index).zip(&buckets) {
            let bytes = lookup(hash)?;
            total += bytes.len();
            if total > MAX_CATALOG_BODY_BYTES {
                return Err(CatalogError::BadShape(format!(
                    "its parts are over {MAX_CATALOG_BODY_BYTES} bytes together"
                )));
            }
            let (entries, revoked_manifests, revoked_licences) = match part(hash, bytes)? {
                CatalogPart::Bucket {
                    entries,
                    revoked_manifests,
                } => (entries, revoked_manifests, Vec::new()),
                CatalogPart::LicenceBucket {
                    revoked_licences, ..
                } if revoked_licences.is_empty() => {
                    return Err(CatalogError::BadShape(format!(
                        "bucket {bucket} ({hash}) is a licence bucket without a revoked licence \
                         (such a bucket is written as a plain bucket)"
                    )));
                }
                CatalogPart::LicenceBucket {
                    entries,
                    revoked_manifests,
                    revoked_licences,
                } => (entries, revoked_manifests, revoked_licences),
                CatalogPart::Page { .. } => {
                    return Err(CatalogError::BadShape(format!(
                        "part {hash}, named as bucket {bucket}, is a page"
                    )));
                }
            };
            let misplaced = entries
                .iter()
                .map(|e| &e.manifest_id)
                .chain(&revoked_manifests)
                .find(|id| bucket_of(id, root.bucket_bits) as usize != bucket);
            if let Some(id) = misplaced {
                return Err(CatalogError::BadShape(format!(
                    "manifest {id} is in bucket {bucket}, not its own"
                )));
            }
            let misplaced = revoked_licences
                .iter()
                .find(|id| licence_bucket_of(id, root.bucket_bits) as usize != bucket);
            if let Some(id) = misplaced {
                return Err(CatalogError::BadShape(format!(
                    "licence {id} is in bucket {bucket}, not its own"
                )));
            }
            catalog.entries.extend(entries);
            catalog.revoked_manifests.extend(revoked_manifests);
            catalog.revoked_licences.extend(revoked_licences);
        }
    }
    // Buckets are in id order and hold only their own ids, so the lists are canonical exactly
    // when each bucket is: the whole-catalog check says which list and where.
    catalog.validate()?;
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, last: u8) -> ManifestId {
        let mut bytes = [0; 32];
        bytes[0] = first;
        bytes[31] = last;
        ManifestId(bytes)
    }

    #[test]
    fn buckets_are_the_leading_bits_of_the_id() {
        assert_eq!(bucket_of(&id(0xff, 0), 0), 0);
        assert_eq!(bucket_of(&id(0x80, 0), 1), 1);
        assert_eq!(bucket_of(&id(0x7f, 0), 1), 0);
        assert_eq!(bucket_of(&id(0xab, 0), 8), 0xab);
        assert_eq!(bucket_of(&ManifestId([0xff; 32]), 16), 0xffff);
        assert_eq!(page_count(0), 1);
        assert_eq!(page_count(7), 1);
        assert_eq!(page_count(8), 2);
        assert_eq!(page_count(16), 512);
    }

    #[test]
    fn bucket_bits_grow_with_the_catalog() {
        assert_eq!(bucket_bits_for(0), 0);
        assert_eq!(bucket_bits_for(TARGET_ITEMS_PER_BUCKET), 0);
        assert_eq!(bucket_bits_for(TARGET_ITEMS_PER_BUCKET + 1), 1);
        assert_eq!(bucket_bits_for(100_000), 13);
        assert_eq!(bucket_bits_for(usize::MAX / 2), MAX_BUCKET_BITS);
    }
}
