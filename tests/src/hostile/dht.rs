//! Raw Kademlia messages on Licet's DHT protocol, written by hand (the protobuf of libp2p's
//! `dht.proto`, each message behind an unsigned-varint length): a hostile peer that sends a
//! node many `ADD_PROVIDER` records on one stream ([`HostilePeer::flood_provider_records`]), and
//! a DHT client that asks a node which providers it holds for a key
//! ([`HostilePeer::providers_held_by`]), as any node looking for content asks.

use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::{PeerId, Stream};

use super::{HOSTILE_TIMEOUT, HostilePeer, KAD};

/// `dht.proto`'s `MessageType`s used here.
const ADD_PROVIDER: u64 = 2;
const GET_PROVIDERS: u64 = 3;
/// Largest answer read (the node's `max_packet_size` is 16 KiB).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

impl HostilePeer {
    /// Sends the node `peer` (dialled already) `count` provider records for made-up keys
    /// ([`flood_key`] 0, 1, …), each naming this peer as the provider, on one stream; then waits
    /// (at most `timeout`) until the node has handled them all (it answers a lookup sent after
    /// them; it leaves the asking peer out of that answer, so ask about the flood with another
    /// peer's [`HostilePeer::providers_held_by`]).
    pub fn flood_provider_records(&self, peer: &str, count: u64, timeout: Duration) {
        let node: PeerId = peer.parse().unwrap();
        let provider = self.peer_id;
        let addr = self
            .addr
            .iter()
            .take_while(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            .collect::<libp2p::Multiaddr>();
        let mut control = self.control.clone();
        self.block_on(async move {
            let mut stream = open_kad(&mut control, node).await;
            let mut batch = Vec::new();
            for n in 0..count {
                let peer_field = peer_message(&provider, &addr.to_vec());
                let mut body = message(ADD_PROVIDER, &flood_key(n));
                put_bytes(&mut body, 9, &peer_field);
                push_framed(&mut batch, &body);
                if batch.len() >= 64 * 1024 {
                    stream
                        .write_all(&batch)
                        .await
                        .expect("the node reads the flood");
                    batch.clear();
                }
            }
            stream
                .write_all(&batch)
                .await
                .expect("the node reads the flood");
            tokio::time::timeout(timeout, ask_providers(&mut stream, &flood_key(0)))
                .await
                .expect("the node answers after the flood in time");
        });
    }

    /// The providers the node `peer` (dialled already) answers a `GET_PROVIDERS` for `key` with
    /// (never this peer itself).
    pub fn providers_held_by(&self, peer: &str, key: &[u8]) -> Vec<PeerId> {
        let node: PeerId = peer.parse().unwrap();
        let mut control = self.control.clone();
        let key = key.to_vec();
        self.block_on(async move {
            let mut stream = open_kad(&mut control, node).await;
            tokio::time::timeout(HOSTILE_TIMEOUT, ask_providers(&mut stream, &key))
                .await
                .expect("the node answers a provider lookup in time")
        })
    }
}

/// The `n`th made-up key of [`HostilePeer::flood_provider_records`]: 32 bytes, like a manifest id.
pub fn flood_key(n: u64) -> [u8; 32] {
    let mut key = [0xF1; 32];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

async fn open_kad(control: &mut libp2p_stream::Control, peer: PeerId) -> Stream {
    tokio::time::timeout(HOSTILE_TIMEOUT, control.open_stream(peer, KAD))
        .await
        .expect("the node accepts a DHT stream in time")
        .expect("the node accepts a DHT stream")
}

/// Sends `GET_PROVIDERS` for `key` and reads the answer's provider peer ids.
async fn ask_providers(stream: &mut Stream, key: &[u8]) -> Vec<PeerId> {
    let mut framed = Vec::new();
    push_framed(&mut framed, &message(GET_PROVIDERS, key));
    stream
        .write_all(&framed)
        .await
        .expect("the node reads a lookup");
    stream.flush().await.expect("the node reads a lookup");
    let answer = read_framed(stream).await;
    fields(&answer)
        .filter(|(field, _)| *field == 9)
        .filter_map(|(_, peer)| fields(peer).find(|(field, _)| *field == 1))
        .filter_map(|(_, id)| PeerId::from_bytes(id).ok())
        .collect()
}

/// A `Message` of `kind` for `key` (more fields may be appended).
fn message(kind: u64, key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x08];
    put_varint(&mut body, kind);
    put_bytes(&mut body, 2, key);
    body
}

/// A `Peer { id, addrs: [addr] }`.
fn peer_message(peer: &PeerId, addr: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, &peer.to_bytes());
    put_bytes(&mut out, 2, addr);
    out
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field.
pub(super) fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(super) fn push_framed(out: &mut Vec<u8>, body: &[u8]) {
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

async fn read_framed(stream: &mut Stream) -> Vec<u8> {
    let mut len = 0usize;
    for shift in (0..35).step_by(7) {
        let mut byte = [0u8];
        stream
            .read_exact(&mut byte)
            .await
            .expect("the node answers");
        len |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    assert!(len <= MAX_ANSWER_BYTES, "an answer of {len} bytes");
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .expect("the node answers");
    body
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The length-delimited fields of a protobuf message, as (field number, bytes); other wire
/// types are skipped.
fn fields(mut bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    std::iter::from_fn(move || {
        loop {
            let tag = get_varint(&mut bytes)?;
            match tag & 7 {
                0 => {
                    get_varint(&mut bytes)?;
                }
                2 => {
                    let len = usize::try_from(get_varint(&mut bytes)?).ok()?;
                    if len > bytes.len() {
                        return None;
                    }
                    let (field, rest) = bytes.split_at(len);
                    bytes = rest;
                    return Some((tag >> 3, field));
                }
                _ => return None,
            }
        }
    })
}
