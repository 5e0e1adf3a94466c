//! ConsumerGroupHeartbeat (key 68): a consumer group member joins, heartbeats, changes its
//! subscription or leaves, and learns its assignment (the consumer rebalance protocol of
//! KIP-848, without client-side assignors).
//!
//! v0 request: `group_id string`, `member_id string` ("" to join; the coordinator assigns one),
//! `member_epoch i32` (0 join, −1 leave, −2 a static member leaving for now, else its current
//! epoch), `instance_id nullable string`, `rebalance_timeout_ms i32` (−1 default),
//! `session_timeout_ms i32` (−1 broker default), `subscribed_topic_names nullable [string]`
//! (null = unchanged), `subscribed_topic_regex nullable string` (null = unchanged, "" = none),
//! `owned_partitions: nullable [topic string, partitions [i32]]` (null = unchanged).
//! v0 response: `error_code i16`, `error_message nullable string`, `member_id string`,
//! `member_epoch i32`, `heartbeat_interval_ms i32`, `assignment: nullable [topic string,
//! partitions [i32]]` (null on error).

use bytes::{BufMut, BytesMut};

use super::{
    Body, TopicPartitions, get_nullable_array, get_nullable_string_array, put_nullable_body_array,
    put_nullable_string_array,
};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_nullable_string, put_nullable_string_lossy, put_string};

/// Member epoch of a member joining the group.
pub const JOIN_EPOCH: i32 = 0;
/// Member epoch of a member leaving the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for now (it keeps its assignment until its session
/// times out, and may come back with the same instance id).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// ConsumerGroupHeartbeat request.
///
/// `Default` is a join ([`JOIN_EPOCH`], empty member id) with default timeouts (−1) and every
/// nullable field null (unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupHeartbeatRequest {
    /// The group.
    pub group_id: String,
    /// The member's id; "" to join (the coordinator assigns one).
    pub member_id: String,
    /// [`JOIN_EPOCH`], [`LEAVE_EPOCH`], [`STATIC_LEAVE_EPOCH`], or the member's current epoch.
    pub member_epoch: i32,
    /// A static member's instance id; `None` for a dynamic member.
    pub instance_id: Option<String>,
    /// How long the member may take to revoke partitions in a rebalance; −1 for the default.
    pub rebalance_timeout_ms: i32,
    /// How long without a heartbeat before the member is removed; −1 for the broker default.
    pub session_timeout_ms: i32,
    /// The topics subscribed to; `None` if unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// A regular expression of topics subscribed to; `None` if unchanged, "" for none.
    pub subscribed_topic_regex: Option<String>,
    /// The partitions the member owns now; `None` if unchanged.
    pub owned_partitions: Option<Vec<TopicPartitions>>,
}

impl Default for ConsumerGroupHeartbeatRequest {
    fn default() -> Self {
        Self {
            group_id: String::new(),
            member_id: String::new(),
            member_epoch: JOIN_EPOCH,
            instance_id: None,
            rebalance_timeout_ms: -1,
            session_timeout_ms: -1,
            subscribed_topic_names: None,
            subscribed_topic_regex: None,
            owned_partitions: None,
        }
    }
}

impl Body for ConsumerGroupHeartbeatRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        put_string(out, &self.member_id);
        out.put_i32(self.member_epoch);
        put_nullable_string(out, self.instance_id.as_deref());
        out.put_i32(self.rebalance_timeout_ms);
        out.put_i32(self.session_timeout_ms);
        put_nullable_string_array(out, self.subscribed_topic_names.as_deref());
        put_nullable_string(out, self.subscribed_topic_regex.as_deref());
        put_nullable_body_array(version, out, self.owned_partitions.as_deref());
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_id: r.string("group id")?,
            member_id: r.string("member id")?,
            member_epoch: r.i32("member epoch")?,
            instance_id: r.nullable_string("instance id")?,
            rebalance_timeout_ms: r.i32("rebalance timeout ms")?,
            session_timeout_ms: r.i32("session timeout ms")?,
            subscribed_topic_names: get_nullable_string_array(r, "subscribed topic names")?,
            subscribed_topic_regex: r.nullable_string("subscribed topic regex")?,
            owned_partitions: get_nullable_array(version, r, "owned partitions")?,
        })
    }
}

/// ConsumerGroupHeartbeat response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupHeartbeatResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
    /// The member's id (assigned by the coordinator on a join).
    pub member_id: String,
    /// The member's epoch now.
    pub member_epoch: i32,
    /// How often the member should heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The partitions the member should own now; `None` on error.
    pub assignment: Option<Vec<TopicPartitions>>,
}

impl Body for ConsumerGroupHeartbeatResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
        put_string(out, &self.member_id);
        out.put_i32(self.member_epoch);
        out.put_i32(self.heartbeat_interval_ms);
        put_nullable_body_array(version, out, self.assignment.as_deref());
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
            member_id: r.string("member id")?,
            member_epoch: r.i32("member epoch")?,
            heartbeat_interval_ms: r.i32("heartbeat interval ms")?,
            assignment: get_nullable_array(version, r, "assignment")?,
        })
    }
}
