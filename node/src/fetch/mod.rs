//! Fetching content: find the manifest, then fetch chunks from every peer that has them,
//! verify each against the signed root, and write it.
//!
//! Peers come from link hints and the connections the node already has, asked at once, from
//! the peers already fetched from (each is asked which other peers fetch the content: peer
//! exchange, `worker.rs`), and from the DHT's provider records, looked up beside them (one lookup, shared by the manifest's
//! search and the download, whose first source is the peer that sent the manifest). Each peer that has the content gets a worker that keeps up to [`PIPELINE_PER_PEER`]
//! chunk requests in flight on the peer's session ([`PIPELINE_PER_SEED_IN_SWARM`] from a seed
//! while peers still downloading have chunks this download needs); a peer still downloading
//! with nothing needed yet keeps its worker, which waits for it to gain chunks. The
//! [`Scheduler`](schedule::Scheduler) hands out chunks rarest first, with an endgame. Verified chunks go through a
//! bounded queue to one writer, which writes a batch, makes it durable, and only then commits the
//! chunks' bits (with each chunk's proof and leaf hash) to the store; a completed file's leaf list
//! comes from those leaves, so completing it does not read it again. A download announces itself
//! in the DHT when it starts, so that other downloaders can fetch from it while it downloads.
//!
//! Fetching takes the parts it uses as a [`FetchContext`] of handles (store, metrics, trust
//! policy, peers) and reaches the network through [`FetchNet`] (sessions as [`ChunkSource`]s,
//! connected peers, provider lookups): [`LiveNet`] in the node, a fake in the unit tests. Its
//! files: `manifest.rs` (finding the manifest), `download.rs` (one download's loop),
//! `worker.rs` (a worker per peer), `write.rs` (committing chunks, completing files),
//! [`schedule`] (which chunk next).
//!
//! Invariants:
//! - the trust policy is checked before the first byte is fetched and again every
//!   `POLICY_RECHECK`; a refusal stops the download;
//! - a peer that refuses a chunk its availability still claims rests before the download asks
//!   it again (`REFUSAL_REST`, doubling up to `MAX_REFUSAL_REST`): it is never asked in a loop;
//! - nothing is written that did not verify against the manifest's root; a peer that sends a
//!   bad chunk or breaks the protocol (a malformed answer frame to any request: manifest,
//!   availability or chunk) is banned and its chunks go back to the scheduler;
//! - memory is bounded, per download: at most [`PIPELINE_PER_PEER`] chunks in flight per peer,
//!   plus [`WRITE_QUEUE`] verified chunks waiting for the writer and `WRITE_BATCH` being
//!   written.

mod download;
mod manifest;
pub mod schedule;
#[cfg(test)]
mod tests;
mod window;
mod worker;
mod write;

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId};
use licet_proto::{
    ManifestId,
    policy::{RefusalReason, Territory},
    wire::Request,
};
use tracing::debug;

pub(crate) use download::download;
pub(crate) use manifest::{ProviderLookup, find, find_manifest};

use crate::{
    bandwidth::Bandwidth,
    items::Item,
    metrics::{Metrics, QueryLabel},
    net::Network,
    peers::Peers,
    policy_state::PolicyState,
    store::{Store, StoreError},
    transfer::{Reply, Session, SessionError},
};

/// Most chunk requests kept in flight per peer (fewer while its answers are slow:
/// `window.rs`).
pub const PIPELINE_PER_PEER: usize = 16;
/// Chunk requests kept in flight from a seed while peers still downloading have chunks this
/// download needs: a seed's upload is shared by every downloader, and each chunk in flight from
/// it may turn out to be one another downloader fetched from it at the same time.
pub const PIPELINE_PER_SEED_IN_SWARM: usize = 4;
/// Verified chunks waiting for the writer, at most.
pub const WRITE_QUEUE: usize = 4;
/// Most chunks written and committed in one batch.
const WRITE_BATCH: usize = 8;
/// How often the download looks for new peers (other downloaders announce themselves when they
/// start, and should be found while they are still downloading). The first looks follow each
/// other faster, from [`FIRST_PEER_REFRESH`] doubling up to this: downloaders that start together
/// find each other while most of the content is still to be fetched.
const PEER_REFRESH: Duration = Duration::from_secs(1);
/// The wait before the second look for peers.
const FIRST_PEER_REFRESH: Duration = Duration::from_millis(100);
/// How often a worker asks its peer which other peers fetch the content lately (peer
/// exchange): the first asks follow each other faster, from [`FIRST_PEER_EXCHANGE`] doubling up
/// to this, so that downloaders that start together find each other through the peer they all
/// fetch from, within a second, without waiting for the DHT.
const PEER_EXCHANGE: Duration = Duration::from_secs(4);
/// The wait before a worker's second peer exchange.
const FIRST_PEER_EXCHANGE: Duration = Duration::from_millis(250);
/// How often an idle worker asks its peer what it has now (a peer that is downloading too gains
/// chunks all the time; an availability answer is a bitfield, one bit per chunk).
const AVAILABILITY_REFRESH: Duration = Duration::from_millis(250);
/// How long a worker waits for its peer to gain a chunk this download needs before it stops.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How often the trust policy is asked again during a download.
const POLICY_RECHECK: Duration = Duration::from_secs(1);
/// Most peers asked for a manifest.
const MAX_MANIFEST_CANDIDATES: usize = 32;
/// How long a download leaves a peer alone after it refused a chunk its availability still
/// claims (asking again at once would only get the same refusal); each time it does so again,
/// twice as long, up to [`MAX_REFUSAL_REST`].
const REFUSAL_REST: Duration = Duration::from_secs(1);
/// The longest rest of a peer that keeps refusing what it claims.
const MAX_REFUSAL_REST: Duration = Duration::from_secs(60);

/// Why a manifest could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A peer that has it refused it, for a policy reason.
    #[error("manifest {id} was refused: {}: {detail}", reason.describe())]
    Refused {
        /// The manifest.
        id: ManifestId,
        /// Why.
        reason: RefusalReason,
        /// The first refusing peer and what it said.
        detail: String,
    },
    /// No peer asked had it.
    #[error("no peer has manifest {id} (asked {asked} peer(s))")]
    Unavailable {
        /// The manifest.
        id: ManifestId,
        /// How many peers were asked.
        asked: usize,
    },
}

/// A source of chunks from one peer: what a download needs of a transfer [`Session`].
pub trait ChunkSource: Send + Sync + 'static {
    /// The peer at the other end.
    fn peer(&self) -> PeerId;
    /// Sends `request` and waits for the answer (within the source's own deadline).
    fn request(&self, request: Request)
    -> impl Future<Output = Result<Reply, SessionError>> + Send;
}

impl ChunkSource for Session {
    fn peer(&self) -> PeerId {
        Session::peer(self)
    }

    fn request(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Reply, SessionError>> + Send {
        Session::request(self, request)
    }
}

/// What fetching needs of the network: sources of chunks, the peers to ask, and the DHT.
pub trait FetchNet: Send + Sync + 'static {
    /// A source of chunks from one peer.
    type Source: ChunkSource;
    /// This node's peer id.
    fn local_peer_id(&self) -> PeerId;
    /// The source of chunks from `peer`, opened (and dialled) if needed.
    fn open(
        &self,
        peer: PeerId,
    ) -> impl Future<Output = Result<Arc<Self::Source>, SessionError>> + Send;
    /// The peers connected now.
    fn connected(&self) -> impl Future<Output = Vec<PeerId>> + Send;
    /// The peers the DHT says provide `id` (a lookup: may take seconds).
    fn providers(&self, id: ManifestId) -> impl Future<Output = HashSet<PeerId>> + Send;
    /// Announces in the DHT that this node provides `id`.
    fn provide(&self, id: ManifestId) -> impl Future<Output = ()> + Send;
    /// Another peer says `peer` listens on `addrs` (peer exchange): [`FetchNet::open`] may
    /// dial them.
    fn learn(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> impl Future<Output = ()> + Send;
}

/// The network as it is: sessions from the peers part, lookups on the swarm.
#[derive(Clone)]
pub struct LiveNet {
    network: Network,
    peers: Peers,
    metrics: Arc<Metrics>,
}

impl LiveNet {
    /// Fetching's view of `network`, with sessions from `peers`.
    pub fn new(network: Network, peers: Peers, metrics: Arc<Metrics>) -> LiveNet {
        LiveNet {
            network,
            peers,
            metrics,
        }
    }

    fn count_query(&self, kind: &str) {
        self.metrics
            .dht_queries
            .get_or_create(&QueryLabel { kind: kind.into() })
            .inc();
    }
}

impl FetchNet for LiveNet {
    type Source = Session;

    fn local_peer_id(&self) -> PeerId {
        self.network.local_peer_id()
    }

    async fn open(&self, peer: PeerId) -> Result<Arc<Session>, SessionError> {
        self.peers.session(peer).await
    }

    async fn connected(&self) -> Vec<PeerId> {
        let connected = self.network.connected().await.unwrap_or_default();
        connected.into_iter().map(|(peer, _)| peer).collect()
    }

    async fn providers(&self, id: ManifestId) -> HashSet<PeerId> {
        self.count_query("get_providers");
        let started = std::time::Instant::now();
        let providers = self.network.providers(id.0).await.unwrap_or_default();
        self.metrics
            .provider_lookup
            .observe(started.elapsed().as_secs_f64());
        providers
    }

    async fn provide(&self, id: ManifestId) {
        self.count_query("start_providing");
        let _ = self.network.start_providing(id.0).await;
    }

    async fn learn(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let _ = self.network.learn(peer, addrs).await;
    }
}

/// The parts fetching uses, as handles: the store, metrics, the trust policy, the peers part,
/// and the network (`N`; a fake in tests).
#[derive(Clone)]
pub struct FetchContext<N = LiveNet> {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    policy: Arc<PolicyState>,
    peers: Peers,
    net: N,
    /// The download limits chunk requests are paced under.
    bandwidth: Bandwidth,
}

impl<N: FetchNet> FetchContext<N> {
    /// The context of the given parts.
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        policy: Arc<PolicyState>,
        peers: Peers,
        net: N,
    ) -> FetchContext<N> {
        FetchContext {
            bandwidth: Bandwidth::unlimited(),
            store,
            metrics,
            policy,
            peers,
            net,
        }
    }

    /// The same context, its chunk requests paced under `bandwidth`'s download limits.
    pub fn with_bandwidth(mut self, bandwidth: Bandwidth) -> FetchContext<N> {
        self.bandwidth = bandwidth;
        self
    }

    /// Announces `item` in the DHT, if the trust policy allows serving it now (so a takedown
    /// or an ended window also holds across a restart).
    pub async fn announce(&self, item: &Item) {
        if let Err(refusal) = self.policy.check(item.manifest(), Territory::Holder) {
            debug!(id = %item.id(), "not announced: {refusal}");
            return;
        }
        self.net.provide(item.id()).await;
    }
}

/// Runs a blocking closure on a blocking thread; a panic or cancellation is an error message.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("background task failed: {e}"))
}

/// A store error as a download reports it (the database itself says it recovers).
fn database_problem(e: StoreError) -> String {
    match e {
        StoreError::Unavailable(_) => e.to_string(),
        e => format!("node database: {e}"),
    }
}
