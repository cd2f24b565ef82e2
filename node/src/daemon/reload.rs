//! Reloading `config.toml` while the daemon runs (`SIGHUP`), and putting its `[[trust]]` in
//! force at start.
//!
//! Invariants:
//! - a reload runs [`Config::load`] again with the flags of the start, so flags, `LICET_*` and
//!   `RUST_LOG` keep the precedence over the file they had at start-up;
//! - a file that does not load (unreadable, not TOML, a bad setting) changes nothing: the
//!   running settings stay whole and the log says why;
//! - what changes while running: the bandwidth limits (`[limits]`, with its schedule and
//!   `lan_exempt`; changes made with `limits set` stay over them), the log filter and the
//!   trusted publishers of `[[trust]]`. Every other setting that differs is logged as needing a
//!   restart, and the running value stays the one compared against, so each reload names it
//!   again until the daemon restarts;
//! - `[[trust]]`: each publisher listed is trusted as `trust add` would (name, `require_catalog`,
//!   `mirror`); a publisher the file listed at the last load and lists no more is no longer
//!   trusted; publishers trusted with `trust add` and never listed are left alone;
//! - every change is logged as `setting: old → new`, or the reload says that nothing changed;
//!   a change of the file that a flag or a variable hides is logged as not used;
//!   a change of `log` is logged under the filter it replaces, the other changes under the new
//!   one.

use std::{fmt::Display, path::PathBuf};

use licet_proto::PublicKey;
use tracing::{error, info, warn};
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::{
    contract::{NodeApi, TrustAddRequest},
    daemon::config::{Config, Overrides, TrustFromFile},
    node::Node,
};

/// Changes the log filter of the running daemon.
pub type LogFilterHandle = reload::Handle<EnvFilter, Registry>;

/// When a changed setting takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// At once.
    Now,
    /// Only after a restart; until then the running value stays.
    AtRestart,
    /// Never while a variable or a flag that wins over the file is set (`RUST_LOG` for `log`).
    Overridden(&'static str),
}

/// One setting that differs between the running configuration and the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingChange {
    /// The setting, as `config.toml` names it (`limits.upload`, `trust.<key>`).
    pub setting: String,
    /// Its running value.
    pub old: String,
    /// Its value in the file (with the environment and the flags over it).
    pub new: String,
    /// When the change takes effect.
    pub applies: Applies,
}

fn list<T: Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn trust_text(entry: Option<&TrustFromFile>) -> String {
    let Some(entry) = entry else {
        return "not listed".to_owned();
    };
    let mut text = match &entry.name {
        Some(name) => format!(
            "trusted as \"{}\"",
            licet_proto::text::escape_for_terminal(name)
        ),
        None => "trusted".to_owned(),
    };
    if entry.require_catalog {
        text.push_str(", require_catalog");
    }
    if entry.mirror {
        text.push_str(", mirror");
    }
    text
}

/// The settings that differ between `old` (running) and `new` (just loaded), in the file's
/// order; `rust_log_set`: whether `RUST_LOG` wins over the file's `log`.
pub fn changes(old: &Config, new: &Config, rust_log_set: bool) -> Vec<SettingChange> {
    let mut out = Vec::new();
    let mut push = |setting: &str, old: String, new: String, applies: Applies| {
        if old != new {
            out.push(SettingChange {
                setting: setting.to_owned(),
                old,
                new,
                applies,
            });
        }
    };
    use Applies::{AtRestart, Now};
    push("listen", list(&old.listen), list(&new.listen), AtRestart);
    push(
        "bootstrap",
        list(&old.bootstrap),
        list(&new.bootstrap),
        AtRestart,
    );
    let region = |c: &Config| c.region.map_or("(none)".to_owned(), |r| r.to_string());
    push("region", region(old), region(new), AtRestart);
    push(
        "api_listen",
        old.api_listen.to_string(),
        new.api_listen.to_string(),
        AtRestart,
    );
    push(
        "catalog_poll_secs",
        old.catalog_poll.as_secs().to_string(),
        new.catalog_poll.as_secs().to_string(),
        AtRestart,
    );
    for (setting, was, now) in [
        (
            "connections_low",
            old.watermarks.low.to_string(),
            new.watermarks.low.to_string(),
        ),
        (
            "connections_high",
            old.watermarks.high.to_string(),
            new.watermarks.high.to_string(),
        ),
        (
            "connections_grace_secs",
            old.watermarks.grace.as_secs().to_string(),
            new.watermarks.grace.as_secs().to_string(),
        ),
    ] {
        push(setting, was, now, AtRestart);
    }
    push(
        "public_ranges",
        list(&old.public_ranges),
        list(&new.public_ranges),
        AtRestart,
    );
    for (setting, was, now) in [
        ("relay_service", old.relay_service, new.relay_service),
        ("mdns", old.mdns, new.mdns),
        ("upnp", old.upnp, new.upnp),
    ] {
        push(setting, was.to_string(), now.to_string(), AtRestart);
    }
    if old.deliveries != new.deliveries {
        let shown = |c: &Config| format!("{:?}", c.deliveries);
        push("deliveries", shown(old), shown(new), AtRestart);
    }
    let (was, now) = (&old.limits.base, &new.limits.base);
    for (setting, was, now) in [
        ("limits.upload", was.upload, now.upload),
        ("limits.download", was.download, now.download),
        ("limits.peer_upload", was.peer_upload, now.peer_upload),
        ("limits.peer_download", was.peer_download, now.peer_download),
    ] {
        push(setting, was.to_string(), now.to_string(), Now);
    }
    if old.limits.schedule != new.limits.schedule {
        // Two rules may read the same (days and hours) and differ in their rates: say so.
        let (was, now) = (list(&old.limits.schedule), list(&new.limits.schedule));
        let now = if was == now {
            format!("{now} (other rates)")
        } else {
            now
        };
        push("limits.schedule", was, now, Now);
    }
    push(
        "limits.lan_exempt",
        old.limits.lan_exempt.to_string(),
        new.limits.lan_exempt.to_string(),
        Now,
    );
    let log = |c: &Config| c.log.clone().unwrap_or_else(|| "(default)".to_owned());
    push(
        "log",
        log(old),
        log(new),
        if rust_log_set {
            Applies::Overridden("RUST_LOG")
        } else {
            Now
        },
    );
    let find = |c: &'_ Config, key: &PublicKey| -> Option<TrustFromFile> {
        c.trust.iter().find(|t| &t.publisher == key).cloned()
    };
    let mut keys: Vec<PublicKey> = old.trust.iter().map(|t| t.publisher).collect();
    keys.extend(
        new.trust
            .iter()
            .map(|t| t.publisher)
            .filter(|k| find(old, k).is_none()),
    );
    for key in keys {
        push(
            &format!("trust.{key}"),
            trust_text(find(old, &key).as_ref()),
            trust_text(find(new, &key).as_ref()),
            Now,
        );
    }
    out
}

/// Puts each publisher of `config`'s `[[trust]]` in force, unless it already is with the same
/// settings (at start).
pub async fn trust_from_file(node: &Node, config: &Config) {
    let trusted = match node.trust_list().await {
        Ok(reply) => reply.publishers,
        Err(e) => {
            error!("cannot read the trusted publishers to apply config.toml's [[trust]]: {e}");
            return;
        }
    };
    for entry in &config.trust {
        let same = trusted.iter().any(|t| {
            t.publisher == entry.publisher
                && (entry.name.is_none() || t.name == entry.name)
                && t.require_catalog == entry.require_catalog
                && t.mirror == entry.mirror
        });
        if !same {
            trust(node, entry).await;
        }
    }
}

async fn trust(node: &Node, entry: &TrustFromFile) -> bool {
    let request = TrustAddRequest {
        publisher: entry.publisher,
        name: entry.name.clone(),
        require_catalog: entry.require_catalog,
        mirror: entry.mirror,
    };
    match node.trust_add(request).await {
        Ok(_) => {
            info!(publisher = %entry.publisher, "trusting the publisher of config.toml ({})", trust_text(Some(entry)));
            true
        }
        Err(e) => {
            error!(publisher = %entry.publisher, "cannot trust the publisher of config.toml: {e}");
            false
        }
    }
}

/// Logs one change of a reload, as it applies.
fn log_change(change: &SettingChange) {
    let SettingChange {
        setting, old, new, ..
    } = change;
    match change.applies {
        Applies::AtRestart => {
            warn!("config.toml: {setting}: {old} → {new} needs a restart; {old} stays in force")
        }
        Applies::Overridden(variable) => {
            warn!("config.toml: {setting}: {old} → {new} not used: {variable} is set and wins")
        }
        Applies::Now => info!("config.toml reloaded: {setting}: {old} → {new}"),
    }
}

/// Reloads `config.toml` on demand and puts what changed in force (see the module docs).
pub struct Reloader {
    data_dir: PathBuf,
    flags: Overrides,
    /// What the file alone said at the last start or reload.
    file: Config,
    running: Config,
    log_filter: LogFilterHandle,
    node: Node,
}

impl Reloader {
    /// A reloader for the daemon started with `flags` and running with `running`, whose
    /// `config.toml` alone said `file` (both from [`Config::load_layers`]).
    pub fn new(
        data_dir: PathBuf,
        flags: Overrides,
        (file, running): (Config, Config),
        log_filter: LogFilterHandle,
        node: Node,
    ) -> Reloader {
        Reloader {
            data_dir,
            flags,
            file,
            running,
            log_filter,
            node,
        }
    }

    /// Loads `config.toml` again and puts what changed in force, logging each change.
    pub async fn reload(&mut self) {
        let path = self.data_dir.join("config.toml");
        info!("reloading {} (SIGHUP)", path.display());
        let (file, loaded) = match Config::load_layers(&self.data_dir, self.flags.clone()) {
            Ok(layers) => layers,
            Err(e) => {
                warn!("config.toml not reloaded, the running settings stay: {e}");
                return;
            }
        };
        let rust_log_set = rust_log_set();
        let mut changed = changes(&self.running, &loaded, rust_log_set);
        // A change of the file that a variable or a flag hides is named too, or editing the
        // file would seem to do nothing.
        let overridden: Vec<String> = changes(&file, &loaded, rust_log_set)
            .into_iter()
            .map(|c| c.setting)
            .collect();
        for hidden in changes(&self.file, &file, rust_log_set) {
            if overridden.contains(&hidden.setting)
                && !changed.iter().any(|c| c.setting == hidden.setting)
            {
                changed.push(SettingChange {
                    applies: Applies::Overridden("a flag or a LICET_* variable"),
                    ..hidden
                });
            }
        }
        self.file = file;
        if changed.is_empty() {
            info!("config.toml reloaded: nothing changed");
            return;
        }
        let mut next = self.running.clone();
        // The change of `log` is logged under the filter it replaces, every other change under
        // the new one: going quieter still says so, going louder shows the rest.
        let (log_changes, others): (Vec<_>, Vec<_>) =
            changed.iter().partition(|c| c.setting == "log");
        log_changes.into_iter().for_each(log_change);
        if loaded.log != self.running.log {
            if !rust_log_set {
                let filter = EnvFilter::new(log_filter_text(loaded.log.as_deref()));
                if let Err(e) = self.log_filter.reload(filter) {
                    error!("cannot change the log filter: {e}");
                }
            }
            next.log = loaded.log.clone();
        }
        others.into_iter().for_each(log_change);
        if loaded.limits != self.running.limits {
            self.node.bandwidth().reconfigure(loaded.limits.clone());
            next.limits = loaded.limits.clone();
        }
        next.trust = self.reload_trust(&loaded.trust).await;
        self.running = next;
    }

    /// Trusts what `listed` lists, stops trusting what the running file listed and `listed`
    /// does not; returns the list now in force (an entry that failed keeps its old state).
    async fn reload_trust(&self, listed: &[TrustFromFile]) -> Vec<TrustFromFile> {
        let mut in_force = Vec::new();
        for entry in listed {
            let was = self
                .running
                .trust
                .iter()
                .find(|t| t.publisher == entry.publisher);
            if was == Some(entry) || trust(&self.node, entry).await {
                in_force.push(entry.clone());
            } else if let Some(was) = was {
                in_force.push(was.clone());
            }
        }
        for was in &self.running.trust {
            if listed.iter().any(|t| t.publisher == was.publisher) {
                continue;
            }
            match self.node.trust_remove(was.publisher).await {
                Ok(()) => {
                    info!(publisher = %was.publisher, "no longer trusting the publisher (gone from config.toml)");
                }
                Err(e) => {
                    error!(publisher = %was.publisher, "cannot stop trusting the publisher gone from config.toml: {e}");
                    in_force.push(was.clone());
                }
            }
        }
        in_force
    }
}

/// The log filter when `RUST_LOG` is not set: `info`, except libp2p-kad's behaviour, whose only
/// warnings are its own automatic bootstrap failing on a node with no peer yet ("Failed to
/// trigger bootstrap: No known peers", at every lone start) and replication lookups failing;
/// the node bootstraps on its own schedule when it has bootstrap peers and says so itself.
pub const DEFAULT_LOG_FILTER: &str = "info,libp2p_kad::behaviour=error";

/// Whether `RUST_LOG` holds a filter, which then wins over `config.toml`'s `log`.
pub fn rust_log_set() -> bool {
    std::env::var("RUST_LOG").is_ok_and(|v| EnvFilter::try_new(v).is_ok())
}

/// The filter text for the file's `log` (or the default without one).
pub fn log_filter_text(file: Option<&str>) -> &str {
    file.unwrap_or(DEFAULT_LOG_FILTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::Overrides;

    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        Config::load(dir.path(), Overrides::default()).unwrap()
    }

    const KEY: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    #[test]
    fn each_change_is_named_with_old_and_new_and_when_it_applies() {
        let old = load("region = \"FR\"\n[limits]\nupload = \"8MiB/s\"\n");
        let new = load(&format!(
            "region = \"DE\"\nlog = \"debug\"\n[limits]\nupload = \"1MiB/s\"\n\
             [[trust]]\npublisher = \"{KEY}\"\nname = \"Acme\"\nrequire_catalog = true\n"
        ));
        let changed = changes(&old, &new, false);
        let shown: Vec<(String, String, String, Applies)> = changed
            .into_iter()
            .map(|c| (c.setting, c.old, c.new, c.applies))
            .collect();
        assert_eq!(
            shown,
            [
                ("region", "FR", "DE", Applies::AtRestart),
                ("limits.upload", "8 MiB/s", "1 MiB/s", Applies::Now),
                ("log", "(default)", "debug", Applies::Now),
                (
                    &*format!("trust.{KEY}"),
                    "not listed",
                    "trusted as \"Acme\", require_catalog",
                    Applies::Now
                ),
            ]
            .map(|(s, o, n, a)| (s.to_owned(), o.to_owned(), n.to_owned(), a))
        );
        assert!(changes(&new, &new, false).is_empty());
        let log = changes(&old, &new, true)
            .into_iter()
            .find(|c| c.setting == "log")
            .unwrap();
        assert_eq!(log.applies, Applies::Overridden("RUST_LOG"));
        let gone = changes(&new, &old, false)
            .into_iter()
            .find(|c| c.setting.starts_with("trust."))
            .unwrap();
        assert_eq!(gone.new, "not listed");
    }
}
