//! Re-verifying an item's files on disk at the operator's request (`licet-node check ID`,
//! `POST /v1/content/{id}/check`): how a file taken out of service because it changed comes
//! back once its bytes are right again; and, before a listing, the cheap comparison of complete
//! files with their stamps (`serve::stamps`) that takes a changed one out of service, so a
//! listing never shows content complete while a file of it changed.
//!
//! Invariants:
//! - a check sets a chunk's bit only if the chunk's bytes on disk hash to the leaf the node holds
//!   for it (a file's stored leaves, which hash to its signed root), or, in a file not yet
//!   complete, verify against the signed root with the chunk's stored audit path; every other bit
//!   of the file is cleared. The bits are stored before the item's state says complete;
//! - the item is complete again only when every chunk of every file is held; each file's stamp
//!   is taken before it is hashed, so a change during the check is noticed when next served;
//! - a check does not run beside the item's download (they would race over the same bits).

use std::{
    fs::File,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use licet_proto::{
    ManifestId, MerkleHash,
    manifest::Manifest,
    merkle::{self, AuditPath},
    wire::Bitfield,
};
use tracing::info;

use crate::{
    content,
    contract::{ApiError, ApiErrorKind, ContentInfo},
    items::Item,
    node::{Node, blocking, internal},
    serve,
    store::{FileStamp, RecordState},
};

/// What a check found in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    /// The chunks found whole.
    pub bits: Bitfield,
    /// The file's stamp before it was hashed (files with known leaves only).
    pub stamp: Option<FileStamp>,
    /// What is wrong with it, if anything.
    pub problem: Option<String>,
}

/// Checks file `file` of `manifest` under `dir` (blocks: reads the whole file).
///
/// With `leaves` (the file was complete once): hashes the file on all cores and keeps the chunks
/// whose leaf matches. Without: re-verifies each chunk set in `held` with its audit path from
/// `proof_of`.
pub fn check_file(
    dir: &Path,
    manifest: &Manifest,
    file: usize,
    leaves: Option<&[MerkleHash]>,
    held: &Bitfield,
    proof_of: impl Fn(u64) -> Option<AuditPath>,
) -> FileCheck {
    // A file with known leaves is complete, at its final name; any other is `NAME.part`.
    let path = content::file_path(dir, manifest, file, leaves.is_some());
    let entry = &manifest.files[file];
    let chunks = held.len();
    let unreadable = |what: String| FileCheck {
        bits: Bitfield::new(chunks),
        stamp: None,
        problem: Some(format!("{}: {what}", path.display())),
    };
    let Some(leaves) = leaves else {
        let mut bits = Bitfield::new(chunks);
        let mut buffer = Vec::new();
        let mut bad = 0u64;
        for chunk in (0..chunks).filter(|&c| held.get(c)) {
            let whole = content::read_chunk(dir, manifest, file, false, chunk, &mut buffer).is_ok()
                && proof_of(chunk).is_some_and(|proof| {
                    merkle::verify_chunk(&entry.root, chunk, chunks, &buffer, &proof)
                });
            bits.set(chunk, whole);
            bad += u64::from(!whole);
        }
        return FileCheck {
            bits,
            stamp: None,
            problem: (bad > 0).then(|| {
                format!(
                    "{}: {bad} of its {} held chunks do not match the manifest",
                    path.display(),
                    held.count_ones()
                )
            }),
        };
    };
    let stamp = match content::stamp(&path) {
        Ok(stamp) => stamp,
        Err(e) => return unreadable(e.to_string()),
    };
    if stamp.size != entry.size {
        return unreadable(format!(
            "has {} bytes, the manifest says {}",
            stamp.size, entry.size
        ));
    }
    let found = match File::open(&path).and_then(|f| {
        merkle::hash_file_leaves(
            &f,
            manifest.chunk_size,
            merkle::default_threads(),
            &mut |_| {},
        )
    }) {
        Ok((found, _)) => found,
        Err(e) => return unreadable(e.to_string()),
    };
    let mut bits = Bitfield::new(chunks);
    if found.len() == leaves.len() {
        for (chunk, (found, expected)) in found.iter().zip(leaves).enumerate() {
            bits.set(chunk as u64, found == expected);
        }
    }
    let bad = chunks - bits.count_ones();
    FileCheck {
        bits,
        stamp: Some(stamp),
        problem: (bad > 0).then(|| {
            format!(
                "{}: {bad} of its {chunks} chunks do not match the manifest",
                path.display()
            )
        }),
    }
}

/// How many listings compared stamps, in this process: where the next one starts.
static LISTINGS: AtomicUsize = AtomicUsize::new(0);

impl Node {
    /// Compares the complete files of `items` with their stamps (a bounded number of `stat`s,
    /// [`serve::MAX_STAMP_CHECKS_PER_LISTING`]) and takes each changed file out of service, as
    /// serving would; called before content is listed or counted.
    pub(crate) async fn notice_changed_files(&self, items: &[Arc<Item>]) {
        let start = LISTINGS.fetch_add(1, Ordering::Relaxed);
        self.server()
            .notice_changed_files(items, start, serve::MAX_STAMP_CHECKS_PER_LISTING)
            .await;
    }

    /// Re-verifies every file of `id` on disk and serves again what is whole (see the module
    /// docs); the item is complete again if everything is.
    pub(crate) async fn check_item(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        let Some(item) = self.item(&id) else {
            return Err(ApiError::new(
                ApiErrorKind::NotFound,
                format!("manifest {id} is not held here"),
            ));
        };
        let (trees, held) = {
            let live = item.live();
            if live.downloading {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!("manifest {id} is being downloaded; check it once that stops"),
                ));
            }
            (live.trees.clone(), live.have.clone())
        };
        let store = self.inner.store.clone();
        let checking = item.clone();
        let found = blocking(move || {
            let manifest = checking.manifest().manifest();
            let mut found = Vec::with_capacity(held.len());
            for (file, (tree, bits)) in trees.iter().zip(&held).enumerate() {
                // A file verified once (it has a proof tree) is checked against its stored leaves.
                let leaves = match tree {
                    Some(_) => store.leaves(&id, file as u32)?,
                    None => None,
                };
                let check = check_file(
                    checking.dir(),
                    manifest,
                    file,
                    leaves.as_deref(),
                    bits,
                    |chunk| store.proof(&id, file as u32, chunk).ok().flatten(),
                );
                if check.bits != *bits {
                    store.replace_bitfield(&id, file as u32, &check.bits)?;
                }
                found.push(check);
            }
            Ok::<_, crate::store::StoreError>(found)
        })
        .await?
        .map_err(|e| internal(format!("node database: {e}")))?;

        let problems: Vec<String> = found.iter().filter_map(|f| f.problem.clone()).collect();
        {
            let mut live = item.live();
            for (file, check) in found.into_iter().enumerate() {
                live.have[file] = check.bits;
                if check.stamp.is_some() {
                    live.stamps[file] = check.stamp;
                }
            }
            let whole = live.have.iter().all(|b| b.count_ones() == b.len());
            if live.downloading {
                // A `get` started meanwhile: its end decides the state.
            } else if whole {
                live.state = RecordState::Complete;
                live.error = None;
            } else {
                live.state = RecordState::Failed;
                live.error = Some(format!(
                    "checked: {}; restore the files and check again, or `licet-node get` \
                     fetches what is missing",
                    problems.join("; ")
                ));
            }
        }
        self.save_record(&item).await?;
        if problems.is_empty() {
            info!(%id, "checked: every chunk matches");
        } else {
            info!(%id, "checked: {}", problems.join("; "));
        }
        self.announce(&item).await;
        Ok(self.info(&item))
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::{manifest::MIN_CHUNK_SIZE, merkle::MerkleTree};

    use super::*;

    #[test]
    fn a_check_keeps_the_chunks_that_match_and_only_those() {
        let chunk = MIN_CHUNK_SIZE as usize;
        let dir = tempfile::tempdir().unwrap();
        let original: Vec<u8> = (0..3 * chunk + 5).map(|i| (i % 251) as u8).collect();
        let mut manifest =
            crate::test_support::manifest_body("check test", &[original.len() as u64]);
        let path = content::file_path(dir.path(), &manifest, 0, true);
        std::fs::write(&path, &original).unwrap();
        let (leaves, _) =
            merkle::hash_leaves(&original[..], manifest.chunk_size, 1, &mut |_| {}).unwrap();
        let tree = MerkleTree::from_leaves(leaves.clone());
        manifest.files[0].root = tree.root();
        let held = Bitfield::new(4);
        let no_proofs = |_| None;

        let whole = check_file(dir.path(), &manifest, 0, Some(&leaves), &held, no_proofs);
        assert_eq!(whole.bits.count_ones(), 4);
        assert_eq!(whole.problem, None);
        assert_eq!(whole.stamp, Some(content::stamp(&path).unwrap()));

        let mut changed = original.clone();
        changed[chunk + 1] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        let found = check_file(dir.path(), &manifest, 0, Some(&leaves), &held, no_proofs);
        assert_eq!(
            (0..4).map(|c| found.bits.get(c)).collect::<Vec<_>>(),
            [true, false, true, true]
        );
        assert!(
            found
                .problem
                .as_deref()
                .unwrap()
                .contains("1 of its 4 chunks"),
            "{found:?}"
        );

        // A file still downloading (at its partial name): its held chunks are checked with
        // their proofs.
        let part = content::file_path(dir.path(), &manifest, 0, false);
        std::fs::rename(&path, &part).unwrap();
        let mut partial = Bitfield::new(4);
        partial.set(1, true);
        partial.set(3, true);
        let found = check_file(dir.path(), &manifest, 0, None, &partial, |c| {
            tree.audit_path(c)
        });
        assert_eq!(found.bits.count_ones(), 1);
        assert!(found.bits.get(3) && !found.bits.get(1));
        std::fs::rename(&part, &path).unwrap();

        std::fs::write(&path, &original[..chunk]).unwrap();
        let short = check_file(dir.path(), &manifest, 0, Some(&leaves), &held, no_proofs);
        assert_eq!(short.bits.count_ones(), 0);
        assert!(short.problem.unwrap().contains("the manifest says"));
    }
}
