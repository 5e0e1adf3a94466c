//! Moving partitions between brokers of a running cluster: `reassign` one partition (its
//! leader among the replicas leaving) and `decommission` a broker, both while idempotent
//! producers write numbered records; then every acknowledged record is read back once, in order,
//! and the brokers moved away from no longer hold the partitions' files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_client::{Error, NewTopic, ProducerConfig, ProducerRecord};
use strata_protocol::ErrorCode;

mod common;
use common::Client;
use common::cluster::{Cluster, all_led, read_back, wait_metadata};

const TOPIC: &str = "moving";
const PARTITIONS: i32 = 2;

/// Waits until no reassignment is in progress and `ok` accepts the topic's metadata (as the
/// broker at `addr` sees it), for up to 60 s.
async fn wait_moved(
    cluster: &Cluster,
    addr: std::net::SocketAddr,
    what: &str,
    ok: impl Fn(&strata_protocol::api::TopicMetadata) -> bool,
) {
    let admin = cluster.client().await.admin();
    let mut meta = Client::connect(addr).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = admin.list_reassignments().await;
        let t = meta.metadata(TOPIC).await;
        if pending.as_ref().is_ok_and(Vec::is_empty) && ok(&t) && all_led(&t) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not done in 60 s; pending {pending:?}; metadata {t:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sorted(v: &[i32]) -> Vec<i32> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// Numbered records (`i` to partition `i % partitions`) from an idempotent producer, until
/// stopped (at most 200 k).
struct Load {
    producer: Arc<strata_client::Producer>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<strata_client::Delivery>>,
}

impl Load {
    fn start(c: &strata_client::Client, topic: &'static str, partitions: u32) -> Self {
        let producer = Arc::new(
            c.producer(ProducerConfig {
                linger: Duration::from_millis(2),
                ..ProducerConfig::default()
            })
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (producer, stop) = (producer.clone(), stop.clone());
            tokio::spawn(async move {
                let mut deliveries = Vec::new();
                let mut i: u32 = 0;
                while !stop.load(Ordering::Relaxed) && i < 200_000 {
                    let rec = ProducerRecord::new(topic, i.to_string().into_bytes()).partition((i % partitions) as i32);
                    deliveries.push(producer.enqueue(rec).await.unwrap());
                    i += 1;
                    if i.is_multiple_of(20) {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
                deliveries
            })
        };
        Self { producer, stop, task }
    }

    /// Stops, checks every record was acknowledged, and returns how many were sent.
    async fn finish(self, cluster: &Cluster) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let deliveries = self.task.await.unwrap();
        self.producer.flush().await;
        let total = deliveries.len();
        for (i, d) in deliveries.into_iter().enumerate() {
            let r = tokio::time::timeout(Duration::from_secs(120), d)
                .await
                .expect("delivery in time");
            assert!(r.is_ok(), "record {i} not acknowledged: {r:?}\n{}", cluster.logs());
        }
        total
    }
}

fn has_dir(cluster: &Cluster, broker: i32, partition: i32) -> bool {
    cluster.dirs[broker as usize - 1]
        .path()
        .join("data/partitions")
        .join(format!("{TOPIC}-{partition}"))
        .exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_and_brokers_empty_under_load_without_losing_a_record() {
    let cluster = Cluster::start(4);
    let c = cluster.client().await;
    let admin = c.admin();
    admin.create_topic(NewTopic::new(TOPIC, PARTITIONS, 3)).await.unwrap();
    let mut meta = Client::connect(cluster.addrs[0]).await;
    let t = wait_metadata(&mut meta, TOPIC, "leaders", all_led).await;

    // Bad requests are refused with a clear error and change nothing.
    let refused = |r: Result<(), Error>| r.unwrap_err().code();
    assert_eq!(
        refused(admin.reassign_partition(TOPIC, 0, &[1, 2, 9]).await),
        Some(ErrorCode::BrokerNotAvailable)
    );
    assert_eq!(
        refused(admin.reassign_partition(TOPIC, 0, &[1, 1, 2]).await),
        Some(ErrorCode::InvalidReplicaAssignment)
    );
    assert_eq!(
        refused(admin.reassign_partition(TOPIC, 7, &[1, 2, 3]).await),
        Some(ErrorCode::UnknownTopicOrPartition)
    );
    assert_eq!(
        refused(admin.reassign_partition("nope", 0, &[1, 2, 3]).await),
        Some(ErrorCode::UnknownTopicOrPartition)
    );
    assert_eq!(
        refused(admin.reassign_partition(TOPIC, 0, &[]).await),
        Some(ErrorCode::InvalidRequest),
        "cancelling when nothing moves"
    );
    assert_eq!(
        admin.decommission_broker(9).await.unwrap_err().code(),
        Some(ErrorCode::BrokerNotAvailable)
    );
    assert!(admin.list_reassignments().await.unwrap().is_empty());

    // Load: numbered records to both partitions until told to stop.
    let load = Load::start(&c, TOPIC, PARTITIONS as u32);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Move partition 0 so that its leader leaves and the broker without it joins.
    let p0 = &t.partitions[0];
    let outsider = (1..=4).find(|b| !p0.replicas.contains(b)).unwrap();
    let leaving = p0.leader;
    let mut target = vec![outsider];
    target.extend(p0.replicas.iter().filter(|&&r| r != leaving));
    admin.reassign_partition(TOPIC, 0, &target).await.unwrap();
    wait_moved(&cluster, cluster.addrs[0], "reassignment", |t| {
        sorted(&t.partitions[0].replicas) == sorted(&target)
    })
    .await;
    // The preferred leader is the target's first replica; the old replica's files are gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while has_dir(&cluster, leaving, 0) {
        assert!(Instant::now() < deadline, "broker {leaving} still holds {TOPIC}-0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(has_dir(&cluster, outsider, 0));

    // Empty a broker that holds partition 1 (its leader, to make it move too).
    let t = wait_metadata(&mut meta, TOPIC, "leaders", all_led).await;
    let emptied = t.partitions[1].leader;
    let moving = admin.decommission_broker(emptied).await.unwrap();
    assert!(moving >= 1, "{moving}");
    wait_moved(&cluster, cluster.addrs[0], "decommission", |t| {
        t.partitions
            .iter()
            .all(|p| !p.replicas.contains(&emptied) && p.replicas.len() == 3)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..PARTITIONS).any(|p| has_dir(&cluster, emptied, p)) {
        assert!(Instant::now() < deadline, "broker {emptied} still holds a replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // New topics avoid the decommissioned broker.
    admin.create_topic(NewTopic::new("after", 6, 3)).await.unwrap();
    let after = wait_metadata(&mut meta, "after", "leaders", all_led).await;
    assert!(
        after.partitions.iter().all(|p| !p.replicas.contains(&emptied)),
        "{after:?}"
    );

    // Stop the load: every record acknowledged, and read back once, in order.
    let total = load.finish(&cluster).await;
    assert!(total > 500, "only {total} records produced");
    read_back(&c, TOPIC, PARTITIONS as u32, total).await;

    moving_a_compacted_partition_copies_everything_retained(&cluster, emptied).await;
    if std::env::var_os("STRATA_TEST_LOGS").is_some() {
        eprintln!("{}", cluster.logs());
    }
}

/// A partition whose log start moved (retention deleted its first segments) moves to a broker
/// that never had it: the new replica gets a snapshot of the log start (with the configuration
/// valid there) and then every retained entry, so once it leads it serves exactly what the old
/// replicas had, from the same log start.
async fn moving_a_compacted_partition_copies_everything_retained(cluster: &Cluster, decommissioned: i32) {
    const NAME: &str = "compacted";
    let admin = cluster.client().await.admin();
    let live: Vec<i32> = (1..=4).filter(|&b| b != decommissioned).collect();
    // One partition on two of the three live brokers; the third receives it later.
    admin
        .create_topic(
            NewTopic::new(NAME, 1, 2)
                .config("segment.bytes", "4096")
                .config("retention.bytes", "8192"),
        )
        .await
        .unwrap();
    let mut meta = Client::connect(cluster.addrs[live[0] as usize - 1]).await;
    let t = wait_metadata(&mut meta, NAME, "a leader", all_led).await;
    let replicas = t.partitions[0].replicas.clone();
    let newcomer = *live.iter().find(|b| !replicas.contains(b)).unwrap();
    // Written by the idempotent producer, which follows leadership if it moves meanwhile (back
    // to the preferred replica, by transfer) and never duplicates a retried batch. Small
    // batches (~10 records each) so that the tiny segments roll.
    let producer = cluster
        .client()
        .await
        .producer(ProducerConfig {
            batch_size: 1200,
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        })
        .unwrap();
    let mut deliveries = Vec::new();
    for n in 0..600 {
        let rec = ProducerRecord::new(NAME, format!("{n:0>100}").into_bytes()).partition(0);
        deliveries.push(producer.enqueue(rec).await.unwrap());
    }
    producer.flush().await;
    for d in deliveries {
        d.await.unwrap();
    }
    drop(producer);
    // Retention (checked every 500 ms in tests) deletes the first segments: wait until it has
    // nothing more to delete (the log start holds still over three checks).
    let mut start = -1;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = wait_metadata(&mut meta, NAME, "a leader", all_led).await;
        let now = t.partitions[0].log_start_offset;
        if now > 0 && now == start {
            break;
        }
        assert!(Instant::now() < deadline, "retention did not settle: {t:?}");
        start = now;
        tokio::time::sleep(Duration::from_millis(1600)).await;
    }
    let end = 600;

    // Move it onto the newcomer as the preferred leader.
    let target = vec![newcomer, replicas[0], replicas[1]];
    admin.reassign_partition(NAME, 0, &target).await.unwrap();
    let moved = wait_metadata(&mut meta, NAME, "the newcomer to lead", |t| {
        all_led(t) && t.partitions[0].leader == newcomer && sorted(&t.partitions[0].replicas) == sorted(&target)
    })
    .await;
    let p = &moved.partitions[0];
    assert_eq!((p.log_start_offset, p.high_watermark), (start, end), "{p:?}");
    // Everything retained is there, from the newcomer.
    let mut c = Client::connect(cluster.addr_of(newcomer)).await;
    let mut offset = start;
    while offset < end {
        let f = c.fetch(NAME, 0, offset, 0, 0).await;
        assert_eq!(f.error, ErrorCode::None, "{f:?}");
        let got = common::values(f.records);
        assert!(!got.is_empty(), "nothing at {offset}");
        for (o, v) in got {
            assert_eq!(o as i64, offset, "offsets are dense");
            assert_eq!(v, format!("{o:0>100}"));
            offset += 1;
        }
    }
}

/// Moves and broker failures together: for a bounded time, random partitions move to random
/// replica sets while one broker at a time is killed with `kill -9` and restarted, under an
/// idempotent producer; once every move has finished, every acknowledged record is read back
/// once, in order per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_during_broker_kills_lose_nothing() {
    const TOPIC: &str = "churn";
    const N: i32 = 4;
    let secs: u64 = std::env::var("STRATA_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut seed: u64 = std::env::var("STRATA_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("churn seed {seed} (STRATA_CHURN_SEED to replay)");
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut cluster = Cluster::start(4);
    let c = cluster.client().await;
    c.admin().create_topic(NewTopic::new(TOPIC, N, 3)).await.unwrap();
    wait_metadata(&mut Client::connect(cluster.addrs[0]).await, TOPIC, "leaders", all_led).await;

    let load = Load::start(&c, TOPIC, N as u32);

    let admin = c.admin();
    let (mut moves, mut kills) = (0, 0);
    let mut down: Option<usize> = None;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if rand(3) == 0 {
            match down.take() {
                Some(i) => tokio::task::block_in_place(|| cluster.restart(i)),
                None => {
                    let i = rand(4) as usize;
                    tokio::task::block_in_place(|| cluster.kill9(i));
                    down = Some(i);
                    kills += 1;
                }
            }
        } else {
            let p = rand(N as u64) as i32;
            let mut replicas: Vec<i32> = vec![1, 2, 3, 4];
            replicas.remove(rand(4) as usize);
            replicas.rotate_left(rand(3) as usize);
            // The controller may be the broker just killed: a refused move is simply not made.
            if admin.reassign_partition(TOPIC, p, &replicas).await.is_ok() {
                moves += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    if let Some(i) = down {
        tokio::task::block_in_place(|| cluster.restart(i));
    }
    eprintln!("churn: {moves} moves started, {kills} kill -9 + restarts");
    let admin = cluster.client().await.admin();
    let mut meta = Client::connect(cluster.addrs[0]).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pending = admin.list_reassignments().await;
        let t = meta.metadata(TOPIC).await;
        if pending.as_ref().is_ok_and(Vec::is_empty) && all_led(&t) {
            assert!(t.partitions.iter().all(|p| p.replicas.len() == 3), "{t:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moves not finished: {pending:?} {t:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let total = load.finish(&cluster).await;
    read_back(&c, TOPIC, N as u32, total).await;
}
