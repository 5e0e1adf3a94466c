//! The metadata log is snapshotted and compacted: brokers save the registry every few entries
//! (here 16, `STRATA_METADATA_SNAPSHOT_ENTRIES`) and delete the log below it; a broker that was
//! down while that happened gets the registry in a Raft snapshot and converges (a topic created
//! meanwhile opens, one deleted meanwhile is removed); a broker restarted after compaction
//! starts from its own snapshot.

use std::time::{Duration, Instant};

use strata_client::NewTopic;
use strata_protocol::ErrorCode;

mod common;
use common::Client;
use common::cluster::{Cluster, all_led, wait_metadata};

fn first_segment(cluster: &Cluster, broker: usize) -> std::path::PathBuf {
    cluster.dirs[broker]
        .path()
        .join("data/metadata/00000000000000000000.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_behind_the_compacted_metadata_log_catches_up_from_a_snapshot() {
    // SAFETY: set before any broker process starts, in a test binary with this one test; the
    // runtime's threads do not read the environment.
    unsafe { std::env::set_var("STRATA_METADATA_SNAPSHOT_ENTRIES", "16") };
    let mut cluster = Cluster::start(3);
    let admin = cluster.client().await.admin();
    admin.create_topic(NewTopic::new("before", 2, 3)).await.unwrap();
    let mut meta = Client::connect(cluster.addrs[0]).await;
    wait_metadata(&mut meta, "before", "leaders", all_led).await;
    assert!(cluster.dirs[2].path().join("data/partitions/before-0").exists());

    // Broker 3 misses: a create, a delete, and enough entries to compact the log twice over.
    tokio::task::block_in_place(|| cluster.kill9(2));
    let admin = cluster.client().await.admin();
    admin.create_topic(NewTopic::new("while-down", 2, 3)).await.unwrap();
    admin.delete_topic("before").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut entries = 0;
    while first_segment(&cluster, 0).exists() || first_segment(&cluster, 1).exists() {
        assert!(
            Instant::now() < deadline,
            "the metadata log was not compacted after {entries} entries\n{}",
            cluster.logs()
        );
        // Each refused delete is still one committed entry.
        for _ in 0..20 {
            let e = admin.delete_topic("nope").await.unwrap_err();
            assert_eq!(e.code(), Some(ErrorCode::UnknownTopicOrPartition), "{e}");
            entries += 1;
        }
    }
    assert!(
        cluster.dirs[0].path().join("data/metadata/registry.json").exists(),
        "{entries} entries; {:?}",
        std::fs::read_dir(cluster.dirs[0].path().join("data/metadata"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    eprintln!("compacted after {entries} entries");

    // Broker 3 comes back behind the leader's log start: a snapshot brings it up to date.
    tokio::task::block_in_place(|| cluster.restart(2));
    let mut c3 = Client::connect(cluster.addrs[2]).await;
    wait_metadata(&mut c3, "while-down", "the topic created meanwhile", all_led).await;
    assert_eq!(c3.metadata("before").await.error, ErrorCode::UnknownTopicOrPartition);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.dirs[2].path().join("data/partitions/before-0").exists() {
        assert!(
            Instant::now() < deadline,
            "broker 3 kept the deleted topic replica\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.dirs[2].path().join("data/partitions/while-down-0").exists());

    // A broker restarted after compaction starts from its own snapshot.
    tokio::task::block_in_place(|| {
        cluster.kill9(0);
        cluster.restart(0);
    });
    let mut c1 = Client::connect(cluster.addrs[0]).await;
    wait_metadata(&mut c1, "while-down", "the topic after a restart", all_led).await;
    assert_eq!(c1.metadata("before").await.error, ErrorCode::UnknownTopicOrPartition);
    assert!(cluster.logs().contains("loaded the metadata snapshot"));
}
