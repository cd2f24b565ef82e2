//! Share links (`licet:<id>[?peer=<multiaddr>…]`), on arbitrary text: the parser the CLI runs
//! before `get` (`ShareLink::from_str`) and what the node makes of the link it is given
//! (the control API's `parse_link`: each peer hint as a multiaddr naming a peer).
//!
//! Properties checked (a failed assertion is a bug):
//! - a link that parses holds at most `MAX_LINK_PEERS` peer hints, each non-empty, at most
//!   `MAX_LINK_PEER_BYTES` and without `&`;
//! - it writes back (`Display`) to `licet:<64 lowercase hex>…`, which parses to the same link and
//!   writes back to the same text (one canonical form);
//! - a refusal's message holds no character `is_unsafe_to_show` refuses (the CLI prints it as it
//!   is), and is bounded whatever the length of the input;
//! - the node accepts a link only if the parser does, with the same id and as many hints, each a
//!   multiaddr that names its peer, and the hints written back make a link it reads the same;
//! - the node's refusal message is safe to show too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use licet_node::fuzzing::parse_share_link;
use licet_proto::{
    manifest::{MAX_LINK_PEER_BYTES, MAX_LINK_PEERS, ShareLink},
    text::is_unsafe_to_show,
};

/// Longest refusal message: the parser quotes at most 200 characters of the input, escaped
/// (at most 10 bytes each, `\u{10ffff}`), plus its fixed text; the node adds one hint
/// (at most `MAX_LINK_PEER_BYTES`, escaped) to its own fixed text.
const MAX_MESSAGE_BYTES: usize = 200 * 10 + MAX_LINK_PEER_BYTES * 10 + 512;

fn check_message(message: &str) {
    assert!(
        !message.chars().any(is_unsafe_to_show),
        "unsafe to show: {message:?}"
    );
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{} bytes: {message:?}",
        message.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = text.parse::<ShareLink>();
    match &parsed {
        Ok(link) => {
            assert!(link.peers.len() <= MAX_LINK_PEERS);
            for peer in &link.peers {
                assert!(!peer.is_empty() && peer.len() <= MAX_LINK_PEER_BYTES);
                assert!(!peer.contains('&'), "{peer:?}");
            }
            let written = link.to_string();
            let id = link.id.to_string();
            assert_eq!(id.len(), 64);
            assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            assert!(written.starts_with(&format!("licet:{id}")));
            let again: ShareLink = written
                .parse()
                .unwrap_or_else(|e| panic!("{written:?} does not parse back: {e}"));
            assert_eq!(&again, link, "{written:?}");
            assert_eq!(again.to_string(), written);
        }
        Err(e) => check_message(&e.to_string()),
    }

    match parse_share_link(text) {
        Ok((id, addrs)) => {
            let link = parsed.as_ref().expect("the node accepts only what parses");
            assert_eq!(id, link.id);
            assert_eq!(addrs.len(), link.peers.len());
            // The hints written back make a link the node reads as the same hints.
            if addrs
                .iter()
                .all(|a| a.len() <= MAX_LINK_PEER_BYTES && !a.contains('&'))
            {
                let mut again = format!("licet:{id}");
                for (i, addr) in addrs.iter().enumerate() {
                    again.push_str(if i == 0 { "?peer=" } else { "&peer=" });
                    again.push_str(addr);
                }
                let (again_id, again_addrs) = parse_share_link(&again)
                    .unwrap_or_else(|e| panic!("{again:?} is not accepted back: {e}"));
                assert_eq!(again_id, id);
                assert_eq!(again_addrs, addrs, "{again:?}");
            }
        }
        Err(message) => check_message(&message),
    }
});
