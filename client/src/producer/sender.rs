//! The producer's sender task: drains the accumulator, seals batches (stamping the idempotent
//! producer's id and sequence numbers), sends one produce request per leader, and turns
//! responses into completions, retries and metadata refreshes.
//!
//! With idempotence on, a send whose batches are not sealed yet waits for a producer id: the
//! first such send starts one `InitProducerId` request (with its own retries) and every send
//! drained meanwhile waits for the same answer. Retried sends are sealed already and go at once.
//!
//! The loop never blocks on the network: requests in flight live in a `FuturesUnordered`, a
//! metadata refresh and the producer id request in optional futures, all raced in one `select!`
//! with the accumulator's
//! wake-up and the next linger/backoff deadline. Every branch is cancellation-safe: dropping a
//! `Notified`, a `Sleep` or a `next()` loses nothing, because state lives in the accumulator and
//! in the futures themselves, not in the branch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use strata_protocol::ErrorCode;
use strata_protocol::api::{Acks, ApiKey, ProducePartition, ProduceRequest, TopicData};
use tracing::{debug, warn};

use super::ProducerConfig;
use super::accumulator::{Accumulator, PartitionSend, ProducerBatch};
use super::idempotence::{ProducerIdentity, Sequencer, init_producer_id};
use crate::client::Client;
use crate::error::{Error, Result};

type Outcome = Vec<(PartitionSend, Result<Option<u64>>)>;

/// Waits for the future if there is one, forever otherwise (for an optional `select!` branch).
async fn maybe<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn run(client: Client, acc: Arc<Accumulator>, config: ProducerConfig) {
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Outcome>> = FuturesUnordered::new();
    let mut refresh: Option<BoxFuture<'static, ()>> = None;
    let mut want_metadata: BTreeSet<String> = BTreeSet::new();
    let mut next_refresh = Instant::now();
    let refresh_backoff = client.config().metadata_refresh_backoff;
    let mut sequencer = Sequencer::default();
    // Sends waiting for a producer id (idempotence on, none yet), and the request for one.
    let mut awaiting_id: Vec<PartitionSend> = Vec::new();
    let mut init: Option<BoxFuture<'static, Result<ProducerIdentity>>> = None;
    loop {
        let now = Instant::now();
        let metadata = client.metadata();
        let leader_of = |topic: &str, partition: i32| -> Option<i32> {
            let leader = metadata.topic(topic)?.partition(partition)?.leader?;
            metadata.brokers.contains_key(&leader).then_some(leader)
        };
        // Several sends of a partition in flight only once a send under the current producer
        // id was acknowledged there (see `Sequencer::is_confirmed`).
        let may_pipeline = |topic: &str, partition: i32| sequencer.is_confirmed(topic, partition);
        let drained = acc.drain(now, config.max_request_size, &leader_of, &may_pipeline);
        if !drained.expired.is_empty() {
            let error = Error::Timeout {
                what: "delivery",
                broker: "-".to_owned(),
                after: config.delivery_timeout,
            };
            forget_identity_if_sequenced(&mut sequencer, &drained.expired, &error);
            acc.complete_batches(drained.expired, Err(error));
        }
        want_metadata.extend(drained.need_metadata);
        let mut next_check = drained.next_check;
        if !want_metadata.is_empty() && refresh.is_none() {
            if now >= next_refresh {
                let topics: Vec<String> = std::mem::take(&mut want_metadata).into_iter().collect();
                let client = client.clone();
                refresh = Some(
                    async move {
                        if let Err(e) = client.refresh_metadata(Some(topics)).await {
                            debug!(error = %e, "producer metadata refresh failed");
                        }
                    }
                    .boxed(),
                );
                next_refresh = now + refresh_backoff;
            } else {
                next_check = Some(next_check.map_or(next_refresh, |t| t.min(next_refresh)));
            }
        }
        let mut ready = drained.ready;
        if config.idempotence {
            if sequencer.identity().is_some() {
                // Those that waited for the id first: a partition's sends are sealed (take
                // their sequence numbers) in the order they were drained.
                awaiting_id.append(&mut ready);
                ready = std::mem::take(&mut awaiting_id);
            } else {
                // Open batches get their sequence numbers when sealed, which needs the id; so do
                // refused batches of a producer id given up on.
                let (wait, go): (Vec<_>, Vec<_>) = ready.into_iter().partition(|s| {
                    s.batches
                        .first()
                        .is_some_and(|b| !b.is_sealed() || b.needs_restamp(|q| sequencer.is_current(q)))
                });
                ready = go;
                awaiting_id.extend(wait);
                if !awaiting_id.is_empty() && init.is_none() {
                    // Bounded by the delivery timeout of the oldest record waiting.
                    let oldest = awaiting_id.iter().filter_map(PartitionSend::created).min();
                    let deadline = oldest.unwrap_or(now) + config.delivery_timeout;
                    init = Some(
                        init_producer_id(client.clone(), deadline, config.retry_backoff, config.retry_backoff_max)
                            .boxed(),
                    );
                }
            }
        }
        // One request per leader, but a partition at most once per request (its response has
        // one entry per partition): a second send of a partition (pipelined, or waiting for the
        // producer id together) goes in the leader's next request, sent after.
        let mut by_leader: BTreeMap<i32, Vec<Vec<(PartitionSend, Bytes)>>> = BTreeMap::new();
        // How many sends of each partition this round has placed with a leader: the n-th goes
        // in that leader's request n.
        let mut placed: HashMap<(i32, Arc<str>, i32), usize> = HashMap::new();
        for mut send in ready {
            let (records, failed) = record_set(&mut send, &mut sequencer);
            if let Some((batches, error)) = failed {
                // Not sealed, so no sequence number was used up.
                debug!(topic = %send.topic, partition = send.partition, error = %error, "cannot seal batch");
                acc.complete_batches(batches, Err(error));
            }
            match records {
                Some(records) => {
                    let requests = by_leader.entry(send.leader).or_default();
                    let n = placed
                        .entry((send.leader, Arc::clone(&send.topic), send.partition))
                        .or_default();
                    // Requests 0..n exist (this partition's earlier sends made them), so n is at
                    // most the next one.
                    if requests.len() <= *n {
                        requests.push(Vec::new());
                    }
                    requests[*n].push((send, records));
                    *n += 1;
                }
                // Nothing left to send (the batches failed above): frees the partition.
                None => acc.complete(send, Ok(None)),
            }
        }
        for (leader, requests) in by_leader {
            for sends in requests {
                in_flight
                    .push(send_to_leader(client.clone(), leader, sends, config.acks, config.request_timeout).boxed());
            }
        }
        if acc.is_closed() && acc.is_empty() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            () = acc.wait_for_work() => {}
            () = sleep_until(next_check) => {}
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                handle_outcome(&acc, &config, outcome, &mut want_metadata, &mut sequencer);
            }
            () = maybe(&mut refresh) => refresh = None,
            result = maybe(&mut init) => {
                init = None;
                match result {
                    Ok(identity) => sequencer.set_identity(identity),
                    Err(error) => {
                        debug!(error = %error, "no producer id");
                        // Retried (after a backoff, with a new request) while in time.
                        let outcome = awaiting_id.drain(..).map(|s| (s, Err(error.clone()))).collect();
                        handle_outcome(&acc, &config, outcome, &mut want_metadata, &mut sequencer);
                    }
                }
            }
        }
    }
    debug!("producer sender finished");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Forgets the producer id if `batches`, failing for good with `error`, carry sequence numbers
/// under it: whether the broker appended them is unknown, so the partition's next sequence is
/// too. Later batches are sealed under a new id (see the `idempotence` module).
fn forget_identity_if_sequenced(sequencer: &mut Sequencer, batches: &[ProducerBatch], error: &Error) {
    let Some(sequence) = batches
        .iter()
        .filter_map(ProducerBatch::sequence)
        .find(|s| sequencer.is_current(s))
    else {
        return;
    };
    if matches!(
        error.code(),
        Some(ErrorCode::OutOfOrderSequenceNumber | ErrorCode::InvalidProducerEpoch)
    ) {
        warn!(
            producer_id = sequence.producer_id,
            base_sequence = sequence.base_sequence,
            error = %error,
            "broker refused the producer's sequence; getting a new producer id"
        );
    } else {
        debug!(
            producer_id = sequence.producer_id,
            error = %error,
            "a sequenced batch failed; getting a new producer id"
        );
    }
    sequencer.reset();
}

/// Completes, retries or fails each partition's send.
fn handle_outcome(
    acc: &Accumulator,
    config: &ProducerConfig,
    outcome: Outcome,
    want_metadata: &mut BTreeSet<String>,
    sequencer: &mut Sequencer,
) {
    let now = Instant::now();
    for (send, result) in outcome {
        let error = match result {
            Ok(base_offset) => {
                if let Some(sequence) = send.batches.first().and_then(ProducerBatch::sequence) {
                    sequencer.confirm(&send.topic, send.partition, &sequence);
                }
                acc.complete(send, Ok(base_offset));
                continue;
            }
            Err(e) => e,
        };
        let attempts = send.attempts();
        let retry_at = now + Client::backoff(config.retry_backoff, config.retry_backoff_max, attempts + 1);
        let deadline = send.created().map(|c| c + config.delivery_timeout);
        let in_time = deadline.is_some_and(|d| retry_at < d);
        // A send refused as out of order (or fenced) is not in the log. If it overtook an earlier send of
        // its partition (still in flight or waiting to be retried) it goes again after that
        // one; if an earlier send failed for good and its producer id was given up, it goes
        // again under the new id. Otherwise the gap is real and it fails.
        let refused = matches!(
            error.code(),
            Some(ErrorCode::OutOfOrderSequenceNumber | ErrorCode::InvalidProducerEpoch)
        );
        let overtaken = refused
            && (acc.has_earlier_send(&send.topic, send.partition, send.flight)
                || send
                    .batches
                    .first()
                    .and_then(ProducerBatch::sequence)
                    .is_some_and(|q| !sequencer.is_current(&q)));
        if (error.is_retriable() || overtaken) && attempts < config.retries && in_time {
            if error.invalidates_metadata() {
                want_metadata.insert(send.topic.to_string());
            }
            debug!(
                topic = %send.topic,
                partition = send.partition,
                attempt = attempts + 1,
                error = %error,
                "produce failed, retrying"
            );
            acc.requeue(send, retry_at, refused);
        } else {
            debug!(topic = %send.topic, partition = send.partition, error = %error, "produce failed");
            forget_identity_if_sequenced(sequencer, &send.batches, &error);
            acc.complete(send, Err(error));
        }
    }
}

/// Seals a send's batches — stamping open ones with the partition's next sequence numbers if
/// the sequencer has a producer id — and returns its record set: the batches back to back.
/// Sealed batches (a retry) keep their bytes.
///
/// A batch that fails to seal is split off with every batch after it, and returned with the
/// error (its sequence is not used up, so the next batch takes it); the record set holds the
/// batches before it, `None` if there are none.
fn record_set(
    send: &mut PartitionSend,
    sequencer: &mut Sequencer,
) -> (Option<Bytes>, Option<(Vec<ProducerBatch>, Error)>) {
    let mut sealed = Vec::with_capacity(send.batches.len());
    let mut failure = None;
    for (i, b) in send.batches.iter_mut().enumerate() {
        if b.needs_restamp(|q| sequencer.is_current(q))
            && let Some(sequence) = sequencer.peek(&send.topic, send.partition)
            && let Some(bytes) = b.restamp(sequence)
        {
            sequencer.advance(&send.topic, send.partition, b.record_count());
            sealed.push(bytes);
            continue;
        }
        let sequence = if b.is_sealed() {
            None
        } else {
            sequencer.peek(&send.topic, send.partition)
        };
        match b.seal(sequence) {
            Ok(bytes) => {
                if sequence.is_some() {
                    sequencer.advance(&send.topic, send.partition, b.record_count());
                }
                sealed.push(bytes);
            }
            Err(e) => {
                failure = Some((i, e));
                break;
            }
        }
    }
    let failed = failure.map(|(i, e)| (send.batches.split_off(i), e));
    let records = match sealed.len() {
        0 => None,
        1 => sealed.pop(),
        _ => {
            let mut out = BytesMut::with_capacity(sealed.iter().map(Bytes::len).sum());
            for b in sealed {
                out.extend_from_slice(&b);
            }
            Some(out.freeze())
        }
    };
    (records, failed)
}

/// Sends one produce request to `leader` with every send's sealed record set and maps the
/// response back.
async fn send_to_leader(
    client: Client,
    leader: i32,
    ready: Vec<(PartitionSend, Bytes)>,
    acks: Acks,
    request_timeout: Duration,
) -> Outcome {
    let mut done = Vec::new();
    let conn = match client.broker_connection(leader).await {
        Ok(c) => c,
        Err(e) => {
            done.extend(ready.into_iter().map(|(s, _)| (s, Err(e.clone()))));
            return done;
        }
    };
    let mut topics: Vec<TopicData<ProducePartition>> = Vec::new();
    for (send, records) in &ready {
        let partition = ProducePartition {
            partition: send.partition,
            records: records.clone(),
        };
        match topics.iter_mut().find(|t| *t.name == *send.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(TopicData {
                name: send.topic.to_string(),
                partitions: vec![partition],
            }),
        }
    }
    // validate() bounded request_timeout to i32 milliseconds.
    let timeout_ms = i32::try_from(request_timeout.as_millis()).unwrap_or(i32::MAX);
    let request = ProduceRequest {
        acks: acks.to_i16(),
        timeout_ms,
        topics,
    };
    if acks == Acks::None {
        let result = conn.send_oneway(request).await;
        done.extend(ready.into_iter().map(|(s, _)| (s, result.clone().map(|()| None))));
        return done;
    }
    let response = match conn
        .send_with_timeout(request, request_timeout + Duration::from_secs(1))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            done.extend(ready.into_iter().map(|(s, _)| (s, Err(e.clone()))));
            return done;
        }
    };
    for (send, _) in ready {
        let entry = response
            .topics
            .iter()
            .filter(|t| *t.name == *send.topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition == send.partition);
        let unexpected = |detail: String| Error::UnexpectedResponse {
            broker: conn.broker().to_owned(),
            api: ApiKey::Produce,
            detail,
        };
        let result = match entry {
            None => Err(unexpected(format!("no result for {}/{}", send.topic, send.partition))),
            Some(p) if !p.error.is_ok() => Err(Error::partition(
                &send.topic,
                send.partition,
                p.error,
                p.message.clone(),
            )),
            Some(p) => u64::try_from(p.base_offset).map(Some).map_err(|_| {
                unexpected(format!(
                    "negative base offset {} for {}/{}",
                    p.base_offset, send.topic, send.partition
                ))
            }),
        };
        done.push((send, result));
    }
    done
}
