//! `licet-manifest` end to end: the real binary in temp directories, its outputs loaded back with
//! `licet-proto` (so the tool and the library agree), and every refusal a rights holder can meet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use licet_proto::{
    catalog::{VerifiedCatalog, VerifiedCatalogHead},
    manifest::VerifiedManifest,
    merkle::{self, MerkleTree},
};
use licet_tests::{Workdir, pseudo_random_bytes, required};

const CS: usize = 16 * 1024;

/// Files at the edge sizes for a 16 KiB chunk, in a nested directory.
fn edge_case_release(w: &Workdir) -> Vec<(&'static str, usize)> {
    let files = vec![
        ("empty.bin", 0),
        ("one.bin", 1),
        ("sub/chunk-minus-one.bin", CS - 1),
        ("sub/chunk.bin", CS),
        ("sub/deeper/chunk-plus-one.bin", CS + 1),
        ("many.bin", 3 * 1024 * 1024 + 17),
    ];
    for (i, (path, size)) in files.iter().enumerate() {
        w.write(
            &format!("release/{path}"),
            &pseudo_random_bytes(*size, i as u64 + 1),
        );
    }
    files
}

#[test]
fn publish_and_verify_edge_case_sizes() {
    let w = Workdir::new();
    let publisher = w.keygen("publisher.pem");
    let files = edge_case_release(&w);
    let created = w
        .manifest(&[
            "create",
            "release",
            "--key",
            "publisher.pem",
            "--title",
            "Edge cases",
            "--chunk-size",
            "16KiB",
            "--not-after",
            "+1d",
            "--regions",
            "FR,de",
            "--terms",
            "test terms",
            "-o",
            "edge.manifest",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(created["files"], files.len());
    assert_eq!(created["publisher"], publisher.as_str());

    // The library reads what the tool wrote, and computes the same roots from the bytes.
    let verified =
        VerifiedManifest::from_bytes(&std::fs::read(w.join("edge.manifest")).unwrap()).unwrap();
    assert_eq!(created["manifest_id"], verified.id().to_hex());
    assert_eq!(created["link"], format!("licet:{}", verified.id()));
    let m = verified.manifest();
    assert_eq!(m.chunk_size as usize, CS);
    assert_eq!(
        m.licence
            .regions
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        ["FR", "DE"]
    );
    for (path, size) in &files {
        let entry = m.files.iter().find(|f| f.path.as_str() == *path).unwrap();
        assert_eq!(entry.size, *size as u64, "{path}");
        let bytes = std::fs::read(w.join(&format!("release/{path}"))).unwrap();
        let leaves = if bytes.is_empty() {
            vec![merkle::leaf_hash(&[])]
        } else {
            bytes.chunks(CS).map(merkle::leaf_hash).collect()
        };
        assert_eq!(entry.root, MerkleTree::from_leaves(leaves).root(), "{path}");
    }

    let ok = w
        .manifest(&[
            "verify",
            "edge.manifest",
            "--publisher",
            &publisher,
            "--content",
            "release",
            "--region",
            "FR",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(ok["valid"], true);
    assert_eq!(
        ok["content_bytes"],
        files.iter().map(|f| f.1).sum::<usize>()
    );
}

#[test]
fn verify_reports_changed_and_missing_content() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    edge_case_release(&w);
    w.manifest(&[
        "create",
        "release",
        "--key",
        "publisher.pem",
        "--title",
        "T",
        "--chunk-size",
        "16KiB",
        "-o",
        "m",
    ])
    .ok();

    // Same size, one byte flipped in the last chunk.
    let path = w.join("release/many.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&path, bytes).unwrap();
    std::fs::remove_file(w.join("release/one.bin")).unwrap();

    let out = w.manifest(&["verify", "m", "--content", "release"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("many.bin does not match the manifest"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("one.bin"), "{}", out.stderr);
}

#[test]
fn tampered_or_foreign_manifests_are_refused() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    let other = w.keygen("other.pem");
    w.write("f.txt", b"hello");
    w.manifest(&[
        "create",
        "f.txt",
        "--key",
        "publisher.pem",
        "--title",
        "Hello",
        "-o",
        "m",
    ])
    .ok();

    let wrong_publisher = w.manifest(&["verify", "m", "--publisher", &other]);
    wrong_publisher.expect_code(1);
    assert!(
        wrong_publisher.stderr.contains(&format!("not {other}")),
        "{}",
        wrong_publisher.stderr
    );

    // Flip one byte of the title inside the signed body.
    let mut bytes = std::fs::read(w.join("m")).unwrap();
    let at = bytes.windows(5).position(|win| win == b"Hello").unwrap();
    bytes[at] = b'J';
    std::fs::write(w.join("tampered"), &bytes).unwrap();
    let out = w.manifest(&["verify", "tampered"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("signature") && out.stderr.contains("not valid"),
        "{}",
        out.stderr
    );
    let shown = w.manifest(&["inspect", "tampered"]);
    shown.expect_code(1);
    assert!(shown.stdout.contains("valid        NO"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("Jello"),
        "the body is still shown: {}",
        shown.stdout
    );

    w.write("garbage", b"this is not a manifest at all");
    let out = w.manifest(&["verify", "garbage"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("garbage is not a Licet manifest (it is a text file"),
        "{}",
        out.stderr
    );
}

#[test]
fn licence_window_and_region_are_enforced() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    w.write("f", b"x");
    w.manifest(&[
        "create",
        "f",
        "--key",
        "publisher.pem",
        "--title",
        "Later",
        "--not-before",
        "+1d",
        "-o",
        "later",
    ])
    .ok();
    let out = w.manifest(&["verify", "later"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("licence window has not started"),
        "{}",
        out.stderr
    );
    w.manifest(&["verify", "later", "--at", "+2d"]).ok();

    w.manifest(&[
        "create",
        "f",
        "--key",
        "publisher.pem",
        "--title",
        "Short",
        "--not-after",
        "+1h",
        "--regions",
        "BE",
        "-o",
        "short",
    ])
    .ok();
    w.manifest(&["verify", "short"]).ok();
    let out = w.manifest(&["verify", "short", "--at", "+1h"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("licence window has ended"),
        "{}",
        out.stderr
    );
    let out = w.manifest(&["verify", "short", "--region", "FR"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("this node is in FR; the licence covers BE"),
        "{}",
        out.stderr
    );
    w.manifest(&["verify", "short", "--region", "be"]).ok();
}

#[test]
fn keys_are_private_and_never_overwritten() {
    let w = Workdir::new();
    let first = w.keygen("k.pem");
    assert_eq!(first.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(w.join("k.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = w.manifest(&["keygen", "-o", "k.pem"]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("already exists (pass --force"),
        "{}",
        again.stderr
    );
    assert_eq!(w.manifest(&["pubkey", "k.pem"]).ok().stdout.trim(), first);
    let replaced = w
        .manifest(&["keygen", "-o", "k.pem", "--force"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_ne!(replaced, first);
}

#[test]
fn usage_and_io_errors_exit_2_and_name_the_problem() {
    let w = Workdir::new();
    w.keygen("k.pem");
    w.write("f", b"x");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "create",
                "f",
                "--key",
                "missing.pem",
                "--title",
                "T",
                "-o",
                "m",
            ],
            "missing.pem",
        ),
        (
            &[
                "create", "nope", "--key", "k.pem", "--title", "T", "-o", "m",
            ],
            "cannot read nope",
        ),
        (
            &[
                "create",
                "f",
                "--key",
                "k.pem",
                "--title",
                "T",
                "--not-after",
                "tomorrow",
                "-o",
                "m",
            ],
            "is not a time",
        ),
        (
            &[
                "create",
                "f",
                "--key",
                "k.pem",
                "--title",
                "T",
                "--chunk-size",
                "1000",
                "-o",
                "m",
            ],
            "not a power of two",
        ),
        (
            &[
                "create",
                "f",
                "--key",
                "k.pem",
                "--title",
                "T",
                "--regions",
                "FRA",
                "-o",
                "m",
            ],
            "\"FRA\" is not an assigned ISO 3166-1 alpha-2 region code",
        ),
        (
            &["create", "f", "--key", "f", "--title", "T", "-o", "m"],
            "not an ed25519 PKCS#8 PEM private key",
        ),
        (&["verify", "missing.manifest"], "missing.manifest"),
        (
            &[
                "delegate", "--key", "k.pem", "--to", "abcd", "--until", "+1d", "-o", "d",
            ],
            "public key must be 64 hex",
        ),
    ];
    for (args, expected) in cases {
        let out = w.manifest(args);
        out.expect_code(2);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
    assert!(!w.join("m").exists(), "no output is written on error");
}

#[test]
fn a_file_name_that_cannot_travel_is_refused() {
    let w = Workdir::new();
    w.keygen("k.pem");
    w.write("release/bad\\name", b"x");
    let out = w.manifest(&[
        "create", "release", "--key", "k.pem", "--title", "T", "-o", "m",
    ]);
    out.expect_code(2);
    assert!(out.stderr.contains("backslash"), "{}", out.stderr);
}

#[test]
fn names_that_collide_elsewhere_or_disguise_a_terminal_are_refused_before_hashing_and_shown_escaped()
 {
    let w = Workdir::new();
    w.keygen("k.pem");
    let create =
        |dir: &str| w.manifest(&["create", dir, "--key", "k.pem", "--title", "T", "-o", "m"]);
    let no_raw_controls = |text: &str| {
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || matches!(c, '\u{202a}'..='\u{202e}')),
            "{text:?}"
        );
    };

    // One file on macOS and Windows: case, and the NFC and NFD forms of `é`.
    for (a, b) in [
        ("Film.mkv", "film.mkv"),
        ("caf\u{e9}.srt", "cafe\u{301}.srt"),
    ] {
        let dir = format!("collide-{}", a.len());
        w.write(&format!("{dir}/{a}"), b"one");
        w.write(&format!("{dir}/{b}"), b"two");
        let out = create(&dir);
        out.expect_code(2);
        assert!(
            out.stderr
                .contains("cannot include these files in one manifest")
                && out.stderr.contains("ignore case or Unicode normalisation")
                && out.stderr.contains(&format!("{a:?}"))
                && out.stderr.contains(&format!("{b:?}")),
            "{}",
            out.stderr
        );
    }

    // A right-to-left override (shows `evilexe.mkv`) and a terminal escape sequence in names.
    for name in ["evil\u{202e}vkm.exe", "clip\u{1b}]0;owned\u{7}.mkv"] {
        let dir = format!("spoof-{}", name.len());
        w.write(&format!("{dir}/{name}"), b"x");
        let out = create(&dir);
        out.expect_code(2);
        no_raw_controls(&out.stderr);
        assert!(
            out.stderr
                .contains("a control, bidirectional or invisible character"),
            "{}",
            out.stderr
        );
        let escaped = name.escape_debug().to_string();
        assert!(out.stderr.contains(&escaped), "{escaped} in {}", out.stderr);
    }

    // A name Windows cannot hold.
    w.write("windows/nul.txt", b"x");
    let out = create("windows");
    out.expect_code(2);
    assert!(
        out.stderr.contains("reserves for a device"),
        "{}",
        out.stderr
    );

    assert!(!w.join("m").exists(), "no manifest is written");
}

/// Issue 14: a file that is not what a command reads says so once, naming the file and what it
/// is instead, with no decoder's type names; a missing key's OS error is printed once.
#[test]
fn a_file_that_is_not_what_a_command_reads_is_named_with_what_it_is() {
    let w = Workdir::new();
    let publisher = w.keygen("publisher.pem");
    w.write("notes.txt", b"hello\n");
    w.write("film.mkv", &pseudo_random_bytes(4096, 9));
    w.write("release/a", b"a");
    w.manifest(&[
        "create",
        "release",
        "--key",
        "publisher.pem",
        "--title",
        "A",
        "-o",
        "a.manifest",
    ])
    .ok();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["inspect", "notes.txt"],
            1,
            "notes.txt is not a Licet signed object (it is a text file, while signed Licet \
             objects are binary files)",
        ),
        (
            &["verify", "notes.txt", "--publisher", &publisher],
            1,
            "notes.txt is not a Licet manifest (it is a text file",
        ),
        (
            &["verify", "film.mkv"],
            1,
            "film.mkv is not a Licet manifest (",
        ),
        (
            &["verify", "a.manifest", "--catalog", "publisher.pem"],
            1,
            "publisher.pem is not a Licet catalog (it is a PEM text file (a key?)",
        ),
        (
            &["catalog", "add", "publisher.draft", "a.manifest"],
            2,
            "cannot read catalog draft publisher.draft",
        ),
        (
            &[
                "create",
                "release",
                "--key",
                "publisher.pem",
                "--delegation",
                "a.manifest",
                "--title",
                "B",
                "-o",
                "b.manifest",
            ],
            1,
            "a.manifest is not a Licet delegation (it is a signed manifest)",
        ),
        (
            &[
                "create",
                "release",
                "--key",
                "a.manifest",
                "--title",
                "B",
                "-o",
                "b.manifest",
            ],
            2,
            "a.manifest is not an ed25519 PKCS#8 PEM private key: it is a binary file, while a \
             PEM key is text",
        ),
        (
            &[
                "create",
                "release",
                "--key",
                "notes.txt",
                "--title",
                "B",
                "-o",
                "b.manifest",
            ],
            2,
            "notes.txt is not an ed25519 PKCS#8 PEM private key: it has no \"-----BEGIN PRIVATE \
             KEY-----\" line",
        ),
    ];
    for (args, code, expected) in cases {
        let out = w.manifest(args);
        out.expect_code(*code);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        for library_word in ["Serde", "serde", "postcard", "ASN.1", "Deserializ"] {
            assert!(
                !out.stderr.contains(library_word),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
    // Every key-taking command: a missing key file, and the OS error once.
    let key_commands: &[&[&str]] = &[
        &[
            "create",
            "release",
            "--key",
            "missing.pem",
            "--title",
            "B",
            "-o",
            "b.manifest",
        ],
        &["pubkey", "missing.pem"],
        &[
            "delegate",
            "--key",
            "missing.pem",
            "--to",
            &publisher,
            "--until",
            "+1d",
            "-o",
            "d",
        ],
        &["catalog", "new", "--key", "missing.pem", "-o", "draft.json"],
    ];
    for args in key_commands {
        let out = w.manifest(args);
        out.expect_code(2);
        assert!(
            out.stderr
                .contains("cannot read the key file missing.pem: "),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(
            out.stderr.matches("No such file or directory").count(),
            1,
            "{args:?}: {}",
            out.stderr
        );
    }
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "a.manifest"])
        .ok();
    let out = w.manifest(&[
        "catalog",
        "sign",
        "draft.json",
        "--key",
        "missing.pem",
        "--expires",
        "+1d",
        "-o",
        "c",
    ]);
    out.expect_code(2);
    assert_eq!(
        out.stderr.matches("No such file").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn delegated_signing_scope_and_revocation() {
    let w = Workdir::new();
    let publisher = w.keygen("publisher.pem");
    let partner = w.keygen("partner.pem");
    w.write("f", b"partner content");
    w.manifest(&[
        "delegate",
        "--key",
        "publisher.pem",
        "--to",
        &partner,
        "--until",
        "+30d",
        "--scope",
        "title-prefix:Season 2",
        "-o",
        "partner.delegation",
    ])
    .ok();
    let made = w
        .manifest(&[
            "create",
            "f",
            "--key",
            "partner.pem",
            "--delegation",
            "partner.delegation",
            "--title",
            "Season 2 Episode 1",
            "-o",
            "s2e1",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(made["publisher"], publisher.as_str());
    assert_eq!(made["signer"], partner.as_str());
    w.manifest(&["verify", "s2e1", "--publisher", &publisher])
        .ok();

    let out = w.manifest(&[
        "create",
        "f",
        "--key",
        "partner.pem",
        "--delegation",
        "partner.delegation",
        "--title",
        "Season 3 Episode 1",
        "-o",
        "s3e1",
    ]);
    // A signature the delegation does not allow is a policy refusal (exit 1), as `verify`'s.
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("not a manifest titled \"Season 3 Episode 1\""),
        "{}",
        out.stderr
    );

    // The delegation is for the partner's key, not the publisher's.
    let out = w.manifest(&[
        "create",
        "f",
        "--key",
        "publisher.pem",
        "--delegation",
        "partner.delegation",
        "--title",
        "Season 2 x",
        "-o",
        "x",
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("delegates to"), "{}", out.stderr);

    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "s2e1"]).ok();
    w.catalog_sign("draft.json", "publisher.pem", "c1", &[])
        .ok();
    w.manifest(&["verify", "s2e1", "--catalog", "c1"]).ok();
    w.manifest(&["catalog", "revoke-delegate", "draft.json", &partner])
        .ok();
    w.catalog_sign("draft.json", "publisher.pem", "c2", &[])
        .ok();
    let out = w.manifest(&["verify", "s2e1", "--catalog", "c2"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("delegate key is revoked by the publisher"),
        "{}",
        out.stderr
    );
}

#[test]
fn catalog_sequences_revocation_and_heads() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    w.keygen("intruder.pem");
    w.write("a", b"a");
    w.write("b", b"b");
    w.manifest(&[
        "create",
        "a",
        "--key",
        "publisher.pem",
        "--title",
        "A",
        "-o",
        "a.manifest",
    ])
    .ok();
    w.manifest(&[
        "create",
        "b",
        "--key",
        "publisher.pem",
        "--title",
        "B",
        "-o",
        "b.manifest",
    ])
    .ok();
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "a.manifest", "b.manifest"])
        .ok();
    let first = w
        .catalog_sign(
            "draft.json",
            "publisher.pem",
            "c1",
            &["--expires", "+1d", "--json"],
        )
        .ok()
        .json();
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["entries"], 2);

    w.manifest(&["catalog", "revoke", "draft.json", "a.manifest"])
        .ok();
    let second = w
        .catalog_sign("draft.json", "publisher.pem", "c2", &["--json"])
        .ok()
        .json();
    assert_eq!(second["sequence"], 2);
    assert_eq!(second["entries"], 1);
    assert_eq!(second["revoked_manifests"], 1);

    // The head the tool wrote points at exactly that catalog, and not at the previous one.
    let c1 = VerifiedCatalog::from_bytes(&std::fs::read(w.join("c1")).unwrap()).unwrap();
    let c2 = VerifiedCatalog::from_bytes(&std::fs::read(w.join("c2")).unwrap()).unwrap();
    let head = VerifiedCatalogHead::from_bytes(&std::fs::read(w.join("c2.head")).unwrap()).unwrap();
    assert!(head.matches(&c2));
    assert!(!head.matches(&c1));

    let out = w.manifest(&["verify", "a.manifest", "--catalog", "c2"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("manifest is revoked by the publisher"),
        "{}",
        out.stderr
    );
    w.manifest(&["verify", "b.manifest", "--catalog", "c2"])
        .ok();

    let again = w.manifest(&["catalog", "add", "draft.json", "a.manifest"]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("cannot be listed again"),
        "{}",
        again.stderr
    );

    let intruder = w.catalog_sign("draft.json", "intruder.pem", "c3", &[]);
    intruder.expect_code(2);
    assert!(
        intruder
            .stderr
            .contains("signed by the publisher's own key"),
        "{}",
        intruder.stderr
    );

    let expired = w.manifest(&["verify", "b.manifest", "--catalog", "c1", "--at", "+2d"]);
    expired.expect_code(1);
    assert!(expired.stderr.contains("expired"), "{}", expired.stderr);

    let shown = w
        .manifest(&["catalog", "inspect", "draft.json", "--json"])
        .ok()
        .json();
    assert_eq!(shown["last_signed_sequence"], 2);
}

#[test]
fn a_catalog_of_100k_entries_is_built_and_verified() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    let mut list = String::new();
    for i in 0..100_000u32 {
        let id = licet_proto::manifest::manifest_id(&i.to_le_bytes());
        list.push_str(&format!("{id} Episode {i}\n"));
    }
    w.write("ids.txt", list.as_bytes());
    w.catalog_new("publisher.pem", "draft.json");
    w.manifest(&["catalog", "add", "draft.json", "--from-list", "ids.txt"])
        .ok();
    let signed = w
        .catalog_sign("draft.json", "publisher.pem", "big", &["--json"])
        .ok()
        .json();
    assert_eq!(signed["entries"], 100_000);
    // Format 2: a signed root and 8,192 buckets on 64 pages.
    assert_eq!(signed["parts"], 8_192 + 64);
    let shown = w.manifest(&["inspect", "big", "--json"]).ok().json();
    assert_eq!(shown["valid"], true);
    assert_eq!(shown["kind"], "catalog");
    assert_eq!(shown["derived"]["format"], "2");
    assert_eq!(shown["derived"]["parts"], "8256");
    assert_eq!(shown["body"]["entries"].as_array().unwrap().len(), 100_000);
    let catalog = VerifiedCatalog::from_bytes(&std::fs::read(w.join("big")).unwrap()).unwrap();
    let probe = licet_proto::manifest::manifest_id(&77_777u32.to_le_bytes());
    assert!(catalog.catalog().lists(&probe));
}

#[test]
fn a_catalog_of_format_1_is_refused_naming_its_format() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    w.write("a", b"a");
    w.manifest(&[
        "create",
        "a",
        "--key",
        "publisher.pem",
        "--title",
        "A",
        "-o",
        "a.manifest",
    ])
    .ok();
    // A catalog as the earlier format wrote it: every entry in one signed envelope.
    let key = licet_proto::SecretKey::from_seed(&[3; 32]);
    let body = licet_proto::catalog::Catalog {
        publisher: key.public_key(),
        sequence: 1,
        issued_at: licet_proto::Timestamp::now(),
        expires_at: licet_proto::Timestamp::now().plus_seconds(3600),
        entries: vec![],
        revoked_manifests: vec![],
        revoked_delegates: vec![],
        revoked_licences: Vec::new(),
    };
    let old = licet_proto::signed::Signed::sign(
        licet_proto::signed::SignedKind::Catalog,
        licet_proto::encoding::encode(&body),
        &key,
        None,
    );
    w.write("old.catalog", &old.encode());
    for args in [
        &["verify", "a.manifest", "--catalog", "old.catalog"][..],
        &["inspect", "old.catalog"][..],
    ] {
        let out = w.manifest(args);
        out.expect_code(1);
        assert!(
            out.stderr.contains("catalog format 1 is not read here")
                && out.stderr.contains("licet-manifest catalog sign"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn keys_interoperate_with_openssl() {
    if !required::command_runs("openssl", &["version"]) {
        required::cannot_run_here("the openssl command is not installed");
        return;
    }
    let w = Workdir::new();

    // A key made by openssl signs a manifest that verifies.
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(w.join("openssl.pem"))
        .status()
        .unwrap();
    assert!(status.success());
    let pubkey = w
        .manifest(&["pubkey", "openssl.pem"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_eq!(pubkey, openssl_public_key(&w.join("openssl.pem")));
    w.write("f", b"made with an openssl key");
    w.manifest(&[
        "create",
        "f",
        "--key",
        "openssl.pem",
        "--title",
        "T",
        "-o",
        "m",
    ])
    .ok();
    w.manifest(&["verify", "m", "--publisher", &pubkey, "--content", "."])
        .ok();

    // A key made by the tool gives openssl the same public key.
    let ours = w.keygen("ours.pem");
    assert_eq!(openssl_public_key(&w.join("ours.pem")), ours);
}

/// The public key of the private key file `pem`, as `openssl pkey -pubout` derives it (the last 32
/// bytes of the DER SubjectPublicKeyInfo), in hex as `licet-manifest pubkey` prints it.
fn openssl_public_key(pem: &std::path::Path) -> String {
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(
        der.status.success(),
        "{}",
        String::from_utf8_lossy(&der.stderr)
    );
    assert_eq!(der.stdout.len(), 44);
    der.stdout[12..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `licet-manifest inspect --json | head`: once the reader has what it wants and closes the
/// pipe, the tool ends quietly with exit 0 (it used to panic, exit 101, "Broken pipe").
#[test]
fn a_closed_pipe_ends_the_tool_quietly() {
    let w = Workdir::new();
    w.keygen("publisher.pem");
    edge_case_release(&w);
    w.manifest(&[
        "create",
        "release",
        "--key",
        "publisher.pem",
        "--title",
        "Pipe",
        "-o",
        "pipe.manifest",
    ])
    .ok();
    for args in [
        &["inspect", "pipe.manifest", "--json"][..],
        &["inspect", "pipe.manifest"],
    ] {
        let out = w.manifest_into_closed_pipe(args);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (Some(0), ""),
            "licet-manifest {args:?} into a closed pipe"
        );
    }
}
