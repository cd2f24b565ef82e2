//! `get` never damages a user's files: real daemons on 127.0.0.1, a publisher whose manifest
//! names `sub/clip.bin` and `readme.txt`, and an output folder that already holds links, the
//! user's own files, another download, seeded originals, or the node's data directory. Each test
//! asserts what the user sees: `get`'s exit code and error text, the bytes and modification
//! times on disk, `fetched_chunks` and `/metrics`.
//!
//! Every wait is bounded; every daemon is killed when its `TestNode` is dropped, and every file
//! lives in the net's temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{os::unix::fs::symlink, path::Path, time::Duration};

use licet_tests::{
    Outcome, TestNet, TestNode, assert_same_file, count, create, pseudo_random_bytes, text,
};
use serde_json::Value;

/// How long a download may take before the test gives up on it.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// The chunk size of the releases (the smallest, so the clip has several chunks).
const CHUNK: usize = 16 * 1024;

/// A release in `dir` ("sub/clip.bin" of five chunks and "readme.txt" of one, their bytes set by
/// `seed`) signed into `manifest`; its `create --json` reply.
fn release(net: &TestNet, dir: &str, manifest: &str, seed: u64) -> Value {
    let w = net.work();
    w.write(
        &format!("{dir}/sub/clip.bin"),
        &pseudo_random_bytes(5 * CHUNK - 100, seed),
    );
    w.write(
        &format!("{dir}/readme.txt"),
        format!("release {seed}: read me\n").as_bytes(),
    );
    create(
        net,
        dir,
        &format!("Release {seed}"),
        manifest,
        &["--chunk-size", "16KiB"],
    )
}

/// The publisher's key, release 1 in `release/` (`one.manifest`), node "a" seeding it and node
/// "b" trusting the publisher and connected to A; returns (release 1, A, B).
fn seeded(net: &TestNet) -> (Value, TestNode, TestNode) {
    let publisher = net.work().keygen("publisher.pem");
    let one = release(net, "release", "one.manifest", 1);
    let a = net.start("a", &[]).trusting(&publisher);
    assert_eq!(a.add("one.manifest", "release")["state"], "complete");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    (one, a, b)
}

/// `get LINK -o OUT extra…` on `node`, waiting for it to end.
fn get(node: &TestNode, link: &Value, out: &str, extra: &[&str]) -> Outcome {
    let mut args = vec!["get", text(link), "-o", out];
    args.extend_from_slice(extra);
    node.spawn_client(&args).wait(DOWNLOAD_TIMEOUT)
}

/// Asserts `out` failed with exit 2 and an error naming `path` and containing `words`.
#[track_caller]
fn refused(out: &Outcome, path: &Path, words: &str) {
    out.expect_code(2);
    let path = path.to_str().unwrap();
    assert!(
        out.stderr.starts_with("licet-node: error: ")
            && out.stderr.contains(path)
            && out.stderr.contains(words),
        "expected an error naming {path} and saying {words:?}:\n{}",
        out.stderr
    );
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn get_never_writes_through_a_symlinked_folder_inside_the_output_folder() {
    let net = TestNet::new();
    let w = net.work();
    let (one, _a, b) = seeded(&net);
    std::fs::create_dir_all(w.join("elsewhere/dir")).unwrap();
    std::fs::create_dir_all(w.join("out")).unwrap();
    symlink(w.join("elsewhere/dir"), w.join("out/sub")).unwrap();

    let out = get(&b, &one["link"], "out", &["--replace"]);

    refused(
        &out,
        &std::fs::canonicalize(w.join("out")).unwrap().join("sub"),
        "is a symbolic link",
    );
    assert!(
        names(&w.join("elsewhere/dir")).is_empty(),
        "written through the link"
    );
    assert_eq!(
        names(&w.join("out")),
        ["sub"],
        "a refused get creates nothing"
    );
}

#[test]
fn get_never_overwrites_a_file_through_a_symlink() {
    let net = TestNet::new();
    let w = net.work();
    let (one, _a, b) = seeded(&net);
    w.write("elsewhere/victim.conf", b"the user's settings\n");
    std::fs::create_dir_all(w.join("out")).unwrap();
    symlink(w.join("elsewhere/victim.conf"), w.join("out/readme.txt")).unwrap();

    // Not even when the user asked to replace files.
    let out = get(&b, &one["link"], "out", &["--replace"]);

    refused(
        &out,
        &std::fs::canonicalize(w.join("out"))
            .unwrap()
            .join("readme.txt"),
        "is a symbolic link",
    );
    assert_eq!(
        std::fs::read(w.join("elsewhere/victim.conf")).unwrap(),
        b"the user's settings\n"
    );
    assert_eq!(
        names(&w.join("out")),
        ["readme.txt"],
        "a refused get creates nothing"
    );
}

#[test]
fn get_refuses_an_existing_different_file_and_leaves_it_unchanged() {
    let net = TestNet::new();
    let w = net.work();
    let (one, _a, b) = seeded(&net);
    w.write("out/readme.txt", b"my own notes, not the release's\n");
    let before = std::fs::metadata(w.join("out/readme.txt")).unwrap();

    let out = get(&b, &one["link"], "out", &[]);

    refused(
        &out,
        &std::fs::canonicalize(w.join("out/readme.txt")).unwrap(),
        "already exists and is not the manifest's file",
    );
    assert!(out.stderr.contains("--replace"), "{}", out.stderr);
    let after = std::fs::metadata(w.join("out/readme.txt")).unwrap();
    assert_eq!(
        std::fs::read(w.join("out/readme.txt")).unwrap(),
        b"my own notes, not the release's\n"
    );
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    assert_eq!(
        names(&w.join("out")),
        ["readme.txt"],
        "a refused get creates nothing"
    );
    assert!(b.content(text(&one["manifest_id"])).is_none(), "not held");
}

#[test]
fn get_adopts_an_identical_existing_file_and_fetches_only_the_rest() {
    let net = TestNet::new();
    let w = net.work();
    let (one, _a, b) = seeded(&net);
    // The clip is already there (an earlier download, `rm`'d from the node); the readme is not.
    std::fs::create_dir_all(w.join("out/sub")).unwrap();
    std::fs::copy(w.join("release/sub/clip.bin"), w.join("out/sub/clip.bin")).unwrap();
    let before = std::fs::metadata(w.join("out/sub/clip.bin")).unwrap();

    let out = get(&b, &one["link"], "out", &["--json"]);

    out.ok();
    let got = out.json();
    assert_eq!(got["state"], "complete", "{got}");
    assert_eq!(count(&got["total_chunks"]), 6, "{got}");
    assert_eq!(
        count(&got["fetched_chunks"]),
        1,
        "only the readme is fetched: {got}"
    );
    assert_eq!(b.metric("licet_chunks_fetched_total"), 1.0);
    for path in ["sub/clip.bin", "readme.txt"] {
        assert_same_file(
            &w.join(&format!("release/{path}")),
            &w.join(&format!("out/{path}")),
        );
    }
    let after = std::fs::metadata(w.join("out/sub/clip.bin")).unwrap();
    assert_eq!(
        after.modified().unwrap(),
        before.modified().unwrap(),
        "not rewritten"
    );
}

#[test]
fn get_replace_overwrites_an_existing_different_file() {
    let net = TestNet::new();
    let w = net.work();
    let (one, _a, b) = seeded(&net);
    w.write(
        "out/readme.txt",
        b"an older readme that is much longer than the new one\n",
    );

    let out = get(&b, &one["link"], "out", &["--replace", "--json"]);

    out.ok();
    assert_eq!(out.json()["state"], "complete", "{}", out.stdout);
    for path in ["sub/clip.bin", "readme.txt"] {
        assert_same_file(
            &w.join(&format!("release/{path}")),
            &w.join(&format!("out/{path}")),
        );
    }
}

#[test]
fn a_second_manifest_with_the_same_path_in_the_same_folder_is_refused() {
    let net = TestNet::new();
    let w = net.work();
    let (one, a, b) = seeded(&net);
    let two = release(&net, "release2", "two.manifest", 2);
    assert_eq!(a.add("two.manifest", "release2")["state"], "complete");
    get(&b, &one["link"], "out", &[]).ok();

    let out = get(&b, &two["link"], "out", &["--replace"]);

    refused(
        &out,
        &std::fs::canonicalize(w.join("out"))
            .unwrap()
            .join("readme.txt"),
        text(&one["manifest_id"]),
    );
    for path in ["sub/clip.bin", "readme.txt"] {
        assert_same_file(
            &w.join(&format!("release/{path}")),
            &w.join(&format!("out/{path}")),
        );
    }
    assert!(b.content(text(&two["manifest_id"])).is_none(), "not held");
}

#[test]
fn get_into_a_folder_being_seeded_is_refused() {
    let net = TestNet::new();
    let w = net.work();
    let (one, a, b) = seeded(&net);
    // B seeds release 2, whose paths are those of A's originals.
    let two = release(&net, "release2", "two.manifest", 2);
    assert_eq!(b.add("two.manifest", "release2")["state"], "complete");
    let originals = w.join("originals");
    std::fs::create_dir_all(&originals).unwrap();
    for path in ["sub/clip.bin", "readme.txt"] {
        std::fs::create_dir_all(originals.join(path).parent().unwrap()).unwrap();
        std::fs::copy(w.join(&format!("release/{path}")), originals.join(path)).unwrap();
    }

    // The publisher's node fetches release 2 into the folder it seeds release 1 from.
    let out = get(&a, &two["link"], "release", &["--replace"]);

    refused(
        &out,
        &std::fs::canonicalize(w.join("release"))
            .unwrap()
            .join("readme.txt"),
        text(&one["manifest_id"]),
    );
    for path in ["sub/clip.bin", "readme.txt"] {
        assert_same_file(&originals.join(path), &w.join(&format!("release/{path}")));
    }
    assert_eq!(
        a.content(text(&one["manifest_id"])).unwrap()["state"],
        "complete"
    );
}

#[test]
fn get_into_the_data_directory_or_a_folder_holding_it_is_refused() {
    let net = TestNet::new();
    let w = net.work();
    let (one, _a, b) = seeded(&net);
    let data_dir = std::fs::canonicalize(b.data_dir()).unwrap();
    let before = names(&data_dir);

    for (out, relation) in [
        (
            b.data_dir().to_str().unwrap(),
            "is the node's data directory",
        ),
        ("nodes", "holds the node's data directory"),
        ("nodes/b/downloads", "is inside the node's data directory"),
    ] {
        let got = get(&b, &one["link"], out, &[]);
        refused(&got, &data_dir, relation);
    }
    assert_eq!(
        names(&data_dir),
        before,
        "nothing written in the data directory"
    );
    assert!(
        names(&w.join("nodes"))
            .iter()
            .all(|n| n != "sub" && n != "readme.txt")
    );
    assert!(b.content(text(&one["manifest_id"])).is_none(), "not held");
}
