//! Measures the two ways libp2p can carry `/licet/transfer/1` bulk data between two swarms on
//! loopback, side by side in one run, so the transfer design rests on numbers from this machine:
//!
//! - **request-response**: `libp2p::request_response`, one stream per chunk request, `--window`
//!   requests in flight (what DESIGN.md calls the obvious design);
//! - **stream**: one long-lived `libp2p-stream` stream, requests pipelined with `--window` in
//!   flight, each response a length-prefixed frame read into one reused buffer (the node's
//!   design; the node reuses buffers from a pool shared by its sessions, see `transfer.rs`).
//!
//! Both run over TCP + Noise + Yamux, with the node's transport settings. Each round moves
//! `--mib` MiB in `--chunk-kib` KiB chunks with each design, alternating (A B A B …) so machine
//! noise hits both alike; with `--verify` the receiver also SHA-256-hashes every chunk as a merkle
//! leaf, as the node does before it writes one. It prints every round, then the medians and the
//! ratio. Run by hand, in release mode (it is not a test):
//!
//! ```text
//! cargo run --release -p licet-node --example transfer_probe -- --mib 1024 --rounds 3 --verify
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, noise,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

const RR_PROTOCOL: StreamProtocol = StreamProtocol::new("/licet-probe/rr/1");
const STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new("/licet-probe/stream/1");
/// Largest chunk either side accepts (the wire protocol's limit is 16 MiB).
const MAX_CHUNK: usize = 16 * 1024 * 1024;

struct Options {
    mib: usize,
    chunk_kib: usize,
    window: usize,
    rounds: usize,
    verify: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        mib: 1024,
        chunk_kib: 1024,
        window: 16,
        rounds: 3,
        verify: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
                .ok_or_else(|| format!("{name} takes a positive whole number"))
        };
        match arg.as_str() {
            "--mib" => options.mib = number("--mib")?,
            "--chunk-kib" => options.chunk_kib = number("--chunk-kib")?,
            "--window" => options.window = number("--window")?,
            "--rounds" => options.rounds = number("--rounds")?,
            "--verify" => options.verify = true,
            "-h" | "--help" => {
                return Err(
                    "usage: transfer_probe [--mib N] [--chunk-kib N] [--window N] \
                            [--rounds N] [--verify]"
                        .to_owned(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if options.chunk_kib * 1024 > MAX_CHUNK {
        return Err(format!("--chunk-kib is at most {}", MAX_CHUNK / 1024));
    }
    Ok(options)
}

/// request-response codec: a request is a chunk index (4 bytes, little endian); a response is
/// the chunk's bytes, ending with the stream (request-response closes it after one response).
#[derive(Clone, Default)]
struct ChunkCodec;

impl request_response::Codec for ChunkCodec {
    type Protocol = StreamProtocol;
    type Request = u32;
    type Response = Arc<Vec<u8>>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<u32>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut index = [0u8; 4];
        io.read_exact(&mut index).await?;
        Ok(u32::from_le_bytes(index))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Arc<Vec<u8>>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut chunk = Vec::new();
        io.take(MAX_CHUNK as u64 + 1)
            .read_to_end(&mut chunk)
            .await?;
        if chunk.len() > MAX_CHUNK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk too large",
            ));
        }
        Ok(Arc::new(chunk))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        index: u32,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&index.to_le_bytes()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        chunk: Arc<Vec<u8>>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&chunk).await
    }
}

#[derive(NetworkBehaviour)]
struct Probe {
    rr: request_response::Behaviour<ChunkCodec>,
    stream: libp2p_stream::Behaviour,
}

fn new_swarm() -> Swarm<Probe> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| Probe {
            rr: request_response::Behaviour::new(
                [(RR_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(300))
                    .with_max_concurrent_streams(1024),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// The seeding side: answers every request-response request with the chunk, and serves every
/// inbound probe stream (a 4-byte index in, a 4-byte length and the chunk out, in order).
async fn run_server(
    mut swarm: Swarm<Probe>,
    chunk: Arc<Vec<u8>>,
    ready: oneshot::Sender<Multiaddr>,
) {
    let mut incoming = swarm
        .behaviour()
        .stream
        .new_control()
        .accept(STREAM_PROTOCOL)
        .unwrap();
    let served = chunk.clone();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let chunk = served.clone();
            tokio::spawn(async move {
                let mut index = [0u8; 4];
                let prefix = (chunk.len() as u32).to_le_bytes();
                while stream.read_exact(&mut index).await.is_ok() {
                    if stream.write_all(&prefix).await.is_err()
                        || stream.write_all(&chunk).await.is_err()
                        || stream.flush().await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let mut ready = Some(ready);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(address);
                }
            }
            SwarmEvent::Behaviour(ProbeEvent::Rr(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                let _ = swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, chunk.clone());
            }
            _ => {}
        }
    }
}

/// A request-response round the client's event loop runs: fetch `chunks` chunks from `peer`
/// with `window` in flight, and reply with the bytes received.
struct RrRound {
    peer: PeerId,
    chunks: usize,
    window: usize,
    verify: bool,
    done: oneshot::Sender<u64>,
}

/// The downloading side's event loop: keeps the swarm polled (for the stream design) and runs
/// request-response rounds on command.
async fn run_client(mut swarm: Swarm<Probe>, mut rounds: mpsc::Receiver<RrRound>) {
    let mut current: Option<(RrRound, usize, usize, u64)> = None; // round, sent, received, bytes
    loop {
        tokio::select! {
            round = rounds.recv() => {
                let Some(round) = round else { return };
                let first = round.window.min(round.chunks);
                for i in 0..first {
                    swarm.behaviour_mut().rr.send_request(&round.peer, i as u32);
                }
                current = Some((round, first, 0, 0));
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ProbeEvent::Rr(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => {
                    let Some((round, sent, received, bytes)) = current.as_mut() else { continue };
                    if round.verify {
                        std::hint::black_box(licet_proto::merkle::leaf_hash(&response));
                    }
                    *received += 1;
                    *bytes += response.len() as u64;
                    if *sent < round.chunks {
                        swarm.behaviour_mut().rr.send_request(&round.peer, *sent as u32);
                        *sent += 1;
                    }
                    if *received == round.chunks {
                        let (round, _, _, bytes) = current.take().unwrap();
                        let _ = round.done.send(bytes);
                    }
                }
                SwarmEvent::Behaviour(ProbeEvent::Rr(request_response::Event::OutboundFailure {
                    error, ..
                })) => panic!("request-response request failed: {error}"),
                _ => {}
            }
        }
    }
}

/// One stream round: `chunks` chunks over one new stream, `window` requests in flight, every
/// response read into the same buffer.
async fn stream_round(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    chunks: usize,
    window: usize,
    verify: bool,
) -> u64 {
    let mut stream = control.open_stream(peer, STREAM_PROTOCOL).await.unwrap();
    let mut buffer = Vec::new();
    let mut sent = 0;
    let mut bytes = 0u64;
    while sent < window.min(chunks) {
        stream
            .write_all(&(sent as u32).to_le_bytes())
            .await
            .unwrap();
        sent += 1;
    }
    stream.flush().await.unwrap();
    for _ in 0..chunks {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await.unwrap();
        let len = u32::from_le_bytes(prefix) as usize;
        assert!(len <= MAX_CHUNK, "frame too large");
        buffer.resize(len, 0);
        stream.read_exact(&mut buffer).await.unwrap();
        if verify {
            std::hint::black_box(licet_proto::merkle::leaf_hash(&buffer));
        }
        bytes += len as u64;
        if sent < chunks {
            stream
                .write_all(&(sent as u32).to_le_bytes())
                .await
                .unwrap();
            stream.flush().await.unwrap();
            sent += 1;
        }
    }
    stream.close().await.unwrap();
    bytes
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let chunk_bytes = options.chunk_kib * 1024;
    let chunks = (options.mib * 1024 * 1024).div_ceil(chunk_bytes);
    let chunk = Arc::new(
        (0..chunk_bytes)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );

    let server = new_swarm();
    let server_peer = *server.local_peer_id();
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(run_server(server, chunk, ready_tx));
    let addr = ready_rx.await.unwrap();

    let mut client = new_swarm();
    let mut control = client.behaviour().stream.new_control();
    client.dial(addr.clone()).unwrap();
    let (rounds_tx, rounds_rx) = mpsc::channel(1);
    tokio::spawn(run_client(client, rounds_rx));
    // Wait until the connection is up: a stream can only be opened on an existing connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(
            Duration::from_millis(500),
            control.open_stream(server_peer, STREAM_PROTOCOL),
        )
        .await
        {
            Ok(Ok(mut stream)) => {
                let _ = stream.close().await;
                break;
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("could not connect to the probe server at {addr}"),
        }
    }

    println!(
        "moving {} MiB in {} KiB chunks, {} in flight, over TCP+Noise+Yamux on loopback{}",
        options.mib,
        options.chunk_kib,
        options.window,
        if options.verify {
            ", SHA-256 of every chunk on receipt"
        } else {
            ""
        }
    );
    let gb = |bytes: u64, secs: f64| bytes as f64 / secs / 1e9;
    let (mut rr, mut st) = (Vec::new(), Vec::new());
    for round in 1..=options.rounds {
        let (done, finished) = oneshot::channel();
        let started = Instant::now();
        rounds_tx
            .send(RrRound {
                peer: server_peer,
                chunks,
                window: options.window,
                verify: options.verify,
                done,
            })
            .await
            .unwrap();
        let bytes = finished.await.unwrap();
        let rr_rate = gb(bytes, started.elapsed().as_secs_f64());

        let started = Instant::now();
        let bytes = stream_round(
            &mut control,
            server_peer,
            chunks,
            options.window,
            options.verify,
        )
        .await;
        let st_rate = gb(bytes, started.elapsed().as_secs_f64());
        println!("round {round}: request-response {rr_rate:.3} GB/s, stream {st_rate:.3} GB/s");
        rr.push(rr_rate);
        st.push(st_rate);
    }
    let (rr, st) = (median(&mut rr), median(&mut st));
    println!(
        "median: request-response {rr:.3} GB/s, stream {st:.3} GB/s; stream / request-response = {:.2}x",
        st / rr
    );
}
