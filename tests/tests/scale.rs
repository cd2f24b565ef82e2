//! A swarm bigger than a node's connection bound, end to end: real `licet-node` daemons on
//! 127.0.0.1 started in waves, each allowed few connections, and only what a user sees
//! (`/metrics`, `catalog ls --json`, `ls --json`, a `get`).
//!
//! What is claimed: a node whose bootstrap peer is gone rejoins through the peers it
//! remembers; every node's connections come back within the high mark however many peers
//! its DHT queries touch; a catalog and then a takedown published on one node reach every one
//! of the 29 others, at least [`MIN_BY_GOSSIP`] by gossip (each node says so in `/metrics`;
//! the poll, every 20 s, catches the rest); after churn, restarted nodes catch up with the newest catalog, none
//! goes back, and content is still found through the DHT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_tests::{TestNet, TestNode, pseudo_random_bytes, text, wait_for};
use serde_json::Value;

/// Nodes in the swarm.
const NODES: usize = 30;
/// Nodes started per wave; each bootstraps from a node of the waves before.
const WAVE: usize = 10;
/// Nodes killed, then restarted, in the churn.
const CHURNED: usize = 6;
/// The connection manager's marks in this swarm: far below the 29 peers a node would hold in
/// a full mesh, so a node that connects to everyone fails the bound.
const LOW: u32 = 4;
const HIGH: u32 = 8;
/// How long the connections of every node may take to come back within the high mark (a new
/// connection gets the 2 s grace period; a peer served lately is kept 30 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a catalog may take to reach every node.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(60);
/// The catalog poll: the fallback for a node gossip missed, slow enough that what gossip
/// brings comes first (each node counts how its catalogs came).
const POLL_SECS: &str = "20";
/// Of the 29 nodes that did not publish, how many must get each catalog by gossip: all 29 in
/// most runs, 28 in one CI run (the last one by the poll); before this stop's fixes, 23 to 27.
const MIN_BY_GOSSIP: usize = 28;

/// The daemon's flags in this swarm.
fn bounded(bootstrap: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--connections-low",
        &LOW.to_string(),
        "--connections-high",
        &HIGH.to_string(),
        "--connections-grace",
        "2",
        "--catalog-poll",
        POLL_SECS,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(addr) = bootstrap {
        args.extend(["--bootstrap".to_owned(), addr.to_owned()]);
    }
    args
}

/// A release `title` in `dir`, signed by publisher.pem into `manifest`; returns `create --json`.
fn release(net: &TestNet, dir: &str, title: &str, manifest: &str) -> Value {
    let w = net.work();
    w.write(
        &format!("{dir}/film.bin"),
        &pseudo_random_bytes(200_000, title.len() as u64),
    );
    w.manifest(&[
        "create",
        dir,
        "--key",
        "publisher.pem",
        "--title",
        title,
        "-o",
        manifest,
        "--json",
    ])
    .ok()
    .json()
}

/// `catalog sign draft.json` into `out`, expiring in a day.
fn sign(net: &TestNet, out: &str) {
    net.work()
        .catalog_sign("draft.json", "publisher.pem", out, &["--expires", "+1d"])
        .ok();
}

/// `node`'s sequence of `publisher`'s catalog (0 while it holds none).
fn sequence_of(node: &TestNode, publisher: &str) -> u64 {
    let list = node.client_json(&["catalog", "ls"]);
    list["catalogs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["publisher"] == publisher)
        .and_then(|c| c["sequence"].as_u64())
        .unwrap_or(0)
}

/// How many catalogs `node` accepted from a head that came by `via` (publish, gossip, poll).
fn accepted_by(node: &TestNode, via: &str) -> f64 {
    node.metric(&format!("licet_catalogs_accepted_total{{via=\"{via}\"}}"))
}

/// Waits until each node counted `catalogs` accepted catalogs in `/metrics`, however they came
/// (`catalog ls` shows a catalog a moment before the counter moves).
#[track_caller]
fn wait_counted(nodes: &[TestNode], catalogs: f64) {
    for node in nodes {
        wait_for(
            &format!("{} to count {catalogs} accepted catalogs", node.name()),
            SPREAD_TIMEOUT,
            Duration::from_millis(100),
            || {
                let counted: f64 = ["publish", "gossip", "poll"]
                    .iter()
                    .map(|via| accepted_by(node, via))
                    .sum();
                (counted >= catalogs).then_some(())
            },
        );
    }
}

/// Open connections of `node`.
fn connections(node: &TestNode) -> f64 {
    node.metric("licet_connections_open")
}

/// Waits until each node's open connections are within the high mark. The DHT queries of 30
/// nodes keep opening connections for a moment (each lookup reaches most of so small a swarm),
/// trimmed once their grace period ends, so each node is waited for in turn, not all at the
/// same instant; a node connected to everyone (no manager) never gets there.
#[track_caller]
fn wait_within_high_mark(nodes: &[TestNode], when: &str) {
    for node in nodes {
        wait_for(
            &format!("{} within {HIGH} connections ({when})", node.name()),
            SETTLE_TIMEOUT,
            Duration::from_millis(200),
            || (connections(node) <= f64::from(HIGH)).then_some(()),
        );
    }
}

/// Waits until every node in `nodes` holds catalog `sequence` of `publisher`; on a timeout,
/// shows each node's catalog, connections and mesh.
#[track_caller]
fn wait_for_everyone(nodes: &[&TestNode], publisher: &str, sequence: u64) {
    let deadline = std::time::Instant::now() + SPREAD_TIMEOUT;
    loop {
        let behind: Vec<&str> = nodes
            .iter()
            .filter(|n| sequence_of(n, publisher) != sequence)
            .map(|n| n.name())
            .collect();
        if behind.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            let mesh = format!("licet_topic_mesh_peers{{publisher=\"{publisher}\"}}");
            for node in nodes {
                let refusals: Vec<String> = node
                    .metrics()
                    .lines()
                    .filter(|l| l.starts_with("licet_catalog_refusals_total") && !l.ends_with(" 0"))
                    .map(str::to_owned)
                    .collect();
                eprintln!(
                    "{}: catalog {}, {} connections, {} mesh peers, refusals {refusals:?}",
                    node.name(),
                    sequence_of(node, publisher),
                    connections(node),
                    node.metric(&mesh)
                );
            }
            panic!(
                "timed out after {SPREAD_TIMEOUT:?} waiting for catalog {sequence} at {behind:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Regression: a node everyone bootstrapped from stayed above its high mark for good (every
/// catalog poll re-opened a session and kept the peers it asked protected), nodes got a
/// catalog only from the poll (27 of 29 by gossip in one run: a first fetch that failed was not
/// tried again, and gossip delivers a message once), and a restarted node whose bootstrap peer
/// had moved stayed alone.
#[test]
fn a_thirty_node_swarm_stays_within_its_connection_bound_and_gossip_reaches_every_node() {
    let net = TestNet::new().with_log_filter("info,licet_node::catalogs=debug");
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let ep1 = release(&net, "ep1", "Episode 1", "ep1.manifest");
    let ep2 = release(&net, "ep2", "Episode 2", "ep2.manifest");
    let ep1_id = text(&ep1["manifest_id"]).to_owned();
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&[
        "catalog",
        "add",
        "draft.json",
        "ep1.manifest",
        "ep2.manifest",
    ])
    .ok();
    sign(&net, "catalog.1");

    // Waves of nodes, each bootstrapping from one node of the waves before; every node holds
    // episode 1 (to see it refused after the takedown) and trusts the publisher.
    let mut nodes: Vec<TestNode> = Vec::new();
    let first = net
        .start("n0", &as_strs(&bounded(None)))
        .trusting(&publisher);
    nodes.push(first);
    while nodes.len() < NODES {
        let earlier = nodes.len();
        let wave = WAVE.min(NODES - earlier);
        for i in earlier..earlier + wave {
            let seed = &nodes[i % earlier];
            let node = net
                .start(&format!("n{i}"), &as_strs(&bounded(Some(seed.addr()))))
                .trusting(&publisher);
            nodes.push(node);
        }
    }
    for node in &nodes {
        node.add("ep1.manifest", "ep1");
    }
    nodes[1].add("ep2.manifest", "ep2");
    wait_within_high_mark(&nodes, "after the waves");

    // Catalog 1 on n0: every other node accepts it from gossip.
    nodes[0].client_json(&["catalog", "publish", "catalog.1"]);
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_for_everyone(&all, &publisher, 1);
    wait_counted(&nodes, 1.0);
    let gossiped: Vec<f64> = nodes[1..]
        .iter()
        .map(|n| accepted_by(n, "gossip"))
        .collect();
    let by_gossip = gossiped.iter().filter(|g| **g == 1.0).count();
    eprintln!("catalog 1 came by gossip to {by_gossip} of 29 nodes");
    assert!(
        by_gossip >= MIN_BY_GOSSIP,
        "catalog 1 came by gossip to only {by_gossip} of 29 nodes"
    );

    // The takedown: catalog 2 revokes episode 1; every node refuses it, told by gossip.
    w.manifest(&["catalog", "revoke", "draft.json", "ep1.manifest"])
        .ok();
    sign(&net, "catalog.2");
    nodes[0].client_json(&["catalog", "publish", "catalog.2"]);
    for node in &nodes {
        node.wait_for_content(&ep1_id, "refused as revoked", SPREAD_TIMEOUT, |item| {
            item["refused"]["reason"] == "Revoked"
        });
    }
    wait_counted(&nodes, 2.0);
    let by_gossip = nodes[1..]
        .iter()
        .zip(&gossiped)
        .filter(|(n, before)| accepted_by(n, "gossip") == **before + 1.0)
        .count();
    eprintln!("the takedown came by gossip to {by_gossip} of 29 nodes");
    assert!(
        by_gossip >= MIN_BY_GOSSIP,
        "the takedown came by gossip to only {by_gossip} of 29 nodes"
    );
    wait_within_high_mark(&nodes, "after the takedown");
    let trimmed: f64 = nodes
        .iter()
        .map(|n| n.metric("licet_connections_trimmed_total"))
        .sum();
    assert!(trimmed > 0.0, "no node ever trimmed a connection");
    let publisher_label = format!("licet_topic_mesh_peers{{publisher=\"{publisher}\"}}");
    for node in &nodes {
        let mesh = node.metric(&publisher_label);
        assert!(
            (1.0..=f64::from(LOW)).contains(&mesh),
            "{}: {mesh} mesh peers on the publisher's topic",
            node.name()
        );
    }

    // Churn: 6 nodes (never n0, which published, nor n1, which seeds episode 2) go down; a
    // newer catalog is published; they come back and catch up, and none goes back.
    let churned = pick_churned();
    for &i in &churned {
        nodes[i].kill9();
    }
    sign(&net, "catalog.3");
    nodes[0].client_json(&["catalog", "publish", "catalog.3"]);
    let online: Vec<&TestNode> = (0..NODES)
        .filter(|i| !churned.contains(i))
        .map(|i| &nodes[i])
        .collect();
    wait_for_everyone(&online, &publisher, 3);
    for &i in &churned {
        nodes[i].restart();
        let held = sequence_of(&nodes[i], &publisher);
        assert!(held >= 2, "{}: back at catalog {held}", nodes[i].name());
    }
    let restarted: Vec<&TestNode> = churned.iter().map(|&i| &nodes[i]).collect();
    wait_for_everyone(&restarted, &publisher, 3);
    for node in &nodes {
        assert_eq!(sequence_of(node, &publisher), 3, "{}", node.name());
    }
    // A restarted node finds episode 2's seeder through the DHT and fetches it.
    let getter = restarted[0];
    getter
        .client(&["get", text(&ep2["link"]), "-o", "fetched"])
        .ok();
    wait_within_high_mark(&nodes, "after the churn");
}

/// Churn where the bootstrap peer is gone: a node restarted with only the address of a peer
/// that has left (or, as here, restarted on another port) finds the swarm again through the
/// peers it was connected to before (the file `peers` in its data directory), and takes a
/// catalog published while it was down.
#[test]
fn a_node_whose_bootstrap_peer_is_gone_rejoins_through_the_peers_it_remembers() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    release(&net, "ep1", "Episode 1", "ep1.manifest");
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "ep1.manifest"])
        .ok();
    sign(&net, "catalog.1");
    // A short poll: b asks its peers for catalogs soon after it is back (nothing is gossiped
    // while it is down).
    let poll = ["--catalog-poll", "5"];
    let mut a = net.start("a", &poll).trusting(&publisher);
    let with_a = ["--catalog-poll", "5", "--bootstrap", a.addr()];
    let mut b = net.start("b", &with_a).trusting(&publisher);
    let c = net.start("c", &with_a).trusting(&publisher);
    // b writes down the peers it is connected to, c among them (the DHT bootstrap connects
    // the three).
    let remembered = b.data_dir().join("peers");
    wait_for(
        "b to remember c",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            std::fs::read_to_string(&remembered)
                .ok()
                .filter(|text| text.contains(c.peer_id()))
        },
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&remembered).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the peers file is private");
    }
    b.kill9();
    a.kill9();
    c.client_json(&["catalog", "publish", "catalog.1"]);
    // b comes back with only a's address, which no longer answers.
    b.restart();
    wait_for(
        "b to take the catalog published while it was down",
        SPREAD_TIMEOUT,
        Duration::from_millis(200),
        || (sequence_of(&b, &publisher) == 1).then_some(()),
    );
    let peers = b.client_json(&["peers"]);
    assert!(
        peers.to_string().contains(c.peer_id()),
        "b is not connected to c: {peers}"
    );
}

/// `CHURNED` distinct node indexes from 2 to `NODES - 1`, different on each run.
fn pick_churned() -> Vec<usize> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let mut picked = Vec::new();
    let mut next = seed;
    while picked.len() < CHURNED {
        next = next.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let i = 2 + (next >> 33) % (NODES - 2);
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    eprintln!("churn: nodes {picked:?} go down and come back");
    picked
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
