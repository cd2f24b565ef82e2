//! Licences: a release's content key sealed to one buyer's node, signed by the publisher or a
//! delegate. The signed kind is `licence` (kind name inside the signed message, so a licence
//! signature never verifies as another kind's).
//!
//! ```text
//! body   { version, publisher, manifest_id, key_id, recipient, issued_at, not_before,
//!          not_after: Option, regions, sealed_key: { encapsulated: [u8; 32], ciphertext } }
//! seal   HPKE base mode (RFC 9180), DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
//!        recipient X25519 key = the node's ed25519 identity key mapped to Montgomery form
//!        info = "licet/v1/licence-key", aad = manifest_id ‖ key_id ‖ recipient
//! id     SHA-256("licet/v1/licence-id" ‖ body)   (what a catalog revokes)
//! ```
//!
//! Invariants of a [`VerifiedLicence`] (only [`VerifiedLicence::verify`] builds one, signature
//! before decoding):
//! 1. the envelope is of kind `licence` and its signature verifies over the stored body;
//! 2. the body decodes within [`MAX_LICENCE_BODY_BYTES`]: known version, non-empty window, unique
//!    regions, a sealed key of exactly one content key plus its tag;
//! 3. the signer is the publisher with no delegation, or carries a valid delegation from that
//!    publisher to exactly this signer.
//!
//! Whether a licence opens a release *here and now* (this manifest, this node, this key id, its
//! window, the delegation's scope and window) is [`VerifiedLicence::check_for`]'s question;
//! revocation is the caller's, from the publisher's newest catalog.

use std::collections::BTreeSet;

use hpke::{
    Deserializable as _, OpModeR, OpModeS, Serializable as _, aead::ChaCha20Poly1305,
    kdf::HkdfSha256, kem::X25519HkdfSha256,
};
use serde::{Deserialize, Serialize};

use crate::{
    delegation::{Delegation, DelegationError},
    encoding::{self, DecodeError},
    encryption::{ContentKey, ContentKeyId},
    ids::{LicenceId, ManifestId, sha256},
    keys::{PublicKey, SecretKey},
    manifest::{MAX_REGIONS, Region, VerifiedManifest},
    policy::CLOCK_SKEW_SECONDS,
    signed::{EnvelopeError, Signed, SignedDelegation, SignedKind},
    time::Timestamp,
};

/// The licence format this code writes and reads.
pub const LICENCE_FORMAT_VERSION: u32 = 1;
/// Largest encoded licence body (300 regions and the sealed key fit with room to spare).
pub const MAX_LICENCE_BODY_BYTES: usize = 4096;
/// Bytes of a sealed content key: the 32-byte key and a 16-byte tag.
pub const SEALED_KEY_BYTES: usize = 48;
/// HPKE `info`: names what the sealed secret is for.
const HPKE_INFO: &[u8] = b"licet/v1/licence-key";

/// A content key sealed to one node with HPKE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// HPKE's encapsulated key (an ephemeral X25519 public key).
    pub encapsulated: [u8; 32],
    /// The content key encrypted to the recipient, with its tag.
    pub ciphertext: Vec<u8>,
}

/// The body of a licence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentLicence {
    /// [`LICENCE_FORMAT_VERSION`].
    pub version: u32,
    /// The rights holder, even when a delegate signs.
    pub publisher: PublicKey,
    /// The encrypted release this licence opens.
    pub manifest_id: ManifestId,
    /// The id of the sealed key, equal to the manifest's.
    pub key_id: ContentKeyId,
    /// The buyer node's ed25519 identity key.
    pub recipient: PublicKey,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Not valid before.
    pub not_before: Timestamp,
    /// Not valid from this time on; `None` = no end.
    pub not_after: Option<Timestamp>,
    /// Where the buyer's node may decrypt; empty = anywhere.
    pub regions: Vec<Region>,
    /// The content key, sealed to `recipient`.
    pub sealed_key: SealedKey,
}

/// Why a licence is invalid, or does not open a release here and now.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LicenceError {
    /// Malformed envelope, other kind, or bad signature.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body does not decode.
    #[error(transparent)]
    Body(#[from] DecodeError),
    /// Unknown format version.
    #[error(
        "licence format version {0} is not supported (this build reads version {LICENCE_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// Not well-formed.
    #[error("the licence is malformed: {0}")]
    Malformed(String),
    /// A delegate signed without a delegation, or the delegation does not fit.
    #[error("the licence's signer {signer} may not sign for publisher {publisher}: {reason}")]
    BadSigner {
        /// The publisher named in the body.
        publisher: PublicKey,
        /// The key that signed.
        signer: PublicKey,
        /// Why not.
        reason: String,
    },
    /// The carried delegation is invalid in itself.
    #[error(transparent)]
    Delegation(#[from] DelegationError),
    /// For another release.
    #[error("the licence is for release {licensed}, not {wanted}")]
    OtherRelease {
        /// The manifest the licence names.
        licensed: ManifestId,
        /// The manifest being opened.
        wanted: ManifestId,
    },
    /// For another node.
    #[error("the licence is for node key {recipient}, and this node's key is {this_node}")]
    OtherNode {
        /// Who the licence is for.
        recipient: PublicKey,
        /// This node.
        this_node: PublicKey,
    },
    /// The release is not encrypted, or by another key.
    #[error("the licence seals key {licensed}, but the release is encrypted with key {manifest}")]
    WrongKeyId {
        /// The key id in the licence.
        licensed: ContentKeyId,
        /// The key id in the manifest (`none` if the release is in the clear).
        manifest: String,
    },
    /// Signed by another publisher than the release's.
    #[error("the licence is from publisher {licence}, but the release is publisher {manifest}'s")]
    OtherPublisher {
        /// The licence's publisher.
        licence: PublicKey,
        /// The release's publisher.
        manifest: PublicKey,
    },
    /// Not valid yet.
    #[error("the licence starts at {not_before}, and it is {now}")]
    NotYetValid {
        /// Start.
        not_before: Timestamp,
        /// The time judged.
        now: Timestamp,
    },
    /// Expired.
    #[error("the licence expired at {not_after}, and it is {now}")]
    Expired {
        /// End.
        not_after: Timestamp,
        /// The time judged.
        now: Timestamp,
    },
    /// The node's region is not listed.
    #[error("the licence is for regions {listed}, and this node's region is {region}")]
    RegionNotLicensed {
        /// The regions listed.
        listed: String,
        /// This node's region (`not configured` when none is).
        region: String,
    },
    /// The delegation does not cover this licence now.
    #[error("the delegation to {delegate} does not cover this licence: {reason}")]
    DelegationNotValid {
        /// The delegate.
        delegate: PublicKey,
        /// Why not.
        reason: String,
    },
    /// The sealed key does not open with this node's key, or opens to another key.
    #[error("the sealed content key does not open with this node's key: {0}")]
    Unseal(&'static str),
}

/// The X25519 public key HPKE seals to, from an ed25519 identity key.
fn x25519_public(recipient: &PublicKey) -> Result<[u8; 32], LicenceError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(recipient.as_bytes()).map_err(|_| {
        LicenceError::Malformed(format!("{recipient} is not a valid ed25519 public key"))
    })?;
    Ok(key.to_montgomery().to_bytes())
}

/// `manifest_id ‖ key_id ‖ recipient`: what the sealed key is bound to.
fn seal_aad(manifest_id: &ManifestId, key_id: &ContentKeyId, recipient: &PublicKey) -> Vec<u8> {
    [&manifest_id.0[..], &key_id.0, recipient.as_bytes()].concat()
}

/// Seals `key` to the node whose ed25519 identity key is `recipient`, for release `manifest_id`.
pub fn seal_content_key(
    key: &ContentKey,
    manifest_id: &ManifestId,
    recipient: &PublicKey,
) -> Result<SealedKey, LicenceError> {
    let public = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&x25519_public(recipient)?)
        .map_err(|_| LicenceError::Malformed(format!("{recipient} has no X25519 form")))?;
    let (encapsulated, ciphertext) =
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            &public,
            HPKE_INFO,
            key.as_bytes(),
            &seal_aad(manifest_id, &key.id(), recipient),
        )
        .map_err(|_| LicenceError::Malformed(format!("cannot seal a key to {recipient}")))?;
    let mut encapsulated_bytes = [0u8; 32];
    encapsulated_bytes.copy_from_slice(&encapsulated.to_bytes());
    Ok(SealedKey {
        encapsulated: encapsulated_bytes,
        ciphertext,
    })
}

impl ContentLicence {
    /// Checks what does not depend on the signer, the release or the clock.
    pub fn validate(&self) -> Result<(), LicenceError> {
        if self.version != LICENCE_FORMAT_VERSION {
            return Err(LicenceError::UnsupportedVersion(self.version));
        }
        if let Some(not_after) = self.not_after
            && not_after <= self.not_before
        {
            return Err(LicenceError::Malformed(format!(
                "its window is empty: {} to {not_after}",
                self.not_before
            )));
        }
        let unique: BTreeSet<_> = self.regions.iter().collect();
        if self.regions.len() > MAX_REGIONS || unique.len() != self.regions.len() {
            return Err(LicenceError::Malformed(format!(
                "regions must be unique and at most {MAX_REGIONS}"
            )));
        }
        if self.sealed_key.ciphertext.len() != SEALED_KEY_BYTES {
            return Err(LicenceError::Malformed(format!(
                "the sealed key is {} bytes, not {SEALED_KEY_BYTES}",
                self.sealed_key.ciphertext.len()
            )));
        }
        Ok(())
    }

    /// Validates and signs this licence with `key` (the publisher's, or a delegate's carrying
    /// `delegation`).
    pub fn sign(
        &self,
        key: &SecretKey,
        delegation: Option<SignedDelegation>,
    ) -> Result<VerifiedLicence, LicenceError> {
        self.validate()?;
        let signed = Signed::sign(SignedKind::Licence, encoding::encode(self), key, delegation);
        VerifiedLicence::verify(signed)
    }
}

/// A licence id: SHA-256(`"licet/v1/licence-id"` ‖ body).
pub fn licence_id(body: &[u8]) -> LicenceId {
    LicenceId(sha256(&[b"licet/v1/licence-id", body]))
}

/// A licence whose signature, body and signer have been checked (module docs, steps 1–3).
#[derive(Clone, Debug)]
pub struct VerifiedLicence {
    id: LicenceId,
    licence: ContentLicence,
    delegation: Option<Delegation>,
    envelope: Signed,
}

impl VerifiedLicence {
    /// Verifies an envelope.
    pub fn verify(envelope: Signed) -> Result<VerifiedLicence, LicenceError> {
        // 1. Kind and signature over the stored bytes, before anything is decoded.
        envelope.expect_kind(SignedKind::Licence)?;
        envelope.verify_signature()?;
        // 2. Decode, bounded, and well-formed.
        let licence: ContentLicence =
            encoding::decode("licence body", &envelope.body, MAX_LICENCE_BODY_BYTES)?;
        licence.validate()?;
        // 3. Signer.
        let bad_signer = |reason: &str| LicenceError::BadSigner {
            publisher: licence.publisher,
            signer: envelope.signer,
            reason: reason.to_owned(),
        };
        let delegation = match (&envelope.delegation, envelope.signer == licence.publisher) {
            (None, true) => None,
            (Some(_), true) => return Err(bad_signer("the publisher signs without a delegation")),
            (None, false) => return Err(bad_signer("it carries no delegation")),
            (Some(carried), false) => {
                let delegation = Delegation::verify_carried(carried)?;
                if delegation.publisher != licence.publisher {
                    return Err(bad_signer("the delegation is from another publisher"));
                }
                if delegation.delegate != envelope.signer {
                    return Err(bad_signer("the delegation is to another key"));
                }
                Some(delegation)
            }
        };
        Ok(VerifiedLicence {
            id: licence_id(&envelope.body),
            licence,
            delegation,
            envelope,
        })
    }

    /// Decodes and verifies a `.licence` file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedLicence, LicenceError> {
        VerifiedLicence::verify(Signed::decode_kind(bytes, SignedKind::Licence)?)
    }

    /// The licence id.
    pub fn id(&self) -> LicenceId {
        self.id
    }

    /// The verified body.
    pub fn licence(&self) -> &ContentLicence {
        &self.licence
    }

    /// The envelope exactly as verified.
    pub fn envelope(&self) -> &Signed {
        &self.envelope
    }

    /// Whether this licence opens `manifest` on the node whose identity key is `node` at `now`,
    /// in `region`. Revocation is checked by the caller.
    pub fn check_for(
        &self,
        manifest: &VerifiedManifest,
        node: &PublicKey,
        now: Timestamp,
        region: Option<Region>,
    ) -> Result<(), LicenceError> {
        let licence = &self.licence;
        let body = manifest.manifest();
        if licence.manifest_id != manifest.id() {
            return Err(LicenceError::OtherRelease {
                licensed: licence.manifest_id,
                wanted: manifest.id(),
            });
        }
        if licence.publisher != body.publisher {
            return Err(LicenceError::OtherPublisher {
                licence: licence.publisher,
                manifest: body.publisher,
            });
        }
        if licence.recipient != *node {
            return Err(LicenceError::OtherNode {
                recipient: licence.recipient,
                this_node: *node,
            });
        }
        match &body.encryption {
            Some(encryption) if encryption.key_id == licence.key_id => {}
            other => {
                return Err(LicenceError::WrongKeyId {
                    licensed: licence.key_id,
                    manifest: other
                        .as_ref()
                        .map_or("none (it is not encrypted)".to_owned(), |e| {
                            e.key_id.to_string()
                        }),
                });
            }
        }
        if let Some(delegation) = &self.delegation {
            let reason = if now.plus_seconds(CLOCK_SKEW_SECONDS) < delegation.not_before
                || now >= delegation.not_after
            {
                Some(format!(
                    "it is valid from {} to {}, and it is {now}",
                    delegation.not_before, delegation.not_after
                ))
            } else if !delegation.scope.allows_title(&body.title) {
                Some(format!(
                    "it covers {}, not {:?}",
                    delegation.scope, body.title
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(LicenceError::DelegationNotValid {
                    delegate: delegation.delegate,
                    reason,
                });
            }
        }
        self.check_window(now)?;
        if !licence.regions.is_empty() && !region.is_some_and(|r| licence.regions.contains(&r)) {
            let listed: Vec<String> = licence.regions.iter().map(Region::to_string).collect();
            return Err(LicenceError::RegionNotLicensed {
                listed: listed.join(","),
                region: region.map_or("not configured".to_owned(), |r| r.to_string()),
            });
        }
        Ok(())
    }

    /// Whether the licence's own window is open at `now` (allowing
    /// [`CLOCK_SKEW_SECONDS`] before it opens), whatever release it is asked for.
    pub fn check_window(&self, now: Timestamp) -> Result<(), LicenceError> {
        let licence = &self.licence;
        if now.plus_seconds(CLOCK_SKEW_SECONDS) < licence.not_before {
            return Err(LicenceError::NotYetValid {
                not_before: licence.not_before,
                now,
            });
        }
        if let Some(not_after) = licence.not_after
            && now >= not_after
        {
            return Err(LicenceError::Expired { not_after, now });
        }
        Ok(())
    }

    /// Opens the sealed content key with the node's identity key, and checks it is the key the
    /// licence names.
    pub fn unseal(&self, node_key: &SecretKey) -> Result<ContentKey, LicenceError> {
        let licence = &self.licence;
        let private =
            <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(&node_key.x25519_scalar())
                .map_err(|_| LicenceError::Unseal("the node key has no X25519 form"))?;
        let encapsulated = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(
            &licence.sealed_key.encapsulated,
        )
        .map_err(|_| LicenceError::Unseal("the encapsulated key is not an X25519 key"))?;
        let opened = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &private,
            &encapsulated,
            HPKE_INFO,
            &licence.sealed_key.ciphertext,
            &seal_aad(&licence.manifest_id, &licence.key_id, &licence.recipient),
        )
        .map_err(|_| LicenceError::Unseal("it was sealed to another key, or altered"))?;
        let bytes: [u8; 32] = opened
            .as_slice()
            .try_into()
            .map_err(|_| LicenceError::Unseal("the sealed secret is not a 32-byte key"))?;
        let key = ContentKey::from_bytes(bytes);
        if key.id() != licence.key_id {
            return Err(LicenceError::Unseal(
                "the key inside is not the key id it names",
            ));
        }
        Ok(key)
    }
}
