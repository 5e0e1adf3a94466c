//! DeleteTopics (key 20).
//!
//! v0 request: `names: [string]`, `timeout_ms i32`.
//! v0 response: `topics: [name string, error_code i16, error_message nullable string]`.

use bytes::{BufMut, BytesMut};

use super::{Body, MIN_STRING_LEN, TopicResult, get_array, put_body_array};
use crate::error::DecodeError;
use crate::wire::{Reader, put_array, put_string};

/// DeleteTopics request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteTopicsRequest {
    /// Topics to delete.
    pub names: Vec<String>,
    /// How long to wait for deletion to complete.
    pub timeout_ms: i32,
}

impl Body for DeleteTopicsRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_array(out, &self.names, |o, n| put_string(o, n));
        out.put_i32(self.timeout_ms);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            names: r.array(MIN_STRING_LEN, "names", |r| r.string("topic name"))?,
            timeout_ms: r.i32("timeout ms")?,
        })
    }
}

/// DeleteTopics response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteTopicsResponse {
    /// One result per requested topic.
    pub topics: Vec<TopicResult>,
}

impl Body for DeleteTopicsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: get_array(version, r, "topics")?,
        })
    }
}
