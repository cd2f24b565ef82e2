//! What a catalog update costs a node that holds the previous catalog: the measurement behind
//! the README's figures ("Performance"). A takedown of one manifest in a 100,000-entry catalog
//! must cost an up-to-date node at most 16 KiB of catalog transfer: the signed root, and the
//! parts it lacks, each with the wire framing it travels in. Revoking one licence costs the same
//! (its id falls in one bucket, like a manifest's).
//!
//! Run with `--nocapture` to see the figures. Time is printed, never asserted (machines are
//! noisy); bytes are exact and asserted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "clippy.toml's allow-*-in-tests covers #[test] bodies, not these test helpers"
)]

use std::{collections::BTreeMap, time::Instant};

use licet_proto::{
    CatalogPartHash, LicenceId, ManifestId, PublicKey, SecretKey, Timestamp,
    catalog::{Catalog, CatalogEntry, VerifiedCatalog, VerifiedCatalogRoot},
    manifest::manifest_id,
    wire::{self, MAX_CATALOG_PARTS_PER_REQUEST, Request, RequestFrame, RequestId, Response},
};

/// The transfer budget of one takedown, or one licence revocation, at 100,000 entries.
const TAKEDOWN_BUDGET_BYTES: usize = 16 * 1024;

fn publisher_key() -> SecretKey {
    SecretKey::from_seed(&[5; 32])
}

/// A catalog of `n` entries with titles like the README's example (about 56 bytes an entry).
fn big_catalog(n: u32) -> Catalog {
    let issued_at = Timestamp(1_800_000_000);
    Catalog {
        publisher: publisher_key().public_key(),
        sequence: 1,
        issued_at,
        expires_at: issued_at.plus_seconds(86_400),
        entries: (0..n)
            .map(|i| CatalogEntry {
                manifest_id: manifest_id(&i.to_le_bytes()),
                title: format!("Episode {i} of a series"),
            })
            .collect(),
        revoked_manifests: vec![],
        revoked_delegates: vec![],
        revoked_licences: Vec::new(),
    }
}

/// The bytes a node moves to go from `old` to `new`, as `licet-node` fetches (the root in one
/// `CatalogPart` answer, then `CatalogParts` rounds for what it lacks): every request frame and
/// every answer frame, counted whole.
fn update_cost(old: &VerifiedCatalog, new: &VerifiedCatalog) -> (usize, usize, VerifiedCatalog) {
    let publisher: PublicKey = new.catalog().publisher;
    let mut wire_bytes = 0;
    let frame_len = |request: Request, response: Response, payload: usize| {
        let mut out = Vec::new();
        wire::encode_request(
            &RequestFrame {
                id: RequestId(1),
                request,
            },
            &mut out,
        );
        wire::encode_response_header(
            &wire::ResponseFrame {
                id: RequestId(1),
                response,
            },
            &mut out,
        );
        out.len() + payload
    };
    // The root, whole in one piece.
    let root_bytes = new.root().envelope_bytes().to_vec();
    wire_bytes += frame_len(
        Request::CatalogPart {
            publisher,
            catalog_hash: new.hash(),
            offset: 0,
        },
        Response::CatalogPart {
            total_len: root_bytes.len() as u64,
            offset: 0,
            len: root_bytes.len() as u32,
        },
        root_bytes.len(),
    );
    let root = VerifiedCatalogRoot::from_bytes(&root_bytes).unwrap();
    let mut fetched: BTreeMap<CatalogPartHash, Vec<u8>> = BTreeMap::new();
    let mut parts = 0;
    loop {
        let missing = root
            .root()
            .missing_parts(|hash| {
                fetched
                    .get(hash)
                    .map(Vec::as_slice)
                    .or_else(|| old.part(hash))
            })
            .unwrap();
        if missing.is_empty() {
            break;
        }
        for batch in missing.chunks(MAX_CATALOG_PARTS_PER_REQUEST) {
            let answer: Vec<Vec<u8>> = batch
                .iter()
                .map(|hash| new.part(hash).unwrap().to_vec())
                .collect();
            wire_bytes += frame_len(
                Request::CatalogParts {
                    publisher,
                    hashes: batch.to_vec(),
                },
                Response::CatalogParts {
                    lens: answer.iter().map(|part| part.len() as u32).collect(),
                },
                answer.iter().map(Vec::len).sum(),
            );
            parts += answer.len();
            fetched.extend(batch.iter().copied().zip(answer));
        }
    }
    let assembled = VerifiedCatalog::assemble(root, |hash| {
        fetched
            .get(hash)
            .map(Vec::as_slice)
            .or_else(|| old.part(hash))
    })
    .unwrap();
    (wire_bytes, parts, assembled)
}

#[test]
fn a_takedown_in_a_100000_entry_catalog_costs_an_up_to_date_node_at_most_16_kib() {
    let key = publisher_key();
    let catalog = big_catalog(100_000);
    let whole = catalog.clone().sign(&key).unwrap();
    let file_len = whole.to_file_bytes().len();

    // The takedown: one manifest moves from the list to the revocations.
    let mut next = catalog;
    let taken: ManifestId = next.entries.remove(31_337).manifest_id;
    next.revoked_manifests.push(taken);
    next.sequence = 2;
    let signing = Instant::now();
    let update = next.sign(&key).unwrap();
    let signed_in = signing.elapsed();

    let applying = Instant::now();
    let (bytes, parts, assembled) = update_cost(&whole, &update);
    let applied_in = applying.elapsed();
    assert_eq!(assembled.hash(), update.hash());
    assert!(assembled.catalog().revokes_manifest(&taken));
    assert!(!assembled.catalog().lists(&taken));
    assert_eq!(assembled.catalog().entries.len(), 99_999);

    println!(
        "catalog of 100,000 entries: {file_len} bytes as a file, {} parts, root {} bytes",
        whole.parts_size().0,
        whole.root().envelope_bytes().len()
    );
    println!(
        "takedown of 1 manifest: {bytes} bytes on the wire ({parts} parts), \
         applied (root checked, parts checked, catalog assembled) in {applied_in:?}, \
         signed by the tool in {signed_in:?}"
    );
    assert_eq!(parts, 2, "one page and one bucket change");
    assert!(
        bytes <= TAKEDOWN_BUDGET_BYTES,
        "a takedown cost {bytes} bytes, over {TAKEDOWN_BUDGET_BYTES}"
    );

    // A node that holds nothing fetches the whole catalog: every part, once.
    let empty = big_catalog(0).sign(&key).unwrap();
    let (from_nothing, all_parts, _) = update_cost(&empty, &update);
    println!("a node holding nothing: {from_nothing} bytes ({all_parts} parts)");
    assert!(from_nothing > file_len / 2 && all_parts + 1 >= update.parts_size().0);
}

#[test]
fn a_licence_revocation_in_a_100000_entry_catalog_costs_what_a_takedown_costs() {
    let key = publisher_key();
    let catalog = big_catalog(100_000);
    let whole = catalog.clone().sign(&key).unwrap();

    // The first licence revocation turns one plain bucket into a licence bucket.
    let mut next = catalog;
    let revoked = LicenceId(licet_proto::manifest::manifest_id(b"a licence body").0);
    next.revoked_licences.push(revoked);
    next.sequence = 2;
    let update = next.clone().sign(&key).unwrap();
    assert_eq!(
        update.root().root().bucket_bits,
        whole.root().root().bucket_bits
    );
    let (bytes, parts, assembled) = update_cost(&whole, &update);
    assert_eq!(assembled.hash(), update.hash());
    assert!(assembled.catalog().revokes_licence(&revoked));
    assert_eq!(assembled.catalog().entries.len(), 100_000);
    println!("revocation of 1 licence: {bytes} bytes on the wire ({parts} parts)");
    assert_eq!(parts, 2, "one page and one bucket change");
    assert!(
        bytes <= TAKEDOWN_BUDGET_BYTES,
        "a licence revocation cost {bytes} bytes, over {TAKEDOWN_BUDGET_BYTES}"
    );

    // A second one, once the catalog already revokes licences, costs the same.
    let mut later = next;
    let second = LicenceId(licet_proto::manifest::manifest_id(b"another licence").0);
    later.revoked_licences.push(second);
    later.sequence = 3;
    let later = later.sign(&key).unwrap();
    let (bytes, parts, assembled) = update_cost(&update, &later);
    assert!(assembled.catalog().revokes_licence(&second));
    assert!(assembled.catalog().revokes_licence(&revoked));
    assert_eq!(parts, 2, "one page and one bucket change");
    assert!(bytes <= TAKEDOWN_BUDGET_BYTES, "{bytes} bytes");
}
