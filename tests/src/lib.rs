//! Helpers for the end-to-end tests: find the real binaries, run them with a deadline, and keep
//! their output for assertions; and [`TestNet`], which starts real `licet-node` daemons on
//! 127.0.0.1 (ephemeral ports, temporary data directories) and kills them when dropped.
//!
//! The binaries are the ones cargo built next to the test executable (`target/<profile>/`), so
//! `cargo test --workspace` always tests what it just built.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod hostile;
pub mod lab;
pub mod lab_bench;
pub mod peer_flood;
pub mod required;
pub mod socket_flood;
pub mod tmpfs;

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long any one command may run before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The path of a workspace binary built for this test run. Panics, saying the command that
/// builds it, if it is missing or older than a source file it is built from: `cargo test -p
/// licet-tests` builds no binary, and a stale one would be tested silently.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it with `{}`, or run `cargo test --workspace`, which builds it",
        path.display(),
        build_command(dir)
    );
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("cannot read the time of {}: {e}", path.display()));
    let (changed, source) = newest_source(name);
    assert!(
        built >= changed,
        "{} is older than {}, which changed {:.1?} after it was built: the tests would run \
         stale code. Build it with `{}`, or run `cargo test --workspace`, which builds it.",
        path.display(),
        source.display(),
        changed.duration_since(built).unwrap_or_default(),
        build_command(dir),
    );
    path
}

/// The command that builds the binaries into `dir` (`<target dir>/<profile>`).
fn build_command(dir: &Path) -> String {
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => String::new(),
        Some("release") => " --release".to_owned(),
        Some(other) => format!(" --profile {other}"),
    };
    let target_dir = dir.parent().unwrap_or(dir);
    let default_target_dir = workspace_root().join("target");
    let env = if target_dir == default_target_dir {
        String::new()
    } else {
        format!("CARGO_TARGET_DIR={} ", target_dir.display())
    };
    format!("{env}cargo build -p licet-node -p licet-manifest{profile}")
}

/// The workspace's root folder.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
}

/// The newest source file of the binary `name`, with its modification time: of the Rust files
/// in the `src/` folders of the crates it is built from, those cargo compiles into it. Walked
/// once per test process.
///
/// A module declared only under `#[cfg(test)]` is left out: it is not in the binary, and cargo
/// does not rebuild the binary when it changes. So are manifests (`Cargo.toml`, `Cargo.lock`):
/// cargo rebuilds only for the changes in them that reach the binary, so their time says
/// nothing about it (a dependency added to another crate changes `Cargo.lock` and rebuilds
/// nothing here).
fn newest_source(name: &str) -> (std::time::SystemTime, PathBuf) {
    use std::{collections::HashMap, sync::OnceLock, time::SystemTime};
    type Newest = (SystemTime, PathBuf);
    const CRATES: [&str; 3] = ["proto", "node", "manifest-tool"];

    /// The `.rs` files under `folder`, and the files and folders of modules declared there
    /// only for tests (`#[cfg(test)]` on the line before `mod NAME;`).
    fn rust_files(folder: &Path, files: &mut Vec<PathBuf>, test_only: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(folder)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, files, test_only);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                // `lib.rs`, `main.rs` and `mod.rs` declare modules beside them; `a.rs` in `a/`.
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                let modules = match stem.as_str() {
                    "lib" | "main" | "mod" => folder.to_owned(),
                    _ => folder.join(&stem),
                };
                let mut lines = text.lines().map(str::trim);
                while let Some(line) = lines.next() {
                    if line != "#[cfg(test)]" {
                        continue;
                    }
                    let declared = lines.next().unwrap_or_default();
                    let declared = declared
                        .strip_prefix("pub(crate) ")
                        .or_else(|| declared.strip_prefix("pub "))
                        .unwrap_or(declared);
                    if let Some(module) = declared
                        .strip_prefix("mod ")
                        .and_then(|rest| rest.strip_suffix(';'))
                    {
                        test_only.push(modules.join(format!("{module}.rs")));
                        test_only.push(modules.join(module));
                    }
                }
                files.push(path);
            }
        }
    }

    static NEWEST: OnceLock<HashMap<&'static str, Newest>> = OnceLock::new();
    let newest = NEWEST.get_or_init(|| {
        let mut by_crate = HashMap::new();
        for part in CRATES {
            let (mut files, mut test_only) = (Vec::new(), Vec::new());
            rust_files(
                &workspace_root().join(part).join("src"),
                &mut files,
                &mut test_only,
            );
            let newest = files
                .into_iter()
                .filter(|file| !test_only.iter().any(|t| file.starts_with(t)))
                .map(|file| (std::fs::metadata(&file).unwrap().modified().unwrap(), file))
                .max_by_key(|(time, _)| *time)
                .unwrap_or_else(|| panic!("no Rust file in {part}/src"));
            by_crate.insert(part, newest);
        }
        by_crate
    });
    let crates: &[&str] = match name {
        "licet-node" => &["proto", "node"],
        "licet-manifest" => &["proto", "manifest-tool"],
        other => panic!("bin({other:?}): name the crates it is built from in `newest_source`"),
    };
    // Files of another crate that a binary includes by path (`#[path = …] mod …;`).
    let included: &[&str] = match name {
        "licet-manifest" => &["node/src/cli/shell_docs.rs"],
        _ => &[],
    };
    crates
        .iter()
        .map(|part| newest[part].clone())
        .chain(included.iter().map(|file| {
            let path = workspace_root().join(file);
            let changed = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or_else(|e| panic!("cannot read the time of {}: {e}", path.display()));
            (changed, path)
        }))
        .max_by_key(|(time, _)| *time)
        .unwrap()
}

/// What a finished command did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output, as text.
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
}

impl Outcome {
    /// Panics with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Outcome {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn ok(&self) -> &Outcome {
        self.expect_code(0)
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `program args…` in `dir` with no stdin, waiting at most [`COMMAND_TIMEOUT`].
pub fn run(program: &Path, dir: &Path, args: &[&str]) -> Outcome {
    Running::spawn(program, dir, args).wait(COMMAND_TIMEOUT)
}

/// A command running in the background, its output collected on threads. Dropping it kills the
/// process (so a failing test leaves nothing behind).
pub struct Running {
    child: Child,
    what: String,
    out_reader: Option<std::thread::JoinHandle<String>>,
    err_reader: Option<std::thread::JoinHandle<String>>,
    finished: bool,
}

impl Running {
    /// Runs `command` (named `what` in messages) with its standard output a pipe whose reader
    /// is already closed, as `command | head` is once `head` has read its lines; waits at most
    /// [`COMMAND_TIMEOUT`]. Its `stdout` is always empty.
    pub fn with_stdout_closed(mut command: Command, what: &str) -> Outcome {
        let (reader, writer) = std::io::pipe().expect("make a pipe");
        drop(reader);
        let child = command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut running = Running {
            child,
            what: what.to_owned(),
            out_reader: None,
            err_reader: None,
            finished: false,
        };
        let mut err = running.child.stderr.take().expect("stderr is piped");
        running.err_reader = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }));
        running.wait(COMMAND_TIMEOUT)
    }

    /// Starts `program args…` in `dir` with no stdin and both outputs piped.
    pub fn spawn(program: &Path, dir: &Path, args: &[&str]) -> Running {
        let mut command = Command::new(program);
        command.args(args).current_dir(dir);
        Running::start(command, format!("{} {args:?}", program.display()))
    }

    /// Starts `command` (named `what` in messages) with no stdin and both outputs piped.
    pub fn start(mut command: Command, what: String) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        // Drain both pipes on threads so a chatty child cannot block on a full pipe.
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Running {
            child,
            what,
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
            finished: false,
        }
    }

    /// The process id of the command.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the command has exited (it is then reaped; [`Running::wait`] still returns
    /// its outcome).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits at most `timeout` for the command to exit; kills it and panics after that.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.finished = true;
                panic!("{} did not finish within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.finished = true;
        Outcome {
            code: status.code(),
            stdout: self
                .out_reader
                .take()
                .map(|reader| reader.join().unwrap())
                .unwrap_or_default(),
            stderr: self.err_reader.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temporary working directory with the `licet-manifest` binary at hand.
pub struct Workdir {
    dir: tempfile::TempDir,
    manifest_tool: PathBuf,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    /// A fresh empty directory.
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
            manifest_tool: bin("licet-manifest"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path` inside the directory.
    pub fn join(&self, path: &str) -> PathBuf {
        self.dir.path().join(path)
    }

    /// Runs `licet-manifest args…` in the directory.
    pub fn manifest(&self, args: &[&str]) -> Outcome {
        run(&self.manifest_tool, self.dir.path(), args)
    }

    /// Runs `licet-manifest args…` in the directory with its standard output already closed by
    /// the reader (see [`Running::with_stdout_closed`]).
    pub fn manifest_into_closed_pipe(&self, args: &[&str]) -> Outcome {
        let mut command = Command::new(&self.manifest_tool);
        command.args(args).current_dir(self.dir.path());
        Running::with_stdout_closed(command, &format!("licet-manifest {args:?}"))
    }

    /// Writes `bytes` to `path` inside the directory, creating parent directories.
    pub fn write(&self, path: &str, bytes: &[u8]) {
        let full = self.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }

    /// Makes a key with `keygen` and returns its public key hex.
    pub fn keygen(&self, name: &str) -> String {
        self.manifest(&["keygen", "-o", name])
            .ok()
            .stdout
            .trim()
            .to_owned()
    }

    /// `licet-manifest catalog new --key KEY -o DRAFT`, which must succeed.
    #[track_caller]
    pub fn catalog_new(&self, key: &str, draft: &str) {
        self.manifest(&["catalog", "new", "--key", key, "-o", draft])
            .ok();
    }

    /// Runs `licet-manifest catalog sign DRAFT --key KEY -o OUT extra…` and returns how it ended.
    pub fn catalog_sign(&self, draft: &str, key: &str, out: &str, extra: &[&str]) -> Outcome {
        let mut args = vec!["catalog", "sign", draft, "--key", key, "-o", out];
        args.extend_from_slice(extra);
        self.manifest(&args)
    }
}

/// The JSON string `value` (panics naming it otherwise).
#[track_caller]
pub fn text(value: &serde_json::Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// The JSON count `value` (panics naming it otherwise).
#[track_caller]
pub fn count(value: &serde_json::Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// `licet-manifest create CONTENT --key publisher.pem --title TITLE -o MANIFEST extra… --json`
/// in `net`'s work directory, which must succeed; its JSON reply.
#[track_caller]
pub fn create(
    net: &TestNet,
    content: &str,
    title: &str,
    manifest: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "create",
        content,
        "--key",
        "publisher.pem",
        "--title",
        title,
        "-o",
        manifest,
        "--json",
    ];
    args.extend_from_slice(extra);
    net.work().manifest(&args).ok().json()
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` pseudo-random bytes (seeded) to `path` in blocks, creating parent directories;
/// for files too big to build in memory comfortably.
pub fn write_pseudo_random_file(path: &Path, len: u64, seed: u64) {
    const BLOCK: u64 = 1024 * 1024;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut written = 0;
    let mut block = 0u64;
    while written < len {
        let n = BLOCK.min(len - written);
        let bytes = pseudo_random_bytes(n as usize, seed.wrapping_mul(1_000_003) ^ block);
        file.write_all(&bytes).unwrap();
        written += n;
        block += 1;
    }
    file.flush().unwrap();
}

/// Writes `bytes` over the file at `path` in place and puts its modification time back, as
/// `cp -p`, `rsync -t` or `touch -r` would: the same size and modification time, other bytes.
pub fn overwrite_keeping_mtime(path: &Path, bytes: &[u8]) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(
        before.len(),
        bytes.len() as u64,
        "the size must stay the same"
    );
    let modified = before.modified().unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
    file.set_modified(modified).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(
        after.modified().unwrap(),
        modified,
        "mtime put back exactly"
    );
}

/// Panics unless the files at `expected` and `actual` hold the same bytes (naming the first
/// offset where they differ).
#[track_caller]
pub fn assert_same_file(expected: &Path, actual: &Path) {
    let open = |path: &Path| {
        std::io::BufReader::with_capacity(
            1024 * 1024,
            std::fs::File::open(path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())),
        )
    };
    let (expected_len, actual_len) = (
        std::fs::metadata(expected).unwrap().len(),
        std::fs::metadata(actual).unwrap().len(),
    );
    assert_eq!(
        expected_len,
        actual_len,
        "{} has {actual_len} bytes, {} has {expected_len}",
        actual.display(),
        expected.display()
    );
    let (mut a, mut b) = (open(expected), open(actual));
    let (mut buf_a, mut buf_b) = (vec![0u8; 1024 * 1024], vec![0u8; 1024 * 1024]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut a, &mut buf_a);
        let m = read_full(&mut b, &mut buf_b);
        assert_eq!(n, m, "{} ends early", actual.display());
        if n == 0 {
            return;
        }
        if buf_a[..n] != buf_b[..n] {
            let at = buf_a[..n]
                .iter()
                .zip(&buf_b[..n])
                .position(|(x, y)| x != y)
                .unwrap();
            panic!(
                "{} differs from {} at byte {}",
                actual.display(),
                expected.display(),
                offset + at as u64
            );
        }
        offset += n as u64;
    }
}

fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).unwrap() {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// Polls `probe` every `interval` until it returns `Some`, for at most `timeout`; panics naming
/// `what` after that.
#[track_caller]
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(interval);
    }
}

/// How long a daemon may take to start: its API answering and its swarm listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to connect to its bootstrap peers.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each node's log shown when a test fails.
pub const LOG_TAIL_LINES: usize = 80;
/// Environment variables of the daemon's configuration, removed so the developer's own
/// settings cannot change what a test runs.
const CONFIG_ENV: [&str; 13] = [
    "LICET_DATA_DIR",
    "LICET_CONNECTIONS_LOW",
    "LICET_CONNECTIONS_HIGH",
    "LICET_CONNECTIONS_GRACE",
    "LICET_LISTEN",
    "LICET_BOOTSTRAP",
    "LICET_REGION",
    "LICET_API_LISTEN",
    "LICET_UPLOAD_LIMIT",
    "LICET_DOWNLOAD_LIMIT",
    "LICET_PEER_UPLOAD_LIMIT",
    "LICET_PEER_DOWNLOAD_LIMIT",
    "LICET_LAN_EXEMPT",
];

/// A local swarm for one test: a temporary directory (with a [`Workdir`] for the publisher's
/// files and `licet-manifest`), and the nodes started in it, each with its data directory in
/// `nodes/<name>` and its log in `logs/<name>.log`.
///
/// Declare it before its nodes, so the nodes are dropped (killed) first; if the test is
/// panicking, dropping the net then prints the tail of every node's log.
pub struct TestNet {
    work: Workdir,
    node_bin: PathBuf,
    logs: std::cell::RefCell<Vec<(String, PathBuf)>>,
    log_filter: String,
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

impl TestNet {
    /// An empty net in a fresh temporary directory.
    pub fn new() -> TestNet {
        TestNet {
            work: Workdir::new(),
            node_bin: bin("licet-node"),
            logs: std::cell::RefCell::new(Vec::new()),
            log_filter: "info".to_owned(),
        }
    }

    /// The same net, its nodes started with `RUST_LOG=filter` (`info` unless set so).
    pub fn with_log_filter(mut self, filter: &str) -> TestNet {
        filter.clone_into(&mut self.log_filter);
        self
    }

    /// The temporary directory, with `licet-manifest` at hand.
    pub fn work(&self) -> &Workdir {
        &self.work
    }

    /// Starts `licet-node run --data-dir <tmp>/nodes/<name> --listen /ip4/127.0.0.1/tcp/0
    /// <extra…>` and waits (at most [`START_TIMEOUT`]) until its API answers and it listens.
    #[track_caller]
    pub fn start(&self, name: &str, extra: &[&str]) -> TestNode {
        self.start_in_shell(name, None, extra)
    }

    /// Like [`TestNet::start`], but the daemon is started by `sh -c SETUP && exec licet-node …`
    /// in the work directory, so `setup` (e.g. `ulimit -n 256` or `umask 000`) sets the process
    /// up before it becomes the daemon (same process id). `$DATA_DIR` is its data directory,
    /// which exists (empty) when `setup` runs. Restarts run `setup` again.
    #[track_caller]
    pub fn start_in_shell(&self, name: &str, setup: Option<&str>, extra: &[&str]) -> TestNode {
        self.start_node(name, setup, None, extra)
    }

    /// Like [`TestNet::start`], but inside `host`'s network namespace of a [`lab::Lab`],
    /// listening on the host's address (`--listen /ip4/<host ip>/tcp/0`); its clients and API
    /// calls run inside the namespace too.
    #[track_caller]
    pub fn start_on(&self, host: &lab::Host, name: &str, extra: &[&str]) -> TestNode {
        self.start_node(name, None, Some(host), extra)
    }

    #[track_caller]
    fn start_node(
        &self,
        name: &str,
        setup: Option<&str>,
        host: Option<&lab::Host>,
        extra: &[&str],
    ) -> TestNode {
        let log = self.work.join(&format!("logs/{name}.log"));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        self.logs.borrow_mut().push((name.to_owned(), log.clone()));
        let mut node = TestNode {
            name: name.to_owned(),
            node_bin: self.node_bin.clone(),
            work_dir: self.work.path().to_owned(),
            data_dir: self.work.join(&format!("nodes/{name}")),
            log,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            shell_setup: setup.map(str::to_owned),
            log_filter: self.log_filter.clone(),
            host: host.cloned(),
            child: None,
            starts: 0,
            peer_id: String::new(),
            addr: String::new(),
        };
        node.spawn_and_wait();
        node
    }

    /// Starts a node that bootstraps from `peer`, and waits until it is connected to it.
    #[track_caller]
    pub fn start_joined(&self, name: &str, peer: &TestNode, extra: &[&str]) -> TestNode {
        let mut args = vec!["--bootstrap", peer.addr()];
        args.extend_from_slice(extra);
        let node = self.start(name, &args);
        node.wait_for_peer(peer);
        node
    }

    /// The last [`LOG_TAIL_LINES`] lines of every node's log, each under a header.
    pub fn log_tails(&self) -> String {
        let mut text = String::new();
        for (name, path) in self.logs.borrow().iter() {
            text.push_str(&format!(
                "\n===== {name}: last lines of {} =====\n{}",
                path.display(),
                log_tail(path, LOG_TAIL_LINES)
            ));
        }
        text
    }

    /// Prints [`TestNet::log_tails`] on stderr (which the test harness shows for a failed test).
    pub fn dump_logs(&self) {
        eprintln!("{}", self.log_tails());
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

/// The last `lines` lines of the file at `path` (or why it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// One `licet-node run` daemon, started by [`TestNet::start`]. Dropping it kills the daemon
/// (SIGKILL) and reaps it.
pub struct TestNode {
    name: String,
    node_bin: PathBuf,
    work_dir: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    shell_setup: Option<String>,
    /// Its `RUST_LOG`.
    log_filter: String,
    /// The lab host it runs in; `None`: on this machine's loopback.
    host: Option<lab::Host>,
    child: Option<Child>,
    starts: u32,
    peer_id: String,
    addr: String,
}

impl TestNode {
    /// The node's name in its net.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Its libp2p peer id.
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Its TCP listen address on 127.0.0.1, ending in `/p2p/<peer id>` (for `--bootstrap`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Waits (at most `timeout`) until its log has a line containing `text`; returns the line.
    #[track_caller]
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> String {
        wait_for(
            &format!("{} to log {text:?}", self.name),
            timeout,
            Duration::from_millis(50),
            || {
                let log = std::fs::read(&self.log).ok()?;
                String::from_utf8_lossy(&log)
                    .lines()
                    .find(|line| line.contains(text))
                    .map(str::to_owned)
            },
        )
    }

    /// Sets the daemon's limit on open files (soft and hard) with `prlimit`; returns the limits
    /// it had, as `prlimit --nofile=` takes them (`SOFT:HARD`), to put back.
    #[track_caller]
    pub fn set_open_files_limit(&self, limit: &str) -> String {
        let pid = self.pid().expect("the node is not running").to_string();
        let old = Command::new("prlimit")
            .args([
                "--pid",
                &pid,
                "--nofile",
                "--output=SOFT,HARD",
                "--noheadings",
                "--raw",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run prlimit (util-linux): {e}"));
        assert!(
            old.status.success(),
            "prlimit: {}",
            String::from_utf8_lossy(&old.stderr)
        );
        let old = String::from_utf8(old.stdout).unwrap();
        let old = old.split_whitespace().collect::<Vec<_>>().join(":");
        let set = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={limit}")])
            .output()
            .unwrap();
        assert!(
            set.status.success(),
            "prlimit: {}",
            String::from_utf8_lossy(&set.stderr)
        );
        old
    }

    fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        std::fs::create_dir_all(&self.data_dir).unwrap();
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(
            log,
            "===== start {} of {}: licet-node run {:?}",
            self.starts, self.name, self.extra
        )
        .unwrap();
        let mut command = match &self.shell_setup {
            None => self.command(&self.node_bin),
            Some(setup) => {
                let mut shell = self.command("sh");
                shell
                    .arg("-c")
                    .arg(format!("{setup} && exec \"$0\" \"$@\""))
                    .arg(&self.node_bin)
                    .env("DATA_DIR", &self.data_dir);
                shell
            }
        };
        command
            .arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &format!("/ip4/{}/tcp/0", self.ip())])
            // On this machine's loopback, no multicast may leave for its LAN (mDNS, UPnP);
            // inside a lab namespace it stays in the lab.
            .args(if self.host.is_none() {
                &["--no-mdns", "--no-upnp"][..]
            } else {
                &[]
            })
            .args(&self.extra)
            .current_dir(&self.work_dir)
            .env("RUST_LOG", &self.log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for name in CONFIG_ENV {
            command.env_remove(name);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.node_bin.display()));
        // Owned by `self` before any wait, so a panic below still kills it in `drop`.
        self.child = Some(child);

        // A restart after kill -9 finds the old `api-addr` still there: wait until `status`
        // answers, not merely until the file exists.
        let status = wait_for(
            &format!("{} to answer `status` and listen", self.name),
            START_TIMEOUT,
            Duration::from_millis(50),
            || {
                if let Some(exit) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    self.child = None;
                    panic!(
                        "{} exited ({exit}) before its API was up; log:\n{}",
                        self.name,
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
                if !self.data_dir.join("api-addr").exists() {
                    return None;
                }
                let out = self.client(&["status", "--json"]);
                if out.code != Some(0) {
                    return None;
                }
                let status = out.json();
                let listening = status["listen_addrs"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
                listening.then_some(status)
            },
        );
        self.peer_id = status["peer_id"].as_str().unwrap().to_owned();
        let addrs: Vec<&str> = status["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for addr in &addrs {
            assert!(
                addr.ends_with(&format!("/p2p/{}", self.peer_id)),
                "{}: listen address {addr} does not end in /p2p/<peer id>",
                self.name
            );
        }
        let prefix = format!("/ip4/{}/tcp/", self.ip());
        self.addr = addrs
            .iter()
            .find(|a| a.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{}: no address {prefix}… in {addrs:?}", self.name))
            .to_string();
    }

    /// The address it listens on: its lab host's, or 127.0.0.1.
    fn ip(&self) -> std::net::Ipv4Addr {
        self.host
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, lab::Host::ip)
    }

    /// A command that runs `program` where the node runs (inside its lab host, if any).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.host {
            Some(host) => host.command(program),
            None => Command::new(program),
        }
    }

    /// `licet-node --data-dir <its dir> args…`, to run where the node runs.
    pub fn client_command(&self, args: &[&str]) -> Command {
        let mut command = self.command(&self.node_bin);
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .current_dir(&self.work_dir);
        command
    }

    /// `licet-node --data-dir <its dir> args…`, started where the node runs, in the background.
    fn start_client(&self, args: &[&str]) -> Running {
        Running::start(self.client_command(args), format!("licet-node {args:?}"))
    }

    /// Runs `licet-node --data-dir <its dir> args…` with its standard output already closed
    /// by the reader (see [`Running::with_stdout_closed`]).
    pub fn client_into_closed_pipe(&self, args: &[&str]) -> Outcome {
        Running::with_stdout_closed(self.client_command(args), &format!("licet-node {args:?}"))
    }

    /// Runs `licet-node --data-dir <its dir> args…` (a client of its API).
    pub fn client(&self, args: &[&str]) -> Outcome {
        self.start_client(args).wait(COMMAND_TIMEOUT)
    }

    /// This node's entry for `peer` in `peers --json`, if any.
    pub fn peer_entry(&self, peer: &str) -> Option<serde_json::Value> {
        self.client_json(&["peers"])["peers"]
            .as_array()
            .expect("peers --json lists peers")
            .iter()
            .find(|p| p["peer_id"] == peer)
            .cloned()
    }

    /// Runs `licet-node --data-dir <its dir> args… --json`, which must succeed, and returns
    /// its output as JSON.
    #[track_caller]
    pub fn client_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.client(&all);
        assert_eq!(
            out.code,
            Some(0),
            "{}: licet-node {all:?} failed\n--- stdout\n{}\n--- stderr\n{}",
            self.name,
            out.stdout,
            out.stderr
        );
        out.json()
    }

    /// Starts `licet-node --data-dir <its dir> args…` in the background (e.g. a `get` that
    /// watches a download).
    pub fn spawn_client(&self, args: &[&str]) -> Running {
        self.start_client(args)
    }

    /// `licet-node trust add PUBKEY`, which must succeed.
    #[track_caller]
    pub fn trust(&self, publisher: &str) {
        self.client_json(&["trust", "add", publisher]);
    }

    /// The node after [`TestNode::trust`] of `publisher`, for `net.start(…).trusting(…)`.
    #[track_caller]
    pub fn trusting(self, publisher: &str) -> TestNode {
        self.trust(publisher);
        self
    }

    /// `licet-node add MANIFEST --content CONTENT --json`, which must succeed; its reply.
    #[track_caller]
    pub fn add(&self, manifest: &str, content: &str) -> serde_json::Value {
        self.client_json(&["add", manifest, "--content", content])
    }

    /// The item of `ls --json` whose `manifest_id` is `id`, if it is held.
    #[track_caller]
    pub fn content(&self, id: &str) -> Option<serde_json::Value> {
        let list = self.client_json(&["ls"]);
        list["content"]
            .as_array()
            .unwrap_or_else(|| panic!("`ls --json` has no content list: {list}"))
            .iter()
            .find(|item| item["manifest_id"] == id)
            .cloned()
    }

    /// Polls `ls --json` (every 100 ms, at most `timeout`) until `id`'s item satisfies `done`.
    #[track_caller]
    pub fn wait_for_content(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = None;
        let found = wait_or_none(timeout, Duration::from_millis(100), || {
            let item = self.content(id);
            let ok = item.as_ref().is_some_and(&done);
            last = item.clone();
            if ok { item } else { None }
        });
        found.unwrap_or_else(|| {
            panic!(
                "{}: timed out after {timeout:?} waiting for {id} to be {what}; last seen: {}",
                self.name,
                last.map_or("not held".to_owned(), |v| v.to_string())
            )
        })
    }

    /// Waits until `peer` is among this node's connected peers (`peers --json`).
    #[track_caller]
    pub fn wait_for_peer(&self, peer: &TestNode) {
        wait_for(
            &format!("{} to connect to {}", self.name, peer.name),
            CONNECT_TIMEOUT,
            Duration::from_millis(50),
            || {
                let peers = self.client_json(&["peers"]);
                peers["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["peer_id"] == peer.peer_id())
                    .then_some(())
            },
        );
    }

    /// `GET /metrics` on its API address (no token), as text.
    #[track_caller]
    pub fn metrics(&self) -> String {
        let (head, body) = self.http_get("/metrics", &[]);
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{}: GET /metrics answered {head}",
            self.name
        );
        body
    }

    /// Its control API's address, from `DATA_DIR/api-addr`.
    #[track_caller]
    pub fn api_addr(&self) -> std::net::SocketAddr {
        let addr_text = std::fs::read_to_string(self.data_dir.join("api-addr"))
            .unwrap_or_else(|e| panic!("{}: no api-addr: {e}", self.name));
        addr_text.trim().parse().unwrap()
    }

    /// A TCP connection to `addr` from where the node runs (its lab host's namespace, if any).
    #[track_caller]
    pub fn connect(&self, addr: std::net::SocketAddr) -> std::net::TcpStream {
        let connect = || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{}: cannot connect to {addr}: {e}", self.name))
        };
        match &self.host {
            Some(host) => host.run_inside(connect),
            None => connect(),
        }
    }

    /// `GET path` on its API address over HTTP/1.0 with `headers` (no token unless given);
    /// the reply's head (status line and headers) and body.
    #[track_caller]
    pub fn http_get(&self, path: &str, headers: &[(&str, &str)]) -> (String, String) {
        use std::io::Read as _;
        let addr = self.api_addr();
        let mut stream = self.connect(addr);
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // HTTP/1.0: the reply is not chunked and ends when the connection closes.
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let (head, body) = reply
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP reply: {reply}"));
        (head.to_owned(), body.to_owned())
    }

    /// Opens a control API request that stays in flight: a `POST /v1/content` with the token
    /// whose body never arrives in full. Returns once the daemon's handler is reading the body
    /// (it asked for it with `100 Continue`), with the connection still open.
    #[track_caller]
    pub fn hold_request_in_flight(&self) -> std::net::TcpStream {
        let addr = self.api_addr();
        let token = std::fs::read_to_string(self.data_dir.join("api-token")).unwrap();
        let mut stream = self.connect(addr);
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let request = format!(
            "POST /v1/content?content_dir=/in-flight HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: 4096\r\nExpect: 100-continue\r\n\r\n",
            token.trim()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => reply.push(byte[0]),
                other => panic!("{}: no 100 Continue ({other:?}), got {reply:?}", self.name),
            }
        }
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("HTTP/1.1 100"),
            "{}: the daemon answered before reading the body: {reply}",
            self.name
        );
        stream.write_all(b"the first bytes of a manifest").unwrap();
        stream
    }

    /// The value of the sample `name` (with its labels, exactly as exposed, e.g.
    /// `licet_refusals_total{reason="Expired"}`) in its `/metrics`; 0 if the sample is absent but
    /// its metric is declared (a labelled counter not yet counted). Panics if the metric itself
    /// is unknown, so a misspelt name cannot pass as 0.
    #[track_caller]
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((key, value)) = line.rsplit_once(' ')
                && key == name
            {
                return value.parse().unwrap();
            }
        }
        let family = name.split('{').next().unwrap();
        let base = family.strip_suffix("_total").unwrap_or(family);
        // Prometheus text names a counter's family with `_total`, OpenMetrics without.
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))
                    || l.starts_with(&format!("# TYPE {base} "))),
            "{}: /metrics has no metric {family}:\n{text}",
            self.name
        );
        0.0
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the node is not running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM (with the `kill` command) and waits at most [`STOP_TIMEOUT`] for the daemon
    /// to exit; returns how it exited. Panics (after SIGKILL) if it does not.
    #[track_caller]
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.pid().expect("the node is not running").to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let child = self.child.as_mut().unwrap();
        let exited = wait_or_none(STOP_TIMEOUT, Duration::from_millis(20), || {
            child.try_wait().unwrap()
        });
        match exited {
            Some(status) => {
                self.child = None;
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.name,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
        }
    }

    /// Starts the daemon again with the same data directory and arguments (its listen port
    /// changes: `tcp/0`).
    #[track_caller]
    pub fn restart(&mut self) {
        self.spawn_and_wait();
    }

    /// Starts the daemon again with the same data directory and new extra arguments.
    #[track_caller]
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| (*s).to_owned()).collect();
        self.spawn_and_wait();
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Like [`wait_for`], but returns `None` on timeout instead of panicking.
fn wait_or_none<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

impl TestNode {
    /// Stops the daemon with SIGSTOP: it keeps its connections and its state and does nothing
    /// (its API does not answer) until [`TestNode::resume`]. A download caught this way stays
    /// in flight for as long as the test needs. Dropping a paused node still kills it.
    #[track_caller]
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a daemon stopped by [`TestNode::pause`] run again (SIGCONT).
    #[track_caller]
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Sends SIGHUP: the daemon reloads its `config.toml`.
    #[track_caller]
    pub fn reload(&self) {
        self.signal("-HUP");
    }

    #[track_caller]
    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the node is not running").to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid} failed");
    }
}
