//! One address or one peer must not take a node down: real daemons on loopback against a flood
//! of idle TCP sockets from one address, against hundreds of authenticated peers from the
//! addresses of one or a few networks, and against a peer that fills the DHT store with
//! provider records. What each test asserts is what a user sees: an honest node connects and
//! fetches, another node finds the seeder as a provider, `/metrics` counts what was refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::Ipv4Addr, time::Duration};

use licet_tests::{
    TestNet, assert_same_file, create,
    hostile::{HostilePeer, dht::flood_key},
    peer_flood::PeerFlood,
    pseudo_random_bytes,
    socket_flood::{IdleSocketFlood, established_tcp},
    text, wait_for,
};
use serde_json::Value;

/// Idle sockets the flood keeps open: more than the node's 128 pending connections in all.
const FLOOD_SOCKETS: usize = 160;
/// The one address the flood comes from.
const FLOOD_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How long the flood may take to open its sockets.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(30);

/// The TCP port of a `/ip4/…/tcp/<port>/…` address.
fn tcp_port(addr: &str) -> u16 {
    let mut parts = addr.split('/');
    parts
        .find(|p| *p == "tcp")
        .and_then(|_| parts.next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no TCP port in {addr}"))
}

#[test]
fn idle_sockets_from_one_address_do_not_keep_an_honest_node_out() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(300_000, 5));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let seeder = net.start("seeder", &[]).trusting(&publisher);
    let added = seeder.add("film.manifest", "release");
    assert_eq!(added["state"], "complete", "{added}");
    let port = tcp_port(seeder.addr());

    let flood = IdleSocketFlood::start(
        FLOOD_FROM,
        (Ipv4Addr::LOCALHOST, port).into(),
        FLOOD_SOCKETS,
    );
    wait_for(
        &format!("{FLOOD_SOCKETS} idle sockets to connect"),
        FLOOD_TIMEOUT,
        Duration::from_millis(20),
        || (flood.connected() >= FLOOD_SOCKETS as u64).then_some(()),
    );

    wait_for(
        &format!("the flood's sockets to show in the kernel's table as from {FLOOD_FROM}"),
        FLOOD_TIMEOUT,
        Duration::from_millis(20),
        || (established_tcp(FLOOD_FROM, port) > 0).then_some(()),
    );

    // An honest node (its dials come from 127.0.0.1) joins and fetches while the flood goes on.
    let honest = net
        .start_joined("honest", &seeder, &[])
        .trusting(&publisher);
    assert!(
        established_tcp(Ipv4Addr::LOCALHOST, port) >= 1,
        "the honest node's connection to the seeder comes from 127.0.0.1"
    );
    let got = honest.client_json(&["get", text(&created["link"]), "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_eq!(got["error"], Value::Null, "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );

    // The flood was refused past its share, and is still going.
    assert!(
        seeder.metric("licet_connections_refused_total{limit=\"pending_per_address\"}") > 0.0,
        "the seeder counts the sockets it refused"
    );
    assert!(
        flood.connected() > FLOOD_SOCKETS as u64,
        "the flood kept reconnecting"
    );
}

/// How long a flood of peers may take to connect (each a Noise handshake on a busy machine).
const PEER_FLOOD_TIMEOUT: Duration = Duration::from_secs(180);
/// One network's share of a node's inbound connections (`MAX_ESTABLISHED_INBOUND_PER_SUBNET`).
const INBOUND_PER_SUBNET: u64 = 192;
/// A node's inbound connections in all (`MAX_INBOUND_CONNECTIONS`).
const INBOUND_IN_ALL: u64 = 384;

/// Waits until every peer of `flood` has connected or been refused.
fn wait_settled(flood: &PeerFlood, what: &str) {
    wait_for(
        &format!("{what} to connect or be refused"),
        PEER_FLOOD_TIMEOUT,
        Duration::from_millis(100),
        || flood.settled().then_some(()),
    );
}

#[test]
fn hundreds_of_peer_ids_from_one_network_do_not_keep_an_honest_node_out() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(300_000, 6));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let seeder = net.start("seeder", &[]).trusting(&publisher);
    let added = seeder.add("film.manifest", "release");
    assert_eq!(added["state"], "complete", "{added}");

    // 520 peer ids from four addresses of 127.0.1.0/24, 130 from each (before: each address
    // had its 128, and together they held all 512 of the seeder's connection slots).
    let from: Vec<Ipv4Addr> = (1..=4).map(|host| Ipv4Addr::new(127, 0, 1, host)).collect();
    let flood = PeerFlood::start(&from, 130, seeder.addr());
    wait_settled(&flood, "520 peers from one network");

    // An honest node (its dials come from 127.0.0.1, another network) connects and fetches.
    let honest = net.start("honest", &[]).trusting(&publisher);
    let link = format!("{}?peer={}", text(&created["link"]), seeder.addr());
    let got = honest.client_json(&["get", &link, "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got} ({})", flood.report());
    assert_eq!(got["error"], Value::Null, "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );

    assert!(
        flood.open() <= INBOUND_PER_SUBNET,
        "the flood holds {} connections, more than one network's share",
        flood.open()
    );
    assert!(
        seeder.metric("licet_connections_refused_total{limit=\"established_per_subnet\"}")
            >= (520 - INBOUND_PER_SUBNET) as f64,
        "the seeder counts the peers it refused past the network's share ({})",
        flood.report()
    );
}

#[test]
fn peers_filling_every_inbound_slot_do_not_stop_a_node_dialling_the_seeder_it_fetches_from() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(300_000, 7));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let seeder = net.start("seeder", &[]).trusting(&publisher);
    let added = seeder.add("film.manifest", "release");
    assert_eq!(added["state"], "complete", "{added}");
    let downloader = net.start("downloader", &[]).trusting(&publisher);

    // 600 peer ids from two addresses in each of three networks connect to the downloader
    // (before: they held all 512 of its connection slots, and it could dial no one).
    let from: Vec<Ipv4Addr> = (1..=3)
        .flat_map(|net| (1..=2).map(move |host| Ipv4Addr::new(127, 0, net, host)))
        .collect();
    let flood = PeerFlood::start(&from, 100, downloader.addr());
    wait_settled(&flood, "600 peers from three networks");

    // The downloader dials the seeder it is pointed to, and fetches.
    let link = format!("{}?peer={}", text(&created["link"]), seeder.addr());
    let got = downloader.client_json(&["get", &link, "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got} ({})", flood.report());
    assert_eq!(got["error"], Value::Null, "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert!(
        flood.open() <= INBOUND_IN_ALL,
        "the flood holds {} connections, more than the inbound slots",
        flood.open()
    );
    assert!(
        downloader.metric("licet_connections_refused_total{limit=\"inbound_total\"}") > 0.0,
        "the downloader counts the peers it refused past its inbound slots ({})",
        flood.report()
    );
}

/// Provider records one peer floods a seeder with: more keys than the whole store of the old
/// node held (256 Ki), far more than one peer's share.
const FLOODED_RECORDS: u64 = 256 * 1024 + 1024;
/// One peer's share of the seeder's provider store (`MAX_PROVIDER_RECORDS_PER_PEER`).
const PROVIDER_RECORDS_PER_PEER: u64 = 8 * 1024;
/// How long the seeder may take to handle the flood.
const DHT_FLOOD_TIMEOUT: Duration = Duration::from_secs(240);

/// The 32 bytes of a manifest id given as hex.
fn id_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_peer_that_floods_the_dht_store_does_not_stop_the_seeder_announcing_its_content() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(50_000, 9));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let id = text(&created["manifest_id"]);
    let seeder = net.start("seeder", &[]).trusting(&publisher);

    let hostile = HostilePeer::requester();
    hostile.dial(seeder.addr()).unwrap();
    hostile.flood_provider_records(seeder.peer_id(), FLOODED_RECORDS, DHT_FLOOD_TIMEOUT);
    // Another peer asks the seeder, as a node looking for content does.
    let client = HostilePeer::requester();
    client.dial(seeder.addr()).unwrap();
    let providers_of = |key: &[u8]| -> Vec<String> {
        let held = client.providers_held_by(seeder.peer_id(), key);
        held.iter().map(ToString::to_string).collect()
    };
    assert_eq!(
        providers_of(&flood_key(0)),
        [hostile.peer_id()],
        "the seeder keeps the flooding peer's first records"
    );
    assert_eq!(
        providers_of(&flood_key(FLOODED_RECORDS - 1)),
        Vec::<String>::new(),
        "the seeder does not keep its last ones"
    );
    assert_eq!(
        seeder.metric("licet_dht_provider_records_refused_total{limit=\"per_peer\"}"),
        (FLOODED_RECORDS - PROVIDER_RECORDS_PER_PEER) as f64,
        "every record past the peer's share is refused"
    );

    // The seeder adds content after the flood, and still announces it: a DHT lookup of the
    // manifest id at the seeder names the seeder.
    let added = seeder.add("film.manifest", "release");
    assert_eq!(added["state"], "complete", "{added}");
    let key = id_bytes(id);
    wait_for(
        "the seeder to name itself as a provider of its content",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            providers_of(&key)
                .contains(&seeder.peer_id().to_owned())
                .then_some(())
        },
    );
    // And an honest node that joins finds it and fetches.
    let honest = net
        .start_joined("honest", &seeder, &[])
        .trusting(&publisher);
    let got = honest.client_json(&["get", text(&created["link"]), "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
}
