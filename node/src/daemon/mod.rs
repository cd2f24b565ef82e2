//! The daemon: `licet-node run` ([`run`]: start, serve, stop with bounded waits), its
//! configuration ([`config`]) and process limits ([`limits`]).

pub mod config;
pub mod limits;
pub mod run;
