//! The rules that make one path component a name every common file system can hold as it is, and
//! the key under which two names are the same file on a case-insensitive or normalising one.
//!
//! Invariants:
//! - [`check_component`] accepts only components that Windows (NTFS), macOS (APFS, HFS+) and
//!   Linux can all create under exactly that name, and that a terminal shows as they are: none of
//!   the characters of [`crate::text::is_unsafe_to_show`], none of `<>:"|?*`, no trailing dot or
//!   space (Windows silently drops them), and no device name Windows reserves (`CON`, `PRN`,
//!   `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`, the superscript forms `COM¹²³` and `LPT¹²³`,
//!   `CONIN$`, `CONOUT$`; in any case, also with an extension or trailing spaces before it, as
//!   `nul.txt` or `Con .srt`);
//! - [`folded`] maps two components to the same key whenever macOS or Windows could treat them as
//!   one name: it normalises to NFC (macOS stores NFD, so the NFC and NFD forms of `é` are one
//!   file there) and folds case (`Film.mkv` and `film.mkv` are one file on both). It may also join
//!   names that no file system joins (it is deliberately coarser than either: refusing such a pair
//!   in one manifest costs a publisher a rename, accepting a real collision lets one file
//!   overwrite another on a user's disk).
//!
//! The key is the NFD form, case-mapped (upper case then lower case with the standard library's
//! full mappings), with every `ι` written as the combining ypogegrammeni U+0345, in NFD again
//! (case mapping can leave text unnormalised). That joins every pair Unicode's full case folding
//! joins (`ß`/`SS`, `ς`/`σ`/`Σ`, `ﬁ`/`FI`, `K`/`K` Kelvin sign) and also what NTFS's upper-case
//! table joins but folding does not (dotless `ı` and `i`). The `ι` step is there because U+0345 is
//! the one combining mark with a case mapping: canonical reordering moves it among the other
//! marks (macOS joins `\u{35d}\u{345}\u{35d}\u{345}` and `\u{35d}\u{35d}\u{345}\u{345}`), while
//! its upper case `Ι` is a base letter that stays where it is (NTFS, which compares upper cases
//! and does not normalise, joins the first with `\u{35d}Ι\u{35d}Ι`); written as the mark and
//! reordered, all three get one key. Compatibility forms (NFKC: `x²` and `x2`, full-width `Ａ` and
//! `A`) are not joined: no file system treats them as one name.
//!
//! The case and normalisation tables are those of the standard library and of
//! `unicode-normalization` in this build; a character that a later Unicode version assigns may
//! fold differently in another build, so two releases can disagree about a manifest only over
//! names in characters one of them does not know yet.

use unicode_normalization::UnicodeNormalization as _;

use crate::text::is_unsafe_to_show;

/// Characters Windows does not allow in a name (beyond `\`, `/` and controls, refused anyway).
const WINDOWS_FORBIDDEN: [char; 7] = ['<', '>', ':', '"', '|', '?', '*'];

/// What makes a component a name that cannot travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameProblem {
    /// A character [`is_unsafe_to_show`].
    UnsafeToShow(char),
    /// A character of [`WINDOWS_FORBIDDEN`].
    ForbiddenOnWindows(char),
    /// Ends in `.` or ` `.
    TrailingDotOrSpace,
    /// A device name Windows reserves.
    ReservedOnWindows,
}

/// Checks one component (already known to be non-empty and not `.` or `..`) against the rules in
/// the module docs.
pub(crate) fn check_component(component: &str) -> Result<(), NameProblem> {
    for c in component.chars() {
        if is_unsafe_to_show(c) {
            return Err(NameProblem::UnsafeToShow(c));
        }
        if WINDOWS_FORBIDDEN.contains(&c) {
            return Err(NameProblem::ForbiddenOnWindows(c));
        }
    }
    if component.ends_with(['.', ' ']) {
        return Err(NameProblem::TrailingDotOrSpace);
    }
    if is_reserved_on_windows(component) {
        return Err(NameProblem::ReservedOnWindows);
    }
    Ok(())
}

/// Whether Windows takes `component` for a device: the part before the first `.`, without
/// trailing spaces, is a reserved device name in any case.
fn is_reserved_on_windows(component: &str) -> bool {
    let stem = component
        .split('.')
        .next()
        .unwrap_or(component)
        .trim_end_matches(' ')
        .to_ascii_uppercase();
    match stem.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => ["COM", "LPT"].iter().any(|port| {
            stem.strip_prefix(port).is_some_and(|digit| {
                let mut chars = digit.chars();
                matches!(
                    (chars.next(), chars.next()),
                    (Some('0'..='9' | '¹' | '²' | '³'), None)
                )
            })
        }),
    }
}

/// The key under which `component` is the same name as every other component with that key on a
/// case-insensitive or normalising file system (see the module docs).
pub fn folded(component: &str) -> String {
    if component.is_ascii() {
        return component.to_ascii_lowercase();
    }
    let decomposed: String = component.nfd().collect();
    decomposed
        .to_uppercase()
        .to_lowercase()
        .chars()
        .map(|c| if c == 'ι' { '\u{345}' } else { c })
        .nfd()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for ok in [
            "film.mkv",
            "Épisode 1 — 日本.mp4",
            ".hidden",
            "x..y",
            " leading space",
            "CONSOLE.txt",
            "com10",
            "lpt",
            "nul-and-void",
            "می\u{200c}خواهم",
        ] {
            assert_eq!(check_component(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn names_that_cannot_travel_are_refused() {
        use NameProblem::*;
        let cases = [
            ("a\u{1b}[2J", UnsafeToShow('\u{1b}')),
            ("a\u{7f}", UnsafeToShow('\u{7f}')),
            ("a\u{85}", UnsafeToShow('\u{85}')),
            ("evil\u{202e}vkm.exe", UnsafeToShow('\u{202e}')),
            ("a\u{2067}b", UnsafeToShow('\u{2067}')),
            ("a\u{61c}b", UnsafeToShow('\u{61c}')),
            ("fi\u{200b}lm.mkv", UnsafeToShow('\u{200b}')),
            ("a\u{2028}b", UnsafeToShow('\u{2028}')),
            ("what?.mkv", ForbiddenOnWindows('?')),
            ("a<b", ForbiddenOnWindows('<')),
            ("a>b", ForbiddenOnWindows('>')),
            ("a:b", ForbiddenOnWindows(':')),
            ("a\"b", ForbiddenOnWindows('"')),
            ("a|b", ForbiddenOnWindows('|')),
            ("a*b", ForbiddenOnWindows('*')),
            ("film.", TrailingDotOrSpace),
            ("film ", TrailingDotOrSpace),
            ("...", TrailingDotOrSpace),
            ("CON", ReservedOnWindows),
            ("con", ReservedOnWindows),
            ("nul.txt", ReservedOnWindows),
            ("Aux.tar.gz", ReservedOnWindows),
            ("Con .srt", ReservedOnWindows),
            ("PRN", ReservedOnWindows),
            ("COM0", ReservedOnWindows),
            ("com9.log", ReservedOnWindows),
            ("LPT1", ReservedOnWindows),
            ("lpt²", ReservedOnWindows),
            ("COM³.x", ReservedOnWindows),
            ("conin$", ReservedOnWindows),
            ("CONOUT$.txt", ReservedOnWindows),
        ];
        for (name, expected) in cases {
            assert_eq!(check_component(name), Err(expected), "{name:?}");
        }
    }

    #[test]
    fn folding_joins_what_macos_or_windows_would_join() {
        let same = [
            ("Film.mkv", "film.mkv"),
            ("FILM.MKV", "film.mkv"),
            ("caf\u{e9}", "cafe\u{301}"),
            ("CAF\u{c9}", "cafe\u{301}"),
            ("Straße", "STRASSE"),
            ("σας", "ΣΑΣ"),
            ("σασ", "ΣΑΣ"),
            ("\u{212a}elvin", "kelvin"),
            ("\u{fb01}le", "FILE"),
            ("d\u{131}r", "DIR"),
            ("\u{1fb3}", "\u{1fbc}"),
            ("\u{1fb3}", "\u{3b1}\u{345}"),
            // U+0345 reordered by normalisation, and its upper case pinned in place (found by the
            // path_rules fuzz target).
            (
                "\u{35d}\u{345}\u{35d}\u{345}21",
                "\u{35d}\u{35d}\u{345}\u{345}21",
            ),
            (
                "\u{35d}\u{345}\u{35d}\u{345}21",
                "\u{35d}\u{399}\u{35d}\u{399}21",
            ),
            (
                "\u{35d}\u{35d}\u{399}\u{399}21",
                "\u{35d}\u{399}\u{35d}\u{399}21",
            ),
        ];
        for (a, b) in same {
            assert_eq!(folded(a), folded(b), "{a:?} and {b:?}");
        }
        let different = [
            ("film.mkv", "film.mk"),
            ("x\u{b2}", "x2"),
            ("\u{ff21}", "a"),
        ];
        for (a, b) in different {
            assert_ne!(folded(a), folded(b), "{a:?} and {b:?}");
        }
    }
}
