//! Model-based property test: random sequences of append / read / entries / term / truncate /
//! roll / reopen / retention / reset / sync on a real log agree with a simple in-memory model
//! (a `Vec` of the batches appended, plus the log start).

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use strata_protocol::{BatchIter, BatchLimits, Offset, RaftIndex, RaftTerm, RecordBatch};
use strata_storage::{Error, LogConfig, LogStart, PartitionLog, Retention};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: u32,
        value_len: usize,
        term_bump: bool,
        ts: i64,
    },
    Read {
        at: f64,
        max_bytes: usize,
        upper: f64,
    },
    Entries {
        at: f64,
        count: u64,
        max_bytes: usize,
    },
    Term {
        at: f64,
    },
    Truncate {
        at: f64,
    },
    Roll,
    Sync,
    Reopen,
    Retention {
        bound: f64,
        bytes: u64,
    },
    Reset {
        skip: u64,
    },
    Timestamp {
        ts: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u32..6, 0usize..400, proptest::bool::weighted(0.1), 0i64..10_000)
            .prop_map(|(records, value_len, term_bump, ts)| Op::Append { records, value_len, term_bump, ts }),
        3 => (0.0..1.0f64, 1usize..3000, 0.0..1.2f64).prop_map(|(at, max_bytes, upper)| Op::Read { at, max_bytes, upper }),
        2 => (0.0..1.0f64, 1u64..20, 1usize..5000).prop_map(|(at, count, max_bytes)| Op::Entries { at, count, max_bytes }),
        1 => (0.0..1.0f64).prop_map(|at| Op::Term { at }),
        1 => (0.0..1.0f64).prop_map(|at| Op::Truncate { at }),
        1 => Just(Op::Roll),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => (0.0..1.0f64, 0u64..20_000).prop_map(|(bound, bytes)| Op::Retention { bound, bytes }),
        1 => (0u64..3).prop_map(|skip| Op::Reset { skip }),
        1 => (-10i64..11_000).prop_map(|ts| Op::Timestamp { ts }),
    ]
}

/// One entry of the model.
#[derive(Debug, Clone)]
struct Entry {
    term: RaftTerm,
    base_offset: Offset,
    records: u32,
    bytes: Bytes,
    max_ts: i64,
    first_ts: i64,
}

#[derive(Debug)]
struct Model {
    start: LogStart,
    entries: Vec<Entry>,
    term: RaftTerm,
}

impl Model {
    fn next_index(&self) -> RaftIndex {
        RaftIndex(self.start.index.0 + self.entries.len() as u64)
    }
    fn next_offset(&self) -> Offset {
        self.entries
            .last()
            .map_or(self.start.offset, |e| Offset(e.base_offset.0 + u64::from(e.records)))
    }
    fn entry(&self, index: RaftIndex) -> &Entry {
        &self.entries[(index.0 - self.start.index.0) as usize]
    }
    fn last_term(&self) -> RaftTerm {
        self.entries.last().map_or(self.start.prev_term, |e| e.term)
    }
}

fn pick(lo: u64, hi: u64, at: f64) -> u64 {
    // A value in [lo, hi] (inclusive), spread by `at`.
    lo + ((hi - lo) as f64 * at).round() as u64
}

fn check_state(log: &PartitionLog, m: &Model) {
    assert_eq!(log.next_index(), m.next_index(), "next index");
    assert_eq!(log.next_offset(), m.next_offset(), "next offset");
    assert_eq!(log.first_index(), m.start.index, "first index");
    assert_eq!(log.log_start_offset(), m.start.offset, "log start offset");
    assert_eq!(log.last_term(), m.last_term(), "last term");
}

fn config() -> LogConfig {
    tiny_config()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config()).unwrap();
    let mut m = Model {
        start: LogStart::default(),
        entries: Vec::new(),
        term: RaftTerm(1),
    };
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        match op {
            Op::Append {
                records,
                value_len,
                term_bump,
                ts,
            } => {
                if term_bump {
                    m.term = RaftTerm(m.term.0 + 1);
                }
                let batch = if records == 0 {
                    noop_batch(ts)
                } else {
                    data_batch(step as u64, records, value_len, ts)
                };
                let info = log.append(&batch, m.term, m.next_index()).expect(&ctx);
                assert_eq!(info.base_offset, m.next_offset(), "{ctx}");
                let h = batch.header();
                m.entries.push(Entry {
                    term: m.term,
                    base_offset: info.base_offset,
                    records: h.record_count,
                    bytes: batch.as_bytes().clone(),
                    max_ts: h.max_timestamp,
                    first_ts: h.first_timestamp,
                });
            }
            Op::Read { at, max_bytes, upper } => {
                let (lo, hi) = (m.start.offset.0, m.next_offset().0);
                let offset = Offset(pick(lo, hi, at));
                // A high watermark always falls on a batch boundary (it is a committed entry's end).
                let boundaries: Vec<u64> = std::iter::once(lo)
                    .chain(m.entries.iter().map(|e| e.base_offset.0 + u64::from(e.records)))
                    .chain(std::iter::once(hi + 2))
                    .collect();
                let upper = Offset(boundaries[pick(0, boundaries.len() as u64 - 1, upper.min(1.0)) as usize]);
                let r = log.read(offset, max_bytes, upper).expect(&ctx);
                let batches: Vec<RecordBatch> = BatchIter::new(r.bytes.clone(), BatchLimits::default())
                    .collect::<Result<_, _>>()
                    .expect(&ctx);
                assert_eq!(batches.len(), r.batches, "{ctx}");
                let upper = upper.min(m.next_offset());
                if offset >= upper {
                    assert!(batches.is_empty(), "{ctx}");
                    continue;
                }
                assert!(!batches.is_empty(), "{ctx}: data exists below the upper bound");
                let first = batches[0].header();
                assert!(!first.is_control(), "{ctx}");
                assert!(
                    first.base_offset <= offset && offset < first.next_offset(),
                    "{ctx}: first batch holds the offset"
                );
                if batches.len() > 1 {
                    assert!(
                        r.bytes.len() <= max_bytes,
                        "{ctx}: more than one batch only within max_bytes"
                    );
                }
                let mut idx = first.raft_index;
                for b in &batches {
                    let h = b.header();
                    assert_eq!(h.raft_index, idx, "{ctx}: consecutive entries");
                    let e = m.entry(idx);
                    assert_eq!((h.base_offset, h.raft_term), (e.base_offset, e.term), "{ctx}");
                    assert_eq!(payload(b.as_bytes()), payload(&e.bytes), "{ctx}");
                    if h.is_control() {
                        assert!(h.base_offset < upper, "{ctx}");
                    } else {
                        assert!(h.next_offset() <= upper, "{ctx}: nothing above the upper bound");
                    }
                    idx = RaftIndex(idx.0 + 1);
                }
                assert_eq!(
                    r.next_offset,
                    batches.last().unwrap().header().next_offset().max(offset),
                    "{ctx}"
                );
            }
            Op::Entries { at, count, max_bytes } => {
                let (first, next) = (m.start.index.0, m.next_index().0);
                if first == next {
                    assert!(
                        log.entries(RaftIndex(first), RaftIndex(first + 1), 100).is_err(),
                        "{ctx}"
                    );
                    continue;
                }
                let lo = pick(first, next - 1, at);
                let hi = (lo + count).min(next);
                let got = log.entries(RaftIndex(lo), RaftIndex(hi), max_bytes).expect(&ctx);
                assert!(!got.is_empty(), "{ctx}");
                let mut size = 0;
                for (i, sb) in got.iter().enumerate() {
                    let idx = RaftIndex(lo + i as u64);
                    let e = m.entry(idx);
                    assert_eq!(sb.header.raft_index, idx, "{ctx}");
                    assert_eq!(
                        (sb.header.base_offset, sb.header.raft_term),
                        (e.base_offset, e.term),
                        "{ctx}"
                    );
                    assert_eq!(payload(&sb.bytes), payload(&e.bytes), "{ctx}");
                    size += sb.bytes.len();
                }
                assert!(got.len() == 1 || size <= max_bytes, "{ctx}");
                if got.len() < (hi - lo) as usize {
                    let next_len = m.entry(RaftIndex(lo + got.len() as u64)).bytes.len();
                    assert!(size + next_len > max_bytes, "{ctx}: stopped early only at max_bytes");
                }
                if m.start.index.0 > 1 {
                    let e = log.entries(RaftIndex(m.start.index.0 - 1), RaftIndex(m.start.index.0), 10);
                    assert!(matches!(e, Err(Error::Compacted { .. })), "{ctx}");
                }
            }
            Op::Term { at } => {
                let (first, next) = (m.start.index.0, m.next_index().0);
                let idx = pick(first - 1, next - 1, at);
                let expected = if idx + 1 == first {
                    m.start.prev_term
                } else {
                    m.entry(RaftIndex(idx)).term
                };
                assert_eq!(log.term(RaftIndex(idx)).expect(&ctx), expected, "{ctx}");
                assert!(
                    matches!(log.term(RaftIndex(next)), Err(Error::Unavailable { .. })),
                    "{ctx}"
                );
            }
            Op::Truncate { at } => {
                let (first, next) = (m.start.index.0, m.next_index().0);
                let idx = pick(first, next, at);
                log.truncate_to(RaftIndex(idx)).expect(&ctx);
                m.entries.truncate((idx - first) as usize);
            }
            Op::Roll => {
                let rolled = log.roll().expect(&ctx);
                let active_has_data = rolled || log.segment_count() >= 1;
                assert!(active_has_data);
            }
            Op::Sync => {
                let durable = log.sync().expect(&ctx);
                assert_eq!(durable, m.next_index(), "{ctx}");
                assert!(!log.has_unsynced(), "{ctx}");
            }
            Op::Reopen => {
                log.close().expect(&ctx);
                let (l, report) = PartitionLog::open(dir.path(), config()).expect(&ctx);
                assert!(report.cuts.is_empty(), "{ctx}: clean reopen cuts nothing: {report:?}");
                assert_eq!(report.rebuilt_indexes, 0, "{ctx}");
                log = l;
            }
            Op::Retention { bound, bytes } => {
                let (first, next) = (m.start.index.0, m.next_index().0);
                let bound = RaftIndex(pick(first, next, bound));
                let r = log
                    .apply_retention(
                        bound,
                        &Retention {
                            bytes: Some(bytes),
                            age: None,
                        },
                    )
                    .expect(&ctx);
                let new_first = log.first_index();
                assert!(
                    new_first <= bound || new_first == m.start.index,
                    "{ctx}: retention passed the bound"
                );
                let dropped = (new_first.0 - m.start.index.0) as usize;
                assert_eq!(dropped > 0, r.segments_deleted > 0, "{ctx}");
                if dropped > 0 {
                    let last_dropped = m.entries[dropped - 1].clone();
                    m.entries.drain(..dropped);
                    m.start = LogStart {
                        offset: m
                            .entries
                            .first()
                            .map_or(m.next_offset_after(&last_dropped), |e| e.base_offset),
                        index: new_first,
                        prev_term: last_dropped.term,
                    };
                    assert!(
                        log.size_bytes() as u128 + r.bytes_deleted as u128 >= bytes as u128,
                        "{ctx}"
                    );
                }
            }
            Op::Reset { skip } => {
                let start = LogStart {
                    offset: Offset(m.next_offset().0 + skip * 3),
                    index: RaftIndex(m.next_index().0 + skip),
                    prev_term: m.term,
                };
                log.reset(start).expect(&ctx);
                m.start = start;
                m.entries.clear();
            }
            Op::Timestamp { ts } => {
                // The model's answer: the first record (in offset order) with timestamp ≥ ts.
                let mut expected = None;
                'outer: for e in &m.entries {
                    if e.records == 0 || e.max_ts < ts {
                        continue;
                    }
                    for r in 0..e.records {
                        if e.first_ts + i64::from(r) >= ts {
                            expected = Some(Offset(e.base_offset.0 + u64::from(r)));
                            break 'outer;
                        }
                    }
                }
                assert_eq!(log.offset_for_timestamp(ts).expect(&ctx), expected, "{ctx}");
            }
        }
        check_state(&log, &m);
    }
    // Finally everything must survive a reopen.
    log.close().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), config()).unwrap();
    check_state(&log, &m);
    if !m.entries.is_empty() {
        let all = log.entries(m.start.index, m.next_index(), usize::MAX).unwrap();
        assert_eq!(all.len(), m.entries.len());
        for (sb, e) in all.iter().zip(&m.entries) {
            assert_eq!(payload(&sb.bytes), payload(&e.bytes));
        }
    }
}

impl Model {
    fn next_offset_after(&self, e: &Entry) -> Offset {
        Offset(e.base_offset.0 + u64::from(e.records))
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
