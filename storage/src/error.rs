//! The storage error type.
//!
//! Variants separate what a caller reacts to (an offset out of range, an index already
//! compacted, a non-contiguous append) from what it reports (I/O failure, corruption). Recovery
//! uses [`Error::is_corruption`] to tell "the bytes are bad" from "the disk call failed".

use std::io;
use std::path::PathBuf;

use strata_protocol::{Offset, RaftIndex, RaftTerm};
use thiserror::Error;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. "write", "fdatasync".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk are not what was written: a bad CRC, a length that does not frame, offsets
    /// or indexes that do not follow on.
    #[error("corrupt {} at byte {position}: {reason}", path.display())]
    Corruption {
        /// The file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record offset outside `[log_start, log_end]`.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: Offset,
        /// First offset still in the log.
        log_start: Offset,
        /// Offset the next record will get.
        log_end: Offset,
    },
    /// A Raft index below the log start (removed by retention or a snapshot).
    #[error("raft index {index} is compacted (first index {first_index})")]
    Compacted {
        /// Requested index.
        index: RaftIndex,
        /// First index still in the log.
        first_index: RaftIndex,
    },
    /// A Raft index past the end of the log.
    #[error("raft index {index} is unavailable (last index {last_index})")]
    Unavailable {
        /// Requested index.
        index: RaftIndex,
        /// Last index in the log.
        last_index: RaftIndex,
    },
    /// An append whose Raft index does not immediately follow the last one.
    #[error("append at raft index {got}, expected {expected}")]
    NonContiguous {
        /// The next index the log expects.
        expected: RaftIndex,
        /// The index given.
        got: RaftIndex,
    },
    /// An append with a term lower than the last entry's.
    #[error("append with term {got} after term {last}")]
    TermRegression {
        /// Term of the last entry.
        last: RaftTerm,
        /// Term given.
        got: RaftTerm,
    },
    /// A batch too large for the log (it would overflow the segment position space).
    #[error("batch of {size} bytes is too large (maximum {max})")]
    BatchTooLarge {
        /// Batch size.
        size: u64,
        /// Largest accepted size.
        max: u64,
    },
    /// A configuration value is out of bounds.
    #[error("invalid config {key}: {reason}")]
    InvalidConfig {
        /// The setting's name.
        key: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A previous write or fsync failed in a way that leaves the file's state unknown; the log
    /// refuses further writes until it is reopened (which runs recovery).
    #[error("log {} is failed after an earlier i/o error ({reason}); reopen it to recover", dir.display())]
    Failed {
        /// The partition directory.
        dir: PathBuf,
        /// The earlier error.
        reason: String,
    },
}

impl Error {
    /// Whether this error means data on disk is damaged (as opposed to a failed call or a bad
    /// request).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Error {
        Error::Corruption {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}
