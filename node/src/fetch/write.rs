//! A download's writer: verified chunks written in batches, made durable, and only then
//! committed to the store; and the end of each file, when it is checked whole.
//!
//! A file is written at its partial name (`NAME.part`, see `content`) until its end check: as
//! soon as a batch brings in its last chunk, its leaves must make the manifest's root, and only
//! then is it renamed to `NAME`, its stamp taken, and its proof tree set (in that order, so
//! serving reads it at `NAME` only once it is there). The download's end ([`finish`]) checks
//! every file again the same way (those completed meanwhile cost a lookup of their leaves), so a
//! file left partial by a crash or a failed commit is completed then. A partial file that an
//! older version kept at `NAME` is moved to `NAME.part` when its download resumes.

use std::{path::Path, sync::Arc, time::Instant};

use licet_proto::{
    manifest::VerifiedManifest,
    merkle::{self, AuditPath},
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    FetchContext, FetchNet, WRITE_BATCH, blocking, database_problem, download::VerifiedChunk,
    schedule::ChunkRef,
};
use crate::{
    content::{self, ChunkFiles},
    items::Item,
    store::{CommittedChunk, Compaction, RecordState, Store, proof_tree::ProofTree},
};

/// Writes verified chunks in batches: write, make durable, then commit the bits. The time from
/// `requested` (when the download was asked for) to the first committed batch goes to the
/// first-chunk histogram.
pub(super) async fn write_chunks<N: FetchNet>(
    ctx: Arc<FetchContext<N>>,
    item: Arc<Item>,
    mut verified: mpsc::Receiver<VerifiedChunk>,
    requested: Instant,
) -> Result<(), String> {
    let mut first_batch = Some(requested);
    move_partial_files(&item).await?;
    let mut files = Some(ChunkFiles::new(item.dir().to_path_buf()));
    while let Some(first) = verified.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match verified.try_recv() {
                Ok(chunk) => batch.push(chunk),
                Err(_) => break,
            }
        }
        let Some(mut chunk_files) = files.take() else {
            return Err("the chunk files are gone".to_owned());
        };
        // Where each file is written: complete files (fetched again after they changed on disk)
        // at their final name, the others at their partial one.
        let complete = {
            let live = item.live();
            (0..live.have.len())
                .map(|index| live.file_complete(index))
                .collect::<Vec<bool>>()
        };
        let store = ctx.store.clone();
        let writing = item.clone();
        let (chunk_files, batch, result) = blocking(move || {
            // The proofs move to the store; what is used of the batch after this is the chunks
            // and their peers.
            let committed: Vec<CommittedChunk> = batch
                .iter_mut()
                .map(|c| CommittedChunk {
                    file: c.chunk.0,
                    chunk: c.chunk.1,
                    proof: AuditPath(std::mem::take(&mut c.proof.0)),
                    leaf: c.leaf,
                })
                .collect();
            let result = write_batch(
                &mut chunk_files,
                &store,
                writing.manifest(),
                writing.dir(),
                &complete,
                batch.iter().map(|c| (c.chunk, c.reply.payload())),
                &committed,
            );
            (chunk_files, batch, result)
        })
        .await?;
        files = Some(chunk_files);
        result?;
        let count = batch.len() as u64;
        let mut finished_files = {
            // The bits and the count change under one lock, so that a reader of both (`ls`)
            // never sees a chunk held that is not counted as fetched.
            let mut live = item.live();
            for chunk in &batch {
                live.have[chunk.chunk.0 as usize].set(chunk.chunk.1, true);
            }
            item.count_fetched(count);
            batch
                .iter()
                .map(|chunk| chunk.chunk.0 as usize)
                .filter(|&file| {
                    let bits = &live.have[file];
                    bits.count_ones() == bits.len() && !live.file_complete(file)
                })
                .collect::<Vec<usize>>()
        };
        finished_files.sort_unstable();
        finished_files.dedup();
        for file in finished_files {
            complete_file(&ctx, &item, file).await?;
        }
        if let Some(requested) = first_batch.take() {
            ctx.metrics
                .first_chunk
                .observe(requested.elapsed().as_secs_f64());
        }
        ctx.metrics.chunks_fetched.inc_by(count);
        item.add_sources(batch.iter().map(|chunk| chunk.peer));
    }
    Ok(())
}

/// Writes a batch of verified chunks (each with its bytes), makes the writes durable, and only
/// then commits their bits (`committed`) to the store: a crash or a failed flush in between
/// leaves the bits unset, so the chunks are fetched again; a bit is never set for bytes that may
/// not be on disk.
fn write_batch<'a>(
    files: &mut ChunkFiles,
    store: &Store,
    verified: &VerifiedManifest,
    dir: &Path,
    complete: &[bool],
    writes: impl IntoIterator<Item = (ChunkRef, &'a [u8])>,
    committed: &[CommittedChunk],
) -> Result<(), String> {
    let manifest = verified.manifest();
    for ((file, index), bytes) in writes {
        let file = file as usize;
        let complete = complete.get(file).copied().unwrap_or(false);
        files
            .write(manifest, file, complete, index, bytes)
            .map_err(|e| {
                format!(
                    "cannot write {}: {e}",
                    content::file_path(dir, manifest, file, complete).display()
                )
            })?;
    }
    // Durable first, then the bits: a crash in between re-fetches, never lies.
    files
        .sync()
        .map_err(|e| format!("cannot flush {}: {e}", dir.display()))?;
    store
        .commit_chunks(&verified.id(), committed)
        .map_err(database_problem)
}

/// Moves each partial file an older version kept at its final name to its partial name
/// (`content::move_partial_from_final_name`), before anything is written.
async fn move_partial_files(item: &Arc<Item>) -> Result<(), String> {
    let partial: Vec<usize> = {
        let live = item.live();
        (0..live.have.len())
            .filter(|&index| !live.file_complete(index))
            .collect()
    };
    if partial.is_empty() {
        return Ok(());
    }
    let moving = item.clone();
    blocking(move || {
        let manifest = moving.manifest().manifest();
        for index in partial {
            if content::move_partial_from_final_name(moving.dir(), manifest, index)
                .map_err(|e| e.to_string())?
            {
                info!(
                    id = %moving.id(),
                    "partial file moved to {}",
                    content::file_path(moving.dir(), manifest, index, false).display()
                );
            }
        }
        Ok::<_, String>(())
    })
    .await?
}

/// Completes file `index` of `item`, whose every chunk is held: its leaves (those of its
/// verified chunks, or, for chunks committed without one, hashed from disk once more) must
/// make the manifest's root; then a partial file is renamed to its final name, its stamp is
/// taken, its proof tree is set, and its leaves are stored.
async fn complete_file<N: FetchNet>(
    ctx: &Arc<FetchContext<N>>,
    item: &Arc<Item>,
    index: usize,
) -> Result<(), String> {
    let manifest = item.manifest().manifest();
    let id = item.id();
    let entry = &manifest.files[index];
    let was_complete = item.live().file_complete(index);
    let chunk_size = manifest.chunk_size;
    let chunks = entry.chunk_count(chunk_size);
    let store = ctx.store.clone();
    let reading = item.clone();
    let (leaves, from_disk) = blocking(move || {
        let known = match store.leaves(&id, index as u32) {
            Ok(None) => store.chunk_leaves(&id, index as u32, chunks),
            known => known,
        }
        .map_err(database_problem)?;
        let from_disk = known.is_none();
        let leaves = match known {
            Some(leaves) => leaves,
            None => {
                let manifest = reading.manifest().manifest();
                let (file, path) = content::open_file(reading.dir(), manifest, index, was_complete)
                    .map_err(|(path, e)| format!("cannot read {}: {e}", path.display()))?;
                merkle::hash_file_leaves(&file, chunk_size, merkle::default_threads(), &mut |_| {})
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                    .0
            }
        };
        Ok::<_, String>((leaves, from_disk))
    })
    .await??;
    let tree = ProofTree::new(id, index as u32, &leaves);
    if tree.root() != entry.root {
        let path = content::file_path(item.dir(), manifest, index, was_complete);
        return Err(if from_disk {
            format!(
                "{} does not match the manifest after download (changed on disk?)",
                path.display()
            )
        } else {
            format!(
                "the stored leaves of {}'s verified chunks do not make the manifest's root \
                 (node database damaged?)",
                path.display()
            )
        });
    }
    let renaming = item.clone();
    let stamp = blocking(move || {
        let manifest = renaming.manifest().manifest();
        if !was_complete {
            content::rename_to_final(renaming.dir(), manifest, index).map_err(|e| e.to_string())?;
        }
        let path = content::file_path(renaming.dir(), manifest, index, true);
        content::stamp(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    })
    .await??;
    {
        // The tree serves proofs from now on; set before the per-chunk proofs are dropped,
        // so no chunk request in between finds neither (until `complete_file` has stored
        // the tree's leaf blocks, serving falls back to the chunk's stored proof). With it
        // the file counts as complete, at its final name: it is there already.
        let mut live = item.live();
        live.trees[index] = Some(Arc::new(tree));
        live.stamps[index] = Some(stamp);
    }
    let store = ctx.store.clone();
    blocking(move || store.complete_file(&id, index as u32, &leaves))
        .await?
        .map_err(database_problem)?;
    if !was_complete {
        debug!(%id, "file complete: {}", entry.path);
    }
    Ok(())
}

/// Completes every file of a finished download ([`complete_file`]; again for those completed
/// meanwhile, so each one's stamp is the one it has now), and marks the item complete.
pub(super) async fn finish<N: FetchNet>(
    ctx: &Arc<FetchContext<N>>,
    item: &Arc<Item>,
) -> Result<(), String> {
    for index in 0..item.manifest().manifest().files.len() {
        complete_file(ctx, item, index).await?;
    }
    {
        let mut live = item.live();
        live.state = RecordState::Complete;
        live.error = None;
    }
    let (store, saving) = (ctx.store.clone(), item.clone());
    blocking(move || saving.save(&store))
        .await?
        .map_err(database_problem)?;
    info!(id = %item.id(), "download complete: {}", item.dir().display());
    // In the background: the download is complete now, whatever the compaction takes.
    tokio::spawn(compact_store(ctx.store.clone()));
    Ok(())
}

/// Gives the space of the completed download's proofs back to the file system (see
/// `store::compaction`; every store call waits while it runs). Only logged: a compaction not
/// done costs disk space, nothing else.
async fn compact_store(store: Arc<Store>) {
    match blocking(move || store.compact()).await {
        Ok(Ok(Compaction::Done { before, after })) => {
            info!("node database compacted from {before} to {after} bytes");
        }
        Ok(Ok(other)) => debug!("node database not compacted: {other:?}"),
        Ok(Err(e)) => warn!("cannot compact the node database: {e}"),
        Err(problem) => warn!("cannot compact the node database: {problem}"),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        path::PathBuf,
        sync::{Arc, Mutex},
    };

    use licet_proto::{MerkleHash, Timestamp, manifest::MIN_CHUNK_SIZE, wire::Bitfield};

    use super::*;
    use crate::{
        store::{ContentOrigin, ContentRecord, FileState, RecordState},
        test_support,
    };

    const CHUNKS: u64 = 3;

    /// A download of two files of three chunks: its files created in `dir`/content, its record
    /// (no chunk held) in a new store.
    fn download(dir: &Path) -> (Arc<Store>, VerifiedManifest, PathBuf) {
        let size = CHUNKS * u64::from(MIN_CHUNK_SIZE);
        let manifest = test_support::manifest_body("durable", &[size, size])
            .sign(&test_support::publisher(), None)
            .unwrap();
        let content = dir.join("content");
        std::fs::create_dir(&content).unwrap();
        crate::content::output_folder::create_all(&content, manifest.manifest());
        let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
        let record = ContentRecord {
            dir: content.clone(),
            origin: ContentOrigin::Downloaded,
            state: RecordState::Downloading,
            error: None,
            added_at: Timestamp(1_700_000_100),
            file_stamps: vec![],
        };
        let files = vec![
            FileState {
                bitfield: Bitfield::new(CHUNKS),
                leaves: None,
            };
            2
        ];
        store.content_put(&manifest, &record, &files).unwrap();
        (store, manifest, content)
    }

    /// Chunks and their bytes.
    type Writes = Vec<(ChunkRef, Vec<u8>)>;

    /// Chunk 0 of file 0 and chunk 2 of file 1: their bytes and what is committed for them.
    fn batch() -> (Writes, Vec<CommittedChunk>) {
        let refs: [ChunkRef; 2] = [(0, 0), (1, 2)];
        let writes = refs
            .iter()
            .map(|&(file, chunk)| ((file, chunk), vec![file as u8 + 1; MIN_CHUNK_SIZE as usize]))
            .collect();
        let committed = refs
            .iter()
            .map(|&(file, chunk)| CommittedChunk {
                file,
                chunk,
                proof: AuditPath(vec![MerkleHash([7; 32]); 2]),
                leaf: MerkleHash([file as u8; 32]),
            })
            .collect();
        (writes, committed)
    }

    /// Writes [`batch`] through `files` with [`write_batch`]; its result, and the bytes written.
    fn write_the_batch(
        files: &mut ChunkFiles,
        store: &Store,
        manifest: &VerifiedManifest,
        content: &Path,
    ) -> (Result<(), String>, Writes) {
        let (writes, committed) = batch();
        let result = write_batch(
            files,
            store,
            manifest,
            content,
            &[false, false],
            writes
                .iter()
                .map(|(chunk, bytes)| (*chunk, bytes.as_slice())),
            &committed,
        );
        (result, writes)
    }

    /// The chunks `store` holds of each file of `manifest`.
    fn held(store: &Store, manifest: &VerifiedManifest) -> Vec<u64> {
        (0..2)
            .map(|file| {
                store
                    .bitfield(&manifest.id(), file)
                    .unwrap()
                    .expect("the file is recorded")
                    .count_ones()
            })
            .collect()
    }

    #[test]
    fn a_failed_flush_commits_no_bit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, manifest, content) = download(dir.path());
        let mut files = ChunkFiles::new(content.clone());
        files.before_sync(Box::new(|_| Err(io::Error::other("the disk went away"))));
        let (result, _) = write_the_batch(&mut files, &store, &manifest, &content);
        let error = result.expect_err("a failed flush fails the batch");
        assert!(
            error.contains("cannot flush") && error.contains("the disk went away"),
            "{error}"
        );
        assert_eq!(
            held(&store, &manifest),
            [0, 0],
            "a bit was committed for bytes that were not made durable"
        );
    }

    #[test]
    fn bits_are_committed_only_after_the_bytes_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (store, manifest, content) = download(dir.path());
        let mut files = ChunkFiles::new(content.clone());
        // At each file's sync: which file, and how many chunks the store holds at that moment.
        let syncs = Arc::new(Mutex::new(Vec::new()));
        let (seen, watched, id) = (syncs.clone(), store.clone(), manifest.id());
        files.before_sync(Box::new(move |file| {
            let held: u64 = (0..2)
                .map(|f| {
                    watched
                        .bitfield(&id, f)
                        .ok()
                        .flatten()
                        .map_or(0, |b| b.count_ones())
                })
                .sum();
            seen.lock().unwrap().push((file, held));
            Ok(())
        }));
        let (result, writes) = write_the_batch(&mut files, &store, &manifest, &content);
        result.expect("the batch is written");
        let mut syncs = syncs.lock().unwrap().clone();
        syncs.sort();
        assert_eq!(
            syncs,
            [(0, 0), (1, 0)],
            "each written file is synced, and before any bit is committed"
        );
        assert_eq!(held(&store, &manifest), [1, 1], "the bits are committed");
        for ((file, chunk), bytes) in &writes {
            let on_disk = std::fs::read(content::file_path(
                &content,
                manifest.manifest(),
                *file as usize,
                false,
            ))
            .unwrap();
            let at = *chunk as usize * MIN_CHUNK_SIZE as usize;
            assert!(on_disk[at..at + bytes.len()] == bytes[..]);
        }
    }
}
