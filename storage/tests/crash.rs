//! Process crashes: a child process appends with flush policy `always` and reports every synced
//! batch; the parent kills it with SIGKILL at random moments and, after each kill, reopens the
//! log and checks that every reported batch is present and intact.
//!
//! The child is this test binary re-executed with `--exact crash_child` and
//! [`CHILD_DIR_ENV`] set; run normally, `crash_child` does nothing. Batch contents are a pure
//! function of the Raft index ([`batch_for`]), so the parent can check any surviving entry and
//! the child can carry on after whatever survived the previous kill.
//!
//! Rounds alternate between 64 KiB and 4 KiB segments, so kills also land while segments are
//! being sealed and created. The seed is printed (and read from `STRATA_CRASH_SEED` if set) so a
//! failing run can be repeated.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use strata_protocol::{BatchIter, BatchLimits, Offset, RaftIndex, RaftTerm, RecordBatch};
use strata_storage::{FlushPolicy, LogConfig, PartitionLog};

/// Set (to the partition directory) only in the child process.
const CHILD_DIR_ENV: &str = "STRATA_CRASH_CHILD_DIR";
/// Segment size for the child.
const CHILD_SEGMENT_ENV: &str = "STRATA_CRASH_CHILD_SEGMENT_BYTES";
/// Seed of the child's group sizes.
const CHILD_SEED_ENV: &str = "STRATA_CRASH_CHILD_SEED";
/// Rounds of spawn, kill, check.
const ROUNDS: usize = 12;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The term of Raft entry `i`: non-decreasing in `i`.
fn term_of(i: u64) -> RaftTerm {
    RaftTerm(1 + i / 700)
}

/// The batch stored as Raft entry `i`: 1..=8 records, values up to 4 KiB in total, every 13th
/// (by hash) a control batch, lz4 for seeds ≡ 4 (mod 5) as [`data_batch`] decides.
fn batch_for(i: u64) -> RecordBatch {
    let h = splitmix(i);
    let ts = 1_000_000 + i as i64 * 10;
    if h.is_multiple_of(13) {
        return noop_batch(ts);
    }
    let records = 1 + (h >> 8) % 8;
    let value_len = (h >> 16) % (4096 / records + 1);
    data_batch(i, records as u32, value_len as usize, ts)
}

fn child_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_age: None,
        index_interval_bytes: 256,
        index_max_bytes: 8192,
        flush: FlushPolicy::Always,
        ..LogConfig::default()
    }
}

/// The child: appends from wherever the log ends, syncing groups of 1..=16 batches and printing
/// `SYNCED <next index>` after each sync. Does nothing unless [`CHILD_DIR_ENV`] is set.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let segment_bytes = std::env::var(CHILD_SEGMENT_ENV).unwrap().parse().unwrap();
    let seed = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    let mut rng = XorShift::new(seed);
    let (mut log, report) = PartitionLog::open(&dir, child_config(segment_bytes)).unwrap();
    eprintln!("child: opened at {} ({report:?})", log.next_index());
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut appended = 0u64;
    while appended < 200_000 && Instant::now() < deadline {
        for _ in 0..rng.range(1, 17) {
            let i = log.next_index().0;
            log.append(&batch_for(i), term_of(i), RaftIndex(i)).unwrap();
            appended += 1;
        }
        assert!(log.sync_due());
        let durable = log.sync().unwrap();
        assert_eq!(durable, log.next_index());
        writeln!(out, "SYNCED {}", durable.0).unwrap();
        out.flush().unwrap();
    }
}

/// What one child run printed.
struct ChildRun {
    /// Largest `SYNCED` value: every entry below it was fsynced.
    max_synced: u64,
    stderr_path: std::path::PathBuf,
}

impl ChildRun {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

/// Runs the child on `dir`, waits until it has synced at least once, lets it run `delay` longer,
/// then SIGKILLs it.
fn run_and_kill_child(dir: &Path, segment_bytes: u64, seed: u64, delay: Duration, stderr_path: &Path) -> ChildRun {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEGMENT_ENV, segment_bytes.to_string())
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(stderr_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("SYNCED ") {
                let _ = tx.send(n.trim().parse::<u64>().unwrap());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut max_synced = None;
    while max_synced.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(n) => max_synced = Some(n),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let exited = child.try_wait().unwrap();
                if exited.is_some() || left.is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "child never synced (exit {exited:?})\n--- child stderr ---\n{}",
                        std::fs::read_to_string(stderr_path).unwrap_or_default()
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                panic!(
                    "child closed stdout without syncing (exit {status:?})\n--- child stderr ---\n{}",
                    std::fs::read_to_string(stderr_path).unwrap_or_default()
                );
            }
        }
    }
    std::thread::sleep(delay);
    // `Child::kill` sends SIGKILL on Unix: no destructor, no final sync.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut max_synced = max_synced.unwrap();
    for n in rx.try_iter() {
        max_synced = max_synced.max(n);
    }
    assert!(
        !status.success(),
        "child finished before it was killed; lengthen its run\n--- child stderr ---\n{}",
        std::fs::read_to_string(stderr_path).unwrap_or_default()
    );
    ChildRun {
        max_synced,
        stderr_path: stderr_path.to_path_buf(),
    }
}

/// Reopens the log after a kill and checks it against [`batch_for`]: nothing synced is missing,
/// everything present is intact, offsets are dense, and reads by offset serve it all. Returns
/// the log's next index and the number of torn bytes recovery cut.
fn check_after_crash(dir: &Path, cfg: LogConfig, max_synced: u64) -> Result<(u64, u64), String> {
    let (log, report) = PartitionLog::open(dir, cfg).map_err(|e| format!("open failed: {e}"))?;
    let next = log.next_index().0;
    if next < max_synced {
        return Err(format!(
            "lost synced entries: next index {next} after SYNCED {max_synced} ({report:?})"
        ));
    }
    // A killed process loses no page cache, so a sealed segment is always whole; only the active
    // segment can have a torn tail (a write cut short by the kill).
    if report.rebuilt_indexes != 0 || report.cuts.len() > 1 {
        return Err(format!("unexpected recovery work after a process crash: {report:?}"));
    }
    if let Some(cut) = report.cuts.first() {
        let last = *log.segment_base_offsets().last().unwrap();
        let name = cut.path.file_name().unwrap().to_string_lossy().into_owned();
        if name != strata_storage::segment::segment_file_name(last, "log") {
            return Err(format!("cut outside the active segment: {cut:?}"));
        }
    }

    // Every entry, by Raft index, byte for byte.
    let entries = log
        .entries(RaftIndex(1), RaftIndex(next), usize::MAX)
        .map_err(|e| format!("entries(1, {next}): {e}"))?;
    if entries.len() as u64 != next - 1 {
        return Err(format!("entries(1, {next}) returned {} entries", entries.len()));
    }
    let mut offset = 0u64;
    for (k, e) in entries.iter().enumerate() {
        let i = k as u64 + 1;
        let want = batch_for(i);
        let h = &e.header;
        if h.raft_index != RaftIndex(i) || h.raft_term != term_of(i) || h.base_offset != Offset(offset) {
            return Err(format!(
                "entry {i}: header (index {}, term {}, offset {}) expected (index {i}, term {}, offset {offset})",
                h.raft_index,
                h.raft_term,
                h.base_offset,
                term_of(i)
            ));
        }
        if payload(&e.bytes) != payload(want.as_bytes()) {
            return Err(format!("entry {i}: bytes differ from what was appended"));
        }
        offset += u64::from(h.record_count);
    }
    if log.next_offset() != Offset(offset) {
        return Err(format!("next offset {} but entries end at {offset}", log.next_offset()));
    }

    // Every offset, by reads from 0 to the end: each batch served is the stored one, and data
    // batches cover the offsets densely.
    let end = log.next_offset();
    let mut at = Offset(0);
    let mut covered = 0u64;
    while at < end {
        let r = log.read(at, 64 << 10, end).map_err(|e| format!("read({at}): {e}"))?;
        if r.batches == 0 || r.next_offset <= at {
            return Err(format!("read({at}) made no progress: {r:?}"));
        }
        for b in BatchIter::new(r.bytes.clone(), BatchLimits::default()) {
            let b = b.map_err(|e| format!("read({at}) served an invalid batch: {e}"))?;
            let h = b.header();
            let i = h.raft_index.0;
            if i == 0 || i >= next || b.as_bytes() != &entries[i as usize - 1].bytes {
                return Err(format!(
                    "read({at}) served batch (index {i}) that differs from entry {i}"
                ));
            }
            if !h.is_control() {
                if h.base_offset != Offset(covered) {
                    return Err(format!(
                        "read({at}) served base offset {} where {covered} was next",
                        h.base_offset
                    ));
                }
                covered = h.next_offset().0;
            }
        }
        at = r.next_offset;
    }
    if covered != end.0 {
        return Err(format!("reads covered offsets up to {covered}, log ends at {end}"));
    }
    log.close().map_err(|e| format!("close: {e}"))?;
    Ok((next, report.cuts.iter().map(|c| c.bytes).sum()))
}

#[test]
fn sigkill_during_appends_keeps_every_synced_batch() {
    let seed = std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(XorShift::seed_from_time);
    eprintln!("seed {seed} (rerun with STRATA_CRASH_SEED={seed})");
    let mut rng = XorShift::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("partition");
    let started = Instant::now();
    let mut last_next = 1;
    let mut rounds = 0;
    for round in 0..ROUNDS {
        // Leave room for the checks within the test's time budget.
        if round > 0 && started.elapsed() > Duration::from_secs(40) {
            break;
        }
        // Alternate big segments with tiny ones, so kills also hit rolls.
        let segment_bytes = if round % 2 == 0 { 64 << 10 } else { 4096 };
        let delay = Duration::from_millis(rng.range(5, 150));
        let stderr_path = tmp.path().join(format!("child-{round}.stderr"));
        let run = run_and_kill_child(&dir, segment_bytes, rng.next_u64(), delay, &stderr_path);
        match check_after_crash(&dir, child_config(segment_bytes), run.max_synced) {
            Ok((next, torn)) => {
                assert!(next >= last_next, "the log shrank from {last_next} to {next}");
                eprintln!(
                    "round {round}: segments {segment_bytes} B, killed after {delay:?}, synced {}, recovered to {next}, \
                     cut {torn} torn bytes",
                    run.max_synced
                );
                last_next = next;
            }
            Err(msg) => panic!(
                "seed {seed}, round {round} (segment_bytes {segment_bytes}, kill delay {delay:?}): {msg}\n\
                 --- child stderr ---\n{}",
                run.stderr()
            ),
        }
        rounds += 1;
    }
    assert!(rounds >= 2, "only {rounds} rounds ran");
    assert!(last_next > 1, "the child never appended anything");
}
