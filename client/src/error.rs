//! The client's error type.
//!
//! One enum, [`Error`], for everything the client reports. Each variant says what happened and
//! carries the facts needed to act on it: the broker's error code and message, the topic and
//! partition, the broker address, the API, how long a timeout was. [`Error::is_retriable`] is the
//! one question the producer and consumer ask before retrying; callers can ask it too.
//!
//! `Error` is `Clone` because one failure often has many recipients: a failed batch resolves the
//! delivery of every record in it, and a dead connection fails every request pending on it.

use std::sync::Arc;
use std::time::Duration;

use strata_protocol::api::ApiKey;
use strata_protocol::{BuildError, DecodeError, ErrorCode};
use thiserror::Error;

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker rejected a whole request (request-level error code in the response header):
    /// an unsupported API or version, a malformed request, a broker shutting down.
    #[error("broker {broker} rejected {} request: {code}: {}", api.name(), message.as_deref().unwrap_or("no message"))]
    Request {
        /// Address of the broker that answered.
        broker: String,
        /// The API of the request.
        api: ApiKey,
        /// The error code.
        code: ErrorCode,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },

    /// The broker reported an error for one partition.
    #[error("{topic}/{partition}: {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Partition {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The error code.
        code: ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },

    /// The broker reported an error for a topic (create, delete, metadata).
    #[error("topic {topic}: {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Topic {
        /// Topic.
        topic: String,
        /// The error code.
        code: ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },

    /// A consumer group's coordinator reported an error (membership, commit, offsets, admin).
    #[error("group {group}: {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Group {
        /// Group id.
        group: String,
        /// The error code.
        code: ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },

    /// Connecting to a broker, or reading from or writing to its socket, failed.
    #[error("i/o error talking to {broker}: {source}")]
    Io {
        /// The broker's address.
        broker: String,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The connection to a broker closed (or was closed) while the request was pending, or
    /// before it could be sent. Every request pending on the connection fails with this.
    #[error("connection to {broker} closed: {reason}")]
    ConnectionClosed {
        /// The broker's address.
        broker: String,
        /// Why it closed (peer closed, i/o error, malformed frame, timeout, client dropped).
        reason: String,
    },

    /// An operation did not complete in time.
    #[error("{what} timed out after {after:?} ({broker})")]
    Timeout {
        /// What timed out: an API name (`produce`, `fetch`, …), `connect`, `delivery`,
        /// `metadata`, `buffer memory`, `init producer id`.
        what: &'static str,
        /// The broker involved, or `-` when none is.
        broker: String,
        /// The limit that passed.
        after: Duration,
    },

    /// A response did not decode: the broker sent bytes this client cannot parse.
    #[error("malformed {} response from {broker}: {source}", api.name())]
    Decode {
        /// The broker's address.
        broker: String,
        /// The API of the response.
        api: ApiKey,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },

    /// A response decoded but does not answer the request (wrong API, a partition asked for is
    /// missing, an impossible value).
    #[error("unexpected {} response from {broker}: {detail}", api.name())]
    UnexpectedResponse {
        /// The broker's address.
        broker: String,
        /// The API of the response.
        api: ApiKey,
        /// What was wrong.
        detail: String,
    },

    /// The broker does not support any version of an API this client speaks.
    #[error("broker {broker} does not support {} v{client_min}..=v{client_max} (it supports {})",
        api.name(), broker_versions.map_or_else(|| "none".to_owned(), |(lo, hi)| format!("v{lo}..=v{hi}")))]
    UnsupportedVersion {
        /// The broker's address.
        broker: String,
        /// The API.
        api: ApiKey,
        /// Lowest version this client speaks.
        client_min: i16,
        /// Highest version this client speaks.
        client_max: i16,
        /// What the broker advertised, `None` if it does not list the API at all.
        broker_versions: Option<(i16, i16)>,
    },

    /// A fetched record batch failed validation (CRC, lengths, records) or its records could not
    /// be read (decompression).
    #[error("corrupt batch in {topic}/{partition} at offset {offset}: {source}")]
    CorruptBatch {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The fetch offset, or the batch's base offset when known.
        offset: u64,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },

    /// Records could not be encoded into a batch.
    #[error("cannot encode record batch: {0}")]
    Build(#[from] BuildError),

    /// A record is larger than the producer can ever send (`max_request_size` or
    /// `buffer_memory`).
    #[error("record of {size} bytes exceeds the {limit} limit of {max} bytes")]
    RecordTooLarge {
        /// The record's encoded size (upper bound).
        size: usize,
        /// Which limit: `max_request_size` or `buffer_memory`.
        limit: &'static str,
        /// The limit's value.
        max: usize,
    },

    /// The topic does not exist (after refreshing metadata).
    #[error("unknown topic {0}")]
    UnknownTopic(String),

    /// The partition does not exist in the topic.
    #[error("unknown partition {topic}/{partition} (topic has {partition_count} partitions)")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition index asked for.
        partition: i32,
        /// How many partitions the topic has.
        partition_count: usize,
    },

    /// A partition has no leader right now (or its leader is not among the brokers the metadata
    /// lists).
    #[error("no leader for {topic}/{partition}")]
    NoLeader {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
    },

    /// No bootstrap address or known broker could be reached.
    #[error("no broker reachable (tried {tried}): {last}")]
    NoBrokerAvailable {
        /// The addresses tried, comma-separated.
        tried: String,
        /// The last error.
        last: Box<Error>,
    },

    /// The configuration is invalid.
    #[error("invalid config `{key}`: {reason}")]
    Config {
        /// The setting's name.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// An operation on a consumer partition that is not assigned.
    #[error("{topic}/{partition} is not assigned to this consumer")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
    },

    /// The producer is closed (or its background task is gone).
    #[error("producer is closed")]
    ProducerClosed,
}

impl Error {
    /// Whether retrying the operation (after refreshing metadata where it applies) may succeed:
    /// a retriable broker error code ([`ErrorCode::is_retriable`]), an i/o error, a closed
    /// connection, a timeout, or a missing leader.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Request { code, .. }
            | Error::Partition { code, .. }
            | Error::Topic { code, .. }
            | Error::Group { code, .. } => code.is_retriable(),
            Error::Io { .. } | Error::ConnectionClosed { .. } | Error::Timeout { .. } | Error::NoLeader { .. } => true,
            // Brokers come back, and metadata catches up with ones that moved.
            Error::NoBrokerAvailable { .. } => true,
            _ => false,
        }
    }

    /// Whether the client's metadata is likely stale and should be refreshed before a retry:
    /// `NOT_LEADER`, `UNKNOWN_TOPIC_OR_PARTITION`, `LEADER_NOT_AVAILABLE`,
    /// `UNKNOWN_LEADER_EPOCH` (a deposed leader), a missing leader, or a
    /// broken connection (the broker may be gone).
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Error::Partition { code, .. } | Error::Topic { code, .. } | Error::Request { code, .. } => matches!(
                code,
                ErrorCode::NotLeader
                    | ErrorCode::UnknownTopicOrPartition
                    | ErrorCode::LeaderNotAvailable
                    | ErrorCode::BrokerShuttingDown
                    | ErrorCode::UnknownLeaderEpoch
            ),
            Error::Io { .. } | Error::ConnectionClosed { .. } | Error::NoLeader { .. } | Error::UnknownTopic(_) => true,
            Error::NoBrokerAvailable { .. } => true,
            _ => false,
        }
    }

    /// The broker error code, if this error carries one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request { code, .. }
            | Error::Partition { code, .. }
            | Error::Topic { code, .. }
            | Error::Group { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn io(broker: &str, source: std::io::Error) -> Self {
        Error::Io {
            broker: broker.to_owned(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn config(key: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            key,
            reason: reason.into(),
        }
    }

    pub(crate) fn group(group: &str, code: ErrorCode, message: Option<String>) -> Self {
        Error::Group {
            group: group.to_owned(),
            code,
            message,
        }
    }

    pub(crate) fn partition(topic: &str, partition: i32, code: ErrorCode, message: Option<String>) -> Self {
        Error::Partition {
            topic: topic.to_owned(),
            partition,
            code,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_follows_the_error_code_table() {
        let e = Error::partition("t", 0, ErrorCode::NotLeader, None);
        assert!(e.is_retriable());
        assert!(e.invalidates_metadata());
        let e = Error::partition("t", 0, ErrorCode::MessageTooLarge, Some("big".into()));
        assert!(!e.is_retriable());
        assert_eq!(e.to_string(), "t/0: MESSAGE_TOO_LARGE (10): big");
        let e = Error::Timeout {
            what: "produce",
            broker: "b:1".into(),
            after: Duration::from_millis(5),
        };
        assert!(e.is_retriable());
        assert!(!e.invalidates_metadata());
    }
}
