//! The producer's sender task: drains the accumulator, sends one produce request per leader,
//! and turns responses into completions, retries and metadata refreshes.
//!
//! The loop never blocks on the network: requests in flight live in a `FuturesUnordered` and a
//! metadata refresh in an optional future, all raced in one `select!` with the accumulator's
//! wake-up and the next linger/backoff deadline. Every branch is cancellation-safe: dropping a
//! `Notified`, a `Sleep` or a `next()` loses nothing, because state lives in the accumulator and
//! in the futures themselves, not in the branch.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use strata_protocol::api::{Acks, ApiKey, ProducePartition, ProduceRequest, TopicData};
use tracing::debug;

use super::ProducerConfig;
use super::accumulator::{Accumulator, PartitionSend};
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
    loop {
        let now = Instant::now();
        let metadata = client.metadata();
        let leader_of = |topic: &str, partition: i32| -> Option<i32> {
            let leader = metadata.topic(topic)?.partition(partition)?.leader?;
            metadata.brokers.contains_key(&leader).then_some(leader)
        };
        let drained = acc.drain(now, config.max_request_size, &leader_of);
        if !drained.expired.is_empty() {
            let error = Error::Timeout {
                what: "delivery",
                broker: "-".to_owned(),
                after: config.delivery_timeout,
            };
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
        let mut by_leader: BTreeMap<i32, Vec<PartitionSend>> = BTreeMap::new();
        for send in drained.ready {
            by_leader.entry(send.leader).or_default().push(send);
        }
        for (leader, sends) in by_leader {
            in_flight.push(send_to_leader(client.clone(), leader, sends, config.acks, config.request_timeout).boxed());
        }
        if acc.is_closed() && acc.is_empty() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            () = acc.wait_for_work() => {}
            () = sleep_until(next_check) => {}
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                handle_outcome(&acc, &config, outcome, &mut want_metadata);
            }
            () = maybe(&mut refresh) => refresh = None,
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

/// Completes, retries or fails each partition's send.
fn handle_outcome(acc: &Accumulator, config: &ProducerConfig, outcome: Outcome, want_metadata: &mut BTreeSet<String>) {
    let now = Instant::now();
    for (send, result) in outcome {
        let error = match result {
            Ok(base_offset) => {
                acc.complete(send, Ok(base_offset));
                continue;
            }
            Err(e) => e,
        };
        let attempts = send.attempts();
        let retry_at = now + Client::backoff(config.retry_backoff, config.retry_backoff_max, attempts + 1);
        let deadline = send.created().map(|c| c + config.delivery_timeout);
        let in_time = deadline.is_some_and(|d| retry_at < d);
        if error.is_retriable() && attempts < config.retries && in_time {
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
            acc.requeue(send, retry_at);
        } else {
            debug!(topic = %send.topic, partition = send.partition, error = %error, "produce failed");
            acc.complete(send, Err(error));
        }
    }
}

/// Seals a send's batches and returns its record set: the batches back to back.
fn record_set(send: &mut PartitionSend) -> Result<Bytes> {
    if let [only] = send.batches.as_mut_slice() {
        return only.seal();
    }
    let mut sealed = Vec::with_capacity(send.batches.len());
    for b in &mut send.batches {
        sealed.push(b.seal()?);
    }
    let mut out = BytesMut::with_capacity(sealed.iter().map(Bytes::len).sum());
    for b in sealed {
        out.extend_from_slice(&b);
    }
    Ok(out.freeze())
}

/// Sends one produce request to `leader` for all of `sends` and maps the response back.
async fn send_to_leader(
    client: Client,
    leader: i32,
    sends: Vec<PartitionSend>,
    acks: Acks,
    request_timeout: Duration,
) -> Outcome {
    let mut done = Vec::new();
    let mut ready = Vec::new();
    for mut send in sends {
        match record_set(&mut send) {
            Ok(records) => ready.push((send, records)),
            Err(e) => done.push((send, Err(e))),
        }
    }
    if ready.is_empty() {
        return done;
    }
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
