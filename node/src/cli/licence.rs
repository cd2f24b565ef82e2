//! `licet-node licence key|add|ls|rm`: the licences for paid releases this node holds, and the
//! end of `get` of a paid release (its plaintext written with one of them).
//!
//! A licence (`licet-manifest licence issue --to NODE_KEY`) is sealed to the node's ed25519
//! identity key (`node.key` in the data directory, the key its peer id names), mapped to X25519
//! for HPKE. `key` reads that key from the data directory (the daemon need not run); the others
//! ask the daemon, which keeps the licences and opens paid releases with them (`get`).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use libp2p::identity;
use licet_proto::{LicenceId, PublicKey, signed::SignedKind};

use super::{
    Failure, Verdict, call_failure, connect,
    output::{clean, human_bytes, id_prefix, print_json, table},
    read_signed_file,
};
use crate::{
    api::client::ApiClient,
    contract::{ContentInfo, LicenceEntry, LicenceListReply, OpenRequest},
};

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
    /// Add a licence for a paid release; `get` then writes the release's plaintext.
    #[command(
        after_help = "Example:\n  licet-node licence add episode-1.licence\n\n\
        The licence must be for this node's key, of a trusted publisher, not ended, and\n\
        not revoked by the publisher's catalog. Then `licet-node get LINK -o DIR`\n\
        fetches the release (or finds it held) and writes its plaintext into DIR."
    )]
    Add {
        /// The licence file, as `licet-manifest licence issue -o` wrote it.
        #[arg(value_name = "LICENCE")]
        file: PathBuf,
        /// Print the licence as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the licences held, and whether each opens its release here now.
    #[command(after_help = "Example:\n  licet-node licence ls")]
    Ls {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a licence.
    #[command(after_help = "Example:\n  licet-node licence rm \\\n      \
        5d1e0c4f2b7a99e3c0d6a1f8e2b4c7d9a0e5f3b1c8d2e6f4a7b9c0d1e2f3a4a0")]
    Rm {
        /// The licence id (64 hex characters; `licet-node licence ls` shows it).
        #[arg(value_name = "ID")]
        id: LicenceId,
        /// Print `{"removed": "<id>"}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(command: LicenceCommand, data_dir: &Path) -> Result<(), Failure> {
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
        LicenceCommand::Add { file, json } => add(data_dir, &file, json).await,
        LicenceCommand::Ls { json } => list(data_dir, json).await,
        LicenceCommand::Rm { id, json } => remove(data_dir, id, json).await,
    }
}

/// `licence add`.
async fn add(data_dir: &Path, file: &Path, json: bool) -> Result<(), Failure> {
    let bytes = read_signed_file(file, SignedKind::Licence)?;
    let client = connect(data_dir)?;
    let entry: LicenceEntry = client
        .licence_add(bytes)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::BadRequestIsInvalid))?;
    if json {
        print_json(&entry)
    } else {
        let title = entry.title.as_deref().map_or_else(
            || format!("release {}", entry.manifest_id),
            |t| format!("\"{}\"", clean(t)),
        );
        println!(
            "licence {} added: it opens {title}",
            id_prefix_text(&entry.id)
        );
        if let Some(why) = &entry.refused {
            println!("  not yet: {}", clean(why));
        }
        Ok(())
    }
}

/// `licence ls`.
async fn list(data_dir: &Path, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let reply: LicenceListReply = client
        .licence_list()
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&reply)
    } else {
        print!("{}", format_licences(&reply));
        Ok(())
    }
}

/// `licence rm`.
async fn remove(data_dir: &Path, id: LicenceId, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    client
        .licence_remove(&id)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&serde_json::json!({ "removed": id.to_string() }))
    } else {
        println!("licence {id} forgotten");
        Ok(())
    }
}

/// The first 16 characters of a hex id, as `ls` shows ids.
fn id_prefix_text(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

/// `licence ls`: this node's key, then a table of licences.
fn format_licences(reply: &LicenceListReply) -> String {
    let mut out = format!("node key {}\n", reply.node_key);
    if reply.licences.is_empty() {
        out.push_str(
            "no licences (a publisher issues one for the key above; add it with \
             `licet-node licence add FILE`)\n",
        );
        return out;
    }
    let rows: Vec<Vec<String>> = reply
        .licences
        .iter()
        .map(|entry| {
            vec![
                id_prefix_text(&entry.id).to_owned(),
                id_prefix(&entry.manifest_id),
                entry.not_after.clone().unwrap_or_else(|| "-".to_owned()),
                match &entry.refused {
                    None => "opens".to_owned(),
                    Some(why) => format!("refused: {}", clean(why)),
                },
                entry.title.as_deref().map_or("-".to_owned(), clean),
            ]
        })
        .collect();
    out.push_str(&table(
        &["LICENCE", "RELEASE", "UNTIL", "STATE", "TITLE"],
        &rows,
    ));
    out
}

/// The end of `get` of a paid release, once its ciphertext is complete: the daemon writes the
/// plaintext into `output_dir` with a licence it holds. Without one that opens the release
/// here now the daemon says why (exit 1); the ciphertext stays held and seeded either way.
pub(super) async fn open_paid_release(
    client: &ApiClient,
    info: &ContentInfo,
    output_dir: &Path,
    replace: bool,
    json: bool,
) -> Result<(), Failure> {
    let request = OpenRequest {
        output_dir: output_dir.to_path_buf(),
        replace,
    };
    let opened = client
        .content_open(&info.manifest_id, &request)
        .await
        .map_err(|e| {
            // The reason first, then what stays and how to go on.
            let seeding = |e: anyhow::Error| {
                anyhow!(
                    "{e:#}\n(the release's ciphertext is complete here and stays seeded, id {}; \
                     once this is fixed, the same `licet-node get` writes the plaintext)",
                    id_prefix(&info.manifest_id)
                )
            };
            // A refusal, or ciphertext that does not decrypt, exits 1.
            match call_failure(e, client, Verdict::BadRequestIsInvalid) {
                Failure::Invalid(e) => Failure::Invalid(seeding(e)),
                Failure::Other(e) => Failure::Other(seeding(e)),
            }
        })?;
    if json {
        return print_json(&opened);
    }
    let mut out = super::content::format_download_summary(info);
    let _ = writeln!(
        out,
        "  paid     decrypted with licence {} into {}: {} written, {} already there ({})",
        id_prefix(&opened.licence_id),
        opened.output_dir.display(),
        files_text(opened.files_written),
        files_text(opened.files_kept),
        human_bytes(opened.bytes),
    );
    print!("{out}");
    Ok(())
}

/// Says at the start of a paid release's download, not after it, when no licence held opens
/// it: the ciphertext is fetched and seeded all the same.
pub(super) async fn warn_without_licence(client: &ApiClient, info: &ContentInfo) {
    let Ok(held) = client.licence_list().await else {
        return;
    };
    let mine: Vec<_> = held
        .licences
        .iter()
        .filter(|l| l.manifest_id == info.manifest_id)
        .collect();
    if mine.iter().any(|l| l.refused.is_none()) {
        return;
    }
    let why = match mine.first().and_then(|l| l.refused.as_deref()) {
        Some(why) => format!("the licence held does not open it: {}", clean(why)),
        None => "this node holds no licence for it".to_owned(),
    };
    eprintln!(
        "note: \"{}\" is a paid release and {why}; it is fetched and seeded as ciphertext, and \
         its plaintext is written once a licence is added (`licet-node licence add FILE`)",
        clean(&info.title)
    );
}

/// "1 file", "3 files".
fn files_text(count: usize) -> String {
    if count == 1 {
        "1 file".to_owned()
    } else {
        format!("{count} files")
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
    use licet_proto::{
        ManifestId, SecretKey, Timestamp,
        encryption::ContentKey,
        licence::{ContentLicence, LICENCE_FORMAT_VERSION, seal_content_key},
    };

    use super::*;
    use crate::cli::test_support::*;

    fn licence_file(dir: &Path) -> (PathBuf, Vec<u8>) {
        let publisher = SecretKey::from_seed(&[1; 32]);
        let key = ContentKey::from_bytes([2; 32]);
        let manifest_id = ManifestId([3; 32]);
        let recipient = SecretKey::from_seed(&[4; 32]).public_key();
        let licence = ContentLicence {
            version: LICENCE_FORMAT_VERSION,
            publisher: publisher.public_key(),
            manifest_id,
            key_id: key.id(),
            recipient,
            issued_at: Timestamp(1_700_000_000),
            not_before: Timestamp(1_700_000_000),
            not_after: None,
            regions: Vec::new(),
            sealed_key: seal_content_key(&key, &manifest_id, &recipient).unwrap(),
        }
        .sign(&publisher, None)
        .unwrap();
        let bytes = licence.envelope().encode();
        let path = dir.join("buyer.licence");
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[tokio::test]
    async fn licence_add_sends_the_file_and_refuses_what_is_not_a_licence_itself() {
        let (dir, server) = daemon_dir().await;
        let files = tempfile::tempdir().unwrap();
        let (path, bytes) = licence_file(files.path());
        exec(&["licence", "add", path.to_str().unwrap()], dir.path())
            .await
            .unwrap();
        assert!(
            matches!(&server.node.calls()[..], [Call::LicenceAdd(sent)] if *sent == bytes),
            "{:?}",
            server.node.calls()
        );
        let junk = files.path().join("junk.licence");
        std::fs::write(&junk, b"not a licence").unwrap();
        let (code, text) = fails(&["licence", "add", junk.to_str().unwrap()], dir.path()).await;
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("junk.licence"), "{text}");
        assert_eq!(server.node.calls().len(), 1, "the daemon never saw it");
        server.node.fail(ApiError::new(
            ApiErrorKind::Refused,
            "the licence is refused: the licence is for node key 3b6a…",
        ));
        let (code, text) = fails(&["licence", "add", path.to_str().unwrap()], dir.path()).await;
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("for node key"), "{text}");
    }

    #[tokio::test]
    async fn licence_ls_and_rm_speak_to_the_daemon() {
        let (dir, server) = daemon_dir().await;
        exec(&["licence", "ls"], dir.path()).await.unwrap();
        let id = "cd".repeat(32);
        exec(&["licence", "rm", &id], dir.path()).await.unwrap();
        let calls = server.node.calls();
        assert!(matches!(calls[0], Call::LicenceList), "{calls:?}");
        assert!(
            matches!(&calls[1], Call::LicenceRemove(removed) if removed.to_hex() == id),
            "{calls:?}"
        );
    }

    #[test]
    fn the_licence_table_says_which_open_and_why_others_do_not() {
        let mut refused = crate::api::server::fake::licence_entry();
        refused.id = "ef".repeat(32);
        refused.refused = Some("the licence ended at 2027-02-01T00:00:00Z".to_owned());
        let reply = LicenceListReply {
            node_key: crate::api::server::fake::publisher(),
            licences: vec![crate::api::server::fake::licence_entry(), refused],
        };
        let text = format_licences(&reply);
        assert!(
            text.starts_with(&format!("node key {}\n", reply.node_key)),
            "{text}"
        );
        assert!(text.contains("cdcdcdcdcdcdcdcd"), "{text}");
        assert!(text.contains("opens"), "{text}");
        assert!(
            text.contains("refused: the licence ended at 2027-02-01"),
            "{text}"
        );
        let empty = format_licences(&LicenceListReply {
            node_key: reply.node_key,
            licences: Vec::new(),
        });
        assert!(empty.contains("licet-node licence add FILE"), "{empty}");
    }

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
