//! The control API under a careless user and a hostile local one, end to end: real daemons as
//! separate processes on 127.0.0.1, driven through the client subcommands and plain sockets.
//! What each test asserts is what a user sees: `status` answering, a download completing, the
//! modes of the files in the data directory, `/proc` limits and descriptors, and what
//! `promtool` says of `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::TcpStream, path::Path, time::Duration};

use licet_tests::{
    TestNet, TestNode, assert_same_file, create, pseudo_random_bytes, required, run, text,
};
use serde_json::Value;

/// The daemon's hard open-file limit in the descriptor test: far below what the idle sockets
/// below would take without a cap.
const HARD_FILE_LIMIT: u64 = 256;
/// Its soft limit at start, which the daemon raises to the hard one.
const SOFT_FILE_LIMIT: u64 = 128;
/// Idle sockets opened to its API: above the API's connection cap (64) and above the hard
/// limit, so without a cap the daemon runs out of descriptors.
const IDLE_SOCKETS: usize = 400;
/// Control-API connections the daemon keeps open at most (`api_conns::MAX_API_CONNECTIONS`).
const MAX_API_CONNECTIONS: usize = 64;
/// Descriptors the daemon's swarm and runtime may open or close on their own while the test
/// counts (a DHT query's socket, a timer).
const DESCRIPTOR_SLACK: usize = 8;

/// The daemon's soft and hard open-file limits, from `/proc/PID/limits`.
fn open_file_limits(node: &TestNode) -> (u64, u64) {
    let pid = node.pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in /proc/{pid}/limits:\n{limits}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// How many descriptors the daemon holds, from `/proc/PID/fd`.
fn open_descriptors(node: &TestNode) -> usize {
    let pid = node.pid().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Regression (issue 12, item 4): idle connections to the control API, which need no token,
/// used up the daemon's descriptors under a common `ulimit -n`; then `status` hung and chunk
/// reads failed.
#[test]
fn idle_api_sockets_cannot_starve_the_daemon_of_descriptors() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(300_000, 11));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let link = text(&created["link"]);
    // The soft limit first: a hard limit below the current soft one is refused.
    let setup = format!("ulimit -S -n {SOFT_FILE_LIMIT} && ulimit -H -n {HARD_FILE_LIMIT}");
    let a = net
        .start_in_shell("a", Some(&setup), &[])
        .trusting(&publisher);
    assert_eq!(
        open_file_limits(&a),
        (HARD_FILE_LIMIT, HARD_FILE_LIMIT),
        "the daemon raises its soft open-file limit to the hard one"
    );
    let added = a.add("film.manifest", "release");
    assert_eq!(added["state"], "complete", "{added}");
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);

    let before = open_descriptors(&a);
    let api = a.api_addr();
    let idle: Vec<TcpStream> = (0..IDLE_SOCKETS)
        .map(|i| {
            TcpStream::connect_timeout(&api, Duration::from_secs(5)).unwrap_or_else(|e| {
                panic!("idle socket {i}: the API no longer accepts connections: {e}")
            })
        })
        .collect();
    // The CLI's connection comes after every idle one, so once it is answered, all were seen.
    let status = a.client_json(&["status"]);
    assert_eq!(status["peer_id"], a.peer_id(), "{status}");
    let during = open_descriptors(&a);
    eprintln!("daemon descriptors: {before} before, {during} with {IDLE_SOCKETS} idle API sockets");
    assert!(
        during <= before + MAX_API_CONNECTIONS + DESCRIPTOR_SLACK,
        "{IDLE_SOCKETS} idle sockets cost the daemon {} descriptors ({before} before, {during} \
         with them open)",
        during.saturating_sub(before)
    );

    // It still serves: a download from it completes while the sockets stay open.
    let got = b.client_json(&["get", link, "-o", "downloads/film"]);
    assert_eq!(got["state"], "complete", "{got}");
    assert_same_file(
        &w.join("release/film.bin"),
        &w.join("downloads/film/film.bin"),
    );
    assert!(a.metric("licet_chunks_served_total") >= 1.0);
    drop(idle);
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Regression (issue 12, item 6): under the usual umask the data directory was 0755 and
/// `state.redb` and `api-addr` 0644, so other local users read the trust store and every
/// content path.
#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    let net = TestNet::new();
    let publisher = net.work().keygen("publisher.pem");
    // The most permissive umask, and a data directory the daemon creates itself.
    let a = net
        .start_in_shell("a", Some("umask 000 && rmdir \"$DATA_DIR\""), &[])
        .trusting(&publisher);
    let dir = a.data_dir();
    let mut wrong = Vec::new();
    for (name, expected) in [
        ("", 0o700),
        ("state.redb", 0o600),
        ("node.key", 0o600),
        ("api-token", 0o600),
        ("api-addr", 0o600),
    ] {
        let actual = mode(&dir.join(name));
        if actual != expected {
            wrong.push(format!("{name:?} is {actual:04o}, not {expected:04o}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "in {}: {}",
        dir.display(),
        wrong.join("; ")
    );
    let stray: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file() && mode(&e.path()) & 0o077 != 0)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(stray.is_empty(), "files others can read: {stray:?}");
}

/// The value of header `name` in an HTTP reply head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// Regression (issue 12, item 8): `/metrics` was OpenMetrics served as `text/plain;
/// version=0.0.4`, which `promtool check metrics` rejects.
#[test]
fn metrics_pass_promtool_and_say_what_format_they_are() {
    if !required::command_runs("promtool", &["--version"]) {
        required::cannot_run_here("promtool is not installed (Debian: apt-get install prometheus)");
        return;
    }
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(100_000, 5));
    create(&net, "release", "Film", "film.manifest", &[]);
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");

    // A plain scrape (curl, promtool): Prometheus text 0.0.4.
    let (head, body) = a.http_get("/metrics", &[]);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    std::fs::write(w.join("metrics.txt"), &body).unwrap();
    let checked = run(
        Path::new("sh"),
        w.path(),
        &["-c", "promtool check metrics < metrics.txt"],
    );
    assert_eq!(
        checked.code,
        Some(0),
        "promtool check metrics rejects /metrics:\n{}{}\n--- /metrics\n{body}",
        checked.stdout,
        checked.stderr
    );
    assert_eq!(
        checked.stdout.trim(),
        "",
        "promtool warns: {}",
        checked.stdout
    );
    assert_eq!(
        checked.stderr.trim(),
        "",
        "promtool warns: {}",
        checked.stderr
    );

    // What Prometheus asks for by default: OpenMetrics, served as such.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (head, openmetrics) = a.http_get("/metrics", &[("Accept", accept)]);
    assert_eq!(
        header(&head, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    // The same samples either way.
    let samples = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_owned())
            .collect()
    };
    assert_eq!(samples(&body), samples(&openmetrics));
    let _: Value = a.client_json(&["status"]);
}

/// The status code of an HTTP reply head.
fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"))
}

/// Fails unless `body` (a reply of `method path` with the status in `head`) is valid under the
/// schema that `description` gives that operation for that status.
fn assert_reply_as_described(
    description: &Value,
    method: &str,
    path: &str,
    head: &str,
    body: &str,
) {
    let status = status_of(head);
    let schema = licet_node::api::openapi::reply_schema(description, method, path, status)
        .unwrap_or_else(|| {
            panic!("the description lists no JSON reply {status} of {method} {path}")
        });
    let reply: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&reply)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match the description: {errors:?}\n{reply:#}"
    );
}

/// A running daemon serves the description the code makes, to a client without the token, the
/// same as `licet-node api-doc` prints; and its real replies (a status with content and a
/// catalog, and error replies) are what that description says.
#[test]
fn the_daemon_serves_its_openapi_description_and_replies_as_it_says() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(100_000, 7));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let a = net.start("a", &[]).trusting(&publisher);
    a.add("film.manifest", "release");

    let (head, served) = a.http_get("/v1/openapi.json", &[]);
    assert_eq!(status_of(&head), 200, "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert!(
        served == licet_node::api::openapi::description_json(),
        "the daemon serves another description than the code makes"
    );
    let printed = run(&licet_tests::bin("licet-node"), w.path(), &["api-doc"]);
    assert_eq!(printed.code, Some(0), "{}", printed.stderr);
    assert_eq!(
        printed.stdout.trim_end(),
        served,
        "api-doc prints another description"
    );
    let description: Value = serde_json::from_str(&served).unwrap();

    let token = std::fs::read_to_string(a.data_dir().join("api-token")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    let auth = [("Authorization", bearer.as_str())];
    let (head, body) = a.http_get("/v1/status", &auth);
    assert_eq!(status_of(&head), 200, "{head}");
    assert_reply_as_described(&description, "GET", "/v1/status", &head, &body);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["content"]["complete"], 1, "{status:#}");

    let id = text(&created["manifest_id"]);
    let (head, body) = a.http_get(&format!("/v1/content/{id}"), &auth);
    assert_eq!(status_of(&head), 200, "{head}");
    assert_reply_as_described(&description, "GET", "/v1/content/{id}", &head, &body);

    // Error replies: no token, a path parameter that is not an id, content not held.
    let (head, body) = a.http_get("/v1/status", &[]);
    assert_eq!(status_of(&head), 401, "{head}");
    assert_reply_as_described(&description, "GET", "/v1/status", &head, &body);
    let (head, body) = a.http_get("/v1/content/not-an-id", &auth);
    assert_eq!(status_of(&head), 400, "{head}");
    assert_reply_as_described(&description, "GET", "/v1/content/{id}", &head, &body);
    let (head, body) = a.http_get(&format!("/v1/content/{}", "ab".repeat(32)), &auth);
    assert_eq!(status_of(&head), 404, "{head}");
    assert_reply_as_described(&description, "GET", "/v1/content/{id}", &head, &body);
}
