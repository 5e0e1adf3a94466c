//! A tiny in-process fake broker for the client's tests.
//!
//! It speaks the real protocol through `Framed<TcpStream, ServerCodec>` on `127.0.0.1:0` and
//! answers ApiVersions, Metadata, Produce, Fetch, ListOffsets, CreateTopics, DeleteTopics and
//! InitProducerId plausibly: appended batches are kept in memory with the broker-owned prefix
//! written (base offset, term, index), fetches long-poll, offsets are dense. Producer ids are
//! 1000, 1001, … (epoch 0), and produce applies the idempotence rules per partition and
//! producer id: a repeat of one of the producer's last 64 batches is not appended again but
//! answered with its original offset, a batch that does not follow the previous one gets
//! `OUT_OF_ORDER_SEQUENCE_NUMBER`, an older epoch `INVALID_PRODUCER_EPOCH`, and an unknown
//! producer may start at any sequence. Faults are injected through [`State`]: errors for the
//! next produce attempts, APIs it never answers, APIs that close the connection, produce
//! requests applied but never answered (the connection closes), a produce delay, malformed
//! responses.
//!
//! Like a real broker it answers each connection's requests in order, one at a time.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use strata_client::{Client, ClientConfig};
use strata_protocol::api::list_offsets::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use strata_protocol::api::{
    ApiKey, ApiVersionRange, ApiVersionsResponse, BrokerMetadata, ConfigEntry, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, FetchPartitionResponse, FetchRequest,
    FetchResponse, InitProducerIdResponse, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, PartitionMetadata, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    Request, Response, TopicData, TopicMetadata, TopicResult,
};
use strata_protocol::batch::BatchHeader;
use strata_protocol::codec::{OutgoingResponse, ServerCodec};
use strata_protocol::frame::RequestError;
use strata_protocol::{
    BatchIter, BatchLimits, ControlType, ErrorCode, Offset, RaftIndex, RaftTerm, RecordBatch, control_batch,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::codec::Framed;
use tokio_util::task::AbortOnDropHandle;

pub const NODE_ID: i32 = 1;
/// The first producer id the fake hands out.
pub const FIRST_PRODUCER_ID: i64 = 1000;
/// How many of a producer's batches per partition the fake remembers to drop repeats.
const PRODUCER_BATCHES_REMEMBERED: usize = 64;

/// One batch as a produce request carried it (whether or not it was appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedBatch {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

/// What the fake knows of one producer on one partition.
#[derive(Debug, Clone)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Sequence of the last record appended.
    pub last_sequence: i32,
    /// The last few batches appended: (first sequence, last sequence, base offset).
    pub recent: VecDeque<(i32, i32, u64)>,
}

/// `seq + n` in the wrapping sequence space (0..=i32::MAX).
fn sequence_add(seq: i32, n: i64) -> i32 {
    i32::try_from((i64::from(seq) + n).rem_euclid(1 << 31)).unwrap()
}

/// What to do with one idempotent batch.
enum Verdict {
    Append,
    Duplicate(u64),
    Refuse(ErrorCode),
}

fn verdict(entry: Option<&ProducerEntry>, h: &BatchHeader) -> Verdict {
    let first = h.base_sequence;
    let last = sequence_add(first, i64::from(h.record_count) - 1);
    let Some(e) = entry else {
        return Verdict::Append;
    };
    if h.producer_epoch < e.epoch {
        return Verdict::Refuse(ErrorCode::InvalidProducerEpoch);
    }
    if h.producer_epoch > e.epoch {
        return Verdict::Append;
    }
    if let Some(&(_, _, base)) = e.recent.iter().find(|(f, l, _)| (*f, *l) == (first, last)) {
        return Verdict::Duplicate(base);
    }
    if first != sequence_add(e.last_sequence, 1) {
        return Verdict::Refuse(ErrorCode::OutOfOrderSequenceNumber);
    }
    Verdict::Append
}

/// One partition's log.
#[derive(Debug, Default)]
pub struct PartitionLog {
    /// Stored batches, broker prefix written.
    pub batches: Vec<Bytes>,
    pub log_start: u64,
    pub next_offset: u64,
    pub next_index: u64,
    /// No leader (metadata says −1) while set.
    pub leaderless: bool,
    /// The leader's term fetches are answered with; a fetch naming a later one is refused
    /// with `UNKNOWN_LEADER_EPOCH` (a deposed leader).
    pub leader_term: i64,
}

impl PartitionLog {
    fn append(&mut self, batch: &[u8], record_count: u32) -> u64 {
        let h = BatchHeader::parse(batch).expect("validated batch");
        let base = self.next_offset;
        self.next_index += 1;
        let mut stored = batch.to_vec();
        let prefix = BatchHeader::broker_fields(h.batch_length, Offset(base), RaftTerm(1), RaftIndex(self.next_index));
        stored[..prefix.len()].copy_from_slice(&prefix);
        self.batches.push(Bytes::from(stored));
        self.next_offset += u64::from(record_count);
        base
    }
}

#[derive(Debug, Default)]
pub struct Topic {
    pub partitions: Vec<PartitionLog>,
    pub configs: Vec<ConfigEntry>,
}

/// What the fake broker knows, and the faults to inject.
#[derive(Debug, Default)]
pub struct State {
    pub topics: BTreeMap<String, Topic>,
    /// API keys of every request received, in order.
    pub requests: Vec<i16>,
    /// Each produce request: (topic, partition, batches in its record set).
    pub produce_log: Vec<Vec<(String, i32, usize)>>,
    /// Every batch received in a produce request, in order.
    pub produced: Vec<ProducedBatch>,
    /// Idempotence state per (topic, partition, producer id).
    pub producers: HashMap<(String, i32, i64), ProducerEntry>,
    /// Producer ids handed out (the next is `FIRST_PRODUCER_ID` plus this).
    pub producer_ids_issued: i64,
    /// The next this many produce requests are applied, then the connection closes instead of
    /// answering (a lost response).
    pub close_after_produce: usize,
    /// Error codes for the next produce partition entries, one per entry.
    pub produce_errors: VecDeque<ErrorCode>,
    /// Sleep before answering each produce request.
    pub produce_delay: Duration,
    /// APIs never answered.
    pub silent: HashSet<i16>,
    /// APIs that make the broker close the connection instead of answering.
    pub close_on: HashSet<i16>,
    /// APIs answered with a body that does not decode.
    pub malformed: HashSet<i16>,
    /// APIs answered with a request-level error.
    pub reject: HashMap<i16, ErrorCode>,
    /// Override of the ApiVersions answer.
    pub api_versions: Option<Vec<ApiVersionRange>>,
    /// Connections accepted.
    pub connections: usize,
    /// This broker's node id.
    pub node_id: i32,
    /// Other brokers to list in metadata.
    pub peers: Vec<BrokerMetadata>,
    /// Leader overrides: (topic, partition) → node id.
    pub leaders: HashMap<(String, i32), i32>,
}

pub struct FakeBroker {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    appended: Arc<Notify>,
    _task: AbortOnDropHandle<()>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeBroker {
    pub async fn start() -> FakeBroker {
        Self::start_node(NODE_ID).await
    }

    pub async fn start_node(node_id: i32) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            node_id,
            ..State::default()
        }));
        let appended = Arc::new(Notify::new());
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            let appended = Arc::clone(&appended);
            async move {
                let mut conns = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    lock(&state).connections += 1;
                    let conn = Conn {
                        state: Arc::clone(&state),
                        appended: Arc::clone(&appended),
                        port: addr.port(),
                    };
                    conns.spawn(conn.serve(stream));
                    while conns.try_join_next().is_some() {}
                }
            }
        });
        FakeBroker {
            addr,
            state,
            appended,
            _task: AbortOnDropHandle::new(task),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.state))
    }

    pub fn create_topic(&self, name: &str, partitions: usize) {
        self.with(|s| {
            s.topics.insert(
                name.to_owned(),
                Topic {
                    partitions: (0..partitions).map(|_| PartitionLog::default()).collect(),
                    configs: vec![ConfigEntry {
                        key: "retention.ms".into(),
                        value: "604800000".into(),
                    }],
                },
            );
        });
    }

    pub fn count(&self, api: ApiKey) -> usize {
        self.with(|s| s.requests.iter().filter(|k| **k == api as i16).count())
    }

    /// Every record in the partition: (offset, value).
    pub fn records(&self, topic: &str, partition: usize) -> Vec<(u64, Option<Bytes>)> {
        let batches = self.with(|s| s.topics[topic].partitions[partition].batches.clone());
        let mut out = Vec::new();
        for b in batches {
            let batch = RecordBatch::verify_stored(b, &BatchLimits::default()).unwrap();
            for r in batch.records().unwrap() {
                let r = r.unwrap();
                out.push((r.offset.0, r.value));
            }
        }
        out
    }

    /// Appends a control batch (a Raft no-op) to the partition.
    pub fn append_control(&self, topic: &str, partition: usize) {
        let batch = control_batch(ControlType::Noop, &[], 0).unwrap();
        self.with(|s| {
            let log = &mut s.topics.get_mut(topic).unwrap().partitions[partition];
            log.append(&batch, 0);
        });
        self.appended.notify_waiters();
    }

    /// Flips a byte in the records of the partition's last batch (its CRC no longer matches).
    pub fn corrupt_last_batch(&self, topic: &str, partition: usize) {
        self.with(|s| {
            let log = &mut s.topics.get_mut(topic).unwrap().partitions[partition];
            let last = log.batches.pop().unwrap();
            let mut v = last.to_vec();
            let n = v.len();
            v[n - 1] ^= 0x55;
            log.batches.push(Bytes::from(v));
        });
    }
}

/// One accepted connection.
struct Conn {
    state: Arc<Mutex<State>>,
    appended: Arc<Notify>,
    port: u16,
}

impl Conn {
    async fn serve(self, stream: TcpStream) {
        let mut framed = Framed::new(
            stream,
            ServerCodec {
                max_frame_bytes: 64 << 20,
            },
        );
        while let Some(Ok(req)) = framed.next().await {
            let key = req.header.api_key;
            let (silent, close, malformed, reject) = {
                let mut s = lock(&self.state);
                s.requests.push(key);
                (
                    s.silent.contains(&key),
                    s.close_on.contains(&key),
                    s.malformed.contains(&key),
                    s.reject.get(&key).copied(),
                )
            };
            if close {
                return;
            }
            let close_after = key == ApiKey::Produce as i16 && {
                let mut s = lock(&self.state);
                let close = s.close_after_produce > 0 && !silent && !malformed && reject.is_none();
                if close {
                    s.close_after_produce -= 1;
                }
                close
            };
            if silent {
                continue;
            }
            let body = match req.body {
                Err(e) => Some(Err(e)),
                Ok(_) if reject.is_some() => Some(Err(request_error(
                    reject.unwrap_or(ErrorCode::UnknownServerError),
                    "rejected by the fake broker",
                ))),
                Ok(_) if malformed => {
                    // A body of another API: does not decode as the one asked for.
                    Some(Ok(Response::ApiVersions(ApiVersionsResponse {
                        apis: vec![ApiVersionRange {
                            api_key: 1,
                            min_version: 2,
                            max_version: 3,
                        }],
                    })))
                }
                Ok(body) => self.handle(body).await.map(Ok),
            };
            if close_after {
                return;
            }
            let Some(body) = body else { continue };
            let response = OutgoingResponse {
                correlation_id: req.header.correlation_id,
                api_version: req.header.api_version,
                body,
            };
            if framed.send(response).await.is_err() {
                return;
            }
        }
    }

    async fn handle(&self, body: Request) -> Option<Response> {
        Some(match body {
            Request::ApiVersions(_) => {
                let apis = lock(&self.state)
                    .api_versions
                    .clone()
                    .unwrap_or_else(|| ApiVersionsResponse::supported().apis);
                Response::ApiVersions(ApiVersionsResponse { apis })
            }
            Request::Metadata(r) => Response::Metadata(self.metadata(r)),
            Request::Produce(r) => {
                let delay = lock(&self.state).produce_delay;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let acks = r.acks;
                let response = self.produce(r);
                self.appended.notify_waiters();
                if acks == 0 {
                    return None;
                }
                Response::Produce(response)
            }
            Request::Fetch(r) => Response::Fetch(self.fetch(r).await),
            Request::ListOffsets(r) => Response::ListOffsets(self.list_offsets(r)),
            Request::InitProducerId(_) => {
                let mut s = lock(&self.state);
                let producer_id = FIRST_PRODUCER_ID + s.producer_ids_issued;
                s.producer_ids_issued += 1;
                Response::InitProducerId(InitProducerIdResponse {
                    error: ErrorCode::None,
                    message: None,
                    producer_id,
                    producer_epoch: 0,
                })
            }
            Request::CreateTopics(r) => Response::CreateTopics(self.create_topics(r)),
            Request::DeleteTopics(r) => Response::DeleteTopics(self.delete_topics(r)),
            // Broker-to-broker only, never answered.
            Request::RaftMessages(_) => return None,
            // Cluster administration: this mock is a single broker with nothing to move.
            Request::AlterPartitionReassignments(_)
            | Request::ListPartitionReassignments(_)
            | Request::DecommissionBroker(_)
            | Request::BrokerRegistration(_)
            | Request::LeaderAnnouncements(_)
            | Request::FindCoordinator(_)
            | Request::ConsumerGroupHeartbeat(_)
            | Request::OffsetCommit(_)
            | Request::OffsetFetch(_)
            | Request::ListGroups(_)
            | Request::DescribeGroups(_)
            | Request::DeleteGroups(_) => return None,
        })
    }

    fn metadata(&self, r: MetadataRequest) -> MetadataResponse {
        let s = lock(&self.state);
        let names: Vec<String> = r.topics.unwrap_or_else(|| s.topics.keys().cloned().collect());
        let topics = names
            .into_iter()
            .map(|name| match s.topics.get(&name) {
                None => TopicMetadata {
                    error: ErrorCode::UnknownTopicOrPartition,
                    name,
                    partitions: vec![],
                    configs: vec![],
                },
                Some(t) => TopicMetadata {
                    error: ErrorCode::None,
                    partitions: t
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(i, p)| PartitionMetadata {
                            error: ErrorCode::None,
                            partition: i as i32,
                            leader: match s.leaders.get(&(name.clone(), i as i32)) {
                                Some(l) => *l,
                                None if p.leaderless => -1,
                                None => s.node_id,
                            },
                            leader_term: 1,
                            replicas: vec![s.node_id],
                            in_sync: vec![s.node_id],
                            log_start_offset: p.log_start as i64,
                            high_watermark: p.next_offset as i64,
                        })
                        .collect(),
                    configs: t.configs.clone(),
                    name,
                },
            })
            .collect();
        let mut brokers = vec![BrokerMetadata {
            node_id: s.node_id,
            host: "127.0.0.1".into(),
            port: i32::from(self.port),
        }];
        brokers.extend(s.peers.iter().cloned());
        MetadataResponse {
            brokers,
            controller_id: s.node_id,
            cluster_id: Some("fake-cluster".into()),
            topics,
        }
    }

    fn produce(&self, r: ProduceRequest) -> ProduceResponse {
        let mut s = lock(&self.state);
        let s = &mut *s;
        let mut log_entry = Vec::new();
        let mut topics = Vec::new();
        for t in r.topics {
            let mut partitions = Vec::new();
            for p in t.partitions {
                let batches: Vec<_> = BatchIter::new(p.records.clone(), BatchLimits::default()).collect();
                log_entry.push((t.name.clone(), p.partition, batches.len()));
                for b in batches.iter().flatten() {
                    let h = b.header();
                    s.produced.push(ProducedBatch {
                        topic: t.name.clone(),
                        partition: p.partition,
                        producer_id: h.producer_id,
                        producer_epoch: h.producer_epoch,
                        base_sequence: h.base_sequence,
                        record_count: h.record_count,
                    });
                }
                let injected = s.produce_errors.pop_front();
                let mut resp = ProducePartitionResponse {
                    partition: p.partition,
                    error: ErrorCode::None,
                    base_offset: -1,
                    log_append_time: -1,
                    log_start_offset: -1,
                    leader_id: NODE_ID,
                    message: None,
                };
                let Some(log) = s
                    .topics
                    .get_mut(&t.name)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(p.partition).unwrap_or(usize::MAX)))
                else {
                    resp.error = ErrorCode::UnknownTopicOrPartition;
                    partitions.push(resp);
                    continue;
                };
                if let Some(code) = injected {
                    resp.error = code;
                    resp.message = Some(format!("injected {code}"));
                    partitions.push(resp);
                    continue;
                }
                let Ok(batches) = batches.into_iter().collect::<Result<Vec<RecordBatch>, _>>() else {
                    resp.error = ErrorCode::CorruptBatch;
                    partitions.push(resp);
                    continue;
                };
                // Check every batch before appending any: the request applies whole or not at all.
                let mut producers: HashMap<i64, Option<ProducerEntry>> = HashMap::new();
                let mut verdicts = Vec::new();
                let mut next_offset = log.next_offset;
                for b in &batches {
                    let h = b.header();
                    if h.producer_id < 0 {
                        verdicts.push(Verdict::Append);
                        next_offset += u64::from(h.record_count);
                        continue;
                    }
                    let entry = producers
                        .entry(h.producer_id)
                        .or_insert_with(|| s.producers.get(&(t.name.clone(), p.partition, h.producer_id)).cloned());
                    let v = verdict(entry.as_ref(), h);
                    if let Verdict::Append = v {
                        let last = sequence_add(h.base_sequence, i64::from(h.record_count) - 1);
                        let e = entry.get_or_insert_with(|| ProducerEntry {
                            epoch: h.producer_epoch,
                            last_sequence: last,
                            recent: VecDeque::new(),
                        });
                        if h.producer_epoch > e.epoch {
                            e.recent.clear();
                        }
                        e.epoch = h.producer_epoch;
                        e.last_sequence = last;
                        e.recent.push_back((h.base_sequence, last, next_offset));
                        if e.recent.len() > PRODUCER_BATCHES_REMEMBERED {
                            e.recent.pop_front();
                        }
                        next_offset += u64::from(h.record_count);
                    }
                    verdicts.push(v);
                }
                if let Some(code) = verdicts.iter().find_map(|v| match v {
                    Verdict::Refuse(code) => Some(*code),
                    _ => None,
                }) {
                    resp.error = code;
                    resp.message = Some(format!("fake broker: {code}"));
                    partitions.push(resp);
                    continue;
                }
                let mut base = None;
                for (b, v) in batches.iter().zip(verdicts) {
                    let offset = match v {
                        Verdict::Duplicate(offset) => offset,
                        _ => log.append(b.as_bytes(), b.header().record_count),
                    };
                    base.get_or_insert(offset);
                }
                for (id, entry) in producers {
                    if let Some(entry) = entry {
                        s.producers.insert((t.name.clone(), p.partition, id), entry);
                    }
                }
                resp.base_offset = base.map_or(-1, |b| b as i64);
                resp.log_start_offset = log.log_start as i64;
                partitions.push(resp);
            }
            topics.push(TopicData {
                name: t.name,
                partitions,
            });
        }
        s.produce_log.push(log_entry);
        ProduceResponse { topics }
    }

    fn fetch_now(&self, r: &FetchRequest) -> (FetchResponse, usize) {
        let s = lock(&self.state);
        let mut total = 0;
        let topics = r
            .topics
            .iter()
            .map(|t| TopicData {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut resp = FetchPartitionResponse {
                            partition: p.partition,
                            error: ErrorCode::None,
                            high_watermark: -1,
                            log_start_offset: -1,
                            leader_id: NODE_ID,
                            leader_term: 1,
                            records: Bytes::new(),
                        };
                        let Some(log) = s
                            .topics
                            .get(&t.name)
                            .and_then(|t| t.partitions.get(usize::try_from(p.partition).unwrap_or(usize::MAX)))
                        else {
                            resp.error = ErrorCode::UnknownTopicOrPartition;
                            return resp;
                        };
                        if p.current_leader_term > log.leader_term {
                            resp.error = ErrorCode::UnknownLeaderEpoch;
                            return resp;
                        }
                        resp.leader_term = log.leader_term;
                        resp.high_watermark = log.next_offset as i64;
                        resp.log_start_offset = log.log_start as i64;
                        let offset = p.fetch_offset as u64;
                        if p.fetch_offset < 0 || offset < log.log_start || offset > log.next_offset {
                            resp.error = ErrorCode::OffsetOutOfRange;
                            return resp;
                        }
                        let mut out = Vec::new();
                        for b in &log.batches {
                            let h = BatchHeader::parse(b).unwrap();
                            // Batches wholly below the fetch offset (a control batch takes no offset:
                            // one at the fetch offset is behind it too).
                            if h.next_offset().0 <= offset {
                                continue;
                            }
                            if !out.is_empty() && out.len() + b.len() > p.partition_max_bytes as usize {
                                break;
                            }
                            out.extend_from_slice(b);
                        }
                        total += out.len();
                        resp.records = Bytes::from(out);
                        resp
                    })
                    .collect(),
            })
            .collect();
        (FetchResponse { topics }, total)
    }

    async fn fetch(&self, r: FetchRequest) -> FetchResponse {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(r.max_wait_ms.max(0) as u64);
        loop {
            let notified = self.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (response, bytes) = self.fetch_now(&r);
            if bytes >= r.min_bytes.max(1) as usize || tokio::time::Instant::now() >= deadline {
                return response;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    fn list_offsets(&self, r: ListOffsetsRequest) -> ListOffsetsResponse {
        let s = lock(&self.state);
        let topics = r
            .topics
            .into_iter()
            .map(|t| TopicData {
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut resp = ListOffsetsPartitionResponse {
                            partition: p.partition,
                            error: ErrorCode::None,
                            timestamp: -1,
                            offset: -1,
                            leader_id: NODE_ID,
                            leader_term: 1,
                        };
                        let Some(log) = s
                            .topics
                            .get(&t.name)
                            .and_then(|t| t.partitions.get(usize::try_from(p.partition).unwrap_or(usize::MAX)))
                        else {
                            resp.error = ErrorCode::UnknownTopicOrPartition;
                            return resp;
                        };
                        if p.current_leader_term > log.leader_term {
                            resp.error = ErrorCode::UnknownLeaderEpoch;
                            resp.leader_term = -1;
                            return resp;
                        }
                        resp.leader_term = log.leader_term;
                        resp.offset = match p.timestamp {
                            EARLIEST_TIMESTAMP => log.log_start as i64,
                            LATEST_TIMESTAMP => log.next_offset as i64,
                            ts => log
                                .batches
                                .iter()
                                .filter_map(|b| RecordBatch::verify_stored(b.clone(), &BatchLimits::default()).ok())
                                .flat_map(|b| b.records().unwrap().map(Result::unwrap).collect::<Vec<_>>())
                                .find(|r| r.timestamp >= ts)
                                .map_or(-1, |r| r.offset.0 as i64),
                        };
                        resp
                    })
                    .collect(),
                name: t.name,
            })
            .collect();
        ListOffsetsResponse { topics }
    }

    fn create_topics(&self, r: CreateTopicsRequest) -> CreateTopicsResponse {
        let mut s = lock(&self.state);
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let error = if s.topics.contains_key(&t.name) {
                    ErrorCode::TopicAlreadyExists
                } else if t.num_partitions <= 0 {
                    ErrorCode::InvalidPartitions
                } else if t.replication_factor != 1 {
                    ErrorCode::InvalidReplicationFactor
                } else {
                    ErrorCode::None
                };
                if error.is_ok() && !r.validate_only {
                    s.topics.insert(
                        t.name.clone(),
                        Topic {
                            partitions: (0..t.num_partitions).map(|_| PartitionLog::default()).collect(),
                            configs: t.configs,
                        },
                    );
                }
                TopicResult {
                    message: (!error.is_ok()).then(|| format!("cannot create {}", t.name)),
                    name: t.name,
                    error,
                }
            })
            .collect();
        CreateTopicsResponse { topics }
    }

    fn delete_topics(&self, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let mut s = lock(&self.state);
        let topics = r
            .names
            .into_iter()
            .map(|name| TopicResult {
                error: if s.topics.remove(&name).is_some() {
                    ErrorCode::None
                } else {
                    ErrorCode::UnknownTopicOrPartition
                },
                name,
                message: None,
            })
            .collect();
        DeleteTopicsResponse { topics }
    }
}

/// A fake broker with one topic, `t`, of `partitions` partitions, and a client connected to it
/// whose requests time out after 5 s.
pub async fn topic_t_and_client(partitions: usize) -> (FakeBroker, Client) {
    let broker = FakeBroker::start().await;
    broker.create_topic("t", partitions);
    let client = Client::connect(ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(&broker.bootstrap())
    })
    .await
    .unwrap();
    (broker, client)
}

/// A request-level error, for fakes that answer one.
pub fn request_error(code: ErrorCode, message: &str) -> RequestError {
    RequestError {
        code,
        message: message.to_owned(),
    }
}

/// Waits for `cond` to hold, polling every 5 ms, at most `within`.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
