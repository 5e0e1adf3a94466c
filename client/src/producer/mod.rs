//! The producer: batches records per partition and sends them to each partition's leader.
//!
//! # Life of a record
//!
//! 1. [`Producer::enqueue`] looks the topic up (cached metadata), reserves the record's encoded
//!    size from the `buffer_memory` budget (waiting while it is used up: back-pressure, bounded
//!    by `max_block`), picks a partition ([`crate::partitioner`]), and encodes the record into
//!    that partition's open batch. It returns a [`Delivery`].
//! 2. A background task (the *sender*) drains batches that are full, have lingered long
//!    enough, or are being flushed, groups them by leader broker, and sends one produce request
//!    per broker — several partitions each, one send per partition.
//! 3. The response resolves every record's [`Delivery`] with its partition and offset
//!    (`base_offset` + position). A retriable error (`ErrorCode::is_retriable`, a dead
//!    connection, a timeout) puts the send back at the front of its partition's queue for a
//!    retry after an exponential backoff, refreshing metadata first on `NOT_LEADER`,
//!    `UNKNOWN_TOPIC_OR_PARTITION` and the like. Only one send per partition is ever in flight,
//!    so a retry can never be overtaken: records reach the log in enqueue order.
//!
//! # Idempotence
//!
//! On by default ([`ProducerConfig::idempotence`], Kafka's `enable.idempotence`): before its
//! first batch the producer gets a producer id and epoch (`InitProducerId`, from any broker),
//! and every batch carries them plus a sequence number per partition — the first record's, 0
//! for a partition's first batch, then counting records, wrapping from `i32::MAX` to 0. A batch
//! gets its sequence when it is sealed for its first send, and a retry resends the very same
//! bytes. A partition's leader appends a batch only if it follows the previous one and answers
//! a repeat of a recent batch with the original offset, so retries neither duplicate nor
//! reorder records.
//!
//! - `OUT_OF_ORDER_SEQUENCE_NUMBER` (a batch does not follow: one before it was lost) and
//!   `INVALID_PRODUCER_EPOCH` (fenced) are not retried: the batch's records fail with that
//!   error. So does any batch that fails for good after being sent (retries or delivery
//!   timeout exhausted, a non-retriable error): the broker may or may not have it, so the
//!   partition's sequence can no longer be trusted. In every such case the producer drops its
//!   id and gets a new one before sealing more batches; batches enqueued later are sent under
//!   the new id, starting again at sequence 0 (a broker accepts any first sequence from an id
//!   it does not know). Records that failed are not resent: the application decides.
//! - A send carries at most 64 batches per partition (the broker recognises repeats among a
//!   producer's last 64 batches per partition), and a retry is exactly the send it repeats.
//! - Requires `acks = all` and a broker with `InitProducerId`; set `idempotence: false` for
//!   `acks = leader`/`none`.
//!
//! # Guarantees and limits
//!
//! - Per-partition order: records from one task, enqueued one after the other, are appended in
//!   that order.
//! - Retries are exactly-once per record with idempotence (the default): a request that timed
//!   out may have been applied, and the broker drops its retry. Without idempotence they are
//!   at-least-once: the retry duplicates it.
//! - Every record resolves: with its offset, with the broker's error, or with
//!   [`Error::Timeout`] once `delivery_timeout` passes.
//! - Memory is bounded by `buffer_memory` (plus per-batch headers), in-flight requests by one
//!   per partition.

mod accumulator;
mod delivery;
mod idempotence;
mod sender;

pub use delivery::Delivery;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strata_protocol::api::Acks;
use strata_protocol::{BatchBuilder, Compression, HEADER_LEN, HeaderRef, Offset};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::metadata::TopicInfo;
use crate::partitioner::{DefaultPartitioner, KeylessStrategy, Partitioner, PartitionerContext};

pub(crate) use accumulator::{Accumulator, AccumulatorConfig, RecordParts};

/// Producer settings. Every field's doc gives its default.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// When the broker acknowledges: [`Acks::All`] (committed by the partition's Raft group,
    /// default), [`Acks::Leader`], or [`Acks::None`] (no response; deliveries resolve with no
    /// offset once the request is written). Anything but `All` needs `idempotence: false`.
    pub acks: Acks,
    /// Idempotent producer (Kafka's `enable.idempotence`): batches carry a producer id and
    /// per-partition sequence numbers, so retries never duplicate or reorder records (see the
    /// [module docs](self#idempotence)). Requires `acks = all`: [`Producer::new`] refuses
    /// another `acks` with [`Error::Config`] naming `idempotence` rather than quietly changing
    /// either setting. Default `true` (with the default `acks = all`); set `false` to use
    /// `acks = leader` or `none`, or with a broker that lacks `InitProducerId`.
    pub idempotence: bool,
    /// Whole-batch compression. Default none.
    pub compression: Compression,
    /// A partition's batch is sent once it holds this many bytes (uncompressed, header
    /// included), or its topic's `max.message.bytes` if that is smaller; a single larger
    /// record gets a batch of its own. Default 256 KiB (Kafka's is
    /// 16 KiB): each batch is one Raft entry, and fewer, larger entries cost the brokers far
    /// less — RF 3 at 60 k records/s of 1 KiB on 2 cores, p50 / p99 6.6 / 19 ms with 256 KiB
    /// against 28–37 / 62–96 ms with 16 KiB. A batch only grows to this size while records keep
    /// coming within `linger`, and the sticky partitioner moves on after about this many bytes.
    pub batch_size: usize,
    /// How long a batch that is not full waits for more records. Default 5 ms.
    pub linger: Duration,
    /// Most bytes of encoded records buffered (queued or in flight); `enqueue` waits when it is
    /// used up. At least `batch_size`. Default 32 MiB.
    pub buffer_memory: usize,
    /// Largest produce request payload per partition (and so the largest record). At most the
    /// client's `max_frame_bytes` less framing. Default 1 MiB.
    pub max_request_size: usize,
    /// Longest `enqueue` waits for metadata and buffer memory. Default 60 s.
    pub max_block: Duration,
    /// Longest from `enqueue` to a record's final outcome, retries included. Default 120 s.
    pub delivery_timeout: Duration,
    /// How long the broker may wait for the acks asked for (the request's `timeout_ms`); the
    /// producer waits a second longer for the response. Default 30 s.
    pub request_timeout: Duration,
    /// Most retries of one batch (each also bounded by `delivery_timeout`). Default unlimited.
    pub retries: u32,
    /// First retry backoff, doubled per attempt. Default 100 ms.
    pub retry_backoff: Duration,
    /// Largest retry backoff. Default 250 ms: a partition whose leader died gets a new one
    /// within an election timeout (1–2 s at the broker's default tick), and the producer should
    /// find it soon after, not up to a second later.
    pub retry_backoff_max: Duration,
    /// How keyless records spread over partitions (ignored if `partitioner` is set). Default
    /// sticky.
    pub keyless: KeylessStrategy,
    /// A custom partitioner for records without an explicit partition.
    pub partitioner: Option<Arc<dyn Partitioner>>,
    /// Most produce requests of one partition in flight at once when idempotent (Kafka's
    /// `max.in.flight.requests.per.connection`): a record need not wait for the previous
    /// request's acknowledgement to be sent. The broker keeps them in sequence order; a failed
    /// one is retried before those after it. Without idempotence it is always 1 (ordering).
    /// Pipelining starts once a request under the current producer id was acknowledged on the
    /// partition. Default 3: one producer on one partition then overlaps a request's fsync
    /// with the next requests (1 KiB records, one broker: 741–751 MB/s against 591–631 with 1;
    /// 5 gave 638–716), while RF 3 on two cores neither gained nor lost (2026-12-08). 1 ..= 16.
    pub max_in_flight_per_partition: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            idempotence: true,
            compression: Compression::None,
            batch_size: 256 << 10,
            linger: Duration::from_millis(5),
            buffer_memory: 32 << 20,
            max_request_size: 1 << 20,
            max_block: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(250),
            keyless: KeylessStrategy::Sticky,
            partitioner: None,
            max_in_flight_per_partition: 3,
        }
    }
}

/// Bytes a produce request spends on framing and fields besides the records.
const REQUEST_OVERHEAD: usize = 1024;

impl ProducerConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self, max_frame_bytes: usize) -> Result<()> {
        if self.idempotence && self.acks != Acks::All {
            return Err(Error::config(
                "idempotence",
                format!(
                    "requires acks = all, not {}; set idempotence to false to use another acks",
                    format!("{:?}", self.acks).to_lowercase()
                ),
            ));
        }
        if self.batch_size <= HEADER_LEN {
            return Err(Error::config(
                "batch_size",
                format!("must exceed the {HEADER_LEN}-byte batch header"),
            ));
        }
        if self.max_request_size < self.batch_size {
            return Err(Error::config("max_request_size", "must be at least batch_size"));
        }
        if !(1..=16).contains(&self.max_in_flight_per_partition) {
            return Err(Error::config("max_in_flight_per_partition", "must be in 1..=16"));
        }
        if self.max_request_size.saturating_add(REQUEST_OVERHEAD) > max_frame_bytes
            || i32::try_from(self.max_request_size).is_err()
        {
            return Err(Error::config(
                "max_request_size",
                format!("must leave room for framing within max_frame_bytes ({max_frame_bytes})"),
            ));
        }
        if self.buffer_memory < self.batch_size {
            return Err(Error::config("buffer_memory", "must be at least batch_size"));
        }
        for (key, d) in [
            ("delivery_timeout", self.delivery_timeout),
            ("request_timeout", self.request_timeout),
            ("retry_backoff", self.retry_backoff),
        ] {
            if d.is_zero() {
                return Err(Error::config(key, "must be positive"));
            }
        }
        if i32::try_from(self.request_timeout.as_millis()).is_err() {
            return Err(Error::config("request_timeout", "must fit in i32 milliseconds"));
        }
        if self.retry_backoff_max < self.retry_backoff {
            return Err(Error::config("retry_backoff_max", "must be at least retry_backoff"));
        }
        Ok(())
    }
}

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition; `None` lets the partitioner choose (by key hash if there is a key).
    pub partition: Option<i32>,
    /// Key (`None`: null).
    pub key: Option<Bytes>,
    /// Value (`None`: null, e.g. a tombstone).
    pub value: Option<Bytes>,
    /// Headers: key and nullable value.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// Timestamp in ms since the Unix epoch; `None`: now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A keyless record with a value.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition explicitly.
    #[must_use]
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    #[must_use]
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// The record's offset; `None` with `acks = none` (the broker does not answer).
    pub offset: Option<Offset>,
    /// The record's timestamp as sent.
    pub timestamp: i64,
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    accumulator: Arc<Accumulator>,
    partitioner: Arc<dyn Partitioner>,
    sender: Mutex<Option<JoinHandle<()>>>,
    /// The topic the last record went to (see [`Inner::topic`]).
    last_topic: Mutex<Option<LastTopic>>,
}

/// How often a reused topic's age is also checked on the monotonic clock.
const MONOTONIC_CHECK_EVERY: u32 = 256;

/// A topic's metadata as `enqueue` last used it.
struct LastTopic {
    topic: Arc<TopicInfo>,
    /// [`Client::metadata_generation`] when it was looked up.
    generation: u64,
    /// Wall-clock ms (as record timestamps) at which it reaches `metadata_max_age`.
    expires_ms: i64,
    /// The same on the monotonic clock, looked at every [`MONOTONIC_CHECK_EVERY`] uses (the
    /// wall clock may be stepped back).
    expires: std::time::Instant,
    uses: u32,
}

impl Inner {
    /// `topic`'s metadata from the client's cache, as [`Client::cached_topic`], but without
    /// its per-call costs (the cache's lock, a map lookup, a clock read) while records keep
    /// going to the topic of the previous one: that is reused until the client's metadata
    /// changes or it reaches `metadata_max_age`, judged by `now_ms`, the record's clock.
    fn topic(&self, name: &str, now_ms: i64) -> Option<Arc<TopicInfo>> {
        let generation = self.client.metadata_generation();
        let mut last = self
            .last_topic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(l) = last.as_mut()
            && l.generation == generation
            && now_ms < l.expires_ms
            && l.topic.name == name
        {
            l.uses = l.uses.wrapping_add(1);
            if !l.uses.is_multiple_of(MONOTONIC_CHECK_EVERY) || std::time::Instant::now() < l.expires {
                return Some(Arc::clone(&l.topic));
            }
        }
        let topic = self.client.cached_topic(name)?;
        let left = self
            .client
            .config()
            .metadata_max_age
            .saturating_sub(topic.fetched_at.elapsed());
        *last = Some(LastTopic {
            topic: Arc::clone(&topic),
            generation,
            expires_ms: now_ms.saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX)),
            expires: std::time::Instant::now() + left,
            uses: 0,
        });
        Some(topic)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The sender finishes what is buffered, then exits; nobody waits for it (use `close`).
        self.accumulator.close();
    }
}

/// Sends records to a Strata cluster. Cheap to clone; clones share buffers and the sender
/// task.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> strata_client::Result<()> {
/// use strata_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};
///
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9700")).await?;
/// let producer = client.producer(ProducerConfig::default())?;
///
/// // One record, waiting for its offset.
/// let meta = producer.send(ProducerRecord::new("events", "hello").key("user-1")).await?;
/// println!("partition {} offset {:?}", meta.partition, meta.offset);
///
/// // Many records, pipelined: enqueue returns as soon as the record is buffered.
/// let mut deliveries = Vec::new();
/// for i in 0..1000 {
///     deliveries.push(producer.enqueue(ProducerRecord::new("events", format!("event {i}"))).await?);
/// }
/// for d in deliveries {
///     d.await?;
/// }
/// producer.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Producer {
    /// A producer on `client`, starting its sender task (call from within a Tokio runtime).
    ///
    /// # Errors
    /// [`Error::Config`] if the config is invalid.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate(client.config().max_frame_bytes)?;
        let accumulator = Arc::new(Accumulator::new(AccumulatorConfig {
            batch_size: config.batch_size,
            linger: config.linger,
            compression: config.compression,
            buffer_memory: config.buffer_memory,
            delivery_timeout: config.delivery_timeout,
            max_batches_per_send: if config.idempotence {
                idempotence::MAX_BATCHES_PER_SEND
            } else {
                usize::MAX
            },
            max_in_flight: if config.idempotence {
                config.max_in_flight_per_partition
            } else {
                1
            },
        }));
        let partitioner = config
            .partitioner
            .clone()
            .unwrap_or_else(|| Arc::new(DefaultPartitioner::new(config.keyless, config.batch_size)));
        let task = tokio::spawn(sender::run(client.clone(), Arc::clone(&accumulator), config.clone()));
        Ok(Producer {
            inner: Arc::new(Inner {
                client,
                config,
                accumulator,
                partitioner,
                sender: Mutex::new(Some(task)),
                last_topic: Mutex::new(None),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Sends a record and waits for the broker's acknowledgement.
    ///
    /// Waiting for each record in turn limits a single task to one record per round trip; to
    /// pipeline, use [`Producer::enqueue`] and await the deliveries later.
    ///
    /// # Errors
    /// Those of [`Producer::enqueue`], then the record's delivery error: the broker's
    /// [`Error::Partition`] error, [`Error::Timeout`] after `delivery_timeout`, or the last
    /// retriable error if `retries` ran out.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.enqueue(record).await?.await
    }

    /// Buffers a record for sending and returns its [`Delivery`]. Waits (up to `max_block`) for
    /// topic metadata and for buffer memory if `buffer_memory` is used up.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`], [`Error::UnknownTopic`], [`Error::UnknownPartition`],
    /// [`Error::Timeout`] (metadata or memory not available within `max_block`),
    /// [`Error::ProducerClosed`], or a metadata error.
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<Delivery> {
        let inner = &*self.inner;
        let acc = &inner.accumulator;
        if acc.is_closed() {
            return Err(Error::ProducerClosed);
        }
        let headers: Vec<HeaderRef<'_>> = record
            .headers
            .iter()
            .map(|(k, v)| HeaderRef {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let size = BatchBuilder::record_size(key, value, &headers);
        let max = inner.config.max_request_size - HEADER_LEN;
        if size > max {
            return Err(Error::RecordTooLarge {
                size,
                limit: "max_request_size",
                max,
            });
        }
        // The common case waits for nothing: cached metadata and free buffer memory. Only a
        // miss pays for a deadline (and the clock read behind it).
        let mut deadline = None;
        let max_block = inner.config.max_block;
        let mut deadline = || *deadline.get_or_insert_with(|| tokio::time::Instant::now() + max_block);
        // One clock read per record: its timestamp, and the cached topic's age. (Read again
        // after a wait for metadata or buffer memory, which can be long.)
        let mut now = now_ms();
        let cached = inner.topic(&record.topic, now);
        let mut waited = cached.is_none();
        let topic = match cached {
            Some(t) => t,
            // A broker that just restarted may not know the topic yet and says so with a
            // retriable code: wait for metadata up to `max_block`, as Kafka's producer does (a
            // topic that does not exist still fails at once).
            None => tokio::time::timeout_at(deadline(), async {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match inner.client.topic(&record.topic).await {
                        Err(e) if e.is_retriable() && !matches!(e, Error::UnknownTopic(_)) => {
                            tokio::time::sleep(crate::client::Client::backoff(
                                Duration::from_millis(50),
                                Duration::from_secs(1),
                                attempt,
                            ))
                            .await;
                        }
                        outcome => break outcome,
                    }
                }
            })
            .await
            .map_err(|_| Error::Timeout {
                what: "metadata",
                broker: "-".to_owned(),
                after: max_block,
            })??,
        };
        let reservation = match acc.try_reserve(size)? {
            Some(r) => r,
            None => {
                waited = true;
                acc.reserve(size, deadline()).await?
            }
        };
        if waited {
            now = now_ms();
        }
        let partition_count = topic.partition_count();
        let partition = match record.partition {
            Some(p) => p,
            None if partition_count == 0 => 0,
            None => acc.with_node_loads(|loads| {
                inner
                    .partitioner
                    .partition(key, size, &PartitionerContext::new(&topic, loads))
            }),
        };
        let Some(info) = topic.partition(partition) else {
            return Err(Error::UnknownPartition {
                topic: record.topic.to_string(),
                partition,
                partition_count,
            });
        };
        let parts = RecordParts {
            timestamp: record.timestamp.unwrap_or(now),
            key,
            value,
            headers: &headers,
        };
        // A topic that takes smaller batches than `batch_size` gets batches it takes. The cap
        // counts uncompressed bytes and the broker compressed ones: incompressible records can
        // come out a little larger (codec framing), so compressed batches keep headroom.
        let headroom = |cap: usize| match inner.config.compression {
            Compression::None => 0,
            _ => 64 + cap / 64,
        };
        let max_batch = topic
            .max_message_bytes()
            .map(|cap| cap.saturating_sub(headroom(cap)).max(HEADER_LEN + 1));
        acc.append(&topic.name, partition, info.leader, max_batch, &parts, reservation)
    }

    /// Sends everything buffered now without waiting for `linger`, and waits until all of it
    /// has completed (successfully or not).
    pub async fn flush(&self) {
        self.inner.accumulator.flush().await;
    }

    /// Stops accepting records, sends everything buffered (retrying as configured, bounded by
    /// `delivery_timeout`), and waits for the sender task to finish. Later `enqueue`s fail with
    /// [`Error::ProducerClosed`].
    pub async fn close(&self) {
        self.inner.accumulator.close();
        let task = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        } else {
            self.inner.accumulator.flush().await;
        }
    }
}
