//! File path rules (`SafePath::new`, `check_path_set`), on arbitrary text and on variants of it
//! that macOS or Windows would take for the same name.
//!
//! The input is read (with `arbitrary`) as a list of strings, each tried as a `SafePath`, and a
//! list of variants: an accepted path changed to upper case, lower case, NFD or NFC, which the
//! fuzzer would hardly find by mutating bytes.
//!
//! Properties checked (a failed assertion is a bug):
//! - an accepted path holds none of the characters `licet_proto::text::is_unsafe_to_show`
//!   refuses, none of `<>"|?*\` or NUL, `:` nowhere, no component ending in a dot or space, and no
//!   Windows device name (checked here against a list written out independently of the crate);
//! - an accepted path decodes from its own encoding to itself;
//! - a refusal's message holds no unsafe character raw;
//! - an accepted set has no two paths whose folded components are equal or one a prefix of the
//!   other (one file twice, or a file where another path needs a directory), and whether a set is
//!   accepted does not depend on its order;
//! - an accepted path beside a different accepted variant of it is refused.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use licet_proto::{
    encoding,
    path::{SafePath, check_path_set},
    portable_name::folded,
    text::is_unsafe_to_show,
};
use unicode_normalization::UnicodeNormalization as _;

#[derive(Arbitrary, Debug)]
struct Input {
    texts: Vec<String>,
    /// (which accepted path, which change): 0 upper case, 1 lower case, 2 NFD, 3 NFC.
    variants: Vec<(u8, u8)>,
}

/// Windows device names, written out in full (not derived the way the crate derives them).
fn is_device_name(component: &str) -> bool {
    let stem = component
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end_matches(' ');
    let mut devices: Vec<String> = ["con", "prn", "aux", "nul", "conin$", "conout$"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for port in ["com", "lpt"] {
        for digit in [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³",
        ] {
            devices.push(format!("{port}{digit}"));
        }
    }
    devices.iter().any(|d| d.eq_ignore_ascii_case(stem))
}

fn check_accepted(path: &SafePath) {
    let text = path.as_str();
    assert!(!text.chars().any(is_unsafe_to_show), "{text:?}");
    assert!(
        !text.contains(['<', '>', ':', '"', '|', '?', '*', '\\', '\0']),
        "{text:?}"
    );
    for component in text.split('/') {
        assert!(!component.ends_with(['.', ' ']), "{text:?}");
        assert!(!is_device_name(component), "{text:?}");
    }
    let decoded: SafePath =
        encoding::decode("path", &encoding::encode(path), 8192).expect("an accepted path decodes");
    assert_eq!(&decoded, path);
}

fn keys(path: &SafePath) -> Vec<String> {
    path.as_str().split('/').map(folded).collect()
}

fuzz_target!(|input: Input| {
    let mut accepted = Vec::new();
    for text in input.texts.iter().take(64) {
        match SafePath::new(text.as_str()) {
            Ok(path) => {
                check_accepted(&path);
                accepted.push(path);
            }
            Err(e) => {
                let message = e.to_string();
                assert!(!message.chars().any(is_unsafe_to_show), "{message:?}");
            }
        }
    }

    let result = check_path_set(&accepted);
    let mut reversed = accepted.clone();
    reversed.reverse();
    assert_eq!(
        result.is_ok(),
        check_path_set(&reversed).is_ok(),
        "{accepted:?}"
    );
    if result.is_ok() {
        let all: Vec<Vec<String>> = accepted.iter().map(keys).collect();
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert!(
                    i == j || !b.starts_with(a),
                    "{:?} {:?}",
                    accepted[i],
                    accepted[j]
                );
            }
        }
    }

    for (which, change) in input.variants.iter().take(16) {
        let Some(path) = accepted.get(usize::from(*which) % accepted.len().max(1)) else {
            break;
        };
        let text = path.as_str();
        let variant: String = match change % 4 {
            0 => text.to_uppercase(),
            1 => text.to_lowercase(),
            2 => text.nfd().collect(),
            _ => text.nfc().collect(),
        };
        if let Ok(variant) = SafePath::new(variant)
            && variant != *path
        {
            assert!(
                check_path_set([path, &variant]).is_err(),
                "{path:?} and {variant:?} were both accepted"
            );
        }
    }
});
