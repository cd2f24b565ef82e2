//! `licet-node add`, `get`, `ls` and `check`: the content this node seeds and fetches (and how
//! every command names it: [`resolve`]).
//!
//! Paths sent to the daemon are absolute (its working directory is not ours): `--content` is
//! canonicalized, `-o` is made absolute against the current directory and resolved (the daemon
//! creates it once it has accepted the download, so a refused `get` creates nothing). `get`
//! stops watching a download that makes no progress for [`STALL_LIMIT`] (the daemon goes on).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use indicatif::ProgressBar;
use licet_proto::{ManifestId, manifest::ShareLink, signed::SignedKind};

use super::{
    Failure, Verdict, call_failure,
    catalog::format_catalogs,
    connect, live,
    output::{
        chunks_text, clean, download_bar, human_bytes, human_duration, id_prefix, peers_text,
        print_json, table, truncate,
    },
    progress::PlainProgress,
    read_signed_file,
};
use crate::{
    api::client::ApiClient,
    contract::{AddQuery, ContentInfo, ContentListReply, ContentState, GetRequest},
};

/// How often `get` asks how the download is going.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// `get` stops watching a download that makes no progress for this long.
pub const STALL_LIMIT: Duration = Duration::from_secs(10 * 60);
/// Characters of a title shown in tables.
const TABLE_TITLE_CHARS: usize = 60;

/// How `get` watches a download.
pub(super) struct Watch {
    pub(super) poll_interval: Duration,
    pub(super) stall_limit: Duration,
    /// Show progress on stderr: a bar on a terminal, else plain lines.
    pub(super) progress: bool,
}

/// `ls`: the content, then the catalogs; with `watch`, followed live (`live.rs`).
pub(super) async fn list(data_dir: &Path, json: bool, watch: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    if watch {
        let client = &client;
        return live::follow("licet-node ls", move || async move {
            let reply = client
                .content_list()
                .await
                .map_err(|e| call_failure(e, client, Verdict::UsageError))?;
            Ok(content_view(&reply))
        })
        .await;
    }
    let reply: ContentListReply = client
        .content_list()
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        print_json(&reply)
    } else {
        print!("{}", format_content_list(&reply.content));
        if !reply.catalogs.is_empty() {
            println!();
            print!("{}", format_catalogs(&reply.catalogs));
        }
        Ok(())
    }
}

/// The content `named` names: a `licet:` link, a full id, or the start of one id held (as `ls`
/// shows it); the daemon's list is asked only for a start.
pub(super) async fn resolve(client: &ApiClient, named: &str) -> Result<ManifestId, Failure> {
    if let Some(id) = exact_content_id(named).map_err(Failure::Other)? {
        return Ok(id);
    }
    let held: Vec<ManifestId> = client
        .content_list()
        .await
        .map_err(|e| call_failure(e, client, Verdict::UsageError))?
        .content
        .iter()
        .map(|c| c.manifest_id)
        .collect();
    pick_by_start(named, &held).map_err(Failure::Other)
}

/// The id `named` gives whole (a `licet:` link or 64 hex characters), `None` for the start of
/// an id, or why it is neither.
fn exact_content_id(named: &str) -> anyhow::Result<Option<ManifestId>> {
    if named.starts_with("licet:") {
        return named
            .parse::<ShareLink>()
            .map(|link| Some(link.id))
            .map_err(|e| anyhow!("{named:?} is not a valid link: {e}"));
    }
    let hex =
        named.len() <= 64 && !named.is_empty() && named.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return Err(anyhow!(
            "{named:?} is not a content id: give the id as `licet-node ls` shows it (or any \
             start of it), the full id, or the content's licet: link"
        ));
    }
    if named.len() == 64 {
        return named
            .parse::<ManifestId>()
            .map(Some)
            .map_err(|e| anyhow!("{named:?}: {e}"));
    }
    Ok(None)
}

/// The one id of `held` that starts with `start` (any case).
fn pick_by_start(start: &str, held: &[ManifestId]) -> anyhow::Result<ManifestId> {
    let start = start.to_ascii_lowercase();
    let matches: Vec<&ManifestId> = held
        .iter()
        .filter(|id| id.to_hex().starts_with(&start))
        .collect();
    match matches.as_slice() {
        [one] => Ok(**one),
        [] => Err(anyhow!(
            "no content held here has an id starting with {start} (see `licet-node ls`)"
        )),
        several => Err(anyhow!(
            "{} items have ids starting with {start}; give more of the id: {}",
            several.len(),
            several
                .iter()
                .map(|id| id.to_hex())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `add`: checks the paths, reads the manifest (size-checked), and asks the daemon to verify and
/// seed the content.
pub(super) async fn add(
    data_dir: &Path,
    manifest: &Path,
    content: &Path,
    json: bool,
) -> Result<(), Failure> {
    let content_dir = std::fs::canonicalize(content)
        .with_context(|| format!("cannot find the content directory {}", content.display()))
        .map_err(Failure::other)?;
    let content_text = utf8_path("the content directory", &content_dir)?;
    let bytes = read_signed_file(manifest, SignedKind::Manifest)?;
    let client = connect(data_dir)?;

    let spinner = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(format!(
            "verifying {} against {}…",
            content_dir.display(),
            manifest.display()
        ));
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    } else {
        ProgressBar::hidden()
    };
    let reply = client
        .content_add(
            bytes,
            &AddQuery {
                content_dir: PathBuf::from(content_text),
            },
        )
        .await;
    spinner.finish_and_clear();
    // The manifest or the content is what the daemon found wrong: a verification failure.
    let info = reply.map_err(|e| call_failure(e, &client, Verdict::BadRequestIsInvalid))?;
    if json {
        return print_json(&info);
    }
    println!(
        "added \"{}\": {} in {}, verified in {}",
        clean(&info.title),
        human_bytes(info.total_bytes),
        chunks_text(info.total_chunks),
        info.dir.display()
    );
    println!("share link: {}", info.link);
    if let Some(refusal) = &info.refused {
        println!(
            "note: not served now: {}: {}",
            refusal.reason.describe(),
            clean(&refusal.detail)
        );
    }
    Ok(())
}

/// `check`: re-verifies content on disk; exit 1 if some chunks still do not match.
pub(super) async fn check(data_dir: &Path, named: &str, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let id = resolve(&client, named).await?;
    let info: ContentInfo = client
        .content_check(&id)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    let whole = info.state == ContentState::Complete;
    if json {
        print_json(&info)?;
    } else if whole {
        println!(
            "checked \"{}\": every chunk matches; complete and served",
            clean(&info.title)
        );
    } else {
        println!(
            "checked \"{}\": {} of {} match and are served",
            clean(&info.title),
            info.have_chunks,
            chunks_text(info.total_chunks)
        );
    }
    if whole {
        Ok(())
    } else {
        Err(Failure::Invalid(anyhow!(
            "content {id} does not match its manifest: {}",
            info.error
                .as_deref()
                .map_or("some chunks differ".to_owned(), clean)
        )))
    }
}

/// `get`: starts the download, then watches it until it is complete, failed or stalled.
pub(super) async fn get(
    data_dir: &Path,
    link: &str,
    output: &Path,
    replace: bool,
    follow: Follow,
    json: bool,
    watch: &Watch,
) -> Result<(), Failure> {
    // Check the link here, so a typo is an error even without a daemon.
    link.parse::<ShareLink>().map_err(Failure::other)?;
    let client = connect(data_dir)?;
    let output_dir = prepare_output_dir(output)?;
    let output_text = utf8_path("the output directory", &output_dir)?;
    let request = GetRequest {
        link: link.trim().to_owned(),
        output_dir: PathBuf::from(output_text),
        replace,
    };
    let started: ContentInfo = client
        .download_start(&request)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if started.encryption.is_some() {
        super::licence::warn_without_licence(&client, &started).await;
    }
    let continuing = continues_in_the_daemon(&started, &output_dir);
    if follow == Follow::Detach {
        return if json {
            print_json(&started)
        } else {
            print!("{continuing}");
            Ok(())
        };
    }
    let outcome = tokio::select! {
        outcome = watch_download(&client, started, watch) => outcome,
        _ = tokio::signal::ctrl_c() => {
            eprint!("\n{continuing}");
            return Ok(());
        }
    };
    match outcome {
        Ok(info) if info.encryption.is_some() => {
            super::licence::open_paid_release(&client, &info, &output_dir, replace, json).await
        }
        Ok(info) => {
            if json {
                print_json(&info)
            } else {
                print!("{}", format_download_summary(&info));
                Ok(())
            }
        }
        Err(WatchEnd::Failed(info, failure)) => {
            if json {
                print_json(&info)?;
            }
            Err(failure)
        }
        Err(WatchEnd::Stopped(failure)) => Err(failure),
    }
}

/// Whether `get` follows the download it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Follow {
    /// Until it is complete, failed or stalled (Ctrl-C stops following, not the download).
    UntilDone,
    /// Not at all: `get --detach`.
    Detach,
}

/// What `get` says when it leaves a download to the daemon: where it is and the commands to
/// follow, pause or cancel it.
fn continues_in_the_daemon(info: &ContentInfo, output_dir: &Path) -> String {
    let id = id_prefix(&info.manifest_id);
    // A paid release's plaintext is written by a `get` that sees it complete, not by the daemon.
    let follow = if info.encryption.is_some() {
        "follow it and write its plaintext once complete"
    } else {
        "follow it"
    };
    format!(
        "the download of \"{}\" continues in the daemon (id {id}, into {})\n  \
         {follow}:  licet-node get {} -o {}\n  \
         see it:     licet-node ls\n  \
         pause it:   licet-node pause {id}   (then: licet-node resume {id})\n  \
         cancel it:  licet-node cancel {id}   (add --delete to delete its files too)\n",
        clean(&info.title),
        output_dir.display(),
        info.link,
        output_dir.display(),
    )
}

/// How watching a download ended, when not with the content complete.
enum WatchEnd {
    /// The content's state says it failed (or it is refused).
    Failed(Box<ContentInfo>, Failure),
    /// Watching itself failed or gave up.
    Stopped(Failure),
}

/// Polls `GET /v1/content/{id}` until the content is complete, failed, refused, or makes no
/// progress for `watch.stall_limit`; shows a progress bar meanwhile.
async fn watch_download(
    client: &ApiClient,
    first: ContentInfo,
    watch: &Watch,
) -> Result<ContentInfo, WatchEnd> {
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = download_bar(&first, watch.progress && on_terminal);
    let mut plain = (watch.progress && !on_terminal).then(|| PlainProgress::new(&first));
    let id = first.manifest_id;
    let mut info = first;
    let mut last_seen = progress_mark(&info);
    let mut last_change = Instant::now();
    loop {
        bar.set_length(info.total_bytes);
        bar.set_position(info.have_bytes);
        bar.set_message(format!(
            "{} · {} sending",
            truncate(&clean(&info.title), 40),
            peers_text(info.sending_peers)
        ));
        if let Some(line) = plain.as_mut().and_then(|p| p.line(&info, Instant::now()))
            && info.state == ContentState::Downloading
        {
            eprintln!("{line}");
        }
        match info.state {
            ContentState::Complete => {
                bar.finish_and_clear();
                return Ok(info);
            }
            ContentState::Failed => {
                bar.abandon();
                let failure = failed_download(&info);
                return Err(WatchEnd::Failed(Box::new(info), failure));
            }
            ContentState::Downloading if info.refused.is_some() => {
                // A refused item is neither served nor fetched: waiting would only stall.
                bar.abandon();
                let failure = failed_download(&info);
                return Err(WatchEnd::Failed(Box::new(info), failure));
            }
            ContentState::Downloading => {}
            ContentState::Paused => {
                // Paused from elsewhere: nothing comes until it is resumed.
                bar.abandon();
                let failure = Failure::Other(anyhow!(
                    "the download of \"{}\" ({id}) was paused; `licet-node resume {}` continues it",
                    clean(&info.title),
                    id_prefix(&id)
                ));
                return Err(WatchEnd::Failed(Box::new(info), failure));
            }
        }
        let mark = progress_mark(&info);
        if mark != last_seen {
            last_seen = mark;
            last_change = Instant::now();
        } else if last_change.elapsed() >= watch.stall_limit {
            bar.abandon();
            return Err(WatchEnd::Stopped(Failure::Other(anyhow!(
                "no progress on \"{}\" ({id}) for {}: {} of {} held, {} sending; the daemon \
                 keeps trying (run the same `licet-node get` to watch it again, or `licet-node ls`)",
                clean(&info.title),
                human_duration(watch.stall_limit),
                human_bytes(info.have_bytes),
                human_bytes(info.total_bytes),
                peers_text(info.sending_peers),
            ))));
        }
        tokio::time::sleep(watch.poll_interval).await;
        info = match client.content_get(&id).await {
            Ok(info) => info,
            Err(e) => {
                bar.abandon();
                let cause = match call_failure(e, client, Verdict::UsageError) {
                    Failure::Invalid(e) | Failure::Other(e) => e,
                };
                return Err(WatchEnd::Stopped(Failure::Other(
                    cause.context(format!("lost track of the download of {id}")),
                )));
            }
        };
    }
}

/// What counts as progress: any change in what is held or fetched.
fn progress_mark(info: &ContentInfo) -> (u64, u64, u64) {
    (info.have_bytes, info.have_chunks, info.fetched_chunks)
}

/// The failure for content that is `failed`, or refused: exit 1 if refused, else 2.
fn failed_download(info: &ContentInfo) -> Failure {
    let mut message = format!(
        "download of \"{}\" ({}) stopped",
        clean(&info.title),
        info.manifest_id
    );
    if let Some(error) = &info.error {
        let _ = write!(message, ": {}", clean(error));
    }
    match &info.refused {
        Some(refusal) => {
            let _ = write!(
                message,
                ": refused: {}: {}",
                refusal.reason.describe(),
                clean(&refusal.detail)
            );
            Failure::Invalid(anyhow!(message))
        }
        None => Failure::Other(anyhow!(message)),
    }
}

/// Makes `output` absolute against the current directory and resolves its links, `.` and `..`
/// (it need not exist: the daemon creates it; if it exists it must be a directory).
fn prepare_output_dir(output: &Path) -> Result<PathBuf, Failure> {
    let resolved = crate::content::output_folder::resolve(output)
        .with_context(|| format!("cannot resolve the output directory {}", output.display()))
        .map_err(Failure::other)?;
    if resolved.exists() && !resolved.is_dir() {
        return Err(Failure::Other(anyhow!(
            "the output {} is not a directory",
            output.display()
        )));
    }
    Ok(resolved)
}

/// The path as UTF-8 text (the control API carries paths as JSON and query strings).
fn utf8_path<'a>(what: &str, path: &'a Path) -> Result<&'a str, Failure> {
    path.to_str().ok_or_else(|| {
        Failure::Other(anyhow!(
            "{what} {} is not valid UTF-8, which the control API cannot carry",
            path.display()
        ))
    })
}

/// `ls --watch`'s view: the table and catalogs as `ls` prints them, and a line per item keyed
/// by its id.
fn content_view(reply: &ContentListReply) -> live::View {
    let mut text = format_content_list(&reply.content);
    if !reply.catalogs.is_empty() {
        text.push('\n');
        text.push_str(&format_catalogs(&reply.catalogs));
    }
    let lines = reply
        .content
        .iter()
        .map(|item| {
            let id = id_prefix(&item.manifest_id);
            let mut line = format!(
                "{id}  {}  {}/{} ({}%)  {} sending  {}",
                state_text(item),
                human_bytes(item.have_bytes),
                human_bytes(item.total_bytes),
                percent_held(item),
                item.sending_peers,
                truncate(&clean(&item.title), TABLE_TITLE_CHARS)
            );
            if let Some(refusal) = &item.refused {
                let _ = write!(line, "  (refused: {})", refusal.reason.describe());
            }
            if let (ContentState::Failed, Some(error)) = (item.state, &item.error) {
                let _ = write!(line, "  ({})", clean(error));
            }
            (Some(id), line)
        })
        .collect();
    live::View { text, lines }
}

/// The share of an item's bytes held, in whole percent (100 for an empty item).
fn percent_held(item: &ContentInfo) -> u128 {
    if item.total_bytes == 0 {
        100
    } else {
        u128::from(item.have_bytes) * 100 / u128::from(item.total_bytes)
    }
}

/// `ls`: a table of content, then a line for each item that is refused or failed.
fn format_content_list(content: &[ContentInfo]) -> String {
    if content.is_empty() {
        return "no content (seed some with `licet-node add`, or fetch with `licet-node get`)\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = content
        .iter()
        .map(|item| {
            let percent = percent_held(item);
            vec![
                id_prefix(&item.manifest_id),
                state_text(item).to_owned(),
                format!(
                    "{}/{} ({percent}%)",
                    human_bytes(item.have_bytes),
                    human_bytes(item.total_bytes)
                ),
                item.sending_peers.to_string(),
                truncate(&clean(&item.title), TABLE_TITLE_CHARS),
            ]
        })
        .collect();
    let mut out = table(&["ID", "STATE", "HAVE/TOTAL", "SENDING", "TITLE"], &rows);
    for item in content {
        if let Some(refusal) = &item.refused {
            let _ = writeln!(
                out,
                "{}: refused: {}: {}",
                id_prefix(&item.manifest_id),
                refusal.reason.describe(),
                clean(&refusal.detail)
            );
        }
        if let (ContentState::Failed, Some(error)) = (item.state, &item.error) {
            let _ = writeln!(
                out,
                "{}: {}: {}",
                id_prefix(&item.manifest_id),
                state_text(item),
                clean(error)
            );
        }
        if !item.changed_files.is_empty() {
            let files: Vec<String> = item.changed_files.iter().map(|f| clean(f)).collect();
            let _ = writeln!(
                out,
                "{}: changed on disk, not served: {} (re-verify with `licet-node check {}`)",
                id_prefix(&item.manifest_id),
                files.join(", "),
                item.manifest_id
            );
        }
    }
    out
}

fn state_text(item: &ContentInfo) -> &'static str {
    match (item.state, item.refused.is_some()) {
        (_, true) => "refused",
        (ContentState::Failed, false) if !item.changed_files.is_empty() => "changed",
        (ContentState::Downloading, false) => "downloading",
        (ContentState::Complete, false) => "complete",
        (ContentState::Failed, false) => "failed",
        (ContentState::Paused, false) => "paused",
    }
}

/// `get`'s summary of complete content.
pub(super) fn format_download_summary(info: &ContentInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "complete: \"{}\"", clean(&info.title));
    let _ = writeln!(out, "  id       {}", info.manifest_id);
    let _ = writeln!(
        out,
        "  size     {} ({} bytes, {})",
        human_bytes(info.total_bytes),
        info.total_bytes,
        chunks_text(info.total_chunks)
    );
    if info.encryption.is_some() {
        let _ = writeln!(
            out,
            "  sealed   {} (the ciphertext, which this node seeds)",
            info.dir.display()
        );
    } else {
        let _ = writeln!(out, "  files in {}", info.dir.display());
    }
    let fetched = if info.fetched_chunks == 0 {
        "none (all chunks were already here)".to_owned()
    } else if info.fetched_chunks < info.total_chunks {
        format!(
            "{} of {} from {} (the rest were already here)",
            info.fetched_chunks,
            chunks_text(info.total_chunks),
            peers_text(info.source_peers)
        )
    } else {
        format!(
            "{} from {}",
            chunks_text(info.fetched_chunks),
            peers_text(info.source_peers)
        )
    };
    let _ = writeln!(out, "  fetched  {fetched}");
    if let Some(refusal) = &info.refused {
        let _ = writeln!(
            out,
            "  note     not served now: refused: {}: {}",
            refusal.reason.describe(),
            clean(&refusal.detail)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_is_named_by_link_full_id_or_a_unique_start() {
        let a = ManifestId([0xab; 32]);
        let b = ManifestId([0xac; 32]);
        let held = [a, b];
        assert_eq!(exact_content_id(&a.to_hex()).unwrap(), Some(a));
        assert_eq!(exact_content_id(&format!("licet:{a}")).unwrap(), Some(a));
        assert_eq!(exact_content_id("abab").unwrap(), None);
        assert_eq!(pick_by_start("ABAB", &held).unwrap(), a);
        assert_eq!(pick_by_start(&b.to_hex()[..16], &held).unwrap(), b);
        let ambiguous = pick_by_start("a", &held).unwrap_err().to_string();
        assert!(
            ambiguous.contains("2 items")
                && ambiguous.contains(&a.to_hex())
                && ambiguous.contains(&b.to_hex()),
            "{ambiguous}"
        );
        let none = pick_by_start("ff", &held).unwrap_err().to_string();
        assert!(
            none.contains("no content held here has an id starting with ff"),
            "{none}"
        );
        for bad in ["", "xyz", "licet:nothex", &"a".repeat(65)] {
            assert!(exact_content_id(bad).is_err(), "{bad:?} is refused");
        }
    }

    use super::*;
    use crate::cli::test_support::*;

    #[test]
    fn content_list_shows_prefix_state_progress_peers_title_and_reasons() {
        let mut downloading = content(ManifestId([0xab; 32]), ContentState::Downloading, 1024);
        downloading.title = "Evil\u{1b}[31m title".to_owned();
        let mut refused = content(ManifestId([0xcd; 32]), ContentState::Complete, 4096);
        refused.refused = Some(Refusal {
            reason: RefusalReason::Expired,
            detail: "ended at 2026-01-01T00:00:00Z".to_owned(),
        });
        let mut failed = content(ManifestId([0xef; 32]), ContentState::Failed, 0);
        failed.error = Some("disk full".to_owned());
        let text = format_content_list(&[downloading, refused, failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(
            lines[1].starts_with("abababababababab  downloading  1.0 KiB/4.0 KiB (25%)"),
            "{text}"
        );
        assert!(lines[1].ends_with("Evil\\u{1b}[31m title"), "{text}");
        assert!(lines[2].contains("refused"), "{text}");
        assert!(lines[3].contains("failed"), "{text}");
        assert!(
            text.contains("cdcdcdcdcdcdcdcd: refused: licence window has ended: ended at 2026"),
            "{text}"
        );
        assert!(
            text.contains("efefefefefefefef: failed: disk full"),
            "{text}"
        );
        assert!(format_content_list(&[]).contains("no content"));
    }

    #[test]
    fn summaries_say_where_and_from_whom() {
        let mut info = content(ManifestId([1; 32]), ContentState::Complete, 4096);
        info.dir = PathBuf::from("/home/u/out");
        let text = format_download_summary(&info);
        assert!(text.contains("complete: \"Episode 1\""), "{text}");
        assert!(text.contains("files in /home/u/out"), "{text}");
        assert!(text.contains("4 chunks from 2 peers"), "{text}");
        info.fetched_chunks = 1;
        assert!(format_download_summary(&info).contains("1 of 4 chunks"));
        info.fetched_chunks = 0;
        assert!(format_download_summary(&info).contains("already here"));
    }

    #[test]
    fn output_dir_is_made_absolute_and_resolved_but_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/../c");
        let made = prepare_output_dir(&nested).unwrap();
        assert!(made.is_absolute(), "{}", made.display());
        assert_eq!(made, std::fs::canonicalize(dir.path()).unwrap().join("a/c"));
        assert!(
            !dir.path().join("a").exists(),
            "the daemon creates it, not the client"
        );
        // A relative path is taken against the current directory.
        let relative = prepare_output_dir(Path::new(".")).unwrap();
        assert_eq!(relative, std::fs::canonicalize(".").unwrap());
        // A file is not a directory.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let failure = prepare_output_dir(&file).unwrap_err();
        assert_eq!(failure.exit_code(), 2);
        assert!(message(&failure).contains("file"), "{}", message(&failure));
    }

    #[tokio::test]
    async fn check_exits_1_while_content_still_does_not_match() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([7; 32]);
        let mut info = crate::api::server::fake::content(id, ContentState::Failed, 3072);
        info.changed_files = vec!["ep1.mkv".to_owned()];
        info.error = Some(
            "checked: /srv/episode-1/ep1.mkv: 1 of its 4 chunks do not match the manifest"
                .to_owned(),
        );
        *server.node.start_reply.lock().unwrap() = Some(info.clone());
        let (code, text) = fails(&["check", &id.to_hex()], dir.path()).await;
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("1 of its 4 chunks do not match"), "{text}");
        let list = format_content_list(&[info]);
        assert!(list.contains(" changed "), "{list}");
        assert!(
            list.contains(
                "changed on disk, not served: ep1.mkv (re-verify with `licet-node check 0707"
            ),
            "{list}"
        );
    }

    #[tokio::test]
    async fn add_sends_the_manifest_and_an_absolute_content_dir() {
        let (dir, server) = daemon_dir().await;
        let work = tempfile::tempdir().unwrap();
        let manifest = work.path().join("ep1.manifest");
        let manifest_bytes = signed_file_bytes(SignedKind::Manifest, b"manifest");
        std::fs::write(&manifest, &manifest_bytes).unwrap();
        let release = work.path().join("release");
        std::fs::create_dir(&release).unwrap();
        let manifest_arg = manifest.to_str().unwrap();
        let content_arg = format!("{}/../release", release.display());
        exec(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await
        .unwrap();
        match server.node.calls().last() {
            Some(Call::ContentAdd(bytes, content_dir)) => {
                assert_eq!(bytes, &manifest_bytes);
                assert_eq!(content_dir, &std::fs::canonicalize(&release).unwrap());
            }
            other => panic!("{other:?}"),
        }

        // The daemon finds the content does not match: a verification failure.
        server.node.fail(ApiError::new(
            ApiErrorKind::BadRequest,
            "release/a.mkv: chunk 3 does not match the manifest",
        ));
        let (code, text) = fails(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(text.contains("chunk 3"), "{text}");

        server.node.fail(ApiError::refused(
            ApiErrorKind::Refused,
            "cannot seed manifest 0101…",
            refusal(),
        ));
        let (code, text) = fails(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(
            text.contains("publisher is not trusted")
                && text.contains("not in this node's trust store"),
            "{text}"
        );

        server
            .node
            .fail(ApiError::new(ApiErrorKind::Conflict, "already added"));
        let (code, _) = fails(
            &["add", manifest_arg, "--content", &content_arg],
            dir.path(),
        )
        .await;
        assert_eq!(code, 2);
    }

    #[tokio::test]
    async fn add_checks_its_files_before_the_daemon_sees_them() {
        let (dir, server) = daemon_dir().await;
        let work = tempfile::tempdir().unwrap();
        let huge = work.path().join("huge.manifest");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(SignedKind::Manifest.max_envelope_bytes() as u64 + 1)
            .unwrap();
        let content_dir = work.path().to_str().unwrap();
        let (code, text) = fails(
            &["add", huge.to_str().unwrap(), "--content", content_dir],
            dir.path(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(text.contains("larger than any Licet manifest"), "{text}");

        let missing = work.path().join("missing.manifest");
        let (code, text) = fails(
            &["add", missing.to_str().unwrap(), "--content", content_dir],
            dir.path(),
        )
        .await;
        assert_eq!(code, 2);
        assert!(text.contains("missing.manifest"), "{text}");

        let (code, text) = fails(
            &[
                "add",
                huge.to_str().unwrap(),
                "--content",
                "/no/such/dir/anywhere",
            ],
            dir.path(),
        )
        .await;
        assert_eq!(code, 2);
        assert!(text.contains("/no/such/dir/anywhere"), "{text}");
        assert!(server.node.calls().is_empty());
    }

    #[tokio::test]
    async fn get_watches_until_complete() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        {
            let mut replies = server.node.content_replies.lock().unwrap();
            for have in [1024, 2048, 3072] {
                replies.push_back(content(id, ContentState::Downloading, have));
            }
            replies.push_back(content(id, ContentState::Complete, 4096));
        }
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("new/dir");
        exec(
            &[
                "get",
                &format!("licet:{id}"),
                "-o",
                target.to_str().unwrap(),
            ],
            dir.path(),
        )
        .await
        .unwrap();
        assert!(
            !target.exists(),
            "the daemon creates the output directory, not the client"
        );
        let calls = server.node.calls();
        match &calls[0] {
            Call::DownloadStart(request) => {
                assert_eq!(request.link, format!("licet:{id}"));
                assert_eq!(
                    request.output_dir,
                    std::fs::canonicalize(out.path()).unwrap().join("new/dir")
                );
                assert!(!request.replace);
            }
            other => panic!("{other:?}"),
        }
        let polls = calls
            .iter()
            .filter(|c| matches!(c, Call::ContentGet(i) if *i == id))
            .count();
        assert_eq!(polls, 4, "{calls:?}");
    }

    /// A complete paid release, as the daemon shows it.
    fn paid(id: ManifestId) -> ContentInfo {
        let mut info = content(id, ContentState::Complete, 4096);
        info.encryption = Some(crate::contract::EncryptionInfo {
            algorithm: "chacha20-poly1305-stream".to_owned(),
            key_id: "ef".repeat(32),
            plaintext_bytes: 4000,
        });
        info
    }

    /// A fake daemon whose `content_get` answers that `id` is a complete paid release.
    async fn daemon_with_paid_release(id: ManifestId) -> (tempfile::TempDir, TestServer) {
        let (dir, server) = daemon_dir().await;
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(paid(id));
        (dir, server)
    }

    #[tokio::test]
    async fn get_of_a_paid_release_asks_for_its_plaintext_in_the_output_folder() {
        let id = ManifestId([2; 32]);
        let (dir, server) = daemon_with_paid_release(id).await;
        let out = tempfile::tempdir().unwrap();
        let link = format!("licet:{id}");
        exec(
            &[
                "get",
                &link,
                "-o",
                out.path().to_str().unwrap(),
                "--replace",
            ],
            dir.path(),
        )
        .await
        .unwrap();
        let opened: Vec<_> = server
            .node
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::ContentOpen(i, request) => Some((i, request)),
                _ => None,
            })
            .collect();
        assert_eq!(opened.len(), 1, "{opened:?}");
        assert_eq!(opened[0].0, id);
        assert_eq!(
            opened[0].1.output_dir,
            std::fs::canonicalize(out.path()).unwrap()
        );
        assert!(opened[0].1.replace);
    }

    #[tokio::test]
    async fn get_of_a_paid_release_without_a_licence_exits_1_saying_why() {
        let id = ManifestId([2; 32]);
        let (dir, server) = daemon_with_paid_release(id).await;
        server
            .node
            .open_errors
            .lock()
            .unwrap()
            .push_back(ApiError::new(
                ApiErrorKind::Refused,
                "this node holds no licence for release 0202…",
            ));
        let out = tempfile::tempdir().unwrap();
        let (code, text) = fails(
            &[
                "get",
                &format!("licet:{id}"),
                "-o",
                out.path().to_str().unwrap(),
            ],
            dir.path(),
        )
        .await;
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("holds no licence"), "{text}");
        assert!(text.contains("stays seeded"), "{text}");
        // A release in the clear is never opened.
        let (dir, server) = daemon_dir().await;
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(content(id, ContentState::Complete, 4096));
        exec(
            &[
                "get",
                &format!("licet:{id}"),
                "-o",
                out.path().to_str().unwrap(),
            ],
            dir.path(),
        )
        .await
        .unwrap();
        assert!(
            !server
                .node
                .calls()
                .iter()
                .any(|c| matches!(c, Call::ContentOpen(..)))
        );
    }

    #[tokio::test]
    async fn get_refused_exits_1_with_the_reason() {
        let (dir, server) = daemon_dir().await;
        let link = format!("licet:{}", ManifestId([2; 32]));
        let out = tempfile::tempdir().unwrap();
        let out = out.path().to_str().unwrap();
        for kind in [ApiErrorKind::Refused, ApiErrorKind::Unavailable] {
            server
                .node
                .fail(ApiError::refused(kind, "cannot fetch it", refusal()));
            let (code, text) = fails(&["get", &link, "-o", out], dir.path()).await;
            assert_eq!(code, 1, "{kind:?}");
            assert_eq!(
                text,
                "cannot fetch it: refused: publisher is not trusted: publisher 3b6a… is not in \
                 this node's trust store"
            );
        }
        server
            .node
            .fail(ApiError::new(ApiErrorKind::Unavailable, "no peer has it"));
        let (code, _) = fails(&["get", &link, "-o", out], dir.path()).await;
        assert_eq!(code, 2);
        let (code, text) = fails(&["get", "licet:nothex", "-o", out], dir.path()).await;
        assert_eq!(code, 2);
        assert!(text.contains("nothex"), "{text}");
    }

    #[tokio::test]
    async fn get_reports_a_failed_download() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        let out = tempfile::tempdir().unwrap();
        let out = out.path().to_str().unwrap();
        let link = format!("licet:{id}");

        let mut failed = content(id, ContentState::Failed, 1024);
        failed.error = Some("no space left on device".to_owned());
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(failed.clone());
        let (code, text) = fails(&["get", &link, "-o", out], dir.path()).await;
        assert_eq!(code, 2);
        assert!(text.contains("no space left"), "{text}");

        failed.refused = Some(Refusal {
            reason: RefusalReason::Revoked,
            detail: "catalog 7 revokes it".to_owned(),
        });
        *server.node.content_replies.lock().unwrap() = [failed].into();
        let (code, text) = fails(&["get", &link, "-o", out], dir.path()).await;
        assert_eq!(code, 1);
        assert!(
            text.contains("manifest is revoked by the publisher: catalog 7 revokes it"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn get_gives_up_watching_when_nothing_moves() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(content(id, ContentState::Downloading, 1024));
        let out = tempfile::tempdir().unwrap();
        let watch = Watch {
            poll_interval: Duration::from_millis(20),
            stall_limit: Duration::from_millis(300),
            progress: false,
        };
        let started = Instant::now();
        let failure = exec_with(
            &[
                "get",
                &format!("licet:{id}"),
                "-o",
                out.path().to_str().unwrap(),
            ],
            dir.path(),
            &watch,
        )
        .await
        .unwrap_err();
        assert_eq!(failure.exit_code(), 2);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let text = message(&failure);
        assert!(text.starts_with("no progress on \"Episode 1\""), "{text}");
        assert!(text.contains("1.0 KiB of 4.0 KiB"), "{text}");
    }

    #[tokio::test]
    async fn get_stops_when_the_daemon_goes_away() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([2; 32]);
        server
            .node
            .content_replies
            .lock()
            .unwrap()
            .push_back(content(id, ContentState::Downloading, 1024));
        let out = tempfile::tempdir().unwrap();
        let out = out.path().to_str().unwrap().to_owned();
        let data_dir = dir.path().to_owned();
        let watching = tokio::spawn(async move {
            let cli =
                TestCli::try_parse_from(["licet-node", "get", &format!("licet:{id}"), "-o", &out])
                    .unwrap();
            execute(cli.command, &data_dir, &quick_watch()).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.stop().await.unwrap();
        let failure = within(watching).await.unwrap().unwrap_err();
        assert_eq!(failure.exit_code(), 2);
        assert!(
            message(&failure).starts_with("lost track of the download"),
            "{}",
            message(&failure)
        );
    }
}
