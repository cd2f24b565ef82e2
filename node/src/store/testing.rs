//! What the store's tests share: test manifests and records, chunks, and ways to look at or
//! damage the file beneath the store.

use std::path::{Path, PathBuf};

use licet_proto::{
    ManifestId, MerkleHash, SecretKey, Timestamp,
    catalog::{Catalog, CatalogEntry, VerifiedCatalog},
    manifest::{MIN_CHUNK_SIZE, VerifiedManifest},
    merkle::AuditPath,
    wire::Bitfield,
};
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition,
};
use tempfile::TempDir;

use super::{
    CommittedChunk, ContentOrigin, ContentRecord, FileState, RecordState, Store, StoreError,
    schema::{BITFIELDS, CONTENT, LEAVES, MANIFESTS, PROOFS},
};

/// The chunk size of the test manifests (16 KiB), so small files have several chunks.
pub(super) const CHUNK: u32 = MIN_CHUNK_SIZE;
/// A file of three chunks, the last one short.
pub(super) const THREE_CHUNKS: u64 = 2 * CHUNK as u64 + 100;

pub(super) fn secret(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// A manifest signed by publisher 1, one file per size.
pub(super) fn manifest(title: &str, sizes: &[u64]) -> VerifiedManifest {
    crate::test_support::manifest_body(title, sizes)
        .sign(&secret(1), None)
        .unwrap()
}

pub(super) fn record(origin: ContentOrigin, state: RecordState) -> ContentRecord {
    ContentRecord {
        dir: PathBuf::from("/srv/licet/some content"),
        origin,
        state,
        error: None,
        added_at: Timestamp(1_700_000_100),
        file_stamps: vec![],
    }
}

pub(super) fn chunk_counts(manifest: &VerifiedManifest) -> Vec<u64> {
    let body = manifest.manifest();
    body.files
        .iter()
        .map(|f| f.chunk_count(body.chunk_size))
        .collect()
}

pub(super) fn full_bits(len: u64) -> Bitfield {
    let mut bits = Bitfield::new(len);
    for i in 0..len {
        bits.set(i, true);
    }
    bits
}

pub(super) fn leaves(len: u64, tag: u8) -> Vec<MerkleHash> {
    (0..len).map(|i| MerkleHash([tag ^ i as u8; 32])).collect()
}

/// A download's file states: every bit clear, no leaves.
pub(super) fn download_files(manifest: &VerifiedManifest) -> Vec<FileState> {
    chunk_counts(manifest)
        .into_iter()
        .map(|n| FileState {
            bitfield: Bitfield::new(n),
            leaves: None,
        })
        .collect()
}

/// Puts `manifest` in the store as a download that holds nothing yet.
pub(super) fn put_download(store: &Store, manifest: &VerifiedManifest) {
    store
        .content_put(
            manifest,
            &record(ContentOrigin::Downloaded, RecordState::Downloading),
            &download_files(manifest),
        )
        .unwrap();
}

/// Seeded content's file states: every bit set, leaves known.
pub(super) fn seeded_files(manifest: &VerifiedManifest) -> Vec<FileState> {
    chunk_counts(manifest)
        .into_iter()
        .enumerate()
        .map(|(i, n)| FileState {
            bitfield: full_bits(n),
            leaves: Some(leaves(n, i as u8)),
        })
        .collect()
}

pub(super) fn proof(tag: u8) -> AuditPath {
    AuditPath(vec![MerkleHash([tag; 32]); 3])
}

pub(super) fn chunk(file: u32, chunk: u64) -> CommittedChunk {
    CommittedChunk {
        file,
        chunk,
        proof: proof(chunk as u8 + 10 * file as u8),
        leaf: chunk_leaf(file, chunk),
    }
}

pub(super) fn chunk_leaf(file: u32, chunk: u64) -> MerkleHash {
    MerkleHash([100 + chunk as u8 + 10 * file as u8; 32])
}

pub(super) fn state_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    (dir, path)
}

/// Writes `value` under `key` straight into a table, as damage would.
pub(super) fn poke<const N: usize>(
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
pub(super) fn rows_of(path: &Path, id: &ManifestId) -> usize {
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

pub(super) fn assert_refused_unchanged(path: &Path, check: impl FnOnce(&StoreError)) {
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
pub(super) fn crashed_copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    assert!(
        matches!(
            ReadOnlyDatabase::open(to),
            Err(DatabaseError::RepairAborted)
        ),
        "the copy needs a repair, as after a crash"
    );
}

pub(super) fn assert_corrupt(err: StoreError, table: &str, key: &str) {
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

pub(super) fn signed_catalog(seed: u8, sequence: u64, title: &str) -> VerifiedCatalog {
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
        revoked_licences: Vec::new(),
    }
    .sign(&secret(seed))
    .unwrap()
}
