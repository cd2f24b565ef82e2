//! `licet-node catalog publish|ls`: publishers' signed catalogs.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use licet_proto::signed::SignedKind;

use super::{
    Failure, Verdict, call_failure, connect,
    output::{clean, id_prefix, print_json, table},
    read_catalog_file, read_signed_file,
};
use crate::contract::{CatalogInfo, CatalogListReply};

/// `licet-node catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Publish a signed catalog: the node takes it as the publisher's newest, and every node that
    /// trusts the publisher gets it at once (gossip) or at its next poll (DHT).
    #[command(
        after_help = "Example:\n  licet-manifest catalog sign publisher.draft.json --key publisher.pem -o publisher.catalog\n  licet-node catalog publish publisher.catalog\n\n\
        `licet-manifest catalog sign` writes the catalog's signed head to OUT.head beside it; that\n\
        is where publish looks for it unless --head says otherwise. The node must trust the\n\
        publisher. A catalog older than the one the node holds is refused (exit 1)."
    )]
    Publish {
        /// The signed catalog (from `licet-manifest catalog sign`).
        catalog: PathBuf,
        /// Its signed head [default: CATALOG.head].
        #[arg(long, value_name = "FILE")]
        head: Option<PathBuf>,
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List each trusted publisher's catalog: sequence, expiry, withdrawn manifests and delegates.
    #[command(after_help = "Example:\n  licet-node catalog ls\n  licet-node catalog ls --json")]
    Ls {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `catalog` subcommand against the daemon of `data_dir`.
pub(super) async fn run(command: CatalogCommand, data_dir: &Path) -> Result<(), Failure> {
    match command {
        CatalogCommand::Publish {
            catalog,
            head,
            json,
        } => publish(data_dir, &catalog, head.as_deref(), json).await,
        CatalogCommand::Ls { json } => list(data_dir, json).await,
    }
}

/// `catalog publish`: reads the catalog and its head and hands both to the daemon.
async fn publish(
    data_dir: &Path,
    catalog: &Path,
    head: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    let head_path = head.map(Path::to_owned).unwrap_or_else(|| {
        let mut name = catalog.as_os_str().to_owned();
        name.push(".head");
        PathBuf::from(name)
    });
    let catalog_bytes = read_catalog_file(catalog)?;
    let head_bytes = read_signed_file(&head_path, SignedKind::CatalogHead)?;
    let client = connect(data_dir)?;
    let reply = client.catalog_publish(catalog_bytes, &head_bytes).await;
    // A catalog or head that does not verify, or that does not belong together, is invalid.
    let info = reply.map_err(|e| call_failure(e, &client, Verdict::BadRequestIsInvalid))?;
    if json {
        return print_json(&info);
    }
    println!(
        "published catalog {} of {}{}: {} listed, {} revoked manifest(s), {} revoked delegate(s), {} revoked licence(s), expires {}",
        info.sequence.map_or("-".to_owned(), |s| s.to_string()),
        info.publisher,
        info.name
            .as_deref()
            .map(|n| format!(" ({})", clean(n)))
            .unwrap_or_default(),
        info.entries,
        info.revoked_manifests,
        info.revoked_delegates,
        info.revoked_licences,
        info.expires_at.as_deref().map_or("-".to_owned(), clean),
    );
    Ok(())
}

/// `catalog ls`.
async fn list(data_dir: &Path, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let reply: CatalogListReply = client
        .catalog_list()
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&reply)
    } else {
        print!("{}", format_catalogs(&reply.catalogs));
        Ok(())
    }
}

/// `catalog ls` (and the end of `ls`): a table of each trusted publisher's catalog.
pub(super) fn format_catalogs(catalogs: &[CatalogInfo]) -> String {
    if catalogs.is_empty() {
        return "no trusted publishers (add one with `licet-node trust add PUBKEY`)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = catalogs
        .iter()
        .map(|c| {
            let expires = match (&c.expires_at, c.expired) {
                (Some(at), true) => format!("{} (expired)", clean(at)),
                (Some(at), false) => clean(at),
                (None, _) => "-".to_owned(),
            };
            vec![
                id_prefix(&c.publisher),
                c.sequence.map_or("none".to_owned(), |s| s.to_string()),
                expires,
                c.entries.to_string(),
                format!(
                    "{}/{}/{}",
                    c.revoked_manifests, c.revoked_delegates, c.revoked_licences
                ),
                if c.mirror { "yes" } else { "-" }.to_owned(),
                c.name.as_deref().map_or("-".to_owned(), clean),
            ]
        })
        .collect();
    table(
        &[
            "PUBLISHER",
            "SEQUENCE",
            "EXPIRES",
            "LISTED",
            "REVOKED (MANIFESTS/DELEGATES/LICENCES)",
            "MIRROR",
            "NAME",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cli::{status::format_status, test_support::*},
        contract::StatusReply,
    };

    #[tokio::test]
    async fn catalog_publish_sends_the_catalog_and_its_head() {
        let (dir, server) = daemon_dir().await;
        let work = tempfile::tempdir().unwrap();
        let catalog = work.path().join("acme.catalog");
        // Shaped as a catalog file; the daemon, not the client, verifies it.
        let catalog_bytes =
            licet_proto::encoding::encode(&licet_proto::catalog_parts::CatalogFile {
                format: 2,
                root: signed_file_bytes(SignedKind::CatalogRoot, b"root"),
                parts: vec![],
            });
        let head_bytes = signed_file_bytes(SignedKind::CatalogHead, b"head");
        std::fs::write(&catalog, &catalog_bytes).unwrap();
        std::fs::write(work.path().join("acme.catalog.head"), &head_bytes).unwrap();
        let catalog_arg = catalog.to_str().unwrap();
        exec(&["catalog", "publish", catalog_arg], dir.path())
            .await
            .unwrap();
        match server.node.calls().last() {
            Some(Call::CatalogPublish(catalog, head)) => {
                assert_eq!(catalog, &catalog_bytes);
                assert_eq!(head, &head_bytes, "the head is read from CATALOG.head");
            }
            other => panic!("{other:?}"),
        }
        // --head names another file.
        let other = work.path().join("other.head");
        let other_bytes = signed_file_bytes(SignedKind::CatalogHead, b"other head");
        std::fs::write(&other, &other_bytes).unwrap();
        exec(
            &[
                "catalog",
                "publish",
                catalog_arg,
                "--head",
                other.to_str().unwrap(),
            ],
            dir.path(),
        )
        .await
        .unwrap();
        assert!(matches!(
            server.node.calls().last(),
            Some(Call::CatalogPublish(_, head)) if *head == other_bytes
        ));
        // A missing head file is an I/O error naming it.
        let (code, text) = fails(
            &[
                "catalog",
                "publish",
                catalog_arg,
                "--head",
                "/nonexistent.head",
            ],
            dir.path(),
        )
        .await;
        assert_eq!(code, 2);
        assert!(text.contains("/nonexistent.head"), "{text}");
        // A rollback refused by the daemon exits 1 with its reason.
        server.node.fail(ApiError::new(
            ApiErrorKind::Refused,
            "catalog 3 of acme is older than the accepted catalog 7 (rollback refused)",
        ));
        let (code, text) = fails(&["catalog", "publish", catalog_arg], dir.path()).await;
        assert_eq!(code, 1);
        assert!(text.contains("rollback"), "{text}");
    }

    #[tokio::test]
    async fn catalog_ls_shows_sequence_expiry_and_revocations() {
        let (dir, _server) = daemon_dir().await;
        let text = format_catalogs(&[crate::api::server::fake::catalog_info()]);
        assert!(
            text.contains("SEQUENCE") && text.contains("EXPIRES"),
            "{text}"
        );
        let row = text.lines().nth(1).unwrap();
        for part in ["7", "2027-01-22T08:00:00Z", "12", "2/1", "Acme"] {
            assert!(row.contains(part), "{part} missing from {row}");
        }
        exec(&["catalog", "ls"], dir.path()).await.unwrap();
        exec(&["catalog", "ls", "--json"], dir.path())
            .await
            .unwrap();
        let status = format_status(&StatusReply {
            catalogs: vec![crate::api::server::fake::catalog_info()],
            ..serde_json::from_value(serde_json::json!({
                "peer_id": "p", "listen_addrs": [], "version": "0", "region": null,
                "connected_peers": 0, "trusted_publishers": 1,
                "content": {"complete": 0, "downloading": 0, "failed": 0},
                "uptime_seconds": 1, "catalogs": []
            }))
            .unwrap()
        });
        assert!(
            status.contains("catalog 7, valid until 2027-01-22T08:00:00Z, 2 revoked manifest(s), 1 revoked delegate(s)"),
            "{status}"
        );
    }
}
