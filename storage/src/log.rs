//! The partition log: an ordered list of segments that is at once the partition's record log
//! and its Raft log.
//!
//! Every batch is one Raft entry. Appends take the Raft term and index from the caller and get
//! their base offset from the log (dense over data records). Reads go by record offset
//! ([`PartitionLog::read`]) or by Raft index ([`PartitionLog::entries`]).
//!
//! # Blocking
//!
//! Every method does file I/O and may block: call them from a dedicated log thread or
//! `spawn_blocking`, never from an async worker. Syncing is split so that many appends share one
//! fsync (group commit) and the fsync itself can run on another thread while appends continue:
//! [`PartitionLog::begin_sync`] captures what is to be synced, [`SyncJob::run`] does the fsync
//! anywhere, [`PartitionLog::complete_sync`] advances [`PartitionLog::durable_index`].
//!
//! # Crash safety
//!
//! - Sealed segments are fsynced (log, indexes, directory) when they are sealed, so after a crash
//!   only the active segment can have a torn tail; recovery rescans it fully and rebuilds its
//!   indexes.
//! - The log start lives in a small `log-start` file written with
//!   [`crate::durable::write_atomic`] *before* segments below it are deleted.
//! - Truncation deletes segments newest-first and fsyncs the directory before returning, so a
//!   crash never leaves a gap.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strata_protocol::{BatchHeader, HEADER_LEN, Offset, RaftIndex, RaftTerm, RecordBatch};

use crate::config::{FlushPolicy, LogConfig, RecoveryMode, Retention};
use crate::durable;
use crate::error::{Error, Result};
use crate::segment::{
    INDEX_SUFFIX, IndexHit, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, TailCut, parse_segment_file_name,
};

/// Name of the file holding the log start.
pub const LOG_START_FILE: &str = "log-start";

/// Where the log begins: the first record offset and Raft index still present, and the term of
/// the entry just before (what Raft calls the snapshot's term).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStart {
    /// First offset.
    pub offset: Offset,
    /// First Raft index.
    pub index: RaftIndex,
    /// Term of entry `index - 1` (0 for a log starting at index 1).
    pub prev_term: RaftTerm,
}

impl Default for LogStart {
    fn default() -> Self {
        Self {
            offset: Offset(0),
            index: RaftIndex(1),
            prev_term: RaftTerm(0),
        }
    }
}

const LOG_START_LEN: usize = 25;
const RESET_PENDING: u8 = 1;

impl LogStart {
    fn encode(&self, reset_pending: bool) -> [u8; LOG_START_LEN] {
        let mut b = [0u8; LOG_START_LEN];
        b[0..8].copy_from_slice(&self.offset.0.to_be_bytes());
        b[8..16].copy_from_slice(&self.index.0.to_be_bytes());
        b[16..24].copy_from_slice(&self.prev_term.0.to_be_bytes());
        b[24] = if reset_pending { RESET_PENDING } else { 0 };
        b
    }

    fn decode(b: &[u8], path: &Path) -> Result<(Self, bool)> {
        if b.len() != LOG_START_LEN || b[24] & !RESET_PENDING != 0 {
            return Err(Error::corrupt(path, 0, "log-start file has the wrong shape"));
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(b[r].try_into().expect("8 bytes"));
        let start = Self {
            offset: Offset(u(0..8)),
            index: RaftIndex(u(8..16)),
            prev_term: RaftTerm(u(16..24)),
        };
        if start.index.0 == 0 {
            return Err(Error::corrupt(path, 8, "log start index 0"));
        }
        Ok((start, b[24] == RESET_PENDING))
    }
}

/// What [`PartitionLog::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Bytes cut from damaged tails (one entry per segment cut).
    pub cuts: Vec<TailCut>,
    /// Segment files removed: leftovers below the log start, or segments after a salvage cut.
    pub removed_segments: Vec<PathBuf>,
    /// Sealed segments whose indexes failed their checks and were rebuilt.
    pub rebuilt_indexes: usize,
    /// Whether an interrupted [`PartitionLog::reset`] was completed.
    pub finished_reset: bool,
}

/// Where an appended batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the batch's first record (for a control batch, the next data offset).
    pub base_offset: Offset,
    /// Offset the next record will get.
    pub next_offset: Offset,
    /// The batch's Raft index.
    pub index: RaftIndex,
    /// Whether the log rolled to a new segment first.
    pub rolled: bool,
}

/// Raw bytes of whole batches read by offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, back to back, exactly as stored. May include control batches, which
    /// consumers skip.
    pub bytes: Bytes,
    /// Number of batches in `bytes`.
    pub batches: usize,
    /// The offset after the last record returned (the requested offset if none).
    pub next_offset: Offset,
}

/// One stored batch read by Raft index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Its header (with the offset, term and index assigned at append).
    pub header: BatchHeader,
    /// Its bytes.
    pub bytes: Bytes,
}

/// What retention removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes freed.
    pub bytes_deleted: u64,
    /// The log start afterwards.
    pub log_start: Option<LogStart>,
}

/// Fsync work captured by [`PartitionLog::begin_sync`], to run on any thread.
#[derive(Debug)]
pub struct SyncJob {
    file: Arc<fs::File>,
    path: PathBuf,
    dir: Option<PathBuf>,
    target: RaftIndex,
    generation: u64,
    dir_seq: u64,
    started_ms: i64,
}

/// A finished [`SyncJob`], to hand back to [`PartitionLog::complete_sync`].
#[derive(Debug, Clone, Copy)]
pub struct SyncDone {
    target: RaftIndex,
    generation: u64,
    dir_seq: Option<u64>,
    started_ms: i64,
}

impl SyncJob {
    /// The Raft index this job makes durable (every entry below it).
    pub fn target(&self) -> RaftIndex {
        self.target
    }

    /// Runs the fdatasync (and directory fsync if new segment files were created). Blocking.
    ///
    /// # Errors
    /// [`Error::Io`]. After a failed fsync the page cache state is unknown; passing the error to
    /// [`PartitionLog::complete_sync`] fails the log.
    pub fn run(self) -> Result<SyncDone> {
        self.file.sync_data().map_err(Error::io("fdatasync", &self.path))?;
        if let Some(dir) = &self.dir {
            durable::sync_dir(dir)?;
        }
        Ok(SyncDone {
            target: self.target,
            generation: self.generation,
            dir_seq: self.dir.map(|_| self.dir_seq),
            started_ms: self.started_ms,
        })
    }
}

/// A partition's log. See the module docs.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    cfg: LogConfig,
    /// Never empty; the last segment is the active one.
    segments: Vec<Segment>,
    log_start: LogStart,
    /// Every entry below this index is durable.
    durable_index: RaftIndex,
    /// Bumped by truncation and reset, so a sync captured before cannot claim replaced entries.
    generation: u64,
    /// New files exist whose directory entries are not yet synced.
    dir_dirty: bool,
    dir_seq: u64,
    /// When the oldest unsynced append happened.
    unsynced_since_ms: Option<i64>,
    failed: Option<String>,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, running recovery: leftovers of interrupted
    /// retention or reset are removed, sealed segments are checked, the active segment is
    /// rescanned batch by batch, and a torn or corrupt tail is cut as `cfg.recovery` allows.
    /// Finally the active segment is fsynced, so everything present is durable.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`]; [`Error::Io`]; [`Error::Corruption`] for damage the recovery
    /// mode does not allow cutting.
    pub fn open(dir: impl AsRef<Path>, cfg: LogConfig) -> Result<(Self, RecoveryReport)> {
        cfg.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(Error::io("create dir", &dir))?;
        let start_path = dir.join(LOG_START_FILE);
        durable::remove_stale_tmp(&start_path);
        let (log_start, reset_pending) = match durable::read(&start_path)? {
            Some(b) => LogStart::decode(&b, &start_path)?,
            None => (LogStart::default(), false),
        };
        let mut report = RecoveryReport::default();

        // Collect segment files; remove indexes whose log is gone.
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("read dir", &dir))? {
            let entry = entry.map_err(Error::io("read dir", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match parse_segment_file_name(name) {
                Some((base, LOG_SUFFIX)) => bases.push(base),
                Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX)) => index_files.push((base, entry.path())),
                _ => {}
            }
        }
        bases.sort();
        let mut dir_changed = false;
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                fs::remove_file(&path).map_err(Error::io("remove", &path))?;
                dir_changed = true;
            }
        }

        let mut log = Self {
            dir: dir.clone(),
            cfg,
            segments: Vec::new(),
            log_start,
            durable_index: log_start.index,
            generation: 0,
            dir_dirty: false,
            dir_seq: 0,
            unsynced_since_ms: None,
            failed: None,
        };

        if reset_pending {
            for base in bases.iter().rev() {
                log.remove_segment_files(*base, &mut report)?;
            }
            bases.clear();
            report.finished_reset = true;
            dir_changed = true;
        }

        // Leftovers of interrupted retention lie wholly below the log start.
        let mut keep_from = 0;
        while keep_from < bases.len() && bases[keep_from] < log_start.offset {
            let wholly_below = bases.get(keep_from + 1).is_some_and(|next| *next <= log_start.offset);
            if !wholly_below {
                return Err(Error::corrupt(
                    dir.join(crate::segment::segment_file_name(bases[keep_from], LOG_SUFFIX)),
                    0,
                    format!("segment straddles the log start offset {}", log_start.offset),
                ));
            }
            log.remove_segment_files(bases[keep_from], &mut report)?;
            dir_changed = true;
            keep_from += 1;
        }
        let bases = &bases[keep_from..];
        if let Some(first) = bases.first()
            && *first != log_start.offset
        {
            return Err(Error::corrupt(
                dir.join(crate::segment::segment_file_name(*first, LOG_SUFFIX)),
                0,
                format!(
                    "first segment does not begin at the log start offset {}",
                    log_start.offset
                ),
            ));
        }

        // Open segments in order, chaining offsets, indexes and terms.
        let mut next = (log_start.offset, log_start.index, log_start.prev_term);
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let is_last = i + 1 == bases.len();
            let gap = if base != next.0 {
                Some(format!(
                    "segment base offset {base} does not follow the previous segment's end {}",
                    next.0
                ))
            } else {
                // Control batches take no offset, so a segment that lost trailing control batches
                // still ends at this base offset: only the Raft index (or a term going down) shows
                // the gap. Unchecked, this segment's first batch would be cut as a damaged tail,
                // with everything after it. A first batch that is itself damaged (its CRCs fail)
                // proves nothing about the gap; the scan of this segment deals with it.
                match crate::segment::first_batch_header(&dir, base)? {
                    Some(h) if h.base_offset == base && (h.raft_index != next.1 || h.raft_term < next.2) => {
                        Some(format!(
                            "segment's first entry (index {}, term {}) does not follow the previous segment's end (index {}, term {})",
                            h.raft_index, h.raft_term, next.1, next.2
                        ))
                    }
                    _ => None,
                }
            };
            if let Some(reason) = gap {
                let path = dir.join(crate::segment::segment_file_name(base, LOG_SUFFIX));
                if log.cfg.recovery != RecoveryMode::Salvage {
                    return Err(Error::corrupt(path, 0, reason));
                }
                tracing::warn!(segment = %path.display(), %reason, "removing this and later segments");
                for b in bases[i..].iter().rev() {
                    log.remove_segment_files(*b, &mut report)?;
                }
                dir_changed = true;
                break;
            }
            let (mut seg, cut) = Segment::open(
                &dir,
                LogStart {
                    offset: base,
                    index: next.1,
                    prev_term: next.2,
                },
                &log.cfg,
                !is_last,
            )?;
            if !is_last && !seg.sealed {
                report.rebuilt_indexes += 1;
            }
            let mut salvaged = false;
            if let Some(cut) = cut {
                let allowed = match log.cfg.recovery {
                    RecoveryMode::Strict => false,
                    RecoveryMode::TolerateTornTail => is_last,
                    RecoveryMode::Salvage => true,
                };
                if !allowed {
                    return Err(Error::corrupt(&cut.path, cut.position, cut.reason));
                }
                tracing::warn!(segment = %cut.path.display(), position = cut.position, bytes = cut.bytes, reason = %cut.reason, "cutting damaged log tail");
                seg.cut(cut.position)?;
                report.cuts.push(cut);
                if !is_last {
                    for b in bases[i + 1..].iter().rev() {
                        log.remove_segment_files(*b, &mut report)?;
                    }
                    dir_changed = true;
                    salvaged = true;
                }
            }
            if !is_last && !salvaged && !seg.has_records() {
                if log.cfg.recovery != RecoveryMode::Salvage {
                    return Err(Error::corrupt(&seg.log_path, 0, "sealed segment holds no records"));
                }
                // Damage left no records (e.g. the file was emptied): the log ends here.
                tracing::warn!(segment = %seg.log_path.display(), "sealed segment holds no records; removing later segments");
                for b in bases[i + 1..].iter().rev() {
                    log.remove_segment_files(*b, &mut report)?;
                }
                dir_changed = true;
                salvaged = true;
            }
            if !is_last && !salvaged && !seg.sealed {
                // Rebuilt sealed segment: trim and sync its new indexes.
                seg.seal()?;
            }
            next = (seg.next_offset, seg.next_index, seg.last_term);
            log.segments.push(seg);
            if salvaged {
                break;
            }
            i += 1;
        }
        if log.segments.is_empty() {
            let seg = Segment::create(&dir, log_start, &log.cfg)?;
            log.segments.push(seg);
            dir_changed = true;
        }
        if report.finished_reset {
            durable::write_atomic(&start_path, &log_start.encode(false))?;
        }
        // Whatever survived recovery is now made durable, so durable_index can start at the end.
        let active = log.active();
        active
            .log
            .sync_data()
            .map_err(Error::io("fdatasync", &active.log_path))?;
        if dir_changed {
            durable::sync_dir(&dir)?;
        }
        log.durable_index = log.next_index();
        report.segments = log.segments.len();
        Ok((log, report))
    }

    fn remove_segment_files(&self, base: Offset, report: &mut RecoveryReport) -> Result<()> {
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
            let p = self.dir.join(crate::segment::segment_file_name(base, suffix));
            match fs::remove_file(&p) {
                Ok(()) => {
                    if suffix == LOG_SUFFIX {
                        report.removed_segments.push(p);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", p)(e)),
            }
        }
        Ok(())
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has an active segment")
    }

    fn check_failed(&self) -> Result<()> {
        match &self.failed {
            Some(reason) => Err(Error::Failed {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        tracing::error!(dir = %self.dir.display(), error = %e, "partition log failed; it must be reopened");
        self.failed = Some(e.to_string());
        e
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    /// Where the log starts.
    pub fn log_start(&self) -> LogStart {
        self.log_start
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> Offset {
        self.log_start.offset
    }

    /// The log end offset: the offset the next record will get.
    pub fn next_offset(&self) -> Offset {
        self.active().next_offset
    }

    /// First Raft index in the log.
    pub fn first_index(&self) -> RaftIndex {
        self.log_start.index
    }

    /// The Raft index the next append must carry.
    pub fn next_index(&self) -> RaftIndex {
        self.active().next_index
    }

    /// Last Raft index in the log (`first_index - 1` when empty).
    pub fn last_index(&self) -> RaftIndex {
        RaftIndex(self.next_index().0 - 1)
    }

    /// Term of the last entry (the log start's `prev_term` when empty).
    pub fn last_term(&self) -> RaftTerm {
        self.active().last_term
    }

    /// Every entry below this Raft index is durable.
    pub fn durable_index(&self) -> RaftIndex {
        self.durable_index
    }

    /// Total bytes of all segment log files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }

    /// Whether an earlier I/O error failed the log.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Appends a validated batch as the Raft entry (`term`, `index`). The log assigns its base
    /// offset. Nothing is synced here (except a segment being sealed by a roll); see
    /// [`PartitionLog::sync_due`] and [`PartitionLog::begin_sync`].
    ///
    /// # Errors
    /// [`Error::NonContiguous`] unless `index == next_index()`; [`Error::TermRegression`] if
    /// `term < last_term()`; [`Error::BatchTooLarge`]; [`Error::Io`] (the write is undone; if
    /// it cannot be, the log fails); [`Error::Failed`].
    pub fn append(&mut self, batch: &RecordBatch, term: RaftTerm, index: RaftIndex) -> Result<AppendInfo> {
        self.check_failed()?;
        let expected = self.next_index();
        if index != expected {
            return Err(Error::NonContiguous { expected, got: index });
        }
        if term < self.last_term() {
            return Err(Error::TermRegression {
                last: self.last_term(),
                got: term,
            });
        }
        let h = batch.header();
        let rolled = self
            .active()
            .should_roll(batch.len() as u64, h.record_count, index, &self.cfg)
            && self.roll()?;
        let base_offset = self.next_offset();
        let active = self.segments.last_mut().expect("a log always has an active segment");
        match active.append(batch, base_offset, term, index, &self.cfg) {
            Ok(_) => {}
            Err((e, fatal)) => return Err(if fatal { self.fail(e) } else { e }),
        }
        if self.unsynced_since_ms.is_none() {
            self.unsynced_since_ms = Some(self.cfg.clock.now_ms());
        }
        Ok(AppendInfo {
            base_offset,
            next_offset: self.next_offset(),
            index,
            rolled,
        })
    }

    /// Seals the active segment (fsyncing it) and starts a new one. Does nothing, returning
    /// false, if the active segment holds no data record yet.
    ///
    /// # Errors
    /// [`Error::Io`]; a failed fsync fails the log.
    pub fn roll(&mut self) -> Result<bool> {
        self.check_failed()?;
        if !self.active().has_records() {
            return Ok(false);
        }
        if let Err(e) = self.active_mut().seal() {
            return Err(self.fail(e));
        }
        if self.dir_dirty {
            // The sealed segment's own directory entry must be durable too.
            durable::sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        let a = self.active();
        let (off, idx, term) = (a.next_offset, a.next_index, a.last_term);
        // Sealing synced this segment, and every earlier one was synced when it was sealed.
        self.durable_index = self.durable_index.max(idx);
        tracing::info!(dir = %self.dir.display(), base_offset = %off, "rolling to a new segment");
        let seg = Segment::create(
            &self.dir,
            LogStart {
                offset: off,
                index: idx,
                prev_term: term,
            },
            &self.cfg,
        )?;
        self.segments.push(seg);
        self.dir_dirty = true;
        self.dir_seq += 1;
        Ok(true)
    }

    /// Whether the flush policy wants a sync now.
    pub fn sync_due(&self) -> bool {
        if !self.has_unsynced() {
            return false;
        }
        match self.cfg.flush {
            FlushPolicy::Always => true,
            FlushPolicy::Never => false,
            FlushPolicy::Interval(d) => {
                let since = self.unsynced_since_ms.unwrap_or(i64::MAX);
                self.cfg.clock.now_ms().saturating_sub(since) >= i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            }
        }
    }

    /// Whether anything appended (or any new file) is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        self.durable_index < self.next_index() || self.dir_dirty
    }

    /// Captures the fsync needed to make everything appended so far durable, or `None` if it
    /// already is. Appends may continue while the job runs; they are covered by the next one.
    pub fn begin_sync(&mut self) -> Option<SyncJob> {
        if self.failed.is_some() || !self.has_unsynced() {
            return None;
        }
        let a = self.active();
        Some(SyncJob {
            file: a.log.clone(),
            path: a.log_path.clone(),
            dir: self.dir_dirty.then(|| self.dir.clone()),
            target: a.next_index,
            generation: self.generation,
            dir_seq: self.dir_seq,
            started_ms: self.cfg.clock.now_ms(),
        })
    }

    /// Records the outcome of a [`SyncJob`] and returns the new durable index.
    ///
    /// # Errors
    /// The job's error. A failed fsync fails the log: the kernel may have dropped the dirty
    /// pages, so nothing since the last good sync can be trusted until recovery runs.
    pub fn complete_sync(&mut self, done: Result<SyncDone>) -> Result<RaftIndex> {
        let done = match done {
            Ok(d) => d,
            Err(e) => return Err(self.fail(e)),
        };
        if done.generation == self.generation {
            self.durable_index = self.durable_index.max(done.target);
        }
        if done.dir_seq == Some(self.dir_seq) {
            self.dir_dirty = false;
        }
        self.unsynced_since_ms = self.has_unsynced().then_some(done.started_ms);
        Ok(self.durable_index)
    }

    /// Syncs everything appended so far, on the calling thread.
    ///
    /// # Errors
    /// As [`SyncJob::run`] and [`PartitionLog::complete_sync`].
    pub fn sync(&mut self) -> Result<RaftIndex> {
        self.check_failed()?;
        match self.begin_sync() {
            Some(job) => {
                let r = job.run();
                self.complete_sync(r)
            }
            None => Ok(self.durable_index),
        }
    }

    /// Syncs and closes the log.
    ///
    /// # Errors
    /// As [`PartitionLog::sync`].
    pub fn close(mut self) -> Result<()> {
        self.sync().map(|_| ())
    }

    fn segment_for_offset(&self, offset: Offset) -> &Segment {
        let i = self.segments.partition_point(|s| s.base_offset <= offset);
        &self.segments[i.saturating_sub(1)]
    }

    fn segment_index_for_raft_index(&self, index: RaftIndex) -> usize {
        let i = self.segments.partition_point(|s| s.base_index <= index);
        i.saturating_sub(1)
    }

    /// Reads whole batches starting with the one holding `offset`, up to `max_bytes` (the first
    /// batch is returned whole even if larger, so a reader always makes progress), never
    /// returning a record at or above `upper` (the high watermark). Reads stay within one
    /// segment. CRCs are verified if configured.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] unless `log_start_offset() <= offset <= next_offset()`;
    /// [`Error::Corruption`]; [`Error::Io`].
    pub fn read(&self, offset: Offset, max_bytes: usize, upper: Offset) -> Result<ReadResult> {
        if offset < self.log_start.offset || offset > self.next_offset() {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: self.log_start.offset,
                log_end: self.next_offset(),
            });
        }
        let upper = upper.min(self.next_offset());
        let empty = ReadResult {
            bytes: Bytes::new(),
            batches: 0,
            next_offset: offset,
        };
        if offset >= upper {
            return Ok(empty);
        }
        let seg = self.segment_for_offset(offset);
        let mut expect = seg.index_for_offset(offset);
        let chunk = max_bytes
            .saturating_add(self.cfg.index_interval_bytes as usize + HEADER_LEN)
            .clamp(64 << 10, 16 << 20);
        let mut cursor = seg.cursor_range(expect.position, seg.size, chunk, self.cfg.verify_crc_on_read);
        let mut parts: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut next_offset = offset;
        let mut span: Option<(u64, u64)> = None;
        loop {
            // Past the first batch, never read the file again just to find out that the next
            // batch would not fit: the chunk was sized to cover `max_bytes` already.
            if !parts.is_empty() && !cursor.next_is_buffered() {
                break;
            }
            let Some((pos, h, bytes)) = cursor.next_batch()? else {
                break;
            };
            expect.check(&seg.log_path, pos, &h)?;
            expect = IndexHit::after(pos, &h);
            if h.next_offset() <= offset {
                continue;
            }
            let beyond = if h.is_control() {
                h.base_offset >= upper
            } else {
                h.next_offset() > upper
            };
            if beyond || (!parts.is_empty() && total + bytes.len() > max_bytes) {
                break;
            }
            total += bytes.len();
            next_offset = next_offset.max(h.next_offset());
            let end = pos + bytes.len() as u64;
            span = Some(span.map_or((pos, end), |(start, _)| (start, end)));
            parts.push(bytes);
        }
        let batches = parts.len();
        // Consecutive batches from one chunk go out as one slice of it, without a copy.
        let contiguous = span.and_then(|(start, end)| cursor.buffered_slice(start, end));
        let bytes = match (parts.len(), contiguous) {
            (0, _) => return Ok(empty),
            (1, _) => parts.pop().expect("one part"),
            (_, Some(b)) if b.len() == total => b,
            _ => {
                let mut out = BytesMut::with_capacity(total);
                for p in &parts {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        };
        Ok(ReadResult {
            bytes,
            batches,
            next_offset,
        })
    }

    /// Reads the Raft entries `[lo, hi)`, stopping early once `max_bytes` is reached (at least
    /// one entry is always returned). Crosses segments.
    ///
    /// # Errors
    /// [`Error::Compacted`] if `lo < first_index()`; [`Error::Unavailable`] if
    /// `hi > next_index()`; [`Error::Corruption`]; [`Error::Io`].
    pub fn entries(&self, lo: RaftIndex, hi: RaftIndex, max_bytes: usize) -> Result<Vec<StoredBatch>> {
        self.walk_entries(lo, hi, max_bytes, false)
    }

    /// The entries `[lo, hi)` as [`entries`] finds them, but without their records: a data
    /// batch comes with empty `bytes` (nothing past its header is read or checked), a control
    /// batch whole. For a caller that needs each entry's index, term and kind, not its data
    /// (Raft handing committed entries to apply): reading megabytes back only to skip them is
    /// most of that cost. `max_bytes` counts the batches' full sizes, as [`entries`] does.
    ///
    /// [`entries`]: Log::entries
    ///
    /// # Errors
    /// As [`entries`].
    pub fn entry_headers(&self, lo: RaftIndex, hi: RaftIndex, max_bytes: usize) -> Result<Vec<StoredBatch>> {
        self.walk_entries(lo, hi, max_bytes, true)
    }

    fn walk_entries(
        &self,
        lo: RaftIndex,
        hi: RaftIndex,
        max_bytes: usize,
        headers_only: bool,
    ) -> Result<Vec<StoredBatch>> {
        if lo < self.first_index() {
            return Err(Error::Compacted {
                index: lo,
                first_index: self.first_index(),
            });
        }
        if hi > self.next_index() {
            return Err(Error::Unavailable {
                index: RaftIndex(hi.0 - 1),
                last_index: self.last_index(),
            });
        }
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut want = lo;
        while want < hi {
            let seg = &self.segments[self.segment_index_for_raft_index(want)];
            let mut expect = seg.index_for_raft_index(want);
            let start = expect.position;
            // Headers alone: one header-sized read each (a bigger one would copy, and zero
            // first, bytes that are skipped).
            let chunk = if headers_only {
                HEADER_LEN
            } else {
                max_bytes.clamp(64 << 10, 8 << 20)
            };
            let mut cursor = seg.cursor_range(start, seg.size, chunk, self.cfg.verify_crc_on_read);
            let before = want;
            loop {
                let next = if headers_only {
                    cursor.next_header()?.map(|(pos, h, b)| (pos, h, b.unwrap_or_default()))
                } else {
                    cursor.next_batch()?
                };
                let Some((pos, h, bytes)) = next else { break };
                // Batches follow on from the index entry one by one, so the first at or past
                // `want` is `want` itself.
                expect.check(&seg.log_path, pos, &h)?;
                expect = IndexHit::after(pos, &h);
                if h.raft_index < want {
                    continue;
                }
                let len = h.total_len();
                if !out.is_empty() && size + len > max_bytes {
                    return Ok(out);
                }
                size += len;
                out.push(StoredBatch { header: h, bytes });
                want = RaftIndex(want.0 + 1);
                if want == hi {
                    return Ok(out);
                }
            }
            if want == before {
                return Err(Error::corrupt(
                    &seg.log_path,
                    start,
                    format!("raft index {want} not found in its segment"),
                ));
            }
        }
        Ok(out)
    }

    /// The term of Raft entry `index`; `first_index() - 1` gives the log start's `prev_term`.
    ///
    /// # Errors
    /// [`Error::Compacted`], [`Error::Unavailable`], [`Error::Corruption`], [`Error::Io`].
    pub fn term(&self, index: RaftIndex) -> Result<RaftTerm> {
        if index.0 + 1 == self.first_index().0 {
            return Ok(self.log_start.prev_term);
        }
        if index < self.first_index() {
            return Err(Error::Compacted {
                index,
                first_index: self.first_index(),
            });
        }
        if index > self.last_index() {
            return Err(Error::Unavailable {
                index,
                last_index: self.last_index(),
            });
        }
        if index == self.last_index() {
            return Ok(self.last_term());
        }
        let seg = &self.segments[self.segment_index_for_raft_index(index)];
        Ok(seg.find_raft_index(index)?.1.raft_term)
    }

    /// The earliest offset whose record timestamp is ≥ `timestamp`, or `None` if every record
    /// is older. Decompresses at most one batch.
    ///
    /// # Errors
    /// [`Error::Corruption`], [`Error::Io`].
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<Offset>> {
        for seg in &self.segments {
            if seg.max_timestamp < timestamp {
                continue;
            }
            // Start at the offset-index entry at or before the time index's position (the same
            // batch unless an index is damaged), so offsets can be checked from there.
            let mut expect = seg.index_for_position(seg.position_for_timestamp(timestamp));
            let mut cursor = seg.cursor_range(expect.position, seg.size, 256 << 10, true);
            while let Some((pos, h, bytes)) = cursor.next_batch()? {
                expect.check(&seg.log_path, pos, &h)?;
                expect = IndexHit::after(pos, &h);
                if h.is_control() || h.max_timestamp < timestamp {
                    continue;
                }
                let batch = RecordBatch::verify_stored(bytes, &crate::segment::disk_limits())
                    .map_err(|e| Error::corrupt(&seg.log_path, pos, e.to_string()))?;
                let records = batch
                    .records()
                    .map_err(|e| Error::corrupt(&seg.log_path, pos, e.to_string()))?;
                for r in records {
                    let r = r.map_err(|e| Error::corrupt(&seg.log_path, pos, e.to_string()))?;
                    if r.timestamp >= timestamp {
                        return Ok(Some(r.offset));
                    }
                }
                // Log-append-time batches carry the time in the header only.
                return Ok(Some(h.base_offset));
            }
        }
        Ok(None)
    }

    /// Removes every entry with Raft index ≥ `index` (Raft conflict resolution). Segments after
    /// the cut are deleted newest-first and the directory is synced before this returns.
    ///
    /// # Errors
    /// [`Error::Compacted`] if `index < first_index()`; [`Error::Unavailable`] if
    /// `index > next_index()`; [`Error::Io`]; [`Error::Corruption`].
    pub fn truncate_to(&mut self, index: RaftIndex) -> Result<()> {
        self.check_failed()?;
        if index < self.first_index() {
            return Err(Error::Compacted {
                index,
                first_index: self.first_index(),
            });
        }
        if index > self.next_index() {
            return Err(Error::Unavailable {
                index,
                last_index: self.last_index(),
            });
        }
        if index == self.next_index() {
            return Ok(());
        }
        let mut k = self.segment_index_for_raft_index(index);
        if k > 0 && self.segments[k].base_index == index {
            k -= 1;
        }
        let mut deleted = false;
        while self.segments.len() > k + 1 {
            let seg = self.segments.pop().expect("more than k+1 segments");
            seg.delete()?;
            deleted = true;
        }
        if deleted {
            durable::sync_dir(&self.dir)?;
            self.dir_seq += 1;
        }
        let seg = self.segments.last_mut().expect("a log always has an active segment");
        seg.unseal(&self.cfg)?;
        if index < seg.next_index {
            let (pos, _) = seg.find_raft_index(index)?;
            if let Err(e) = seg.truncate_to_position(pos) {
                return Err(self.fail(e));
            }
        }
        self.generation += 1;
        self.durable_index = self.durable_index.min(index);
        Ok(())
    }

    /// Deletes the oldest sealed segments that retention allows: while the log is larger than
    /// `retention.bytes` (a segment goes only if the log stays at least that large without it,
    /// as in Kafka) or while a segment's newest record is older than `retention.age`. Never
    /// deletes the active segment or a segment holding an entry at or above `bound` (the commit
    /// point).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn apply_retention(&mut self, bound: RaftIndex, retention: &Retention) -> Result<RetentionReport> {
        self.check_failed()?;
        let now = self.cfg.clock.now_ms();
        let mut remaining = self.size_bytes();
        let mut count = 0;
        for seg in &self.segments[..self.segments.len() - 1] {
            if seg.next_index > bound {
                break;
            }
            let over_size = retention.bytes.is_some_and(|b| remaining - seg.size >= b);
            let too_old = retention.age.is_some_and(|a| {
                seg.max_timestamp < now.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX))
            });
            if !(over_size || too_old) {
                break;
            }
            remaining -= seg.size;
            count += 1;
        }
        self.remove_oldest(count)
    }

    /// Deletes every sealed segment whose entries are all below `bound`, whatever the
    /// retention settings (e.g. for an explicit delete-records request).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn delete_segments_below(&mut self, bound: RaftIndex) -> Result<RetentionReport> {
        self.check_failed()?;
        let count = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_index <= bound)
            .count();
        self.remove_oldest(count)
    }

    fn remove_oldest(&mut self, count: usize) -> Result<RetentionReport> {
        if count == 0 {
            return Ok(RetentionReport::default());
        }
        let first_kept = &self.segments[count];
        let start = LogStart {
            offset: first_kept.base_offset,
            index: first_kept.base_index,
            prev_term: first_kept.prev_term,
        };
        durable::write_atomic(&self.dir.join(LOG_START_FILE), &start.encode(false))?;
        self.log_start = start;
        let mut bytes = 0;
        for seg in self.segments.drain(..count) {
            bytes += seg.size;
            tracing::info!(segment = %seg.log_path.display(), "deleting segment (retention)");
            seg.delete()?;
        }
        durable::sync_dir(&self.dir)?;
        Ok(RetentionReport {
            segments_deleted: count,
            bytes_deleted: bytes,
            log_start: Some(start),
        })
    }

    /// Discards the whole log and restarts it empty at `start` (a follower installing a
    /// leader's "snapshot", which is just a new log start). Crash-safe: an interrupted reset is
    /// completed by the next open.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::InvalidConfig`] if `start.index` is 0.
    pub fn reset(&mut self, start: LogStart) -> Result<()> {
        if start.index.0 == 0 {
            return Err(Error::InvalidConfig {
                key: "log start index",
                reason: "must be at least 1".into(),
            });
        }
        let path = self.dir.join(LOG_START_FILE);
        durable::write_atomic(&path, &start.encode(true))?;
        while let Some(seg) = self.segments.pop() {
            seg.delete()?;
        }
        let seg = Segment::create(&self.dir, start, &self.cfg)?;
        self.segments.push(seg);
        durable::sync_dir(&self.dir)?;
        durable::write_atomic(&path, &start.encode(false))?;
        self.log_start = start;
        self.generation += 1;
        self.durable_index = start.index;
        self.dir_dirty = false;
        self.dir_seq += 1;
        self.unsynced_since_ms = None;
        self.failed = None;
        Ok(())
    }
}
