//! FindCoordinator (key 10): which broker coordinates a consumer group.
//!
//! v0 request: `key string` (the group id), `key_type i8` (0 = group).
//! v0 response: `error_code i16`, `error_message nullable string`, `node_id i32`, `host string`,
//! `port i32` (the coordinator's advertised address; −1, "" and −1 on error).

use bytes::{BufMut, BytesMut};

use super::Body;
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_nullable_string_lossy, put_string};

/// Key type: the key is a consumer group id.
pub const KEY_TYPE_GROUP: i8 = 0;

/// FindCoordinator request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindCoordinatorRequest {
    /// The group id.
    pub key: String,
    /// What `key` is: [`KEY_TYPE_GROUP`].
    pub key_type: i8,
}

impl Body for FindCoordinatorRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.key);
        out.put_i8(self.key_type);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            key: r.string("coordinator key")?,
            key_type: r.i8("key type")?,
        })
    }
}

/// FindCoordinator response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindCoordinatorResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
    /// The coordinator's node id (−1 on error).
    pub node_id: i32,
    /// The coordinator's advertised host.
    pub host: String,
    /// The coordinator's advertised port.
    pub port: i32,
}

impl Body for FindCoordinatorResponse {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
        out.put_i32(self.node_id);
        put_string(out, &self.host);
        out.put_i32(self.port);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
            node_id: r.i32("node id")?,
            host: r.string("host")?,
            port: r.i32("port")?,
        })
    }
}
