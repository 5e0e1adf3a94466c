//! What the request handlers see of a partition replica: its storage (for reads) and the state
//! the Raft driver publishes (leadership, high watermark), with a watch channel that wakes
//! long-polling fetches when the high watermark moves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

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
    /// Its topic's configuration when the replica was opened.
    pub config: TopicConfig,
    /// The log (read through `with_log`; the driver appends).
    pub storage: PartitionRaftStorage,
    is_leader: AtomicBool,
    failed: AtomicBool,
    leader_term: AtomicU64,
    log_start: AtomicU64,
    high_watermark: watch::Sender<u64>,
}

impl Partition {
    /// A replica that is not (yet) leader. Its log start is read once here; the driver keeps it
    /// current afterwards, so request handlers never take the storage lock for it (the driver
    /// holds that lock across fsyncs).
    ///
    /// # Errors
    /// If the storage lock is poisoned.
    pub fn new(
        key: PartitionKey,
        config: TopicConfig,
        storage: PartitionRaftStorage,
    ) -> Result<Self, crate::raft::storage::Error> {
        let start = storage.with_log(|l| l.log_start_offset().0)?;
        Ok(Self::with_start(key, config, storage, start))
    }

    fn with_start(key: PartitionKey, config: TopicConfig, storage: PartitionRaftStorage, high_watermark: u64) -> Self {
        Self {
            key,
            config,
            storage,
            is_leader: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            leader_term: AtomicU64::new(0),
            log_start: AtomicU64::new(high_watermark),
            high_watermark: watch::Sender::new(high_watermark),
        }
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

    /// The offset up to which records are committed.
    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that sees every high watermark change.
    pub fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    pub(crate) fn set_leader(&self, leader: bool, term: u64) {
        self.leader_term.store(term, Ordering::Release);
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
