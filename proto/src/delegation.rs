//! Delegations: a publisher lets a partner's key sign manifests in its name.
//!
//! A delegation body is `{ publisher, delegate, not_before, not_after, scope }`, signed by the
//! publisher's own key. A manifest signed by the delegate carries it (one level only: a delegate
//! cannot delegate). Whether a delegation is usable *now* (its window, and whether the publisher's
//! newest catalog revokes the delegate) is the trust policy's question, not this module's.

use serde::{Deserialize, Serialize};

use crate::{
    encoding::{self, DecodeError},
    keys::{PublicKey, SecretKey},
    signed::{EnvelopeError, Signed, SignedDelegation, SignedKind},
    time::Timestamp,
};

/// Largest encoded delegation body.
pub const MAX_DELEGATION_BODY_BYTES: usize = 2048;
/// Longest title prefix a scope may name.
pub const MAX_SCOPE_PREFIX_BYTES: usize = 256;

/// What a delegate may sign. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DelegationScope {
    /// Any manifest of the publisher.
    AllManifests,
    /// Only manifests whose title starts with this text.
    TitlePrefix(String),
    /// No manifests: only delivery reports, for any release of the publisher. The key a seed
    /// keeps online to sign its reports, which cannot sign a release if the seed is broken into.
    DeliveryReports,
}

impl DelegationScope {
    /// Whether a manifest titled `title` is inside this scope.
    pub fn allows_title(&self, title: &str) -> bool {
        match self {
            DelegationScope::AllManifests => true,
            DelegationScope::TitlePrefix(prefix) => title.starts_with(prefix.as_str()),
            DelegationScope::DeliveryReports => false,
        }
    }

    /// Whether a delivery report about the release titled `title` is inside this scope: a
    /// delegate trusted to sign a release may also report its deliveries.
    pub fn allows_delivery_reports(&self, title: &str) -> bool {
        match self {
            DelegationScope::DeliveryReports => true,
            other => other.allows_title(title),
        }
    }
}

impl std::fmt::Display for DelegationScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DelegationScope::AllManifests => f.write_str("all manifests"),
            DelegationScope::TitlePrefix(p) => write!(f, "manifests titled {p:?}…"),
            DelegationScope::DeliveryReports => f.write_str("delivery reports only"),
        }
    }
}

/// The body of a delegation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The rights holder granting the delegation (and signing it).
    pub publisher: PublicKey,
    /// The key allowed to sign in the publisher's name.
    pub delegate: PublicKey,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until (exclusive).
    pub not_after: Timestamp,
    /// What the delegate may sign.
    pub scope: DelegationScope,
}

/// Why a delegation is not valid in itself.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelegationError {
    /// The envelope is malformed, of another kind, or its signature fails.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The body does not decode.
    #[error(transparent)]
    Body(#[from] DecodeError),
    /// Signed by a key other than the publisher it names.
    #[error("delegation names publisher {publisher} but is signed by {signer}")]
    NotSignedByPublisher {
        /// The publisher named in the body.
        publisher: PublicKey,
        /// The key that signed.
        signer: PublicKey,
    },
    /// `not_after` is not after `not_before`.
    #[error("delegation window is empty: {not_before} to {not_after}")]
    EmptyWindow {
        /// Start.
        not_before: Timestamp,
        /// End.
        not_after: Timestamp,
    },
    /// The scope's prefix is too long.
    #[error("delegation scope prefix is {0} bytes, over {MAX_SCOPE_PREFIX_BYTES}")]
    ScopeTooLong(usize),
}

impl Delegation {
    /// Signs this delegation with the publisher's key.
    pub fn sign(&self, publisher_key: &SecretKey) -> Signed {
        Signed::sign(
            SignedKind::Delegation,
            encoding::encode(self),
            publisher_key,
            None,
        )
    }

    fn check(&self, signer: PublicKey) -> Result<(), DelegationError> {
        if signer != self.publisher {
            return Err(DelegationError::NotSignedByPublisher {
                publisher: self.publisher,
                signer,
            });
        }
        if self.not_after <= self.not_before {
            return Err(DelegationError::EmptyWindow {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        if let DelegationScope::TitlePrefix(p) = &self.scope
            && p.len() > MAX_SCOPE_PREFIX_BYTES
        {
            return Err(DelegationError::ScopeTooLong(p.len()));
        }
        Ok(())
    }

    /// Verifies a carried delegation: signature first, then the body, then that the publisher
    /// it names signed it.
    pub fn verify_carried(carried: &SignedDelegation) -> Result<Delegation, DelegationError> {
        carried.verify_signature()?;
        let delegation: Delegation =
            encoding::decode("delegation body", &carried.body, MAX_DELEGATION_BODY_BYTES)?;
        delegation.check(carried.signer)?;
        Ok(delegation)
    }

    /// Verifies a stand-alone delegation envelope (a `.delegation` file).
    pub fn verify_envelope(signed: &Signed) -> Result<Delegation, DelegationError> {
        signed.expect_kind(SignedKind::Delegation)?;
        if signed.delegation.is_some() {
            return Err(DelegationError::Envelope(EnvelopeError::WrongKind {
                expected: "delegation without a delegation of its own",
                found: "delegation carrying another delegation",
            }));
        }
        Delegation::verify_carried(&SignedDelegation {
            signer: signed.signer,
            body: signed.body.clone(),
            signature: signed.signature,
        })
    }
}
