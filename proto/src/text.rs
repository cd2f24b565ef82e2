//! Text from publishers, peers and file systems, made safe to show on a terminal or in a log.
//!
//! Invariant: [`escape_for_terminal`] returns text without any character for which
//! [`is_unsafe_to_show`] holds; every other character is kept as it is, so ordinary names in any
//! script (`Épisode 1 — 日本`) are shown unchanged. The same set of characters is refused in a
//! [`crate::path::SafePath`], so a verified manifest's paths never need escaping; titles, error
//! texts and names read from a disk still do.

use std::{borrow::Cow, fmt::Write as _};

/// Whether `c` could change how a line is shown rather than being shown itself, or is invisible
/// while making two names differ:
/// - control characters (C0, DEL, C1): escape sequences move the cursor, recolour, retitle;
/// - bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069): they reorder
///   what follows, so `evil\u{202e}vkm.exe` shows as `evilexe.mkv`;
/// - line and paragraph separators (U+2028, U+2029): they break a log line in two;
/// - zero-width and invisible characters with no role in writing words (U+00AD soft hyphen,
///   U+200B zero-width space, U+2060–U+2064 word joiner and invisible operators, U+FEFF byte order
///   mark): `fi\u{200b}lm.mkv` looks exactly like `film.mkv`.
///
/// Kept on purpose: U+200C and U+200D (zero-width non-joiner and joiner), which Persian, Indic
/// scripts and emoji sequences need, and variation selectors, which emoji and CJK names use.
pub fn is_unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{00ad}'
                | '\u{200b}'
                | '\u{2060}'..='\u{2064}'
                | '\u{feff}'
        )
}

/// `text` with each character [`is_unsafe_to_show`] written as a Rust-style escape (`\u{202e}`),
/// so it can be printed to a terminal or a log and still says which character was there.
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_to_show) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_to_show(c) {
            let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// Makes a closed standard output end the process quietly with exit status 0, as a
/// command-line tool should (`licet-manifest inspect --json | head`): `println!` panics when
/// the reader has gone, and this panic hook turns exactly that panic into `exit(0)`, with
/// nothing printed. Any other panic goes to the hook that was installed before. Call it once,
/// first thing in `main`.
pub fn end_quietly_when_stdout_closes() {
    let earlier = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(is_closed_stdout_panic) {
            std::process::exit(0);
        }
        earlier(info);
    }));
}

/// Whether a panic message is the one `print!`/`println!` raise when standard output is a pipe
/// whose reader has closed it (`EPIPE`, error 32 on Linux and macOS).
fn is_closed_stdout_panic(message: &str) -> bool {
    message.starts_with("failed printing to stdout") && message.contains("(os error 32)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_closed_stdout_ends_the_process_quietly() {
        assert!(super::is_closed_stdout_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!super::is_closed_stdout_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!super::is_closed_stdout_panic(
            "index out of bounds (os error 32)"
        ));
    }

    use super::*;

    #[test]
    fn escapes_what_could_drive_or_disguise_a_terminal_and_nothing_else() {
        assert_eq!(
            escape_for_terminal("a\u{1b}[2Jb\nc\u{202e}d\u{9b}e\u{200b}f"),
            "a\\u{1b}[2Jb\\u{a}c\\u{202e}d\\u{9b}e\\u{200b}f"
        );
        for ordinary in [
            "Épisode 1 — 日本",
            "می\u{200c}خواهم",
            "👨\u{200d}👩\u{200d}👧",
            "",
        ] {
            assert!(matches!(
                escape_for_terminal(ordinary),
                Cow::Borrowed(s) if s == ordinary
            ));
        }
    }
}
