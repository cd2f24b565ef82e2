//! How each tool is run on a [`Topology`], and the one way they are all measured
//! ([`measure`]): the seed ready first, every downloader started at once, each one's completion
//! time, the seed's interface bytes, the CPUs' idle share, and every file's SHA-256 after.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use licet_tests::{
    TestNet, TestNode, create,
    lab::{self, Host},
    lab_bench::{self, CpuIdleSampler, Daemon, tracker::Tracker},
    text, write_pseudo_random_file,
};

use crate::{Measured, Settings, Topology};

/// The tools `--tools` may name.
pub const NAMES: &[&str] = &["licet", "rqbit", "aria2"];

/// The port BitTorrent clients listen on (each host has its own address).
const BT_PORT: u16 = 6881;
/// The tracker's port, on the seed's host.
const TRACKER_PORT: u16 = 6969;
/// aria2c's JSON-RPC port and rqbit's HTTP API port, on each host's 127.0.0.1.
const API_PORT: u16 = 6800;
/// How often a BitTorrent client is asked whether it is done.
const POLL: Duration = Duration::from_millis(100);
/// How long a seed may take to check its file before it seeds.
const SEED_READY: Duration = Duration::from_secs(120);
/// The file's name in every tool's folders.
const FILE: &str = "film.bin";

/// What is missing to run `tools`, each with how to install it.
pub fn missing_programs(tools: &[String]) -> Vec<String> {
    let runs = |program: &str, arg: &str| licet_tests::required::command_runs(program, &[arg]);
    let mut missing = Vec::new();
    if tools.iter().any(|t| t != "licet") {
        for (program, how) in [
            ("mktorrent", "apt-get install -y mktorrent"),
            ("sha256sum", "coreutils"),
        ] {
            if !runs(program, "--help") && !runs(program, "--version") {
                missing.push(format!("{program} ({how})"));
            }
        }
    }
    if tools.iter().any(|t| t == "aria2") && !runs("aria2c", "--version") {
        missing.push("aria2c (apt-get install -y aria2)".into());
    }
    if tools.iter().any(|t| t == "rqbit") && !runs("rqbit", "--version") {
        missing.push("rqbit (cargo install rqbit)".into());
    }
    missing
}

/// Runs `tool` on `topology` and measures it; keeps its logs in `logs` if given.
pub fn measure(
    tool: &str,
    topology: &Topology,
    settings: &Settings,
    logs: Option<&Path>,
) -> Measured {
    let bound = crate::bound(topology.downloaders.len(), settings, {
        f64::from(settings.caps.up_kbit) * 125.0
    });
    let timeout = Duration::from_secs_f64((bound * 15.0).max(300.0));
    match tool {
        "licet" => licet(topology, settings, timeout, logs),
        "rqbit" | "aria2" => bittorrent(tool, topology, settings, timeout, logs),
        other => unreachable!("--tools was checked: {other}"),
    }
}

/// A wait for one downloader: returns once its file is complete, or says why not.
type Job<'a> = Box<dyn FnOnce() -> Result<(), String> + Send + 'a>;

/// The measurement itself: `launch` starts every downloader and returns their waits.
fn timed<'a>(topology: &Topology, launch: impl FnOnce() -> Vec<Job<'a>>) -> Measured {
    let before = lab_bench::link_bytes(&topology.seed);
    let sampler = CpuIdleSampler::start(Duration::from_secs(1));
    let start = Instant::now();
    let times = lab_bench::completion_times(start, launch());
    let cpu = sampler.finish();
    let after = lab_bench::link_bytes(&topology.seed);
    Measured {
        times,
        seed_sent: after.sent - before.sent,
        cpu,
    }
}

/// Marks as failed every downloader whose file is not the original (by SHA-256).
fn verify(measured: &mut Measured, original: &Path, outputs: &[PathBuf]) {
    let expected = lab_bench::sha256_hex(original).unwrap();
    for (time, output) in measured.times.iter_mut().zip(outputs) {
        if time.is_ok() {
            match lab_bench::sha256_hex(output) {
                Ok(hash) if hash == expected => {}
                Ok(hash) => {
                    *time = Err(format!(
                        "{} has SHA-256 {hash}, not the original's {expected}",
                        output.display()
                    ))
                }
                Err(why) => *time = Err(why),
            }
        }
    }
}

fn licet(
    topology: &Topology,
    settings: &Settings,
    timeout: Duration,
    logs: Option<&Path>,
) -> Measured {
    let net = TestNet::new().with_log_filter(&settings.log_filter);
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let original = w.join(&format!("release/{FILE}"));
    write_pseudo_random_file(&original, settings.file_bytes, 19);
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let link = text(&created["link"]).to_owned();

    let public_range = ["--public-range", lab::INTERNET];
    let seed = net
        .start_on(&topology.seed, "seed", &public_range)
        .trusting(&publisher);
    seed.add("film.manifest", "release");
    let joined = [&public_range[..], &["--bootstrap", seed.addr()]].concat();
    let nodes: Vec<TestNode> = topology
        .downloaders
        .iter()
        .map(|host| {
            net.start_on(host, host.name(), &joined)
                .trusting(&publisher)
        })
        .collect();
    for node in &nodes {
        node.wait_for_peer(&seed);
    }
    let outputs: Vec<PathBuf> = nodes
        .iter()
        .map(|node| w.join(&format!("downloads/{}/{FILE}", node.name())))
        .collect();
    let mut measured = timed(topology, || {
        nodes
            .iter()
            .map(|node| {
                let out = format!("downloads/{}", node.name());
                let get = node.spawn_client(&["get", &link, "-o", &out, "--json"]);
                Box::new(move || {
                    let outcome = get.wait(timeout);
                    match outcome.code {
                        Some(0) if outcome.json()["state"] == "complete" => Ok(()),
                        _ => Err(format!(
                            "get exited {:?}: {}{}",
                            outcome.code,
                            outcome.stdout.trim(),
                            outcome.stderr.trim()
                        )),
                    }
                }) as Job<'_>
            })
            .collect()
    });
    drop(nodes);
    drop(seed);
    verify(&mut measured, &original, &outputs);
    if let Some(dir) = logs {
        std::fs::create_dir_all(dir).unwrap();
        for entry in std::fs::read_dir(w.join("logs")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    measured
}

/// A BitTorrent client on one host: its command line, and whether it holds the whole torrent.
struct Client<'a> {
    tool: &'a str,
    host: &'a Host,
    folder: PathBuf,
}

impl Client<'_> {
    /// The client's command, seeding or downloading `torrent` into its folder; `peers` are given
    /// on the command line where the client takes them.
    fn command(&self, torrent: &Path, peers: &[&Host], log: &Path) -> Command {
        let mut command;
        match self.tool {
            "aria2" => {
                command = self.host.command("aria2c");
                command
                    .args([
                        "--enable-dht=false",
                        "--enable-dht6=false",
                        "--bt-enable-lpd=false",
                        "--enable-peer-exchange=false",
                        // Seed for ever (until killed), whatever the share ratio.
                        "--seed-ratio=0.0",
                        "--check-integrity=true",
                        "--file-allocation=none",
                        "--bt-max-peers=0",
                        "--enable-rpc=true",
                        "--rpc-listen-all=false",
                        "--summary-interval=0",
                        "--console-log-level=warn",
                        "--log-level=notice",
                    ])
                    .arg(format!("--listen-port={BT_PORT}"))
                    .arg(format!("--rpc-listen-port={API_PORT}"))
                    .arg(format!("--log={}", log.display()))
                    .arg(format!("--dir={}", self.folder.display()))
                    .arg(torrent);
            }
            "rqbit" => {
                command = self.host.command("rqbit");
                command
                    .args([
                        "--disable-dht",
                        "--disable-dht-persistence",
                        "--disable-upnp-port-forward",
                        "--disable-lsd",
                    ])
                    .args(["--listen-port", &BT_PORT.to_string()])
                    .args(["--http-api-listen-addr", &format!("127.0.0.1:{API_PORT}")])
                    .args(["download", "--overwrite", "-o"])
                    .arg(&self.folder);
                let peers: Vec<String> = peers
                    .iter()
                    .filter(|p| p.ip() != self.host.ip())
                    .map(|p| format!("{}:{BT_PORT}", p.ip()))
                    .collect();
                if !peers.is_empty() {
                    command.args(["--initial-peers", &peers.join(",")]);
                }
                command.arg(torrent);
            }
            other => unreachable!("not a BitTorrent client: {other}"),
        }
        command
    }

    /// Whether the client holds the whole torrent, verified (asked over its API).
    fn complete(&self) -> Result<bool, String> {
        match self.tool {
            "aria2" => {
                let body = r#"{"jsonrpc":"2.0","id":"q","method":"aria2.tellActive","params":[["completedLength","totalLength"]]}"#;
                let answer =
                    lab_bench::http_request(self.host, API_PORT, "POST", "/jsonrpc", body)?;
                let json: serde_json::Value =
                    serde_json::from_str(&answer).map_err(|e| format!("{e}: {answer}"))?;
                let Some(item) = json["result"].get(0) else {
                    return Ok(false);
                };
                let length = |key: &str| item[key].as_str().and_then(|s| s.parse::<u64>().ok());
                Ok(matches!(
                    (length("completedLength"), length("totalLength")),
                    (Some(done), Some(all)) if all > 0 && done == all
                ))
            }
            "rqbit" => {
                let answer = lab_bench::http_request(
                    self.host,
                    API_PORT,
                    "GET",
                    "/torrents/0/stats/v1",
                    "",
                )?;
                let json: serde_json::Value =
                    serde_json::from_str(&answer).map_err(|e| format!("{e}: {answer}"))?;
                if let Some(error) = json["error"].as_str() {
                    return Err(format!("rqbit: {error}"));
                }
                Ok(json["finished"] == true)
            }
            other => unreachable!("not a BitTorrent client: {other}"),
        }
    }

    /// Where the downloaded (or seeded) file is.
    fn file(&self) -> PathBuf {
        self.folder.join(FILE)
    }
}

fn bittorrent(
    tool: &str,
    topology: &Topology,
    settings: &Settings,
    timeout: Duration,
    logs: Option<&Path>,
) -> Measured {
    let work = tempfile::tempdir().unwrap();
    let log_dir = work.path().join("logs");
    let seed = Client {
        tool,
        host: &topology.seed,
        folder: work.path().join("seed"),
    };
    let original = seed.file();
    write_pseudo_random_file(&original, settings.file_bytes, 19);
    let tracker = Tracker::start_on(&topology.seed, TRACKER_PORT);
    let torrent = work.path().join("film.torrent");
    let made = Command::new("mktorrent")
        .args(["-l", "20", "-a", tracker.url(), "-o"])
        .arg(&torrent)
        .arg(&original)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "mktorrent: {}",
        String::from_utf8_lossy(&made.stderr)
    );

    let everyone: Vec<&Host> = std::iter::once(&topology.seed)
        .chain(&topology.downloaders)
        .collect();
    let log = |host: &Host| log_dir.join(format!("{}.log", host.name()));
    let mut daemons = vec![Daemon::start(
        seed.command(&torrent, &[], &log(seed.host)),
        &format!("{tool} seed"),
        &log(seed.host).with_extension("out"),
    )];
    lab_bench::poll_until(
        &format!("the {tool} seed to seed"),
        SEED_READY,
        POLL,
        || {
            daemons[0].check_running()?;
            seed.complete()
        },
    )
    .unwrap_or_else(|why| panic!("{why}; see {}", log_dir.display()));

    let downloaders: Vec<Client> = topology
        .downloaders
        .iter()
        .map(|host| Client {
            tool,
            host,
            folder: work.path().join(host.name()),
        })
        .collect();
    let mut measured = timed(topology, || {
        downloaders
            .iter()
            .map(|client| {
                daemons.push(Daemon::start(
                    client.command(&torrent, &everyone, &log(client.host)),
                    &format!("{tool} on {}", client.host.name()),
                    &log(client.host).with_extension("out"),
                ));
                Box::new(move || {
                    lab_bench::poll_until(
                        &format!("{tool} on {}", client.host.name()),
                        timeout,
                        POLL,
                        || client.complete(),
                    )
                }) as Job<'_>
            })
            .collect()
    });
    // Every daemon still running at the end: none gave up early.
    for (daemon, time) in daemons[1..].iter_mut().zip(&mut measured.times) {
        if let (Ok(_), Err(why)) = (&time, daemon.check_running()) {
            *time = Err(why);
        }
    }
    drop(daemons);
    drop(tracker);
    let outputs: Vec<PathBuf> = downloaders.iter().map(Client::file).collect();
    verify(&mut measured, &original, &outputs);
    if let Some(dir) = logs {
        std::fs::create_dir_all(dir).unwrap();
        for entry in std::fs::read_dir(&log_dir).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    measured
}
