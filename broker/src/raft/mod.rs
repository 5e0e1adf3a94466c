//! Raft for partitions: each partition is one Raft group (tikv `raft` crate, `RawNode`), and its
//! segment log is the Raft log.
//!
//! - [`storage`]: [`PartitionRaftStorage`], the `raft::Storage` implementation over a
//!   [`strata_storage::PartitionLog`] plus the small `raft-state` file, and the methods the Raft
//!   driver calls to persist a `Ready` (append, hard state, configuration, snapshot, group-commit
//!   sync).
//!
//! Not here yet: the per-broker driver that ticks every group, drains their `Ready`s in batches
//! and syncs all dirty partitions of a cycle at once, and the peer transport.

pub mod storage;

pub use storage::{PartitionRaftStorage, PersistentState, RAFT_STATE_FILE};
