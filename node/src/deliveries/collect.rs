//! Keeping the delivery reports a collecting node receives: the newest of each partner,
//! release and day, as a file under `deliveries/received/PUBLISHER/`.
//!
//! Invariant: [`Deliveries::keep_received`] takes only a [`VerifiedDeliveryReport`] (verified
//! by the caller against the publisher's newest accepted catalog) and replaces a kept report
//! only with one of a higher sequence; a lower sequence is refused as a replay, the same one
//! must be byte-identical. Files are written atomically.

use std::path::PathBuf;

use licet_proto::{
    PublicKey,
    delivery::{DeliveryReport, MAX_DELIVERY_REPORT_BODY_BYTES, VerifiedDeliveryReport},
    encoding,
    signed::{Signed, SignedKind},
};

use super::Deliveries;
use crate::store::atomic_file::write_atomic;

/// What [`Deliveries::keep_received`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Written: the first of its partner, release and day, or newer than the one kept.
    Stored,
    /// The same report is kept already.
    AlreadyKept,
}

/// Why a verified report was not kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeepRefusal {
    /// This node does not collect reports.
    #[error("this node does not collect delivery reports")]
    NotCollecting,
    /// An older report than the one kept.
    #[error("replayed or superseded: sequence {sequence} is below the {kept} kept")]
    Superseded {
        /// The report's.
        sequence: u64,
        /// The kept one's.
        kept: u64,
    },
    /// The same sequence as the one kept, other bytes.
    #[error("sequence {0} is kept already with other contents")]
    Conflicting(u64),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Deliveries {
    /// Where the newest report of `signer` for `report`'s release and day is kept.
    fn received_path(&self, report: &DeliveryReport, signer: &PublicKey) -> PathBuf {
        self.inner
            .dir
            .join("received")
            .join(report.publisher.to_hex())
            .join(format!(
                "{}-{}-{}.report",
                report.day, report.release, signer
            ))
    }

    /// Keeps `report` unless a newer or conflicting one of its partner, release and day is
    /// kept (see the module docs).
    pub fn keep_received(&self, report: &VerifiedDeliveryReport) -> Result<Kept, KeepRefusal> {
        if !self.inner.collect {
            return Err(KeepRefusal::NotCollecting);
        }
        let path = self.received_path(report.report(), &report.signer());
        let bytes = report.envelope().encode();
        let sequence = report.report().sequence;
        if let Ok(kept_bytes) = std::fs::read(&path)
            && let Some(kept) = kept_sequence(&kept_bytes)
        {
            if kept > sequence {
                return Err(KeepRefusal::Superseded { sequence, kept });
            }
            if kept == sequence {
                return if kept_bytes == bytes {
                    Ok(Kept::AlreadyKept)
                } else {
                    Err(KeepRefusal::Conflicting(sequence))
                };
            }
        }
        let io = |source| KeepRefusal::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        write_atomic(&path, &bytes, 0o644).map_err(io)?;
        Ok(Kept::Stored)
    }
}

/// The sequence of a kept report file (written by this node after verifying it).
fn kept_sequence(bytes: &[u8]) -> Option<u64> {
    let envelope = Signed::decode_kind(bytes, SignedKind::DeliveryReport).ok()?;
    let report: DeliveryReport = encoding::decode(
        "kept delivery report",
        &envelope.body,
        MAX_DELIVERY_REPORT_BODY_BYTES,
    )
    .ok()?;
    Some(report.sequence)
}

#[cfg(test)]
mod tests {
    use licet_proto::{
        ManifestId, SecretKey, Timestamp,
        catalog::{Catalog, CatalogEntry, VerifiedCatalog},
        delivery::{DistinctSketch, UtcDay},
    };

    use super::*;
    use crate::deliveries::DeliveriesConfig;

    const NOW: Timestamp = Timestamp(1_800_000_000);

    fn catalog(key: &SecretKey) -> VerifiedCatalog {
        Catalog {
            publisher: key.public_key(),
            sequence: 1,
            issued_at: NOW.plus_seconds(-60),
            expires_at: NOW.plus_seconds(86_400),
            entries: vec![CatalogEntry {
                manifest_id: ManifestId([0x11; 32]),
                title: "Film".into(),
            }],
            revoked_manifests: vec![],
            revoked_delegates: vec![],
            revoked_licences: Vec::new(),
        }
        .sign(key)
        .unwrap()
    }

    fn report(key: &SecretKey, sequence: u64, peers: u64) -> VerifiedDeliveryReport {
        let mut sketch = DistinctSketch::new();
        for peer in 0..peers {
            sketch.insert_hash(peer.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        let envelope = DeliveryReport {
            publisher: key.public_key(),
            release: ManifestId([0x11; 32]),
            day: UtcDay::of(NOW),
            sequence,
            issued_at: NOW,
            min_share_percent: 90,
            peers_served: peers,
            sketch,
        }
        .sign(key, None);
        VerifiedDeliveryReport::verify(envelope, &catalog(key), NOW).unwrap()
    }

    #[test]
    fn only_a_newer_report_replaces_the_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = DeliveriesConfig {
            collect: true,
            ..DeliveriesConfig::default()
        };
        let deliveries = Deliveries::open(&config, dir.path()).unwrap();
        let key = SecretKey::from_seed(&[1; 32]);
        let kept_file = || {
            let folder = dir
                .path()
                .join("deliveries/received")
                .join(key.public_key().to_hex());
            let files: Vec<_> = std::fs::read_dir(folder).unwrap().collect();
            assert_eq!(files.len(), 1);
            std::fs::read(files[0].as_ref().unwrap().path()).unwrap()
        };
        assert_eq!(
            deliveries.keep_received(&report(&key, 5, 3)).unwrap(),
            Kept::Stored
        );
        assert_eq!(
            deliveries.keep_received(&report(&key, 5, 3)).unwrap(),
            Kept::AlreadyKept
        );
        let older = deliveries.keep_received(&report(&key, 4, 9)).unwrap_err();
        assert!(older.to_string().contains("below the 5 kept"), "{older}");
        let conflicting = deliveries.keep_received(&report(&key, 5, 9)).unwrap_err();
        assert!(
            conflicting.to_string().contains("other contents"),
            "{conflicting}"
        );
        assert_eq!(kept_file(), report(&key, 5, 3).envelope().encode());
        assert_eq!(
            deliveries.keep_received(&report(&key, 6, 4)).unwrap(),
            Kept::Stored
        );
        assert_eq!(kept_file(), report(&key, 6, 4).envelope().encode());

        let not_collecting = Deliveries::open(&DeliveriesConfig::default(), dir.path()).unwrap();
        assert!(matches!(
            not_collecting.keep_received(&report(&key, 7, 4)),
            Err(KeepRefusal::NotCollecting)
        ));
    }
}
