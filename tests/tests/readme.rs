//! The README is the user's contract, held to it two ways: the source files it names (the crate
//! map, the tables of what Licet refuses and of its tests) must exist, so that a newcomer
//! following it never lands on a file that moved; and the `sh` blocks of "Quick start", "The
//! rights holder's flow, by hand" and "Running a node" run as written, in order, against the
//! built binaries and real daemons (see `the_readme_sections_a_new_user_follows_run_as_written`
//! for the one substitution it makes: ports).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// Every path in `text` that starts at one of the workspace's top folders and names a file
/// (`node/src/fetch/mod.rs`, `bench/transfer.py`), as written.
fn named_files(text: &str) -> Vec<&str> {
    const TOPS: &[&str] = &[
        "node/",
        "proto/",
        "manifest-tool/",
        "tests/",
        "bench/",
        "scripts/",
        "fuzz/",
        ".ci/",
        "dist/",
    ];
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    let mut found = Vec::new();
    for (at, _) in text.char_indices() {
        let rest = &text[at..];
        let starts_word = at == 0 || !text[..at].ends_with(is_path_char);
        if !starts_word || !TOPS.iter().any(|top| rest.starts_with(top)) {
            continue;
        }
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches('.');
        let file_name = path.rsplit('/').next().unwrap_or_default();
        if file_name.contains('.') {
            found.push(path);
        }
    }
    found
}

#[test]
fn every_file_the_readme_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let named = named_files(&readme);
    assert!(named.len() > 10, "the README names source files: {named:?}");
    let missing: Vec<&str> = named
        .into_iter()
        .filter(|p| !root.join(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the README names files that do not exist: {missing:?}"
    );
}

#[test]
fn file_names_are_read_whole_and_only_at_a_word_start() {
    let text =
        "see `node/src/fetch/mod.rs`, (bench/transfer.py). not xnode/src/a.rs; node/src/ alone";
    assert_eq!(
        named_files(text),
        ["node/src/fetch/mod.rs", "bench/transfer.py"]
    );
}

/// The sections whose `sh` blocks a new user runs in order, as the README orders them.
const RUN_SECTIONS: [&str; 3] = [
    "Quick start",
    "The rights holder's flow, by hand",
    "Running a node",
];

/// The ```` ```sh ```` blocks of the section headed `## {title}` (other fences are shown, not run).
fn sh_blocks<'a>(readme: &'a str, title: &str) -> Vec<&'a str> {
    let heading = format!("\n## {title}\n");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("the README has no section {title:?}"))
        + heading.len();
    let end = readme[start..]
        .find("\n## ")
        .map_or(readme.len(), |at| start + at);
    let mut blocks = Vec::new();
    let mut rest = &readme[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + "```sh\n".len()..];
        let close = body.find("```\n").expect("an sh block is closed");
        blocks.push(&body[..close]);
        rest = &body[close..][4..];
    }
    blocks
}

/// One shell command per item: lines ending in `\` joined with the next.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The script the test runs: the blocks' commands as written, except that a `licet-node run`
/// (a daemon the README runs in the foreground of its own shell) is started in the background,
/// its log kept, and waited for, as a user waits before typing into a second shell.
fn script(sections: &[(&str, Vec<&str>)]) -> String {
    let mut script = String::from(
        r#"set -euo pipefail
readme_wait_for_daemon() {
  local dir=() joins=no
  while [ $# -gt 0 ]; do
    case "$1" in --data-dir) dir=(--data-dir "$2"); shift ;; --bootstrap) joins=yes ;; esac
    shift
  done
  for _ in $(seq 600); do
    if licet-node "${dir[@]}" status >/dev/null 2>&1; then
      if [ "$joins" = no ] || licet-node "${dir[@]}" peers --json | grep -q '"peer_id"'; then
        return 0
      fi
    fi
    sleep 0.1
  done
  echo "the daemon ${dir[*]} did not answer (or join) within 60 s" >&2
  return 1
}
"#,
    );
    let mut daemons = 0;
    for (title, blocks) in sections {
        script.push_str(&format!("\n# ==== {title}\n"));
        if *title != "Quick start" {
            script.push_str("cd \"$README_WORK\"\n");
        }
        for block in blocks {
            for command in commands(block) {
                if command.starts_with("licet-node run") {
                    daemons += 1;
                    let args = command.split(" # ").next().unwrap().trim_end();
                    let args = args.trim_start_matches("licet-node run");
                    script.push_str(&format!(
                        "licet-node run{args} >\"$README_LOGS/daemon-{daemons}.log\" 2>&1 &\n\
                         echo $! >>\"$README_LOGS/pids\"\n\
                         readme_wait_for_daemon{args}\n"
                    ));
                } else {
                    script.push_str(&command);
                    script.push('\n');
                }
            }
        }
    }
    script
}

/// A port free for TCP and UDP on 127.0.0.1 (not `avoid`).
fn free_port(avoid: u16) -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = tcp.local_addr().unwrap().port();
        if port != avoid && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Stops the daemons the script started (their pids in `README_LOGS/pids`), also on failure.
struct Daemons(std::path::PathBuf);

impl Drop for Daemons {
    fn drop(&mut self) {
        let pids = std::fs::read_to_string(&self.0).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", pid])
                .stderr(std::process::Stdio::null())
                .status();
        }
        for pid in pids.split_whitespace() {
            let proc_dir = Path::new("/proc").join(pid);
            for _ in 0..300 {
                if !proc_dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The README's "Quick start", "The rights holder's flow, by hand" and "Running a node" run as
/// written, in order, in one shell: a fresh `HOME`, the built binaries first on `PATH`
/// (`LICET_BIN_DIR` for the quick start's script), and the one substitution the README states:
/// ports 4610 and 4611 become free ports, `0.0.0.0` becomes 127.0.0.1, and the default listen
/// addresses are set to port 4610's stand-in on 127.0.0.1 (`LICET_LISTEN`), with mDNS and UPnP
/// off. The fetched episode must be the published one.
#[test]
fn the_readme_sections_a_new_user_follows_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let sections: Vec<(&str, Vec<&str>)> = RUN_SECTIONS
        .iter()
        .map(|title| (*title, sh_blocks(&readme, title)))
        .collect();
    for (title, blocks) in &sections {
        assert!(!blocks.is_empty(), "section {title:?} has no sh block");
    }
    let port_a = free_port(0);
    let port_b = free_port(port_a);
    let script = script(&sections)
        .replace("4610", &port_a.to_string())
        .replace("4611", &port_b.to_string())
        .replace("0.0.0.0", "127.0.0.1");

    let tmp = tempfile::tempdir().expect("temporary directory");
    let (home, work, logs, tmpdir) = (
        tmp.path().join("home"),
        tmp.path().join("work"),
        tmp.path().join("logs"),
        tmp.path().join("tmp"),
    );
    for dir in [&home, &work, &logs, &tmpdir] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let _daemons = Daemons(logs.join("pids"));
    let bin_dir = licet_tests::bin("licet-node").parent().unwrap().to_owned();
    licet_tests::bin("licet-manifest");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = std::process::Command::new("bash");
    command
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("HOME", &home)
        .env("PATH", path)
        .env("LICET_BIN_DIR", &bin_dir)
        .env("README_WORK", &work)
        .env("README_LOGS", &logs)
        .env(
            "LICET_LISTEN",
            format!("/ip4/127.0.0.1/tcp/{port_a},/ip4/127.0.0.1/udp/{port_a}/quic-v1"),
        )
        .env("LICET_MDNS", "false")
        .env("LICET_UPNP", "false")
        .env("NO_COLOR", "1")
        .env("TMPDIR", &tmpdir)
        .env_remove("XDG_DATA_HOME")
        .env_remove("RUST_LOG");
    for name in [
        "LICET_DATA_DIR",
        "LICET_BOOTSTRAP",
        "LICET_REGION",
        "LICET_API_LISTEN",
        "LICET_CATALOG_POLL",
    ] {
        command.env_remove(name);
    }
    let out = licet_tests::Running::start(command, "the README's sh blocks".to_owned())
        .wait(std::time::Duration::from_secs(900));
    let daemon_logs: String = (1..=2)
        .map(|n| {
            let log = logs.join(format!("daemon-{n}.log"));
            format!(
                "\n--- daemon {n}\n{}",
                licet_tests::log_tail(&log, licet_tests::LOG_TAIL_LINES)
            )
        })
        .collect();
    assert_eq!(
        out.code,
        Some(0),
        "the README's commands failed\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}{daemon_logs}",
        out.stdout,
        out.stderr
    );
    licet_tests::assert_same_file(
        &work.join("release/episode-1.mkv"),
        &home.join("Videos/episode-1/episode-1.mkv"),
    );
    // The paid release's plaintext, decrypted by the second node with its licence.
    licet_tests::assert_same_file(
        &work.join("release/episode-1.mkv"),
        &home.join("Videos/paid-episode/episode-1.mkv"),
    );
    assert!(
        out.stdout.contains("revoked"),
        "the takedown's verify did not say revoked:\n{}",
        out.stdout
    );
    // The quick start removed what it made and said what to do next.
    let left: Vec<_> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("tmp."))
        .collect();
    assert!(left.is_empty(), "the quick start left {left:?}");
    assert!(
        out.stdout
            .contains("next: put licet-manifest and licet-node on your PATH")
            && out.stdout.contains("\"Running a node\" in README.md"),
        "the quick start did not say what to do next:\n{}",
        out.stdout
    );
}

/// The quick start's build shows cargo's progress (the first build takes minutes, never in
/// silence), says how long it takes, and the prerequisites name the C compiler it needs.
#[test]
fn the_quick_start_build_shows_progress_and_its_prerequisites_are_named() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = std::fs::read_to_string(root.join("scripts/quickstart.sh")).unwrap();
    let builds: Vec<&str> = script
        .lines()
        .filter(|line| line.trim_start().starts_with("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "the quick start builds nothing");
    for build in builds {
        let words: Vec<&str> = build.split_whitespace().collect();
        assert!(
            !words.contains(&"--quiet") && !words.contains(&"-q"),
            "a silent build: {build}"
        );
    }
    assert!(script.contains("the first build takes about 10 minutes"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quick_start = &readme[readme.find("\n## Quick start\n").unwrap()..];
    let prerequisites = &quick_start[..quick_start.find("```").unwrap()];
    for named in ["Rust", "C compiler", "Python 3"] {
        assert!(
            prerequisites.contains(named),
            "prerequisites without {named}"
        );
    }
}
