//! A minimal HTTP BitTorrent tracker (BEP 3, compact peer lists of BEP 23) for the lab, so that
//! BitTorrent clients that cannot be given peers on their command line find the same peers as
//! those that can.
//!
//! It answers `GET /announce?info_hash=…&peer_id=…&port=…[&event=…][&numwant=…]` with every
//! other peer of that torrent it has seen (the address the request came from, the port it
//! announced), as a bencoded dictionary with a compact `peers` string; `event=stopped` removes
//! the peer. Anything else gets a bencoded `failure reason`.
//!
//! Invariants: it keeps at most [`MAX_TORRENTS`] torrents and [`MAX_PEERS`] peers per torrent,
//! answers at most [`MAX_NUMWANT`] peers, reads at most 8 KiB of a request and waits at most 5 s
//! for it; it serves from one thread, which stops when the [`Tracker`] is dropped.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::lab::Host;

/// Torrents a tracker keeps.
pub const MAX_TORRENTS: usize = 16;
/// Peers it keeps per torrent.
pub const MAX_PEERS: usize = 1024;
/// Peers it answers at most (and by default: 50, as BEP 3 suggests).
pub const MAX_NUMWANT: usize = 200;
const DEFAULT_NUMWANT: usize = 50;
/// Seconds a client should wait between announces.
pub const INTERVAL_SECONDS: u32 = 5;
const MAX_REQUEST_BYTES: u64 = 8 * 1024;

/// What an announce asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The torrent's 20-byte info hash.
    pub info_hash: Vec<u8>,
    /// The port the peer listens on.
    pub port: u16,
    /// Whether the peer leaves (`event=stopped`).
    pub stopped: bool,
    /// How many peers it wants, at most [`MAX_NUMWANT`].
    pub numwant: usize,
}

/// Reads the announce in an HTTP request's first line (`GET /announce?… HTTP/1.x`).
pub fn parse_announce(request_line: &str) -> Result<Announce, String> {
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return Err(format!("only GET is answered, not {method:?}"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/announce" {
        return Err(format!(
            "no such path {path:?} (the tracker answers /announce)"
        ));
    }
    let (mut info_hash, mut port, mut stopped, mut numwant) = (None, None, false, DEFAULT_NUMWANT);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).map_err(|why| format!("{key}: {why}"))?;
        match key {
            "info_hash" => info_hash = Some(value),
            "port" => {
                port = Some(
                    String::from_utf8_lossy(&value)
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or("port: not a port number 1 to 65535")?,
                )
            }
            "event" => stopped = value == b"stopped",
            "numwant" => {
                numwant = String::from_utf8_lossy(&value)
                    .parse::<usize>()
                    .map_err(|_| "numwant: not a whole number")?
                    .min(MAX_NUMWANT)
            }
            _ => {}
        }
    }
    let info_hash = info_hash.ok_or("no info_hash")?;
    if info_hash.len() != 20 {
        return Err(format!("info_hash has {} bytes, not 20", info_hash.len()));
    }
    Ok(Announce {
        info_hash,
        port: port.ok_or("no port")?,
        stopped,
        numwant,
    })
}

fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut k = 0;
    while k < bytes.len() {
        match bytes[k] {
            b'%' => {
                let hex = bytes
                    .get(k + 1..k + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("a bad %-escape at byte {k}"))?;
                out.push(hex);
                k += 3;
            }
            b'+' => {
                out.push(b' ');
                k += 1;
            }
            other => {
                out.push(other);
                k += 1;
            }
        }
    }
    Ok(out)
}

/// A bencoded byte string.
fn bencode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("{}:", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// The bencoded answer to an announce: `interval` and the peers in compact form (6 bytes each:
/// the IPv4 address and the port, big-endian). Keys in sorted order, as bencoding requires.
pub fn announce_response(interval_seconds: u32, peers: &[SocketAddrV4]) -> Vec<u8> {
    let mut compact = Vec::with_capacity(peers.len() * 6);
    for peer in peers {
        compact.extend_from_slice(&peer.ip().octets());
        compact.extend_from_slice(&peer.port().to_be_bytes());
    }
    let mut out = b"d".to_vec();
    bencode_bytes(&mut out, b"interval");
    out.extend_from_slice(format!("i{interval_seconds}e").as_bytes());
    bencode_bytes(&mut out, b"min interval");
    out.extend_from_slice(format!("i{}e", interval_seconds.min(2)).as_bytes());
    bencode_bytes(&mut out, b"peers");
    bencode_bytes(&mut out, &compact);
    out.push(b'e');
    out
}

/// The bencoded refusal of a request, saying why.
pub fn failure_response(reason: &str) -> Vec<u8> {
    let mut out = b"d".to_vec();
    bencode_bytes(&mut out, b"failure reason");
    bencode_bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

/// The peers the tracker knows, per torrent, bounded.
#[derive(Debug, Default)]
pub struct Swarms {
    torrents: BTreeMap<Vec<u8>, Vec<SocketAddrV4>>,
}

impl Swarms {
    /// Records `announce` from `from` and says which other peers to give it (or why not).
    pub fn announce(
        &mut self,
        from: Ipv4Addr,
        announce: &Announce,
    ) -> Result<Vec<SocketAddrV4>, String> {
        let me = SocketAddrV4::new(from, announce.port);
        if !self.torrents.contains_key(&announce.info_hash) && self.torrents.len() >= MAX_TORRENTS {
            return Err(format!(
                "this tracker keeps at most {MAX_TORRENTS} torrents"
            ));
        }
        let peers = self.torrents.entry(announce.info_hash.clone()).or_default();
        if announce.stopped {
            peers.retain(|p| *p != me);
            return Ok(Vec::new());
        }
        if !peers.contains(&me) {
            if peers.len() >= MAX_PEERS {
                return Err(format!(
                    "this tracker keeps at most {MAX_PEERS} peers a torrent"
                ));
            }
            peers.push(me);
        }
        Ok(peers
            .iter()
            .filter(|p| **p != me)
            .take(announce.numwant)
            .copied()
            .collect())
    }
}

/// A tracker serving on a host of the lab.
pub struct Tracker {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tracker {
    /// Listens on `host`'s address, `port`, inside its namespace.
    pub fn start_on(host: &Host, port: u16) -> Tracker {
        let address = SocketAddrV4::new(host.ip(), port);
        let listener = host
            .run_inside(|| TcpListener::bind(address))
            .unwrap_or_else(|e| panic!("the tracker cannot listen on {address}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut swarms = Swarms::default();
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, std::net::SocketAddr::V4(from))) => {
                        serve(&mut swarms, stream, *from.ip())
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Tracker {
            url: format!("http://{address}/announce"),
            stop,
            thread: Some(thread),
        }
    }

    /// Its announce URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request on `stream` (errors on the socket end it quietly: the client retries).
fn serve(swarms: &mut Swarms, mut stream: TcpStream, from: Ipv4Addr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let mut limited = (&stream).take(MAX_REQUEST_BYTES);
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        match limited.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let body = match parse_announce(text.lines().next().unwrap_or(""))
        .and_then(|announce| swarms.announce(from, &announce))
    {
        Ok(peers) => announce_response(INTERVAL_SECONDS, &peers),
        Err(why) => failure_response(&why),
    };
    let mut response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let _ = stream.write_all(&response);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "%124Vx%9A%BC%DE%F0%11%22%334Dfw%88%99%AA%BB%CC";

    #[test]
    fn an_announce_is_read_from_its_request_line() {
        let announce = parse_announce(&format!(
            "GET /announce?info_hash={HASH}&peer_id=-AR-0001&port=6881&uploaded=0&event=started&numwant=500 HTTP/1.1"
        ))
        .unwrap();
        assert_eq!(announce.info_hash.len(), 20);
        assert_eq!(&announce.info_hash[..4], &[0x12, b'4', b'V', b'x']);
        assert_eq!(announce.port, 6881);
        assert!(!announce.stopped);
        assert_eq!(announce.numwant, MAX_NUMWANT);
        let refused = |line: &str| parse_announce(line).unwrap_err();
        assert!(refused("POST /announce HTTP/1.0").contains("only GET"));
        assert!(refused("GET /scrape?x=1 HTTP/1.0").contains("no such path"));
        assert!(refused(&format!("GET /announce?info_hash={HASH} HTTP/1.0")).contains("no port"));
        assert!(refused("GET /announce?info_hash=abc&port=1 HTTP/1.0").contains("3 bytes"));
        assert!(
            refused(&format!("GET /announce?info_hash={HASH}&port=0 HTTP/1.0")).contains("port")
        );
        assert!(refused("GET /announce?info_hash=%zz&port=1 HTTP/1.0").contains("%-escape"));
    }

    #[test]
    fn the_answer_is_bencoded_with_compact_peers() {
        let peers = [
            SocketAddrV4::new(Ipv4Addr::new(172, 31, 0, 11), 6881),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 258),
        ];
        assert_eq!(
            announce_response(5, &peers),
            b"d8:intervali5e12:min intervali2e5:peers12:\xac\x1f\x00\x0b\x1a\xe1\x0a\x00\x00\x01\x01\x02e"
                .to_vec()
        );
        assert_eq!(
            announce_response(1, &[]),
            b"d8:intervali1e12:min intervali1e5:peers0:e".to_vec()
        );
        assert_eq!(
            failure_response("no port"),
            b"d14:failure reason7:no porte".to_vec()
        );
    }

    #[test]
    fn each_peer_is_told_the_others_of_its_torrent_and_leaves_on_stopped() {
        let mut swarms = Swarms::default();
        let announce = |port, stopped| Announce {
            info_hash: vec![7; 20],
            port,
            stopped,
            numwant: 50,
        };
        let (a, b) = (Ipv4Addr::new(172, 31, 0, 11), Ipv4Addr::new(172, 31, 0, 12));
        assert_eq!(swarms.announce(a, &announce(6881, false)).unwrap(), vec![]);
        assert_eq!(
            swarms.announce(b, &announce(6881, false)).unwrap(),
            vec![SocketAddrV4::new(a, 6881)]
        );
        // Announcing again adds no duplicate.
        assert_eq!(
            swarms.announce(a, &announce(6881, false)).unwrap(),
            vec![SocketAddrV4::new(b, 6881)]
        );
        let other = Announce {
            info_hash: vec![8; 20],
            ..announce(6881, false)
        };
        assert_eq!(swarms.announce(b, &other).unwrap(), vec![]);
        swarms.announce(b, &announce(6881, true)).unwrap();
        assert_eq!(swarms.announce(a, &announce(6881, false)).unwrap(), vec![]);
    }

    #[test]
    fn the_tracker_keeps_a_bounded_number_of_torrents_and_peers() {
        let mut swarms = Swarms::default();
        for k in 0..MAX_TORRENTS {
            let announce = Announce {
                info_hash: vec![k as u8; 20],
                port: 1,
                stopped: false,
                numwant: 1,
            };
            swarms.announce(Ipv4Addr::LOCALHOST, &announce).unwrap();
        }
        let one_more = Announce {
            info_hash: vec![255; 20],
            port: 1,
            stopped: false,
            numwant: 1,
        };
        assert!(swarms.announce(Ipv4Addr::LOCALHOST, &one_more).is_err());
        let mut swarms = Swarms::default();
        for port in 1..=MAX_PEERS as u16 {
            let announce = Announce {
                port,
                ..one_more.clone()
            };
            assert!(
                swarms
                    .announce(Ipv4Addr::LOCALHOST, &announce)
                    .unwrap()
                    .len()
                    <= 1
            );
        }
        let announce = Announce {
            port: 60_000,
            ..one_more
        };
        assert!(
            swarms
                .announce(Ipv4Addr::LOCALHOST, &announce)
                .unwrap_err()
                .contains("1024")
        );
    }
}
