//! RaftMessages (key 1000, internal): Raft messages from one broker to another.
//!
//! Broker-to-broker only; clients never send it. Each broker keeps one connection to each peer
//! broker's client listener and batches the messages of many Raft groups (partitions) into one
//! request. The receiver never answers (fire-and-forget, like produce with `acks = 0`): Raft
//! retransmits what is lost, so a response would only add traffic.
//!
//! v0 request:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `from_node` | `u64` | the sending broker's node id |
//! | `to_node` | `u64` | the broker the frame is for; a receiver with another id drops the frame |
//! | `messages` | `[RaftMessage]` | |
//! | `messages[].topic` | `string` | the group's topic |
//! | `messages[].partition` | `u32` | the group's partition |
//! | `messages[].topic_id` | `u64` | the topic's incarnation, so a message for a deleted and re-created topic is not applied to the new one |
//! | `messages[].message` | `bytes` | one protobuf-encoded `raft::eraftpb::Message`, opaque here |
//!
//! v0 response: empty. Brokers never send it; it exists because every API has a response type.
//!
//! [`RaftMessagesEncoder`] writes a whole request frame straight into the sender's buffer, one
//! message at a time, without building a [`RaftMessagesRequest`] first.

use bytes::{BufMut, Bytes, BytesMut};

use super::{ApiKey, Body, MIN_STRING_LEN, MinLen, Request};
use crate::error::DecodeError;
use crate::frame::{LENGTH_LEN, RequestHeader, encode_request};
use crate::wire::{Reader, put_array, put_bytes, put_string};

/// One Raft message for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMessage {
    /// The group's topic.
    pub topic: String,
    /// The group's partition.
    pub partition: u32,
    /// The topic's incarnation id.
    pub topic_id: u64,
    /// A protobuf-encoded `raft::eraftpb::Message`, a zero-copy slice of the frame.
    pub message: Bytes,
}

impl Body for RaftMessage {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_string(out, &self.topic);
        out.put_u32(self.partition);
        out.put_u64(self.topic_id);
        put_bytes(out, &self.message);
    }

    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: r.string("topic name")?,
            // The same four big-endian bytes, read as unsigned.
            partition: u32::from_be_bytes(r.i32("partition")?.to_be_bytes()),
            topic_id: r.u64("topic id")?,
            message: r.bytes("raft message")?,
        })
    }
}

impl MinLen for RaftMessage {
    const MIN_LEN: usize = MIN_STRING_LEN + 4 + 8 + 4;
}

/// RaftMessages request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftMessagesRequest {
    /// The sending broker's node id.
    pub from_node: u64,
    /// The broker the messages are for.
    pub to_node: u64,
    /// The messages, in the order the sender queued them.
    pub messages: Vec<RaftMessage>,
}

impl Body for RaftMessagesRequest {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_u64(self.from_node);
        out.put_u64(self.to_node);
        put_array(out, &self.messages, |o, m| m.encode(version, o));
    }

    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            from_node: r.u64("from node")?,
            to_node: r.u64("to node")?,
            messages: r.array(RaftMessage::MIN_LEN, "raft messages", |r| {
                RaftMessage::decode(version, r)
            })?,
        })
    }
}

/// RaftMessages response: empty, and never sent (the receiver does not answer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftMessagesResponse;

impl Body for RaftMessagesResponse {
    fn encode(&self, _version: i16, _out: &mut BytesMut) {}
    fn decode(_version: i16, _r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self)
    }
}

/// Encodes one RaftMessages request frame straight into a buffer, one message at a time: no
/// [`RaftMessagesRequest`], no per-message allocation, and the message bytes are written by the
/// caller (e.g. protobuf encoding into the frame). The bytes are exactly what
/// [`encode_request`] writes for the equivalent request.
///
/// ```
/// use bytes::{BufMut, BytesMut};
/// use strata_protocol::api::{ApiKey, RaftMessagesEncoder};
/// use strata_protocol::frame::RequestHeader;
///
/// let header = RequestHeader { api_key: ApiKey::RaftMessages as i16, api_version: 0, correlation_id: 1, client_id: None };
/// let mut out = BytesMut::new();
/// let mut frame = RaftMessagesEncoder::begin(&mut out, &header, 1, 2);
/// frame.push(&mut out, "orders", 0, 7, |o| { o.put_slice(b"raft"); Ok::<(), ()>(()) }).unwrap();
/// frame.finish(&mut out);
/// ```
#[derive(Debug)]
#[must_use = "a frame is incomplete until `finish`"]
pub struct RaftMessagesEncoder {
    /// Where the frame's length prefix is in the buffer.
    frame_at: usize,
    /// Where the message count is in the buffer.
    count_at: usize,
    /// Messages pushed so far.
    count: i32,
    /// Bytes of the frame the caller sends from elsewhere (see [`Self::push_parts`]).
    external: usize,
}

impl RaftMessagesEncoder {
    /// Starts a frame at the end of `out`: the request header, `from_node`, `to_node` and an
    /// empty message array.
    ///
    /// # Panics
    /// If `header` is not for RaftMessages v0 (a programming error), or its client id is longer
    /// than `i16::MAX` bytes.
    pub fn begin(out: &mut BytesMut, header: &RequestHeader, from_node: u64, to_node: u64) -> Self {
        assert!(
            header.api_key == ApiKey::RaftMessages as i16 && header.api_version == 0,
            "RaftMessagesEncoder needs a RaftMessages v0 header, got key {} v{}",
            header.api_key,
            header.api_version
        );
        let frame_at = out.len();
        // The header and an empty body come from the one request encoder, so the layout cannot
        // drift; the message count (the body's last four bytes) is patched in `finish`.
        let empty = Request::RaftMessages(RaftMessagesRequest {
            from_node,
            to_node,
            messages: Vec::new(),
        });
        encode_request(out, header, &empty);
        Self {
            frame_at,
            count_at: out.len() - 4,
            count: 0,
            external: 0,
        }
    }

    /// Appends one message; `encode` appends the message's bytes to `out`. If `encode` fails,
    /// `out` is cut back to before this message and the error returned.
    ///
    /// # Errors
    /// Whatever `encode` returns.
    ///
    /// # Panics
    /// If `topic` is longer than `i16::MAX` bytes (topic names are limited far below), or the
    /// message is longer than `i32::MAX` bytes.
    pub fn push<E>(
        &mut self,
        out: &mut BytesMut,
        topic: &str,
        partition: u32,
        topic_id: u64,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E> {
        self.push_parts(out, topic, partition, topic_id, |o| encode(o).map(|()| 0))
    }

    /// Like [`Self::push`], but part of the message's bytes are not copied into `out`: `encode`
    /// returns how many bytes it left out, which the caller sends in their place, interleaved
    /// with `out`'s bytes at the positions it noted (e.g. large entry payloads written to the
    /// socket from where they already are, with a vectored write). The length fields count them.
    ///
    /// # Errors
    /// Whatever `encode` returns.
    ///
    /// # Panics
    /// As [`Self::push`].
    pub fn push_parts<E>(
        &mut self,
        out: &mut BytesMut,
        topic: &str,
        partition: u32,
        topic_id: u64,
        encode: impl FnOnce(&mut BytesMut) -> Result<usize, E>,
    ) -> Result<(), E> {
        let entry_at = out.len();
        put_string(out, topic);
        out.put_u32(partition);
        out.put_u64(topic_id);
        let len_at = out.len();
        out.put_i32(0);
        let external = match encode(out) {
            Ok(n) => n,
            Err(e) => {
                out.truncate(entry_at);
                return Err(e);
            }
        };
        let len = i32::try_from(out.len() - len_at - 4 + external).expect("a raft message is smaller than 2 GiB");
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        self.external += external;
        // Each message takes at least `RaftMessage::MIN_LEN` bytes of a frame below 4 GiB.
        self.count = self.count.checked_add(1).expect("fewer than 2^31 messages fit a frame");
        Ok(())
    }

    /// Messages pushed so far.
    pub fn count(&self) -> usize {
        usize::try_from(self.count).expect("the count is never negative")
    }

    /// The frame's size so far, length prefix and bytes left out of `out` included.
    pub fn frame_bytes(&self, out: &BytesMut) -> usize {
        out.len() - self.frame_at + self.external
    }

    /// Completes the frame: patches the message count and the length prefix.
    ///
    /// # Panics
    /// If `out` was cut below the frame's start since [`RaftMessagesEncoder::begin`], or the
    /// frame exceeds `u32::MAX` bytes.
    pub fn finish(self, out: &mut BytesMut) {
        assert!(
            out.len() >= self.count_at + 4,
            "the frame's buffer was truncated under it"
        );
        out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_be_bytes());
        let len = u32::try_from(self.frame_bytes(out) - LENGTH_LEN).expect("frame fits in u32");
        out[self.frame_at..self.frame_at + LENGTH_LEN].copy_from_slice(&len.to_be_bytes());
    }
}
