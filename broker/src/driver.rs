//! The per-broker Raft driver: one thread that owns every local partition's `RawNode`.
//!
//! Each cycle it takes every command queued (proposals, new or removed partitions, finished
//! fsyncs), ticks the groups when the tick interval has passed, and then handles every group's
//! `Ready` together:
//!
//! 1. per group: send early messages (none on a single node), install a snapshot, apply
//!    committed entries, append new entries to the log, persist the hard state, and hand the
//!    Ready back with `advance_append_async`: the entries are written, not yet durable;
//! 2. **group commit, pipelined**: every partition with unsynced data and no fsync in flight
//!    gets one, run on a pool of fsync threads. The driver does not wait for it: the next
//!    cycle's appends (the next requests) are written while the fsync runs, and its completion
//!    comes back as a [`Command::Synced`];
//! 3. per group: tell Raft which Readies are persisted (`on_persist_ready`: with flush policy
//!    `always`, those whose entries are durable; otherwise at once), which moves the commit
//!    index; then answer producers whose batches became durable (`acks=leader`) or committed
//!    (`acks=all`), and publish the high watermark, which wakes long-polling fetches, and the
//!    log's start, end, size and segment count, which handlers and metrics read as atomics.
//!
//! A cycle that leaves work behind (a commit that moved produces a new Ready) is followed at
//! once by another; otherwise the driver sleeps until a command arrives or the next tick.
//!
//! Metrics ([`crate::metrics`]) are updated here with pre-resolved handles: append and fsync
//! timings, fsyncs and bytes synced, leader changes, dropped proposals, the cycle's duration, and
//! each topic's bytes and records in (counted as the leader accepts a proposal).
//!
//! The order inside each group follows raft-rs's asynchronous-persistence contract: snapshot,
//! committed entries, entries, hard state (after the entries, so its commit never names an
//! entry not yet written), `advance_append_async`, and later `on_persist_ready` in Ready order.
//! With one voter the hard state's term and vote change only at a campaign, when the commit
//! index is the recovered (durable) one; with peers, persisted messages and a durably written
//! commit index will have to wait for the fsync (see the cluster work).
//! Proposals that arrive while a cycle runs wait in the channel and are appended by the next
//! cycle, sharing whichever fsync follows.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType,
};
use ::raft::{Config as RaftConfig, RawNode, SnapshotStatus, StateRole};
use bytes::Bytes;
use protobuf::Message as _;
use strata_protocol::api::Acks;
use strata_protocol::{BatchHeader, ErrorCode, Offset, RaftIndex};
use strata_storage::{Retention, SyncDone, SyncJob};
use tokio::sync::oneshot;

use crate::controller::{Applied, MetadataCommand};
use crate::metrics::{Metrics, StorageMetrics};
use crate::partition::{Assignment, LogState, Partition, PartitionKey, RaftConf};
use crate::peer::{OutboundMessage, Peers};
use crate::producers::{Check, Producers, SCAN_ENTRIES, Stamp};
use crate::raft::PartitionRaftStorage;
use crate::server::{PeerNews, heard_lately};

/// One step of a reassignment.
enum Step {
    /// The configuration is the desired one: nothing to do until the assignment changes.
    Settled,
    /// Waiting (for a change to apply, or learners to catch up).
    Wait,
    /// Propose this configuration change.
    Change(ConfChangeV2),
    /// Hand leadership to this voter.
    Transfer(u64),
}

/// How a proposal ended.
pub type ProposeResult = Result<Offset, (ErrorCode, String)>;

/// Work for the driver.
pub enum Command {
    /// Start driving a partition (opened by the caller).
    Add {
        /// The partition.
        partition: Arc<Partition>,
        /// Answered once the group is running.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop driving a partition (its files may then be deleted).
    Remove {
        /// Which.
        key: PartitionKey,
        /// Answered once the group is gone and its log synced.
        reply: oneshot::Sender<()>,
    },
    /// Append validated batches (one Raft entry each) and answer with the first's base offset.
    Propose {
        /// Which partition.
        key: PartitionKey,
        /// Whole, validated batches.
        batches: Vec<Bytes>,
        /// When to answer.
        acks: Acks,
        /// Only if this replica still leads in this term (the group coordinator's writes belong
        /// to the leadership they were computed under).
        term: Option<u64>,
        /// The answer (dropped unanswered for `acks=none`).
        reply: oneshot::Sender<ProposeResult>,
    },
    /// An fsync started by the driver finished (sent by the fsync threads).
    Synced {
        /// Which partition.
        key: PartitionKey,
        /// Which opening of it (a partition deleted and re-created under the same name is
        /// another incarnation; a late completion for the old one must not touch the new).
        incarnation: u64,
        /// The job's outcome.
        result: strata_storage::Result<SyncDone>,
        /// Bytes of entries the job made durable (for metrics).
        bytes: u64,
    },
    /// Propose a metadata command (a record batch) to the metadata group. A follower forwards it
    /// to the leader; the outcome arrives when the entry is applied (see `crate::controller`).
    ProposeMetadata {
        /// The command's batch.
        data: Bytes,
        /// Whether Raft took the proposal (it can still be lost with a leader change).
        reply: oneshot::Sender<Result<(), (ErrorCode, String)>>,
    },
    /// Raft messages from another broker.
    Step {
        /// The sending broker.
        from: u64,
        /// The messages, by group.
        messages: Vec<InboundMessage>,
    },
    /// Delete the partition's log below this index (whole segments; the metadata group, once
    /// its registry is snapshotted there).
    Compact {
        /// Which.
        key: PartitionKey,
        /// The first index to keep.
        below: u64,
    },
    /// A partition's assignment changed (a reassignment started, finished or was cancelled).
    Reassigned {
        /// Which.
        key: PartitionKey,
        /// The new assignment.
        assignment: Assignment,
    },
    /// Hand leadership of every group led here to its most caught-up follower (a draining
    /// broker, so its partitions keep serving); answered with how many transfers started.
    HandOver {
        /// The number of transfers started.
        reply: oneshot::Sender<usize>,
    },
    /// Sync everything and stop.
    Shutdown {
        /// Answered when done.
        reply: oneshot::Sender<()>,
    },
}

/// A Raft message from another broker for one of this broker's groups.
pub struct InboundMessage {
    /// The group.
    pub key: PartitionKey,
    /// The sender's topic id for the group (a mismatch means another topic of the same name).
    pub topic_id: u64,
    /// The message.
    pub message: Message,
}

/// Handle for sending commands to the driver thread.
#[derive(Clone)]
pub struct DriverHandle {
    tx: SyncSender<Command>,
    /// The driver stops (after syncing) once every handle is gone; the fsync threads' own
    /// senders do not count.
    _alive: Arc<()>,
}

/// Most commands queued for the driver before senders wait.
const COMMAND_QUEUE: usize = 65_536;
/// Ticks during which a new group's preferred replica campaigns again (every 2nd) while no
/// leader is known.
const EAGER_CAMPAIGN_TICKS: u32 = 20;
/// How often (in ticks) leaders hand leadership back to a caught-up preferred replica.
const REBALANCE_TICKS: u32 = 50;
/// How often (in ticks) leaders take the next step of a reassignment.
const REASSIGN_TICKS: u32 = 5;
/// A learner within this many entries of the commit index is promoted to voter (it catches up
/// the rest as a voter; waiting for an exact match could wait forever under load).
const CATCH_UP_SLACK: u64 = 256;
/// A group led here quiesces once it has been idle this long: everything committed and on every
/// replica, nothing proposed or pending, every replica's broker heard from (see [`Driver::idle`]).
/// Longer than an announcement interval, so followers have heard their leader announce itself.
const QUIESCE_AFTER: Duration = Duration::from_secs(1);
/// A follower's election timeout is this many ticks to twice as many (raft-rs randomizes it).
pub(crate) const ELECTION_TICKS: usize = 10;
/// Marks the heartbeats by which a leader quiesces its followers (raft-rs echoes a heartbeat's
/// context in its response, which therefore does not wake a quiesced leader either).
const QUIESCE_CONTEXT: &[u8] = b"strata:quiesce";
/// A quiesced leader wakes this often for a round of heartbeats (and re-quiesces only if every
/// replica answers): a replica that failed on a broker still alive shows up then.
const QUIESCE_REFRESH: Duration = Duration::from_secs(30);

impl DriverHandle {
    /// Sends a command from an async task, waiting (without blocking the worker thread) while
    /// the queue is full; `false` if the driver has stopped.
    pub async fn send(&self, mut cmd: Command) -> bool {
        loop {
            match self.tx.try_send(cmd) {
                Ok(()) => return true,
                Err(mpsc::TrySendError::Disconnected(_)) => return false,
                Err(mpsc::TrySendError::Full(c)) => {
                    cmd = c;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// Queues a command without ever blocking the caller (an async task): a full queue means
    /// the driver is overloaded, which the client sees as a retriable timeout.
    pub fn try_send(&self, cmd: Command) -> Result<(), (ErrorCode, String)> {
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => (
                ErrorCode::RequestTimedOut,
                "the broker's raft queue is full; retry".to_string(),
            ),
            mpsc::TrySendError::Disconnected(_) => {
                (ErrorCode::BrokerShuttingDown, "the broker is shutting down".to_string())
            }
        })
    }
}

/// Starts the driver thread, which updates `metrics` as it works, sends Raft messages to other
/// brokers through `peers`, and hands the metadata group's committed commands to `metadata`.
pub(crate) fn spawn(
    node_id: u64,
    tick: Duration,
    retention_every: Duration,
    metrics: Arc<Metrics>,
    peers: Option<(Peers, Arc<PeerNews>)>,
    metadata: tokio::sync::mpsc::UnboundedSender<Applied>,
) -> (DriverHandle, std::thread::JoinHandle<()>) {
    let (peers, news) = peers.unzip();
    let (tx, rx) = mpsc::sync_channel(COMMAND_QUEUE);
    let alive = Arc::new(());
    let handles = Arc::downgrade(&alive);
    let sync_tx = tx.clone();
    let handle = std::thread::Builder::new()
        .name("raft-driver".into())
        .spawn(move || {
            let driver = Driver {
                node_id,
                tick,
                retention_every,
                groups: BTreeMap::new(),
                syncer: SyncPool::start(SYNC_THREADS, metrics.storage.clone(), sync_tx),
                metrics,
                handles,
                peeked: None,
                next_incarnation: 0,
                peers,
                news,
                outbox: HashMap::new(),
                metadata,
                draining: false,
            };
            // Each group's raft-rs calls are guarded (a panic fails that group only). A panic
            // anywhere else leaves no thread to drive any partition: a broker that kept serving
            // would accept requests it can never answer, so it exits, as a `kill -9` would
            // (what it acknowledged is durable by the flush policy), for its supervisor to
            // restart it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run(rx))).is_err() {
                tracing::error!("the raft driver thread panicked; exiting");
                eprintln!("strata-broker: the raft driver thread panicked; exiting");
                std::process::exit(70);
            }
        })
        .expect("spawning the raft driver thread");
    (DriverHandle { tx, _alive: alive }, handle)
}

struct Waiter {
    first_index: u64,
    last_index: u64,
    /// The term of the entries: an entry at `last_index` of another term means a new leader
    /// overwrote them, and the batch was never committed.
    term: u64,
    base_offset: Option<Offset>,
    /// The offset to answer with instead of `base_offset`: a retry whose first batches were
    /// already in the log reports the first one's original offset.
    reported_base: Option<Offset>,
    acks: Acks,
    reply: oneshot::Sender<ProposeResult>,
}

struct Group {
    raw: RawNode<PartitionRaftStorage>,
    partition: Arc<Partition>,
    /// Producers waiting, by their last entry's index.
    waiters: BTreeMap<u64, Waiter>,
    /// Next offset after each appended but not yet committed entry.
    next_offsets: BTreeMap<u64, Offset>,
    failed: Option<String>,
    /// Tells this opening of the partition from earlier ones with the same key.
    incarnation: u64,
    /// Whether an fsync of this partition is running on the pool.
    syncing: bool,
    /// Whether this loop handled a Ready or an fsync completion of the group, so `settle` has
    /// something to look at (idle partitions cost nothing per loop).
    touched: bool,
    /// Readies handed back with `advance_append_async` and not yet reported persisted: their
    /// number, the last entry index that must be durable first (`None`: nothing to wait for,
    /// e.g. no entries or a flush policy other than `always`), and the messages raft-rs says
    /// to send only once the Ready is persisted (e.g. a follower's append acknowledgements).
    unpersisted: VecDeque<(u64, Option<u64>, Vec<Message>)>,
    /// The group's topic name, shared by its outgoing messages.
    topic: Arc<str>,
    /// Whether this is the metadata group, whose committed commands go to the controller.
    is_metadata: bool,
    /// Idempotent producers' state (kept only while leader; rebuilt from the log on becoming
    /// leader, see [`crate::producers`]).
    producers: Producers,
    /// Whether `producers` reflects the log (false until rebuilt after becoming leader).
    producers_ready: bool,
    /// Retried batches already in the log, waiting for the original to commit.
    dup_waiters: Vec<Waiter>,
    /// Ticks left in which a new group's preferred replica campaigns again while no leader is
    /// known: its first campaign may reach replicas whose brokers have not opened the group yet.
    eager_campaign: u32,
    /// The leader this replica last saw (`raft::INVALID_ID` for none), to count leader changes.
    leader_id: u64,
    /// Bytes of entries appended since the last group-commit fsync (for the synced-bytes count).
    unsynced_bytes: u64,
    /// Which brokers hold the partition (the driver's copy of the partition's).
    assignment: Assignment,
    /// Scratch space for the in-sync list (no allocation per Ready).
    in_sync: Vec<u64>,
    /// The Ready that installed a snapshot, until raft-rs is told it is persisted: until then
    /// nothing may be reported applied (raft-rs requires applied <= persisted).
    snapshot_ready: Option<u64>,
    /// Whether the Raft configuration is known to be the desired one (no reassignment step to
    /// look for until the assignment or the configuration changes).
    settled: bool,
    /// Quiesced: the group is idle and its leader stopped heartbeating, so no replica ticks it
    /// (see [`Driver::quiesce`]).
    quiesced: bool,
    /// Since when the group, led here, has been idle (see [`Driver::idle`]); while quiesced,
    /// since when it is.
    idle_since: Option<Instant>,
    /// Whether the log may hold data not yet durable, so each cycle asks whether an fsync is
    /// due: set whenever the driver writes to the log or an fsync ends, cleared once the log
    /// says everything is durable (idle partitions then cost no lock per cycle).
    sync_check: bool,
}

impl Group {
    /// Ends quiescence (or an idle spell): the group ticks again. Anything that must make
    /// progress by ticks (a proposal, a transfer, a configuration change) wakes the group. A
    /// leader's election clock starts over, so a whole round of heartbeats precedes its next
    /// check-quorum (which otherwise could run on the first tick, with replies to the last
    /// heartbeats long gone).
    fn wake(&mut self) {
        if self.quiesced && self.raw.raft.state == StateRole::Leader {
            self.raw.raft.election_elapsed = 0;
        }
        self.quiesced = false;
        self.idle_since = None;
    }
}

struct Driver {
    node_id: u64,
    tick: Duration,
    /// How often retention runs.
    retention_every: Duration,
    groups: BTreeMap<PartitionKey, Group>,
    syncer: SyncPool,
    metrics: Arc<Metrics>,
    /// Alive while any [`DriverHandle`] is.
    handles: Weak<()>,
    /// A command taken off the queue early (to see whether it was empty), handled next.
    peeked: Option<Command>,
    /// The incarnation the next added group gets.
    next_incarnation: u64,
    /// The transport to other brokers (`None` on a cluster of one).
    peers: Option<Peers>,
    /// What the other brokers announce, and when each last did (`None` on a cluster of one).
    news: Option<Arc<PeerNews>>,
    /// Messages to other brokers gathered during a loop, sent together at its end.
    outbox: HashMap<u64, Vec<OutboundMessage>>,
    /// Where the metadata group's committed commands go.
    metadata: tokio::sync::mpsc::UnboundedSender<Applied>,
    /// Set by [`Command::HandOver`]: this broker is stopping and must not take leadership
    /// back (no preferred-leader restoration, no eager campaigns, no transfers to it).
    draining: bool,
}

/// Threads that run a cycle's fsyncs concurrently. A fixed pool: spawning a thread per dirty
/// partition per cycle made ack p99 5x worse at 256 active partitions (see the README). Several
/// fsyncs in flight at once complete more per second than one at a time on this hardware.
const SYNC_THREADS: usize = 4;

/// A partition's key and incarnation, the job, and the bytes it covers.
type SyncTask = (PartitionKey, u64, SyncJob, u64);

/// Runs fsync jobs on its own threads and reports each one's completion to the driver as a
/// [`Command::Synced`], so the driver never waits for a disk.
struct SyncPool {
    jobs: Option<mpsc::Sender<SyncTask>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    metrics: StorageMetrics,
}

/// Runs one fsync job where it is (a pool thread or the driver), timing and counting it.
fn run_sync(metrics: &StorageMetrics, job: SyncJob) -> strata_storage::Result<SyncDone> {
    let started = Instant::now();
    let done = job.run();
    metrics.fsync_duration.observe(started.elapsed().as_secs_f64());
    metrics.fsyncs.inc();
    done
}

impl SyncPool {
    fn start(n: usize, metrics: StorageMetrics, done: SyncSender<Command>) -> Self {
        let (job_tx, job_rx) = mpsc::channel::<SyncTask>();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let threads = (0..n)
            .map(|i| {
                let (rx, tx, m) = (job_rx.clone(), done.clone(), metrics.clone());
                std::thread::Builder::new()
                    .name(format!("fsync-{i}"))
                    .spawn(move || {
                        loop {
                            // The lock is held only to take the next job, never while syncing.
                            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok((key, incarnation, job, bytes)) = next else {
                                return;
                            };
                            // A panic must not leave the partition waiting for this fsync forever.
                            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_sync(&m, job)))
                                .unwrap_or_else(|_| {
                                    Err(strata_storage::Error::Failed {
                                        dir: Default::default(),
                                        reason: "the fsync thread panicked".into(),
                                    })
                                });
                            let done = Command::Synced {
                                key,
                                incarnation,
                                result,
                                bytes,
                            };
                            if tx.send(done).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning an fsync thread")
            })
            .collect();
        Self {
            jobs: Some(job_tx),
            threads,
            metrics,
        }
    }

    /// Starts `job`; its completion arrives as a [`Command::Synced`]. If the pool is gone, runs
    /// it here and returns the outcome instead.
    fn submit(&self, task: SyncTask) -> Option<strata_storage::Result<SyncDone>> {
        let job = match &self.jobs {
            Some(tx) => match tx.send(task) {
                Ok(()) => return None,
                Err(mpsc::SendError((_, _, job, _))) => job,
            },
            None => task.2,
        };
        Some(run_sync(&self.metrics, job))
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Checks a Raft message from another broker before raft-rs sees it: raft-rs trusts its peers
/// and panics (or worse, is misled) on messages no correct peer sends. Returns why a message is
/// dropped. Clamps a heartbeat's commit index to the local log.
fn admissible(g: &Group, me: u64, m: &mut Message) -> Result<(), &'static str> {
    use MessageType::*;
    if m.to != me {
        return Err("addressed to another node");
    }
    if m.from == me || !(g.assignment.contains(m.from) || g.raw.raft.prs().get(m.from).is_some()) {
        return Err("sender is not a replica of the group");
    }
    // raft-rs forwards a follower's proposal with term 0; every other message carries a term.
    if m.term == 0 && m.get_msg_type() != MessageType::MsgPropose {
        return Err("term 0 (local messages never travel)");
    }
    let log = &g.raw.raft.raft_log;
    let last = log.last_index();
    match m.get_msg_type() {
        MsgRequestVote | MsgRequestPreVote | MsgRequestVoteResponse | MsgRequestPreVoteResponse => Ok(()),
        // A leader handing leadership over (only the leader this replica follows may).
        MsgTimeoutNow if m.from == g.raw.raft.leader_id && m.term == g.raw.raft.term => Ok(()),
        MsgHeartbeatResponse => Ok(()),
        MsgHeartbeat => {
            m.commit = m.commit.min(last);
            Ok(())
        }
        MsgAppendResponse => {
            if !m.reject && m.index > log.last_index().max(g.raw.raft.raft_log.committed) {
                return Err("acknowledges entries this leader does not have");
            }
            Ok(())
        }
        MsgAppend => {
            if m.index > 0 && m.log_term == 0 {
                return Err("append after an entry of term 0");
            }
            let mut prev_term = m.log_term;
            let Some(first) = m.index.checked_add(1) else {
                return Err("index out of range");
            };
            for (e, expect) in m.entries.iter().zip(first..) {
                if e.index != expect {
                    return Err("entries are not contiguous");
                }
                if e.term < prev_term || e.term > m.term {
                    return Err("entry terms out of order");
                }
                match e.get_entry_type() {
                    EntryType::EntryNormal => {}
                    EntryType::EntryConfChangeV2 => {
                        // Empty data: leaving a joint configuration.
                        let mut cc = ConfChangeV2::default();
                        if cc.merge_from_bytes(&e.data).is_err()
                            || cc.changes.len() > 64
                            || cc.changes.iter().any(|c| c.node_id == 0)
                        {
                            return Err("malformed configuration change");
                        }
                    }
                    EntryType::EntryConfChange => return Err("v1 configuration changes are never proposed"),
                }
                if e.index <= log.committed && log.term(e.index).is_ok_and(|t| t != e.term) {
                    return Err("conflicts with a committed entry");
                }
                prev_term = e.term;
            }
            Ok(())
        }
        MsgSnapshot => {
            let snap = m.get_snapshot();
            let meta = snap.get_metadata();
            let cs = meta.get_conf_state();
            let ids = || {
                cs.voters
                    .iter()
                    .chain(&cs.learners)
                    .chain(&cs.voters_outgoing)
                    .chain(&cs.learners_next)
            };
            // The metadata group's snapshots carry the registry; others only the log start.
            let data_ok = if g.is_metadata {
                snap.data.len() > crate::raft::storage::SNAPSHOT_DATA_LEN && snap.data.len() <= 256 << 20
            } else {
                snap.data.len() == crate::raft::storage::SNAPSHOT_DATA_LEN
            };
            // Every member one the group has or had (a snapshot describes the configuration at
            // the leader's log start, which may predate the current assignment), and raft-rs's
            // invariants: no node both voter and learner, staged learners only among the
            // outgoing voters.
            let known = |id: u64| {
                g.assignment.contains(id) || g.assignment.initial.contains(&id) || g.raw.raft.prs().get(id).is_some()
            };
            let voting = |id: &u64| cs.voters.contains(id) || cs.voters_outgoing.contains(id);
            if !data_ok
                || meta.term > m.term
                || meta.index == 0
                || cs.voters.is_empty()
                || cs.voters.len() > 64
                || ids().count() > 256
                || ids().any(|&id| id == 0 || !known(id))
                || !ids().any(|&id| id == me)
                || cs.learners.iter().any(voting)
                || cs.learners_next.iter().any(|id| !cs.voters_outgoing.contains(id))
            {
                return Err("malformed snapshot");
            }
            Ok(())
        }
        // Forwarded metadata proposals (Raft forwards a follower's proposal to the leader).
        MsgPropose if g.is_metadata => {
            let ok = !m.entries.is_empty()
                && m.entries.iter().all(|e| {
                    e.get_entry_type() == EntryType::EntryNormal
                        && !e.data.is_empty()
                        && !MetadataCommand::decode(&e.data).is_empty()
                });
            if ok { Ok(()) } else { Err("malformed metadata proposal") }
        }
        _ => Err("message type not used between brokers"),
    }
}

fn overwritten() -> (ErrorCode, String) {
    (
        ErrorCode::NotLeader,
        "a new leader replaced the batch before it committed; retry at the new leader".into(),
    )
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Driver {
    fn run(mut self, rx: Receiver<Command>) {
        self.serve(&rx);
        // Close the channel before the fsync threads are joined (dropping the pool), so none
        // can be left blocked sending a completion nobody reads.
        drop(rx);
        drop(self);
    }

    fn serve(&mut self, rx: &Receiver<Command>) {
        let mut next_tick = Instant::now() + self.tick;
        // (Also the time to the next tick bounds each wait below: this beats at least that often.)
        let mut next_retention = Instant::now() + self.retention_every;
        let mut next_rebalance = Instant::now() + self.tick * REBALANCE_TICKS;
        let mut next_reassign = Instant::now() + self.tick * REASSIGN_TICKS;
        let mut busy = false;
        loop {
            // Work left over (a Ready produced by a commit that just moved): look at the queue,
            // but do not sleep.
            let wait = if busy {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let received = match self.peeked.take() {
                Some(cmd) => Ok(cmd),
                None => rx.recv_timeout(wait),
            };
            let first = match received {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) if self.handles.strong_count() == 0 => {
                    self.shutdown();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown();
                    return;
                }
            };
            // Take everything queued: it all shares this cycle's fsync.
            let mut shutdown = None;
            for cmd in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                if let Command::Shutdown { reply } = cmd {
                    shutdown = Some(reply);
                    break;
                }
                self.handle(cmd);
            }
            let now = Instant::now();
            if now >= next_tick {
                // Alive, for the leader announcements (a stuck driver announces no leadership):
                // once a tick is often enough, the threshold being several ticks.
                if let Some(news) = &self.news {
                    news.driver_beat();
                }
                // One look at when each peer was heard from per tick (a small map).
                let heard = self.news.as_ref().map(|n| n.heard()).unwrap_or_default();
                let mut quiesced = 0;
                for g in self.groups.values_mut() {
                    if g.failed.is_some() {
                        continue;
                    }
                    if g.quiesced {
                        if Self::stays_quiet(g, self.node_id, &heard, self.news.as_deref(), now) {
                            quiesced += 1;
                            continue;
                        }
                        let follower = g.raw.raft.state == StateRole::Follower;
                        g.wake();
                        if follower {
                            // Its leader fell silent: no election lease to wait out (the
                            // leader's heartbeats stopped long ago), so it campaigns within its
                            // randomized election timeout's spread, not a whole timeout later.
                            let raft = &mut g.raw.raft;
                            raft.election_elapsed = raft.election_elapsed.max(raft.election_timeout());
                        }
                    }
                    if Self::idle(g, self.node_id, &heard, now) {
                        let since = *g.idle_since.get_or_insert(now);
                        // (Instead of this tick: a heartbeat it sent could follow the marked
                        // one and wake the followers again. And not while raft-rs has anything
                        // to hand out.)
                        if now.saturating_duration_since(since) >= QUIESCE_AFTER
                            && !g.raw.has_ready()
                            && Self::all_answered(g, self.node_id)
                        {
                            Self::quiesce(g, self.node_id, &mut self.outbox);
                            self.metrics.raft.quiesces.inc();
                            quiesced += 1;
                            continue;
                        }
                    } else {
                        g.idle_since = None;
                    }
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.raw.tick())).is_err() {
                        Self::fail(g, &self.metrics, "raft panicked on a tick".into());
                        continue;
                    }
                    if g.eager_campaign > 0 {
                        g.eager_campaign -= 1;
                        let raft = &g.raw.raft;
                        if raft.leader_id != ::raft::INVALID_ID || raft.state == StateRole::Leader {
                            g.eager_campaign = 0;
                        } else if raft.state == StateRole::Follower && g.eager_campaign % 2 == 0 && g.failed.is_none() {
                            // (Not while an election of its own runs: that would reset it.)
                            // Pre-vote: a failed round changes no term.
                            let _ = g.raw.campaign();
                        }
                    }
                }
                self.metrics.raft.quiesced_groups.set(quiesced);
                next_tick = now + self.tick;
            }
            let started = Instant::now();
            if self.cycle(rx) {
                let took = started.elapsed().as_secs_f64();
                self.metrics.raft.ready_loop_duration.observe(took);
            }
            self.flush_outbox();
            busy = self.groups.values().any(|g| g.failed.is_none() && g.raw.has_ready());
            if now >= next_reassign {
                if !self.draining {
                    self.step_reassignments();
                }
                next_reassign = now + self.tick * REASSIGN_TICKS;
            }
            if now >= next_rebalance && !self.draining {
                self.restore_preferred_leaders();
                next_rebalance = now + self.tick * REBALANCE_TICKS;
            }
            if now >= next_retention {
                self.retention();
                next_retention = now + self.retention_every;
            }
            if let Some(reply) = shutdown {
                self.shutdown();
                let _ = reply.send(());
                return;
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Add { partition, reply } => {
                let r = self.add(partition);
                let _ = reply.send(r);
            }
            Command::ProposeMetadata { data, reply } => {
                let key = PartitionKey {
                    topic: crate::controller::METADATA_TOPIC.to_string(),
                    partition: 0,
                };
                let r = match self.groups.get_mut(&key) {
                    None => Err((
                        ErrorCode::BrokerShuttingDown,
                        "the metadata group is not running".into(),
                    )),
                    Some(g) => g.raw.propose(Vec::new(), data.to_vec()).map_err(|e| {
                        (
                            ErrorCode::RequestTimedOut,
                            format!("no controller leader to take the change ({e}); retry"),
                        )
                    }),
                };
                let _ = reply.send(r);
            }
            Command::Step { from, messages } => {
                let m_ = Arc::clone(&self.metrics);
                for m in messages {
                    let Some(g) = self.groups.get_mut(&m.key) else {
                        continue;
                    };
                    if g.partition.topic_id != m.topic_id || g.failed.is_some() || m.message.from != from {
                        continue;
                    }
                    let mut msg = m.message;
                    // (Before `admissible` clamps it to the local log.)
                    let commit = msg.commit;
                    if self.draining && msg.get_msg_type() == MessageType::MsgTimeoutNow {
                        // Stopping: leadership must not come back here.
                        continue;
                    }
                    if let Err(why) = admissible(g, self.node_id, &mut msg) {
                        tracing::debug!(topic = %m.key.topic, partition = m.key.partition, from, kind = ?msg.get_msg_type(), why, "dropping an inadmissible raft message");
                        continue;
                    }
                    let kind = msg.get_msg_type();
                    // A quiesced group takes its leader's marked heartbeat and any heartbeat
                    // response (one answering a heartbeat sent before quiescing may arrive
                    // after) without waking; anything else wakes it.
                    let quiet = kind == MessageType::MsgHeartbeatResponse
                        || (kind == MessageType::MsgHeartbeat && msg.context.as_ref() == QUIESCE_CONTEXT);
                    let term = msg.term;
                    let before = (g.raw.raft.term, g.raw.raft.state);
                    // raft-rs panics on messages that break its invariants; one bad message must
                    // cost at most its group, never the driver thread.
                    let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.raw.step(msg)));
                    if stepped.is_ok() {
                        let raft = &g.raw.raft;
                        let changed = before != (raft.term, raft.state);
                        if g.quiesced && (!quiet || changed) {
                            // Traffic of any other kind, or a change of term or role.
                            g.wake();
                        } else if quiet
                            && !changed
                            && !g.quiesced
                            && kind == MessageType::MsgHeartbeat
                            && !g.is_metadata
                            && raft.state == StateRole::Follower
                            && raft.leader_id == from
                            && raft.term == term
                            && raft.raft_log.committed == commit
                            && raft.raft_log.last_index() == commit
                        {
                            // The leader stopped heartbeating, and this replica has everything
                            // it has, committed.
                            g.quiesced = true;
                            self.metrics.raft.quiesces.inc();
                        }
                    }
                    match stepped {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(topic = %m.key.topic, partition = m.key.partition, error = %e, "raft message refused")
                        }
                        Err(_) => Self::fail(g, &m_, format!("raft panicked on a message from broker {from}")),
                    }
                }
            }
            Command::Remove { key, reply } => {
                if let Some(mut g) = self.groups.remove(&key) {
                    g.partition.set_leader(false, g.raw.raft.term, 0);
                    let _ = g.partition.storage.flush();
                    for w in std::mem::take(&mut g.waiters)
                        .into_values()
                        .chain(std::mem::take(&mut g.dup_waiters))
                    {
                        let _ = w.reply.send(Err((
                            ErrorCode::UnknownTopicOrPartition,
                            "the topic was deleted".into(),
                        )));
                    }
                }
                let _ = reply.send(());
            }
            Command::Propose {
                key,
                batches,
                acks,
                term,
                reply,
            } => self.propose(key, batches, acks, term, reply),
            Command::Synced {
                key,
                incarnation,
                result,
                bytes,
            } => self.synced(&key, incarnation, result, bytes),
            Command::Compact { key, below } => {
                if let Some(g) = self.groups.get_mut(&key) {
                    g.sync_check = true;
                    match g.partition.storage.compact(RaftIndex(below)) {
                        Ok(rep) if rep.segments_deleted > 0 => {
                            Self::publish_log_state(&g.partition);
                            tracing::info!(topic = %key.topic, segments = rep.segments_deleted, below, "compacted the log below a snapshot")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(topic = %key.topic, error = %e, "compacting the log failed"),
                    }
                }
            }
            Command::Reassigned { key, assignment } => {
                if let Some(g) = self.groups.get_mut(&key) {
                    g.assignment = assignment;
                    g.settled = false;
                    g.wake();
                }
            }
            Command::HandOver { reply } => {
                self.draining = true;
                for g in self.groups.values_mut() {
                    g.eager_campaign = 0;
                }
                let _ = reply.send(self.hand_over());
            }
            Command::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    fn add(&mut self, partition: Arc<Partition>) -> Result<(), String> {
        let store = partition.storage.clone();
        let e = |e: crate::raft::storage::Error| e.to_string();
        let assignment = partition.assignment();
        if assignment.initial.is_empty() || !assignment.contains(self.node_id) {
            return Err(format!(
                "this broker ({}) is not among the replicas {:?}",
                self.node_id,
                assignment.members()
            ));
        }
        let fresh = !store.is_initialized().map_err(e)?;
        if fresh {
            // Every replica starts from the group's bootstrap configuration, also one added by a
            // reassignment (not a voter there: it cannot campaign); the configuration changes
            // in the log, or a snapshot from the leader, bring it to the current one.
            store
                .initialize(ConfState {
                    voters: assignment.initial.clone(),
                    ..Default::default()
                })
                .map_err(e)?;
        }
        let is_metadata = partition.key.topic == crate::controller::METADATA_TOPIC;
        // Only the metadata log's entries are applied by their data; a partition's apply looks
        // at configuration changes alone (see `apply`).
        store.set_apply_reads_data(is_metadata);
        let cfg = RaftConfig {
            id: self.node_id,
            // Election timeout 10..20 ticks (1-2 s at the default 100 ms tick): far above an
            // fsync stall, which never blocks this thread anyway (fsyncs run on the pool).
            election_tick: ELECTION_TICKS,
            heartbeat_tick: 2,
            // The metadata log is replayed from its start at every restart (the controller keeps
            // no other copy of its state); partitions' entries need no re-applying.
            applied: if is_metadata { 0 } else { store.applied().map_err(e)? },
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // A leader that cannot hear a majority steps down, and pre-vote keeps a rejoining or
            // partitioned replica from deposing a healthy leader with a higher term.
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        cfg.validate().map_err(|e| e.to_string())?;
        let mut raw = RawNode::new(&cfg, store, &logger()).map_err(|e| e.to_string())?;
        // A single voter elects itself at once; a new group's preferred leader campaigns at
        // once too (the others would only wait out an election timeout to elect someone).
        let voters = raw.raft.prs().conf().voters().ids().len();
        let single = voters == 1 && raw.raft.prs().conf().voters().contains(self.node_id);
        let preferred_new = fresh && assignment.initial.first() == Some(&self.node_id) && assignment.target.is_none();
        if single || preferred_new {
            raw.campaign().map_err(|e| e.to_string())?;
        }
        partition.set_commit_index(raw.raft.raft_log.committed);
        Self::publish_conf(&partition, &raw);
        let key = partition.key.clone();
        let partition_topic = key.topic.clone();
        self.next_incarnation += 1;
        self.groups.insert(
            key,
            Group {
                raw,
                partition,
                waiters: BTreeMap::new(),
                next_offsets: BTreeMap::new(),
                failed: None,
                incarnation: self.next_incarnation,
                syncing: false,
                touched: false,
                unpersisted: VecDeque::new(),
                leader_id: ::raft::INVALID_ID,
                unsynced_bytes: 0,
                topic: Arc::from(partition_topic.as_str()),
                is_metadata,
                producers: Producers::default(),
                producers_ready: false,
                dup_waiters: Vec::new(),
                assignment,
                in_sync: Vec::new(),
                settled: false,
                snapshot_ready: None,
                quiesced: false,
                idle_since: None,
                sync_check: true,
                eager_campaign: if preferred_new && !single {
                    EAGER_CAMPAIGN_TICKS
                } else {
                    0
                },
            },
        );
        Ok(())
    }

    fn propose(
        &mut self,
        key: PartitionKey,
        batches: Vec<Bytes>,
        acks: Acks,
        term: Option<u64>,
        reply: oneshot::Sender<ProposeResult>,
    ) {
        let Some(g) = self.groups.get_mut(&key) else {
            let _ = reply.send(Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("{}-{} is not hosted here", key.topic, key.partition),
            )));
            return;
        };
        let dropped = &self.metrics.raft.proposals_dropped;
        if let Some(f) = &g.failed {
            dropped.inc_by(batches.len() as u64);
            let _ = reply.send(Err((ErrorCode::StorageError, f.clone())));
            return;
        }
        if g.raw.raft.state != StateRole::Leader || term.is_some_and(|t| t != g.raw.raft.term) {
            dropped.inc_by(batches.len() as u64);
            let _ = reply.send(Err((
                ErrorCode::NotLeader,
                "this broker is not the partition's leader".into(),
            )));
            return;
        }
        // raft-rs drops every proposal while leadership is being transferred.
        if g.raw.raft.lead_transferee.is_some() {
            dropped.inc_by(batches.len() as u64);
            let _ = reply.send(Err((
                ErrorCode::NotLeader,
                "leadership is being handed to another broker; retry".into(),
            )));
            return;
        }
        // Idempotent producers: every batch is checked before any is proposed.
        if !g.producers_ready {
            Self::rebuild_producers(g);
        }
        // A retried request may start with batches already in the log (all of them, or a prefix
        // a failed leader replicated before it died); those are not appended again.
        let mut proposed: Vec<(i64, Option<(i16, i32)>)> = Vec::new();
        let mut duplicates: Vec<crate::producers::SeqBatch> = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let Some(stamp) = BatchHeader::parse(b).ok().and_then(|h| Stamp::of(&h)) else {
                continue;
            };
            let refused = match g.producers.check(&stamp) {
                Check::Accept => {
                    proposed.push((stamp.producer_id, g.producers.propose(&stamp)));
                    None
                }
                Check::Duplicate(original) if duplicates.len() == i => {
                    duplicates.push(original);
                    None
                }
                Check::Duplicate(_) => Some((
                    ErrorCode::OutOfOrderSequenceNumber,
                    "a retried batch after new ones in the same request".to_string(),
                )),
                Check::Refuse(code, message) => Some((code, message)),
            };
            if let Some(err) = refused {
                for (id, previous) in proposed.into_iter().rev() {
                    g.producers.restore_pending(id, previous);
                }
                dropped.inc_by(batches.len() as u64);
                let _ = reply.send(Err(err));
                return;
            }
        }
        let original_base = duplicates.first().map(|d| d.base_offset);
        if let (Some(first), Some(last)) = (duplicates.first(), duplicates.last())
            && duplicates.len() == batches.len()
        {
            // Entirely in the log: answer with the original offset once it is committed (or
            // durable, for acks=leader), as the original request would have been.
            let term = g.raw.raft.raft_log.term(last.index).unwrap_or(0);
            g.dup_waiters.push(Waiter {
                first_index: first.index,
                last_index: last.index,
                term,
                base_offset: Some(first.base_offset),
                reported_base: None,
                acks,
                reply,
            });
            g.touched = true;
            return;
        }
        let batches = &batches[duplicates.len()..];
        g.wake();
        let first_index = g.raw.raft.raft_log.last_index() + 1;
        let counters = &g.partition.counters;
        for (i, b) in batches.iter().enumerate() {
            if let Err(e) = propose_shared(&mut g.raw, b.clone()) {
                // Earlier batches of this request may already be in the log; they will commit,
                // but the producer is told the request failed and may retry (idempotent
                // producers will make such retries safe).
                if i == 0 {
                    // Nothing of this request is in the log: its sequences are not pending.
                    for (id, previous) in std::mem::take(&mut proposed).into_iter().rev() {
                        g.producers.restore_pending(id, previous);
                    }
                }
                dropped.inc_by((batches.len() - i) as u64);
                let _ = reply.send(Err((ErrorCode::NotLeader, format!("proposal dropped: {e}"))));
                return;
            }
            // The handler validated the batch, so its header parses; only the count is read.
            counters.bytes_in.inc_by(b.len() as u64);
            if let Ok(h) = BatchHeader::parse(b) {
                counters.records_in.inc_by(u64::from(h.record_count));
            }
        }
        let last_index = g.raw.raft.raft_log.last_index();
        g.waiters.insert(
            last_index,
            Waiter {
                first_index,
                last_index,
                term: g.raw.raft.term,
                base_offset: None,
                reported_base: original_base,
                acks,
                reply,
            },
        );
    }

    /// Handles every group's Ready: see the module docs. Returns whether there was anything to
    /// do (a Ready or an fsync to start), for the cycle-duration histogram.
    fn cycle(&mut self, rx: &Receiver<Command>) -> bool {
        let metrics = Arc::clone(&self.metrics);
        let m = &*metrics;
        let mut worked = false;
        // Phase 1: per group, write what the Ready holds and hand it back.
        for g in self.groups.values_mut() {
            if g.failed.is_some() || !g.raw.has_ready() {
                continue;
            }
            worked = true;
            g.touched = true;
            let (outbox, metadata) = (&mut self.outbox, &self.metadata);
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Self::handle_ready(g, m, outbox, metadata)
            }));
            match handled {
                Ok(Ok(())) => {}
                Ok(Err(e)) => Self::fail(g, m, e),
                Err(_) => Self::fail(g, m, "raft panicked handling a Ready".into()),
            }
        }
        // Phase 2: start an fsync for every partition whose flush policy wants one now (with
        // `always`, any unsynced data; with `interval`, data old enough) and has none running.
        let mut jobs = Vec::new();
        for (key, g) in &mut self.groups {
            if g.failed.is_some() || g.syncing || !g.sync_check {
                continue;
            }
            match g.partition.storage.sync_state() {
                Ok((true, _)) => {}
                Ok((false, unsynced)) => {
                    // (With the `interval` policy, data not yet old enough: look again.)
                    g.sync_check = unsynced;
                    continue;
                }
                Err(_) => continue,
            }
            if let Ok(Some(job)) = g.partition.storage.begin_sync() {
                g.syncing = true;
                jobs.push((key.clone(), g.incarnation, job, std::mem::take(&mut g.unsynced_bytes)));
            }
        }
        worked |= !jobs.is_empty();
        // What phase 1 may send now goes out before any fsync starts: a leader's appends reach
        // its followers while it syncs its own copy, so their fsyncs overlap its one.
        self.flush_outbox();
        // With nothing queued behind it and no peers, a lone fsync runs right here: handing it
        // to a pool thread and being woken by its completion would only add two thread switches
        // to the producer's wait. With commands queued, the pool runs it while they are
        // appended; with peers, whose messages may arrive any moment (a follower's ack, another
        // leader's appends), the driver never blocks on a disk.
        let lone =
            jobs.len() == 1 && self.queue_is_empty(rx) && self.peers.as_ref().is_none_or(|p| p.connected_count() == 0);
        let mut finished = Vec::new();
        for task in jobs {
            let (key, incarnation, bytes) = (task.0.clone(), task.1, task.3);
            let result = if lone {
                Some(run_sync(&self.syncer.metrics, task.2))
            } else {
                self.syncer.submit(task)
            };
            if let Some(result) = result {
                finished.push((key, incarnation, result, bytes));
            }
        }
        for (key, incarnation, result, bytes) in finished {
            self.synced(&key, incarnation, result, bytes);
        }
        // Phase 3: report what is persisted, then answer (only where something happened: a
        // commit cannot move without a Ready or an fsync completion).
        for g in self.groups.values_mut() {
            if std::mem::take(&mut g.touched) && g.failed.is_none() {
                let outbox = &mut self.outbox;
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::settle(g, m, outbox))).is_err() {
                    Self::fail(g, m, "raft panicked settling a persisted Ready".into());
                }
            }
        }
        worked
    }

    /// Phase 1 of a cycle for one group: writes what its Ready holds, queues what may be sent
    /// now, and hands the Ready back to raft-rs.
    fn handle_ready(
        g: &mut Group,
        m: &Metrics,
        outbox: &mut HashMap<u64, Vec<OutboundMessage>>,
        metadata: &tokio::sync::mpsc::UnboundedSender<Applied>,
    ) -> Result<(), String> {
        let mut rd = g.raw.ready();
        g.sync_check = true;
        // A leader's appends may go out before its own write (Raft thesis 10.2.1).
        let early = rd.take_messages();
        Self::post(outbox, g, early);
        Self::persist_ready(g, &mut rd, m, metadata).map_err(|e| format!("{e}"))?;
        let always = g.partition.config.flush() == strata_storage::FlushPolicy::Always;
        let must_be_durable = rd.entries().last().map(|e| e.index).filter(|_| always);
        let after_persist = rd.take_persisted_messages();
        if let Some(first) = rd.entries().first().map(|e| e.index) {
            // These entries replace a tail an earlier Ready appended: that tail will never
            // be durable, so the earlier Readies wait only for what remains below it.
            for (_, waiting_for, _) in g.unpersisted.iter_mut() {
                if waiting_for.is_some_and(|i| i >= first) {
                    *waiting_for = Some(first - 1).filter(|&i| i > 0);
                }
            }
        }
        if !rd.snapshot().is_empty() {
            g.snapshot_ready = Some(rd.number());
        }
        g.unpersisted.push_back((rd.number(), must_be_durable, after_persist));
        g.raw.advance_append_async(rd);
        // The Ready's committed entries were applied in persist_ready. raft-rs counts a
        // snapshot applied only once it is reported persisted (see `settle`).
        if g.snapshot_ready.is_none() {
            g.raw.advance_apply();
        }
        Ok(())
    }

    /// Queues a group's messages for their brokers (sent at the end of the loop).
    fn post(outbox: &mut HashMap<u64, Vec<OutboundMessage>>, g: &mut Group, msgs: Vec<Message>) {
        for msg in msgs {
            // Strata snapshots are only a new log start (no data to stream), so a snapshot is
            // as good as delivered once handed to the transport; a lost one is resent when the
            // follower answers the next append.
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                g.raw.report_snapshot(msg.to, SnapshotStatus::Finish);
            }
            outbox.entry(msg.to).or_default().push(OutboundMessage {
                topic: g.topic.clone(),
                partition: g.partition.key.partition,
                topic_id: g.partition.topic_id,
                message: msg,
            });
        }
    }

    /// Hands the loop's messages to the transport, one batch per broker.
    fn flush_outbox(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let Some(peers) = &self.peers else {
            self.outbox.clear();
            return;
        };
        for (to, msgs) in self.outbox.drain() {
            // Appends to `to` that are (probably) lost: the transport refused them (queue full,
            // unknown broker), or there is no connection — what is queued before a connect
            // attempt starts is discarded (what comes during one is sent if it succeeds, so this
            // may also name appends that arrive; that costs a probe round trip). A leader
            // replicating optimistically would keep sending past the gap and learn of it only
            // from rejections, one inflight slot per heartbeat; reported unreachable, it probes
            // from the follower's real position once it answers.
            let disconnected = if peers.is_connected(to) {
                Vec::new()
            } else {
                append_groups(&msgs)
            };
            let lost = match peers.send(to, msgs) {
                Ok(()) => disconnected,
                Err(refused) => append_groups(&refused),
            };
            for key in lost {
                if let Some(g) = self.groups.get_mut(&key).filter(|g| g.failed.is_none()) {
                    g.raw.report_unreachable(to);
                }
            }
        }
    }

    /// Whether no command is waiting (one that is gets handled first by the next loop).
    fn queue_is_empty(&mut self, rx: &Receiver<Command>) -> bool {
        if self.peeked.is_some() {
            return false;
        }
        match rx.try_recv() {
            Ok(cmd) => {
                self.peeked = Some(cmd);
                false
            }
            Err(_) => true,
        }
    }

    /// An fsync finished: record it; this loop's `settle` turns it into commits and answers.
    fn synced(&mut self, key: &PartitionKey, incarnation: u64, result: strata_storage::Result<SyncDone>, bytes: u64) {
        let m = &*self.metrics;
        // The partition may have been removed (and perhaps re-created) meanwhile; the job was
        // for files that are gone or going.
        let Some(g) = self.groups.get_mut(key).filter(|g| g.incarnation == incarnation) else {
            return;
        };
        g.syncing = false;
        g.touched = true;
        g.sync_check = true;
        if g.failed.is_some() {
            return;
        }
        match g.partition.storage.complete_sync(result) {
            Ok(_) => m.storage.synced_bytes.inc_by(bytes),
            Err(e) => Self::fail(g, m, format!("fsync failed: {e}")),
        }
    }

    /// Tells Raft which handed-back Readies are now persisted (in order: a Ready is persisted
    /// only once every earlier one is), then publishes state and answers producers.
    fn settle(g: &mut Group, m: &Metrics, outbox: &mut HashMap<u64, Vec<OutboundMessage>>) {
        let durable = g.partition.storage.durable_index().map_or(0, |d| d.0);
        let mut persisted = None;
        while let Some((number, must_be_durable, _)) = g.unpersisted.front() {
            if must_be_durable.is_some_and(|index| index >= durable) {
                break;
            }
            persisted = Some(*number);
            let (_, _, msgs) = g.unpersisted.pop_front().expect("front exists");
            Self::post(outbox, g, msgs);
        }
        if let Some(number) = persisted {
            g.raw.on_persist_ready(number);
            if g.snapshot_ready.is_some_and(|n| n <= number) {
                // The snapshot (durable since it was installed) now counts as persisted: it and
                // the committed entries handed out since are applied.
                g.snapshot_ready = None;
                g.raw.advance_apply();
            }
        }
        // The high watermark before leadership: a handler that sees this replica lead must see
        // the commit point that made it leader, never the lower one it had as a follower.
        Self::publish_high_watermark(g);
        Self::after_ready(g, m);
        Self::answer(g, m);
        Self::fail_if_deposed(g);
    }

    /// A deposed leader's remaining waiters (those `answer` could not settle as committed):
    /// whether their batches commit is up to the new leader, which may overwrite them. The
    /// producers retry there; an idempotent producer's retry of a batch that did commit is
    /// recognized and not written twice.
    fn fail_if_deposed(g: &mut Group) {
        if g.raw.raft.state == StateRole::Leader || (g.waiters.is_empty() && g.dup_waiters.is_empty()) {
            return;
        }
        for w in std::mem::take(&mut g.waiters)
            .into_values()
            .chain(std::mem::take(&mut g.dup_waiters))
        {
            let _ = w.reply.send(Err((
                ErrorCode::NotLeader,
                "this broker lost the partition's leadership before the batch committed; retry at the new leader"
                    .into(),
            )));
        }
    }

    /// Installs the Ready's snapshot, applies its committed entries, appends its entries and
    /// records its hard state.
    fn persist_ready(
        g: &mut Group,
        rd: &mut ::raft::Ready,
        m: &Metrics,
        metadata: &tokio::sync::mpsc::UnboundedSender<Applied>,
    ) -> Result<(), crate::raft::storage::Error> {
        let store = g.partition.storage.clone();
        if !rd.snapshot().is_empty() {
            store.apply_snapshot(rd.snapshot())?;
            let data = &rd.snapshot().data;
            if g.is_metadata && data.len() > crate::raft::storage::SNAPSHOT_DATA_LEN {
                // The registry as of the snapshot: the controller installs it before the
                // entries that follow.
                let _ = metadata.send(Applied {
                    index: rd.snapshot().get_metadata().index,
                    commands: Vec::new(),
                    snapshot: Some(data.slice(crate::raft::storage::SNAPSHOT_DATA_LEN..)),
                });
            }
        }
        Self::apply(g, rd.take_committed_entries(), metadata)?;
        let infos = if rd.entries().is_empty() {
            Vec::new()
        } else {
            let started = Instant::now();
            // (Only a data partition's leader skips re-walking its own proposals' records: the
            // produce handler validated them. Metadata proposals are built here, not received.)
            let own_term = (!g.is_metadata && g.raw.raft.state == StateRole::Leader).then_some(g.raw.raft.term);
            let infos = store.append_entries_of(rd.entries(), own_term)?;
            m.storage.append_duration.observe(started.elapsed().as_secs_f64());
            // Entry data is the record batch as stored; control entries (elections, conf
            // changes) count only their small payload.
            let bytes: usize = rd.entries().iter().map(|e| e.data.len()).sum();
            g.unsynced_bytes = g.unsynced_bytes.saturating_add(bytes as u64);
            infos
        };
        let track = g.producers_ready && g.raw.raft.state == StateRole::Leader;
        for (e, info) in rd.entries().iter().zip(&infos) {
            if track && let Some(stamp) = BatchHeader::parse(&e.data).ok().and_then(|h| Stamp::of(&h)) {
                g.producers.appended(&stamp, info.base_offset, e.index);
            }
            g.next_offsets.insert(e.index, info.next_offset);
            if let Some(w) = g.waiters.range_mut(e.index..).next().map(|(_, w)| w)
                && w.first_index == e.index
            {
                w.base_offset = Some(info.base_offset);
            }
        }
        g.producers.clear_pending();
        // After the entries: a hard state's commit may name entries this Ready appends.
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs)?;
        }
        Ok(())
    }

    /// Publishes leadership after a Ready was handled or persisted.
    fn after_ready(g: &mut Group, m: &Metrics) {
        let raft = &g.raw.raft;
        let elected = raft.state == StateRole::Leader;
        // A new leader knows the commit point only once an entry of its own term commits (its
        // first, empty entry): until then its high watermark may be behind the previous
        // leader's, so it does not serve yet and the partition shows no leader.
        let leader = elected
            && raft
                .raft_log
                .term(raft.raft_log.committed)
                .is_ok_and(|t| t == raft.term);
        let leader_id = if elected && !leader { 0 } else { raft.leader_id };
        g.partition.set_leader(leader, raft.term, leader_id);
        if !elected && g.producers_ready {
            // A follower keeps no producer state; the next leadership rebuilds it from the log.
            g.producers.clear();
            g.producers_ready = false;
        }
        if leader {
            // In sync: members whose log has everything committed, in assignment order.
            let commit = g.raw.raft.raft_log.committed;
            let prs = g.raw.raft.prs();
            g.in_sync.clear();
            g.in_sync.extend(
                g.assignment
                    .member_ids()
                    .filter(|id| prs.get(*id).is_some_and(|p| p.matched >= commit)),
            );
            g.partition.set_in_sync(&g.in_sync);
        }
        if leader_id != g.leader_id {
            // Losing a leader (an election starts) is not a change; electing one is.
            if leader_id != ::raft::INVALID_ID {
                m.raft.leader_changes.inc();
            }
            g.leader_id = leader_id;
        }
    }

    fn apply(
        g: &mut Group,
        entries: Vec<Entry>,
        metadata: &tokio::sync::mpsc::UnboundedSender<Applied>,
    ) -> Result<(), crate::raft::storage::Error> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        if g.is_metadata {
            let commands = entries
                .iter()
                .filter(|e| e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty())
                .flat_map(|e| MetadataCommand::decode(&e.data).into_iter().map(move |c| (e.index, c)))
                .collect();
            let _ = metadata.send(Applied {
                index: last,
                commands,
                snapshot: None,
            });
        }
        let mut conf_changed = false;
        for e in &entries {
            // A configuration already recorded (the metadata log is replayed from its start)
            // must not be applied again. Only conf changes look, so data entries cost nothing.
            if e.get_entry_type() != EntryType::EntryNormal && e.index <= g.partition.storage.conf_index()? {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    if cc.merge_from_bytes(&e.data).is_ok()
                        && let Ok(cs) = g.raw.apply_conf_change(&cc)
                    {
                        g.partition.storage.set_conf_state(cs, e.index)?;
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    match cc.merge_from_bytes(&e.data).map(|()| g.raw.apply_conf_change(&cc)) {
                        Ok(Ok(cs)) => {
                            tracing::info!(topic = %g.partition.key.topic, partition = g.partition.key.partition, index = e.index, voters = ?cs.voters, learners = ?cs.learners, outgoing = ?cs.voters_outgoing, "raft configuration changed");
                            g.partition.storage.set_conf_state(cs, e.index)?;
                            conf_changed = true;
                        }
                        Ok(Err(err)) => {
                            tracing::warn!(topic = %g.partition.key.topic, partition = g.partition.key.partition, index = e.index, error = %err, "configuration change not applicable; skipped")
                        }
                        Err(err) => {
                            tracing::warn!(topic = %g.partition.key.topic, partition = g.partition.key.partition, index = e.index, error = %err, "unreadable configuration change; skipped")
                        }
                    }
                }
                EntryType::EntryNormal => {}
            }
        }
        if conf_changed {
            Self::publish_conf(&g.partition, &g.raw);
            g.settled = false;
        }
        g.partition.storage.set_applied(last)?;
        Ok(())
    }

    /// Publishes the Raft configuration for handlers and the reassignment completer.
    fn publish_conf(p: &Partition, raw: &RawNode<PartitionRaftStorage>) {
        let cs = raw.raft.prs().conf().to_conf_state();
        p.set_raft_conf(RaftConf {
            voters: cs.voters,
            learners: cs.learners,
            joint: !cs.voters_outgoing.is_empty(),
        });
    }

    /// Publishes the log's state for handlers and metrics (read under the storage lock, which
    /// only this thread takes for long).
    fn publish_log_state(p: &Partition) {
        if let Ok(state) = p.storage.with_log(LogState::of) {
            p.set_log_state(state);
        }
    }

    /// Publishes the high watermark: the next offset after the committed entry.
    fn publish_high_watermark(g: &mut Group) {
        let commit = g.raw.raft.raft_log.committed;
        if let Some(hw) = Self::offset_after(g, commit) {
            g.partition.set_high_watermark(hw.0);
        }
        // Keep the committed entry's own offset: the next cycle with the same commit needs it.
        g.next_offsets = g.next_offsets.split_off(&commit);
        g.partition.set_commit_index(commit);
    }

    /// Publishes the log's state and answers waiters that are durable or committed.
    fn answer(g: &mut Group, m: &Metrics) {
        let commit = g.raw.raft.raft_log.committed;
        let durable = g.partition.storage.durable_index().map_or(0, |d| d.0.saturating_sub(1));
        let always = g.partition.config.flush() == strata_storage::FlushPolicy::Always;
        Self::publish_log_state(&g.partition);
        let ready: Vec<u64> = g
            .waiters
            .values()
            .filter(|w| match w.acks {
                Acks::All | Acks::None => w.last_index <= commit,
                // `acks=leader` means appended to the leader's log, and durable if the topic's
                // flush policy is `always`.
                Acks::Leader => w.base_offset.is_some() && (!always || w.last_index <= durable),
            })
            .map(|w| w.last_index)
            .collect();
        for idx in ready {
            let w = g.waiters.remove(&idx).expect("collected above");
            let r = if Self::still_ours(g, &w) {
                w.reported_base.or(w.base_offset).ok_or((
                    ErrorCode::UnknownServerError,
                    "offset of an appended batch is unknown".into(),
                ))
            } else {
                Err(overwritten())
            };
            let _ = w.reply.send(r);
        }
        // Entries truncated away (a new leader overwrote them) will never commit.
        let last = g.raw.raft.raft_log.last_index();
        if !g.dup_waiters.is_empty() {
            let waiting = std::mem::take(&mut g.dup_waiters);
            for w in waiting {
                let done = match w.acks {
                    Acks::All | Acks::None => w.last_index <= commit,
                    Acks::Leader => !always || w.last_index <= durable,
                };
                if w.last_index > last {
                    let _ = w.reply.send(Err((
                        ErrorCode::NotLeader,
                        "leadership changed before the batch committed".into(),
                    )));
                } else if done {
                    let r = if Self::still_ours(g, &w) {
                        w.base_offset.ok_or((ErrorCode::UnknownServerError, String::new()))
                    } else {
                        Err(overwritten())
                    };
                    let _ = w.reply.send(r);
                } else {
                    g.dup_waiters.push(w);
                }
            }
        }
        let lost: Vec<u64> = g.waiters.range(last + 1..).map(|(i, _)| *i).collect();
        for idx in lost {
            if let Some(w) = g.waiters.remove(&idx) {
                let truncated = w.last_index - w.first_index.max(last + 1) + 1;
                m.raft.proposals_dropped.inc_by(truncated);
                let _ = w.reply.send(Err((
                    ErrorCode::NotLeader,
                    "leadership changed before the batch committed".into(),
                )));
            }
        }
    }

    /// Whether the entry a waiter waits for is still the one it proposed (same term at its index).
    fn still_ours(g: &Group, w: &Waiter) -> bool {
        g.raw.raft.raft_log.term(w.last_index).is_ok_and(|t| t == w.term)
    }

    /// Rebuilds the idempotent producers' state from the newest entries of the log (at most
    /// [`SCAN_ENTRIES`]), as a new leader must before taking a proposal. Only the batches'
    /// headers are read (producer id, epoch, sequence, offsets): a failover does not read up to
    /// [`SCAN_ENTRIES`] whole batches back on the Raft thread.
    fn rebuild_producers(g: &mut Group) {
        g.producers.clear();
        let scanned = g.partition.storage.with_log(|l| {
            let (first, last) = (l.first_index().0, l.last_index().0);
            let mut next = first.max(last.saturating_sub(SCAN_ENTRIES - 1)).max(1);
            let mut out = Vec::new();
            while next <= last {
                let Ok(batches) = l.entry_headers(RaftIndex(next), RaftIndex(last + 1), usize::MAX) else {
                    break;
                };
                let Some(end) = batches.last().map(|b| b.header.raft_index.0) else {
                    break;
                };
                out.extend(
                    batches
                        .iter()
                        .filter_map(|b| Some((Stamp::of(&b.header)?, b.header.base_offset, b.header.raft_index.0))),
                );
                next = end + 1;
            }
            out
        });
        match scanned {
            Ok(found) => {
                for (stamp, base_offset, index) in found {
                    g.producers.appended(&stamp, base_offset, index);
                }
            }
            Err(e) => {
                tracing::warn!(topic = %g.partition.key.topic, partition = g.partition.key.partition, error = %e, "reading producer state from the log failed; starting without it")
            }
        }
        g.producers_ready = true;
    }

    fn offset_after(g: &Group, index: u64) -> Option<Offset> {
        if index == 0 {
            return g.partition.storage.with_log(|l| l.log_start_offset()).ok();
        }
        if let Some(o) = g.next_offsets.get(&index) {
            return Some(*o);
        }
        g.partition
            .storage
            .with_log(|l| {
                if index + 1 == l.first_index().0 {
                    return Some(l.log_start_offset());
                }
                l.entry_headers(RaftIndex(index), RaftIndex(index + 1), 1)
                    .ok()?
                    .first()
                    .map(|b| b.header.next_offset())
            })
            .ok()
            .flatten()
    }

    fn fail(g: &mut Group, m: &Metrics, reason: String) {
        tracing::error!(topic = %g.partition.key.topic, partition = g.partition.key.partition, %reason, "partition failed; restart the broker to recover it");
        g.partition.set_leader(false, g.raw.raft.term, 0);
        g.partition.set_failed();
        for (_, w) in std::mem::take(&mut g.waiters) {
            // A failed replica commits nothing more.
            m.raft
                .proposals_dropped
                .inc_by((w.last_index + 1).saturating_sub(w.first_index));
            let _ = w.reply.send(Err((ErrorCode::StorageError, reason.clone())));
        }
        for w in std::mem::take(&mut g.dup_waiters) {
            let _ = w.reply.send(Err((ErrorCode::StorageError, reason.clone())));
        }
        g.failed = Some(reason);
    }

    /// Whether a group led here is idle enough to quiesce: everything in its log committed,
    /// applied and on every replica, nothing proposed, pending, being persisted or moving (no
    /// transfer, configuration change or reassignment), and every replica's broker heard from
    /// lately. The metadata group never quiesces.
    fn idle(g: &Group, me: u64, heard: &HashMap<u64, Instant>, now: Instant) -> bool {
        let raft = &g.raw.raft;
        let log = &raft.raft_log;
        let last = log.last_index();
        raft.state == StateRole::Leader
            && !g.is_metadata
            && g.failed.is_none()
            && g.settled
            && g.partition.is_leader()
            && raft.lead_transferee.is_none()
            && !raft.has_pending_conf()
            && log.committed == last
            && log.applied == last
            && g.waiters.is_empty()
            && g.dup_waiters.is_empty()
            && g.unpersisted.is_empty()
            && !g.syncing
            && g.snapshot_ready.is_none()
            && g.eager_campaign == 0
            && raft.prs().iter().all(|(&id, pr)| {
                pr.matched == last
                    && (id == me || (pr.state == ::raft::ProgressState::Replicate && heard_lately(heard, id, now)))
            })
            && raft.prs().conf().to_conf_state().voters_outgoing.is_empty()
    }

    /// Quiesces an idle group led here: one last heartbeat, marked, carrying the commit index,
    /// and no more ticks (no heartbeats, no check-quorum) until something wakes it. Its followers
    /// quiesce on that heartbeat (they have every entry) and stop their election clocks. This is
    /// safe because ticks only drive timeouts: a quiesced group can still take every message and
    /// proposal, and any of them wakes it. What it gives up is noticing a failure by a timeout;
    /// instead [`Driver::stays_quiet`] wakes the group when a broker it involves falls silent.
    fn quiesce(g: &mut Group, me: u64, outbox: &mut HashMap<u64, Vec<OutboundMessage>>) {
        let raft = &g.raw.raft;
        let (term, commit) = (raft.term, raft.raft_log.committed);
        let heartbeats: Vec<Message> = raft
            .prs()
            .iter()
            .map(|(&id, _)| id)
            .filter(|&id| id != me)
            .map(|to| {
                let mut m = Message::default();
                m.set_msg_type(MessageType::MsgHeartbeat);
                m.to = to;
                m.from = me;
                m.term = term;
                m.commit = commit;
                m.context = Bytes::from_static(QUIESCE_CONTEXT);
                m
            })
            .collect();
        Self::post(outbox, g, heartbeats);
        g.quiesced = true;
        g.idle_since = Some(Instant::now());
    }

    /// Whether every other replica answered the leader since its last check-quorum (which
    /// clears the marks): a replica that failed on a live broker keeps its group awake.
    fn all_answered(g: &Group, me: u64) -> bool {
        g.raw.raft.prs().iter().all(|(&id, pr)| id == me || pr.recent_active)
    }

    /// Whether a quiesced group stays quiesced this tick. A leader wakes when any replica's
    /// broker falls silent (it must notice losing its quorum, and a replica coming back needs
    /// heartbeats); a follower when its leader's broker falls silent or closes its connection,
    /// or stops announcing this partition at this term (its replica failed, was removed, or
    /// lost leadership): then the follower's election clock runs again.
    fn stays_quiet(g: &Group, me: u64, heard: &HashMap<u64, Instant>, news: Option<&PeerNews>, now: Instant) -> bool {
        let raft = &g.raw.raft;
        match raft.state {
            StateRole::Leader => {
                raft.lead_transferee.is_none()
                    && g.idle_since
                        .is_some_and(|t| now.saturating_duration_since(t) < QUIESCE_REFRESH)
                    && raft
                        .prs()
                        .iter()
                        .all(|(&id, _)| id == me || heard_lately(heard, id, now))
            }
            StateRole::Follower => {
                let leader = raft.leader_id;
                let key = &g.partition.key;
                leader != ::raft::INVALID_ID
                    && heard_lately(heard, leader, now)
                    && news
                        .and_then(|n| n.announced(&key.topic, key.partition, g.partition.topic_id))
                        .is_some_and(|a| {
                            a.leader == leader
                                && a.term == raft.term
                                && now.saturating_duration_since(a.at) < crate::server::PEER_SILENCE
                        })
            }
            _ => false,
        }
    }

    /// After a failover, leadership returns to each partition's preferred replica (the first of
    /// its replicas) by Raft leadership transfer, once that replica has every entry: so
    /// leadership stays spread as placement intended. A transfer that does not complete within
    /// an election timeout is abandoned by raft-rs.
    fn restore_preferred_leaders(&mut self) {
        let peers = self.peers.clone();
        // A follower of an idle partition looks caught up even when its broker is gone; only
        // brokers this one is connected to are candidates.
        let reachable = |id: u64| peers.as_ref().is_some_and(|p| p.is_connected(id));
        for g in self.groups.values_mut() {
            let raft = &g.raw.raft;
            let Some(preferred) = g.assignment.preferred() else {
                continue;
            };
            if g.failed.is_some()
                || preferred == self.node_id
                || !raft.prs().conf().voters().contains(preferred)
                || raft.state != StateRole::Leader
                || raft.lead_transferee.is_some()
                || !g.partition.is_leader()
            {
                continue;
            }
            let last = raft.raft_log.last_index();
            // (Not `recent_active`: check-quorum clears it every election timeout, and this runs
            // on tick boundaries too, so it could read false every time.)
            let caught_up = raft
                .prs()
                .get(preferred)
                .is_some_and(|p| p.state == ::raft::ProgressState::Replicate && p.matched == last)
                && reachable(preferred);
            if caught_up {
                tracing::info!(topic = %g.partition.key.topic, partition = g.partition.key.partition, to = preferred, "handing leadership back to the preferred replica");
                g.wake();
                g.raw.transfer_leader(preferred);
            }
        }
    }

    /// Takes the next step of every reassignment led here, moving the group's Raft configuration
    /// towards the desired voters (the target, or the replicas after a cancel) one committed
    /// change at a time: add the new replicas as learners; once they are caught up, promote them
    /// and remove the replicas leaving (joint consensus when more than one voter changes, left
    /// automatically); if this leader is itself leaving, hand leadership to a caught-up new
    /// voter, which removes it. The partition serves throughout. Once the voters are the target,
    /// the controller is told (see `controller::complete_reassignments`).
    fn step_reassignments(&mut self) {
        let peers = self.peers.clone();
        let reachable = |id: u64| peers.as_ref().is_some_and(|p| p.is_connected(id));
        for g in self.groups.values_mut() {
            if g.failed.is_some() || g.settled || !g.partition.is_leader() {
                continue;
            }
            let step = Self::next_change(g, self.node_id, &reachable);
            if matches!(step, Step::Change(_) | Step::Transfer(_)) {
                g.wake();
            }
            let key = &g.partition.key;
            {
                match step {
                    Step::Settled => g.settled = true,
                    Step::Wait => {}
                    Step::Change(cc) => {
                        tracing::info!(topic = %key.topic, partition = key.partition, changes = ?cc.changes.iter().map(|c| (c.get_change_type(), c.node_id)).collect::<Vec<_>>(), "reassignment: proposing a configuration change");
                        if let Err(e) = g.raw.propose_conf_change(Vec::new(), cc) {
                            tracing::warn!(topic = %key.topic, partition = key.partition, error = %e, "reassignment: configuration change refused");
                        }
                    }
                    Step::Transfer(to) => {
                        tracing::info!(topic = %key.topic, partition = key.partition, to, "reassignment: handing leadership to a new replica before leaving");
                        g.raw.transfer_leader(to);
                    }
                }
            }
        }
    }

    /// The next step of a group's reassignment, if one is due now.
    fn next_change(g: &Group, me: u64, reachable: &impl Fn(u64) -> bool) -> Step {
        let raft = &g.raw.raft;
        if raft.state != StateRole::Leader || raft.lead_transferee.is_some() {
            return Step::Wait;
        }
        let cs = raft.prs().conf().to_conf_state();
        let (voters, learners) = (&cs.voters, &cs.learners);
        // The metadata group's voters are the configured controller quorum, never changed here;
        // only its learners (the data-only brokers) come and go.
        let desired: &[u64] = if g.is_metadata { voters } else { g.assignment.desired() };
        let keep_learners = &g.assignment.learners;
        let in_step = voters.len() == desired.len()
            && desired.iter().all(|d| voters.contains(d))
            && learners.len() == keep_learners.len()
            && keep_learners.iter().all(|l| learners.contains(l))
            && cs.voters_outgoing.is_empty();
        if in_step || desired.is_empty() {
            return Step::Settled;
        }
        // A change not yet applied: wait for it (raft-rs refuses a second one meanwhile).
        if raft.pending_conf_index > raft.raft_log.applied {
            return Step::Wait;
        }
        let single = |node_id, ty| {
            let mut c = ConfChangeSingle {
                node_id,
                ..Default::default()
            };
            c.set_change_type(ty);
            c
        };
        let change = |changes: Vec<ConfChangeSingle>| {
            Step::Change(ConfChangeV2 {
                changes: changes.into(),
                ..Default::default()
            })
        };
        // A joint configuration raft-rs did not leave (its leader changed first): leave it.
        if !cs.voters_outgoing.is_empty() {
            return change(Vec::new());
        }
        let adding: Vec<ConfChangeSingle> = desired
            .iter()
            .chain(keep_learners)
            .filter(|id| !voters.contains(id) && !learners.contains(id))
            .map(|&id| single(id, ConfChangeType::AddLearnerNode))
            .collect();
        if !adding.is_empty() {
            return change(adding);
        }
        let commit = raft.raft_log.committed;
        let caught_up = |id: u64| {
            raft.prs()
                .get(id)
                .is_some_and(|p| p.state == ::raft::ProgressState::Replicate && p.matched + CATCH_UP_SLACK >= commit)
        };
        let promoting: Vec<u64> = desired.iter().copied().filter(|id| learners.contains(id)).collect();
        if !promoting.iter().all(|&id| caught_up(id)) {
            return Step::Wait;
        }
        let mut changes: Vec<ConfChangeSingle> = promoting
            .iter()
            .map(|&id| single(id, ConfChangeType::AddNode))
            .collect();
        changes.extend(
            voters
                .iter()
                .chain(learners.iter())
                .filter(|&&id| id != me && !desired.contains(&id) && !keep_learners.contains(&id))
                .map(|&id| single(id, ConfChangeType::RemoveNode)),
        );
        if !changes.is_empty() {
            return change(changes);
        }
        // Only this leader is left to remove: hand leadership over first (raft-rs does not
        // support removing a leader), to the most caught-up new voter.
        desired
            .iter()
            .copied()
            .filter(|&id| id != me && voters.contains(&id) && reachable(id) && caught_up(id))
            .max_by_key(|&id| raft.prs().get(id).map_or(0, |p| p.matched))
            .map_or(Step::Wait, Step::Transfer)
    }

    /// Starts a leadership transfer in every group led here, to the follower with the most
    /// entries; returns how many started.
    fn hand_over(&mut self) -> usize {
        let peers = self.peers.clone();
        let reachable = |id: u64| peers.as_ref().is_some_and(|p| p.is_connected(id));
        let mut started = 0;
        for g in self.groups.values_mut() {
            let raft = &g.raw.raft;
            if g.failed.is_some() || raft.state != StateRole::Leader {
                continue;
            }
            let voters = raft.prs().conf().voters().ids();
            let target = voters
                .iter()
                .filter(|&id| id != self.node_id && reachable(id))
                .filter_map(|id| {
                    raft.prs()
                        .get(id)
                        .filter(|p| p.state == ::raft::ProgressState::Replicate)
                        .map(|p| (p.matched, id))
                })
                .max();
            if let Some((_, to)) = target {
                g.wake();
                g.raw.transfer_leader(to);
                started += 1;
            }
        }
        started
    }

    fn retention(&mut self) {
        for g in self.groups.values_mut() {
            // Deleting segments of many partitions can take a while: that is progress, not a
            // stuck driver (see `PeerNews::driver_beat`).
            if let Some(news) = &self.news {
                news.driver_beat();
            }
            g.sync_check = true;
            let c = &g.partition.config;
            let r = Retention {
                bytes: c.retention_bytes,
                age: c.retention_ms.map(Duration::from_millis),
            };
            if r.bytes.is_none() && r.age.is_none() {
                continue;
            }
            match g.partition.storage.apply_retention(&r) {
                Ok(rep) if rep.segments_deleted > 0 => {
                    Self::publish_log_state(&g.partition);
                    tracing::info!(topic = %g.partition.key.topic, partition = g.partition.key.partition, segments = rep.segments_deleted, bytes = rep.bytes_deleted, "retention deleted segments")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(topic = %g.partition.key.topic, partition = g.partition.key.partition, error = %e, "retention failed")
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for (key, g) in std::mem::take(&mut self.groups) {
            if let Err(e) = g.partition.storage.flush() {
                tracing::error!(topic = %key.topic, partition = key.partition, error = %e, "flush on shutdown failed");
            }
            for (_, w) in g.waiters {
                let _ = w.reply.send(Err((
                    ErrorCode::BrokerShuttingDown,
                    "the broker is shutting down".into(),
                )));
            }
        }
    }
}

/// The groups with an append among `msgs` (each once).
fn append_groups(msgs: &[OutboundMessage]) -> Vec<PartitionKey> {
    let mut keys: Vec<PartitionKey> = Vec::new();
    for m in msgs
        .iter()
        .filter(|m| m.message.get_msg_type() == MessageType::MsgAppend)
    {
        if !keys.iter().any(|k| k.partition == m.partition && *k.topic == *m.topic) {
            keys.push(PartitionKey {
                topic: m.topic.to_string(),
                partition: m.partition,
            });
        }
    }
    keys
}
/// `RawNode::propose` without its copy of the data: the entry shares the request's bytes (the
/// produce handler validated them), which raft-rs keeps unchanged until they are persisted.
fn propose_shared(raw: &mut RawNode<PartitionRaftStorage>, data: Bytes) -> ::raft::Result<()> {
    let e = Entry {
        data,
        ..Entry::default()
    };
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgPropose);
    m.from = raw.raft.id;
    m.set_entries(vec![e].into());
    raw.raft.step(m)
}
