//! The real `strata-broker` binary as a user runs it: flags, `kill -9` under load, SIGTERM
//! draining, many connections. Each broker gets its own temp data dir and an ephemeral port,
//! learned from its ready file; its stderr is kept and printed if a test fails.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::api::*;
use strata_testkit::{BrokerProcess, http};

mod common;
use common::*;

async fn read_all(c: &mut Client, topic: &str, partition: i32) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut next = 0i64;
    loop {
        let f = c.fetch(topic, partition, next, 0, 0).await;
        assert_eq!(f.error, ErrorCode::None, "{f:?}");
        let v: Vec<_> = values(f.records)
            .into_iter()
            .filter(|(o, _)| *o as i64 >= next)
            .collect();
        if v.is_empty() {
            assert_eq!(next, f.high_watermark, "read up to the high watermark");
            return out;
        }
        next = v.last().unwrap().0 as i64 + 1;
        out.extend(v);
    }
}

#[test]
fn help_lists_the_flags_and_bad_flags_fail() {
    let out = Command::new(env!("CARGO_BIN_EXE_strata-broker"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--data-dir",
        "--listen",
        "--advertised-address",
        "--http",
        "--node-id",
    ] {
        assert!(help.contains(flag), "--help lists {flag}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_strata-broker"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_strata-broker"))
        .env("STRATA_NODE_ID", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRATA_NODE_ID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let broker = BrokerProcess::start(BROKER, dir.path());
        let mut c = Client::connect(broker.addr).await;
        if round == 0 {
            assert_eq!(c.create("durable", 2, &[]).await.error, ErrorCode::None);
        }
        c.wait_for_leaders("durable").await;
        // Everything acknowledged in earlier rounds is still there.
        let before: Vec<Vec<(u64, String)>> = vec![
            read_all(&mut c, "durable", 0).await,
            read_all(&mut c, "durable", 1).await,
        ];

        // Producers on two connections, acks=all, until the broker is killed under them.
        let stop = Arc::new(AtomicBool::new(false));
        let mut producers = Vec::new();
        for partition in 0..2 {
            let (addr, stop) = (broker.addr, stop.clone());
            producers.push(tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                let mut acked = Vec::new();
                for i in 0..100_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let v = format!("r{round}-p{partition}-{i}");
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        c.try_produce("durable", partition, batch(&[&v], 0), -1),
                    )
                    .await;
                    match r {
                        Ok(Some(r)) if r.error.is_ok() => acked.push((r.base_offset as u64, v)),
                        _ => break, // the broker died mid-request: that record was not acknowledged
                    }
                }
                acked
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for p in producers {
            acked.push(p.await.unwrap());
        }
        assert!(
            acked.iter().all(|a| !a.is_empty()),
            "producers made progress before the kill"
        );
        eprintln!(
            "round {round}: acknowledged {} + {} records before kill -9",
            acked[0].len(),
            acked[1].len()
        );

        let broker = BrokerProcess::start(BROKER, dir.path());
        let mut c = Client::connect(broker.addr).await;
        c.wait_for_leaders("durable").await;
        for partition in 0..2 {
            let after = read_all(&mut c, "durable", partition as i32).await;
            assert!(
                after.starts_with(&before[partition]),
                "nothing acknowledged earlier was lost"
            );
            for (offset, v) in &acked[partition] {
                assert_eq!(
                    after.get(*offset as usize),
                    Some(&(*offset, v.clone())),
                    "acknowledged record {v} at offset {offset}"
                );
            }
            // Offsets stay dense.
            assert!(after.iter().enumerate().all(|(i, (o, _))| *o == i as u64));
        }
        assert_eq!(broker.sigterm_and_wait().code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("t", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("t").await;
    for i in 0..20 {
        assert!(c.produce("t", 0, batch(&[&format!("v{i}")], 0), -1).await.error.is_ok());
    }
    // A long poll in flight when SIGTERM arrives is answered, not dropped.
    let addr = broker.addr;
    let poll = tokio::spawn(async move {
        let mut c2 = Client::connect(addr).await;
        c2.try_fetch("t", 0, 20, 20_000, 1).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = tokio::task::spawn_blocking(move || broker.sigterm_and_wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let answered = poll.await.unwrap();
    assert!(
        answered.is_some(),
        "the in-flight fetch got a response before the broker exited"
    );
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    c.wait_for_leaders("t").await;
    assert_eq!(read_all(&mut c, "t", 0).await.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut conns = Vec::new();
    for _ in 0..1000 {
        conns.push(Client::connect(broker.addr).await);
    }
    // Every connection is served while all are open.
    let results = futures::future::join_all(
        conns
            .iter_mut()
            .map(|c| c.call(Request::ApiVersions(ApiVersionsRequest))),
    )
    .await;
    assert!(results.iter().all(|r| r.is_ok()));
    drop(conns);
    let mut c = Client::connect(broker.addr).await;
    assert!(
        c.call(Request::Metadata(MetadataRequest { topics: None }))
            .await
            .is_ok()
    );
    assert_eq!(broker.sigterm_and_wait().code(), Some(0));
}

#[test]
fn http_health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    assert_eq!(http::get(broker.http, "/healthz").unwrap().status, 200);
    let r = http::get(broker.http, "/readyz").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http::get(broker.http, "/nope").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("not_found"), "{}", r.body);
    // A client that sends half a request and stalls must not hold up shutdown.
    let mut stalled = std::net::TcpStream::connect(broker.http).unwrap();
    std::io::Write::write_all(&mut stalled, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    assert_eq!(broker.sigterm_and_wait().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(stalled);
}

/// A topic whose partitions cannot all be opened (here: out of file descriptors) is rolled back
/// whole: no half-created topic in Metadata, nothing left that would stop a restart, and the
/// broker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_runs_out_of_fds_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with_fd_limit(BROKER, dir.path(), 128);
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("small", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("small").await;
    assert!(c.produce("small", 0, batch(&["a"], 0), -1).await.error.is_ok());

    let big = c.create("big", 500, &[]).await;
    assert_eq!(big.error, ErrorCode::StorageError, "{big:?}\n{}", broker.logs());
    assert!(
        big.message.as_deref().unwrap_or_default().contains("rolled back"),
        "{big:?}"
    );
    let Response::Metadata(m) = c
        .call(Request::Metadata(MetadataRequest { topics: None }))
        .await
        .unwrap()
    else {
        panic!("wrong response")
    };
    let names: Vec<&str> = m.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["small"], "no trace of the failed topic");
    let leftover: Vec<_> = std::fs::read_dir(dir.path().join("data/partitions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("big-"))
        .collect();
    assert!(leftover.is_empty(), "partition directories left behind: {leftover:?}");

    // Still serving, and a smaller topic fits.
    assert!(c.produce("small", 0, batch(&["b"], 0), -1).await.error.is_ok());
    assert_eq!(c.create("fits", 2, &[]).await.error, ErrorCode::None);
    drop(c);

    // A restart (with the normal limit) finds a consistent registry.
    let status = tokio::task::spawn_blocking(move || broker.sigterm_and_wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    c.wait_for_leaders("small").await;
    c.wait_for_leaders("fits").await;
    assert_eq!(read_all(&mut c, "small", 0).await.len(), 2);
    assert_eq!(
        c.create("big", 3, &[]).await.error,
        ErrorCode::None,
        "the name is free again"
    );
}
