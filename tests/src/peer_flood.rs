//! Hundreds of authenticated libp2p peers from chosen loopback addresses: [`PeerFlood`] starts
//! one swarm per peer id (Noise, Yamux, Ping; nothing else) and has each dial a node from its
//! address until one connection is established (a dial refused during the handshake is tried
//! again), so that the node holds real, established connections, each from a distinct peer id,
//! and no idle sockets.
//!
//! libp2p's own TCP transport binds its dials to the unspecified address (for port reuse), so
//! every dial from a test process would come from 127.0.0.1; here a small dial-only transport
//! ([`FromAddress`]) binds each socket to the flood's address first (any of 127.0.0.0/8, all
//! of which are the loopback interface's on Linux), so a flood can come from other addresses
//! and other /24 networks than the nodes' own dials. Its sockets take local ports below the
//! kernel's ephemeral range ([`flood_port`]): a node listens on an ephemeral port of 127.0.0.1
//! and binds its dials to that port on the unspecified address, which fails (address in use)
//! if a flood socket holds the same port on 127.0.1.x.
//!
//! The flood runs on its own small tokio runtime, shut down (every connection with it) when
//! the [`PeerFlood`] is dropped, also when a test panics.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::StreamExt as _;
use libp2p::core::Transport as _;
use libp2p::{
    Multiaddr,
    core::{
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        upgrade::Version,
    },
    identity,
    multiaddr::Protocol,
    noise, ping,
    swarm::SwarmEvent,
    yamux,
};

/// What the flood's peers did so far.
#[derive(Debug, Default)]
pub struct PeerFloodCounts {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections that were established (the node may have closed them since).
    pub established: AtomicU64,
    /// Connections the node closed.
    pub closed: AtomicU64,
    /// Dials that failed (refused before the handshake finished), each tried again after
    /// [`RETRY_PAUSE`].
    pub failed: AtomicU64,
    /// Peers that gave up after [`MAX_DIALS`] failed dials.
    pub gave_up: AtomicU64,
}

/// How long a peer whose dial failed waits before it dials again.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Most dials one peer makes before it gives up.
pub const MAX_DIALS: u32 = 120;

/// Peers connected to one node from chosen addresses (see the module docs). Dropping it closes
/// every connection.
pub struct PeerFlood {
    runtime: Option<tokio::runtime::Runtime>,
    peers: u64,
    /// What it did.
    pub counts: Arc<PeerFloodCounts>,
}

impl PeerFlood {
    /// Dials `target` (a node's loopback address with `/p2p/`) once from each of
    /// `peers_per_address` fresh peer ids at each address of `from`.
    pub fn start(from: &[Ipv4Addr], peers_per_address: usize, target: &str) -> PeerFlood {
        let target: Multiaddr = target.parse().unwrap();
        assert!(
            target.to_string().starts_with("/ip4/127."),
            "floods loopback only, not {target}"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let counts = Arc::new(PeerFloodCounts::default());
        for &address in from {
            assert!(
                address.is_loopback(),
                "floods from loopback only, not {address}"
            );
            for _ in 0..peers_per_address {
                runtime.spawn(one_peer(address, target.clone(), counts.clone()));
            }
        }
        PeerFlood {
            runtime: Some(runtime),
            peers: (from.len() * peers_per_address) as u64,
            counts,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.counts.open.load(Ordering::Relaxed)
    }

    /// Whether every peer has had its answer: its connection was established (and perhaps
    /// closed again by the node), or it gave up.
    pub fn settled(&self) -> bool {
        let established = self.counts.established.load(Ordering::Relaxed);
        let gave_up = self.counts.gave_up.load(Ordering::Relaxed);
        established + gave_up >= self.peers
    }

    /// What it did, for messages.
    pub fn report(&self) -> String {
        let c = &self.counts;
        format!(
            "{} open, {} established, {} closed by the node, {} dials failed, {} peers gave up",
            c.open.load(Ordering::Relaxed),
            c.established.load(Ordering::Relaxed),
            c.closed.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.gave_up.load(Ordering::Relaxed),
        )
    }
}

impl Drop for PeerFlood {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One peer: a fresh identity that dials `target` from `address` until a connection is
/// established, and keeps it for as long as the node does.
async fn one_peer(address: Ipv4Addr, target: Multiaddr, counts: Arc<PeerFloodCounts>) {
    let keypair = identity::Keypair::generate_ed25519();
    let built = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            FromAddress(address)
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key).unwrap())
                .multiplex(yamux::Config::default())
        });
    let mut swarm = built
        .unwrap()
        .with_behaviour(|_| ping::Behaviour::default())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let mut dials = 1;
    if swarm.dial(target.clone()).is_err() {
        counts.gave_up.fetch_add(1, Ordering::Relaxed);
        return;
    }
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => {
                counts.established.fetch_add(1, Ordering::Relaxed);
                counts.open.fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::ConnectionClosed { .. } => {
                counts.open.fetch_sub(1, Ordering::Relaxed);
                counts.closed.fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::OutgoingConnectionError { .. } => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                if dials >= MAX_DIALS {
                    counts.gave_up.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                dials += 1;
                let _ = swarm.dial(target.clone());
            }
            _ => {}
        }
    }
}

/// Ports tried before a flood socket's bind gives up.
const BIND_ATTEMPTS: usize = 64;
/// The lowest local port a flood socket takes.
const FIRST_FLOOD_PORT: u16 = 10_000;

/// The next local port for a flood socket: in turn from [`FIRST_FLOOD_PORT`] up to the start
/// of the kernel's ephemeral range (where nodes' listen ports come from), then again.
pub fn flood_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static EPHEMERAL_START: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let end = *EPHEMERAL_START.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("the kernel's ephemeral port range is readable");
        let start: u16 = range
            .split_whitespace()
            .next()
            .and_then(|low| low.parse().ok())
            .expect("the ephemeral port range starts with a port");
        assert!(
            start > FIRST_FLOOD_PORT + 4096,
            "the ephemeral port range starts at {start}, leaving no ports below it for a flood"
        );
        start
    });
    let span = u64::from(end - FIRST_FLOOD_PORT);
    FIRST_FLOOD_PORT + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16
}

/// A dial-only TCP transport whose sockets are bound to one local address before they
/// connect (see the module docs).
pub struct FromAddress(pub Ipv4Addr);

impl libp2p::core::Transport for FromAddress {
    type Output = libp2p::tcp::tokio::TcpStream;
    type Error = std::io::Error;
    type ListenerUpgrade = std::future::Pending<Result<Self::Output, Self::Error>>;
    type Dial = Pin<Box<dyn Future<Output = Result<Self::Output, Self::Error>> + Send>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let mut parts = addr.iter();
        let target = match (parts.next(), parts.next()) {
            (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => {
                SocketAddr::new(IpAddr::V4(ip), port)
            }
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        let from = self.0;
        Ok(Box::pin(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            let mut bound = socket.bind(SocketAddr::new(IpAddr::V4(from), flood_port()));
            for _ in 0..BIND_ATTEMPTS {
                match &bound {
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        bound = socket.bind(SocketAddr::new(IpAddr::V4(from), flood_port()));
                    }
                    _ => break,
                }
            }
            bound?;
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(libp2p::tcp::tokio::TcpStream(stream))
        }))
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Poll::Pending
    }
}
