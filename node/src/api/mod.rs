//! The control API on 127.0.0.1: the HTTP server ([`server`]) and its connection bounds
//! ([`conns`]). Its types are the [`crate::contract`].

pub mod conns;
pub mod server;
