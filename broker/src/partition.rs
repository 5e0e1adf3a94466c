//! What the request handlers see of a partition replica: its storage (for reads) and the state
//! the Raft driver publishes (leadership, term, commit index, high watermark, log start and end,
//! size, segment count) in atomics, with a watch channel that wakes long-polling fetches when the
//! high watermark moves. Metrics read the same atomics at scrape time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use tokio::sync::watch;

use crate::metrics::TopicCounters;
use crate::raft::PartitionRaftStorage;
use crate::topics::TopicConfig;

/// Identifies a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
}

/// Which brokers hold a partition, as the metadata says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The replicas (node ids), the preferred leader first.
    pub replicas: Vec<u64>,
    /// A reassignment in progress: the replicas the partition moves to, the preferred leader
    /// first. The partition's leader changes the Raft configuration step by step until its
    /// voters are these, then the controller makes them the replicas.
    pub target: Option<Vec<u64>>,
    /// The replicas the partition was created with: its Raft group's bootstrap configuration,
    /// which a replica added later starts from (and then applies every change in the log).
    pub initial: Vec<u64>,
    /// Members that only follow, never vote: the data-only brokers, in the metadata group.
    pub learners: Vec<u64>,
}

impl Assignment {
    /// Replicas that never moved.
    pub fn fixed(replicas: Vec<u64>) -> Self {
        Self {
            initial: replicas.clone(),
            replicas,
            target: None,
            learners: Vec::new(),
        }
    }

    /// The voters the partition's Raft configuration must reach: the target during a
    /// reassignment, the replicas otherwise.
    pub fn desired(&self) -> &[u64] {
        self.target.as_deref().unwrap_or(&self.replicas)
    }

    /// Every broker holding a replica now: the desired ones first (preferred leader first), then
    /// the replicas being moved away from.
    pub fn members(&self) -> Vec<u64> {
        self.member_ids().collect()
    }

    /// [`members`](Self::members) without allocating: the desired replicas, then the
    /// replicas leaving, then learners not among either.
    pub fn member_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let desired = self.desired();
        let leaving = self.replicas.iter().filter(move |id| !desired.contains(id));
        let learners = self
            .learners
            .iter()
            .filter(move |id| !desired.contains(id) && !self.replicas.contains(id));
        desired.iter().chain(leaving).chain(learners).copied()
    }

    /// Whether `node` holds a replica now.
    pub fn contains(&self, node: u64) -> bool {
        self.replicas.contains(&node)
            || self.target.as_ref().is_some_and(|t| t.contains(&node))
            || self.learners.contains(&node)
    }

    /// The replica leadership belongs to (and returns to after a failover).
    pub fn preferred(&self) -> Option<u64> {
        self.desired().first().copied()
    }
}

/// The Raft configuration a replica last applied, as the driver publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftConf {
    /// Voters (of the incoming configuration while joint).
    pub voters: Vec<u64>,
    /// Learners (catching up, not voting).
    pub learners: Vec<u64>,
    /// Whether a joint configuration (old and new voters both deciding) is in force.
    pub joint: bool,
}

/// A partition replica's shared state.
#[derive(Debug)]
pub struct Partition {
    /// Which partition.
    pub key: PartitionKey,
    /// Its topic's id (the metadata log index of the topic's creation): tells this topic from an
    /// earlier one of the same name, so stale Raft messages of a deleted topic are dropped.
    pub topic_id: u64,
    /// Which brokers hold the partition (changed by reassignments).
    assignment: RwLock<Assignment>,
    /// The Raft configuration this replica last applied.
    conf: Mutex<RaftConf>,
    /// Its topic's configuration when the replica was opened.
    pub config: TopicConfig,
    /// The log (read through `with_log`; the driver appends).
    pub storage: PartitionRaftStorage,
    is_leader: AtomicBool,
    /// The leader's node id as this replica last saw it (0: none known).
    leader_id: AtomicU64,
    /// The members the leader sees caught up with its commit index; only meaningful on the
    /// leader.
    in_sync: Mutex<Vec<u64>>,
    failed: AtomicBool,
    leader_term: AtomicU64,
    log_start: AtomicU64,
    log_end: AtomicU64,
    size_bytes: AtomicU64,
    segment_count: AtomicU64,
    commit_index: AtomicU64,
    high_watermark: watch::Sender<u64>,
    /// Its topic's traffic counters, resolved once here so requests never look a label up.
    pub(crate) counters: TopicCounters,
}

/// What the driver publishes about a partition's log after changing it, for request handlers
/// and metrics to read without the storage lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogState {
    /// First offset still in the log.
    pub log_start: u64,
    /// The offset the next record will get.
    pub log_end: u64,
    /// Bytes of the segment log files.
    pub size_bytes: u64,
    /// Segments in the log.
    pub segment_count: u64,
}

impl LogState {
    /// Reads the state from the log (under the storage lock: the driver, or at open).
    pub(crate) fn of(log: &strata_storage::PartitionLog) -> Self {
        Self {
            log_start: log.log_start_offset().0,
            log_end: log.next_offset().0,
            size_bytes: log.size_bytes(),
            segment_count: log.segment_count() as u64,
        }
    }
}

impl Partition {
    /// A replica that is not (yet) leader. Its log start, end, size and segment count are read
    /// once here; the driver keeps them current afterwards, so request handlers and metrics never
    /// take the storage lock for them (the driver holds that lock across fsyncs).
    ///
    /// # Errors
    /// If the storage lock is poisoned.
    pub fn new(
        key: PartitionKey,
        topic_id: u64,
        assignment: Assignment,
        config: TopicConfig,
        storage: PartitionRaftStorage,
        counters: TopicCounters,
    ) -> Result<Self, crate::raft::storage::Error> {
        let state = storage.with_log(LogState::of)?;
        let high_watermark = state.log_start;
        // Nothing is known to be committed before the group runs: the high watermark starts at
        // the log start.
        Ok(Self {
            key,
            topic_id,
            assignment: RwLock::new(assignment),
            conf: Mutex::new(RaftConf::default()),
            config,
            storage,
            is_leader: AtomicBool::new(false),
            leader_id: AtomicU64::new(0),
            in_sync: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            leader_term: AtomicU64::new(0),
            log_start: AtomicU64::new(state.log_start),
            log_end: AtomicU64::new(state.log_end),
            size_bytes: AtomicU64::new(state.size_bytes),
            segment_count: AtomicU64::new(state.segment_count),
            commit_index: AtomicU64::new(0),
            high_watermark: watch::Sender::new(high_watermark),
            counters,
        })
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    /// Whether the replica failed (an I/O error left its log in an unknown state) and serves
    /// nothing until the broker restarts and recovers it.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(crate) fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// The current leader's term.
    pub fn leader_term(&self) -> u64 {
        self.leader_term.load(Ordering::Acquire)
    }

    /// The first offset still in the log.
    pub fn log_start(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }

    pub(crate) fn set_log_start(&self, offset: u64) {
        self.log_start.store(offset, Ordering::Release);
    }

    /// The offset the next record appended to this replica's log will get (committed or not).
    pub fn log_end(&self) -> u64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// Bytes of the log's segment files, as of the driver's last change to the log.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    /// Segments in the log, as of the driver's last change to the log.
    pub fn segment_count(&self) -> u64 {
        self.segment_count.load(Ordering::Acquire)
    }

    /// The replica's Raft commit index.
    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Acquire)
    }

    pub(crate) fn set_commit_index(&self, index: u64) {
        self.commit_index.store(index, Ordering::Release);
    }

    /// Publishes the log's state (the driver, after each change to the log).
    pub(crate) fn set_log_state(&self, s: LogState) {
        self.set_log_start(s.log_start);
        self.log_end.store(s.log_end, Ordering::Release);
        self.size_bytes.store(s.size_bytes, Ordering::Release);
        self.segment_count.store(s.segment_count, Ordering::Release);
    }

    /// The offset up to which records are committed.
    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that sees every high watermark change.
    pub fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// The leader's node id as this replica last saw it, if any.
    pub fn leader_id(&self) -> Option<u64> {
        Some(self.leader_id.load(Ordering::Acquire)).filter(|&id| id != 0)
    }

    /// Which brokers hold the partition.
    pub fn assignment(&self) -> Assignment {
        self.assignment.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every broker holding a replica now, the preferred leader first.
    pub fn replicas(&self) -> Vec<u64> {
        self.assignment.read().unwrap_or_else(|e| e.into_inner()).members()
    }

    pub(crate) fn set_assignment(&self, a: Assignment) {
        *self.assignment.write().unwrap_or_else(|e| e.into_inner()) = a;
    }

    /// The Raft configuration this replica last applied.
    pub fn raft_conf(&self) -> RaftConf {
        self.conf.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_raft_conf(&self, conf: RaftConf) {
        *self.conf.lock().unwrap_or_else(|e| e.into_inner()) = conf;
    }

    /// The replicas the leader sees caught up (only this replica's own view; on a follower, the
    /// replicas as assigned, since a follower cannot know).
    pub fn in_sync_replicas(&self) -> Vec<u64> {
        if !self.is_leader() {
            return self.replicas();
        }
        self.in_sync.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the leader sees a voter behind its commit index.
    pub fn is_under_replicated(&self) -> bool {
        let conf = self.raft_conf();
        let in_sync = self.in_sync.lock().unwrap_or_else(|e| e.into_inner());
        conf.voters.iter().any(|v| !in_sync.contains(v))
    }

    pub(crate) fn set_in_sync(&self, members: &[u64]) {
        let mut cur = self.in_sync.lock().unwrap_or_else(|e| e.into_inner());
        if cur.as_slice() != members {
            *cur = members.to_vec();
        }
    }

    pub(crate) fn set_leader(&self, leader: bool, term: u64, leader_id: u64) {
        self.leader_term.store(term, Ordering::Release);
        self.leader_id.store(leader_id, Ordering::Release);
        self.is_leader.store(leader, Ordering::Release);
    }

    pub(crate) fn set_high_watermark(&self, hw: u64) {
        self.high_watermark.send_if_modified(|cur| {
            let changed = hw > *cur;
            if changed {
                *cur = hw;
            }
            changed
        });
    }
}
