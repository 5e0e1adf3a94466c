//! `strata-client`: the async Rust client for Strata — [`Producer`], [`Consumer`], [`Admin`].
//!
//! # Layout
//!
//! - [`client`]: [`Client`], the handle everything is built from: a connection pool (one
//!   connection per broker) and a metadata cache mapping partitions to leader brokers.
//! - [`connection`]: [`Connection`], one pipelined TCP connection to one broker (correlation ids,
//!   pending-request map, reader and writer tasks, per-request timeouts, `ApiVersions` check).
//! - [`metadata`]: [`ClusterMetadata`], the immutable snapshot of brokers, topics and
//!   partitions the cache hands out.
//! - [`producer`]: [`Producer`] — per-partition batching by size and linger, compression, acks,
//!   ordered retries that never duplicate (idempotent producer), bounded memory with
//!   back-pressure.
//! - [`partitioner`]: key hashing (Kafka-compatible murmur2) and keyless strategies (sticky,
//!   round-robin, least-loaded).
//! - [`consumer`]: [`Consumer`] — assignment, seeking, `poll` and `Stream`, prefetch.
//! - [`group`]: consumer groups — finding the coordinator, the membership task behind
//!   [`Consumer::subscribe`], commits.
//! - [`admin`]: [`Admin`] — topics, groups and cluster description.
//! - [`config`]: [`ClientConfig`]; [`error`]: [`Error`].
//!
//! The wire format lives in [`protocol`] (re-exported `strata-protocol`); this crate adds the
//! I/O. Every network wait is bounded by a timeout, every queue and map by a limit, and no
//! response from a broker can make the client panic.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use strata_client::{Client, ClientConfig, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, Seek};
//!
//! # async fn example() -> strata_client::Result<()> {
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9700")).await?;
//! client.admin().create_topic(NewTopic::new("greetings", 1, 1)).await?;
//!
//! let producer = client.producer(ProducerConfig::default())?;
//! let meta = producer.send(ProducerRecord::new("greetings", "hello").key("k")).await?;
//!
//! let mut consumer = client.consumer(ConsumerConfig::default())?;
//! consumer.assign_topic("greetings").await?;
//! consumer.seek_all(Seek::Earliest).await?;
//! let records = consumer.poll(Duration::from_secs(1)).await?;
//! assert_eq!(records[0].offset, meta.offset.unwrap());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod admin_groups;
pub mod client;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod metadata;
pub mod partitioner;
pub mod producer;

pub use admin::{Admin, ApiSupport, ClusterDescription, NewTopic, Reassignment, TopicListing};
pub use admin_groups::{GroupDescription, GroupListing, GroupMemberDescription, GroupPartitionOffset, OffsetSpec};
pub use client::Client;
pub use config::{ClientConfig, DEFAULT_PORT};
pub use connection::{ApiRequest, Connection};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, RebalanceEvent, RebalanceListener, Seek, TopicPartition,
};
pub use error::{Error, Result};
pub use metadata::{BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use partitioner::{DefaultPartitioner, KeylessStrategy, Partitioner, PartitionerContext};
pub use producer::{Delivery, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use strata_protocol as protocol;
pub use strata_protocol::api::Acks;
pub use strata_protocol::host_aliases::HostAliases;
pub use strata_protocol::{Compression, Offset};
