//! Finding a manifest: which peers to ask about a manifest id, and asking them for the signed
//! manifest until one sends one that verifies.

use std::collections::HashSet;

use libp2p::PeerId;
use licet_proto::{
    ManifestId,
    manifest::VerifiedManifest,
    policy::RefusalReason,
    wire::{Request, Response},
};
use tracing::debug;

use super::{ChunkSource as _, FetchContext, FetchError, FetchNet, MAX_MANIFEST_CANDIDATES};

/// Peers worth asking about `id`: hints first, then DHT providers, then connected peers.
pub(super) async fn candidates<N: FetchNet>(
    ctx: &FetchContext<N>,
    id: ManifestId,
    hints: &[PeerId],
) -> Vec<PeerId> {
    let local = ctx.net.local_peer_id();
    let mut seen = HashSet::new();
    let mut peers = Vec::new();
    let providers = ctx.net.providers(id).await;
    let connected = ctx.net.connected().await;
    for peer in hints.iter().copied().chain(providers).chain(connected) {
        if peer != local && !ctx.peers.is_banned(&peer) && seen.insert(peer) {
            peers.push(peer);
        }
    }
    peers
}

/// Finds the signed manifest `id` on the network and verifies it.
pub(crate) async fn find_manifest<N: FetchNet>(
    ctx: &FetchContext<N>,
    id: ManifestId,
    hints: &[PeerId],
) -> Result<VerifiedManifest, FetchError> {
    let mut refusals: Vec<(RefusalReason, String)> = Vec::new();
    let mut asked = 0;
    for peer in candidates(ctx, id, hints)
        .await
        .into_iter()
        .take(MAX_MANIFEST_CANDIDATES)
    {
        let Ok(session) = ctx.net.open(peer).await else {
            continue;
        };
        asked += 1;
        let reply = match session.request(Request::Manifest { id }).await {
            Ok(reply) => reply,
            Err(e) => {
                debug!(%peer, "manifest request failed: {e}");
                ctx.peers.request_failed(peer, &e).await;
                continue;
            }
        };
        match reply.response {
            Response::Manifest { envelope } => match VerifiedManifest::from_bytes(&envelope) {
                Ok(manifest) if manifest.id() == id => return Ok(manifest),
                Ok(other) => {
                    ctx.peers
                        .ban(
                            peer,
                            &format!("sent manifest {} when asked for {id}", other.id()),
                        )
                        .await;
                }
                Err(e) => {
                    refusals.push((
                        e.refusal_reason(),
                        format!("peer {peer} sent a manifest that does not verify: {e}"),
                    ));
                    ctx.peers
                        .ban(peer, "sent a manifest that does not verify")
                        .await;
                }
            },
            Response::Refused { reason, detail } if reason != RefusalReason::NotHeld => {
                refusals.push((reason, format!("peer {peer}: {detail}")));
            }
            Response::Refused { .. } | Response::Busy { .. } => {}
            other => {
                ctx.peers
                    .ban(peer, &format!("answered a manifest request with {other:?}"))
                    .await;
            }
        }
    }
    match refusals.into_iter().next() {
        Some((reason, detail)) => Err(FetchError::Refused { id, reason, detail }),
        None => Err(FetchError::Unavailable { id, asked }),
    }
}
