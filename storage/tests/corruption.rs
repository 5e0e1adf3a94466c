//! Damaged files: bytes flipped and cut in segment logs and indexes, a damaged `log-start`,
//! leftover files. Recovery must repair what its mode allows or fail with a clear corruption
//! error — never panic, and never serve bytes other than those appended.
//!
//! Every test builds the same small log ([`Fixture::build`]: tiny segments, ~150 batches of
//! varied sizes, control batches, lz4 batches, rising terms, a few out-of-order timestamps),
//! records what it holds and where each batch sits, and then damages fresh copies of its
//! directory, one case at a time. Positions are drawn from a fixed-seed PRNG so a failure
//! reproduces; each test collects all failing cases (a panic inside the storage code counts as
//! one) and reports them together.
//!
//! No gap is tolerated: the broker-owned header prefix (base offset, length, term, index) is
//! outside the batch CRC but covered by its own prefix CRC, so a flipped term bit — which
//! nothing else would catch when it raises the term — is found like any other damage (see
//! [`TERM_FIELD`]).

mod common;

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use strata_protocol::batch::{BROKER_FIELDS_LEN, field};
use strata_protocol::{BatchHeader, BatchLimits, HEADER_LEN, Offset, RaftIndex, RaftTerm, RecordBatch};
use strata_storage::segment::{LOG_SUFFIX, segment_file_name};
use strata_storage::{Error, LogConfig, PartitionLog, RecoveryMode, RecoveryReport, durable};

const SEED: u64 = 0x5eed_c044;
/// Batches in the fixture, at least; more are added until the active segment holds three.
const MIN_BATCHES: u64 = 150;
/// Bytes of a batch header holding the Raft term: outside the batch CRC, and but for the prefix
/// CRC only checked for not decreasing. The tests count flips there to show they are all caught.
const TERM_FIELD: Range<usize> = field::RAFT_TERM..field::RAFT_TERM + 8;

/// One stored batch of the fixture.
#[derive(Debug, Clone)]
struct Entry {
    index: u64,
    term: u64,
    base_offset: u64,
    next_offset: u64,
    control: bool,
    /// Exactly as stored (broker prefix included).
    bytes: Bytes,
    /// (offset, timestamp) of each record.
    records: Vec<(u64, i64)>,
    /// Base offset of the segment holding it, and its position there.
    segment: u64,
    pos: u64,
}

impl Entry {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

#[derive(Debug, Clone)]
struct SegmentLayout {
    base: u64,
    /// Indexes into `Fixture::entries`.
    entries: Range<usize>,
    len: u64,
}

struct Fixture {
    tmp: tempfile::TempDir,
    pristine: PathBuf,
    entries: Vec<Entry>,
    segments: Vec<SegmentLayout>,
    copies: std::cell::Cell<u64>,
}

fn cfg() -> LogConfig {
    tiny_config()
}

fn cfg_with(recovery: RecoveryMode) -> LogConfig {
    LogConfig { recovery, ..cfg() }
}

impl Fixture {
    fn build() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let pristine = tmp.path().join("pristine");
        let (mut log, _) = PartitionLog::open(&pristine, cfg()).unwrap();
        let mut rng = XorShift::new(SEED);
        let mut i = 1u64;
        loop {
            let mut ts = 100_000 + i as i64 * 100;
            if i.is_multiple_of(23) {
                // Out of order: the time index must still find the earliest match.
                ts -= 5_000;
            }
            let batch = if i.is_multiple_of(9) || i % 37 == 5 {
                noop_batch(ts)
            } else {
                let records = rng.range(1, 5) as u32;
                let value_len = rng.range(0, 400) as usize;
                data_batch(i, records, value_len, ts)
            };
            log.append(&batch, RaftTerm(1 + i / 40), RaftIndex(i)).unwrap();
            i += 1;
            if i > MIN_BATCHES {
                log.sync().unwrap();
                let bases = log.segment_base_offsets();
                let active = std::fs::metadata(pristine.join(segment_file_name(*bases.last().unwrap(), LOG_SUFFIX)))
                    .unwrap()
                    .len();
                // The active segment should hold a few batches, ending data, control, data.
                if active > 600 && i.is_multiple_of(9) {
                    let small = data_batch(i, 2, 40, 100_000 + i as i64 * 100);
                    log.append(&small, RaftTerm(1 + i / 40), RaftIndex(i)).unwrap();
                    log.append(
                        &noop_batch(100_000 + i as i64 * 100 + 1),
                        RaftTerm(1 + i / 40),
                        RaftIndex(i + 1),
                    )
                    .unwrap();
                    let last = data_batch(i + 2, 3, 30, 100_000 + i as i64 * 100 + 2);
                    log.append(&last, RaftTerm(1 + i / 40), RaftIndex(i + 2)).unwrap();
                    break;
                }
            }
        }
        log.close().unwrap();

        let (log, report) = PartitionLog::open(&pristine, cfg()).unwrap();
        assert!(report.cuts.is_empty() && report.rebuilt_indexes == 0, "{report:?}");
        let stored = log.entries(RaftIndex(1), log.next_index(), usize::MAX).unwrap();
        let mut entries = Vec::new();
        for s in &stored {
            let h = s.header;
            let batch = RecordBatch::validate(s.bytes.clone(), &BatchLimits::default()).unwrap();
            let records = batch
                .records()
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    (r.offset.0, r.timestamp)
                })
                .collect();
            entries.push(Entry {
                index: h.raft_index.0,
                term: h.raft_term.0,
                base_offset: h.base_offset.0,
                next_offset: h.next_offset().0,
                control: h.is_control(),
                bytes: s.bytes.clone(),
                records,
                segment: 0,
                pos: 0,
            });
        }
        // Where each batch sits: walk every segment file.
        let mut segments = Vec::new();
        for base in log.segment_base_offsets() {
            let data = std::fs::read(pristine.join(segment_file_name(base, LOG_SUFFIX))).unwrap();
            let mut pos = 0usize;
            let mut range: Option<Range<usize>> = None;
            while pos < data.len() {
                let h = BatchHeader::parse(&data[pos..]).unwrap();
                let k = h.raft_index.0 as usize - 1;
                assert_eq!(&data[pos..pos + h.total_len()], &entries[k].bytes[..]);
                entries[k].segment = base.0;
                entries[k].pos = pos as u64;
                range = Some(range.map_or(k..k + 1, |r| r.start..k + 1));
                pos += h.total_len();
            }
            segments.push(SegmentLayout {
                base: base.0,
                entries: range.unwrap(),
                len: data.len() as u64,
            });
        }
        drop(log);
        assert!(segments.len() >= 10, "{} segments", segments.len());
        assert!(segments.last().unwrap().entries.len() >= 3);
        assert!(entries.iter().filter(|e| e.control).count() >= 10);
        Fixture {
            tmp,
            pristine,
            entries,
            segments,
            copies: std::cell::Cell::new(0),
        }
    }

    /// A fresh copy of the pristine directory.
    fn copy(&self) -> Scratch {
        let n = self.copies.get();
        self.copies.set(n + 1);
        let dir = self.tmp.path().join(format!("case-{n}"));
        copy_dir(&self.pristine, &dir);
        Scratch(dir)
    }

    fn active(&self) -> &SegmentLayout {
        self.segments.last().unwrap()
    }

    fn sealed(&self) -> &[SegmentLayout] {
        &self.segments[..self.segments.len() - 1]
    }

    fn end_offset(&self, n: usize) -> u64 {
        if n == 0 { 0 } else { self.entries[n - 1].next_offset }
    }
}

/// A case's copy of the log directory, removed when the case ends.
struct Scratch(PathBuf);

impl Scratch {
    fn file(&self, base: u64, suffix: &str) -> PathBuf {
        self.0.join(segment_file_name(Offset(base), suffix))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip_bit(path: &Path, pos: u64, bit: u32) {
    let mut data = std::fs::read(path).unwrap();
    data[pos as usize] ^= 1 << bit;
    std::fs::write(path, data).unwrap();
}

/// Runs cases, collecting failures (including panics) so one run shows them all.
#[derive(Default)]
struct Cases {
    run: usize,
    failures: Vec<String>,
}

impl Cases {
    fn run(&mut self, desc: impl std::fmt::Display, f: impl FnOnce() -> Result<(), String>) {
        self.run += 1;
        let outcome = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(p) => Err(format!(
                "PANIC: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        if let Err(msg) = outcome {
            self.failures.push(format!("{desc}: {msg}"));
        }
    }

    fn finish(self) {
        assert!(self.run > 0);
        if !self.failures.is_empty() {
            let shown: Vec<_> = self.failures.iter().take(25).collect();
            panic!(
                "{} of {} cases failed (seed {SEED:#x}); first {}:\n{}",
                self.failures.len(),
                self.run,
                shown.len(),
                shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// How much of the log to check, and how strictly.
#[derive(Debug, Clone)]
struct Expect {
    /// Entries `1..=n` must be present, and nothing else.
    n: usize,
    /// Lookups may fail with a corruption error instead of answering (damage that recovery did
    /// not see); they must never answer wrongly.
    errors_allowed: bool,
    /// Entries (0-based) whose lookups to check one by one; the rest are sampled.
    focus: Range<usize>,
}

/// Whether `actual` is exactly the bytes of `expected` back to back.
fn same_batches(actual: &[u8], expected: &[&Entry]) -> bool {
    let total: usize = expected.iter().map(|e| e.bytes.len()).sum();
    if actual.len() != total {
        return false;
    }
    let mut at = 0;
    for e in expected {
        if actual[at..at + e.bytes.len()] != e.bytes[..] {
            return false;
        }
        at += e.bytes.len();
    }
    true
}

/// Accepts `Ok` answers that `good` approves, and corruption errors if allowed.
fn judge<T: std::fmt::Debug>(
    what: impl Fn() -> String,
    r: Result<T, Error>,
    errors_allowed: bool,
    good: impl FnOnce(&T) -> bool,
) -> Result<(), String> {
    match r {
        Ok(v) if good(&v) => Ok(()),
        Ok(v) => Err(format!("{}: WRONG ANSWER {v:?}", what())),
        Err(e) if errors_allowed && e.is_corruption() => Ok(()),
        Err(e) => Err(format!("{}: error {e}", what())),
    }
}

/// What `read(off, max_bytes, end)` must return for the first `n` entries.
fn expected_read(fx: &Fixture, n: usize, off: u64, max_bytes: usize) -> (Vec<&Entry>, u64) {
    let end = fx.end_offset(n);
    let live = &fx.entries[..n];
    if off >= end {
        return (Vec::new(), off);
    }
    let seg = live
        .iter()
        .filter(|e| e.segment <= off)
        .map(|e| e.segment)
        .max()
        .unwrap();
    let mut out: Vec<&Entry> = Vec::new();
    let mut total = 0usize;
    for e in live
        .iter()
        .filter(|e| e.segment == seg)
        .skip_while(|e| e.next_offset <= off)
    {
        let beyond = if e.control {
            e.base_offset >= end
        } else {
            e.next_offset > end
        };
        if beyond || (!out.is_empty() && total + e.bytes.len() > max_bytes) {
            break;
        }
        total += e.bytes.len();
        out.push(e);
    }
    let next = out.iter().map(|e| e.next_offset).fold(off, u64::max);
    (out, next)
}

/// Checks every kind of lookup against the fixture's model.
fn check_log(log: &PartitionLog, fx: &Fixture, x: &Expect) -> Result<(), String> {
    let n = x.n;
    let live = &fx.entries[..n];
    let end = fx.end_offset(n);
    if log.next_index() != RaftIndex(n as u64 + 1) || log.next_offset() != Offset(end) {
        return Err(format!(
            "log ends at (index {}, offset {}), expected (index {}, offset {end})",
            log.next_index(),
            log.next_offset(),
            n + 1
        ));
    }
    let expected_last_term = live.last().map_or(0, |e| e.term);
    if log.last_term() != RaftTerm(expected_last_term) {
        return Err(format!("last term {} expected {expected_last_term}", log.last_term()));
    }
    let mut rng = XorShift::new(SEED ^ n as u64);
    let sampled = |rng: &mut XorShift, i: usize| x.focus.contains(&i) || rng.below(8) == 0;

    // All entries in one call.
    if n > 0 {
        judge(
            || "entries(all)".into(),
            log.entries(RaftIndex(1), RaftIndex(n as u64 + 1), usize::MAX),
            x.errors_allowed,
            |got| {
                got.len() == n
                    && got.iter().zip(live).all(|(g, e)| {
                        g.header.raft_index == RaftIndex(e.index)
                            && g.header.raft_term == RaftTerm(e.term)
                            && same_batches(&g.bytes, &[e])
                    })
            },
        )?;
    }
    // One entry at a time, and terms.
    for (k, e) in live.iter().enumerate() {
        if !sampled(&mut rng, k) {
            continue;
        }
        judge(
            || format!("entries({0}, {0}+1)", e.index),
            log.entries(RaftIndex(e.index), RaftIndex(e.index + 1), 1),
            x.errors_allowed,
            |got| got.len() == 1 && same_batches(&got[0].bytes, &[e]),
        )?;
        judge(
            || format!("term({})", e.index),
            log.term(RaftIndex(e.index)),
            x.errors_allowed,
            |t| *t == RaftTerm(e.term),
        )?;
    }
    judge(
        || "term(0)".into(),
        log.term(RaftIndex(0)),
        false,
        |t| *t == RaftTerm(0),
    )?;

    // Reads by offset: one batch at a time from every (focused or sampled) offset, and larger
    // reads.
    let focus_offsets = live
        .get(x.focus.start.min(n)..x.focus.end.min(n))
        .filter(|s| !s.is_empty())
        .map_or(0..0, |s| s[0].base_offset..s[s.len() - 1].next_offset);
    for off in 0..=end {
        if !(focus_offsets.contains(&off) || rng.below(6) == 0 || off == end) {
            continue;
        }
        for max_bytes in [1, 700, 64 << 10] {
            let (want, want_next) = expected_read(fx, n, off, max_bytes);
            judge(
                || format!("read({off}, {max_bytes})"),
                log.read(Offset(off), max_bytes, Offset(end)),
                x.errors_allowed,
                |r| r.batches == want.len() && r.next_offset == Offset(want_next) && same_batches(&r.bytes, &want),
            )?;
        }
    }

    // Timestamps: every record's, one either side, and the extremes.
    let records: Vec<(u64, i64)> = live.iter().flat_map(|e| e.records.iter().copied()).collect();
    let focus_ts: Vec<i64> = live
        .get(x.focus.start.min(n)..x.focus.end.min(n))
        .unwrap_or(&[])
        .iter()
        .flat_map(|e| e.records.iter().map(|r| r.1))
        .collect();
    let mut targets: Vec<i64> = vec![i64::MIN, 0, i64::MAX];
    for &(_, ts) in &records {
        if focus_ts.contains(&ts) || rng.below(6) == 0 {
            targets.extend([ts - 1, ts, ts + 1]);
        }
    }
    for ts in targets {
        let want = records.iter().find(|r| r.1 >= ts).map(|r| Offset(r.0));
        judge(
            || format!("offset_for_timestamp({ts})"),
            log.offset_for_timestamp(ts),
            x.errors_allowed,
            |got| *got == want,
        )?;
    }
    Ok(())
}

fn open(dir: &Path, mode: RecoveryMode) -> Result<(PartitionLog, RecoveryReport), Error> {
    PartitionLog::open(dir, cfg_with(mode))
}

/// After recovery the log must take appends again and keep them across a reopen.
fn check_appends_after(mut log: PartitionLog, fx: &Fixture, n: usize) -> Result<(), String> {
    let i = n as u64 + 1;
    let term = fx.entries.get(n.saturating_sub(1)).map_or(1, |e| e.term);
    let next_offset = log.next_offset();
    for k in 0..3 {
        log.append(&data_batch(9000 + k, 2, 500, 1), RaftTerm(term), RaftIndex(i + k))
            .map_err(|e| format!("append after recovery: {e}"))?;
    }
    let dir = log.dir().to_path_buf();
    log.close().map_err(|e| format!("close: {e}"))?;
    let (log, report) = open(&dir, RecoveryMode::Strict).map_err(|e| format!("reopen after appends: {e}"))?;
    if !report.cuts.is_empty() || log.next_index() != RaftIndex(i + 3) || log.next_offset() != Offset(next_offset.0 + 6)
    {
        return Err(format!(
            "reopen after appends: next index {} {report:?}",
            log.next_index()
        ));
    }
    let got = log
        .entries(RaftIndex(i), RaftIndex(i + 3), usize::MAX)
        .map_err(|e| format!("entries after reopen: {e}"))?;
    for (k, g) in got.iter().enumerate() {
        if payload(&g.bytes) != payload(data_batch(9000 + k as u64, 2, 500, 1).as_bytes()) {
            return Err("appended entry differs after reopen".into());
        }
    }
    Ok(())
}

/// Number of whole entries before byte `cut` of segment `seg`.
fn entries_before(fx: &Fixture, seg: &SegmentLayout, cut: u64) -> usize {
    seg.entries.start
        + fx.entries[seg.entries.clone()]
            .iter()
            .filter(|e| e.pos + e.len() <= cut)
            .count()
}

fn is_boundary(fx: &Fixture, seg: &SegmentLayout, cut: u64) -> bool {
    cut == seg.len || fx.entries[seg.entries.clone()].iter().any(|e| e.pos == cut)
}

#[test]
fn active_segment_cut_anywhere_recovers_the_prefix_before_the_cut() {
    let fx = Fixture::build();
    let seg = fx.active().clone();
    let last_two = fx.entries[seg.entries.end - 2].pos;
    let mut rng = XorShift::new(SEED ^ 1);
    let mut cuts: Vec<u64> = (last_two..seg.len).collect();
    cuts.extend((0..40).map(|_| rng.below(last_two)));
    cuts.extend(fx.entries[seg.entries.clone()].iter().map(|e| e.pos));
    cuts.sort_unstable();
    cuts.dedup();
    let mut cases = Cases::default();
    for (k, &cut) in cuts.iter().enumerate() {
        let n = entries_before(&fx, &seg, cut);
        let boundary = is_boundary(&fx, &seg, cut);
        cases.run(format!("cut active segment at {cut}/{}", seg.len), || {
            let s = fx.copy();
            truncate(&s.file(seg.base, LOG_SUFFIX), cut);
            let (log, report) = open(&s.0, RecoveryMode::TolerateTornTail).map_err(|e| format!("open: {e}"))?;
            if report.cuts.is_empty() != boundary {
                return Err(format!("boundary {boundary} but cuts {:?}", report.cuts));
            }
            if let Some(c) = report.cuts.first()
                && (report.cuts.len() != 1 || c.position != fx.entries[n].pos || c.bytes != cut - c.position)
            {
                return Err(format!("cut reported at the wrong place: {:?}", report.cuts));
            }
            if report.rebuilt_indexes != 0 || !report.removed_segments.is_empty() {
                return Err(format!("recovery touched sealed segments: {report:?}"));
            }
            // Full checks on some cases, the active segment's lookups on all.
            let focus = if k % 16 == 0 { 0..n } else { seg.entries.start..n };
            check_log(
                &log,
                &fx,
                &Expect {
                    n,
                    errors_allowed: false,
                    focus,
                },
            )?;
            if k % 8 == 0 {
                check_appends_after(log, &fx, n)?;
            }
            Ok(())
        });
        if k % 2 == 0 || !boundary {
            cases.run(format!("strict: cut active segment at {cut}/{}", seg.len), || {
                let s = fx.copy();
                truncate(&s.file(seg.base, LOG_SUFFIX), cut);
                match open(&s.0, RecoveryMode::Strict) {
                    Ok((log, report)) if boundary && report.cuts.is_empty() && log.next_index().0 == n as u64 + 1 => {
                        Ok(())
                    }
                    Ok((_, report)) => Err(format!("strict open succeeded: {report:?}")),
                    Err(e) if !boundary && e.is_corruption() => Ok(()),
                    Err(e) => Err(format!("strict open: {e}")),
                }
            });
        }
    }
    cases.finish();
}

#[test]
fn active_segment_bit_flips_never_serve_wrong_data() {
    let fx = Fixture::build();
    let seg = fx.active().clone();
    let last = fx.entries[seg.entries.end - 1].clone();
    let mut rng = XorShift::new(SEED ^ 2);
    let mut flips: Vec<(u64, u32)> = (0..HEADER_LEN as u64)
        .map(|b| (last.pos + b, rng.below(8) as u32))
        .collect();
    flips.extend((0..80).map(|_| (rng.below(seg.len), rng.below(8) as u32)));
    // Every header of the segment, a byte in each field: base offset, batch length, term,
    // index, prefix CRC (first and last bytes), magic, CRC, attributes, first timestamp, the
    // last byte of the header.
    for e in &fx.entries[seg.entries.clone()] {
        for b in [0, 7, 8, 11, 12, 19, 20, 27, 28, 31, 32, 33, 37, 44, 76] {
            flips.push((e.pos + b, rng.below(8) as u32));
        }
    }
    let mut cases = Cases::default();
    let mut term_flips = 0;
    for (k, &(pos, bit)) in flips.iter().enumerate() {
        let hit = fx.entries[seg.entries.clone()]
            .iter()
            .find(|e| e.pos <= pos && pos < e.pos + e.len())
            .unwrap()
            .clone();
        // Every byte of a batch is covered by one of its CRCs — the broker-owned prefix (base
        // offset, length, term, index) by the prefix CRC, the rest by the batch CRC — so any
        // flip is caught and cut exactly at its batch. That includes the segment's first batch,
        // whose index and term also tie the segment to the one before: a damaged first batch
        // proves nothing about the previous segment and is cut like any other.
        if TERM_FIELD.contains(&((pos - hit.pos) as usize)) {
            term_flips += 1;
        }
        cases.run(
            format!("flip bit {bit} at {pos} (entry {} + {})", hit.index, pos - hit.pos),
            || {
                let s = fx.copy();
                flip_bit(&s.file(seg.base, LOG_SUFFIX), pos, bit);
                let (log, report) = open(&s.0, RecoveryMode::TolerateTornTail).map_err(|e| format!("open: {e}"))?;
                let n = log.next_index().0 as usize - 1;
                if n + 1 != hit.index as usize || report.cuts.len() != 1 || report.cuts[0].position != hit.pos {
                    return Err(format!(
                        "expected a cut at entry {} (byte {}), got next index {} {report:?}",
                        hit.index,
                        hit.pos,
                        n + 1
                    ));
                }
                check_log(
                    &log,
                    &fx,
                    &Expect {
                        n,
                        errors_allowed: false,
                        focus: if k % 16 == 0 { 0..n } else { seg.entries.start..n },
                    },
                )?;
                if k % 8 == 0 {
                    check_appends_after(log, &fx, n)?;
                }
                Ok(())
            },
        );
    }
    eprintln!(
        "{} flips, {term_flips} of them in a term field: each cut at its batch",
        flips.len()
    );
    cases.finish();
}

/// Sealed segments to damage: the first, the last sealed one, and a few between.
fn sample_sealed(fx: &Fixture, rng: &mut XorShift, count: usize) -> Vec<SegmentLayout> {
    let sealed = fx.sealed();
    let mut picks = vec![0, sealed.len() - 1];
    while picks.len() < count.min(sealed.len()) {
        let p = rng.below(sealed.len() as u64) as usize;
        if !picks.contains(&p) {
            picks.push(p);
        }
    }
    picks.sort_unstable();
    picks.into_iter().map(|p| sealed[p].clone()).collect()
}

#[test]
fn sealed_segment_bit_flips_are_errors_never_wrong_data() {
    let fx = Fixture::build();
    let mut rng = XorShift::new(SEED ^ 3);
    let mut flips: Vec<(SegmentLayout, u64, u32)> = Vec::new();
    for seg in sample_sealed(&fx, &mut rng, 6) {
        for e in &fx.entries[seg.entries.clone()] {
            // The middle of the batch, a byte of each header field, and a random byte.
            flips.push((seg.clone(), e.pos + e.len() / 2, rng.below(8) as u32));
            for b in [0, 8, 11, 15, 19, 23, 27, 29, 32, 34, 38, 42, 54, 76] {
                flips.push((seg.clone(), e.pos + b.min(e.len() - 1), rng.below(8) as u32));
            }
            flips.push((seg.clone(), e.pos + rng.below(e.len()), rng.below(8) as u32));
        }
    }
    let mut cases = Cases::default();
    let (mut failed_open, mut opened) = (0, 0);
    // Flips in a term field: (open failed, opened).
    let mut term_flips = (0usize, 0usize);
    for (k, (seg, pos, bit)) in flips.iter().enumerate() {
        let hit = fx.entries[seg.entries.clone()]
            .iter()
            .find(|e| e.pos <= *pos && *pos < e.pos + e.len())
            .unwrap()
            .clone();
        let at = (pos - hit.pos) as usize;
        let in_term = TERM_FIELD.contains(&at);
        cases.run(
            format!(
                "flip bit {bit} at {pos} of sealed segment {} (entry {} + {})",
                seg.base,
                hit.index,
                pos - hit.pos
            ),
            || {
                let s = fx.copy();
                flip_bit(&s.file(seg.base, LOG_SUFFIX), *pos, *bit);
                match open(&s.0, RecoveryMode::TolerateTornTail) {
                    Err(e) if e.is_corruption() => {
                        failed_open += 1;
                        term_flips.0 += usize::from(in_term);
                        Ok(())
                    }
                    Err(e) => Err(format!("open: {e}")),
                    Ok((log, _)) => {
                        opened += 1;
                        term_flips.1 += usize::from(in_term);
                        // Open trusts a sealed segment's index and walks only its tail, so the
                        // damage may pass open; the damaged entry itself is then never served:
                        // reading it fails its CRCs, and a header-only lookup of its term fails
                        // the prefix CRC (or the magic byte) when the flip is there.
                        let idx = RaftIndex(hit.index);
                        match log.entries(idx, RaftIndex(hit.index + 1), usize::MAX) {
                            Err(e) if e.is_corruption() => {}
                            other => return Err(format!("entries({idx}) of the damaged entry: {other:?}")),
                        }
                        if at <= field::MAGIC {
                            match log.term(idx) {
                                Err(e) if e.is_corruption() => {}
                                other => return Err(format!("term({idx}) of the damaged entry: {other:?}")),
                            }
                        }
                        let n = fx.entries.len();
                        check_log(
                            &log,
                            &fx,
                            &Expect {
                                n,
                                errors_allowed: true,
                                focus: if k % 32 == 0 { 0..n } else { seg.entries.clone() },
                            },
                        )
                    }
                }
            },
        );
    }
    eprintln!(
        "{} flips: open failed {failed_open}, opened {opened}; of the {} in a term field, open failed {}, the others were refused on lookup",
        flips.len(),
        term_flips.0 + term_flips.1,
        term_flips.0
    );
    cases.finish();
}

#[test]
fn sealed_segment_cut_fails_open_unless_salvaging() {
    let fx = Fixture::build();
    let mut rng = XorShift::new(SEED ^ 4);
    let mut cases = Cases::default();
    for seg in sample_sealed(&fx, &mut rng, 6) {
        let mut cuts: Vec<u64> = vec![0, 1, seg.len - 1];
        for e in &fx.entries[seg.entries.clone()] {
            cuts.extend([e.pos, e.pos + 1 + rng.below(e.len() - 1)]);
        }
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            let n = entries_before(&fx, &seg, cut);
            let boundary = is_boundary(&fx, &seg, cut);
            cases.run(format!("cut sealed segment {} at {cut}/{}", seg.base, seg.len), || {
                let s = fx.copy();
                truncate(&s.file(seg.base, LOG_SUFFIX), cut);
                match open(&s.0, RecoveryMode::TolerateTornTail) {
                    Err(e) if e.is_corruption() => Ok(()),
                    Err(e) => Err(format!("open: {e}")),
                    Ok((_, report)) => Err(format!("open succeeded: {report:?}")),
                }
            });
            cases.run(
                format!("salvage: cut sealed segment {} at {cut}/{}", seg.base, seg.len),
                || {
                    let s = fx.copy();
                    truncate(&s.file(seg.base, LOG_SUFFIX), cut);
                    let (log, report) = open(&s.0, RecoveryMode::Salvage).map_err(|e| format!("open: {e}"))?;
                    if report.cuts.is_empty() != boundary {
                        return Err(format!("boundary {boundary} but cuts {:?}", report.cuts));
                    }
                    // Every later segment is gone, from the report and the directory.
                    let later: Vec<u64> = fx.segments.iter().map(|g| g.base).filter(|b| *b > seg.base).collect();
                    for b in &later {
                        if s.file(*b, LOG_SUFFIX).exists()
                            || s.file(*b, "index").exists()
                            || s.file(*b, "timeindex").exists()
                        {
                            return Err(format!("segment {b} after the cut still exists"));
                        }
                        if !report.removed_segments.contains(&s.file(*b, LOG_SUFFIX)) {
                            return Err(format!("segment {b} not reported removed: {report:?}"));
                        }
                    }
                    check_log(
                        &log,
                        &fx,
                        &Expect {
                            n,
                            errors_allowed: false,
                            focus: seg.entries.start..n,
                        },
                    )?;
                    check_appends_after(log, &fx, n)
                },
            );
        }
    }
    cases.finish();
}

#[derive(Debug, Clone, Copy)]
enum IndexDamage {
    Truncate(u64),
    Flip(u64, u32),
    Delete,
    Garbage(u64),
}

#[test]
fn damaged_sealed_indexes_are_rebuilt_or_caught_never_trusted_wrongly() {
    let fx = Fixture::build();
    let mut rng = XorShift::new(SEED ^ 5);
    let mut plan: Vec<(SegmentLayout, &str, IndexDamage)> = Vec::new();
    let segs = sample_sealed(&fx, &mut rng, 6);
    for (si, seg) in segs.iter().enumerate() {
        for suffix in ["index", "timeindex"] {
            let len = std::fs::metadata(fx.pristine.join(segment_file_name(Offset(seg.base), suffix)))
                .unwrap()
                .len();
            let mut damage = vec![
                IndexDamage::Delete,
                IndexDamage::Garbage(len),
                IndexDamage::Garbage(rng.range(1, 200)),
                IndexDamage::Truncate(0),
                IndexDamage::Truncate(rng.below(len.max(1))),
                IndexDamage::Truncate(len / 12 / 2 * 12),
                IndexDamage::Truncate(len + 12),
            ];
            if si == 1 {
                // One segment gets every byte of its indexes flipped.
                damage.extend((0..len).map(|p| IndexDamage::Flip(p, rng.below(8) as u32)));
            } else if len > 0 {
                damage.extend((0..12).map(|_| IndexDamage::Flip(rng.below(len), rng.below(8) as u32)));
            }
            plan.extend(damage.into_iter().map(|d| (seg.clone(), suffix, d)));
        }
    }
    let mut cases = Cases::default();
    let (mut rebuilt, mut trusted) = (0, 0);
    for (k, (seg, suffix, damage)) in plan.iter().enumerate() {
        cases.run(format!("{damage:?} {suffix} of sealed segment {}", seg.base), || {
            let s = fx.copy();
            let path = s.file(seg.base, suffix);
            match *damage {
                IndexDamage::Truncate(len) => truncate(&path, len),
                IndexDamage::Flip(p, bit) => flip_bit(&path, p, bit),
                IndexDamage::Delete => std::fs::remove_file(&path).unwrap(),
                IndexDamage::Garbage(len) => {
                    let mut g = XorShift::new(SEED ^ len ^ seg.base);
                    std::fs::write(&path, (0..len).map(|_| g.next_u64() as u8).collect::<Vec<_>>()).unwrap()
                }
            }
            let (log, report) = open(&s.0, RecoveryMode::TolerateTornTail).map_err(|e| format!("open: {e}"))?;
            if !report.cuts.is_empty() || !report.removed_segments.is_empty() || report.rebuilt_indexes > 1 {
                return Err(format!("index damage changed the log: {report:?}"));
            }
            let must_rebuild = match *damage {
                IndexDamage::Delete | IndexDamage::Garbage(_) => true,
                IndexDamage::Truncate(len) => len % 12 != 0 || (len == 0 && *suffix == "index"),
                _ => false,
            };
            if must_rebuild && report.rebuilt_indexes != 1 {
                return Err(format!("damage not detected: {report:?}"));
            }
            if report.rebuilt_indexes == 1 {
                rebuilt += 1;
            } else {
                trusted += 1;
            }
            let n = fx.entries.len();
            let x = Expect {
                n,
                // Damage that passed the sanity checks may still be caught at lookup; but a
                // rebuilt index must answer everything.
                errors_allowed: report.rebuilt_indexes == 0,
                focus: if k % 32 == 0 { 0..n } else { seg.entries.clone() },
            };
            check_log(&log, &fx, &x)?;
            // A rebuilt index is sealed again: the next open trusts it and still answers right.
            drop(log);
            let (log, report) = open(&s.0, RecoveryMode::Strict).map_err(|e| format!("reopen: {e}"))?;
            if x.errors_allowed {
                return Ok(());
            }
            if report.rebuilt_indexes != 0 {
                return Err(format!("rebuilt index not trusted on reopen: {report:?}"));
            }
            check_log(&log, &fx, &x)
        });
    }
    eprintln!(
        "{} damaged indexes: rebuilt {rebuilt}, passed the checks {trusted}",
        plan.len()
    );
    cases.finish();
}

#[test]
fn damaged_log_start_is_a_corruption_error() {
    let fx = Fixture::build();
    // A valid log-start for this log: offset 0, index 1, previous term 0, no reset pending.
    let payload = [0u8; 25];
    let mut good_payload = payload;
    good_payload[15] = 1;
    let s = fx.copy();
    let path = s.0.join(strata_storage::log::LOG_START_FILE);
    durable::write_atomic(&path, &good_payload).unwrap();
    let framed = std::fs::read(&path).unwrap();
    let (log, _) = open(&s.0, RecoveryMode::Strict).expect("a valid log-start opens");
    assert_eq!(log.next_index().0 as usize, fx.entries.len() + 1);
    drop(log);

    let mut cases = Cases::default();
    let mut rng = XorShift::new(SEED ^ 6);
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in 0..framed.len() {
        variants.push((format!("truncated to {cut}"), framed[..cut].to_vec()));
    }
    for p in 0..framed.len() {
        let mut b = framed.clone();
        b[p] ^= 1 << rng.below(8);
        variants.push((format!("bit flipped at {p}"), b));
    }
    for len in [1, 13, 38, 100, 4096] {
        variants.push((
            format!("{len} bytes of garbage"),
            (0..len).map(|_| rng.next_u64() as u8).collect(),
        ));
    }
    variants.push(("extra byte".into(), [framed.clone(), vec![0]].concat()));
    // Well framed, but the payload is not a log start.
    for (what, p) in [
        ("24-byte payload", good_payload[..24].to_vec()),
        ("26-byte payload", [&good_payload[..], &[0]].concat()),
        ("unknown flag", {
            let mut p = good_payload.to_vec();
            p[24] = 2;
            p
        }),
        ("index 0", payload.to_vec()),
        ("empty payload", Vec::new()),
    ] {
        let t = fx.copy();
        let tp = t.0.join("framed");
        durable::write_atomic(&tp, &p).unwrap();
        variants.push((what.into(), std::fs::read(&tp).unwrap()));
    }
    for (what, bytes) in variants {
        cases.run(format!("log-start {what}"), || {
            let s = fx.copy();
            std::fs::write(s.0.join(strata_storage::log::LOG_START_FILE), &bytes).unwrap();
            match open(&s.0, RecoveryMode::TolerateTornTail) {
                Err(e) if e.is_corruption() => Ok(()),
                Err(e) => Err(format!("open: {e}")),
                Ok((_, report)) => Err(format!("open succeeded: {report:?}")),
            }
        });
    }
    cases.finish();
}

#[test]
fn orphan_index_files_and_a_stale_tmp_are_removed() {
    let fx = Fixture::build();
    let s = fx.copy();
    let end = fx.end_offset(fx.entries.len());
    // Orphans: past the end (a segment whose log was never created or already deleted), and
    // between two segments.
    let between = fx.segments[2].base + 1;
    let orphans = [
        s.file(end + 100, "index"),
        s.file(end + 100, "timeindex"),
        s.file(between, "index"),
        s.file(between, "timeindex"),
        s.file(0, "timeindex.bak"),
    ];
    for o in &orphans {
        std::fs::write(o, vec![7u8; 24]).unwrap();
    }
    let tmp = s.0.join(format!("{}.tmp", strata_storage::log::LOG_START_FILE));
    std::fs::write(&tmp, b"half-written").unwrap();
    let (log, report) = open(&s.0, RecoveryMode::Strict).unwrap();
    assert!(report.cuts.is_empty() && report.rebuilt_indexes == 0, "{report:?}");
    for o in &orphans[..4] {
        assert!(!o.exists(), "orphan {} survived", o.display());
    }
    assert!(orphans[4].exists(), "a file that is not a segment file is left alone");
    assert!(!tmp.exists(), "stale log-start.tmp survived");
    let n = fx.entries.len();
    check_log(
        &log,
        &fx,
        &Expect {
            n,
            errors_allowed: false,
            focus: 0..n,
        },
    )
    .unwrap();
    // The same with a real log-start and its stale temp file.
    drop(log);
    let mut start = [0u8; 25];
    start[15] = 1;
    durable::write_atomic(&s.0.join(strata_storage::log::LOG_START_FILE), &start).unwrap();
    std::fs::write(&tmp, b"garbage").unwrap();
    let (log, _) = open(&s.0, RecoveryMode::Strict).unwrap();
    assert!(!tmp.exists());
    assert_eq!(log.next_index().0 as usize, n + 1);
}

#[test]
fn fixture_is_intact_under_every_recovery_mode() {
    let fx = Fixture::build();
    for mode in [
        RecoveryMode::Strict,
        RecoveryMode::TolerateTornTail,
        RecoveryMode::Salvage,
    ] {
        let s = fx.copy();
        let (log, report) = open(&s.0, mode).unwrap();
        assert!(
            report.cuts.is_empty() && report.rebuilt_indexes == 0,
            "{mode:?}: {report:?}"
        );
        let n = fx.entries.len();
        check_log(
            &log,
            &fx,
            &Expect {
                n,
                errors_allowed: false,
                focus: 0..n,
            },
        )
        .unwrap();
    }
    const { assert!(BROKER_FIELDS_LEN == 32 && TERM_FIELD.end <= field::PREFIX_CRC) };
}

/// A sealed segment that lost its trailing control batches still ends at the next segment's
/// base offset (control batches take no offset), so only the Raft index shows the gap. Recovery
/// must not take the next segment's first batch for a torn tail and silently drop that segment.
#[test]
fn sealed_segment_missing_its_trailing_control_batch_fails_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (mut log, _) = PartitionLog::open(&dir, cfg()).unwrap();
    let mut i = 1;
    let mut append = |log: &mut PartitionLog, b: RecordBatch| {
        let info = log.append(&b, RaftTerm(1), RaftIndex(i)).unwrap();
        i += 1;
        info
    };
    for seed in 1..=3 {
        assert!(!append(&mut log, data_batch(seed, 1, 900, 0)).rolled);
    }
    let keep = log.size_bytes();
    append(&mut log, noop_batch(0));
    append(&mut log, noop_batch(0));
    assert!(append(&mut log, data_batch(6, 1, 1200, 0)).rolled);
    append(&mut log, data_batch(7, 1, 10, 0));
    assert_eq!(log.segment_count(), 2);
    log.close().unwrap();
    truncate(&dir.join(segment_file_name(Offset(0), LOG_SUFFIX)), keep);

    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        let s = tmp.path().join(format!("{mode:?}"));
        copy_dir(&dir, &s);
        match open(&s, mode) {
            Err(e) => assert!(e.is_corruption(), "{mode:?}: {e}"),
            Ok((log, report)) => panic!(
                "{mode:?}: open succeeded at next index {} after losing sealed entries: {report:?}",
                log.next_index()
            ),
        }
    }
    // Salvage keeps what precedes the gap and removes the rest.
    let (log, report) = open(&dir, RecoveryMode::Salvage).unwrap();
    assert_eq!(log.next_index(), RaftIndex(4), "{report:?}");
    assert_eq!(report.removed_segments.len(), 1, "{report:?}");
}

/// Where each batch of a log directory sits: (segment base offset, position, header).
fn layout(dir: &Path) -> Vec<(u64, u64, BatchHeader)> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let (stem, suffix) = name.split_once('.')?;
            (suffix == LOG_SUFFIX).then(|| stem.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    let mut out = Vec::new();
    for base in bases {
        let data = std::fs::read(dir.join(segment_file_name(Offset(base), LOG_SUFFIX))).unwrap();
        let mut pos = 0;
        while pos < data.len() {
            let h = BatchHeader::parse(&data[pos..]).unwrap();
            out.push((base, pos as u64, h));
            pos += h.total_len();
        }
    }
    out
}

/// A log of `n` data batches of 3 records each (offsets 3k..3k+3, timestamps 1000k..), term 1,
/// in several tiny segments; every batch has an offset-index entry.
fn three_record_log(dir: &Path, n: u64) {
    let (mut log, _) = PartitionLog::open(dir, cfg()).unwrap();
    for i in 1..=n {
        log.append(&data_batch(i, 3, 90, 1000 * i as i64), RaftTerm(1), RaftIndex(i))
            .unwrap();
    }
    assert!(log.segment_count() >= 3);
    log.close().unwrap();
}

/// A damaged offset-index entry can still pass the checks on open (entries in order, inside
/// the file). Here entry 2 of the first sealed segment claims relative offset 5 where its batch
/// starts at 6: a read of offset 5 used to start at that batch and silently skip offset 5.
#[test]
fn read_checks_the_batch_a_damaged_index_entry_points_to() {
    let tmp = tempfile::tempdir().unwrap();
    three_record_log(tmp.path(), 30);
    let index = tmp.path().join(segment_file_name(Offset(0), "index"));
    let mut bytes = std::fs::read(&index).unwrap();
    assert_eq!(&bytes[24..28], &6u32.to_be_bytes(), "entry 2 starts at offset 6");
    bytes[24..28].copy_from_slice(&5u32.to_be_bytes());
    std::fs::write(&index, bytes).unwrap();

    let (log, report) = open(tmp.path(), RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(report.rebuilt_indexes, 0, "the damage passes the checks: {report:?}");
    let end = log.next_offset();
    match log.read(Offset(5), 1, end) {
        Ok(r) => {
            let h = BatchHeader::parse(&r.bytes).unwrap();
            assert_eq!(h.base_offset, Offset(3), "read(5) must start with the batch holding 5");
        }
        Err(e) => assert!(e.is_corruption(), "{e}"),
    }
    // Lookups that do not go through the damaged entry still answer.
    for off in [0, 3, 4, 9, 12] {
        let r = log.read(Offset(off), 1, end).unwrap();
        let h = BatchHeader::parse(&r.bytes).unwrap();
        assert_eq!(h.base_offset, Offset(off / 3 * 3));
    }
}

/// The base offset and Raft index of a batch are outside its batch CRC (the prefix CRC covers
/// them), and a sealed segment is only checked from its last index entry on open. A flipped base
/// offset in the middle of one used to be served as is by `entries`, `read` (as the first batch
/// of a read) and `offset_for_timestamp`.
#[test]
fn reads_reject_a_sealed_batch_whose_base_offset_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    three_record_log(tmp.path(), 30);
    let (base, pos, h) = layout(tmp.path())[2];
    assert_eq!((base, h.raft_index, h.base_offset), (0, RaftIndex(3), Offset(6)));
    flip_bit(&tmp.path().join(segment_file_name(Offset(0), LOG_SUFFIX)), pos + 7, 4);

    let (log, report) = open(tmp.path(), RecoveryMode::TolerateTornTail).unwrap();
    assert!(report.cuts.is_empty() && report.rebuilt_indexes == 0, "{report:?}");
    let e = log.entries(RaftIndex(3), RaftIndex(4), usize::MAX).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(e.to_string().contains("prefix crc mismatch"), "{e}");
    // A header-only walk over it fails too.
    let e = log.term(RaftIndex(3)).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    for off in [6, 7, 8] {
        let e = log.read(Offset(off), 1, log.next_offset()).unwrap_err();
        assert!(e.is_corruption(), "read({off}): {e}");
    }
    match log.offset_for_timestamp(3000) {
        Ok(o) => assert_eq!(o, Some(Offset(6))),
        Err(e) => assert!(e.is_corruption(), "{e}"),
    }
    // Lookups that do not pass over it are still served.
    let got = log.entries(RaftIndex(2), RaftIndex(3), usize::MAX).unwrap();
    assert_eq!(got[0].header.base_offset, Offset(3));
    assert_eq!(log.read(Offset(9), 1, log.next_offset()).unwrap().batches, 1);
    assert_eq!(log.offset_for_timestamp(5000).unwrap(), Some(Offset(12)));
}

/// The term is outside the batch CRC. Before the prefix CRC, recovery only checked that it never
/// decreases: a raised term on the last batch of the last sealed segment passed, and made the
/// active segment's first batch look like a term regression — so the whole active segment was cut
/// as a torn tail. It must fail open instead, and now fails it at the damaged batch itself.
#[test]
fn raised_term_at_the_end_of_a_sealed_segment_fails_open_instead_of_dropping_the_active_segment() {
    let tmp = tempfile::tempdir().unwrap();
    three_record_log(tmp.path(), 30);
    let batches = layout(tmp.path());
    let active = batches.last().unwrap().0;
    let &(base, pos, _) = batches.iter().rev().find(|b| b.0 != active).unwrap();
    flip_bit(
        &tmp.path().join(segment_file_name(Offset(base), LOG_SUFFIX)),
        pos + field::RAFT_TERM as u64 + 7,
        3,
    );

    let e = open(tmp.path(), RecoveryMode::TolerateTornTail).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    match &e {
        Error::Corruption { path, position, reason } => {
            assert_eq!(
                (path, *position),
                (&tmp.path().join(segment_file_name(Offset(base), LOG_SUFFIX)), pos)
            );
            assert!(reason.contains("prefix crc mismatch"), "{reason}");
        }
        other => panic!("{other}"),
    }
    let e = open(tmp.path(), RecoveryMode::Strict).unwrap_err();
    assert!(e.is_corruption(), "{e}");
}

/// Salvage cuts the log at the first damage wherever it is. A sealed segment emptied by the
/// damage used to fail open ("sealed segment holds no records") even under salvage; it now ends
/// the salvaged log, and later segments go.
#[test]
fn salvage_ends_the_log_at_an_emptied_sealed_segment() {
    let tmp = tempfile::tempdir().unwrap();
    three_record_log(tmp.path(), 30);
    let batches = layout(tmp.path());
    let second = batches.iter().find(|b| b.0 != 0).unwrap();
    let (base, first_index) = (second.0, second.2.raft_index);
    truncate(&tmp.path().join(segment_file_name(Offset(base), LOG_SUFFIX)), 0);

    let e = open(tmp.path(), RecoveryMode::TolerateTornTail).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    let (mut log, report) = open(tmp.path(), RecoveryMode::Salvage).unwrap();
    assert_eq!((log.next_index(), log.next_offset()), (first_index, Offset(base)));
    assert_eq!(log.segment_count(), 2, "{report:?}");
    assert!(!report.removed_segments.is_empty(), "{report:?}");
    for later in batches.iter().map(|b| b.0).filter(|b| *b > base) {
        assert!(!tmp.path().join(segment_file_name(Offset(later), LOG_SUFFIX)).exists());
    }
    // The salvaged log takes appends where it now ends, and keeps them.
    log.append(&data_batch(99, 1, 10, 0), RaftTerm(2), first_index).unwrap();
    log.close().unwrap();
    let (log, report) = open(tmp.path(), RecoveryMode::Strict).unwrap();
    assert!(report.cuts.is_empty(), "{report:?}");
    assert_eq!(log.next_index(), RaftIndex(first_index.0 + 1));
}
