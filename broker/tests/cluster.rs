//! Three real `strata-broker` processes on 127.0.0.1 forming one cluster: the controller quorum
//! commits topics that every broker applies, partitions are replicated by their own Raft groups,
//! and killing a partition's leader with `kill -9` loses no write acknowledged with `acks=all`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::api::*;
use strata_testkit::{BrokerProcess, free_port};

mod common;
use common::{BROKER, Client, batch, values};

/// A cluster of `n` brokers, each in its own directory, all voters.
struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    addrs: Vec<SocketAddr>,
    voters: String,
    brokers: Vec<Option<BrokerProcess>>,
}

impl Cluster {
    fn start(n: usize) -> Self {
        let addrs: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let voters = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}@{a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut c = Cluster {
            dirs,
            addrs,
            voters,
            brokers: (0..n).map(|_| None).collect(),
        };
        let starting: Vec<_> = (0..n).map(|i| c.launch(i)).collect();
        for (i, s) in starting.into_iter().enumerate() {
            c.brokers[i] = Some(s.wait());
        }
        c
    }

    fn launch(&self, i: usize) -> strata_testkit::Starting {
        let id = (i + 1).to_string();
        BrokerProcess::launch(
            BROKER,
            self.dirs[i].path(),
            self.addrs[i],
            &["--node-id", &id, "--voters", &self.voters],
        )
    }

    fn restart(&mut self, i: usize) {
        self.brokers[i] = Some(self.launch(i).wait());
    }

    fn kill9(&mut self, i: usize) {
        self.brokers[i].take().expect("running").kill9();
    }

    fn addr_of(&self, node: i32) -> SocketAddr {
        self.addrs[node as usize - 1]
    }

    fn logs(&self) -> String {
        self.brokers
            .iter()
            .flatten()
            .map(|b| b.logs())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    }
}

async fn create(c: &mut Client, name: &str, partitions: i32, rf: i16) -> TopicResult {
    let Response::CreateTopics(r) = c
        .call(Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: rf,
                configs: vec![],
            }],
            timeout_ms: 10_000,
            validate_only: false,
        }))
        .await
        .unwrap()
    else {
        panic!("not a create response")
    };
    r.topics.into_iter().next().unwrap()
}

/// Polls metadata through `c` until `ok` accepts the topic's, for up to 20 s.
async fn wait_metadata(c: &mut Client, topic: &str, what: &str, ok: impl Fn(&TopicMetadata) -> bool) -> TopicMetadata {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = c.metadata(topic).await;
        if ok(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last metadata: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all_led(t: &TopicMetadata) -> bool {
    t.error == ErrorCode::None && !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_anywhere_are_replicated_everywhere_and_deleted_everywhere() {
    let cluster = Cluster::start(3);
    let mut c2 = Client::connect(cluster.addrs[1]).await;
    let created = create(&mut c2, "orders", 6, 3).await;
    assert_eq!(created.error, ErrorCode::None, "{created:?}\n{}", cluster.logs());
    // A second create of the name, through another broker, is refused by the controller.
    let mut c3 = Client::connect(cluster.addrs[2]).await;
    assert_eq!(
        create(&mut c3, "orders", 1, 3).await.error,
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        create(&mut c3, "too-many", 1, 4).await.error,
        ErrorCode::InvalidReplicationFactor
    );

    let mut views = Vec::new();
    for addr in &cluster.addrs {
        let mut c = Client::connect(*addr).await;
        let t = wait_metadata(&mut c, "orders", "leaders everywhere", all_led).await;
        assert_eq!(t.partitions.len(), 6);
        for p in &t.partitions {
            let mut r = p.replicas.clone();
            r.sort_unstable();
            assert_eq!(r, vec![1, 2, 3], "{p:?}");
        }
        views.push(t.partitions.iter().map(|p| p.replicas.clone()).collect::<Vec<_>>());
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "brokers disagree on replicas: {views:?}"
    );
    // Preferred leaders are spread: not every partition led by one broker.
    let leaders: std::collections::BTreeSet<i32> = views[0].iter().map(|r| r[0]).collect();
    assert!(leaders.len() >= 2, "{views:?}");

    let Response::Metadata(m) = c2
        .call(Request::Metadata(MetadataRequest { topics: None }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m.brokers.len(), 3);
    assert!(m.controller_id >= 1);
    // Every broker exports its links to the other two; exactly one leads the controller.
    let mut active = 0;
    for b in cluster.brokers.iter().flatten() {
        let text = strata_testkit::http::get(b.http, "/metrics").unwrap().body;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} in the scrape"))
        };
        assert_eq!(value("strata_raft_peers_connected"), 2.0);
        assert!(value("strata_raft_peer_messages_sent_total") > 0.0);
        assert_eq!(value("strata_partitions"), 6.0);
        active += value("strata_controller_active") as u32;
    }
    assert_eq!(active, 1);

    let Response::DeleteTopics(d) = c3
        .call(Request::DeleteTopics(DeleteTopicsRequest {
            names: vec!["orders".into()],
            timeout_ms: 10_000,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.topics[0].error, ErrorCode::None, "{d:?}");
    for addr in &cluster.addrs {
        let mut c = Client::connect(*addr).await;
        wait_metadata(&mut c, "orders", "the delete everywhere", |t| {
            t.error == ErrorCode::UnknownTopicOrPartition
        })
        .await;
    }
}

/// Produces `n` single-record batches with `acks=all` to the partition's current leader, learnt
/// through `meta`; returns the values acknowledged. Stops early (returning what was acked) when
/// the leader stops answering.
async fn produce_acked(cluster: &Cluster, meta: &mut Client, topic: &str, from: usize, n: usize) -> Vec<String> {
    let t = wait_metadata(meta, topic, "a leader", all_led).await;
    let leader = t.partitions[0].leader;
    let mut c = Client::connect(cluster.addr_of(leader)).await;
    let mut acked = Vec::new();
    for i in from..from + n {
        let v = format!("v{i}");
        match c.try_produce(topic, 0, batch(&[&v], 1), -1).await {
            Some(r) if r.error == ErrorCode::None => acked.push(v),
            Some(r) => panic!("produce {v} failed: {r:?}"),
            None => break,
        }
    }
    acked
}

/// Reads partition 0 from its leader from offset 0 up to the high watermark.
async fn read_all(cluster: &Cluster, meta: &mut Client, topic: &str) -> Vec<String> {
    let t = wait_metadata(meta, topic, "a leader", all_led).await;
    let mut c = Client::connect(cluster.addr_of(t.partitions[0].leader)).await;
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let f = c.fetch(topic, 0, offset, 0, 0).await;
        assert_eq!(f.error, ErrorCode::None, "{f:?}");
        let got = values(f.records);
        if got.is_empty() {
            assert_eq!(offset, f.high_watermark, "stopped before the high watermark");
            return out;
        }
        for (o, v) in got {
            assert_eq!(o as i64, offset, "offsets are dense");
            offset += 1;
            out.push(v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let mut meta = Client::connect(cluster.addrs[0]).await;
    assert_eq!(create(&mut meta, "ledger", 1, 3).await.error, ErrorCode::None);
    let mut acked = produce_acked(&cluster, &mut meta, "ledger", 0, 200).await;
    assert_eq!(acked.len(), 200);

    // An idempotent producer's batch, acknowledged by the old leader...
    let t = wait_metadata(&mut meta, "ledger", "a leader", all_led).await;
    let old = t.partitions[0].leader;
    let mut at_leader = Client::connect(cluster.addr_of(old)).await;
    let Response::InitProducerId(id) = at_leader
        .call(Request::InitProducerId(InitProducerIdRequest::default()))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(id.error, ErrorCode::None, "{id:?}");
    let stamped = {
        let mut b = strata_protocol::BatchBuilder::new(strata_protocol::BatchOptions {
            producer_id: id.producer_id,
            producer_epoch: id.producer_epoch,
            base_sequence: 0,
            ..Default::default()
        });
        b.append(1, None, Some(b"v200"), &[]).unwrap();
        b.finish().unwrap()
    };
    let r = at_leader.produce("ledger", 0, stamped.clone(), -1).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 200), "{r:?}");
    acked.push("v200".into());
    cluster.kill9(old as usize - 1);
    let survivor = cluster.addrs[if old == 1 { 1 } else { 0 }];
    let mut meta = Client::connect(survivor).await;
    let started = Instant::now();
    let t = wait_metadata(&mut meta, "ledger", "a new leader", |t| {
        all_led(t) && t.partitions[0].leader != old
    })
    .await;
    eprintln!(
        "new leader {} elected {:?} after the kill",
        t.partitions[0].leader,
        started.elapsed()
    );
    // ...and retried at the new leader after the failover is not written twice.
    let mut at_new = Client::connect(cluster.addr_of(t.partitions[0].leader)).await;
    let r = at_new.produce("ledger", 0, stamped, -1).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 200), "{r:?}");
    acked.extend(produce_acked(&cluster, &mut meta, "ledger", 201, 100).await);
    assert_eq!(acked.len(), 301);
    assert_eq!(
        read_all(&cluster, &mut meta, "ledger").await,
        acked,
        "{}",
        cluster.logs()
    );

    // The killed broker comes back, catches up from the leader, and is in sync again.
    cluster.restart(old as usize - 1);
    acked.extend(produce_acked(&cluster, &mut meta, "ledger", 301, 50).await);
    wait_metadata(&mut meta, "ledger", "all replicas in sync", |t| {
        all_led(t) && t.partitions[0].in_sync.len() == 3
    })
    .await;
    // Kill the current leader too: the restarted broker's copy must be complete.
    let t = wait_metadata(&mut meta, "ledger", "a leader", all_led).await;
    let second = t.partitions[0].leader;
    cluster.kill9(second as usize - 1);
    let alive = (1..=3).find(|&n| n != second).unwrap();
    let mut meta = Client::connect(cluster.addr_of(alive)).await;
    wait_metadata(&mut meta, "ledger", "a third leader", |t| {
        all_led(t) && t.partitions[0].leader != second
    })
    .await;
    assert_eq!(
        read_all(&cluster, &mut meta, "ledger").await,
        acked,
        "{}",
        cluster.logs()
    );
}

/// The failover test with the bundled client: idempotent producers write numbered
/// records to three partitions while the leader of one is killed with `kill -9`; every record is
/// acknowledged (the client retries through the failover), and reading the topic back gives
/// each one exactly once, in order per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_rides_through_a_leader_kill_under_load_without_loss_or_duplicates() {
    use futures::StreamExt;
    use strata_client::{ClientConfig, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, Seek};

    const RECORDS: u32 = 3000;
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster
        .addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let c = strata_client::Client::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    c.admin().create_topic(NewTopic::new("load", 3, 3)).await.unwrap();
    let mut meta = Client::connect(cluster.addrs[0]).await;
    let t = wait_metadata(&mut meta, "load", "leaders", all_led).await;
    let victim = t.partitions[0].leader;

    let producer = c
        .producer(ProducerConfig {
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        })
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        if i == RECORDS / 3 {
            // Let the first third be acknowledged, then kill partition 0's leader mid-stream.
            producer.flush().await;
            cluster.kill9(victim as usize - 1);
        }
        let rec = ProducerRecord::new("load", format!("{i}").into_bytes()).partition((i % 3) as i32);
        deliveries.push(producer.enqueue(rec).await.unwrap());
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    producer.flush().await;
    for (i, d) in deliveries.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(60), d)
            .await
            .expect("delivery in time");
        assert!(r.is_ok(), "record {i} not acknowledged: {r:?}\n{}", cluster.logs());
    }
    producer.close().await;

    let mut consumer = c.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign_topic("load").await.unwrap();
    consumer.seek_all(Seek::Earliest).await.unwrap();
    let mut stream = consumer.stream();
    let mut seen = std::collections::BTreeMap::<u32, i32>::new();
    let mut last = [None::<u32>; 3];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < RECORDS as usize {
        assert!(Instant::now() < deadline, "only {} of {RECORDS} read back", seen.len());
        let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await else {
            panic!("the consumer stalled after {} records", seen.len());
        };
        let r = r.unwrap();
        let n: u32 = std::str::from_utf8(r.value.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(n % 3, r.partition as u32, "record {n} in partition {}", r.partition);
        assert!(seen.insert(n, r.partition).is_none(), "record {n} read twice");
        let p = r.partition as usize;
        assert!(
            last[p].is_none_or(|prev| prev < n),
            "partition {p}: {n} after {:?}",
            last[p]
        );
        last[p] = Some(n);
    }
    assert_eq!(seen.len(), RECORDS as usize);
}
