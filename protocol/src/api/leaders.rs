//! LeaderAnnouncements (key 1002, internal): which partitions a broker leads.
//!
//! Broker to broker only, over the same connection as RaftMessages, never answered. Every
//! broker sends its peers, twice a second, the partitions it leads with their Raft terms, so a
//! broker that hosts no replica of a partition still names its actual leader in Metadata.
//!
//! v0 request: `from_node u64`, `leaders: [topic string, partition u32, topic_id u64, term u64]`.
//! v1 adds `high_watermark i64` after `term` (the leader's high watermark; −1 unknown), so every
//! broker knows every partition's end within half a second (consumer group lag, Metadata).

use bytes::{BufMut, BytesMut};

use super::{Body, MIN_STRING_LEN, MinLen, get_array, put_body_array};
use crate::error::DecodeError;
use crate::wire::{Reader, put_string};

/// A partition the sender leads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedPartition {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The topic's id (its creation's metadata index).
    pub topic_id: u64,
    /// The sender's Raft term as leader.
    pub term: u64,
    /// The partition's high watermark at the leader (v1; −1 unknown or in v0).
    pub high_watermark: i64,
}

impl Body for LedPartition {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_string(out, &self.topic);
        out.put_u32(self.partition);
        out.put_u64(self.topic_id);
        out.put_u64(self.term);
        if version >= 1 {
            out.put_i64(self.high_watermark);
        }
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: r.string("topic name")?,
            partition: u32::from_be_bytes(r.i32("partition")?.to_be_bytes()),
            topic_id: r.u64("topic id")?,
            term: r.u64("term")?,
            high_watermark: if version >= 1 { r.i64("high watermark")? } else { -1 },
        })
    }
}

impl MinLen for LedPartition {
    const MIN_LEN: usize = MIN_STRING_LEN + 4 + 8 + 8;
}

/// LeaderAnnouncements request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderAnnouncementsRequest {
    /// The sending broker.
    pub from_node: u64,
    /// Every partition it leads.
    pub leaders: Vec<LedPartition>,
}

impl Body for LeaderAnnouncementsRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_u64(self.from_node);
        put_body_array(version, out, &self.leaders);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            from_node: r.u64("from node")?,
            leaders: get_array(version, r, "leaders")?,
        })
    }
}

/// Never sent: brokers do not answer LeaderAnnouncements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderAnnouncementsResponse;

impl Body for LeaderAnnouncementsResponse {
    fn encode(&self, _version: i16, _out: &mut BytesMut) {}
    fn decode(_version: i16, _r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self)
    }
}
