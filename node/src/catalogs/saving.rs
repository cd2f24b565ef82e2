//! Saving accepted catalogs (step 4 of `mod.rs`), also while the database is closed.
//!
//! Invariant: a catalog the node accepted is in force even if it could not be saved. When the
//! database is closed (a full disk, see `reopening_db.rs`), it is applied all the same and kept
//! in the policy state as unsaved (one per publisher, the newest) until it is saved: by the
//! node's health watch once the database reopens, and before any other catalog is accepted.
//! A trust removal (`trust rm`) is the same: in force at once, saved once the database reopens.

use licet_proto::PublicKey;
use tracing::{info, warn};

use super::{CatalogError, CatalogHost, Catalogs};
use crate::{
    policy_state::{HeldCatalog, Updating},
    store::{StoreError, reopening_db::Health},
};

/// Whether a catalog was saved, or is in force unsaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Written to the database.
    Yes,
    /// The database is closed: kept in memory until it reopens.
    Later,
}

impl<H: CatalogHost> Catalogs<H> {
    /// Saves an accepted catalog and its head. If the database is closed, keeps it to save
    /// later and returns [`Saved::Later`]; any other failure is an error and nothing is kept.
    pub(super) async fn save(
        &self,
        updating: &Updating<'_>,
        held: &HeldCatalog,
    ) -> Result<Saved, CatalogError> {
        let store = self.store.clone();
        let publisher: PublicKey = held.publisher();
        let (envelope, head) = (
            held.catalog().to_file_bytes(),
            held.head().envelope_bytes().to_vec(),
        );
        let result = tokio::task::spawn_blocking(move || {
            let result = store.catalog_put_with_head(&publisher, &envelope, &head);
            (result, store.health())
        })
        .await
        .map_err(|e| CatalogError::Internal(format!("background task failed: {e}")))?;
        match result {
            (Ok(()), _) => {
                self.policy.mark_saved(updating, &publisher);
                Ok(Saved::Yes)
            }
            (Err(e), Health::Closed(_)) => {
                warn!(
                    %publisher,
                    sequence = held.head().head().sequence,
                    "catalog in force but not saved (it is saved once the database reopens): {e}"
                );
                self.policy.mark_unsaved(updating, held);
                Ok(Saved::Later)
            }
            (Err(e), Health::Ok) => Err(CatalogError::Internal(format!("node database: {e}"))),
        }
    }

    /// `trust rm`: stops trusting (and mirroring) `publisher`, leaves its gossip topic and
    /// stops announcing its content. Saved, or (database closed) in force all the same and
    /// saved once the database reopens: [`CatalogError::DistrustUnsaved`] says so.
    pub async fn distrust(
        &self,
        updating: &Updating<'_>,
        publisher: PublicKey,
    ) -> Result<(), CatalogError> {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = store.trust_remove(&publisher);
            (result, store.health())
        })
        .await
        .map_err(|e| CatalogError::Internal(format!("background task failed: {e}")))?;
        let outcome = match result {
            (Ok(removed), _) => {
                self.policy.distrust(updating, &publisher);
                self.policy.mark_distrust_saved(updating, &publisher);
                if removed {
                    Ok(())
                } else {
                    Err(CatalogError::NotTrusted(publisher))
                }
            }
            (Err(e), health @ Health::Closed(_)) => {
                if !self.policy.distrust(updating, &publisher) {
                    return Err(CatalogError::NotTrusted(publisher));
                }
                warn!(
                    %publisher,
                    "trust removed but not saved (it is saved once the database reopens): {e}"
                );
                self.policy.mark_distrust_unsaved(updating, publisher);
                Err(CatalogError::DistrustUnsaved {
                    publisher,
                    problem: health.problem().unwrap_or_else(|| e.to_string()),
                })
            }
            (Err(e), Health::Ok) => {
                return Err(CatalogError::Internal(match e {
                    // Names the database itself, and says it recovers.
                    StoreError::Unavailable(_) => e.to_string(),
                    e => format!("node database: {e}"),
                }));
            }
        };
        self.unfollow(publisher).await;
        self.host.stop_announcing_refused(Some(publisher)).await;
        outcome
    }

    /// Saves what was kept in memory while the database was closed (module docs): trust
    /// removals, then catalogs.
    pub async fn save_unsaved(&self, updating: &Updating<'_>) {
        for publisher in self.policy.unsaved_distrusts() {
            let store = self.store.clone();
            let result = tokio::task::spawn_blocking(move || {
                let result = store.trust_remove(&publisher);
                (result, store.health())
            })
            .await;
            match result {
                Ok((Ok(_), _)) => {
                    info!(%publisher, "trust removal saved after the database reopened");
                    self.policy.mark_distrust_saved(updating, &publisher);
                }
                Ok((Err(_), Health::Closed(_))) | Err(_) => return,
                Ok((Err(e), Health::Ok)) => {
                    warn!(%publisher, "trust removal in force cannot be saved: {e}");
                    self.policy.mark_distrust_saved(updating, &publisher);
                }
            }
        }
        for held in self.policy.unsaved_catalogs() {
            let publisher = held.publisher();
            match self.save(updating, &held).await {
                Ok(Saved::Yes) => info!(
                    %publisher,
                    sequence = held.head().head().sequence,
                    "catalog saved after the database reopened"
                ),
                Ok(Saved::Later) => return,
                Err(e) => {
                    // Not ours to store (the database refuses it): the catalog stays in force
                    // in memory; the log says why it is not saved.
                    warn!(%publisher, "catalog in force cannot be saved: {e}");
                    self.policy.mark_saved(updating, &publisher);
                }
            }
        }
    }
}
