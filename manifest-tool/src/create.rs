//! `create`: hash files on all cores and sign a manifest for them.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use licet_proto::{
    PublicKey, Timestamp,
    delegation::Delegation,
    encryption::{ContentKey, EncryptionAlgorithm, ciphertext_size},
    manifest::{
        ENCRYPTED_MANIFEST_FORMAT_VERSION, FileEntry, Licence, MANIFEST_FORMAT_VERSION, Manifest,
        ManifestError, Region, ReleaseEncryption,
    },
    merkle::{self, MerkleTree},
    path::{SafePath, check_path_set},
    signed::SignedKind,
};

use crate::{CliError, CliResult, encrypt, files, keys::read_key, parse_time};

/// Sign a manifest for files or whole directories.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  licet-manifest create ./release --key publisher.pem --title \"Episode 1\" \\\n      --not-after +30d --regions FR,BE --terms \"Free to share for 30 days\" \\\n      -o ep1.manifest\n  licet-manifest create film.mkv film.srt --key partner.pem \\\n      --delegation partner.delegation --title \"Film\" -o film.manifest\n\n\
    A file argument is listed under its file name; a directory argument contributes its contents,\n\
    with their paths relative to it. So `create ./release` is verified with `--content ./release`.\n\n\
    Encrypted release: --encrypt DIR writes the ciphertext into DIR (what is verified,\n\
    seeded and fetched) and the content key to OUT.key, mode 0600:\n  \
    licet-manifest create ./release --encrypt ./release.enc \\\n      \
    --key publisher.pem --title \"Film\" -o film.manifest"
)]
pub struct CreateArgs {
    /// Files or directories to include.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The signing key: the publisher's, or a delegate's with --delegation.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Title shown to people.
    #[arg(long)]
    title: String,
    /// Optional longer description.
    #[arg(long)]
    description: Option<String>,
    /// Chunk size: a power of two from 16KiB to 16MiB (suffixes KiB, MiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_chunk_size)]
    chunk_size: u32,
    /// Licence start (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    not_before: Option<Timestamp>,
    /// Licence end (default: none).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    not_after: Option<Timestamp>,
    /// Regions where it is licensed, ISO 3166 alpha-2, comma-separated (default: worldwide).
    #[arg(long, value_delimiter = ',', value_name = "CC,CC")]
    regions: Vec<Region>,
    /// Licence terms, for people.
    #[arg(long, default_value = "")]
    terms: String,
    /// The publisher's delegation to the signing key, when a partner signs.
    #[arg(long, value_name = "FILE")]
    delegation: Option<PathBuf>,
    /// Where to write the signed manifest.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Make an encrypted release: encrypt the files with a fresh content key into this new or
    /// empty folder (seed that folder), sign the manifest over the ciphertext, and write the
    /// key to OUT.key (mode 0600; it is what licences give buyers).
    #[arg(long, value_name = "DIR")]
    encrypt: Option<PathBuf>,
}

/// Parses `1MiB`, `256KiB`, `16384`.
pub fn parse_chunk_size(text: &str) -> Result<u32, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, multiplier) = if let Some(d) = lower.strip_suffix("mib") {
        (d, 1024 * 1024)
    } else if let Some(d) = lower.strip_suffix("kib") {
        (d, 1024)
    } else {
        (lower.as_str(), 1)
    };
    let size = digits
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a size such as 1MiB, 256KiB or 65536"))?;
    if !size.is_power_of_two() || !(16 * 1024..=16 * 1024 * 1024).contains(&size) {
        return Err(format!(
            "chunk size {text} is not a power of two from 16KiB to 16MiB"
        ));
    }
    Ok(size)
}

/// A file to include: where it goes in the manifest and where it is on disk.
struct Input {
    path: SafePath,
    disk: PathBuf,
    size: u64,
}

fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, CliError> {
    let mut inputs = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", files::shown(path)))
            .map_err(CliError::io)?;
        if meta.is_dir() {
            walk(path, path, &mut inputs)?;
        } else if meta.is_file() {
            let name = path.file_name().ok_or_else(|| {
                CliError::usage(anyhow!("{} has no file name", files::shown(path)))
            })?;
            inputs.push(input(path, Path::new(name), meta.len())?);
        } else {
            return Err(CliError::usage(anyhow!(
                "{} is neither a file nor a directory",
                files::shown(path)
            )));
        }
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(inputs)
}

fn input(disk: &Path, relative: &Path, size: u64) -> Result<Input, CliError> {
    let text = relative
        .components()
        .map(|c| {
            c.as_os_str().to_str().ok_or_else(|| {
                CliError::usage(anyhow!("{} is not valid UTF-8", files::shown(disk)))
            })
        })
        .collect::<Result<Vec<_>, _>>()?
        .join("/");
    let path = SafePath::new(text)
        .with_context(|| format!("cannot include {}", files::shown(disk)))
        .map_err(CliError::usage)?;
    Ok(Input {
        path,
        disk: disk.to_owned(),
        size,
    })
}

fn walk(root: &Path, dir: &Path, inputs: &mut Vec<Input>) -> Result<(), CliError> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", files::shown(dir)))
        .map_err(CliError::io)?;
    for entry in entries {
        let entry = entry
            .with_context(|| format!("cannot list {}", files::shown(dir)))
            .map_err(CliError::io)?;
        let disk = entry.path();
        let file_type = entry
            .file_type()
            .with_context(|| format!("cannot read {}", files::shown(&disk)))
            .map_err(CliError::io)?;
        // Symbolic links to files are followed; links to directories are not (no cycles).
        let meta = std::fs::metadata(&disk)
            .with_context(|| format!("cannot read {}", files::shown(&disk)))
            .map_err(CliError::io)?;
        if meta.is_dir() {
            if file_type.is_symlink() {
                return Err(CliError::usage(anyhow!(
                    "{} is a link to a directory; list its target instead",
                    files::shown(&disk)
                )));
            }
            walk(root, &disk, inputs)?;
        } else if meta.is_file() {
            let relative = disk.strip_prefix(root).unwrap_or(&disk).to_owned();
            inputs.push(input(&disk, &relative, meta.len())?);
        } else {
            return Err(CliError::usage(anyhow!(
                "{} is neither a file nor a directory",
                files::shown(&disk)
            )));
        }
    }
    Ok(())
}

/// Hashes `disk` and returns its tree; fails if it does not have `size` bytes when read.
pub fn hash_file(
    disk: &Path,
    size: u64,
    chunk_size: u32,
    progress: &ProgressBar,
) -> Result<MerkleTree, CliError> {
    let file = std::fs::File::open(disk)
        .with_context(|| format!("cannot open {}", files::shown(disk)))
        .map_err(CliError::io)?;
    let start = progress.position();
    let (leaves, read) =
        merkle::hash_file_leaves(&file, chunk_size, merkle::default_threads(), &mut |n| {
            progress.set_position(start + n)
        })
        .with_context(|| format!("cannot read {}", files::shown(disk)))
        .map_err(CliError::io)?;
    if read != size {
        return Err(CliError::io(anyhow!(
            "{} changed while it was read ({size} bytes before, {read} bytes read)",
            files::shown(disk)
        )));
    }
    Ok(MerkleTree::from_leaves(leaves))
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
pub fn byte_progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn create(args: CreateArgs) -> CliResult {
    let key = read_key(&args.key)?;
    let (publisher, delegation) = match &args.delegation {
        None => (key.public_key(), None),
        Some(path) => {
            let (signed, _) = files::read_signed(path, Some(SignedKind::Delegation))?;
            let delegation = Delegation::verify_envelope(&signed)
                .with_context(|| format!("{} is not a valid delegation", path.display()))
                .map_err(CliError::invalid)?;
            if delegation.delegate != key.public_key() {
                return Err(CliError::invalid(anyhow!(
                    "{} delegates to {}, not to the key in {} ({})",
                    path.display(),
                    delegation.delegate,
                    args.key.display(),
                    key.public_key()
                )));
            }
            (
                delegation.publisher,
                Some(
                    signed
                        .into_carried_delegation()
                        .with_context(|| format!("{} is not a valid delegation", path.display()))
                        .map_err(CliError::invalid)?,
                ),
            )
        }
    };
    let mut inputs = collect_inputs(&args.paths)?;
    // Before hashing anything: a set of names that cannot travel is refused at once.
    check_path_set(inputs.iter().map(|i| &i.path))
        .context("cannot include these files in one manifest")
        .map_err(CliError::usage)?;
    let total: u64 = inputs.iter().map(|i| i.size).sum();
    let encryption = match &args.encrypt {
        None => None,
        Some(dir) => {
            // Before encrypting anything: outputs that would be refused at the end.
            for path in [args.output.clone(), encrypt::key_file_path(&args.output)] {
                if !args.force && path.exists() {
                    return Err(CliError::usage(anyhow!(
                        "{} already exists (pass --force to overwrite it)",
                        path.display()
                    )));
                }
            }
            Some(encrypt_inputs(&mut inputs, dir, args.chunk_size, total)?)
        }
    };
    let hashed: u64 = inputs.iter().map(|i| i.size).sum();
    let progress = byte_progress(hashed);
    progress.set_message("hashing");
    let mut entries = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let tree = hash_file(&input.disk, input.size, args.chunk_size, &progress)?;
        entries.push(FileEntry {
            path: input.path.clone(),
            size: input.size,
            root: tree.root(),
        });
    }
    progress.finish_and_clear();
    let now = Timestamp::now();
    let manifest = Manifest {
        version: if encryption.is_some() {
            ENCRYPTED_MANIFEST_FORMAT_VERSION
        } else {
            MANIFEST_FORMAT_VERSION
        },
        publisher,
        title: args.title,
        description: args.description,
        created_at: now,
        chunk_size: args.chunk_size,
        files: entries,
        licence: Licence {
            terms: args.terms,
            not_before: args.not_before.unwrap_or(now),
            not_after: args.not_after,
            regions: args.regions,
        },
        encryption: encryption.as_ref().map(|(_, e)| e.clone()),
    };
    let verified = manifest.sign(&key, delegation).map_err(sign_failure)?;
    let key_file = match &encryption {
        Some((content_key, _)) => Some(encrypt::write_key_file(
            &args.output,
            content_key,
            args.force,
        )?),
        None => None,
    };
    files::write_atomic(&args.output, &verified.envelope().encode(), args.force)?;
    let encrypted = args.encrypt.as_deref().zip(key_file.as_deref());
    report(
        &args.output,
        &verified,
        publisher,
        total,
        encrypted,
        args.json,
    );
    Ok(())
}

/// Encrypts every input into `dir` with a fresh content key, and points each input at its
/// ciphertext (what the manifest lists and the network carries).
fn encrypt_inputs(
    inputs: &mut [Input],
    dir: &Path,
    chunk_size: u32,
    total: u64,
) -> Result<(ContentKey, ReleaseEncryption), CliError> {
    encrypt::prepare_folder(dir)?;
    let content_key = ContentKey::generate()
        .context("cannot get random bytes for the content key")
        .map_err(CliError::io)?;
    let progress = byte_progress(total);
    progress.set_message("encrypting");
    let mut plaintext_sizes = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter_mut().enumerate() {
        let plain = encrypt::PlainFile {
            path: &input.path,
            disk: &input.disk,
            size: input.size,
        };
        let disk = encrypt::encrypt_file(
            &content_key,
            index as u64,
            chunk_size,
            &plain,
            dir,
            &progress,
        )?;
        plaintext_sizes.push(input.size);
        input.disk = disk;
        input.size = ciphertext_size(input.size, chunk_size);
    }
    progress.finish_and_clear();
    let encryption = ReleaseEncryption {
        algorithm: EncryptionAlgorithm::ChaCha20Poly1305Stream,
        key_id: content_key.id(),
        plaintext_sizes,
    };
    Ok((content_key, encryption))
}

/// Why a manifest could not be signed, with its exit code: the delegation not letting this key
/// sign this manifest is a policy refusal (1, as `verify` would refuse it); anything else is in
/// the arguments (2).
fn sign_failure(e: ManifestError) -> CliError {
    match e {
        ManifestError::OutOfScope { .. }
        | ManifestError::Delegation(_)
        | ManifestError::DelegationMissing { .. }
        | ManifestError::UnexpectedDelegation
        | ManifestError::DelegationWrongPublisher { .. }
        | ManifestError::DelegationWrongDelegate { .. } => CliError::invalid(e),
        e => CliError::usage(e),
    }
}

fn report(
    output: &Path,
    verified: &licet_proto::manifest::VerifiedManifest,
    publisher: PublicKey,
    total: u64,
    encrypted: Option<(&Path, &Path)>,
    json: bool,
) {
    let manifest = verified.manifest();
    if json {
        let encryption = manifest
            .encryption
            .as_ref()
            .zip(encrypted)
            .map(|(e, (dir, key))| {
                serde_json::json!({
                    "algorithm": e.algorithm.to_string(),
                    "key_id": e.key_id,
                    "ciphertext_dir": dir.display().to_string(),
                    "key_file": key.display().to_string(),
                })
            });
        let value = serde_json::json!({
            "output": output.display().to_string(),
            "manifest_id": verified.id(),
            "link": verified.share_link(&[]).to_string(),
            "title": manifest.title,
            "publisher": publisher,
            "signer": verified.signer(),
            "files": manifest.files.len(),
            "bytes": total,
            "chunk_size": manifest.chunk_size,
            "encryption": encryption,
        });
        println!("{value:#}");
    } else {
        println!(
            "signed {:?}: {} file(s), {total} bytes, chunk size {}",
            manifest.title,
            manifest.files.len(),
            manifest.chunk_size
        );
        println!("manifest id {}", verified.id());
        println!("link        {}", verified.share_link(&[]));
        println!("written to  {}", output.display());
        if let Some((e, (dir, key))) = manifest.encryption.as_ref().zip(encrypted) {
            println!(
                "encrypted   {} ({}), key id {}",
                dir.display(),
                e.algorithm,
                e.key_id
            );
            println!(
                "content key {} (mode 0600; keep it secret: licences seal it to buyers)",
                key.display()
            );
            println!(
                "seed it     licet-node add {} --content {}",
                output.display(),
                dir.display()
            );
        }
    }
}
