//! The JSON admin API against a real `strata-broker` process: create, describe and delete over
//! HTTP agree with what the binary protocol sees (and the other way round), errors are JSON with
//! the binary protocol's codes, and stalled HTTP clients cannot hold up produce.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_protocol::ErrorCode;
use strata_protocol::api::*;
use strata_testkit::http::Response as HttpResponse;
use strata_testkit::{BrokerProcess, wait};

mod common;
use common::*;

/// Read and write timeout of each request: generous, as some carry large bodies.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One request over a raw socket, off the async runtime's threads.
async fn http(addr: SocketAddr, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
    let (method, path, ct, body) = (
        method.to_string(),
        path.to_string(),
        content_type.map(str::to_string),
        body.to_vec(),
    );
    tokio::task::spawn_blocking(move || {
        strata_testkit::http::request(addr, &method, &path, ct.as_deref(), &body, HTTP_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    })
    .await
    .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, None, b"").await
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> HttpResponse {
    http(
        addr,
        "POST",
        path,
        Some("application/json"),
        body.to_string().as_bytes(),
    )
    .await
}

async fn delete(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "DELETE", path, None, b"").await
}

/// Asserts a JSON error answer: status, `error` name and (where given) the wire `code`.
fn assert_error(r: &HttpResponse, status: u16, error: &str, code: Option<ErrorCode>) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = r.json();
    assert_eq!(v["error"], error, "{r:?}");
    match code {
        Some(c) => assert_eq!(v["code"], i64::from(c.code()), "{r:?}"),
        None => assert!(v.get("code").is_none(), "{r:?}"),
    }
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{r:?}");
}

/// Polls `GET /api/v1/topics/{topic}` until `done` holds for it (bounded).
async fn describe_until(addr: SocketAddr, topic: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait::until_async(
        Duration::from_secs(30),
        Duration::from_millis(20),
        async || {
            let r = get(addr, &format!("/api/v1/topics/{topic}")).await;
            assert_eq!(r.status, 200, "{r:?}");
            let v = r.json();
            if done(&v) { Ok(v) } else { Err(v) }
        },
        |v| format!("{what}: last seen {v:#}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_delete_agree_with_the_binary_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;

    // Created over HTTP…
    let r = post_json(
        broker.http,
        "/api/v1/topics",
        &json!({ "name": "orders", "partitions": 3, "configs": { "retention.ms": "86400000", "segment.bytes": 1048576 } }),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/api/v1/topics/orders"));
    let v = r.json();
    assert_eq!(v["name"], "orders");
    assert_eq!(v["partition_count"], 3);
    assert_eq!(v["replication_factor"], 1);
    assert_eq!(v["configs"]["retention.ms"], "86400000");
    assert_eq!(v["configs"]["segment.bytes"], "1048576");
    assert_eq!(v["partitions"].as_array().unwrap().len(), 3);

    // …is what the binary protocol sees: same partitions, same configs.
    let m = c.metadata("orders").await;
    assert_eq!(m.error, ErrorCode::None);
    assert_eq!(m.partitions.len(), 3);
    let config = |k: &str| m.configs.iter().find(|e| e.key == k).map(|e| e.value.clone());
    assert_eq!(config("retention.ms").as_deref(), Some("86400000"));
    assert_eq!(config("segment.bytes").as_deref(), Some("1048576"));
    for (k, val) in v["configs"].as_object().unwrap() {
        assert_eq!(config(k).as_deref(), val.as_str(), "config {k}");
    }

    // Records produced over the protocol move the high watermark HTTP reports, and the size.
    c.wait_for_leaders("orders").await;
    for i in 0..5 {
        let r = c.produce("orders", 1, batch(&[&format!("v{i}")], 0), -1).await;
        assert_eq!(r.error, ErrorCode::None, "{r:?}");
    }
    let v = describe_until(broker.http, "orders", "high watermark 5 on partition 1", |v| {
        v["partitions"][1]["high_watermark"] == 5
    })
    .await;
    let parts = v["partitions"].as_array().unwrap();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], i, "{p}");
        assert_eq!(p["leader"], 1, "{p}");
        assert_eq!(p["replicas"], json!([1]), "{p}");
        assert_eq!(p["in_sync_replicas"], json!([1]), "{p}");
        assert_eq!(p["log_start_offset"], 0, "{p}");
        assert_eq!(p["failed"], false, "{p}");
        assert_eq!(p["status"], "online", "{p}");
        assert!(p["segment_count"].as_u64().is_some_and(|n| n >= 1), "{p}");
    }
    assert_eq!(parts[0]["high_watermark"], 0);
    assert!(
        parts[1]["size_bytes"].as_u64().unwrap() > parts[0]["size_bytes"].as_u64().unwrap(),
        "five batches take room: {v:#}"
    );
    // Agrees with Metadata and ListOffsets.
    let m = c.metadata("orders").await;
    for (p, hp) in m.partitions.iter().zip(parts) {
        assert_eq!(hp["high_watermark"], p.high_watermark, "partition {}", p.partition);
        assert_eq!(hp["leader"], p.leader, "partition {}", p.partition);
        assert_eq!(hp["leader_term"], p.leader_term, "partition {}", p.partition);
    }
    assert_eq!(c.list_offset("orders", 1, -1).await.offset, 5);

    // Created over the protocol: listed and described over HTTP.
    assert_eq!(
        c.create("wire", 2, &[("flush.policy", "never")]).await.error,
        ErrorCode::None
    );
    let r = get(broker.http, "/api/v1/topics").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json(),
        json!({ "topics": [
            { "name": "orders", "partitions": 3, "replication_factor": 1 },
            { "name": "wire", "partitions": 2, "replication_factor": 1 },
        ] })
    );
    let v = describe_until(broker.http, "wire", "both partitions of wire led", |v| {
        v["partitions"].as_array().unwrap().iter().all(|p| p["leader"] == 1)
    })
    .await;
    assert_eq!(v["configs"]["flush.policy"], "never");

    // Deleted over HTTP: gone for the protocol too.
    let r = delete(broker.http, "/api/v1/topics/orders").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({ "name": "orders", "deleted": true }));
    assert_eq!(c.metadata("orders").await.error, ErrorCode::UnknownTopicOrPartition);
    assert_error(
        &get(broker.http, "/api/v1/topics/orders").await,
        404,
        "unknown_topic_or_partition",
        Some(ErrorCode::UnknownTopicOrPartition),
    );
    assert!(!dir.path().join("data/partitions/orders-0").exists());

    // Deleted over the protocol: gone for HTTP.
    let Response::DeleteTopics(d) = c
        .call(Request::DeleteTopics(DeleteTopicsRequest {
            names: vec!["wire".into()],
            timeout_ms: 5000,
        }))
        .await
        .unwrap()
    else {
        panic!("not a delete response")
    };
    assert_eq!(d.topics[0].error, ErrorCode::None);
    assert_eq!(get(broker.http, "/api/v1/topics").await.json(), json!({ "topics": [] }));

    // A topic re-created over HTTP with defaults starts empty.
    let r = post_json(broker.http, "/api/v1/topics", &json!({ "name": "orders" })).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["partition_count"], 1, "the broker's default partition count");
    let v = describe_until(broker.http, "orders", "re-created orders led", |v| {
        v["partitions"][0]["leader"] == 1
    })
    .await;
    assert_eq!(v["partitions"][0]["high_watermark"], 0);
    assert_eq!(broker.sigterm_and_wait().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_the_binary_protocols_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("taken", 1, &[]).await.error, ErrorCode::None);

    // Each bad create, over HTTP and as the same request over the protocol: the same code.
    let cases = [
        (json!({ "name": "taken" }), 409, ErrorCode::TopicAlreadyExists),
        (json!({ "name": "bad name" }), 400, ErrorCode::InvalidTopic),
        (json!({ "name": ".." }), 400, ErrorCode::InvalidTopic),
        (
            json!({ "name": "p0", "partitions": 0 }),
            400,
            ErrorCode::InvalidPartitions,
        ),
        (
            json!({ "name": "p10001", "partitions": 10001 }),
            400,
            ErrorCode::InvalidPartitions,
        ),
        (
            json!({ "name": "rf2", "replication_factor": 2 }),
            400,
            ErrorCode::InvalidReplicationFactor,
        ),
        (
            json!({ "name": "cfg", "configs": { "segment.bytes": "10" } }),
            400,
            ErrorCode::InvalidConfig,
        ),
        (
            json!({ "name": "cfg", "configs": { "no.such.key": "1" } }),
            400,
            ErrorCode::InvalidConfig,
        ),
    ];
    for (body, status, code) in cases {
        let int = |key: &str| body.get(key).and_then(Value::as_i64).unwrap_or(-1);
        let configs = body.get("configs").and_then(Value::as_object);
        let Response::CreateTopics(wire) = c
            .call(Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: body["name"].as_str().unwrap().to_string(),
                    num_partitions: i32::try_from(int("partitions")).unwrap(),
                    replication_factor: i16::try_from(int("replication_factor")).unwrap(),
                    configs: configs
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| ConfigEntry {
                            key: k.clone(),
                            value: v.as_str().unwrap().to_string(),
                        })
                        .collect(),
                }],
                timeout_ms: 5000,
                validate_only: false,
            }))
            .await
            .unwrap()
        else {
            panic!("not a create response")
        };
        let wire = &wire.topics[0];
        assert_eq!(wire.error, code, "{body}: the protocol's answer");
        let r = post_json(broker.http, "/api/v1/topics", &body).await;
        assert_error(&r, status, &wire.error.name().to_ascii_lowercase(), Some(wire.error));
        assert_eq!(r.json()["message"], wire.message.clone().unwrap(), "{body}");
    }
    // Nothing was created by any of them.
    assert_eq!(
        get(broker.http, "/api/v1/topics").await.json()["topics"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Malformed requests: 400 invalid_request with a JSON body, never axum's plain text.
    let bad_bodies: [(Option<&str>, &[u8]); 10] = [
        (Some("application/json"), b"{\"name\": \"x\","),
        (Some("application/json"), b"not json"),
        (Some("application/json"), b""),
        (Some("text/plain"), b"{\"name\": \"x\"}"),
        (None, b"{\"name\": \"x\"}"),
        (Some("application/json"), b"{\"name\": 7}"),
        (Some("application/json"), b"{\"name\": \"x\", \"partitions\": \"3\"}"),
        (
            Some("application/json"),
            b"{\"name\": \"x\", \"configs\": {\"retention.ms\": true}}",
        ),
        (Some("application/json"), b"{\"name\": \"x\", \"partiton\": 3}"),
        (Some("application/json"), b"[\"x\"]"),
    ];
    for (ct, body) in bad_bodies {
        let r = http(broker.http, "POST", "/api/v1/topics", ct, body).await;
        assert_error(&r, 400, "invalid_request", Some(ErrorCode::InvalidRequest));
    }
    // Out of the wire type's range: the protocol's own codes.
    let r = post_json(
        broker.http,
        "/api/v1/topics",
        &json!({ "name": "x", "partitions": 1u64 << 40 }),
    )
    .await;
    assert_error(&r, 400, "invalid_partitions", Some(ErrorCode::InvalidPartitions));
    let r = post_json(
        broker.http,
        "/api/v1/topics",
        &json!({ "name": "x", "replication_factor": 1 << 20 }),
    )
    .await;
    assert_error(
        &r,
        400,
        "invalid_replication_factor",
        Some(ErrorCode::InvalidReplicationFactor),
    );

    // Oversized body: 413, JSON, and the broker keeps serving.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(200 * 1024));
    let r = http(
        broker.http,
        "POST",
        "/api/v1/topics",
        Some("application/json"),
        huge.as_bytes(),
    )
    .await;
    assert_error(&r, 413, "payload_too_large", None);

    // Unknown topics, routes and methods.
    for r in [
        get(broker.http, "/api/v1/topics/nope").await,
        delete(broker.http, "/api/v1/topics/nope").await,
    ] {
        assert_error(
            &r,
            404,
            "unknown_topic_or_partition",
            Some(ErrorCode::UnknownTopicOrPartition),
        );
    }
    for path in [
        "/api/v1/nope",
        "/api/v2/topics",
        "/api/v1/topics/taken/partitions",
        "/index.html",
    ] {
        assert_error(&get(broker.http, path).await, 404, "not_found", None);
    }
    for (method, path, allow) in [
        ("PUT", "/api/v1/topics", "GET,HEAD,POST"),
        ("POST", "/api/v1/topics/taken", "GET,HEAD,DELETE"),
        ("DELETE", "/api/v1/cluster", "GET,HEAD"),
        ("POST", "/", "GET,HEAD"),
        ("POST", "/healthz", "GET,HEAD"),
    ] {
        let r = http(broker.http, method, path, Some("application/json"), b"{}").await;
        assert_error(&r, 405, "method_not_allowed", None);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    let r = get(broker.http, "/api/v1/topics/taken").await;
    assert_eq!(r.status, 200, "still serving: {r:?}");
    assert_eq!(broker.sigterm_and_wait().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let r = get(broker.http, "/api/v1/cluster").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json(),
        json!({
            "cluster_id": "strata",
            "version": env!("CARGO_PKG_VERSION"),
            "controller": { "node_id": 1 },
            "brokers": [{
                "node_id": 1,
                "host": broker.addr.ip().to_string(),
                "port": broker.addr.port(),
                "http": broker.http.to_string(),
                "this_broker": true,
            }],
        })
    );
    // The same broker the protocol advertises.
    let mut c = Client::connect(broker.addr).await;
    let Response::Metadata(m) = c
        .call(Request::Metadata(MetadataRequest { topics: None }))
        .await
        .unwrap()
    else {
        panic!("not a metadata response")
    };
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(
        (m.brokers[0].host.as_str(), m.brokers[0].port),
        (
            r.json()["brokers"][0]["host"].as_str().unwrap(),
            i32::from(broker.addr.port())
        )
    );
    assert_eq!(
        i64::from(m.controller_id),
        r.json()["controller"]["node_id"].as_i64().unwrap()
    );

    // No consumer group exists yet: an empty list, never made-up data (groups are tested with
    // lag in groups.rs).
    let r = get(broker.http, "/api/v1/groups").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["groups"], json!([]));
    assert_eq!(broker.sigterm_and_wait().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http_clients_do_not_stall_produce_or_admin() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("live", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("live").await;

    // Half a request line and headers, then silence…
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut s = TcpStream::connect(broker.http).unwrap();
        s.write_all(b"GET /api/v1/topics/live HTTP/1.1\r\nHost: x\r\n").unwrap();
        stalled.push(s);
    }
    // …a create whose body never finishes…
    let mut s = TcpStream::connect(broker.http).unwrap();
    s.write_all(
        b"POST /api/v1/topics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": \"sta",
    )
    .unwrap();
    stalled.push(s);
    // …and a client that asks for the console and never reads the answer.
    for _ in 0..4 {
        let mut s = TcpStream::connect(broker.http).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Produce, fetch, and admin over the protocol carry on, promptly.
    let started = Instant::now();
    for i in 0..50 {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            c.produce("live", 0, batch(&[&format!("v{i}")], 0), -1),
        )
        .await
        .expect("produce is not held up by HTTP clients");
        assert_eq!(r.error, ErrorCode::None, "{r:?}");
    }
    let f = tokio::time::timeout(Duration::from_secs(10), c.fetch("live", 0, 0, 0, 0))
        .await
        .expect("fetch is not held up by HTTP clients");
    assert_eq!(f.high_watermark, 50);
    assert_eq!(values(f.records).len(), 50);
    let created = tokio::time::timeout(Duration::from_secs(10), c.create("more", 1, &[]))
        .await
        .expect("the admin mutex is not held by a half-sent HTTP create");
    assert_eq!(created.error, ErrorCode::None);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    // HTTP itself still answers other clients, including admin writes.
    let v = describe_until(broker.http, "live", "high watermark 50 over HTTP", |v| {
        v["partitions"][0]["high_watermark"] == 50
    })
    .await;
    assert_eq!(v["partitions"][0]["status"], "online");
    let r = post_json(broker.http, "/api/v1/topics", &json!({ "name": "over-http" })).await;
    assert_eq!(r.status, 201, "{r:?}");

    // And the stalled clients do not hold up shutdown.
    let status = tokio::task::spawn_blocking(move || broker.sigterm_and_wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    drop(stalled);
}
