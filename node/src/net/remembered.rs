//! Peers remembered across restarts: the file `peers` in the data directory.
//!
//! A node that restarts must find the swarm again even when the bootstrap peers it was given
//! are gone or have moved (churn: a bootstrap node that restarted on another port, a home node
//! that left). So the event loop writes down the addresses of the peers it is connected to
//! ([`FIRST_SAVE`] after start, then every [`SAVE_INTERVAL`]): those that said where they
//! listen, oldest connections first (they have proved themselves), at most
//! [`MAX_REMEMBERED_PEERS`]. At start the peers of the file join the DHT's routing table beside
//! the bootstrap peers: the first DHT bootstrap asks them, and Kademlia forgets those that do
//! not answer.
//!
//! The file is text, one multiaddr with `/p2p/<peer id>` per line, so a user can read it or
//! delete it (the node then starts from its bootstrap peers alone). It is written off the event
//! loop's thread by the writer the node gives ([`PeersFile`]: atomically, mode 0600, with
//! `store/atomic_file.rs`, which this layer does not import).
//!
//! Invariants: at most [`MAX_REMEMBERED_PEERS`] lines are written, and at most that many peers
//! and [`MAX_FILE_BYTES`] bytes are read, whatever the file holds; a line that is not such a
//! multiaddr is skipped (counted in one warning), never an error: the file is a hint, and
//! dialling a peer still proves its id in the handshake. Nothing is written while no peer is
//! connected, so a node that starts offline keeps the peers it knew.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use tracing::{debug, warn};

use super::EventLoop;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "peers";
/// When the connected peers are first written down after start: time for the first DHT
/// bootstrap to connect some.
pub const FIRST_SAVE: Duration = Duration::from_secs(10);
/// How often they are written down again.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// Most peers written to, and read from, the file: a routing table's nearest bucket, enough
/// that some of them are still there after a long absence.
pub const MAX_REMEMBERED_PEERS: usize = 32;
/// Most bytes read from the file (32 lines of long relayed addresses fit many times).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Where the peers are remembered, and how the file is written (atomically, privately).
#[derive(Clone)]
pub struct PeersFile {
    /// The file (`DATA_DIR/peers`).
    pub path: PathBuf,
    /// Writes the whole file so that readers see the old one or the new one.
    pub write: fn(&Path, &[u8]) -> io::Result<()>,
}

/// The peers in the file at `path`, each with the address to dial it at (see the module docs).
/// A missing file is no peer; one that cannot be read is a warning and no peer.
pub fn load(path: &Path) -> Vec<(PeerId, Multiaddr)> {
    let text = match read_bounded(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(path = %path.display(), "cannot read the remembered peers: {e}");
            return Vec::new();
        }
    };
    let (peers, skipped) = parse(&text);
    if skipped > 0 {
        warn!(
            path = %path.display(),
            skipped, "lines of the remembered peers are not multiaddrs with /p2p/<peer id>; skipped"
        );
    }
    peers
}

/// The file's first [`MAX_FILE_BYTES`] bytes as text (a line cut there is skipped by [`parse`]).
fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The peers of the file's text, at most [`MAX_REMEMBERED_PEERS`] (one address each, the
/// first), and how many non-empty lines were not a multiaddr ending in `/p2p/<peer id>`.
pub fn parse(text: &str) -> (Vec<(PeerId, Multiaddr)>, usize) {
    let mut peers: Vec<(PeerId, Multiaddr)> = Vec::new();
    let mut skipped = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.parse::<Multiaddr>().ok().and_then(|addr| {
            let peer = match addr.iter().last() {
                Some(Protocol::P2p(peer)) => peer,
                _ => return None,
            };
            Some((peer, addr))
        }) {
            Some((peer, addr)) => {
                if peers.len() < MAX_REMEMBERED_PEERS && !peers.iter().any(|(p, _)| *p == peer) {
                    peers.push((peer, addr));
                }
            }
            None => skipped += 1,
        }
    }
    (peers, skipped)
}

/// The file's text for `peers`: the first [`MAX_REMEMBERED_PEERS`] with an address, each as
/// its first address followed by `/p2p/<peer id>`.
pub fn render(peers: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>) -> String {
    let mut text = String::new();
    let mut written = 0;
    for (peer, addrs) in peers {
        if written == MAX_REMEMBERED_PEERS {
            break;
        }
        let Some(addr) = addrs.into_iter().next() else {
            continue;
        };
        let addr = match addr.iter().last() {
            Some(Protocol::P2p(_)) => addr,
            _ => addr.with(Protocol::P2p(peer)),
        };
        text.push_str(&addr.to_string());
        text.push('\n');
        written += 1;
    }
    text
}

impl EventLoop {
    /// At start: the remembered peers join the routing table (see the module docs).
    pub(super) fn add_remembered_peers(&mut self, peers: Vec<(PeerId, Multiaddr)>) {
        for (peer, addr) in peers {
            if peer != *self.swarm.local_peer_id() {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
    }

    /// Writes the connected peers to the file, off this thread, unless they are the ones
    /// written last (no write, no `fsync`, while the set is stable; see the module docs).
    pub(super) fn save_remembered_peers(&mut self) {
        let Some(file) = self.remembered_peers.clone() else {
            return;
        };
        let peers = self.conn_manager.peers_oldest_first();
        let text = render(
            peers
                .into_iter()
                .map(|peer| (peer, self.contacts.listening(&peer))),
        );
        if text.is_empty() || text == self.remembered_last {
            return;
        }
        self.remembered_last.clone_from(&text);
        tokio::task::spawn_blocking(move || save(&file, &text));
    }
}

/// Writes `text` to the file; a failure is a warning (the file is a hint).
fn save(file: &PeersFile, text: &str) {
    let path = file.path.display();
    match (file.write)(&file.path, text.as_bytes()) {
        Ok(()) => debug!(%path, "remembered peers saved"),
        Err(e) => warn!(%path, "cannot save the remembered peers: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn rendered_peers_parse_back_and_both_are_bounded() {
        let peers: Vec<PeerId> = (0..MAX_REMEMBERED_PEERS + 5)
            .map(|_| PeerId::random())
            .collect();
        let text = render(peers.iter().enumerate().map(|(i, peer)| {
            let addrs = if i == 0 {
                Vec::new() // said nothing: not written
            } else {
                vec![addr(&format!("/ip4/192.0.2.{i}/tcp/4610"))]
            };
            (*peer, addrs)
        }));
        assert_eq!(text.lines().count(), MAX_REMEMBERED_PEERS);
        let (parsed, skipped) = parse(&text);
        assert_eq!(skipped, 0);
        assert_eq!(parsed.len(), MAX_REMEMBERED_PEERS);
        assert_eq!(parsed[0].0, peers[1]);
        assert_eq!(
            parsed[0].1,
            addr("/ip4/192.0.2.1/tcp/4610").with(Protocol::P2p(peers[1]))
        );
        // A file with more lines than the bound: the first ones are read.
        let long: String = (0..3).map(|_| text.clone()).collect();
        assert_eq!(parse(&long).0.len(), MAX_REMEMBERED_PEERS);
    }

    #[test]
    fn lines_that_are_not_addresses_of_a_peer_are_skipped_and_repeats_kept_once() {
        let peer = PeerId::random();
        let text = format!(
            "\n/ip4/192.0.2.1/tcp/4610/p2p/{peer}\nnot an address\n/ip4/192.0.2.2/tcp/4610\n\
             /ip4/192.0.2.3/tcp/4610/p2p/{peer}\n/ip4/192.0.2.4/tcp/46"
        );
        let (parsed, skipped) = parse(&text);
        assert_eq!(parsed.len(), 1, "{parsed:?}");
        assert_eq!(
            parsed[0].1,
            addr(&format!("/ip4/192.0.2.1/tcp/4610/p2p/{peer}"))
        );
        // Not a multiaddr, no peer id, and a line cut short.
        assert_eq!(skipped, 3);
    }

    #[test]
    fn an_address_that_names_its_peer_is_not_named_twice() {
        let peer = PeerId::random();
        let full = addr(&format!("/ip4/192.0.2.1/tcp/4610/p2p/{peer}"));
        assert_eq!(render([(peer, vec![full.clone()])]), format!("{full}\n"));
    }

    #[test]
    fn a_missing_file_is_no_peer_and_a_saved_one_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(load(&path).is_empty());
        let peer = PeerId::random();
        let file = PeersFile {
            path: path.clone(),
            write: |path, bytes| std::fs::write(path, bytes),
        };
        save(
            &file,
            &render([(peer, vec![addr("/ip4/192.0.2.9/tcp/4610")])]),
        );
        assert_eq!(load(&path)[0].0, peer);
    }
}
