//! `licet-node licence key`: the key a publisher seals a paid release's content key to.
//!
//! A licence (`licet-manifest licence issue --to NODE_KEY`) is sealed to the node's ed25519
//! identity key (`node.key` in the data directory, the key its peer id names), mapped to X25519
//! for HPKE. This reads that key from the data directory; the daemon need not run.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use libp2p::identity;
use licet_proto::PublicKey;

use super::{Failure, output::print_json};

/// Largest `node.key` read: a protobuf-encoded ed25519 keypair is under 100 bytes.
const MAX_NODE_KEY_BYTES: u64 = 4096;

/// `licet-node licence …`.
#[derive(Debug, Subcommand)]
pub enum LicenceCommand {
    /// Print this node's key, which a publisher needs to issue it a licence.
    #[command(after_help = "Example:\n  licet-node licence key\n\n\
        Give the printed key to the publisher, who issues the licence with\n\
        `licet-manifest licence issue ... --to KEY`. It is the node's identity key (its\n\
        peer id names the same key); the node's secret key never leaves the data\n\
        directory.")]
    Key {
        /// Print `{"node_key": …, "peer_id": …}`.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: LicenceCommand, data_dir: &Path) -> Result<(), Failure> {
    match command {
        LicenceCommand::Key { json } => {
            let (node_key, peer_id) = node_public_key(data_dir).map_err(Failure::other)?;
            if json {
                print_json(&serde_json::json!({
                    "node_key": node_key.to_hex(),
                    "peer_id": peer_id.to_string(),
                }))
            } else {
                println!("{node_key}");
                Ok(())
            }
        }
    }
}

/// The ed25519 public key and peer id of the node whose data directory is `data_dir`.
pub(crate) fn node_public_key(data_dir: &Path) -> anyhow::Result<(PublicKey, libp2p::PeerId)> {
    let path = data_dir.join("node.key");
    let len = match std::fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "this node has no key yet ({} does not exist): start it once with `licet-node run`",
                path.display()
            ));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())));
        }
    };
    if len > MAX_NODE_KEY_BYTES {
        return Err(anyhow!(
            "{} is {len} bytes, which no node key is",
            path.display()
        ));
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let keypair = identity::Keypair::from_protobuf_encoding(&bytes)
        .map_err(|e| anyhow!("{} is not a node key: {e}", path.display()))?;
    let peer_id = keypair.public().to_peer_id();
    let ed25519 = keypair
        .try_into_ed25519()
        .map_err(|_| anyhow!("{} is not an ed25519 node key", path.display()))?;
    Ok((PublicKey(ed25519.public().to_bytes()), peer_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_identity_s_and_a_missing_one_says_how_to_make_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = node_public_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("start it once with `licet-node run`"), "{err}");
        let keypair = identity::Keypair::generate_ed25519();
        std::fs::write(
            dir.path().join("node.key"),
            keypair.to_protobuf_encoding().unwrap(),
        )
        .unwrap();
        let (key, peer_id) = node_public_key(dir.path()).unwrap();
        assert_eq!(peer_id, keypair.public().to_peer_id());
        let ed = keypair.public().try_into_ed25519().unwrap();
        assert_eq!(key.0, ed.to_bytes());
        // The peer id of an ed25519 key embeds the key itself.
        assert!(peer_id.to_bytes().ends_with(&key.0));
        std::fs::write(dir.path().join("node.key"), b"junk").unwrap();
        let err = node_public_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a node key"), "{err}");
    }
}
