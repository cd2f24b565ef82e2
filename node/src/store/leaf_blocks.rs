//! A complete file's leaf hashes in blocks, so that a proof needs one block, not the file's
//! whole leaf list.
//!
//! The `leaves` table keeps a complete file's leaf list as one value (8 MiB for a 4 GiB file in
//! 16 KiB chunks, 2 GiB at the largest file the store keeps), which redb reads whole. The
//! `leaf_blocks` table keeps the same hashes in blocks of [`LEAVES_PER_BLOCK`] (key: id ‖ file
//! ‖ block `u64` BE; value: the block's leaves, 32 bytes each), one block per aligned subtree of
//! the file's merkle tree, so a seeder computes the audit path of any chunk from one block and
//! the few upper levels it keeps in memory (`proof_tree.rs`).
//!
//! # Invariants
//!
//! 1. **The blocks are the leaf list, cut.** They are written in the transaction that writes a
//!    file's `leaves` row ([`Store::content_put`], [`Store::complete_file`]) and removed with
//!    it; block *b* holds leaves `[b·L, min((b+1)·L, n))` (L = [`LEAVES_PER_BLOCK`]).
//! 2. **Files written before** have a `leaves` row and no blocks: [`Store::open`] cuts their
//!    blocks once, in one transaction per file (`fill_leaf_blocks`); a leaf list that does not
//!    decode is left for its reader to report.
//! 3. **Bounded reads.** A block is at most `32 · L` bytes; a longer value, or one that is not
//!    a whole number of hashes, is damage ([`StoreError::Corrupt`]).

use licet_proto::{ManifestId, MerkleHash};
use redb::{ReadableTable, Table};

use super::{
    Store, StoreError,
    schema::{
        ChunkKey, FileKey, LEAF_BLOCKS, LEAF_BLOCKS_NAME, LEAVES, LEAVES_NAME, MAX_LEAVES_BYTES,
        chunk_key, chunk_key_name, decode_value, file_key_name,
    },
};

/// Leaves per stored block: a subtree of 2^10 chunks (32 KiB of hashes). A seeder recomputes a
/// block's subtree (1,023 hashes) when it is not cached; the upper levels above the blocks, a
/// 1,024th of the tree, stay in memory.
pub const LEAVES_PER_BLOCK: u64 = 1 << 10;

impl Store {
    /// The leaves of block `block` of file `file` (`None` if the file has no stored blocks or
    /// no such block).
    pub fn leaf_block(
        &self,
        id: &ManifestId,
        file: u32,
        block: u64,
    ) -> Result<Option<Vec<MerkleHash>>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, LEAF_BLOCKS)?;
        let Some(value) = table
            .get(&chunk_key(id, file, block))
            .map_err(|e| self.db("read leaf block", e))?
        else {
            return Ok(None);
        };
        let bytes = value.value();
        if bytes.is_empty() || bytes.len() % 32 != 0 || bytes.len() as u64 > 32 * LEAVES_PER_BLOCK {
            return Err(StoreError::Corrupt {
                table: LEAF_BLOCKS_NAME,
                key: chunk_key_name(id, file, block),
                reason: format!("{} bytes, not a block of leaf hashes", bytes.len()),
            });
        }
        Ok(Some(
            bytes
                .chunks_exact(32)
                .map(|hash| {
                    let mut leaf = [0u8; 32];
                    leaf.copy_from_slice(hash);
                    MerkleHash(leaf)
                })
                .collect(),
        ))
    }

    /// Cuts the blocks of every complete file stored without them (files written before
    /// `leaf_blocks` existed), one transaction per file.
    pub(super) fn fill_leaf_blocks(&self) -> Result<(), StoreError> {
        let missing: Vec<FileKey> = {
            let txn = self.read()?;
            let leaves = self.open_read(&txn, LEAVES)?;
            let blocks = self.open_read(&txn, LEAF_BLOCKS)?;
            let mut missing = Vec::new();
            for row in leaves.iter().map_err(|e| self.db("read leaves", e))? {
                let (key, _) = row.map_err(|e| self.db("read leaves", e))?;
                let key: FileKey = *key.value();
                let mut first: ChunkKey = [0; 44];
                first[..36].copy_from_slice(&key);
                if blocks
                    .get(&first)
                    .map_err(|e| self.db("read leaf block", e))?
                    .is_none()
                {
                    missing.push(key);
                }
            }
            missing
        };
        for key in missing {
            let mut id = [0u8; 32];
            id.copy_from_slice(&key[..32]);
            let id = ManifestId(id);
            let mut file = [0u8; 4];
            file.copy_from_slice(&key[32..]);
            let file = u32::from_be_bytes(file);
            let txn = self.write()?;
            {
                let leaves = self.open_write(&txn, LEAVES)?;
                let decoded = leaves
                    .get(&key)
                    .map_err(|e| self.db("read leaves", e))?
                    .map(|value| {
                        decode_value::<Vec<MerkleHash>>(
                            LEAVES_NAME,
                            || file_key_name(&id, file),
                            value.value(),
                            MAX_LEAVES_BYTES,
                        )
                    });
                // A damaged list is left as it is: reading it says so, naming it.
                let Some(Ok(hashes)) = decoded else { continue };
                let mut blocks = self.open_write(&txn, LEAF_BLOCKS)?;
                self.put_leaf_blocks(&mut blocks, &id, file, &hashes)?;
            }
            self.commit(txn)?;
        }
        Ok(())
    }

    /// Writes the blocks of `leaves` for file `file` (in the caller's transaction).
    pub(super) fn put_leaf_blocks(
        &self,
        blocks: &mut Table<&'static ChunkKey, &'static [u8]>,
        id: &ManifestId,
        file: u32,
        leaves: &[MerkleHash],
    ) -> Result<(), StoreError> {
        let mut bytes = Vec::with_capacity(32 * LEAVES_PER_BLOCK as usize);
        for (block, hashes) in leaves.chunks(LEAVES_PER_BLOCK as usize).enumerate() {
            bytes.clear();
            hashes.iter().for_each(|h| bytes.extend_from_slice(&h.0));
            blocks
                .insert(&chunk_key(id, file, block as u64), bytes.as_slice())
                .map_err(|e| self.db("write leaf block", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::merkle::leaf_hash;

    use super::*;
    use crate::test_support;

    /// A file completed before `leaf_blocks` existed (its leaf list only) gets its blocks when
    /// the store is opened; they are its leaves, cut, and removing the item removes them.
    #[test]
    fn a_file_of_the_old_layout_gets_its_blocks_at_open() {
        let n = 2 * LEAVES_PER_BLOCK + 5;
        let leaves: Vec<MerkleHash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let id;
        {
            let store = Store::open(&path).unwrap();
            id = test_support::put_complete_file(&store, &leaves).id();
            assert!(store.leaf_block(&id, 0, 2).unwrap().is_some());
            // What an older build left: no blocks.
            let txn = store.write().unwrap();
            txn.open_table(LEAF_BLOCKS)
                .unwrap()
                .retain(|_, _| false)
                .unwrap();
            txn.commit().unwrap();
            assert_eq!(store.leaf_block(&id, 0, 0).unwrap(), None);
        }
        let store = Store::open(&path).unwrap();
        let block = LEAVES_PER_BLOCK as usize;
        assert_eq!(
            store.leaf_block(&id, 0, 0).unwrap().unwrap(),
            leaves[..block]
        );
        assert_eq!(
            store.leaf_block(&id, 0, 1).unwrap().unwrap(),
            leaves[block..2 * block]
        );
        assert_eq!(
            store.leaf_block(&id, 0, 2).unwrap().unwrap(),
            leaves[2 * block..]
        );
        assert_eq!(store.leaf_block(&id, 0, 3).unwrap(), None);
        assert!(store.content_remove(&id).unwrap());
        assert_eq!(store.leaf_block(&id, 0, 0).unwrap(), None);
    }
}
