//! The libp2p swarm and its event loop.
//!
//! [`spawn`] builds the swarm (TCP with TLS preferred and Noise as the fallback, see
//! [`crate::secure`], and QUIC; Yamux; Identify, Ping, Kademlia under
//! `/licet/kad/1.0.0`, a block list, connection limits in all, inbound in all (slots kept for
//! this node's own dials), per remote address and per subnet (see [`crate::address_limits`]),
//! and `libp2p-stream` for the transfer protocol; AutoNAT, relay v2 server and client, DCUtR,
//! mDNS and UPnP for reachability, see [`reachability`] and `nat.rs`) and returns a cloneable
//! [`Network`] handle.
//! A connection's handshake (TCP connect or accept, security, multiplexer) must finish within
//! [`HANDSHAKE_TIMEOUT`]. The event loop task alone owns the
//! `Swarm`; everything else sends it [`Command`]s over a bounded channel, each carrying a
//! `oneshot` for its reply. Pending DHT queries and dials live in maps keyed by their ids.
//! Unexpected events are logged at debug level, never panicked on.
//!
//! Streams of `/licet/transfer/1` do not go through the loop: `libp2p-stream`'s `Control` opens
//! and accepts them directly (see `transfer.rs`).
//!
//! Kademlia: server mode unless AutoNAT finds the node private (on loopback no external address
//! is ever confirmed, so kad's automatic mode would leave a node a client answering nobody);
//! provider records per manifest id and per
//! publisher catalog (under the catalog head key); inbound records are filtered
//! (`StoreInserts::FilterBoth`): provider records are kept (the provider is always the peer
//! that sent them, and [`crate::provider_store`] bounds their number in all and per peer while
//! the node's own provider records are never refused for space); the only value records are
//! catalog heads, stored only if `licet_proto::catalog::check_head_record` passes them (a valid
//! head of its publisher under that publisher's key, unexpired, and not below or beside the head
//! stored already). Records this node puts itself pass the same check first.
//!
//! Gossipsub (`/licet/meshsub/1.1.0`, Licet's own mesh, messages signed by their origin's peer
//! key) carries signed catalog heads on one topic per publisher ([`catalog_topic`]). A frame
//! may carry several messages (js-libp2p packs them): frames are bounded by
//! [`MAX_GOSSIP_FRAME_BYTES`] and [`MAX_GOSSIP_MESSAGES_PER_FRAME`], and each message by
//! [`MAX_GOSSIP_BYTES`], which the loop checks first (a larger one is rejected, which costs its
//! sender gossipsub score, and counted). Messages are not forwarded until the node has looked
//! at them: the loop hands each one to the node as a [`NetworkEvent::CatalogHead`] over a
//! bounded channel (dropped, and ignored by gossipsub, when the channel is full), and the node
//! reports back with [`Network::report_gossip`].

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr,
    gossipsub, identify, identity,
    kad::{self, store::RecordStore as _},
    mdns,
    multiaddr::Protocol,
    noise, ping, relay,
    swarm::{
        ConnectionId, NetworkBehaviour, SwarmEvent,
        behaviour::toggle::Toggle,
        dial_opts::{DialOpts, PeerCondition},
    },
    tcp, upnp, yamux,
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::{address_limits, provider_store::ProviderStore};

mod nat;
pub mod reachability;

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

/// What the rest of the node asks of the event loop.
enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    DialPeer {
        peer: PeerId,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    StartProviding {
        key: [u8; 32],
    },
    StopProviding {
        key: [u8; 32],
    },
    GetProviders {
        key: [u8; 32],
        reply: oneshot::Sender<HashSet<PeerId>>,
    },
    Connected {
        reply: oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Reachability {
        reply: oneshot::Sender<NetworkReport>,
    },
    WaitDirect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Ban {
        peer: PeerId,
    },
    Unban {
        peer: PeerId,
    },
    Bootstrap,
    PutRecord {
        key: [u8; 32],
        value: Vec<u8>,
    },
    GetRecords {
        key: [u8; 32],
        reply: oneshot::Sender<Vec<Vec<u8>>>,
    },
    Subscribe {
        topic: gossipsub::IdentTopic,
    },
    Unsubscribe {
        topic: gossipsub::IdentTopic,
    },
    Publish {
        topic: gossipsub::IdentTopic,
        data: Vec<u8>,
    },
    ReportGossip {
        message_id: gossipsub::MessageId,
        source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    },
}

/// What the event loop tells the node.
pub enum NetworkEvent {
    /// A gossip message on a catalog topic, not forwarded until the node reports on it with
    /// [`Network::report_gossip`].
    CatalogHead {
        /// The topic's name (see [`catalog_topic`]).
        topic: String,
        /// The message's bytes (at most [`MAX_GOSSIP_BYTES`]).
        data: Vec<u8>,
        /// The peer that passed it on.
        source: PeerId,
        /// Its gossipsub id.
        message_id: gossipsub::MessageId,
    },
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

/// The gossip topic on which `publisher`'s catalog heads travel.
pub fn catalog_topic(publisher: &licet_proto::PublicKey) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("licet/catalog/{publisher}"))
}

/// A cloneable handle to the event loop.
#[derive(Clone)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    local_peer_id: PeerId,
}

/// The event loop has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the network event loop has stopped")]
pub struct NetworkStopped;

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

impl Network {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// A handle for opening transfer streams.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetworkStopped> {
        let (reply, receive) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetworkStopped)?;
        receive.await.map_err(|_| NetworkStopped)
    }

    async fn tell(&self, command: Command) -> Result<(), NetworkStopped> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetworkStopped)
    }

    /// Dials `addr` (which should end in `/p2p/<peer id>`); returns the peer once connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<Result<PeerId, String>, NetworkStopped> {
        self.ask(|reply| Command::Dial { addr, reply }).await
    }

    /// Connects to `peer` at the addresses the DHT knows for it (no-op if connected).
    pub async fn dial_peer(&self, peer: PeerId) -> Result<Result<PeerId, String>, NetworkStopped> {
        self.ask(|reply| Command::DialPeer { peer, reply }).await
    }

    /// Announces in the DHT that this node provides `key`.
    pub async fn start_providing(&self, key: [u8; 32]) -> Result<(), NetworkStopped> {
        self.tell(Command::StartProviding { key }).await
    }

    /// Stops announcing `key`.
    pub async fn stop_providing(&self, key: [u8; 32]) -> Result<(), NetworkStopped> {
        self.tell(Command::StopProviding { key }).await
    }

    /// The peers the DHT says provide `key` (waits for the lookup, at most 10 s).
    pub async fn providers(&self, key: [u8; 32]) -> Result<HashSet<PeerId>, NetworkStopped> {
        self.ask(|reply| Command::GetProviders { key, reply }).await
    }

    /// Connected peers and their addresses.
    pub async fn connected(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, NetworkStopped> {
        self.ask(|reply| Command::Connected { reply }).await
    }

    /// The addresses this node listens on, each with `/p2p/<peer id>`.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkStopped> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Whether other nodes can reach this one, and how.
    pub async fn report(&self) -> Result<NetworkReport, NetworkStopped> {
        self.ask(|reply| Command::Reachability { reply }).await
    }

    /// Waits (at most `timeout`) until this node has a direct connection to `peer`, not only one
    /// through a relay (a hole punch follows a relayed connection); `false` if none came.
    pub async fn wait_direct(&self, peer: PeerId, timeout: Duration) -> bool {
        let (reply, receive) = oneshot::channel();
        if self
            .commands
            .send(Command::WaitDirect { peer, reply })
            .await
            .is_err()
        {
            return false;
        }
        matches!(tokio::time::timeout(timeout, receive).await, Ok(Ok(())))
    }

    /// Disconnects `peer` and refuses its connections until [`Network::unban`].
    pub async fn ban(&self, peer: PeerId) -> Result<(), NetworkStopped> {
        self.tell(Command::Ban { peer }).await
    }

    /// Accepts `peer`'s connections again (its ban ended).
    pub async fn unban(&self, peer: PeerId) -> Result<(), NetworkStopped> {
        self.tell(Command::Unban { peer }).await
    }

    /// Refreshes the routing table.
    pub async fn bootstrap(&self) -> Result<(), NetworkStopped> {
        self.tell(Command::Bootstrap).await
    }

    /// Stores `value` under `key` here (if it passes the record check) and in the DHT.
    pub async fn put_record(&self, key: [u8; 32], value: Vec<u8>) -> Result<(), NetworkStopped> {
        self.tell(Command::PutRecord { key, value }).await
    }

    /// Every value the DHT (this node's store included) holds under `key`, unchecked.
    pub async fn get_records(&self, key: [u8; 32]) -> Result<Vec<Vec<u8>>, NetworkStopped> {
        self.ask(|reply| Command::GetRecords { key, reply }).await
    }

    /// Joins a gossip topic.
    pub async fn subscribe(&self, topic: gossipsub::IdentTopic) -> Result<(), NetworkStopped> {
        self.tell(Command::Subscribe { topic }).await
    }

    /// Leaves a gossip topic.
    pub async fn unsubscribe(&self, topic: gossipsub::IdentTopic) -> Result<(), NetworkStopped> {
        self.tell(Command::Unsubscribe { topic }).await
    }

    /// Publishes `data` on a gossip topic.
    pub async fn publish(
        &self,
        topic: gossipsub::IdentTopic,
        data: Vec<u8>,
    ) -> Result<(), NetworkStopped> {
        self.tell(Command::Publish { topic, data }).await
    }

    /// Tells gossipsub what the node made of a message: forward it, drop it, or drop it and
    /// penalise the peer that sent it.
    pub async fn report_gossip(
        &self,
        message_id: gossipsub::MessageId,
        source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) -> Result<(), NetworkStopped> {
        self.tell(Command::ReportGossip {
            message_id,
            source,
            acceptance,
        })
        .await
    }
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
    /// Where the event loop counts what it refuses.
    pub counters: NetworkCounters,
}

/// What the event loop counts for `/metrics` (clones share their counts).
#[derive(Debug, Clone, Default)]
pub struct NetworkCounters {
    /// Inbound connections denied by the per-address, per-subnet and inbound bounds.
    pub connections_refused: address_limits::Refused,
    /// Other peers' provider records not stored.
    pub provider_records_refused: crate::provider_store::Refused,
    /// Gossip messages refused for being over [`MAX_GOSSIP_BYTES`].
    pub gossip_messages_refused: Counter,
    /// Reachability, relays, hole punches, the LAN.
    pub reachability: ReachabilityMetrics,
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

/// The `result` label of [`NetworkCounters::hole_punches`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: String,
}

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
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            // Offered in this order: TLS with AES-GCM is the faster cipher here (see
            // `secure`); Noise for peers that do not speak it.
            (crate::secure::Config::new, noise::Config::new),
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
            let store = ProviderStore::new(
                peer_id,
                crate::provider_store::ProviderLimits::default(),
                config.counters.provider_records_refused.clone(),
            );
            let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let gossip_config = gossipsub::ConfigBuilder::default()
                .protocol_id_prefix(GOSSIP_PROTOCOL_PREFIX)
                // Bounds the frame; each message is checked against `MAX_GOSSIP_BYTES` when
                // it reaches the event loop.
                .max_transmit_size(MAX_GOSSIP_FRAME_BYTES)
                .max_publish_messages(MAX_GOSSIP_MESSAGES_PER_FRAME)
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
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
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.to_owned(),
                    key.public(),
                )),
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
                mdns: Toggle::from(if config.mdns {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config::default(),
                        peer_id,
                    )?)
                } else {
                    None
                }),
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
                reason: e.to_string(),
            })?;
    }
    for addr in &config.bootstrap {
        match peer_of(addr) {
            Some(peer) => {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                if let Err(e) = swarm.dial(addr.clone()) {
                    warn!(%addr, "cannot dial bootstrap peer: {e}");
                }
            }
            None => warn!(%addr, "bootstrap address has no /p2p/<peer id>; ignored"),
        }
    }

    let control = swarm.behaviour().stream.new_control();
    let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
    let (events_tx, events) = mpsc::channel(GOSSIP_QUEUE);
    let event_loop = EventLoop {
        swarm,
        commands: receiver,
        events: events_tx,
        pending_dials: HashMap::new(),
        pending_providers: HashMap::new(),
        pending_records: HashMap::new(),
        has_bootstrap: !config.bootstrap.is_empty(),
        reannounce_at: 1,
        gossip_refused: config.counters.gossip_messages_refused.clone(),
        connections: HashMap::new(),
        public_ranges: config.public_ranges,
        reachability: ReachabilityState::default(),
        relays: HashMap::new(),
        requested_reservations: HashMap::new(),
        direct_waiters: HashMap::new(),
        report_flags: (config.relay_service, config.mdns, config.upnp),
        counters: config.counters,
    };
    tokio::spawn(event_loop.run());
    Ok((
        Network {
            commands,
            control,
            local_peer_id,
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

struct PendingProviders {
    providers: HashSet<PeerId>,
    replies: Vec<oneshot::Sender<HashSet<PeerId>>>,
}

struct PendingRecords {
    values: Vec<Vec<u8>>,
    reply: oneshot::Sender<Vec<Vec<u8>>>,
}

/// Most values kept from one record lookup (honest nodes hold one head per key).
const MAX_VALUES_PER_LOOKUP: usize = 32;

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    pending_dials: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
    pending_providers: HashMap<kad::QueryId, PendingProviders>,
    pending_records: HashMap<kad::QueryId, PendingRecords>,
    has_bootstrap: bool,
    /// The routing table size at which every provided key is announced again (see
    /// [`EventLoop::reannounce_as_the_table_grows`]).
    reannounce_at: usize,
    /// Gossip messages refused for their size.
    gossip_refused: Counter,
    /// Every open connection, by peer, with the address at the other end.
    connections: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
    public_ranges: PublicRanges,
    reachability: ReachabilityState,
    /// Connected peers that offer a relay, at a public address of theirs.
    relays: HashMap<PeerId, Multiaddr>,
    /// Relayed listen addresses asked of each relay, until it accepts or the listener fails.
    requested_reservations: HashMap<PeerId, (libp2p::core::transport::ListenerId, Multiaddr)>,
    /// Callers waiting for a direct connection to a peer ([`Network::wait_direct`]).
    direct_waiters: HashMap<PeerId, Vec<oneshot::Sender<()>>>,
    /// (relay service, mDNS, UPnP) as configured, for the report.
    report_flags: (bool, bool, bool),
    counters: NetworkCounters,
}

impl EventLoop {
    async fn run(mut self) {
        let mut bootstrap_timer = tokio::time::interval(Duration::from_secs(300));
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
                _ = bootstrap_timer.tick() => {
                    if self.has_bootstrap {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let opts = DialOpts::from(addr.clone());
                let id = opts.connection_id();
                if let Some(peer) = peer_of(&addr) {
                    if self.swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                }
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot dial {addr}: {e}")));
                    }
                }
            }
            Command::DialPeer { peer, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                let opts = DialOpts::peer_id(peer).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot dial {peer}: {e}")));
                    }
                }
            }
            Command::StartProviding { key } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&key))
                {
                    warn!("cannot announce {}: {e}", hex::encode(key));
                }
            }
            Command::StopProviding { key } => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&kad::RecordKey::new(&key));
            }
            Command::GetProviders { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.pending_providers
                    .entry(id)
                    .or_insert_with(|| PendingProviders {
                        providers: HashSet::new(),
                        replies: Vec::new(),
                    })
                    .replies
                    .push(reply);
            }
            Command::Connected { reply } => {
                let peers = self
                    .connections
                    .iter()
                    .map(|(peer, connections)| {
                        let mut addrs: Vec<Multiaddr> = connections.values().cloned().collect();
                        addrs.sort();
                        addrs.dedup();
                        (*peer, addrs)
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::WaitDirect { peer, reply } => {
                if self.is_direct(&peer) {
                    let _ = reply.send(());
                } else {
                    let waiters = self.direct_waiters.entry(peer).or_default();
                    waiters.retain(|w| !w.is_closed());
                    waiters.push(reply);
                }
            }
            Command::Reachability { reply } => {
                let (relay_service, mdns, upnp) = self.report_flags;
                let _ = reply.send(NetworkReport {
                    reachability: self.reachability.reachability(),
                    public_addrs: self.reachability.public_addrs().cloned().collect(),
                    relayed_addrs: self.reachability.relayed_addrs().cloned().collect(),
                    relay_service,
                    mdns,
                    upnp,
                });
            }
            Command::ListenAddrs { reply } => {
                let local = *self.swarm.local_peer_id();
                let addrs = self
                    .swarm
                    .listeners()
                    .map(|a| a.clone().with(Protocol::P2p(local)))
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Ban { peer } => {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.swarm.behaviour_mut().kad.remove_peer(&peer);
            }
            Command::Unban { peer } => {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
            Command::Bootstrap => {
                if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                    debug!("bootstrap skipped: {e}");
                }
            }
            Command::PutRecord { key, value } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                if let Err(reason) = self.check_record(&record) {
                    debug!("own record not put: {reason}");
                    return;
                }
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    warn!("cannot put record {}: {e}", hex::encode(key));
                }
            }
            Command::GetRecords { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(kad::RecordKey::new(&key));
                self.pending_records.insert(
                    id,
                    PendingRecords {
                        values: Vec::new(),
                        reply,
                    },
                );
            }
            Command::Subscribe { topic } => {
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                    warn!(%topic, "cannot subscribe: {e}");
                }
            }
            Command::Unsubscribe { topic } => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
            }
            Command::Publish { topic, data } => {
                if data.len() > MAX_GOSSIP_BYTES {
                    warn!(%topic, "not published: {} bytes, over {MAX_GOSSIP_BYTES}", data.len());
                    return;
                }
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), data)
                {
                    Ok(_) => {}
                    // Nobody else subscribes yet, or the same bytes went out a moment ago: the
                    // DHT record and direct requests still carry the head.
                    Err(
                        gossipsub::PublishError::NoPeersSubscribedToTopic
                        | gossipsub::PublishError::Duplicate,
                    ) => {}
                    Err(e) => warn!(%topic, "cannot publish: {e}"),
                }
            }
            Command::ReportGossip {
                message_id,
                source,
                acceptance,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &source, acceptance);
            }
        }
    }

    /// The check every value record passes before this node stores it (see the module docs).
    fn check_record(&mut self, record: &kad::Record) -> Result<(), String> {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let stored = store.get(&record.key).map(|r| r.value.clone());
        licet_proto::catalog::check_head_record(
            record.key.as_ref(),
            &record.value,
            stored.as_deref(),
            licet_proto::Timestamp::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
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
                self.on_connection(peer_id, connection_id, addr);
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => self.on_connection_closed(peer_id, connection_id),
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
                    self.on_relay_found(peer_id);
                }
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
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
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Reject,
                        );
                    return;
                }
                let event = NetworkEvent::CatalogHead {
                    topic: message.topic.into_string(),
                    data: message.data,
                    source: propagation_source,
                    message_id: message_id.clone(),
                };
                if self.events.try_send(event).is_err() {
                    debug!("gossip queue full; a catalog head message is dropped");
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Ignore,
                        );
                }
            }
            other => debug!(?other, "swarm event"),
        }
    }

    /// A provider record goes to the peers closest to its key that the node knows when it
    /// announces, and kad announces again only every 12 hours: content added while the node
    /// had few peers (a seed that starts first, a swarm that grows) would stay findable at
    /// those few. So each time the routing table reaches 1, 2, 4, 8, … peers, every provided
    /// key is announced again: a handful of times in a node's life, logarithmic in the swarm.
    fn reannounce_as_the_table_grows(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let peers: usize = kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
        if peers < self.reannounce_at {
            return;
        }
        while self.reannounce_at <= peers {
            self.reannounce_at *= 2;
        }
        debug!(peers, "routing table grew: announcing again");
        self.announce_all_again();
    }

    /// Announces every provided key again (the table grew, or this node's addresses changed:
    /// a provider record carries the addresses to dial it at).
    fn announce_all_again(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let keys: Vec<kad::RecordKey> = kad::store::RecordStore::provided(kad.store_mut())
            .map(|record| record.key.clone())
            .collect();
        for key in keys {
            if let Err(e) = kad.start_providing(key) {
                debug!("not announced again: {e}");
            }
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            } => self.reannounce_as_the_table_grows(),
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            } => {
                let finished = step.last;
                if let Some(pending) = self.pending_providers.get_mut(&id) {
                    match result {
                        Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                            // Kademlia knows a provider's addresses (its record's) only while
                            // the lookup runs, and a provider behind a NAT is in no routing
                            // table: dial it now, through the relay it named if need be.
                            for provider in &providers {
                                if !self.swarm.is_connected(provider)
                                    && provider != self.swarm.local_peer_id()
                                {
                                    let opts = DialOpts::peer_id(*provider)
                                        .condition(PeerCondition::DisconnectedAndNotDialing)
                                        .build();
                                    if let Err(e) = self.swarm.dial(opts) {
                                        debug!(%provider, "cannot dial a provider: {e}");
                                    }
                                }
                            }
                            pending.providers.extend(providers);
                        }
                        Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                        Err(e) => debug!("provider lookup ended: {e}"),
                    }
                }
                if finished && let Some(pending) = self.pending_providers.remove(&id) {
                    for reply in pending.replies {
                        let _ = reply.send(pending.providers.clone());
                    }
                }
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                // The store bounds other peers' records in all, per peer and per key.
                let store = self.swarm.behaviour_mut().kad.store_mut();
                if let Err(e) = store.add_remote_provider(record) {
                    debug!("provider record not stored: {e}");
                }
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => match self.check_record(&record) {
                Ok(()) => {
                    let store = self.swarm.behaviour_mut().kad.store_mut();
                    if let Err(e) = store.put(record) {
                        debug!(%source, "record not stored: {e}");
                    }
                }
                Err(reason) => debug!(%source, "record refused: {reason}"),
            },
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetRecord(result),
                step,
                ..
            } => {
                if let Some(pending) = self.pending_records.get_mut(&id) {
                    match result {
                        Ok(kad::GetRecordOk::FoundRecord(found)) => {
                            if pending.values.len() < MAX_VALUES_PER_LOOKUP
                                && !pending.values.contains(&found.record.value)
                            {
                                pending.values.push(found.record.value);
                            }
                        }
                        Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => {}
                        Err(e) => debug!("record lookup ended: {e}"),
                    }
                }
                if step.last
                    && let Some(pending) = self.pending_records.remove(&id)
                {
                    let _ = pending.reply.send(pending.values);
                }
            }
            other => debug!(?other, "kademlia event"),
        }
    }
}
