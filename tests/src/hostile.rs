//! A hostile peer for tests: a libp2p swarm built in-process from `licet-proto` and libp2p (never
//! a flag of the shipped node) that speaks `/licet/transfer/1` and misbehaves on command.
//!
//! As a **provider** it announces content (the genuine signed manifest, every chunk available)
//! and then answers chunk requests the way its [`Answer`] says: wrong bytes, a valid-looking but
//! wrong audit path, the wrong length, a stall, a slowloris trickle, an oversize, truncated,
//! unknown-variant or garbage frame. It may also answer manifest requests with a replayed
//! envelope signed for something else ([`HostilePeer::replay_manifest`]).
//!
//! As a **requester** it sends raw bytes on a fresh stream ([`HostilePeer::send_raw`]) and
//! floods a node with pipelined requests on several streams, reading the answers or never
//! reading them ([`HostilePeer::flood`]).
//!
//! Against **catalogs** it answers `CatalogHead`, `CatalogPart` and `CatalogParts` requests with
//! any head and any catalog bytes it is given ([`HostilePeer::serve_catalog`]: a replayed older
//! catalog, a newer head with another catalog's bytes, or parts tampered with), puts any record into a node's DHT store
//! ([`HostilePeer::put_record_to`], on Licet's Kademlia protocol) and reads back what the node
//! stores ([`HostilePeer::records_held_by`]), and gossips any bytes on a publisher's catalog
//! topic ([`HostilePeer::gossip`], on Licet's gossipsub mesh). Built as a raw gossiper
//! ([`HostilePeer::raw_gossiper`]), it has no gossipsub of its own and writes gossip frames by
//! hand (see [`gossip`]).
//!
//! Against the **DHT** it floods a node with provider records and asks it which providers it
//! holds for a key, in raw Kademlia messages (see [`dht`]).
//!
//! Each peer runs on its own small tokio runtime, which is shut down (every task and
//! connection with it) when the [`HostilePeer`] is dropped, also when a test panics. It only
//! ever listens on and dials 127.0.0.1.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol, gossipsub, identify, identity,
    kad::{self, store::MemoryStore},
    noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts},
    tcp, yamux,
};
use licet_proto::{
    manifest::VerifiedManifest,
    merkle::{self, AuditPath, MerkleTree},
    policy::RefusalReason,
    wire::{
        self, Bitfield, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, Request, RequestFrame, RequestId,
        Response, ResponseFrame,
    },
};
use tokio::sync::{mpsc, oneshot};

pub mod dht;
pub mod gossip;

/// The transfer protocol, as the node names it.
pub const TRANSFER: StreamProtocol = StreamProtocol::new(wire::PROTOCOL);
/// Longest any one hostile operation waits (a dial, a stream, an answer).
pub const HOSTILE_TIMEOUT: Duration = Duration::from_secs(30);
/// Licet's Kademlia protocol, as the node names it.
pub const KAD: StreamProtocol = StreamProtocol::new("/licet/kad/1.0.0");

/// The head and catalog bytes a hostile peer answers catalog requests with, whatever is asked.
#[derive(Clone)]
struct CatalogLie {
    /// `None`: head requests are refused, only parts are served.
    head: Option<Vec<u8>>,
    /// A catalog file (its root is served in pieces, its parts by hash), or any bytes (served
    /// in pieces as they are).
    catalog: Vec<u8>,
    /// How it answers `CatalogParts`.
    parts: PartLie,
}

/// How a hostile peer answers `CatalogParts` requests.
#[derive(Clone)]
enum PartLie {
    /// With the parts asked for, from its catalog file.
    Genuine,
    /// With the parts asked for, one byte of each flipped.
    Tampered,
    /// With parts of this other catalog file, none of them the one asked for.
    OtherCatalog(Vec<u8>),
}

impl CatalogLie {
    /// What `CatalogPart` pieces are cut from: the file's root, or the bytes as they are.
    fn root(&self) -> Vec<u8> {
        match catalog_file(&self.catalog) {
            Some(file) => file.root,
            None => self.catalog.clone(),
        }
    }

    /// The answer for the part named `hash` (the file's, or a lie).
    fn part(&self, hash: &licet_proto::CatalogPartHash) -> Option<Vec<u8>> {
        let named = |file: &[u8]| {
            catalog_file(file)?
                .parts
                .into_iter()
                .find(|part| licet_proto::catalog_parts::catalog_part_hash(part) == *hash)
        };
        match &self.parts {
            PartLie::Genuine => named(&self.catalog),
            PartLie::Tampered => {
                let mut part = named(&self.catalog)?;
                if let Some(last) = part.last_mut() {
                    *last ^= 1;
                }
                Some(part)
            }
            PartLie::OtherCatalog(other) => catalog_file(other)?
                .parts
                .into_iter()
                .find(|part| licet_proto::catalog_parts::catalog_part_hash(part) != *hash),
        }
    }
}

fn catalog_file(bytes: &[u8]) -> Option<licet_proto::catalog_parts::CatalogFile> {
    licet_proto::encoding::decode("catalog file", bytes, bytes.len()).ok()
}

/// How a hostile provider answers chunk requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The right bytes and proof (an honest provider, for comparison).
    Honest,
    /// The right proof and length, one byte of the chunk flipped.
    WrongBytes,
    /// The right bytes with the audit path of another chunk (valid-looking, wrong).
    WrongProof,
    /// The right proof with one byte fewer than the chunk has (the frame itself is consistent).
    WrongLength,
    /// Never answers a chunk request (keeps reading, so the stream stays open).
    Stall,
    /// Refuses every chunk request as not held, while its availability claims every chunk.
    NotHeld,
    /// Answers correctly, one byte at a time with this delay between bytes.
    Slowloris(Duration),
    /// Answers correctly, each chunk after this delay (an honest but slow provider).
    Throttled(Duration),
    /// Answers with a length prefix over `MAX_FRAME_BYTES` (4 GiB).
    OversizeFrame,
    /// Answers with a frame that announces more bytes than it sends, then closes the stream.
    TruncatedFrame,
    /// Answers with a response frame whose variant does not exist.
    UnknownVariant,
    /// Answers with a small frame of bytes that decode to nothing.
    Garbage,
    /// Answers a chunk request with a well-formed chunk under a request id never used.
    UnrequestedId,
    /// Answers availability with bitfields that do not fit the manifest (one bit too many).
    MisfitAvailability,
    /// Answers a chunk request with the length prefix of the largest frame a reader accepts
    /// (`MAX_FRAME_BYTES`, a legal size for an answer), then trickles its bytes, one every this
    /// delay, until the node closes the stream.
    TrickleLargest(Duration),
}

/// What a hostile provider pretends to hold: the genuine signed manifest and the real content,
/// so that its lies are the ones it chooses.
pub struct HostileContent {
    envelope: Vec<u8>,
    manifest: VerifiedManifest,
    trees: Vec<MerkleTree>,
    chunks: Vec<Vec<Vec<u8>>>,
}

impl HostileContent {
    /// Reads the signed manifest at `manifest_path` and its content under `content_dir` (small
    /// releases only: the chunks are kept in memory).
    pub fn load(manifest_path: &Path, content_dir: &Path) -> Arc<HostileContent> {
        let envelope = std::fs::read(manifest_path).unwrap();
        let manifest = VerifiedManifest::from_bytes(&envelope).unwrap();
        let body = manifest.manifest();
        let mut trees = Vec::new();
        let mut chunks = Vec::new();
        for entry in &body.files {
            let bytes = std::fs::read(content_dir.join(entry.path.to_relative_path())).unwrap();
            let count = entry.chunk_count(body.chunk_size);
            let file_chunks: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    let range = merkle::chunk_range(i, entry.size, body.chunk_size).unwrap();
                    bytes[range.start as usize..range.end as usize].to_vec()
                })
                .collect();
            let leaves = file_chunks.iter().map(|c| merkle::leaf_hash(c)).collect();
            let tree = MerkleTree::from_leaves(leaves);
            assert_eq!(
                tree.root(),
                entry.root,
                "content does not match the manifest"
            );
            trees.push(tree);
            chunks.push(file_chunks);
        }
        Arc::new(HostileContent {
            envelope,
            manifest,
            trees,
            chunks,
        })
    }

    /// The manifest id.
    pub fn id(&self) -> licet_proto::ManifestId {
        self.manifest.id()
    }
}

/// What a hostile peer saw and did, for assertions.
#[derive(Default)]
pub struct HostileStats {
    /// The agent version each peer's Identify announced.
    pub agents: Mutex<HashMap<PeerId, String>>,
    /// Manifest requests received.
    pub manifest_requests: AtomicU64,
    /// Availability requests received.
    pub availability_requests: AtomicU64,
    /// Chunk requests received.
    pub chunk_requests: AtomicU64,
    /// Chunk answers sent that were wrong (bytes, proof, length or frame).
    pub bad_answers_sent: AtomicU64,
    /// Chunk answers sent that were right.
    pub good_answers_sent: AtomicU64,
    /// Transfer streams the other side opened to it.
    pub inbound_streams: AtomicU64,
    /// Connections that closed.
    pub connections_closed: AtomicU64,
    /// `CatalogPart` requests received.
    pub catalog_part_requests: AtomicU64,
    /// `CatalogParts` requests received.
    pub catalog_parts_requests: AtomicU64,
    /// Largest-frame answers begun (prefix and first byte sent) by [`Answer::TrickleLargest`].
    pub trickles_started: AtomicU64,
}

impl HostileStats {
    /// A counter's current value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a node did with raw bytes sent on a fresh stream.
#[derive(Debug)]
pub struct RawOutcome {
    /// The bytes it sent back before the stream ended.
    pub reply: Vec<u8>,
    /// Whether the node closed or reset the stream (rather than the wait running out).
    pub closed_by_node: bool,
}

/// What a flood achieved (see [`HostilePeer::flood`] and [`HostilePeer::drain_flood`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct FloodReport {
    /// Request frames written.
    pub requests_sent: u64,
    /// Response frames read (on streams that read; those that never read count theirs in
    /// `drained_responses`).
    pub responses_read: u64,
    /// Streams that were opened.
    pub streams_opened: u64,
    /// Streams that read and got at least one answer.
    pub streams_answered: u64,
    /// Streams that read and that the node closed or reset before any answer (refused).
    pub streams_refused: u64,
    /// Streams that never read, read at last by [`HostilePeer::drain_flood`], that the node
    /// had given up: it ended them, or sent nothing more for [`DRAIN_IDLE`] (a node that gave up
    /// a write may drop the stream without a word), with fewer than [`DRAIN_SERVED`] answers.
    pub stuck_streams_given_up: u64,
    /// Streams that never read that the node still served when they were read at last: they
    /// delivered [`DRAIN_SERVED`] answers.
    pub stuck_streams_served: u64,
    /// Answers read from streams that never read, once [`HostilePeer::drain_flood`] read them.
    pub drained_responses: u64,
}

/// How long [`HostilePeer::drain_flood`] waits for more of a stream before it counts the
/// stream as given up.
pub const DRAIN_IDLE: Duration = Duration::from_secs(10);
/// Answers a drained stream delivers that show the node still serves it: the most a node asks
/// a requester to keep in flight (`MAX_REQUESTS_IN_FLIGHT`), more than any window of a stream
/// that was not read holds.
pub const DRAIN_SERVED: u64 = wire::MAX_REQUESTS_IN_FLIGHT as u64;

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    gossipsub: libp2p::swarm::behaviour::toggle::Toggle<gossipsub::Behaviour>,
}

enum Command {
    PutRecordTo {
        peer: PeerId,
        key: [u8; 32],
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    GetRecord {
        peer: PeerId,
        key: [u8; 32],
        reply: oneshot::Sender<Result<Vec<Vec<u8>>, String>>,
    },
    Gossip {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    Listen {
        reply: oneshot::Sender<Multiaddr>,
    },
}

/// A hostile peer (see the module docs). Dropping it shuts it down.
pub struct HostilePeer {
    runtime: Option<tokio::runtime::Runtime>,
    keypair: identity::Keypair,
    peer_id: PeerId,
    addr: Multiaddr,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    connected: Arc<Mutex<HashSet<PeerId>>>,
    /// What it saw and did.
    pub stats: Arc<HostileStats>,
    replay: Arc<Mutex<Option<Vec<u8>>>>,
    catalog: Arc<Mutex<Option<CatalogLie>>>,
    /// `true` while `CatalogPart` answers are held back ([`HostilePeer::hold_catalog_parts`]).
    catalog_hold: tokio::sync::watch::Sender<bool>,
    /// What [`HostilePeer::flood`] achieved so far.
    flood_report: Arc<Mutex<FloodReport>>,
    /// Set by [`HostilePeer::drain_flood`]: streams that never read read at last.
    drain: tokio::sync::watch::Sender<bool>,
}

impl HostilePeer {
    /// A hostile peer that holds nothing (a requester: raw frames, floods).
    pub fn requester() -> HostilePeer {
        HostilePeer::start(None, Answer::Honest, false)
    }

    /// A hostile provider of `content` that answers chunk requests as `answer` says.
    pub fn provider(content: Arc<HostileContent>, answer: Answer) -> HostilePeer {
        HostilePeer::start(Some(content), answer, false)
    }

    /// A requester without gossipsub that writes gossip frames by hand (see [`gossip`]).
    pub fn raw_gossiper() -> HostilePeer {
        HostilePeer::start(None, Answer::Honest, true)
    }

    fn start(
        content: Option<Arc<HostileContent>>,
        answer: Answer,
        raw_gossip: bool,
    ) -> HostilePeer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let keypair = identity::Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let stats = Arc::new(HostileStats::default());
        let connected = Arc::new(Mutex::new(HashSet::new()));
        let replay = Arc::new(Mutex::new(None));
        let catalog = Arc::new(Mutex::new(None));
        let (catalog_hold, held) = tokio::sync::watch::channel(false);
        let (commands, receiver) = mpsc::channel(16);
        let (control, incoming) = runtime.block_on(async {
            let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
                .with_tokio()
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .unwrap()
                .with_behaviour(|key| {
                    let peer = key.public().to_peer_id();
                    let mut kad = kad::Behaviour::with_config(
                        peer,
                        MemoryStore::new(peer),
                        kad::Config::new(KAD),
                    );
                    kad.set_mode(Some(kad::Mode::Server));
                    let gossip_config = gossipsub::ConfigBuilder::default()
                        .protocol_id_prefix("/licet/meshsub")
                        .validation_mode(gossipsub::ValidationMode::Strict)
                        .build()
                        .unwrap();
                    Behaviour {
                        identify: identify::Behaviour::new(identify::Config::new(
                            "/licet/id/1.0.0".to_owned(),
                            key.public(),
                        )),
                        ping: ping::Behaviour::default(),
                        stream: libp2p_stream::Behaviour::new(),
                        kad,
                        gossipsub: (!raw_gossip)
                            .then(|| {
                                gossipsub::Behaviour::new(
                                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                                    gossip_config,
                                )
                                .unwrap()
                            })
                            .into(),
                    }
                })
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
                .build();
            swarm
                .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
                .unwrap();
            let mut control = swarm.behaviour().stream.new_control();
            let incoming = control.accept(TRANSFER).unwrap();
            if raw_gossip {
                let mut gossip_streams = control.accept(gossip::MESHSUB).unwrap();
                tokio::spawn(async move {
                    while let Some((_, stream)) = gossip_streams.next().await {
                        tokio::spawn(gossip::drain(stream));
                    }
                });
            }
            tokio::spawn(run_swarm(swarm, receiver, connected.clone(), stats.clone()));
            (control, incoming)
        });
        runtime.spawn(accept_streams(
            incoming,
            content,
            answer,
            stats.clone(),
            replay.clone(),
            catalog.clone(),
            held,
        ));
        let mut peer = HostilePeer {
            runtime: Some(runtime),
            keypair,
            peer_id,
            addr: Multiaddr::empty(),
            commands,
            control,
            connected,
            stats,
            replay,
            catalog,
            catalog_hold,
            flood_report: Arc::default(),
            drain: tokio::sync::watch::channel(false).0,
        };
        let listen = peer.block_on(async {
            let (reply, answer) = oneshot::channel();
            peer.commands.send(Command::Listen { reply }).await.unwrap();
            tokio::time::timeout(HOSTILE_TIMEOUT, answer).await
        });
        peer.addr = listen
            .expect("the hostile peer listens in time")
            .unwrap()
            .with(libp2p::multiaddr::Protocol::P2p(peer_id));
        peer
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(future)
    }

    /// Its peer id, as text.
    pub fn peer_id(&self) -> String {
        self.peer_id.to_string()
    }

    /// Its listen address on 127.0.0.1 with `/p2p/<peer id>` (for `?peer=` hints).
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// From now on, answers every manifest request with `envelope` (a replay of something
    /// signed for another purpose).
    pub fn replay_manifest(&self, envelope: Vec<u8>) {
        *self.replay.lock().unwrap() = Some(envelope);
    }

    /// From now on, answers every `CatalogHead` request with `head` and every `CatalogPart`
    /// request with parts of `catalog`, whichever publisher or catalog hash is asked for.
    pub fn serve_catalog(&self, head: Vec<u8>, catalog: Vec<u8>) {
        *self.catalog.lock().unwrap() = Some(CatalogLie {
            head: Some(head),
            catalog,
            parts: PartLie::Genuine,
        });
    }

    /// As [`HostilePeer::serve_catalog`], but every catalog part it sends (`CatalogParts`) has
    /// one byte flipped: the root is genuine, the parts are not the ones their hashes name.
    pub fn serve_catalog_with_tampered_parts(&self, head: Vec<u8>, catalog: Vec<u8>) {
        *self.catalog.lock().unwrap() = Some(CatalogLie {
            head: Some(head),
            catalog,
            parts: PartLie::Tampered,
        });
    }

    /// As [`HostilePeer::serve_catalog`], but it answers `CatalogParts` with genuine parts of
    /// `other`, another catalog file: the root is genuine, the parts belong elsewhere.
    pub fn serve_catalog_with_parts_of(&self, head: Vec<u8>, catalog: Vec<u8>, other: Vec<u8>) {
        *self.catalog.lock().unwrap() = Some(CatalogLie {
            head: Some(head),
            catalog,
            parts: PartLie::OtherCatalog(other),
        });
    }

    /// From now on, answers every `CatalogPart` request with parts of `catalog`, and refuses
    /// `CatalogHead` requests (so the head can reach a node only by other means).
    pub fn serve_catalog_parts(&self, catalog: Vec<u8>) {
        *self.catalog.lock().unwrap() = Some(CatalogLie {
            head: None,
            catalog,
            parts: PartLie::Genuine,
        });
    }

    /// While `hold` is true, every `CatalogPart` request is counted
    /// ([`HostileStats::catalog_part_requests`]) and its answer held back until `hold` is set
    /// false again (or [`HOSTILE_TIMEOUT`] passes): a source that is slow to send a catalog.
    pub fn hold_catalog_parts(&self, hold: bool) {
        self.catalog_hold.send_replace(hold);
    }

    /// Asks the node `peer` (dialled already) to store `key` → `value` in its DHT store, as any
    /// DHT node may ask another, and waits for its acknowledgement. A node acknowledges a put
    /// whether it stores the record or not, and only after it has judged it (libp2p's Kademlia
    /// answers once the node has taken the record from it), so a lookup sent after this
    /// returns sees the outcome. `Err` if the node did not acknowledge it.
    pub fn put_record_to(&self, peer: &str, key: [u8; 32], value: Vec<u8>) -> Result<(), String> {
        let peer: PeerId = peer.parse().unwrap();
        self.ask(|reply| Command::PutRecordTo {
            peer,
            key,
            value,
            reply,
        })?
    }

    /// The values the node `peer` (dialled already) answers a DHT lookup of `key` with: what it
    /// stored under `key`. `Err` if the node did not answer the lookup (an empty list means it
    /// answered, holding nothing).
    pub fn records_held_by(&self, peer: &str, key: [u8; 32]) -> Result<Vec<Vec<u8>>, String> {
        let peer: PeerId = peer.parse().unwrap();
        self.ask(|reply| Command::GetRecord { peer, key, reply })?
    }

    /// Joins `topic` and publishes `data` on it once a connected peer has joined it too.
    pub fn gossip(&self, topic: &str, data: Vec<u8>) -> Result<(), String> {
        let topic = topic.to_owned();
        self.ask(|reply| Command::Gossip { topic, data, reply })?
    }

    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        self.block_on(async {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(make(reply))
                .await
                .map_err(|_| "the hostile swarm stopped".to_owned())?;
            match tokio::time::timeout(HOSTILE_TIMEOUT, answer).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(_)) => Err("the hostile swarm stopped".to_owned()),
                Err(_) => Err("timed out".to_owned()),
            }
        })
    }

    /// Dials `addr` (a node's address with `/p2p/`); the node's peer id once connected.
    pub fn dial(&self, addr: &str) -> Result<PeerId, String> {
        let addr: Multiaddr = addr.parse().unwrap();
        self.block_on(async {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::Dial { addr, reply })
                .await
                .map_err(|_| "the hostile swarm stopped".to_owned())?;
            match tokio::time::timeout(HOSTILE_TIMEOUT, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err("the hostile swarm stopped".to_owned()),
                Err(_) => Err("dial timed out".to_owned()),
            }
        })
    }

    /// [`HostilePeer::dial`] of the node at `addr`, which must connect; the node's peer id.
    fn dial_node(&self, addr: &str) -> PeerId {
        self.dial(addr)
            .expect("the hostile peer connects to the node")
    }

    /// Whether it has a connection with `peer` (a node's peer id as text).
    pub fn is_connected(&self, peer: &str) -> bool {
        let peer: PeerId = peer.parse().unwrap();
        self.connected.lock().unwrap().contains(&peer)
    }

    /// Waits (at most `timeout`) until it has no connection with `peer`; whether that happened.
    pub fn wait_disconnected(&self, peer: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if !self.is_connected(peer) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        !self.is_connected(peer)
    }

    /// Whether the node at `addr` refuses it: it cannot connect, or cannot get an answer to an
    /// availability request on a fresh stream within a few seconds.
    pub fn is_refused_by(&self, addr: &str, manifest: licet_proto::ManifestId) -> bool {
        let Ok(peer) = self.dial(addr) else {
            return true;
        };
        let mut control = self.control.clone();
        self.block_on(async move {
            let asked = async {
                let mut stream = control.open_stream(peer, TRANSFER).await.ok()?;
                let mut frame = Vec::new();
                wire::encode_request(
                    &RequestFrame {
                        id: RequestId(1),
                        request: Request::Availability { manifest },
                    },
                    &mut frame,
                );
                stream.write_all(&frame).await.ok()?;
                stream.flush().await.ok()?;
                let mut body = Vec::new();
                read_frame(&mut stream, &mut body).await.ok()?;
                wire::decode_response(&body).ok().map(|_| ())
            };
            !matches!(
                tokio::time::timeout(Duration::from_secs(5), asked).await,
                Ok(Some(()))
            )
        })
    }

    /// Asks the node at `addr` for chunk `index` of file `file` of `manifest`, as a downloader
    /// that states `region` (`None`: a plain chunk request, stating no region), and returns the
    /// answer's header (`None` if none came within [`HOSTILE_TIMEOUT`]).
    pub fn ask_chunk(
        &self,
        addr: &str,
        manifest: licet_proto::ManifestId,
        (file, index): (u32, u64),
        region: Option<&str>,
    ) -> Option<Response> {
        let request = match region {
            Some(region) => Request::ChunkForRegion {
                manifest,
                file,
                index,
                region: region.parse().expect("a region code"),
            },
            None => Request::Chunk {
                manifest,
                file,
                index,
            },
        };
        self.ask_node(addr, request)
    }

    /// Sends `request` to the node at `addr` on a fresh transfer stream and returns the
    /// answer's header (`None` if none came within [`HOSTILE_TIMEOUT`]).
    pub fn ask_node(&self, addr: &str, request: Request) -> Option<Response> {
        let peer = self.dial_node(addr);
        let mut control = self.control.clone();
        self.block_on(async move {
            let mut stream = open_transfer(&mut control, peer).await;
            ask(&mut stream, request)
                .await
                .map(|(response, _)| response)
        })
    }

    /// Connects to the node at `addr`, opens a transfer stream, writes `bytes` on it, and
    /// reads what comes back until the node ends the stream or `wait` passes.
    pub fn send_raw(
        &self,
        addr: &str,
        bytes: Vec<u8>,
        close_after: bool,
        wait: Duration,
    ) -> RawOutcome {
        let peer = self.dial_node(addr);
        let mut control = self.control.clone();
        self.block_on(async move {
            let mut stream = open_transfer(&mut control, peer).await;
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            if close_after {
                // Half-close: the node sees the end of the frame it was reading.
                let _ = stream.close().await;
            }
            let mut reply = Vec::new();
            let mut buffer = [0u8; 4096];
            let closed_by_node = loop {
                match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break true,
                    Ok(Ok(n)) => reply.extend_from_slice(&buffer[..n]),
                    Err(_) => break false,
                }
            };
            RawOutcome {
                reply,
                closed_by_node,
            }
        })
    }

    /// Opens `streams` transfer streams to the node at `addr`, writes `bytes` on each and keeps
    /// them open, never reading, until the peer is dropped. Returns how many streams opened.
    pub fn hold_streams(&self, addr: &str, streams: usize, bytes: &[u8]) -> u64 {
        let peer = self.dial_node(addr);
        let runtime = self.runtime.as_ref().unwrap();
        let tasks: Vec<_> = (0..streams)
            .map(|_| {
                let mut control = self.control.clone();
                let bytes = bytes.to_vec();
                runtime.spawn(async move {
                    let opened =
                        tokio::time::timeout(HOSTILE_TIMEOUT, control.open_stream(peer, TRANSFER))
                            .await;
                    let Ok(Ok(mut stream)) = opened else {
                        return false;
                    };
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.flush().await;
                    tokio::spawn(async move {
                        let _stream = stream;
                        std::future::pending::<()>().await;
                    });
                    true
                })
            })
            .collect();
        self.block_on(async {
            let mut opened = 0;
            for task in tasks {
                if let Ok(true) = task.await {
                    opened += 1;
                }
            }
            opened
        })
    }

    /// Opens `streams` transfer streams to the node at `addr` one after another, each kept open,
    /// and asks on each what the node holds of `manifest`; whether each got an answer (a stream
    /// the node refuses is closed without one). One at a time, so that none is lost to a burst.
    pub fn open_streams_one_by_one(
        &self,
        addr: &str,
        manifest: licet_proto::ManifestId,
        streams: usize,
    ) -> Vec<bool> {
        let peer = self.dial_node(addr);
        let runtime = self.runtime.as_ref().unwrap();
        let mut answered = Vec::new();
        for _ in 0..streams {
            let mut control = self.control.clone();
            let got = runtime.block_on(async move {
                let mut stream = open_transfer(&mut control, peer).await;
                let got = ask(&mut stream, Request::Availability { manifest })
                    .await
                    .is_some();
                // Kept open until the peer is dropped.
                tokio::spawn(async move {
                    let _stream = stream;
                    std::future::pending::<()>().await;
                });
                got
            });
            answered.push(got);
        }
        answered
    }

    /// Asks the node at `addr` which chunks of `content` it holds, then fetches every one of
    /// them and checks it against the manifest's root, as a downloader would. Returns
    /// `(held, verified, failed)`: a chunk the node says it holds but answers wrongly (or not
    /// at all) counts as failed.
    pub fn check_served(&self, addr: &str, content: &HostileContent) -> (u64, u64, u64) {
        let peer = self.dial_node(addr);
        let mut control = self.control.clone();
        let manifest = content.manifest.id();
        let body = content.manifest.manifest().clone();
        self.block_on(async move {
            let mut stream = open_transfer(&mut control, peer).await;
            let mut query = async |request: Request| ask(&mut stream, request).await;
            let Some((Response::Availability { files }, _)) =
                query(Request::Availability { manifest }).await
            else {
                return (0, 0, 0);
            };
            let (mut held, mut verified, mut failed) = (0, 0, 0);
            for (file, bits) in files.iter().enumerate() {
                let entry = &body.files[file];
                for index in (0..bits.len()).filter(|&i| bits.get(i)) {
                    held += 1;
                    let ok = match query(Request::Chunk {
                        manifest,
                        file: file as u32,
                        index,
                    })
                    .await
                    {
                        Some((Response::Chunk { proof, .. }, bytes)) => merkle::verify_chunk(
                            &entry.root,
                            index,
                            entry.chunk_count(body.chunk_size),
                            &bytes,
                            &proof,
                        ),
                        _ => false,
                    };
                    if ok {
                        verified += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
            (held, verified, failed)
        })
    }

    /// Sends the node at `addr`, on one stream and in one write, requests for the first
    /// `chunks` chunks of `content` (ids `0..chunks`) and then an availability request (id
    /// `chunks`), and returns the ids of the answers in the order they arrive (short if an
    /// answer did not come within [`HOSTILE_TIMEOUT`]).
    pub fn answer_order(&self, addr: &str, content: &HostileContent, chunks: u32) -> Vec<u32> {
        let peer = self.dial_node(addr);
        let mut control = self.control.clone();
        let manifest = content.id();
        self.block_on(async move {
            let mut stream = open_transfer(&mut control, peer).await;
            let mut frames = Vec::new();
            for id in 0..=chunks {
                let request = if id < chunks {
                    Request::Chunk {
                        manifest,
                        file: 0,
                        index: u64::from(id),
                    }
                } else {
                    Request::Availability { manifest }
                };
                let mut frame = Vec::new();
                wire::encode_request(
                    &RequestFrame {
                        id: RequestId(id),
                        request,
                    },
                    &mut frame,
                );
                frames.extend_from_slice(&frame);
            }
            if stream.write_all(&frames).await.is_err() || stream.flush().await.is_err() {
                return Vec::new();
            }
            let mut order = Vec::new();
            let mut reply = Vec::new();
            while order.len() <= chunks as usize {
                let read =
                    tokio::time::timeout(HOSTILE_TIMEOUT, read_frame(&mut stream, &mut reply));
                let Ok(Ok(())) = read.await else {
                    break;
                };
                let Ok((frame, _)) = wire::decode_response(&reply) else {
                    break;
                };
                order.push(frame.id.0);
            }
            order
        })
    }

    /// Floods the node at `addr`: opens `streams` transfer streams and writes `requests` chunk
    /// requests (cycling through every chunk of `content`) on each without waiting for answers.
    /// If `read` the answers are read and thrown away as fast as they come; otherwise they are
    /// not read until [`HostilePeer::drain_flood`]. Returns after every request is written (or
    /// the node stops taking them) and, if reading, after `hold`; the streams stay open until
    /// the peer is dropped. What the streams saw after it returns: [`HostilePeer::flood_report`].
    pub fn flood(
        &self,
        addr: &str,
        content: &HostileContent,
        streams: usize,
        requests: usize,
        read: bool,
        hold: Duration,
    ) -> FloodReport {
        let peer = self.dial_node(addr);
        let id = content.id();
        let chunks: Vec<(u32, u64)> = content
            .chunks
            .iter()
            .enumerate()
            .flat_map(|(f, c)| (0..c.len() as u64).map(move |i| (f as u32, i)))
            .collect();
        let report = self.flood_report.clone();
        let runtime = self.runtime.as_ref().unwrap();
        let mut tasks = Vec::new();
        for s in 0..streams {
            let mut control = self.control.clone();
            let chunks = chunks.clone();
            let report = report.clone();
            let mut drain = self.drain.subscribe();
            tasks.push(runtime.spawn(async move {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(HOSTILE_TIMEOUT, control.open_stream(peer, TRANSFER))
                        .await
                else {
                    return;
                };
                report.lock().unwrap().streams_opened += 1;
                let (mut reader, mut writer) = stream.split();
                if read {
                    let report = report.clone();
                    tokio::spawn(async move {
                        let mut body = Vec::new();
                        let mut answers = 0u64;
                        while read_frame(&mut reader, &mut body).await.is_ok() {
                            answers += 1;
                            let mut report = report.lock().unwrap();
                            report.responses_read += 1;
                            if answers == 1 {
                                report.streams_answered += 1;
                            }
                        }
                        if answers == 0 {
                            report.lock().unwrap().streams_refused += 1;
                        }
                    });
                } else {
                    // Not read (the read half kept alive so the stream stays open) until
                    // `drain_flood`; then read to its end, if it has one.
                    let report = report.clone();
                    tokio::spawn(async move {
                        let draining = drain.wait_for(|drain| *drain).await.is_ok();
                        if !draining {
                            std::future::pending::<()>().await;
                        }
                        let mut body = Vec::new();
                        let mut answers = 0;
                        while answers < DRAIN_SERVED {
                            match tokio::time::timeout(
                                DRAIN_IDLE,
                                read_frame(&mut reader, &mut body),
                            )
                            .await
                            {
                                Ok(Ok(())) => answers += 1,
                                Ok(Err(_)) | Err(_) => break,
                            }
                        }
                        {
                            let mut report = report.lock().unwrap();
                            report.drained_responses += answers;
                            if answers < DRAIN_SERVED {
                                report.stuck_streams_given_up += 1;
                            } else {
                                report.stuck_streams_served += 1;
                            }
                        }
                        // Kept: a stream still open stays open.
                        let _reader = reader;
                        std::future::pending::<()>().await;
                    });
                }
                let mut frame = Vec::new();
                for r in 0..requests {
                    let (file, index) = chunks[(s * 7 + r) % chunks.len()];
                    frame.clear();
                    wire::encode_request(
                        &RequestFrame {
                            id: RequestId(r as u32),
                            request: Request::Chunk {
                                manifest: id,
                                file,
                                index,
                            },
                        },
                        &mut frame,
                    );
                    let written = tokio::time::timeout(Duration::from_secs(10), async {
                        writer.write_all(&frame).await?;
                        writer.flush().await
                    })
                    .await;
                    match written {
                        Ok(Ok(())) => report.lock().unwrap().requests_sent += 1,
                        _ => break,
                    }
                }
                // Keep the write half open too (a flood never says goodbye).
                tokio::spawn(async move {
                    let _writer = writer;
                    std::future::pending::<()>().await;
                });
            }));
        }
        self.block_on(async {
            for task in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(120), task).await;
            }
            if read {
                tokio::time::sleep(hold).await;
            }
        });
        *report.lock().unwrap()
    }

    /// What [`HostilePeer::flood`] achieved so far (its streams go on being counted after it
    /// returns).
    pub fn flood_report(&self) -> FloodReport {
        *self.flood_report.lock().unwrap()
    }

    /// Starts reading the flood's streams that never read, each until the node ends it, it
    /// idles for [`DRAIN_IDLE`] or it has delivered [`DRAIN_SERVED`] answers, and waits (at most
    /// `timeout`) until every one is counted as given up or served; returns the report then.
    pub fn drain_flood(&self, timeout: Duration) -> FloodReport {
        self.drain.send_replace(true);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let report = self.flood_report();
            let unread = report.streams_opened - report.streams_answered - report.streams_refused;
            if report.stuck_streams_given_up + report.stuck_streams_served >= unread
                || std::time::Instant::now() > deadline
            {
                return report;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Opens a transfer stream to `peer` with `control`; panics unless the node accepts it within
/// [`HOSTILE_TIMEOUT`].
/// Sends `request` (id 0) on `stream` and reads its answer: the header and the payload, or
/// `None` if none came within [`HOSTILE_TIMEOUT`] or it did not decode.
async fn ask(stream: &mut Stream, request: Request) -> Option<(Response, Vec<u8>)> {
    let mut frame = Vec::new();
    wire::encode_request(
        &RequestFrame {
            id: RequestId(0),
            request,
        },
        &mut frame,
    );
    stream.write_all(&frame).await.ok()?;
    stream.flush().await.ok()?;
    let mut reply = Vec::new();
    tokio::time::timeout(HOSTILE_TIMEOUT, read_frame(stream, &mut reply))
        .await
        .ok()?
        .ok()?;
    let (frame, payload) = wire::decode_response(&reply).ok()?;
    Some((frame.response, payload.to_vec()))
}

async fn open_transfer(control: &mut libp2p_stream::Control, peer: PeerId) -> Stream {
    tokio::time::timeout(HOSTILE_TIMEOUT, control.open_stream(peer, TRANSFER))
        .await
        .expect("the node accepts a transfer stream in time")
        .expect("the node accepts a transfer stream")
}

/// One frame in a byte vector, for [`HostilePeer::send_raw`]: the length prefix of `body`,
/// then `body`.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A length prefix announcing 4 GiB, far over `MAX_FRAME_BYTES`, and a few bytes.
pub fn oversize_frame() -> Vec<u8> {
    let mut out = u32::MAX.to_le_bytes().to_vec();
    out.extend_from_slice(&[0u8; 16]);
    out
}

/// A frame that announces 1000 bytes and carries 10.
pub fn truncated_frame() -> Vec<u8> {
    let mut out = 1000u32.to_le_bytes().to_vec();
    out.extend_from_slice(&[0u8; 10]);
    out
}

/// A request frame with request id 0 and a variant number no version of the protocol has.
pub fn unknown_variant_frame() -> Vec<u8> {
    framed(&[0x00, 0x7f, 0x00, 0x00])
}

/// A frame of bytes that decode to no request or response (endless varint continuation bytes).
pub fn garbage_frame() -> Vec<u8> {
    framed(&[0xff; 64])
}

async fn read_frame<R: futures::AsyncRead + Unpin>(
    reader: &mut R,
    body: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    reader.read_exact(&mut prefix).await?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::other("oversize frame"));
    }
    body.clear();
    body.resize(len, 0);
    reader.read_exact(body).await
}

/// A DHT lookup of one node's records: the node, the values it answered with, the reply.
type Lookup = (
    PeerId,
    Vec<Vec<u8>>,
    oneshot::Sender<Result<Vec<Vec<u8>>, String>>,
);
/// Gossip waiting for a peer on its topic: topic, bytes, since when, the reply.
type PendingGossip = (
    gossipsub::IdentTopic,
    Vec<u8>,
    std::time::Instant,
    oneshot::Sender<Result<(), String>>,
);

async fn run_swarm(
    mut swarm: libp2p::Swarm<Behaviour>,
    mut commands: mpsc::Receiver<Command>,
    connected: Arc<Mutex<HashSet<PeerId>>>,
    stats: Arc<HostileStats>,
) {
    let mut dials: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<PeerId, String>>> =
        HashMap::new();
    let mut listen: Option<Multiaddr> = None;
    let mut listen_waiters: Vec<oneshot::Sender<Multiaddr>> = Vec::new();
    // Lookups of one node's records: the values that node answered with.
    let mut lookups: HashMap<kad::QueryId, Lookup> = HashMap::new();
    // Puts waiting for the node's acknowledgement.
    let mut puts: HashMap<kad::QueryId, oneshot::Sender<Result<(), String>>> = HashMap::new();
    // Gossip waiting for a peer on its topic: retried on every tick until sent or given up.
    let mut gossip: Vec<PendingGossip> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut waiting = Vec::new();
                for (topic, data, since, reply) in gossip.drain(..) {
                    let Some(gossipsub) = swarm.behaviour_mut().gossipsub.as_mut() else {
                        let _ = reply.send(Err("a raw gossiper has no gossipsub".to_owned()));
                        continue;
                    };
                    match gossipsub.publish(topic.clone(), data.clone()) {
                        Ok(_) => {
                            let _ = reply.send(Ok(()));
                        }
                        Err(gossipsub::PublishError::NoPeersSubscribedToTopic | gossipsub::PublishError::AllQueuesFull(_))
                            if since.elapsed() < HOSTILE_TIMEOUT =>
                        {
                            waiting.push((topic, data, since, reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
                gossip = waiting;
            }
            command = commands.recv() => match command {
                None => return,
                Some(Command::PutRecordTo { peer, key, value, reply }) => {
                    let record = kad::Record::new(kad::RecordKey::new(&key), value);
                    let id = swarm
                        .behaviour_mut()
                        .kad
                        .put_record_to(record, std::iter::once(peer), kad::Quorum::One);
                    puts.insert(id, reply);
                }
                Some(Command::GetRecord { peer, key, reply }) => {
                    let id = swarm.behaviour_mut().kad.get_record(kad::RecordKey::new(&key));
                    lookups.insert(id, (peer, Vec::new(), reply));
                }
                Some(Command::Gossip { topic, data, reply }) => {
                    let topic = gossipsub::IdentTopic::new(topic);
                    let Some(gossipsub) = swarm.behaviour_mut().gossipsub.as_mut() else {
                        let _ = reply.send(Err("a raw gossiper has no gossipsub".to_owned()));
                        continue;
                    };
                    if let Err(e) = gossipsub.subscribe(&topic) {
                        let _ = reply.send(Err(e.to_string()));
                    } else {
                        gossip.push((topic, data, std::time::Instant::now(), reply));
                    }
                }
                Some(Command::Dial { addr, reply }) => {
                    assert!(
                        addr.to_string().starts_with("/ip4/127.0.0.1/"),
                        "the hostile peer dials loopback only, not {addr}"
                    );
                    let peer = addr.iter().find_map(|p| match p {
                        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                        _ => None,
                    });
                    if let Some(peer) = peer {
                        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                        if swarm.is_connected(&peer) {
                            let _ = reply.send(Ok(peer));
                            continue;
                        }
                    }
                    // From a fresh port, not the listening one: a port-reusing dial can meet a
                    // clash of its four-tuple ("Address already in use", seen when many nodes
                    // and peers dial each other on one loopback), and a test client gains
                    // nothing from reuse.
                    let opts = DialOpts::unknown_peer_id()
                        .address(addr)
                        .allocate_new_port()
                        .build();
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => {
                            dials.insert(id, reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
                Some(Command::Listen { reply }) => match &listen {
                    Some(addr) => {
                        let _ = reply.send(addr.clone());
                    }
                    None => listen_waiters.push(reply),
                },
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    for waiter in listen_waiters.drain(..) {
                        let _ = waiter.send(address.clone());
                    }
                    listen.get_or_insert(address);
                }
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                    connected.lock().unwrap().insert(peer_id);
                    if let Some(reply) = dials.remove(&connection_id) {
                        let _ = reply.send(Ok(peer_id));
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                    stats.connections_closed.fetch_add(1, Ordering::Relaxed);
                    if num_established == 0 {
                        connected.lock().unwrap().remove(&peer_id);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                    peer_id,
                    info,
                    ..
                })) => {
                    stats.agents.lock().unwrap().insert(peer_id, info.agent_version);
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                    if let Some(reply) = dials.remove(&connection_id) {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                    id,
                    result: kad::QueryResult::PutRecord(result),
                    step,
                    ..
                })) => {
                    if step.last
                        && let Some(reply) = puts.remove(&id)
                    {
                        let _ = reply.send(result.map(|_| ()).map_err(|e| e.to_string()));
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                    id,
                    result: kad::QueryResult::GetRecord(result),
                    step,
                    stats,
                })) => {
                    if let Some((peer, values, _)) = lookups.get_mut(&id)
                        && let Ok(kad::GetRecordOk::FoundRecord(found)) = result
                        && found.peer == Some(*peer)
                    {
                        values.push(found.record.value);
                    }
                    if step.last
                        && let Some((peer, values, reply)) = lookups.remove(&id)
                    {
                        // The node is the only peer this one knows: a lookup it answered has a
                        // success, one that timed out or failed has none.
                        let answered = stats.num_successes() > 0;
                        let _ = reply.send(if answered {
                            Ok(values)
                        } else {
                            Err(format!("{peer} did not answer the lookup"))
                        });
                    }
                }
                _ => {}
            },
        }
    }
}

async fn accept_streams(
    mut incoming: libp2p_stream::IncomingStreams,
    content: Option<Arc<HostileContent>>,
    answer: Answer,
    stats: Arc<HostileStats>,
    replay: Arc<Mutex<Option<Vec<u8>>>>,
    catalog: Arc<Mutex<Option<CatalogLie>>>,
    catalog_hold: tokio::sync::watch::Receiver<bool>,
) {
    while let Some((_peer, stream)) = incoming.next().await {
        stats.inbound_streams.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(
            stream,
            content.clone(),
            answer.clone(),
            stats.clone(),
            replay.clone(),
            catalog.clone(),
            catalog_hold.clone(),
        ));
    }
}

fn refused(id: RequestId, detail: &str) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_response_header(
        &ResponseFrame {
            id,
            response: Response::Refused {
                reason: RefusalReason::NotHeld,
                detail: detail.to_owned(),
            },
        },
        &mut out,
    );
    out
}

/// A whole response frame: header, then `payload`.
fn response(id: RequestId, response: Response, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_response_header(&ResponseFrame { id, response }, &mut out);
    out.extend_from_slice(payload);
    out
}

async fn serve(
    mut stream: Stream,
    content: Option<Arc<HostileContent>>,
    answer: Answer,
    stats: Arc<HostileStats>,
    replay: Arc<Mutex<Option<Vec<u8>>>>,
    catalog: Arc<Mutex<Option<CatalogLie>>>,
    mut catalog_hold: tokio::sync::watch::Receiver<bool>,
) {
    let mut body = Vec::new();
    while read_frame(&mut stream, &mut body).await.is_ok() {
        let Ok(frame) = wire::decode_request(&body) else {
            return;
        };
        let id = frame.id;
        let held = |manifest: &licet_proto::ManifestId| {
            content.as_ref().filter(|c| c.manifest.id() == *manifest)
        };
        let (bytes, slow) = match frame.request {
            Request::Manifest { id: wanted } => {
                stats.manifest_requests.fetch_add(1, Ordering::Relaxed);
                let replayed = replay.lock().unwrap().clone();
                match (replayed, held(&wanted)) {
                    (Some(envelope), _) => {
                        (response(id, Response::Manifest { envelope }, &[]), None)
                    }
                    (None, Some(c)) => (
                        response(
                            id,
                            Response::Manifest {
                                envelope: c.envelope.clone(),
                            },
                            &[],
                        ),
                        None,
                    ),
                    (None, None) => (refused(id, "not held"), None),
                }
            }
            Request::Availability { manifest } => {
                stats.availability_requests.fetch_add(1, Ordering::Relaxed);
                match held(&manifest) {
                    // It claims every chunk, whatever it will send.
                    Some(c) => {
                        let extra = u64::from(answer == Answer::MisfitAvailability);
                        let files = c
                            .chunks
                            .iter()
                            .map(|chunks| {
                                let mut bits = Bitfield::new(chunks.len() as u64 + extra);
                                for i in 0..bits.len() {
                                    bits.set(i, true);
                                }
                                bits
                            })
                            .collect();
                        (response(id, Response::Availability { files }, &[]), None)
                    }
                    None => (refused(id, "not held"), None),
                }
            }
            // Its clock is honest: the tests that use it are about other lies.
            Request::Time => (
                response(
                    id,
                    Response::Time {
                        unix_seconds: licet_proto::Timestamp::now().0,
                    },
                    &[],
                ),
                None,
            ),
            // A hostile provider knows of no other peer.
            Request::Peers { .. } => (
                response(id, Response::Peers { peers: Vec::new() }, &[]),
                None,
            ),
            Request::Chunk {
                manifest,
                file,
                index,
            }
            | Request::ChunkForRegion {
                manifest,
                file,
                index,
                ..
            } => {
                stats.chunk_requests.fetch_add(1, Ordering::Relaxed);
                let Some(c) = held(&manifest) else {
                    let _ = stream.write_all(&refused(id, "not held")).await;
                    continue;
                };
                let (Some(tree), Some(chunk)) = (
                    c.trees.get(file as usize),
                    c.chunks
                        .get(file as usize)
                        .and_then(|f| f.get(index as usize)),
                ) else {
                    let _ = stream.write_all(&refused(id, "no such chunk")).await;
                    continue;
                };
                let proof = tree.audit_path(index).unwrap_or(AuditPath(Vec::new()));
                let good = |proof: AuditPath, bytes: &[u8]| {
                    response(
                        id,
                        Response::Chunk {
                            proof,
                            len: bytes.len() as u32,
                        },
                        bytes,
                    )
                };
                let bad = !matches!(
                    answer,
                    Answer::Honest
                        | Answer::Slowloris(_)
                        | Answer::Stall
                        | Answer::Throttled(_)
                        | Answer::NotHeld
                        | Answer::MisfitAvailability
                        | Answer::TrickleLargest(_)
                );
                if bad {
                    stats.bad_answers_sent.fetch_add(1, Ordering::Relaxed);
                }
                match &answer {
                    Answer::Honest => {
                        stats.good_answers_sent.fetch_add(1, Ordering::Relaxed);
                        (good(proof, chunk), None)
                    }
                    Answer::WrongBytes => {
                        let mut wrong = chunk.clone();
                        if let Some(b) = wrong.first_mut() {
                            *b ^= 0x01;
                        }
                        (good(proof, &wrong), None)
                    }
                    Answer::WrongProof => {
                        // The audit path of the neighbouring chunk: well formed, right length,
                        // hashes that exist in the tree, and wrong for this chunk.
                        let other = if index == 0 { 1 } else { index - 1 };
                        let proof = tree.audit_path(other).unwrap_or(proof);
                        (good(proof, chunk), None)
                    }
                    Answer::WrongLength => {
                        (good(proof, &chunk[..chunk.len().saturating_sub(1)]), None)
                    }
                    Answer::Throttled(delay) => {
                        tokio::time::sleep(*delay).await;
                        stats.good_answers_sent.fetch_add(1, Ordering::Relaxed);
                        (good(proof, chunk), None)
                    }
                    Answer::Stall => continue,
                    Answer::NotHeld => (refused(id, "not held after all"), None),
                    Answer::Slowloris(delay) => (good(proof, chunk), Some(*delay)),
                    Answer::OversizeFrame => (oversize_frame(), None),
                    Answer::TruncatedFrame => {
                        let _ = stream.write_all(&truncated_frame()).await;
                        let _ = stream.close().await;
                        return;
                    }
                    Answer::UnknownVariant => (unknown_variant_frame(), None),
                    Answer::Garbage => (garbage_frame(), None),
                    Answer::UnrequestedId => (
                        response(
                            RequestId(id.0.wrapping_add(1_000_000)),
                            Response::Chunk {
                                proof,
                                len: chunk.len() as u32,
                            },
                            chunk,
                        ),
                        None,
                    ),
                    Answer::MisfitAvailability => (good(proof, chunk), None),
                    Answer::TrickleLargest(delay) => {
                        stats.bad_answers_sent.fetch_add(1, Ordering::Relaxed);
                        let mut begun = (MAX_FRAME_BYTES as u32).to_le_bytes().to_vec();
                        begun.push(0);
                        if stream.write_all(&begun).await.is_err() || stream.flush().await.is_err()
                        {
                            return;
                        }
                        stats.trickles_started.fetch_add(1, Ordering::Relaxed);
                        let deadline = tokio::time::Instant::now() + HOSTILE_TIMEOUT * 4;
                        while tokio::time::Instant::now() < deadline {
                            tokio::time::sleep(*delay).await;
                            if stream.write_all(&[0]).await.is_err()
                                || stream.flush().await.is_err()
                            {
                                break;
                            }
                        }
                        return;
                    }
                }
            }
            Request::CatalogHead { .. } => match catalog.lock().unwrap().clone() {
                Some(CatalogLie {
                    head: Some(envelope),
                    ..
                }) => (response(id, Response::CatalogHead { envelope }, &[]), None),
                _ => (refused(id, "no catalog heads"), None),
            },
            Request::CatalogPart { offset, .. } => {
                stats.catalog_part_requests.fetch_add(1, Ordering::Relaxed);
                let _ = tokio::time::timeout(HOSTILE_TIMEOUT, catalog_hold.wait_for(|hold| !*hold))
                    .await;
                match catalog.lock().unwrap().clone() {
                    Some(lie) => {
                        let root = lie.root();
                        let total = root.len() as u64;
                        let start = offset.min(total) as usize;
                        let end =
                            (offset + u64::from(wire::CATALOG_PART_BYTES)).min(total) as usize;
                        let part = &root[start..end];
                        (
                            response(
                                id,
                                Response::CatalogPart {
                                    total_len: total,
                                    offset,
                                    len: part.len() as u32,
                                },
                                part,
                            ),
                            None,
                        )
                    }
                    None => (refused(id, "no catalogs"), None),
                }
            }
            Request::CatalogParts { hashes, .. } => {
                stats.catalog_parts_requests.fetch_add(1, Ordering::Relaxed);
                let lie = catalog.lock().unwrap().clone();
                let parts: Option<Vec<Vec<u8>>> = lie
                    .as_ref()
                    .and_then(|lie| hashes.iter().map(|hash| lie.part(hash)).collect());
                match parts {
                    Some(parts) => (
                        response(
                            id,
                            Response::CatalogParts {
                                lens: parts.iter().map(|part| part.len() as u32).collect(),
                            },
                            &parts.concat(),
                        ),
                        None,
                    ),
                    None => (refused(id, "no such catalog parts"), None),
                }
            }
        };
        let sent = match slow {
            None => stream.write_all(&bytes).await,
            Some(delay) => {
                let mut result = Ok(());
                for byte in &bytes {
                    result = stream.write_all(std::slice::from_ref(byte)).await;
                    if result.is_err() {
                        break;
                    }
                    let _ = stream.flush().await;
                    tokio::time::sleep(delay).await;
                }
                result
            }
        };
        if sent.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// A transfer stream to a node that stays open between requests, as a downloader's session
/// does ([`HostilePeer::open_session`]): what the node answers on it after an event shows
/// whether it asks again on every request or trusts an approval it gave earlier.
pub struct OpenSession<'a> {
    peer: &'a HostilePeer,
    stream: Stream,
}

impl HostilePeer {
    /// Connects to the node at `addr` and opens a transfer stream that stays open.
    pub fn open_session(&self, addr: &str) -> OpenSession<'_> {
        let peer = self.dial_node(addr);
        let mut control = self.control.clone();
        let stream = self.block_on(async move { open_transfer(&mut control, peer).await });
        OpenSession { peer: self, stream }
    }
}

impl OpenSession<'_> {
    /// Asks for chunk `index` of file `file` of `manifest` (stating no region) on this stream;
    /// the answer's header (`None` if none came within [`HOSTILE_TIMEOUT`]).
    pub fn ask_chunk(
        &mut self,
        manifest: licet_proto::ManifestId,
        (file, index): (u32, u64),
    ) -> Option<Response> {
        let stream = &mut self.stream;
        self.peer.block_on(async move {
            ask(
                stream,
                Request::Chunk {
                    manifest,
                    file,
                    index,
                },
            )
            .await
            .map(|(response, _)| response)
        })
    }
}
