//! The web dashboard in a real browser: Debian's Chromium, driven by `tests/browser/
//! dashboard.mjs` (playwright-core), against real daemons on 127.0.0.1. A user opens the
//! address `licet-node ui` prints, adds a release by its link, watches it reach 100 %, sees the
//! publisher's takedown turn it to refused with the reason, and a page under another name
//! (DNS rebinding) is refused.
//!
//! Needs `chromium`, `node` and `tests/browser/node_modules` (`npm ci` there); `.ci/run`
//! installs them. Screenshots go to `LICET_SCREENSHOT_DIR`, else to
//! `CARGO_TARGET_TMPDIR/dashboard-screenshots`. Every wait is bounded, and the browser's
//! process group is killed when the test ends, even on failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use licet_tests::{TestNet, create, required, text, write_pseudo_random_file};

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the browser may take for a step (a download of a few MiB at 1 MiB/s, a page load).
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// The browser script and its folder.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The browser script, running in its own process group; dropping it kills the group (the
/// script and the Chromium it started).
struct BrowserScript {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl BrowserScript {
    fn start(env: &[(&str, &str)], stderr: PathBuf) -> BrowserScript {
        let mut command = Command::new("node");
        command
            .arg(browser_dir().join("dashboard.mjs"))
            .current_dir(browser_dir())
            .envs(env.iter().copied())
            .env("CHROMIUM", CHROMIUM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0);
        let mut child = command.spawn().expect("start node");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        BrowserScript {
            child,
            lines,
            stderr,
        }
    }

    /// Waits (at most [`STEP_TIMEOUT`]) for the script to print `wanted`.
    #[track_caller]
    fn expect(&mut self, wanted: &str) {
        match self.lines.recv_timeout(STEP_TIMEOUT) {
            Ok(line) if line == wanted => {}
            outcome => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the browser script printed {outcome:?}, not {wanted:?}; its stderr:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for BrowserScript {
    fn drop(&mut self) {
        // The whole group: the script and its Chromium processes.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Whether the browser test can run here; says why not (a failure under CI) if not.
fn browser_available() -> bool {
    let missing = if !Path::new(CHROMIUM).exists() {
        Some("Chromium (Debian package chromium) is not installed")
    } else if !required::command_runs("node", &["--version"]) {
        Some("node (Node.js) is not installed")
    } else if !browser_dir().join("node_modules/playwright-core").exists() {
        Some("playwright-core is not installed: run `npm ci` in tests/browser")
    } else {
        None
    };
    if let Some(why) = missing {
        required::cannot_run_here(why);
    }
    missing.is_none()
}

#[test]
fn a_user_adds_a_release_in_the_dashboard_watches_it_complete_and_sees_its_takedown() {
    if !browser_available() {
        return;
    }
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), 3 * 1024 * 1024, 5);
    let created = create(
        &net,
        "release",
        "Episode 1",
        "ep1.manifest",
        &["--chunk-size", "64KiB"],
    );
    let id = text(&created["manifest_id"]).to_owned();
    // The seeder's uploads are limited so that the page shows the download under way.
    let seeder = net
        .start("seeder", &["--upload-limit", "1MiB/s"])
        .trusting(&publisher);
    seeder.add("ep1.manifest", "release");
    let user = net.start_joined("user", &seeder, &[]).trusting(&publisher);
    let link = format!("{}?peer={}", text(&created["link"]), seeder.addr());

    let shown = user.client_json(&["ui"]);
    let url = text(&shown["url"]).to_owned();
    assert!(
        url.starts_with(&format!("http://{}/ui/#token=", user.api_addr())),
        "{url}"
    );
    let screenshots = std::env::var_os("LICET_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"));
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = w.join("downloads/episode-1");
    let mut browser = BrowserScript::start(
        &[
            ("DASHBOARD_URL", &url),
            ("SHARE_LINK", &link),
            ("OUTPUT_DIR", output.to_str().unwrap()),
            ("SCREENSHOT_DIR", screenshots.to_str().unwrap()),
        ],
        w.join("browser.stderr"),
    );

    browser.expect("complete");
    let item = user
        .content(&id)
        .expect("the user's node holds the release");
    assert_eq!(item["state"], "complete", "{item}");
    licet_tests::assert_same_file(&w.join("release/film.bin"), &output.join("film.bin"));

    // The publisher takes the release down with a catalog that revokes it.
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "ep1.manifest"])
        .ok();
    w.manifest(&["catalog", "revoke", "draft.json", "ep1.manifest"])
        .ok();
    w.catalog_sign(
        "draft.json",
        "publisher.pem",
        "catalog.1",
        &["--expires", "+1d"],
    )
    .ok();
    user.client_json(&["catalog", "publish", "catalog.1"]);
    browser.say("takedown");
    browser.expect("done");
    eprintln!("screenshots in {}", screenshots.display());
}
