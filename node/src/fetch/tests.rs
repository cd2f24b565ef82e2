//! Fetching without sockets: downloads driven against fake peers ([`FakePeer`], a
//! [`ChunkSource`]) on a fake network ([`FakeNet`]), with a real store and real files.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId};
use licet_proto::{
    ManifestId, Timestamp,
    manifest::{MIN_CHUNK_SIZE, VerifiedManifest},
    merkle::{self, MerkleTree},
    policy::{RefusalReason, TrustedPublisher},
    wire::{self, Bitfield, Request, Response},
};

use super::*;
use crate::{
    content,
    items::{Item, Live},
    metrics::Metrics,
    net::Network,
    peers::Peers,
    policy_state::PolicyState,
    store::{ContentOrigin, ContentRecord, FileState, RecordState, Store},
    test_support,
    transfer::{Reply, SessionError},
};

/// Chunks in each of the two files of the test content.
const CHUNKS: u64 = 24;
/// How long a stalling peer keeps a request before its deadline passes.
const STALL: Duration = Duration::from_millis(300);
/// How long an honest peer takes to answer a chunk (so that the others get their turn).
const HONEST_DELAY: Duration = Duration::from_millis(20);
/// Longest a test download may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);
/// Longest a manifest's search may take in a test where the provider lookup never answers.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);

/// The content every fake peer holds: a signed manifest of two files and their bytes.
struct Content {
    manifest: VerifiedManifest,
    files: Vec<Vec<u8>>,
    trees: Vec<MerkleTree>,
}

impl Content {
    fn new() -> Arc<Content> {
        let size = CHUNKS * u64::from(MIN_CHUNK_SIZE) - 100;
        let mut body = test_support::manifest_body("fetched", &[size, size]);
        let mut files = Vec::new();
        let mut trees = Vec::new();
        for (index, entry) in body.files.iter_mut().enumerate() {
            let bytes: Vec<u8> = (0..size as usize)
                .map(|i| (i as u8).wrapping_mul(13) ^ (index as u8 + 1))
                .collect();
            let leaves = bytes
                .chunks(MIN_CHUNK_SIZE as usize)
                .map(merkle::leaf_hash)
                .collect();
            let tree = MerkleTree::from_leaves(leaves);
            entry.root = tree.root();
            files.push(bytes);
            trees.push(tree);
        }
        let manifest = body.sign(&test_support::publisher(), None).unwrap();
        Arc::new(Content {
            manifest,
            files,
            trees,
        })
    }

    fn id(&self) -> ManifestId {
        self.manifest.id()
    }
}

/// How a fake peer answers chunk requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Manner {
    /// The right bytes, after [`HONEST_DELAY`].
    Honest,
    /// Bytes that fail verification.
    Lies,
    /// Nothing until its deadline passes ([`STALL`]), then the request times out.
    Stalls,
    /// `Busy`, every time.
    Busy,
    /// `Refused` for a policy reason, every time.
    Refuses,
}

/// A peer that holds all of [`Content`] and answers in its [`Manner`].
struct FakePeer {
    peer: PeerId,
    manner: Manner,
    content: Arc<Content>,
    chunk_requests: AtomicUsize,
    /// The peers it names when asked which peers fetch the content (peer exchange).
    exchanges: std::sync::Mutex<Vec<PeerId>>,
}

impl FakePeer {
    fn chunk_requests(&self) -> usize {
        self.chunk_requests.load(Ordering::Relaxed)
    }

    async fn answer(&self, request: Request) -> Result<Reply, SessionError> {
        let content = &self.content;
        let (file, index) = match request {
            Request::Manifest { id } if id == content.id() => {
                let envelope = content.manifest.envelope().encode();
                return Ok(Reply::made_up(Response::Manifest { envelope }, Vec::new()));
            }
            Request::Availability { manifest } if manifest == content.id() => {
                let files = content
                    .trees
                    .iter()
                    .map(|tree| {
                        let mut bits = Bitfield::new(tree.leaf_count());
                        (0..bits.len()).for_each(|c| bits.set(c, true));
                        bits
                    })
                    .collect();
                return Ok(Reply::made_up(Response::Availability { files }, Vec::new()));
            }
            Request::Chunk { file, index, .. } | Request::ChunkForRegion { file, index, .. } => {
                (file, index)
            }
            Request::Peers { manifest } if manifest == content.id() => {
                let peers = self
                    .exchanges
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|peer| wire::PeerContact {
                        peer: peer.to_bytes(),
                        addrs: vec![fake_addr(peer).to_vec(), b"not an address".to_vec()],
                    })
                    .collect();
                return Ok(Reply::made_up(Response::Peers { peers }, Vec::new()));
            }
            _ => {
                let refused = Response::Refused {
                    reason: RefusalReason::NotHeld,
                    detail: "not held".into(),
                };
                return Ok(Reply::made_up(refused, Vec::new()));
            }
        };
        self.chunk_requests.fetch_add(1, Ordering::Relaxed);
        let chunk = MIN_CHUNK_SIZE as usize;
        let bytes = &content.files[file as usize];
        let range = index as usize * chunk..bytes.len().min((index as usize + 1) * chunk);
        let mut payload = bytes[range].to_vec();
        let proof = content.trees[file as usize].audit_path(index).unwrap();
        let response = |payload: &Vec<u8>| Response::Chunk {
            proof: proof.clone(),
            len: payload.len() as u32,
        };
        match self.manner {
            Manner::Honest => {
                tokio::time::sleep(HONEST_DELAY).await;
                Ok(Reply::made_up(response(&payload), payload))
            }
            Manner::Lies => {
                payload[7] ^= 0xff;
                Ok(Reply::made_up(response(&payload), payload))
            }
            Manner::Stalls => {
                tokio::time::sleep(STALL).await;
                Err(SessionError::Timeout)
            }
            Manner::Busy => Ok(Reply::made_up(
                Response::Busy { retry_after_ms: 10 },
                Vec::new(),
            )),
            Manner::Refuses => Ok(Reply::made_up(
                Response::Refused {
                    reason: RefusalReason::Expired,
                    detail: "the licence window ended here".into(),
                },
                Vec::new(),
            )),
        }
    }
}

impl ChunkSource for FakePeer {
    fn peer(&self) -> PeerId {
        self.peer
    }

    async fn request(&self, request: Request) -> Result<Reply, SessionError> {
        self.answer(request).await
    }
}

/// What the DHT answers a provider lookup.
#[derive(Clone, Copy)]
enum Lookup {
    /// No provider record.
    Empty,
    /// No answer, ever.
    Never,
}

/// The network of fake peers: every peer is connected (unless `connected` is false) and opens
/// at once; the DHT answers as `lookup` says.
struct FakeNet {
    peers: HashMap<PeerId, Arc<FakePeer>>,
    connected: AtomicBool,
    lookup: Lookup,
    lookups: AtomicUsize,
    /// What peer exchange taught it: peers and the addresses given for them.
    learned: std::sync::Mutex<HashMap<PeerId, Vec<Multiaddr>>>,
}

/// The address a fake peer is said to listen on.
fn fake_addr(peer: &PeerId) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/4610/p2p/{peer}")
        .parse()
        .unwrap()
}

impl FetchNet for FakeNet {
    type Source = FakePeer;

    fn local_peer_id(&self) -> PeerId {
        PeerId::random()
    }

    async fn open(&self, peer: PeerId) -> Result<Arc<FakePeer>, SessionError> {
        self.peers
            .get(&peer)
            .cloned()
            .ok_or_else(|| SessionError::Open("no such peer".into()))
    }

    async fn connected(&self) -> Vec<PeerId> {
        if self.connected.load(Ordering::Relaxed) {
            self.peers.keys().copied().collect()
        } else {
            Vec::new()
        }
    }

    async fn providers(&self, _: ManifestId) -> HashSet<PeerId> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        match self.lookup {
            Lookup::Empty => HashSet::new(),
            Lookup::Never => std::future::pending().await,
        }
    }

    async fn provide(&self, _: ManifestId) {}

    async fn learn(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.learned.lock().unwrap().insert(peer, addrs);
    }
}

/// A download of [`Content`] into a temporary folder, from fake peers.
struct Harness {
    _dir: tempfile::TempDir,
    content: Arc<Content>,
    ctx: Arc<FetchContext<FakeNet>>,
    peers: Vec<Arc<FakePeer>>,
    item: Arc<Item>,
    folder: PathBuf,
}

impl Harness {
    fn new(manners: &[Manner], connected: bool, lookup: Lookup) -> Harness {
        let content = Content::new();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("content");
        std::fs::create_dir(&folder).unwrap();
        content::output_folder::create_all(&folder, content.manifest.manifest());
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
        let files: Vec<FileState> = content
            .trees
            .iter()
            .map(|tree| FileState {
                bitfield: Bitfield::new(tree.leaf_count()),
                leaves: None,
            })
            .collect();
        let record = ContentRecord {
            dir: folder.clone(),
            origin: ContentOrigin::Downloaded,
            state: RecordState::Downloading,
            error: None,
            added_at: Timestamp(1_700_000_100),
            file_stamps: vec![],
        };
        store
            .content_put(&content.manifest, &record, &files)
            .unwrap();
        let item = Arc::new(Item::new(
            content.manifest.clone(),
            folder.clone(),
            ContentOrigin::Downloaded,
            Timestamp(1_700_000_100),
            Live {
                state: RecordState::Downloading,
                error: None,
                have: files.iter().map(|f| f.bitfield.clone()).collect(),
                trees: vec![None; files.len()],
                stamps: vec![None; files.len()],
                downloading: true,
            },
        ));
        let peers: Vec<Arc<FakePeer>> = manners
            .iter()
            .map(|&manner| {
                Arc::new(FakePeer {
                    peer: PeerId::random(),
                    manner,
                    content: content.clone(),
                    chunk_requests: AtomicUsize::new(0),
                    exchanges: Default::default(),
                })
            })
            .collect();
        let net = FakeNet {
            peers: peers.iter().map(|p| (p.peer, p.clone())).collect(),
            connected: AtomicBool::new(connected),
            lookup,
            lookups: AtomicUsize::new(0),
            learned: Default::default(),
        };
        let policy = Arc::new(PolicyState::new(None));
        policy.trust(
            &futures::executor::block_on(policy.updating()),
            test_support::publisher().public_key(),
            TrustedPublisher {
                name: None,
                require_catalog: false,
            },
            false,
        );
        let metrics = Arc::new(Metrics::new());
        let ctx = Arc::new(FetchContext::new(
            store,
            metrics.clone(),
            policy,
            Peers::new(Network::detached(), metrics),
            net,
        ));
        Harness {
            _dir: dir,
            content,
            ctx,
            peers,
            item,
            folder,
        }
    }

    /// Runs the download (peers named as hints: `hints`) to its end, within [`DEADLINE`].
    async fn download(&self, hints: &[usize]) {
        let hints = hints.iter().map(|&i| self.peers[i].peer).collect();
        self.download_from(hints, None).await;
    }

    /// Runs the download from `sources`, its first look for providers `lookup`.
    async fn download_from(&self, sources: Vec<PeerId>, lookup: Option<ProviderLookup>) {
        tokio::time::timeout(
            DEADLINE,
            download(
                self.ctx.clone(),
                self.item.clone(),
                sources,
                lookup,
                Instant::now(),
            ),
        )
        .await
        .expect("the download ends");
    }

    /// What `get` does: finds the manifest (peers named as hints: `hints`), then downloads from
    /// the peer that sent it, the hints, and the lookup the search started.
    async fn get(&self, hints: &[usize]) {
        let hints: Vec<PeerId> = hints.iter().map(|&i| self.peers[i].peer).collect();
        let found =
            tokio::time::timeout(LOOKUP_DEADLINE, find(&self.ctx, self.content.id(), &hints))
                .await
                .expect("the manifest is found without waiting for the provider lookup")
                .expect("the manifest is found");
        assert_eq!(found.manifest.id(), self.content.id());
        let sources = std::iter::once(found.peer).chain(hints).collect();
        self.download_from(sources, Some(found.lookup)).await;
    }

    fn lookups(&self) -> usize {
        self.ctx.net.lookups.load(Ordering::Relaxed)
    }

    /// Asserts the download completed and the files hold the content's bytes.
    fn assert_complete(&self) {
        let live = self.item.live();
        assert_eq!(
            live.state,
            RecordState::Complete,
            "the download failed: {:?}",
            live.error
        );
        assert!(
            live.have.iter().all(|bits| bits.count_ones() == bits.len()),
            "every chunk is held"
        );
        drop(live);
        for (index, bytes) in self.content.files.iter().enumerate() {
            let path =
                content::file_path(&self.folder, self.content.manifest.manifest(), index, true);
            assert!(
                std::fs::read(path).unwrap() == *bytes,
                "file {index} differs"
            );
        }
    }

    fn banned(&self, peer: usize) -> bool {
        self.ctx.peers.is_banned(&self.peers[peer].peer)
    }
}

#[tokio::test]
async fn a_download_from_several_honest_peers_completes() {
    let h = Harness::new(&[Manner::Honest; 3], true, Lookup::Empty);
    h.download(&[]).await;
    h.assert_complete();
    assert!((0..3).all(|p| !h.banned(p)));
    assert!(h.item.source_peers() >= 1);
}

#[tokio::test]
async fn a_peer_that_lies_is_banned_and_its_chunks_come_from_another() {
    let h = Harness::new(&[Manner::Honest, Manner::Lies], true, Lookup::Empty);
    h.download(&[]).await;
    h.assert_complete();
    assert!(h.banned(1), "the liar is banned");
    assert!(!h.banned(0), "the honest peer is not");
    assert!(h.peers[1].chunk_requests() > 0, "the liar was asked");
}

#[tokio::test]
async fn a_chunk_past_its_deadline_is_fetched_from_another_peer() {
    let h = Harness::new(&[Manner::Honest, Manner::Stalls], true, Lookup::Empty);
    h.download(&[]).await;
    h.assert_complete();
    assert!(h.peers[1].chunk_requests() > 0, "the staller was asked");
    assert!(!h.banned(1), "a slow peer is not banned");
}

#[tokio::test]
async fn peers_that_are_busy_or_refuse_leave_the_download_to_the_others() {
    let h = Harness::new(
        &[Manner::Honest, Manner::Busy, Manner::Refuses],
        true,
        Lookup::Empty,
    );
    h.download(&[]).await;
    h.assert_complete();
    assert!(h.peers[1].chunk_requests() > 0, "the busy peer was asked");
    assert!(
        h.peers[2].chunk_requests() > 0,
        "the refusing peer was asked"
    );
    assert!((0..3).all(|p| !h.banned(p)), "refusing is not an offence");
}

#[tokio::test]
async fn get_with_a_link_peer_completes_while_the_dht_never_answers() {
    let h = Harness::new(&[Manner::Honest], false, Lookup::Never);
    h.get(&[0]).await;
    h.assert_complete();
    assert_eq!(
        h.lookups(),
        1,
        "one provider lookup, shared by the search and the download"
    );
}

#[tokio::test]
async fn get_from_connected_peers_completes_while_the_dht_never_answers() {
    let h = Harness::new(&[Manner::Honest, Manner::Honest], true, Lookup::Never);
    h.get(&[]).await;
    h.assert_complete();
    assert_eq!(
        h.lookups(),
        1,
        "one provider lookup, shared by the search and the download"
    );
}

#[tokio::test]
async fn the_peer_that_sent_the_manifest_is_the_downloads_first_source() {
    // Found among the connected peers; then gone from the connections, named nowhere else.
    let h = Harness::new(&[Manner::Honest], true, Lookup::Never);
    let found = tokio::time::timeout(LOOKUP_DEADLINE, find(&h.ctx, h.content.id(), &[]))
        .await
        .expect("the manifest is found without waiting for the provider lookup")
        .expect("the manifest is found");
    assert_eq!(found.peer, h.peers[0].peer);
    h.ctx.net.connected.store(false, Ordering::Relaxed);
    h.download_from(vec![found.peer], Some(found.lookup)).await;
    h.assert_complete();
}

#[tokio::test]
async fn peers_named_by_a_peer_fetched_from_are_fetched_from_too() {
    // Not connected, no provider record: the honest peer is known only through the busy one,
    // which names it when asked which peers fetch the content.
    let h = Harness::new(&[Manner::Busy, Manner::Honest], false, Lookup::Empty);
    *h.peers[0].exchanges.lock().unwrap() = vec![h.peers[1].peer];
    h.download(&[0]).await;
    h.assert_complete();
    assert!(h.peers[1].chunk_requests() > 0, "the named peer was asked");
    let learned = h.ctx.net.learned.lock().unwrap();
    assert_eq!(
        learned.get(&h.peers[1].peer),
        Some(&vec![fake_addr(&h.peers[1].peer)]),
        "its address was learned, what does not parse left out"
    );
}
