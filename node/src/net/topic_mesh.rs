//! The event loop's side of the connection manager (`conn_manager.rs`) and of each catalog
//! topic's mesh: which peers are protected from trimming, and how a node finds peers of the
//! topics it subscribes to when it has too few.
//!
//! Gossip reaches a node only through peers that subscribe to the same topic and stay
//! connected to it; with a bounded set of connections, that cannot be left to which peers
//! Kademlia happened to touch. So:
//! - protected from trimming are the gossipsub mesh peers of every subscribed topic, relays
//!   this node holds (or asked for) a reservation on, and peers it fetched from or served to in
//!   the last [`IN_USE_WINDOW`] ([`InUse`], marked by the transfer code);
//! - every node subscribed to a catalog topic provides the topic's key in the DHT
//!   (`licet_proto::catalog::catalog_topic_key`; the catalog head key would not do: only nodes
//!   holding a catalog provide it, none before the first one is published);
//! - every [`TOPIC_DISCOVERY_INTERVAL`], each subscribed topic whose mesh is below gossipsub's
//!   `mesh_n_low` looks up the providers of its topic key and dials at most
//!   [`MAX_TOPIC_DIALS`] of those it is not connected to; gossipsub grafts them into the mesh
//!   at its next heartbeat;
//! - every [`LONG_LINK_INTERVAL`] (and soon after subscribing), a topic whose mesh has room
//!   dials one provider of its topic key it is not connected to, taken in no particular order
//!   (a `HashSet`'s, seeded at random per process). Without such links, meshes form among the
//!   peers Kademlia connects, which are close in the key space: measured on 30 nodes allowed 8
//!   connections each, 6 nodes formed a mesh of their own and never saw a catalog by gossip;
//! - gossipsub's mesh sizes follow the low mark ([`GossipMesh::for_low_mark`]): a full mesh of
//!   every topic fits under it, so protected mesh peers alone never push a node over its high
//!   mark (with one topic; nodes subscribing to many publishers share most mesh peers).
//!
//! Invariants: at most one discovery lookup per topic at a time, dialling at most
//! [`MAX_TOPIC_DIALS`]; a topic's key is provided exactly while it is subscribed; [`InUse`] holds at most
//! [`MAX_IN_USE_PEERS`] peers (the stalest are forgotten first).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use libp2p::{
    PeerId, gossipsub, kad,
    swarm::dial_opts::{DialOpts, PeerCondition},
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use tracing::debug;

use super::EventLoop;

/// How long a peer fetched from or served to stays protected from trimming after the last
/// bytes moved (a download pauses between requests; a catalog fetch is a few requests).
pub const IN_USE_WINDOW: Duration = Duration::from_secs(30);
/// Most peers remembered as in use: far above any node's connections (512).
pub const MAX_IN_USE_PEERS: usize = 4096;
/// How often topics whose mesh is too small look for peers.
pub const TOPIC_DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// Most providers dialled per discovery lookup: enough to fill a mesh from nothing to
/// `mesh_n_low`, few enough that a lookup does not crowd the connection set.
pub const MAX_TOPIC_DIALS: usize = 4;
/// How often a topic whose mesh has room dials one more of its peers, at random (see the
/// module docs): each time is a DHT lookup, which itself connects to up to 20 peers for a
/// moment, so not often.
pub const LONG_LINK_INTERVAL: Duration = Duration::from_secs(120);

/// Peers this node fetched from or served to lately (see the module docs). Cheap to clone;
/// clones share the same set.
#[derive(Debug, Clone, Default)]
pub struct InUse(Arc<Mutex<HashMap<PeerId, Instant>>>);

impl InUse {
    /// `peer` is being fetched from or served to now.
    pub fn touch(&self, peer: PeerId) {
        let now = Instant::now();
        let mut peers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if peers.len() >= MAX_IN_USE_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, at| now.saturating_duration_since(*at) < IN_USE_WINDOW);
            if peers.len() >= MAX_IN_USE_PEERS
                && let Some(stalest) = peers.iter().min_by_key(|(_, at)| **at).map(|(p, _)| *p)
            {
                peers.remove(&stalest);
            }
        }
        peers.insert(peer, now);
    }

    /// The peers used within [`IN_USE_WINDOW`] of `now` (the others are forgotten).
    fn recent(&self, now: Instant) -> HashSet<PeerId> {
        let mut peers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        peers.retain(|_, at| now.saturating_duration_since(*at) < IN_USE_WINDOW);
        peers.keys().copied().collect()
    }
}

/// Gossipsub's mesh sizes for a low mark (see the module docs): its defaults (5, 6, 12, 2)
/// when the low mark is 12 or more, smaller meshes under a smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipMesh {
    /// Below this many mesh peers, gossipsub grafts more (and the node looks for more).
    pub mesh_n_low: usize,
    /// The mesh size gossipsub aims at.
    pub mesh_n: usize,
    /// Above this many, gossipsub prunes.
    pub mesh_n_high: usize,
    /// Mesh peers that must be outbound connections.
    pub mesh_outbound_min: usize,
}

impl GossipMesh {
    /// The mesh sizes for a low mark of `low` connections.
    pub fn for_low_mark(low: u32) -> GossipMesh {
        let mesh_n_high = (low as usize).clamp(3, 12);
        let mesh_n = (mesh_n_high - 1).min(6);
        let mesh_n_low = (mesh_n - 1).clamp(1, 5);
        let mesh_outbound_min = (mesh_n / 2).min(2).min(mesh_n_low);
        GossipMesh {
            mesh_n_low,
            mesh_n,
            mesh_n_high,
            mesh_outbound_min,
        }
    }
}

/// A subscribed topic: where its peers are found, and its name in the metrics.
#[derive(Debug, Clone)]
pub(super) struct Subscribed {
    /// The DHT key whose providers subscribe to the topic.
    pub(super) rendezvous: [u8; 32],
    /// The `publisher` label of its mesh size metric.
    pub(super) label: String,
    /// When the topic next dials one of its peers at random.
    pub(super) long_link_at: Instant,
}

/// The topics subscribed to and the discovery lookups under way.
#[derive(Debug, Default)]
pub(super) struct TopicMesh {
    pub(super) topics: HashMap<gossipsub::TopicHash, Subscribed>,
    /// Each lookup's topic and the providers it dialled so far.
    lookups: HashMap<kad::QueryId, (gossipsub::TopicHash, usize)>,
}

/// The `publisher` label of the topic mesh metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TopicLabel {
    /// The publisher whose catalog topic it is.
    pub publisher: String,
}

/// What `/metrics` shows of connections (clones share their values).
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Peers disconnected by the connection manager.
    pub trimmed: Counter,
    /// Gossipsub mesh peers of each subscribed catalog topic.
    pub topic_mesh_peers: Family<TopicLabel, Gauge>,
}

impl EventLoop {
    /// Trims connections if there are more than the high mark (see `conn_manager.rs`).
    pub(super) fn trim_connections(&mut self) {
        if !self.conn_manager.over_high() {
            return;
        }
        let now = Instant::now();
        let mut protected = self.in_use.recent(now);
        let gossipsub = &self.swarm.behaviour().gossipsub;
        protected.extend(gossipsub.all_mesh_peers().copied());
        protected.extend(self.relay_listeners.keys().copied());
        let sharing: HashSet<PeerId> = gossipsub
            .all_peers()
            .filter(|(_, topics)| {
                topics
                    .iter()
                    .any(|t| self.topic_mesh.topics.contains_key(t))
            })
            .map(|(peer, _)| *peer)
            .collect();
        let trimmed = self
            .conn_manager
            .to_trim(now, &protected, |peer| sharing.contains(peer));
        if trimmed.is_empty() {
            return;
        }
        let before = self.conn_manager.connections();
        for peer in &trimmed {
            let _ = self.swarm.disconnect_peer_id(*peer);
        }
        self.counters
            .connections
            .trimmed
            .inc_by(trimmed.len() as u64);
        let marks = self.conn_manager.marks();
        debug!(
            peers = trimmed.len(),
            connections = before,
            high = marks.high,
            low = marks.low,
            "over the connection high mark: trimmed peers"
        );
    }

    /// Sets the open connections metric.
    pub(super) fn count_connections(&self) {
        let open = self.conn_manager.connections();
        self.counters
            .connections
            .open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Sets each topic's mesh size metric, and looks for peers of each topic whose mesh is
    /// below `mesh_n_low` or whose long link is due (see the module docs).
    pub(super) fn discover_topic_peers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        let gossipsub = &self.swarm.behaviour().gossipsub;
        for (topic, subscribed) in &mut self.topic_mesh.topics {
            let mesh = gossipsub.mesh_peers(topic).count();
            self.counters
                .connections
                .topic_mesh_peers
                .get_or_create(&TopicLabel {
                    publisher: subscribed.label.clone(),
                })
                .set(i64::try_from(mesh).unwrap_or(i64::MAX));
            let looking = self.topic_mesh.lookups.values().any(|(t, _)| t == topic);
            let short = mesh < self.gossip_mesh.mesh_n_low;
            let long_link = now >= subscribed.long_link_at && mesh < self.gossip_mesh.mesh_n_high;
            if long_link {
                subscribed.long_link_at = now + LONG_LINK_INTERVAL;
            }
            if (short || long_link) && !looking {
                due.push((topic.clone(), subscribed.rendezvous));
            }
        }
        for (topic, rendezvous) in due {
            debug!(%topic, "looking for peers of the topic");
            let id = self
                .swarm
                .behaviour_mut()
                .kad
                .get_providers(kad::RecordKey::new(&rendezvous));
            self.topic_mesh.lookups.insert(id, (topic, 0));
        }
    }

    /// Providers found by a discovery lookup: dials those this node is not connected to, as
    /// many as the topic's mesh lacks to reach `mesh_n` (at least one while the mesh has room
    /// for a long link, at most [`MAX_TOPIC_DIALS`] per lookup). Returns whether `id` was a
    /// discovery lookup.
    pub(super) fn on_topic_providers(
        &mut self,
        id: kad::QueryId,
        providers: &HashSet<PeerId>,
        last: bool,
    ) -> bool {
        let Some((topic, dialled)) = self.topic_mesh.lookups.get(&id).cloned() else {
            return false;
        };
        let local = *self.swarm.local_peer_id();
        let mesh = self.swarm.behaviour().gossipsub.mesh_peers(&topic).count();
        let wanted = if mesh < self.gossip_mesh.mesh_n_high {
            self.gossip_mesh
                .mesh_n
                .saturating_sub(mesh)
                .clamp(1, MAX_TOPIC_DIALS)
        } else {
            0
        };
        let dial: Vec<PeerId> = providers
            .iter()
            .filter(|p| **p != local && !self.swarm.is_connected(p))
            .take(wanted.saturating_sub(dialled))
            .copied()
            .collect();
        for provider in &dial {
            let opts = DialOpts::peer_id(*provider)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => debug!(%provider, %topic, "dialling a peer of the topic"),
                Err(e) => debug!(%provider, "cannot dial a peer of the topic: {e}"),
            }
        }
        if last {
            self.topic_mesh.lookups.remove(&id);
        } else if let Some(entry) = self.topic_mesh.lookups.get_mut(&id) {
            entry.1 += dial.len();
        }
        true
    }

    /// Forgets `topic` (unsubscribed) and its mesh metric.
    pub(super) fn forget_topic(&mut self, topic: &gossipsub::TopicHash) {
        if let Some(subscribed) = self.topic_mesh.topics.remove(topic) {
            let key = kad::RecordKey::new(&subscribed.rendezvous);
            self.swarm.behaviour_mut().kad.stop_providing(&key);
            self.counters
                .connections
                .topic_mesh_peers
                .remove(&TopicLabel {
                    publisher: subscribed.label,
                });
        }
        self.topic_mesh.lookups.retain(|_, (t, _)| t != topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_meshes_fit_under_the_low_mark_and_keep_gossipsubs_defaults_above_twelve() {
        assert_eq!(
            GossipMesh::for_low_mark(32),
            GossipMesh {
                mesh_n_low: 5,
                mesh_n: 6,
                mesh_n_high: 12,
                mesh_outbound_min: 2
            }
        );
        for low in 1..=40 {
            let mesh = GossipMesh::for_low_mark(low);
            // What gossipsub's config builder checks.
            assert!(mesh.mesh_outbound_min <= mesh.mesh_n_low, "{low}: {mesh:?}");
            assert!(mesh.mesh_n_low <= mesh.mesh_n, "{low}: {mesh:?}");
            assert!(mesh.mesh_n <= mesh.mesh_n_high, "{low}: {mesh:?}");
            assert!(mesh.mesh_outbound_min * 2 <= mesh.mesh_n, "{low}: {mesh:?}");
            assert!(mesh.mesh_n_low >= 1);
            if low >= 3 {
                assert!(mesh.mesh_n_high <= low as usize, "{low}: {mesh:?}");
            }
        }
    }

    #[test]
    fn in_use_peers_are_forgotten_after_the_window_and_bounded() {
        let in_use = InUse::default();
        let peer = PeerId::random();
        in_use.touch(peer);
        let now = Instant::now();
        assert!(in_use.recent(now).contains(&peer));
        assert!(in_use.recent(now + IN_USE_WINDOW).is_empty());
        for _ in 0..MAX_IN_USE_PEERS + 10 {
            in_use.touch(PeerId::random());
        }
        assert!(in_use.0.lock().unwrap().len() <= MAX_IN_USE_PEERS);
    }
}
