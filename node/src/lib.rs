//! `licet-node`: the Licet node as a library (the `licet-node` binary is a thin layer over it).
//!
//! | module | job |
//! |---|---|
//! | [`node`] | the node: content items, trust policy state, serving, the control API's methods |
//! | [`catalogs`] | catalogs on the network: heads by gossip, DHT and peers; fetch, accept, apply, mirror |
//! | [`peers`] | what the node remembers of other peers: bytes each way, bans that end, offences |
//! | [`check`] | re-verifying an item's files on disk at the operator's request |
//! | [`network`] | the libp2p swarm and its event loop (the only owner of the `Swarm`); reachability: AutoNAT, relays, hole punching, mDNS |
//! | [`address_limits`] | bounds on inbound connections per IP address, per subnet and in all |
//! | [`provider_store`] | the DHT record store: the node's own provider records apart from peers' |
//! | [`secure`] | the TCP security upgrade: libp2p's TLS handshake with AES-GCM first |
//! | [`serving`] | chunks read from disk and verified before they are sent; what takes a file out of service |
//! | [`transfer`] | `/licet/transfer/1` streams: framing, the serving loop, pipelined sessions |
//! | [`fetch`] | finding manifests and fetching chunks from many peers |
//! | [`schedule`] | rarest-first chunk scheduling with an endgame |
//! | [`store`] | the redb database: trust, manifests, items, bitfields, proofs, leaves, catalogs |
//! | [`content`] | the content files: verify, prepare, read and write chunks |
//! | [`api`], [`api_types`] | the HTTP + JSON control API on 127.0.0.1 |
//! | [`api_conns`] | the control API's connections: a cap, a header timeout, shutdown |
//! | [`cli`] | the client subcommands |
//! | [`config`] | configuration: TOML file, `LICET_*` environment, flags |
//! | [`data_dir`] | the data directory: created 0700, tightened if others can use it |
//! | [`limits`] | process limits set at start: the open-file limit |
//! | [`metrics`] | Prometheus metrics |
//! | [`metrics_format`] | `/metrics` as OpenMetrics or Prometheus text 0.0.4, by `Accept` |

pub mod address_limits;
pub mod api;
pub mod api_conns;
pub mod api_types;
pub mod beneath;
pub mod catalogs;
pub mod check;
pub mod cli;
pub mod config;
pub mod content;
pub mod data_dir;
pub mod fetch;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod metrics_format;
pub mod network;
pub mod node;
pub mod output_folder;
pub mod peers;
pub mod proof_tree;
pub mod provider_store;
pub mod reopening_db;
pub mod schedule;
pub mod secure;
pub mod serving;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod transfer;

/// Entry points for the fuzz targets in `fuzz/` (not an API: they may change at any time).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::{
        catalogs::CatalogParts,
        transfer::{FRAME_READ_STEP, FrameError, read_frame},
    };

    /// What `get` makes of a share link: the manifest id and each peer hint as a dialable
    /// multiaddr (written back as text), or the error message the control API answers.
    pub fn parse_share_link(link: &str) -> Result<(licet_proto::ManifestId, Vec<String>), String> {
        crate::node::parse_link(link)
            .map(|(id, addrs)| (id, addrs.iter().map(ToString::to_string).collect()))
            .map_err(|e| e.message)
    }
}
