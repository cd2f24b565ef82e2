//! The import rule of `node/src` (see the table in `lib.rs`), checked on the sources: a module
//! imports only from its own top-level module or from a lower layer, never from a higher one
//! nor from another module of its own layer; and the client side (`cli`, `api::client`) never
//! names the HTTP server (`api::server`).

use std::{collections::BTreeSet, path::Path};

/// Each top-level module's layer: 0 is the top (the edge a user touches), higher is lower.
const LAYERS: &[(&str, u8)] = &[
    ("daemon", 0),
    ("cli", 0),
    ("api", 1),
    ("node", 2),
    ("catalogs", 3),
    ("serve", 3),
    ("fetch", 4),
    ("peers", 5),
    ("deliveries", 5),
    ("licences", 5),
    ("items", 6),
    ("policy_state", 6),
    ("transfer", 6),
    ("content", 6),
    ("bandwidth", 6),
    ("metrics", 7),
    ("contract", 8),
    ("net", 9),
    ("store", 9),
];

/// Imports that break the rule today and are being removed; each is named here so that no new
/// one slips in.
const KNOWN_BREAKS: &[(&str, &str)] = &[];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The source before its `#[cfg(test)] mod tests` (tests may reach anywhere).
fn non_test_part(source: &str) -> &str {
    source
        .find("#[cfg(test)]\nmod tests")
        .map_or(source, |at| &source[..at])
}

/// Every `crate::` path named in `source`, as its first two segments (`api::server`, `node`):
/// paths written out, and the top-level items of `use crate::{…}` groups.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut push = |path: &str| {
        let segments: Vec<&str> = path
            .split("::")
            .map(str::trim)
            .take_while(|s| {
                !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .take(2)
            .collect();
        if !segments.is_empty() {
            paths.insert(segments.join("::"));
        }
    };
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Split the group's top level at commas.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push(&std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            push(&item);
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len());
            push(&after[..end]);
        }
        rest = after;
    }
    paths
}

/// The rule's breaks in one file of top-level module `module`.
fn breaks(module: &str, source: &str) -> Vec<(String, String)> {
    let Some(own) = layer(module) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for path in crate_paths(non_test_part(source)) {
        let target = path.split("::").next().unwrap_or_default();
        let client_side = module == "cli" || module == "api::client";
        if client_side && path == "api::server" {
            found.push((module.to_owned(), path.clone()));
        }
        if let Some(theirs) = layer(target)
            && target != module
            && theirs <= own
        {
            found.push((module.to_owned(), target.to_owned()));
        }
    }
    found
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read node/src") {
        let path = entry.expect("read node/src").path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn imports_go_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut unexpected = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs");
        let module = if relative == Path::new("api/client.rs") {
            "api::client"
        } else {
            top
        };
        let source = std::fs::read_to_string(file).expect("read source");
        for (from, to) in breaks(module, &source) {
            if KNOWN_BREAKS.contains(&(from.as_str(), to.as_str())) {
                seen.insert((from, to));
            } else {
                unexpected.push(format!("{}: {from} imports {to}", relative.display()));
            }
        }
    }
    assert!(
        unexpected.is_empty(),
        "imports against the layers of node/src (lib.rs):\n{}",
        unexpected.join("\n")
    );
    let gone: Vec<_> = KNOWN_BREAKS
        .iter()
        .filter(|(f, t)| !seen.contains(&((*f).to_owned(), (*t).to_owned())))
        .collect();
    assert!(
        gone.is_empty(),
        "these breaks are mended: remove them from KNOWN_BREAKS: {gone:?}"
    );
}

#[test]
fn the_check_sees_every_way_of_naming_a_module() {
    let source = "use crate::{\n    node::{Item, Node},\n    api::server::{self, X},\n    store,\n};\n\
                  fn f() { crate::fetch::run(); }\n#[cfg(test)]\nmod tests { use crate::daemon; }\n";
    let paths = crate_paths(non_test_part(source));
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        ["api::server", "fetch::run", "node", "store"]
    );
    assert_eq!(
        breaks("catalogs", source),
        [
            ("catalogs".to_owned(), "api".to_owned()),
            ("catalogs".to_owned(), "node".to_owned())
        ]
    );
    assert_eq!(
        breaks("cli", source),
        [("cli".to_owned(), "api::server".to_owned())]
    );
    assert!(breaks("daemon", source).is_empty());
}
