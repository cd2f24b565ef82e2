//! The event loop's handling of connections and reachability: which connections are open and
//! through what, what AutoNAT learns, relay reservations for a node that cannot be dialled,
//! and peers found on the LAN.
//!
//! Invariants (on top of [`super::reachability`]'s):
//! - a peer reached both directly and through a relay keeps only the direct connection: the
//!   relayed one is closed as soon as a direct one exists (a hole punch succeeded, or either side
//!   dialled), so transfer streams, which go over any connection to the peer, never cross a
//!   relay once a direct path exists;
//! - chunks never cross a relay: a session (the transfer stream) is opened only once a direct
//!   connection exists ([`super::Network::wait_direct`]); a peer reached only through a relay
//!   whose hole punch fails is skipped. A peer that asks this node for chunks over a relay is
//!   bounded by the relay itself (a circuit carries 128 KiB at most);
//! - a node asks for relay reservations only while it is [`Reachability::Private`], only of
//!   connected peers that offer a relay at a public address and listen through no relay
//!   themselves, and at most
//!   [`super::MAX_RELAY_RESERVATIONS`] at a time (pending or accepted); a relay whose listener or
//!   connection closes is forgotten, its relayed address given out no more, and another is asked;
//! - Kademlia serves the DHT (server mode) unless the node is found private: peers could not
//!   dial it back to ask.

use libp2p::{Multiaddr, PeerId, autonat, kad, multiaddr::Protocol, swarm::ConnectionId};
use tracing::{debug, info, warn};

use super::{EventLoop, MAX_RELAY_RESERVATIONS, Reachability, is_relayed};

impl EventLoop {
    /// A connection to `peer` at `addr` is up.
    pub(super) fn on_connection(&mut self, peer: PeerId, id: ConnectionId, addr: Multiaddr) {
        let relayed = is_relayed(&addr);
        if relayed {
            self.counters.reachability.relayed_connections.inc();
        }
        let connections = self.connections.entry(peer).or_default();
        connections.insert(id, addr);
        if !relayed {
            for waiter in self.direct_waiters.remove(&peer).unwrap_or_default() {
                let _ = waiter.send(());
            }
            let connections = self.connections.entry(peer).or_default();
            let through_relays: Vec<ConnectionId> = connections
                .iter()
                .filter(|(_, addr)| is_relayed(addr))
                .map(|(id, _)| *id)
                .collect();
            for relayed in through_relays {
                debug!(%peer, "a direct connection replaces the relayed one");
                self.swarm.close_connection(relayed);
            }
        }
    }

    /// Whether a direct (not relayed) connection to `peer` is open.
    pub(super) fn is_direct(&self, peer: &PeerId) -> bool {
        self.connections
            .get(peer)
            .is_some_and(|connections| connections.values().any(|addr| !is_relayed(addr)))
    }

    /// A connection to `peer` is gone.
    pub(super) fn on_connection_closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(connections) = self.connections.get_mut(&peer) {
            connections.remove(&id);
            if connections.is_empty() {
                self.connections.remove(&peer);
                self.contacts.disconnected(&peer);
                self.direct_waiters.remove(&peer);
                self.relays.remove(&peer);
                if self.relay_listeners.contains_key(&peer) {
                    info!(relay = %peer, "connection to the relay lost");
                    self.forget_relay(peer);
                }
            }
        }
    }

    /// Identify says `peer` offers a relay and listens on `listen_addrs`. A peer that listens
    /// through a relay itself is behind a NAT (libp2p's relay server advertises itself as soon
    /// as the node has any external address, a relayed one too): it is no relay for this node.
    pub(super) fn on_relay_found(&mut self, peer: PeerId, listen_addrs: &[Multiaddr]) {
        if listen_addrs.iter().any(is_relayed) {
            self.relays.remove(&peer);
            return;
        }
        let Some(mut addr) = self.connections.get(&peer).and_then(|connections| {
            connections
                .values()
                .find(|addr| self.public_ranges.is_public(addr))
                .cloned()
        }) else {
            return;
        };
        // A dialled address ends in the peer's id; the circuit address names it once.
        if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
            addr.pop();
        }
        self.relays.insert(peer, addr);
        self.seek_relays();
    }

    /// AutoNAT's verdict changed.
    pub(super) fn on_nat_status(&mut self, status: autonat::v1::NatStatus) {
        let before = self.reachability.reachability();
        match status {
            autonat::v1::NatStatus::Public(addr) if self.public_ranges.is_public(&addr) => {
                self.reachability.public(addr);
            }
            autonat::v1::NatStatus::Public(addr) => {
                debug!(%addr, "dialled back at an address that is not public; ignored");
                return;
            }
            autonat::v1::NatStatus::Private => self.reachability.private(),
            autonat::v1::NatStatus::Unknown => self.reachability.unknown(),
        }
        let now = self.reachability.reachability();
        if now != before {
            info!(reachability = %now, "reachability changed");
            self.apply_reachability(now);
        }
    }

    /// Acts on a new verdict: DHT mode, the gauge, relay reservations (sought while private,
    /// given back once public).
    fn apply_reachability(&mut self, reachability: Reachability) {
        self.counters
            .reachability
            .publicly_reachable
            .set(i64::from(reachability == Reachability::Public));
        let mode = match reachability {
            Reachability::Private => kad::Mode::Client,
            Reachability::Public | Reachability::Unknown => kad::Mode::Server,
        };
        self.swarm.behaviour_mut().kad.set_mode(Some(mode));
        if reachability == Reachability::Public {
            // A node others can dial needs no relay (an earlier verdict may have been private):
            // its reservations are given back and their addresses given out no more.
            let relays: Vec<PeerId> = self.relay_listeners.keys().copied().collect();
            for relay in relays {
                self.forget_relay(relay);
            }
        }
        self.seek_relays();
    }

    /// While private, asks known relays for reservations up to the bound.
    fn seek_relays(&mut self) {
        if self.reachability.reachability() != Reachability::Private {
            return;
        }
        let wanted = MAX_RELAY_RESERVATIONS.saturating_sub(self.relay_listeners.len());
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .relays
            .iter()
            .filter(|(peer, _)| !self.relay_listeners.contains_key(peer))
            .map(|(peer, addr)| (*peer, addr.clone()))
            .take(wanted)
            .collect();
        for (relay, addr) in candidates {
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    debug!(%relay, "asking for a relay reservation");
                    self.relay_listeners.insert(relay, (listener, circuit));
                }
                Err(e) => warn!(%relay, %circuit, "cannot ask for a relay reservation: {e:?}"),
            }
        }
    }

    /// `relay` accepted (or renewed) this node's reservation.
    pub(super) fn on_reservation(&mut self, relay: PeerId) {
        let Some((_, circuit)) = self.relay_listeners.get(&relay) else {
            return;
        };
        if self.reachability.has_reservation(&relay) {
            return; // a renewal
        }
        let own = *self.swarm.local_peer_id();
        let addr = circuit.clone().with(Protocol::P2p(own));
        info!(%relay, %addr, "relay reservation accepted: reachable through the relay");
        self.swarm.add_external_address(addr.clone());
        self.reachability.reserved(relay, addr);
        self.update_reservation_gauge();
        // Provider records carry the addresses to dial this node at: the relayed one is new.
        self.announce_all_again();
    }

    /// A listener closed: if it was a relay's, that relay is asked no more.
    pub(super) fn on_listener_gone(&mut self, listener: libp2p::core::transport::ListenerId) {
        let relay = self
            .relay_listeners
            .iter()
            .find(|(_, (id, _))| *id == listener)
            .map(|(relay, _)| *relay);
        if let Some(relay) = relay {
            debug!(%relay, "relay reservation refused or ended");
            self.relays.remove(&relay);
            self.forget_relay(relay);
        }
    }

    /// Drops everything about `relay`'s reservation (its address is given out no more) and asks
    /// another relay.
    fn forget_relay(&mut self, relay: PeerId) {
        if let Some((listener, _)) = self.relay_listeners.remove(&relay) {
            self.swarm.remove_listener(listener);
        }
        if let Some(addr) = self
            .reachability
            .relayed_addrs()
            .find(|a| a.iter().any(|p| p == Protocol::P2p(relay)))
            .cloned()
        {
            self.swarm.remove_external_address(&addr);
        }
        self.reachability.reservation_lost(&relay);
        self.update_reservation_gauge();
        self.seek_relays();
    }

    /// mDNS found peers on the LAN: they join the routing table and are dialled.
    pub(super) fn on_mdns(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        for (peer, addr) in found {
            if peer == *self.swarm.local_peer_id() {
                continue;
            }
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            if self.swarm.is_connected(&peer) {
                continue;
            }
            self.counters.reachability.mdns_discovered.inc();
            info!(%peer, %addr, "found on the LAN");
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%peer, "cannot dial a peer found on the LAN: {e}");
            }
        }
    }

    fn update_reservation_gauge(&self) {
        self.counters
            .reachability
            .relay_reservations
            .set(i64::try_from(self.reachability.reservation_count()).unwrap_or(i64::MAX));
    }
}
