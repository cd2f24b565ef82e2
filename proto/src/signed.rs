//! The signed envelope: one type for everything a publisher or delegate signs.
//!
//! ```text
//! Signed { kind, signer: [u8; 32], body: bytes, signature: [u8; 64], delegation: Option<SignedDelegation> }
//! message signed = "licet/v1/" ‖ kind name ‖ 0x00 ‖ body
//! ```
//!
//! Invariants:
//! - [`signing_message`] is the only place that builds bytes to sign; signing and verifying both
//!   call it, so a signature of one kind can never verify as another (the kind name is inside the
//!   signed message).
//! - The signature is checked over the exact stored `body` bytes *before* the body is decoded;
//!   nothing is ever re-encoded to be verified.
//! - A delegation is one level deep by construction: [`SignedDelegation`] has no delegation field.

use serde::{Deserialize, Serialize};

use crate::{
    encoding::{self, DecodeError},
    keys::{PublicKey, SecretKey, SignatureBytes},
};

/// What a signed body is. Append-only: never reorder or remove a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignedKind {
    /// A [`crate::manifest::Manifest`].
    Manifest,
    /// A [`crate::delegation::Delegation`].
    Delegation,
    /// A [`crate::catalog::Catalog`] in format 1, every entry in one envelope. No longer read:
    /// refused naming the format (see [`crate::catalog_parts`]).
    Catalog,
    /// A [`crate::catalog::CatalogHead`].
    CatalogHead,
    /// A [`crate::catalog_parts::CatalogRoot`]: the signed root of a format-2 catalog.
    CatalogRoot,
    /// A [`crate::licence::ContentLicence`].
    Licence,
    /// A [`crate::delivery::DeliveryReport`].
    DeliveryReport,
}

impl SignedKind {
    /// The name inside the signed message (domain separation) and in messages to people.
    pub fn name(self) -> &'static str {
        match self {
            SignedKind::Manifest => "manifest",
            SignedKind::Delegation => "delegation",
            SignedKind::Catalog => "catalog",
            SignedKind::CatalogHead => "catalog-head",
            SignedKind::Licence => "licence",
            SignedKind::DeliveryReport => "delivery-report",
            SignedKind::CatalogRoot => "catalog-root",
        }
    }

    /// The kind's name in sentences for people ("catalog head").
    pub fn noun(self) -> &'static str {
        match self {
            SignedKind::CatalogHead => "catalog head",
            SignedKind::DeliveryReport => "delivery report",
            SignedKind::CatalogRoot => "catalog root",
            other => other.name(),
        }
    }

    /// The largest envelope of this kind accepted from outside, in bytes.
    pub fn max_envelope_bytes(self) -> usize {
        // Envelope overhead: kind, signer, signature, length prefixes, and an optional
        // delegation envelope of its own.
        const OVERHEAD: usize = 256 + MAX_DELEGATION_ENVELOPE_BYTES;
        let body = match self {
            SignedKind::Manifest => crate::manifest::MAX_MANIFEST_BODY_BYTES,
            SignedKind::Delegation => crate::delegation::MAX_DELEGATION_BODY_BYTES,
            SignedKind::Catalog => crate::catalog::MAX_CATALOG_BODY_BYTES,
            SignedKind::CatalogHead => crate::catalog::MAX_CATALOG_HEAD_BODY_BYTES,
            SignedKind::Licence => crate::licence::MAX_LICENCE_BODY_BYTES,
            SignedKind::DeliveryReport => crate::delivery::MAX_DELIVERY_REPORT_BODY_BYTES,
            SignedKind::CatalogRoot => crate::catalog_parts::MAX_CATALOG_ROOT_BODY_BYTES,
        };
        body + OVERHEAD
    }
}

/// Largest encoded delegation envelope carried inside another envelope.
pub const MAX_DELEGATION_ENVELOPE_BYTES: usize = crate::delegation::MAX_DELEGATION_BODY_BYTES + 128;

/// A signed object, exactly as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// What the body is.
    pub kind: SignedKind,
    /// Who signed: the publisher, or a delegate carrying `delegation`.
    pub signer: PublicKey,
    /// The encoded body, exactly the bytes that were signed.
    pub body: Vec<u8>,
    /// ed25519 over [`signing_message`]`(kind, body)`.
    pub signature: SignatureBytes,
    /// The publisher's delegation to `signer`, when a delegate signed.
    pub delegation: Option<SignedDelegation>,
}

/// A delegation carried inside another envelope: a `Signed` of kind `Delegation` without a
/// delegation of its own (one level only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDelegation {
    /// The publisher that signed the delegation.
    pub signer: PublicKey,
    /// The encoded [`crate::delegation::Delegation`].
    pub body: Vec<u8>,
    /// ed25519 over [`signing_message`]`(Delegation, body)`.
    pub signature: SignatureBytes,
}

/// Why an envelope is not what it claims.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not an envelope.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A different kind of object than expected.
    #[error("expected a signed {expected}, found a signed {found}")]
    WrongKind {
        /// The kind wanted.
        expected: &'static str,
        /// The kind found.
        found: &'static str,
    },
    /// The signature does not verify over the body with the signer's key.
    #[error("the {kind} signature by {signer} is not valid")]
    BadSignature {
        /// The kind of the envelope.
        kind: &'static str,
        /// The claimed signer.
        signer: PublicKey,
    },
}

/// Why bytes given as a signed object (a file a person named) are not one, in words for that
/// person: "NAME is not a Licet manifest (REASON)".
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotSignedError {
    /// No bytes at all.
    #[error("the file is empty")]
    Empty,
    /// Text, while envelopes are binary.
    #[error("it is {0}, while signed Licet objects are binary files")]
    Text(&'static str),
    /// A signed object, of another kind than wanted.
    #[error("it is a signed {0}")]
    OtherKind(&'static str),
    /// Binary bytes that are not an envelope: why they do not decode.
    #[error("{0}")]
    Malformed(String),
}

/// What kind of text `bytes` are, if they are text (UTF-8 without control characters other
/// than tab and line ends).
fn text_kind(bytes: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return None;
    }
    let start = text.trim_start();
    Some(if start.starts_with("-----BEGIN") {
        "a PEM text file (a key?)"
    } else if start.starts_with('{') || start.starts_with('[') {
        "JSON text (a catalog draft?)"
    } else {
        "a text file"
    })
}

/// The bytes an ed25519 signature of `kind` covers: `"licet/v1/" ‖ kind name ‖ 0x00 ‖ body`.
pub fn signing_message(kind: SignedKind, body: &[u8]) -> Vec<u8> {
    let name = kind.name().as_bytes();
    let mut message = Vec::with_capacity(9 + name.len() + 1 + body.len());
    message.extend_from_slice(b"licet/v1/");
    message.extend_from_slice(name);
    message.push(0);
    message.extend_from_slice(body);
    message
}

impl Signed {
    /// Signs `body` as `kind` with `key`, attaching `delegation` if a delegate signs.
    pub fn sign(
        kind: SignedKind,
        body: Vec<u8>,
        key: &SecretKey,
        delegation: Option<SignedDelegation>,
    ) -> Signed {
        let signature = key.sign(&signing_message(kind, &body));
        Signed {
            kind,
            signer: key.public_key(),
            body,
            signature,
            delegation,
        }
    }

    /// Decodes an envelope of any kind, at most the largest kind's size.
    pub fn decode(bytes: &[u8]) -> Result<Signed, DecodeError> {
        let signed: Signed = encoding::decode(
            "signed object",
            bytes,
            SignedKind::Catalog.max_envelope_bytes(),
        )?;
        signed.ensure_canonical("signed object", bytes)?;
        Ok(signed)
    }

    /// Decodes bytes a person gave as a signed object (of `kind`, when one is wanted) and says
    /// in their words why they are not one. Not verified.
    pub fn identify(bytes: &[u8], kind: Option<SignedKind>) -> Result<Signed, NotSignedError> {
        let signed = Signed::decode(bytes).map_err(|e| {
            if bytes.is_empty() {
                return NotSignedError::Empty;
            }
            if let Some(text) = text_kind(bytes) {
                return NotSignedError::Text(text);
            }
            NotSignedError::Malformed(match e {
                DecodeError::Malformed { reason, .. } => reason,
                DecodeError::TrailingBytes { extra, .. } => {
                    format!("{extra} bytes follow the end of a signed object")
                }
                e => e.to_string(),
            })
        })?;
        match kind {
            Some(kind) if signed.kind != kind => Err(NotSignedError::OtherKind(signed.kind.noun())),
            _ => Ok(signed),
        }
    }

    /// Decodes an envelope that must be of `kind`, bounded by that kind's size.
    pub fn decode_kind(bytes: &[u8], kind: SignedKind) -> Result<Signed, EnvelopeError> {
        let signed: Signed = encoding::decode(kind.noun(), bytes, kind.max_envelope_bytes())?;
        signed.expect_kind(kind)?;
        signed.ensure_canonical(kind.noun(), bytes)?;
        Ok(signed)
    }

    /// Fails unless `bytes` are this envelope's one canonical encoding. postcard also decodes
    /// overlong varints (a kind or length padded with `0x80` bytes), which would let anyone
    /// re-encode a signed envelope into other bytes that still verify, and a catalog's hash is
    /// taken over the envelope bytes as received.
    fn ensure_canonical(&self, what: &'static str, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.encode() != bytes {
            return Err(DecodeError::Malformed {
                what,
                reason: "the envelope is not in its canonical encoding (an overlong varint)"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// The envelope's encoding (what files and the wire carry).
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Fails unless this envelope is of `kind`.
    pub fn expect_kind(&self, kind: SignedKind) -> Result<(), EnvelopeError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(EnvelopeError::WrongKind {
                expected: kind.name(),
                found: self.kind.name(),
            })
        }
    }

    /// Checks the signature over the stored body (not the delegation's).
    pub fn verify_signature(&self) -> Result<(), EnvelopeError> {
        if self
            .signer
            .verify(&signing_message(self.kind, &self.body), &self.signature)
        {
            Ok(())
        } else {
            Err(EnvelopeError::BadSignature {
                kind: self.kind.name(),
                signer: self.signer,
            })
        }
    }

    /// This envelope as a delegation to carry inside another, if it is a delegation without one
    /// of its own.
    pub fn into_carried_delegation(self) -> Result<SignedDelegation, EnvelopeError> {
        self.expect_kind(SignedKind::Delegation)?;
        Ok(SignedDelegation {
            signer: self.signer,
            body: self.body,
            signature: self.signature,
        })
    }
}

impl SignedDelegation {
    /// Checks the publisher's signature over the stored delegation body.
    pub fn verify_signature(&self) -> Result<(), EnvelopeError> {
        if self.signer.verify(
            &signing_message(SignedKind::Delegation, &self.body),
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(EnvelopeError::BadSignature {
                kind: SignedKind::Delegation.name(),
                signer: self.signer,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_says_what_a_file_is_instead() {
        let key = SecretKey::from_seed(&[3; 32]);
        let manifest = Signed::sign(SignedKind::Manifest, vec![1, 2, 3], &key, None).encode();
        let cases: [(&[u8], &str); 5] = [
            (b"", "the file is empty"),
            (
                b"hello\n",
                "it is a text file, while signed Licet objects are binary files",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\n",
                "it is a PEM text file (a key?), while",
            ),
            (&manifest, "it is a signed manifest"),
            (
                &[0xff, 0x00, 0x07],
                "its bytes do not have the expected layout",
            ),
        ];
        for (bytes, expected) in cases {
            let err = Signed::identify(bytes, Some(SignedKind::Delegation)).unwrap_err();
            assert!(err.to_string().starts_with(expected), "{err}");
            assert!(!err.to_string().contains("Serde"), "{err}");
        }
        let found = Signed::identify(&manifest, Some(SignedKind::Manifest)).unwrap();
        assert_eq!(found.kind, SignedKind::Manifest);
        assert!(Signed::identify(&manifest, None).is_ok());
    }
}
