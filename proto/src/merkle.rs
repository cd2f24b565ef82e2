//! Per-file merkle trees (RFC 6962 shape), audit paths, and parallel leaf hashing.
//!
//! Chunk *i* of a file is bytes `[i·cs, min((i+1)·cs, size))`; an empty file has one empty
//! chunk. Leaf = SHA-256(0x00 ‖ chunk); node = SHA-256(0x01 ‖ left ‖ right); a tree of *n* leaves
//! splits at the largest power of two below *n*. Built bottom-up, that is the same as pairing
//! each level left to right and carrying an unpaired last node up unchanged, which is how
//! [`MerkleTree`] stores its levels, and why an audit path skips the levels where the node has no
//! sibling.
//!
//! Invariants:
//! - an audit path has at most [`MAX_AUDIT_PATH_LEN`] hashes; [`verify_leaf`] consumes it
//!   exactly (a path with hashes left over, or too few, fails);
//! - [`hash_leaves`] holds at most `threads + 2` chunk buffers whatever the file size, and its
//!   result does not depend on the number of threads.

use std::{
    io::{self, Read},
    sync::mpsc,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ids::MerkleHash;

/// Longest audit path: a tree over 2^64 leaves is 64 levels deep.
pub const MAX_AUDIT_PATH_LEN: usize = 64;

/// The number of chunks of a `size`-byte file at `chunk_size` (at least one).
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size)).max(1)
}

/// The byte range of chunk `index` in a `size`-byte file, or `None` past the end.
pub fn chunk_range(index: u64, size: u64, chunk_size: u32) -> Option<std::ops::Range<u64>> {
    if index >= chunk_count(size, chunk_size) {
        return None;
    }
    let start = index * u64::from(chunk_size);
    Some(start..size.min(start + u64::from(chunk_size)))
}

/// SHA-256(0x00 ‖ chunk).
pub fn leaf_hash(chunk: &[u8]) -> MerkleHash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(chunk);
    MerkleHash(hasher.finalize().into())
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &MerkleHash, right: &MerkleHash) -> MerkleHash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    MerkleHash(hasher.finalize().into())
}

/// The hashes that prove one leaf under a root, bottom-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPath(pub Vec<MerkleHash>);

/// A whole tree, every level kept, so audit paths cost no hashing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves; the last level has exactly one node, the root.
    levels: Vec<Vec<MerkleHash>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves` (at least one; an empty list is treated as the single leaf
    /// of an empty file).
    pub fn from_leaves(mut leaves: Vec<MerkleHash>) -> MerkleTree {
        if leaves.is_empty() {
            leaves.push(leaf_hash(&[]));
        }
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// The root.
    pub fn root(&self) -> MerkleHash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_else(|| leaf_hash(&[]))
    }

    /// The leaves, in order.
    pub fn leaves(&self) -> &[MerkleHash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The number of leaves.
    pub fn leaf_count(&self) -> u64 {
        self.leaves().len() as u64
    }

    /// The audit path of leaf `index`, or `None` if there is no such leaf.
    pub fn audit_path(&self, index: u64) -> Option<AuditPath> {
        let mut i = usize::try_from(index).ok()?;
        if i >= self.leaves().len() {
            return None;
        }
        let mut path = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            i /= 2;
        }
        Some(AuditPath(path))
    }
}

/// Whether `leaf` is leaf `index` of a `leaf_count`-leaf tree with root `root`, by `path`.
pub fn verify_leaf(
    root: &MerkleHash,
    index: u64,
    leaf_count: u64,
    leaf: MerkleHash,
    path: &AuditPath,
) -> bool {
    if index >= leaf_count || path.0.len() > MAX_AUDIT_PATH_LEN {
        return false;
    }
    let mut hash = leaf;
    let mut i = index;
    let mut width = leaf_count;
    let mut siblings = path.0.iter();
    while width > 1 {
        let has_sibling = (i ^ 1) < width;
        if has_sibling {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            hash = if i.is_multiple_of(2) {
                node_hash(&hash, sibling)
            } else {
                node_hash(sibling, &hash)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && hash == *root
}

/// Whether `chunk` is chunk `index` of a `leaf_count`-chunk file with root `root`.
pub fn verify_chunk(
    root: &MerkleHash,
    index: u64,
    leaf_count: u64,
    chunk: &[u8],
    path: &AuditPath,
) -> bool {
    verify_leaf(root, index, leaf_count, leaf_hash(chunk), path)
}

/// The leaf hashes of everything `reader` yields until its end, and the byte count.
///
/// Reads sequentially into at most `threads + 2` reusable chunk buffers and hashes chunks on
/// `threads` worker threads (chunk *i* goes to worker *i* mod `threads`, so each worker's results
/// come out in order). `progress` is called with the running byte count after each chunk is read.
pub fn hash_leaves<R: Read>(
    mut reader: R,
    chunk_size: u32,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> io::Result<(Vec<MerkleHash>, u64)> {
    let threads = threads.max(1);
    let chunk_size = chunk_size as usize;
    let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..threads + 2 {
        // vec![0; n] is calloc: pages are only touched when a read fills them.
        let _ = pool_tx.send(vec![0u8; chunk_size]);
    }
    std::thread::scope(|scope| {
        let mut workers = Vec::with_capacity(threads);
        let mut senders = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(1);
            let pool_tx = pool_tx.clone();
            senders.push(tx);
            workers.push(scope.spawn(move || {
                let mut leaves = Vec::new();
                for (buffer, len) in rx {
                    leaves.push(leaf_hash(&buffer[..len]));
                    // The pool outlives the workers; a failed send only means the reader stopped.
                    let _ = pool_tx.send(buffer);
                }
                leaves
            }));
        }
        let mut total: u64 = 0;
        let mut index = 0usize;
        let read_result: io::Result<()> = (|| {
            loop {
                let Ok(mut buffer) = pool_rx.recv() else {
                    return Err(io::Error::other("a hashing thread stopped"));
                };
                let len = read_full(&mut reader, &mut buffer)?;
                if len == 0 && index > 0 {
                    return Ok(());
                }
                total += len as u64;
                if senders[index % threads].send((buffer, len)).is_err() {
                    return Err(io::Error::other("a hashing thread stopped"));
                }
                index += 1;
                progress(total);
                if len < chunk_size {
                    return Ok(());
                }
            }
        })();
        drop(senders);
        let per_worker: Vec<Vec<MerkleHash>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect();
        read_result?;
        let mut leaves = Vec::with_capacity(index);
        for i in 0..index {
            match per_worker[i % threads].get(i / threads) {
                Some(leaf) => leaves.push(*leaf),
                None => return Err(io::Error::other("a hashing thread stopped early")),
            }
        }
        Ok((leaves, total))
    })
}

/// The leaf hashes of a whole file, and its length, with every thread reading and hashing its
/// own chunks (positional reads, no shared reader), which keeps both copying and hashing on all
/// cores. Holds `threads` chunk buffers. Fails if the file is shorter than its length at the
/// start (it changed while being read). `progress` is called on the calling thread with the
/// running byte count.
#[cfg(unix)]
pub fn hash_file_leaves(
    file: &std::fs::File,
    chunk_size: u32,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> io::Result<(Vec<MerkleHash>, u64)> {
    use std::{
        os::unix::fs::FileExt as _,
        sync::atomic::{AtomicBool, AtomicU64, Ordering},
    };

    let size = file.metadata()?.len();
    let count = chunk_count(size, chunk_size);
    let threads = threads.clamp(1, usize::try_from(count).unwrap_or(usize::MAX));
    let next_chunk = AtomicU64::new(0);
    let done_bytes = AtomicU64::new(0);
    let failed = AtomicBool::new(false);

    // Each worker claims the next chunk index, reads it at its offset, and hashes it.
    let work = |report: &mut dyn FnMut(u64)| -> io::Result<Vec<(u64, MerkleHash)>> {
        let mut buffer = vec![0u8; chunk_size as usize];
        let mut hashed = Vec::new();
        loop {
            let index = next_chunk.fetch_add(1, Ordering::Relaxed);
            if index >= count || failed.load(Ordering::Relaxed) {
                return Ok(hashed);
            }
            let Some(range) = chunk_range(index, size, chunk_size) else {
                return Ok(hashed);
            };
            let len = (range.end - range.start) as usize;
            let chunk = &mut buffer[..len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut chunk[filled..], range.start + filled as u64) {
                    Ok(0) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the file shrank while it was read (it had {size} bytes)"),
                        ));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            hashed.push((index, leaf_hash(chunk)));
            let total = done_bytes.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
            report(total);
        }
    };

    let results = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .map(|_| scope.spawn(|| work(&mut |_| {})))
            .collect();
        let mut all = vec![work(progress)];
        for helper in helpers {
            all.push(
                helper
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked"))),
            );
        }
        all
    });
    let mut leaves = vec![MerkleHash([0; 32]); usize::try_from(count).unwrap_or(0)];
    let mut filled = 0u64;
    for result in results {
        for (index, leaf) in result? {
            leaves[index as usize] = leaf;
            filled += 1;
        }
    }
    if filled != count {
        return Err(io::Error::other("not every chunk was hashed"));
    }
    // An empty file's single empty chunk was hashed above like any other.
    Ok((leaves, size))
}

/// The leaf hashes of a whole file (platforms without positional reads: the reader pipeline).
#[cfg(not(unix))]
pub fn hash_file_leaves(
    file: &std::fs::File,
    chunk_size: u32,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> io::Result<(Vec<MerkleHash>, u64)> {
    hash_leaves(file, chunk_size, threads, progress)
}

/// Reads until `buffer` is full or the reader ends; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The number of hashing threads to use: the machine's available parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    fn leaves(n: usize) -> Vec<MerkleHash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn chunk_geometry_at_the_edges() {
        let cs = 16 * 1024;
        assert_eq!(chunk_count(0, cs), 1);
        assert_eq!(chunk_range(0, 0, cs), Some(0..0));
        assert_eq!(chunk_range(1, 0, cs), None);
        assert_eq!(chunk_count(1, cs), 1);
        assert_eq!(chunk_count(u64::from(cs) - 1, cs), 1);
        assert_eq!(chunk_count(u64::from(cs), cs), 1);
        assert_eq!(chunk_count(u64::from(cs) + 1, cs), 2);
        assert_eq!(
            chunk_range(1, u64::from(cs) + 1, cs),
            Some(u64::from(cs)..u64::from(cs) + 1)
        );
    }

    #[test]
    fn golden_roots() {
        // Fixed values: the tree shape and domain separation can never drift silently.
        assert_eq!(
            leaf_hash(&[]).to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let tree = MerkleTree::from_leaves(leaves(3));
        assert_eq!(
            tree.root().to_hex(),
            "60bcae7f87810b5af37bb60eebb0e9adea015f2ce41a7ac84852c4bfc87d8920"
        );
    }

    #[test]
    fn every_audit_path_verifies_and_no_other_does() {
        for n in 1..=33 {
            let tree = MerkleTree::from_leaves(leaves(n));
            assert_eq!(tree.root(), reference_root(&leaves(n)), "n={n}");
            for i in 0..n as u64 {
                let path = tree.audit_path(i).unwrap();
                let leaf = tree.leaves()[i as usize];
                assert!(
                    verify_leaf(&tree.root(), i, n as u64, leaf, &path),
                    "n={n} i={i}"
                );
                // Wrong index, wrong count, extra or missing hash: all fail.
                if n > 1 {
                    assert!(!verify_leaf(
                        &tree.root(),
                        (i + 1) % n as u64,
                        n as u64,
                        leaf,
                        &path
                    ));
                }
                let mut longer = path.clone();
                longer.0.push(leaf);
                assert!(!verify_leaf(&tree.root(), i, n as u64, leaf, &longer));
                if let Some((_, shorter)) = path.0.split_last() {
                    let shorter = AuditPath(shorter.to_vec());
                    assert!(!verify_leaf(&tree.root(), i, n as u64, leaf, &shorter));
                }
            }
            assert!(tree.audit_path(n as u64).is_none());
        }
    }

    #[test]
    fn hashing_a_reader_matches_hashing_chunks() {
        let cs = 16 * 1024u32;
        for size in [
            0usize,
            1,
            16 * 1024 - 1,
            16 * 1024,
            16 * 1024 + 1,
            5 * 16 * 1024 + 7,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let expected: Vec<MerkleHash> = if size == 0 {
                vec![leaf_hash(&[])]
            } else {
                data.chunks(cs as usize).map(leaf_hash).collect()
            };
            for threads in [1, 2, 3] {
                let mut seen = 0;
                let (got, total) = hash_leaves(&data[..], cs, threads, &mut |n| seen = n).unwrap();
                assert_eq!(got, expected, "size={size} threads={threads}");
                assert_eq!(total, size as u64);
                assert_eq!(seen, size as u64);
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn hashing_a_file_in_parallel_matches_the_reader() {
        let cs = 16 * 1024u32;
        for size in [
            0usize,
            1,
            16 * 1024 - 1,
            16 * 1024,
            16 * 1024 + 1,
            9 * 16 * 1024 + 7,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, &data).unwrap();
            let (expected, _) = hash_leaves(&data[..], cs, 1, &mut |_| {}).unwrap();
            for threads in [1, 2, 4] {
                let mut seen = 0;
                let (got, total) =
                    hash_file_leaves(&file, cs, threads, &mut |n| seen = seen.max(n)).unwrap();
                assert_eq!(got, expected, "size={size} threads={threads}");
                assert_eq!(total, size as u64);
                if threads == 1 {
                    assert_eq!(seen, size as u64);
                }
            }
        }
    }

    #[test]
    fn a_failing_reader_is_an_error_not_a_hang() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                self.0 -= 1;
                buf.fill(1);
                Ok(buf.len())
            }
        }
        let err = hash_leaves(Failing(5), 16 * 1024, 2, &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "disk gone");
    }

    proptest! {
        #[test]
        fn tree_matches_rfc6962_reference(n in 1usize..300) {
            prop_assert_eq!(MerkleTree::from_leaves(leaves(n)).root(), reference_root(&leaves(n)));
        }

        #[test]
        fn tampered_chunk_never_verifies(n in 1usize..64, i in 0usize..64, flip in 0usize..8) {
            let i = i % n;
            let data: Vec<Vec<u8>> = (0..n).map(|j| vec![j as u8; 8]).collect();
            let tree = MerkleTree::from_leaves(data.iter().map(|d| leaf_hash(d)).collect());
            let path = tree.audit_path(i as u64).unwrap();
            let mut bad = data[i].clone();
            bad[flip] ^= 1;
            prop_assert!(verify_chunk(&tree.root(), i as u64, n as u64, &data[i], &path));
            prop_assert!(!verify_chunk(&tree.root(), i as u64, n as u64, &bad, &path));
        }
    }
}
