//! The record batch: Strata's one format on the wire and on disk.
//!
//! A producer encodes records into a batch; the broker validates it, fills in the fields only it
//! can know (base offset, Raft term, Raft index) and appends the bytes as they are; consumers get
//! the same bytes back. The broker only ever touches the fixed-size header, and only the part in
//! front of the batch CRC, so filling in those fields never requires recomputing the batch CRC;
//! they carry a small CRC of their own (`prefix_crc`).
//!
//! # Header layout
//!
//! All integers big-endian. `HEADER_LEN` = 77 bytes.
//!
//! | offset | size | field               | meaning |
//! |-------:|-----:|---------------------|---------|
//! | 0      | 8    | `base_offset`       | offset of the first record (u64). Set by the broker. |
//! | 8      | 4    | `batch_length`      | bytes that follow this field (total length − 12) (u32). |
//! | 12     | 8    | `raft_term`         | term of the Raft entry this batch is (u64). Set by the broker. |
//! | 20     | 8    | `raft_index`        | index of the Raft entry this batch is (u64). Set by the broker. |
//! | 28     | 4    | `prefix_crc`        | CRC-32 (IEEE, `crc32fast`) of bytes 0..28, i.e. of the four fields above. Set by the broker with them. |
//! | 32     | 1    | `magic`             | format version, currently 1. |
//! | 33     | 4    | `crc`               | CRC-32 (IEEE, `crc32fast`) of bytes 37..end. |
//! | 37     | 2    | `attributes`        | bits 0–2 codec (0 none, 3 lz4, 4 zstd), bit 3 timestamp type (0 create, 1 log-append), bit 4 transactional (reserved, must be 0), bit 5 control; other bits must be 0. |
//! | 39     | 4    | `last_offset_delta` | record_count − 1 for data batches, 0 for control batches (u32). |
//! | 43     | 8    | `first_timestamp`   | timestamp of the first record, ms since the Unix epoch (i64). |
//! | 51     | 8    | `max_timestamp`     | largest record timestamp in the batch (i64). |
//! | 59     | 8    | `producer_id`       | idempotent producer id, −1 if none (i64). |
//! | 67     | 2    | `producer_epoch`    | producer epoch, −1 if none (i16). |
//! | 69     | 4    | `base_sequence`     | sequence number of the first record, −1 if none (i32). |
//! | 73     | 4    | `record_count`      | number of records (u32); 0 for control batches. |
//! | 77     | …    | records             | the records, compressed as one block if the codec is not none. |
//!
//! # Records
//!
//! Each record (byte-compatible with Kafka's v2 record), varints zigzag-encoded
//! (see [`crate::varint`]):
//!
//! | field             | type | meaning |
//! |-------------------|------|---------|
//! | `length`          | varint | bytes of the record after this field |
//! | `attributes`      | i8     | reserved, 0 |
//! | `timestamp_delta` | varlong | record timestamp − `first_timestamp` |
//! | `offset_delta`    | varint | record offset − `base_offset`; equals the record's position in the batch |
//! | `key_length`      | varint | −1 for a null key |
//! | `key`             | bytes  | |
//! | `value_length`    | varint | −1 for a null value |
//! | `value`           | bytes  | |
//! | `header_count`    | varint | |
//! | headers           |        | each: `key_length` varint (≥ 0), `key`, `value_length` varint (−1 null), `value` |
//!
//! # Control batches
//!
//! A batch with the control bit set carries no records and takes no record offset: its
//! `base_offset` is the offset the next data record will get, `record_count` and
//! `last_offset_delta` are 0, it is never compressed, and its body is a big-endian `u16`
//! [`ControlType`] followed by an opaque payload. Raft entries that carry no records (a new
//! leader's empty entry, configuration changes) are stored as control batches. Consumers skip
//! them.
//!
//! # The two checksums
//!
//! `base_offset`, `batch_length`, `raft_term` and `raft_index` — the broker-owned prefix — sit in
//! front of the batch CRC so the broker can set them without recomputing it. They are covered by
//! `prefix_crc` instead, which the broker writes with them ([`BatchHeader::broker_fields`]): a
//! 28-byte hash, whatever the batch's size. The builder writes the right prefix CRC for its zero
//! prefix, so every batch is self-consistent from the start.
//!
//! [`RecordBatch::validate`] (the produce path) does not check `prefix_crc`: the broker
//! overwrites the prefix anyway, and a client need not compute it. Stored batches are checked
//! with [`RecordBatch::verify_stored`], or header by header with [`BatchHeader::verify_stored`],
//! which do: a damaged term, index, offset or length is then an error, never a value.

use bytes::Bytes;

use crate::compression::Compression;
use crate::error::DecodeError;
use crate::record::{self, Records};
use crate::types::{Offset, RaftIndex, RaftTerm};

/// The batch format version this build writes and reads (the `magic` byte).
pub const FORMAT_VERSION: u8 = 1;
/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 77;
/// Bytes in front of `batch_length`'s end: a batch's total length is `batch_length + LENGTH_PREFIX_LEN`.
pub const LENGTH_PREFIX_LEN: usize = 12;
/// Length of the broker-owned prefix (base offset, batch length, term, index and their
/// `prefix_crc`), which the batch CRC does not cover.
pub const BROKER_FIELDS_LEN: usize = 32;
/// Size of the control-type field at the start of a control batch's body.
pub const CONTROL_TYPE_LEN: usize = 2;

/// Byte offsets of the header fields.
pub mod field {
    /// `base_offset` (u64).
    pub const BASE_OFFSET: usize = 0;
    /// `batch_length` (u32).
    pub const BATCH_LENGTH: usize = 8;
    /// `raft_term` (u64).
    pub const RAFT_TERM: usize = 12;
    /// `raft_index` (u64).
    pub const RAFT_INDEX: usize = 20;
    /// `prefix_crc` (u32): CRC-32 of the bytes before it.
    pub const PREFIX_CRC: usize = 28;
    /// `magic` (u8).
    pub const MAGIC: usize = 32;
    /// `crc` (u32).
    pub const CRC: usize = 33;
    /// `attributes` (u16); the batch CRC covers everything from here on.
    pub const ATTRIBUTES: usize = 37;
    /// `last_offset_delta` (u32).
    pub const LAST_OFFSET_DELTA: usize = 39;
    /// `first_timestamp` (i64).
    pub const FIRST_TIMESTAMP: usize = 43;
    /// `max_timestamp` (i64).
    pub const MAX_TIMESTAMP: usize = 51;
    /// `producer_id` (i64).
    pub const PRODUCER_ID: usize = 59;
    /// `producer_epoch` (i16).
    pub const PRODUCER_EPOCH: usize = 67;
    /// `base_sequence` (i32).
    pub const BASE_SEQUENCE: usize = 69;
    /// `record_count` (u32).
    pub const RECORD_COUNT: usize = 73;
}

const _: () = assert!(field::RECORD_COUNT + 4 == HEADER_LEN);
const _: () = assert!(field::RAFT_INDEX + 8 == field::PREFIX_CRC);
const _: () = assert!(field::PREFIX_CRC + 4 == BROKER_FIELDS_LEN);
const _: () = assert!(field::MAGIC == BROKER_FIELDS_LEN);
const _: () = assert!(field::MAGIC + 1 == field::CRC);
const _: () = assert!(field::CRC + 4 == field::ATTRIBUTES);
const _: () = assert!(LENGTH_PREFIX_LEN == field::BATCH_LENGTH + 4);

/// Default largest batch accepted by [`RecordBatch::validate`] (16 MiB).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
/// Default largest record count per batch.
pub const DEFAULT_MAX_RECORDS: u32 = 1 << 22;
/// Default cap on a compressed batch's decompressed records section (64 MiB).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Limits applied while validating untrusted batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Largest total batch size in bytes (header included).
    pub max_batch_bytes: usize,
    /// Largest record count.
    pub max_records: u32,
    /// Largest decompressed records section when reading a compressed batch.
    pub max_decompressed_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_records: DEFAULT_MAX_RECORDS,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// How record timestamps were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker when the batch was appended.
    LogAppendTime,
}

/// The batch attributes bit field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attributes(pub u16);

impl Attributes {
    const CODEC_MASK: u16 = 0x0007;
    const TIMESTAMP_TYPE: u16 = 0x0008;
    const TRANSACTIONAL: u16 = 0x0010;
    const CONTROL: u16 = 0x0020;
    const KNOWN: u16 = Self::CODEC_MASK | Self::TIMESTAMP_TYPE | Self::TRANSACTIONAL | Self::CONTROL;

    /// Builds attributes from their parts.
    pub fn new(compression: Compression, timestamp_type: TimestampType, control: bool) -> Self {
        let mut bits = u16::from(compression.id());
        if timestamp_type == TimestampType::LogAppendTime {
            bits |= Self::TIMESTAMP_TYPE;
        }
        if control {
            bits |= Self::CONTROL;
        }
        Self(bits)
    }

    /// The compression codec.
    ///
    /// # Errors
    /// [`DecodeError::UnsupportedCodec`] for an unknown or unsupported codec number.
    pub fn compression(self) -> Result<Compression, DecodeError> {
        Compression::from_id((self.0 & Self::CODEC_MASK) as u8)
    }

    /// Whether this is a control batch.
    pub fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }

    /// Whether the transactional bit is set (reserved; rejected by validation).
    pub fn is_transactional(self) -> bool {
        self.0 & Self::TRANSACTIONAL != 0
    }

    /// The timestamp type.
    pub fn timestamp_type(self) -> TimestampType {
        if self.0 & Self::TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

/// What a control batch means. Stored as the first two bytes of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ControlType {
    /// A Raft entry with no data (e.g. the empty entry a new leader appends).
    Noop = 0,
    /// A Raft `ConfChange`; the payload is the encoded change.
    RaftConfChange = 1,
    /// A Raft `ConfChangeV2`; the payload is the encoded change.
    RaftConfChangeV2 = 2,
}

impl ControlType {
    /// Parses the stored number.
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            0 => Some(Self::Noop),
            1 => Some(Self::RaftConfChange),
            2 => Some(Self::RaftConfChangeV2),
            _ => None,
        }
    }
}

#[inline]
fn be_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(buf[at..at + 2].try_into().expect("2-byte slice"))
}
#[inline]
fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4-byte slice"))
}
#[inline]
fn be_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8-byte slice"))
}

/// The decoded fixed header of a batch. Parsing it checks nothing but its length; see
/// [`RecordBatch::validate`] for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (for a control batch: the next data offset).
    pub base_offset: Offset,
    /// Bytes after the `batch_length` field.
    pub batch_length: u32,
    /// Raft term of this entry.
    pub raft_term: RaftTerm,
    /// Raft index of this entry.
    pub raft_index: RaftIndex,
    /// Stored CRC of the broker-owned prefix (the four fields above).
    pub prefix_crc: u32,
    /// Format version.
    pub magic: u8,
    /// Stored CRC.
    pub crc: u32,
    /// Attributes.
    pub attributes: Attributes,
    /// `record_count - 1` for data batches.
    pub last_offset_delta: u32,
    /// Timestamp of the first record.
    pub first_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, −1 if none.
    pub producer_id: i64,
    /// Producer epoch, −1 if none.
    pub producer_epoch: i16,
    /// Sequence of the first record, −1 if none.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: u32,
}

impl BatchHeader {
    /// Reads the header from the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if `buf` is shorter than a header.
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Err(DecodeError::Truncated {
                what: "batch header",
                position: 0,
                needed: HEADER_LEN,
                available: buf.len(),
            });
        };
        Ok(Self {
            base_offset: Offset(be_u64(h, field::BASE_OFFSET)),
            batch_length: be_u32(h, field::BATCH_LENGTH),
            raft_term: RaftTerm(be_u64(h, field::RAFT_TERM)),
            raft_index: RaftIndex(be_u64(h, field::RAFT_INDEX)),
            prefix_crc: be_u32(h, field::PREFIX_CRC),
            magic: h[field::MAGIC],
            crc: be_u32(h, field::CRC),
            attributes: Attributes(be_u16(h, field::ATTRIBUTES)),
            last_offset_delta: be_u32(h, field::LAST_OFFSET_DELTA),
            first_timestamp: be_u64(h, field::FIRST_TIMESTAMP) as i64,
            max_timestamp: be_u64(h, field::MAX_TIMESTAMP) as i64,
            producer_id: be_u64(h, field::PRODUCER_ID) as i64,
            producer_epoch: be_u16(h, field::PRODUCER_EPOCH) as i16,
            base_sequence: be_u32(h, field::BASE_SEQUENCE) as i32,
            record_count: be_u32(h, field::RECORD_COUNT),
        })
    }

    /// Writes the header into `out[..HEADER_LEN]`, every field as it is (`prefix_crc` and `crc`
    /// included: nothing is computed).
    ///
    /// # Panics
    /// If `out` is shorter than [`HEADER_LEN`] (a caller bug: callers size the buffer).
    pub fn write(&self, out: &mut [u8]) {
        let h = &mut out[..HEADER_LEN];
        h[field::BASE_OFFSET..][..8].copy_from_slice(&self.base_offset.0.to_be_bytes());
        h[field::BATCH_LENGTH..][..4].copy_from_slice(&self.batch_length.to_be_bytes());
        h[field::RAFT_TERM..][..8].copy_from_slice(&self.raft_term.0.to_be_bytes());
        h[field::RAFT_INDEX..][..8].copy_from_slice(&self.raft_index.0.to_be_bytes());
        h[field::PREFIX_CRC..][..4].copy_from_slice(&self.prefix_crc.to_be_bytes());
        h[field::MAGIC] = self.magic;
        h[field::CRC..][..4].copy_from_slice(&self.crc.to_be_bytes());
        h[field::ATTRIBUTES..][..2].copy_from_slice(&self.attributes.0.to_be_bytes());
        h[field::LAST_OFFSET_DELTA..][..4].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        h[field::FIRST_TIMESTAMP..][..8].copy_from_slice(&self.first_timestamp.to_be_bytes());
        h[field::MAX_TIMESTAMP..][..8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[field::PRODUCER_ID..][..8].copy_from_slice(&self.producer_id.to_be_bytes());
        h[field::PRODUCER_EPOCH..][..2].copy_from_slice(&self.producer_epoch.to_be_bytes());
        h[field::BASE_SEQUENCE..][..4].copy_from_slice(&self.base_sequence.to_be_bytes());
        h[field::RECORD_COUNT..][..4].copy_from_slice(&self.record_count.to_be_bytes());
    }

    /// Total size of the batch in bytes, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LENGTH_PREFIX_LEN
    }

    /// Whether this is a control batch.
    pub fn is_control(&self) -> bool {
        self.attributes.is_control()
    }

    /// The offset the next data batch gets: `base_offset + record_count`.
    pub fn next_offset(&self) -> Offset {
        Offset(self.base_offset.0.saturating_add(u64::from(self.record_count)))
    }

    /// The offset of the last record, `None` for a control batch.
    pub fn last_offset(&self) -> Option<Offset> {
        // base_offset is not covered by the batch CRC and not checked by validation (the broker
        // rewrites it), so saturate like `next_offset` rather than overflow.
        (self.record_count > 0).then(|| Offset(self.base_offset.0.saturating_add(u64::from(self.last_offset_delta))))
    }

    /// The broker-owned prefix of the header (base offset, length, term, index, and the
    /// `prefix_crc` over them), as bytes to write in place of the batch's own first
    /// [`BROKER_FIELDS_LEN`] bytes. The batch CRC does not cover these bytes, so replacing them
    /// keeps the batch valid, and the prefix CRC they carry is right for the new values.
    pub fn broker_fields(
        batch_length: u32,
        base_offset: Offset,
        term: RaftTerm,
        index: RaftIndex,
    ) -> [u8; BROKER_FIELDS_LEN] {
        let mut out = unsealed_prefix(batch_length, base_offset, term, index);
        let prefix_crc = compute_prefix_crc(&out);
        out[field::PREFIX_CRC..][..4].copy_from_slice(&prefix_crc.to_be_bytes());
        out
    }

    /// The prefix CRC this header's broker-owned fields call for; [`BatchHeader::prefix_crc`]
    /// holds the same value unless the prefix is damaged.
    pub fn computed_prefix_crc(&self) -> u32 {
        compute_prefix_crc(&unsealed_prefix(
            self.batch_length,
            self.base_offset,
            self.raft_term,
            self.raft_index,
        ))
    }

    /// Checks what a stored header must satisfy and the header alone can show: the format
    /// version, then the prefix CRC. The storage engine runs this on every header it reads, even
    /// where it reads nothing but headers; [`RecordBatch::verify_stored`] includes it.
    ///
    /// # Errors
    /// [`DecodeError::UnsupportedVersion`]; [`DecodeError::PrefixCrcMismatch`] if the base
    /// offset, length, term, index or the prefix CRC itself is damaged.
    pub fn verify_stored(&self) -> Result<(), DecodeError> {
        if self.magic != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(self.magic));
        }
        let computed = self.computed_prefix_crc();
        if computed != self.prefix_crc {
            return Err(DecodeError::PrefixCrcMismatch {
                base_offset: self.base_offset.0,
                stored: self.prefix_crc,
                computed,
            });
        }
        Ok(())
    }
}

/// The broker-owned prefix with a zero `prefix_crc`.
fn unsealed_prefix(
    batch_length: u32,
    base_offset: Offset,
    term: RaftTerm,
    index: RaftIndex,
) -> [u8; BROKER_FIELDS_LEN] {
    let mut out = [0u8; BROKER_FIELDS_LEN];
    out[field::BASE_OFFSET..][..8].copy_from_slice(&base_offset.0.to_be_bytes());
    out[field::BATCH_LENGTH..][..4].copy_from_slice(&batch_length.to_be_bytes());
    out[field::RAFT_TERM..][..8].copy_from_slice(&term.0.to_be_bytes());
    out[field::RAFT_INDEX..][..8].copy_from_slice(&index.0.to_be_bytes());
    out
}

/// Reads the total length of the batch starting at `buf[0]` from its `batch_length` field.
/// Returns `None` if fewer than [`LENGTH_PREFIX_LEN`] bytes are present. The value is untrusted.
pub fn peek_total_len(buf: &[u8]) -> Option<u64> {
    let b = buf.get(field::BATCH_LENGTH..LENGTH_PREFIX_LEN)?;
    Some(u64::from(u32::from_be_bytes(b.try_into().expect("4-byte slice"))) + LENGTH_PREFIX_LEN as u64)
}

/// Computes the CRC a batch should carry: CRC-32 over everything after the CRC field.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32fast::hash(batch.get(field::ATTRIBUTES..).unwrap_or(&[]))
}

/// Computes the prefix CRC a batch should carry: CRC-32 over its first 28 bytes (base offset,
/// batch length, term, index), or over all of a shorter buffer.
pub fn compute_prefix_crc(batch: &[u8]) -> u32 {
    crc32fast::hash(&batch[..batch.len().min(field::PREFIX_CRC)])
}

/// A batch that passed [`RecordBatch::validate`]: its length frames exactly, its CRC matches,
/// its attributes are known and — for uncompressed batches — every record parses and the record
/// count, offset deltas and max timestamp agree with the header. Storage accepts only this type.
/// (Or one whose records were walked elsewhere: [`RecordBatch::revalidate`] for a follower's copy
/// of what its leader validated, [`RecordBatch::rewrap`] for a leader's own proposal, and
/// [`RecordBatch::verify_stored`] for one read back from storage.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
    header: BatchHeader,
}

impl RecordBatch {
    /// Validates `bytes` as exactly one batch, as received from a producer.
    ///
    /// The prefix CRC is not checked: the broker overwrites the whole broker-owned prefix on
    /// append, and a client need not compute it. Use [`RecordBatch::verify_stored`] for stored
    /// batches.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem found: truncation, a length outside the limits,
    /// trailing bytes, an unknown format version, a CRC mismatch, unknown attributes or codec,
    /// a malformed control batch, a record count or offset delta that disagrees with the
    /// records, or a malformed record.
    pub fn validate(bytes: Bytes, limits: &BatchLimits) -> Result<Self, DecodeError> {
        let batch = Self::checked(bytes, limits, Check::Received)?;
        validate_body(&batch.bytes, &batch.header, limits)?;
        Ok(batch)
    }

    /// Wraps bytes that passed [`RecordBatch::validate`] elsewhere — a follower's copy of a batch
    /// the partition's leader validated — after checking the framing, format version, CRC and
    /// header fields again; the records are not walked a second time (Kafka's followers check
    /// batch CRCs but do not re-parse records either).
    ///
    /// # Errors
    /// As [`RecordBatch::validate`], minus the record walk.
    pub fn revalidate(bytes: Bytes, limits: &BatchLimits) -> Result<Self, DecodeError> {
        Self::checked(bytes, limits, Check::Received)
    }

    /// Wraps bytes this process passed through [`RecordBatch::validate`] itself and kept in
    /// memory since (a leader's own proposal, validated by the request handler that received
    /// it): framing, format version and header fields are checked again, the CRC is not
    /// recomputed and the records are not walked.
    ///
    /// # Errors
    /// As [`RecordBatch::validate`], minus the CRC and the record walk.
    pub fn rewrap(bytes: Bytes, limits: &BatchLimits) -> Result<Self, DecodeError> {
        Self::checked(bytes, limits, Check::Validated)
    }

    fn checked(bytes: Bytes, limits: &BatchLimits, check: Check) -> Result<Self, DecodeError> {
        let header = validate_header(&bytes, limits, check)?;
        if bytes.len() != header.total_len() {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - header.total_len(),
            });
        }
        Ok(Self { bytes, header })
    }

    /// Wraps a stored batch — bytes validated before (e.g. by this process, when they were
    /// written) and given their broker-owned prefix since — after re-checking the framing, magic,
    /// prefix CRC, batch CRC and header fields; records are not walked.
    ///
    /// Used on the read path of the storage engine, which verifies checksums but need not
    /// re-parse records it validated on append.
    ///
    /// # Errors
    /// As [`RecordBatch::validate`], minus the record walk, plus
    /// [`DecodeError::PrefixCrcMismatch`] (checked right after the magic byte).
    pub fn verify_stored(bytes: Bytes, limits: &BatchLimits) -> Result<Self, DecodeError> {
        Self::checked(bytes, limits, Check::Stored)
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, exactly as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Consumes the batch, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid batch has at least a header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The records section as stored (compressed if the codec is not none).
    pub fn records_section(&self) -> Bytes {
        self.bytes.slice(HEADER_LEN..)
    }

    /// Iterates the records, decompressing the batch first if it is compressed (one allocation
    /// for the whole batch). Keys, values and headers are slices of the batch (or of the
    /// decompressed buffer), never copies. A control batch yields no records.
    ///
    /// # Errors
    /// Decompression errors, including exceeding [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
    pub fn records(&self) -> Result<Records, DecodeError> {
        self.records_with_limit(DEFAULT_MAX_DECOMPRESSED_BYTES)
    }

    /// As [`RecordBatch::records`], with an explicit cap on the decompressed size.
    ///
    /// # Errors
    /// Decompression errors, including exceeding `max_decompressed_bytes`.
    pub fn records_with_limit(&self, max_decompressed_bytes: usize) -> Result<Records, DecodeError> {
        let h = &self.header;
        if h.is_control() {
            return Ok(Records::new(Bytes::new(), 0, h.base_offset, h.first_timestamp));
        }
        let codec = h.attributes.compression()?;
        let section = match codec {
            Compression::None => self.records_section(),
            codec => {
                let mut out = Vec::new();
                codec.decompress_into(&self.bytes[HEADER_LEN..], &mut out, max_decompressed_bytes)?;
                Bytes::from(out)
            }
        };
        Ok(Records::new(section, h.record_count, h.base_offset, h.first_timestamp))
    }

    /// For a control batch, its type and payload; `None` for a data batch.
    pub fn control(&self) -> Option<(ControlType, Bytes)> {
        if !self.header.is_control() {
            return None;
        }
        // validate() proved the body holds a known control type.
        let ty = ControlType::from_u16(be_u16(&self.bytes, HEADER_LEN))?;
        Some((ty, self.bytes.slice(HEADER_LEN + CONTROL_TYPE_LEN..)))
    }
}

/// Checks a total batch length read from an untrusted `batch_length` field against the limits.
fn check_total_len(total: u64, limits: &BatchLimits) -> Result<(), DecodeError> {
    if total < HEADER_LEN as u64 || total > limits.max_batch_bytes as u64 {
        return Err(DecodeError::InvalidBatchLength {
            length: total,
            min: HEADER_LEN,
            max: limits.max_batch_bytes,
        });
    }
    Ok(())
}

/// Which checksums [`validate_header`] verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Bytes from the network: the batch CRC (a client need not set the prefix CRC).
    Received,
    /// Bytes from storage: the prefix CRC and the batch CRC.
    Stored,
    /// Bytes this process validated and kept in memory: neither.
    Validated,
}

/// Checks framing (against `buf`'s length and the limits), magic, the checksums `check` names,
/// and attributes.
fn validate_header(buf: &[u8], limits: &BatchLimits, check: Check) -> Result<BatchHeader, DecodeError> {
    // Check the length field as soon as it is present, before asking for a whole header:
    // `Truncated` must only ever mean "more bytes would help", and they would not if the length
    // itself is impossible.
    if let Some(total) = peek_total_len(buf) {
        check_total_len(total, limits)?;
    }
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(DecodeError::Truncated {
            what: "batch",
            position: 0,
            needed: total,
            available: buf.len(),
        });
    }
    if check == Check::Stored {
        header.verify_stored()?;
    } else if header.magic != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(header.magic));
    }
    if check != Check::Validated {
        let computed = compute_crc(&buf[..total]);
        if computed != header.crc {
            return Err(DecodeError::CrcMismatch {
                base_offset: header.base_offset.0,
                stored: header.crc,
                computed,
            });
        }
    }
    let attrs = header.attributes;
    if attrs.0 & !Attributes::KNOWN != 0 || attrs.is_transactional() {
        return Err(DecodeError::InvalidAttributes(attrs.0));
    }
    let codec = attrs.compression()?;
    if attrs.is_control() {
        if codec != Compression::None {
            return Err(DecodeError::InvalidControlBatch("control batches are never compressed"));
        }
        if header.record_count != 0 || header.last_offset_delta != 0 {
            return Err(DecodeError::InvalidControlBatch("control batches carry no records"));
        }
        let Some(ty) = buf
            .get(HEADER_LEN..HEADER_LEN + CONTROL_TYPE_LEN)
            .filter(|_| total >= HEADER_LEN + CONTROL_TYPE_LEN)
        else {
            return Err(DecodeError::InvalidControlBatch("missing control type"));
        };
        if ControlType::from_u16(u16::from_be_bytes([ty[0], ty[1]])).is_none() {
            return Err(DecodeError::InvalidControlBatch("unknown control type"));
        }
    } else {
        if header.record_count == 0 || header.record_count > limits.max_records {
            return Err(DecodeError::InvalidRecordCount {
                count: header.record_count,
                max: limits.max_records,
            });
        }
        if header.last_offset_delta != header.record_count - 1 {
            return Err(DecodeError::LastOffsetDeltaMismatch {
                last_offset_delta: header.last_offset_delta,
                record_count: header.record_count,
            });
        }
    }
    Ok(header)
}

/// Walks the records of an uncompressed data batch, checking each one parses, offset deltas
/// are dense, the count matches and the max timestamp agrees. Compressed batches are not opened:
/// the broker never decompresses.
fn validate_body(buf: &[u8], header: &BatchHeader, _limits: &BatchLimits) -> Result<(), DecodeError> {
    if header.is_control() || header.attributes.compression()? != Compression::None {
        if !header.is_control() && header.total_len() == HEADER_LEN {
            return Err(DecodeError::RecordCountMismatch {
                expected: header.record_count,
                actual: 0,
            });
        }
        return Ok(());
    }
    let section = &buf[HEADER_LEN..header.total_len()];
    let mut pos = 0usize;
    let mut count = 0u32;
    let mut max_ts = i64::MIN;
    while pos < section.len() {
        if count == header.record_count {
            return Err(DecodeError::RecordCountMismatch {
                expected: header.record_count,
                actual: count.saturating_add(1),
            });
        }
        let raw = record::parse_record(section, pos, count)?;
        if raw.offset_delta != i64::from(count) {
            return Err(DecodeError::InvalidRecord {
                index: count,
                reason: "offset delta is not the record's position",
            });
        }
        max_ts = max_ts.max(header.first_timestamp.wrapping_add(raw.timestamp_delta));
        pos = raw.end;
        count += 1;
    }
    if count != header.record_count {
        return Err(DecodeError::RecordCountMismatch {
            expected: header.record_count,
            actual: count,
        });
    }
    if header.attributes.timestamp_type() == TimestampType::CreateTime && max_ts != header.max_timestamp {
        return Err(DecodeError::MaxTimestampMismatch {
            header: header.max_timestamp,
            records: max_ts,
        });
    }
    Ok(())
}

/// Iterates the batches in a buffer holding several back to back (a produce request's record
/// set, a fetch response, a stretch of a segment file). Each item is validated with
/// [`RecordBatch::validate`], which does not check the prefix CRC (for stored bytes, check each
/// item's [`BatchHeader::verify_stored`] too); iteration stops after the first error.
#[derive(Debug, Clone)]
pub struct BatchIter {
    buf: Bytes,
    limits: BatchLimits,
    failed: bool,
}

impl BatchIter {
    /// Iterates `buf` with the given limits.
    pub fn new(buf: Bytes, limits: BatchLimits) -> Self {
        Self {
            buf,
            limits,
            failed: false,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
}

impl Iterator for BatchIter {
    type Item = Result<RecordBatch, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        // An impossible length is invalid whether or not the bytes it claims are present: checking
        // it only when they are missing would hand an undersized batch to `validate`, which then
        // reports `Truncated` — and a stream reader would wait forever for bytes that cannot help.
        let total = match peek_total_len(&self.buf) {
            Some(t) => {
                if let Err(e) = check_total_len(t, &self.limits) {
                    self.failed = true;
                    return Some(Err(e));
                }
                t
            }
            None => LENGTH_PREFIX_LEN as u64,
        };
        if total > self.buf.len() as u64 {
            self.failed = true;
            return Some(Err(DecodeError::Truncated {
                what: "batch",
                position: 0,
                needed: total as usize,
                available: self.buf.len(),
            }));
        }
        let total = total as usize;
        let bytes = self.buf.split_to(total);
        let result = RecordBatch::validate(bytes, &self.limits);
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}
