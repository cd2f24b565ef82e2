//! Step 3 of the catalog work (`mod.rs`): fetching the catalog a head names from peers, part by
//! part, and checking the bytes against the head before they are decoded.
//!
//! Invariants: one fetch per catalog at a time ([`FetchClaim`]); at most
//! [`MAX_CATALOG_SOURCES`] peers tried, each within [`CATALOG_FETCH_TIMEOUT`]; a peer that
//! breaks the part protocol or sends bytes that are not the head's catalog is banned.

use std::{collections::HashSet, sync::Mutex, time::Duration};

use libp2p::PeerId;
use licet_proto::{
    CatalogHash, PublicKey,
    catalog::{VerifiedCatalogHead, catalog_head_key},
    wire::{Request, Response},
};
use tracing::debug;

use super::{CatalogError, CatalogHost, Catalogs};
use crate::policy_state::{CatalogOffer, CatalogRefused};

/// Most peers tried for one catalog.
const MAX_CATALOG_SOURCES: usize = 8;
/// Longest one peer may take to send a whole catalog.
const CATALOG_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A catalog envelope put together from one peer's `CatalogPart` answers, asked for in order.
///
/// Each answer must be the part asked for (at [`CatalogParts::next_offset`]), of the same
/// `total_len` as the first, and move on (`len > 0`) unless the envelope is whole. Every part
/// reaches it through `wire::decode_response`, which bounds `total_len` by the catalog envelope
/// limit and `offset + len` by `total_len`: the envelope never grows past that limit.
#[derive(Debug, Default)]
pub struct CatalogParts {
    envelope: Vec<u8>,
    total: Option<u64>,
}

impl CatalogParts {
    /// The offset to ask for next: the bytes held so far.
    pub fn next_offset(&self) -> u64 {
        self.envelope.len() as u64
    }

    /// Takes one answer's part (`payload` is its `len` bytes). `Ok(true)` once the envelope is
    /// whole; `Err` with the reason to ban the peer for if the part is not the one asked for.
    pub fn add(
        &mut self,
        total_len: u64,
        part_offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<bool, String> {
        let offset = self.next_offset();
        let consistent = part_offset == offset
            && self.total.is_none_or(|t| t == total_len)
            && (len > 0 || offset == total_len);
        if !consistent {
            return Err(format!(
                "catalog part at {part_offset} of {total_len} bytes when {offset} was asked"
            ));
        }
        self.total = Some(total_len);
        self.envelope.extend_from_slice(payload);
        Ok(self.envelope.len() as u64 >= total_len)
    }

    /// The envelope's bytes (whole once [`CatalogParts::add`] said so).
    pub fn into_envelope(self) -> Vec<u8> {
        self.envelope
    }
}

/// A catalog being fetched, in `CatalogWork::fetching` while this lives.
pub(super) struct FetchClaim<'a> {
    set: &'a Mutex<HashSet<(PublicKey, CatalogHash)>>,
    wanted: (PublicKey, CatalogHash),
}

impl<'a> FetchClaim<'a> {
    /// Claims `wanted`, unless it is being fetched already.
    pub(super) fn claim(
        set: &'a Mutex<HashSet<(PublicKey, CatalogHash)>>,
        wanted: (PublicKey, CatalogHash),
    ) -> Option<FetchClaim<'a>> {
        // The guard must be gone before a claim can exist: dropping a claim takes the lock.
        let claimed = set.lock().unwrap_or_else(|p| p.into_inner()).insert(wanted);
        claimed.then(|| FetchClaim { set, wanted })
    }
}

impl Drop for FetchClaim<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.wanted);
    }
}

impl<H: CatalogHost> Catalogs<H> {
    /// Step 3: fetches the catalog `head` names from peers, `hint` first.
    pub(super) async fn fetch_catalog(
        &self,
        head: &VerifiedCatalogHead,
        hint: Option<PeerId>,
    ) -> Result<CatalogOffer, CatalogError> {
        let h = head.head();
        let local = self.network.local_peer_id();
        let providers = self
            .network
            .providers(catalog_head_key(&h.publisher).0)
            .await
            .unwrap_or_default();
        let connected = self.network.connected().await.unwrap_or_default();
        let mut seen = HashSet::new();
        // The peer the head came from, then connected peers, then providers (which anyone can
        // announce, so they come last).
        let candidates: Vec<PeerId> = hint
            .into_iter()
            .chain(connected.into_iter().map(|(peer, _)| peer))
            .chain(providers)
            .filter(|peer| *peer != local && !self.host.is_banned(peer) && seen.insert(*peer))
            .take(MAX_CATALOG_SOURCES)
            .collect();
        let mut problems = Vec::new();
        for peer in candidates {
            let fetched =
                tokio::time::timeout(CATALOG_FETCH_TIMEOUT, self.fetch_catalog_from(peer, head))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "did not send the catalog within {CATALOG_FETCH_TIMEOUT:?}"
                        ))
                    });
            match fetched {
                Ok(catalog) => return Ok(catalog),
                Err(problem) => {
                    debug!(%peer, "catalog {} of {} not fetched: {problem}", h.sequence, h.publisher);
                    problems.push(format!("{peer}: {problem}"));
                }
            }
        }
        Err(CatalogError::Unavailable(format!(
            "no peer sent catalog {} of {}{}",
            h.sequence,
            h.publisher,
            if problems.is_empty() {
                " (no peer to ask)".to_owned()
            } else {
                format!(" ({})", problems.join("; "))
            }
        )))
    }

    /// Fetches the catalog `head` names from `peer`, part by part, and checks it. A peer that
    /// breaks the protocol or sends bytes that are not the named catalog is banned.
    async fn fetch_catalog_from(
        &self,
        peer: PeerId,
        head: &VerifiedCatalogHead,
    ) -> Result<CatalogOffer, String> {
        let h = head.head();
        let session = self.host.session(peer).await.map_err(|e| e.to_string())?;
        let mut parts = CatalogParts::default();
        loop {
            let offset = parts.next_offset();
            let reply = match session
                .request(Request::CatalogPart {
                    publisher: h.publisher,
                    catalog_hash: h.catalog_hash,
                    offset,
                })
                .await
            {
                Ok(reply) => reply,
                Err(e) => {
                    self.host.request_failed(peer, &e).await;
                    return Err(e.to_string());
                }
            };
            match reply.response {
                Response::CatalogPart {
                    total_len,
                    offset: part_offset,
                    len,
                } => match parts.add(total_len, part_offset, len, reply.payload()) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(reason) => {
                        self.host.ban(peer, &reason).await;
                        return Err(reason);
                    }
                },
                Response::Refused { reason, detail } => {
                    return Err(format!("refused: {}: {detail}", reason.describe()));
                }
                Response::Busy { .. } => return Err("busy".to_owned()),
                other => {
                    let reason = format!("answered a catalog request with {other:?}");
                    self.host.ban(peer, &reason).await;
                    return Err(reason);
                }
            }
        }
        match CatalogOffer::for_head(head.clone(), &parts.into_envelope()) {
            Ok(offer) => Ok(offer),
            Err(refused @ CatalogRefused::Mismatch { .. }) => {
                let reason = refused.to_string();
                self.metrics.refused(refused.label());
                self.host.ban(peer, &reason).await;
                Err(reason)
            }
            Err(refused) => Err(refused.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a second claim of the same catalog deadlocked (the claim it built and dropped
    /// took the lock its own guard still held).
    #[test]
    fn a_catalog_is_claimed_once_until_its_claim_is_dropped() {
        let set = std::sync::Mutex::new(HashSet::new());
        let wanted = (PublicKey([1; 32]), CatalogHash([2; 32]));
        let first = FetchClaim::claim(&set, wanted).expect("free");
        assert!(FetchClaim::claim(&set, wanted).is_none(), "claimed already");
        let other = (PublicKey([1; 32]), CatalogHash([3; 32]));
        assert!(
            FetchClaim::claim(&set, other).is_some(),
            "another catalog is free"
        );
        drop(first);
        assert!(FetchClaim::claim(&set, wanted).is_some(), "free again");
        assert!(set.lock().unwrap().is_empty());
    }
}
