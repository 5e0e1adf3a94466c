//! Configuration of a partition log.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// When appended data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append must be synced before it is acknowledged: [`crate::PartitionLog::sync_due`]
    /// is true whenever unsynced data exists. Appends made while a sync runs share the next one
    /// (group commit).
    Always,
    /// Sync when the oldest unsynced data is older than this.
    Interval(Duration),
    /// Only explicit [`crate::PartitionLog::sync`] calls and segment rolls sync; the OS flushes
    /// the page cache when it likes.
    Never,
}

/// What recovery may do when it finds damaged bytes on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any damage, even a torn tail after a crash, fails `open` with [`Error::Corruption`].
    Strict,
    /// Cut a torn or corrupt tail of the active (last) segment and report it; damage in a sealed
    /// segment — which was synced when it was sealed, so only media corruption can explain it —
    /// fails `open`. So does an active segment whose whole first batch does not follow on from the
    /// sealed segment before it (Raft index or term), since the sealed segment may be the damaged
    /// one.
    #[default]
    TolerateTornTail,
    /// Cut the log at the first damaged batch wherever it is, deleting every later segment, and
    /// report it. For replicas that can fetch the lost suffix from their peers.
    Salvage,
}

/// Source of wall-clock time (ms since the Unix epoch) for segment age and time retention.
/// Tests use [`Clock::manual`] to move time by hand.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that reads a shared value.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `ms`, and the handle that sets it.
    pub fn manual(ms: i64) -> (Self, Arc<AtomicI64>) {
        let cell = Arc::new(AtomicI64::new(ms));
        (Clock::Manual(cell.clone()), cell)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Clock::Manual(cell) => cell.load(Ordering::Relaxed),
        }
    }
}

/// Settings of one partition log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll to a new segment once the active one would exceed this size. Default 1 GiB; bounds
    /// 4 KiB ..= 2 GiB (positions inside a segment are 32-bit).
    pub segment_bytes: u64,
    /// Roll a segment once it is this old (measured from its first append in this process).
    /// Default 7 days; `None` disables.
    pub segment_age: Option<Duration>,
    /// Bytes of log between offset-index entries. Default 4 KiB; bounds 64 B ..= 16 MiB.
    pub index_interval_bytes: u32,
    /// Preallocated size of each index file; a full index rolls the segment. Default 10 MiB;
    /// bounds 1 KiB ..= 1 GiB.
    pub index_max_bytes: u32,
    /// When appends are synced. Default [`FlushPolicy::Always`].
    pub flush: FlushPolicy,
    /// What recovery may cut. Default [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
    /// Verify each batch's CRC when reading it back. Default true: nothing corrupt is served.
    /// (Each header's prefix CRC, which guards the base offset, length, Raft term and index, is
    /// checked on every read regardless: it costs a 28-byte hash.)
    pub verify_crc_on_read: bool,
    /// Wall clock.
    pub clock: Clock,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            index_max_bytes: 10 << 20,
            flush: FlushPolicy::Always,
            recovery: RecoveryMode::default(),
            verify_crc_on_read: true,
            clock: Clock::System,
        }
    }
}

/// Largest segment: positions are stored as `u32`.
pub const MAX_SEGMENT_BYTES: u64 = 2 << 30;

impl LogConfig {
    /// Checks every bound, naming the first bad setting.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &'static str, reason: String) -> Result<()> {
            Err(Error::InvalidConfig { key, reason })
        }
        if !(4096..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(
                "segment_bytes",
                format!("{} not in 4096..={MAX_SEGMENT_BYTES}", self.segment_bytes),
            );
        }
        if !(64..=16 << 20).contains(&self.index_interval_bytes) {
            return bad(
                "index_interval_bytes",
                format!("{} not in 64..=16MiB", self.index_interval_bytes),
            );
        }
        if !(1024..=1 << 30).contains(&self.index_max_bytes) {
            return bad(
                "index_max_bytes",
                format!("{} not in 1KiB..=1GiB", self.index_max_bytes),
            );
        }
        if let Some(age) = self.segment_age
            && age.is_zero()
        {
            return bad("segment_age", "must be positive".into());
        }
        if let FlushPolicy::Interval(d) = self.flush
            && d.is_zero()
        {
            return bad("flush", "interval must be positive; use Always".into());
        }
        Ok(())
    }
}

/// How much old data to keep. Retention only ever removes whole sealed segments, and never one
/// holding an entry at or above the bound the caller passes (the commit point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete the oldest segments while the log is larger than this.
    pub bytes: Option<u64>,
    /// Delete segments whose newest record is older than this.
    pub age: Option<Duration>,
}
