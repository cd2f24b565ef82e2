//! The daemon's recent log lines as the control API gives them (`GET /v1/log`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/log`: the daemon's most recent log lines, oldest first (at most
/// [`MAX_LOG_LINES`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct LogReply {
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
}

/// One line of the daemon's log, as it passed the log filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Its number since the daemon started (1 is the first line): a reader that has seen
    /// up to `n` shows only lines after `n`.
    pub seq: u64,
    /// When it was logged (RFC 3339).
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields (`key=value`), cut at [`MAX_LOG_LINE_BYTES`].
    pub message: String,
}

/// Most lines [`LogReply`] holds: the daemon keeps no more.
pub const MAX_LOG_LINES: usize = 500;

/// Most bytes of one [`LogLine::message`].
pub const MAX_LOG_LINE_BYTES: usize = 1024;
