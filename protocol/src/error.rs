//! Errors from decoding and building record batches.
//!
//! [`DecodeError`] is what untrusted bytes produce: every variant carries the facts needed to
//! report or act on it (what was expected, what was found, where). Decoding never panics.

use thiserror::Error;

/// Why a byte buffer is not a valid record batch (or record inside one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ends before the structure does. For a stream reader this means "read more".
    #[error("truncated {what}: need {needed} bytes at position {position}, have {available}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Position (within the batch or records section) where the read started.
        position: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The stored CRC does not match the CRC computed over the batch.
    #[error("crc mismatch in batch at base offset {base_offset}: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The batch's base offset as found in its header.
        base_offset: u64,
        /// CRC in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// The stored prefix CRC does not match the CRC of the broker-owned header prefix (base
    /// offset, batch length, Raft term, Raft index): one of them, or the prefix CRC, is damaged.
    /// Only checked on stored batches, never on a producer's.
    #[error(
        "prefix crc mismatch in batch at base offset {base_offset}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    PrefixCrcMismatch {
        /// The batch's base offset as found in its header (possibly the damaged field).
        base_offset: u64,
        /// Prefix CRC in the header.
        stored: u32,
        /// CRC computed over the first 28 bytes.
        computed: u32,
    },
    /// The batch format version (magic byte) is not one this build understands.
    #[error("unsupported batch format version {0}")]
    UnsupportedVersion(u8),
    /// The compression codec in the attributes is unknown or not supported.
    #[error("unsupported compression codec {0}")]
    UnsupportedCodec(u8),
    /// Attribute bits that must be zero are set.
    #[error("invalid batch attributes {0:#06x}")]
    InvalidAttributes(u16),
    /// The batch length field is smaller than a header or larger than the configured limit.
    #[error("invalid batch length {length} (minimum {min}, maximum {max})")]
    InvalidBatchLength {
        /// Total batch size implied by the length field.
        length: u64,
        /// Smallest valid total size.
        min: usize,
        /// Largest accepted total size.
        max: usize,
    },
    /// The buffer holds more bytes than the one batch its header describes.
    #[error("{extra} bytes after the end of the batch")]
    TrailingBytes {
        /// Bytes past the batch's end.
        extra: usize,
    },
    /// A request or response field is malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The field.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The record count is zero for a data batch, non-zero for a control batch, or over the limit.
    #[error("invalid record count {count} (maximum {max})")]
    InvalidRecordCount {
        /// Count from the header.
        count: u32,
        /// Largest accepted count.
        max: u32,
    },
    /// `last_offset_delta` disagrees with the record count.
    #[error("last offset delta {last_offset_delta} does not match record count {record_count}")]
    LastOffsetDeltaMismatch {
        /// From the header.
        last_offset_delta: u32,
        /// From the header.
        record_count: u32,
    },
    /// The records section holds a different number of records than the header says.
    #[error("record count mismatch: header says {expected}, records section holds {actual}")]
    RecordCountMismatch {
        /// From the header.
        expected: u32,
        /// Counted while walking the records (a lower bound if the walk stopped early).
        actual: u32,
    },
    /// A record's own length disagrees with the fields it contains.
    #[error("record {index}: {reason}")]
    InvalidRecord {
        /// Zero-based position of the record in its batch.
        index: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The header's max timestamp disagrees with the records.
    #[error("max timestamp {header} in header, but records say {records}")]
    MaxTimestampMismatch {
        /// From the header.
        header: i64,
        /// Computed from records.
        records: i64,
    },
    /// A varint is longer than its type allows.
    #[error("varint too long at position {0}")]
    VarintOverflow(usize),
    /// A control batch is malformed (compressed, too short, or of unknown type).
    #[error("invalid control batch: {0}")]
    InvalidControlBatch(&'static str),
    /// The compressed payload could not be decompressed.
    #[error("decompression failed ({codec}): {reason}")]
    Decompression {
        /// Codec name.
        codec: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// Decompressing would exceed the configured limit (a decompression bomb, or a limit too low).
    #[error("decompressed records exceed {max} bytes")]
    DecompressedTooLarge {
        /// The limit.
        max: usize,
    },
}

/// Why a batch could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A batch may hold at most `u32::MAX` records and at most `i32::MAX` bytes per field.
    #[error("{what} too large: {size}")]
    TooLarge {
        /// Which quantity overflowed.
        what: &'static str,
        /// Its size.
        size: u64,
    },
    /// `finish` was called with no records appended.
    #[error("a data batch needs at least one record")]
    Empty,
    /// Compression failed.
    #[error("compression failed ({codec}): {reason}")]
    Compression {
        /// Codec name.
        codec: &'static str,
        /// The codec's message.
        reason: String,
    },
}
