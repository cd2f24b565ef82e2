//! `licet-node` end to end: real daemons as separate processes on 127.0.0.1 (ephemeral ports,
//! temporary data directories), driven through the client subcommands a user types, with
//! `licet-manifest` as the rights holder's tool. What each test asserts is what a user sees:
//! exit codes, `--json` replies, error messages, the bytes on disk, and `/metrics`.
//!
//! Every wait is a bounded poll of the API (or of the process); every daemon is killed when its
//! `TestNode` is dropped, also when a test panics, and a failing test prints the tail of every
//! node's log.

use std::{path::Path, time::Duration};

use licet_proto::{ManifestId, SecretKey, policy::RefusalReason, signed::Signed, wire::Response};
use licet_tests::{
    Running, TestNet, TestNode, assert_same_file, count, create,
    hostile::{Answer, HostileContent, HostilePeer, HostileStats},
    pseudo_random_bytes, text, wait_for, write_pseudo_random_file,
};
use serde_json::Value;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// The chunk size of the edge-case release.
const CS: u64 = 16 * KIB;
/// How long a download may take before the test gives up on it.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A small two-file release in `dir`, signed into `manifest` with `extra` options; returns
/// `create --json`'s reply.
fn small_release(net: &TestNet, dir: &str, manifest: &str, extra: &[&str]) -> Value {
    let w = net.work();
    w.write(&format!("{dir}/film.bin"), &pseudo_random_bytes(200_000, 7));
    w.write(
        &format!("{dir}/subtitles.srt"),
        b"1\n00:00:01,000 --> 00:00:02,000\nHi\n",
    );
    create(net, dir, "Small film", manifest, extra)
}

/// Starts node `name`, trusts `publisher` there, and seeds `manifest` from `content` with `add`.
fn seeder(net: &TestNet, name: &str, publisher: &str, manifest: &str, content: &str) -> TestNode {
    let node = net.start(name, &[]).trusting(publisher);
    let added = node.add(manifest, content);
    assert_eq!(added["state"], "complete", "{added}");
    assert_eq!(added["refused"], Value::Null, "{added}");
    node
}

/// The publisher's key, a [`small_release`] in `release` signed into `manifest` with `extra`
/// options, and node "a" seeding it; returns (publisher, `create --json`, A).
fn seeded_small_release(
    net: &TestNet,
    manifest: &str,
    extra: &[&str],
) -> (String, Value, TestNode) {
    let publisher = net.work().keygen("publisher.pem");
    let created = small_release(net, "release", manifest, extra);
    let a = seeder(net, "a", &publisher, manifest, "release");
    (publisher, created, a)
}

/// Files in `dir` (none if it does not exist).
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// A refusal counted by a node's `/metrics`.
fn refusals(node: &TestNode, reason: &str) -> f64 {
    node.metric(&format!("licet_refusals_total{{reason=\"{reason}\"}}"))
}

#[test]
fn two_nodes_fetch_a_multi_file_release_with_edge_case_sizes() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let files: [(&str, u64); 6] = [
        ("empty.bin", 0),
        ("one.bin", 1),
        ("sub/chunk-minus-one.bin", CS - 1),
        ("sub/chunk.bin", CS),
        ("sub/deeper/chunk-plus-one.bin", CS + 1),
        ("many.bin", 3 * MIB + 17),
    ];
    for (i, (path, size)) in files.iter().enumerate() {
        w.write(
            &format!("release/{path}"),
            &pseudo_random_bytes(*size as usize, i as u64 + 1),
        );
    }
    let total_bytes: u64 = files.iter().map(|f| f.1).sum();
    // An empty file has one (empty) chunk.
    let total_chunks: u64 = files.iter().map(|f| f.1.div_ceil(CS).max(1)).sum();
    let created = create(
        &net,
        "release",
        "Edge cases",
        "edge.manifest",
        &["--chunk-size", "16KiB"],
    );
    let id = text(&created["manifest_id"]);
    let link = text(&created["link"]);

    let a = seeder(&net, "a", &publisher, "edge.manifest", "release");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let got = b.client_json(&["get", link, "-o", "downloads/edge"]);

    assert_eq!(got["manifest_id"], id, "{got}");
    assert_eq!(got["state"], "complete", "{got}");
    assert_eq!(got["refused"], Value::Null, "{got}");
    assert_eq!(got["error"], Value::Null, "{got}");
    assert_eq!(count(&got["total_bytes"]), total_bytes, "{got}");
    assert_eq!(count(&got["have_bytes"]), total_bytes, "{got}");
    assert_eq!(count(&got["total_chunks"]), total_chunks, "{got}");
    assert_eq!(count(&got["have_chunks"]), total_chunks, "{got}");
    assert_eq!(count(&got["fetched_chunks"]), total_chunks, "{got}");
    assert_eq!(count(&got["source_peers"]), 1, "{got}");
    for (path, size) in files {
        let fetched = w.join(&format!("downloads/edge/{path}"));
        assert_same_file(&w.join(&format!("release/{path}")), &fetched);
        assert_eq!(std::fs::metadata(&fetched).unwrap().len(), size, "{path}");
    }

    let listed = b.content(id).expect("`ls` lists the fetched release");
    assert_eq!(listed["state"], "complete", "{listed}");
    assert_eq!(count(&listed["have_chunks"]), total_chunks, "{listed}");
    assert_eq!(
        Path::new(text(&listed["dir"])),
        std::fs::canonicalize(w.join("downloads/edge")).unwrap()
    );
    assert_eq!(
        b.metric("licet_chunks_fetched_total"),
        total_chunks as f64,
        "every chunk fetched once"
    );
    assert!(a.metric("licet_chunks_served_total") >= total_chunks as f64);
    assert!(a.metric("licet_bytes_out_total") >= total_bytes as f64);
}

#[test]
fn four_nodes_a_downloader_gets_chunks_from_several_peers() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), 96 * MIB, 4);
    let created = create(
        &net,
        "release",
        "Four nodes",
        "film.manifest",
        &["--chunk-size", "256KiB"],
    );
    let id = text(&created["manifest_id"]);
    let link = text(&created["link"]);

    let a = seeder(&net, "a", &publisher, "film.manifest", "release");
    let b = net.start_joined("b", &a, &[]);
    let c = net.start_joined("c", &a, &[]);
    let d = net.start_joined("d", &a, &[]);
    for node in [&b, &c, &d] {
        node.trust(&publisher);
    }
    // B and C start fetching from A; D starts while each of them holds only part of it.
    let b_get = b.spawn_client(&["get", link, "-o", "downloads/b", "--json"]);
    let c_get = c.spawn_client(&["get", link, "-o", "downloads/c", "--json"]);
    let (b_had, c_had, total) = wait_for(
        "B and C to hold some chunks",
        DOWNLOAD_TIMEOUT,
        Duration::from_millis(20),
        || {
            let (b_item, c_item) = (b.content(id)?, c.content(id)?);
            let (b_had, c_had) = (count(&b_item["have_chunks"]), count(&c_item["have_chunks"]));
            (b_had > 0 && c_had > 0).then(|| (b_had, c_had, count(&b_item["total_chunks"])))
        },
    );
    let d_get = d.spawn_client(&["get", link, "-o", "downloads/d", "--json"]);
    assert!(
        b_had < total && c_had < total,
        "B ({b_had}) and C ({c_had}) of {total} chunks were to hold only part when D started \
         (too fast for this test: make the release bigger)"
    );

    let d_out = d_get.wait(DOWNLOAD_TIMEOUT);
    d_out.ok();
    let got = d_out.json();
    assert_eq!(got["state"], "complete", "{got}");
    assert_eq!(count(&got["have_chunks"]), total, "{got}");
    assert_eq!(count(&got["fetched_chunks"]), total, "{got}");
    assert!(
        count(&got["source_peers"]) >= 2,
        "D received chunks from only {} peer(s): {got}",
        got["source_peers"]
    );
    let served_by_b_and_c =
        b.metric("licet_chunks_served_total") + c.metric("licet_chunks_served_total");
    assert!(
        served_by_b_and_c > 0.0,
        "B and C served nothing (A alone served D)"
    );
    assert_same_file(&w.join("release/film.bin"), &w.join("downloads/d/film.bin"));

    for (node, out) in [(&b, b_get), (&c, c_get)] {
        let out = out.wait(DOWNLOAD_TIMEOUT);
        out.ok();
        assert_eq!(out.json()["state"], "complete", "{}", node.name());
        assert_same_file(
            &w.join("release/film.bin"),
            &w.join(&format!("downloads/{}/film.bin", node.name())),
        );
    }
}

#[test]
fn a_downloader_that_does_not_trust_the_publisher_refuses_before_fetching_a_byte() {
    let net = TestNet::new();
    let (publisher, created, a) = seeded_small_release(&net, "film.manifest", &[]);
    let id = text(&created["manifest_id"]);
    let b = net.start_joined("b", &a, &[]);

    let out = b.client(&["get", text(&created["link"]), "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("publisher is not trusted") && out.stderr.contains(&publisher),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(a.peer_id()),
        "B's own policy refuses it, not A: {}",
        out.stderr
    );
    assert!(b.content(id).is_none(), "B keeps nothing of a refused item");
    assert_eq!(entries(&net.work().join("downloads/film")), 0);
    assert_eq!(a.metric("licet_chunks_served_total"), 0.0);
    assert_eq!(refusals(&a, "UntrustedPublisher"), 0.0);
}

#[test]
fn a_seeder_that_stops_trusting_the_publisher_refuses_on_the_wire() {
    let net = TestNet::new();
    let (publisher, created, a) = seeded_small_release(&net, "film.manifest", &[]);
    let id = text(&created["manifest_id"]);
    a.client_json(&["trust", "rm", &publisher]);
    let seeded = a.content(id).expect("A still lists the item");
    assert_eq!(
        seeded["refused"]["reason"], "UntrustedPublisher",
        "{seeded}"
    );

    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let out = b.client(&["get", text(&created["link"]), "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("publisher is not trusted") && out.stderr.contains(a.peer_id()),
        "A's refusal, from the wire: {}",
        out.stderr
    );
    assert!(refusals(&a, "UntrustedPublisher") >= 1.0);
    assert_eq!(a.metric("licet_chunks_served_total"), 0.0);
    assert!(b.content(id).is_none());
}

/// The publisher's key and node "a" seeding a [`small_release`] whose licence window ends a few
/// seconds after it is signed; returns (publisher, `create --json`, A, the window's length).
///
/// However slowly the machine runs, `add` must finish inside the window: when the window ended
/// first, `add` refuses the release (exit 1) and it is signed again with a window four times as
/// long (another manifest of the same content), so no margin can be eaten.
fn seeded_release_ending_soon(net: &TestNet) -> (String, Value, TestNode, Duration) {
    let publisher = net.work().keygen("publisher.pem");
    let a = net.start("a", &[]).trusting(&publisher);
    let mut seconds = 6;
    loop {
        let manifest = format!("short-{seconds}s.manifest");
        let window = format!("+{seconds}s");
        let created = small_release(net, "release", &manifest, &["--not-after", &window]);
        let out = a.client(&["add", &manifest, "--content", "release", "--json"]);
        if out.code == Some(0) {
            let added = out.json();
            if added["refused"] == Value::Null {
                assert_eq!(added["state"], "complete", "{added}");
                return (publisher, created, a, Duration::from_secs(seconds));
            }
            // The window ended while the content was hashed.
            assert_eq!(added["refused"]["reason"], "Expired", "{added}");
            a.client_json(&["rm", text(&created["manifest_id"])]);
        } else {
            out.expect_code(1);
            assert!(
                out.stderr.contains("licence window has ended"),
                "{}",
                out.stderr
            );
        }
        assert!(
            seconds < 1000,
            "`add` did not finish within a window of {seconds} s"
        );
        seconds *= 4;
    }
}

#[test]
fn an_ended_licence_is_refused_on_the_wire() {
    let net = TestNet::new();
    let (publisher, created, a, window) = seeded_release_ending_soon(&net);
    let id = text(&created["manifest_id"]);
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);

    let ended = a.wait_for_content(
        id,
        "refused as expired",
        window + Duration::from_secs(60),
        |item| item["refused"]["reason"] == "Expired",
    );
    assert!(
        text(&ended["refused"]["detail"]).contains("licence ended at"),
        "{ended}"
    );
    let out = b.client(&["get", text(&created["link"]), "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("licence window has ended") && out.stderr.contains(a.peer_id()),
        "A's refusal, from the wire: {}",
        out.stderr
    );
    assert!(refusals(&a, "Expired") >= 1.0);
    assert_eq!(a.metric("licet_chunks_served_total"), 0.0);
    assert!(b.content(id).is_none());
}

#[test]
fn a_licence_that_has_not_started_cannot_be_added() {
    let net = TestNet::new();
    let publisher = net.work().keygen("publisher.pem");
    let created = small_release(&net, "release", "later.manifest", &["--not-before", "+1d"]);
    let a = net.start("a", &[]).trusting(&publisher);

    let out = a.client(&["add", "later.manifest", "--content", "release"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("licence window has not started"),
        "{}",
        out.stderr
    );
    assert!(a.content(text(&created["manifest_id"])).is_none());
}

#[test]
fn a_licence_that_has_not_started_is_refused_in_gets_error_before_a_chunk_is_asked_for() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let created = small_release(&net, "release", "later.manifest", &["--not-before", "+1d"]);
    let id = text(&created["manifest_id"]);
    // No node can seed it (`add` refuses it, above): a provider that holds it anyway (a peer of
    // the tests, in this process) hands B the manifest and would send every chunk.
    let provider = HostilePeer::provider(
        HostileContent::load(&w.join("later.manifest"), &w.join("release")),
        Answer::Honest,
    );
    let b = net.start("b", &[]).trusting(&publisher);

    let link = format!("{}?peer={}", text(&created["link"]), provider.addr());
    let out = b.client(&["get", &link, "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("licence window has not started") && out.stderr.contains(id),
        "{}",
        out.stderr
    );
    assert!(
        HostileStats::get(&provider.stats.manifest_requests) >= 1,
        "B had the manifest from the provider"
    );
    assert_eq!(
        HostileStats::get(&provider.stats.chunk_requests)
            + HostileStats::get(&provider.stats.availability_requests),
        0,
        "B refused it before asking for a chunk"
    );
    assert!(b.content(id).is_none(), "B keeps nothing of a refused item");
    assert_eq!(entries(&w.join("downloads/film")), 0);
    assert_eq!(b.metric("licet_chunks_fetched_total"), 0.0);
    // The provider did nothing wrong by B's rules: it is not banned.
    let entry = b.peer_entry(&provider.peer_id());
    assert!(
        entry.as_ref().is_none_or(|e| e["banned"] == false),
        "{entry:?}"
    );
}

#[test]
fn a_seeder_serves_a_regional_release_only_to_requesters_that_state_a_listed_region() {
    let net = TestNet::new();
    let (publisher, created, mut a) =
        seeded_small_release(&net, "fr.manifest", &["--regions", "FR"]);
    let id = text(&created["manifest_id"]);
    // A seeder's own region does not matter: a partner's seed in the US may serve France.
    assert_eq!(a.terminate().code(), Some(0));
    a.restart_with(&["--region", "US"]);
    let item = a.content(id).expect("A keeps the item across the restart");
    assert_eq!(item["refused"], Value::Null, "{item}");

    // On the wire, a chunk goes only to a requester that states a listed region.
    let manifest: ManifestId = id.parse().expect("a manifest id");
    let requester = HostilePeer::requester();
    for stated in [None, Some("US")] {
        match requester.ask_chunk(a.addr(), manifest, (0, 0), stated) {
            Some(Response::Refused { reason, detail }) => {
                assert_eq!(
                    reason,
                    RefusalReason::RegionNotLicensed,
                    "{stated:?}: {detail}"
                );
                assert!(detail.contains("FR"), "{stated:?}: {detail}");
            }
            other => panic!("a requester stating {stated:?} got {other:?}"),
        }
    }
    assert_eq!(refusals(&a, "RegionNotLicensed"), 2.0);
    assert_eq!(a.metric("licet_chunks_served_total"), 0.0);
    assert!(
        matches!(
            requester.ask_chunk(a.addr(), manifest, (0, 0), Some("FR")),
            Some(Response::Chunk { .. })
        ),
        "a requester in FR is served"
    );

    // A downloader configured in France fetches the release from the seed in the US.
    let b = net
        .start_joined("b", &a, &["--region", "FR"])
        .trusting(&publisher);
    let got = b.client_json(&["get", text(&created["link"]), "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_same_file(
        &net.work().join("release/film.bin"),
        &net.work().join("downloads/film/film.bin"),
    );
    assert_eq!(refusals(&a, "RegionNotLicensed"), 2.0);
}

#[test]
fn regression_a_node_without_a_region_refuses_a_regional_release_and_says_how_to_set_one() {
    let net = TestNet::new();
    let (publisher, created, a) = seeded_small_release(&net, "fr.manifest", &["--regions", "FR"]);
    let id = text(&created["manifest_id"]);
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    assert_eq!(b.client_json(&["status"])["region"], Value::Null);

    let out = b.client(&["get", text(&created["link"]), "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("not licensed in this region")
            && out.stderr.contains("has no region")
            && out.stderr.contains("--region"),
        "{}",
        out.stderr
    );
    assert!(b.content(id).is_none());
    assert_eq!(entries(&net.work().join("downloads/film")), 0);
    assert_eq!(a.metric("licet_chunks_served_total"), 0.0);
}

#[test]
fn a_downloader_in_an_unlicensed_region_refuses_before_fetching_a_byte() {
    let net = TestNet::new();
    let (publisher, created, a) = seeded_small_release(&net, "fr.manifest", &["--regions", "FR"]);
    let id = text(&created["manifest_id"]);
    let b = net
        .start_joined("b", &a, &["--region", "US"])
        .trusting(&publisher);
    assert_eq!(b.client_json(&["status"])["region"], "US");

    let out = b.client(&["get", text(&created["link"]), "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("not licensed in this region") && out.stderr.contains("US"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(a.peer_id()),
        "B's own policy refuses it, not A: {}",
        out.stderr
    );
    assert!(b.content(id).is_none());
    assert_eq!(entries(&net.work().join("downloads/film")), 0);
    assert_eq!(a.metric("licet_chunks_served_total"), 0.0);
    assert_eq!(refusals(&a, "RegionNotLicensed"), 0.0);
}

#[test]
fn tampered_unsigned_and_foreign_signed_manifests_cannot_be_added() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.keygen("other.pem");
    let created = small_release(&net, "release", "film.manifest", &[]);
    let genuine = std::fs::read(w.join("film.manifest")).unwrap();

    // The title changed inside the signed body.
    let mut tampered = genuine.clone();
    let at = tampered
        .windows(10)
        .position(|win| win == b"Small film")
        .unwrap();
    tampered[at] = b'T';
    std::fs::write(w.join("tampered.manifest"), &tampered).unwrap();
    // The same body with no signature (all zeroes).
    let mut unsigned = Signed::decode(&genuine).unwrap();
    unsigned.signature.0 = [0; 64];
    std::fs::write(w.join("unsigned.manifest"), unsigned.encode()).unwrap();
    // The same body (naming the publisher) signed by another key, with no delegation.
    let original = Signed::decode(&genuine).unwrap();
    let other = SecretKey::read_pem_file(&w.join("other.pem")).unwrap();
    let foreign = Signed::sign(original.kind, original.body, &other, None);
    std::fs::write(w.join("foreign.manifest"), foreign.encode()).unwrap();

    let a = net.start("a", &[]).trusting(&publisher);
    // A tampered body or a zeroed signature fails the signature check; a body signed by a key
    // that is not its publisher's, with no delegation, is refused for that.
    for (name, says) in [
        ("tampered", "signature"),
        ("unsigned", "signature"),
        ("foreign", "without a delegation"),
    ] {
        let out = a.client(&["add", &format!("{name}.manifest"), "--content", "release"]);
        out.expect_code(1);
        assert!(
            out.stderr.contains(says),
            "{name}: the error should say {says:?}: {}",
            out.stderr
        );
        assert!(
            a.client_json(&["ls"])["content"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{name}: nothing is kept"
        );
    }
    // The genuine manifest with the same content is accepted: the bytes were the problem.
    let added = a.add("film.manifest", "release");
    assert_eq!(added["manifest_id"], created["manifest_id"]);
}

#[test]
fn a_tampered_manifest_from_a_provider_is_refused_in_gets_error_and_the_provider_banned() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let created = small_release(&net, "release", "film.manifest", &[]);
    let id = text(&created["manifest_id"]);
    let genuine = std::fs::read(w.join("film.manifest")).unwrap();
    // The title changed inside the signed body; the signature no longer covers it.
    let mut tampered = genuine.clone();
    let at = tampered
        .windows(10)
        .position(|win| win == b"Small film")
        .unwrap();
    tampered[at] = b'T';
    let provider = HostilePeer::provider(
        HostileContent::load(&w.join("film.manifest"), &w.join("release")),
        Answer::Honest,
    );
    provider.replay_manifest(tampered);
    let b = net.start("b", &[]).trusting(&publisher);

    let link = format!("{}?peer={}", text(&created["link"]), provider.addr());
    let out = b.client(&["get", &link, "-o", "downloads/film"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("signature is not valid")
            && out.stderr.contains("does not verify")
            && out.stderr.contains(&provider.peer_id())
            && out.stderr.contains(id),
        "B's refusal of what the provider sent, naming it: {}",
        out.stderr
    );
    assert!(HostileStats::get(&provider.stats.manifest_requests) >= 1);
    assert_eq!(HostileStats::get(&provider.stats.chunk_requests), 0);
    let entry = b
        .peer_entry(&provider.peer_id())
        .expect("B lists the provider it banned");
    assert_eq!(entry["banned"], true, "{entry}");
    assert!(text(&entry["ban_reason"]).contains("manifest"), "{entry}");
    assert_eq!(b.metric("licet_peers_banned_total"), 1.0);
    assert!(b.content(id).is_none(), "B keeps nothing of a refused item");
    assert_eq!(entries(&w.join("downloads/film")), 0);
}

/// Starts B fetching a big release from A and returns once B holds some but not all of it, with
/// what B held then.
fn fetch_until_partial(b: &TestNode, link: &str, id: &str) -> (Running, u64, u64) {
    let get = b.spawn_client(&["get", link, "-o", "downloads/big"]);
    let (had, total) = wait_for(
        "B to hold some chunks",
        DOWNLOAD_TIMEOUT,
        Duration::from_millis(20),
        || {
            let item = b.content(id)?;
            let had = count(&item["have_chunks"]);
            (had > 0).then(|| (had, count(&item["total_chunks"])))
        },
    );
    (get, had, total)
}

/// A 128 MiB release in 1 MiB chunks, seeded by node "a"; returns (A, publisher, id, link).
fn big_release(net: &TestNet) -> (TestNode, String, String, String) {
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/big.bin"), 128 * MIB, 9);
    let created = create(net, "release", "Big", "big.manifest", &[]);
    let a = seeder(net, "a", &publisher, "big.manifest", "release");
    (
        a,
        publisher,
        text(&created["manifest_id"]).to_owned(),
        text(&created["link"]).to_owned(),
    )
}

#[test]
fn kill_9_mid_fetch_then_restart_completes_without_refetching_verified_chunks() {
    let net = TestNet::new();
    let w = net.work();
    let (a, publisher, id, link) = big_release(&net);
    let mut b = net.start_joined("b", &a, &[]).trusting(&publisher);

    let (watching, had, total) = fetch_until_partial(&b, &link, &id);
    b.kill9();
    assert!(
        had < total,
        "B finished before it could be killed (make the release bigger)"
    );
    let watching = watching.wait(Duration::from_secs(30));
    assert_ne!(
        watching.code,
        Some(0),
        "`get` cannot succeed once its daemon is gone"
    );

    b.restart();
    let resumed = b.content(&id).expect("B keeps the item across kill -9");
    // Chunks held from before the kill: held now, less what this process fetched already.
    let kept = count(&resumed["have_chunks"]) - count(&resumed["fetched_chunks"]);
    assert!(
        kept >= had,
        "B lost verified chunks: it held {had} before kill -9, {kept} after: {resumed}"
    );
    assert!(kept < total, "nothing was left to fetch: {resumed}");

    // The daemon resumes the download by itself...
    b.wait_for_content(&id, "resumed", DOWNLOAD_TIMEOUT, |item| {
        count(&item["fetched_chunks"]) > 0
    });
    // ...and `get` again watches it to the end.
    let done = b.client_json(&["get", &link, "-o", "downloads/big"]);
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(count(&done["have_chunks"]), total, "{done}");
    assert_eq!(
        kept + count(&done["fetched_chunks"]),
        total,
        "verified chunks were fetched again after the restart: {kept} kept, {done}"
    );
    assert_eq!(
        b.metric("licet_chunks_fetched_total"),
        count(&done["fetched_chunks"]) as f64
    );
    assert_same_file(&w.join("release/big.bin"), &w.join("downloads/big/big.bin"));
}

#[test]
fn sigterm_stops_the_daemon_cleanly_even_mid_fetch_and_mid_request() {
    let net = TestNet::new();
    let w = net.work();
    let (mut a, publisher, id, link) = big_release(&net);
    let mut b = net.start_joined("b", &a, &[]).trusting(&publisher);

    let (watching, had, total) = fetch_until_partial(&b, &link, &id);
    // A client whose request never ends does not keep the daemon from stopping.
    let mut in_flight = b.hold_request_in_flight();
    let exit = b.terminate();
    assert_eq!(
        exit.code(),
        Some(0),
        "SIGTERM mid-fetch and mid-request: {exit}"
    );
    let mut rest = Vec::new();
    let ended = std::io::Read::read_to_end(&mut in_flight, &mut rest);
    assert!(
        !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the request in flight is still open after the daemon stopped: {ended:?}"
    );
    for file in ["api-addr", "api-token"] {
        assert!(
            !b.data_dir().join(file).exists(),
            "{file} is left behind after a clean shutdown"
        );
    }
    let log = b.log_tail(usize::MAX);
    assert!(
        log.lines()
            .last()
            .is_some_and(|l| l.contains("licet-node stopped")),
        "the daemon's last log line says it stopped: {log}"
    );
    assert!(
        !log.contains('\x1b'),
        "a log written to a file has no terminal colour codes: {log}"
    );
    let watching = watching.wait(Duration::from_secs(30));
    assert_ne!(watching.code, Some(0));
    let out = b.client(&["status"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("no daemon is running"),
        "{}",
        out.stderr
    );

    b.restart();
    let resumed = b.content(&id).expect("B keeps the item across a restart");
    let kept = count(&resumed["have_chunks"]) - count(&resumed["fetched_chunks"]);
    assert!(kept >= had, "B lost verified chunks: {had} then {kept}");
    let done = b.client_json(&["get", &link, "-o", "downloads/big"]);
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(kept + count(&done["fetched_chunks"]), total, "{done}");
    assert_same_file(&w.join("release/big.bin"), &w.join("downloads/big/big.bin"));

    // An idle seeder stops the same way.
    let exit = a.terminate();
    assert_eq!(exit.code(), Some(0), "SIGTERM idle: {exit}");
    assert!(!a.data_dir().join("api-addr").exists());
    let exit = b.terminate();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn regression_peers_shows_the_address_each_peer_is_connected_on() {
    let net = TestNet::new();
    let a = net.start("a", &[]);
    let b = net.start_joined("b", &a, &[]);
    b.wait_for_peer(&a);
    a.wait_for_peer(&b);
    let addrs = |entry: &Value| -> Vec<String> {
        entry["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|addr| text(addr).to_owned())
            .collect()
    };

    // B dialled A at A's listen address: `peers` on B lists A there.
    let a_listen = a.addr().split("/p2p/").next().unwrap();
    let entry = b.peer_entry(a.peer_id()).expect("B lists A");
    assert!(
        addrs(&entry)
            .iter()
            .any(|addr| addr == a_listen || addr.starts_with(&format!("{a_listen}/"))),
        "B lists A without its listen address {a_listen}: {entry}"
    );
    // A lists B at the connection's remote address, on loopback.
    let entry = a.peer_entry(b.peer_id()).expect("A lists B");
    assert!(
        addrs(&entry)
            .iter()
            .any(|addr| addr.starts_with("/ip4/127.0.0.1/tcp/")),
        "A lists B without the address it is connected on: {entry}"
    );
    // The table shows the address too.
    let table = b.client(&["peers"]);
    assert!(table.ok().stdout.contains(a_listen), "{}", table.stdout);
}

/// Ids round-trip: the id `ls` shows (16 hex characters), any unique start of it, the full id
/// and the content's `licet:` link each name the content for `check` and `rm`; a start that
/// names nothing held is refused, naming it (exit 2).
#[test]
fn content_is_named_by_the_id_ls_shows_a_start_of_it_or_its_link() {
    let net = TestNet::new();
    let publisher = net.work().keygen("publisher.pem");
    let created = small_release(&net, "release", "film.manifest", &[]);
    let a = seeder(&net, "a", &publisher, "film.manifest", "release");
    let id = text(&created["manifest_id"]).to_owned();
    let shown = &id[..16];
    let listed = a.client(&["ls"]).expect_code(0).stdout.clone();
    assert!(listed.contains(shown), "`ls` shows {shown}: {listed}");
    for named in [shown, &id[..6], &id, &format!("licet:{id}")] {
        let checked = a.client_json(&["check", named]);
        assert_eq!(text(&checked["manifest_id"]), id, "check {named}");
    }
    let other = if id.starts_with('0') { "1" } else { "0" };
    let out = a.client(&["rm", other]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(&format!(
            "no content held here has an id starting with {other}"
        )),
        "{}",
        out.stderr
    );
    let removed = a.client_json(&["rm", shown]);
    assert_eq!(text(&removed["removed"]), id);
    assert!(a.content(&id).is_none(), "rm {shown} removed the content");
}
