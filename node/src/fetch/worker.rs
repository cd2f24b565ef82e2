//! A download's workers: one per peer, each keeping up to [`PIPELINE_PER_PEER`] chunk requests in
//! flight on its peer's source of chunks (fewer while the peer's answers are slow: [`Window`]),
//! verifying each answer before it goes to the writer.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt as _, stream::FuturesUnordered};
use libp2p::{Multiaddr, PeerId};
use licet_proto::{
    ManifestId,
    manifest::Region,
    merkle,
    policy::RefusalReason,
    wire::{Request, Response},
};

use super::{
    AVAILABILITY_REFRESH, ChunkSource, FIRST_PEER_EXCHANGE, FetchNet, IDLE_LIMIT, PEER_EXCHANGE,
    PIPELINE_PER_PEER, PIPELINE_PER_SEED_IN_SWARM, blocking,
    download::{Download, VerifiedChunk, WorkerEnd},
    manifest::usable,
    schedule::ChunkRef,
    window::Window,
};
use crate::transfer::SessionError;

/// Opens a session with `peer` and asks what it has; returns the session if it has the content
/// (a peer still downloading may have nothing this download needs yet: its worker waits for it
/// to gain some, up to [`IDLE_LIMIT`]).
pub(super) async fn start_worker<N: FetchNet>(
    download: &Arc<Download<N>>,
    peer: PeerId,
) -> Result<Option<Arc<N::Source>>, String> {
    let session = download
        .ctx
        .net
        .open(peer)
        .await
        .map_err(|e| format!("peer {peer}: {e}"))?;
    Ok(ask_availability(download, &session)
        .await?
        .then_some(session))
}

/// Asks `session`'s peer for its availability and records it. `Ok(false)` if it refused.
async fn ask_availability<N: FetchNet>(
    download: &Arc<Download<N>>,
    session: &N::Source,
) -> Result<bool, String> {
    let peer = session.peer();
    let peers = &download.ctx.peers;
    let reply = session
        .request(Request::Availability {
            manifest: download.item.id(),
        })
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            peers.request_failed(peer, &e).await;
            return Err(format!("peer {peer}: {e}"));
        }
    };
    match reply.response {
        Response::Availability { files } => {
            let fits = download.scheduler().fits(&files);
            if !fits {
                peers
                    .ban(peer, "sent availability that does not fit the manifest")
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
            peers
                .ban(
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

/// Fetches `chunk` from `session`'s peer; returns it with what became of it and how long the
/// peer took to answer.
async fn fetch_chunk<N: FetchNet>(
    download: Arc<Download<N>>,
    session: Arc<N::Source>,
    chunk: ChunkRef,
) -> (ChunkRef, ChunkOutcome, Duration) {
    let asked = Instant::now();
    let (file, index) = chunk;
    let manifest = download.item.manifest().manifest();
    let entry = &manifest.files[file as usize];
    let expected_len = merkle::chunk_range(index, entry.size, manifest.chunk_size)
        .map_or(0, |r| (r.end - r.start) as usize);
    // Paced before it is sent: the peer's deadline starts then, and never counts our own wait.
    download
        .ctx
        .bandwidth
        .pace_download(session.peer(), expected_len as u32)
        .await;
    let reply = match session
        .request(chunk_request(
            download.item.id(),
            chunk,
            download.ctx.policy.region(),
        ))
        .await
    {
        Ok(reply) => reply,
        Err(e) => return (chunk, ChunkOutcome::Session(e), asked.elapsed()),
    };
    let took = asked.elapsed();
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
                    Err(problem) => ChunkOutcome::Failed(problem),
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
    (chunk, outcome, took)
}

/// Asks `session`'s peer what it has every [`AVAILABILITY_REFRESH`] while the download runs (its
/// worker may be busy with what it had before): a peer still downloading gains chunks, which
/// the scheduler should see before it asks a seed for them, and a seed among several
/// downloaders offers the chunks it has sent least often, which change with every chunk it
/// sends (`serve/spread.rs`).
async fn refresh_availability<N: FetchNet>(download: Arc<Download<N>>, session: Arc<N::Source>) {
    let mut tick = tokio::time::interval(AVAILABILITY_REFRESH);
    // An answer queued behind a pipeline of chunks is slow; do not follow it with a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: the worker has just asked.
    tick.tick().await;
    loop {
        tick.tick().await;
        if download.stopped() {
            return;
        }
        if ask_availability(&download, &session).await != Ok(true) {
            return;
        }
    }
}

/// Asks `session`'s peer which other peers fetch this content (peer exchange) at once and then
/// every [`FIRST_PEER_EXCHANGE`] doubling up to [`PEER_EXCHANGE`], and hands the usable ones,
/// with the addresses given for them, to the download. Stops when the download does, or when
/// the peer has none to give (it refused, is busy, failed, or does not know the request).
async fn exchange_peers<N: FetchNet>(download: Arc<Download<N>>, session: Arc<N::Source>) {
    let mut wait = FIRST_PEER_EXCHANGE;
    while !download.stopped() {
        let request = Request::Peers {
            manifest: download.item.id(),
        };
        let Ok(reply) = session.request(request).await else {
            return;
        };
        let Response::Peers { peers } = reply.response else {
            return;
        };
        for contact in peers {
            let Ok(peer) = PeerId::from_bytes(&contact.peer) else {
                continue;
            };
            if !usable(&download.ctx, &peer) {
                continue;
            }
            let addrs: Vec<Multiaddr> = contact
                .addrs
                .into_iter()
                .filter_map(|bytes| Multiaddr::try_from(bytes).ok())
                .collect();
            download.ctx.net.learn(peer, addrs).await;
            if download.found.send(peer).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(PEER_EXCHANGE);
    }
}

/// Keeps `session`'s peer busy with chunk requests until the download needs nothing it has.
pub(super) async fn work<N: FetchNet>(
    download: Arc<Download<N>>,
    session: Arc<N::Source>,
) -> WorkerEnd {
    let peer = session.peer();
    // Stopped with the worker, also when the worker's task is aborted.
    let refresher = AbortOnDrop(tokio::spawn(refresh_availability(
        download.clone(),
        session.clone(),
    )));
    let _exchanger = AbortOnDrop(tokio::spawn(exchange_peers(
        download.clone(),
        session.clone(),
    )));
    let end = keep_busy(&download, &session, peer, &refresher).await;
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
/// stopped (the peer refused, or failed), an idle worker asks itself.
async fn keep_busy<N: FetchNet>(
    download: &Arc<Download<N>>,
    session: &Arc<N::Source>,
    peer: PeerId,
    refresher: &AbortOnDrop,
) -> WorkerEnd {
    let peers = &download.ctx.peers;
    let mut in_flight = FuturesUnordered::new();
    let mut window = Window::new(PIPELINE_PER_PEER);
    let mut idle_rounds = 0u32;
    loop {
        if download.stopped() && in_flight.is_empty() {
            return WorkerEnd::Done;
        }
        while !download.item.is_stopped() {
            let mut scheduler = download.scheduler();
            let pipeline = if scheduler.is_seed(&peer) && scheduler.partial_peers_help() {
                window.size().min(PIPELINE_PER_SEED_IN_SWARM)
            } else {
                window.size()
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
        let Some((chunk, outcome, took)) = in_flight.next().await else {
            continue;
        };
        match &outcome {
            ChunkOutcome::Busy(_) => window.busy(),
            ChunkOutcome::Session(_) => {}
            _ => window.answered(took),
        }
        match outcome {
            ChunkOutcome::Verified(verified) => {
                peers.received(peer, verified.reply.payload().len() as u64);
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
                peers.bad_chunk(peer, &what).await;
                return WorkerEnd::Gone(format!("peer {peer} banned: {what}"));
            }
            ChunkOutcome::Session(error) => {
                download.scheduler().release(&peer, chunk);
                peers.request_failed(peer, &error).await;
                return WorkerEnd::Gone(format!("peer {peer}: {error}"));
            }
            ChunkOutcome::Failed(problem) => {
                download.scheduler().release(&peer, chunk);
                return WorkerEnd::Gone(problem);
            }
        }
    }
}
