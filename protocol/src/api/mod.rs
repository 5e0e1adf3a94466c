//! Requests and responses, one module per API (see `protocol/PROTOCOL.md`).
//!
//! Each body type implements [`Body`]: `encode(version, out)` and `decode(version, reader)`.
//! Every API starts at version 0; [`ApiKey::versions`] is the range this build speaks, and a
//! request outside it gets `UNSUPPORTED_VERSION` rather than a guess.

pub mod api_versions;
pub mod create_topics;
pub mod delete_topics;
pub mod fetch;
pub mod init_producer_id;
pub mod leaders;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod raft_messages;
pub mod reassign;
pub mod register;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_array, put_nullable_string, put_string};

pub use api_versions::{ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse};
pub use create_topics::{CreatableTopic, CreateTopicsRequest, CreateTopicsResponse};
pub use delete_topics::{DeleteTopicsRequest, DeleteTopicsResponse};
pub use fetch::{FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse};
pub use init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
pub use leaders::{LeaderAnnouncementsRequest, LeaderAnnouncementsResponse, LedPartition};
pub use list_offsets::{ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse};
pub use metadata::{BrokerMetadata, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata};
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
    /// The APIs and versions the broker speaks.
    ApiVersions = 18,
    /// Create topics.
    CreateTopics = 19,
    /// Delete topics.
    DeleteTopics = 20,
    /// A producer id for an idempotent producer.
    InitProducerId = 22,
    /// Move partitions' replicas to other brokers (or cancel a move).
    AlterPartitionReassignments = 45,
    /// The partition moves in progress.
    ListPartitionReassignments = 46,
    /// A data-only broker joins the cluster.
    BrokerRegistration = 62,
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
    pub const ALL: [ApiKey; 14] = [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::Metadata,
        ApiKey::ApiVersions,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::InitProducerId,
        ApiKey::AlterPartitionReassignments,
        ApiKey::ListPartitionReassignments,
        ApiKey::BrokerRegistration,
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
        0..=0
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
);

/// Per-topic grouping used by produce, fetch and list-offsets: a topic name and its partitions'
/// entries.
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
        put_nullable_string(out, self.message.as_deref());
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
