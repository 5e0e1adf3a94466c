//! One segment of a partition log: a log file of batches plus its offset and time indexes.
//!
//! File names carry the segment's base offset, zero-padded to 20 digits:
//! `00000000000000012345.log`, `.index`, `.timeindex`. Because control batches take no offset,
//! a segment is only rolled once it holds at least one data record, so base offsets — and file
//! names — are unique and increasing.
//!
//! Invariants (checked with `assert!` where cheap):
//! - `size` is the log file's length; batches frame it exactly, back to back.
//! - Batches' base offsets are dense (`base_offset == previous next_offset`), Raft indexes are
//!   consecutive, terms never decrease.
//! - A sealed segment was fsynced (log and indexes) when it was sealed.

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strata_protocol::batch::BROKER_FIELDS_LEN;
use strata_protocol::{BatchHeader, BatchLimits, HEADER_LEN, Offset, RaftIndex, RaftTerm, RecordBatch};

use crate::config::{LogConfig, MAX_SEGMENT_BYTES};
use crate::error::{Error, Result};
use crate::index::{MmapIndex, OffsetEntry, TimeEntry};
use crate::log::LogStart;

/// Suffix of log files.
pub const LOG_SUFFIX: &str = "log";
/// Suffix of offset index files.
pub const INDEX_SUFFIX: &str = "index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// The file name of a segment file with the given base offset and suffix.
pub fn segment_file_name(base_offset: Offset, suffix: &str) -> String {
    format!("{:020}.{suffix}", base_offset.0)
}

/// Parses a segment file name into its base offset and suffix; `None` if it is not one.
pub fn parse_segment_file_name(name: &str) -> Option<(Offset, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((Offset(stem.parse().ok()?), suffix))
}

/// Batch limits for reading our own files back: any batch that fits a segment.
pub(crate) fn disk_limits() -> BatchLimits {
    BatchLimits {
        max_batch_bytes: MAX_SEGMENT_BYTES as usize,
        ..BatchLimits::default()
    }
}

/// Where a scan found the first bad byte, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// The segment's log file.
    pub path: PathBuf,
    /// Byte position of the first bad batch (the new length of the file).
    pub position: u64,
    /// Bytes after that position.
    pub bytes: u64,
    /// What was wrong.
    pub reason: String,
}

/// What the offset index says about a position: the batch starting there has this base offset
/// and Raft index. Only a hint: a damaged entry of a sealed index can pass the checks on open,
/// so a reader compares the batch it finds there with these before trusting it
/// ([`IndexHit::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexHit {
    pub position: u64,
    pub base_offset: Offset,
    pub raft_index: RaftIndex,
}

impl IndexHit {
    /// Checks that `h`, found at `pos`, is the batch expected there — `self` for the first
    /// batch read, then [`IndexHit::after`] the previous one. The prefix CRC vouches for a
    /// header's base offset and Raft index, but not for the index entry that led to it, so a
    /// reader walking from an index entry checks every step.
    pub fn check(&self, path: &Path, pos: u64, h: &BatchHeader) -> Result<()> {
        if h.base_offset != self.base_offset || h.raft_index != self.raft_index {
            return Err(Error::corrupt(
                path,
                pos,
                format!(
                    "batch (offset {}, index {}) where (offset {}, index {}) was expected",
                    h.base_offset, h.raft_index, self.base_offset, self.raft_index
                ),
            ));
        }
        Ok(())
    }

    /// What follows batch `h` found at `pos`.
    pub fn after(pos: u64, h: &BatchHeader) -> Self {
        Self {
            position: pos + h.total_len() as u64,
            base_offset: h.next_offset(),
            raft_index: RaftIndex(h.raft_index.0 + 1),
        }
    }
}

/// The header of the first batch of segment `base` if that batch is whole and passes its CRCs;
/// `None` if the file is empty or the batch is damaged (the scan on open deals with that).
pub(crate) fn first_batch_header(dir: &Path, base: Offset) -> Result<Option<BatchHeader>> {
    let path = dir.join(segment_file_name(base, LOG_SUFFIX));
    let file = open_log(&path, false)?;
    let len = file.metadata().map_err(Error::io("stat", &path))?.len();
    let mut cursor = Cursor {
        file: &file,
        path: &path,
        end: len,
        pos: 0,
        chunk: Bytes::new(),
        chunk_start: 0,
        chunk_size: HEADER_LEN,
        verify_crc: true,
    };
    match cursor.next_batch() {
        Ok(batch) => Ok(batch.map(|(_, h, _)| h)),
        Err(Error::Corruption { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads batches sequentially from a log file in chunks, handing out zero-copy slices.
pub(crate) struct Cursor<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    pos: u64,
    chunk: Bytes,
    chunk_start: u64,
    chunk_size: usize,
    verify_crc: bool,
}

impl<'a> Cursor<'a> {
    /// Position of the next batch.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn fill(&mut self, need: usize) -> Result<()> {
        let len = (self.end - self.pos).min(need.max(self.chunk_size) as u64) as usize;
        let mut buf = BytesMut::zeroed(len);
        self.file
            .read_exact_at(&mut buf, self.pos)
            .map_err(Error::io("read", self.path))?;
        self.chunk = buf.freeze();
        self.chunk_start = self.pos;
        Ok(())
    }

    fn available(&self) -> usize {
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if self.pos < self.chunk_start || self.pos > chunk_end {
            0
        } else {
            (chunk_end - self.pos) as usize
        }
    }

    /// Whether the next batch lies wholly inside the chunk already read (so [`next_batch`]
    /// would not read the file). `false` at the end or if its header is not readable yet.
    ///
    /// [`next_batch`]: Cursor::next_batch
    pub fn next_is_buffered(&self) -> bool {
        if self.pos >= self.end || self.available() < HEADER_LEN {
            return false;
        }
        let off = (self.pos - self.chunk_start) as usize;
        match parse_stored_header(&self.chunk[off..], self.path, self.pos) {
            Ok(h) => (h.total_len() as u64) <= self.available() as u64,
            Err(_) => true, // a damaged header: let next_batch report the corruption
        }
    }

    /// The bytes `[start, end)` of the file if they all lie in the chunk already read.
    pub fn buffered_slice(&self, start: u64, end: u64) -> Option<Bytes> {
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        (start >= self.chunk_start && start <= end && end <= chunk_end).then(|| {
            self.chunk
                .slice((start - self.chunk_start) as usize..(end - self.chunk_start) as usize)
        })
    }

    /// The next batch: its position, header and bytes. `Ok(None)` at the end. A batch whose
    /// header fails [`BatchHeader::verify_stored`] (format version, prefix CRC: always checked,
    /// it is a 28-byte hash), that does not frame, or (with CRC verification on) that fails
    /// [`RecordBatch::verify_stored`] is a [`Error::Corruption`] at its position; the cursor does
    /// not advance past it.
    pub fn next_batch(&mut self) -> Result<Option<(u64, BatchHeader, Bytes)>> {
        let Some((header, total)) = self.peek_header()? else {
            return Ok(None);
        };
        if self.available() < total {
            self.fill(total)?;
        }
        let off = (self.pos - self.chunk_start) as usize;
        let bytes = self.chunk.slice(off..off + total);
        if self.verify_crc {
            RecordBatch::verify_stored(bytes.clone(), &disk_limits())
                .map_err(|e| Error::corrupt(self.path, self.pos, e.to_string()))?;
        }
        let pos = self.pos;
        self.pos += total as u64;
        Ok(Some((pos, header, bytes)))
    }

    /// The next batch's position and header, without reading its records: the bytes come only
    /// for a control batch (small: a Raft configuration change or a no-op). The header is
    /// checked as in [`next_batch`], the records' CRC is not. `Ok(None)` at the end.
    ///
    /// [`next_batch`]: Cursor::next_batch
    pub fn next_header(&mut self) -> Result<Option<(u64, BatchHeader, Option<Bytes>)>> {
        let Some((header, total)) = self.peek_header()? else {
            return Ok(None);
        };
        if header.is_control() {
            return Ok(self.next_batch()?.map(|(pos, h, bytes)| (pos, h, Some(bytes))));
        }
        let pos = self.pos;
        self.pos += total as u64;
        Ok(Some((pos, header, None)))
    }

    /// The header of the batch at the cursor and its whole length, checked to frame inside the
    /// range; the cursor does not move.
    fn peek_header(&mut self) -> Result<Option<(BatchHeader, usize)>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let left = self.end - self.pos;
        if left < HEADER_LEN as u64 {
            return Err(Error::corrupt(
                self.path,
                self.pos,
                format!("{left} trailing bytes, less than a batch header"),
            ));
        }
        if self.available() < HEADER_LEN {
            self.fill(HEADER_LEN)?;
        }
        let off = (self.pos - self.chunk_start) as usize;
        let header = parse_stored_header(&self.chunk[off..], self.path, self.pos)?;
        let total = header.total_len() as u64;
        if total < HEADER_LEN as u64 || total > MAX_SEGMENT_BYTES {
            return Err(Error::corrupt(
                self.path,
                self.pos,
                format!("invalid batch length {total}"),
            ));
        }
        if total > left {
            return Err(Error::corrupt(
                self.path,
                self.pos,
                format!("batch of {total} bytes extends past the end of the file ({left} bytes left)"),
            ));
        }
        Ok(Some((header, total as usize)))
    }
}

/// Parses the header at the start of `buf`, read from `path` at `pos`, and checks what a stored
/// header must satisfy ([`BatchHeader::verify_stored`]): a damaged base offset, length, term or
/// index is a [`Error::Corruption`], never a value.
pub(crate) fn parse_stored_header(buf: &[u8], path: &Path, pos: u64) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf).map_err(|e| Error::corrupt(path, pos, e.to_string()))?;
    header
        .verify_stored()
        .map_err(|e| Error::corrupt(path, pos, e.to_string()))?;
    Ok(header)
}

/// A segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: Offset,
    pub base_index: RaftIndex,
    pub next_offset: Offset,
    pub next_index: RaftIndex,
    /// Term of the last batch, or of the entry before this segment if it is empty.
    pub last_term: RaftTerm,
    /// Term of the entry before this segment's first.
    pub prev_term: RaftTerm,
    pub size: u64,
    /// Largest batch max timestamp, `i64::MIN` if empty.
    pub max_timestamp: i64,
    /// When this segment started taking appends (in this process), ms.
    pub created_ms: i64,
    pub log: Arc<File>,
    pub log_path: PathBuf,
    offset_index: MmapIndex,
    time_index: MmapIndex,
    index_path: PathBuf,
    time_index_path: PathBuf,
    bytes_since_entry: u64,
    last_time_entry_ts: i64,
    pub sealed: bool,
}

fn open_log(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .map_err(Error::io(if create { "create" } else { "open" }, path))
}

impl Segment {
    fn paths(dir: &Path, base: Offset) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(segment_file_name(base, LOG_SUFFIX)),
            dir.join(segment_file_name(base, INDEX_SUFFIX)),
            dir.join(segment_file_name(base, TIME_INDEX_SUFFIX)),
        )
    }

    fn empty(
        log: File,
        paths: (PathBuf, PathBuf, PathBuf),
        start: LogStart,
        offset_index: MmapIndex,
        time_index: MmapIndex,
        now_ms: i64,
    ) -> Self {
        let LogStart {
            offset: base_offset,
            index: base_index,
            prev_term,
        } = start;
        Self {
            base_offset,
            base_index,
            next_offset: base_offset,
            next_index: base_index,
            last_term: prev_term,
            prev_term,
            size: 0,
            max_timestamp: i64::MIN,
            created_ms: now_ms,
            log: Arc::new(log),
            log_path: paths.0,
            offset_index,
            time_index,
            index_path: paths.1,
            time_index_path: paths.2,
            bytes_since_entry: 0,
            last_time_entry_ts: i64::MIN,
            sealed: false,
        }
    }

    /// Creates a new, empty, active segment (truncating any files of that name).
    pub fn create(dir: &Path, start: LogStart, cfg: &LogConfig) -> Result<Self> {
        let paths = Self::paths(dir, start.offset);
        let log = open_log(&paths.0, true)?;
        let oi = MmapIndex::create(&paths.1, cfg.index_max_bytes)?;
        let ti = MmapIndex::create(&paths.2, cfg.index_max_bytes)?;
        Ok(Self::empty(log, paths, start, oi, ti, cfg.clock.now_ms()))
    }

    /// Opens an existing segment. A sealed segment (`trust_sealed`) is opened from its indexes
    /// after sanity checks and a walk of its tail; if the checks fail, or for the active
    /// segment, every batch is scanned and the indexes rebuilt. Returns the first bad batch
    /// found, if any; the caller decides whether to cut it ([`Segment::cut`]) or fail.
    pub fn open(dir: &Path, start: LogStart, cfg: &LogConfig, trust_sealed: bool) -> Result<(Self, Option<TailCut>)> {
        let paths = Self::paths(dir, start.offset);
        let log = open_log(&paths.0, false)?;
        let len = log.metadata().map_err(Error::io("stat", &paths.0))?.len();
        let now = cfg.clock.now_ms();
        if trust_sealed && let (Ok(oi), Ok(ti)) = (MmapIndex::open(&paths.1), MmapIndex::open(&paths.2)) {
            let mut seg = Self::empty(
                log.try_clone().map_err(Error::io("dup", &paths.0))?,
                paths.clone(),
                start,
                oi,
                ti,
                now,
            );
            seg.size = len;
            if seg.check_sealed_indexes().is_ok() && seg.recompute_tail().is_ok() && seg.size == len {
                seg.sealed = true;
                seg.seek_to_end()?;
                return Ok((seg, None));
            }
            tracing::warn!(segment = %paths.0.display(), "index of sealed segment failed its checks; rebuilding from the log");
        }
        let oi = MmapIndex::create(&paths.1, cfg.index_max_bytes)?;
        let ti = MmapIndex::create(&paths.2, cfg.index_max_bytes)?;
        let mut seg = Self::empty(log, paths, start, oi, ti, now);
        let cut = seg.rebuild(len, cfg)?;
        seg.seek_to_end()?;
        Ok((seg, cut))
    }

    /// Appends write at the file cursor: keep it at the end of the valid data.
    fn seek_to_end(&mut self) -> Result<()> {
        (&*self.log)
            .seek(SeekFrom::Start(self.size))
            .map_err(Error::io("seek", &self.log_path))?;
        Ok(())
    }

    /// Checks the sealed indexes' shape: entries strictly increasing, first entry at 0, last
    /// entry inside the file.
    fn check_sealed_indexes(&self) -> std::result::Result<(), String> {
        if self.size == 0 {
            return Err("sealed segment is empty".into());
        }
        let n = self.offset_index.len();
        if n == 0 {
            return Err("offset index is empty".into());
        }
        let first = OffsetEntry::decode(self.offset_index.entry(0));
        if first
            != (OffsetEntry {
                rel_offset: 0,
                rel_index: 0,
                position: 0,
            })
        {
            return Err("first offset index entry is not the segment start".into());
        }
        let mut prev = first;
        for i in 1..n {
            let e = OffsetEntry::decode(self.offset_index.entry(i));
            if e.position <= prev.position || e.rel_index <= prev.rel_index || e.rel_offset < prev.rel_offset {
                return Err(format!("offset index entry {i} out of order"));
            }
            prev = e;
        }
        if u64::from(prev.position) >= self.size {
            return Err("offset index points past the end of the log".into());
        }
        let mut prev_t: Option<TimeEntry> = None;
        for i in 0..self.time_index.len() {
            let t = TimeEntry::decode(self.time_index.entry(i));
            if let Some(p) = prev_t
                && (t.position <= p.position || t.max_timestamp <= p.max_timestamp)
            {
                return Err(format!("time index entry {i} out of order"));
            }
            if t.position > prev.position {
                return Err("time index points past the last offset index entry".into());
            }
            prev_t = Some(t);
        }
        Ok(())
    }

    /// Walks from the last offset-index entry to the end of the log, checking each batch (CRCs,
    /// contiguity) and recomputing `next_offset`, `next_index`, `last_term`, `max_timestamp`.
    /// Used to open sealed segments and after truncation.
    fn recompute_tail(&mut self) -> Result<()> {
        let (start, mut next_offset, mut next_index) = match self.offset_index.len().checked_sub(1) {
            Some(i) => {
                let e = OffsetEntry::decode(self.offset_index.entry(i));
                (
                    u64::from(e.position),
                    Offset(self.base_offset.0 + u64::from(e.rel_offset)),
                    RaftIndex(self.base_index.0 + u64::from(e.rel_index)),
                )
            }
            None => (0, self.base_offset, self.base_index),
        };
        let mut last_term = self.prev_term;
        let mut max_ts = match self.time_index.len().checked_sub(1) {
            Some(i) => TimeEntry::decode(self.time_index.entry(i)).max_timestamp,
            None => i64::MIN,
        };
        let mut cursor = self.cursor_range(start, self.size, 64 << 10, true);
        let mut first = true;
        while let Some((pos, h, _)) = cursor.next_batch()? {
            if h.base_offset != next_offset || h.raft_index != next_index || (!first && h.raft_term < last_term) {
                return Err(Error::corrupt(
                    &self.log_path,
                    pos,
                    format!(
                        "batch header (offset {}, index {}, term {}) does not follow (offset {next_offset}, index {next_index}, term {last_term})",
                        h.base_offset, h.raft_index, h.raft_term
                    ),
                ));
            }
            first = false;
            next_offset = h.next_offset();
            next_index = RaftIndex(h.raft_index.0 + 1);
            last_term = h.raft_term;
            max_ts = max_ts.max(h.max_timestamp);
        }
        self.next_offset = next_offset;
        self.next_index = next_index;
        self.last_term = last_term;
        self.max_timestamp = max_ts;
        self.bytes_since_entry = self.size - start;
        self.last_time_entry_ts = match self.time_index.len().checked_sub(1) {
            Some(i) => TimeEntry::decode(self.time_index.entry(i)).max_timestamp,
            None => i64::MIN,
        };
        Ok(())
    }

    /// Scans the whole log file (`len` bytes), validating every batch and rebuilding the
    /// indexes. Stops at the first bad batch and reports it; the segment then covers the valid
    /// prefix (its `size` is the cut position) but the file is not yet truncated.
    fn rebuild(&mut self, len: u64, cfg: &LogConfig) -> Result<Option<TailCut>> {
        self.size = 0;
        self.offset_index.truncate(0);
        self.time_index.truncate(0);
        let log = self.log.clone();
        let mut cursor = Cursor {
            file: &log,
            path: &self.log_path.clone(),
            end: len,
            pos: 0,
            chunk: Bytes::new(),
            chunk_start: 0,
            chunk_size: 1 << 20,
            verify_crc: true,
        };
        loop {
            let pos = cursor.position();
            match cursor.next_batch() {
                Ok(None) => break,
                Ok(Some((pos, h, _))) => {
                    if h.base_offset != self.next_offset
                        || h.raft_index != self.next_index
                        || h.raft_term < self.last_term
                    {
                        let reason = format!(
                            "batch header (offset {}, index {}, term {}) does not follow (offset {}, index {}, term {})",
                            h.base_offset, h.raft_index, h.raft_term, self.next_offset, self.next_index, self.last_term
                        );
                        return Ok(Some(TailCut {
                            path: self.log_path.clone(),
                            position: pos,
                            bytes: len - pos,
                            reason,
                        }));
                    }
                    self.track(pos, &h, cfg);
                }
                Err(Error::Corruption { reason, .. }) => {
                    return Ok(Some(TailCut {
                        path: self.log_path.clone(),
                        position: pos,
                        bytes: len - pos,
                        reason,
                    }));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Records a batch just written (or scanned) at `pos`: indexes and counters.
    fn track(&mut self, pos: u64, h: &BatchHeader, cfg: &LogConfig) {
        let len = h.total_len() as u64;
        assert_eq!(
            pos,
            self.size,
            "batch position must equal the log size in {}",
            self.log_path.display()
        );
        assert!(
            h.base_offset == self.next_offset && h.raft_index == self.next_index,
            "appended batch (offset {}, index {}) must follow (offset {}, index {}) in {}",
            h.base_offset,
            h.raft_index,
            self.next_offset,
            self.next_index,
            self.log_path.display()
        );
        let running_max = self.max_timestamp.max(h.max_timestamp);
        if self.size == 0 || self.bytes_since_entry >= u64::from(cfg.index_interval_bytes) {
            let entry = OffsetEntry {
                rel_offset: (h.base_offset.0 - self.base_offset.0) as u32,
                rel_index: (h.raft_index.0 - self.base_index.0) as u32,
                position: pos as u32,
            };
            // A full index only makes lookups scan further; correctness does not depend on it.
            if self.offset_index.push(entry.encode()) {
                self.bytes_since_entry = 0;
                if running_max > self.last_time_entry_ts
                    && self.time_index.push(
                        TimeEntry {
                            max_timestamp: running_max,
                            position: pos as u32,
                        }
                        .encode(),
                    )
                {
                    self.last_time_entry_ts = running_max;
                }
            }
        }
        self.bytes_since_entry += len;
        self.size += len;
        self.next_offset = h.next_offset();
        self.next_index = RaftIndex(h.raft_index.0 + 1);
        self.last_term = h.raft_term;
        self.max_timestamp = running_max;
    }

    /// Cuts the log file at `position` (from a [`TailCut`]) and syncs the cut.
    pub fn cut(&mut self, position: u64) -> Result<()> {
        assert_eq!(
            position,
            self.size,
            "cut must be at the end of the valid prefix of {}",
            self.log_path.display()
        );
        self.log
            .set_len(position)
            .map_err(Error::io("truncate", &self.log_path))?;
        self.log.sync_all().map_err(Error::io("fsync", &self.log_path))?;
        (&*self.log)
            .seek(SeekFrom::Start(position))
            .map_err(Error::io("seek", &self.log_path))?;
        Ok(())
    }

    /// Whether the segment holds at least one data record (only then may it be rolled: the
    /// next segment's base offset must differ).
    pub fn has_records(&self) -> bool {
        self.next_offset > self.base_offset
    }

    /// Whether appending a batch of `len` bytes with `records` records should roll first.
    pub fn should_roll(&self, len: u64, records: u32, index: RaftIndex, cfg: &LogConfig) -> bool {
        if !self.has_records() {
            return false;
        }
        let rel_offset_end = self.next_offset.0 + u64::from(records) - self.base_offset.0;
        let rel_index = index.0 - self.base_index.0;
        self.size + len > cfg.segment_bytes
            || cfg.segment_age.is_some_and(|age| {
                cfg.clock.now_ms().saturating_sub(self.created_ms) >= i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
            })
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || rel_offset_end > u64::from(u32::MAX)
            || rel_index > u64::from(u32::MAX)
    }

    /// Appends `batch` with the broker-owned header fields set to `base_offset`, `term` and
    /// `index` and their prefix CRC (written in place of the batch's own first
    /// [`BROKER_FIELDS_LEN`] bytes, which the batch CRC does not cover). Returns the batch's
    /// position. On a write error the file is cut back to its previous length; if even that
    /// fails the error comes with `fatal = true`.
    pub fn append(
        &mut self,
        batch: &RecordBatch,
        base_offset: Offset,
        term: RaftTerm,
        index: RaftIndex,
        cfg: &LogConfig,
    ) -> std::result::Result<u64, (Error, bool)> {
        let bytes = batch.as_bytes();
        let len = bytes.len() as u64;
        if self.size + len > MAX_SEGMENT_BYTES {
            return Err((
                Error::BatchTooLarge {
                    size: len,
                    max: MAX_SEGMENT_BYTES - self.size,
                },
                false,
            ));
        }
        let mut header = *batch.header();
        header.base_offset = base_offset;
        header.raft_term = term;
        header.raft_index = index;
        header.prefix_crc = header.computed_prefix_crc();
        let prefix = BatchHeader::broker_fields(header.batch_length, base_offset, term, index);
        let pos = self.size;
        let mut bufs = [IoSlice::new(&prefix), IoSlice::new(&bytes[BROKER_FIELDS_LEN..])];
        let mut slices: &mut [IoSlice<'_>] = &mut bufs;
        let mut file = &*self.log;
        while !slices.is_empty() {
            match file.write_vectored(slices) {
                Ok(0) => {
                    let e = std::io::Error::new(std::io::ErrorKind::WriteZero, "write returned 0");
                    return Err(self.undo_write(pos, e));
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.undo_write(pos, e)),
            }
        }
        self.track(pos, &header, cfg);
        Ok(pos)
    }

    fn undo_write(&mut self, pos: u64, e: std::io::Error) -> (Error, bool) {
        let err = Error::io("write", &self.log_path)(e);
        let undone = self
            .log
            .set_len(pos)
            .and_then(|_| (&*self.log).seek(SeekFrom::Start(pos)).map(|_| ()));
        (err, undone.is_err())
    }

    /// Fsyncs the log and seals the indexes. After this the segment takes no appends.
    pub fn seal(&mut self) -> Result<()> {
        self.log.sync_data().map_err(Error::io("fdatasync", &self.log_path))?;
        self.offset_index.seal()?;
        self.time_index.seal()?;
        self.sealed = true;
        Ok(())
    }

    /// Makes a sealed segment active again (after a truncation removed the segments after it).
    pub fn unseal(&mut self, cfg: &LogConfig) -> Result<()> {
        if self.sealed {
            self.offset_index.grow_to(cfg.index_max_bytes)?;
            self.time_index.grow_to(cfg.index_max_bytes)?;
            self.sealed = false;
            self.created_ms = cfg.clock.now_ms();
        }
        Ok(())
    }

    /// A cursor over `[start, end)` of the log.
    pub fn cursor_range(&self, start: u64, end: u64, chunk_size: usize, verify_crc: bool) -> Cursor<'_> {
        Cursor {
            file: &self.log,
            path: &self.log_path,
            end: end.min(self.size),
            pos: start,
            chunk: Bytes::new(),
            chunk_start: 0,
            chunk_size,
            verify_crc,
        }
    }

    /// The batch the offset index names at or before the one holding `offset`.
    pub fn index_for_offset(&self, offset: Offset) -> IndexHit {
        let rel = offset.0.saturating_sub(self.base_offset.0);
        self.index_hit(
            self.offset_index
                .last_where(|e| u64::from(OffsetEntry::decode(e).rel_offset) <= rel),
        )
    }

    /// The batch the offset index names at or before the one with Raft index `index`.
    pub fn index_for_raft_index(&self, index: RaftIndex) -> IndexHit {
        let rel = index.0.saturating_sub(self.base_index.0);
        self.index_hit(
            self.offset_index
                .last_where(|e| u64::from(OffsetEntry::decode(e).rel_index) <= rel),
        )
    }

    /// The batch the offset index names at or before byte `position`.
    pub fn index_for_position(&self, position: u64) -> IndexHit {
        self.index_hit(
            self.offset_index
                .last_where(|e| u64::from(OffsetEntry::decode(e).position) <= position),
        )
    }

    fn index_hit(&self, entry: Option<usize>) -> IndexHit {
        match entry {
            Some(i) => {
                let e = OffsetEntry::decode(self.offset_index.entry(i));
                IndexHit {
                    position: u64::from(e.position),
                    base_offset: Offset(self.base_offset.0 + u64::from(e.rel_offset)),
                    raft_index: RaftIndex(self.base_index.0 + u64::from(e.rel_index)),
                }
            }
            None => IndexHit {
                position: 0,
                base_offset: self.base_offset,
                raft_index: self.base_index,
            },
        }
    }

    /// Position from which to scan for the first batch with max timestamp ≥ `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        self.time_index
            .last_where(|e| TimeEntry::decode(e).max_timestamp < ts)
            .map_or(0, |i| u64::from(TimeEntry::decode(self.time_index.entry(i)).position))
    }

    /// The position and header of the batch with Raft index `index`, which must lie in this
    /// segment: reads headers only, walking from the index entry at or before it and checking
    /// each header's prefix CRC and each step against the index.
    ///
    /// # Errors
    /// [`Error::Corruption`] if a header on the way is damaged or the batch is not where the
    /// index and the headers say.
    pub fn find_raft_index(&self, index: RaftIndex) -> Result<(u64, BatchHeader)> {
        let mut expect = self.index_for_raft_index(index);
        let mut buf = [0u8; HEADER_LEN];
        while expect.position + HEADER_LEN as u64 <= self.size {
            let pos = expect.position;
            self.log
                .read_exact_at(&mut buf, pos)
                .map_err(Error::io("read", &self.log_path))?;
            let h = parse_stored_header(&buf, &self.log_path, pos)?;
            expect.check(&self.log_path, pos, &h)?;
            if h.raft_index == index {
                return Ok((pos, h));
            }
            if h.raft_index > index || h.total_len() < HEADER_LEN {
                break;
            }
            expect = IndexHit::after(pos, &h);
        }
        Err(Error::corrupt(
            &self.log_path,
            expect.position,
            format!("raft index {index} not found in its segment"),
        ))
    }

    /// Truncates the segment so it ends just before the batch at `position`, which must be a
    /// batch boundary, and recomputes its counters from the remaining tail.
    pub fn truncate_to_position(&mut self, position: u64) -> Result<()> {
        assert!(
            position <= self.size,
            "truncate past the end of {}",
            self.log_path.display()
        );
        self.log
            .set_len(position)
            .map_err(Error::io("truncate", &self.log_path))?;
        (&*self.log)
            .seek(SeekFrom::Start(position))
            .map_err(Error::io("seek", &self.log_path))?;
        self.size = position;
        let keep = self
            .offset_index
            .last_where(|e| u64::from(OffsetEntry::decode(e).position) < position)
            .map_or(0, |i| i + 1);
        self.offset_index.truncate(keep);
        let keep_t = self
            .time_index
            .last_where(|e| u64::from(TimeEntry::decode(e).position) < position)
            .map_or(0, |i| i + 1);
        self.time_index.truncate(keep_t);
        self.recompute_tail()
    }

    /// Deletes the segment's files.
    pub fn delete(self) -> Result<()> {
        let Segment {
            log_path,
            index_path,
            time_index_path,
            offset_index,
            time_index,
            log,
            ..
        } = self;
        drop((offset_index, time_index, log));
        for p in [&index_path, &time_index_path, &log_path] {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", p.clone())(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = segment_file_name(Offset(12345), LOG_SUFFIX);
        assert_eq!(n, "00000000000000012345.log");
        assert_eq!(parse_segment_file_name(&n), Some((Offset(12345), "log")));
        assert_eq!(parse_segment_file_name("0000000000000001234.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000001234x.log"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.log"), None);
        assert_eq!(parse_segment_file_name("log-start"), None);
    }
}
