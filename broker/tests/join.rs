//! A data-only broker joins a running three-voter cluster with `--join`: every broker lists it,
//! new topics place replicas on it, clients produce and consume through it, and it comes back
//! after a `kill -9` from what it remembers (no join address needed to be up).

use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_client::{ClientConfig, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, Seek};
use strata_protocol::ErrorCode;
use strata_protocol::api::*;
use strata_testkit::{BrokerProcess, free_port};

mod common;
use common::cluster::{Cluster, all_led, wait_metadata};
use common::{BROKER, Client};

fn launch_joiner(dir: &std::path::Path, listen: std::net::SocketAddr, join: std::net::SocketAddr) -> BrokerProcess {
    let join = join.to_string();
    BrokerProcess::launch(BROKER, dir, listen, &["--node-id", "4", "--join", &join]).wait()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_only_broker_joins_serves_and_restarts() {
    let mut cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let joiner = launch_joiner(dir.path(), listen, cluster.addrs[1]);

    // Every broker lists it (the metadata it follows names all four).
    for addr in cluster.addrs.iter().chain([&listen]) {
        let mut c = Client::connect(*addr).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let Response::Metadata(m) = c
                .call(Request::Metadata(MetadataRequest { topics: Some(vec![]) }))
                .await
                .unwrap()
            else {
                panic!("not a metadata response")
            };
            let mut ids: Vec<i32> = m.brokers.iter().map(|b| b.node_id).collect();
            ids.sort_unstable();
            if ids == [1, 2, 3, 4] {
                let four = m.brokers.iter().find(|b| b.node_id == 4).unwrap();
                assert_eq!(four.port, i32::from(listen.port()), "{four:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{addr} lists {ids:?}\n{}", joiner.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A voter's id cannot register as a data broker.
    let mut c = Client::connect(cluster.addrs[0]).await;
    let Response::BrokerRegistration(r) = c
        .call(Request::BrokerRegistration(BrokerRegistrationRequest {
            node_id: 2,
            address: "127.0.0.1:1".into(),
        }))
        .await
        .unwrap()
    else {
        panic!("not a registration response")
    };
    assert_eq!(r.error, ErrorCode::InvalidRequest, "{r:?}");

    // New topics use it; clients bootstrapped from it alone produce and consume.
    let only_joiner = strata_client::Client::connect(ClientConfig::new(&listen.to_string()))
        .await
        .unwrap();
    only_joiner
        .admin()
        .create_topic(NewTopic::new("spread", 12, 3))
        .await
        .unwrap();
    let mut meta = Client::connect(listen).await;
    let t = wait_metadata(&mut meta, "spread", "leaders", all_led).await;
    let on_four = t.partitions.iter().filter(|p| p.replicas.contains(&4)).count();
    assert!(on_four >= 3, "only {on_four} of 12 partitions on broker 4: {t:?}");

    let producer = only_joiner.producer(ProducerConfig::default()).unwrap();
    for i in 0..240u32 {
        let rec = ProducerRecord::new("spread", i.to_string().into_bytes()).partition((i % 12) as i32);
        producer.send(rec).await.unwrap();
    }
    producer.close().await;

    // kill -9 and restart it: it rejoins from its own data directory.
    joiner.kill9();
    let joiner = launch_joiner(dir.path(), listen, cluster.addrs[2]);
    let mut meta = Client::connect(listen).await;
    wait_metadata(&mut meta, "spread", "leaders after the restart", all_led).await;
    let mut consumer = only_joiner.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign_topic("spread").await.unwrap();
    consumer.seek_all(Seek::Earliest).await.unwrap();
    let mut stream = consumer.stream();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 240 {
        assert!(
            Instant::now() < deadline,
            "read {} of 240\n{}",
            seen.len(),
            joiner.logs()
        );
        let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await else {
            panic!("the consumer stalled after {} records\n{}", seen.len(), joiner.logs());
        };
        let r = r.unwrap();
        let n: u32 = std::str::from_utf8(r.value.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(seen.insert(n), "record {n} twice");
    }

    // A partition broker 4 does not host: after its leader dies, broker 4 names the new leader
    // (announced by it), not the dead preferred one.
    only_joiner
        .admin()
        .create_topic(NewTopic::new("watched", 1, 3))
        .await
        .unwrap();
    only_joiner
        .admin()
        .reassign_partition("watched", 0, &[1, 2, 3])
        .await
        .unwrap();
    let mut c4 = Client::connect(listen).await;
    let t = wait_metadata(&mut c4, "watched", "the move and a leader", |t| {
        all_led(t) && {
            let mut r = t.partitions[0].replicas.clone();
            r.sort_unstable();
            r == [1, 2, 3]
        }
    })
    .await;
    let dead = t.partitions[0].leader;
    tokio::task::block_in_place(|| cluster.kill9(dead as usize - 1));
    wait_metadata(&mut c4, "watched", "broker 4 to name the new leader", |t| {
        let l = t.partitions[0].leader;
        l > 0 && l != dead
    })
    .await;
    drop(joiner);
}

/// A broker that joined as a data-only broker refuses to start as a voter (a changed voter list,
/// e.g. a StatefulSet's controller.voters raised), naming why, instead of running with a
/// metadata membership that disagrees with the others'.
#[test]
fn a_joined_broker_does_not_start_as_a_voter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.json"), r#"{"1":"127.0.0.1:1"}"#).unwrap();
    let (a, b) = (free_port(), free_port());
    let voters = format!("1@127.0.0.1:1,2@{a}");
    let out = std::process::Command::new(BROKER)
        .args(["--node-id", "2", "--voters", &voters, "--join", "127.0.0.1:1"])
        .args(["--listen", &a.to_string(), "--http", &b.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("STRATA_SHUTDOWN_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("joined this cluster as a data-only broker"), "{stderr}");
}
