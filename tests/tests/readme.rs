//! The README names source files to read (the crate map, the tables of what Licet refuses and of
//! its tests): every one of them must exist, so that a newcomer following it never lands on a
//! file that moved.

use std::path::Path;

/// Every path in `text` that starts at one of the workspace's top folders and names a file
/// (`node/src/fetch/mod.rs`, `bench/transfer.py`), as written.
fn named_files(text: &str) -> Vec<&str> {
    const TOPS: &[&str] = &[
        "node/",
        "proto/",
        "manifest-tool/",
        "tests/",
        "bench/",
        "scripts/",
        "fuzz/",
        ".ci/",
    ];
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    let mut found = Vec::new();
    for (at, _) in text.char_indices() {
        let rest = &text[at..];
        let starts_word = at == 0 || !text[..at].ends_with(is_path_char);
        if !starts_word || !TOPS.iter().any(|top| rest.starts_with(top)) {
            continue;
        }
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches('.');
        let file_name = path.rsplit('/').next().unwrap_or_default();
        if file_name.contains('.') {
            found.push(path);
        }
    }
    found
}

#[test]
fn every_file_the_readme_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let named = named_files(&readme);
    assert!(named.len() > 10, "the README names source files: {named:?}");
    let missing: Vec<&str> = named
        .into_iter()
        .filter(|p| !root.join(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the README names files that do not exist: {missing:?}"
    );
}

#[test]
fn file_names_are_read_whole_and_only_at_a_word_start() {
    let text =
        "see `node/src/fetch/mod.rs`, (bench/transfer.py). not xnode/src/a.rs; node/src/ alone";
    assert_eq!(
        named_files(text),
        ["node/src/fetch/mod.rs", "bench/transfer.py"]
    );
}
