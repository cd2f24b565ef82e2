//! Helpers for the end-to-end tests: find the real binaries, run them with a deadline, and keep
//! their output for assertions.
//!
//! The binaries are the ones cargo built next to the test executable (`target/<profile>/`), so
//! `cargo test --workspace` always tests what it just built.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// How long any one command may run before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The path of a workspace binary built for this test run.
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
        "{} is missing: run the tests with `cargo test --workspace` so cargo builds it",
        path.display()
    );
    path
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
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
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
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not finish within {COMMAND_TIMEOUT:?}",
                program.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status.code(),
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
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
