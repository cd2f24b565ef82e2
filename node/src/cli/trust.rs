//! `licet-node trust add|ls|rm`: the publishers this node trusts.

use std::path::Path;

use clap::Subcommand;
use licet_proto::PublicKey;

use super::{
    Failure, Verdict, call_failure, connect,
    output::{clean, print_json, table},
};
use crate::contract::{TrustAddRequest, TrustEntry, TrustReply};

/// `licet-node trust …`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a publisher: serve and fetch content it signed (or delegated).
    #[command(
        after_help = "Example:\n  licet-node trust add --name Acme --require-catalog \\\n      3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n\n\
        With --require-catalog, only manifests listed in the publisher's unexpired catalog\n\
        are served and fetched. With --mirror, the node fetches and seeds everything the\n\
        publisher's catalog lists (into DATA_DIR/mirror/) and drops what it withdraws."
    )]
    Add {
        /// The publisher's public key (64 hex characters).
        #[arg(value_name = "PUBKEY")]
        publisher: PublicKey,
        /// A name for people (trusting a publisher again without one keeps its name).
        #[arg(long)]
        name: Option<String>,
        /// Serve only what the publisher's unexpired catalog lists.
        #[arg(long)]
        require_catalog: bool,
        /// Mirror the publisher's catalog: fetch and seed all it lists, drop what it withdraws.
        #[arg(long)]
        mirror: bool,
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List trusted publishers.
    #[command(after_help = "Example:\n  licet-node trust ls")]
    Ls {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a publisher: its content is neither served nor fetched any more.
    #[command(
        after_help = "Example:\n  licet-node trust rm \\\n      3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
    )]
    Rm {
        /// The publisher's public key (64 hex characters).
        #[arg(value_name = "PUBKEY")]
        publisher: PublicKey,
        /// Print `{"removed": "<key>"}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `trust` subcommand against the daemon of `data_dir`.
pub(super) async fn run(command: TrustCommand, data_dir: &Path) -> Result<(), Failure> {
    match command {
        TrustCommand::Add {
            publisher,
            name,
            require_catalog,
            mirror,
            json,
        } => add(data_dir, publisher, name, require_catalog, mirror, json).await,
        TrustCommand::Ls { json } => list(data_dir, json).await,
        TrustCommand::Rm { publisher, json } => remove(data_dir, publisher, json).await,
    }
}

/// `trust add`.
async fn add(
    data_dir: &Path,
    publisher: PublicKey,
    name: Option<String>,
    require_catalog: bool,
    mirror: bool,
    json: bool,
) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let request = TrustAddRequest {
        publisher,
        name,
        require_catalog,
        mirror,
    };
    let entry: TrustEntry = client
        .trust_add(&request)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&entry)
    } else {
        let name = entry
            .name
            .as_deref()
            .map(|n| format!(" ({})", clean(n)))
            .unwrap_or_default();
        let catalog = if entry.require_catalog {
            ", only what its catalog lists"
        } else {
            ""
        };
        let mirror = if entry.mirror {
            ", mirroring its catalog"
        } else {
            ""
        };
        println!("trusting {}{name}{catalog}{mirror}", entry.publisher);
        Ok(())
    }
}

/// `trust ls`.
async fn list(data_dir: &Path, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let reply: TrustReply = client
        .trust_list()
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&reply)
    } else {
        print!("{}", format_trust(&reply));
        Ok(())
    }
}

/// `trust rm`.
async fn remove(data_dir: &Path, publisher: PublicKey, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    client
        .trust_remove(&publisher)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&serde_json::json!({ "removed": publisher }))
    } else {
        println!("no longer trusting {publisher}");
        Ok(())
    }
}

/// `trust ls`: a table of trusted publishers.
pub(super) fn format_trust(reply: &TrustReply) -> String {
    if reply.publishers.is_empty() {
        return "no trusted publishers (add one with `licet-node trust add PUBKEY`)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = reply
        .publishers
        .iter()
        .map(|entry| {
            vec![
                entry.publisher.to_hex(),
                if entry.require_catalog { "yes" } else { "no" }.to_owned(),
                if entry.mirror { "yes" } else { "no" }.to_owned(),
                entry.name.as_deref().map_or("-".to_owned(), clean),
            ]
        })
        .collect();
    table(&["PUBLISHER", "REQUIRES CATALOG", "MIRROR", "NAME"], &rows)
}
