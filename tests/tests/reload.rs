//! `SIGHUP` reloads `config.toml` on a running daemon: limits, `[[trust]]` and `log` change at
//! once, with each change logged as `old → new`; settings that need a restart are named as such;
//! flags and `RUST_LOG` keep winning over the file; a file that does not load changes nothing
//! and the log says why.
//!
//! Every wait is bounded; every daemon is killed when its `TestNode` is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_tests::{TestNet, TestNode};

/// How long a reload may take to show in the log.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

fn write_config(node: &TestNode, text: &str) {
    std::fs::write(node.data_dir().join("config.toml"), text).unwrap();
}

/// `limits --json`'s configured rate `name`, in bytes per second (0: none).
fn configured(node: &TestNode, name: &str) -> u64 {
    node.client_json(&["limits"])["configured"][name]
        .as_u64()
        .unwrap()
}

/// The publishers `trust ls --json` lists, with their names.
fn trusted(node: &TestNode) -> Vec<(String, Option<String>, bool)> {
    node.client_json(&["trust", "ls"])["publishers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["publisher"].as_str().unwrap().to_owned(),
                p["name"].as_str().map(str::to_owned),
                p["require_catalog"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn sighup_reloads_limits_and_trust_and_a_broken_file_changes_nothing() {
    let net = TestNet::new();
    let acme = net.work().keygen("acme.pem");
    let other = net.work().keygen("other.pem");
    let node = net.start("a", &["--download-limit", "4MiB/s"]);
    node.client_json(&["trust", "add", &other, "--name", "Other"]);

    write_config(
        &node,
        &format!(
            "log = \"debug\"\n\
             [limits]\nupload = \"1MiB/s\"\ndownload = \"1MiB/s\"\n\
             [[trust]]\npublisher = \"{acme}\"\nname = \"Acme\"\nrequire_catalog = true\n"
        ),
    );
    node.reload();
    node.wait_for_log(
        "config.toml reloaded: limits.upload: unlimited → 1 MiB/s",
        RELOAD_TIMEOUT,
    );
    node.wait_for_log(
        "config.toml: log: (default) → debug not used: RUST_LOG is set and wins",
        RELOAD_TIMEOUT,
    );
    node.wait_for_log(
        "config.toml: limits.download: unlimited → 1 MiB/s not used: a flag or a LICET_* \
         variable is set and wins",
        RELOAD_TIMEOUT,
    );
    assert_eq!(configured(&node, "upload"), 1024 * 1024);
    assert_eq!(
        configured(&node, "download"),
        4 * 1024 * 1024,
        "--download-limit wins over the file, as at start"
    );
    let mut expected = vec![
        (acme.clone(), Some("Acme".to_owned()), true),
        (other.clone(), Some("Other".to_owned()), false),
    ];
    expected.sort();
    let mut shown = trusted(&node);
    shown.sort();
    assert_eq!(shown, expected);

    write_config(&node, "[limits]\nupload = \"fast\"\n");
    node.reload();
    let refused = node.wait_for_log("config.toml not reloaded", RELOAD_TIMEOUT);
    assert!(
        refused.contains("the running settings stay")
            && refused.contains("limits.upload")
            && refused.contains("fast"),
        "{refused}"
    );
    assert_eq!(configured(&node, "upload"), 1024 * 1024);
    let mut shown = trusted(&node);
    shown.sort();
    assert_eq!(shown, expected, "a broken file changes no trust");

    write_config(&node, "region = \"FR\"\n[limits]\nupload = \"2MiB/s\"\n");
    node.reload();
    node.wait_for_log(
        "config.toml reloaded: limits.upload: 1 MiB/s → 2 MiB/s",
        RELOAD_TIMEOUT,
    );
    let region = node.wait_for_log("config.toml: region:", RELOAD_TIMEOUT);
    assert!(region.contains("(none) → FR needs a restart"), "{region}");
    node.wait_for_log("gone from config.toml", RELOAD_TIMEOUT);
    assert_eq!(configured(&node, "upload"), 2 * 1024 * 1024);
    assert_eq!(
        trusted(&node),
        [(other, Some("Other".to_owned()), false)],
        "the publisher gone from the file is no longer trusted; one added with `trust add` stays"
    );

    write_config(&node, "[limits]\nupload = \"2MiB/s\"\n");
    node.reload();
    node.wait_for_log("config.toml reloaded: nothing changed", RELOAD_TIMEOUT);
}

#[test]
fn trust_of_the_file_is_in_force_at_start() {
    let net = TestNet::new();
    let acme = net.work().keygen("acme.pem");
    let dir = net.work().join("nodes/a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("[[trust]]\npublisher = \"{acme}\"\nname = \"Acme\"\n"),
    )
    .unwrap();
    let node = net.start("a", &[]);
    assert_eq!(trusted(&node), [(acme, Some("Acme".to_owned()), false)]);
}

#[test]
fn sighup_changes_the_log_filter_when_rust_log_does_not_set_one() {
    // A RUST_LOG that is no filter counts as unset: the file's `log` is used.
    let net = TestNet::new().with_log_filter("licet_node=loud");
    let node = net.start("a", &[]);
    write_config(&node, "log = \"warn\"\n[limits]\nupload = \"1MiB/s\"\n");
    node.reload();
    // Logged under the filter it replaces.
    node.wait_for_log(
        "config.toml reloaded: log: (default) → warn",
        RELOAD_TIMEOUT,
    );
    licet_tests::wait_for(
        "the reload to put 1 MiB/s in force",
        RELOAD_TIMEOUT,
        Duration::from_millis(50),
        || (configured(&node, "upload") == 1024 * 1024).then_some(()),
    );
    let log = node.log_tail(1000);
    assert!(
        !log.contains("unlimited → 1 MiB/s"),
        "an info line was logged under log = \"warn\":\n{log}"
    );
    write_config(&node, "log = \"info\"\n[limits]\nupload = \"2MiB/s\"\n");
    node.reload();
    node.wait_for_log(
        "config.toml reloaded: limits.upload: 1 MiB/s → 2 MiB/s",
        RELOAD_TIMEOUT,
    );
}
