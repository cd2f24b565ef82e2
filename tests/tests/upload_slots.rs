//! A seed's upload slots with real daemons on 127.0.0.1: a seed whose release five peers fetch
//! at once sends to a few of them at a time, answers the others busy (counted in
//! `licet_chunks_choked_total`) while they fetch from one another, and every download completes
//! byte for byte.
//!
//! Every wait is bounded; every daemon is killed when its `TestNode` is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_tests::{TestNet, assert_same_file, count, create, text, write_pseudo_random_file};

const KIB: u64 = 1024;
/// How long the downloads may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn a_seed_among_more_downloaders_than_slots_sends_to_a_few_and_all_complete() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let len = 2048 * KIB;
    write_pseudo_random_file(&w.join("release/film.bin"), len, 11);
    let created = create(
        &net,
        "release",
        "Film",
        "film.manifest",
        &["--chunk-size", "64KiB"],
    );
    let id = text(&created["manifest_id"]).to_owned();
    // Capped, so that the downloads overlap: one copy takes the seed 4 s.
    let seed = net
        .start("seed", &["--upload-limit", "512KiB/s"])
        .trusting(&publisher);
    seed.add("film.manifest", "release");
    let link = format!("{}?peer={}", text(&created["link"]), seed.addr());
    let downloaders: Vec<_> = (1..=5)
        .map(|n| {
            net.start_joined(&format!("d{n}"), &seed, &[])
                .trusting(&publisher)
        })
        .collect();
    for (n, node) in downloaders.iter().enumerate() {
        node.client_json(&["get", &link, "-o", &format!("out-{n}"), "--detach"]);
    }
    for (n, node) in downloaders.iter().enumerate() {
        node.wait_for_content(&id, "complete", TIMEOUT, |c| c["state"] == "complete");
        assert_same_file(
            &w.join("release/film.bin"),
            &w.join(&format!("out-{n}/film.bin")),
        );
    }
    let choked = seed.metric("licet_chunks_choked_total");
    assert!(
        choked >= 1.0,
        "the seed never answered a chunk request busy for want of a slot"
    );
    // The peers carried copies the seed did not send.
    let peers = seed.client_json(&["peers"]);
    let sent: u64 = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| count(&p["bytes_out"]))
        .sum();
    assert!(
        sent < 5 * len,
        "the seed sent {sent} bytes, {:.2} copies for 5 downloaders",
        sent as f64 / len as f64
    );
}
