//! Moving partition replicas between brokers.
//!
//! **AlterPartitionReassignments (key 45)** starts (or cancels) reassignments.
//! v0 request: `partitions: [topic string, partition i32, replicas [i32]]` (an empty `replicas`
//! cancels a reassignment in progress), `timeout_ms i32`.
//! v0 response: `results: [topic string, partition i32, error_code i16, error_message nullable
//! string]`.
//!
//! **ListPartitionReassignments (key 46)** lists the reassignments in progress.
//! v0 request: empty. v0 response: `reassignments: [topic string, partition i32, replicas [i32],
//! target [i32]]` — the replicas now and the ones the partition moves to.
//!
//! **DecommissionBroker (key 1001, Strata's own)** moves every replica off a broker and keeps
//! new ones away from it.
//! v0 request: `broker_id i32`, `timeout_ms i32`.
//! v0 response: `error_code i16`, `error_message nullable string`, `partitions_moving i32`.

use bytes::{BufMut, BytesMut};

use super::{Body, MIN_STRING_LEN, MinLen, get_array, get_i32_array, put_body_array, put_i32_array};
use crate::ErrorCode;
use crate::error::DecodeError;
use crate::wire::{Reader, put_nullable_string_lossy, put_string};

/// One partition's new replica set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReassignablePartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The replicas it moves to, the preferred leader first; empty cancels.
    pub replicas: Vec<i32>,
}

impl Body for ReassignablePartition {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.topic);
        out.put_i32(self.partition);
        put_i32_array(out, &self.replicas);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: r.string("topic name")?,
            partition: r.i32("partition")?,
            replicas: get_i32_array(r, "replicas")?,
        })
    }
}

impl MinLen for ReassignablePartition {
    const MIN_LEN: usize = MIN_STRING_LEN + 4 + 4;
}

/// AlterPartitionReassignments request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlterPartitionReassignmentsRequest {
    /// The partitions to move.
    pub partitions: Vec<ReassignablePartition>,
    /// How long to wait for the controller to take the change.
    pub timeout_ms: i32,
}

impl Body for AlterPartitionReassignmentsRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.partitions);
        out.put_i32(self.timeout_ms);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            partitions: get_array(version, r, "partitions")?,
            timeout_ms: r.i32("timeout ms")?,
        })
    }
}

/// Outcome for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
}

impl Body for PartitionResult {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.topic);
        out.put_i32(self.partition);
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: r.string("topic name")?,
            partition: r.i32("partition")?,
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
        })
    }
}

impl MinLen for PartitionResult {
    const MIN_LEN: usize = MIN_STRING_LEN + 4 + 2 + 2;
}

/// AlterPartitionReassignments response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlterPartitionReassignmentsResponse {
    /// One per requested partition.
    pub results: Vec<PartitionResult>,
}

impl Body for AlterPartitionReassignmentsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.results);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            results: get_array(version, r, "results")?,
        })
    }
}

/// ListPartitionReassignments request (lists all).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPartitionReassignmentsRequest {}

impl Body for ListPartitionReassignmentsRequest {
    fn encode(&self, _version: i16, _out: &mut BytesMut) {}
    fn decode(_version: i16, _r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {})
    }
}

/// A reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OngoingReassignment {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The replicas now.
    pub replicas: Vec<i32>,
    /// The replicas it moves to.
    pub target: Vec<i32>,
}

impl Body for OngoingReassignment {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.topic);
        out.put_i32(self.partition);
        put_i32_array(out, &self.replicas);
        put_i32_array(out, &self.target);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: r.string("topic name")?,
            partition: r.i32("partition")?,
            replicas: get_i32_array(r, "replicas")?,
            target: get_i32_array(r, "target")?,
        })
    }
}

impl MinLen for OngoingReassignment {
    const MIN_LEN: usize = MIN_STRING_LEN + 4 + 4 + 4;
}

/// ListPartitionReassignments response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPartitionReassignmentsResponse {
    /// Outcome (e.g. the broker has not caught up with the metadata yet).
    pub error: ErrorCode,
    /// Every reassignment in progress.
    pub reassignments: Vec<OngoingReassignment>,
}

impl Body for ListPartitionReassignmentsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_body_array(version, out, &self.reassignments);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            reassignments: get_array(version, r, "reassignments")?,
        })
    }
}

/// DecommissionBroker request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecommissionBrokerRequest {
    /// The broker to empty.
    pub broker_id: i32,
    /// How long to wait for the controller to take the change.
    pub timeout_ms: i32,
}

impl Body for DecommissionBrokerRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.broker_id);
        out.put_i32(self.timeout_ms);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            broker_id: r.i32("broker id")?,
            timeout_ms: r.i32("timeout ms")?,
        })
    }
}

/// DecommissionBroker response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecommissionBrokerResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
    /// Partitions whose replicas on the broker started moving.
    pub partitions_moving: i32,
}

impl Body for DecommissionBrokerResponse {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
        out.put_i32(self.partitions_moving);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
            partitions_moving: r.i32("partitions moving")?,
        })
    }
}
