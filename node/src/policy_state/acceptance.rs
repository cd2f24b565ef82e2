//! What a catalog does to the policy state: the decision, with no network and no database.
//!
//! A catalog reaches [`PolicyState::accept`] as a [`CatalogOffer`]: a head and a catalog that
//! were each verified (signed by their publisher's own key) and that belong together (the
//! head's hash is of the catalog's exact bytes). Then, for a trusted publisher at `now`:
//! - a higher sequence than the catalog in force (and not expired) replaces it: it takes
//!   effect at once (its revocations bite on the next [`PolicyState::check`]), its head and
//!   bytes become the held catalog, and its `issued_at` may raise the time floor;
//! - the catalog in force, byte for byte, changes nothing;
//! - a lower sequence (a rollback), the same sequence with other bytes, or an expired catalog
//!   is refused and changes nothing;
//! - a catalog of a publisher not trusted is refused.
//!
//! Forged heads or catalogs and bytes that are not the head's are refused before, when the
//! offer is made ([`CatalogOffer::from_bytes`], [`CatalogOffer::root_for_head`],
//! [`CatalogOffer::assembled`]).

use licet_proto::{
    CatalogPartHash, PublicKey, Timestamp,
    catalog::{
        CatalogError, VerifiedCatalog, VerifiedCatalogHead, VerifiedCatalogRoot, catalog_hash,
    },
    policy::{CatalogAcceptance, CatalogRejection},
};

use super::{HeldCatalog, PolicyState, Updating};

/// A verified head and the verified catalog it points to.
#[derive(Clone, Debug)]
pub struct CatalogOffer {
    head: VerifiedCatalogHead,
    catalog: VerifiedCatalog,
}

/// Why a catalog (or its head) is refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogRefused {
    /// The head or the catalog does not verify (a forgery, or not a catalog at all).
    #[error("the {what} is not valid: {source}")]
    Forged {
        /// `catalog` or `catalog head`.
        what: &'static str,
        /// Why it does not verify.
        source: CatalogError,
    },
    /// The bytes do not hash to the head's `catalog_hash` (mix and match).
    #[error(
        "sent a catalog that is not catalog {sequence} of {publisher} (its hash differs from the signed head's)"
    )]
    Mismatch {
        /// The head's publisher.
        publisher: PublicKey,
        /// The head's sequence.
        sequence: u64,
    },
    /// The head and the catalog are each valid but are not of each other.
    #[error(
        "the head (catalog {head_sequence} of {head_publisher}) is not the head of this catalog ({sequence} of {publisher})"
    )]
    NotItsHead {
        /// The head's publisher.
        head_publisher: PublicKey,
        /// The head's sequence.
        head_sequence: u64,
        /// The catalog's publisher.
        publisher: PublicKey,
        /// The catalog's sequence.
        sequence: u64,
    },
    /// The catalog rules refuse it (untrusted, expired, rollback, equal sequence with other
    /// bytes).
    #[error(transparent)]
    Rules(#[from] CatalogRejection),
}

impl CatalogRefused {
    /// The metrics label of the refusal (`licet_catalog_refusals_total`).
    pub fn label(&self) -> &'static str {
        match self {
            CatalogRefused::Forged { .. } | CatalogRefused::NotItsHead { .. } => "invalid",
            CatalogRefused::Mismatch { .. } => "mismatch",
            CatalogRefused::Rules(CatalogRejection::UntrustedPublisher(_)) => "untrusted",
            CatalogRefused::Rules(CatalogRejection::Expired { .. }) => "expired",
            CatalogRefused::Rules(CatalogRejection::Rollback { .. }) => "rollback",
            CatalogRefused::Rules(CatalogRejection::EqualSequenceDifferentBytes { .. }) => {
                "equal_sequence_different_bytes"
            }
            CatalogRefused::Rules(_) => "rejected",
        }
    }
}

/// What [`PolicyState::accept`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogOutcome {
    /// The catalog is in force now, in place of the sequence `previous` (if any).
    Accepted {
        /// The sequence in force before.
        previous: Option<u64>,
    },
    /// It is the catalog in force already: nothing changed.
    AlreadyHeld,
}

impl CatalogOffer {
    /// A catalog and its head as received (`catalog publish`): each verified, then matched.
    pub fn from_bytes(head: &[u8], catalog: &[u8]) -> Result<CatalogOffer, CatalogRefused> {
        let catalog =
            VerifiedCatalog::from_bytes(catalog).map_err(|source| CatalogRefused::Forged {
                what: "catalog",
                source,
            })?;
        let head =
            VerifiedCatalogHead::from_bytes(head).map_err(|source| CatalogRefused::Forged {
                what: "catalog head",
                source,
            })?;
        CatalogOffer::matched(head, catalog)
    }

    /// The catalog root fetched for a verified `head`: its bytes must hash to the head's
    /// `catalog_hash` before they are even decoded, then verify.
    pub fn root_for_head(
        head: &VerifiedCatalogHead,
        root: &[u8],
    ) -> Result<VerifiedCatalogRoot, CatalogRefused> {
        let h = head.head();
        if catalog_hash(root) != h.catalog_hash {
            return Err(CatalogRefused::Mismatch {
                publisher: h.publisher,
                sequence: h.sequence,
            });
        }
        VerifiedCatalogRoot::from_bytes(root).map_err(|source| CatalogRefused::Forged {
            what: "catalog root",
            source,
        })
    }

    /// The catalog `root` (from [`CatalogOffer::root_for_head`]) names, put together from the
    /// parts `held` answers by hash (each checked against its hash before it is decoded), then
    /// matched with `head`.
    pub fn assembled<'a>(
        head: VerifiedCatalogHead,
        root: VerifiedCatalogRoot,
        held: impl Fn(&CatalogPartHash) -> Option<&'a [u8]>,
    ) -> Result<CatalogOffer, CatalogRefused> {
        let catalog =
            VerifiedCatalog::assemble(root, held).map_err(|source| CatalogRefused::Forged {
                what: "catalog",
                source,
            })?;
        CatalogOffer::matched(head, catalog)
    }

    fn matched(
        head: VerifiedCatalogHead,
        catalog: VerifiedCatalog,
    ) -> Result<CatalogOffer, CatalogRefused> {
        if !head.matches(&catalog) {
            return Err(CatalogRefused::NotItsHead {
                head_publisher: head.head().publisher,
                head_sequence: head.head().sequence,
                publisher: catalog.catalog().publisher,
                sequence: catalog.catalog().sequence,
            });
        }
        Ok(CatalogOffer { head, catalog })
    }

    /// The head.
    pub fn head(&self) -> &VerifiedCatalogHead {
        &self.head
    }

    /// The catalog.
    pub fn catalog(&self) -> &VerifiedCatalog {
        &self.catalog
    }

    /// The publisher.
    pub fn publisher(&self) -> PublicKey {
        self.head.head().publisher
    }

    /// The catalog as it would be held and served.
    pub fn held(&self) -> HeldCatalog {
        HeldCatalog {
            head: self.head.clone(),
            catalog: self.catalog.clone(),
        }
    }
}

impl PolicyState {
    /// Whether accepting the catalog `head` points to at `now` would change anything: `true` if
    /// it is newer than the one in force, `false` if it is that one; refused as
    /// [`PolicyState::accept`] would refuse it. Changes nothing: a node follows (fetches,
    /// saves) only the heads this admits.
    pub fn admits(
        &self,
        head: &VerifiedCatalogHead,
        now: Timestamp,
    ) -> Result<bool, CatalogRefused> {
        let rules = self.rules();
        Ok(rules.catalogs.head_is_newer(&rules.trust, now, head)?)
    }

    /// Accepts `offer` at `now` (module docs): on [`CatalogOutcome::Accepted`] it is in force
    /// and held; otherwise nothing changed.
    pub fn accept(
        &self,
        _: &Updating<'_>,
        offer: CatalogOffer,
        now: Timestamp,
    ) -> Result<CatalogOutcome, CatalogRefused> {
        let held = offer.held();
        let mut rules = self.rules_mut();
        let rules = &mut *rules;
        match rules.catalogs.accept(&rules.trust, now, offer.catalog)? {
            CatalogAcceptance::Accepted { previous } => {
                // Under the rules' lock: the held catalog changes with the one in force.
                self.held().insert(held.publisher(), held);
                Ok(CatalogOutcome::Accepted { previous })
            }
            CatalogAcceptance::AlreadyHeld => Ok(CatalogOutcome::AlreadyHeld),
        }
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::{
        ManifestId, SecretKey,
        catalog::{Catalog, CatalogHead},
        catalog_parts::CatalogFile,
        encoding,
        manifest::VerifiedManifest,
        policy::{RefusalReason, Territory, TrustedPublisher},
        signed::{Signed, SignedKind},
    };

    use super::*;
    use crate::test_support::{manifest_body, publisher};

    const DAY: i64 = 24 * 3600;

    fn manifest() -> VerifiedManifest {
        manifest_body("film", &[1000])
            .sign(&publisher(), None)
            .expect("the test manifest signs")
    }

    /// Catalog `sequence` of [`publisher`], issued `issued_ago` seconds ago, valid for a day,
    /// revoking `revoked`.
    fn catalog(sequence: u64, issued_ago: i64, revoked: &[ManifestId]) -> Catalog {
        let issued_at = Timestamp::now().plus_seconds(-issued_ago);
        Catalog {
            publisher: publisher().public_key(),
            sequence,
            issued_at,
            expires_at: issued_at.plus_seconds(DAY),
            entries: vec![],
            revoked_manifests: revoked.to_vec(),
            revoked_delegates: vec![],
            revoked_licences: Vec::new(),
        }
    }

    /// The signed head and file of `catalog`.
    fn signed(catalog: Catalog) -> (Vec<u8>, Vec<u8>) {
        let catalog = catalog.sign(&publisher()).expect("the test catalog signs");
        let head = catalog.head(&publisher()).expect("its head signs");
        (head.envelope_bytes().to_vec(), catalog.to_file_bytes())
    }

    fn offer(catalog: Catalog) -> CatalogOffer {
        let (head, envelope) = signed(catalog);
        CatalogOffer::from_bytes(&head, &envelope).expect("a genuine offer")
    }

    async fn trusting() -> PolicyState {
        let state = PolicyState::new(None);
        let settings = TrustedPublisher {
            name: Some("publisher".into()),
            require_catalog: false,
        };
        state.trust(
            &state.updating().await,
            publisher().public_key(),
            settings,
            false,
        );
        state
    }

    /// A state trusting the publisher, with catalog 2 (issued an hour ago, not revoking the
    /// manifest) in force.
    async fn holding_catalog_2() -> PolicyState {
        let state = trusting().await;
        let outcome = state.accept(
            &state.updating().await,
            offer(catalog(2, 3600, &[])),
            state.judged_now(),
        );
        assert_eq!(
            outcome.unwrap(),
            CatalogOutcome::Accepted { previous: None }
        );
        state
    }

    fn held_sequence(state: &PolicyState) -> Option<u64> {
        state
            .held_catalog(&publisher().public_key())
            .map(|held| held.head().head().sequence)
    }

    fn refusal(state: &PolicyState) -> Option<RefusalReason> {
        state
            .check(&manifest(), Territory::Holder)
            .err()
            .map(|r| r.reason)
    }

    #[tokio::test]
    async fn a_newer_catalog_replaces_the_one_in_force_takes_effect_and_raises_the_time_floor() {
        let state = holding_catalog_2().await;
        assert_eq!(refusal(&state), None, "served under catalog 2");
        let newer = catalog(3, 60, &[manifest().id()]);
        let issued_at = newer.issued_at;
        let outcome = state.accept(&state.updating().await, offer(newer), state.judged_now());
        assert_eq!(
            outcome.unwrap(),
            CatalogOutcome::Accepted { previous: Some(2) }
        );
        assert_eq!(refusal(&state), Some(RefusalReason::Revoked));
        assert_eq!(held_sequence(&state), Some(3));
        assert_eq!(state.time_floor(), Some(issued_at));
    }

    #[tokio::test]
    async fn the_catalog_in_force_offered_again_changes_nothing() {
        let state = trusting().await;
        let (head, envelope) = signed(catalog(3, 60, &[manifest().id()]));
        let updating = state.updating().await;
        let first = CatalogOffer::from_bytes(&head, &envelope).unwrap();
        assert!(state.admits(first.head(), state.judged_now()).unwrap());
        state.accept(&updating, first, state.judged_now()).unwrap();
        let again = CatalogOffer::from_bytes(&head, &envelope).unwrap();
        assert!(!state.admits(again.head(), state.judged_now()).unwrap());
        let outcome = state.accept(&updating, again, state.judged_now());
        assert_eq!(outcome.unwrap(), CatalogOutcome::AlreadyHeld);
        assert_eq!(refusal(&state), Some(RefusalReason::Revoked));
        assert_eq!(held_sequence(&state), Some(3));
    }

    #[tokio::test]
    async fn an_older_catalog_is_refused_and_its_revocation_does_not_bite() {
        let state = holding_catalog_2().await;
        let older = offer(catalog(1, 7200, &[manifest().id()]));
        assert!(matches!(
            state.admits(older.head(), state.judged_now()),
            Err(CatalogRefused::Rules(CatalogRejection::Rollback { .. }))
        ));
        let outcome = state.accept(&state.updating().await, older, state.judged_now());
        assert!(
            matches!(
                outcome,
                Err(CatalogRefused::Rules(CatalogRejection::Rollback {
                    offered: 1,
                    accepted: 2,
                    ..
                }))
            ),
            "{outcome:?}"
        );
        assert_eq!(refusal(&state), None);
        assert_eq!(held_sequence(&state), Some(2));
    }

    #[tokio::test]
    async fn a_forged_head_or_catalog_is_refused_before_it_is_offered() {
        let state = holding_catalog_2().await;
        let attacker = SecretKey::from_seed(&[9; 32]);
        let revoking = catalog(3, 60, &[manifest().id()]);
        // A catalog of the publisher, its root signed by another key; a head for it by the
        // publisher.
        let genuine = revoking.clone().sign(&publisher()).unwrap();
        let forged_root = Signed::sign(
            SignedKind::CatalogRoot,
            encoding::encode(genuine.root().root()),
            &attacker,
            None,
        )
        .encode();
        let mut file: CatalogFile =
            encoding::decode("file", &genuine.to_file_bytes(), usize::MAX).unwrap();
        file.root = forged_root.clone();
        let forged_catalog = encoding::encode(&file);
        let head = |key: &SecretKey| {
            let body = CatalogHead {
                publisher: publisher().public_key(),
                sequence: 3,
                expires_at: revoking.expires_at,
                catalog_hash: catalog_hash(&forged_root),
            };
            Signed::sign(SignedKind::CatalogHead, encoding::encode(&body), key, None).encode()
        };
        let outcome = CatalogOffer::from_bytes(&head(&publisher()), &forged_catalog);
        assert!(
            matches!(
                outcome,
                Err(CatalogRefused::Forged {
                    what: "catalog",
                    ..
                })
            ),
            "{outcome:?}"
        );
        let genuine_head = VerifiedCatalogHead::from_bytes(&head(&publisher())).unwrap();
        let outcome = CatalogOffer::root_for_head(&genuine_head, &forged_root);
        assert!(
            matches!(
                outcome,
                Err(CatalogRefused::Forged {
                    what: "catalog root",
                    ..
                })
            ),
            "{outcome:?}"
        );
        let (_, genuine) = signed(revoking.clone());
        let outcome = CatalogOffer::from_bytes(&head(&attacker), &genuine);
        assert!(
            matches!(
                outcome,
                Err(CatalogRefused::Forged {
                    what: "catalog head",
                    ..
                })
            ),
            "{outcome:?}"
        );
        assert_eq!(refusal(&state), None);
        assert_eq!(held_sequence(&state), Some(2));
    }

    #[tokio::test]
    async fn bytes_that_are_not_the_heads_catalog_are_refused() {
        let state = holding_catalog_2().await;
        let (newer_head, _) = signed(catalog(3, 60, &[manifest().id()]));
        let (_, other) = signed(catalog(4, 60, &[manifest().id()]));
        let head = VerifiedCatalogHead::from_bytes(&newer_head).unwrap();
        let other_root = VerifiedCatalog::from_bytes(&other).unwrap();
        let outcome = CatalogOffer::root_for_head(&head, other_root.root().envelope_bytes());
        assert!(
            matches!(outcome, Err(CatalogRefused::Mismatch { sequence: 3, .. })),
            "{outcome:?}"
        );
        // Valid head and valid catalog, of two different catalogs.
        let outcome = CatalogOffer::from_bytes(&newer_head, &other);
        assert!(
            matches!(outcome, Err(CatalogRefused::NotItsHead { .. })),
            "{outcome:?}"
        );
        assert_eq!(refusal(&state), None);
        assert_eq!(held_sequence(&state), Some(2));
    }

    #[tokio::test]
    async fn a_catalog_of_a_publisher_not_trusted_is_refused() {
        let state = PolicyState::new(None);
        let revoking = offer(catalog(3, 60, &[manifest().id()]));
        let outcome = state.accept(&state.updating().await, revoking, state.judged_now());
        assert!(
            matches!(
                outcome,
                Err(CatalogRefused::Rules(CatalogRejection::UntrustedPublisher(
                    _
                )))
            ),
            "{outcome:?}"
        );
        assert_eq!(held_sequence(&state), None);
        assert_eq!(state.time_floor(), None);
        assert_eq!(refusal(&state), Some(RefusalReason::UntrustedPublisher));
    }
}
