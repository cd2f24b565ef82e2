//! A paid release opened: its verified ciphertext decrypted into the folder the user chose.
//!
//! An encrypted release is fetched, verified and seeded as ciphertext like any content, in a
//! folder of the node's own (`sealed/ID` in the data directory); its plaintext goes to the
//! user's output folder once a licence gives the content key. This writes it there.
//!
//! Invariants (the same promises a download makes about the user's folder, see
//! [`crate::content::output_folder`]):
//! - every file is checked before anything is written: a file at `NAME` whose bytes are already
//!   the plaintext is kept and not written; any other file there refuses the whole operation
//!   unless `replace`; something that is not a regular file, or a link beneath the folder,
//!   always refuses it. A refusal leaves the folder as it was;
//! - every file to write is first written whole at `NAME.part` (a leftover regular file there
//!   is written over) and made durable; only once all are is each renamed to `NAME`. A failure
//!   before that removes every partial file this call wrote, so the folder holds either the
//!   whole plaintext or what it held before (and the partial files it already had). A file
//!   that was missing at `NAME` when checked is renamed there only if nothing is there yet, so
//!   a file the user makes meanwhile is never replaced;
//! - every chunk is authenticated as it is decrypted (ChaCha20-Poly1305, its index and
//!   whether it is the last in the nonce), so a ciphertext altered on disk since it was
//!   verified is an error naming the file, never wrong plaintext;
//! - nothing is reached through a link beneath the folder ([`crate::content::beneath`]).
//!
//! The caller makes sure one release is not opened into one folder twice at once.
//!
//! These functions block (they read and write whole files); callers run them on blocking threads.

use std::{
    fs::File,
    io::{self, Read as _, Write as _},
    path::{Path, PathBuf},
};

use licet_proto::{
    encryption::{self, ContentKey, FileCipher},
    manifest::{FileEntry, Manifest, VerifiedManifest},
};

use crate::content::{
    beneath::{Folder, Found},
    output_folder::{self, OutputError},
    safe_path_on_disk,
};

/// Why a release's plaintext could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpeningError {
    /// The release is not encrypted: its files already are the content.
    #[error("the release is not encrypted; its files are in {0}")]
    NotEncrypted(PathBuf),
    /// What is in the output folder refuses it, or the folder cannot be reached safely.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The ciphertext could not be read.
    #[error("cannot read the release's file {path}: {source}")]
    Read {
        /// The ciphertext file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A chunk of the ciphertext does not decrypt.
    #[error(
        "{path}: {source}: the file changed here since it was verified (`licet-node check` \
         re-verifies it), or the publisher encrypted it with another key than the manifest names"
    )]
    Decrypt {
        /// The ciphertext file.
        path: PathBuf,
        /// Which chunk and why.
        source: encryption::OpenError,
    },
    /// The plaintext could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl OpeningError {
    /// Whether the error is about what is in the output folder (as opposed to the system or
    /// the node's own files failing).
    pub fn is_conflict(&self) -> bool {
        matches!(self, OpeningError::Output(e) if e.is_conflict())
    }

    /// Whether the ciphertext failed to decrypt (a verification failure, not the system's).
    pub fn is_not_authentic(&self) -> bool {
        matches!(self, OpeningError::Decrypt { .. })
    }
}

/// What [`write_plaintext`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Opened {
    /// Files written.
    pub written: usize,
    /// Files already there with exactly the plaintext, left as they were.
    pub kept: usize,
    /// Plaintext bytes of all files.
    pub bytes: u64,
}

/// What to do with one file.
#[derive(Clone, Copy)]
enum Action {
    /// Nothing is at `NAME`: write it there, never over what may come meanwhile.
    Create,
    /// `NAME` is a file that is not the plaintext, and the caller said to replace it.
    Replace,
    /// `NAME` already holds the plaintext.
    Keep,
}

/// Decrypts every file of the encrypted release `manifest`, whose verified ciphertext is under
/// `sealed`, with `key`, into `out` (see the module docs).
pub fn write_plaintext(
    sealed: &Path,
    manifest: &VerifiedManifest,
    key: &ContentKey,
    out: &Path,
    replace: bool,
) -> Result<Opened, OpeningError> {
    let manifest = manifest.manifest();
    let Some(encryption) = &manifest.encryption else {
        return Err(OpeningError::NotEncrypted(sealed.to_path_buf()));
    };
    output_folder::check_part_names(manifest)?;
    let ciphers: Vec<FileCipher> = (0..manifest.files.len())
        .map(|i| key.file_cipher(i as u64, manifest.chunk_size))
        .collect();
    // A verified manifest has one plaintext size per file.
    let plaintext_size = |i: usize| encryption.plaintext_sizes[i];

    // 1. Check every file; nothing is written until all pass.
    let existing = match Folder::open(out) {
        Ok(folder) => Some(folder),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(OutputError::from(e).into()),
    };
    let mut actions = Vec::with_capacity(manifest.files.len());
    for (index, entry) in manifest.files.iter().enumerate() {
        let Some(folder) = &existing else {
            actions.push(Action::Create);
            continue;
        };
        let path = crate::content::file_path(out, manifest, index, true);
        let action = match folder.probe(&entry.path).map_err(OutputError::from)? {
            Found::Missing => Action::Create,
            Found::Other(what) => return Err(OutputError::NotAFile { path, what }.into()),
            Found::File { size } if size != plaintext_size(index) => {
                if !replace {
                    let why = format!("{size} bytes, the release's is {}", plaintext_size(index));
                    return Err(OutputError::Exists { path, why }.into());
                }
                Action::Replace
            }
            Found::File { .. } => {
                let file = folder
                    .open_existing(&entry.path, false)
                    .map_err(OutputError::from)?;
                if holds_plaintext(sealed, manifest, index, &ciphers[index], file)? {
                    Action::Keep
                } else if replace {
                    Action::Replace
                } else {
                    let why = "its bytes differ from the release's".to_owned();
                    return Err(OutputError::Exists { path, why }.into());
                }
            }
        };
        if !matches!(action, Action::Keep)
            && let Found::Other(what) = folder
                .probe(&part_name(entry)?)
                .map_err(OutputError::from)?
        {
            let path = crate::content::file_path(out, manifest, index, false);
            return Err(OutputError::NotAFile { path, what }.into());
        }
        actions.push(action);
    }

    // 2. Write every file to be written at `NAME.part`, whole and durable.
    std::fs::create_dir_all(out).map_err(|source| OpeningError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let folder = Folder::open(out).map_err(OutputError::from)?;
    let mut written: Vec<licet_proto::path::SafePath> = Vec::new();
    let result = (|| {
        for (index, action) in actions.iter().enumerate() {
            if let Action::Keep = action {
                continue;
            }
            let part = part_name(&manifest.files[index])?;
            let part_path = crate::content::file_path(out, manifest, index, false);
            let write_error = |source| OpeningError::Write {
                path: part_path.clone(),
                source,
            };
            let file = match folder.probe(&part).map_err(OutputError::from)? {
                Found::File { .. } => folder
                    .open_existing(&part, true)
                    .map_err(OutputError::from)?,
                _ => folder.create_new(&part).map_err(OutputError::from)?,
            };
            written.push(part);
            file.set_len(0).map_err(write_error)?;
            let mut writer = io::BufWriter::with_capacity(1 << 20, file);
            decrypt_file(sealed, manifest, index, &ciphers[index], |segment| {
                writer.write_all(segment)
            })
            .map_err(|e| e.with_write_path(&part_path))?;
            let file = writer
                .into_inner()
                .map_err(|e| write_error(e.into_error()))?;
            file.sync_all().map_err(write_error)?;
        }
        Ok::<_, OpeningError>(())
    })();
    if let Err(e) = result {
        for part in &written {
            if let Err(removal) = folder.remove_file(part) {
                tracing::warn!(
                    "cannot remove the partial file {}: {removal}",
                    part.as_str()
                );
            }
        }
        return Err(e);
    }

    // 3. Every file is whole: each takes its name.
    let mut opened = Opened::default();
    for (index, action) in actions.into_iter().enumerate() {
        opened.bytes += plaintext_size(index);
        let entry = &manifest.files[index];
        let renamed = match action {
            Action::Keep => {
                opened.kept += 1;
                continue;
            }
            Action::Create => folder.rename_beside_new(&part_name(entry)?, &entry.path),
            Action::Replace => folder.rename_beside(&part_name(entry)?, &entry.path),
        };
        renamed.map_err(|source| OpeningError::Write {
            path: crate::content::file_path(out, manifest, index, true),
            source: io::Error::other(source.to_string()),
        })?;
        opened.written += 1;
    }
    Ok(opened)
}

/// The partial name of `entry` (`NAME.part`), as a path beneath the folder.
fn part_name(entry: &FileEntry) -> Result<licet_proto::path::SafePath, OutputError> {
    safe_path_on_disk(&entry.path, false).map_err(|source| OutputError::PartName {
        path: entry.path.to_string(),
        source,
    })
}

/// An error of [`decrypt_file`]'s sink, before it knows which file it writes.
struct SinkError(io::Error);

/// Why decrypting a file stopped: the ciphertext, or the sink.
enum DecryptError {
    Opening(OpeningError),
    Sink(SinkError),
}

impl DecryptError {
    fn with_write_path(self, path: &Path) -> OpeningError {
        match self {
            DecryptError::Opening(e) => e,
            DecryptError::Sink(SinkError(source)) => OpeningError::Write {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// Decrypts file `index` chunk by chunk, handing each plaintext segment to `sink` in order.
fn decrypt_file(
    sealed: &Path,
    manifest: &Manifest,
    index: usize,
    cipher: &FileCipher,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), DecryptError> {
    let (file, path) = crate::content::open_file(sealed, manifest, index, true)
        .map_err(|(path, source)| DecryptError::Opening(OpeningError::Read { path, source }))?;
    let chunks = manifest.files[index].chunk_count(manifest.chunk_size);
    let mut buffer = Vec::with_capacity(manifest.chunk_size as usize);
    for chunk in 0..chunks {
        crate::content::read_chunk_from(&file, manifest, index, chunk, &mut buffer).map_err(
            |source| {
                DecryptError::Opening(OpeningError::Read {
                    path: path.clone(),
                    source,
                })
            },
        )?;
        cipher
            .open_segment(chunk, chunk + 1 == chunks, &mut buffer)
            .map_err(|source| {
                DecryptError::Opening(OpeningError::Decrypt {
                    path: path.clone(),
                    source,
                })
            })?;
        sink(&buffer).map_err(|e| DecryptError::Sink(SinkError(e)))?;
    }
    Ok(())
}

/// Whether `existing` holds exactly the plaintext of file `index`.
fn holds_plaintext(
    sealed: &Path,
    manifest: &Manifest,
    index: usize,
    cipher: &FileCipher,
    mut existing: File,
) -> Result<bool, OpeningError> {
    let mut theirs = Vec::new();
    let mut differs = false;
    let result = decrypt_file(sealed, manifest, index, cipher, |segment| {
        theirs.resize(segment.len(), 0);
        existing.read_exact(&mut theirs)?;
        if theirs != segment {
            differs = true;
            // Stops the comparison: the rest need not be read.
            return Err(io::Error::other("differs"));
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(true),
        Err(DecryptError::Sink(_)) => Ok(false),
        Err(DecryptError::Opening(e)) if !differs => Err(e),
        Err(DecryptError::Opening(_)) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::{
        encryption::ciphertext_size,
        manifest::{ENCRYPTED_MANIFEST_FORMAT_VERSION, MIN_CHUNK_SIZE, ReleaseEncryption},
    };

    use super::*;

    /// An encrypted release of `plaintexts` with its ciphertext written under a temporary
    /// `sealed` folder.
    struct Release {
        _dir: tempfile::TempDir,
        sealed: PathBuf,
        out: PathBuf,
        manifest: VerifiedManifest,
        key: ContentKey,
        plaintexts: Vec<Vec<u8>>,
    }

    fn release(plaintexts: &[Vec<u8>]) -> Release {
        let dir = tempfile::tempdir().unwrap();
        let sealed = dir.path().join("sealed");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&sealed).unwrap();
        let key = ContentKey::from_bytes([7; 32]);
        let chunk_size = MIN_CHUNK_SIZE;
        let sizes: Vec<u64> = plaintexts
            .iter()
            .map(|p| ciphertext_size(p.len() as u64, chunk_size))
            .collect();
        let mut manifest = crate::test_support::manifest_body("paid", &sizes);
        manifest.chunk_size = chunk_size;
        for (i, plaintext) in plaintexts.iter().enumerate() {
            let ciphertext = key.file_cipher(i as u64, chunk_size).seal_all(plaintext);
            std::fs::write(
                crate::content::file_path(&sealed, &manifest, i, true),
                &ciphertext,
            )
            .unwrap();
        }
        manifest.version = ENCRYPTED_MANIFEST_FORMAT_VERSION;
        manifest.encryption = Some(ReleaseEncryption {
            algorithm: licet_proto::encryption::EncryptionAlgorithm::ChaCha20Poly1305Stream,
            key_id: key.id(),
            plaintext_sizes: plaintexts.iter().map(|p| p.len() as u64).collect(),
        });
        let manifest = manifest
            .sign(&crate::test_support::publisher(), None)
            .unwrap();
        Release {
            _dir: dir,
            sealed,
            out,
            manifest,
            key,
            plaintexts: plaintexts.to_vec(),
        }
    }

    fn sample() -> Release {
        let segment = (MIN_CHUNK_SIZE - encryption::TAG_BYTES) as usize;
        release(&[
            (0..3 * segment + 5).map(|i| (i % 251) as u8).collect(),
            Vec::new(),
            b"short".to_vec(),
        ])
    }

    fn read_out(r: &Release, index: usize) -> Vec<u8> {
        std::fs::read(crate::content::file_path(
            &r.out,
            r.manifest.manifest(),
            index,
            true,
        ))
        .unwrap()
    }

    #[test]
    fn plaintext_is_written_byte_identical_and_a_second_time_kept() {
        let r = sample();
        let opened = write_plaintext(&r.sealed, &r.manifest, &r.key, &r.out, false).unwrap();
        assert_eq!((opened.written, opened.kept), (3, 0));
        for (i, plaintext) in r.plaintexts.iter().enumerate() {
            assert_eq!(&read_out(&r, i), plaintext, "file {i}");
            assert!(!crate::content::file_path(&r.out, r.manifest.manifest(), i, false).exists());
        }
        let again = write_plaintext(&r.sealed, &r.manifest, &r.key, &r.out, false).unwrap();
        assert_eq!((again.written, again.kept), (0, 3));
    }

    #[test]
    fn a_user_file_in_the_way_refuses_all_and_changes_nothing_unless_replace() {
        let r = sample();
        std::fs::create_dir_all(&r.out).unwrap();
        let mine = crate::content::file_path(&r.out, r.manifest.manifest(), 2, true);
        std::fs::write(&mine, b"MINE!").unwrap();
        let error = write_plaintext(&r.sealed, &r.manifest, &r.key, &r.out, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("already exists"), "{error}");
        assert!(error.contains("bytes differ"), "{error}");
        assert_eq!(std::fs::read(&mine).unwrap(), b"MINE!");
        let names: Vec<_> = std::fs::read_dir(&r.out).unwrap().collect();
        assert_eq!(names.len(), 1, "nothing else was written");
        let opened = write_plaintext(&r.sealed, &r.manifest, &r.key, &r.out, true).unwrap();
        assert_eq!(opened.written, 3);
        assert_eq!(read_out(&r, 2), b"short");
    }

    #[test]
    fn a_file_that_fails_to_decrypt_leaves_no_file_of_the_release_behind() {
        let r = sample();
        // The last file is altered: the first two decrypt, but nothing may take its name.
        let cipher_path = crate::content::file_path(&r.sealed, r.manifest.manifest(), 2, true);
        let mut bytes = std::fs::read(&cipher_path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&cipher_path, bytes).unwrap();
        let error = write_plaintext(&r.sealed, &r.manifest, &r.key, &r.out, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not decrypt"), "{error}");
        let left: Vec<_> = std::fs::read_dir(&r.out).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn altered_ciphertext_or_another_key_is_an_error_naming_the_file() {
        let r = sample();
        let other = ContentKey::from_bytes([8; 32]);
        let error = write_plaintext(&r.sealed, &r.manifest, &other, &r.out, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not decrypt"), "{error}");
        let cipher_path = crate::content::file_path(&r.sealed, r.manifest.manifest(), 0, true);
        let mut bytes = std::fs::read(&cipher_path).unwrap();
        bytes[MIN_CHUNK_SIZE as usize + 3] ^= 1;
        std::fs::write(&cipher_path, bytes).unwrap();
        let error = write_plaintext(&r.sealed, &r.manifest, &r.key, &r.out, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("chunk 1 does not decrypt"), "{error}");
        assert!(
            error.contains(&cipher_path.display().to_string()),
            "{error}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&r.out)
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
