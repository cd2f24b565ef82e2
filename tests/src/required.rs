//! What a test needs from the machine (a command, a small filesystem to fill) and cannot get:
//! outside CI the test says so and returns; under CI it fails.
//!
//! `.ci/run` sets `CI` and installs every tool a test needs (or stops), so under CI a test that
//! cannot run is a broken machine or a broken script, never a pass. Elsewhere (a developer's
//! laptop without `promtool`) the test prints `SKIPPED: …`, which `cargo test -- --nocapture`
//! shows.

/// Whether the command `program` runs here (`program ARGS` exits 0).
pub fn command_runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reports that the calling test cannot run here because `why`: fails the test under CI,
/// otherwise prints that it skipped. The caller returns right after.
#[track_caller]
pub fn cannot_run_here(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "this test cannot run here ({why}); under CI every test must run, and .ci/run installs \
         what they need"
    );
    eprintln!("SKIPPED: {why}");
}
