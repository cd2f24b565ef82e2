//! The licences part: the licences for paid releases added to this node, and the content key
//! one of them opens.
//!
//! A licence (`licet-manifest licence issue`) seals a release's content key to one node's
//! identity key. This part owns the licences held (in the store's `licences` table) and this
//! node's identity key, which unseals them; the key never leaves it.
//!
//! Invariants:
//! - a licence is kept only if it verifies, is for this node, is of a trusted publisher, has
//!   not ended, neither it nor its signer is revoked by the publisher's catalog in force, and
//!   its sealed key opens with this node's key ([`Licences::add`]); each refusal names its
//!   reason;
//! - a content key is given out ([`Licences::content_key`]) only from a licence that, at the
//!   time the policy judges by, opens exactly that release on this node (release, publisher,
//!   key id, windows, region, delegation scope: [`VerifiedLicence::check_for`]) and that the
//!   publisher's catalog in force revokes neither by id nor by signer, asked again on every
//!   call: a revocation or the end of a licence bites on the next `get`.
//!
//! The methods that read or write the licences held block (the store); callers run them on
//! blocking threads.

use std::sync::Arc;

use licet_proto::{
    LicenceId, PublicKey, SecretKey,
    encryption::ContentKey,
    licence::{LicenceError, VerifiedLicence},
    manifest::VerifiedManifest,
};

use crate::{
    policy_state::PolicyState,
    store::{Store, StoreError},
};

/// Why a licence is not kept, or does not open a release.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenceRefusal {
    /// Not a valid licence, or not for this release, node, time or region.
    #[error(transparent)]
    Invalid(#[from] LicenceError),
    /// Its publisher is not trusted here.
    #[error(
        "the licence's publisher {0} is not trusted here; trust it first (`licet-node trust add`)"
    )]
    Untrusted(PublicKey),
    /// The publisher's catalog revokes it.
    #[error("the licence is revoked by its publisher's catalog (sequence {sequence})")]
    Revoked {
        /// The catalog's sequence.
        sequence: u64,
    },
    /// The publisher's catalog revokes the delegate that signed it.
    #[error(
        "the licence was signed by delegate {delegate}, which its publisher's catalog (sequence \
         {sequence}) revokes"
    )]
    SignerRevoked {
        /// The delegate.
        delegate: PublicKey,
        /// The catalog's sequence.
        sequence: u64,
    },
}

/// Why no content key could be given for a release.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoKey {
    /// No licence held names the release.
    #[error(
        "this node holds no licence for release {0}; get one from its publisher for this node's \
         key (`licet-node licence key`) and add it with `licet-node licence add FILE`"
    )]
    NoLicence(licet_proto::ManifestId),
    /// Licences name it, and each is refused.
    #[error("no licence held opens it here: {}", refusals.iter().map(|(id, why)| format!("licence {id}: {why}")).collect::<Vec<_>>().join("; "))]
    Refused {
        /// Each licence for the release and why it does not open it.
        refusals: Vec<(LicenceId, String)>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The licences held and this node's key.
pub struct Licences {
    store: Arc<Store>,
    node_key: SecretKey,
}

/// A content key, and the licence that gave it.
pub struct Opening {
    /// The licence.
    pub licence: LicenceId,
    /// The release's content key.
    pub key: ContentKey,
}

impl Licences {
    /// The part over `store`, unsealing with `node_key` (the node's identity key).
    pub fn new(store: Arc<Store>, node_key: SecretKey) -> Licences {
        Licences { store, node_key }
    }

    /// This node's public key: the one licences are sealed to.
    pub fn node_key(&self) -> PublicKey {
        self.node_key.public_key()
    }

    /// Keeps `licence` if it stands here ([`Licences::standing`]; one not yet valid is kept
    /// too) and its sealed key opens with this node's key; returns it and whether it was new.
    /// `manifest`, if the release is held here, is checked too (its key id, region, scope).
    pub fn add(
        &self,
        licence: VerifiedLicence,
        policy: &PolicyState,
        manifest: Option<&VerifiedManifest>,
    ) -> Result<Result<(VerifiedLicence, bool), LicenceRefusal>, StoreError> {
        if let Err(refusal) = self.standing(&licence, policy, manifest) {
            // A licence not yet valid is kept: it opens its release once its window does.
            if !matches!(
                refusal,
                LicenceRefusal::Invalid(LicenceError::NotYetValid { .. })
            ) {
                return Ok(Err(refusal));
            }
        }
        if let Err(e) = licence.unseal(&self.node_key) {
            return Ok(Err(e.into()));
        }
        let new = self.store.licence_put(&licence)?;
        Ok(Ok((licence, new)))
    }

    /// Every licence held.
    pub fn list(&self) -> Result<Vec<VerifiedLicence>, StoreError> {
        self.store.licence_list()
    }

    /// Forgets licence `id`; whether it was held.
    pub fn remove(&self, id: &LicenceId) -> Result<bool, StoreError> {
        self.store.licence_remove(id)
    }

    /// Whether `licence` stands here now: for this node, of a trusted publisher, not ended, not
    /// revoked; and, given the release, whether it opens it ([`VerifiedLicence::check_for`]).
    pub fn standing(
        &self,
        licence: &VerifiedLicence,
        policy: &PolicyState,
        manifest: Option<&VerifiedManifest>,
    ) -> Result<(), LicenceRefusal> {
        let body = licence.licence();
        let now = policy.judged_now();
        if body.recipient != self.node_key() {
            return Err(LicenceError::OtherNode {
                recipient: body.recipient,
                this_node: self.node_key(),
            }
            .into());
        }
        if !policy.trusted_publishers().contains(&body.publisher) {
            return Err(LicenceRefusal::Untrusted(body.publisher));
        }
        if let Some(catalog) = policy.newest_catalog(&body.publisher) {
            let sequence = catalog.catalog().sequence;
            if catalog.catalog().revokes_licence(&licence.id()) {
                return Err(LicenceRefusal::Revoked { sequence });
            }
            let signer = licence.envelope().signer;
            if signer != body.publisher && catalog.catalog().revokes_delegate(&signer) {
                return Err(LicenceRefusal::SignerRevoked {
                    delegate: signer,
                    sequence,
                });
            }
        }
        match manifest {
            Some(manifest) => {
                licence.check_for(manifest, &self.node_key(), now, policy.region())?;
            }
            None => licence.check_window(now)?,
        }
        Ok(())
    }

    /// The content key of `manifest` from the first licence held that opens it here now.
    pub fn content_key(
        &self,
        manifest: &VerifiedManifest,
        policy: &PolicyState,
    ) -> Result<Opening, NoKey> {
        let mut refusals = Vec::new();
        for licence in self.list()? {
            if licence.licence().manifest_id != manifest.id() {
                continue;
            }
            let opened = self
                .standing(&licence, policy, Some(manifest))
                .and_then(|()| Ok(licence.unseal(&self.node_key)?));
            match opened {
                Ok(key) => {
                    return Ok(Opening {
                        licence: licence.id(),
                        key,
                    });
                }
                Err(refusal) => refusals.push((licence.id(), refusal.to_string())),
            }
        }
        if refusals.is_empty() {
            Err(NoKey::NoLicence(manifest.id()))
        } else {
            Err(NoKey::Refused { refusals })
        }
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::{
        Timestamp,
        encryption::{EncryptionAlgorithm, ciphertext_size},
        licence::{ContentLicence, LICENCE_FORMAT_VERSION, seal_content_key},
        manifest::{ENCRYPTED_MANIFEST_FORMAT_VERSION, ReleaseEncryption},
        policy::TrustedPublisher,
    };

    use super::*;
    use crate::test_support::{manifest_body, publisher};

    /// A node with a store, its policy (trusting the test publisher if `trusting`), and a paid
    /// release of that publisher encrypted with `key`.
    struct Fixture {
        _dir: tempfile::TempDir,
        licences: Licences,
        policy: PolicyState,
        manifest: VerifiedManifest,
        key: ContentKey,
        node: SecretKey,
    }

    async fn fixture(trusting: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
        let node = SecretKey::from_seed(&[0x42; 32]);
        let policy = PolicyState::new(None);
        if trusting {
            let updating = policy.updating().await;
            policy.trust(
                &updating,
                publisher().public_key(),
                TrustedPublisher {
                    name: None,
                    require_catalog: false,
                },
                false,
            );
        }
        let key = ContentKey::from_bytes([0x17; 32]);
        let mut body = manifest_body("paid", &[ciphertext_size(100, 16 * 1024)]);
        body.version = ENCRYPTED_MANIFEST_FORMAT_VERSION;
        body.encryption = Some(ReleaseEncryption {
            algorithm: EncryptionAlgorithm::ChaCha20Poly1305Stream,
            key_id: key.id(),
            plaintext_sizes: vec![100],
        });
        let manifest = body.sign(&publisher(), None).unwrap();
        Fixture {
            _dir: dir,
            licences: Licences::new(store, SecretKey::from_seed(&[0x42; 32])),
            policy,
            manifest,
            key,
            node,
        }
    }

    /// A licence of `f`'s release for `recipient`, valid from `not_before` to `not_after`.
    fn licence(
        f: &Fixture,
        recipient: PublicKey,
        not_before: i64,
        not_after: Option<i64>,
    ) -> VerifiedLicence {
        let manifest_id = f.manifest.id();
        ContentLicence {
            version: LICENCE_FORMAT_VERSION,
            publisher: publisher().public_key(),
            manifest_id,
            key_id: f.key.id(),
            recipient,
            issued_at: Timestamp(not_before),
            not_before: Timestamp(not_before),
            not_after: not_after.map(Timestamp),
            regions: Vec::new(),
            sealed_key: seal_content_key(&f.key, &manifest_id, &recipient).unwrap(),
        }
        .sign(&publisher(), None)
        .unwrap()
    }

    fn now() -> i64 {
        Timestamp::now().0
    }

    #[tokio::test]
    async fn a_licence_for_this_node_is_kept_and_opens_its_release() {
        let f = fixture(true).await;
        let none = f
            .licences
            .content_key(&f.manifest, &f.policy)
            .err()
            .unwrap();
        assert!(none.to_string().contains("holds no licence"), "{none}");
        let bytes = licence(&f, f.node.public_key(), now() - 60, Some(now() + 3600));
        let (kept, new) = f
            .licences
            .add(bytes, &f.policy, Some(&f.manifest))
            .unwrap()
            .unwrap();
        assert!(new);
        let opening = f.licences.content_key(&f.manifest, &f.policy).unwrap();
        assert_eq!(opening.licence, kept.id());
        assert_eq!(opening.key, f.key);
    }

    #[tokio::test]
    async fn refusals_name_their_reason_and_keep_nothing() {
        let f = fixture(true).await;
        let other = SecretKey::from_seed(&[0x43; 32]).public_key();
        let cases = [
            (licence(&f, other, now() - 60, None), "is for node key"),
            (
                licence(&f, f.node.public_key(), now() - 7200, Some(now() - 3600)),
                "expired at",
            ),
        ];
        for (bytes, reason) in cases {
            let refusal = f
                .licences
                .add(bytes, &f.policy, Some(&f.manifest))
                .unwrap()
                .unwrap_err()
                .to_string();
            assert!(refusal.contains(reason), "{reason}: {refusal}");
        }
        assert!(f.licences.list().unwrap().is_empty());
        // Of a publisher not trusted here.
        let untrusted = fixture(false).await;
        let bytes = licence(&untrusted, untrusted.node.public_key(), now() - 60, None);
        let refusal = untrusted
            .licences
            .add(bytes, &untrusted.policy, None)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(refusal.contains("not trusted here"), "{refusal}");
    }

    #[tokio::test]
    async fn a_licence_not_yet_valid_is_kept_but_opens_nothing_yet_saying_when() {
        let f = fixture(true).await;
        let bytes = licence(&f, f.node.public_key(), now() + 86_400, None);
        f.licences.add(bytes, &f.policy, None).unwrap().unwrap();
        let refused = f
            .licences
            .content_key(&f.manifest, &f.policy)
            .err()
            .unwrap()
            .to_string();
        assert!(refused.contains("the licence starts at"), "{refused}");
    }
}
