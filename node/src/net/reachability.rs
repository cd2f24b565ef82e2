//! Whether other nodes can dial this one, and what counts as a public address.
//!
//! A node behind a home router cannot be dialled: AutoNAT asks connected peers to dial this
//! node back at the address they see it at (and its listen addresses at that IP) and learns
//! whether that works. The event loop keeps the verdict
//! here ([`Reachability`]) and acts on it: a node found unreachable serves the DHT no more
//! (Kademlia client mode), reserves a slot on a public peer's relay and advertises the relayed
//! address, so others reach it through the relay and then directly after a hole punch (DCUtR).
//!
//! Invariants:
//! - only a *public* address ([`PublicRanges::is_public`]: globally routable, or inside a range
//!   the operator named, such as a partner's enterprise network or a lab's) is ever trusted as
//!   this node's external address or taken as a relay's; a loopback or private address that
//!   AutoNAT confirms (it does, on one machine or a LAN) is no verdict and is dropped again;
//! - the verdict is AutoNAT's last one that counts: `Public` with the address a peer dialled,
//!   `Private` when peers could not dial back, `Unknown` before any probe (and for a node that
//!   listens only on loopback, which does not probe).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use serde::{Deserialize, Serialize};

/// A block of IP addresses, `ADDRESS/PREFIX` (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

/// Why a range could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an address range like 10.0.0.0/8 or fd00::/8: {reason}")]
pub struct AddressRangeError {
    text: String,
    reason: &'static str,
}

impl FromStr for AddressRange {
    type Err = AddressRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| AddressRangeError {
            text: text.to_owned(),
            reason,
        };
        let (address, prefix) = text.trim().split_once('/').ok_or(error("no /PREFIX"))?;
        let network: IpAddr = address.parse().map_err(|_| error("not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| error("the prefix is not a number"))?;
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return Err(error("the prefix is longer than the address"));
        }
        if mask(network, prefix) != network {
            return Err(error("bits are set past the prefix"));
        }
        Ok(AddressRange { network, prefix })
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl AddressRange {
    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (ip, self.network) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

/// `ip` with every bit past `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & kept))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & kept))
        }
    }
}

/// Which addresses count as public: every globally routable one, and the ranges named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicRanges {
    extra: Vec<AddressRange>,
}

impl PublicRanges {
    /// Globally routable addresses and `extra`.
    pub fn new(extra: Vec<AddressRange>) -> PublicRanges {
        PublicRanges { extra }
    }

    /// Whether `ip` is public.
    pub fn is_public_ip(&self, ip: IpAddr) -> bool {
        is_global(ip) || self.extra.iter().any(|range| range.contains(ip))
    }

    /// Whether `addr` is a direct (not relayed) address at a public IP.
    pub fn is_public(&self, addr: &Multiaddr) -> bool {
        !is_relayed(addr) && ip_of(addr).is_some_and(|ip| self.is_public_ip(ip))
    }
}

/// The IP address `addr` starts with, if any.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// Whether `addr` goes through a relay (`/p2p-circuit`).
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether `ip` is routable on the internet (none of the special-purpose blocks of RFC 6890 and
/// its successors: private, shared, loopback, link-local, documentation, benchmarking,
/// multicast, reserved; IPv6 unique-local too).
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_global(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// Whether other nodes can dial this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// No public address has been tested yet.
    #[default]
    Unknown,
    /// A public address of this node was dialled back by a peer.
    Public,
    /// Every public address tested failed: the node is behind a NAT or a firewall.
    Private,
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        })
    }
}

/// What the node knows of its reachability (kept by the event loop).
#[derive(Debug, Default)]
pub struct ReachabilityState {
    reachability: Reachability,
    /// The public address a peer dialled back, while public.
    public_addr: Option<Multiaddr>,
    /// Relays holding a reservation for this node, with the relayed address.
    reservations: BTreeMap<PeerId, Multiaddr>,
}

impl ReachabilityState {
    /// The verdict (see the module docs).
    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// A peer dialled this node back at the public address `addr`.
    pub fn public(&mut self, addr: Multiaddr) {
        self.reachability = Reachability::Public;
        self.public_addr = Some(addr);
    }

    /// Peers could not dial this node back.
    pub fn private(&mut self) {
        self.reachability = Reachability::Private;
        self.public_addr = None;
    }

    /// No verdict (AutoNAT lost confidence).
    pub fn unknown(&mut self) {
        self.reachability = Reachability::Unknown;
        self.public_addr = None;
    }

    /// The public address peers dialled back, while public.
    pub fn public_addrs(&self) -> impl Iterator<Item = &Multiaddr> {
        self.public_addr.iter()
    }

    /// `relay` holds a reservation for this node at `addr`.
    pub fn reserved(&mut self, relay: PeerId, addr: Multiaddr) {
        self.reservations.insert(relay, addr);
    }

    /// `relay`'s reservation is gone; whether it held one.
    pub fn reservation_lost(&mut self, relay: &PeerId) -> bool {
        self.reservations.remove(relay).is_some()
    }

    /// Whether `relay` holds a reservation.
    pub fn has_reservation(&self, relay: &PeerId) -> bool {
        self.reservations.contains_key(relay)
    }

    /// The relayed addresses others can reach this node at.
    pub fn relayed_addrs(&self) -> impl Iterator<Item = &Multiaddr> {
        self.reservations.values()
    }

    /// How many relays hold a reservation.
    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_contain() {
        let range: AddressRange = "172.31.0.0/16".parse().unwrap();
        assert!(range.contains("172.31.4.5".parse().unwrap()));
        assert!(!range.contains("172.32.0.1".parse().unwrap()));
        assert!(!range.contains("::1".parse().unwrap()));
        let v6: AddressRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert_eq!(v6.to_string(), "fd00::/8");
        let all: AddressRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "ten/8",
            "10.0.0.0/x",
            "",
        ] {
            let err = bad.parse::<AddressRange>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn only_routable_addresses_and_named_ranges_are_public() {
        let none = PublicRanges::default();
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(none.is_public_ip(public.parse().unwrap()), "{public}");
        }
        for special in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.251",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!none.is_public_ip(special.parse().unwrap()), "{special}");
        }
        let lab = PublicRanges::new(vec!["172.31.0.0/16".parse().unwrap()]);
        assert!(lab.is_public(&"/ip4/172.31.0.11/tcp/4610".parse().unwrap()));
        assert!(!lab.is_public(&"/ip4/192.168.1.10/tcp/4610".parse().unwrap()));
        assert!(
            !lab.is_public(
                &"/ip4/172.31.0.11/tcp/4610/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
                    .parse()
                    .unwrap()
            ),
            "a relayed address is not a public address of this node"
        );
        assert!(!lab.is_public(&"/dns4/example.com/tcp/1".parse().unwrap()));
    }

    #[test]
    fn the_verdict_and_the_reservations_are_kept() {
        let mut state = ReachabilityState::default();
        assert_eq!(state.reachability(), Reachability::Unknown);
        let a: Multiaddr = "/ip4/172.31.0.11/tcp/1".parse().unwrap();
        state.public(a.clone());
        assert_eq!(state.reachability(), Reachability::Public);
        assert_eq!(state.public_addrs().collect::<Vec<_>>(), [&a]);
        state.private();
        assert_eq!(state.reachability(), Reachability::Private);
        assert_eq!(state.public_addrs().count(), 0);
        let relay = PeerId::random();
        let relayed: Multiaddr = format!("{a}/p2p/{relay}/p2p-circuit").parse().unwrap();
        state.reserved(relay, relayed.clone());
        assert!(state.has_reservation(&relay));
        assert_eq!(state.relayed_addrs().collect::<Vec<_>>(), [&relayed]);
        assert!(state.reservation_lost(&relay));
        assert!(!state.reservation_lost(&relay));
        assert_eq!(state.reservation_count(), 0);
    }
}
