//! Delivery reports on the node: a partner seed counts what it delivered ([`counter`]), signs
//! a report per release and day with the key the publisher delegated to it and publishes it on
//! the publisher's delivery topic ([`net::deliveries_topic`]); a collecting node keeps the
//! newest valid report of each partner, release and day it receives ([`collect`]), as files
//! `licet-manifest deliveries merge` reads.
//!
//! Files, under the data directory:
//! - `deliveries/tallies`: the counter's tallies of today and yesterday (postcard), rewritten
//!   after each round of reports, so a restart does not lose the day's count;
//! - `deliveries/sent/DAY-RELEASE.report`: the newest report this node signed of each release
//!   and day (for a partner to hand over by other means too);
//! - `deliveries/received/PUBLISHER/DAY-RELEASE-SIGNER.report`: the newest valid report of
//!   each partner received on a collecting node.
//!
//! Invariants:
//! - a node signs reports only with a key it was configured with, and only if that key is the
//!   publisher's own or carries the publisher's delegation whose scope allows reports; only
//!   releases of that publisher are counted;
//! - a report is published only if it fits one gossip message ([`net::MAX_GOSSIP_BYTES`]);
//! - a collecting node writes a received report only after it verified it against the
//!   publisher's newest accepted catalog (signature, release listed, delegate allowed and not
//!   revoked) and only if its sequence is above the one kept (equal: byte-identical, nothing
//!   written); so a forged, replayed or out-of-scope report changes no file.

pub mod collect;
pub mod counter;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use libp2p::PeerId;
use licet_proto::{
    ManifestId, PublicKey, SecretKey, Timestamp,
    delegation::{Delegation, DelegationScope},
    encoding,
    signed::{Signed, SignedDelegation, SignedKind},
};
use tracing::{debug, info, warn};

use crate::{
    net::{self, Network},
    store::atomic_file::write_atomic,
};
use counter::{DeliveryCounter, SavedTallies};

/// The folder under the data directory.
pub const DELIVERIES_DIR: &str = "deliveries";
/// Largest tallies file read back (two days of tallies of many releases).
const MAX_TALLIES_BYTES: usize = 64 * 1024 * 1024;
/// How often reports are signed and published, unless configured.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(3600);

/// The `[deliveries]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveriesConfig {
    /// The PEM key reports are signed with (the publisher's, or a delegate's).
    pub key: Option<PathBuf>,
    /// The publisher's delegation to that key, when it is not the publisher's own.
    pub delegation: Option<PathBuf>,
    /// The share of a release a peer must be served to count, in percent.
    pub min_share_percent: u8,
    /// How often reports are signed and published.
    pub report_interval: Duration,
    /// Whether to keep the reports received for trusted publishers.
    pub collect: bool,
}

impl Default for DeliveriesConfig {
    fn default() -> Self {
        DeliveriesConfig {
            key: None,
            delegation: None,
            min_share_percent: counter::DEFAULT_MIN_SHARE_PERCENT,
            report_interval: DEFAULT_REPORT_INTERVAL,
            collect: false,
        }
    }
}

/// Why the delivery settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveriesError {
    /// The key file.
    #[error("deliveries key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The delegation file.
    #[error("deliveries delegation {path}: {reason}")]
    Delegation {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The key reports are signed with, and for which publisher.
struct ReportSigner {
    key: SecretKey,
    delegation: Option<SignedDelegation>,
    publisher: PublicKey,
}

impl ReportSigner {
    fn load(key_path: &Path, delegation_path: Option<&Path>) -> Result<Self, DeliveriesError> {
        let key = SecretKey::read_pem_file(key_path).map_err(|e| DeliveriesError::Key {
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
        let Some(path) = delegation_path else {
            let publisher = key.public_key();
            return Ok(ReportSigner {
                key,
                delegation: None,
                publisher,
            });
        };
        let err = |reason: String| DeliveriesError::Delegation {
            path: path.to_owned(),
            reason,
        };
        let limit = SignedKind::Delegation.max_envelope_bytes();
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        if bytes.len() > limit {
            return Err(err(format!("over {limit} bytes: not a delegation")));
        }
        let envelope = Signed::decode_kind(&bytes, SignedKind::Delegation)
            .map_err(|e| err(format!("not a Licet delegation ({e})")))?;
        let delegation = Delegation::verify_envelope(&envelope).map_err(|e| err(e.to_string()))?;
        if delegation.delegate != key.public_key() {
            return Err(err(format!(
                "it delegates to {}, not to the key {} (public key {})",
                delegation.delegate,
                key_path.display(),
                key.public_key()
            )));
        }
        if matches!(delegation.scope, DelegationScope::TitlePrefix(_)) {
            info!(
                "the deliveries delegation allows reports only for releases titled as its scope \
                 says ({}); others' reports will be refused by the publisher",
                delegation.scope
            );
        }
        let carried = envelope
            .into_carried_delegation()
            .map_err(|e| err(e.to_string()))?;
        Ok(ReportSigner {
            key,
            delegation: Some(carried),
            publisher: delegation.publisher,
        })
    }
}

/// The node's delivery counting, reporting and collecting (see the module docs). Cheap to
/// clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

struct Inner {
    signer: Option<ReportSigner>,
    counter: Mutex<DeliveryCounter>,
    dir: PathBuf,
    report_interval: Duration,
    collect: bool,
}

impl Deliveries {
    /// Reads the key and delegation `config` names and the tallies saved under `data_dir`.
    pub fn open(config: &DeliveriesConfig, data_dir: &Path) -> Result<Deliveries, DeliveriesError> {
        let signer = match &config.key {
            Some(key) => Some(ReportSigner::load(key, config.delegation.as_deref())?),
            None => None,
        };
        let dir = data_dir.join(DELIVERIES_DIR);
        let mut counter = DeliveryCounter::new(config.min_share_percent);
        match std::fs::read(dir.join("tallies")) {
            Ok(bytes) => {
                match encoding::decode::<SavedTallies>("saved tallies", &bytes, MAX_TALLIES_BYTES) {
                    Ok(saved) => counter.restore(saved, Timestamp::now()),
                    Err(e) => warn!("the saved delivery tallies are not read back: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("the saved delivery tallies are not read back: {e}"),
        }
        if let Some(signer) = &signer {
            info!(publisher = %signer.publisher, signer = %signer.key.public_key(),
                "counting deliveries of the publisher's releases and signing reports");
            // Reported again after a restart: the collector may have missed the last ones.
            counter.mark_all_changed(&signer.publisher);
        }
        Ok(Deliveries {
            inner: Arc::new(Inner {
                signer,
                counter: Mutex::new(counter),
                dir,
                report_interval: config.report_interval,
                collect: config.collect,
            }),
        })
    }

    fn counter(&self) -> std::sync::MutexGuard<'_, DeliveryCounter> {
        self.inner.counter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether received reports are kept.
    pub fn collects(&self) -> bool {
        self.inner.collect
    }

    /// Whether this node signs reports for `publisher`.
    pub fn reports_for(&self, publisher: &PublicKey) -> bool {
        self.inner
            .signer
            .as_ref()
            .is_some_and(|s| &s.publisher == publisher)
    }

    /// Records that `bytes` of `release` (of `publisher`, `release_bytes` in all) went to
    /// `peer`; counted only for the publisher this node reports to.
    pub fn served(
        &self,
        release: ManifestId,
        publisher: PublicKey,
        release_bytes: u64,
        peer: &PeerId,
        bytes: u64,
    ) {
        let Some(signer) = &self.inner.signer else {
            return;
        };
        if signer.publisher != publisher {
            return;
        }
        self.counter().served(
            release,
            publisher,
            release_bytes,
            peer,
            bytes,
            Timestamp::now(),
        );
    }

    /// Signs the reports due now, writes each under `deliveries/sent/`, publishes it on the
    /// publisher's delivery topic, and saves the tallies. Returns how many were signed.
    pub async fn publish_due(&self, network: &Network) -> usize {
        let Some(signer) = &self.inner.signer else {
            return 0;
        };
        let now = Timestamp::now();
        let due = self.counter().due_reports(&signer.publisher, now);
        let sent_dir = self.inner.dir.join("sent");
        let mut signed = 0;
        for report in due {
            let envelope = report.sign(&signer.key, signer.delegation.clone()).encode();
            signed += 1;
            let name = format!("{}-{}.report", report.day, report.release);
            if let Err(e) = std::fs::create_dir_all(&sent_dir)
                .and_then(|()| write_atomic(&sent_dir.join(&name), &envelope, 0o644))
            {
                warn!("cannot write delivery report {name}: {e}");
            }
            if envelope.len() > net::MAX_GOSSIP_BYTES {
                warn!(
                    "delivery report {name} is {} bytes, over the {} a gossip message may hold: \
                     not published (hand over the file instead)",
                    envelope.len(),
                    net::MAX_GOSSIP_BYTES
                );
                continue;
            }
            debug!(release = %report.release, day = %report.day, peers = report.peers_served,
                "publishing a delivery report");
            if network
                .publish(net::deliveries_topic(&signer.publisher), envelope)
                .await
                .is_err()
            {
                return signed;
            }
        }
        self.save();
        signed
    }

    /// Writes the tallies to `deliveries/tallies`.
    fn save(&self) {
        let bytes = encoding::encode(&self.counter().saved());
        let path = self.inner.dir.join("tallies");
        if let Err(e) = std::fs::create_dir_all(&self.inner.dir)
            .and_then(|()| write_atomic(&path, &bytes, 0o600))
        {
            warn!("cannot save the delivery tallies: {e}");
        }
    }

    /// Every report interval, until `stopping` says so: signs and publishes the reports due.
    pub fn start_reporting(&self, network: Network, stopping: impl Fn() -> bool + Send + 'static) {
        if self.inner.signer.is_none() {
            return;
        }
        let deliveries = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(deliveries.inner.report_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if stopping() {
                    deliveries.save();
                    return;
                }
                deliveries.publish_due(&network).await;
            }
        });
    }
}
