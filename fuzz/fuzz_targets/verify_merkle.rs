//! Merkle audit-path verification, on arbitrary input and on real trees.
//!
//! The input is read (with `arbitrary`) as a root, an index, a leaf count, an audit path and a
//! chunk, which go straight to `merkle::verify_chunk` and `merkle::verify_leaf`: they must answer,
//! never panic, whatever the input. It also describes a small real tree (1 to 33 distinct leaves)
//! and a path put together from that tree's own hashes.
//!
//! Properties checked (a failed assertion is a bug):
//! - the tree's root is RFC 6962's (recursive reference below), whatever the leaf count;
//! - every leaf's audit path verifies, by leaf hash and by chunk;
//! - the same path fails for a wrong index, a tampered leaf, one hash more or one hash fewer;
//! - there is no audit path past the last leaf;
//! - with the true root and leaf count, a path built from the tree's own hashes verifies only as
//!   the genuine audit path of the genuine leaf at that index (no forged proof).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use licet_proto::{
    MerkleHash,
    merkle::{
        AuditPath, MAX_AUDIT_PATH_LEN, MerkleTree, leaf_hash, node_hash, verify_chunk, verify_leaf,
    },
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Raw verification.
    root: [u8; 32],
    index: u64,
    leaf_count: u64,
    path: Vec<[u8; 32]>,
    /// The real tree: `1 + leaves % 33` leaves (up to 7 levels, every shape of short path).
    leaves: u8,
    /// Which leaf (mod the count) to tamper with and how.
    tamper_leaf: u8,
    tamper_bit: u8,
    /// A path made of the tree's own hashes (indexes into them), for leaf `claim_leaf` at
    /// `claim_index`.
    picks: Vec<u16>,
    claim_leaf: u8,
    claim_index: u8,
    chunk: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    // Arbitrary input: any answer, no panic.
    let root = MerkleHash(input.root);
    let path = AuditPath(input.path.iter().copied().map(MerkleHash).collect());
    let raw_chunk = verify_chunk(&root, input.index, input.leaf_count, input.chunk, &path);
    let raw_leaf = verify_leaf(
        &root,
        input.index,
        input.leaf_count,
        leaf_hash(input.chunk),
        &path,
    );
    assert_eq!(raw_chunk, raw_leaf);
    if input.index >= input.leaf_count || path.0.len() > MAX_AUDIT_PATH_LEN {
        assert!(!raw_leaf);
    }

    // A real tree over distinct chunks.
    let n = 1 + usize::from(input.leaves % 33);
    let chunks: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut chunk = (i as u64).to_le_bytes().to_vec();
            chunk.extend_from_slice(input.chunk);
            chunk
        })
        .collect();
    let leaves: Vec<MerkleHash> = chunks.iter().map(|c| leaf_hash(c)).collect();
    let tree = MerkleTree::from_leaves(leaves.clone());
    let root = tree.root();
    let count = n as u64;
    assert_eq!(root, reference_root(&leaves), "root differs from RFC 6962");
    assert_eq!(tree.leaves(), &leaves[..]);
    assert_eq!(tree.leaf_count(), count);
    assert!(tree.audit_path(count).is_none());
    assert!(tree.audit_path(u64::MAX).is_none());

    let mut pool = leaves.clone();
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let index = i as u64;
        let path = tree
            .audit_path(index)
            .expect("every leaf has an audit path");
        assert!(path.0.len() <= MAX_AUDIT_PATH_LEN);
        assert!(
            verify_leaf(&root, index, count, leaves[i], &path),
            "n={n} i={i}"
        );
        assert!(
            verify_chunk(&root, index, count, &chunks[i], &path),
            "n={n} i={i}"
        );
        if n > 1 {
            let wrong = (index + 1) % count;
            assert!(
                !verify_leaf(&root, wrong, count, leaves[i], &path),
                "n={n} i={i}"
            );
        }
        assert!(!verify_leaf(
            &root,
            index,
            count,
            leaves[i],
            &longer(&path, root)
        ));
        if let Some((_, shorter)) = path.0.split_last() {
            let shorter = AuditPath(shorter.to_vec());
            assert!(!verify_leaf(&root, index, count, leaves[i], &shorter));
        }
        pool.extend_from_slice(&path.0);
        paths.push(path);
    }

    // A tampered chunk never verifies.
    let t = usize::from(input.tamper_leaf) % n;
    let mut tampered = chunks[t].clone();
    let bit = usize::from(input.tamper_bit) % (tampered.len() * 8);
    tampered[bit / 8] ^= 1 << (bit % 8);
    assert!(!verify_chunk(&root, t as u64, count, &tampered, &paths[t]));

    // A path assembled from the tree's own hashes proves only the truth.
    let claim_leaf = usize::from(input.claim_leaf) % n;
    let claim_index = u64::from(input.claim_index) % count;
    let forged = AuditPath(
        input
            .picks
            .iter()
            .take(MAX_AUDIT_PATH_LEN + 1)
            .map(|&p| pool[usize::from(p) % pool.len()])
            .collect(),
    );
    if verify_leaf(&root, claim_index, count, leaves[claim_leaf], &forged) {
        assert_eq!(
            claim_leaf as u64, claim_index,
            "a leaf verified at another index"
        );
        assert_eq!(
            forged, paths[claim_leaf],
            "a path other than the audit path verified"
        );
    }
});

fn longer(path: &AuditPath, extra: MerkleHash) -> AuditPath {
    let mut longer = path.clone();
    longer.0.push(extra);
    longer
}

/// RFC 6962 section 2.1, written recursively, as the reference.
fn reference_root(leaves: &[MerkleHash]) -> MerkleHash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let mut k = 1;
    while k * 2 < leaves.len() {
        k *= 2;
    }
    node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
}
