//! The network lab itself (`licet_tests::lab`): namespaces that behave as the internet and as
//! homes behind NAT routers, with real `licet-node` daemons inside, and nothing left behind.
//!
//! Needs root (network namespaces) and `ip`, `nft`, `tc`; under CI a machine without them fails
//! these tests (`.ci/run` installs iproute2 and nftables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use licet_tests::{
    TestNet, count, create,
    lab::{Caps, Host, Lab, Nat},
    pseudo_random_bytes, text,
};
use serde_json::Value;

/// The address (as the far end sees it) from which `from` reaches a TCP listener on `to`.
fn tcp_source_seen(from: &Host, to: &Host) -> SocketAddr {
    let listener = to.run_inside(|| TcpListener::bind((to.ip(), 0)).unwrap());
    let addr = listener.local_addr().unwrap();
    let mut client = from.run_inside(|| {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{} cannot reach {addr}: {e}", from.name()))
    });
    client.write_all(b"x").unwrap();
    let (mut accepted, seen) = listener.accept().unwrap();
    let mut byte = [0; 1];
    accepted.read_exact(&mut byte).unwrap();
    seen
}

/// The source port each of `targets` sees for datagrams from one UDP socket on `from`, which
/// they must see come from `public_ip`.
fn udp_ports_seen(from: &Host, public_ip: Ipv4Addr, targets: &[&Host]) -> Vec<u16> {
    let socket = from.run_inside(|| UdpSocket::bind((from.ip(), 0)).unwrap());
    targets
        .iter()
        .map(|target| {
            let receiver = target.run_inside(|| UdpSocket::bind((target.ip(), 0)).unwrap());
            receiver
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            socket
                .send_to(b"hello", receiver.local_addr().unwrap())
                .unwrap();
            let mut buf = [0; 16];
            let (_, seen) = receiver
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("nothing reached {}: {e}", target.name()));
            assert_eq!(seen.ip(), std::net::IpAddr::V4(public_ip));
            seen.port()
        })
        .collect()
}

#[test]
fn a_home_router_translates_outgoing_connections_and_refuses_incoming_ones() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let server = lab.public_host("server");
    let other = lab.public_host("other");
    let home = lab.home("home", Nat::Cone);
    let laptop = lab.home_host(&home, "laptop");

    // Out: the server sees the router's public address, not the laptop's private one.
    let seen = tcp_source_seen(&laptop, &server);
    assert_eq!(seen.ip(), std::net::IpAddr::V4(home.public_ip()));

    // In: nothing from the internet reaches the laptop or the router itself, even from a host
    // that routes the home's private network to the router (as an ISP's neighbour could).
    let route = server
        .command("ip")
        .args(["route", "add", "192.168.1.0/24", "via"])
        .arg(home.public_ip().to_string())
        .status()
        .unwrap();
    assert!(route.success());
    let listener = laptop.run_inside(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap());
    let port = listener.local_addr().unwrap().port();
    for target in [
        SocketAddr::from((laptop.ip(), port)),
        SocketAddr::from((home.public_ip(), port)),
    ] {
        let reached =
            server.run_inside(|| TcpStream::connect_timeout(&target, Duration::from_secs(2)));
        assert!(
            reached.is_err(),
            "the internet reached {target} in the home"
        );
    }

    // Public hosts reach each other.
    let seen = tcp_source_seen(&other, &server);
    assert_eq!(seen.ip(), std::net::IpAddr::V4(other.ip()));
}

#[test]
fn a_cone_nat_keeps_one_public_port_per_socket_and_a_symmetric_one_does_not() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let one = lab.public_host("one");
    let two = lab.public_host("two");
    let cone = lab.home("cone", Nat::Cone);
    let symmetric = lab.home("sym", Nat::Symmetric);
    let behind_cone = lab.home_host(&cone, "c1");
    let behind_symmetric = lab.home_host(&symmetric, "s1");

    let ports = udp_ports_seen(&behind_cone, cone.public_ip(), &[&one, &two]);
    assert_eq!(ports[0], ports[1], "a cone NAT maps one socket to one port");
    // A fully random mapping could pick the same port twice by chance (about 1 in 28,000 per
    // pair); three destinations all on one port would be a cone NAT.
    let three = lab.public_host("three");
    let ports = udp_ports_seen(
        &behind_symmetric,
        symmetric.public_ip(),
        &[&one, &two, &three],
    );
    assert!(
        !(ports[0] == ports[1] && ports[1] == ports[2]),
        "a symmetric NAT maps each destination to another port: {ports:?}"
    );
}

#[test]
fn a_node_behind_a_home_router_fetches_from_a_public_seed_through_a_capped_link() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let net = TestNet::new();
    let w = net.work();
    let public = lab.public_host("seed");
    let home = lab.home("home", Nat::Cone);
    let laptop = lab.home_host(&home, "laptop");
    lab.cap(
        &laptop,
        Caps {
            up_kbit: 8_000,
            down_kbit: 32_000,
        },
    );

    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(3_000_000, 21));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let seed = net.start_on(&public, "seed", &[]).trusting(&publisher);
    seed.add("film.manifest", "release");
    let user = net
        .start_on(&laptop, "user", &["--bootstrap", seed.addr()])
        .trusting(&publisher);
    assert!(seed.addr().contains(&public.ip().to_string()));
    assert!(user.addr().contains(&laptop.ip().to_string()));

    let got = user.client_json(&["get", text(&created["link"]), "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_eq!(got["refused"], Value::Null, "{got}");
    assert_eq!(count(&got["total_bytes"]), 3_000_000, "{got}");
    licet_tests::assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert!(seed.metric("licet_bytes_out_total") >= 3_000_000.0);
}

#[test]
fn a_dropped_lab_leaves_no_namespace_behind() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let home = lab.home("home", Nat::Cone);
    let host = lab.home_host(&home, "laptop");
    let public = lab.public_host("server");
    let names = [host.namespace().to_owned(), public.namespace().to_owned()];
    for name in &names {
        assert!(
            std::path::Path::new("/run/netns").join(name).exists(),
            "{name}"
        );
    }
    drop(lab);
    for name in &names {
        assert!(
            !std::path::Path::new("/run/netns").join(name).exists(),
            "{name} is left behind"
        );
    }
}
