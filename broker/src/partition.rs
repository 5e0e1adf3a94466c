//! What the request handlers see of a partition replica: its storage (for reads) and the state
//! the Raft driver publishes (leadership, term, commit index, high watermark, log start and end,
//! size, segment count) in atomics, with a watch channel that wakes long-polling fetches when the
//! high watermark moves. Metrics read the same atomics at scrape time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// A partition replica's shared state.
#[derive(Debug)]
pub struct Partition {
    /// Which partition.
    pub key: PartitionKey,
    /// Its topic's id (the metadata log index of the topic's creation): tells this topic from an
    /// earlier one of the same name, so stale Raft messages of a deleted topic are dropped.
    pub topic_id: u64,
    /// The partition's replicas (node ids), the preferred leader first.
    pub replicas: Vec<u64>,
    /// Its topic's configuration when the replica was opened.
    pub config: TopicConfig,
    /// The log (read through `with_log`; the driver appends).
    pub storage: PartitionRaftStorage,
    is_leader: AtomicBool,
    /// The leader's node id as this replica last saw it (0: none known).
    leader_id: AtomicU64,
    /// Which of `replicas` (bit i = `replicas[i]`) the leader sees caught up with its commit
    /// index; only meaningful on the leader.
    in_sync: AtomicU64,
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
        replicas: Vec<u64>,
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
            replicas,
            config,
            storage,
            is_leader: AtomicBool::new(false),
            leader_id: AtomicU64::new(0),
            in_sync: AtomicU64::new(0),
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

    /// The replicas the leader sees caught up (only this replica's own view; on a follower, the
    /// replicas as assigned, since a follower cannot know).
    pub fn in_sync_replicas(&self) -> Vec<u64> {
        if !self.is_leader() {
            return self.replicas.clone();
        }
        let mask = self.in_sync.load(Ordering::Acquire);
        (0..)
            .zip(&self.replicas)
            .filter(|(i, _)| *i < 64 && mask & (1u64 << i) != 0)
            .map(|(_, id)| *id)
            .collect()
    }

    pub(crate) fn set_in_sync(&self, mask: u64) {
        self.in_sync.store(mask, Ordering::Release);
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
