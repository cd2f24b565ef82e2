//! The swarm benchmark: one seed and N downloaders, every node on its own capped home uplink in
//! the network lab (`licet_tests::lab`), Licet against BitTorrent clients (rqbit, aria2) on the
//! same topology, run by hand:
//!
//! ```text
//! cargo build --release -p licet-node -p licet-manifest
//! sudo cargo run --release -p licet-tests --example swarm -- \
//!     [--n 5,10,20] [--mib 128] [--runs 1] [--tools licet,rqbit,aria2] [--logs DIR]
//!     [--up-kbit 64000] [--down-kbit 256000] [--rtt-ms 20] [--log-filter info]
//! ```
//!
//! Needs root (it builds network namespaces) and `ip`, `nft`, `tc`; `aria2c`, `rqbit`,
//! `mktorrent` and `sha256sum` for the BitTorrent clients (`apt-get install -y aria2 mktorrent`,
//! `cargo install rqbit`). It uses the `licet-node` of its own profile.
//!
//! Topology, built afresh for every measurement: each node in its own namespace on the lab's
//! internet (public addresses, no NAT), its link capped by `tc` at `--up-kbit` up and
//! `--down-kbit` down (8 MB/s and 32 MB/s) with `netem` delaying each way so that any two nodes
//! are `--rtt-ms` apart (a kernel without netem cannot delay: the benchmark says so and stops,
//! and `--rtt-ms 0` runs on undelayed links, about 0.1 ms apart). One release: a file of `--mib` MiB of random bytes. The seed is
//! started and ready first; then every downloader starts at once, and the clock starts.
//!
//! How each tool is run (see `tools.rs`):
//! - licet: `licet-node run --public-range <the lab's internet> --bootstrap <seed>` on every
//!   downloader, each connected to the seed before the clock starts; at the start every
//!   downloader runs `get LINK`; done when `get` exits with the item complete (every chunk
//!   verified). The release has `licet-manifest create`'s default chunk size.
//! - BitTorrent: one torrent of the file with 1 MiB pieces (`mktorrent -l 20`) announcing to a
//!   minimal HTTP tracker in the lab (on the seed's host, `licet_tests::lab_bench::tracker`,
//!   which gives each announcing peer all the others it has seen). DHT, local peer discovery,
//!   UPnP and peer exchange are off in both clients, so peers come only from the tracker (and
//!   for rqbit, which can take them on its command line, `--initial-peers` naming the seed and
//!   every other downloader). aria2c is asked over its JSON-RPC, rqbit over its HTTP API, until
//!   the whole torrent is verified; both keep seeding until all are done.
//!
//! Measured the same way for every tool: each downloader's completion time from the common
//! start; all done against the lower bound `max(file / seed up, N × file / total upload of all
//! nodes)`; the seed's upload as the bytes its interface sent (kernel counters, headers and
//! protocol included) over the file's size; how idle the CPUs stayed (`/proc/stat` every
//! second: the least second and the mean; below 30% the CPU, not the links, may be what held
//! the run back, and it says so loudly). After the run every downloaded file's SHA-256 is
//! checked against the original's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tools;

use std::{path::PathBuf, time::Duration};

use licet_tests::{
    lab::{Caps, Host, Lab},
    lab_bench::{self, Args, CpuIdle, MIB, Opt},
};

const OPTS: &[Opt] = &[
    Opt {
        name: "n",
        default: "5,10,20",
        help: "downloaders, a comma-separated list (1 to 100 each)",
    },
    Opt {
        name: "mib",
        default: "128",
        help: "size of the release in MiB",
    },
    Opt {
        name: "runs",
        default: "1",
        help: "measurements of each N and tool",
    },
    Opt {
        name: "tools",
        default: "licet,rqbit,aria2",
        help: "tools to measure, comma-separated (licet, rqbit, aria2)",
    },
    Opt {
        name: "logs",
        default: "",
        help: "keep every node's log in DIR/run<R>-n<N>-<tool>/",
    },
    Opt {
        name: "up-kbit",
        default: "64000",
        help: "every node's uplink in kbit/s (64000: 8 MB/s)",
    },
    Opt {
        name: "down-kbit",
        default: "256000",
        help: "every node's downlink in kbit/s (256000: 32 MB/s)",
    },
    Opt {
        name: "rtt-ms",
        default: "20",
        help: "round trip between any two nodes in ms (a multiple of 4 is exact)",
    },
    Opt {
        name: "log-filter",
        default: "info",
        help: "RUST_LOG of the licet nodes (e.g. licet_node=debug, with --logs)",
    },
];

/// The least CPU idle share at which the links, not the CPUs, surely held a run back.
const CPU_IDLE_FLOOR: f64 = 0.30;

/// The benchmark's settings.
pub struct Settings {
    downloader_counts: Vec<u64>,
    file_bytes: u64,
    runs: u64,
    tools: Vec<String>,
    logs: Option<PathBuf>,
    caps: Caps,
    one_way_delay: Duration,
    log_filter: String,
}

fn settings() -> Settings {
    let args = Args::from_env_or_exit("swarm", "The swarm benchmark in the network lab.", OPTS);
    let get = || -> Result<Settings, String> {
        Ok(Settings {
            downloader_counts: args.numbers("n", 1..=100)?,
            file_bytes: args.number("mib", 1..=16 * 1024)? * MIB,
            runs: args.number("runs", 1..=100)?,
            tools: args.choices("tools", tools::NAMES)?,
            logs: args.path("logs"),
            caps: Caps {
                up_kbit: args.number("up-kbit", 100..=10_000_000)? as u32,
                down_kbit: args.number("down-kbit", 100..=10_000_000)? as u32,
            },
            one_way_delay: Duration::from_micros(args.number("rtt-ms", 0..=2_000)? * 1000 / 4),
            log_filter: args.text("log-filter").to_owned(),
        })
    };
    get().unwrap_or_else(|problem| lab_bench::exit_with_usage("swarm", &problem))
}

/// The network of one measurement: a fresh lab with a seed and the downloaders.
pub struct Topology {
    /// Its namespaces, deleted when the topology is dropped (after [`tools::measure`] has
    /// ended every process it started in them).
    _lab: Lab,
    seed: Host,
    downloaders: Vec<Host>,
}

impl Topology {
    fn build(downloaders: usize, settings: &Settings) -> Topology {
        let lab = Lab::new().unwrap_or_else(|why| {
            eprintln!("swarm needs root and ip/nft/tc: {why}");
            std::process::exit(2);
        });
        let host = |name: &str| {
            let host = lab.public_host(name);
            if let Err(why) = lab.cap_delayed(&host, settings.caps, settings.one_way_delay) {
                eprintln!("swarm: {why}; --rtt-ms 0 runs without the delay");
                std::process::exit(2);
            }
            host
        };
        let seed = host("seed");
        let downloaders = (1..=downloaders).map(|k| host(&format!("d{k}"))).collect();
        Topology {
            _lab: lab,
            seed,
            downloaders,
        }
    }
}

/// What one measurement saw.
pub struct Measured {
    /// Per downloader: seconds from the start until its file was complete, or why not.
    times: Vec<Result<f64, String>>,
    /// Bytes the seed's interface sent between the start and the end.
    seed_sent: u64,
    cpu: CpuIdle,
}

/// One row of the result.
struct Row {
    n: usize,
    tool: String,
    measured: Measured,
}

fn main() {
    let settings = settings();
    let missing = tools::missing_programs(&settings.tools);
    if !missing.is_empty() {
        eprintln!("swarm: not installed: {}", missing.join("; "));
        std::process::exit(2);
    }
    let up = f64::from(settings.caps.up_kbit) * 1000.0 / 8.0;
    println!(
        "# Swarm benchmark: {} MiB, every uplink {:.1} MB/s, downlink {:.1} MB/s, RTT {} ms, {} \
         cores\n",
        settings.file_bytes / MIB,
        up / 1e6,
        f64::from(settings.caps.down_kbit) * 125.0 / 1e6,
        settings.one_way_delay.as_millis() * 4,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut rows = Vec::new();
    for run in 1..=settings.runs {
        for &n in &settings.downloader_counts {
            for tool in &settings.tools {
                let n = n as usize;
                println!("run {run}, N = {n}, {tool} ...");
                let topology = Topology::build(n, &settings);
                let logs = settings
                    .logs
                    .as_ref()
                    .map(|dir| dir.join(format!("run{run}-n{n}-{tool}")));
                let measured = tools::measure(tool, &topology, &settings, logs.as_deref());
                println!("{}", detail(&measured, &settings, up));
                rows.push(Row {
                    n,
                    tool: tool.clone(),
                    measured,
                });
            }
        }
    }
    println!("\n{}", table(&rows, &settings, up));
    println!("{}", summary(&rows, &settings, up));
}

/// The lower bound, in seconds, for `n` downloaders.
fn bound(n: usize, settings: &Settings, up: f64) -> f64 {
    lab_bench::lower_bound_seconds(settings.file_bytes as f64, up, n, (n as f64 + 1.0) * up)
}

/// Each node's completion time and the CPU, after a measurement.
fn detail(measured: &Measured, settings: &Settings, up: f64) -> String {
    let mut done: Vec<f64> = measured
        .times
        .iter()
        .filter_map(|t| t.as_ref().ok().copied())
        .collect();
    done.sort_by(f64::total_cmp);
    let times: Vec<String> = done
        .iter()
        .map(|s| format!("{s:.1}"))
        .chain(
            measured
                .times
                .iter()
                .filter_map(|t| t.as_ref().err())
                .map(|why| format!("FAILED ({why})")),
        )
        .collect();
    let mut text = format!(
        "  completion s: {}\n  seed sent {:.2} copies; CPU idle min {:.0}% mean {:.0}%",
        times.join(" "),
        measured.seed_sent as f64 / settings.file_bytes as f64,
        measured.cpu.min * 100.0,
        measured.cpu.mean * 100.0
    );
    if !measured.cpu.stayed_above(CPU_IDLE_FLOOR) {
        text.push_str(&format!(
            "\n  WARNING: CPU idle fell to {:.0}% (floor {:.0}%): the CPU, not the {:.1} MB/s \
             links, may have held this run back",
            measured.cpu.min * 100.0,
            CPU_IDLE_FLOOR * 100.0,
            up / 1e6
        ));
    }
    text
}

/// The figures of a row where every downloader completed.
struct Figures {
    /// Seconds until the last downloader was done.
    all_done: f64,
    /// `all_done` over the lower bound.
    ratio: f64,
    /// The seed's bytes sent over the file's size.
    copies: f64,
    /// The median completion, seconds.
    median: f64,
}

/// The figures of a row, or `None` if a downloader failed.
fn figures(row: &Row, settings: &Settings, up: f64) -> Option<Figures> {
    let times: Vec<f64> = row
        .measured
        .times
        .iter()
        .map(|t| t.as_ref().ok().copied())
        .collect::<Option<_>>()?;
    let all_done = times.iter().copied().fold(0.0, f64::max);
    Some(Figures {
        all_done,
        ratio: all_done / bound(row.n, settings, up),
        copies: row.measured.seed_sent as f64 / settings.file_bytes as f64,
        median: lab_bench::median(&times)?,
    })
}

fn table(rows: &[Row], settings: &Settings, up: f64) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let bound = bound(row.n, settings, up);
            let cpu = format!(
                "{:.0}% / {:.0}%{}",
                row.measured.cpu.min * 100.0,
                row.measured.cpu.mean * 100.0,
                if row.measured.cpu.stayed_above(CPU_IDLE_FLOOR) {
                    ""
                } else {
                    " (below 30%)"
                }
            );
            let copies = row.measured.seed_sent as f64 / settings.file_bytes as f64;
            match figures(row, settings, up) {
                Some(f) => vec![
                    row.n.to_string(),
                    row.tool.clone(),
                    format!("{:.1}", f.all_done),
                    format!("{bound:.1}"),
                    format!("{:.2}×", f.ratio),
                    format!("{copies:.2}"),
                    format!("{:.1}", f.median),
                    format!("{:.1}", f.all_done),
                    cpu,
                ],
                None => {
                    let failed = row.measured.times.iter().filter(|t| t.is_err()).count();
                    vec![
                        row.n.to_string(),
                        row.tool.clone(),
                        format!("FAILED: {failed} of {} not done", row.n),
                        format!("{bound:.1}"),
                        "-".into(),
                        format!("{copies:.2}"),
                        "-".into(),
                        "-".into(),
                        cpu,
                    ]
                }
            }
        })
        .collect();
    lab_bench::markdown_table(
        &[
            "N",
            "tool",
            "all done s",
            "lower bound s",
            "all done / bound",
            "seed copies",
            "median s",
            "max s",
            "CPU idle min / mean",
        ],
        &cells,
    )
}

/// Per N: which tool was nearest the bound and whose seed uploaded least, and Licet against the
/// issue's targets at the largest N.
fn summary(rows: &[Row], settings: &Settings, up: f64) -> String {
    let mut text = String::from("Summary:\n");
    for &n in &settings.downloader_counts {
        let of_n: Vec<(&Row, Figures)> = rows
            .iter()
            .filter(|r| r.n == n as usize)
            .filter_map(|r| Some((r, figures(r, settings, up)?)))
            .collect();
        let best = |pick: fn(&Figures) -> f64| {
            of_n.iter()
                .min_by(|a, b| pick(&a.1).total_cmp(&pick(&b.1)))
                .map(|(r, f)| format!("{} ({:.2})", r.tool, pick(f)))
                .unwrap_or_else(|| "none completed".into())
        };
        text.push_str(&format!(
            "- N = {n}: nearest the bound {}; least seed upload, in copies, {}\n",
            best(|f| f.ratio),
            best(|f| f.copies)
        ));
    }
    if rows
        .iter()
        .any(|r| !r.measured.cpu.stayed_above(CPU_IDLE_FLOOR))
    {
        text.push_str(&format!(
            "- WARNING: in some runs CPU idle fell below {:.0}% (see the last column)\n",
            CPU_IDLE_FLOOR * 100.0
        ));
    }
    text
}
