//! Bootstrap peers as a user gives them: a multiaddr with `/p2p/<peer id>`, a multiaddr without
//! one, or `HOST:PORT`.
//!
//! [`BootstrapAddr`] parses all three into a multiaddr (`HOST:PORT` is TCP; a host name is
//! resolved once, when the address is parsed, and its first address is used). A bootstrap
//! address that names its peer also goes straight into the DHT's routing table. Every bootstrap
//! address is dialled by [`BootstrapDials`] until a dial of it connects; for one without a peer
//! id, the peer id comes from the connection's handshake (TLS or Noise authenticate the peer's
//! key), and the address completed by `/p2p/<id>` joins the routing table; the peer's own
//! listen addresses follow from Identify on that connection. A dial that fails is tried again
//! after [`FIRST_RETRY`], doubled after each failure in a row up to [`BOOTSTRAP_ROUND`]: a
//! node whose first dial fails (the peer busy, the network not up yet) joins as soon as the
//! peer answers, not a round later.
//!
//! Invariants: an address is in at most one of the two states (waiting, or being dialled), and
//! one that connected is never dialled again by this part; a retry is due only while an
//! address waits.

use std::{
    collections::HashMap,
    net::{SocketAddr, ToSocketAddrs as _},
    str::FromStr,
    time::Duration,
};

use libp2p::{
    Multiaddr, PeerId,
    multiaddr::Protocol,
    swarm::{ConnectionId, DialError, dial_opts::DialOpts},
};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The wait before a failed bootstrap dial is tried again the first time; each failure in a
/// row doubles it, up to [`BOOTSTRAP_ROUND`].
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(1);

/// How often the DHT is bootstrapped again, and the longest wait before a failed bootstrap
/// dial is tried again.
pub(super) const BOOTSTRAP_ROUND: Duration = Duration::from_secs(300);

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

/// Bootstrap addresses, until a dial of each connects (see the module docs).
#[derive(Debug, Default)]
pub(super) struct BootstrapDials {
    /// Addresses to dial at the next round or retry.
    waiting: Vec<Multiaddr>,
    /// Dials in flight, each with its address.
    dialing: HashMap<ConnectionId, Multiaddr>,
    /// Dials failed in a row since one last connected: sets the wait before the next retry.
    failures_in_a_row: u32,
    /// When the waiting addresses are dialled again, before the next round.
    retry_at: Option<Instant>,
}

impl BootstrapDials {
    /// The bootstrap addresses, to be dialled.
    pub(super) fn new(addrs: Vec<Multiaddr>) -> BootstrapDials {
        BootstrapDials {
            waiting: addrs,
            ..BootstrapDials::default()
        }
    }

    /// Takes every waiting address; the caller dials each and reports it with [`Self::dialing`]
    /// or, when the dial could not start, [`Self::failed_to_start`].
    pub(super) fn take_waiting(&mut self) -> Vec<Multiaddr> {
        self.retry_at = None;
        std::mem::take(&mut self.waiting)
    }

    /// Whether the last bootstrap dial failed (and none connected since).
    pub(super) fn retrying(&self) -> bool {
        self.failures_in_a_row > 0
    }

    /// When waiting addresses are due to be dialled again, if before the next round.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
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
        let addr = self.dialing.remove(&connection)?;
        self.failures_in_a_row = 0;
        Some(match addr.iter().last() {
            Some(Protocol::P2p(_)) => addr,
            _ => addr.with(Protocol::P2p(peer)),
        })
    }

    /// `connection` failed at `now`: if it was a bootstrap dial, its address and how long until
    /// it is dialled again.
    pub(super) fn failed(
        &mut self,
        connection: ConnectionId,
        now: Instant,
    ) -> Option<(Multiaddr, Duration)> {
        let addr = self.dialing.remove(&connection)?;
        self.waiting.push(addr.clone());
        let wait = FIRST_RETRY
            .saturating_mul(1 << self.failures_in_a_row.min(16))
            .min(BOOTSTRAP_ROUND);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let at = now + wait;
        if self.retry_at.is_none_or(|due| at < due) {
            self.retry_at = Some(at);
        }
        Some((addr, wait))
    }
}

impl super::EventLoop {
    /// Dials every bootstrap address that waits (one ending in `/p2p/<id>` must reach that
    /// peer). After a failure the dials take a port of their own: a dial from the listen port
    /// (libp2p's default, for hole punching) whose address pair is still held by an earlier
    /// connection fails with "Address already in use" every time (measured: 3 of 300 nodes on
    /// one machine never joined).
    pub(super) fn dial_bootstrap_addrs(&mut self) {
        let new_port = self.bootstrap_dials.retrying();
        for addr in self.bootstrap_dials.take_waiting() {
            let dial = DialOpts::unknown_peer_id().address(addr.clone());
            let opts = if new_port {
                dial.allocate_new_port().build()
            } else {
                dial.build()
            };
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

    /// A bootstrap dial failed: said, and dialled again after a wait (see the module docs).
    pub(super) fn on_bootstrap_failed(&mut self, connection: ConnectionId, error: &DialError) {
        if let Some((addr, wait)) = self.bootstrap_dials.failed(connection, Instant::now()) {
            warn!(
                %addr,
                "cannot reach bootstrap address (tried again in {} s): {}",
                wait.as_secs(),
                cause_chain(error)
            );
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
        assert!(!dials.retrying(), "the first dial reuses the listen port");
        let now = Instant::now();
        assert_eq!(dials.failed(first, now), Some((addr.clone(), FIRST_RETRY)));
        assert_eq!(dials.retry_at(), Some(now + FIRST_RETRY));
        assert!(dials.retrying(), "a retry takes a port of its own");
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
        assert_eq!(dials.retry_at(), None, "nothing waits, so no retry is due");
        assert!(!dials.retrying());
        assert_eq!(dials.connected(ConnectionId::new_unchecked(3), peer), None);
    }

    /// Found when an honest node's one bootstrap dial failed under load: it stayed alone until
    /// the next round, 5 minutes later. A failed dial is retried after 1 s, then 2 s, 4 s, …,
    /// never later than a round, and a dial that connects starts the waits over.
    #[test]
    fn failed_dials_are_retried_sooner_than_a_round_and_back_off() {
        let peer = PeerId::random();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4610/p2p/{peer}")
            .parse()
            .unwrap();
        let mut dials = BootstrapDials::new(vec![addr.clone()]);
        let now = Instant::now();
        let mut waits = Vec::new();
        for n in 0..12 {
            let connection = ConnectionId::new_unchecked(n);
            for taken in dials.take_waiting() {
                dials.dialing(connection, taken);
            }
            let (failed, wait) = dials.failed(connection, now).unwrap();
            assert_eq!(failed, addr);
            assert_eq!(dials.retry_at(), Some(now + wait));
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        let connection = ConnectionId::new_unchecked(100);
        for taken in dials.take_waiting() {
            dials.dialing(connection, taken);
        }
        // An address that names its peer is handed back as it is.
        assert_eq!(dials.connected(connection, peer), Some(addr.clone()));
        dials.failed_to_start(addr.clone());
        for taken in dials.take_waiting() {
            dials.dialing(ConnectionId::new_unchecked(101), taken);
        }
        let (_, wait) = dials.failed(ConnectionId::new_unchecked(101), now).unwrap();
        assert_eq!(wait, FIRST_RETRY, "a connection started the waits over");
    }
}
