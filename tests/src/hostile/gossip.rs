//! Raw gossipsub frames on Licet's mesh, written by hand (the protobuf of libp2p's `rpc.proto`,
//! one `RPC` behind an unsigned-varint length): a frame that packs several published messages,
//! as js-libp2p sends them (rust-libp2p sends one message a frame), each signed by the peer's
//! own key as `ValidationMode::Strict` requires ([`HostilePeer::gossip_frame`]).
//!
//! Only a peer built with [`HostilePeer::raw_gossiper`] sends them: it has no gossipsub
//! behaviour of its own, takes the node's gossip streams and reads them to the end, and opens
//! its own to write frames.

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::{PeerId, Stream, StreamProtocol};

use super::{
    HOSTILE_TIMEOUT, HostilePeer,
    dht::{push_framed, put_bytes},
};

/// Licet's gossipsub protocol, as the node names it (`/licet/meshsub` and the version).
pub const MESHSUB: StreamProtocol = StreamProtocol::new("/licet/meshsub/1.1.0");
/// What gossipsub signs before a message's fields (`libp2p-pubsub:`).
const SIGNING_PREFIX: &[u8] = b"libp2p-pubsub:";

impl HostilePeer {
    /// One published message on `topic` with `data`, from this peer, with sequence number
    /// `seqno` (messages with the same data are one message to the node), signed.
    pub fn gossip_message(&self, topic: &str, data: &[u8], seqno: u64) -> Vec<u8> {
        // The fields in field-number order, as gossipsub encodes them to check the signature.
        let mut unsigned = Vec::new();
        put_bytes(&mut unsigned, 1, &self.peer_id.to_bytes());
        put_bytes(&mut unsigned, 2, data);
        put_bytes(&mut unsigned, 3, &seqno.to_be_bytes());
        put_bytes(&mut unsigned, 4, topic.as_bytes());
        let mut signed_bytes = SIGNING_PREFIX.to_vec();
        signed_bytes.extend_from_slice(&unsigned);
        let signature = self.keypair.sign(&signed_bytes).unwrap();
        let mut message = unsigned;
        put_bytes(&mut message, 5, &signature);
        message
    }

    /// Sends the node `peer` (dialled already) one gossip frame: an `RPC` publishing every one
    /// of `messages` (from [`HostilePeer::gossip_message`]); its size in bytes.
    pub fn gossip_frame(&self, peer: &str, messages: &[Vec<u8>]) -> usize {
        let node: PeerId = peer.parse().unwrap();
        let mut rpc = Vec::new();
        for message in messages {
            put_bytes(&mut rpc, 2, message);
        }
        let mut frame = Vec::new();
        push_framed(&mut frame, &rpc);
        let mut control = self.control.clone();
        let len = frame.len();
        self.block_on(async move {
            let mut stream =
                tokio::time::timeout(HOSTILE_TIMEOUT, control.open_stream(node, MESHSUB))
                    .await
                    .expect("the node accepts a gossip stream in time")
                    .expect("the node accepts a gossip stream");
            stream
                .write_all(&frame)
                .await
                .expect("the node reads the frame");
            // Closed, not dropped: the node reads the frame, then the end of the stream.
            stream.close().await.expect("the node reads the frame");
        });
        len
    }
}

/// Reads a gossip stream the node opened to the end, ignoring what it says.
pub(super) async fn drain(mut stream: Stream) {
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            return;
        }
    }
}
