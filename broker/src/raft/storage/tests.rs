//! Tests of the Raft storage adapter: the mapping read back through `Storage`, conflict
//! truncation, snapshots, the state file, and a single-node `RawNode` driven over the segment
//! log through a restart.

use std::path::Path;

use ::raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, SnapshotMetadata};
use ::raft::{Config, RawNode, StateRole};
use protobuf::Message as _;
use strata_protocol::batch::BROKER_FIELDS_LEN;
use strata_protocol::{BatchBuilder, BatchHeader, BatchOptions};

use super::*;

fn log_config() -> LogConfig {
    // Tiny segments and a dense index so rolling and cross-segment reads happen all the time.
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 64,
        index_max_bytes: 4096,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionRaftStorage {
    PartitionRaftStorage::open(dir, log_config(), BatchLimits::default())
        .expect("open")
        .0
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState::from((ids.to_vec(), Vec::<u64>::new()))
}

/// A data batch of `records` records whose values name `tag`.
fn data_batch(tag: u64, records: u32) -> Bytes {
    let mut b = BatchBuilder::new(BatchOptions::default());
    for r in 0..records {
        // Padded so that the tiny test segments roll every few batches.
        let value = format!("batch {tag} record {r} {:>80}", "");
        b.append(1_700_000_000_000 + i64::from(r), None, Some(value.as_bytes()), &[])
            .expect("append record");
    }
    b.finish().expect("finish batch")
}

fn entry(ty: EntryType, term: u64, index: u64, data: Bytes) -> Entry {
    let mut e = Entry::default();
    e.set_entry_type(ty);
    e.term = term;
    e.index = index;
    e.data = data;
    e
}

fn data_entry(term: u64, index: u64, records: u32) -> Entry {
    entry(EntryType::EntryNormal, term, index, data_batch(index, records))
}

fn noop_entry(term: u64, index: u64) -> Entry {
    entry(EntryType::EntryNormal, term, index, Bytes::new())
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn all_entries(s: &PartitionRaftStorage) -> Vec<Entry> {
    let (lo, hi) = (s.first_index().unwrap(), s.last_index().unwrap() + 1);
    s.entries(lo, hi, None, ctx()).unwrap()
}

/// Asserts that `got` is what `want` becomes once stored: same type, term and index; data
/// entries carry the same batch with the broker prefix filled in.
fn assert_stored_as(got: &Entry, want: &Entry) {
    assert_eq!(
        (got.get_entry_type(), got.term, got.index),
        (want.get_entry_type(), want.term, want.index)
    );
    if want.get_entry_type() == EntryType::EntryNormal && !want.data.is_empty() {
        assert_eq!(got.data[BROKER_FIELDS_LEN..], want.data[BROKER_FIELDS_LEN..]);
        let h = BatchHeader::parse(&got.data).unwrap();
        assert_eq!((h.raft_term.0, h.raft_index.0), (want.term, want.index));
    } else {
        assert_eq!(got.data, want.data);
    }
}

fn store_err(e: ::raft::Error) -> StorageError {
    match e {
        ::raft::Error::Store(s) => s,
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[test]
fn reads_match_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.initialize(voters(&[1])).unwrap();
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
    assert_eq!(s.term(0).unwrap(), 0);

    let mut want = vec![noop_entry(1, 1)];
    for i in 2..=40 {
        want.push(data_entry(1 + i / 20, i, (i % 4 + 1) as u32));
    }
    want.push(entry(
        EntryType::EntryConfChange,
        3,
        41,
        Bytes::from_static(b"encoded conf change"),
    ));
    want.push(entry(
        EntryType::EntryConfChangeV2,
        3,
        42,
        Bytes::from_static(b"encoded v2"),
    ));
    want.push(noop_entry(4, 43));
    let infos = s.append_entries(&want).unwrap();

    // Offsets are dense over data records; control batches take none.
    let mut next = 0;
    for (info, e) in infos.iter().zip(&want) {
        assert_eq!(info.index.0, e.index);
        assert_eq!(info.base_offset, Offset(next));
        if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            next += u64::from(BatchHeader::parse(&e.data).unwrap().record_count);
        }
    }
    assert_eq!(s.with_log(|l| l.next_offset()).unwrap(), Offset(next));
    assert!(s.with_log(|l| l.segment_count()).unwrap() > 2, "tiny segments roll");

    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 43));
    for e in &want {
        assert_eq!(s.term(e.index).unwrap(), e.term);
    }
    let got = all_entries(&s);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_stored_as(g, w);
    }
    let mid = s.entries(10, 30, None, ctx()).unwrap();
    assert_eq!(
        mid.iter().map(|e| e.index).collect::<Vec<_>>(),
        (10..30).collect::<Vec<_>>()
    );

    // max_size: at least one entry; otherwise entries while their total fits.
    assert_eq!(s.entries(2, 44, Some(0), ctx()).unwrap().len(), 1);
    let two = (got[1].data.len() + got[2].data.len()) as u64;
    assert_eq!(s.entries(2, 44, Some(two), ctx()).unwrap().len(), 2);
    assert_eq!(s.entries(2, 44, Some(two - 1), ctx()).unwrap().len(), 1);

    assert_eq!(store_err(s.term(44).unwrap_err()), StorageError::Unavailable);
    assert_eq!(
        store_err(s.entries(40, 45, None, ctx()).unwrap_err()),
        StorageError::Unavailable
    );

    // Compaction moves the first index; the entry before it keeps its term.
    s.set_applied(43).unwrap();
    let report = s.compact(RaftIndex(30)).unwrap();
    assert!(report.segments_deleted > 0);
    let first = s.first_index().unwrap();
    assert!(first > 1 && first <= 30, "first index {first}");
    assert_eq!(s.term(first - 1).unwrap(), want[(first - 2) as usize].term);
    assert_eq!(store_err(s.term(first - 2).unwrap_err()), StorageError::Compacted);
    assert_eq!(
        store_err(s.entries(first - 1, 44, None, ctx()).unwrap_err()),
        StorageError::Compacted
    );
    assert_stored_as(
        &s.entries(first, first + 1, None, ctx()).unwrap()[0],
        &want[(first - 1) as usize],
    );
}

#[test]
fn compaction_and_retention_stop_at_the_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.initialize(voters(&[1])).unwrap();
    let mut entries = vec![noop_entry(1, 1)];
    entries.extend((2..=120).map(|i| data_entry(1, i, 3)));
    s.append_entries(&entries).unwrap();
    s.set_applied(25).unwrap();
    let everything = Retention {
        bytes: Some(0),
        age: None,
    };

    // Unapplied entries stay, whatever is asked for.
    s.compact(RaftIndex(100)).unwrap();
    s.apply_retention(&everything).unwrap();
    let first = s.first_index().unwrap();
    assert!(first > 1 && first <= 26, "first index {first}");
    assert!(s.snapshot(0, 2).is_ok(), "the log start stays describable");

    s.set_applied(120).unwrap();
    let report = s.apply_retention(&everything).unwrap();
    assert!(report.segments_deleted > 0);
    assert!(s.first_index().unwrap() > 26);
    assert_eq!(s.last_index().unwrap(), 120, "the active segment is never deleted");
    let snap = s.snapshot(0, 2).unwrap();
    assert_eq!(snap.get_metadata().index, s.first_index().unwrap() - 1);
}

#[test]
fn conflicting_suffix_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.initialize(voters(&[1, 2, 3])).unwrap();
    let old = vec![
        noop_entry(1, 1),
        data_entry(1, 2, 3),
        data_entry(1, 3, 2),
        data_entry(1, 4, 5),
        data_entry(1, 5, 1),
    ];
    s.append_entries(&old).unwrap();
    assert_eq!(s.with_log(|l| l.next_offset()).unwrap(), Offset(11));

    // A new leader of term 2 replaces everything from index 3.
    let new = vec![data_entry(2, 3, 4), noop_entry(2, 4)];
    let infos = s.append_entries(&new).unwrap();
    assert_eq!(infos[0].base_offset, Offset(3), "offsets follow the surviving entries");
    assert_eq!(s.last_index().unwrap(), 4);
    assert_eq!((s.term(2).unwrap(), s.term(3).unwrap(), s.term(4).unwrap()), (1, 2, 2));
    assert_eq!(s.with_log(|l| l.next_offset()).unwrap(), Offset(7));
    let got = all_entries(&s);
    for (g, w) in got.iter().zip(old[..2].iter().chain(&new)) {
        assert_stored_as(g, w);
    }

    // Neither a gap nor a truncation of committed entries is accepted, and neither writes.
    let gap = s.append_entries(&[data_entry(2, 6, 1)]).unwrap_err();
    assert!(
        matches!(gap, Error::Storage(strata_storage::Error::NonContiguous { .. })),
        "{gap}"
    );
    let mut hs = HardState::default();
    (hs.term, hs.vote, hs.commit) = (2, 1, 3);
    assert!(s.set_hard_state(&hs).unwrap(), "a new term is written");
    let err = s.append_entries(&[data_entry(3, 3, 1)]).unwrap_err();
    assert!(matches!(err, Error::InvalidState { .. }), "{err}");
    assert_eq!(s.last_index().unwrap(), 4);

    // Entries in one call must be contiguous; checked before anything is written.
    let err = s
        .append_entries(&[data_entry(2, 5, 1), data_entry(2, 7, 1)])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidEntry { .. }), "{err}");
    assert_eq!(s.last_index().unwrap(), 4);
}

#[test]
fn invalid_entries_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.initialize(voters(&[1])).unwrap();
    s.append_entries(&[noop_entry(1, 1)]).unwrap();

    let garbage = entry(EntryType::EntryNormal, 1, 2, Bytes::from_static(b"not a batch"));
    let control = entry(
        EntryType::EntryNormal,
        1,
        2,
        control_batch(ControlType::Noop, &[], 0).unwrap(),
    );
    let mut with_context = data_entry(1, 2, 1);
    with_context.context = Bytes::from_static(b"ctx");
    for bad in [garbage, control, with_context] {
        // A valid first entry must not be written either.
        let err = s.append_entries(&[data_entry(1, 2, 1), bad]).unwrap_err();
        assert!(matches!(err, Error::InvalidEntry { .. }), "{err}");
        assert_eq!(s.last_index().unwrap(), 1);
    }
}

#[test]
fn received_entries_are_checked_for_framing_and_crc_and_own_entries_for_framing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.initialize(voters(&[1])).unwrap();
    s.append_entries_of(&[noop_entry(2, 1)], Some(2)).unwrap();
    let corrupt = |e: &Entry| {
        let mut e = e.clone();
        let mut bytes = e.data.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        e.data = Bytes::from(bytes);
        e
    };
    let garbage = |term| entry(EntryType::EntryNormal, term, 2, Bytes::from_static(b"not a batch"));
    let control = |term| {
        entry(
            EntryType::EntryNormal,
            term,
            2,
            control_batch(ControlType::Noop, &[], 0).unwrap(),
        )
    };
    // Framing is checked on every entry; the CRC on entries received from a leader (another
    // term than the one this replica leads).
    for (bad, own_term) in [
        (garbage(2), Some(2)),
        (control(2), Some(2)),
        (garbage(3), Some(2)),
        (control(3), None),
        (corrupt(&data_entry(3, 2, 3)), Some(2)),
        (corrupt(&data_entry(3, 2, 3)), None),
    ] {
        let err = s.append_entries_of(std::slice::from_ref(&bad), own_term).unwrap_err();
        assert!(matches!(err, Error::InvalidEntry { .. }), "{err}");
        assert_eq!(s.last_index().unwrap(), 1);
    }
    // A batch whose CRC is right but whose records do not parse is not walked again: the
    // leader that proposed it walked them (an own proposal) or refused it.
    let mut garbled = data_entry(3, 2, 3);
    let mut bytes = garbled.data.to_vec();
    bytes[strata_protocol::HEADER_LEN] = 0x01; // the first record's length: zigzag −1
    let mut header = BatchHeader::parse(&bytes).unwrap();
    header.crc = strata_protocol::batch::compute_crc(&bytes);
    header.write(&mut bytes);
    garbled.data = Bytes::from(bytes);
    assert!(strata_protocol::RecordBatch::validate(garbled.data.clone(), &BatchLimits::default()).is_err());
    // Own entries, entries of another term and the garbled one are appended.
    let infos = s
        .append_entries_of(&[data_entry(2, 2, 3), data_entry(2, 3, 2)], Some(2))
        .unwrap();
    assert_eq!(infos.len(), 2);
    s.append_entries_of(&[data_entry(3, 4, 1)], Some(2)).unwrap();
    garbled.index = 5;
    s.append_entries_of(&[garbled], None).unwrap();
    assert_eq!(s.last_index().unwrap(), 5);
    let back = all_entries(&s);
    assert_eq!(
        back.iter().map(|e| (e.term, e.index)).collect::<Vec<_>>(),
        vec![(2, 1), (2, 2), (2, 3), (3, 4), (3, 5)]
    );
}

#[test]
fn errors_map_to_raft_storage_errors() {
    let compacted = Error::Storage(strata_storage::Error::Compacted {
        index: RaftIndex(1),
        first_index: RaftIndex(5),
    });
    assert_eq!(
        ::raft::Error::from(compacted),
        ::raft::Error::Store(StorageError::Compacted)
    );
    let unavailable = Error::Storage(strata_storage::Error::Unavailable {
        index: RaftIndex(9),
        last_index: RaftIndex(5),
    });
    assert_eq!(
        ::raft::Error::from(unavailable),
        ::raft::Error::Store(StorageError::Unavailable)
    );
    let other = ::raft::Error::from(Error::InvalidSnapshot {
        index: 3,
        reason: "x".into(),
    });
    assert!(
        matches!(other, ::raft::Error::Store(StorageError::Other(_))),
        "{other:?}"
    );
}

fn snapshot(index: u64, term: u64, conf: ConfState, offset: u64) -> Snapshot {
    let mut snap = Snapshot {
        data: Bytes::copy_from_slice(&offset.to_be_bytes()),
        ..Snapshot::default()
    };
    snap.set_metadata(SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    });
    snap.mut_metadata().set_conf_state(conf);
    snap
}

#[test]
fn apply_snapshot_resets_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.initialize(voters(&[1, 2])).unwrap();
    s.append_entries(&[noop_entry(1, 1), data_entry(1, 2, 3), data_entry(1, 3, 3)])
        .unwrap();

    // Malformed snapshots change nothing.
    let mut short = snapshot(10, 3, voters(&[1, 2, 3]), 100);
    short.data = Bytes::from_static(b"1234");
    let err = s.apply_snapshot(&short).unwrap_err();
    assert!(matches!(err, Error::InvalidSnapshot { .. }), "{err}");
    assert_eq!(s.last_index().unwrap(), 3);

    s.apply_snapshot(&snapshot(10, 3, voters(&[1, 2, 3]), 100)).unwrap();
    let check = |s: &PartitionRaftStorage| {
        assert_eq!(s.first_index().unwrap(), 11);
        assert_eq!(s.term(10).unwrap(), 3);
        assert_eq!(s.with_log(|l| l.log_start_offset()).unwrap(), Offset(100));
        let st = s.state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.commit), (3, 10));
        assert_eq!((st.applied, st.conf_index), (RaftIndex(10), RaftIndex(10)));
        assert_eq!(st.conf_state, voters(&[1, 2, 3]));
        assert_eq!(st.pending_log_start, None);
        assert_eq!(s.initial_state().unwrap().conf_state, voters(&[1, 2, 3]));
    };
    check(&s);
    assert_eq!(s.last_index().unwrap(), 10);
    let infos = s.append_entries(&[data_entry(3, 11, 2)]).unwrap();
    assert_eq!(infos[0].base_offset, Offset(100));
    drop(s);

    let s = open(dir.path());
    check(&s);
    assert_eq!(s.last_index().unwrap(), 11);
    assert_eq!(s.with_log(|l| l.next_offset()).unwrap(), Offset(102));
    assert_eq!(s.applied().unwrap(), 10);

    // A snapshot below the log start is out of date.
    let err = s.apply_snapshot(&snapshot(5, 3, voters(&[1]), 50)).unwrap_err();
    assert!(matches!(err, Error::SnapshotOutOfDate { .. }), "{err}");
    assert_eq!(
        ::raft::Error::from(err),
        ::raft::Error::Store(StorageError::SnapshotOutOfDate)
    );
}

#[test]
fn snapshot_of_a_compacted_leader_installs_on_a_follower() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = open(leader_dir.path());
    leader.initialize(voters(&[1, 2])).unwrap();
    // Nothing below the bootstrap configuration to describe yet.
    assert_eq!(
        store_err(leader.snapshot(0, 2).unwrap_err()),
        StorageError::SnapshotTemporarilyUnavailable
    );
    let mut entries = vec![noop_entry(1, 1)];
    entries.extend((2..=120).map(|i| data_entry(1, i, 3)));
    leader.append_entries(&entries).unwrap();
    leader.set_applied(120).unwrap();
    leader.compact(RaftIndex(100)).unwrap();
    let first = leader.first_index().unwrap();
    assert!(first > 2);

    let snap = leader.snapshot(0, 2).unwrap();
    let meta = snap.get_metadata();
    assert_eq!((meta.index, meta.term), (first - 1, 1));
    assert_eq!(meta.get_conf_state(), &voters(&[1, 2]));
    let start = leader.with_log(|l| l.log_start_offset()).unwrap();
    assert_eq!(snap.data.as_ref(), start.0.to_be_bytes());

    // The follower installs it, then takes the leader's entries and assigns the same offsets.
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = open(follower_dir.path());
    follower.apply_snapshot(&snap).unwrap();
    assert_eq!(follower.first_index().unwrap(), first);
    let rest = leader.entries(first, 121, None, ctx()).unwrap();
    let infos = follower.append_entries(&rest).unwrap();
    let leader_offsets = leader
        .with_log(|l| l.entries(RaftIndex(first), RaftIndex(121), usize::MAX).unwrap())
        .unwrap();
    for (info, b) in infos.iter().zip(&leader_offsets) {
        assert_eq!(info.base_offset, b.header.base_offset);
    }
    assert_eq!(
        follower.with_log(|l| l.next_offset()).unwrap(),
        leader.with_log(|l| l.next_offset()).unwrap()
    );

    // A snapshot always describes the log start (a request for a later index changes nothing):
    // the follower gets every entry the leader still has.
    assert_eq!(leader.snapshot(110, 2).unwrap().get_metadata().index, first - 1);
}

#[test]
fn snapshots_describe_the_configuration_at_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let leader = open(dir.path());
    leader.initialize(voters(&[1, 2, 3])).unwrap();
    let mut entries = vec![noop_entry(1, 1)];
    entries.extend((2..=120).map(|i| data_entry(1, i, 3)));
    leader.append_entries(&entries).unwrap();
    leader.set_applied(110).unwrap();
    leader.compact(RaftIndex(100)).unwrap();
    let floor = leader.first_index().unwrap() - 1;
    assert!(floor > 1 && floor < 110);
    // Configuration changes after the log start: broker 4 added as a learner, then promoted in
    // place of 3.
    let with_learner = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..ConfState::default()
    };
    leader.set_conf_state(with_learner.clone(), 105).unwrap();
    leader.set_conf_state(voters(&[1, 2, 4]), 110).unwrap();
    let st = leader.state().unwrap();
    assert_eq!(st.conf_at(floor), Some(&voters(&[1, 2, 3])));
    assert_eq!(st.conf_at(107), Some(&with_learner));
    assert_eq!(st.conf_at(115), Some(&voters(&[1, 2, 4])));

    // To an old member: the configuration valid at the log start, not the current one (which
    // only holds from index 110 on, and entries before it would be skipped).
    let snap = leader.snapshot(0, 2).unwrap();
    assert_eq!(snap.get_metadata().index, floor);
    assert_eq!(snap.get_metadata().get_conf_state(), &voters(&[1, 2, 3]));
    // To the new member: named as a learner (raft-rs refuses a snapshot that does not name its
    // recipient); applying the changes after the log start gives it the true configuration.
    let snap = leader.snapshot(0, 4).unwrap();
    assert_eq!(snap.get_metadata().get_conf_state(), &with_learner);

    // The history survives a restart (and drops what the log start no longer needs).
    drop(leader);
    let reopened = open(dir.path());
    assert_eq!(reopened.state().unwrap(), st);
    assert_eq!(
        reopened.snapshot(0, 2).unwrap().get_metadata().get_conf_state(),
        &voters(&[1, 2, 3])
    );
}

#[test]
fn interrupted_snapshot_install_is_completed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.initialize(voters(&[1])).unwrap();
    s.append_entries(&[noop_entry(1, 1), data_entry(1, 2, 2)]).unwrap();
    s.flush().unwrap();
    // Crash after phase 1 of apply_snapshot: the state records the pending start, the log is old.
    let start = LogStart {
        offset: Offset(40),
        index: RaftIndex(21),
        prev_term: RaftTerm(4),
    };
    let mut st = s.state().unwrap();
    st.hard_state.term = 4;
    st.hard_state.commit = 20;
    st.applied = RaftIndex(20);
    st.conf_index = RaftIndex(20);
    st.pending_log_start = Some(start);
    drop(s);
    let path = dir.path().join(RAFT_STATE_FILE);
    durable::write_atomic(&path, &st.encode(dir.path()).unwrap()).unwrap();

    let s = open(dir.path());
    assert_eq!(s.with_log(|l| l.log_start()).unwrap(), start);
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (21, 20));
    assert_eq!(s.term(20).unwrap(), 4);
    let on_disk = PersistentState::decode(&durable::read(&path).unwrap().unwrap(), &path).unwrap();
    assert_eq!(on_disk.pending_log_start, None);
    assert_eq!(on_disk.hard_state.commit, 20);
}

#[test]
fn open_reconciles_the_state_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RAFT_STATE_FILE);
    let s = open(dir.path());
    s.initialize(voters(&[1])).unwrap();
    s.append_entries(&[noop_entry(1, 1), data_entry(1, 2, 2), data_entry(1, 3, 2)])
        .unwrap();
    s.flush().unwrap();
    let st = s.state().unwrap();
    drop(s);

    // A commit index past the log (a lost unsynced tail) is lowered to the last index.
    let mut ahead = st.clone();
    ahead.hard_state.commit = 9;
    durable::write_atomic(&path, &ahead.encode(dir.path()).unwrap()).unwrap();
    let s = open(dir.path());
    assert_eq!(s.initial_state().unwrap().hard_state.commit, 3);
    drop(s);

    // An applied configuration past the log cannot be reconciled.
    let mut applied_ahead = st.clone();
    applied_ahead.hard_state.commit = 9;
    applied_ahead.applied = RaftIndex(9);
    durable::write_atomic(&path, &applied_ahead.encode(dir.path()).unwrap()).unwrap();
    let err = PartitionRaftStorage::open(dir.path(), log_config(), BatchLimits::default()).unwrap_err();
    assert!(matches!(&err, Error::Storage(e) if e.is_corruption()), "{err}");

    // Entries without a state file: the vote is lost, so refuse to start.
    std::fs::remove_file(&path).unwrap();
    let err = PartitionRaftStorage::open(dir.path(), log_config(), BatchLimits::default()).unwrap_err();
    assert!(matches!(&err, Error::Storage(e) if e.is_corruption()), "{err}");
}

#[test]
fn state_file_round_trips_and_rejects_damage() {
    let path = Path::new("raft-state");
    let conf_state = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![7],
        voters_outgoing: vec![1, 2, 4],
        learners_next: vec![4],
        auto_leave: true,
        ..ConfState::default()
    };
    let hard_state = HardState {
        term: 5,
        vote: 2,
        commit: 99,
        ..HardState::default()
    };
    let st = PersistentState {
        hard_state,
        conf_state,
        conf_index: RaftIndex(40),
        applied: RaftIndex(90),
        pending_log_start: Some(LogStart {
            offset: Offset(1234),
            index: RaftIndex(91),
            prev_term: RaftTerm(5),
        }),
        history: vec![(RaftIndex(0), voters(&[1, 2, 3])), (RaftIndex(30), voters(&[1, 2, 4]))],
    };
    let bytes = st.encode(Path::new(".")).unwrap();
    let history_len = 4 + 2 * (8 + 1 + 4 * 4 + 3 * 8);
    assert_eq!(bytes.len(), STATE_FIXED_LEN + 4 * 4 + 8 * 8 + history_len);
    assert_eq!(PersistentState::decode(&bytes, path).unwrap(), st);
    let plain = PersistentState::default();
    assert_eq!(
        PersistentState::decode(&plain.encode(Path::new(".")).unwrap(), path).unwrap(),
        plain
    );

    for cut in 0..bytes.len() {
        let err = PersistentState::decode(&bytes[..cut], path).unwrap_err();
        assert!(
            matches!(&err, Error::Storage(e) if e.is_corruption()),
            "cut at {cut}: {err}"
        );
    }
    let bad = |at: usize, value: u8| {
        let mut b = bytes.clone();
        b[at] = value;
        let err = PersistentState::decode(&b, path).unwrap_err();
        assert!(
            matches!(&err, Error::Storage(e) if e.is_corruption()),
            "byte {at} = {value}: {err}"
        );
    };
    bad(0, 3); // version
    // Version 1 (no history) is still read.
    let mut v1 = st.clone();
    v1.history.clear();
    let mut v1_bytes = v1.encode(Path::new(".")).unwrap();
    v1_bytes.truncate(v1_bytes.len() - 4);
    v1_bytes[0] = 1;
    assert_eq!(PersistentState::decode(&v1_bytes, path).unwrap(), v1);
    bad(41, 0x07); // unknown flag
    bad(STATE_FIXED_LEN, 0xff); // voters count far beyond the bytes present
    bad(32, 100); // applied (low byte) above commit
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(PersistentState::decode(&trailing, path).is_err());
}

// --- A single-node Raft group over the segment log -------------------------------------------

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// One replica: a `RawNode` over the storage, and a driver that handles `Ready` in the order
/// raft-rs's five_mem_node example does (with the log sync made explicit).
struct Node {
    raw: RawNode<PartitionRaftStorage>,
    store: PartitionRaftStorage,
    /// Committed entries handed to the application, in order.
    committed: Vec<Entry>,
    /// Messages for other peers (none reachable here).
    sent: usize,
    /// Log syncs done by the driver.
    syncs: usize,
}

impl Node {
    fn start(dir: &Path, voters_at_bootstrap: &[u64]) -> Node {
        let store = open(dir);
        if !store.is_initialized().unwrap() {
            store.initialize(voters(voters_at_bootstrap)).unwrap();
        }
        let cfg = Config {
            id: 1,
            election_tick: 10,
            heartbeat_tick: 3,
            // Applying a data entry is a no-op beyond the log; the configuration is the only
            // applied state, and the storage recorded how far it got.
            applied: store.applied().unwrap(),
            ..Config::default()
        };
        let raw = RawNode::new(&cfg, store.clone(), &logger()).unwrap();
        Node {
            raw,
            store,
            committed: Vec::new(),
            sent: 0,
            syncs: 0,
        }
    }

    fn send(&mut self, msgs: Vec<::raft::eraftpb::Message>) {
        self.sent += msgs.len();
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data).unwrap();
                    let cs = self.raw.apply_conf_change(&cc).unwrap();
                    self.store.set_conf_state(cs, e.index).unwrap();
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&e.data).unwrap();
                    let cs = self.raw.apply_conf_change(&cc).unwrap();
                    self.store.set_conf_state(cs, e.index).unwrap();
                }
            }
            self.committed.push(e);
        }
        self.store.set_applied(last).unwrap();
    }

    fn handle_ready(&mut self) {
        let mut rd = self.raw.ready();
        // 1. A leader may send its appends before persisting them (raft thesis 10.2.1).
        self.send(rd.take_messages());
        // 2. A snapshot replaces the log; raft stabilises it in `advance`.
        if !rd.snapshot().is_empty() {
            self.store.apply_snapshot(rd.snapshot()).unwrap();
        }
        // 3. Committed entries were persisted in an earlier Ready: apply them.
        self.apply(rd.take_committed_entries());
        // 4. New entries go to the log (written, not yet durable).
        self.store.append_entries(rd.entries()).unwrap();
        // 5. One fsync for everything appended in this cycle (group commit), before the hard
        //    state so its commit index never exceeds the durable log.
        if let Some(job) = self.store.begin_sync().unwrap() {
            let done = job.run();
            self.store.complete_sync(done).unwrap();
            self.syncs += 1;
        }
        assert!(self.store.durable_index().unwrap().0 > self.store.last_index().unwrap());
        // 6. Term and vote are durable before any message that depends on them is sent.
        if let Some(hs) = rd.hs() {
            self.store.set_hard_state(hs).unwrap();
        }
        // 7. Only now may messages that acknowledge the persisted state go out.
        self.send(rd.take_persisted_messages());
        // 8. Tell raft, then handle what became ready as a result.
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.store.set_commit(commit).unwrap();
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
    }

    fn run_until_idle(&mut self) {
        for _ in 0..100 {
            if !self.raw.has_ready() {
                return;
            }
            self.handle_ready();
        }
        panic!("raft never went idle");
    }

    fn elect(&mut self) {
        self.raw.campaign().unwrap();
        self.run_until_idle();
        assert_eq!(self.raw.raft.state, StateRole::Leader);
    }

    /// Proposes `batches` in one cycle and drives them to commit.
    fn propose(&mut self, batches: &[Bytes]) {
        for b in batches {
            self.raw.propose(Vec::new(), b.to_vec()).unwrap();
        }
        self.run_until_idle();
    }
}

/// Checks each committed data entry's header against the batch proposed for it and the offsets
/// expected, returning the next offset.
fn check_committed_data(committed: &[Entry], proposed: &[Bytes], mut next_offset: u64) -> u64 {
    assert_eq!(committed.len(), proposed.len());
    for (e, p) in committed.iter().zip(proposed) {
        assert_eq!(e.get_entry_type(), EntryType::EntryNormal);
        assert_eq!(e.data[BROKER_FIELDS_LEN..], p[BROKER_FIELDS_LEN..]);
        let h = BatchHeader::parse(&e.data).unwrap();
        assert_eq!((h.raft_index.0, h.raft_term.0), (e.index, e.term));
        assert_eq!(h.base_offset, Offset(next_offset), "entry {}", e.index);
        next_offset += u64::from(h.record_count);
    }
    next_offset
}

#[test]
fn single_node_commits_proposals_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[1]);
    node.elect();
    assert_eq!(node.raw.raft.term, 1);
    // The new leader's empty entry, stored as a no-op control batch.
    assert_eq!(node.committed.len(), 1);
    assert_stored_as(&node.committed[0], &noop_entry(1, 1));

    let proposed: Vec<Bytes> = (0..24).map(|i| data_batch(i, (i % 5 + 1) as u32)).collect();
    for chunk in proposed.chunks(4) {
        node.propose(chunk);
    }
    // One fsync per ready cycle that appended (the election's, then one per chunk of 4).
    assert_eq!(node.syncs, 1 + 6);
    assert_eq!(
        node.committed.iter().map(|e| e.index).collect::<Vec<_>>(),
        (1..=25).collect::<Vec<_>>()
    );
    let end = check_committed_data(&node.committed[1..], &proposed, 0);
    assert_eq!(
        end,
        proposed
            .iter()
            .enumerate()
            .map(|(i, _)| (i % 5 + 1) as u64)
            .sum::<u64>()
    );
    assert_eq!(node.store.with_log(|l| l.next_offset()).unwrap(), Offset(end));
    assert_eq!(node.sent, 0, "a lone voter has no one to talk to");

    let st = node.store.state().unwrap();
    assert_eq!(
        (st.hard_state.term, st.hard_state.vote, st.hard_state.commit),
        (1, 1, 25)
    );
    assert_eq!(st.applied, RaftIndex(25));
    let log_before = all_entries(&node.store);
    node.store.flush().unwrap(); // clean shutdown
    drop(node);

    // Restart from the same directory.
    let mut node = Node::start(dir.path(), &[1]);
    let st2 = node.store.state().unwrap();
    assert_eq!(st2.hard_state, st.hard_state);
    assert_eq!(st2.conf_state, voters(&[1]));
    assert_eq!(node.raw.raft.raft_log.committed, 25);
    assert_eq!(node.raw.raft.raft_log.applied, 25);
    assert_eq!(node.raw.raft.raft_log.last_index(), 25);
    assert_eq!(all_entries(&node.store), log_before);

    node.raw.campaign().unwrap();
    node.run_until_idle();
    assert_eq!(node.raw.raft.state, StateRole::Leader);
    assert_eq!(node.raw.raft.term, 2);
    // Nothing applied before the restart is handed over again; the new term's no-op is.
    assert_eq!(node.committed.len(), 1);
    assert_stored_as(&node.committed[0], &noop_entry(2, 26));

    let more: Vec<Bytes> = (100..110).map(|i| data_batch(i, 2)).collect();
    node.propose(&more);
    let end2 = check_committed_data(&node.committed[1..], &more, end);
    assert_eq!(end2, end + 20);
    let st3 = node.store.state().unwrap();
    assert_eq!((st3.hard_state.term, st3.hard_state.commit), (2, 36));
}

#[test]
fn restart_without_flushing_the_commit_index_recovers_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[1]);
    node.elect();
    let proposed: Vec<Bytes> = (0..6).map(|i| data_batch(i, 3)).collect();
    node.propose(&proposed);
    assert_eq!(node.store.state().unwrap().hard_state.commit, 7);
    // No flush: the file has the commit index of the last term/vote write (0), as after a crash.
    drop(node);

    let path = dir.path().join(RAFT_STATE_FILE);
    let on_disk = PersistentState::decode(&durable::read(&path).unwrap().unwrap(), &path).unwrap();
    assert_eq!((on_disk.hard_state.term, on_disk.hard_state.commit), (1, 0));

    let mut node = Node::start(dir.path(), &[1]);
    assert_eq!(node.raw.raft.raft_log.committed, 0);
    node.raw.campaign().unwrap();
    node.run_until_idle();
    assert_eq!(node.raw.raft.term, 2);
    // The new leader commits its no-op and with it everything before: all is re-delivered,
    // with the same offsets, because the log is the state.
    assert_eq!(
        node.committed.iter().map(|e| e.index).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    check_committed_data(&node.committed[1..7], &proposed, 0);
    assert_eq!(node.store.state().unwrap().hard_state.commit, 8);
}

#[test]
fn conf_change_is_persisted_with_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[1]);
    node.elect();
    node.propose(&[data_batch(0, 2)]);
    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::AddLearnerNode);
    cc.node_id = 2;
    node.raw.propose_conf_change(Vec::new(), cc).unwrap();
    node.run_until_idle();
    node.propose(&[data_batch(1, 2)]);

    let cc_entry = node
        .committed
        .iter()
        .find(|e| e.get_entry_type() == EntryType::EntryConfChange)
        .expect("conf change committed")
        .clone();
    let st = node.store.state().unwrap();
    assert_eq!(st.conf_state.voters, vec![1]);
    assert_eq!(st.conf_state.learners, vec![2]);
    assert_eq!(st.conf_index.0, cc_entry.index);
    assert!(node.sent > 0, "the leader now replicates to its learner");

    // Nothing is compacted, so there is no snapshot: a lagging learner gets every entry,
    // including the conf change that added it.
    assert_eq!(
        store_err(node.store.snapshot(0, 2).unwrap_err()),
        StorageError::SnapshotTemporarilyUnavailable
    );
    drop(node);

    // After a crash (no flush) the configuration comes back and is not applied twice.
    let mut node = Node::start(dir.path(), &[1]);
    assert!(node.raw.raft.prs().conf().learners().contains(&2));
    node.raw.campaign().unwrap();
    node.run_until_idle();
    assert!(
        node.committed.iter().all(|e| e.index > cc_entry.index),
        "entries up to the conf change are not re-applied"
    );
    assert_eq!(node.store.state().unwrap().conf_state.learners, vec![2]);
}

#[test]
fn committed_entries_to_apply_skip_data_records_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[1]);
    node.store.set_apply_reads_data(false);
    node.elect();
    let proposed: Vec<Bytes> = (0..12).map(|i| data_batch(i, 3)).collect();
    node.propose(&proposed);
    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::AddLearnerNode);
    cc.node_id = 2;
    node.raw.propose_conf_change(Vec::new(), cc).unwrap();
    node.run_until_idle();
    node.propose(&[data_batch(99, 2)]);

    // Every data entry handed out to apply has its index and term but no records (Raft read it
    // back from the log for applying: it had been persisted and left the unstable part)...
    let data: Vec<&Entry> = node
        .committed
        .iter()
        .filter(|e| e.get_entry_type() == EntryType::EntryNormal && e.index > 1)
        .collect();
    assert_eq!(data.len(), 13);
    assert!(data.iter().all(|e| e.data.is_empty()), "{data:?}");
    // ... the configuration change came whole and was applied ...
    assert_eq!(node.store.state().unwrap().conf_state.learners, vec![2]);
    // ... and the log itself, read to send or serve, has every record.
    let all = all_entries(&node.store);
    for e in data {
        let stored = all.iter().find(|s| s.index == e.index).unwrap();
        assert_eq!((stored.term, stored.get_entry_type()), (e.term, e.get_entry_type()));
        assert!(BatchHeader::parse(&stored.data).unwrap().record_count >= 2);
    }
}
