//! `strata-protocol`: the bytes Strata agrees on, on the wire and on disk.
//!
//! This crate is sans-IO: it turns byte slices into typed values and back and never touches a
//! socket, a file or an async runtime. The broker, the storage engine and the client all use it.
//!
//! # Layout
//!
//! - [`types`]: the domain's newtypes — [`Offset`] (record offset), [`RaftIndex`], [`RaftTerm`] —
//!   so a record offset and a Raft index can never be mixed up.
//! - [`batch`]: the record-batch format (one format on the wire and on disk), its fixed header,
//!   validation into a [`RecordBatch`], and iteration over a buffer holding several batches.
//!   The field-by-field layout is in `protocol/FORMAT.md` and in [`batch`]'s docs.
//! - [`record`]: the zero-copy record reader ([`Record`], [`Records`], [`RecordHeaders`]).
//! - [`builder`]: [`BatchBuilder`], which encodes records into a batch with no per-record
//!   allocation, and control batches.
//! - [`compression`]: whole-batch compression codecs (lz4, zstd).
//! - [`varint`]: zigzag varints as used inside records.
//! - [`error`]: [`DecodeError`] and [`BuildError`].
//! - [`error_code`]: [`ErrorCode`], the wire error-code table.
//! - [`wire`]: primitive encodings of request/response fields (bounds-checked [`wire::Reader`]).
//! - [`api`]: the requests and responses, one module per API (`protocol/PROTOCOL.md`).
//! - [`frame`]: frames and headers; what closes a connection versus what gets an error response.
//! - `codec` (feature `codec`): tokio-util `Decoder`/`Encoder` for both ends.
//!
//! # Example
//!
//! ```
//! use strata_protocol::{BatchBuilder, BatchOptions, BatchLimits, Compression, RecordBatch};
//!
//! let mut builder = BatchBuilder::new(BatchOptions { compression: Compression::Zstd, ..Default::default() });
//! builder.append(1_700_000_000_000, Some(b"key"), Some(b"hello"), &[]).unwrap();
//! builder.append(1_700_000_000_001, None, Some(b"world"), &[]).unwrap();
//! let bytes = builder.finish().unwrap();
//!
//! let batch = RecordBatch::validate(bytes, &BatchLimits::default()).unwrap();
//! assert_eq!(batch.header().record_count, 2);
//! let values: Vec<_> = batch
//!     .records()
//!     .unwrap()
//!     .map(|r| r.unwrap().value.unwrap())
//!     .collect();
//! assert_eq!(values, [&b"hello"[..], &b"world"[..]]);
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod batch;
pub mod builder;
#[cfg(feature = "codec")]
pub mod codec;
pub mod compression;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod host_aliases;
pub mod record;
pub mod types;
pub mod varint;
pub mod wire;

pub use batch::{
    Attributes, BatchHeader, BatchIter, BatchLimits, ControlType, FORMAT_VERSION, HEADER_LEN, RecordBatch,
    TimestampType,
};
pub use builder::{BatchBuilder, BatchOptions, HeaderRef, control_batch};
pub use compression::Compression;
pub use error::{BuildError, DecodeError};
pub use error_code::ErrorCode;
pub use record::{Record, RecordHeaders, Records};
pub use types::{Offset, RaftIndex, RaftTerm};
