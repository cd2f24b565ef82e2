//! Heads from the network (steps 1 and 2 of `mod.rs`): gossip on each trusted publisher's
//! topic, and the poll of connected peers (and, when needed, the DHT) every `catalog_poll`,
//! which also keeps mirrors in step and sweeps content whose window ended.
//!
//! Invariants: a gossip message is reported to gossipsub as accepted only if it is a valid,
//! newer head of its topic's publisher whose catalog this node has then fetched and accepted:
//! gossipsub forwards it only then, so the next node, which fetches the catalog from the peer
//! the head came from first, finds it there (reported at once, 30 nodes with bounded
//! connections lost that race: nodes two hops from the publisher failed to fetch and waited
//! for the poll); every offer a poll finds is judged against the catalog
//! held now, and only the highest newer one that can be fetched is followed.

use std::time::Duration;

use libp2p::{PeerId, gossipsub::MessageAcceptance};
use licet_proto::{
    PublicKey,
    catalog::{VerifiedCatalogHead, catalog_head_key},
    delivery::VerifiedDeliveryReport,
    wire::{Request, Response},
};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{CatalogError, CatalogHost, Catalogs, HeadOrigin};
use crate::net::{self, NetworkEvent};

/// Most peers asked for their head of one publisher in a poll.
const MAX_POLL_PEERS: usize = 8;
/// Longest time between two polls of the DHT for a publisher's head while connected peers
/// answer (see [`Catalogs::poll_publisher`]).
pub const DHT_POLL_INTERVAL: Duration = Duration::from_secs(600);
/// The first poll runs this long after start (time to connect to bootstrap peers).
const FIRST_POLL_DELAY: Duration = Duration::from_secs(2);
/// Waits before fetching a gossiped head's catalog again when no peer could send it: short
/// first (a neighbour is usually still fetching it), 7 s in all, well inside the 30 s a
/// message waits in gossipsub's cache for its report.
const GOSSIP_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

impl<H: CatalogHost> Catalogs<H> {
    /// Takes gossip messages from the network until it stops.
    pub(super) async fn handle_gossip(&self, mut events: mpsc::Receiver<NetworkEvent>) {
        while let Some(event) = events.recv().await {
            let (topic, data, source, message_id) = match event {
                NetworkEvent::CatalogHead {
                    topic,
                    data,
                    source,
                    message_id,
                } => (topic, data, source, message_id),
                NetworkEvent::DeliveryReport {
                    topic,
                    data,
                    source,
                    message_id,
                } => {
                    let acceptance = self.judge_delivery_report(&topic, &data);
                    let _ = self
                        .network
                        .report_gossip(message_id, source, acceptance)
                        .await;
                    continue;
                }
            };
            let (acceptance, newer) = self.judge_gossip(&topic, &data);
            let Some(head) = newer else {
                let _ = self
                    .network
                    .report_gossip(message_id, source, acceptance)
                    .await;
                continue;
            };
            let catalogs = self.clone();
            tokio::spawn(async move {
                let acceptance = match catalogs.follow_gossiped_head(head, source).await {
                    Ok(()) => MessageAcceptance::Accept,
                    Err(failure) => {
                        catalogs.metrics.refused(failure.label());
                        debug!(%source, "gossiped catalog head not taken: {failure}");
                        MessageAcceptance::Ignore
                    }
                };
                let _ = catalogs
                    .network
                    .report_gossip(message_id, source, acceptance)
                    .await;
            });
        }
    }

    /// Fetches and accepts the catalog of a gossiped head, from `source` first. A head that
    /// verified but whose catalog no peer could send yet (the source trimmed away, its
    /// neighbours still fetching it) is tried again after [`GOSSIP_RETRY_DELAYS`]: gossipsub
    /// delivers each message once, so without these tries the node would wait for its next
    /// poll. The message waits in gossipsub's cache meanwhile and is forwarded once accepted.
    async fn follow_gossiped_head(
        &self,
        head: VerifiedCatalogHead,
        source: PeerId,
    ) -> Result<(), CatalogError> {
        let mut outcome = self
            .consider_head(head.clone(), Some(source), HeadOrigin::Gossip)
            .await;
        for delay in GOSSIP_RETRY_DELAYS {
            if !matches!(outcome, Err(CatalogError::Unavailable(_))) || self.host.stopping() {
                break;
            }
            tokio::time::sleep(delay).await;
            outcome = self
                .consider_head(head.clone(), Some(source), HeadOrigin::Gossip)
                .await;
        }
        outcome.map(|_| ())
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
                self.metrics.refused("invalid");
                debug!(%topic, "gossip message is not a valid catalog head: {e}");
                return (MessageAcceptance::Reject, None);
            }
        };
        if net::catalog_topic(&head.head().publisher).hash().as_str() != topic {
            self.metrics.refused("invalid");
            return (MessageAcceptance::Reject, None);
        }
        match self.policy.admits(&head, self.policy.judged_now()) {
            Ok(true) => (MessageAcceptance::Accept, Some(head)),
            Ok(false) => (MessageAcceptance::Ignore, None),
            Err(failure) => {
                self.metrics.refused(failure.label());
                debug!(%topic, "gossiped catalog head refused: {failure}");
                (MessageAcceptance::Ignore, None)
            }
        }
    }

    /// Keeps a gossiped delivery report if it verifies against its publisher's newest accepted
    /// catalog and is newer than the one kept, and says what gossipsub should do with it: a
    /// report that does not verify costs its sender (reject), one not kept for another reason
    /// (not collecting, no catalog, a replay) goes no further (ignore).
    fn judge_delivery_report(&self, topic: &str, data: &[u8]) -> MessageAcceptance {
        let Some(publisher) = net::deliveries_topic_publisher(topic) else {
            return MessageAcceptance::Reject;
        };
        let Some(deliveries) = self.deliveries.as_ref().filter(|d| d.collects()) else {
            return MessageAcceptance::Ignore;
        };
        let now = self.policy.judged_now();
        let verified = self.policy.with_newest_catalog(&publisher, |catalog| {
            VerifiedDeliveryReport::from_bytes(data, catalog, now)
        });
        match verified {
            None => {
                debug!(%publisher, "delivery report ignored: no catalog of its publisher held");
                MessageAcceptance::Ignore
            }
            Some(Err(e)) => {
                info!(%publisher, "delivery report refused: {e}");
                MessageAcceptance::Reject
            }
            Some(Ok(report)) => match deliveries.keep_received(&report) {
                Ok(kept) => {
                    debug!(%publisher, signer = %report.signer(), ?kept, "delivery report kept");
                    MessageAcceptance::Accept
                }
                Err(e) => {
                    info!(%publisher, signer = %report.signer(), "delivery report not kept: {e}");
                    MessageAcceptance::Ignore
                }
            },
        }
    }

    /// Polls the DHT and connected peers for every trusted publisher's head, every
    /// `catalog_poll`, and keeps mirrors in step.
    pub(super) async fn poll_loop(&self) {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + FIRST_POLL_DELAY,
            self.work.poll,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.host.stopping() {
                return;
            }
            for publisher in self.policy.trusted_publishers() {
                self.poll_publisher(publisher).await;
                if self.policy.is_mirrored(&publisher) {
                    let catalogs = self.clone();
                    tokio::spawn(async move { catalogs.mirror_sync(publisher).await });
                }
            }
            // Licence windows end and catalogs expire with no event: swept here.
            self.host.stop_announcing_refused(None).await;
        }
    }

    /// Looks for a newer head of `publisher` at connected peers and, when needed, in the DHT,
    /// and follows the highest one.
    ///
    /// The DHT is asked when no connected peer offered a head of the publisher (none trusts it,
    /// or none is connected), when this node holds no catalog of it, and otherwise at most
    /// every [`DHT_POLL_INTERVAL`]: every node asking it at every poll made the head key's K
    /// closest nodes answer all of them (`docs/SCALE.md`, "The hot key"), and each lookup
    /// opened connections to about 20 peers that the connection manager then trimmed (in a
    /// 300-node swarm on one machine, idle nodes spent both cores, handshakes high among it).
    pub async fn poll_publisher(&self, publisher: PublicKey) {
        let mut offered: Vec<(VerifiedCatalogHead, Option<PeerId>)> = Vec::new();
        let connected = self.network.connected().await.unwrap_or_default();
        let askable = connected
            .into_iter()
            .map(|(peer, _)| peer)
            .filter(|peer| !self.host.is_banned(peer))
            .take(MAX_POLL_PEERS);
        for peer in askable {
            let Ok(session) = self.host.session(peer).await else {
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
                    self.host.request_failed(peer, &e).await;
                }
            }
        }
        let holds_one = self.policy.newest_catalog(&publisher).is_some();
        if offered.is_empty() || !holds_one || self.work.dht_poll_due(publisher) {
            let key = catalog_head_key(&publisher).0;
            for value in self.network.get_records(key).await.unwrap_or_default() {
                if let Ok(head) = VerifiedCatalogHead::from_bytes(&value)
                    && head.head().publisher == publisher
                {
                    offered.push((head, None));
                }
            }
        }
        // Every offer is judged against the catalog held now (each one the catalog rules
        // refuse, such as a rollback from a peer or the DHT, is counted); then the highest newer
        // one that can be fetched is followed.
        let now = self.policy.judged_now();
        let mut newer = Vec::new();
        for (head, peer) in offered {
            match self.policy.admits(&head, now) {
                Ok(true) => newer.push((head, peer)),
                Ok(false) => {}
                Err(failure) => {
                    self.metrics.refused(failure.label());
                    debug!(%publisher, ?peer, "polled catalog head refused: {failure}");
                }
            }
        }
        newer.sort_by_key(|(head, _)| std::cmp::Reverse(head.head().sequence));
        for (head, peer) in newer {
            match self.consider_head(head, peer, HeadOrigin::Poll).await {
                Ok(_) => return,
                Err(failure) => {
                    self.metrics.refused(failure.label());
                    debug!(%publisher, "polled catalog head not taken: {failure}");
                }
            }
        }
    }
}
