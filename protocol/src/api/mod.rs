//! Requests and responses, one module per API (see `protocol/PROTOCOL.md`).
//!
//! Each body type implements [`Body`]: `encode(version, out)` and `decode(version, reader)`.
//! Every API starts at version 0; [`ApiKey::versions`] is the range this build speaks, and a
//! request outside it gets `UNSUPPORTED_VERSION` rather than a guess.

pub mod api_versions;
pub mod consumer_group_heartbeat;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod init_producer_id;
pub mod leaders;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod raft_messages;
pub mod reassign;
pub mod register;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_array, put_nullable_array, put_nullable_string_lossy, put_string};

pub use api_versions::{ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse};
pub use consumer_group_heartbeat::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
pub use create_topics::{CreatableTopic, CreateTopicsRequest, CreateTopicsResponse};
pub use delete_groups::{DeleteGroupResult, DeleteGroupsRequest, DeleteGroupsResponse};
pub use delete_topics::{DeleteTopicsRequest, DeleteTopicsResponse};
pub use describe_groups::{DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, DescribedMember};
pub use fetch::{FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse};
pub use find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse};
pub use init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
pub use leaders::{LeaderAnnouncementsRequest, LeaderAnnouncementsResponse, LedPartition};
pub use list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
pub use list_offsets::{ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse};
pub use metadata::{BrokerMetadata, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata};
pub use offset_commit::{
    OffsetCommitPartition, OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse,
};
pub use offset_fetch::{OffsetFetchPartitionResponse, OffsetFetchRequest, OffsetFetchResponse, OffsetFetchTopic};
pub use produce::{Acks, ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse};
pub use raft_messages::{RaftMessage, RaftMessagesEncoder, RaftMessagesRequest, RaftMessagesResponse};
pub use reassign::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, DecommissionBrokerRequest,
    DecommissionBrokerResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    OngoingReassignment, PartitionResult, ReassignablePartition,
};
pub use register::{BrokerAddress, BrokerRegistrationRequest, BrokerRegistrationResponse};

/// A message body with a versioned encoding.
pub trait Body: Sized {
    /// Appends the body's encoding for `version` to `out`.
    fn encode(&self, version: i16, out: &mut BytesMut);
    /// Decodes a body of `version`.
    ///
    /// # Errors
    /// A [`DecodeError`] for truncated or malformed input.
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError>;
}

/// The API a request is for. Numbers match Kafka's for the same operation; internal
/// (broker-to-broker) APIs start at 1000, far from Kafka's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ApiKey {
    /// Append batches to partitions.
    Produce = 0,
    /// Read batches from partitions (long-polling).
    Fetch = 1,
    /// Find offsets: earliest, latest, or by timestamp.
    ListOffsets = 2,
    /// Brokers, topics, partitions and their leaders.
    Metadata = 3,
    /// Commit a consumer group's offsets.
    OffsetCommit = 8,
    /// A consumer group's committed offsets.
    OffsetFetch = 9,
    /// The broker that coordinates a consumer group.
    FindCoordinator = 10,
    /// Consumer groups' state, members and assignments.
    DescribeGroups = 15,
    /// The consumer groups, optionally filtered by state.
    ListGroups = 16,
    /// The APIs and versions the broker speaks.
    ApiVersions = 18,
    /// Create topics.
    CreateTopics = 19,
    /// Delete topics.
    DeleteTopics = 20,
    /// A producer id for an idempotent producer.
    InitProducerId = 22,
    /// Delete empty consumer groups and their offsets.
    DeleteGroups = 42,
    /// Move partitions' replicas to other brokers (or cancel a move).
    AlterPartitionReassignments = 45,
    /// The partition moves in progress.
    ListPartitionReassignments = 46,
    /// A data-only broker joins the cluster.
    BrokerRegistration = 62,
    /// A consumer group member joins, heartbeats, updates its subscription or leaves, and gets
    /// its assignment (the consumer rebalance protocol of KIP-848).
    ConsumerGroupHeartbeat = 68,
    /// Internal, broker-to-broker only: Raft messages for many partitions' groups. Never
    /// answered.
    RaftMessages = 1000,
    /// Move every replica off a broker (Strata's own; Kafka has no equivalent API).
    DecommissionBroker = 1001,
    /// Internal, broker-to-broker only: the partitions a broker leads. Never answered.
    LeaderAnnouncements = 1002,
}

impl ApiKey {
    /// Every API.
    pub const ALL: [ApiKey; 21] = [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::Metadata,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::FindCoordinator,
        ApiKey::DescribeGroups,
        ApiKey::ListGroups,
        ApiKey::ApiVersions,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::InitProducerId,
        ApiKey::DeleteGroups,
        ApiKey::AlterPartitionReassignments,
        ApiKey::ListPartitionReassignments,
        ApiKey::BrokerRegistration,
        ApiKey::ConsumerGroupHeartbeat,
        ApiKey::RaftMessages,
        ApiKey::DecommissionBroker,
        ApiKey::LeaderAnnouncements,
    ];

    /// Parses the wire value.
    pub fn from_i16(v: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as i16 == v)
    }

    /// The range of versions this build speaks.
    pub fn versions(self) -> std::ops::RangeInclusive<i16> {
        match self {
            // v1: the reader's known leader term per partition, and the serving leader's term.
            ApiKey::Fetch => 0..=1,
            // v1: the same for ListOffsets.
            ApiKey::ListOffsets => 0..=1,
            // v1: each led partition's high watermark.
            ApiKey::LeaderAnnouncements => 0..=1,
            _ => 0..=0,
        }
    }

    /// The lowercase name (for logs and metric labels).
    pub fn name(self) -> &'static str {
        match self {
            ApiKey::Produce => "produce",
            ApiKey::Fetch => "fetch",
            ApiKey::ListOffsets => "list_offsets",
            ApiKey::Metadata => "metadata",
            ApiKey::ApiVersions => "api_versions",
            ApiKey::CreateTopics => "create_topics",
            ApiKey::DeleteTopics => "delete_topics",
            ApiKey::InitProducerId => "init_producer_id",
            ApiKey::RaftMessages => "raft_messages",
            ApiKey::AlterPartitionReassignments => "alter_partition_reassignments",
            ApiKey::ListPartitionReassignments => "list_partition_reassignments",
            ApiKey::DecommissionBroker => "decommission_broker",
            ApiKey::BrokerRegistration => "broker_registration",
            ApiKey::LeaderAnnouncements => "leader_announcements",
            ApiKey::FindCoordinator => "find_coordinator",
            ApiKey::OffsetCommit => "offset_commit",
            ApiKey::OffsetFetch => "offset_fetch",
            ApiKey::ConsumerGroupHeartbeat => "consumer_group_heartbeat",
            ApiKey::ListGroups => "list_groups",
            ApiKey::DescribeGroups => "describe_groups",
            ApiKey::DeleteGroups => "delete_groups",
        }
    }
}

/// A decoded request body.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Request {
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    InitProducerId(InitProducerIdRequest),
    RaftMessages(RaftMessagesRequest),
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    DecommissionBroker(DecommissionBrokerRequest),
    BrokerRegistration(BrokerRegistrationRequest),
    LeaderAnnouncements(LeaderAnnouncementsRequest),
    FindCoordinator(FindCoordinatorRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
}

/// A decoded response body.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Response {
    ApiVersions(ApiVersionsResponse),
    Metadata(MetadataResponse),
    CreateTopics(CreateTopicsResponse),
    DeleteTopics(DeleteTopicsResponse),
    Produce(ProduceResponse),
    Fetch(FetchResponse),
    ListOffsets(ListOffsetsResponse),
    InitProducerId(InitProducerIdResponse),
    /// Never sent: brokers do not answer RaftMessages.
    RaftMessages(RaftMessagesResponse),
    AlterPartitionReassignments(AlterPartitionReassignmentsResponse),
    ListPartitionReassignments(ListPartitionReassignmentsResponse),
    DecommissionBroker(DecommissionBrokerResponse),
    BrokerRegistration(BrokerRegistrationResponse),
    /// Never sent: brokers do not answer LeaderAnnouncements.
    LeaderAnnouncements(LeaderAnnouncementsResponse),
    FindCoordinator(FindCoordinatorResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    ListGroups(ListGroupsResponse),
    DescribeGroups(DescribeGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
}

macro_rules! dispatch_impl {
    ($enum:ident, $($variant:ident),*) => {
        impl $enum {
            /// The API this body belongs to.
            pub fn api_key(&self) -> ApiKey {
                match self { $($enum::$variant(_) => ApiKey::$variant,)* }
            }

            /// Encodes the body (no header) for `version`.
            pub fn encode(&self, version: i16, out: &mut BytesMut) {
                match self { $($enum::$variant(b) => b.encode(version, out),)* }
            }

            /// Decodes a whole body of API `key` and `version`; trailing bytes are an error.
            ///
            /// # Errors
            /// A [`DecodeError`] for truncated or malformed input.
            pub fn decode(key: ApiKey, version: i16, body: Bytes) -> Result<Self, DecodeError> {
                let mut r = Reader::new(body);
                let v = match key { $(ApiKey::$variant => $enum::$variant(Body::decode(version, &mut r)?),)* };
                r.finish(key.name())?;
                Ok(v)
            }
        }
    };
}

/// Both bodies' dispatch for every API, listed once.
macro_rules! dispatch {
    ($($variant:ident),* $(,)?) => {
        dispatch_impl!(Request, $($variant),*);
        dispatch_impl!(Response, $($variant),*);
    };
}

dispatch!(
    ApiVersions,
    Metadata,
    CreateTopics,
    DeleteTopics,
    Produce,
    Fetch,
    ListOffsets,
    InitProducerId,
    RaftMessages,
    AlterPartitionReassignments,
    ListPartitionReassignments,
    DecommissionBroker,
    BrokerRegistration,
    LeaderAnnouncements,
    FindCoordinator,
    OffsetCommit,
    OffsetFetch,
    ConsumerGroupHeartbeat,
    ListGroups,
    DescribeGroups,
    DeleteGroups,
);

/// Per-topic grouping used by produce, fetch, list-offsets, offset-commit and offset-fetch: a
/// topic name and its partitions' entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicData<P> {
    /// Topic name.
    pub name: String,
    /// One entry per partition.
    pub partitions: Vec<P>,
}

/// Smallest encoding of a topic name: its `i16` length.
pub(crate) const MIN_STRING_LEN: usize = 2;

impl<P: Body + MinLen> Body for TopicData<P> {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_string(out, &self.name);
        put_array(out, &self.partitions, |o, p| p.encode(version, o));
    }

    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        let name = r.string("topic name")?;
        let partitions = r.array(P::MIN_LEN, "partitions", |r| P::decode(version, r))?;
        Ok(Self { name, partitions })
    }
}

impl<P> MinLen for TopicData<P> {
    const MIN_LEN: usize = MIN_STRING_LEN + 4;
}

/// The smallest encoded size of a type, used to bound peer-supplied array lengths.
pub trait MinLen {
    /// Bytes.
    const MIN_LEN: usize;
}

/// Result of a topic-level admin operation (create, delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    /// Topic name.
    pub name: String,
    /// Outcome.
    pub error: ErrorCode,
    /// Human-readable detail when `error` is not `None`.
    pub message: Option<String>,
}

impl Body for TopicResult {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.name);
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
    }

    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            name: r.string("topic name")?,
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
        })
    }
}

impl MinLen for TopicResult {
    const MIN_LEN: usize = MIN_STRING_LEN + 2 + 2;
}

/// A `key = value` config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key, e.g. `retention.ms`.
    pub key: String,
    /// Value.
    pub value: String,
}

impl Body for ConfigEntry {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.key);
        put_string(out, &self.value);
    }

    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            key: r.string("config key")?,
            value: r.string("config value")?,
        })
    }
}

impl MinLen for ConfigEntry {
    const MIN_LEN: usize = 2 * MIN_STRING_LEN;
}

/// A topic and some of its partitions (consumer-group subscriptions and assignments).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions {
    /// Topic name.
    pub topic: String,
    /// Partition indexes.
    pub partitions: Vec<i32>,
}

impl Body for TopicPartitions {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.topic);
        put_i32_array(out, &self.partitions);
    }

    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: r.string("topic name")?,
            partitions: get_i32_array(r, "partitions")?,
        })
    }
}

impl MinLen for TopicPartitions {
    const MIN_LEN: usize = MIN_STRING_LEN + 4;
}

/// Decodes an array of `T`.
pub(crate) fn get_array<T: Body + MinLen>(
    version: i16,
    r: &mut Reader,
    what: &'static str,
) -> Result<Vec<T>, DecodeError> {
    r.array(T::MIN_LEN, what, |r| T::decode(version, r))
}

/// Encodes an array of `T`.
pub(crate) fn put_body_array<T: Body>(version: i16, out: &mut BytesMut, items: &[T]) {
    put_array(out, items, |o, t| t.encode(version, o));
}

/// Encodes an array of `i32`.
pub(crate) fn put_i32_array(out: &mut BytesMut, items: &[i32]) {
    put_array(out, items, |o, v| o.put_i32(*v));
}

/// Decodes an array of `i32`.
pub(crate) fn get_i32_array(r: &mut Reader, what: &'static str) -> Result<Vec<i32>, DecodeError> {
    r.array(4, what, |r| r.i32(what))
}

/// Decodes a nullable array of `T`.
pub(crate) fn get_nullable_array<T: Body + MinLen>(
    version: i16,
    r: &mut Reader,
    what: &'static str,
) -> Result<Option<Vec<T>>, DecodeError> {
    r.nullable_array(T::MIN_LEN, what, |r| T::decode(version, r))
}

/// Encodes a nullable array of `T`.
pub(crate) fn put_nullable_body_array<T: Body>(version: i16, out: &mut BytesMut, items: Option<&[T]>) {
    put_nullable_array(out, items, |o, t| t.encode(version, o));
}

/// Encodes an array of strings.
pub(crate) fn put_string_array(out: &mut BytesMut, items: &[String]) {
    put_array(out, items, |o, s| put_string(o, s));
}

/// Decodes an array of strings; `what` names the elements.
pub(crate) fn get_string_array(r: &mut Reader, what: &'static str) -> Result<Vec<String>, DecodeError> {
    r.array(MIN_STRING_LEN, what, |r| r.string(what))
}

/// Encodes a nullable array of strings.
pub(crate) fn put_nullable_string_array(out: &mut BytesMut, items: Option<&[String]>) {
    put_nullable_array(out, items, |o, s| put_string(o, s));
}

/// Decodes a nullable array of strings; `what` names the elements.
pub(crate) fn get_nullable_string_array(
    r: &mut Reader,
    what: &'static str,
) -> Result<Option<Vec<String>>, DecodeError> {
    r.nullable_array(MIN_STRING_LEN, what, |r| r.string(what))
}
