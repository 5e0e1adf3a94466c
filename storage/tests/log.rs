//! Behaviour of the partition log's operations, one at a time.

mod common;

use common::*;
use strata_protocol::{BatchIter, BatchLimits, Offset, RaftIndex, RaftTerm};
use strata_storage::{Clock, Error, LogConfig, LogStart, PartitionLog, Retention};

#[test]
fn append_assigns_dense_offsets_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(report.segments, 1);
    assert_eq!(
        (log.next_offset(), log.next_index(), log.last_index()),
        (Offset(0), RaftIndex(1), RaftIndex(0))
    );
    let mut expected = Vec::new();
    let mut offset = 0;
    for i in 1..=200u64 {
        let batch = if i % 7 == 0 {
            noop_batch(i as i64)
        } else {
            data_batch(i, (i % 4 + 1) as u32, 50, i as i64 * 10)
        };
        let info = log.append(&batch, RaftTerm(1 + i / 50), RaftIndex(i)).unwrap();
        assert_eq!(info.base_offset, Offset(offset));
        offset += u64::from(batch.header().record_count);
        assert_eq!(info.next_offset, Offset(offset));
        expected.push(batch);
    }
    assert!(log.segment_count() > 3, "tiny segments roll: {}", log.segment_count());
    // Read everything by offset, batch by batch.
    let mut next = Offset(0);
    let mut seen = 0;
    while next < log.next_offset() {
        let r = log.read(next, 1, log.next_offset()).unwrap();
        assert!(r.batches >= 1);
        for b in BatchIter::new(r.bytes.clone(), BatchLimits::default()) {
            let b = b.unwrap();
            assert!(!b.header().is_control());
            assert!(b.header().base_offset <= next || seen > 0);
        }
        next = r.next_offset;
        seen += 1;
    }
    // Raft reads give every entry, control batches included, with the original payload.
    let all = log.entries(RaftIndex(1), RaftIndex(201), usize::MAX).unwrap();
    assert_eq!(all.len(), 200);
    for (i, (stored, orig)) in all.iter().zip(&expected).enumerate() {
        assert_eq!(stored.header.raft_index, RaftIndex(i as u64 + 1));
        assert_eq!(payload(&stored.bytes), payload(orig.as_bytes()));
        assert_eq!(
            log.term(RaftIndex(i as u64 + 1)).unwrap(),
            RaftTerm(1 + (i as u64 + 1) / 50)
        );
    }
    assert_eq!(log.term(RaftIndex(0)).unwrap(), RaftTerm(0));
    assert!(matches!(log.term(RaftIndex(201)), Err(Error::Unavailable { .. })));
    assert!(matches!(
        log.read(Offset(offset + 1), 100, Offset(u64::MAX)),
        Err(Error::OffsetOutOfRange { .. })
    ));

    // Reopen: same state.
    let (n, i, t) = (log.next_offset(), log.next_index(), log.last_term());
    log.close().unwrap();
    let (log, report) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!((log.next_offset(), log.next_index(), log.last_term()), (n, i, t));
    let all2 = log.entries(RaftIndex(1), RaftIndex(201), usize::MAX).unwrap();
    assert_eq!(all, all2);

    // Headers only: the same headers, control batches whole, data batches without bytes; any
    // range, across segments, with the same size limit.
    let heads = log.entry_headers(RaftIndex(1), RaftIndex(201), usize::MAX).unwrap();
    assert_eq!(heads.len(), 200);
    for (h, full) in heads.iter().zip(&all) {
        assert_eq!(h.header, full.header);
        if full.header.is_control() {
            assert_eq!(h.bytes, full.bytes);
        } else {
            assert!(h.bytes.is_empty());
        }
    }
    let mid = log.entry_headers(RaftIndex(37), RaftIndex(150), usize::MAX).unwrap();
    assert_eq!(mid[..], heads[36..149]);
    let limit: usize = all[36..40].iter().map(|b| b.bytes.len()).sum();
    assert_eq!(
        log.entry_headers(RaftIndex(37), RaftIndex(150), limit).unwrap().len(),
        4
    );
    assert_eq!(log.entries(RaftIndex(37), RaftIndex(150), limit).unwrap().len(), 4);
    assert_eq!(log.entry_headers(RaftIndex(37), RaftIndex(150), 0).unwrap().len(), 1);
}

#[test]
fn read_respects_upper_bound_and_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..tiny_config()
    };
    let (mut log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
    for i in 1..=10u64 {
        log.append(&data_batch(i, 2, 100, 0), RaftTerm(1), RaftIndex(i))
            .unwrap();
    }
    // 10 batches, offsets 0..20. Upper bound 6: batches [0,2) [2,4) [4,6).
    let r = log.read(Offset(1), 1 << 20, Offset(6)).unwrap();
    assert_eq!((r.batches, r.next_offset), (3, Offset(6)));
    // Upper bound inside a batch excludes that batch.
    let r = log.read(Offset(0), 1 << 20, Offset(5)).unwrap();
    assert_eq!((r.batches, r.next_offset), (2, Offset(4)));
    // At or past the bound: nothing.
    assert_eq!(log.read(Offset(6), 1 << 20, Offset(6)).unwrap().batches, 0);
    // max_bytes smaller than one batch still returns that batch whole.
    let r = log.read(Offset(3), 1, Offset(20)).unwrap();
    assert_eq!((r.batches, r.next_offset), (1, Offset(4)));
    let one = r.bytes.len();
    let r = log.read(Offset(0), one * 3, Offset(20)).unwrap();
    assert_eq!(r.batches, 3);
}

#[test]
fn truncate_removes_suffix_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    for i in 1..=100u64 {
        log.append(&data_batch(i, 1, 60, 0), RaftTerm(1), RaftIndex(i)).unwrap();
    }
    let segs = log.segment_count();
    log.truncate_to(RaftIndex(40)).unwrap();
    assert_eq!((log.next_index(), log.next_offset()), (RaftIndex(40), Offset(39)));
    assert!(log.segment_count() < segs);
    // New entries with a higher term replace the old ones.
    for i in 40..=60u64 {
        log.append(&data_batch(1000 + i, 1, 60, 0), RaftTerm(2), RaftIndex(i))
            .unwrap();
    }
    assert_eq!(log.term(RaftIndex(39)).unwrap(), RaftTerm(1));
    assert_eq!(log.term(RaftIndex(40)).unwrap(), RaftTerm(2));
    log.close().unwrap();
    let (log, report) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert!(report.cuts.is_empty());
    assert_eq!(log.next_index(), RaftIndex(61));
    let e = log.entries(RaftIndex(40), RaftIndex(41), usize::MAX).unwrap();
    assert_eq!(payload(&e[0].bytes), payload(data_batch(1040, 1, 60, 0).as_bytes()));
    // Truncating everything leaves an empty log at the start.
    let (mut log, _) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    log.truncate_to(RaftIndex(1)).unwrap();
    assert_eq!(
        (log.next_index(), log.next_offset(), log.segment_count()),
        (RaftIndex(1), Offset(0), 1)
    );
}

#[test]
fn retention_never_passes_the_bound_and_moves_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = Clock::manual(1_000_000);
    let cfg = LogConfig { clock, ..tiny_config() };
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for i in 1..=100u64 {
        log.append(&data_batch(i, 1, 100, i as i64), RaftTerm(1), RaftIndex(i))
            .unwrap();
    }
    let total = log.size_bytes();
    // Bound 1: nothing can go.
    let r = log
        .apply_retention(
            RaftIndex(1),
            &Retention {
                bytes: Some(0),
                age: None,
            },
        )
        .unwrap();
    assert_eq!(r.segments_deleted, 0);
    // Bound 50 with size retention 0: everything wholly below 50 goes, nothing at or above.
    let r = log
        .apply_retention(
            RaftIndex(50),
            &Retention {
                bytes: Some(0),
                age: None,
            },
        )
        .unwrap();
    assert!(r.segments_deleted > 0);
    assert!(log.first_index() <= RaftIndex(50));
    assert_eq!(log.size_bytes(), total - r.bytes_deleted);
    assert!(matches!(
        log.entries(RaftIndex(1), RaftIndex(2), 1),
        Err(Error::Compacted { .. })
    ));
    let first = log.first_index();
    assert_eq!(log.term(RaftIndex(first.0 - 1)).unwrap(), RaftTerm(1));
    // Age retention: move the clock far ahead; all sealed segments below the bound go.
    now.store(10_000_000, std::sync::atomic::Ordering::Relaxed);
    log.apply_retention(
        RaftIndex(101),
        &Retention {
            bytes: None,
            age: Some(secs(60)),
        },
    )
    .unwrap();
    assert_eq!(log.segment_count(), 1);
    let start = log.log_start();
    log.close().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.log_start(), start);
    assert_eq!(log.next_index(), RaftIndex(101));
}

#[test]
fn reset_restarts_the_log_at_a_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    for i in 1..=30u64 {
        log.append(&data_batch(i, 1, 100, 0), RaftTerm(1), RaftIndex(i))
            .unwrap();
    }
    let start = LogStart {
        offset: Offset(500),
        index: RaftIndex(700),
        prev_term: RaftTerm(3),
    };
    log.reset(start).unwrap();
    assert_eq!(
        (log.next_offset(), log.next_index(), log.last_term()),
        (Offset(500), RaftIndex(700), RaftTerm(3))
    );
    log.append(&data_batch(7, 2, 10, 0), RaftTerm(4), RaftIndex(700))
        .unwrap();
    log.close().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(
        (log.next_offset(), log.next_index(), log.first_index()),
        (Offset(502), RaftIndex(701), RaftIndex(700))
    );
    assert_eq!(log.term(RaftIndex(699)).unwrap(), RaftTerm(3));
}

#[test]
fn offset_for_timestamp_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    // Batch i has 3 records with timestamps 100*i, 100*i+1, 100*i+2.
    for i in 1..=60u64 {
        log.append(&data_batch(i, 3, 40, 100 * i as i64), RaftTerm(1), RaftIndex(i))
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(Offset(0)));
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some(Offset(1)));
    assert_eq!(log.offset_for_timestamp(103).unwrap(), Some(Offset(3)));
    assert_eq!(log.offset_for_timestamp(3002).unwrap(), Some(Offset(89)));
    assert_eq!(log.offset_for_timestamp(6002).unwrap(), Some(Offset(179)));
    assert_eq!(log.offset_for_timestamp(6003).unwrap(), None);
}

#[test]
fn appends_must_be_contiguous_and_terms_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    log.append(&data_batch(1, 1, 1, 0), RaftTerm(2), RaftIndex(1)).unwrap();
    assert!(matches!(
        log.append(&data_batch(1, 1, 1, 0), RaftTerm(2), RaftIndex(3)),
        Err(Error::NonContiguous { .. })
    ));
    assert!(matches!(
        log.append(&data_batch(1, 1, 1, 0), RaftTerm(1), RaftIndex(2)),
        Err(Error::TermRegression { .. })
    ));
}

#[test]
fn group_commit_tracks_durable_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush: strata_storage::FlushPolicy::Always,
        ..tiny_config()
    };
    let (mut log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
    assert!(!log.sync_due());
    for i in 1..=5u64 {
        log.append(&data_batch(i, 1, 10, 0), RaftTerm(1), RaftIndex(i)).unwrap();
    }
    assert!(log.sync_due());
    assert_eq!(log.durable_index(), RaftIndex(1));
    let job = log.begin_sync().unwrap();
    assert_eq!(job.target(), RaftIndex(6));
    // Appends continue while the fsync runs elsewhere.
    let handle = std::thread::spawn(move || job.run());
    for i in 6..=8u64 {
        log.append(&data_batch(i, 1, 10, 0), RaftTerm(1), RaftIndex(i)).unwrap();
    }
    let durable = log.complete_sync(handle.join().unwrap()).unwrap();
    assert_eq!(durable, RaftIndex(6));
    assert!(log.sync_due());
    assert_eq!(log.sync().unwrap(), RaftIndex(9));
    assert!(!log.sync_due());
    // A sync captured before a truncation cannot claim the replaced entries.
    log.append(&data_batch(9, 1, 10, 0), RaftTerm(1), RaftIndex(9)).unwrap();
    let job = log.begin_sync().unwrap();
    log.truncate_to(RaftIndex(7)).unwrap();
    log.append(&data_batch(70, 1, 10, 0), RaftTerm(2), RaftIndex(7))
        .unwrap();
    let r = job.run();
    assert_eq!(log.complete_sync(r).unwrap(), RaftIndex(7));
}

#[test]
fn segments_roll_by_age_but_never_without_records() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = Clock::manual(0);
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        segment_age: Some(secs(10)),
        clock,
        ..tiny_config()
    };
    let (mut log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
    assert!(!log.append(&noop_batch(0), RaftTerm(1), RaftIndex(1)).unwrap().rolled);
    now.store(60_000, std::sync::atomic::Ordering::Relaxed);
    // The active segment is old but holds no data record: rolling would reuse its base offset.
    assert!(!log.append(&noop_batch(0), RaftTerm(1), RaftIndex(2)).unwrap().rolled);
    assert!(
        !log.append(&data_batch(1, 1, 10, 0), RaftTerm(1), RaftIndex(3))
            .unwrap()
            .rolled
    );
    assert!(
        log.append(&data_batch(2, 1, 10, 0), RaftTerm(1), RaftIndex(4))
            .unwrap()
            .rolled
    );
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(1)]);
    now.store(65_000, std::sync::atomic::Ordering::Relaxed);
    assert!(
        !log.append(&data_batch(3, 1, 10, 0), RaftTerm(1), RaftIndex(5))
            .unwrap()
            .rolled
    );
    now.store(71_000, std::sync::atomic::Ordering::Relaxed);
    assert!(
        log.append(&data_batch(4, 1, 10, 0), RaftTerm(1), RaftIndex(6))
            .unwrap()
            .rolled
    );
    // A roll syncs the sealed segment, so the durable index moves with it.
    assert_eq!(log.durable_index(), RaftIndex(6));
}

#[test]
fn interval_policy_syncs_only_when_data_is_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = Clock::manual(0);
    let cfg = LogConfig {
        flush: strata_storage::FlushPolicy::Interval(secs(1)),
        clock,
        ..tiny_config()
    };
    let (mut log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
    log.append(&data_batch(1, 1, 10, 0), RaftTerm(1), RaftIndex(1)).unwrap();
    assert!(log.has_unsynced() && !log.sync_due());
    now.store(999, std::sync::atomic::Ordering::Relaxed);
    assert!(!log.sync_due());
    now.store(1000, std::sync::atomic::Ordering::Relaxed);
    assert!(log.sync_due());
    log.sync().unwrap();
    assert!(!log.sync_due() && !log.has_unsynced());
    // Never: only explicit syncs.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    log.append(&data_batch(1, 1, 10, 0), RaftTerm(1), RaftIndex(1)).unwrap();
    assert!(log.has_unsynced() && !log.sync_due());
}

#[test]
fn invalid_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 10,
        ..LogConfig::default()
    };
    match PartitionLog::open(dir.path(), cfg) {
        Err(Error::InvalidConfig { key, .. }) => assert_eq!(key, "segment_bytes"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}
