//! The libp2p swarm and its event loop.
//!
//! [`spawn`] builds the swarm (TCP with TLS preferred and Noise as the fallback, see
//! [`crate::net::secure`], and QUIC; Yamux; Identify, Ping, Kademlia under
//! `/licet/kad/1.0.0`, a block list, connection limits in all, inbound in all (slots kept for
//! this node's own dials), per remote address and per subnet (see [`crate::net::address_limits`]),
//! and `libp2p-stream` for the transfer protocol; AutoNAT, relay v2 server and client, DCUtR,
//! mDNS and UPnP for reachability, see [`reachability`] and `nat`) and returns a cloneable
//! [`Network`] handle.
//! A connection's handshake (TCP connect or accept, security, multiplexer) must finish within
//! [`HANDSHAKE_TIMEOUT`]. The event loop task alone owns the
//! `Swarm`; everything else sends it `Command`s (`handle.rs`) over a bounded channel, each carrying a
//! `oneshot` for its reply. Pending DHT queries and dials live in maps keyed by their ids.
//! Unexpected events are logged at debug level, never panicked on.
//!
//! Streams of `/licet/transfer/1` do not go through the loop: `libp2p-stream`'s `Control` opens
//! and accepts them directly (see the `transfer` module).
//!
//! Kademlia: server mode unless AutoNAT finds the node private (on loopback no external address
//! is ever confirmed, so kad's automatic mode would leave a node a client answering nobody);
//! provider records per manifest id and per
//! publisher catalog (under the catalog head key); inbound records are filtered
//! (`StoreInserts::FilterBoth`): provider records are kept (the provider is always the peer
//! that sent them, and [`crate::net::provider_store`] bounds their number in all and per peer while
//! the node's own provider records are never refused for space); the only value records are
//! catalog heads, stored only if `licet_proto::catalog::check_head_record` passes them (a valid
//! head of its publisher under that publisher's key, unexpired at the node's judged time (its
//! clock raised to its time floor), and not below or beside the head
//! stored already). Records this node puts itself pass the same check first.
//!
//! Gossipsub (`/licet/meshsub/1.1.0`, Licet's own mesh, messages signed by their origin's peer
//! key) carries signed catalog heads on one topic per publisher ([`catalog_topic`]), and
//! partners' signed delivery reports on another ([`deliveries_topic`]). A frame
//! may carry several messages (js-libp2p packs them): frames are bounded by
//! [`MAX_GOSSIP_FRAME_BYTES`] and [`MAX_GOSSIP_MESSAGES_PER_FRAME`], and each message by
//! [`MAX_GOSSIP_BYTES`], which the loop checks first (a larger one is rejected, which costs its
//! sender gossipsub score, and counted). Messages are not forwarded until the node has looked
//! at them: the loop hands each one to the node as a [`NetworkEvent`] over a
//! bounded channel (dropped, and ignored by gossipsub, when the channel is full), and the node
//! reports back with [`Network::report_gossip`].

pub mod address_limits;
pub mod bootstrap;
pub mod conn_manager;
pub mod provider_store;
pub mod secure;

use std::{collections::HashMap, time::Duration};

use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr,
    gossipsub, identify, identity, kad, mdns,
    multiaddr::Protocol,
    noise, ping, relay,
    swarm::{ConnectionId, NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle},
    tcp, upnp, yamux,
};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use provider_store::ProviderStore;

mod contacts;
mod counters;
mod dht;
mod handle;
mod nat;
pub mod reachability;
mod remembered;
mod topic_mesh;
mod topics;

pub use counters::{NetworkCounters, ReachabilityMetrics, ResultLabel};
use dht::{PendingProviders, PendingRecords};
use handle::Command;
pub use handle::{Network, NetworkStopped};
pub use remembered::{FILE_NAME as PEERS_FILE_NAME, PeersFile};
pub use topic_mesh::{ConnectionMetrics, GossipMesh, InUse, TopicLabel};
pub use topics::{
    DELIVERIES_TOPIC_PREFIX, NetworkEvent, catalog_topic, deliveries_topic,
    deliveries_topic_publisher,
};

use reachability::{PublicRanges, Reachability, ReachabilityState, is_relayed};

/// The Kademlia protocol name: Licet's own DHT, never the IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/licet/kad/1.0.0");
/// The transfer protocol name (see `licet_proto::wire`).
pub const TRANSFER_PROTOCOL: StreamProtocol = StreamProtocol::new(licet_proto::wire::PROTOCOL);
/// Identify's protocol version string.
const IDENTIFY_PROTOCOL: &str = "/licet/id/1.0.0";
/// Commands queued for the event loop before senders wait.
const COMMAND_QUEUE: usize = 256;
/// How long a connection with no open stream stays up.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Most established connections in all (inbound ones at most
/// `address_limits::MAX_INBOUND_CONNECTIONS`, so the rest is kept for this node's own dials).
const MAX_CONNECTIONS: u32 = 512;
/// Most established connections with one peer: one each way (both dialled at once), and
/// AutoNAT's dial-back, which needs a connection of its own.
const MAX_CONNECTIONS_PER_PEER: u32 = 3;
/// Most connections being set up at once, each way (one remote address may hold only
/// `address_limits::MAX_PENDING_INBOUND_PER_IP` of them).
const MAX_PENDING_CONNECTIONS: u32 = 128;
/// How long a connection's handshake may take: TCP connect (outbound), multistream-select, the
/// TLS or Noise handshake and Yamux, about four round trips; 5 s leaves room for round trips
/// over a second (a satellite link is ~0.6 s) while a socket that never speaks holds its pending
/// slot half as long as libp2p's default of 10 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most addresses kept per peer learned from Identify.
const MAX_ADDRS_PER_PEER: usize = 8;
/// How long a provider lookup may take.
const PROVIDER_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest gossip message (its data): a catalog head envelope is a few hundred bytes. The node
/// checks it on every message before anything else (gossipsub's own bound is per frame).
pub const MAX_GOSSIP_BYTES: usize = 4 * 1024;
/// Largest gossip frame (one RPC, which may carry several messages and control messages, as
/// js-libp2p packs them): gossipsub's default, room for 14 messages at [`MAX_GOSSIP_BYTES`]
/// with their signing overhead, or dozens of catalog heads, plus control messages (gossipsub
/// bounds those at 16 KiB a frame). A frame over it is dropped whole.
pub const MAX_GOSSIP_FRAME_BYTES: usize = 64 * 1024;
/// Most messages in one gossip frame: each costs a signature check before the node sees it.
/// 64 heads of a few hundred bytes fit in [`MAX_GOSSIP_FRAME_BYTES`]; a frame with more is
/// dropped whole.
pub const MAX_GOSSIP_MESSAGES_PER_FRAME: usize = 64;
/// Heartbeats (of 1 s) a gossip message stays in gossipsub's cache, which is also how long its
/// validation may take: the node accepts a head only after fetching its catalog.
const GOSSIP_HISTORY_HEARTBEATS: usize = 30;
/// Gossip messages waiting for the node to look at them; past this they are dropped.
const GOSSIP_QUEUE: usize = 256;
/// Gossipsub's protocol prefix: Licet's own mesh, never another application's.
const GOSSIP_PROTOCOL_PREFIX: &str = "/licet/meshsub";

/// Most relays that hold a reservation for a node that cannot be dialled.
const MAX_RELAY_RESERVATIONS: usize = 2;
/// The relay protocol a relay server speaks (Identify lists it).
const RELAY_HOP_PROTOCOL: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    // Before `limits`: a connection over its address's share never takes a slot there.
    address_limits: address_limits::Behaviour,
    limits: connection_limits::Behaviour,
    kad: kad::Behaviour<ProviderStore>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
    autonat: Toggle<autonat::v1::Behaviour>,
    relay: Toggle<relay::Behaviour>,
    relay_client: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    upnp: Toggle<upnp::tokio::Behaviour>,
}

/// What the node knows of its place in the network, for `status`.
#[derive(Debug, Clone, Default)]
pub struct NetworkReport {
    /// Whether other nodes can dial it.
    pub reachability: Reachability,
    /// Its public addresses that peers dialled back.
    pub public_addrs: Vec<Multiaddr>,
    /// The relayed addresses it holds a reservation for.
    pub relayed_addrs: Vec<Multiaddr>,
    /// Whether it relays for others (when it is public).
    pub relay_service: bool,
    /// Whether it looks for peers on the LAN with mDNS.
    pub mdns: bool,
    /// Whether it asks the router for a port mapping (UPnP).
    pub upnp: bool,
}

/// What Identify tells peers this node runs.
pub const AGENT_VERSION: &str = concat!("licet-node/", env!("CARGO_PKG_VERSION"));

/// Why the swarm could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// Building the transport or behaviour failed.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// Where and how the swarm runs.
pub struct NetworkConfig {
    /// The node's identity.
    pub keypair: identity::Keypair,
    /// Addresses to listen on (TCP and/or QUIC multiaddrs).
    pub listen: Vec<Multiaddr>,
    /// Peers to join the DHT through (each with `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Which addresses count as public (see [`reachability`]).
    pub public_ranges: PublicRanges,
    /// Relay for nodes that cannot be dialled.
    pub relay_service: bool,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// Ask the router for a port mapping with UPnP.
    pub upnp: bool,
    /// The connection manager's water marks (see [`conn_manager`]).
    pub watermarks: conn_manager::Watermarks,
    /// Where the event loop counts what it refuses.
    pub counters: NetworkCounters,
    /// The time catalog heads are judged at (expiry): the node's clock raised to its time
    /// floor (`licet_proto::policy::judged_now`).
    pub judged_now: JudgedNow,
    /// Where the peers connected to are remembered for the next start (see [`remembered`]);
    /// `None`: nothing remembered.
    pub peers_file: Option<PeersFile>,
}

/// The time a node judges windows and expiries at (see [`NetworkConfig::judged_now`]).
pub type JudgedNow = std::sync::Arc<dyn Fn() -> licet_proto::Timestamp + Send + Sync>;

/// AutoNAT's settings: a first probe 2 s after start, then every 10 s until three probes agree,
/// then every 5 minutes; one server is asked again after 15 s at the soonest. Peers at
/// private addresses may serve and be served (a LAN, a lab, a partner's enterprise network):
/// which verdicts count is decided by [`PublicRanges`], not by AutoNAT.
fn autonat_config() -> autonat::v1::Config {
    autonat::v1::Config {
        timeout: Duration::from_secs(15),
        boot_delay: Duration::from_secs(2),
        retry_interval: Duration::from_secs(10),
        refresh_interval: Duration::from_secs(5 * 60),
        throttle_server_period: Duration::from_secs(15),
        only_global_ips: false,
        ..autonat::v1::Config::default()
    }
}

/// Builds the swarm, starts listening, and spawns the event loop. The loop ends when every
/// [`Network`] handle is dropped.
pub fn spawn(
    config: NetworkConfig,
) -> Result<(Network, mpsc::Receiver<NetworkEvent>), NetworkError> {
    let build = |e: &dyn std::fmt::Display| NetworkError::Build(e.to_string());
    let local_peer_id = config.keypair.public().to_peer_id();
    // A node that listens only on loopback cannot be dialled from elsewhere: it does not probe.
    let dialable = config
        .listen
        .iter()
        .any(|addr| reachability::ip_of(addr).is_some_and(|ip| !ip.is_loopback()));
    // A LAN feature that cannot start (no interface watcher here) does not keep the node down.
    let mdns = if config.mdns {
        mdns::tokio::Behaviour::new(mdns::Config::default(), local_peer_id)
            .inspect_err(|e| warn!("mDNS is off: it cannot start: {e}"))
            .ok()
    } else {
        None
    };
    let mdns_on = mdns.is_some();
    let gossip_mesh = GossipMesh::for_low_mark(config.watermarks.low);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            // Offered in this order: TLS with AES-GCM is the faster cipher here (see
            // `secure`); Noise for peers that do not speak it.
            (crate::net::secure::Config::new, noise::Config::new),
            yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_quic()
        // Relayed connections (rare, small answers only) are secured with Noise.
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| build(&e))?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            kad_config.set_query_timeout(PROVIDER_QUERY_TIMEOUT);
            // The event loop bootstraps on its own timer when it has bootstrap peers; kad's
            // automatic one only warns on a lone node.
            kad_config.set_periodic_bootstrap_interval(None);
            // Peers join the routing table when they say where they listen, and only if their
            // bucket has room (`dht.rs`, `add_to_routing_table`), never on connection alone.
            kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
            let store = ProviderStore::new(
                peer_id,
                crate::net::provider_store::ProviderLimits::default(),
                config.counters.provider_records_refused.clone(),
            );
            let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let gossip_config = gossipsub::ConfigBuilder::default()
                .protocol_id_prefix(GOSSIP_PROTOCOL_PREFIX)
                // Meshes fit under the connection manager's low mark (see `topic_mesh`).
                .mesh_n_high(gossip_mesh.mesh_n_high)
                .mesh_n(gossip_mesh.mesh_n)
                .mesh_n_low(gossip_mesh.mesh_n_low)
                .mesh_outbound_min(gossip_mesh.mesh_outbound_min)
                // Bounds the frame; each message is checked against `MAX_GOSSIP_BYTES` when
                // it reaches the event loop.
                .max_transmit_size(MAX_GOSSIP_FRAME_BYTES)
                .max_publish_messages(MAX_GOSSIP_MESSAGES_PER_FRAME)
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                // A head is forwarded once its catalog is fetched (`catalogs/watch.rs`): it
                // waits in the message cache meanwhile, 30 heartbeats (30 s) rather than 5.
                .history_length(GOSSIP_HISTORY_HEARTBEATS)
                // The same head from two origins is one message.
                .message_id_fn(|message: &gossipsub::Message| {
                    gossipsub::MessageId::from(
                        licet_proto::merkle::leaf_hash(&message.data).0.to_vec(),
                    )
                })
                .build()?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| e.to_owned())?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                address_limits: address_limits::Behaviour::new(
                    address_limits::Limits::default(),
                    config.counters.connections_refused.clone(),
                ),
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(MAX_CONNECTIONS))
                        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                        .with_max_pending_incoming(Some(MAX_PENDING_CONNECTIONS))
                        .with_max_pending_outgoing(Some(MAX_PENDING_CONNECTIONS)),
                ),
                kad,
                gossipsub,
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                        .with_agent_version(AGENT_VERSION.to_owned()),
                ),
                ping: ping::Behaviour::default(),
                stream: libp2p_stream::Behaviour::new(),
                // AutoNAT v1: v2's client asks only peers it dialled itself, so a public seed
                // that others dial (and that dials no one) would never learn it is public.
                autonat: Toggle::from(
                    dialable.then(|| autonat::v1::Behaviour::new(peer_id, autonat_config())),
                ),
                // Relay v2's defaults bound what a relay gives: 128 reservations (4 per peer),
                // 16 circuits (4 per peer), each for 2 minutes and 128 KiB: room for
                // manifests, availability and catalogs, never for bulk chunks.
                relay: Toggle::from(
                    config
                        .relay_service
                        .then(|| relay::Behaviour::new(peer_id, relay::Config::default())),
                ),
                relay_client,
                dcutr: dcutr::Behaviour::new(peer_id),
                mdns: Toggle::from(mdns),
                upnp: Toggle::from(config.upnp.then(upnp::tokio::Behaviour::default)),
            })
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .with_connection_timeout(HANDSHAKE_TIMEOUT)
        .build();

    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen {
                addr: addr.clone(),
                reason: bootstrap::cause_chain(&e),
            })?;
    }
    // Every bootstrap address is dialled by the event loop until it connects; one that names
    // its peer is in the routing table from the start.
    for addr in &config.bootstrap {
        if let Some(peer) = peer_of(addr) {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
    }

    let remembered_peers = config.peers_file;
    let remembered = remembered_peers
        .as_ref()
        .map(|file| remembered::load(&file.path))
        .unwrap_or_default();

    let control = swarm.behaviour().stream.new_control();
    let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
    let (events_tx, events) = mpsc::channel(GOSSIP_QUEUE);
    let in_use = InUse::default();
    let mut event_loop = EventLoop {
        swarm,
        commands: receiver,
        events: events_tx,
        pending_dials: HashMap::new(),
        pending_providers: HashMap::new(),
        pending_records: HashMap::new(),
        has_bootstrap: !config.bootstrap.is_empty() || !remembered.is_empty(),
        bootstrap_dials: bootstrap::BootstrapDials::new(config.bootstrap.clone()),
        reannounce_at: 1,
        gossip_refused: config.counters.gossip_messages_refused.clone(),
        connections: HashMap::new(),
        contacts: contacts::Contacts::default(),
        public_ranges: config.public_ranges,
        reachability: ReachabilityState::default(),
        relays: HashMap::new(),
        relay_listeners: HashMap::new(),
        direct_waiters: HashMap::new(),
        report_flags: (config.relay_service, mdns_on, config.upnp),
        conn_manager: conn_manager::ConnManager::new(config.watermarks),
        in_use: in_use.clone(),
        topic_mesh: topic_mesh::TopicMesh::default(),
        gossip_mesh,
        counters: config.counters,
        judged_now: config.judged_now,
        remembered_peers,
        remembered_last: String::new(),
    };
    event_loop.add_remembered_peers(remembered);
    tokio::spawn(event_loop.run());
    Ok((
        Network {
            commands,
            control,
            local_peer_id,
            in_use,
        },
        events,
    ))
}

/// The `/p2p/<peer id>` at the end of `addr`.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// Waits until `at`, or forever if it is `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    pending_dials: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
    pending_providers: HashMap<kad::QueryId, PendingProviders>,
    pending_records: HashMap<kad::QueryId, PendingRecords>,
    /// Whether the DHT has peers to bootstrap from: bootstrap addresses or remembered peers.
    has_bootstrap: bool,
    /// Bootstrap addresses given without a peer id, until a dial of each connects.
    bootstrap_dials: bootstrap::BootstrapDials,
    /// The routing table size at which every provided key is announced again (see
    /// [`EventLoop::reannounce_as_the_table_grows`]).
    reannounce_at: usize,
    /// Gossip messages refused for their size.
    gossip_refused: Counter,
    /// Every open connection, by peer, with the address at the other end.
    connections: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
    /// Where connected peers listen, and where other peers said peers listen.
    contacts: contacts::Contacts,
    public_ranges: PublicRanges,
    reachability: ReachabilityState,
    /// Connected peers that offer a relay, at a public address of theirs.
    relays: HashMap<PeerId, Multiaddr>,
    /// Each relay asked for a reservation (pending or accepted), with the listener and the
    /// circuit address, until the listener closes or the relay's connection does.
    relay_listeners: HashMap<PeerId, (libp2p::core::transport::ListenerId, Multiaddr)>,
    /// Callers waiting for a direct connection to a peer ([`Network::wait_direct`]).
    direct_waiters: HashMap<PeerId, Vec<oneshot::Sender<()>>>,
    /// (relay service, mDNS, UPnP) as configured, for the report.
    report_flags: (bool, bool, bool),
    /// The open connections, trimmed above the high mark.
    conn_manager: conn_manager::ConnManager,
    /// Peers fetched from or served to lately (protected from trimming).
    in_use: InUse,
    /// Subscribed topics and the lookups for their peers.
    topic_mesh: topic_mesh::TopicMesh,
    /// Gossipsub's mesh sizes.
    gossip_mesh: GossipMesh,
    counters: NetworkCounters,
    /// The time catalog heads are judged at.
    judged_now: JudgedNow,
    /// Where the connected peers are written down for the next start (`remembered.rs`), and
    /// what was written last.
    remembered_peers: Option<PeersFile>,
    remembered_last: String,
}

impl EventLoop {
    async fn run(mut self) {
        let mut bootstrap_timer = tokio::time::interval(bootstrap::BOOTSTRAP_ROUND);
        let mut trim_timer = tokio::time::interval(conn_manager::TRIM_CHECK_INTERVAL);
        let mut discovery_timer = tokio::time::interval(topic_mesh::TOPIC_DISCOVERY_INTERVAL);
        let mut remember_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + remembered::FIRST_SAVE,
            remembered::SAVE_INTERVAL,
        );
        self.dial_bootstrap_addrs();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        debug!("every network handle is gone; event loop stops");
                        return;
                    }
                },
                () = sleep_until_some(self.bootstrap_dials.retry_at()) => {
                    self.dial_bootstrap_addrs();
                }
                _ = trim_timer.tick() => self.trim_connections(),
                _ = discovery_timer.tick() => self.discover_topic_peers(),
                _ = remember_timer.tick() => self.save_remembered_peers(),
                _ = bootstrap_timer.tick() => {
                    self.dial_bootstrap_addrs();
                    if self.has_bootstrap {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                debug!(%peer_id, %addr, "connected");
                self.conn_manager
                    .established(connection_id, peer_id, std::time::Instant::now());
                self.on_connection(peer_id, connection_id, addr);
                self.count_connections();
                self.trim_connections();
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.on_bootstrap_connected(connection_id, peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                self.conn_manager.closed(connection_id);
                self.count_connections();
                self.on_connection_closed(peer_id, connection_id);
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                if !self.public_ranges.is_public(&address) {
                    // AutoNAT confirms loopback and private addresses too (one machine, one
                    // LAN): they are no address to give the internet.
                    self.swarm.remove_external_address(&address);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.on_listener_gone(listener_id);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                debug!(?peer_id, "outgoing connection failed: {error}");
                self.on_bootstrap_failed(connection_id, &error);
                if let Some(peer) = peer_id {
                    self.forget_unreachable(peer, &error);
                }
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocols.contains(&RELAY_HOP_PROTOCOL) {
                    self.on_relay_found(peer_id, &info.listen_addrs);
                }
                self.contacts
                    .identified(peer_id, info.listen_addrs.clone(), &self.public_ranges);
                if info.protocols.contains(&KAD_PROTOCOL) {
                    let addrs = info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER);
                    self.add_to_routing_table(peer_id, addrs);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::v1::Event::StatusChanged {
                new,
                ..
            })) => self.on_nat_status(new),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => self.on_reservation(relay_peer_id),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => {
                let outcome = if result.is_ok() { "success" } else { "failure" };
                info!(peer = %remote_peer_id, "hole punch: {outcome}");
                self.counters
                    .reachability
                    .hole_punches
                    .get_or_create(&ResultLabel {
                        result: outcome.to_owned(),
                    })
                    .inc();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                self.on_mdns(found);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(upnp::Event::NewExternalAddr {
                external_addr,
                ..
            })) => {
                info!(addr = %external_addr, "the router maps a port to this node (UPnP)");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                if message.data.len() > MAX_GOSSIP_BYTES {
                    self.gossip_refused.inc();
                    debug!(
                        source = %propagation_source,
                        topic = %message.topic,
                        "gossip message of {} bytes refused: over {MAX_GOSSIP_BYTES} bytes",
                        message.data.len()
                    );
                    self.report_gossip(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Reject,
                    );
                    return;
                }
                let topic = message.topic.into_string();
                let event = if topic.starts_with(DELIVERIES_TOPIC_PREFIX) {
                    NetworkEvent::DeliveryReport {
                        topic,
                        data: message.data,
                        source: propagation_source,
                        message_id: message_id.clone(),
                    }
                } else {
                    NetworkEvent::CatalogHead {
                        topic,
                        data: message.data,
                        source: propagation_source,
                        message_id: message_id.clone(),
                    }
                };
                if self.events.try_send(event).is_err() {
                    debug!("gossip queue full; a message is dropped");
                    self.report_gossip(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Ignore,
                    );
                }
            }
            other => debug!(?other, "swarm event"),
        }
    }
}
