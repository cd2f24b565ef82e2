//! Bootstrap peers as a user gives them: a multiaddr with `/p2p/<peer id>`, a multiaddr without
//! one, or `HOST:PORT`.
//!
//! [`BootstrapAddr`] parses all three into a multiaddr (`HOST:PORT` is TCP; a host name is
//! resolved once, when the address is parsed, and its first address is used). A bootstrap
//! address that names its peer goes straight into the DHT's routing table. One that does not
//! is dialled, and the peer id comes from the connection's handshake (TLS or Noise
//! authenticate the peer's key): [`BootstrapDials`] keeps such addresses until a dial of theirs
//! connects, then hands back the peer to add, with the address completed by `/p2p/<id>`; the
//! peer's own listen addresses follow from Identify on that connection. An address whose dial
//! failed is dialled again at the next bootstrap round.
//!
//! Invariant: an address is in at most one of the two states (waiting, or being dialled), and
//! one learned is never dialled again by this part.

use std::{
    collections::HashMap,
    net::{SocketAddr, ToSocketAddrs as _},
    str::FromStr,
};

use libp2p::{
    Multiaddr, PeerId,
    multiaddr::Protocol,
    swarm::{ConnectionId, DialError, dial_opts::DialOpts},
};
use tracing::{debug, info, warn};

/// A bootstrap address as given on the command line, in `config.toml` or `LICET_BOOTSTRAP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapAddr(Multiaddr);

/// Why a bootstrap address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BootstrapAddrError {
    /// Neither a multiaddr nor `HOST:PORT`.
    #[error("not a multiaddr (/ip4/192.0.2.7/tcp/4610) nor HOST:PORT (192.0.2.7:4610)")]
    Unreadable,
    /// `HOST:PORT` whose host does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Unresolved {
        /// The host as given.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
}

impl BootstrapAddr {
    /// The address as a multiaddr (with `/p2p/<id>` only if it was given one).
    pub fn into_multiaddr(self) -> Multiaddr {
        self.0
    }
}

impl FromStr for BootstrapAddr {
    type Err = BootstrapAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.starts_with('/') {
            return text
                .parse::<Multiaddr>()
                .map(BootstrapAddr)
                .map_err(|_| BootstrapAddrError::Unreadable);
        }
        let socket = match text.parse::<SocketAddr>() {
            Ok(socket) => socket,
            Err(_) => {
                let (host, port) = text
                    .rsplit_once(':')
                    .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                    .ok_or(BootstrapAddrError::Unreadable)?;
                let port = port
                    .parse::<u16>()
                    .map_err(|_| BootstrapAddrError::Unreadable)?;
                let unresolved = |reason: String| BootstrapAddrError::Unresolved {
                    host: host.to_owned(),
                    reason,
                };
                (host, port)
                    .to_socket_addrs()
                    .map_err(|e| unresolved(e.to_string()))?
                    .next()
                    .ok_or_else(|| unresolved("no address".to_owned()))?
            }
        };
        let ip = match socket.ip() {
            std::net::IpAddr::V4(ip) => Protocol::Ip4(ip),
            std::net::IpAddr::V6(ip) => Protocol::Ip6(ip),
        };
        Ok(BootstrapAddr(
            Multiaddr::empty()
                .with(ip)
                .with(Protocol::Tcp(socket.port())),
        ))
    }
}

/// Bootstrap addresses without a peer id, until a dial of each connects (see the module docs).
#[derive(Debug, Default)]
pub(super) struct BootstrapDials {
    /// Addresses to dial at the next round.
    waiting: Vec<Multiaddr>,
    /// Dials in flight, each with its address.
    dialing: HashMap<ConnectionId, Multiaddr>,
}

impl BootstrapDials {
    /// Addresses without a peer id, to be dialled.
    pub(super) fn new(addrs: Vec<Multiaddr>) -> BootstrapDials {
        BootstrapDials {
            waiting: addrs,
            dialing: HashMap::new(),
        }
    }

    /// Takes every waiting address; the caller dials each and reports it with [`Self::dialing`]
    /// or, when the dial could not start, [`Self::failed_to_start`].
    pub(super) fn take_waiting(&mut self) -> Vec<Multiaddr> {
        std::mem::take(&mut self.waiting)
    }

    /// `addr` is being dialled on `connection`.
    pub(super) fn dialing(&mut self, connection: ConnectionId, addr: Multiaddr) {
        self.dialing.insert(connection, addr);
    }

    /// A dial of `addr` could not start: it waits for the next round.
    pub(super) fn failed_to_start(&mut self, addr: Multiaddr) {
        self.waiting.push(addr);
    }

    /// `connection` reached `peer`: if it was a bootstrap dial, the address with `/p2p/<peer>`.
    pub(super) fn connected(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
    ) -> Option<Multiaddr> {
        self.dialing
            .remove(&connection)
            .map(|addr| addr.with(Protocol::P2p(peer)))
    }

    /// `connection` failed: if it was a bootstrap dial, its address (dialled again next round).
    pub(super) fn failed(&mut self, connection: ConnectionId) -> Option<Multiaddr> {
        let addr = self.dialing.remove(&connection)?;
        self.waiting.push(addr.clone());
        Some(addr)
    }
}

impl super::EventLoop {
    /// Dials every bootstrap address that waits for its peer id.
    pub(super) fn dial_bootstrap_addrs(&mut self) {
        for addr in self.bootstrap_dials.take_waiting() {
            let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
            let connection = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.bootstrap_dials.dialing(connection, addr),
                Err(e) => {
                    warn!(%addr, "cannot dial bootstrap address: {}", cause_chain(&e));
                    self.bootstrap_dials.failed_to_start(addr);
                }
            }
        }
    }

    /// A bootstrap dial reached its peer: it joins the routing table, and the DHT is joined
    /// through it.
    pub(super) fn on_bootstrap_connected(&mut self, connection: ConnectionId, peer: PeerId) {
        let Some(addr) = self.bootstrap_dials.connected(connection, peer) else {
            return;
        };
        info!(%addr, "bootstrap peer {peer} found");
        let kad = &mut self.swarm.behaviour_mut().kad;
        kad.add_address(&peer, addr);
        if let Err(e) = kad.bootstrap() {
            debug!("bootstrap skipped: {e}");
        }
    }

    /// A bootstrap dial failed: said once, and dialled again at the next round.
    pub(super) fn on_bootstrap_failed(&mut self, connection: ConnectionId, error: &DialError) {
        if let Some(addr) = self.bootstrap_dials.failed(connection) {
            warn!(%addr, "cannot reach bootstrap address (tried again in 5 minutes): {}", cause_chain(error));
        }
    }
}

/// `error` and each of its sources, joined by `: ` (libp2p's transport errors print nothing
/// of their own and keep the reason in their source).
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<String, BootstrapAddrError> {
        text.parse::<BootstrapAddr>()
            .map(|a| a.into_multiaddr().to_string())
    }

    #[test]
    fn host_and_port_become_a_tcp_multiaddr() {
        assert_eq!(parsed("192.0.2.7:4610").unwrap(), "/ip4/192.0.2.7/tcp/4610");
        assert_eq!(parsed("[::1]:4611").unwrap(), "/ip6/::1/tcp/4611");
        assert!(parsed("localhost:4612").unwrap().ends_with("/tcp/4612"));
    }

    #[test]
    fn multiaddrs_are_kept_as_given_with_or_without_a_peer_id() {
        let with_id =
            "/ip4/192.0.2.7/tcp/4610/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        assert_eq!(parsed(with_id).unwrap(), with_id);
        assert_eq!(
            parsed("/ip4/192.0.2.7/udp/4610/quic-v1").unwrap(),
            "/ip4/192.0.2.7/udp/4610/quic-v1"
        );
    }

    #[test]
    fn other_text_is_refused_with_what_is_expected() {
        for bad in ["192.0.2.7", "192.0.2.7:port", ":4610", "/ip4/nope", "4610"] {
            let error = parsed(bad).unwrap_err();
            assert_eq!(error, BootstrapAddrError::Unreadable, "{bad}");
        }
        assert!(
            BootstrapAddrError::Unreadable
                .to_string()
                .contains("HOST:PORT")
        );
    }

    #[test]
    fn a_dial_that_connects_names_the_peer_and_one_that_fails_waits_again() {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4610".parse().unwrap();
        let mut dials = BootstrapDials::new(vec![addr.clone()]);
        let first = ConnectionId::new_unchecked(1);
        for taken in dials.take_waiting() {
            dials.dialing(first, taken);
        }
        assert!(dials.take_waiting().is_empty());
        assert_eq!(dials.failed(first), Some(addr.clone()));
        let second = ConnectionId::new_unchecked(2);
        for taken in dials.take_waiting() {
            dials.dialing(second, taken);
        }
        let peer = PeerId::random();
        assert_eq!(
            dials.connected(second, peer),
            Some(addr.with(Protocol::P2p(peer)))
        );
        assert!(dials.take_waiting().is_empty());
        assert_eq!(dials.connected(ConnectionId::new_unchecked(3), peer), None);
    }
}
