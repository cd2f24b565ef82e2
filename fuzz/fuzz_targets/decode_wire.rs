//! The transfer protocol's frame decoding, on arbitrary bytes.
//!
//! The first 4 bytes are a length prefix for `wire::frame_length`; the rest is a frame body for
//! `wire::decode_request` and `wire::decode_response`.
//!
//! Properties checked (a failed assertion is a bug):
//! - `frame_length` accepts exactly the prefixes up to `MAX_FRAME_BYTES`;
//! - a request that decodes re-encodes (`encode_request`) to a frame whose prefix is its body
//!   length and whose body decodes to the same request;
//! - a response that decodes re-encodes (`encode_response_header`) to a header whose prefix counts
//!   header and payload, and header + the same payload decode to the same response and payload;
//! - encoding appends to a non-empty buffer without touching what was there;
//! - a decoded bitfield's bits agree with its count, and it has no bits past its length;
//! - `bounded_detail` returns a prefix of at most `MAX_DETAIL_BYTES` bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use licet_proto::wire::{
    self, Bitfield, LENGTH_PREFIX_BYTES, MAX_DETAIL_BYTES, MAX_FRAME_BYTES, Response,
};

const JUNK: &[u8] = b"\xffprevious frame\x00";

fuzz_target!(|data: &[u8]| {
    let Some((prefix, body)) = data.split_first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return;
    };
    let announced = u32::from_le_bytes(*prefix) as usize;
    match wire::frame_length(*prefix) {
        Ok(len) => assert!(len == announced && len <= MAX_FRAME_BYTES),
        Err(_) => assert!(announced > MAX_FRAME_BYTES),
    }

    if let Ok(frame) = wire::decode_request(body) {
        let mut out = JUNK.to_vec();
        wire::encode_request(&frame, &mut out);
        assert_eq!(&out[..JUNK.len()], JUNK, "encoding overwrote the buffer");
        let frame_bytes = &out[JUNK.len()..];
        let (prefix, header) = frame_bytes
            .split_first_chunk::<LENGTH_PREFIX_BYTES>()
            .expect("a frame has a prefix");
        let len = wire::frame_length(*prefix).expect("an encoded request is within the limit");
        assert_eq!(len, header.len(), "request prefix is not the frame length");
        let again = wire::decode_request(header).expect("an encoded request decodes");
        assert_eq!(again, frame);
    }

    if let Ok((frame, payload)) = wire::decode_response(body) {
        let mut out = JUNK.to_vec();
        wire::encode_response_header(&frame, &mut out);
        assert_eq!(&out[..JUNK.len()], JUNK, "encoding overwrote the buffer");
        let frame_bytes = &out[JUNK.len()..];
        let (prefix, header) = frame_bytes
            .split_first_chunk::<LENGTH_PREFIX_BYTES>()
            .expect("a frame has a prefix");
        let len = wire::frame_length(*prefix).expect("an encoded response is within the limit");
        assert_eq!(
            len,
            header.len() + payload.len(),
            "response prefix is not header + payload"
        );
        let mut whole = header.to_vec();
        whole.extend_from_slice(payload);
        let (again, again_payload) =
            wire::decode_response(&whole).expect("an encoded response decodes");
        assert_eq!(again, frame);
        assert_eq!(again_payload, payload);

        match &frame.response {
            Response::Availability { files } => files.iter().for_each(check_bitfield),
            Response::Refused { detail, .. } => assert!(detail.len() <= MAX_DETAIL_BYTES),
            _ => {}
        }
    }

    let text = String::from_utf8_lossy(body);
    let bounded = wire::bounded_detail(&text);
    assert!(bounded.len() <= MAX_DETAIL_BYTES);
    assert!(text.starts_with(bounded.as_str()));
    if text.len() <= MAX_DETAIL_BYTES {
        assert_eq!(bounded, text);
    }
});

fn check_bitfield(bits: &Bitfield) {
    assert_eq!(bits.as_bytes().len() as u64, bits.len().div_ceil(8));
    assert_eq!(bits.is_empty(), bits.len() == 0);
    let set = (0..bits.len()).filter(|&i| bits.get(i)).count() as u64;
    assert_eq!(set, bits.count_ones(), "bits set past the bitfield's end");
    assert!(!bits.get(bits.len()));
    assert!(!bits.get(u64::MAX));

    let mut copy = bits.clone();
    if let Some(last) = bits.len().checked_sub(1) {
        let was = copy.get(last);
        copy.set(last, !was);
        assert_eq!(copy.get(last), !was);
        copy.set(last, was);
    }
    copy.set(bits.len(), true);
    assert_eq!(
        &copy, bits,
        "setting a bit past the end changed the bitfield"
    );
}
