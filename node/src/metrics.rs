//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Counters only grow for the life of the daemon process; gauges are set when scraped.

use licet_proto::policy::RefusalReason;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Labels for refusals: the trust policy's reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The refusal reason, as its Rust name (`Expired`, `UntrustedPublisher`, …).
    pub reason: String,
}

impl ReasonLabel {
    /// The label of `reason`.
    pub fn of(reason: RefusalReason) -> ReasonLabel {
        ReasonLabel {
            reason: format!("{reason:?}"),
        }
    }
}

/// Labels naming a peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer id.
    pub peer: String,
}

/// Labels naming a DHT query kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabel {
    /// `get_providers` or `start_providing`.
    pub kind: String,
}

/// Every metric the node keeps.
pub struct Metrics {
    registry: Registry,
    /// Chunk payload bytes received.
    pub bytes_in: Counter,
    /// Chunk payload bytes sent.
    pub bytes_out: Counter,
    /// Chunks sent to peers.
    pub chunks_served: Counter,
    /// Verified chunks received and written.
    pub chunks_fetched: Counter,
    /// Requests refused, by reason.
    pub refusals: Family<ReasonLabel, Counter>,
    /// Chunks that failed verification, by peer.
    pub bad_chunks: Family<PeerLabel, Counter>,
    /// Peers banned.
    pub peers_banned: Counter,
    /// DHT queries started, by kind.
    pub dht_queries: Family<QueryLabel, Counter>,
    /// Connected peers (set when scraped).
    pub peers_connected: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `licet` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("licet");
        let metrics = Metrics {
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            chunks_served: Counter::default(),
            chunks_fetched: Counter::default(),
            refusals: Family::default(),
            bad_chunks: Family::default(),
            peers_banned: Counter::default(),
            dht_queries: Family::default(),
            peers_connected: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "bytes_in",
            "Chunk bytes received from peers",
            metrics.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Chunk bytes sent to peers",
            metrics.bytes_out.clone(),
        );
        registry.register(
            "chunks_served",
            "Chunks sent to peers",
            metrics.chunks_served.clone(),
        );
        registry.register(
            "chunks_fetched",
            "Verified chunks received and written by this process",
            metrics.chunks_fetched.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused by the trust policy or because content is not held, by reason",
            metrics.refusals.clone(),
        );
        registry.register(
            "bad_chunks",
            "Chunks that failed verification, by peer",
            metrics.bad_chunks.clone(),
        );
        registry.register("peers_banned", "Peers banned", metrics.peers_banned.clone());
        registry.register(
            "dht_queries",
            "DHT queries started, by kind",
            metrics.dht_queries.clone(),
        );
        registry.register(
            "peers_connected",
            "Connected peers",
            metrics.peers_connected.clone(),
        );
        // Every refusal reason is shown from the start, at zero, so a scrape (or an alert on
        // a rate) need not wait for the first refusal of each kind.
        for reason in RefusalReason::ALL {
            drop(metrics.refusals.get_or_create(&ReasonLabel::of(reason)));
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: RefusalReason) {
        self.refusals.get_or_create(&ReasonLabel::of(reason)).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
