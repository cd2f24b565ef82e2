//! Deleting what a download wrote, when the user cancels it with `--delete`.
//!
//! Invariants:
//! - only the manifest's paths and their `.part` names (an incomplete file's name) are deleted,
//!   each reached beneath the folder without following a link ([`Folder::remove_file`]), and
//!   only if it is a regular file; anything else is kept and reported with the reason;
//! - afterwards the folders of the manifest's paths beneath the folder are deleted if they are
//!   empty, deepest first; the folder itself always stays.
//!
//! Blocks; callers run it on a blocking thread.

use std::{collections::BTreeSet, path::Path, path::PathBuf};

use licet_proto::{manifest::Manifest, path::SafePath};

use super::{
    beneath::{Folder, Removal},
    safe_path_on_disk,
};

/// What [`remove_download_files`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RemovedFiles {
    /// Files deleted, as full paths.
    pub deleted: Vec<PathBuf>,
    /// Folders beneath the download's folder deleted because they were left empty.
    pub folders: Vec<PathBuf>,
    /// Paths left in place, each with the reason.
    pub kept: Vec<(PathBuf, String)>,
}

/// Deletes the files of `manifest` that a download into `dir` wrote (each path and its `.part`
/// name), then the folders of those paths left empty (see the module docs). A missing `dir` or
/// file is nothing to delete.
pub fn remove_download_files(dir: &Path, manifest: &Manifest) -> RemovedFiles {
    let mut done = RemovedFiles::default();
    let folder = match Folder::open(dir) {
        Ok(folder) => folder,
        Err(e) if e.is_not_found() => return done,
        Err(e) => {
            done.kept.push((dir.to_path_buf(), e.to_string()));
            return done;
        }
    };
    let mut folders = BTreeSet::new();
    for file in &manifest.files {
        for rel in [true, false].map(|complete| safe_path_on_disk(&file.path, complete)) {
            // A path too long for a `.part` name cannot have one on disk either.
            let Ok(rel) = rel else { continue };
            let full = dir.join(rel.to_relative_path());
            match folder.remove_file(&rel) {
                Ok(Removal::Deleted) => done.deleted.push(full),
                Ok(Removal::Missing) => {}
                Ok(Removal::Kept(what)) => done
                    .kept
                    .push((full, format!("{what}, not a file the download wrote"))),
                Err(e) => done.kept.push((full, e.to_string())),
            }
        }
        let mut path = file.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            folders.insert(parent.to_owned());
            path = parent;
        }
    }
    // Deepest first: a folder empties once its subfolders are gone.
    let mut folders: Vec<String> = folders.into_iter().collect();
    folders.sort_by_key(|f| std::cmp::Reverse(f.matches('/').count()));
    for rel in folders {
        let Ok(rel) = SafePath::new(rel) else {
            continue;
        };
        match folder.remove_empty_dir(&rel) {
            Ok(true) => done.folders.push(dir.join(rel.to_relative_path())),
            Ok(false) => {}
            Err(e) => done
                .kept
                .push((dir.join(rel.to_relative_path()), e.to_string())),
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn manifest(paths: &[&str]) -> Manifest {
        let sizes = vec![10; paths.len()];
        let mut body = crate::test_support::manifest_body("removal", &sizes);
        for (file, path) in body.files.iter_mut().zip(paths) {
            file.path = SafePath::new(*path).unwrap();
        }
        body
    }

    #[test]
    fn deletes_each_file_and_its_part_name_then_the_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("season/extras")).unwrap();
        std::fs::write(root.join("film.mkv"), b"a").unwrap();
        std::fs::write(root.join("season/ep1.mkv.part"), b"b").unwrap();
        std::fs::write(root.join("season/extras/t.mkv"), b"c").unwrap();
        std::fs::write(root.join("mine.txt"), b"the user's").unwrap();
        let m = manifest(&["film.mkv", "season/ep1.mkv", "season/extras/t.mkv"]);
        let done = remove_download_files(root, &m);
        let mut deleted = done.deleted.clone();
        deleted.sort();
        assert_eq!(
            deleted,
            [
                root.join("film.mkv"),
                root.join("season/ep1.mkv.part"),
                root.join("season/extras/t.mkv")
            ]
        );
        assert_eq!(
            done.folders,
            [root.join("season/extras"), root.join("season")]
        );
        assert!(done.kept.is_empty(), "{:?}", done.kept);
        assert!(root.join("mine.txt").exists(), "a file of no manifest path");
        assert!(root.exists(), "the folder itself stays");
    }

    #[test]
    fn never_deletes_through_a_link_nor_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        std::fs::write(outside.path().join("ep1.mkv"), b"keep").unwrap();
        symlink(outside.path().join("victim"), root.join("film.mkv")).unwrap();
        symlink(outside.path(), root.join("season")).unwrap();
        std::fs::create_dir(root.join("dir.mkv")).unwrap();
        std::fs::write(root.join("dir.mkv/inside"), b"keep").unwrap();
        let m = manifest(&["film.mkv", "season/ep1.mkv", "dir.mkv"]);
        let done = remove_download_files(root, &m);
        assert!(done.deleted.is_empty(), "{:?}", done.deleted);
        assert!(done.folders.is_empty(), "{:?}", done.folders);
        let kept: Vec<String> = done
            .kept
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.display()))
            .collect();
        assert!(
            kept.iter().any(|k| k.contains("film.mkv: a symbolic link")),
            "{kept:?}"
        );
        assert!(
            kept.iter()
                .any(|k| k.contains("season") && k.contains("symbolic link")),
            "{kept:?}"
        );
        assert!(kept.iter().any(|k| k.contains("a directory")), "{kept:?}");
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
        assert_eq!(
            std::fs::read(outside.path().join("ep1.mkv")).unwrap(),
            b"keep"
        );
        assert!(root.join("film.mkv").is_symlink());
        assert!(root.join("dir.mkv/inside").exists());
    }

    #[test]
    fn a_missing_folder_is_nothing_to_delete() {
        let dir = tempfile::tempdir().unwrap();
        let done = remove_download_files(&dir.path().join("gone"), &manifest(&["a.bin"]));
        assert_eq!(done, RemovedFiles::default());
    }
}
