//! The Raft storage of a partition: raft-rs's `Storage` implemented over the partition's segment
//! log, so that there is exactly one copy of the data on each replica.
//!
//! [`PartitionRaftStorage`] owns a [`PartitionLog`] and the partition's `raft-state` file (hard
//! state, configuration, applied index; see [`PersistentState`]). It is a cheap, cloneable
//! handle: the `RawNode` owns one clone and reads the log through the `Storage` trait; the Raft
//! driver keeps another to persist each `Ready`. Both sides go through one
//! [`std::sync::RwLock`], held only for the duration of a call — never across a sync, never
//! across an `.await` (nothing here is async; every method does blocking file I/O, so call it
//! from the Raft thread or `spawn_blocking`).
//!
//! # Entries and batches
//!
//! Every Raft entry is exactly one record batch in the log, with the entry's term and index in
//! the batch header:
//!
//! | Raft entry | stored batch |
//! |---|---|
//! | `EntryNormal`, non-empty `data` | `data` *is* the record batch; it must pass [`RecordBatch::revalidate`] (the proposing leader ran the whole [`RecordBatch::validate`]) and be a data batch. The log fills in base offset, term and index. |
//! | `EntryNormal`, empty `data` (a new leader's entry) | control batch [`ControlType::Noop`], empty payload |
//! | `EntryConfChange` | control batch [`ControlType::RaftConfChange`], payload = the encoded `ConfChange` (`data`) |
//! | `EntryConfChangeV2` | control batch [`ControlType::RaftConfChangeV2`], payload = the encoded `ConfChangeV2` |
//!
//! Control batches carry timestamp 0, so every replica stores identical bytes for an entry.
//! `Entry::context` is not stored: Strata never sets it, and an entry that carries one is
//! rejected rather than silently changed. Reading back ([`Storage::entries`]) inverts the table;
//! a data entry's `data` is the stored batch, i.e. the proposed bytes with the broker's header
//! prefix (offset, term, index) filled in, which is what a follower appends in turn.
//!
//! # Snapshots
//!
//! A Strata snapshot carries no state-machine data: the log *is* the state. A snapshot is a new
//! log start plus the configuration valid there:
//!
//! - metadata `index` = `first_index - 1` (the log start: a follower behind it gets every entry
//!   the leader still has), metadata `term` = that entry's term;
//! - metadata `conf_state` = the configuration valid at that index, looked up in the recorded
//!   configuration history (every configuration since the log start, see below). If the
//!   recipient is not in it (a replica added by a later configuration change, e.g. a new
//!   learner), it is added as a learner: raft-rs refuses a snapshot that does not name its
//!   recipient, and the recipient reaches the true configuration by applying the changes after
//!   the snapshot's index in order (membership changes set a node's role whatever it was);
//! - a group with state of its own beyond the log (the metadata group: the applied registry)
//!   attaches it with [`PartitionRaftStorage::set_snapshot_state`]: the snapshot is then taken
//!   at that state's index (at or above the log start) and `data` carries the state after the
//!   offset;
//! - `data` = the record offset the follower's log starts at after the snapshot: 8 bytes,
//!   big-endian `u64` ([`SNAPSHOT_DATA_LEN`]), then the attached state, if any.
//!
//! Installing one ([`PartitionRaftStorage::apply_snapshot`]) is [`PartitionLog::reset`] to
//! `LogStart { index: meta.index + 1, prev_term: meta.term, offset }`, made crash-safe by
//! recording the pending reset in `raft-state` first (see below).
//!
//! # Durability order
//!
//! raft-rs requires entries, hard state and snapshot to be durable before the `Ready`'s
//! *persisted* messages are sent and before `advance`. The driver handles a `Ready` so:
//!
//! 1. send `messages()` (a leader's appends may go out before its own write; thesis §10.2.1);
//! 2. snapshot → [`apply_snapshot`](PartitionRaftStorage::apply_snapshot) (durable on return);
//! 3. committed entries → apply; for a configuration change call `RawNode::apply_conf_change`
//!    and [`set_conf_state`](PartitionRaftStorage::set_conf_state) (durable on return), then
//!    [`set_applied`](PartitionRaftStorage::set_applied) with the last index;
//! 4. entries → [`append_entries`](PartitionRaftStorage::append_entries) (written, not synced);
//! 5. sync the log: [`begin_sync`](PartitionRaftStorage::begin_sync), [`SyncJob::run`] on any
//!    thread, [`complete_sync`](PartitionRaftStorage::complete_sync). The broker driver does
//!    this asynchronously (`advance_append_async`, then `on_persist_ready` once the entries are
//!    durable) and runs step 6 right after step 4;
//! 6. hard state → [`set_hard_state`](PartitionRaftStorage::set_hard_state): a new term or vote
//!    is written durably before it returns; a commit-only change is kept in memory (raft-rs
//!    `Ready::must_sync` allows this: a lagging commit index is recovered from the leader).
//!    A durable write carries the commit index too, so with peers it must come after the sync
//!    (or clamp the commit) to keep the commit on disk within the durable log;
//! 7. send `persisted_messages()`; 8. `advance`, then the light ready: `commit_index()` →
//!    [`set_commit`](PartitionRaftStorage::set_commit), messages, committed entries as in 3,
//!    `advance_apply`.
//!
//! # Recovering `applied`
//!
//! Applying a data entry changes nothing beyond the log, so the only state machine is the
//! configuration. `raft-state` records `applied` with the configuration: every write stores the
//! in-memory applied index, and [`set_conf_state`](PartitionRaftStorage::set_conf_state) writes
//! immediately with `applied` = the conf change's index. On open, `applied` is that value, raised
//! to the log start - 1 (everything below the log start was applied: compaction is bounded by
//! the applied index); pass [`PartitionRaftStorage::applied`] as `raft::Config::applied`. Raft
//! re-delivers the committed entries above it — data entries are no-ops, and a conf change there
//! was not yet applied (had it been, the file would record it).
//!
//! # The `raft-state` file
//!
//! Written with [`durable::write_atomic`] (temp file, fsync, rename, fsync dir; framed with a
//! CRC). Payload, integers big-endian:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 1 | layout version (1) |
//! | 1 | 8 | hard state `term` |
//! | 9 | 8 | hard state `vote` |
//! | 17 | 8 | hard state `commit` |
//! | 25 | 8 | `applied` |
//! | 33 | 8 | `conf_index` |
//! | 41 | 1 | flags: bit 0 `ConfState::auto_leave`, bit 1 a pending log start follows; others 0 |
//! | 42 | 8 | pending log start offset (0 if none) |
//! | 50 | 8 | pending log start Raft index (0 if none) |
//! | 58 | 8 | pending log start previous term (0 if none) |
//! | 66 | … | four id lists — `voters`, `learners`, `voters_outgoing`, `learners_next` — each a `u32` count then that many `u64` ids |
//! | … | … | (version 2) the earlier configurations still needed: a `u32` count, then each as its `u64` index, a flags byte (bit 0 `auto_leave`) and four id lists |
//!
//! Version 1 files (no history) are read as having an empty history; version 2 is written.
//! Invariants checked on read: `conf_index ≤ applied ≤ commit`, no trailing bytes, list counts
//! bounded by the bytes present.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use ::raft::{GetEntriesContext, RaftState, Storage, StorageError};
use bytes::Bytes;
use strata_protocol::batch::CONTROL_TYPE_LEN;
use strata_protocol::{BatchLimits, ControlType, HEADER_LEN, Offset, RaftIndex, RaftTerm, RecordBatch, control_batch};
use strata_storage::durable;
use strata_storage::{
    AppendInfo, LogConfig, LogStart, PartitionLog, RecoveryReport, Retention, RetentionReport, StoredBatch, SyncDone,
    SyncJob,
};

/// Name of the file holding a partition's [`PersistentState`], beside its segments.
pub const RAFT_STATE_FILE: &str = "raft-state";

/// Length of a snapshot's `data`: the new log start's record offset, big-endian `u64`.
pub const SNAPSHOT_DATA_LEN: usize = 8;

/// Timestamp of the control batches this adapter writes: fixed, so replicas agree byte for byte.
const CONTROL_TIMESTAMP: i64 = 0;

const STATE_VERSION: u8 = 2;
/// Layout without the configuration history, still read.
const STATE_VERSION_1: u8 = 1;
/// Most earlier configurations kept (only those at or above the log start are needed; a
/// reassignment adds three or four).
const MAX_HISTORY: usize = 64;
const STATE_FIXED_LEN: usize = 66;
const FLAG_AUTO_LEAVE: u8 = 0b01;
const FLAG_PENDING_LOG_START: u8 = 0b10;

/// Errors of the Raft storage adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The partition log or the `raft-state` file failed: I/O, corruption (including a damaged
    /// or inconsistent `raft-state`), a compacted or unavailable index.
    #[error(transparent)]
    Storage(#[from] strata_storage::Error),
    /// An entry handed over by Raft cannot be stored as a batch (nothing was written).
    #[error("raft entry {index} (term {term}) cannot be stored: {reason}")]
    InvalidEntry {
        /// The entry's index.
        index: u64,
        /// The entry's term.
        term: u64,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot handed over by Raft is malformed (nothing was changed).
    #[error("snapshot at raft index {index} is invalid: {reason}")]
    InvalidSnapshot {
        /// The snapshot's index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot older than the log start.
    #[error("snapshot at raft index {index} is older than the log start (first index {first_index})")]
    SnapshotOutOfDate {
        /// The snapshot's index.
        index: u64,
        /// The log's first index.
        first_index: u64,
    },
    /// A driver call that would break an invariant of the Raft state (e.g. a commit index past
    /// the end of the log, truncating a committed entry). Nothing was changed.
    #[error("raft state of {}: {reason}", dir.display())]
    InvalidState {
        /// The partition directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// [`PartitionRaftStorage::initialize`] on storage that already has a configuration or
    /// entries.
    #[error("raft storage in {} is already initialized", dir.display())]
    AlreadyInitialized {
        /// The partition directory.
        dir: PathBuf,
    },
    /// A thread panicked while holding the storage lock; the in-memory state cannot be trusted.
    #[error("raft storage in {} is poisoned by an earlier panic; reopen it", dir.display())]
    Poisoned {
        /// The partition directory.
        dir: PathBuf,
    },
}

impl From<Error> for ::raft::Error {
    /// Compacted and unavailable indexes become the `StorageError`s raft-rs reacts to; everything
    /// else is `StorageError::Other`, which stops the group.
    fn from(e: Error) -> Self {
        let e = match e {
            Error::Storage(strata_storage::Error::Compacted { .. }) => StorageError::Compacted,
            Error::Storage(strata_storage::Error::Unavailable { .. }) => StorageError::Unavailable,
            Error::SnapshotOutOfDate { .. } => StorageError::SnapshotOutOfDate,
            other => StorageError::Other(Box::new(other)),
        };
        ::raft::Error::Store(e)
    }
}

fn raft_err(e: strata_storage::Error) -> ::raft::Error {
    Error::Storage(e).into()
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Storage(strata_storage::Error::Corruption {
        path: path.to_path_buf(),
        position: 0,
        reason: reason.into(),
    })
}

/// The contents of the `raft-state` file (layout in the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersistentState {
    /// Raft's term, vote and commit index. The commit index on disk may lag (see
    /// [`PartitionRaftStorage::set_hard_state`]).
    pub hard_state: HardState,
    /// The configuration after applying every entry up to `applied`.
    pub conf_state: ConfState,
    /// The entry whose application produced `conf_state` (0 for the bootstrap configuration, the
    /// snapshot index for one installed by a snapshot).
    pub conf_index: RaftIndex,
    /// Every entry up to here has been applied.
    pub applied: RaftIndex,
    /// A snapshot install in progress: the log must be reset to this start before use.
    pub pending_log_start: Option<LogStart>,
    /// Earlier configurations, oldest first, each with the index of the entry that produced it:
    /// the one valid at the log start and every later one (a snapshot describes the log start).
    pub history: Vec<(RaftIndex, ConfState)>,
}

fn put_lists(b: &mut Vec<u8>, cs: &ConfState, dir: &Path) -> Result<(), Error> {
    for list in [&cs.voters, &cs.learners, &cs.voters_outgoing, &cs.learners_next] {
        let n = u32::try_from(list.len()).map_err(|_| Error::InvalidState {
            dir: dir.to_path_buf(),
            reason: format!("configuration list of {} members", list.len()),
        })?;
        b.extend_from_slice(&n.to_be_bytes());
        for id in list {
            b.extend_from_slice(&id.to_be_bytes());
        }
    }
    Ok(())
}

impl PersistentState {
    /// The configuration valid at `index` (the newest one produced at or before it), if known.
    pub fn conf_at(&self, index: u64) -> Option<&ConfState> {
        if self.conf_index.0 <= index {
            return Some(&self.conf_state);
        }
        self.history.iter().rev().find(|(i, _)| i.0 <= index).map(|(_, cs)| cs)
    }

    /// Makes `conf_state`, produced by the entry at `index`, the current configuration, keeping
    /// the previous one in the history; drops history entries superseded at or below `floor`
    /// (the log start - 1: no snapshot can describe an earlier index).
    fn push_conf(&mut self, conf_state: ConfState, index: RaftIndex, floor: u64) {
        let previous = std::mem::replace(&mut self.conf_state, conf_state);
        let previous_index = std::mem::replace(&mut self.conf_index, index);
        self.history.push((previous_index, previous));
        self.prune_history(floor);
    }

    /// Drops configurations no snapshot at or above `floor` can need.
    fn prune_history(&mut self, floor: u64) {
        // The newest configuration produced at or before the floor is still valid there.
        let keep_from = if self.conf_index.0 <= floor {
            self.history.len()
        } else {
            self.history.iter().rposition(|(i, _)| i.0 <= floor).unwrap_or(0)
        };
        self.history.drain(..keep_from);
        if self.history.len() > MAX_HISTORY {
            let excess = self.history.len() - MAX_HISTORY;
            self.history.drain(..excess);
        }
    }

    /// Encodes the payload of the `raft-state` file.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if an id list has more than `u32::MAX` members.
    pub fn encode(&self, dir: &Path) -> Result<Vec<u8>, Error> {
        let cs = &self.conf_state;
        let lists = [&cs.voters, &cs.learners, &cs.voters_outgoing, &cs.learners_next];
        let ids: usize = lists.iter().map(|l| l.len()).sum();
        let mut b = Vec::with_capacity(STATE_FIXED_LEN + 4 * lists.len() + 8 * ids);
        b.push(STATE_VERSION);
        let hs = &self.hard_state;
        for v in [hs.term, hs.vote, hs.commit, self.applied.0, self.conf_index.0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let mut flags = 0;
        if cs.auto_leave {
            flags |= FLAG_AUTO_LEAVE;
        }
        if self.pending_log_start.is_some() {
            flags |= FLAG_PENDING_LOG_START;
        }
        b.push(flags);
        let p = self.pending_log_start.unwrap_or(LogStart {
            offset: Offset(0),
            index: RaftIndex(0),
            prev_term: RaftTerm(0),
        });
        for v in [p.offset.0, p.index.0, p.prev_term.0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        debug_assert_eq!(b.len(), STATE_FIXED_LEN);
        put_lists(&mut b, cs, dir)?;
        b.extend_from_slice(&(self.history.len() as u32).to_be_bytes());
        for (index, cs) in &self.history {
            b.extend_from_slice(&index.0.to_be_bytes());
            b.push(if cs.auto_leave { FLAG_AUTO_LEAVE } else { 0 });
            put_lists(&mut b, cs, dir)?;
        }
        Ok(b)
    }

    /// Decodes and checks the payload of the `raft-state` file at `path`.
    ///
    /// # Errors
    /// [`Error::Storage`] with [`strata_storage::Error::Corruption`] for anything malformed.
    pub fn decode(payload: &[u8], path: &Path) -> Result<Self, Error> {
        let mut r = Reader { buf: payload, pos: 0 };
        let truncated = |what: &str, at: usize| corrupt(path, format!("raft-state truncated in {what} at byte {at}"));
        let version = r.u8().ok_or_else(|| truncated("version", 0))?;
        if version != STATE_VERSION && version != STATE_VERSION_1 {
            return Err(corrupt(path, format!("raft-state layout version {version} is unknown")));
        }
        let mut fixed = [0u64; 5];
        for v in &mut fixed {
            *v = r.u64().ok_or_else(|| truncated("header", r.pos))?;
        }
        let [term, vote, commit, applied, conf_index] = fixed;
        let flags = r.u8().ok_or_else(|| truncated("flags", r.pos))?;
        if flags & !(FLAG_AUTO_LEAVE | FLAG_PENDING_LOG_START) != 0 {
            return Err(corrupt(path, format!("raft-state has unknown flags {flags:#04x}")));
        }
        let mut pending = [0u64; 3];
        for v in &mut pending {
            *v = r.u64().ok_or_else(|| truncated("pending log start", r.pos))?;
        }
        let pending_log_start = if flags & FLAG_PENDING_LOG_START != 0 {
            if pending[1] == 0 {
                return Err(corrupt(path, "raft-state pending log start has index 0"));
            }
            Some(LogStart {
                offset: Offset(pending[0]),
                index: RaftIndex(pending[1]),
                prev_term: RaftTerm(pending[2]),
            })
        } else {
            None
        };
        let read_conf = |r: &mut Reader<'_>, auto_leave: bool| -> Result<ConfState, Error> {
            let mut lists: [Vec<u64>; 4] = Default::default();
            for list in &mut lists {
                let n = r.u32().ok_or_else(|| truncated("id list length", r.pos))? as usize;
                // Never size an allocation from a stored count without checking the bytes exist.
                if n > r.remaining() / 8 {
                    return Err(corrupt(
                        path,
                        format!("raft-state id list of {n} members is longer than the file"),
                    ));
                }
                list.reserve_exact(n);
                for _ in 0..n {
                    list.push(r.u64().ok_or_else(|| truncated("id list", r.pos))?);
                }
            }
            let [voters, learners, voters_outgoing, learners_next] = lists;
            Ok(ConfState {
                voters,
                learners,
                voters_outgoing,
                learners_next,
                auto_leave,
                ..ConfState::default()
            })
        };
        let conf_state = read_conf(&mut r, flags & FLAG_AUTO_LEAVE != 0)?;
        let mut history = Vec::new();
        if version == STATE_VERSION {
            let n = r.u32().ok_or_else(|| truncated("history length", r.pos))? as usize;
            // Each takes at least 25 bytes.
            if n > r.remaining() / 25 || n > MAX_HISTORY {
                return Err(corrupt(path, format!("raft-state history of {n} configurations")));
            }
            let mut prev = 0;
            for _ in 0..n {
                let index = r.u64().ok_or_else(|| truncated("history index", r.pos))?;
                let f = r.u8().ok_or_else(|| truncated("history flags", r.pos))?;
                if f & !FLAG_AUTO_LEAVE != 0 || index < prev || index > conf_index {
                    return Err(corrupt(
                        path,
                        format!("raft-state history entry at index {index} is malformed"),
                    ));
                }
                prev = index;
                history.push((RaftIndex(index), read_conf(&mut r, f & FLAG_AUTO_LEAVE != 0)?));
            }
        }
        if r.remaining() != 0 {
            return Err(corrupt(
                path,
                format!("raft-state has {} trailing bytes", r.remaining()),
            ));
        }
        if conf_index > applied || applied > commit {
            return Err(corrupt(
                path,
                format!("raft-state breaks conf_index {conf_index} <= applied {applied} <= commit {commit}"),
            ));
        }
        Ok(Self {
            hard_state: HardState {
                term,
                vote,
                commit,
                ..HardState::default()
            },
            conf_state,
            conf_index: RaftIndex(conf_index),
            applied: RaftIndex(applied),
            pending_log_start,
            history,
        })
    }
}

/// A bounds-checked big-endian reader over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.pos.checked_add(N)?;
        let bytes: [u8; N] = self.buf.get(self.pos..end)?.try_into().ok()?;
        self.pos = end;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_be_bytes)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// Converts a Raft entry to the batch that stores it (see the module docs' table). A data
/// entry's CRC is checked unless it is this process's `own` proposal; its records are not walked
/// again (the leader's request handler did: [`RecordBatch::revalidate`], [`RecordBatch::rewrap`]).
fn entry_to_batch(e: &Entry, limits: &BatchLimits, own: bool) -> Result<RecordBatch, Error> {
    let invalid = |reason: String| Error::InvalidEntry {
        index: e.index,
        term: e.term,
        reason,
    };
    if !e.context.is_empty() {
        return Err(invalid("entry context is not stored (Strata never sets it)".into()));
    }
    let control = match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => ControlType::Noop,
        EntryType::EntryNormal => {
            let batch = if own {
                RecordBatch::rewrap(e.data.clone(), limits)
            } else {
                RecordBatch::revalidate(e.data.clone(), limits)
            }
            .map_err(|err| invalid(format!("data is not a valid record batch: {err}")))?;
            if batch.header().is_control() {
                // Read back, it would turn into a no-op or a conf change: refuse it.
                return Err(invalid(
                    "a normal entry must carry a data batch, not a control batch".into(),
                ));
            }
            return Ok(batch);
        }
        EntryType::EntryConfChange => ControlType::RaftConfChange,
        EntryType::EntryConfChangeV2 => ControlType::RaftConfChangeV2,
    };
    let bytes = control_batch(control, &e.data, CONTROL_TIMESTAMP)
        .map_err(|err| invalid(format!("cannot encode control batch: {err}")))?;
    RecordBatch::validate(bytes, limits).map_err(|err| invalid(format!("control batch rejected: {err}")))
}

/// Whether raft-rs reads entries to hand them out as committed (`GenReady`) or to look for
/// pending configuration changes (`TransferLeader`, `CommitByVote`) — never to send them. Its
/// context's kind is crate-private, so this reads its `Debug` form (raft is pinned at 0.7; an
/// unrecognised form reads whole entries, which is always correct).
fn reads_for_apply(context: &GetEntriesContext) -> bool {
    // Reads to send (the hot path) can be fetched asynchronously; those for applying cannot.
    !context.can_async()
        && matches!(
            format!("{context:?}").as_str(),
            "GetEntriesContext(GenReady)" | "GetEntriesContext(TransferLeader)" | "GetEntriesContext(CommitByVote)"
        )
}

/// Rebuilds the Raft entry a stored batch holds.
fn batch_to_entry(b: StoredBatch, dir: &Path) -> Result<Entry, Error> {
    let h = b.header;
    if !h.is_control() {
        return Ok(Entry {
            entry_type: EntryType::EntryNormal,
            term: h.raft_term.0,
            index: h.raft_index.0,
            data: b.bytes,
            ..Entry::default()
        });
    }
    let bad = |reason: &str| corrupt(dir, format!("raft entry {}: {reason}", h.raft_index));
    let control = b
        .bytes
        .get(HEADER_LEN..HEADER_LEN + CONTROL_TYPE_LEN)
        .and_then(|s| <[u8; CONTROL_TYPE_LEN]>::try_from(s).ok())
        .and_then(|t| ControlType::from_u16(u16::from_be_bytes(t)))
        .ok_or_else(|| bad("control batch without a known control type"))?;
    // The get() above proved the batch is at least this long.
    let payload = b.bytes.slice(HEADER_LEN + CONTROL_TYPE_LEN..);
    let (ty, data) = match control {
        ControlType::Noop if payload.is_empty() => (EntryType::EntryNormal, Bytes::new()),
        ControlType::Noop => return Err(bad("no-op control batch with a payload")),
        ControlType::RaftConfChange => (EntryType::EntryConfChange, payload),
        ControlType::RaftConfChangeV2 => (EntryType::EntryConfChangeV2, payload),
    };
    Ok(Entry {
        entry_type: ty,
        term: h.raft_term.0,
        index: h.raft_index.0,
        data,
        ..Entry::default()
    })
}

/// Parses the log start a snapshot describes.
fn snapshot_log_start(snap: &Snapshot) -> Result<LogStart, Error> {
    let meta = snap.get_metadata();
    let invalid = |reason: String| Error::InvalidSnapshot {
        index: meta.index,
        reason,
    };
    let offset: [u8; SNAPSHOT_DATA_LEN] = snap
        .data
        .get(..SNAPSHOT_DATA_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            invalid(format!(
                "data must start with the {SNAPSHOT_DATA_LEN}-byte log start offset, got {} bytes",
                snap.data.len()
            ))
        })?;
    if meta.index == 0 {
        return Err(invalid("index 0".into()));
    }
    let index = meta
        .index
        .checked_add(1)
        .ok_or_else(|| invalid("index overflows".into()))?;
    Ok(LogStart {
        offset: Offset(u64::from_be_bytes(offset)),
        index: RaftIndex(index),
        prev_term: RaftTerm(meta.term),
    })
}

#[derive(Debug)]
struct Inner {
    log: PartitionLog,
    /// The latest state; equal to the file except (while `state_dirty`) commit and applied.
    state: PersistentState,
    state_dirty: bool,
    limits: BatchLimits,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state_path: PathBuf,
    inner: RwLock<Inner>,
    /// State beyond the log that snapshots carry: (the index it is as of, its bytes).
    snapshot_state: std::sync::Mutex<Option<(u64, Bytes)>>,
    /// Whether applying a committed entry reads its data (the metadata log's commands): if
    /// not, Raft's reads for applying get headers only.
    apply_reads_data: std::sync::atomic::AtomicBool,
}

/// A partition's Raft storage: its segment log plus the `raft-state` file. A cloneable handle;
/// see the module docs for the mapping and the durability order.
#[derive(Debug, Clone)]
pub struct PartitionRaftStorage {
    shared: Arc<Shared>,
}

impl PartitionRaftStorage {
    /// Opens (or creates) the partition's log in `dir` with recovery, and its `raft-state`.
    /// Completes an interrupted snapshot install, then reconciles the state with the log: a
    /// commit index past the end of the log (possible only if the log lost a synced tail or was
    /// never synced, i.e. flush policy `never`/`interval`) is lowered to the last index with a
    /// warning; commit and applied are raised to the log start - 1.
    ///
    /// `limits` bound the batches accepted from Raft entries.
    ///
    /// # Errors
    /// [`Error::Storage`]: the log's open errors; a damaged `raft-state`; a `raft-state` missing
    /// while the log has entries, or whose applied index is past the end of the log (the
    /// configuration would not match the log) — both reported as corruption.
    pub fn open(dir: impl AsRef<Path>, cfg: LogConfig, limits: BatchLimits) -> Result<(Self, RecoveryReport), Error> {
        let dir = dir.as_ref().to_path_buf();
        let (mut log, report) = PartitionLog::open(&dir, cfg)?;
        let state_path = dir.join(RAFT_STATE_FILE);
        durable::remove_stale_tmp(&state_path);
        let mut state = match durable::read(&state_path)? {
            Some(payload) => PersistentState::decode(&payload, &state_path)?,
            None => {
                // The state is written before the first entry (initialize, or a snapshot's
                // pending start): entries without it mean the file was lost, and with it the
                // vote — starting over could vote twice in a term.
                if log.last_index() >= log.first_index() || log.first_index() != RaftIndex(1) {
                    return Err(corrupt(
                        &state_path,
                        format!(
                            "missing, but the log holds raft entries {}..={}",
                            log.first_index(),
                            log.last_index()
                        ),
                    ));
                }
                PersistentState::default()
            }
        };
        let mut state_dirty = false;
        if let Some(start) = state.pending_log_start {
            tracing::warn!(dir = %dir.display(), index = %start.index, offset = %start.offset, "completing an interrupted snapshot install");
            log.reset(start)?;
            state.pending_log_start = None;
            durable::write_atomic(&state_path, &state.encode(&dir)?)?;
        }
        let first = log.first_index().0;
        let last = log.last_index().0;
        if state.applied.0 > last {
            return Err(corrupt(
                &state_path,
                format!(
                    "applied index {} (configuration of index {}) is past the end of the log ({last})",
                    state.applied, state.conf_index
                ),
            ));
        }
        let commit = state.hard_state.commit;
        if commit > last {
            tracing::warn!(dir = %dir.display(), commit, last_index = last, "commit index past the end of the log; the log lost a tail");
            state.hard_state.commit = last;
            state_dirty = true;
        }
        // Everything below the log start was committed and applied: compaction is bounded by the
        // applied index, and any conf change applied there was written with its index.
        let floor = first - 1;
        if state.hard_state.commit < floor {
            state.hard_state.commit = floor;
            state_dirty = true;
        }
        if state.applied.0 < floor {
            state.applied = RaftIndex(floor);
            state_dirty = true;
        }
        let storage = Self {
            shared: Arc::new(Shared {
                dir,
                state_path,
                inner: RwLock::new(Inner {
                    log,
                    state,
                    state_dirty,
                    limits,
                }),
                snapshot_state: std::sync::Mutex::new(None),
                apply_reads_data: std::sync::atomic::AtomicBool::new(true),
            }),
        };
        Ok((storage, report))
    }

    /// Whether applying a committed entry needs its data (`true` until said otherwise): a
    /// partition whose applying looks only at configuration changes says `false`, and Raft's
    /// reads of entries to apply then skip data batches' records.
    ///
    /// raft-rs subtracts applied entries' data sizes from its count of uncommitted bytes, which
    /// header-only entries would leave too high: `max_uncommitted_size` must stay unset (no
    /// limit, as the driver configures it) while this is `false`.
    pub fn set_apply_reads_data(&self, reads: bool) {
        self.shared
            .apply_reads_data
            .store(reads, std::sync::atomic::Ordering::Relaxed);
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Inner>, Error> {
        self.shared.inner.read().map_err(|_| Error::Poisoned {
            dir: self.shared.dir.clone(),
        })
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Inner>, Error> {
        self.shared.inner.write().map_err(|_| Error::Poisoned {
            dir: self.shared.dir.clone(),
        })
    }

    fn invalid_state(&self, reason: String) -> Error {
        Error::InvalidState {
            dir: self.shared.dir.clone(),
            reason,
        }
    }

    /// Writes `next` durably, then makes it the current state (so a failed write changes
    /// nothing in memory).
    fn store_state(&self, inner: &mut Inner, mut next: PersistentState) -> Result<(), Error> {
        // An applied entry is committed; Raft refuses to restart with applied > commit.
        next.hard_state.commit = next.hard_state.commit.max(next.applied.0);
        // Never record a commit index past the durable log: after a power loss the log could
        // come back with a stale tail (an unsynced truncation undone) that the recorded commit
        // would then claim as committed. Raft re-learns a lower commit from the leader.
        // (Only the file's copy is lowered: in memory the commit stays what Raft said.)
        let durable_last = inner.log.durable_index().0.saturating_sub(1);
        // Likewise `applied`, which with flush policies other than `always` may run ahead of the
        // durable log (never below the configuration's own index, which is synced with it).
        let mut on_disk = next.clone();
        on_disk.applied = RaftIndex(on_disk.applied.0.min(durable_last.max(on_disk.conf_index.0)));
        on_disk.hard_state.commit = on_disk.hard_state.commit.min(durable_last.max(on_disk.applied.0));
        durable::write_atomic(&self.shared.state_path, &on_disk.encode(&self.shared.dir)?)?;
        inner.state = next;
        inner.state_dirty = false;
        Ok(())
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A copy of the current state (commit and applied may be ahead of the file).
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn state(&self) -> Result<PersistentState, Error> {
        Ok(self.read()?.state.clone())
    }

    /// The index of the entry whose configuration is the current one (0: the initial one).
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn conf_index(&self) -> Result<u64, Error> {
        Ok(self.read()?.state.conf_index.0)
    }

    /// Whether a configuration is set (by [`initialize`](Self::initialize) or a snapshot).
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn is_initialized(&self) -> Result<bool, Error> {
        Ok(self.read()?.state.conf_state != ConfState::default())
    }

    /// The applied index to start Raft with: pass it as `raft::Config::applied`.
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn applied(&self) -> Result<u64, Error> {
        Ok(self.read()?.state.applied.0)
    }

    /// Runs `f` with the log, read-only (e.g. to serve a fetch by offset). Holds the read lock
    /// meanwhile: keep `f` short.
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn with_log<R>(&self, f: impl FnOnce(&PartitionLog) -> R) -> Result<R, Error> {
        Ok(f(&self.read()?.log))
    }

    /// Bootstraps a new replica with its group's initial configuration (every replica of a
    /// group must be given the same one). Durable on return.
    ///
    /// # Errors
    /// [`Error::AlreadyInitialized`] if a configuration is set or the log is not empty at index
    /// 1; [`Error::InvalidState`] for a configuration without voters; [`Error::Storage`].
    pub fn initialize(&self, conf_state: ConfState) -> Result<(), Error> {
        let mut inner = self.write()?;
        if inner.state.conf_state != ConfState::default()
            || inner.log.first_index() != RaftIndex(1)
            || inner.log.last_index() != RaftIndex(0)
        {
            return Err(Error::AlreadyInitialized {
                dir: self.shared.dir.clone(),
            });
        }
        if conf_state.voters.is_empty() {
            return Err(self.invalid_state("an initial configuration needs at least one voter".into()));
        }
        let mut next = inner.state.clone();
        next.conf_state = conf_state;
        self.store_state(&mut inner, next)
    }

    /// Appends `Ready::entries()` to the log (step 4): one batch per entry, written but not
    /// synced. If the first entry's index is at or below the last index — a new leader replacing
    /// a conflicting suffix — the log is truncated there first. Every entry is converted and
    /// validated before anything is written. Returns where each batch went (its record offsets).
    ///
    /// # Errors
    /// [`Error::InvalidEntry`] for an entry that cannot be a batch or entries that are not
    /// contiguous; [`Error::InvalidState`] if the append would truncate a committed entry;
    /// [`Error::Storage`] (e.g. [`strata_storage::Error::NonContiguous`] for a gap after the
    /// last index, [`strata_storage::Error::Compacted`] below the log start, I/O).
    pub fn append_entries(&self, entries: &[Entry]) -> Result<Vec<AppendInfo>, Error> {
        self.append_entries_of(entries, None)
    }

    /// [`append_entries`](Self::append_entries) on the leader of `own_term`: the data entries of
    /// that term are its own proposals, which the request handler validated whole, so only their
    /// framing is checked again. Entries of any other term (a follower's appends) have their
    /// framing and CRC checked; their records were walked by the leader that proposed them.
    ///
    /// # Errors
    /// As [`append_entries`](Self::append_entries).
    pub fn append_entries_of(&self, entries: &[Entry], own_term: Option<u64>) -> Result<Vec<AppendInfo>, Error> {
        let Some(first) = entries.first() else {
            return Ok(Vec::new());
        };
        let limits = self.read()?.limits;
        let mut batches = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let expected = first.index.checked_add(i as u64);
            if Some(e.index) != expected {
                return Err(Error::InvalidEntry {
                    index: e.index,
                    term: e.term,
                    reason: format!("entries are not contiguous: expected index {expected:?}"),
                });
            }
            // Checksums cost time; check them before taking the write lock.
            batches.push(entry_to_batch(e, &limits, own_term == Some(e.term))?);
        }
        let mut inner = self.write()?;
        if first.index <= inner.log.last_index().0 {
            if first.index <= inner.state.hard_state.commit {
                return Err(self.invalid_state(format!(
                    "appending at index {} would truncate committed entries (commit {})",
                    first.index, inner.state.hard_state.commit
                )));
            }
            inner.log.truncate_to(RaftIndex(first.index))?;
        }
        let mut infos = Vec::with_capacity(entries.len());
        for (e, batch) in entries.iter().zip(&batches) {
            infos.push(inner.log.append(batch, RaftTerm(e.term), RaftIndex(e.index))?);
        }
        Ok(infos)
    }

    /// Records `Ready::hs()` (step 6). A new term or vote is written durably before this returns
    /// (true); a change of the commit index alone is kept in memory (false) and reaches the file
    /// with the next write or [`flush_state`](Self::flush_state) — raft-rs's `Ready::must_sync`
    /// allows this, and a restart with an older commit index only re-learns it. A durable
    /// write includes the commit index: sync the log first where that commit could exceed the
    /// durable log (it cannot on a single voter, whose term changes only at a campaign).
    ///
    /// # Errors
    /// [`Error::InvalidState`] if the commit index is past the end of the log (append the
    /// `Ready`'s entries first); [`Error::Storage`].
    pub fn set_hard_state(&self, hs: &HardState) -> Result<bool, Error> {
        let mut inner = self.write()?;
        let last = inner.log.last_index().0;
        if hs.commit > last {
            return Err(self.invalid_state(format!("commit index {} is past the last index {last}", hs.commit)));
        }
        let cur = &inner.state.hard_state;
        let commit = hs.commit.max(cur.commit);
        if hs.term == cur.term && hs.vote == cur.vote {
            if commit != cur.commit {
                inner.state.hard_state.commit = commit;
                inner.state_dirty = true;
            }
            return Ok(false);
        }
        let mut next = inner.state.clone();
        next.hard_state.term = hs.term;
        next.hard_state.vote = hs.vote;
        next.hard_state.commit = commit;
        self.store_state(&mut inner, next)?;
        Ok(true)
    }

    /// Records `LightReady::commit_index()` (step 8), in memory like a commit-only
    /// [`set_hard_state`](Self::set_hard_state).
    ///
    /// # Errors
    /// [`Error::InvalidState`] if `commit` is past the end of the log; [`Error::Poisoned`].
    pub fn set_commit(&self, commit: u64) -> Result<(), Error> {
        let mut inner = self.write()?;
        let last = inner.log.last_index().0;
        if commit > last {
            return Err(self.invalid_state(format!("commit index {commit} is past the last index {last}")));
        }
        if commit > inner.state.hard_state.commit {
            inner.state.hard_state.commit = commit;
            inner.state_dirty = true;
        }
        Ok(())
    }

    /// Records that every entry up to `index` has been applied (after handling a batch of
    /// committed entries; steps 3 and 8). Kept in memory; reaches the file with the next write.
    /// Raises the commit index to `index` if needed (a committed entry may be handed over before
    /// the hard state carrying its commit index is recorded).
    ///
    /// # Errors
    /// [`Error::InvalidState`] if `index` is past the end of the log; [`Error::Poisoned`].
    pub fn set_applied(&self, index: u64) -> Result<(), Error> {
        let mut inner = self.write()?;
        let last = inner.log.last_index().0;
        if index > last {
            return Err(self.invalid_state(format!("applied index {index} is past the last index {last}")));
        }
        if index > inner.state.applied.0 {
            inner.state.applied = RaftIndex(index);
            inner.state.hard_state.commit = inner.state.hard_state.commit.max(index);
            inner.state_dirty = true;
        }
        Ok(())
    }

    /// Records the configuration produced by applying the conf change at `index`
    /// (`RawNode::apply_conf_change`'s result). Durable on return, with applied = `index`: call
    /// it as each conf change is applied, in order, and [`set_applied`](Self::set_applied) after
    /// the batch.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if `index` is past the end of the log or below the current
    /// configuration's index; [`Error::Storage`].
    pub fn set_conf_state(&self, conf_state: ConfState, index: u64) -> Result<(), Error> {
        let mut inner = self.write()?;
        let last = inner.log.last_index().0;
        if index > last || index < inner.state.conf_index.0 {
            return Err(self.invalid_state(format!(
                "configuration of index {index} outside [{}, {last}]",
                inner.state.conf_index
            )));
        }
        let floor = inner.log.first_index().0 - 1;
        let mut next = inner.state.clone();
        next.push_conf(conf_state, RaftIndex(index), floor);
        next.applied = RaftIndex(index);
        next.hard_state.commit = next.hard_state.commit.max(index);
        self.store_state(&mut inner, next)
    }

    /// Installs a snapshot from `Ready::snapshot()` (step 2): the log is reset to the start the
    /// snapshot describes and the configuration, commit and applied index become the
    /// snapshot's. Durable on return. Crash-safe: the new state, with the pending log start, is
    /// written first; the log is reset; the pending mark is cleared. An open that finds the mark
    /// redoes the reset (nothing can have been appended after it).
    ///
    /// # Errors
    /// [`Error::InvalidSnapshot`] (data not an 8-byte offset, index 0): nothing changed;
    /// [`Error::SnapshotOutOfDate`] if the snapshot is older than the log start;
    /// [`Error::Storage`].
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<(), Error> {
        let start = snapshot_log_start(snap)?;
        let meta = snap.get_metadata();
        let mut inner = self.write()?;
        let first = inner.log.first_index();
        if start.index < first {
            return Err(Error::SnapshotOutOfDate {
                index: meta.index,
                first_index: first.0,
            });
        }
        let mut next = inner.state.clone();
        next.hard_state.term = next.hard_state.term.max(meta.term);
        next.hard_state.commit = next.hard_state.commit.max(meta.index);
        next.conf_state = meta.get_conf_state().clone();
        next.conf_index = RaftIndex(meta.index);
        next.history.clear();
        next.applied = RaftIndex(meta.index);
        next.pending_log_start = Some(start);
        self.store_state(&mut inner, next)?;
        inner.log.reset(start)?;
        let mut done = inner.state.clone();
        done.pending_log_start = None;
        self.store_state(&mut inner, done)?;
        tracing::info!(dir = %self.shared.dir.display(), index = %start.index, offset = %start.offset, "installed snapshot: log reset to a new start");
        Ok(())
    }

    /// Attaches the group's own state as of entry `index` (applied, and durable elsewhere) to
    /// the snapshots this storage gives: a lagging follower then gets the state with the log
    /// from `index + 1` (see the module docs). Compact only below `index + 1` afterwards.
    pub fn set_snapshot_state(&self, index: u64, state: Bytes) {
        *self.shared.snapshot_state.lock().unwrap_or_else(|e| e.into_inner()) = Some((index, state));
    }

    /// Writes the commit and applied index to `raft-state` if they moved since the last write.
    /// Call it on shutdown, and now and then to bound how much Raft re-delivers after a crash.
    /// Returns whether it wrote.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Poisoned`].
    pub fn flush_state(&self) -> Result<bool, Error> {
        let mut inner = self.write()?;
        if !inner.state_dirty {
            return Ok(false);
        }
        let next = inner.state.clone();
        self.store_state(&mut inner, next)?;
        Ok(true)
    }

    /// Captures the fsync that makes every appended entry durable, or `None` if they are (step
    /// 5). Run the job on any thread, without holding anything, then pass its result to
    /// [`complete_sync`](Self::complete_sync).
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn begin_sync(&self) -> Result<Option<SyncJob>, Error> {
        Ok(self.write()?.log.begin_sync())
    }

    /// Records a finished [`SyncJob`] and returns the new durable index (every entry below it is
    /// durable).
    ///
    /// # Errors
    /// The job's error (which fails the log until it is reopened); [`Error::Poisoned`].
    pub fn complete_sync(&self, done: strata_storage::Result<SyncDone>) -> Result<RaftIndex, Error> {
        Ok(self.write()?.log.complete_sync(done)?)
    }

    /// Syncs every appended entry on the calling thread (the lock is not held during the fsync).
    ///
    /// # Errors
    /// As [`begin_sync`](Self::begin_sync) and [`complete_sync`](Self::complete_sync).
    pub fn sync(&self) -> Result<RaftIndex, Error> {
        match self.begin_sync()? {
            Some(job) => {
                let done = job.run();
                self.complete_sync(done)
            }
            None => self.durable_index(),
        }
    }

    /// Whether the flush policy wants a sync now, and whether anything is not yet durable (one
    /// look under one lock).
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn sync_state(&self) -> Result<(bool, bool), Error> {
        let inner = self.read()?;
        Ok((inner.log.sync_due(), inner.log.has_unsynced()))
    }

    /// Every entry below this index is durable.
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn durable_index(&self) -> Result<RaftIndex, Error> {
        Ok(self.read()?.log.durable_index())
    }

    /// Syncs the log and writes the state if it moved: a clean shutdown.
    ///
    /// # Errors
    /// As [`sync`](Self::sync) and [`flush_state`](Self::flush_state).
    pub fn flush(&self) -> Result<(), Error> {
        self.sync()?;
        self.flush_state()?;
        Ok(())
    }

    /// Deletes whole sealed segments below `bound` (explicit compaction; retention will do the
    /// same by size and age). The bound is lowered to the applied index + 1: entries not yet
    /// applied — possibly conf changes — must stay, and the snapshot a lagging follower gets
    /// must be describable by the applied configuration.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Poisoned`].
    pub fn compact(&self, bound: RaftIndex) -> Result<RetentionReport, Error> {
        let mut inner = self.write()?;
        let bound = bound.min(RaftIndex(inner.state.applied.0 + 1));
        Ok(inner.log.delete_segments_below(bound)?)
    }

    /// Applies size and age retention ([`PartitionLog::apply_retention`]) with the bound at the
    /// applied index + 1, for the reasons given at [`compact`](Self::compact).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Poisoned`].
    pub fn apply_retention(&self, retention: &Retention) -> Result<RetentionReport, Error> {
        let mut inner = self.write()?;
        let bound = RaftIndex(inner.state.applied.0 + 1);
        Ok(inner.log.apply_retention(bound, retention)?)
    }
}

impl Storage for PartitionRaftStorage {
    fn initial_state(&self) -> ::raft::Result<RaftState> {
        let inner = self.read()?;
        Ok(RaftState::new(
            inner.state.hard_state.clone(),
            inner.state.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> ::raft::Result<Vec<Entry>> {
        let max_bytes = max_size
            .into()
            .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        let inner = self.read()?;
        // Committed entries handed out to apply, and Raft's own scans for pending configuration
        // changes, need each entry's kind but not a data batch's records: reading those back
        // (copy, CRC, parse) cost a tenth of the driver thread.
        let headers_only =
            !self.shared.apply_reads_data.load(std::sync::atomic::Ordering::Relaxed) && reads_for_apply(&context);
        // The log returns at least one entry whatever `max_bytes` is, as raft-rs requires.
        let batches = if headers_only {
            inner.log.entry_headers(RaftIndex(low), RaftIndex(high), max_bytes)
        } else {
            inner.log.entries(RaftIndex(low), RaftIndex(high), max_bytes)
        }
        .map_err(raft_err)?;
        batches
            .into_iter()
            .map(|b| batch_to_entry(b, &self.shared.dir).map_err(::raft::Error::from))
            .collect()
    }

    fn term(&self, idx: u64) -> ::raft::Result<u64> {
        Ok(self.read()?.log.term(RaftIndex(idx)).map_err(raft_err)?.0)
    }

    fn first_index(&self) -> ::raft::Result<u64> {
        Ok(self.read()?.log.first_index().0)
    }

    fn last_index(&self) -> ::raft::Result<u64> {
        Ok(self.read()?.log.last_index().0)
    }

    fn snapshot(&self, _request_index: u64, to: u64) -> ::raft::Result<Snapshot> {
        let attached = self
            .shared
            .snapshot_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let inner = self.read()?;
        let log = &inner.log;
        let start = log.log_start();
        let floor = start.index.0 - 1;
        // (`request_index` asks for a snapshot at least that new; Strata never requests one.)
        let unavailable = || ::raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        // With attached state, the snapshot is as of that state (never below the log start).
        let (index, state) = match attached {
            Some((i, state)) if i >= floor => (i, Some(state)),
            _ => (floor, None),
        };
        if index == 0 || index > inner.state.applied.0 {
            return Err(unavailable());
        }
        let mut conf = inner.state.conf_at(index).ok_or_else(unavailable)?.clone();
        let named = conf
            .voters
            .iter()
            .chain(&conf.learners)
            .chain(&conf.voters_outgoing)
            .chain(&conf.learners_next)
            .any(|&id| id == to);
        if !named && to != 0 {
            conf.learners.push(to);
        }
        let (term, offset) = if index == floor {
            (start.prev_term.0, start.offset)
        } else {
            let batches = log
                .entry_headers(RaftIndex(index), RaftIndex(index + 1), 0)
                .map_err(raft_err)?;
            let b = batches.first().ok_or_else(unavailable)?;
            (b.header.raft_term.0, b.header.next_offset())
        };
        let mut data = Vec::with_capacity(SNAPSHOT_DATA_LEN + state.as_ref().map_or(0, Bytes::len));
        data.extend_from_slice(&offset.0.to_be_bytes());
        if let Some(state) = &state {
            data.extend_from_slice(state);
        }
        let mut snap = Snapshot {
            data: Bytes::from(data),
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf);
        Ok(snap)
    }
}

#[cfg(test)]
mod tests;
