//! `Connection` and the `Client` pool against a fake broker: pipelining, correlation,
//! failures, timeouts, version checks, malformed and oversized responses.

mod common;

use std::time::{Duration, Instant};

use common::FakeBroker;
use futures::{SinkExt, StreamExt};
use strata_client::protocol::api::{
    ApiKey, ApiVersionRange, ApiVersionsResponse, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    ProduceRequest, Request, Response, TopicMetadata,
};
use strata_client::protocol::codec::{OutgoingResponse, ServerCodec};
use strata_client::protocol::{ErrorCode, frame::IncomingRequest};
use strata_client::{Client, ClientConfig, Connection, Error};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

fn config(broker: &FakeBroker) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(&broker.bootstrap())
    }
}

fn metadata(topic: &str) -> MetadataRequest {
    MetadataRequest {
        topics: Some(vec![topic.to_owned()]),
    }
}

#[tokio::test]
async fn pipelined_requests_all_complete_and_the_handshake_records_versions() {
    let broker = FakeBroker::start().await;
    broker.create_topic("t", 2);
    let conn = Connection::connect(&broker.bootstrap(), &config(&broker))
        .await
        .unwrap();
    assert!(conn.api_versions().iter().any(|r| r.api_key == ApiKey::Produce as i16));
    let requests = (0..200).map(|_| conn.send(metadata("t")));
    let responses = futures::future::join_all(requests).await;
    for r in responses {
        assert_eq!(r.unwrap().topics[0].partitions.len(), 2);
    }
    assert_eq!(conn.pending_requests(), 0);
    assert_eq!(broker.count(ApiKey::ApiVersions), 1, "one handshake");
}

/// A server that answers ApiVersions, then collects `n` metadata requests and answers them in
/// reverse order, each naming the topic its request asked for.
async fn reversing_server(n: usize) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(
            stream,
            ServerCodec {
                max_frame_bytes: 1 << 20,
            },
        );
        let mut held: Vec<IncomingRequest> = Vec::new();
        while let Some(Ok(req)) = framed.next().await {
            match &req.body {
                Ok(Request::ApiVersions(_)) => {
                    let resp = OutgoingResponse {
                        correlation_id: req.header.correlation_id,
                        api_version: 0,
                        body: Ok(Response::ApiVersions(ApiVersionsResponse::supported())),
                    };
                    framed.send(resp).await.unwrap();
                }
                _ => {
                    held.push(req);
                    if held.len() == n {
                        for req in held.drain(..).rev() {
                            let Ok(Request::Metadata(m)) = &req.body else {
                                panic!("metadata expected")
                            };
                            let name = m.topics.as_ref().unwrap()[0].clone();
                            let body = MetadataResponse {
                                topics: vec![TopicMetadata {
                                    error: ErrorCode::None,
                                    name,
                                    partitions: vec![],
                                    configs: vec![],
                                }],
                                ..MetadataResponse::default()
                            };
                            let resp = OutgoingResponse {
                                correlation_id: req.header.correlation_id,
                                api_version: 0,
                                body: Ok(Response::Metadata(body)),
                            };
                            framed.send(resp).await.unwrap();
                        }
                    }
                }
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn responses_are_matched_by_correlation_id_not_arrival_order() {
    let (addr, _server) = reversing_server(10).await;
    let conn = Connection::connect(&addr, &ClientConfig::new(&addr)).await.unwrap();
    let requests = (0..10).map(|i| {
        let conn = conn.clone();
        async move { (i, conn.send(metadata(&format!("topic-{i}"))).await) }
    });
    for (i, r) in futures::future::join_all(requests).await {
        assert_eq!(r.unwrap().topics[0].name, format!("topic-{i}"));
    }
}

#[tokio::test]
async fn a_dead_connection_fails_every_pending_request() {
    let broker = FakeBroker::start().await;
    broker.with(|s| {
        s.silent.insert(ApiKey::Metadata as i16);
        s.close_on.insert(ApiKey::ListOffsets as i16);
    });
    let conn = Connection::connect(&broker.bootstrap(), &config(&broker))
        .await
        .unwrap();
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.send(metadata("t")).await })
        })
        .collect();
    assert!(common::eventually(Duration::from_secs(5), || broker.count(ApiKey::Metadata) == 5).await);
    assert_eq!(conn.pending_requests(), 5);
    // This one makes the broker hang up.
    let killer = conn.send(ListOffsetsRequest::default()).await;
    assert!(matches!(killer, Err(Error::ConnectionClosed { .. })), "{killer:?}");
    for p in pending {
        let r = p.await.unwrap();
        let Err(Error::ConnectionClosed { broker: addr, reason }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(addr, broker.bootstrap());
        assert!(reason.contains("closed by the broker"), "{reason}");
    }
    assert!(conn.is_closed());
    assert_eq!(conn.pending_requests(), 0);
    let after = conn.send(metadata("t")).await;
    assert!(
        matches!(after, Err(Error::ConnectionClosed { .. })),
        "fails fast: {after:?}"
    );
}

#[tokio::test]
async fn a_request_timeout_fails_the_request_and_closes_the_connection() {
    let broker = FakeBroker::start().await;
    broker.with(|s| {
        s.silent.insert(ApiKey::Metadata as i16);
    });
    let cfg = ClientConfig {
        request_timeout: Duration::from_millis(200),
        ..config(&broker)
    };
    let conn = Connection::connect(&broker.bootstrap(), &cfg).await.unwrap();
    let started = Instant::now();
    let r = conn.send(metadata("t")).await;
    let elapsed = started.elapsed();
    let Err(Error::Timeout { what, after, .. }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(what, "metadata");
    assert_eq!(after, Duration::from_millis(200));
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(conn.is_closed(), "a stuck connection is abandoned");

    // The pool replaces it on the next use.
    let client = Client::new(cfg).unwrap();
    let first = client.connection(&broker.bootstrap()).await.unwrap();
    assert!(client.connection(&broker.bootstrap()).await.is_ok());
    first.close();
    let second = client.connection(&broker.bootstrap()).await.unwrap();
    assert!(!second.is_closed());
}

#[tokio::test]
async fn an_api_the_broker_lacks_is_refused_without_sending() {
    let broker = FakeBroker::start().await;
    broker.with(|s| {
        s.api_versions = Some(vec![
            ApiVersionRange {
                api_key: ApiKey::ApiVersions as i16,
                min_version: 0,
                max_version: 0,
            },
            ApiVersionRange {
                api_key: ApiKey::Metadata as i16,
                min_version: 1,
                max_version: 3,
            },
        ]);
    });
    let conn = Connection::connect(&broker.bootstrap(), &config(&broker))
        .await
        .unwrap();
    let r = conn.send(ProduceRequest {
        acks: -1,
        timeout_ms: 1000,
        topics: vec![],
    });
    let r = r.await;
    assert!(
        matches!(
            r,
            Err(Error::UnsupportedVersion {
                api: ApiKey::Produce,
                broker_versions: None,
                ..
            })
        ),
        "{r:?}"
    );
    let r = conn.send(metadata("t")).await;
    assert!(
        matches!(
            r,
            Err(Error::UnsupportedVersion {
                api: ApiKey::Metadata,
                broker_versions: Some((1, 3)),
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(broker.count(ApiKey::Produce) + broker.count(ApiKey::Metadata), 0);
}

#[tokio::test]
async fn a_malformed_response_is_an_error_and_the_connection_survives() {
    let broker = FakeBroker::start().await;
    broker.with(|s| {
        s.malformed.insert(ApiKey::Metadata as i16);
    });
    let conn = Connection::connect(&broker.bootstrap(), &config(&broker))
        .await
        .unwrap();
    let r = conn.send(metadata("t")).await;
    assert!(
        matches!(
            r,
            Err(Error::Decode {
                api: ApiKey::Metadata,
                ..
            })
        ),
        "{r:?}"
    );
    // Framing was fine, so the connection still serves.
    assert!(conn.send(ListOffsetsRequest::default()).await.is_ok());
}

#[tokio::test]
async fn a_request_level_error_carries_the_code_and_message() {
    let broker = FakeBroker::start().await;
    broker.with(|s| {
        s.reject.insert(ApiKey::Metadata as i16, ErrorCode::BrokerShuttingDown);
    });
    let conn = Connection::connect(&broker.bootstrap(), &config(&broker))
        .await
        .unwrap();
    let r = conn.send(metadata("t")).await;
    let Err(e @ Error::Request { .. }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(e.code(), Some(ErrorCode::BrokerShuttingDown));
    assert!(e.is_retriable());
    assert!(e.to_string().contains("rejected by the fake broker"), "{e}");
}

#[tokio::test]
async fn an_oversized_response_closes_the_connection_without_buffering_it() {
    let broker = FakeBroker::start().await;
    for i in 0..100 {
        broker.create_topic(&format!("a-topic-with-a-longish-name-{i}"), 1);
    }
    let cfg = ClientConfig {
        max_frame_bytes: 1024,
        ..config(&broker)
    };
    let conn = Connection::connect(&broker.bootstrap(), &cfg).await.unwrap();
    let r = conn.send(MetadataRequest { topics: None }).await;
    let Err(Error::ConnectionClosed { reason, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(reason.contains("exceeds the maximum"), "{reason}");
}

#[tokio::test]
async fn connecting_to_nothing_is_an_io_error_and_bootstrap_reports_every_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let r = Connection::connect(&addr, &ClientConfig::new(&addr)).await;
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    let r = Client::connect(ClientConfig::new(&addr)).await;
    let Err(Error::NoBrokerAvailable { tried, last }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(tried, addr);
    assert!(matches!(*last, Error::Io { .. }));
}

#[tokio::test]
async fn concurrent_users_share_one_pooled_connection() {
    let broker = FakeBroker::start().await;
    broker.create_topic("t", 1);
    let client = Client::new(config(&broker)).unwrap();
    let addr = broker.bootstrap();
    let gets = (0..20).map(|_| client.connection(&addr));
    for c in futures::future::join_all(gets).await {
        c.unwrap();
    }
    assert_eq!(broker.with(|s| s.connections), 1);
    let (leader, conn) = client.leader("t", 0).await.unwrap();
    assert_eq!(leader, common::NODE_ID);
    assert_eq!(conn.broker(), broker.bootstrap());
    assert!(matches!(
        client.leader("t", 5).await,
        Err(Error::UnknownPartition { partition_count: 1, .. })
    ));
    assert!(matches!(client.leader("nope", 0).await, Err(Error::UnknownTopic(_))));
}
