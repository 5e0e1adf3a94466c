//! Memory-mapped, fixed-entry-size index files (the offset index and the time index).
//!
//! An index file of the active segment is preallocated to `index_max_bytes` and filled through
//! a writable mapping; nothing syncs it, because recovery rebuilds the active segment's indexes
//! from the log. When a segment is sealed its indexes are flushed, trimmed to the entries they
//! hold and fsynced, so a sealed segment's index can be trusted after a crash (it is still
//! sanity-checked on open and rebuilt if anything looks off).
//!
//! Offset index entry (12 bytes, big-endian): `relative_offset u32`, `relative_index u32`,
//! `position u32` — the batch at byte `position` of the log has base offset
//! `segment_base_offset + relative_offset` and Raft index `segment_base_index + relative_index`.
//!
//! Time index entry (12 bytes, big-endian): `max_timestamp i64`, `position u32` — every batch at
//! or before byte `position` has a max timestamp ≤ `max_timestamp`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{Error, Result};

/// Size of one index entry (both kinds).
pub(crate) const ENTRY_LEN: usize = 12;

/// An index file mapped into memory.
#[derive(Debug)]
pub(crate) struct MmapIndex {
    path: PathBuf,
    file: File,
    mmap: Option<MmapMut>,
    entries: usize,
    capacity: usize,
}

impl MmapIndex {
    /// Creates (or truncates) the file, preallocated for `max_bytes`.
    pub fn create(path: &Path, max_bytes: u32) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(Error::io("create index", path))?;
        let mut idx = Self {
            path: path.to_path_buf(),
            file,
            mmap: None,
            entries: 0,
            capacity: 0,
        };
        idx.grow_to(max_bytes)?;
        Ok(idx)
    }

    /// Opens an existing (sealed) index; its size must be a whole number of entries.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(Error::io("open index", path))?;
        let len = file.metadata().map_err(Error::io("stat index", path))?.len();
        if len % ENTRY_LEN as u64 != 0 || len > u64::from(u32::MAX) {
            return Err(Error::corrupt(path, len, "index size is not a whole number of entries"));
        }
        let entries = (len / ENTRY_LEN as u64) as usize;
        let mut idx = Self {
            path: path.to_path_buf(),
            file,
            mmap: None,
            entries,
            capacity: entries,
        };
        idx.map()?;
        Ok(idx)
    }

    fn map(&mut self) -> Result<()> {
        self.mmap = None;
        if self.capacity == 0 {
            return Ok(());
        }
        // SAFETY: the file is owned by this segment and only this process maps or writes it;
        // its length is set to `capacity * ENTRY_LEN` before mapping and never shrunk while
        // mapped (the map is dropped first).
        let mmap = unsafe { MmapMut::map_mut(&self.file) }.map_err(Error::io("mmap index", &self.path))?;
        self.mmap = Some(mmap);
        Ok(())
    }

    /// Makes room for appends again (a sealed index of a segment that becomes active again).
    pub fn grow_to(&mut self, max_bytes: u32) -> Result<()> {
        let capacity = (max_bytes as usize / ENTRY_LEN).max(self.entries);
        self.mmap = None;
        self.file
            .set_len((capacity * ENTRY_LEN) as u64)
            .map_err(Error::io("resize index", &self.path))?;
        self.capacity = capacity;
        self.map()
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    pub fn entry(&self, i: usize) -> &[u8; ENTRY_LEN] {
        assert!(
            i < self.entries,
            "index entry {i} out of {} in {}",
            self.entries,
            self.path.display()
        );
        let m = self.mmap.as_ref().expect("a non-empty index is mapped");
        m[i * ENTRY_LEN..(i + 1) * ENTRY_LEN]
            .try_into()
            .expect("entry-sized slice")
    }

    /// Appends an entry; returns false (and stores nothing) if the index is full.
    pub fn push(&mut self, entry: [u8; ENTRY_LEN]) -> bool {
        if self.is_full() {
            return false;
        }
        let m = self.mmap.as_mut().expect("an index with capacity is mapped");
        m[self.entries * ENTRY_LEN..(self.entries + 1) * ENTRY_LEN].copy_from_slice(&entry);
        self.entries += 1;
        true
    }

    /// Keeps the first `n` entries.
    pub fn truncate(&mut self, n: usize) {
        self.entries = self.entries.min(n);
    }

    /// Flushes, trims the file to its entries and fsyncs it.
    pub fn seal(&mut self) -> Result<()> {
        if let Some(m) = &self.mmap {
            m.flush().map_err(Error::io("msync index", &self.path))?;
        }
        self.mmap = None;
        self.capacity = self.entries;
        self.file
            .set_len((self.entries * ENTRY_LEN) as u64)
            .map_err(Error::io("trim index", &self.path))?;
        self.file.sync_all().map_err(Error::io("fsync index", &self.path))?;
        self.map()
    }

    /// Index of the last entry for which `pred` holds, given that `pred` holds for a prefix of
    /// the entries (binary search).
    pub fn last_where(&self, pred: impl Fn(&[u8; ENTRY_LEN]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

/// An offset-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel_offset: u32,
    pub rel_index: u32,
    pub position: u32,
}

impl OffsetEntry {
    pub fn encode(self) -> [u8; ENTRY_LEN] {
        let mut e = [0u8; ENTRY_LEN];
        e[0..4].copy_from_slice(&self.rel_offset.to_be_bytes());
        e[4..8].copy_from_slice(&self.rel_index.to_be_bytes());
        e[8..12].copy_from_slice(&self.position.to_be_bytes());
        e
    }

    pub fn decode(e: &[u8; ENTRY_LEN]) -> Self {
        Self {
            rel_offset: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            rel_index: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
            position: u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
        }
    }
}

/// A time-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub max_timestamp: i64,
    pub position: u32,
}

impl TimeEntry {
    pub fn encode(self) -> [u8; ENTRY_LEN] {
        let mut e = [0u8; ENTRY_LEN];
        e[0..8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        e[8..12].copy_from_slice(&self.position.to_be_bytes());
        e
    }

    pub fn decode(e: &[u8; ENTRY_LEN]) -> Self {
        Self {
            max_timestamp: i64::from_be_bytes(e[0..8].try_into().expect("8 bytes")),
            position: u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
        }
    }
}
