//! The daemon: `licet-node run` ([`run`]: start, serve, stop with bounded waits), its
//! configuration ([`config`], reloaded on `SIGHUP` by [`reload`]), process limits ([`limits`])
//! and the JSON form of its log ([`json_log`]).

pub mod config;
pub mod json_log;
pub mod limits;
pub mod reload;
pub mod run;
