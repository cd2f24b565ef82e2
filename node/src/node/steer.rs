//! Downloads a user steers: pause, resume, and cancel (forget, optionally deleting the files the
//! download wrote).
//!
//! Invariants:
//! - only a download can be paused, and only while it is being fetched; only a paused download
//!   can be resumed; the state change is saved before the call answers, so it holds across a
//!   restart (a paused download is not resumed at start);
//! - a paused download keeps every chunk it holds and goes on serving them;
//! - `--delete` deletes only what a download would write (each manifest path and its `.part`
//!   name), beneath its folder, never through a link, regular files only; it is refused for
//!   content seeded with `add` (the publisher's originals), before anything is forgotten;
//! - files are deleted only once the item's download task has ended (or
//!   [`TASK_END_WAIT`] has passed), so no write follows a deletion.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use licet_proto::ManifestId;
use tracing::info;

use super::{
    Node,
    api_errors::{blocking, steer_error},
};
use crate::{
    content::{self, RemovedFiles},
    contract::{ApiError, ContentInfo, KeptFile, RemoveReply},
    store::{ContentOrigin, RecordState},
};

/// The longest a pause or a deleting cancel waits for the download task to end (it finishes
/// and commits the batch it is writing, as at shutdown).
const TASK_END_WAIT: Duration = Duration::from_secs(10);
/// How often that wait looks.
const TASK_END_POLL: Duration = Duration::from_millis(20);

/// Why a pause, resume or cancel was not done.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// No item of that id is held.
    #[error("manifest {id} is not held here")]
    NotHeld {
        /// The id asked for.
        id: ManifestId,
    },
    /// Pause of content that is seeded, not downloaded.
    #[error(
        "content {id} is seeded from its originals in {} (added with `add`), not downloaded: \
         there is nothing to pause",
        dir.display()
    )]
    SeededNotPausable {
        /// The item.
        id: ManifestId,
        /// Where its originals are.
        dir: PathBuf,
    },
    /// Pause of a download that is not being fetched (complete, failed, already paused).
    #[error("content {id} is {state}: only a download being fetched can be paused{hint}")]
    NotFetching {
        /// The item.
        id: ManifestId,
        /// Its state, in words.
        state: &'static str,
        /// What the user can do instead, starting with "; ", or empty.
        hint: &'static str,
    },
    /// Resume of an item that is not paused.
    #[error(
        "content {id} is not paused (it is {state}): only a paused download can be resumed{hint}"
    )]
    NotPaused {
        /// The item.
        id: ManifestId,
        /// Its state, in words.
        state: &'static str,
        /// What the user can do instead, starting with "; ", or empty.
        hint: &'static str,
    },
    /// `--delete` of content seeded with `add`.
    #[error(
        "content {id} is the originals seeded from {} (added with `add`): --delete deletes only \
         what a download wrote, never a publisher's originals; `rm` without --delete stops \
         seeding them and leaves them in place",
        dir.display()
    )]
    OriginalsNotDeleted {
        /// The item.
        id: ManifestId,
        /// Where its originals are.
        dir: PathBuf,
    },
}

/// An item's state in the words of the messages above.
fn state_words(state: RecordState) -> &'static str {
    match state {
        RecordState::Downloading => "downloading",
        RecordState::Complete => "complete",
        RecordState::Failed => "failed",
        RecordState::Paused => "paused",
    }
}

impl Node {
    /// Pauses the download `id`: its task ends (waited for, at most [`TASK_END_WAIT`]), the
    /// chunks held stay and are served, and the paused state is saved.
    pub(crate) async fn pause_item(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        let item = self
            .item(&id)
            .ok_or(SteerError::NotHeld { id })
            .map_err(steer_error)?;
        {
            let mut live = item.live();
            if item.origin() == ContentOrigin::Seeded {
                return Err(steer_error(SteerError::SeededNotPausable {
                    id,
                    dir: item.dir().to_path_buf(),
                }));
            }
            if live.state != RecordState::Downloading {
                let hint = match live.state {
                    RecordState::Paused => "; `licet-node resume` continues it",
                    RecordState::Failed => "; `licet-node get` retries it",
                    RecordState::Complete | RecordState::Downloading => "",
                };
                return Err(steer_error(SteerError::NotFetching {
                    id,
                    state: state_words(live.state),
                    hint,
                }));
            }
            item.halt(&mut live);
        }
        self.save_record(&item).await?;
        if !self.wait_for_task_end(&item).await {
            info!(%id, "paused; its download task is still finishing its last batch");
        } else {
            info!(%id, "paused");
        }
        Ok(self.info(&item))
    }

    /// Resumes the paused download `id` from the chunks it holds, and saves its state.
    pub(crate) async fn resume_item(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
        let item = self
            .item(&id)
            .ok_or(SteerError::NotHeld { id })
            .map_err(steer_error)?;
        {
            let live = item.live();
            if live.state != RecordState::Paused {
                let hint = match live.state {
                    RecordState::Failed => "; `licet-node get` retries a failed one",
                    RecordState::Downloading | RecordState::Complete | RecordState::Paused => "",
                };
                return Err(steer_error(SteerError::NotPaused {
                    id,
                    state: state_words(live.state),
                    hint,
                }));
            }
        }
        self.spawn_download(item.clone(), Vec::new(), Instant::now());
        self.save_record(&item).await?;
        info!(%id, "resumed");
        Ok(self.info(&item))
    }

    /// Forgets `id` as `rm` does and, if `delete_files`, deletes the files its download wrote
    /// (see the module docs); refused for seeded originals before anything changes.
    pub(crate) async fn cancel_item(
        &self,
        id: ManifestId,
        delete_files: bool,
    ) -> Result<RemoveReply, ApiError> {
        let item = self
            .item(&id)
            .ok_or(SteerError::NotHeld { id })
            .map_err(steer_error)?;
        if delete_files && item.origin() == ContentOrigin::Seeded {
            return Err(steer_error(SteerError::OriginalsNotDeleted {
                id,
                dir: item.dir().to_path_buf(),
            }));
        }
        self.remove_item(id).await?;
        let mut reply = RemoveReply {
            removed: id,
            dir: item.dir().to_path_buf(),
            deleted_files: Vec::new(),
            removed_folders: Vec::new(),
            kept: Vec::new(),
        };
        if !delete_files {
            return Ok(reply);
        }
        self.wait_for_task_end(&item).await;
        let (dir, manifest) = (item.dir().to_path_buf(), item.manifest().manifest().clone());
        let removed: RemovedFiles =
            blocking(move || content::remove_download_files(&dir, &manifest)).await?;
        info!(
            %id,
            "cancelled; {} files deleted from {}",
            removed.deleted.len(),
            item.dir().display()
        );
        reply.deleted_files = removed.deleted;
        reply.removed_folders = removed.folders;
        reply.kept = removed
            .kept
            .into_iter()
            .map(|(path, reason)| KeptFile { path, reason })
            .collect();
        Ok(reply)
    }

    /// Waits (at most [`TASK_END_WAIT`]) until no download task of `item` runs; whether none
    /// does.
    async fn wait_for_task_end(&self, item: &crate::items::Item) -> bool {
        let deadline = Instant::now() + TASK_END_WAIT;
        loop {
            if !item.live().downloading {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(TASK_END_POLL).await;
        }
    }
}
