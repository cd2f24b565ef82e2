//! Catalogs on the network: how a node learns, checks, keeps, applies and passes on each
//! trusted publisher's newest catalog, and mirrors the publishers it was asked to mirror.
//!
//! The work runs on a [`Catalogs`] context: the parts it uses (the network, the store, the
//! policy state, the catalog metrics, its own [`CatalogWork`]) and a [`CatalogHost`], the narrow
//! handle to what the node does for it (transfer sessions and bans, the content it holds). It
//! never sees the node itself.
//!
//! A head reaches the node in one of four ways, and every one goes through
//! [`Catalogs::consider_head`] (or, with the catalog itself, [`Catalogs::publish`]):
//! - `catalog publish` on this node (the API), with the catalog itself;
//! - gossip on the publisher's topic (`net::catalog_topic`), pushed the moment it is
//!   published (`watch.rs`);
//! - a direct `CatalogHead` request to connected peers, every `catalog_poll`;
//! - the DHT record under the publisher's catalog head key, in the same poll when no connected
//!   peer offered a head, when the node holds no catalog of the publisher, and otherwise at
//!   most every 10 minutes (`watch.rs`).
//!
//! What happens to a head, in order:
//! 1. its signature is checked: it must be signed by its publisher's own key;
//! 2. [`PolicyState::admits`]: the publisher is trusted, the catalog is not expired, and its
//!    sequence is above the accepted one (equal: the same catalog, a no-op). A rollback or a
//!    different catalog with the same sequence is refused and counted in the metrics;
//! 3. the catalog is fetched from peers (`fetching.rs`: the peer the head came from first, then
//!    connected peers, then the providers of the head key, which anyone can announce): first
//!    its signed root, whose bytes must hash to the head's `catalog_hash` before they are
//!    decoded ([`CatalogOffer::root_for_head`], mix-and-match defence), then only the parts the
//!    root names that the node does not hold already in the publisher's previous catalog
//!    (pages, then the buckets they name), each checked against the hash that names it as it
//!    arrives; the catalog they make is checked whole ([`CatalogOffer::assembled`]). A peer
//!    that sends other bytes is banned. `licet_catalog_fetched_bytes_total` counts what came;
//! 4. the catalog and its head are written to the store in one transaction, *then* applied to
//!    the in-memory policy state ([`PolicyState::accept`]); since serving asks the policy on
//!    every request, revocations and delegate revocations bite on the next chunk, and the
//!    persisted sequence means a restart cannot roll them back. If the database is closed after
//!    an I/O error (a full disk), the catalog is applied all the same and saved once the
//!    database reopens (`saving.rs`): a takedown never waits for a disk. Its `issued_at` raises
//!    the node's time floor ([`licet_proto::policy::judged_now`]), which every window check
//!    here uses;
//! 5. the node passes it on: it puts the head in the DHT, provides the head key (so others can
//!    fetch the catalog from it), gossips the head unless it came by gossip (gossipsub forwards
//!    those itself once the node accepts the message), stops announcing revoked manifests, and
//!    for a mirrored publisher fetches what is listed and drops what is withdrawn (`mirror.rs`).
//!
//! Invariants:
//! - a catalog (at most the wire limit of a catalog envelope) is fetched once at a time
//!   ([`CatalogWork`]), within [`CATALOG_TOTAL_FETCH_TIMEOUT`], and outside the policy
//!   state's update lock, so a slow source holds up only that catalog;
//! - accepting (check, store, apply) runs under the update lock ([`Updating`]), which trust
//!   changes take too, with one clock reading, so the store and the in-memory state never
//!   disagree;
//! - the node serves catalog roots only of the catalog it accepted, by its hash, and parts only
//!   of that catalog, by theirs;
//! - what a fetch holds is bounded: the root by the root envelope limit, parts by
//!   `MAX_CATALOG_PART_BYTES` each and `MAX_CATALOG_BODY_BYTES` together, requests by
//!   `MAX_CATALOG_PARTS_PER_REQUEST` hashes;
//! - gossip messages are reported to gossipsub as accepted only if they are a valid head of
//!   the topic's publisher that is newer than what the node holds, so stale or forged heads are
//!   not forwarded (a forgery also costs its sender gossipsub score).

mod fetching;
mod mirror;
mod saving;
mod watch;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use libp2p::PeerId;
use licet_proto::{
    CatalogHash, ManifestId, PublicKey, Timestamp,
    catalog::{VerifiedCatalogHead, catalog_head_key},
    manifest::VerifiedManifest,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    contract::CatalogInfo,
    deliveries::Deliveries,
    metrics::{CatalogRefusalLabel, Metrics, ViaLabel},
    net::{self, Network, NetworkEvent},
    policy_state::{CatalogOffer, CatalogOutcome, CatalogRefused, PolicyState, Updating},
    store::Store,
    transfer::{Session, SessionError},
};

pub use fetching::CatalogRootPieces;
pub use saving::Saved;

/// Longest a catalog may take to fetch, all its sources together.
pub const CATALOG_TOTAL_FETCH_TIMEOUT: Duration = Duration::from_secs(180);
/// The folder of the data directory where mirrored content goes, one folder per manifest id.
const MIRROR_DIR: &str = "mirror";

/// What the node does for the catalog work: the handle [`Catalogs`] reaches it through.
pub trait CatalogHost: Clone + Send + Sync + 'static {
    /// The transfer session with `peer`, opening (and dialing) if needed.
    fn session(
        &self,
        peer: PeerId,
    ) -> impl Future<Output = Result<Arc<Session>, SessionError>> + Send;
    /// A request to `peer` failed with `error` (its session is dropped; a protocol violation
    /// bans it).
    fn request_failed(&self, peer: PeerId, error: &SessionError)
    -> impl Future<Output = ()> + Send;
    /// Bans `peer` for `reason`.
    fn ban(&self, peer: PeerId, reason: &str) -> impl Future<Output = ()> + Send;
    /// Whether `peer` is banned.
    fn is_banned(&self, peer: &PeerId) -> bool;
    /// Whether the node is stopping (the poll loop ends).
    fn stopping(&self) -> bool;
    /// Stops announcing the held content (of `publisher`, or all of it) that the policy now
    /// refuses.
    fn stop_announcing_refused(
        &self,
        publisher: Option<PublicKey>,
    ) -> impl Future<Output = ()> + Send;
    /// The content of `publisher` this node downloaded, as the mirror sees it.
    fn downloaded(&self, publisher: &PublicKey) -> Vec<DownloadedContent>;
    /// Whether the node holds (or fetches) `id`.
    fn holds(&self, id: &ManifestId) -> bool;
    /// Stops serving and fetching `id` and forgets it (its files stay).
    fn forget(&self, id: ManifestId) -> impl Future<Output = Result<(), String>> + Send;
    /// Finds the manifest `id` (DHT providers, connected peers).
    fn find_manifest(
        &self,
        id: ManifestId,
    ) -> impl Future<Output = Result<VerifiedManifest, String>> + Send;
    /// Starts fetching `manifest` into `dir`, which is the node's own (what is there may be
    /// replaced).
    fn start_download(
        &self,
        manifest: VerifiedManifest,
        dir: PathBuf,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// One downloaded content item, as the mirror sees it.
#[derive(Clone, Debug)]
pub struct DownloadedContent {
    /// Its manifest.
    pub manifest: VerifiedManifest,
    /// Its folder.
    pub dir: PathBuf,
    /// Whether it is still being fetched.
    pub downloading: bool,
}

/// What the catalog work keeps between calls: the catalogs being fetched, where each mirror's
/// next sync goes on, how often to poll. The node keeps one for its life.
pub struct CatalogWork {
    /// Catalogs being fetched, by publisher and hash: one fetch each at a time.
    fetching: Mutex<HashSet<(PublicKey, CatalogHash)>>,
    /// Held while a mirror syncs (one at a time): where each publisher's next sync goes on in
    /// its catalog's list.
    mirror_cursors: tokio::sync::Mutex<HashMap<PublicKey, usize>>,
    /// How often catalogs are polled.
    poll: Duration,
    /// When the DHT was last asked for each publisher's head by a poll (`watch.rs`).
    dht_polled: Mutex<HashMap<PublicKey, std::time::Instant>>,
}

impl CatalogWork {
    /// Nothing under way; heads polled every `poll`.
    pub fn new(poll: Duration) -> CatalogWork {
        CatalogWork {
            fetching: Mutex::new(HashSet::new()),
            mirror_cursors: tokio::sync::Mutex::new(HashMap::new()),
            poll,
            dht_polled: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a poll should ask the DHT for `publisher`'s head although connected peers
    /// answered: [`watch::DHT_POLL_INTERVAL`] since it last did (or never). Says yes at most once
    /// per interval: the caller asks the DHT now.
    fn dht_poll_due(&self, publisher: PublicKey) -> bool {
        let now = std::time::Instant::now();
        let mut polled = self.dht_polled.lock().unwrap_or_else(|p| p.into_inner());
        let due = polled
            .get(&publisher)
            .is_none_or(|at| now.saturating_duration_since(*at) >= watch::DHT_POLL_INTERVAL);
        if due {
            polled.insert(publisher, now);
        }
        due
    }
}

/// The catalog counters of `/metrics`.
#[derive(Clone)]
struct CatalogMetrics {
    accepted: Family<ViaLabel, Counter>,
    refusals: Family<CatalogRefusalLabel, Counter>,
    fetched_bytes: Counter,
    parts_fetched: Counter,
}

impl CatalogMetrics {
    fn accepted(&self, origin: HeadOrigin) {
        self.accepted
            .get_or_create(&ViaLabel {
                via: origin.via().to_owned(),
            })
            .inc();
    }

    fn refused(&self, reason: &str) {
        debug_assert!(
            crate::metrics::CATALOG_REFUSAL_REASONS.contains(&reason),
            "catalog refusal reason {reason:?} is not in CATALOG_REFUSAL_REASONS"
        );
        self.refusals
            .get_or_create(&CatalogRefusalLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// Why a head or catalog was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The policy state refuses it: forged, not the head's bytes, or refused by the catalog
    /// rules (untrusted, expired, rollback, equal sequence with other bytes).
    #[error(transparent)]
    Refused(#[from] CatalogRefused),
    /// No peer had the catalog.
    #[error("{0}")]
    Unavailable(String),
    /// The catalog is in force but could not be saved (the database is closed); it is saved
    /// once the database reopens.
    #[error(
        "the catalog of publisher {publisher} is in force on this node but not saved: {problem}; \
         the node saves it by itself once the database reopens"
    )]
    Unsaved {
        /// Its publisher.
        publisher: PublicKey,
        /// Why the database is closed.
        problem: String,
    },
    /// The publisher's trust was removed, and this is not saved (the database is closed); it
    /// is saved once the database reopens.
    #[error(
        "publisher {publisher} is no longer trusted on this node, but this is not saved: {problem}; \
         the node saves it by itself once the database reopens"
    )]
    DistrustUnsaved {
        /// The publisher.
        publisher: PublicKey,
        /// Why the database is closed.
        problem: String,
    },
    /// The publisher is not trusted (`trust rm`).
    #[error("publisher {0} is not trusted")]
    NotTrusted(PublicKey),
    /// The publisher stopped being trusted while its catalog was published.
    #[error("publisher {0} is no longer trusted")]
    NoLongerTrusted(PublicKey),
    /// The node failed (database).
    #[error("{0}")]
    Internal(String),
}

impl CatalogError {
    /// The metrics label of a refusal.
    fn label(&self) -> &'static str {
        match self {
            CatalogError::Refused(refused) => refused.label(),
            CatalogError::Unavailable(_) => "unavailable",
            CatalogError::Unsaved { .. }
            | CatalogError::DistrustUnsaved { .. }
            | CatalogError::NotTrusted(_)
            | CatalogError::NoLongerTrusted(_)
            | CatalogError::Internal(_) => "internal",
        }
    }
}

/// How a head reached the node (decides whether the node gossips it on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadOrigin {
    /// `catalog publish` on this node.
    Api,
    /// Gossip: gossipsub forwards it itself.
    Gossip,
    /// The DHT or a peer's direct answer, in a poll.
    Poll,
}

impl HeadOrigin {
    /// How `/metrics` and the log name it (one of [`crate::metrics::CATALOG_ACCEPTED_VIA`]).
    pub fn via(self) -> &'static str {
        match self {
            HeadOrigin::Api => "publish",
            HeadOrigin::Gossip => "gossip",
            HeadOrigin::Poll => "poll",
        }
    }
}

/// What [`Catalogs::consider_head`] did.
#[derive(Debug)]
pub enum HeadOutcome {
    /// The catalog is the publisher's newest now.
    Accepted,
    /// It is the catalog already held.
    AlreadyHeld,
    /// The same catalog is being fetched already (for another head message or poll).
    BeingFetched,
}

/// The catalog work's context (module docs). Cheap to clone.
#[derive(Clone)]
pub struct Catalogs<H> {
    network: Network,
    store: Arc<Store>,
    policy: Arc<PolicyState>,
    metrics: CatalogMetrics,
    work: Arc<CatalogWork>,
    /// Where mirrored content goes.
    mirror_root: PathBuf,
    /// Where received delivery reports are kept, when the node collects them.
    deliveries: Option<Deliveries>,
    host: H,
}

impl<H: CatalogHost> Catalogs<H> {
    /// The context of the catalog work of a node whose data directory is `data_dir`.
    pub fn new(
        network: Network,
        store: Arc<Store>,
        policy: Arc<PolicyState>,
        metrics: &Metrics,
        work: Arc<CatalogWork>,
        data_dir: &std::path::Path,
        host: H,
    ) -> Catalogs<H> {
        Catalogs {
            network,
            store,
            policy,
            metrics: CatalogMetrics {
                accepted: metrics.catalogs_accepted.clone(),
                refusals: metrics.catalog_refusals.clone(),
                fetched_bytes: metrics.catalog_fetched_bytes.clone(),
                parts_fetched: metrics.catalog_parts_fetched.clone(),
            },
            work,
            mirror_root: data_dir.join(MIRROR_DIR),
            deliveries: None,
            host,
        }
    }

    /// Keeps the delivery reports received in `deliveries`, when it collects them.
    pub fn with_deliveries(mut self, deliveries: Deliveries) -> Catalogs<H> {
        self.deliveries = Some(deliveries);
        self
    }

    /// Whether this node keeps partners' delivery reports.
    fn collects_deliveries(&self) -> bool {
        self.deliveries.as_ref().is_some_and(Deliveries::collects)
    }

    /// Whether this node joins `publisher`'s delivery report topic: it keeps reports, or signs
    /// them for that publisher (so that its topic mesh finds the collectors, whom it may not be
    /// connected to under the connection bound).
    fn joins_deliveries(&self, publisher: &PublicKey) -> bool {
        self.deliveries
            .as_ref()
            .is_some_and(|d| d.collects() || d.reports_for(publisher))
    }

    /// Sets up catalogs at start: joins the gossip topic of every trusted publisher, passes on
    /// the heads it holds, and starts the gossip handler and the poll loop.
    pub async fn start(&self, events: mpsc::Receiver<NetworkEvent>) {
        for publisher in &self.policy.trusted_publishers() {
            self.join_topics(publisher).await;
        }
        for catalog in self.policy.held_catalogs() {
            self.pass_on(catalog.head(), HeadOrigin::Poll).await;
        }
        let catalogs = self.clone();
        tokio::spawn(async move { catalogs.handle_gossip(events).await });
        let catalogs = self.clone();
        tokio::spawn(async move { catalogs.poll_loop().await });
    }

    /// Joins `publisher`'s catalog topic, and its delivery report topic when collecting.
    async fn join_topics(&self, publisher: &PublicKey) {
        let _ = self.network.subscribe_catalog(publisher).await;
        if self.joins_deliveries(publisher) {
            let _ = self.network.subscribe_deliveries(publisher).await;
        }
    }

    /// A publisher was trusted: joins its gossip topic and looks for its catalog now rather
    /// than at the next poll (and mirrors it, if asked to).
    pub async fn follow(&self, publisher: PublicKey) {
        self.join_topics(&publisher).await;
        let catalogs = self.clone();
        tokio::spawn(async move {
            catalogs.poll_publisher(publisher).await;
            catalogs.mirror_sync(publisher).await;
        });
    }

    /// A publisher is no longer trusted: leaves its gossip topics.
    pub async fn unfollow(&self, publisher: PublicKey) {
        let _ = self
            .network
            .unsubscribe(net::catalog_topic(&publisher))
            .await;
        if self.collects_deliveries() {
            let _ = self
                .network
                .unsubscribe(net::deliveries_topic(&publisher))
                .await;
        }
    }

    /// `catalog publish`: takes a catalog and its head from the operator.
    pub async fn publish(&self, catalog: &[u8], head: &[u8]) -> Result<CatalogInfo, CatalogError> {
        let offer = CatalogOffer::from_bytes(head, catalog)?;
        let publisher = offer.publisher();
        let updating = self.policy.updating().await;
        let outcome = self
            .accept(&updating, offer, HeadOrigin::Api)
            .await
            .inspect_err(|failure| self.metrics.refused(failure.label()))?;
        info!(%publisher, ?outcome, "catalog published");
        if self.policy.is_unsaved(&publisher) {
            // In force, but the operator must know it is not saved (see `saving.rs`).
            return Err(CatalogError::Unsaved {
                publisher,
                problem: self
                    .store
                    .health()
                    .problem()
                    .unwrap_or_else(|| "the node database is closed".to_owned()),
            });
        }
        self.policy
            .catalog_info(&publisher)
            .ok_or(CatalogError::NoLongerTrusted(publisher))
    }

    /// Considers a head from a peer or the DHT: if it is newer than the catalog held, fetches
    /// that catalog (from `hint` first) and accepts it.
    pub async fn consider_head(
        &self,
        head: VerifiedCatalogHead,
        hint: Option<PeerId>,
        origin: HeadOrigin,
    ) -> Result<HeadOutcome, CatalogError> {
        if !self.policy.admits(&head, self.policy.judged_now())? {
            return Ok(HeadOutcome::AlreadyHeld);
        }
        // One fetch per catalog at a time, and outside the update lock: a slow or hostile
        // source delays only this catalog, never other publishers' updates or `publish`.
        let wanted = (head.head().publisher, head.head().catalog_hash);
        let Some(_fetching) = fetching::FetchClaim::claim(&self.work.fetching, wanted) else {
            return Ok(HeadOutcome::BeingFetched);
        };
        let offer =
            tokio::time::timeout(CATALOG_TOTAL_FETCH_TIMEOUT, self.fetch_catalog(&head, hint))
                .await
                .unwrap_or_else(|_| {
                    Err(CatalogError::Unavailable(format!(
                        "catalog {} of {} not fetched within {CATALOG_TOTAL_FETCH_TIMEOUT:?}",
                        head.head().sequence,
                        head.head().publisher
                    )))
                })?;
        let updating = self.policy.updating().await;
        self.accept(&updating, offer, origin).await
    }

    /// Steps 4 and 5 of the module docs, for an offer under the update lock.
    async fn accept(
        &self,
        updating: &Updating<'_>,
        offer: CatalogOffer,
        origin: HeadOrigin,
    ) -> Result<HeadOutcome, CatalogError> {
        let publisher = offer.publisher();
        let head = offer.head().clone();
        // What waited for a closed database is saved first (`saving.rs`).
        self.save_unsaved(updating).await;
        // One clock reading for the check and the accept below, so the two cannot disagree
        // about an expiry that falls between them (under the update lock, which trust changes
        // take too).
        let now = self.policy.judged_now();
        if !self.policy.admits(&head, now)? {
            return Ok(HeadOutcome::AlreadyHeld);
        }
        // Saved, or (database closed) kept to save later and applied all the same.
        self.save(updating, &offer.held()).await?;
        let previous = match self.policy.accept(updating, offer, now)? {
            CatalogOutcome::Accepted { previous } => previous,
            CatalogOutcome::AlreadyHeld => return Ok(HeadOutcome::AlreadyHeld),
        };
        self.metrics.accepted(origin);
        info!(
            %publisher,
            sequence = head.head().sequence,
            ?previous,
            via = origin.via(),
            "catalog accepted"
        );
        let issued_at = self.policy.newest_issued_at(&publisher);
        if let Some(behind) = licet_proto::policy::clock_behind_floor(Timestamp::now(), issued_at) {
            warn!(
                %publisher,
                "catalog issued {behind} s ahead of this node's clock: the clock is behind; \
                 licence windows are judged by the catalog's issue time instead"
            );
        }
        self.host.stop_announcing_refused(Some(publisher)).await;
        self.pass_on(&head, origin).await;
        if self.policy.is_mirrored(&publisher) {
            let catalogs = self.clone();
            tokio::spawn(async move { catalogs.mirror_sync(publisher).await });
        }
        Ok(HeadOutcome::Accepted)
    }

    /// Step 5: the DHT record, the provider record, and gossip.
    async fn pass_on(&self, head: &VerifiedCatalogHead, origin: HeadOrigin) {
        let publisher = head.head().publisher;
        let key = catalog_head_key(&publisher).0;
        let _ = self
            .network
            .put_record(key, head.envelope_bytes().to_vec())
            .await;
        let _ = self.network.start_providing(key).await;
        if origin != HeadOrigin::Gossip {
            let _ = self
                .network
                .publish(
                    net::catalog_topic(&publisher),
                    head.envelope_bytes().to_vec(),
                )
                .await;
        }
    }
}
