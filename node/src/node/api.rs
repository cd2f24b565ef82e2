//! The control API's methods ([`NodeApi`] for [`Node`]): the edge where the parts' answers and
//! errors become the API's replies and [`ApiError`]s (mapped in `api_errors.rs`).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use libp2p::{Multiaddr, PeerId};
use licet_proto::{
    LicenceId, ManifestId, PublicKey, Timestamp,
    manifest::{ShareLink, VerifiedManifest},
    policy::{Territory, TrustedPublisher},
    wire::Bitfield,
};
use tracing::{info, warn};

use super::{
    Node,
    api_errors::{blocking, catalog_error, fetch_error, store_error, to_api_refusal},
};
use crate::{
    content::{self, output_folder},
    contract::{
        self, ApiError, ApiErrorKind, CatalogInfo, CatalogListReply, ContentCounts, ContentInfo,
        ContentListReply, GetRequest, LicenceEntry, LicenceListReply, LimitsChange, LimitsReply,
        LogReply, NetworkInfo, NodeApi, OpenReply, OpenRequest, PeerInfo, PeersReply, RemoveQuery,
        RemoveReply, StatusReply, TrustAddRequest, TrustEntry, TrustReply,
    },
    fetch,
    items::{Item, Live},
    net,
    store::{ContentOrigin, FileState, RecordState, proof_tree::ProofTree},
};

pub(crate) fn parse_link(link: &str) -> Result<(ManifestId, Vec<Multiaddr>), ApiError> {
    let link: ShareLink = link
        .parse()
        .map_err(|e: licet_proto::manifest::ShareLinkError| {
            ApiError::new(ApiErrorKind::BadRequest, e.to_string())
        })?;
    let mut addrs = Vec::new();
    for peer in &link.peers {
        // The hint is text from whoever wrote the link, and the parser's error repeats it:
        // both are escaped, as the message is logged and shown.
        let addr: Multiaddr = peer.parse().map_err(|e: libp2p::multiaddr::Error| {
            ApiError::new(
                ApiErrorKind::BadRequest,
                format!(
                    "peer hint {peer:?} is not a multiaddr: {}",
                    licet_proto::text::escape_for_terminal(&e.to_string())
                ),
            )
        })?;
        if net::peer_of(&addr).is_none() {
            return Err(ApiError::new(
                ApiErrorKind::BadRequest,
                format!("peer hint {peer:?} has no /p2p/<peer id>"),
            ));
        }
        addrs.push(addr);
    }
    Ok((link.id, addrs))
}

/// One line of `peers`: what the book says about `peer`, with its ban's end as a wall time.
fn peer_info(
    peer: &PeerId,
    addrs: &[Multiaddr],
    view: Option<crate::peers::PeerView>,
    wall: Timestamp,
) -> PeerInfo {
    let view = view.as_ref();
    PeerInfo {
        peer_id: peer.to_string(),
        addrs: addrs.iter().map(ToString::to_string).collect(),
        relayed: !addrs.is_empty() && addrs.iter().all(crate::net::reachability::is_relayed),
        bytes_in: view.map_or(0, |v| v.bytes_in),
        bytes_out: view.map_or(0, |v| v.bytes_out),
        banned: view.is_some_and(|v| v.ban_reason.is_some()),
        ban_reason: view.and_then(|v| v.ban_reason.clone()),
        // Rounded up, so a ban never shows as ended before it is.
        banned_until: view.and_then(|v| v.banned_for).map(|left| {
            let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            wall.plus_seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
                .to_string()
        }),
        offences: view.map_or(0, |v| v.offences),
    }
}

impl NodeApi for Node {
    async fn limits(&self) -> Result<LimitsReply, ApiError> {
        Ok(super::limits::limits_reply(self.bandwidth()))
    }

    async fn limits_change(&self, change: LimitsChange) -> Result<LimitsReply, ApiError> {
        self.change_limits(change)
    }

    async fn status(&self) -> Result<StatusReply, ApiError> {
        let addrs = self.inner.network.listen_addrs().await.unwrap_or_default();
        let connected = self.inner.network.connected().await.unwrap_or_default();
        let report = self.inner.network.report().await.unwrap_or_default();
        let mut counts = ContentCounts::default();
        let items = self.inner.items.all();
        self.notice_changed_files(&items).await;
        for item in items {
            let live = item.live();
            match live.state {
                RecordState::Complete => counts.complete += 1,
                RecordState::Downloading => counts.downloading += 1,
                RecordState::Failed => counts.failed += 1,
                RecordState::Paused => counts.paused += 1,
            }
            // A file verified once (its tree known) that lost its bits changed on disk.
            if live
                .trees
                .iter()
                .zip(&live.have)
                .any(|(tree, bits)| tree.is_some() && bits.count_ones() < bits.len())
            {
                counts.changed += 1;
            }
        }
        let trusted = self.inner.policy.trusted_count();
        Ok(StatusReply {
            peer_id: self.inner.network.local_peer_id().to_string(),
            listen_addrs: addrs.iter().map(ToString::to_string).collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            region: self.region().map(|r| r.to_string()),
            connected_peers: connected.len(),
            trusted_publishers: trusted,
            content: counts,
            uptime_seconds: self.inner.started.elapsed().as_secs(),
            catalogs: self.inner.policy.catalog_infos(),
            health: self.health(),
            limits: super::limits::limits_reply(self.bandwidth()),
            network: NetworkInfo {
                reachability: report.reachability,
                public_addrs: report
                    .public_addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                relayed_addrs: report
                    .relayed_addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                relay_service: report.relay_service,
                mdns: report.mdns,
                upnp: report.upnp,
            },
        })
    }

    async fn log(&self) -> Result<LogReply, ApiError> {
        Ok(LogReply {
            lines: self.inner.recent_log.lines(),
        })
    }

    async fn peers(&self) -> Result<PeersReply, ApiError> {
        let connected = self.inner.network.connected().await.unwrap_or_default();
        let (now, wall) = (Instant::now(), Timestamp::now());
        let reply = self.inner.peers.with_book(|peers| {
            let mut reply = Vec::new();
            let mut seen = HashSet::new();
            for (peer, addrs) in &connected {
                seen.insert(*peer);
                reply.push(peer_info(peer, addrs, peers.view(peer, now), wall));
            }
            for (peer, view) in peers.banned(now) {
                if !seen.contains(&peer) {
                    reply.push(peer_info(&peer, &[], Some(view), wall));
                }
            }
            reply
        });
        Ok(PeersReply { peers: reply })
    }

    async fn trust_list(&self) -> Result<TrustReply, ApiError> {
        Ok(TrustReply {
            publishers: self.inner.policy.trust_entries(),
        })
    }

    async fn trust_add(&self, request: TrustAddRequest) -> Result<TrustEntry, ApiError> {
        // A publisher trusted again without a name keeps the name it has.
        let name = request.name.clone().or_else(|| {
            self.inner
                .policy
                .trust_entries()
                .into_iter()
                .find(|entry| entry.publisher == request.publisher)
                .and_then(|entry| entry.name)
        });
        let settings = TrustedPublisher {
            name: name.clone(),
            require_catalog: request.require_catalog,
        };
        let updating = self.inner.policy.updating().await;
        let store = self.inner.store.clone();
        let (publisher, stored, mirror) = (request.publisher, settings.clone(), request.mirror);
        blocking(move || {
            store.trust_put(&publisher, &stored)?;
            store.mirror_set(&publisher, mirror)
        })
        .await?
        .map_err(store_error)?;
        self.inner
            .policy
            .trust(&updating, publisher, settings, mirror);
        drop(updating);
        self.catalogs().follow(publisher).await;
        Ok(TrustEntry {
            publisher: request.publisher,
            name,
            require_catalog: request.require_catalog,
            mirror,
        })
    }

    async fn trust_remove(&self, publisher: PublicKey) -> Result<(), ApiError> {
        let updating = self.inner.policy.updating().await;
        self.catalogs()
            .distrust(&updating, publisher)
            .await
            .map_err(catalog_error)
    }

    async fn content_add(
        &self,
        manifest: Vec<u8>,
        content_dir: PathBuf,
    ) -> Result<ContentInfo, ApiError> {
        let manifest = VerifiedManifest::from_bytes(&manifest).map_err(|e| {
            ApiError::refused(
                ApiErrorKind::Refused,
                format!("the manifest is not valid: {e}"),
                contract::Refusal {
                    reason: e.refusal_reason(),
                    detail: e.to_string(),
                },
            )
        })?;
        let id = manifest.id();
        if let Err(refusal) = self.policy_check(&manifest, Territory::Holder) {
            return Err(ApiError::refused(
                ApiErrorKind::Refused,
                format!("manifest {id} is refused: {}", refusal_text(&refusal)),
                to_api_refusal(refusal),
            ));
        }
        if let Some(existing) = self.item(&id)
            && existing.dir() != content_dir
        {
            return Err(ApiError::new(
                ApiErrorKind::Conflict,
                format!(
                    "manifest {id} is already held in {}; remove it first to use {}",
                    existing.dir().display(),
                    content_dir.display()
                ),
            ));
        }
        let body = manifest.manifest().clone();
        let dir = content_dir.clone();
        let verified = blocking(move || content::verify_all(&dir, &body))
            .await?
            .map_err(|e| ApiError::new(ApiErrorKind::BadRequest, e.to_string()))?;
        let mut files = Vec::with_capacity(verified.len());
        let mut have = Vec::new();
        let mut trees = Vec::new();
        let mut stamps = Vec::new();
        for (index, file) in verified.into_iter().enumerate() {
            let mut bits = Bitfield::new(file.leaves.len() as u64);
            for i in 0..bits.len() {
                bits.set(i, true);
            }
            have.push(bits.clone());
            trees.push(Some(Arc::new(ProofTree::new(
                manifest.id(),
                index as u32,
                &file.leaves,
            ))));
            stamps.push(Some(file.stamp.clone()));
            files.push(FileState {
                bitfield: bits,
                leaves: Some(file.leaves),
            });
        }
        let item = Arc::new(Item::new(
            manifest,
            content_dir,
            ContentOrigin::Seeded,
            Timestamp::now(),
            Live {
                state: RecordState::Complete,
                error: None,
                have,
                trees,
                stamps,
                downloading: false,
            },
        ));
        let record = item.record(&item.live());
        let store = self.inner.store.clone();
        let stored = item.manifest().clone();
        blocking(move || store.content_put(&stored, &record, &files))
            .await?
            .map_err(store_error)?;
        self.inner.items.replace(item.clone());
        self.announce(&item).await;
        info!(%id, "seeding {}", item.dir().display());
        Ok(self.info(&item))
    }

    async fn content_list(&self) -> Result<ContentListReply, ApiError> {
        let items = self.inner.items.all();
        self.notice_changed_files(&items).await;
        let mut content: Vec<ContentInfo> = items.iter().map(|i| self.info(i)).collect();
        content.sort_by(|a, b| a.title.cmp(&b.title));
        Ok(ContentListReply {
            content,
            catalogs: self.inner.policy.catalog_infos(),
        })
    }

    async fn content_get(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        let item = self.item(&id).ok_or_else(|| {
            ApiError::new(
                ApiErrorKind::NotFound,
                format!("manifest {id} is not held here"),
            )
        })?;
        self.notice_changed_files(std::slice::from_ref(&item)).await;
        Ok(self.info(&item))
    }

    async fn content_remove(
        &self,
        id: ManifestId,
        query: RemoveQuery,
    ) -> Result<RemoveReply, ApiError> {
        self.cancel_item(id, query.delete_files).await
    }

    async fn content_pause(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        self.pause_item(id).await
    }

    async fn content_resume(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        self.resume_item(id).await
    }

    async fn content_check(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        self.check_item(id).await
    }

    async fn content_open(
        &self,
        id: ManifestId,
        request: OpenRequest,
    ) -> Result<OpenReply, ApiError> {
        self.open_release(id, request).await
    }

    async fn licence_list(&self) -> Result<LicenceListReply, ApiError> {
        self.licences_held().await
    }

    async fn licence_add(&self, licence: Vec<u8>) -> Result<LicenceEntry, ApiError> {
        self.licence_keep(licence).await
    }

    async fn licence_remove(&self, id: LicenceId) -> Result<(), ApiError> {
        self.licence_forget(id).await
    }

    async fn catalog_publish(
        &self,
        catalog: Vec<u8>,
        head: Vec<u8>,
    ) -> Result<CatalogInfo, ApiError> {
        self.catalogs()
            .publish(&catalog, &head)
            .await
            .map_err(catalog_error)
    }

    async fn catalog_list(&self) -> Result<CatalogListReply, ApiError> {
        Ok(CatalogListReply {
            catalogs: self.inner.policy.catalog_infos(),
        })
    }

    async fn download_start(&self, request: GetRequest) -> Result<ContentInfo, ApiError> {
        let requested = Instant::now();
        let (id, hints) = parse_link(&request.link)?;
        let output_dir = self.user_output_dir(&request.output_dir).await?;
        if let Some(item) = self.item(&id) {
            // A paid release's ciphertext is in a folder of the node's; `output_dir` is where
            // its plaintext goes once it is complete (`open_release`).
            let encrypted = item.manifest().manifest().encryption.is_some();
            if !encrypted && item.dir() != output_dir {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!(
                        "manifest {id} is already held in {}; remove it first to fetch it into {}",
                        item.dir().display(),
                        output_dir.display()
                    ),
                ));
            }
            if let Err(refusal) = self.policy_check(item.manifest(), self.as_fetcher()) {
                return Err(ApiError::refused(
                    ApiErrorKind::Refused,
                    format!("manifest {id} is refused: {}", refusal_text(&refusal)),
                    to_api_refusal(refusal),
                ));
            }
            let hint_peers = self.dial_hints(&hints).await;
            let was_paused = item.state() == RecordState::Paused;
            self.spawn_download(item.clone(), hint_peers, requested);
            // `get` of a paused download resumes it, and that holds across a restart too.
            if was_paused {
                self.save_record(&item).await?;
            }
            return Ok(self.info(&item));
        }
        let hint_peers = self.dial_hints(&hints).await;
        // The link's peers and the connected ones are asked at once, beside the provider
        // lookup; the download goes on with that lookup and starts with the manifest's sender.
        let found = fetch::find(&self.fetching(), id, &hint_peers)
            .await
            .map_err(fetch_error)?;
        let manifest = found.manifest;
        if let Err(refusal) = self.policy_check(&manifest, self.as_fetcher()) {
            return Err(ApiError::refused(
                ApiErrorKind::Refused,
                format!(
                    "manifest {id} ({:?}) is refused: {}",
                    manifest.manifest().title,
                    refusal_text(&refusal)
                ),
                to_api_refusal(refusal),
            ));
        }
        let item = if manifest.manifest().encryption.is_some() {
            // The ciphertext goes to the node's own folder, where only Licet writes: whatever
            // an earlier download left there is adopted if whole, else written over.
            let sealed = self.sealed_dir(&id);
            self.create_download(manifest, sealed, true).await?
        } else {
            self.create_download(manifest, output_dir, request.replace)
                .await?
        };
        let sources = std::iter::once(found.peer).chain(hint_peers).collect();
        self.start_download(item.clone(), sources, Some(found.lookup), requested);
        Ok(self.info(&item))
    }

    async fn metrics_text(&self) -> String {
        let connected = self.inner.network.connected().await.unwrap_or_default();
        self.inner
            .metrics
            .peers_connected
            .set(connected.len() as i64);
        self.inner
            .metrics
            .set_catalogs(&self.inner.policy.catalog_infos());
        self.health();
        self.inner.metrics.render()
    }
}

impl Node {
    /// Stops serving and fetching `id` and forgets it (its files stay).
    pub(crate) async fn remove_item(&self, id: ManifestId) -> Result<(), ApiError> {
        if self.inner.items.remove(&id).is_none() {
            return Err(ApiError::new(
                ApiErrorKind::NotFound,
                format!("manifest {id} is not held here"),
            ));
        }
        let _ = self.inner.network.stop_providing(id.0).await;
        let store = self.inner.store.clone();
        blocking(move || store.content_remove(&id))
            .await?
            .map_err(store_error)?;
        Ok(())
    }

    async fn dial_hints(&self, hints: &[Multiaddr]) -> Vec<PeerId> {
        let mut peers = Vec::new();
        for addr in hints {
            match self.inner.network.dial(addr.clone()).await {
                Ok(Ok(peer)) => peers.push(peer),
                Ok(Err(e)) => warn!(%addr, "peer hint not reachable: {e}"),
                Err(_) => {}
            }
        }
        peers
    }

    /// A user's output folder, resolved (links and `..` of what exists), and refused if it is,
    /// holds or is inside the data directory.
    pub(super) async fn user_output_dir(&self, requested: &Path) -> Result<PathBuf, ApiError> {
        let requested = requested.to_path_buf();
        let data_dir = self.inner.data_dir.clone();
        blocking(move || {
            let resolved = output_folder::resolve(&requested).map_err(|e| {
                ApiError::new(
                    ApiErrorKind::BadRequest,
                    format!(
                        "cannot resolve the output folder {}: {e}",
                        requested.display()
                    ),
                )
            })?;
            output_folder::check_data_dir(&resolved, &data_dir)
                .map_err(|e| ApiError::new(ApiErrorKind::BadRequest, e.to_string()))?;
            Ok(resolved)
        })
        .await?
    }

    /// Creates the download of `manifest` into `dir`: claims its id among the items (a
    /// `Conflict` if another `get`, `add` or the mirror took it meanwhile, or if its files would
    /// meet another item's), checks what is in the folder and creates the files
    /// ([`output_folder`]: files identical to the manifest's are adopted as complete, others
    /// refuse it unless `replace`), and stores the new item. Nothing is left behind if a step
    /// fails.
    pub(crate) async fn create_download(
        &self,
        manifest: VerifiedManifest,
        dir: PathBuf,
        replace: bool,
    ) -> Result<Arc<Item>, ApiError> {
        let mut files: Vec<FileState> = manifest
            .manifest()
            .files
            .iter()
            .map(|f| FileState {
                bitfield: Bitfield::new(f.chunk_count(manifest.manifest().chunk_size)),
                leaves: None,
            })
            .collect();
        let count = files.len();
        let item = Arc::new(Item::new(
            manifest,
            dir.clone(),
            ContentOrigin::Downloaded,
            Timestamp::now(),
            Live {
                state: RecordState::Downloading,
                error: None,
                have: files.iter().map(|f| f.bitfield.clone()).collect(),
                trees: vec![None; count],
                stamps: vec![None; count],
                downloading: false,
            },
        ));
        let id = item.id();
        self.inner.items.claim(&item, |items| {
            if let Some(existing) = items.get(&id) {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!(
                        "manifest {id} is already held in {}",
                        existing.dir().display()
                    ),
                ));
            }
            let others = items
                .values()
                .map(|other| (other.id(), other.dir(), other.manifest().manifest()));
            match output_folder::find_overlap(&dir, item.manifest().manifest(), others) {
                Some(overlap) => Err(ApiError::new(ApiErrorKind::Conflict, overlap.to_string())),
                None => Ok(()),
            }
        })?;
        let body = item.manifest().manifest().clone();
        let creating = dir.clone();
        let prepared = blocking(move || {
            output_folder::plan(&creating, &body, replace)
                .and_then(|plan| plan.apply(&body))
                .map_err(|e| {
                    if e.is_conflict() {
                        ApiError::new(ApiErrorKind::Conflict, e.to_string())
                    } else {
                        ApiError::new(
                            ApiErrorKind::BadRequest,
                            format!("cannot create the files in {}: {e}", creating.display()),
                        )
                    }
                })
        })
        .await
        .and_then(|result| result);
        let prepared = match prepared {
            Ok(adopted) => {
                // Files already identical to the manifest's are complete: no chunk is fetched.
                let record = {
                    let mut live = item.live();
                    for (index, verified) in adopted.into_iter().enumerate() {
                        let Some(verified) = verified else { continue };
                        let state = &mut files[index];
                        for chunk in 0..state.bitfield.len() {
                            state.bitfield.set(chunk, true);
                        }
                        live.have[index] = state.bitfield.clone();
                        live.trees[index] = Some(Arc::new(ProofTree::new(
                            item.id(),
                            index as u32,
                            &verified.leaves,
                        )));
                        live.stamps[index] = Some(verified.stamp);
                        state.leaves = Some(verified.leaves);
                    }
                    item.record(&live)
                };
                let store = self.inner.store.clone();
                let stored = item.manifest().clone();
                blocking(move || {
                    store
                        .content_put(&stored, &record, &files)
                        .map_err(store_error)
                })
                .await
                .and_then(|result| result)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = prepared {
            self.inner.items.unclaim(&item);
            return Err(e);
        }
        Ok(item)
    }
}

/// A refusal as the end of a message that already says "refused": its reason and particulars
/// (the `Refusal`'s own text starts with "refused: " too).
pub(super) fn refusal_text(refusal: &licet_proto::policy::Refusal) -> String {
    format!("{}: {}", refusal.reason.describe(), refusal.detail)
}

#[cfg(test)]
mod tests {
    use licet_proto::text::is_unsafe_to_show;

    use super::*;

    /// Found by the `share_link` fuzz target: a hint that is not a multiaddr had the parser's
    /// error, which repeats it raw, in the message the daemon logs and answers.
    #[test]
    fn a_refused_share_link_never_carries_a_character_unsafe_to_show() {
        let id = "ab".repeat(32);
        for hint in [
            "/\u{8a}\u{dd75b}' EE",
            "/\u{1b}[2J\nfake log line",
            "/dns4/a\u{1b}[2J\n/tcp/1",
            "/dns4/evil\u{202e}gpj.exe/tcp/1",
        ] {
            let error = parse_link(&format!("licet:{id}?peer={hint}")).unwrap_err();
            assert!(
                !error.message.chars().any(is_unsafe_to_show),
                "{:?}",
                error.message
            );
            assert!(error.message.contains("peer hint"), "{}", error.message);
        }
    }
}
