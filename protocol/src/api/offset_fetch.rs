//! OffsetFetch (key 9): a consumer group's committed offsets.
//!
//! v0 request: `group_id string`, `topics: nullable [name string, partitions [i32]]` (null =
//! every partition the group has an offset for).
//! v0 response: `error_code i16` (group level), `error_message nullable string`, `topics: [name
//! string, partitions: [partition i32, committed_offset i64 (−1 none), metadata nullable string,
//! commit_timestamp i64 (ms, −1 none), error_code i16]]`.

use bytes::{BufMut, BytesMut};

use super::{
    Body, MIN_STRING_LEN, MinLen, TopicData, get_array, get_i32_array, get_nullable_array, put_body_array,
    put_i32_array, put_nullable_body_array,
};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_nullable_string, put_nullable_string_lossy, put_string};

/// A topic's partitions to look up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchTopic {
    /// Topic name.
    pub name: String,
    /// Partition indexes.
    pub partitions: Vec<i32>,
}

impl Body for OffsetFetchTopic {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.name);
        put_i32_array(out, &self.partitions);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            name: r.string("topic name")?,
            partitions: get_i32_array(r, "partitions")?,
        })
    }
}

impl MinLen for OffsetFetchTopic {
    const MIN_LEN: usize = MIN_STRING_LEN + 4;
}

/// OffsetFetch request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchRequest {
    /// The group.
    pub group_id: String,
    /// The partitions to look up; `None` for every partition the group has an offset for.
    pub topics: Option<Vec<OffsetFetchTopic>>,
}

impl Body for OffsetFetchRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        put_nullable_body_array(version, out, self.topics.as_deref());
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_id: r.string("group id")?,
            topics: get_nullable_array(version, r, "topics")?,
        })
    }
}

/// One partition's committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchPartitionResponse {
    /// Partition index.
    pub partition: i32,
    /// The committed offset, −1 if none.
    pub committed_offset: i64,
    /// The metadata committed with it.
    pub metadata: Option<String>,
    /// When it was committed, ms since the epoch; −1 if none.
    pub commit_timestamp: i64,
    /// Outcome.
    pub error: ErrorCode,
}

impl Body for OffsetFetchPartitionResponse {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.partition);
        out.put_i64(self.committed_offset);
        put_nullable_string(out, self.metadata.as_deref());
        out.put_i64(self.commit_timestamp);
        out.put_i16(self.error.code());
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partition: r.i32("partition")?,
            committed_offset: r.i64("committed offset")?,
            metadata: r.nullable_string("metadata")?,
            commit_timestamp: r.i64("commit timestamp")?,
            error: ErrorCode::from_code(r.i16("error code")?),
        })
    }
}

impl MinLen for OffsetFetchPartitionResponse {
    const MIN_LEN: usize = 4 + 8 + MIN_STRING_LEN + 8 + 2;
}

/// OffsetFetch response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchResponse {
    /// Group-level outcome.
    pub error: ErrorCode,
    /// Detail for a group-level error.
    pub message: Option<String>,
    /// Per-topic offsets.
    pub topics: Vec<TopicData<OffsetFetchPartitionResponse>>,
}

impl Body for OffsetFetchResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
            topics: get_array(version, r, "topics")?,
        })
    }
}
