//! Mirror mode (step 5 of `mod.rs` for a mirrored publisher): fetching what a publisher's
//! catalog in force lists and this node does not hold, and dropping what it withdrew.
//!
//! Invariants: one sync at a time (the others return at once; the next poll catches up); at
//! most [`MIRROR_DOWNLOADS_AT_ONCE`] downloads running and [`MIRROR_LOOKUPS_PER_SYNC`]
//! manifests looked up per sync, going on where the last sync stopped; a mirror fetches like a
//! user's download (its own region must be licensed); only content in the mirror folder is
//! ever dropped.

use std::path::PathBuf;

use licet_proto::{ManifestId, PublicKey, policy::RefusalReason};
use tracing::{debug, info, warn};

use super::{CatalogHost, Catalogs};

/// Most mirror downloads running at once, per mirrored publisher.
const MIRROR_DOWNLOADS_AT_ONCE: usize = 8;
/// Most listed manifests a mirror looks up in one sync (each is a DHT lookup); the next sync
/// goes on from where this one stopped, so a large catalog is covered in turn.
const MIRROR_LOOKUPS_PER_SYNC: usize = 32;

impl<H: CatalogHost> Catalogs<H> {
    /// The folder a mirrored manifest's content goes in.
    fn mirror_dir(&self, id: &ManifestId) -> PathBuf {
        self.mirror_root.join(id.to_string())
    }

    /// Mirror mode: starts fetching what `publisher`'s newest catalog lists and this node does
    /// not hold (a few at a time), and drops mirrored content the catalog withdrew. One sync
    /// runs at a time: while one runs, another returns at once (the next poll catches up).
    pub async fn mirror_sync(&self, publisher: PublicKey) {
        if !self.policy.is_mirrored(&publisher) {
            return;
        }
        let Ok(mut cursors) = self.work.mirror_cursors.try_lock() else {
            return;
        };
        let Some(listed) = self.policy.listed(&publisher) else {
            return;
        };
        // Drop what was mirrored and is withdrawn now (revoked, or its delegate revoked).
        let mut active = 0;
        for item in self.host.downloaded(&publisher) {
            let id = item.manifest.id();
            if item.dir != self.mirror_dir(&id) {
                continue;
            }
            let withdrawn = self
                .policy
                .check(&item.manifest, licet_proto::policy::Territory::Holder)
                .err()
                .is_some_and(|refusal| {
                    matches!(
                        refusal.reason,
                        RefusalReason::Revoked | RefusalReason::DelegateRevoked
                    )
                });
            if withdrawn {
                info!(%id, "mirror drops withdrawn content");
                if let Err(e) = self.host.forget(id).await {
                    warn!(%id, "cannot drop withdrawn content: {e}");
                }
                let dir = item.dir.clone();
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            } else if item.downloading {
                active += 1;
            }
        }
        // Look up the listed manifests not held, going on from where the last sync stopped.
        let start = cursors.get(&publisher).copied().unwrap_or(0) % listed.len().max(1);
        let mut lookups = 0;
        let mut next = start;
        for offset in 0..listed.len() {
            if active >= MIRROR_DOWNLOADS_AT_ONCE || lookups >= MIRROR_LOOKUPS_PER_SYNC {
                break;
            }
            let at = (start + offset) % listed.len();
            next = at + 1;
            let id = listed[at];
            if self.host.holds(&id) {
                continue;
            }
            lookups += 1;
            let manifest = match self.host.find_manifest(id).await {
                Ok(manifest) => manifest,
                Err(e) => {
                    debug!(%id, "mirror: manifest not found yet: {e}");
                    continue;
                }
            };
            // A mirror fetches like a user's download: its own region must be listed.
            if let Err(refusal) = self.policy.check(&manifest, self.policy.as_fetcher()) {
                debug!(%id, "mirror: not fetched: {refusal}");
                continue;
            }
            // The mirror folder is the node's own: what an earlier mirror left there may be
            // replaced (identical files are still adopted, links still refused).
            match self
                .host
                .start_download(manifest, self.mirror_dir(&id))
                .await
            {
                Ok(()) => {
                    info!(%id, "mirror: fetching");
                    active += 1;
                }
                Err(e) => warn!(%id, "mirror: cannot start fetching: {e}"),
            }
        }
        cursors.insert(publisher, next);
    }
}
