//! A redb storage backend that reads a file and never writes to it, for deciding whether a
//! file is ours (invariant 1 of the module docs).

use std::{
    collections::{BTreeMap, btree_map::Entry},
    fs::File,
    io,
    ops::Bound,
    sync::{Mutex, PoisonError},
};

use redb::{BackendError, StorageBackend, backends::FileBackend};

/// Size of the blocks [`ProbeBackend`] keeps redb's writes in.
pub(super) const PROBE_BLOCK: u64 = 4096;

/// A redb storage backend over a file opened read-only. Reads come from the file; whatever redb
/// writes while opening (header flags, the repair of a file that was not shut down cleanly)
/// stays in memory and is dropped with the backend. Exclusive locks are taken shared, so the
/// check still conflicts with a process that has the file open for writing.
#[derive(Debug)]
pub(super) struct ProbeBackend {
    file: FileBackend,
    overlay: Mutex<Overlay>,
}

#[derive(Debug)]
pub(super) struct Overlay {
    /// The length redb sees.
    len: u64,
    /// How much of the file is still visible beneath the overlay: its length, lowered by every
    /// truncation (bytes past it read as zero unless written).
    file_visible: u64,
    /// Written blocks, by index, each `PROBE_BLOCK` bytes.
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl ProbeBackend {
    pub(super) fn new(file: File) -> io::Result<ProbeBackend> {
        let len = file.metadata()?.len();
        let file = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(ProbeBackend {
            file,
            overlay: Mutex::new(Overlay {
                len,
                file_visible: len,
                blocks: BTreeMap::new(),
            }),
        })
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills `out` with the file's bytes at `offset`, zeros past `visible`.
    fn read_file(&self, visible: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        if offset < visible {
            let n = usize::try_from(visible - offset)
                .unwrap_or(usize::MAX)
                .min(out.len());
            self.file.read(offset, &mut out[..n])?;
        }
        Ok(())
    }
}

impl StorageBackend for ProbeBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.overlay().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let overlay = self.overlay();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|end| *end <= overlay.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        self.read_file(overlay.file_visible, offset, out)?;
        let first = offset / PROBE_BLOCK;
        for (&index, block) in overlay.blocks.range(first..end.div_ceil(PROBE_BLOCK)) {
            let block_start = index * PROBE_BLOCK;
            let from = offset.max(block_start);
            let to = end.min(block_start + PROBE_BLOCK);
            out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(
                &block[(from - block_start) as usize..(to - block_start) as usize],
            );
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut overlay = self.overlay();
        if len < overlay.len {
            overlay.file_visible = overlay.file_visible.min(len);
            let keep = len.div_ceil(PROBE_BLOCK);
            overlay.blocks.split_off(&keep);
            let tail = (len % PROBE_BLOCK) as usize;
            if tail != 0
                && let Some(block) = overlay.blocks.get_mut(&(len / PROBE_BLOCK))
            {
                block[tail..].fill(0);
            }
        }
        overlay.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut overlay = self.overlay();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past u64"))?;
        let visible = overlay.file_visible;
        let mut index = offset / PROBE_BLOCK;
        while index * PROBE_BLOCK < end {
            let block_start = index * PROBE_BLOCK;
            let block = match overlay.blocks.entry(index) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let mut block = vec![0u8; PROBE_BLOCK as usize];
                    self.read_file(visible, block_start, &mut block)?;
                    entry.insert(block)
                }
            };
            let from = offset.max(block_start);
            let to = end.min(block_start + PROBE_BLOCK);
            block[(from - block_start) as usize..(to - block_start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            index += 1;
        }
        overlay.len = overlay.len.max(end);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_backend_never_writes_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let original: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let backend = ProbeBackend::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(backend.len().unwrap(), 10_000);

        backend.write(4090, &[0xEE; 10]).unwrap();
        let mut out = vec![0u8; 30];
        backend.read(4080, &mut out).unwrap();
        let mut expected = original[4080..4110].to_vec();
        expected[10..20].fill(0xEE);
        assert_eq!(out, expected);

        // Truncating then growing reads zeros where the file had bytes.
        backend.set_len(5000).unwrap();
        backend.set_len(9000).unwrap();
        let mut out = vec![1u8; 200];
        backend.read(4900, &mut out).unwrap();
        assert_eq!(&out[..100], &original[4900..5000]);
        assert!(out[100..].iter().all(|b| *b == 0));
        // Writing past the end grows it.
        backend.write(12_000, &[7; 4]).unwrap();
        assert_eq!(backend.len().unwrap(), 12_004);
        let mut out = [0u8; 4];
        backend.read(12_000, &mut out).unwrap();
        assert_eq!(out, [7; 4]);
        assert!(backend.read(12_001, &mut out).is_err(), "read past the end");
        backend.sync_data().unwrap();
        backend.close().unwrap();

        assert_eq!(std::fs::read(&path).unwrap(), original);
    }
}
