//! Encoding records into batches.
//!
//! [`BatchBuilder`] writes each record straight into its output buffer: sizes are computed first
//! (so the record's length prefix can be written before it), then the fields. Nothing is
//! allocated per record. `finish` fills in the header and CRCs and hands out the batch as
//! [`Bytes`] split off the builder's buffer, so the builder — and, once the previous batch is
//! dropped, its allocation — is reused for the next batch.

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{
    Attributes, BROKER_FIELDS_LEN, BatchHeader, CONTROL_TYPE_LEN, ControlType, FORMAT_VERSION, HEADER_LEN,
    LENGTH_PREFIX_LEN, TimestampType, compute_crc, field,
};
use crate::compression::Compression;
use crate::error::BuildError;
use crate::types::{Offset, RaftIndex, RaftTerm};
use crate::varint::{put_varint, put_varlong, varint_len, varlong_len};

/// Producer-chosen settings for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Whole-batch compression codec.
    pub compression: Compression,
    /// How timestamps were assigned.
    pub timestamp_type: TimestampType,
    /// Idempotent producer id, −1 for none.
    pub producer_id: i64,
    /// Producer epoch, −1 for none.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record, −1 for none.
    pub base_sequence: i32,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// A record header to encode: a non-null key and a nullable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// Header key.
    pub key: &'a [u8],
    /// Header value, `None` for null.
    pub value: Option<&'a [u8]>,
}

/// Builds one batch at a time; reusable.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    scratch: Vec<u8>,
    options: BatchOptions,
    count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
}

fn field_len(len: usize, what: &'static str) -> Result<i32, BuildError> {
    i32::try_from(len).map_err(|_| BuildError::TooLarge { what, size: len as u64 })
}

fn nullable_len(v: Option<&[u8]>, what: &'static str) -> Result<(i32, usize), BuildError> {
    match v {
        None => Ok((-1, varint_len(-1))),
        Some(b) => {
            let l = field_len(b.len(), what)?;
            Ok((l, varint_len(l) + b.len()))
        }
    }
}

fn put_nullable(out: &mut BytesMut, len: i32, v: Option<&[u8]>) {
    put_varint(out, len);
    if let Some(b) = v {
        out.put_slice(b);
    }
}

impl BatchBuilder {
    /// A builder with an empty buffer.
    pub fn new(options: BatchOptions) -> Self {
        Self::with_buffer(BytesMut::new(), options)
    }

    /// A builder writing into `buf` (cleared first), e.g. a buffer with capacity for the
    /// expected batch size.
    pub fn with_buffer(mut buf: BytesMut, options: BatchOptions) -> Self {
        buf.clear();
        buf.put_bytes(0, HEADER_LEN);
        Self {
            buf,
            scratch: Vec::new(),
            options,
            count: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Changes the options for the batch being built (e.g. a new base sequence).
    pub fn set_options(&mut self, options: BatchOptions) {
        self.options = options;
    }

    /// Records appended so far.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Whether no record has been appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed size of the batch so far, header included.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Encoded size a record would add (uncompressed), for callers deciding when a batch is full.
    pub fn record_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[HeaderRef<'_>]) -> usize {
        let key_len = key.map_or(1, |k| varint_len(k.len() as i32) + k.len());
        let value_len = value.map_or(1, |v| varint_len(v.len() as i32) + v.len());
        let headers_len: usize = headers
            .iter()
            .map(|h| {
                varint_len(h.key.len() as i32)
                    + h.key.len()
                    + h.value.map_or(1, |v| varint_len(v.len() as i32) + v.len())
            })
            .sum();
        // length prefix (≤ 5) + attributes + timestamp delta (≤ 10) + offset delta (≤ 5)
        5 + 1 + 10 + 5 + key_len + value_len + varint_len(headers.len() as i32) + headers_len
    }

    /// Appends a record.
    ///
    /// # Errors
    /// [`BuildError::TooLarge`] if a field exceeds `i32::MAX` bytes or the batch already holds
    /// `i32::MAX` records.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> Result<(), BuildError> {
        let offset_delta = field_len(self.count as usize, "record count")?;
        if self.count == 0 {
            self.first_timestamp = timestamp;
        }
        let timestamp_delta = timestamp.wrapping_sub(self.first_timestamp);
        let (key_len, key_size) = nullable_len(key, "key")?;
        let (value_len, value_size) = nullable_len(value, "value")?;
        let header_count = field_len(headers.len(), "header count")?;
        let mut headers_size = varint_len(header_count);
        for h in headers {
            let kl = field_len(h.key.len(), "header key")?;
            let (_, vs) = nullable_len(h.value, "header value")?;
            headers_size += varint_len(kl) + h.key.len() + vs;
        }
        let body = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta) + key_size + value_size + headers_size;
        let body_len = field_len(body, "record")?;

        self.buf.reserve(varint_len(body_len) + body);
        put_varint(&mut self.buf, body_len);
        self.buf.put_u8(0); // record attributes: reserved
        put_varlong(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        put_nullable(&mut self.buf, key_len, key);
        put_nullable(&mut self.buf, value_len, value);
        put_varint(&mut self.buf, header_count);
        for h in headers {
            put_varint(&mut self.buf, h.key.len() as i32);
            self.buf.put_slice(h.key);
            let (vl, _) = nullable_len(h.value, "header value")?;
            put_nullable(&mut self.buf, vl, h.value);
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// Finishes the batch: compresses the records if configured, writes the header (base offset,
    /// term and index zero — the broker fills them in — with the prefix CRC of that zero prefix)
    /// and the CRC, and returns the batch. The builder is then empty and ready for the next batch.
    ///
    /// # Errors
    /// [`BuildError::Empty`] with no records; [`BuildError::Compression`];
    /// [`BuildError::TooLarge`] if the batch exceeds `u32::MAX` bytes.
    pub fn finish(&mut self) -> Result<Bytes, BuildError> {
        if self.count == 0 {
            return Err(BuildError::Empty);
        }
        let codec = self.options.compression;
        let total = if codec == Compression::None {
            self.buf.len()
        } else {
            self.scratch.clear();
            codec.compress_into(&self.buf[HEADER_LEN..], &mut self.scratch)?;
            HEADER_LEN + self.scratch.len()
        };
        // Check the size before replacing the records with their compressed form, so a failed
        // `finish` leaves the builder's records untouched.
        let batch_length = u32::try_from(total - LENGTH_PREFIX_LEN).map_err(|_| BuildError::TooLarge {
            what: "batch",
            size: total as u64,
        })?;
        if codec != Compression::None {
            self.buf.truncate(HEADER_LEN);
            self.buf.extend_from_slice(&self.scratch);
        }
        let header = BatchHeader {
            last_offset_delta: self.count - 1,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.options.producer_id,
            producer_epoch: self.options.producer_epoch,
            base_sequence: self.options.base_sequence,
            record_count: self.count,
            ..unassigned_header(batch_length, Attributes::new(codec, self.options.timestamp_type, false))
        };
        write_header_and_crc(&mut self.buf, &header);
        let out = self.buf.split().freeze();
        self.count = 0;
        self.max_timestamp = i64::MIN;
        self.buf.put_bytes(0, HEADER_LEN);
        Ok(out)
    }
}

/// Encodes a control batch (no records, no offset) of the given type and payload. Base offset,
/// term and index are zero (with the prefix CRC of that zero prefix); the storage engine fills
/// them in.
///
/// # Errors
/// [`BuildError::TooLarge`] if the payload does not fit a batch.
pub fn control_batch(control_type: ControlType, payload: &[u8], timestamp: i64) -> Result<Bytes, BuildError> {
    let total = HEADER_LEN + CONTROL_TYPE_LEN + payload.len();
    let batch_length = u32::try_from(total - LENGTH_PREFIX_LEN).map_err(|_| BuildError::TooLarge {
        what: "control batch",
        size: total as u64,
    })?;
    let mut buf = BytesMut::with_capacity(total);
    buf.put_bytes(0, HEADER_LEN);
    buf.put_u16(control_type as u16);
    buf.put_slice(payload);
    let header = BatchHeader {
        first_timestamp: timestamp,
        max_timestamp: timestamp,
        ..unassigned_header(
            batch_length,
            Attributes::new(Compression::None, TimestampType::CreateTime, true),
        )
    };
    write_header_and_crc(&mut buf, &header);
    Ok(buf.freeze())
}

/// A header with the broker-owned fields (base offset, term, index) zero, no producer, no
/// records, and no CRCs yet.
fn unassigned_header(batch_length: u32, attributes: Attributes) -> BatchHeader {
    BatchHeader {
        base_offset: Offset(0),
        batch_length,
        raft_term: RaftTerm(0),
        raft_index: RaftIndex(0),
        prefix_crc: 0,
        magic: FORMAT_VERSION,
        crc: 0,
        attributes,
        last_offset_delta: 0,
        first_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 0,
    }
}

/// Writes `header` over the start of `batch`, then the broker-owned prefix with its prefix CRC
/// (so even a batch no broker has touched is self-consistent), then the CRC of everything after
/// the CRC field.
fn write_header_and_crc(batch: &mut [u8], header: &BatchHeader) {
    header.write(batch);
    batch[..BROKER_FIELDS_LEN].copy_from_slice(&BatchHeader::broker_fields(
        header.batch_length,
        header.base_offset,
        header.raft_term,
        header.raft_index,
    ));
    let crc = compute_crc(batch);
    batch[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}
