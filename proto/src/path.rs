//! [`SafePath`]: a file's place inside a manifest, safe to join onto any download directory.
//!
//! Invariants (checked by the only constructor, [`SafePath::new`], which decoding also uses):
//! relative, `/`-separated UTF-8; at least one component; no empty, `.` or `..` component; no
//! leading `/`; no `\`, NUL, or `:` in the first component (a drive prefix such as `C:`);
//! each component at most [`MAX_COMPONENT_BYTES`], the whole at most [`MAX_PATH_BYTES`]; each
//! component a name every common file system holds as it is and a terminal shows as it is (no
//! control, bidirectional or invisible characters, none of `<>:"|?*`, no trailing dot or space, no
//! Windows device name such as `CON` or `nul.txt`: see [`crate::portable_name`]).
//! Uniqueness and the file-versus-directory rule are properties of a set of paths and are checked
//! by [`check_path_set`], which also refuses two paths that are one on a case-insensitive or
//! normalising file system (`Film.mkv` and `film.mkv`, the NFC and NFD forms of `é`).
//!
//! Errors show paths with Rust's debug escaping, so a refused path never reaches a terminal raw.

use std::{collections::HashMap, fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::portable_name::{self, NameProblem, check_component};

/// Longest allowed path component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest allowed whole path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// A validated relative path. See the module docs for the rules.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SafePath(String);

/// Why a path is not a [`SafePath`], or a set of paths is not allowed together.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty.
    #[error("a file path is empty")]
    Empty,
    /// The path starts with `/`.
    #[error("file path {0:?} is absolute")]
    Absolute(String),
    /// A component is empty (`a//b`, trailing `/`), `.` or `..`.
    #[error("file path {0:?} has an empty, '.' or '..' component")]
    BadComponent(String),
    /// A backslash, NUL byte or drive prefix.
    #[error("file path {0:?} contains a backslash, NUL byte or drive prefix")]
    ForbiddenCharacter(String),
    /// Too long as a whole or in one component.
    #[error(
        "file path {0:?} is too long (at most {MAX_PATH_BYTES} bytes, {MAX_COMPONENT_BYTES} per component)"
    )]
    TooLong(String),
    /// The same path twice in one manifest.
    #[error("file path {0:?} appears twice")]
    Duplicate(String),
    /// One file's path is a directory of another's (`a` and `a/b`).
    #[error("file path {file:?} is also a directory of {other:?}")]
    FileIsDirectory {
        /// The path used as a file.
        file: String,
        /// The path that needs it to be a directory.
        other: String,
    },
    /// A control, bidirectional-override or invisible character
    /// ([`crate::text::is_unsafe_to_show`]).
    #[error(
        "file path {path:?} contains {character:?}, a control, bidirectional or invisible character that could disguise how names are shown"
    )]
    UnsafeCharacter {
        /// The path.
        path: String,
        /// The character.
        character: char,
    },
    /// One of `<>:"|?*`, which Windows does not allow in a name.
    #[error("file path {path:?} contains {character:?}, which Windows does not allow in a name")]
    ForbiddenOnWindows {
        /// The path.
        path: String,
        /// The character.
        character: char,
    },
    /// A component ending in `.` or ` `, which Windows drops (so `a.` and `a` collide).
    #[error("file path {0:?} has a name ending in a dot or space, which Windows drops")]
    TrailingDotOrSpace(String),
    /// A component Windows takes for a device (`CON`, `nul.txt`, `COM1`).
    #[error("file path {path:?} has the name {name:?}, which Windows reserves for a device")]
    ReservedOnWindows {
        /// The path.
        path: String,
        /// The reserved component.
        name: String,
    },
    /// Two paths that differ but are one name where case or Unicode normalisation is ignored.
    #[error(
        "file paths {path:?} and {other:?} are the same name on file systems that ignore case or Unicode normalisation (macOS, Windows)"
    )]
    Collision {
        /// The later path.
        path: String,
        /// The earlier path it collides with (or one that needs the colliding directory).
        other: String,
    },
}

fn shortened(path: &str) -> String {
    if path.len() <= 200 {
        path.to_owned()
    } else {
        let mut end = 200;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &path[..end])
    }
}

impl SafePath {
    /// Checks `path` against the rules in the module docs.
    pub fn new(path: impl Into<String>) -> Result<SafePath, PathError> {
        let path: String = path.into();
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(shortened(&path)));
        }
        if path.starts_with('/') {
            return Err(PathError::Absolute(shortened(&path)));
        }
        if path.contains('\\') || path.contains('\0') {
            return Err(PathError::ForbiddenCharacter(shortened(&path)));
        }
        for (i, component) in path.split('/').enumerate() {
            if component.is_empty() || component == "." || component == ".." {
                return Err(PathError::BadComponent(shortened(&path)));
            }
            if component.len() > MAX_COMPONENT_BYTES {
                return Err(PathError::TooLong(shortened(&path)));
            }
            if i == 0 && component.contains(':') {
                return Err(PathError::ForbiddenCharacter(shortened(&path)));
            }
            if let Err(problem) = check_component(component) {
                let path = shortened(&path);
                return Err(match problem {
                    NameProblem::UnsafeToShow(character) => {
                        PathError::UnsafeCharacter { path, character }
                    }
                    NameProblem::ForbiddenOnWindows(character) => {
                        PathError::ForbiddenOnWindows { path, character }
                    }
                    NameProblem::TrailingDotOrSpace => PathError::TrailingDotOrSpace(path),
                    NameProblem::ReservedOnWindows => PathError::ReservedOnWindows {
                        path,
                        name: component.to_owned(),
                    },
                });
            }
        }
        Ok(SafePath(path))
    }

    /// The path as `/`-separated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as a relative platform path, to join onto a directory.
    pub fn to_relative_path(&self) -> PathBuf {
        self.0.split('/').collect()
    }
}

impl TryFrom<String> for SafePath {
    type Error = PathError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SafePath::new(value).map_err(crate::encoding::noted)
    }
}

impl From<SafePath> for String {
    fn from(value: SafePath) -> Self {
        value.0
    }
}

impl fmt::Display for SafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Checks that `paths` are unique, that no path is a directory of another, and that no two
/// paths are one name where case or Unicode normalisation is ignored ([`portable_name::folded`]):
/// neither two files (`Film.mkv`, `film.mkv`) nor two directories (`Season 1/a`, `season 1/b`,
/// which such a file system would merge into one) nor a file and a directory
/// (`extras`, `Extras/a`).
///
/// Runs in time linear in the total path length (a trie of folded components keyed by parent
/// node), so a manifest of many deep paths cannot make it quadratic.
pub fn check_path_set<'a>(paths: impl IntoIterator<Item = &'a SafePath>) -> Result<(), PathError> {
    struct TrieNode<'a> {
        /// The exact component that made this node, and the path it came from: another path
        /// reaching this node by a component that only folds to the same key collides with it.
        name: &'a str,
        made_by: &'a str,
        /// The path that ends here, if this node is a file.
        file: Option<&'a str>,
        /// The first path that passed through this node as a directory.
        directory_of: Option<&'a str>,
    }
    let mut nodes = vec![TrieNode {
        name: "",
        made_by: "",
        file: None,
        directory_of: None,
    }];
    let mut edges: HashMap<(usize, String), usize> = HashMap::new();
    for path in paths {
        let path = path.as_str();
        let mut current = 0;
        for component in path.split('/') {
            let node = &mut nodes[current];
            if let Some(file) = node.file {
                return Err(PathError::FileIsDirectory {
                    file: shortened(file),
                    other: shortened(path),
                });
            }
            node.directory_of.get_or_insert(path);
            let next = nodes.len();
            current = *edges
                .entry((current, portable_name::folded(component)))
                .or_insert(next);
            if current == next {
                nodes.push(TrieNode {
                    name: component,
                    made_by: path,
                    file: None,
                    directory_of: None,
                });
            } else if nodes[current].name != component {
                return Err(PathError::Collision {
                    path: shortened(path),
                    other: shortened(nodes[current].made_by),
                });
            }
        }
        let node = &mut nodes[current];
        if node.file.is_some() {
            return Err(PathError::Duplicate(shortened(path)));
        }
        if let Some(other) = node.directory_of {
            return Err(PathError::FileIsDirectory {
                file: shortened(path),
                other: shortened(other),
            });
        }
        node.file = Some(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_relative_paths() {
        for ok in ["a", "a/b/c.mkv", "épisode 1.mp4", "x..y", ".hidden", "a/.b"] {
            assert_eq!(SafePath::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_escaping_and_odd_paths() {
        type IsExpected = fn(&PathError) -> bool;
        let cases: &[(&str, IsExpected)] = &[
            ("", |e| matches!(e, PathError::Empty)),
            ("/etc/passwd", |e| matches!(e, PathError::Absolute(_))),
            ("../x", |e| matches!(e, PathError::BadComponent(_))),
            ("a/../../x", |e| matches!(e, PathError::BadComponent(_))),
            ("a/./b", |e| matches!(e, PathError::BadComponent(_))),
            (".", |e| matches!(e, PathError::BadComponent(_))),
            ("a//b", |e| matches!(e, PathError::BadComponent(_))),
            ("a/", |e| matches!(e, PathError::BadComponent(_))),
            ("a\\..\\b", |e| {
                matches!(e, PathError::ForbiddenCharacter(_))
            }),
            ("a\0b", |e| matches!(e, PathError::ForbiddenCharacter(_))),
            ("C:/Windows", |e| {
                matches!(e, PathError::ForbiddenCharacter(_))
            }),
        ];
        for (path, is_expected) in cases {
            let err = SafePath::new(*path).unwrap_err();
            assert!(is_expected(&err), "{path:?} gave {err:?}");
        }
        let long_component = "x".repeat(256);
        assert!(matches!(
            SafePath::new(long_component),
            Err(PathError::TooLong(_))
        ));
        let long_path = vec!["y".repeat(200); 21].join("/");
        assert!(matches!(
            SafePath::new(long_path),
            Err(PathError::TooLong(_))
        ));
    }

    #[test]
    fn decoding_checks_paths_too() {
        let bytes = crate::encoding::encode(&"../../etc/passwd".to_owned());
        let err = crate::encoding::decode::<SafePath>("path", &bytes, 100).unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");
    }

    #[test]
    fn path_sets_must_be_unique_and_not_nest_files() {
        let p = |s: &str| SafePath::new(s).unwrap();
        assert!(check_path_set(&[p("a"), p("a.b"), p("a-b/c"), p("b/a")]).is_ok());
        assert_eq!(
            check_path_set(&[p("a/b"), p("a/b")]),
            Err(PathError::Duplicate("a/b".into()))
        );
        assert_eq!(
            check_path_set(&[p("a/b/c"), p("a.txt"), p("a/b")]),
            Err(PathError::FileIsDirectory {
                file: "a/b".into(),
                other: "a/b/c".into()
            })
        );
        assert!(matches!(
            check_path_set(&[p("a"), p("a-b"), p("a/c")]),
            Err(PathError::FileIsDirectory { .. })
        ));
    }

    #[test]
    fn path_sets_must_not_collide_where_case_or_normalisation_is_ignored() {
        let p = |s: &str| SafePath::new(s).unwrap();
        let collision = |path: &str, other: &str| {
            Err(PathError::Collision {
                path: path.into(),
                other: other.into(),
            })
        };
        assert_eq!(
            check_path_set(&[p("Film.mkv"), p("film.mkv")]),
            collision("film.mkv", "Film.mkv")
        );
        assert_eq!(
            check_path_set(&[p("caf\u{e9}.srt"), p("cafe\u{301}.srt")]),
            collision("cafe\u{301}.srt", "caf\u{e9}.srt")
        );
        assert_eq!(
            check_path_set(&[p("Season 1/a"), p("season 1/b")]),
            collision("season 1/b", "Season 1/a")
        );
        assert_eq!(
            check_path_set(&[p("extras"), p("Extras/a")]),
            collision("Extras/a", "extras")
        );
        assert_eq!(
            check_path_set(&[p("Extras/a"), p("extras")]),
            collision("extras", "Extras/a")
        );
        // The same directory spelled the same way is one directory, as before.
        assert!(check_path_set(&[p("Season 1/a"), p("Season 1/A.srt"), p("b")]).is_ok());
    }

    #[test]
    fn errors_never_carry_a_refused_character_raw() {
        for bad in ["a\u{1b}]0;owned\u{7}", "evil\u{202e}vkm.exe", "a/b\u{9b}c"] {
            let err = SafePath::new(bad).unwrap_err();
            let shown = err.to_string();
            assert!(
                !shown.chars().any(crate::text::is_unsafe_to_show),
                "{shown:?}"
            );
        }
    }
}
