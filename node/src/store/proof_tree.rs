//! Audit paths of a complete file's chunks from memory that does not grow with the file.
//!
//! A seeder used to keep every complete file's whole merkle tree in memory: 64 bytes per chunk
//! (16 MiB for a 4 GiB file in 16 KiB chunks, 4 GiB at the largest file the store keeps). A
//! [`ProofTree`] keeps only the levels above the file's stored leaf blocks (the store's
//! `leaf_blocks`, [`LEAVES_PER_BLOCK`] leaves each, aligned, so each block is one subtree of the
//! file's tree): a 1,024th of the tree, at most 4 MiB at the store's largest file. The audit
//! path of a chunk is the path inside its block's subtree, rebuilt from the block's stored
//! leaves, followed by the path of the block's root in the upper tree. The subtrees of the
//! [`CACHED_BLOCKS`] blocks used last are kept (64 KiB each), so a downloader asking for runs of
//! neighbouring chunks costs one block read per 1,024 chunks.
//!
//! # Invariants
//!
//! 1. **The same paths as the whole tree.** RFC 6962's tree, built level by level with an odd
//!    last node promoted, has every aligned block of 2^k leaves as a subtree, so the path
//!    inside the block followed by the path of its root in the tree over the blocks' roots is
//!    exactly `MerkleTree::audit_path` (tested for edge sizes).
//! 2. **A stored block is checked before use.** Its subtree's root must be the root kept in the
//!    upper tree for it; a block that is missing or differs is an error naming the file and the
//!    block, never a wrong proof (and a seeder verifies each chunk against its proof before
//!    sending it anyway).
//! 3. **Bounded.** Memory per tree: the upper levels (64 bytes per block) and at most
//!    [`CACHED_BLOCKS`] subtrees.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use licet_proto::{
    ManifestId, MerkleHash,
    merkle::{AuditPath, MerkleTree},
};

use crate::store::{LEAVES_PER_BLOCK, Store, StoreError};

/// Block subtrees kept per tree: 8 × 64 KiB. Enough for a few downloaders each reading its own
/// run of chunks.
pub const CACHED_BLOCKS: usize = 8;

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofTreeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has no such block (the file is not complete in the store yet).
    #[error("no stored leaf block {block} of file {file} of content {id}")]
    MissingBlock {
        /// The manifest id.
        id: ManifestId,
        /// The file index.
        file: u32,
        /// The block index.
        block: u64,
    },
    /// The stored block does not hash to the root kept for it: the store was damaged.
    #[error(
        "the stored leaf block {block} of file {file} of content {id} does not hash to its subtree's root"
    )]
    BlockMismatch {
        /// The manifest id.
        id: ManifestId,
        /// The file index.
        file: u32,
        /// The block index.
        block: u64,
    },
}

/// The upper levels of one complete file's merkle tree and a few recent block subtrees. See the
/// module docs.
#[derive(Debug)]
pub struct ProofTree {
    id: ManifestId,
    file: u32,
    leaf_count: u64,
    /// The tree over the roots of the file's blocks.
    upper: MerkleTree,
    /// Recently used block subtrees, the most recent last.
    cache: Mutex<VecDeque<(u64, Arc<MerkleTree>)>>,
}

impl ProofTree {
    /// The proof tree of file `file` of `id` whose leaves are `leaves` (an empty list is the
    /// single leaf of an empty file, as in [`MerkleTree::from_leaves`]). Hashes the whole tree
    /// once; keeps its upper levels.
    pub fn new(id: ManifestId, file: u32, leaves: &[MerkleHash]) -> ProofTree {
        let leaf_count = leaves.len().max(1) as u64;
        let roots: Vec<MerkleHash> = if leaves.is_empty() {
            vec![MerkleTree::from_leaves(vec![]).root()]
        } else {
            leaves
                .chunks(LEAVES_PER_BLOCK as usize)
                .map(|block| MerkleTree::from_leaves(block.to_vec()).root())
                .collect()
        };
        ProofTree {
            id,
            file,
            leaf_count,
            upper: MerkleTree::from_leaves(roots),
            cache: Mutex::new(VecDeque::with_capacity(CACHED_BLOCKS)),
        }
    }

    /// The file's merkle root.
    pub fn root(&self) -> MerkleHash {
        self.upper.root()
    }

    /// The number of leaves (chunks).
    pub fn leaf_count(&self) -> u64 {
        self.leaf_count
    }

    /// The audit path of chunk `index` if its block's subtree is cached (no I/O); `None` if it
    /// is not, or there is no such chunk.
    pub fn cached_audit_path(&self, index: u64) -> Option<AuditPath> {
        if index >= self.leaf_count {
            return None;
        }
        let block = index / LEAVES_PER_BLOCK;
        let subtree = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let at = cache.iter().position(|(b, _)| *b == block)?;
            let entry = cache.remove(at)?;
            let subtree = entry.1.clone();
            cache.push_back(entry);
            subtree
        };
        self.join(index, &subtree)
    }

    /// The audit path of chunk `index` (`None` if there is no such chunk), reading its block
    /// from `store` when it is not cached. **Blocks** on the store.
    pub fn audit_path(
        &self,
        store: &Store,
        index: u64,
    ) -> Result<Option<AuditPath>, ProofTreeError> {
        if index >= self.leaf_count {
            return Ok(None);
        }
        if let Some(path) = self.cached_audit_path(index) {
            return Ok(Some(path));
        }
        let block = index / LEAVES_PER_BLOCK;
        let (id, file) = (self.id, self.file);
        let leaves = store
            .leaf_block(&id, file, block)?
            .ok_or(ProofTreeError::MissingBlock { id, file, block })?;
        let subtree = Arc::new(MerkleTree::from_leaves(leaves));
        if self.upper.leaves().get(block as usize) != Some(&subtree.root()) {
            return Err(ProofTreeError::BlockMismatch { id, file, block });
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if !cache.iter().any(|(b, _)| *b == block) {
                if cache.len() >= CACHED_BLOCKS {
                    cache.pop_front();
                }
                cache.push_back((block, subtree.clone()));
            }
        }
        Ok(self.join(index, &subtree))
    }

    /// The path inside the block's subtree, then the block root's path in the upper tree.
    fn join(&self, index: u64, subtree: &MerkleTree) -> Option<AuditPath> {
        let mut path = subtree.audit_path(index % LEAVES_PER_BLOCK)?.0;
        path.extend(self.upper.audit_path(index / LEAVES_PER_BLOCK)?.0);
        Some(AuditPath(path))
    }

    /// How many block subtrees are cached now.
    #[cfg(test)]
    fn cached_blocks(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::merkle::{leaf_hash, verify_leaf};

    use super::*;
    use crate::test_support;

    fn leaves(n: u64) -> Vec<MerkleHash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    /// A store holding one complete file of 16 KiB chunks with `leaves`.
    fn stored(leaves: &[MerkleHash]) -> (tempfile::TempDir, Store, ManifestId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let id = test_support::put_complete_file(&store, leaves).id();
        (dir, store, id)
    }

    /// Every audit path equals the whole tree's, at sizes around the block size and the powers
    /// of two, and verifies against the root.
    #[test]
    fn paths_equal_the_whole_trees_at_edge_sizes() {
        let b = LEAVES_PER_BLOCK;
        for n in [
            1,
            2,
            3,
            5,
            8,
            9,
            b - 1,
            b,
            b + 1,
            2 * b - 1,
            2 * b,
            2 * b + 1,
            3 * b + 7,
        ] {
            let all = leaves(n);
            let whole = MerkleTree::from_leaves(all.clone());
            let (_dir, store, id) = stored(&all);
            let tree = ProofTree::new(id, 0, &all);
            assert_eq!(tree.root(), whole.root(), "{n} leaves");
            assert_eq!(tree.leaf_count(), n);
            let step = if n > 64 { 7 } else { 1 };
            for i in (0..n).step_by(step).chain([n - 1]) {
                let path = tree.audit_path(&store, i).unwrap();
                assert_eq!(path, whole.audit_path(i), "leaf {i} of {n}");
                let path = path.unwrap();
                assert!(verify_leaf(&whole.root(), i, n, all[i as usize], &path));
            }
            assert_eq!(tree.audit_path(&store, n).unwrap(), None);
        }
    }

    /// The empty file's single leaf.
    #[test]
    fn an_empty_file_has_the_whole_trees_root_and_an_empty_path() {
        let whole = MerkleTree::from_leaves(vec![]);
        let tree = ProofTree::new(ManifestId([0; 32]), 0, &[]);
        assert_eq!(tree.root(), whole.root());
        assert_eq!(tree.leaf_count(), 1);
    }

    /// Regression (issue 20, item 6): the seeder kept each complete file's whole tree. The
    /// proof tree keeps the upper levels (2 hashes per block) and at most `CACHED_BLOCKS`
    /// subtrees, however many blocks are asked for.
    #[test]
    fn memory_stays_bounded_whatever_is_asked() {
        let b = LEAVES_PER_BLOCK;
        let n = 40 * b + 3;
        let all = leaves(n);
        let (_dir, store, id) = stored(&all);
        let tree = ProofTree::new(id, 0, &all);
        assert!(tree.upper.leaf_count() <= n.div_ceil(b));
        for i in (0..n).step_by(b as usize / 2) {
            assert!(tree.audit_path(&store, i).unwrap().is_some());
            assert!(tree.cached_blocks() <= CACHED_BLOCKS);
        }
        assert_eq!(tree.cached_blocks(), CACHED_BLOCKS);
        // The block used last is cached: no store needed for its neighbours.
        assert!(tree.cached_audit_path(n - 1).is_some());
        assert!(tree.cached_audit_path(0).is_none());
    }

    /// A block that is not what the tree was built from is refused, not used.
    #[test]
    fn a_block_that_does_not_match_is_an_error() {
        let n = 2 * LEAVES_PER_BLOCK;
        let all = leaves(n);
        let (_dir, store, id) = stored(&all);
        let mut other = all.clone();
        other[LEAVES_PER_BLOCK as usize + 5] = leaf_hash(b"other");
        let tree = ProofTree::new(id, 0, &other);
        assert!(tree.audit_path(&store, 3).unwrap().is_some());
        let err = tree.audit_path(&store, LEAVES_PER_BLOCK).unwrap_err();
        assert!(
            matches!(err, ProofTreeError::BlockMismatch { block: 1, .. }),
            "{err}"
        );
        let missing = ProofTree::new(ManifestId([9; 32]), 0, &all);
        assert!(matches!(
            missing.audit_path(&store, 0).unwrap_err(),
            ProofTreeError::MissingBlock { .. }
        ));
    }
}
