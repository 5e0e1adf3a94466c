//! CreateTopics (key 19).
//!
//! v0 request: `topics: [name string, num_partitions i32, replication_factor i16, configs: [key
//! string, value string]]`, `timeout_ms i32`, `validate_only bool`.
//! v0 response: `topics: [name string, error_code i16, error_message nullable string]`.

use bytes::{BufMut, BytesMut};

use super::{Body, ConfigEntry, MIN_STRING_LEN, MinLen, TopicResult, get_array, put_body_array};
use crate::error::DecodeError;
use crate::wire::{Reader, put_string};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopic {
    /// Name.
    pub name: String,
    /// Number of partitions (≥ 1).
    pub num_partitions: i32,
    /// Replicas per partition (≥ 1).
    pub replication_factor: i16,
    /// Topic config overrides.
    pub configs: Vec<ConfigEntry>,
}

impl Body for CreatableTopic {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_string(out, &self.name);
        out.put_i32(self.num_partitions);
        out.put_i16(self.replication_factor);
        put_body_array(version, out, &self.configs);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            name: r.string("topic name")?,
            num_partitions: r.i32("num partitions")?,
            replication_factor: r.i16("replication factor")?,
            configs: get_array(version, r, "configs")?,
        })
    }
}

impl MinLen for CreatableTopic {
    const MIN_LEN: usize = MIN_STRING_LEN + 4 + 2 + 4;
}

/// CreateTopics request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicsRequest {
    /// Topics to create.
    pub topics: Vec<CreatableTopic>,
    /// How long to wait for creation to complete.
    pub timeout_ms: i32,
    /// Check the request without creating anything.
    pub validate_only: bool,
}

impl Body for CreateTopicsRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.topics);
        out.put_i32(self.timeout_ms);
        out.put_u8(u8::from(self.validate_only));
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: get_array(version, r, "topics")?,
            timeout_ms: r.i32("timeout ms")?,
            validate_only: r.bool("validate only")?,
        })
    }
}

/// CreateTopics response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicsResponse {
    /// One result per requested topic.
    pub topics: Vec<TopicResult>,
}

impl Body for CreateTopicsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: get_array(version, r, "topics")?,
        })
    }
}
