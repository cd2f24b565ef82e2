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
    after_help = "Example:\n  licet-node run --data-dir ~/.licet &\n  licet-node trust add 3b6a27bc… --name \"Example Films\"\n  licet-node get licet:9f2c…e1 -o ~/Videos"
)]
struct Cli {
    /// The node's data directory (database, identity, API token, config.toml).
    #[arg(long, global = true, env = "LICET_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (logs to stderr; RUST_LOG sets the level).
    #[command(
        after_help = "Example:\n  licet-node run --data-dir ./node-a --listen /ip4/0.0.0.0/tcp/4610\n  licet-node run --data-dir ./node-b --bootstrap /ip4/192.0.2.1/tcp/4610/p2p/12D3KooW… --region FR"
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
