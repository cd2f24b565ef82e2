//! `get`'s progress off a terminal: plain lines on stderr, one at the start, then one when the
//! download moved, at most every [`PLAIN_PROGRESS_INTERVAL`] (on a terminal `get` draws a bar,
//! `output::download_bar`, instead).

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use super::output::{clean, human_bytes, human_duration, peers_text, truncate};
use crate::contract::ContentInfo;

/// At most one plain progress line of `get` in this time (when stderr is not a terminal).
pub(super) const PLAIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// `get`'s progress as plain lines on stderr (not a terminal): one at the start, then one when
/// the download moved, at most every [`PLAIN_PROGRESS_INTERVAL`]. The rate is the average
/// since `get` started, over the bytes that came in meanwhile.
pub(super) struct PlainProgress {
    started: Instant,
    first_have: u64,
    last_line: Option<(Instant, u64)>,
}

impl PlainProgress {
    pub(super) fn new(info: &ContentInfo) -> PlainProgress {
        PlainProgress {
            started: Instant::now(),
            first_have: info.have_bytes,
            last_line: None,
        }
    }

    /// The line to print now for `info`, if one is due.
    pub(super) fn line(&mut self, info: &ContentInfo, now: Instant) -> Option<String> {
        let due = match self.last_line {
            None => true,
            Some((at, have)) => {
                have != info.have_bytes && now.duration_since(at) >= PLAIN_PROGRESS_INTERVAL
            }
        };
        if !due {
            return None;
        }
        self.last_line = Some((now, info.have_bytes));
        Some(progress_line(
            info,
            info.have_bytes.saturating_sub(self.first_have),
            now.duration_since(self.started),
        ))
    }
}

/// `get: "Title": 1.0 MiB of 4.0 MiB (25%), 512.0 KiB/s, ETA 6s, 2 peers sending`: `gained`
/// bytes came in over `elapsed` (rate and ETA only once some did).
fn progress_line(info: &ContentInfo, gained: u64, elapsed: Duration) -> String {
    let percent = if info.total_bytes == 0 {
        100
    } else {
        u128::from(info.have_bytes) * 100 / u128::from(info.total_bytes)
    };
    let mut line = format!(
        "get: \"{}\": {} of {} ({percent}%)",
        truncate(&clean(&info.title), 40),
        human_bytes(info.have_bytes),
        human_bytes(info.total_bytes)
    );
    let seconds = elapsed.as_secs_f64();
    if gained > 0 && seconds > 0.0 {
        let rate = gained as f64 / seconds;
        let left = info.total_bytes.saturating_sub(info.have_bytes) as f64;
        let _ = write!(
            line,
            ", {}/s, ETA {}",
            human_bytes(rate as u64),
            human_duration(Duration::from_secs_f64((left / rate).ceil().min(1e9)))
        );
    }
    let _ = write!(line, ", {} sending", peers_text(info.sending_peers));
    line
}

#[cfg(test)]
mod tests {
    use licet_proto::ManifestId;

    use super::*;
    use crate::{api::server::fake::content, contract::ContentState};

    #[test]
    fn plain_progress_says_how_much_how_fast_how_long_and_from_how_many() {
        let mut info = content(ManifestId([1; 32]), ContentState::Downloading, 1024);
        info.total_bytes = 4096;
        info.sending_peers = 2;
        let mut plain = PlainProgress::new(&info);
        let start = plain.started;
        assert_eq!(
            plain.line(&info, start).unwrap(),
            "get: \"Episode 1\": 1.0 KiB of 4.0 KiB (25%), 2 peers sending",
            "no rate nor ETA before any byte came in"
        );
        info.have_bytes = 2048;
        assert_eq!(
            plain.line(&info, start + Duration::from_secs(1)),
            None,
            "at most one line per interval"
        );
        let later = start + PLAIN_PROGRESS_INTERVAL;
        assert_eq!(
            plain.line(&info, later).unwrap(),
            "get: \"Episode 1\": 2.0 KiB of 4.0 KiB (50%), 512 B/s, ETA 4s, 2 peers sending"
        );
        assert_eq!(
            plain.line(&info, later + PLAIN_PROGRESS_INTERVAL),
            None,
            "no line while nothing moved"
        );
    }
}
