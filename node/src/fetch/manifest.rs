//! Finding a manifest: which peers to ask about a manifest id, and asking them for the signed
//! manifest until one sends one that verifies.
//!
//! The peers known at once (those named in the link, then those connected) are asked while the
//! DHT lookup for providers runs beside them ([`ProviderLookup`]); its providers are asked only
//! if none of those had it. The lookup is started once and shared: the download that follows
//! uses its answer instead of looking again, and starts with the peer that sent the manifest.

use std::{collections::HashSet, sync::Arc};

use futures::{
    FutureExt as _,
    future::{BoxFuture, Shared},
};
use libp2p::PeerId;
use licet_proto::{
    ManifestId,
    manifest::VerifiedManifest,
    policy::RefusalReason,
    wire::{Request, Response},
};
use tracing::debug;

use super::{ChunkSource as _, FetchContext, FetchError, FetchNet, MAX_MANIFEST_CANDIDATES};

/// A DHT lookup of the providers of one manifest, running on its own task from the moment it is
/// started; every clone waits for the same answer.
#[derive(Clone)]
pub struct ProviderLookup(Shared<BoxFuture<'static, HashSet<PeerId>>>);

impl ProviderLookup {
    /// Starts looking up the providers of `id`.
    pub fn start<N: FetchNet>(ctx: &Arc<FetchContext<N>>, id: ManifestId) -> ProviderLookup {
        let ctx = ctx.clone();
        let running = tokio::spawn(async move { ctx.net.providers(id).await });
        ProviderLookup(
            running
                .map(|answer| answer.unwrap_or_default())
                .boxed()
                .shared(),
        )
    }

    /// The providers found (waits for the lookup's answer).
    pub async fn providers(&self) -> HashSet<PeerId> {
        self.0.clone().await
    }
}

/// A manifest found: the manifest, the peer that sent it (a download's first source), and the
/// provider lookup started for it (its answer is the download's first look for peers).
pub struct ManifestFound {
    /// The signed manifest, verified.
    pub manifest: VerifiedManifest,
    /// The peer that sent it.
    pub peer: PeerId,
    /// The lookup of its providers, perhaps still running.
    pub lookup: ProviderLookup,
}

/// Whether `peer` may be asked: not this node, not banned.
pub(super) fn usable<N: FetchNet>(ctx: &FetchContext<N>, peer: &PeerId) -> bool {
    *peer != ctx.net.local_peer_id() && !ctx.peers.is_banned(peer)
}

/// Finds the signed manifest `id` on the network and verifies it (see [`find`]).
pub(crate) async fn find_manifest<N: FetchNet>(
    ctx: &Arc<FetchContext<N>>,
    id: ManifestId,
    hints: &[PeerId],
) -> Result<VerifiedManifest, FetchError> {
    find(ctx, id, hints).await.map(|found| found.manifest)
}

/// Finds the signed manifest `id`: asks the peers named in `hints`, then the peers connected,
/// while the provider lookup runs; then the providers not asked yet. At most
/// [`MAX_MANIFEST_CANDIDATES`] peers are asked.
pub(crate) async fn find<N: FetchNet>(
    ctx: &Arc<FetchContext<N>>,
    id: ManifestId,
    hints: &[PeerId],
) -> Result<ManifestFound, FetchError> {
    let lookup = ProviderLookup::start(ctx, id);
    let mut asking = Asking {
        seen: HashSet::new(),
        refusals: Vec::new(),
        asked: 0,
    };
    let connected = ctx.net.connected().await;
    for peer in hints.iter().copied().chain(connected) {
        if let Some(manifest) = asking.ask(ctx, peer, id).await {
            return Ok(ManifestFound {
                manifest,
                peer,
                lookup,
            });
        }
    }
    for peer in lookup.providers().await {
        if let Some(manifest) = asking.ask(ctx, peer, id).await {
            return Ok(ManifestFound {
                manifest,
                peer,
                lookup,
            });
        }
    }
    match asking.refusals.into_iter().next() {
        Some((reason, detail)) => Err(FetchError::Refused { id, reason, detail }),
        None => Err(FetchError::Unavailable {
            id,
            asked: asking.asked,
        }),
    }
}

/// The peers asked for a manifest so far, and what they said.
struct Asking {
    /// Candidates taken (asked, or not reachable), at most [`MAX_MANIFEST_CANDIDATES`].
    seen: HashSet<PeerId>,
    refusals: Vec<(RefusalReason, String)>,
    /// Peers that answered or failed on an open session.
    asked: usize,
}

impl Asking {
    /// Asks `peer` for manifest `id`, unless it was a candidate already or may not be asked;
    /// the manifest if it sent one that verifies and is `id`.
    async fn ask<N: FetchNet>(
        &mut self,
        ctx: &FetchContext<N>,
        peer: PeerId,
        id: ManifestId,
    ) -> Option<VerifiedManifest> {
        if self.seen.len() >= MAX_MANIFEST_CANDIDATES
            || !usable(ctx, &peer)
            || !self.seen.insert(peer)
        {
            return None;
        }
        let session = ctx.net.open(peer).await.ok()?;
        self.asked += 1;
        let reply = match session.request(Request::Manifest { id }).await {
            Ok(reply) => reply,
            Err(e) => {
                debug!(%peer, "manifest request failed: {e}");
                ctx.peers.request_failed(peer, &e).await;
                return None;
            }
        };
        match reply.response {
            Response::Manifest { envelope } => match VerifiedManifest::from_bytes(&envelope) {
                Ok(manifest) if manifest.id() == id => return Some(manifest),
                Ok(other) => {
                    ctx.peers
                        .ban(
                            peer,
                            &format!("sent manifest {} when asked for {id}", other.id()),
                        )
                        .await;
                }
                Err(e) => {
                    self.refusals.push((
                        e.refusal_reason(),
                        format!("peer {peer} sent a manifest that does not verify: {e}"),
                    ));
                    ctx.peers
                        .ban(peer, "sent a manifest that does not verify")
                        .await;
                }
            },
            Response::Refused { reason, detail } if reason != RefusalReason::NotHeld => {
                self.refusals
                    .push((reason, format!("peer {peer}: {detail}")));
            }
            Response::Refused { .. } | Response::Busy { .. } => {}
            other => {
                ctx.peers
                    .ban(peer, &format!("answered a manifest request with {other:?}"))
                    .await;
            }
        }
        None
    }
}
