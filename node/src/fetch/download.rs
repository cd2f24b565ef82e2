//! One download: the loop that runs it (peers found, a worker per peer, the policy asked again,
//! the writer watched) and the state its workers share.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Instant,
};

use libp2p::PeerId;
use licet_proto::{ManifestId, MerkleHash, merkle::AuditPath};
use tokio::{sync::mpsc, task::JoinSet};
use tracing::{debug, warn};

use super::{
    FIRST_PEER_REFRESH, FetchContext, FetchNet, MAX_REFUSAL_REST, PEER_REFRESH, POLICY_RECHECK,
    REFUSAL_REST, WRITE_QUEUE, blocking, database_problem,
    manifest::{ProviderLookup, usable},
    schedule::{ChunkRef, Scheduler},
    worker::{start_worker, work},
    write::{finish, write_chunks},
};
use crate::{items::Item, store::RecordState, transfer::Reply};

/// A chunk that passed verification, on its way to the writer.
pub(super) struct VerifiedChunk {
    pub(super) chunk: ChunkRef,
    pub(super) proof: AuditPath,
    pub(super) leaf: MerkleHash,
    pub(super) reply: Reply,
    pub(super) peer: PeerId,
}

/// Why a worker stopped.
pub(super) enum WorkerEnd {
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
pub(super) struct Download<N> {
    pub(super) ctx: Arc<FetchContext<N>>,
    pub(super) item: Arc<Item>,
    scheduler: Mutex<Scheduler>,
    pub(super) written: mpsc::Sender<VerifiedChunk>,
    /// Where peers found are sent (discovery, peer exchange); the download starts a worker for
    /// each it does not work with yet.
    pub(super) found: mpsc::Sender<PeerId>,
}

impl<N: FetchNet> Download<N> {
    pub(super) fn scheduler(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn stopped(&self) -> bool {
        self.item.is_stopped() || self.scheduler().is_done()
    }
}

/// Fetches everything `item` is missing, then checks and completes it. Errors end up in the
/// item's state (failed, with the reason).
pub(crate) async fn download<N: FetchNet>(
    ctx: Arc<FetchContext<N>>,
    item: Arc<Item>,
    hints: Vec<PeerId>,
    lookup: Option<ProviderLookup>,
    requested: Instant,
) {
    let result = run(&ctx, &item, hints, lookup, requested).await;
    if let Err(problem) = result {
        warn!(id = %item.id(), "download stopped: {problem}");
        {
            let mut live = item.live();
            live.state = RecordState::Failed;
            live.error = Some(problem);
        }
        let (store, saving) = (ctx.store.clone(), item.clone());
        match blocking(move || saving.save(&store).map_err(database_problem)).await {
            Ok(Ok(())) => {}
            Ok(Err(problem)) | Err(problem) => {
                warn!(id = %item.id(), "cannot save its state: {problem}")
            }
        }
    }
}

async fn run<N: FetchNet>(
    ctx: &Arc<FetchContext<N>>,
    item: &Arc<Item>,
    hints: Vec<PeerId>,
    lookup: Option<ProviderLookup>,
    requested: Instant,
) -> Result<(), String> {
    let id = item.id();
    let held = item.live().have.clone();
    let (written, receiver) = mpsc::channel(WRITE_QUEUE);
    let (found, mut discovered) = mpsc::channel::<PeerId>(64);
    let download = Arc::new(Download {
        ctx: ctx.clone(),
        item: item.clone(),
        scheduler: Mutex::new(Scheduler::new(held, random_start())),
        written,
        found: found.clone(),
    });
    // Announced at once, before a chunk is held: other downloaders find this node while they
    // are still downloading too, and ask it for chunks as it gains them (availability answers
    // say what it has; serving asks the policy as for any request).
    let (announcing, announced) = (ctx.clone(), item.clone());
    tokio::spawn(async move { announcing.announce(&announced).await });
    let mut writer = tokio::spawn(write_chunks(ctx.clone(), item.clone(), receiver, requested));
    // Peer discovery runs on its own task so a slow DHT lookup never delays the policy
    // re-check or the handling of finished workers.
    let discovery = tokio::spawn(discover(ctx.clone(), id, hints, lookup, found));
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
                if let Err(refusal) = ctx.policy.check(item.manifest(), ctx.policy.as_fetcher()) {
                    break Err(format!("stopped by the trust policy: {refusal}"));
                }
            }
            Some(peer) = discovered.recv() => {
                if !ctx.peers.is_banned(&peer)
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
    finish(ctx, item).await
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
///
/// Each round sends the peers known at once (`hints`, then the peers connected) before it waits
/// for the provider lookup, whose answer comes after; the first round's lookup is `lookup` when
/// the manifest's search started one.
async fn discover<N: FetchNet>(
    ctx: Arc<FetchContext<N>>,
    id: ManifestId,
    hints: Vec<PeerId>,
    mut lookup: Option<ProviderLookup>,
    found: mpsc::Sender<PeerId>,
) {
    let mut wait = FIRST_PEER_REFRESH;
    loop {
        let connected = ctx.net.connected().await;
        for peer in hints.iter().copied().chain(connected) {
            if usable(&ctx, &peer) && found.send(peer).await.is_err() {
                return;
            }
        }
        let providers = match lookup.take() {
            Some(lookup) => lookup.providers().await,
            None => ctx.net.providers(id).await,
        };
        for peer in providers {
            if usable(&ctx, &peer) && found.send(peer).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(PEER_REFRESH);
    }
}
