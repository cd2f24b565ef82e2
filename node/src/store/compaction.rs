//! Giving the space of deleted rows back to the file system.
//!
//! redb reuses the pages of deleted rows but never shrinks its file by itself. A download
//! stores an audit path and a leaf hash per chunk until its file is complete (about 600 bytes
//! per chunk: 150 MiB for a 4 GiB file in 16 KiB chunks), then drops them; without compaction
//! `state.redb` keeps that size for good. [`Store::compact`] runs redb's compaction, which
//! needs the database to itself: no transaction open, none beginning.
//!
//! # Invariants
//!
//! 1. **Compaction never waits for, nor blocks behind, a transaction.** It takes the database
//!    alone only when that is free at once (`ReopeningDb::try_exclusive`: every transaction
//!    begins under a shared lock, held only while it begins), and redb refuses to compact while
//!    a transaction is open. Either way it
//!    lets go and tries again, up to [`COMPACT_ATTEMPTS`] times, then gives up: the space is
//!    only reused, not returned, until the next compaction. Readers and writers wait at most for
//!    one compaction.
//! 2. **A crash during compaction loses nothing.** redb compacts in committed steps (two-phase
//!    commit), so the file is a consistent database at every instant.

use std::{thread, time::Duration};

use redb::CompactionError;

use super::{Store, StoreError};

/// Tries before [`Store::compact`] gives up because the database is in use.
pub const COMPACT_ATTEMPTS: u32 = 50;
/// Least free space in the file (bytes of it that no page in use holds) worth a compaction:
/// below this, moving pages would cost more than the space is worth.
pub const MIN_RECLAIM_BYTES: u64 = 4 * 1024 * 1024;
/// Pause between two tries.
const COMPACT_RETRY: Duration = Duration::from_millis(20);

/// What [`Store::compact`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compaction {
    /// The file was compacted.
    Done {
        /// Its size before, in bytes.
        before: u64,
        /// Its size after, in bytes.
        after: u64,
    },
    /// Less than [`MIN_RECLAIM_BYTES`] was free: nothing done.
    NotWorthIt {
        /// The free bytes found.
        free: u64,
    },
    /// The database stayed in use for all [`COMPACT_ATTEMPTS`] tries: nothing done, nothing
    /// lost; the space is reused by later writes.
    Busy,
}

impl Store {
    /// Compacts the state file: moves its pages to the front and shrinks it, giving the space of
    /// deleted rows (a completed download's proofs) back to the file system. Blocks for as long
    /// as that takes (milliseconds for a small state; about a minute for a 500 MiB file after a
    /// 4 GiB download in 16 KiB chunks, during which the file grew to about twice its size) and
    /// meanwhile every other call waits.
    ///
    /// Does nothing when less than [`MIN_RECLAIM_BYTES`] is free, or when the database stays in
    /// use (see [`Compaction`]).
    pub fn compact(&self) -> Result<Compaction, StoreError> {
        let size = || {
            std::fs::metadata(&self.path)
                .map(|m| m.len())
                .map_err(|e| self.db("read the file's size", redb::StorageError::Io(e)))
        };
        let before = size()?;
        let in_use = {
            let txn = self.write()?;
            let stats = txn.stats().map_err(|e| self.db("read stats", e))?;
            txn.abort().map_err(|e| self.db("abort", e))?;
            stats.allocated_pages() * stats.page_size() as u64
        };
        let free = before.saturating_sub(in_use);
        if free < MIN_RECLAIM_BYTES {
            return Ok(Compaction::NotWorthIt { free });
        }
        for _ in 0..COMPACT_ATTEMPTS {
            match self.db.try_exclusive(|db| db.compact()) {
                Some(Ok(Ok(_))) => {
                    let after = size()?;
                    return Ok(Compaction::Done { before, after });
                }
                // A transaction is open or beginning: try again shortly.
                None | Some(Ok(Err(CompactionError::TransactionInProgress))) => {}
                Some(Ok(Err(e))) => return Err(self.db("compact", e)),
                Some(Err(closed)) => return Err(closed.into()),
            }
            thread::sleep(COMPACT_RETRY);
        }
        Ok(Compaction::Busy)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use licet_proto::{
        MerkleHash, Timestamp,
        manifest::MIN_CHUNK_SIZE,
        merkle::{AuditPath, MerkleTree},
        wire::Bitfield,
    };

    use super::*;
    use crate::{
        store::{CommittedChunk, ContentOrigin, ContentRecord, FileState, RecordState},
        test_support,
    };

    /// Regression (issue 20, item 6): a download's per-chunk proofs were deleted when its file
    /// completed, but the file kept their space for good. After a compaction the state file is
    /// a fraction of its size at the end of the download, and everything in it reads back.
    #[test]
    fn compaction_returns_the_space_of_a_completed_downloads_proofs() {
        const CHUNKS: u64 = 8192;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let store = Store::open(&path).unwrap();
        let manifest =
            test_support::manifest_body("compact", &[CHUNKS * u64::from(MIN_CHUNK_SIZE)])
                .sign(&test_support::publisher(), None)
                .unwrap();
        let id = manifest.id();
        let record = ContentRecord {
            dir: PathBuf::from("/srv/compact"),
            origin: ContentOrigin::Downloaded,
            state: RecordState::Downloading,
            error: None,
            added_at: Timestamp(1_700_000_100),
            file_stamps: vec![],
        };
        let state = FileState {
            bitfield: Bitfield::new(CHUNKS),
            leaves: None,
        };
        store.content_put(&manifest, &record, &[state]).unwrap();
        let leaves: Vec<MerkleHash> = (0..CHUNKS).map(leaf).collect();
        let tree = MerkleTree::from_leaves(leaves.clone());
        let all: Vec<u64> = (0..CHUNKS).collect();
        for batch in all.chunks(8) {
            let chunks: Vec<CommittedChunk> = batch
                .iter()
                .map(|&c| CommittedChunk {
                    file: 0,
                    chunk: c,
                    proof: tree.audit_path(c).unwrap_or(AuditPath(vec![])),
                    leaf: leaves[c as usize],
                })
                .collect();
            store.commit_chunks(&id, &chunks).unwrap();
        }
        store.complete_file(&id, 0, &leaves).unwrap();
        let Compaction::Done { before, after } = store.compact().unwrap() else {
            panic!("not compacted");
        };
        assert!(
            after * 4 < before,
            "the state file went from {before} to {after} bytes"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), after);
        // Nothing more to gain the second time.
        assert!(matches!(
            store.compact().unwrap(),
            Compaction::NotWorthIt { .. }
        ));
        assert_eq!(store.leaves(&id, 0).unwrap(), Some(leaves.clone()));
        // And it keeps working: written, reopened, read.
        store.content_set_record(&id, &record).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.leaves(&id, 0).unwrap(), Some(leaves));
    }

    /// A compaction while a read transaction is open does not wait for it: it tries again and
    /// gives up, and the store goes on.
    #[test]
    fn compaction_gives_up_while_a_transaction_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        // Free space to compact: a value written and deleted.
        let big = vec![7u8; 2 * MIN_RECLAIM_BYTES as usize];
        let txn = store.write().unwrap();
        txn.open_table(crate::store::schema::MIRRORS)
            .unwrap()
            .insert(&[1; 32], big.as_slice())
            .unwrap();
        txn.commit().unwrap();
        let txn = store.write().unwrap();
        txn.open_table(crate::store::schema::MIRRORS)
            .unwrap()
            .remove(&[1; 32])
            .unwrap();
        txn.commit().unwrap();
        let reading = store.read().unwrap();
        assert_eq!(store.compact().unwrap(), Compaction::Busy);
        drop(reading);
        assert!(matches!(store.compact().unwrap(), Compaction::Done { .. }));
        assert!(store.trust_list().unwrap().is_empty());
    }

    fn leaf(c: u64) -> MerkleHash {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&c.to_le_bytes());
        hash[8..16].copy_from_slice(&c.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        MerkleHash(hash)
    }
}
