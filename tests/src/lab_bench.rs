//! What the benchmarks on the network lab ([`crate::lab`]; `tests/examples/peer_offload.rs` and
//! `tests/examples/swarm/`) share, so that they measure the same way: their command lines, a
//! sampler of how idle the machine's CPUs are, the bytes a host's link carried, the lower bound
//! of a swarm's time, waiting for every downloader with a deadline, processes that log to a file
//! and die with the benchmark, and Markdown tables. [`tracker`] is a minimal BitTorrent tracker
//! for the lab.
//!
//! Invariants:
//! - the pure parts (argument parsing, the lower bound, idle shares, tables, the tracker's
//!   encoding) do no I/O and are unit-tested;
//! - every wait has a deadline, and every process started here is killed when its handle is
//!   dropped, also when the benchmark panics;
//! - byte counts are read from the kernel's interface counters inside the host's namespace, so
//!   every tool is measured the same way, protocol overhead included.

pub mod tracker;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::lab::Host;

/// Bytes in a MiB.
pub const MIB: u64 = 1024 * 1024;

/// One command-line option of a benchmark: `--name VALUE`.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// Its name, without the dashes.
    pub name: &'static str,
    /// Its value when not given (`""`: none).
    pub default: &'static str,
    /// What it is, for `--help`.
    pub help: &'static str,
}

/// A parsed command line: every option's value (given or default).
#[derive(Debug, Clone)]
pub struct Args {
    values: BTreeMap<&'static str, String>,
}

/// Why a command line was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// `-h` or `--help` was given.
    Help,
    /// What was wrong, naming the option.
    Invalid(String),
}

impl Args {
    /// Parses `words` (the arguments after the program's name) against `opts`.
    pub fn parse(opts: &[Opt], words: &[String]) -> Result<Args, ArgsError> {
        let mut values: BTreeMap<&'static str, String> = opts
            .iter()
            .map(|o| (o.name, o.default.to_owned()))
            .collect();
        let mut words = words.iter();
        while let Some(word) = words.next() {
            if word == "-h" || word == "--help" {
                return Err(ArgsError::Help);
            }
            let name = word.strip_prefix("--").unwrap_or("");
            let Some(opt) = opts.iter().find(|o| o.name == name) else {
                return Err(ArgsError::Invalid(format!("unknown argument {word}")));
            };
            let Some(value) = words.next() else {
                return Err(ArgsError::Invalid(format!("{word} needs a value")));
            };
            values.insert(opt.name, value.clone());
        }
        Ok(Args { values })
    }

    /// Parses the process's command line against `opts`; prints the usage and exits 0 on
    /// `--help`, 2 on a bad argument.
    pub fn from_env_or_exit(program: &str, about: &str, opts: &[Opt]) -> Args {
        let words: Vec<String> = std::env::args().skip(1).collect();
        match Args::parse(opts, &words) {
            Ok(args) => args,
            Err(ArgsError::Help) => {
                println!("{}", usage(program, about, opts));
                std::process::exit(0);
            }
            Err(ArgsError::Invalid(problem)) => exit_with_usage(program, &problem),
        }
    }

    /// The raw value of `name` (`""` when it has none).
    pub fn text(&self, name: &str) -> &str {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("no option --{name} was declared"))
    }

    /// `name`'s value as a whole number within `range`.
    pub fn number(&self, name: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
        let text = self.text(name);
        let n: u64 = text
            .parse()
            .map_err(|_| format!("--{name}: not a whole number: {text:?}"))?;
        if !range.contains(&n) {
            return Err(format!(
                "--{name}: {n} is out of range ({} to {})",
                range.start(),
                range.end()
            ));
        }
        Ok(n)
    }

    /// `name`'s value as a comma-separated list of whole numbers, each within `range`.
    pub fn numbers(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<u64>, String> {
        self.list(name)?
            .into_iter()
            .map(|word| {
                let n: u64 = word
                    .parse()
                    .map_err(|_| format!("--{name}: not a whole number: {word:?}"))?;
                if range.contains(&n) {
                    Ok(n)
                } else {
                    Err(format!(
                        "--{name}: {n} is out of range ({} to {})",
                        range.start(),
                        range.end()
                    ))
                }
            })
            .collect()
    }

    /// `name`'s value as a comma-separated list of words, each one of `allowed` (given once).
    pub fn choices(&self, name: &str, allowed: &[&str]) -> Result<Vec<String>, String> {
        let words = self.list(name)?;
        for (k, word) in words.iter().enumerate() {
            if !allowed.contains(&word.as_str()) {
                return Err(format!(
                    "--{name}: unknown {word:?} (choose from {})",
                    allowed.join(", ")
                ));
            }
            if words[..k].contains(word) {
                return Err(format!("--{name}: {word:?} is given twice"));
            }
        }
        Ok(words)
    }

    /// `name`'s value as a path, `None` when it has none.
    pub fn path(&self, name: &str) -> Option<std::path::PathBuf> {
        Some(self.text(name))
            .filter(|t| !t.is_empty())
            .map(std::path::PathBuf::from)
    }

    fn list(&self, name: &str) -> Result<Vec<String>, String> {
        let words: Vec<String> = self
            .text(name)
            .split(',')
            .map(|w| w.trim().to_owned())
            .collect();
        if words.iter().any(String::is_empty) {
            return Err(format!("--{name}: an empty item in {:?}", self.text(name)));
        }
        Ok(words)
    }
}

/// The usage text of a benchmark.
pub fn usage(program: &str, about: &str, opts: &[Opt]) -> String {
    let mut text = format!("{about}\n\nusage (as root): {program}");
    for opt in opts {
        text.push_str(&format!(" [--{} {}]", opt.name, opt.default_shown()));
    }
    text.push('\n');
    for opt in opts {
        text.push_str(&format!("  --{:<10} {}\n", opt.name, opt.help));
    }
    text
}

impl Opt {
    fn default_shown(&self) -> &str {
        if self.default.is_empty() {
            "VALUE"
        } else {
            self.default
        }
    }
}

/// Prints `problem`, points to `--help`, and exits 2.
pub fn exit_with_usage(program: &str, problem: &str) -> ! {
    eprintln!("{program}: {problem}\n(--help says more)");
    std::process::exit(2);
}

/// The least time, in seconds, any schedule needs for `downloaders` to each get `file_bytes`
/// from one seed: the seed must send every byte once (`file / seed_up`), and the downloaders'
/// `downloaders × file` bytes must all cross some uplink (`total_up`, the seed's included, in
/// bytes per second).
pub fn lower_bound_seconds(
    file_bytes: f64,
    seed_up: f64,
    downloaders: usize,
    total_up: f64,
) -> f64 {
    (file_bytes / seed_up).max(downloaders as f64 * file_bytes / total_up)
}

/// The median of `values` (the mean of the two middle ones for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A Markdown table of `header` and `rows` (each row as many cells as the header).
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &[&str]| format!("| {} |\n", cells.join(" | "));
    let mut text = line(header);
    text.push_str(&line(&vec!["---"; header.len()]));
    for row in rows {
        assert_eq!(row.len(), header.len(), "a row of {row:?} for {header:?}");
        text.push_str(&line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    text
}

/// Per CPU of `/proc/stat`: (idle jiffies incl. I/O wait, all jiffies).
pub fn cpu_times() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat is readable");
    parse_cpu_times(&stat)
}

fn parse_cpu_times(stat: &str) -> Vec<(u64, u64)> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is within user).
            let all: u64 = fields.iter().take(8).sum();
            (fields[3] + fields[4], all)
        })
        .collect()
}

/// The share of CPU time, over all CPUs, spent idle between two [`cpu_times`].
pub fn cpu_idle_share(before: &[(u64, u64)], after: &[(u64, u64)]) -> f64 {
    let (idle, all) = before.iter().zip(after).fold((0, 0), |(i, a), (b, e)| {
        (i + e.0.saturating_sub(b.0), a + e.1.saturating_sub(b.1))
    });
    idle as f64 / all.max(1) as f64
}

/// How idle the machine's CPUs were over a span: the least over any sampling interval, and the
/// mean over the whole span (shares of 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuIdle {
    /// The least idle share of any one interval.
    pub min: f64,
    /// The idle share over the whole span.
    pub mean: f64,
    /// CPUs counted.
    pub cores: usize,
}

impl CpuIdle {
    /// From [`cpu_times`] taken at each interval's ends (at least two samples).
    pub fn from_samples(samples: &[Vec<(u64, u64)>]) -> CpuIdle {
        assert!(samples.len() >= 2, "two samples at least");
        let min = samples
            .windows(2)
            .map(|w| cpu_idle_share(&w[0], &w[1]))
            .fold(1.0_f64, f64::min);
        CpuIdle {
            min,
            mean: cpu_idle_share(&samples[0], &samples[samples.len() - 1]),
            cores: samples[0].len(),
        }
    }

    /// Whether the CPUs stayed idle enough (`floor`, a share) for the links, not the CPUs, to
    /// be what held a run back.
    pub fn stayed_above(&self, floor: f64) -> bool {
        self.min > floor
    }
}

/// Samples `/proc/stat` on a thread every `interval` until [`CpuIdleSampler::finish`].
pub struct CpuIdleSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Vec<(u64, u64)>>>,
}

impl CpuIdleSampler {
    /// Starts sampling now.
    pub fn start(interval: Duration) -> CpuIdleSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = vec![cpu_times()];
            let mut last = Instant::now();
            while !stopping.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                if last.elapsed() >= interval {
                    samples.push(cpu_times());
                    last = Instant::now();
                }
            }
            samples.push(cpu_times());
            samples
        });
        CpuIdleSampler { stop, thread }
    }

    /// Stops sampling and says how idle the CPUs were since [`CpuIdleSampler::start`].
    pub fn finish(self) -> CpuIdle {
        self.stop.store(true, Ordering::Relaxed);
        CpuIdle::from_samples(&self.thread.join().expect("the sampler does not panic"))
    }
}

/// The bytes a host's `eth0` has sent and received since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkBytes {
    /// Bytes sent (its upload), IP headers and all.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
}

/// `host`'s interface counters (`ip -n NS -s -j link show dev eth0`).
pub fn link_bytes(host: &Host) -> LinkBytes {
    let out = Command::new("ip")
        .args([
            "-n",
            host.namespace(),
            "-s",
            "-j",
            "link",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(
        out.status.success(),
        "ip -s link in {}: {}",
        host.namespace(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_link_bytes(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|why| panic!("ip -s -j link in {}: {why}", host.namespace()))
}

fn parse_link_bytes(json: &str) -> Result<LinkBytes, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let stats = &value[0]["stats64"];
    let count = |way: &str| {
        stats[way]["bytes"]
            .as_u64()
            .ok_or_else(|| format!("no stats64.{way}.bytes in {json}"))
    };
    Ok(LinkBytes {
        sent: count("tx")?,
        received: count("rx")?,
    })
}

/// Runs every job on its own thread, all started now, and says when each finished (seconds
/// since `start`) or why it failed. Each job bounds its own wait.
pub fn completion_times<'a>(
    start: Instant,
    jobs: Vec<Box<dyn FnOnce() -> Result<(), String> + Send + 'a>>,
) -> Vec<Result<f64, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|job| scope.spawn(move || job().map(|()| start.elapsed().as_secs_f64())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the waiting thread panicked".to_owned()))
            })
            .collect()
    })
}

/// Calls `probe` every `interval` until it says done (`Ok(true)`) or fails, for at most
/// `timeout`; says what was last seen if the time runs out.
pub fn poll_until(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    loop {
        match probe() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = e,
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: not done after {timeout:?}{}",
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!(" (last error: {last_error})")
                }
            ));
        }
        std::thread::sleep(interval);
    }
}

/// A process running in the background with its output in a log file; killed when dropped.
pub struct Daemon {
    child: Child,
    what: String,
}

impl Daemon {
    /// Starts `command` (named `what`), its standard output and error appended to `log`.
    pub fn start(mut command: Command, what: &str, log: &Path) -> Daemon {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Daemon {
            child,
            what: what.to_owned(),
        }
    }

    /// `Err` naming it and its exit status if it has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status})", self.what)),
            Err(e) => Err(format!("{}: {e}", self.what)),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request to `port` on `host`'s 127.0.0.1 (made from inside its namespace):
/// the response body if the status is 2xx. At most 5 s and 16 MiB.
pub fn http_request(
    host: &Host,
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String, String> {
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = host.run_inside(|| -> Result<Vec<u8>, String> {
        let timeout = Duration::from_secs(5);
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
            .map_err(|e| format!("connect to {address}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("send to {address}: {e}"))?;
        let mut response = Vec::new();
        stream
            .take(16 * MIB)
            .read_to_end(&mut response)
            .map_err(|e| format!("read from {address}: {e}"))?;
        Ok(response)
    })?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from port {port}: {text:?}"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(format!("{method} {path}: HTTP {status}: {body}"));
    }
    Ok(body.to_owned())
}

/// The SHA-256 of `path`, in hex (`sha256sum`).
pub fn sha256_hex(path: &Path) -> Result<String, String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sha256sum {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt {
            name: "n",
            default: "5,10,20",
            help: "downloaders",
        },
        Opt {
            name: "mib",
            default: "128",
            help: "file size",
        },
        Opt {
            name: "tools",
            default: "licet,rqbit",
            help: "tools",
        },
        Opt {
            name: "logs",
            default: "",
            help: "log folder",
        },
    ];

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_take_defaults_given_values_and_lists() {
        let args = Args::parse(OPTS, &words("--n 3,7 --logs /x")).unwrap();
        assert_eq!(args.numbers("n", 1..=200).unwrap(), vec![3, 7]);
        assert_eq!(args.number("mib", 1..=4096).unwrap(), 128);
        assert_eq!(
            args.choices("tools", &["licet", "rqbit", "aria2"]).unwrap(),
            vec!["licet", "rqbit"]
        );
        assert_eq!(args.path("logs"), Some("/x".into()));
        assert_eq!(Args::parse(OPTS, &[]).unwrap().path("logs"), None);
    }

    #[test]
    fn bad_arguments_are_refused_naming_the_option() {
        let refused = |line: &str| match Args::parse(OPTS, &words(line)) {
            Err(ArgsError::Invalid(why)) => why,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(refused("--bogus 1"), "unknown argument --bogus");
        assert_eq!(refused("--mib"), "--mib needs a value");
        assert_eq!(
            Args::parse(OPTS, &words("--help")).unwrap_err(),
            ArgsError::Help
        );
        let args = Args::parse(OPTS, &words("--n 5,,7 --mib 0 --tools licet,bt")).unwrap();
        assert!(
            args.numbers("n", 1..=200)
                .unwrap_err()
                .contains("empty item")
        );
        assert_eq!(
            args.number("mib", 1..=4096).unwrap_err(),
            "--mib: 0 is out of range (1 to 4096)"
        );
        assert!(
            args.choices("tools", &["licet", "rqbit"])
                .unwrap_err()
                .contains("unknown \"bt\"")
        );
        let twice = Args::parse(OPTS, &words("--tools licet,licet --n 5,x")).unwrap();
        assert!(
            twice
                .choices("tools", &["licet"])
                .unwrap_err()
                .contains("twice")
        );
        assert!(twice.numbers("n", 1..=9).unwrap_err().contains("\"x\""));
    }

    #[test]
    fn the_lower_bound_is_the_seeds_copy_or_the_swarms_total_upload() {
        // 128 MiB, every uplink 8 MB/s, 20 downloaders: the seed's one copy bounds it.
        let file = 128.0 * MIB as f64;
        let bound = lower_bound_seconds(file, 8e6, 20, 21.0 * 8e6);
        assert!((bound - file / 8e6).abs() < 1e-9, "{bound}");
        // A seed twice as fast as the peers: the swarm's total upload bounds it.
        let bound = lower_bound_seconds(100.0, 20.0, 10, 20.0 + 10.0 * 10.0);
        assert!((bound - 1000.0 / 120.0).abs() < 1e-9, "{bound}");
    }

    #[test]
    fn cpu_idle_is_the_least_interval_and_the_whole_span() {
        let stat = |idle: u64, all: u64| {
            // Two CPUs, the same each: user=all-idle, idle=idle.
            format!(
                "cpu  0 0 0 0 0 0 0 0\ncpu0 {u} 0 0 {idle} 0 0 0 0 0 0\ncpu1 {u} 0 0 {idle} 0 0 0 0 0 0\n",
                u = all - idle
            )
        };
        let samples = vec![
            parse_cpu_times(&stat(0, 0)),
            parse_cpu_times(&stat(90, 100)),
            parse_cpu_times(&stat(100, 200)),
        ];
        let idle = CpuIdle::from_samples(&samples);
        assert_eq!(idle.cores, 2);
        assert!((idle.min - 0.10).abs() < 1e-9, "{idle:?}");
        assert!((idle.mean - 0.50).abs() < 1e-9, "{idle:?}");
        assert!(!idle.stayed_above(0.30));
    }

    #[test]
    fn link_counters_and_tables_and_medians() {
        let json = r#"[{"ifname":"eth0","stats64":{"rx":{"bytes":7,"packets":1},"tx":{"bytes":9,"packets":2}}}]"#;
        assert_eq!(
            parse_link_bytes(json).unwrap(),
            LinkBytes {
                sent: 9,
                received: 7
            }
        );
        assert!(parse_link_bytes("[{}]").is_err());
        let table = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(table, "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
