//! `licet-node run` as a system service: the unit in `dist/` passes `systemd-analyze verify`;
//! the daemon tells the service manager `READY=1` once its API answers and `STOPPING=1` when
//! SIGTERM stops it (systemd's `Type=notify` protocol, on a socket the test binds); and
//! `--log-format json` writes nothing on stderr but JSON lines with a level and a message.
//!
//! The unit test needs `systemd-analyze` (Debian's `systemd`) and `man` (`man-db`), which
//! `.ci/run` installs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use licet_tests::{
    COMMAND_TIMEOUT, Running, START_TIMEOUT, STOP_TIMEOUT, bin, required, run, wait_for,
};

/// `licet-node run` on loopback only, with `data_dir`, `extra` flags and `env`; its output
/// piped, and killed if the test ends early.
fn start_daemon(data_dir: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Running {
    let mut command = Command::new(bin("licet-node"));
    command
        .arg("run")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-upnp"])
        .args(extra)
        .current_dir(data_dir.parent().unwrap())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for name in [
        "LICET_DATA_DIR",
        "LICET_LISTEN",
        "LICET_BOOTSTRAP",
        "LICET_API_LISTEN",
        "NOTIFY_SOCKET",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    Running::start(command, format!("licet-node run {extra:?}"))
}

/// `licet-node --data-dir DIR status --json`, once.
fn status(data_dir: &Path) -> licet_tests::Outcome {
    run(
        &bin("licet-node"),
        data_dir.parent().unwrap(),
        &["--data-dir", data_dir.to_str().unwrap(), "status", "--json"],
    )
}

fn terminate(daemon: &Running) {
    let pid = daemon.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid} failed");
}

/// Receives notify messages on `socket` until one has the line `state`, for at most
/// `timeout`; returns that message. Panics if the daemon exits or the time runs out first.
fn receive_until(
    socket: &UnixDatagram,
    daemon: &mut Running,
    state: &str,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Set once the daemon has exited: what it sent before is still queued on the socket, so
    // one more receive takes it before the test gives up.
    let mut exited = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {state} within {timeout:?}; received {seen:?}"
        );
        socket
            .set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.lines().any(|line| line == state) {
                    return message;
                }
                seen.push(message);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(
                    !exited,
                    "the daemon exited before sending {state}; received {seen:?}"
                );
                exited = daemon.has_exited();
            }
            Err(e) => panic!("cannot receive on the notify socket: {e}"),
        }
    }
}

#[test]
fn the_daemon_tells_systemd_ready_once_its_api_answers_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut daemon = start_daemon(&data_dir, &[], &[("NOTIFY_SOCKET", &socket_path)]);

    let ready = receive_until(&socket, &mut daemon, "READY=1", START_TIMEOUT);
    // Ready means ready: a client asked right now gets an answer, without retrying.
    let answer = status(&data_dir);
    answer.ok();
    let api_addr = std::fs::read_to_string(data_dir.join("api-addr")).unwrap();
    assert!(
        ready.contains(&format!(
            "STATUS=running; control API on {}",
            api_addr.trim()
        )),
        "READY=1 came without a STATUS naming the API: {ready:?}"
    );

    terminate(&daemon);
    receive_until(&socket, &mut daemon, "STOPPING=1", STOP_TIMEOUT);
    let outcome = daemon.wait(STOP_TIMEOUT);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
}

/// Each line of `stderr` as a JSON object with a string `level` and `message`.
#[track_caller]
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line:?}"));
            for key in ["level", "message"] {
                assert!(
                    value[key].as_str().is_some_and(|s| !s.is_empty()),
                    "a log line has no {key}: {line}"
                );
            }
            value
        })
        .collect();
    assert!(!lines.is_empty(), "no log at all");
    lines
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node");
    let daemon = start_daemon(&data_dir, &["--log-format", "json"], &[]);
    wait_for(
        "the daemon's API to answer",
        START_TIMEOUT,
        Duration::from_millis(50),
        || (status(&data_dir).code == Some(0)).then_some(()),
    );
    terminate(&daemon);
    let outcome = daemon.wait(STOP_TIMEOUT);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    let lines = json_lines(&outcome.stderr);
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for expected in ["licet-node running", "shutting down", "licet-node stopped"] {
        assert!(
            messages.contains(&expected),
            "no {expected:?} in {messages:?}"
        );
    }
    let running = lines
        .iter()
        .find(|l| l["message"] == "licet-node running")
        .unwrap();
    assert!(
        running["peer_id"].as_str().is_some() && running["level"] == "INFO",
        "the event's fields are at the top level: {running}"
    );

    // A fatal error is a JSON line too, for the same log shipper.
    let outcome = start_daemon(
        &data_dir,
        &["--log-format", "json", "--api-listen", "0.0.0.0:0"],
        &[],
    )
    .wait(COMMAND_TIMEOUT);
    assert_eq!(outcome.code, Some(2), "{}", outcome.stderr);
    let lines = json_lines(&outcome.stderr);
    let last = lines.last().unwrap();
    assert!(
        last["level"] == "ERROR"
            && last["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("licet-node: error:") && m.contains("0.0.0.0")),
        "the fatal error: {last}"
    );
}

/// The unit as shipped, with ExecStart pointing at the binary just built (verify checks that
/// the program exists), passes `systemd-analyze verify` without a word on stderr; its
/// `Documentation=man:` page is looked up among the pages `licet-node man` writes.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let unit = std::fs::read_to_string(root.join("dist/licet-node.service")).unwrap();
    for setting in [
        "Type=notify",
        "User=licet",
        "StateDirectory=licet",
        "Environment=LICET_DATA_DIR=/var/lib/licet",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(setting), "the unit has no {setting:?}");
    }
    let shipped = "ExecStart=/usr/local/bin/licet-node run";
    assert!(unit.contains(shipped), "the unit has no {shipped:?}");

    if !required::command_runs("systemd-analyze", &["--version"]) {
        required::cannot_run_here("systemd-analyze is not installed (Debian package systemd)");
        return;
    }
    if !required::command_runs("man", &["--version"]) {
        required::cannot_run_here("man is not installed (Debian package man-db)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = bin("licet-node");
    let man_dir = dir.path().join("man");
    run(
        &node,
        dir.path(),
        &["man", "--out", man_dir.join("man1").to_str().unwrap()],
    )
    .ok();
    let test_unit = dir.path().join("licet-node.service");
    std::fs::write(
        &test_unit,
        unit.replace(
            shipped,
            &format!("ExecStart={} run", node.to_str().unwrap()),
        ),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&test_unit)
        .env("MANPATH", &man_dir)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify {} ({}):\n{}",
        test_unit.display(),
        verify.status,
        String::from_utf8_lossy(&verify.stderr)
    );
    // systemd's own rating of the sandbox: exposure at most 2.0 of 10 ("OK"; the README says
    // so). What is left open is what a peer-to-peer node needs: the network.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&test_unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    assert!(
        security.status.success(),
        "the unit's exposure is above 2.0:\n{}{}",
        String::from_utf8_lossy(&security.stdout),
        String::from_utf8_lossy(&security.stderr)
    );
}
