//! `licet-manifest`: what a rights holder runs to make keys, sign manifests, delegations and
//! catalogs, and verify them.
//!
//! Exit codes: 0 success; 1 a verification or policy failure (a file is not the signed object
//! expected, the object is invalid or refused, a delegation does not allow a signature, or the
//! content does not match); 2 a usage or I/O error. Errors go to stderr as
//! `licet-manifest: error: …` with their cause chain.

mod catalog;
mod create;
mod deliveries;
mod encrypt;
mod files;
mod inspect;
mod keys;
mod licence;
mod licences_issued;
// The same completions and man pages as licet-node's: one file for both tools.
#[path = "../../node/src/cli/shell_docs.rs"]
mod shell_docs;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use licet_proto::Timestamp;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Verification or policy failure: exit 1.
    Invalid(anyhow::Error),
    /// Usage or I/O error: exit 2.
    Usage(anyhow::Error),
}

impl CliError {
    /// A verification or policy failure.
    pub fn invalid(e: impl Into<anyhow::Error>) -> CliError {
        CliError::Invalid(e.into())
    }

    /// A usage error.
    pub fn usage(e: impl Into<anyhow::Error>) -> CliError {
        CliError::Usage(e.into())
    }

    /// An I/O error (same exit code as usage).
    pub fn io(e: impl Into<anyhow::Error>) -> CliError {
        CliError::Usage(e.into())
    }
}

/// Result of a subcommand.
pub type CliResult = Result<(), CliError>;

#[derive(Parser)]
#[command(
    name = "licet-manifest",
    version,
    about = "Make keys, sign manifests, delegations and catalogs, and verify them",
    long_about = "The rights holder's tool for Licet, a peer-to-peer network for licensed content.\n\
                  Keys are ed25519 PKCS#8 PEM files (the same as `openssl genpkey -algorithm ed25519`).\n\
                  Times are RFC 3339 (2027-01-15T08:00:00Z) or relative to now (+72h, -1d, +1w2d, now).\n\n\
                  Exit codes: 0 ok, 1 verification or policy failure (also a signature the\n\
                  delegation does not allow), 2 usage or I/O error.",
    after_help = "Example:\n  licet-manifest keygen -o publisher.pem\n  licet-manifest create ./release --key publisher.pem --title \"Episode 1\" \\\n      --not-after +30d -o ep1.manifest\n  licet-manifest verify ep1.manifest --content ./release --publisher \\\n      3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Keygen(keys::KeygenArgs),
    Pubkey(keys::PubkeyArgs),
    Create(create::CreateArgs),
    Verify(verify::VerifyArgs),
    Inspect(inspect::InspectArgs),
    Delegate(keys::DelegateArgs),
    #[command(
        subcommand,
        after_help = "Example:\n  licet-manifest catalog new --key publisher.pem -o publisher.draft.json\n  licet-manifest catalog add publisher.draft.json ep1.manifest\n  licet-manifest catalog sign publisher.draft.json --key publisher.pem \\\n      --expires +7d -o publisher.catalog"
    )]
    Catalog(catalog::CatalogCommand),
    #[command(
        subcommand,
        after_help = "Example:\n  licet-manifest licence issue film.manifest --key publisher.pem \\\n      --content-key film.manifest.key -o alice.licence \\\n      --to 5d1e0c4f2b7a99e3c0d6a1f8e2b4c7d9a0e5f3b1c8d2e6f4a7b9c0d1e2f3a4a0"
    )]
    Licence(licence::LicenceCommand),
    /// Merge partners' signed delivery reports into per-day distinct-peer counts.
    #[command(
        subcommand,
        after_help = "Example:\n  licet-manifest deliveries merge --catalog publisher.catalog reports/ \\\n      --licences sold/"
    )]
    Deliveries(deliveries::DeliveriesCommand),
    /// Print a shell completion script for licet-manifest.
    #[command(
        after_help = "Example:\n  licet-manifest completions bash \\\n      > ~/.local/share/bash-completion/completions/licet-manifest\n  \
                      licet-manifest completions zsh > ~/.zfunc/_licet-manifest\n  \
                      licet-manifest completions fish \\\n      > ~/.config/fish/completions/licet-manifest.fish\n\n\
                      System-wide: bash in /usr/share/bash-completion/completions/licet-manifest,\n\
                      zsh in /usr/local/share/zsh/site-functions/_licet-manifest (a folder in\n\
                      $fpath), fish in /usr/share/fish/vendor_completions.d/licet-manifest.fish."
    )]
    Completions(shell_docs::CompletionsArgs),
    /// Write the man pages of licet-manifest and of each subcommand into a directory.
    #[command(
        after_help = "Example:\n  licet-manifest man --out ~/.local/share/man/man1\n  \
                      sudo licet-manifest man --out /usr/local/share/man/man1 && sudo mandb -q\n\n\
                      Writes licet-manifest.1, licet-manifest-create.1,\n\
                      licet-manifest-catalog-sign.1 and so on, one page per command, and prints\n\
                      the path of each; then `man licet-manifest-create`."
    )]
    Man(shell_docs::ManArgs),
}

/// Parses a time flag (RFC 3339 or relative to now).
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text, Timestamp::now()).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Keygen(args) => keys::keygen(args),
        Command::Pubkey(args) => keys::pubkey(args),
        Command::Create(args) => create::create(args),
        Command::Verify(args) => verify::verify(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Delegate(args) => keys::delegate(args),
        Command::Catalog(command) => catalog::run(command),
        Command::Licence(command) => licence::run(command),
        Command::Deliveries(command) => deliveries::run(command),
        Command::Completions(args) => {
            shell_docs::write_completions(Cli::command(), args.shell, &mut std::io::stdout().lock())
                .map_err(CliError::io)
        }
        Command::Man(args) => {
            let pages =
                shell_docs::write_man_pages(Cli::command(), &args.out).map_err(CliError::io)?;
            for page in pages {
                println!("{}", page.display());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    licet_proto::text::end_quietly_when_stdout_closes();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Invalid(e)) => {
            eprintln!("licet-manifest: error: {e:#}");
            ExitCode::from(1)
        }
        Err(CliError::Usage(e)) => {
            eprintln!("licet-manifest: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
