//! `create --encrypt`: a release's files encrypted with a fresh content key, into a folder of
//! ciphertext the publisher then seeds like any content (`licet-node add`).
//!
//! Invariants: each file's ciphertext is written to a temporary file in its final folder and
//! renamed into place only once complete and synced, so the folder never holds a partial
//! ciphertext under a real name; the content key is fresh for every release (never derived
//! from the content) and is written only to a file of mode 0600; file *i* is encrypted with
//! the subkey of index *i*, its position in the manifest.

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use indicatif::ProgressBar;
use licet_proto::{
    encryption::{ContentKey, TAG_BYTES, ciphertext_size, segment_count},
    path::SafePath,
};

use crate::{CliError, files};

/// One plaintext file to encrypt.
pub struct PlainFile<'a> {
    /// Its path in the manifest (and under the ciphertext folder).
    pub path: &'a SafePath,
    /// Where it is.
    pub disk: &'a Path,
    /// Its size when listed.
    pub size: u64,
}

/// Makes `dir` for the ciphertext: it must not exist, or be an empty folder.
pub fn prepare_folder(dir: &Path) -> Result<(), CliError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CliError::usage(anyhow!(
                    "{} is not empty; --encrypt writes the encrypted files into a new or empty folder",
                    files::shown(dir)
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", files::shown(dir)))
            .map_err(CliError::io),
        Err(e) => Err(CliError::io(
            anyhow::Error::new(e).context(format!("cannot read {}", files::shown(dir))),
        )),
    }
}

/// Encrypts file number `index` of the release into `dir`, returning where its ciphertext is.
pub fn encrypt_file(
    key: &ContentKey,
    index: u64,
    chunk_size: u32,
    file: &PlainFile<'_>,
    dir: &Path,
    progress: &ProgressBar,
) -> Result<PathBuf, CliError> {
    let target = dir.join(file.path.as_str());
    let parent = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", files::shown(parent)))
        .map_err(CliError::io)?;
    let cipher = key.file_cipher(index, chunk_size);
    let segment = cipher.segment_bytes() as usize;
    let count = segment_count(file.size, chunk_size);
    let mut input = std::fs::File::open(file.disk)
        .with_context(|| format!("cannot open {}", files::shown(file.disk)))
        .map_err(CliError::io)?;
    let mut output = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot create a temporary file in {}", files::shown(parent)))
        .map_err(CliError::io)?;
    let write_failed = || format!("cannot write {}", files::shown(&target));
    let mut buffer = Vec::with_capacity(segment + TAG_BYTES as usize);
    let mut read_total = 0u64;
    for i in 0..count {
        buffer.clear();
        buffer.resize(segment, 0);
        let mut filled = 0;
        while filled < segment {
            let n = input
                .read(&mut buffer[filled..])
                .with_context(|| format!("cannot read {}", files::shown(file.disk)))
                .map_err(CliError::io)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buffer.truncate(filled);
        read_total += filled as u64;
        let last = i + 1 == count;
        if (!last && filled < segment) || (last && read_total != file.size) {
            return Err(changed(file, read_total));
        }
        cipher.seal_segment(i, last, &mut buffer);
        output
            .write_all(&buffer)
            .with_context(write_failed)
            .map_err(CliError::io)?;
        progress.inc(filled as u64);
    }
    // Bytes past the listed size mean the file grew while it was read.
    if input.read(&mut [0u8; 1]).map(|n| n > 0).unwrap_or(false) {
        return Err(changed(file, read_total + 1));
    }
    output
        .as_file()
        .sync_all()
        .with_context(write_failed)
        .map_err(CliError::io)?;
    let written = output.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    debug_assert_eq!(written, ciphertext_size(file.size, chunk_size));
    output
        .persist_noclobber(&target)
        .map_err(|e| e.error)
        .with_context(write_failed)
        .map_err(CliError::io)?;
    Ok(target)
}

fn changed(file: &PlainFile<'_>, read: u64) -> CliError {
    CliError::io(anyhow!(
        "{} changed while it was read ({} bytes before, {read} or more read)",
        files::shown(file.disk),
        file.size
    ))
}

/// Where the content key of the manifest written to `output` goes: `OUT.key`.
pub fn key_file_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Writes the content key next to the manifest as `OUT.key`, mode 0600, and returns its path.
pub fn write_key_file(output: &Path, key: &ContentKey, force: bool) -> Result<PathBuf, CliError> {
    let path = key_file_path(output);
    files::write_secret_atomic(&path, key.to_file_text().as_bytes(), force)?;
    Ok(path)
}
