//! Catalog-root reassembly (`licet_node::catalogs::CatalogRootPieces`), fed the way a node fetching a
//! catalog feeds it: each answer is a response frame that went through `wire::decode_response`
//! first (a frame that does not decode, or is not a `CatalogPart`, ends the fetch).
//!
//! The input (read with `arbitrary`) is a true envelope and a list of answers: the honest next
//! part of it, a part with chosen fields (`total_len`, `offset`, `len`, the true bytes or
//! others), or a raw frame body.
//!
//! Properties checked (a failed assertion is a bug):
//! - a part is taken exactly when it is the one asked for: its offset is the next offset, its
//!   `total_len` that of the first part, and it moves on (`len > 0`) unless the envelope is whole;
//!   the refusal names the offsets (its text is safe to show);
//! - what is held is always the taken payloads in order, never more than the first `total_len`
//!   nor the catalog envelope limit (memory is bounded whatever the peer sends);
//! - every part taken before the end moves on, so a fetch ends after finitely many answers;
//! - the envelope is whole exactly when it holds `total_len` bytes; from honest parts it is the
//!   true envelope.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use licet_node::fuzzing::CatalogRootPieces;
use licet_proto::{
    signed::SignedKind,
    text::is_unsafe_to_show,
    wire::{self, LENGTH_PREFIX_BYTES, RequestId, Response, ResponseFrame},
};

#[derive(Arbitrary, Debug)]
enum Answer {
    /// The next part of the true envelope, of `1 + len % 4096` bytes at most.
    Honest { len: u16 },
    /// A part with chosen fields; `true_bytes`: its payload is taken from the true envelope at
    /// `offset` where it can be.
    Chosen {
        total_len: u64,
        offset: u64,
        len: u16,
        true_bytes: bool,
    },
    /// A raw response frame body.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// The true envelope: `len % 65536` bytes of a pattern from `seed`.
    envelope_len: u16,
    seed: u8,
    answers: Vec<Answer>,
}

/// A response frame's body for `response` + `payload`, as it comes off the wire.
fn frame_body(response: Response, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_response_header(
        &ResponseFrame {
            id: RequestId(0),
            response,
        },
        &mut out,
    );
    out.extend_from_slice(payload);
    out.split_off(LENGTH_PREFIX_BYTES)
}

fuzz_target!(|input: Input| {
    let limit = SignedKind::Catalog.max_envelope_bytes() as u64;
    let truth: Vec<u8> = (0..usize::from(input.envelope_len))
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(input.seed))
        .collect();

    let mut parts = CatalogRootPieces::default();
    let mut held: Vec<u8> = Vec::new();
    let mut first_total: Option<u64> = None;
    let mut all_honest = true;

    for answer in input.answers.iter().take(256) {
        let next = held.len() as u64;
        let body = match answer {
            Answer::Honest { len } => {
                let left = truth.len().saturating_sub(held.len());
                let len = left.min(1 + usize::from(*len) % 4096);
                let start = held.len().min(truth.len());
                frame_body(
                    Response::CatalogPart {
                        total_len: truth.len() as u64,
                        offset: next,
                        len: len as u32,
                    },
                    &truth[start..start + len],
                )
            }
            Answer::Chosen {
                total_len,
                offset,
                len,
                true_bytes,
            } => {
                all_honest = false;
                let len = usize::from(*len);
                let payload: Vec<u8> = match usize::try_from(*offset) {
                    Ok(at) if *true_bytes && at <= truth.len() => {
                        let mut bytes = truth[at..truth.len().min(at + len)].to_vec();
                        bytes.resize(len, 0);
                        bytes
                    }
                    _ => vec![0xa5; len],
                };
                frame_body(
                    Response::CatalogPart {
                        total_len: *total_len,
                        offset: *offset,
                        len: len as u32,
                    },
                    &payload,
                )
            }
            Answer::Raw(bytes) => {
                all_honest = false;
                bytes.clone()
            }
        };
        // The session: a frame that does not decode ends it, as does any other answer.
        let Ok((frame, payload)) = wire::decode_response(&body) else {
            return;
        };
        let Response::CatalogPart {
            total_len,
            offset,
            len,
        } = frame.response
        else {
            return;
        };
        assert_eq!(payload.len() as u64, u64::from(len));

        let expected = offset == next
            && first_total.is_none_or(|t| t == total_len)
            && (len > 0 || next == total_len);
        match parts.add(total_len, offset, len, payload) {
            Err(reason) => {
                assert!(!expected, "a part asked for was refused: {reason}");
                assert!(
                    reason.contains(&offset.to_string()) && reason.contains(&next.to_string()),
                    "{reason}"
                );
                assert!(!reason.chars().any(is_unsafe_to_show), "{reason:?}");
                return;
            }
            Ok(whole) => {
                assert!(expected, "a part not asked for was taken");
                first_total = Some(total_len);
                held.extend_from_slice(payload);
                assert_eq!(parts.next_offset(), held.len() as u64);
                assert!(parts.next_offset() <= total_len, "more than total_len held");
                assert!(parts.next_offset() <= limit, "more than the limit held");
                assert_eq!(whole, held.len() as u64 == total_len);
                if whole {
                    let envelope = std::mem::take(&mut parts).into_envelope();
                    assert_eq!(envelope, held);
                    if all_honest {
                        assert_eq!(envelope, truth);
                    }
                    return;
                }
                assert!(len > 0, "a part that does not move on was taken");
            }
        }
    }
});
