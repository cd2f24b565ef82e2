//! The daemon's setting up: configuration ([`config`]) and process limits ([`limits`]).

pub mod config;
pub mod limits;
