//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Counters only grow for the life of the daemon process; gauges are set when scraped. The
//! daemon's recent log lines, for `GET /v1/log`, are kept in [`recent_log`].

pub mod format;
pub mod recent_log;

use std::sync::atomic::AtomicU64;

use licet_proto::policy::RefusalReason;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
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

/// Labels naming a publisher.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublisherLabel {
    /// The publisher's key, hex.
    pub publisher: String,
}

/// Every reason a catalog head or catalog is not taken, as `licet_catalog_refusals_total`
/// labels it.
pub const CATALOG_REFUSAL_REASONS: [&str; 9] = [
    "rollback",
    "equal_sequence_different_bytes",
    "expired",
    "untrusted",
    "rejected",
    "invalid",
    "mismatch",
    "unavailable",
    "internal",
];

/// How an accepted catalog reached the node, as `licet_catalogs_accepted_total` labels it:
/// `publish` (`catalog publish` on this node), `gossip` (pushed on the publisher's topic),
/// `poll` (the DHT record or a peer's answer, in a poll or when a publisher is trusted).
pub const CATALOG_ACCEPTED_VIA: [&str; 3] = ["publish", "gossip", "poll"];

/// Labels naming how an accepted catalog reached the node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViaLabel {
    /// One of [`CATALOG_ACCEPTED_VIA`].
    pub via: String,
}

/// Labels naming why a catalog head or catalog was not taken.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CatalogRefusalLabel {
    /// One of [`CATALOG_REFUSAL_REASONS`] (`mismatch`: a peer's catalog does not hash to the
    /// signed head).
    pub reason: String,
}

/// Labels naming a DHT query kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabel {
    /// `get_providers` or `start_providing`.
    pub kind: String,
}

/// Labels naming the bound that refused a connection or a DHT record.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `pending_per_address`, `established_per_address`, `pending_per_subnet`,
    /// `established_per_subnet` or `inbound_total` for connections; `per_peer`, `total`
    /// or `per_key` for provider records; `message_bytes` for gossip messages.
    pub limit: String,
}

/// Labels naming a rate limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabel {
    /// `upload` or `download`.
    pub direction: String,
    /// `global` (all peers together) or `peer` (each peer).
    pub scope: String,
}

/// Labels naming a direction of transfer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `upload` or `download`.
    pub direction: String,
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
    /// Chunks from peers that failed verification (`peers` names the senders, banned: a label
    /// per peer id would grow without bound).
    pub bad_chunks: Counter,
    /// Peers banned.
    pub peers_banned: Counter,
    /// Files found changed on disk while serving (another size or modification time, gone, or
    /// a chunk that no longer verifies): each is out of service until `check` finds it whole.
    pub files_changed: Counter,
    /// Chunk reads that failed without proving the content changed (too many open files, no
    /// memory, an I/O error): each answered `Busy`.
    pub serve_io_errors: Counter,
    /// Chunk requests answered `Busy` because this seed's upload slots for the release were
    /// held by other peers (choked).
    pub chunks_choked: Counter,
    /// The rate limits in force, bytes per second (0: none).
    rate_limits: Family<RateLimitLabel, Gauge>,
    /// Time chunks waited on the rate limits, summed over chunks, by direction.
    rate_limit_waits: Family<DirectionLabel, Counter<f64, AtomicU64>>,
    /// Chunk requests answered `Busy` because the upload limit could not send them in time.
    pub rate_limit_busy: Counter,
    /// DHT queries started, by kind.
    pub dht_queries: Family<QueryLabel, Counter>,
    /// How long each DHT provider lookup took, in seconds.
    pub provider_lookup: Histogram,
    /// Peers each DHT provider lookup sent a request to (kad's query statistics), so a lookup's
    /// cost can be set against log2 of the swarm's size.
    pub provider_lookup_peers: Histogram,
    /// How long each download took from its request (or the node's restart, for one resumed)
    /// to its first verified chunk on disk, in seconds: finding the manifest and providers,
    /// connecting, availability, the chunk.
    pub first_chunk: Histogram,
    /// Connected peers (set when scraped).
    pub peers_connected: Gauge,
    /// Catalogs accepted as a publisher's newest, by how they arrived.
    pub catalogs_accepted: Family<ViaLabel, Counter>,
    /// Bytes of catalogs fetched from peers (roots and parts), as they came off the wire.
    pub catalog_fetched_bytes: Counter,
    /// Catalog parts fetched from peers.
    pub catalog_parts_fetched: Counter,
    /// Catalog heads and catalogs not taken, by reason.
    pub catalog_refusals: Family<CatalogRefusalLabel, Counter>,
    /// Each trusted publisher's accepted catalog sequence (set when scraped).
    pub catalog_sequence: Family<PublisherLabel, Gauge>,
    /// When it expires, in Unix seconds (set when scraped).
    pub catalog_expires_at: Family<PublisherLabel, Gauge>,
    /// Manifests it withdraws (set when scraped).
    pub catalog_revoked_manifests: Family<PublisherLabel, Gauge>,
    /// Delegates it withdraws (set when scraped).
    pub catalog_revoked_delegates: Family<PublisherLabel, Gauge>,
    /// Licences it withdraws (set when scraped).
    pub catalog_revoked_licences: Family<PublisherLabel, Gauge>,
    /// Inbound connections denied because their address or subnet had its share, or every
    /// inbound slot was taken, by bound.
    pub connections_refused: Family<LimitLabel, Counter>,
    /// Other peers' DHT provider records not stored, by bound.
    pub provider_records_refused: Family<LimitLabel, Counter>,
    /// Gossip messages refused, by bound.
    pub gossip_messages_refused: Family<LimitLabel, Counter>,
    /// The node's own faults (database closed, clock behind), set when scraped (`health.rs`).
    pub health: HealthGauges,
    /// Reachability, relays, hole punches and the LAN, kept by the network event loop.
    pub reachability: crate::net::ReachabilityMetrics,
    /// Open connections, trims and topic meshes, kept by the network event loop.
    pub connections: crate::net::ConnectionMetrics,
}

/// The node's own faults, set when scraped.
#[derive(Default)]
pub struct HealthGauges {
    /// 1 while the node database is closed after an I/O error, else 0.
    pub store_closed: Gauge,
    /// Times the node database was reopened after an I/O error.
    pub store_reopens: Gauge,
    /// Accepted catalogs in force in memory but not saved yet (database closed).
    pub catalogs_unsaved: Gauge,
    /// Trust removals in force in memory but not saved yet (database closed).
    pub trust_removals_unsaved: Gauge,
    /// How far the clock is behind the time floor beyond the allowed skew, in seconds (0: not).
    pub clock_behind_floor: Gauge,
    /// The time floor, Unix seconds (0: no catalog accepted yet).
    pub time_floor: Gauge,
    /// The median of the peers' clocks asked lately minus this node's, seconds (0: unknown).
    pub clock_peer_offset: Gauge,
    /// How many peers that median is of (0: fewer than 3 answered).
    pub clock_peers_sampled: Gauge,
}

/// Histogram buckets for latencies: 1 ms doubling to about 33 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The gauge of the rate limit of `direction` (`upload`, `download`) and `scope` (`global`,
    /// `peer`).
    pub fn rate_limit(&self, direction: &str, scope: &str) -> Gauge {
        self.rate_limits
            .get_or_create(&RateLimitLabel {
                direction: direction.to_owned(),
                scope: scope.to_owned(),
            })
            .clone()
    }

    /// The counter of seconds chunks waited on the rate limits of `direction`.
    pub fn rate_limit_wait(&self, direction: &str) -> Counter<f64, AtomicU64> {
        self.rate_limit_waits
            .get_or_create(&DirectionLabel {
                direction: direction.to_owned(),
            })
            .clone()
    }

    /// A registry with every metric registered under the `licet` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("licet");
        let metrics = Metrics {
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            chunks_served: Counter::default(),
            chunks_fetched: Counter::default(),
            refusals: Family::default(),
            bad_chunks: Counter::default(),
            peers_banned: Counter::default(),
            files_changed: Counter::default(),
            serve_io_errors: Counter::default(),
            chunks_choked: Counter::default(),
            rate_limits: Family::default(),
            rate_limit_waits: Family::default(),
            rate_limit_busy: Counter::default(),
            dht_queries: Family::default(),
            provider_lookup: Histogram::new(latency_buckets()),
            provider_lookup_peers: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            first_chunk: Histogram::new(latency_buckets()),
            peers_connected: Gauge::default(),
            catalogs_accepted: Family::default(),
            catalog_fetched_bytes: Counter::default(),
            catalog_parts_fetched: Counter::default(),
            catalog_refusals: Family::default(),
            catalog_sequence: Family::default(),
            catalog_expires_at: Family::default(),
            catalog_revoked_manifests: Family::default(),
            catalog_revoked_delegates: Family::default(),
            catalog_revoked_licences: Family::default(),
            connections_refused: Family::default(),
            provider_records_refused: Family::default(),
            gossip_messages_refused: Family::default(),
            health: HealthGauges::default(),
            reachability: crate::net::ReachabilityMetrics::default(),
            connections: crate::net::ConnectionMetrics::default(),
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
            "Chunks from peers that failed verification (their senders are banned; see peers)",
            metrics.bad_chunks.clone(),
        );
        registry.register("peers_banned", "Peers banned", metrics.peers_banned.clone());
        registry.register(
            "files_changed",
            "Files found changed on disk while serving; each is out of service until checked",
            metrics.files_changed.clone(),
        );
        registry.register(
            "serve_io_errors",
            "Chunk reads that failed without proving the content changed, answered busy",
            metrics.serve_io_errors.clone(),
        );
        registry.register(
            "chunks_choked",
            "Chunk requests answered busy because the release's upload slots were held by \
             other peers",
            metrics.chunks_choked.clone(),
        );
        registry.register(
            "rate_limit_bytes_per_second",
            "The rate limit in force, bytes per second (0: none), by direction and scope",
            metrics.rate_limits.clone(),
        );
        registry.register(
            "rate_limit_wait_seconds",
            "Time chunks waited on the rate limits, summed over chunks, by direction",
            metrics.rate_limit_waits.clone(),
        );
        // Both directions from the start, so a scraper sees 0 before the first wait.
        for direction in ["upload", "download"] {
            drop(metrics.rate_limit_wait(direction));
        }
        registry.register(
            "rate_limit_busy",
            "Chunk requests answered busy because the upload limit could not send them in time",
            metrics.rate_limit_busy.clone(),
        );
        registry.register(
            "dht_queries",
            "DHT queries started, by kind",
            metrics.dht_queries.clone(),
        );
        registry.register(
            "provider_lookup_seconds",
            "Time each DHT provider lookup took",
            metrics.provider_lookup.clone(),
        );
        registry.register(
            "provider_lookup_peers_contacted",
            "Peers each DHT provider lookup sent a request to",
            metrics.provider_lookup_peers.clone(),
        );
        registry.register(
            "download_first_chunk_seconds",
            "Time from a download's request to its first verified chunk on disk",
            metrics.first_chunk.clone(),
        );
        registry.register(
            "peers_connected",
            "Connected peers",
            metrics.peers_connected.clone(),
        );
        registry.register(
            "catalogs_accepted",
            "Catalogs accepted as their publisher's newest, by how they arrived (publish, \
             gossip, poll)",
            metrics.catalogs_accepted.clone(),
        );
        registry.register(
            "catalog_fetched_bytes",
            "Bytes of catalogs fetched from peers: signed roots and the parts not held already",
            metrics.catalog_fetched_bytes.clone(),
        );
        registry.register(
            "catalog_parts_fetched",
            "Catalog parts fetched from peers (the parts of a catalog not held already)",
            metrics.catalog_parts_fetched.clone(),
        );
        registry.register(
            "catalog_refusals",
            "Catalog heads and catalogs not taken, by reason",
            metrics.catalog_refusals.clone(),
        );
        registry.register(
            "catalog_sequence",
            "Sequence of each trusted publisher's accepted catalog",
            metrics.catalog_sequence.clone(),
        );
        registry.register(
            "catalog_expires_at_seconds",
            "Expiry of each trusted publisher's accepted catalog, Unix seconds",
            metrics.catalog_expires_at.clone(),
        );
        registry.register(
            "catalog_revoked_manifests",
            "Manifests withdrawn by each trusted publisher's accepted catalog",
            metrics.catalog_revoked_manifests.clone(),
        );
        registry.register(
            "catalog_revoked_delegates",
            "Delegate keys withdrawn by each trusted publisher's accepted catalog",
            metrics.catalog_revoked_delegates.clone(),
        );
        registry.register(
            "catalog_revoked_licences",
            "Licences of paid releases withdrawn by each trusted publisher's accepted catalog",
            metrics.catalog_revoked_licences.clone(),
        );
        registry.register(
            "connections_refused",
            "Inbound connections denied because their address or network had its share, or the \
             inbound slots were full, by bound",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "dht_provider_records_refused",
            "Other peers' DHT provider records not stored, by bound",
            metrics.provider_records_refused.clone(),
        );
        registry.register(
            "gossip_messages_refused",
            "Gossip messages refused before the node looked at them, by bound",
            metrics.gossip_messages_refused.clone(),
        );
        let reachability = &metrics.reachability;
        registry.register(
            "publicly_reachable",
            "1 while a peer has dialled one of this node's public addresses back (AutoNAT), else 0",
            reachability.publicly_reachable.clone(),
        );
        registry.register(
            "relay_reservations",
            "Relays holding a reservation for this node (it cannot be dialled directly)",
            reachability.relay_reservations.clone(),
        );
        registry.register(
            "relayed_connections",
            "Connections made through a relay",
            reachability.relayed_connections.clone(),
        );
        registry.register(
            "hole_punches",
            "Hole punches (DCUtR) that ended, by result",
            reachability.hole_punches.clone(),
        );
        registry.register(
            "mdns_peers_found",
            "Peers found on the LAN by mDNS and dialled",
            reachability.mdns_discovered.clone(),
        );
        for result in ["success", "failure"] {
            drop(
                reachability
                    .hole_punches
                    .get_or_create(&crate::net::ResultLabel {
                        result: result.to_owned(),
                    }),
            );
        }
        let connections = &metrics.connections;
        registry.register(
            "connections_open",
            "Connections open now (the connection manager trims them above its high mark)",
            connections.open.clone(),
        );
        registry.register(
            "connections_trimmed",
            "Peers disconnected by the connection manager to get back to its low mark",
            connections.trimmed.clone(),
        );
        registry.register(
            "topic_mesh_peers",
            "Gossip mesh peers of each trusted publisher's catalog topic",
            connections.topic_mesh_peers.clone(),
        );
        let health = &metrics.health;
        for (name, help, gauge) in [
            (
                "store_closed",
                "1 while the node database is closed after an I/O error (such as a full disk)",
                &health.store_closed,
            ),
            (
                "store_reopens",
                "Times the node database was reopened after an I/O error",
                &health.store_reopens,
            ),
            (
                "catalogs_unsaved",
                "Accepted catalogs in force but not saved yet because the database is closed",
                &health.catalogs_unsaved,
            ),
            (
                "trust_removals_unsaved",
                "Publishers no longer trusted on this node whose removal is not saved yet because \
                 the database is closed (a restart before it is saved would trust them again)",
                &health.trust_removals_unsaved,
            ),
            (
                "clock_behind_floor_seconds",
                "How far the clock is behind the newest accepted catalog's issued_at, beyond the \
                 allowed skew (0: not behind); windows are judged by that time instead",
                &health.clock_behind_floor,
            ),
            (
                "time_floor_seconds",
                "Newest issued_at of an accepted catalog, Unix seconds (0: none)",
                &health.time_floor,
            ),
            (
                "clock_peer_offset_seconds",
                "The median clock of the peers asked lately minus this node's, in seconds \
                 (positive: this clock is behind; 0 until 3 peers answered); a hint only",
                &health.clock_peer_offset,
            ),
            (
                "clock_peers_sampled",
                "How many peers' clocks that median is of (0: fewer than 3 answered)",
                &health.clock_peers_sampled,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        // Every refusal reason is shown from the start, at zero, so a scrape (or an alert on
        // a rate) need not wait for the first refusal of each kind.
        for reason in RefusalReason::ALL {
            drop(metrics.refusals.get_or_create(&ReasonLabel::of(reason)));
        }
        for via in CATALOG_ACCEPTED_VIA {
            drop(metrics.catalogs_accepted.get_or_create(&ViaLabel {
                via: via.to_owned(),
            }));
        }
        for reason in CATALOG_REFUSAL_REASONS {
            drop(
                metrics
                    .catalog_refusals
                    .get_or_create(&CatalogRefusalLabel {
                        reason: reason.to_owned(),
                    }),
            );
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The counters the network event loop keeps, shared with these metrics (every label
    /// shown from the start, at zero).
    pub fn network_counters(&self) -> crate::net::NetworkCounters {
        let connections = |limit: &str| {
            self.connections_refused
                .get_or_create(&LimitLabel {
                    limit: limit.to_owned(),
                })
                .clone()
        };
        let records = |limit: &str| {
            self.provider_records_refused
                .get_or_create(&LimitLabel {
                    limit: limit.to_owned(),
                })
                .clone()
        };
        crate::net::NetworkCounters {
            connections_refused: crate::net::address_limits::Refused {
                pending: connections("pending_per_address"),
                established: connections("established_per_address"),
                pending_subnet: connections("pending_per_subnet"),
                established_subnet: connections("established_per_subnet"),
                inbound: connections("inbound_total"),
            },
            provider_records_refused: crate::net::provider_store::Refused {
                per_peer: records("per_peer"),
                total: records("total"),
                per_key: records("per_key"),
            },
            gossip_messages_refused: self
                .gossip_messages_refused
                .get_or_create(&LimitLabel {
                    limit: "message_bytes".to_owned(),
                })
                .clone(),
            reachability: self.reachability.clone(),
            connections: self.connections.clone(),
            provider_lookup_peers: self.provider_lookup_peers.clone(),
        }
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: RefusalReason) {
        self.refusals.get_or_create(&ReasonLabel::of(reason)).inc();
    }

    /// Counts a catalog head or catalog not taken.
    pub fn catalog_refused(&self, reason: &str) {
        debug_assert!(
            CATALOG_REFUSAL_REASONS.contains(&reason),
            "catalog refusal reason {reason:?} is not in CATALOG_REFUSAL_REASONS"
        );
        self.catalog_refusals
            .get_or_create(&CatalogRefusalLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets the per-publisher catalog gauges to `catalogs` (publishers no longer trusted, or
    /// without a catalog, are left out).
    pub fn set_catalogs(&self, catalogs: &[crate::contract::CatalogInfo]) {
        for family in [
            &self.catalog_sequence,
            &self.catalog_expires_at,
            &self.catalog_revoked_manifests,
            &self.catalog_revoked_delegates,
            &self.catalog_revoked_licences,
        ] {
            family.clear();
        }
        for info in catalogs {
            let Some(sequence) = info.sequence else {
                continue;
            };
            let label = PublisherLabel {
                publisher: info.publisher.to_string(),
            };
            let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.catalog_sequence
                .get_or_create(&label)
                .set(as_gauge(sequence));
            if let Some(expires) = info.expires_at_unix {
                self.catalog_expires_at.get_or_create(&label).set(expires);
            }
            self.catalog_revoked_manifests
                .get_or_create(&label)
                .set(as_gauge(info.revoked_manifests));
            self.catalog_revoked_delegates
                .get_or_create(&label)
                .set(as_gauge(info.revoked_delegates));
            self.catalog_revoked_licences
                .get_or_create(&label)
                .set(as_gauge(info.revoked_licences));
        }
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

#[cfg(test)]
mod tests {
    use libp2p::PeerId;

    use super::*;

    /// Regression (issue 13: "`licet_bad_chunks_total` is labelled per peer id"): however many
    /// peers send bad chunks, `/metrics` has one `licet_bad_chunks_total` series, without a
    /// label, and names none of them.
    #[test]
    fn bad_chunks_are_one_series_whatever_peers_send_them() {
        let metrics = Metrics::new();
        let liars: Vec<PeerId> = (0..1000).map(|_| PeerId::random()).collect();
        for _liar in &liars {
            // What the node does for each chunk that fails verification, whoever sent it.
            metrics.bad_chunks.inc();
        }
        let text = metrics.render();
        let samples: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("licet_bad_chunks_total"))
            .collect();
        assert_eq!(samples, ["licet_bad_chunks_total 1000"], "{text}");
        assert!(
            liars.iter().all(|liar| !text.contains(&liar.to_string())),
            "a peer id is in the metrics"
        );
    }
}
