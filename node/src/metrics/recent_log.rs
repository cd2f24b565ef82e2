//! The daemon's recent log lines, kept in memory for the control API (`GET /v1/log`) and the
//! dashboard's log page.
//!
//! Invariants:
//! - at most [`MAX_LOG_LINES`] lines are kept (the oldest go first), each message cut at
//!   [`MAX_LOG_LINE_BYTES`] on a character boundary: memory is bounded however much is logged
//!   and whatever a peer makes the node log;
//! - [`RecentLogLayer`] sees only the events the log filter lets through, so the lines are
//!   those the log on stderr shows;
//! - line numbers (`seq`) start at 1 and grow by one per line, also past lines dropped.

use std::{
    collections::VecDeque,
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, layer::Context};

use crate::contract::{LogLine, MAX_LOG_LINE_BYTES, MAX_LOG_LINES};

/// The recent log lines; cloned handles share them.
#[derive(Clone, Debug, Default)]
pub struct RecentLog {
    inner: Arc<Mutex<Lines>>,
}

#[derive(Debug, Default)]
struct Lines {
    lines: VecDeque<LogLine>,
    last_seq: u64,
}

impl RecentLog {
    /// An empty log.
    pub fn new() -> RecentLog {
        RecentLog::default()
    }

    /// The layer that records every event it is given into this log.
    pub fn layer(&self) -> RecentLogLayer {
        RecentLogLayer { log: self.clone() }
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        let lines = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        lines.lines.iter().cloned().collect()
    }

    /// Records a line (its message cut to [`MAX_LOG_LINE_BYTES`]).
    fn push(&self, time: String, level: String, target: String, mut message: String) {
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut end = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let mut lines = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        lines.last_seq += 1;
        let seq = lines.last_seq;
        if lines.lines.len() == MAX_LOG_LINES {
            lines.lines.pop_front();
        }
        lines.lines.push_back(LogLine {
            seq,
            time,
            level,
            target,
            message,
        });
    }
}

/// A `tracing` layer that records events into a [`RecentLog`].
#[derive(Debug)]
pub struct RecentLogLayer {
    log: RecentLog,
}

impl<S: Subscriber> Layer<S> for RecentLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = MessageText::default();
        event.record(&mut text);
        let metadata = event.metadata();
        self.log.push(
            jiff::Timestamp::now()
                .round(jiff::Unit::Millisecond)
                .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string()),
            metadata.level().to_string(),
            metadata.target().to_owned(),
            text.finish(),
        );
    }
}

/// An event's message, then its other fields as `key=value`, as the text log writes them.
#[derive(Default)]
struct MessageText {
    message: String,
    fields: String,
}

impl MessageText {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }

    /// Stops adding once the text is past what a line keeps.
    fn full(&self) -> bool {
        self.message.len() + self.fields.len() > MAX_LOG_LINE_BYTES
    }
}

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.full() {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.full() {
            return;
        }
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn logged(log: &RecentLog, work: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(log.layer());
        tracing::subscriber::with_default(subscriber, work);
    }

    #[test]
    fn a_line_has_its_level_target_message_and_fields() {
        let log = RecentLog::new();
        logged(&log, || {
            tracing::warn!(peer = "12D3KooW", bytes = 7, "a peer sent a bad chunk");
            tracing::info!("plain");
        });
        let lines = log.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].seq, 1);
        assert_eq!(lines[0].level, "WARN");
        assert!(
            lines[0].target.ends_with("recent_log::tests"),
            "{:?}",
            lines[0]
        );
        assert_eq!(
            lines[0].message,
            "a peer sent a bad chunk peer=12D3KooW bytes=7"
        );
        assert!(lines[0].time.parse::<jiff::Timestamp>().is_ok());
        assert_eq!((lines[1].seq, lines[1].message.as_str()), (2, "plain"));
    }

    #[test]
    fn lines_and_their_length_are_bounded() {
        let log = RecentLog::new();
        let long = "é".repeat(MAX_LOG_LINE_BYTES);
        logged(&log, || {
            for n in 0..MAX_LOG_LINES + 20 {
                tracing::info!("line {n} {long}");
            }
        });
        let lines = log.lines();
        assert_eq!(lines.len(), MAX_LOG_LINES, "the oldest lines go first");
        assert_eq!(lines[0].seq, 21);
        assert_eq!(lines.last().unwrap().seq, (MAX_LOG_LINES + 20) as u64);
        assert!(lines[0].message.starts_with("line 20 "));
        assert!(
            lines
                .iter()
                .all(|l| l.message.len() <= MAX_LOG_LINE_BYTES && l.message.len() > 1000)
        );
    }
}
