//! Shared counters and the latency histogram, the clock, and `--verify` bookkeeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

static BASE: OnceLock<Instant> = OnceLock::new();

/// The process's clock base; every timestamp in the tool is ns since it.
pub fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since [`base`].
pub fn now_ns() -> u64 {
    u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs ..= 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Counters of one side (producers' acks, or consumers' receipts).
pub struct Stats {
    hist: Mutex<Histogram<u64>>,
    /// Latencies since the last [`Stats::take_interval`] (for the report's latency over time).
    interval: Mutex<Histogram<u64>>,
    /// Measured (after warmup) records and bytes.
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Every completed record and its bytes, warmup included (for progress and stop conditions).
    pub done: AtomicU64,
    pub done_bytes: AtomicU64,
    pub errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Completion time (ns) of the last measured record.
    pub last_ns: AtomicU64,
}

impl Stats {
    pub fn new() -> Self {
        Self {
            hist: Mutex::new(new_histogram()),
            interval: Mutex::new(new_histogram()),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            last_ns: AtomicU64::new(0),
        }
    }

    /// Many records completed at `now_ns` at once: `done`/`done_bytes` in all, of which
    /// `measured`/`measured_bytes` count (after warmup), with these latencies (may be empty when
    /// the side has no per-record latency).
    pub fn record_many(
        &self,
        done: u64,
        done_bytes: u64,
        measured: u64,
        measured_bytes: u64,
        latencies_ns: &[u64],
        now_ns: u64,
    ) {
        self.done.fetch_add(done, Ordering::Relaxed);
        self.done_bytes.fetch_add(done_bytes, Ordering::Relaxed);
        if measured == 0 {
            return;
        }
        if !latencies_ns.is_empty() {
            let mut hist = self.hist.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut interval = self.interval.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for l in latencies_ns {
                let us = (l / 1000).max(1);
                hist.saturating_record(us);
                interval.saturating_record(us);
            }
        }
        self.messages.fetch_add(measured, Ordering::Relaxed);
        self.bytes.fetch_add(measured_bytes, Ordering::Relaxed);
        self.last_ns.fetch_max(now_ns, Ordering::Relaxed);
    }

    pub fn record_latency(&self, latency_ns: u64) {
        let us = (latency_ns / 1000).max(1);
        self.hist
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .saturating_record(us);
        self.interval
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .saturating_record(us);
    }

    /// Latency percentiles since the last call, in ms.
    pub fn take_interval(&self) -> Latency {
        let mut h = self.interval.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let l = latency_of(&h);
        h.reset();
        l
    }

    /// (percentile, ms) pairs of the whole run's latency, for the percentile spectrum.
    pub fn spectrum(&self) -> Vec<(f64, f64)> {
        let h = self.hist.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if h.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<(f64, f64)> = [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
        ]
        .iter()
        .map(|p| (*p, h.value_at_percentile(*p) as f64 / 1000.0))
        .collect();
        out.push((100.0, h.max() as f64 / 1000.0));
        out
    }

    pub fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Latency percentiles so far, in ms.
    pub fn latency(&self) -> Latency {
        latency_of(&self.hist.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The final result over the measured window starting at `window_start_ns`.
    pub fn result(&self, window_start_ns: u64) -> SideResult {
        let messages = self.messages.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let last = self.last_ns.load(Ordering::Relaxed);
        let elapsed_s = last.saturating_sub(window_start_ns) as f64 / 1e9;
        let (msgs_per_sec, mb_per_sec) = if elapsed_s > 0.0 {
            (messages as f64 / elapsed_s, bytes as f64 / 1e6 / elapsed_s)
        } else {
            (0.0, 0.0)
        };
        SideResult {
            messages,
            bytes,
            elapsed_s,
            msgs_per_sec,
            mb_per_sec,
            latency_ms: self.latency(),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self.first_error(),
        }
    }
}

fn latency_of(h: &Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// One second of the run, for the report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t_s: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    /// Latency of the records completed in this second.
    pub latency_ms: Latency,
    pub errors: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Totals and rates of one side.
#[derive(Debug, Clone, Serialize)]
pub struct SideResult {
    pub messages: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub latency_ms: Latency,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// A growable bitset indexed by sequence number.
#[derive(Debug, Default, Clone)]
pub struct Bits(Vec<u64>);

impl Bits {
    /// Sets bit `i`; returns whether it was set already.
    pub fn set(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        was
    }

    pub fn get(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Every set bit.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            (0..64)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| w as u64 * 64 + b)
        })
    }
}

/// What one consumer saw, for `--verify`.
#[derive(Debug, Default)]
pub struct Verifier {
    /// Per (run, producer), the sequence numbers received.
    pub seen: HashMap<(u64, u32), Bits>,
    /// Per (partition, run, producer), the highest sequence received so far.
    last: HashMap<(i32, u64, u32), u64>,
    pub duplicates: u64,
    pub reordered: u64,
    pub corrupt: u64,
}

impl Verifier {
    pub fn observe(&mut self, partition: i32, run: u64, producer: u32, seq: u64) {
        if self.seen.entry((run, producer)).or_default().set(seq) {
            self.duplicates += 1;
            return;
        }
        match self.last.get_mut(&(partition, run, producer)) {
            Some(last) if seq < *last => self.reordered += 1,
            Some(last) => *last = seq,
            None => {
                self.last.insert((partition, run, producer), seq);
            }
        }
    }

    /// Folds another consumer's observations in (a sequence number both saw is a duplicate).
    pub fn merge(&mut self, other: Verifier) {
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.corrupt += other.corrupt;
        for (producer, bits) in other.seen {
            let mine = self.seen.entry(producer).or_default();
            for seq in bits.iter() {
                if mine.set(seq) {
                    self.duplicates += 1;
                }
            }
        }
    }
}

/// `--verify` counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyResult {
    pub checked: bool,
    /// Acknowledged records never received (only known in `e2e`).
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub corrupt: u64,
    pub violations: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_counts_duplicates_and_reordering() {
        let mut v = Verifier::default();
        for seq in [0, 1, 3, 2, 3] {
            v.observe(0, 1, 7, seq);
        }
        assert_eq!((v.duplicates, v.reordered), (1, 1));
        // Another partition has its own order; another consumer's copy is a duplicate; another
        // run's sequence numbers are its own.
        v.observe(1, 1, 7, 4);
        v.observe(0, 2, 7, 0);
        let mut other = Verifier::default();
        other.observe(2, 1, 7, 4);
        v.merge(other);
        assert_eq!((v.duplicates, v.reordered), (2, 1));
        let seen: Vec<u64> = v.seen[&(1, 7)].iter().collect();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn percentiles_are_ordered() {
        let s = Stats::new();
        let latencies: Vec<u64> = (1..=1000u64).map(|i| i * 1_000_000).collect();
        s.record_many(1000, 10_000, 1000, 10_000, &latencies, 1000);
        s.record_many(1, 10, 0, 0, &[], 2000);
        let r = s.result(0);
        assert_eq!(r.messages, 1000);
        assert!(r.latency_ms.p50 <= r.latency_ms.p99 && r.latency_ms.p99 <= r.latency_ms.max);
        assert!((r.latency_ms.p50 - 500.0).abs() < 1.0, "{:?}", r.latency_ms);
    }
}
