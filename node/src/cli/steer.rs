//! `licet-node pause`, `resume` and `rm` (also named `cancel`): steering a download, or
//! forgetting content, with `--delete` for the files a download wrote.
//!
//! Each names its content as `rm` always did (the id as `ls` shows it, any unique start of it,
//! the full id, or a `licet:` link). A request the item's state does not allow (pausing content
//! that is complete or seeded, resuming one that is not paused, `--delete` of a publisher's
//! originals) is the daemon's refusal, shown as it says it, exit 2.

use std::fmt::Write as _;

use super::{
    Failure, Verdict, call_failure, connect,
    content::resolve,
    output::{chunks_text, clean, human_bytes, id_prefix, print_json},
};
use crate::contract::{ContentInfo, RemoveQuery, RemoveReply};

/// `pause`: the daemon stops fetching the download (its chunks stay and are served).
pub(super) async fn pause(
    data_dir: &std::path::Path,
    named: &str,
    json: bool,
) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let id = resolve(&client, named).await?;
    let info = client
        .content_pause(&id)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        return print_json(&info);
    }
    print!("{}", paused_text(&info));
    Ok(())
}

/// `resume`: the daemon fetches a paused download again from what it holds.
pub(super) async fn resume(
    data_dir: &std::path::Path,
    named: &str,
    json: bool,
) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let id = resolve(&client, named).await?;
    let info = client
        .content_resume(&id)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        return print_json(&info);
    }
    println!(
        "resumed \"{}\": {} of {} held; fetching the rest into {}",
        clean(&info.title),
        human_bytes(info.have_bytes),
        human_bytes(info.total_bytes),
        info.dir.display()
    );
    println!(
        "  follow it: licet-node get {} -o {}",
        info.link,
        info.dir.display()
    );
    Ok(())
}

/// `rm` / `cancel`: forgets the content; with `delete`, also deletes what its download wrote.
pub(super) async fn remove(
    data_dir: &std::path::Path,
    named: &str,
    delete: bool,
    json: bool,
) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    let id = resolve(&client, named).await?;
    let info: ContentInfo = client
        .content_get(&id)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    let query = RemoveQuery {
        delete_files: delete,
    };
    let reply = client
        .content_remove(&id, query)
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    if json {
        return print_json(&reply);
    }
    print!("{}", removed_text(&info.title, delete, &reply));
    Ok(())
}

/// What `pause` prints.
fn paused_text(info: &ContentInfo) -> String {
    let id = id_prefix(&info.manifest_id);
    format!(
        "paused \"{}\": {} of {} held ({} of {}), still served\n  \
         resume it:  licet-node resume {id}\n  \
         cancel it:  licet-node cancel {id}   (add --delete to delete its files too)\n",
        clean(&info.title),
        human_bytes(info.have_bytes),
        human_bytes(info.total_bytes),
        info.have_chunks,
        chunks_text(info.total_chunks),
    )
}

/// What `rm` / `cancel` prints: what was forgotten, and what was deleted or kept.
fn removed_text(title: &str, delete: bool, reply: &RemoveReply) -> String {
    let mut out = format!("removed \"{}\" ({})", clean(title), reply.removed);
    if !delete {
        let _ = writeln!(out, "; its files stay in {}", reply.dir.display());
        return out;
    }
    let folders = match reply.removed_folders.len() {
        0 => String::new(),
        1 => " and 1 empty folder".to_owned(),
        n => format!(" and {n} empty folders"),
    };
    let files = match reply.deleted_files.len() {
        1 => "1 file".to_owned(),
        n => format!("{n} files"),
    };
    let _ = writeln!(
        out,
        "; deleted {files}{folders} from {}",
        reply.dir.display()
    );
    for kept in &reply.kept {
        let _ = writeln!(
            out,
            "  kept {}: {}",
            clean(&kept.path.display().to_string()),
            clean(&kept.reason)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use licet_proto::ManifestId;

    use super::*;
    use crate::{
        cli::test_support::*,
        contract::{ContentState, KeptFile},
    };

    #[tokio::test]
    async fn pause_resume_and_cancel_call_their_routes_with_the_id_resolved() {
        let (dir, server) = daemon_dir().await;
        let id = ManifestId([7; 32]).to_hex();
        for args in [
            vec!["pause", &id],
            vec!["resume", &id, "--json"],
            vec!["cancel", &id],
            vec!["cancel", &id, "--delete"],
            vec!["rm", &id, "--delete", "--json"],
        ] {
            exec(&args, dir.path()).await.unwrap();
        }
        let calls = server.node.calls();
        assert!(
            matches!(
                calls[..],
                [
                    Call::ContentPause(_),
                    Call::ContentResume(_),
                    Call::ContentGet(_),
                    Call::ContentRemove(_, false),
                    Call::ContentGet(_),
                    Call::ContentRemove(_, true),
                    Call::ContentGet(_),
                    Call::ContentRemove(_, true),
                ]
            ),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_pause_shows_the_daemons_reason_and_exits_2() {
        let (dir, server) = daemon_dir().await;
        server.node.fail(ApiError::new(
            ApiErrorKind::Conflict,
            "content 0707… is complete: only a download being fetched can be paused",
        ));
        let id = ManifestId([7; 32]).to_hex();
        let (code, text) = fails(&["pause", &id], dir.path()).await;
        assert_eq!(code, 2);
        assert!(text.contains("is complete: only a download"), "{text}");
    }

    #[test]
    fn messages_say_what_was_paused_deleted_and_kept() {
        let info = content(ManifestId([0xab; 32]), ContentState::Paused, 1024);
        let text = paused_text(&info);
        assert!(
            text.contains("paused \"Episode 1\": 1.0 KiB of 4.0 KiB held"),
            "{text}"
        );
        assert!(
            text.contains("licet-node resume abababababababab"),
            "{text}"
        );
        assert!(
            text.contains("licet-node cancel abababababababab"),
            "{text}"
        );

        let dir = PathBuf::from("/out");
        let mut reply = RemoveReply {
            removed: ManifestId([1; 32]),
            dir: dir.clone(),
            deleted_files: vec![dir.join("a.bin"), dir.join("b.bin.part")],
            removed_folders: vec![dir.join("sub")],
            kept: vec![KeptFile {
                path: dir.join("c.bin"),
                reason: "a symbolic link, not a file the download wrote".to_owned(),
            }],
        };
        let text = removed_text("Film", true, &reply);
        assert!(
            text.contains("deleted 2 files and 1 empty folder from /out"),
            "{text}"
        );
        assert!(text.contains("kept /out/c.bin: a symbolic link"), "{text}");
        reply.deleted_files.clear();
        let text = removed_text("Film", false, &reply);
        assert!(text.contains("its files stay in /out"), "{text}");
    }
}
