//! DeleteGroups (key 42): delete empty consumer groups and their committed offsets.
//!
//! v0 request: `group_ids [string]`.
//! v0 response: `results: [group_id string, error_code i16, error_message nullable string]`.

use bytes::{BufMut, BytesMut};

use super::{Body, MIN_STRING_LEN, MinLen, get_array, get_string_array, put_body_array, put_string_array};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_nullable_string_lossy, put_string};

/// DeleteGroups request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteGroupsRequest {
    /// The groups to delete.
    pub group_ids: Vec<String>,
}

impl Body for DeleteGroupsRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string_array(out, &self.group_ids);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_ids: get_string_array(r, "group ids")?,
        })
    }
}

/// Outcome for one group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteGroupResult {
    /// The group id.
    pub group_id: String,
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
}

impl Body for DeleteGroupResult {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_id: r.string("group id")?,
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
        })
    }
}

impl MinLen for DeleteGroupResult {
    const MIN_LEN: usize = MIN_STRING_LEN + 2 + MIN_STRING_LEN;
}

/// DeleteGroups response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteGroupsResponse {
    /// One result per requested group.
    pub results: Vec<DeleteGroupResult>,
}

impl Body for DeleteGroupsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.results);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            results: get_array(version, r, "results")?,
        })
    }
}
