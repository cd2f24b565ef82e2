//! `ls --watch` and `status --watch`: following the daemon's state live.
//!
//! On a terminal (stdout), the screen is cleared and the view drawn again every
//! [`REDRAW_INTERVAL`], under a line with the time and how to stop. Otherwise (a pipe, a file)
//! the view is printed once, then each change as one line, `HH:MM:SS  <line>`, with the state
//! asked for at the same interval: a line whose key (an id, a label) shows new text is printed
//! again, a keyed line that is gone prints `HH:MM:SS  <key>: gone`, and an unkeyed line is
//! printed when it is new.
//!
//! Invariants: one request per interval, each bounded by the client's timeout; Ctrl-C ends
//! with exit 0; a daemon that stops answering ends with exit 2 and says so. What is kept from
//! one view to the next is the previous view only.

use std::{collections::HashMap, future::Future, io::IsTerminal as _, time::Duration};

use super::Failure;

/// How often the view is asked for again.
pub(super) const REDRAW_INTERVAL: Duration = Duration::from_secs(1);

/// One look at the daemon's state.
pub(super) struct View {
    /// The whole view, as the command prints it without `--watch`.
    pub(super) text: String,
    /// Its lines as changes are told: with a key (the same thing from one view to the next)
    /// or none (told only when new). Lines that change all the time (uptime) are left out.
    pub(super) lines: Vec<(Option<String>, String)>,
}

/// What changed from `before` to `after`, one line each (without the time).
pub(super) fn changes(before: &View, after: &View) -> Vec<String> {
    let keyed_before: HashMap<&str, &str> = before
        .lines
        .iter()
        .filter_map(|(key, line)| key.as_deref().map(|k| (k, line.as_str())))
        .collect();
    let mut out = Vec::new();
    let mut keys_after = std::collections::HashSet::new();
    for (key, line) in &after.lines {
        match key {
            Some(key) => {
                keys_after.insert(key.as_str());
                if keyed_before.get(key.as_str()) != Some(&line.as_str()) {
                    out.push(line.clone());
                }
            }
            None => {
                if !before.lines.iter().any(|(k, l)| k.is_none() && l == line) {
                    out.push(line.clone());
                }
            }
        }
    }
    for (key, _) in &before.lines {
        if let Some(key) = key
            && !keys_after.contains(key.as_str())
        {
            out.push(format!("{key}: gone"));
        }
    }
    out
}

/// Follows `look` (see the module docs) until Ctrl-C (then `Ok`) or a failure.
pub(super) async fn follow<F, Fut>(what: &str, look: F) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<View, Failure>>,
{
    let terminal = std::io::stdout().is_terminal();
    tokio::select! {
        ended = follow_until_failure(what, look, terminal) => ended,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn follow_until_failure<F, Fut>(
    what: &str,
    mut look: F,
    terminal: bool,
) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<View, Failure>>,
{
    let mut ticks = tokio::time::interval(REDRAW_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut before: Option<View> = None;
    loop {
        ticks.tick().await;
        let view = look().await?;
        let now = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
        if terminal {
            // Home, clear the screen, then the view.
            print!(
                "\x1b[H\x1b[2J{what} at {now}, every {}s (Ctrl-C to stop)\n\n{}",
                REDRAW_INTERVAL.as_secs(),
                view.text
            );
        } else {
            match &before {
                None => print!("{}", view.text),
                Some(before) => {
                    for line in changes(before, &view) {
                        println!("{now}  {line}");
                    }
                }
            }
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        before = Some(view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(lines: &[(Option<&str>, &str)]) -> View {
        View {
            text: String::new(),
            lines: lines
                .iter()
                .map(|(k, l)| (k.map(str::to_owned), (*l).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_change_is_the_new_line_of_a_key_a_new_unkeyed_line_or_a_key_gone() {
        let before = view(&[
            (Some("ab"), "ab downloading 10%"),
            (Some("cd"), "cd complete"),
            (None, "listening on /ip4/127.0.0.1/tcp/1"),
        ]);
        let after = view(&[
            (Some("ab"), "ab downloading 20%"),
            (Some("ef"), "ef downloading 0%"),
            (None, "listening on /ip4/127.0.0.1/tcp/1"),
            (None, "listening on /ip4/127.0.0.1/tcp/2"),
        ]);
        assert_eq!(
            changes(&before, &after),
            [
                "ab downloading 20%",
                "ef downloading 0%",
                "listening on /ip4/127.0.0.1/tcp/2",
                "cd: gone"
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }
}
