//! Live progress through the real binary, its output a pipe (not a terminal): `get` prints
//! plain progress lines with the rate, the ETA and the peers sending; `ls --watch` and
//! `status --watch` print their view once, then a line per change, and end with exit 0 on
//! Ctrl-C (SIGINT). On a terminal (`script`'s pseudo-terminal), `ls --watch` redraws the screen.
//!
//! Every wait is bounded; every process is killed when the test ends, even on failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use licet_tests::{TestNet, TestNode, create, text, wait_for, write_pseudo_random_file};

/// How long a change may take to show in the output of a command that follows it.
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);

/// A client command running in the background, its output read as it comes; dropping it kills
/// the process.
struct Following {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn read_into(mut from: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let into = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

impl Following {
    fn start(node: &TestNode, args: &[&str]) -> Following {
        Following::spawn(node.client_command(args))
    }

    fn spawn(mut command: Command) -> Following {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = read_into(child.stdout.take().unwrap());
        let err = read_into(child.stderr.take().unwrap());
        Following { child, out, err }
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until stdout has a line that `matches`; returns it.
    #[track_caller]
    fn wait_for_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        wait_for(what, SHOW_TIMEOUT, Duration::from_millis(50), || {
            self.stdout()
                .lines()
                .find(|line| matches(line))
                .map(str::to_owned)
        })
    }

    /// Sends SIGINT and waits for the exit code.
    #[track_caller]
    fn interrupt(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = wait_for(
            "the command to end on SIGINT",
            SHOW_TIMEOUT,
            Duration::from_millis(20),
            || self.child.try_wait().unwrap(),
        );
        assert!(
            self.err.lock().unwrap().is_empty(),
            "stderr: {}",
            self.err.lock().unwrap()
        );
        status.code()
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `HH:MM:SS  rest` → `rest`, for a line of a change.
fn change(line: &str) -> Option<&str> {
    let (time, rest) = line.split_once("  ")?;
    let digits = time.split(':').collect::<Vec<_>>();
    (digits.len() == 3
        && digits
            .iter()
            .all(|d| d.len() == 2 && d.chars().all(|c| c.is_ascii_digit())))
    .then_some(rest)
}

/// A release of one file of `len` bytes in 64 KiB chunks, in `release/`; its publisher's key,
/// manifest id and link.
fn release(net: &TestNet, len: u64) -> (String, String, String) {
    let publisher = net.work().keygen("publisher.pem");
    write_pseudo_random_file(&net.work().join("release/film.bin"), len, 3);
    let created = create(
        net,
        "release",
        "Film",
        "film.manifest",
        &["--chunk-size", "64KiB"],
    );
    (
        publisher,
        text(&created["manifest_id"]).to_owned(),
        text(&created["link"]).to_owned(),
    )
}

#[test]
fn ls_watch_prints_a_line_per_change_and_ends_with_0_on_ctrl_c() {
    let net = TestNet::new();
    let (publisher, id, _) = release(&net, 100_000);
    let node = net.start("a", &[]).trusting(&publisher);
    let following = Following::start(&node, &["ls", "--watch"]);
    following.wait_for_line("the first view", |l| l.starts_with("no content"));

    node.add("film.manifest", "release");
    let short = &id[..16];
    let added = following.wait_for_line("a line for the added content", |l| {
        change(l).is_some_and(|rest| rest.starts_with(short))
    });
    let rest = change(&added).unwrap();
    assert!(
        rest.contains("complete") && rest.contains("(100%)") && rest.ends_with("Film"),
        "{added}"
    );

    node.client(&["rm", short]).ok();
    following.wait_for_line("a line saying it is gone", |l| {
        change(l) == Some(&format!("{short}: gone"))
    });
    let out = following.stdout();
    assert_eq!(following.interrupt(), Some(0), "{out}");
}

#[test]
fn status_watch_prints_changed_fields_not_the_uptime_and_ends_with_0_on_ctrl_c() {
    let net = TestNet::new();
    let publisher = net.work().keygen("publisher.pem");
    let node = net.start("a", &[]);
    let following = Following::start(&node, &["status", "--watch"]);
    following.wait_for_line("the first view", |l| l.starts_with("trusted          0"));
    node.trust(&publisher);
    following.wait_for_line("a line for the trusted count", |l| {
        change(l) == Some("trusted          1")
    });
    let out = following.stdout();
    assert!(
        !out.lines()
            .any(|l| change(l).is_some_and(|r| r.starts_with("uptime"))),
        "{out}"
    );
    assert_eq!(following.interrupt(), Some(0), "{out}");
}

#[test]
fn ls_watch_on_a_terminal_redraws_the_screen_every_second() {
    // `script` (util-linux) runs the command with a pseudo-terminal as its output.
    if !licet_tests::required::command_runs("script", &["--version"]) {
        licet_tests::required::cannot_run_here("no `script` command (util-linux)");
        return;
    }
    let net = TestNet::new();
    let node = net.start("a", &[]);
    let inner = format!(
        "'{}' --data-dir '{}' ls --watch",
        licet_tests::bin("licet-node").display(),
        node.data_dir().display()
    );
    let mut command = Command::new("script");
    command.args(["-qfec", &inner, "/dev/null"]);
    let following = Following::spawn(command);
    let redraws = wait_for(
        "two redraws",
        SHOW_TIMEOUT,
        Duration::from_millis(50),
        || {
            let out = following.stdout();
            (out.matches("\x1b[H\x1b[2Jlicet-node ls at ").count() >= 2).then_some(out)
        },
    );
    assert!(
        redraws.contains("every 1s (Ctrl-C to stop)") && redraws.contains("no content"),
        "{redraws:?}"
    );
}

#[test]
fn get_into_a_pipe_prints_plain_progress_with_rate_eta_and_peers() {
    let net = TestNet::new();
    // 1 MiB at 256 KiB/s: about 4 s, so a line every 2 s shows the download under way.
    let (publisher, _, link) = release(&net, 1024 * 1024);
    let seeder = net
        .start("seeder", &["--upload-limit", "256KiB/s"])
        .trusting(&publisher);
    seeder.add("film.manifest", "release");
    let downloader = net.start("downloader", &[]).trusting(&publisher);
    let hinted = format!("{link}?peer={}", seeder.addr());
    let out = net.work().join("out");
    let got = downloader.client(&["get", &hinted, "-o", out.to_str().unwrap()]);
    got.ok();
    let lines: Vec<&str> = got.stderr.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("get: \"Film\": ") && l.contains(" of 1.0 MiB (")),
        "{}",
        got.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains("/s, ETA ")
            && l.ends_with(", 1 peer sending")
            && !l.contains("(100%)")),
        "a line while the download is under way, with its rate, ETA and peer:\n{}",
        got.stderr
    );
    assert!(
        !got.stderr.contains('\r') && !got.stderr.contains('\x1b'),
        "no bar drawn into a pipe:\n{}",
        got.stderr
    );
    assert!(
        got.stdout.starts_with("complete: \"Film\""),
        "{}",
        got.stdout
    );
}
