//! Serving one inbound `/licet/transfer/1` stream: requests read ahead, answers prepared by the
//! [`Responder`] one ahead of the one being sent.

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::{PeerId, Stream};
use licet_proto::wire::{
    self, MAX_REQUESTS_IN_FLIGHT, Request, RequestFrame, Response, ResponseFrame,
};
use tokio::sync::mpsc;
use tracing::debug;

use super::{
    REQUEST_TIMEOUT, STREAM_IDLE_TIMEOUT,
    framing::{FrameError, read_frame},
    slots::Slot,
};

/// What the serving loop needs from the node.
pub trait Responder: Send + Sync + 'static {
    /// Answers one request from `peer`, read from the stream at `received` (its requester's
    /// deadline runs from about then). `payload` holds an earlier answer's bytes (its
    /// allocation is reused): for a chunk or a catalog part, the answer's bytes replace them and
    /// the response's `len` says how many; for any other response it is not sent.
    fn respond(
        &self,
        peer: PeerId,
        request: Request,
        received: Instant,
        payload: &mut Vec<u8>,
    ) -> impl Future<Output = Response> + Send;

    /// `peer` broke the protocol; the stream is being closed.
    fn protocol_violation(&self, peer: PeerId, reason: &str);
}

/// One answer on its way from a served stream's preparing part to its writing part.
struct Answer {
    header: Vec<u8>,
    payload: Vec<u8>,
}

/// Most requests a served stream reads ahead of the answer being prepared (a requester keeps at
/// most [`MAX_REQUESTS_IN_FLIGHT`] in flight; each is a few dozen bytes).
pub const REQUESTS_READ_AHEAD: usize = MAX_REQUESTS_IN_FLIGHT;

/// Whether the answer to `request` carries a payload (a chunk read from disk, a piece of a
/// catalog root, or catalog parts); other answers cost nothing to prepare.
fn answer_has_payload(request: &Request) -> bool {
    matches!(
        request,
        Request::Chunk { .. }
            | Request::ChunkForRegion { .. }
            | Request::CatalogPart { .. }
            | Request::CatalogParts { .. }
    )
}

/// Serves one inbound stream, in a place taken with [`StreamSlots::admit`](super::StreamSlots::admit), until the peer
/// closes it, stalls, or breaks the protocol.
///
/// The stream is served in three parts, so that requests are read ahead, and the next answer is
/// prepared (its chunk read from disk) while the previous one is still being sent: the reading
/// part reads and decodes requests, up to [`REQUESTS_READ_AHEAD`] ahead; the preparing part waits
/// for room in the queue (one answer), picks the next request, asks the [`Responder`] and queues
/// the answer; the writing part sends answers. So a stream holds at most two answers' payloads,
/// one being sent and one prepared. Requests are answered in the order they came, except that
/// one whose answer has no payload (availability, a manifest, a catalog head) goes before the
/// chunks read ahead of it: a downloader asking what this node has now learns it after at most
/// two chunks, not after all the chunks it has in flight here (answers may come in any order; the
/// requester matches them by id). When the peer closes its side, what it asked before is still
/// answered; when it breaks the protocol, nothing more is answered.
///
/// The place counts as waiting on the peer whenever no answer is being prepared, and since the
/// last chunk or catalog part it served (other answers cost nothing and do not count), so while
/// the stream idles, trickles a request, asks only cheap questions or leaves its answers unread,
/// the place may be handed to a newcomer, and the stream is then closed. The place is given back
/// when this returns.
pub async fn serve_stream<R: Responder>(
    responder: Arc<R>,
    peer: PeerId,
    stream: Stream,
    slot: Slot,
) {
    let (mut reader, mut writer) = stream.split();
    // Half the read-ahead waits in the channel, half in the preparing part's queue.
    let (requests_read, mut requests) =
        mpsc::channel::<(Instant, RequestFrame)>(REQUESTS_READ_AHEAD / 2);
    let (answers, mut to_send) = mpsc::channel::<Answer>(1);
    // Sent answers' buffers come back from the writing part for the next answers.
    let (spare, mut spares) = mpsc::channel::<Answer>(2);
    // Set when the peer breaks the protocol: what it asked before is not answered either.
    let broken = std::sync::atomic::AtomicBool::new(false);
    let (slot, broken) = (&slot, &broken);
    let reading = async {
        // Owned here, so that it is dropped when this part ends.
        let requests_read = requests_read;
        let mut frame = Vec::new();
        loop {
            let read = tokio::select! {
                read = read_frame(
                    &mut reader,
                    &mut frame,
                    STREAM_IDLE_TIMEOUT,
                    wire::MAX_REQUEST_FRAME_BYTES,
                ) => read,
                () = requests_read.closed() => break,
            };
            let problem = match read {
                Ok(()) => match wire::decode_request(&frame) {
                    Ok(request) => {
                        if requests_read.send((Instant::now(), request)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Err(e) => e.to_string(),
                },
                Err(FrameError::Closed) => break,
                Err(FrameError::Protocol(reason)) => reason,
                Err(e) => {
                    debug!(%peer, "served stream ends: {e}");
                    break;
                }
            };
            broken.store(true, Ordering::Relaxed);
            responder.protocol_violation(peer, &problem);
            break;
        }
        // Dropping `requests_read` here lets the preparing part answer what was read, and stop.
    };
    let preparing = async {
        // Owned here, so that it is dropped when this part ends.
        let answers = answers;
        let mut read_ahead: std::collections::VecDeque<(Instant, RequestFrame)> =
            std::collections::VecDeque::new();
        loop {
            // Room first: the answer is prepared only when it can be queued at once.
            let Ok(place) = answers.reserve().await else {
                break;
            };
            while read_ahead.len() < REQUESTS_READ_AHEAD / 2 {
                match requests.try_recv() {
                    Ok(request) => read_ahead.push_back(request),
                    Err(_) => break,
                }
            }
            if read_ahead.is_empty() {
                match requests.recv().await {
                    Some(request) => read_ahead.push_back(request),
                    None => break,
                }
            }
            let next = read_ahead
                .iter()
                .position(|(_, r)| !answer_has_payload(&r.request))
                .unwrap_or(0);
            let Some((received, request)) = read_ahead.remove(next) else {
                break;
            };
            if broken.load(Ordering::Relaxed) {
                break;
            }
            let Answer {
                mut header,
                mut payload,
            } = spares.try_recv().unwrap_or(Answer {
                header: Vec::new(),
                payload: Vec::new(),
            });
            let waiting_since = slot.start_answer();
            let response = responder
                .respond(peer, request.request, received, &mut payload)
                .await;
            let content = matches!(
                response,
                Response::Chunk { .. }
                    | Response::CatalogPart { .. }
                    | Response::CatalogParts { .. }
            );
            slot.end_answer(content, waiting_since);
            if !content {
                payload.clear();
            }
            header.clear();
            wire::encode_response_header(
                &ResponseFrame {
                    id: request.id,
                    response,
                },
                &mut header,
            );
            place.send(Answer { header, payload });
        }
        // Dropping `answers` here lets the writing part finish what is queued and stop.
    };
    let writing = async {
        while let Some(answer) = to_send.recv().await {
            let sent = async {
                writer.write_all(&answer.header).await?;
                if !answer.payload.is_empty() {
                    writer.write_all(&answer.payload).await?;
                }
                writer.flush().await
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
            let _ = spare.try_send(answer);
        }
        // Dropping `to_send` here stops the preparing part, and with it the reading part.
        drop(to_send);
    };
    tokio::select! {
        ((), (), ()) = futures::future::join3(reading, preparing, writing) => {}
        () = slot.evicted() => {
            debug!(%peer, "served stream closed: its place went to a new stream");
        }
    }
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, writer.close()).await;
}
