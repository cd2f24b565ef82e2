//! What the event loop counts for `/metrics`: refusals, reachability, connections, lookups.
//! Clones share their values.

use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};

use super::{ConnectionMetrics, address_limits};

/// What the event loop counts for `/metrics` (clones share their counts).
#[derive(Debug, Clone)]
pub struct NetworkCounters {
    /// Inbound connections denied by the per-address, per-subnet and inbound bounds.
    pub connections_refused: address_limits::Refused,
    /// Other peers' provider records not stored.
    pub provider_records_refused: crate::net::provider_store::Refused,
    /// Gossip messages refused for being over [`super::MAX_GOSSIP_BYTES`].
    pub gossip_messages_refused: Counter,
    /// Reachability, relays, hole punches, the LAN.
    pub reachability: ReachabilityMetrics,
    /// Open connections, trims, topic meshes.
    pub connections: ConnectionMetrics,
    /// Peers each provider lookup sent a request to, observed when it ends.
    pub provider_lookup_peers: Histogram,
}

/// What `/metrics` shows of reachability (clones share their values).
#[derive(Debug, Clone, Default)]
pub struct ReachabilityMetrics {
    /// 1 while a public address of this node is confirmed, else 0.
    pub publicly_reachable: Gauge,
    /// Relays holding a reservation for this node.
    pub relay_reservations: Gauge,
    /// Connections made through a relay.
    pub relayed_connections: Counter,
    /// Hole punches (DCUtR) that ended, by result (`success`, `failure`).
    pub hole_punches: Family<ResultLabel, Counter>,
    /// Peers found on the LAN by mDNS.
    pub mdns_discovered: Counter,
}

/// The `result` label of [`NetworkCounters`]' `hole_punches`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: String,
}
