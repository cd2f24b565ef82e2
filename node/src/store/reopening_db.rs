//! The one handle on the node's redb database, which reopens it after an I/O error.
//!
//! redb latches the first I/O error of a database (a full disk during a commit, a failed
//! `fsync`): from then on every read and write of that `Database` fails with "previous I/O
//! error", and the only way back is to drop it and open the file again, which lets redb repair
//! it from its last committed state. `ReopeningDb` does that by itself, so one full disk does
//! not poison the node until a restart.
//!
//! Invariants:
//! - **Only an I/O error closes the database.** `ReopeningDb::failed` is told of every redb
//!   error; it closes the database only for an I/O error (`Io`, `PreviousIo`,
//!   `DatabaseClosed`). A corrupt value, a type mismatch or a full table leave it open.
//! - **While it is closed, callers get one clear error** ([`Unavailable`]: the path, when it
//!   failed and why), never redb's "previous I/O error" and never a stale handle.
//! - **Reopening is tried at most every [`REOPEN_RETRY_INTERVAL`]**, by the next call that needs
//!   the database or by `ReopeningDb::recover` (the node calls it on a timer), so a disk that
//!   stays full is not hammered with repairs. A reopen checks the file is still ours
//!   (`opener`), exactly as at start.
//! - **Reopening waits for no one and breaks nothing**: it takes the handle under a write lock;
//!   a transaction still running on the old handle only fails (its handle is latched already),
//!   and if it still holds the file the reopen fails and is tried again later. (Such a late
//!   failure is reported like any other and closes the new handle too; it is reopened again at
//!   the next attempt. Errors carry no handle identity to tell them apart, and a needless
//!   reopen costs only that.)

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Mutex, RwLock, TryLockError},
    time::{Duration, Instant},
};

use licet_proto::Timestamp;
use redb::{Database, ReadTransaction, ReadableDatabase as _, WriteTransaction};

/// Shortest time between two attempts to reopen a closed database. Each attempt opens the file
/// and lets redb repair it, which reads its allocator state: not worth doing more often while
/// a disk stays full.
pub const REOPEN_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Opens the database file and checks it is ours; the same function as at start.
pub(crate) type Opener = Box<dyn Fn() -> Result<Database, String> + Send + Sync>;

/// The database is closed after an I/O error and could not be reopened yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// The state file.
    pub path: PathBuf,
    /// When the first error of this outage happened.
    pub since: Timestamp,
    /// That error.
    pub cause: String,
    /// Why the last reopen failed, if one was tried.
    pub reopen_error: Option<String>,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node database {} is closed since {} after an I/O error ({}); it reopens by itself \
             once the cause (such as a full disk) is gone",
            self.path.display(),
            self.since,
            self.cause
        )?;
        if let Some(reopen) = &self.reopen_error {
            write!(f, " (last reopen: {reopen})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unavailable {}

/// How the database is doing, for `status` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Open and working.
    Ok,
    /// Closed after an I/O error; every call fails until a reopen succeeds.
    Closed(Unavailable),
}

impl Health {
    /// What is wrong, for people (`None`: nothing).
    pub fn problem(&self) -> Option<String> {
        match self {
            Health::Ok => None,
            Health::Closed(unavailable) => Some(unavailable.to_string()),
        }
    }
}

struct Outage {
    since: Timestamp,
    cause: String,
    reopen_error: Option<String>,
    last_attempt: Option<Instant>,
}

/// The database handle, reopened after I/O errors. See the module docs.
pub(crate) struct ReopeningDb {
    path: PathBuf,
    opener: Opener,
    retry_interval: Duration,
    db: RwLock<Option<Database>>,
    outage: Mutex<Option<Outage>>,
    reopened: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for ReopeningDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReopeningDb")
            .field("path", &self.path)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

/// Whether `error` latches a redb database (only a reopen clears it).
fn is_io(error: &redb::Error) -> bool {
    matches!(
        error,
        redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
    )
}

impl ReopeningDb {
    /// Wraps `db`, opened by `opener`, which reopens it later, at most every `retry_interval`
    /// ([`REOPEN_RETRY_INTERVAL`]).
    pub(crate) fn new(
        path: &Path,
        db: Database,
        opener: Opener,
        retry_interval: Duration,
    ) -> ReopeningDb {
        ReopeningDb {
            path: path.to_owned(),
            opener,
            retry_interval,
            db: RwLock::new(Some(db)),
            outage: Mutex::new(None),
            reopened: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Begins a read transaction (reopening first if it is time to try).
    pub(crate) fn begin_read(&self) -> Result<Result<ReadTransaction, redb::Error>, Unavailable> {
        self.with(|db| db.begin_read().map_err(Into::into))
    }

    /// Begins a write transaction (reopening first if it is time to try).
    pub(crate) fn begin_write(&self) -> Result<Result<WriteTransaction, redb::Error>, Unavailable> {
        self.with(|db| db.begin_write().map_err(Into::into))
    }

    fn with<T>(&self, work: impl FnOnce(&Database) -> T) -> Result<T, Unavailable> {
        if self.is_closed() {
            self.recover();
        }
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = guard.as_ref() {
            return Ok(work(db));
        }
        // Released before the outage is read: `recover` takes them in the other order.
        drop(guard);
        Err(self.unavailable())
    }

    /// Runs `work` on the open database while no transaction can begin (for work that needs
    /// the database alone, such as compaction), if that can be had now: `None` while a
    /// transaction is beginning or the database is being reopened, `Some(Err)` while it is
    /// closed. Transactions hold the lock only while they begin, so this never waits on one.
    pub(crate) fn try_exclusive<T>(
        &self,
        work: impl FnOnce(&mut Database) -> T,
    ) -> Option<Result<T, Unavailable>> {
        let mut guard = match self.db.try_write() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        if let Some(db) = guard.as_mut() {
            return Some(Ok(work(db)));
        }
        // Released before the outage is read, as in `with`.
        drop(guard);
        Some(Err(self.unavailable()))
    }

    /// Records `error` from a call on the database; an I/O error closes it (module docs).
    pub(crate) fn failed(&self, doing: &str, error: &redb::Error) {
        if !is_io(error) {
            return;
        }
        let mut outage = self.lock_outage();
        if outage.is_none() {
            tracing::warn!(
                path = %self.path.display(),
                "node database closed after an I/O error ({doing}: {error}); it is reopened \
                 once the cause is gone"
            );
            *outage = Some(Outage {
                since: Timestamp::now(),
                cause: format!("{doing}: {error}"),
                reopen_error: None,
                last_attempt: Some(Instant::now()),
            });
        }
        drop(outage);
        // Dropped now, so its file handle (and lock) goes as soon as running transactions end.
        self.db.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Tries to reopen a closed database, at most every [`REOPEN_RETRY_INTERVAL`]. Returns
    /// whether it is open.
    pub(crate) fn recover(&self) -> bool {
        let mut outage = self.lock_outage();
        let Some(current) = outage.as_mut() else {
            return true;
        };
        if current
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.retry_interval)
        {
            return false;
        }
        current.last_attempt = Some(Instant::now());
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        db.take();
        match (self.opener)() {
            Ok(opened) => {
                *db = Some(opened);
                tracing::info!(
                    path = %self.path.display(),
                    "node database reopened after the I/O error of {} ({})",
                    current.since,
                    current.cause
                );
                *outage = None;
                self.reopened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::debug!(path = %self.path.display(), "node database not reopened yet: {e}");
                current.reopen_error = Some(e);
                false
            }
        }
    }

    /// Whether the database is closed after an I/O error.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock_outage().is_some()
    }

    /// How the database is doing.
    pub(crate) fn health(&self) -> Health {
        if self.is_closed() {
            Health::Closed(self.unavailable())
        } else {
            Health::Ok
        }
    }

    /// How many times it was reopened after an I/O error.
    pub(crate) fn reopened(&self) -> u64 {
        self.reopened.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn unavailable(&self) -> Unavailable {
        let outage = self.lock_outage();
        Unavailable {
            path: self.path.clone(),
            since: outage.as_ref().map_or(Timestamp(0), |o| o.since),
            cause: outage
                .as_ref()
                .map_or_else(|| "it is being reopened".to_owned(), |o| o.cause.clone()),
            reopen_error: outage.as_ref().and_then(|o| o.reopen_error.clone()),
        }
    }

    fn lock_outage(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs::{File, OpenOptions},
        io,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
    };

    use redb::{Builder, StorageBackend, TableDefinition, backends::FileBackend};

    use super::*;

    const TABLE: TableDefinition<u64, u64> = TableDefinition::new("t");

    /// A file whose writes fail while `full` is set, as on a full disk.
    #[derive(Debug)]
    struct FullDisk {
        file: FileBackend,
        full: Arc<AtomicBool>,
    }

    impl StorageBackend for FullDisk {
        fn len(&self) -> Result<u64, io::Error> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), io::Error> {
            self.file.set_len(len)
        }
        fn sync_data(&self) -> Result<(), io::Error> {
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
            if self.full.load(Ordering::SeqCst) {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device",
                ));
            }
            self.file.write(offset, data)
        }
    }

    fn open(path: &Path, full: &Arc<AtomicBool>) -> Result<Database, String> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| e.to_string())?;
        let backend = FullDisk {
            file: FileBackend::new(file).map_err(|e| e.to_string())?,
            full: full.clone(),
        };
        Builder::new()
            .create_with_backend(backend)
            .map_err(|e| e.to_string())
    }

    fn put(db: &ReopeningDb, value: u64) -> Result<(), String> {
        let txn = db
            .begin_write()
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let written = (|| -> Result<(), redb::Error> {
            txn.open_table(TABLE)?.insert(0, value)?;
            txn.commit()?;
            Ok(())
        })();
        written.map_err(|e| {
            db.failed("commit", &e);
            e.to_string()
        })
    }

    fn get(db: &ReopeningDb) -> Result<Option<u64>, String> {
        let txn = db
            .begin_read()
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
        Ok(table.get(0).map_err(|e| e.to_string())?.map(|v| v.value()))
    }

    /// Regression (issue 20, item 1): one failed commit made every later call fail with
    /// "previous I/O error" until the node restarted.
    #[test]
    fn a_failed_commit_closes_the_database_and_it_reopens_once_writes_work_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let full = Arc::new(AtomicBool::new(false));
        let opener_full = full.clone();
        let opener_path = path.clone();
        let db = ReopeningDb::new(
            &path,
            open(&path, &full).unwrap(),
            Box::new(move || open(&opener_path, &opener_full)),
            Duration::ZERO,
        );
        put(&db, 1).unwrap();
        assert_eq!(db.health(), Health::Ok);

        full.store(true, Ordering::SeqCst);
        let failed = put(&db, 2).unwrap_err();
        assert!(failed.contains("No space left on device"), "{failed}");
        let Health::Closed(outage) = db.health() else {
            panic!("still open after a failed commit");
        };
        assert!(outage.cause.contains("No space left on device"), "{outage}");
        // Still full: the reopen's repair cannot write either, and callers get the clear error.
        let refused = put(&db, 3).unwrap_err();
        assert!(
            refused.contains("is closed since") && !refused.contains("Previous I/O error"),
            "{refused}"
        );
        assert!(db.is_closed());

        full.store(false, Ordering::SeqCst);
        assert!(db.recover(), "not reopened once writes work again");
        assert_eq!(db.health(), Health::Ok);
        assert_eq!(db.reopened(), 1);
        assert_eq!(get(&db).unwrap(), Some(1), "the last commit is kept");
        put(&db, 4).unwrap();
        assert_eq!(get(&db).unwrap(), Some(4));
    }

    #[test]
    fn an_error_that_is_not_io_leaves_the_database_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let full = Arc::new(AtomicBool::new(false));
        let opener_full = full.clone();
        let opener_path = path.clone();
        let db = ReopeningDb::new(
            &path,
            open(&path, &full).unwrap(),
            Box::new(move || open(&opener_path, &opener_full)),
            Duration::ZERO,
        );
        db.failed("read", &redb::Error::Corrupted("a bad page".into()));
        assert_eq!(db.health(), Health::Ok);
        put(&db, 1).unwrap();
    }
}
