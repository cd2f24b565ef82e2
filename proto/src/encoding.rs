//! The one way bytes from outside become values, and values become bytes.
//!
//! Licet encodes every signed body and every wire message with `postcard` 1.x, whose format its
//! authors keep frozen for the whole 1.x series (signed bytes must never change meaning).
//!
//! Invariants:
//! - [`decode`] is the only decoder of outside bytes in the workspace. It takes an explicit byte
//!   limit and checks it *before* parsing, so an oversize input costs nothing but its length check;
//!   every length-prefixed sequence inside is further bounded by the input itself (postcard never
//!   preallocates more than the remaining bytes can hold).
//! - Trailing bytes after a value are an error. postcard also decodes overlong varints, so in
//!   general one value has several encodings that decode; where the exact bytes matter (signed
//!   envelopes, whose bytes are hashed), [`crate::signed::Signed::decode`] refuses any but the
//!   canonical one.

use std::cell::RefCell;

use serde::{Serialize, de::DeserializeOwned};

thread_local! {
    /// The message of the last validation failure inside a decode on this thread. postcard
    /// replaces custom serde errors with a fixed text, so validating constructors (`SafePath`,
    /// `Region`, `Bitfield`) record theirs here through [`noted`] and [`decode`] reports it.
    static VALIDATION_FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records `error` as the reason of the decode in progress on this thread, and returns it.
pub(crate) fn noted<E: std::fmt::Display>(error: E) -> E {
    VALIDATION_FAILURE.with(|v| *v.borrow_mut() = Some(error.to_string()));
    error
}

fn malformed(what: &'static str, error: postcard::Error) -> DecodeError {
    let noted = VALIDATION_FAILURE.with(|v| v.borrow_mut().take());
    let reason = match (error, noted) {
        (postcard::Error::SerdeDeCustom, Some(reason)) => reason,
        (error, _) => plain_reason(&error).to_owned(),
    };
    DecodeError::Malformed { what, reason }
}

/// postcard's failure in words for the person who gave the bytes (postcard's own texts name
/// its internals, such as "Serde Deserialization Error").
fn plain_reason(error: &postcard::Error) -> &'static str {
    use postcard::Error as E;
    match error {
        E::DeserializeUnexpectedEnd => "the bytes end before the value does (cut short?)",
        E::DeserializeBadVarint => "a number in it is not validly encoded",
        E::DeserializeBadBool
        | E::DeserializeBadChar
        | E::DeserializeBadOption
        | E::DeserializeBadEnum
        | E::DeserializeBadEncoding => "a field holds a value that field cannot take",
        E::DeserializeBadUtf8 => "a text field is not valid UTF-8",
        _ => "its bytes do not have the expected layout",
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than the caller allows for this kind of value.
    #[error("{what} is {len} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// The input's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a valid encoding of the value.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// postcard's or a validating constructor's explanation.
        reason: String,
    },
    /// A value decoded but bytes were left over after it.
    #[error("{what} has {extra} trailing bytes after its end")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
}

/// Decodes one `T` from `bytes`, which must be at most `limit` bytes and hold exactly one value.
///
/// `what` names the value in errors ("manifest body", "wire frame", ...).
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    VALIDATION_FAILURE.with(|v| v.borrow_mut().take());
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| malformed(what, e))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// Decodes one `T` from the front of `bytes` and returns it with the bytes after it.
///
/// For framed formats whose payload follows a header (see [`crate::wire`]). `bytes` must already
/// have passed a size check by the caller.
pub(crate) fn decode_prefix<'a, T: DeserializeOwned>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<(T, &'a [u8]), DecodeError> {
    VALIDATION_FAILURE.with(|v| v.borrow_mut().take());
    postcard::take_from_bytes::<T>(bytes).map_err(|e| malformed(what, e))
}

/// Encodes `value` with postcard. Encoding Licet's own types cannot fail (they hold no maps with
/// non-string keys, no unsized sequences), so a failure here is a bug and is reported as a
/// malformed value rather than a panic.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    match postcard::to_allocvec(value) {
        Ok(bytes) => bytes,
        // postcard only fails on types serde cannot describe up front; none of ours do.
        Err(e) => unreachable!("postcard cannot fail on licet types: {e}"),
    }
}

/// Appends the encoding of `value` to `out` (reusing its allocation).
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    match postcard::to_extend(value, std::mem::take(out)) {
        Ok(bytes) => *out = bytes,
        Err(e) => unreachable!("postcard cannot fail on licet types: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversize_input_is_rejected_before_parsing() {
        let bytes = vec![0u8; 101];
        let err = decode::<Vec<u8>>("test value", &bytes, 100).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                what: "test value",
                len: 101,
                limit: 100
            }
        );
        assert_eq!(
            err.to_string(),
            "test value is 101 bytes, over the limit of 100 bytes"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&7u32);
        bytes.push(0);
        let err = decode::<u32>("number", &bytes, 100).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TrailingBytes {
                what: "number",
                extra: 1
            }
        );
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u32::MAX elements in a 6-byte input must fail cleanly.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let err = decode::<Vec<u8>>("vector", &bytes, 100).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn malformed_input_is_explained_without_the_decoder_s_names() {
        for bytes in [&b"hello world"[..], &[0x80][..], &[5, 0xff, 0xfe][..]] {
            let err = decode::<(bool, String)>("test value", bytes, 100).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("test value is malformed: "), "{text}");
            assert!(
                !text.contains("Serde") && !text.contains("Deserializ") && !text.contains("varint"),
                "{text}"
            );
        }
    }
}
