//! Produce (key 0): append record batches.
//!
//! v0 request: `acks i16` (−1 all, 1 leader, 0 none), `timeout_ms i32`, `topics: [name string,
//! partitions: [partition i32, records bytes]]` — `records` is one or more whole record batches
//! back to back (see `FORMAT.md`), decoded as a zero-copy slice of the frame.
//! v0 response: `topics: [name string, partitions: [partition i32, error_code i16, base_offset
//! i64, log_append_time i64, log_start_offset i64, leader_id i32, error_message nullable
//! string]]`. With `acks = 0` the broker sends no response.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Body, MinLen, TopicData, get_array, put_body_array};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_bytes, put_nullable_string_lossy};

/// When a produce request is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// No response at all.
    None,
    /// Once the leader has appended the batch.
    Leader,
    /// Once the batch is committed by the partition's Raft group.
    #[default]
    All,
}

impl Acks {
    /// The wire value.
    pub fn to_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses the wire value.
    pub fn from_i16(v: i16) -> Option<Self> {
        match v {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// One partition's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    /// Partition index.
    pub partition: i32,
    /// Whole record batches.
    pub records: Bytes,
}

impl Body for ProducePartition {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        put_bytes(out, &self.records);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            records: r.bytes("records")?,
        })
    }
}

impl MinLen for ProducePartition {
    const MIN_LEN: usize = 8;
}

/// Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// Raw `acks` (validated by the broker: −1, 0 or 1).
    pub acks: i16,
    /// How long the broker may wait for the acks asked for.
    pub timeout_ms: i32,
    /// Per-topic partitions.
    pub topics: Vec<TopicData<ProducePartition>>,
}

impl Body for ProduceRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.acks);
        out.put_i32(self.timeout_ms);
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            acks: r.i16("acks")?,
            timeout_ms: r.i32("timeout ms")?,
            topics: get_array(version, r, "topics")?,
        })
    }
}

/// One partition's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    /// Partition index.
    pub partition: i32,
    /// Outcome.
    pub error: ErrorCode,
    /// Offset of the first record appended, −1 on error.
    pub base_offset: i64,
    /// Broker append time if the topic uses log-append time, else −1.
    pub log_append_time: i64,
    /// The partition's log start offset, −1 if unknown.
    pub log_start_offset: i64,
    /// The leader's node id when `error` is `NOT_LEADER` (−1 if unknown).
    pub leader_id: i32,
    /// Detail when `error` is not `None`.
    pub message: Option<String>,
}

impl Body for ProducePartitionResponse {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i16(self.error.code());
        out.put_i64(self.base_offset);
        out.put_i64(self.log_append_time);
        out.put_i64(self.log_start_offset);
        out.put_i32(self.leader_id);
        put_nullable_string_lossy(out, self.message.as_deref());
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            error: ErrorCode::from_code(r.i16("error code")?),
            base_offset: r.i64("base offset")?,
            log_append_time: r.i64("log append time")?,
            log_start_offset: r.i64("log start offset")?,
            leader_id: r.i32("leader id")?,
            message: r.nullable_string("error message")?,
        })
    }
}

impl MinLen for ProducePartitionResponse {
    const MIN_LEN: usize = 4 + 2 + 8 + 8 + 8 + 4 + 2;
}

/// Produce response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceResponse {
    /// Per-topic outcomes.
    pub topics: Vec<TopicData<ProducePartitionResponse>>,
}

impl Body for ProduceResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: get_array(version, r, "topics")?,
        })
    }
}
