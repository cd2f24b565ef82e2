//! `keygen`, `pubkey` and `delegate`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use licet_proto::{
    PublicKey, SecretKey, Timestamp,
    delegation::{Delegation, DelegationScope},
    keys::KeyFileError,
};

use crate::{CliError, CliResult, files, parse_time};

/// Make a new ed25519 signing key.
#[derive(Args)]
#[command(after_help = "Example:\n  licet-manifest keygen -o publisher.pem\n\n\
    The key is a PKCS#8 PEM file with mode 0600, readable by `openssl pkey`.\n\
    The public key is printed on stdout.")]
pub struct KeygenArgs {
    /// Where to write the key.
    #[arg(short, long, value_name = "KEY")]
    output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// Print the public key of a key file, as hex.
#[derive(Args)]
#[command(after_help = "Example:\n  licet-manifest pubkey publisher.pem")]
pub struct PubkeyArgs {
    /// A PKCS#8 PEM ed25519 key (from `keygen` or `openssl genpkey -algorithm ed25519`).
    key: PathBuf,
}

/// Let a partner's key sign manifests in the publisher's name.
#[derive(Args)]
#[command(
    after_help = "Example:\n  licet-manifest delegate --key publisher.pem --until +90d \\\n      --to 5d1e0c4f2b7a99e3c0d6a1f8e2b4c7d9a0e5f3b1c8d2e6f4a7b9c0d1e2f3a4a0 \\\n      --scope title-prefix:\"Season 2\" -o partner.delegation\n\n\
    The partner then signs with `create --key partner.pem --delegation partner.delegation`.\n\
    The publisher withdraws it with `catalog revoke-delegate`."
)]
pub struct DelegateArgs {
    /// The publisher's key.
    #[arg(long, value_name = "PUBLISHER_KEY")]
    key: PathBuf,
    /// The delegate's public key (hex).
    #[arg(long, value_name = "DELEGATE_PUBKEY")]
    to: PublicKey,
    /// Valid from (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<Timestamp>,
    /// Valid until.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Timestamp,
    /// What the delegate may sign: `all`, `title-prefix:TEXT`, or `delivery-reports`
    /// (no manifests: only a seed's delivery reports).
    #[arg(long, default_value = "all", value_parser = parse_scope)]
    scope: DelegationScope,
    /// Where to write the delegation.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

fn parse_scope(text: &str) -> Result<DelegationScope, String> {
    if text == "all" {
        return Ok(DelegationScope::AllManifests);
    }
    if text == "delivery-reports" {
        return Ok(DelegationScope::DeliveryReports);
    }
    match text.strip_prefix("title-prefix:") {
        Some(prefix) if !prefix.is_empty() => Ok(DelegationScope::TitlePrefix(prefix.to_owned())),
        _ => Err(format!(
            "{text:?} is not a scope: use `all`, `title-prefix:TEXT` or `delivery-reports`"
        )),
    }
}

/// Reads a key file, mapping errors to exit code 2.
pub fn read_key(path: &std::path::Path) -> Result<SecretKey, CliError> {
    SecretKey::read_pem_file(path).map_err(CliError::usage)
}

pub fn keygen(args: KeygenArgs) -> CliResult {
    let key = SecretKey::generate()
        .context("the system random source failed")
        .map_err(CliError::io)?;
    key.write_pem_file(&args.output, args.force)
        .map_err(|e| match e {
            KeyFileError::Exists { .. } => CliError::usage(e),
            e => CliError::io(e),
        })?;
    println!("{}", key.public_key());
    Ok(())
}

pub fn pubkey(args: PubkeyArgs) -> CliResult {
    println!("{}", read_key(&args.key)?.public_key());
    Ok(())
}

pub fn delegate(args: DelegateArgs) -> CliResult {
    let key = read_key(&args.key)?;
    let delegation = Delegation {
        publisher: key.public_key(),
        delegate: args.to,
        not_before: args.from.unwrap_or_else(Timestamp::now),
        not_after: args.until,
        scope: args.scope,
    };
    if delegation.delegate == delegation.publisher {
        return Err(CliError::usage(anyhow::anyhow!(
            "--to is the publisher's own key; a delegation is for another key"
        )));
    }
    let signed = delegation.sign(&key);
    // Check what we wrote with the same code that will read it.
    Delegation::verify_envelope(&signed).map_err(CliError::usage)?;
    files::write_atomic(&args.output, &signed.encode(), args.force)?;
    println!(
        "delegation from {} to {} for {}, valid {} to {}",
        delegation.publisher,
        delegation.delegate,
        delegation.scope,
        delegation.not_before,
        delegation.not_after
    );
    Ok(())
}
