//! The tables of the state database (see the table in the module docs), their keys, the stored
//! forms of values and their size limits, and reading values back under those limits.

use std::{ops::RangeInclusive, path::PathBuf};

use licet_proto::{
    ManifestId, PublicKey, Timestamp, encoding, manifest::MAX_FILES, merkle::MAX_AUDIT_PATH_LEN,
    wire::Bitfield,
};
use redb::{TableDefinition, TableError, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    ContentOrigin, ContentRecord, FileStamp, MAX_DIR_BYTES, MAX_ERROR_BYTES,
    MAX_STORED_CHUNKS_PER_FILE, RecordState, Store, StoreError,
};

/// Largest `meta` value (the magic string, a version).
pub(super) const MAX_META_VALUE_BYTES: usize = 256;
/// Largest trust entry (a publisher's display name and a flag).
pub(super) const MAX_TRUST_VALUE_BYTES: usize = 64 * 1024;
/// Largest encoding of one [`FileStamp`]: a `u64` varint and an `i128` varint.
pub(super) const MAX_STAMP_BYTES: usize = 10 + 19;
/// Largest content record: directory, error, fixed fields, one stamp per file.
pub(super) const MAX_RECORD_BYTES: usize =
    MAX_DIR_BYTES + MAX_ERROR_BYTES + 64 + MAX_FILES * MAX_STAMP_BYTES;
/// Largest bitfield: its bytes plus two length varints.
pub(super) const MAX_BITFIELD_BYTES: usize = (MAX_STORED_CHUNKS_PER_FILE / 8) as usize + 20;
/// Largest leaf list: 32 bytes per chunk plus a length varint.
pub(super) const MAX_LEAVES_BYTES: usize = MAX_STORED_CHUNKS_PER_FILE as usize * 32 + 10;
/// Largest audit path.
pub(super) const MAX_PROOF_BYTES: usize = MAX_AUDIT_PATH_LEN * 32 + 10;

pub(super) const META_MAGIC: &str = "magic";
pub(super) const META_VERSION: &str = "format_version";

pub(super) const META_NAME: &str = "meta";
pub(super) const TRUST_NAME: &str = "trust";
pub(super) const MANIFESTS_NAME: &str = "manifests";
pub(super) const CONTENT_NAME: &str = "content";
pub(super) const BITFIELDS_NAME: &str = "bitfields";
pub(super) const LEAVES_NAME: &str = "leaves";
pub(super) const PROOFS_NAME: &str = "proofs";
pub(super) const CHUNK_LEAVES_NAME: &str = "chunk_leaves";
pub(super) const LEAF_BLOCKS_NAME: &str = "leaf_blocks";
pub(super) const CATALOGS_NAME: &str = "catalogs";
pub(super) const CATALOG_HEADS_NAME: &str = "catalog_heads";
pub(super) const MIRRORS_NAME: &str = "mirrors";
pub(super) const LICENCES_NAME: &str = "licences";

pub(super) type IdKey = [u8; 32];
pub(super) type FileKey = [u8; 36];
pub(super) type ChunkKey = [u8; 44];

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new(META_NAME);
pub(super) const TRUST: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(TRUST_NAME);
pub(super) const MANIFESTS: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(MANIFESTS_NAME);
pub(super) const CONTENT: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(CONTENT_NAME);
pub(super) const BITFIELDS: TableDefinition<&FileKey, &[u8]> = TableDefinition::new(BITFIELDS_NAME);
pub(super) const LEAVES: TableDefinition<&FileKey, &[u8]> = TableDefinition::new(LEAVES_NAME);
pub(super) const PROOFS: TableDefinition<&ChunkKey, &[u8]> = TableDefinition::new(PROOFS_NAME);
pub(super) const CHUNK_LEAVES: TableDefinition<&ChunkKey, &[u8]> =
    TableDefinition::new(CHUNK_LEAVES_NAME);
pub(super) const LEAF_BLOCKS: TableDefinition<&ChunkKey, &[u8]> =
    TableDefinition::new(LEAF_BLOCKS_NAME);
pub(super) const CATALOGS: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(CATALOGS_NAME);
pub(super) const CATALOG_HEADS: TableDefinition<&IdKey, &[u8]> =
    TableDefinition::new(CATALOG_HEADS_NAME);
pub(super) const MIRRORS: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(MIRRORS_NAME);
pub(super) const LICENCES: TableDefinition<&IdKey, &[u8]> = TableDefinition::new(LICENCES_NAME);

/// The stored form of a [`ContentRecord`] (format version 1).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredRecord {
    pub(super) dir: String,
    pub(super) origin: ContentOrigin,
    pub(super) state: RecordState,
    pub(super) error: Option<String>,
    pub(super) added_at: Timestamp,
    pub(super) file_stamps: Vec<FileStamp>,
}

/// The stored form of a catalog: its sequence, kept beside it so a put compares without
/// decoding the old catalog.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredCatalog {
    pub(super) sequence: u64,
    pub(super) envelope: Vec<u8>,
}

impl Store {
    /// Creates any table of this format that is missing (a write only when one is).
    pub(super) fn ensure_tables(&self) -> Result<(), StoreError> {
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
            LICENCES_NAME,
        ];
        if all.iter().all(|name| present.iter().any(|p| p == name)) {
            return Ok(());
        }
        let txn = self.write()?;
        create_tables(&txn).map_err(|e| self.db("create tables", e))?;
        self.commit(txn)
    }
}

// ----- keys -----

pub(super) fn file_key(id: &ManifestId, file: u32) -> FileKey {
    let mut key = [0u8; 36];
    key[..32].copy_from_slice(id.as_bytes());
    key[32..].copy_from_slice(&file.to_be_bytes());
    key
}

pub(super) fn chunk_key(id: &ManifestId, file: u32, chunk: u64) -> ChunkKey {
    let mut key = [0u8; 44];
    key[..36].copy_from_slice(&file_key(id, file));
    key[36..].copy_from_slice(&chunk.to_be_bytes());
    key
}

pub(super) fn file_key_name(id: &ManifestId, file: u32) -> String {
    format!("{id} file {file}")
}

pub(super) fn chunk_key_name(id: &ManifestId, file: u32, chunk: u64) -> String {
    format!("{id} file {file} chunk {chunk}")
}

/// The first and last keys of one item's rows in the per-file and per-chunk tables.
pub(super) struct ItemBounds {
    first_file: FileKey,
    last_file: FileKey,
    first_chunk: ChunkKey,
    last_chunk: ChunkKey,
}

impl ItemBounds {
    pub(super) fn new(id: &ManifestId) -> ItemBounds {
        ItemBounds {
            first_file: file_key(id, 0),
            last_file: file_key(id, u32::MAX),
            first_chunk: chunk_key(id, 0, 0),
            last_chunk: chunk_key(id, u32::MAX, u64::MAX),
        }
    }

    pub(super) fn files(&self) -> RangeInclusive<&FileKey> {
        &self.first_file..=&self.last_file
    }

    pub(super) fn chunks(&self) -> RangeInclusive<&ChunkKey> {
        &self.first_chunk..=&self.last_chunk
    }
}

// ----- values -----

pub(super) fn decode_value<T: DeserializeOwned>(
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

pub(super) fn decode_record(id: &ManifestId, bytes: &[u8]) -> Result<ContentRecord, StoreError> {
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

pub(super) fn decode_bitfield(
    id: &ManifestId,
    file: u32,
    bytes: &[u8],
) -> Result<Bitfield, StoreError> {
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

pub(super) fn decode_catalog(
    publisher: &PublicKey,
    bytes: &[u8],
) -> Result<StoredCatalog, StoreError> {
    decode_value(
        CATALOGS_NAME,
        || publisher.to_string(),
        bytes,
        licet_proto::catalog_parts::MAX_CATALOG_FILE_BYTES + 20,
    )
}

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), TableError> {
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
    txn.open_table(LICENCES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{STATE_FORMAT_VERSION, STATE_MAGIC};

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
