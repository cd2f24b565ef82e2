//! The peers part: what the node knows of other peers and how it talks to them. It owns the
//! peer book ([`book`]: bytes each way, bans, past offences), the pool of transfer sessions
//! (one long-lived [`Session`] per peer) and the frame buffers those sessions read answers into.
//! Fetching, catalog fetches and serving reach peers only through [`Peers`]. It also keeps what
//! peers said of the time lately ([`clocks`]), to tell the operator when this node's clock is
//! wrong.
//!
//! Invariants:
//! - a banned peer gets no session and is blocked in the swarm (disconnected, refused) until its
//!   ban ends (see [`book`] for how long); its session, if any, is dropped when it is banned;
//! - a request that broke the protocol (an oversize, truncated or undecodable answer) bans its
//!   peer; any failed request drops the session, so the next one opens a new stream;
//! - at most one session per peer is kept: two tasks that open one at once keep the first;
//! - transfer streams never cross a relay: a session waits up to [`DIRECT_CONNECTION_WAIT`] for
//!   a direct connection (a hole punch) to a peer reached through one.

pub mod book;
pub mod clocks;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use licet_proto::{
    Timestamp,
    wire::{Request, Response},
};
use tracing::{debug, info, warn};

pub use book::{PEER_SWEEP_INTERVAL, PeerBook, PeerView};
pub use clocks::{CLOCK_ASK_INTERVAL, PeersTime};

use crate::{
    metrics::Metrics,
    net::{Network, reachability::is_relayed},
    transfer::{FramePool, Session, SessionError},
};

/// How long a session waits for a direct connection to a peer reached through a relay (the
/// hole punch takes a round trip or two, and a retry).
pub const DIRECT_CONNECTION_WAIT: Duration = Duration::from_secs(15);

/// The handle to the peers part. Cheap to clone; every clone is the same part.
#[derive(Clone)]
pub struct Peers(Arc<PeersInner>);

struct PeersInner {
    book: Mutex<PeerBook>,
    sessions: tokio::sync::Mutex<HashMap<PeerId, Arc<Session>>>,
    /// Buffers the sessions read answers into, reused across chunks.
    frames: FramePool,
    network: Network,
    metrics: Arc<Metrics>,
    /// What peers said of the time lately.
    clocks: Mutex<clocks::PeerClocks>,
}

impl Peers {
    /// An empty book and no session; bans are carried out on `network`.
    pub fn new(network: Network, metrics: Arc<Metrics>) -> Peers {
        Peers(Arc::new(PeersInner {
            book: Mutex::new(PeerBook::new()),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            frames: FramePool::default(),
            network,
            metrics,
            clocks: Mutex::default(),
        }))
    }

    fn book(&self) -> MutexGuard<'_, PeerBook> {
        self.0.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the book (for the `peers` listing).
    pub fn with_book<R>(&self, read: impl FnOnce(&PeerBook) -> R) -> R {
        read(&self.book())
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.book().is_banned(peer, Instant::now())
    }

    /// Bans `peer`: disconnects it, refuses it until the ban ends, and records why.
    pub async fn ban(&self, peer: PeerId, reason: &str) {
        let Some(ban) = self.book().ban(peer, reason, Instant::now()) else {
            return;
        };
        warn!(
            %peer,
            "banned for {} s (offence {}): {reason}",
            ban.duration.as_secs(),
            ban.offence
        );
        self.0.metrics.peers_banned.inc();
        self.0.sessions.lock().await.remove(&peer);
        let _ = self.0.network.ban(peer).await;
        if let Some(released) = ban.released {
            let _ = self.0.network.unban(released).await;
        }
    }

    /// Counts a chunk that failed verification and bans its sender (`peers` says who: the
    /// metric has no per-peer label, so it does not grow with every peer id).
    pub async fn bad_chunk(&self, peer: PeerId, what: &str) {
        self.0.metrics.bad_chunks.inc();
        self.ban(peer, what).await;
    }

    /// Counts payload bytes received from `peer`.
    pub fn received(&self, peer: PeerId, bytes: u64) {
        self.0.metrics.bytes_in.inc_by(bytes);
        self.0.network.mark_in_use(peer);
        self.book().received(peer, bytes, Instant::now());
    }

    /// Counts a chunk of `bytes` served to `peer`.
    pub fn served(&self, peer: PeerId, bytes: u64) {
        self.0.metrics.chunks_served.inc();
        self.0.metrics.bytes_out.inc_by(bytes);
        self.0.network.mark_in_use(peer);
        self.book().sent(peer, bytes, Instant::now());
    }

    /// Where this node's clock stands against what its peers said lately, once enough did.
    pub fn peers_time(&self) -> Option<PeersTime> {
        self.clocks().peers_time(Instant::now())
    }

    fn clocks(&self) -> MutexGuard<'_, clocks::PeerClocks> {
        self.0.clocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One round (every [`CLOCK_ASK_INTERVAL`]): asks a few directly connected peers for their
    /// clocks, at once. `false` once the network has stopped.
    pub async fn ask_clocks(&self) -> bool {
        let Ok(connected) = self.0.network.connected().await else {
            return false;
        };
        let direct: Vec<PeerId> = connected
            .into_iter()
            .filter(|(peer, addrs)| addrs.iter().any(|a| !is_relayed(a)) && !self.is_banned(peer))
            .map(|(peer, _)| peer)
            .collect();
        let asked = self.clocks().to_ask(&direct, Instant::now());
        futures::future::join_all(asked.into_iter().map(|peer| self.ask_clock(peer))).await;
        true
    }

    async fn ask_clock(&self, peer: PeerId) {
        let session = match self.session(peer).await {
            Ok(session) => session,
            Err(e) => {
                debug!(%peer, "cannot ask for its clock: {e}");
                return;
            }
        };
        let asked = Timestamp::now().0;
        match session.request(Request::Time).await {
            Ok(reply) => {
                if let Response::Time { unix_seconds } = reply.response {
                    let offset = clocks::offset_of(unix_seconds, asked, Timestamp::now().0);
                    self.clocks().record(peer, offset, Instant::now());
                }
            }
            Err(e) => self.request_failed(peer, &e).await,
        }
    }

    /// One sweep (every [`PEER_SWEEP_INTERVAL`]): unblocks peers whose ban ended and forgets
    /// idle peers. `false` once the network has stopped.
    pub async fn sweep(&self) -> bool {
        let Ok(connected) = self.0.network.connected().await else {
            return false;
        };
        let connected: HashSet<PeerId> = connected.into_iter().map(|(p, _)| p).collect();
        let ended = self.book().sweep(Instant::now(), &connected);
        // A peer banned again since the sweep stays blocked.
        for peer in ended.into_iter().filter(|p| !self.is_banned(p)) {
            info!(%peer, "ban ended");
            let _ = self.0.network.unban(peer).await;
        }
        true
    }

    /// The transfer session with `peer`, opening (and dialing) if needed.
    pub async fn session(&self, peer: PeerId) -> Result<Arc<Session>, SessionError> {
        if self.is_banned(&peer) {
            return Err(SessionError::Open("peer is banned".to_owned()));
        }
        let mut sessions = self.0.sessions.lock().await;
        if let Some(session) = sessions.get(&peer) {
            if session.failure().is_none() {
                return Ok(session.clone());
            }
            sessions.remove(&peer);
        }
        drop(sessions);
        // Not marked in use here: a session also carries the catalog poll's small requests,
        // and a poll every 20 s would keep the peers it asks protected from trimming for good.
        // The chunks it carries mark the peer (`received`, `served`).
        let network = &self.0.network;
        match network.dial_peer(peer).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(SessionError::Open(e)),
            Err(e) => return Err(SessionError::Open(e.to_string())),
        }
        // Transfer streams never cross a relay: a peer reached through one gets a moment for
        // the hole punch that follows.
        if !network.wait_direct(peer, DIRECT_CONNECTION_WAIT).await {
            return Err(SessionError::Open(
                "reachable only through a relay (no direct connection: the hole punch failed)"
                    .to_owned(),
            ));
        }
        let mut control = network.stream_control();
        let session = Arc::new(Session::open(&mut control, peer, self.0.frames.clone()).await?);
        let mut sessions = self.0.sessions.lock().await;
        // Another task may have opened one meanwhile; keep the first.
        Ok(sessions.entry(peer).or_insert(session).clone())
    }

    /// Drops the session with `peer` (it failed).
    async fn drop_session(&self, peer: &PeerId) {
        self.0.sessions.lock().await.remove(peer);
    }

    /// A request to `peer` failed with `error`: the session is dropped, and a peer that broke
    /// the protocol (an oversize, truncated or undecodable answer) is banned too.
    pub async fn request_failed(&self, peer: PeerId, error: &SessionError) {
        if let SessionError::Protocol(reason) = error {
            self.ban(peer, &format!("protocol violation: {reason}"))
                .await;
        }
        self.drop_session(&peer).await;
    }
}
