//! Reading one length-prefixed frame: its length checked before its body is read, its buffer
//! grown only as the bytes arrive, every read under a deadline.

use std::time::Duration;

use futures::{AsyncReadExt as _, io::AsyncRead};
use licet_proto::wire::{self, LENGTH_PREFIX_BYTES};

use super::FRAME_READ_TIMEOUT;

/// How far a frame's buffer may grow ahead of the bytes received: one default-size chunk and
/// its header in one step, so ordinary frames are read into one allocation.
pub const FRAME_READ_STEP: usize = 1024 * 1024 + 64 * 1024;

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

/// Reads one frame's body into `buffer` (reusing its allocation: the bytes it already holds are
/// overwritten, not cleared first, so a reused buffer costs no zero-filling). `idle` bounds the
/// wait for the frame to begin; a frame that announces more than `max` bytes (at most
/// `MAX_FRAME_BYTES`) is refused before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    idle: Duration,
    max: usize,
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
        let invalid =
            |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
        let len = wire::frame_length(prefix).map_err(|e| invalid(e.to_string()))?;
        if len > max {
            return Err(invalid(format!(
                "frame of {len} bytes is over the limit of {max} for it"
            )));
        }
        // The space the buffer already has is read into at once; beyond it, it grows with the
        // bytes received, not with what the prefix announces.
        buffer.truncate(len);
        let reused = buffer.len();
        reader.read_exact(&mut buffer[..reused]).await?;
        while buffer.len() < len {
            let filled = buffer.len();
            let step = (len - filled).min(FRAME_READ_STEP);
            buffer.reserve_exact(step);
            buffer.resize(filled + step, 0);
            reader.read_exact(&mut buffer[filled..]).await?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(announced: usize, body: &[u8]) -> Vec<u8> {
        let mut bytes = (announced as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    async fn read(bytes: &[u8], buffer: &mut Vec<u8>, max: usize) -> Result<(), FrameError> {
        let mut reader = futures::io::Cursor::new(bytes.to_vec());
        read_frame(&mut reader, buffer, Duration::from_secs(5), max).await
    }

    #[tokio::test]
    async fn a_reused_buffer_holds_exactly_the_next_frame() {
        let mut buffer = Vec::new();
        read(&frame(5, b"hello"), &mut buffer, 64).await.unwrap();
        read(&frame(2, b"ab"), &mut buffer, 64).await.unwrap();
        assert_eq!(buffer, b"ab");
        read(&frame(7, b"longest"), &mut buffer, 64).await.unwrap();
        assert_eq!(buffer, b"longest");
    }

    #[tokio::test]
    async fn a_frame_is_read_whole() {
        let mut buffer = Vec::new();
        read(
            &frame(3, b"abc"),
            &mut buffer,
            wire::MAX_REQUEST_FRAME_BYTES,
        )
        .await
        .unwrap();
        assert_eq!(buffer, b"abc");
        read(&frame(0, b""), &mut buffer, wire::MAX_REQUEST_FRAME_BYTES)
            .await
            .unwrap();
        assert!(buffer.is_empty());
    }

    #[tokio::test]
    async fn a_frame_over_its_limit_is_refused_before_its_body_is_read() {
        let mut buffer = Vec::new();
        let over = frame(wire::MAX_REQUEST_FRAME_BYTES + 1, &[0; 16]);
        let error = read(&over, &mut buffer, wire::MAX_REQUEST_FRAME_BYTES).await;
        assert!(matches!(error, Err(FrameError::Protocol(_))), "{error:?}");
        assert_eq!(buffer.capacity(), 0, "nothing was allocated");
        let huge = frame(u32::MAX as usize, &[0; 16]);
        let error = read(&huge, &mut buffer, wire::MAX_FRAME_BYTES).await;
        assert!(matches!(error, Err(FrameError::Protocol(_))), "{error:?}");
        assert_eq!(buffer.capacity(), 0, "nothing was allocated");
    }

    #[tokio::test]
    async fn an_announced_frame_costs_memory_only_as_its_bytes_arrive() {
        // The largest frame announced, 10 bytes sent: the buffer stays one step ahead at most.
        let mut buffer = Vec::new();
        let truncated = frame(wire::MAX_FRAME_BYTES, &[7; 10]);
        let error = read(&truncated, &mut buffer, wire::MAX_FRAME_BYTES).await;
        assert!(matches!(error, Err(FrameError::Protocol(_))), "{error:?}");
        assert!(
            buffer.capacity() <= FRAME_READ_STEP,
            "{} bytes reserved for 10 received",
            buffer.capacity()
        );
        // A whole large frame still arrives intact, across several steps.
        let body: Vec<u8> = (0..3 * FRAME_READ_STEP + 5).map(|i| i as u8).collect();
        read(
            &frame(body.len(), &body),
            &mut buffer,
            wire::MAX_FRAME_BYTES,
        )
        .await
        .unwrap();
        assert_eq!(buffer, body);
    }
}
