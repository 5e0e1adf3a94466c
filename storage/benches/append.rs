//! Storage append benchmarks (criterion). Run with `cargo bench -p strata-storage --bench append`
//! on a quiet machine; compare with `fio` figures taken the same day (see the README).
//!
//! - `append_1mib_never`: 1 MiB batches, flush policy `never` (page-cache bandwidth).
//! - `append_16kib_group_commit`: 16 KiB batches, every batch made durable (policy `always`)
//!   by a separate sync thread running one fdatasync per ready cycle while appends continue —
//!   the group commit the broker's Raft driver uses. Prints the fsyncs per second achieved.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_protocol::{BatchBuilder, BatchLimits, BatchOptions, RaftIndex, RaftTerm, RecordBatch};
use strata_storage::{FlushPolicy, LogConfig, PartitionLog};

const TOTAL_BYTES: usize = 512 << 20;

fn batch_of(bytes: usize, record_len: usize) -> RecordBatch {
    let mut b = BatchBuilder::new(BatchOptions::default());
    let value = vec![0x5au8; record_len];
    while b.size_bytes() + record_len + 16 <= bytes {
        b.append(1_700_000_000_000, None, Some(&value), &[]).unwrap();
    }
    RecordBatch::validate(b.finish().unwrap(), &BatchLimits::default()).unwrap()
}

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        flush,
        ..LogConfig::default()
    }
}

fn append_never(c: &mut Criterion) {
    let batch = batch_of(1 << 20, 1024);
    let per_iter = TOTAL_BYTES / batch.len();
    let mut g = c.benchmark_group("storage");
    g.throughput(Throughput::Bytes((per_iter * batch.len()) as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("append_1mib_never", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir_in(bench_dir()).unwrap();
                let (mut log, _) = PartitionLog::open(dir.path(), config(FlushPolicy::Never)).unwrap();
                let start = Instant::now();
                for i in 0..per_iter {
                    log.append(&batch, RaftTerm(1), RaftIndex(i as u64 + 1)).unwrap();
                }
                elapsed += start.elapsed();
                drop(log);
            }
            elapsed
        })
    });
    g.finish();
}

fn append_group_commit(c: &mut Criterion) {
    let batch = batch_of(16 << 10, 1024);
    let per_iter = (TOTAL_BYTES / 2) / batch.len();
    let mut g = c.benchmark_group("storage");
    g.throughput(Throughput::Bytes((per_iter * batch.len()) as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(20));
    let mut fsyncs_total = 0u64;
    let mut batches_total = 0u64;
    let mut time_total = Duration::ZERO;
    g.bench_function("append_16kib_group_commit", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir_in(bench_dir()).unwrap();
                let (mut log, _) = PartitionLog::open(dir.path(), config(FlushPolicy::Always)).unwrap();
                let (job_tx, job_rx) = mpsc::sync_channel::<strata_storage::SyncJob>(1);
                let (done_tx, done_rx) = mpsc::sync_channel(1);
                let syncer = std::thread::spawn(move || {
                    let mut n = 0u64;
                    for job in job_rx {
                        n += 1;
                        if done_tx.send(job.run()).is_err() {
                            break;
                        }
                    }
                    n
                });
                let start = Instant::now();
                let mut in_flight = false;
                let mut i = 0;
                // Every batch counts only once durable: the loop ends when the last is synced.
                while i < per_iter || log.has_unsynced() || in_flight {
                    if i < per_iter {
                        log.append(&batch, RaftTerm(1), RaftIndex(i as u64 + 1)).unwrap();
                        i += 1;
                    }
                    let done = if in_flight && i >= per_iter {
                        Some(done_rx.recv().unwrap())
                    } else {
                        done_rx.try_recv().ok()
                    };
                    if let Some(done) = done {
                        log.complete_sync(done).unwrap();
                        in_flight = false;
                    }
                    if !in_flight
                        && log.sync_due()
                        && let Some(job) = log.begin_sync()
                    {
                        job_tx.send(job).unwrap();
                        in_flight = true;
                    }
                }
                let took = start.elapsed();
                elapsed += took;
                assert_eq!(log.durable_index(), RaftIndex(per_iter as u64 + 1));
                drop(job_tx);
                fsyncs_total += syncer.join().unwrap();
                batches_total += per_iter as u64;
                time_total += took;
            }
            elapsed
        })
    });
    g.finish();
    if !time_total.is_zero() {
        eprintln!(
            "append_16kib_group_commit: {fsyncs_total} fdatasyncs for {batches_total} batches in {:.2}s \
             = {:.0} fsyncs/s, {:.1} batches per fsync",
            time_total.as_secs_f64(),
            fsyncs_total as f64 / time_total.as_secs_f64(),
            batches_total as f64 / fsyncs_total.max(1) as f64,
        );
    }
}

/// Benchmarks write where `STRATA_BENCH_DIR` says (default: the system temp dir).
fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("STRATA_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into)
}

criterion_group!(benches, append_never, append_group_commit);
criterion_main!(benches);
