//! A single broker, in-process, spoken to over TCP with the raw protocol: topics, produce,
//! fetch (including long-poll), list offsets, restart recovery, hostile frames.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use strata_broker::BrokerOptions;
use strata_protocol::ErrorCode;
use strata_protocol::api::list_offsets::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use strata_protocol::api::*;
use strata_protocol::codec::{ClientCodec, OutgoingRequest};
use strata_protocol::frame::RequestHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::Framed;

mod common;
use common::*;

struct TestBroker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestBroker {
    async fn start(dir: &Path) -> Self {
        Self::start_with(dir, BrokerOptions::default()).await
    }

    async fn start_with(dir: &Path, base: BrokerOptions) -> Self {
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let opts = BrokerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            http: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.join("data"),
            ready_file: Some(ready.clone()),
            raft_tick: Duration::from_millis(20),
            ..base
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(strata_broker::run(opts, async move {
            let _ = rx.await;
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
            {
                break v["listen"].as_str().unwrap().parse().unwrap();
            }
            assert!(tokio::time::Instant::now() < deadline, "broker did not become ready");
            assert!(!task.is_finished(), "broker exited early");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Self {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("broker stops")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_produce_fetch_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;

    let Response::ApiVersions(v) = c.call(Request::ApiVersions(ApiVersionsRequest)).await.unwrap() else {
        panic!()
    };
    assert_eq!(v.apis.len(), ApiKey::ALL.len());

    assert_eq!(
        c.create("orders", 3, &[("retention.ms", "-1")]).await.error,
        ErrorCode::None
    );
    assert_eq!(c.create("orders", 3, &[]).await.error, ErrorCode::TopicAlreadyExists);
    assert_eq!(c.create("bad/name", 1, &[]).await.error, ErrorCode::InvalidTopic);
    assert_eq!(c.create("t0", 0, &[]).await.error, ErrorCode::InvalidPartitions);
    assert_eq!(
        c.create("t1", 1, &[("segment.bytes", "1")]).await.error,
        ErrorCode::InvalidConfig
    );
    c.wait_for_leaders("orders").await;

    // Produce with each acks level; offsets are dense per partition.
    let r = c.produce("orders", 0, batch(&["a", "b"], 1000), -1).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 0), "{r:?}");
    let r = c.produce("orders", 0, batch(&["c"], 2000), 1).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 2));
    let r = c.produce("orders", 1, batch(&["x"], 3000), -1).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 0));
    assert_eq!(
        c.produce("orders", 7, batch(&["x"], 0), -1).await.error,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        c.produce("nope", 0, batch(&["x"], 0), -1).await.error,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        c.produce("orders", 0, batch(&["x"], 0), 5).await.error,
        ErrorCode::InvalidRequiredAcks
    );
    let mut corrupt = batch(&["x"], 0).to_vec();
    let n = corrupt.len();
    corrupt[n - 1] ^= 1;
    assert_eq!(
        c.produce("orders", 0, Bytes::from(corrupt), -1).await.error,
        ErrorCode::CorruptBatch
    );
    let big = "x".repeat(2 << 20);
    assert_eq!(
        c.produce("orders", 0, batch(&[&big], 0), -1).await.error,
        ErrorCode::MessageTooLarge
    );

    let f = c.fetch("orders", 0, 0, 0, 0).await;
    assert_eq!((f.error, f.high_watermark), (ErrorCode::None, 3));
    assert_eq!(
        values(f.records),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    // Fetching from the middle of a batch returns the whole batch.
    assert_eq!(values(c.fetch("orders", 0, 1, 0, 0).await.records)[0].0, 0);
    assert_eq!(c.fetch("orders", 0, 99, 0, 0).await.error, ErrorCode::OffsetOutOfRange);

    assert_eq!(c.list_offset("orders", 0, -2).await.offset, 0);
    assert_eq!(c.list_offset("orders", 0, -1).await.offset, 3);
    assert_eq!(c.list_offset("orders", 0, 1001).await.offset, 1);
    assert_eq!(c.list_offset("orders", 0, 1_000_000).await.offset, -1);

    // Long poll: a fetch at the end waits, and a produce on another connection wakes it.
    let addr = broker.addr;
    let waiter = tokio::spawn(async move {
        let mut c2 = Client::connect(addr).await;
        let started = tokio::time::Instant::now();
        let f = c2.fetch("orders", 0, 3, 10_000, 1).await;
        (f, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.produce("orders", 0, batch(&["d"], 4000), -1).await.base_offset, 3);
    let (f, waited) = waiter.await.unwrap();
    assert_eq!(values(f.records), vec![(3, "d".into())]);
    assert!(waited < Duration::from_secs(10), "the append woke the fetch");

    // Restart: everything acknowledged is back, and offsets continue.
    drop(c);
    broker.stop().await;
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;
    c.wait_for_leaders("orders").await;
    let mut all = Vec::new();
    let mut next = 0;
    while next < 4 {
        let f = c.fetch("orders", 0, next, 1000, 1).await;
        let v = values(f.records);
        next = v.last().unwrap().0 as i64 + 1;
        let have = all.len() as u64;
        all.extend(v.into_iter().filter(|(o, _)| *o >= have));
    }
    assert_eq!(
        all.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    assert_eq!(c.produce("orders", 0, batch(&["e"], 5000), -1).await.base_offset, 4);
    // Topic configuration survived the restart too.
    let Response::Metadata(m) = c
        .call(Request::Metadata(MetadataRequest {
            topics: Some(vec!["orders".into()]),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m.topics[0].partitions.len(), 3);
    assert!(
        m.topics[0]
            .configs
            .iter()
            .any(|e| e.key == "retention.ms" && e.value == "-1"),
        "{:?}",
        m.topics[0].configs
    );

    // Delete.
    let Response::DeleteTopics(d) = c
        .call(Request::DeleteTopics(DeleteTopicsRequest {
            names: vec!["orders".into(), "nope".into()],
            timeout_ms: 1000,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.topics[0].error, ErrorCode::None);
    assert_eq!(d.topics[1].error, ErrorCode::UnknownTopicOrPartition);
    assert_eq!(
        c.produce("orders", 0, batch(&["x"], 0), -1).await.error,
        ErrorCode::UnknownTopicOrPartition
    );
    assert!(!dir.path().join("data/partitions/orders-0").exists());
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut good = Client::connect(broker.addr).await;

    // Oversized length prefix: the connection is closed, nothing is buffered.
    let mut s = TcpStream::connect(broker.addr).await.unwrap();
    s.write_all(&(1u32 << 31).to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0),
        0
    );

    // Garbage header: closed.
    let mut s = TcpStream::connect(broker.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0),
        0
    );

    // Unknown API and unsupported version: error responses, and the connection keeps serving.
    let mut c = Client::connect(broker.addr).await;
    for (key, version) in [(999i16, 0i16), (ApiKey::Fetch as i16, 7)] {
        let header = RequestHeader {
            api_key: key,
            api_version: version,
            correlation_id: 77,
            client_id: None,
        };
        c.framed
            .send(OutgoingRequest {
                header,
                body: Request::ApiVersions(ApiVersionsRequest),
            })
            .await
            .unwrap();
        let raw = c.framed.next().await.unwrap().unwrap();
        assert_eq!((raw.correlation_id, raw.error), (77, ErrorCode::UnsupportedVersion));
    }
    // Random bodies behind a valid header: INVALID_REQUEST.
    let mut s = TcpStream::connect(broker.addr).await.unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&5i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(&[0xff; 9]);
    let mut msg = (frame.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&frame);
    s.write_all(&msg).await.unwrap();
    let mut f = Framed::new(
        s,
        ClientCodec {
            max_frame_bytes: 1 << 20,
        },
    );
    let raw = f.next().await.unwrap().unwrap();
    assert_eq!((raw.correlation_id, raw.error), (5, ErrorCode::InvalidRequest));

    // The well-behaved client never noticed.
    assert!(c.call(Request::ApiVersions(ApiVersionsRequest)).await.is_ok());
    assert!(
        good.call(Request::Metadata(MetadataRequest { topics: None }))
            .await
            .is_ok()
    );
    drop((c, good, f));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("p", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("p").await;
    // A long-polling fetch first, then fast requests: responses still come back in order.
    let fetch = Request::Fetch(FetchRequest {
        max_wait_ms: 300,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![TopicData {
            name: "p".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                current_leader_term: -1,
            }],
        }],
    });
    let mut ids = Vec::new();
    for (i, body) in [
        fetch,
        Request::ApiVersions(ApiVersionsRequest),
        Request::Metadata(MetadataRequest { topics: None }),
    ]
    .into_iter()
    .enumerate()
    {
        let header = RequestHeader {
            api_key: body.api_key() as i16,
            api_version: 0,
            correlation_id: 100 + i as i32,
            client_id: None,
        };
        c.framed.send(OutgoingRequest { header, body }).await.unwrap();
        ids.push(100 + i as i32);
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(c.framed.next().await.unwrap().unwrap().correlation_id);
    }
    assert_eq!(got, ids);
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_produce_request_can_span_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;
    for t in ["a", "b"] {
        assert_eq!(c.create(t, 2, &[]).await.error, ErrorCode::None);
        c.wait_for_leaders(t).await;
    }
    let part = |partition, v: &str| ProducePartition {
        partition,
        records: batch(&[v], 0),
    };
    let Response::Produce(r) = c
        .call(Request::Produce(ProduceRequest {
            acks: -1,
            timeout_ms: 10_000,
            topics: vec![
                TopicData {
                    name: "a".into(),
                    partitions: vec![part(0, "a0"), part(1, "a1")],
                },
                TopicData {
                    name: "b".into(),
                    partitions: vec![part(1, "b1"), part(9, "b9")],
                },
            ],
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let got: Vec<(String, i32, ErrorCode)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition, p.error)))
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), 0, ErrorCode::None),
            ("a".into(), 1, ErrorCode::None),
            ("b".into(), 1, ErrorCode::None),
            ("b".into(), 9, ErrorCode::UnknownTopicOrPartition)
        ]
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_long_polls_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BrokerOptions {
        idle_timeout: Duration::from_millis(300),
        ..BrokerOptions::default()
    };
    let broker = TestBroker::start_with(dir.path(), opts).await;
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("idle", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("idle").await;
    // A long poll longer than the idle timeout is in flight, so the connection stays.
    let f = c.fetch("idle", 0, 0, 1000, 1).await;
    assert_eq!(f.error, ErrorCode::None);
    assert!(c.call(Request::ApiVersions(ApiVersionsRequest)).await.is_ok());
    // A silent connection, and one trickling half a frame, are both closed.
    let mut silent = TcpStream::connect(broker.addr).await.unwrap();
    let mut trickle = TcpStream::connect(broker.addr).await.unwrap();
    trickle.write_all(&[0, 0, 0, 50, 0]).await.unwrap();
    let mut buf = [0u8; 8];
    for s in [&mut silent, &mut trickle] {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_responses_stay_bounded_whatever_the_client_asks() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BrokerOptions {
        max_frame_bytes: 2 << 20,
        ..BrokerOptions::default()
    };
    let broker = TestBroker::start_with(dir.path(), opts).await;
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("big", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("big").await;
    let value = "v".repeat(200 << 10);
    for _ in 0..16 {
        assert!(c.produce("big", 0, batch(&[&value, &value], 0), -1).await.error.is_ok());
    }
    // ~6.4 MiB stored; the client asks for everything at once.
    let r = c
        .call(Request::Fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: i32::MAX,
            topics: vec![TopicData {
                name: "big".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: i32::MAX,
                    current_leader_term: -1,
                }],
            }],
        }))
        .await
        .unwrap();
    let Response::Fetch(r) = r else { panic!() };
    let got = r.topics[0].partitions[0].records.len();
    assert!(
        got > 0 && got <= (1 << 20) + (420 << 10),
        "response carried {got} bytes"
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_delete_and_recreate_never_leave_a_topic_without_its_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("churn", 4, &[]).await.error, ErrorCode::None);
    for _ in 0..20 {
        let (mut a, mut b) = (Client::connect(broker.addr).await, Client::connect(broker.addr).await);
        let del = tokio::spawn(async move {
            a.call(Request::DeleteTopics(DeleteTopicsRequest {
                names: vec!["churn".into()],
                timeout_ms: 5000,
            }))
            .await
            .unwrap()
        });
        let create = tokio::spawn(async move { b.create("churn", 4, &[]).await });
        let _ = (del.await.unwrap(), create.await.unwrap());
        let Response::Metadata(m) = c
            .call(Request::Metadata(MetadataRequest {
                topics: Some(vec!["churn".into()]),
            }))
            .await
            .unwrap()
        else {
            panic!()
        };
        if m.topics[0].error.is_ok() {
            c.wait_for_leaders("churn").await;
            for p in 0..4 {
                let r = c.produce("churn", p, batch(&["x"], 0), -1).await;
                assert_eq!(r.error, ErrorCode::None, "partition {p} of a topic that exists: {r:?}");
            }
        } else {
            assert_eq!(c.create("churn", 4, &[]).await.error, ErrorCode::None);
        }
    }
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_leader_with_a_zero_timeout_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("t0", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("t0").await;
    for i in 0..5 {
        let Response::Produce(r) = c
            .call(Request::Produce(ProduceRequest {
                acks: 1,
                timeout_ms: 0,
                topics: vec![TopicData {
                    name: "t0".into(),
                    partitions: vec![ProducePartition {
                        partition: 0,
                        records: batch(&["x"], 0),
                    }],
                }],
            }))
            .await
            .unwrap()
        else {
            panic!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error, p.base_offset), (ErrorCode::None, i), "{p:?}");
    }
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_naming_a_later_leader_term_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("terms", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("terms").await;
    assert_eq!(
        c.produce("terms", 0, batch(&["a", "b"], 0), -1).await.error,
        ErrorCode::None
    );
    // No term: served, and the answer names the serving leader's term.
    let f = c.try_fetch("terms", 0, 0, 0, 0).await.unwrap();
    assert_eq!((f.error, f.high_watermark), (ErrorCode::None, 2), "{f:?}");
    assert!(f.leader_term >= 1, "{f:?}");
    assert_eq!(values(f.records), vec![(0, "a".to_owned()), (1, "b".to_owned())]);
    // The same term, or an older one: served.
    for term in [f.leader_term, f.leader_term - 1] {
        let g = c.try_fetch_at_term("terms", 0, 0, 0, 0, term).await.unwrap();
        assert_eq!((g.error, g.leader_term), (ErrorCode::None, f.leader_term), "{g:?}");
        assert_eq!(values(g.records).len(), 2);
    }
    // A later term than this leader's: the reader was served by a successor this replica has
    // not heard of, so it shows nothing (its high watermark may be behind).
    let g = c
        .try_fetch_at_term("terms", 0, 0, 0, 0, f.leader_term + 1)
        .await
        .unwrap();
    assert_eq!(g.error, ErrorCode::UnknownLeaderEpoch, "{g:?}");
    assert!(g.records.is_empty() && g.high_watermark == -1, "{g:?}");
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_offsets_naming_a_later_leader_term_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("lo-terms", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("lo-terms").await;
    assert_eq!(
        c.produce("lo-terms", 0, batch(&["a", "b", "c"], 0), -1).await.error,
        ErrorCode::None
    );
    // No term: served, with the serving leader's term (the same a fetch names).
    let latest = c.list_offset_at_term("lo-terms", 0, LATEST_TIMESTAMP, -1).await;
    assert_eq!((latest.error, latest.offset), (ErrorCode::None, 3), "{latest:?}");
    let f = c.try_fetch("lo-terms", 0, 0, 0, 0).await.unwrap();
    assert!(
        latest.leader_term >= 1 && latest.leader_term == f.leader_term,
        "{latest:?} {f:?}"
    );
    // The same term or an older one: served, earliest and by timestamp too.
    for term in [latest.leader_term, latest.leader_term - 1] {
        let l = c.list_offset_at_term("lo-terms", 0, LATEST_TIMESTAMP, term).await;
        assert_eq!(
            (l.error, l.offset, l.leader_term),
            (ErrorCode::None, 3, latest.leader_term),
            "{l:?}"
        );
        let e = c.list_offset_at_term("lo-terms", 0, EARLIEST_TIMESTAMP, term).await;
        assert_eq!((e.error, e.offset), (ErrorCode::None, 0), "{e:?}");
        let t = c.list_offset_at_term("lo-terms", 0, 0, term).await;
        assert_eq!((t.error, t.offset), (ErrorCode::None, 0), "{t:?}");
    }
    // A later term: this replica must have been deposed without hearing, so it names no offset.
    for timestamp in [LATEST_TIMESTAMP, EARLIEST_TIMESTAMP, 0] {
        let l = c
            .list_offset_at_term("lo-terms", 0, timestamp, latest.leader_term + 1)
            .await;
        assert_eq!(l.error, ErrorCode::UnknownLeaderEpoch, "{l:?}");
        assert_eq!((l.offset, l.leader_term), (-1, -1), "{l:?}");
    }
    // v0 carries no term and is served as before.
    let v0 = c.list_offset("lo-terms", 0, LATEST_TIMESTAMP).await;
    assert_eq!(
        (v0.error, v0.offset, v0.leader_term),
        (ErrorCode::None, 3, -1),
        "{v0:?}"
    );
    drop(c);
    broker.stop().await;
}
