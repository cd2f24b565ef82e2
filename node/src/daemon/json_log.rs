//! The lines of `licet-node run --log-format json`: tracing-subscriber's JSON format, flattened
//! (`timestamp`, `level`, `message`, the event's fields, `target` at the top level of one object
//! per line), for log shippers.
//!
//! Invariant: every line is one JSON object with a non-empty string `message`. An event logged
//! with fields only (libp2p logs its `local_peer_id` at start that way) gets its fields as
//! `key=value` pairs for a message, the way the text format shows them, so a shipper that
//! indexes `message` never finds it missing.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, Writer},
    },
    registry::LookupSpan,
};

/// Keys of a JSON line that the formatter adds, as opposed to the event's own fields.
const FORMAT_KEYS: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "span",
    "spans",
    "threadName",
    "threadId",
    "filename",
    "line_number",
];

/// The event format of `--log-format json` (see the module docs); use it with
/// [`tracing_subscriber::fmt::format::JsonFields`].
pub struct JsonLines {
    json: Format<Json>,
}

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            json: tracing_subscriber::fmt::format().json().flatten_event(true),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_message(line, event.metadata().target()))
    }
}

/// `line` (one JSON object and a newline) with a `message` made from its fields if it has none
/// (after `level`); any other line unchanged.
fn with_message(line: String, target: &str) -> String {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line.trim_end()) else {
        return line;
    };
    if object
        .get("message")
        .and_then(Value::as_str)
        .is_some_and(|message| !message.is_empty())
    {
        return line;
    }
    let mut message = String::new();
    for (key, value) in &object {
        if FORMAT_KEYS.contains(&key.as_str()) || key == "message" {
            continue;
        }
        if !message.is_empty() {
            message.push(' ');
        }
        match value {
            Value::String(text) => {
                let _ = write!(message, "{key}={text}");
            }
            other => {
                let _ = write!(message, "{key}={other}");
            }
        }
    }
    if message.is_empty() {
        message = format!("event in {target}");
    }
    let mut with = Map::new();
    for (key, value) in object {
        if key == "message" {
            continue;
        }
        let after_level = key == "level";
        with.insert(key, value);
        if after_level {
            with.insert("message".to_owned(), Value::String(message.clone()));
        }
    }
    with.entry("message").or_insert(Value::String(message));
    format!("{}\n", Value::Object(with))
}

#[cfg(test)]
mod tests {
    use super::with_message;

    #[test]
    fn a_line_without_a_message_gets_its_fields_as_one() {
        let line = "{\"timestamp\":\"t\",\"level\":\"INFO\",\"local_peer_id\":\"12D3\",\"n\":3,\"target\":\"libp2p_swarm\"}\n";
        assert_eq!(
            with_message(line.to_owned(), "libp2p_swarm"),
            "{\"timestamp\":\"t\",\"level\":\"INFO\",\"message\":\"local_peer_id=12D3 n=3\",\"local_peer_id\":\"12D3\",\"n\":3,\"target\":\"libp2p_swarm\"}\n"
        );
        let bare = "{\"timestamp\":\"t\",\"level\":\"WARN\",\"target\":\"x\"}\n";
        assert!(with_message(bare.to_owned(), "x").contains("\"message\":\"event in x\""));
    }

    #[test]
    fn a_line_with_a_message_is_kept_as_it_is() {
        let line = "{\"level\":\"INFO\",\"message\":\"licet-node running\",\"peer_id\":\"p\"}\n";
        assert_eq!(with_message(line.to_owned(), "licet_node"), line);
    }
}
