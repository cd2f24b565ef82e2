//! Paid releases end to end: a publisher encrypts a release with `licet-manifest create
//! --encrypt`, issues a licence to a buyer's node key, and the buyer's key (and only it) opens
//! the content key that turns the ciphertext back into byte-identical files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use licet_proto::{
    ManifestId, SecretKey, Timestamp,
    delivery::{DeliveryReport, DistinctSketch, UtcDay},
    encryption::ciphertext_size,
    licence::VerifiedLicence,
    manifest::VerifiedManifest,
    merkle::{self, MerkleTree},
};
use licet_tests::{Workdir, pseudo_random_bytes, text};

const CS: usize = 16 * 1024;
/// Plaintext bytes per encrypted chunk at 16 KiB chunks.
const SEGMENT: usize = CS - 16;

/// A release at the edge sizes of an encrypted chunk.
fn paid_release(w: &Workdir) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("empty.bin", 0),
        ("one.bin", 1),
        ("sub/segment.bin", SEGMENT),
        ("sub/segment-plus-one.bin", SEGMENT + 1),
        ("many.bin", 40 * SEGMENT + 5),
    ];
    files
        .into_iter()
        .enumerate()
        .map(|(i, (path, size))| {
            let bytes = pseudo_random_bytes(size, 100 + i as u64);
            w.write(&format!("release/{path}"), &bytes);
            (path, bytes)
        })
        .collect()
}

fn create_encrypted(w: &Workdir) -> serde_json::Value {
    w.manifest(&[
        "create",
        "release",
        "--encrypt",
        "release.enc",
        "--key",
        "publisher.pem",
        "--title",
        "Paid film",
        "--chunk-size",
        "16KiB",
        "-o",
        "film.manifest",
        "--json",
    ])
    .ok()
    .json()
}

#[test]
fn an_encrypted_release_opens_with_the_buyer_s_licence_only() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    let files = paid_release(&w);
    let created = create_encrypted(&w);
    let manifest =
        VerifiedManifest::from_bytes(&std::fs::read(w.join("film.manifest")).unwrap()).unwrap();
    let body = manifest.manifest();
    let encryption = body.encryption.as_ref().expect("an encrypted manifest");
    assert_eq!(created["encryption"]["key_id"], encryption.key_id.to_hex());
    assert_eq!(
        text(&created["encryption"]["key_file"]),
        "film.manifest.key"
    );
    // The key file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(w.join("film.manifest.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The manifest lists the ciphertext: sizes, and roots computed from the encrypted files.
    for (i, (path, plain)) in files.iter().enumerate() {
        let index = body
            .files
            .iter()
            .position(|f| f.path.as_str() == *path)
            .unwrap();
        let entry = &body.files[index];
        assert_eq!(encryption.plaintext_sizes[index], plain.len() as u64);
        assert_eq!(entry.size, ciphertext_size(plain.len() as u64, CS as u32));
        let cipher = std::fs::read(w.join(&format!("release.enc/{path}"))).unwrap();
        assert_eq!(cipher.len() as u64, entry.size, "{path}");
        // Not the plaintext: the bytes differ wherever there are any.
        let n = plain.len().min(64);
        assert!(
            n == 0 || cipher[..n] != plain[..n],
            "{path} #{i} is in the clear"
        );
        let leaves: Vec<_> = if cipher.is_empty() {
            vec![merkle::leaf_hash(&[])]
        } else {
            cipher.chunks(CS).map(merkle::leaf_hash).collect()
        };
        assert_eq!(MerkleTree::from_leaves(leaves).root(), entry.root, "{path}");
    }
    // The ciphertext verifies like any release.
    let publisher = w
        .manifest(&["pubkey", "publisher.pem"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    w.manifest(&[
        "verify",
        "film.manifest",
        "--content",
        "release.enc",
        "--publisher",
        &publisher,
    ])
    .ok();

    // A licence to the buyer's node key.
    let buyer = SecretKey::from_seed(&[0x5b; 32]);
    let buyer_hex = buyer.public_key().to_hex();
    let issued = w
        .manifest(&[
            "licence",
            "issue",
            "film.manifest",
            "--key",
            "publisher.pem",
            "--content-key",
            "film.manifest.key",
            "--to",
            &buyer_hex,
            "--until",
            "+30d",
            "-o",
            "buyer.licence",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(issued["manifest_id"], manifest.id().to_hex());
    let licence =
        VerifiedLicence::from_bytes(&std::fs::read(w.join("buyer.licence")).unwrap()).unwrap();
    assert_eq!(issued["licence_id"], licence.id().to_hex());
    licence
        .check_for(
            &manifest,
            &buyer.public_key(),
            licet_proto::Timestamp::now(),
            None,
        )
        .unwrap();
    // The buyer's key opens it, and the key decrypts every file to its exact bytes.
    let key = licence.unseal(&buyer).unwrap();
    for (path, plain) in &files {
        let index = body
            .files
            .iter()
            .position(|f| f.path.as_str() == *path)
            .unwrap();
        let cipher = std::fs::read(w.join(&format!("release.enc/{path}"))).unwrap();
        let opened = key
            .file_cipher(index as u64, CS as u32)
            .open_all(&cipher, plain.len() as u64)
            .unwrap();
        assert!(opened == *plain, "{path} does not decrypt to its plaintext");
    }
    // Another node's key does not.
    let other = SecretKey::from_seed(&[0x6c; 32]);
    assert!(licence.unseal(&other).is_err());
    // inspect shows the licence and its id.
    let shown = w
        .manifest(&["inspect", "buyer.licence", "--json"])
        .ok()
        .json();
    assert_eq!(shown["kind"], "licence");
    assert_eq!(shown["derived"]["licence_id"], licence.id().to_hex());
}

#[test]
fn each_release_gets_a_fresh_key_and_a_folder_of_its_own() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    paid_release(&w);
    let first = create_encrypted(&w);
    // The folder holds the first release's ciphertext: a second run does not mix into it.
    let refused = w
        .manifest(&[
            "create",
            "release",
            "--encrypt",
            "release.enc",
            "--key",
            "publisher.pem",
            "--title",
            "Paid film",
            "-o",
            "again.manifest",
        ])
        .expect_code(2)
        .stderr
        .clone();
    assert!(
        refused.contains("release.enc is not empty; --encrypt writes the encrypted files into a new or empty folder"),
        "{refused}"
    );
    // An existing manifest is refused before anything is encrypted.
    let refused = w
        .manifest(&[
            "create",
            "release",
            "--encrypt",
            "fresh.enc",
            "--key",
            "publisher.pem",
            "--title",
            "Paid film",
            "-o",
            "film.manifest",
        ])
        .expect_code(2)
        .stderr
        .clone();
    assert!(
        refused.contains("film.manifest already exists (pass --force to overwrite it)"),
        "{refused}"
    );
    assert!(!w.join("fresh.enc").exists());
    // The same content again: another key, so another key id.
    let second = w
        .manifest(&[
            "create",
            "release",
            "--encrypt",
            "second.enc",
            "--key",
            "publisher.pem",
            "--title",
            "Paid film",
            "-o",
            "second.manifest",
            "--json",
        ])
        .ok()
        .json();
    assert_ne!(
        first["encryption"]["key_id"],
        second["encryption"]["key_id"]
    );
}

#[test]
fn a_licence_needs_the_release_s_own_key() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    paid_release(&w);
    create_encrypted(&w);
    let buyer = SecretKey::from_seed(&[0x5b; 32]).public_key().to_hex();
    let issue = |key_file: &str, manifest: &str| {
        w.manifest(&[
            "licence",
            "issue",
            manifest,
            "--key",
            "publisher.pem",
            "--content-key",
            key_file,
            "--to",
            &buyer,
            "-o",
            "x.licence",
        ])
    };
    // Another release's key.
    w.manifest(&[
        "create",
        "release",
        "--encrypt",
        "other.enc",
        "--key",
        "publisher.pem",
        "--title",
        "Other",
        "-o",
        "other.manifest",
    ])
    .ok();
    let err = issue("other.manifest.key", "film.manifest")
        .expect_code(2)
        .stderr
        .clone();
    assert!(
        err.contains("other.manifest.key holds key ")
            && err.contains("but film.manifest is encrypted with key "),
        "{err}"
    );
    // A release in the clear.
    w.manifest(&[
        "create",
        "release",
        "--key",
        "publisher.pem",
        "--title",
        "Free",
        "-o",
        "free.manifest",
    ])
    .ok();
    let err = issue("film.manifest.key", "free.manifest")
        .expect_code(2)
        .stderr
        .clone();
    assert!(
        err.contains("free.manifest is a release in the clear"),
        "{err}"
    );
    // Not a key file.
    let err = issue("publisher.pem", "film.manifest")
        .expect_code(2)
        .stderr
        .clone();
    assert!(err.contains("it is not a Licet content key"), "{err}");
    assert!(!w.join("x.licence").exists());
}

/// Makes an encrypted release `NAME.manifest` (content key `NAME.manifest.key`) of `publisher`.
fn small_encrypted(w: &Workdir, name: &str, key: &str, title: &str) {
    w.write(&format!("{name}/film.bin"), &pseudo_random_bytes(3000, 7));
    w.manifest(&[
        "create",
        name,
        "--encrypt",
        &format!("{name}.enc"),
        "--key",
        key,
        "--title",
        title,
        "-o",
        &format!("{name}.manifest"),
    ])
    .ok();
}

/// `licence issue` of `release` to a buyer key made from `buyer_seed`, signed with `key`
/// (carrying `delegation` if given), written to `out`; returns the licence id.
fn issue(
    w: &Workdir,
    release: &str,
    key: &str,
    delegation: Option<&str>,
    buyer_seed: u8,
    out: &str,
) -> String {
    let buyer = SecretKey::from_seed(&[buyer_seed; 32])
        .public_key()
        .to_hex();
    let manifest = format!("{release}.manifest");
    let content_key = format!("{release}.manifest.key");
    let mut args = vec![
        "licence",
        "issue",
        manifest.as_str(),
        "--key",
        key,
        "--content-key",
        content_key.as_str(),
        "--to",
        buyer.as_str(),
        "-o",
        out,
        "--json",
    ];
    if let Some(delegation) = delegation {
        args.extend(["--delegation", delegation]);
    }
    text(&w.manifest(&args).ok().json()["licence_id"]).to_owned()
}

fn manifest_id(w: &Workdir, release: &str) -> String {
    VerifiedManifest::from_bytes(&std::fs::read(w.join(&format!("{release}.manifest"))).unwrap())
        .unwrap()
        .id()
        .to_hex()
}

/// The per-release line of `release` in `merge --json` output.
fn release_line<'a>(merged: &'a serde_json::Value, release: &str) -> &'a serde_json::Value {
    merged["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["release"] == release)
        .unwrap_or_else(|| panic!("no line for {release}: {merged:#}"))
}

#[test]
fn deliveries_merge_counts_each_release_s_licences_exactly_and_refuses_the_rest() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    let partner = w.keygen("partner.pem");
    small_encrypted(&w, "film", "publisher.pem", "Paid film");
    small_encrypted(&w, "series", "publisher.pem", "Paid series");
    w.manifest(&[
        "delegate",
        "--key",
        "publisher.pem",
        "--to",
        &partner,
        "--until",
        "+30d",
        "-o",
        "partner.delegation",
    ])
    .ok();
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&[
        "catalog",
        "add",
        "draft.json",
        "film.manifest",
        "series.manifest",
    ])
    .ok();
    // Three licences of the film (one sold by the partner), one of the series; the same file
    // twice counts once.
    std::fs::create_dir(w.join("sold")).unwrap();
    issue(&w, "film", "publisher.pem", None, 1, "sold/a.licence");
    let revoked = issue(&w, "film", "publisher.pem", None, 2, "sold/b.licence");
    issue(
        &w,
        "film",
        "partner.pem",
        Some("partner.delegation"),
        3,
        "sold/c.licence",
    );
    issue(&w, "series", "publisher.pem", None, 4, "sold/d.licence");
    std::fs::copy(w.join("sold/a.licence"), w.join("a-again.licence")).unwrap();
    // The film's second licence is revoked, by its file.
    let out = w
        .manifest(&["catalog", "revoke-licence", "draft.json", "sold/b.licence"])
        .ok()
        .stdout
        .clone();
    assert!(out.contains("1 revoked licence(s)"), "{out}");
    let signed = w
        .catalog_sign(
            "draft.json",
            "publisher.pem",
            "publisher.catalog",
            &["--json"],
        )
        .ok()
        .json();
    assert_eq!(signed["revoked_licences"], 1, "{signed:#}");
    let shown = w
        .manifest(&["inspect", "publisher.catalog", "--json"])
        .ok()
        .json();
    assert_eq!(
        shown["body"]["revoked_licences"],
        serde_json::json!([revoked]),
        "{shown:#}"
    );

    let merge = |extra: &[&str]| {
        let mut args = vec![
            "deliveries",
            "merge",
            "--catalog",
            "publisher.catalog",
            "--licences",
            "sold",
            "--licences",
            "a-again.licence",
        ];
        args.extend(extra);
        w.manifest(&args)
    };
    // No reports: the releases with licences appear all the same.
    let merged = merge(&["--json"]).ok().json();
    let (film, series) = (manifest_id(&w, "film"), manifest_id(&w, "series"));
    let line = release_line(&merged, &film);
    assert_eq!(line["licences_issued"], 3, "{merged:#}");
    assert_eq!(line["licences_revoked"], 1, "{merged:#}");
    assert_eq!(line["title"], "Paid film", "{merged:#}");
    assert_eq!(line["estimated_deliveries"], 0, "{merged:#}");
    let line = release_line(&merged, &series);
    assert_eq!(line["licences_issued"], 1, "{merged:#}");
    assert_eq!(line["licences_revoked"], 0, "{merged:#}");
    assert_eq!(merged["refused"], serde_json::json!([]), "{merged:#}");
    let shown = merge(&[]).ok().stdout.clone();
    assert!(
        shown.contains(&format!(
            "{}         3        1           0  Paid film",
            &film[..16]
        )),
        "{shown}"
    );
    assert!(
        shown.contains("LICENCES: distinct licences issued (exact)"),
        "{shown}"
    );

    // With reports of the film on two days: its delivery estimate is their sum, beside the
    // exact licence count.
    let key = SecretKey::read_pem_file(&w.join("publisher.pem")).unwrap();
    let release: ManifestId = film.parse().unwrap();
    let now = Timestamp::now();
    let today = UtcDay::of(now);
    for (day, peers) in [(UtcDay(today.0 - 1), 2u8), (today, 4)] {
        let mut sketch = DistinctSketch::new();
        for peer in 0..peers {
            sketch.insert_peer(&release, day, &[peer]);
        }
        let report = DeliveryReport {
            publisher: key.public_key(),
            release,
            day,
            sequence: 1,
            issued_at: day.start().plus_seconds(60).min(now),
            min_share_percent: 90,
            peers_served: u64::from(peers),
            sketch,
        };
        w.write(
            &format!("reports/{day}.report"),
            &report.sign(&key, None).encode(),
        );
    }
    let merged = merge(&["reports", "--json"]).ok().json();
    let per_day: Vec<u64> = merged["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["distinct_peers"].as_u64().unwrap())
        .collect();
    assert_eq!(per_day.len(), 2, "{merged:#}");
    let line = release_line(&merged, &film);
    assert_eq!(line["days"], 2, "{merged:#}");
    assert_eq!(
        line["estimated_deliveries"],
        per_day.iter().sum::<u64>(),
        "{merged:#}"
    );
    assert!(
        line["estimated_deliveries"].as_u64().unwrap() >= 4,
        "{merged:#}"
    );
    assert_eq!(line["licences_issued"], 3, "{merged:#}");
    assert_eq!(release_line(&merged, &series)["estimated_deliveries"], 0);

    // A forged licence (its signature altered), another publisher's, and one the partner
    // signed after the catalog revoked the partner: each refused with its reason.
    let mut forged = std::fs::read(w.join("sold/d.licence")).unwrap();
    let at = forged.len() - 10;
    forged[at] ^= 1;
    w.write("sold/forged.licence", &forged);
    w.keygen("other.pem");
    small_encrypted(&w, "other", "other.pem", "Not ours");
    issue(&w, "other", "other.pem", None, 5, "sold/foreign.licence");
    w.manifest(&["catalog", "revoke-delegate", "draft.json", &partner])
        .ok();
    w.catalog_sign("draft.json", "publisher.pem", "publisher.catalog", &[])
        .ok();
    let failed = merge(&["--json"]);
    failed.expect_code(1);
    let merged = failed.json();
    let reasons: Vec<(String, String)> = merged["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["kind"], "licence", "{r}");
            (text(&r["file"]).to_owned(), text(&r["reason"]).to_owned())
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{merged:#}");
    let reason = |file: &str| {
        reasons
            .iter()
            .find(|(f, _)| f.ends_with(file))
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("{file} not refused: {merged:#}"))
    };
    assert!(
        reason("c.licence").contains(&format!(
            "signed by delegate {partner}, which the catalog revokes"
        )),
        "{merged:#}"
    );
    assert!(
        reason("forged.licence").contains("it is not a valid licence"),
        "{merged:#}"
    );
    assert!(
        reason("foreign.licence").contains("not of the catalog's publisher"),
        "{merged:#}"
    );
    // The counts leave them out.
    assert_eq!(release_line(&merged, &film)["licences_issued"], 2);
    assert_eq!(release_line(&merged, &series)["licences_issued"], 1);
    assert!(
        failed
            .stderr
            .contains("0 report(s) and 3 licence(s) were refused"),
        "{}",
        failed.stderr
    );
}

#[test]
fn catalog_revoke_licence_takes_ids_and_the_draft_publisher_s_licence_files_only() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    small_encrypted(&w, "film", "publisher.pem", "Paid film");
    // A draft written before licences could be revoked (no `revoked_licences`) still loads.
    w.catalog_new("publisher.pem", "draft.json");
    let mut draft: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("draft.json")).unwrap()).unwrap();
    draft.as_object_mut().unwrap().remove("revoked_licences");
    w.write("draft.json", draft.to_string().as_bytes());
    let id = issue(&w, "film", "publisher.pem", None, 1, "a.licence");
    let out = w
        .manifest(&["catalog", "revoke-licence", "draft.json", &id, &id])
        .ok()
        .stdout
        .clone();
    assert!(out.contains("1 revoked licence(s)"), "{out}");
    // Another publisher's licence.
    let other = w.keygen("other.pem");
    small_encrypted(&w, "other", "other.pem", "Not ours");
    issue(&w, "other", "other.pem", None, 2, "foreign.licence");
    let err = w
        .manifest(&["catalog", "revoke-licence", "draft.json", "foreign.licence"])
        .expect_code(2)
        .stderr
        .clone();
    assert!(
        err.contains(&format!(
            "foreign.licence is a licence of publisher {other}, not of the draft's publisher"
        )),
        "{err}"
    );
    // A file that is not a licence.
    let err = w
        .manifest(&["catalog", "revoke-licence", "draft.json", "film.manifest"])
        .expect_code(1)
        .stderr
        .clone();
    assert!(
        err.contains("film.manifest is not a Licet licence"),
        "{err}"
    );
    // Signed, the catalog revokes exactly the one licence.
    w.catalog_sign("draft.json", "publisher.pem", "publisher.catalog", &[])
        .ok();
    let catalog = licet_proto::catalog::VerifiedCatalog::from_bytes(
        &std::fs::read(w.join("publisher.catalog")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        catalog.catalog().revoked_licences,
        [id.parse::<licet_proto::LicenceId>().unwrap()]
    );
    let shown = w
        .manifest(&["catalog", "inspect", "publisher.catalog"])
        .ok()
        .stdout
        .clone();
    assert!(
        shown.contains(&format!("revoked licences 1\n  {id}")),
        "{shown}"
    );
}

/// Issues `film.manifest`'s licence to `node_key` as `out`.
fn issue_licence(w: &Workdir, node_key: &str, out: &str) -> serde_json::Value {
    w.manifest(&[
        "licence",
        "issue",
        "film.manifest",
        "--key",
        "publisher.pem",
        "--content-key",
        "film.manifest.key",
        "--to",
        node_key,
        "--until",
        "+30d",
        "-o",
        out,
        "--json",
    ])
    .ok()
    .json()
}

/// Asserts the files under `dir` of the work folder are exactly `files`' plaintext.
#[track_caller]
fn assert_plaintext(w: &Workdir, dir: &str, files: &[(&str, Vec<u8>)]) {
    for (path, plain) in files {
        let written = std::fs::read(w.join(&format!("{dir}/{path}")))
            .unwrap_or_else(|e| panic!("{dir}/{path}: {e}"));
        assert!(written == *plain, "{dir}/{path} is not the plaintext");
        assert!(
            !w.join(&format!("{dir}/{path}.part")).exists(),
            "{dir}/{path}.part is left"
        );
    }
}

/// The whole paid flow between real daemons: a partner seeds the ciphertext; a buyer with a
/// licence gets byte-identical plaintext; a node without one gets the ciphertext only and exit
/// 1 saying why; another node's licence is refused; and once the publisher's catalog revokes
/// the buyer's licence, the buyer's node no longer opens the release.
#[test]
fn a_buyer_with_a_licence_gets_the_plaintext_and_others_only_ciphertext() {
    let net = licet_tests::TestNet::new();
    let w = net.work();
    let publisher = w.keygen("publisher.pem");
    let files = paid_release(w);
    let created = create_encrypted(w);
    let id = text(&created["manifest_id"]).to_owned();

    let partner = net.start("partner", &[]).trusting(&publisher);
    partner.add("film.manifest", "release.enc");
    let link = format!("licet:{id}?peer={}", partner.addr());

    // The buyer: its node's key gets a licence, which its node keeps.
    let buyer = net
        .start_joined("buyer", &partner, &[])
        .trusting(&publisher);
    let buyer_key = buyer
        .client(&["licence", "key"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let issued = issue_licence(w, &buyer_key, "buyer.licence");
    let licence_id = text(&issued["licence_id"]).to_owned();
    let added = buyer.client_json(&["licence", "add", "buyer.licence"]);
    serde_json::from_value::<licet_node::contract::LicenceEntry>(added.clone()).unwrap();
    assert_eq!(added["id"], licence_id.as_str());
    assert_eq!(added["refused"], serde_json::Value::Null, "{added}");

    // A file of the user's at one of the release's paths refuses it, and stays as it was.
    w.write("bought/one.bin", b"mine");
    let out = buyer.client(&["get", &link, "-o", "bought"]);
    out.expect_code(2);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(std::fs::read(w.join("bought/one.bin")).unwrap(), b"mine");
    assert!(!w.join("bought/many.bin").exists());
    let opened = buyer.client_json(&["get", &link, "-o", "bought", "--replace"]);
    serde_json::from_value::<licet_node::contract::OpenReply>(opened.clone()).unwrap();
    assert_eq!(opened["licence_id"], licence_id.as_str());
    assert_eq!(opened["files_written"], files.len());
    assert_plaintext(w, "bought", &files);
    // The ciphertext stays in the node's own folder, complete and seeded.
    let held = buyer.content(&id).expect("the buyer holds the release");
    assert_eq!(held["state"], "complete");
    assert!(
        std::path::Path::new(text(&held["dir"])).starts_with(buyer.data_dir()),
        "{held}"
    );
    // A second `get` finds the plaintext there and writes nothing.
    let again = buyer.client_json(&["get", &link, "-o", "bought"]);
    assert_eq!(again["files_written"], 0);
    assert_eq!(again["files_kept"], files.len());

    // A node without a licence: the ciphertext, and exit 1 saying why.
    let stranger = net
        .start_joined("stranger", &partner, &[])
        .trusting(&publisher);
    let out = stranger.client(&["get", &link, "-o", "not-bought"]);
    out.expect_code(1);
    assert!(out.stderr.contains("holds no licence"), "{}", out.stderr);
    assert!(
        out.stderr.contains("licet-node licence add"),
        "{}",
        out.stderr
    );
    for (path, _) in &files {
        assert!(
            !w.join(&format!("not-bought/{path}")).exists(),
            "{path} was written without a licence"
        );
    }
    let held = stranger
        .content(&id)
        .expect("the stranger holds the ciphertext");
    assert_eq!(held["state"], "complete");
    // The buyer's licence is not the stranger's.
    let out = stranger.client(&["licence", "add", "buyer.licence"]);
    out.expect_code(1);
    assert!(out.stderr.contains("is for node key"), "{}", out.stderr);

    // The publisher revokes the buyer's licence in its catalog.
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "revoke-licence", "draft.json", "buyer.licence"])
        .ok();
    w.catalog_sign("draft.json", "publisher.pem", "publisher.catalog", &[])
        .ok();
    buyer
        .client(&["catalog", "publish", "publisher.catalog"])
        .ok();
    let catalogs = buyer.client_json(&["catalog", "ls"]);
    assert_eq!(catalogs["catalogs"][0]["revoked_licences"], 1, "{catalogs}");
    let out = buyer.client(&["get", &link, "-o", "after-revocation"]);
    out.expect_code(1);
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
    assert!(!w.join("after-revocation/one.bin").exists());
    let listed = buyer.client_json(&["licence", "ls"]);
    let entry = &listed["licences"][0];
    assert_eq!(entry["id"], licence_id.as_str());
    assert!(text(&entry["refused"]).contains("revoked"), "{listed}");
    // A revoked licence is not taken again either.
    let out = buyer.client(&["licence", "add", "buyer.licence"]);
    out.expect_code(1);
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
}
