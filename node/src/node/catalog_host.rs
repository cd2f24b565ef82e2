//! The node as the catalog work's host ([`CatalogHost`]): what the catalog work asks of the
//! node (transfer sessions, bans, the content it holds), and the [`Catalogs`] context the node
//! hands it. The catalog work reaches the node only through these methods.

use std::{sync::Arc, sync::atomic::Ordering, time::Instant};

use libp2p::PeerId;
use licet_proto::{ManifestId, PublicKey, manifest::VerifiedManifest, policy::Territory};
use tracing::info;

use super::Node;
use crate::{
    catalogs::{CatalogHost, Catalogs, DownloadedContent},
    fetch,
    store::{ContentOrigin, RecordState},
    transfer::{Session, SessionError},
};

impl Node {
    /// The catalog work's context, on this node's parts.
    pub(crate) fn catalogs(&self) -> Catalogs<Node> {
        Catalogs::new(
            self.inner.network.clone(),
            self.inner.store.clone(),
            self.inner.policy.clone(),
            &self.inner.metrics,
            self.inner.catalog_work.clone(),
            &self.inner.data_dir,
            self.clone(),
        )
        .with_deliveries(self.inner.deliveries.clone())
    }

    /// Stops announcing the held content (of `publisher`, or of everyone) that the policy now
    /// refuses: withdrawn by a catalog, not listed under `require_catalog`, out of its licence
    /// window, or of a publisher no longer trusted.
    pub(crate) async fn stop_announcing_refused(&self, publisher: Option<PublicKey>) {
        let items: Vec<_> = self
            .items()
            .into_iter()
            .filter(|item| publisher.is_none_or(|p| item.manifest().manifest().publisher == p))
            .collect();
        for item in items {
            if let Err(refusal) = self.policy_check(item.manifest(), Territory::Holder) {
                // The periodic sweep meets the same refused items every time: not worth a line.
                if publisher.is_some() {
                    info!(id = %item.id(), "no longer served: {refusal}");
                }
                let _ = self.inner.network.stop_providing(item.id().0).await;
            }
        }
    }
}

impl CatalogHost for Node {
    async fn session(&self, peer: PeerId) -> Result<Arc<Session>, SessionError> {
        Node::session(self, peer).await
    }

    async fn request_failed(&self, peer: PeerId, error: &SessionError) {
        Node::request_failed(self, peer, error).await;
    }

    async fn ban(&self, peer: PeerId, reason: &str) {
        Node::ban(self, peer, reason).await;
    }

    fn is_banned(&self, peer: &PeerId) -> bool {
        Node::is_banned(self, peer)
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    async fn stop_announcing_refused(&self, publisher: Option<PublicKey>) {
        Node::stop_announcing_refused(self, publisher).await;
    }

    fn downloaded(&self, publisher: &PublicKey) -> Vec<DownloadedContent> {
        self.items()
            .iter()
            .filter(|item| {
                item.manifest().manifest().publisher == *publisher
                    && item.origin() == ContentOrigin::Downloaded
            })
            .map(|item| DownloadedContent {
                manifest: item.manifest().clone(),
                dir: item.dir().to_path_buf(),
                downloading: item.state() == RecordState::Downloading,
            })
            .collect()
    }

    fn holds(&self, id: &ManifestId) -> bool {
        self.item(id).is_some()
    }

    async fn forget(&self, id: ManifestId) -> Result<(), String> {
        self.remove_item(id).await.map_err(|e| e.message)
    }

    async fn find_manifest(&self, id: ManifestId) -> Result<VerifiedManifest, String> {
        fetch::find_manifest(&self.fetching(), id, &[])
            .await
            .map_err(|e| e.to_string())
    }

    async fn start_download(
        &self,
        manifest: VerifiedManifest,
        dir: std::path::PathBuf,
    ) -> Result<(), String> {
        let item = self
            .create_download(manifest, dir, true)
            .await
            .map_err(|e| e.message)?;
        self.spawn_download(item, Vec::new(), Instant::now());
        Ok(())
    }
}
