//! Manifests and content items: the `manifests` and `content` rows of an item, put, updated,
//! listed and removed with all of its rows (invariant 5 of the module docs).

use std::path::PathBuf;

use licet_proto::{
    ManifestId, MerkleHash, Timestamp, encoding,
    manifest::{ManifestError, VerifiedManifest},
    wire::Bitfield,
};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    MAX_DIR_BYTES, MAX_ERROR_BYTES, MAX_STORED_CHUNKS_PER_FILE, Store, StoreError,
    error::invalid,
    schema::{
        BITFIELDS, CHUNK_LEAVES, CONTENT, ChunkKey, FileKey, IdKey, ItemBounds, LEAF_BLOCKS,
        LEAVES, MANIFESTS, MANIFESTS_NAME, PROOFS, StoredRecord, decode_record, file_key,
    },
};

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
    /// A download the user paused: nothing is fetched until it is resumed (also after a
    /// restart); the chunks held are still served.
    Paused,
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

/// Content items with their manifests, and the ids of items whose stored manifest this
/// version's rules refuse, with the reason ([`Store::content_list_with_refused`]).
pub type ContentList = (
    Vec<(VerifiedManifest, ContentRecord)>,
    Vec<(ManifestId, String)>,
);

impl Store {
    /// The stored manifest with this id, verified again as it is read (the tests' view: the
    /// node reads manifests with their items, `content_list`).
    #[cfg(test)]
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

    /// Fails with [`StoreError::NotFound`] unless content item `id` is stored.
    pub(super) fn require_item(
        &self,
        txn: &WriteTransaction,
        id: &ManifestId,
    ) -> Result<(), StoreError> {
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

    pub(super) fn manifest_in(
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
    pub(super) fn item_manifest(
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

/// Encodes `record` for an item of `file_count` files, checking it first.
pub(super) fn stored_record(
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
pub(super) fn check_file_state(
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

/// `text` cut to at most `limit` bytes at a character boundary.
pub(super) fn truncated(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use redb::Database;

    use super::*;
    use crate::store::{CommittedChunk, testing::*};

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

    /// `Paused` came after the first three states: it is the next index, so records written
    /// before it existed read as they did, and a paused record survives a reopen.
    #[test]
    fn a_paused_record_is_appended_and_older_records_still_read() {
        assert_eq!(encoding::encode(&RecordState::Failed), [2]);
        assert_eq!(encoding::encode(&RecordState::Paused), [3]);
        // A record as an older version wrote it: dir "/d", downloaded, downloading, no error,
        // added at 1, no stamps.
        let id = ManifestId([3; 32]);
        let old = decode_record(&id, &[2, b'/', b'd', 1, 0, 0, 2, 0]).unwrap();
        assert_eq!(old.state, RecordState::Downloading);
        assert_eq!(old.dir, PathBuf::from("/d"));

        let (_dir, path) = state_path();
        let m = manifest("paused", &[THREE_CHUNKS]);
        {
            let store = Store::open(&path).unwrap();
            let rec = record(ContentOrigin::Downloaded, RecordState::Downloading);
            store.content_put(&m, &rec, &download_files(&m)).unwrap();
            let paused = record(ContentOrigin::Downloaded, RecordState::Paused);
            store.content_set_record(&m.id(), &paused).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let (_, got) = store.content_get(&m.id()).unwrap().unwrap();
        assert_eq!(got.state, RecordState::Paused);
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
}
