//! `licet-node`: the daemon (`run`) and the client subcommands that talk to it.
//!
//! Exit codes: 0 ok; 1 refused by the trust policy or a verification failure; 2 usage, I/O,
//! or no daemon running. Errors go to stderr as `licet-node: error: …`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use licet_node::net::reachability::AddressRange;
use licet_node::{
    api::server,
    cli::{self, ClientCommand},
    daemon::{
        config::{self, Config, Overrides},
        limits,
    },
    node::{Node, NodeConfig, data_dir},
};
use licet_proto::manifest::Region;
use tracing::{info, warn};

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

#[derive(Args)]
struct RunArgs {
    /// Address to listen on (repeat for several); TCP and QUIC multiaddrs.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// A peer to join the swarm through, with /p2p/<peer id> (repeat for several).
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// This node's region (ISO 3166 alpha-2). A release whose licence lists regions is fetched
    /// only by a node in a listed region (none set: refused); the region is stated to the peers
    /// it fetches from.
    #[arg(long, value_name = "CC")]
    region: Option<Region>,
    /// Where the control API listens (loopback only; default a free port).
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<SocketAddr>,
    /// How often to look up each trusted publisher's newest catalog in the DHT and at peers,
    /// in seconds (default 60; new catalogs also arrive at once by gossip).
    #[arg(long, value_name = "SECS")]
    catalog_poll: Option<u64>,
    /// An address range that counts as public, beyond globally routable addresses (repeat for
    /// several), such as a partner's enterprise network: only public addresses are tested for
    /// reachability, given out as this node's, or used as relays.
    #[arg(long = "public-range", value_name = "CIDR")]
    public_ranges: Vec<AddressRange>,
    /// Do not relay for nodes that cannot be dialled (a public node relays small answers for
    /// them by default; bulk chunks never go through a relay).
    #[arg(long)]
    no_relay_service: bool,
    /// Do not look for peers on the LAN with mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Do not ask the router for a port mapping with UPnP.
    #[arg(long)]
    no_upnp: bool,
}

fn main() -> ExitCode {
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
    match cli.command {
        Command::Run(args) => match runtime.block_on(run(data_dir, args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("licet-node: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Client(command) => runtime.block_on(cli::run(command, &data_dir)),
    }
}

async fn run(data_dir: PathBuf, args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match limits::raise_open_file_limit() {
        Ok(Some(limit)) if limit.was != limit.now => info!(
            from = %limits::show(limit.was),
            to = %limits::show(limit.now),
            "raised the open-file limit to the hard limit"
        ),
        Ok(_) => {}
        Err(e) => warn!("{e}; connections and content files share what is left"),
    }
    if let Some(was) = data_dir::create_private(&data_dir)? {
        warn!(
            data_dir = %data_dir.display(),
            "the data directory was mode {was:04o}, open to other users; made it 0700"
        );
    }
    let config = Config::load(
        &data_dir,
        Overrides {
            listen: args.listen,
            bootstrap: args.bootstrap,
            region: args.region,
            api_listen: args.api_listen,
            catalog_poll_secs: args.catalog_poll,
            public_ranges: args.public_ranges,
            no_relay_service: args.no_relay_service,
            no_mdns: args.no_mdns,
            no_upnp: args.no_upnp,
        },
    )?;
    let node = Node::start(NodeConfig {
        data_dir: config.data_dir.clone(),
        region: config.region,
        listen: config.listen.clone(),
        bootstrap: config.bootstrap.clone(),
        catalog_poll: config.catalog_poll,
        public_ranges: config.public_ranges.clone(),
        relay_service: config.relay_service,
        mdns: config.mdns,
        upnp: config.upnp,
    })
    .await
    .with_context(|| format!("cannot start the node in {}", data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("cannot listen for the control API on {}", config.api_listen))?;
    let api_addr = listener.local_addr()?;
    let token = server::create_token(&data_dir)
        .with_context(|| format!("cannot write the API token in {}", data_dir.display()))?;
    server::write_api_addr(&data_dir, api_addr)
        .with_context(|| format!("cannot write the API address in {}", data_dir.display()))?;
    info!(peer_id = %node.peer_id(), api = %api_addr, data_dir = %data_dir.display(), "licet-node running");

    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    };
    let served = server::serve(Arc::new(node.clone()), listener, token, shutdown).await;
    info!("shutting down");
    node.stop_all();
    server::remove_api_files(&data_dir);
    // Let download tasks see the stop and finish the batch they are writing.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    served.context("the control API failed")
}
