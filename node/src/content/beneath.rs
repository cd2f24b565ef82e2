//! Files beneath a download's folder, reached without following symbolic links.
//!
//! The folder a user names for `get` may itself be a link (`~/Videos -> /data/videos`): it is
//! opened once, following links, as the user asked. Everything beneath it is reached from that
//! open folder one component at a time (`openat` with `O_NOFOLLOW`, `mkdirat`), so a link placed
//! inside the folder (by its owner, by an earlier download, or by anyone while a download runs)
//! is never followed: a manifest naming `sub/clip.bin` or `.bashrc` cannot make the node write
//! where `sub` or `.bashrc` points.
//!
//! Invariants:
//! - no component beneath the folder is ever followed if it is a symbolic link, dangling or
//!   not: meeting one is [`BeneathError::Symlink`], naming the link;
//! - `..` and absolute paths cannot occur: paths are `SafePath`s, whose components are never
//!   empty, `.` or `..`; so every file reached is beneath the folder;
//! - [`Folder::create_new`] never opens a file that already exists (`O_EXCL`): the file it
//!   returns is one this call created;
//! - [`Folder::open_for_chunks`] returns handles to one and the same file (checked by device
//!   and inode), both opened through the same parent directory.
//!
//! These functions block; callers run them on blocking threads.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use licet_proto::path::SafePath;
use rustix::{
    fs::{AtFlags, CWD, FileType, Mode, OFlags},
    io::Errno,
};

/// Why a path beneath a folder could not be reached, opened or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BeneathError {
    /// A component of the path is a symbolic link (never followed inside the folder).
    #[error("{path} is a symbolic link; links inside the output folder are never followed")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A component that must be a directory is something else.
    #[error("{path} is not a directory")]
    NotDirectory {
        /// The component.
        path: PathBuf,
    },
    /// The system refused (permissions, missing file, full disk, …).
    #[error("{path}: {source}")]
    Io {
        /// The path acted on.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl BeneathError {
    /// Whether the error says the file (or one of its folders) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BeneathError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// What is at a path beneath the folder (the last component not followed if a link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing: neither the file nor, possibly, its folders exist.
    Missing,
    /// A regular file of `size` bytes.
    File {
        /// Its size.
        size: u64,
    },
    /// Something that is not a regular file: `"a symbolic link"`, `"a directory"`, ….
    Other(&'static str),
}

/// A folder opened once; the files beneath it are reached from it without following links.
#[derive(Debug)]
pub struct Folder {
    dir: OwnedFd,
    path: PathBuf,
}

/// Permissions of the directories and files a download creates (before the umask).
const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;

impl Folder {
    /// Opens the folder at `path` (following links: the user named it).
    pub fn open(path: &Path) -> Result<Folder, BeneathError> {
        let dir = rustix::fs::openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(path.to_path_buf(), e))?;
        Ok(Folder {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The folder's path, as it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is at `rel` beneath the folder. A link or a non-directory among its folders is an
    /// error; a link as the last component is [`Found::Other`].
    pub fn probe(&self, rel: &SafePath) -> Result<Found, BeneathError> {
        let (parent, name) = match self.parent(rel, false) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(Found::Missing),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => Found::File {
                    size: stat.st_size as u64,
                },
                FileType::Symlink => Found::Other("a symbolic link"),
                FileType::Directory => Found::Other("a directory"),
                _ => Found::Other("not a regular file"),
            }),
            Err(Errno::NOENT) => Ok(Found::Missing),
            Err(e) => Err(io_error(self.child(rel), e)),
        }
    }

    /// Creates `rel` (and its missing folders) as a new, empty file opened for writing. An
    /// existing file, link or anything else at `rel` is an error.
    pub fn create_new(&self, rel: &SafePath) -> Result<File, BeneathError> {
        let (parent, name) = self.parent(rel, true)?;
        rustix::fs::openat(
            &parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )
        .map(File::from)
        .map_err(|e| self.classify(&parent, name, rel, e))
    }

    /// Opens the existing regular file `rel` for reading (`write` false) or writing.
    pub fn open_existing(&self, rel: &SafePath, write: bool) -> Result<File, BeneathError> {
        let (parent, name) = self.parent(rel, false)?;
        let access = if write {
            OFlags::WRONLY
        } else {
            OFlags::RDONLY
        };
        self.open_file(&parent, name, rel, access)
    }

    /// Opens the existing file `rel` for writing chunks: an ordinary handle, and, if `direct`,
    /// a second one for direct writes (`O_DIRECT`) or the reason the filesystem refused it.
    pub fn open_for_chunks(
        &self,
        rel: &SafePath,
        direct: bool,
    ) -> Result<(File, Option<io::Result<File>>), BeneathError> {
        let (parent, name) = self.parent(rel, false)?;
        let buffered = self.open_file(&parent, name, rel, OFlags::WRONLY)?;
        if !direct {
            return Ok((buffered, None));
        }
        let direct = open_direct(&parent, name).and_then(|direct| {
            // Opened by name twice: the second must be the same file as the first.
            let (a, b) = (rustix::fs::fstat(&buffered)?, rustix::fs::fstat(&direct)?);
            if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
                return Err(io::Error::other(
                    "the file was replaced while it was opened",
                ));
            }
            Ok(direct)
        });
        Ok((buffered, Some(direct)))
    }

    /// Renames the regular file `from` to `to`, two paths that differ only in their last
    /// component, replacing a regular file at `to`; then makes the rename durable (the folder
    /// holding both is synced). Neither is followed if it is a link: a link or anything but a
    /// regular file at `from` is an error, and so is a directory at `to`.
    pub fn rename_beside(&self, from: &SafePath, to: &SafePath) -> Result<(), BeneathError> {
        self.rename_in_folder(from, to, false)
    }

    /// [`Folder::rename_beside`], but failing if anything is at `to` (on Linux the check and
    /// the rename are one step, so a file made there meanwhile is never replaced).
    pub fn rename_beside_new(&self, from: &SafePath, to: &SafePath) -> Result<(), BeneathError> {
        self.rename_in_folder(from, to, true)
    }

    fn rename_in_folder(
        &self,
        from: &SafePath,
        to: &SafePath,
        no_replace: bool,
    ) -> Result<(), BeneathError> {
        let folders = |p: &SafePath| p.as_str().rsplit_once('/').map(|(f, _)| f.to_owned());
        if folders(from) != folders(to) {
            return Err(BeneathError::Io {
                path: self.child(to),
                source: io::Error::other(format!("not in the same folder as {}", from.as_str())),
            });
        }
        let (parent, from_name) = self.parent(from, false)?;
        let to_name = to.as_str().rsplit('/').next().unwrap_or(to.as_str());
        let stat = rustix::fs::statat(&parent, from_name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error(self.child(from), e))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => {
                return Err(BeneathError::Symlink {
                    path: self.child(from),
                });
            }
            _ => {
                return Err(BeneathError::Io {
                    path: self.child(from),
                    source: io::Error::other("not a regular file"),
                });
            }
        }
        if no_replace {
            rename_no_replace(&parent, from_name, to_name)
        } else {
            rustix::fs::renameat(&parent, from_name, &parent, to_name)
        }
        .map_err(|e| io_error(self.child(to), e))?;
        rustix::fs::fsync(&parent).map_err(|e| io_error(self.child(to), e))
    }

    /// Opens `name` in `parent` with `access`, never following a link, and only if it is a
    /// regular file.
    fn open_file(
        &self,
        parent: &OwnedFd,
        name: &str,
        rel: &SafePath,
        access: OFlags,
    ) -> Result<File, BeneathError> {
        // O_NONBLOCK: a FIFO put at the path cannot hang the open (a regular file ignores it).
        let fd = rustix::fs::openat(
            parent,
            name,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.classify(parent, name, rel, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(self.child(rel), e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(BeneathError::Io {
                path: self.child(rel),
                source: io::Error::other("not a regular file"),
            });
        }
        Ok(File::from(fd))
    }

    /// The directory holding `rel`, opened component by component without following links
    /// (missing ones created if `create`), and `rel`'s last component.
    fn parent<'p>(
        &self,
        rel: &'p SafePath,
        create: bool,
    ) -> Result<(OwnedFd, &'p str), BeneathError> {
        let (folders, name) = match rel.as_str().rsplit_once('/') {
            Some((folders, name)) => (Some(folders), name),
            None => (None, rel.as_str()),
        };
        let mut current: Option<OwnedFd> = None;
        let mut reached = self.path.clone();
        for component in folders.into_iter().flat_map(|f| f.split('/')) {
            reached.push(component);
            let at: BorrowedFd<'_> = match &current {
                Some(fd) => fd.as_fd(),
                None => self.dir.as_fd(),
            };
            let open = || {
                rustix::fs::openat(
                    at,
                    component,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            };
            let opened = match open() {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(at, component, Mode::from_raw_mode(DIR_MODE)) {
                        // Made meanwhile by someone else: opened (never followed) below.
                        Ok(()) | Err(Errno::EXIST) => open(),
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            let fd = opened.map_err(|e| match e {
                Errno::NOENT => io_error(reached.clone(), e),
                _ => classify_at(at, component, &reached, e),
            })?;
            current = Some(fd);
        }
        let parent = match current {
            Some(fd) => fd,
            None => self.dir.try_clone().map_err(|e| BeneathError::Io {
                path: self.path.clone(),
                source: e,
            })?,
        };
        Ok((parent, name))
    }

    /// The error for a failed open of `name` in `parent`: a link or a non-directory says so.
    fn classify(&self, parent: &OwnedFd, name: &str, rel: &SafePath, e: Errno) -> BeneathError {
        classify_at(parent.as_fd(), name, &self.child(rel), e)
    }

    fn child(&self, rel: &SafePath) -> PathBuf {
        self.path.join(rel.to_relative_path())
    }
}

/// The error for `e`, met opening `name` in `at` (shown as `path`): if `name` is a link, that
/// is what the error says, whatever `errno` the system chose (`ELOOP`, `ENOTDIR`, `EEXIST`).
fn classify_at(at: BorrowedFd<'_>, name: &str, path: &Path, e: Errno) -> BeneathError {
    match rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
            BeneathError::Symlink {
                path: path.to_path_buf(),
            }
        }
        _ if e == Errno::NOTDIR => BeneathError::NotDirectory {
            path: path.to_path_buf(),
        },
        _ => io_error(path.to_path_buf(), e),
    }
}

fn io_error(path: PathBuf, e: Errno) -> BeneathError {
    BeneathError::Io {
        path,
        source: e.into(),
    }
}

/// What [`Folder::remove_file`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The regular file was deleted.
    Deleted,
    /// Nothing was there (nor, possibly, its folders).
    Missing,
    /// Something that is not a regular file is there, left in place: `"a symbolic link"`, ….
    Kept(&'static str),
}

impl Folder {
    /// Deletes `rel` if it is a regular file, never following a link (a link among its folders
    /// is [`BeneathError::Symlink`]; a link, folder or anything else at `rel` is kept).
    pub fn remove_file(&self, rel: &SafePath) -> Result<Removal, BeneathError> {
        let (parent, name) = match self.parent(rel, false) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(Removal::Missing),
            Err(e) => return Err(e),
        };
        let kind = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => FileType::from_raw_mode(stat.st_mode),
            Err(Errno::NOENT) => return Ok(Removal::Missing),
            Err(e) => return Err(io_error(self.child(rel), e)),
        };
        match kind {
            // Unlinking a name never follows it: were it swapped for a link meanwhile, the link
            // itself would go, not what it points to.
            FileType::RegularFile => match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
                Ok(()) => Ok(Removal::Deleted),
                Err(Errno::NOENT) => Ok(Removal::Missing),
                Err(e) => Err(io_error(self.child(rel), e)),
            },
            FileType::Symlink => Ok(Removal::Kept("a symbolic link")),
            FileType::Directory => Ok(Removal::Kept("a directory")),
            _ => Ok(Removal::Kept("not a regular file")),
        }
    }

    /// Deletes the folder `rel` if it is an empty directory (not a link); whether it did.
    pub fn remove_empty_dir(&self, rel: &SafePath) -> Result<bool, BeneathError> {
        let (parent, name) = match self.parent(rel, false) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        match rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            // Not empty, gone, or not a directory (a link to one included): left as it is.
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT | Errno::NOTDIR) => Ok(false),
            Err(e) => Err(io_error(self.child(rel), e)),
        }
    }
}

/// `name` in `parent` opened for direct writes.
#[cfg(target_os = "linux")]
fn open_direct(parent: &OwnedFd, name: &str) -> io::Result<File> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::DIRECT | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_parent: &OwnedFd, _name: &str) -> io::Result<File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "direct writes are only used on Linux",
    ))
}

/// Renames `from` to `to` in `parent` unless something is at `to`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn rename_no_replace(parent: &OwnedFd, from: &str, to: &str) -> rustix::io::Result<()> {
    rustix::fs::renameat_with(parent, from, parent, to, rustix::fs::RenameFlags::NOREPLACE)
}

/// Renames `from` to `to` in `parent` unless something is at `to` (checked just before: this
/// platform has no renaming that refuses to replace).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn rename_no_replace(parent: &OwnedFd, from: &str, to: &str) -> rustix::io::Result<()> {
    match rustix::fs::statat(parent, to, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Err(rustix::io::Errno::EXIST),
        Err(rustix::io::Errno::NOENT) => rustix::fs::renameat(parent, from, parent, to),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, os::unix::fs::symlink};

    use super::*;

    fn safe(path: &str) -> SafePath {
        SafePath::new(path).unwrap()
    }

    /// A folder to download into, and a folder outside it that links may point to.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("out");
        let outside = root.path().join("elsewhere");
        std::fs::create_dir(&inside).unwrap();
        std::fs::create_dir(&outside).unwrap();
        (root, inside, outside)
    }

    #[test]
    fn files_and_folders_are_created_beneath_the_folder() {
        let (_root, inside, _) = setup();
        let folder = Folder::open(&inside).unwrap();
        assert_eq!(folder.probe(&safe("a/b/c.bin")).unwrap(), Found::Missing);
        let mut file = folder.create_new(&safe("a/b/c.bin")).unwrap();
        file.write_all(b"hello").unwrap();
        assert_eq!(std::fs::read(inside.join("a/b/c.bin")).unwrap(), b"hello");
        assert_eq!(
            folder.probe(&safe("a/b/c.bin")).unwrap(),
            Found::File { size: 5 }
        );
        assert_eq!(
            folder.probe(&safe("a/b")).unwrap(),
            Found::Other("a directory")
        );
        // Never opens what exists.
        let again = folder.create_new(&safe("a/b/c.bin")).unwrap_err();
        assert!(
            matches!(again, BeneathError::Io { ref source, .. }
            if source.kind() == io::ErrorKind::AlreadyExists),
            "{again}"
        );
        let (_, direct) = folder.open_for_chunks(&safe("a/b/c.bin"), true).unwrap();
        // tmpfs may refuse O_DIRECT; whichever way, it is never another file.
        if let Some(Err(e)) = direct {
            assert_ne!(e.kind(), io::ErrorKind::Other, "{e}");
        }
    }

    #[test]
    fn a_symlinked_folder_component_is_never_followed() {
        let (_root, inside, outside) = setup();
        symlink(&outside, inside.join("sub")).unwrap();
        let folder = Folder::open(&inside).unwrap();
        let rel = safe("sub/clip.bin");
        for error in [
            folder.probe(&rel).unwrap_err(),
            folder.create_new(&rel).unwrap_err(),
            folder.open_existing(&rel, true).unwrap_err(),
            folder.open_for_chunks(&rel, true).unwrap_err(),
        ] {
            assert!(
                matches!(&error, BeneathError::Symlink { path } if *path == inside.join("sub")),
                "{error}"
            );
            assert!(error.to_string().contains("is a symbolic link"), "{error}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_symlinked_file_is_never_opened_or_replaced() {
        let (_root, inside, outside) = setup();
        let victim = outside.join("victim.conf");
        std::fs::write(&victim, b"keep me").unwrap();
        symlink(&victim, inside.join("readme.txt")).unwrap();
        let folder = Folder::open(&inside).unwrap();
        let rel = safe("readme.txt");
        assert_eq!(folder.probe(&rel).unwrap(), Found::Other("a symbolic link"));
        for error in [
            folder.create_new(&rel).unwrap_err(),
            folder.open_existing(&rel, true).unwrap_err(),
            folder.open_existing(&rel, false).unwrap_err(),
            folder.open_for_chunks(&rel, true).unwrap_err(),
        ] {
            assert!(
                matches!(&error, BeneathError::Symlink { path } if *path == inside.join("readme.txt")),
                "{error}"
            );
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn a_dangling_link_is_neither_followed_nor_created_through() {
        let (_root, inside, outside) = setup();
        let target = outside.join("made-by-link");
        symlink(&target, inside.join(".bashrc")).unwrap();
        symlink(outside.join("no-such-dir"), inside.join("d")).unwrap();
        let folder = Folder::open(&inside).unwrap();
        assert_eq!(
            folder.probe(&safe(".bashrc")).unwrap(),
            Found::Other("a symbolic link")
        );
        let error = folder.create_new(&safe(".bashrc")).unwrap_err();
        assert!(matches!(error, BeneathError::Symlink { .. }), "{error}");
        let error = folder.create_new(&safe("d/x")).unwrap_err();
        assert!(matches!(error, BeneathError::Symlink { .. }), "{error}");
        assert!(!target.exists());
        assert!(!outside.join("no-such-dir").exists());
    }

    #[test]
    fn a_file_where_a_folder_is_needed_is_named() {
        let (_root, inside, _) = setup();
        std::fs::write(inside.join("a"), b"x").unwrap();
        let folder = Folder::open(&inside).unwrap();
        let error = folder.create_new(&safe("a/b")).unwrap_err();
        assert!(
            matches!(&error, BeneathError::NotDirectory { path } if *path == inside.join("a")),
            "{error}"
        );
    }

    #[test]
    fn paths_that_could_climb_out_cannot_be_made() {
        // What keeps every file beneath the folder besides the links refused here.
        for path in ["../x", "a/../../x", "/etc/passwd", "a/./b", "a//b"] {
            assert!(SafePath::new(path).is_err(), "{path}");
        }
    }

    #[test]
    fn the_folder_itself_may_be_a_link() {
        let (root, inside, _) = setup();
        let link = root.path().join("videos");
        symlink(&inside, &link).unwrap();
        let folder = Folder::open(&link).unwrap();
        folder.create_new(&safe("clip.bin")).unwrap();
        assert!(inside.join("clip.bin").is_file());
    }
}
