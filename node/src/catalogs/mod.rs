//! Catalogs on the network: how a node learns, checks, keeps, applies and passes on each
//! trusted publisher's newest catalog, and mirrors the publishers it was asked to mirror.
//!
//! A head reaches the node in one of four ways, and every one goes through [`Node::consider_head`]:
//! - `catalog publish` on this node (the API), with the catalog itself;
//! - gossip on the publisher's topic (`net::catalog_topic`), pushed the moment it is
//!   published;
//! - the DHT record under the publisher's catalog head key, polled every `catalog_poll`;
//! - a direct `CatalogHead` request to connected peers, in the same poll.
//!
//! What happens to a head, in order:
//! 1. its signature is checked: it must be signed by its publisher's own key;
//! 2. [`CatalogSet::head_is_newer`]: the publisher is trusted, the catalog is not expired, and
//!    its sequence is above the accepted one (equal: the same catalog, a no-op). A rollback or
//!    a different catalog with the same sequence is refused and counted in the metrics;
//! 3. the catalog is fetched from peers part by part (the peer the head came from first, then
//!    connected peers, then the providers of the head key, which anyone can announce); its
//!    bytes must hash to the head's `catalog_hash` before they are decoded (mix-and-match
//!    defence) — a peer that sends other bytes is banned;
//! 4. the catalog and its head are written to the store in one transaction, *then* applied to
//!    the in-memory policy state; since serving asks the policy on every request, revocations
//!    and delegate revocations bite on the next chunk, and the persisted sequence means a
//!    restart cannot roll them back. If the database is closed after an I/O error (a full
//!    disk), the catalog is applied all the same and saved once the database reopens
//!    (`health.rs`): a takedown never waits for a disk. Its `issued_at` raises the node's time
//!    floor ([`licet_proto::policy::judged_now`]), which every window check here uses;
//! 5. the node passes it on: it puts the head in the DHT, provides the head key (so others can
//!    fetch the catalog from it), gossips the head unless it came by gossip (gossipsub forwards
//!    those itself once the node accepts the message), stops announcing revoked manifests, and
//!    for a mirrored publisher fetches what is listed and drops what is withdrawn.
//!
//! Invariants:
//! - a catalog (at most the wire limit of a catalog envelope) is fetched once at a time
//!   (`fetching_catalogs`), within [`CATALOG_TOTAL_FETCH_TIMEOUT`], and outside
//!   `catalog_updates`, so a slow source holds up only that catalog;
//! - accepting (check, store, apply) runs under `catalog_updates`, which trust changes take too,
//!   with one clock reading, so the store and the in-memory state never disagree;
//! - the node serves catalog parts only of the catalog it accepted, and only by its hash;
//! - gossip messages are reported to gossipsub as accepted only if they are a valid head of
//!   the topic's publisher that is newer than what the node holds, so stale or forged heads are
//!   not forwarded (a forgery also costs its sender gossipsub score).

use std::{collections::HashSet, path::PathBuf, sync::atomic::Ordering, time::Duration};

use libp2p::{PeerId, gossipsub::MessageAcceptance};
use licet_proto::{
    CatalogHash, ManifestId, PublicKey, Timestamp,
    catalog::{VerifiedCatalogHead, catalog_head_key},
    manifest::VerifiedManifest,
    policy::{Refusal, RefusalReason, Territory},
    wire::{CATALOG_PART_BYTES, Request, Response},
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::{
    contract::{ApiError, ApiErrorKind, CatalogInfo},
    fetch,
    net::{self, NetworkEvent},
    node::{Node, blocking, internal, refuse},
    policy_state::{CatalogOffer, CatalogOutcome, CatalogRefused, Updating},
    store::{ContentOrigin, RecordState},
};

/// Most peers asked for their head of one publisher in a poll.
const MAX_POLL_PEERS: usize = 8;
/// Most peers tried for one catalog.
const MAX_CATALOG_SOURCES: usize = 8;
/// The first poll runs this long after start (time to connect to bootstrap peers).
const FIRST_POLL_DELAY: Duration = Duration::from_secs(2);
/// Most mirror downloads running at once, per mirrored publisher.
const MIRROR_DOWNLOADS_AT_ONCE: usize = 8;
/// Most listed manifests a mirror looks up in one sync (each is a DHT lookup); the next sync
/// goes on from where this one stopped, so a large catalog is covered in turn.
const MIRROR_LOOKUPS_PER_SYNC: usize = 32;
/// Longest one peer may take to send a whole catalog.
const CATALOG_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a catalog may take to fetch, all its sources together.
const CATALOG_TOTAL_FETCH_TIMEOUT: Duration = Duration::from_secs(180);
/// The folder of the data directory where mirrored content goes, one folder per manifest id.
const MIRROR_DIR: &str = "mirror";

/// How a head reached the node (decides whether the node gossips it on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadOrigin {
    /// `catalog publish` on this node.
    Api,
    /// Gossip: gossipsub forwards it itself.
    Gossip,
    /// The DHT or a peer's direct answer, in a poll.
    Poll,
}

/// What [`Node::consider_head`] did.
#[derive(Debug)]
pub(crate) enum HeadOutcome {
    /// The catalog is the publisher's newest now.
    Accepted,
    /// It is the catalog already held.
    AlreadyHeld,
    /// The same catalog is being fetched already (for another head message or poll).
    BeingFetched,
}

/// A catalog envelope put together from one peer's `CatalogPart` answers, asked for in order.
///
/// Each answer must be the part asked for (at [`CatalogParts::next_offset`]), of the same
/// `total_len` as the first, and move on (`len > 0`) unless the envelope is whole. Every part
/// reaches it through `wire::decode_response`, which bounds `total_len` by the catalog envelope
/// limit and `offset + len` by `total_len`: the envelope never grows past that limit.
#[derive(Debug, Default)]
pub struct CatalogParts {
    envelope: Vec<u8>,
    total: Option<u64>,
}

impl CatalogParts {
    /// The offset to ask for next: the bytes held so far.
    pub fn next_offset(&self) -> u64 {
        self.envelope.len() as u64
    }

    /// Takes one answer's part (`payload` is its `len` bytes). `Ok(true)` once the envelope is
    /// whole; `Err` with the reason to ban the peer for if the part is not the one asked for.
    pub fn add(
        &mut self,
        total_len: u64,
        part_offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<bool, String> {
        let offset = self.next_offset();
        let consistent = part_offset == offset
            && self.total.is_none_or(|t| t == total_len)
            && (len > 0 || offset == total_len);
        if !consistent {
            return Err(format!(
                "catalog part at {part_offset} of {total_len} bytes when {offset} was asked"
            ));
        }
        self.total = Some(total_len);
        self.envelope.extend_from_slice(payload);
        Ok(self.envelope.len() as u64 >= total_len)
    }

    /// The envelope's bytes (whole once [`CatalogParts::add`] said so).
    pub fn into_envelope(self) -> Vec<u8> {
        self.envelope
    }
}

/// A catalog being fetched, in `Inner::fetching_catalogs` while this lives.
struct FetchClaim<'a> {
    set: &'a std::sync::Mutex<HashSet<(PublicKey, CatalogHash)>>,
    wanted: (PublicKey, CatalogHash),
}

impl<'a> FetchClaim<'a> {
    /// Claims `wanted`, unless it is being fetched already.
    fn claim(
        set: &'a std::sync::Mutex<HashSet<(PublicKey, CatalogHash)>>,
        wanted: (PublicKey, CatalogHash),
    ) -> Option<FetchClaim<'a>> {
        // The guard must be gone before a claim can exist: dropping a claim takes the lock.
        let claimed = set.lock().unwrap_or_else(|p| p.into_inner()).insert(wanted);
        claimed.then(|| FetchClaim { set, wanted })
    }
}

impl Drop for FetchClaim<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.wanted);
    }
}

/// Why a head or catalog was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogFailure {
    /// The policy state refuses it: forged, not the head's bytes, or refused by the catalog
    /// rules (untrusted, expired, rollback, equal sequence with other bytes).
    #[error(transparent)]
    Refused(#[from] CatalogRefused),
    /// No peer had the catalog.
    #[error("{0}")]
    Unavailable(String),
    /// The node failed (database).
    #[error("{0}")]
    Internal(String),
}

impl CatalogFailure {
    /// The metrics label of a refusal.
    fn label(&self) -> &'static str {
        match self {
            CatalogFailure::Refused(refused) => refused.label(),
            CatalogFailure::Unavailable(_) => "unavailable",
            CatalogFailure::Internal(_) => "internal",
        }
    }

    fn into_api_error(self) -> ApiError {
        let kind = match &self {
            CatalogFailure::Refused(CatalogRefused::Rules(_)) => ApiErrorKind::Refused,
            CatalogFailure::Refused(_) => ApiErrorKind::BadRequest,
            CatalogFailure::Unavailable(_) => ApiErrorKind::Unavailable,
            CatalogFailure::Internal(_) => ApiErrorKind::Internal,
        };
        ApiError::new(kind, self.to_string())
    }
}

impl Node {
    /// Sets up catalogs at start: joins the gossip topic of every trusted publisher, passes on
    /// the heads it holds, and starts the gossip handler and the poll loop.
    pub(crate) async fn start_catalogs(&self, events: mpsc::Receiver<NetworkEvent>) {
        let publishers: Vec<PublicKey> = self.inner.policy.trusted_publishers();
        for publisher in &publishers {
            let _ = self
                .inner
                .network
                .subscribe(net::catalog_topic(publisher))
                .await;
        }
        for catalog in self.inner.policy.held_catalogs() {
            self.pass_on(catalog.head(), HeadOrigin::Poll).await;
        }
        let node = self.clone();
        tokio::spawn(async move { node.handle_gossip(events).await });
        let node = self.clone();
        tokio::spawn(async move { node.poll_loop().await });
    }

    /// `catalog publish`: takes a catalog and its head from the operator.
    pub(crate) async fn publish_catalog(
        &self,
        catalog: Vec<u8>,
        head: Vec<u8>,
    ) -> Result<CatalogInfo, ApiError> {
        let offer = CatalogOffer::from_bytes(&head, &catalog)
            .map_err(|refused| CatalogFailure::from(refused).into_api_error())?;
        let publisher = offer.publisher();
        let updating = self.inner.policy.updating().await;
        let outcome = self
            .accept_catalog(&updating, offer, HeadOrigin::Api)
            .await
            .map_err(|failure| {
                self.count_refused_head(&failure);
                failure.into_api_error()
            })?;
        info!(%publisher, ?outcome, "catalog published");
        if self.inner.policy.is_unsaved(&publisher) {
            // In force, but the operator must know it is not saved (see `health.rs`).
            return Err(internal(format!(
                "the catalog of publisher {publisher} is in force on this node but not saved: {}; \
                 the node saves it by itself once the database reopens",
                self.inner
                    .store
                    .health()
                    .problem()
                    .unwrap_or_else(|| "the node database is closed".to_owned())
            )));
        }
        self.inner
            .policy
            .catalog_info(&publisher)
            .ok_or_else(|| internal(format!("publisher {publisher} is no longer trusted")))
    }

    /// Considers a head from a peer or the DHT: if it is newer than the catalog held, fetches
    /// that catalog (from `hint` first) and accepts it.
    pub(crate) async fn consider_head(
        &self,
        head: VerifiedCatalogHead,
        hint: Option<PeerId>,
        origin: HeadOrigin,
    ) -> Result<HeadOutcome, CatalogFailure> {
        if !self.inner.policy.admits(&head, self.judged_now())? {
            return Ok(HeadOutcome::AlreadyHeld);
        }
        // One fetch per catalog at a time, and outside `catalog_updates`: a slow or hostile
        // source delays only this catalog, never other publishers' updates or `publish`.
        let wanted = (head.head().publisher, head.head().catalog_hash);
        let Some(_fetching) = FetchClaim::claim(&self.inner.fetching_catalogs, wanted) else {
            return Ok(HeadOutcome::BeingFetched);
        };
        let offer =
            tokio::time::timeout(CATALOG_TOTAL_FETCH_TIMEOUT, self.fetch_catalog(&head, hint))
                .await
                .unwrap_or_else(|_| {
                    Err(CatalogFailure::Unavailable(format!(
                        "catalog {} of {} not fetched within {CATALOG_TOTAL_FETCH_TIMEOUT:?}",
                        head.head().sequence,
                        head.head().publisher
                    )))
                })?;
        let updating = self.inner.policy.updating().await;
        self.accept_catalog(&updating, offer, origin).await
    }

    /// Steps 4 and 5 of the module docs, for an offer under the update lock.
    async fn accept_catalog(
        &self,
        updating: &Updating<'_>,
        offer: CatalogOffer,
        origin: HeadOrigin,
    ) -> Result<HeadOutcome, CatalogFailure> {
        let publisher = offer.publisher();
        let head = offer.head().clone();
        // What waited for a closed database is saved first (`health.rs`).
        self.save_unsaved_catalogs(updating).await;
        // One clock reading for the check and the accept below, so the two cannot disagree
        // about an expiry that falls between them (under the update lock, which trust changes
        // take too).
        let now = self.judged_now();
        if !self.inner.policy.admits(&head, now)? {
            return Ok(HeadOutcome::AlreadyHeld);
        }
        // Saved, or (database closed) kept to save later and applied all the same.
        self.save_catalog(updating, &offer.held()).await?;
        let previous = match self.inner.policy.accept(updating, offer, now)? {
            CatalogOutcome::Accepted { previous } => previous,
            CatalogOutcome::AlreadyHeld => return Ok(HeadOutcome::AlreadyHeld),
        };
        self.inner.metrics.catalogs_accepted.inc();
        info!(
            %publisher,
            sequence = head.head().sequence,
            ?previous,
            "catalog accepted"
        );
        let issued_at = self.inner.policy.newest_issued_at(&publisher);
        if let Some(behind) = licet_proto::policy::clock_behind_floor(Timestamp::now(), issued_at) {
            warn!(
                %publisher,
                "catalog issued {behind} s ahead of this node's clock: the clock is behind; \
                 licence windows are judged by the catalog's issue time instead"
            );
        }
        self.stop_announcing_refused(Some(&publisher)).await;
        self.pass_on(&head, origin).await;
        if self.inner.policy.is_mirrored(&publisher) {
            let node = self.clone();
            tokio::spawn(async move { node.mirror_sync(publisher).await });
        }
        Ok(HeadOutcome::Accepted)
    }

    /// Stops announcing the held content (of `publisher`, or of everyone) that the policy now
    /// refuses: withdrawn by a catalog, not listed under `require_catalog`, out of its licence
    /// window, or of a publisher no longer trusted.
    pub(crate) async fn stop_announcing_refused(&self, publisher: Option<&PublicKey>) {
        let items: Vec<_> = self
            .lock_items()
            .values()
            .filter(|item| publisher.is_none_or(|p| item.manifest.manifest().publisher == *p))
            .cloned()
            .collect();
        for item in items {
            if let Err(refusal) = self.policy_check(&item.manifest, Territory::Holder) {
                // The periodic sweep meets the same refused items every time: not worth a line.
                if publisher.is_some() {
                    info!(id = %item.id(), "no longer served: {refusal}");
                }
                let _ = self.inner.network.stop_providing(item.id().0).await;
            }
        }
    }

    /// The refusal of `manifest` if its publisher's catalog withdrew it (revoked it, or the
    /// delegate that signed it).
    fn withdrawal(&self, manifest: &VerifiedManifest) -> Option<Refusal> {
        self.policy_check(manifest, Territory::Holder)
            .err()
            .filter(|refusal| {
                matches!(
                    refusal.reason,
                    RefusalReason::Revoked | RefusalReason::DelegateRevoked
                )
            })
    }

    /// Step 5: the DHT record, the provider record, and gossip.
    async fn pass_on(&self, head: &VerifiedCatalogHead, origin: HeadOrigin) {
        let publisher = head.head().publisher;
        let key = catalog_head_key(&publisher).0;
        let network = &self.inner.network;
        let _ = network
            .put_record(key, head.envelope_bytes().to_vec())
            .await;
        let _ = network.start_providing(key).await;
        if origin != HeadOrigin::Gossip {
            let _ = network
                .publish(
                    net::catalog_topic(&publisher),
                    head.envelope_bytes().to_vec(),
                )
                .await;
        }
    }

    /// Step 3: fetches the catalog `head` names from peers, `hint` first.
    async fn fetch_catalog(
        &self,
        head: &VerifiedCatalogHead,
        hint: Option<PeerId>,
    ) -> Result<CatalogOffer, CatalogFailure> {
        let h = head.head();
        let local = self.inner.network.local_peer_id();
        let providers = self
            .inner
            .network
            .providers(catalog_head_key(&h.publisher).0)
            .await
            .unwrap_or_default();
        let connected = self.inner.network.connected().await.unwrap_or_default();
        let mut seen = HashSet::new();
        // The peer the head came from, then connected peers, then providers (which anyone can
        // announce, so they come last).
        let candidates: Vec<PeerId> = hint
            .into_iter()
            .chain(connected.into_iter().map(|(peer, _)| peer))
            .chain(providers)
            .filter(|peer| *peer != local && !self.is_banned(peer) && seen.insert(*peer))
            .take(MAX_CATALOG_SOURCES)
            .collect();
        let mut problems = Vec::new();
        for peer in candidates {
            let fetched =
                tokio::time::timeout(CATALOG_FETCH_TIMEOUT, self.fetch_catalog_from(peer, head))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "did not send the catalog within {CATALOG_FETCH_TIMEOUT:?}"
                        ))
                    });
            match fetched {
                Ok(catalog) => return Ok(catalog),
                Err(problem) => {
                    debug!(%peer, "catalog {} of {} not fetched: {problem}", h.sequence, h.publisher);
                    problems.push(format!("{peer}: {problem}"));
                }
            }
        }
        Err(CatalogFailure::Unavailable(format!(
            "no peer sent catalog {} of {}{}",
            h.sequence,
            h.publisher,
            if problems.is_empty() {
                " (no peer to ask)".to_owned()
            } else {
                format!(" ({})", problems.join("; "))
            }
        )))
    }

    /// Fetches the catalog `head` names from `peer`, part by part, and checks it. A peer that
    /// breaks the protocol or sends bytes that are not the named catalog is banned.
    async fn fetch_catalog_from(
        &self,
        peer: PeerId,
        head: &VerifiedCatalogHead,
    ) -> Result<CatalogOffer, String> {
        let h = head.head();
        let session = self.session(peer).await.map_err(|e| e.to_string())?;
        let mut parts = CatalogParts::default();
        loop {
            let offset = parts.next_offset();
            let reply = match session
                .request(Request::CatalogPart {
                    publisher: h.publisher,
                    catalog_hash: h.catalog_hash,
                    offset,
                })
                .await
            {
                Ok(reply) => reply,
                Err(e) => {
                    self.request_failed(peer, &e).await;
                    return Err(e.to_string());
                }
            };
            match reply.response {
                Response::CatalogPart {
                    total_len,
                    offset: part_offset,
                    len,
                } => match parts.add(total_len, part_offset, len, reply.payload()) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(reason) => {
                        self.ban(peer, &reason).await;
                        return Err(reason);
                    }
                },
                Response::Refused { reason, detail } => {
                    return Err(format!("refused: {}: {detail}", reason.describe()));
                }
                Response::Busy { .. } => return Err("busy".to_owned()),
                other => {
                    let reason = format!("answered a catalog request with {other:?}");
                    self.ban(peer, &reason).await;
                    return Err(reason);
                }
            }
        }
        match CatalogOffer::for_head(head.clone(), &parts.into_envelope()) {
            Ok(offer) => Ok(offer),
            Err(refused @ CatalogRefused::Mismatch { .. }) => {
                let reason = refused.to_string();
                self.inner.metrics.catalog_refused(refused.label());
                self.ban(peer, &reason).await;
                Err(reason)
            }
            Err(refused) => Err(refused.to_string()),
        }
    }

    /// Answers `CatalogHead` and `CatalogPart` requests from the catalogs this node accepted.
    pub(crate) fn serve_catalog(&self, request: &Request, payload: &mut Vec<u8>) -> Response {
        match *request {
            Request::CatalogHead { publisher } => {
                match self.inner.policy.held_catalog(&publisher) {
                    Some(held) => Response::CatalogHead {
                        envelope: held.head().envelope_bytes().to_vec(),
                    },
                    None => refuse(
                        RefusalReason::NotHeld,
                        format!("no catalog of publisher {publisher} is held here"),
                    ),
                }
            }
            Request::CatalogPart {
                publisher,
                catalog_hash,
                offset,
            } => {
                let Some(held) = self.inner.policy.held_catalog(&publisher) else {
                    return refuse(
                        RefusalReason::NotHeld,
                        format!("no catalog of publisher {publisher} is held here"),
                    );
                };
                if held.head().head().catalog_hash != catalog_hash {
                    return refuse(
                        RefusalReason::NotHeld,
                        format!(
                            "catalog {catalog_hash} of {publisher} is not held here (the newest held is {})",
                            held.head().head().sequence
                        ),
                    );
                }
                let total = held.envelope().len() as u64;
                if offset % u64::from(CATALOG_PART_BYTES) != 0 || offset > total {
                    return refuse(
                        RefusalReason::BadRequest,
                        format!(
                            "catalog offset {offset} is not a part boundary within {total} bytes"
                        ),
                    );
                }
                let end = total.min(offset + u64::from(CATALOG_PART_BYTES));
                payload.clear();
                payload.extend_from_slice(&held.envelope()[offset as usize..end as usize]);
                Response::CatalogPart {
                    total_len: total,
                    offset,
                    len: (end - offset) as u32,
                }
            }
            _ => refuse(RefusalReason::BadRequest, "not a catalog request"),
        }
    }

    /// Takes gossip messages from the network until it stops.
    async fn handle_gossip(&self, mut events: mpsc::Receiver<NetworkEvent>) {
        while let Some(event) = events.recv().await {
            let NetworkEvent::CatalogHead {
                topic,
                data,
                source,
                message_id,
            } = event;
            let (acceptance, newer) = self.judge_gossip(&topic, &data);
            let _ = self
                .inner
                .network
                .report_gossip(message_id, source, acceptance)
                .await;
            if let Some(head) = newer {
                let node = self.clone();
                tokio::spawn(async move {
                    if let Err(failure) = node
                        .consider_head(head, Some(source), HeadOrigin::Gossip)
                        .await
                    {
                        node.count_refused_head(&failure);
                        debug!(%source, "gossiped catalog head not taken: {failure}");
                    }
                });
            }
        }
    }

    /// What gossipsub should do with a message, and the head to follow if it is newer.
    fn judge_gossip(
        &self,
        topic: &str,
        data: &[u8],
    ) -> (MessageAcceptance, Option<VerifiedCatalogHead>) {
        let head = match VerifiedCatalogHead::from_bytes(data) {
            Ok(head) => head,
            Err(e) => {
                self.inner.metrics.catalog_refused("invalid");
                debug!(%topic, "gossip message is not a valid catalog head: {e}");
                return (MessageAcceptance::Reject, None);
            }
        };
        if net::catalog_topic(&head.head().publisher).hash().as_str() != topic {
            self.inner.metrics.catalog_refused("invalid");
            return (MessageAcceptance::Reject, None);
        }
        match self.inner.policy.admits(&head, self.judged_now()) {
            Ok(true) => (MessageAcceptance::Accept, Some(head)),
            Ok(false) => (MessageAcceptance::Ignore, None),
            Err(failure) => {
                self.inner.metrics.catalog_refused(failure.label());
                debug!(%topic, "gossiped catalog head refused: {failure}");
                (MessageAcceptance::Ignore, None)
            }
        }
    }

    fn count_refused_head(&self, failure: &CatalogFailure) {
        self.inner.metrics.catalog_refused(failure.label());
    }

    /// Polls the DHT and connected peers for every trusted publisher's head, every
    /// `catalog_poll`, and keeps mirrors in step.
    async fn poll_loop(&self) {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + FIRST_POLL_DELAY,
            self.inner.catalog_poll,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.inner.stopping.load(Ordering::Relaxed) {
                return;
            }
            for publisher in self.inner.policy.trusted_publishers() {
                self.poll_publisher(publisher).await;
                if self.inner.policy.is_mirrored(&publisher) {
                    let node = self.clone();
                    tokio::spawn(async move { node.mirror_sync(publisher).await });
                }
            }
            // Licence windows end and catalogs expire with no event: swept here.
            self.stop_announcing_refused(None).await;
        }
    }

    /// Looks for a newer head of `publisher` in the DHT and at connected peers, and follows the
    /// highest one.
    pub(crate) async fn poll_publisher(&self, publisher: PublicKey) {
        let mut offered: Vec<(VerifiedCatalogHead, Option<PeerId>)> = Vec::new();
        let key = catalog_head_key(&publisher).0;
        for value in self
            .inner
            .network
            .get_records(key)
            .await
            .unwrap_or_default()
        {
            if let Ok(head) = VerifiedCatalogHead::from_bytes(&value)
                && head.head().publisher == publisher
            {
                offered.push((head, None));
            }
        }
        let connected = self.inner.network.connected().await.unwrap_or_default();
        let askable = connected
            .into_iter()
            .map(|(peer, _)| peer)
            .filter(|peer| !self.is_banned(peer))
            .take(MAX_POLL_PEERS);
        for peer in askable {
            let Ok(session) = self.session(peer).await else {
                continue;
            };
            match session.request(Request::CatalogHead { publisher }).await {
                Ok(reply) => {
                    if let Response::CatalogHead { envelope } = reply.response
                        && let Ok(head) = VerifiedCatalogHead::from_bytes(&envelope)
                        && head.head().publisher == publisher
                    {
                        offered.push((head, Some(peer)));
                    }
                }
                Err(e) => {
                    debug!(%peer, "catalog head request failed: {e}");
                    self.request_failed(peer, &e).await;
                }
            }
        }
        // Every offer is judged against the catalog held now (each one the catalog rules
        // refuse, such as a rollback from a peer or the DHT, is counted); then the highest newer
        // one that can be fetched is followed.
        let now = self.judged_now();
        let mut newer = Vec::new();
        for (head, peer) in offered {
            match self.inner.policy.admits(&head, now) {
                Ok(true) => newer.push((head, peer)),
                Ok(false) => {}
                Err(failure) => {
                    self.inner.metrics.catalog_refused(failure.label());
                    debug!(%publisher, ?peer, "polled catalog head refused: {failure}");
                }
            }
        }
        newer.sort_by_key(|(head, _)| std::cmp::Reverse(head.head().sequence));
        for (head, peer) in newer {
            match self.consider_head(head, peer, HeadOrigin::Poll).await {
                Ok(_) => return,
                Err(failure) => {
                    self.count_refused_head(&failure);
                    debug!(%publisher, "polled catalog head not taken: {failure}");
                }
            }
        }
    }

    /// The folder a mirrored manifest's content goes in.
    fn mirror_dir(&self, id: &ManifestId) -> PathBuf {
        self.inner.data_dir.join(MIRROR_DIR).join(id.to_string())
    }

    /// Mirror mode: starts fetching what `publisher`'s newest catalog lists and this node does
    /// not hold (a few at a time), and drops mirrored content the catalog withdrew. One sync
    /// runs at a time: while one runs, another returns at once (the next poll catches up).
    pub(crate) async fn mirror_sync(&self, publisher: PublicKey) {
        if !self.inner.policy.is_mirrored(&publisher) {
            return;
        }
        let Ok(mut cursors) = self.inner.mirror_cursors.try_lock() else {
            return;
        };
        let Some(listed) = self.inner.policy.listed(&publisher) else {
            return;
        };
        // Drop what was mirrored and is withdrawn now.
        let mirrored: Vec<_> = self
            .lock_items()
            .values()
            .filter(|item| {
                item.manifest.manifest().publisher == publisher
                    && item.origin() == ContentOrigin::Downloaded
                    && item.dir == self.mirror_dir(&item.id())
            })
            .cloned()
            .collect();
        let mut active = 0;
        for item in mirrored {
            if self.withdrawal(&item.manifest).is_some() {
                info!(id = %item.id(), "mirror drops withdrawn content");
                if let Err(e) = self.remove_item(item.id()).await {
                    warn!(id = %item.id(), "cannot drop withdrawn content: {e}");
                }
                let dir = item.dir.clone();
                let _ = blocking(move || std::fs::remove_dir_all(dir)).await;
            } else if item.state() == RecordState::Downloading {
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
            if self.item(&id).is_some() {
                continue;
            }
            lookups += 1;
            let manifest = match fetch::find_manifest(self, id, &[]).await {
                Ok(manifest) => manifest,
                Err(e) => {
                    debug!(%id, "mirror: manifest not found yet: {e}");
                    continue;
                }
            };
            // A mirror fetches like a user's download: its own region must be listed.
            if let Err(refusal) = self.policy_check(&manifest, self.as_fetcher()) {
                debug!(%id, "mirror: not fetched: {refusal}");
                continue;
            }
            // The mirror folder is the node's own: what an earlier mirror left there may be
            // replaced (identical files are still adopted, links still refused).
            match self
                .create_download(manifest, self.mirror_dir(&id), true)
                .await
            {
                Ok(item) => {
                    info!(%id, "mirror: fetching");
                    self.spawn_download(item, Vec::new(), std::time::Instant::now());
                    active += 1;
                }
                Err(e) => warn!(%id, "mirror: cannot start fetching: {e}"),
            }
        }
        cursors.insert(publisher, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a second claim of the same catalog deadlocked (the claim it built and dropped
    /// took the lock its own guard still held).
    #[test]
    fn a_catalog_is_claimed_once_until_its_claim_is_dropped() {
        let set = std::sync::Mutex::new(HashSet::new());
        let wanted = (PublicKey([1; 32]), CatalogHash([2; 32]));
        let first = FetchClaim::claim(&set, wanted).expect("free");
        assert!(FetchClaim::claim(&set, wanted).is_none(), "claimed already");
        let other = (PublicKey([1; 32]), CatalogHash([3; 32]));
        assert!(
            FetchClaim::claim(&set, other).is_some(),
            "another catalog is free"
        );
        drop(first);
        assert!(FetchClaim::claim(&set, wanted).is_some(), "free again");
        assert!(set.lock().unwrap().is_empty());
    }
}
