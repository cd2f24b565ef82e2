//! Per-file chunk state: which chunks are held (`held_chunks`), their proofs and leaves while
//! the file downloads, and its leaf list once complete (invariants 4 and 5 of the module docs).

use std::collections::{BTreeMap, btree_map::Entry};

use licet_proto::{
    ManifestId, MerkleHash, encoding,
    merkle::{AuditPath, MAX_AUDIT_PATH_LEN},
    wire::Bitfield,
};
use redb::{Durability, ReadableTable};

use super::{
    Store, StoreError,
    error::invalid,
    held_chunks,
    items::check_file_state,
    schema::{
        BITFIELDS, CHUNK_LEAVES, CHUNK_LEAVES_NAME, ChunkKey, FileKey, LEAF_BLOCKS, LEAVES,
        LEAVES_NAME, MAX_LEAVES_BYTES, MAX_PROOF_BYTES, PROOFS, PROOFS_NAME, chunk_key,
        chunk_key_name, decode_bitfield, decode_value, file_key, file_key_name,
    },
};

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

impl Store {
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

    /// The stored bitfield row of file `file` of `id` ([`StoreError::UnknownFile`] if none).
    pub(super) fn stored_bitfield(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;

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
}
