//! `licet-node status` and `licet-node peers`: the daemon's own state and its peers.

use std::{fmt::Write as _, path::Path, time::Duration};

use super::{
    Failure, Verdict, call_failure, connect, live,
    output::{clean, human_bytes, human_duration, id_prefix, print_json, table},
};
use crate::{
    contract::{LimitsChange, LimitsReply, NetworkInfo, NodeHealth, PeersReply, StatusReply},
    net::reachability::Reachability,
};

/// `status`; with `watch`, followed live (`live.rs`).
pub(super) async fn status(data_dir: &Path, json: bool, watch: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    if watch {
        let client = &client;
        return live::follow("licet-node status", move || async move {
            let reply = client
                .status()
                .await
                .map_err(|e| call_failure(e, client, Verdict::UsageError))?;
            Ok(status_view(&reply))
        })
        .await;
    }
    let reply: StatusReply = client
        .status()
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&reply)
    } else {
        print!("{}", format_status(&reply));
        Ok(())
    }
}

/// `peers`.
pub(super) async fn peers(data_dir: &Path, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let reply: PeersReply = client
        .peers()
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&reply)
    } else {
        print!("{}", format_peers(&reply));
        Ok(())
    }
}

/// Width of the labels of `status`'s lines.
const LABEL_WIDTH: usize = 17;

/// `status --watch`'s view: `status`'s lines, each keyed by its label (a line without one, such
/// as a second listening address, is told only when new); the uptime, which changes every
/// second, is not told as a change.
fn status_view(status: &StatusReply) -> live::View {
    let text = format_status(status);
    let lines = text
        .lines()
        .filter_map(|line| {
            let label = line.get(..LABEL_WIDTH).unwrap_or(line).trim();
            match label {
                "uptime" => None,
                "" => Some((None, line.trim().to_owned())),
                label => Some((Some(label.to_owned()), line.to_owned())),
            }
        })
        .collect();
    live::View { text, lines }
}

/// `status`: one labelled line per field.
pub(super) fn format_status(status: &StatusReply) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "peer id          {}", clean(&status.peer_id));
    let _ = writeln!(out, "version          {}", clean(&status.version));
    let _ = writeln!(
        out,
        "region           {}",
        status.region.as_deref().map_or("(none)".to_owned(), clean)
    );
    let _ = writeln!(
        out,
        "uptime           {}",
        human_duration(Duration::from_secs(status.uptime_seconds))
    );
    let _ = writeln!(out, "connected peers  {}", status.connected_peers);
    let _ = writeln!(out, "trusted          {}", status.trusted_publishers);
    let _ = writeln!(
        out,
        "content          {} complete, {} downloading, {} failed{}",
        status.content.complete,
        status.content.downloading,
        status.content.failed,
        match status.content.paused {
            0 => String::new(),
            paused => format!(", {paused} paused"),
        }
    );
    if status.content.changed > 0 {
        let _ = writeln!(
            out,
            "changed on disk  {} item(s) with files not served (see `licet-node ls`, then \
             `licet-node check ID`)",
            status.content.changed
        );
    }
    format_health(&mut out, &status.health);
    format_network(&mut out, &status.network);
    format_limits(&mut out, &status.limits);
    if status.listen_addrs.is_empty() {
        let _ = writeln!(out, "listening on     (nothing yet)");
    }
    for (i, addr) in status.listen_addrs.iter().enumerate() {
        let label = if i == 0 { "listening on" } else { "" };
        let _ = writeln!(out, "{label:<17}{}", clean(addr));
    }
    for (i, c) in status.catalogs.iter().enumerate() {
        let label = if i == 0 { "catalogs" } else { "" };
        let state = match (c.sequence, &c.expires_at) {
            (Some(sequence), Some(expires)) => format!(
                "catalog {sequence}, {} until {}, {} revoked manifest(s), {} revoked delegate(s)",
                if c.expired { "expired" } else { "valid" },
                clean(expires),
                c.revoked_manifests,
                c.revoked_delegates
            ),
            _ => "no catalog yet".to_owned(),
        };
        let _ = writeln!(out, "{label:<17}{}: {state}", id_prefix(&c.publisher));
    }
    out
}

/// The `limits` line of `status`: the four rates in force, and the schedule rule if one is.
fn format_limits(out: &mut String, limits: &LimitsReply) {
    let shown = |bytes: u64| {
        crate::bandwidth::Rate::from_bytes_per_second(bytes)
            .map_or_else(|_| format!("{bytes} B/s"), |r| r.to_string())
    };
    let rates = &limits.in_force;
    let _ = writeln!(
        out,
        "limits           upload {}, download {}, per peer upload {}, download {}{}",
        shown(rates.upload),
        shown(rates.download),
        shown(rates.peer_upload),
        shown(rates.peer_download),
        limits
            .schedule_active
            .as_deref()
            .map_or(String::new(), |rule| format!(
                " (schedule {} in force)",
                clean(rule)
            ))
    );
    if limits.changed != LimitsChange::default() {
        let _ = writeln!(
            out,
            "                 changed while running (`licet-node limits reset` goes back)"
        );
    }
}

/// The `database`, `unsaved` and `clock` lines of `status`: each says what is wrong, if anything.
fn format_health(out: &mut String, health: &NodeHealth) {
    let _ = writeln!(
        out,
        "database         {}",
        health
            .database_problem
            .as_deref()
            .map_or("ok".to_owned(), |p| format!("CLOSED: {}", clean(p)))
    );
    if !health.unsaved_catalogs.is_empty() {
        let publishers: Vec<String> = health.unsaved_catalogs.iter().map(id_prefix).collect();
        let _ = writeln!(
            out,
            "unsaved catalogs {} (in force, saved once the database reopens)",
            publishers.join(", ")
        );
    }
    if !health.unsaved_trust_removals.is_empty() {
        let publishers: Vec<String> = health
            .unsaved_trust_removals
            .iter()
            .map(id_prefix)
            .collect();
        let _ = writeln!(
            out,
            "unsaved untrust  {} (no longer trusted here; saved once the database reopens, \
             trusted again if the node restarts before)",
            publishers.join(", ")
        );
    }
    if let Some(behind) = health.clock_behind_seconds {
        let _ = writeln!(
            out,
            "clock            BEHIND by {} s: a catalog issued at {} was accepted; licence \
             windows are judged by that time (set the clock right)",
            behind,
            health.time_floor.as_deref().map_or(String::new(), clean)
        );
    }
    if let Some(seconds) = health.clock_behind_peers_seconds {
        let _ = writeln!(out, "{}", peers_clock_line(seconds));
    }
}

/// The `clock` line when the clock is far from what peers say: `seconds` behind them (ahead if
/// negative).
fn peers_clock_line(seconds: i64) -> String {
    if seconds > 0 {
        format!(
            "clock            BEHIND peers by {seconds} s: ended releases may stay open here \
             (set the clock right)"
        )
    } else {
        format!(
            "clock            AHEAD of peers by {} s: releases end early here (set the clock \
             right)",
            -seconds
        )
    }
}

/// The `reachable` and `lan` lines of `status`.
fn format_network(out: &mut String, network: &NetworkInfo) {
    let reachable = match network.reachability {
        Reachability::Public => format!(
            "yes, at {}",
            network
                .public_addrs
                .iter()
                .map(|a| clean(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reachability::Private if network.relayed_addrs.is_empty() => {
            "NO (behind a NAT or firewall), no relay reservation yet".to_owned()
        }
        Reachability::Private => format!(
            "NO (behind a NAT or firewall); through {} relay(s): {}",
            network.relayed_addrs.len(),
            network
                .relayed_addrs
                .iter()
                .map(|a| clean(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reachability::Unknown => "not known yet (no peer has tested a public address)".to_owned(),
    };
    let _ = writeln!(out, "reachable        {reachable}");
    let on = |flag: bool| if flag { "on" } else { "off" };
    let _ = writeln!(
        out,
        "network          relay service {}, mDNS {}, UPnP {}",
        on(network.relay_service),
        on(network.mdns),
        on(network.upnp)
    );
}

/// `peers`: a table of peers.
fn format_peers(reply: &PeersReply) -> String {
    if reply.peers.is_empty() {
        return "no peers\n".to_owned();
    }
    let rows: Vec<Vec<String>> = reply
        .peers
        .iter()
        .map(|peer| {
            // The connection's remote address; a peer listed without one is a banned peer
            // that is no longer connected.
            let addr = match peer.addrs.as_slice() {
                [] => "not connected".to_owned(),
                [one] => clean(one),
                [first, rest @ ..] => format!("{} (+{})", clean(first), rest.len()),
            };
            let addr = if peer.relayed {
                format!("{addr} (relayed)")
            } else {
                addr
            };
            let state = if peer.banned {
                let until = peer
                    .banned_until
                    .as_deref()
                    .map(|at| format!(" until {}", clean(at)))
                    .unwrap_or_default();
                match &peer.ban_reason {
                    Some(reason) => format!("banned{until}: {}", clean(reason)),
                    None => format!("banned{until}"),
                }
            } else {
                "ok".to_owned()
            };
            vec![
                clean(&peer.peer_id),
                human_bytes(peer.bytes_in),
                human_bytes(peer.bytes_out),
                addr,
                state,
            ]
        })
        .collect();
    table(&["PEER ID", "RECEIVED", "SENT", "ADDRESS", "STATE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{test_support::*, trust::format_trust};

    #[tokio::test]
    async fn status_peers_and_trust_read_as_tables() {
        let (dir, server) = daemon_dir().await;
        let status = within(client_of(&dir).status()).await.unwrap();
        let text = format_status(&status);
        assert!(text.contains("peer id          12D3KooWFake"), "{text}");
        assert!(text.contains("uptime           1h 2m 5s"), "{text}");
        assert!(
            text.contains("1 complete, 2 downloading, 0 failed"),
            "{text}"
        );
        assert!(
            text.contains("listening on     /ip4/127.0.0.1/tcp/4001"),
            "{text}"
        );
        let peers = within(client_of(&dir).peers()).await.unwrap();
        let text = format_peers(&peers);
        assert!(
            text.contains("12D3KooWPeer  2.0 KiB   0 B   /ip4/10.0.0.2/tcp/4001  ok"),
            "{text}"
        );
        let trust = within(client_of(&dir).trust_list()).await.unwrap();
        let text = format_trust(&trust);
        assert!(text.contains("yes               no      Acme"), "{text}");
        drop(server);
    }

    #[test]
    fn a_banned_peer_shows_when_its_ban_ends() {
        let reply = PeersReply {
            peers: vec![crate::contract::PeerInfo {
                peer_id: "12D3KooWLiar".to_owned(),
                addrs: Vec::new(),
                relayed: false,
                bytes_in: 0,
                bytes_out: 0,
                banned: true,
                ban_reason: Some("sent a bad chunk".to_owned()),
                banned_until: Some("2027-01-15T08:10:00Z".to_owned()),
                offences: 1,
            }],
        };
        let text = format_peers(&reply);
        assert!(
            text.contains("not connected  banned until 2027-01-15T08:10:00Z: sent a bad chunk"),
            "{text}"
        );
    }
}
