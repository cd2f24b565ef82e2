//! `licet-proto`: everything two Licet parties must agree on.
//!
//! Keys ([`keys`]), the one bounded decoder ([`encoding`]), the signed envelope ([`signed`]),
//! manifests ([`manifest`]), delegations ([`delegation`]), encrypted releases ([`encryption`])
//! and the licences that open them ([`licence`]), catalogs and catalog heads ([`catalog`]) and
//! the parts a catalog travels in ([`catalog_parts`]), partners' delivery reports and their
//! merge ([`delivery`]), per-file merkle trees and audit paths ([`merkle`]), the trust policy
//! ([`policy`]), and the transfer protocol's messages ([`wire`]). File paths ([`path`]) must be
//! names every common file system holds as they are and that do not collide where case or
//! Unicode normalisation is ignored ([`portable_name`]); [`text`] escapes what could drive or
//! disguise a terminal, for every output that shows text from outside.
//!
//! This crate does no networking, no async and no disk I/O beyond reading and writing key files
//! and reading the content it is handed to hash ([`merkle::hash_file_leaves`], positional reads
//! of a file the caller opened): it is pure, so every rule in it can be tested exhaustively.
//!
//! Invariants that hold across the crate:
//! - bytes from outside are decoded only through [`encoding::decode`], with an explicit limit;
//! - signatures are checked over the exact stored bytes before the body is decoded;
//! - code past the boundary takes `Verified*` and validated types (`SafePath`, `Region`), which can
//!   only be built by passing their checks.

pub mod catalog;
pub mod catalog_parts;
pub mod delegation;
pub mod delivery;
pub mod encoding;
pub mod encryption;
pub mod ids;
pub mod keys;
pub mod licence;
pub mod manifest;
pub mod merkle;
pub mod path;
pub mod policy;
pub mod portable_name;
pub mod region;
pub mod signed;
pub mod text;
pub mod time;
pub mod wire;

pub use ids::{
    CatalogHash, CatalogHeadKey, CatalogPartHash, ContentKeyId, LicenceId, ManifestId, MerkleHash,
};
pub use keys::{PublicKey, SecretKey};
pub use time::Timestamp;
