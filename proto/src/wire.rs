//! The transfer protocol `/licet/transfer/1`: the specification, in code.
//!
//! # Streams and frames
//! A node opens one long-lived stream per peer and sends requests on it; the peer answers on
//! the same stream. Both directions are a sequence of frames:
//!
//! ```text
//! frame   = length: u32 little-endian ‖ header ‖ payload
//! length  = bytes of header + payload, at most MAX_FRAME_BYTES (checked before allocating)
//! header  = postcard(RequestFrame) or postcard(ResponseFrame)
//! payload = raw bytes; only Response::Chunk, Response::CatalogPart and Response::CatalogParts
//!           have one, of exactly the length their header declares (`len`, or the sum of
//!           `lens`); every other frame has none
//! ```
//!
//! Requests carry a [`RequestId`] chosen by the requester; the response carries it back.
//! Responses may come in any order. A requester keeps at most [`MAX_REQUESTS_IN_FLIGHT`]
//! requests outstanding on one stream; a server may answer [`Response::Busy`] to the excess or
//! close the stream (Licet's node reads one request ahead of the answer it is sending, so the
//! excess waits in the stream's flow control).
//!
//! # Messages
//! | request | answer |
//! |---|---|
//! | `Manifest { id }` | `Manifest { envelope }`: the encoded signed manifest, verified by the receiver |
//! | `Availability { manifest }` | `Availability { files }`: one [`Bitfield`] per file, bit *i* = chunk *i* held |
//! | `Chunk { manifest, file, index }` | `Chunk { proof, len }` + `len` bytes: the chunk and its [`AuditPath`] |
//! | `CatalogHead { publisher }` | `CatalogHead { envelope }`: the newest signed head the peer accepted |
//! | `CatalogPart { publisher, catalog_hash, offset }` | `CatalogPart { total_len, offset, len }` + `len` bytes of the catalog's signed root envelope |
//! | `ChunkForRegion { manifest, file, index, region }` | as `Chunk`, for a requester that states its region |
//! | `Peers { manifest }` | `Peers { peers }`: other peers that asked this one what it has of the manifest lately, with the addresses they say they listen on |
//! | `CatalogParts { publisher, hashes }` | `CatalogParts { lens }` + the parts named, in the order asked, `lens[i]` bytes each |
//! | `Time` | `Time { unix_seconds }`: the peer's clock when it answered |
//!
//! # Time
//! A node's clock judges licence windows, so a node asks a few peers for theirs (`Time`) and
//! warns its operator when its own is far from what most of them say. A peer's word is a hint
//! for that warning only: it never moves the time a window is judged at (a peer is anyone, and
//! only a publisher's signature may do that: the time floor, `policy::judged_now`).
//!
//! # Peer exchange
//! A node answers `Peers` with at most [`MAX_EXCHANGED_PEERS`] [`PeerContact`]s, each a peer id
//! and at most [`MAX_CONTACT_ADDRS`] addresses of at most [`MAX_CONTACT_BYTES`] bytes (as bytes:
//! this crate knows no libp2p types; the receiver parses them and drops what does not parse).
//! Downloaders that start together find each other through the peer they all fetch from, as
//! soon as they ask it, without waiting for the DHT (whose servers may be that very peer, its
//! uplink full of chunks). A contact is a hint: the receiver dials the peer id, and the
//! connection's handshake proves who answers.
//!
//! # Regions
//! A licence that lists regions binds where the user is (DESIGN.md "Trust policy", step 4). A
//! downloader with a configured region asks for chunks with `ChunkForRegion`, stating it; a
//! plain `Chunk` states none. A server answers a chunk of such content only to a requester whose
//! stated region is listed, and refuses the rest with `RegionNotLicensed`; its own region does
//! not matter. The stated region is self-declared: it carries the downloader operator's word,
//! as a user's country in a shop's checkout does, and nothing more.
//!
//! Any request may instead be answered `Refused { reason, detail }` (the trust policy's
//! [`RefusalReason`], append-only) or `Busy { retry_after_ms }`.
//!
//! # Catalogs
//! A catalog (format 2, [`crate::catalog_parts`]) is a signed root that names content-addressed
//! parts. A node fetches the root its head names with `CatalogPart`, in pieces of at most
//! [`CATALOG_PART_BYTES`], reassembled up to its `total_len` (at most the catalog root envelope
//! limit) and checked against the signed head's hash before it is decoded. Then it asks
//! `CatalogParts` for the parts it does not hold already (of the catalog it holds), at most
//! [`MAX_CATALOG_PARTS_PER_REQUEST`] hashes a request: first the pages, then the buckets those
//! name. The server answers from the catalog of that publisher it holds, every part asked or a
//! refusal (`NotHeld`), each part at most [`crate::catalog_parts::MAX_CATALOG_PART_BYTES`]; the
//! receiver checks each part hashes to the hash it asked for before it keeps it (a part that does
//! not costs the peer its connection), and the whole catalog against the signed root before the
//! catalog rules see it. An update that changes one bucket costs one root, one page and one
//! bucket.
//!
//! # Rules a receiver enforces
//! - a frame longer than [`MAX_FRAME_BYTES`] is refused before its body is read, and a request
//!   frame longer than [`MAX_REQUEST_FRAME_BYTES`]: the peer's connection is closed;
//! - a header that does not decode, an unknown variant, or a payload whose length differs from
//!   the declared `len` is a protocol violation: the peer's connection is closed;
//! - a chunk is verified against the signed root with its proof before a byte is written;
//! - `detail` is at most [`MAX_DETAIL_BYTES`], proofs at most [`MAX_AUDIT_PATH_LEN`] hashes.
//!
//! Every enum here is append-only: never reorder or remove a variant; add new ones at the end.

use serde::{Deserialize, Serialize};

use crate::{
    catalog_parts::MAX_CATALOG_PART_BYTES,
    encoding::{self, DecodeError},
    ids::{CatalogHash, CatalogPartHash, ManifestId},
    keys::PublicKey,
    manifest::{MAX_CHUNK_SIZE, Region},
    merkle::{AuditPath, MAX_AUDIT_PATH_LEN},
    policy::RefusalReason,
    signed::SignedKind,
};

/// The protocol name.
pub const PROTOCOL: &str = "/licet/transfer/1";
/// Longest frame (header + payload): the largest chunk plus room for its header and proof.
pub const MAX_FRAME_BYTES: usize = MAX_CHUNK_SIZE as usize + 64 * 1024;
/// Longest request frame. The largest request (`CatalogPart`: a request id, two 32-byte keys and
/// an offset) is under 100 bytes; a server that allowed `MAX_FRAME_BYTES` for requests would let
/// every served stream announce 16 MiB that never comes.
/// `CatalogParts` with [`MAX_CATALOG_PARTS_PER_REQUEST`] hashes is about 2.1 KiB.
pub const MAX_REQUEST_FRAME_BYTES: usize = 4 * 1024;
/// Most requests a requester keeps outstanding on one stream.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 64;
/// Longest refusal detail, in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Most peers in one [`Response::Peers`].
pub const MAX_EXCHANGED_PEERS: usize = 32;
/// Most addresses of one [`PeerContact`].
pub const MAX_CONTACT_ADDRS: usize = 8;
/// Longest peer id or address in a [`PeerContact`], in bytes.
pub const MAX_CONTACT_BYTES: usize = 256;
/// Most part hashes in one [`Request::CatalogParts`] (64 hashes keep the request near 2 KiB).
pub const MAX_CATALOG_PARTS_PER_REQUEST: usize = 64;
/// Size of a piece of a catalog root in [`Response::CatalogPart`] (the last may be shorter).
pub const CATALOG_PART_BYTES: u32 = 1024 * 1024;
/// The bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// A requester's number for a request, echoed in its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u32);

/// What a peer asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The signed manifest with this id.
    Manifest {
        /// Which manifest.
        id: ManifestId,
    },
    /// Which chunks of each file the peer holds.
    Availability {
        /// Which manifest.
        manifest: ManifestId,
    },
    /// One chunk with its audit path.
    Chunk {
        /// Which manifest.
        manifest: ManifestId,
        /// Index of the file in the manifest.
        file: u32,
        /// Index of the chunk in the file.
        index: u64,
    },
    /// The newest catalog head the peer accepted for `publisher`.
    CatalogHead {
        /// Whose catalog.
        publisher: PublicKey,
    },
    /// Part of a catalog envelope.
    CatalogPart {
        /// Whose catalog.
        publisher: PublicKey,
        /// Which catalog (from its signed head).
        catalog_hash: CatalogHash,
        /// Byte offset into the envelope, a multiple of [`CATALOG_PART_BYTES`].
        offset: u64,
    },
    /// One chunk with its audit path, for a requester that states the region its user is in.
    ChunkForRegion {
        /// Which manifest.
        manifest: ManifestId,
        /// Index of the file in the manifest.
        file: u32,
        /// Index of the chunk in the file.
        index: u64,
        /// Where the requester says its user is.
        region: Region,
    },
    /// Other peers that asked for this manifest's availability lately (peer exchange).
    Peers {
        /// Which manifest.
        manifest: ManifestId,
    },
    /// Parts of the publisher's catalog, by hash.
    CatalogParts {
        /// Whose catalog.
        publisher: PublicKey,
        /// The parts wanted, at most [`MAX_CATALOG_PARTS_PER_REQUEST`].
        hashes: Vec<CatalogPartHash>,
    },
    /// The peer's clock.
    Time,
}

/// A peer another peer knows, as a hint for where to fetch from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerContact {
    /// The peer id, in its binary form (a multihash).
    pub peer: Vec<u8>,
    /// Addresses the peer said it listens on, each in its binary multiaddr form.
    pub addrs: Vec<Vec<u8>>,
}

/// A presence bitfield: bit *i* (least significant bit first in byte *i* / 8) set means
/// chunk *i* is held. Bits past `bit_len` in the last byte are zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BitfieldParts")]
pub struct Bitfield {
    bit_len: u64,
    bytes: Vec<u8>,
}

#[derive(Deserialize)]
struct BitfieldParts {
    bit_len: u64,
    bytes: Vec<u8>,
}

/// Bitfield bytes that do not match its length.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("bitfield of {bit_len} bits has {byte_len} bytes or stray bits set past its end")]
pub struct BitfieldError {
    bit_len: u64,
    byte_len: usize,
}

impl TryFrom<BitfieldParts> for Bitfield {
    type Error = BitfieldError;
    fn try_from(parts: BitfieldParts) -> Result<Self, Self::Error> {
        // Noted only when refused: a note left by a valid bitfield would become the reason of a
        // later, unrelated failure in the same decode.
        let err = || {
            crate::encoding::noted(BitfieldError {
                bit_len: parts.bit_len,
                byte_len: parts.bytes.len(),
            })
        };
        if parts.bit_len.div_ceil(8) != parts.bytes.len() as u64 {
            return Err(err());
        }
        let used = (parts.bit_len % 8) as u32;
        if used != 0 && parts.bytes.last().is_some_and(|b| b >> used != 0) {
            return Err(err());
        }
        Ok(Bitfield {
            bit_len: parts.bit_len,
            bytes: parts.bytes,
        })
    }
}

impl Bitfield {
    /// `bit_len` bits, all clear.
    pub fn new(bit_len: u64) -> Bitfield {
        Bitfield {
            bit_len,
            bytes: vec![0; bit_len.div_ceil(8) as usize],
        }
    }

    /// The number of bits.
    pub fn len(&self) -> u64 {
        self.bit_len
    }

    /// Whether there are no bits.
    pub fn is_empty(&self) -> bool {
        self.bit_len == 0
    }

    /// Bit `i` (false past the end).
    pub fn get(&self, i: u64) -> bool {
        i < self.bit_len && self.bytes[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Sets bit `i` to `value`; ignored past the end.
    pub fn set(&mut self, i: u64, value: bool) {
        if i < self.bit_len {
            let byte = &mut self.bytes[(i / 8) as usize];
            if value {
                *byte |= 1 << (i % 8);
            } else {
                *byte &= !(1 << (i % 8));
            }
        }
    }

    /// How many bits are set.
    pub fn count_ones(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What a peer answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// An encoded signed manifest.
    Manifest {
        /// The envelope bytes exactly as the publisher signed them.
        envelope: Vec<u8>,
    },
    /// Which chunks the peer holds.
    Availability {
        /// One bitfield per file, in manifest order.
        files: Vec<Bitfield>,
    },
    /// A chunk: `len` payload bytes follow the header.
    Chunk {
        /// The chunk's audit path.
        proof: AuditPath,
        /// The chunk's length.
        len: u32,
    },
    /// An encoded signed catalog head.
    CatalogHead {
        /// The envelope bytes.
        envelope: Vec<u8>,
    },
    /// Part of a catalog envelope: `len` payload bytes follow the header.
    CatalogPart {
        /// The whole envelope's length.
        total_len: u64,
        /// Where this part starts.
        offset: u64,
        /// This part's length.
        len: u32,
    },
    /// The request is refused, with the trust policy's reason.
    Refused {
        /// Why.
        reason: RefusalReason,
        /// Particulars, at most [`MAX_DETAIL_BYTES`].
        detail: String,
    },
    /// The peer is at capacity; try again later or elsewhere.
    Busy {
        /// A hint, in milliseconds.
        retry_after_ms: u32,
    },
    /// Peers that asked for the manifest's availability lately.
    Peers {
        /// At most [`MAX_EXCHANGED_PEERS`].
        peers: Vec<PeerContact>,
    },
    /// The catalog parts asked for, in the order asked: their bytes follow the header, back to
    /// back.
    CatalogParts {
        /// Each part's length, at most [`MAX_CATALOG_PARTS_PER_REQUEST`] of them.
        lens: Vec<u32>,
    },
    /// The peer's clock when it answered.
    Time {
        /// Seconds since the Unix epoch (UTC).
        unix_seconds: i64,
    },
}

/// A request with its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// The requester's id for it.
    pub id: RequestId,
    /// The request.
    pub request: Request,
}

/// A response with the id of its request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The request's id.
    pub id: RequestId,
    /// The response.
    pub response: Response,
}

/// A frame that breaks the protocol. Costs the peer its connection.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix announces more than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME_BYTES}")]
    FrameTooLarge(u64),
    /// The header does not decode (garbage, truncation, unknown variant).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The payload length differs from what the header declares.
    #[error("frame declares a {declared}-byte payload but carries {actual}")]
    PayloadLength {
        /// Declared in the header.
        declared: u64,
        /// Present in the frame.
        actual: u64,
    },
    /// A field is over its limit.
    #[error("{0}")]
    OverLimit(&'static str),
}

/// Reads a length prefix and checks it against [`MAX_FRAME_BYTES`] before anything is allocated.
pub fn frame_length(prefix: [u8; LENGTH_PREFIX_BYTES]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix);
    if len as usize > MAX_FRAME_BYTES {
        return Err(WireError::FrameTooLarge(u64::from(len)));
    }
    Ok(len as usize)
}

/// Appends a whole request frame (length prefix and header) to `out`.
pub fn encode_request(frame: &RequestFrame, out: &mut Vec<u8>) {
    write_frame(frame, 0, out);
}

/// Appends a response frame's length prefix and header to `out`; the caller sends `payload_len`
/// payload bytes right after it (so a chunk is never copied into the frame buffer).
pub fn encode_response_header(frame: &ResponseFrame, out: &mut Vec<u8>) {
    write_frame(frame, declared_payload(&frame.response), out);
}

fn write_frame<T: Serialize>(value: &T, payload_len: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_BYTES]);
    encoding::encode_into(value, out);
    let header_len = (out.len() - start - LENGTH_PREFIX_BYTES) as u64;
    // Callers only frame bounded values; saturate rather than wrap if that is ever broken, so
    // the receiver refuses the frame instead of misparsing it.
    let total = u32::try_from(header_len + payload_len).unwrap_or(u32::MAX);
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&total.to_le_bytes());
}

fn declared_payload(response: &Response) -> u64 {
    match response {
        Response::Chunk { len, .. } | Response::CatalogPart { len, .. } => u64::from(*len),
        Response::CatalogParts { lens } => lens.iter().map(|len| u64::from(*len)).sum(),
        _ => 0,
    }
}

/// The parts of a [`Response::CatalogParts`] payload, one slice per length (the payload is the
/// lengths' sum: [`decode_response`] checked it).
pub fn split_catalog_parts<'a>(lens: &[u32], payload: &'a [u8]) -> Vec<&'a [u8]> {
    let mut rest = payload;
    lens.iter()
        .map(|len| {
            let (part, after) = rest.split_at((*len as usize).min(rest.len()));
            rest = after;
            part
        })
        .collect()
}

/// Decodes a request frame's body (what follows the length prefix). Requests have no payload.
pub fn decode_request(body: &[u8]) -> Result<RequestFrame, WireError> {
    let frame: RequestFrame = encoding::decode("request frame", body, MAX_REQUEST_FRAME_BYTES)?;
    if let Request::CatalogParts { hashes, .. } = &frame.request
        && (hashes.is_empty() || hashes.len() > MAX_CATALOG_PARTS_PER_REQUEST)
    {
        return Err(WireError::OverLimit(
            "a catalog parts request names no part or too many",
        ));
    }
    Ok(frame)
}

/// Decodes a response frame's body and returns it with its payload, checking every limit.
pub fn decode_response(body: &[u8]) -> Result<(ResponseFrame, &[u8]), WireError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::FrameTooLarge(body.len() as u64));
    }
    let (frame, payload): (ResponseFrame, &[u8]) = encoding::decode_prefix("response frame", body)?;
    let declared = declared_payload(&frame.response);
    if declared != payload.len() as u64 {
        return Err(WireError::PayloadLength {
            declared,
            actual: payload.len() as u64,
        });
    }
    match &frame.response {
        Response::Chunk { proof, len } => {
            if proof.0.len() > MAX_AUDIT_PATH_LEN {
                return Err(WireError::OverLimit("audit path is too long"));
            }
            if *len > MAX_CHUNK_SIZE {
                return Err(WireError::OverLimit("chunk is larger than any chunk size"));
            }
        }
        Response::Refused { detail, .. } if detail.len() > MAX_DETAIL_BYTES => {
            return Err(WireError::OverLimit("refusal detail is too long"));
        }
        Response::Peers { peers } => {
            if peers.len() > MAX_EXCHANGED_PEERS {
                return Err(WireError::OverLimit("too many peers in a peer exchange"));
            }
            let too_long = |bytes: &Vec<u8>| bytes.len() > MAX_CONTACT_BYTES;
            if peers.iter().any(|contact| {
                contact.addrs.len() > MAX_CONTACT_ADDRS
                    || too_long(&contact.peer)
                    || contact.addrs.iter().any(too_long)
            }) {
                return Err(WireError::OverLimit("a peer contact is out of bounds"));
            }
        }
        Response::CatalogPart {
            total_len,
            offset,
            len,
        } => {
            let limit = SignedKind::CatalogRoot.max_envelope_bytes() as u64;
            if *total_len > limit
                || *len > CATALOG_PART_BYTES
                || offset.saturating_add(u64::from(*len)) > *total_len
            {
                return Err(WireError::OverLimit("catalog part is out of bounds"));
            }
        }
        Response::CatalogParts { lens }
            if lens.len() > MAX_CATALOG_PARTS_PER_REQUEST
                || lens
                    .iter()
                    .any(|len| *len as usize > MAX_CATALOG_PART_BYTES) =>
        {
            return Err(WireError::OverLimit("catalog parts are out of bounds"));
        }
        _ => {}
    }
    Ok((frame, payload))
}

/// Cuts a refusal detail to [`MAX_DETAIL_BYTES`] at a character boundary.
pub fn bounded_detail(detail: &str) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail.to_owned();
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_owned()
}
