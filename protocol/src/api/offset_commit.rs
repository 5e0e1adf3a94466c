//! OffsetCommit (key 8): commit a consumer group's offsets.
//!
//! v0 request: `group_id string`, `member_id string` ("" for a commit from outside group
//! membership), `member_epoch i32` (−1 outside membership), `topics: [name string, partitions:
//! [partition i32, committed_offset i64, metadata nullable string]]`.
//! v0 response: `error_message nullable string` (detail of the first error, null if none),
//! `topics: [name string, partitions: [partition i32, error_code i16]]`.

use bytes::{BufMut, BytesMut};

use super::{Body, MIN_STRING_LEN, MinLen, TopicData, get_array, put_body_array};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_nullable_string, put_nullable_string_lossy, put_string};

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitPartition {
    /// Partition index.
    pub partition: i32,
    /// The offset of the next record to consume.
    pub committed_offset: i64,
    /// Free-form client metadata stored with the offset.
    pub metadata: Option<String>,
}

impl Body for OffsetCommitPartition {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i64(self.committed_offset);
        put_nullable_string(out, self.metadata.as_deref());
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            committed_offset: r.i64("committed offset")?,
            metadata: r.nullable_string("metadata")?,
        })
    }
}

impl MinLen for OffsetCommitPartition {
    const MIN_LEN: usize = 4 + 8 + MIN_STRING_LEN;
}

/// OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitRequest {
    /// The group.
    pub group_id: String,
    /// The committing member's id; "" for a commit from outside group membership.
    pub member_id: String,
    /// The member's epoch; −1 outside group membership.
    pub member_epoch: i32,
    /// Per-topic offsets.
    pub topics: Vec<TopicData<OffsetCommitPartition>>,
}

impl Body for OffsetCommitRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        put_string(out, &self.member_id);
        out.put_i32(self.member_epoch);
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_id: r.string("group id")?,
            member_id: r.string("member id")?,
            member_epoch: r.i32("member epoch")?,
            topics: get_array(version, r, "topics")?,
        })
    }
}

/// One partition's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffsetCommitPartitionResponse {
    /// Partition index.
    pub partition: i32,
    /// Outcome.
    pub error: ErrorCode,
}

impl Body for OffsetCommitPartitionResponse {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i16(self.error.code());
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            error: ErrorCode::from_code(r.i16("error code")?),
        })
    }
}

impl MinLen for OffsetCommitPartitionResponse {
    const MIN_LEN: usize = 4 + 2;
}

/// OffsetCommit response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitResponse {
    /// Detail of the first error, `None` if none.
    pub message: Option<String>,
    /// Per-topic outcomes.
    pub topics: Vec<TopicData<OffsetCommitPartitionResponse>>,
}

impl Body for OffsetCommitResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_nullable_string_lossy(out, self.message.as_deref());
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            message: r.nullable_string("error message")?,
            topics: get_array(version, r, "topics")?,
        })
    }
}
