//! The CLI contract of `licet-manifest`: every subcommand has `--help` with an example, usage
//! errors exit 2. (Also makes `cargo test --workspace` build the binary the end-to-end tests run.)

use std::process::Command;

const SUBCOMMANDS: &[&[&str]] = &[
    &["keygen"],
    &["pubkey"],
    &["create"],
    &["verify"],
    &["inspect"],
    &["delegate"],
    &["catalog", "new"],
    &["catalog", "add"],
    &["catalog", "revoke"],
    &["catalog", "revoke-delegate"],
    &["catalog", "sign"],
    &["catalog", "inspect"],
];

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_licet-manifest"))
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in SUBCOMMANDS {
        let out = tool().args(*sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("Example"),
            "{sub:?} --help has no example:\n{text}"
        );
        assert!(
            text.contains("licet-manifest "),
            "{sub:?} --help example does not show the command"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = tool().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = tool().args(["create", "--title", "T"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("required"));
}
