//! Which peers count as on this node's LAN, for `lan_exempt`.
//!
//! A peer is on the LAN when every connection to it is to an address that is loopback, or that is
//! private (10/8, 172.16/12, 192.168/16, IPv6 fc00::/7) or link-local (169.254/16, fe80::/10)
//! and inside the subnet of one of this node's own network interfaces. A private address on a
//! network the node is not on (a VPN peer, a carrier's NAT range) is not the LAN. Connections
//! through a relay are never the LAN.

use std::net::IpAddr;

use libp2p::{Multiaddr, multiaddr::Protocol};

/// One of this node's own subnets: an interface address and its netmask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    addr: IpAddr,
    netmask: IpAddr,
}

impl Subnet {
    /// The subnet of `addr` under `netmask` (both of one family).
    pub fn new(addr: IpAddr, netmask: IpAddr) -> Subnet {
        Subnet { addr, netmask }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, self.netmask, ip) {
            (IpAddr::V4(a), IpAddr::V4(m), IpAddr::V4(ip)) => {
                u32::from(a) & u32::from(m) == u32::from(ip) & u32::from(m)
            }
            (IpAddr::V6(a), IpAddr::V6(m), IpAddr::V6(ip)) => {
                u128::from(a) & u128::from(m) == u128::from(ip) & u128::from(m)
            }
            _ => false,
        }
    }
}

/// This node's interfaces' subnets now (none if they cannot be listed).
pub fn own_subnets() -> Vec<Subnet> {
    if_addrs::get_if_addrs()
        .map(|interfaces| {
            interfaces
                .into_iter()
                .map(|interface| match interface.addr {
                    if_addrs::IfAddr::V4(v4) => {
                        Subnet::new(IpAddr::V4(v4.ip), IpAddr::V4(v4.netmask))
                    }
                    if_addrs::IfAddr::V6(v6) => {
                        Subnet::new(IpAddr::V6(v6.ip), IpAddr::V6(v6.netmask))
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `ip` is private or link-local.
fn private_or_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

/// Whether a connection to `addr` is on the LAN (see the module docs).
pub fn is_lan_address(addr: &Multiaddr, subnets: &[Subnet]) -> bool {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return false;
    }
    let ip = match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => IpAddr::V4(ip),
        Some(Protocol::Ip6(ip)) => IpAddr::V6(ip),
        _ => return false,
    };
    ip.is_loopback() || (private_or_link_local(ip) && subnets.iter().any(|s| s.contains(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_addresses_on_our_own_subnets_are_the_lan() {
        let subnets = [
            Subnet::new([192, 168, 1, 20].into(), [255, 255, 255, 0].into()),
            Subnet::new([203, 0, 113, 5].into(), [255, 255, 255, 0].into()),
        ];
        let lan = |text: &str| is_lan_address(&text.parse().unwrap(), &subnets);
        assert!(lan("/ip4/192.168.1.7/tcp/4610"));
        assert!(lan("/ip4/127.0.0.1/udp/4610/quic-v1"));
        assert!(lan("/ip6/::1/tcp/4610"));
        assert!(!lan("/ip4/192.168.2.7/tcp/4610"), "private, not our subnet");
        assert!(!lan("/ip4/10.0.0.7/tcp/4610"), "private, not our subnet");
        assert!(!lan("/ip4/203.0.113.9/tcp/4610"), "our subnet, but public");
        assert!(!lan(
            "/ip4/192.168.1.7/tcp/4610/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
        ));
        let v6 = [Subnet::new(
            "fd00:1::5".parse().unwrap(),
            "ffff:ffff:ffff:ffff::".parse().unwrap(),
        )];
        assert!(is_lan_address(
            &"/ip6/fd00:1::9/tcp/1".parse().unwrap(),
            &v6
        ));
        assert!(!is_lan_address(
            &"/ip6/fd00:2::9/tcp/1".parse().unwrap(),
            &v6
        ));
    }
}
