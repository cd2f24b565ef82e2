//! Writing a file so that it appears whole or not at all: the node's one way to put a file in
//! place (the state database when it is created, the node's identity key, the control API's
//! `api-token` and `api-addr`).
//!
//! # Invariants
//!
//! 1. **Readers see the old file or the whole new one.** The content is written under a
//!    temporary name in the same directory, created new (never a file already there) with its
//!    mode set before any content, and `fsync`ed before it takes the name; the directory is
//!    `fsync`ed after, so after a crash the name holds the old file or the whole new one.
//! 2. **The mode is exactly the one asked for**, whatever the umask (on Unix; elsewhere there
//!    is no mode).
//! 3. **No temporary file is left**, whether the write succeeds or fails.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// What to do when something already has the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    /// The new file replaces it (rename).
    Replace,
    /// It stays, and the new file is dropped (hard link, so that two processes creating the
    /// same file both end up using one of them).
    Keep,
}

/// Writes `bytes` to `path` with mode `mode`, replacing any file there: readers see the old file
/// or the whole new one (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, IfExists::Replace, |mut file| {
        file.write_all(bytes)
    })
    .map(drop)
}

/// Creates a new file of mode `mode` under a temporary name beside `path`, lets `fill` write it
/// (it gets a handle on the file), `fsync`s it and gives it the name `path` as `if_exists` says,
/// then `fsync`s the directory. Returns whether the new file took the name (`false`: it was
/// [`IfExists::Keep`] and something had the name). The temporary name is gone either way.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    if_exists: IfExists,
    fill: impl FnOnce(File) -> io::Result<()>,
) -> io::Result<bool> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        ));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let temp = dir.join(format!(
        ".{}.{}.{nanos}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let placed = write_new(&temp, mode, fill)
        .map_err(|e| context(format!("cannot write {}", temp.display()), e))
        .and_then(|()| {
            place(&temp, path, if_exists)
                .map_err(|e| context(format!("cannot move it to {}", path.display()), e))
        });
    // After a rename the temporary name is already gone; after a link or a failure it goes here.
    let _ = fs::remove_file(&temp);
    let placed = placed?;
    sync_dir(dir)
        .map_err(|e| context(format!("cannot sync the directory {}", dir.display()), e))?;
    Ok(placed)
}

/// Creates `temp` (new) with exactly `mode`, lets `fill` write it, and `fsync`s it.
fn write_new(temp: &Path, mode: u32, fill: impl FnOnce(File) -> io::Result<()>) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let file = options.open(temp)?;
    // The umask may have taken bits away: set the mode itself, before any content.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    #[cfg(not(unix))]
    let _ = mode;
    fill(file.try_clone()?)?;
    file.sync_all()
}

/// Gives `temp` the name `path`; returns whether it took it.
fn place(temp: &Path, path: &Path, if_exists: IfExists) -> io::Result<bool> {
    match if_exists {
        IfExists::Replace => fs::rename(temp, path).map(|()| true),
        IfExists::Keep => match fs::hard_link(temp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            // A filesystem without hard links (FAT): rename, which replaces, so check first.
            Err(_) if !path.exists() => fs::rename(temp, path).map(|()| true),
            Err(_) => Ok(false),
        },
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn context(what: String, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<OsString> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(path).unwrap().permissions()) & 0o7777
    }

    #[test]
    fn a_new_file_appears_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        write_atomic(&path, b"0123456789abcdef", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"0123456789abcdef");
        assert_eq!(names(dir.path()), [OsString::from("api-token")]);
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&path), 0o600);
            // Group write is what a usual umask takes away: the mode is still the one asked.
            let shared = dir.path().join("shared");
            write_atomic(&shared, b"x", 0o620).unwrap();
            assert_eq!(mode_of(&shared), 0o620);
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_mode_is_set_before_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        write_atomic_with(&path, 0o620, IfExists::Replace, |mut file| {
            let mode =
                std::os::unix::fs::PermissionsExt::mode(&file.metadata()?.permissions()) & 0o7777;
            assert_eq!(mode, 0o620, "the mode when the first byte is written");
            file.write_all(b"key")
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"key");
    }

    #[test]
    fn an_existing_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-addr");
        fs::write(
            &path,
            b"127.0.0.1:1\n-- a longer old file than the new one --",
        )
        .unwrap();
        write_atomic(&path, b"127.0.0.1:2\n", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"127.0.0.1:2\n");
        assert_eq!(names(dir.path()), [OsString::from("api-addr")]);
        #[cfg(unix)]
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn keep_leaves_a_file_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        assert!(
            write_atomic_with(&path, 0o600, IfExists::Keep, |mut f| f.write_all(b"first")).unwrap()
        );
        assert!(
            !write_atomic_with(&path, 0o600, IfExists::Keep, |mut f| f.write_all(b"second"))
                .unwrap()
        );
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), [OsString::from("state.redb")]);
    }

    #[test]
    fn a_failure_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        fs::write(&path, b"old key").unwrap();
        // Writing fails halfway.
        let err = write_atomic_with(&path, 0o600, IfExists::Replace, |mut file| {
            file.write_all(b"half a ne")?;
            Err(io::Error::other("the disk is full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("the disk is full"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old key");
        assert_eq!(names(dir.path()), [OsString::from("node.key")]);

        // Taking the name fails: a directory that is not empty has it.
        let taken = dir.path().join("taken");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("inside"), b"kept").unwrap();
        let err = write_atomic(&taken, b"new", 0o600).unwrap_err();
        assert!(
            err.to_string().contains("taken"),
            "the error names the path: {err}"
        );
        assert_eq!(fs::read(taken.join("inside")).unwrap(), b"kept");
        assert_eq!(
            names(dir.path()),
            [OsString::from("node.key"), OsString::from("taken")]
        );
    }

    #[test]
    fn a_path_that_names_no_file_is_refused() {
        let err = write_atomic(Path::new("/"), b"x", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}
