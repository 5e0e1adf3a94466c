//! Metadata (key 3): brokers, topics, partitions, leaders, and each partition's log start and
//! high watermark.
//!
//! v0 request: `topics: nullable [name string]` (null = all topics).
//! v0 response: `brokers: [node_id i32, host string, port i32]`, `controller_id i32`,
//! `cluster_id nullable string`, `topics: [error_code i16, name string, partitions: [error_code
//! i16, partition i32, leader i32, leader_term i64, replicas [i32], in_sync [i32], log_start_offset
//! i64, high_watermark i64], configs: [key string, value string]]`.

use bytes::{BufMut, BytesMut};

use super::{Body, ConfigEntry, MIN_STRING_LEN, MinLen, get_array, get_i32_array, put_body_array, put_i32_array};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_array, put_nullable_string, put_string};

/// Metadata request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataRequest {
    /// Topics to describe; `None` for all.
    pub topics: Option<Vec<String>>,
}

impl Body for MetadataRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        match &self.topics {
            None => out.put_i32(-1),
            Some(t) => put_array(out, t, |o, n| put_string(o, n)),
        }
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        let topics = match r.nullable_array_len(MIN_STRING_LEN, "topics")? {
            None => None,
            Some(n) => Some((0..n).map(|_| r.string("topic name")).collect::<Result<_, _>>()?),
        };
        Ok(Self { topics })
    }
}

/// A broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl Body for BrokerMetadata {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.node_id);
        put_string(out, &self.host);
        out.put_i32(self.port);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            node_id: r.i32("node id")?,
            host: r.string("host")?,
            port: r.i32("port")?,
        })
    }
}

impl MinLen for BrokerMetadata {
    const MIN_LEN: usize = 4 + MIN_STRING_LEN + 4;
}

/// A partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Outcome for this partition.
    pub error: ErrorCode,
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, −1 if none.
    pub leader: i32,
    /// The leader's Raft term (clients ignore older leader information).
    pub leader_term: i64,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// Replicas caught up with the leader.
    pub in_sync: Vec<i32>,
    /// First offset in the log.
    pub log_start_offset: i64,
    /// Offset up to which records are committed and readable.
    pub high_watermark: i64,
}

impl Body for PartitionMetadata {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        out.put_i32(self.partition);
        out.put_i32(self.leader);
        out.put_i64(self.leader_term);
        put_i32_array(out, &self.replicas);
        put_i32_array(out, &self.in_sync);
        out.put_i64(self.log_start_offset);
        out.put_i64(self.high_watermark);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            partition: r.i32("partition")?,
            leader: r.i32("leader")?,
            leader_term: r.i64("leader term")?,
            replicas: get_i32_array(r, "replicas")?,
            in_sync: get_i32_array(r, "in-sync replicas")?,
            log_start_offset: r.i64("log start offset")?,
            high_watermark: r.i64("high watermark")?,
        })
    }
}

impl MinLen for PartitionMetadata {
    const MIN_LEN: usize = 2 + 4 + 4 + 8 + 4 + 4 + 8 + 8;
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Outcome for this topic (e.g. unknown topic).
    pub error: ErrorCode,
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: Vec<PartitionMetadata>,
    /// Topic configuration (explicitly set keys and defaults in effect).
    pub configs: Vec<ConfigEntry>,
}

impl Body for TopicMetadata {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_string(out, &self.name);
        put_body_array(version, out, &self.partitions);
        put_body_array(version, out, &self.configs);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            name: r.string("topic name")?,
            partitions: get_array(version, r, "partitions")?,
            configs: get_array(version, r, "configs")?,
        })
    }
}

impl MinLen for TopicMetadata {
    const MIN_LEN: usize = 2 + MIN_STRING_LEN + 4 + 4;
}

/// Metadata response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataResponse {
    /// Live brokers.
    pub brokers: Vec<BrokerMetadata>,
    /// Controller leader's node id, −1 if unknown.
    pub controller_id: i32,
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Topics.
    pub topics: Vec<TopicMetadata>,
}

impl Body for MetadataResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.brokers);
        out.put_i32(self.controller_id);
        put_nullable_string(out, self.cluster_id.as_deref());
        put_body_array(version, out, &self.topics);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            brokers: get_array(version, r, "brokers")?,
            controller_id: r.i32("controller id")?,
            cluster_id: r.nullable_string("cluster id")?,
            topics: get_array(version, r, "topics")?,
        })
    }
}
