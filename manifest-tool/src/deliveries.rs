//! `licet-manifest deliveries merge`: the publisher's merge of its partners' delivery reports.
//!
//! Every report is verified against the publisher's own catalog (see
//! `licet_proto::delivery`): a forged, malformed, other publisher's, unlisted-release or
//! out-of-scope report is refused with its reason and counts for nothing. Of the reports left,
//! the newest per partner, release and day is used (reports are cumulative); older ones are
//! listed as superseded, so handing the same collection in twice, or in any order, gives the
//! same counts. Two reports of one partner with the same sequence and other contents are both
//! suspect: the second met is refused.
//!
//! With `--licences`, licence files are counted too (see [`crate::licences_issued`]): for each
//! release, the exact number of distinct licences issued and how many the catalog revokes,
//! beside the sum of its daily delivery estimates. A release with licences and no reports is
//! shown all the same. Refused licences are listed like refused reports.
//!
//! Exit codes: 0 every report was used or superseded and every licence counted; 1 some were
//! refused (the counts of the others are still printed); 2 a usage or I/O error.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use licet_proto::{
    ManifestId, Timestamp,
    catalog::VerifiedCatalog,
    delivery::{
        DayCount, DeliveryLedger, LedgerOutcome, SKETCH_STANDARD_ERROR, VerifiedDeliveryReport,
    },
    licence::VerifiedLicence,
    signed::SignedKind,
    text::escape_for_terminal,
};

use crate::{
    CliError, CliResult, files,
    licences_issued::{self, LicenceTally},
};

/// Most report files one merge reads (a year of daily reports of 100 partners for 27 releases):
/// each costs about a kilobyte of memory.
const MAX_REPORT_FILES: usize = 1_000_000;
/// Most licence files one merge reads: each counted one costs its 32-byte id.
const MAX_LICENCE_FILES: usize = 10_000_000;

/// `licet-manifest deliveries …`.
#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// Verify partners' delivery reports and print the merged distinct-peer counts.
    #[command(
        after_help = "Example:\n  licet-manifest deliveries merge --catalog publisher.catalog \\\n      reports/ extra.report --licences sold/ --json\n\n\
                      Reports are the files `licet-node deliveries export` writes; licences\n\
                      the files `licence issue` writes; a folder stands for the files in it.\n\
                      Exit 1 if any report or licence was refused."
    )]
    Merge(MergeArgs),
}

/// `deliveries merge` arguments.
#[derive(Args)]
pub struct MergeArgs {
    /// The publisher's newest signed catalog: says whose releases count and which delegates
    /// are revoked.
    #[arg(long, value_name = "CATALOG")]
    catalog: PathBuf,
    /// Report files, or folders of them.
    #[arg(required_unless_present = "licences", value_name = "REPORT")]
    reports: Vec<PathBuf>,
    /// Licence files, or folders of them: count the licences issued per release, exactly
    /// (repeatable).
    #[arg(long = "licences", value_name = "PATH")]
    licences: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a `deliveries` subcommand.
pub fn run(command: DeliveriesCommand) -> CliResult {
    match command {
        DeliveriesCommand::Merge(args) => merge(args),
    }
}

/// The files `paths` name: each file itself, each folder's files in name order; at most `max`
/// of them (`what` they are says the error).
fn listed_files(paths: &[PathBuf], max: usize, what: &str) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))
                .map_err(CliError::io)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            inside.sort();
            out.extend(inside);
        } else {
            out.push(path.clone());
        }
        if out.len() > max {
            return Err(CliError::usage(anyhow::anyhow!(
                "more than {max} {what} files: merge them in parts"
            )));
        }
    }
    Ok(out)
}

/// A report or licence refused, and why.
struct Refused {
    /// `"report"` or `"licence"`.
    kind: &'static str,
    file: PathBuf,
    reason: String,
}

/// One release's line in the per-release summary.
struct ReleaseSummary {
    release: ManifestId,
    /// Distinct licences issued and how many the catalog revokes; `None` without `--licences`.
    licences: Option<(u64, u64)>,
    /// The sum of the release's daily distinct-peer estimates.
    estimated_deliveries: u64,
    days: usize,
}

/// A report not used because a newer one of the same partner, release and day was.
struct Superseded {
    file: PathBuf,
    signer: String,
    sequence: u64,
}

fn merge(args: MergeArgs) -> CliResult {
    let catalog_bytes = files::read_catalog(&args.catalog)?;
    let catalog = VerifiedCatalog::from_bytes(&catalog_bytes)
        .map_err(|e| CliError::invalid(anyhow::anyhow!("{}: {e}", files::shown(&args.catalog))))?;
    let now = Timestamp::now();
    let mut refused = Vec::new();
    let mut verified = Vec::new();
    for file in listed_files(&args.reports, MAX_REPORT_FILES, "report")? {
        let checked = read_signed(&file, SignedKind::DeliveryReport).and_then(|bytes| {
            VerifiedDeliveryReport::from_bytes(&bytes, &catalog, now).map_err(|e| e.to_string())
        });
        match checked {
            Ok(report) => verified.push((file, report)),
            Err(reason) => refused.push(Refused {
                kind: "report",
                file,
                reason,
            }),
        }
    }
    let mut tally = LicenceTally::default();
    for file in listed_files(&args.licences, MAX_LICENCE_FILES, "licence")? {
        let checked = read_signed(&file, SignedKind::Licence).and_then(|bytes| {
            let licence = VerifiedLicence::from_bytes(&bytes)
                .map_err(|e| format!("it is not a valid licence: {e}"))?;
            licences_issued::check(&licence, catalog.catalog(), now)?;
            Ok(licence)
        });
        match checked {
            Ok(licence) => tally.add(&licence),
            Err(reason) => refused.push(Refused {
                kind: "licence",
                file,
                reason,
            }),
        }
    }
    // Oldest first, so each newer report replaces the one before and the input order does not
    // matter.
    verified.sort_by_key(|(_, r)| r.report().sequence);
    let mut ledger = DeliveryLedger::new();
    let mut used_files = std::collections::BTreeMap::new();
    let mut superseded = Vec::new();
    for (file, report) in verified {
        let key = (
            report.report().release,
            report.report().day,
            report.signer(),
        );
        let sequence = report.report().sequence;
        match ledger.accept(report) {
            Ok(LedgerOutcome::Added) => {
                used_files.insert(key, file);
            }
            Ok(LedgerOutcome::Replaced { previous }) => {
                if let Some(old) = used_files.insert(key, file) {
                    superseded.push(Superseded {
                        file: old,
                        signer: key.2.to_hex(),
                        sequence: previous,
                    });
                }
            }
            Ok(LedgerOutcome::AlreadyKept) => superseded.push(Superseded {
                file,
                signer: key.2.to_hex(),
                sequence,
            }),
            Err(refusal) => refused.push(Refused {
                kind: "report",
                file,
                reason: refusal.to_string(),
            }),
        }
    }
    let counts = ledger.counts();
    let title = |release: &ManifestId| {
        let entries = &catalog.catalog().entries;
        entries
            .binary_search_by(|e| e.manifest_id.cmp(release))
            .map(|i| entries[i].title.clone())
            .unwrap_or_default()
    };
    let releases = summarize(
        &counts,
        (!args.licences.is_empty()).then(|| tally.releases(catalog.catalog())),
    );
    if args.json {
        print_json(
            &counts,
            &releases,
            &superseded,
            &refused,
            &title,
            &used_files,
        );
    } else {
        print_text(
            &counts,
            (!args.licences.is_empty()).then_some(releases.as_slice()),
            &superseded,
            &refused,
            &title,
        );
    }
    let refused_of = |kind| refused.iter().filter(|r| r.kind == kind).count();
    match (refused_of("report"), refused_of("licence")) {
        (0, 0) => Ok(()),
        (reports, licences) => Err(CliError::invalid(anyhow::anyhow!(
            "{reports} report(s) and {licences} licence(s) were refused (listed above); the \
             counts leave them out"
        ))),
    }
}

/// Each release with reports or licences: the sum of its daily estimates, and its licences
/// (`None` when no licences were given).
fn summarize(
    counts: &[DayCount],
    licences: Option<Vec<licences_issued::ReleaseLicences>>,
) -> Vec<ReleaseSummary> {
    let mut releases: BTreeMap<ManifestId, ReleaseSummary> = BTreeMap::new();
    let given = licences.is_some();
    let line = |release: ManifestId| ReleaseSummary {
        release,
        licences: given.then_some((0, 0)),
        estimated_deliveries: 0,
        days: 0,
    };
    for count in counts {
        let summary = releases
            .entry(count.release)
            .or_insert_with(|| line(count.release));
        summary.estimated_deliveries += count.distinct_peers;
        summary.days += 1;
    }
    for licensed in licences.unwrap_or_default() {
        releases
            .entry(licensed.release)
            .or_insert_with(|| line(licensed.release))
            .licences = Some((licensed.issued, licensed.revoked));
    }
    releases.into_values().collect()
}

/// Reads one signed file of `kind`, or says why it is not one.
fn read_signed(path: &Path, kind: SignedKind) -> Result<Vec<u8>, String> {
    let (_, bytes) = files::read_signed(path, Some(kind)).map_err(|e| match e {
        CliError::Invalid(e) | CliError::Usage(e) => format!("{e:#}"),
    })?;
    Ok(bytes)
}

fn percent(fraction: f64) -> String {
    format!("{:.2} %", fraction * 100.0)
}

fn print_text(
    counts: &[DayCount],
    releases: Option<&[ReleaseSummary]>,
    superseded: &[Superseded],
    refused: &[Refused],
    title: &dyn Fn(&ManifestId) -> String,
) {
    if counts.is_empty() {
        println!("no reports counted");
    }
    if !counts.is_empty() {
        println!("{:<10}  {:<16}  {:>8}  TITLE", "DAY", "RELEASE", "PEERS");
    }
    for count in counts {
        println!(
            "{:<10}  {:<16}  {:>8}  {}",
            count.day.to_string(),
            &count.release.to_hex()[..16],
            count.distinct_peers,
            escape_for_terminal(&title(&count.release)),
        );
        for partner in &count.partners {
            println!(
                "  partner {}…  sequence {}  served {} (sketch {})  share ≥ {} %",
                &partner.signer.to_hex()[..16],
                partner.sequence,
                partner.peers_served,
                partner.sketch_estimate,
                partner.min_share_percent,
            );
        }
    }
    if !counts.is_empty() {
        println!(
            "PEERS: distinct peers any partner served, each counted once; standard error\n\
             {} (below about 2,500 peers: exact, or a peer or two under)",
            percent(SKETCH_STANDARD_ERROR)
        );
    }
    if let Some(releases) = releases {
        print_releases(releases, title);
    }
    for s in superseded {
        println!(
            "superseded: {} (sequence {} of partner {}…, a newer one is used)",
            files::shown(&s.file),
            s.sequence,
            &s.signer[..16]
        );
    }
    for r in refused {
        println!(
            "refused {}: {}: {}",
            r.kind,
            files::shown(&r.file),
            escape_for_terminal(&r.reason)
        );
    }
}

/// The per-release table: licences issued (exact) beside the delivery estimate.
fn print_releases(releases: &[ReleaseSummary], title: &dyn Fn(&ManifestId) -> String) {
    if releases.is_empty() {
        println!("no licences counted");
        return;
    }
    println!(
        "{:<16}  {:>8}  {:>7}  {:>10}  TITLE",
        "RELEASE", "LICENCES", "REVOKED", "DELIVERIES"
    );
    for r in releases {
        let (issued, revoked) = r.licences.unwrap_or_default();
        println!(
            "{:<16}  {:>8}  {:>7}  {:>10}  {}",
            &r.release.to_hex()[..16],
            issued,
            revoked,
            r.estimated_deliveries,
            escape_for_terminal(&title(&r.release)),
        );
    }
    println!(
        "LICENCES: distinct licences issued (exact); REVOKED: how many of them the catalog\n\
         revokes; DELIVERIES: PEERS summed over the release's days (an estimate)"
    );
}

type UsedFiles = std::collections::BTreeMap<
    (
        licet_proto::ManifestId,
        licet_proto::delivery::UtcDay,
        licet_proto::PublicKey,
    ),
    PathBuf,
>;

fn print_json(
    counts: &[DayCount],
    releases: &[ReleaseSummary],
    superseded: &[Superseded],
    refused: &[Refused],
    title: &dyn Fn(&ManifestId) -> String,
    used_files: &UsedFiles,
) {
    let counts: Vec<serde_json::Value> = counts
        .iter()
        .map(|count| {
            let partners: Vec<serde_json::Value> = count
                .partners
                .iter()
                .map(|p| {
                    let file = used_files
                        .get(&(count.release, count.day, p.signer))
                        .map(|f| f.to_string_lossy().into_owned());
                    serde_json::json!({
                        "signer": p.signer.to_hex(),
                        "sequence": p.sequence,
                        "peers_served": p.peers_served,
                        "sketch_estimate": p.sketch_estimate,
                        "min_share_percent": p.min_share_percent,
                        "file": file,
                    })
                })
                .collect();
            serde_json::json!({
                "release": count.release.to_hex(),
                "title": title(&count.release),
                "day": count.day.to_string(),
                "distinct_peers": count.distinct_peers,
                "estimate": count.sketch.estimate(),
                "standard_error": SKETCH_STANDARD_ERROR,
                "partners": partners,
            })
        })
        .collect();
    let releases: Vec<serde_json::Value> = releases
        .iter()
        .map(|r| {
            serde_json::json!({
                "release": r.release.to_hex(),
                "title": title(&r.release),
                "licences_issued": r.licences.map(|(issued, _)| issued),
                "licences_revoked": r.licences.map(|(_, revoked)| revoked),
                "estimated_deliveries": r.estimated_deliveries,
                "days": r.days,
            })
        })
        .collect();
    let superseded: Vec<serde_json::Value> = superseded
        .iter()
        .map(|s| {
            serde_json::json!({
                "file": s.file.to_string_lossy(),
                "signer": s.signer,
                "sequence": s.sequence,
            })
        })
        .collect();
    let refused: Vec<serde_json::Value> = refused
        .iter()
        .map(|r| {
            serde_json::json!({
                "kind": r.kind,
                "file": r.file.to_string_lossy(),
                "reason": r.reason,
            })
        })
        .collect();
    println!(
        "{:#}",
        serde_json::json!({
            "counts": counts,
            "releases": releases,
            "superseded": superseded,
            "refused": refused,
        })
    );
}
