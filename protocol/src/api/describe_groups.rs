//! DescribeGroups (key 15): consumer groups' state, members and assignments.
//!
//! v0 request: `group_ids [string]`.
//! v0 response: `groups: [error_code i16, error_message nullable string, group_id string, state
//! string, group_epoch i32, assignment_epoch i32, members: [member_id string, instance_id
//! nullable string, client_id string, client_host string, member_epoch i32,
//! subscribed_topic_names [string], subscribed_topic_regex nullable string, assignment: [topic
//! string, partitions [i32]], target_assignment: [topic string, partitions [i32]]]]`.

use bytes::{BufMut, BytesMut};

use super::{
    Body, MIN_STRING_LEN, MinLen, TopicPartitions, get_array, get_string_array, put_body_array, put_string_array,
};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_nullable_string, put_nullable_string_lossy, put_string};

/// DescribeGroups request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeGroupsRequest {
    /// The groups to describe.
    pub group_ids: Vec<String>,
}

impl Body for DescribeGroupsRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string_array(out, &self.group_ids);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_ids: get_string_array(r, "group ids")?,
        })
    }
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedMember {
    /// The member's id.
    pub member_id: String,
    /// A static member's instance id.
    pub instance_id: Option<String>,
    /// The client id of the member's last heartbeat.
    pub client_id: String,
    /// The address the member's last heartbeat came from.
    pub client_host: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// The topics it subscribes to by name.
    pub subscribed_topic_names: Vec<String>,
    /// The regular expression of topics it subscribes to, if any.
    pub subscribed_topic_regex: Option<String>,
    /// The partitions it owns now.
    pub assignment: Vec<TopicPartitions>,
    /// The partitions it is to own once the rebalance in progress completes.
    pub target_assignment: Vec<TopicPartitions>,
}

impl Body for DescribedMember {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_string(out, &self.member_id);
        put_nullable_string(out, self.instance_id.as_deref());
        put_string(out, &self.client_id);
        put_string(out, &self.client_host);
        out.put_i32(self.member_epoch);
        put_string_array(out, &self.subscribed_topic_names);
        put_nullable_string(out, self.subscribed_topic_regex.as_deref());
        put_body_array(version, out, &self.assignment);
        put_body_array(version, out, &self.target_assignment);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            member_id: r.string("member id")?,
            instance_id: r.nullable_string("instance id")?,
            client_id: r.string("client id")?,
            client_host: r.string("client host")?,
            member_epoch: r.i32("member epoch")?,
            subscribed_topic_names: get_string_array(r, "subscribed topic names")?,
            subscribed_topic_regex: r.nullable_string("subscribed topic regex")?,
            assignment: get_array(version, r, "assignment")?,
            target_assignment: get_array(version, r, "target assignment")?,
        })
    }
}

impl MinLen for DescribedMember {
    const MIN_LEN: usize = 5 * MIN_STRING_LEN + 4 + 3 * 4;
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedGroup {
    /// Outcome for this group.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
    /// The group id.
    pub group_id: String,
    /// The group's state.
    pub state: String,
    /// The group's epoch (bumped when its membership or subscriptions change).
    pub group_epoch: i32,
    /// The epoch of the group's target assignment.
    pub assignment_epoch: i32,
    /// The members.
    pub members: Vec<DescribedMember>,
}

impl Body for DescribedGroup {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
        put_string(out, &self.group_id);
        put_string(out, &self.state);
        out.put_i32(self.group_epoch);
        out.put_i32(self.assignment_epoch);
        put_body_array(version, out, &self.members);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
            group_id: r.string("group id")?,
            state: r.string("group state")?,
            group_epoch: r.i32("group epoch")?,
            assignment_epoch: r.i32("assignment epoch")?,
            members: get_array(version, r, "members")?,
        })
    }
}

impl MinLen for DescribedGroup {
    const MIN_LEN: usize = 2 + 3 * MIN_STRING_LEN + 4 + 4 + 4;
}

/// DescribeGroups response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeGroupsResponse {
    /// One per requested group.
    pub groups: Vec<DescribedGroup>,
}

impl Body for DescribeGroupsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.groups);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            groups: get_array(version, r, "groups")?,
        })
    }
}
