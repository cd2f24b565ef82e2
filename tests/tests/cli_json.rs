//! What `licet-node … --json` prints, from real daemons, for every client subcommand: each
//! reply parses into the control API's own type (`licet_node::contract`) and that type writes
//! it back exactly (no field it lacks, none it would add, every value in its own form); and each
//! object has exactly the field names below, the names scripts read, so a field renamed in the
//! type fails here rather than reaching users (and tests that read a field by name, where a
//! renamed one would read as null).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use licet_node::contract::{
    CatalogInfo, CatalogListReply, ContentInfo, ContentListReply, LimitsReply, PeersReply,
    RemoveReply, StatusReply, TrustEntry, TrustReply,
};
use licet_tests::{TestNet, TestNode, create, pseudo_random_bytes, text};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

const STATUS: &[&str] = &[
    "peer_id",
    "listen_addrs",
    "version",
    "region",
    "connected_peers",
    "trusted_publishers",
    "content",
    "uptime_seconds",
    "catalogs",
    "health",
    "network",
    "limits",
];
const LIMITS: &[&str] = &[
    "in_force",
    "configured",
    "changed",
    "schedule_active",
    "schedule",
    "lan_exempt",
];
const LIMIT_RATES: &[&str] = &["upload", "download", "peer_upload", "peer_download"];
const CONTENT_COUNTS: &[&str] = &["complete", "downloading", "failed", "paused", "changed"];
const HEALTH: &[&str] = &[
    "database_problem",
    "unsaved_catalogs",
    "unsaved_trust_removals",
    "time_floor",
    "clock_behind_seconds",
    "clock_behind_peers_seconds",
];
const NETWORK: &[&str] = &[
    "reachability",
    "public_addrs",
    "relayed_addrs",
    "relay_service",
    "mdns",
    "upnp",
];
const PEER: &[&str] = &[
    "peer_id",
    "addrs",
    "relayed",
    "bytes_in",
    "bytes_out",
    "banned",
    "ban_reason",
    "banned_until",
    "offences",
];
const TRUST_ENTRY: &[&str] = &["publisher", "name", "require_catalog", "mirror"];
const CATALOG: &[&str] = &[
    "publisher",
    "name",
    "require_catalog",
    "mirror",
    "sequence",
    "issued_at",
    "expires_at",
    "expires_at_unix",
    "expired",
    "catalog_hash",
    "entries",
    "revoked_manifests",
    "revoked_delegates",
    "revoked_licences",
];
const CONTENT: &[&str] = &[
    "manifest_id",
    "link",
    "title",
    "publisher",
    "dir",
    "state",
    "refused",
    "total_bytes",
    "have_bytes",
    "total_chunks",
    "have_chunks",
    "fetched_chunks",
    "sending_peers",
    "source_peers",
    "error",
    "changed_files",
    "chunk_map",
    "licence",
    "encryption",
];
const REFUSAL: &[&str] = &["reason", "detail"];
const LICENCE: &[&str] = &["terms", "not_before", "not_after", "regions"];

/// `value` parsed as a `T`, which must write it back exactly.
#[track_caller]
fn strict<T: DeserializeOwned + Serialize>(what: &str, value: &Value) -> T {
    let parsed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{what}: not a {} ({e}):\n{value:#}",
            std::any::type_name::<T>()
        )
    });
    let written = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        &written,
        value,
        "{what}: {} writes it otherwise (a field it does not have, or a value in another form)",
        std::any::type_name::<T>()
    );
    parsed
}

/// Panics unless the object `value` has exactly the fields `names`.
#[track_caller]
fn fields(what: &str, value: &Value, names: &[&str]) {
    let have: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        have,
        want,
        "{what}: fields differ (missing: {:?}, not documented: {:?})",
        want.difference(&have).collect::<Vec<_>>(),
        have.difference(&want).collect::<Vec<_>>()
    );
}

/// The items of the array `value` (which must not be empty: each is checked).
#[track_caller]
fn items<'a>(what: &str, value: &'a Value) -> &'a [Value] {
    let list = value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {value}"));
    assert!(
        !list.is_empty(),
        "{what}: empty, so nothing in it is checked"
    );
    list
}

#[track_caller]
fn content_fields(what: &str, item: &Value) {
    fields(what, item, CONTENT);
    fields(&format!("{what}.licence"), &item["licence"], LICENCE);
    if !item["refused"].is_null() {
        fields(&format!("{what}.refused"), &item["refused"], REFUSAL);
    }
}

#[track_caller]
fn catalog_fields(what: &str, list: &Value) {
    for catalog in items(what, list) {
        fields(what, catalog, CATALOG);
    }
}

/// `licet-node args… --json` on `node`, which must succeed: its output.
#[track_caller]
fn json(node: &TestNode, args: &[&str]) -> Value {
    node.client_json(args)
}

#[test]
fn every_json_reply_is_the_api_type_with_the_documented_fields() {
    let net = TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    w.write("release/film.bin", &pseudo_random_bytes(300_000, 3));
    let created = create(&net, "release", "Film", "film.manifest", &[]);
    let id = text(&created["manifest_id"]);
    let link = text(&created["link"]);
    let a = net.start("a", &[]);

    // trust add, trust ls
    let entry = json(&a, &["trust", "add", &publisher, "--name", "Acme"]);
    strict::<TrustEntry>("trust add", &entry);
    fields("trust add", &entry, TRUST_ENTRY);
    let trusted = json(&a, &["trust", "ls"]);
    strict::<TrustReply>("trust ls", &trusted);
    fields("trust ls", &trusted, &["publishers"]);
    for entry in items("trust ls .publishers", &trusted["publishers"]) {
        fields("trust ls .publishers[]", entry, TRUST_ENTRY);
    }

    // add
    let added = json(&a, &["add", "film.manifest", "--content", "release"]);
    strict::<ContentInfo>("add", &added);
    content_fields("add", &added);

    // catalog publish, catalog ls: a catalog that lists the film, so every field has a value.
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "film.manifest"])
        .ok();
    w.catalog_sign(
        "draft.json",
        "publisher.pem",
        "publisher.catalog",
        &["--expires", "+7d"],
    )
    .ok();
    let published = json(&a, &["catalog", "publish", "publisher.catalog"]);
    let info = strict::<CatalogInfo>("catalog publish", &published);
    assert_eq!(info.sequence, Some(1), "{published}");
    fields("catalog publish", &published, CATALOG);
    let catalogs = json(&a, &["catalog", "ls"]);
    strict::<CatalogListReply>("catalog ls", &catalogs);
    fields("catalog ls", &catalogs, &["catalogs"]);
    catalog_fields("catalog ls .catalogs[]", &catalogs["catalogs"]);

    // get, peers, ls, status, check, on a second node that fetches the film from A.
    let b = net.start_joined("b", &a, &[]).trusting(&publisher);
    let got = json(&b, &["get", link, "-o", "downloads/film"]);
    let info = strict::<ContentInfo>("get", &got);
    assert_eq!(info.have_chunks, info.total_chunks, "{got}");
    content_fields("get", &got);

    let peers = json(&b, &["peers"]);
    strict::<PeersReply>("peers", &peers);
    fields("peers", &peers, &["peers"]);
    for peer in items("peers .peers", &peers["peers"]) {
        fields("peers .peers[]", peer, PEER);
    }

    let status = json(&a, &["status"]);
    strict::<StatusReply>("status", &status);
    fields("status", &status, STATUS);
    fields("status .content", &status["content"], CONTENT_COUNTS);
    fields("status .health", &status["health"], HEALTH);
    fields("status .network", &status["network"], NETWORK);
    fields("status .limits", &status["limits"], LIMITS);
    for args in [
        &["limits"][..],
        &["limits", "set", "--upload", "8MB/s"],
        &["limits", "reset"],
    ] {
        let limits = json(&a, args);
        let what = args.join(" ");
        strict::<LimitsReply>(&what, &limits);
        fields(&what, &limits, LIMITS);
        fields(
            &format!("{what} .in_force"),
            &limits["in_force"],
            LIMIT_RATES,
        );
        fields(
            &format!("{what} .configured"),
            &limits["configured"],
            LIMIT_RATES,
        );
    }
    catalog_fields("status .catalogs[]", &status["catalogs"]);

    let checked = json(&a, &["check", id]);
    strict::<ContentInfo>("check", &checked);
    content_fields("check", &checked);

    // ls, with a refused item: A no longer trusts the publisher.
    let removed = json(&a, &["trust", "rm", &publisher]);
    assert_eq!(removed, json!({ "removed": publisher }), "trust rm");
    let listed = json(&a, &["ls"]);
    strict::<ContentListReply>("ls", &listed);
    fields("ls", &listed, &["content", "catalogs"]);
    for item in items("ls .content", &listed["content"]) {
        content_fields("ls .content[]", item);
        assert_eq!(item["refused"]["reason"], "UntrustedPublisher", "{item}");
    }
    let listed = json(&b, &["ls"]);
    strict::<ContentListReply>("ls", &listed);
    fields("ls", &listed, &["content", "catalogs"]);
    for item in items("ls .content", &listed["content"]) {
        content_fields("ls .content[]", item);
    }
    catalog_fields("ls .catalogs[]", &listed["catalogs"]);

    // rm
    let removed = json(&b, &["rm", id]);
    let _: RemoveReply = strict("rm", &removed);
    fields(
        "rm",
        &removed,
        &["removed", "dir", "deleted_files", "removed_folders", "kept"],
    );
    assert_eq!(removed["removed"], json!(id), "rm");
    assert_eq!(removed["deleted_files"], json!([]), "rm");
}

/// `licet-node ls --json | head`: a closed pipe is a normal end for a client command (exit 0,
/// nothing on stderr), not a panic.
#[test]
fn a_closed_pipe_ends_a_client_command_quietly() {
    let net = TestNet::new();
    let a = net.start("a", &[]);
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["trust", "ls", "--json"],
    ] {
        let out = a.client_into_closed_pipe(args);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (Some(0), ""),
            "licet-node {args:?} into a closed pipe"
        );
    }
}
