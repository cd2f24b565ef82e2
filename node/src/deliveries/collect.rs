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
