//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use strata_protocol::{BatchBuilder, BatchLimits, BatchOptions, Compression, ControlType, RecordBatch, control_batch};
use strata_storage::{FlushPolicy, LogConfig};

/// A data batch of `records` records whose values are derived from `seed`, so a test can
/// rebuild the expected bytes of any batch from its seed alone.
pub fn data_batch(seed: u64, records: u32, value_len: usize, timestamp: i64) -> RecordBatch {
    let mut b = BatchBuilder::new(BatchOptions {
        compression: if seed % 5 == 4 {
            Compression::Lz4
        } else {
            Compression::None
        },
        ..Default::default()
    });
    let mut value = vec![0u8; value_len];
    for r in 0..records {
        for (i, v) in value.iter_mut().enumerate() {
            *v = (seed as usize).wrapping_mul(31).wrapping_add(i * 7 + r as usize) as u8;
        }
        let key = seed.to_be_bytes();
        b.append(timestamp + i64::from(r), Some(&key), Some(&value), &[])
            .unwrap();
    }
    RecordBatch::validate(b.finish().unwrap(), &BatchLimits::default()).unwrap()
}

/// A control (no-op) batch.
pub fn noop_batch(timestamp: i64) -> RecordBatch {
    RecordBatch::validate(
        control_batch(ControlType::Noop, b"", timestamp).unwrap(),
        &BatchLimits::default(),
    )
    .unwrap()
}

/// Bytes of a stored batch after the broker-owned prefix: equal to the original batch's.
pub fn payload(bytes: &Bytes) -> &[u8] {
    &bytes[strata_protocol::batch::BROKER_FIELDS_LEN..]
}

/// Tiny segments and indexes so rolling, index-full and retention run constantly.
pub fn tiny_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_age: None,
        index_interval_bytes: 64,
        index_max_bytes: 1024,
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A tiny xorshift64* PRNG: reproducible from its seed, which tests print on failure.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A seed from the clock and pid, for tests that want a new run each time.
    pub fn seed_from_time() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

/// Copies the regular files of `from` into a new directory `to` (partition dirs are flat).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
