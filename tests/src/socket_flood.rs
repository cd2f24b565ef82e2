//! Idle TCP sockets from one address: [`IdleSocketFlood`] keeps many sockets open to a node
//! from one loopback address (bound explicitly, e.g. 127.0.0.2, while the nodes' own dials come
//! from 127.0.0.1) and never sends a byte on them, opening each again as soon as the node closes
//! it (at once after a handshake timeout; after [`RETRY_PAUSE`] when the node closed it at once,
//! so a node that refuses them is not spun at full speed). And [`established_tcp`], which reads
//! the kernel's table of TCP connections, to see from which address a node's connection comes.
//!
//! The flood runs on its own small tokio runtime, shut down (every socket with it) when the
//! [`IdleSocketFlood`] is dropped, also when a test panics.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::io::AsyncReadExt as _;

/// How long a socket closed by the node within [`HELD_AT_LEAST`] waits before it connects
/// again.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// A socket the node closed sooner than this was refused, not timed out.
pub const HELD_AT_LEAST: Duration = Duration::from_secs(1);

/// What the flood did so far.
#[derive(Debug, Default)]
pub struct FloodCounts {
    /// Sockets connected.
    pub connected: AtomicU64,
    /// Sockets the node closed within [`HELD_AT_LEAST`].
    pub closed_at_once: AtomicU64,
    /// Sockets the node held longer and then closed (its handshake deadline).
    pub closed_after_holding: AtomicU64,
}

/// Idle sockets to one node (see the module docs). Dropping it closes them all.
pub struct IdleSocketFlood {
    runtime: Option<tokio::runtime::Runtime>,
    /// What it did.
    pub counts: Arc<FloodCounts>,
}

impl IdleSocketFlood {
    /// Keeps `sockets` idle sockets open from `from` to `target` (both loopback addresses).
    pub fn start(from: Ipv4Addr, target: SocketAddr, sockets: usize) -> IdleSocketFlood {
        assert!(
            target.ip().is_loopback(),
            "floods loopback only, not {target}"
        );
        assert!(from.is_loopback(), "floods from loopback only, not {from}");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let counts = Arc::new(FloodCounts::default());
        for _ in 0..sockets {
            runtime.spawn(hold_one(from, target, counts.clone()));
        }
        IdleSocketFlood {
            runtime: Some(runtime),
            counts,
        }
    }

    /// Sockets connected so far.
    pub fn connected(&self) -> u64 {
        self.counts.connected.load(Ordering::Relaxed)
    }
}

impl Drop for IdleSocketFlood {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One socket, connected again and again until the runtime shuts down.
async fn hold_one(from: Ipv4Addr, target: SocketAddr, counts: Arc<FloodCounts>) {
    let mut buffer = [0u8; 1024];
    loop {
        let connect = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
            socket.connect(target).await
        };
        let Ok(mut socket) = connect.await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        counts.connected.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        // Never write; read until the node closes the socket.
        while let Ok(n) = socket.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
        if opened.elapsed() < HELD_AT_LEAST {
            counts.closed_at_once.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(RETRY_PAUSE).await;
        } else {
            counts.closed_after_holding.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How many established TCP connections go from `from` (any port) to `to_port` on 127.0.0.1,
/// as the kernel lists them in `/proc/net/tcp`.
pub fn established_tcp(from: Ipv4Addr, to_port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable");
    // Addresses are hex in the kernel's byte order (little-endian on the machines tests run
    // on), then `:` and the port in hex; state 01 is ESTABLISHED.
    let hex_addr = |ip: Ipv4Addr| format!("{:08X}", u32::from_le_bytes(ip.octets()));
    let local = hex_addr(from);
    let remote = format!("{}:{to_port:04X}", hex_addr(Ipv4Addr::LOCALHOST));
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3
                && fields[1].split(':').next() == Some(local.as_str())
                && fields[2] == remote
                && fields[3] == "01"
        })
        .count()
}
