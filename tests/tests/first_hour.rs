//! What a new user meets in the first hour, end to end with real daemons on 127.0.0.1: joining
//! through a bootstrap node given by `HOST:PORT` or by a multiaddr without a peer id. Each test
//! asserts what the user sees (peers, a fetch by link, the log line, messages and exit codes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_tests::{TestNet, TestNode, assert_same_file, create, pseudo_random_bytes, text};

/// How long a log line or a download may take before the test gives up on it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The TCP port of `node`'s loopback listen address.
fn tcp_port(node: &TestNode) -> String {
    let addr = node.addr();
    let after = addr.split("/tcp/").nth(1).expect("a /tcp/ address");
    after.split('/').next().unwrap().to_owned()
}

#[test]
fn a_node_joins_through_host_and_port_or_a_multiaddr_without_a_peer_id() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(300_000, 3));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    let port = tcp_port(&a);

    let b = net.start("b", &["--bootstrap", &format!("127.0.0.1:{port}")]);
    b.wait_for_peer(&a);
    b.wait_for_log(&format!("bootstrap peer {} found", a.peer_id()), TIMEOUT);
    let c = net.start("c", &["--bootstrap", &format!("/ip4/127.0.0.1/tcp/{port}")]);
    c.wait_for_peer(&a);

    // The link names no peer: B finds A as a provider through the DHT it joined through A.
    b.trust(&publisher);
    let link = text(&created["link"]);
    assert!(!link.contains("peer="), "{link}");
    b.client(&["get", link, "-o", "downloads/film"]).ok();
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
}

/// A bootstrap node that is not up yet when a node starts (a seed restarting, a network still
/// coming up) is joined as soon as it answers: a failed dial is tried again after 1 s, 2 s,
/// 4 s, …, not a 5-minute round later.
#[test]
fn a_node_joins_a_bootstrap_node_that_comes_up_after_it() {
    let net = TestNet::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = net.start("b", &["--bootstrap", &format!("127.0.0.1:{port}")]);
    b.wait_for_log(
        "cannot reach bootstrap address (tried again in 1 s)",
        TIMEOUT,
    );
    let a = net.start("a", &["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")]);
    b.wait_for_peer(&a);
    b.wait_for_log(&format!("bootstrap peer {} found", a.peer_id()), TIMEOUT);
}

#[test]
fn a_bootstrap_address_that_is_neither_form_is_refused_naming_both() {
    let net = TestNet::new();
    let out = licet_tests::run(
        &licet_tests::bin("licet-node"),
        net.work().path(),
        &["run", "--data-dir", "node", "--bootstrap", "192.0.2.7"],
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("192.0.2.7") && out.stderr.contains("HOST:PORT"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_second_node_on_a_taken_port_is_told_the_os_reason() {
    let net = TestNet::new();
    // TCP listeners share a port (libp2p sets SO_REUSEPORT); QUIC's UDP socket does not.
    let a = net.start("a", &["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let status = a.client_json(&["status"]);
    let quic = status["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|addr| text(addr))
        .find(|addr| addr.contains("/quic-v1"))
        .expect("a QUIC listen address");
    let taken = quic.split("/p2p/").next().unwrap().to_owned();
    let out = licet_tests::run(
        &licet_tests::bin("licet-node"),
        net.work().path(),
        &[
            "run",
            "--data-dir",
            "second",
            "--listen",
            &taken,
            "--no-mdns",
            "--no-upnp",
        ],
    );
    out.expect_code(2);
    let last = out.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("cannot listen on {taken}: "))
            && last.to_lowercase().contains("address already in use"),
        "{}",
        out.stderr
    );
}

#[test]
fn counts_of_one_are_singular_and_table_columns_say_what_they_mean() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("one/tiny.txt", b"one chunk\n");
    create(&net, "one", "Tiny", "tiny.manifest", &[]);
    let a = net.start("a", &[]).trusting(&publisher);
    let added = a.client(&["add", "tiny.manifest", "--content", "one"]);
    added.ok();
    assert!(
        added.stdout.contains("in 1 chunk,"),
        "`add` of one chunk: {}",
        added.stdout
    );
    // `trust ls` says what its columns mean; `catalog ls` shows a sequence under SEQUENCE.
    let trusted = a.client(&["trust", "ls"]);
    let header = trusted.ok().stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("REQUIRES CATALOG") && header.contains("MIRROR"),
        "{header}"
    );
    let catalogs = a.client(&["catalog", "ls"]);
    let header = catalogs.ok().stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("SEQUENCE") && !header.contains("CATALOG"),
        "{header}"
    );
}

#[test]
fn trusting_a_publisher_again_with_mirror_keeps_its_name() {
    let net = TestNet::new();
    let publisher = net.work().keygen("publisher.pem");
    let a = net.start("a", &[]);
    a.client(&["trust", "add", &publisher, "--name", "Example Films"])
        .ok();
    a.client(&["trust", "add", &publisher, "--mirror"]).ok();
    let list = a.client_json(&["trust", "ls"]);
    let entry = &list["publishers"][0];
    assert_eq!(entry["name"], "Example Films", "{list}");
    assert_eq!(entry["mirror"], true, "{list}");
    let shown = a.client(&["trust", "ls"]);
    assert!(shown.stdout.contains("Example Films"), "{}", shown.stdout);
}

#[test]
fn peers_see_the_node_as_licet_node_and_its_version() {
    let net = TestNet::new();
    let a = net.start("a", &[]);
    let peer = licet_tests::hostile::HostilePeer::requester();
    let node_id: libp2p::PeerId = peer.dial(a.addr()).expect("dial the node");
    let agent = licet_tests::wait_for(
        "the node's Identify answer",
        TIMEOUT,
        Duration::from_millis(50),
        || peer.stats.agents.lock().unwrap().get(&node_id).cloned(),
    );
    assert_eq!(agent, format!("licet-node/{}", env!("CARGO_PKG_VERSION")));
}

/// A release whose only provider is a test peer that serves the manifest and never a chunk,
/// so a download of it stays in progress; returns (publisher, link with the peer as a hint,
/// the peer).
fn stalled_release(
    net: &TestNet,
    extra: &[&str],
) -> (String, String, licet_tests::hostile::HostilePeer) {
    use licet_tests::hostile::{Answer, HostileContent, HostilePeer};
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(200_000, 5));
    let created = create(net, "release", "Film", "film.manifest", extra);
    let content = HostileContent::load(&w.join("film.manifest"), &w.join("release"));
    let peer = HostilePeer::provider(content, Answer::Stall);
    let link = format!("{}?peer={}", text(&created["link"]), peer.addr());
    (publisher, link, peer)
}

#[test]
fn get_detach_returns_at_once_and_says_how_to_follow_pause_or_cancel() {
    let net = TestNet::new();
    let (publisher, link, _peer) = stalled_release(&net, &[]);
    let b = net.start("b", &[]).trusting(&publisher);
    let out = b.client(&["get", &link, "-o", "downloads/film", "--detach"]);
    out.ok();
    for part in [
        "continues in the daemon",
        "licet-node get",
        "licet-node pause",
        "licet-node cancel",
    ] {
        assert!(out.stdout.contains(part), "{part}: {}", out.stdout);
    }
    let listed = b.client_json(&["ls"]);
    assert_eq!(listed["content"][0]["state"], "downloading", "{listed}");
    // Following and not following at once is a usage error naming both.
    let both = b.client(&["get", &link, "-o", "downloads/film", "--detach", "--wait"]);
    both.expect_code(2);
    assert!(
        both.stderr.contains("--detach") && both.stderr.contains("--wait"),
        "{}",
        both.stderr
    );
}

#[test]
fn ctrl_c_of_get_leaves_the_download_to_the_daemon_and_says_so() {
    let net = TestNet::new();
    let (publisher, link, _peer) = stalled_release(&net, &[]);
    let b = net.start("b", &[]).trusting(&publisher);
    // SIGINT, as Ctrl-C sends, after 3 s of following the stalled download.
    let out = licet_tests::run(
        std::path::Path::new("timeout"),
        net.work().path(),
        &[
            "-s",
            "INT",
            "--preserve-status",
            "3",
            licet_tests::bin("licet-node").to_str().unwrap(),
            "--data-dir",
            b.data_dir().to_str().unwrap(),
            "get",
            &link,
            "-o",
            "downloads/film",
        ],
    );
    out.ok();
    for part in [
        "continues in the daemon",
        "licet-node get",
        "licet-node pause",
        "licet-node resume",
        "licet-node cancel",
        "--delete",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    let listed = b.client_json(&["ls"]);
    assert_eq!(listed["content"][0]["state"], "downloading", "{listed}");
}

#[test]
fn a_lone_node_logs_no_bootstrap_warning_and_says_when_it_stopped() {
    let net = TestNet::new();
    // A node alone for five seconds once it answers (kad's own bootstrap fires half a second
    // after it listens), then SIGTERM; its default log level (no RUST_LOG) is what a user sees.
    let mut command = std::process::Command::new(licet_tests::bin("licet-node"));
    command
        .args([
            "run",
            "--data-dir",
            "lone",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(["--no-mdns", "--no-upnp"])
        .current_dir(net.work().path())
        .env_remove("RUST_LOG")
        .env_remove("LICET_LISTEN")
        .env_remove("LICET_BOOTSTRAP");
    let running = licet_tests::Running::start(command, "a lone node".to_owned());
    let api_addr = net.work().join("lone/api-addr");
    licet_tests::wait_for(
        "the lone node's API to answer",
        TIMEOUT,
        Duration::from_millis(50),
        || api_addr.exists().then_some(()),
    );
    std::thread::sleep(Duration::from_secs(5));
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &running.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success(), "kill -TERM failed");
    let out = running.wait(TIMEOUT);
    out.ok();
    assert!(out.stderr.contains("listening"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("Failed to trigger bootstrap") && !out.stderr.contains("WARN"),
        "{}",
        out.stderr
    );
    let last = out.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.contains("licet-node stopped"), "{}", out.stderr);
}

#[test]
fn a_refusal_names_the_manifest_and_the_reason_once() {
    let net = TestNet::new();
    let (publisher, link, _peer) = stalled_release(&net, &["--regions", "FR"]);
    let b = net.start("b", &["--region", "US"]).trusting(&publisher);
    let out = b.client(&["get", &link, "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("(\"Film\") is refused: not licensed in this region: "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("refused: refused"), "{}", out.stderr);
    assert!(
        !w_exists(&net, "downloads/film"),
        "a refused get left its folder"
    );
}

/// Whether `path` exists in the net's work directory.
fn w_exists(net: &TestNet, path: &str) -> bool {
    net.work().join(path).exists()
}

#[test]
fn a_region_code_that_is_not_assigned_is_refused_where_a_user_types_it() {
    let net = TestNet::new();
    let w = net.work();
    w.keygen("publisher.pem");
    w.write("release/a.txt", b"a\n");
    let out = w.manifest(&[
        "create",
        "release",
        "--key",
        "publisher.pem",
        "--title",
        "A",
        "--regions",
        "FR,XX",
        "-o",
        "a.manifest",
    ]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("\"XX\" is not an assigned ISO 3166-1 alpha-2 region code"),
        "{}",
        out.stderr
    );
    assert!(!w.join("a.manifest").exists());
    let run = licet_tests::run(
        &licet_tests::bin("licet-node"),
        w.path(),
        &["run", "--data-dir", "node", "--region", "XX"],
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("\"XX\" is not an assigned"),
        "{}",
        run.stderr
    );
}

/// The manifest id of the only item `node` holds.
fn only_item_id(node: &TestNode) -> String {
    let listed = node.client_json(&["ls"]);
    text(&listed["content"][0]["manifest_id"]).to_owned()
}

/// Starts a node that seeds `release` (the stalled release's content) and is connected to
/// `downloader`, so a download in progress there finds it and completes.
fn honest_seed_for(net: &TestNet, downloader: &TestNode, publisher: &str) -> TestNode {
    let seed = net
        .start_joined("seed", downloader, &[])
        .trusting(publisher);
    seed.add("film.manifest", "release");
    seed
}

/// Waits until `node` holds `id` complete.
fn wait_complete(node: &TestNode, id: &str) {
    node.wait_for_content(id, "complete", TIMEOUT, |item| item["state"] == "complete");
}

#[test]
fn a_file_downloads_as_name_part_and_is_renamed_when_complete() {
    let net = TestNet::new();
    let (publisher, link, _peer) = stalled_release(&net, &[]);
    let b = net.start("b", &[]).trusting(&publisher);
    b.client(&["get", &link, "-o", "downloads/film", "--detach"])
        .ok();
    let id = only_item_id(&b);
    assert!(w_exists(&net, "downloads/film/film.bin.part"));
    assert!(
        !w_exists(&net, "downloads/film/film.bin"),
        "an incomplete file has its final name"
    );
    let _seed = honest_seed_for(&net, &b, &publisher);
    // `get --wait` of the download in progress follows it until it is complete.
    let followed = b.client(&["get", &link, "-o", "downloads/film", "--wait", "--json"]);
    followed.ok();
    assert_eq!(followed.json()["state"], "complete", "{}", followed.stdout);
    assert_eq!(b.content(&id).expect("held")["state"], "complete");
    let w = net.work();
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert!(
        !w_exists(&net, "downloads/film/film.bin.part"),
        "the partial file is left after completion"
    );
}

#[test]
fn a_download_resumed_after_a_restart_ends_at_the_final_names() {
    let net = TestNet::new();
    let (publisher, link, _peer) = stalled_release(&net, &[]);
    let mut b = net.start("b", &[]).trusting(&publisher);
    b.client(&["get", &link, "-o", "downloads/film", "--detach"])
        .ok();
    let id = only_item_id(&b);
    b.terminate();
    b.restart();
    b.wait_for_content(&id, "downloading", TIMEOUT, |item| {
        item["state"] == "downloading"
    });
    assert!(w_exists(&net, "downloads/film/film.bin.part"));
    assert!(!w_exists(&net, "downloads/film/film.bin"));
    let _seed = honest_seed_for(&net, &b, &publisher);
    wait_complete(&b, &id);
    let w = net.work();
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert!(!w_exists(&net, "downloads/film/film.bin.part"));
}

#[test]
fn a_partial_file_left_by_a_removed_download_is_written_over_by_a_new_get() {
    let net = TestNet::new();
    let (publisher, link, _peer) = stalled_release(&net, &[]);
    let b = net.start("b", &[]).trusting(&publisher);
    b.client(&["get", &link, "-o", "downloads/film", "--detach"])
        .ok();
    let id = only_item_id(&b);
    b.client(&["rm", &id]).ok();
    // `rm` keeps files: the partial one stays, here with other bytes and another size.
    let w = net.work();
    w.write(
        "downloads/film/film.bin.part",
        b"an earlier, unfinished download",
    );
    let seed = honest_seed_for(&net, &b, &publisher);
    let base = link.split('?').next().unwrap();
    let from_seed = format!("{base}?peer={}", seed.addr());
    b.client(&["get", &from_seed, "-o", "downloads/film", "--detach"])
        .ok();
    wait_complete(&b, &id);
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert!(!w_exists(&net, "downloads/film/film.bin.part"));
}

/// Issue 14: a file that is not a manifest (or a catalog) is named, with what it is instead,
/// before the daemon sees it; a manifest whose signature fails says so once.
#[test]
fn add_and_publish_name_a_file_that_is_not_what_they_read() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/a.txt", b"a\n");
    w.write("notes.txt", b"hello\n");
    create(&net, "release", "A", "a.manifest", &[]);
    let a = net.start("a", &[]).trusting(&publisher);

    let out = a.client(&["add", "notes.txt", "--content", "release"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "notes.txt is not a Licet manifest (it is a text file, while signed Licet objects \
             are binary files)"
        ),
        "{}",
        out.stderr
    );
    let out = a.client(&["catalog", "publish", "a.manifest"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("a.manifest is not a Licet catalog (it is a signed manifest)"),
        "{}",
        out.stderr
    );

    // The envelope ends with the 64-byte signature and a one-byte "no delegation".
    let mut bytes = std::fs::read(w.join("a.manifest")).unwrap();
    let at = bytes.len() - 2;
    bytes[at] ^= 1;
    w.write("forged.manifest", &bytes);
    let out = a.client(&["add", "forged.manifest", "--content", "release"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "the manifest is not valid: the manifest signature by {publisher} is not valid"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("not valid").count(), 2, "{}", out.stderr);
    assert!(!out.stderr.contains("Serde"), "{}", out.stderr);
}

/// Issue 14: `peers` shows the address each connection uses, on both sides, never `-`.
#[test]
fn peers_shows_the_address_each_connection_uses() {
    let net = TestNet::new();
    let a = net.start("a", &[]);
    let port = tcp_port(&a);
    let b = net.start("b", &["--bootstrap", &format!("127.0.0.1:{port}")]);
    b.wait_for_peer(&a);
    a.wait_for_peer(&b);

    let from_b = b.client(&["peers"]).ok().stdout.clone();
    let row = from_b
        .lines()
        .find(|l| l.starts_with(a.peer_id()))
        .unwrap_or_else(|| panic!("{from_b}"));
    assert!(
        row.contains(&format!(" /ip4/127.0.0.1/tcp/{port} ")),
        "B dialled A at its listen address: {from_b}"
    );
    let from_a = a.client(&["peers"]).ok().stdout.clone();
    let row = from_a
        .lines()
        .find(|l| l.starts_with(b.peer_id()))
        .unwrap_or_else(|| panic!("{from_a}"));
    assert!(
        row.contains(" /ip4/127.0.0.1/tcp/"),
        "A sees the address B's connection comes from: {from_a}"
    );
    assert!(!row.contains(" - "), "{from_a}");
}

/// Issue 14: a seeded file appended to is no longer shown complete: `ls` says it changed and
/// how to re-verify it, `status` does not count it complete, with no chunk requested first.
#[test]
fn a_seeded_file_appended_to_is_shown_changed_not_complete() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(100_000, 5));
    create(&net, "release", "Film", "film.manifest", &[]);
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");
    let ls = a.client(&["ls"]).ok().stdout.clone();
    assert!(ls.contains(" complete "), "{ls}");

    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(w.join("release/film.bin"))
        .unwrap();
    std::io::Write::write_all(&mut file, b"one more line\n").unwrap();
    drop(file);

    let ls = a.client(&["ls"]).ok().stdout.clone();
    assert!(!ls.contains(" complete "), "{ls}");
    assert!(ls.contains(" changed "), "{ls}");
    assert!(
        ls.contains("changed on disk, not served: film.bin (re-verify with `licet-node check"),
        "{ls}"
    );
    let status = a.client(&["status"]).ok().stdout.clone();
    assert!(status.contains("0 complete"), "{status}");
    assert!(status.contains("changed on disk  1 item(s)"), "{status}");
}

/// Issue 14: `run --color` chooses the log's colours: `always` colours a log written to a file,
/// `never` (and the default, off a terminal) leaves it plain; a wrong value names the choices.
#[test]
fn run_color_chooses_whether_the_log_is_coloured() {
    let net = TestNet::new();
    let always = net.start("always", &["--color", "always"]);
    let line = always.wait_for_log("listening", TIMEOUT);
    assert!(line.contains('\x1b'), "{line:?}");
    let never = net.start("never", &["--color", "never"]);
    let line = never.wait_for_log("listening", TIMEOUT);
    assert!(!line.contains('\x1b'), "{line:?}");

    let out = licet_tests::run(
        &licet_tests::bin("licet-node"),
        net.work().path(),
        &["run", "--data-dir", "node", "--color", "sometimes"],
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("'sometimes'") && out.stderr.contains("auto, always, never"),
        "{}",
        out.stderr
    );
}
