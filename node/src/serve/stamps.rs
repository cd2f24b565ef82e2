//! Noticing, without reading a byte, that a complete file changed on disk: its size or
//! modification time is no longer its stamp. Serving compares the stamp before every chunk it
//! reads; a listing (`ls`, `status`, `GET /v1/content/{id}`) compares it too, so content is never
//! shown complete while a file of it has changed.
//!
//! Invariants:
//! - [`compare_stamp`] is the one comparison of a file with its stamp, for serving and listing;
//! - a file found changed is taken out of service the one way a failed read takes it
//!   ([`Server::take_file_out_of_service`]): its bits cleared, the item failed with a hint to run
//!   `licet-node check`;
//! - one listing stats at most [`MAX_STAMP_CHECKS_PER_LISTING`] files (one `stat` each, on a
//!   blocking thread), starting at a different item each time so that every file is reached over
//!   a few listings; a file not compared in a listing is still compared before it is served.

use std::{path::Path, sync::Arc};

use crate::{
    content,
    items::Item,
    serve::{ServeFailure, Server, classify_read_error},
    store::{FileStamp, RecordState},
};

/// Most files one listing compares with their stamps: a `stat` costs a few microseconds, so
/// this bounds a listing's extra work to tens of milliseconds however much content is held.
pub const MAX_STAMP_CHECKS_PER_LISTING: usize = 10_000;

/// `Ok` if the file at `path`, whose stamp is `now` (or could not be read), still has the
/// stamp `expected`; else how it changed.
pub fn compare_stamp(
    path: &Path,
    now: std::io::Result<FileStamp>,
    expected: &FileStamp,
) -> Result<(), ServeFailure> {
    match now {
        Ok(now) if now == *expected => Ok(()),
        Ok(now) => Err(ServeFailure::Changed {
            how: format!(
                "its size or modification time changed ({} bytes, modified at {} ns; verified \
                 at {} bytes, {} ns)",
                now.size, now.modified_ns, expected.size, expected.modified_ns
            ),
            path: path.to_owned(),
        }),
        Err(e) => Err(classify_read_error(path, e)),
    }
}

impl Server {
    /// Compares the stamp of each file of the complete items in `items` (at most `budget`
    /// files, from the item at `start`), and takes each file that changed out of service.
    pub async fn notice_changed_files(&self, items: &[Arc<Item>], start: usize, budget: usize) {
        let mut to_compare = Vec::new();
        let count = items.len();
        for item in items.iter().cycle().skip(start % count.max(1)).take(count) {
            let live = item.live();
            if live.state != RecordState::Complete {
                continue;
            }
            for (file, stamp) in live.stamps.iter().enumerate() {
                if let Some(stamp) = stamp
                    && to_compare.len() < budget
                {
                    let path =
                        content::file_path(item.dir(), item.manifest().manifest(), file, true);
                    to_compare.push((item.clone(), file, path, stamp.clone()));
                }
            }
        }
        let compared = tokio::task::spawn_blocking(move || {
            to_compare
                .into_iter()
                .filter_map(|(item, file, path, stamp)| {
                    match compare_stamp(&path, content::stamp(&path), &stamp) {
                        Err(changed @ ServeFailure::Changed { .. }) => {
                            Some((item, file, changed.to_string()))
                        }
                        // Unreadable for a reason that proves nothing: left to serving to retry.
                        _ => None,
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (item, file, problem) in compared.unwrap_or_default() {
            let file = u32::try_from(file).unwrap_or(u32::MAX);
            self.take_file_out_of_service(&item, file, &problem).await;
        }
    }
}
