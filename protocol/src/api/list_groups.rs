//! ListGroups (key 16): the consumer groups, optionally filtered by state.
//!
//! v0 request: `states_filter [string]` (empty = all).
//! v0 response: `error_code i16`, `groups: [group_id string, state string, member_count i32]`.

use bytes::{BufMut, BytesMut};

use super::{Body, MIN_STRING_LEN, MinLen, get_array, get_string_array, put_body_array, put_string_array};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_string};

/// ListGroups request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsRequest {
    /// The states to list groups in; empty for all.
    pub states_filter: Vec<String>,
}

impl Body for ListGroupsRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string_array(out, &self.states_filter);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            states_filter: get_string_array(r, "states filter")?,
        })
    }
}

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedGroup {
    /// The group id.
    pub group_id: String,
    /// The group's state.
    pub state: String,
    /// How many members it has.
    pub member_count: i32,
}

impl Body for ListedGroup {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        put_string(out, &self.state);
        out.put_i32(self.member_count);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_id: r.string("group id")?,
            state: r.string("group state")?,
            member_count: r.i32("member count")?,
        })
    }
}

impl MinLen for ListedGroup {
    const MIN_LEN: usize = 2 * MIN_STRING_LEN + 4;
}

/// ListGroups response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// The groups.
    pub groups: Vec<ListedGroup>,
}

impl Body for ListGroupsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_body_array(version, out, &self.groups);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            groups: get_array(version, r, "groups")?,
        })
    }
}
