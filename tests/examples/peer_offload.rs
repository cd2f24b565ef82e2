//! How much of a release the peers behind home routers carry for each other, in the network lab
//! (`licet_tests::lab`), run by hand:
//!
//! ```text
//! cargo build --release -p licet-node -p licet-manifest
//! sudo cargo run --release -p licet-tests --example peer_offload -- \
//!     [--homes 8] [--mib 64] [--up-kbit 32000] [--runs 1] [--logs DIR]
//! ```
//!
//! Needs root (it builds network namespaces) and `ip`, `nft`, `tc`. It uses the binaries of the
//! same profile as itself (a release example runs the release `licet-node`).
//!
//! Topology: one public seed (the publisher's node, on the lab's internet) and `--homes` homes,
//! each a LAN with one node behind its own cone NAT. Every home's uplink is capped at
//! `--up-kbit` and its downlink at 4× that; the seed's uplink is capped at a home's rate too, so
//! the seed alone could serve one copy in the time the homes need, and the peers must carry
//! most of the copies. The release is one file of `--mib` MiB of random bytes signed with
//! `licet-manifest create`'s default chunk size. Once every home node says it is private and
//! holds a relay reservation (on the seed), all homes `get` the release at once.
//!
//! It prints, per run, a Markdown table: each node's completion time, bytes in and out and CPU
//! time; the copies the seed uploaded (its `licet_bytes_out_total` over the file's size, and the
//! bytes its interface sent over the file's size, as the swarm benchmark counts them); the
//! share of the bytes the homes received that came from peers rather than the seed (the homes'
//! `licet_bytes_in_total` minus the seed's bytes out, over the homes' bytes in; the issue's
//! target is at least 75%); the lower bound on the slowest completion, `max(file / seed uplink,
//! homes × file / total uplink)`, and the slowest completion over it; hole punches and direct
//! connections between homes; and how idle the machine's CPUs were during the downloads
//! (`/proc/stat` every second: the least second and the mean), to tell whether the CPU rather
//! than the links held the run back. `--logs DIR` keeps the nodes' logs in DIR. What it shares
//! with the swarm benchmark (`tests/examples/swarm/`) is in `licet_tests::lab_bench`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use licet_tests::{
    TestNet, TestNode, assert_same_file, count, create,
    lab::{self, Caps, Lab, Nat},
    lab_bench::{self, Args, CpuIdleSampler, MIB, Opt},
    text, wait_for, write_pseudo_random_file,
};

/// How long AutoNAT and the relay reservations may take.
const SETTLE: Duration = Duration::from_secs(120);

const OPTS: &[Opt] = &[
    Opt {
        name: "homes",
        default: "8",
        help: "homes, each one node behind its own cone NAT (1 to 200)",
    },
    Opt {
        name: "mib",
        default: "64",
        help: "size of the release in MiB",
    },
    Opt {
        name: "up-kbit",
        default: "32000",
        help: "every uplink in kbit/s (the seed's too); downlinks 4x",
    },
    Opt {
        name: "runs",
        default: "1",
        help: "measurements",
    },
    Opt {
        name: "logs",
        default: "",
        help: "keep the nodes' logs in DIR/run<R>/",
    },
];

/// The command line.
struct Settings {
    homes: usize,
    mib: u64,
    up_kbit: u32,
    runs: u32,
    logs: Option<PathBuf>,
}

fn settings() -> Settings {
    let args = Args::from_env_or_exit(
        "peer_offload",
        "How much of a release the peers behind home routers carry for each other.",
        OPTS,
    );
    let get = || -> Result<Settings, String> {
        Ok(Settings {
            homes: args.number("homes", 1..=200)? as usize,
            mib: args.number("mib", 1..=16 * 1024)?,
            up_kbit: args.number("up-kbit", 1..=10_000_000)? as u32,
            runs: args.number("runs", 1..=100)? as u32,
            logs: args.path("logs"),
        })
    };
    get().unwrap_or_else(|problem| lab_bench::exit_with_usage("peer_offload", &problem))
}

fn main() {
    let args = settings();
    for run in 1..=args.runs {
        println!("\n## Run {run} of {}\n", args.runs);
        run_once(&args, run);
    }
}

/// One node's result.
struct Row {
    name: String,
    seconds: Option<f64>,
    bytes_in: f64,
    bytes_out: f64,
    cpu_seconds: f64,
}

fn run_once(args: &Settings, run: u32) {
    let lab = Lab::new().unwrap_or_else(|why| {
        eprintln!("peer_offload needs root and ip/nft/tc: {why}");
        std::process::exit(2);
    });
    let net = TestNet::new();
    let w = net.work();
    let home_caps = Caps {
        up_kbit: args.up_kbit,
        down_kbit: args.up_kbit.saturating_mul(4),
    };
    let seed_host = lab.public_host("seed");
    lab.cap(&seed_host, home_caps);
    let home_hosts: Vec<lab::Host> = (1..=args.homes)
        .map(|k| {
            let home = lab.home(&format!("home{k}"), Nat::Cone);
            let host = lab.home_host(&home, &format!("h{k}"));
            lab.cap(&host, home_caps);
            host
        })
        .collect();

    let file_bytes = args.mib * MIB;
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), file_bytes, 21 + u64::from(run));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let link = text(&created["link"]).to_owned();
    let chunk_size = count(&created["chunk_size"]);

    let public_range = ["--public-range", lab::INTERNET];
    let seed = net
        .start_on(&seed_host, "seed", &public_range)
        .trusting(&publisher);
    seed.add("film.manifest", "release");
    let joined = [&public_range[..], &["--bootstrap", seed.addr()]].concat();
    let homes: Vec<TestNode> = home_hosts
        .iter()
        .map(|host| {
            net.start_on(host, host.name(), &joined)
                .trusting(&publisher)
        })
        .collect();
    let settle_start = Instant::now();
    wait_for(
        "every home node to be private and hold a relay reservation",
        SETTLE,
        Duration::from_millis(500),
        || {
            homes
                .iter()
                .all(|node| {
                    let network = &node.client_json(&["status"])["network"];
                    network["reachability"] == "private"
                        && network["relayed_addrs"]
                            .as_array()
                            .is_some_and(|a| !a.is_empty())
                })
                .then_some(())
        },
    );
    println!(
        "{} homes private with a relay reservation after {:.1} s",
        homes.len(),
        settle_start.elapsed().as_secs_f64()
    );

    // Lower bound: the seed must send one copy; all homes' files must cross some uplink.
    let up_bytes_per_s = f64::from(args.up_kbit) * 1000.0 / 8.0;
    let file = file_bytes as f64;
    let bound = lab_bench::lower_bound_seconds(
        file,
        up_bytes_per_s,
        args.homes,
        (args.homes as f64 + 1.0) * up_bytes_per_s,
    );
    let timeout = Duration::from_secs_f64((bound * 20.0).max(600.0));

    let seed_link_before = lab_bench::link_bytes(&seed_host);
    let cpu = CpuIdleSampler::start(Duration::from_secs(1));
    let node_cpu_before: Vec<f64> = std::iter::once(&seed)
        .chain(&homes)
        .map(process_cpu_seconds)
        .collect();
    let start = Instant::now();
    let waits: Vec<Box<dyn FnOnce() -> Result<(), String> + Send>> = homes
        .iter()
        .map(|node| {
            let out = format!("downloads/{}", node.name());
            let get = node.spawn_client(&["get", &link, "-o", &out, "--json"]);
            Box::new(move || {
                let outcome = get.wait(timeout);
                match outcome.code {
                    Some(0) if outcome.json()["state"] == "complete" => Ok(()),
                    _ => Err(format!("{}{}", outcome.stdout, outcome.stderr)),
                }
            }) as Box<dyn FnOnce() -> Result<(), String> + Send>
        })
        .collect();
    let finished = lab_bench::completion_times(start, waits);
    let cpu = cpu.finish();
    let seed_link = lab_bench::link_bytes(&seed_host);
    let node_cpu: Vec<f64> = std::iter::once(&seed)
        .chain(&homes)
        .zip(node_cpu_before)
        .map(|(node, before)| process_cpu_seconds(node) - before)
        .collect();

    let mut rows = vec![Row {
        name: "seed (public)".to_owned(),
        seconds: None,
        bytes_in: seed.metric("licet_bytes_in_total"),
        bytes_out: seed.metric("licet_bytes_out_total"),
        cpu_seconds: node_cpu[0],
    }];
    for (k, (node, finished)) in homes.iter().zip(&finished).enumerate() {
        if let Err(failure) = finished {
            eprintln!("{}'s get failed: {}", node.name(), failure.trim());
        } else {
            assert_same_file(
                &w.join("release/film.bin"),
                &w.join(&format!("downloads/{}/film.bin", node.name())),
            );
        }
        rows.push(Row {
            name: format!("{} (cone NAT)", node.name()),
            seconds: finished.as_ref().ok().copied(),
            bytes_in: node.metric("licet_bytes_in_total"),
            bytes_out: node.metric("licet_bytes_out_total"),
            cpu_seconds: node_cpu[k + 1],
        });
    }

    // Hole punches, relayed connections, and direct (hole-punched) connections between homes.
    let home_ids: Vec<&str> = homes.iter().map(TestNode::peer_id).collect();
    let (mut punched, mut punch_failed, mut relayed, mut direct) = (0.0, 0.0, 0.0, 0);
    let (mut fetched, mut lookups) = (0.0, 0.0);
    for node in &homes {
        fetched += node.metric("licet_chunks_fetched_total");
        lookups += node.metric("licet_provider_lookup_seconds_count");
        punched += node.metric("licet_hole_punches_total{result=\"success\"}");
        punch_failed += node.metric("licet_hole_punches_total{result=\"failure\"}");
        relayed += node.metric("licet_relayed_connections_total");
        let peers = node.client_json(&["peers"]);
        direct += peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                home_ids.contains(&text(&p["peer_id"])) && p["relayed"] == serde_json::json!(false)
            })
            .count();
    }

    let seed_out = rows[0].bytes_out;
    let homes_in: f64 = rows[1..].iter().map(|r| r.bytes_in).sum();
    let from_peers = (homes_in - seed_out) / homes_in;
    let slowest = finished
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .fold(0.0_f64, |a, b| a.max(*b));

    println!(
        "\n{} homes behind cone NATs and 1 public seed; every uplink (the seed's too, so peers \
         must carry most copies) {} kbit/s = {:.1} MB/s, downlinks 4x; {} MiB file in {} KiB \
         chunks (licet-manifest create's default).\n",
        args.homes,
        args.up_kbit,
        up_bytes_per_s / 1e6,
        args.mib,
        chunk_size / 1024
    );
    let node_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let seconds = match (row.seconds, row.name.starts_with("seed")) {
                (_, true) => "(seeds)".to_owned(),
                (Some(s), false) => format!("{s:.1}"),
                (None, false) => "FAILED".to_owned(),
            };
            vec![
                row.name.clone(),
                seconds,
                format!("{:.1}", row.bytes_in / MIB as f64),
                format!("{:.1}", row.bytes_out / MIB as f64),
                format!("{:.1}", row.cpu_seconds),
            ]
        })
        .collect();
    print!(
        "{}",
        lab_bench::markdown_table(
            &["node", "complete after s", "MiB in", "MiB out", "CPU s"],
            &node_rows
        )
    );
    println!("\n| measure | value |\n|---|---|");
    println!(
        "| copies the seed uploaded (bytes out / file) | {:.2} |",
        seed_out / file
    );
    println!(
        "| the same, from the bytes its interface sent (headers and protocol included) | {:.2} |",
        (seed_link.sent - seed_link_before.sent) as f64 / file
    );
    println!(
        "| bytes the homes received from peers, not the seed (target >= 75%) | **{:.1}%** {} |",
        from_peers * 100.0,
        if from_peers >= 0.75 {
            "(met)"
        } else {
            "(missed)"
        }
    );
    println!(
        "| lower bound max(file/seed up, N*file/total up) | {bound:.1} s |\n\
         | slowest completion / lower bound | {:.2}x ({slowest:.1} s) |",
        slowest / bound
    );
    println!(
        "| hole punches (success / failure), relayed connections, direct home-home connections \
         (counted from both ends) | {punched} / {punch_failed}, {relayed}, {direct} |"
    );
    println!(
        "| chunks the seed served / chunks the homes fetched; homes' provider lookups | {} / \
         {fetched}; {lookups} |",
        seed.metric("licet_chunks_served_total")
    );
    println!(
        "| CPU idle during the downloads ({} cores), least second / mean | {:.0}% / {:.0}%{} |",
        cpu.cores,
        cpu.min * 100.0,
        cpu.mean * 100.0,
        if cpu.stayed_above(0.30) {
            " (the CPU was not the bottleneck)"
        } else {
            " (**below 30%: the CPU may have been the bottleneck**)"
        }
    );

    if seed_out > homes_in {
        println!(
            "\nThe seed counted more chunk bytes out than the homes received: chunks it sent \
             after their requests had timed out at the home were thrown away there."
        );
    }
    if let Some(dir) = &args.logs {
        let to = dir.join(format!("run{run}"));
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(w.join("logs")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
        println!("\nnode logs in {}", to.display());
    }
}

/// The user and system CPU time the node's process has used.
fn process_cpu_seconds(node: &TestNode) -> f64 {
    let pid = node.pid().expect("the node runs");
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).unwrap();
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}
