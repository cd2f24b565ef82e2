//! `catalog …`: keep a catalog draft, and sign numbered catalogs (and their heads) from it.
//!
//! The draft is a JSON file the publisher keeps beside its key: the entries, the revocations
//! (of manifests, delegates and licences), and the last sequence signed. Drafts written before
//! licences could be revoked load as revoking none. `catalog sign` reserves the next sequence in the draft *before*
//! writing the catalog, so a failure between the two can skip a number but never reuse one (two
//! different catalogs with one sequence would be refused by every node).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use licet_proto::{
    LicenceId, ManifestId, PublicKey, Timestamp,
    catalog::{Catalog, CatalogEntry, MAX_ENTRY_TITLE_BYTES},
    licence::VerifiedLicence,
    manifest::VerifiedManifest,
    signed::SignedKind,
};
use serde::{Deserialize, Serialize};

use crate::{CliError, CliResult, files, keys::read_key, parse_time};

/// The draft format's name and version.
const DRAFT_FORMAT: &str = "licet-catalog-draft/1";
/// Largest draft file read (a 100,000-entry draft is about 12 MiB).
const MAX_DRAFT_BYTES: usize = 256 * 1024 * 1024;

/// Catalogs: list manifests, revoke manifests, delegates and licences, sign numbered catalogs.
#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Start a catalog draft for a publisher.
    #[command(
        after_help = "Example:\n  licet-manifest catalog new --key publisher.pem -o publisher.draft.json"
    )]
    New(NewArgs),
    /// List manifests in the draft.
    #[command(
        after_help = "Examples:\n  licet-manifest catalog add publisher.draft.json ep1.manifest ep2.manifest\n  licet-manifest catalog add publisher.draft.json --title \"Episode 3\" \\\n      --id 9f2c41d0e8b3a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3e1\n  licet-manifest catalog add publisher.draft.json --from-list ids.txt\n      # ids.txt: one <id> <title> a line"
    )]
    Add(AddArgs),
    /// Withdraw manifests: every node stops serving them once it sees the signed catalog.
    #[command(
        after_help = "Example:\n  licet-manifest catalog revoke publisher.draft.json ep1.manifest\n  licet-manifest catalog sign publisher.draft.json --key publisher.pem \\\n      -o publisher.catalog"
    )]
    Revoke(RevokeArgs),
    /// Withdraw delegate keys: manifests they signed stop being served.
    #[command(
        after_help = "Example:\n  licet-manifest catalog revoke-delegate publisher.draft.json \\\n      5d1e0c4f2b7a99e3c0d6a1f8e2b4c7d9a0e5f3b1c8d2e6f4a7b9c0d1e2f3a4a0"
    )]
    RevokeDelegate(RevokeDelegateArgs),
    /// Withdraw licences: nodes stop opening paid releases with them.
    #[command(
        after_help = "Examples:\n  licet-manifest catalog revoke-licence publisher.draft.json alice.licence\n  licet-manifest catalog revoke-licence publisher.draft.json \\\n      c0d6a1f8e2b4c7d9a0e5f3b1c8d2e6f4a7b9c0d1e2f3a4a05d1e0c4f2b7a99e3\n\n\
        Takes licence files (as `licence issue -o` writes them: they must verify\n\
        and be the draft's publisher's) or licence ids (hex, as `licence issue`\n\
        prints them). Sign the draft and publish the catalog for nodes to refuse\n\
        them."
    )]
    RevokeLicence(RevokeLicenceArgs),
    /// Sign the draft as the next numbered catalog, and its head.
    #[command(
        after_help = "Example:\n  licet-manifest catalog sign publisher.draft.json --key publisher.pem \\\n      --expires +7d -o publisher.catalog\n\n\
        Writes the catalog to OUT and its signed head to OUT.head (or --head), and records the\n\
        sequence in the draft so the next catalog gets a higher one."
    )]
    Sign(SignArgs),
    /// Show a draft or a signed catalog.
    #[command(after_help = "Example:\n  licet-manifest catalog inspect publisher.catalog")]
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct NewArgs {
    /// The publisher's key (only its public key is used).
    #[arg(
        long,
        value_name = "KEY",
        conflicts_with = "publisher",
        required_unless_present = "publisher"
    )]
    key: Option<PathBuf>,
    /// The publisher's public key (hex), instead of --key.
    #[arg(long, value_name = "PUBKEY")]
    publisher: Option<PublicKey>,
    /// Where to write the draft.
    #[arg(short, long, value_name = "DRAFT")]
    output: PathBuf,
    /// Replace an existing draft.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct AddArgs {
    /// The draft.
    draft: PathBuf,
    /// Signed manifests to list (verified; they must be the draft's publisher's).
    #[arg(value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,
    /// A manifest id to list without its file (with --title).
    #[arg(long, requires = "title")]
    id: Option<ManifestId>,
    /// The title for --id.
    #[arg(long, requires = "id")]
    title: Option<String>,
    /// A file of lines `<manifest-id> <title>` to list.
    #[arg(long, value_name = "FILE")]
    from_list: Option<PathBuf>,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The draft.
    draft: PathBuf,
    /// Manifest ids (hex) or signed manifest files to revoke.
    #[arg(required = true, value_name = "ID|MANIFEST")]
    manifests: Vec<String>,
}

#[derive(Args)]
pub struct RevokeDelegateArgs {
    /// The draft.
    draft: PathBuf,
    /// Delegate public keys (hex).
    #[arg(required = true, value_name = "PUBKEY")]
    delegates: Vec<PublicKey>,
}

#[derive(Args)]
pub struct RevokeLicenceArgs {
    /// The draft.
    draft: PathBuf,
    /// Licence ids (hex) or licence files to revoke.
    #[arg(required = true, value_name = "ID|LICENCE")]
    licences: Vec<String>,
}

#[derive(Args)]
pub struct SignArgs {
    /// The draft.
    draft: PathBuf,
    /// The publisher's own key (not a delegate's).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// When the catalog expires.
    #[arg(long, value_name = "TIME", default_value = "+7d", value_parser = parse_time)]
    expires: Timestamp,
    /// Use at least this sequence (it never goes below the last signed + 1).
    #[arg(long)]
    sequence: Option<u64>,
    /// The issue time to sign (default: now). Nodes never judge a licence window earlier than
    /// the newest issue time they accepted (less 5 minutes of skew), so a node whose clock is
    /// behind still ends windows on time: sign with the true time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    issued_at: Option<Timestamp>,
    /// Where to write the signed catalog (replaced if it exists: each catalog supersedes the last).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Where to write the signed head (default: OUT.head).
    #[arg(long, value_name = "FILE")]
    head: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// A draft (JSON) or a signed catalog.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// List every entry instead of the first 20.
    #[arg(long)]
    all: bool,
}

/// The draft file. Lists keep the order things were added in and hold no duplicates; signing
/// puts them in the catalog's canonical order.
#[derive(Serialize, Deserialize)]
struct Draft {
    format: String,
    publisher: PublicKey,
    last_signed_sequence: u64,
    entries: Vec<CatalogEntry>,
    revoked_manifests: Vec<ManifestId>,
    revoked_delegates: Vec<PublicKey>,
    /// Absent from drafts written before licences could be revoked.
    #[serde(default)]
    revoked_licences: Vec<LicenceId>,
    /// Ids in `entries`, for duplicate checks.
    #[serde(skip)]
    listed: HashSet<ManifestId>,
}

impl Draft {
    fn load(path: &Path) -> Result<Draft, CliError> {
        let bytes = files::read_limited(path, MAX_DRAFT_BYTES, "catalog draft")?;
        let mut draft: Draft = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a catalog draft", path.display()))
            .map_err(CliError::usage)?;
        draft.listed = draft.entries.iter().map(|e| e.manifest_id).collect();
        if draft.listed.len() != draft.entries.len() {
            return Err(CliError::usage(anyhow!(
                "{} lists a manifest twice; remove the duplicate",
                path.display()
            )));
        }
        if draft.format != DRAFT_FORMAT {
            return Err(CliError::usage(anyhow!(
                "{} is a {:?} draft; this tool reads {DRAFT_FORMAT:?}",
                path.display(),
                draft.format
            )));
        }
        Ok(draft)
    }

    fn save(&self, path: &Path, overwrite: bool) -> CliResult {
        let mut text = serde_json::to_vec_pretty(self).map_err(CliError::io)?;
        text.push(b'\n');
        files::write_atomic(path, &text, overwrite)
    }

    /// Lists a manifest; one already listed is left as it is.
    fn add(&mut self, manifest_id: ManifestId, title: &str) -> CliResult {
        if self.revoked_manifests.contains(&manifest_id) {
            return Err(CliError::usage(anyhow!(
                "manifest {manifest_id} is revoked in this draft; a revoked manifest cannot be listed again"
            )));
        }
        if !self.listed.insert(manifest_id) {
            return Ok(());
        }
        self.entries.push(CatalogEntry {
            manifest_id,
            title: truncate(title, MAX_ENTRY_TITLE_BYTES),
        });
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "{} listed, {} revoked manifest(s), {} revoked delegate(s), {} revoked licence(s), \
             last signed sequence {}",
            self.entries.len(),
            self.revoked_manifests.len(),
            self.revoked_delegates.len(),
            self.revoked_licences.len(),
            self.last_signed_sequence
        )
    }
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn read_manifest(path: &Path, publisher: PublicKey) -> Result<VerifiedManifest, CliError> {
    let (_, bytes) = files::read_signed(path, Some(SignedKind::Manifest))?;
    let verified = VerifiedManifest::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid manifest", path.display()))
        .map_err(CliError::invalid)?;
    if verified.manifest().publisher != publisher {
        return Err(CliError::usage(anyhow!(
            "{} is from publisher {}, not the draft's publisher {publisher}",
            path.display(),
            verified.manifest().publisher
        )));
    }
    Ok(verified)
}

/// The licence in the file `path`, verified, of the draft's `publisher`.
fn read_licence(path: &Path, publisher: PublicKey) -> Result<VerifiedLicence, CliError> {
    let (signed, _) = files::read_signed(path, Some(SignedKind::Licence))?;
    let verified = VerifiedLicence::verify(signed)
        .with_context(|| format!("{} is not a valid licence", files::shown(path)))
        .map_err(CliError::invalid)?;
    if verified.licence().publisher != publisher {
        return Err(CliError::usage(anyhow!(
            "{} is a licence of publisher {}, not of the draft's publisher {publisher}",
            files::shown(path),
            verified.licence().publisher
        )));
    }
    Ok(verified)
}

pub fn run(command: CatalogCommand) -> CliResult {
    match command {
        CatalogCommand::New(args) => new(args),
        CatalogCommand::Add(args) => add(args),
        CatalogCommand::Revoke(args) => revoke(args),
        CatalogCommand::RevokeDelegate(args) => revoke_delegate(args),
        CatalogCommand::RevokeLicence(args) => revoke_licence(args),
        CatalogCommand::Sign(args) => sign(args),
        CatalogCommand::Inspect(args) => inspect(args),
    }
}

fn new(args: NewArgs) -> CliResult {
    let publisher = match (args.publisher, &args.key) {
        (Some(p), _) => p,
        (None, Some(key)) => read_key(key)?.public_key(),
        (None, None) => return Err(CliError::usage(anyhow!("give --key or --publisher"))),
    };
    let draft = Draft {
        format: DRAFT_FORMAT.to_owned(),
        publisher,
        last_signed_sequence: 0,
        entries: Vec::new(),
        revoked_manifests: Vec::new(),
        revoked_delegates: Vec::new(),
        revoked_licences: Vec::new(),
        listed: HashSet::new(),
    };
    draft.save(&args.output, args.force)?;
    println!(
        "new catalog draft for publisher {publisher} in {}",
        args.output.display()
    );
    Ok(())
}

fn add(args: AddArgs) -> CliResult {
    let mut draft = Draft::load(&args.draft)?;
    let before = draft.entries.len();
    for path in &args.manifests {
        let verified = read_manifest(path, draft.publisher)?;
        draft.add(verified.id(), &verified.manifest().title)?;
    }
    if let (Some(id), Some(title)) = (args.id, &args.title) {
        draft.add(id, title)?;
    }
    if let Some(list) = &args.from_list {
        let text = std::fs::read_to_string(list)
            .with_context(|| format!("cannot read {}", list.display()))
            .map_err(CliError::io)?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, title) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let id: ManifestId = id
                .parse()
                .with_context(|| format!("{} line {}", list.display(), n + 1))
                .map_err(CliError::usage)?;
            draft.add(id, title.trim())?;
        }
    }
    draft.save(&args.draft, true)?;
    println!(
        "{} entr{} added: {}",
        draft.entries.len().saturating_sub(before),
        if draft.entries.len().saturating_sub(before) == 1 {
            "y"
        } else {
            "ies"
        },
        draft.summary()
    );
    Ok(())
}

fn revoke(args: RevokeArgs) -> CliResult {
    let mut draft = Draft::load(&args.draft)?;
    for item in &args.manifests {
        let id = match item.parse::<ManifestId>() {
            Ok(id) => id,
            Err(_) => read_manifest(Path::new(item), draft.publisher)?.id(),
        };
        if draft.listed.remove(&id) {
            draft.entries.retain(|e| e.manifest_id != id);
        }
        if !draft.revoked_manifests.contains(&id) {
            draft.revoked_manifests.push(id);
        }
    }
    draft.save(&args.draft, true)?;
    println!("revoked; {}", draft.summary());
    println!("sign the draft and publish the catalog for nodes to stop serving them");
    Ok(())
}

fn revoke_delegate(args: RevokeDelegateArgs) -> CliResult {
    let mut draft = Draft::load(&args.draft)?;
    if args.delegates.contains(&draft.publisher) {
        return Err(CliError::usage(anyhow!(
            "{} is the publisher's own key, not a delegate",
            draft.publisher
        )));
    }
    for delegate in args.delegates {
        if !draft.revoked_delegates.contains(&delegate) {
            draft.revoked_delegates.push(delegate);
        }
    }
    draft.save(&args.draft, true)?;
    println!("revoked; {}", draft.summary());
    Ok(())
}

fn revoke_licence(args: RevokeLicenceArgs) -> CliResult {
    let mut draft = Draft::load(&args.draft)?;
    for item in &args.licences {
        let id = match item.parse::<LicenceId>() {
            Ok(id) => id,
            Err(_) => read_licence(Path::new(item), draft.publisher)?.id(),
        };
        if !draft.revoked_licences.contains(&id) {
            draft.revoked_licences.push(id);
        }
    }
    draft.save(&args.draft, true)?;
    println!("revoked; {}", draft.summary());
    println!("sign the draft and publish the catalog for nodes to refuse these licences");
    Ok(())
}

fn sign(args: SignArgs) -> CliResult {
    let key = read_key(&args.key)?;
    let mut draft = Draft::load(&args.draft)?;
    if key.public_key() != draft.publisher {
        return Err(CliError::usage(anyhow!(
            "{} holds key {}, but the draft is for publisher {} (catalogs are signed by the publisher's own key)",
            args.key.display(),
            key.public_key(),
            draft.publisher
        )));
    }
    let sequence = draft
        .last_signed_sequence
        .checked_add(1)
        .ok_or_else(|| CliError::usage(anyhow!("the sequence cannot go higher")))?
        .max(args.sequence.unwrap_or(0));
    let catalog = Catalog {
        publisher: draft.publisher,
        sequence,
        issued_at: args.issued_at.unwrap_or_else(Timestamp::now),
        expires_at: args.expires,
        entries: draft.entries.clone(),
        revoked_manifests: draft.revoked_manifests.clone(),
        revoked_delegates: draft.revoked_delegates.clone(),
        revoked_licences: draft.revoked_licences.clone(),
    };
    let verified = catalog.sign(&key).map_err(CliError::usage)?;
    let head = verified.head(&key).map_err(CliError::usage)?;
    // Reserve the sequence first: a crash after this skips a number, never reuses one.
    draft.last_signed_sequence = sequence;
    draft.save(&args.draft, true)?;
    let head_path = args.head.clone().unwrap_or_else(|| {
        let mut name = args.output.clone().into_os_string();
        name.push(".head");
        PathBuf::from(name)
    });
    let file = verified.to_file_bytes();
    files::write_atomic(&args.output, &file, true)?;
    files::write_atomic(&head_path, head.envelope_bytes(), true)?;
    let c = verified.catalog();
    if args.json {
        let value = serde_json::json!({
            "output": args.output.display().to_string(),
            "head": head_path.display().to_string(),
            "publisher": c.publisher,
            "sequence": c.sequence,
            "issued_at": c.issued_at.to_string(),
            "expires_at": c.expires_at.to_string(),
            "entries": c.entries.len(),
            "revoked_manifests": c.revoked_manifests.len(),
            "revoked_delegates": c.revoked_delegates.len(),
            "revoked_licences": c.revoked_licences.len(),
            "catalog_hash": verified.hash(),
            "bytes": file.len(),
            "parts": verified.parts_size().0,
        });
        println!("{value:#}");
    } else {
        println!(
            "signed catalog {} of {}: {} listed, {} revoked manifest(s), {} revoked delegate(s), \
             {} revoked licence(s), expires {}",
            c.sequence,
            c.publisher,
            c.entries.len(),
            c.revoked_manifests.len(),
            c.revoked_delegates.len(),
            c.revoked_licences.len(),
            c.expires_at
        );
        println!(
            "catalog     {} ({} bytes: a signed root and {} parts)",
            args.output.display(),
            file.len(),
            verified.parts_size().0
        );
        println!("head        {}", head_path.display());
    }
    Ok(())
}

fn inspect(args: InspectArgs) -> CliResult {
    let looks_like_json = std::fs::File::open(&args.file)
        .and_then(|mut f| {
            let mut first = [0u8; 1];
            std::io::Read::read(&mut f, &mut first).map(|n| n == 1 && first[0] == b'{')
        })
        .with_context(|| format!("cannot read {}", args.file.display()))
        .map_err(CliError::io)?;
    if looks_like_json {
        let draft = Draft::load(&args.file)?;
        if args.json {
            println!("{:#}", serde_json::json!(draft));
        } else {
            println!("catalog draft for publisher {}", draft.publisher);
            println!("{}", draft.summary());
        }
        return Ok(());
    }
    crate::inspect::inspect(crate::inspect::InspectArgs::new(
        args.file, args.json, args.all,
    ))
}
