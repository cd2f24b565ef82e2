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
//! Exit codes: 0 every report was used or superseded; 1 some were refused (the counts of the
//! others are still printed); 2 a usage or I/O error.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use licet_proto::{
    Timestamp,
    catalog::VerifiedCatalog,
    delivery::{
        DayCount, DeliveryLedger, LedgerOutcome, SKETCH_STANDARD_ERROR, VerifiedDeliveryReport,
    },
    signed::SignedKind,
    text::escape_for_terminal,
};

use crate::{CliError, CliResult, files};

/// Most report files one merge reads (a year of daily reports of 100 partners for 27 releases):
/// each costs about a kilobyte of memory.
const MAX_REPORT_FILES: usize = 1_000_000;

/// `licet-manifest deliveries …`.
#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// Verify partners' delivery reports and print the merged distinct-peer counts.
    #[command(
        after_help = "Example:\n  licet-manifest deliveries merge --catalog publisher.catalog \\\n      reports/ extra.report --json\n\n\
                      Reports are the files `licet-node deliveries export` writes; a folder\n\
                      stands for the files in it. Exit 1 if any report was refused."
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
    #[arg(required = true, value_name = "REPORT")]
    reports: Vec<PathBuf>,
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

/// The files `paths` name: each file itself, each folder's files in name order.
fn report_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
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
        if out.len() > MAX_REPORT_FILES {
            return Err(CliError::usage(anyhow::anyhow!(
                "more than {MAX_REPORT_FILES} report files: merge them in parts"
            )));
        }
    }
    Ok(out)
}

/// A report refused, and why.
struct Refused {
    file: PathBuf,
    reason: String,
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
    for file in report_files(&args.reports)? {
        let checked = read_report(&file).and_then(|bytes| {
            VerifiedDeliveryReport::from_bytes(&bytes, &catalog, now).map_err(|e| e.to_string())
        });
        match checked {
            Ok(report) => verified.push((file, report)),
            Err(reason) => refused.push(Refused { file, reason }),
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
                file,
                reason: refusal.to_string(),
            }),
        }
    }
    let counts = ledger.counts();
    let title = |count: &DayCount| {
        let entries = &catalog.catalog().entries;
        entries
            .binary_search_by(|e| e.manifest_id.cmp(&count.release))
            .map(|i| entries[i].title.clone())
            .unwrap_or_default()
    };
    if args.json {
        print_json(&counts, &superseded, &refused, &title, &used_files);
    } else {
        print_text(&counts, &superseded, &refused, &title);
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(CliError::invalid(anyhow::anyhow!(
            "{} of the reports were refused (listed above); the counts leave them out",
            refused.len()
        )))
    }
}

/// Reads one report file, or says why it is not one.
fn read_report(path: &Path) -> Result<Vec<u8>, String> {
    let limit = SignedKind::DeliveryReport.max_envelope_bytes();
    let (_, bytes) =
        files::read_signed(path, Some(SignedKind::DeliveryReport)).map_err(|e| match e {
            CliError::Invalid(e) | CliError::Usage(e) => format!("{e:#}"),
        })?;
    debug_assert!(bytes.len() <= limit);
    Ok(bytes)
}

fn percent(fraction: f64) -> String {
    format!("{:.2} %", fraction * 100.0)
}

fn print_text(
    counts: &[DayCount],
    superseded: &[Superseded],
    refused: &[Refused],
    title: &dyn Fn(&DayCount) -> String,
) {
    if counts.is_empty() {
        println!("no reports counted");
    }
    // A column for the exact count of licences issued goes after PEERS once releases can be
    // sold with licences.
    if !counts.is_empty() {
        println!("{:<10}  {:<16}  {:>8}  TITLE", "DAY", "RELEASE", "PEERS");
    }
    for count in counts {
        println!(
            "{:<10}  {:<16}  {:>8}  {}",
            count.day.to_string(),
            &count.release.to_hex()[..16],
            count.distinct_peers,
            escape_for_terminal(&title(count)),
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
            "refused: {}: {}",
            files::shown(&r.file),
            escape_for_terminal(&r.reason)
        );
    }
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
    superseded: &[Superseded],
    refused: &[Refused],
    title: &dyn Fn(&DayCount) -> String,
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
                "title": title(count),
                "day": count.day.to_string(),
                "distinct_peers": count.distinct_peers,
                "estimate": count.sketch.estimate(),
                "standard_error": SKETCH_STANDARD_ERROR,
                // The exact count of licences issued, once releases can be sold with licences.
                "licences_issued": serde_json::Value::Null,
                "partners": partners,
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
        .map(|r| serde_json::json!({ "file": r.file.to_string_lossy(), "reason": r.reason }))
        .collect();
    println!(
        "{:#}",
        serde_json::json!({ "counts": counts, "superseded": superseded, "refused": refused })
    );
}
