//! The store's one error type.

use std::path::PathBuf;

use licet_proto::{ManifestId, PublicKey};

use super::{STATE_FORMAT_VERSION, reopening_db::Unavailable};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be opened or created (I/O, permissions, in use, damaged).
    #[error("cannot open the node state {}: {reason}", path.display())]
    Open {
        /// The state file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file exists but is not a Licet node state database. Nothing in it was changed.
    #[error(
        "{} is not a licet node state database: it is {found}; nothing in it was changed (move it aside or use another data directory)",
        path.display()
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        found: String,
    },
    /// The file is a state database of a newer format than this build reads.
    #[error(
        "{} is node state format version {version}, newer than this build reads (version {STATE_FORMAT_VERSION}); upgrade licet-node",
        path.display()
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its format version.
        version: u32,
    },
    /// A stored value does not decode or verify: the file was damaged.
    #[error("the node state is corrupt: table {table}, key {key}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The key, for people (hex id, then file and chunk indexes).
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A stored manifest whose signature still verifies but whose body this version's rules
    /// refuse (they grew stricter, e.g. about paths): not damage, and the item cannot be used.
    #[error("the stored manifest {id} is refused by this version's rules: {reason}")]
    ManifestRefused {
        /// The manifest.
        id: ManifestId,
        /// What the rules refuse.
        reason: String,
    },
    /// redb failed (I/O error, full disk, ...). The message names the file and the operation.
    #[error("node state database error: {0}")]
    Database(String),
    /// The database is closed after an I/O error (such as a full disk) and reopens by itself
    /// once the cause is gone; nothing was written.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// No content item has this manifest id.
    #[error("no content item for manifest {id}")]
    NotFound {
        /// The manifest id.
        id: ManifestId,
    },
    /// The content item has no such file.
    #[error("content {id} has no file {file}")]
    UnknownFile {
        /// The manifest id.
        id: ManifestId,
        /// The file index.
        file: u32,
    },
    /// A chunk index past the end of its file.
    #[error(
        "chunk {chunk} of file {file} of content {id} is out of range: the file has {chunks} chunks"
    )]
    ChunkOutOfRange {
        /// The manifest id.
        id: ManifestId,
        /// The file index.
        file: u32,
        /// The chunk index.
        chunk: u64,
        /// The file's chunk count.
        chunks: u64,
    },
    /// A content directory that is not valid UTF-8.
    #[error(
        "the directory {} of content {id} is not valid UTF-8; the node keeps directories as UTF-8 paths",
        dir.display()
    )]
    NonUtf8Dir {
        /// The manifest id.
        id: ManifestId,
        /// The directory.
        dir: PathBuf,
    },
    /// What was given does not fit what is stored (file counts, chunk counts, sizes).
    #[error("{item}: {reason}")]
    Invalid {
        /// What it is about (`content <id>`, `trusted publisher <key>`).
        item: String,
        /// What does not fit.
        reason: String,
    },
    /// A catalog was not stored: it does not verify, is another publisher's, or is older than
    /// the stored one.
    #[error("catalog of publisher {publisher} not stored: {reason}")]
    CatalogRefused {
        /// The publisher it was given for.
        publisher: PublicKey,
        /// Why.
        reason: String,
    },
}

pub(super) fn check_len(
    item: impl FnOnce() -> String,
    bytes: &[u8],
    limit: usize,
) -> Result<(), StoreError> {
    if bytes.len() > limit {
        return Err(invalid(
            item(),
            format!(
                "its stored form is {} bytes, over the limit of {limit}",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

pub(super) fn invalid(item: String, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        item,
        reason: reason.into(),
    }
}
