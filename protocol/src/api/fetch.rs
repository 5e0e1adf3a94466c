//! Fetch (key 1): read record batches, long-polling.
//!
//! v0 request: `max_wait_ms i32`, `min_bytes i32`, `max_bytes i32`, `topics: [name string,
//! partitions: [partition i32, fetch_offset i64, partition_max_bytes i32]]`.
//! v0 response: `topics: [name string, partitions: [partition i32, error_code i16,
//! high_watermark i64, log_start_offset i64, leader_id i32, records bytes]]` — `records` is whole
//! batches exactly as stored (consumers skip control batches).
//!
//! v1 adds `current_leader_term i64` after each request partition's `partition_max_bytes` and
//! `leader_term i64` after each response partition's `leader_id`. A reader sends the highest
//! leader term it has been served from (−1: none, no check); a replica whose own term is lower
//! (a deposed leader that has not heard of its successor yet) answers `UNKNOWN_LEADER_EPOCH`
//! instead of data, so a reader never sees the high watermark go back.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Body, MinLen, TopicData, get_array, put_body_array};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_bytes};

/// One partition to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    /// Partition index.
    pub partition: i32,
    /// Offset to read from.
    pub fetch_offset: i64,
    /// Most bytes to return for this partition (the first batch is returned whole regardless).
    pub partition_max_bytes: i32,
    /// The highest leader term the reader has been served from; −1 for no check (v1; v0
    /// sends none).
    pub current_leader_term: i64,
}

impl Body for FetchPartition {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i64(self.fetch_offset);
        out.put_i32(self.partition_max_bytes);
        if version >= 1 {
            out.put_i64(self.current_leader_term);
        }
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            fetch_offset: r.i64("fetch offset")?,
            partition_max_bytes: r.i32("partition max bytes")?,
            current_leader_term: if version >= 1 {
                r.i64("current leader term")?
            } else {
                -1
            },
        })
    }
}

impl MinLen for FetchPartition {
    const MIN_LEN: usize = 16;
}

/// Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Longest the broker may wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Return as soon as this many bytes are available.
    pub min_bytes: i32,
    /// Most bytes in the whole response.
    pub max_bytes: i32,
    /// Per-topic partitions.
    pub topics: Vec<TopicData<FetchPartition>>,
}

impl Body for FetchRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i32(self.max_wait_ms);
        out.put_i32(self.min_bytes);
        out.put_i32(self.max_bytes);
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            max_wait_ms: r.i32("max wait ms")?,
            min_bytes: r.i32("min bytes")?,
            max_bytes: r.i32("max bytes")?,
            topics: get_array(version, r, "topics")?,
        })
    }
}

/// One partition's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    /// Partition index.
    pub partition: i32,
    /// Outcome.
    pub error: ErrorCode,
    /// Offset up to which records are committed.
    pub high_watermark: i64,
    /// First offset in the log.
    pub log_start_offset: i64,
    /// The leader's node id when `error` is `NOT_LEADER` (−1 if unknown).
    pub leader_id: i32,
    /// The term of the leader that served this answer (v1; −1 if unknown or in v0).
    pub leader_term: i64,
    /// Whole batches.
    pub records: Bytes,
}

impl Body for FetchPartitionResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i16(self.error.code());
        out.put_i64(self.high_watermark);
        out.put_i64(self.log_start_offset);
        out.put_i32(self.leader_id);
        if version >= 1 {
            out.put_i64(self.leader_term);
        }
        put_bytes(out, &self.records);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            error: ErrorCode::from_code(r.i16("error code")?),
            high_watermark: r.i64("high watermark")?,
            log_start_offset: r.i64("log start offset")?,
            leader_id: r.i32("leader id")?,
            leader_term: if version >= 1 { r.i64("leader term")? } else { -1 },
            records: r.bytes("records")?,
        })
    }
}

impl MinLen for FetchPartitionResponse {
    const MIN_LEN: usize = 4 + 2 + 8 + 8 + 4 + 4;
}

/// Fetch response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResponse {
    /// Per-topic data.
    pub topics: Vec<TopicData<FetchPartitionResponse>>,
}

impl Body for FetchResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: get_array(version, r, "topics")?,
        })
    }
}
