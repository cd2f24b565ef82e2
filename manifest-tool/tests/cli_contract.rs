//! The CLI contract of `licet-manifest`: every subcommand has `--help` with an example, the
//! subcommands the README names (and only those) have `--json`, usage errors exit 2. (Also makes
//! `cargo test --workspace` build the binary the end-to-end tests run.)
//!
//! The subcommands are those the binary's own `--help` lists (clap renders its command tree
//! there), walked down every level, so a new subcommand is checked without being named here.

#![allow(clippy::unwrap_used)]

use std::process::Command;

mod help_examples;

use help_examples::check_examples;

/// Subcommands that exist today: the walk must find at least these, so a change in how clap
/// lays out `--help` cannot make it find nothing and pass.
const KNOWN: &[&str] = &[
    "keygen",
    "pubkey",
    "create",
    "verify",
    "inspect",
    "delegate",
    "catalog",
    "catalog new",
    "catalog add",
    "catalog revoke",
    "catalog revoke-delegate",
    "catalog sign",
    "catalog inspect",
    "licence",
    "licence issue",
    "deliveries",
    "deliveries merge",
    "completions",
    "man",
];

/// The subcommands with `--json`, as the README lists them.
const WITH_JSON: &[&str] = &[
    "create",
    "verify",
    "inspect",
    "catalog sign",
    "catalog inspect",
    "licence issue",
    "deliveries merge",
];

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_licet-manifest"))
}

/// `licet-manifest PATH… --help`, which must succeed.
fn help(path: &[String]) -> String {
    let out = tool().args(path).arg("--help").output().unwrap();
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

/// Every subcommand path under `path` (groups before their members) with its `--help`.
fn walk(path: &[String], found: &mut Vec<(Vec<String>, String)>) {
    for name in listed_subcommands(&help(path)) {
        let mut sub = path.to_vec();
        sub.push(name);
        found.push((sub.clone(), help(&sub)));
        walk(&sub, found);
    }
}

#[test]
fn every_subcommand_has_help_with_an_example_and_the_readmes_have_json() {
    let mut found = Vec::new();
    walk(&[], &mut found);
    let names: Vec<String> = found.iter().map(|(path, _)| path.join(" ")).collect();
    for known in KNOWN {
        assert!(
            names.iter().any(|n| n == known),
            "`licet-manifest --help` and below do not list {known:?}; found {names:?}"
        );
    }
    let mut with_json = Vec::new();
    for (path, text) in &found {
        let name = path.join(" ");
        // "Example:" or "Examples:", at the start of a line.
        let example = text
            .split_once("\nExample")
            .unwrap_or_else(|| panic!("`licet-manifest {name} --help` has no example:\n{text}"))
            .1;
        assert!(
            example.contains(&format!("licet-manifest {name}")),
            "the example of `licet-manifest {name} --help` does not show the command:\n{text}"
        );
        if text
            .lines()
            .any(|line| line.trim_start().starts_with("--json "))
        {
            with_json.push(name);
        }
    }
    assert_eq!(
        with_json, WITH_JSON,
        "the subcommands with --json are not those the README names"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = tool().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = tool().args(["create", "--title", "T"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("required"));
}

#[test]
fn every_help_example_parses_and_fits_80_columns() {
    let mut found = Vec::new();
    walk(&[], &mut found);
    let mut texts: Vec<String> = found.into_iter().map(|(_, text)| text).collect();
    texts.push(help(&[]));
    let (problems, checked) = check_examples(&texts, "licet-manifest", |args| {
        tool().args(args).arg("--help").output().unwrap()
    });
    assert!(
        problems.is_empty(),
        "help examples:\n{}",
        problems.join("\n")
    );
    assert!(checked >= KNOWN.len(), "only {checked} examples found");
}
