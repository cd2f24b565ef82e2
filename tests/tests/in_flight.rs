//! Downloads in flight, cut by a takedown, a `trust rm` or the end of a licence window: the
//! seeder asks the trust policy again on every chunk it serves, so a download that was approved
//! when it started gets no chunk once the event has come, and the downloader's `get` fails with
//! the reason.
//!
//! To hold a download in flight for as long as the test needs, whatever the machine's speed,
//! the downloader is paused (SIGSTOP) as soon as it holds its first chunks: it keeps its
//! connection and its pipelined requests, and asks for more the moment it runs again. While it
//! is paused the event happens on the seeder, so the seeder's `licet_bytes_out_total` read then
//! is all it sent before the event. A test peer with a transfer stream opened (and served)
//! before the event asks again on that same stream after it, as a downloader's session would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use licet_proto::{ManifestId, policy::RefusalReason, wire::Response};
use licet_tests::{
    Running, TestNet, TestNode, count,
    hostile::{HostilePeer, OpenSession},
    text, wait_for, write_pseudo_random_file,
};

/// Chunks of the release: enough that the download is still going when it is paused.
const CHUNKS: u64 = 1024;
/// The release's chunk size, in bytes.
const CHUNK_BYTES: u64 = 16 * 1024;
/// How long a download, or a `get` that must fail, may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a refusal may take to be counted, or a catalog to spread.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The publisher's release "Episode 1" (`ep1.manifest`, content in `release/`).
struct Release {
    publisher: String,
    id: String,
    link: String,
}

impl Release {
    fn manifest_id(&self) -> ManifestId {
        self.id.parse().unwrap()
    }
}

/// Makes the publisher's key and a release of [`CHUNKS`] chunks, created with `extra` options.
fn release(net: &TestNet, extra: &[&str]) -> Release {
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    write_pseudo_random_file(&w.join("release/film.bin"), CHUNKS * CHUNK_BYTES, 17);
    let mut args = vec![
        "create",
        "release",
        "--key",
        "publisher.pem",
        "--title",
        "Episode 1",
        "--chunk-size",
        "16KiB",
        "-o",
        "ep1.manifest",
        "--json",
    ];
    args.extend_from_slice(extra);
    let created = w.manifest(&args).ok().json();
    Release {
        publisher,
        id: text(&created["manifest_id"]).to_owned(),
        link: text(&created["link"]).to_owned(),
    }
}

/// A seeder of `r` and a downloader joined to it, both trusting the publisher (and, with
/// `catalog`, holding that catalog first).
fn seeder_and_downloader(
    net: &TestNet,
    r: &Release,
    catalog: Option<&str>,
) -> (TestNode, TestNode) {
    let seeder = net.start("seeder", &[]).trusting(&r.publisher);
    if let Some(catalog) = catalog {
        seeder.client_json(&["catalog", "publish", catalog]);
    }
    seeder.add("ep1.manifest", "release");
    let downloader = net
        .start_joined("downloader", &seeder, &[])
        .trusting(&r.publisher);
    (seeder, downloader)
}

/// A test peer's session with `seeder`, on which it was served chunk 0 (the control: this
/// stream gets chunks while the policy allows them).
fn served_session<'a>(hostile: &'a HostilePeer, seeder: &TestNode, r: &Release) -> OpenSession<'a> {
    let mut session = hostile.open_session(seeder.addr());
    let answer = session.ask_chunk(r.manifest_id(), (0, 0));
    assert!(
        matches!(answer, Some(Response::Chunk { .. })),
        "the seeder does not serve the release before the event: {answer:?}"
    );
    session
}

/// Starts `get` of `r` on `downloader` in the background and pauses the downloader (SIGSTOP)
/// as soon as it holds a chunk; returns the running `get`.
fn catch_in_flight(downloader: &TestNode, r: &Release) -> Running {
    let get = downloader.spawn_client(&["get", &r.link, "-o", "fetched"]);
    let have = wait_for(
        "the download to hold its first chunk",
        DOWNLOAD_TIMEOUT,
        Duration::from_millis(5),
        || {
            let have = count(&downloader.content(&r.id)?["have_chunks"]);
            (have > 0).then_some(have)
        },
    );
    downloader.pause();
    assert!(
        have < CHUNKS,
        "the download finished before it could be caught in flight"
    );
    get
}

/// After the event, with the downloader still paused: the test peer's session, served before,
/// is refused `reason` on the wire; returns the bytes the seeder has sent so far.
#[track_caller]
fn assert_refused_on_the_open_session(
    seeder: &TestNode,
    session: &mut OpenSession,
    r: &Release,
    reason: RefusalReason,
) -> f64 {
    let sent = seeder.metric("licet_bytes_out_total");
    match session.ask_chunk(r.manifest_id(), (0, 1)) {
        Some(Response::Refused { reason: got, .. }) => assert_eq!(
            got, reason,
            "the seeder refuses the open session for another reason"
        ),
        other => panic!("the seeder still answers an open session with {other:?}"),
    }
    sent
}

/// After the downloader ran again: its `get` failed (exit 1) naming `why`, it holds part of the
/// release only, and the seeder sent no chunk byte after the event and counted the refusals.
#[track_caller]
fn assert_cut(
    get: Running,
    seeder: &TestNode,
    downloader: &TestNode,
    r: &Release,
    sent: f64,
    (reason, why): (RefusalReason, &str),
) {
    let out = get.wait(DOWNLOAD_TIMEOUT);
    out.expect_code(1);
    assert!(
        out.stderr.contains(why),
        "get's error does not name the reason ({why}): {}",
        out.stderr
    );
    let item = downloader
        .content(&r.id)
        .expect("the downloader keeps the item");
    assert_ne!(item["state"], "complete", "{item}");
    assert!(count(&item["have_chunks"]) < CHUNKS, "{item}");
    assert_eq!(
        seeder.metric("licet_bytes_out_total"),
        sent,
        "the seeder sent chunk bytes after the event"
    );
    assert!(
        seeder.metric(&format!("licet_refusals_total{{reason=\"{reason:?}\"}}")) >= 1.0,
        "the seeder's refusals are not counted in /metrics"
    );
}

#[test]
fn a_takedown_cuts_a_download_in_flight() {
    let net = TestNet::new();
    let r = release(&net, &[]);
    let w = net.work();
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "ep1.manifest"])
        .ok();
    w.catalog_sign(
        "draft.json",
        "publisher.pem",
        "catalog.1",
        &["--expires", "+1d"],
    )
    .ok();
    w.manifest(&["catalog", "revoke", "draft.json", "ep1.manifest"])
        .ok();
    w.catalog_sign(
        "draft.json",
        "publisher.pem",
        "catalog.2",
        &["--expires", "+1d"],
    )
    .ok();
    let (seeder, downloader) = seeder_and_downloader(&net, &r, Some("catalog.1"));
    let hostile = HostilePeer::requester();
    let mut session = served_session(&hostile, &seeder, &r);

    let get = catch_in_flight(&downloader, &r);
    seeder.client_json(&["catalog", "publish", "catalog.2"]);
    let sent =
        assert_refused_on_the_open_session(&seeder, &mut session, &r, RefusalReason::Revoked);
    downloader.resume();
    assert_cut(
        get,
        &seeder,
        &downloader,
        &r,
        sent,
        (RefusalReason::Revoked, "revoked by the publisher"),
    );
}

#[test]
fn trust_rm_cuts_a_download_in_flight() {
    let net = TestNet::new();
    let r = release(&net, &[]);
    let (seeder, downloader) = seeder_and_downloader(&net, &r, None);
    let hostile = HostilePeer::requester();
    let mut session = served_session(&hostile, &seeder, &r);

    let get = catch_in_flight(&downloader, &r);
    seeder.client_json(&["trust", "rm", &r.publisher]);
    let untrusted = "licet_refusals_total{reason=\"UntrustedPublisher\"}";
    let sent = assert_refused_on_the_open_session(
        &seeder,
        &mut session,
        &r,
        RefusalReason::UntrustedPublisher,
    );
    let refused = seeder.metric(untrusted);
    downloader.resume();
    // The downloader still trusts the publisher, so only the seeder stops it: its requests,
    // made in the session opened before `trust rm`, are refused.
    wait_for(
        "the seeder to refuse the download in flight",
        SPREAD_TIMEOUT,
        Duration::from_millis(50),
        || (seeder.metric(untrusted) > refused).then_some(()),
    );
    // Its own operator removes the publisher too: the download stops there.
    downloader.client_json(&["trust", "rm", &r.publisher]);
    assert_cut(
        get,
        &seeder,
        &downloader,
        &r,
        sent,
        (
            RefusalReason::UntrustedPublisher,
            "publisher is not trusted",
        ),
    );
}

#[test]
fn the_end_of_a_licence_window_cuts_a_download_in_flight() {
    let net = TestNet::new();
    let window = Duration::from_secs(40);
    let r = release(&net, &["--not-after", &format!("+{}s", window.as_secs())]);
    let ends = Instant::now() + window;
    let (seeder, downloader) = seeder_and_downloader(&net, &r, None);
    let hostile = HostilePeer::requester();
    let mut session = served_session(&hostile, &seeder, &r);

    let watching = catch_in_flight(&downloader, &r);
    assert!(
        Instant::now() + Duration::from_secs(1) < ends,
        "the setup took the whole window; the test cannot tell anything"
    );
    // The pause lasts until the window ends, longer than the daemon's API waits for a request
    // on an open connection: the first `get` stops watching, and the user runs it again.
    drop(watching);
    std::thread::sleep(ends - Instant::now() + Duration::from_secs(1));
    let sent =
        assert_refused_on_the_open_session(&seeder, &mut session, &r, RefusalReason::Expired);
    downloader.resume();
    let stopped = downloader.wait_for_content(&r.id, "stopped", DOWNLOAD_TIMEOUT, |item| {
        item["state"] == "failed"
    });
    assert!(
        text(&stopped["error"]).contains("licence window has ended"),
        "the download in flight was stopped for another reason: {stopped}"
    );
    let get = downloader.spawn_client(&["get", &r.link, "-o", "fetched"]);
    assert_cut(
        get,
        &seeder,
        &downloader,
        &r,
        sent,
        (RefusalReason::Expired, "licence window has ended"),
    );
}
