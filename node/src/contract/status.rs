//! The bodies of the node's own state: `GET /v1/status` (its network, health, counts and
//! limits), `GET`/`PUT /v1/limits` and `GET /v1/peers`.

use licet_proto::PublicKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{CatalogInfo, schemas};

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusReply {
    /// This node's libp2p peer id.
    pub peer_id: String,
    /// Addresses it listens on, each ending in `/p2p/<peer id>` (give them to `--bootstrap`).
    pub listen_addrs: Vec<String>,
    /// The crate version.
    pub version: String,
    /// The configured region, if any.
    pub region: Option<String>,
    /// Connected peers.
    pub connected_peers: usize,
    /// Trusted publishers.
    pub trusted_publishers: usize,
    /// Content items by state.
    pub content: ContentCounts,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// Each trusted publisher's catalog, by publisher key.
    pub catalogs: Vec<CatalogInfo>,
    /// The node's own faults: its database and its clock.
    #[serde(default)]
    pub health: NodeHealth,
    /// Whether other nodes can dial it, and how they reach it if not.
    #[serde(default)]
    pub network: NetworkInfo,
    /// The bandwidth limits in force.
    #[serde(default)]
    pub limits: LimitsReply,
}

/// Four rates in bytes per second, 0 for no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitRates {
    /// Uploads to all peers together.
    pub upload: u64,
    /// Downloads from all peers together.
    pub download: u64,
    /// Uploads to each peer.
    pub peer_upload: u64,
    /// Downloads from each peer.
    pub peer_download: u64,
}

/// `GET /v1/limits` (and the reply of `PUT`), and `limits` in `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitsReply {
    /// The limits in force now.
    pub in_force: LimitRates,
    /// The configured limits (config.toml, `LICET_*`, flags), outside any schedule rule.
    pub configured: LimitRates,
    /// The rates changed while running (`limits set`); they last until `limits reset` or a
    /// restart.
    pub changed: LimitsChange,
    /// The schedule rule in force now (`mon,tue 08:00-18:00`), if any.
    pub schedule_active: Option<String>,
    /// Every schedule rule, the same way.
    pub schedule: Vec<String>,
    /// Whether peers on this node's LAN are exempt.
    pub lan_exempt: bool,
}

/// `PUT /v1/limits`: first drop every change made while running if `reset`, then set the rates
/// given (bytes per second, 0 for no limit; absent: unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    /// Uploads to all peers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<u64>,
    /// Downloads from all peers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<u64>,
    /// Uploads to each peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_upload: Option<u64>,
    /// Downloads from each peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_download: Option<u64>,
    /// Go back to the configured limits first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

/// How other nodes reach this one, in `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct NetworkInfo {
    /// `public` (a peer dialled a public address of it back), `private` (none could: behind a
    /// NAT or a firewall) or `unknown` (not tested yet).
    pub reachability: crate::net::reachability::Reachability,
    /// Its public addresses that peers dialled back.
    pub public_addrs: Vec<String>,
    /// Addresses through relays that hold a reservation for it (while it is private).
    pub relayed_addrs: Vec<String>,
    /// Whether it relays for nodes that cannot be dialled (while it is public).
    pub relay_service: bool,
    /// Whether it looks for peers on the LAN (mDNS).
    pub mdns: bool,
    /// Whether it asks the router for a port mapping (UPnP).
    pub upnp: bool,
}

/// The node's own faults, in `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct NodeHealth {
    /// `None` while the database works; else why it is closed (it reopens by itself once the
    /// cause, such as a full disk, is gone).
    pub database_problem: Option<String>,
    /// Publishers whose newest catalog is in force but not saved yet (the database is closed):
    /// it is saved when the database reopens; a restart before that goes back to the saved one
    /// until the node fetches this one again.
    #[serde(default)]
    #[schema(value_type = Vec<schemas::PublicKeyHex>)]
    pub unsaved_catalogs: Vec<PublicKey>,
    /// Publishers removed from the trust store while the database was closed: no longer
    /// trusted on this node, but a restart before the removal is saved would trust them again.
    #[serde(default)]
    #[schema(value_type = Vec<schemas::PublicKeyHex>)]
    pub unsaved_trust_removals: Vec<PublicKey>,
    /// The time floor: the newest `issued_at` of an accepted catalog, RFC 3339.
    pub time_floor: Option<String>,
    /// How far the clock is behind the time floor beyond the allowed skew, in seconds; windows
    /// are then judged by the floor less the skew.
    pub clock_behind_seconds: Option<i64>,
    /// How far the median clock of the peers asked lately is ahead of this node's, in seconds
    /// (negative: this clock is ahead of theirs); set only beyond the allowed skew, once at
    /// least 3 peers answered. A hint for the operator: windows are still judged by this clock
    /// and the time floor, never by what peers say.
    #[serde(default)]
    pub clock_behind_peers_seconds: Option<i64>,
}

impl NodeHealth {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.database_problem.is_none()
            && self.unsaved_catalogs.is_empty()
            && self.unsaved_trust_removals.is_empty()
            && self.clock_behind_seconds.is_none()
            && self.clock_behind_peers_seconds.is_none()
    }
}

/// How many content items are in each state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ContentCounts {
    /// Complete and served.
    pub complete: usize,
    /// Being fetched.
    pub downloading: usize,
    /// Stopped with an error or refused.
    pub failed: usize,
    /// Downloads paused by the user (`licet-node pause`).
    #[serde(default)]
    pub paused: usize,
    /// Of all items, those with a file out of service because it changed on disk.
    #[serde(default)]
    pub changed: usize,
}

/// One peer in `GET /v1/peers`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Addresses it is connected on.
    pub addrs: Vec<String>,
    /// Whether every connection to it goes through a relay (no direct one yet): only small
    /// answers cross a relay, never chunks.
    #[serde(default)]
    pub relayed: bool,
    /// Bytes received from it in chunks.
    pub bytes_in: u64,
    /// Bytes sent to it in chunks.
    pub bytes_out: u64,
    /// Whether it is banned (it sent a bad chunk or a malformed message).
    pub banned: bool,
    /// Why it was banned.
    pub ban_reason: Option<String>,
    /// When its ban ends (RFC 3339), while it is banned; then it may connect again.
    #[serde(default)]
    pub banned_until: Option<String>,
    /// Bans it earned that are still remembered (a day after each ends): each lasts twice the
    /// one before, from 10 minutes up to a day.
    #[serde(default)]
    pub offences: u32,
}

/// `GET /v1/peers`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PeersReply {
    /// Connected peers, then banned peers that are not connected (until their bans end).
    pub peers: Vec<PeerInfo>,
}
