//! Serving peers: the answer to every request a peer sends on a transfer stream (a manifest,
//! availability, a chunk, a catalog head or part, the other peers fetching a manifest), under the
//! trust policy. [`Server`] holds the parts it uses as handles (items, policy, peers, store,
//! metrics, the network, and the catalogs held) and is the node's [`Responder`]; `catalogs.rs`
//! answers catalog requests; `swarms.rs`
//! remembers who asked about what, for peer exchange, and `spread.rs` which chunks a seed sent
//! least often, to offer those first while several peers fetch (super-seeding); `slots.rs` to
//! which few of them a seed sends at a time (choking: the others are answered `Busy` and fetch
//! from their peers until their turn); `stamps.rs`
//! compares complete files with their stamps for a listing too.
//!
//! Invariants:
//! - the trust policy is asked on every request served (manifest, availability, each chunk: once
//!   before the chunk is read and again before it leaves), so a revocation or the end of a
//!   licence window bites on the next request; a chunk goes to a user, so the requester's stated
//!   region counts;
//! - the node serves catalog roots only of the catalog it accepted, and only by its hash, and
//!   catalog parts only of that catalog, by their own hashes;
//! - peers are handed out only for content this node holds and the policy lets it hold, and
//!   only peers that asked this node about that content lately (`swarms.rs`);
//! - every refusal is counted once (`respond`), whatever refused it; a chunk is counted served
//!   only once it passed the second policy check;
//! - a chunk is sent only if its bit is set, its file's stamp (size and modification time) is
//!   the one it had when verified, and the bytes just read verify against the file's signed root
//!   with the audit path sent beside them: the check its receiver makes. A file changed in place
//!   with the same size and modification time (`cp -p`, `rsync -t`, `touch -r`, bit rot) is
//!   caught before a byte of it leaves, so no downloader ever bans this node for it;
//! - content is taken to have changed only on proof: another stamp, a file gone, a file shorter
//!   than its manifest says, or bytes that do not verify. Then that file (not the rest of the
//!   item) is taken out of service: its bits are cleared in memory and in the store, the item is
//!   marked failed with the reason, and `licet_files_changed_total` counts it. It stays out of
//!   service, also across restarts, until `licet-node check` finds it whole again (`check.rs`);
//! - a chunk or catalog part goes out only once the upload limits allow it (`bandwidth`); one
//!   they could not send within `bandwidth::UPLOAD_ANSWER_BUDGET` of its request's arrival is
//!   answered `Busy`, before it is read, so a requester never times out on a throttled seeder;
//! - any other failure to read (too many open files, no memory, an I/O error on one read…)
//!   proves nothing about the content: it is answered `Busy`, counted in
//!   `licet_serve_io_errors_total` and logged at most once per [`IO_ERROR_LOG_INTERVAL`]; the
//!   item's state does not change.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use licet_proto::{
    manifest::{Manifest, Region},
    merkle::{self, AuditPath},
    policy::{RefusalReason, Territory},
    wire::{self, Bitfield, Request, Response},
};
use tracing::{debug, warn};

mod catalogs;
mod slots;
mod spread;
mod stamps;
mod swarms;

pub use stamps::MAX_STAMP_CHECKS_PER_LISTING;

use slots::UploadSlots;
use spread::Spread;
use swarms::Swarms;

use crate::{
    bandwidth::{Bandwidth, TooLate},
    content,
    deliveries::Deliveries,
    items::{Item, Items},
    metrics::Metrics,
    net::Network,
    peers::Peers,
    policy_state::PolicyState,
    store::{FileStamp, RecordState, Store},
    transfer::Responder,
};

/// What a requester is told to wait after a read failed for a reason that may pass.
pub const BUSY_RETRY_MS: u32 = 1_000;
/// The shortest time between two log lines about failed reads (each is counted).
pub const IO_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// When a failed read was last logged, in this process.
static LAST_IO_ERROR_LOG: Mutex<Option<Instant>> = Mutex::new(None);

/// The parts serving uses, as handles. Cheap to share; the node's [`Responder`].
pub struct Server {
    items: Arc<Items>,
    policy: Arc<PolicyState>,
    peers: Peers,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    network: Network,
    swarms: Mutex<Swarms>,
    spread: Mutex<Spread>,
    slots: Mutex<UploadSlots>,
    /// The upload limits chunks and catalog parts are paced under.
    bandwidth: Bandwidth,
    /// The count of deliveries this seed reports.
    deliveries: Option<Deliveries>,
}

impl Server {
    /// The server of the given parts.
    pub fn new(
        items: Arc<Items>,
        policy: Arc<PolicyState>,
        peers: Peers,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        network: Network,
        bandwidth: Bandwidth,
    ) -> Server {
        Server {
            items,
            policy,
            peers,
            store,
            metrics,
            network,
            swarms: Mutex::new(Swarms::default()),
            spread: Mutex::new(Spread::default()),
            slots: Mutex::new(UploadSlots::default()),
            bandwidth,
            deliveries: None,
        }
    }

    /// Counts the chunks served in `deliveries` too.
    pub fn with_deliveries(mut self, deliveries: Deliveries) -> Server {
        self.deliveries = Some(deliveries);
        self
    }

    fn swarms(&self) -> std::sync::MutexGuard<'_, Swarms> {
        self.swarms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spread(&self) -> std::sync::MutexGuard<'_, Spread> {
        self.spread.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `peer` may be sent a chunk of `item` now: always, unless this node holds it
    /// whole while other peers fetch it too; then only in one of its upload slots (`slots.rs`).
    fn has_upload_slot(&self, item: &Item, peer: PeerId) -> bool {
        let now = Instant::now();
        if item.live().state != RecordState::Complete
            || !self.swarms().others_fetching(&item.id(), &peer, now)
        {
            return true;
        }
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(item.id(), peer, now)
    }
}

/// A refusal, its detail bounded as the wire allows.
pub fn refuse(reason: RefusalReason, detail: impl Into<String>) -> Response {
    Response::Refused {
        reason,
        detail: wire::bounded_detail(&detail.into()),
    }
}

/// Why a chunk that was read is not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeFailure {
    /// The file is no longer what was verified: it is taken out of service.
    #[error("{} changed on disk: {how}", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What shows it.
        how: String,
    },
    /// Reading failed for a reason that says nothing about the content: answered `Busy`.
    #[error("cannot read {}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// What a failed read of `path` means: a file gone or cut short has changed; anything else
/// (too many open files, no memory, an I/O error) proves nothing.
pub fn classify_read_error(path: &Path, error: io::Error) -> ServeFailure {
    let how = match error.kind() {
        io::ErrorKind::NotFound => "it no longer exists",
        io::ErrorKind::UnexpectedEof => "it is shorter than the manifest says",
        _ => {
            return ServeFailure::Unreadable {
                path: path.to_owned(),
                source: error,
            };
        }
    };
    ServeFailure::Changed {
        path: path.to_owned(),
        how: how.to_owned(),
    }
}

/// Reads chunk `index` of file `file` of `manifest` under `dir` into `buffer` and checks it
/// before it may be sent: the file's stamp against `stamp` (when the file is complete), then
/// the bytes against the file's root with `proof`. The file is read where it is now
/// (`content::open_file`: `NAME.part` unless `complete`, and a partial file renamed meanwhile
/// is found under its other name, so a rename never takes it out of service). Blocks.
#[allow(clippy::too_many_arguments)]
pub fn read_verified_chunk(
    dir: &Path,
    manifest: &Manifest,
    file: usize,
    index: u64,
    complete: bool,
    stamp: Option<&FileStamp>,
    proof: &AuditPath,
    buffer: &mut Vec<u8>,
) -> Result<(), ServeFailure> {
    let (opened, path) = content::open_file(dir, manifest, file, complete)
        .map_err(|(path, e)| classify_read_error(&path, e))?;
    if let Some(expected) = stamp {
        stamps::compare_stamp(
            &path,
            opened.metadata().and_then(|meta| content::stamp_of(&meta)),
            expected,
        )?;
    }
    content::read_chunk_from(&opened, manifest, file, index, buffer)
        .map_err(|e| classify_read_error(&path, e))?;
    let entry = &manifest.files[file];
    let chunks = entry.chunk_count(manifest.chunk_size);
    if !merkle::verify_chunk(&entry.root, index, chunks, buffer, proof) {
        return Err(ServeFailure::Changed {
            how: format!(
                "chunk {index} no longer matches the manifest, though its size and modification \
                 time did not change"
            ),
            path,
        });
    }
    Ok(())
}

/// What a content request asks for, once its manifest id is known.
enum ContentRequest {
    Manifest,
    Availability,
    Peers,
    /// A chunk, for a requester in `region` (`None`: it stated no region).
    Chunk {
        file: u32,
        index: u64,
        region: Option<Region>,
    },
}

impl Server {
    /// The answer to one request, before it is counted.
    async fn answer(
        &self,
        peer: PeerId,
        request: Request,
        received: Instant,
        payload: &mut Vec<u8>,
    ) -> Response {
        let (id, wanted) = match request {
            Request::CatalogHead { .. }
            | Request::CatalogPart { .. }
            | Request::CatalogParts { .. } => {
                let response = self.serve_catalog(&request, payload);
                // Paced once prepared (a root piece is at most 1 MiB, parts at most 64 of
                // 256 KiB, read from memory).
                let len = match &response {
                    Response::CatalogPart { len, .. } => *len,
                    Response::CatalogParts { .. } => {
                        u32::try_from(payload.len()).unwrap_or(u32::MAX)
                    }
                    _ => 0,
                };
                if len > 0
                    && let Err(late) = self.bandwidth.pace_upload(peer, len, received).await
                {
                    payload.clear();
                    return busy(late);
                }
                return response;
            }
            // The plain clock, not the time floor: the asker compares clocks.
            Request::Time => {
                return Response::Time {
                    unix_seconds: licet_proto::Timestamp::now().0,
                };
            }
            Request::Manifest { id } => (id, ContentRequest::Manifest),
            Request::Availability { manifest } => (manifest, ContentRequest::Availability),
            Request::Peers { manifest } => (manifest, ContentRequest::Peers),
            Request::Chunk {
                manifest,
                file,
                index,
            } => (
                manifest,
                ContentRequest::Chunk {
                    file,
                    index,
                    region: None,
                },
            ),
            Request::ChunkForRegion {
                manifest,
                file,
                index,
                region,
            } => (
                manifest,
                ContentRequest::Chunk {
                    file,
                    index,
                    region: Some(region),
                },
            ),
        };
        let Some(item) = self.items.get(&id) else {
            return refuse(
                RefusalReason::NotHeld,
                format!("manifest {id} is not held here"),
            );
        };
        // Asked on every request, chunks included: revocation and expiry bite at once. A chunk
        // goes to a user, so the requester's stated region counts; the rest hands no content.
        let territory = match wanted {
            ContentRequest::Chunk { region, .. } => Territory::Requester(region),
            ContentRequest::Manifest | ContentRequest::Availability | ContentRequest::Peers => {
                Territory::Holder
            }
        };
        if let Err(refusal) = self.policy.check(item.manifest(), territory) {
            return refuse(refusal.reason, refusal.detail);
        }
        match wanted {
            ContentRequest::Manifest => Response::Manifest {
                envelope: item.manifest().envelope().encode(),
            },
            ContentRequest::Availability => {
                let now = Instant::now();
                let others_fetching = {
                    let mut swarms = self.swarms();
                    swarms.asked(id, peer, now);
                    swarms.others_fetching(&id, &peer, now)
                };
                let live = item.live();
                // A seed among several downloaders offers the chunks it sent least often.
                let files = if others_fetching && live.state == RecordState::Complete {
                    self.spread().offer(&id, &live.have, now)
                } else {
                    live.have.clone()
                };
                Response::Availability { files }
            }
            ContentRequest::Peers => self.fetching_peers(id, peer).await,
            ContentRequest::Chunk { file, index, .. } => {
                // A seed among more downloaders than it has slots sends to a few at a time.
                if !self.has_upload_slot(&item, peer) {
                    self.metrics.chunks_choked.inc();
                    return Response::Busy {
                        retry_after_ms: slots::CHOKED_RETRY_MS,
                    };
                }
                // Paced before it is read: one the limit cannot send in time is answered busy.
                let len = chunk_len(item.manifest().manifest(), file, index);
                if let Err(late) = self.bandwidth.pace_upload(peer, len, received).await {
                    return busy(late);
                }
                let response = self.serve_chunk(item.clone(), file, index, payload).await;
                // Asked again once the chunk is read: a revocation or the end of the licence
                // window that came while it was read stops it from leaving.
                if let Response::Chunk { .. } = &response
                    && let Err(refusal) = self.policy.check(item.manifest(), territory)
                {
                    payload.clear();
                    return refuse(refusal.reason, refusal.detail);
                }
                // Counted only now, past the second policy check: a chunk refused there is
                // not served.
                if let Response::Chunk { len, .. } = &response {
                    self.peers.served(peer, u64::from(*len));
                    if let Some(deliveries) = &self.deliveries {
                        let manifest = item.manifest().manifest();
                        deliveries.served(
                            id,
                            manifest.publisher,
                            manifest.total_size(),
                            &peer,
                            u64::from(*len),
                        );
                    }
                    if item.live().state == RecordState::Complete {
                        let manifest = item.manifest().manifest();
                        let chunks = || {
                            manifest
                                .files
                                .iter()
                                .map(|f| f.chunk_count(manifest.chunk_size))
                                .collect()
                        };
                        self.spread()
                            .sent(id, chunks, (file, index), Instant::now());
                    }
                }
                response
            }
        }
    }
}

impl Responder for Server {
    async fn respond(
        &self,
        peer: PeerId,
        request: Request,
        received: Instant,
        payload: &mut Vec<u8>,
    ) -> Response {
        let response = self.answer(peer, request, received, payload).await;
        // Every refusal is counted here, once, whatever refused it.
        if let Response::Refused { reason, .. } = &response {
            self.metrics.refused(*reason);
        }
        response
    }

    fn protocol_violation(&self, peer: PeerId, reason: &str) {
        let peers = self.peers.clone();
        let reason = format!("protocol violation: {reason}");
        tokio::spawn(async move { peers.ban(peer, &reason).await });
    }
}

impl Server {
    /// The peers that asked about `manifest` lately, `asker` left out, with the addresses they
    /// said they listen on.
    async fn fetching_peers(&self, manifest: licet_proto::ManifestId, asker: PeerId) -> Response {
        let members =
            self.swarms()
                .members(&manifest, &asker, Instant::now(), wire::MAX_EXCHANGED_PEERS);
        let contacts = if members.is_empty() {
            Vec::new()
        } else {
            // The network stopping: the bare ids still help.
            match self.network.contacts(members.clone()).await {
                Ok(contacts) => contacts,
                Err(_) => members.into_iter().map(|peer| (peer, Vec::new())).collect(),
            }
        };
        Response::Peers {
            peers: contacts
                .into_iter()
                .map(|(peer, addrs)| wire::PeerContact {
                    peer: peer.to_bytes(),
                    addrs: addrs
                        .into_iter()
                        .map(|addr| addr.to_vec())
                        .filter(|bytes| bytes.len() <= wire::MAX_CONTACT_BYTES)
                        .take(wire::MAX_CONTACT_ADDRS)
                        .collect(),
                })
                .collect(),
        }
    }

    /// Answers a chunk request (after the policy said yes): reads the chunk and checks it
    /// before it is sent (see the module docs).
    async fn serve_chunk(
        &self,
        item: Arc<Item>,
        file: u32,
        index: u64,
        payload: &mut Vec<u8>,
    ) -> Response {
        let manifest = item.manifest().manifest();
        let Some(entry) = manifest.files.get(file as usize) else {
            return refuse(
                RefusalReason::BadRequest,
                format!("no file {file} in the manifest"),
            );
        };
        if index >= entry.chunk_count(manifest.chunk_size) {
            return refuse(
                RefusalReason::BadRequest,
                format!("no chunk {index} in file {file}"),
            );
        }
        let (tree, stamp) = {
            let live = item.live();
            if !live.have[file as usize].get(index) {
                return refuse(RefusalReason::NotHeld, "chunk not held here");
            }
            (
                live.trees[file as usize].clone(),
                live.stamps[file as usize].clone(),
            )
        };
        // The file is complete (at its final name) exactly when it has a proof tree.
        let complete = tree.is_some();
        let proof = match tree.as_ref().and_then(|t| t.cached_audit_path(index)) {
            Some(proof) => Some(proof),
            None => {
                let store = self.store.clone();
                let id = item.id();
                tokio::task::spawn_blocking(move || {
                    // A complete file's proof from its proof tree (its block read from the
                    // store); a partial file's, or one whose blocks are not stored yet (the
                    // moment its download completes), the proof stored with the chunk.
                    tree.and_then(|t| {
                        t.audit_path(&store, index)
                            .inspect_err(|e| debug!(%id, "no proof from the tree: {e}"))
                            .ok()
                            .flatten()
                    })
                    .or_else(|| store.proof(&id, file, index).ok().flatten())
                })
                .await
                .ok()
                .flatten()
            }
        };
        let Some(proof) = proof else {
            return refuse(RefusalReason::NotHeld, "chunk proof not held here");
        };
        let buffer = std::mem::take(payload);
        let reading = item.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut buffer = buffer;
            let result = read_verified_chunk(
                reading.dir(),
                reading.manifest().manifest(),
                file as usize,
                index,
                complete,
                stamp.as_ref(),
                &proof,
                &mut buffer,
            );
            (buffer, result.map(|()| proof))
        })
        .await;
        match read {
            Ok((buffer, Ok(proof))) => {
                *payload = buffer;
                let len = payload.len() as u32;
                Response::Chunk { proof, len }
            }
            Ok((buffer, Err(failure))) => {
                *payload = buffer;
                payload.clear();
                match failure {
                    ServeFailure::Changed { .. } => {
                        self.take_file_out_of_service(&item, file, &failure.to_string())
                            .await;
                        refuse(
                            RefusalReason::NotHeld,
                            format!("file {file} changed on disk here; not served"),
                        )
                    }
                    ServeFailure::Unreadable { .. } => {
                        self.metrics.serve_io_errors.inc();
                        log_read_error(&item, &failure);
                        Response::Busy {
                            retry_after_ms: BUSY_RETRY_MS,
                        }
                    }
                }
            }
            Err(_) => Response::Busy {
                retry_after_ms: BUSY_RETRY_MS,
            },
        }
    }

    /// Takes file `file` of `item` out of service because `problem` shows it changed on disk:
    /// clears its bits (memory and store), marks the item failed with the reason, counts it.
    /// A no-op for a file already out of service.
    async fn take_file_out_of_service(&self, item: &Arc<Item>, file: u32, problem: &str) {
        let id = item.id();
        let cleared = {
            let mut live = item.live();
            let Some(bits) = live.have.get_mut(file as usize) else {
                return;
            };
            if bits.count_ones() == 0 {
                return;
            }
            *bits = Bitfield::new(bits.len());
            let cleared = bits.clone();
            // A running download ends by checking every file against its root.
            if !live.downloading {
                live.state = RecordState::Failed;
            }
            live.error = Some(format!(
                "{problem}; it is not served until `licet-node check {id}` finds it whole"
            ));
            cleared
        };
        self.metrics.files_changed.inc();
        warn!(%id, "stops serving a file: {problem}");
        let (store, saving) = (self.store.clone(), item.clone());
        let recorded = tokio::task::spawn_blocking(move || {
            if let Err(e) = store.replace_bitfield(&id, file, &cleared) {
                warn!(%id, "cannot record that file {file} changed: {e}");
            }
            if let Err(e) = saving.save(&store) {
                warn!(%id, "cannot save its state: {e}");
            }
        })
        .await;
        if let Err(e) = recorded {
            warn!(%id, "cannot record that file {file} changed: {e}");
        }
    }
}

/// The size of chunk `index` of file `file` (0 if there is no such chunk: it is refused).
fn chunk_len(manifest: &Manifest, file: u32, index: u64) -> u32 {
    manifest
        .files
        .get(file as usize)
        .and_then(|entry| merkle::chunk_range(index, entry.size, manifest.chunk_size))
        .map_or(0, |range| (range.end - range.start) as u32)
}

/// The answer to a request the upload limit cannot send in time: ask again later, or elsewhere.
fn busy(late: TooLate) -> Response {
    Response::Busy {
        retry_after_ms: u32::try_from(late.retry_after.as_millis()).unwrap_or(u32::MAX),
    }
}

/// Logs a failed read, at most once per [`IO_ERROR_LOG_INTERVAL`] (each is counted).
fn log_read_error(item: &Item, failure: &ServeFailure) {
    let mut last = LAST_IO_ERROR_LOG.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_some_and(|at| at.elapsed() < IO_ERROR_LOG_INTERVAL) {
        return;
    }
    *last = Some(Instant::now());
    let cause = match failure {
        ServeFailure::Unreadable { source, .. } => source.to_string(),
        ServeFailure::Changed { how, .. } => how.clone(),
    };
    warn!(
        id = %item.id(),
        "{failure}: {cause}; answered busy, nothing changed (licet_serve_io_errors_total counts \
         each; logged at most every {} s)",
        IO_ERROR_LOG_INTERVAL.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use std::fs::{File, FileTimes};

    use licet_proto::{manifest::MIN_CHUNK_SIZE, merkle::MerkleTree};

    use super::*;

    /// A one-file manifest over `bytes` written under a new directory, and its tree.
    fn seeded(bytes: &[u8]) -> (tempfile::TempDir, Manifest, MerkleTree, FileStamp) {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest =
            crate::test_support::manifest_body("serving test", &[bytes.len() as u64]);
        let path = content::file_path(dir.path(), &manifest, 0, true);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let (leaves, _) = merkle::hash_file_leaves(
            &File::open(&path).unwrap(),
            manifest.chunk_size,
            1,
            &mut |_| {},
        )
        .unwrap();
        let tree = MerkleTree::from_leaves(leaves);
        manifest.files[0].root = tree.root();
        let stamp = content::stamp(&path).unwrap();
        (dir, manifest, tree, stamp)
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn a_chunk_changed_with_the_same_size_and_mtime_is_not_sent() {
        let chunk = MIN_CHUNK_SIZE as usize;
        let original = bytes(3 * chunk, 1);
        let (dir, manifest, tree, stamp) = seeded(&original);
        let path = content::file_path(dir.path(), &manifest, 0, true);
        let read = |index: u64, stamp: Option<&FileStamp>| {
            let mut buffer = Vec::new();
            read_verified_chunk(
                dir.path(),
                &manifest,
                0,
                index,
                true,
                stamp,
                &tree.audit_path(index).unwrap(),
                &mut buffer,
            )
            .map(|()| buffer)
        };
        assert_eq!(read(1, Some(&stamp)).unwrap(), original[chunk..2 * chunk]);

        // `cp -p` of other bytes: same size, the old modification time put back.
        let mut changed = original.clone();
        changed[chunk + 7] ^= 0xff;
        std::fs::write(&path, &changed).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(
                std::time::UNIX_EPOCH
                    + Duration::from_nanos(u64::try_from(stamp.modified_ns).unwrap()),
            ))
            .unwrap();
        assert_eq!(
            content::stamp(&path).unwrap(),
            stamp,
            "the stamp is the same"
        );
        match read(1, Some(&stamp)) {
            Err(ServeFailure::Changed { how, .. }) => {
                assert!(how.contains("chunk 1 no longer matches"), "{how}")
            }
            other => panic!("{other:?}"),
        }
        // The chunks around it still match and may be sent.
        assert_eq!(read(0, Some(&stamp)).unwrap(), original[..chunk]);
        assert_eq!(read(2, None).unwrap(), original[2 * chunk..]);
    }

    #[test]
    fn another_stamp_a_missing_or_short_file_are_changes() {
        let chunk = MIN_CHUNK_SIZE as usize;
        let (dir, manifest, tree, stamp) = seeded(&bytes(2 * chunk, 2));
        let path = content::file_path(dir.path(), &manifest, 0, true);
        let read = |stamp: Option<&FileStamp>| {
            let mut buffer = Vec::new();
            read_verified_chunk(
                dir.path(),
                &manifest,
                0,
                1,
                true,
                stamp,
                &tree.audit_path(1).unwrap(),
                &mut buffer,
            )
        };
        std::fs::write(&path, bytes(chunk + 10, 2)).unwrap();
        for (stamp, expected) in [
            (Some(&stamp), "size or modification time changed"),
            (None, "shorter than the manifest says"),
        ] {
            match read(stamp) {
                Err(ServeFailure::Changed { how, .. }) => assert!(how.contains(expected), "{how}"),
                other => panic!("{other:?}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
        match read(Some(&stamp)) {
            Err(ServeFailure::Changed { how, .. }) => assert!(how.contains("no longer exists")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_partial_file_is_read_under_either_name_and_gone_only_when_both_are() {
        let chunk = MIN_CHUNK_SIZE as usize;
        let original = bytes(2 * chunk, 3);
        let (dir, manifest, tree, _) = seeded(&original);
        let [final_path, part_path] = content::paths_on_disk(dir.path(), &manifest, 0);
        let read = || {
            let mut buffer = Vec::new();
            read_verified_chunk(
                dir.path(),
                &manifest,
                0,
                1,
                false,
                None,
                &tree.audit_path(1).unwrap(),
                &mut buffer,
            )
            .map(|()| buffer)
        };
        // Just renamed to its final name by the end check: still served.
        assert_eq!(read().unwrap(), original[chunk..]);
        // Where a partial file lives.
        std::fs::rename(&final_path, &part_path).unwrap();
        assert_eq!(read().unwrap(), original[chunk..]);
        std::fs::remove_file(&part_path).unwrap();
        match read() {
            Err(ServeFailure::Changed { how, path }) => {
                assert!(how.contains("no longer exists"), "{how}");
                assert_eq!(path, part_path, "the error names the partial file");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_io_error_that_proves_nothing_is_not_a_change() {
        let path = Path::new("/srv/release/ep1.mkv");
        use rustix::io::Errno;
        for errno in [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOMEM,
            Errno::IO,
            Errno::ACCESS,
        ] {
            let failure = classify_read_error(path, errno.into());
            assert!(
                matches!(failure, ServeFailure::Unreadable { .. }),
                "errno {errno}: {failure:?}"
            );
        }
        let gone = classify_read_error(path, Errno::NOENT.into());
        assert!(matches!(gone, ServeFailure::Changed { .. }), "{gone:?}");
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer");
        assert!(matches!(
            classify_read_error(path, eof),
            ServeFailure::Changed { .. }
        ));
    }
}
