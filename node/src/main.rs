//! `licet-node`: parses the command line and hands it to the daemon (`run`, in
//! `licet_node::daemon::run`) or to the client subcommands (`licet_node::cli`).
//!
//! Exit codes: 0 ok; 1 refused by the trust policy or a verification failure; 2 usage, I/O,
//! or no daemon running. Errors go to stderr as `licet-node: error: …`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{CommandFactory as _, Parser, Subcommand};
use licet_node::{
    cli::{
        self, ClientCommand,
        shell_docs::{self, CompletionsArgs, ManArgs},
    },
    daemon::{
        config,
        run::{self, RunArgs, RuntimeThreads},
    },
};

/// How long the runtime may take, once the daemon has stopped, for work still on its threads
/// (a file being hashed for a request that was cut).
const RUNTIME_STOP_LIMIT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "licet-node",
    version,
    about = "A Licet node: fetch and serve licensed content over a peer-to-peer swarm",
    long_about = "A Licet node joins a Kademlia swarm and exchanges verified chunks of content, only\n\
                  while a publisher it trusts has signed it, its licence window is open, and it is not\n\
                  revoked. `licet-node run` is the daemon; the other subcommands talk to it.\n\n\
                  Exit codes: 0 ok, 1 refused or verification failure, 2 usage, I/O or no daemon.",
    after_help = "Example:\n  licet-node run &\n  licet-node status\n  licet-node get licet:9f2c41d0… -o ~/Videos\n\n\
                  The daemon and every client command find the data directory the same way:\n\
                  --data-dir, else LICET_DATA_DIR, else $XDG_DATA_HOME/licet (~/.local/share/licet)."
)]
struct Cli {
    /// The node's data directory (database, identity, API token, config.toml), the same for the
    /// daemon and its clients [default: $XDG_DATA_HOME/licet, ~/.local/share/licet].
    #[arg(long, global = true, env = "LICET_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (logs to stderr; RUST_LOG or `log` in config.toml sets the
    /// level).
    #[command(
        after_help = "Example:\n  licet-node run --region FR\n  licet-node run --data-dir ./node-b --listen /ip4/0.0.0.0/tcp/4611 \\\n      --bootstrap 192.0.2.1:4610 --region FR\n\n\
                      The data directory is --data-dir, else LICET_DATA_DIR, else\n\
                      $XDG_DATA_HOME/licet (~/.local/share/licet); clients find the daemon\n\
                      through it, so give them the same one. Settings: config.toml in the\n\
                      data directory, then LICET_* variables, then these flags.\n\n\
                      SIGHUP (kill -HUP PID) reloads config.toml: limits, log and [[trust]]\n\
                      change at once, the log names each change; other settings need a\n\
                      restart. A file that does not load changes nothing.\n\n\
                      Started by systemd with NOTIFY_SOCKET set (Type=notify), it sends READY=1\n\
                      once its control API answers and STOPPING=1 when it stops; the README's\n\
                      \"Run as a service\" installs the unit that does so."
    )]
    Run(RunArgs),
    /// Print the control API's OpenAPI 3.1 description (JSON); no daemon needed.
    #[command(
        name = "api-doc",
        after_help = "Example:\n  licet-node api-doc | jq '.paths | keys'   # every route\n\n\
                      A running daemon serves the same description at GET /v1/openapi.json\n\
                      (no token needed); the other /v1/ routes need the token in\n\
                      DATA_DIR/api-token."
    )]
    ApiDoc,
    #[command(flatten)]
    Client(ClientCommand),
    /// Print a shell completion script for licet-node (no daemon needed).
    #[command(
        after_help = "Example:\n  licet-node completions bash \\\n      > ~/.local/share/bash-completion/completions/licet-node\n  \
                      licet-node completions zsh > ~/.zfunc/_licet-node\n  \
                      licet-node completions fish > ~/.config/fish/completions/licet-node.fish\n\n\
                      System-wide: bash in /usr/share/bash-completion/completions/licet-node, zsh in\n\
                      /usr/local/share/zsh/site-functions/_licet-node (a folder in $fpath), fish in\n\
                      /usr/share/fish/vendor_completions.d/licet-node.fish."
    )]
    Completions(CompletionsArgs),
    /// Write the man pages of licet-node and of each subcommand into a directory (no daemon
    /// needed).
    #[command(
        after_help = "Example:\n  licet-node man --out ~/.local/share/man/man1\n  \
                      sudo licet-node man --out /usr/local/share/man/man1 && sudo mandb -q\n\n\
                      Writes licet-node.1, licet-node-run.1, licet-node-trust-add.1 and so on, one\n\
                      page per command, and prints the path of each; then `man licet-node-get`."
    )]
    Man(ManArgs),
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
    match cli.command {
        // The local commands need no data directory and no runtime.
        Command::Completions(args) => local_result(shell_docs::write_completions(
            Cli::command(),
            args.shell,
            &mut std::io::stdout().lock(),
        )),
        Command::ApiDoc => {
            // The description is built from the code alone.
            println!("{}", licet_node::api::openapi::description_json());
            ExitCode::SUCCESS
        }
        Command::Man(args) => local_result(
            shell_docs::write_man_pages(Cli::command(), &args.out).map(|pages| {
                for page in pages {
                    println!("{}", page.display());
                }
            }),
        ),
        Command::Run(args) => {
            with_data_dir(cli.data_dir, args.runtime_threads(), |runtime, data_dir| {
                let log_format = args.log_format();
                match runtime.block_on(run::run(data_dir, args)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        log_format.report_fatal(&e);
                        ExitCode::from(2)
                    }
                }
            })
        }
        Command::Client(command) => with_data_dir(
            cli.data_dir,
            RuntimeThreads::default(),
            |runtime, data_dir| runtime.block_on(cli::run(command, &data_dir)),
        ),
    }
}

/// Finds the data directory and starts the async runtime with `threads`, then runs `work` in
/// it; exits 2 if either fails.
fn with_data_dir(
    data_dir: Option<PathBuf>,
    threads: RuntimeThreads,
    work: impl FnOnce(&tokio::runtime::Runtime, PathBuf) -> ExitCode,
) -> ExitCode {
    let data_dir = match config::data_dir(data_dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("licet-node: error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match threads.builder().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("licet-node: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = work(&runtime, data_dir);
    runtime.shutdown_timeout(RUNTIME_STOP_LIMIT);
    code
}

/// The exit code of a local command: 0, or 2 with the error on stderr.
fn local_result(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("licet-node: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
