//! Opening the state file: deciding without writing whether an existing file is ours
//! (invariant 1 of the module docs), creating a new one that appears complete (invariant 2),
//! and turning redb's panics on a damaged file into errors.

use std::{
    fmt,
    fs::File,
    io::{self, Read as _},
    panic::{self, AssertUnwindSafe},
    path::Path,
};

use licet_proto::encoding;
use redb::{
    Builder, Database, DatabaseError, ReadableDatabase, TableError, TableHandle,
    backends::FileBackend,
};

use super::{
    STATE_FORMAT_VERSION, STATE_MAGIC, StoreError,
    atomic_file::{self, IfExists},
    probe_backend::ProbeBackend,
    schema::{MAX_META_VALUE_BYTES, META, META_MAGIC, META_NAME, META_VERSION, create_tables},
};

/// redb's page cache for the state database (redb's default is 1 GiB). Every commit writes
/// new pages and the cache keeps them until it is full, so this is what a long download adds to
/// the node's memory; the hot rows (bitfields, a file's proofs) fit many times over.
const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// redb's page cache while checking whether a file is ours.
const PROBE_CACHE_BYTES: usize = 4 * 1024 * 1024;
/// The first bytes of every redb file (redb's own file signature), checked before redb reads
/// the file so that "not a redb file at all" gets its own clear error.
const REDB_SIGNATURE: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

// ----- opening -----

pub(super) fn open_error(path: &Path, reason: impl fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn foreign(path: &Path, found: impl Into<String>) -> StoreError {
    StoreError::Foreign {
        path: path.to_owned(),
        found: found.into(),
    }
}

fn redb_open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => open_error(
            path,
            "it is in use by another process (is another licet-node running with this data directory?)",
        ),
        DatabaseError::UpgradeRequired(version) => open_error(
            path,
            format!("it is in redb file format {version}, which this build cannot read"),
        ),
        DatabaseError::RepairAborted => open_error(
            path,
            "it was not shut down cleanly and redb could not repair it",
        ),
        other => open_error(
            path,
            format!("redb cannot read it, it is damaged beyond what redb repairs: {other}"),
        ),
    }
}

/// Opens the state file at `path` for use and checks it is ours (the second half of
/// [`Store::open`](super::Store::open), and every reopen after an I/O error).
pub(super) fn open_checked(path: &Path) -> Result<Database, StoreError> {
    guard_panics(path, || {
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .map_err(|e| redb_open_error(path, e))?;
        // Checked again on the handle that will be used: the file may have been replaced
        // between the check and the open.
        check_meta(&db, path)?;
        Ok(db)
    })
}

/// Runs `work`, turning a panic inside redb into an error: redb documents that opening a file
/// damaged outside redb may panic, and a bad file must not take the node down.
fn guard_panics<T>(
    path: &Path,
    work: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // The panic is caught and becomes the error below: keep the panic hook from printing it
    // (and a backtrace) as if the program had crashed.
    let caught = {
        let _quiet = QuietPanics::on();
        panic::catch_unwind(AssertUnwindSafe(work))
    };
    caught.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(open_error(
            path,
            format!("it is damaged beyond what redb repairs (redb failed reading it: {message})"),
        ))
    })
}

thread_local! {
    /// Set while [`guard_panics`] runs on this thread: its panics are expected and reported.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Silences the panic hook on this thread while it lives (other threads are unaffected). The
/// filtering hook is installed once, around whatever hook was there before.
struct QuietPanics {
    was: bool,
}

impl QuietPanics {
    fn on() -> QuietPanics {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let previous = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if !QUIET_PANICS.with(std::cell::Cell::get) {
                    previous(info);
                }
            }));
        });
        QuietPanics {
            was: QUIET_PANICS.with(|q| q.replace(true)),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET_PANICS.with(|q| q.set(self.was));
    }
}

/// Decides whether the existing file at `path` is ours, without writing to it (invariant 1).
pub(super) fn probe(path: &Path) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(|e| open_error(path, e))?;
    let len = file.metadata().map_err(|e| open_error(path, e))?.len();
    if len == 0 {
        return Err(foreign(path, "an empty file"));
    }
    let mut signature = [0u8; REDB_SIGNATURE.len()];
    let mut read = 0;
    while read < signature.len() {
        match file.read(&mut signature[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_error(path, e)),
        }
    }
    if read < signature.len() || signature != REDB_SIGNATURE {
        return Err(foreign(path, "not a redb database at all"));
    }
    let backend = ProbeBackend::new(file).map_err(|e| open_error(path, e))?;
    guard_panics(path, || {
        let db = Builder::new()
            .set_cache_size(PROBE_CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| redb_open_error(path, e))?;
        check_meta(&db, path)
    })
}

/// Checks the `meta` table of an open database: our magic, a version this build reads.
fn check_meta(db: &impl ReadableDatabase, path: &Path) -> Result<(), StoreError> {
    let db_error =
        |e: redb::Error| StoreError::Database(format!("{}: read meta: {e}", path.display()));
    let txn = db.begin_read().map_err(|e| db_error(e.into()))?;
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => {
            let mut names: Vec<String> = txn
                .list_tables()
                .map_err(|e| db_error(e.into()))?
                .map(|t| t.name().to_owned())
                .take(11)
                .collect();
            let more = if names.len() > 10 { ", …" } else { "" };
            names.truncate(10);
            let tables = if names.is_empty() {
                "none".to_owned()
            } else {
                format!("{}{more}", names.join(", "))
            };
            return Err(foreign(
                path,
                format!("a redb database of another program (no meta table; its tables: {tables})"),
            ));
        }
        Err(TableError::TableTypeMismatch { .. } | TableError::TableIsMultimap(_)) => {
            return Err(foreign(
                path,
                "a redb database of another program (its meta table has other types)",
            ));
        }
        Err(e) => return Err(db_error(e.into())),
    };
    let magic = table.get(META_MAGIC).map_err(|e| db_error(e.into()))?;
    let magic: Option<String> =
        magic.and_then(|v| encoding::decode("state magic", v.value(), MAX_META_VALUE_BYTES).ok());
    if magic.as_deref() != Some(STATE_MAGIC) {
        return Err(foreign(
            path,
            "a redb database of another program (its meta table has no licet magic)",
        ));
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        table: META_NAME,
        key: META_VERSION.to_owned(),
        reason,
    };
    let version = table
        .get(META_VERSION)
        .map_err(|e| db_error(e.into()))?
        .ok_or_else(|| corrupt("missing".to_owned()))?;
    let version: u32 = encoding::decode(
        "state format version",
        version.value(),
        MAX_META_VALUE_BYTES,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    match version {
        STATE_FORMAT_VERSION => Ok(()),
        v if v > STATE_FORMAT_VERSION => Err(StoreError::NewerFormat {
            path: path.to_owned(),
            version: v,
        }),
        v => Err(corrupt(format!("unknown format version {v}"))),
    }
}

/// Creates a new state file at `path` (invariant 2), through [`atomic_file`]. If another
/// process creates it first, leaves theirs in place: it is probed like any existing file.
pub(super) fn create_state_file(path: &Path) -> Result<(), StoreError> {
    // Mode 0600 whatever the umask: the file holds the trust store and every content path.
    atomic_file::write_atomic_with(path, 0o600, IfExists::Keep, |file| {
        initialize(file).map_err(io::Error::other)
    })
    .map(drop)
    .map_err(|e| open_error(path, format!("cannot create it: {e}")))
}

/// Writes a complete, empty state database to the new, empty `file`.
fn initialize(file: File) -> Result<(), String> {
    let backend = FileBackend::new(file).map_err(|e| e.to_string())?;
    let db = Builder::new()
        .set_cache_size(PROBE_CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(|e| e.to_string())?;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        meta.insert(META_MAGIC, encoding::encode(&STATE_MAGIC).as_slice())
            .map_err(|e| e.to_string())?;
        meta.insert(
            META_VERSION,
            encoding::encode(&STATE_FORMAT_VERSION).as_slice(),
        )
        .map_err(|e| e.to_string())?;
    }
    create_tables(&txn).map_err(|e| e.to_string())?;
    // Durability::Immediate (the default): the commit is fsynced.
    txn.commit().map_err(|e| e.to_string())?;
    db.close().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use licet_proto::{policy::TrustedPublisher, wire::Bitfield};
    use redb::TableDefinition;

    use super::*;
    use crate::store::{
        Store,
        schema::{
            BITFIELDS_NAME, CATALOG_HEADS_NAME, CATALOGS_NAME, CHUNK_LEAVES_NAME, CONTENT_NAME,
            LEAF_BLOCKS_NAME, LEAVES_NAME, LICENCES_NAME, MANIFESTS_NAME, MIRRORS_NAME,
            PROOFS_NAME, TRUST_NAME,
        },
        testing::*,
    };

    #[test]
    fn a_new_file_gets_the_magic_and_version_and_no_temporary_file_is_left() {
        let (dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert!(store.trust_list().unwrap().is_empty());
        assert!(store.content_list().unwrap().is_empty());
        drop(store);

        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let magic: String =
            encoding::decode("magic", meta.get(META_MAGIC).unwrap().unwrap().value(), 100).unwrap();
        assert_eq!(magic, STATE_MAGIC);
        let version: u32 = encoding::decode(
            "version",
            meta.get(META_VERSION).unwrap().unwrap().value(),
            100,
        )
        .unwrap();
        assert_eq!(version, STATE_FORMAT_VERSION);
        let names: BTreeSet<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        let expected: BTreeSet<String> = [
            META_NAME,
            TRUST_NAME,
            MANIFESTS_NAME,
            CONTENT_NAME,
            BITFIELDS_NAME,
            LEAVES_NAME,
            PROOFS_NAME,
            CHUNK_LEAVES_NAME,
            LEAF_BLOCKS_NAME,
            CATALOGS_NAME,
            CATALOG_HEADS_NAME,
            MIRRORS_NAME,
            LICENCES_NAME,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(names, expected);

        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("state.redb")]);
    }

    #[test]
    fn a_file_that_is_not_redb_is_refused_unchanged() {
        let (_dir, path) = state_path();
        std::fs::write(&path, b"hello").unwrap();
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("not a redb database")),
                "{err}"
            );
        });
    }

    #[test]
    fn an_empty_file_is_refused_unchanged() {
        let (_dir, path) = state_path();
        std::fs::write(&path, b"").unwrap();
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found == "an empty file"),
                "{err}"
            );
        });
    }

    #[test]
    fn another_programs_redb_file_is_refused_unchanged() {
        let (_dir, path) = state_path();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let other: TableDefinition<&str, u64> = TableDefinition::new("bookmarks");
            txn.open_table(other).unwrap().insert("a", 1).unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. }
                    if found.contains("another program") && found.contains("bookmarks")),
                "{err}"
            );
        });
    }

    #[test]
    fn another_programs_redb_file_left_by_a_crash_is_refused_unchanged() {
        let (dir, path) = state_path();
        let open = dir.path().join("open.redb");
        let db = Database::create(&open).unwrap();
        let txn = db.begin_write().unwrap();
        let other: TableDefinition<u64, u64> = TableDefinition::new("numbers");
        txn.open_table(other).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
        crashed_copy(&open, &path);
        drop(db);
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("numbers")),
                "{err}"
            );
        });
    }

    #[test]
    fn a_meta_table_without_the_licet_magic_is_refused_unchanged() {
        let (_dir, path) = state_path();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_MAGIC, encoding::encode(&"some-other-app").as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("no licet magic")),
                "{err}"
            );
        });
    }

    #[test]
    fn a_meta_table_of_other_types_is_refused_unchanged() {
        let (_dir, path) = state_path();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let meta: TableDefinition<u64, u64> = TableDefinition::new(META_NAME);
            txn.open_table(meta).unwrap().insert(1, 1).unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Foreign { found, .. } if found.contains("other types")),
                "{err}"
            );
        });
    }

    #[test]
    fn a_newer_format_version_is_refused_unchanged() {
        let (_dir, path) = state_path();
        drop(Store::open(&path).unwrap());
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_VERSION, encoding::encode(&2u32).as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::NewerFormat { version: 2, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("upgrade licet-node"), "{err}");
        });
    }

    #[test]
    fn an_undecodable_format_version_is_corrupt() {
        let (_dir, path) = state_path();
        drop(Store::open(&path).unwrap());
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_VERSION, [0xFF_u8; 6].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert_corrupt(Store::open(&path).unwrap_err(), "meta", "format_version");
    }

    #[test]
    fn a_damaged_redb_file_is_refused_without_a_panic() {
        let (_dir, path) = state_path();
        {
            let store = Store::open(&path).unwrap();
            store
                .trust_put(&secret(1).public_key(), &TrustedPublisher::default())
                .unwrap();
        }
        // Keep redb's signature, overwrite everything after the first page.
        let mut bytes = std::fs::read(&path).unwrap();
        for (i, byte) in bytes.iter_mut().enumerate().skip(4096) {
            *byte = (i * 7 + 3) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_refused_unchanged(&path, |err| {
            assert!(
                matches!(err, StoreError::Open { .. } | StoreError::Database(_)),
                "{err}"
            );
        });
    }

    #[test]
    fn a_store_in_use_is_refused_and_the_first_keeps_working() {
        let (_dir, path) = state_path();
        let first = Store::open(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::Open { reason, .. } if reason.contains("in use")),
            "{err}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
        first
            .trust_put(&secret(1).public_key(), &TrustedPublisher::default())
            .unwrap();
        assert_eq!(first.trust_list().unwrap().len(), 1);
    }

    #[test]
    fn a_store_left_by_a_crash_reopens_with_its_committed_data() {
        let (dir, path) = state_path();
        let crashed = dir.path().join("crashed.redb");
        let m = manifest("crash", &[THREE_CHUNKS]);
        let store = Store::open(&path).unwrap();
        put_download(&store, &m);
        store.commit_chunks(&m.id(), &[chunk(0, 2)]).unwrap();
        crashed_copy(&path, &crashed);
        drop(store);

        let store = Store::open(&crashed).unwrap();
        let mut bits = Bitfield::new(3);
        bits.set(2, true);
        assert_eq!(store.bitfield(&m.id(), 0).unwrap(), Some(bits));
        assert_eq!(store.proof(&m.id(), 0, 2).unwrap(), Some(proof(2)));
    }

    #[test]
    fn a_directory_or_a_missing_parent_is_an_open_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));

        let missing = dir.path().join("no such dir").join("state.redb");
        let err = Store::open(&missing).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&missing.display().to_string()));
        assert!(!dir.path().join("no such dir").exists());
    }

    #[test]
    fn the_redb_signature_is_what_redb_writes() {
        let (_dir, path) = state_path();
        drop(Database::create(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap()[..9], REDB_SIGNATURE);
    }
}
