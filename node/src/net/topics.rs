//! The gossip topics a node joins, by name: each publisher's catalog topic, and the topic of
//! its partners' delivery reports; and the messages on them the event loop hands the node.

use libp2p::{PeerId, gossipsub};

/// The gossip topic on which `publisher`'s catalog heads travel.
pub fn catalog_topic(publisher: &licet_proto::PublicKey) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("licet/catalog/{publisher}"))
}

/// The gossip topic of `publisher`'s partners' delivery reports, joined only by nodes that
/// collect them and by the partners that sign them (so users' nodes, on the catalog topic,
/// never carry them).
pub fn deliveries_topic(publisher: &licet_proto::PublicKey) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("{DELIVERIES_TOPIC_PREFIX}{publisher}"))
}

/// The start of every [`deliveries_topic`].
pub const DELIVERIES_TOPIC_PREFIX: &str = "licet/deliveries/";

/// The publisher of a [`deliveries_topic`], if `topic` is one.
pub fn deliveries_topic_publisher(topic: &str) -> Option<licet_proto::PublicKey> {
    topic.strip_prefix(DELIVERIES_TOPIC_PREFIX)?.parse().ok()
}

/// What the event loop tells the node.
pub enum NetworkEvent {
    /// A gossip message on a catalog topic, not forwarded until the node reports on it with
    /// [`super::Network::report_gossip`].
    CatalogHead {
        /// The topic's name (see [`catalog_topic`]).
        topic: String,
        /// The message's bytes (at most [`super::MAX_GOSSIP_BYTES`]).
        data: Vec<u8>,
        /// The peer that passed it on.
        source: PeerId,
        /// Its gossipsub id.
        message_id: gossipsub::MessageId,
    },
    /// A gossip message on a delivery report topic ([`deliveries_topic`]), not forwarded until
    /// the node reports on it.
    DeliveryReport {
        /// The topic's name.
        topic: String,
        /// The message's bytes (at most [`super::MAX_GOSSIP_BYTES`]).
        data: Vec<u8>,
        /// The peer that passed it on.
        source: PeerId,
        /// Its gossipsub id.
        message_id: gossipsub::MessageId,
    },
}
