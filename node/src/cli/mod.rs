//! The client subcommands (`trust`, `add`, `get`, `ls`, `status`, `peers`, `check`, `rm` (also
//! `cancel`), `pause`, `resume`, `catalog`, `limits`, `ui`): each is one or a few calls
//! (`--watch`: one a second, `live.rs`), through the typed client [`crate::api::client`], to the
//! control API of the daemon that `licet-node run` started for the same data directory.
//!
//! [`shell_docs`] is the one local part: shell completion scripts and man pages, written from the
//! command tree without a daemon.
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
//!   progress for [`STALL_LIMIT`] (the daemon goes on with it). `ls --watch` and
//!   `status --watch` follow until Ctrl-C by design, with one bounded call per second.
//! - Text from the daemon that came from publishers or peers (titles, names, errors) is shown with
//!   control, bidirectional and invisible characters escaped (`\u{202e}`), so it cannot drive or
//!   disguise the terminal.

mod catalog;
mod content;
mod dashboard;
mod licence;
mod limits;
mod live;
mod output;
mod progress;
pub mod shell_docs;
mod status;
mod steer;
mod trust;

use std::{
    fmt::Write as _,
    io::Read as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::anyhow;
use clap::Subcommand;
use licet_proto::signed::SignedKind;

pub use self::{
    catalog::CatalogCommand, content::STALL_LIMIT, licence::LicenceCommand, limits::LimitsArgs,
    trust::TrustCommand,
};
use self::{
    content::Watch,
    output::{clean, human_duration},
};
use crate::{
    api::client::{ApiClient, ClientError},
    contract::{ApiError, ApiErrorKind},
};

/// The subcommands that talk to a running daemon (`licet-node run`) through its control API.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Manage the publishers this node trusts: it serves and fetches only their content.
    #[command(
        subcommand,
        after_help = "Example:\n  licet-node trust add --name Acme \\\n      3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n  licet-node trust ls"
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
        The publisher must be trusted first (`licet-node trust add`). `get` follows the\n\
        download until it is complete (--wait says so); --detach returns as soon as it has\n\
        started. Ctrl-C stops following, not the download: the daemon goes on, `get` says how\n\
        to follow, pause or cancel it, and exits 0. A link may\n\
        carry peer hints: licet:<id>?peer=/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW…\n\n\
        Files are written only beneath DIR, never through a link inside it. A file already in\n\
        DIR that is identical to the release's is kept and not fetched again; any other file,\n\
        folder or link at one of its paths refuses the download (exit 2) unless --replace.\n\n\
        While a file downloads it is NAME.part beside where it will be; once it is complete and\n\
        verified it is renamed to NAME, so a file at its final name is always whole. A NAME.part\n\
        left by an earlier download (`rm` keeps files) is written over.\n\n\
        A paid release is fetched and seeded as ciphertext, in the node's data directory;\n\
        once it is complete, the plaintext is written into DIR with a licence this node\n\
        holds (`licet-node licence add`). Without one that opens it here now, `get` says\n\
        why and exits 1; the ciphertext stays seeded. --json then prints what was written."
    )]
    Get {
        /// The share link (`licet:<id>[?peer=<multiaddr>]`) or a bare manifest id.
        link: String,
        /// The directory to put the files in (created if missing; not the node's data
        /// directory, nor one that holds it).
        #[arg(short = 'o', long, value_name = "DIR", default_value = ".")]
        output: PathBuf,
        /// Overwrite an existing file at one of the manifest's paths that is not the
        /// manifest's file (never a link): it stays until the download's file is complete, then
        /// that takes its place. Without it such a file refuses the download; a file identical
        /// to the manifest's is kept and not fetched again either way.
        #[arg(long)]
        replace: bool,
        /// Return once the daemon has started the download, without following it.
        #[arg(long)]
        detach: bool,
        /// Follow the download until it is complete, failed or stalled (the default; for a
        /// script that states it).
        #[arg(long, conflicts_with = "detach")]
        wait: bool,
        /// Print the final content state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the content this node holds or is fetching.
    #[command(
        after_help = "Example:\n  licet-node ls\n  licet-node ls --json   # full ids and links\n  licet-node ls --watch  # follow live; Ctrl-C stops\n\n\
        --watch redraws the list every second on a terminal; into a pipe or a file it\n\
        prints the list once, then a line per change (\"HH:MM:SS  <item>\", or\n\
        \"<id>: gone\"). Ctrl-C ends it with exit 0."
    )]
    Ls {
        /// Print the daemon's reply as JSON.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Follow live: redraw every second on a terminal, else a line per change.
        #[arg(long)]
        watch: bool,
    },
    /// Show the daemon's peer id, addresses, peers and content counts.
    #[command(
        after_help = "Example:\n  licet-node status\n  licet-node status --watch   # follow live; Ctrl-C stops\n\n\
        Give one of the listening addresses to other nodes' --bootstrap.\n\n\
        --watch redraws the status every second on a terminal; into a pipe or a file it\n\
        prints it once, then a line per changed field (\"HH:MM:SS  <line>\"; the uptime\n\
        is not told). Ctrl-C ends it with exit 0."
    )]
    Status {
        /// Print the daemon's reply as JSON.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Follow live: redraw every second on a terminal, else a line per change.
        #[arg(long)]
        watch: bool,
    },
    /// List connected and banned peers (with when each ban ends).
    #[command(
        after_help = "Example:\n  licet-node peers\n  licet-node peers --json   # banned_until, offences\n\n\
        ADDRESS is the remote address of the connection to the peer (\"+N\": N more\n\
        connections; \"(relayed)\": only through a relay), or \"not connected\" for a banned\n\
        peer that is gone. A peer that sent a bad chunk or broke the protocol is banned for\n\
        10 minutes, each repeat twice as long up to a day; when its ban ends it may connect\n\
        again."
    )]
    Peers {
        /// Print the daemon's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop serving and fetching content and forget it (`cancel` is the same command); its
    /// files stay unless --delete.
    #[command(
        visible_alias = "cancel",
        after_help = "Example:\n  licet-node rm 8cb9717a   # the id as `ls` shows it, or any unique start of it\n  licet-node rm licet:8cb9717a657dec36…   # or the content's link\n  licet-node cancel 8cb9717a --delete     # a download, and the files it wrote\n\n\
        --delete deletes only what the download wrote: each of the release's paths\n\
        and its .part name, if it is a regular file beneath the output folder (never\n\
        through a link), then the release's folders beneath it left empty; the output\n\
        folder itself stays. It is refused (exit 2) for content seeded with `add`:\n\
        those are the publisher's originals."
    )]
    Rm {
        /// The content: its id as `ls` shows it (any unique start of it), the full id, or its
        /// `licet:` link.
        id: String,
        /// Also delete the files the download wrote (not for content seeded with `add`).
        #[arg(long)]
        delete: bool,
        /// Print the daemon's reply as JSON: `removed`, `dir`, `deleted_files`,
        /// `removed_folders`, `kept`.
        #[arg(long)]
        json: bool,
    },
    /// Pause a download: nothing more is fetched until `resume`, also across a restart; the
    /// chunks held stay and are still served.
    #[command(
        after_help = "Example:\n  licet-node pause 8cb9717a   # the id as `ls` shows it, or a unique start\n  licet-node resume 8cb9717a\n\n\
        Only a download being fetched can be paused: content that is complete, failed or\n\
        seeded with `add` is refused (exit 2). `ls` and `status` show it as paused."
    )]
    Pause {
        /// The content: its id as `ls` shows it (any unique start of it), the full id, or its
        /// `licet:` link.
        id: String,
        /// Print the content state after the pause as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused download from the chunks it holds.
    #[command(
        after_help = "Example:\n  licet-node resume 8cb9717a   # the id as `ls` shows it, or a unique start\n\n\
        Only a paused download can be resumed; anything else is refused (exit 2).\n\
        `get` of a paused download resumes it too, and follows it."
    )]
    Resume {
        /// The content: its id as `ls` shows it (any unique start of it), the full id, or its
        /// `licet:` link.
        id: String,
        /// Print the content state after the resume as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-verify content's files on disk and serve again every chunk that matches its manifest.
    #[command(
        after_help = "Example:\n  licet-node check 8cb9717a   # the id as `ls` shows it, or a unique start\n\n\
        A file that changed on disk while it was served (other bytes, even with the same size\n\
        and modification time) is no longer served, and `ls` shows it as changed. Put the\n\
        right bytes back, then check: the daemon hashes every file, and the content is complete\n\
        again if all chunks match. Exits 1 if some still do not."
    )]
    Check {
        /// The content: its id as `ls` shows it (any unique start of it), the full id, or its
        /// `licet:` link.
        id: String,
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
    /// Licences for paid releases: this node's key, and the licences it holds.
    #[command(
        subcommand,
        after_help = "Example:\n  licet-node licence key\n  licet-node licence add episode-1.licence\n  licet-node licence ls"
    )]
    Licence(LicenceCommand),
    /// Show the bandwidth limits in force, or change them while the daemon runs.
    #[command(
        after_help = "Example:\n  licet-node limits\n  licet-node limits set --upload 8MB/s --download 0\n  licet-node limits reset   # back to the configured limits\n\n\
        Limits are configured in config.toml's [limits] (with an optional schedule), by\n\
        LICET_UPLOAD_LIMIT and the like, or by `run --upload-limit` and the like. Changes made\n\
        with `limits set` last until `limits reset` or a restart."
    )]
    Limits(LimitsArgs),
    /// Print the address of the daemon's web dashboard (with --open, open it in a browser).
    #[command(
        after_help = "Example:\n  licet-node ui          # prints http://127.0.0.1:PORT/ui/#token=…\n  licet-node ui --open   # and opens it with xdg-open\n\n\
        The address carries the API token after '#': the browser keeps it to itself (a\n\
        fragment is never sent) and the page moves it to the tab's session storage. Anyone\n\
        with the address can steer the node until the daemon restarts; on a machine shared\n\
        with other users, paste it rather than use --open, which puts it on xdg-open's\n\
        command line."
    )]
    Ui {
        /// Also open the address in the desktop's browser (xdg-open).
        #[arg(long)]
        open: bool,
        /// Print the address as JSON: `{"url": "…"}`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one client subcommand against the daemon of `data_dir`; prints the result on stdout and
/// errors on stderr, and returns the exit code (0 ok, 1 refused or invalid, 2 anything else).
pub async fn run(command: ClientCommand, data_dir: &Path) -> ExitCode {
    let watch = Watch {
        poll_interval: content::POLL_INTERVAL,
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

async fn execute(command: ClientCommand, data_dir: &Path, watch: &Watch) -> Result<(), Failure> {
    match command {
        ClientCommand::Trust(command) => trust::run(command, data_dir).await,
        ClientCommand::Add {
            manifest,
            content,
            json,
        } => content::add(data_dir, &manifest, &content, json).await,
        ClientCommand::Get {
            link,
            output,
            replace,
            detach,
            wait: _,
            json,
        } => {
            let follow = if detach {
                content::Follow::Detach
            } else {
                content::Follow::UntilDone
            };
            content::get(data_dir, &link, &output, replace, follow, json, watch).await
        }
        ClientCommand::Ls { json, watch } => content::list(data_dir, json, watch).await,
        ClientCommand::Status { json, watch } => status::status(data_dir, json, watch).await,
        ClientCommand::Peers { json } => status::peers(data_dir, json).await,
        ClientCommand::Check { id, json } => content::check(data_dir, &id, json).await,
        ClientCommand::Rm { id, delete, json } => steer::remove(data_dir, &id, delete, json).await,
        ClientCommand::Pause { id, json } => steer::pause(data_dir, &id, json).await,
        ClientCommand::Resume { id, json } => steer::resume(data_dir, &id, json).await,
        ClientCommand::Catalog(command) => catalog::run(command, data_dir).await,
        ClientCommand::Licence(command) => licence::run(command, data_dir).await,
        ClientCommand::Limits(args) => limits::run(args, data_dir).await,
        ClientCommand::Ui { open, json } => dashboard::show(data_dir, open, json).await,
    }
}

/// Reads a catalog file (size-checked against the catalog file limit); a file that is not one
/// fails here, naming the file and what it is instead (a catalog of format 1 names its format),
/// before the daemon sees it (exit 1). The daemon verifies it.
fn read_catalog_file(path: &Path) -> Result<Vec<u8>, Failure> {
    let limit = licet_proto::catalog_parts::MAX_CATALOG_FILE_BYTES;
    let bytes = read_limited(path, limit as u64).map_err(|e| match e {
        ReadLimitedError::TooLarge { len } => Failure::Invalid(anyhow!(
            "{} is {len} bytes, larger than any Licet catalog ({limit} bytes at most)",
            path.display()
        )),
        ReadLimitedError::Io(e) => Failure::Other(
            anyhow::Error::new(e).context(format!("cannot read the catalog {}", path.display())),
        ),
    })?;
    if let Err(e) = licet_proto::catalog_parts::CatalogFile::decode(&bytes) {
        let what = licet_proto::catalog_parts::CatalogFile::why_not(&bytes, e);
        return Err(Failure::Invalid(anyhow!(
            "{} is not a Licet catalog ({what})",
            clean(&path.display().to_string())
        )));
    }
    Ok(bytes)
}

/// Reads a signed file of `kind` (size-checked against that kind's limit); a file that is not
/// one fails here, naming the file and what it is instead, before the daemon sees it (exit 1).
fn read_signed_file(path: &Path, kind: SignedKind) -> Result<Vec<u8>, Failure> {
    let limit = kind.max_envelope_bytes();
    let what = kind.noun();
    let bytes = read_limited(path, limit as u64).map_err(|e| match e {
        ReadLimitedError::TooLarge { len } => Failure::Invalid(anyhow!(
            "{} is {len} bytes, larger than any Licet {what} ({limit} bytes at most)",
            path.display()
        )),
        ReadLimitedError::Io(e) => Failure::Other(
            anyhow::Error::new(e).context(format!("cannot read the {what} {}", path.display())),
        ),
    })?;
    licet_proto::signed::Signed::identify(&bytes, Some(kind)).map_err(|e| {
        Failure::Invalid(anyhow!(
            "{} is not a Licet {what} ({e})",
            clean(&path.display().to_string())
        ))
    })?;
    Ok(bytes)
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

/// The daemon's message, with the refusal's reason and detail if the message lacks them (a
/// message that already holds the detail has said why, and is shown as it is).
fn describe_api_error(error: &ApiError) -> String {
    let mut text = error.message.clone();
    if let Some(refusal) = &error.refusal
        && (refusal.detail.is_empty() || !text.contains(&refusal.detail))
    {
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

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::{test_support::*, *};
    use crate::contract::files::API_TOKEN_FILE;

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
            seen, 21,
            "trust add/ls/rm, add, get, ls, status, peers, check, rm, pause, resume, catalog \
             publish/ls, licence key/add/ls/rm, limits set/reset, ui"
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
        // `rm` takes a start of an id, an id or a link: what is none of them is refused when it
        // runs (`content::tests::content_is_named_by_link_full_id_or_a_unique_start`).
        assert!(TestCli::try_parse_from(["licet-node", "rm"]).is_err());
        assert!(TestCli::try_parse_from(["licet-node", "trust", "rm", "zz"]).is_err());
        assert!(TestCli::try_parse_from(["licet-node", "add", "m.manifest"]).is_err());
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
    async fn simple_commands_call_their_routes() {
        let (dir, server) = daemon_dir().await;
        let key = crate::api::server::fake::publisher().to_hex();
        let id = licet_proto::ManifestId([7; 32]).to_hex();
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
                    Call::ContentRemove(_, false),
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
}
