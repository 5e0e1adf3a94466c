//! The consumer group coordinator.
//!
//! Group state and committed offsets are records (see [`records`]) in the internal topic
//! [`OFFSETS_TOPIC`], created by the first FindCoordinator (`groups.offsets_partitions`
//! partitions, replication factor `groups.offsets_replication_factor`, by default 3 or the
//! number of brokers if fewer). A group belongs to partition `(java_hash(group) & 0x7fffffff) %
//! partitions` — Kafka's mapping, `String.hashCode` — and that partition's leader is its
//! coordinator.
//!
//! - **Loading**: when this broker becomes a partition's leader, the maintenance task waits until
//!   everything in the partition's log is committed, replays it from the log start (off the
//!   async runtime) into a shard, and only then answers for its groups (before:
//!   `COORDINATOR_LOAD_IN_PROGRESS`). Losing leadership drops the shard.
//! - **Changing**: a request locks its shard, computes the change on a copy, applies it in memory,
//!   proposes the records to the partition's Raft group and releases the lock; it answers once
//!   the records are committed (`acks=all`). Proposals of one shard enter the log in the order
//!   they were applied in memory. If one fails, the shard is dropped and reloaded from the log,
//!   so memory never keeps a change the log does not have.
//! - **Snapshots**: once a shard has written `groups.offsets_snapshot_bytes` since its last
//!   snapshot, it writes every group between begin and end markers (see [`records`]); on every
//!   replica a compactor reads the log as it commits and deletes the segments below each
//!   complete snapshot.
//! - **Sessions** live in memory only: a loaded shard gives every member a fresh session
//!   timeout. The maintenance task removes members whose session expired or whose revocation
//!   took longer than their rebalance timeout.

pub mod assign;
pub mod records;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use std::time::{Duration, Instant};

use regex::Regex;
use strata_protocol::api::*;
use strata_protocol::{BatchBuilder, BatchIter, BatchLimits, BatchOptions, ErrorCode, Offset};
use tokio::sync::oneshot;

use crate::controller::MetadataCommand;
use crate::driver::{Command, ProposeResult};
use crate::partition::Partition;
use crate::server::Broker;
use crate::topics::TopicConfig;
use records::{GroupRecord, Groups, Replay};
use state::{Committed, Group, Heartbeat, Refusal};

/// The internal topic holding group state and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often the maintenance task looks at leadership and sessions.
const TICK: Duration = Duration::from_millis(100);
/// How long a group change waits to be committed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest metadata string a commit may carry.
const MAX_METADATA_BYTES: usize = 4096;
/// Largest record batch the coordinator writes (a group's whole state is one record).
const MAX_BATCH_BYTES: u32 = 8 << 20;
/// Most topic names one member may subscribe to.
const MAX_SUBSCRIBED_TOPICS: usize = 10_000;
/// Longest subscription regex.
const MAX_REGEX_BYTES: usize = 1024;
/// Longest session or rebalance timeout a replayed record may carry (a damaged or foreign
/// record must not overflow a deadline).
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Kafka's group → partition mapping: Java's `String.hashCode` (UTF-16 units, wrapping), sign bit
/// cleared, modulo the partition count.
pub fn partition_for(group: &str, partitions: u32) -> u32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    ((h & 0x7fff_ffff) as u32) % partitions.max(1)
}

/// One loaded `__consumer_offsets` partition this broker leads.
pub(crate) struct Shard {
    partition: Arc<Partition>,
    term: u64,
    state: tokio::sync::Mutex<ShardState>,
    /// Proposals of this partition's coordinator not yet answered (shared by every shard of the
    /// partition): a reload waits for them, so it replays everything they wrote.
    inflight: Arc<AtomicUsize>,
    /// Bytes proposed since the last snapshot, and the last snapshot's size.
    written: AtomicU64,
    snapshot_bytes: AtomicU64,
}

impl Shard {
    /// Locks the shard's state, unless the shard was dropped (a failed write or lost leadership:
    /// nothing may be written through it any more).
    async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, ShardState>, Refusal> {
        let st = self.state.lock().await;
        if st.dead {
            return Err((
                ErrorCode::CoordinatorLoadInProgress,
                "the coordinator is reloading its groups; retry shortly".into(),
            ));
        }
        Ok(st)
    }
}

#[derive(Default)]
struct ShardState {
    /// Dropped: refuse everything (set under the lock before the shard leaves the map).
    dead: bool,
    groups: Groups,
    /// Session deadline per (group, member).
    sessions: HashMap<(String, String), Instant>,
    /// When a member's pending revocation started.
    revoking_since: HashMap<(String, String), Instant>,
}

/// A group's lag as last computed, for metrics and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupSummary {
    /// Group id.
    pub group: String,
    /// `empty`, `reconciling` or `stable`.
    pub state: &'static str,
    /// Members.
    pub members: usize,
    /// Group epoch.
    pub epoch: i32,
    /// Per partition with a committed offset: topic, partition, committed offset, log end (the
    /// high watermark, if this broker hosts the partition) and lag.
    pub partitions: Vec<PartitionLag>,
}

impl GroupSummary {
    /// The sum of the partitions' known lag.
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().filter_map(|p| p.lag).sum()
    }
}

/// One partition's committed offset and lag.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset.
    pub committed: i64,
    /// High watermark, if known here.
    pub log_end: Option<i64>,
    /// `log_end − committed` (0 if negative), if the log end is known.
    pub lag: Option<i64>,
}

/// The coordinator's state on this broker.
#[derive(Default)]
pub struct Coordinator {
    shards: RwLock<HashMap<u32, Arc<Shard>>>,
    inflight: Mutex<HashMap<u32, Arc<AtomicUsize>>>,
    loading: Mutex<HashSet<u32>>,
    regexes: Mutex<HashMap<String, Option<Regex>>>,
    create: tokio::sync::Mutex<()>,
    next_member: AtomicU64,
    summaries: Mutex<Arc<Vec<GroupSummary>>>,
    /// Per hosted offsets partition: how far the compactor has read its log.
    cursors: Mutex<HashMap<u32, Cursor>>,
}

/// The compactor's place in one replica's log.
struct Cursor {
    partition: std::sync::Weak<Partition>,
    /// The next offset to read.
    next: u64,
    /// The last snapshot begin marker read: its id and Raft index.
    begin: Option<(u64, u64)>,
    /// The Raft index of the last complete snapshot's begin marker: the log below it may go
    /// (asked again every pass: a replica that had not applied that far deletes less at first).
    below: Option<u64>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

impl Coordinator {
    /// The groups this broker coordinates, with lag, as of the last maintenance pass.
    pub fn summaries(&self) -> Arc<Vec<GroupSummary>> {
        self.summaries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn shard_at(&self, index: u32) -> Option<Arc<Shard>> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned()
    }

    fn all_shards(&self) -> Vec<Arc<Shard>> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Drops a shard (a failed write, or leadership lost): marks it dead under its lock, then
    /// takes it out of the map, so the maintenance task reloads it from the log and nothing is
    /// written through the old one meanwhile.
    async fn invalidate(&self, shard: &Arc<Shard>) {
        shard.state.lock().await.dead = true;
        let mut map = self.shards.write().unwrap_or_else(|e| e.into_inner());
        let index = shard.partition.key.partition;
        if map.get(&index).is_some_and(|s| Arc::ptr_eq(s, shard)) {
            map.remove(&index);
        }
    }

    /// The in-flight proposal counter of offsets partition `index`.
    fn inflight(&self, index: u32) -> Arc<AtomicUsize> {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(index)
            .or_default()
            .clone()
    }

    /// Validates a subscription regex (compiled once, cached).
    fn check_regex(&self, re: &str) -> Result<(), String> {
        if re.len() > MAX_REGEX_BYTES {
            return Err(format!("the subscription regex is longer than {MAX_REGEX_BYTES} bytes"));
        }
        if self.compiled(re).is_some() {
            return Ok(());
        }
        Regex::new(&format!("^(?:{re})$"))
            .map(|_| ())
            .map_err(|e| format!("the subscription regex is invalid: {e}"))
    }

    fn compiled(&self, re: &str) -> Option<Regex> {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cache.get(re) {
            return r.clone();
        }
        if cache.len() > 1024 {
            cache.clear();
        }
        let r = Regex::new(&format!("^(?:{re})$")).ok();
        cache.insert(re.to_string(), r.clone());
        r
    }

    /// Whether `re` (a whole-name regex) matches `topic`; an invalid regex matches nothing.
    fn matches(&self, re: &str, topic: &str) -> bool {
        self.compiled(re).is_some_and(|r| r.is_match(topic))
    }

    fn new_member_id(&self, node: u64) -> String {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        format!("{node}-{nanos:x}-{n}")
    }
}

/// Runs the coordinator's maintenance until shutdown: loads and drops shards as leadership
/// moves, expires sessions, and refreshes the lag summaries.
pub(crate) async fn maintain(broker: Arc<Broker>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_summary = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = broker.shutting_down.cancelled() => return,
        }
        track_leadership(&broker);
        expire_sessions(&broker).await;
        if last_summary.elapsed() >= Duration::from_secs(1) {
            last_summary = Instant::now();
            snapshot_if_due(&broker).await;
            compact_logs(&broker).await;
            expire_offsets(&broker).await;
            let s = summarize(&broker).await;
            *broker.groups.summaries.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
        }
    }
}

fn offsets_partitions(broker: &Broker) -> Vec<Arc<Partition>> {
    broker
        .partitions
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(k, _)| k.topic == OFFSETS_TOPIC)
        .map(|(_, p)| p.clone())
        .collect()
}

/// Starts loading the partitions this broker now leads; drops the shards of those it no longer
/// leads (or no longer hosts).
fn track_leadership(broker: &Arc<Broker>) {
    let hosted = offsets_partitions(broker);
    let c = &broker.groups;
    let lost: Vec<Arc<Shard>> = c
        .all_shards()
        .into_iter()
        .filter(|shard| {
            !hosted
                .iter()
                .any(|p| Arc::ptr_eq(p, &shard.partition) && p.is_leader() && p.leader_term() == shard.term)
        })
        .collect();
    for shard in lost {
        tracing::info!(
            partition = shard.partition.key.partition,
            "no longer coordinating this partition's groups"
        );
        let b = broker.clone();
        tokio::spawn(async move { b.groups.invalidate(&shard).await });
    }
    for p in hosted {
        if !p.is_leader() || p.is_failed() {
            continue;
        }
        let index = p.key.partition;
        if c.shard_at(index).is_some() {
            continue;
        }
        if !c.loading.lock().unwrap_or_else(|e| e.into_inner()).insert(index) {
            continue;
        }
        let b = broker.clone();
        tokio::spawn(async move {
            // Cleared however this task ends (a panic included), or the partition would never
            // load again.
            struct Loading(Arc<Broker>, u32);
            impl Drop for Loading {
                fn drop(&mut self) {
                    self.0
                        .groups
                        .loading
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&self.1);
                }
            }
            let _loading = Loading(b.clone(), index);
            let term = p.leader_term();
            match load(&b, &p, term).await {
                Ok(Some(shard)) => {
                    b.groups
                        .shards
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(index, Arc::new(shard));
                }
                Ok(None) => {}
                Err(e) => tracing::error!(partition = index, error = %e, "loading consumer groups failed; retrying"),
            }
        });
    }
}

/// Replays partition `p` (led by this broker in `term`) into a shard; `None` if leadership moved
/// meanwhile.
async fn load(broker: &Arc<Broker>, p: &Arc<Partition>, term: u64) -> Result<Option<Shard>, String> {
    let started = Instant::now();
    let inflight = broker.groups.inflight(p.key.partition);
    // Writes through an earlier shard of this partition must have ended (they are in the log or
    // failed), and everything in the log must be committed: a new leader's log may end in
    // entries of the old term that commit only with its own first entry.
    while inflight.load(Ordering::Acquire) > 0 {
        if started.elapsed() > 2 * WRITE_TIMEOUT {
            return Err("writes of the previous coordinator are still unanswered; retrying".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    loop {
        if !p.is_leader() || p.leader_term() != term || broker.shutting_down.is_cancelled() {
            return Ok(None);
        }
        if p.high_watermark() >= p.log_end() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hw = p.high_watermark();
    let p2 = p.clone();
    let (groups, written, snapshot_bytes) = tokio::task::spawn_blocking(move || replay(&p2, hw))
        .await
        .map_err(|e| e.to_string())??;
    let now = Instant::now();
    let mut st = ShardState {
        groups,
        ..ShardState::default()
    };
    for (gid, g) in &st.groups.groups {
        for m in g.members.values() {
            st.sessions.insert(
                (gid.clone(), m.id.clone()),
                now + Duration::from_millis(m.session_timeout_ms).min(MAX_TIMEOUT),
            );
            if !m.revoking.is_empty() {
                st.revoking_since.insert((gid.clone(), m.id.clone()), now);
            }
        }
    }
    tracing::info!(
        partition = p.key.partition,
        groups = st.groups.groups.len(),
        offsets_of = st.groups.offsets.len(),
        records_up_to = hw,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "loaded consumer groups"
    );
    Ok(Some(Shard {
        partition: p.clone(),
        term,
        state: tokio::sync::Mutex::new(st),
        inflight,
        // Carried over from the log, so frequent leadership moves still lead to snapshots.
        written: AtomicU64::new(written),
        snapshot_bytes: AtomicU64::new(snapshot_bytes),
    }))
}

/// Reads the partition from its start to `hw` and replays every record (blocking). Also returns
/// the bytes written since the last complete snapshot and that snapshot's size.
fn replay(p: &Partition, hw: u64) -> Result<(Groups, u64, u64), String> {
    let mut replay = Replay::default();
    let mut offset = p.log_start();
    while offset < hw {
        offset = scan(p, offset, hw, |_, key, value| {
            let size = (key.len() + value.as_ref().map_or(0, Bytes::len)) as u64;
            match GroupRecord::decode_marked(key, value) {
                Some((rec, in_snapshot)) => replay.apply(rec, in_snapshot, size),
                None => tracing::warn!("skipping an unknown record in {OFFSETS_TOPIC}"),
            }
        })?;
    }
    Ok(replay.finish())
}

/// Reads up to about 4 MiB of the partition's records from `from` (below `hw`), passing each
/// record's key and value with its batch's Raft index to `f`; returns the offset after the last
/// record read (blocking).
fn scan(p: &Partition, from: u64, hw: u64, mut f: impl FnMut(u64, Bytes, Option<Bytes>)) -> Result<u64, String> {
    let limits = BatchLimits {
        max_batch_bytes: 64 << 20,
        ..BatchLimits::default()
    };
    let read = p
        .storage
        .with_log(|l| l.read(Offset(from), 4 << 20, Offset(hw)))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if read.next_offset.0 <= from && from < hw {
        return Err(format!(
            "reading {OFFSETS_TOPIC}-{} made no progress at offset {from} (high watermark {hw})",
            p.key.partition
        ));
    }
    for b in BatchIter::new(read.bytes, limits) {
        let b = b.map_err(|e| format!("a damaged batch in {OFFSETS_TOPIC}: {e}"))?;
        if b.header().is_control() {
            continue;
        }
        let raft_index = b.header().raft_index.0;
        for r in b.records().map_err(|e| e.to_string())? {
            let r = r.map_err(|e| e.to_string())?;
            if r.offset.0 >= hw {
                break;
            }
            if let Some(key) = r.key {
                f(raft_index, key, r.value);
            }
        }
    }
    Ok(read.next_offset.0.min(hw))
}

/// Proposes `records` as one batch to the shard's partition; the receiver answers once they are
/// committed.
fn propose(
    broker: &Broker,
    shard: &Shard,
    records: &[GroupRecord],
) -> Result<oneshot::Receiver<ProposeResult>, Refusal> {
    let now = chrono_ms();
    let mut b = BatchBuilder::new(BatchOptions::default());
    for r in records {
        let (k, v) = r.encode();
        b.append(now, Some(&k), v.as_deref(), &[])
            .map_err(|e| (ErrorCode::UnknownServerError, e.to_string()))?;
    }
    let batch = b.finish().map_err(|e| (ErrorCode::UnknownServerError, e.to_string()))?;
    if batch.len() > shard.partition.config.max_message_bytes as usize {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "the change is {} bytes, more than {OFFSETS_TOPIC}'s max.message.bytes ({}); commit fewer partitions at once",
                batch.len(),
                shard.partition.config.max_message_bytes
            ),
        ));
    }
    propose_batches(broker, shard, vec![batch])
}

/// Proposes whole batches (consecutive Raft entries) in the shard's leader term.
fn propose_batches(
    broker: &Broker,
    shard: &Shard,
    batches: Vec<Bytes>,
) -> Result<oneshot::Receiver<ProposeResult>, Refusal> {
    let bytes: usize = batches.iter().map(Bytes::len).sum();
    let (tx, rx) = oneshot::channel();
    broker.driver.try_send(Command::Propose {
        key: shard.partition.key.clone(),
        batches,
        acks: Acks::All,
        term: Some(shard.term),
        reply: tx,
    })?;
    shard.inflight.fetch_add(1, Ordering::AcqRel);
    shard.written.fetch_add(bytes as u64, Ordering::Relaxed);
    Ok(rx)
}

/// Writes a snapshot of a shard's groups once it has written more than
/// `groups.offsets_snapshot_bytes` (and more than its last snapshot) since the last one: the
/// compactor then deletes the log below it.
async fn snapshot_if_due(broker: &Arc<Broker>) {
    let threshold = broker.opts.groups.offsets_snapshot_bytes;
    for shard in broker.groups.all_shards() {
        let written = shard.written.load(Ordering::Relaxed);
        if written < threshold.max(shard.snapshot_bytes.load(Ordering::Relaxed)) {
            continue;
        }
        let Ok(st) = shard.lock().await else { continue };
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Encoding every group is CPU work: off the async workers' queue (the shard stays locked,
        // so nothing is written meanwhile).
        let build = || build_snapshot(id, &st.groups);
        let built = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(build),
            _ => build(),
        };
        let (batches, groups) = match built {
            Ok(b) => (b, st.groups.groups.len()),
            Err(e) => {
                tracing::error!(error = %e, "building a consumer-group snapshot failed");
                continue;
            }
        };
        let bytes: usize = batches.iter().map(Bytes::len).sum();
        match propose_batches(broker, &shard, batches) {
            Ok(rx) => {
                drop(st);
                shard.written.store(0, Ordering::Relaxed);
                shard.snapshot_bytes.store(bytes as u64, Ordering::Relaxed);
                let s = shard.clone();
                // A snapshot changes nothing in memory: a failed or slow one needs no reload,
                // only a later retry.
                tokio::spawn(async move {
                    let outcome = tokio::time::timeout(4 * WRITE_TIMEOUT, rx).await;
                    s.inflight.fetch_sub(1, Ordering::AcqRel);
                    let partition = s.partition.key.partition;
                    match outcome {
                        Ok(Ok(Ok(_))) => tracing::info!(partition, groups, bytes, "snapshotted consumer groups"),
                        Ok(Ok(Err((code, message)))) => {
                            tracing::warn!(partition, %code, %message, "a consumer-group snapshot failed")
                        }
                        _ => tracing::warn!(partition, "a consumer-group snapshot was not answered"),
                    }
                });
            }
            Err((code, message)) => {
                // Back off: try again after as many bytes more.
                shard.written.store(0, Ordering::Relaxed);
                drop(st);
                tracing::warn!(%code, %message, "writing a consumer-group snapshot failed");
            }
        }
    }
}

/// A snapshot's batches: the begin marker, every group and offset, the end marker, in batches
/// of about 1 MiB.
fn build_snapshot(id: u64, groups: &Groups) -> Result<Vec<Bytes>, strata_protocol::BuildError> {
    const BATCH_BYTES: usize = 1 << 20;
    let now = chrono_ms();
    let mut out = Vec::new();
    let mut b = BatchBuilder::new(BatchOptions::default());
    let records = std::iter::once((GroupRecord::SnapshotBegin(id), false))
        .chain(groups.records().map(|r| (r, true)))
        .chain(std::iter::once((GroupRecord::SnapshotEnd(id), false)));
    for (r, in_snapshot) in records {
        let (k, v) = r.encode_as(in_snapshot);
        if !b.is_empty() && b.size_bytes() + k.len() + v.as_ref().map_or(0, Bytes::len) > BATCH_BYTES {
            out.push(b.finish()?);
        }
        b.append(now, Some(&k), v.as_deref(), &[])?;
    }
    out.push(b.finish()?);
    Ok(out)
}

/// On every replica of the offsets partitions hosted here (leader or follower), reads the log
/// as it commits and, at each complete snapshot, deletes the segments below its begin marker.
async fn compact_logs(broker: &Arc<Broker>) {
    for p in offsets_partitions(broker) {
        let index = p.key.partition;
        let (next, begin) = {
            let mut cursors = broker.groups.cursors.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = || Cursor {
                partition: Arc::downgrade(&p),
                next: 0,
                begin: None,
                below: None,
            };
            let c = cursors.entry(index).or_insert_with(fresh);
            if !c.partition.upgrade().is_some_and(|q| Arc::ptr_eq(&q, &p)) {
                *c = fresh();
            }
            if c.next < p.log_start() {
                c.next = p.log_start();
                c.begin = None;
            }
            (c.next, (c.begin, c.below))
        };
        let hw = p.high_watermark();
        let p2 = p.clone();
        // Up to the high watermark (or half a second), looking at snapshot markers only.
        let scanned = tokio::task::spawn_blocking(move || {
            let (mut begin, mut below) = begin;
            let mut next = next;
            let started = Instant::now();
            while next < hw && started.elapsed() < Duration::from_millis(500) {
                next = scan(&p2, next, hw, |raft_index, key, _| match GroupRecord::marker(&key) {
                    Some(GroupRecord::SnapshotBegin(id)) => begin = Some((id, raft_index)),
                    Some(GroupRecord::SnapshotEnd(id)) => {
                        if let Some((b, at)) = begin
                            && b == id
                        {
                            below = Some(at);
                        }
                    }
                    _ => {}
                })?;
            }
            Ok::<_, String>((next, begin, below))
        })
        .await;
        let (next, begin, below) = match scanned {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(partition = index, error = %e, "reading {OFFSETS_TOPIC} for compaction failed");
                continue;
            }
            Err(_) => continue,
        };
        if let Some(c) = broker
            .groups
            .cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&index)
        {
            c.next = next;
            c.begin = begin;
            c.below = below;
        }
        if let Some(below) = below {
            broker
                .driver
                .send(Command::Compact {
                    key: p.key.clone(),
                    below,
                })
                .await;
        }
    }
}

/// Waits for a proposal; a failure drops the shard (memory has the change, the log may not).
async fn committed(broker: &Broker, shard: &Arc<Shard>, rx: oneshot::Receiver<ProposeResult>) -> Result<(), Refusal> {
    let outcome = tokio::time::timeout(WRITE_TIMEOUT, rx).await;
    shard.inflight.fetch_sub(1, Ordering::AcqRel);
    let r = match outcome {
        Ok(Ok(Ok(_))) => return Ok(()),
        Ok(Ok(Err((code, message)))) => match code {
            ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable => (
                ErrorCode::NotCoordinator,
                format!("this broker stopped coordinating the group: {message}"),
            ),
            code => (code, message),
        },
        Ok(Err(_)) => (ErrorCode::CoordinatorNotAvailable, "the broker is shutting down".into()),
        Err(_) => (
            ErrorCode::RequestTimedOut,
            format!("the group change was not committed within {WRITE_TIMEOUT:?}"),
        ),
    };
    tracing::warn!(partition = shard.partition.key.partition, code = %r.0, message = %r.1, "a group change failed; reloading");
    broker.groups.invalidate(shard).await;
    Err(r)
}

/// [`committed`] in a task of its own: a request dropped while it waits (a closed connection)
/// must not skip the in-flight count or the reload after a failure.
async fn await_commit(
    broker: &Arc<Broker>,
    shard: &Arc<Shard>,
    rx: oneshot::Receiver<ProposeResult>,
) -> Result<(), Refusal> {
    let (b, s) = (broker.clone(), shard.clone());
    tokio::spawn(async move { committed(&b, &s, rx).await })
        .await
        .unwrap_or_else(|e| {
            Err((
                ErrorCode::UnknownServerError,
                format!("waiting for the group change failed: {e}"),
            ))
        })
}

/// Applies `records` to the shard's memory and proposes them (under the shard lock, so the log
/// order is the memory order).
fn write(
    broker: &Broker,
    shard: &Shard,
    st: &mut ShardState,
    records: Vec<GroupRecord>,
) -> Result<oneshot::Receiver<ProposeResult>, Refusal> {
    let rx = propose(broker, shard, &records)?;
    for r in records {
        st.groups.apply(r);
    }
    Ok(rx)
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A group's state record, stamped with when it became empty.
fn group_record(id: &str, g: &Group) -> GroupRecord {
    let mut g = g.clone();
    if g.members.is_empty() {
        g.empty_since_ms.get_or_insert_with(chrono_ms);
    } else {
        g.empty_since_ms = None;
    }
    GroupRecord::Group {
        group: id.to_string(),
        value: Some(Box::new(g)),
    }
}

/// The records that delete a group and its offsets.
fn tombstones(groups: &Groups, id: &str) -> Vec<GroupRecord> {
    let mut records: Vec<GroupRecord> = groups
        .offsets
        .get(id)
        .into_iter()
        .flat_map(|o| o.keys())
        .map(|(t, p)| GroupRecord::Offset {
            group: id.to_string(),
            topic: t.clone(),
            partition: *p,
            value: None,
        })
        .collect();
    if groups.groups.contains_key(id) {
        records.push(GroupRecord::Group {
            group: id.to_string(),
            value: None,
        });
    }
    records
}

/// Deletes groups with no member whose last commit, and the moment they became empty, are older
/// than `groups.offsets_retention` (Kafka's `offsets.retention.minutes`).
async fn expire_offsets(broker: &Arc<Broker>) {
    let Some(retention) = broker.opts.groups.offsets_retention else {
        return;
    };
    let cutoff = chrono_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    for shard in broker.groups.all_shards() {
        let Ok(mut st) = shard.lock().await else { continue };
        let ids: BTreeSet<String> = st
            .groups
            .groups
            .keys()
            .chain(st.groups.offsets.keys())
            .cloned()
            .collect();
        let expired: Vec<String> = ids
            .into_iter()
            .filter(|id| {
                let g = st.groups.groups.get(id);
                let empty_since = match g {
                    Some(g) if !g.members.is_empty() => return false,
                    Some(g) => g.empty_since_ms.unwrap_or(i64::MAX),
                    None => i64::MIN,
                };
                let last_commit = st
                    .groups
                    .offsets
                    .get(id)
                    .and_then(|o| o.values().map(|c| c.timestamp).max())
                    .unwrap_or(i64::MIN);
                empty_since.max(last_commit) < cutoff
            })
            .take(1000)
            .collect();
        if expired.is_empty() {
            continue;
        }
        let records: Vec<GroupRecord> = expired.iter().flat_map(|id| tombstones(&st.groups, id)).collect();
        match write(broker, &shard, &mut st, records) {
            Ok(rx) => {
                drop(st);
                tracing::info!(groups = ?expired, ?retention, "expired the offsets of empty groups");
                let b = broker.clone();
                let s = shard.clone();
                tokio::spawn(async move {
                    let _ = committed(&b, &s, rx).await;
                });
            }
            Err((code, message)) => tracing::warn!(%code, %message, "expiring the offsets of empty groups failed"),
        }
    }
}

/// Removes members whose session expired or whose revocation overran its rebalance timeout.
async fn expire_sessions(broker: &Arc<Broker>) {
    let now = Instant::now();
    for shard in broker.groups.all_shards() {
        let Ok(mut st) = shard.lock().await else { continue };
        let mut expired: BTreeMap<String, Vec<(String, &'static str)>> = BTreeMap::new();
        for ((g, m), deadline) in &st.sessions {
            if *deadline <= now {
                expired
                    .entry(g.clone())
                    .or_default()
                    .push((m.clone(), "its session timed out"));
            }
        }
        for ((g, m), since) in &st.revoking_since {
            let limit = st
                .groups
                .groups
                .get(g)
                .and_then(|grp| grp.members.get(m))
                .map_or(Duration::ZERO, |mm| {
                    Duration::from_millis(mm.rebalance_timeout_ms).min(MAX_TIMEOUT)
                });
            if *since + limit <= now {
                expired.entry(g.clone()).or_default().push((
                    m.clone(),
                    "it did not revoke its partitions within its rebalance timeout",
                ));
            }
        }
        // One write per group: a large shard never needs one huge batch.
        for (g, members) in expired {
            for (m, _) in &members {
                st.sessions.remove(&(g.clone(), m.clone()));
                st.revoking_since.remove(&(g.clone(), m.clone()));
            }
            let Some(mut grp) = st.groups.groups.get(&g).cloned() else {
                continue;
            };
            let mut removed = false;
            for (m, why) in &members {
                if grp.remove_member(m) {
                    tracing::info!(group = %g, member = %m, "removed member: {why}");
                    removed = true;
                }
            }
            if !removed {
                continue;
            }
            match write(broker, &shard, &mut st, vec![group_record(&g, &grp)]) {
                Ok(rx) => {
                    let b = broker.clone();
                    let s = shard.clone();
                    tokio::spawn(async move {
                        let _ = committed(&b, &s, rx).await;
                    });
                }
                Err((code, message)) => {
                    // Nothing was applied or proposed; the shard reloads with fresh sessions.
                    tracing::warn!(group = %g, %code, %message, "removing expired members failed; reloading");
                    drop(st);
                    broker.groups.invalidate(&shard).await;
                    break;
                }
            }
        }
    }
}

/// A partition's log end (high watermark) as this broker knows it: its own replica's if it
/// leads, else the newer of its follower copy's and what the leader of the topic's current
/// incarnation (`topic_id`) last announced (at most half a second old); `None` if the topic is
/// gone (`topic_id` `None`) or this broker neither hosts the partition nor heard of its leader.
fn log_end(broker: &Broker, topic: &str, topic_id: Option<u64>, partition: i32) -> Option<i64> {
    let topic_id = topic_id?;
    let local = broker.partition(topic, partition).filter(|p| p.topic_id == topic_id);
    if let Some(p) = local.as_ref().filter(|p| p.is_leader()) {
        return Some(p.high_watermark() as i64);
    }
    let announced = broker
        .news
        .announced(topic, u32::try_from(partition).ok()?, topic_id)
        .and_then(|a| a.high_watermark);
    let local = local.map(|p| p.high_watermark());
    local.max(announced).map(|hw| i64::try_from(hw).unwrap_or(i64::MAX))
}

/// Lag of every group this broker coordinates.
async fn summarize(broker: &Arc<Broker>) -> Vec<GroupSummary> {
    // The topics' current ids: lag is only against a topic that exists, in its current
    // incarnation (offsets of a deleted topic stay, its old high watermark must not).
    let topic_ids: HashMap<String, u64> = broker
        .registry
        .lock()
        .await
        .topics
        .iter()
        .map(|(name, meta)| (name.clone(), meta.id))
        .collect();
    let mut out = Vec::new();
    for shard in broker.groups.all_shards() {
        let Ok(st) = shard.lock().await else { continue };
        let ids: BTreeSet<&String> = st.groups.groups.keys().chain(st.groups.offsets.keys()).collect();
        for id in ids {
            let g = st.groups.groups.get(id);
            let partitions = st
                .groups
                .offsets
                .get(id)
                .map(|offs| {
                    offs.iter()
                        .map(|((t, p), c)| {
                            let log_end = log_end(broker, t, topic_ids.get(t).copied(), *p);
                            PartitionLag {
                                topic: t.clone(),
                                partition: *p,
                                committed: c.offset,
                                log_end,
                                lag: log_end.map(|e| (e - c.offset).max(0)),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(GroupSummary {
                group: id.clone(),
                state: g.map_or("empty", Group::state),
                members: g.map_or(0, |g| g.members.len()),
                epoch: g.map_or(0, |g| g.epoch),
                partitions,
            });
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out
}

/// The partition count of the offsets topic, creating the topic first if it does not exist.
async fn ensure_offsets_topic(broker: &Arc<Broker>) -> Result<u32, Refusal> {
    if let Some(t) = broker.registry.lock().await.topics.get(OFFSETS_TOPIC) {
        return Ok(t.partitions);
    }
    let _one = broker.groups.create.lock().await;
    let brokers = {
        let registry = broker.registry.lock().await;
        if let Some(t) = registry.topics.get(OFFSETS_TOPIC) {
            return Ok(t.partitions);
        }
        crate::controller::placeable(broker, &registry)
    };
    let opts = &broker.opts.groups;
    if brokers.is_empty() {
        return Err((
            ErrorCode::CoordinatorNotAvailable,
            "no broker is available to host groups".into(),
        ));
    }
    let rf = (opts.offsets_replication_factor as usize).min(brokers.len()).max(1);
    let partitions = opts.offsets_partitions;
    let mut config = TopicConfig::from_defaults(&broker.opts.topic_defaults);
    config.retention_ms = None;
    config.retention_bytes = None;
    config.flush_policy = "always".into();
    config.max_message_bytes = MAX_BATCH_BYTES;
    // Segments the size of a snapshot's trigger: once a snapshot is complete, the segments below
    // it are whole and can go.
    config.segment_bytes = opts.offsets_snapshot_bytes;
    let replicas = crate::controller::place(&brokers, OFFSETS_TOPIC, partitions, rf);
    let created = crate::controller::submit(broker, |request| MetadataCommand::CreateTopic {
        request,
        name: OFFSETS_TOPIC.to_string(),
        config,
        replicas,
    })
    .await;
    match created {
        Ok(_) => {
            tracing::info!(partitions, replication_factor = rf, "created {OFFSETS_TOPIC}");
            Ok(partitions)
        }
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => {
            let registry = broker.registry.lock().await;
            registry.topics.get(OFFSETS_TOPIC).map(|t| t.partitions).ok_or((
                ErrorCode::CoordinatorNotAvailable,
                "the offsets topic is being created".into(),
            ))
        }
        Err(e) => Err((
            ErrorCode::CoordinatorNotAvailable,
            format!("creating {OFFSETS_TOPIC} failed: {}", e.message),
        )),
    }
}

/// The shard coordinating `group`, if this broker is its coordinator and has loaded it.
async fn shard_for(broker: &Broker, group: &str) -> Result<Arc<Shard>, Refusal> {
    if group.is_empty() {
        return Err((ErrorCode::InvalidGroupId, "the group id is empty".into()));
    }
    let Some(n) = broker
        .registry
        .lock()
        .await
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions)
    else {
        return Err((
            ErrorCode::CoordinatorNotAvailable,
            format!("{OFFSETS_TOPIC} does not exist yet: send FindCoordinator first"),
        ));
    };
    let index = partition_for(group, n);
    let not_coordinator = || {
        (
            ErrorCode::NotCoordinator,
            format!("this broker is not the coordinator of group {group:?} (partition {index} of {OFFSETS_TOPIC})"),
        )
    };
    let Some(p) = broker.partition(OFFSETS_TOPIC, index as i32) else {
        return Err(not_coordinator());
    };
    if !p.is_leader() {
        return Err(not_coordinator());
    }
    match broker.groups.shard_at(index) {
        Some(s) if s.term == p.leader_term() => Ok(s),
        _ => Err((
            ErrorCode::CoordinatorLoadInProgress,
            format!("the coordinator is loading group {group:?}; retry shortly"),
        )),
    }
}

/// Every topic's partition count (the subscribable world).
async fn topic_counts(broker: &Broker) -> BTreeMap<String, u32> {
    broker
        .registry
        .lock()
        .await
        .topics
        .iter()
        .map(|(n, t)| (n.clone(), t.partitions))
        .collect()
}

/// The leader of `topic`/`partition` as this broker knows it.
fn partition_leader(broker: &Broker, topic: &str, partition: u32, replicas: &[u64], topic_id: u64) -> Option<u64> {
    if let Some(p) = broker.partition(topic, partition as i32) {
        return p.leader_id();
    }
    broker
        .news
        .announced(topic, partition, topic_id)
        .map(|a| a.leader)
        .or_else(|| replicas.first().copied())
}

// ---------------------------------------------------------------------------------------------
// Request handlers.

/// FindCoordinator: creates the offsets topic on first use, then names the leader of the group's
/// partition.
pub(crate) async fn find_coordinator(broker: &Arc<Broker>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let fail = |(error, message): Refusal| FindCoordinatorResponse {
        error,
        message: Some(message),
        node_id: -1,
        host: String::new(),
        port: -1,
    };
    if req.key_type != find_coordinator::KEY_TYPE_GROUP {
        return fail((
            ErrorCode::InvalidRequest,
            format!("key type {} is not supported (0 = group)", req.key_type),
        ));
    }
    if req.key.is_empty() {
        return fail((ErrorCode::InvalidGroupId, "the group id is empty".into()));
    }
    let n = match ensure_offsets_topic(broker).await {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let index = partition_for(&req.key, n);
    let (replicas, id) = {
        let registry = broker.registry.lock().await;
        let Some(t) = registry.topics.get(OFFSETS_TOPIC) else {
            return fail((
                ErrorCode::CoordinatorNotAvailable,
                "the offsets topic is being created".into(),
            ));
        };
        (t.assignment(index).map(|a| a.members()).unwrap_or_default(), t.id)
    };
    let Some(leader) = partition_leader(broker, OFFSETS_TOPIC, index, &replicas, id) else {
        return fail((
            ErrorCode::CoordinatorNotAvailable,
            format!("partition {index} of {OFFSETS_TOPIC} has no leader yet"),
        ));
    };
    let Some(b) = crate::api::broker_list(broker)
        .into_iter()
        .find(|b| b.node_id == leader as i32)
    else {
        return fail((
            ErrorCode::CoordinatorNotAvailable,
            format!("the coordinator (broker {leader}) is not known here yet"),
        ));
    };
    FindCoordinatorResponse {
        error: ErrorCode::None,
        message: None,
        node_id: b.node_id,
        host: b.host,
        port: b.port,
    }
}

fn to_partitions(list: &[TopicPartitions]) -> assign::Partitions {
    let mut out = assign::Partitions::new();
    for tp in list {
        out.entry(tp.topic.clone())
            .or_default()
            .extend(tp.partitions.iter().copied());
    }
    out.retain(|_, s| !s.is_empty());
    out
}

fn from_partitions(p: &assign::Partitions) -> Vec<TopicPartitions> {
    p.iter()
        .map(|(t, ps)| TopicPartitions {
            topic: t.clone(),
            partitions: ps.iter().copied().collect(),
        })
        .collect()
}

/// ConsumerGroupHeartbeat: join, heartbeat, leave.
pub(crate) async fn heartbeat(
    broker: &Arc<Broker>,
    req: ConsumerGroupHeartbeatRequest,
    client_id: Option<String>,
    client_host: std::net::IpAddr,
) -> ConsumerGroupHeartbeatResponse {
    let member_id = req.member_id.clone();
    let epoch = req.member_epoch;
    match heartbeat_inner(broker, req, client_id, client_host).await {
        Ok(r) => r,
        Err((error, message)) => ConsumerGroupHeartbeatResponse {
            error,
            message: Some(message),
            member_id,
            member_epoch: epoch,
            heartbeat_interval_ms: broker.opts.groups.heartbeat_interval.as_millis() as i32,
            assignment: None,
        },
    }
}

async fn heartbeat_inner(
    broker: &Arc<Broker>,
    req: ConsumerGroupHeartbeatRequest,
    client_id: Option<String>,
    client_host: std::net::IpAddr,
) -> Result<ConsumerGroupHeartbeatResponse, Refusal> {
    let opts = &broker.opts.groups;
    if req.member_epoch != consumer_group_heartbeat::JOIN_EPOCH && req.member_id.is_empty() {
        return Err((
            ErrorCode::UnknownMemberId,
            "a member id is required except to join".into(),
        ));
    }
    if req.member_epoch < consumer_group_heartbeat::STATIC_LEAVE_EPOCH {
        return Err((
            ErrorCode::InvalidRequest,
            format!("member epoch {} is invalid", req.member_epoch),
        ));
    }
    if req.instance_id.as_deref() == Some("") {
        return Err((ErrorCode::InvalidRequest, "the instance id is empty".into()));
    }
    let session = match req.session_timeout_ms {
        -1 => opts.session_timeout,
        ms if ms > 0
            && Duration::from_millis(ms as u64) >= opts.min_session_timeout
            && Duration::from_millis(ms as u64) <= opts.max_session_timeout =>
        {
            Duration::from_millis(ms as u64)
        }
        ms => {
            return Err((
                ErrorCode::InvalidSessionTimeout,
                format!(
                    "session timeout {ms} ms is not within the broker's bounds {} ..= {} ms",
                    opts.min_session_timeout.as_millis(),
                    opts.max_session_timeout.as_millis()
                ),
            ));
        }
    };
    // A member may not hold partitions hostage for longer than the broker allows (or an hour).
    let rebalance = match req.rebalance_timeout_ms {
        ms if ms > 0 => Duration::from_millis(ms as u64).min(opts.rebalance_timeout.max(Duration::from_secs(3600))),
        _ => opts.rebalance_timeout,
    };
    if let Some(re) = req.subscribed_topic_regex.as_deref().filter(|r| !r.is_empty()) {
        broker
            .groups
            .check_regex(re)
            .map_err(|e| (ErrorCode::InvalidRequest, e))?;
    }
    if let Some(names) = &req.subscribed_topic_names
        && (names.len() > MAX_SUBSCRIBED_TOPICS || names.iter().any(|n| n.is_empty() || n.len() > 249))
    {
        return Err((
            ErrorCode::InvalidRequest,
            format!("a subscription is at most {MAX_SUBSCRIBED_TOPICS} topic names of 1 to 249 bytes"),
        ));
    }
    let shard = shard_for(broker, &req.group_id).await?;
    let mut st = shard.lock().await?;
    // Read under the shard lock, so heartbeats see partition counts in the order they apply
    // them (a stale view applied after a newer one would shrink the target back).
    let topics = topic_counts(broker).await;
    let group_id = req.group_id.clone();
    let exists = st.groups.groups.contains_key(&group_id);
    if !exists && req.member_epoch != consumer_group_heartbeat::JOIN_EPOCH {
        if req.member_epoch == consumer_group_heartbeat::LEAVE_EPOCH {
            return Ok(ConsumerGroupHeartbeatResponse {
                error: ErrorCode::None,
                message: None,
                member_id: req.member_id,
                member_epoch: consumer_group_heartbeat::LEAVE_EPOCH,
                heartbeat_interval_ms: 0,
                assignment: None,
            });
        }
        return Err((
            ErrorCode::UnknownMemberId,
            format!("group {group_id:?} has no member {:?}: rejoin", req.member_id),
        ));
    }
    let mut group = st.groups.groups.get(&group_id).cloned().unwrap_or_default();
    let revoking_before = group.members.get(&req.member_id).map(|m| m.revoking.clone());
    let hb = Heartbeat {
        member_id: req.member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id,
        client_id: client_id.unwrap_or_default(),
        client_host: client_host.to_string(),
        session_timeout_ms: session.as_millis() as u64,
        rebalance_timeout_ms: rebalance.as_millis() as u64,
        topics: req.subscribed_topic_names.map(|t| t.into_iter().collect()),
        regex: req.subscribed_topic_regex.map(|r| Some(r).filter(|r| !r.is_empty())),
        owned: req.owned_partitions.as_deref().map(to_partitions),
    };
    let node = broker.opts.node_id;
    let c = &broker.groups;
    let outcome = group.heartbeat(
        hb,
        &topics,
        || c.new_member_id(node),
        &|re, t| c.matches(re, t),
        opts.max_size,
    )?;
    let key = (group_id.clone(), outcome.member_id.clone());
    if let Some(old) = &outcome.replaced {
        st.sessions.remove(&(group_id.clone(), old.clone()));
        st.revoking_since.remove(&(group_id.clone(), old.clone()));
    }
    let leaving = outcome.member_epoch == consumer_group_heartbeat::LEAVE_EPOCH;
    if leaving {
        st.sessions.remove(&key);
        st.revoking_since.remove(&key);
    } else {
        // A static member away keeps its last deadline: it is removed once that passes.
        if outcome.member_epoch != consumer_group_heartbeat::STATIC_LEAVE_EPOCH {
            st.sessions.insert(key.clone(), Instant::now() + session);
        }
        match group.members.get(&outcome.member_id) {
            Some(m) if !m.revoking.is_empty() => {
                // The rebalance timeout runs from when the newest revocation began.
                let grew = revoking_before.as_ref().is_none_or(|before| {
                    m.revoking
                        .iter()
                        .any(|(t, ps)| ps.iter().any(|p| !before.get(t).is_some_and(|b| b.contains(p))))
                });
                if grew {
                    st.revoking_since.insert(key, Instant::now());
                } else {
                    st.revoking_since.entry(key).or_insert_with(Instant::now);
                }
            }
            _ => {
                st.revoking_since.remove(&key);
            }
        }
    }
    let interval = if outcome.pending {
        (opts.heartbeat_interval / 5).max(Duration::from_millis(50))
    } else {
        opts.heartbeat_interval
    };
    let response = ConsumerGroupHeartbeatResponse {
        error: ErrorCode::None,
        message: None,
        member_id: outcome.member_id.clone(),
        member_epoch: outcome.member_epoch,
        heartbeat_interval_ms: interval.as_millis() as i32,
        assignment: (!leaving).then(|| from_partitions(&outcome.assignment)),
    };
    if !outcome.changed {
        return Ok(response);
    }
    let rx = write(broker, &shard, &mut st, vec![group_record(&group_id, &group)])?;
    drop(st);
    await_commit(broker, &shard, rx).await?;
    Ok(response)
}

/// OffsetCommit.
pub(crate) async fn offset_commit(broker: &Arc<Broker>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let all = |req: &OffsetCommitRequest, code: ErrorCode, message: String| OffsetCommitResponse {
        message: Some(message),
        topics: req
            .topics
            .iter()
            .map(|t| TopicData {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| OffsetCommitPartitionResponse {
                        partition: p.partition,
                        error: code,
                    })
                    .collect(),
            })
            .collect(),
    };
    let shard = match shard_for(broker, &req.group_id).await {
        Ok(s) => s,
        Err((code, message)) => return all(&req, code, message),
    };
    let topics = topic_counts(broker).await;
    let mut st = match shard.lock().await {
        Ok(st) => st,
        Err((code, message)) => return all(&req, code, message),
    };
    let check = match st.groups.groups.get(&req.group_id) {
        Some(g) => g.check_commit(&req.member_id, req.member_epoch),
        None if req.member_id.is_empty() && req.member_epoch < 0 => Ok(()),
        None => Err((
            ErrorCode::UnknownMemberId,
            format!("group {:?} has no member {:?}", req.group_id, req.member_id),
        )),
    };
    if let Err((code, message)) = check {
        return all(&req, code, message);
    }
    // A member commits only partitions it owns (or is giving up): a commit delayed past a
    // revocation must not overwrite the new owner's.
    let owned = (!req.member_id.is_empty())
        .then(|| st.groups.groups.get(&req.group_id)?.members.get(&req.member_id))
        .flatten()
        .map(|m| {
            let mut o = m.assigned.clone();
            for (t, ps) in &m.revoking {
                o.entry(t.clone()).or_default().extend(ps.iter().copied());
            }
            o
        });
    let now = chrono_ms();
    let mut first_error: Option<String> = None;
    let mut records = Vec::new();
    let mut results: Vec<TopicData<OffsetCommitPartitionResponse>> = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let count = topics.get(&t.name).copied();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let refusal = if count.is_none_or(|n| p.partition < 0 || p.partition as u32 >= n) {
                Some((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{}/{} does not exist", t.name, p.partition),
                ))
            } else if owned
                .as_ref()
                .is_some_and(|o| !o.get(&t.name).is_some_and(|ps| ps.contains(&p.partition)))
            {
                Some((
                    ErrorCode::StaleMemberEpoch,
                    format!(
                        "{}/{} is not assigned to member {:?} (it moved to another member)",
                        t.name, p.partition, req.member_id
                    ),
                ))
            } else if p.committed_offset < 0 {
                Some((
                    ErrorCode::InvalidRequest,
                    format!(
                        "offset {} for {}/{} is negative",
                        p.committed_offset, t.name, p.partition
                    ),
                ))
            } else if p.metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
                Some((
                    ErrorCode::InvalidRequest,
                    format!("commit metadata is longer than {MAX_METADATA_BYTES} bytes"),
                ))
            } else {
                None
            };
            let error = match refusal {
                Some((code, message)) => {
                    first_error.get_or_insert(message);
                    code
                }
                None => {
                    records.push(GroupRecord::Offset {
                        group: req.group_id.clone(),
                        topic: t.name.clone(),
                        partition: p.partition,
                        value: Some(Committed {
                            offset: p.committed_offset,
                            metadata: p.metadata.clone(),
                            timestamp: now,
                        }),
                    });
                    ErrorCode::None
                }
            };
            parts.push(OffsetCommitPartitionResponse {
                partition: p.partition,
                error,
            });
        }
        results.push(TopicData {
            name: t.name.clone(),
            partitions: parts,
        });
    }
    if !records.is_empty() {
        let outcome = match write(broker, &shard, &mut st, records) {
            Ok(rx) => {
                drop(st);
                await_commit(broker, &shard, rx).await
            }
            Err(e) => Err(e),
        };
        if let Err((code, message)) = outcome {
            return all(&req, code, message);
        }
    }
    OffsetCommitResponse {
        message: first_error,
        topics: results,
    }
}

/// OffsetFetch.
pub(crate) async fn offset_fetch(broker: &Arc<Broker>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let shard = match shard_for(broker, &req.group_id).await {
        Ok(s) => s,
        Err((error, message)) => {
            return OffsetFetchResponse {
                error,
                message: Some(message),
                topics: Vec::new(),
            };
        }
    };
    let st = match shard.lock().await {
        Ok(st) => st,
        Err((error, message)) => {
            return OffsetFetchResponse {
                error,
                message: Some(message),
                topics: Vec::new(),
            };
        }
    };
    let offsets = st.groups.offsets.get(&req.group_id);
    let answer = |t: &str, p: i32| {
        let c = offsets.and_then(|o| o.get(&(t.to_string(), p)));
        OffsetFetchPartitionResponse {
            partition: p,
            committed_offset: c.map_or(-1, |c| c.offset),
            metadata: c.and_then(|c| c.metadata.clone()),
            commit_timestamp: c.map_or(-1, |c| c.timestamp),
            error: ErrorCode::None,
        }
    };
    let topics = match req.topics {
        Some(list) => list
            .iter()
            .map(|t| TopicData {
                name: t.name.clone(),
                partitions: t.partitions.iter().map(|p| answer(&t.name, *p)).collect(),
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<&str, Vec<OffsetFetchPartitionResponse>> = BTreeMap::new();
            for (t, p) in offsets.into_iter().flat_map(|o| o.keys()) {
                by_topic.entry(t.as_str()).or_default().push(answer(t, *p));
            }
            by_topic
                .into_iter()
                .map(|(name, partitions)| TopicData {
                    name: name.to_string(),
                    partitions,
                })
                .collect()
        }
    };
    OffsetFetchResponse {
        error: ErrorCode::None,
        message: None,
        topics,
    }
}

/// ListGroups: the groups this broker coordinates.
pub(crate) async fn list_groups(broker: &Arc<Broker>, req: ListGroupsRequest) -> ListGroupsResponse {
    let filter: Vec<String> = req.states_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut groups = Vec::new();
    for shard in broker.groups.all_shards() {
        let Ok(st) = shard.lock().await else { continue };
        let ids: BTreeSet<&String> = st.groups.groups.keys().chain(st.groups.offsets.keys()).collect();
        for id in ids {
            let g = st.groups.groups.get(id);
            let state = g.map_or("empty", Group::state);
            if !filter.is_empty() && !filter.iter().any(|f| f == state) {
                continue;
            }
            groups.push(ListedGroup {
                group_id: id.clone(),
                state: state.to_string(),
                member_count: g.map_or(0, |g| g.members.len() as i32),
            });
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    // Groups of partitions still loading are missing: say so (as Kafka does), so a client can
    // ask again.
    let loading = !broker
        .groups
        .loading
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty();
    ListGroupsResponse {
        error: if loading {
            ErrorCode::CoordinatorLoadInProgress
        } else {
            ErrorCode::None
        },
        groups,
    }
}

/// DescribeGroups.
pub(crate) async fn describe_groups(broker: &Arc<Broker>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let fail = |error, message: String, id: String| DescribedGroup {
            error,
            message: Some(message),
            group_id: id,
            state: "dead".into(),
            group_epoch: -1,
            assignment_epoch: -1,
            members: Vec::new(),
        };
        let shard = match shard_for(broker, &id).await {
            Ok(s) => s,
            Err((code, message)) => {
                groups.push(fail(code, message, id));
                continue;
            }
        };
        let st = match shard.lock().await {
            Ok(st) => st,
            Err((code, message)) => {
                groups.push(fail(code, message, id));
                continue;
            }
        };
        if !st.groups.exists(&id) {
            groups.push(fail(
                ErrorCode::GroupIdNotFound,
                format!("group {id:?} does not exist"),
                id,
            ));
            continue;
        }
        let empty = Group::default();
        let g = st.groups.groups.get(&id).unwrap_or(&empty);
        groups.push(DescribedGroup {
            error: ErrorCode::None,
            message: None,
            state: g.state().into(),
            group_epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            members: g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    member_epoch: m.epoch,
                    subscribed_topic_names: m.topics.iter().cloned().collect(),
                    subscribed_topic_regex: m.regex.clone(),
                    assignment: from_partitions(&m.assigned),
                    target_assignment: g.target.get(&m.id).map(from_partitions).unwrap_or_default(),
                })
                .collect(),
            group_id: id,
        });
    }
    DescribeGroupsResponse { groups }
}

/// DeleteGroups: only groups with no members; their state and offsets are tombstoned.
pub(crate) async fn delete_groups(broker: &Arc<Broker>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let r = delete_group(broker, &id).await;
        results.push(match r {
            Ok(()) => DeleteGroupResult {
                group_id: id,
                error: ErrorCode::None,
                message: None,
            },
            Err((error, message)) => DeleteGroupResult {
                group_id: id,
                error,
                message: Some(message),
            },
        });
    }
    DeleteGroupsResponse { results }
}

async fn delete_group(broker: &Arc<Broker>, id: &str) -> Result<(), Refusal> {
    let shard = shard_for(broker, id).await?;
    let mut st = shard.lock().await?;
    if !st.groups.exists(id) {
        return Err((ErrorCode::GroupIdNotFound, format!("group {id:?} does not exist")));
    }
    if let Some(g) = st.groups.groups.get(id)
        && !g.members.is_empty()
    {
        return Err((
            ErrorCode::NonEmptyGroup,
            format!("group {id:?} has {} active member(s); stop them first", g.members.len()),
        ));
    }
    let records = tombstones(&st.groups, id);
    let rx = write(broker, &shard, &mut st, records)?;
    drop(st);
    await_commit(broker, &shard, rx).await?;
    tracing::info!(group = %id, "deleted group");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_java_string_hash_code() {
        // "".hashCode() = 0; "a".hashCode() = 97; "group".hashCode() = 98629247.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // A negative hash code: "polygenelubricants".hashCode() = Integer.MIN_VALUE.
        assert_eq!(partition_for("polygenelubricants", 7), 0);
    }
}
