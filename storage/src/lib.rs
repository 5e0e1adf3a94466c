//! `strata-storage`: the partition log and small durable metadata files. No networking.
//!
//! # Layout
//!
//! - [`log`]: [`PartitionLog`], the partition's log — which is also its Raft log: append a
//!   validated batch as Raft entry (term, index) and get a dense record offset; read by offset
//!   or by Raft index; truncate a suffix; retention; reset to a new log start; group commit.
//! - [`segment`]: one segment (log file + offset index + time index), file naming, recovery
//!   scans.
//! - [`index`]: the memory-mapped index files.
//! - [`durable`]: small files replaced atomically (temp, fsync, rename, fsync dir).
//! - [`config`]: [`LogConfig`], [`FlushPolicy`], [`RecoveryMode`], [`Retention`], [`Clock`].
//! - [`error`]: the [`Error`] type.
//!
//! # Example
//!
//! ```
//! use strata_protocol::{BatchBuilder, BatchLimits, BatchOptions, Offset, RaftIndex, RaftTerm, RecordBatch};
//! use strata_storage::{LogConfig, PartitionLog};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (mut log, _report) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
//! let mut b = BatchBuilder::new(BatchOptions::default());
//! b.append(0, None, Some(b"hello"), &[]).unwrap();
//! let batch = RecordBatch::validate(b.finish().unwrap(), &BatchLimits::default()).unwrap();
//! let info = log.append(&batch, RaftTerm(1), RaftIndex(1)).unwrap();
//! assert_eq!(info.base_offset, Offset(0));
//! log.sync().unwrap(); // group commit: one fsync for everything appended so far
//! let read = log.read(Offset(0), 1 << 20, log.next_offset()).unwrap();
//! assert_eq!(read.batches, 1);
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod durable;
pub mod error;
mod index;
pub mod log;
pub mod segment;

pub use config::{Clock, FlushPolicy, LogConfig, RecoveryMode, Retention};
pub use error::{Error, Result};
pub use log::{
    AppendInfo, LogStart, PartitionLog, ReadResult, RecoveryReport, RetentionReport, StoredBatch, SyncDone, SyncJob,
};
pub use segment::TailCut;
