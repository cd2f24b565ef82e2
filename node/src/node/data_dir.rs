//! The data directory is private to the user the daemon runs as.
//!
//! It holds the trust store and every content path (`state.redb`), the node's identity
//! (`node.key`), the control API's bearer token and address (`api-token`, `api-addr`) and the
//! peers it was last connected to (`peers`, `net/remembered.rs`). The
//! daemon creates it (and any missing parent) with mode 0700 whatever the umask, and tightens an
//! existing one that other users can enter or list to 0700 with a warning. The files in it are
//! created with mode 0600 by their owners (`store.rs`, `node.rs`, `api.rs`), so they stay private
//! even if the directory is later opened up.

use std::{
    io,
    path::{Path, PathBuf},
};

/// The mode of the data directory.
pub const DATA_DIR_MODE: u32 = 0o700;

/// Why the data directory could not be made private.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// It could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Its permissions could not be read or set.
    #[error("cannot make the data directory {path} private (mode 0700): {source}")]
    Permissions {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

/// Creates `path` (and missing parents) with mode 0700, or tightens an existing directory that
/// group or others may use to 0700. Returns the mode it had when it was tightened, `None` when
/// it was created or already private.
pub fn create_private(path: &Path) -> Result<Option<u32>, DataDirError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(DATA_DIR_MODE);
    }
    builder
        .create(path)
        .map_err(|source| DataDirError::Create {
            path: path.to_owned(),
            source,
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let permissions = |source| DataDirError::Permissions {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(permissions)?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(DATA_DIR_MODE))
                .map_err(permissions)?;
            return Ok(Some(mode));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_and_its_missing_parents_are_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("parent/data");
        assert_eq!(create_private(&path).unwrap(), None);
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&tmp.path().join("parent")), 0o700);
        // Again: nothing to do.
        assert_eq!(create_private(&path).unwrap(), None);
    }

    #[test]
    fn an_open_existing_directory_is_tightened_and_its_old_mode_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(create_private(&path).unwrap(), Some(0o755));
        assert_eq!(mode(&path), 0o700);
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        std::fs::write(&path, b"").unwrap();
        let error = create_private(&path).unwrap_err().to_string();
        assert!(error.contains("data"), "{error}");
    }
}
