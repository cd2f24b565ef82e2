//! Nodes behind home routers, in the network lab (`licet_tests::lab`): whether a node knows it
//! can be dialled, relay reservations, hole punching between two homes, and peers found on a
//! LAN. Every node is told that the lab's internet counts as public (`--public-range`, the
//! setting a partner on a private enterprise network uses too).
//!
//! Needs root (network namespaces) and `ip`, `nft`, `tc`; under CI a machine without them fails
//! these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_tests::{
    TestNet, TestNode, assert_same_file, count, create,
    lab::{self, Lab, Nat},
    pseudo_random_bytes, text, wait_for,
};
use serde_json::Value;

/// How long AutoNAT, relays and hole punches may take (each takes seconds here).
const SETTLE: Duration = Duration::from_secs(90);

/// `--public-range <the lab's internet>` and `extra`.
fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--public-range", lab::INTERNET];
    all.extend_from_slice(extra);
    all
}

/// `status --json`'s `network` part.
fn network(node: &TestNode) -> Value {
    node.client_json(&["status"])["network"].clone()
}

/// Waits until `node` says it is `reachability` (and, while private, holds a relay reservation).
fn wait_for_reachability(node: &TestNode, reachability: &str) -> Value {
    wait_for(
        &format!("{} to find itself {reachability}", node.name()),
        SETTLE,
        Duration::from_millis(500),
        || {
            let network = network(node);
            let settled = network["reachability"] == reachability
                && (reachability != "private"
                    || !network["relayed_addrs"].as_array().unwrap().is_empty());
            settled.then_some(network)
        },
    )
}

/// This node's entry for `peer` in `peers --json`, once it is connected.
fn wait_for_entry(node: &TestNode, peer: &TestNode) -> Value {
    wait_for(
        &format!("{} to connect to {}", node.name(), peer.name()),
        SETTLE,
        Duration::from_millis(200),
        || node.peer_entry(peer.peer_id()),
    )
}

#[test]
fn a_public_node_finds_itself_reachable_and_a_node_behind_a_nat_holds_a_relay_reservation() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let net = TestNet::new();
    let a_host = lab.public_host("a");
    let b_host = lab.public_host("b");
    let home = lab.home("home", Nat::Cone);
    let laptop = lab.home_host(&home, "laptop");

    let a = net.start_on(&a_host, "a", &args(&[]));
    let b = net.start_on(&b_host, "b", &args(&["--bootstrap", a.addr()]));
    let n = net.start_on(
        &laptop,
        "n",
        &args(&["--bootstrap", a.addr(), "--bootstrap", b.addr()]),
    );

    for public in [&a, &b] {
        let network = wait_for_reachability(public, "public");
        let addrs = network["public_addrs"].as_array().unwrap();
        assert!(
            addrs
                .iter()
                .any(|addr| text(addr).contains(&public.addr()[..20])),
            "{}: {network}",
            public.name()
        );
        assert_eq!(public.metric("licet_publicly_reachable"), 1.0);
        assert_eq!(public.metric("licet_relay_reservations"), 0.0);
    }
    let network = wait_for_reachability(&n, "private");
    assert_eq!(n.metric("licet_publicly_reachable"), 0.0);
    assert!(n.metric("licet_relay_reservations") >= 1.0);
    for relayed in network["relayed_addrs"].as_array().unwrap() {
        let relayed = text(relayed);
        assert!(
            relayed.contains("/p2p-circuit/p2p/") && relayed.ends_with(n.peer_id()),
            "{relayed}"
        );
        assert!(
            relayed.contains(a.peer_id()) || relayed.contains(b.peer_id()),
            "the relay is one of the public nodes: {relayed}"
        );
    }
    let shown = n.client(&["status"]);
    assert!(
        shown
            .stdout
            .contains("reachable        NO (behind a NAT or firewall); through"),
        "{}",
        shown.stdout
    );
    let shown = a.client(&["status"]);
    assert!(
        shown.stdout.contains("reachable        yes, at "),
        "{}",
        shown.stdout
    );
}

#[test]
fn two_nodes_behind_cone_nats_exchange_chunks_over_a_hole_punched_connection() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let net = TestNet::new();
    let w = net.work();
    let relay_host = lab.public_host("relay");
    let home_a = lab.home("home-a", Nat::Cone);
    let home_b = lab.home("home-b", Nat::Cone);
    let a_host = lab.home_host(&home_a, "a");
    let b_host = lab.home_host(&home_b, "b");

    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(2_000_000, 31));
    let created = create(&net, "release", "Film", "film.manifest", &[]);

    let relay = net.start_on(&relay_host, "relay", &args(&[]));
    let joined = args(&["--bootstrap", relay.addr()]);
    let a = net.start_on(&a_host, "a", &joined).trusting(&publisher);
    let b = net.start_on(&b_host, "b", &joined).trusting(&publisher);
    wait_for_reachability(&a, "private");
    wait_for_reachability(&b, "private");
    a.add("film.manifest", "release");

    // A's provider record reaches the relay (the DHT's only server) a moment after `add`;
    // until then B finds no provider and `get` says so.
    let got = wait_for("B's get to find A", SETTLE, Duration::from_secs(1), || {
        let out = b.client(&[
            "get",
            text(&created["link"]),
            "-o",
            "downloads/film",
            "--json",
        ]);
        match out.code {
            Some(0) => Some(out.json()),
            _ if out.stderr.contains("no peer has manifest") => None,
            _ => panic!("get failed: {}", out.stderr),
        }
    });
    assert_eq!(got["state"], "complete", "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    // The chunks came from A (the relay never had the release) over a direct connection.
    assert!(a.metric("licet_bytes_out_total") >= 2_000_000.0);
    assert_eq!(relay.metric("licet_bytes_out_total"), 0.0);
    let entry = wait_for_entry(&b, &a);
    assert_eq!(entry["relayed"], false, "{entry}");
    let addrs = entry["addrs"].as_array().unwrap();
    assert!(
        addrs.iter().all(|addr| !text(addr).contains("p2p-circuit")),
        "{entry}"
    );
    assert!(
        addrs
            .iter()
            .any(|addr| text(addr).contains(&home_a.public_ip().to_string())),
        "B reaches A at A's router: {entry}"
    );
    assert!(
        b.metric("licet_hole_punches_total{result=\"success\"}")
            + a.metric("licet_hole_punches_total{result=\"success\"}")
            >= 1.0
    );
    assert!(
        b.metric("licet_relayed_connections_total") + a.metric("licet_relayed_connections_total")
            >= 1.0
    );
    // Once directly connected, neither home takes the other for a relay: their reservations
    // stay on the public relay.
    std::thread::sleep(Duration::from_secs(3));
    for home in [&a, &b] {
        let network = network(home);
        for relayed in network["relayed_addrs"].as_array().unwrap() {
            assert!(
                text(relayed).contains(&format!("/p2p/{}/p2p-circuit", relay.peer_id())),
                "{}: {network}",
                home.name()
            );
        }
    }
}

#[test]
fn behind_symmetric_nats_no_chunk_crosses_the_relay_and_the_download_comes_from_a_public_seed() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let net = TestNet::new();
    let w = net.work();
    let seed_host = lab.public_host("seed");
    let home_a = lab.home("home-a", Nat::Symmetric);
    let home_b = lab.home("home-b", Nat::Symmetric);
    let a_host = lab.home_host(&home_a, "a");
    let b_host = lab.home_host(&home_b, "b");
    // The seed's uplink is slow (4 Mbit/s: 8 s for the file), so B has time to find A, which
    // holds the release too and answers only through the relay.
    lab.cap(
        &seed_host,
        lab::Caps {
            up_kbit: 4_000,
            down_kbit: 100_000,
        },
    );

    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(4_000_000, 32));
    // Small chunks: several would fit through a relay's circuit (128 KiB) if any were sent.
    let created = create(
        &net,
        "release",
        "Film",
        "film.manifest",
        &["--chunk-size", "16KiB"],
    );

    let seed = net
        .start_on(&seed_host, "seed", &args(&[]))
        .trusting(&publisher);
    let joined = args(&["--bootstrap", seed.addr()]);
    let a = net.start_on(&a_host, "a", &joined).trusting(&publisher);
    let b = net.start_on(&b_host, "b", &joined).trusting(&publisher);
    wait_for_reachability(&a, "private");
    wait_for_reachability(&b, "private");
    // A holds the release too, but is reachable only through the relay.
    a.add("film.manifest", "release");
    seed.add("film.manifest", "release");

    // The link names A by its relayed address, so B meets A whatever the DHT (whose only
    // server is the seed, its uplink full) answers while the download runs.
    let a_relayed = text(&network(&a)["relayed_addrs"][0]).to_owned();
    let link = format!("{}?peer={a_relayed}", text(&created["link"]));
    let got = b.client_json(&["get", &link, "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_eq!(count(&got["total_bytes"]), 4_000_000, "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert_eq!(
        a.metric("licet_bytes_out_total"),
        0.0,
        "no chunk crossed the relay from A"
    );
    assert!(seed.metric("licet_bytes_out_total") >= 4_000_000.0);
    // B did reach A, through the relay only.
    let entry = b.peer_entry(a.peer_id()).expect("B is connected to A");
    assert_eq!(entry["relayed"], true, "{entry}");
    let network = network(&b);
    assert_eq!(network["reachability"], "private", "{network}");
    let shown = b.client(&["status"]);
    assert!(
        shown.stdout.contains("reachable        NO"),
        "{}",
        shown.stdout
    );
}

#[test]
fn two_nodes_in_one_home_find_each_other_on_the_lan_unless_mdns_is_off() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let net = TestNet::new();
    let w = net.work();
    let home = lab.home("home", Nat::Cone);
    let desk = lab.home_host(&home, "desk");
    let sofa = lab.home_host(&home, "sofa");
    let attic = lab.home_host(&home, "attic");

    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(1_500_000, 33));
    let created = create(&net, "release", "Film", "film.manifest", &[]);

    // No bootstrap anywhere: mDNS alone.
    let a = net.start_on(&desk, "a", &args(&[])).trusting(&publisher);
    a.add("film.manifest", "release");
    let b = net.start_on(&sofa, "b", &args(&[])).trusting(&publisher);
    let entry = wait_for_entry(&b, &a);
    assert!(
        entry["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|addr| text(addr).contains(&desk.ip().to_string())),
        "over the LAN: {entry}"
    );
    let got = b.client_json(&["get", text(&created["link"]), "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert!(b.metric("licet_mdns_peers_found_total") >= 1.0);

    // With --no-mdns a third node in the same home finds nobody, while the other two go on
    // finding each other (they answered each other within seconds above).
    let c = net.start_on(&attic, "c", &args(&["--no-mdns"]));
    std::thread::sleep(Duration::from_secs(10));
    let peers = c.client_json(&["peers"]);
    assert_eq!(peers["peers"], Value::Array(Vec::new()), "{peers}");
    assert!(a.peer_entry(c.peer_id()).is_none());
    let network = network(&c);
    assert_eq!(network["mdns"], false, "{network}");
}
