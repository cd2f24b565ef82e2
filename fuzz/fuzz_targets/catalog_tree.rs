//! Catalog format 2 (`licet_proto::catalog_parts`): a node putting a catalog together from a
//! genuine signed root and parts a peer chose, and a catalog file read whole.
//!
//! The input (read with `arbitrary`) is a small catalog (its ids chosen, so buckets fill or
//! collide; each revoked id with an odd low byte revokes a licence of that id too, so both
//! `Bucket` and `LicenceBucket` parts occur, from the same seeds as before), the catalog the node held before (its parts count as held), and what a peer
//! answers for each part the node asks: the true part, the true part with a byte flipped, a part
//! of the held catalog, or raw bytes. It also feeds raw bytes to `VerifiedCatalog::from_bytes`.
//!
//! Properties checked (a failed assertion is a bug):
//! - a part is kept only if it hashes to the hash asked for, so whatever the peer sends, the
//!   catalog the node assembles is exactly the one signed (same hash, same entries), or the node
//!   is still missing parts and assembling fails naming a missing part;
//! - `missing_parts` never names a part the node holds, and with honest answers the node has
//!   every part after at most two rounds;
//! - a catalog file of the signed catalog reads back to it; arbitrary bytes never panic, and a
//!   refusal's message holds no character `is_unsafe_to_show` refuses (it is logged).

#![no_main]

use std::{collections::BTreeMap, sync::LazyLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use licet_proto::{
    CatalogPartHash, LicenceId, ManifestId, SecretKey, Timestamp,
    catalog::{Catalog, CatalogEntry, CatalogError, VerifiedCatalog},
    catalog_parts::catalog_part_hash,
    text::is_unsafe_to_show,
};

static KEY: LazyLock<SecretKey> = LazyLock::new(|| SecretKey::from_seed(&[7; 32]));

#[derive(Arbitrary, Debug)]
enum Answer {
    True,
    Flipped(u16),
    OfHeld(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Listed ids: a leading byte and a low byte each (the rest fixed), so buckets collide.
    listed: Vec<(u8, u8)>,
    revoked: Vec<(u8, u8)>,
    held_listed: Vec<(u8, u8)>,
    answers: Vec<Answer>,
    raw_file: Vec<u8>,
}

fn id((high, low): (u8, u8)) -> ManifestId {
    let mut bytes = [0x5a; 32];
    bytes[0] = high;
    bytes[31] = low;
    ManifestId(bytes)
}

fn signed(listed: &[(u8, u8)], revoked: &[(u8, u8)], sequence: u64) -> Option<VerifiedCatalog> {
    let mut catalog = Catalog {
        publisher: KEY.public_key(),
        sequence,
        issued_at: Timestamp(1_800_000_000),
        expires_at: Timestamp(1_800_086_400),
        entries: listed
            .iter()
            .take(400)
            .map(|pair| CatalogEntry {
                manifest_id: id(*pair),
                title: format!("{pair:?}"),
            })
            .collect(),
        revoked_manifests: revoked.iter().take(100).map(|pair| id(*pair)).collect(),
        revoked_delegates: vec![],
        revoked_licences: revoked
            .iter()
            .take(100)
            .filter(|(_, low)| low % 2 == 1)
            .map(|pair| LicenceId(id(*pair).0))
            .collect(),
    };
    catalog.canonicalize();
    let revoked = catalog.revoked_manifests.clone();
    catalog
        .entries
        .retain(|e| !revoked.contains(&e.manifest_id));
    catalog.sign(&KEY).ok()
}

fuzz_target!(|input: Input| {
    if let Err(e) = VerifiedCatalog::from_bytes(&input.raw_file) {
        assert!(!e.to_string().chars().any(is_unsafe_to_show), "{e:?}");
    }
    let Some(new) = signed(&input.listed, &input.revoked, 2) else {
        return;
    };
    let Some(held) = signed(&input.held_listed, &[], 1) else {
        return;
    };
    let back = VerifiedCatalog::from_bytes(&new.to_file_bytes()).expect("a signed file reads");
    assert_eq!(back.hash(), new.hash());
    assert_eq!(back.catalog(), new.catalog());

    let held_parts: Vec<&[u8]> = held
        .root()
        .root()
        .pages
        .iter()
        .filter_map(|hash| held.part(hash))
        .collect();
    let mut fetched: BTreeMap<CatalogPartHash, Vec<u8>> = BTreeMap::new();
    let mut answers = input.answers.iter();
    let mut all_honest = true;
    for _round in 0..2 {
        let lookup = |hash: &CatalogPartHash| {
            fetched
                .get(hash)
                .map(Vec::as_slice)
                .or_else(|| held.part(hash))
        };
        let missing = new
            .root()
            .root()
            .missing_parts(lookup)
            .expect("a signed root's pages decode");
        for hash in &missing {
            assert!(lookup(hash).is_none(), "a held part is named missing");
        }
        for hash in missing {
            let truth = new.part(&hash).expect("a named part exists").to_vec();
            let sent = match answers.next().unwrap_or(&Answer::True) {
                Answer::True => truth,
                Answer::Flipped(at) => {
                    all_honest = false;
                    let mut bytes = truth;
                    let at = usize::from(*at) % bytes.len().max(1);
                    if let Some(byte) = bytes.get_mut(at) {
                        *byte ^= 1;
                    }
                    bytes
                }
                Answer::OfHeld(which) => {
                    all_honest = false;
                    held_parts
                        .get(usize::from(*which) % held_parts.len().max(1))
                        .map(|part| part.to_vec())
                        .unwrap_or_default()
                }
                Answer::Raw(bytes) => {
                    all_honest = false;
                    bytes.clone()
                }
            };
            // What the node does with an answer: keep it only under the hash it hashes to,
            // if that is the hash asked for.
            if catalog_part_hash(&sent) == hash {
                fetched.insert(hash, sent);
            }
        }
    }
    let lookup = |hash: &CatalogPartHash| {
        fetched
            .get(hash)
            .map(Vec::as_slice)
            .or_else(|| held.part(hash))
    };
    match VerifiedCatalog::assemble(new.root().clone(), lookup) {
        Ok(assembled) => {
            assert_eq!(assembled.hash(), new.hash());
            assert_eq!(assembled.catalog(), new.catalog());
        }
        Err(CatalogError::MissingPart(_)) => assert!(!all_honest, "honest answers left a gap"),
        Err(other) => panic!("a catalog of checked parts failed otherwise: {other}"),
    }
});
