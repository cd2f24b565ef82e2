//! What the client subcommands print: JSON, tables, sizes and durations for people, text from
//! peers made safe for a terminal, and the download progress bar.
//!
//! Invariant: text that came from publishers or peers goes through [`clean`] before it is shown.

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::Failure;
use crate::contract::ContentInfo;

/// Hex characters of a manifest id shown in tables.
const ID_PREFIX_CHARS: usize = 16;

pub(super) fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .context("cannot encode the reply as JSON")
        .map_err(Failure::other)?;
    println!("{text}");
    Ok(())
}

/// Escapes control characters, bidirectional overrides and invisible characters (`\u{202e}`),
/// so text from publishers and peers cannot move the cursor, recolour or reorder the terminal.
/// The one escaping function of the project: [`licet_proto::text::escape_for_terminal`].
pub(super) fn clean(text: &str) -> String {
    licet_proto::text::escape_for_terminal(text).into_owned()
}

/// At most `max` characters of `text`, ending in `…` if cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Bytes in binary units: `0 B`, `1023 B`, `1.0 KiB`, `1.5 GiB`.
pub(super) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration for people: `45s`, `10m`, `1h 2m 5s`, `3d 4h`.
pub(super) fn human_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(if days > 0 { 2 } else { 3 })
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

pub(super) fn peers_text(n: usize) -> String {
    if n == 1 {
        "1 peer".to_owned()
    } else {
        format!("{n} peers")
    }
}

/// `n` chunks, in the singular for one.
pub(super) fn chunks_text(n: u64) -> String {
    if n == 1 {
        "1 chunk".to_owned()
    } else {
        format!("{n} chunks")
    }
}

/// The first hex characters of an id or key, as shown in tables.
pub(super) fn id_prefix(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(ID_PREFIX_CHARS).collect()
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<pad$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A byte progress bar on stderr, hidden when stderr is not a terminal or `show` is false.
pub(super) fn download_bar(info: &ContentInfo, show: bool) -> ProgressBar {
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(info.total_bytes), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {wide_msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
         {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    // Bytes held before this run do not count towards the rate.
    bar.set_position(info.have_bytes);
    bar.reset_eta();
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_durations_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h 2m 5s");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)),
            "3d 4h"
        );
    }

    #[test]
    fn text_from_peers_cannot_drive_the_terminal() {
        assert_eq!(
            clean("a\u{1b}[2Jb\nc\u{202e}d"),
            "a\\u{1b}[2Jb\\u{a}c\\u{202e}d"
        );
        assert_eq!(clean("Épisode 1 — 日本"), "Épisode 1 — 日本");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcd", 4), "abcd");
        assert_eq!(truncate("日本語です", 3), "日本…");
    }

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["ID", "TITLE"],
            &[
                vec!["abc".to_owned(), "first".to_owned()],
                vec!["a".to_owned(), "second".to_owned()],
            ],
        );
        assert_eq!(text, "ID   TITLE\nabc  first\na    second\n");
    }
}
