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
//! # Files
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Store`]: opening it, its health, the transactions every other file uses |
//! | `schema.rs` | the tables, their keys, the stored forms of values and their size limits |
//! | `opening.rs`, `probe_backend.rs` | whether a file is ours (without writing to it); creating a new one |
//! | `atomic_file.rs` | writing a file that appears whole or not at all (also the node's key and API files) |
//! | `trust.rs` | the trust store and the mirrored publishers |
//! | `licences.rs` | the licences added to this node |
//! | `items.rs` | manifests and content items |
//! | `chunks.rs`, `held_chunks.rs`, `leaf_blocks.rs`, `proof_tree.rs` | per-file chunk state: held chunks, proofs, leaves |
//! | `catalogs.rs` | each publisher's newest accepted catalog and its head |
//! | `reopening_db.rs`, `compaction.rs` | the database's health: reopening after an I/O error; giving space back |
//! | `error.rs` | [`StoreError`] |
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
//! | `trust` | publisher key (32 bytes) | postcard [`TrustedPublisher`](licet_proto::policy::TrustedPublisher) |
//! | `manifests` | manifest id (32) | the signed envelope exactly as verified (`Signed::encode`) |
//! | `content` | manifest id (32) | postcard record: the fields of [`ContentRecord`], `dir` as UTF-8 |
//! | `bitfields` | id ‖ file `u32` BE (36) | postcard [`Bitfield`](licet_proto::wire::Bitfield): the base of the held chunks (see `held_chunks`) |
//! | `leaves` | id ‖ file (36) | postcard `Vec<MerkleHash>` |
//! | `leaf_blocks` | id ‖ file ‖ block `u64` BE (44) | the same leaves in blocks of [`LEAVES_PER_BLOCK`], 32 bytes each (see `leaf_blocks`) |
//! | `proofs` | id ‖ file ‖ chunk `u64` BE (44) | postcard [`AuditPath`](licet_proto::merkle::AuditPath) |
//! | `chunk_leaves` | id ‖ file ‖ chunk `u64` BE (44) | the chunk's leaf hash (32 bytes) |
//! | `catalogs` | publisher key (32) | postcard `{ sequence: u64, envelope: bytes }` |
//! | `catalog_heads` | publisher key (32) | the signed head of the stored catalog, exactly as verified |
//! | `mirrors` | publisher key (32) | empty: the operator asked to mirror this publisher's catalog |
//! | `licences` | licence id (32) | the signed licence envelope exactly as verified (paid releases this node may open) |
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
//!    same directory, given its tables and `meta`, and only then linked into place
//!    ([`atomic_file`]), so a crash during creation never leaves a file at the path that the
//!    next start would refuse.
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
//!    transaction committed with [`Durability::Immediate`](redb::Durability::Immediate), and its caller must
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

pub mod atomic_file;
mod catalogs;
mod chunks;
mod compaction;
mod error;
mod held_chunks;
mod items;
mod leaf_blocks;
mod licences;
mod opening;
mod probe_backend;
pub mod proof_tree;
pub mod reopening_db;
mod schema;
#[cfg(test)]
mod testing;
mod trust;

use std::{
    io,
    path::{Path, PathBuf},
};

use redb::{ReadTransaction, TableDefinition, TableHandle, WriteTransaction};

pub use self::{
    chunks::CommittedChunk,
    compaction::{COMPACT_ATTEMPTS, Compaction, MIN_RECLAIM_BYTES},
    error::StoreError,
    items::{ContentList, ContentOrigin, ContentRecord, FileStamp, FileState, RecordState},
    leaf_blocks::LEAVES_PER_BLOCK,
};
use self::{
    opening::{create_state_file, open_checked, open_error, probe},
    reopening_db::{Health, REOPEN_RETRY_INTERVAL, ReopeningDb},
};

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

    fn open_write<'txn, K: redb::Key + 'static>(
        &self,
        txn: &'txn WriteTransaction,
        table: TableDefinition<K, &'static [u8]>,
    ) -> Result<redb::Table<'txn, K, &'static [u8]>, StoreError> {
        txn.open_table(table)
            .map_err(|e| self.db(&format!("open table {}", table.name()), e))
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::{
        ManifestId, Timestamp,
        catalog::{Catalog, CatalogEntry},
        policy::TrustedPublisher,
        wire::Bitfield,
    };

    use super::{
        schema::{BITFIELDS, CATALOGS, CONTENT, LEAVES, PROOFS, TRUST, chunk_key, file_key},
        *,
    };
    use crate::store::testing::*;

    #[test]
    fn store_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Store>();
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
            revoked_licences: Vec::new(),
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
                .catalog_put(&publisher, &catalog.to_file_bytes())
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
            vec![(publisher, catalog.to_file_bytes())]
        );
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
}
