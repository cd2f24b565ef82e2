//! The item registry: every content item the node holds (seeded or downloaded), with the live
//! state of each (chunks held, proof trees, file stamps, who sends and serves it). Fetching,
//! serving and the control API reach items through [`Items`] and the methods of [`Item`].
//!
//! Invariants:
//! - one item per manifest id: [`Items::claim`] inserts only under the registry's lock, after
//!   its caller's check of the others (a `get`, an `add` and the mirror cannot both take one id);
//! - an item's manifest, folder, origin and creation time never change; what changes is in
//!   [`Live`], behind the item's own lock (a poisoned lock is taken over: every writer leaves it
//!   whole);
//! - an item once stopped ([`Item::stop`]) stays stopped: its download task ends, and a new item
//!   takes its place if it is held again;
//! - a paused item ([`Item::halt`]) stays halted until no download task of it runs: its task
//!   ends, and only [`Item::begin_download`] (which sees none running) lifts the halt, so a task
//!   that saw the halt never sees it lifted.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use libp2p::PeerId;
use licet_proto::{ManifestId, Timestamp, manifest::VerifiedManifest, wire::Bitfield};

use crate::store::{
    ContentOrigin, ContentRecord, FileStamp, RecordState, Store, StoreError, proof_tree::ProofTree,
};

/// The live state of one content item.
pub struct Item {
    manifest: VerifiedManifest,
    dir: PathBuf,
    origin: ContentOrigin,
    added_at: Timestamp,
    live: Mutex<Live>,
    fetched_chunks: AtomicU64,
    sending: Mutex<HashSet<PeerId>>,
    sources: Mutex<HashSet<PeerId>>,
    /// Set when the item is removed or the daemon stops: its download task ends.
    stop: AtomicBool,
    /// Set when the user pauses it: its download task ends; lifted when a new one begins.
    halt: AtomicBool,
}

/// The mutable part of an item: plain data behind the item's lock ([`Item::live`]).
pub struct Live {
    /// Its state as recorded.
    pub state: RecordState,
    /// Why it failed, or why a file is out of service.
    pub error: Option<String>,
    /// Verified chunks held, per file.
    pub have: Vec<Bitfield>,
    /// Proof trees of complete files (their upper levels; see [`ProofTree`]); `None` while
    /// a file is partial.
    pub trees: Vec<Option<Arc<ProofTree>>>,
    /// Size and modification time of each complete file when verified.
    pub stamps: Vec<Option<FileStamp>>,
    /// Whether a download task is running for it.
    pub downloading: bool,
}

impl Live {
    /// Whether file `index` is complete: its leaves are known (seeded, adopted, or checked whole
    /// at the end of its download). A download's file that is not lives under a partial name
    /// (see `content`).
    pub fn file_complete(&self, index: usize) -> bool {
        self.trees.get(index).is_some_and(Option::is_some)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Item {
    /// An item of `manifest` in `dir`, in the state `live`.
    pub fn new(
        manifest: VerifiedManifest,
        dir: PathBuf,
        origin: ContentOrigin,
        added_at: Timestamp,
        live: Live,
    ) -> Item {
        Item {
            manifest,
            dir,
            origin,
            added_at,
            live: Mutex::new(live),
            fetched_chunks: AtomicU64::new(0),
            sending: Mutex::new(HashSet::new()),
            sources: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
            halt: AtomicBool::new(false),
        }
    }

    /// Its manifest id.
    pub fn id(&self) -> ManifestId {
        self.manifest.id()
    }

    /// Its signed manifest.
    pub fn manifest(&self) -> &VerifiedManifest {
        &self.manifest
    }

    /// The folder its files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it was seeded here or downloaded.
    pub fn origin(&self) -> ContentOrigin {
        self.origin
    }

    /// Its state now.
    pub fn state(&self) -> RecordState {
        self.live().state
    }

    /// Its mutable state, locked.
    pub fn live(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }

    /// Its record for the store, from `live` (its locked state).
    pub fn record(&self, live: &Live) -> ContentRecord {
        ContentRecord {
            dir: self.dir.clone(),
            origin: self.origin,
            state: live.state,
            error: live.error.clone(),
            added_at: self.added_at,
            // The store keeps stamps for all files or none: they are known together once the
            // item is complete (seeded, or a download's final check).
            file_stamps: live
                .stamps
                .iter()
                .cloned()
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default(),
        }
    }

    /// Saves its record (state, error, stamps) to `store`. Blocks.
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let record = self.record(&self.live());
        store.content_set_record(&self.id(), &record)
    }

    /// Stops its download task for good (removed, or the daemon stops).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether its download task must end: it was stopped for good, or paused.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.halt.load(Ordering::Relaxed)
    }

    /// Whether it was stopped for good (removed, or the daemon stops), not merely paused.
    pub fn is_stopped_for_good(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Pauses it, with its state locked in `live`: [`RecordState::Paused`], and its download
    /// task (if one runs) ends.
    pub fn halt(&self, live: &mut Live) {
        live.state = RecordState::Paused;
        self.halt.store(true, Ordering::Relaxed);
    }

    /// Whether it is halted by a pause that no new download task has lifted yet.
    pub fn is_halted(&self) -> bool {
        self.halt.load(Ordering::Relaxed)
    }

    /// Marks a download task as begun, with its state locked in `live`, if none runs and it is
    /// neither complete nor stopped for good: its state becomes downloading and a pause's halt
    /// is lifted. Whether the caller is to start the task. While a paused task still winds down,
    /// it only sets the state (the task's end, [`Item::download_ended`], starts the next one).
    pub fn begin_download(&self, live: &mut Live) -> bool {
        if live.state == RecordState::Complete || self.is_stopped_for_good() {
            return false;
        }
        live.state = RecordState::Downloading;
        live.error = None;
        if live.downloading {
            return false;
        }
        live.downloading = true;
        self.halt.store(false, Ordering::Relaxed);
        true
    }

    /// Marks its download task as ended; whether a new one is to start because the item was
    /// resumed while that task wound down from a pause.
    pub fn download_ended(&self) -> bool {
        let mut live = self.live();
        live.downloading = false;
        self.is_halted() && live.state == RecordState::Downloading && !self.is_stopped_for_good()
    }

    /// Chunks fetched since the daemon started.
    pub fn fetched_chunks(&self) -> u64 {
        self.fetched_chunks.load(Ordering::Relaxed)
    }

    /// Counts `count` chunks fetched.
    pub fn count_fetched(&self, count: u64) {
        self.fetched_chunks.fetch_add(count, Ordering::Relaxed);
    }

    /// `peer` is sending chunks of it now.
    pub fn sending_started(&self, peer: PeerId) {
        lock(&self.sending).insert(peer);
    }

    /// `peer` no longer sends (`None`: nobody does).
    pub fn sending_stopped(&self, peer: Option<&PeerId>) {
        match peer {
            Some(peer) => lock(&self.sending).remove(peer),
            None => {
                lock(&self.sending).clear();
                true
            }
        };
    }

    /// Peers sending chunks of it now.
    pub fn sending_peers(&self) -> usize {
        lock(&self.sending).len()
    }

    /// `peers` sent chunks of it that were written.
    pub fn add_sources(&self, peers: impl IntoIterator<Item = PeerId>) {
        lock(&self.sources).extend(peers);
    }

    /// Peers that sent chunks of it that were written.
    pub fn source_peers(&self) -> usize {
        lock(&self.sources).len()
    }
}

/// Every item the node holds, by manifest id (see the module docs).
#[derive(Default)]
pub struct Items {
    items: Mutex<HashMap<ManifestId, Arc<Item>>>,
}

impl Items {
    /// An empty registry.
    pub fn new() -> Items {
        Items::default()
    }

    /// The item of `id`, if held.
    pub fn get(&self, id: &ManifestId) -> Option<Arc<Item>> {
        lock(&self.items).get(id).cloned()
    }

    /// Every item held, in no order.
    pub fn all(&self) -> Vec<Arc<Item>> {
        lock(&self.items).values().cloned().collect()
    }

    /// Holds `item`, in place of the item of its id if there is one (which is stopped).
    pub fn replace(&self, item: Arc<Item>) {
        if let Some(old) = lock(&self.items).insert(item.id(), item) {
            old.stop();
        }
    }

    /// Holds `item` if `check`, given the items held, finds no reason against it; the check and
    /// the insertion are one step under the registry's lock.
    pub fn claim<E>(
        &self,
        item: &Arc<Item>,
        check: impl FnOnce(&HashMap<ManifestId, Arc<Item>>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut items = lock(&self.items);
        check(&items)?;
        items.insert(item.id(), item.clone());
        Ok(())
    }

    /// Forgets the item of `id` and stops it; returns it.
    pub fn remove(&self, id: &ManifestId) -> Option<Arc<Item>> {
        let item = lock(&self.items).remove(id)?;
        item.stop();
        Some(item)
    }

    /// Forgets `item` if it is still the one held under its id (a failed claim's undoing).
    pub fn unclaim(&self, item: &Arc<Item>) {
        let mut items = lock(&self.items);
        if items
            .get(&item.id())
            .is_some_and(|held| Arc::ptr_eq(held, item))
        {
            items.remove(&item.id());
        }
    }

    /// Stops every item's download task (daemon shutdown).
    pub fn stop_all(&self) {
        for item in lock(&self.items).values() {
            item.stop();
        }
    }
}
