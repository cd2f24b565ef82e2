//! `licence issue`: seal an encrypted release's content key to one buyer's node and sign it.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use licet_proto::{
    PublicKey, Timestamp,
    delegation::Delegation,
    encryption::ContentKey,
    licence::{ContentLicence, LICENCE_FORMAT_VERSION, seal_content_key},
    manifest::{Region, VerifiedManifest},
    signed::SignedKind,
};

use crate::{CliError, CliResult, files, keys::read_key, parse_time};

/// Largest content key file read (a comment line and 64 hex characters).
const MAX_KEY_FILE_BYTES: usize = 4096;

/// Licences: a release's content key sealed to a buyer's node.
#[derive(Subcommand)]
pub enum LicenceCommand {
    Issue(IssueArgs),
}

/// Seal a release's content key to one buyer's node, and sign it.
#[derive(Args)]
#[command(
    after_help = "Example:\n  licet-manifest licence issue film.manifest --key publisher.pem \\\n      --content-key film.manifest.key --until +365d -o alice.licence \\\n      --to 5d1e0c4f2b7a99e3c0d6a1f8e2b4c7d9a0e5f3b1c8d2e6f4a7b9c0d1e2f3a4a0\n\n\
    --to is the buyer node's key, printed by `licet-node licence key` on the buyer's\n\
    machine: only that node's key opens the licence."
)]
pub struct IssueArgs {
    /// The encrypted release's signed manifest.
    manifest: PathBuf,
    /// The signing key: the publisher's, or a delegate's with --delegation.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// The publisher's delegation to the signing key, when a partner signs.
    #[arg(long, value_name = "FILE")]
    delegation: Option<PathBuf>,
    /// The buyer node's public key (hex, from `licet-node licence key`).
    #[arg(long, value_name = "NODE_KEY")]
    to: PublicKey,
    /// The release's content key file (written by `create --encrypt` as OUT.key).
    #[arg(long, value_name = "KEYFILE")]
    content_key: PathBuf,
    /// Valid from (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<Timestamp>,
    /// Valid until (default: no end).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Regions where the buyer's node may decrypt, comma-separated (default: anywhere).
    #[arg(long, value_delimiter = ',', value_name = "CC,CC")]
    regions: Vec<Region>,
    /// Where to write the licence.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: LicenceCommand) -> CliResult {
    match command {
        LicenceCommand::Issue(args) => issue(args),
    }
}

fn issue(args: IssueArgs) -> CliResult {
    let key = read_key(&args.key)?;
    let (signed, _) = files::read_signed(&args.manifest, Some(SignedKind::Manifest))?;
    let manifest = VerifiedManifest::verify(signed)
        .with_context(|| format!("{} is not a valid manifest", files::shown(&args.manifest)))
        .map_err(CliError::invalid)?;
    let Some(encryption) = &manifest.manifest().encryption else {
        return Err(CliError::usage(anyhow!(
            "{} is a release in the clear; licences are for releases made with `create --encrypt`",
            files::shown(&args.manifest)
        )));
    };
    let text = files::read_limited(&args.content_key, MAX_KEY_FILE_BYTES, "content key")?;
    let content_key = std::str::from_utf8(&text)
        .map_err(|_| anyhow!("it is a binary file"))
        .and_then(|t| ContentKey::from_file_text(t).map_err(anyhow::Error::from))
        .with_context(|| format!("cannot read {}", files::shown(&args.content_key)))
        .map_err(CliError::usage)?;
    if content_key.id() != encryption.key_id {
        return Err(CliError::usage(anyhow!(
            "{} holds key {}, but {} is encrypted with key {}",
            files::shown(&args.content_key),
            content_key.id(),
            files::shown(&args.manifest),
            encryption.key_id
        )));
    }
    let delegation = match &args.delegation {
        None => None,
        Some(path) => {
            let (signed, _) = files::read_signed(path, Some(SignedKind::Delegation))?;
            Delegation::verify_envelope(&signed)
                .with_context(|| format!("{} is not a valid delegation", path.display()))
                .map_err(CliError::invalid)?;
            Some(
                signed
                    .into_carried_delegation()
                    .map_err(CliError::invalid)?,
            )
        }
    };
    let now = Timestamp::now();
    let sealed_key =
        seal_content_key(&content_key, &manifest.id(), &args.to).map_err(CliError::usage)?;
    let licence = ContentLicence {
        version: LICENCE_FORMAT_VERSION,
        publisher: manifest.manifest().publisher,
        manifest_id: manifest.id(),
        key_id: encryption.key_id,
        recipient: args.to,
        issued_at: now,
        not_before: args.from.unwrap_or(now),
        not_after: args.until,
        regions: args.regions,
        sealed_key,
    };
    // Signing verifies what was signed with the same code a node runs.
    let verified = licence
        .sign(&key, delegation)
        .with_context(|| format!("cannot sign a licence with {}", args.key.display()))
        .map_err(CliError::invalid)?;
    files::write_atomic(&args.output, &verified.envelope().encode(), args.force)?;
    let until = licence
        .not_after
        .map_or("no end".to_owned(), |t| t.to_string());
    if args.json {
        let value = serde_json::json!({
            "output": args.output.display().to_string(),
            "licence_id": verified.id(),
            "manifest_id": manifest.id(),
            "title": manifest.manifest().title,
            "recipient": licence.recipient,
            "key_id": licence.key_id,
            "not_before": licence.not_before.to_string(),
            "not_after": licence.not_after.map(|t| t.to_string()),
        });
        println!("{value:#}");
    } else {
        println!(
            "licence for {:?} to node {}, valid {} to {until}",
            manifest.manifest().title,
            licence.recipient,
            licence.not_before
        );
        println!("licence id  {}", verified.id());
        println!("written to  {}", args.output.display());
    }
    Ok(())
}
