//! `inspect`: show any signed object, and whether it verifies.

use std::path::PathBuf;

use clap::Args;
use licet_proto::{
    catalog::{
        Catalog, CatalogHead, VerifiedCatalog, VerifiedCatalogHead, VerifiedCatalogRoot,
        catalog_hash,
    },
    catalog_parts::{
        CatalogFile, CatalogRoot, MAX_CATALOG_FILE_BYTES, MAX_CATALOG_ROOT_BODY_BYTES,
    },
    delegation::{Delegation, MAX_DELEGATION_BODY_BYTES},
    delivery::{DeliveryReport, MAX_DELIVERY_REPORT_BODY_BYTES},
    encoding,
    licence::{ContentLicence, MAX_LICENCE_BODY_BYTES, VerifiedLicence, licence_id},
    manifest::{MAX_MANIFEST_BODY_BYTES, Manifest, VerifiedManifest, manifest_id},
    signed::{Signed, SignedKind},
    text::escape_for_terminal as shown,
};
use serde_json::{Value, json};

use crate::{CliError, CliResult, files};

/// Show a signed manifest, delegation, catalog, catalog head, licence or delivery report.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  licet-manifest inspect ep1.manifest\n  licet-manifest inspect publisher.catalog --json | jq '.body.entries | length'\n\n\
    Exits 1 if the object does not verify (it is still shown, marked invalid)."
)]
pub struct InspectArgs {
    /// The file to show.
    file: PathBuf,
    /// Print JSON (every field, every catalog entry).
    #[arg(long)]
    json: bool,
    /// In human output, list every catalog entry instead of the first 20.
    #[arg(long)]
    all: bool,
}

impl InspectArgs {
    /// The arguments for inspecting `file`.
    pub fn new(file: PathBuf, json: bool, all: bool) -> InspectArgs {
        InspectArgs { file, json, all }
    }
}

/// The result of verifying an envelope as its kind, and its body as JSON if it decodes.
pub struct Inspection {
    /// `Ok` or the reason it does not verify.
    pub verdict: Result<(), String>,
    /// The body, when it decodes.
    pub body: Option<Value>,
    /// Derived facts (manifest id, catalog hash).
    pub derived: Value,
}

/// Verifies `signed` (from `bytes`) fully, as the node would, and describes it.
pub fn examine(signed: &Signed, bytes: &[u8]) -> Inspection {
    let err = |e: &dyn std::fmt::Display| Err(e.to_string());
    match signed.kind {
        SignedKind::Manifest => {
            let body = encoding::decode::<Manifest>(
                "manifest body",
                &signed.body,
                MAX_MANIFEST_BODY_BYTES,
            )
            .ok()
            .map(|m| json!(m));
            let verdict = VerifiedManifest::verify(signed.clone())
                .map(drop)
                .or_else(|e| err(&e));
            let derived = json!({
                "manifest_id": manifest_id(&signed.body),
                "link": format!("licet:{}", manifest_id(&signed.body)),
            });
            Inspection {
                verdict,
                body,
                derived,
            }
        }
        SignedKind::Delegation => {
            let body = encoding::decode::<Delegation>(
                "delegation body",
                &signed.body,
                MAX_DELEGATION_BODY_BYTES,
            )
            .ok()
            .map(|d| json!(d));
            let verdict = Delegation::verify_envelope(signed)
                .map(drop)
                .or_else(|e| err(&e));
            Inspection {
                verdict,
                body,
                derived: json!({}),
            }
        }
        SignedKind::Catalog => {
            let verified = VerifiedCatalog::from_bytes(bytes);
            let body = match &verified {
                Ok(v) => Some(json!(v.catalog())),
                Err(_) => encoding::decode::<Catalog>(
                    "catalog body",
                    &signed.body,
                    licet_proto::catalog::MAX_CATALOG_BODY_BYTES,
                )
                .ok()
                .map(|c| json!(c)),
            };
            Inspection {
                verdict: verified.map(drop).or_else(|e| err(&e)),
                body,
                derived: json!({ "catalog_hash": catalog_hash(bytes) }),
            }
        }
        SignedKind::Licence => {
            let body = encoding::decode::<ContentLicence>(
                "licence body",
                &signed.body,
                MAX_LICENCE_BODY_BYTES,
            )
            .ok()
            .map(|l| json!(l));
            let verdict = VerifiedLicence::verify(signed.clone())
                .map(drop)
                .or_else(|e| err(&e));
            Inspection {
                verdict,
                body,
                derived: json!({ "licence_id": licence_id(&signed.body) }),
            }
        }
        SignedKind::CatalogRoot => {
            let verified = VerifiedCatalogRoot::from_bytes(bytes);
            let body = encoding::decode::<CatalogRoot>(
                "catalog root body",
                &signed.body,
                MAX_CATALOG_ROOT_BODY_BYTES,
            )
            .ok()
            .map(|root| json!(root));
            Inspection {
                verdict: verified.map(drop).or_else(|e| err(&e)),
                body,
                derived: json!({ "catalog_hash": catalog_hash(bytes) }),
            }
        }
        SignedKind::CatalogHead => {
            let body = encoding::decode::<CatalogHead>(
                "catalog head body",
                &signed.body,
                licet_proto::catalog::MAX_CATALOG_HEAD_BODY_BYTES,
            )
            .ok()
            .map(|h| json!(h));
            let verdict = VerifiedCatalogHead::from_bytes(bytes)
                .map(drop)
                .or_else(|e| err(&e));
            Inspection {
                verdict,
                body,
                derived: json!({}),
            }
        }
        SignedKind::DeliveryReport => examine_delivery_report(signed),
    }
}

/// A delivery report: its signature, body and carried delegation, which is all that can be
/// checked without the publisher's catalog (`deliveries merge` checks the rest).
fn examine_delivery_report(signed: &Signed) -> Inspection {
    let body = encoding::decode::<DeliveryReport>(
        "delivery report body",
        &signed.body,
        MAX_DELIVERY_REPORT_BODY_BYTES,
    );
    let verdict = signed
        .verify_signature()
        .map_err(|e| e.to_string())
        .and(body.as_ref().map(drop).map_err(|e| e.to_string()))
        .and(match &signed.delegation {
            Some(carried) => Delegation::verify_carried(carried)
                .map(drop)
                .map_err(|e| e.to_string()),
            None => Ok(()),
        });
    let body = body.ok().map(|r| {
        json!({
            "publisher": r.publisher,
            "release": r.release,
            "day": r.day.to_string(),
            "sequence": r.sequence,
            "issued_at": r.issued_at,
            "min_share_percent": r.min_share_percent,
            "peers_served": r.peers_served,
            "sketch_estimate": r.sketch.count(),
        })
    });
    Inspection {
        verdict,
        body,
        derived: json!({}),
    }
}

/// A format-2 catalog as JSON: every field of [`Catalog`], revoked licences too (its serde
/// encoding is the format-1 body, which has none).
fn catalog_json(catalog: &Catalog) -> Value {
    let mut body = json!(catalog);
    body["revoked_licences"] = json!(catalog.revoked_licences);
    body
}

/// A catalog file (format 2): its root's envelope, and the catalog verified whole.
fn examine_catalog_file(file: &CatalogFile, bytes: &[u8]) -> Option<(Signed, Inspection)> {
    let signed = Signed::decode(&file.root).ok()?;
    let verified = VerifiedCatalog::from_bytes(bytes);
    let body = verified.as_ref().ok().map(|v| catalog_json(v.catalog()));
    let derived = json!({
        "catalog_hash": catalog_hash(&file.root),
        "format": file.format.to_string(),
        "parts": file.parts.len().to_string(),
    });
    Some((
        signed,
        Inspection {
            verdict: verified.map(drop).map_err(|e| e.to_string()),
            body,
            derived,
        },
    ))
}

pub fn inspect(args: InspectArgs) -> CliResult {
    let limit = SignedKind::Catalog
        .max_envelope_bytes()
        .max(MAX_CATALOG_FILE_BYTES);
    let bytes = files::read_limited(&args.file, limit, "signed object")?;
    let (kind, signed, inspection) = match CatalogFile::decode(&bytes)
        .ok()
        .and_then(|file| examine_catalog_file(&file, &bytes))
    {
        Some((signed, inspection)) => ("catalog", signed, inspection),
        None => {
            let (signed, bytes) = files::read_signed(&args.file, None)?;
            let inspection = examine(&signed, &bytes);
            (signed.kind.name(), signed, inspection)
        }
    };
    if args.json {
        let value = json!({
            "kind": kind,
            "signer": signed.signer,
            "valid": inspection.verdict.is_ok(),
            "problem": inspection.verdict.as_ref().err(),
            "derived": inspection.derived,
            "body": inspection.body,
            "delegation": signed.delegation.as_ref().and_then(|d| {
                encoding::decode::<Delegation>("delegation body", &d.body, MAX_DELEGATION_BODY_BYTES).ok()
            }),
        });
        println!("{value:#}");
    } else {
        print_human(kind, &signed, &inspection, args.all);
    }
    match inspection.verdict {
        Ok(()) => Ok(()),
        Err(reason) => Err(CliError::invalid(anyhow::anyhow!(
            "{} does not verify: {}",
            args.file.display(),
            shown(&reason)
        ))),
    }
}

/// Human output. Every text from the object (titles, terms, paths, reasons) goes through
/// [`shown`]: the object may not verify, and its texts may hold escape sequences.
fn print_human(kind: &str, signed: &Signed, inspection: &Inspection, all: bool) {
    println!("kind         {kind}");
    println!("signer       {}", signed.signer);
    match &inspection.verdict {
        Ok(()) => println!("valid        yes"),
        Err(reason) => println!("valid        NO: {}", shown(reason)),
    }
    if let Some(carried) = &signed.delegation {
        match encoding::decode::<Delegation>(
            "delegation body",
            &carried.body,
            MAX_DELEGATION_BODY_BYTES,
        ) {
            Ok(d) => println!(
                "delegated    by publisher {} to {} for {}, valid {} to {}",
                d.publisher,
                d.delegate,
                shown(&d.scope.to_string()),
                d.not_before,
                d.not_after
            ),
            Err(e) => println!(
                "delegated    (delegation does not decode: {})",
                shown(&e.to_string())
            ),
        }
    }
    if let Value::Object(derived) = &inspection.derived {
        for (key, value) in derived {
            println!(
                "{:<12} {}",
                key.replace('_', " "),
                value.as_str().unwrap_or_default()
            );
        }
    }
    let Some(body) = &inspection.body else {
        println!("body         (does not decode)");
        return;
    };
    let Value::Object(fields) = body else {
        return;
    };
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("files", Value::Array(files)) => {
                println!("files        {}", files.len());
                for f in files {
                    println!(
                        "  {:>14}  {}  {}",
                        f["size"].as_u64().unwrap_or_default(),
                        f["root"].as_str().unwrap_or_default(),
                        shown(f["path"].as_str().unwrap_or_default())
                    );
                }
            }
            (
                "entries" | "revoked_manifests" | "revoked_delegates" | "revoked_licences",
                Value::Array(items),
            ) => {
                println!("{:<12} {}", key.replace('_', " "), items.len());
                let listed = if all {
                    items.len()
                } else {
                    items.len().min(20)
                };
                for item in &items[..listed] {
                    match item {
                        Value::Object(e) => println!(
                            "  {}  {}",
                            e["manifest_id"].as_str().unwrap_or_default(),
                            shown(e["title"].as_str().unwrap_or_default())
                        ),
                        other => println!("  {}", other.as_str().unwrap_or_default()),
                    }
                }
                if listed < items.len() {
                    println!("  … {} more (--all to list them)", items.len() - listed);
                }
            }
            (_, Value::Object(inner)) => {
                println!("{key}");
                for (k, v) in inner {
                    println!("  {:<10} {}", k.replace('_', " "), show_scalar(k, v));
                }
            }
            _ => println!("{:<12} {}", key.replace('_', " "), show_scalar(key, value)),
        }
    }
}

/// Shows timestamps as RFC 3339 and strings without quotes, escaped.
fn show_scalar(key: &str, value: &Value) -> String {
    let is_time = matches!(
        key,
        "created_at" | "not_before" | "not_after" | "issued_at" | "expires_at"
    );
    match value {
        Value::Number(n) if is_time => n
            .as_i64()
            .map(|s| licet_proto::Timestamp(s).to_string())
            .unwrap_or_else(|| n.to_string()),
        Value::String(s) => shown(s).into_owned(),
        Value::Null => "none".to_owned(),
        Value::Array(items) if items.is_empty() => "(none)".to_owned(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}
