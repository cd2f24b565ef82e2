//! A seeder never serves bytes that do not match what it verified, and only proof of change
//! takes content out of service: real daemons on 127.0.0.1, checked through what a user sees
//! (`ls --json`, `peers --json`, `check`'s exit code, `/metrics`, the bytes on disk, the log).
//!
//! Every wait is bounded; every daemon is killed when its `TestNode` is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{io::Write as _, time::Duration};

use libp2p::{Multiaddr, PeerId};
use licet_proto::{
    ManifestId,
    policy::RefusalReason,
    wire::{Request, Response},
};
use licet_tests::{
    TestNet, TestNode, assert_same_file, count, create, hostile::HostilePeer,
    overwrite_keeping_mtime, text, write_pseudo_random_file,
};
use serde_json::Value;

const KIB: u64 = 1024;
/// How long a download or a wait on a node's state may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A release of two files (`film.bin`, 256 KiB in 16 KiB chunks, and `extra.bin`), seeded by
/// node "a"; B joined to A and trusting the publisher. Returns (id, link, A, B).
fn seeded(net: &TestNet) -> (String, String, TestNode, TestNode) {
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), 256 * KIB, 3);
    write_pseudo_random_file(&w.join("release/extra.bin"), 64 * KIB, 4);
    let created = create(
        net,
        "release",
        "Film",
        "film.manifest",
        &["--chunk-size", "16KiB"],
    );
    let a = net.start("a", &[]).trusting(&publisher);
    let added = a.add("film.manifest", "release");
    assert_eq!(added["state"], "complete", "{added}");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let link = text(&created["link"]).to_owned();
    (text(&created["manifest_id"]).to_owned(), link, a, b)
}

/// `link` with `node`'s address as a peer hint.
fn hinted(link: &str, node: &TestNode) -> String {
    format!("{link}?peer={}", node.addr())
}

#[test]
fn a_seeded_file_changed_in_place_with_the_same_size_and_mtime_is_not_served_and_check_restores_it()
{
    let net = TestNet::new();
    let (id, link, mut a, b) = seeded(&net);
    let film = net.work().join("release/film.bin");
    let original = std::fs::read(&film).unwrap();
    // `cp -p` of other bytes over the seeded file: one byte differs in chunk 9.
    let mut changed = original.clone();
    changed[9 * 16 * 1024 + 100] ^= 0x5a;
    overwrite_keeping_mtime(&film, &changed);

    let out = net.work().join("out");
    let get = b.spawn_client(&["get", &hinted(&link, &a), "-o", out.to_str().unwrap()]);

    // A finds the chunk does not match before sending it, and says so.
    let item = a.wait_for_content(&id, "out of service: film.bin changed", TIMEOUT, |item| {
        item["changed_files"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    assert_eq!(item["state"], "failed", "{item}");
    assert_eq!(
        item["changed_files"],
        serde_json::json!(["film.bin"]),
        "{item}"
    );
    let error = text(&item["error"]);
    assert!(
        error.contains("film.bin changed on disk")
            && error.contains("chunk 9 no longer matches")
            && error.contains("licet-node check"),
        "{error}"
    );
    // The other file is still served.
    assert_eq!(count(&item["have_chunks"]), 4, "{item}");
    assert_eq!(a.metric("licet_files_changed_total"), 1.0);
    let ls = a.client(&["ls"]);
    assert!(
        ls.stdout.contains("changed on disk, not served: film.bin"),
        "{}",
        ls.stdout
    );
    let status = a.client(&["status"]);
    assert!(
        status.stdout.contains("changed on disk  1 item"),
        "{}",
        status.stdout
    );
    assert_eq!(a.client_json(&["status"])["content"]["changed"], 1);

    // B never got a bad chunk from A: A is not banned, nothing bad counted.
    let entry = &b.peer_entry(a.peer_id()).expect("B lists A");
    assert_eq!(entry["banned"], false, "{entry}");
    assert_eq!(b.metric("licet_bad_chunks_total"), 0.0);
    assert_eq!(b.metric("licet_peers_banned_total"), 0.0);

    // It stays out of service across a restart.
    a.terminate();
    a.restart_with(&["--bootstrap", b.addr()]);
    let item = a.content(&id).unwrap();
    assert_eq!(item["state"], "failed", "{item}");
    assert_eq!(
        item["changed_files"],
        serde_json::json!(["film.bin"]),
        "{item}"
    );
    assert_eq!(count(&item["have_chunks"]), 4, "{item}");

    // While the bytes are wrong, check says so and exits 1.
    let out_check = a.client(&["check", &id]);
    assert_eq!(out_check.code, Some(1), "{}", out_check.stderr);
    assert!(
        out_check.stderr.contains("1 of its 16 chunks do not match"),
        "{}",
        out_check.stderr
    );
    assert_eq!(a.content(&id).unwrap()["have_chunks"], 4 + 15);

    // The right bytes back: check makes it complete again, and B's download completes.
    std::fs::write(&film, &original).unwrap();
    let checked = a.client_json(&["check", &id]);
    assert_eq!(checked["state"], "complete", "{checked}");
    assert_eq!(checked["changed_files"], serde_json::json!([]), "{checked}");
    assert_eq!(checked["error"], Value::Null, "{checked}");
    b.client_json(&["get", &hinted(&link, &a), "-o", out.to_str().unwrap()]);
    b.wait_for_content(&id, "complete", TIMEOUT, |item| item["state"] == "complete");
    assert_same_file(&film, &out.join("film.bin"));
    assert_eq!(b.metric("licet_bad_chunks_total"), 0.0);
    drop(get);
}

#[test]
fn a_read_error_that_proves_no_change_is_answered_busy_and_changes_nothing() {
    let net = TestNet::new();
    let (id, link, a, b) = seeded(&net);
    let link = hinted(&link, &a);
    // Every file A opens from now on fails with "too many open files" (EMFILE): stdin, stdout
    // and stderr hold descriptors 0 to 2, so no new one fits under a limit of 3. Its connection
    // to B is open already; its control API cannot answer until the limit is put back.
    let old = a.set_open_files_limit("3:");
    let out = net.work().join("out");
    let get = b.spawn_client(&["get", &link, "-o", out.to_str().unwrap()]);
    let line = a.wait_for_log("answered busy", TIMEOUT);
    assert!(line.contains("Too many open files"), "{line}");
    a.set_open_files_limit(&old);

    let item = a.content(&id).unwrap();
    assert_eq!(item["state"], "complete", "{item}");
    assert_eq!(item["changed_files"], serde_json::json!([]), "{item}");
    assert_eq!(item["have_chunks"], item["total_chunks"], "{item}");
    assert!(a.metric("licet_serve_io_errors_total") >= 1.0);
    assert_eq!(a.metric("licet_files_changed_total"), 0.0);

    b.wait_for_content(&id, "complete", TIMEOUT, |item| item["state"] == "complete");
    assert_same_file(&net.work().join("release/film.bin"), &out.join("film.bin"));
    assert_eq!(b.metric("licet_bad_chunks_total"), 0.0);
    drop(get);
}

#[test]
fn a_seeded_file_that_grows_is_touched_or_is_deleted_is_not_served_and_the_rest_is() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let names = ["kept.bin", "grown.bin", "touched.bin", "gone.bin"];
    for (seed, name) in names.iter().enumerate() {
        write_pseudo_random_file(
            &w.join(&format!("release/{name}")),
            64 * KIB,
            10 + seed as u64,
        );
    }
    let created = create(
        &net,
        "release",
        "Four",
        "four.manifest",
        &["--chunk-size", "16KiB"],
    );
    let id = text(&created["manifest_id"]).to_owned();
    let a = net.start("a", &[]).trusting(&publisher);
    let added = a.add("four.manifest", "release");
    assert_eq!(added["state"], "complete", "{added}");
    assert_eq!(count(&added["have_chunks"]), 16, "{added}");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);

    // Bytes appended (every chunk the manifest names still verifies); the same bytes with a
    // later modification time (`touch`); the file removed.
    let grown = w.join("release/grown.bin");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&grown)
        .unwrap()
        .write_all(b"appended")
        .unwrap();
    let touched = w.join("release/touched.bin");
    let modified = std::fs::metadata(&touched).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&touched)
        .unwrap();
    file.set_modified(modified + Duration::from_secs(7))
        .unwrap();
    drop(file);
    std::fs::remove_file(w.join("release/gone.bin")).unwrap();

    let out = w.join("out");
    let get = b.spawn_client(&[
        "get",
        &hinted(text(&created["link"]), &a),
        "-o",
        out.to_str().unwrap(),
    ]);
    // B asks for every chunk; A notices each changed file when it is asked for one of its
    // chunks, and takes that file alone out of service.
    let changed = serde_json::json!(["gone.bin", "grown.bin", "touched.bin"]);
    let sorted = |item: &Value| {
        let mut files: Vec<String> = item["changed_files"]
            .as_array()
            .map(|f| f.iter().map(|v| text(v).to_owned()).collect())
            .unwrap_or_default();
        files.sort();
        serde_json::json!(files)
    };
    let item = a.wait_for_content(
        &id,
        "out of service: three files changed",
        TIMEOUT,
        |item| sorted(item) == changed,
    );
    assert_eq!(item["state"], "failed", "{item}");
    assert_eq!(
        count(&item["have_chunks"]),
        4,
        "only kept.bin is served: {item}"
    );
    assert_eq!(a.metric("licet_files_changed_total"), 3.0);
    let ls = a.client(&["ls"]);
    assert!(
        ls.stdout.contains("changed on disk, not served"),
        "{}",
        ls.stdout
    );

    // B got kept.bin whole, and never a chunk it rejected.
    let file = out.join("kept.bin");
    let on_b = b.wait_for_content(&id, "holding kept.bin", TIMEOUT, |item| {
        count(&item["have_chunks"]) == 4
    });
    assert_ne!(on_b["state"], "complete", "{on_b}");
    assert_same_file(&w.join("release/kept.bin"), &file);
    let entry = &b.peer_entry(a.peer_id()).expect("B lists A");
    assert_eq!(entry["banned"], false, "{entry}");
    assert_eq!(b.metric("licet_bad_chunks_total"), 0.0);
    drop(get);

    // `check` finds the touched file whole and serves it again; the other two stay out.
    let checked = a.client(&["check", &id]);
    assert_eq!(checked.code, Some(1), "{}", checked.stderr);
    let item = a.content(&id).unwrap();
    assert_eq!(
        sorted(&item),
        serde_json::json!(["gone.bin", "grown.bin"]),
        "{item}"
    );
    assert_eq!(count(&item["have_chunks"]), 8, "{item}");
}

/// The peers a node names when asked which peers fetch `manifest` (peer exchange), with the
/// addresses it gives for each; `None` if it refused or did not answer.
fn exchanged(
    asker: &HostilePeer,
    node: &TestNode,
    manifest: ManifestId,
) -> Option<Vec<(PeerId, Vec<Multiaddr>)>> {
    match asker.ask_node(node.addr(), Request::Peers { manifest })? {
        Response::Peers { peers } => Some(
            peers
                .into_iter()
                .map(|contact| {
                    let addrs = contact
                        .addrs
                        .into_iter()
                        .map(|a| Multiaddr::try_from(a).unwrap());
                    (PeerId::from_bytes(&contact.peer).unwrap(), addrs.collect())
                })
                .collect(),
        ),
        _ => None,
    }
}

#[test]
fn a_seed_names_the_peers_fetching_a_release_to_each_other_and_nothing_of_what_it_does_not_hold() {
    let net = TestNet::new();
    let (id, _link, a, _b) = seeded(&net);
    let id: ManifestId = id.parse().unwrap();
    let (first, second, bystander) = (
        HostilePeer::requester(),
        HostilePeer::requester(),
        HostilePeer::requester(),
    );
    for fetcher in [&first, &second] {
        let answer = fetcher.ask_node(a.addr(), Request::Availability { manifest: id });
        assert!(
            matches!(answer, Some(Response::Availability { .. })),
            "{answer:?}"
        );
    }
    // The bystander connects but never asks about the release.
    assert!(exchanged(&bystander, &a, ManifestId([7; 32])).is_none());

    let named = |asker: &HostilePeer| -> Vec<PeerId> {
        exchanged(asker, &a, id)
            .expect("the seed answers")
            .into_iter()
            .map(|(peer, _)| peer)
            .collect()
    };
    let peer = |hostile: &HostilePeer| hostile.peer_id().parse::<PeerId>().unwrap();
    assert_eq!(
        named(&second),
        vec![peer(&first)],
        "the other fetcher, not the asker"
    );
    assert_eq!(
        named(&bystander),
        vec![peer(&second), peer(&first)],
        "the latest first"
    );
    // With the address the fetcher listens on (what its Identify said).
    let listen: Multiaddr = first.addr().parse().unwrap();
    let listen: Multiaddr = listen
        .into_iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect();
    let contacts = exchanged(&second, &a, id).unwrap();
    assert!(
        contacts[0].1.contains(&listen),
        "{listen} among {:?}",
        contacts[0].1
    );
    // Content it does not hold: refused, no peers named.
    let other = ManifestId([9; 32]);
    match second.ask_node(a.addr(), Request::Peers { manifest: other }) {
        Some(Response::Refused { reason, .. }) => assert_eq!(reason, RefusalReason::NotHeld),
        answer => panic!("not refused: {answer:?}"),
    }
}

#[test]
fn a_seed_among_several_downloaders_offers_the_chunks_it_sent_least_often_and_serves_any() {
    let net = TestNet::new();
    let (id, _link, a, _b) = seeded(&net);
    let id: ManifestId = id.parse().unwrap();
    let (first, second) = (HostilePeer::requester(), HostilePeer::requester());
    let offered = |asker: &HostilePeer| -> Vec<Vec<bool>> {
        match asker.ask_node(a.addr(), Request::Availability { manifest: id }) {
            Some(Response::Availability { files }) => files
                .iter()
                .map(|bits| (0..bits.len()).map(|c| bits.get(c)).collect())
                .collect(),
            answer => panic!("no availability: {answer:?}"),
        }
    };
    let all = |files: &[Vec<bool>]| files.iter().flatten().all(|&held| held);
    assert!(
        all(&offered(&first)),
        "a lone downloader is offered everything"
    );
    assert!(all(&offered(&second)), "nothing sent yet: everything");
    for chunk in [(0, 0), (0, 1), (1, 3)] {
        let answer = first.ask_chunk(a.addr(), id, chunk, None);
        assert!(matches!(answer, Some(Response::Chunk { .. })), "{answer:?}");
    }
    // The chunks sent to the first are left to it to pass on; the rest are offered.
    let files = offered(&second);
    assert!(!files[0][0] && !files[0][1] && !files[1][3], "{files:?}");
    assert_eq!(
        files.iter().flatten().filter(|&&held| held).count(),
        16 + 4 - 3
    );
    // The offer is advice: a chunk not offered is still served.
    let answer = second.ask_chunk(a.addr(), id, (0, 0), None);
    assert!(matches!(answer, Some(Response::Chunk { .. })), "{answer:?}");
}
