//! Bandwidth limits as a user sets them (config.toml, `LICET_*_LIMIT`, `run` flags, `licet-node
//! limits set|reset`) hold on real daemons on 127.0.0.1: each test measures the bytes a transfer
//! moved over the time it took, with generous bounds (never an upper bound on time), and checks
//! what `status`, `limits`, `peers` and `/metrics` show.
//!
//! Every wait is bounded; every daemon is killed when its `TestNode` is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use licet_tests::{
    TestNet, TestNode, assert_same_file, bin, count, create, run, text, write_pseudo_random_file,
};

const KIB: u64 = 1024;
/// How long a throttled download may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(180);
/// The limit most tests set: 256 KiB/s.
const LIMIT: u64 = 256 * KIB;
/// The share of a limit a measured rate may exceed it by (the first burst, timing).
const SLACK: f64 = 1.3;

/// A release of one file of `len` bytes in `chunk`-sized chunks, in `release/`; returns the
/// publisher's key, the manifest id and the link.
fn release(net: &TestNet, len: u64, chunk: &str) -> (String, String, String) {
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), len, 7);
    let created = create(
        net,
        "release",
        "Film",
        "film.manifest",
        &["--chunk-size", chunk],
    );
    (
        publisher,
        text(&created["manifest_id"]).to_owned(),
        text(&created["link"]).to_owned(),
    )
}

/// Writes `text` as `name`'s config.toml before it starts (its data directory is
/// `nodes/<name>`).
fn configure(net: &TestNet, name: &str, text: &str) {
    let dir = net.work().join(&format!("nodes/{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// `link` with `node`'s address as a peer hint.
fn hinted(link: &str, node: &TestNode) -> String {
    format!("{link}?peer={}", node.addr())
}

/// `downloader` fetches `link` (hinted at `seeder`) into `out`; returns how long it took to
/// complete, and checks the bytes.
#[track_caller]
fn fetch_timed(
    net: &TestNet,
    downloader: &TestNode,
    seeder: &TestNode,
    link: &str,
    id: &str,
    out: &str,
) -> Duration {
    let out = net.work().join(out);
    let started = Instant::now();
    downloader.client_json(&["get", &hinted(link, seeder), "-o", out.to_str().unwrap()]);
    downloader.wait_for_content(id, "complete", TIMEOUT, |c| c["state"] == "complete");
    let took = started.elapsed();
    assert_same_file(&net.work().join("release/film.bin"), &out.join("film.bin"));
    took
}

/// Asserts that `bytes` in `took` is at most `limit` per second (with [`SLACK`]).
#[track_caller]
fn assert_at_most(what: &str, bytes: u64, took: Duration, limit: u64) {
    let rate = bytes as f64 / took.as_secs_f64();
    assert!(
        rate <= limit as f64 * SLACK,
        "{what}: {bytes} bytes in {took:?} is {rate:.0} B/s, over the limit of {limit} B/s"
    );
}

#[test]
fn an_upload_limit_in_config_toml_holds_and_survives_a_restart() {
    let net = TestNet::new();
    let len = 2048 * KIB;
    let (publisher, id, link) = release(&net, len, "64KiB");
    configure(&net, "a", "[limits]\nupload = \"256KiB/s\"\n");
    let mut a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    let limits = a.client_json(&["limits"]);
    assert_eq!(count(&limits["in_force"]["upload"]), LIMIT, "{limits}");
    let gauge = "licet_rate_limit_bytes_per_second{direction=\"upload\",scope=\"global\"}";
    assert_eq!(a.metric(gauge), LIMIT as f64, "{}", a.metrics());

    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let took = fetch_timed(&net, &b, &a, &link, &id, "out-b");
    assert_at_most("b from a", len, took, LIMIT);
    assert!(a.metric("licet_rate_limit_wait_seconds_total{direction=\"upload\"}") > 0.0);

    a.terminate();
    a.restart();
    let status = a.client_json(&["status"]);
    assert_eq!(
        count(&status["limits"]["in_force"]["upload"]),
        LIMIT,
        "{status}"
    );
    let c = net.start_joined("c", &a, &[]).trusting(&publisher);
    let took = fetch_timed(&net, &c, &a, &link, &id, "out-c");
    assert_at_most("c from a after its restart", len, took, LIMIT);
}

#[test]
fn an_upload_limit_from_the_environment_holds() {
    let net = TestNet::new();
    let len = 2048 * KIB;
    let (publisher, id, link) = release(&net, len, "64KiB");
    let a = net
        .start_in_shell("a", Some("export LICET_UPLOAD_LIMIT=256KiB/s"), &[])
        .trusting(&publisher);
    a.add("film.manifest", "release");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let took = fetch_timed(&net, &b, &a, &link, &id, "out");
    assert_at_most("b from a", len, took, LIMIT);
    assert_eq!(
        count(&a.client_json(&["limits"])["in_force"]["upload"]),
        LIMIT
    );
}

#[test]
fn a_download_limit_given_as_a_flag_holds_at_the_downloader() {
    let net = TestNet::new();
    let len = 2048 * KIB;
    let (publisher, id, link) = release(&net, len, "64KiB");
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    let b = net
        .start_joined("b", &a, &["--download-limit", "256KiB/s"])
        .trusting(&publisher);
    let took = fetch_timed(&net, &b, &a, &link, &id, "out");
    assert_at_most("b from a", len, took, LIMIT);
    assert!(b.metric("licet_rate_limit_wait_seconds_total{direction=\"download\"}") > 0.0);
    assert_eq!(
        a.metric("licet_rate_limit_wait_seconds_total{direction=\"upload\"}"),
        0.0
    );
}

#[test]
fn a_limit_set_while_running_bites_mid_transfer_shows_in_status_and_reset_goes_back() {
    let net = TestNet::new();
    let len = 3072 * KIB;
    let (publisher, id, link) = release(&net, len, "64KiB");
    configure(&net, "a", "[limits]\nupload = \"1MiB/s\"\n");
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let out = net.work().join("out");
    // `get` watches the download until it completes: in the background.
    let get = b.spawn_client(&["get", &hinted(&link, &a), "-o", out.to_str().unwrap()]);
    b.wait_for_content(&id, "started", TIMEOUT, |c| {
        count(&c["have_bytes"]) >= 256 * KIB
    });

    let set = a.client(&["limits", "set", "--upload", "256KiB/s"]);
    set.ok();
    let changed_at = Instant::now();
    assert!(
        set.stdout
            .contains("256 KiB/s (set while running; configured 1 MiB/s)"),
        "{}",
        set.stdout
    );
    let had = count(&b.content(&id).unwrap()["have_bytes"]);
    let status = a.client_json(&["status"]);
    assert_eq!(
        count(&status["limits"]["in_force"]["upload"]),
        LIMIT,
        "{status}"
    );
    assert_eq!(
        count(&status["limits"]["changed"]["upload"]),
        LIMIT,
        "{status}"
    );
    let shown = a.client(&["status"]);
    assert!(
        shown.stdout.contains("limits           upload 256 KiB/s"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("changed while running"),
        "{}",
        shown.stdout
    );

    b.wait_for_content(&id, "complete", TIMEOUT, |c| c["state"] == "complete");
    let took = changed_at.elapsed();
    get.wait(TIMEOUT).ok();
    assert_same_file(&net.work().join("release/film.bin"), &out.join("film.bin"));
    // What was in flight when the limit changed (a pipeline of chunks) went out at the old one.
    let in_flight = 16 * 64 * KIB;
    assert!(
        had + in_flight < len,
        "the change came too late to measure: {had} of {len} bytes were already there"
    );
    assert_at_most(
        "after the change",
        (len - had).saturating_sub(in_flight),
        took,
        LIMIT,
    );

    let reset = a.client_json(&["limits", "reset"]);
    assert_eq!(count(&reset["in_force"]["upload"]), 1024 * KIB, "{reset}");
    assert!(reset["changed"]["upload"].is_null(), "{reset}");
}

#[test]
fn a_per_peer_upload_limit_holds_for_each_downloader() {
    let net = TestNet::new();
    let len = 2048 * KIB;
    let (publisher, id, link) = release(&net, len, "64KiB");
    let a = net
        .start("a", &["--peer-upload-limit", "256KiB/s"])
        .trusting(&publisher);
    a.add("film.manifest", "release");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let c = net.start_joined("c", &a, &[]).trusting(&publisher);
    let started = Instant::now();
    for (node, out) in [(&b, "out-b"), (&c, "out-c")] {
        let out = net.work().join(out);
        node.client_json(&["get", &hinted(&link, &a), "-o", out.to_str().unwrap()]);
    }
    for node in [&b, &c] {
        node.wait_for_content(&id, "complete", TIMEOUT, |c| c["state"] == "complete");
    }
    let took = started.elapsed();
    // Each may also have fetched from the other; what A sent each is within the per-peer limit.
    let peers = a.client_json(&["peers"]);
    let mut sent_total = 0;
    for node in [&b, &c] {
        let entry = peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == node.peer_id())
            .unwrap_or_else(|| panic!("{} not in a's peers: {peers}", node.name()));
        let sent = count(&entry["bytes_out"]);
        assert_at_most(&format!("a to {}", node.name()), sent, took, LIMIT);
        sent_total += sent;
    }
    assert!(
        sent_total >= len,
        "a sent {sent_total} bytes in all: {peers}"
    );
}

#[test]
fn a_seeder_throttled_past_its_requesters_deadline_answers_busy_and_is_not_banned() {
    let net = TestNet::new();
    // 16 chunks of 256 KiB at 128 KiB/s is 32 s: a queue of them would outlast the 30 s a
    // requester waits for an answer.
    let len = 4096 * KIB;
    let (publisher, id, link) = release(&net, len, "256KiB");
    let a = net
        .start("a", &["--upload-limit", "128KiB/s"])
        .trusting(&publisher);
    a.add("film.manifest", "release");
    let b = net.start_in_shell(
        "b",
        Some("export RUST_LOG=info,licet_node::fetch=debug,licet_node::transfer=debug"),
        &["--bootstrap", a.addr()],
    );
    b.wait_for_peer(&a);
    b.trust(&publisher);
    let took = fetch_timed(&net, &b, &a, &link, &id, "out");
    assert_at_most("b from a", len, took, 128 * KIB);
    let entry = b
        .peer_entry(a.peer_id())
        .unwrap_or_else(|| panic!("a is not among b's peers"));
    assert_eq!(entry["banned"], false, "{entry}");
    assert_eq!(count(&entry["offences"]), 0, "{entry}");
    let log = std::fs::read_to_string(net.work().join("logs/b.log")).unwrap();
    assert!(
        !log.contains("did not answer in time"),
        "b timed out on a:\n{}",
        b.log_tail(60)
    );
    assert!(
        a.metric("licet_rate_limit_busy_total") > 0.0,
        "a never answered busy"
    );
}

#[test]
fn bad_limits_are_named_and_the_daemon_exits_2() {
    let net = TestNet::new();
    let node = bin("licet-node");
    let dir = net.work().path();
    let start = |name: &str, args: &[&str]| {
        let data = net.work().join(&format!("nodes/{name}"));
        let mut all = vec![
            "--data-dir",
            data.to_str().unwrap(),
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| (*s).to_owned()).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run(&node, dir, &refs)
    };
    for (name, config, expected) in [
        (
            "rate",
            "[limits]\nupload = \"8XB/s\"\n",
            "limits.upload: \"8XB/s\": unknown unit",
        ),
        (
            "days",
            "[[limits.schedule]]\ndays = [\"mon\", \"funday\"]\nfrom = \"08:00\"\nto = \"18:00\"\nupload = \"1MB/s\"\n",
            "limits.schedule[0]: \"funday\" is not a day",
        ),
        (
            "hours",
            "[[limits.schedule]]\ndays = \"weekdays\"\nfrom = \"8am\"\nto = \"18:00\"\nupload = \"1MB/s\"\n",
            "limits.schedule[0]: \"8am\" is not a time of day",
        ),
    ] {
        configure(&net, name, config);
        let out = start(name, &[]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(expected) && out.stderr.contains("config.toml"),
            "{name}: {}",
            out.stderr
        );
    }
    let out = start("flag", &["--upload-limit", "fast"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("--upload-limit") && out.stderr.contains("\"fast\" is not a rate"),
        "{}",
        out.stderr
    );
}
