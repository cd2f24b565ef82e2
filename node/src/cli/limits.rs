//! `licet-node limits [set|reset]`: the bandwidth limits in force, and changes to them while
//! the daemon runs (they last until `limits reset` or a restart; `config.toml`'s `[limits]`,
//! `LICET_*_LIMIT` and `run`'s flags are what a restart comes back to).

use std::{fmt::Write as _, path::Path};

use clap::{Args, Subcommand};

use super::{
    Failure, Verdict, call_failure, connect,
    output::{clean, print_json},
};
use crate::{
    bandwidth::Rate,
    contract::{LimitRates, LimitsChange, LimitsReply},
};

/// `licet-node limits …`.
#[derive(Debug, Args)]
pub struct LimitsArgs {
    #[command(subcommand)]
    command: Option<LimitsCommand>,
    /// Print the daemon's reply as JSON.
    #[arg(long)]
    json: bool,
}

/// `limits set` and `limits reset`.
#[derive(Debug, Subcommand)]
enum LimitsCommand {
    /// Change limits now, until `limits reset` or a restart (the rates not given stay).
    #[command(
        after_help = "Example:\n  licet-node limits set --upload 8MB/s --download 0\n  licet-node limits set --peer-upload 500KiB/s\n\n\
        Rates: a number and a unit (B, kB, MB, GB, KiB, MiB, GiB, kbit, Mbit, Gbit, with or\n\
        without /s), or 0 for no limit."
    )]
    Set {
        /// Upload limit for all peers together.
        #[arg(long, value_name = "RATE")]
        upload: Option<Rate>,
        /// Download limit for all peers together.
        #[arg(long, value_name = "RATE")]
        download: Option<Rate>,
        /// Upload limit for each peer.
        #[arg(long, value_name = "RATE")]
        peer_upload: Option<Rate>,
        /// Download limit for each peer.
        #[arg(long, value_name = "RATE")]
        peer_download: Option<Rate>,
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Go back to the configured limits (config.toml, environment, flags, and the schedule).
    #[command(after_help = "Example:\n  licet-node limits reset")]
    Reset {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `limits`, `limits set` or `limits reset`.
pub(super) async fn run(args: LimitsArgs, data_dir: &Path) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let (change, json) = match args.command {
        None => (None, args.json),
        Some(LimitsCommand::Set {
            upload,
            download,
            peer_upload,
            peer_download,
            json,
        }) => {
            let bytes = |rate: Option<Rate>| rate.map(Rate::bytes_per_second);
            let change = LimitsChange {
                upload: bytes(upload),
                download: bytes(download),
                peer_upload: bytes(peer_upload),
                peer_download: bytes(peer_download),
                reset: false,
            };
            if change == LimitsChange::default() {
                return Err(Failure::Other(anyhow::anyhow!(
                    "give at least one of --upload, --download, --peer-upload, --peer-download"
                )));
            }
            (Some(change), json || args.json)
        }
        Some(LimitsCommand::Reset { json }) => (
            Some(LimitsChange {
                reset: true,
                ..LimitsChange::default()
            }),
            json || args.json,
        ),
    };
    let reply = match change {
        None => client.limits().await,
        Some(change) => client.limits_change(&change).await,
    }
    .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&reply)
    } else {
        print!("{}", format_limits(&reply));
        Ok(())
    }
}

/// A rate in bytes per second as text (`unlimited` for 0).
fn shown(bytes_per_second: u64) -> String {
    Rate::from_bytes_per_second(bytes_per_second)
        .map_or_else(|_| format!("{bytes_per_second} B/s"), |r| r.to_string())
}

/// The four rates of `rates`, with `label` before each name.
fn rate_lines(out: &mut String, limits: &LimitsReply, rates: &LimitRates) {
    for (name, now, configured, changed) in [
        (
            "upload",
            rates.upload,
            limits.configured.upload,
            limits.changed.upload,
        ),
        (
            "download",
            rates.download,
            limits.configured.download,
            limits.changed.download,
        ),
        (
            "peer upload",
            rates.peer_upload,
            limits.configured.peer_upload,
            limits.changed.peer_upload,
        ),
        (
            "peer download",
            rates.peer_download,
            limits.configured.peer_download,
            limits.changed.peer_download,
        ),
    ] {
        let note = if changed.is_some() {
            format!(" (set while running; configured {})", shown(configured))
        } else if now != configured {
            format!(" (by the schedule; configured {})", shown(configured))
        } else {
            String::new()
        };
        let _ = writeln!(out, "{name:<17}{}{note}", shown(now));
    }
}

/// `limits`: the rates in force, where they come from, the schedule and the LAN rule.
pub(super) fn format_limits(limits: &LimitsReply) -> String {
    let mut out = String::new();
    rate_lines(&mut out, limits, &limits.in_force);
    format_schedule(&mut out, limits);
    let _ = writeln!(
        out,
        "LAN peers        {}",
        if limits.lan_exempt {
            "exempt"
        } else {
            "limited"
        }
    );
    if limits.changed != LimitsChange::default() {
        let _ = writeln!(
            out,
            "Changes made while running last until `licet-node limits reset` or a restart."
        );
    }
    out
}

/// The `schedule` lines: each rule, and which is in force.
pub(super) fn format_schedule(out: &mut String, limits: &LimitsReply) {
    if limits.schedule.is_empty() {
        let _ = writeln!(out, "schedule         (none)");
    }
    for (i, rule) in limits.schedule.iter().enumerate() {
        let label = if i == 0 { "schedule" } else { "" };
        let active = if limits.schedule_active.as_deref() == Some(rule.as_str()) {
            " (in force now)"
        } else {
            ""
        };
        let _ = writeln!(out, "{label:<17}{}{active}", clean(rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rates_say_where_they_come_from() {
        let limits = LimitsReply {
            in_force: LimitRates {
                upload: 8 << 20,
                download: 1 << 20,
                ..LimitRates::default()
            },
            configured: LimitRates {
                upload: 0,
                download: 4 << 20,
                ..LimitRates::default()
            },
            changed: LimitsChange {
                upload: Some(8 << 20),
                ..LimitsChange::default()
            },
            schedule_active: Some("mon 08:00-18:00".to_owned()),
            schedule: vec!["mon 08:00-18:00".to_owned(), "sat 00:00-24:00".to_owned()],
            lan_exempt: false,
        };
        let text = format_limits(&limits);
        assert!(
            text.contains("upload           8 MiB/s (set while running; configured unlimited)"),
            "{text}"
        );
        assert!(
            text.contains("download         1 MiB/s (by the schedule; configured 4 MiB/s)"),
            "{text}"
        );
        assert!(text.contains("peer upload      unlimited\n"), "{text}");
        assert!(text.contains("mon 08:00-18:00 (in force now)"), "{text}");
        assert!(text.contains("LAN peers        limited"), "{text}");
        assert!(text.contains("limits reset` or a restart"), "{text}");
    }
}
