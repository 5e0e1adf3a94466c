//! Idempotent producers: what a partition's leader remembers of each producer id, to drop
//! retried batches and refuse gaps.
//!
//! A producer stamps each batch with its id, epoch and the sequence number of its first record;
//! the batch's last sequence is that plus the record count minus one (wrapping from `i32::MAX`
//! to 0, as Kafka). For each producer id the leader keeps its epoch and its last
//! [`REMEMBERED_BATCHES`] batches (sequence range, base offset, Raft index). A new batch is:
//!
//! - a **duplicate** if it has the epoch and sequence range of a remembered batch: it is not
//!   appended again; the producer gets the original's offset once the original is committed;
//! - **fenced** (`INVALID_PRODUCER_EPOCH`) if its epoch is older than the producer's;
//! - **out of order** (`OUT_OF_ORDER_SEQUENCE_NUMBER`) if, in the same epoch, its first sequence
//!   does not follow the producer's last one (a batch in between was lost);
//! - otherwise accepted. A producer id with no state here (new, or not seen in the part of the
//!   log scanned) may start at any sequence.
//!
//! The state is rebuilt from the log whenever a replica becomes leader (the log, including
//! entries a previous leader appended, is the truth; followers keep no state), reading back at
//! most [`SCAN_ENTRIES`] entries, and then kept up to date as the leader appends.

use std::collections::{HashMap, VecDeque};

use strata_protocol::{BatchHeader, ErrorCode, Offset};

/// Batches remembered per producer and partition: a retried request is recognised as a whole if
/// it carries at most this many (the client caps its requests so). Kafka remembers 5 with one
/// batch per partition per request; Strata's producers send everything that queued up during
/// the previous request's fsync (a 1 MiB request of 16 KiB batches is 64), which is what keeps
/// one producer's throughput up. About 2 KiB per active producer and partition.
pub const REMEMBERED_BATCHES: usize = 64;
/// How many of the newest log entries a new leader reads to rebuild producer state. A producer
/// idle for longer than this many batches of others is treated as new (any sequence accepted).
pub const SCAN_ENTRIES: u64 = 2000;

/// A remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqBatch {
    /// First sequence number.
    pub first: i32,
    /// Last sequence number.
    pub last: i32,
    /// The batch's base offset.
    pub base_offset: Offset,
    /// Its Raft index.
    pub index: u64,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: i16,
    batches: VecDeque<SeqBatch>,
}

/// How a batch from an idempotent producer fares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Accept,
    /// Already in the log: answer with this batch's offset.
    Duplicate(SeqBatch),
    /// Refuse it with this code and message.
    Refuse(ErrorCode, String),
}

/// The idempotence fields of a batch header (`None` for a batch without a producer id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Producer id.
    pub producer_id: i64,
    /// Epoch.
    pub epoch: i16,
    /// First sequence.
    pub first: i32,
    /// Last sequence.
    pub last: i32,
}

impl Stamp {
    /// The stamp of a batch, if its producer is idempotent.
    pub fn of(h: &BatchHeader) -> Option<Self> {
        if h.producer_id < 0 || h.base_sequence < 0 || h.record_count == 0 {
            return None;
        }
        Some(Self {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first: h.base_sequence,
            last: add_seq(h.base_sequence, h.record_count - 1),
        })
    }
}

/// `seq + n` in sequence space (wrapping from `i32::MAX` to 0).
pub fn add_seq(seq: i32, n: u32) -> i32 {
    ((i64::from(seq) + i64::from(n)) % (i64::from(i32::MAX) + 1)) as i32
}

/// Every producer's state on one partition's leader, plus what was proposed and not yet
/// appended (checked against too, so two batches proposed in one loop are in order).
#[derive(Debug, Default)]
pub struct Producers {
    producers: HashMap<i64, Producer>,
    /// Producer id → (epoch, last sequence) of batches proposed but not yet appended.
    pending: HashMap<i64, (i16, i32)>,
}

impl Producers {
    /// Forgets everything (before a rebuild).
    pub fn clear(&mut self) {
        self.producers.clear();
        self.pending.clear();
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a batch against the state (without recording it).
    pub fn check(&self, s: &Stamp) -> Check {
        let known = self.producers.get(&s.producer_id);
        let pending = self.pending.get(&s.producer_id);
        let epoch = known.map(|p| p.epoch).max(pending.map(|p| p.0));
        if let Some(e) = epoch
            && s.epoch < e
        {
            return Check::Refuse(
                ErrorCode::InvalidProducerEpoch,
                format!(
                    "producer {} epoch {} is older than epoch {e}: another producer took over its id",
                    s.producer_id, s.epoch
                ),
            );
        }
        if let Some(p) = known.filter(|p| p.epoch == s.epoch)
            && let Some(b) = p.batches.iter().find(|b| b.first == s.first && b.last == s.last)
        {
            return Check::Duplicate(*b);
        }
        let last = match pending {
            Some(&(e, last)) if e == s.epoch => Some(last),
            _ => known
                .filter(|p| p.epoch == s.epoch)
                .and_then(|p| p.batches.back())
                .map(|b| b.last),
        };
        match last {
            Some(last) if s.first != add_seq(last, 1) => Check::Refuse(
                ErrorCode::OutOfOrderSequenceNumber,
                format!(
                    "producer {} batch starts at sequence {}, expected {} (a batch in between is missing)",
                    s.producer_id,
                    s.first,
                    add_seq(last, 1)
                ),
            ),
            _ => Check::Accept,
        }
    }

    /// Records a batch as proposed (checked against by later proposals until appended);
    /// returns what it replaced, for [`restore_pending`](Self::restore_pending).
    pub fn propose(&mut self, s: &Stamp) -> Option<(i16, i32)> {
        self.pending.insert(s.producer_id, (s.epoch, s.last))
    }

    /// Undoes a [`propose`](Self::propose) of a request that was refused after all.
    pub fn restore_pending(&mut self, producer_id: i64, previous: Option<(i16, i32)>) {
        match previous {
            Some(p) => self.pending.insert(producer_id, p),
            None => self.pending.remove(&producer_id),
        };
    }

    /// Records an appended batch.
    pub fn appended(&mut self, s: &Stamp, base_offset: Offset, index: u64) {
        let p = self.producers.entry(s.producer_id).or_default();
        if s.epoch > p.epoch || p.batches.is_empty() {
            p.epoch = s.epoch;
            p.batches.clear();
        } else if s.epoch < p.epoch {
            return;
        }
        if p.batches.iter().any(|b| b.index == index) {
            return;
        }
        p.batches.push_back(SeqBatch {
            first: s.first,
            last: s.last,
            base_offset,
            index,
        });
        while p.batches.len() > REMEMBERED_BATCHES {
            p.batches.pop_front();
        }
        if self
            .pending
            .get(&s.producer_id)
            .is_some_and(|&(e, l)| e == s.epoch && l == s.last)
        {
            self.pending.remove(&s.producer_id);
        }
    }

    /// Forgets proposals not yet appended (they were appended or dropped: the Ready has been
    /// handled).
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: i16, first: i32, n: u32) -> Stamp {
        Stamp {
            producer_id: 7,
            epoch,
            first,
            last: add_seq(first, n - 1),
        }
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut p = Producers::default();
        // Unknown producer: any start.
        assert_eq!(p.check(&stamp(0, 10, 5)), Check::Accept);
        p.propose(&stamp(0, 10, 5));
        // The next proposal in the same loop must follow the pending one.
        assert!(matches!(
            p.check(&stamp(0, 16, 1)),
            Check::Refuse(ErrorCode::OutOfOrderSequenceNumber, _)
        ));
        assert_eq!(p.check(&stamp(0, 15, 1)), Check::Accept);
        p.appended(&stamp(0, 10, 5), Offset(100), 3);
        p.clear_pending();
        match p.check(&stamp(0, 10, 5)) {
            Check::Duplicate(b) => assert_eq!((b.base_offset, b.index), (Offset(100), 3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.check(&stamp(0, 15, 2)), Check::Accept);
        assert!(matches!(
            p.check(&stamp(0, 20, 1)),
            Check::Refuse(ErrorCode::OutOfOrderSequenceNumber, _)
        ));
        // A newer epoch starts over; the older one is fenced.
        p.appended(&stamp(1, 0, 1), Offset(105), 4);
        assert!(matches!(
            p.check(&stamp(0, 15, 1)),
            Check::Refuse(ErrorCode::InvalidProducerEpoch, _)
        ));
        assert_eq!(p.check(&stamp(1, 1, 1)), Check::Accept);
    }

    #[test]
    fn only_the_last_batches_are_remembered_and_sequences_wrap() {
        let mut p = Producers::default();
        let n = REMEMBERED_BATCHES as i32 + 2;
        for i in 0..n {
            p.appended(&stamp(0, i * 2, 2), Offset(i as u64 * 2), i as u64 + 1);
        }
        assert!(matches!(p.check(&stamp(0, 0, 2)), Check::Refuse(..)));
        assert!(matches!(p.check(&stamp(0, 4, 2)), Check::Duplicate(_)));
        assert!(matches!(p.check(&stamp(0, (n - 1) * 2, 2)), Check::Duplicate(_)));
        assert_eq!(add_seq(i32::MAX, 1), 0);
        assert_eq!(add_seq(i32::MAX - 1, 3), 1);
        let mut w = Producers::default();
        w.appended(&stamp(0, i32::MAX - 1, 2), Offset(0), 1);
        assert_eq!(w.check(&stamp(0, 0, 1)), Check::Accept);
    }
}
