//! The node's stream frame reader (`licet_node::transfer::read_frame`), on arbitrary streams:
//! the bytes arrive in reads of arbitrary sizes, and the stream then ends, stalls or fails. Frames
//! are read one after another into one reused buffer, as a served stream (request limit) or a
//! download session (response limit) reads them, and each frame read is decoded as such.
//!
//! The runtime's clock is paused, so a stalled stream meets its timeout at once.
//!
//! Properties checked against a model of the framing (a failed assertion is a bug):
//! - each frame read is exactly the bytes its prefix announces, whatever the reused buffer held;
//! - a prefix announcing more than the limit (or than `MAX_FRAME_BYTES`) is a protocol violation,
//!   and the buffer is left as it was: nothing is allocated for it;
//! - memory follows the bytes received, not the bytes announced: the buffer's capacity never
//!   exceeds what it had, or the frame's length, or the body bytes received plus one read step;
//! - a stream that ends between frames is `Closed`, inside a frame a protocol violation
//!   (truncated); a stall is a timeout, waiting for a frame or inside one; a failure is `Io`;
//! - the decoders take whatever frame was read without panicking.

#![no_main]

use std::{
    io,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
    time::Duration,
};

use arbitrary::Arbitrary;
use futures::io::AsyncRead;
use libfuzzer_sys::fuzz_target;
use licet_node::fuzzing::{FRAME_READ_STEP, FrameError, read_frame};
use licet_proto::wire::{self, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, MAX_REQUEST_FRAME_BYTES};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
});

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum End {
    /// The stream closes.
    Eof,
    /// The stream sends nothing more.
    Stall,
    /// The stream fails.
    Fail,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Limit {
    /// A served stream's requests.
    Request,
    /// A session's responses.
    Response,
    Small(u16),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    limit: Limit,
    /// The reused buffer's bytes before the first frame (`% 8192`).
    held: u16,
    /// Successive reads' largest sizes (cycled; 0 counts as 1).
    reads: Vec<u16>,
    end: End,
    stream: &'a [u8],
}

/// A stream that hands out its bytes in reads of the given sizes, then ends as told.
struct Stream<'a> {
    bytes: &'a [u8],
    at: usize,
    reads: &'a [u16],
    read: usize,
    end: End,
}

impl AsyncRead for Stream<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let left = self.bytes.len() - self.at;
        if left == 0 {
            return match self.end {
                End::Eof => Poll::Ready(Ok(0)),
                // Never woken: only the reader's own timeout ends the wait.
                End::Stall => Poll::Pending,
                End::Fail => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            };
        }
        let most = match self.reads.get(self.read % self.reads.len().max(1)) {
            Some(&size) => usize::from(size).max(1),
            None => usize::MAX,
        };
        self.read += 1;
        let n = buf.len().min(left).min(most);
        let at = self.at;
        buf[..n].copy_from_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

fuzz_target!(|input: Input<'_>| {
    let max = match input.limit {
        Limit::Request => MAX_REQUEST_FRAME_BYTES,
        Limit::Response => MAX_FRAME_BYTES,
        Limit::Small(max) => usize::from(max),
    };
    let bytes = input.stream;
    let mut stream = Stream {
        bytes,
        at: 0,
        reads: &input.reads,
        read: 0,
        end: input.end,
    };
    let mut buffer = vec![0xee; usize::from(input.held) % 8192];

    RUNTIME.block_on(async {
        let mut at = 0;
        loop {
            let capacity = buffer.capacity();
            let before = buffer.clone();
            let result = read_frame(&mut stream, &mut buffer, Duration::from_secs(120), max).await;

            let left = bytes.len() - at;
            if left == 0 {
                match input.end {
                    End::Eof => assert!(matches!(result, Err(FrameError::Closed)), "{result:?}"),
                    End::Stall => assert!(
                        matches!(result, Err(FrameError::Timeout("waiting for a frame"))),
                        "{result:?}"
                    ),
                    End::Fail => assert!(matches!(result, Err(FrameError::Io(_))), "{result:?}"),
                }
                assert_eq!(buffer, before, "the buffer changed without a frame");
                return;
            }
            let cut = |result: Result<(), FrameError>| match input.end {
                End::Eof => assert!(
                    matches!(&result, Err(FrameError::Protocol(r)) if r == "truncated frame"),
                    "{result:?}"
                ),
                End::Stall => assert!(
                    matches!(result, Err(FrameError::Timeout("reading a frame"))),
                    "{result:?}"
                ),
                End::Fail => assert!(matches!(result, Err(FrameError::Io(_))), "{result:?}"),
            };
            let Some(prefix) = bytes[at..].first_chunk::<LENGTH_PREFIX_BYTES>() else {
                cut(result);
                assert_eq!(
                    buffer, before,
                    "the buffer changed before a length was read"
                );
                return;
            };
            let len = u32::from_le_bytes(*prefix) as usize;
            if len > max || len > MAX_FRAME_BYTES {
                assert!(
                    matches!(&result, Err(FrameError::Protocol(r)) if r.contains("over the limit")),
                    "{len} over {max}: {result:?}"
                );
                assert_eq!(buffer, before, "a refused frame changed the buffer");
                assert_eq!(buffer.capacity(), capacity, "a refused frame allocated");
                return;
            }
            let body = &bytes[at + LENGTH_PREFIX_BYTES..];
            let received = body.len().min(len);
            assert!(
                buffer.capacity() <= capacity.max(len.min(received + FRAME_READ_STEP)),
                "{} bytes held for a {len}-byte frame of which {received} arrived (had {capacity})",
                buffer.capacity()
            );
            if body.len() < len {
                cut(result);
                return;
            }
            assert!(result.is_ok(), "a whole frame was not read: {result:?}");
            assert_eq!(buffer, &body[..len], "the frame read is not the frame sent");
            match input.limit {
                Limit::Request => {
                    let _ = wire::decode_request(&buffer);
                }
                _ => {
                    if let Ok((_, payload)) = wire::decode_response(&buffer) {
                        assert!(buffer.ends_with(payload));
                    }
                }
            }
            at += LENGTH_PREFIX_BYTES + len;
        }
    });
});
