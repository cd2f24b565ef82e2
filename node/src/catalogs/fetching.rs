//! Step 3 of the catalog work (`mod.rs`): fetching the catalog a head names from peers. First its
//! signed root, piece by piece ([`CatalogRootPieces`]), checked against the head's hash before
//! it is decoded; then the parts it names that the node does not hold already in the
//! publisher's previous catalog: the pages it lacks, then the buckets those pages name that it
//! lacks (at most [`MAX_PART_ROUNDS`] rounds), [`MAX_CATALOG_PARTS_PER_REQUEST`] hashes a
//! request. A node that holds nothing of the publisher fetches every part: the whole catalog.
//!
//! Invariants: one fetch per catalog at a time ([`FetchClaim`]); at most
//! [`MAX_CATALOG_SOURCES`] peers tried, each within [`CATALOG_FETCH_TIMEOUT`]; every part is
//! checked against the hash it was asked by before it is kept, and the parts fetched are at
//! most `MAX_CATALOG_BODY_BYTES` together; a peer that breaks the protocol or sends bytes that
//! are not what was asked (a root that is not the head's, a part that is not the one named, more
//! or fewer parts than asked) is banned.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use libp2p::PeerId;
use licet_proto::{
    CatalogHash, CatalogPartHash, PublicKey,
    catalog::{MAX_CATALOG_BODY_BYTES, VerifiedCatalog, VerifiedCatalogHead, catalog_head_key},
    catalog_parts::catalog_part_hash,
    wire::{MAX_CATALOG_PARTS_PER_REQUEST, Request, Response, split_catalog_parts},
};
use tracing::{debug, info};

use super::{CatalogError, CatalogHost, Catalogs};
use crate::{
    policy_state::{CatalogOffer, CatalogRefused},
    transfer::Session,
};

/// Most peers tried for one catalog.
const MAX_CATALOG_SOURCES: usize = 8;
/// Longest one peer may take to send a whole catalog.
const CATALOG_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Rounds of `CatalogParts` requests for one catalog: the pages missing, then the buckets they
/// name (a third round finds nothing missing from an honest peer).
const MAX_PART_ROUNDS: usize = 2;
/// `CatalogParts` requests in flight to one peer while a catalog is fetched.
const PART_REQUESTS_IN_FLIGHT: usize = 8;

/// A catalog envelope put together from one peer's `CatalogPart` answers, asked for in order.
///
/// Each answer must be the part asked for (at [`CatalogRootPieces::next_offset`]), of the same
/// `total_len` as the first, and move on (`len > 0`) unless the envelope is whole. Every part
/// reaches it through `wire::decode_response`, which bounds `total_len` by the catalog envelope
/// limit and `offset + len` by `total_len`: the envelope never grows past that limit.
#[derive(Debug, Default)]
pub struct CatalogRootPieces {
    envelope: Vec<u8>,
    total: Option<u64>,
}

impl CatalogRootPieces {
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

    /// The envelope's bytes (whole once [`CatalogRootPieces::add`] said so).
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
        let mut asked = HashSet::new();
        let mut problems = Vec::new();
        // The peer the head came from and the connected peers first: one of them holds the
        // catalog nearly always (gossip forwards a head only once its catalog is held), and
        // asking them costs no DHT lookup, which on a busy swarm takes seconds per hop.
        let connected = self.network.connected().await.unwrap_or_default();
        let nearby: Vec<PeerId> = hint
            .into_iter()
            .chain(connected.into_iter().map(|(peer, _)| peer))
            .collect();
        if let Some(catalog) = self
            .fetch_catalog_from_any(head, nearby, local, &mut asked, &mut problems)
            .await
        {
            return Ok(catalog);
        }
        // Then the providers of the head's key, which anyone can announce, so they come last.
        if asked.len() < MAX_CATALOG_SOURCES {
            let providers = self
                .network
                .providers(catalog_head_key(&h.publisher).0)
                .await
                .unwrap_or_default();
            if let Some(catalog) = self
                .fetch_catalog_from_any(head, providers, local, &mut asked, &mut problems)
                .await
            {
                return Ok(catalog);
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

    /// Tries `candidates` in order (skipping this node, banned peers and those in `asked`, and
    /// stopping once [`MAX_CATALOG_SOURCES`] were asked in all) until one sends the catalog;
    /// each failure is added to `problems`.
    async fn fetch_catalog_from_any(
        &self,
        head: &VerifiedCatalogHead,
        candidates: impl IntoIterator<Item = PeerId>,
        local: PeerId,
        asked: &mut HashSet<PeerId>,
        problems: &mut Vec<String>,
    ) -> Option<CatalogOffer> {
        let h = head.head();
        for peer in candidates {
            if asked.len() >= MAX_CATALOG_SOURCES {
                break;
            }
            if peer == local || self.host.is_banned(&peer) || !asked.insert(peer) {
                continue;
            }
            let fetched =
                tokio::time::timeout(CATALOG_FETCH_TIMEOUT, self.fetch_catalog_from(peer, head))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "did not send the catalog within {CATALOG_FETCH_TIMEOUT:?}"
                        ))
                    });
            match fetched {
                Ok(catalog) => return Some(catalog),
                Err(problem) => {
                    debug!(%peer, "catalog {} of {} not fetched: {problem}", h.sequence, h.publisher);
                    problems.push(format!("{peer}: {problem}"));
                }
            }
        }
        None
    }

    /// Fetches the catalog `head` names from `peer`: its root, then the parts the node lacks
    /// (module docs), and checks it. A peer that breaks the protocol or sends bytes that are not
    /// what was asked is banned.
    async fn fetch_catalog_from(
        &self,
        peer: PeerId,
        head: &VerifiedCatalogHead,
    ) -> Result<CatalogOffer, String> {
        let h = head.head();
        let session = self.host.session(peer).await.map_err(|e| e.to_string())?;
        let root_bytes = self.fetch_root(peer, &session, head).await?;
        self.metrics.fetched_bytes.inc_by(root_bytes.len() as u64);
        let root = match CatalogOffer::root_for_head(head, &root_bytes) {
            Ok(root) => root,
            Err(refused @ CatalogRefused::Mismatch { .. }) => {
                let reason = refused.to_string();
                self.metrics.refused(refused.label());
                self.host.ban(peer, &reason).await;
                return Err(reason);
            }
            Err(refused) => return Err(refused.to_string()),
        };
        // The publisher's catalog this node holds: its parts are not fetched again.
        let previous: Option<VerifiedCatalog> = self
            .policy
            .newest_catalog(&h.publisher)
            .filter(|previous| previous.catalog().publisher == h.publisher);
        let mut fetched: BTreeMap<CatalogPartHash, Vec<u8>> = BTreeMap::new();
        let mut fetched_bytes = 0usize;
        let mut fetched_parts = 0usize;
        for _ in 0..MAX_PART_ROUNDS {
            let missing = root
                .root()
                .missing_parts(|hash| held_part(&fetched, previous.as_ref(), hash))
                .map_err(|e| format!("catalog {} of {}: {e}", h.sequence, h.publisher))?;
            if missing.is_empty() {
                break;
            }
            for batch in self
                .fetch_parts(peer, &session, h.publisher, &missing)
                .await?
            {
                for (hash, part) in batch {
                    fetched_bytes += part.len();
                    fetched_parts += 1;
                    if fetched_bytes > MAX_CATALOG_BODY_BYTES {
                        return Err(format!(
                            "catalog {} of {} is over {MAX_CATALOG_BODY_BYTES} bytes",
                            h.sequence, h.publisher
                        ));
                    }
                    fetched.insert(hash, part);
                }
            }
        }
        let (total_parts, total_bytes) = (root.root().pages.len(), fetched_bytes);
        let offer = CatalogOffer::assembled(head.clone(), root, |hash| {
            held_part(&fetched, previous.as_ref(), hash)
        })
        .map_err(|refused| refused.to_string())?;
        let (parts, bytes) = offer.catalog().parts_size();
        info!(
            publisher = %h.publisher,
            sequence = h.sequence,
            %peer,
            root_bytes = root_bytes.len(),
            parts_fetched = fetched_parts,
            part_bytes_fetched = total_bytes,
            parts_in_catalog = parts,
            part_bytes_in_catalog = bytes,
            pages = total_parts,
            "catalog fetched"
        );
        Ok(offer)
    }

    /// The root envelope `head` names, from `peer`, piece by piece (not checked yet).
    async fn fetch_root(
        &self,
        peer: PeerId,
        session: &Arc<Session>,
        head: &VerifiedCatalogHead,
    ) -> Result<Vec<u8>, String> {
        let h = head.head();
        let mut pieces = CatalogRootPieces::default();
        loop {
            let offset = pieces.next_offset();
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
                } => match pieces.add(total_len, part_offset, len, reply.payload()) {
                    Ok(true) => return Ok(pieces.into_envelope()),
                    Ok(false) => {}
                    Err(reason) => {
                        self.host.ban(peer, &reason).await;
                        return Err(reason);
                    }
                },
                other => return Err(self.unexpected(peer, other).await),
            }
        }
    }

    /// The parts named `missing` from `peer`, [`PART_REQUESTS_IN_FLIGHT`] requests at a time,
    /// each checked against its hash.
    async fn fetch_parts(
        &self,
        peer: PeerId,
        session: &Arc<Session>,
        publisher: PublicKey,
        missing: &[CatalogPartHash],
    ) -> Result<Vec<Vec<(CatalogPartHash, Vec<u8>)>>, String> {
        let mut fetched = Vec::new();
        for group in missing.chunks(MAX_CATALOG_PARTS_PER_REQUEST * PART_REQUESTS_IN_FLIGHT) {
            let mut requests = Vec::new();
            for batch in group.chunks(MAX_CATALOG_PARTS_PER_REQUEST) {
                requests.push(self.fetch_part_batch(peer, session, publisher, batch));
            }
            fetched.extend(futures::future::try_join_all(requests).await?);
        }
        Ok(fetched)
    }

    /// One `CatalogParts` request: every part asked, in order, each the one its hash names.
    async fn fetch_part_batch(
        &self,
        peer: PeerId,
        session: &Arc<Session>,
        publisher: PublicKey,
        batch: &[CatalogPartHash],
    ) -> Result<Vec<(CatalogPartHash, Vec<u8>)>, String> {
        let reply = match session
            .request(Request::CatalogParts {
                publisher,
                hashes: batch.to_vec(),
            })
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                self.host.request_failed(peer, &e).await;
                return Err(e.to_string());
            }
        };
        let payload = reply.payload().to_vec();
        let lens = match reply.response {
            Response::CatalogParts { lens } => lens,
            other => return Err(self.unexpected(peer, other).await),
        };
        self.metrics.fetched_bytes.inc_by(payload.len() as u64);
        if lens.len() != batch.len() {
            let reason = format!(
                "answered {} catalog parts when {} were asked",
                lens.len(),
                batch.len()
            );
            self.host.ban(peer, &reason).await;
            return Err(reason);
        }
        let mut parts = Vec::with_capacity(batch.len());
        for (hash, part) in batch.iter().zip(split_catalog_parts(&lens, &payload)) {
            if catalog_part_hash(part) != *hash {
                let reason =
                    format!("sent a catalog part that is not part {hash}, which was asked");
                self.metrics.refused("mismatch");
                self.host.ban(peer, &reason).await;
                return Err(reason);
            }
            parts.push((*hash, part.to_vec()));
        }
        self.metrics.parts_fetched.inc_by(parts.len() as u64);
        Ok(parts)
    }

    /// The reason a catalog request's answer is not taken: a refusal or `Busy` as said, any
    /// other answer a protocol violation (the peer is banned).
    async fn unexpected(&self, peer: PeerId, response: Response) -> String {
        match response {
            Response::Refused { reason, detail } => {
                format!("refused: {}: {detail}", reason.describe())
            }
            Response::Busy { .. } => "busy".to_owned(),
            other => {
                let reason = format!("answered a catalog request with {other:?}");
                self.host.ban(peer, &reason).await;
                reason
            }
        }
    }
}

/// The part named `hash`, from those fetched or the previous catalog's.
fn held_part<'a>(
    fetched: &'a BTreeMap<CatalogPartHash, Vec<u8>>,
    previous: Option<&'a VerifiedCatalog>,
    hash: &CatalogPartHash,
) -> Option<&'a [u8]> {
    fetched
        .get(hash)
        .map(Vec::as_slice)
        .or_else(|| previous.and_then(|previous| previous.part(hash)))
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
