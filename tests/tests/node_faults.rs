//! Faults of the node's own machine that must not silently disable protection: a full disk
//! under the node's database, and a clock that is behind (the publisher's signed time, or what
//! peers say). Real `licet-node` daemons
//! on 127.0.0.1; every test asserts what a user sees (exit codes, `--json`, `/metrics`, the
//! answer a peer gets to a chunk request).
//!
//! Every wait is bounded; daemons are killed and filesystems unmounted when the test ends,
//! also when it panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_proto::{ManifestId, catalog::catalog_head_key, policy::RefusalReason, wire::Response};
use licet_tests::{
    TestNet, TestNode, count, create,
    hostile::{Answer, HostileContent, HostilePeer},
    required, text,
    tmpfs::Tmpfs,
    wait_for, write_pseudo_random_file,
};
use serde_json::Value;

/// How long the node may take to reopen its database once space is freed (it tries every 2 s).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The publisher's key and a 1 MiB release of it in `release/`, signed into `film.manifest`
/// with `extra` options; returns (publisher key, manifest id).
fn release(net: &TestNet, extra: &[&str]) -> (String, String) {
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), 1 << 20, 5);
    let created = create(net, "release", "Film", "film.manifest", extra);
    (publisher, text(&created["manifest_id"]).to_owned())
}

/// What a peer asking `node` for chunk 0 of `id` gets: `Ok` for a chunk, else the refusal.
fn chunk_answer(node: &TestNode, id: &str) -> Result<(), RefusalReason> {
    let manifest: ManifestId = id.parse().unwrap();
    match HostilePeer::requester().ask_chunk(node.addr(), manifest, (0, 0), None) {
        Some(Response::Chunk { .. }) => Ok(()),
        Some(Response::Refused { reason, .. }) => Err(reason),
        other => panic!("{}: chunk request answered {other:?}", node.name()),
    }
}

/// `licet-manifest catalog sign draft.json --key publisher.pem -o OUT --expires +1d extra…`.
fn sign(net: &TestNet, out: &str, extra: &[&str]) {
    let mut args = vec!["--expires", "+1d"];
    args.extend_from_slice(extra);
    net.work()
        .catalog_sign("draft.json", "publisher.pem", out, &args)
        .ok();
}

// ----- item 3: a slow clock -----

#[test]
fn a_catalog_issued_ahead_of_a_slow_clock_ends_a_window_that_the_clock_keeps_open() {
    let net = TestNet::new();
    let w = net.work();
    // The release ends in 5 minutes by this machine's clock.
    let (publisher, id) = release(&net, &["--not-after", "+5m"]);
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    assert_eq!(chunk_answer(&a, &id), Ok(()), "the open release is served");

    // The publisher signs a catalog listing it, issued 20 minutes from now: to this node's clock
    // (20 minutes slow, as far as the publisher's signature shows) the window has ended.
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "film.manifest"])
        .ok();
    sign(&net, "catalog.1", &["--issued-at", "+20m"]);
    a.client_json(&["catalog", "publish", "catalog.1"]);

    assert_eq!(
        chunk_answer(&a, &id),
        Err(RefusalReason::Expired),
        "a release that ended by the signed time is still served by a slow clock"
    );
    let item = a.content(&id).unwrap();
    assert_eq!(item["refused"]["reason"], "Expired", "{item}");
    let health = &a.client_json(&["status"])["health"];
    let behind = health["clock_behind_seconds"].as_i64().unwrap_or(0);
    assert!(
        behind > 5 * 60,
        "status does not say the clock is behind: {health}"
    );
    assert!(
        a.client(&["status"])
            .stdout
            .contains("clock            BEHIND"),
        "the status text does not say the clock is behind"
    );
    assert!(a.metric("licet_clock_behind_floor_seconds") > 300.0);
    a.wait_for_log("the clock is behind", Duration::from_secs(10));
    // `add` again is refused too (exit 1, the policy's reason).
    let again = a.client(&["add", "film.manifest", "--content", "release"]);
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    assert!(
        again.stderr.contains("licence window has ended"),
        "{}",
        again.stderr
    );

    // The floor is kept across a restart (it is the saved catalog's issue time).
    let mut a = a;
    a.terminate();
    a.restart();
    assert_eq!(chunk_answer(&a, &id), Err(RefusalReason::Expired));
}

/// Regression: a catalog head put to this node's DHT store was judged by the plain clock, so a
/// slow clock kept storing (and serving) heads whose catalogs had expired by the time floor.
#[test]
fn a_slow_clock_does_not_store_a_catalog_head_in_the_dht_that_expired_by_the_time_floor() {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, _) = release(&net, &[]);
    // The publisher's catalog, issued two days ahead of this node's clock: its time floor.
    w.catalog_new("publisher.pem", "draft.json");
    w.catalog_sign(
        "draft.json",
        "publisher.pem",
        "ahead.catalog",
        &["--issued-at", "+2d", "--expires", "+3d"],
    )
    .ok();
    // Heads of two other publishers: one expires in a day (before the floor), one in four.
    let head_of = |name: &str, expires: &str| {
        let key = w.keygen(&format!("{name}.pem"));
        w.catalog_new(&format!("{name}.pem"), &format!("{name}.json"));
        w.catalog_sign(
            &format!("{name}.json"),
            &format!("{name}.pem"),
            &format!("{name}.catalog"),
            &["--expires", expires],
        )
        .ok();
        let head = std::fs::read(w.join(&format!("{name}.catalog.head"))).unwrap();
        (catalog_head_key(&key.trim().parse().unwrap()).0, head)
    };
    let (ended_key, ended) = head_of("ended", "+1d");
    let (live_key, live) = head_of("live", "+4d");

    let a = net.start("a", &[]).trusting(&publisher);
    a.client_json(&["catalog", "publish", "ahead.catalog"]);
    let hostile = HostilePeer::requester();
    hostile.dial(a.addr()).unwrap();
    let held = |key| {
        hostile
            .records_held_by(a.peer_id(), key)
            .expect("the node answers a DHT lookup")
    };
    // Each put returns once the node has acknowledged it, which it does after judging it.
    hostile
        .put_record_to(a.peer_id(), live_key, live.clone())
        .unwrap();
    wait_for(
        "the node to store a head live by its time floor",
        RECOVERY_TIMEOUT,
        Duration::from_millis(100),
        || (held(live_key) == vec![live.clone()]).then_some(()),
    );
    hostile
        .put_record_to(a.peer_id(), ended_key, ended)
        .unwrap();
    assert_eq!(
        held(ended_key),
        Vec::<Vec<u8>>::new(),
        "a head whose catalog expired by the time floor is stored"
    );
}

// ----- item 1: a full disk under the node's database -----

/// The shell setup that starts a daemon with its clock `offset` off (libfaketime, e.g. `-20m`),
/// its monotonic clock left alone; `None` where the library is not installed.
fn faked_clock(offset: &str) -> Option<String> {
    let listed = std::process::Command::new("dpkg")
        .args(["-L", "libfaketime"])
        .output()
        .ok()?;
    let library = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find(|l| l.ends_with("/libfaketimeMT.so.1"))?
        .to_owned();
    Some(format!(
        "export LD_PRELOAD={library} FAKETIME={offset} FAKETIME_DONT_FAKE_MONOTONIC=1"
    ))
}

#[test]
fn a_clock_far_behind_its_peers_is_reported_and_the_peers_are_not_misled_by_it() {
    let Some(slow) = faked_clock("-20m") else {
        required::cannot_run_here("libfaketime is not installed (Debian package faketime)");
        return;
    };
    let net = TestNet::new();
    let b = net.start("b", &[]);
    let c = net.start_joined("c", &b, &[]);
    let d = net.start_joined("d", &b, &[]);
    let mut args = vec!["--bootstrap", b.addr()];
    for peer in [&c, &d] {
        args.extend(["--bootstrap", peer.addr()]);
    }
    let a = net.start_in_shell("a", Some(&slow), &args);
    for peer in [&b, &c, &d] {
        a.wait_for_peer(peer);
    }

    // Within a few rounds of asking (every 10 s), a has asked its three peers.
    let offset = wait_for(
        "a to report its clock behind its peers",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || health(&a)["clock_behind_peers_seconds"].as_i64(),
    );
    assert!(
        (1190..=1210).contains(&offset),
        "a is 1200 s behind, it says {offset}"
    );
    let status = a.client(&["status"]).stdout;
    assert!(status.contains("BEHIND peers by"), "{status}");
    assert!(a.metric("licet_clock_peers_sampled") >= 3.0);
    a.wait_for_log("behind what most peers asked say", Duration::from_secs(10));

    // b asked a too, but a is one of three: b's clock is not reported wrong.
    wait_for(
        "b to have asked its three peers",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || (b.metric("licet_clock_peers_sampled") >= 3.0).then_some(()),
    );
    assert_eq!(health(&b)["clock_behind_peers_seconds"], Value::Null);
    assert!(
        b.metric("licet_clock_peer_offset_seconds").abs() <= 2.0,
        "b's peers agree with b"
    );
}

fn health(node: &TestNode) -> Value {
    node.client_json(&["status"])["health"].clone()
}

#[test]
fn a_full_disk_under_the_database_keeps_takedowns_in_force_and_the_node_recovers_once_space_is_freed()
 {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, film) = release(&net, &[]);
    // A release to add while the disk is full, and one to download (64 chunks, sent slowly).
    write_pseudo_random_file(&w.join("release2/show.bin"), 1 << 20, 6);
    create(&net, "release2", "Show", "show.manifest", &[]);
    write_pseudo_random_file(&w.join("release3/episode.bin"), 1 << 20, 7);
    let episode = create(
        &net,
        "release3",
        "Episode",
        "episode.manifest",
        &["--chunk-size", "16KiB"],
    );
    let episode_id = text(&episode["manifest_id"]).to_owned();
    let other = w.keygen("other.pem");
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "film.manifest"])
        .ok();
    sign(&net, "catalog.1", &[]);
    w.manifest(&["catalog", "revoke", "draft.json", "film.manifest"])
        .ok();
    sign(&net, "catalog.2", &[]);
    sign(&net, "catalog.3", &[]);

    // A's data directory (its database) is a small disk of its own; content is elsewhere.
    let disk = match Tmpfs::mount(&w.join("nodes/a"), "16m") {
        Ok(disk) => disk,
        Err(why) => {
            required::cannot_run_here(&format!(
                "no small filesystem can be mounted to fill: {why}"
            ));
            return;
        }
    };
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    a.client_json(&["catalog", "publish", "catalog.1"]);
    assert_eq!(chunk_answer(&a, &film), Ok(()));
    // A download from a provider that sends a chunk every half second per stream, under way.
    let provider = HostilePeer::provider(
        HostileContent::load(&w.join("episode.manifest"), &w.join("release3")),
        Answer::Throttled(Duration::from_millis(500)),
    );
    let link = format!("{}?peer={}", text(&episode["link"]), provider.addr());
    let download = a.spawn_client(&["get", &link, "-o", "downloads/episode"]);
    wait_for(
        "a to commit its first chunk",
        RECOVERY_TIMEOUT,
        Duration::from_millis(50),
        || {
            a.content(&episode_id)
                .filter(|c| count(&c["have_chunks"]) > 0)
        },
    );

    disk.fill();
    // Chunk commit: the download stops with the reason.
    let got = download.wait(Duration::from_secs(120));
    assert_ne!(
        got.code,
        Some(0),
        "a download with a full database completed?"
    );
    assert!(
        got.stderr.contains("No space left on device"),
        "{}",
        got.stderr
    );
    // Catalog accept: the takedown is in force at once though it cannot be saved, and the
    // operator is told (exit 2).
    let published = a.client(&["catalog", "publish", "catalog.2"]);
    assert_eq!(published.code, Some(2), "{}", published.stderr);
    assert!(
        published
            .stderr
            .contains("in force on this node but not saved")
            && published.stderr.contains("No space left on device"),
        "{}",
        published.stderr
    );
    assert_eq!(
        chunk_answer(&a, &film),
        Err(RefusalReason::Revoked),
        "a takedown that could not be saved is not applied"
    );
    let h = health(&a);
    assert!(
        text(&h["database_problem"]).contains("No space left on device"),
        "{h}"
    );
    assert_eq!(h["unsaved_catalogs"][0], publisher.as_str(), "{h}");
    assert!(
        a.client(&["status"])
            .stdout
            .contains("database         CLOSED"),
        "the status text does not say the database is closed"
    );
    assert_eq!(a.metric("licet_store_closed"), 1.0);
    assert_eq!(a.metric("licet_catalogs_unsaved"), 1.0);
    // Trust change and add fail with an error that says why (exit 2).
    for args in [
        vec!["trust", "add", other.as_str()],
        vec!["add", "show.manifest", "--content", "release2"],
    ] {
        let out = a.client(&args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("No space left on device"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("Previous I/O error"), "{}", out.stderr);
    }

    // Space freed: the node reopens its database by itself and saves the takedown.
    disk.free();
    wait_for(
        "a to report its database healthy",
        RECOVERY_TIMEOUT,
        Duration::from_millis(200),
        || {
            let h = health(&a);
            (h["database_problem"].is_null() && h["unsaved_catalogs"] == Value::Array(vec![]))
                .then_some(())
        },
    );
    assert_eq!(a.metric("licet_store_closed"), 0.0);
    assert!(a.metric("licet_store_reopens") >= 1.0);
    a.client_json(&["catalog", "publish", "catalog.3"]);
    a.client_json(&["trust", "add", &other]);
    a.client_json(&["trust", "rm", &other]);
    a.add("show.manifest", "release2");
    let got = a.client_json(&["get", &link, "-o", "downloads/episode"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_eq!(chunk_answer(&a, &film), Err(RefusalReason::Revoked));
    // The takedown was saved: it holds across a restart.
    let mut a = a;
    a.terminate();
    a.restart();
    assert_eq!(chunk_answer(&a, &film), Err(RefusalReason::Revoked));
    drop(a);
    drop(disk);
}

#[test]
fn a_trust_rm_on_a_full_disk_is_in_force_at_once_and_saved_once_space_is_freed() {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, film) = release(&net, &[]);
    let disk = match Tmpfs::mount(&w.join("nodes/a"), "16m") {
        Ok(disk) => disk,
        Err(why) => {
            required::cannot_run_here(&format!(
                "no small filesystem can be mounted to fill: {why}"
            ));
            return;
        }
    };
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    assert_eq!(chunk_answer(&a, &film), Ok(()));

    disk.fill();
    // The publisher is no longer trusted at once though it cannot be saved, and the operator
    // is told (exit 2).
    let removed = a.client(&["trust", "rm", &publisher]);
    assert_eq!(removed.code, Some(2), "{}", removed.stderr);
    assert!(
        removed
            .stderr
            .contains("no longer trusted on this node, but this is not saved")
            && removed.stderr.contains("No space left on device"),
        "{}",
        removed.stderr
    );
    assert_eq!(
        chunk_answer(&a, &film),
        Err(RefusalReason::UntrustedPublisher),
        "a trust removal that could not be saved is not applied"
    );
    // The operator sees that the removal waits to be saved.
    let h = health(&a);
    assert_eq!(h["unsaved_trust_removals"][0], publisher.as_str(), "{h}");
    let status = a.client(&["status"]).stdout;
    assert!(status.contains("unsaved untrust"), "{status}");
    assert_eq!(a.metric("licet_trust_removals_unsaved"), 1.0);

    // Space freed: the node reopens its database by itself and saves the removal.
    disk.free();
    a.wait_for_log(
        "trust removal saved after the database reopened",
        RECOVERY_TIMEOUT,
    );
    assert_eq!(
        health(&a)["unsaved_trust_removals"],
        Value::Array(vec![]),
        "a saved removal is still shown as unsaved"
    );
    assert_eq!(a.metric("licet_trust_removals_unsaved"), 0.0);
    assert_eq!(
        chunk_answer(&a, &film),
        Err(RefusalReason::UntrustedPublisher)
    );
    // Saved: it holds across a restart.
    let mut a = a;
    a.terminate();
    a.restart();
    assert_eq!(
        chunk_answer(&a, &film),
        Err(RefusalReason::UntrustedPublisher),
        "the trust removal was not saved"
    );
    drop(a);
    drop(disk);
}
