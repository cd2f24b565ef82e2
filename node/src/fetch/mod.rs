//! Fetching content: find the manifest, then fetch chunks from every peer that has them,
//! verify each against the signed root, and write it.
//!
//! Peers come from link hints, the DHT's provider records and the connections the node already
//! has. Each peer that has the content gets a worker that keeps up to [`PIPELINE_PER_PEER`]
//! chunk requests in flight on the peer's session ([`PIPELINE_PER_SEED_IN_SWARM`] from a seed
//! while peers still downloading have chunks this download needs); a peer still downloading
//! with nothing needed yet keeps its worker, which waits for it to gain chunks. The
//! [`Scheduler`] hands out chunks rarest first, with an endgame. Verified chunks go through a
//! bounded queue to one writer, which writes a batch, makes it durable, and only then commits the
//! chunks' bits (with each chunk's proof and leaf hash) to the store; a completed file's leaf list
//! comes from those leaves, so completing it does not read it again. A download announces itself
//! in the DHT when it starts, so that other downloaders can fetch from it while it downloads.
//!
//! Invariants:
//! - the trust policy is checked before the first byte is fetched and again every
//!   [`POLICY_RECHECK`]; a refusal stops the download;
//! - a peer that refuses a chunk its availability still claims rests before the download asks
//!   it again ([`REFUSAL_REST`], doubling up to [`MAX_REFUSAL_REST`]): it is never asked in a loop;
//! - nothing is written that did not verify against the manifest's root; a peer that sends a
//!   bad chunk or breaks the protocol (a malformed answer frame to any request: manifest,
//!   availability or chunk) is banned and its chunks go back to the scheduler;
//! - memory is bounded, per download: at most [`PIPELINE_PER_PEER`] chunks in flight per peer,
//!   plus [`WRITE_QUEUE`] verified chunks waiting for the writer and [`WRITE_BATCH`] being
//!   written.

pub mod schedule;

use std::{
    collections::HashSet,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt as _, stream::FuturesUnordered};
use libp2p::PeerId;
use licet_proto::{
    ManifestId, MerkleHash,
    manifest::{Region, VerifiedManifest},
    merkle::{self, AuditPath},
    policy::RefusalReason,
    wire::{Request, Response},
};
use tokio::{sync::mpsc, task::JoinSet};
use tracing::{debug, info, warn};

use crate::{
    content::{self, ChunkFiles},
    contract::{self, ApiError, ApiErrorKind},
    fetch::schedule::{ChunkRef, Scheduler},
    items::Item,
    node::{Node, blocking},
    store::proof_tree::ProofTree,
    store::{CommittedChunk, Compaction, RecordState, Store},
    transfer::{Reply, Session, SessionError},
};

/// Chunk requests kept in flight per peer.
pub const PIPELINE_PER_PEER: usize = 16;
/// Chunk requests kept in flight from a seed while peers still downloading have chunks this
/// download needs: a seed's upload is shared by every downloader, and each chunk in flight from
/// it may turn out to be one another downloader fetched from it at the same time.
pub const PIPELINE_PER_SEED_IN_SWARM: usize = 4;
/// Verified chunks waiting for the writer, at most.
pub const WRITE_QUEUE: usize = 4;
/// Most chunks written and committed in one batch.
const WRITE_BATCH: usize = 8;
/// How often the download looks for new peers (other downloaders announce themselves when they
/// start, and should be found while they are still downloading). The first looks follow each
/// other faster, from [`FIRST_PEER_REFRESH`] doubling up to this: downloaders that start together
/// find each other while most of the content is still to be fetched.
const PEER_REFRESH: Duration = Duration::from_secs(1);
/// The wait before the second look for peers.
const FIRST_PEER_REFRESH: Duration = Duration::from_millis(100);
/// How often an idle worker asks its peer what it has now (a peer that is downloading too gains
/// chunks all the time; an availability answer is a bitfield, one bit per chunk).
const AVAILABILITY_REFRESH: Duration = Duration::from_millis(250);
/// How long a worker waits for its peer to gain a chunk this download needs before it stops.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How often the trust policy is asked again during a download.
const POLICY_RECHECK: Duration = Duration::from_secs(1);
/// Most peers asked for a manifest.
const MAX_MANIFEST_CANDIDATES: usize = 32;
/// How long a download leaves a peer alone after it refused a chunk its availability still
/// claims (asking again at once would only get the same refusal); each time it does so again,
/// twice as long, up to [`MAX_REFUSAL_REST`].
const REFUSAL_REST: Duration = Duration::from_secs(1);
/// The longest rest of a peer that keeps refusing what it claims.
const MAX_REFUSAL_REST: Duration = Duration::from_secs(60);

/// Peers worth asking about `id`: hints first, then DHT providers, then connected peers.
async fn candidates(node: &Node, id: ManifestId, hints: &[PeerId]) -> Vec<PeerId> {
    let local = node.inner.network.local_peer_id();
    let mut seen = HashSet::new();
    let mut peers = Vec::new();
    let providers = node.providers(id).await;
    let connected = node.inner.network.connected().await.unwrap_or_default();
    for peer in hints
        .iter()
        .copied()
        .chain(providers)
        .chain(connected.into_iter().map(|(p, _)| p))
    {
        if peer != local && !node.is_banned(&peer) && seen.insert(peer) {
            peers.push(peer);
        }
    }
    peers
}

/// Finds the signed manifest `id` on the network and verifies it.
pub(crate) async fn find_manifest(
    node: &Node,
    id: ManifestId,
    hints: &[PeerId],
) -> Result<VerifiedManifest, ApiError> {
    let mut refusals: Vec<contract::Refusal> = Vec::new();
    let mut asked = 0;
    for peer in candidates(node, id, hints)
        .await
        .into_iter()
        .take(MAX_MANIFEST_CANDIDATES)
    {
        let Ok(session) = node.session(peer).await else {
            continue;
        };
        asked += 1;
        let reply = match session.request(Request::Manifest { id }).await {
            Ok(reply) => reply,
            Err(e) => {
                debug!(%peer, "manifest request failed: {e}");
                node.request_failed(peer, &e).await;
                continue;
            }
        };
        match reply.response {
            Response::Manifest { envelope } => match VerifiedManifest::from_bytes(&envelope) {
                Ok(manifest) if manifest.id() == id => return Ok(manifest),
                Ok(other) => {
                    node.ban(
                        peer,
                        &format!("sent manifest {} when asked for {id}", other.id()),
                    )
                    .await;
                }
                Err(e) => {
                    refusals.push(contract::Refusal {
                        reason: e.refusal_reason(),
                        detail: format!("peer {peer} sent a manifest that does not verify: {e}"),
                    });
                    node.ban(peer, "sent a manifest that does not verify").await;
                }
            },
            Response::Refused { reason, detail } if reason != RefusalReason::NotHeld => {
                refusals.push(contract::Refusal {
                    reason,
                    detail: format!("peer {peer}: {detail}"),
                });
            }
            Response::Refused { .. } | Response::Busy { .. } => {}
            other => {
                node.ban(peer, &format!("answered a manifest request with {other:?}"))
                    .await;
            }
        }
    }
    match refusals.into_iter().next() {
        Some(refusal) => Err(ApiError::refused(
            ApiErrorKind::Refused,
            format!(
                "manifest {id} was refused: {}: {}",
                refusal.reason.describe(),
                refusal.detail
            ),
            refusal,
        )),
        None => Err(ApiError::new(
            ApiErrorKind::Unavailable,
            format!("no peer has manifest {id} (asked {asked} peer(s))"),
        )),
    }
}

/// A chunk that passed verification, on its way to the writer.
struct VerifiedChunk {
    chunk: ChunkRef,
    proof: AuditPath,
    leaf: MerkleHash,
    reply: Reply,
    peer: PeerId,
}

/// Why a worker stopped.
enum WorkerEnd {
    /// Nothing left to fetch.
    Done,
    /// The peer failed, refused, or was banned.
    Gone(String),
    /// The peer refused a chunk its availability still claims: it rests (see [`Rests`]).
    Refusing(String),
}

/// Peers a download leaves alone for a while because they refused a chunk they claim: each
/// refusal doubles the rest, from [`REFUSAL_REST`] up to [`MAX_REFUSAL_REST`]. One entry per
/// peer that ever had a worker in this download.
#[derive(Default)]
struct Rests(std::collections::HashMap<PeerId, (u32, Instant)>);

impl Rests {
    /// `peer` refused what it claims, at `now`.
    fn refused(&mut self, peer: PeerId, now: Instant) {
        let (refusals, until) = self.0.entry(peer).or_insert((0, now));
        let rest = REFUSAL_REST
            .saturating_mul(1 << (*refusals).min(16))
            .min(MAX_REFUSAL_REST);
        *refusals += 1;
        *until = now + rest;
    }

    /// Whether `peer` rests at `now`.
    fn resting(&self, peer: &PeerId, now: Instant) -> bool {
        self.0.get(peer).is_some_and(|(_, until)| now < *until)
    }
}

/// State shared by a download's workers.
struct Download {
    node: Node,
    item: Arc<Item>,
    scheduler: Mutex<Scheduler>,
    written: mpsc::Sender<VerifiedChunk>,
}

impl Download {
    fn scheduler(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped(&self) -> bool {
        self.item.is_stopped() || self.scheduler().is_done()
    }
}

/// Fetches everything `item` is missing, then checks and completes it. Errors end up in the
/// item's state (failed, with the reason).
pub(crate) async fn download(node: Node, item: Arc<Item>, hints: Vec<PeerId>, requested: Instant) {
    let result = run(&node, &item, hints, requested).await;
    if let Err(problem) = result {
        warn!(id = %item.id(), "download stopped: {problem}");
        {
            let mut live = item.live();
            live.state = RecordState::Failed;
            live.error = Some(problem);
        }
        let _ = node.save_record(&item).await;
    }
}

async fn run(
    node: &Node,
    item: &Arc<Item>,
    hints: Vec<PeerId>,
    requested: Instant,
) -> Result<(), String> {
    let id = item.id();
    let held = item.live().have.clone();
    let (written, receiver) = mpsc::channel(WRITE_QUEUE);
    let download = Arc::new(Download {
        node: node.clone(),
        item: item.clone(),
        scheduler: Mutex::new(Scheduler::new(held, random_start())),
        written,
    });
    // Announced at once, before a chunk is held: other downloaders find this node while they
    // are still downloading too, and ask it for chunks as it gains them (availability answers
    // say what it has; serving asks the policy as for any request).
    let (announcing, announced) = (node.clone(), item.clone());
    tokio::spawn(async move { announcing.announce(&announced).await });
    let mut writer = tokio::spawn(write_chunks(
        node.clone(),
        item.clone(),
        receiver,
        requested,
    ));
    // Peer discovery runs on its own task so a slow DHT lookup never delays the policy
    // re-check or the handling of finished workers.
    let (found, mut discovered) = mpsc::channel::<PeerId>(64);
    let discovery = tokio::spawn(discover(node.clone(), id, hints, found));
    let mut workers: JoinSet<(PeerId, WorkerEnd)> = JoinSet::new();
    let mut active: HashSet<PeerId> = HashSet::new();
    let mut rests = Rests::default();
    let mut recheck = tokio::time::interval(POLICY_RECHECK);
    let mut last_problem: Option<String> = None;

    let outcome = loop {
        if item.is_stopped() {
            break Ok(false);
        }
        if download.scheduler().is_done() {
            break Ok(true);
        }
        tokio::select! {
            _ = recheck.tick() => {
                if let Err(refusal) = node.policy_check(item.manifest(), node.as_fetcher()) {
                    break Err(format!("stopped by the trust policy: {refusal}"));
                }
            }
            Some(peer) = discovered.recv() => {
                if !node.is_banned(&peer)
                    && !rests.resting(&peer, Instant::now())
                    && active.insert(peer)
                {
                    let download = download.clone();
                    workers.spawn(async move {
                        let end = match start_worker(&download, peer).await {
                            Ok(Some(session)) => work(download, session).await,
                            Ok(None) => WorkerEnd::Gone(format!("peer {peer} does not have it")),
                            Err(problem) => WorkerEnd::Gone(problem),
                        };
                        (peer, end)
                    });
                }
            }
            Some(joined) = workers.join_next(), if !workers.is_empty() => {
                if let Ok((peer, end)) = joined {
                    active.remove(&peer);
                    download.scheduler().remove_peer(&peer);
                    item.sending_stopped(Some(&peer));
                    match end {
                        WorkerEnd::Done => {}
                        WorkerEnd::Gone(problem) => {
                            debug!(%peer, "worker ended: {problem}");
                            last_problem = Some(problem);
                        }
                        WorkerEnd::Refusing(problem) => {
                            debug!(%peer, "worker ended, the peer rests: {problem}");
                            rests.refused(peer, Instant::now());
                            last_problem = Some(problem);
                        }
                    }
                }
            }
            result = &mut writer => {
                break Err(match result {
                    Ok(Err(problem)) => problem,
                    Ok(Ok(())) => "the chunk writer stopped".to_owned(),
                    Err(e) => format!("the chunk writer failed: {e}"),
                });
            }
        }
    };
    discovery.abort();
    workers.shutdown().await;
    item.sending_stopped(None);
    drop(download);
    let finished = match outcome {
        Ok(finished) => finished,
        Err(problem) => {
            writer.abort();
            return Err(problem);
        }
    };
    // Every sender is gone: the writer drains what is queued and stops.
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(problem)) => return Err(problem),
        Err(e) => return Err(format!("the chunk writer failed: {e}")),
    }
    if !finished {
        debug!(%id, "download stopped ({})", last_problem.unwrap_or_default());
        return Ok(());
    }
    finish(node, item).await
}

/// Where among equally rare chunks this download starts (see [`Scheduler::new`]).
fn random_start() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness every downloader starts at the first chunk: slower swarms, still correct.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Sends every candidate peer for `id` to `found`, at once and then again after each wait, from
/// [`FIRST_PEER_REFRESH`] doubling up to [`PEER_REFRESH`] (the download ignores peers it already
/// works with). A wait starts when a lookup ends, so a slow lookup is not followed at once.
async fn discover(node: Node, id: ManifestId, hints: Vec<PeerId>, found: mpsc::Sender<PeerId>) {
    let mut wait = FIRST_PEER_REFRESH;
    loop {
        for peer in candidates(&node, id, &hints).await {
            if found.send(peer).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(PEER_REFRESH);
    }
}

/// Opens a session with `peer` and asks what it has; returns the session if it has the content
/// (a peer still downloading may have nothing this download needs yet: its worker waits for it
/// to gain some, up to [`IDLE_LIMIT`]).
async fn start_worker(
    download: &Arc<Download>,
    peer: PeerId,
) -> Result<Option<Arc<Session>>, String> {
    let node = &download.node;
    let session = node
        .session(peer)
        .await
        .map_err(|e| format!("peer {peer}: {e}"))?;
    Ok(ask_availability(download, &session)
        .await?
        .then_some(session))
}

/// Asks `session`'s peer for its availability and records it. `Ok(false)` if it refused.
async fn ask_availability(download: &Arc<Download>, session: &Session) -> Result<bool, String> {
    let peer = session.peer();
    let node = &download.node;
    let reply = session
        .request(Request::Availability {
            manifest: download.item.id(),
        })
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            node.request_failed(peer, &e).await;
            return Err(format!("peer {peer}: {e}"));
        }
    };
    match reply.response {
        Response::Availability { files } => {
            let fits = download.scheduler().fits(&files);
            if !fits {
                node.ban(peer, "sent availability that does not fit the manifest")
                    .await;
                return Err(format!("peer {peer} sent malformed availability"));
            }
            download.scheduler().set_availability(peer, files);
            Ok(true)
        }
        Response::Refused { reason, detail } => {
            if reason != RefusalReason::NotHeld {
                return Err(format!(
                    "peer {peer} refused: {}: {detail}",
                    reason.describe()
                ));
            }
            Ok(false)
        }
        Response::Busy { .. } => Ok(false),
        other => {
            node.ban(
                peer,
                &format!("answered an availability request with {other:?}"),
            )
            .await;
            Err(format!("peer {peer} broke the protocol"))
        }
    }
}

/// What became of one chunk request.
enum ChunkOutcome {
    Verified(Box<VerifiedChunk>),
    /// The peer does not have it after all (its availability is stale).
    NotHeld,
    /// The peer is busy.
    Busy(u32),
    /// The peer refused with a policy reason.
    Refused(String),
    /// The peer sent a chunk that is wrong: ban it.
    Bad(String),
    /// The request failed on the session (closed, timed out, or a frame that breaks the
    /// protocol, for which the peer is banned).
    Session(SessionError),
    /// Verification could not run here.
    Failed(String),
}

/// The request for one chunk. It states this node's region when it has one, so that a server
/// hands content licensed for some regions only to requesters in them (wire.rs "Regions").
fn chunk_request(manifest: ManifestId, (file, index): ChunkRef, region: Option<Region>) -> Request {
    match region {
        Some(region) => Request::ChunkForRegion {
            manifest,
            file,
            index,
            region,
        },
        None => Request::Chunk {
            manifest,
            file,
            index,
        },
    }
}

async fn fetch_chunk(
    download: Arc<Download>,
    session: Arc<Session>,
    chunk: ChunkRef,
) -> (ChunkRef, ChunkOutcome) {
    let (file, index) = chunk;
    let manifest = download.item.manifest().manifest();
    let entry = &manifest.files[file as usize];
    let expected_len = merkle::chunk_range(index, entry.size, manifest.chunk_size)
        .map_or(0, |r| (r.end - r.start) as usize);
    let reply = match session
        .request(chunk_request(
            download.item.id(),
            chunk,
            download.node.region(),
        ))
        .await
    {
        Ok(reply) => reply,
        Err(e) => return (chunk, ChunkOutcome::Session(e)),
    };
    let outcome = match &reply.response {
        Response::Chunk { proof, .. } => {
            if reply.payload().len() != expected_len {
                ChunkOutcome::Bad(format!(
                    "sent {} bytes for chunk {index} of file {file}, which has {expected_len}",
                    reply.payload().len()
                ))
            } else {
                let root = entry.root;
                let count = entry.chunk_count(manifest.chunk_size);
                let proof = proof.clone();
                let peer = session.peer();
                let checked = blocking(move || {
                    let leaf = merkle::leaf_hash(reply.payload());
                    let ok = merkle::verify_leaf(&root, index, count, leaf, &proof);
                    (reply, proof, leaf, ok)
                })
                .await;
                match checked {
                    Ok((reply, proof, leaf, true)) => {
                        ChunkOutcome::Verified(Box::new(VerifiedChunk {
                            chunk,
                            proof,
                            leaf,
                            reply,
                            peer,
                        }))
                    }
                    Ok((_, _, _, false)) => ChunkOutcome::Bad(format!(
                        "sent chunk {index} of file {file} that fails verification"
                    )),
                    Err(e) => ChunkOutcome::Failed(e.message),
                }
            }
        }
        Response::Refused { reason, .. } if *reason == RefusalReason::NotHeld => {
            ChunkOutcome::NotHeld
        }
        Response::Refused { reason, detail } => {
            ChunkOutcome::Refused(format!("{}: {detail}", reason.describe()))
        }
        Response::Busy { retry_after_ms } => ChunkOutcome::Busy(*retry_after_ms),
        other => ChunkOutcome::Bad(format!("answered a chunk request with {other:?}")),
    };
    (chunk, outcome)
}

/// While `session`'s peer is still downloading too, asks it what it has every
/// [`AVAILABILITY_REFRESH`] (its worker may be busy with what it had before), so the scheduler
/// sees its new chunks before it asks a seed for them. Stops once the peer has everything.
async fn refresh_availability(download: Arc<Download>, session: Arc<Session>) {
    let mut tick = tokio::time::interval(AVAILABILITY_REFRESH);
    // An answer queued behind a pipeline of chunks is slow; do not follow it with a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if download.stopped() || download.scheduler().is_seed(&session.peer()) {
            return;
        }
        if ask_availability(&download, &session).await != Ok(true) {
            return;
        }
    }
}

/// Keeps `session`'s peer busy with chunk requests until the download needs nothing it has.
async fn work(download: Arc<Download>, session: Arc<Session>) -> WorkerEnd {
    let peer = session.peer();
    let node = download.node.clone();
    // Stopped with the worker, also when the worker's task is aborted.
    let refresher = AbortOnDrop(tokio::spawn(refresh_availability(
        download.clone(),
        session.clone(),
    )));
    let end = keep_busy(&download, &session, peer, &node, &refresher).await;
    // Stopped for good before the download forgets this peer: an answer it was still waiting
    // for must not bring the peer's availability back.
    refresher.stop().await;
    end
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Whether the task has ended.
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Aborts the task and waits until it has stopped.
    async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The worker's loop. While `refresher` runs, it keeps the peer's availability fresh; once it has
/// stopped (the peer became a seed, refused, or failed), an idle worker asks itself.
async fn keep_busy(
    download: &Arc<Download>,
    session: &Arc<Session>,
    peer: PeerId,
    node: &Node,
    refresher: &AbortOnDrop,
) -> WorkerEnd {
    let mut in_flight = FuturesUnordered::new();
    let mut idle_rounds = 0u32;
    loop {
        if download.stopped() && in_flight.is_empty() {
            return WorkerEnd::Done;
        }
        while !download.item.is_stopped() {
            let mut scheduler = download.scheduler();
            let pipeline = if scheduler.is_seed(&peer) && scheduler.partial_peers_help() {
                PIPELINE_PER_SEED_IN_SWARM
            } else {
                PIPELINE_PER_PEER
            };
            if in_flight.len() >= pipeline {
                break;
            }
            let Some(chunk) = scheduler.next_for(peer) else {
                break;
            };
            drop(scheduler);
            in_flight.push(fetch_chunk(download.clone(), session.clone(), chunk));
        }
        if in_flight.is_empty() {
            // Nothing to ask this peer now: it may gain chunks (it may be downloading too).
            if download.stopped() {
                return WorkerEnd::Done;
            }
            idle_rounds += 1;
            if AVAILABILITY_REFRESH * idle_rounds > IDLE_LIMIT {
                return WorkerEnd::Gone(format!(
                    "peer {peer} has nothing more this download needs"
                ));
            }
            tokio::time::sleep(AVAILABILITY_REFRESH).await;
            if !refresher.is_finished() {
                continue;
            }
            match ask_availability(download, session).await {
                Ok(true) => continue,
                Ok(false) => return WorkerEnd::Gone(format!("peer {peer} no longer has it")),
                Err(problem) => return WorkerEnd::Gone(problem),
            }
        }
        idle_rounds = 0;
        let Some((chunk, outcome)) = in_flight.next().await else {
            continue;
        };
        match outcome {
            ChunkOutcome::Verified(verified) => {
                node.peers()
                    .received(peer, verified.reply.payload().len() as u64);
                download.item.sending_started(peer);
                // A place in the writer's queue first, then the chunk is marked complete and
                // queued with no await in between: once the scheduler counts the last chunk the
                // download stops its workers, and a worker stopped between the two would leave a
                // chunk counted as held that is never written (the final check then fails the
                // download as "changed on disk").
                let Ok(place) = download.written.reserve().await else {
                    return WorkerEnd::Gone("the writer stopped".to_owned());
                };
                // Endgame duplicates are dropped here; only the first copy is written.
                if download.scheduler().complete(chunk) {
                    place.send(*verified);
                }
            }
            ChunkOutcome::NotHeld => {
                download.scheduler().release(&peer, chunk);
                match ask_availability(download, session).await {
                    Err(problem) => return WorkerEnd::Gone(problem),
                    // Still claimed: asking again would only get the same refusal, as fast as
                    // the peer answers. It rests before discovery may offer it again.
                    Ok(true) if download.scheduler().claims(&peer, chunk) => {
                        return WorkerEnd::Refusing(format!(
                            "peer {peer} claims chunk {} of file {} but refuses it",
                            chunk.1, chunk.0
                        ));
                    }
                    Ok(true) => {}
                    // It no longer has the content at all (its availability would stay stale).
                    Ok(false) => return WorkerEnd::Gone(format!("peer {peer} no longer has it")),
                }
            }
            ChunkOutcome::Busy(retry_after_ms) => {
                download.scheduler().release(&peer, chunk);
                tokio::time::sleep(Duration::from_millis(u64::from(retry_after_ms.min(5_000))))
                    .await;
            }
            ChunkOutcome::Refused(reason) => {
                download.scheduler().release(&peer, chunk);
                return WorkerEnd::Gone(format!("peer {peer} refused: {reason}"));
            }
            ChunkOutcome::Bad(what) => {
                download.scheduler().release(&peer, chunk);
                node.peers().bad_chunk(peer, &what).await;
                return WorkerEnd::Gone(format!("peer {peer} banned: {what}"));
            }
            ChunkOutcome::Session(error) => {
                download.scheduler().release(&peer, chunk);
                node.request_failed(peer, &error).await;
                return WorkerEnd::Gone(format!("peer {peer}: {error}"));
            }
            ChunkOutcome::Failed(problem) => {
                download.scheduler().release(&peer, chunk);
                return WorkerEnd::Gone(problem);
            }
        }
    }
}

/// Writes verified chunks in batches: write, make durable, then commit the bits. The time from
/// `requested` (when the download was asked for) to the first committed batch goes to the
/// first-chunk histogram.
async fn write_chunks(
    node: Node,
    item: Arc<Item>,
    mut verified: mpsc::Receiver<VerifiedChunk>,
    requested: Instant,
) -> Result<(), String> {
    let mut first_batch = Some(requested);
    let mut files = Some(ChunkFiles::new(item.dir().to_path_buf()));
    while let Some(first) = verified.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match verified.try_recv() {
                Ok(chunk) => batch.push(chunk),
                Err(_) => break,
            }
        }
        let Some(mut chunk_files) = files.take() else {
            return Err("the chunk files are gone".to_owned());
        };
        let store = node.inner.store.clone();
        let writing = item.clone();
        let (chunk_files, batch, result) = blocking(move || {
            // The proofs move to the store; what is used of the batch after this is the chunks
            // and their peers.
            let committed: Vec<CommittedChunk> = batch
                .iter_mut()
                .map(|c| CommittedChunk {
                    file: c.chunk.0,
                    chunk: c.chunk.1,
                    proof: AuditPath(std::mem::take(&mut c.proof.0)),
                    leaf: c.leaf,
                })
                .collect();
            let result = write_batch(
                &mut chunk_files,
                &store,
                writing.manifest(),
                writing.dir(),
                batch.iter().map(|c| (c.chunk, c.reply.payload())),
                &committed,
            );
            (chunk_files, batch, result)
        })
        .await
        .map_err(|e| e.message)?;
        files = Some(chunk_files);
        result?;
        {
            let mut live = item.live();
            for chunk in &batch {
                live.have[chunk.chunk.0 as usize].set(chunk.chunk.1, true);
            }
        }
        if let Some(requested) = first_batch.take() {
            node.inner
                .metrics
                .first_chunk
                .observe(requested.elapsed().as_secs_f64());
        }
        let count = batch.len() as u64;
        item.count_fetched(count);
        node.inner.metrics.chunks_fetched.inc_by(count);
        item.add_sources(batch.iter().map(|chunk| chunk.peer));
    }
    Ok(())
}

/// Writes a batch of verified chunks (each with its bytes), makes the writes durable, and only
/// then commits their bits (`committed`) to the store: a crash or a failed flush in between
/// leaves the bits unset, so the chunks are fetched again; a bit is never set for bytes that may
/// not be on disk.
fn write_batch<'a>(
    files: &mut ChunkFiles,
    store: &Store,
    verified: &VerifiedManifest,
    dir: &Path,
    writes: impl IntoIterator<Item = (ChunkRef, &'a [u8])>,
    committed: &[CommittedChunk],
) -> Result<(), String> {
    let manifest = verified.manifest();
    for ((file, index), bytes) in writes {
        files
            .write(manifest, file as usize, index, bytes)
            .map_err(|e| {
                format!(
                    "cannot write {}: {e}",
                    content::file_path(dir, manifest, file as usize).display()
                )
            })?;
    }
    // Durable first, then the bits: a crash in between re-fetches, never lies.
    files
        .sync()
        .map_err(|e| format!("cannot flush {}: {e}", dir.display()))?;
    store
        .commit_chunks(&verified.id(), committed)
        .map_err(|e| format!("node database: {e}"))
}

/// Completes every file of a finished download: its leaves (those of its verified chunks, or,
/// for chunks committed without one, hashed from disk once more) must make the manifest's
/// root; they are stored, and the item is marked complete.
async fn finish(node: &Node, item: &Arc<Item>) -> Result<(), String> {
    let manifest = item.manifest().manifest();
    let id = item.id();
    for (index, entry) in manifest.files.iter().enumerate() {
        let path = content::file_path(item.dir(), manifest, index);
        let chunk_size = manifest.chunk_size;
        let chunks = entry.chunk_count(chunk_size);
        let root = entry.root;
        let store = node.inner.store.clone();
        let hashing = path.clone();
        let (leaves, from_disk, stamp) = blocking(move || {
            let known = match store.leaves(&id, index as u32) {
                Ok(None) => store.chunk_leaves(&id, index as u32, chunks),
                known => known,
            }
            .map_err(|e| format!("node database: {e}"))?;
            let from_disk = known.is_none();
            let leaves = match known {
                Some(leaves) => leaves,
                None => {
                    std::fs::File::open(&hashing)
                        .and_then(|file| {
                            merkle::hash_file_leaves(
                                &file,
                                chunk_size,
                                merkle::default_threads(),
                                &mut |_| {},
                            )
                        })
                        .map_err(|e| format!("cannot read {}: {e}", hashing.display()))?
                        .0
                }
            };
            let stamp = content::stamp(&hashing)
                .map_err(|e| format!("cannot read {}: {e}", hashing.display()))?;
            Ok::<_, String>((leaves, from_disk, stamp))
        })
        .await
        .map_err(|e| e.message)??;
        let tree = ProofTree::new(id, index as u32, &leaves);
        if tree.root() != root {
            return Err(if from_disk {
                format!(
                    "{} does not match the manifest after download (changed on disk?)",
                    path.display()
                )
            } else {
                format!(
                    "the stored leaves of {}'s verified chunks do not make the manifest's root \
                     (node database damaged?)",
                    path.display()
                )
            });
        }
        {
            // The tree serves proofs from now on; set before the per-chunk proofs are dropped,
            // so no chunk request in between finds neither (until `complete_file` has stored
            // the tree's leaf blocks, serving falls back to the chunk's stored proof).
            let mut live = item.live();
            live.trees[index] = Some(Arc::new(tree));
            live.stamps[index] = Some(stamp);
        }
        let store = node.inner.store.clone();
        blocking(move || store.complete_file(&id, index as u32, &leaves))
            .await
            .map_err(|e| e.message)?
            .map_err(|e| format!("node database: {e}"))?;
    }
    {
        let mut live = item.live();
        live.state = RecordState::Complete;
        live.error = None;
    }
    node.save_record(item).await.map_err(|e| e.message)?;
    info!(id = %item.id(), "download complete: {}", item.dir().display());
    // In the background: the download is complete now, whatever the compaction takes.
    tokio::spawn(compact_store(node.clone()));
    Ok(())
}

/// Gives the space of the completed download's proofs back to the file system (see
/// `store::compaction`; every store call waits while it runs). Only logged: a compaction not
/// done costs disk space, nothing else.
async fn compact_store(node: Node) {
    let store = node.inner.store.clone();
    match blocking(move || store.compact()).await {
        Ok(Ok(Compaction::Done { before, after })) => {
            info!("node database compacted from {before} to {after} bytes");
        }
        Ok(Ok(other)) => debug!("node database not compacted: {other:?}"),
        Ok(Err(e)) => warn!("cannot compact the node database: {e}"),
        Err(e) => warn!("cannot compact the node database: {}", e.message),
    }
}

#[cfg(test)]
mod tests {
    use std::{io, path::PathBuf};

    use licet_proto::{MerkleHash, Timestamp, manifest::MIN_CHUNK_SIZE, wire::Bitfield};

    use super::*;
    use crate::{
        store::{ContentOrigin, ContentRecord, FileState},
        test_support,
    };

    const CHUNKS: u64 = 3;

    /// A download of two files of three chunks: its files created in `dir`/content, its record
    /// (no chunk held) in a new store.
    fn download(dir: &Path) -> (Arc<Store>, VerifiedManifest, PathBuf) {
        let size = CHUNKS * u64::from(MIN_CHUNK_SIZE);
        let manifest = test_support::manifest_body("durable", &[size, size])
            .sign(&test_support::publisher(), None)
            .unwrap();
        let content = dir.join("content");
        std::fs::create_dir(&content).unwrap();
        crate::content::output_folder::create_all(&content, manifest.manifest());
        let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
        let record = ContentRecord {
            dir: content.clone(),
            origin: ContentOrigin::Downloaded,
            state: RecordState::Downloading,
            error: None,
            added_at: Timestamp(1_700_000_100),
            file_stamps: vec![],
        };
        let files = vec![
            FileState {
                bitfield: Bitfield::new(CHUNKS),
                leaves: None,
            };
            2
        ];
        store.content_put(&manifest, &record, &files).unwrap();
        (store, manifest, content)
    }

    /// Chunks and their bytes.
    type Writes = Vec<(ChunkRef, Vec<u8>)>;

    /// Chunk 0 of file 0 and chunk 2 of file 1: their bytes and what is committed for them.
    fn batch() -> (Writes, Vec<CommittedChunk>) {
        let refs: [ChunkRef; 2] = [(0, 0), (1, 2)];
        let writes = refs
            .iter()
            .map(|&(file, chunk)| ((file, chunk), vec![file as u8 + 1; MIN_CHUNK_SIZE as usize]))
            .collect();
        let committed = refs
            .iter()
            .map(|&(file, chunk)| CommittedChunk {
                file,
                chunk,
                proof: AuditPath(vec![MerkleHash([7; 32]); 2]),
                leaf: MerkleHash([file as u8; 32]),
            })
            .collect();
        (writes, committed)
    }

    /// Writes [`batch`] through `files` with [`write_batch`]; its result, and the bytes written.
    fn write_the_batch(
        files: &mut ChunkFiles,
        store: &Store,
        manifest: &VerifiedManifest,
        content: &Path,
    ) -> (Result<(), String>, Writes) {
        let (writes, committed) = batch();
        let result = write_batch(
            files,
            store,
            manifest,
            content,
            writes
                .iter()
                .map(|(chunk, bytes)| (*chunk, bytes.as_slice())),
            &committed,
        );
        (result, writes)
    }

    /// The chunks `store` holds of each file of `manifest`.
    fn held(store: &Store, manifest: &VerifiedManifest) -> Vec<u64> {
        (0..2)
            .map(|file| {
                store
                    .bitfield(&manifest.id(), file)
                    .unwrap()
                    .expect("the file is recorded")
                    .count_ones()
            })
            .collect()
    }

    #[test]
    fn a_failed_flush_commits_no_bit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, manifest, content) = download(dir.path());
        let mut files = ChunkFiles::new(content.clone());
        files.before_sync(Box::new(|_| Err(io::Error::other("the disk went away"))));
        let (result, _) = write_the_batch(&mut files, &store, &manifest, &content);
        let error = result.expect_err("a failed flush fails the batch");
        assert!(
            error.contains("cannot flush") && error.contains("the disk went away"),
            "{error}"
        );
        assert_eq!(
            held(&store, &manifest),
            [0, 0],
            "a bit was committed for bytes that were not made durable"
        );
    }

    #[test]
    fn bits_are_committed_only_after_the_bytes_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (store, manifest, content) = download(dir.path());
        let mut files = ChunkFiles::new(content.clone());
        // At each file's sync: which file, and how many chunks the store holds at that moment.
        let syncs = Arc::new(Mutex::new(Vec::new()));
        let (seen, watched, id) = (syncs.clone(), store.clone(), manifest.id());
        files.before_sync(Box::new(move |file| {
            let held: u64 = (0..2)
                .map(|f| {
                    watched
                        .bitfield(&id, f)
                        .ok()
                        .flatten()
                        .map_or(0, |b| b.count_ones())
                })
                .sum();
            seen.lock().unwrap().push((file, held));
            Ok(())
        }));
        let (result, writes) = write_the_batch(&mut files, &store, &manifest, &content);
        result.expect("the batch is written");
        let mut syncs = syncs.lock().unwrap().clone();
        syncs.sort();
        assert_eq!(
            syncs,
            [(0, 0), (1, 0)],
            "each written file is synced, and before any bit is committed"
        );
        assert_eq!(held(&store, &manifest), [1, 1], "the bits are committed");
        for ((file, chunk), bytes) in &writes {
            let on_disk = std::fs::read(content::file_path(
                &content,
                manifest.manifest(),
                *file as usize,
            ))
            .unwrap();
            let at = *chunk as usize * MIN_CHUNK_SIZE as usize;
            assert!(on_disk[at..at + bytes.len()] == bytes[..]);
        }
    }
}
