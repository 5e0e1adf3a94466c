//! Zero-copy record reading.
//!
//! [`Records`] iterates the records of a batch's (decompressed) records section. Keys, values and
//! headers come out as [`Bytes`] slices of that section: a reference-count increment, never a
//! copy. The record layout is documented in [`crate::batch`].

use std::ops::Range;

use bytes::Bytes;

use crate::error::DecodeError;
use crate::types::Offset;
use crate::varint::{get_varint, get_varlong};

/// Smallest encoded header: key length (1) + value length (1).
const MIN_HEADER_LEN: usize = 2;

/// Positions of one record's parts inside a records section.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    /// Position just past the record.
    pub end: usize,
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<Range<usize>>,
    pub value: Option<Range<usize>>,
    pub headers: Range<usize>,
    pub header_count: u32,
}

fn invalid(index: u32, reason: &'static str) -> DecodeError {
    DecodeError::InvalidRecord { index, reason }
}

/// Reads a nullable byte field (varint length, −1 = null) ending no later than `buf.len()`.
fn nullable_field(
    buf: &[u8],
    pos: &mut usize,
    index: u32,
    what: &'static str,
) -> Result<Option<Range<usize>>, DecodeError> {
    let len = get_varint(buf, pos).map_err(|_| invalid(index, what))?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| invalid(index, what))?;
    let start = *pos;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| invalid(index, what))?;
    *pos = end;
    Ok(Some(start..end))
}

/// Parses the record starting at `section[start]`, checking that every field lies inside the
/// record's declared length and that the fields fill it exactly. `index` is the record's position
/// in its batch, for error messages.
pub(crate) fn parse_record(section: &[u8], start: usize, index: u32) -> Result<RawRecord, DecodeError> {
    // The records section is always complete (its batch framed exactly, or it was decompressed
    // whole), so a record running past its end is malformed, never `Truncated`: that error tells
    // stream readers to wait for more bytes, which would never come.
    let mut pos = start;
    let len = get_varint(section, &mut pos).map_err(|_| invalid(index, "bad record length"))?;
    let len = usize::try_from(len).map_err(|_| invalid(index, "negative record length"))?;
    let end = pos
        .checked_add(len)
        .filter(|&e| e <= section.len())
        .ok_or_else(|| invalid(index, "record extends past the end of the records section"))?;
    // Every read below is bounded by the record's own end, not the section's.
    let rec = &section[..end];
    let Some(&_attributes) = rec.get(pos) else {
        return Err(invalid(index, "record too short for attributes"));
    };
    pos += 1;
    let timestamp_delta = get_varlong(rec, &mut pos).map_err(|_| invalid(index, "bad timestamp delta"))?;
    let offset_delta = i64::from(get_varint(rec, &mut pos).map_err(|_| invalid(index, "bad offset delta"))?);
    let key = nullable_field(rec, &mut pos, index, "bad key length")?;
    let value = nullable_field(rec, &mut pos, index, "bad value length")?;
    let header_count = get_varint(rec, &mut pos).map_err(|_| invalid(index, "bad header count"))?;
    let header_count = u32::try_from(header_count).map_err(|_| invalid(index, "negative header count"))?;
    // A peer-supplied count is bounded by the bytes that could hold it before we loop on it.
    if header_count as usize > (end - pos) / MIN_HEADER_LEN {
        return Err(invalid(index, "header count exceeds record length"));
    }
    let headers_start = pos;
    for _ in 0..header_count {
        let key = nullable_field(rec, &mut pos, index, "bad header key length")?;
        if key.is_none() {
            return Err(invalid(index, "null header key"));
        }
        nullable_field(rec, &mut pos, index, "bad header value length")?;
    }
    if pos != end {
        return Err(invalid(index, "record length does not match its fields"));
    }
    Ok(RawRecord {
        end,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers: headers_start..end,
        header_count,
    })
}

/// One record, borrowed from its batch without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset: the batch's base offset plus its offset delta.
    pub offset: Offset,
    /// Timestamp in ms since the Unix epoch.
    pub timestamp: i64,
    /// Key, `None` if null.
    pub key: Option<Bytes>,
    /// Value, `None` if null.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: RecordHeaders,
}

/// A record's headers, iterated lazily from the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordHeaders {
    raw: Bytes,
    count: u32,
}

impl RecordHeaders {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates `(key, value)` pairs; values may be null.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            headers: self,
            pos: 0,
            left: self.count,
        }
    }
}

/// Iterator over [`RecordHeaders`].
#[derive(Debug)]
pub struct HeaderIter<'a> {
    headers: &'a RecordHeaders,
    pos: usize,
    left: u32,
}

impl Iterator for HeaderIter<'_> {
    type Item = (Bytes, Option<Bytes>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let raw = &self.headers.raw;
        // parse_record validated these bytes; a failure here can only mean a bug, so we end the
        // iteration rather than panic.
        let key = nullable_field(raw, &mut self.pos, 0, "").ok().flatten()?;
        let value = nullable_field(raw, &mut self.pos, 0, "").ok()?;
        Some((raw.slice(key), value.map(|v| raw.slice(v))))
    }
}

/// Iterator over the records of one batch. Yields an error (once, then stops) if the records
/// section is malformed, which for a validated uncompressed batch cannot happen but for a
/// compressed batch — whose contents the broker never checked — can.
#[derive(Debug, Clone)]
pub struct Records {
    section: Bytes,
    pos: usize,
    index: u32,
    count: u32,
    base_offset: Offset,
    first_timestamp: i64,
    failed: bool,
}

impl Records {
    pub(crate) fn new(section: Bytes, count: u32, base_offset: Offset, first_timestamp: i64) -> Self {
        Self {
            section,
            pos: 0,
            index: 0,
            count,
            base_offset,
            first_timestamp,
            failed: false,
        }
    }

    fn fail(&mut self, e: DecodeError) -> Option<Result<Record, DecodeError>> {
        self.failed = true;
        Some(Err(e))
    }
}

impl Iterator for Records {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.index == self.count {
            if self.pos != self.section.len() {
                return self.fail(DecodeError::RecordCountMismatch {
                    expected: self.count,
                    actual: self.count.saturating_add(1),
                });
            }
            return None;
        }
        if self.pos >= self.section.len() {
            let actual = self.index;
            return self.fail(DecodeError::RecordCountMismatch {
                expected: self.count,
                actual,
            });
        }
        let raw = match parse_record(&self.section, self.pos, self.index) {
            Ok(raw) => raw,
            Err(e) => return self.fail(e),
        };
        if raw.offset_delta != i64::from(self.index) {
            let index = self.index;
            return self.fail(DecodeError::InvalidRecord {
                index,
                reason: "offset delta is not the record's position",
            });
        }
        self.pos = raw.end;
        self.index += 1;
        Some(Ok(Record {
            // base_offset is untrusted (not CRC-covered); saturate rather than overflow.
            offset: Offset(self.base_offset.0.saturating_add(raw.offset_delta as u64)),
            timestamp: self.first_timestamp.wrapping_add(raw.timestamp_delta),
            key: raw.key.map(|r| self.section.slice(r)),
            value: raw.value.map(|r| self.section.slice(r)),
            headers: RecordHeaders {
                raw: self.section.slice(raw.headers),
                count: raw.header_count,
            },
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.index) as usize;
        (0, Some(left))
    }
}
