//! The CLI contract of `licet-node`: every subcommand has `--help` with an example, usage
//! errors exit 2, and a client command with no daemon running says so and exits 2. (Also makes
//! `cargo test --workspace` build the binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

const SUBCOMMANDS: &[&[&str]] = &[
    &["run"],
    &["trust"],
    &["trust", "add"],
    &["trust", "ls"],
    &["trust", "rm"],
    &["add"],
    &["get"],
    &["ls"],
    &["status"],
    &["peers"],
    &["check"],
    &["rm"],
];

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

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in SUBCOMMANDS {
        let out = node().args(*sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("Example"),
            "{sub:?} --help has no example:\n{text}"
        );
        assert!(
            text.contains("licet-node "),
            "{sub:?} --help example does not show the command"
        );
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
        stderr.starts_with("licet-node: error:") && stderr.contains("daemon"),
        "unexpected message: {stderr}"
    );
}
