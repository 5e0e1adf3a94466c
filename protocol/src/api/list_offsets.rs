//! ListOffsets (key 2): earliest, latest, or the first offset at or after a timestamp.
//!
//! v0 request: `topics: [name string, partitions: [partition i32, timestamp i64]]` where
//! timestamp −2 = earliest (log start), −1 = latest (high watermark), else ms since the epoch.
//! v0 response: `topics: [name string, partitions: [partition i32, error_code i16, timestamp i64,
//! offset i64, leader_id i32]]` (offset −1 if no record is that recent).
//!
//! v1 adds `current_leader_term i64` after each request partition's `timestamp` and
//! `leader_term i64` after each response partition's `leader_id`, fencing deposed leaders as
//! Fetch v1 does: a replica whose own term is lower than the request's answers
//! `UNKNOWN_LEADER_EPOCH`, so a reader that was served by a later leader is never handed an
//! older end of the log.

use bytes::{BufMut, BytesMut};

use super::{Body, MinLen, TopicData, get_array, put_body_array};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::Reader;

/// Timestamp meaning "the log start offset".
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// Timestamp meaning "the high watermark".
pub const LATEST_TIMESTAMP: i64 = -1;

/// One partition to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    /// Partition index.
    pub partition: i32,
    /// [`EARLIEST_TIMESTAMP`], [`LATEST_TIMESTAMP`] or ms since the epoch.
    pub timestamp: i64,
    /// The highest leader term the reader has been served from; −1 for no check (v1; v0
    /// sends none).
    pub current_leader_term: i64,
}

impl Body for ListOffsetsPartition {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i64(self.timestamp);
        if version >= 1 {
            out.put_i64(self.current_leader_term);
        }
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            timestamp: r.i64("timestamp")?,
            current_leader_term: if version >= 1 {
                r.i64("current leader term")?
            } else {
                -1
            },
        })
    }
}

impl MinLen for ListOffsetsPartition {
    const MIN_LEN: usize = 12;
}

/// ListOffsets request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOffsetsRequest {
    /// Per-topic partitions.
    pub topics: Vec<TopicData<ListOffsetsPartition>>,
}

impl Body for ListOffsetsRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: get_array(version, r, "topics")?,
        })
    }
}

/// One partition's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    /// Partition index.
    pub partition: i32,
    /// Outcome.
    pub error: ErrorCode,
    /// Timestamp of the record found (−1 for earliest/latest or none).
    pub timestamp: i64,
    /// The offset, −1 if none.
    pub offset: i64,
    /// The leader's node id when `error` is `NOT_LEADER` (−1 if unknown).
    pub leader_id: i32,
    /// The serving leader's Raft term (−1 when it did not serve; v1, v0 carries none).
    pub leader_term: i64,
}

impl Body for ListOffsetsPartitionResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i16(self.error.code());
        out.put_i64(self.timestamp);
        out.put_i64(self.offset);
        out.put_i32(self.leader_id);
        if version >= 1 {
            out.put_i64(self.leader_term);
        }
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            error: ErrorCode::from_code(r.i16("error code")?),
            timestamp: r.i64("timestamp")?,
            offset: r.i64("offset")?,
            leader_id: r.i32("leader id")?,
            leader_term: if version >= 1 { r.i64("leader term")? } else { -1 },
        })
    }
}

impl MinLen for ListOffsetsPartitionResponse {
    const MIN_LEN: usize = 4 + 2 + 8 + 8 + 4;
}

/// ListOffsets response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOffsetsResponse {
    /// Per-topic answers.
    pub topics: Vec<TopicData<ListOffsetsPartitionResponse>>,
}

impl Body for ListOffsetsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: get_array(version, r, "topics")?,
        })
    }
}
