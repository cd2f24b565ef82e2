//! The control API on 127.0.0.1: the HTTP server ([`server`]), its connection bounds
//! ([`conns`]), the web dashboard it serves ([`dashboard`]), and the typed client the CLI uses
//! ([`client`]). Its types, paths and file names
//! are the [`crate::contract`].

pub mod client;
pub mod conns;
pub mod dashboard;
pub mod server;
