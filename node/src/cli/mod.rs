//! The client subcommands (`trust`, `add`, `get`, `ls`, `status`, `peers`, `check`, `rm`,
//! `catalog`): each is one or a few calls, through the typed client [`crate::api::client`], to
//! the control API of the daemon that `licet-node run` started for the same data directory.
//!
//! Exit codes: 0 ok; 1 refused by the trust policy or a verification failure (a bad manifest,
//! content that does not match it); 2 usage, I/O, no daemon running, or any other error. Errors
//! go to stderr as `licet-node: error: …` with their cause chain; `--json` prints the daemon's
//! reply as pretty JSON on stdout.
//!
//! Invariants:
//! - The daemon's address and token are read from `DATA_DIR/api-addr` and `DATA_DIR/api-token`
//!   on every run (the daemon writes new ones each start), size-checked before they are read, and
//!   the token is sent only to a loopback address.
//! - Paths sent to the daemon are absolute (its working directory is not ours): `--content` is
//!   canonicalized, `-o` is made absolute against the current directory and resolved (the
//!   daemon creates it once it has accepted the download, so a refused `get` creates nothing).
//! - Every wait is bounded: each call has a timeout, replies are read up to
//!   [`crate::api::client::MAX_REPLY_BYTES`], and `get` stops watching a download that makes no
//!   progress for [`STALL_LIMIT`] (the daemon goes on with it).
//! - Text from the daemon that came from publishers or peers (titles, names, errors) is shown with
//!   control, bidirectional and invisible characters escaped (`\u{202e}`), so it cannot drive or
//!   disguise the terminal.

use std::{
    fmt::Write as _,
    io::Read as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use licet_proto::{ManifestId, PublicKey, manifest::ShareLink, signed::SignedKind};
use serde::Serialize;

use crate::{
    api::client::{ApiClient, ClientError},
    contract::{
        AddQuery, ApiError, ApiErrorKind, CatalogInfo, CatalogListReply, ContentInfo,
        ContentListReply, ContentState, GetRequest, NetworkInfo, NodeHealth, PeersReply,
        StatusReply, TrustAddRequest, TrustEntry, TrustReply,
    },
    net::reachability::Reachability,
};

/// How often `get` asks how the download is going.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// `get` stops watching a download that makes no progress for this long.
pub const STALL_LIMIT: Duration = Duration::from_secs(10 * 60);
/// Hex characters of a manifest id shown in tables.
const ID_PREFIX_CHARS: usize = 16;
/// Characters of a title shown in tables.
const TABLE_TITLE_CHARS: usize = 60;

/// The subcommands that talk to a running daemon (`licet-node run`) through its control API.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Manage the publishers this node trusts: it serves and fetches only their content.
    #[command(
        subcommand,
        after_help = "Example:\n  licet-node trust add 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29 --name Acme\n  licet-node trust ls"
    )]
    Trust(TrustCommand),
    /// Seed content you already have: verify it against its signed manifest, then serve it in
    /// place (nothing is copied).
    #[command(
        after_help = "Example:\n  licet-node add ep1.manifest --content ./release\n\n\
        The daemon hashes every file before it answers, so this takes as long as reading the\n\
        content once. The publisher must be trusted first (`licet-node trust add`).\n\
        Prints the share link to give to others."
    )]
    Add {
        /// The signed manifest file (from `licet-manifest create`).
        manifest: PathBuf,
        /// The directory that holds the manifest's files.
        #[arg(long, value_name = "DIR")]
        content: PathBuf,
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch content by its share link, verifying every chunk, and show progress until it is
    /// complete.
    #[command(
        after_help = "Example:\n  licet-node get licet:9f2c…e1 -o ~/Videos/episode-1\n\n\
        The publisher must be trusted first (`licet-node trust add`). Interrupting `get` does not\n\
        stop the download: the daemon goes on, and `get` again shows its progress. A link may\n\
        carry peer hints: licet:<id>?peer=/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW…\n\n\
        Files are written only beneath DIR, never through a link inside it. A file already in\n\
        DIR that is identical to the release's is kept and not fetched again; any other file,\n\
        folder or link at one of its paths refuses the download (exit 2) unless --replace."
    )]
    Get {
        /// The share link (`licet:<id>[?peer=<multiaddr>]`) or a bare manifest id.
        link: String,
        /// The directory to put the files in (created if missing; not the node's data
        /// directory, nor one that holds it).
        #[arg(short = 'o', long, value_name = "DIR", default_value = ".")]
        output: PathBuf,
        /// Overwrite an existing file at one of the manifest's paths that is not the
        /// manifest's file (never a link). Without it such a file refuses the download; a
        /// file identical to the manifest's is kept and not fetched again either way.
        #[arg(long)]
        replace: bool,
        /// Print the final content state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the content this node holds or is fetching.
    #[command(
        after_help = "Example:\n  licet-node ls\n  licet-node ls --json   # full ids and links"
    )]
    Ls {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the daemon's peer id, addresses, peers and content counts.
    #[command(after_help = "Example:\n  licet-node status\n\n\
        Give one of the listening addresses to other nodes' --bootstrap.")]
    Status {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List connected and banned peers (with when each ban ends).
    #[command(
        after_help = "Example:\n  licet-node peers\n  licet-node peers --json   # banned_until, offences\n\n\
        A peer that sent a bad chunk or broke the protocol is banned for 10 minutes, each\n\
        repeat twice as long up to a day; when its ban ends it may connect again."
    )]
    Peers {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop serving and fetching content and forget it; its files stay where they are.
    #[command(
        after_help = "Example:\n  licet-node rm 9f2c…e1   # the full id, from `licet-node ls --json` or the link"
    )]
    Rm {
        /// The manifest id (64 hex characters).
        id: ManifestId,
        /// Print `{"removed": "<id>"}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-verify content's files on disk and serve again every chunk that matches its manifest.
    #[command(
        after_help = "Example:\n  licet-node check 9f2c…e1   # the full id, from `licet-node ls --json` or the link\n\n\
        A file that changed on disk while it was served (other bytes, even with the same size\n\
        and modification time) is no longer served, and `ls` shows it as changed. Put the\n\
        right bytes back, then check: the daemon hashes every file, and the content is complete\n\
        again if all chunks match. Exits 1 if some still do not."
    )]
    Check {
        /// The manifest id (64 hex characters).
        id: ManifestId,
        /// Print the content state after the check as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish a publisher's signed catalog to the swarm, or list the catalogs this node follows.
    #[command(
        subcommand,
        after_help = "Example:\n  licet-node catalog publish publisher.catalog\n  licet-node catalog ls"
    )]
    Catalog(CatalogCommand),
}

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

/// `licet-node trust …`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a publisher: serve and fetch content it signed (or delegated).
    #[command(
        after_help = "Example:\n  licet-node trust add $(licet-manifest pubkey publisher.pem) --name Acme --require-catalog\n\n\
        With --require-catalog, only manifests listed in the publisher's unexpired catalog\n\
        are served and fetched. With --mirror, the node fetches and seeds everything the\n\
        publisher's catalog lists (into DATA_DIR/mirror/) and drops what it withdraws."
    )]
    Add {
        /// The publisher's public key (64 hex characters).
        #[arg(value_name = "PUBKEY")]
        publisher: PublicKey,
        /// A name for people.
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
        after_help = "Example:\n  licet-node trust rm 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
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

/// Runs one client subcommand against the daemon of `data_dir`; prints the result on stdout and
/// errors on stderr, and returns the exit code (0 ok, 1 refused or invalid, 2 anything else).
pub async fn run(command: ClientCommand, data_dir: &Path) -> ExitCode {
    let watch = Watch {
        poll_interval: POLL_INTERVAL,
        stall_limit: STALL_LIMIT,
        progress: true,
    };
    match execute(command, data_dir, &watch).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("licet-node: error: {:#}", failure.error());
            ExitCode::from(failure.exit_code())
        }
    }
}

/// A failed subcommand, with the exit code it maps to.
#[derive(Debug)]
enum Failure {
    /// Refused by the trust policy, or a verification failure: exit 1.
    Invalid(anyhow::Error),
    /// Usage, I/O, no daemon, anything else: exit 2.
    Other(anyhow::Error),
}

impl Failure {
    fn other(e: impl Into<anyhow::Error>) -> Failure {
        Failure::Other(e.into())
    }

    fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 1,
            Failure::Other(_) => 2,
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Invalid(e) | Failure::Other(e) => e,
        }
    }
}

/// How `get` watches a download.
struct Watch {
    poll_interval: Duration,
    stall_limit: Duration,
    /// Show the progress bar (on stderr, and only if it is a terminal).
    progress: bool,
}

async fn execute(command: ClientCommand, data_dir: &Path, watch: &Watch) -> Result<(), Failure> {
    match command {
        ClientCommand::Trust(TrustCommand::Add {
            publisher,
            name,
            require_catalog,
            mirror,
            json,
        }) => {
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
        ClientCommand::Trust(TrustCommand::Ls { json }) => {
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
        ClientCommand::Trust(TrustCommand::Rm { publisher, json }) => {
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
        ClientCommand::Add {
            manifest,
            content,
            json,
        } => add(data_dir, &manifest, &content, json).await,
        ClientCommand::Get {
            link,
            output,
            replace,
            json,
        } => get(data_dir, &link, &output, replace, json, watch).await,
        ClientCommand::Ls { json } => {
            let client = connect(data_dir)?;
            let reply: ContentListReply = client
                .content_list()
                .await
                .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
            if json {
                print_json(&reply)
            } else {
                print!("{}", format_content_list(&reply.content));
                if !reply.catalogs.is_empty() {
                    println!();
                    print!("{}", format_catalogs(&reply.catalogs));
                }
                Ok(())
            }
        }
        ClientCommand::Status { json } => {
            let client = connect(data_dir)?;
            let reply: StatusReply = client
                .status()
                .await
                .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
            if json {
                print_json(&reply)
            } else {
                print!("{}", format_status(&reply));
                Ok(())
            }
        }
        ClientCommand::Peers { json } => {
            let client = connect(data_dir)?;
            let reply: PeersReply = client
                .peers()
                .await
                .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
            if json {
                print_json(&reply)
            } else {
                print!("{}", format_peers(&reply));
                Ok(())
            }
        }
        ClientCommand::Check { id, json } => check(data_dir, id, json).await,
        ClientCommand::Rm { id, json } => {
            let client = connect(data_dir)?;
            let info: ContentInfo = client
                .content_get(&id)
                .await
                .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
            client
                .content_remove(&id)
                .await
                .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
            if json {
                print_json(&serde_json::json!({ "removed": id }))
            } else {
                println!(
                    "removed \"{}\" ({id}); its files stay in {}",
                    clean(&info.title),
                    info.dir.display()
                );
                Ok(())
            }
        }
        ClientCommand::Catalog(CatalogCommand::Publish {
            catalog,
            head,
            json,
        }) => publish_catalog(data_dir, &catalog, head.as_deref(), json).await,
        ClientCommand::Catalog(CatalogCommand::Ls { json }) => {
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
    }
}

/// Reads a signed file of `kind` (size-checked against that kind's limit).
fn read_signed_file(path: &Path, kind: SignedKind, what: &str) -> Result<Vec<u8>, Failure> {
    let limit = kind.max_envelope_bytes();
    read_limited(path, limit as u64).map_err(|e| match e {
        ReadLimitedError::TooLarge { len } => Failure::Invalid(anyhow!(
            "{} is {len} bytes, larger than any signed {what} ({limit} bytes at most)",
            path.display()
        )),
        ReadLimitedError::Io(e) => Failure::Other(
            anyhow::Error::new(e).context(format!("cannot read the {what} {}", path.display())),
        ),
    })
}

/// `catalog publish`: reads the catalog and its head and hands both to the daemon.
async fn publish_catalog(
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
    let catalog_bytes = read_signed_file(catalog, SignedKind::Catalog, "catalog")?;
    let head_bytes = read_signed_file(&head_path, SignedKind::CatalogHead, "catalog head")?;
    let client = connect(data_dir)?;
    let reply = client.catalog_publish(catalog_bytes, &head_bytes).await;
    // A catalog or head that does not verify, or that does not belong together, is invalid.
    let info = reply.map_err(|e| call_failure(e, &client, Verdict::BadRequestIsInvalid))?;
    if json {
        return print_json(&info);
    }
    println!(
        "published catalog {} of {}{}: {} listed, {} revoked manifest(s), {} revoked delegate(s), expires {}",
        info.sequence.map_or("-".to_owned(), |s| s.to_string()),
        info.publisher,
        info.name
            .as_deref()
            .map(|n| format!(" ({})", clean(n)))
            .unwrap_or_default(),
        info.entries,
        info.revoked_manifests,
        info.revoked_delegates,
        info.expires_at.as_deref().map_or("-".to_owned(), clean),
    );
    Ok(())
}

/// `add`: checks the paths, reads the manifest (size-checked), and asks the daemon to verify and
/// seed the content.
async fn add(data_dir: &Path, manifest: &Path, content: &Path, json: bool) -> Result<(), Failure> {
    let content_dir = std::fs::canonicalize(content)
        .with_context(|| format!("cannot find the content directory {}", content.display()))
        .map_err(Failure::other)?;
    let content_text = utf8_path("the content directory", &content_dir)?;
    let bytes = read_signed_file(manifest, SignedKind::Manifest, "manifest")?;
    let client = connect(data_dir)?;

    let spinner = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(format!(
            "verifying {} against {}…",
            content_dir.display(),
            manifest.display()
        ));
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    } else {
        ProgressBar::hidden()
    };
    let reply = client
        .content_add(
            bytes,
            &AddQuery {
                content_dir: PathBuf::from(content_text),
            },
        )
        .await;
    spinner.finish_and_clear();
    // The manifest or the content is what the daemon found wrong: a verification failure.
    let info = reply.map_err(|e| call_failure(e, &client, Verdict::BadRequestIsInvalid))?;
    if json {
        return print_json(&info);
    }
    println!(
        "added \"{}\": {} in {} chunks, verified in {}",
        clean(&info.title),
        human_bytes(info.total_bytes),
        info.total_chunks,
        info.dir.display()
    );
    println!("share link: {}", info.link);
    if let Some(refusal) = &info.refused {
        println!(
            "note: not served now: {}: {}",
            refusal.reason.describe(),
            clean(&refusal.detail)
        );
    }
    Ok(())
}

/// `check`: re-verifies content on disk; exit 1 if some chunks still do not match.
async fn check(data_dir: &Path, id: ManifestId, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let info: ContentInfo = client
        .content_check(&id)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    let whole = info.state == ContentState::Complete;
    if json {
        print_json(&info)?;
    } else if whole {
        println!(
            "checked \"{}\": every chunk matches; complete and served",
            clean(&info.title)
        );
    } else {
        println!(
            "checked \"{}\": {} of {} chunks match and are served",
            clean(&info.title),
            info.have_chunks,
            info.total_chunks
        );
    }
    if whole {
        Ok(())
    } else {
        Err(Failure::Invalid(anyhow!(
            "content {id} does not match its manifest: {}",
            info.error
                .as_deref()
                .map_or("some chunks differ".to_owned(), clean)
        )))
    }
}

/// `get`: starts the download, then watches it until it is complete, failed or stalled.
async fn get(
    data_dir: &Path,
    link: &str,
    output: &Path,
    replace: bool,
    json: bool,
    watch: &Watch,
) -> Result<(), Failure> {
    // Check the link here, so a typo is an error even without a daemon.
    link.parse::<ShareLink>().map_err(Failure::other)?;
    let client = connect(data_dir)?;
    let output_dir = prepare_output_dir(output)?;
    let output_text = utf8_path("the output directory", &output_dir)?;
    let request = GetRequest {
        link: link.trim().to_owned(),
        output_dir: PathBuf::from(output_text),
        replace,
    };
    let started: ContentInfo = client
        .download_start(&request)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    let outcome = watch_download(&client, started, watch).await;
    match outcome {
        Ok(info) => {
            if json {
                print_json(&info)
            } else {
                print!("{}", format_download_summary(&info));
                Ok(())
            }
        }
        Err(WatchEnd::Failed(info, failure)) => {
            if json {
                print_json(&info)?;
            }
            Err(failure)
        }
        Err(WatchEnd::Stopped(failure)) => Err(failure),
    }
}

/// How watching a download ended, when not with the content complete.
enum WatchEnd {
    /// The content's state says it failed (or it is refused).
    Failed(Box<ContentInfo>, Failure),
    /// Watching itself failed or gave up.
    Stopped(Failure),
}

/// Polls `GET /v1/content/{id}` until the content is complete, failed, refused, or makes no
/// progress for `watch.stall_limit`; shows a progress bar meanwhile.
async fn watch_download(
    client: &ApiClient,
    first: ContentInfo,
    watch: &Watch,
) -> Result<ContentInfo, WatchEnd> {
    let bar = download_bar(&first, watch.progress);
    let id = first.manifest_id;
    let mut info = first;
    let mut last_seen = progress_mark(&info);
    let mut last_change = Instant::now();
    loop {
        bar.set_length(info.total_bytes);
        bar.set_position(info.have_bytes);
        bar.set_message(format!(
            "{} · {} sending",
            truncate(&clean(&info.title), 40),
            peers_text(info.sending_peers)
        ));
        match info.state {
            ContentState::Complete => {
                bar.finish_and_clear();
                return Ok(info);
            }
            ContentState::Failed => {
                bar.abandon();
                let failure = failed_download(&info);
                return Err(WatchEnd::Failed(Box::new(info), failure));
            }
            ContentState::Downloading if info.refused.is_some() => {
                // A refused item is neither served nor fetched: waiting would only stall.
                bar.abandon();
                let failure = failed_download(&info);
                return Err(WatchEnd::Failed(Box::new(info), failure));
            }
            ContentState::Downloading => {}
        }
        let mark = progress_mark(&info);
        if mark != last_seen {
            last_seen = mark;
            last_change = Instant::now();
        } else if last_change.elapsed() >= watch.stall_limit {
            bar.abandon();
            return Err(WatchEnd::Stopped(Failure::Other(anyhow!(
                "no progress on \"{}\" ({id}) for {}: {} of {} held, {} sending; the daemon \
                 keeps trying (run the same `licet-node get` to watch it again, or `licet-node ls`)",
                clean(&info.title),
                human_duration(watch.stall_limit),
                human_bytes(info.have_bytes),
                human_bytes(info.total_bytes),
                peers_text(info.sending_peers),
            ))));
        }
        tokio::time::sleep(watch.poll_interval).await;
        info = match client.content_get(&id).await {
            Ok(info) => info,
            Err(e) => {
                bar.abandon();
                let cause = match call_failure(e, client, Verdict::UsageError) {
                    Failure::Invalid(e) | Failure::Other(e) => e,
                };
                return Err(WatchEnd::Stopped(Failure::Other(
                    cause.context(format!("lost track of the download of {id}")),
                )));
            }
        };
    }
}

/// What counts as progress: any change in what is held or fetched.
fn progress_mark(info: &ContentInfo) -> (u64, u64, u64) {
    (info.have_bytes, info.have_chunks, info.fetched_chunks)
}

/// The failure for content that is `failed`, or refused: exit 1 if refused, else 2.
fn failed_download(info: &ContentInfo) -> Failure {
    let mut message = format!(
        "download of \"{}\" ({}) stopped",
        clean(&info.title),
        info.manifest_id
    );
    if let Some(error) = &info.error {
        let _ = write!(message, ": {}", clean(error));
    }
    match &info.refused {
        Some(refusal) => {
            let _ = write!(
                message,
                ": refused: {}: {}",
                refusal.reason.describe(),
                clean(&refusal.detail)
            );
            Failure::Invalid(anyhow!(message))
        }
        None => Failure::Other(anyhow!(message)),
    }
}

/// A byte progress bar on stderr, hidden when stderr is not a terminal or `show` is false.
fn download_bar(info: &ContentInfo, show: bool) -> ProgressBar {
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(info.total_bytes), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {wide_msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
         {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    // Bytes held before this run do not count towards the rate.
    bar.set_position(info.have_bytes);
    bar.reset_eta();
    bar
}

/// Makes `output` absolute against the current directory and resolves its links, `.` and `..`
/// (it need not exist: the daemon creates it; if it exists it must be a directory).
fn prepare_output_dir(output: &Path) -> Result<PathBuf, Failure> {
    let resolved = crate::content::output_folder::resolve(output)
        .with_context(|| format!("cannot resolve the output directory {}", output.display()))
        .map_err(Failure::other)?;
    if resolved.exists() && !resolved.is_dir() {
        return Err(Failure::Other(anyhow!(
            "the output {} is not a directory",
            output.display()
        )));
    }
    Ok(resolved)
}

/// The path as UTF-8 text (the control API carries paths as JSON and query strings).
fn utf8_path<'a>(what: &str, path: &'a Path) -> Result<&'a str, Failure> {
    path.to_str().ok_or_else(|| {
        Failure::Other(anyhow!(
            "{what} {} is not valid UTF-8, which the control API cannot carry",
            path.display()
        ))
    })
}

/// Why [`read_limited`] failed.
#[derive(Debug)]
enum ReadLimitedError {
    TooLarge { len: u64 },
    Io(std::io::Error),
}

/// Reads a file of at most `limit` bytes, checking the size before reading (and while reading,
/// in case it grows).
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadLimitedError> {
    let file = std::fs::File::open(path).map_err(ReadLimitedError::Io)?;
    let len = file.metadata().map_err(ReadLimitedError::Io)?.len();
    if len > limit {
        return Err(ReadLimitedError::TooLarge { len });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadLimitedError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadLimitedError::TooLarge {
            len: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Reads the API files of `data_dir` (does not contact the daemon yet).
fn connect(data_dir: &Path) -> Result<ApiClient, Failure> {
    ApiClient::connect(data_dir).map_err(|e| Failure::Other(anyhow::Error::new(e)))
}

/// How a command classifies a `bad_request` from the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The request named something wrong (a link, a path): exit 2.
    UsageError,
    /// The manifest or the content is wrong (`add`): exit 1.
    BadRequestIsInvalid,
}

/// The failure for a call that failed: see [`api_failure`] for the daemon's error replies;
/// anything else exits 2.
fn call_failure(error: ClientError, client: &ApiClient, verdict: Verdict) -> Failure {
    match error {
        ClientError::Api(error) => api_failure(&error, client, verdict),
        ClientError::TimedOut {
            addr,
            timeout,
            cause,
        } => Failure::Other(anyhow::Error::new(cause).context(format!(
            "the daemon at {addr} did not answer within {}",
            human_duration(timeout)
        ))),
        other => Failure::Other(anyhow::Error::new(other)),
    }
}

/// The failure for an error reply: refusals (and, for `add`, bad manifests and content) exit 1.
fn api_failure(error: &ApiError, client: &ApiClient, verdict: Verdict) -> Failure {
    let message = describe_api_error(error);
    match error.kind {
        ApiErrorKind::Refused => Failure::Invalid(anyhow!(message)),
        ApiErrorKind::Unavailable if error.refusal.is_some() => Failure::Invalid(anyhow!(message)),
        ApiErrorKind::BadRequest if verdict == Verdict::BadRequestIsInvalid => {
            Failure::Invalid(anyhow!(message))
        }
        ApiErrorKind::Unauthorized => Failure::Other(anyhow!(message).context(format!(
            "the daemon at {} did not accept the token in {} (is another program listening \
             there, or is it a daemon of another data directory?)",
            client.addr(),
            client.token_file().display()
        ))),
        _ => Failure::Other(anyhow!(message)),
    }
}

/// The daemon's message, with the refusal's reason and detail if the message lacks them.
fn describe_api_error(error: &ApiError) -> String {
    let mut text = error.message.clone();
    if let Some(refusal) = &error.refusal {
        let reason = refusal.reason.describe();
        if !text.contains(reason) {
            let _ = write!(text, ": refused: {reason}");
        }
        if !refusal.detail.is_empty() && !text.contains(&refusal.detail) {
            let _ = write!(text, ": {}", refusal.detail);
        }
    }
    clean(&text)
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .context("cannot encode the reply as JSON")
        .map_err(Failure::other)?;
    println!("{text}");
    Ok(())
}

/// Escapes control characters, bidirectional overrides and invisible characters (`\u{202e}`),
/// so text from publishers and peers cannot move the cursor, recolour or reorder the terminal.
/// The one escaping function of the project: [`licet_proto::text::escape_for_terminal`].
fn clean(text: &str) -> String {
    licet_proto::text::escape_for_terminal(text).into_owned()
}

/// At most `max` characters of `text`, ending in `…` if cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Bytes in binary units: `0 B`, `1023 B`, `1.0 KiB`, `1.5 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration for people: `45s`, `10m`, `1h 2m 5s`, `3d 4h`.
fn human_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(if days > 0 { 2 } else { 3 })
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

fn peers_text(n: usize) -> String {
    if n == 1 {
        "1 peer".to_owned()
    } else {
        format!("{n} peers")
    }
}

/// The first hex characters of an id or key, as shown in tables.
fn id_prefix(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(ID_PREFIX_CHARS).collect()
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<pad$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `ls`: a table of content, then a line for each item that is refused or failed.
fn format_content_list(content: &[ContentInfo]) -> String {
    if content.is_empty() {
        return "no content (seed some with `licet-node add`, or fetch with `licet-node get`)\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = content
        .iter()
        .map(|item| {
            let percent = if item.total_bytes == 0 {
                100
            } else {
                u128::from(item.have_bytes) * 100 / u128::from(item.total_bytes)
            };
            vec![
                id_prefix(&item.manifest_id),
                state_text(item).to_owned(),
                format!(
                    "{}/{} ({percent}%)",
                    human_bytes(item.have_bytes),
                    human_bytes(item.total_bytes)
                ),
                item.sending_peers.to_string(),
                truncate(&clean(&item.title), TABLE_TITLE_CHARS),
            ]
        })
        .collect();
    let mut out = table(&["ID", "STATE", "HAVE/TOTAL", "SENDING", "TITLE"], &rows);
    for item in content {
        if let Some(refusal) = &item.refused {
            let _ = writeln!(
                out,
                "{}: refused: {}: {}",
                id_prefix(&item.manifest_id),
                refusal.reason.describe(),
                clean(&refusal.detail)
            );
        }
        if let (ContentState::Failed, Some(error)) = (item.state, &item.error) {
            let _ = writeln!(
                out,
                "{}: {}: {}",
                id_prefix(&item.manifest_id),
                state_text(item),
                clean(error)
            );
        }
        if !item.changed_files.is_empty() {
            let files: Vec<String> = item.changed_files.iter().map(|f| clean(f)).collect();
            let _ = writeln!(
                out,
                "{}: changed on disk, not served: {} (re-verify with `licet-node check {}`)",
                id_prefix(&item.manifest_id),
                files.join(", "),
                item.manifest_id
            );
        }
    }
    out
}

fn state_text(item: &ContentInfo) -> &'static str {
    match (item.state, item.refused.is_some()) {
        (_, true) => "refused",
        (ContentState::Failed, false) if !item.changed_files.is_empty() => "changed",
        (ContentState::Downloading, false) => "downloading",
        (ContentState::Complete, false) => "complete",
        (ContentState::Failed, false) => "failed",
    }
}

/// `catalog ls` (and the end of `ls`): a table of each trusted publisher's catalog.
fn format_catalogs(catalogs: &[CatalogInfo]) -> String {
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
                format!("{}/{}", c.revoked_manifests, c.revoked_delegates),
                if c.mirror { "yes" } else { "-" }.to_owned(),
                c.name.as_deref().map_or("-".to_owned(), clean),
            ]
        })
        .collect();
    table(
        &[
            "PUBLISHER",
            "CATALOG",
            "EXPIRES",
            "LISTED",
            "REVOKED (MANIFESTS/DELEGATES)",
            "MIRROR",
            "NAME",
        ],
        &rows,
    )
}

/// `status`: one labelled line per field.
fn format_status(status: &StatusReply) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "peer id          {}", clean(&status.peer_id));
    let _ = writeln!(out, "version          {}", clean(&status.version));
    let _ = writeln!(
        out,
        "region           {}",
        status.region.as_deref().map_or("(none)".to_owned(), clean)
    );
    let _ = writeln!(
        out,
        "uptime           {}",
        human_duration(Duration::from_secs(status.uptime_seconds))
    );
    let _ = writeln!(out, "connected peers  {}", status.connected_peers);
    let _ = writeln!(out, "trusted          {}", status.trusted_publishers);
    let _ = writeln!(
        out,
        "content          {} complete, {} downloading, {} failed",
        status.content.complete, status.content.downloading, status.content.failed
    );
    if status.content.changed > 0 {
        let _ = writeln!(
            out,
            "changed on disk  {} item(s) with files not served (see `licet-node ls`, then \
             `licet-node check ID`)",
            status.content.changed
        );
    }
    format_health(&mut out, &status.health);
    format_network(&mut out, &status.network);
    if status.listen_addrs.is_empty() {
        let _ = writeln!(out, "listening on     (nothing yet)");
    }
    for (i, addr) in status.listen_addrs.iter().enumerate() {
        let label = if i == 0 { "listening on" } else { "" };
        let _ = writeln!(out, "{label:<17}{}", clean(addr));
    }
    for (i, c) in status.catalogs.iter().enumerate() {
        let label = if i == 0 { "catalogs" } else { "" };
        let state = match (c.sequence, &c.expires_at) {
            (Some(sequence), Some(expires)) => format!(
                "catalog {sequence}, {} until {}, {} revoked manifest(s), {} revoked delegate(s)",
                if c.expired { "expired" } else { "valid" },
                clean(expires),
                c.revoked_manifests,
                c.revoked_delegates
            ),
            _ => "no catalog yet".to_owned(),
        };
        let _ = writeln!(out, "{label:<17}{}: {state}", id_prefix(&c.publisher));
    }
    out
}

/// The `database`, `unsaved` and `clock` lines of `status`: each says what is wrong, if anything.
fn format_health(out: &mut String, health: &NodeHealth) {
    let _ = writeln!(
        out,
        "database         {}",
        health
            .database_problem
            .as_deref()
            .map_or("ok".to_owned(), |p| format!("CLOSED: {}", clean(p)))
    );
    if !health.unsaved_catalogs.is_empty() {
        let publishers: Vec<String> = health.unsaved_catalogs.iter().map(id_prefix).collect();
        let _ = writeln!(
            out,
            "unsaved catalogs {} (in force, saved once the database reopens)",
            publishers.join(", ")
        );
    }
    if let Some(behind) = health.clock_behind_seconds {
        let _ = writeln!(
            out,
            "clock            BEHIND by {} s: a catalog issued at {} was accepted; licence \
             windows are judged by that time (set the clock right)",
            behind,
            health.time_floor.as_deref().map_or(String::new(), clean)
        );
    }
}

/// The `reachable` and `lan` lines of `status`.
fn format_network(out: &mut String, network: &NetworkInfo) {
    let reachable = match network.reachability {
        Reachability::Public => format!(
            "yes, at {}",
            network
                .public_addrs
                .iter()
                .map(|a| clean(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reachability::Private if network.relayed_addrs.is_empty() => {
            "NO (behind a NAT or firewall), no relay reservation yet".to_owned()
        }
        Reachability::Private => format!(
            "NO (behind a NAT or firewall); through {} relay(s): {}",
            network.relayed_addrs.len(),
            network
                .relayed_addrs
                .iter()
                .map(|a| clean(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reachability::Unknown => "not known yet (no peer has tested a public address)".to_owned(),
    };
    let _ = writeln!(out, "reachable        {reachable}");
    let on = |flag: bool| if flag { "on" } else { "off" };
    let _ = writeln!(
        out,
        "network          relay service {}, mDNS {}, UPnP {}",
        on(network.relay_service),
        on(network.mdns),
        on(network.upnp)
    );
}

/// `peers`: a table of peers.
fn format_peers(reply: &PeersReply) -> String {
    if reply.peers.is_empty() {
        return "no peers\n".to_owned();
    }
    let rows: Vec<Vec<String>> = reply
        .peers
        .iter()
        .map(|peer| {
            let addr = match peer.addrs.as_slice() {
                [] => "-".to_owned(),
                [one] => clean(one),
                [first, rest @ ..] => format!("{} (+{})", clean(first), rest.len()),
            };
            let addr = if peer.relayed {
                format!("{addr} (relayed)")
            } else {
                addr
            };
            let state = if peer.banned {
                let until = peer
                    .banned_until
                    .as_deref()
                    .map(|at| format!(" until {}", clean(at)))
                    .unwrap_or_default();
                match &peer.ban_reason {
                    Some(reason) => format!("banned{until}: {}", clean(reason)),
                    None => format!("banned{until}"),
                }
            } else {
                "ok".to_owned()
            };
            vec![
                clean(&peer.peer_id),
                human_bytes(peer.bytes_in),
                human_bytes(peer.bytes_out),
                addr,
                state,
            ]
        })
        .collect();
    table(&["PEER ID", "RECEIVED", "SENT", "ADDRESS", "STATE"], &rows)
}

/// `trust ls`: a table of trusted publishers.
fn format_trust(reply: &TrustReply) -> String {
    if reply.publishers.is_empty() {
        return "no trusted publishers (add one with `licet-node trust add PUBKEY`)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = reply
        .publishers
        .iter()
        .map(|entry| {
            vec![
                entry.publisher.to_hex(),
                if entry.require_catalog {
                    "required".to_owned()
                } else {
                    "-".to_owned()
                },
                entry.name.as_deref().map_or("-".to_owned(), clean),
            ]
        })
        .collect();
    table(&["PUBLISHER", "CATALOG", "NAME"], &rows)
}

/// `get`'s summary of complete content.
fn format_download_summary(info: &ContentInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "complete: \"{}\"", clean(&info.title));
    let _ = writeln!(out, "  id       {}", info.manifest_id);
    let _ = writeln!(
        out,
        "  size     {} ({} bytes, {} chunks)",
        human_bytes(info.total_bytes),
        info.total_bytes,
        info.total_chunks
    );
    let _ = writeln!(out, "  files in {}", info.dir.display());
    let fetched = if info.fetched_chunks == 0 {
        "none (all chunks were already here)".to_owned()
    } else if info.fetched_chunks < info.total_chunks {
        format!(
            "{} of {} chunks from {} (the rest were already here)",
            info.fetched_chunks,
            info.total_chunks,
            peers_text(info.source_peers)
        )
    } else {
        format!(
            "{} chunks from {}",
            info.fetched_chunks,
            peers_text(info.source_peers)
        )
    };
    let _ = writeln!(out, "  fetched  {fetched}");
    if let Some(refusal) = &info.refused {
        let _ = writeln!(
            out,
            "  note     not served now: refused: {}: {}",
            refusal.reason.describe(),
            clean(&refusal.detail)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::{CommandFactory as _, Parser};
    use licet_proto::policy::RefusalReason;

    use super::*;
    use crate::{
        api::server::{
            create_token,
            fake::{Call, FakeNode, TestServer, content, within},
            write_api_addr,
        },
        contract::{Refusal, files::API_TOKEN_FILE},
    };

    #[derive(Parser)]
    #[command(name = "licet-node")]
    struct TestCli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn quick_watch() -> Watch {
        Watch {
            poll_interval: Duration::from_millis(20),
            stall_limit: Duration::from_secs(10),
            progress: false,
        }
    }

    /// A data directory whose daemon is a fake `NodeApi` on loopback.
    async fn daemon_dir() -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().unwrap();
        let token = create_token(dir.path()).unwrap();
        let server = TestServer::start(Arc::new(FakeNode::default()), token).await;
        write_api_addr(dir.path(), server.addr).unwrap();
        (dir, server)
    }

    async fn exec(args: &[&str], dir: &Path) -> Result<(), Failure> {
        exec_with(args, dir, &quick_watch()).await
    }

    async fn exec_with(args: &[&str], dir: &Path, watch: &Watch) -> Result<(), Failure> {
        let cli =
            TestCli::try_parse_from(std::iter::once("licet-node").chain(args.iter().copied()))
                .unwrap();
        within(execute(cli.command, dir, watch)).await
    }

    fn message(failure: &Failure) -> String {
        format!("{:#}", failure.error())
    }

    /// Runs a client command that must fail: its exit code and its message.
    async fn fails(args: &[&str], dir: &Path) -> (u8, String) {
        let failure = exec(args, dir).await.unwrap_err();
        (failure.exit_code(), message(&failure))
    }

    fn refusal() -> Refusal {
        Refusal {
            reason: RefusalReason::UntrustedPublisher,
            detail: "publisher 3b6a… is not in this node's trust store".to_owned(),
        }
    }

    #[test]
    fn every_subcommand_has_an_example_and_json() {
        fn walk(command: &mut clap::Command, path: &str, seen: &mut usize) {
            let name = format!("{path} {}", command.get_name());
            let help = command.render_long_help().to_string();
            assert!(
                help.contains("Example:"),
                "{name} --help has no example:\n{help}"
            );
            let subcommands: Vec<_> = command.get_subcommands_mut().map(|c| c.clone()).collect();
            if subcommands.is_empty() {
                *seen += 1;
                assert!(
                    command
                        .get_arguments()
                        .any(|a| a.get_long() == Some("json")),
                    "{name} has no --json"
                );
            }
            for mut sub in subcommands {
                if sub.get_name() != "help" {
                    walk(&mut sub, &name, seen);
                }
            }
        }
        let mut root = TestCli::command();
        root.build();
        let mut seen = 0;
        for mut sub in root.get_subcommands().cloned().collect::<Vec<_>>() {
            if sub.get_name() != "help" {
                walk(&mut sub, "licet-node", &mut seen);
            }
        }
        assert_eq!(
            seen, 12,
            "trust add/ls/rm, add, get, ls, status, peers, check, rm, catalog publish/ls"
        );
    }

    #[test]
    fn arguments_parse_as_documented() {
        let cli = TestCli::try_parse_from(["licet-node", "get", "licet:00"]).unwrap();
        assert!(
            matches!(cli.command, ClientCommand::Get { ref output, json: false, .. } if output == Path::new("."))
        );
        let key = crate::api::server::fake::publisher().to_hex();
        let cli = TestCli::try_parse_from([
            "licet-node",
            "trust",
            "add",
            &key,
            "--name",
            "Acme",
            "--require-catalog",
            "--json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            ClientCommand::Trust(TrustCommand::Add {
                require_catalog: true,
                json: true,
                ..
            })
        ));
        assert!(TestCli::try_parse_from(["licet-node", "rm", "not-hex"]).is_err());
        assert!(TestCli::try_parse_from(["licet-node", "trust", "rm", "zz"]).is_err());
        assert!(TestCli::try_parse_from(["licet-node", "add", "m.manifest"]).is_err());
    }

    #[test]
    fn bytes_and_durations_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h 2m 5s");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)),
            "3d 4h"
        );
    }

    #[test]
    fn text_from_peers_cannot_drive_the_terminal() {
        assert_eq!(
            clean("a\u{1b}[2Jb\nc\u{202e}d"),
            "a\\u{1b}[2Jb\\u{a}c\\u{202e}d"
        );
        assert_eq!(clean("Épisode 1 — 日本"), "Épisode 1 — 日本");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcd", 4), "abcd");
        assert_eq!(truncate("日本語です", 3), "日本…");
    }

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["ID", "TITLE"],
            &[
                vec!["abc".to_owned(), "first".to_owned()],
                vec!["a".to_owned(), "second".to_owned()],
            ],
        );
        assert_eq!(text, "ID   TITLE\nabc  first\na    second\n");
    }

    #[test]
    fn content_list_shows_prefix_state_progress_peers_title_and_reasons() {
        let mut downloading = content(ManifestId([0xab; 32]), ContentState::Downloading, 1024);
        downloading.title = "Evil\u{1b}[31m title".to_owned();
        let mut refused = content(ManifestId([0xcd; 32]), ContentState::Complete, 4096);
        refused.refused = Some(Refusal {
            reason: RefusalReason::Expired,
            detail: "ended at 2026-01-01T00:00:00Z".to_owned(),
        });
        let mut failed = content(ManifestId([0xef; 32]), ContentState::Failed, 0);
        failed.error = Some("disk full".to_owned());
        let text = format_content_list(&[downloading, refused, failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(
            lines[1].starts_with("abababababababab  downloading  1.0 KiB/4.0 KiB (25%)"),
            "{text}"
        );
        assert!(lines[1].ends_with("Evil\\u{1b}[31m title"), "{text}");
        assert!(lines[2].contains("refused"), "{text}");
        assert!(lines[3].contains("failed"), "{text}");
        assert!(
            text.contains("cdcdcdcdcdcdcdcd: refused: licence window has ended: ended at 2026"),
            "{text}"
        );
        assert!(
            text.contains("efefefefefefefef: failed: disk full"),
            "{text}"
        );
        assert!(format_content_list(&[]).contains("no content"));
    }

    #[test]
    fn summaries_say_where_and_from_whom() {
        let mut info = content(ManifestId([1; 32]), ContentState::Complete, 4096);
        info.dir = PathBuf::from("/home/u/out");
        let text = format_download_summary(&info);
        assert!(text.contains("complete: \"Episode 1\""), "{text}");
        assert!(text.contains("files in /home/u/out"), "{text}");
        assert!(text.contains("4 chunks from 2 peers"), "{text}");
        info.fetched_chunks = 1;
        assert!(format_download_summary(&info).contains("1 of 4 chunks"));
        info.fetched_chunks = 0;
        assert!(format_download_summary(&info).contains("already here"));
    }

    #[tokio::test]
    async fn status_peers_and_trust_read_as_tables() {
        let (dir, server) = daemon_dir().await;
        let status = within(client_of(&dir).status()).await.unwrap();
        let text = format_status(&status);
        assert!(text.contains("peer id          12D3KooWFake"), "{text}");
        assert!(text.contains("uptime           1h 2m 5s"), "{text}");
        assert!(
            text.contains("1 complete, 2 downloading, 0 failed"),
            "{text}"
        );
        assert!(
            text.contains("listening on     /ip4/127.0.0.1/tcp/4001"),
            "{text}"
        );
        let peers = within(client_of(&dir).peers()).await.unwrap();
        let text = format_peers(&peers);
        assert!(
            text.contains("12D3KooWPeer  2.0 KiB   0 B   /ip4/10.0.0.2/tcp/4001  ok"),
            "{text}"
        );
        let trust = within(client_of(&dir).trust_list()).await.unwrap();
        let text = format_trust(&trust);
        assert!(text.contains("required  Acme"), "{text}");
        drop(server);
    }

    #[test]
    fn a_banned_peer_shows_when_its_ban_ends() {
        let reply = PeersReply {
            peers: vec![crate::contract::PeerInfo {
                peer_id: "12D3KooWLiar".to_owned(),
                addrs: Vec::new(),
                relayed: false,
                bytes_in: 0,
                bytes_out: 0,
                banned: true,
                ban_reason: Some("sent a bad chunk".to_owned()),
                banned_until: Some("2027-01-15T08:10:00Z".to_owned()),
                offences: 1,
            }],
        };
        let text = format_peers(&reply);
        assert!(
            text.contains("banned until 2027-01-15T08:10:00Z: sent a bad chunk"),
            "{text}"
        );
    }

    fn client_of(dir: &tempfile::TempDir) -> ApiClient {
        ApiClient::connect(dir.path()).unwrap()
    }

    #[test]
    fn output_dir_is_made_absolute_and_resolved_but_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/../c");
        let made = prepare_output_dir(&nested).unwrap();
        assert!(made.is_absolute(), "{}", made.display());
        assert_eq!(made, std::fs::canonicalize(dir.path()).unwrap().join("a/c"));
        assert!(
            !dir.path().join("a").exists(),
            "the daemon creates it, not the client"
        );
        // A relative path is taken against the current directory.
        let relative = prepare_output_dir(Path::new(".")).unwrap();
        assert_eq!(relative, std::fs::canonicalize(".").unwrap());
        // A file is not a directory.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let failure = prepare_output_dir(&file).unwrap_err();
        assert_eq!(failure.exit_code(), 2);
        assert!(message(&failure).contains("file"), "{}", message(&failure));
    }

    #[tokio::test]
    async fn no_daemon_files_means_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let (code, text) = fails(&["status"], dir.path()).await;
        assert_eq!(code, 2);
        let d = dir.path().display();
        assert_eq!(
            text,
            format!(
                "no daemon is running for data directory {d} (start one with: licet-node run --data-dir {d})"
            )
        );
    }

    #[tokio::test]
    async fn a_left_over_address_means_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        create_token(dir.path()).unwrap();
        // A port nothing listens on any more.
        let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        write_api_addr(dir.path(), addr).unwrap();
        let (code, text) = fails(&["ls"], dir.path()).await;
        assert_eq!(code, 2);
        assert!(
            text.starts_with("no daemon is running for data directory"),
            "{text}"
        );
        assert!(text.contains(&addr.to_string()), "{text}");
    }

    #[tokio::test]
    async fn the_token_goes_only_to_loopback_and_a_wrong_one_is_explained() {
        let (dir, server) = daemon_dir().await;
        write_api_addr(dir.path(), "192.0.2.1:80".parse().unwrap()).unwrap();
        let (_, text) = fails(&["status"], dir.path()).await;
        assert!(text.contains("not a loopback"), "{text}");

        write_api_addr(dir.path(), server.addr).unwrap();
        std::fs::write(dir.path().join(API_TOKEN_FILE), "00ff").unwrap();
        let (code, text) = fails(&["status"], dir.path()).await;
        assert_eq!(code, 2);
        assert!(text.contains("did not accept the token"), "{text}");
        assert!(server.node.calls().is_empty());
    }

    #[tokio::test]
    async fn check_exits_1_while_content_still_does_not_match() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([7; 32]);
        let mut info = crate::api::server::fake::content(id, ContentState::Failed, 3072);
        info.changed_files = vec!["ep1.mkv".to_owned()];
        info.error = Some(
            "checked: /srv/episode-1/ep1.mkv: 1 of its 4 chunks do not match the manifest"
                .to_owned(),
        );
        *server.node.start_reply.lock().unwrap() = Some(info.clone());
        let (code, text) = fails(&["check", &id.to_hex()], dir.path()).await;
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("1 of its 4 chunks do not match"), "{text}");
        let list = format_content_list(&[info]);
        assert!(list.contains(" changed "), "{list}");
        assert!(
            list.contains(
                "changed on disk, not served: ep1.mkv (re-verify with `licet-node check 0707"
            ),
            "{list}"
        );
    }

    #[tokio::test]
    async fn simple_commands_call_their_routes() {
        let (dir, server) = daemon_dir().await;
        let key = crate::api::server::fake::publisher().to_hex();
        let id = ManifestId([7; 32]).to_hex();
        for args in [
            vec!["status"],
            vec!["status", "--json"],
            vec!["peers"],
            vec!["ls", "--json"],
            vec!["trust", "ls"],
            vec!["trust", "add", &key, "--name", "Acme"],
            vec!["trust", "rm", &key, "--json"],
            vec!["check", &id],
            vec!["rm", &id],
        ] {
            exec(&args, dir.path()).await.unwrap();
        }
        let calls = server.node.calls();
        assert!(
            matches!(
                calls[..],
                [
                    Call::Status,
                    Call::Status,
                    Call::Peers,
                    Call::ContentList,
                    Call::TrustList,
                    Call::TrustAdd(_),
                    Call::TrustRemove(_),
                    Call::ContentCheck(_),
                    Call::ContentGet(_),
                    Call::ContentRemove(_),
                ]
            ),
            "{calls:?}"
        );
        match &calls[5] {
            Call::TrustAdd(request) => {
                assert_eq!(request.name.as_deref(), Some("Acme"));
                assert!(!request.require_catalog);
            }
            other => panic!("{other:?}"),
        }

        server
            .node
            .fail(ApiError::new(ApiErrorKind::NotFound, "no content 0707…"));
        let (code, text) = fails(&["rm", &id], dir.path()).await;
        assert_eq!(code, 2);
        assert!(text.contains("no content"), "{text}");
    }

    #[tokio::test]
    async fn add_sends_the_manifest_and_an_absolute_content_dir() {
        let (dir, server) = daemon_dir().await;
        let work = tempfile::tempdir().unwrap();
        let manifest = work.path().join("ep1.manifest");
        std::fs::write(&manifest, b"signed manifest bytes").unwrap();
        let release = work.path().join("release");
        std::fs::create_dir(&release).unwrap();
        let manifest_arg = manifest.to_str().unwrap();
        let content_arg = format!("{}/../release", release.display());
        exec(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await
        .unwrap();
        match server.node.calls().last() {
            Some(Call::ContentAdd(bytes, content_dir)) => {
                assert_eq!(bytes, b"signed manifest bytes");
                assert_eq!(content_dir, &std::fs::canonicalize(&release).unwrap());
            }
            other => panic!("{other:?}"),
        }

        // The daemon finds the content does not match: a verification failure.
        server.node.fail(ApiError::new(
            ApiErrorKind::BadRequest,
            "release/a.mkv: chunk 3 does not match the manifest",
        ));
        let (code, text) = fails(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(text.contains("chunk 3"), "{text}");

        server.node.fail(ApiError::refused(
            ApiErrorKind::Refused,
            "cannot seed manifest 0101…",
            refusal(),
        ));
        let (code, text) = fails(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(
            text.contains("publisher is not trusted")
                && text.contains("not in this node's trust store"),
            "{text}"
        );

        server
            .node
            .fail(ApiError::new(ApiErrorKind::Conflict, "already added"));
        let (code, _) = fails(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await;
        assert_eq!(code, 2);
    }

    #[tokio::test]
    async fn catalog_publish_sends_the_catalog_and_its_head() {
        let (dir, server) = daemon_dir().await;
        let work = tempfile::tempdir().unwrap();
        let catalog = work.path().join("acme.catalog");
        std::fs::write(&catalog, b"signed catalog bytes").unwrap();
        std::fs::write(work.path().join("acme.catalog.head"), b"head bytes").unwrap();
        let catalog_arg = catalog.to_str().unwrap();
        exec(&["catalog", "publish", catalog_arg], dir.path())
            .await
            .unwrap();
        match server.node.calls().last() {
            Some(Call::CatalogPublish(catalog, head)) => {
                assert_eq!(catalog, b"signed catalog bytes");
                assert_eq!(head, b"head bytes", "the head is read from CATALOG.head");
            }
            other => panic!("{other:?}"),
        }
        // --head names another file.
        let other = work.path().join("other.head");
        std::fs::write(&other, b"other head").unwrap();
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
            Some(Call::CatalogPublish(_, head)) if head == b"other head"
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
            text.contains("CATALOG") && text.contains("EXPIRES"),
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

    #[tokio::test]
    async fn add_checks_its_files_before_the_daemon_sees_them() {
        let (dir, server) = daemon_dir().await;
        let work = tempfile::tempdir().unwrap();
        let huge = work.path().join("huge.manifest");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(SignedKind::Manifest.max_envelope_bytes() as u64 + 1)
            .unwrap();
        let content_dir = work.path().to_str().unwrap();
        let (code, text) = fails(
            &["add", huge.to_str().unwrap(), "--content", content_dir],
            dir.path(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(text.contains("larger than any signed manifest"));

        let missing = work.path().join("missing.manifest");
        let (code, text) = fails(
            &["add", missing.to_str().unwrap(), "--content", content_dir],
            dir.path(),
        )
        .await;
        assert_eq!(code, 2);
        assert!(text.contains("missing.manifest"), "{text}");

        let (code, text) = fails(
            &[
                "add",
                huge.to_str().unwrap(),
                "--content",
                "/no/such/dir/anywhere",
            ],
            dir.path(),
        )
        .await;
        assert_eq!(code, 2);
        assert!(text.contains("/no/such/dir/anywhere"), "{text}");
        assert!(server.node.calls().is_empty());
    }

    #[tokio::test]
    async fn get_watches_until_complete() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        {
            let mut replies = server.node.content_replies.lock().unwrap();
            for have in [1024, 2048, 3072] {
                replies.push_back(content(id, ContentState::Downloading, have));
            }
            replies.push_back(content(id, ContentState::Complete, 4096));
        }
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("new/dir");
        exec(
            &[
                "get",
                &format!("licet:{id}"),
                "-o",
                target.to_str().unwrap(),
            ],
            dir.path(),
        )
        .await
        .unwrap();
        assert!(
            !target.exists(),
            "the daemon creates the output directory, not the client"
        );
        let calls = server.node.calls();
        match &calls[0] {
            Call::DownloadStart(request) => {
                assert_eq!(request.link, format!("licet:{id}"));
                assert_eq!(
                    request.output_dir,
                    std::fs::canonicalize(out.path()).unwrap().join("new/dir")
                );
                assert!(!request.replace);
            }
            other => panic!("{other:?}"),
        }
        let polls = calls
            .iter()
            .filter(|c| matches!(c, Call::ContentGet(i) if *i == id))
            .count();
        assert_eq!(polls, 4, "{calls:?}");
    }

    #[tokio::test]
    async fn get_refused_exits_1_with_the_reason() {
        let (dir, server) = daemon_dir().await;
        let link = format!("licet:{}", ManifestId([2; 32]));
        let out = tempfile::tempdir().unwrap();
        let out = out.path().to_str().unwrap();
        for kind in [ApiErrorKind::Refused, ApiErrorKind::Unavailable] {
            server
                .node
                .fail(ApiError::refused(kind, "cannot fetch it", refusal()));
            let (code, text) = fails(&["get", &link, "-o", out], dir.path()).await;
            assert_eq!(code, 1, "{kind:?}");
            assert_eq!(
                text,
                "cannot fetch it: refused: publisher is not trusted: publisher 3b6a… is not in \
                 this node's trust store"
            );
        }
        server
            .node
            .fail(ApiError::new(ApiErrorKind::Unavailable, "no peer has it"));
        let (code, _) = fails(&["get", &link, "-o", out], dir.path()).await;
        assert_eq!(code, 2);
        let (code, text) = fails(&["get", "licet:nothex", "-o", out], dir.path()).await;
        assert_eq!(code, 2);
        assert!(text.contains("nothex"), "{text}");
    }

    #[tokio::test]
    async fn get_reports_a_failed_download() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        let out = tempfile::tempdir().unwrap();
        let out = out.path().to_str().unwrap();
        let link = format!("licet:{id}");

        let mut failed = content(id, ContentState::Failed, 1024);
        failed.error = Some("no space left on device".to_owned());
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(failed.clone());
        let (code, text) = fails(&["get", &link, "-o", out], dir.path()).await;
        assert_eq!(code, 2);
        assert!(text.contains("no space left"), "{text}");

        failed.refused = Some(Refusal {
            reason: RefusalReason::Revoked,
            detail: "catalog 7 revokes it".to_owned(),
        });
        *server.node.content_replies.lock().unwrap() = [failed].into();
        let (code, text) = fails(&["get", &link, "-o", out], dir.path()).await;
        assert_eq!(code, 1);
        assert!(
            text.contains("manifest is revoked by the publisher: catalog 7 revokes it"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn get_gives_up_watching_when_nothing_moves() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(content(id, ContentState::Downloading, 1024));
        let out = tempfile::tempdir().unwrap();
        let watch = Watch {
            poll_interval: Duration::from_millis(20),
            stall_limit: Duration::from_millis(300),
            progress: false,
        };
        let started = Instant::now();
        let failure = exec_with(
            &[
                "get",
                &format!("licet:{id}"),
                "-o",
                out.path().to_str().unwrap(),
            ],
            dir.path(),
            &watch,
        )
        .await
        .unwrap_err();
        assert_eq!(failure.exit_code(), 2);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let text = message(&failure);
        assert!(text.starts_with("no progress on \"Episode 1\""), "{text}");
        assert!(text.contains("1.0 KiB of 4.0 KiB"), "{text}");
    }

    #[tokio::test]
    async fn get_stops_when_the_daemon_goes_away() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(content(id, ContentState::Downloading, 1024));
        let out = tempfile::tempdir().unwrap();
        let out = out.path().to_str().unwrap().to_owned();
        let data_dir = dir.path().to_owned();
        let watching = tokio::spawn(async move {
            let cli =
                TestCli::try_parse_from(["licet-node", "get", &format!("licet:{id}"), "-o", &out])
                    .unwrap();
            execute(cli.command, &data_dir, &quick_watch()).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.stop().await.unwrap();
        let failure = within(watching).await.unwrap().unwrap_err();
        assert_eq!(failure.exit_code(), 2);
        assert!(
            message(&failure).starts_with("lost track of the download"),
            "{}",
            message(&failure)
        );
    }
}
