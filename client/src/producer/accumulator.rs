//! The record accumulator: per-partition queues of batches being filled, bounded by a memory
//! budget.
//!
//! - **Encoding.** A record is encoded into its partition's open batch as it is enqueued
//!   ([`BatchBuilder`]); no per-record copy is kept. A batch is *sealed* (compressed, header —
//!   with the idempotent producer's id, epoch and base sequence — and CRC written) once, by the
//!   sender when first drained, and resent byte for byte on retry.
//! - **Batching.** A partition's batches become sendable when the front batch is full
//!   (`batch_size`), more than one batch is queued, the front batch is older than `linger`, or
//!   someone is flushing, closing or waiting for memory.
//! - **Order.** At most one send per partition is in flight. A send that fails with a retriable
//!   error goes back to the *front* of its queue, ahead of anything enqueued meanwhile, and
//!   nothing else is sent for the partition until it succeeds or fails for good — so records
//!   reach the log in the order they were enqueued.
//! - **Retries resend the same request.** The sealed batches of a failed send stay together at
//!   the front of the queue and are drained again as one send, alone: never split, never joined
//!   by newer (unsealed) batches. A retry therefore carries exactly the batches — and sequence
//!   numbers — of the attempt it repeats, which is what lets the broker recognise it as a
//!   duplicate. They also expire together.
//! - **Memory.** Every record reserves its encoded size (an upper bound,
//!   [`BatchBuilder::record_size`]) from a semaphore of `buffer_memory` permits before it is
//!   appended, and its batch returns them when it completes. `enqueue` waits while the budget
//!   is used up: that is the producer's back-pressure. (The 77-byte batch headers and request
//!   framing are not counted.) The semaphore is FIFO, so a large record is not starved by small
//!   ones.
//!
//! The accumulator holds no task and does no I/O: the sender task drives it with [`drain`],
//! [`Accumulator::complete`] and [`Accumulator::requeue`], so its logic is tested without a
//! network.
//!
//! [`drain`]: Accumulator::drain

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_protocol::{BatchBuilder, BatchOptions, Compression, HeaderRef};
use tokio::sync::{Notify, Semaphore, watch};

use crate::error::{Error, Result};
use crate::producer::Delivery;
use crate::producer::delivery::{BatchOutcome, resolve_dropped};

/// Accumulator settings (a subset of the producer's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccumulatorConfig {
    pub batch_size: usize,
    pub linger: Duration,
    pub compression: Compression,
    pub buffer_memory: usize,
    pub delivery_timeout: Duration,
    /// Most batches in one partition's send (the idempotent producer's limit: the broker
    /// recognises a retry only among a producer's last few batches per partition). With several
    /// sends in flight, the limit is on their batches together.
    pub max_batches_per_send: usize,
    /// Most sends of one partition in flight at once (1 unless idempotent: only sequence
    /// numbers let the broker keep pipelined sends in order through a retry).
    pub max_in_flight: usize,
}

/// Memory reserved for one record; returned to the pool if dropped unused.
pub(crate) struct Reservation<'a> {
    acc: &'a Accumulator,
    bytes: usize,
}

impl Reservation<'_> {
    fn take(mut self) -> usize {
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.acc.memory.add_permits(self.bytes);
        }
    }
}

/// The idempotent producer's stamp on a batch: who sent it and the sequence number of its first
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSequence {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// A batch being filled, queued, or in flight.
pub(crate) struct ProducerBatch {
    id: u64,
    /// The encoder while the batch is open; `None` once sealed.
    builder: Option<BatchBuilder>,
    sealed: Option<Bytes>,
    compression: Compression,
    /// The producer id and sequence sealed into the batch, if idempotent.
    sequence: Option<BatchSequence>,
    /// What the batch's records' deliveries wait on.
    outcome: Arc<BatchOutcome>,
    /// Records appended so far (the next record's index in the batch).
    records: u32,
    /// Memory permits held.
    reserved: usize,
    /// Which leader's load the batch counts towards, and how much.
    load_node: Option<i32>,
    load_bytes: u64,
    pub(crate) created: Instant,
    pub(crate) attempts: u32,
    /// Once a send failed and came back: the id of that send's first batch, shared by all its
    /// batches, so the retry resends exactly them (not merged with another failed send).
    retry_group: u64,
    /// The broker refused it as out of order (so it is certainly not in the log): if the
    /// producer id it was stamped with is gone, it may be stamped again under the new one.
    pub(crate) refused: bool,
    /// The size at which it is full: `batch_size`, or its topic's smaller `max.message.bytes`.
    full_at: usize,
}

impl ProducerBatch {
    /// Bytes the batch occupies (uncompressed while open, as sealed after).
    pub(crate) fn size(&self) -> usize {
        match (&self.sealed, &self.builder) {
            (Some(b), _) => b.len(),
            (None, Some(b)) => b.size_bytes(),
            (None, None) => 0,
        }
    }

    /// Records in the batch.
    pub(crate) fn record_count(&self) -> u32 {
        self.records
    }

    /// Whether the batch's bytes are final (it has been sent, or tried to be).
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// The producer id and sequence sealed into the batch (`None` if not idempotent or not
    /// sealed yet).
    pub(crate) fn sequence(&self) -> Option<BatchSequence> {
        self.sequence
    }

    /// Whether the batch must be stamped again before it is resent: the broker refused it as out
    /// of order (it is not in the log) and its producer id is no longer the one in use.
    pub(crate) fn needs_restamp(&self, current: impl Fn(&BatchSequence) -> bool) -> bool {
        self.refused && self.sequence.is_some_and(|s| !current(&s))
    }

    /// Stamps a sealed batch the broker refused with a new producer id, epoch and sequence,
    /// recomputing its CRC (the records are untouched).
    pub(crate) fn restamp(&mut self, sequence: BatchSequence) -> Option<Bytes> {
        use strata_protocol::batch::{compute_crc, field};
        let sealed = self.sealed.as_ref()?;
        let mut buf = sealed.to_vec();
        if buf.len() < strata_protocol::HEADER_LEN {
            return None;
        }
        buf[field::PRODUCER_ID..field::PRODUCER_ID + 8].copy_from_slice(&sequence.producer_id.to_be_bytes());
        buf[field::PRODUCER_EPOCH..field::PRODUCER_EPOCH + 2].copy_from_slice(&sequence.producer_epoch.to_be_bytes());
        buf[field::BASE_SEQUENCE..field::BASE_SEQUENCE + 4].copy_from_slice(&sequence.base_sequence.to_be_bytes());
        let crc = compute_crc(&buf);
        buf[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let bytes = Bytes::from(buf);
        self.sealed = Some(bytes.clone());
        self.sequence = Some(sequence);
        self.refused = false;
        Some(bytes)
    }

    /// Compresses and finishes the batch, stamping `sequence` into its header, if that has not
    /// been done; returns its bytes. A sealed batch keeps its bytes (`sequence` is then
    /// ignored): a retry resends them unchanged.
    ///
    /// # Errors
    /// [`Error::Build`] if the builder fails (compression error, size overflow); the batch is
    /// then not sealed.
    pub(crate) fn seal(&mut self, sequence: Option<BatchSequence>) -> Result<Bytes> {
        if let Some(b) = &self.sealed {
            return Ok(b.clone());
        }
        let Some(builder) = self.builder.as_mut() else {
            return Err(Error::Build(strata_protocol::BuildError::Empty));
        };
        if let Some(seq) = sequence {
            builder.set_options(BatchOptions {
                compression: self.compression,
                producer_id: seq.producer_id,
                producer_epoch: seq.producer_epoch,
                base_sequence: seq.base_sequence,
                ..BatchOptions::default()
            });
        }
        let bytes = builder.finish()?;
        self.builder = None;
        self.sealed = Some(bytes.clone());
        self.sequence = sequence;
        Ok(bytes)
    }
}

impl Drop for ProducerBatch {
    fn drop(&mut self) {
        // A batch dropped unresolved (the producer went away) fails its records' deliveries.
        resolve_dropped(&self.outcome);
    }
}

/// Everything drained for one partition: sent together in one produce request.
pub(crate) struct PartitionSend {
    pub topic: Arc<str>,
    pub partition: i32,
    /// The leader it is sent to.
    pub leader: i32,
    /// Batches in enqueue order.
    pub batches: Vec<ProducerBatch>,
    /// The id of its first batch when drained: its key among the partition's sends in flight.
    pub(crate) flight: u64,
}

impl PartitionSend {
    /// When the oldest record in the send was enqueued.
    pub(crate) fn created(&self) -> Option<Instant> {
        self.batches.iter().map(|b| b.created).min()
    }

    /// The most attempts any of its batches had.
    pub(crate) fn attempts(&self) -> u32 {
        self.batches.iter().map(|b| b.attempts).max().unwrap_or(0)
    }
}

struct PartitionQueue {
    topic: Arc<str>,
    batches: VecDeque<ProducerBatch>,
    /// The sends in flight, by their first batch's id (ids grow in enqueue order), with their
    /// batch counts.
    in_flight: BTreeMap<u64, usize>,
    /// A retried send is in flight: nothing else is sent until it returns, so retries go out
    /// one at a time, in order.
    retry_in_flight: bool,
    /// Nothing is sent before this (retry backoff).
    retry_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, BTreeMap<i32, PartitionQueue>>,
    /// Bytes buffered or in flight per leader node id, for the least-loaded partitioners
    /// (under the state lock, which every append takes anyway).
    node_loads: HashMap<i32, u64>,
    next_batch_id: u64,
    /// Ids of batches not completed yet (for flush).
    incomplete: BTreeSet<u64>,
    closed: bool,
}

/// What [`Accumulator::drain`] found.
#[derive(Default)]
pub(crate) struct Drained {
    /// Sends to make now.
    pub ready: Vec<PartitionSend>,
    /// Batches that waited longer than the delivery timeout, with their partition.
    pub expired: Vec<ProducerBatch>,
    /// Topics with sendable batches for a partition whose leader is unknown.
    pub need_metadata: Vec<String>,
    /// When something may next become ready (a linger or backoff ending).
    pub next_check: Option<Instant>,
}

/// Per-partition batch queues under a memory budget. See the module docs.
pub(crate) struct Accumulator {
    config: AccumulatorConfig,
    state: Mutex<State>,
    memory: Semaphore,
    /// Tasks waiting for memory; while any do, every batch is sendable.
    memory_waiters: AtomicUsize,
    /// Flushes in progress; while any are, every batch is sendable.
    flushes: AtomicUsize,
    /// Wakes the sender: a batch filled, a batch was created, a send completed, a flush or close.
    wakeup: Notify,
    /// The smallest incomplete batch id (`u64::MAX` when none), for flush.
    min_incomplete: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Short critical sections over plain data; a poisoned lock's data is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Record fields to encode.
pub(crate) struct RecordParts<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [HeaderRef<'a>],
}

impl Accumulator {
    pub(crate) fn new(config: AccumulatorConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
            memory: Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            memory_waiters: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            wakeup: Notify::new(),
            min_incomplete: watch::channel(u64::MAX).0,
        }
    }

    /// Memory permits available right now.
    #[cfg(test)]
    pub(crate) fn available_memory(&self) -> usize {
        self.memory.available_permits()
    }

    /// Waits until the sender should look again.
    pub(crate) async fn wait_for_work(&self) {
        self.wakeup.notified().await;
    }

    /// Calls `f` with the current per-leader loads (under the accumulator's lock; keep `f`
    /// short).
    pub(crate) fn with_node_loads<T>(&self, f: impl FnOnce(&HashMap<i32, u64>) -> T) -> T {
        f(&lock(&self.state).node_loads)
    }

    /// Reserves `bytes` of buffer memory, waiting until `deadline` for other batches to
    /// complete if the budget is used up.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] if `bytes` exceeds the whole budget; [`Error::Timeout`] if the
    /// deadline passes; [`Error::ProducerClosed`] if closed.
    /// Reserves `bytes` if they are free right now; `None` if the caller would have to wait.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] if `bytes` exceeds the whole buffer.
    pub(crate) fn try_reserve(&self, bytes: usize) -> Result<Option<Reservation<'_>>> {
        let n = u32::try_from(bytes)
            .ok()
            .filter(|_| bytes <= self.config.buffer_memory)
            .ok_or(Error::RecordTooLarge {
                size: bytes,
                limit: "buffer_memory",
                max: self.config.buffer_memory,
            })?;
        if n == 0 {
            return Ok(Some(Reservation { acc: self, bytes: 0 }));
        }
        Ok(self.memory.try_acquire_many(n).ok().map(|p| {
            p.forget();
            Reservation { acc: self, bytes }
        }))
    }

    pub(crate) async fn reserve(&self, bytes: usize, deadline: tokio::time::Instant) -> Result<Reservation<'_>> {
        let too_large = || Error::RecordTooLarge {
            size: bytes,
            limit: "buffer_memory",
            max: self.config.buffer_memory,
        };
        if bytes > self.config.buffer_memory {
            return Err(too_large());
        }
        let n = u32::try_from(bytes).map_err(|_| too_large())?;
        if n == 0 {
            return Ok(Reservation { acc: self, bytes: 0 });
        }
        if let Ok(p) = self.memory.try_acquire_many(n) {
            p.forget();
            return Ok(Reservation { acc: self, bytes });
        }
        // Out of memory: make every batch sendable so memory frees up as fast as possible.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.memory_waiters.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.memory_waiters);
        self.wakeup.notify_one();
        match tokio::time::timeout_at(deadline, self.memory.acquire_many(n)).await {
            Ok(Ok(p)) => {
                p.forget();
                Ok(Reservation { acc: self, bytes })
            }
            Ok(Err(_)) => Err(Error::ProducerClosed),
            Err(_) => Err(Error::Timeout {
                what: "buffer memory",
                broker: "-".to_owned(),
                after: deadline.saturating_duration_since(tokio::time::Instant::now()),
            }),
        }
    }

    /// Encodes a record into `topic`/`partition`'s open batch (opening one if needed) and
    /// returns its delivery. `leader` is the partition's leader now, for load accounting;
    /// `max_batch` the largest batch the topic accepts (its `max.message.bytes`), which caps
    /// `batch_size` for it.
    ///
    /// # Errors
    /// [`Error::ProducerClosed`] after [`Accumulator::close`]; [`Error::Build`] if the record
    /// cannot be encoded.
    pub(crate) fn append(
        &self,
        topic: &str,
        partition: i32,
        leader: Option<i32>,
        max_batch: Option<usize>,
        record: &RecordParts<'_>,
        reservation: Reservation<'_>,
    ) -> Result<Delivery> {
        let batch_size = max_batch.map_or(self.config.batch_size, |m| m.min(self.config.batch_size));
        let mut state = lock(&self.state);
        if state.closed {
            return Err(Error::ProducerClosed);
        }
        let record_size = reservation.bytes;
        let mut next_id = state.next_batch_id;
        let State { topics, incomplete, .. } = &mut *state;
        let partitions = match topics.get_mut(topic) {
            Some(p) => p,
            None => topics.entry(topic.to_owned()).or_default(),
        };
        let queue = partitions.entry(partition).or_insert_with(|| PartitionQueue {
            topic: Arc::from(topic),
            batches: VecDeque::new(),
            in_flight: BTreeMap::new(),
            retry_in_flight: false,
            retry_at: None,
        });
        let fits = queue.batches.back().is_some_and(|b| {
            b.builder
                .as_ref()
                .is_some_and(|builder| builder.size_bytes() + record_size <= batch_size)
        });
        let mut opened = false;
        if !fits {
            let options = BatchOptions {
                compression: self.config.compression,
                ..BatchOptions::default()
            };
            queue.batches.push_back(ProducerBatch {
                id: next_id,
                builder: Some(BatchBuilder::new(options)),
                sealed: None,
                compression: self.config.compression,
                sequence: None,
                outcome: Arc::new(BatchOutcome::default()),
                records: 0,
                reserved: 0,
                load_node: leader,
                load_bytes: 0,
                created: Instant::now(),
                attempts: 0,
                retry_group: 0,
                refused: false,
                full_at: batch_size,
            });
            incomplete.insert(next_id);
            next_id += 1;
            opened = true;
        }
        let queue_topic = Arc::clone(&queue.topic);
        let batch = queue
            .batches
            .back_mut()
            .expect("a batch was pushed above if there was none with room");
        let builder = batch
            .builder
            .as_mut()
            .expect("the back batch is open: checked or just pushed");
        if let Err(e) = builder.append(record.timestamp, record.key, record.value, record.headers) {
            if opened {
                // Do not leave an empty batch behind.
                queue.batches.pop_back();
                incomplete.remove(&(next_id - 1));
            }
            return Err(e.into());
        }
        let full = builder.size_bytes() >= batch_size;
        let delivery = Delivery::new(
            Arc::clone(&batch.outcome),
            Arc::clone(&queue_topic),
            partition,
            batch.records,
            record.timestamp,
        );
        batch.records += 1;
        batch.reserved += reservation.take();
        batch.load_bytes += record_size as u64;
        let load_node = batch.load_node;
        state.next_batch_id = next_id;
        if let Some(node) = load_node {
            *state.node_loads.entry(node).or_default() += record_size as u64;
        }
        if opened {
            self.publish_min_incomplete(&state);
        }
        drop(state);
        if opened || full {
            self.wakeup.notify_one();
        }
        Ok(delivery)
    }

    /// Takes out everything sendable at `now`, at most `max_request_size` bytes and
    /// `max_batches_per_send` batches per partition (but always at least one batch), for
    /// partitions whose leader `leader_of` knows. A retried send (sealed batches) comes out
    /// whole and alone. Expires batches older than the delivery timeout that are not in flight
    /// (a retried send's batches all together).
    pub(crate) fn drain(
        &self,
        now: Instant,
        max_request_size: usize,
        leader_of: &dyn Fn(&str, i32) -> Option<i32>,
        may_pipeline: &dyn Fn(&str, i32) -> bool,
    ) -> Drained {
        let mut out = Drained::default();
        let mut state = lock(&self.state);
        let urgent =
            state.closed || self.memory_waiters.load(Ordering::Relaxed) > 0 || self.flushes.load(Ordering::Relaxed) > 0;
        for (topic, partitions) in &mut state.topics {
            let mut topic_needs_metadata = false;
            for (&partition, queue) in partitions.iter_mut() {
                // Behind sends in flight, another goes out only if pipelining is on and allowed
                // for the partition, nothing failed (a failed send comes back to the front and
                // is retried alone, before anything after it), and the batches in flight leave
                // room under the broker's window.
                let batches_in_flight: usize = queue.in_flight.values().sum();
                let pipelined = !queue.in_flight.is_empty();
                if pipelined
                    && (queue.in_flight.len() >= self.config.max_in_flight
                        || queue.retry_in_flight
                        || queue.batches.front().is_some_and(ProducerBatch::is_sealed)
                        || batches_in_flight >= self.config.max_batches_per_send
                        || !may_pipeline(topic, partition))
                {
                    continue;
                }
                // Expiry waits until the partition is idle: a send in flight decides first.
                let expired =
                    |b: &ProducerBatch| now.saturating_duration_since(b.created) >= self.config.delivery_timeout;
                while !pipelined
                    && let Some(front) = queue.batches.front()
                    && expired(front)
                {
                    let sealed = front.is_sealed();
                    let group = front.retry_group;
                    if let Some(b) = queue.batches.pop_front() {
                        out.expired.push(b);
                    }
                    // A retried send expires as a whole: the rest of it alone would not be the
                    // request it repeats.
                    while sealed
                        && queue
                            .batches
                            .front()
                            .is_some_and(|b| b.is_sealed() && b.retry_group == group)
                    {
                        if let Some(b) = queue.batches.pop_front() {
                            out.expired.push(b);
                        }
                    }
                }
                let Some(front) = queue.batches.front() else {
                    continue;
                };
                let deadline = front.created + self.config.delivery_timeout;
                if let Some(at) = queue.retry_at {
                    if at > now {
                        out.next_check = min_instant(out.next_check, Some(at.min(deadline)));
                        continue;
                    }
                    queue.retry_at = None;
                }
                let linger_ends = front.created + self.config.linger;
                let ready = urgent
                    || queue.batches.len() > 1
                    || front.attempts > 0
                    || front.size() >= front.full_at
                    || linger_ends <= now;
                if !ready {
                    out.next_check = min_instant(out.next_check, Some(linger_ends.min(deadline)));
                    continue;
                }
                let Some(leader) = leader_of(topic, partition) else {
                    topic_needs_metadata = true;
                    out.next_check = min_instant(out.next_check, Some(deadline));
                    continue;
                };
                let mut batches = Vec::new();
                let mut bytes = 0usize;
                // Sealed batches at the front are a failed send coming back: resend exactly
                // those (they fitted the limits the first time). Otherwise fill up to the limits
                // with open batches.
                let retry = front.is_sealed();
                let group = front.retry_group;
                while let Some(b) = queue.batches.front() {
                    if b.is_sealed() != retry || (retry && b.retry_group != group) {
                        break;
                    }
                    if !retry
                        && !batches.is_empty()
                        && (bytes + b.size() > max_request_size
                            || batches.len() >= self.config.max_batches_per_send - batches_in_flight)
                    {
                        break;
                    }
                    bytes += b.size();
                    if let Some(b) = queue.batches.pop_front() {
                        batches.push(b);
                    }
                }
                let flight = batches[0].id;
                queue.in_flight.insert(flight, batches.len());
                queue.retry_in_flight = retry;
                out.ready.push(PartitionSend {
                    topic: Arc::clone(&queue.topic),
                    partition,
                    leader,
                    batches,
                    flight,
                });
            }
            if topic_needs_metadata {
                out.need_metadata.push(topic.clone());
            }
        }
        // Forget idle partitions so the map only holds partitions with work.
        for partitions in state.topics.values_mut() {
            partitions.retain(|_, q| !q.in_flight.is_empty() || !q.batches.is_empty() || q.retry_at.is_some());
        }
        state.topics.retain(|_, p| !p.is_empty());
        out
    }

    /// Completes a send: resolves every record's delivery — offsets `base_offset + i` in
    /// enqueue order if `Ok(Some(base_offset))`, no offset if `Ok(None)` (acks = 0), the error
    /// otherwise — returns the memory and lets the partition send again.
    pub(crate) fn complete(&self, send: PartitionSend, result: Result<Option<u64>>) {
        self.finish_partition(&send);
        self.complete_batches(send.batches, result);
    }

    /// Completes batches that never made it into a send (expired or failed to seal).
    pub(crate) fn complete_batches(&self, batches: Vec<ProducerBatch>, result: Result<Option<u64>>) {
        let mut next_offset = match &result {
            Ok(base) => *base,
            Err(_) => None,
        };
        let mut released = 0usize;
        let mut loads: Vec<(i32, u64)> = Vec::new();
        let mut ids = Vec::with_capacity(batches.len());
        for batch in batches {
            ids.push(batch.id);
            released += batch.reserved;
            if let Some(node) = batch.load_node {
                loads.push((node, batch.load_bytes));
            }
            // The callers may have stopped waiting; their records are delivered regardless.
            batch.outcome.resolve(match &result {
                Ok(_) => Ok(next_offset),
                Err(e) => Err(e.clone()),
            });
            next_offset = next_offset.map(|o| o.saturating_add(u64::from(batch.records)));
        }
        self.memory.add_permits(released);
        let mut state = lock(&self.state);
        for (node, bytes) in loads {
            if let Some(l) = state.node_loads.get_mut(&node) {
                *l = l.saturating_sub(bytes);
                if *l == 0 {
                    state.node_loads.remove(&node);
                }
            }
        }
        for id in ids {
            state.incomplete.remove(&id);
        }
        self.publish_min_incomplete(&state);
        drop(state);
        self.wakeup.notify_one();
    }

    /// Puts a failed send back at the front of its partition's queue, ahead of anything
    /// enqueued since and in enqueue order among other failed sends (pipelined sends may fail
    /// together), to be retried no earlier than `retry_at`.
    pub(crate) fn requeue(&self, send: PartitionSend, retry_at: Instant, refused: bool) {
        let PartitionSend {
            topic,
            partition,
            batches,
            flight,
            ..
        } = send;
        let mut batches = batches;
        let first = flight;
        let group = batches.iter().find(|b| b.attempts > 0).map_or(first, |b| b.retry_group);
        for b in &mut batches {
            b.attempts += 1;
            b.retry_group = group;
            b.refused = refused;
        }
        {
            let mut state = lock(&self.state);
            let partitions = state.topics.entry(topic.to_string()).or_default();
            let queue = partitions.entry(partition).or_insert_with(|| PartitionQueue {
                topic: Arc::clone(&topic),
                batches: VecDeque::new(),
                in_flight: BTreeMap::new(),
                retry_in_flight: false,
                retry_at: None,
            });
            if queue.in_flight.remove(&first).is_some() && queue.in_flight.is_empty() {
                queue.retry_in_flight = false;
            }
            // The queue is in id (enqueue) order: this send goes back where it was, after any
            // earlier send that came back before it (failed sends may return in any order).
            let at = queue.batches.partition_point(|b| b.id < first);
            for (i, b) in batches.into_iter().enumerate() {
                queue.batches.insert(at + i, b);
            }
            queue.retry_at = Some(queue.retry_at.map_or(retry_at, |t| t.max(retry_at)));
        }
        self.wakeup.notify_one();
    }

    /// Whether a send of `topic`/`partition` older than the one whose first batch is
    /// `first_batch` is still in flight or waiting to be retried: a later send refused as out of
    /// order is then only ahead of it, and is retried after it.
    pub(crate) fn has_earlier_send(&self, topic: &str, partition: i32, first_batch: u64) -> bool {
        let state = lock(&self.state);
        state
            .topics
            .get(topic)
            .and_then(|p| p.get(&partition))
            .is_some_and(|q| {
                q.in_flight.range(..first_batch).next().is_some()
                    || q.batches.front().is_some_and(|b| b.id < first_batch)
            })
    }

    fn finish_partition(&self, send: &PartitionSend) {
        let first = send.flight;
        let mut state = lock(&self.state);
        if let Some(q) = state
            .topics
            .get_mut(&*send.topic)
            .and_then(|p| p.get_mut(&send.partition))
        {
            q.in_flight.remove(&first);
            if q.in_flight.is_empty() {
                q.retry_in_flight = false;
            }
        }
    }

    fn publish_min_incomplete(&self, state: &State) {
        let min = state.incomplete.first().copied().unwrap_or(u64::MAX);
        self.min_incomplete.send_if_modified(|v| {
            let changed = *v != min;
            *v = min;
            changed
        });
    }

    /// Waits until every batch that existed when it was called has completed (records enqueued
    /// meanwhile may ride along). Batches are sent without waiting for `linger` meanwhile.
    pub(crate) async fn flush(&self) {
        struct Flushing<'a>(&'a AtomicUsize);
        impl Drop for Flushing<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let target = lock(&self.state).next_batch_id;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let _flushing = Flushing(&self.flushes);
        self.wakeup.notify_one();
        let mut rx = self.min_incomplete.subscribe();
        // The sender keeps `min_incomplete` until the accumulator is dropped, which cannot
        // happen while `self` is borrowed; an error would only mean there is nothing left.
        let _ = rx.wait_for(|min| *min >= target).await;
    }

    /// Refuses new records; everything queued becomes sendable at once.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.wakeup.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Whether nothing is queued or in flight.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.state).incomplete.is_empty()
    }
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    use strata_protocol::{BatchLimits, RecordBatch};

    use super::*;

    fn config() -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: 300,
            linger: Duration::from_millis(50),
            compression: Compression::None,
            buffer_memory: 1 << 20,
            delivery_timeout: Duration::from_secs(60),
            max_batches_per_send: usize::MAX,
            max_in_flight: 1,
        }
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(60)
    }

    async fn append(acc: &Accumulator, partition: i32, value: &[u8]) -> Delivery {
        let size = BatchBuilder::record_size(None, Some(value), &[]);
        let r = acc.reserve(size, far()).await.unwrap();
        let parts = RecordParts {
            timestamp: 1,
            key: None,
            value: Some(value),
            headers: &[],
        };
        acc.append("t", partition, Some(1), None, &parts, r).unwrap()
    }

    fn leader(_: &str, _: i32) -> Option<i32> {
        Some(1)
    }

    fn values(send: &mut PartitionSend) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for b in &mut send.batches {
            let bytes = b.seal(None).unwrap();
            let batch = RecordBatch::validate(bytes, &BatchLimits::default()).unwrap();
            for r in batch.records().unwrap() {
                out.push(r.unwrap().value.unwrap().to_vec());
            }
        }
        out
    }

    #[tokio::test]
    async fn a_batch_waits_for_linger_unless_full() {
        let acc = Accumulator::new(config());
        let _d = append(&acc, 0, b"small").await;
        let t0 = Instant::now();
        let d = acc.drain(t0, 1 << 20, &leader, &|_, _| true);
        assert!(d.ready.is_empty(), "not full, linger not over");
        let next = d.next_check.expect("linger end");
        assert!(next > t0 && next <= t0 + Duration::from_millis(50));
        let d = acc.drain(t0 + Duration::from_millis(51), 1 << 20, &leader, &|_, _| true);
        assert_eq!(d.ready.len(), 1);

        // Filling a batch makes it ready at once.
        let _ds: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..20 {
                v.push(append(&acc, 1, &[7u8; 40]).await);
            }
            v
        };
        let d = acc.drain(Instant::now(), 1 << 20, &leader, &|_, _| true);
        assert_eq!(d.ready.len(), 1, "partition 1 is ready (partition 0 is in flight)");
        assert_eq!(d.ready[0].partition, 1);
        assert!(
            d.ready[0].batches.len() >= 2,
            "20 records of ~50 bytes span several 300-byte batches"
        );
        assert!(d.ready[0].batches.iter().all(|b| b.size() <= 300));
    }

    #[tokio::test]
    async fn max_request_size_splits_a_partitions_backlog_but_sends_at_least_one_batch() {
        let acc = Accumulator::new(config());
        for _ in 0..20 {
            drop(append(&acc, 0, &[1u8; 40]).await);
        }
        let mut d = acc.drain(Instant::now(), 1, &leader, &|_, _| true);
        assert_eq!(d.ready.len(), 1);
        assert_eq!(d.ready[0].batches.len(), 1, "over the limit, but one batch always goes");
        let send = d.ready.pop().unwrap();
        assert!(
            acc.drain(Instant::now(), 1, &leader, &|_, _| true).ready.is_empty(),
            "one send in flight per partition"
        );
        acc.complete(send, Ok(Some(0)));
        assert_eq!(acc.drain(Instant::now(), 1, &leader, &|_, _| true).ready.len(), 1);
    }

    #[tokio::test]
    async fn retry_goes_back_to_the_front_and_offsets_follow_enqueue_order() {
        let acc = Accumulator::new(config());
        let mut deliveries = Vec::new();
        for i in 0..10u8 {
            deliveries.push(append(&acc, 0, &[i; 100]).await);
        }
        let now = Instant::now();
        let mut first = acc.drain(now, 400, &leader, &|_, _| true).ready.pop().unwrap();
        let sent_first = values(&mut first);
        // More records arrive while the first send is in flight…
        for i in 10..12u8 {
            deliveries.push(append(&acc, 0, &[i; 100]).await);
        }
        // …and the send fails retriably: it goes back to the front.
        let retry_at = now + Duration::from_millis(100);
        acc.requeue(first, retry_at, false);
        let d = acc.drain(now, 1 << 20, &leader, &|_, _| true);
        assert!(d.ready.is_empty(), "backing off");
        assert_eq!(d.next_check, Some(retry_at));
        let mut all = Vec::new();
        loop {
            let mut d = acc.drain(retry_at, 400, &leader, &|_, _| true);
            let Some(mut send) = d.ready.pop() else { break };
            let base = all.len() as u64;
            all.extend(values(&mut send));
            acc.complete(send, Ok(Some(base)));
        }
        assert_eq!(
            &all[..sent_first.len()],
            &sent_first[..],
            "retried batches are resent first, unchanged"
        );
        let expected: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 100]).collect();
        assert_eq!(all, expected, "enqueue order");
        for (i, d) in deliveries.into_iter().enumerate() {
            let meta = d.await.unwrap();
            assert_eq!(meta.offset, Some(strata_protocol::Offset(i as u64)));
        }
        assert!(acc.is_empty());
    }

    #[tokio::test]
    async fn a_retried_send_comes_back_whole_and_alone_and_sends_are_capped_in_batches() {
        let acc = Accumulator::new(AccumulatorConfig {
            max_batches_per_send: 2,
            ..config()
        });
        for i in 0..10u8 {
            drop(append(&acc, 0, &[i; 100]).await);
        }
        let now = Instant::now();
        let mut first = acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.pop().unwrap();
        assert_eq!(first.batches.len(), 2, "capped at max_batches_per_send");
        let sent: Vec<Bytes> = first.batches.iter_mut().map(|b| b.seal(None).unwrap()).collect();
        acc.requeue(first, now, false);
        // The retry is the same two sealed batches, though more would fit.
        let mut retry = acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.pop().unwrap();
        let resent: Vec<Bytes> = retry.batches.iter_mut().map(|b| b.seal(None).unwrap()).collect();
        assert_eq!(resent, sent);
        // Even under a request size limit smaller than both: they were one request before.
        acc.requeue(retry, now, false);
        let retry = acc.drain(now, 1, &leader, &|_, _| true).ready.pop().unwrap();
        assert_eq!(retry.batches.len(), 2);
        assert!(retry.batches.iter().all(ProducerBatch::is_sealed));
        acc.complete(retry, Ok(Some(0)));
        let next = acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.pop().unwrap();
        assert!(next.batches.iter().all(|b| !b.is_sealed()), "then open batches");
    }

    #[tokio::test]
    async fn pipelined_sends_fail_back_in_order_and_retry_one_at_a_time() {
        let acc = Accumulator::new(AccumulatorConfig {
            max_in_flight: 3,
            max_batches_per_send: 4,
            ..config()
        });
        let now = Instant::now();
        let mut sends = Vec::new();
        for i in 0..4u8 {
            // 250 bytes: one record fills one 300-byte batch, ready at once.
            drop(append(&acc, 0, &[i; 250]).await);
            let mut d = acc.drain(now, 1 << 20, &leader, &|_, _| true);
            if i < 3 {
                let mut send = d.ready.pop().expect("sent behind the ones in flight");
                assert_eq!(send.batches.len(), 1);
                assert_eq!(values(&mut send), vec![vec![i; 250]]);
                sends.push(send);
            } else {
                assert!(d.ready.is_empty(), "three in flight is the limit");
            }
        }
        let (third, second, first) = (sends.pop().unwrap(), sends.pop().unwrap(), sends.pop().unwrap());
        assert!(!acc.has_earlier_send("t", 0, first.flight));
        assert!(acc.has_earlier_send("t", 0, third.flight), "the first is in flight");
        // The second and third come back (say, refused) before the first does.
        let third_flight = third.flight;
        acc.requeue(third, now, true);
        acc.requeue(second, now, true);
        assert!(
            acc.has_earlier_send("t", 0, third_flight),
            "the second waits for a retry"
        );
        assert!(
            acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.is_empty(),
            "a retry waits for the send in flight"
        );
        acc.requeue(first, now, false);
        // Retries go one send at a time, in enqueue order, then the fresh batch.
        let mut order = Vec::new();
        while let Some(mut send) = acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.pop() {
            assert!(
                acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.is_empty(),
                "nothing goes out beside a retry"
            );
            order.extend(values(&mut send));
            acc.complete(send, Ok(Some(0)));
        }
        let expected: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 250]).collect();
        assert_eq!(order, expected);
        assert!(acc.is_empty());
    }

    #[tokio::test]
    async fn unsealed_sends_requeued_in_order_keep_it_and_pipelining_waits_for_permission() {
        let acc = Accumulator::new(AccumulatorConfig {
            max_in_flight: 3,
            ..config()
        });
        let now = Instant::now();
        let mut sends = Vec::new();
        for i in 0..3u8 {
            drop(append(&acc, 0, &[i; 250]).await);
            // Not allowed to pipeline: the second waits for the first.
            if i == 1 {
                assert!(acc.drain(now, 1 << 20, &leader, &|_, _| false).ready.is_empty());
            }
            sends.push(acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.pop().unwrap());
        }
        // The producer id request failed: every send waiting for it comes back, unsealed, oldest
        // first (as the sender hands them back).
        for send in sends {
            acc.requeue(send, now, false);
        }
        let mut order = Vec::new();
        while let Some(mut send) = acc.drain(now, 1 << 20, &leader, &|_, _| true).ready.pop() {
            order.extend(values(&mut send));
            acc.complete(send, Ok(Some(0)));
        }
        let expected: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 250]).collect();
        assert_eq!(order, expected, "enqueue order kept");
    }

    #[tokio::test]
    async fn a_refused_batch_is_restamped_under_a_new_producer_id_with_a_valid_crc() {
        let acc = Accumulator::new(AccumulatorConfig {
            compression: Compression::Lz4,
            ..config()
        });
        drop(append(&acc, 0, &[9u8; 250]).await);
        let mut send = acc
            .drain(Instant::now(), 1 << 20, &leader, &|_, _| true)
            .ready
            .pop()
            .unwrap();
        let old = BatchSequence {
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 40,
        };
        let b = &mut send.batches[0];
        b.seal(Some(old)).unwrap();
        assert!(!b.needs_restamp(|_| false), "not refused");
        b.refused = true;
        assert!(!b.needs_restamp(|q| *q == old), "its id is still the current one");
        assert!(b.needs_restamp(|q| *q != old));
        let new = BatchSequence {
            producer_id: 8,
            producer_epoch: 0,
            base_sequence: 0,
        };
        let bytes = b.restamp(new).unwrap();
        assert_eq!(b.sequence(), Some(new));
        assert!(!b.needs_restamp(|_| false), "stamped anew, no longer refused");
        let batch = RecordBatch::validate(bytes, &BatchLimits::default()).expect("the CRC matches");
        let h = batch.header();
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (8, 0, 0));
        let values: Vec<Vec<u8>> = batch
            .records()
            .unwrap()
            .map(|r| r.unwrap().value.unwrap().to_vec())
            .collect();
        assert_eq!(values, [vec![9u8; 250]]);
        acc.complete(send, Ok(Some(0)));
    }

    #[tokio::test]
    async fn a_retried_send_expires_as_a_whole() {
        let acc = Accumulator::new(AccumulatorConfig {
            delivery_timeout: Duration::from_millis(200),
            ..config()
        });
        for i in 0..2u8 {
            drop(append(&acc, 0, &[i; 150]).await);
        }
        let t0 = Instant::now();
        let mut send = acc
            .drain(t0 + Duration::from_millis(60), 1 << 20, &leader, &|_, _| true)
            .ready
            .pop()
            .unwrap();
        assert_eq!(send.batches.len(), 2, "a 150-byte record per 300-byte batch");
        for b in &mut send.batches {
            b.seal(None).unwrap();
        }
        // Only the first batch is past the timeout, but the second goes with it.
        send.batches[1].created = t0 + Duration::from_millis(150);
        acc.requeue(send, t0 + Duration::from_millis(250), false);
        let d = acc.drain(t0 + Duration::from_millis(250), 1 << 20, &leader, &|_, _| true);
        assert_eq!(d.expired.len(), 2);
        assert!(d.ready.is_empty());
    }

    #[tokio::test]
    async fn memory_backpressure_blocks_until_a_batch_completes() {
        let acc = Accumulator::new(AccumulatorConfig {
            buffer_memory: 500,
            ..config()
        });
        let value = [0u8; 100];
        let size = BatchBuilder::record_size(None, Some(&value), &[]);
        let mut held = Vec::new();
        while acc.available_memory() >= size {
            held.push(append(&acc, 0, &value).await);
        }
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut blocked = pin!(acc.reserve(size, far()));
        assert!(
            blocked.as_mut().poll(&mut cx).is_pending(),
            "budget used up: enqueue waits"
        );
        // A memory waiter makes everything sendable regardless of linger.
        let mut d = acc.drain(Instant::now(), 1 << 20, &leader, &|_, _| true);
        assert_eq!(d.ready.len(), 1);
        acc.complete(d.ready.pop().unwrap(), Ok(Some(0)));
        assert!(
            matches!(blocked.as_mut().poll(&mut cx), Poll::Ready(Ok(_))),
            "memory came back"
        );
        for d in held {
            d.await.unwrap();
        }
    }

    #[tokio::test]
    async fn reserving_more_than_the_budget_fails_and_a_deadline_bounds_the_wait() {
        let acc = Accumulator::new(AccumulatorConfig {
            buffer_memory: 100,
            ..config()
        });
        assert!(matches!(
            acc.reserve(101, far()).await,
            Err(Error::RecordTooLarge { .. })
        ));
        let held = acc.reserve(100, far()).await.unwrap();
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(matches!(acc.reserve(1, soon).await, Err(Error::Timeout { .. })));
        drop(held);
        assert_eq!(acc.available_memory(), 100, "an unused reservation is returned");
    }

    #[tokio::test]
    async fn expired_batches_are_returned_and_unknown_leaders_ask_for_metadata() {
        let acc = Accumulator::new(AccumulatorConfig {
            delivery_timeout: Duration::from_millis(200),
            ..config()
        });
        let d1 = append(&acc, 0, b"x").await;
        let no_leader = |_: &str, _: i32| None;
        let d = acc.drain(
            Instant::now() + Duration::from_millis(5),
            1 << 20,
            &no_leader,
            &|_, _| true,
        );
        assert!(d.ready.is_empty());
        assert!(d.need_metadata.is_empty(), "not ready yet (linger)");
        acc.close();
        let d = acc.drain(
            Instant::now() + Duration::from_millis(5),
            1 << 20,
            &no_leader,
            &|_, _| true,
        );
        assert_eq!(d.need_metadata, ["t"]);
        let d = acc.drain(
            Instant::now() + Duration::from_millis(201),
            1 << 20,
            &no_leader,
            &|_, _| true,
        );
        assert_eq!(d.expired.len(), 1);
        acc.complete_batches(d.expired, Err(Error::ProducerClosed));
        assert!(d1.await.is_err());
        assert!(acc.is_empty());
    }

    #[tokio::test]
    async fn flush_waits_for_batches_that_existed_when_it_started() {
        let acc = Arc::new(Accumulator::new(config()));
        let _d = append(&acc, 0, b"a").await;
        let flush = tokio::spawn({
            let acc = Arc::clone(&acc);
            async move { acc.flush().await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!flush.is_finished());
        // Flushing makes the batch ready before its linger ends.
        let mut d = acc.drain(Instant::now(), 1 << 20, &leader, &|_, _| true);
        assert_eq!(d.ready.len(), 1);
        acc.complete(d.ready.pop().unwrap(), Ok(Some(0)));
        tokio::time::timeout(Duration::from_secs(5), flush)
            .await
            .unwrap()
            .unwrap();
    }
}
