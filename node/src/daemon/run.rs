//! `licet-node run`: starts the node and its control API, and stops both on SIGINT or SIGTERM.
//!
//! Start: logging, the open-file limit, the private data directory, the configuration, the node
//! (and `config.toml`'s `[[trust]]`), then the API on loopback; its token and address go to the
//! data directory's API files only once it listens. Only then, with the API serving, is a
//! service manager told `READY=1` (systemd's `Type=notify`, through `NOTIFY_SOCKET`; without
//! that variable nothing is sent), and `STOPPING=1` as soon as a stop begins. From then on
//! `SIGHUP` reloads `config.toml` (`reload.rs`).
//!
//! The log goes to stderr as text lines for people, or with `--log-format json` as one JSON
//! object per line (`timestamp`, `level`, `message`, the event's fields, `target`) for log
//! shippers; a fatal error is then one such line too ([`LogFormat::report_fatal`]).
//!
//! Stop, in order: the API stops accepting and lets the requests in flight finish, at most
//! [`API_DRAIN_LIMIT`] (then they are cut); the API files are removed, so clients see at once
//! that no daemon runs; the node stops its download tasks and waits at most [`NODE_STOP_LIMIT`]
//! for them to commit what they are writing. Each wait is bounded, so a stuck request or task
//! cannot keep the process alive; the exit code says only whether the API failed.

use std::{io::IsTerminal as _, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Args;
use libp2p::Multiaddr;
use licet_proto::manifest::Region;
use sd_notify::NotifyState;
use tracing::{info, warn};

use crate::{
    api::server,
    bandwidth::{LimitChange, Rate},
    daemon::{
        config::{Config, Overrides},
        json_log::JsonLines,
        limits,
        reload::{self, Reloader},
    },
    metrics::recent_log::RecentLog,
    net::{bootstrap::BootstrapAddr, reachability::AddressRange},
    node::{Node, NodeConfig, data_dir},
};

/// How long requests in flight may take to finish once the daemon stops.
pub const API_DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long download tasks may take to end once the daemon stops.
pub const NODE_STOP_LIMIT: Duration = Duration::from_secs(10);

/// `licet-node run`'s options.
#[derive(Args)]
pub struct RunArgs {
    /// Address to listen on (repeat for several); TCP and QUIC multiaddrs [default: TCP and QUIC
    /// on all interfaces, port 4610: /ip4/0.0.0.0/tcp/4610, /ip4/0.0.0.0/udp/4610/quic-v1]. A
    /// second node on the same host needs ports of its own.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// A node to join the swarm through: HOST:PORT (TCP), or a multiaddr with or without
    /// /p2p/<peer id> (the peer id is learned on connecting); repeat for several [default: none].
    #[arg(long, value_name = "ADDR")]
    bootstrap: Vec<BootstrapAddr>,
    /// This node's region (ISO 3166 alpha-2). A release whose licence lists regions is fetched
    /// only by a node in a listed region (none set: refused); the region is stated to the peers
    /// it fetches from.
    #[arg(long, value_name = "CC")]
    region: Option<Region>,
    /// Where the control API listens, on loopback [default: 127.0.0.1:0, a free port; clients
    /// find it in the data directory].
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<SocketAddr>,
    /// How often to look up each trusted publisher's newest catalog in the DHT and at peers,
    /// in seconds (default 60; new catalogs also arrive at once by gossip).
    #[arg(long, value_name = "SECS")]
    catalog_poll: Option<u64>,
    /// The connection manager trims back to this many connections (default 32).
    #[arg(long, value_name = "N")]
    connections_low: Option<u32>,
    /// The connection manager trims once more than this many connections are open (default
    /// 96); gossip mesh peers, relays and peers in a transfer are kept.
    #[arg(long, value_name = "N")]
    connections_high: Option<u32>,
    /// A new connection is never trimmed for this many seconds (default 10).
    #[arg(long, value_name = "SECS")]
    connections_grace: Option<u64>,
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
    /// Upload limit for all peers together, such as 8MB/s, 500KiB/s or 64kbit/s (0: none).
    /// Change it while running with `licet-node limits set`.
    #[arg(long, value_name = "RATE")]
    upload_limit: Option<Rate>,
    /// Download limit for all peers together (0: none).
    #[arg(long, value_name = "RATE")]
    download_limit: Option<Rate>,
    /// Upload limit for each peer (0: none).
    #[arg(long, value_name = "RATE")]
    peer_upload_limit: Option<Rate>,
    /// Download limit for each peer (0: none).
    #[arg(long, value_name = "RATE")]
    peer_download_limit: Option<Rate>,
    /// Do not limit peers on this node's own LAN (loopback, or a private or link-local address
    /// on one of its subnets).
    #[arg(long)]
    lan_exempt: bool,
    /// When the log on stderr is coloured: `auto` when stderr is a terminal and NO_COLOR is not
    /// set (a log written to a file or a journal stays plain), `always`, or `never`.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorWhen::Auto)]
    color: ColorWhen,
    /// How the log on stderr is written: `text`, lines for people, or `json`, one JSON object
    /// per line (timestamp, level, message, the event's fields, target) for a log shipper; JSON
    /// is never coloured.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Threads running the node's async work [default: TOKIO_WORKER_THREADS, else one per
    /// core]. One is enough for an idle node; many nodes on one host want few each.
    #[arg(long, env = "LICET_WORKER_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// Most threads for blocking work at once (database, file reads, hashing) [default: 512].
    /// Idle ones end after 10 s, so this bounds bursts, not an idle node.
    #[arg(long, env = "LICET_BLOCKING_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    blocking_threads: Option<u16>,
}

impl RunArgs {
    /// The async runtime's thread counts (`--worker-threads`, `--blocking-threads`; `None`:
    /// the runtime's default).
    pub fn runtime_threads(&self) -> RuntimeThreads {
        RuntimeThreads {
            workers: self.worker_threads.map(usize::from),
            blocking: self.blocking_threads.map(usize::from),
        }
    }

    /// The format of the log, which is also the format of a fatal error.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

/// The thread counts the daemon's async runtime is built with (`None`: tokio's default, which
/// for workers honours `TOKIO_WORKER_THREADS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeThreads {
    /// Worker threads.
    pub workers: Option<usize>,
    /// Most blocking threads at once.
    pub blocking: Option<usize>,
}

impl RuntimeThreads {
    /// A multi-thread runtime builder with these counts, timers and I/O enabled.
    pub fn builder(self) -> tokio::runtime::Builder {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        if let Some(workers) = self.workers {
            builder.worker_threads(workers);
        }
        if let Some(blocking) = self.blocking {
            builder.max_blocking_threads(blocking);
        }
        builder
    }
}

/// How the daemon writes its log (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people: time, level, target, message and fields.
    Text,
    /// One JSON object per line, with `timestamp`, `level`, `message`, the event's fields and
    /// `target` at the top level.
    Json,
}

impl LogFormat {
    /// Writes the error that ended the daemon to stderr: `licet-node: error: …` with its cause
    /// chain, or in JSON one log line with level `ERROR`, so a log shipper gets it too.
    pub fn report_fatal(self, error: &anyhow::Error) {
        let message = format!("licet-node: error: {error:#}");
        match self {
            LogFormat::Text => eprintln!("{message}"),
            LogFormat::Json => eprintln!(
                "{}",
                serde_json::json!({
                    "timestamp": jiff::Timestamp::now().to_string(),
                    "level": "ERROR",
                    "message": message,
                    "target": "licet_node",
                })
            ),
        }
    }
}

/// When the daemon's log is coloured (`--color`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// When stderr is a terminal and `NO_COLOR` is not set to a non-empty value.
    Auto,
    /// Always, also into a file or a pipe, whatever `NO_COLOR` says.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    /// Whether to colour, given whether stderr is a terminal and the value of `NO_COLOR`
    /// (<https://no-color.org>: present and not empty means no colour).
    pub fn colours(self, stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => stderr_is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

/// Runs the daemon of `data_dir` until SIGINT or SIGTERM, then stops it (see the module docs).
pub async fn run(data_dir: PathBuf, args: RunArgs) -> anyhow::Result<()> {
    let recent_log = RecentLog::new();
    let log_filter = start_logging(args.color, args.log_format, &recent_log);
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
    let flags = Overrides {
        listen: args.listen,
        bootstrap: args
            .bootstrap
            .into_iter()
            .map(BootstrapAddr::into_multiaddr)
            .collect(),
        region: args.region,
        api_listen: args.api_listen,
        catalog_poll_secs: args.catalog_poll,
        connections_low: args.connections_low,
        connections_high: args.connections_high,
        connections_grace_secs: args.connections_grace,
        public_ranges: args.public_ranges,
        no_relay_service: args.no_relay_service,
        no_mdns: args.no_mdns,
        no_upnp: args.no_upnp,
        limits: LimitChange {
            upload: args.upload_limit,
            download: args.download_limit,
            peer_upload: args.peer_upload_limit,
            peer_download: args.peer_download_limit,
        },
        lan_exempt: args.lan_exempt,
    };
    let layers = Config::load_layers(&data_dir, flags.clone())?;
    let config = layers.1.clone();
    if let Some(log) = &config.log
        && !reload::rust_log_set()
        && let Err(e) = log_filter.reload(tracing_subscriber::EnvFilter::new(log))
    {
        warn!("cannot set the log filter of config.toml: {e}");
    }
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
        watermarks: config.watermarks,
        limits: config.limits.clone(),
        recent_log,
        deliveries: config.deliveries.clone(),
    })
    .await
    .with_context(|| format!("cannot start the node in {}", data_dir.display()))?;
    reload::trust_from_file(&node, &config).await;
    let mut reloader = Reloader::new(data_dir.clone(), flags, layers, log_filter, node.clone());
    // Taken before the API files exist, so a SIGHUP sent once the daemon answers is a reload.
    let hangups = hangup_signals();
    let reloading = tokio::spawn(async move {
        let Some(mut hangups) = hangups else {
            return;
        };
        while hangups.recv().await.is_some() {
            reloader.reload().await;
        }
    });
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("cannot listen for the control API on {}", config.api_listen))?;
    let api_addr = listener.local_addr()?;
    let token = server::create_token(&data_dir)
        .with_context(|| format!("cannot write the API token in {}", data_dir.display()))?;
    server::write_api_addr(&data_dir, api_addr)
        .with_context(|| format!("cannot write the API address in {}", data_dir.display()))?;
    info!(peer_id = %node.peer_id(), api = %api_addr, data_dir = %data_dir.display(), "licet-node running");

    let (stop_api, api_stopping) = tokio::sync::oneshot::channel::<()>();
    let mut api = tokio::spawn(server::serve(
        Arc::new(node.clone()),
        listener,
        token,
        async move {
            let _ = api_stopping.await;
        },
    ));
    // The API is serving (its listener was bound before, so no request is refused): a service
    // manager may now start what depends on this daemon.
    tell_service_manager(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("running; control API on {api_addr}")),
    ]);
    let ended_early = tokio::select! {
        () = stop_signal() => None,
        ended = &mut api => Some(ended),
    };
    tell_service_manager(&[NotifyState::Stopping]);
    info!("shutting down");
    reloading.abort();
    let _ = stop_api.send(());
    let served = match ended_early {
        Some(ended) => ended,
        None => match tokio::time::timeout(API_DRAIN_LIMIT, &mut api).await {
            Ok(ended) => ended,
            Err(_) => {
                warn!("control API requests still in flight after {API_DRAIN_LIMIT:?}; cut them");
                api.abort();
                Ok(Ok(()))
            }
        },
    };
    server::remove_api_files(&data_dir);
    if !node.stop(NODE_STOP_LIMIT).await {
        warn!("download tasks still running after {NODE_STOP_LIMIT:?}; stopping without them");
    }
    info!("licet-node stopped");
    served
        .context("the control API task failed")?
        .context("the control API failed")
}

/// Sends `states` to the service manager that started the daemon (systemd's `NOTIFY_SOCKET`);
/// does nothing when none did. A failure to send is logged: the daemon runs on either way (a
/// manager waiting for `READY=1` times the service out and says so itself).
fn tell_service_manager(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(
            socket = ?std::env::var_os("NOTIFY_SOCKET").unwrap_or_default(),
            "cannot notify the service manager: {e}"
        );
    }
}

/// Starts the log on stderr, as text or JSON lines, and into `recent` (for `GET /v1/log`), with
/// `RUST_LOG`'s filter or the default (`config.toml`'s `log` is put in once the file is read);
/// returns the handle that changes the filter.
fn start_logging(
    color: ColorWhen,
    format: LogFormat,
    recent: &RecentLog,
) -> reload::LogFilterHandle {
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(reload::DEFAULT_LOG_FILTER));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // By default colours only on a terminal: a log written to a file or a journal
            // stays plain text.
            .with_ansi(color.colours(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JsonLines::default())
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(recent.layer())
        .init();
    handle
}

/// The `SIGHUP`s the daemon receives (`None`, logged, where they cannot be received).
fn hangup_signals() -> Option<tokio::sync::mpsc::Receiver<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                let (send, receive) = tokio::sync::mpsc::channel(1);
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        // A reload already waiting covers this one too.
                        let _ = send.try_send(());
                    }
                });
                Some(receive)
            }
            Err(e) => {
                warn!("cannot receive SIGHUP, config.toml is read only at start: {e}");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn stop_signal() {
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
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::ColorWhen;

    #[test]
    fn auto_colours_only_a_terminal_without_no_color() {
        let empty = Some(OsStr::new(""));
        let set = Some(OsStr::new("1"));
        assert!(ColorWhen::Auto.colours(true, None));
        assert!(
            ColorWhen::Auto.colours(true, empty),
            "an empty NO_COLOR is unset"
        );
        assert!(!ColorWhen::Auto.colours(true, set));
        assert!(!ColorWhen::Auto.colours(false, None));
        assert!(
            ColorWhen::Always.colours(false, set),
            "the flag overrides NO_COLOR"
        );
        assert!(!ColorWhen::Never.colours(true, None));
    }
}
