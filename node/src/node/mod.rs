//! The node: the one object that ties the store, the swarm, the trust policy and the content
//! together, and that the control API and the transfer protocol talk to.
//!
//! Ownership: the event loop owns the `Swarm` (reached through [`Network`]); the [`Store`] owns
//! the database (reached through blocking calls on blocking threads); this module owns the
//! in-memory view of content items, the policy state (trust store and catalogs, mirrored from
//! the store), the peer book (`peers.rs`: bytes each way, bans) and the pool of transfer
//! sessions. Serving a chunk from disk is `serving.rs`; re-checking files, `check.rs`.
//!
//! Invariants:
//! - the trust policy is asked on every request served (manifest, availability, each chunk),
//!   so a revocation or the end of a licence window bites on the next request;
//! - a chunk is served only if its bit is set (it is verified and durably on disk), its file
//!   has not changed on disk since it was verified (size and modification time), and the bytes
//!   read verify against the signed root (`serving.rs`); a changed file is taken out of service
//!   (the item is marked failed) until `check` finds it whole; a read error that proves no
//!   change is answered `Busy` and changes nothing;
//! - a peer that breaks the protocol or sends a chunk that fails verification is banned:
//!   disconnected, refused until its ban ends (longer for repeat offenders, see `peers.rs`), and
//!   listed as banned, with the end of its ban, in `peers`; the per-peer state is bounded.

pub mod catalog_host;
pub mod check;
pub mod data_dir;
pub mod health;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use libp2p::{Multiaddr, PeerId, identity};
use licet_proto::{
    ManifestId, PublicKey, Timestamp,
    manifest::{Region, ShareLink, VerifiedManifest},
    merkle,
    policy::{self, RefusalReason, Territory, TrustedPublisher},
    wire::{self, Bitfield, Request, Response},
};
use tracing::{debug, info, warn};

use crate::{
    catalogs::{CatalogError, CatalogWork},
    content,
    content::output_folder,
    contract::{
        self, ApiError, ApiErrorKind, CatalogInfo, CatalogListReply, ContentCounts, ContentInfo,
        ContentListReply, ContentState, GetRequest, NetworkInfo, NodeApi, PeerInfo, PeersReply,
        StatusReply, TrustAddRequest, TrustEntry, TrustReply,
    },
    fetch,
    metrics::Metrics,
    net::{self, Network, NetworkConfig, TRANSFER_PROTOCOL},
    node::data_dir::DataDirError,
    peers::{PEER_SWEEP_INTERVAL, PeerBook},
    policy_state::{CatalogRefused, PolicyState},
    store::proof_tree::ProofTree,
    store::{ContentOrigin, ContentRecord, FileStamp, FileState, RecordState, Store, StoreError},
    transfer::{self, FramePool, Responder, Session, SessionError},
};

/// Most inbound transfer streams served at once, from all peers.
const MAX_INBOUND_STREAMS: usize = 256;
/// How long a session waits for a direct connection to a peer reached through a relay (the
/// hole punch takes a round trip or two, and a retry).
const DIRECT_CONNECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// Most inbound transfer streams served at once for one peer.
const MAX_INBOUND_STREAMS_PER_PEER: usize = 4;

/// How the node runs.
pub struct NodeConfig {
    /// The data directory (database, identity, API token).
    pub data_dir: PathBuf,
    /// The node's region, for licences that list regions.
    pub region: Option<Region>,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
    /// How often each trusted publisher's catalog head is looked up in the DHT and at peers.
    pub catalog_poll: Duration,
    /// Address ranges that count as public beyond globally routable ones.
    pub public_ranges: Vec<crate::net::reachability::AddressRange>,
    /// Relay for nodes that cannot be dialled.
    pub relay_service: bool,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// Ask the router for a port mapping with UPnP.
    pub upnp: bool,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory's database is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The identity key could not be read or made.
    #[error("node identity {path}: {reason}")]
    Identity {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The data directory cannot be made or found.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The swarm could not start.
    #[error(transparent)]
    Network(#[from] net::NetworkError),
}

/// The live state of one content item.
pub(crate) struct Item {
    pub(crate) manifest: VerifiedManifest,
    pub(crate) dir: PathBuf,
    origin: ContentOrigin,
    added_at: Timestamp,
    pub(crate) live: Mutex<Live>,
    pub(crate) fetched_chunks: AtomicU64,
    pub(crate) sending: Mutex<HashSet<PeerId>>,
    pub(crate) sources: Mutex<HashSet<PeerId>>,
    /// Set when the item is removed or the daemon stops: its download task ends.
    pub(crate) stop: AtomicBool,
}

/// The mutable part of an item.
pub(crate) struct Live {
    pub(crate) state: RecordState,
    pub(crate) error: Option<String>,
    /// Verified chunks held, per file.
    pub(crate) have: Vec<Bitfield>,
    /// Proof trees of complete files (their upper levels; see `proof_tree.rs`); `None` while
    /// a file is partial.
    pub(crate) trees: Vec<Option<Arc<ProofTree>>>,
    /// Size and modification time of each complete file when verified.
    pub(crate) stamps: Vec<Option<FileStamp>>,
    /// Whether a download task is running for it.
    pub(crate) downloading: bool,
}

impl Item {
    pub(crate) fn id(&self) -> ManifestId {
        self.manifest.id()
    }

    pub(crate) fn origin(&self) -> ContentOrigin {
        self.origin
    }

    pub(crate) fn state(&self) -> RecordState {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).state
    }

    pub(crate) fn record(&self, live: &Live) -> ContentRecord {
        ContentRecord {
            dir: self.dir.clone(),
            origin: self.origin,
            state: live.state,
            error: live.error.clone(),
            added_at: self.added_at,
            // The store keeps stamps for all files or none: they are known together once the
            // item is complete (seeded, or a download's final check).
            file_stamps: live
                .stamps
                .iter()
                .cloned()
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<Store>,
    pub(crate) network: Network,
    pub(crate) data_dir: PathBuf,
    started: Instant,
    pub(crate) policy: Arc<PolicyState>,
    /// What the catalog work keeps between calls (`catalogs/`).
    pub(crate) catalog_work: Arc<CatalogWork>,
    /// Set when the daemon stops.
    pub(crate) stopping: AtomicBool,
    items: Mutex<HashMap<ManifestId, Arc<Item>>>,
    peers: Mutex<PeerBook>,
    sessions: tokio::sync::Mutex<HashMap<PeerId, Arc<Session>>>,
    /// Buffers the sessions read answers into, reused across chunks.
    frames: FramePool,
    pub(crate) metrics: Metrics,
}

/// The node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

/// Runs a blocking closure on a blocking thread, mapping a panic or cancellation to an error.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| internal(format!("background task failed: {e}")))
}

pub(crate) fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(ApiErrorKind::Internal, message)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        // Names the database itself, and says it recovers.
        StoreError::Unavailable(_) => internal(e.to_string()),
        e => internal(format!("node database: {e}")),
    }
}

/// The control API's answer to a catalog that was not taken.
fn catalog_error(e: CatalogError) -> ApiError {
    let kind = match &e {
        CatalogError::Refused(CatalogRefused::Rules(_)) => ApiErrorKind::Refused,
        CatalogError::Refused(_) => ApiErrorKind::BadRequest,
        CatalogError::Unavailable(_) => ApiErrorKind::Unavailable,
        CatalogError::NotTrusted(_) => ApiErrorKind::NotFound,
        CatalogError::Unsaved { .. }
        | CatalogError::DistrustUnsaved { .. }
        | CatalogError::NoLongerTrusted(_)
        | CatalogError::Internal(_) => ApiErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

fn to_api_refusal(refusal: policy::Refusal) -> contract::Refusal {
    contract::Refusal {
        reason: refusal.reason,
        detail: refusal.detail,
    }
}

fn load_identity(data_dir: &Path) -> Result<identity::Keypair, StartError> {
    let path = data_dir.join("node.key");
    let err = |reason: String| StartError::Identity {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => identity::Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| err(format!("not a libp2p key: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = identity::Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| err(e.to_string()))?;
            write_private(&path, &bytes).map_err(|e| err(e.to_string()))?;
            Ok(keypair)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl Node {
    /// Opens the data directory, starts the swarm, and resumes serving and fetching.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let private = crate::node::data_dir::create_private(&config.data_dir).map_err(|e| {
            let reason = match e {
                DataDirError::Create { source, .. } => format!("cannot create it: {source}"),
                DataDirError::Permissions { source, .. } => {
                    format!("cannot make it private (mode 0700): {source}")
                }
            };
            StartError::DataDir {
                path: config.data_dir.clone(),
                reason,
            }
        })?;
        if let Some(was) = private {
            warn!(data_dir = %config.data_dir.display(), "the data directory was mode {was:04o}; made it 0700");
        }
        // Absolute, so the folders made under it (mirrored content) mean the same to everyone.
        let data_dir =
            std::fs::canonicalize(&config.data_dir).map_err(|e| StartError::DataDir {
                path: config.data_dir.clone(),
                reason: format!("cannot resolve it: {e}"),
            })?;
        let store = Arc::new(Store::open(&data_dir.join("state.redb"))?);
        let keypair = load_identity(&config.data_dir)?;

        let policy = Arc::new(PolicyState::load(&store, config.region)?);

        let metrics = Metrics::new();
        let (network, network_events) = net::spawn(NetworkConfig {
            keypair,
            listen: config.listen,
            bootstrap: config.bootstrap,
            public_ranges: net::reachability::PublicRanges::new(config.public_ranges),
            relay_service: config.relay_service,
            mdns: config.mdns,
            upnp: config.upnp,
            counters: metrics.network_counters(),
            judged_now: {
                let policy = policy.clone();
                Arc::new(move || policy.judged_now())
            },
        })?;
        let node = Node {
            inner: Arc::new(Inner {
                store,
                network,
                data_dir,
                started: Instant::now(),
                policy,
                catalog_work: Arc::new(CatalogWork::new(config.catalog_poll)),
                stopping: AtomicBool::new(false),
                items: Mutex::new(HashMap::new()),
                peers: Mutex::new(PeerBook::new()),
                sessions: tokio::sync::Mutex::new(HashMap::new()),
                frames: FramePool::default(),
                metrics,
            }),
        };
        node.load_items().await?;
        node.accept_streams();
        node.start_peer_sweep();
        node.start_health_watch();
        node.catalogs().start(network_events).await;
        Ok(node)
    }

    /// Loads every stored item, re-announces what is held, and resumes downloads.
    async fn load_items(&self) -> Result<(), StartError> {
        let store = self.inner.store.clone();
        let (stored, refused) = blocking(move || store.content_list_with_refused())
            .await
            .map_err(|e| StoreError::Database(e.message))??;
        // An item whose manifest an older version accepted and this one's stricter rules refuse
        // cannot be served or fetched: it is forgotten, as `rm` would, and its files stay.
        for (id, reason) in refused {
            warn!(%id, "forgotten, its files left where they are: {reason}");
            let store = self.inner.store.clone();
            blocking(move || store.content_remove(&id))
                .await
                .map_err(|e| StoreError::Database(e.message))??;
        }
        for (manifest, record) in stored {
            let id = manifest.id();
            let files = manifest.manifest().files.len();
            let mut have = Vec::with_capacity(files);
            let mut trees = Vec::with_capacity(files);
            for file in 0..files as u32 {
                let bits = self.inner.store.bitfield(&id, file)?.unwrap_or_else(|| {
                    Bitfield::new(
                        manifest.manifest().files[file as usize]
                            .chunk_count(manifest.manifest().chunk_size),
                    )
                });
                let tree = self
                    .inner
                    .store
                    .leaves(&id, file)?
                    .map(|leaves| Arc::new(ProofTree::new(id, file, &leaves)));
                have.push(bits);
                trees.push(tree);
            }
            let stamps = record
                .file_stamps
                .iter()
                .cloned()
                .map(Some)
                .chain(std::iter::repeat(None))
                .take(files)
                .collect();
            let held_any = have.iter().any(|b| b.count_ones() > 0);
            let resume = record.state == RecordState::Downloading;
            let item = Arc::new(Item {
                manifest,
                dir: record.dir,
                origin: record.origin,
                added_at: record.added_at,
                live: Mutex::new(Live {
                    state: record.state,
                    error: record.error,
                    have,
                    trees,
                    stamps,
                    downloading: false,
                }),
                fetched_chunks: AtomicU64::new(0),
                sending: Mutex::new(HashSet::new()),
                sources: Mutex::new(HashSet::new()),
                stop: AtomicBool::new(false),
            });
            self.lock_items().insert(id, item.clone());
            // A resumed download announces itself when it starts.
            if held_any && !resume {
                self.announce(&item).await;
            }
            if resume {
                info!(%id, "resuming download");
                self.spawn_download(item, Vec::new(), Instant::now());
            }
        }
        Ok(())
    }

    pub(crate) fn lock_items(&self) -> std::sync::MutexGuard<'_, HashMap<ManifestId, Arc<Item>>> {
        self.inner.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, PeerBook> {
        self.inner.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn item(&self, id: &ManifestId) -> Option<Arc<Item>> {
        self.lock_items().get(id).cloned()
    }

    /// Announces `item` in the DHT, if the trust policy allows serving it now (so a takedown
    /// or an ended window also holds across a restart). [`Node::stop_announcing_refused`] is the
    /// other half.
    pub(crate) async fn announce(&self, item: &Item) {
        if let Err(refusal) = self.policy_check(&item.manifest, Territory::Holder) {
            debug!(id = %item.id(), "not announced: {refusal}");
            return;
        }
        self.inner
            .metrics
            .dht_queries
            .get_or_create(&crate::metrics::QueryLabel {
                kind: "start_providing".into(),
            })
            .inc();
        let _ = self.inner.network.start_providing(item.id().0).await;
    }

    /// Peers the DHT says provide `id`.
    pub(crate) async fn providers(&self, id: ManifestId) -> HashSet<PeerId> {
        self.inner
            .metrics
            .dht_queries
            .get_or_create(&crate::metrics::QueryLabel {
                kind: "get_providers".into(),
            })
            .inc();
        let started = Instant::now();
        let providers = self.inner.network.providers(id.0).await.unwrap_or_default();
        self.inner
            .metrics
            .provider_lookup
            .observe(started.elapsed().as_secs_f64());
        providers
    }

    /// Asks the trust policy about `manifest` now, for what `territory` says is done with it.
    pub(crate) fn policy_check(
        &self,
        manifest: &VerifiedManifest,
        territory: Territory,
    ) -> Result<(), policy::Refusal> {
        self.inner.policy.check(manifest, territory)
    }

    /// The node's configured region, if any.
    pub(crate) fn region(&self) -> Option<Region> {
        self.inner.policy.region()
    }

    /// The territory of a fetch for this node's user: the node's own region.
    pub(crate) fn as_fetcher(&self) -> Territory {
        self.inner.policy.as_fetcher()
    }

    /// Whether `peer` is banned.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.lock_peers().is_banned(peer, Instant::now())
    }

    /// Bans `peer`: disconnects it, refuses it until the ban ends, and records why.
    pub(crate) async fn ban(&self, peer: PeerId, reason: &str) {
        let Some(ban) = self.lock_peers().ban(peer, reason, Instant::now()) else {
            return;
        };
        warn!(
            %peer,
            "banned for {} s (offence {}): {reason}",
            ban.duration.as_secs(),
            ban.offence
        );
        self.inner.metrics.peers_banned.inc();
        self.inner.sessions.lock().await.remove(&peer);
        let _ = self.inner.network.ban(peer).await;
        if let Some(released) = ban.released {
            let _ = self.inner.network.unban(released).await;
        }
    }

    /// Counts a chunk that failed verification and bans its sender (`peers` says who: the
    /// metric has no per-peer label, so it does not grow with every peer id).
    pub(crate) async fn bad_chunk(&self, peer: PeerId, what: &str) {
        self.inner.metrics.bad_chunks.inc();
        self.ban(peer, what).await;
    }

    /// Counts payload bytes received from `peer`.
    pub(crate) fn received(&self, peer: PeerId, bytes: u64) {
        self.inner.metrics.bytes_in.inc_by(bytes);
        self.lock_peers().received(peer, bytes, Instant::now());
    }

    /// Every [`PEER_SWEEP_INTERVAL`]: unblocks peers whose ban ended and forgets idle peers.
    fn start_peer_sweep(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PEER_SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !node.inner.stopping.load(Ordering::Relaxed) {
                ticks.tick().await;
                let Ok(connected) = node.inner.network.connected().await else {
                    return;
                };
                let connected: HashSet<PeerId> = connected.into_iter().map(|(p, _)| p).collect();
                let ended = node.lock_peers().sweep(Instant::now(), &connected);
                // A peer banned again since the sweep stays blocked.
                for peer in ended.into_iter().filter(|p| !node.is_banned(p)) {
                    info!(%peer, "ban ended");
                    let _ = node.inner.network.unban(peer).await;
                }
            }
        });
    }

    /// The transfer session with `peer`, opening (and dialing) if needed.
    pub(crate) async fn session(&self, peer: PeerId) -> Result<Arc<Session>, SessionError> {
        if self.is_banned(&peer) {
            return Err(SessionError::Open("peer is banned".to_owned()));
        }
        let mut sessions = self.inner.sessions.lock().await;
        if let Some(session) = sessions.get(&peer) {
            if session.failure().is_none() {
                return Ok(session.clone());
            }
            sessions.remove(&peer);
        }
        drop(sessions);
        match self.inner.network.dial_peer(peer).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(SessionError::Open(e)),
            Err(e) => return Err(SessionError::Open(e.to_string())),
        }
        // Transfer streams never cross a relay: a peer reached through one gets a moment for
        // the hole punch that follows.
        if !self
            .inner
            .network
            .wait_direct(peer, DIRECT_CONNECTION_WAIT)
            .await
        {
            return Err(SessionError::Open(
                "reachable only through a relay (no direct connection: the hole punch failed)"
                    .to_owned(),
            ));
        }
        let mut control = self.inner.network.stream_control();
        let session = Arc::new(Session::open(&mut control, peer, self.inner.frames.clone()).await?);
        let mut sessions = self.inner.sessions.lock().await;
        // Another task may have opened one meanwhile; keep the first.
        Ok(sessions.entry(peer).or_insert(session).clone())
    }

    /// Drops the session with `peer` (it failed).
    pub(crate) async fn drop_session(&self, peer: &PeerId) {
        self.inner.sessions.lock().await.remove(peer);
    }

    /// A request to `peer` failed with `error`: the session is dropped, and a peer that broke
    /// the protocol (an oversize, truncated or undecodable answer) is banned too.
    pub(crate) async fn request_failed(&self, peer: PeerId, error: &SessionError) {
        if let SessionError::Protocol(reason) = error {
            self.ban(peer, &format!("protocol violation: {reason}"))
                .await;
        }
        self.drop_session(&peer).await;
    }

    fn accept_streams(&self) {
        let mut control = self.inner.network.stream_control();
        let incoming = match control.accept(TRANSFER_PROTOCOL) {
            Ok(incoming) => incoming,
            Err(e) => {
                warn!("cannot accept transfer streams: {e}");
                return;
            }
        };
        let node = self.clone();
        let slots = transfer::StreamSlots::new(MAX_INBOUND_STREAMS, MAX_INBOUND_STREAMS_PER_PEER);
        tokio::spawn(async move {
            let mut incoming = incoming;
            while let Some((peer, stream)) = incoming.next().await {
                if node.is_banned(&peer) {
                    continue;
                }
                // Every place busy (or this peer has its share): refused. A place held by a
                // stream that only waits on its peer goes to the newcomer instead.
                let Some(slot) = slots.admit(peer) else {
                    warn!(%peer, "too many busy inbound transfer streams; one refused");
                    continue;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    transfer::serve_stream(Arc::new(node), peer, stream, slot).await;
                });
            }
        });
    }

    /// Starts the download task of `item` unless one runs; `requested` is when it was asked for
    /// (its time to a first chunk is counted from there).
    pub(crate) fn spawn_download(&self, item: Arc<Item>, hints: Vec<PeerId>, requested: Instant) {
        {
            let mut live = item.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.downloading || live.state == RecordState::Complete {
                return;
            }
            live.downloading = true;
            live.state = RecordState::Downloading;
            live.error = None;
        }
        let node = self.clone();
        tokio::spawn(async move {
            fetch::download(node, item.clone(), hints, requested).await;
            item.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .downloading = false;
        });
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.network.local_peer_id()
    }

    /// Stops every download task and the catalog poll (daemon shutdown).
    pub fn stop_all(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        for item in self.lock_items().values() {
            item.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Persists an item's record (state, error, stamps).
    pub(crate) async fn save_record(&self, item: &Arc<Item>) -> Result<(), ApiError> {
        let record = {
            let live = item.live.lock().unwrap_or_else(|p| p.into_inner());
            item.record(&live)
        };
        let store = self.inner.store.clone();
        let id = item.id();
        blocking(move || store.content_set_record(&id, &record))
            .await?
            .map_err(store_error)
    }

    pub(crate) fn info(&self, item: &Item) -> ContentInfo {
        let manifest = item.manifest.manifest();
        let live = item.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut have_chunks = 0;
        let mut have_bytes = 0;
        let mut total_chunks = 0;
        for (file, bits) in manifest.files.iter().zip(&live.have) {
            total_chunks += bits.len();
            for chunk in 0..bits.len() {
                if bits.get(chunk) {
                    have_chunks += 1;
                    if let Some(range) = merkle::chunk_range(chunk, file.size, manifest.chunk_size)
                    {
                        have_bytes += range.end - range.start;
                    }
                }
            }
        }
        ContentInfo {
            manifest_id: item.id(),
            link: ShareLink {
                id: item.id(),
                peers: Vec::new(),
            }
            .to_string(),
            title: manifest.title.clone(),
            publisher: manifest.publisher,
            dir: item.dir.clone(),
            state: match live.state {
                RecordState::Downloading => ContentState::Downloading,
                RecordState::Complete => ContentState::Complete,
                RecordState::Failed => ContentState::Failed,
            },
            // A download is judged as a fetch for this node's user, held content as a holder's.
            refused: self
                .policy_check(
                    &item.manifest,
                    match live.state {
                        RecordState::Downloading => self.as_fetcher(),
                        RecordState::Complete | RecordState::Failed => Territory::Holder,
                    },
                )
                .err()
                .map(to_api_refusal),
            total_bytes: manifest.total_size(),
            have_bytes,
            total_chunks,
            have_chunks,
            fetched_chunks: item.fetched_chunks.load(Ordering::Relaxed),
            sending_peers: item.sending.lock().map(|s| s.len()).unwrap_or(0),
            source_peers: item.sources.lock().map(|s| s.len()).unwrap_or(0),
            error: live.error.clone(),
            // Out of service: verified once (its leaves are known), not every chunk held now.
            changed_files: manifest
                .files
                .iter()
                .zip(live.trees.iter().zip(&live.have))
                .filter(|(_, (tree, bits))| tree.is_some() && bits.count_ones() < bits.len())
                .map(|(file, _)| file.path.to_string())
                .collect(),
        }
    }
}

pub(crate) fn refuse(reason: RefusalReason, detail: impl Into<String>) -> Response {
    Response::Refused {
        reason,
        detail: wire::bounded_detail(&detail.into()),
    }
}

/// What a content request asks for, once its manifest id is known.
enum ContentRequest {
    Manifest,
    Availability,
    /// A chunk, for a requester in `region` (`None`: it stated no region).
    Chunk {
        file: u32,
        index: u64,
        region: Option<Region>,
    },
}

impl Node {
    /// The answer to one request, before it is counted.
    async fn answer(&self, peer: PeerId, request: Request, payload: &mut Vec<u8>) -> Response {
        let (id, wanted) = match request {
            Request::CatalogHead { .. } | Request::CatalogPart { .. } => {
                return crate::catalogs::serve_catalog(&self.inner.policy, &request, payload);
            }
            Request::Manifest { id } => (id, ContentRequest::Manifest),
            Request::Availability { manifest } => (manifest, ContentRequest::Availability),
            Request::Chunk {
                manifest,
                file,
                index,
            } => (
                manifest,
                ContentRequest::Chunk {
                    file,
                    index,
                    region: None,
                },
            ),
            Request::ChunkForRegion {
                manifest,
                file,
                index,
                region,
            } => (
                manifest,
                ContentRequest::Chunk {
                    file,
                    index,
                    region: Some(region),
                },
            ),
        };
        let Some(item) = self.item(&id) else {
            return refuse(
                RefusalReason::NotHeld,
                format!("manifest {id} is not held here"),
            );
        };
        // Asked on every request, chunks included: revocation and expiry bite at once. A chunk
        // goes to a user, so the requester's stated region counts; the rest hands no content.
        let territory = match wanted {
            ContentRequest::Chunk { region, .. } => Territory::Requester(region),
            ContentRequest::Manifest | ContentRequest::Availability => Territory::Holder,
        };
        if let Err(refusal) = self.policy_check(&item.manifest, territory) {
            return refuse(refusal.reason, refusal.detail);
        }
        match wanted {
            ContentRequest::Manifest => Response::Manifest {
                envelope: item.manifest.envelope().encode(),
            },
            ContentRequest::Availability => {
                let live = item.live.lock().unwrap_or_else(|p| p.into_inner());
                Response::Availability {
                    files: live.have.clone(),
                }
            }
            ContentRequest::Chunk { file, index, .. } => {
                let response = self.serve_chunk(item.clone(), file, index, payload).await;
                // Asked again once the chunk is read: a revocation or the end of the licence
                // window that came while it was read stops it from leaving.
                if let Response::Chunk { .. } = &response
                    && let Err(refusal) = self.policy_check(&item.manifest, territory)
                {
                    payload.clear();
                    return refuse(refusal.reason, refusal.detail);
                }
                // Counted only now, past the second policy check: a chunk refused there is
                // not served.
                if let Response::Chunk { len, .. } = &response {
                    self.inner.metrics.chunks_served.inc();
                    self.inner.metrics.bytes_out.inc_by(u64::from(*len));
                    self.lock_peers()
                        .sent(peer, u64::from(*len), Instant::now());
                }
                response
            }
        }
    }
}

impl Responder for Node {
    async fn respond(&self, peer: PeerId, request: Request, payload: &mut Vec<u8>) -> Response {
        let response = self.answer(peer, request, payload).await;
        // Every refusal is counted here, once, whatever refused it.
        if let Response::Refused { reason, .. } = &response {
            self.inner.metrics.refused(*reason);
        }
        response
    }

    fn protocol_violation(&self, peer: PeerId, reason: &str) {
        let node = self.clone();
        let reason = format!("protocol violation: {reason}");
        tokio::spawn(async move { node.ban(peer, &reason).await });
    }
}

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
    async fn status(&self) -> Result<StatusReply, ApiError> {
        let addrs = self.inner.network.listen_addrs().await.unwrap_or_default();
        let connected = self.inner.network.connected().await.unwrap_or_default();
        let report = self.inner.network.report().await.unwrap_or_default();
        let mut counts = ContentCounts::default();
        for item in self.lock_items().values() {
            let live = item.live.lock().unwrap_or_else(|p| p.into_inner());
            match live.state {
                RecordState::Complete => counts.complete += 1,
                RecordState::Downloading => counts.downloading += 1,
                RecordState::Failed => counts.failed += 1,
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

    async fn peers(&self) -> Result<PeersReply, ApiError> {
        let connected = self.inner.network.connected().await.unwrap_or_default();
        let (now, wall) = (Instant::now(), Timestamp::now());
        let peers = self.lock_peers();
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
        Ok(PeersReply { peers: reply })
    }

    async fn trust_list(&self) -> Result<TrustReply, ApiError> {
        Ok(TrustReply {
            publishers: self.inner.policy.trust_entries(),
        })
    }

    async fn trust_add(&self, request: TrustAddRequest) -> Result<TrustEntry, ApiError> {
        let settings = TrustedPublisher {
            name: request.name.clone(),
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
            name: request.name,
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
                format!("manifest {id} is refused: {refusal}"),
                to_api_refusal(refusal),
            ));
        }
        if let Some(existing) = self.item(&id)
            && existing.dir != content_dir
        {
            return Err(ApiError::new(
                ApiErrorKind::Conflict,
                format!(
                    "manifest {id} is already held in {}; remove it first to use {}",
                    existing.dir.display(),
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
        let item = Arc::new(Item {
            manifest,
            dir: content_dir,
            origin: ContentOrigin::Seeded,
            added_at: Timestamp::now(),
            live: Mutex::new(Live {
                state: RecordState::Complete,
                error: None,
                have,
                trees,
                stamps,
                downloading: false,
            }),
            fetched_chunks: AtomicU64::new(0),
            sending: Mutex::new(HashSet::new()),
            sources: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
        });
        let record = {
            let live = item.live.lock().unwrap_or_else(|p| p.into_inner());
            item.record(&live)
        };
        let store = self.inner.store.clone();
        let stored = item.manifest.clone();
        blocking(move || store.content_put(&stored, &record, &files))
            .await?
            .map_err(store_error)?;
        if let Some(old) = self.lock_items().insert(id, item.clone()) {
            old.stop.store(true, Ordering::Relaxed);
        }
        self.announce(&item).await;
        info!(%id, "seeding {}", item.dir.display());
        Ok(self.info(&item))
    }

    async fn content_list(&self) -> Result<ContentListReply, ApiError> {
        let items: Vec<Arc<Item>> = self.lock_items().values().cloned().collect();
        let mut content: Vec<ContentInfo> = items.iter().map(|i| self.info(i)).collect();
        content.sort_by(|a, b| a.title.cmp(&b.title));
        Ok(ContentListReply {
            content,
            catalogs: self.inner.policy.catalog_infos(),
        })
    }

    async fn content_get(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        self.item(&id).map(|item| self.info(&item)).ok_or_else(|| {
            ApiError::new(
                ApiErrorKind::NotFound,
                format!("manifest {id} is not held here"),
            )
        })
    }

    async fn content_remove(&self, id: ManifestId) -> Result<(), ApiError> {
        self.remove_item(id).await
    }

    async fn content_check(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        self.check_item(id).await
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
            if item.dir != output_dir {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!(
                        "manifest {id} is already held in {}; remove it first to fetch it into {}",
                        item.dir.display(),
                        output_dir.display()
                    ),
                ));
            }
            if let Err(refusal) = self.policy_check(&item.manifest, self.as_fetcher()) {
                return Err(ApiError::refused(
                    ApiErrorKind::Refused,
                    format!("manifest {id} is refused: {refusal}"),
                    to_api_refusal(refusal),
                ));
            }
            let hint_peers = self.dial_hints(&hints).await;
            self.spawn_download(item.clone(), hint_peers, requested);
            return Ok(self.info(&item));
        }
        let hint_peers = self.dial_hints(&hints).await;
        let manifest = fetch::find_manifest(self, id, &hint_peers).await?;
        if let Err(refusal) = self.policy_check(&manifest, self.as_fetcher()) {
            return Err(ApiError::refused(
                ApiErrorKind::Refused,
                format!(
                    "manifest {id} ({:?}) is refused: {refusal}",
                    manifest.manifest().title
                ),
                to_api_refusal(refusal),
            ));
        }
        let item = self
            .create_download(manifest, output_dir, request.replace)
            .await?;
        self.spawn_download(item.clone(), hint_peers, requested);
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
        let Some(item) = self.lock_items().remove(&id) else {
            return Err(ApiError::new(
                ApiErrorKind::NotFound,
                format!("manifest {id} is not held here"),
            ));
        };
        item.stop.store(true, Ordering::Relaxed);
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
    async fn user_output_dir(&self, requested: &Path) -> Result<PathBuf, ApiError> {
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
        let item = Arc::new(Item {
            manifest,
            dir: dir.clone(),
            origin: ContentOrigin::Downloaded,
            added_at: Timestamp::now(),
            live: Mutex::new(Live {
                state: RecordState::Downloading,
                error: None,
                have: files.iter().map(|f| f.bitfield.clone()).collect(),
                trees: vec![None; count],
                stamps: vec![None; count],
                downloading: false,
            }),
            fetched_chunks: AtomicU64::new(0),
            sending: Mutex::new(HashSet::new()),
            sources: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
        });
        let id = item.id();
        {
            let mut items = self.lock_items();
            if let Some(existing) = items.get(&id) {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!(
                        "manifest {id} is already held in {}",
                        existing.dir.display()
                    ),
                ));
            }
            let others = items
                .values()
                .map(|other| (other.id(), other.dir.as_path(), other.manifest.manifest()));
            if let Some(overlap) =
                output_folder::find_overlap(&dir, item.manifest.manifest(), others)
            {
                return Err(ApiError::new(ApiErrorKind::Conflict, overlap.to_string()));
            }
            items.insert(id, item.clone());
        }
        let body = item.manifest.manifest().clone();
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
                    let mut live = item.live.lock().unwrap_or_else(|p| p.into_inner());
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
                let stored = item.manifest.clone();
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
            let mut items = self.lock_items();
            if items.get(&id).is_some_and(|held| Arc::ptr_eq(held, &item)) {
                items.remove(&id);
            }
            return Err(e);
        }
        Ok(item)
    }
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
