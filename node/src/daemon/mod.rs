//! The daemon: `licet-node run` ([`run`]: start, serve, stop with bounded waits), its
//! configuration ([`config`], reloaded on `SIGHUP` by [`reload`]) and process limits ([`limits`]).

pub mod config;
pub mod limits;
pub mod reload;
pub mod run;
