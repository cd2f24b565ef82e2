//! Downloads a user steers, end to end with real daemons on 127.0.0.1: `pause` stops the
//! fetching (and holds across a restart) while the chunks held are still served, `resume`
//! completes the download with the right bytes, `cancel --delete` deletes what the download
//! wrote and nothing else, and what a command cannot do to an item is refused with the reason.
//! A seeder's `--upload-limit` makes a transfer slow enough to act on mid-way.
//!
//! Every wait is bounded; every daemon is killed when its `TestNode` is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_tests::{
    TestNet, TestNode, assert_same_file, count, create, text, write_pseudo_random_file,
};

/// How long a throttled download may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(120);
/// How long a paused download is watched for a chunk that should not come.
const QUIET: Duration = Duration::from_secs(3);

/// A release in `release/`: `film.bin` of `len` bytes and `extras/trailer.bin`, in 64 KiB
/// chunks; returns the publisher's key, the manifest id and the link.
fn release(net: &TestNet, len: u64) -> (String, String, String) {
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), len, 11);
    write_pseudo_random_file(&w.join("release/extras/trailer.bin"), 200 * 1024, 12);
    let created = create(
        net,
        "release",
        "Film",
        "film.manifest",
        &["--chunk-size", "64KiB"],
    );
    (
        publisher,
        text(&created["manifest_id"]).to_owned(),
        text(&created["link"]).to_owned(),
    )
}

/// A seeder of the release whose uploads are limited to 128 KiB/s, and a downloader joined to
/// it that trusts the publisher.
fn slow_pair(net: &TestNet, publisher: &str) -> (TestNode, TestNode) {
    let a = net
        .start("a", &["--upload-limit", "128KiB/s"])
        .trusting(publisher);
    a.add("film.manifest", "release");
    let b = net.start_joined("b", &a, &[]).trusting(publisher);
    (a, b)
}

/// `link` with `node`'s address as a peer hint.
fn hinted(link: &str, node: &TestNode) -> String {
    format!("{link}?peer={}", node.addr())
}

/// `node`'s verified chunks of `id` now.
fn have_chunks(node: &TestNode, id: &str) -> u64 {
    count(&node.content(id).expect("the item is held")["have_chunks"])
}

/// Asserts that `node` gains no chunk of `id` for [`QUIET`] (polled every 250 ms).
#[track_caller]
fn assert_no_chunk_arrives(node: &TestNode, id: &str, held: u64) {
    let until = std::time::Instant::now() + QUIET;
    while std::time::Instant::now() < until {
        let item = node.content(id).expect("the item is held");
        assert_eq!(count(&item["have_chunks"]), held, "a chunk came: {item}");
        assert_eq!(item["state"], "paused", "{item}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_paused_download_fetches_nothing_survives_a_restart_serves_what_it_holds_and_resumes() {
    let net = TestNet::new();
    let (publisher, id, link) = release(&net, 1536 * 1024);
    let (a, mut b) = slow_pair(&net, &publisher);
    b.client_json(&["get", &hinted(&link, &a), "-o", "out", "--detach"]);
    b.wait_for_content(&id, "partly fetched", TIMEOUT, |c| {
        count(&c["have_chunks"]) >= 2
    });

    let paused = b.client_json(&["pause", &id[..8]]);
    assert_eq!(paused["state"], "paused", "{paused}");
    let held = count(&paused["have_chunks"]);
    assert!(held < count(&paused["total_chunks"]), "{paused}");
    assert_no_chunk_arrives(&b, &id, held);
    let status = b.client_json(&["status"]);
    assert_eq!(count(&status["content"]["paused"]), 1, "{status}");
    let table = b.client(&["ls"]);
    assert!(table.ok().stdout.contains(" paused "), "{}", table.stdout);

    // Paused holds across a restart: the node does not resume it by itself.
    b.terminate();
    b.restart();
    b.wait_for_peer(&a);
    assert_no_chunk_arrives(&b, &id, held);

    // The chunks it holds are still served: with the seeder frozen, a third node gets them
    // from the paused one alone.
    a.pause();
    let c = net.start_joined("c", &b, &[]).trusting(&publisher);
    c.client_json(&["get", &hinted(&link, &b), "-o", "out-c", "--detach"]);
    c.wait_for_content(&id, "holding what b holds", TIMEOUT, |item| {
        count(&item["have_chunks"]) == held
    });
    c.client_json(&["rm", &id]);
    a.resume();

    let resumed = b.client_json(&["resume", &format!("licet:{id}")]);
    assert_eq!(resumed["state"], "downloading", "{resumed}");
    b.wait_for_content(&id, "complete", TIMEOUT, |c| c["state"] == "complete");
    assert!(have_chunks(&b, &id) > held);
    let w = net.work();
    assert_same_file(&w.join("release/film.bin"), &w.join("out/film.bin"));
    assert_same_file(
        &w.join("release/extras/trailer.bin"),
        &w.join("out/extras/trailer.bin"),
    );
}

#[test]
fn cancel_delete_removes_the_download_and_its_files_and_refuses_a_publishers_originals() {
    let net = TestNet::new();
    let (publisher, id, link) = release(&net, 1536 * 1024);
    let (a, b) = slow_pair(&net, &publisher);
    let w = net.work();
    b.client_json(&["get", &hinted(&link, &a), "-o", "out", "--detach"]);
    b.wait_for_content(&id, "partly fetched", TIMEOUT, |c| {
        count(&c["have_chunks"]) >= 1
    });
    // What the download would leave of an incomplete file, and the user's own file beside it.
    w.write("out/extras/trailer.bin.part", b"incomplete");
    w.write("out/notes.txt", b"mine");

    let cancelled = b.client(&["cancel", &id[..12], "--delete"]);
    let said = &cancelled.ok().stdout;
    assert!(
        said.contains("removed \"Film\"") && said.contains("deleted "),
        "{said}"
    );
    assert!(b.content(&id).is_none(), "still listed after cancel");
    for gone in [
        "out/film.bin",
        "out/film.bin.part",
        "out/extras/trailer.bin",
        "out/extras/trailer.bin.part",
        "out/extras",
    ] {
        assert!(!w.join(gone).exists(), "{gone} is left");
    }
    assert_eq!(std::fs::read(w.join("out/notes.txt")).unwrap(), b"mine");

    // The publisher's originals are never deleted: refused, naming why; nothing changes.
    let refused = a.client(&["cancel", &id, "--delete"]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("originals") && refused.stderr.contains("added with `add`"),
        "{}",
        refused.stderr
    );
    assert!(a.content(&id).is_some(), "the seeder forgot it");
    assert!(w.join("release/film.bin").exists());
    assert!(w.join("release/extras/trailer.bin").exists());
}

#[test]
fn pausing_what_is_not_being_fetched_or_resuming_what_is_not_paused_is_refused() {
    let net = TestNet::new();
    let (publisher, id, link) = release(&net, 128 * 1024);
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    b.client(&["get", &hinted(&link, &a), "-o", "out"]).ok();

    for (node, args, says) in [
        (
            &b,
            ["pause", &id],
            "is complete: only a download being fetched can be paused",
        ),
        (&b, ["resume", &id], "is not paused (it is complete)"),
        (&a, ["pause", &id], "is seeded from its originals"),
        (&a, ["resume", &id], "is not paused"),
    ] {
        let out = node.client(&args);
        out.expect_code(2);
        assert!(
            out.stderr.contains(says) && out.stderr.contains(&id),
            "{args:?} on {}: {}",
            node.name(),
            out.stderr
        );
    }
    assert_eq!(b.content(&id).unwrap()["state"], "complete");
    let missing = b.client(&["pause", &"ab".repeat(32)]);
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("is not held here"),
        "{}",
        missing.stderr
    );
}
