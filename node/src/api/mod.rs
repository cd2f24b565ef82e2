//! The control API on 127.0.0.1: the HTTP server ([`server`]) and its route handlers
//! (`handlers`, with their request extractors in `extract`), its connection bounds ([`conns`]),
//! its OpenAPI description ([`openapi`]), the web dashboard it serves ([`dashboard`]), and the
//! typed client the CLI uses ([`client`]). Its types, paths and file names are the
//! [`crate::contract`].

pub mod client;
pub mod conns;
pub mod dashboard;
mod extract;
mod handlers;
mod licence_handlers;
pub mod openapi;
pub mod server;
