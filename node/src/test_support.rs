//! Fixtures shared by the unit tests of several modules.

use licet_proto::{
    MerkleHash, SecretKey, Timestamp,
    manifest::{FileEntry, Licence, MIN_CHUNK_SIZE, Manifest},
    path::SafePath,
};

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
    }
}
