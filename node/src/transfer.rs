//! `/licet/transfer/1` over long-lived `libp2p-stream` streams: framing, the serving loop, and a
//! pipelined client [`Session`].
//!
//! The messages and their limits are specified in `licet_proto::wire`; this module moves them.
//! A downloader opens one stream per peer and keeps up to [`MAX_REQUESTS_IN_FLIGHT`] requests
//! outstanding on it; the server answers them in order on the same stream. One long-lived stream
//! per peer was chosen over request-response (one stream per request, default 10 s timeout
//! covering queueing and transfer): on this hardware it moved bulk data about twice as fast
//! (DESIGN-level notes in `LIBP2P-NOTES`: ~0.63 GB/s against 0.28–0.39 GB/s).
//!
//! Invariants:
//! - a frame's length is checked against `MAX_FRAME_BYTES` before its body is read or allocated;
//! - every read has a deadline ([`FRAME_READ_TIMEOUT`], [`STREAM_IDLE_TIMEOUT`]), so a peer that
//!   stalls or trickles bytes loses its stream instead of holding a task forever;
//! - a malformed frame from a peer is reported to the [`Responder`] (which bans the peer) and
//!   closes the stream; nothing it sent is acted on.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, io::AsyncRead, io::AsyncWrite};
use libp2p::{PeerId, Stream};
use licet_proto::wire::{
    self, LENGTH_PREFIX_BYTES, MAX_REQUESTS_IN_FLIGHT, Request, RequestFrame, RequestId, Response,
    ResponseFrame,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::debug;

use crate::network::TRANSFER_PROTOCOL;

/// Longest wait for the rest of a frame once its length has arrived.
pub const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a served stream may sit without a request before it is closed.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a request may wait for its answer (queueing on the peer included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream ended cleanly between frames.
    #[error("stream closed")]
    Closed,
    /// The peer broke the protocol (oversize, truncated or undecodable frame).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A deadline passed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The stream failed.
    #[error("stream error: {0}")]
    Io(String),
}

/// Reads one frame's body into `buffer` (reusing its allocation). `idle` bounds the wait for
/// the frame to begin.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), FrameError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    // The first byte may take as long as `idle`; the rest of the frame must follow promptly.
    match tokio::time::timeout(idle, reader.read(&mut prefix[..1])).await {
        Err(_) => return Err(FrameError::Timeout("waiting for a frame")),
        Ok(Ok(0)) => return Err(FrameError::Closed),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(FrameError::Io(e.to_string())),
    }
    let rest = async {
        reader.read_exact(&mut prefix[1..]).await?;
        let len = wire::frame_length(prefix)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        buffer.clear();
        buffer.resize(len, 0);
        reader.read_exact(buffer).await
    };
    match tokio::time::timeout(FRAME_READ_TIMEOUT, rest).await {
        Err(_) => Err(FrameError::Timeout("reading a frame")),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(FrameError::Protocol(e.to_string()))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(FrameError::Protocol("truncated frame".to_owned()))
        }
        Ok(Err(e)) => Err(FrameError::Io(e.to_string())),
    }
}

/// What the serving loop needs from the node.
pub trait Responder: Send + Sync + 'static {
    /// Answers one request from `peer`. For a chunk, the chunk's bytes go into `payload`
    /// (cleared first) and the response's `len` says how many.
    fn respond(
        &self,
        peer: PeerId,
        request: Request,
        payload: &mut Vec<u8>,
    ) -> impl Future<Output = Response> + Send;

    /// `peer` broke the protocol; the stream is being closed.
    fn protocol_violation(&self, peer: PeerId, reason: &str);
}

/// Serves one inbound stream until the peer closes it, stalls, or breaks the protocol.
pub async fn serve_stream<R: Responder>(responder: Arc<R>, peer: PeerId, mut stream: Stream) {
    let mut frame = Vec::new();
    let mut payload = Vec::new();
    let mut header = Vec::new();
    loop {
        match read_frame(&mut stream, &mut frame, STREAM_IDLE_TIMEOUT).await {
            Ok(()) => {}
            Err(FrameError::Closed) => break,
            Err(FrameError::Protocol(reason)) => {
                responder.protocol_violation(peer, &reason);
                break;
            }
            Err(e) => {
                debug!(%peer, "served stream ends: {e}");
                break;
            }
        }
        let request = match wire::decode_request(&frame) {
            Ok(request) => request,
            Err(e) => {
                responder.protocol_violation(peer, &e.to_string());
                break;
            }
        };
        payload.clear();
        let response = responder.respond(peer, request.request, &mut payload).await;
        header.clear();
        wire::encode_response_header(
            &ResponseFrame {
                id: request.id,
                response,
            },
            &mut header,
        );
        let sent = async {
            stream.write_all(&header).await?;
            if !payload.is_empty() {
                stream.write_all(&payload).await?;
            }
            stream.flush().await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(%peer, "served stream ends: {e}");
                break;
            }
            Err(_) => {
                debug!(%peer, "served stream ends: peer does not read");
                break;
            }
        }
    }
    let _ = stream.close().await;
}

/// Why a request on a [`Session`] failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The stream could not be opened.
    #[error("cannot open a transfer stream: {0}")]
    Open(String),
    /// The stream closed before the answer came.
    #[error("the peer closed the transfer stream")]
    Closed,
    /// No answer in time.
    #[error("the peer did not answer in time")]
    Timeout,
    /// The peer broke the protocol.
    #[error("the peer broke the protocol: {0}")]
    Protocol(String),
}

/// The answer to one request: the response and its frame (which holds the payload).
pub struct Reply {
    /// The response.
    pub response: Response,
    frame: Vec<u8>,
    payload_start: usize,
}

impl Reply {
    /// The payload bytes (a chunk or catalog part); empty for other responses.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload_start..]
    }
}

type Pending = Arc<Mutex<HashMap<RequestId, oneshot::Sender<Result<Reply, SessionError>>>>>;

struct Outgoing {
    frame: RequestFrame,
    reply: oneshot::Sender<Result<Reply, SessionError>>,
}

/// A pipelined client of one peer over one long-lived stream. Dropping it closes the stream.
pub struct Session {
    peer: PeerId,
    outgoing: mpsc::Sender<Outgoing>,
    permits: Arc<Semaphore>,
    next_id: AtomicU32,
    broken: Arc<Mutex<Option<SessionError>>>,
}

impl Session {
    /// Opens a transfer stream to `peer` (which must be connected).
    pub async fn open(
        control: &mut libp2p_stream::Control,
        peer: PeerId,
    ) -> Result<Session, SessionError> {
        let stream = tokio::time::timeout(
            REQUEST_TIMEOUT,
            control.open_stream(peer, TRANSFER_PROTOCOL),
        )
        .await
        .map_err(|_| SessionError::Open("timed out".to_owned()))?
        .map_err(|e| SessionError::Open(e.to_string()))?;
        let (reader, writer) = stream.split();
        let pending: Pending = Arc::default();
        let broken = Arc::new(Mutex::new(None));
        let (outgoing, receiver) = mpsc::channel(MAX_REQUESTS_IN_FLIGHT);
        tokio::spawn(write_requests(
            writer,
            receiver,
            pending.clone(),
            broken.clone(),
        ));
        tokio::spawn(read_responses(reader, pending, broken.clone(), peer));
        Ok(Session {
            peer,
            outgoing,
            permits: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
            next_id: AtomicU32::new(0),
            broken,
        })
    }

    /// The peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Whether the stream has failed (further requests will fail too).
    pub fn failure(&self) -> Option<SessionError> {
        self.broken.lock().ok().and_then(|b| b.clone())
    }

    /// Sends `request` and waits for its answer (at most [`REQUEST_TIMEOUT`] once sent). At
    /// most [`MAX_REQUESTS_IN_FLIGHT`] requests are outstanding; further callers wait.
    pub async fn request(&self, request: Request) -> Result<Reply, SessionError> {
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SessionError::Closed)?;
        let id = RequestId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (reply, answer) = oneshot::channel();
        self.outgoing
            .send(Outgoing {
                frame: RequestFrame { id, request },
                reply,
            })
            .await
            .map_err(|_| SessionError::Closed)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.failure().unwrap_or(SessionError::Closed)),
            Err(_) => Err(SessionError::Timeout),
        }
    }
}

fn fail_all(pending: &Pending, broken: &Mutex<Option<SessionError>>, error: SessionError) {
    if let Ok(mut b) = broken.lock() {
        b.get_or_insert(error.clone());
    }
    if let Ok(mut map) = pending.lock() {
        for (_, reply) in map.drain() {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

async fn write_requests<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut requests: mpsc::Receiver<Outgoing>,
    pending: Pending,
    broken: Arc<Mutex<Option<SessionError>>>,
) {
    let mut buffer = Vec::new();
    while let Some(Outgoing { frame, reply }) = requests.recv().await {
        if let Ok(mut map) = pending.lock() {
            map.insert(frame.id, reply);
        }
        buffer.clear();
        wire::encode_request(&frame, &mut buffer);
        let written = async {
            writer.write_all(&buffer).await?;
            writer.flush().await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, written).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                fail_all(&pending, &broken, SessionError::Closed);
                return;
            }
        }
    }
    let _ = writer.close().await;
}

async fn read_responses<R: AsyncRead + Unpin>(
    mut reader: R,
    pending: Pending,
    broken: Arc<Mutex<Option<SessionError>>>,
    peer: PeerId,
) {
    loop {
        let mut frame = Vec::new();
        let error = match read_frame(&mut reader, &mut frame, STREAM_IDLE_TIMEOUT).await {
            Ok(()) => match wire::decode_response(&frame) {
                Ok((decoded, payload)) => {
                    let payload_start = frame.len() - payload.len();
                    let reply = pending.lock().ok().and_then(|mut m| m.remove(&decoded.id));
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(Ok(Reply {
                                response: decoded.response,
                                frame,
                                payload_start,
                            }));
                            continue;
                        }
                        None => SessionError::Protocol(format!(
                            "answer to request {} that was never made",
                            decoded.id.0
                        )),
                    }
                }
                Err(e) => SessionError::Protocol(e.to_string()),
            },
            Err(FrameError::Closed) => SessionError::Closed,
            Err(FrameError::Protocol(reason)) => SessionError::Protocol(reason),
            Err(FrameError::Timeout(_)) => {
                // Idle with nothing outstanding is fine; keep waiting.
                if pending.lock().map(|m| m.is_empty()).unwrap_or(false) {
                    continue;
                }
                SessionError::Timeout
            }
            Err(FrameError::Io(_)) => SessionError::Closed,
        };
        debug!(%peer, "transfer session ends: {error}");
        fail_all(&pending, &broken, error);
        return;
    }
}
