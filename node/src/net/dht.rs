//! The event loop's side of the DHT: provider lookups and announcements, and the check every
//! value record (a catalog head) passes before this node stores it (see the parent module's
//! docs for the rules).

use std::collections::HashSet;

use libp2p::{
    Multiaddr, PeerId, kad,
    kad::store::RecordStore as _,
    swarm::{
        DialError,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::sync::oneshot;
use tracing::debug;

use super::EventLoop;

/// A provider lookup and the callers waiting for its answer.
pub(super) struct PendingProviders {
    pub(super) providers: HashSet<PeerId>,
    pub(super) replies: Vec<oneshot::Sender<HashSet<PeerId>>>,
}

/// A record lookup and the caller waiting for its values.
pub(super) struct PendingRecords {
    pub(super) values: Vec<Vec<u8>>,
    pub(super) reply: oneshot::Sender<Vec<Vec<u8>>>,
}

/// Most values kept from one record lookup (honest nodes hold one head per key).
const MAX_VALUES_PER_LOOKUP: usize = 32;

impl EventLoop {
    /// Adds `peer`'s `addrs` to the routing table if the peer is in it already or its bucket
    /// has room (the table's inserts are manual: `BucketInserts::Manual` in `net/mod.rs`).
    ///
    /// Kademlia, asked to add a peer to a full bucket, dials the bucket's oldest disconnected
    /// peer to see whether it is still there. With the connection manager keeping most of the
    /// table disconnected, every new connection could lead to another dial, and that one to
    /// another at the far end (in a 300-node swarm allowed 24 connections each, the
    /// connections opened and trimmed fell from about 1,300 to 900 a second in all without
    /// these dials: one source of that churn, not the only one). A full bucket keeps the peers it has (Kademlia prefers
    /// long-lived peers); one that a dial no longer reaches leaves it
    /// ([`EventLoop::forget_unreachable`]), and the next peer identified takes its place.
    pub(super) fn add_to_routing_table(
        &mut self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
    ) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let room = kad.kbucket(peer).is_some_and(|bucket| {
            bucket.num_entries() < kad::K_VALUE.get()
                || bucket
                    .iter()
                    .any(|entry| *entry.node.key.preimage() == peer)
        });
        if room {
            for addr in addrs {
                kad.add_address(&peer, addr);
            }
        }
    }

    /// A dial of `peer` failed with `error`: if the peer could not be reached (not a dial this
    /// node stopped or refused itself), it leaves the routing table, making room for a peer
    /// that answers (see [`EventLoop::add_to_routing_table`]). It comes back when it connects
    /// again and says where it listens.
    pub(super) fn forget_unreachable(&mut self, peer: PeerId, error: &DialError) {
        if matches!(
            error,
            DialError::Transport(_) | DialError::WrongPeerId { .. } | DialError::NoAddresses
        ) && !self.swarm.is_connected(&peer)
        {
            self.swarm.behaviour_mut().kad.remove_peer(&peer);
        }
    }

    /// The check every value record passes before this node stores it (see the module docs).
    pub(super) fn check_record(&mut self, record: &kad::Record) -> Result<(), String> {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let stored = store.get(&record.key).map(|r| r.value.clone());
        licet_proto::catalog::check_head_record(
            record.key.as_ref(),
            &record.value,
            stored.as_deref(),
            (self.judged_now)(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// A provider record goes to the peers closest to its key that the node knows when it
    /// announces, and kad announces again only every 12 hours: content added while the node
    /// had few peers (a seed that starts first, a swarm that grows) would stay findable at
    /// those few. So each time the routing table reaches 1, 2, 4, 8, … peers, every provided
    /// key is announced again: a handful of times in a node's life, logarithmic in the swarm.
    fn reannounce_as_the_table_grows(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let peers: usize = kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
        if peers < self.reannounce_at {
            return;
        }
        while self.reannounce_at <= peers {
            self.reannounce_at *= 2;
        }
        debug!(peers, "routing table grew: announcing again");
        self.announce_all_again();
    }

    /// Announces every provided key again (the table grew, or this node's addresses changed:
    /// a provider record carries the addresses to dial it at).
    pub(super) fn announce_all_again(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let keys: Vec<kad::RecordKey> = kad::store::RecordStore::provided(kad.store_mut())
            .map(|record| record.key.clone())
            .collect();
        for key in keys {
            if let Err(e) = kad.start_providing(key) {
                debug!("not announced again: {e}");
            }
        }
    }

    pub(super) fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            } => self.reannounce_as_the_table_grows(),
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                stats,
            } => {
                let finished = step.last;
                if finished {
                    // Every lookup's cost, this node's own and those it runs for a download.
                    self.counters
                        .provider_lookup_peers
                        .observe(f64::from(stats.num_requests()));
                }
                let found = match &result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => providers.clone(),
                    _ => HashSet::new(),
                };
                if self.on_topic_providers(id, &found, finished) {
                    return;
                }
                if let Some(pending) = self.pending_providers.get_mut(&id) {
                    match result {
                        Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                            // Kademlia knows a provider's addresses (its record's) only while
                            // the lookup runs, and a provider behind a NAT is in no routing
                            // table: dial it now, through the relay it named if need be.
                            for provider in &providers {
                                if !self.swarm.is_connected(provider)
                                    && provider != self.swarm.local_peer_id()
                                {
                                    let opts = DialOpts::peer_id(*provider)
                                        .condition(PeerCondition::DisconnectedAndNotDialing)
                                        .build();
                                    if let Err(e) = self.swarm.dial(opts) {
                                        debug!(%provider, "cannot dial a provider: {e}");
                                    }
                                }
                            }
                            pending.providers.extend(providers);
                        }
                        Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                        Err(e) => debug!("provider lookup ended: {e}"),
                    }
                }
                if finished && let Some(pending) = self.pending_providers.remove(&id) {
                    for reply in pending.replies {
                        let _ = reply.send(pending.providers.clone());
                    }
                }
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                // The store bounds other peers' records in all, per peer and per key.
                let store = self.swarm.behaviour_mut().kad.store_mut();
                if let Err(e) = store.add_remote_provider(record) {
                    debug!("provider record not stored: {e}");
                }
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => match self.check_record(&record) {
                Ok(()) => {
                    let store = self.swarm.behaviour_mut().kad.store_mut();
                    if let Err(e) = store.put(record) {
                        debug!(%source, "record not stored: {e}");
                    }
                }
                Err(reason) => debug!(%source, "record refused: {reason}"),
            },
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetRecord(result),
                step,
                ..
            } => {
                if let Some(pending) = self.pending_records.get_mut(&id) {
                    match result {
                        Ok(kad::GetRecordOk::FoundRecord(found)) => {
                            if pending.values.len() < MAX_VALUES_PER_LOOKUP
                                && !pending.values.contains(&found.record.value)
                            {
                                pending.values.push(found.record.value);
                            }
                        }
                        Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => {}
                        Err(e) => debug!("record lookup ended: {e}"),
                    }
                }
                if step.last
                    && let Some(pending) = self.pending_records.remove(&id)
                {
                    let _ = pending.reply.send(pending.values);
                }
            }
            other => debug!(?other, "kademlia event"),
        }
    }
}
