//! Choosing a partition for each record.
//!
//! # Keyed records: murmur2, as Kafka
//!
//! A record with a key goes to `(murmur2(key) & 0x7fffffff) % partition_count`, where
//! [`murmur2`] is Kafka's variant of MurmurHash2 (seed `0x9747b28c`, the tail bytes mixed in
//! little-endian order, result as a signed 32-bit integer). This is exactly what Kafka's Java
//! producer computes, so a key lands on the same partition as it would there, and it is part of
//! Strata's compatibility promise: it never changes between versions. The tests pin Kafka's own
//! murmur2 vectors and a table of key → partition mappings. The hash runs over *all*
//! partitions, not only those with a leader right now, so an election never moves a key.
//!
//! # Keyless records
//!
//! [`KeylessStrategy`] picks how records without a key spread:
//!
//! - `Sticky` (default): stick to one partition until about `batch_size` bytes went to it, then
//!   move to the least-loaded other partition. Few, full batches instead of many small ones —
//!   Kafka's built-in (KIP-480/794) behaviour.
//! - `RoundRobin`: each record to the next partition, in turn.
//! - `LeastLoaded`: each record to the partition whose leader has the fewest bytes in flight
//!   (buffered in the producer or sent and not yet acknowledged), ties broken in turn. Routes
//!   around a slow broker.
//!
//! All three consider only partitions that have a leader (all of them if none has).
//!
//! A record with an explicit partition bypasses the partitioner. Custom placement implements
//! [`Partitioner`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use crate::metadata::TopicInfo;

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java uses the length as an int; keys are far below 2^31 bytes, and any truncation here
    // is only a (stable) hash input.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition a key maps to among `partition_count` partitions (Kafka's
/// `toPositive(murmur2(key)) % numPartitions`). `partition_count` must be positive.
pub fn key_partition(key: &[u8], partition_count: usize) -> i32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32 as usize;
    // Lossless: the remainder is at most `positive`, which is below 2^31.
    (positive % partition_count.max(1)) as i32
}

/// What a partitioner may look at.
#[derive(Debug, Clone, Copy)]
pub struct PartitionerContext<'a> {
    topic: &'a TopicInfo,
    leader_loads: &'a HashMap<i32, u64>,
}

impl<'a> PartitionerContext<'a> {
    /// A context over `topic`'s metadata and the bytes in flight per leader node id.
    pub fn new(topic: &'a TopicInfo, leader_loads: &'a HashMap<i32, u64>) -> Self {
        Self { topic, leader_loads }
    }

    /// The topic's metadata.
    pub fn topic(&self) -> &TopicInfo {
        self.topic
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> usize {
        self.topic.partition_count()
    }

    /// Partitions with a leader, ascending; all partitions if none has one.
    pub fn candidates(&self) -> Candidates<'_> {
        let available = self.topic.available_partitions();
        if available.is_empty() {
            Candidates::All(self.topic.partition_count())
        } else {
            Candidates::Available(available)
        }
    }

    /// Bytes the producer has buffered or in flight for the leader of `partition` (0 if it has
    /// no leader).
    pub fn leader_load(&self, partition: i32) -> u64 {
        self.topic
            .partition(partition)
            .and_then(|p| p.leader)
            .and_then(|n| self.leader_loads.get(&n))
            .copied()
            .unwrap_or(0)
    }
}

/// The partitions a keyless record may go to.
#[derive(Debug, Clone, Copy)]
pub enum Candidates<'a> {
    /// These partitions (those with a leader).
    Available(&'a [i32]),
    /// Partitions `0..n` (none has a leader right now).
    All(usize),
}

impl Candidates<'_> {
    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Candidates::Available(a) => a.len(),
            Candidates::All(n) => *n,
        }
    }

    /// Whether there are none (a topic with no partitions).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th candidate (`i < len()`).
    pub fn get(&self, i: usize) -> i32 {
        match self {
            Candidates::Available(a) => a.get(i).copied().unwrap_or(0),
            Candidates::All(_) => i32::try_from(i).unwrap_or(0),
        }
    }
}

/// Chooses a partition for a record that names none.
pub trait Partitioner: Send + Sync + Debug {
    /// The partition for a record with `key` (`None`: keyless) whose encoded size is about
    /// `record_size` bytes. Must return an index below `ctx.partition_count()`; the producer
    /// rejects anything else with [`crate::Error::UnknownPartition`].
    fn partition(&self, key: Option<&[u8]>, record_size: usize, ctx: &PartitionerContext<'_>) -> i32;
}

/// How records without a key are spread. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeylessStrategy {
    /// Fill a batch's worth on one partition, then move to the least-loaded other one.
    #[default]
    Sticky,
    /// Next partition for each record.
    RoundRobin,
    /// The partition whose leader has the fewest bytes in flight.
    LeastLoaded,
}

#[derive(Debug, Default)]
struct TopicState {
    /// Rotating counter for round robin and tie-breaking.
    next: usize,
    /// Sticky partition and bytes sent to it since it was chosen.
    sticky: Option<(i32, usize)>,
}

/// The default partitioner: murmur2 for keys, a [`KeylessStrategy`] for the rest.
#[derive(Debug)]
pub struct DefaultPartitioner {
    keyless: KeylessStrategy,
    sticky_bytes: usize,
    topics: Mutex<HashMap<String, TopicState>>,
}

impl DefaultPartitioner {
    /// Keyless records spread by `keyless`; `sticky_bytes` is how much goes to one partition
    /// before a sticky partitioner moves on (the producer passes its `batch_size`).
    pub fn new(keyless: KeylessStrategy, sticky_bytes: usize) -> Self {
        Self {
            keyless,
            sticky_bytes: sticky_bytes.max(1),
            topics: Mutex::new(HashMap::new()),
        }
    }

    /// The keyless strategy.
    pub fn keyless(&self) -> KeylessStrategy {
        self.keyless
    }

    fn with_state<T>(&self, topic: &str, f: impl FnOnce(&mut TopicState) -> T) -> T {
        let mut topics = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = topics.get_mut(topic) {
            return f(s);
        }
        f(topics.entry(topic.to_owned()).or_default())
    }
}

/// The least-loaded candidate other than `exclude` (unless it is the only one), scanning from
/// `start` so that ties rotate.
fn least_loaded(ctx: &PartitionerContext<'_>, start: usize, exclude: Option<i32>) -> i32 {
    let c = ctx.candidates();
    let n = c.len();
    if n == 0 {
        return 0;
    }
    let mut best: Option<(u64, i32)> = None;
    for i in 0..n {
        let p = c.get((start + i) % n);
        if n > 1 && Some(p) == exclude {
            continue;
        }
        let load = ctx.leader_load(p);
        if best.is_none_or(|(l, _)| load < l) {
            best = Some((load, p));
        }
    }
    best.map_or(0, |(_, p)| p)
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, key: Option<&[u8]>, record_size: usize, ctx: &PartitionerContext<'_>) -> i32 {
        if let Some(key) = key {
            return key_partition(key, ctx.partition_count());
        }
        let topic = ctx.topic().name.as_str();
        match self.keyless {
            KeylessStrategy::RoundRobin => {
                let c = ctx.candidates();
                let i = self.with_state(topic, |s| {
                    let i = s.next;
                    s.next = s.next.wrapping_add(1);
                    i
                });
                c.get(i % c.len().max(1))
            }
            KeylessStrategy::LeastLoaded => {
                let start = self.with_state(topic, |s| {
                    s.next = s.next.wrapping_add(1);
                    s.next
                });
                least_loaded(ctx, start, None)
            }
            KeylessStrategy::Sticky => self.with_state(topic, |s| {
                let c = ctx.candidates();
                let still_valid = |p: i32| (0..c.len()).any(|i| c.get(i) == p);
                match s.sticky {
                    Some((p, bytes)) if bytes < self.sticky_bytes && still_valid(p) => {
                        s.sticky = Some((p, bytes.saturating_add(record_size)));
                        p
                    }
                    current => {
                        s.next = s.next.wrapping_add(1);
                        let p = least_loaded(ctx, s.next, current.map(|(p, _)| p));
                        s.sticky = Some((p, record_size));
                        p
                    }
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strata_protocol::ErrorCode;

    use super::*;
    use crate::metadata::PartitionInfo;

    fn topic(leaders: &[Option<i32>]) -> TopicInfo {
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(i, l)| PartitionInfo {
                partition: i as i32,
                error: ErrorCode::None,
                leader: *l,
                leader_term: 1,
                replicas: vec![],
                in_sync: vec![],
                log_start_offset: 0,
                high_watermark: 0,
            })
            .collect();
        TopicInfo::new("t".into(), ErrorCode::None, partitions, BTreeMap::new())
    }

    /// Kafka's own `UtilsTest.testMurmur2` vectors: the Java implementation's results.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    /// Pinned key → partition mappings. These must never change: producers in the field rely
    /// on a key always landing on the same partition. (From the Kafka vectors above:
    /// `(h & 0x7fffffff) % n`.)
    #[test]
    fn key_partitions_are_pinned() {
        let cases: [(&[u8], usize, i32); 8] = [
            (b"21", 3, 0),                          // 1_173_551_340 % 3
            (b"21", 12, 0),                         // 1_173_551_340 % 12
            (b"foobar", 3, 0),                      // 1_357_151_166 % 3
            (b"foobar", 12, 6),                     // 1_357_151_166 % 12
            (b"abc", 7, 4),                         // 479_470_107 % 7
            (b"abc", 12, 3),                        // 479_470_107 % 12
            (b"a-little-bit-long-string", 7, 1),    // 1_161_502_112 % 7
            (b"a-little-bit-longer-string", 10, 9), // 661_178_819 % 10
        ];
        for (key, n, expected) in cases {
            assert_eq!(
                key_partition(key, n),
                expected,
                "{} over {n}",
                String::from_utf8_lossy(key)
            );
        }
        // Keyed placement ignores leader availability.
        let t = topic(&[Some(1), Some(1), None]);
        let loads = HashMap::new();
        let ctx = PartitionerContext::new(&t, &loads);
        let p = DefaultPartitioner::new(KeylessStrategy::Sticky, 100);
        assert_eq!(p.partition(Some(b"a-little-bit-long-string"), 10, &ctx), 2);
    }

    #[test]
    fn round_robin_cycles_over_available_partitions() {
        let t = topic(&[Some(1), None, Some(1), Some(2)]);
        let loads = HashMap::new();
        let ctx = PartitionerContext::new(&t, &loads);
        let p = DefaultPartitioner::new(KeylessStrategy::RoundRobin, 100);
        let got: Vec<i32> = (0..6).map(|_| p.partition(None, 10, &ctx)).collect();
        assert_eq!(got, [0, 2, 3, 0, 2, 3]);
    }

    #[test]
    fn sticky_fills_a_batch_then_moves_to_the_least_loaded() {
        let t = topic(&[Some(1), Some(2), Some(3)]);
        let mut loads = HashMap::from([(1, 500), (2, 0), (3, 100)]);
        let p = DefaultPartitioner::new(KeylessStrategy::Sticky, 100);
        let ctx = PartitionerContext::new(&t, &loads);
        let first = p.partition(None, 40, &ctx);
        assert_eq!(first, 1, "least loaded leader is node 2 (partition 1)");
        assert_eq!(p.partition(None, 40, &ctx), 1);
        assert_eq!(p.partition(None, 40, &ctx), 1); // 120 bytes now: the next record moves on
        loads.insert(2, 1000);
        let ctx = PartitionerContext::new(&t, &loads);
        assert_eq!(p.partition(None, 40, &ctx), 2, "moves to node 3, now the least loaded");
        assert_eq!(p.partition(None, 40, &ctx), 2);
    }

    #[test]
    fn least_loaded_prefers_idle_leaders_and_rotates_ties() {
        let t = topic(&[Some(1), Some(1), Some(2), Some(3)]);
        let loads = HashMap::from([(1, 10), (2, 0), (3, 0)]);
        let ctx = PartitionerContext::new(&t, &loads);
        let p = DefaultPartitioner::new(KeylessStrategy::LeastLoaded, 100);
        let got: Vec<i32> = (0..4).map(|_| p.partition(None, 10, &ctx)).collect();
        assert!(got.iter().all(|&x| x == 2 || x == 3), "{got:?}");
        assert!(got.contains(&2) && got.contains(&3), "ties rotate: {got:?}");
    }
}
