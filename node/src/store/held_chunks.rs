//! Which chunks of a file are held, as the store keeps it while the file downloads.
//!
//! A file's `bitfields` row is its **base**: the bits given when the item was put
//! ([`Store::content_put`]), completed ([`Store::complete_file`]) or re-checked
//! ([`Store::replace_bitfield`]). A chunk downloaded since is held when it has a `chunk_leaves`
//! row, which [`Store::commit_chunks`] writes with the chunk's proof in one transaction. The
//! file's held chunks are the base's bits **or** the chunks that have a leaf row.
//!
//! So a commit writes the rows of its own chunks and nothing else. Before, it read and rewrote
//! the file's whole bitfield for each batch: `chunks / 8` bytes per batch, O(chunks²) bytes over
//! a download (1 GiB of database writes for a 4 GiB file in 16 KiB chunks; 32 TiB at the
//! largest file the store keeps).
//!
//! # Invariants
//!
//! 1. A leaf row exists only for a chunk whose bytes were durable before its commit (the
//!    caller's promise to [`Store::commit_chunks`]), and only while its file has no leaf list,
//!    so the union never names a chunk that is not on disk.
//! 2. [`Store::complete_file`] and [`Store::replace_bitfield`] fold the union into the base in
//!    the same transaction in which they drop (some of) the leaf rows: no held bit is lost.
//! 3. A file of a complete item (it has leaves) has no leaf rows: its base is the whole truth,
//!    and a chunk fetched again for it (after its file changed on disk) is set in the base.
//!
//! # Files written before
//!
//! Their base has every held bit set, and their leaf rows name a subset of those bits (chunks
//! committed before `chunk_leaves` existed have none), so the union reads them unchanged: no
//! conversion is needed. An older build reading a newer file sees only the base: fewer chunks
//! than are held, which it fetches again, never a chunk claimed that is not on disk.

use licet_proto::{ManifestId, wire::Bitfield};
use redb::ReadableTable;

use super::{
    MAX_STORED_CHUNKS_PER_FILE, Store, StoreError,
    schema::{
        BITFIELDS_NAME, CHUNK_LEAVES_NAME, ChunkKey, chunk_key, chunk_key_name, file_key_name,
    },
};

/// Longest LEB128 varint of a `u64` (postcard's length prefix).
const MAX_VARINT_BYTES: usize = 10;

impl Store {
    /// `base` with the bit of every chunk of file `file` that has a leaf row set: the file's
    /// held chunks. A leaf row past the end of the file is damage.
    pub(super) fn held_chunks(
        &self,
        chunk_leaves: &impl ReadableTable<&'static ChunkKey, &'static [u8]>,
        id: &ManifestId,
        file: u32,
        mut base: Bitfield,
    ) -> Result<Bitfield, StoreError> {
        let (first, last) = (chunk_key(id, file, 0), chunk_key(id, file, u64::MAX));
        for row in chunk_leaves
            .range::<&ChunkKey>(&first..=&last)
            .map_err(|e| self.db("read chunk leaves", e))?
        {
            let (key, _) = row.map_err(|e| self.db("read chunk leaves", e))?;
            let mut index = [0u8; 8];
            index.copy_from_slice(&key.value()[36..]);
            let chunk = u64::from_be_bytes(index);
            if chunk >= base.len() {
                return Err(StoreError::Corrupt {
                    table: CHUNK_LEAVES_NAME,
                    key: chunk_key_name(id, file, chunk),
                    reason: format!("a chunk past the end of a file of {} chunks", base.len()),
                });
            }
            base.set(chunk, true);
        }
        Ok(base)
    }
}

/// The number of bits of a stored bitfield, read from its first bytes alone (postcard writes
/// the bit count first, as a varint), so a commit learns a file's chunk count without copying
/// its bitfield.
pub(super) fn stored_bit_len(id: &ManifestId, file: u32, bytes: &[u8]) -> Result<u64, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        table: BITFIELDS_NAME,
        key: file_key_name(id, file),
        reason: reason.to_owned(),
    };
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        let part = u64::from(byte & 0x7f);
        if i == MAX_VARINT_BYTES - 1 && part > 1 {
            return Err(corrupt("its bit count overflows 64 bits"));
        }
        value |= part << (7 * i);
        if byte & 0x80 == 0 {
            if value > MAX_STORED_CHUNKS_PER_FILE {
                return Err(corrupt(&format!("a bitfield of {value} bits")));
            }
            return Ok(value);
        }
    }
    Err(corrupt("its bit count is cut short"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use licet_proto::{
        MerkleHash, Timestamp, encoding,
        manifest::{MIN_CHUNK_SIZE, VerifiedManifest},
        merkle::AuditPath,
    };
    use tempfile::TempDir;

    use super::*;
    use crate::{
        store::{
            CommittedChunk, ContentOrigin, ContentRecord, FileState, RecordState,
            schema::{BITFIELDS, CHUNK_LEAVES, file_key},
        },
        test_support,
    };

    /// Chunks in the test file: a 16 KiB-chunk file of 64 MiB, whose bitfield is 512 bytes.
    const CHUNKS: u64 = 4096;

    fn download(dir: &TempDir, chunks: u64) -> (Store, VerifiedManifest) {
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let size = chunks * u64::from(MIN_CHUNK_SIZE);
        let manifest = test_support::manifest_body("held", &[size])
            .sign(&test_support::publisher(), None)
            .unwrap();
        let record = ContentRecord {
            dir: PathBuf::from("/srv/held"),
            origin: ContentOrigin::Downloaded,
            state: RecordState::Downloading,
            error: None,
            added_at: Timestamp(1_700_000_100),
            file_stamps: vec![],
        };
        let state = FileState {
            bitfield: Bitfield::new(chunks),
            leaves: None,
        };
        store.content_put(&manifest, &record, &[state]).unwrap();
        (store, manifest)
    }

    fn committed(chunk: u64) -> CommittedChunk {
        CommittedChunk {
            file: 0,
            chunk,
            proof: AuditPath(vec![MerkleHash([3; 32]); 12]),
            leaf: leaf(chunk),
        }
    }

    fn leaf(chunk: u64) -> MerkleHash {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&chunk.to_le_bytes());
        MerkleHash(hash)
    }

    /// The `bitfields` row of file 0, as stored.
    fn base_row(store: &Store, id: &ManifestId) -> Vec<u8> {
        let txn = store.read().unwrap();
        let table = store.open_read(&txn, BITFIELDS).unwrap();
        table
            .get(&file_key(id, 0))
            .unwrap()
            .unwrap()
            .value()
            .to_vec()
    }

    /// Regression (issue 20, item 6): a commit of a batch of chunks rewrote the whole bitfield
    /// of their file, so a download wrote O(chunks²) bytes. A commit now writes its own chunks'
    /// rows only: the stored base is the same bytes after thousands of commits, while the held
    /// set read back grows with every one.
    #[test]
    fn a_commit_writes_its_chunks_rows_not_the_files_bitfield() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = download(&dir, CHUNKS);
        let id = m.id();
        let before = base_row(&store, &id);
        let mut expected = Bitfield::new(CHUNKS);
        // Batches of 8, out of order, as rarest-first delivers them.
        let order: Vec<u64> = (0..CHUNKS).map(|i| (i * 1031) % CHUNKS).collect();
        for batch in order.chunks(8).take(64) {
            let chunks: Vec<CommittedChunk> = batch.iter().map(|&c| committed(c)).collect();
            store.commit_chunks(&id, &chunks).unwrap();
            for &c in batch {
                expected.set(c, true);
            }
            assert_eq!(
                base_row(&store, &id),
                before,
                "a commit rewrote the file's bitfield row"
            );
        }
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), expected);
        // What is read back after a restart is what was committed.
        drop(store);
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), expected);
        for &c in &order[..64 * 8] {
            assert_eq!(store.proof(&id, 0, c).unwrap(), Some(committed(c).proof));
        }
    }

    /// A file backend that counts the bytes redb writes through it.
    #[derive(Debug)]
    struct CountingBackend {
        file: redb::backends::FileBackend,
        written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl redb::StorageBackend for CountingBackend {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.file.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.written
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::SeqCst);
            self.file.write(offset, data)
        }
    }

    /// The store at `path` (made by `Store::open`), opened through a [`CountingBackend`]; the
    /// counter it adds to.
    fn counting_store(
        path: &std::path::Path,
    ) -> (Store, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let written = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let backend = CountingBackend {
            file: redb::backends::FileBackend::new(file).unwrap(),
            written: written.clone(),
        };
        let db = redb::Builder::new().create_with_backend(backend).unwrap();
        let store = Store {
            db: super::super::reopening_db::ReopeningDb::new(
                path,
                db,
                Box::new(|| Err("not reopened in this test".to_owned())),
                std::time::Duration::from_secs(3600),
            ),
            path: path.to_owned(),
        };
        (store, written)
    }

    /// Regression (issue 13: "every batch of 8 chunks reads and rewrites the file's whole
    /// bitfield"): the bytes a commit of 8 chunks writes to the file do not grow with the
    /// file's chunk count. A file of 4,194,304 chunks (a 512 KiB bitfield) costs a commit what
    /// one of 4,096 chunks (512 bytes) costs, within a few pages, and far less than its
    /// bitfield.
    #[test]
    fn the_bytes_a_commit_writes_do_not_grow_with_the_files_chunk_count() {
        const SMALL: u64 = 1 << 12;
        const LARGE: u64 = 1 << 22;
        const COMMITS: u64 = 8;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let (small, large) = {
            let (store, small) = download(&dir, SMALL);
            let size = LARGE * u64::from(MIN_CHUNK_SIZE);
            let large = test_support::manifest_body("large", &[size])
                .sign(&test_support::publisher(), None)
                .unwrap();
            let state = FileState {
                bitfield: Bitfield::new(LARGE),
                leaves: None,
            };
            let record = store.content_get(&small.id()).unwrap().unwrap().1;
            store.content_put(&large, &record, &[state]).unwrap();
            (small, large)
        };
        let (store, written) = counting_store(&path);
        // Bytes written per commit, averaged over COMMITS batches of 8 chunks spread over the
        // file, after one batch that settles the tables' first pages.
        let per_commit = |id: &ManifestId, chunks: u64| {
            let batch = |n: u64| -> Vec<CommittedChunk> {
                (0..8)
                    .map(|i| committed((n * 8 + i) * (chunks / 128) % chunks))
                    .collect()
            };
            store.commit_chunks(id, &batch(0)).unwrap();
            let before = written.load(std::sync::atomic::Ordering::SeqCst);
            for n in 1..=COMMITS {
                store.commit_chunks(id, &batch(n)).unwrap();
            }
            (written.load(std::sync::atomic::Ordering::SeqCst) - before) / COMMITS
        };
        let small_cost = per_commit(&small.id(), SMALL);
        let large_cost = per_commit(&large.id(), LARGE);
        let large_bitfield = LARGE / 8;
        assert!(
            large_cost < large_bitfield / 4,
            "a commit into a file of {LARGE} chunks wrote {large_cost} bytes, a sizeable part of its {large_bitfield}-byte bitfield"
        );
        assert!(
            large_cost <= 2 * small_cost + 16 * 1024,
            "a commit wrote {large_cost} bytes into a file of {LARGE} chunks, {small_cost} into one of {SMALL}"
        );
        // The commits counted are the commits made: every chunk of every batch is held.
        for (id, _) in [(small.id(), SMALL), (large.id(), LARGE)] {
            let held = store.bitfield(&id, 0).unwrap().unwrap().count_ones();
            assert_eq!(held, 8 * (COMMITS + 1));
        }
    }

    /// Completing a file folds the held chunks into the base before their leaf rows go, and a
    /// re-check that clears bits clears them from the union.
    #[test]
    fn complete_and_replace_fold_the_union_into_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = download(&dir, 20);
        let id = m.id();
        let all: Vec<CommittedChunk> = (0..20).map(committed).collect();
        store.commit_chunks(&id, &all[..12]).unwrap();
        // A re-check that finds chunk 3 gone: the union loses bit 3 and nothing else.
        let mut held = store.bitfield(&id, 0).unwrap().unwrap();
        held.set(3, false);
        store.replace_bitfield(&id, 0, &held).unwrap();
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), held);
        assert_eq!(store.proof(&id, 0, 3).unwrap(), None);
        assert_eq!(store.proof(&id, 0, 4).unwrap(), Some(all[4].proof.clone()));
        store.commit_chunks(&id, &all[3..4]).unwrap();
        store.commit_chunks(&id, &all[12..]).unwrap();
        let leaves: Vec<MerkleHash> = (0..20).map(leaf).collect();
        assert_eq!(
            store.chunk_leaves(&id, 0, 20).unwrap().as_deref(),
            Some(&leaves[..])
        );
        store.complete_file(&id, 0, &leaves).unwrap();
        // The leaf rows are gone and the base alone holds every bit.
        let mut full = Bitfield::new(20);
        (0..20).for_each(|c| full.set(c, true));
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), full);
        let base: Bitfield = encoding::decode("base", &base_row(&store, &id), 1024).unwrap();
        assert_eq!(base, full);
        assert_eq!(store.chunk_leaves(&id, 0, 20).unwrap(), None);
        // A chunk fetched again for a complete file whose bit was cleared is set in the base.
        let mut gone = full.clone();
        gone.set(7, false);
        store.replace_bitfield(&id, 0, &gone).unwrap();
        store.commit_chunks(&id, &all[7..8]).unwrap();
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), full);
    }

    /// A file written before the union: its base holds every held bit, and leaf rows exist
    /// for some of them (chunks committed before `chunk_leaves` existed have none). It reads
    /// unchanged, and a download resumed on it completes.
    #[test]
    fn a_file_of_the_old_layout_loads_unchanged_and_completes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = download(&dir, 10);
        let id = m.id();
        let mut old = Bitfield::new(10);
        for c in [0, 1, 2, 5, 9] {
            old.set(c, true);
        }
        {
            // What the previous build left: the whole bitfield in the row, leaf rows for 1, 5.
            let txn = store.write().unwrap();
            {
                let mut bitfields = store.open_write(&txn, BITFIELDS).unwrap();
                bitfields
                    .insert(&file_key(&id, 0), encoding::encode(&old).as_slice())
                    .unwrap();
                let mut rows = store.open_write(&txn, CHUNK_LEAVES).unwrap();
                for c in [1, 5] {
                    rows.insert(&chunk_key(&id, 0, c), leaf(c).0.as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        drop(store);
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), old);
        let rest: Vec<CommittedChunk> = [3, 4, 6, 7, 8].into_iter().map(committed).collect();
        store.commit_chunks(&id, &rest).unwrap();
        let mut full = Bitfield::new(10);
        (0..10).for_each(|c| full.set(c, true));
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), full);
        // Chunks 0, 2 and 9 have no leaf row: their file is hashed again, as before.
        assert_eq!(store.chunk_leaves(&id, 0, 10).unwrap(), None);
        let leaves: Vec<MerkleHash> = (0..10).map(leaf).collect();
        store.complete_file(&id, 0, &leaves).unwrap();
        assert_eq!(store.bitfield(&id, 0).unwrap().unwrap(), full);
    }

    /// A leaf row past the end of its file is damage, named.
    #[test]
    fn a_leaf_row_past_the_end_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = download(&dir, 4);
        let id = m.id();
        let txn = store.write().unwrap();
        {
            let mut rows = store.open_write(&txn, CHUNK_LEAVES).unwrap();
            rows.insert(&chunk_key(&id, 0, 4), leaf(4).0.as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let err = store.bitfield(&id, 0).unwrap_err().to_string();
        assert!(
            err.contains("chunk_leaves") && err.contains("chunk 4"),
            "{err}"
        );
    }

    #[test]
    fn stored_bit_len_reads_the_prefix_of_every_length() {
        let id = ManifestId([7; 32]);
        for len in [0, 1, 7, 8, 127, 128, 129, 16_383, 16_384, 262_144, 1 << 26] {
            let bytes = encoding::encode(&Bitfield::new(len));
            assert_eq!(stored_bit_len(&id, 0, &bytes).unwrap(), len, "{len} bits");
        }
        let too_long = encoding::encode(&((1u64 << 26) + 1));
        assert!(matches!(
            stored_bit_len(&id, 3, &too_long),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(stored_bit_len(&id, 3, &[]).is_err());
        assert!(stored_bit_len(&id, 3, &[0x80, 0x80]).is_err());
        assert!(stored_bit_len(&id, 3, &[0xff; 11]).is_err());
    }
}
