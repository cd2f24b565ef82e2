//! The bandwidth limits through the control API: the [`Bandwidth`] part's report as the
//! contract's [`LimitsReply`], and a [`LimitsChange`] checked and put in force.
//!
//! Invariant: a change is checked whole before any of it is put in force, so a bad rate changes
//! nothing.

use super::{Node, api_errors::rate_error};
use crate::{
    bandwidth::{Bandwidth, LimitChange, LimitSet, Rate},
    contract::{ApiError, LimitRates, LimitsChange, LimitsReply},
};

fn rates(limits: &LimitSet) -> LimitRates {
    LimitRates {
        upload: limits.upload.bytes_per_second(),
        download: limits.download.bytes_per_second(),
        peer_upload: limits.peer_upload.bytes_per_second(),
        peer_download: limits.peer_download.bytes_per_second(),
    }
}

/// The limits of `bandwidth` as the API shows them.
pub(crate) fn limits_reply(bandwidth: &Bandwidth) -> LimitsReply {
    let report = bandwidth.report();
    let bytes = |rate: Option<Rate>| rate.map(Rate::bytes_per_second);
    LimitsReply {
        in_force: rates(&report.in_force),
        configured: rates(&report.configured),
        changed: LimitsChange {
            upload: bytes(report.runtime.upload),
            download: bytes(report.runtime.download),
            peer_upload: bytes(report.runtime.peer_upload),
            peer_download: bytes(report.runtime.peer_download),
            reset: false,
        },
        schedule_active: report.active_rule,
        schedule: report.schedule,
        lan_exempt: report.lan_exempt,
    }
}

impl Node {
    /// `PUT /v1/limits`: checks every rate, then resets (if asked) and changes the limits.
    pub(crate) fn change_limits(&self, change: LimitsChange) -> Result<LimitsReply, ApiError> {
        let rate = |field: &str, value: Option<u64>| {
            value
                .map(|bytes| Rate::from_bytes_per_second(bytes).map_err(|e| rate_error(field, e)))
                .transpose()
        };
        let checked = LimitChange {
            upload: rate("upload", change.upload)?,
            download: rate("download", change.download)?,
            peer_upload: rate("peer_upload", change.peer_upload)?,
            peer_download: rate("peer_download", change.peer_download)?,
        };
        let bandwidth = self.bandwidth();
        if change.reset {
            bandwidth.reset();
        }
        if !checked.is_empty() {
            bandwidth.change(checked);
        }
        Ok(limits_reply(bandwidth))
    }
}
