//! Where a download may write: the checks on its output folder and on what is already there,
//! all made before anything is created, and then the creation of the download's files.
//!
//! A `get` writes the files its manifest names into a folder the user chose, which may already
//! hold the user's own files, other downloads, or content this node seeds. A manifest's paths
//! are chosen by its publisher (or a delegate), who may be careless or hostile; a path such as
//! `.bashrc` is valid. So:
//!
//! Invariants:
//! - [`plan`] changes nothing on disk; its [`Plan`] is applied only when every file passed, so
//!   a refused download leaves the folder exactly as it was;
//! - a download writes each file at its partial name `NAME.part` (see [`crate::content`]), which
//!   this download created, or which is a regular file left by an earlier download of Licet
//!   (removed with `rm`, which keeps files): that is Licet's own partial file, and it is written
//!   over. `NAME` itself is never written before the file is complete: then `NAME.part` is
//!   renamed over it, so a regular file at `NAME` is replaced only if it already holds exactly
//!   the manifest's bytes (same size and merkle root: it is adopted as complete and never
//!   written) or the user asked to replace it (`--replace`);
//! - a manifest in which one file's partial name is another file's path, or one of its folders
//!   (`a` and `a.part`, `a` and `a.part/b`), is refused, naming both: the two could not be told
//!   apart on disk while they download;
//! - nothing is reached through a symbolic link beneath the folder ([`crate::content::beneath`]); the
//!   folder itself may be a link;
//! - [`check_data_dir`] keeps user downloads out of the node's data directory, and
//!   [`find_overlap`] keeps a download off the files of every other item the node holds
//!   (downloads, and the originals a publisher seeds with `add`), under both names of each
//!   file (`NAME` and `NAME.part`) on both sides.
//!
//! These functions block (they hash existing files); callers run them on blocking threads.

use std::{
    collections::HashSet,
    fs::File,
    io,
    path::{Path, PathBuf},
};

use licet_proto::{
    ManifestId,
    manifest::Manifest,
    merkle,
    path::{PathError, SafePath},
    portable_name,
};

use crate::{
    content::beneath::{BeneathError, Folder, Found},
    content::{PART_SUFFIX, VerifiedFile, safe_path_on_disk, stamp_of},
};

/// Why a download may not write into its output folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The folder is, holds, or is inside the node's data directory.
    #[error(
        "the output folder {output} {relation} the node's data directory {data_dir}; choose a \
         folder outside it"
    )]
    DataDir {
        /// The output folder.
        output: PathBuf,
        /// `is`, `holds` or `is inside`.
        relation: &'static str,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A file of the download is (or is a folder of, or lies in) a file of another item.
    #[error(
        "{path} belongs to manifest {other} held by this node; choose another output folder \
         (or `rm` {other} first)"
    )]
    Overlap {
        /// The path both would use.
        path: PathBuf,
        /// The other item.
        other: ManifestId,
    },
    /// A regular file that is not the manifest's is where the download would write.
    #[error(
        "{path} already exists and is not the manifest's file ({why}); move it away, choose \
         another output folder, or pass --replace to overwrite it"
    )]
    Exists {
        /// The file.
        path: PathBuf,
        /// How it differs.
        why: String,
    },
    /// Something that is not a regular file is where the download would write.
    #[error(
        "{path} is {what} where the manifest has a file; move it away or choose another output \
         folder"
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What is there.
        what: &'static str,
    },
    /// One file's partial name (`NAME.part`) is another file's path or one of its folders.
    #[error(
        "the manifest has both {file} and {other}: while {file} downloads it is kept as \
         {file}{PART_SUFFIX}, which {other} needs too, so this manifest cannot be downloaded; \
         ask its publisher to rename one of them"
    )]
    PartCollision {
        /// The file whose partial name collides.
        file: String,
        /// The other file (or a file under the folder of that name).
        other: String,
    },
    /// A file's name is too long to get the partial marker appended.
    #[error(
        "{path}: the name is too long to download as {path}{PART_SUFFIX} (at most 250 bytes in \
         one name): {source}"
    )]
    PartName {
        /// The file's path in the manifest.
        path: String,
        /// Why the longer name is not a valid path.
        source: PathError,
    },
    /// A path beneath the folder could not be reached safely (a link, a file as a folder).
    #[error(transparent)]
    Beneath(#[from] BeneathError),
}

impl OutputError {
    /// Whether the error is about what is in the way (as opposed to the system failing).
    pub fn is_conflict(&self) -> bool {
        !matches!(self, OutputError::Beneath(BeneathError::Io { .. }))
    }
}

/// `path` made absolute and free of links, `.` and `..`, so it can be compared with other
/// folders: the part that exists is resolved by the system; in the missing tail, which holds no
/// link, `..` takes away the component before it, as it will once the folders are made.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    let components: Vec<Component<'_>> = absolute.components().collect();
    // The longest prefix that exists (the root always does).
    for split in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        match std::fs::canonicalize(&prefix) {
            Ok(mut resolved) => {
                for component in &components[split..] {
                    match component {
                        Component::ParentDir => {
                            resolved.pop();
                        }
                        Component::CurDir => {}
                        other => resolved.push(other),
                    }
                }
                return Ok(resolved);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no part of {} exists", absolute.display()),
    ))
}

/// Refuses a user's output folder that is, holds or is inside the node's data directory (both
/// resolved with [`resolve`]).
pub fn check_data_dir(output: &Path, data_dir: &Path) -> Result<(), OutputError> {
    let relation = if output == data_dir {
        "is"
    } else if data_dir.starts_with(output) {
        "holds"
    } else if output.starts_with(data_dir) {
        "is inside"
    } else {
        return Ok(());
    };
    Err(OutputError::DataDir {
        output: output.to_path_buf(),
        relation,
        data_dir: data_dir.to_path_buf(),
    })
}

/// The first path where the files of `manifest` under `dir` would meet a file of one of
/// `others` (each: its id, folder and manifest): the same path, or one's file where the other
/// needs a folder. Each file counts under both its names, `NAME` and `NAME.part`, on both
/// sides (a seeded file is never `.part`, but a download's file is, until it is complete).
pub fn find_overlap<'a>(
    dir: &Path,
    manifest: &Manifest,
    others: impl IntoIterator<Item = (ManifestId, &'a Path, &'a Manifest)>,
) -> Option<OutputError> {
    let mut files = HashSet::new();
    let mut folders = HashSet::new();
    let mut built = false;
    for (other, other_dir, other_manifest) in others {
        if !(other_dir.starts_with(dir) || dir.starts_with(other_dir)) {
            continue;
        }
        if !built {
            for index in 0..manifest.files.len() {
                let [path, part] = crate::content::paths_on_disk(dir, manifest, index);
                folders.extend(
                    path.ancestors()
                        .skip(1)
                        .take_while(|a| *a != dir)
                        .map(Path::to_path_buf),
                );
                files.insert(path);
                files.insert(part);
            }
            built = true;
        }
        for index in 0..other_manifest.files.len() {
            for path in crate::content::paths_on_disk(other_dir, other_manifest, index) {
                let clash = files.contains(&path)
                    || folders.contains(&path)
                    || path.ancestors().skip(1).any(|a| files.contains(a));
                if clash {
                    return Some(OutputError::Overlap { path, other });
                }
            }
        }
    }
    None
}

/// Refuses a manifest in which a file's partial name (`NAME.part`) is another file's path or
/// one of its folders, compared as a case-insensitive or normalising file system would
/// (`portable_name::folded`), or would be longer than a path may be.
pub fn check_part_names(manifest: &Manifest) -> Result<(), OutputError> {
    let folded = |path: &str| {
        path.split('/')
            .map(portable_name::folded)
            .collect::<Vec<_>>()
            .join("/")
    };
    // Every file's folded path, and every folder's, each with a file that has it.
    let mut taken: std::collections::HashMap<String, &SafePath> = std::collections::HashMap::new();
    for entry in &manifest.files {
        let path = entry.path.as_str();
        taken.entry(folded(path)).or_insert(&entry.path);
        for (at, _) in path.match_indices('/') {
            taken.entry(folded(&path[..at])).or_insert(&entry.path);
        }
    }
    for entry in &manifest.files {
        let part =
            safe_path_on_disk(&entry.path, false).map_err(|source| OutputError::PartName {
                path: entry.path.to_string(),
                source,
            })?;
        if let Some(other) = taken.get(&folded(part.as_str())) {
            return Err(OutputError::PartCollision {
                file: entry.path.to_string(),
                other: other.to_string(),
            });
        }
    }
    Ok(())
}

/// What a download does with one of its files.
enum Action {
    /// Nothing is at its partial name: create `NAME.part`.
    Create,
    /// A regular file left at its partial name by an earlier download: empty it and write the
    /// download into it.
    Overwrite,
    /// The file already is the manifest's: keep it as complete.
    Adopt(VerifiedFile),
}

/// The checked plan for a download's files; [`Plan::apply`] carries it out.
pub struct Plan {
    dir: PathBuf,
    actions: Vec<Action>,
}

/// Checks every file of `manifest` under `dir` and decides what to do with it; changes nothing.
/// A file at `NAME` that is the manifest's is adopted; one that is not refuses the download
/// unless `replace` (it is then replaced when the download's file is complete). A regular file
/// at `NAME.part` is an earlier download's partial file and is written over.
pub fn plan(dir: &Path, manifest: &Manifest, replace: bool) -> Result<Plan, OutputError> {
    check_part_names(manifest)?;
    let folder = match Folder::open(dir) {
        Ok(folder) => Some(folder),
        // A folder still to be made holds nothing.
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let mut actions = Vec::with_capacity(manifest.files.len());
    for (index, entry) in manifest.files.iter().enumerate() {
        let Some(folder) = &folder else {
            actions.push(Action::Create);
            continue;
        };
        let [path, part_path] = crate::content::paths_on_disk(dir, manifest, index);
        match folder.probe(&entry.path)? {
            Found::Missing => {}
            Found::Other(what) => return Err(OutputError::NotAFile { path, what }),
            Found::File { size } => {
                let why = if size != entry.size {
                    format!("{size} bytes, the manifest says {}", entry.size)
                } else {
                    let file = folder.open_existing(&entry.path, false)?;
                    match adopt(&file, manifest.chunk_size, &entry.root) {
                        Ok(Some(verified)) => {
                            actions.push(Action::Adopt(verified));
                            continue;
                        }
                        Ok(None) => "its merkle root differs".to_owned(),
                        Err(source) => {
                            return Err(BeneathError::Io { path, source }.into());
                        }
                    }
                };
                if !replace {
                    return Err(OutputError::Exists { path, why });
                }
            }
        }
        // Checked by `check_part_names`: the partial name is a valid path.
        let part =
            safe_path_on_disk(&entry.path, false).map_err(|source| OutputError::PartName {
                path: entry.path.to_string(),
                source,
            })?;
        let action = match folder.probe(&part)? {
            Found::Missing => Action::Create,
            Found::File { .. } => Action::Overwrite,
            Found::Other(what) => {
                return Err(OutputError::NotAFile {
                    path: part_path,
                    what,
                });
            }
        };
        actions.push(action);
    }
    Ok(Plan {
        dir: dir.to_path_buf(),
        actions,
    })
}

/// `file` as a complete file of the manifest if its leaves make `root`.
fn adopt(
    file: &File,
    chunk_size: u32,
    root: &licet_proto::MerkleHash,
) -> io::Result<Option<VerifiedFile>> {
    let stamp = stamp_of(&file.metadata()?)?;
    let (leaves, _) =
        merkle::hash_file_leaves(file, chunk_size, merkle::default_threads(), &mut |_| {})?;
    if merkle::MerkleTree::from_leaves(leaves.clone()).root() != *root {
        return Ok(None);
    }
    Ok(Some(VerifiedFile { leaves, stamp }))
}

impl Plan {
    /// How many files are adopted as complete.
    pub fn adopted(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Adopt(_)))
            .count()
    }

    /// How many files are written over where an earlier download left them (`NAME.part`).
    pub fn overwritten(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Overwrite))
            .count()
    }

    /// Creates the folder and the partial files to create, empties the leftover partial files,
    /// and sizes both; returns, per file, the adopted ones' leaves. On an error, the files this
    /// call created are removed again.
    pub fn apply(self, manifest: &Manifest) -> Result<Vec<Option<VerifiedFile>>, OutputError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| BeneathError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let folder = Folder::open(&self.dir)?;
        let mut created = Vec::new();
        let mut adopted = Vec::with_capacity(self.actions.len());
        let result = (|| {
            for (index, action) in self.actions.into_iter().enumerate() {
                let entry = &manifest.files[index];
                let part_path = crate::content::file_path(&self.dir, manifest, index, false);
                let io_error = |source| BeneathError::Io {
                    path: part_path.clone(),
                    source,
                };
                if let Action::Adopt(verified) = action {
                    adopted.push(Some(verified));
                    continue;
                }
                let part = safe_path_on_disk(&entry.path, false).map_err(|source| {
                    OutputError::PartName {
                        path: entry.path.to_string(),
                        source,
                    }
                })?;
                let file = if let Action::Overwrite = action {
                    let file = folder.open_existing(&part, true)?;
                    file.set_len(0).map_err(io_error)?;
                    file
                } else {
                    let file = folder.create_new(&part)?;
                    created.push(part_path.clone());
                    file
                };
                file.set_len(entry.size).map_err(io_error)?;
                adopted.push(None);
            }
            Ok::<_, OutputError>(())
        })();
        if let Err(e) = result {
            for path in created {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        Ok(adopted)
    }
}

/// Creates the files of a download of `manifest` in `dir` as new files (a test helper).
#[cfg(test)]
pub fn create_all(dir: &Path, manifest: &Manifest) {
    let plan = plan(dir, manifest, false).unwrap_or_else(|e| panic!("plan: {e}"));
    plan.apply(manifest)
        .unwrap_or_else(|e| panic!("apply: {e}"));
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn manifest(sizes: &[u64]) -> Manifest {
        crate::test_support::manifest_body("output test", sizes)
    }

    #[test]
    fn data_directory_relations_are_named() {
        let data = Path::new("/home/u/.local/share/licet");
        for (output, relation) in [
            ("/home/u/.local/share/licet", "is"),
            ("/home/u", "holds"),
            ("/home/u/.local/share/licet/mirror/x", "is inside"),
        ] {
            let error = check_data_dir(Path::new(output), data).unwrap_err();
            assert!(
                error.to_string().contains(&format!("{output} {relation} ")),
                "{error}"
            );
        }
        check_data_dir(Path::new("/home/u/Videos"), data).unwrap();
        check_data_dir(Path::new("/home/u/.local/share/licet2"), data).unwrap();
    }

    #[test]
    fn resolve_follows_links_of_what_exists_and_keeps_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        symlink(&real, root.path().join("link")).unwrap();
        let resolved = resolve(&root.path().join("link/new/deeper")).unwrap();
        assert_eq!(
            resolved,
            std::fs::canonicalize(&real).unwrap().join("new/deeper")
        );
        // `..` after a missing folder cannot hide where the path leads.
        let back = resolve(&root.path().join("link/missing/../../real")).unwrap();
        assert_eq!(back, std::fs::canonicalize(&real).unwrap());
    }

    #[test]
    fn overlaps_are_the_same_path_or_a_file_as_a_folder() {
        let mine = manifest(&[1, 2]); // files "file0.bin", "file1.bin"
        let id = ManifestId([7; 32]);
        let dir = Path::new("/out");
        let same = manifest(&[5]);
        let error = find_overlap(dir, &mine, [(id, dir, &same)]).unwrap();
        assert!(
            error
                .to_string()
                .contains("/out/file0.bin belongs to manifest")
        );
        // The other item's file is where one of mine is kept while it downloads.
        let mut partial_name = manifest(&[5]);
        partial_name.files[0].path = licet_proto::path::SafePath::new("file1.bin.part").unwrap();
        let error = find_overlap(dir, &mine, [(id, dir, &partial_name)]).unwrap();
        assert!(
            error.to_string().contains("/out/file1.bin.part belongs"),
            "{error}"
        );
        // Another folder entirely, or a sibling folder: no overlap.
        assert!(find_overlap(dir, &mine, [(id, Path::new("/other"), &same)]).is_none());
        assert!(find_overlap(dir, &mine, [(id, Path::new("/out2"), &same)]).is_none());
        // The other item's folder is one of my files.
        assert!(find_overlap(dir, &mine, [(id, Path::new("/out/file1.bin"), &same)]).is_some());
        // My file would be inside the other's folder, at one of its files.
        assert!(
            find_overlap(
                Path::new("/out/sub"),
                &mine,
                [(id, Path::new("/out"), &{
                    let mut m = manifest(&[1]);
                    m.files[0].path = licet_proto::path::SafePath::new("sub/file0.bin").unwrap();
                    m
                })]
            )
            .is_some()
        );
    }

    #[test]
    fn a_refused_plan_changes_nothing_and_an_applied_one_adopts_identical_files() {
        let mut m = manifest(&[100, 200]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let paths: Vec<PathBuf> = m
            .files
            .iter()
            .map(|f| out.join(f.path.to_relative_path()))
            .collect();
        let path = |i: usize| paths[i].clone();
        std::fs::write(path(0), vec![7; 100]).unwrap();
        // File 1 holds the manifest's bytes (its root made to match them); file 0 differs
        // from its root.
        let content: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        std::fs::write(path(1), &content).unwrap();
        let file = File::open(path(1)).unwrap();
        let (leaves, _) = merkle::hash_file_leaves(&file, m.chunk_size, 1, &mut |_| {}).unwrap();
        m.files[1].root = merkle::MerkleTree::from_leaves(leaves).root();
        let before = std::fs::metadata(path(0)).unwrap().modified().unwrap();
        let Err(OutputError::Exists { path: refused, .. }) = plan(&out, &m, false) else {
            panic!("an existing different file must refuse the plan");
        };
        assert_eq!(refused, path(0));
        assert_eq!(
            std::fs::metadata(path(0)).unwrap().modified().unwrap(),
            before
        );
        let replacing = plan(&out, &m, true).unwrap();
        assert_eq!(replacing.adopted(), 1);
        let adopted = replacing.apply(&m).unwrap();
        assert!(adopted[0].is_none() && adopted[1].is_some());
        assert_eq!(std::fs::read(path(1)).unwrap(), content);
        // The file to replace is replaced only when its download completes: until then it
        // stays, and the download writes beside it.
        assert_eq!(std::fs::read(path(0)).unwrap(), vec![7; 100]);
        let part = crate::content::file_path(&out, &m, 0, false);
        assert_eq!(std::fs::read(part).unwrap(), vec![0; 100]);
        assert!(!crate::content::file_path(&out, &m, 1, false).exists());
    }

    #[test]
    fn a_link_in_the_folder_refuses_the_plan_even_with_replace() {
        let m = manifest(&[10]);
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"mine").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        symlink(&victim, out.join("file0.bin")).unwrap();
        let error = plan(&out, &m, true).err().unwrap();
        assert!(
            matches!(
                &error,
                OutputError::NotAFile {
                    what: "a symbolic link",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"mine");
    }

    fn with_paths(paths: &[&str]) -> Manifest {
        let mut m = manifest(&vec![10; paths.len()]);
        for (entry, path) in m.files.iter_mut().zip(paths) {
            entry.path = licet_proto::path::SafePath::new(*path).unwrap();
        }
        m
    }

    #[test]
    fn a_manifest_whose_partial_name_is_another_file_is_refused_naming_both() {
        for (paths, file, other) in [
            (&["a.mkv", "a.mkv.part"][..], "a.mkv", "a.mkv.part"),
            (&["a.mkv.part", "a.mkv"][..], "a.mkv", "a.mkv.part"),
            // A folder of that name, and the same name in other case.
            (&["x/a", "x/A.PART/b"][..], "x/a", "x/A.PART/b"),
        ] {
            let m = with_paths(paths);
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out");
            let error = plan(&out, &m, false).err().expect("refused");
            assert!(
                matches!(&error, OutputError::PartCollision { file: f, other: o } if f == file && o == other),
                "{paths:?}: {error}"
            );
            let text = error.to_string();
            assert!(text.contains(&format!("both {file} and {other}")), "{text}");
            assert!(!out.exists(), "a refused plan creates nothing");
        }
        // Names that only start alike are fine.
        check_part_names(&with_paths(&[
            "a.mkv",
            "a.mkv.parts",
            "a.mkv.par",
            "b/a.mkv.part",
        ]))
        .unwrap();
        // A name with no room for the marker is refused with the reason.
        let long = "n".repeat(253);
        let error = check_part_names(&with_paths(&[long.as_str()])).unwrap_err();
        assert!(matches!(error, OutputError::PartName { .. }), "{error}");
    }

    #[test]
    fn files_are_created_as_part_and_a_leftover_part_is_written_over() {
        let m = manifest(&[100, 200]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let [final0, part0] = crate::content::paths_on_disk(&out, &m, 0);
        // An earlier download's partial file, of another size: no --replace needed.
        std::fs::write(&part0, b"left by a removed download").unwrap();
        let planned = plan(&out, &m, false).unwrap();
        assert_eq!(planned.overwritten(), 1);
        planned.apply(&m).unwrap();
        assert_eq!(std::fs::read(&part0).unwrap(), vec![0; 100]);
        assert!(
            !final0.exists(),
            "nothing at the final name before completion"
        );
        let [final1, part1] = crate::content::paths_on_disk(&out, &m, 1);
        assert_eq!(std::fs::metadata(&part1).unwrap().len(), 200);
        assert!(!final1.exists());
        // A directory at the partial name is not Licet's file: refused, named.
        let other = dir.path().join("other");
        std::fs::create_dir_all(other.join("file0.bin.part")).unwrap();
        let error = plan(&other, &m, true).err().unwrap();
        assert!(
            matches!(&error, OutputError::NotAFile { path, .. } if path.ends_with("file0.bin.part")),
            "{error}"
        );
    }
}
