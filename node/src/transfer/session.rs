//! A requester's pipelined [`Session`] on one stream to a peer, and the [`FramePool`] its
//! answers are read into.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, io::AsyncRead, io::AsyncWrite};
use libp2p::PeerId;
use licet_proto::wire::{self, MAX_REQUESTS_IN_FLIGHT, Request, RequestFrame, RequestId, Response};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::debug;

use super::{
    REQUEST_TIMEOUT, STREAM_IDLE_TIMEOUT,
    framing::{FRAME_READ_STEP, FrameError, read_frame},
};
use crate::net::TRANSFER_PROTOCOL;

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

/// Most bytes of frame buffers a [`FramePool`] keeps for reuse: 16 frames of the default chunk
/// size (a download's pipeline to one peer). Buffers given back beyond it are freed.
pub const FRAME_POOL_BYTES: usize = 16 * FRAME_READ_STEP;

/// Frame buffers for answers, shared by a node's sessions: taken by a session's reader, given
/// back when the [`Reply`] that holds one is dropped. Reusing them spares a large allocation,
/// its page faults and its zero-filling for every chunk received.
#[derive(Clone, Default)]
pub struct FramePool(Arc<Mutex<PooledFrames>>);

#[derive(Default)]
struct PooledFrames {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl FramePool {
    fn frames(&self) -> std::sync::MutexGuard<'_, PooledFrames> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Vec<u8> {
        let mut frames = self.frames();
        let buffer = frames.buffers.pop().unwrap_or_default();
        frames.bytes -= buffer.capacity();
        buffer
    }

    fn give(&self, buffer: Vec<u8>) {
        let mut frames = self.frames();
        if buffer.capacity() > 0 && frames.bytes + buffer.capacity() <= FRAME_POOL_BYTES {
            frames.bytes += buffer.capacity();
            frames.buffers.push(buffer);
        }
    }

    /// Bytes of buffers kept now.
    #[cfg(test)]
    pub fn kept_bytes(&self) -> usize {
        self.frames().bytes
    }
}

/// A frame's buffer, given back to its pool when dropped.
struct PooledFrame {
    bytes: Vec<u8>,
    pool: FramePool,
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.bytes));
    }
}

/// The answer to one request: the response and its frame (which holds the payload). Dropping
/// it gives the frame's buffer back to the pool it came from.
pub struct Reply {
    /// The response.
    pub response: Response,
    frame: PooledFrame,
    payload_start: usize,
}

impl Reply {
    /// An answer made up, with `payload` as its payload (a fake peer's, in unit tests).
    #[cfg(test)]
    pub(crate) fn made_up(response: Response, payload: Vec<u8>) -> Reply {
        Reply {
            response,
            frame: PooledFrame {
                bytes: payload,
                pool: FramePool::default(),
            },
            payload_start: 0,
        }
    }

    /// The payload bytes (a chunk or catalog part); empty for other responses.
    pub fn payload(&self) -> &[u8] {
        &self.frame.bytes[self.payload_start..]
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
    /// Opens a transfer stream to `peer` (which must be connected); answers are read into
    /// buffers from `frames`.
    pub async fn open(
        control: &mut libp2p_stream::Control,
        peer: PeerId,
        frames: FramePool,
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
        tokio::spawn(read_responses(
            reader,
            pending,
            broken.clone(),
            peer,
            frames,
        ));
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
    frames: FramePool,
) {
    loop {
        // Given back to the pool however this frame ends (answered, idle, or broken).
        let mut frame = PooledFrame {
            bytes: frames.take(),
            pool: frames.clone(),
        };
        let error = match read_frame(
            &mut reader,
            &mut frame.bytes,
            STREAM_IDLE_TIMEOUT,
            wire::MAX_FRAME_BYTES,
        )
        .await
        {
            Ok(()) => match wire::decode_response(&frame.bytes) {
                Ok((decoded, payload)) => {
                    let payload_start = frame.bytes.len() - payload.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_pool_reuses_buffers_and_keeps_a_bounded_amount() {
        let pool = FramePool::default();
        let mut buffer = pool.take();
        assert_eq!(buffer.capacity(), 0, "an empty pool hands out a new buffer");
        buffer.reserve_exact(1000);
        let capacity = buffer.capacity();
        pool.give(buffer);
        assert_eq!(pool.kept_bytes(), capacity);
        assert_eq!(pool.take().capacity(), capacity, "the buffer comes back");
        assert_eq!(pool.kept_bytes(), 0);
        for _ in 0..MAX_REQUESTS_IN_FLIGHT + 4 {
            pool.give(Vec::with_capacity(FRAME_READ_STEP));
        }
        assert!(
            pool.kept_bytes() <= FRAME_POOL_BYTES,
            "{}",
            pool.kept_bytes()
        );
    }
}
