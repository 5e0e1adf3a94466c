//! The idempotent producer's bookkeeping: its producer id and epoch, and the next sequence
//! number of every partition it writes to.
//!
//! The sender asks for an id ([`init_producer_id`]) before sealing its first batch, then stamps
//! each batch with the id, the epoch and the partition's next sequence as it seals it (once: a
//! retry resends the same bytes). A partition's leader appends a batch only if its first
//! sequence follows the last one it appended from that producer, and answers a repeat of one of
//! the producer's last few batches with the original offset instead of appending it again. So
//! a retry of a request whose response was lost cannot duplicate records.
//!
//! When a batch with a sequence fails for good — refused (`OUT_OF_ORDER_SEQUENCE_NUMBER`,
//! `INVALID_PRODUCER_EPOCH`, any other error), retries exhausted, expired — the broker's view of
//! the partition's sequence is unknown: the batch may or may not have been appended. Rather than
//! guess, the producer drops its id ([`Sequencer::reset`]) and gets a new one before sealing
//! anything else; a broker accepts any first sequence from an id it has not seen, so later
//! batches go through. Batches already sealed under the old id are still sent (retried) as
//! they are: the broker keeps that id's state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_protocol::api::{ApiKey, InitProducerIdRequest};
use tracing::debug;

use super::accumulator::BatchSequence;
use crate::client::Client;
use crate::error::{Error, Result};

/// Most batches of one partition in one produce request when idempotent: the broker recognises
/// a retried batch among a producer's last 64 batches per partition, so a retried request of
/// more batches could not be recognised as a whole. (Kafka sends one batch per partition per
/// request and remembers 5; Strata's requests carry everything that queued up during the
/// previous request's fsync, which is what keeps one producer's throughput up.)
pub(crate) const MAX_BATCHES_PER_SEND: usize = 64;

/// A producer id and epoch from `InitProducerId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// The sequence after a batch of `record_count` records starting at `base`: sequences are
/// non-negative `i32`s and wrap from `i32::MAX` to 0 (as Kafka's).
pub(crate) fn next_sequence(base: i32, record_count: u32) -> i32 {
    let next = (i64::from(base) + i64::from(record_count)).rem_euclid(1 << 31);
    i32::try_from(next).expect("rem_euclid(2^31) is in 0..2^31")
}

/// The current producer identity and each partition's next sequence under it.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    identity: Option<ProducerIdentity>,
    /// Next base sequence per (topic, partition); a partition not listed starts at 0. One entry
    /// per partition written to since the identity was obtained.
    next: HashMap<(Arc<str>, i32), i32>,
    /// Partitions where a send under the current identity was acknowledged: the leader then
    /// knows the producer's sequence there and refuses a later send that overtakes an earlier
    /// one. Only these get several sends in flight (a leader with no state for the producer
    /// accepts any first sequence, so an overtaking send would be appended first).
    confirmed: HashMap<Arc<str>, HashSet<i32>>,
}

impl Sequencer {
    /// The identity to seal batches with, if there is one.
    pub(crate) fn identity(&self) -> Option<ProducerIdentity> {
        self.identity
    }

    /// Starts using a new identity: every partition's sequence restarts at 0.
    pub(crate) fn set_identity(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
        self.next.clear();
        self.confirmed.clear();
    }

    /// Forgets the identity (a new one must be obtained before sealing more batches).
    pub(crate) fn reset(&mut self) {
        self.identity = None;
        self.next.clear();
        self.confirmed.clear();
    }

    /// Records that a send of the partition stamped `sequence` was acknowledged.
    pub(crate) fn confirm(&mut self, topic: &Arc<str>, partition: i32, sequence: &BatchSequence) {
        if self.is_current(sequence) {
            self.confirmed.entry(Arc::clone(topic)).or_default().insert(partition);
        }
    }

    /// Whether the partition may have several sends in flight (see `confirmed`).
    pub(crate) fn is_confirmed(&self, topic: &str, partition: i32) -> bool {
        self.identity.is_some() && self.confirmed.get(topic).is_some_and(|p| p.contains(&partition))
    }

    /// Whether `sequence` was stamped under the current identity.
    pub(crate) fn is_current(&self, sequence: &BatchSequence) -> bool {
        self.identity
            .is_some_and(|id| id.producer_id == sequence.producer_id && id.producer_epoch == sequence.producer_epoch)
    }

    /// The stamp for the partition's next batch (`None` without an identity). Does not advance:
    /// call [`Sequencer::advance`] once the batch is sealed.
    pub(crate) fn peek(&self, topic: &Arc<str>, partition: i32) -> Option<BatchSequence> {
        let id = self.identity?;
        let key = (Arc::clone(topic), partition);
        Some(BatchSequence {
            producer_id: id.producer_id,
            producer_epoch: id.producer_epoch,
            base_sequence: self.next.get(&key).copied().unwrap_or(0),
        })
    }

    /// Moves the partition's next sequence past a sealed batch of `record_count` records.
    pub(crate) fn advance(&mut self, topic: &Arc<str>, partition: i32, record_count: u32) {
        if self.identity.is_none() {
            return;
        }
        let next = self.next.entry((Arc::clone(topic), partition)).or_insert(0);
        *next = next_sequence(*next, record_count);
    }
}

/// Gets a producer id and epoch from any broker, retrying retriable errors with exponential
/// backoff until `deadline`.
///
/// # Errors
/// A non-retriable error at once (e.g. [`Error::UnsupportedVersion`] from a broker without
/// `InitProducerId`); the last retriable error, or [`Error::Timeout`], once `deadline` is near.
pub(crate) async fn init_producer_id(
    client: Client,
    deadline: Instant,
    backoff: Duration,
    backoff_max: Duration,
) -> Result<ProducerIdentity> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let request = InitProducerIdRequest {
            transactional_id: None,
            transaction_timeout_ms: 0,
        };
        let error = match tokio::time::timeout_at(deadline.into(), client.send_to_any(request)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: "init producer id",
                    broker: "-".to_owned(),
                    after: started.elapsed(),
                });
            }
            Ok(Err(e)) => e,
            Ok(Ok((conn, r))) if r.error.is_ok() => {
                if r.producer_id < 0 || r.producer_epoch < 0 {
                    return Err(Error::UnexpectedResponse {
                        broker: conn.broker().to_owned(),
                        api: ApiKey::InitProducerId,
                        detail: format!("producer id {} epoch {}", r.producer_id, r.producer_epoch),
                    });
                }
                debug!(
                    producer_id = r.producer_id,
                    producer_epoch = r.producer_epoch,
                    "got a producer id"
                );
                return Ok(ProducerIdentity {
                    producer_id: r.producer_id,
                    producer_epoch: r.producer_epoch,
                });
            }
            Ok(Ok((conn, r))) => Error::Request {
                broker: conn.broker().to_owned(),
                api: ApiKey::InitProducerId,
                code: r.error,
                message: r.message,
            },
        };
        attempt = attempt.saturating_add(1);
        let wait = Client::backoff(backoff, backoff_max, attempt);
        if !error.is_retriable() || Instant::now() + wait >= deadline {
            return Err(error);
        }
        debug!(attempt, error = %error, "init producer id failed, retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_from_i32_max_to_zero() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(i32::MAX - 2, 3), 0);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 5), 3);
    }

    #[test]
    fn sequences_are_per_partition_and_restart_with_a_new_identity() {
        let t: Arc<str> = Arc::from("t");
        let mut s = Sequencer::default();
        assert_eq!(s.peek(&t, 0), None, "no identity, no stamp");
        let id = ProducerIdentity {
            producer_id: 7,
            producer_epoch: 0,
        };
        s.set_identity(id);
        assert_eq!(s.peek(&t, 0).map(|q| q.base_sequence), Some(0));
        s.advance(&t, 0, 3);
        s.advance(&t, 0, 2);
        s.advance(&t, 1, 4);
        let p0 = s.peek(&t, 0).unwrap();
        assert_eq!((p0.producer_id, p0.base_sequence), (7, 5));
        assert_eq!(s.peek(&t, 1).unwrap().base_sequence, 4);
        assert!(s.is_current(&p0));
        s.reset();
        assert!(!s.is_current(&p0));
        s.set_identity(ProducerIdentity {
            producer_id: 8,
            producer_epoch: 0,
        });
        assert_eq!(s.peek(&t, 0).unwrap().base_sequence, 0);
        assert!(!s.is_current(&p0));
    }
}
