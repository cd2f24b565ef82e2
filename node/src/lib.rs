//! `licet-node`: the Licet node as a library (the `licet-node` binary is a thin layer over it).
//!
//! `node/src` is in folders by layer. A module imports only from its own layer or the layers
//! below it, never from a layer above (the test `layers::imports_go_down` fails otherwise):
//!
//! | layer | modules | job |
//! |---|---|---|
//! | edge | [`daemon`], [`cli`] | the `run` daemon (config, data directory, process limits, start and bounded stop); the client subcommands, one file per group |
//! | API | [`api`] | the HTTP + JSON control API on 127.0.0.1: server, handlers, connections, its OpenAPI description, typed client |
//! | node | [`node`] | the parts tied together: the control API's methods and the one mapping of errors to `ApiError`, health, re-checking files |
//! | work | [`catalogs`], [`serve`] | catalogs on the network (heads, fetch, accept, mirror), from a context of parts; answering every peer request under the policy, from a context of parts |
//! | | [`fetch`] | finding manifests and fetching chunks from many peers, from a context of parts; rarest-first scheduling |
//! | peers | [`peers`] | the peers part: the peer book (bytes, bans) and the pool of transfer sessions |
//! | | [`licences`] | the licences for paid releases added to this node, and the content key one of them opens |
//! | | [`deliveries`] | delivery reports: counting the distinct peers a seed served each release to per day, signing and publishing its reports, and keeping those received |
//! | parts | [`items`], [`policy_state`], [`transfer`], [`content`], [`bandwidth`] | the item registry (content held, its live state); the trust policy state (trust store, catalogs in force and held, mirrors, unsaved changes) and catalog acceptance; `/licet/transfer/1` streams; content files and output folders; the rate limits in force and the pacing of chunks under them |
//! | | [`metrics`] | Prometheus metrics and their text formats |
//! | contract | [`contract`] | the control API's types, route paths and API file names, shared by the server and the client |
//! | ground | [`net`], [`store`] | the libp2p swarm (the only owner of the `Swarm`), reachability, connection bounds; the redb database |

pub mod api;
pub mod bandwidth;
pub mod catalogs;
pub mod cli;
pub mod content;
pub mod contract;
pub mod daemon;
pub mod deliveries;
pub mod fetch;
pub mod items;
#[cfg(test)]
mod layers;
pub mod licences;
pub mod metrics;
pub mod net;
pub mod node;
pub mod peers;
pub mod policy_state;
pub mod serve;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod transfer;

/// Entry points for the fuzz targets in `fuzz/` (not an API: they may change at any time).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::{
        catalogs::CatalogRootPieces,
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
