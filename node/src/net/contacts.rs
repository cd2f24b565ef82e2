//! Where other peers can be reached, for peer exchange (`wire.rs` "Peer exchange"): the
//! addresses each connected peer says it listens on (Identify), to hand to peers that ask, and
//! the addresses other peers handed to this node, to dial a peer the DHT does not know yet.
//!
//! Invariants:
//! - a peer's own addresses are kept only while it is connected, at most [`MAX_ADDRS`] of them,
//!   public and relayed ones first (the ones another node can use);
//! - addresses learned from other peers are hints: at most [`MAX_LEARNED_PEERS`] peers (the
//!   oldest learned is forgotten first) and [`MAX_ADDRS`] addresses each, whatever peers send;
//!   dialling one still proves the peer id in the handshake.

use std::collections::{HashMap, VecDeque};

use libp2p::{Multiaddr, PeerId};

use super::reachability::{PublicRanges, is_relayed};

/// Most addresses kept per peer, its own or learned.
pub const MAX_ADDRS: usize = 8;
/// Most peers whose learned addresses are kept.
pub const MAX_LEARNED_PEERS: usize = 1024;

/// See the module docs.
#[derive(Default)]
pub struct Contacts {
    /// What each connected peer said it listens on.
    listening: HashMap<PeerId, Vec<Multiaddr>>,
    /// Addresses other peers gave for a peer, and the order they were learned in.
    learned: HashMap<PeerId, Vec<Multiaddr>>,
    learned_order: VecDeque<PeerId>,
}

impl Contacts {
    /// `peer` (connected) says it listens on `addrs`.
    pub fn identified(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, public: &PublicRanges) {
        self.listening.insert(peer, most_useful(addrs, public));
    }

    /// `peer`'s last connection closed.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.listening.remove(peer);
    }

    /// The addresses `peer` said it listens on (empty if it did not say, or is not connected).
    pub fn listening(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.listening.get(peer).cloned().unwrap_or_default()
    }

    /// Another peer says `peer` can be reached at `addrs`.
    pub fn learn(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, public: &PublicRanges) {
        if addrs.is_empty() {
            return;
        }
        if self
            .learned
            .insert(peer, most_useful(addrs, public))
            .is_none()
        {
            self.learned_order.push_back(peer);
            while self.learned_order.len() > MAX_LEARNED_PEERS {
                if let Some(oldest) = self.learned_order.pop_front() {
                    self.learned.remove(&oldest);
                }
            }
        }
    }

    /// The addresses other peers gave for `peer`.
    pub fn learned(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.learned.get(peer).cloned().unwrap_or_default()
    }
}

/// At most [`MAX_ADDRS`] of `addrs`, without repeats: public addresses first, then relayed
/// ones, then the rest (loopback, private: useful only to a peer on the same host or network).
fn most_useful(mut addrs: Vec<Multiaddr>, public: &PublicRanges) -> Vec<Multiaddr> {
    addrs.sort_by_key(|addr| {
        if public.is_public(addr) {
            0
        } else if is_relayed(addr) {
            1
        } else {
            2
        }
    });
    let mut kept: Vec<Multiaddr> = Vec::new();
    for addr in addrs {
        if kept.len() == MAX_ADDRS {
            break;
        }
        if !kept.contains(&addr) {
            kept.push(addr);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn public_and_relayed_addresses_come_first_and_the_list_is_bounded() {
        let public = PublicRanges::default();
        let relay = PeerId::random();
        let mut addrs = vec![
            addr("/ip4/127.0.0.1/tcp/1"),
            addr("/ip4/192.168.1.10/tcp/1"),
            addr(&format!("/ip4/8.8.8.8/tcp/4610/p2p/{relay}/p2p-circuit")),
            addr("/ip4/8.8.4.4/tcp/1"),
            addr("/ip4/8.8.4.4/tcp/1"),
        ];
        for port in 2..20 {
            addrs.push(addr(&format!("/ip4/10.0.0.1/tcp/{port}")));
        }
        let mut contacts = Contacts::default();
        let peer = PeerId::random();
        contacts.identified(peer, addrs, &public);
        let kept = contacts.listening(&peer);
        assert_eq!(kept.len(), MAX_ADDRS);
        assert_eq!(kept[0], addr("/ip4/8.8.4.4/tcp/1"));
        assert!(is_relayed(&kept[1]), "{kept:?}");
        assert_eq!(kept.iter().filter(|a| **a == kept[0]).count(), 1);
        contacts.disconnected(&peer);
        assert!(contacts.listening(&peer).is_empty());
    }

    #[test]
    fn learned_addresses_are_kept_for_a_bounded_number_of_peers() {
        let public = PublicRanges::default();
        let mut contacts = Contacts::default();
        let first = PeerId::random();
        contacts.learn(first, vec![addr("/ip4/8.8.8.8/tcp/1")], &public);
        assert_eq!(contacts.learned(&first), vec![addr("/ip4/8.8.8.8/tcp/1")]);
        // Learning again replaces the addresses, not the place in the order.
        contacts.learn(first, vec![addr("/ip4/8.8.8.8/tcp/2")], &public);
        assert_eq!(contacts.learned(&first), vec![addr("/ip4/8.8.8.8/tcp/2")]);
        let others: Vec<PeerId> = (0..MAX_LEARNED_PEERS).map(|_| PeerId::random()).collect();
        for peer in &others {
            contacts.learn(*peer, vec![addr("/ip4/8.8.8.8/tcp/3")], &public);
        }
        assert!(
            contacts.learned(&first).is_empty(),
            "the oldest is forgotten"
        );
        assert_eq!(contacts.learned.len(), MAX_LEARNED_PEERS);
        assert!(!contacts.learned(&others[0]).is_empty());
        // Nothing to learn from an empty list.
        let nobody = PeerId::random();
        contacts.learn(nobody, Vec::new(), &public);
        assert!(contacts.learned(&nobody).is_empty());
    }
}
