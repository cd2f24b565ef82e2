//! Configuration: `config.toml` in the data directory, then `LICET_*` environment variables,
//! then command-line flags (each later source overrides the earlier for the settings it gives).
//!
//! | setting | `config.toml` | environment | flag | default |
//! |---|---|---|---|---|
//! | data directory | – | `LICET_DATA_DIR` | `--data-dir` | the platform data dir (`$XDG_DATA_HOME/licet` on Linux) |
//! | listen addresses | `listen = [...]` | `LICET_LISTEN` (comma-separated) | `--listen` (repeat) | TCP and QUIC on port 4610, all interfaces |
//! | bootstrap peers (`HOST:PORT`, or a multiaddr with or without `/p2p/<id>`) | `bootstrap = [...]` | `LICET_BOOTSTRAP` | `--bootstrap` | none |
//! | region | `region = "FR"` | `LICET_REGION` | `--region` | none |
//! | control API address | `api_listen = "127.0.0.1:0"` | `LICET_API_LISTEN` | `--api-listen` | `127.0.0.1:0` (a free port, written to `api-addr`) |
//! | address ranges counted as public (beyond globally routable ones) | `public_ranges = ["10.0.0.0/8"]` | `LICET_PUBLIC_RANGES` | `--public-range` (repeat) | none |
//! | relay for nodes that cannot be dialled | `relay_service = false` | `LICET_RELAY_SERVICE` (`true`/`false`) | `--no-relay-service` | on (used only while the node is public) |
//! | find peers on the LAN (mDNS) | `mdns = false` | `LICET_MDNS` | `--no-mdns` | on |
//! | ask the router for a port mapping (UPnP) | `upnp = false` | `LICET_UPNP` | `--no-upnp` | on |
//! | connection manager: trim to this many connections | `connections_low = 32` | `LICET_CONNECTIONS_LOW` | `--connections-low` | 32 (at least 1, below the high mark) |
//! | connection manager: trim above this many connections | `connections_high = 96` | `LICET_CONNECTIONS_HIGH` | `--connections-high` | 96 |
//! | connection manager: a new connection is never trimmed for, seconds | `connections_grace_secs = 10` | `LICET_CONNECTIONS_GRACE` | `--connections-grace` | 10 |
//! | catalog poll interval, seconds | `catalog_poll_secs = 60` | `LICET_CATALOG_POLL` | `--catalog-poll` | 60 (at least 1); gossip brings new catalogs at once, the poll is the fallback |
//! | upload limit, all peers together | `[limits] upload = "8MB/s"` | `LICET_UPLOAD_LIMIT` | `--upload-limit` | none |
//! | download limit, all peers together | `[limits] download = "32MB/s"` | `LICET_DOWNLOAD_LIMIT` | `--download-limit` | none |
//! | upload limit, each peer | `[limits] peer_upload = "1MB/s"` | `LICET_PEER_UPLOAD_LIMIT` | `--peer-upload-limit` | none |
//! | download limit, each peer | `[limits] peer_download = "4MB/s"` | `LICET_PEER_DOWNLOAD_LIMIT` | `--peer-download-limit` | none |
//! | LAN peers not limited | `[limits] lan_exempt = true` | `LICET_LAN_EXEMPT` | `--lan-exempt` | off |
//! | other limits at given times | `[[limits.schedule]]` (`days`, `from`, `to`, and any of the four rates) | – | – | none |
//! | log filter (`tracing` directives) | `log = "info"` | `RUST_LOG` | – | `info` (libp2p-kad's behaviour: `error`) |
//! | trusted publishers | `[[trust]]` (`publisher`, and optional `name`, `require_catalog`, `mirror`) | – | – | none (see `trust add`) |
//! | delivery reports | `[deliveries]` (`key`, `delegation`: PEM key and delegation files, relative to the data directory; `min_share_percent`; `report_secs`; `collect`) | – | – | none; share 90, every 3600 s, not collecting |
//!
//! The publishers of `[[trust]]` are trusted at start, as `trust add` would; the node keeps
//! trusting publishers added with `trust add`, whatever the file says. A publisher listed twice
//! is an error.
//!
//! [`Config::load`] is a pure function of the file, the environment and the flags, so a reload
//! (`SIGHUP`, `daemon::reload`) runs it again with the flags of the start and gets the same
//! precedence as at start-up.
//!
//! Rates are written as `bandwidth::rate` reads them (`"8MB/s"`, `"500KiB/s"`, `"64kbit/s"`, or
//! `0` for none); a bad one is named with its key (`limits.upload`, `LICET_UPLOAD_LIMIT`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use libp2p::Multiaddr;
use licet_proto::manifest::Region;

use crate::{
    bandwidth::{LimitChange, LimitsConfig},
    deliveries::DeliveriesConfig,
    net::{
        bootstrap::BootstrapAddr,
        conn_manager::{WatermarkError, Watermarks},
        reachability::AddressRange,
    },
};
mod file;

pub use file::TrustFromFile;
use file::{FileConfig, trust_list};

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The data directory could not be determined.
    #[error("no data directory: pass --data-dir or set LICET_DATA_DIR")]
    NoDataDir,
    /// The config file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An environment variable holds a bad value.
    #[error("{name}={value:?}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The API address is not a loopback address.
    #[error("the control API must listen on a loopback address, not {0}")]
    ApiNotLoopback(SocketAddr),
    /// A catalog poll interval of zero.
    #[error("the catalog poll interval must be at least 1 second")]
    ZeroCatalogPoll,
    /// Connection water marks that make no sense.
    #[error(transparent)]
    Watermarks(#[from] WatermarkError),
}

/// Settings given as flags (each `None`/empty when not given).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Vec<Multiaddr>,
    /// `--bootstrap`.
    pub bootstrap: Vec<Multiaddr>,
    /// `--region`.
    pub region: Option<Region>,
    /// `--api-listen`.
    pub api_listen: Option<SocketAddr>,
    /// `--catalog-poll`, seconds.
    pub catalog_poll_secs: Option<u64>,
    /// `--connections-low`.
    pub connections_low: Option<u32>,
    /// `--connections-high`.
    pub connections_high: Option<u32>,
    /// `--connections-grace`, seconds.
    pub connections_grace_secs: Option<u64>,
    /// `--public-range`.
    pub public_ranges: Vec<AddressRange>,
    /// `--no-relay-service`.
    pub no_relay_service: bool,
    /// `--no-mdns`.
    pub no_mdns: bool,
    /// `--no-upnp`.
    pub no_upnp: bool,
    /// `--upload-limit`, `--download-limit`, `--peer-upload-limit`, `--peer-download-limit`.
    pub limits: LimitChange,
    /// `--lan-exempt`.
    pub lan_exempt: bool,
}

/// The daemon's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
    /// Region.
    pub region: Option<Region>,
    /// Control API address (loopback).
    pub api_listen: SocketAddr,
    /// How often catalog heads are polled.
    pub catalog_poll: Duration,
    /// The connection manager's water marks.
    pub watermarks: Watermarks,
    /// Address ranges that count as public beyond globally routable ones.
    pub public_ranges: Vec<AddressRange>,
    /// Relay for nodes that cannot be dialled (while this one is public).
    pub relay_service: bool,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// Ask the router for a port mapping with UPnP.
    pub upnp: bool,
    /// The bandwidth limits, their schedule and whether LAN peers are exempt.
    pub limits: LimitsConfig,
    /// The log filter of `config.toml` (checked); `RUST_LOG`, when set, wins over it.
    pub log: Option<String>,
    /// The publishers `config.toml` trusts.
    pub trust: Vec<TrustFromFile>,
    /// Delivery reports: the key and delegation they are signed with, the share, how often,
    /// and whether to collect partners' reports.
    pub deliveries: DeliveriesConfig,
}

/// The water marks of (low, high, grace seconds) as given, each defaulting on its own.
fn watermarks(
    (low, high, grace): (Option<u32>, Option<u32>, Option<u64>),
) -> Result<Watermarks, WatermarkError> {
    let default = Watermarks::default();
    Watermarks::new(
        low.unwrap_or(default.low),
        high.unwrap_or(default.high),
        grace.map_or(default.grace, Duration::from_secs),
    )
}

/// The whole number in environment variable `name`, if it is set.
fn env_number<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: T::Err| ConfigError::Env {
                name,
                value: value.clone(),
                reason: format!("not a whole number: {e}"),
            }),
        Err(_) => Ok(None),
    }
}

/// The default catalog poll interval.
pub const DEFAULT_CATALOG_POLL: Duration = Duration::from_secs(60);

/// The data directory: the flag or `LICET_DATA_DIR` (clap reads both), else the platform's.
pub fn data_dir(given: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    match given {
        Some(dir) => Ok(dir),
        None => directories::ProjectDirs::from("", "", "licet")
            .map(|dirs| dirs.data_dir().to_owned())
            .ok_or(ConfigError::NoDataDir),
    }
}

fn parse_list<T: std::str::FromStr>(values: &[String], what: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    values
        .iter()
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|e| format!("{what} {v:?}: {e}"))
        })
        .collect()
}

/// Bootstrap addresses: multiaddrs with or without `/p2p/<peer id>`, or `HOST:PORT`.
fn bootstrap_list(values: &[String]) -> Result<Vec<Multiaddr>, String> {
    parse_list::<BootstrapAddr>(values, "bootstrap address").map(|addrs| {
        addrs
            .into_iter()
            .map(BootstrapAddr::into_multiaddr)
            .collect()
    })
}

fn env_list(name: &'static str) -> Option<(String, Vec<String>)> {
    std::env::var(name).ok().map(|value| {
        let items = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (value, items)
    })
}

/// The variable `name` as `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), if set.
fn env_bool(name: &'static str) -> Result<Option<bool>, ConfigError> {
    let Ok(value) = std::env::var(name) else {
        return Ok(None);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::Env {
            name,
            value,
            reason: "not true or false".to_owned(),
        }),
    }
}

impl Config {
    /// Reads `data_dir/config.toml` (if present), then the environment, then `flags`.
    pub fn load(data_dir: &Path, flags: Overrides) -> Result<Config, ConfigError> {
        Config::load_layers(data_dir, flags).map(|(_, config)| config)
    }

    /// Like [`Config::load`], but also returns what the file alone says (over the defaults,
    /// before the environment and the flags), so a reload can tell a change of the file that a
    /// variable or a flag hides.
    pub fn load_layers(data_dir: &Path, flags: Overrides) -> Result<(Config, Config), ConfigError> {
        let path = data_dir.join("config.toml");
        let file = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_CONFIG_BYTES => {
                return Err(ConfigError::File {
                    path,
                    reason: "larger than any config file should be".to_owned(),
                });
            }
            Ok(_) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(e) => {
                return Err(ConfigError::File {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let file_err = |reason: String| ConfigError::File {
            path: path.clone(),
            reason,
        };
        let mut config = Config {
            data_dir: data_dir.to_owned(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4610"
                    .parse()
                    .map_err(|e| file_err(format!("{e}")))?,
                "/ip4/0.0.0.0/udp/4610/quic-v1"
                    .parse()
                    .map_err(|e| file_err(format!("{e}")))?,
            ],
            bootstrap: Vec::new(),
            region: None,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            catalog_poll: DEFAULT_CATALOG_POLL,
            watermarks: Watermarks::default(),
            public_ranges: Vec::new(),
            relay_service: true,
            mdns: true,
            upnp: true,
            limits: LimitsConfig::default(),
            log: None,
            trust: Vec::new(),
            deliveries: DeliveriesConfig::default(),
        };
        let mut poll_secs = file.catalog_poll_secs;
        let mut marks = (
            file.connections_low,
            file.connections_high,
            file.connections_grace_secs,
        );
        if let Some(listen) = &file.listen {
            config.listen = parse_list(listen, "listen address").map_err(file_err)?;
        }
        if let Some(bootstrap) = &file.bootstrap {
            config.bootstrap = bootstrap_list(bootstrap).map_err(file_err)?;
        }
        if let Some(region) = &file.region {
            config.region = Some(region.parse().map_err(|e| file_err(format!("{e}")))?);
        }
        if let Some(api) = &file.api_listen {
            config.api_listen = api
                .parse()
                .map_err(|e| file_err(format!("api_listen {api:?}: {e}")))?;
        }
        if let Some(ranges) = &file.public_ranges {
            config.public_ranges = parse_list(ranges, "public range").map_err(file_err)?;
        }
        config.relay_service = file.relay_service.unwrap_or(config.relay_service);
        config.mdns = file.mdns.unwrap_or(config.mdns);
        config.upnp = file.upnp.unwrap_or(config.upnp);
        if let Some(limits) = &file.limits {
            config.limits = limits.read().map_err(file_err)?;
        }
        if let Some(log) = &file.log {
            tracing_subscriber::EnvFilter::try_new(log)
                .map_err(|e| file_err(format!("log {log:?}: {e}")))?;
            config.log = Some(log.clone());
        }
        if let Some(trust) = &file.trust {
            config.trust = trust_list(trust).map_err(file_err)?;
        }
        if let Some(deliveries) = &file.deliveries {
            config.deliveries = deliveries.read(data_dir).map_err(file_err)?;
        }

        let mut file_only = config.clone();
        if let Some(secs) = poll_secs.filter(|s| *s > 0) {
            file_only.catalog_poll = Duration::from_secs(secs);
        }
        if let Ok(watermarks) = watermarks(marks) {
            file_only.watermarks = watermarks;
        }

        if let Some((value, items)) = env_list("LICET_LISTEN") {
            config.listen =
                parse_list(&items, "listen address").map_err(|reason| ConfigError::Env {
                    name: "LICET_LISTEN",
                    value,
                    reason,
                })?;
        }
        if let Some((value, items)) = env_list("LICET_BOOTSTRAP") {
            config.bootstrap = bootstrap_list(&items).map_err(|reason| ConfigError::Env {
                name: "LICET_BOOTSTRAP",
                value,
                reason,
            })?;
        }
        if let Some((value, items)) = env_list("LICET_PUBLIC_RANGES") {
            config.public_ranges =
                parse_list(&items, "public range").map_err(|reason| ConfigError::Env {
                    name: "LICET_PUBLIC_RANGES",
                    value,
                    reason,
                })?;
        }
        for (name, setting) in [
            ("LICET_RELAY_SERVICE", &mut config.relay_service),
            ("LICET_MDNS", &mut config.mdns),
            ("LICET_UPNP", &mut config.upnp),
        ] {
            if let Some(value) = env_bool(name)? {
                *setting = value;
            }
        }
        let mut env_limits = LimitChange::default();
        for (name, setting) in [
            ("LICET_UPLOAD_LIMIT", &mut env_limits.upload),
            ("LICET_DOWNLOAD_LIMIT", &mut env_limits.download),
            ("LICET_PEER_UPLOAD_LIMIT", &mut env_limits.peer_upload),
            ("LICET_PEER_DOWNLOAD_LIMIT", &mut env_limits.peer_download),
        ] {
            if let Ok(value) = std::env::var(name) {
                *setting = Some(value.parse().map_err(|e: crate::bandwidth::RateError| {
                    ConfigError::Env {
                        name,
                        value: value.clone(),
                        reason: e.to_string(),
                    }
                })?);
            }
        }
        config.limits.base = env_limits.apply(config.limits.base);
        if let Some(value) = env_bool("LICET_LAN_EXEMPT")? {
            config.limits.lan_exempt = value;
        }
        if let Ok(value) = std::env::var("LICET_REGION") {
            config.region = Some(value.parse().map_err(
                |e: licet_proto::manifest::RegionError| ConfigError::Env {
                    name: "LICET_REGION",
                    value: value.clone(),
                    reason: e.to_string(),
                },
            )?);
        }
        if let Ok(value) = std::env::var("LICET_CATALOG_POLL") {
            poll_secs = Some(value.trim().parse().map_err(|e: std::num::ParseIntError| {
                ConfigError::Env {
                    name: "LICET_CATALOG_POLL",
                    value: value.clone(),
                    reason: format!("not a whole number of seconds: {e}"),
                }
            })?);
        }
        if let Some(low) = env_number("LICET_CONNECTIONS_LOW")? {
            marks.0 = Some(low);
        }
        if let Some(high) = env_number("LICET_CONNECTIONS_HIGH")? {
            marks.1 = Some(high);
        }
        if let Some(grace) = env_number("LICET_CONNECTIONS_GRACE")? {
            marks.2 = Some(grace);
        }
        if let Ok(value) = std::env::var("LICET_API_LISTEN") {
            config.api_listen =
                value
                    .parse()
                    .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                        name: "LICET_API_LISTEN",
                        value: value.clone(),
                        reason: e.to_string(),
                    })?;
        }

        if !flags.listen.is_empty() {
            config.listen = flags.listen;
        }
        if !flags.bootstrap.is_empty() {
            config.bootstrap = flags.bootstrap;
        }
        if flags.region.is_some() {
            config.region = flags.region;
        }
        if !flags.public_ranges.is_empty() {
            config.public_ranges = flags.public_ranges;
        }
        config.relay_service &= !flags.no_relay_service;
        config.mdns &= !flags.no_mdns;
        config.upnp &= !flags.no_upnp;
        config.limits.base = flags.limits.apply(config.limits.base);
        config.limits.lan_exempt |= flags.lan_exempt;
        if let Some(api) = flags.api_listen {
            config.api_listen = api;
        }
        if flags.catalog_poll_secs.is_some() {
            poll_secs = flags.catalog_poll_secs;
        }
        if let Some(secs) = poll_secs {
            if secs == 0 {
                return Err(ConfigError::ZeroCatalogPoll);
            }
            config.catalog_poll = Duration::from_secs(secs);
        }
        marks.0 = flags.connections_low.or(marks.0);
        marks.1 = flags.connections_high.or(marks.1);
        marks.2 = flags.connections_grace_secs.or(marks.2);
        config.watermarks = watermarks(marks)?;
        if !config.api_listen.ip().is_loopback() {
            return Err(ConfigError::ApiNotLoopback(config.api_listen));
        }
        Ok((file_only, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandwidth::Rate;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "listen = [\"/ip4/127.0.0.1/tcp/0\"]\nregion = \"fr\"\n",
        )
        .unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert_eq!(
            config.listen,
            vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().unwrap()]
        );
        assert_eq!(config.region.map(|r| r.to_string()), Some("FR".to_owned()));
        let config = Config::load(
            dir.path(),
            Overrides {
                region: Some("DE".parse().unwrap()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.region.map(|r| r.to_string()), Some("DE".to_owned()));
    }

    #[test]
    fn deliveries_settings_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert_eq!(config.deliveries, DeliveriesConfig::default());
        std::fs::write(
            dir.path().join("config.toml"),
            "[deliveries]\nkey = \"partner.pem\"\ndelegation = \"/keys/partner.delegation\"\n\
             min_share_percent = 50\nreport_secs = 600\ncollect = true\n",
        )
        .unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert_eq!(
            config.deliveries,
            DeliveriesConfig {
                key: Some(dir.path().join("partner.pem")),
                delegation: Some(PathBuf::from("/keys/partner.delegation")),
                min_share_percent: 50,
                report_interval: Duration::from_secs(600),
                collect: true,
            }
        );
        for (text, expected) in [
            ("min_share_percent = 0", "must be 1 to 100"),
            ("min_share_percent = 101", "must be 1 to 100"),
            ("report_secs = 0", "at least 1"),
            ("delegation = \"d\"", "needs deliveries.key"),
        ] {
            std::fs::write(
                dir.path().join("config.toml"),
                format!("[deliveries]\n{text}\n"),
            )
            .unwrap();
            let err = Config::load(dir.path(), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn bad_file_names_the_file_and_setting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "listen = [\"nonsense\"]\n").unwrap();
        let err = Config::load(dir.path(), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml") && err.contains("nonsense"),
            "{err}"
        );
        std::fs::write(dir.path().join("config.toml"), "colour = \"blue\"\n").unwrap();
        let err = Config::load(dir.path(), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn reachability_settings_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert!(config.public_ranges.is_empty());
        assert!(config.relay_service && config.mdns && config.upnp);
        std::fs::write(
            dir.path().join("config.toml"),
            "public_ranges = [\"10.20.0.0/16\"]\nmdns = false\n",
        )
        .unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert_eq!(config.public_ranges, ["10.20.0.0/16".parse().unwrap()]);
        assert!(!config.mdns && config.relay_service && config.upnp);
        let config = Config::load(
            dir.path(),
            Overrides {
                public_ranges: vec!["172.31.0.0/16".parse().unwrap()],
                no_relay_service: true,
                no_upnp: true,
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.public_ranges, ["172.31.0.0/16".parse().unwrap()]);
        assert!(!config.mdns && !config.relay_service && !config.upnp);
        std::fs::write(
            dir.path().join("config.toml"),
            "public_ranges = [\"10.20.0.1/16\"]\n",
        )
        .unwrap();
        let err = Config::load(dir.path(), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml")
                && err.contains("10.20.0.1/16")
                && err.contains("past the prefix"),
            "{err}"
        );
    }

    #[test]
    fn connection_water_marks_from_the_file_then_flags_each_defaulting_alone() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert_eq!(config.watermarks, Watermarks::default());
        std::fs::write(
            dir.path().join("config.toml"),
            "connections_low = 10\nconnections_grace_secs = 3\n",
        )
        .unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert_eq!(
            config.watermarks,
            Watermarks::new(10, Watermarks::DEFAULT_HIGH, Duration::from_secs(3)).unwrap()
        );
        let config = Config::load(
            dir.path(),
            Overrides {
                connections_high: Some(20),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!((config.watermarks.low, config.watermarks.high), (10, 20));
        let err = Config::load(
            dir.path(),
            Overrides {
                connections_high: Some(10),
                ..Overrides::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("low 10 and high 10"), "{err}");
    }

    #[test]
    fn limits_from_the_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[limits]\nupload = \"8MB/s\"\ndownload = 0\npeer_upload = 65536\nlan_exempt = true\n\
             [[limits.schedule]]\ndays = \"weekdays\"\nfrom = \"08:00\"\nto = \"18:00\"\nupload = \"1MB/s\"\n",
        )
        .unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        let limits = &config.limits;
        assert_eq!(limits.base.upload.bytes_per_second(), 8_000_000);
        assert_eq!(limits.base.download, Rate::UNLIMITED);
        assert_eq!(limits.base.peer_upload.bytes_per_second(), 65536);
        assert!(limits.lan_exempt);
        assert_eq!(
            limits.schedule[0].to_string(),
            "mon,tue,wed,thu,fri 08:00-18:00"
        );
        let config = Config::load(
            dir.path(),
            Overrides {
                limits: LimitChange {
                    upload: Some(Rate::UNLIMITED),
                    download: Some("2MB/s".parse().unwrap()),
                    ..LimitChange::default()
                },
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.limits.base.upload, Rate::UNLIMITED, "the flag wins");
        assert_eq!(config.limits.base.download.bytes_per_second(), 2_000_000);
        assert_eq!(config.limits.base.peer_upload.bytes_per_second(), 65536);
    }

    #[test]
    fn bad_limits_name_the_key_and_the_value() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            (
                "[limits]\nupload = \"8XB/s\"\n",
                "limits.upload: \"8XB/s\": unknown unit",
            ),
            (
                "[limits]\npeer_download = -5\n",
                "limits.peer_download: -5 is not a rate",
            ),
            ("[limits]\nspeed = 5\n", "speed"),
            (
                "[[limits.schedule]]\ndays = [\"mon\", \"funday\"]\nfrom = \"08:00\"\nto = \"09:00\"\nupload = 0\n",
                "limits.schedule[0]: \"funday\" is not a day",
            ),
            (
                "[[limits.schedule]]\ndays = \"daily\"\nfrom = \"8 am\"\nto = \"09:00\"\nupload = 0\n",
                "limits.schedule[0]: \"8 am\" is not a time of day",
            ),
        ] {
            std::fs::write(dir.path().join("config.toml"), text).unwrap();
            let err = Config::load(dir.path(), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("config.toml") && err.contains(expected),
                "{err}"
            );
        }
    }

    #[test]
    fn api_must_be_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(
            dir.path(),
            Overrides {
                api_listen: Some("0.0.0.0:80".parse().unwrap()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::ApiNotLoopback(_)));
    }

    #[test]
    fn trust_and_log_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "log = \"warn,licet_node=debug\"\n[[trust]]\npublisher = \"{key}\"\n\
                 name = \"Acme\"\nmirror = true\n"
            ),
        )
        .unwrap();
        let config = Config::load(dir.path(), Overrides::default()).unwrap();
        assert_eq!(config.log.as_deref(), Some("warn,licet_node=debug"));
        assert_eq!(
            config.trust,
            [TrustFromFile {
                publisher: key.parse().unwrap(),
                name: Some("Acme".to_owned()),
                require_catalog: false,
                mirror: true,
            }]
        );
        for (text, expected) in [
            (
                "[[trust]]\npublisher = \"abc\"\n".to_owned(),
                "trust[0].publisher \"abc\"",
            ),
            (
                format!("[[trust]]\npublisher = \"{key}\"\n[[trust]]\npublisher = \"{key}\"\n"),
                "trust[1]: publisher 3b6a27bc",
            ),
            (
                format!("[[trust]]\npublisher = \"{key}\"\nrequire = true\n"),
                "unknown field `require`",
            ),
            (
                "log = \"licet_node=loud\"\n".to_owned(),
                "log \"licet_node=loud\"",
            ),
        ] {
            std::fs::write(dir.path().join("config.toml"), text).unwrap();
            let err = Config::load(dir.path(), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("config.toml") && err.contains(expected),
                "{err}"
            );
        }
    }
}
