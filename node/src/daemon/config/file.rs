//! What `config.toml` holds, as read from the file: its tables and their checks. `mod.rs`
//! merges them with the environment and the flags.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use licet_proto::PublicKey;
use serde::Deserialize;

use crate::{
    bandwidth::{LimitChange, LimitsConfig, Rate, ScheduleRule},
    deliveries::DeliveriesConfig,
};

/// The settings of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<Vec<String>>,
    pub(super) bootstrap: Option<Vec<String>>,
    pub(super) region: Option<String>,
    pub(super) api_listen: Option<String>,
    pub(super) catalog_poll_secs: Option<u64>,
    pub(super) connections_low: Option<u32>,
    pub(super) connections_high: Option<u32>,
    pub(super) connections_grace_secs: Option<u64>,
    pub(super) public_ranges: Option<Vec<String>>,
    pub(super) relay_service: Option<bool>,
    pub(super) mdns: Option<bool>,
    pub(super) upnp: Option<bool>,
    pub(super) limits: Option<FileLimits>,
    pub(super) log: Option<String>,
    pub(super) trust: Option<Vec<FileTrust>>,
    pub(super) deliveries: Option<FileDeliveries>,
}

/// The `[deliveries]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDeliveries {
    pub(super) key: Option<PathBuf>,
    pub(super) delegation: Option<PathBuf>,
    pub(super) min_share_percent: Option<u8>,
    pub(super) report_secs: Option<u64>,
    pub(super) collect: Option<bool>,
}

impl FileDeliveries {
    /// The settings, with relative paths taken from the data directory.
    pub(super) fn read(&self, data_dir: &Path) -> Result<DeliveriesConfig, String> {
        let mut config = DeliveriesConfig {
            key: self.key.as_ref().map(|p| data_dir.join(p)),
            delegation: self.delegation.as_ref().map(|p| data_dir.join(p)),
            collect: self.collect.unwrap_or(false),
            ..DeliveriesConfig::default()
        };
        if config.delegation.is_some() && config.key.is_none() {
            return Err(
                "deliveries.delegation needs deliveries.key, the key it delegates to".into(),
            );
        }
        if let Some(share) = self.min_share_percent {
            if !(1..=100).contains(&share) {
                return Err(format!(
                    "deliveries.min_share_percent is {share}; it must be 1 to 100"
                ));
            }
            config.min_share_percent = share;
        }
        if let Some(secs) = self.report_secs {
            if secs == 0 {
                return Err("deliveries.report_secs must be at least 1".into());
            }
            config.report_interval = Duration::from_secs(secs);
        }
        Ok(config)
    }
}

/// One `[[trust]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTrust {
    pub(super) publisher: String,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) require_catalog: bool,
    #[serde(default)]
    pub(super) mirror: bool,
}

/// A publisher trusted by `config.toml`'s `[[trust]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFromFile {
    /// The publisher's key.
    pub publisher: PublicKey,
    /// A name for people.
    pub name: Option<String>,
    /// Serve only what the publisher's unexpired catalog lists.
    pub require_catalog: bool,
    /// Fetch and seed everything the publisher's catalog lists.
    pub mirror: bool,
}

/// Longest `name` of a `[[trust]]` entry, in bytes.
pub(super) const MAX_TRUST_NAME_BYTES: usize = 256;

/// The `[[trust]]` entries, checked: keys that parse, names of bounded length, no key twice.
pub(super) fn trust_list(entries: &[FileTrust]) -> Result<Vec<TrustFromFile>, String> {
    let mut list: Vec<TrustFromFile> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let key = format!("trust[{index}]");
        let publisher: PublicKey = entry
            .publisher
            .trim()
            .parse()
            .map_err(|e| format!("{key}.publisher {:?}: {e}", entry.publisher))?;
        if entry
            .name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_TRUST_NAME_BYTES)
        {
            return Err(format!(
                "{key}.name: longer than {MAX_TRUST_NAME_BYTES} bytes"
            ));
        }
        if let Some(first) = list.iter().position(|t| t.publisher == publisher) {
            return Err(format!(
                "{key}: publisher {publisher} is already listed as trust[{first}]"
            ));
        }
        list.push(TrustFromFile {
            publisher,
            name: entry.name.clone(),
            require_catalog: entry.require_catalog,
            mirror: entry.mirror,
        });
    }
    Ok(list)
}

/// The `[limits]` table of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub(super) upload: Option<toml::Value>,
    pub(super) download: Option<toml::Value>,
    pub(super) peer_upload: Option<toml::Value>,
    pub(super) peer_download: Option<toml::Value>,
    pub(super) lan_exempt: Option<bool>,
    pub(super) schedule: Option<Vec<FileScheduleRule>>,
}

/// One `[[limits.schedule]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileScheduleRule {
    pub(super) days: FileDays,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) upload: Option<toml::Value>,
    pub(super) download: Option<toml::Value>,
    pub(super) peer_upload: Option<toml::Value>,
    pub(super) peer_download: Option<toml::Value>,
}

/// `days = "weekdays"` or `days = ["mon", "tue"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum FileDays {
    One(String),
    Many(Vec<String>),
}

/// A rate in `config.toml`: a string (`"8MB/s"`) or a whole number of bytes per second.
pub(super) fn file_rate(key: &str, value: &toml::Value) -> Result<Rate, String> {
    let rate = match value {
        toml::Value::String(text) => text.parse::<Rate>().map_err(|e| e.to_string()),
        toml::Value::Integer(n) => u64::try_from(*n)
            .map_err(|_| format!("{n} is not a rate"))
            .and_then(|n| Rate::from_bytes_per_second(n).map_err(|e| e.to_string())),
        other => Err(format!(
            "{other} is not a rate: write a string such as \"8MB/s\", or 0 for no limit"
        )),
    };
    rate.map_err(|e| format!("{key}: {e}"))
}

/// The four rates of a `[limits]` table or a schedule rule, as a change (absent: unchanged).
pub(super) fn file_change(
    key: &str,
    [upload, download, peer_upload, peer_download]: [&Option<toml::Value>; 4],
) -> Result<LimitChange, String> {
    let read = |name: &str, value: &Option<toml::Value>| {
        value
            .as_ref()
            .map(|v| file_rate(&format!("{key}.{name}"), v))
            .transpose()
    };
    Ok(LimitChange {
        upload: read("upload", upload)?,
        download: read("download", download)?,
        peer_upload: read("peer_upload", peer_upload)?,
        peer_download: read("peer_download", peer_download)?,
    })
}

impl FileLimits {
    /// The limits this table configures.
    pub(super) fn read(&self) -> Result<LimitsConfig, String> {
        let base = file_change(
            "limits",
            [
                &self.upload,
                &self.download,
                &self.peer_upload,
                &self.peer_download,
            ],
        )?
        .apply(Default::default());
        let mut schedule = Vec::new();
        for (index, rule) in self.schedule.iter().flatten().enumerate() {
            let key = format!("limits.schedule[{index}]");
            let limits = file_change(
                &key,
                [
                    &rule.upload,
                    &rule.download,
                    &rule.peer_upload,
                    &rule.peer_download,
                ],
            )?;
            let days = match &rule.days {
                FileDays::One(day) => vec![day.clone()],
                FileDays::Many(days) => days.clone(),
            };
            schedule.push(
                ScheduleRule::new(&days, &rule.from, &rule.to, limits)
                    .map_err(|e| format!("{key}: {e}"))?,
            );
        }
        Ok(LimitsConfig {
            base,
            schedule,
            lan_exempt: self.lan_exempt.unwrap_or(false),
        })
    }
}
