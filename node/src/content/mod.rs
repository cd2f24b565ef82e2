//! Content on disk: the files of a manifest under a directory, read and written by chunk.
//!
//! Content stays ordinary files where the user keeps them (seeded in place) or asked for them
//! (downloads). Every path is a `SafePath` joined onto the item's directory, so nothing is read
//! or written outside it; a download's files are created by [`crate::content::output_folder`] and written
//! here without following a link beneath its folder ([`crate::content::beneath`]). These functions
//! block; callers run them on blocking threads.
//!
//! Where a file is, per file: a file of a download that is not yet complete lives at its
//! manifest path with [`PART_SUFFIX`] appended to its last component (`Season 1/ep2.mkv.part`),
//! beside where it will end; the download's end check of that file renames it to its manifest
//! path (atomically, the folder made durable) before its stamp is taken. A file is complete once
//! its leaves are known: seeded files (`add`) always are, so they are never `.part`; files of a
//! download become so one by one, as each is checked whole (episode 1 is at its final name while
//! episode 2 still downloads). [`file_path`] is the one function that says where file `i` is
//! now; every reader and writer goes through it (or through [`open_file`], which adds the
//! fallback below).
//!
//! Invariants:
//! - a download's files are created at their final size before the first chunk is written, and
//!   are never truncated afterwards (resume keeps bytes);
//! - a file at its manifest path is complete: a download never writes a byte there before the
//!   file's end check passed (a complete file that changed on disk and is fetched again is the
//!   one exception: it was complete, and the user asked for it at that name);
//! - a read of a partial file that finds `NAME.part` gone (renamed to `NAME` a moment before,
//!   or, from a data directory of an older version, a partial file kept at `NAME` and renamed to
//!   `NAME.part` when its download resumes) tries the other name, then the first again: a rename
//!   in between never makes a file look gone ([`open_file`]);
//! - [`ChunkFiles::sync`] makes every write before it durable (direct writes included); the
//!   store's bit for a chunk is committed only after that returns;
//! - a download holds at most [`MAX_OPEN_FILES`] files open, whatever its manifest lists.

pub mod beneath;
pub mod opening;
pub mod output_folder;
mod removal;

pub use removal::{RemovedFiles, remove_download_files};

use std::{
    collections::HashMap,
    fs::File,
    io,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

#[cfg(unix)]
use std::os::unix::fs::FileExt as _;

use licet_proto::{
    MerkleHash,
    manifest::Manifest,
    merkle,
    path::{PathError, SafePath},
};

use crate::{content::beneath::Folder, store::FileStamp};

/// What a file of a download has appended to its name until it is complete.
pub const PART_SUFFIX: &str = ".part";

/// The `/`-separated path, relative to the item's folder, where the file the manifest names
/// `path` is on disk: `path` itself once `complete`, `path` + [`PART_SUFFIX`] while not.
fn name_on_disk(path: &SafePath, complete: bool) -> String {
    if complete {
        path.as_str().to_owned()
    } else {
        format!("{path}{PART_SUFFIX}")
    }
}

/// Where file `index` of `manifest` under `dir` is on disk now: its manifest path once
/// `complete`, the same with [`PART_SUFFIX`] appended while not (see the module docs). The one
/// place that decides it.
pub fn file_path(dir: &Path, manifest: &Manifest, index: usize, complete: bool) -> PathBuf {
    let name = name_on_disk(&manifest.files[index].path, complete);
    dir.join(name.split('/').collect::<PathBuf>())
}

/// Both places file `index` of a download may be on disk: its final path, then its partial
/// one (`NAME`, `NAME.part`). Whoever deletes a download's files deletes both.
pub fn paths_on_disk(dir: &Path, manifest: &Manifest, index: usize) -> [PathBuf; 2] {
    [
        file_path(dir, manifest, index, true),
        file_path(dir, manifest, index, false),
    ]
}

/// [`file_path`] as a `SafePath` relative to the folder, to reach the file with
/// [`beneath::Folder`]. Fails only for a partial file whose name would grow over the limits of
/// a path (a last component of more than 250 bytes).
pub fn safe_path_on_disk(path: &SafePath, complete: bool) -> Result<SafePath, PathError> {
    if complete {
        return Ok(path.clone());
    }
    SafePath::new(name_on_disk(path, false))
}

/// Opens file `index` of `manifest` under `dir` for reading where it is now ([`file_path`]),
/// and says where that was. A partial file not found at `NAME.part` is looked for at `NAME`,
/// then at `NAME.part` again: a rename between the two (the download's end check, or the move
/// of a partial file from an older version's layout) never makes it look gone.
pub fn open_file(
    dir: &Path,
    manifest: &Manifest,
    index: usize,
    complete: bool,
) -> Result<(File, PathBuf), (PathBuf, io::Error)> {
    let first = file_path(dir, manifest, index, complete);
    let error = match File::open(&first) {
        Ok(file) => return Ok((file, first)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !complete => e,
        Err(e) => return Err((first, e)),
    };
    let other = file_path(dir, manifest, index, true);
    match File::open(&other) {
        Ok(file) => return Ok((file, other)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err((other, e)),
    }
    match File::open(&first) {
        Ok(file) => Ok((file, first)),
        // Gone under both names: the error of the first look, which names the partial file.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err((first, error)),
        Err(e) => Err((first, e)),
    }
}

/// The size and modification time of a file, to notice later changes.
pub fn stamp(path: &Path) -> io::Result<FileStamp> {
    stamp_of(&std::fs::metadata(path)?)
}

/// The stamp of a file whose metadata is `meta`.
pub fn stamp_of(meta: &std::fs::Metadata) -> io::Result<FileStamp> {
    let modified_ns = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    Ok(FileStamp {
        size: meta.len(),
        modified_ns,
    })
}

/// Why seeded content does not match its manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file has another size than the manifest says.
    #[error("{path} has {actual} bytes, the manifest says {expected}")]
    Size {
        /// The file.
        path: PathBuf,
        /// On disk.
        actual: u64,
        /// In the manifest.
        expected: u64,
    },
    /// A file's content does not hash to the manifest's root.
    #[error("{path} does not match the manifest (its merkle root differs)")]
    Root {
        /// The file.
        path: PathBuf,
    },
}

/// A verified file: its leaf hashes and the stamp it had.
pub struct VerifiedFile {
    /// Leaf hashes, in order.
    pub leaves: Vec<MerkleHash>,
    /// Size and modification time when verified.
    pub stamp: FileStamp,
}

/// Hashes every file of `manifest` under `dir` on all cores and checks sizes and roots.
pub fn verify_all(dir: &Path, manifest: &Manifest) -> Result<Vec<VerifiedFile>, ContentError> {
    let mut verified = Vec::with_capacity(manifest.files.len());
    for (index, entry) in manifest.files.iter().enumerate() {
        // Seeded files are complete by definition: never looked for as `.part`.
        let path = file_path(dir, manifest, index, true);
        let io_error = |source| ContentError::Io {
            path: path.clone(),
            source,
        };
        let before = stamp(&path).map_err(io_error)?;
        if before.size != entry.size {
            return Err(ContentError::Size {
                path,
                actual: before.size,
                expected: entry.size,
            });
        }
        let file = File::open(&path).map_err(io_error)?;
        let (leaves, _) = merkle::hash_file_leaves(
            &file,
            manifest.chunk_size,
            merkle::default_threads(),
            &mut |_| {},
        )
        .map_err(io_error)?;
        if merkle::MerkleTree::from_leaves(leaves.clone()).root() != entry.root {
            return Err(ContentError::Root { path });
        }
        verified.push(VerifiedFile {
            leaves,
            stamp: before,
        });
    }
    Ok(verified)
}

/// Reads chunk `chunk` of file `index` where it is now ([`open_file`]) into `buffer`
/// (replacing its contents); on an error, the path it was read from.
pub fn read_chunk(
    dir: &Path,
    manifest: &Manifest,
    index: usize,
    complete: bool,
    chunk: u64,
    buffer: &mut Vec<u8>,
) -> Result<(), (PathBuf, io::Error)> {
    let (file, path) = open_file(dir, manifest, index, complete)?;
    read_chunk_from(&file, manifest, index, chunk, buffer).map_err(|e| (path, e))
}

/// Reads chunk `chunk` of file `index` from `file` (opened with [`open_file`]) into `buffer`
/// (replacing its contents).
pub fn read_chunk_from(
    file: &File,
    manifest: &Manifest,
    index: usize,
    chunk: u64,
    buffer: &mut Vec<u8>,
) -> io::Result<()> {
    let entry = &manifest.files[index];
    let range = merkle::chunk_range(chunk, entry.size, manifest.chunk_size)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk index out of range"))?;
    // Whatever the buffer holds is overwritten: only growth is zero-filled.
    let len = (range.end - range.start) as usize;
    buffer.truncate(len);
    buffer.resize(len, 0);
    read_exact_at(file, buffer, range.start)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buffer, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
}

/// Why a download's file could not be moved to the name it should have now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenameError {
    /// The partial file's name would be longer than a path may be.
    #[error("{path}: the name is too long to add {PART_SUFFIX} to it ({source})")]
    Name {
        /// The file's final path.
        path: PathBuf,
        /// Why the longer name is not a valid path.
        source: PathError,
    },
    /// The folder refused the rename (or a link or non-file is in the way).
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
        /// Why.
        source: beneath::BeneathError,
    },
}

/// Renames the partial file of file `index` (`NAME.part`) to its final name `NAME`, replacing
/// a regular file there, and makes the rename durable; the caller has checked the file whole.
/// Neither name is followed if it is a link. Blocks.
/// A file already at its final name with no partial one (renamed before a crash or a failed
/// commit) is left as it is.
pub fn rename_to_final(dir: &Path, manifest: &Manifest, index: usize) -> Result<(), RenameError> {
    let [final_path, part_path] = paths_on_disk(dir, manifest, index);
    if std::fs::symlink_metadata(&part_path).is_err() && is_regular_file(&final_path) {
        return Ok(());
    }
    rename_file(dir, manifest, index, false)
}

/// Whether `path` is a regular file (not followed if a link).
fn is_regular_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file())
}

/// Moves the partial file of a download from an older version's layout, kept at `NAME`, to
/// `NAME.part`, if `NAME.part` does not exist and `NAME` is a regular file; whether it moved.
/// Only for a file whose leaves are not known (never checked whole). Blocks.
pub fn move_partial_from_final_name(
    dir: &Path,
    manifest: &Manifest,
    index: usize,
) -> Result<bool, RenameError> {
    let [final_path, part_path] = paths_on_disk(dir, manifest, index);
    if std::fs::symlink_metadata(&part_path).is_ok() || !is_regular_file(&final_path) {
        return Ok(false);
    }
    rename_file(dir, manifest, index, true).map(|()| true)
}

/// Renames file `index` from its partial name to its final one (`from_final` false) or back.
fn rename_file(
    dir: &Path,
    manifest: &Manifest,
    index: usize,
    from_final: bool,
) -> Result<(), RenameError> {
    let path = &manifest.files[index].path;
    let part = safe_path_on_disk(path, false).map_err(|source| RenameError::Name {
        path: file_path(dir, manifest, index, true),
        source,
    })?;
    let (from, to) = if from_final {
        (path, &part)
    } else {
        (&part, path)
    };
    let failed = |source| RenameError::Rename {
        from: file_path(dir, manifest, index, from_final),
        to: file_path(dir, manifest, index, !from_final),
        source,
    };
    let folder = Folder::open(dir).map_err(failed)?;
    folder.rename_beside(from, to).map_err(failed)
}

/// Alignment of direct writes: file offset, length and memory address. 4 KiB is the logical
/// block size of every common disk and filesystem (a chunk is at least 16 KiB and a power of
/// two, so every chunk but a file's last starts and ends on it).
pub const DIRECT_ALIGN: usize = 4096;

/// Most files of one download kept open for writing at once (each holds two descriptors). A
/// manifest may list 100,000 files, far over a process's usual limit of 1,024 descriptors.
pub const MAX_OPEN_FILES: usize = 64;

/// One file of a download, opened for writing.
struct OpenFile {
    /// Ordinary writes, through the page cache: a file's last chunk when it is not a whole
    /// number of blocks, and everything if direct writes are not available.
    buffered: File,
    /// The same file opened for direct writes (`O_DIRECT`), if the filesystem allows it.
    direct: Option<File>,
}

/// Open files of one download, for writing chunks.
///
/// Chunks are written with direct I/O where the platform and filesystem allow it: a verified
/// chunk goes from a reused, aligned staging buffer to the disk without passing through the page
/// cache. Copying each chunk into freshly allocated page-cache pages was the largest single cost
/// of a download (39% of the downloader's CPU in a 1 GiB profile), and a download that is written
/// once and fsynced in batches gains nothing from those pages. A file whose filesystem refuses
/// direct writes (tmpfs on older kernels, some network filesystems) is written through the page
/// cache as before; so is any write that is not block-aligned.
pub struct ChunkFiles {
    dir: PathBuf,
    /// `dir`, opened at the first write: files are opened beneath it, never through a link.
    folder: Option<Folder>,
    open: HashMap<usize, OpenFile>,
    dirty: Vec<usize>,
    /// Staging for direct writes: `chunk_size + DIRECT_ALIGN` bytes, of which an aligned window
    /// is used. Allocated on the first direct write and reused for every later one.
    staging: Vec<u8>,
    /// Cleared when the filesystem refuses a direct write, so later writes go buffered at once.
    direct_allowed: bool,
    /// Called with each file's index before its `sync_data`; its error fails the sync as the
    /// file system's would (tests: a sync that fails, and the order of syncs and commits).
    #[cfg(test)]
    before_sync: Option<SyncHook>,
}

/// See `ChunkFiles::before_sync`.
#[cfg(test)]
pub(crate) type SyncHook = Box<dyn FnMut(usize) -> io::Result<()> + Send>;

impl ChunkFiles {
    /// Writes chunks of the download in `dir`.
    pub fn new(dir: PathBuf) -> ChunkFiles {
        ChunkFiles {
            dir,
            folder: None,
            open: HashMap::new(),
            dirty: Vec::new(),
            staging: Vec::new(),
            direct_allowed: cfg!(target_os = "linux"),
            #[cfg(test)]
            before_sync: None,
        }
    }

    /// Runs `hook` before each file's `sync_data` from now on.
    #[cfg(test)]
    pub(crate) fn before_sync(&mut self, hook: SyncHook) {
        self.before_sync = Some(hook);
    }

    /// How many files are open now.
    #[cfg(test)]
    fn open_files(&self) -> usize {
        self.open.len()
    }

    /// Writes `bytes` at chunk `chunk` of file `index` (not yet durable), where the file is now
    /// ([`file_path`]: `NAME.part` unless `complete`). A file stays open across its rename to
    /// its final name: the handle follows it.
    pub fn write(
        &mut self,
        manifest: &Manifest,
        index: usize,
        complete: bool,
        chunk: u64,
        bytes: &[u8],
    ) -> io::Result<()> {
        let offset = chunk * u64::from(manifest.chunk_size);
        if !self.open.contains_key(&index) {
            if self.open.len() >= MAX_OPEN_FILES {
                // Closing a file does not make its writes durable: flush them first.
                self.sync()?;
                self.open.clear();
            }
            let folder = match &mut self.folder {
                Some(folder) => folder,
                empty => empty.insert(Folder::open(&self.dir).map_err(io::Error::other)?),
            };
            // A file under one block has no chunk to write directly.
            let want_direct =
                self.direct_allowed && manifest.files[index].size >= DIRECT_ALIGN as u64;
            let on_disk = safe_path_on_disk(&manifest.files[index].path, complete)
                .map_err(io::Error::other)?;
            let (buffered, direct) = folder
                .open_for_chunks(&on_disk, want_direct)
                .map_err(io::Error::other)?;
            let direct = match direct {
                Some(Ok(direct)) => Some(direct),
                Some(Err(e)) => {
                    // Refused by the filesystem (or the platform): not asked again.
                    let path = file_path(&self.dir, manifest, index, complete);
                    tracing::debug!("{}: no direct writes ({e})", path.display());
                    self.direct_allowed = false;
                    None
                }
                None => None,
            };
            self.open.insert(index, OpenFile { buffered, direct });
        }
        let Some(file) = self.open.get(&index) else {
            return Err(io::Error::other("file handle vanished"));
        };
        let aligned =
            bytes.len().is_multiple_of(DIRECT_ALIGN) && offset.is_multiple_of(DIRECT_ALIGN as u64);
        let mut written = false;
        if let (Some(direct), true, true) = (&file.direct, aligned, self.direct_allowed) {
            let window = aligned_window(&mut self.staging, bytes.len());
            window.copy_from_slice(bytes);
            match write_all_at(direct, window, offset) {
                Ok(()) => written = true,
                // The filesystem opened the file for direct I/O but refuses the write itself:
                // write this one and every later one through the page cache.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    tracing::debug!(
                        "direct write refused ({e}); writing through the page cache from now on"
                    );
                    self.direct_allowed = false;
                }
                Err(e) => return Err(e),
            }
        }
        if !written {
            write_all_at(&file.buffered, bytes, offset)?;
        }
        if !self.dirty.contains(&index) {
            self.dirty.push(index);
        }
        Ok(())
    }

    /// Makes every write so far durable (direct writes included: they bypass the page cache, but
    /// the disk's cache and the file's block allocation still need the flush).
    pub fn sync(&mut self) -> io::Result<()> {
        for index in self.dirty.drain(..) {
            if let Some(file) = self.open.get(&index) {
                #[cfg(test)]
                if let Some(hook) = &mut self.before_sync {
                    hook(index)?;
                }
                file.buffered.sync_data()?;
            }
        }
        Ok(())
    }
}

/// The `len` bytes of `staging` that start at a `DIRECT_ALIGN`-aligned address, growing it the
/// first time (and whenever a longer window is asked for).
fn aligned_window(staging: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if staging.len() < len + DIRECT_ALIGN {
        *staging = vec![0; len + DIRECT_ALIGN];
    }
    let start = staging.as_ptr().align_offset(DIRECT_ALIGN);
    &mut staging[start..start + len]
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    file.write_all_at(bytes, offset)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use licet_proto::manifest::MIN_CHUNK_SIZE;

    use super::*;

    fn manifest(sizes: &[u64]) -> Manifest {
        crate::test_support::manifest_body("content test", sizes)
    }

    /// Bytes that differ from chunk to chunk and file to file.
    fn pattern(file: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + file * 7) as u8).collect()
    }

    #[test]
    fn chunks_written_in_any_order_read_back_as_the_files() {
        let chunk = MIN_CHUNK_SIZE as usize;
        // Whole chunks (written directly where the filesystem allows), a short last chunk of a
        // whole number of blocks, a short last chunk that is not, and a file under one block.
        let sizes = [
            4 * chunk as u64,
            2 * chunk as u64 + DIRECT_ALIGN as u64,
            chunk as u64 + 100,
            10,
        ];
        let manifest = manifest(&sizes);
        let dir = tempfile::tempdir().unwrap();
        crate::content::output_folder::create_all(dir.path(), &manifest);
        let mut files = ChunkFiles::new(dir.path().to_path_buf());
        let contents: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| pattern(i, size as usize))
            .collect();
        for (index, content) in contents.iter().enumerate() {
            let chunks: Vec<&[u8]> = content.chunks(chunk).collect();
            // Last chunk first, then the rest backwards: offsets, not order, place the bytes.
            for (number, bytes) in chunks.iter().enumerate().rev() {
                files
                    .write(&manifest, index, false, number as u64, bytes)
                    .unwrap();
            }
        }
        files.sync().unwrap();
        for (index, content) in contents.iter().enumerate() {
            let on_disk = std::fs::read(file_path(dir.path(), &manifest, index, false)).unwrap();
            assert_eq!(on_disk.len(), content.len(), "size of file {index}");
            assert!(on_disk == *content, "bytes of file {index} differ");
            let mut buffer = Vec::new();
            read_chunk(dir.path(), &manifest, index, false, 0, &mut buffer).unwrap();
            assert_eq!(buffer[..], content[..content.len().min(chunk)]);
        }
    }

    #[test]
    fn a_download_of_many_files_keeps_few_open() {
        let sizes = vec![100; MAX_OPEN_FILES * 3];
        let manifest = manifest(&sizes);
        let dir = tempfile::tempdir().unwrap();
        crate::content::output_folder::create_all(dir.path(), &manifest);
        let mut files = ChunkFiles::new(dir.path().to_path_buf());
        for index in 0..sizes.len() {
            files
                .write(&manifest, index, false, 0, &pattern(index, 100))
                .unwrap();
            assert!(files.open_files() <= MAX_OPEN_FILES);
        }
        files.sync().unwrap();
        for index in 0..sizes.len() {
            let on_disk = std::fs::read(file_path(dir.path(), &manifest, index, false)).unwrap();
            assert!(
                on_disk == pattern(index, 100),
                "bytes of file {index} differ"
            );
        }
    }

    #[test]
    fn the_staging_window_is_aligned_and_reused() {
        let mut staging = Vec::new();
        let first = aligned_window(&mut staging, 3 * DIRECT_ALIGN);
        assert_eq!(first.len(), 3 * DIRECT_ALIGN);
        assert_eq!(first.as_ptr() as usize % DIRECT_ALIGN, 0);
        let address = staging.as_ptr();
        let second = aligned_window(&mut staging, DIRECT_ALIGN);
        assert_eq!(second.len(), DIRECT_ALIGN);
        assert_eq!(second.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert_eq!(
            staging.as_ptr(),
            address,
            "a shorter window reuses the buffer"
        );
    }

    #[test]
    fn a_partial_file_is_kept_beside_its_final_name_and_renamed_when_complete() {
        let mut m = manifest(&[10, 20]);
        m.files[1].path = SafePath::new("Season 1/ep2.mkv").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        assert_eq!(file_path(out, &m, 1, true), out.join("Season 1/ep2.mkv"));
        assert_eq!(
            file_path(out, &m, 1, false),
            out.join("Season 1/ep2.mkv.part")
        );
        assert_eq!(
            paths_on_disk(out, &m, 1),
            [
                out.join("Season 1/ep2.mkv"),
                out.join("Season 1/ep2.mkv.part")
            ]
        );
        crate::content::output_folder::create_all(out, &m);
        let [final_path, part_path] = paths_on_disk(out, &m, 1);
        assert!(part_path.exists() && !final_path.exists());
        rename_to_final(out, &m, 1).unwrap();
        assert!(final_path.exists() && !part_path.exists());
        // Once more (a retried end check): the file stays where it is.
        rename_to_final(out, &m, 1).unwrap();
        assert!(final_path.exists());
        // A partial file of an older version, at the final name, moves to the partial one once.
        assert!(move_partial_from_final_name(out, &m, 1).unwrap());
        assert!(part_path.exists() && !final_path.exists());
        assert!(!move_partial_from_final_name(out, &m, 1).unwrap());
        // Read where it is now, or under its other name if renamed meanwhile.
        let mut buffer = Vec::new();
        read_chunk(out, &m, 1, false, 0, &mut buffer).unwrap();
        rename_to_final(out, &m, 1).unwrap();
        read_chunk(out, &m, 1, false, 0, &mut buffer).unwrap();
        std::fs::remove_file(&final_path).unwrap();
        let (path, error) = read_chunk(out, &m, 1, false, 0, &mut buffer).unwrap_err();
        assert_eq!((path, error.kind()), (part_path, io::ErrorKind::NotFound));
    }
}
