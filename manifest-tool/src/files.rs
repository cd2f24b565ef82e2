//! Reading signed files and writing outputs atomically.
//!
//! Invariants: an output file is either absent, its old content, or its complete new content
//! (written to a temporary file in the same directory, synced, then renamed or linked into
//! place); an existing output is replaced only when the caller asked to overwrite. Inputs are
//! size-checked before they are read.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use licet_proto::{
    signed::{Signed, SignedKind},
    text::escape_for_terminal,
};

use crate::CliError;

/// `path` as text safe to print: a name read from a directory can hold escape sequences or
/// bidirectional overrides, shown escaped (`\u{202e}`) rather than sent to the terminal.
pub fn shown(path: &Path) -> String {
    escape_for_terminal(&path.to_string_lossy()).into_owned()
}

/// Writes `bytes` to `path` atomically with mode 0644; refuses to replace an existing file
/// unless `overwrite`.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), CliError> {
    write_atomic_with_mode(path, bytes, overwrite, 0o644)
}

/// As [`write_atomic`], with mode 0600: for secrets (a release's content key).
pub fn write_secret_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), CliError> {
    write_atomic_with_mode(path, bytes, overwrite, 0o600)
}

fn write_atomic_with_mode(
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
    #[cfg_attr(not(unix), allow(unused_variables))] mode: u32,
) -> Result<(), CliError> {
    if !overwrite && path.exists() {
        return Err(CliError::usage(anyhow::anyhow!(
            "{} already exists (pass --force to overwrite it)",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let io = |what: &str| format!("{what} {}", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
        .map_err(CliError::io)?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| io("cannot write"))
        .map_err(CliError::io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| io("cannot set permissions of"))
            .map_err(CliError::io)?;
    }
    let persisted = if overwrite {
        tmp.persist(path).map(drop)
    } else {
        tmp.persist_noclobber(path).map(drop)
    };
    persisted
        .map_err(|e| e.error)
        .with_context(|| io("cannot write"))
        .map_err(CliError::io)
}

/// Reads a file of at most `limit` bytes, checking the size before reading.
pub fn read_limited(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>, CliError> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))
        .map_err(CliError::io)?
        .len();
    if len > limit as u64 {
        return Err(CliError::invalid(anyhow::anyhow!(
            "{} is {len} bytes, larger than any Licet {what} ({limit} bytes at most)",
            path.display()
        )));
    }
    std::fs::read(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))
        .map_err(CliError::io)
}

/// Reads a catalog file (not verified). A file that is not one fails as `NAME is not a Licet
/// catalog (what it is instead)`, a verification failure; a catalog of format 1 names its format.
pub fn read_catalog(path: &Path) -> Result<Vec<u8>, CliError> {
    let limit = licet_proto::catalog_parts::MAX_CATALOG_FILE_BYTES;
    let bytes = read_limited(path, limit, "catalog")?;
    if let Err(e) = licet_proto::catalog_parts::CatalogFile::decode(&bytes) {
        let what = licet_proto::catalog_parts::CatalogFile::why_not(&bytes, e);
        return Err(CliError::invalid(anyhow::anyhow!(
            "{} is not a Licet catalog ({what})",
            shown(path)
        )));
    }
    Ok(bytes)
}

/// Reads and decodes a signed file, of `kind` when one is wanted (not verified). A file that is
/// not one fails as `NAME is not a Licet KIND (what it is instead)`, a verification failure.
pub fn read_signed(path: &Path, kind: Option<SignedKind>) -> Result<(Signed, Vec<u8>), CliError> {
    let what = kind.map_or("signed object", SignedKind::noun);
    let limit = kind.unwrap_or(SignedKind::Catalog).max_envelope_bytes();
    let bytes = read_limited(path, limit, what)?;
    let signed = Signed::identify(&bytes, kind).map_err(|e| {
        CliError::invalid(anyhow::anyhow!(
            "{} is not a Licet {what} ({e})",
            shown(path)
        ))
    })?;
    Ok((signed, bytes))
}
