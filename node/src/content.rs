//! Content on disk: the files of a manifest under a directory, read and written by chunk.
//!
//! Content stays ordinary files where the user keeps them (seeded in place) or asked for them
//! (downloads). Every path is a `SafePath` joined onto the item's directory, so nothing is read
//! or written outside it. These functions block; callers run them on blocking threads.
//!
//! Invariants:
//! - a download's files are created at their final size before the first chunk is written, and
//!   an existing file is never truncated below a chunk already written (resume keeps bytes);
//! - [`ChunkFiles::sync`] makes every write before it durable; the store's bit for a chunk is
//!   committed only after that returns.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

#[cfg(unix)]
use std::os::unix::fs::FileExt as _;

use licet_proto::{MerkleHash, manifest::Manifest, merkle};

use crate::store::FileStamp;

/// The path of file `index` of `manifest` under `dir`.
pub fn file_path(dir: &Path, manifest: &Manifest, index: usize) -> PathBuf {
    dir.join(manifest.files[index].path.to_relative_path())
}

/// The size and modification time of a file, to notice later changes.
pub fn stamp(path: &Path) -> io::Result<FileStamp> {
    let meta = std::fs::metadata(path)?;
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
        let path = file_path(dir, manifest, index);
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

/// Creates the directories and files of a download at their final sizes (keeping what an
/// earlier attempt wrote).
pub fn prepare_download(dir: &Path, manifest: &Manifest) -> io::Result<()> {
    for (index, entry) in manifest.files.iter().enumerate() {
        let path = file_path(dir, manifest, index);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if file.metadata()?.len() != entry.size {
            file.set_len(entry.size)?;
        }
    }
    Ok(())
}

/// Reads chunk `chunk` of file `index` into `buffer` (replacing its contents).
pub fn read_chunk(
    dir: &Path,
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
    let file = File::open(file_path(dir, manifest, index))?;
    read_exact_at(&file, buffer, range.start)
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

/// Open files of one download, for writing chunks.
pub struct ChunkFiles {
    dir: PathBuf,
    open: HashMap<usize, File>,
    dirty: Vec<usize>,
}

impl ChunkFiles {
    /// Writes chunks of the download in `dir`.
    pub fn new(dir: PathBuf) -> ChunkFiles {
        ChunkFiles {
            dir,
            open: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    /// Writes `bytes` at chunk `chunk` of file `index` (not yet durable).
    pub fn write(
        &mut self,
        manifest: &Manifest,
        index: usize,
        chunk: u64,
        bytes: &[u8],
    ) -> io::Result<()> {
        let offset = chunk * u64::from(manifest.chunk_size);
        if !self.open.contains_key(&index) {
            let file = OpenOptions::new()
                .write(true)
                .open(file_path(&self.dir, manifest, index))?;
            self.open.insert(index, file);
        }
        let Some(file) = self.open.get(&index) else {
            return Err(io::Error::other("file handle vanished"));
        };
        write_all_at(file, bytes, offset)?;
        if !self.dirty.contains(&index) {
            self.dirty.push(index);
        }
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        for index in self.dirty.drain(..) {
            if let Some(file) = self.open.get(&index) {
                file.sync_data()?;
            }
        }
        Ok(())
    }
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
