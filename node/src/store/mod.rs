//! The node's persistent state: one redb database, the file `state.redb` in the data directory.
//!
//! [`Store`] is the only owner of that database (one owner per resource): the trust store,
//! verified manifests, content items, per-file chunk bitfields, leaf hashes and chunk proofs, and
//! the newest accepted catalog of each publisher. Content itself stays in ordinary files; the
//! store records where they are ([`ContentRecord::dir`]).
//!
//! **Every method blocks** (disk reads, and an `fsync` on each commit). Async code calls them
//! through `tokio::task::spawn_blocking`. `Store` is `Send + Sync`: share it with an `Arc`.
//! [`Store::compact`] shrinks the file after a download (module `compaction`); every other call
//! waits while it runs.
//!
//! # Tables
//!
//! Keys are fixed-size byte strings, so all rows of one content item are one contiguous key
//! range (`id ‖ …`), which is how [`Store::content_remove`] deletes them. Integers in keys are
//! big-endian, so rows sort by file, then by chunk.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"magic"`, `"format_version"` | postcard `"licet-node-state"`, postcard `u32` |
//! | `trust` | publisher key (32 bytes) | postcard [`TrustedPublisher`] |
//! | `manifests` | manifest id (32) | the signed envelope exactly as verified (`Signed::encode`) |
//! | `content` | manifest id (32) | postcard record: the fields of [`ContentRecord`], `dir` as UTF-8 |
//! | `bitfields` | id ‖ file `u32` BE (36) | postcard [`Bitfield`]: the base of the held chunks (see `held_chunks`) |
//! | `leaves` | id ‖ file (36) | postcard `Vec<MerkleHash>` |
//! | `leaf_blocks` | id ‖ file ‖ block `u64` BE (44) | the same leaves in blocks of [`LEAVES_PER_BLOCK`], 32 bytes each (see `leaf_blocks`) |
//! | `proofs` | id ‖ file ‖ chunk `u64` BE (44) | postcard [`AuditPath`] |
//! | `chunk_leaves` | id ‖ file ‖ chunk `u64` BE (44) | the chunk's leaf hash (32 bytes) |
//! | `catalogs` | publisher key (32) | postcard `{ sequence: u64, envelope: bytes }` |
//! | `catalog_heads` | publisher key (32) | the signed head of the stored catalog, exactly as verified |
//! | `mirrors` | publisher key (32) | empty: the operator asked to mirror this publisher's catalog |
//!
//! # Invariants
//!
//! 1. **A file is opened only if it is ours.** An existing file at the path is used only if it is
//!    a redb database whose `meta` table holds [`STATE_MAGIC`] and a format version this build
//!    reads. Anything else (not redb, empty, another program's redb file, damaged beyond what
//!    redb repairs, a newer format) is refused with an error naming the path, and the check
//!    writes nothing to it: it opens the file read-only through a storage backend that keeps in
//!    memory whatever redb writes while opening (the repair of a file that was not shut down
//!    cleanly, header flags). Only a file found to be ours is then opened for writing.
//! 2. **A new file appears complete.** A new state file is created under a temporary name in the
//!    same directory, given its tables and `meta`, and only then linked into place, so a crash
//!    during creation never leaves a file at the path that the next start would refuse.
//! 3. **Bounded decoding; damage is an error, not a panic.** Every value is written with
//!    [`licet_proto::encoding::encode`] and read with [`licet_proto::encoding::decode`] under an
//!    explicit limit. Writes check the same limits (and the shapes below), so a value that does
//!    not decode, or a stored manifest that no longer verifies, can only be damage: it is
//!    [`StoreError::Corrupt`] naming the table and key. redb documents that opening a file
//!    damaged outside redb may panic; [`Store::open`] catches that and reports
//!    [`StoreError::Open`]. (Damage to redb's own pages in a file that was shut down cleanly is
//!    not looked for at open, which would read the whole file; redb may meet it in a later call.)
//! 4. **A bit is committed only after its chunk's bytes are durable.** [`Store::commit_chunks`]
//!    sets bits (writes the chunks' leaf rows, which are their bits while the file downloads:
//!    a commit costs its own chunks, not the file's whole bitfield; module `held_chunks`) in one
//!    transaction committed with [`Durability::Immediate`], and its caller must
//!    have `fsync`ed the chunks' bytes before calling. So after a crash at any instant every set
//!    bit names a verified chunk that is on disk; a chunk written but not yet committed is merely
//!    fetched again.
//! 5. **One item, one consistent set of rows.** A content item has a `content` row and a
//!    `manifests` row (both or neither), and a bitfield for each of its manifest's files whose
//!    length is that file's chunk count (at most [`MAX_STORED_CHUNKS_PER_FILE`]). A file gets
//!    leaves only when every bit is set, one leaf per chunk; it keeps them when
//!    [`Store::replace_bitfield`] clears bits because the file changed on disk (the leaves
//!    hash to the signed root, so a re-check restores bits against them). A proof and a chunk leaf are stored
//!    only with their chunk's bit, and only while the file has no leaves: once every chunk of a
//!    file has its leaf, the file's leaf list is known without reading the file again. Each multi-row change is one
//!    transaction: readers see all of it or none of it.
//! 6. **Catalogs never go backwards.** The catalog stored for a publisher verifies, is that
//!    publisher's, and its sequence never decreases (an equal sequence must be the same bytes),
//!    so a restart cannot roll revocations back. A head stored beside it is the signed head of
//!    exactly that catalog, written in the same transaction. (Files made before heads were kept
//!    get the two new tables, empty, when opened: a catalog without a head is still enforced,
//!    it is only not passed on until a newer one arrives. Likewise `chunk_leaves`: chunks
//!    committed before it existed have none, and their file is hashed again when it completes.)
//! 8. **An I/O error does not poison the store.** redb latches the first I/O error of a
//!    database (a full disk during a commit); the store then closes it and reopens it by itself
//!    once the cause is gone (`reopening_db.rs`). Meanwhile every call fails with
//!    [`StoreError::Unavailable`], which names the file and the first error, and
//!    [`Store::health`] says so. A reopen checks the file as [`Store::open`] does and lets redb
//!    repair it to its last committed transaction, so invariants 4 to 6 hold across it.
//! 7. **The format is versioned.** Stored enums ([`ContentOrigin`], [`RecordState`]) are
//!    append-only: never reorder or remove a variant. Any other change to a stored layout bumps
//!    [`STATE_FORMAT_VERSION`]; a file of a newer version is refused, never misread.

pub mod proof_tree;
pub mod reopening_db;

use std::{
    collections::{BTreeMap, btree_map::Entry},
    fmt,
    fs::{File, OpenOptions},
    io::{self, Read as _},
    ops::{Bound, RangeInclusive},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use licet_proto::{
    ManifestId, MerkleHash, PublicKey, Timestamp,
    catalog::{VerifiedCatalog, VerifiedCatalogHead},
    encoding,
    manifest::{MAX_FILES, ManifestError, VerifiedManifest},
    merkle::{AuditPath, MAX_AUDIT_PATH_LEN},
    policy::TrustedPublisher,
    signed::SignedKind,
    wire::Bitfield,
};
use redb::{
    BackendError, Builder, Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase,
    ReadableTable, StorageBackend, TableDefinition, TableError, TableHandle, WriteTransaction,
    backends::FileBackend,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::store::reopening_db::{Health, REOPEN_RETRY_INTERVAL, ReopeningDb, Unavailable};
mod compaction;
pub use compaction::{COMPACT_ATTEMPTS, Compaction, MIN_RECLAIM_BYTES};
mod held_chunks;
mod leaf_blocks;
pub use leaf_blocks::LEAVES_PER_BLOCK;

/// The `meta` magic that marks a redb file as a Licet node state database.
pub const STATE_MAGIC: &str = "licet-node-state";
/// The state format this build writes and reads.
pub const STATE_FORMAT_VERSION: u32 = 1;
/// Most chunks per file the store keeps state for: 2^26, which is 64 TiB at the default 1 MiB
/// chunk and 1 TiB at the smallest. Its leaf list is then 2 GiB, under redb's 3 GiB value limit.
pub const MAX_STORED_CHUNKS_PER_FILE: u64 = 1 << 26;
/// Longest failure message kept in a record, in bytes; a longer one is cut at a character
/// boundary when stored.
pub const MAX_ERROR_BYTES: usize = 4 * 1024;
/// Longest content directory, in bytes of UTF-8.
pub const MAX_DIR_BYTES: usize = 16 * 1024;

/// Largest `meta` value (the magic string, a version).
const MAX_META_VALUE_BYTES: usize = 256;
/// Largest trust entry (a publisher's display name and a flag).
const MAX_TRUST_VALUE_BYTES: usize = 64 * 1024;
/// Largest encoding of one [`FileStamp`]: a `u64` varint and an `i128` varint.
const MAX_STAMP_BYTES: usize = 10 + 19;
/// Largest content record: directory, error, fixed fields, one stamp per file.
const MAX_RECORD_BYTES: usize = MAX_DIR_BYTES + MAX_ERROR_BYTES + 64 + MAX_FILES * MAX_STAMP_BYTES;
/// Largest bitfield: its bytes plus two length varints.
const MAX_BITFIELD_BYTES: usize = (MAX_STORED_CHUNKS_PER_FILE / 8) as usize + 20;
/// Largest leaf list: 32 bytes per chunk plus a length varint.
const MAX_LEAVES_BYTES: usize = MAX_STORED_CHUNKS_PER_FILE as usize * 32 + 10;
/// Largest audit path.
const MAX_PROOF_BYTES: usize = MAX_AUDIT_PATH_LEN * 32 + 10;
/// redb's page cache for the state database (redb's default is 1 GiB). Every commit writes
/// new pages and the cache keeps them until it is full, so this is what a long download adds to
/// the node's memory; the hot rows (bitfields, a file's proofs) fit many times over.
const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// redb's page cache while checking whether a file is ours.
const PROBE_CACHE_BYTES: usize = 4 * 1024 * 1024;
/// The first bytes of every redb file (redb's own file signature), checked before redb reads
/// the file so that "not a redb file at all" gets its own clear error.
const REDB_SIGNATURE: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

const META_MAGIC: &str = "magic";
const META_VERSION: &str = "format_version";

const META_NAME: &str = "meta";
const TRUST_NAME: &str = "trust";
const MANIFESTS_NAME: &str = "manifests";
const CONTENT_NAME: &str = "content";
const BITFIELDS_NAME: &str = "bitfields";
const LEAVES_NAME: &str = "leaves";
const PROOFS_NAME: &str = "proofs";
const CHUNK_LEAVES_NAME: &str = "chunk_leaves";
const LEAF_BLOCKS_NAME: &str = "leaf_blocks";
const CATALOGS_NAME: &str = "catalogs";
const CATALOG_HEADS_NAME: &str = "catalog_heads";
const MIRRORS_NAME: &str = "mirrors";

type IdKey = [u8; 32];
type FileKey = [u8; 36];
type ChunkKey = [u8; 44];

const META: TableDefinition<&str, &[u8]> = TableDefinition::new(META_NAME);
const TRUST: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(TRUST_NAME);
const MANIFESTS: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(MANIFESTS_NAME);
const CONTENT: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(CONTENT_NAME);
const BITFIELDS: TableDefinition<&FileKey, &[u8]> = TableDefinition::new(BITFIELDS_NAME);
const LEAVES: TableDefinition<&FileKey, &[u8]> = TableDefinition::new(LEAVES_NAME);
const PROOFS: TableDefinition<&ChunkKey, &[u8]> = TableDefinition::new(PROOFS_NAME);
const CHUNK_LEAVES: TableDefinition<&ChunkKey, &[u8]> = TableDefinition::new(CHUNK_LEAVES_NAME);
const LEAF_BLOCKS: TableDefinition<&ChunkKey, &[u8]> = TableDefinition::new(LEAF_BLOCKS_NAME);
const CATALOGS: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(CATALOGS_NAME);
const CATALOG_HEADS: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(CATALOG_HEADS_NAME);
const MIRRORS: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(MIRRORS_NAME);

/// Where a content item came from. Stored: append-only, never reorder or remove a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentOrigin {
    /// Added from files the publisher or partner already has, seeded in place.
    Seeded,
    /// Fetched from peers into a download directory.
    Downloaded,
}

/// Where a content item stands. Stored: append-only, never reorder or remove a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState {
    /// Being fetched (or to be resumed).
    Downloading,
    /// Every chunk of every file is held and verified.
    Complete,
    /// Fetching stopped with an error ([`ContentRecord::error`]).
    Failed,
}

/// A file's size and modification time when it was last verified or completed, to notice a
/// later change on disk. Stored as is: its field order is part of the state format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (negative before it).
    pub modified_ns: i128,
}

/// What the node keeps about one content item besides its manifest and chunk state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    /// Where the files are: seeded in place, or the download directory. Must be valid UTF-8.
    pub dir: PathBuf,
    /// Seeded or downloaded.
    pub origin: ContentOrigin,
    /// Where it stands.
    pub state: RecordState,
    /// Why it failed, when [`RecordState::Failed`] (kept up to [`MAX_ERROR_BYTES`]).
    pub error: Option<String>,
    /// When the node took it on.
    pub added_at: Timestamp,
    /// Per file, in manifest order, the stamp seen when it was last verified or completed; empty
    /// when none is known. Either empty or one per file.
    pub file_stamps: Vec<FileStamp>,
}

/// The chunk state of one file, given to [`Store::content_put`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    /// Which chunks are held: all clear for a new download, all set for seeded content. Its
    /// length must be the file's chunk count.
    pub bitfield: Bitfield,
    /// The file's leaf hashes, one per chunk, when known (only for a file whose bits are all
    /// set).
    pub leaves: Option<Vec<MerkleHash>>,
}

/// A verified chunk whose bytes are durably on disk, given to [`Store::commit_chunks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedChunk {
    /// Index of the file in the manifest.
    pub file: u32,
    /// Index of the chunk in the file.
    pub chunk: u64,
    /// The chunk's audit path, served with it until its file is complete.
    pub proof: AuditPath,
    /// The chunk's leaf hash (checked against the root with `proof`).
    pub leaf: MerkleHash,
}

/// Content items with their manifests, and the ids of items whose stored manifest this
/// version's rules refuse, with the reason ([`Store::content_list_with_refused`]).
pub type ContentList = (
    Vec<(VerifiedManifest, ContentRecord)>,
    Vec<(ManifestId, String)>,
);

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be opened or created (I/O, permissions, in use, damaged).
    #[error("cannot open the node state {}: {reason}", path.display())]
    Open {
        /// The state file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file exists but is not a Licet node state database. Nothing in it was changed.
    #[error(
        "{} is not a licet node state database: it is {found}; nothing in it was changed (move it aside or use another data directory)",
        path.display()
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        found: String,
    },
    /// The file is a state database of a newer format than this build reads.
    #[error(
        "{} is node state format version {version}, newer than this build reads (version {STATE_FORMAT_VERSION}); upgrade licet-node",
        path.display()
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its format version.
        version: u32,
    },
    /// A stored value does not decode or verify: the file was damaged.
    #[error("the node state is corrupt: table {table}, key {key}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The key, for people (hex id, then file and chunk indexes).
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A stored manifest whose signature still verifies but whose body this version's rules
    /// refuse (they grew stricter, e.g. about paths): not damage, and the item cannot be used.
    #[error("the stored manifest {id} is refused by this version's rules: {reason}")]
    ManifestRefused {
        /// The manifest.
        id: ManifestId,
        /// What the rules refuse.
        reason: String,
    },
    /// redb failed (I/O error, full disk, ...). The message names the file and the operation.
    #[error("node state database error: {0}")]
    Database(String),
    /// The database is closed after an I/O error (such as a full disk) and reopens by itself
    /// once the cause is gone; nothing was written.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// No content item has this manifest id.
    #[error("no content item for manifest {id}")]
    NotFound {
        /// The manifest id.
        id: ManifestId,
    },
    /// The content item has no such file.
    #[error("content {id} has no file {file}")]
    UnknownFile {
        /// The manifest id.
        id: ManifestId,
        /// The file index.
        file: u32,
    },
    /// A chunk index past the end of its file.
    #[error(
        "chunk {chunk} of file {file} of content {id} is out of range: the file has {chunks} chunks"
    )]
    ChunkOutOfRange {
        /// The manifest id.
        id: ManifestId,
        /// The file index.
        file: u32,
        /// The chunk index.
        chunk: u64,
        /// The file's chunk count.
        chunks: u64,
    },
    /// A content directory that is not valid UTF-8.
    #[error(
        "the directory {} of content {id} is not valid UTF-8; the node keeps directories as UTF-8 paths",
        dir.display()
    )]
    NonUtf8Dir {
        /// The manifest id.
        id: ManifestId,
        /// The directory.
        dir: PathBuf,
    },
    /// What was given does not fit what is stored (file counts, chunk counts, sizes).
    #[error("{item}: {reason}")]
    Invalid {
        /// What it is about (`content <id>`, `trusted publisher <key>`).
        item: String,
        /// What does not fit.
        reason: String,
    },
    /// A catalog was not stored: it does not verify, is another publisher's, or is older than
    /// the stored one.
    #[error("catalog of publisher {publisher} not stored: {reason}")]
    CatalogRefused {
        /// The publisher it was given for.
        publisher: PublicKey,
        /// Why.
        reason: String,
    },
}

/// The node's state database. See the module docs for its tables and invariants.
///
/// Every method blocks on disk I/O (and each write on an `fsync`): from async code, call it
/// inside `tokio::task::spawn_blocking`. `Send + Sync`; share it with an `Arc`. Writes are
/// serialized by redb; reads run concurrently with them and see whole transactions only.
#[derive(Debug)]
pub struct Store {
    db: ReopeningDb,
    path: PathBuf,
}

/// The stored form of a [`ContentRecord`] (format version 1).
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    dir: String,
    origin: ContentOrigin,
    state: RecordState,
    error: Option<String>,
    added_at: Timestamp,
    file_stamps: Vec<FileStamp>,
}

/// The stored form of a catalog: its sequence, kept beside it so a put compares without
/// decoding the old catalog.
#[derive(Serialize, Deserialize)]
struct StoredCatalog {
    sequence: u64,
    envelope: Vec<u8>,
}

impl Store {
    /// Opens or creates the state database at `path` (the file `state.redb` in the data
    /// directory, which must exist).
    ///
    /// A new file gets the `meta` table with [`STATE_MAGIC`] and [`STATE_FORMAT_VERSION`]. An
    /// existing file that is not ours — not redb, empty, another program's redb file, damaged
    /// beyond what redb repairs — is refused with [`StoreError::Foreign`] or
    /// [`StoreError::Open`], a newer format with [`StoreError::NewerFormat`], and nothing in it
    /// is changed. A file of ours that was not shut down cleanly is repaired by redb.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(open_error(path, "it is not a regular file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_state_file(path)?,
            Err(e) => return Err(open_error(path, e)),
        }
        probe(path)?;
        let db = open_checked(path)?;
        // A reopen after an I/O error (see `reopening_db.rs`) opens and checks the file the same
        // way; the file is ours then, so redb may repair it.
        let again = path.to_owned();
        let opener = Box::new(move || open_checked(&again).map_err(|e| e.to_string()));
        let store = Store {
            db: ReopeningDb::new(path, db, opener, REOPEN_RETRY_INTERVAL),
            path: path.to_owned(),
        };
        store.ensure_tables()?;
        store.fill_leaf_blocks()?;
        Ok(store)
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database is open, or closed after an I/O error (see `reopening_db.rs`).
    pub fn health(&self) -> Health {
        self.db.health()
    }

    /// Tries to reopen the database if an I/O error closed it (at most every
    /// [`crate::store::reopening_db::REOPEN_RETRY_INTERVAL`]); returns whether it is open.
    pub fn recover(&self) -> bool {
        self.db.recover()
    }

    /// How many times the database was reopened after an I/O error since the store opened.
    pub fn reopened(&self) -> u64 {
        self.db.reopened()
    }

    // ----- trust store -----

    /// Every trusted publisher, by key.
    pub fn trust_list(&self) -> Result<Vec<(PublicKey, TrustedPublisher)>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, TRUST)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read trust", e))? {
            let (key, value) = entry.map_err(|e| self.db("read trust", e))?;
            let publisher = PublicKey(*key.value());
            let settings = decode_value(
                TRUST_NAME,
                || publisher.to_string(),
                value.value(),
                MAX_TRUST_VALUE_BYTES,
            )?;
            out.push((publisher, settings));
        }
        Ok(out)
    }

    /// Trusts `publisher` with `settings`, replacing its settings if already trusted.
    pub fn trust_put(
        &self,
        publisher: &PublicKey,
        settings: &TrustedPublisher,
    ) -> Result<(), StoreError> {
        let bytes = encoding::encode(settings);
        check_len(
            || format!("trusted publisher {publisher}"),
            &bytes,
            MAX_TRUST_VALUE_BYTES,
        )?;
        let txn = self.write()?;
        {
            let mut table = self.open_write(&txn, TRUST)?;
            table
                .insert(publisher.as_bytes(), bytes.as_slice())
                .map_err(|e| self.db("write trust", e))?;
        }
        self.commit(txn)
    }

    /// Stops trusting `publisher` (and mirroring it); returns whether it was trusted.
    pub fn trust_remove(&self, publisher: &PublicKey) -> Result<bool, StoreError> {
        let txn = self.write()?;
        let removed = {
            let mut table = self.open_write(&txn, TRUST)?;
            self.open_write(&txn, MIRRORS)?
                .remove(publisher.as_bytes())
                .map_err(|e| self.db("write mirrors", e))?;
            table
                .remove(publisher.as_bytes())
                .map_err(|e| self.db("write trust", e))?
                .is_some()
        };
        self.commit(txn)?;
        Ok(removed)
    }

    /// Records whether the operator mirrors `publisher`'s catalog (fetches and seeds all of it).
    pub fn mirror_set(&self, publisher: &PublicKey, mirror: bool) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut table = self.open_write(&txn, MIRRORS)?;
            if mirror {
                table.insert(publisher.as_bytes(), [].as_slice())
            } else {
                table.remove(publisher.as_bytes())
            }
            .map_err(|e| self.db("write mirrors", e))?;
        }
        self.commit(txn)
    }

    /// The publishers whose catalogs are mirrored.
    pub fn mirrors(&self) -> Result<Vec<PublicKey>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, MIRRORS)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read mirrors", e))? {
            let (key, _) = entry.map_err(|e| self.db("read mirrors", e))?;
            out.push(PublicKey(*key.value()));
        }
        Ok(out)
    }

    // ----- manifests and content items -----

    /// The stored manifest with this id, verified again as it is read.
    pub fn manifest_get(&self, id: &ManifestId) -> Result<Option<VerifiedManifest>, StoreError> {
        let txn = self.read()?;
        let manifests = self.open_read(&txn, MANIFESTS)?;
        self.manifest_in(&manifests, id)
    }

    /// Every content item with its manifest, in manifest id order.
    pub fn content_list(&self) -> Result<Vec<(VerifiedManifest, ContentRecord)>, StoreError> {
        Ok(self.content_list_with_refused()?.0)
    }

    /// Every content item with its manifest, and apart the items whose stored manifest this
    /// version's rules refuse ([`StoreError::ManifestRefused`]), with the reason.
    pub fn content_list_with_refused(&self) -> Result<ContentList, StoreError> {
        let txn = self.read()?;
        let content = self.open_read(&txn, CONTENT)?;
        let manifests = self.open_read(&txn, MANIFESTS)?;
        let (mut usable, mut refused) = (Vec::new(), Vec::new());
        for entry in content.iter().map_err(|e| self.db("read content", e))? {
            let (key, value) = entry.map_err(|e| self.db("read content", e))?;
            let id = ManifestId(*key.value());
            let record = decode_record(&id, value.value())?;
            match self.item_manifest(&manifests, &id) {
                Ok(manifest) => usable.push((manifest, record)),
                Err(StoreError::ManifestRefused { id, reason }) => refused.push((id, reason)),
                Err(e) => return Err(e),
            }
        }
        Ok((usable, refused))
    }

    /// One content item with its manifest.
    pub fn content_get(
        &self,
        id: &ManifestId,
    ) -> Result<Option<(VerifiedManifest, ContentRecord)>, StoreError> {
        let txn = self.read()?;
        let content = self.open_read(&txn, CONTENT)?;
        let Some(value) = content
            .get(id.as_bytes())
            .map_err(|e| self.db("read content", e))?
        else {
            return Ok(None);
        };
        let record = decode_record(id, value.value())?;
        let manifests = self.open_read(&txn, MANIFESTS)?;
        Ok(Some((self.item_manifest(&manifests, id)?, record)))
    }

    /// Inserts or replaces the item of `manifest`: the manifest, `record`, and for each file (in
    /// manifest order) its bitfield and, when given, its leaves, all in one transaction. A
    /// replaced item's old chunk state (bitfields, leaves, proofs) is dropped.
    ///
    /// Refused unless there is one [`FileState`] per file, each bitfield is as long as its file's
    /// chunk count, leaves (if any) are one per chunk of a file whose bits are all set, and the
    /// record's directory is UTF-8 and its stamps are empty or one per file.
    pub fn content_put(
        &self,
        manifest: &VerifiedManifest,
        record: &ContentRecord,
        files: &[FileState],
    ) -> Result<(), StoreError> {
        let id = manifest.id();
        let item = || format!("content {id}");
        let body = manifest.manifest();
        if files.len() != body.files.len() {
            return Err(invalid(
                item(),
                format!(
                    "{} file states given for a manifest of {} files",
                    files.len(),
                    body.files.len()
                ),
            ));
        }
        for (index, (entry, state)) in body.files.iter().zip(files).enumerate() {
            let chunks = entry.chunk_count(body.chunk_size);
            if chunks > MAX_STORED_CHUNKS_PER_FILE {
                return Err(invalid(
                    item(),
                    format!(
                        "file {index} has {chunks} chunks, more than the {MAX_STORED_CHUNKS_PER_FILE} the node keeps state for"
                    ),
                ));
            }
            check_file_state(&id, index, chunks, &state.bitfield, state.leaves.as_deref())?;
        }
        let stored = stored_record(&id, record, body.files.len())?;
        let envelope = manifest.envelope().encode();

        let txn = self.write()?;
        {
            let mut manifests = self.open_write(&txn, MANIFESTS)?;
            let mut content = self.open_write(&txn, CONTENT)?;
            let mut bitfields = self.open_write(&txn, BITFIELDS)?;
            let mut leaves = self.open_write(&txn, LEAVES)?;
            let mut proofs = self.open_write(&txn, PROOFS)?;
            let mut chunk_leaves = self.open_write(&txn, CHUNK_LEAVES)?;
            let mut leaf_blocks = self.open_write(&txn, LEAF_BLOCKS)?;
            let bounds = ItemBounds::new(&id);
            leaf_blocks
                .retain_in::<&ChunkKey, _>(bounds.chunks(), |_, _| false)
                .map_err(|e| self.db("clear leaf blocks", e))?;
            bitfields
                .retain_in::<&FileKey, _>(bounds.files(), |_, _| false)
                .map_err(|e| self.db("clear bitfields", e))?;
            leaves
                .retain_in::<&FileKey, _>(bounds.files(), |_, _| false)
                .map_err(|e| self.db("clear leaves", e))?;
            proofs
                .retain_in::<&ChunkKey, _>(bounds.chunks(), |_, _| false)
                .map_err(|e| self.db("clear proofs", e))?;
            chunk_leaves
                .retain_in::<&ChunkKey, _>(bounds.chunks(), |_, _| false)
                .map_err(|e| self.db("clear chunk leaves", e))?;
            manifests
                .insert(id.as_bytes(), envelope.as_slice())
                .map_err(|e| self.db("write manifest", e))?;
            content
                .insert(id.as_bytes(), stored.as_slice())
                .map_err(|e| self.db("write content", e))?;
            for (index, state) in files.iter().enumerate() {
                let key = file_key(&id, index as u32);
                bitfields
                    .insert(&key, encoding::encode(&state.bitfield).as_slice())
                    .map_err(|e| self.db("write bitfield", e))?;
                if let Some(hashes) = &state.leaves {
                    leaves
                        .insert(&key, encoding::encode(hashes).as_slice())
                        .map_err(|e| self.db("write leaves", e))?;
                    self.put_leaf_blocks(&mut leaf_blocks, &id, index as u32, hashes)?;
                }
            }
        }
        self.commit(txn)
    }

    /// Replaces the record of an existing item: its state, error and file stamps. Its directory,
    /// origin and `added_at` cannot change this way (the chunk state belongs to the files in that
    /// directory); a record that changes them is refused. [`StoreError::NotFound`] if there is no
    /// such item.
    pub fn content_set_record(
        &self,
        id: &ManifestId,
        record: &ContentRecord,
    ) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut content = self.open_write(&txn, CONTENT)?;
            let old = match content
                .get(id.as_bytes())
                .map_err(|e| self.db("read content", e))?
            {
                Some(value) => decode_record(id, value.value())?,
                None => return Err(StoreError::NotFound { id: *id }),
            };
            if old.dir != record.dir
                || old.origin != record.origin
                || old.added_at != record.added_at
            {
                return Err(invalid(
                    format!("content {id}"),
                    "a record update may change only its state, error and file stamps, not its directory, origin or added_at",
                ));
            }
            let file_count = {
                let bitfields = self.open_write(&txn, BITFIELDS)?;
                let bounds = ItemBounds::new(id);
                bitfields
                    .range::<&FileKey>(bounds.files())
                    .map_err(|e| self.db("read bitfields", e))?
                    .count()
            };
            let stored = stored_record(id, record, file_count)?;
            content
                .insert(id.as_bytes(), stored.as_slice())
                .map_err(|e| self.db("write content", e))?;
        }
        self.commit(txn)
    }

    /// Removes the item and everything stored for it (manifest, record, bitfields, leaves,
    /// proofs, chunk leaves) in one transaction; returns whether there was anything to remove.
    pub fn content_remove(&self, id: &ManifestId) -> Result<bool, StoreError> {
        let txn = self.write()?;
        let existed = {
            let mut manifests = self.open_write(&txn, MANIFESTS)?;
            let mut content = self.open_write(&txn, CONTENT)?;
            let mut bitfields = self.open_write(&txn, BITFIELDS)?;
            let mut leaves = self.open_write(&txn, LEAVES)?;
            let mut proofs = self.open_write(&txn, PROOFS)?;
            let mut chunk_leaves = self.open_write(&txn, CHUNK_LEAVES)?;
            let had_record = content
                .remove(id.as_bytes())
                .map_err(|e| self.db("remove content", e))?
                .is_some();
            let had_manifest = manifests
                .remove(id.as_bytes())
                .map_err(|e| self.db("remove manifest", e))?
                .is_some();
            let bounds = ItemBounds::new(id);
            let mut had_rows = false;
            bitfields
                .retain_in::<&FileKey, _>(bounds.files(), |_, _| {
                    had_rows = true;
                    false
                })
                .map_err(|e| self.db("remove bitfields", e))?;
            leaves
                .retain_in::<&FileKey, _>(bounds.files(), |_, _| false)
                .map_err(|e| self.db("remove leaves", e))?;
            proofs
                .retain_in::<&ChunkKey, _>(bounds.chunks(), |_, _| false)
                .map_err(|e| self.db("remove proofs", e))?;
            chunk_leaves
                .retain_in::<&ChunkKey, _>(bounds.chunks(), |_, _| false)
                .map_err(|e| self.db("remove chunk leaves", e))?;
            self.open_write(&txn, LEAF_BLOCKS)?
                .retain_in::<&ChunkKey, _>(bounds.chunks(), |_, _| false)
                .map_err(|e| self.db("remove leaf blocks", e))?;
            had_record || had_manifest || had_rows
        };
        self.commit(txn)?;
        Ok(existed)
    }

    // ----- per-file chunk state -----

    /// Which chunks of file `file` are held, or `None` if the store has no such file.
    pub fn bitfield(&self, id: &ManifestId, file: u32) -> Result<Option<Bitfield>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, BITFIELDS)?;
        let key = file_key(id, file);
        let Some(base) = table
            .get(&key)
            .map_err(|e| self.db("read bitfield", e))?
            .map(|value| decode_bitfield(id, file, value.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        let chunk_leaves = self.open_read(&txn, CHUNK_LEAVES)?;
        self.held_chunks(&chunk_leaves, id, file, base).map(Some)
    }

    /// The leaf hashes of file `file`, stored once it is complete.
    pub fn leaves(
        &self,
        id: &ManifestId,
        file: u32,
    ) -> Result<Option<Vec<MerkleHash>>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, LEAVES)?;
        let key = file_key(id, file);
        table
            .get(&key)
            .map_err(|e| self.db("read leaves", e))?
            .map(|value| {
                decode_value(
                    LEAVES_NAME,
                    || file_key_name(id, file),
                    value.value(),
                    MAX_LEAVES_BYTES,
                )
            })
            .transpose()
    }

    /// The audit path stored with a downloaded chunk: what the node serves with it until the
    /// whole file is complete and its leaves are stored ([`Store::complete_file`] drops these).
    pub fn proof(
        &self,
        id: &ManifestId,
        file: u32,
        chunk: u64,
    ) -> Result<Option<AuditPath>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, PROOFS)?;
        table
            .get(&chunk_key(id, file, chunk))
            .map_err(|e| self.db("read proof", e))?
            .map(|value| {
                decode_value(
                    PROOFS_NAME,
                    || chunk_key_name(id, file, chunk),
                    value.value(),
                    MAX_PROOF_BYTES,
                )
            })
            .transpose()
    }

    /// The leaf hashes of file `file` gathered from its committed chunks: `Some` only when each
    /// of its `chunks` chunks has its leaf stored (see [`Store::commit_chunks`]).
    pub fn chunk_leaves(
        &self,
        id: &ManifestId,
        file: u32,
        chunks: u64,
    ) -> Result<Option<Vec<MerkleHash>>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, CHUNK_LEAVES)?;
        let (first, last) = (chunk_key(id, file, 0), chunk_key(id, file, u64::MAX));
        let mut leaves = Vec::new();
        for (expected, row) in (0..chunks).zip(
            table
                .range::<&ChunkKey>(&first..=&last)
                .map_err(|e| self.db("read chunk leaves", e))?,
        ) {
            let (key, value) = row.map_err(|e| self.db("read chunk leaves", e))?;
            if key.value()[36..] != expected.to_be_bytes() {
                return Ok(None);
            }
            let leaf = value.value().try_into().map_err(|_| StoreError::Corrupt {
                table: CHUNK_LEAVES_NAME,
                key: chunk_key_name(id, file, expected),
                reason: format!("{} bytes where a leaf hash has 32", value.value().len()),
            })?;
            leaves.push(MerkleHash(leaf));
        }
        Ok((leaves.len() as u64 == chunks).then_some(leaves))
    }

    /// Marks verified chunks as held: in one transaction, committed with
    /// [`Durability::Immediate`], stores each chunk's audit path and leaf hash, whose row is its
    /// bit while its file downloads (the file's bitfield row is not rewritten), or, for a file
    /// already complete (its leaves serve instead), sets the bit in its file's bitfield.
    ///
    /// **The caller guarantees that the chunks' bytes are already durably on disk (written and
    /// `fsync`ed) before calling.** A bit is committed only after its bytes are durable: that is
    /// what lets a node resume after a crash at any instant without re-fetching verified chunks
    /// and without ever serving a chunk that is not on disk.
    ///
    /// Nothing is committed if any chunk is refused: an unknown item ([`StoreError::NotFound`])
    /// or file ([`StoreError::UnknownFile`]), an index past the end of its file
    /// ([`StoreError::ChunkOutOfRange`]), or a proof longer than any tree's.
    pub fn commit_chunks(
        &self,
        id: &ManifestId,
        chunks: &[CommittedChunk],
    ) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut txn = self.write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.db("set durability", e))?;
        {
            self.require_item(&txn, id)?;
            let mut bitfields = self.open_write(&txn, BITFIELDS)?;
            let leaves = self.open_write(&txn, LEAVES)?;
            let mut proofs = self.open_write(&txn, PROOFS)?;
            let mut chunk_leaves = self.open_write(&txn, CHUNK_LEAVES)?;
            // Per touched file: its chunk count and, only for a complete file (it has leaves),
            // its bitfield, set here. A file still downloading gets its chunks' leaf rows
            // instead, and its bitfield is neither read nor written (see `held_chunks`).
            let mut touched: BTreeMap<u32, (u64, Option<Bitfield>)> = BTreeMap::new();
            for chunk in chunks {
                if chunk.proof.0.len() > MAX_AUDIT_PATH_LEN {
                    return Err(invalid(
                        format!("content {id}"),
                        format!(
                            "the proof of chunk {} of file {} has {} hashes, more than any tree's {MAX_AUDIT_PATH_LEN}",
                            chunk.chunk,
                            chunk.file,
                            chunk.proof.0.len()
                        ),
                    ));
                }
                let (chunk_count, complete_bits) = match touched.entry(chunk.file) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => {
                        let key = file_key(id, chunk.file);
                        let complete = leaves
                            .get(&key)
                            .map_err(|e| self.db("read leaves", e))?
                            .is_some();
                        let Some(value) = bitfields
                            .get(&key)
                            .map_err(|e| self.db("read bitfield", e))?
                        else {
                            return Err(StoreError::UnknownFile {
                                id: *id,
                                file: chunk.file,
                            });
                        };
                        let state = if complete {
                            let bits = decode_bitfield(id, chunk.file, value.value())?;
                            (bits.len(), Some(bits))
                        } else {
                            let len = held_chunks::stored_bit_len(id, chunk.file, value.value())?;
                            (len, None)
                        };
                        entry.insert(state)
                    }
                };
                if chunk.chunk >= *chunk_count {
                    return Err(StoreError::ChunkOutOfRange {
                        id: *id,
                        file: chunk.file,
                        chunk: chunk.chunk,
                        chunks: *chunk_count,
                    });
                }
                if let Some(bits) = complete_bits {
                    bits.set(chunk.chunk, true);
                } else {
                    let key = chunk_key(id, chunk.file, chunk.chunk);
                    proofs
                        .insert(&key, encoding::encode(&chunk.proof).as_slice())
                        .map_err(|e| self.db("write proof", e))?;
                    chunk_leaves
                        .insert(&key, chunk.leaf.0.as_slice())
                        .map_err(|e| self.db("write chunk leaf", e))?;
                }
            }
            for (file, (_, bits)) in &touched {
                if let Some(bits) = bits {
                    bitfields
                        .insert(&file_key(id, *file), encoding::encode(bits).as_slice())
                        .map_err(|e| self.db("write bitfield", e))?;
                }
            }
        }
        self.commit(txn)
    }

    /// Records that file `file` is complete: stores its full leaf list and drops its per-chunk
    /// proofs and leaves, in one transaction. Refused unless every chunk's bit is set and there is one leaf
    /// per chunk. (The caller checks that the leaves hash to the manifest's root.)
    pub fn complete_file(
        &self,
        id: &ManifestId,
        file: u32,
        leaves: &[MerkleHash],
    ) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            self.require_item(&txn, id)?;
            let mut bitfields = self.open_write(&txn, BITFIELDS)?;
            let mut chunk_leaves = self.open_write(&txn, CHUNK_LEAVES)?;
            let key = file_key(id, file);
            let base = self.stored_bitfield(&bitfields, id, file)?;
            let bits = self.held_chunks(&chunk_leaves, id, file, base)?;
            check_file_state(id, file as usize, bits.len(), &bits, Some(leaves))?;
            // The chunk leaf rows go below: their bits move into the base.
            bitfields
                .insert(&key, encoding::encode(&bits).as_slice())
                .map_err(|e| self.db("write bitfield", e))?;
            let mut leaf_table = self.open_write(&txn, LEAVES)?;
            leaf_table
                .insert(&key, encoding::encode(&leaves).as_slice())
                .map_err(|e| self.db("write leaves", e))?;
            let mut leaf_blocks = self.open_write(&txn, LEAF_BLOCKS)?;
            self.put_leaf_blocks(&mut leaf_blocks, id, file, leaves)?;
            let mut proofs = self.open_write(&txn, PROOFS)?;
            let (first, last) = (chunk_key(id, file, 0), chunk_key(id, file, u64::MAX));
            proofs
                .retain_in::<&ChunkKey, _>(&first..=&last, |_, _| false)
                .map_err(|e| self.db("remove proofs", e))?;
            chunk_leaves
                .retain_in::<&ChunkKey, _>(&first..=&last, |_, _| false)
                .map_err(|e| self.db("remove chunk leaves", e))?;
        }
        self.commit(txn)
    }

    /// Replaces the bitfield of file `file` with `bits`, in one transaction: a file taken out of
    /// service because it changed on disk, or what a re-check of it found. The proofs and leaves
    /// of chunks whose bit is now clear are dropped; the file's leaves, if stored, stay.
    ///
    /// Refused unless `bits` is as long as the file's bitfield and, for a file without stored
    /// leaves, only clears bits (a chunk's bit is set with its proof, by
    /// [`Store::commit_chunks`]). **The caller guarantees that each bit it sets names a chunk
    /// verified on disk against the file's leaves.**
    pub fn replace_bitfield(
        &self,
        id: &ManifestId,
        file: u32,
        bits: &Bitfield,
    ) -> Result<(), StoreError> {
        let mut txn = self.write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.db("set durability", e))?;
        {
            self.require_item(&txn, id)?;
            let mut bitfields = self.open_write(&txn, BITFIELDS)?;
            let mut chunk_leaves = self.open_write(&txn, CHUNK_LEAVES)?;
            let key = file_key(id, file);
            let base = self.stored_bitfield(&bitfields, id, file)?;
            let old = self.held_chunks(&chunk_leaves, id, file, base)?;
            if old.len() != bits.len() {
                return Err(invalid(
                    format!("content {id}"),
                    format!(
                        "a bitfield of {} chunks given for file {file} of {} chunks",
                        bits.len(),
                        old.len()
                    ),
                ));
            }
            let has_leaves = self
                .open_write(&txn, LEAVES)?
                .get(&key)
                .map_err(|e| self.db("read leaves", e))?
                .is_some();
            if !has_leaves {
                if let Some(chunk) = (0..bits.len()).find(|&c| bits.get(c) && !old.get(c)) {
                    return Err(invalid(
                        format!("content {id}"),
                        format!(
                            "chunk {chunk} of file {file} would be marked held without its proof"
                        ),
                    ));
                }
                let mut proofs = self.open_write(&txn, PROOFS)?;
                for chunk in (0..old.len()).filter(|&c| old.get(c) && !bits.get(c)) {
                    let key = chunk_key(id, file, chunk);
                    proofs
                        .remove(&key)
                        .map_err(|e| self.db("remove proof", e))?;
                    chunk_leaves
                        .remove(&key)
                        .map_err(|e| self.db("remove chunk leaf", e))?;
                }
            }
            bitfields
                .insert(&key, encoding::encode(bits).as_slice())
                .map_err(|e| self.db("write bitfield", e))?;
        }
        self.commit(txn)
    }

    // ----- catalogs -----

    /// Stores `envelope` as `publisher`'s newest accepted catalog, replacing the one stored.
    ///
    /// Refused ([`StoreError::CatalogRefused`]) unless it verifies as a catalog of `publisher`
    /// and its sequence is above the stored one's (an equal sequence must be the identical
    /// catalog, which is then a no-op), so the stored catalog never goes backwards. Trust and
    /// expiry are the policy's to check before this is called.
    pub fn catalog_put(&self, publisher: &PublicKey, envelope: &[u8]) -> Result<(), StoreError> {
        self.catalog_write(publisher, envelope, None)
    }

    /// [`Store::catalog_put`], and `head` beside the catalog in the same transaction; refused
    /// unless `head` is the publisher's signed head of exactly that catalog.
    pub fn catalog_put_with_head(
        &self,
        publisher: &PublicKey,
        envelope: &[u8],
        head: &[u8],
    ) -> Result<(), StoreError> {
        self.catalog_write(publisher, envelope, Some(head))
    }

    fn catalog_write(
        &self,
        publisher: &PublicKey,
        envelope: &[u8],
        head: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let refused = |reason: String| StoreError::CatalogRefused {
            publisher: *publisher,
            reason,
        };
        let catalog = VerifiedCatalog::from_bytes(envelope).map_err(|e| refused(e.to_string()))?;
        let sequence = catalog.catalog().sequence;
        if catalog.catalog().publisher != *publisher {
            return Err(refused(format!(
                "it is a catalog of publisher {}",
                catalog.catalog().publisher
            )));
        }
        if let Some(head) = head {
            let head = VerifiedCatalogHead::from_bytes(head)
                .map_err(|e| refused(format!("its head: {e}")))?;
            if !head.matches(&catalog) {
                return Err(refused(
                    "its head is the head of another catalog".to_owned(),
                ));
            }
        }
        let stored = encoding::encode(&StoredCatalog {
            sequence,
            envelope: envelope.to_vec(),
        });
        let txn = self.write()?;
        {
            let mut table = self.open_write(&txn, CATALOGS)?;
            let old = table
                .get(publisher.as_bytes())
                .map_err(|e| self.db("read catalog", e))?
                .map(|value| decode_catalog(publisher, value.value()))
                .transpose()?;
            if let Some(old) = old {
                if sequence < old.sequence {
                    return Err(refused(format!(
                        "its sequence {sequence} is below the stored catalog's {}",
                        old.sequence
                    )));
                }
                if sequence == old.sequence {
                    return if old.envelope == envelope {
                        Ok(())
                    } else {
                        Err(refused(format!(
                            "it differs from the stored catalog with the same sequence {sequence}"
                        )))
                    };
                }
            }
            table
                .insert(publisher.as_bytes(), stored.as_slice())
                .map_err(|e| self.db("write catalog", e))?;
            let mut heads = self.open_write(&txn, CATALOG_HEADS)?;
            match head {
                Some(head) => heads.insert(publisher.as_bytes(), head),
                None => heads.remove(publisher.as_bytes()),
            }
            .map_err(|e| self.db("write catalog head", e))?;
        }
        self.commit(txn)
    }

    /// The stored head of each publisher's stored catalog, verified again as it is read. A head
    /// that no longer verifies is damage: [`StoreError::Corrupt`].
    pub fn catalog_heads(&self) -> Result<Vec<(PublicKey, VerifiedCatalogHead)>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, CATALOG_HEADS)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read catalog heads", e))? {
            let (key, value) = entry.map_err(|e| self.db("read catalog heads", e))?;
            let publisher = PublicKey(*key.value());
            let head = VerifiedCatalogHead::from_bytes(value.value()).map_err(|e| {
                StoreError::Corrupt {
                    table: CATALOG_HEADS_NAME,
                    key: publisher.to_string(),
                    reason: format!("the stored catalog head does not verify: {e}"),
                }
            })?;
            out.push((publisher, head));
        }
        Ok(out)
    }

    /// Every stored catalog envelope, by publisher (to verify and restore at start).
    pub fn catalogs(&self) -> Result<Vec<(PublicKey, Vec<u8>)>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, CATALOGS)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read catalogs", e))? {
            let (key, value) = entry.map_err(|e| self.db("read catalogs", e))?;
            let publisher = PublicKey(*key.value());
            out.push((
                publisher,
                decode_catalog(&publisher, value.value())?.envelope,
            ));
        }
        Ok(out)
    }

    // ----- helpers -----

    /// Every redb error passes here: an I/O error also closes the database until it can be
    /// reopened (`reopening_db.rs`).
    fn db(&self, doing: &str, error: impl Into<redb::Error>) -> StoreError {
        let error = error.into();
        self.db.failed(doing, &error);
        StoreError::Database(format!("{}: {doing}: {error}", self.path.display()))
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read()?.map_err(|e| self.db("begin read", e))
    }

    fn write(&self) -> Result<WriteTransaction, StoreError> {
        self.db
            .begin_write()?
            .map_err(|e| self.db("begin write", e))
    }

    fn commit(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        txn.commit().map_err(|e| self.db("commit", e))
    }

    fn open_read<K: redb::Key + 'static>(
        &self,
        txn: &ReadTransaction,
        table: TableDefinition<K, &'static [u8]>,
    ) -> Result<redb::ReadOnlyTable<K, &'static [u8]>, StoreError> {
        txn.open_table(table)
            .map_err(|e| self.db(&format!("open table {}", table.name()), e))
    }

    /// Fails with [`StoreError::NotFound`] unless content item `id` is stored.
    fn require_item(&self, txn: &WriteTransaction, id: &ManifestId) -> Result<(), StoreError> {
        let content = self.open_write(txn, CONTENT)?;
        let stored = content
            .get(id.as_bytes())
            .map_err(|e| self.db("read content", e))?
            .is_some();
        if stored {
            Ok(())
        } else {
            Err(StoreError::NotFound { id: *id })
        }
    }

    /// The stored bitfield row of file `file` of `id` ([`StoreError::UnknownFile`] if none).
    fn stored_bitfield(
        &self,
        bitfields: &impl ReadableTable<&'static FileKey, &'static [u8]>,
        id: &ManifestId,
        file: u32,
    ) -> Result<Bitfield, StoreError> {
        match bitfields
            .get(&file_key(id, file))
            .map_err(|e| self.db("read bitfield", e))?
        {
            Some(value) => decode_bitfield(id, file, value.value()),
            None => Err(StoreError::UnknownFile { id: *id, file }),
        }
    }

    fn open_write<'txn, K: redb::Key + 'static>(
        &self,
        txn: &'txn WriteTransaction,
        table: TableDefinition<K, &'static [u8]>,
    ) -> Result<redb::Table<'txn, K, &'static [u8]>, StoreError> {
        txn.open_table(table)
            .map_err(|e| self.db(&format!("open table {}", table.name()), e))
    }

    /// Creates any table of this format that is missing (a write only when one is).
    fn ensure_tables(&self) -> Result<(), StoreError> {
        let txn = self.read()?;
        let present: Vec<String> = txn
            .list_tables()
            .map_err(|e| self.db("list tables", e))?
            .map(|t| t.name().to_owned())
            .collect();
        drop(txn);
        let all = [
            TRUST_NAME,
            MANIFESTS_NAME,
            CONTENT_NAME,
            BITFIELDS_NAME,
            LEAVES_NAME,
            PROOFS_NAME,
            CHUNK_LEAVES_NAME,
            LEAF_BLOCKS_NAME,
            CATALOGS_NAME,
            CATALOG_HEADS_NAME,
            MIRRORS_NAME,
        ];
        if all.iter().all(|name| present.iter().any(|p| p == name)) {
            return Ok(());
        }
        let txn = self.write()?;
        create_tables(&txn).map_err(|e| self.db("create tables", e))?;
        self.commit(txn)
    }

    fn manifest_in(
        &self,
        manifests: &impl ReadableTable<&'static IdKey, &'static [u8]>,
        id: &ManifestId,
    ) -> Result<Option<VerifiedManifest>, StoreError> {
        let Some(value) = manifests
            .get(id.as_bytes())
            .map_err(|e| self.db("read manifest", e))?
        else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            table: MANIFESTS_NAME,
            key: id.to_string(),
            reason,
        };
        let manifest = VerifiedManifest::from_bytes(value.value()).map_err(|e| match e {
            // The signature covers the stored body: bytes that verify but are refused were
            // signed that way, under rules that have grown stricter since.
            ManifestError::Envelope(_) => {
                corrupt(format!("the stored manifest no longer verifies: {e}"))
            }
            _ => StoreError::ManifestRefused {
                id: *id,
                reason: e.to_string(),
            },
        })?;
        if manifest.id() != *id {
            return Err(corrupt(format!(
                "the stored manifest has id {}",
                manifest.id()
            )));
        }
        Ok(Some(manifest))
    }

    /// The manifest of an item whose record exists (its absence is damage).
    fn item_manifest(
        &self,
        manifests: &impl ReadableTable<&'static IdKey, &'static [u8]>,
        id: &ManifestId,
    ) -> Result<VerifiedManifest, StoreError> {
        self.manifest_in(manifests, id)?
            .ok_or_else(|| StoreError::Corrupt {
                table: MANIFESTS_NAME,
                key: id.to_string(),
                reason: "missing for a stored content item".into(),
            })
    }
}

// ----- keys -----

fn file_key(id: &ManifestId, file: u32) -> FileKey {
    let mut key = [0u8; 36];
    key[..32].copy_from_slice(id.as_bytes());
    key[32..].copy_from_slice(&file.to_be_bytes());
    key
}

fn chunk_key(id: &ManifestId, file: u32, chunk: u64) -> ChunkKey {
    let mut key = [0u8; 44];
    key[..36].copy_from_slice(&file_key(id, file));
    key[36..].copy_from_slice(&chunk.to_be_bytes());
    key
}

fn file_key_name(id: &ManifestId, file: u32) -> String {
    format!("{id} file {file}")
}

fn chunk_key_name(id: &ManifestId, file: u32, chunk: u64) -> String {
    format!("{id} file {file} chunk {chunk}")
}

/// The first and last keys of one item's rows in the per-file and per-chunk tables.
struct ItemBounds {
    first_file: FileKey,
    last_file: FileKey,
    first_chunk: ChunkKey,
    last_chunk: ChunkKey,
}

impl ItemBounds {
    fn new(id: &ManifestId) -> ItemBounds {
        ItemBounds {
            first_file: file_key(id, 0),
            last_file: file_key(id, u32::MAX),
            first_chunk: chunk_key(id, 0, 0),
            last_chunk: chunk_key(id, u32::MAX, u64::MAX),
        }
    }

    fn files(&self) -> RangeInclusive<&FileKey> {
        &self.first_file..=&self.last_file
    }

    fn chunks(&self) -> RangeInclusive<&ChunkKey> {
        &self.first_chunk..=&self.last_chunk
    }
}

// ----- values -----

fn decode_value<T: DeserializeOwned>(
    table: &'static str,
    key: impl FnOnce() -> String,
    bytes: &[u8],
    limit: usize,
) -> Result<T, StoreError> {
    encoding::decode("stored value", bytes, limit).map_err(|e| StoreError::Corrupt {
        table,
        key: key(),
        reason: e.to_string(),
    })
}

fn decode_record(id: &ManifestId, bytes: &[u8]) -> Result<ContentRecord, StoreError> {
    let stored: StoredRecord =
        decode_value(CONTENT_NAME, || id.to_string(), bytes, MAX_RECORD_BYTES)?;
    Ok(ContentRecord {
        dir: PathBuf::from(stored.dir),
        origin: stored.origin,
        state: stored.state,
        error: stored.error,
        added_at: stored.added_at,
        file_stamps: stored.file_stamps,
    })
}

fn decode_bitfield(id: &ManifestId, file: u32, bytes: &[u8]) -> Result<Bitfield, StoreError> {
    let bits: Bitfield = decode_value(
        BITFIELDS_NAME,
        || file_key_name(id, file),
        bytes,
        MAX_BITFIELD_BYTES,
    )?;
    if bits.len() > MAX_STORED_CHUNKS_PER_FILE {
        return Err(StoreError::Corrupt {
            table: BITFIELDS_NAME,
            key: file_key_name(id, file),
            reason: format!("a bitfield of {} bits", bits.len()),
        });
    }
    Ok(bits)
}

fn decode_catalog(publisher: &PublicKey, bytes: &[u8]) -> Result<StoredCatalog, StoreError> {
    decode_value(
        CATALOGS_NAME,
        || publisher.to_string(),
        bytes,
        SignedKind::Catalog.max_envelope_bytes() + 20,
    )
}

/// Encodes `record` for an item of `file_count` files, checking it first.
fn stored_record(
    id: &ManifestId,
    record: &ContentRecord,
    file_count: usize,
) -> Result<Vec<u8>, StoreError> {
    let item = || format!("content {id}");
    let Some(dir) = record.dir.to_str() else {
        return Err(StoreError::NonUtf8Dir {
            id: *id,
            dir: record.dir.clone(),
        });
    };
    if dir.len() > MAX_DIR_BYTES {
        return Err(invalid(
            item(),
            format!(
                "its directory is {} bytes, over the limit of {MAX_DIR_BYTES}",
                dir.len()
            ),
        ));
    }
    let stamps = record.file_stamps.len();
    if stamps != 0 && stamps != file_count {
        return Err(invalid(
            item(),
            format!("{stamps} file stamps for {file_count} files (give none, or one per file)"),
        ));
    }
    let stored = StoredRecord {
        dir: dir.to_owned(),
        origin: record.origin,
        state: record.state,
        error: record
            .error
            .as_deref()
            .map(|e| truncated(e, MAX_ERROR_BYTES)),
        added_at: record.added_at,
        file_stamps: record.file_stamps.clone(),
    };
    Ok(encoding::encode(&stored))
}

/// Checks one file's bitfield and leaves against its chunk count.
fn check_file_state(
    id: &ManifestId,
    index: usize,
    chunks: u64,
    bits: &Bitfield,
    leaves: Option<&[MerkleHash]>,
) -> Result<(), StoreError> {
    let item = || format!("content {id}");
    if bits.len() != chunks {
        return Err(invalid(
            item(),
            format!(
                "the bitfield of file {index} has {} bits, but the file has {chunks} chunks",
                bits.len()
            ),
        ));
    }
    if let Some(leaves) = leaves {
        if leaves.len() as u64 != chunks {
            return Err(invalid(
                item(),
                format!(
                    "{} leaf hashes given for file {index} of {chunks} chunks",
                    leaves.len()
                ),
            ));
        }
        let held = bits.count_ones();
        if held != chunks {
            return Err(invalid(
                item(),
                format!(
                    "file {index} holds {held} of its {chunks} chunks; leaves are stored only for a complete file"
                ),
            ));
        }
    }
    Ok(())
}

fn check_len(item: impl FnOnce() -> String, bytes: &[u8], limit: usize) -> Result<(), StoreError> {
    if bytes.len() > limit {
        return Err(invalid(
            item(),
            format!(
                "its stored form is {} bytes, over the limit of {limit}",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

fn invalid(item: String, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        item,
        reason: reason.into(),
    }
}

/// `text` cut to at most `limit` bytes at a character boundary.
fn truncated(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

// ----- opening -----

fn open_error(path: &Path, reason: impl fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn foreign(path: &Path, found: impl Into<String>) -> StoreError {
    StoreError::Foreign {
        path: path.to_owned(),
        found: found.into(),
    }
}

fn redb_open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => open_error(
            path,
            "it is in use by another process (is another licet-node running with this data directory?)",
        ),
        DatabaseError::UpgradeRequired(version) => open_error(
            path,
            format!("it is in redb file format {version}, which this build cannot read"),
        ),
        DatabaseError::RepairAborted => open_error(
            path,
            "it was not shut down cleanly and redb could not repair it",
        ),
        other => open_error(
            path,
            format!("redb cannot read it, it is damaged beyond what redb repairs: {other}"),
        ),
    }
}

/// Runs `work`, turning a panic inside redb into an error: redb documents that opening a file
/// damaged outside redb may panic, and a bad file must not take the node down.
/// Opens the state file at `path` for use and checks it is ours (the second half of
/// [`Store::open`], and every reopen after an I/O error).
fn open_checked(path: &Path) -> Result<Database, StoreError> {
    guard_panics(path, || {
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .map_err(|e| redb_open_error(path, e))?;
        // Checked again on the handle that will be used: the file may have been replaced
        // between the check and the open.
        check_meta(&db, path)?;
        Ok(db)
    })
}

fn guard_panics<T>(
    path: &Path,
    work: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // The panic is caught and becomes the error below: keep the panic hook from printing it
    // (and a backtrace) as if the program had crashed.
    let caught = {
        let _quiet = QuietPanics::on();
        panic::catch_unwind(AssertUnwindSafe(work))
    };
    caught.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(open_error(
            path,
            format!("it is damaged beyond what redb repairs (redb failed reading it: {message})"),
        ))
    })
}

thread_local! {
    /// Set while [`guard_panics`] runs on this thread: its panics are expected and reported.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Silences the panic hook on this thread while it lives (other threads are unaffected). The
/// filtering hook is installed once, around whatever hook was there before.
struct QuietPanics {
    was: bool,
}

impl QuietPanics {
    fn on() -> QuietPanics {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let previous = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if !QUIET_PANICS.with(std::cell::Cell::get) {
                    previous(info);
                }
            }));
        });
        QuietPanics {
            was: QUIET_PANICS.with(|q| q.replace(true)),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET_PANICS.with(|q| q.set(self.was));
    }
}

/// Decides whether the existing file at `path` is ours, without writing to it (invariant 1).
fn probe(path: &Path) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(|e| open_error(path, e))?;
    let len = file.metadata().map_err(|e| open_error(path, e))?.len();
    if len == 0 {
        return Err(foreign(path, "an empty file"));
    }
    let mut signature = [0u8; REDB_SIGNATURE.len()];
    let mut read = 0;
    while read < signature.len() {
        match file.read(&mut signature[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_error(path, e)),
        }
    }
    if read < signature.len() || signature != REDB_SIGNATURE {
        return Err(foreign(path, "not a redb database at all"));
    }
    let backend = ProbeBackend::new(file).map_err(|e| open_error(path, e))?;
    guard_panics(path, || {
        let db = Builder::new()
            .set_cache_size(PROBE_CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| redb_open_error(path, e))?;
        check_meta(&db, path)
    })
}

/// Checks the `meta` table of an open database: our magic, a version this build reads.
fn check_meta(db: &impl ReadableDatabase, path: &Path) -> Result<(), StoreError> {
    let db_error =
        |e: redb::Error| StoreError::Database(format!("{}: read meta: {e}", path.display()));
    let txn = db.begin_read().map_err(|e| db_error(e.into()))?;
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => {
            let mut names: Vec<String> = txn
                .list_tables()
                .map_err(|e| db_error(e.into()))?
                .map(|t| t.name().to_owned())
                .take(11)
                .collect();
            let more = if names.len() > 10 { ", …" } else { "" };
            names.truncate(10);
            let tables = if names.is_empty() {
                "none".to_owned()
            } else {
                format!("{}{more}", names.join(", "))
            };
            return Err(foreign(
                path,
                format!("a redb database of another program (no meta table; its tables: {tables})"),
            ));
        }
        Err(TableError::TableTypeMismatch { .. } | TableError::TableIsMultimap(_)) => {
            return Err(foreign(
                path,
                "a redb database of another program (its meta table has other types)",
            ));
        }
        Err(e) => return Err(db_error(e.into())),
    };
    let magic = table.get(META_MAGIC).map_err(|e| db_error(e.into()))?;
    let magic: Option<String> =
        magic.and_then(|v| encoding::decode("state magic", v.value(), MAX_META_VALUE_BYTES).ok());
    if magic.as_deref() != Some(STATE_MAGIC) {
        return Err(foreign(
            path,
            "a redb database of another program (its meta table has no licet magic)",
        ));
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        table: META_NAME,
        key: META_VERSION.to_owned(),
        reason,
    };
    let version = table
        .get(META_VERSION)
        .map_err(|e| db_error(e.into()))?
        .ok_or_else(|| corrupt("missing".to_owned()))?;
    let version: u32 = encoding::decode(
        "state format version",
        version.value(),
        MAX_META_VALUE_BYTES,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    match version {
        STATE_FORMAT_VERSION => Ok(()),
        v if v > STATE_FORMAT_VERSION => Err(StoreError::NewerFormat {
            path: path.to_owned(),
            version: v,
        }),
        v => Err(corrupt(format!("unknown format version {v}"))),
    }
}

fn create_tables(txn: &WriteTransaction) -> Result<(), TableError> {
    txn.open_table(TRUST)?;
    txn.open_table(MANIFESTS)?;
    txn.open_table(CONTENT)?;
    txn.open_table(BITFIELDS)?;
    txn.open_table(LEAVES)?;
    txn.open_table(PROOFS)?;
    txn.open_table(CHUNK_LEAVES)?;
    txn.open_table(LEAF_BLOCKS)?;
    txn.open_table(CATALOGS)?;
    txn.open_table(CATALOG_HEADS)?;
    txn.open_table(MIRRORS)?;
    Ok(())
}

/// Creates a new state file at `path` (invariant 2). If another process creates it first, leaves
/// theirs in place.
fn create_state_file(path: &Path) -> Result<(), StoreError> {
    let Some(name) = path.file_name() else {
        return Err(open_error(path, "the path does not name a file"));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let temp = dir.join(format!(
        ".{}.{}.{nanos}.creating",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = initialize(&temp).and_then(|()| link_into_place(&temp, path));
    // The temporary name is gone either way (after a link, the file lives on at `path`).
    let _ = std::fs::remove_file(&temp);
    result.map_err(|e| open_error(path, format!("cannot create it: {e}")))?;
    sync_dir(dir).map_err(|e| open_error(path, format!("cannot sync its directory: {e}")))
}

/// Writes a complete, empty state database to the new file `temp`.
fn initialize(temp: &Path) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    // Mode 0600 whatever the umask: the file holds the trust store and every content path.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(temp).map_err(|e| e.to_string())?;
    let backend = FileBackend::new(file).map_err(|e| e.to_string())?;
    let db = Builder::new()
        .set_cache_size(PROBE_CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(|e| e.to_string())?;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        meta.insert(META_MAGIC, encoding::encode(&STATE_MAGIC).as_slice())
            .map_err(|e| e.to_string())?;
        meta.insert(
            META_VERSION,
            encoding::encode(&STATE_FORMAT_VERSION).as_slice(),
        )
        .map_err(|e| e.to_string())?;
    }
    create_tables(&txn).map_err(|e| e.to_string())?;
    // Durability::Immediate (the default): the commit is fsynced.
    txn.commit().map_err(|e| e.to_string())?;
    db.close().map_err(|e| e.to_string())
}

/// Gives the finished `temp` the name `path` unless something already has it.
fn link_into_place(temp: &Path, path: &Path) -> Result<(), String> {
    match std::fs::hard_link(temp, path) {
        Ok(()) => Ok(()),
        // Another process created it meanwhile: theirs is probed like any existing file.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        // A filesystem without hard links (FAT): rename, which replaces, so check first.
        Err(_) if !path.exists() => std::fs::rename(temp, path).map_err(|e| e.to_string()),
        Err(_) => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Size of the blocks [`ProbeBackend`] keeps redb's writes in.
const PROBE_BLOCK: u64 = 4096;

/// A redb storage backend over a file opened read-only. Reads come from the file; whatever redb
/// writes while opening (header flags, the repair of a file that was not shut down cleanly)
/// stays in memory and is dropped with the backend. Exclusive locks are taken shared, so the
/// check still conflicts with a process that has the file open for writing.
#[derive(Debug)]
struct ProbeBackend {
    file: FileBackend,
    overlay: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// The length redb sees.
    len: u64,
    /// How much of the file is still visible beneath the overlay: its length, lowered by every
    /// truncation (bytes past it read as zero unless written).
    file_visible: u64,
    /// Written blocks, by index, each `PROBE_BLOCK` bytes.
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl ProbeBackend {
    fn new(file: File) -> io::Result<ProbeBackend> {
        let len = file.metadata()?.len();
        let file = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(ProbeBackend {
            file,
            overlay: Mutex::new(Overlay {
                len,
                file_visible: len,
                blocks: BTreeMap::new(),
            }),
        })
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills `out` with the file's bytes at `offset`, zeros past `visible`.
    fn read_file(&self, visible: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        if offset < visible {
            let n = usize::try_from(visible - offset)
                .unwrap_or(usize::MAX)
                .min(out.len());
            self.file.read(offset, &mut out[..n])?;
        }
        Ok(())
    }
}

impl StorageBackend for ProbeBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.overlay().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let overlay = self.overlay();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|end| *end <= overlay.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        self.read_file(overlay.file_visible, offset, out)?;
        let first = offset / PROBE_BLOCK;
        for (&index, block) in overlay.blocks.range(first..end.div_ceil(PROBE_BLOCK)) {
            let block_start = index * PROBE_BLOCK;
            let from = offset.max(block_start);
            let to = end.min(block_start + PROBE_BLOCK);
            out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(
                &block[(from - block_start) as usize..(to - block_start) as usize],
            );
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut overlay = self.overlay();
        if len < overlay.len {
            overlay.file_visible = overlay.file_visible.min(len);
            let keep = len.div_ceil(PROBE_BLOCK);
            overlay.blocks.split_off(&keep);
            let tail = (len % PROBE_BLOCK) as usize;
            if tail != 0
                && let Some(block) = overlay.blocks.get_mut(&(len / PROBE_BLOCK))
            {
                block[tail..].fill(0);
            }
        }
        overlay.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut overlay = self.overlay();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past u64"))?;
        let visible = overlay.file_visible;
        let mut index = offset / PROBE_BLOCK;
        while index * PROBE_BLOCK < end {
            let block_start = index * PROBE_BLOCK;
            let block = match overlay.blocks.entry(index) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let mut block = vec![0u8; PROBE_BLOCK as usize];
                    self.read_file(visible, block_start, &mut block)?;
                    entry.insert(block)
                }
            };
            let from = offset.max(block_start);
            let to = end.min(block_start + PROBE_BLOCK);
            block[(from - block_start) as usize..(to - block_start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            index += 1;
        }
        overlay.len = overlay.len.max(end);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use licet_proto::{
        SecretKey,
        catalog::{Catalog, CatalogEntry},
        manifest::MIN_CHUNK_SIZE,
    };
    use redb::ReadOnlyDatabase;
    use tempfile::TempDir;

    use super::*;

    /// The chunk size of the test manifests (16 KiB), so small files have several chunks.
    const CHUNK: u32 = MIN_CHUNK_SIZE;
    /// A file of three chunks, the last one short.
    const THREE_CHUNKS: u64 = 2 * CHUNK as u64 + 100;

    fn secret(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    /// A manifest signed by publisher 1, one file per size.
    fn manifest(title: &str, sizes: &[u64]) -> VerifiedManifest {
        crate::test_support::manifest_body(title, sizes)
            .sign(&secret(1), None)
            .unwrap()
    }

    fn record(origin: ContentOrigin, state: RecordState) -> ContentRecord {
        ContentRecord {
            dir: PathBuf::from("/srv/licet/some content"),
            origin,
            state,
            error: None,
            added_at: Timestamp(1_700_000_100),
            file_stamps: vec![],
        }
    }

    fn chunk_counts(manifest: &VerifiedManifest) -> Vec<u64> {
        let body = manifest.manifest();
        body.files
            .iter()
            .map(|f| f.chunk_count(body.chunk_size))
            .collect()
    }

    fn full_bits(len: u64) -> Bitfield {
        let mut bits = Bitfield::new(len);
        for i in 0..len {
            bits.set(i, true);
        }
        bits
    }

    fn leaves(len: u64, tag: u8) -> Vec<MerkleHash> {
        (0..len).map(|i| MerkleHash([tag ^ i as u8; 32])).collect()
    }

    /// A download's file states: every bit clear, no leaves.
    fn download_files(manifest: &VerifiedManifest) -> Vec<FileState> {
        chunk_counts(manifest)
            .into_iter()
            .map(|n| FileState {
                bitfield: Bitfield::new(n),
                leaves: None,
            })
            .collect()
    }

    /// Puts `manifest` in the store as a download that holds nothing yet.
    fn put_download(store: &Store, manifest: &VerifiedManifest) {
        store
            .content_put(
                manifest,
                &record(ContentOrigin::Downloaded, RecordState::Downloading),
                &download_files(manifest),
            )
            .unwrap();
    }

    /// Seeded content's file states: every bit set, leaves known.
    fn seeded_files(manifest: &VerifiedManifest) -> Vec<FileState> {
        chunk_counts(manifest)
            .into_iter()
            .enumerate()
            .map(|(i, n)| FileState {
                bitfield: full_bits(n),
                leaves: Some(leaves(n, i as u8)),
            })
            .collect()
    }

    fn proof(tag: u8) -> AuditPath {
        AuditPath(vec![MerkleHash([tag; 32]); 3])
    }

    fn chunk(file: u32, chunk: u64) -> CommittedChunk {
        CommittedChunk {
            file,
            chunk,
            proof: proof(chunk as u8 + 10 * file as u8),
            leaf: chunk_leaf(file, chunk),
        }
    }

    fn chunk_leaf(file: u32, chunk: u64) -> MerkleHash {
        MerkleHash([100 + chunk as u8 + 10 * file as u8; 32])
    }

    fn state_path() -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        (dir, path)
    }

    /// Writes `value` under `key` straight into a table, as damage would.
    fn poke<const N: usize>(
        path: &Path,
        table: TableDefinition<&'static [u8; N], &'static [u8]>,
        key: &[u8; N],
        value: &[u8],
    ) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(table).unwrap().insert(key, value).unwrap();
        txn.commit().unwrap();
    }

    /// Rows of all item tables whose key starts with `id`.
    fn rows_of(path: &Path, id: &ManifestId) -> usize {
        fn count<const N: usize>(
            txn: &ReadTransaction,
            table: TableDefinition<&'static [u8; N], &'static [u8]>,
            id: &ManifestId,
        ) -> usize {
            txn.open_table(table)
                .unwrap()
                .iter()
                .unwrap()
                .filter(|row| row.as_ref().unwrap().0.value()[..32] == id.0)
                .count()
        }
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        count(&txn, MANIFESTS, id)
            + count(&txn, CONTENT, id)
            + count(&txn, BITFIELDS, id)
            + count(&txn, LEAVES, id)
            + count(&txn, PROOFS, id)
    }

    fn assert_refused_unchanged(path: &Path, check: impl FnOnce(&StoreError)) {
        let before = std::fs::read(path).unwrap();
        let err = Store::open(path).unwrap_err();
        check(&err);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "the error names the path: {err}"
        );
        assert_eq!(std::fs::read(path).unwrap(), before, "the file was changed");
    }

    /// A copy of the file at `from`, taken while its database is open: what a crash leaves.
    fn crashed_copy(from: &Path, to: &Path) {
        std::fs::copy(from, to).unwrap();
        assert!(
            matches!(
                ReadOnlyDatabase::open(to),
                Err(DatabaseError::RepairAborted)
            ),
            "the copy needs a repair, as after a crash"
        );
    }

    // ----- opening -----

    #[test]
    fn store_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Store>();
    }

    #[test]
    fn a_new_file_gets_the_magic_and_version_and_no_temporary_file_is_left() {
        let (dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert!(store.trust_list().unwrap().is_empty());
        assert!(store.content_list().unwrap().is_empty());
        drop(store);

        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let magic: String =
            encoding::decode("magic", meta.get(META_MAGIC).unwrap().unwrap().value(), 100).unwrap();
        assert_eq!(magic, STATE_MAGIC);
        let version: u32 = encoding::decode(
            "version",
            meta.get(META_VERSION).unwrap().unwrap().value(),
            100,
        )
        .unwrap();
        assert_eq!(version, STATE_FORMAT_VERSION);
        let names: BTreeSet<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        let expected: BTreeSet<String> = [
            META_NAME,
            TRUST_NAME,
            MANIFESTS_NAME,
            CONTENT_NAME,
            BITFIELDS_NAME,
            LEAVES_NAME,
            PROOFS_NAME,
            CHUNK_LEAVES_NAME,
            LEAF_BLOCKS_NAME,
            CATALOGS_NAME,
            CATALOG_HEADS_NAME,
            MIRRORS_NAME,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(names, expected);

        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("state.redb")]);
    }

    #[test]
    fn reopen_keeps_everything() {
        let (_dir, path) = state_path();
        let publisher = secret(1).public_key();
        let settings = TrustedPublisher {
            name: Some("Example Films".into()),
            require_catalog: true,
        };
        let download = manifest("download", &[THREE_CHUNKS, 5]);
        let seeded = manifest("seeded", &[0, THREE_CHUNKS]);
        let mut download_record = record(ContentOrigin::Downloaded, RecordState::Downloading);
        download_record.file_stamps = vec![
            FileStamp {
                size: THREE_CHUNKS,
                modified_ns: -5,
            },
            FileStamp {
                size: 5,
                modified_ns: 1_700_000_000_123_456_789,
            },
        ];
        let seeded_record = record(ContentOrigin::Seeded, RecordState::Complete);
        let catalog = Catalog {
            publisher,
            sequence: 7,
            issued_at: Timestamp(1_700_000_000),
            expires_at: Timestamp(1_800_000_000),
            entries: vec![CatalogEntry {
                manifest_id: download.id(),
                title: "download".into(),
            }],
            revoked_manifests: vec![],
            revoked_delegates: vec![],
        }
        .sign(&secret(1))
        .unwrap();
        {
            let store = Store::open(&path).unwrap();
            store.trust_put(&publisher, &settings).unwrap();
            store
                .content_put(&download, &download_record, &download_files(&download))
                .unwrap();
            store
                .content_put(&seeded, &seeded_record, &seeded_files(&seeded))
                .unwrap();
            store
                .commit_chunks(&download.id(), &[chunk(0, 1), chunk(1, 0)])
                .unwrap();
            store
                .complete_file(&download.id(), 1, &leaves(1, 9))
                .unwrap();
            store
                .catalog_put(&publisher, catalog.envelope_bytes())
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.trust_list().unwrap(), vec![(publisher, settings)]);
        let listed: Vec<(ManifestId, ContentRecord)> = store
            .content_list()
            .unwrap()
            .into_iter()
            .map(|(m, r)| (m.id(), r))
            .collect();
        let mut expected = vec![
            (download.id(), download_record),
            (seeded.id(), seeded_record),
        ];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(listed, expected);
        let mut bits = Bitfield::new(3);
        bits.set(1, true);
        assert_eq!(store.bitfield(&download.id(), 0).unwrap(), Some(bits));
        assert_eq!(store.proof(&download.id(), 0, 1).unwrap(), Some(proof(1)));
        assert_eq!(store.leaves(&download.id(), 1).unwrap(), Some(leaves(1, 9)));
        assert_eq!(store.proof(&download.id(), 1, 0).unwrap(), None);
        assert_eq!(store.bitfield(&seeded.id(), 1).unwrap(), Some(full_bits(3)));
        assert_eq!(store.leaves(&seeded.id(), 1).unwrap(), Some(leaves(3, 1)));
        assert_eq!(
            store.catalogs().unwrap(),
            vec![(publisher, catalog.envelope_bytes().to_vec())]
        );
    }

    #[test]
    fn a_file_that_is_not_redb_is_refused_unchanged() {
        let (_dir, path) = state_path();
        std::fs::write(&path, b"hello").unwrap();
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("not a redb database")),
                "{err}"
            );
        });
    }

    #[test]
    fn an_empty_file_is_refused_unchanged() {
        let (_dir, path) = state_path();
        std::fs::write(&path, b"").unwrap();
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found == "an empty file"),
                "{err}"
            );
        });
    }

    #[test]
    fn another_programs_redb_file_is_refused_unchanged() {
        let (_dir, path) = state_path();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let other: TableDefinition<&str, u64> = TableDefinition::new("bookmarks");
            txn.open_table(other).unwrap().insert("a", 1).unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. }
                    if found.contains("another program") && found.contains("bookmarks")),
                "{err}"
            );
        });
    }

    #[test]
    fn another_programs_redb_file_left_by_a_crash_is_refused_unchanged() {
        let (dir, path) = state_path();
        let open = dir.path().join("open.redb");
        let db = Database::create(&open).unwrap();
        let txn = db.begin_write().unwrap();
        let other: TableDefinition<u64, u64> = TableDefinition::new("numbers");
        txn.open_table(other).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
        crashed_copy(&open, &path);
        drop(db);
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("numbers")),
                "{err}"
            );
        });
    }

    #[test]
    fn a_meta_table_without_the_licet_magic_is_refused_unchanged() {
        let (_dir, path) = state_path();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_MAGIC, encoding::encode(&"some-other-app").as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("no licet magic")),
                "{err}"
            );
        });
    }

    #[test]
    fn a_meta_table_of_other_types_is_refused_unchanged() {
        let (_dir, path) = state_path();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let meta: TableDefinition<u64, u64> = TableDefinition::new(META_NAME);
            txn.open_table(meta).unwrap().insert(1, 1).unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("other types")),
                "{err}"
            );
        });
    }

    #[test]
    fn a_newer_format_version_is_refused_unchanged() {
        let (_dir, path) = state_path();
        drop(Store::open(&path).unwrap());
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_VERSION, encoding::encode(&2u32).as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::NewerFormat { version: 2, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("upgrade licet-node"), "{err}");
        });
    }

    #[test]
    fn a_damaged_redb_file_is_refused_without_a_panic() {
        let (_dir, path) = state_path();
        {
            let store = Store::open(&path).unwrap();
            store
                .trust_put(&secret(1).public_key(), &TrustedPublisher::default())
                .unwrap();
        }
        // Keep redb's signature, overwrite everything after the first page.
        let mut bytes = std::fs::read(&path).unwrap();
        for (i, byte) in bytes.iter_mut().enumerate().skip(4096) {
            *byte = (i * 7 + 3) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Open { .. } | StoreError::Database(_)),
                "{err}"
            );
        });
    }

    #[test]
    fn a_store_in_use_is_refused_and_the_first_keeps_working() {
        let (_dir, path) = state_path();
        let first = Store::open(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::Open { reason, .. } if reason.contains("in use")),
            "{err}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
        first
            .trust_put(&secret(1).public_key(), &TrustedPublisher::default())
            .unwrap();
        assert_eq!(first.trust_list().unwrap().len(), 1);
    }

    #[test]
    fn a_store_left_by_a_crash_reopens_with_its_committed_data() {
        let (dir, path) = state_path();
        let crashed = dir.path().join("crashed.redb");
        let m = manifest("crash", &[THREE_CHUNKS]);
        let store = Store::open(&path).unwrap();
        put_download(&store, &m);
        store.commit_chunks(&m.id(), &[chunk(0, 2)]).unwrap();
        crashed_copy(&path, &crashed);
        drop(store);

        let store = Store::open(&crashed).unwrap();
        let mut bits = Bitfield::new(3);
        bits.set(2, true);
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(bits));
        assert_eq!(store.proof(&m.id(), 0, 2).unwrap(), Some(proof(2)));
    }

    #[test]
    fn a_directory_or_a_missing_parent_is_an_open_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));

        let missing = dir.path().join("no such dir").join("state.redb");
        let err = Store::open(&missing).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&missing.display().to_string()));
        assert!(!dir.path().join("no such dir").exists());
    }

    #[test]
    fn the_probe_backend_never_writes_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let original: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let backend = ProbeBackend::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(backend.len().unwrap(), 10_000);

        backend.write(4090, &[0xEE; 10]).unwrap();
        let mut out = vec![0u8; 30];
        backend.read(4080, &mut out).unwrap();
        let mut expected = original[4080..4110].to_vec();
        expected[10..20].fill(0xEE);
        assert_eq!(out, expected);

        // Truncating then growing reads zeros where the file had bytes.
        backend.set_len(5000).unwrap();
        backend.set_len(9000).unwrap();
        let mut out = vec![1u8; 200];
        backend.read(4900, &mut out).unwrap();
        assert_eq!(&out[..100], &original[4900..5000]);
        assert!(out[100..].iter().all(|b| *b == 0));
        // Writing past the end grows it.
        backend.write(12_000, &[7; 4]).unwrap();
        assert_eq!(backend.len().unwrap(), 12_004);
        let mut out = [0u8; 4];
        backend.read(12_000, &mut out).unwrap();
        assert_eq!(out, [7; 4]);
        assert!(backend.read(12_001, &mut out).is_err(), "read past the end");
        backend.sync_data().unwrap();
        backend.close().unwrap();

        assert_eq!(std::fs::read(&path).unwrap(), original);
    }

    #[test]
    fn the_redb_signature_is_what_redb_writes() {
        let (_dir, path) = state_path();
        drop(Database::create(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap()[..9], REDB_SIGNATURE);
    }

    // ----- content items -----

    #[test]
    fn a_download_round_trips() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("round trip", &[THREE_CHUNKS, 0]);
        let rec = record(ContentOrigin::Downloaded, RecordState::Downloading);
        assert!(store.content_get(&m.id()).unwrap().is_none());
        assert!(store.manifest_get(&m.id()).unwrap().is_none());
        store.content_put(&m, &rec, &download_files(&m)).unwrap();

        let (got, got_rec) = store.content_get(&m.id()).unwrap().unwrap();
        assert_eq!(got.id(), m.id());
        assert_eq!(got.envelope(), m.envelope());
        assert_eq!(got_rec, rec);
        assert_eq!(store.manifest_get(&m.id()).unwrap().unwrap().id(), m.id());
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(Bitfield::new(3)));
        assert_eq!(store.bitfield(&m.id(), 1).unwrap(), Some(Bitfield::new(1)));
        assert_eq!(store.bitfield(&m.id(), 2).unwrap(), None);
        assert_eq!(store.leaves(&m.id(), 0).unwrap(), None);
        assert_eq!(store.proof(&m.id(), 0, 0).unwrap(), None);
        let listed = store.content_list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.id(), m.id());
        assert_eq!(listed[0].1, rec);
    }

    #[test]
    fn seeded_content_stores_full_bitfields_and_leaves() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("seeded", &[THREE_CHUNKS, 0]);
        let mut rec = record(ContentOrigin::Seeded, RecordState::Complete);
        rec.file_stamps = vec![
            FileStamp {
                size: THREE_CHUNKS,
                modified_ns: 1,
            },
            FileStamp {
                size: 0,
                modified_ns: 2,
            },
        ];
        store.content_put(&m, &rec, &seeded_files(&m)).unwrap();
        assert_eq!(store.content_get(&m.id()).unwrap().unwrap().1, rec);
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(full_bits(3)));
        assert_eq!(store.leaves(&m.id(), 0).unwrap(), Some(leaves(3, 0)));
        assert_eq!(store.bitfield(&m.id(), 1).unwrap(), Some(full_bits(1)));
        assert_eq!(store.leaves(&m.id(), 1).unwrap(), Some(leaves(1, 1)));
    }

    #[test]
    fn content_put_replaces_the_item_and_its_old_chunk_state() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("replace", &[THREE_CHUNKS, THREE_CHUNKS]);
        let rec = record(ContentOrigin::Downloaded, RecordState::Downloading);
        store.content_put(&m, &rec, &download_files(&m)).unwrap();
        store
            .commit_chunks(&m.id(), &[chunk(0, 0), chunk(1, 2)])
            .unwrap();

        let mut failed = rec.clone();
        failed.state = RecordState::Failed;
        store.content_put(&m, &failed, &download_files(&m)).unwrap();
        assert_eq!(store.content_get(&m.id()).unwrap().unwrap().1, failed);
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(Bitfield::new(3)));
        assert_eq!(store.proof(&m.id(), 0, 0).unwrap(), None);
        assert_eq!(store.proof(&m.id(), 1, 2).unwrap(), None);
        assert_eq!(store.content_list().unwrap().len(), 1);
    }

    #[test]
    fn content_put_refuses_state_that_does_not_fit_the_manifest_and_stores_nothing() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("misfit", &[THREE_CHUNKS, 0]);
        let rec = record(ContentOrigin::Downloaded, RecordState::Downloading);
        let id = m.id();
        let is_invalid = |result: Result<(), StoreError>, needle: &str| {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, StoreError::Invalid { item, reason }
                    if item == &format!("content {id}") && reason.contains(needle)),
                "{err}"
            );
        };

        let one_file = &download_files(&m)[..1];
        is_invalid(
            store.content_put(&m, &rec, one_file),
            "1 file states given for a manifest of 2 files",
        );

        let mut files = download_files(&m);
        files[0].bitfield = Bitfield::new(4);
        is_invalid(
            store.content_put(&m, &rec, &files),
            "has 4 bits, but the file has 3 chunks",
        );

        let mut files = download_files(&m);
        files[0].leaves = Some(leaves(3, 0));
        is_invalid(
            store.content_put(&m, &rec, &files),
            "holds 0 of its 3 chunks",
        );

        let mut files = seeded_files(&m);
        files[0].leaves = Some(leaves(2, 0));
        is_invalid(
            store.content_put(&m, &rec, &files),
            "2 leaf hashes given for file 0 of 3 chunks",
        );

        let mut stamped = rec.clone();
        stamped.file_stamps = vec![FileStamp {
            size: 1,
            modified_ns: 1,
        }];
        is_invalid(
            store.content_put(&m, &stamped, &download_files(&m)),
            "1 file stamps for 2 files",
        );

        let mut long_dir = rec.clone();
        long_dir.dir = PathBuf::from("d".repeat(MAX_DIR_BYTES + 1));
        is_invalid(
            store.content_put(&m, &long_dir, &download_files(&m)),
            "over the limit",
        );

        assert!(store.content_get(&id).unwrap().is_none());
        assert!(store.manifest_get(&id).unwrap().is_none());
        assert_eq!(store.bitfield(&id, 0).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("bytes", &[1]);
        let mut rec = record(ContentOrigin::Seeded, RecordState::Complete);
        rec.dir = PathBuf::from(std::ffi::OsStr::from_bytes(b"/srv/caf\xe9"));
        let err = store.content_put(&m, &rec, &seeded_files(&m)).unwrap_err();
        assert!(
            matches!(err, StoreError::NonUtf8Dir { id, .. } if id == m.id()),
            "{err}"
        );
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
        assert!(store.content_get(&m.id()).unwrap().is_none());
    }

    #[test]
    fn content_set_record_updates_state_error_and_stamps_only() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("record", &[THREE_CHUNKS]);
        let rec = record(ContentOrigin::Downloaded, RecordState::Downloading);

        let err = store.content_set_record(&m.id(), &rec).unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { id } if id == m.id()),
            "{err}"
        );

        store.content_put(&m, &rec, &download_files(&m)).unwrap();
        store.commit_chunks(&m.id(), &[chunk(0, 1)]).unwrap();
        let mut failed = rec.clone();
        failed.state = RecordState::Failed;
        failed.error = Some(format!("{}é", "x".repeat(MAX_ERROR_BYTES - 1)));
        failed.file_stamps = vec![FileStamp {
            size: 3,
            modified_ns: 4,
        }];
        store.content_set_record(&m.id(), &failed).unwrap();
        let got = store.content_get(&m.id()).unwrap().unwrap().1;
        assert_eq!(got.state, RecordState::Failed);
        // Cut at a character boundary: the two-byte 'é' does not fit.
        assert_eq!(got.error, Some("x".repeat(MAX_ERROR_BYTES - 1)));
        assert_eq!(got.file_stamps, failed.file_stamps);
        // The chunk state is untouched.
        assert_eq!(store.proof(&m.id(), 0, 1).unwrap(), Some(proof(1)));

        let mut moved = rec.clone();
        moved.dir = PathBuf::from("/elsewhere");
        let err = store.content_set_record(&m.id(), &moved).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        let mut two_stamps = rec.clone();
        two_stamps.file_stamps = vec![failed.file_stamps[0].clone(); 2];
        let err = store.content_set_record(&m.id(), &two_stamps).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert_eq!(
            store.content_get(&m.id()).unwrap().unwrap().1.state,
            RecordState::Failed
        );
    }

    // ----- chunk state -----

    #[test]
    fn committed_chunks_survive_reopen() {
        let (_dir, path) = state_path();
        let m = manifest("commit", &[THREE_CHUNKS, THREE_CHUNKS]);
        {
            let store = Store::open(&path).unwrap();
            put_download(&store, &m);
            store
                .commit_chunks(&m.id(), &[chunk(0, 0), chunk(0, 2), chunk(1, 1)])
                .unwrap();
            // Committing a held chunk again is harmless.
            store.commit_chunks(&m.id(), &[chunk(0, 2)]).unwrap();
            store.commit_chunks(&m.id(), &[]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let mut first = Bitfield::new(3);
        first.set(0, true);
        first.set(2, true);
        let mut second = Bitfield::new(3);
        second.set(1, true);
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(first));
        assert_eq!(store.bitfield(&m.id(), 1).unwrap(), Some(second));
        assert_eq!(store.proof(&m.id(), 0, 0).unwrap(), Some(proof(0)));
        assert_eq!(store.proof(&m.id(), 0, 1).unwrap(), None);
        assert_eq!(store.proof(&m.id(), 0, 2).unwrap(), Some(proof(2)));
        assert_eq!(store.proof(&m.id(), 1, 1).unwrap(), Some(proof(11)));
    }

    #[test]
    fn an_out_of_range_chunk_commits_nothing() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("range", &[THREE_CHUNKS, THREE_CHUNKS]);
        put_download(&store, &m);
        let err = store
            .commit_chunks(&m.id(), &[chunk(1, 0), chunk(0, 1), chunk(0, 3)])
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ChunkOutOfRange { id, file: 0, chunk: 3, chunks: 3 } if id == m.id()),
            "{err}"
        );
        assert!(err.to_string().contains("the file has 3 chunks"), "{err}");
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(Bitfield::new(3)));
        assert_eq!(store.bitfield(&m.id(), 1).unwrap(), Some(Bitfield::new(3)));
        assert_eq!(store.proof(&m.id(), 1, 0).unwrap(), None);
        assert_eq!(store.proof(&m.id(), 0, 1).unwrap(), None);
    }

    #[test]
    fn commit_chunks_refuses_unknown_items_files_and_overlong_proofs() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("unknown", &[THREE_CHUNKS]);
        let err = store.commit_chunks(&m.id(), &[chunk(0, 0)]).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

        put_download(&store, &m);
        let err = store
            .commit_chunks(&m.id(), &[chunk(0, 0), chunk(1, 0)])
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownFile { file: 1, .. }),
            "{err}"
        );

        let long = CommittedChunk {
            file: 0,
            chunk: 0,
            proof: AuditPath(vec![MerkleHash([0; 32]); MAX_AUDIT_PATH_LEN + 1]),
            leaf: MerkleHash([0; 32]),
        };
        let err = store.commit_chunks(&m.id(), &[long]).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(Bitfield::new(3)));
    }

    #[test]
    fn complete_file_stores_leaves_and_drops_only_that_files_proofs() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("complete", &[THREE_CHUNKS, THREE_CHUNKS]);
        put_download(&store, &m);
        let all: Vec<CommittedChunk> = (0..3).flat_map(|c| [chunk(0, c), chunk(1, c)]).collect();
        store.commit_chunks(&m.id(), &all).unwrap();

        store.complete_file(&m.id(), 0, &leaves(3, 5)).unwrap();
        assert_eq!(store.leaves(&m.id(), 0).unwrap(), Some(leaves(3, 5)));
        for c in 0..3 {
            assert_eq!(store.proof(&m.id(), 0, c).unwrap(), None);
            assert_eq!(
                store.proof(&m.id(), 1, c).unwrap(),
                Some(proof(10 + c as u8))
            );
        }
        assert_eq!(store.chunk_leaves(&m.id(), 0, 3).unwrap(), None);
        assert_eq!(
            store.chunk_leaves(&m.id(), 1, 3).unwrap(),
            Some((0..3).map(|c| chunk_leaf(1, c)).collect())
        );
        assert_eq!(store.leaves(&m.id(), 1).unwrap(), None);
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(full_bits(3)));

        // A chunk committed to a complete file keeps its bit but stores no proof.
        store.commit_chunks(&m.id(), &[chunk(0, 1)]).unwrap();
        assert_eq!(store.proof(&m.id(), 0, 1).unwrap(), None);
    }

    #[test]
    fn chunk_leaves_are_known_only_when_every_chunk_of_the_file_has_one() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("chunk-leaves", &[THREE_CHUNKS, THREE_CHUNKS]);
        put_download(&store, &m);
        store
            .commit_chunks(&m.id(), &[chunk(0, 2), chunk(0, 0), chunk(1, 1)])
            .unwrap();
        // Chunk 1 of file 0 is missing: no leaf list, even though the count of rows is close.
        assert_eq!(store.chunk_leaves(&m.id(), 0, 3).unwrap(), None);
        assert_eq!(store.chunk_leaves(&m.id(), 1, 3).unwrap(), None);
        store.commit_chunks(&m.id(), &[chunk(0, 1)]).unwrap();
        assert_eq!(
            store.chunk_leaves(&m.id(), 0, 3).unwrap(),
            Some((0..3).map(|c| chunk_leaf(0, c)).collect())
        );
        // Replacing or removing the item drops them with its other rows.
        put_download(&store, &m);
        assert_eq!(store.chunk_leaves(&m.id(), 0, 3).unwrap(), None);
        store.commit_chunks(&m.id(), &[chunk(1, 0)]).unwrap();
        assert!(store.content_remove(&m.id()).unwrap());
        assert_eq!(store.chunk_leaves(&m.id(), 1, 1).unwrap(), None);
    }

    #[test]
    fn replace_bitfield_clears_a_changed_file_and_a_recheck_restores_it() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("changed", &[THREE_CHUNKS, THREE_CHUNKS]);
        put_download(&store, &m);
        let all: Vec<CommittedChunk> = (0..3).flat_map(|c| [chunk(0, c), chunk(1, c)]).collect();
        store.commit_chunks(&m.id(), &all).unwrap();
        store.complete_file(&m.id(), 0, &leaves(3, 5)).unwrap();

        // A complete file changed on disk: its bits go, its leaves stay for the re-check.
        store
            .replace_bitfield(&m.id(), 0, &Bitfield::new(3))
            .unwrap();
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(Bitfield::new(3)));
        assert_eq!(store.leaves(&m.id(), 0).unwrap(), Some(leaves(3, 5)));
        // The re-check found chunks 0 and 2 matching their leaves again.
        let mut found = Bitfield::new(3);
        found.set(0, true);
        found.set(2, true);
        store.replace_bitfield(&m.id(), 0, &found).unwrap();
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(found.clone()));

        // A partial file: a cleared chunk loses its proof and leaf; a bit cannot be set back
        // without one.
        let mut partial = full_bits(3);
        partial.set(1, false);
        store.replace_bitfield(&m.id(), 1, &partial).unwrap();
        assert_eq!(store.proof(&m.id(), 1, 1).unwrap(), None);
        assert_eq!(store.proof(&m.id(), 1, 0).unwrap(), Some(proof(10)));
        assert_eq!(store.chunk_leaves(&m.id(), 1, 3).unwrap(), None);
        let err = store
            .replace_bitfield(&m.id(), 1, &full_bits(3))
            .unwrap_err();
        assert!(err.to_string().contains("without its proof"), "{err}");
        let err = store
            .replace_bitfield(&m.id(), 1, &Bitfield::new(4))
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        let err = store
            .replace_bitfield(&m.id(), 2, &Bitfield::new(3))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownFile { file: 2, .. }),
            "{err}"
        );
        assert_eq!(store.bitfield(&m.id(), 1).unwrap(), Some(partial));
    }

    #[test]
    fn complete_file_refuses_an_incomplete_file_or_a_wrong_leaf_count() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let m = manifest("incomplete", &[THREE_CHUNKS]);
        let err = store.complete_file(&m.id(), 0, &leaves(3, 0)).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        put_download(&store, &m);
        store
            .commit_chunks(&m.id(), &[chunk(0, 0), chunk(0, 1)])
            .unwrap();
        let err = store.complete_file(&m.id(), 0, &leaves(3, 0)).unwrap_err();
        assert!(err.to_string().contains("holds 2 of its 3 chunks"), "{err}");
        store.commit_chunks(&m.id(), &[chunk(0, 2)]).unwrap();
        let err = store.complete_file(&m.id(), 0, &leaves(4, 0)).unwrap_err();
        assert!(err.to_string().contains("4 leaf hashes"), "{err}");
        let err = store.complete_file(&m.id(), 1, &leaves(1, 0)).unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownFile { file: 1, .. }),
            "{err}"
        );
        assert_eq!(store.leaves(&m.id(), 0).unwrap(), None);
        assert_eq!(store.proof(&m.id(), 0, 0).unwrap(), Some(proof(0)));
    }

    #[test]
    fn content_remove_removes_every_row_of_the_item_and_nothing_else() {
        let (_dir, path) = state_path();
        let doomed = manifest("doomed", &[THREE_CHUNKS, THREE_CHUNKS]);
        let kept = manifest("kept", &[THREE_CHUNKS, THREE_CHUNKS]);
        let kept_record = record(ContentOrigin::Downloaded, RecordState::Downloading);
        {
            let store = Store::open(&path).unwrap();
            for m in [&doomed, &kept] {
                store
                    .content_put(m, &kept_record, &download_files(m))
                    .unwrap();
                let all: Vec<CommittedChunk> =
                    (0..3).flat_map(|c| [chunk(0, c), chunk(1, c)]).collect();
                store.commit_chunks(&m.id(), &all).unwrap();
                store.complete_file(&m.id(), 1, &leaves(3, 1)).unwrap();
            }
        }
        // manifest + record + 2 bitfields + 1 leaf list + 3 proofs
        assert_eq!(rows_of(&path, &doomed.id()), 8);
        assert_eq!(rows_of(&path, &kept.id()), 8);
        {
            let store = Store::open(&path).unwrap();
            assert!(store.content_remove(&doomed.id()).unwrap());
            assert!(!store.content_remove(&doomed.id()).unwrap());
            assert!(store.content_get(&doomed.id()).unwrap().is_none());
            assert!(store.manifest_get(&doomed.id()).unwrap().is_none());
            assert_eq!(store.bitfield(&doomed.id(), 0).unwrap(), None);

            let (m, r) = store.content_get(&kept.id()).unwrap().unwrap();
            assert_eq!((m.id(), r), (kept.id(), kept_record));
            assert_eq!(store.bitfield(&kept.id(), 0).unwrap(), Some(full_bits(3)));
            assert_eq!(store.proof(&kept.id(), 0, 2).unwrap(), Some(proof(2)));
            assert_eq!(store.leaves(&kept.id(), 1).unwrap(), Some(leaves(3, 1)));
        }
        assert_eq!(rows_of(&path, &doomed.id()), 0);
        assert_eq!(rows_of(&path, &kept.id()), 8);
    }

    // ----- damage -----

    fn assert_corrupt(err: StoreError, table: &str, key: &str) {
        match &err {
            StoreError::Corrupt {
                table: t, key: k, ..
            } => {
                assert_eq!((*t, k.as_str()), (table, key), "{err}");
                let message = err.to_string();
                assert!(
                    message.contains(table) && message.contains(key),
                    "{message}"
                );
            }
            other => panic!("expected a corrupt value, got {other}"),
        }
    }

    #[test]
    fn a_corrupt_value_is_an_error_naming_its_table_and_key() {
        let (_dir, path) = state_path();
        let m = manifest("damaged", &[THREE_CHUNKS]);
        let id = m.id();
        let publisher = secret(1).public_key();
        {
            let store = Store::open(&path).unwrap();
            put_download(&store, &m);
        }
        let garbage = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01];
        poke(&path, CONTENT, &id.0, &garbage);
        poke(&path, BITFIELDS, &file_key(&id, 0), &[3, 1, 0xFF]); // stray bits past 3
        poke(&path, LEAVES, &file_key(&id, 0), &garbage);
        poke(&path, PROOFS, &chunk_key(&id, 0, 2), &garbage);
        poke(&path, TRUST, &publisher.0, &garbage);
        poke(&path, CATALOGS, &publisher.0, &garbage);

        let store = Store::open(&path).unwrap();
        let item = id.to_string();
        assert_corrupt(store.content_get(&id).unwrap_err(), "content", &item);
        assert_corrupt(store.content_list().unwrap_err(), "content", &item);
        assert_corrupt(
            store
                .content_set_record(&id, &record(ContentOrigin::Downloaded, RecordState::Failed))
                .unwrap_err(),
            "content",
            &item,
        );
        let file0 = format!("{id} file 0");
        assert_corrupt(store.bitfield(&id, 0).unwrap_err(), "bitfields", &file0);
        assert_corrupt(
            store.commit_chunks(&id, &[chunk(0, 0)]).unwrap_err(),
            "bitfields",
            &file0,
        );
        assert_corrupt(store.leaves(&id, 0).unwrap_err(), "leaves", &file0);
        assert_corrupt(
            store.proof(&id, 0, 2).unwrap_err(),
            "proofs",
            &format!("{id} file 0 chunk 2"),
        );
        assert_corrupt(
            store.trust_list().unwrap_err(),
            "trust",
            &publisher.to_string(),
        );
        assert_corrupt(
            store.catalogs().unwrap_err(),
            "catalogs",
            &publisher.to_string(),
        );
    }

    #[test]
    fn a_manifest_that_no_longer_verifies_or_is_missing_is_corrupt() {
        let (_dir, path) = state_path();
        let m = manifest("tampered", &[THREE_CHUNKS]);
        let other = manifest("other", &[1]);
        {
            let store = Store::open(&path).unwrap();
            put_download(&store, &m);
        }
        let mut envelope = m.envelope().clone();
        envelope.signature.0[0] ^= 1;
        poke(&path, MANIFESTS, &m.id().0, &envelope.encode());
        // A valid manifest stored under the wrong id.
        poke(&path, MANIFESTS, &[7; 32], &other.envelope().encode());
        {
            let store = Store::open(&path).unwrap();
            let err = store.manifest_get(&m.id()).unwrap_err();
            assert!(err.to_string().contains("no longer verifies"), "{err}");
            assert_corrupt(err, "manifests", &m.id().to_string());
            assert_corrupt(
                store.content_get(&m.id()).unwrap_err(),
                "manifests",
                &m.id().to_string(),
            );
            let err = store.manifest_get(&ManifestId([7; 32])).unwrap_err();
            assert!(err.to_string().contains("has id"), "{err}");
        }
        // A record whose manifest row is gone.
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(MANIFESTS)
                .unwrap()
                .remove(&m.id().0)
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let err = store.content_list().unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert_corrupt(err, "manifests", &m.id().to_string());
    }

    #[test]
    fn a_stored_manifest_that_stricter_rules_refuse_is_listed_apart_and_not_as_damage() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let kept = manifest("kept", &[THREE_CHUNKS]);
        let old = manifest("signed under older rules", &[THREE_CHUNKS]);
        put_download(&store, &kept);
        put_download(&store, &old);
        drop(store);
        // The publisher signed `file0.bin` as `file0:bin`: a path today's rules refuse (Windows
        // cannot hold `:`), with a signature that verifies over the stored bytes.
        let mut body = old.envelope().body.clone();
        let at = body.windows(9).position(|w| w == b"file0.bin").unwrap();
        body[at + 5] = b':';
        let signed = licet_proto::signed::Signed::sign(
            licet_proto::signed::SignedKind::Manifest,
            body,
            &secret(1),
            None,
        );
        poke(&path, MANIFESTS, &old.id().0, &signed.encode());

        let store = Store::open(&path).unwrap();
        let (usable, refused) = store.content_list_with_refused().unwrap();
        assert_eq!(usable.len(), 1);
        assert_eq!(usable[0].0.id(), kept.id());
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, old.id());
        assert!(refused[0].1.contains("file0:bin"), "{refused:?}");
        assert_eq!(store.content_list().unwrap().len(), 1);
        let err = store.content_get(&old.id()).unwrap_err();
        assert!(
            matches!(err, StoreError::ManifestRefused { .. }),
            "not reported as damage: {err}"
        );
        // It can be forgotten like any item.
        assert!(store.content_remove(&old.id()).unwrap());
        assert!(store.content_list_with_refused().unwrap().1.is_empty());
    }

    #[test]
    fn an_undecodable_format_version_is_corrupt() {
        let (_dir, path) = state_path();
        drop(Store::open(&path).unwrap());
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_VERSION, [0xFF_u8; 6].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert_corrupt(Store::open(&path).unwrap_err(), "meta", "format_version");
    }

    // ----- trust and catalogs -----

    #[test]
    fn trust_round_trips() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let (a, b) = (secret(1).public_key(), secret(2).public_key());
        let plain = TrustedPublisher::default();
        let named = TrustedPublisher {
            name: Some("Example Records".into()),
            require_catalog: true,
        };
        store.trust_put(&a, &plain).unwrap();
        store.trust_put(&b, &named).unwrap();
        let mut expected = vec![(a, plain.clone()), (b, named.clone())];
        expected.sort_by_key(|(key, _)| *key);
        assert_eq!(store.trust_list().unwrap(), expected);

        store.trust_put(&a, &named).unwrap();
        assert!(store.trust_list().unwrap().contains(&(a, named.clone())));
        assert_eq!(store.trust_list().unwrap().len(), 2);

        assert!(store.trust_remove(&a).unwrap());
        assert!(!store.trust_remove(&a).unwrap());
        assert_eq!(store.trust_list().unwrap(), vec![(b, named)]);
    }

    #[test]
    fn an_oversize_trust_entry_is_refused() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let key = secret(1).public_key();
        let huge = TrustedPublisher {
            name: Some("n".repeat(MAX_TRUST_VALUE_BYTES)),
            require_catalog: false,
        };
        let err = store.trust_put(&key, &huge).unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid { item, .. } if item.contains(&key.to_string())),
            "{err}"
        );
        assert!(store.trust_list().unwrap().is_empty());
    }

    fn signed_catalog(seed: u8, sequence: u64, title: &str) -> VerifiedCatalog {
        Catalog {
            publisher: secret(seed).public_key(),
            sequence,
            issued_at: Timestamp(1_700_000_000),
            expires_at: Timestamp(1_800_000_000),
            entries: vec![CatalogEntry {
                manifest_id: ManifestId([9; 32]),
                title: title.into(),
            }],
            revoked_manifests: vec![],
            revoked_delegates: vec![],
        }
        .sign(&secret(seed))
        .unwrap()
    }

    #[test]
    fn catalogs_round_trip_and_never_go_backwards() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let (a, b) = (secret(1).public_key(), secret(2).public_key());
        assert!(store.catalogs().unwrap().is_empty());
        let a5 = signed_catalog(1, 5, "five");
        let b1 = signed_catalog(2, 1, "one");
        store.catalog_put(&a, a5.envelope_bytes()).unwrap();
        store.catalog_put(&b, b1.envelope_bytes()).unwrap();
        let mut expected = vec![
            (a, a5.envelope_bytes().to_vec()),
            (b, b1.envelope_bytes().to_vec()),
        ];
        expected.sort_by_key(|(key, _)| *key);
        assert_eq!(store.catalogs().unwrap(), expected);

        // The identical catalog again is a no-op; a newer one replaces it.
        store.catalog_put(&a, a5.envelope_bytes()).unwrap();
        let a6 = signed_catalog(1, 6, "six");
        store.catalog_put(&a, a6.envelope_bytes()).unwrap();
        assert!(
            store
                .catalogs()
                .unwrap()
                .contains(&(a, a6.envelope_bytes().to_vec()))
        );

        // Older, or the same sequence with other bytes: refused, the newest kept.
        let err = store.catalog_put(&a, a5.envelope_bytes()).unwrap_err();
        assert!(
            matches!(&err, StoreError::CatalogRefused { publisher, reason }
                if *publisher == a && reason.contains("below the stored catalog's 6")),
            "{err}"
        );
        let other6 = signed_catalog(1, 6, "another six");
        let err = store.catalog_put(&a, other6.envelope_bytes()).unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
        assert!(
            store
                .catalogs()
                .unwrap()
                .contains(&(a, a6.envelope_bytes().to_vec()))
        );
    }

    #[test]
    fn a_catalog_that_does_not_verify_or_is_another_publishers_is_refused() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let a = secret(1).public_key();
        let err = store.catalog_put(&a, b"not a catalog").unwrap_err();
        assert!(matches!(err, StoreError::CatalogRefused { .. }), "{err}");

        let mut tampered = signed_catalog(1, 1, "x").envelope_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let err = store.catalog_put(&a, &tampered).unwrap_err();
        assert!(matches!(err, StoreError::CatalogRefused { .. }), "{err}");

        let of_b = signed_catalog(2, 1, "b");
        let err = store.catalog_put(&a, of_b.envelope_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("it is a catalog of publisher"),
            "{err}"
        );
        assert!(store.catalogs().unwrap().is_empty());
    }

    #[test]
    fn a_head_is_stored_only_with_its_own_catalog_and_mirrors_persist() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let a = secret(1).public_key();
        let a5 = signed_catalog(1, 5, "five");
        let a6 = signed_catalog(1, 6, "six");
        let head5 = a5.head(&secret(1)).unwrap();
        // The head of another catalog: refused, nothing stored.
        let err = store
            .catalog_put_with_head(&a, a6.envelope_bytes(), head5.envelope_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("head of another catalog"), "{err}");
        assert!(store.catalogs().unwrap().is_empty());
        assert!(store.catalog_heads().unwrap().is_empty());
        let err = store
            .catalog_put_with_head(&a, a5.envelope_bytes(), b"junk")
            .unwrap_err();
        assert!(err.to_string().contains("its head"), "{err}");

        store
            .catalog_put_with_head(&a, a5.envelope_bytes(), head5.envelope_bytes())
            .unwrap();
        let heads: Vec<_> = store
            .catalog_heads()
            .unwrap()
            .into_iter()
            .map(|(publisher, head)| (publisher, head.envelope_bytes().to_vec()))
            .collect();
        assert_eq!(heads, vec![(a, head5.envelope_bytes().to_vec())]);
        // A catalog stored without a head drops the stale one.
        store.catalog_put(&a, a6.envelope_bytes()).unwrap();
        assert!(store.catalog_heads().unwrap().is_empty());

        store.mirror_set(&a, true).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.mirrors().unwrap(), vec![a]);
        store.trust_remove(&a).unwrap();
        assert!(
            store.mirrors().unwrap().is_empty(),
            "untrusting stops mirroring"
        );
    }

    // ----- the stored format -----

    #[test]
    fn stored_formats_are_frozen() {
        // Keys: id, then big-endian file and chunk, so an item's rows are contiguous and sorted.
        let id = ManifestId([0xAA; 32]);
        let mut expected = vec![0xAA; 32];
        expected.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(file_key(&id, 0x0102_0304).to_vec(), expected);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(chunk_key(&id, 0x0102_0304, 256).to_vec(), expected);
        assert!(file_key(&id, 1) < file_key(&id, 256));
        assert!(chunk_key(&id, 0, u64::MAX) < chunk_key(&id, 1, 0));

        // meta values
        let mut magic = vec![16];
        magic.extend_from_slice(b"licet-node-state");
        assert_eq!(encoding::encode(&STATE_MAGIC), magic);
        assert_eq!(encoding::encode(&STATE_FORMAT_VERSION), [1]);

        // A content record: dir, origin, state, error, added_at, stamps.
        let stored = StoredRecord {
            dir: "/d".into(),
            origin: ContentOrigin::Downloaded,
            state: RecordState::Failed,
            error: Some("x".into()),
            added_at: Timestamp(1),
            file_stamps: vec![FileStamp {
                size: 2,
                modified_ns: -1,
            }],
        };
        assert_eq!(
            encoding::encode(&stored),
            [2, b'/', b'd', 1, 2, 1, 1, b'x', 2, 1, 2, 1]
        );
        assert_eq!(encoding::encode(&ContentOrigin::Seeded), [0]);
        assert_eq!(encoding::encode(&RecordState::Downloading), [0]);
        assert_eq!(encoding::encode(&RecordState::Complete), [1]);

        // A catalog: sequence, then the envelope bytes.
        let catalog = StoredCatalog {
            sequence: 300,
            envelope: vec![9, 8],
        };
        assert_eq!(encoding::encode(&catalog), [0xAC, 0x02, 2, 9, 8]);
    }
}
