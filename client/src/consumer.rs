//! The consumer: reads assigned partitions from their leaders, with prefetch.
//!
//! # Positions
//!
//! Each assigned partition has a *position*: the offset of the next record [`Consumer::poll`]
//! hands out. [`Consumer::seek`] sets it (to an offset, the earliest or latest offset, or the
//! first offset at or after a timestamp — the last three through `ListOffsets`); a partition
//! assigned without a seek starts where `auto_offset_reset` says, and so does one whose position
//! falls out of the log (`OFFSET_OUT_OF_RANGE`).
//!
//! # Fetching and prefetch
//!
//! One fetch per leader broker is in flight at a time, each a spawned task that sends the
//! request, validates every batch ([`strata_protocol::RecordBatch::validate`], through
//! [`BatchIter`]) and decodes the records — so decompression and CRC checks run while the
//! application is busy with the previous records. `poll` starts the next fetch *before* it
//! returns, for every partition with at most one unconsumed response buffered: the broker
//! long-polls it while the caller processes. Memory is bounded by two fetch responses per
//! partition (one buffered, one buffered or in flight), each at most `partition_max_bytes` (or
//! one batch, which the broker always returns whole).
//!
//! From each response the consumer skips control batches (no records, no offsets) and the
//! records below the fetch offset at the start of the first batch (the broker returns whole
//! batches, beginning with the one containing the fetch offset). A batch that fails validation
//! is an [`Error::CorruptBatch`] from `poll`, after the valid batches before it have been
//! returned; the position stays at the bad batch, so the caller decides (e.g. `seek` past it).
//!
//! # Consumer groups
//!
//! With `group_id` set, [`Consumer::subscribe`] (or [`Consumer::subscribe_pattern`]) joins the
//! group: the coordinator assigns partitions (see [`crate::group`]), `poll` applies each new
//! assignment — revoked partitions first (their positions committed if auto-commit is on, then
//! [`RebalanceEvent::Revoked`]), then the new ones ([`RebalanceEvent::Assigned`]) — and a member
//! that was fenced drops everything without committing ([`RebalanceEvent::Lost`]). A partition
//! without a position starts from the group's committed offset, else `auto_offset_reset`; this
//! holds for partitions assigned by hand to a consumer with a `group_id` too, which commits as
//! "outside the group" (accepted only while the group has no members).
//!
//! Delivery is at least once: auto-commit (every `auto_commit_interval`, from `poll`, without
//! waiting) commits the positions of records *already returned* by `poll`, so a crash repeats
//! at most what was returned since the last commit. [`Consumer::commit`] commits now and waits;
//! [`Consumer::close`] commits and leaves the group.
//!
//! # Errors and retries
//!
//! Retriable errors (a dead connection, `NOT_LEADER`, `UNKNOWN_TOPIC_OR_PARTITION`, …) back the
//! partition off for `retry_backoff` and refresh metadata where it applies; `poll` does not
//! report them. Anything else is returned by the next `poll`, once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use strata_protocol::api::list_offsets::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use strata_protocol::api::{FetchPartition, FetchRequest, TopicData};
use strata_protocol::{BatchIter, BatchLimits, DecodeError, ErrorCode, Offset, RecordHeaders, TimestampType};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::client::{Client, Pool};
use crate::error::{Error, Result};
use crate::group::{AssignmentUpdate, GroupClient, Membership, MembershipConfig, Subscription};

/// A change of a group member's partitions, passed to the rebalance listener from `poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions were added (they start at the committed offset).
    Assigned(Vec<TopicPartition>),
    /// These partitions were taken away (their positions were committed first if auto-commit
    /// is on); commit anything else you track for them now.
    Revoked(Vec<TopicPartition>),
    /// These partitions were lost: the member was fenced (its session timed out, or another
    /// instance took its place), and another member may already own them. Nothing was committed.
    Lost(Vec<TopicPartition>),
}

/// A rebalance listener.
pub type RebalanceListener = Box<dyn FnMut(&RebalanceEvent) + Send>;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where a partition's position starts when it has none, or falls out of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    #[default]
    Latest,
    /// Fail `poll` with an `OFFSET_OUT_OF_RANGE` partition error.
    Error,
}

/// Where to move a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seek {
    /// This offset.
    Offset(u64),
    /// The log start offset.
    Earliest,
    /// The high watermark (the next record produced).
    Latest,
    /// The first record whose timestamp is ≥ this (ms since the Unix epoch); the high
    /// watermark if there is none.
    Timestamp(i64),
}

/// Consumer settings. Every field's doc gives its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Where a partition without a position starts. Default latest.
    pub auto_offset_reset: OffsetReset,
    /// Longest the broker holds a fetch waiting for data. Default 500 ms.
    pub fetch_max_wait: Duration,
    /// The broker answers once this many bytes are available. Default 1.
    pub fetch_min_bytes: usize,
    /// Most bytes in one fetch response (all partitions of one broker). At most the client's
    /// `max_frame_bytes` less framing. Default 16 MiB.
    pub fetch_max_bytes: usize,
    /// Most bytes per partition in one fetch response (the first batch comes whole even if
    /// larger). Default 1 MiB.
    pub partition_max_bytes: usize,
    /// Most records one `poll` returns. Default 500.
    pub max_poll_records: usize,
    /// Wait after a retriable error before fetching the partition again. Default 100 ms.
    pub retry_backoff: Duration,
    /// Largest batch accepted (validation limit). Default 16 MiB.
    pub max_batch_bytes: usize,
    /// The consumer group to join (with `subscribe`) or commit for. Default none.
    pub group_id: Option<String>,
    /// Static membership: a stable id per consumer instance; one restarting within its session
    /// timeout gets its partitions back with no rebalance. Default none.
    pub group_instance_id: Option<String>,
    /// Commit positions automatically every `auto_commit_interval` (and of revoked partitions,
    /// and on `close`). Default true.
    pub enable_auto_commit: bool,
    /// Default 5 s.
    pub auto_commit_interval: Duration,
    /// Session timeout to ask for (`None`: the broker's `groups.session_timeout`, 10 s by
    /// default). Default none.
    pub session_timeout: Option<Duration>,
    /// How long this member may take to revoke partitions (`None`: the broker's default, 5 min).
    /// Default none.
    pub rebalance_timeout: Option<Duration>,
    /// How long fetches and offset lookups of a partition may be refused as naming a later
    /// leader term (`UNKNOWN_LEADER_EPOCH`) before the consumer concludes that the partition's
    /// terms started over — the topic was deleted and created again — and follows the new
    /// ones. Far above an election timeout, within which a deposed leader learns it was
    /// deposed. Default 30 s.
    pub leader_term_reset_after: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 16 << 20,
            partition_max_bytes: 1 << 20,
            max_poll_records: 500,
            retry_backoff: Duration::from_millis(100),
            max_batch_bytes: strata_protocol::batch::DEFAULT_MAX_BATCH_BYTES,
            group_id: None,
            group_instance_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: None,
            rebalance_timeout: None,
            leader_term_reset_after: Duration::from_secs(30),
        }
    }
}

impl ConsumerConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self, max_frame_bytes: usize) -> Result<()> {
        if i32::try_from(self.fetch_max_wait.as_millis()).is_err() {
            return Err(Error::config("fetch_max_wait", "must fit in i32 milliseconds"));
        }
        if i32::try_from(self.fetch_min_bytes).is_err() {
            return Err(Error::config("fetch_min_bytes", "must fit in i32"));
        }
        if self.fetch_max_bytes == 0 || self.fetch_max_bytes.saturating_add(1024) > max_frame_bytes {
            return Err(Error::config(
                "fetch_max_bytes",
                format!("must be positive and leave room for framing within max_frame_bytes ({max_frame_bytes})"),
            ));
        }
        if self.partition_max_bytes == 0 || self.partition_max_bytes > self.fetch_max_bytes {
            return Err(Error::config("partition_max_bytes", "must be in 1..=fetch_max_bytes"));
        }
        if self.max_poll_records == 0 {
            return Err(Error::config("max_poll_records", "must be positive"));
        }
        if self.max_batch_bytes < strata_protocol::HEADER_LEN {
            return Err(Error::config("max_batch_bytes", "must hold a batch header"));
        }
        if self.group_id.as_deref() == Some("") {
            return Err(Error::config("group_id", "must not be empty"));
        }
        if self.group_instance_id.as_deref() == Some("") {
            return Err(Error::config("group_instance_id", "must not be empty"));
        }
        if self.group_instance_id.is_some() && self.group_id.is_none() {
            return Err(Error::config("group_instance_id", "needs a group_id"));
        }
        if self.auto_commit_interval.is_zero() {
            return Err(Error::config("auto_commit_interval", "must be positive"));
        }
        if self.leader_term_reset_after.is_zero() {
            return Err(Error::config("leader_term_reset_after", "must be positive"));
        }
        for (key, d) in [
            ("session_timeout", self.session_timeout),
            ("rebalance_timeout", self.rebalance_timeout),
        ] {
            if d.is_some_and(|d| d.is_zero() || i32::try_from(d.as_millis()).is_err()) {
                return Err(Error::config(key, "must be positive and fit in i32 milliseconds"));
            }
        }
        Ok(())
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: Offset,
    /// Timestamp in ms since the Unix epoch: the producer's, or the broker's append time if
    /// the topic uses log-append time.
    pub timestamp: i64,
    /// Which of the two `timestamp` is.
    pub timestamp_type: TimestampType,
    /// Key, `None` if null.
    pub key: Option<Bytes>,
    /// Value, `None` if null.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: RecordHeaders,
}

struct PartitionState {
    topic: Arc<str>,
    /// Next offset to hand out; `None` until reset.
    position: Option<u64>,
    /// Next offset to fetch (≥ `position`).
    fetch_position: Option<u64>,
    /// Bumped by `seek`; fetch results from an older epoch are dropped.
    epoch: u64,
    high_watermark: Option<i64>,
    /// The highest leader term a fetch was served from (−1: none yet). Sent with each fetch: a
    /// deposed leader that has not heard of its successor refuses instead of showing an older
    /// high watermark.
    leader_term: i64,
    /// Since when fetches or offset lookups have been refused as from a later leader term
    /// (`UNKNOWN_LEADER_EPOCH`).
    fenced_since: Option<Instant>,
    in_flight: bool,
    retry_at: Option<Instant>,
    /// Its position fell out of the log: reset it by `auto_offset_reset`, not to the group's
    /// committed offset (which may be what fell out).
    out_of_range: bool,
}

impl PartitionState {
    /// A request sent at `at` was refused as naming a later leader term than the replica's.
    fn fenced(&mut self, at: Instant) {
        self.fenced_since.get_or_insert(at);
    }

    /// A deposed leader steps down within an election timeout (check-quorum), so refusals that
    /// have lasted `after` mean the terms started over — the topic was deleted and created
    /// again under the same name: drop the partition's term and follow the new ones.
    fn forget_term_if_fenced_for(&mut self, after: Duration, now: Instant, tp: &TopicPartition) {
        if self
            .fenced_since
            .is_some_and(|since| now.saturating_duration_since(since) >= after)
        {
            warn!(tp = %tp, term = self.leader_term, "requests refused for {after:?} as from a later leader term than the partition's; the topic was probably re-created: following its new terms");
            self.leader_term = -1;
            self.fenced_since = None;
        }
    }
}

/// Decoded records from one fetch of one partition, not yet handed out.
struct Chunk {
    tp: TopicPartition,
    records: VecDeque<ConsumerRecord>,
    /// Where the partition's position goes once the chunk is consumed (past skipped control
    /// batches).
    next_offset: u64,
}

struct Target {
    tp: TopicPartition,
    topic: Arc<str>,
    epoch: u64,
    fetch_offset: u64,
    leader_term: i64,
}

struct Fetched {
    records: VecDeque<ConsumerRecord>,
    next_offset: u64,
    high_watermark: i64,
    leader_term: i64,
    /// Size of the record set received.
    bytes: usize,
}

/// Each partition's result, in request order.
type PartitionResults = Vec<(Target, Result<Fetched>)>;

struct FetchOutcome {
    leader: i32,
    /// Per partition; or the error that failed the whole request, with its partitions.
    result: Result<PartitionResults, (Vec<Target>, Error)>,
}

/// Reads records from assigned partitions. Not `Clone`: one consumer, one set of positions.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> strata_client::Result<()> {
/// use std::time::Duration;
/// use futures::{FutureExt, StreamExt};
/// use strata_client::{Client, ClientConfig, ConsumerConfig, Seek, TopicPartition};
///
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9700")).await?;
/// let mut consumer = client.consumer(ConsumerConfig::default())?;
/// consumer.assign([TopicPartition::new("events", 0)]);
/// consumer.seek(&TopicPartition::new("events", 0), Seek::Earliest).await?;
///
/// // Batches of records…
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}@{}: {:?}", record.partition, record.offset, record.value);
/// }
///
/// // …or a stream of them.
/// let mut stream = consumer.stream();
/// while let Some(record) = stream.next().await {
///     let record = record?;
///     println!("{}", record.offset);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    client: Client,
    /// The consumer's own connections for fetches (see [`Pool`]).
    fetch_pool: Arc<Pool>,
    config: ConsumerConfig,
    limits: BatchLimits,
    partitions: HashMap<TopicPartition, PartitionState>,
    chunks: VecDeque<Chunk>,
    fetches: FuturesUnordered<AbortOnDropHandle<FetchOutcome>>,
    leaders_in_flight: HashSet<i32>,
    errors: VecDeque<Error>,
    /// Topics whose metadata should be refreshed before the next fetch.
    stale_topics: HashSet<String>,
    /// Something changed that may make a partition fetchable (a chunk consumed, a fetch done,
    /// a seek); `poll` with records at hand only looks for fetches to start when set.
    dirty: bool,
    /// The group's coordinator, if `group_id` is set.
    group: Option<GroupClient>,
    /// Group membership, once subscribed.
    membership: Option<Membership>,
    /// The assignment `poll` last applied.
    applied: AssignmentUpdate,
    listener: Option<std::sync::Mutex<RebalanceListener>>,
    next_auto_commit: Instant,
    /// Positions last committed, so an auto-commit sends only what moved.
    last_committed: HashMap<TopicPartition, u64>,
    /// Auto-commits not yet answered: a revocation waits for them, so none lands after the
    /// partition's new owner commits.
    commits_in_flight: Vec<tokio::task::JoinHandle<Result<()>>>,
    /// Offsets of auto-commits that failed, so the next auto-commit sends them again.
    failed_commits: Arc<std::sync::Mutex<Vec<(TopicPartition, u64)>>>,
    /// The assignment whose revoked positions are being committed (so a `poll` dropped during
    /// the revocation does not commit them again).
    revoke_committed: Option<AssignmentUpdate>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assignment", &self.assignment())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer on `client` with nothing assigned.
    ///
    /// # Errors
    /// [`Error::Config`] if the config is invalid.
    pub fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate(client.config().max_frame_bytes)?;
        let limits = BatchLimits {
            max_batch_bytes: config.max_batch_bytes,
            ..BatchLimits::default()
        };
        let group = config.group_id.as_deref().map(|g| GroupClient::new(client.clone(), g));
        Ok(Consumer {
            fetch_pool: Arc::new(Pool::new(client.config().clone())),
            group,
            membership: None,
            applied: AssignmentUpdate::default(),
            listener: None,
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            last_committed: HashMap::new(),
            commits_in_flight: Vec::new(),
            failed_commits: Arc::default(),
            revoke_committed: None,
            client,
            config,
            limits,
            partitions: HashMap::new(),
            chunks: VecDeque::new(),
            fetches: FuturesUnordered::new(),
            leaders_in_flight: HashSet::new(),
            errors: VecDeque::new(),
            stale_topics: HashSet::new(),
            dirty: true,
        })
    }

    /// Replaces the assignment. Partitions that stay keep their positions; new ones start per
    /// `auto_offset_reset` unless sought; records buffered for removed ones are dropped.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        self.dirty = true;
        let wanted: HashSet<TopicPartition> = partitions.into_iter().collect();
        self.partitions.retain(|tp, _| wanted.contains(tp));
        self.chunks.retain(|c| wanted.contains(&c.tp));
        for tp in wanted {
            self.partitions.entry(tp.clone()).or_insert_with(|| PartitionState {
                topic: Arc::from(tp.topic.as_str()),
                position: None,
                fetch_position: None,
                epoch: 0,
                high_watermark: None,
                leader_term: -1,
                fenced_since: None,
                in_flight: false,
                retry_at: None,
                out_of_range: false,
            });
        }
    }

    /// Adds every partition of `topic` to the assignment (metadata is fetched if needed) and
    /// returns them.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] or a metadata error.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<Vec<TopicPartition>> {
        let info = self.client.topic(topic).await?;
        let added: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let all: Vec<TopicPartition> = self.assignment().into_iter().chain(added.iter().cloned()).collect();
        self.assign(all);
        Ok(added)
    }

    /// The assigned partitions, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        let mut v: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        v.sort();
        v
    }

    /// The next offset `poll` hands out for `tp`; `None` if unassigned or not yet positioned.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.partitions.get(tp).and_then(|s| s.position)
    }

    /// The high watermark the last fetch of `tp` reported (for lag: `high_watermark −
    /// position`).
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|s| s.high_watermark)
    }

    /// Moves `tp`'s position, dropping anything buffered or in flight for it, and returns the
    /// new position.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; for `Earliest`/`Latest`/`Timestamp`, the `ListOffsets` error.
    pub async fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<u64> {
        if !self.partitions.contains_key(tp) {
            return Err(Error::NotAssigned {
                topic: tp.topic.clone(),
                partition: tp.partition,
            });
        }
        let offset = match to {
            Seek::Offset(o) => o,
            Seek::Earliest => self.list_offset(tp, EARLIEST_TIMESTAMP).await?,
            Seek::Latest => self.list_offset(tp, LATEST_TIMESTAMP).await?,
            Seek::Timestamp(ts) => match self.list_offset_fenced(tp, ts).await? {
                Some(o) => o,
                None => self.list_offset(tp, LATEST_TIMESTAMP).await?,
            },
        };
        self.set_position(tp, Some(offset));
        Ok(offset)
    }

    /// [`Consumer::seek`] for every assigned partition.
    ///
    /// # Errors
    /// The first partition's error.
    pub async fn seek_all(&mut self, to: Seek) -> Result<()> {
        for tp in self.assignment() {
            self.seek(&tp, to).await?;
        }
        Ok(())
    }

    async fn list_offset(&mut self, tp: &TopicPartition, timestamp: i64) -> Result<u64> {
        self.list_offset_fenced(tp, timestamp)
            .await?
            .ok_or_else(|| Error::partition(&tp.topic, tp.partition, ErrorCode::OffsetOutOfRange, None))
    }

    /// Looks `timestamp` up at a leader no older than any `tp` was served from (see
    /// [`Client::list_offset_fenced`]), and remembers the serving leader's term as fetches do.
    ///
    /// Refusals as from a later term count towards the same `leader_term_reset_after` as
    /// fetches': a partition refused that long (the topic was re-created and its terms started
    /// over) follows the new terms.
    async fn list_offset_fenced(&mut self, tp: &TopicPartition, timestamp: i64) -> Result<Option<u64>> {
        let after = self.config.leader_term_reset_after;
        let Some(s) = self.partitions.get_mut(tp) else {
            return self.client.list_offset(&tp.topic, tp.partition, timestamp).await;
        };
        s.forget_term_if_fenced_for(after, Instant::now(), tp);
        let term = s.leader_term;
        let started = Instant::now();
        let answer = self
            .client
            .list_offset_fenced(&tp.topic, tp.partition, timestamp, term)
            .await;
        let Some(s) = self.partitions.get_mut(tp) else {
            return answer.map(|(offset, _)| offset);
        };
        match answer {
            Ok((offset, served)) => {
                s.leader_term = s.leader_term.max(served);
                s.fenced_since = None;
                Ok(offset)
            }
            Err(e) => {
                if e.code() == Some(ErrorCode::UnknownLeaderEpoch) {
                    s.fenced(started);
                }
                Err(e)
            }
        }
    }

    fn set_position(&mut self, tp: &TopicPartition, offset: Option<u64>) {
        self.dirty = true;
        if let Some(s) = self.partitions.get_mut(tp) {
            s.position = offset;
            s.fetch_position = offset;
            s.epoch += 1;
            s.retry_at = None;
            s.out_of_range = false;
        }
        self.chunks.retain(|c| &c.tp != tp);
    }

    /// Returns up to `max_poll_records` records, waiting up to `timeout` for some to arrive
    /// (an empty `Vec` if none did). Starts the next fetches before returning, so they run
    /// while the caller processes these.
    ///
    /// # Errors
    /// A non-retriable partition error ([`Error::Partition`], e.g. `OFFSET_OUT_OF_RANGE` with
    /// `auto_offset_reset = Error`), [`Error::CorruptBatch`], or a position reset error.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_up_to(timeout, self.config.max_poll_records).await
    }

    async fn poll_up_to(&mut self, timeout: Duration, max: usize) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.sync_group().await?;
            // Collect fetches that completed meanwhile (prefetched data) without waiting.
            while let Some(Some(outcome)) = self.fetches.next().now_or_never() {
                self.fetch_done(outcome);
            }
            if let Some(e) = self.errors.pop_front() {
                return Err(e);
            }
            if !self.chunks.is_empty() {
                // Start the next fetches *before* taking records: if this future is dropped
                // while that awaits, the records are still buffered, not lost. An error
                // starting fetches waits for the next poll.
                if self.dirty
                    && let Err(e) = self.start_fetches().await
                {
                    self.errors.push_back(e);
                }
                let records = self.take_records(max);
                if !records.is_empty() {
                    return Ok(records);
                }
            }
            self.start_fetches().await?;
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            let now = Instant::now();
            let wake = self
                .partitions
                .values()
                .filter_map(|s| s.retry_at)
                .filter(|r| *r > now)
                .min()
                .map_or(deadline, |r| r.min(deadline));
            let wake = if self.membership.is_some() && self.config.enable_auto_commit {
                wake.min(self.next_auto_commit)
            } else {
                wake
            };
            let group_changed = async {
                match self.membership.as_mut() {
                    Some(m) => {
                        if m.updates.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(outcome) = self.fetches.next(), if !self.fetches.is_empty() => self.fetch_done(outcome),
                () = tokio::time::sleep_until(wake) => self.dirty = true,
                () = group_changed => {}
            }
        }
    }

    /// The records as a stream: each item is the next record, or an error `poll` would have
    /// returned. It never ends. Records it has yielded count as consumed (positions advance);
    /// nothing is lost by dropping it.
    pub fn stream(&mut self) -> BoxStream<'_, Result<ConsumerRecord>> {
        futures::stream::unfold(self, |c| async move {
            let item = c.next_record().await;
            Some((item, c))
        })
        .boxed()
    }

    /// As [`Consumer::stream`], owning the consumer.
    pub fn into_stream(self) -> BoxStream<'static, Result<ConsumerRecord>> {
        futures::stream::unfold(self, |mut c| async move {
            let item = c.next_record().await;
            Some((item, c))
        })
        .boxed()
    }

    /// Waits for the next record.
    ///
    /// # Errors
    /// As [`Consumer::poll`].
    pub async fn next_record(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(r) = self.poll_up_to(Duration::from_secs(3600), 1).await?.pop() {
                return Ok(r);
            }
        }
    }

    /// Hands out up to `max` buffered records, advancing positions.
    fn take_records(&mut self, max: usize) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(chunk) = self.chunks.front_mut() else { break };
            while out.len() < max {
                let Some(r) = chunk.records.pop_front() else { break };
                if let Some(s) = self.partitions.get_mut(&chunk.tp) {
                    s.position = Some(r.offset.0.saturating_add(1));
                }
                out.push(r);
            }
            if chunk.records.is_empty() {
                if let Some(s) = self.partitions.get_mut(&chunk.tp) {
                    s.position = Some(s.position.unwrap_or(0).max(chunk.next_offset));
                }
                self.chunks.pop_front();
                self.dirty = true;
            }
        }
        out
    }

    fn fetch_done(&mut self, outcome: Result<FetchOutcome, tokio::task::JoinError>) {
        match outcome {
            Ok(outcome) => self.handle_fetch(outcome),
            // A fetch task cannot be aborted while its handle is here, so this is a panic in
            // it (a bug): refetch its partitions after a backoff.
            Err(e) => {
                debug!(error = %e, "fetch task failed");
                self.reset_in_flight();
            }
        }
    }

    fn reset_in_flight(&mut self) {
        self.dirty = true;
        self.leaders_in_flight.clear();
        let retry_at = Instant::now() + self.config.retry_backoff;
        for s in self.partitions.values_mut() {
            if s.in_flight {
                s.in_flight = false;
                s.retry_at = Some(retry_at);
            }
        }
    }

    /// Resolves missing positions, refreshes stale metadata, and starts a fetch for every
    /// leader with fetchable partitions and no fetch in flight.
    async fn start_fetches(&mut self) -> Result<()> {
        self.dirty = false;
        let now = Instant::now();
        // Positions first: partitions assigned without a seek, or reset after falling out of
        // the log.
        let unpositioned: Vec<TopicPartition> = self
            .partitions
            .iter()
            // By fetch position: after an out-of-range reset the consumer position is set again
            // when buffered records drain, but nothing is fetched until the partition is
            // repositioned.
            .filter(|(_, s)| s.fetch_position.is_none() && !s.in_flight && s.retry_at.is_none_or(|r| r <= now))
            .map(|(tp, _)| tp.clone())
            .collect();
        // In a group, a partition without a position starts at the group's committed offset.
        let (fell_out, fresh): (Vec<TopicPartition>, Vec<TopicPartition>) = unpositioned
            .into_iter()
            .partition(|tp| self.partitions.get(tp).is_some_and(|s| s.out_of_range));
        let unpositioned = match (&self.group, fresh.is_empty()) {
            (Some(g), false) => match g.committed(&fresh).await {
                Ok(found) => {
                    let mut rest = fell_out;
                    for (tp, offset) in found {
                        if !fresh.contains(&tp) {
                            continue;
                        }
                        match offset {
                            Some(o) if self.partitions.contains_key(&tp) => {
                                self.set_position(&tp, Some(o));
                                self.last_committed.insert(tp, o);
                            }
                            _ => rest.push(tp),
                        }
                    }
                    // A partition the answer left out starts by auto_offset_reset too.
                    for tp in &fresh {
                        if !rest.contains(tp) && self.partitions.get(tp).is_some_and(|s| s.fetch_position.is_none()) {
                            rest.push(tp.clone());
                        }
                    }
                    rest
                }
                Err(e) => {
                    for tp in &fresh {
                        if let Some(s) = self.partitions.get_mut(tp) {
                            s.retry_at = Some(now + self.config.retry_backoff);
                        }
                    }
                    if e.is_retriable() {
                        debug!(error = %e, "fetching committed offsets failed; retrying");
                        fell_out
                    } else {
                        return Err(e);
                    }
                }
            },
            _ => fell_out.into_iter().chain(fresh).collect(),
        };
        for tp in unpositioned {
            let to = match self.config.auto_offset_reset {
                OffsetReset::Earliest => Seek::Earliest,
                OffsetReset::Latest => Seek::Latest,
                OffsetReset::Error => {
                    if let Some(s) = self.partitions.get_mut(&tp) {
                        s.retry_at = Some(now + self.config.retry_backoff);
                    }
                    return Err(Error::partition(
                        &tp.topic,
                        tp.partition,
                        ErrorCode::OffsetOutOfRange,
                        Some("no position and auto_offset_reset is Error".to_owned()),
                    ));
                }
            };
            match self.seek(&tp, to).await {
                Ok(_) => {}
                Err(e) if e.is_retriable() => {
                    if e.invalidates_metadata() {
                        self.stale_topics.insert(tp.topic.clone());
                    }
                    if let Some(s) = self.partitions.get_mut(&tp) {
                        s.retry_at = Some(now + self.config.retry_backoff);
                    }
                }
                Err(e) => {
                    if let Some(s) = self.partitions.get_mut(&tp) {
                        s.retry_at = Some(now + self.config.retry_backoff);
                    }
                    return Err(e);
                }
            }
        }
        if !self.stale_topics.is_empty() {
            let topics: Vec<String> = self.stale_topics.drain().collect();
            if let Err(e) = self.client.refresh_after_error(topics).await {
                debug!(error = %e, "consumer metadata refresh failed");
            }
        }
        let metadata = self.client.metadata();
        let mut buffered: HashMap<&TopicPartition, usize> = HashMap::new();
        for c in &self.chunks {
            *buffered.entry(&c.tp).or_default() += 1;
        }
        self.fetch_pool.prune(&metadata);
        let mut by_leader: HashMap<i32, Vec<Target>> = HashMap::new();
        let mut no_leader = HashSet::new();
        for (tp, s) in &self.partitions {
            let Some(fetch_offset) = s.fetch_position else { continue };
            if s.in_flight || s.retry_at.is_some_and(|r| r > now) || buffered.get(tp).copied().unwrap_or(0) >= 2 {
                continue;
            }
            let leader = metadata
                .topic(&tp.topic)
                .and_then(|t| t.partition(tp.partition))
                .and_then(|p| p.leader)
                .filter(|l| metadata.brokers.contains_key(l));
            let Some(leader) = leader else {
                no_leader.insert(tp.clone());
                continue;
            };
            if self.leaders_in_flight.contains(&leader) {
                continue;
            }
            by_leader.entry(leader).or_default().push(Target {
                tp: tp.clone(),
                topic: Arc::clone(&s.topic),
                epoch: s.epoch,
                fetch_offset,
                leader_term: s.leader_term,
            });
        }
        drop(buffered);
        for tp in no_leader {
            if let Some(s) = self.partitions.get_mut(&tp) {
                s.retry_at = Some(now + self.config.retry_backoff);
            }
            self.stale_topics.insert(tp.topic);
        }
        for (leader, targets) in by_leader {
            let Some(addr) = metadata.brokers.get(&leader).map(|b| b.addr.clone()) else {
                continue; // filtered above: every leader here is a known broker
            };
            for t in &targets {
                if let Some(s) = self.partitions.get_mut(&t.tp) {
                    s.in_flight = true;
                    s.retry_at = None;
                }
            }
            self.leaders_in_flight.insert(leader);
            let fetch = Fetch {
                pool: Arc::clone(&self.fetch_pool),
                addr,
                leader,
                request_timeout: self.client.config().request_timeout,
                config: self.config.clone(),
                limits: self.limits,
            };
            let task = fetch.run(targets);
            self.fetches.push(AbortOnDropHandle::new(tokio::spawn(task)));
        }
        Ok(())
    }

    fn handle_fetch(&mut self, outcome: FetchOutcome) {
        self.dirty = true;
        self.leaders_in_flight.remove(&outcome.leader);
        let results = match outcome.result {
            Ok(results) => results,
            Err((targets, error)) => targets.into_iter().map(|t| (t, Err(error.clone()))).collect(),
        };
        let now = Instant::now();
        for (target, result) in results {
            let Some(state) = self.partitions.get_mut(&target.tp) else {
                continue;
            };
            state.in_flight = false;
            if state.epoch != target.epoch || state.fetch_position != Some(target.fetch_offset) {
                continue; // sought meanwhile: stale data
            }
            match result {
                Ok(fetched) => {
                    state.high_watermark = Some(fetched.high_watermark);
                    state.leader_term = state.leader_term.max(fetched.leader_term);
                    state.fenced_since = None;
                    if fetched.next_offset > target.fetch_offset {
                        state.fetch_position = Some(fetched.next_offset);
                        self.chunks.push_back(Chunk {
                            tp: target.tp,
                            records: fetched.records,
                            next_offset: fetched.next_offset,
                        });
                    } else if fetched.bytes > 0 {
                        // Bytes but no progress (e.g. only a control batch at the fetch offset):
                        // back off instead of refetching the same bytes in a tight loop.
                        state.retry_at = Some(now + self.config.retry_backoff);
                    }
                }
                Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) => {
                    if self.config.auto_offset_reset == OffsetReset::Error {
                        state.retry_at = Some(now + self.config.retry_backoff);
                        self.errors.push_back(e);
                    } else {
                        debug!(tp = %target.tp, offset = target.fetch_offset, "offset out of range, resetting");
                        state.position = None;
                        state.fetch_position = None;
                        state.epoch += 1;
                        state.out_of_range = true;
                    }
                }
                Err(e) => {
                    state.retry_at = Some(now + self.config.retry_backoff);
                    if e.invalidates_metadata() {
                        self.stale_topics.insert(target.tp.topic.clone());
                    }
                    if e.code() == Some(ErrorCode::UnknownLeaderEpoch) {
                        state.fenced(now);
                        state.forget_term_if_fenced_for(self.config.leader_term_reset_after, now, &target.tp);
                    }
                    if e.is_retriable() {
                        debug!(tp = %target.tp, error = %e, "fetch failed, retrying");
                    } else {
                        self.errors.push_back(e);
                    }
                }
            }
        }
    }
}

/// Consumer groups.
impl Consumer {
    fn group_client(&self) -> Result<&GroupClient> {
        self.group
            .as_ref()
            .ok_or_else(|| Error::config("group_id", "this needs a consumer with a group_id"))
    }

    /// Joins the group (or changes the subscription) with these topics: the coordinator assigns
    /// partitions of them, which `poll` then reads. Replaces a manual assignment.
    ///
    /// # Errors
    /// [`Error::Config`] without a `group_id` or with no topic.
    pub fn subscribe<I, T>(&mut self, topics: I) -> Result<()>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let topics: std::collections::BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        if topics.is_empty() || topics.iter().any(String::is_empty) {
            return Err(Error::config("subscribe", "needs at least one topic name, none empty"));
        }
        self.set_subscription(Subscription { topics, regex: None })
    }

    /// Joins the group subscribed to every topic whose whole name matches `pattern` (a regular
    /// expression, matched by the coordinator; topics created later join the subscription).
    /// Internal topics (`__…`) never match.
    ///
    /// # Errors
    /// [`Error::Config`] without a `group_id` or with an empty pattern.
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<()> {
        if pattern.is_empty() {
            return Err(Error::config("subscribe_pattern", "the pattern is empty"));
        }
        self.set_subscription(Subscription {
            topics: Default::default(),
            regex: Some(pattern.to_owned()),
        })
    }

    fn set_subscription(&mut self, subscription: Subscription) -> Result<()> {
        let group = self.group_client()?.clone();
        match &self.membership {
            Some(m) => {
                m.lock().subscription = subscription;
                m.wake.notify_one();
            }
            None => {
                self.assign(Vec::new());
                self.applied = AssignmentUpdate::default();
                let config = MembershipConfig {
                    instance_id: self.config.group_instance_id.clone(),
                    session_timeout: self.config.session_timeout,
                    rebalance_timeout: self.config.rebalance_timeout,
                };
                self.membership = Some(Membership::start(group, subscription, config));
            }
        }
        Ok(())
    }

    /// Called from `poll` with every assignment change of a subscribed consumer.
    pub fn set_rebalance_listener(&mut self, listener: impl FnMut(&RebalanceEvent) + Send + 'static) {
        self.listener = Some(std::sync::Mutex::new(Box::new(listener)));
    }

    /// This member's id and epoch in its group (`None` until it has joined).
    pub fn group_member(&self) -> Option<(String, i32)> {
        let m = self.membership.as_ref()?;
        let s = m.lock();
        (!s.member_id.is_empty()).then(|| (s.member_id.clone(), s.epoch))
    }

    fn emit(&mut self, event: RebalanceEvent) {
        debug!(?event, "rebalance");
        if let Some(l) = self.listener.as_mut() {
            (l.get_mut().unwrap_or_else(|e| e.into_inner()))(&event);
        }
    }

    /// Who commits: the member (id, epoch), or "outside the group" ("", −1) for a consumer that
    /// is not subscribed.
    fn committer(&self) -> (String, i32) {
        match &self.membership {
            Some(m) => {
                let s = m.lock();
                (s.member_id.clone(), s.epoch)
            }
            None => (String::new(), -1),
        }
    }

    fn positions_of<'a>(&self, tps: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<(TopicPartition, u64)> {
        tps.into_iter()
            .filter_map(|tp| Some((tp.clone(), self.partitions.get(tp)?.position?)))
            .collect()
    }

    /// Waits for the commits in flight (each awaited in place, so a `poll` dropped meanwhile
    /// leaves the rest to the next one).
    async fn drain_commits(&mut self) {
        while let Some(h) = self.commits_in_flight.first_mut() {
            let _ = h.await;
            self.commits_in_flight.remove(0);
        }
    }

    /// Applies the coordinator's latest assignment: revoke (committing first), then assign.
    /// Safe to drop at any await: the next call picks up where this one stopped.
    async fn sync_group(&mut self) -> Result<()> {
        let Some(m) = self.membership.as_ref() else {
            return Ok(());
        };
        if let Some(e) = m.lock().error.take() {
            return Err(e);
        }
        let update = m.updates.borrow().clone();
        if update != self.applied {
            let current: std::collections::BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
            if update.generation != self.applied.generation {
                let lost: Vec<TopicPartition> = current.iter().cloned().collect();
                self.assign(Vec::new());
                self.last_committed.clear();
                self.revoke_committed = None;
                if !lost.is_empty() {
                    self.emit(RebalanceEvent::Lost(lost));
                }
            } else {
                let revoked: Vec<TopicPartition> = current.difference(&update.partitions).cloned().collect();
                if !revoked.is_empty() {
                    // Auto-commits in flight land first, then the revoked positions: nothing
                    // older can overwrite the next owner's commits.
                    if self.config.enable_auto_commit && self.revoke_committed.as_ref() != Some(&update) {
                        let offsets = self.positions_of(&revoked);
                        drop(self.spawn_commit(offsets));
                        self.revoke_committed = Some(update.clone());
                    }
                    self.drain_commits().await;
                    if self
                        .membership
                        .as_ref()
                        .is_some_and(|m| m.updates.borrow().generation != update.generation)
                    {
                        // Fenced meanwhile: the next call drops everything instead.
                        return Ok(());
                    }
                    let keep: Vec<TopicPartition> = current.intersection(&update.partitions).cloned().collect();
                    self.assign(keep);
                    for tp in &revoked {
                        self.last_committed.remove(tp);
                    }
                    self.revoke_committed = None;
                    self.emit(RebalanceEvent::Revoked(revoked));
                }
            }
            let current: std::collections::BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
            let added: Vec<TopicPartition> = update.partitions.difference(&current).cloned().collect();
            if !added.is_empty() {
                self.assign(update.partitions.iter().cloned());
                self.emit(RebalanceEvent::Assigned(added));
            }
            if let Some(m) = self.membership.as_ref() {
                let mut s = m.lock();
                // Only if nothing newer arrived (a fence clears what the member owns).
                if m.updates.borrow().generation == update.generation {
                    s.owned = update.partitions.clone();
                }
                drop(s);
                m.wake.notify_one();
            }
            self.applied = update;
        }
        if self.config.enable_auto_commit && Instant::now() >= self.next_auto_commit {
            self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
            let failed = std::mem::take(&mut *self.failed_commits.lock().unwrap_or_else(|e| e.into_inner()));
            for (tp, o) in failed {
                if self.last_committed.get(&tp) == Some(&o) {
                    self.last_committed.remove(&tp);
                }
            }
            let offsets: Vec<(TopicPartition, u64)> = self
                .positions_of(self.partitions.keys())
                .into_iter()
                .filter(|(tp, o)| self.last_committed.get(tp) != Some(o))
                .collect();
            if !offsets.is_empty() {
                drop(self.spawn_commit(offsets));
            }
        }
        Ok(())
    }

    fn commit_task(
        &self,
        offsets: Vec<(TopicPartition, u64)>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let group = self.group.clone();
        let (member, epoch) = self.committer();
        async move {
            match group {
                Some(g) => g.commit(&member, epoch, &offsets).await,
                None => Err(Error::config("group_id", "committing needs a consumer with a group_id")),
            }
        }
    }

    /// Commits these offsets (the next offset to consume, per partition) and waits.
    ///
    /// # Errors
    /// [`Error::Config`] without a `group_id`; [`Error::Group`] with `UNKNOWN_MEMBER_ID` or
    /// `STALE_MEMBER_EPOCH` if this member was fenced, `NON_EMPTY_GROUP` for a consumer that is
    /// not subscribed while the group has members; [`Error::Partition`] for a partition that
    /// does not exist.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.commit_task(offsets.to_vec()).await?;
        for (tp, o) in offsets {
            self.last_committed.insert(tp.clone(), *o);
        }
        Ok(())
    }

    /// Commits the position of every assigned partition (the records `poll` has returned) and
    /// waits.
    ///
    /// # Errors
    /// As [`Consumer::commit_offsets`].
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.positions_of(self.partitions.keys());
        self.commit_offsets(&offsets).await
    }

    /// Starts committing every assigned partition's position without waiting; await the handle
    /// for the outcome (or drop it).
    pub fn commit_async(&mut self) -> tokio::task::JoinHandle<Result<()>> {
        let offsets = self.positions_of(self.partitions.keys());
        let outcome = self.spawn_commit(offsets);
        tokio::spawn(async move {
            outcome
                .await
                .unwrap_or_else(|_| Err(Error::config("commit", "the commit task ended without an answer")))
        })
    }

    /// Starts committing `offsets` in a task a revocation and `close` wait for (so no commit
    /// lands after the partition's next owner commits); a failure is sent again by the next
    /// auto-commit. The receiver gets the outcome.
    fn spawn_commit(&mut self, offsets: Vec<(TopicPartition, u64)>) -> tokio::sync::oneshot::Receiver<Result<()>> {
        for (tp, o) in &offsets {
            self.last_committed.insert(tp.clone(), *o);
        }
        let task = self.commit_task(offsets.clone());
        let failed = Arc::clone(&self.failed_commits);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commits_in_flight.retain(|h| !h.is_finished());
        self.commits_in_flight.push(tokio::spawn(async move {
            let r = task.await;
            if let Err(e) = &r {
                tracing::warn!(error = %e, "committing offsets failed; the next auto-commit sends them again");
                failed.lock().unwrap_or_else(|e| e.into_inner()).extend(offsets);
            }
            let _ = tx.send(r.clone());
            r
        }));
        rx
    }

    /// The group's committed offsets for `partitions` (`None` where there is none).
    ///
    /// # Errors
    /// [`Error::Config`] without a `group_id`; the coordinator's error.
    pub async fn committed(&self, partitions: &[TopicPartition]) -> Result<Vec<(TopicPartition, Option<u64>)>> {
        self.group_client()?.committed(partitions).await
    }

    /// Commits (if auto-commit is on) and leaves the group, so its partitions move at once
    /// rather than after the session timeout. A static member (`group_instance_id`) leaves "for
    /// now": it keeps its partitions until its session timeout unless it comes back.
    ///
    /// # Errors
    /// The commit's error (the member leaves anyway).
    pub async fn close(mut self) -> Result<()> {
        self.drain_commits().await;
        let committed = if self.config.enable_auto_commit && self.group.is_some() {
            self.commit().await
        } else {
            Ok(())
        };
        if let Some(mut m) = self.membership.take() {
            m.leave().await;
        }
        committed
    }
}

/// One fetch: where to send it and how.
struct Fetch {
    pool: Arc<Pool>,
    addr: String,
    leader: i32,
    request_timeout: Duration,
    config: ConsumerConfig,
    limits: BatchLimits,
}

impl Fetch {
    /// Sends the request to the leader and decodes every partition's batches.
    async fn run(self, targets: Vec<Target>) -> FetchOutcome {
        let Fetch {
            pool,
            addr,
            leader,
            request_timeout,
            config,
            limits,
        } = self;
        // validate() bounded these to i32.
        let as_i32 = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        let mut topics: Vec<TopicData<FetchPartition>> = Vec::new();
        for t in &targets {
            let p = FetchPartition {
                partition: t.tp.partition,
                fetch_offset: i64::try_from(t.fetch_offset).unwrap_or(i64::MAX),
                partition_max_bytes: as_i32(config.partition_max_bytes),
                current_leader_term: t.leader_term,
            };
            match topics.iter_mut().find(|d| d.name == t.tp.topic) {
                Some(d) => d.partitions.push(p),
                None => topics.push(TopicData {
                    name: t.tp.topic.clone(),
                    partitions: vec![p],
                }),
            }
        }
        let request = FetchRequest {
            max_wait_ms: i32::try_from(config.fetch_max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: as_i32(config.fetch_min_bytes),
            max_bytes: as_i32(config.fetch_max_bytes),
            topics,
        };
        let timeout = request_timeout + config.fetch_max_wait;
        let response = async {
            let conn = pool.get(&addr).await?;
            let response = conn.send_with_timeout(request, timeout).await?;
            Ok::<_, Error>((conn, response))
        }
        .await;
        let (conn, response) = match response {
            Ok(r) => r,
            Err(e) => {
                return FetchOutcome {
                    leader,
                    result: Err((targets, e)),
                };
            }
        };
        let mut results = Vec::with_capacity(targets.len());
        for target in targets {
            let entry = response
                .topics
                .iter()
                .filter(|t| t.name == target.tp.topic)
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition == target.tp.partition);
            let result = match entry {
                None => Err(Error::UnexpectedResponse {
                    broker: conn.broker().to_owned(),
                    api: strata_protocol::api::ApiKey::Fetch,
                    detail: format!("no data for {}", target.tp),
                }),
                Some(p) if !p.error.is_ok() => {
                    Err(Error::partition(&target.tp.topic, target.tp.partition, p.error, None))
                }
                Some(p) => decode(&target, p.records.clone(), limits).map(|(records, next_offset)| Fetched {
                    records,
                    next_offset,
                    high_watermark: p.high_watermark,
                    leader_term: p.leader_term,
                    bytes: p.records.len(),
                }),
            };
            results.push((target, result));
        }
        FetchOutcome {
            leader,
            result: Ok(results),
        }
    }
}

/// Validates and decodes one partition's record set: skips control batches and records below
/// the fetch offset; returns the records and the offset to fetch next. A bad batch after good
/// ones ends the set there (the next fetch starts at it and reports it); a bad first batch is
/// the error.
fn decode(target: &Target, records: Bytes, limits: BatchLimits) -> Result<(VecDeque<ConsumerRecord>, u64)> {
    let mut out = VecDeque::new();
    let mut next_offset = target.fetch_offset;
    let corrupt = |offset: u64, source: DecodeError| Error::CorruptBatch {
        topic: target.tp.topic.clone(),
        partition: target.tp.partition,
        offset,
        source,
    };
    for (i, batch) in BatchIter::new(records, limits).enumerate() {
        let batch = match batch {
            Ok(b) => b,
            Err(e) if i > 0 || next_offset > target.fetch_offset => {
                // Whatever came before is good; the next fetch starts at the bad batch.
                debug!(tp = %target.tp, offset = next_offset, error = %e, "stopping at a bad batch");
                break;
            }
            Err(e) => return Err(corrupt(next_offset, e)),
        };
        let header = *batch.header();
        let batch_next = header.next_offset().0;
        if header.is_control() {
            next_offset = next_offset.max(batch_next);
            continue;
        }
        let log_append = header.attributes.timestamp_type() == TimestampType::LogAppendTime;
        let iter = match batch.records_with_limit(limits.max_decompressed_bytes) {
            Ok(it) => it,
            Err(e) if out.is_empty() && next_offset == target.fetch_offset => {
                return Err(corrupt(header.base_offset.0, e));
            }
            Err(_) => break,
        };
        let mut decoded = Vec::new();
        for record in iter {
            match record {
                Ok(r) => decoded.push(r),
                Err(e) if out.is_empty() && next_offset == target.fetch_offset => {
                    return Err(corrupt(header.base_offset.0, e));
                }
                Err(_) => return Ok((out, next_offset)),
            }
        }
        for r in decoded {
            if r.offset.0 < target.fetch_offset {
                continue;
            }
            out.push_back(ConsumerRecord {
                topic: Arc::clone(&target.topic),
                partition: target.tp.partition,
                offset: r.offset,
                timestamp: if log_append { header.max_timestamp } else { r.timestamp },
                timestamp_type: header.attributes.timestamp_type(),
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
        next_offset = next_offset.max(batch_next);
    }
    Ok((out, next_offset))
}

#[cfg(test)]
mod tests {
    use strata_protocol::batch::BatchHeader;
    use strata_protocol::{BatchBuilder, BatchOptions, Compression, ControlType, RaftIndex, RaftTerm, control_batch};

    use super::*;

    fn place(batch: Bytes, base: u64) -> Bytes {
        let h = BatchHeader::parse(&batch).unwrap();
        let mut v = batch.to_vec();
        let prefix = BatchHeader::broker_fields(h.batch_length, Offset(base), RaftTerm(1), RaftIndex(base + 1));
        v[..prefix.len()].copy_from_slice(&prefix);
        Bytes::from(v)
    }

    fn data(base: u64, n: u8, compression: Compression) -> Bytes {
        let mut b = BatchBuilder::new(BatchOptions {
            compression,
            ..BatchOptions::default()
        });
        for i in 0..n {
            b.append(1000 + i64::from(i), None, Some(&[i]), &[]).unwrap();
        }
        place(b.finish().unwrap(), base)
    }

    fn target(fetch_offset: u64) -> Target {
        Target {
            tp: TopicPartition::new("t", 0),
            topic: Arc::from("t"),
            epoch: 0,
            fetch_offset,
            leader_term: -1,
        }
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        Bytes::from(parts.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>())
    }

    #[test]
    fn decode_skips_control_batches_and_records_below_the_fetch_offset() {
        let set = concat(&[
            data(10, 5, Compression::Lz4),
            place(control_batch(ControlType::Noop, &[], 0).unwrap(), 15),
            data(15, 3, Compression::None),
        ]);
        let (records, next) = decode(&target(12), set, BatchLimits::default()).unwrap();
        let offsets: Vec<u64> = records.iter().map(|r| r.offset.0).collect();
        assert_eq!(offsets, [12, 13, 14, 15, 16, 17]);
        assert_eq!(next, 18);
        assert_eq!(records[0].value.as_deref(), Some(&[2u8][..]));
    }

    #[test]
    fn decode_stops_before_a_corrupt_batch_and_reports_it_when_it_comes_first() {
        let good = data(0, 2, Compression::None);
        let mut bad = data(2, 2, Compression::None).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let set = concat(&[good, Bytes::from(bad.clone())]);
        let (records, next) = decode(&target(0), set, BatchLimits::default()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(next, 2, "the next fetch starts at the bad batch");
        let err = decode(&target(2), Bytes::from(bad), BatchLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::CorruptBatch {
                    offset: 2,
                    source: DecodeError::CrcMismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
        // A torn tail after good batches is ignored, not an error.
        let torn = concat(&[data(0, 1, Compression::None), data(1, 1, Compression::None).slice(..50)]);
        let (records, next) = decode(&target(0), torn, BatchLimits::default()).unwrap();
        assert_eq!((records.len(), next), (1, 1));
    }
}
