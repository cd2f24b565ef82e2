//! Fixtures shared by the unit tests of several modules.

use std::path::PathBuf;

use licet_proto::{
    MerkleHash, SecretKey, Timestamp,
    manifest::{FileEntry, Licence, MIN_CHUNK_SIZE, Manifest, VerifiedManifest},
    merkle::MerkleTree,
    path::SafePath,
    wire::Bitfield,
};

use crate::store::{ContentOrigin, ContentRecord, FileState, RecordState, Store};

/// The publisher of the test manifests.
pub fn publisher() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

/// An unsigned manifest by [`publisher`] at the smallest chunk size (16 KiB, so small files have
/// several chunks), with one file `file{i}.bin` per size (its root: 32 bytes of `i`).
pub fn manifest_body(title: &str, sizes: &[u64]) -> Manifest {
    Manifest {
        version: 1,
        publisher: publisher().public_key(),
        title: title.into(),
        description: None,
        created_at: Timestamp(1_700_000_000),
        chunk_size: MIN_CHUNK_SIZE,
        files: sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| FileEntry {
                path: SafePath::new(format!("file{i}.bin")).unwrap(),
                size,
                root: MerkleHash([i as u8; 32]),
            })
            .collect(),
        licence: Licence {
            terms: "test terms".into(),
            not_before: Timestamp(0),
            not_after: None,
            regions: vec![],
        },
        encryption: None,
    }
}

/// Puts into `store` one seeded, complete file of 16 KiB chunks whose leaves are `leaves` (the
/// manifest's root is theirs), and returns its signed manifest.
pub fn put_complete_file(store: &Store, leaves: &[MerkleHash]) -> VerifiedManifest {
    let n = leaves.len() as u64;
    let mut body = manifest_body("complete file", &[n * u64::from(MIN_CHUNK_SIZE)]);
    body.files[0].root = MerkleTree::from_leaves(leaves.to_vec()).root();
    let manifest = body
        .sign(&publisher(), None)
        .expect("the test manifest signs");
    let mut bits = Bitfield::new(n);
    (0..n).for_each(|c| bits.set(c, true));
    let record = ContentRecord {
        dir: PathBuf::from("/srv/complete"),
        origin: ContentOrigin::Seeded,
        state: RecordState::Complete,
        error: None,
        added_at: Timestamp(1_700_000_100),
        file_stamps: vec![],
    };
    let state = FileState {
        bitfield: bits,
        leaves: Some(leaves.to_vec()),
    };
    store
        .content_put(&manifest, &record, &[state])
        .expect("the test file is stored");
    manifest
}
