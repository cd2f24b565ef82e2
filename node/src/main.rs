//! `licet-node`: parses the command line and hands it to the daemon (`run`, in
//! `licet_node::daemon::run`) or to the client subcommands (`licet_node::cli`).
//!
//! Exit codes: 0 ok; 1 refused by the trust policy or a verification failure; 2 usage, I/O,
//! or no daemon running. Errors go to stderr as `licet-node: error: …`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use licet_node::{
    cli::{self, ClientCommand},
    daemon::{
        config,
        run::{self, RunArgs},
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
                      restart. A file that does not load changes nothing."
    )]
    Run(RunArgs),
    #[command(flatten)]
    Client(ClientCommand),
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
    let data_dir = match config::data_dir(cli.data_dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("licet-node: error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("licet-node: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match cli.command {
        Command::Run(args) => match runtime.block_on(run::run(data_dir, args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("licet-node: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Client(command) => runtime.block_on(cli::run(command, &data_dir)),
    };
    runtime.shutdown_timeout(RUNTIME_STOP_LIMIT);
    code
}
