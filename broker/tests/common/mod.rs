//! Helpers shared by the broker integration tests: a raw protocol client, batch helpers, and the
//! path of the broker binary. The broker process harness itself is `strata_testkit`'s.
#![allow(dead_code)]

pub mod cluster;
pub mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use strata_protocol::api::*;
use strata_protocol::codec::{ClientCodec, OutgoingRequest};
use strata_protocol::frame::{RequestError, RequestHeader};
use strata_protocol::{BatchBuilder, BatchIter, BatchLimits, BatchOptions};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The `strata-broker` binary Cargo built for these tests, for `strata_testkit::BrokerProcess`.
pub const BROKER: &str = env!("CARGO_BIN_EXE_strata-broker");

pub struct Client {
    pub framed: Framed<TcpStream, ClientCodec>,
    pub next_id: i32,
}

impl Client {
    /// Sends a produce request; `None` if the connection failed (e.g. the broker died).
    pub async fn try_produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Option<ProducePartitionResponse> {
        let body = Request::Produce(ProduceRequest {
            acks,
            timeout_ms: 10_000,
            topics: vec![TopicData {
                name: topic.into(),
                partitions: vec![ProducePartition { partition, records }],
            }],
        });
        match self.try_call(body).await? {
            Response::Produce(r) => r.topics.into_iter().next()?.partitions.into_iter().next(),
            _ => None,
        }
    }

    /// Sends one request (at the newest version of its API) and reads its response; `None` if
    /// the connection failed first.
    pub async fn try_call(&mut self, body: Request) -> Option<Response> {
        self.next_id += 1;
        let key = body.api_key();
        let version = *key.versions().end();
        let header = RequestHeader {
            api_key: key as i16,
            api_version: version,
            correlation_id: self.next_id,
            client_id: None,
        };
        self.framed.send(OutgoingRequest { header, body }).await.ok()?;
        let raw = self.framed.next().await?.ok()?;
        raw.decode(key, version).ok()
    }

    /// Sends a fetch; `None` if the connection failed before a response.
    pub async fn try_fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> Option<FetchPartitionResponse> {
        self.try_fetch_at_term(topic, partition, offset, max_wait_ms, min_bytes, -1)
            .await
    }

    /// Sends a fetch naming the highest leader term the reader was served from (−1: none).
    pub async fn try_fetch_at_term(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
        current_leader_term: i64,
    ) -> Option<FetchPartitionResponse> {
        let body = Request::Fetch(FetchRequest {
            max_wait_ms,
            min_bytes,
            max_bytes: 1 << 20,
            topics: vec![TopicData {
                name: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    fetch_offset: offset,
                    partition_max_bytes: 1 << 20,
                    current_leader_term,
                }],
            }],
        });
        match self.try_call(body).await? {
            Response::Fetch(r) => r.topics.into_iter().next()?.partitions.into_iter().next(),
            _ => None,
        }
    }

    /// Connects within 500 ms, or `None` (a killed or paused broker).
    pub async fn try_connect(addr: SocketAddr) -> Option<Self> {
        let s = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        Some(Self {
            framed: Framed::new(
                s,
                ClientCodec {
                    max_frame_bytes: 64 << 20,
                },
            ),
            next_id: 0,
        })
    }

    pub async fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        Self {
            framed: Framed::new(
                s,
                ClientCodec {
                    max_frame_bytes: 64 << 20,
                },
            ),
            next_id: 0,
        }
    }

    pub async fn call(&mut self, body: Request) -> Result<Response, RequestError> {
        self.next_id += 1;
        let key = body.api_key();
        let header = RequestHeader {
            api_key: key as i16,
            api_version: 0,
            correlation_id: self.next_id,
            client_id: Some("test".into()),
        };
        self.framed.send(OutgoingRequest { header, body }).await.unwrap();
        let raw = tokio::time::timeout(Duration::from_secs(30), self.framed.next())
            .await
            .expect("response in time")
            .unwrap()
            .unwrap();
        assert_eq!(raw.correlation_id, self.next_id);
        raw.decode(key, 0)
    }

    pub async fn create(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> TopicResult {
        let configs = configs
            .iter()
            .map(|(k, v)| ConfigEntry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect();
        let r = self
            .call(Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: name.into(),
                    num_partitions: partitions,
                    replication_factor: 1,
                    configs,
                }],
                timeout_ms: 5000,
                validate_only: false,
            }))
            .await
            .unwrap();
        let Response::CreateTopics(r) = r else {
            panic!("wrong response")
        };
        r.topics.into_iter().next().unwrap()
    }

    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> ProducePartitionResponse {
        self.try_produce(topic, partition, records, acks)
            .await
            .expect("a produce response")
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> FetchPartitionResponse {
        self.try_fetch(topic, partition, offset, max_wait_ms, min_bytes)
            .await
            .expect("a fetch response")
    }

    /// ListOffsets v0 (no leader terms).
    pub async fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> ListOffsetsPartitionResponse {
        let r = self
            .call(Self::list_offsets_request(topic, partition, timestamp, -1))
            .await
            .unwrap();
        let Response::ListOffsets(r) = r else {
            panic!("wrong response")
        };
        r.topics[0].partitions[0]
    }

    /// ListOffsets at the newest version, sending `current_leader_term` (−1: no check).
    pub async fn list_offset_at_term(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        current_leader_term: i64,
    ) -> ListOffsetsPartitionResponse {
        let r = self
            .try_call(Self::list_offsets_request(
                topic,
                partition,
                timestamp,
                current_leader_term,
            ))
            .await;
        let Some(Response::ListOffsets(r)) = r else {
            panic!("wrong response: {r:?}")
        };
        r.topics[0].partitions[0]
    }

    fn list_offsets_request(topic: &str, partition: i32, timestamp: i64, current_leader_term: i64) -> Request {
        Request::ListOffsets(ListOffsetsRequest {
            topics: vec![TopicData {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition,
                    timestamp,
                    current_leader_term,
                }],
            }],
        })
    }

    /// Metadata for `topic` alone.
    pub async fn metadata(&mut self, topic: &str) -> TopicMetadata {
        let Response::Metadata(m) = self
            .call(Request::Metadata(MetadataRequest {
                topics: Some(vec![topic.into()]),
            }))
            .await
            .unwrap()
        else {
            panic!("not a metadata response")
        };
        m.topics.into_iter().next().unwrap()
    }

    /// Waits until every partition of `topic` has a leader.
    pub async fn wait_for_leaders(&mut self, topic: &str) {
        for _ in 0..500 {
            let t = self.metadata(topic).await;
            if t.error.is_ok() && t.partitions.iter().all(|p| p.leader >= 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no leader for {topic}");
    }
}

pub fn batch(values: &[&str], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(BatchOptions::default());
    for (i, v) in values.iter().enumerate() {
        b.append(ts + i as i64, None, Some(v.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap()
}

pub fn values(records: Bytes) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for b in BatchIter::new(records, BatchLimits::default()) {
        for r in b.unwrap().records().unwrap() {
            let r = r.unwrap();
            out.push((r.offset.0, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
        }
    }
    out
}
