//! Catalogs, takedowns and partners, end to end: real `licet-node` daemons on 127.0.0.1, the
//! publisher's `licet-manifest`, and only what a user sees (exit codes, `--json` replies,
//! `/metrics`, the bytes on disk).
//!
//! Waits are bounded polls. Where the product promises a latency (a takedown reaches every
//! online node within seconds, a licence window ends within a second) the tests print the
//! latency they measured and allow far more, since these machines are shared and noisy; the
//! measured figures are reported in the README.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use licet_proto::{ManifestId, policy::RefusalReason, wire::Response};
use licet_tests::{
    TestNet, TestNode, assert_same_file,
    hostile::{HostilePeer, OpenSession},
    pseudo_random_bytes, text, wait_for,
};
use serde_json::Value;

/// How long a catalog may take to reach a node (gossip pushes it at once; see the README for
/// what was measured).
const SPREAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A small release in `dir` signed by `key` (with `extra` options, e.g. a delegation) into
/// `manifest`; returns `create --json`.
fn release(
    net: &TestNet,
    key: &str,
    dir: &str,
    title: &str,
    manifest: &str,
    extra: &[&str],
) -> Value {
    let w = net.work();
    w.write(
        &format!("{dir}/film.bin"),
        &pseudo_random_bytes(300_000, title.len() as u64),
    );
    let mut args = vec![
        "create", dir, "--key", key, "--title", title, "-o", manifest, "--json",
    ];
    args.extend_from_slice(extra);
    w.manifest(&args).ok().json()
}

/// `licet-manifest catalog new` (draft.json, for publisher.pem) and `catalog add` of `manifests`.
fn new_draft(net: &TestNet, manifests: &[&str]) {
    let w = net.work();
    w.catalog_new("publisher.pem", "draft.json");
    let mut add = vec!["catalog", "add", "draft.json"];
    add.extend_from_slice(manifests);
    w.manifest(&add).ok();
}

/// `licet-manifest catalog sign DRAFT --key publisher.pem --expires EXPIRES -o OUT`.
fn sign_catalog(net: &TestNet, draft: &str, expires: &str, out: &str) -> Value {
    net.work()
        .catalog_sign(
            draft,
            "publisher.pem",
            out,
            &["--expires", expires, "--json"],
        )
        .ok()
        .json()
}

/// The publisher's key (publisher.pem) and its release "Episode 1" (`release` into
/// ep1.manifest); returns the publisher's public key and `create --json`.
fn episode_one(net: &TestNet) -> (String, Value) {
    let publisher = net.work().keygen("publisher.pem");
    let created = release(
        net,
        "publisher.pem",
        "release",
        "Episode 1",
        "ep1.manifest",
        &[],
    );
    (publisher, created)
}

/// [`episode_one`], listed in draft.json and signed into catalog.1 (expiring in a day).
fn episode_one_in_catalog_one(net: &TestNet) -> (String, Value) {
    let (publisher, created) = episode_one(net);
    new_draft(net, &["ep1.manifest"]);
    sign_catalog(net, "draft.json", "+1d", "catalog.1");
    (publisher, created)
}

/// Revokes ep1.manifest in draft.json and signs the draft into `out` (expiring in a day).
fn revoke_episode_one(net: &TestNet, out: &str) {
    net.work()
        .manifest(&["catalog", "revoke", "draft.json", "ep1.manifest"])
        .ok();
    sign_catalog(net, "draft.json", "+1d", out);
}

/// The node's view of `publisher`'s catalog (`catalog ls --json`).
fn catalog_of(node: &TestNode, publisher: &str) -> Value {
    let list = node.client_json(&["catalog", "ls"]);
    list["catalogs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["publisher"] == publisher)
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{}: {publisher} is not in `catalog ls`: {list}",
                node.name()
            )
        })
}

/// Waits until `node` holds `publisher`'s catalog `sequence`.
#[track_caller]
fn wait_for_sequence(node: &TestNode, publisher: &str, sequence: u64) {
    wait_for(
        &format!("{} to hold catalog {sequence}", node.name()),
        SPREAD_TIMEOUT,
        Duration::from_millis(50),
        || (catalog_of(node, publisher)["sequence"] == sequence).then_some(()),
    );
}

/// The reason `node` refuses `id` now, if it does.
fn refusal_of(node: &TestNode, id: &str) -> Option<String> {
    let item = node.content(id)?;
    item["refused"]["reason"].as_str().map(str::to_owned)
}

/// `publish` on `node`, which must succeed; returns its `--json`.
fn publish(node: &TestNode, catalog: &str) -> Value {
    node.client_json(&["catalog", "publish", catalog])
}

/// A test peer's transfer session with each of `nodes`, kept open, on which each served chunk 0
/// of `id` (the control: these streams get chunks while the policy allows them).
fn served_sessions<'a>(
    hostile: &'a HostilePeer,
    nodes: &[&TestNode],
    id: &str,
) -> Vec<OpenSession<'a>> {
    let id: ManifestId = id.parse().unwrap();
    nodes
        .iter()
        .map(|node| {
            let mut session = hostile.open_session(node.addr());
            let answer = session.ask_chunk(id, (0, 0));
            assert!(
                matches!(answer, Some(Response::Chunk { .. })),
                "{}: chunk 0 is not served before the end: {answer:?}",
                node.name()
            );
            session
        })
        .collect()
}

/// Each of `nodes`, asked for chunk 0 of `id` again on its open session, refuses it on the wire
/// for `reason` and counts the refusal in `/metrics`: what a downloader in flight meets, judged
/// by the serving path itself rather than by `ls`.
#[track_caller]
fn assert_refused_on_the_wire(
    sessions: &mut [OpenSession],
    nodes: &[&TestNode],
    id: &str,
    reason: RefusalReason,
) {
    let id: ManifestId = id.parse().unwrap();
    for (session, node) in sessions.iter_mut().zip(nodes) {
        match session.ask_chunk(id, (0, 0)) {
            Some(Response::Refused { reason: got, .. }) => {
                assert_eq!(got, reason, "{}: refused for another reason", node.name());
            }
            other => panic!("{}: a chunk is still served: {other:?}", node.name()),
        }
        assert!(
            node.metric(&format!("licet_refusals_total{{reason=\"{reason:?}\"}}")) >= 1.0,
            "{}: the refusal is not counted in /metrics",
            node.name()
        );
    }
}

/// How many heads and catalogs `node` refused for `reason` (`licet_catalog_refusals_total`).
fn catalog_refusals(node: &TestNode, reason: &str) -> f64 {
    node.metric(&format!(
        "licet_catalog_refusals_total{{reason=\"{reason}\"}}"
    ))
}

#[test]
fn a_release_window_ends_on_every_node_of_a_five_node_swarm_within_a_second() {
    let net = TestNet::new();
    let publisher = net.work().keygen("publisher.pem");
    let window = Duration::from_secs(60);
    let created = release(
        &net,
        "publisher.pem",
        "release",
        "Live final",
        "final.manifest",
        &["--not-after", &format!("+{}s", window.as_secs())],
    );
    let ends = Instant::now() + window;
    let id = text(&created["manifest_id"]);
    let link = text(&created["link"]);

    // A seeds it; B fetches it inside the window; C, D and E seed it in place too.
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("final.manifest", "release");
    let mut nodes = vec![a];
    for name in ["b", "c", "d", "e"] {
        let node = net.start_joined(name, &nodes[0], &[]).trusting(&publisher);
        nodes.push(node);
    }
    let b = &nodes[1];
    b.client_json(&["get", link, "-o", "fetched"]);
    assert_same_file(
        &net.work().join("release/film.bin"),
        &net.work().join("fetched/film.bin"),
    );
    for node in &nodes[2..] {
        node.add("final.manifest", "release");
    }
    assert!(
        Instant::now() + Duration::from_secs(1) < ends,
        "the swarm took the whole window to set up; the test cannot tell anything"
    );
    for node in &nodes {
        assert_eq!(
            refusal_of(node, id),
            None,
            "{}: refused inside the window",
            node.name()
        );
    }

    let hostile = HostilePeer::requester();
    let all: Vec<&TestNode> = nodes.iter().collect();
    let mut sessions = served_sessions(&hostile, &all, id);

    // One second after the end, no node serves it: every one refuses it, with no restart and
    // no operator action, on the sessions that were served before the end too, and a
    // newcomer's fetch is refused on the wire.
    std::thread::sleep(ends - Instant::now() + Duration::from_secs(1));
    assert_refused_on_the_wire(&mut sessions, &all, id, RefusalReason::Expired);
    for node in &nodes {
        assert_eq!(
            refusal_of(node, id).as_deref(),
            Some("Expired"),
            "{}: still serves a release whose window ended",
            node.name()
        );
    }
    let f = net.start_joined("f", &nodes[0], &[]).trusting(&publisher);
    let out = f.client(&["get", link, "-o", "late"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("licence window has ended"),
        "the refusal names the ended window: {}",
        out.stderr
    );
}

#[test]
fn a_takedown_reaches_ten_online_nodes_and_an_offline_node_as_soon_as_it_sees_the_head() {
    let net = TestNet::new();
    let (publisher, created) = episode_one_in_catalog_one(&net);
    let id = text(&created["manifest_id"]);

    // Ten online nodes and one that goes offline, all seeding the episode; the default poll
    // interval (60 s) is left alone, so what carries the takedown in time is gossip.
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("ep1.manifest", "release");
    publish(&a, "catalog.1");
    let mut online = vec![a];
    for i in 1..10 {
        let node = net
            .start_joined(&format!("n{i}"), &online[0], &[])
            .trusting(&publisher);
        node.add("ep1.manifest", "release");
        online.push(node);
    }
    let mut offline = net
        .start_joined("offline", &online[0], &[])
        .trusting(&publisher);
    offline.add("ep1.manifest", "release");
    for node in online.iter().chain([&offline]) {
        wait_for_sequence(node, &publisher, 1);
        assert_eq!(refusal_of(node, id), None);
    }
    offline.terminate();
    let hostile = HostilePeer::requester();
    let all: Vec<&TestNode> = online.iter().collect();
    let mut sessions = served_sessions(&hostile, &all, id);

    // The takedown: catalog 2 revokes the episode.
    revoke_episode_one(&net, "catalog.2");
    let published = Instant::now();
    publish(&online[0], "catalog.2");
    let mut slowest = Duration::ZERO;
    for node in &online {
        wait_for(
            &format!("{} to refuse the revoked episode", node.name()),
            SPREAD_TIMEOUT,
            Duration::from_millis(20),
            || (refusal_of(node, id).as_deref() == Some("Revoked")).then_some(()),
        );
        slowest = slowest.max(published.elapsed());
    }
    eprintln!(
        "takedown: every one of 10 online nodes refused the episode {slowest:?} after publish"
    );
    assert_refused_on_the_wire(&mut sessions, &all, id, RefusalReason::Revoked);
    let seq = online[5].metric(&format!(
        "licet_catalog_sequence{{publisher=\"{publisher}\"}}"
    ));
    assert_eq!(seq, 2.0, "/metrics shows the catalog sequence");
    let revoked = online[5].metric(&format!(
        "licet_catalog_revoked_manifests{{publisher=\"{publisher}\"}}"
    ));
    assert_eq!(revoked, 1.0, "/metrics shows the revoked count");

    // The node that was offline still has catalog 1; it refuses as soon as it sees the head.
    let restarted = Instant::now();
    offline.restart();
    wait_for(
        "the restarted node to refuse the revoked episode",
        SPREAD_TIMEOUT,
        Duration::from_millis(20),
        || (refusal_of(&offline, id).as_deref() == Some("Revoked")).then_some(()),
    );
    eprintln!(
        "takedown: the node that was offline refused it {:?} after restarting",
        restarted.elapsed()
    );
    assert_refused_on_the_wire(
        &mut [hostile.open_session(offline.addr())],
        &[&offline],
        id,
        RefusalReason::Revoked,
    );
    let newcomer = net
        .start_joined("newcomer", &online[0], &[])
        .trusting(&publisher);
    let out = newcomer.client(&["get", text(&created["link"]), "-o", "fetched"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("revoked by the publisher"),
        "the refusal names the revocation: {}",
        out.stderr
    );
}

#[test]
fn an_older_catalog_never_rolls_a_node_back_also_after_restarts() {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, created) = episode_one_in_catalog_one(&net);
    let id = text(&created["manifest_id"]);
    // A second draft that signs a different catalog with the same sequence 2.
    std::fs::copy(w.join("draft.json"), w.join("forked.json")).unwrap();
    revoke_episode_one(&net, "catalog.2");
    let someone = w.keygen("someone.pem");
    w.manifest(&["catalog", "revoke-delegate", "forked.json", &someone])
        .ok();
    sign_catalog(&net, "forked.json", "+1d", "forked.2");

    // Every node polls each second, so the DHT record and direct replies are tried again and
    // again, beside gossip.
    let fast = ["--catalog-poll", "1"];
    let a = net.start("a", &fast).trusting(&publisher);
    a.add("ep1.manifest", "release");
    let mut b = net.start_joined("b", &a, &fast).trusting(&publisher);
    b.add("ep1.manifest", "release");
    publish(&a, "catalog.2");
    wait_for_sequence(&b, &publisher, 2);
    assert_eq!(refusal_of(&b, id).as_deref(), Some("Revoked"));

    // R takes catalog 1 while it is on its own, then joins A and B: at its start it passes
    // head 1 on (a DHT put, gossip, and its answers to their direct requests) until its own
    // first poll finds catalog 2. Nobody goes back; R moves on.
    let mut r = net.start("replayer", &fast).trusting(&publisher);
    publish(&r, "catalog.1");
    assert_eq!(catalog_of(&r, &publisher)["sequence"], 1);
    r.terminate();
    r.restart_with(&["--bootstrap", a.addr(), "--bootstrap", b.addr()]);
    // The replay reached A and B, and each refused it as a rollback.
    for node in [&a, &b] {
        wait_for(
            &format!("{} to refuse the replayed catalog 1", node.name()),
            SPREAD_TIMEOUT,
            Duration::from_millis(50),
            || (catalog_refusals(node, "rollback") >= 1.0).then_some(()),
        );
    }
    wait_for_sequence(&r, &publisher, 2);
    for node in [&a, &b] {
        assert_eq!(
            catalog_of(node, &publisher)["sequence"],
            2,
            "{}",
            node.name()
        );
        assert_eq!(
            refusal_of(node, id).as_deref(),
            Some("Revoked"),
            "{}",
            node.name()
        );
    }

    // Straight through the API: catalog 1 is a rollback; the forked catalog 2 has the same
    // sequence with other bytes. Both exit 1 with the reason.
    let out = b.client(&["catalog", "publish", "catalog.1"]);
    out.expect_code(1);
    assert!(out.stderr.contains("rollback refused"), "{}", out.stderr);
    let out = b.client(&["catalog", "publish", "forked.2"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("differs from the accepted catalog"),
        "{}",
        out.stderr
    );

    // After a restart, the persisted sequence still refuses the replay.
    b.terminate();
    b.restart();
    assert_eq!(catalog_of(&b, &publisher)["sequence"], 2);
    assert_eq!(refusal_of(&b, id).as_deref(), Some("Revoked"));
    let out = b.client(&["catalog", "publish", "catalog.1"]);
    out.expect_code(1);
    assert!(out.stderr.contains("rollback refused"), "{}", out.stderr);
}

#[test]
fn an_expired_catalog_freezes_content_of_a_publisher_that_requires_one() {
    let net = TestNet::new();
    let (publisher, created) = episode_one(&net);
    let id = text(&created["manifest_id"]);
    new_draft(&net, &["ep1.manifest"]);
    let lifetime = Duration::from_secs(45);
    sign_catalog(
        &net,
        "draft.json",
        &format!("+{}s", lifetime.as_secs()),
        "catalog.1",
    );
    let expires = Instant::now() + lifetime;

    let a = net.start("a", &[]);
    a.client_json(&["trust", "add", &publisher, "--require-catalog"]);
    // Without a catalog, a require-catalog publisher's content cannot even be added.
    let out = a.client(&["add", "ep1.manifest", "--content", "release"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("no unexpired catalog"),
        "{}",
        out.stderr
    );
    publish(&a, "catalog.1");
    a.add("ep1.manifest", "release");
    let b = net.start_joined("b", &a, &[]);
    b.client_json(&["trust", "add", &publisher, "--require-catalog"]);
    wait_for_sequence(&b, &publisher, 1);
    assert!(
        Instant::now() + Duration::from_secs(5) < expires,
        "the nodes took the catalog's whole lifetime to set up; the test cannot tell anything"
    );
    b.client_json(&["get", text(&created["link"]), "-o", "fetched"]);

    std::thread::sleep(expires - Instant::now() + Duration::from_secs(1));
    for node in [&a, &b] {
        assert_eq!(
            refusal_of(node, id).as_deref(),
            Some("NoValidCatalog"),
            "{}",
            node.name()
        );
        assert_eq!(catalog_of(node, &publisher)["expired"], true);
    }
    let c = net.start_joined("c", &a, &[]);
    c.client_json(&["trust", "add", &publisher, "--require-catalog"]);
    let out = c.client(&["get", text(&created["link"]), "-o", "late"]);
    out.expect_code(1);
    assert!(out.stderr.contains("catalog"), "{}", out.stderr);
}

#[test]
fn a_catalog_with_the_head_of_another_catalog_is_refused() {
    let net = TestNet::new();
    let (publisher, _) = episode_one_in_catalog_one(&net);
    revoke_episode_one(&net, "catalog.2");

    let a = net.start("a", &[]).trusting(&publisher);
    // Catalog 1 under catalog 2's signed head: mix and match.
    let out = a.client(&[
        "catalog",
        "publish",
        "catalog.1",
        "--head",
        "catalog.2.head",
    ]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("is not the head of this catalog"),
        "{}",
        out.stderr
    );
    assert_eq!(catalog_of(&a, &publisher)["sequence"], Value::Null);
    // An untrusted publisher's catalog is refused too.
    let stranger = net.start("stranger", &[]);
    let out = stranger.client(&["catalog", "publish", "catalog.1"]);
    out.expect_code(1);
    assert!(out.stderr.contains("untrusted publisher"), "{}", out.stderr);
}

#[test]
fn a_partner_mirror_serves_the_catalog_and_a_revoked_delegate_is_refused() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let partner = w.keygen("partner.pem");
    w.manifest(&[
        "delegate",
        "--key",
        "publisher.pem",
        "--to",
        &partner,
        "--until",
        "+1d",
        "-o",
        "partner.delegation",
    ])
    .ok();
    let own = release(
        &net,
        "publisher.pem",
        "own",
        "Episode 1",
        "own.manifest",
        &[],
    );
    let by_partner = release(
        &net,
        "partner.pem",
        "partner",
        "Episode 2 (partner edition)",
        "partner.manifest",
        &["--delegation", "partner.delegation"],
    );
    let (own_id, partner_id) = (text(&own["manifest_id"]), text(&by_partner["manifest_id"]));
    new_draft(&net, &["own.manifest", "partner.manifest"]);
    sign_catalog(&net, "draft.json", "+1d", "catalog.1");

    // The publisher's node seeds its own release and publishes the catalog; the partner's
    // mirror seeds the partner edition and mirrors the rest of the catalog from the publisher.
    let fast = ["--catalog-poll", "1"];
    let mut a = net.start("publisher-node", &fast).trusting(&publisher);
    a.add("own.manifest", "own");
    publish(&a, "catalog.1");
    let m = net.start_joined("mirror", &a, &fast);
    let trusted = m.client_json(&["trust", "add", &publisher, "--mirror"]);
    assert_eq!(trusted["mirror"], true);
    m.add("partner.manifest", "partner");
    let mirrored = m.wait_for_content(own_id, "mirrored", DOWNLOAD_TIMEOUT, |item| {
        item["state"] == "complete"
    });
    let mirror_dir = m.data_dir().join("mirror").join(own_id);
    assert_eq!(text(&mirrored["dir"]), mirror_dir.to_str().unwrap());
    assert_same_file(&w.join("own/film.bin"), &mirror_dir.join("film.bin"));

    // With the publisher's node gone, a user gets the catalog and both releases from the
    // partner's mirror alone.
    a.terminate();
    let u = net.start_joined("user", &m, &fast).trusting(&publisher);
    wait_for_sequence(&u, &publisher, 1);
    u.client_json(&["get", text(&own["link"]), "-o", "got-own"]);
    u.client_json(&["get", text(&by_partner["link"]), "-o", "got-partner"]);
    assert_same_file(&w.join("own/film.bin"), &w.join("got-own/film.bin"));
    assert_same_file(&w.join("partner/film.bin"), &w.join("got-partner/film.bin"));

    // The publisher withdraws the partner's key; the partner's node passes the catalog on.
    w.manifest(&["catalog", "revoke-delegate", "draft.json", &partner])
        .ok();
    sign_catalog(&net, "draft.json", "+1d", "catalog.2");
    publish(&m, "catalog.2");
    wait_for(
        "the user node to refuse the partner's manifest",
        SPREAD_TIMEOUT,
        Duration::from_millis(20),
        || (refusal_of(&u, partner_id).as_deref() == Some("DelegateRevoked")).then_some(()),
    );
    assert_eq!(
        refusal_of(&u, own_id),
        None,
        "the publisher's own release is still served"
    );
    assert_eq!(catalog_of(&u, &publisher)["revoked_delegates"], 1);
    let late = net
        .start_joined("late-user", &m, &fast)
        .trusting(&publisher);
    wait_for_sequence(&late, &publisher, 2);
    let out = late.client(&["get", text(&by_partner["link"]), "-o", "late"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("delegate key is revoked"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_catalog_of_100000_entries_travels_between_nodes_and_its_revocation_bites() {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, created) = episode_one(&net);
    let id = text(&created["manifest_id"]);
    let mut list = String::new();
    for i in 0..99_999u32 {
        let other = licet_proto::manifest::manifest_id(&i.to_le_bytes());
        list.push_str(&format!("{other} Episode {i} of a long-running series\n"));
    }
    w.write("ids.txt", list.as_bytes());
    new_draft(&net, &["ep1.manifest"]);
    w.manifest(&["catalog", "add", "draft.json", "--from-list", "ids.txt"])
        .ok();
    let signed = sign_catalog(&net, "draft.json", "+1d", "big.1");
    assert_eq!(signed["entries"], 100_000);
    assert!(
        signed["bytes"].as_u64().unwrap() > 4 * 1024 * 1024,
        "several catalog parts: {signed}"
    );

    let a = net.start("a", &[]);
    a.client_json(&["trust", "add", &publisher, "--require-catalog"]);
    publish(&a, "big.1");
    a.add("ep1.manifest", "release");
    let b = net.start_joined("b", &a, &[]);
    b.client_json(&["trust", "add", &publisher, "--require-catalog"]);
    wait_for_sequence(&b, &publisher, 1);
    assert_eq!(catalog_of(&b, &publisher)["entries"], 100_000);
    assert_eq!(
        catalog_of(&b, &publisher)["catalog_hash"],
        signed["catalog_hash"],
        "B holds the very catalog the publisher signed"
    );
    b.client_json(&["get", text(&created["link"]), "-o", "fetched"]);
    // Holding nothing of the publisher, B fetched the whole catalog: every part.
    let first_fetch = fetched_catalog_bytes(&b);
    assert!(
        first_fetch > 4.0 * 1024.0 * 1024.0,
        "B fetched {first_fetch} bytes of a 100,000-entry catalog"
    );
    let parts_before = b.metric("licet_catalog_parts_fetched_total");

    revoke_episode_one(&net, "big.2");
    publish(&a, "big.2");
    wait_for(
        "B to refuse the episode withdrawn by the large catalog",
        SPREAD_TIMEOUT,
        Duration::from_millis(50),
        || (refusal_of(&b, id).as_deref() == Some("Revoked")).then_some(()),
    );
    assert_eq!(catalog_of(&b, &publisher)["entries"], 99_999);
    // The takedown cost B what changed: the new root, one page and one bucket, within the
    // 16 KiB the README promises.
    let takedown = fetched_catalog_bytes(&b) - first_fetch;
    println!(
        "100,000-entry catalog: B fetched {first_fetch} bytes first, {takedown} for a takedown"
    );
    assert!(
        takedown <= 16.0 * 1024.0,
        "B fetched {takedown} bytes for a takedown of one manifest"
    );
    assert_eq!(
        b.metric("licet_catalog_parts_fetched_total") - parts_before,
        2.0,
        "B fetched only the changed page and bucket"
    );
}

/// Catalog bytes `node` fetched from peers (`licet_catalog_fetched_bytes_total`).
fn fetched_catalog_bytes(node: &TestNode) -> f64 {
    node.metric("licet_catalog_fetched_bytes_total")
}

#[test]
fn a_node_several_catalogs_behind_fetches_only_what_changed_and_converges() {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, _) = episode_one(&net);
    // 2,000 entries: 128 buckets on one page.
    let list: String = (0..1_999u32)
        .map(|i| {
            let other = licet_proto::manifest::manifest_id(&i.to_le_bytes());
            format!("{other} Item {i}\n")
        })
        .collect();
    w.write("ids.txt", list.as_bytes());
    new_draft(&net, &["ep1.manifest"]);
    w.manifest(&["catalog", "add", "draft.json", "--from-list", "ids.txt"])
        .ok();
    let first = sign_catalog(&net, "draft.json", "+1d", "catalog.1");

    let a = net.start("a", &[]);
    a.client_json(&["trust", "add", &publisher]);
    publish(&a, "catalog.1");
    a.add("ep1.manifest", "release");
    let mut b = net.start_joined("b", &a, &["--catalog-poll", "1"]);
    b.client_json(&["trust", "add", &publisher]);
    wait_for_sequence(&b, &publisher, 1);
    let whole = fetched_catalog_bytes(&b);
    assert_eq!(
        b.metric("licet_catalog_parts_fetched_total"),
        first["parts"].as_f64().unwrap(),
        "holding nothing, B fetched every part of the catalog"
    );

    // B is away while the publisher issues three catalogs: two withdraw other items, the
    // third the episode.
    b.terminate();
    for (sequence, withdrawn) in [(2, 5u32), (3, 1_000)] {
        let other = licet_proto::manifest::manifest_id(&withdrawn.to_le_bytes()).to_string();
        w.manifest(&["catalog", "revoke", "draft.json", &other])
            .ok();
        sign_catalog(&net, "draft.json", "+1d", &format!("catalog.{sequence}"));
        publish(&a, &format!("catalog.{sequence}"));
    }
    revoke_episode_one(&net, "catalog.4");
    publish(&a, "catalog.4");

    // Back (its counters start again at 0), B takes head 4 and fetches only the parts it
    // lacks: the root, the page and the (at most three) buckets that changed since catalog 1.
    b.restart_with(&["--bootstrap", a.addr(), "--catalog-poll", "1"]);
    wait_for_sequence(&b, &publisher, 4);
    let held = catalog_of(&b, &publisher);
    assert_eq!(held["entries"], 1_997);
    assert_eq!(held["revoked_manifests"], 3);
    assert_eq!(
        held["catalog_hash"],
        catalog_of(&a, &publisher)["catalog_hash"],
        "B holds the very catalog A holds"
    );

    let parts = b.metric("licet_catalog_parts_fetched_total");
    let bytes = fetched_catalog_bytes(&b);
    println!("several catalogs behind: {bytes} bytes, {parts} parts (the whole: {whole})");
    assert!(
        parts <= 4.0,
        "B fetched {parts} parts, not only the changed ones"
    );
    assert!(
        bytes < whole / 4.0,
        "B fetched {bytes} bytes of a {whole}-byte catalog"
    );
}

#[test]
fn an_older_catalog_gossiped_to_a_node_is_not_forwarded_and_a_newer_one_is() {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, _) = episode_one_in_catalog_one(&net);
    revoke_episode_one(&net, "catalog.2");
    sign_catalog(&net, "draft.json", "+1d", "catalog.3");
    let read = |name: &str| std::fs::read(w.join(name)).unwrap();
    let topic = format!("licet/catalog/{publisher}");

    // B holds catalog 2; C is connected to B alone and takes catalog 2 from it. The default
    // poll (60 s) is left alone: what reaches C within the test comes by gossip through B.
    let b = net.start("b", &[]).trusting(&publisher);
    publish(&b, "catalog.2");
    let c = net.start_joined("c", &b, &[]).trusting(&publisher);
    wait_for_sequence(&c, &publisher, 2);

    // A, a peer that sends gossip to B alone (it has no gossipsub of its own and writes the
    // frames by hand), gossips the older head 1 (validly signed, never gossiped before): B
    // refuses it as a rollback and does not pass it on.
    let a = HostilePeer::raw_gossiper();
    a.serve_catalog_parts(read("catalog.3"));
    a.dial(b.addr()).unwrap();
    let replay = a.gossip_message(&topic, &read("catalog.1.head"), 1);
    a.gossip_frame(b.peer_id(), &[replay]);
    wait_for(
        "B to refuse the gossiped head 1",
        SPREAD_TIMEOUT,
        Duration::from_millis(50),
        || (catalog_refusals(&b, "rollback") >= 1.0).then_some(()),
    );

    // The positive control: then A gossips the newer head 3 on the same path, and B passes it
    // on to C, which takes it (fetching catalog 3 from B) or, if it asked B before B held the
    // catalog, counts it unavailable until its next poll. Either way head 3 reached C, after
    // head 1 would have.
    let newer = a.gossip_message(&topic, &read("catalog.3.head"), 2);
    a.gossip_frame(b.peer_id(), &[newer]);
    wait_for(
        "head 3 to reach C through B",
        SPREAD_TIMEOUT,
        Duration::from_millis(50),
        || {
            let taken = catalog_of(&c, &publisher)["sequence"] == 3;
            (taken || catalog_refusals(&c, "unavailable") >= 1.0).then_some(())
        },
    );
    assert_eq!(catalog_of(&b, &publisher)["sequence"], 3);
    assert_eq!(
        catalog_refusals(&c, "rollback"),
        0.0,
        "B passed the older head 1 on to C"
    );
}

/// How long a node may take to stop announcing after an event: far less than a catalog poll
/// (60 s), whose sweep would stop it too, so only the event itself can pass this.
const STOP_ANNOUNCING_TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn a_node_stops_announcing_at_once_on_a_takedown_trust_rm_and_rm() {
    let net = TestNet::new();
    let w = net.work();
    let (publisher, ep1) = episode_one(&net);
    new_draft(&net, &["ep1.manifest"]);
    revoke_episode_one(&net, "catalog.1");
    let ep3 = release(
        &net,
        "publisher.pem",
        "third",
        "Episode 3",
        "ep3.manifest",
        &[],
    );
    let other = w.keygen("other.pem");
    let theirs = release(
        &net,
        "other.pem",
        "theirs",
        "Another film",
        "other.manifest",
        &[],
    );
    let ids = [&ep1, &ep3, &theirs].map(|created| text(&created["manifest_id"]).to_owned());

    let started = Instant::now();
    let s = net
        .start("seeder", &[])
        .trusting(&publisher)
        .trusting(&other);
    s.add("ep1.manifest", "release");
    s.add("ep3.manifest", "third");
    s.add("other.manifest", "theirs");
    // What any DHT node that asks the seeder for providers of an id is told.
    let asker = HostilePeer::requester();
    asker.dial(s.addr()).unwrap();
    let names_itself = |id: &str| {
        let key = id.parse::<ManifestId>().unwrap().0;
        asker
            .providers_held_by(s.peer_id(), &key)
            .iter()
            .any(|p| p.to_string() == s.peer_id())
    };
    for id in &ids {
        wait_for(
            &format!("the seeder to announce {id}"),
            SPREAD_TIMEOUT,
            Duration::from_millis(100),
            || names_itself(id).then_some(()),
        );
    }
    // The seeder's first catalog poll, 2 s after its start, sweeps refused items too: the
    // events come after it, so only the events themselves can stop the announcements in time.
    std::thread::sleep(
        (started + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    );
    let stops = |what: &str, id: &str| {
        wait_for(
            &format!("the seeder to stop announcing {id} after {what}"),
            STOP_ANNOUNCING_TIMEOUT,
            Duration::from_millis(100),
            || (!names_itself(id)).then_some(()),
        );
    };

    // A takedown: catalog 1 revokes Episode 1; the rest is still announced.
    publish(&s, "catalog.1");
    stops("a takedown", &ids[0]);
    assert!(names_itself(&ids[1]) && names_itself(&ids[2]));

    // `trust rm` of the other publisher.
    s.client_json(&["trust", "rm", &other]);
    stops("trust rm", &ids[2]);
    assert!(names_itself(&ids[1]));

    // `rm` of Episode 3.
    s.client_json(&["rm", &ids[1]]);
    stops("rm", &ids[1]);
}

/// `licet_catalogs_accepted_total{via}` as `node`'s `/metrics` shows it.
fn accepted_via(node: &TestNode, via: &str) -> f64 {
    node.metric(&format!("licet_catalogs_accepted_total{{via=\"{via}\"}}"))
}

/// Each accepted catalog is counted by how it arrived: `publish` on the node it was published
/// on, `poll` on a node that looked it up (here when it trusts the publisher, after the
/// catalog was published), `gossip` on a node that was online when a newer one was pushed.
#[test]
fn each_accepted_catalog_is_counted_by_how_it_arrived() {
    let net = TestNet::new();
    let (publisher, _) = episode_one_in_catalog_one(&net);
    let a = net.start("a", &[]).trusting(&publisher);
    publish(&a, "catalog.1");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    wait_for_sequence(&b, &publisher, 1);

    revoke_episode_one(&net, "catalog.2");
    publish(&a, "catalog.2");
    // The default poll interval (60 s) is far above the wait: catalog 2 comes by gossip.
    wait_for_sequence(&b, &publisher, 2);

    let counted =
        |node: &TestNode| ["publish", "gossip", "poll"].map(|via| (via, accepted_via(node, via)));
    assert_eq!(
        counted(&a),
        [("publish", 2.0), ("gossip", 0.0), ("poll", 0.0)],
        "the publishing node"
    );
    assert_eq!(
        counted(&b),
        [("publish", 0.0), ("gossip", 1.0), ("poll", 1.0)],
        "the node that looked catalog 1 up and was pushed catalog 2"
    );
}
