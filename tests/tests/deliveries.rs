//! Delivery reports with real daemons: two partner seeds count the downloaders they served,
//! sign reports with keys the publisher delegated to them and publish them; the publisher's
//! collecting node keeps them; `licet-manifest deliveries merge` counts each downloader once,
//! and a forged or replayed report changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use licet_tests::{TestNet, TestNode, create, pseudo_random_bytes, text, wait_for};
use serde_json::Value;

/// How long a report may take to reach the collector (reports go out every second).
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes `text` as `name`'s config.toml before it starts.
fn configure(net: &TestNet, name: &str, text: &str) {
    let dir = net.work().join(&format!("nodes/{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// `licet-manifest deliveries merge --catalog publisher.catalog PATHS… --json`: exit code and
/// output.
fn merge(net: &TestNet, paths: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "deliveries",
        "merge",
        "--catalog",
        "publisher.catalog",
        "--json",
    ];
    args.extend_from_slice(paths);
    let out = net.work().manifest(&args);
    let value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("merge printed no JSON ({e}): {}{}", out.stdout, out.stderr));
    (out.code.unwrap_or(-1), value)
}

/// The merged distinct-peer count of the one release and day, and each partner's own count.
fn counted(merged: &Value) -> Option<(u64, Vec<(String, u64)>)> {
    let day = merged["counts"].as_array()?.first()?;
    let partners = day["partners"]
        .as_array()?
        .iter()
        .map(|p| {
            (
                text(&p["signer"]).to_owned(),
                p["peers_served"].as_u64().unwrap(),
            )
        })
        .collect();
    Some((day["distinct_peers"].as_u64()?, partners))
}

/// Waits until the collector's reports say the partners served `peers` peers in all (their own,
/// exact counts); the merge output.
#[track_caller]
fn wait_for_count(net: &TestNet, received: &str, peers: u64) -> Value {
    wait_for(
        &format!("the collected reports to count {peers} peers"),
        REPORT_TIMEOUT,
        Duration::from_millis(200),
        || {
            std::fs::metadata(net.work().join(received)).ok()?;
            let (code, merged) = merge(net, &[received]);
            let (_, partners) = counted(&merged)?;
            let served: u64 = partners.iter().map(|(_, own)| own).sum();
            (code == 0 && served == peers).then_some(merged)
        },
    )
}

/// The merged count of `peers` distinct peers, as the sketch can state it: peer ids are random
/// here, and two of ten share a register about 4 % of the time, which counts one less.
#[track_caller]
fn assert_merged_count(merged: &Value, peers: u64) -> u64 {
    let (distinct, _) = counted(merged).unwrap();
    assert!(
        (peers - 1..=peers).contains(&distinct),
        "{peers} peers merged to {distinct}: {merged}"
    );
    distinct
}

/// A partner seed: its delegated key and delegation, counting a peer served 1 % of a release,
/// reporting every second, joined to `collector`, holding the release.
fn partner(net: &TestNet, n: u32, collector: &TestNode, publisher: &str) -> TestNode {
    let w = net.work();
    let key = w.keygen(&format!("partner{n}.pem"));
    w.manifest(&[
        "delegate",
        "--key",
        "publisher.pem",
        "--to",
        &key,
        "--until",
        "+30d",
        "--scope",
        "delivery-reports",
        "-o",
        &format!("partner{n}.delegation"),
    ])
    .ok();
    configure(
        net,
        &format!("seed{n}"),
        &format!(
            "[deliveries]\nkey = {:?}\ndelegation = {:?}\nmin_share_percent = 1\nreport_secs = 1\n",
            w.join(&format!("partner{n}.pem")),
            w.join(&format!("partner{n}.delegation")),
        ),
    );
    let seed = net
        .start_joined(&format!("seed{n}"), collector, &[])
        .trusting(publisher);
    seed.add("film.manifest", "release");
    seed
}

/// Downloader `n` fetches the release from `seed`, then stops (so `seed` stays the only node
/// that holds it).
fn download(net: &TestNet, n: u32, seed: &TestNode, publisher: &str, link: &str) {
    let downloader = net
        .start_joined(&format!("downloader{n}"), seed, &[])
        .trusting(publisher);
    downloader
        .client(&[
            "get",
            &format!("{link}?peer={}", seed.addr()),
            "-o",
            &format!("downloads/{n}"),
        ])
        .ok();
    drop(downloader);
}

#[test]
fn two_partners_reports_of_ten_downloaders_merge_to_ten() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(300_000, 7));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let link = text(&created["link"]).to_owned();
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "film.manifest"])
        .ok();
    w.catalog_sign(
        "draft.json",
        "publisher.pem",
        "publisher.catalog",
        &["--expires", "+1d"],
    )
    .ok();

    configure(&net, "collector", "[deliveries]\ncollect = true\n");
    let collector = net.start("collector", &[]).trusting(&publisher);
    collector
        .client(&[
            "catalog",
            "publish",
            w.join("publisher.catalog").to_str().unwrap(),
        ])
        .ok();
    let received = format!("nodes/collector/deliveries/received/{publisher}");

    // Five downloaders take the release from the first partner, while it is the only seed.
    let first = partner(&net, 1, &collector, &publisher);
    download(&net, 0, &first, &publisher, &link);
    assert_merged_count(&wait_for_count(&net, &received, 1), 1);
    // Its report of one peer, kept to replay later.
    let early = std::fs::read_dir(w.join(&received))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    w.write("replayed.report", &std::fs::read(&early).unwrap());
    for n in 1..5 {
        download(&net, n, &first, &publisher, &link);
    }
    assert_merged_count(&wait_for_count(&net, &received, 5), 5);
    drop(first);

    // Five more from the second partner, the first one gone.
    let second = partner(&net, 2, &collector, &publisher);
    for n in 5..10 {
        download(&net, n, &second, &publisher, &link);
    }
    let merged = wait_for_count(&net, &received, 10);
    let peers = assert_merged_count(&merged, 10);
    let (_, partners) = counted(&merged).unwrap();
    assert_eq!(partners.len(), 2, "{merged}");
    assert!(partners.iter().all(|(_, own)| *own == 5), "{merged}");
    assert_eq!(merged["refused"], serde_json::json!([]), "{merged}");

    // A forged report (a byte of the body changed) and a replayed older one beside the
    // collected reports: the forged one is refused, the replay superseded, the count unchanged.
    let kept: Vec<_> = std::fs::read_dir(w.join(&received))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::create_dir_all(w.join("all")).unwrap();
    for path in &kept {
        std::fs::copy(path, w.join("all").join(path.file_name().unwrap())).unwrap();
    }
    let mut forged = std::fs::read(&kept[0]).unwrap();
    forged[120] ^= 0x01;
    w.write("all/forged.report", &forged);
    std::fs::copy(w.join("replayed.report"), w.join("all/replayed.report")).unwrap();
    let (code, merged) = merge(&net, &["all"]);
    assert_eq!(code, 1, "a refused report makes merge exit 1: {merged}");
    assert_eq!(counted(&merged).unwrap().0, peers, "{merged}");
    let refused = merged["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{merged}");
    assert!(
        text(&refused[0]["file"]).ends_with("forged.report"),
        "{merged}"
    );
    assert!(
        text(&refused[0]["reason"]).contains("signature"),
        "{merged}"
    );
    let superseded = merged["superseded"].as_array().unwrap();
    assert_eq!(superseded.len(), 1, "{merged}");
    assert!(
        text(&superseded[0]["file"]).ends_with("replayed.report"),
        "{merged}"
    );
    drop(second);
    drop(collector);
}
