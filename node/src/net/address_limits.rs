//! Bounds on inbound connections per remote IP address and per subnet, and on inbound
//! connections in all, so that one address or one network cannot keep honest peers out, and
//! inbound peers cannot keep this node from dialling the peers it fetches from.
//!
//! `connection_limits` bounds connections in all (`MAX_PENDING_CONNECTIONS` being set up,
//! `MAX_CONNECTIONS` established); on its own it lets one address take every slot: a host that
//! opens ~140 idle TCP sockets holds all pending slots for as long as the handshake deadline,
//! and one host with 512 fresh peer ids holds every established slot, so that an honest node
//! cannot connect and this node cannot dial out. This behaviour sits before `connection_limits`
//! in the swarm and denies an inbound connection when its remote IP already has:
//!
//! - [`MAX_PENDING_INBOUND_PER_IP`] connections still in their handshake, or its subnet (IPv4
//!   /24, IPv6 /48: what one operator typically holds) [`MAX_PENDING_INBOUND_PER_SUBNET`]
//!   (checked when the socket is accepted, before any byte is read), or
//! - [`MAX_ESTABLISHED_INBOUND_PER_IP`] established inbound connections, or its subnet
//!   [`MAX_ESTABLISHED_INBOUND_PER_SUBNET`], or when the node has [`MAX_INBOUND_CONNECTIONS`]
//!   established inbound connections in all (checked when the handshake is done, whatever peer
//!   ids the host presents).
//!
//! Outbound connections are not bounded here: this node chooses whom it dials (the providers
//! it fetches from, DHT lookups, bootstrap peers), and since inbound ones may hold at most
//! [`MAX_INBOUND_CONNECTIONS`] of `MAX_CONNECTIONS`, the rest is always left for those dials.
//!
//! Invariants: a connection is counted under its IP and its subnet from the moment it is
//! allowed until the swarm reports it gone (handshake failed or timed out, denied by another
//! behaviour, closed), and never under two; counts of zero are removed, so the tables hold only
//! addresses and subnets with a live connection (at most `MAX_PENDING_CONNECTIONS` +
//! `MAX_CONNECTIONS` entries each). IPv4-mapped IPv6 addresses count as the IPv4 address.
//! Loopback addresses get no exemption. Connections whose remote address has no IP (none today:
//! TCP and QUIC only) are bounded only by `connection_limits`.
//!
//! Each denial is counted in [`Refused`] (shown in `/metrics`) and logged at debug level.

use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{ConnectedPoint, Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished,
        behaviour::ListenFailure, dummy,
    },
};
use prometheus_client::metrics::counter::Counter;
use tracing::debug;

/// Most inbound connections from one IP address still in their handshake: a quarter of
/// `MAX_PENDING_CONNECTIONS` (128), so a flood of idle sockets from one address leaves three
/// quarters of the handshake slots to everyone else. A node dials a peer once, but many nodes
/// behind one NAT (a carrier-grade NAT puts many users behind one IPv4 address) may all
/// connect to a popular seed at the same moment.
pub const MAX_PENDING_INBOUND_PER_IP: usize = 32;

/// Most established inbound connections from one IP address: a quarter of `MAX_CONNECTIONS`
/// (512), so one address with many fresh peer ids leaves three quarters to everyone else. It is
/// loose on purpose, for the same NATs (64 nodes with two connections each fit).
pub const MAX_ESTABLISHED_INBOUND_PER_IP: usize = 128;

/// Most inbound connections from one subnet still in their handshake: half of
/// `MAX_PENDING_CONNECTIONS` (128), twice what one address may hold, so a few addresses of one
/// network cannot hold every handshake slot.
pub const MAX_PENDING_INBOUND_PER_SUBNET: usize = 64;

/// Most established inbound connections in all: three quarters of `MAX_CONNECTIONS` (512), so
/// that 128 are always left for the connections this node dials itself (the providers it
/// fetches from, DHT lookups, bootstrap peers), however many peers connect to it.
pub const MAX_INBOUND_CONNECTIONS: usize = 384;

/// Most established inbound connections from one subnet (IPv4 /24, IPv6 /48): half of
/// [`MAX_INBOUND_CONNECTIONS`], one and a half times what one address may hold. Hundreds of
/// peer ids from the addresses of one network leave the other half to everyone else; it
/// takes three networks to fill the inbound slots, and none can touch the slots kept for
/// this node's own dials.
pub const MAX_ESTABLISHED_INBOUND_PER_SUBNET: usize = 192;

/// Why an inbound connection was denied (the cause inside the swarm's `ListenError::Denied`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddressLimitExceeded {
    /// The address has its share of connections in their handshake.
    #[error("{ip} already has {limit} connections in their handshake, the most one address may")]
    Pending {
        /// The remote address.
        ip: IpAddr,
        /// The bound it reached.
        limit: usize,
    },
    /// The address has its share of established connections.
    #[error("{ip} already has {limit} established connections, the most one address may")]
    Established {
        /// The remote address.
        ip: IpAddr,
        /// The bound it reached.
        limit: usize,
    },
    /// The address's subnet has its share of connections in their handshake.
    #[error(
        "{ip}'s network {subnet} already has {limit} connections in their handshake, the most \
         one network may"
    )]
    PendingSubnet {
        /// The remote address.
        ip: IpAddr,
        /// Its subnet.
        subnet: Subnet,
        /// The bound it reached.
        limit: usize,
    },
    /// The address's subnet has its share of established connections.
    #[error(
        "{ip}'s network {subnet} already has {limit} established connections, the most one \
         network may"
    )]
    EstablishedSubnet {
        /// The remote address.
        ip: IpAddr,
        /// Its subnet.
        subnet: Subnet,
        /// The bound it reached.
        limit: usize,
    },
    /// The node has its most inbound connections; the rest are kept for its own dials.
    #[error(
        "{limit} peers are connected to this node already, the most it takes; the other slots \
         are kept for the peers it dials"
    )]
    Inbound {
        /// The bound it reached.
        limit: usize,
    },
}

/// The network an address belongs to for these bounds: its IPv4 /24 or IPv6 /48 (the
/// address with the host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet(IpAddr);

impl Subnet {
    /// The subnet of `ip` (IPv4-mapped IPv6 addresses as IPv4).
    pub fn of(ip: IpAddr) -> Subnet {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Subnet(IpAddr::V4(Ipv4Addr::new(a, b, c, 0)))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Subnet(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0)))
            }
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}/24"),
            IpAddr::V6(v6) => write!(f, "{v6}/48"),
        }
    }
}

/// The bounds one behaviour enforces (the constants above in the node; smaller in tests).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most inbound connections per IP in their handshake.
    pub pending_per_ip: usize,
    /// Most established inbound connections per IP.
    pub established_per_ip: usize,
    /// Most inbound connections per subnet in their handshake.
    pub pending_per_subnet: usize,
    /// Most established inbound connections per subnet.
    pub established_per_subnet: usize,
    /// Most established inbound connections in all.
    pub inbound: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pending_per_ip: MAX_PENDING_INBOUND_PER_IP,
            established_per_ip: MAX_ESTABLISHED_INBOUND_PER_IP,
            pending_per_subnet: MAX_PENDING_INBOUND_PER_SUBNET,
            established_per_subnet: MAX_ESTABLISHED_INBOUND_PER_SUBNET,
            inbound: MAX_INBOUND_CONNECTIONS,
        }
    }
}

/// Connections denied, by the bound they met (clones share their counts).
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// Denied because their address had [`Limits::pending_per_ip`] handshakes going.
    pub pending: Counter,
    /// Denied because their address had [`Limits::established_per_ip`] connections.
    pub established: Counter,
    /// Denied because their subnet had [`Limits::pending_per_subnet`] handshakes going.
    pub pending_subnet: Counter,
    /// Denied because their subnet had [`Limits::established_per_subnet`] connections.
    pub established_subnet: Counter,
    /// Denied because the node had [`Limits::inbound`] inbound connections.
    pub inbound: Counter,
}

/// How many live connections each key (an IP address or a subnet) has.
#[derive(Debug)]
struct Tally<K> {
    counts: HashMap<K, usize>,
}

impl<K: Hash + Eq + Copy> Tally<K> {
    fn new() -> Self {
        Tally {
            counts: HashMap::new(),
        }
    }

    fn get(&self, key: &K) -> usize {
        self.counts.get(key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: K) {
        *self.counts.entry(key).or_insert(0) += 1;
    }

    fn remove(&mut self, key: &K) {
        if let Some(count) = self.counts.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(key);
            }
        }
    }
}

/// The behaviour (see the module docs).
pub struct Behaviour {
    limits: Limits,
    /// Inbound connections in their handshake, and the IP each is counted under.
    pending: HashMap<ConnectionId, IpAddr>,
    /// Established inbound connections, and the IP each is counted under.
    established: HashMap<ConnectionId, IpAddr>,
    pending_per_ip: Tally<IpAddr>,
    established_per_ip: Tally<IpAddr>,
    pending_per_subnet: Tally<Subnet>,
    established_per_subnet: Tally<Subnet>,
    refused: Refused,
}

impl Behaviour {
    /// A behaviour enforcing `limits`, counting denials in `refused`.
    pub fn new(limits: Limits, refused: Refused) -> Behaviour {
        Behaviour {
            limits,
            pending: HashMap::new(),
            established: HashMap::new(),
            pending_per_ip: Tally::new(),
            established_per_ip: Tally::new(),
            pending_per_subnet: Tally::new(),
            established_per_subnet: Tally::new(),
            refused,
        }
    }

    fn forget_pending(&mut self, connection_id: &ConnectionId) {
        if let Some(ip) = self.pending.remove(connection_id) {
            self.pending_per_ip.remove(&ip);
            self.pending_per_subnet.remove(&Subnet::of(ip));
        }
    }

    /// Why a handshake from `ip` may not start now, if it may not.
    fn deny_pending(&self, ip: IpAddr) -> Option<(AddressLimitExceeded, &Counter)> {
        let subnet = Subnet::of(ip);
        if self.pending_per_ip.get(&ip) >= self.limits.pending_per_ip {
            let limit = self.limits.pending_per_ip;
            Some((
                AddressLimitExceeded::Pending { ip, limit },
                &self.refused.pending,
            ))
        } else if self.pending_per_subnet.get(&subnet) >= self.limits.pending_per_subnet {
            let limit = self.limits.pending_per_subnet;
            Some((
                AddressLimitExceeded::PendingSubnet { ip, subnet, limit },
                &self.refused.pending_subnet,
            ))
        } else {
            None
        }
    }

    /// Why a connection from `ip` may not be established now, if it may not.
    fn deny_established(&self, ip: IpAddr) -> Option<(AddressLimitExceeded, &Counter)> {
        let subnet = Subnet::of(ip);
        if self.established_per_ip.get(&ip) >= self.limits.established_per_ip {
            let limit = self.limits.established_per_ip;
            Some((
                AddressLimitExceeded::Established { ip, limit },
                &self.refused.established,
            ))
        } else if self.established_per_subnet.get(&subnet) >= self.limits.established_per_subnet {
            let limit = self.limits.established_per_subnet;
            Some((
                AddressLimitExceeded::EstablishedSubnet { ip, subnet, limit },
                &self.refused.established_subnet,
            ))
        } else if self.established.len() >= self.limits.inbound {
            let limit = self.limits.inbound;
            Some((
                AddressLimitExceeded::Inbound { limit },
                &self.refused.inbound,
            ))
        } else {
            None
        }
    }
}

/// The IP address a multiaddr starts from, IPv4-mapped IPv6 as IPv4.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|protocol| match protocol {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip).to_canonical()),
        _ => None,
    })
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote_addr) else {
            return Ok(());
        };
        if let Some((denied, counter)) = self.deny_pending(ip) {
            counter.inc();
            debug!(%remote_addr, "inbound connection denied: {denied}");
            return Err(ConnectionDenied::new(denied));
        }
        self.pending.insert(connection_id, ip);
        self.pending_per_ip.add(ip);
        self.pending_per_subnet.add(Subnet::of(ip));
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.forget_pending(&connection_id);
        let Some(ip) = ip_of(remote_addr) else {
            return Ok(dummy::ConnectionHandler);
        };
        if let Some((denied, counter)) = self.deny_established(ip) {
            counter.inc();
            debug!(%peer, %remote_addr, "inbound connection denied: {denied}");
            return Err(ConnectionDenied::new(denied));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // Counted only once every behaviour has allowed it (as `connection_limits` does).
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                connection_id,
                endpoint: ConnectedPoint::Listener { send_back_addr, .. },
                ..
            }) => {
                if let Some(ip) = ip_of(send_back_addr) {
                    self.established.insert(connection_id, ip);
                    self.established_per_ip.add(ip);
                    self.established_per_subnet.add(Subnet::of(ip));
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some(ip) = self.established.remove(&connection_id) {
                    self.established_per_ip.remove(&ip);
                    self.established_per_subnet.remove(&Subnet::of(ip));
                }
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget_pending(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use libp2p::swarm::ListenError;

    use super::*;

    const LOCAL: &str = "/ip4/127.0.0.1/tcp/4610";

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    /// Drives the behaviour as the swarm does, with small bounds.
    struct Driver {
        behaviour: Behaviour,
        refused: Refused,
        next_id: usize,
    }

    impl Driver {
        /// Bounds per IP only (the others out of reach).
        fn new(pending_per_ip: usize, established_per_ip: usize) -> Driver {
            Driver::with(Limits {
                pending_per_ip,
                established_per_ip,
                pending_per_subnet: usize::MAX,
                established_per_subnet: usize::MAX,
                inbound: usize::MAX,
            })
        }

        fn with(limits: Limits) -> Driver {
            let refused = Refused::default();
            Driver {
                behaviour: Behaviour::new(limits, refused.clone()),
                refused,
                next_id: 0,
            }
        }

        /// A connection from `remote` accepted and established: whether it is allowed.
        fn connect(&mut self, remote: &str) -> Option<ConnectionId> {
            let id = self.accept(remote)?;
            self.establish(id, remote).then_some(id)
        }

        /// A connection this node dialled to `remote`, established: whether it is allowed.
        fn dial(&mut self, remote: &str) -> bool {
            self.next_id += 1;
            let id = ConnectionId::new_unchecked(self.next_id);
            let peer = PeerId::random();
            if self
                .behaviour
                .handle_established_outbound_connection(
                    id,
                    peer,
                    &addr(remote),
                    Endpoint::Dialer,
                    PortUse::Reuse,
                )
                .is_err()
            {
                return false;
            }
            let endpoint = ConnectedPoint::Dialer {
                address: addr(remote),
                role_override: Endpoint::Dialer,
                port_use: PortUse::Reuse,
            };
            self.behaviour
                .on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                    peer_id: peer,
                    connection_id: id,
                    endpoint: &endpoint,
                    failed_addresses: &[],
                    other_established: 0,
                }));
            true
        }

        /// A socket accepted from `remote`: its id if allowed.
        fn accept(&mut self, remote: &str) -> Option<ConnectionId> {
            self.next_id += 1;
            let id = ConnectionId::new_unchecked(self.next_id);
            match self
                .behaviour
                .handle_pending_inbound_connection(id, &addr(LOCAL), &addr(remote))
            {
                Ok(()) => Some(id),
                Err(denied) => {
                    self.fail(id, remote, ListenError::Denied { cause: denied });
                    None
                }
            }
        }

        /// The handshake of `id` from `remote` failed or timed out.
        fn fail(&mut self, id: ConnectionId, remote: &str, error: ListenError) {
            self.behaviour
                .on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
                    local_addr: &addr(LOCAL),
                    send_back_addr: &addr(remote),
                    error: &error,
                    connection_id: id,
                    peer_id: None,
                }));
        }

        /// The handshake of `id` from `remote` finished: whether the connection is allowed.
        fn establish(&mut self, id: ConnectionId, remote: &str) -> bool {
            let peer = PeerId::random();
            match self.behaviour.handle_established_inbound_connection(
                id,
                peer,
                &addr(LOCAL),
                &addr(remote),
            ) {
                Ok(_) => {
                    let endpoint = listener(remote);
                    self.behaviour
                        .on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                            peer_id: peer,
                            connection_id: id,
                            endpoint: &endpoint,
                            failed_addresses: &[],
                            other_established: 0,
                        }));
                    true
                }
                Err(denied) => {
                    self.fail(id, remote, ListenError::Denied { cause: denied });
                    false
                }
            }
        }

        fn close(&mut self, id: ConnectionId, remote: &str) {
            let endpoint = listener(remote);
            self.behaviour
                .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                    peer_id: PeerId::random(),
                    connection_id: id,
                    endpoint: &endpoint,
                    cause: None,
                    remaining_established: 0,
                }));
        }
    }

    fn listener(remote: &str) -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: addr(LOCAL),
            send_back_addr: addr(remote),
        }
    }

    fn from(ip: &str, port: u16) -> String {
        format!("/ip4/{ip}/tcp/{port}")
    }

    #[test]
    fn idle_sockets_from_one_address_hold_only_its_pending_share() {
        let mut driver = Driver::new(8, 32);
        let held: Vec<_> = (0..140)
            .filter_map(|port| driver.accept(&from("10.0.0.1", 1000 + port)))
            .collect();
        assert_eq!(held.len(), 8);
        assert_eq!(driver.refused.pending.get(), 132);
        // Another address still gets its handshakes through, and they finish.
        for port in 0..8 {
            let remote = from("10.0.0.2", 2000 + port);
            let id = driver
                .accept(&remote)
                .expect("another address is not held back");
            assert!(driver.establish(id, &remote));
        }
        assert_eq!(driver.refused.established.get(), 0);
    }

    #[test]
    fn a_handshake_that_fails_or_finishes_frees_its_pending_slot() {
        let mut driver = Driver::new(2, 32);
        let remote = from("10.0.0.1", 1);
        let first = driver.accept(&remote).unwrap();
        let second = driver.accept(&remote).unwrap();
        assert!(driver.accept(&remote).is_none());
        driver.fail(first, &remote, ListenError::Aborted);
        let third = driver
            .accept(&remote)
            .expect("a timed-out handshake frees its slot");
        assert!(driver.establish(second, &remote));
        assert!(driver.accept(&remote).is_some());
        assert!(driver.accept(&remote).is_none());
        assert!(driver.establish(third, &remote));
        assert!(driver.behaviour.pending.len() == 1 && driver.behaviour.established.len() == 2);
    }

    #[test]
    fn established_connections_per_address_are_bounded_and_freed_on_close() {
        let mut driver = Driver::new(8, 3);
        let remote = from("10.0.0.1", 1);
        let mut open = Vec::new();
        for _ in 0..3 {
            let id = driver.accept(&remote).unwrap();
            assert!(driver.establish(id, &remote));
            open.push(id);
        }
        let fourth = driver.accept(&remote).unwrap();
        assert!(
            !driver.establish(fourth, &remote),
            "a fourth connection is denied"
        );
        assert_eq!(driver.refused.established.get(), 1);
        assert!(
            driver.behaviour.pending.is_empty(),
            "a denied handshake is not pending"
        );
        let other = from("10.0.0.2", 1);
        let id = driver.accept(&other).unwrap();
        assert!(
            driver.establish(id, &other),
            "another address is not held back"
        );
        driver.close(open[0], &remote);
        let fifth = driver.accept(&remote).unwrap();
        assert!(
            driver.establish(fifth, &remote),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn counts_drop_to_nothing_when_every_connection_is_gone() {
        let mut driver = Driver::new(4, 4);
        let remote = from("10.0.0.1", 1);
        let a = driver.accept(&remote).unwrap();
        let b = driver.accept(&remote).unwrap();
        assert!(driver.establish(a, &remote));
        driver.fail(b, &remote, ListenError::Aborted);
        driver.close(a, &remote);
        // A second report of the same connection changes nothing.
        driver.close(a, &remote);
        driver.fail(b, &remote, ListenError::Aborted);
        assert!(driver.behaviour.pending_per_ip.counts.is_empty());
        assert!(driver.behaviour.established_per_ip.counts.is_empty());
        assert!(driver.behaviour.pending_per_subnet.counts.is_empty());
        assert!(driver.behaviour.established_per_subnet.counts.is_empty());
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address() {
        let mut driver = Driver::new(1, 32);
        assert!(driver.accept("/ip4/10.0.0.1/tcp/1").is_some());
        assert!(driver.accept("/ip6/::ffff:10.0.0.1/tcp/2").is_none());
        assert!(driver.accept("/ip6/2001:db8::1/udp/3/quic-v1").is_some());
    }

    fn limits(per_ip: usize, per_subnet: usize, inbound: usize) -> Limits {
        Limits {
            pending_per_ip: per_ip,
            established_per_ip: per_ip,
            pending_per_subnet: per_subnet,
            established_per_subnet: per_subnet,
            inbound,
        }
    }

    #[test]
    fn many_addresses_of_one_subnet_hold_only_its_share() {
        let mut driver = Driver::with(limits(3, 5, 100));
        let held: Vec<_> = (1..=4)
            .flat_map(|host| (0..3).map(move |port| from(&format!("10.0.0.{host}"), port)))
            .filter_map(|remote| driver.connect(&remote))
            .collect();
        assert_eq!(
            held.len(),
            5,
            "one /24 holds its share, whatever its addresses"
        );
        assert_eq!(driver.refused.established_subnet.get(), 7);
        assert_eq!(driver.refused.established.get(), 0);
        // The next /24 is another network.
        assert!(driver.connect(&from("10.0.1.1", 1)).is_some());
        // A connection of the full subnet that closes frees its place.
        driver.close(held[0], &from("10.0.0.1", 0));
        assert!(driver.connect(&from("10.0.0.9", 1)).is_some());
        assert!(driver.connect(&from("10.0.0.9", 2)).is_none());
    }

    #[test]
    fn handshakes_from_one_subnet_hold_only_its_pending_share() {
        let mut driver = Driver::with(limits(2, 3, 100));
        let pending: Vec<_> = ["10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .enumerate()
            .filter_map(|(port, ip)| driver.accept(&from(ip, port as u16)))
            .collect();
        assert_eq!(pending.len(), 3);
        assert_eq!(driver.refused.pending.get(), 1, "the third from 10.0.0.1");
        assert_eq!(driver.refused.pending_subnet.get(), 1, "10.0.0.3");
        assert!(driver.accept(&from("10.0.1.1", 1)).is_some());
        driver.fail(pending[0], &from("10.0.0.1", 0), ListenError::Aborted);
        assert!(driver.accept(&from("10.0.0.3", 1)).is_some());
    }

    #[test]
    fn inbound_connections_leave_the_rest_to_this_nodes_own_dials() {
        let mut driver = Driver::with(limits(100, 100, 4));
        let held: Vec<_> = (1..=6)
            .filter_map(|net| driver.connect(&from(&format!("10.0.{net}.1"), 1)))
            .collect();
        assert_eq!(held.len(), 4);
        assert_eq!(driver.refused.inbound.get(), 2);
        // Dials of this node are not counted, however many.
        for host in 0..10 {
            assert!(driver.dial(&from(&format!("10.9.0.{host}"), 4610)));
        }
        assert_eq!(driver.behaviour.established.len(), 4);
        assert!(driver.connect(&from("10.0.7.1", 1)).is_none());
        driver.close(held[1], &from("10.0.2.1", 1));
        assert!(driver.connect(&from("10.0.7.1", 1)).is_some());
    }

    #[test]
    fn a_subnet_is_an_ipv4_24_or_an_ipv6_48() {
        let subnet = |ip: &str| Subnet::of(ip.parse().unwrap());
        assert_eq!(subnet("10.1.2.3"), subnet("10.1.2.250"));
        assert_ne!(subnet("10.1.2.3"), subnet("10.1.3.3"));
        assert_eq!(subnet("::ffff:10.1.2.3"), subnet("10.1.2.9"));
        assert_eq!(subnet("2001:db8:1::1"), subnet("2001:db8:1:ffff::2"));
        assert_ne!(subnet("2001:db8:1::1"), subnet("2001:db8:2::1"));
        assert_eq!(subnet("10.1.2.3").to_string(), "10.1.2.0/24");
        assert_eq!(subnet("2001:db8:1:2::3").to_string(), "2001:db8:1::/48");
        let mut driver = Driver::with(limits(100, 1, 100));
        assert!(driver.connect("/ip6/2001:db8:1::1/udp/1/quic-v1").is_some());
        assert!(
            driver
                .connect("/ip6/2001:db8:1:5::1/udp/1/quic-v1")
                .is_none()
        );
        assert!(driver.connect("/ip6/2001:db8:2::1/udp/1/quic-v1").is_some());
    }

    #[test]
    fn the_subnet_and_inbound_denials_name_the_network_and_the_bound() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let denied = AddressLimitExceeded::EstablishedSubnet {
            ip,
            subnet: Subnet::of(ip),
            limit: 192,
        };
        assert_eq!(
            denied.to_string(),
            "10.0.0.7's network 10.0.0.0/24 already has 192 established connections, the most \
             one network may"
        );
        assert_eq!(
            AddressLimitExceeded::Inbound { limit: 384 }.to_string(),
            "384 peers are connected to this node already, the most it takes; the other slots \
             are kept for the peers it dials"
        );
    }

    #[test]
    fn the_denial_names_the_address_and_the_bound() {
        let denied = AddressLimitExceeded::Pending {
            ip: "10.0.0.1".parse().unwrap(),
            limit: 8,
        };
        assert_eq!(
            denied.to_string(),
            "10.0.0.1 already has 8 connections in their handshake, the most one address may"
        );
    }
}
