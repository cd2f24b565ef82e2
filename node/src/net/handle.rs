//! [`Network`], the cloneable handle the rest of the node holds, the [`Command`]s it sends the
//! event loop (each with a `oneshot` for its reply), and how the event loop carries them out.

use std::{collections::HashSet, time::Duration};

use libp2p::{Multiaddr, PeerId, gossipsub, kad, multiaddr::Protocol, swarm::dial_opts::DialOpts};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{
    EventLoop, MAX_GOSSIP_BYTES, NetworkReport, PendingProviders, PendingRecords, peer_of,
};

/// What the rest of the node asks of the event loop.
pub(super) enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    DialPeer {
        peer: PeerId,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    Contacts {
        peers: Vec<PeerId>,
        reply: oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>,
    },
    Learn {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    StartProviding {
        key: [u8; 32],
    },
    StopProviding {
        key: [u8; 32],
    },
    GetProviders {
        key: [u8; 32],
        reply: oneshot::Sender<HashSet<PeerId>>,
    },
    Connected {
        reply: oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Reachability {
        reply: oneshot::Sender<NetworkReport>,
    },
    WaitDirect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Ban {
        peer: PeerId,
    },
    Unban {
        peer: PeerId,
    },
    Bootstrap,
    PutRecord {
        key: [u8; 32],
        value: Vec<u8>,
    },
    GetRecords {
        key: [u8; 32],
        reply: oneshot::Sender<Vec<Vec<u8>>>,
    },
    Subscribe {
        topic: gossipsub::IdentTopic,
        subscribed: super::topic_mesh::Subscribed,
    },
    Unsubscribe {
        topic: gossipsub::IdentTopic,
    },
    Publish {
        topic: gossipsub::IdentTopic,
        data: Vec<u8>,
    },
    ReportGossip {
        message_id: gossipsub::MessageId,
        source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    },
}

/// A cloneable handle to the event loop.
#[derive(Clone)]
pub struct Network {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) control: libp2p_stream::Control,
    pub(super) local_peer_id: PeerId,
    pub(super) in_use: super::InUse,
}

/// The event loop has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the network event loop has stopped")]
pub struct NetworkStopped;

impl Network {
    /// A handle to no event loop, for unit tests of the parts above the network: every request
    /// answers [`NetworkStopped`].
    #[cfg(test)]
    pub(crate) fn detached() -> Network {
        let (commands, _) = mpsc::channel(1);
        Network {
            commands,
            control: libp2p_stream::Behaviour::new().new_control(),
            local_peer_id: PeerId::random(),
            in_use: super::InUse::default(),
        }
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// `peer` is being fetched from or served to: its connection is not trimmed for a while
    /// (see `topic_mesh.rs`).
    pub fn mark_in_use(&self, peer: PeerId) {
        self.in_use.touch(peer);
    }

    /// A handle for opening transfer streams.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetworkStopped> {
        let (reply, receive) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetworkStopped)?;
        receive.await.map_err(|_| NetworkStopped)
    }

    async fn tell(&self, command: Command) -> Result<(), NetworkStopped> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetworkStopped)
    }

    /// Dials `addr` (which should end in `/p2p/<peer id>`); returns the peer once connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<Result<PeerId, String>, NetworkStopped> {
        self.ask(|reply| Command::Dial { addr, reply }).await
    }

    /// Connects to `peer` at the addresses the DHT knows for it and those other peers gave
    /// ([`Network::learn`]); a no-op if connected.
    pub async fn dial_peer(&self, peer: PeerId) -> Result<Result<PeerId, String>, NetworkStopped> {
        self.ask(|reply| Command::DialPeer { peer, reply }).await
    }

    /// Each of `peers` with the addresses it said it listens on (empty when it is not
    /// connected or did not say).
    pub async fn contacts(
        &self,
        peers: Vec<PeerId>,
    ) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, NetworkStopped> {
        self.ask(|reply| Command::Contacts { peers, reply }).await
    }

    /// Another peer says `peer` listens on `addrs`: [`Network::dial_peer`] tries them too.
    pub async fn learn(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), NetworkStopped> {
        self.tell(Command::Learn { peer, addrs }).await
    }

    /// Announces in the DHT that this node provides `key`.
    pub async fn start_providing(&self, key: [u8; 32]) -> Result<(), NetworkStopped> {
        self.tell(Command::StartProviding { key }).await
    }

    /// Stops announcing `key`.
    pub async fn stop_providing(&self, key: [u8; 32]) -> Result<(), NetworkStopped> {
        self.tell(Command::StopProviding { key }).await
    }

    /// The peers the DHT says provide `key` (waits for the lookup, at most 10 s).
    pub async fn providers(&self, key: [u8; 32]) -> Result<HashSet<PeerId>, NetworkStopped> {
        self.ask(|reply| Command::GetProviders { key, reply }).await
    }

    /// Connected peers and their addresses.
    pub async fn connected(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, NetworkStopped> {
        self.ask(|reply| Command::Connected { reply }).await
    }

    /// The addresses this node listens on, each with `/p2p/<peer id>`.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkStopped> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Whether other nodes can reach this one, and how.
    pub async fn report(&self) -> Result<NetworkReport, NetworkStopped> {
        self.ask(|reply| Command::Reachability { reply }).await
    }

    /// Waits (at most `timeout`) until this node has a direct connection to `peer`, not only one
    /// through a relay (a hole punch follows a relayed connection); `false` if none came.
    pub async fn wait_direct(&self, peer: PeerId, timeout: Duration) -> bool {
        let (reply, receive) = oneshot::channel();
        if self
            .commands
            .send(Command::WaitDirect { peer, reply })
            .await
            .is_err()
        {
            return false;
        }
        matches!(tokio::time::timeout(timeout, receive).await, Ok(Ok(())))
    }

    /// Disconnects `peer` and refuses its connections until [`Network::unban`].
    pub async fn ban(&self, peer: PeerId) -> Result<(), NetworkStopped> {
        self.tell(Command::Ban { peer }).await
    }

    /// Accepts `peer`'s connections again (its ban ended).
    pub async fn unban(&self, peer: PeerId) -> Result<(), NetworkStopped> {
        self.tell(Command::Unban { peer }).await
    }

    /// Refreshes the routing table.
    pub async fn bootstrap(&self) -> Result<(), NetworkStopped> {
        self.tell(Command::Bootstrap).await
    }

    /// Stores `value` under `key` here (if it passes the record check) and in the DHT.
    pub async fn put_record(&self, key: [u8; 32], value: Vec<u8>) -> Result<(), NetworkStopped> {
        self.tell(Command::PutRecord { key, value }).await
    }

    /// Every value the DHT (this node's store included) holds under `key`, unchecked.
    pub async fn get_records(&self, key: [u8; 32]) -> Result<Vec<Vec<u8>>, NetworkStopped> {
        self.ask(|reply| Command::GetRecords { key, reply }).await
    }

    /// Joins `publisher`'s catalog topic ([`super::catalog_topic`]) and provides its topic key
    /// (`licet_proto::catalog::catalog_topic_key`), among whose providers the topic's peers are
    /// looked for (see `topic_mesh.rs`).
    pub async fn subscribe_catalog(
        &self,
        publisher: &licet_proto::PublicKey,
    ) -> Result<(), NetworkStopped> {
        self.tell(Command::Subscribe {
            topic: super::catalog_topic(publisher),
            subscribed: super::topic_mesh::Subscribed {
                rendezvous: licet_proto::catalog::catalog_topic_key(publisher),
                label: publisher.to_string(),
                long_link_at: std::time::Instant::now(),
            },
        })
        .await
    }

    /// Joins `publisher`'s delivery report topic, found in the DHT like a catalog topic.
    pub async fn subscribe_deliveries(
        &self,
        publisher: &licet_proto::PublicKey,
    ) -> Result<(), NetworkStopped> {
        self.tell(Command::Subscribe {
            topic: super::deliveries_topic(publisher),
            subscribed: super::topic_mesh::Subscribed {
                rendezvous: licet_proto::delivery::deliveries_topic_key(publisher),
                label: format!("deliveries/{publisher}"),
                long_link_at: std::time::Instant::now(),
            },
        })
        .await
    }

    /// Leaves a gossip topic.
    pub async fn unsubscribe(&self, topic: gossipsub::IdentTopic) -> Result<(), NetworkStopped> {
        self.tell(Command::Unsubscribe { topic }).await
    }

    /// Publishes `data` on a gossip topic.
    pub async fn publish(
        &self,
        topic: gossipsub::IdentTopic,
        data: Vec<u8>,
    ) -> Result<(), NetworkStopped> {
        self.tell(Command::Publish { topic, data }).await
    }

    /// Tells gossipsub what the node made of a message: forward it, drop it, or drop it and
    /// penalise the peer that sent it.
    pub async fn report_gossip(
        &self,
        message_id: gossipsub::MessageId,
        source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) -> Result<(), NetworkStopped> {
        self.tell(Command::ReportGossip {
            message_id,
            source,
            acceptance,
        })
        .await
    }
}

impl EventLoop {
    /// Carries out one command from a [`Network`] handle.
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let opts = DialOpts::from(addr.clone());
                let id = opts.connection_id();
                if let Some(peer) = peer_of(&addr) {
                    if self.swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                }
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot dial {addr}: {e}")));
                    }
                }
            }
            Command::DialPeer { peer, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                let learned = self.contacts.learned(&peer);
                let opts = if learned.is_empty() {
                    DialOpts::peer_id(peer).build()
                } else {
                    DialOpts::peer_id(peer)
                        .addresses(learned)
                        .extend_addresses_through_behaviour()
                        .build()
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot dial {peer}: {e}")));
                    }
                }
            }
            Command::StartProviding { key } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&key))
                {
                    warn!("cannot announce {}: {e}", hex::encode(key));
                }
            }
            Command::StopProviding { key } => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&kad::RecordKey::new(&key));
            }
            Command::GetProviders { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.pending_providers
                    .entry(id)
                    .or_insert_with(|| PendingProviders {
                        providers: HashSet::new(),
                        replies: Vec::new(),
                    })
                    .replies
                    .push(reply);
            }
            Command::Contacts { peers, reply } => {
                let contacts = peers
                    .into_iter()
                    .map(|peer| (peer, self.contacts.listening(&peer)))
                    .collect();
                let _ = reply.send(contacts);
            }
            Command::Learn { peer, addrs } => {
                if peer != *self.swarm.local_peer_id() {
                    self.contacts.learn(peer, addrs, &self.public_ranges);
                }
            }
            Command::Connected { reply } => {
                let peers = self
                    .connections
                    .iter()
                    .map(|(peer, connections)| {
                        let mut addrs: Vec<Multiaddr> = connections.values().cloned().collect();
                        addrs.sort();
                        addrs.dedup();
                        (*peer, addrs)
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::WaitDirect { peer, reply } => {
                if self.is_direct(&peer) {
                    let _ = reply.send(());
                } else {
                    let waiters = self.direct_waiters.entry(peer).or_default();
                    waiters.retain(|w| !w.is_closed());
                    waiters.push(reply);
                }
            }
            Command::Reachability { reply } => {
                let (relay_service, mdns, upnp) = self.report_flags;
                let _ = reply.send(NetworkReport {
                    reachability: self.reachability.reachability(),
                    public_addrs: self.reachability.public_addrs().cloned().collect(),
                    relayed_addrs: self.reachability.relayed_addrs().cloned().collect(),
                    relay_service,
                    mdns,
                    upnp,
                });
            }
            Command::ListenAddrs { reply } => {
                let local = *self.swarm.local_peer_id();
                let addrs = self
                    .swarm
                    .listeners()
                    .map(|a| a.clone().with(Protocol::P2p(local)))
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Ban { peer } => {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.swarm.behaviour_mut().kad.remove_peer(&peer);
            }
            Command::Unban { peer } => {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
            Command::Bootstrap => {
                if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                    debug!("bootstrap skipped: {e}");
                }
            }
            Command::PutRecord { key, value } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                if let Err(reason) = self.check_record(&record) {
                    debug!("own record not put: {reason}");
                    return;
                }
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    warn!("cannot put record {}: {e}", hex::encode(key));
                }
            }
            Command::GetRecords { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(kad::RecordKey::new(&key));
                self.pending_records.insert(
                    id,
                    PendingRecords {
                        values: Vec::new(),
                        reply,
                    },
                );
            }
            Command::Subscribe { topic, subscribed } => {
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                    warn!(%topic, "cannot subscribe: {e}");
                    return;
                }
                let key = kad::RecordKey::new(&subscribed.rendezvous);
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                    warn!(%topic, "cannot announce the topic: {e}");
                }
                self.topic_mesh.topics.insert(topic.hash(), subscribed);
            }
            Command::Unsubscribe { topic } => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
                self.forget_topic(&topic.hash());
            }
            Command::Publish { topic, data } => {
                if data.len() > MAX_GOSSIP_BYTES {
                    warn!(%topic, "not published: {} bytes, over {MAX_GOSSIP_BYTES}", data.len());
                    return;
                }
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), data)
                {
                    Ok(_) => {}
                    // Nobody else subscribes yet, or the same bytes went out a moment ago: the
                    // DHT record and direct requests still carry the head.
                    Err(
                        gossipsub::PublishError::NoPeersSubscribedToTopic
                        | gossipsub::PublishError::Duplicate,
                    ) => {}
                    Err(e) => warn!(%topic, "cannot publish: {e}"),
                }
            }
            Command::ReportGossip {
                message_id,
                source,
                acceptance,
            } => {
                self.report_gossip(&message_id, &source, acceptance);
            }
        }
    }

    /// Tells gossipsub what became of a message: forward it, drop it, or drop it and lower its
    /// sender's score.
    pub(super) fn report_gossip(
        &mut self,
        message_id: &gossipsub::MessageId,
        source: &PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, source, acceptance);
    }
}
