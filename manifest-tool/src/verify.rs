//! `verify`: is this manifest valid, from the expected publisher, licensed now, and does the
//! content on disk match it?

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::Args;
use licet_proto::{
    PublicKey, Timestamp,
    catalog::VerifiedCatalog,
    manifest::{Region, VerifiedManifest},
    policy::{self, CatalogSet, PolicyInputs, TrustStore, TrustedPublisher},
    signed::SignedKind,
};

use crate::{
    CliError, CliResult,
    create::{byte_progress, hash_file},
    files, parse_time,
};

/// Verify a manifest's signature, delegation and licence window, and optionally its content.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  licet-manifest verify ep1.manifest --publisher \\\n      3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n  licet-manifest verify ep1.manifest --content ./release --publisher \\\n      3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n  licet-manifest verify ep1.manifest --catalog publisher.catalog --region FR\n\n\
    Exit codes: 0 valid; 1 invalid, refused or content mismatch (the reason is printed); 2 usage or I/O error."
)]
pub struct VerifyArgs {
    /// The signed manifest.
    manifest: PathBuf,
    /// The publisher it must be from (hex). Without it, any correctly signed manifest passes.
    #[arg(long, value_name = "PUBKEY")]
    publisher: Option<PublicKey>,
    /// A directory holding the content: every file must match its size and merkle root.
    #[arg(long, value_name = "DIR")]
    content: Option<PathBuf>,
    /// The publisher's catalog: refuse the manifest if the catalog revokes it or its delegate.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Check the licence for this region (ISO 3166 alpha-2).
    #[arg(long, value_name = "CC")]
    region: Option<Region>,
    /// Check the licence at this time instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<Timestamp>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn verify(args: VerifyArgs) -> CliResult {
    let (_, bytes) = files::read_signed(&args.manifest, Some(SignedKind::Manifest))?;
    let verified = VerifiedManifest::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid manifest", args.manifest.display()))
        .map_err(CliError::invalid)?;
    let manifest = verified.manifest();
    if let Some(expected) = args.publisher
        && manifest.publisher != expected
    {
        return Err(CliError::invalid(anyhow!(
            "{} is from publisher {}, not {expected}",
            args.manifest.display(),
            manifest.publisher
        )));
    }

    let now = args.at.unwrap_or_else(Timestamp::now);
    let mut trust = TrustStore::new();
    trust.insert(manifest.publisher, TrustedPublisher::default());
    let mut catalogs = CatalogSet::new();
    if let Some(path) = &args.catalog {
        let bytes = files::read_catalog(path)?;
        let catalog = VerifiedCatalog::from_bytes(&bytes)
            .with_context(|| format!("{} is not a valid catalog", path.display()))
            .map_err(CliError::invalid)?;
        if catalog.catalog().publisher != manifest.publisher {
            return Err(CliError::usage(anyhow!(
                "{} is a catalog of publisher {}, not of the manifest's publisher {}",
                path.display(),
                catalog.catalog().publisher,
                manifest.publisher
            )));
        }
        catalogs
            .accept(&trust, now, catalog)
            .with_context(|| format!("{} is not usable", path.display()))
            .map_err(CliError::invalid)?;
    }
    let inputs = PolicyInputs {
        trust: &trust,
        catalogs: &catalogs,
        now,
        // Without --region the licence is checked as a holder's (no region applies); with it,
        // as a fetch by a node in that region.
        territory: args.region.map_or(policy::Territory::Holder, |region| {
            policy::Territory::Fetcher(Some(region))
        }),
    };
    policy::evaluate(&inputs, &verified)
        .with_context(|| format!("{} is not licensed at {now}", args.manifest.display()))
        .map_err(CliError::invalid)?;

    let mut checked_bytes = 0;
    if let Some(dir) = &args.content {
        let progress = byte_progress(manifest.total_size());
        progress.set_message("verifying");
        let mut mismatches = Vec::new();
        for file in &manifest.files {
            let disk = dir.join(file.path.to_relative_path());
            let size = match std::fs::metadata(&disk) {
                Ok(meta) if meta.is_file() => meta.len(),
                Ok(_) => {
                    mismatches.push(format!("{} is not a file", disk.display()));
                    continue;
                }
                Err(e) => {
                    mismatches.push(format!("{}: {e}", disk.display()));
                    continue;
                }
            };
            if size != file.size {
                mismatches.push(format!(
                    "{} has {size} bytes, the manifest says {}",
                    disk.display(),
                    file.size
                ));
                continue;
            }
            let tree = hash_file(&disk, size, manifest.chunk_size, &progress)?;
            if tree.root() != file.root {
                mismatches.push(format!(
                    "{} does not match the manifest (merkle root {}, expected {})",
                    disk.display(),
                    tree.root(),
                    file.root
                ));
            }
            checked_bytes += size;
        }
        progress.finish_and_clear();
        if !mismatches.is_empty() {
            return Err(CliError::invalid(anyhow!(
                "content in {} does not match {}:\n  {}",
                dir.display(),
                args.manifest.display(),
                mismatches.join("\n  ")
            )));
        }
    }

    if args.json {
        let value = serde_json::json!({
            "valid": true,
            "manifest_id": verified.id(),
            "title": manifest.title,
            "publisher": manifest.publisher,
            "publisher_pinned": args.publisher.is_some(),
            "signer": verified.signer(),
            "delegated": verified.delegation().is_some(),
            "checked_at": now.to_string(),
            "content_checked": args.content.is_some(),
            "content_bytes": checked_bytes,
        });
        println!("{value:#}");
    } else {
        println!(
            "valid: manifest {} {:?} from publisher {}",
            verified.id(),
            manifest.title,
            manifest.publisher
        );
        if let Some(d) = verified.delegation() {
            println!("  signed by delegate {} ({})", d.delegate, d.scope);
        }
        println!("  licensed at {now}");
        if args.content.is_some() {
            println!(
                "  content matches: {} file(s), {checked_bytes} bytes",
                manifest.files.len()
            );
        }
        if args.publisher.is_none() {
            eprintln!(
                "licet-manifest: note: no --publisher given, so any correctly signed manifest passes"
            );
        }
    }
    Ok(())
}
