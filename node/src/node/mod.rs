//! The node: the parts tied together, and the control API's methods on them.
//!
//! Ownership: each part owns its state behind a handle, and [`Node`] holds the handles: the
//! event loop owns the `Swarm` (reached through [`Network`]); the [`Store`] owns the database
//! (reached through blocking calls on blocking threads); [`Items`] the content items and their
//! live state; [`Peers`] the peer book (bytes each way, bans) and the pool of transfer
//! sessions; [`PolicyState`] the trust store and catalogs in force; [`Metrics`] the counters.
//! Fetching gets them as a [`FetchContext`], serving peers as a [`Server`] (`serve/`);
//! neither knows the node. The control API's methods are `api.rs`, the one mapping of the
//! parts' errors to `ApiError` is `api_errors.rs`; re-checking files is `check.rs`.
//!
//! Invariants:
//! - the trust policy is asked on every request served and before every fetch (`serve/`,
//!   `fetch/`), so a revocation or the end of a licence window bites on the next request;
//! - a peer that breaks the protocol or sends a chunk that fails verification is banned:
//!   disconnected, refused until its ban ends (longer for repeat offenders, see `peers/`), and
//!   listed as banned, with the end of its ban, in `peers`; the per-peer state is bounded.

mod api;
mod api_errors;
pub mod catalog_host;
pub mod check;
mod chunk_map;
pub mod data_dir;
pub mod health;
mod limits;
mod paid;
mod steer;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use libp2p::{Multiaddr, PeerId, identity};
use licet_proto::{
    ManifestId, SecretKey,
    manifest::{Region, ShareLink, VerifiedManifest},
    merkle,
    policy::{self, Territory},
    wire::Bitfield,
};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use api_errors::{blocking, internal};
use api_errors::{store_error, to_api_refusal};

use crate::{
    bandwidth::{Bandwidth, LimitsConfig, SCHEDULE_CHECK, lan},
    catalogs::CatalogWork,
    contract::{ApiError, ContentInfo, ContentState, EncryptionInfo, LicenceInfo},
    fetch::{self, FetchContext, LiveNet, ProviderLookup},
    items::{Item, Items, Live},
    licences::Licences,
    metrics::{Metrics, recent_log::RecentLog},
    net::{self, Network, NetworkConfig, TRANSFER_PROTOCOL},
    node::data_dir::DataDirError,
    peers::{PEER_SWEEP_INTERVAL, Peers},
    policy_state::PolicyState,
    serve::Server,
    store::proof_tree::ProofTree,
    store::{RecordState, Store, StoreError},
    transfer::{self, Session, SessionError},
};

/// Most inbound transfer streams served at once, from all peers.
const MAX_INBOUND_STREAMS: usize = 256;
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
    /// The connection manager's water marks.
    pub watermarks: crate::net::conn_manager::Watermarks,
    /// The bandwidth limits, their schedule, and whether LAN peers are exempt.
    pub limits: LimitsConfig,
    /// The daemon's recent log lines, which `GET /v1/log` answers with.
    pub recent_log: RecentLog,
    /// Delivery reports: signing this seed's, collecting partners'.
    pub deliveries: crate::deliveries::DeliveriesConfig,
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
    /// The delivery report key or delegation is unusable.
    #[error(transparent)]
    Deliveries(#[from] crate::deliveries::DeliveriesError),
}

struct Inner {
    store: Arc<Store>,
    network: Network,
    data_dir: PathBuf,
    started: Instant,
    policy: Arc<PolicyState>,
    /// What the catalog work keeps between calls (`catalogs/`).
    catalog_work: Arc<CatalogWork>,
    /// Set when the daemon stops.
    stopping: AtomicBool,
    /// The download tasks, joined at shutdown.
    downloads: TaskTracker,
    items: Arc<Items>,
    peers: Peers,
    metrics: Arc<Metrics>,
    bandwidth: Bandwidth,
    recent_log: RecentLog,
    deliveries: crate::deliveries::Deliveries,
    licences: Arc<Licences>,
    /// Held while a paid release's plaintext is written (`paid.rs`): one at a time.
    opening: tokio::sync::Mutex<()>,
}

/// The node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
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
            crate::store::atomic_file::write_atomic(&path, &bytes, 0o600)
                .map_err(|e| err(e.to_string()))?;
            Ok(keypair)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The node's identity key as the ed25519 key licences are sealed to.
fn node_secret_key(keypair: &identity::Keypair, path: &Path) -> Result<SecretKey, StartError> {
    let ed25519 = keypair
        .clone()
        .try_into_ed25519()
        .map_err(|_| StartError::Identity {
            path: path.to_path_buf(),
            reason: "not an ed25519 key".to_owned(),
        })?;
    let seed: [u8; 32] =
        ed25519
            .secret()
            .as_ref()
            .try_into()
            .map_err(|_| StartError::Identity {
                path: path.to_path_buf(),
                reason: "the ed25519 secret is not 32 bytes".to_owned(),
            })?;
    Ok(SecretKey::from_seed(&seed))
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
        let licences = Arc::new(Licences::new(
            store.clone(),
            node_secret_key(&keypair, &config.data_dir.join("node.key"))?,
        ));

        let policy = Arc::new(PolicyState::load(&store, config.region)?);
        let deliveries = crate::deliveries::Deliveries::open(&config.deliveries, &data_dir)?;

        let metrics = Arc::new(Metrics::new());
        let (network, network_events) = net::spawn(NetworkConfig {
            keypair,
            listen: config.listen,
            bootstrap: config.bootstrap,
            public_ranges: net::reachability::PublicRanges::new(config.public_ranges),
            relay_service: config.relay_service,
            mdns: config.mdns,
            upnp: config.upnp,
            watermarks: config.watermarks,
            counters: metrics.network_counters(),
            judged_now: {
                let policy = policy.clone();
                Arc::new(move || policy.judged_now())
            },
            peers_file: Some(net::PeersFile {
                path: data_dir.join(net::PEERS_FILE_NAME),
                write: |path, bytes| crate::store::atomic_file::write_atomic(path, bytes, 0o600),
            }),
        })?;
        let node = Node {
            inner: Arc::new(Inner {
                store,
                network: network.clone(),
                data_dir,
                started: Instant::now(),
                policy,
                catalog_work: Arc::new(CatalogWork::new(config.catalog_poll)),
                stopping: AtomicBool::new(false),
                downloads: TaskTracker::new(),
                items: Arc::new(Items::new()),
                peers: Peers::new(network.clone(), metrics.clone()),
                bandwidth: {
                    let (day, minute) = Bandwidth::local_now();
                    Bandwidth::new(config.limits, metrics.clone(), day, minute)
                },
                metrics,
                recent_log: config.recent_log,
                deliveries,
                licences,
                opening: tokio::sync::Mutex::new(()),
            }),
        };
        node.load_items().await?;
        node.accept_streams();
        node.start_peer_sweep();
        node.start_clock_asking();
        node.start_bandwidth_watch();
        node.start_health_watch();
        node.catalogs().start(network_events).await;
        let stopping = node.clone();
        node.inner
            .deliveries
            .start_reporting(node.inner.network.clone(), move || {
                stopping.inner.stopping.load(Ordering::Relaxed)
            });
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
            let item = Arc::new(Item::new(
                manifest,
                record.dir,
                record.origin,
                record.added_at,
                Live {
                    state: record.state,
                    error: record.error,
                    have,
                    trees,
                    stamps,
                    downloading: false,
                },
            ));
            self.inner.items.replace(item.clone());
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

    /// Every item held, in no order.
    pub(crate) fn items(&self) -> Vec<Arc<Item>> {
        self.inner.items.all()
    }

    /// The node's server of peer requests (its parts, as handles).
    pub(crate) fn server(&self) -> Server {
        let inner = &self.inner;
        Server::new(
            inner.items.clone(),
            inner.policy.clone(),
            inner.peers.clone(),
            inner.store.clone(),
            inner.metrics.clone(),
            inner.network.clone(),
            inner.bandwidth.clone(),
        )
        .with_deliveries(inner.deliveries.clone())
    }

    pub(crate) fn item(&self, id: &ManifestId) -> Option<Arc<Item>> {
        self.inner.items.get(id)
    }

    /// Announces `item` in the DHT, if the trust policy allows serving it now (so a takedown
    /// or an ended window also holds across a restart). [`Node::stop_announcing_refused`] is the
    /// other half.
    pub(crate) async fn announce(&self, item: &Item) {
        self.fetching().announce(item).await;
    }

    /// The parts fetching uses, as its context.
    pub(crate) fn fetching(&self) -> Arc<FetchContext> {
        let inner = &self.inner;
        Arc::new(
            FetchContext::new(
                inner.store.clone(),
                inner.metrics.clone(),
                inner.policy.clone(),
                inner.peers.clone(),
                LiveNet::new(
                    inner.network.clone(),
                    inner.peers.clone(),
                    inner.metrics.clone(),
                ),
            )
            .with_bandwidth(inner.bandwidth.clone()),
        )
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
        self.inner.peers.is_banned(peer)
    }

    /// Bans `peer` (see [`Peers::ban`]).
    pub(crate) async fn ban(&self, peer: PeerId, reason: &str) {
        self.inner.peers.ban(peer, reason).await;
    }

    /// Every [`PEER_SWEEP_INTERVAL`]: unblocks peers whose ban ended and forgets idle peers.
    fn start_peer_sweep(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PEER_SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !node.inner.stopping.load(Ordering::Relaxed) {
                ticks.tick().await;
                if !node.inner.peers.sweep().await {
                    return;
                }
            }
        });
    }

    /// Every [`SCHEDULE_CHECK`]: puts the limits of the schedule in force, drops idle per-peer
    /// limiter states, and (with `lan_exempt`) refreshes which connected peers are on the LAN.
    fn start_bandwidth_watch(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SCHEDULE_CHECK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !node.inner.stopping.load(Ordering::Relaxed) {
                ticks.tick().await;
                let bandwidth = &node.inner.bandwidth;
                let (day, minute) = Bandwidth::local_now();
                bandwidth.refresh(day, minute);
                bandwidth.forget_idle_peers();
                if bandwidth.lan_exempt() {
                    let Ok(connected) = node.inner.network.connected().await else {
                        return;
                    };
                    let subnets = lan::own_subnets();
                    bandwidth.set_lan_peers(connected.into_iter().filter_map(|(peer, addrs)| {
                        (!addrs.is_empty()
                            && addrs.iter().all(|a| lan::is_lan_address(a, &subnets)))
                        .then_some(peer)
                    }));
                }
            }
        });
    }

    /// The bandwidth part (limits in force, changes while running).
    pub(crate) fn bandwidth(&self) -> &Bandwidth {
        &self.inner.bandwidth
    }

    /// The transfer session with `peer` (see [`Peers::session`]).
    pub(crate) async fn session(&self, peer: PeerId) -> Result<Arc<Session>, SessionError> {
        self.inner.peers.session(peer).await
    }

    /// A request to `peer` failed (see [`Peers::request_failed`]).
    pub(crate) async fn request_failed(&self, peer: PeerId, error: &SessionError) {
        self.inner.peers.request_failed(peer, error).await;
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
        let server = Arc::new(self.server());
        let peers = self.inner.peers.clone();
        let slots = transfer::StreamSlots::new(MAX_INBOUND_STREAMS, MAX_INBOUND_STREAMS_PER_PEER);
        tokio::spawn(async move {
            let mut incoming = incoming;
            while let Some((peer, stream)) = incoming.next().await {
                if peers.is_banned(&peer) {
                    continue;
                }
                // Every place busy (or this peer has its share): refused. A place held by a
                // stream that only waits on its peer goes to the newcomer instead.
                let Some(slot) = slots.admit(peer) else {
                    warn!(%peer, "too many busy inbound transfer streams; one refused");
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    transfer::serve_stream(server, peer, stream, slot).await;
                });
            }
        });
    }

    /// Starts the download task of `item` unless one runs; `requested` is when it was asked for
    /// (its time to a first chunk is counted from there).
    pub(crate) fn spawn_download(&self, item: Arc<Item>, hints: Vec<PeerId>, requested: Instant) {
        self.start_download(item, hints, None, requested);
    }

    /// [`Node::spawn_download`], whose first look for peers is `lookup` (already running).
    fn start_download(
        &self,
        item: Arc<Item>,
        hints: Vec<PeerId>,
        lookup: Option<ProviderLookup>,
        requested: Instant,
    ) {
        if !item.begin_download(&mut item.live()) {
            return;
        }
        let fetching = self.fetching();
        let node = self.clone();
        self.inner.downloads.spawn(async move {
            fetch::download(fetching, item.clone(), hints, lookup, requested).await;
            // Resumed while this task wound down from a pause: the next one starts now.
            if item.download_ended() {
                node.spawn_download(item, Vec::new(), Instant::now());
            }
        });
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.network.local_peer_id()
    }

    /// Stops every download task and the catalog poll (daemon shutdown).
    pub fn stop_all(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.items.stop_all();
    }

    /// Stops every download task and the catalog poll, then waits at most `limit` for the
    /// download tasks to end (each finishes and commits the batch it is writing). Whether they
    /// all ended in time.
    pub async fn stop(&self, limit: Duration) -> bool {
        self.stop_all();
        self.inner.downloads.close();
        tokio::time::timeout(limit, self.inner.downloads.wait())
            .await
            .is_ok()
    }

    /// Persists an item's record (state, error, stamps).
    pub(crate) async fn save_record(&self, item: &Arc<Item>) -> Result<(), ApiError> {
        let store = self.inner.store.clone();
        let item = item.clone();
        blocking(move || item.save(&store))
            .await?
            .map_err(store_error)
    }

    pub(crate) fn info(&self, item: &Item) -> ContentInfo {
        let manifest = item.manifest().manifest();
        let live = item.live();
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
            dir: item.dir().to_path_buf(),
            state: match live.state {
                RecordState::Downloading => ContentState::Downloading,
                RecordState::Complete => ContentState::Complete,
                RecordState::Failed => ContentState::Failed,
                RecordState::Paused => ContentState::Paused,
            },
            // A download is judged as a fetch for this node's user, held content as a holder's.
            refused: self
                .policy_check(
                    item.manifest(),
                    match live.state {
                        RecordState::Downloading | RecordState::Paused => self.as_fetcher(),
                        RecordState::Complete | RecordState::Failed => Territory::Holder,
                    },
                )
                .err()
                .map(to_api_refusal),
            total_bytes: manifest.total_size(),
            have_bytes,
            total_chunks,
            have_chunks,
            fetched_chunks: item.fetched_chunks(),
            sending_peers: item.sending_peers(),
            source_peers: item.source_peers(),
            error: live.error.clone(),
            // Out of service: verified once (its leaves are known), not every chunk held now.
            changed_files: manifest
                .files
                .iter()
                .zip(live.trees.iter().zip(&live.have))
                .filter(|(_, (tree, bits))| tree.is_some() && bits.count_ones() < bits.len())
                .map(|(file, _)| file.path.to_string())
                .collect(),
            chunk_map: chunk_map::chunk_map(&live.have),
            licence: Some(LicenceInfo {
                terms: manifest.licence.terms.clone(),
                not_before: manifest.licence.not_before.to_string(),
                not_after: manifest.licence.not_after.map(|t| t.to_string()),
                regions: manifest
                    .licence
                    .regions
                    .iter()
                    .map(|r| r.to_string())
                    .collect(),
            }),
            encryption: manifest.encryption.as_ref().map(|e| EncryptionInfo {
                algorithm: e.algorithm.to_string(),
                key_id: e.key_id.to_string(),
                plaintext_bytes: e.plaintext_sizes.iter().sum(),
            }),
        }
    }
}

pub(crate) use api::parse_link;
