//! Serving catalogs: the answers to `CatalogHead`, `CatalogPart` (pieces of a catalog's signed
//! root) and `CatalogParts` (parts by hash), from the catalogs this node accepted.
//!
//! Invariants: a root is served only of the catalog accepted, by its hash, in pieces at part
//! boundaries; a part only of that catalog, by its own hash; an answer holds every part asked or
//! is a refusal, and (`decode_request` bounds the hashes a request names, each part is at most
//! `MAX_CATALOG_PART_BYTES`) fits one frame.

use licet_proto::{
    policy::RefusalReason,
    wire::{CATALOG_PART_BYTES, Request, Response},
};

use super::{Server, refuse};

impl Server {
    /// Answers `CatalogHead`, `CatalogPart` (pieces of the root) and `CatalogParts` (parts by
    /// hash) requests from the catalogs this node accepted.
    pub(super) fn serve_catalog(&self, request: &Request, payload: &mut Vec<u8>) -> Response {
        match *request {
            Request::CatalogHead { publisher } => match self.policy.held_catalog(&publisher) {
                Some(held) => Response::CatalogHead {
                    envelope: held.head().envelope_bytes().to_vec(),
                },
                None => refuse(
                    RefusalReason::NotHeld,
                    format!("no catalog of publisher {publisher} is held here"),
                ),
            },
            Request::CatalogPart {
                publisher,
                catalog_hash,
                offset,
            } => {
                let Some(held) = self.policy.held_catalog(&publisher) else {
                    return refuse(
                        RefusalReason::NotHeld,
                        format!("no catalog of publisher {publisher} is held here"),
                    );
                };
                if held.head().head().catalog_hash != catalog_hash {
                    return refuse(
                        RefusalReason::NotHeld,
                        format!(
                            "catalog {catalog_hash} of {publisher} is not held here (the newest held is {})",
                            held.head().head().sequence
                        ),
                    );
                }
                let root = held.catalog().root().envelope_bytes();
                let total = root.len() as u64;
                if offset % u64::from(CATALOG_PART_BYTES) != 0 || offset > total {
                    return refuse(
                        RefusalReason::BadRequest,
                        format!(
                            "catalog offset {offset} is not a part boundary within {total} bytes"
                        ),
                    );
                }
                let end = total.min(offset + u64::from(CATALOG_PART_BYTES));
                payload.clear();
                payload.extend_from_slice(&root[offset as usize..end as usize]);
                Response::CatalogPart {
                    total_len: total,
                    offset,
                    len: (end - offset) as u32,
                }
            }
            Request::CatalogParts {
                publisher,
                ref hashes,
            } => {
                let Some(held) = self.policy.held_catalog(&publisher) else {
                    return refuse(
                        RefusalReason::NotHeld,
                        format!("no catalog of publisher {publisher} is held here"),
                    );
                };
                // `decode_request` bounds the count; each part is at most MAX_CATALOG_PART_BYTES,
                // so the answer fits one frame.
                payload.clear();
                let mut lens = Vec::with_capacity(hashes.len());
                for hash in hashes {
                    let Some(part) = held.catalog().part(hash) else {
                        payload.clear();
                        return refuse(
                            RefusalReason::NotHeld,
                            format!(
                                "catalog part {hash} is not a part of catalog {} of {publisher}, \
                                 the one held here",
                                held.head().head().sequence
                            ),
                        );
                    };
                    lens.push(part.len() as u32);
                    payload.extend_from_slice(part);
                }
                Response::CatalogParts { lens }
            }
            _ => refuse(RefusalReason::BadRequest, "not a catalog request"),
        }
    }
}
