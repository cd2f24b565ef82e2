//! Manifests: what a rights holder signs about a release, and [`VerifiedManifest`], the only
//! form in which code past the boundary sees one.
//!
//! Invariants of a [`VerifiedManifest`] (its only constructor, [`VerifiedManifest::verify`], checks
//! them in this order, signature before decoding):
//! 1. the envelope is of kind `manifest` and its signature verifies over the stored body;
//! 2. the body decodes within [`MAX_MANIFEST_BODY_BYTES`] with no trailing bytes;
//! 3. the body is well-formed: known format version, a power-of-two chunk size in range, 1 to
//!    [`MAX_FILES`] files with safe, unique, non-nesting paths, bounded text fields, a non-empty
//!    licence window and unique regions;
//! 4. the signer is the publisher with no delegation, or carries a delegation signed by that
//!    publisher to exactly this signer whose scope covers the manifest.
//!
//! Time-dependent questions (is the licence or the delegation valid now, is anything revoked) are
//! the trust policy's ([`crate::policy`]).

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{
    delegation::{Delegation, DelegationError, DelegationScope},
    encoding::{self, DecodeError},
    encryption::{ContentKeyId, EncryptionAlgorithm, ciphertext_size},
    ids::{ManifestId, MerkleHash, sha256},
    keys::{PublicKey, SecretKey},
    path::{PathError, SafePath, check_path_set},
    signed::{EnvelopeError, Signed, SignedDelegation, SignedKind},
    time::Timestamp,
};

pub use crate::region::{ASSIGNED_REGIONS, Region, RegionError};

/// The manifest format of releases in the clear, which this code writes and reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// The manifest format of encrypted releases: version 1 followed by a [`ReleaseEncryption`].
pub const ENCRYPTED_MANIFEST_FORMAT_VERSION: u32 = 2;
/// Largest encoded manifest body.
pub const MAX_MANIFEST_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most files in one manifest.
pub const MAX_FILES: usize = 100_000;
/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;
/// Longest description or licence terms, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most regions a licence may list.
pub const MAX_REGIONS: usize = 300;
/// Smallest chunk size.
pub const MIN_CHUNK_SIZE: u32 = 16 * 1024;
/// Largest chunk size.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Default chunk size.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Largest file, in bytes (256 TiB). At the smallest chunk size that is 2^34 chunks, so chunk
/// indexes are `u64` everywhere.
pub const MAX_FILE_SIZE: u64 = 1 << 48;

/// The licence under which a manifest's content may be shared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    /// Human-readable terms.
    pub terms: String,
    /// Not valid before this time.
    pub not_before: Timestamp,
    /// Not valid from this time on (exclusive); `None` = no end.
    pub not_after: Option<Timestamp>,
    /// Where it may be shared; empty = worldwide.
    pub regions: Vec<Region>,
}

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Where the file goes, relative to the download directory.
    pub path: SafePath,
    /// Its length in bytes.
    pub size: u64,
    /// The root of its merkle tree ([`crate::merkle`]).
    pub root: MerkleHash,
}

impl FileEntry {
    /// How many chunks the file has at `chunk_size` (an empty file has one empty chunk).
    pub fn chunk_count(&self, chunk_size: u32) -> u64 {
        crate::merkle::chunk_count(self.size, chunk_size)
    }
}

/// How an encrypted release's files are encrypted ([`crate::encryption`]). Each listed file
/// (its `size` and merkle `root`) is the ciphertext; `plaintext_sizes[i]` is file *i*'s size
/// once decrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseEncryption {
    /// The cipher.
    pub algorithm: EncryptionAlgorithm,
    /// The id of the release's content key, which licences seal to buyers.
    pub key_id: ContentKeyId,
    /// Each file's plaintext size, in the order of `files`.
    pub plaintext_sizes: Vec<u64>,
}

/// The body of a manifest.
///
/// Encoded as postcard encodes a struct of these fields in this order, with `encryption` present
/// only in format version 2 ([`ENCRYPTED_MANIFEST_FORMAT_VERSION`]): a version 1 body (every
/// manifest made before encrypted releases, and every unencrypted one still) ends after
/// `licence`, so its bytes, ids and signatures are unchanged, and a build that reads only
/// version 1 refuses a version 2 body by its version number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_VERSION`], or [`ENCRYPTED_MANIFEST_FORMAT_VERSION`] with `encryption`.
    pub version: u32,
    /// The rights holder, even when a delegate signs.
    pub publisher: PublicKey,
    /// Title shown to people.
    pub title: String,
    /// Optional longer description.
    pub description: Option<String>,
    /// When the manifest was made.
    pub created_at: Timestamp,
    /// Chunk size in bytes: a power of two from 16 KiB to 16 MiB.
    pub chunk_size: u32,
    /// The files, in the order the publisher gave them.
    pub files: Vec<FileEntry>,
    /// The licence.
    pub licence: Licence,
    /// How the files are encrypted; `None` for a release in the clear.
    pub encryption: Option<ReleaseEncryption>,
}

/// Fields of a body in encoding order, borrowed, for [`Manifest`]'s `Serialize`.
#[derive(Serialize)]
struct ManifestFields<'a> {
    version: u32,
    publisher: &'a PublicKey,
    title: &'a str,
    description: &'a Option<String>,
    created_at: Timestamp,
    chunk_size: u32,
    files: &'a [FileEntry],
    licence: &'a Licence,
}

impl Serialize for Manifest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let fields = ManifestFields {
            version: self.version,
            publisher: &self.publisher,
            title: &self.title,
            description: &self.description,
            created_at: self.created_at,
            chunk_size: self.chunk_size,
            files: &self.files,
            licence: &self.licence,
        };
        if serializer.is_human_readable() {
            // JSON and the like (what `inspect --json` shows): one object, named fields.
            #[derive(Serialize)]
            struct Named<'a> {
                #[serde(flatten)]
                fields: ManifestFields<'a>,
                #[serde(skip_serializing_if = "Option::is_none")]
                encryption: &'a Option<ReleaseEncryption>,
            }
            return Named {
                fields,
                encryption: &self.encryption,
            }
            .serialize(serializer);
        }
        // postcard writes a struct as its fields in a row, so the version 1 layout is the
        // fields followed (in version 2) by the encryption.
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&fields)?;
        if let Some(encryption) = &self.encryption {
            tuple.serialize_element(encryption)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Manifest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a manifest body")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Manifest, A::Error> {
                use serde::de::Error as _;
                let missing = || A::Error::custom("the manifest body ends early");
                let version: u32 = seq.next_element()?.ok_or_else(missing)?;
                let publisher = seq.next_element()?.ok_or_else(missing)?;
                let title = seq.next_element()?.ok_or_else(missing)?;
                let description = seq.next_element()?.ok_or_else(missing)?;
                let created_at = seq.next_element()?.ok_or_else(missing)?;
                let chunk_size = seq.next_element()?.ok_or_else(missing)?;
                let files = seq.next_element()?.ok_or_else(missing)?;
                let licence = seq.next_element()?.ok_or_else(missing)?;
                // Only version 2 carries the encryption; any other version is refused by
                // `validate` with its number, so nothing after `licence` is read for it.
                let encryption = if version == ENCRYPTED_MANIFEST_FORMAT_VERSION {
                    Some(seq.next_element()?.ok_or_else(missing)?)
                } else {
                    None
                };
                Ok(Manifest {
                    version,
                    publisher,
                    title,
                    description,
                    created_at,
                    chunk_size,
                    files,
                    licence,
                    encryption,
                })
            }
        }
        deserializer.deserialize_tuple(9, Visitor)
    }
}

/// Why a manifest is not valid.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// The envelope is malformed, of another kind, or its signature fails.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body does not decode.
    #[error(transparent)]
    Body(#[from] DecodeError),
    /// A format version this code does not know.
    #[error(
        "manifest format version {0} is not supported (this build reads versions {MANIFEST_FORMAT_VERSION} and {ENCRYPTED_MANIFEST_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// The encryption of a version 2 manifest does not fit its files.
    #[error("the manifest's encryption does not fit its files: {0}")]
    BadEncryption(String),
    /// A text field is empty or too long.
    #[error("manifest {field} is {len} bytes; it must be 1 to {limit} bytes")]
    BadText {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The chunk size is not a power of two in range.
    #[error("chunk size {0} is not a power of two from 16 KiB to 16 MiB")]
    BadChunkSize(u32),
    /// No files, or too many.
    #[error("a manifest must list 1 to {MAX_FILES} files, this one lists {0}")]
    FileCount(usize),
    /// A path or the set of paths is not allowed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A file is larger than [`MAX_FILE_SIZE`].
    #[error("file {path} is {size} bytes, over the limit of {MAX_FILE_SIZE}")]
    FileTooLarge {
        /// The file.
        path: SafePath,
        /// Its size.
        size: u64,
    },
    /// The licence ends before it starts.
    #[error("licence window is empty: {not_before} to {not_after}")]
    EmptyWindow {
        /// Start.
        not_before: Timestamp,
        /// End.
        not_after: Timestamp,
    },
    /// Too many regions, or one listed twice.
    #[error("licence regions must be unique and at most {MAX_REGIONS}: {0}")]
    BadRegions(String),
    /// Signed by someone other than the publisher, without a delegation.
    #[error("manifest of publisher {publisher} is signed by {signer} without a delegation")]
    DelegationMissing {
        /// The publisher in the body.
        publisher: PublicKey,
        /// The signer.
        signer: PublicKey,
    },
    /// Signed by the publisher but carrying a delegation anyway.
    #[error("manifest is signed by its publisher and must not carry a delegation")]
    UnexpectedDelegation,
    /// The carried delegation is invalid in itself.
    #[error(transparent)]
    Delegation(#[from] DelegationError),
    /// The delegation is from another publisher.
    #[error(
        "the delegation is from publisher {delegation_publisher}, but the manifest's publisher is {manifest_publisher}"
    )]
    DelegationWrongPublisher {
        /// The publisher in the manifest.
        manifest_publisher: PublicKey,
        /// The publisher in the delegation.
        delegation_publisher: PublicKey,
    },
    /// The delegation is to another key.
    #[error("the delegation is to {delegate}, but the manifest is signed by {signer}")]
    DelegationWrongDelegate {
        /// The delegate in the delegation.
        delegate: PublicKey,
        /// The signer of the manifest.
        signer: PublicKey,
    },
    /// The manifest is outside the delegation's scope.
    #[error("the delegation covers {scope}, not a manifest titled {title:?}")]
    OutOfScope {
        /// The scope.
        scope: DelegationScope,
        /// The manifest's title.
        title: String,
    },
}

impl ManifestError {
    /// The refusal reason a node sends a peer for a manifest that does not verify.
    pub fn refusal_reason(&self) -> crate::policy::RefusalReason {
        use crate::policy::RefusalReason;
        match self {
            ManifestError::DelegationMissing { .. }
            | ManifestError::UnexpectedDelegation
            | ManifestError::Delegation(_)
            | ManifestError::DelegationWrongPublisher { .. }
            | ManifestError::DelegationWrongDelegate { .. }
            | ManifestError::OutOfScope { .. } => RefusalReason::InvalidDelegation,
            // A bad signature, or bytes that are not a well-formed signed manifest.
            _ => RefusalReason::InvalidSignature,
        }
    }
}

fn check_text(
    field: &'static str,
    text: &str,
    min: usize,
    limit: usize,
) -> Result<(), ManifestError> {
    if text.len() < min || text.len() > limit {
        return Err(ManifestError::BadText {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

impl Manifest {
    /// Checks everything about the body that does not depend on the signer or the clock.
    pub fn validate(&self) -> Result<(), ManifestError> {
        match (self.version, &self.encryption) {
            (MANIFEST_FORMAT_VERSION, None) | (ENCRYPTED_MANIFEST_FORMAT_VERSION, Some(_)) => {}
            (MANIFEST_FORMAT_VERSION | ENCRYPTED_MANIFEST_FORMAT_VERSION, _) => {
                return Err(ManifestError::BadEncryption(format!(
                    "version {} {} an encryption",
                    self.version,
                    if self.encryption.is_some() {
                        "must not carry"
                    } else {
                        "must carry"
                    }
                )));
            }
            (other, _) => return Err(ManifestError::UnsupportedVersion(other)),
        }
        check_text("title", &self.title, 1, MAX_TITLE_BYTES)?;
        if let Some(description) = &self.description {
            check_text("description", description, 0, MAX_TEXT_BYTES)?;
        }
        check_text("licence terms", &self.licence.terms, 0, MAX_TEXT_BYTES)?;
        if !self.chunk_size.is_power_of_two()
            || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size)
        {
            return Err(ManifestError::BadChunkSize(self.chunk_size));
        }
        if self.files.is_empty() || self.files.len() > MAX_FILES {
            return Err(ManifestError::FileCount(self.files.len()));
        }
        for file in &self.files {
            if file.size > MAX_FILE_SIZE {
                return Err(ManifestError::FileTooLarge {
                    path: file.path.clone(),
                    size: file.size,
                });
            }
        }
        check_path_set(self.files.iter().map(|f| &f.path))?;
        if let Some(encryption) = &self.encryption {
            self.check_encryption(encryption)?;
        }
        if let Some(not_after) = self.licence.not_after
            && not_after <= self.licence.not_before
        {
            return Err(ManifestError::EmptyWindow {
                not_before: self.licence.not_before,
                not_after,
            });
        }
        let regions = &self.licence.regions;
        let unique: BTreeSet<_> = regions.iter().collect();
        if regions.len() > MAX_REGIONS || unique.len() != regions.len() {
            let list: Vec<String> = regions.iter().take(20).map(Region::to_string).collect();
            return Err(ManifestError::BadRegions(list.join(",")));
        }
        Ok(())
    }

    /// Validates and signs this manifest. `delegation` is the publisher's delegation to `key`
    /// when a delegate signs.
    pub fn sign(
        &self,
        key: &SecretKey,
        delegation: Option<SignedDelegation>,
    ) -> Result<VerifiedManifest, ManifestError> {
        self.validate()?;
        let signed = Signed::sign(
            SignedKind::Manifest,
            encoding::encode(self),
            key,
            delegation,
        );
        VerifiedManifest::verify(signed)
    }

    /// Checks that each file's size is the ciphertext size of its stated plaintext size.
    fn check_encryption(&self, encryption: &ReleaseEncryption) -> Result<(), ManifestError> {
        if encryption.plaintext_sizes.len() != self.files.len() {
            return Err(ManifestError::BadEncryption(format!(
                "{} plaintext sizes for {} files",
                encryption.plaintext_sizes.len(),
                self.files.len()
            )));
        }
        for (file, &plain) in self.files.iter().zip(&encryption.plaintext_sizes) {
            let expected = ciphertext_size(plain, self.chunk_size);
            if file.size != expected {
                return Err(ManifestError::BadEncryption(format!(
                    "file {} is {} bytes, but a {plain}-byte plaintext encrypts to {expected}",
                    file.path, file.size
                )));
            }
        }
        Ok(())
    }

    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The manifest id of a body: SHA-256(`"licet/v1/manifest-id"` ‖ body).
pub fn manifest_id(body: &[u8]) -> ManifestId {
    ManifestId(sha256(&[b"licet/v1/manifest-id", body]))
}

/// A manifest whose signature, body and delegation were checked (see the module docs).
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    id: ManifestId,
    manifest: Manifest,
    delegation: Option<Delegation>,
    envelope: Signed,
}

impl VerifiedManifest {
    /// Verifies an envelope (steps 1–4 of the module docs).
    pub fn verify(envelope: Signed) -> Result<VerifiedManifest, ManifestError> {
        // 1. Kind and signature over the stored bytes, before anything is decoded.
        envelope.expect_kind(SignedKind::Manifest)?;
        envelope.verify_signature()?;
        // 2. Decode the body, bounded.
        let manifest: Manifest =
            encoding::decode("manifest body", &envelope.body, MAX_MANIFEST_BODY_BYTES)?;
        // 3. Well-formed.
        manifest.validate()?;
        // 4. Signer and delegation.
        let delegation = match (&envelope.delegation, envelope.signer == manifest.publisher) {
            (None, true) => None,
            (Some(_), true) => return Err(ManifestError::UnexpectedDelegation),
            (None, false) => {
                return Err(ManifestError::DelegationMissing {
                    publisher: manifest.publisher,
                    signer: envelope.signer,
                });
            }
            (Some(carried), false) => {
                let delegation = Delegation::verify_carried(carried)?;
                if delegation.publisher != manifest.publisher {
                    return Err(ManifestError::DelegationWrongPublisher {
                        manifest_publisher: manifest.publisher,
                        delegation_publisher: delegation.publisher,
                    });
                }
                if delegation.delegate != envelope.signer {
                    return Err(ManifestError::DelegationWrongDelegate {
                        delegate: delegation.delegate,
                        signer: envelope.signer,
                    });
                }
                if !delegation.scope.allows_title(&manifest.title) {
                    return Err(ManifestError::OutOfScope {
                        scope: delegation.scope,
                        title: manifest.title,
                    });
                }
                Some(delegation)
            }
        };
        Ok(VerifiedManifest {
            id: manifest_id(&envelope.body),
            manifest,
            delegation,
            envelope,
        })
    }

    /// Decodes and verifies an encoded envelope (a `.manifest` file or a wire payload).
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedManifest, ManifestError> {
        VerifiedManifest::verify(Signed::decode_kind(bytes, SignedKind::Manifest)?)
    }

    /// The manifest id.
    pub fn id(&self) -> ManifestId {
        self.id
    }

    /// The verified body.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The delegation the signer carried, if a delegate signed.
    pub fn delegation(&self) -> Option<&Delegation> {
        self.delegation.as_ref()
    }

    /// The envelope exactly as verified (to store or send on unchanged).
    pub fn envelope(&self) -> &Signed {
        &self.envelope
    }

    /// The key that signed (publisher or delegate).
    pub fn signer(&self) -> PublicKey {
        self.envelope.signer
    }

    /// The share link for this manifest, with optional peer hints.
    pub fn share_link(&self, peers: &[String]) -> ShareLink {
        ShareLink {
            id: self.id,
            peers: peers.to_vec(),
        }
    }
}

/// Most peer hints a share link may carry.
pub const MAX_LINK_PEERS: usize = 16;
/// Longest peer hint, in bytes.
pub const MAX_LINK_PEER_BYTES: usize = 512;

/// `licet:<manifest-id-hex>[?peer=<multiaddr>[&peer=…]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareLink {
    /// The manifest id.
    pub id: ManifestId,
    /// Peer address hints (multiaddrs, checked by the node that dials them).
    pub peers: Vec<String>,
}

/// Text that is not a share link or a manifest id.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "{text:?} is not a share link (licet:<64 hex>[?peer=<multiaddr>]) or manifest id: {reason}"
)]
pub struct ShareLinkError {
    text: String,
    reason: &'static str,
}

impl FromStr for ShareLink {
    type Err = ShareLinkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ShareLinkError {
            text: s.chars().take(200).collect(),
            reason,
        };
        let s = s.trim();
        let rest = s.strip_prefix("licet:").unwrap_or(s);
        let (id_text, query) = match rest.split_once('?') {
            Some((id, query)) => (id, Some(query)),
            None => (rest, None),
        };
        let id: ManifestId = id_text
            .parse()
            .map_err(|_| err("the id must be 64 hex characters"))?;
        let mut peers = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let Some(peer) = pair.strip_prefix("peer=") else {
                return Err(err("the only query parameter is peer="));
            };
            if peer.is_empty() || peer.len() > MAX_LINK_PEER_BYTES {
                return Err(err("a peer hint is empty or too long"));
            }
            if peers.len() == MAX_LINK_PEERS {
                return Err(err("too many peer hints"));
            }
            peers.push(peer.to_owned());
        }
        Ok(ShareLink { id, peers })
    }
}

impl fmt::Display for ShareLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "licet:{}", self.id)?;
        for (i, peer) in self.peers.iter().enumerate() {
            write!(f, "{}peer={peer}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RefusalReason;

    #[test]
    fn a_region_given_by_a_user_must_be_an_assigned_code() {
        assert_eq!("fr".parse::<Region>().unwrap().to_string(), "FR");
        assert!("XK".parse::<Region>().is_ok());
        let error = "XX".parse::<Region>().unwrap_err().to_string();
        assert!(error.contains("\"XX\" is not an assigned"), "{error}");
        assert!("FRA".parse::<Region>().is_err());
        // Decoding holds the format only: a code assigned after this release still decodes.
        assert!(Region::try_from("XX".to_owned()).is_ok());
        let mut sorted = ASSIGNED_REGIONS;
        sorted.sort_unstable();
        assert_eq!(
            sorted, ASSIGNED_REGIONS,
            "the table is sorted and so has no duplicate"
        );
        assert!(sorted.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn verification_failures_map_to_wire_refusals() {
        let bad_signature = ManifestError::Envelope(EnvelopeError::BadSignature {
            kind: "manifest",
            signer: PublicKey([0; 32]),
        });
        assert_eq!(
            bad_signature.refusal_reason(),
            RefusalReason::InvalidSignature
        );
        assert_eq!(
            ManifestError::BadChunkSize(3).refusal_reason(),
            RefusalReason::InvalidSignature
        );
        assert_eq!(
            ManifestError::UnexpectedDelegation.refusal_reason(),
            RefusalReason::InvalidDelegation
        );
    }
}
