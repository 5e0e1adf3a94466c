//! The metadata controller: a Raft group of the voter brokers whose log holds the cluster's
//! metadata (topics, their configs and replica sets), applied by every broker into its local view
//! (the [`Registry`]) and turned into local replicas.
//!
//! The metadata group is driven by the same per-broker Raft driver as the partitions and stored
//! the same way (its log *is* its Raft log, in `DATA_DIR/metadata`): it is partition 0 of the
//! internal topic [`METADATA_TOPIC`]. Each entry is a record batch with one record whose value is
//! a [`MetadataCommand`] in JSON (small, rare, and readable with any batch dumper).
//!
//! - **Proposing**: any voter proposes through its own Raft node; Raft forwards a follower's
//!   proposal to the leader. The command carries a [`RequestId`] (node, sequence); when a broker
//!   applies a command it proposed, it answers the waiting request with the outcome of applying it.
//! - **Applying** is deterministic: every broker applies the same commands in the same order to
//!   the same state and gets the same outcome (a duplicate name is refused identically everywhere).
//!   Placement is decided by the proposer and carried in the command, so it does not depend on the
//!   hash function of the binary that applies it.
//! - **Replay**: the metadata log is replayed from its start at every restart (it is small: one
//!   entry per admin change); nothing else about topics is persisted.
//! - **Local replicas** ([`reconcile`]): after applying, each broker opens the partitions assigned
//!   to it that are not open and removes those no longer assigned. A partition directory records
//!   its topic id (the index of the entry that created the topic) in [`TOPIC_ID_FILE`], so a
//!   replay that passes through an older topic of the same name never opens or deletes the newer
//!   one's data, and a directory is deleted only by the delete of its own topic.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_protocol::{BatchBuilder, BatchLimits, BatchOptions, ErrorCode, RecordBatch};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::Command;
use crate::partition::PartitionKey;
use crate::server::Broker;
use crate::topics::{AdminError, Registry, TopicConfig, TopicMeta, partition_dir};

/// The internal topic whose partition 0 is the metadata Raft group.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// File in a partition directory holding its topic id (decimal).
pub const TOPIC_ID_FILE: &str = "topic-id";
/// How long an admin change waits to be committed and applied.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a proposal may go unapplied before it is proposed again (it may have been lost).
const REPROPOSE_AFTER: Duration = Duration::from_millis(500);

/// Identifies a proposal: the proposing broker and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// Proposing broker.
    pub node: u64,
    /// Its sequence number (unique per broker process run, with `nonce`).
    pub seq: u64,
    /// Random per process run, so a restarted broker never mistakes an old entry for its own.
    pub nonce: u64,
}

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataCommand {
    /// Create a topic with these replica sets (one per partition, preferred leader first).
    CreateTopic {
        /// The proposal.
        request: RequestId,
        /// Topic name.
        name: String,
        /// Its configuration.
        config: TopicConfig,
        /// Replica node ids per partition.
        replicas: Vec<Vec<u64>>,
    },
    /// Delete a topic.
    DeleteTopic {
        /// The proposal.
        request: RequestId,
        /// Topic name.
        name: String,
    },
    /// Hand the proposing broker the next `count` producer ids (the outcome is the first).
    AllocateProducerIds {
        /// The proposal.
        request: RequestId,
        /// How many.
        count: u64,
    },
    /// Start moving partitions to new replica sets (or cancel a move: `replicas` empty). All or
    /// nothing: one invalid move refuses the command.
    ReassignPartitions {
        /// The proposal.
        request: RequestId,
        /// The moves.
        moves: Vec<PartitionMove>,
    },
    /// Partitions whose Raft configuration reached their target: the target becomes the
    /// replicas. Proposed by the partitions' leaders; a stale entry (the target changed since)
    /// is skipped.
    CompleteReassignments {
        /// The proposal.
        request: RequestId,
        /// The finished moves (`replicas` = the target reached).
        done: Vec<FinishedMove>,
    },
    /// A data-only broker (not a voter) joins the cluster, or announces a new address: every
    /// broker learns where to reach it, and it becomes a learner of the metadata group.
    RegisterBroker {
        /// The proposal.
        request: RequestId,
        /// Its node id.
        node: u64,
        /// Its client address (`host:port`).
        address: String,
    },
    /// Move every replica off a broker (the moves, decided by the proposer) and keep new
    /// replicas away from it.
    DecommissionBroker {
        /// The proposal.
        request: RequestId,
        /// The broker.
        broker: u64,
        /// The moves.
        moves: Vec<PartitionMove>,
    },
}

/// One partition's new replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The replicas it moves to, preferred leader first (empty: cancel the move in progress).
    pub replicas: Vec<u64>,
}

/// A partition whose move finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedMove {
    /// Topic name.
    pub topic: String,
    /// The topic's id (a topic of the same name re-created meanwhile is another topic).
    pub topic_id: u64,
    /// Partition index.
    pub partition: u32,
    /// The target it reached.
    pub replicas: Vec<u64>,
}

impl MetadataCommand {
    fn request(&self) -> RequestId {
        match self {
            Self::CreateTopic { request, .. }
            | Self::DeleteTopic { request, .. }
            | Self::AllocateProducerIds { request, .. }
            | Self::ReassignPartitions { request, .. }
            | Self::CompleteReassignments { request, .. }
            | Self::RegisterBroker { request, .. }
            | Self::DecommissionBroker { request, .. } => *request,
        }
    }

    /// The command as a record batch (the Raft entry's data).
    ///
    /// # Errors
    /// If the batch cannot be built (a command larger than a batch may be).
    pub fn encode(&self) -> Result<Bytes, AdminError> {
        let json =
            serde_json::to_vec(self).map_err(|e| AdminError::new(ErrorCode::UnknownServerError, e.to_string()))?;
        let mut b = BatchBuilder::new(BatchOptions::default());
        let err = |e: strata_protocol::BuildError| AdminError::new(ErrorCode::InvalidRequest, e.to_string());
        b.append(0, None, Some(&json), &[]).map_err(err)?;
        b.finish().map_err(err)
    }

    /// The commands in an entry's data (a batch as proposed or as stored). Unknown or damaged
    /// commands are skipped with an error log: every broker skips the same ones.
    pub fn decode(data: &Bytes) -> Vec<Self> {
        let limits = BatchLimits {
            max_batch_bytes: 64 << 20,
            ..BatchLimits::default()
        };
        let batch = match RecordBatch::validate(data.clone(), &limits) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "skipping an unreadable metadata entry");
                return Vec::new();
            }
        };
        let Ok(records) = batch.records() else {
            return Vec::new();
        };
        records
            .filter_map(|r| {
                let value = r.ok()?.value?;
                serde_json::from_slice(&value)
                    .map_err(|e| tracing::error!(error = %e, "skipping an unknown metadata command"))
                    .ok()
            })
            .collect()
    }
}

/// Committed metadata entries, from the Raft driver to the [`reconcile`] task, in log order.
#[derive(Debug)]
pub struct Applied {
    /// The last Raft index these cover (no-op entries move it too).
    pub index: u64,
    /// Commands with the index of their entry.
    pub commands: Vec<(u64, MetadataCommand)>,
    /// A snapshot from the leader: the whole registry as of `index` (JSON), replacing this
    /// broker's (its log now starts after `index`).
    pub snapshot: Option<Bytes>,
}

/// File (in the metadata log's directory) holding the registry (JSON; its `index` is the
/// applied index it is as of): the metadata log below it is deleted, and a restart starts from
/// it. Raft snapshots of the metadata group carry the same bytes.
pub const SNAPSHOT_FILE: &str = "registry.json";

/// Metadata entries applied between snapshots (then the log below the snapshot is deleted).
/// `STRATA_METADATA_SNAPSHOT_ENTRIES` overrides it (at least 16).
fn snapshot_every() -> u64 {
    std::env::var("STRATA_METADATA_SNAPSHOT_ENTRIES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(4096, |n| n.max(16))
}

/// Reads the registry snapshot in `dir` (the metadata log's directory), if any.
///
/// # Errors
/// A damaged file: starting without it would replay a log whose start is gone.
pub fn read_snapshot(dir: &Path) -> anyhow::Result<Option<(Registry, Bytes)>> {
    let path = dir.join(SNAPSHOT_FILE);
    strata_storage::durable::remove_stale_tmp(&path);
    let Some(bytes) = strata_storage::durable::read(&path)? else {
        return Ok(None);
    };
    let registry: Registry =
        serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
    Ok(Some((registry, Bytes::from(bytes))))
}

/// Saves the registry (as of its `index`) durably and attaches it to the metadata group's Raft
/// snapshots.
async fn save_snapshot(broker: &Arc<Broker>, registry: &Registry) -> anyhow::Result<()> {
    let Some(metadata) = broker.metadata.get() else {
        return Ok(());
    };
    let bytes = Bytes::from(serde_json::to_vec(registry)?);
    let path = metadata.storage.dir().join(SNAPSHOT_FILE);
    let file = bytes.clone();
    tokio::task::spawn_blocking(move || strata_storage::durable::write_atomic(&path, &file)).await??;
    metadata.storage.set_snapshot_state(registry.index, bytes);
    Ok(())
}

/// The proposal side of the controller, shared by the request handlers.
pub struct Controller {
    node_id: u64,
    nonce: u64,
    seq: AtomicU64,
    waiting: Mutex<HashMap<RequestId, oneshot::Sender<Result<u64, AdminError>>>>,
    /// The last metadata index applied to the registry and local replicas.
    applied: watch::Sender<u64>,
}

impl Controller {
    /// A controller for broker `node_id`.
    pub fn new(node_id: u64) -> Self {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            node_id,
            nonce,
            seq: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
            applied: watch::Sender::new(0),
        }
    }

    /// The last metadata index applied here.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    pub(crate) fn set_applied(&self, index: u64) {
        self.applied.send_replace(index);
    }

    /// Sees every change of [`applied_index`](Self::applied_index).
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn next_request(&self) -> RequestId {
        RequestId {
            node: self.node_id,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            nonce: self.nonce,
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<Result<u64, AdminError>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Proposes the command `make` builds and waits until this broker has applied it (and opened or
/// removed its local replicas), returning the outcome of applying it (a value for commands that
/// produce one, such as the first of the producer ids allocated; 0 otherwise).
///
/// # Errors
/// The command's own outcome (e.g. `TOPIC_ALREADY_EXISTS`), `REQUEST_TIMED_OUT` when there is no
/// controller leader or the change did not commit in time (it may still be applied later).
pub(crate) async fn submit(
    broker: &Broker,
    make: impl FnOnce(RequestId) -> MetadataCommand,
) -> Result<u64, AdminError> {
    let c = &broker.controller;
    let request = c.next_request();
    let data = make(request).encode()?;
    let (tx, mut rx) = oneshot::channel();
    c.waiting().insert(request, tx);
    let forget = || {
        c.waiting().remove(&request);
    };
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    let mut last_error = None;
    // A proposal can be lost: raft-rs drops it while no leader is known, and one forwarded to a
    // leader that just died vanishes. So it is proposed again (same request id) until it is
    // applied or the time is up; a copy applied after the first is answered to nobody, and
    // every command is harmless applied twice (see `apply`).
    loop {
        let (ptx, prx) = oneshot::channel();
        let sent = broker
            .driver
            .send(Command::ProposeMetadata {
                data: data.clone(),
                reply: ptx,
            })
            .await;
        let proposed = if sent {
            prx.await.unwrap_or(Err((
                ErrorCode::BrokerShuttingDown,
                "the broker is shutting down".into(),
            )))
        } else {
            Err((ErrorCode::BrokerShuttingDown, "the broker is shutting down".into()))
        };
        match proposed {
            Err((ErrorCode::BrokerShuttingDown, message)) => {
                forget();
                return Err(AdminError::new(ErrorCode::BrokerShuttingDown, message));
            }
            Err((code, message)) => last_error = Some(AdminError::new(code, message)),
            Ok(()) => {}
        }
        let wait = deadline.min(tokio::time::Instant::now() + REPROPOSE_AFTER);
        match tokio::time::timeout_at(wait, &mut rx).await {
            Ok(Ok(outcome)) => return outcome,
            Ok(Err(_)) => {
                return Err(AdminError::new(
                    ErrorCode::BrokerShuttingDown,
                    "the broker is shutting down",
                ));
            }
            Err(_) if tokio::time::Instant::now() >= deadline => {
                forget();
                return Err(last_error.unwrap_or_else(|| {
                    AdminError::new(
                        ErrorCode::RequestTimedOut,
                        format!(
                            "the metadata change was not committed within {COMMIT_TIMEOUT:?} (is a majority of the controller voters up?); it may still be applied"
                        ),
                    )
                }));
            }
            Err(_) => {}
        }
    }
}

/// Applies one command to the metadata view. Deterministic: every broker gets the same outcome.
pub fn apply(registry: &mut Registry, index: u64, cmd: &MetadataCommand) -> Result<u64, AdminError> {
    let r = cmd.request();
    if !registry.recent.insert((r.node, r.nonce, r.seq)) {
        return Err(AdminError::new(
            ErrorCode::InvalidRequest,
            "a copy of a command already applied",
        ));
    }
    match cmd {
        MetadataCommand::CreateTopic {
            name, config, replicas, ..
        } => {
            if registry.topics.contains_key(name) {
                return Err(AdminError::new(
                    ErrorCode::TopicAlreadyExists,
                    format!("topic {name} already exists"),
                ));
            }
            if replicas.is_empty() || replicas.iter().any(Vec::is_empty) {
                return Err(AdminError::new(
                    ErrorCode::InvalidRequest,
                    "a partition without replicas",
                ));
            }
            registry.topics.insert(
                name.clone(),
                TopicMeta {
                    id: index,
                    partitions: replicas.len() as u32,
                    config: config.clone(),
                    replicas: replicas.clone(),
                    initial: replicas.clone(),
                    targets: BTreeMap::new(),
                },
            );
            Ok(0)
        }
        MetadataCommand::ReassignPartitions { moves, .. } => apply_moves(registry, moves),
        MetadataCommand::RegisterBroker { node, address, .. } => {
            if *node == 0 || address.is_empty() {
                return Err(AdminError::new(
                    ErrorCode::InvalidRequest,
                    "a broker needs an id and an address",
                ));
            }
            registry.brokers.insert(*node, address.clone());
            Ok(0)
        }
        MetadataCommand::DecommissionBroker { broker, moves, .. } => {
            let n = apply_moves(registry, moves)?;
            registry.decommissioned.insert(*broker);
            Ok(n)
        }
        MetadataCommand::CompleteReassignments { done, .. } => {
            let mut completed = 0;
            for d in done {
                let Some(meta) = registry.topics.get_mut(&d.topic).filter(|m| m.id == d.topic_id) else {
                    continue;
                };
                if meta.targets.get(&d.partition) != Some(&d.replicas) {
                    continue;
                }
                meta.targets.remove(&d.partition);
                if let Some(r) = meta.replicas.get_mut(d.partition as usize) {
                    *r = d.replicas.clone();
                    completed += 1;
                }
            }
            Ok(completed)
        }
        MetadataCommand::AllocateProducerIds { count, .. } => {
            let first = registry.next_producer_id.max(1);
            let end = first
                .checked_add(*count)
                .filter(|&e| e <= i64::MAX as u64)
                .ok_or_else(|| AdminError::new(ErrorCode::UnknownServerError, "producer ids exhausted"))?;
            registry.next_producer_id = end;
            Ok(first)
        }
        MetadataCommand::DeleteTopic { name, .. } => match registry.topics.remove(name) {
            Some(_) => Ok(0),
            None => Err(AdminError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )),
        },
    }
}

/// Checks every move, then starts them (all or nothing); returns how many.
fn apply_moves(registry: &mut Registry, moves: &[PartitionMove]) -> Result<u64, AdminError> {
    for m in moves {
        let meta = registry.topics.get(&m.topic).ok_or_else(|| {
            AdminError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {} does not exist", m.topic),
            )
        })?;
        if m.partition >= meta.partitions {
            return Err(AdminError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {} has no partition {}", m.topic, m.partition),
            ));
        }
        check_replica_set(&m.replicas, true)?;
        if m.replicas.is_empty() && !meta.targets.contains_key(&m.partition) {
            return Err(AdminError::new(
                ErrorCode::InvalidRequest,
                format!("{}-{} has no reassignment in progress to cancel", m.topic, m.partition),
            ));
        }
    }
    for m in moves {
        if let Some(meta) = registry.topics.get_mut(&m.topic) {
            let current = meta.replicas.get(m.partition as usize);
            if m.replicas.is_empty() || current == Some(&m.replicas) {
                meta.targets.remove(&m.partition);
            } else {
                meta.targets.insert(m.partition, m.replicas.clone());
            }
        }
    }
    Ok(moves.len() as u64)
}

/// Checks a replica set's shape: not empty (unless `may_be_empty`), no repeats, no id 0, at
/// most 64 members.
pub(crate) fn check_replica_set(replicas: &[u64], may_be_empty: bool) -> Result<(), AdminError> {
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let bad = |why: &str| Err(AdminError::new(ErrorCode::InvalidReplicaAssignment, why.to_string()));
    if replicas.is_empty() && !may_be_empty {
        return bad("a partition needs at least one replica");
    }
    if sorted.len() != replicas.len() {
        return bad("a broker appears twice among the replicas");
    }
    if sorted.first() == Some(&0) {
        return bad("broker ids start at 1");
    }
    if replicas.len() > 64 {
        return bad("at most 64 replicas");
    }
    Ok(())
}

/// Stable 64-bit FNV-1a, for placement (the same on every platform and build).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Final avalanche (splitmix64), so nearby inputs score independently.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Replica sets for a new topic by rendezvous hashing: for each partition, the `rf` brokers with
/// the highest score for (topic, partition, broker), best first (the preferred leader). Adding a
/// broker moves only the replicas it now wins.
pub fn place(brokers: &[u64], topic: &str, partitions: u32, rf: usize) -> Vec<Vec<u64>> {
    (0..partitions)
        .map(|p| {
            let mut scored: Vec<(u64, u64)> = brokers
                .iter()
                .map(|&b| (fnv1a(&[topic.as_bytes(), &p.to_be_bytes(), &b.to_be_bytes()]), b))
                .collect();
            scored.sort_unstable_by(|a, b| b.cmp(a));
            scored.into_iter().take(rf).map(|(_, b)| b).collect()
        })
        .collect()
}

/// The broker that takes over a replica of (topic, partition) from one leaving: the best
/// rendezvous score among `brokers` not already holding the partition (`holding`).
pub fn replacement(brokers: &[u64], topic: &str, partition: u32, holding: &[u64]) -> Option<u64> {
    brokers
        .iter()
        .filter(|b| !holding.contains(b))
        .map(|&b| {
            (
                fnv1a(&[topic.as_bytes(), &partition.to_be_bytes(), &b.to_be_bytes()]),
                b,
            )
        })
        .max()
        .map(|(_, b)| b)
}

/// Reads the topic id recorded in a partition directory (`Ok(None)`: none recorded).
///
/// # Errors
/// An unreadable or damaged file: the directory's owner is unknown, so it must be left alone.
fn dir_topic_id(dir: &Path) -> Result<Option<u64>, String> {
    let path = dir.join(TOPIC_ID_FILE);
    // A crash while writing the marker leaves its temp file: the directory holds nothing else.
    strata_storage::durable::remove_stale_tmp(&path);
    let Some(bytes) = strata_storage::durable::read(&path).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| format!("{}: not a topic id", path.display()))
}

/// Whether a directory is missing or has no entries.
fn is_empty_dir(dir: &Path) -> bool {
    // Unreadable is not empty: a directory whose contents cannot be listed is left alone.
    match std::fs::read_dir(dir) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Applies committed metadata as it arrives from the driver: updates the registry, answers this
/// broker's waiting proposals, and opens or removes local replicas. Replicas are opened only
/// once the replay has reached `replay_until` (the commit index known at startup). Runs until
/// the driver stops.
pub(crate) async fn reconcile(broker: Arc<Broker>, mut rx: mpsc::UnboundedReceiver<Applied>, replay_until: u64) {
    let mut swept = false;
    let mut snapshotted = broker.registry.lock().await.index;
    if snapshotted > 0 && snapshotted >= replay_until {
        // Started from a snapshot that covers everything known committed: open the replicas now
        // (no entry may follow for a while).
        let registry = broker.registry.lock().await.clone();
        update_brokers(&broker, &registry).await;
        let _ = sync_replicas(&broker, &registry).await;
        swept = true;
        sweep_moved_replicas(&broker, &registry).await;
    }
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut outcomes = Vec::new();
        let mut deleted = Vec::new();
        let last = batch.last().map_or(0, |a| a.index);
        let desired = {
            let mut registry = broker.registry.lock().await;
            for a in &batch {
                if let Some(bytes) = &a.snapshot {
                    match serde_json::from_slice::<Registry>(bytes) {
                        Ok(installed) if a.index > registry.index => {
                            tracing::info!(
                                index = a.index,
                                topics = installed.topics.len(),
                                "installed a metadata snapshot from the controller"
                            );
                            // Topics gone (or re-created) in the snapshot were deleted meanwhile.
                            for (name, meta) in &registry.topics {
                                if installed.topics.get(name).is_none_or(|t| t.id != meta.id) {
                                    deleted.push((name.clone(), meta.id, meta.partitions));
                                }
                            }
                            *registry = installed;
                            registry.index = a.index;
                            // Deletes it learned only from the snapshot leave directories.
                            swept = false;
                            let copy = registry.clone();
                            if let Err(e) = save_snapshot(&broker, &copy).await {
                                tracing::error!(error = %format!("{e:#}"), "saving the metadata snapshot failed");
                            } else {
                                snapshotted = a.index;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "an unreadable metadata snapshot; ignored"),
                    }
                }
                for (index, cmd) in &a.commands {
                    // Already in the snapshot this broker started from.
                    if *index <= registry.index {
                        continue;
                    }
                    if let MetadataCommand::DeleteTopic { name, .. } = cmd
                        && let Some(meta) = registry.topics.get(name)
                    {
                        deleted.push((name.clone(), meta.id, meta.partitions));
                    }
                    let outcome = apply(&mut registry, *index, cmd);
                    match &outcome {
                        Ok(_) => tracing::info!(index, command = ?cmd, "applied metadata"),
                        Err(e) => {
                            tracing::debug!(index, code = %e.code, message = %e.message, "metadata command refused")
                        }
                    }
                    outcomes.push((cmd.request(), cmd.clone(), outcome));
                }
                registry.index = registry.index.max(a.index);
            }
            registry.clone()
        };
        if last >= replay_until && last >= snapshotted + snapshot_every() {
            // Snapshot the registry, then delete the metadata log below it.
            match save_snapshot(&broker, &desired).await {
                Ok(()) => {
                    snapshotted = last;
                    if let Some(m) = broker.metadata.get() {
                        broker
                            .driver
                            .send(Command::Compact {
                                key: m.key.clone(),
                                below: last + 1,
                            })
                            .await;
                    }
                    tracing::info!(index = last, "snapshotted the metadata");
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "snapshotting the metadata failed"),
            }
        }
        update_brokers(&broker, &desired).await;
        // Deleted topics first (their partitions may be re-created under the same name below).
        for (name, id, partitions) in deleted {
            broker.metrics.remove_topic(&name);
            broker
                .news
                .leaders
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            remove_topic_replicas(&broker, &name, id, partitions).await;
        }
        let failures = if last >= replay_until {
            let failures = sync_replicas(&broker, &desired).await;
            if !swept {
                // Replicas moved away while this broker was down: their removal was applied
                // during the replay, before anything was open to remove.
                swept = true;
                sweep_moved_replicas(&broker, &desired).await;
            }
            failures
        } else {
            Vec::new()
        };
        for (request, cmd, mut outcome) in outcomes {
            if request.node != broker.controller.node_id || request.nonce != broker.controller.nonce {
                continue;
            }
            if let (Ok(_), MetadataCommand::CreateTopic { name, .. }) = (&outcome, &cmd)
                && let Some((p, e)) = failures.iter().find(|(k, _)| &k.topic == name)
            {
                outcome = Err(AdminError::new(
                    ErrorCode::StorageError,
                    format!("creating partition {} failed: {e}", p.partition),
                ));
            }
            if let Some(tx) = broker.controller.waiting().remove(&request) {
                let _ = tx.send(outcome);
            }
        }
        broker.controller.applied.send_replace(last);
    }
}

/// Stops and deletes this broker's replicas of a deleted topic (only directories of that topic
/// id or older: a newer topic of the same name may already have its own).
async fn remove_topic_replicas(broker: &Arc<Broker>, name: &str, id: u64, partitions: u32) {
    for p in 0..partitions {
        let key = PartitionKey {
            topic: name.to_string(),
            partition: p,
        };
        let open = broker
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(part) = open.filter(|part| part.topic_id <= id) {
            broker
                .partitions
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let (tx, rx) = oneshot::channel();
            if broker
                .driver
                .send(Command::Remove {
                    key: part.key.clone(),
                    reply: tx,
                })
                .await
            {
                let _ = rx.await;
            }
        }
        let dir = partition_dir(&broker.opts.data_dir, name, p);
        let _ = tokio::task::spawn_blocking(move || {
            let owned = match dir_topic_id(&dir) {
                Ok(Some(d)) => d <= id,
                // Created, but the marker not yet written when the broker stopped.
                Ok(None) => is_empty_dir(&dir),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "not deleting a partition directory of unknown topic id");
                    false
                }
            };
            if owned
                && dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                tracing::error!(dir = %dir.display(), error = %e, "deleting a partition directory failed");
            }
        })
        .await;
    }
}

/// Makes this broker's replicas match the metadata: opens every partition assigned to it that
/// is not open, tells open ones about a changed assignment (a reassignment started, finished or
/// was cancelled), and removes replicas moved away from it. Returns the opens that failed.
async fn sync_replicas(broker: &Arc<Broker>, registry: &Registry) -> Vec<(PartitionKey, String)> {
    let me = broker.opts.node_id;
    let mut failures = Vec::new();
    for (name, meta) in &registry.topics {
        for p in 0..meta.partitions {
            let Some(assignment) = meta.assignment(p) else {
                continue;
            };
            let key = PartitionKey {
                topic: name.clone(),
                partition: p,
            };
            let open = broker
                .partitions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            match open {
                Some(part) if part.topic_id != meta.id => {}
                Some(part) if !assignment.contains(me) => {
                    tracing::info!(topic = %name, partition = p, "the partition moved off this broker; removing its replica");
                    drop(part);
                    remove_replica(broker, &key, meta.id).await;
                }
                Some(part) if part.assignment() != assignment => {
                    part.set_assignment(assignment.clone());
                    broker
                        .driver
                        .send(Command::Reassigned {
                            key: key.clone(),
                            assignment,
                        })
                        .await;
                }
                Some(_) => {}
                None if assignment.contains(me) => {
                    if let Err(e) = open_replica(broker, name, p, meta, assignment).await {
                        tracing::error!(topic = %name, partition = p, error = %e, "opening a replica failed");
                        failures.push((key, e));
                    }
                }
                None => {}
            }
        }
    }
    failures
}

/// Makes this broker's view of the cluster's brokers match the metadata: every registered
/// data-only broker is known (and connected to) with its current address, and the metadata
/// group's learners are those brokers (the controller leader adds them to the group).
async fn update_brokers(broker: &Arc<Broker>, registry: &Registry) {
    let me = broker.opts.node_id;
    let changed = {
        let mut known = broker.brokers.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for (&node, address) in &registry.brokers {
            if broker.voters.contains_key(&node) {
                continue;
            }
            if known.get(&node) != Some(address) {
                changed = true;
                // This broker's own entry keeps its advertised address.
                if node != me {
                    known.insert(node, address.clone());
                }
            }
            if node != me
                && let Some(peers) = &broker.peers
                && !peers.add(node, address.clone())
            {
                peers.readdress(node, address);
            }
        }
        changed
    };
    let Some(metadata) = broker.metadata.get() else {
        return;
    };
    let mut learners: Vec<u64> = registry
        .brokers
        .keys()
        .copied()
        .filter(|n| !broker.voters.contains_key(n))
        .collect();
    if !broker.voters.contains_key(&me) && !learners.contains(&me) {
        learners.push(me);
    }
    learners.sort_unstable();
    let mut assignment = metadata.assignment();
    if changed || assignment.learners != learners {
        assignment.learners = learners;
        metadata.set_assignment(assignment.clone());
        broker
            .driver
            .send(Command::Reassigned {
                key: metadata.key.clone(),
                assignment,
            })
            .await;
    }
}

/// Deletes partition directories this broker no longer needs (and has not open): of existing
/// topics whose partition is no longer assigned here (a move that finished while this broker
/// was down), and of topics deleted (or re-created) at or before the registry's index (a
/// delete this broker learned from a snapshot, never from its entry).
async fn sweep_moved_replicas(broker: &Arc<Broker>, registry: &Registry) {
    let me = broker.opts.node_id;
    let as_of = registry.index;
    let root = broker.opts.data_dir.join("partitions");
    // What the scan needs, taken here: (topic id, which partitions stay) by topic.
    let keep: HashMap<String, (u64, Vec<bool>)> = registry
        .topics
        .iter()
        .map(|(name, meta)| {
            let stays = (0..meta.partitions)
                .map(|p| meta.assignment(p).is_some_and(|a| a.contains(me)))
                .collect();
            (name.clone(), (meta.id, stays))
        })
        .collect();
    let open: std::collections::HashSet<PartitionKey> = broker
        .partitions
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((topic, p)) = name.to_str().and_then(|n| n.rsplit_once('-')) else {
                continue;
            };
            let Ok(p) = p.parse::<u32>() else {
                continue;
            };
            let key = PartitionKey {
                topic: topic.to_string(),
                partition: p,
            };
            if open.contains(&key) {
                continue;
            }
            let dir = entry.path();
            // Only a directory whose topic id is known: never one of unknown origin.
            let Ok(Some(d)) = dir_topic_id(&dir) else {
                continue;
            };
            let stale = match keep.get(topic) {
                Some((id, stays)) if *id == d => !stays.get(p as usize).copied().unwrap_or(false),
                // The topic of that id is gone by the registry's index.
                Some((id, _)) => d < *id,
                None => d <= as_of,
            };
            if stale {
                tracing::info!(dir = %dir.display(), "deleting a replica this broker no longer holds (moved or deleted while it was down)");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::error!(dir = %dir.display(), error = %e, "deleting a moved partition's directory failed");
                }
            }
        }
    })
    .await;
}

/// Stops this broker's replica of a partition and deletes its directory (if it belongs to
/// topic id `id`).
async fn remove_replica(broker: &Arc<Broker>, key: &PartitionKey, id: u64) {
    broker.partitions.write().unwrap_or_else(|e| e.into_inner()).remove(key);
    let (tx, rx) = oneshot::channel();
    if broker
        .driver
        .send(Command::Remove {
            key: key.clone(),
            reply: tx,
        })
        .await
    {
        let _ = rx.await;
    }
    let dir = partition_dir(&broker.opts.data_dir, &key.topic, key.partition);
    let _ = tokio::task::spawn_blocking(move || {
        if matches!(dir_topic_id(&dir), Ok(Some(d)) if d == id)
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::error!(dir = %dir.display(), error = %e, "deleting a moved partition's directory failed");
        }
    })
    .await;
}

async fn open_replica(
    broker: &Arc<Broker>,
    name: &str,
    p: u32,
    meta: &TopicMeta,
    assignment: crate::partition::Assignment,
) -> Result<(), String> {
    let dir = partition_dir(&broker.opts.data_dir, name, p);
    let id = meta.id;
    let prepared = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        match dir_topic_id(&dir)? {
            // A newer topic of this name owns the directory: this one is being replayed past.
            Some(d) if d > id => return Ok(false),
            Some(d) if d == id => return Ok(true),
            // An older topic's leftovers (its delete was interrupted).
            Some(_) => std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?,
            None if is_empty_dir(&dir) => {}
            None => {
                return Err(format!(
                    "{} holds data but no {TOPIC_ID_FILE} (written by an older Strata?); move it away to create the replica",
                    dir.display()
                ));
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        strata_storage::durable::write_atomic(&dir.join(TOPIC_ID_FILE), id.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(true)
    })
    .await
    .map_err(|e| e.to_string())??;
    if !prepared {
        return Ok(());
    }
    let (b, n, cfg) = (broker.clone(), name.to_string(), meta.config.clone());
    let part = tokio::task::spawn_blocking(move || b.open_partition(&n, p, id, assignment, &cfg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
    broker.start_partition(part).await.map_err(|e| format!("{e:#}"))
}

/// The brokers of the cluster: the controller voters and the data brokers that registered.
pub(crate) fn brokers(broker: &Broker) -> Vec<u64> {
    broker.brokers().keys().copied().collect()
}

/// The brokers placement may put new replicas on: all but those being decommissioned.
pub(crate) fn placeable(broker: &Broker, registry: &Registry) -> Vec<u64> {
    brokers(broker)
        .into_iter()
        .filter(|b| !registry.decommissioned.contains(b))
        .collect()
}

/// Finishes reassignments: every second, the partitions this broker leads whose Raft voters
/// have reached their target are reported to the controller, which makes the target their
/// replicas (and the brokers moved away from then remove their replicas).
pub(crate) async fn complete_reassignments(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let led: Vec<_> = broker
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| p.is_leader())
            .cloned()
            .collect();
        let done: Vec<FinishedMove> = led
            .iter()
            .filter_map(|p| {
                let target = p.assignment().target?;
                let conf = p.raft_conf();
                let (mut voters, mut want) = (conf.voters.clone(), target.clone());
                voters.sort_unstable();
                want.sort_unstable();
                (!conf.joint && conf.learners.is_empty() && voters == want).then(|| FinishedMove {
                    topic: p.key.topic.clone(),
                    topic_id: p.topic_id,
                    partition: p.key.partition,
                    replicas: target,
                })
            })
            .collect();
        if done.is_empty() {
            continue;
        }
        let n = done.len();
        match submit(&broker, |request| MetadataCommand::CompleteReassignments {
            request,
            done,
        })
        .await
        {
            Ok(_) => tracing::info!(partitions = n, "reassignments completed"),
            Err(e) => tracing::warn!(code = %e.code, message = %e.message, "completing reassignments failed; retrying"),
        }
    }
}

/// Voter node ids and their addresses.
pub type Voters = BTreeMap<u64, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_a_batch() {
        let cmd = MetadataCommand::DeleteTopic {
            request: RequestId {
                node: 2,
                seq: 7,
                nonce: 9,
            },
            name: "orders".into(),
        };
        let data = cmd.encode().unwrap();
        assert_eq!(MetadataCommand::decode(&data), vec![cmd]);
        assert!(MetadataCommand::decode(&Bytes::from_static(b"garbage")).is_empty());
    }

    #[test]
    fn placement_is_stable_spread_and_distinct() {
        let brokers = [1, 2, 3];
        let a = place(&brokers, "t", 300, 3);
        assert_eq!(a, place(&brokers, "t", 300, 3));
        let mut leaders = BTreeMap::new();
        for r in &a {
            let mut s = r.clone();
            s.sort_unstable();
            s.dedup();
            assert_eq!(s, vec![1, 2, 3]);
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        // Preferred leaders spread: each broker leads roughly a third.
        for n in leaders.values() {
            assert!((70..=130).contains(n), "{leaders:?}");
        }
        // Adding a broker moves only what it wins.
        let b = place(&[1, 2, 3, 4], "t", 300, 1);
        let moved = a.iter().zip(&b).filter(|(x, y)| x[0] != y[0]).count();
        assert!(b.iter().zip(&a).all(|(y, x)| y[0] == x[0] || y[0] == 4));
        assert!((40..=110).contains(&moved), "{moved}");
    }

    #[test]
    fn apply_is_deterministic_and_refuses_duplicates() {
        let mut r = Registry::default();
        let req = |seq| RequestId { node: 1, seq, nonce: 0 };
        let create = |seq| MetadataCommand::CreateTopic {
            request: req(seq),
            name: "t".into(),
            config: TopicConfig::from_defaults(&crate::options::TopicDefaults::default()),
            replicas: vec![vec![1, 2, 3]],
        };
        apply(&mut r, 5, &create(0)).unwrap();
        assert_eq!(r.topics["t"].id, 5);
        assert_eq!(
            apply(&mut r, 6, &create(1)).unwrap_err().code,
            ErrorCode::TopicAlreadyExists
        );
        let delete = |seq| MetadataCommand::DeleteTopic {
            request: req(seq),
            name: "t".into(),
        };
        apply(&mut r, 7, &delete(2)).unwrap();
        assert_eq!(
            apply(&mut r, 8, &delete(3)).unwrap_err().code,
            ErrorCode::UnknownTopicOrPartition
        );
        // A proposal retried after it seemed lost may commit twice: the copy changes nothing,
        // even after the topic was created again.
        apply(&mut r, 9, &create(4)).unwrap();
        assert_eq!(
            apply(&mut r, 10, &delete(2)).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert!(r.topics.contains_key("t"));
    }
}
