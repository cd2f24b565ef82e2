//! The CLI contract of `licet-node`: every subcommand has `--help` with an example (and every
//! client subcommand `--json`), usage errors exit 2, a client command with no daemon running
//! says so and exits 2, and `api-doc` prints the control API's description with no daemon. (Also makes `cargo test --workspace` build the binary that the
//! end-to-end tests in `tests/` run.)
//!
//! The subcommands are those the binary's own `--help` lists (clap renders its command tree
//! there), walked down every level, so a new subcommand is checked without being named here.

#![allow(clippy::unwrap_used)]

use std::process::Command;

// The same parser as the manifest tool's contract test: one copy, in that crate's tests.
#[path = "../../manifest-tool/tests/help_examples/mod.rs"]
mod help_examples;

use help_examples::check_examples;

/// Subcommands that exist today: the walk must find at least these, so a change in how clap
/// lays out `--help` cannot make it find nothing and pass.
const KNOWN: &[&str] = &[
    "run",
    "api-doc",
    "trust",
    "trust add",
    "trust ls",
    "trust rm",
    "add",
    "get",
    "ls",
    "status",
    "peers",
    "check",
    "rm",
    "catalog",
    "catalog publish",
    "catalog ls",
    "licence",
    "licence key",
    "completions",
    "man",
];

/// Subcommands that work without a daemon, so have no `--json`: the daemon itself, the
/// completion scripts and man pages, which are text for a shell or for `man`, and `api-doc`,
/// whose output is JSON already.
const LOCAL: &[&str] = &["run", "completions", "man", "api-doc"];

fn node() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_licet-node"));
    for var in [
        "LICET_DATA_DIR",
        "LICET_LISTEN",
        "LICET_BOOTSTRAP",
        "LICET_REGION",
    ] {
        command.env_remove(var);
    }
    command
}

/// `licet-node PATH… --help`, which must succeed.
fn help(path: &[String]) -> String {
    let out = node().args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The names under `Commands:` in a `--help` text (not `help`): the lines indented by two
/// spaces exactly (a description that wraps is indented further).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every subcommand path under `path` (groups before their members) with its `--help`, and
/// whether it has subcommands of its own.
fn walk(path: &[String], found: &mut Vec<(Vec<String>, String, bool)>) {
    for name in listed_subcommands(&help(path)) {
        let mut sub = path.to_vec();
        sub.push(name);
        let text = help(&sub);
        let group = !listed_subcommands(&text).is_empty();
        found.push((sub.clone(), text, group));
        walk(&sub, found);
    }
}

#[test]
fn every_subcommand_has_help_with_an_example_and_every_client_subcommand_json() {
    let mut found = Vec::new();
    walk(&[], &mut found);
    let names: Vec<String> = found.iter().map(|(path, ..)| path.join(" ")).collect();
    for known in KNOWN {
        assert!(
            names.iter().any(|n| n == known),
            "`licet-node --help` and below do not list {known:?}; found {names:?}"
        );
    }
    for (path, text, group) in &found {
        let name = path.join(" ");
        let example = text
            .split_once("\nExample")
            .unwrap_or_else(|| panic!("`licet-node {name} --help` has no example:\n{text}"))
            .1;
        assert!(
            example.contains(&format!("licet-node {name}")),
            "the example of `licet-node {name} --help` does not show the command:\n{text}"
        );
        // Every client subcommand (all but the local ones and the groups) has --json.
        if !group && !LOCAL.contains(&name.as_str()) {
            assert!(
                text.lines()
                    .any(|line| line.trim_start().starts_with("--json ")),
                "`licet-node {name}` has no --json:\n{text}"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = node().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = node().args(["trust", "add"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("required"));
}

#[test]
fn a_client_command_without_a_daemon_says_so_and_exits_2() {
    let data_dir = tempfile::tempdir().unwrap();
    let out = node()
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("licet-node: error:")
            && stderr.contains("daemon")
            && stderr.contains(&data_dir.path().display().to_string()),
        "unexpected message (it must name the directory looked at): {stderr}"
    );
    // LICET_DATA_DIR is the same directory for a client as for the daemon.
    let out = node()
        .env("LICET_DATA_DIR", data_dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&data_dir.path().display().to_string()),
        "LICET_DATA_DIR was not the directory looked at: {stderr}"
    );
}

/// `run --help` says what a node does when given no flags: where its data directory is, that
/// it listens for TCP and QUIC on all interfaces on port 4610, and that the API takes a free
/// loopback port; and how the data directory is chosen.
#[test]
fn run_help_states_the_defaults() {
    // Words as a reader sees them, whatever width clap wraps to.
    let text = help(&["run".to_owned()])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for default in [
        "~/.local/share/licet",
        "TCP and QUIC on all interfaces, port 4610",
        "/ip4/0.0.0.0/tcp/4610",
        "/ip4/0.0.0.0/udp/4610/quic-v1",
        "127.0.0.1:0, a free port",
        "else LICET_DATA_DIR",
    ] {
        assert!(
            text.contains(default),
            "`run --help` does not say {default:?}:\n{text}"
        );
    }
}

#[test]
fn every_help_example_parses_and_fits_80_columns() {
    let mut found = Vec::new();
    walk(&[], &mut found);
    let mut texts: Vec<String> = found.into_iter().map(|(_, text, _)| text).collect();
    texts.push(help(&[]));
    let (problems, checked) = check_examples(&texts, "licet-node", |args| {
        node().args(args).arg("--help").output().unwrap()
    });
    assert!(
        problems.is_empty(),
        "help examples:\n{}",
        problems.join("\n")
    );
    assert!(checked >= KNOWN.len(), "only {checked} examples found");
}

/// `api-doc` needs no daemon nor data directory: it prints the description the code makes, which
/// is OpenAPI 3.1 JSON (a daemon serves the same at `GET /v1/openapi.json`).
#[test]
fn api_doc_prints_the_openapi_description_without_a_daemon() {
    let empty = tempfile::tempdir().unwrap();
    let out = node()
        .arg("--data-dir")
        .arg(empty.path().join("no-such-dir"))
        .arg("api-doc")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.trim_end() == licet_node::api::openapi::description_json(),
        "api-doc prints another description than the code makes"
    );
    let description: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(description["openapi"], "3.1.0");
    assert!(
        description["paths"]["/v1/status"]["get"].is_object(),
        "{description:#}"
    );
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "api-doc wrote files"
    );
}
