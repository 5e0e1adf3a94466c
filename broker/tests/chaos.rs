//! Chaos: for a bounded time, one broker of three at a time is killed with `kill -9` and
//! restarted, paused with SIGSTOP and resumed, cut off (every connection to it closed and new
//! ones refused, through the TCP proxy in front of each broker), or slowed (its inbound traffic
//! delayed), while an idempotent producer writes numbered records in bursts (between them the
//! idle partitions quiesce) and a reader follows the partitions' leaders. Then a checker verifies: no acknowledged
//! record lost, no record twice, per-partition order kept, and the high watermark a reader sees
//! never moving backwards.
//!
//! The suite runs it for 15 s; `STRATA_CHAOS_SECS=600 cargo test -p strata-broker --test chaos
//! -- --nocapture` runs the long version and prints its figures. The fault schedule is random;
//! its seed is printed, and `STRATA_CHAOS_SEED` replays it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_client::{NewTopic, ProducerConfig, ProducerRecord};
use strata_protocol::ErrorCode;

mod common;
use common::cluster::{Cluster, all_led, wait_metadata};
use common::{Client, values};

const PARTITIONS: i32 = 3;

/// What the reader saw of one partition.
#[derive(Default, Debug)]
struct Seen {
    next: i64,
    high_watermark: i64,
    /// The highest leader term a fetch was served from: sent with each fetch, so a deposed
    /// leader that has not heard of its successor yet refuses (as a consumer's fetch is).
    leader_term: i64,
    /// Fetches a deposed leader refused with `UNKNOWN_LEADER_EPOCH`.
    fenced: u64,
    values: Vec<u64>,
}

/// Follows every partition's leader from offset 0, checking that the high watermark it is shown
/// never decreases. Connection failures (a killed or paused broker) are retried through another
/// broker. Returns what it read once `total` (unknown while `u64::MAX`) records are read and
/// every partition is read up to its high watermark.
async fn read_along(
    addrs: Vec<std::net::SocketAddr>,
    total: Arc<std::sync::atomic::AtomicU64>,
    progress: Arc<std::sync::Mutex<String>>,
) -> Vec<Seen> {
    let mut seen: Vec<Seen> = (0..PARTITIONS).map(|_| Seen::default()).collect();
    let mut conns: BTreeMap<i32, Client> = BTreeMap::new();
    let mut leaders: BTreeMap<i32, i32> = BTreeMap::new();
    let mut round = 0usize;
    let mut give_up = None;
    loop {
        round += 1;
        let read: usize = seen.iter().map(|s| s.values.len()).sum();
        *progress.lock().unwrap_or_else(|e| e.into_inner()) = format!(
            "read {read}; leaders {leaders:?}; per partition (next, high watermark): {:?}",
            seen.iter().map(|s| (s.next, s.high_watermark)).collect::<Vec<_>>()
        );
        let known = total.load(Ordering::Acquire);
        if known != u64::MAX {
            // Once the total is known, read at most 20 s more: the checker reports what is missing.
            let deadline = *give_up.get_or_insert_with(|| Instant::now() + Duration::from_secs(20));
            let caught_up = read as u64 >= known && seen.iter().all(|s| s.next == s.high_watermark);
            if caught_up || Instant::now() > deadline {
                return seen;
            }
        }
        // Refresh leaders from any broker that answers.
        if round % 10 == 1 || leaders.len() < PARTITIONS as usize {
            for a in &addrs {
                let Some(mut c) = Client::try_connect(*a).await else {
                    continue;
                };
                let Ok(Some(strata_protocol::api::Response::Metadata(m))) = tokio::time::timeout(
                    Duration::from_millis(500),
                    c.try_call(strata_protocol::api::Request::Metadata(
                        strata_protocol::api::MetadataRequest {
                            topics: Some(vec!["chaos".into()]),
                        },
                    )),
                )
                .await
                else {
                    continue;
                };
                if let Some(t) = m.topics.first() {
                    for p in t.partitions.iter().filter(|p| p.leader > 0) {
                        leaders.insert(p.partition, p.leader);
                    }
                    if all_led(t) {
                        break;
                    }
                }
            }
        }
        for p in 0..PARTITIONS {
            let Some(&leader) = leaders.get(&p) else { continue };
            let addr = addrs[leader as usize - 1];
            if let std::collections::btree_map::Entry::Vacant(e) = conns.entry(leader) {
                match Client::try_connect(addr).await {
                    Some(c) => {
                        e.insert(c);
                    }
                    None => {
                        leaders.remove(&p);
                        continue;
                    }
                }
            }
            let c = conns.get_mut(&leader).expect("inserted");
            let s = &mut seen[p as usize];
            let f = tokio::time::timeout(
                Duration::from_millis(800),
                c.try_fetch_at_term("chaos", p, s.next, 50, 1, s.leader_term),
            )
            .await;
            let Ok(Some(f)) = f else {
                // Dead or paused: forget the connection and the leader.
                conns.remove(&leader);
                leaders.remove(&p);
                continue;
            };
            if f.error != ErrorCode::None {
                s.fenced += u64::from(f.error == ErrorCode::UnknownLeaderEpoch);
                leaders.remove(&p);
                continue;
            }
            assert!(
                f.high_watermark >= s.high_watermark,
                "partition {p}: high watermark went back from {} to {}",
                s.high_watermark,
                f.high_watermark
            );
            s.high_watermark = f.high_watermark;
            s.leader_term = s.leader_term.max(f.leader_term);
            for (offset, v) in values(f.records) {
                if (offset as i64) < s.next {
                    continue;
                }
                assert_eq!(offset as i64, s.next, "partition {p}: offsets are dense");
                s.next += 1;
                s.values.push(v.parse().expect("a numbered record"));
            }
            if s.next < s.high_watermark {
                // More to read: come back to this partition first.
                continue;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_record_is_lost_duplicated_or_reordered_under_chaos() {
    let secs: u64 = std::env::var("STRATA_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    // Brokers reach each other (and clients reach them) only through a proxy each, so a
    // broker can be cut off or slowed down.
    let mut cluster = Cluster::start_proxied(3).await;
    let c = cluster.client().await;
    c.admin()
        .create_topic(NewTopic::new("chaos", PARTITIONS, 3))
        .await
        .unwrap();
    let mut meta = Client::connect(cluster.addrs[0]).await;
    wait_metadata(&mut meta, "chaos", "leaders", all_led).await;

    // The producer: numbered records, partition = number % 3, at most ~2,000/s, every delivery
    // awaited by a collector task.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let producer = c
        .producer(ProducerConfig {
            linger: Duration::from_millis(2),
            delivery_timeout: Duration::from_secs(60),
            // Pipelined sends (retried in order through every fault below).
            max_in_flight_per_partition: 5,
            ..ProducerConfig::default()
        })
        .unwrap();
    let (dtx, mut drx) = tokio::sync::mpsc::unbounded_channel();
    let produce = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n: u64 = 0;
            let mut burst = Instant::now();
            while !stop.load(Ordering::Acquire) {
                // Bursts of ~2 s, then 2 s of silence: the partitions quiesce (idle for 1 s)
                // and wake again, through the faults, many times a run.
                if burst.elapsed() > Duration::from_secs(2) {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    burst = Instant::now();
                }
                for _ in 0..20 {
                    let rec = ProducerRecord::new("chaos", n.to_string().into_bytes()).partition((n % 3) as i32);
                    let d = producer.enqueue(rec).await.expect("enqueue");
                    let _ = dtx.send((n, d));
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            producer.flush().await;
            producer.close().await;
            n
        })
    };
    let collect = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut failed = BTreeMap::<String, u64>::new();
        while let Some((n, d)) = drx.recv().await {
            match d.await {
                Ok(_) => acked.push(n),
                Err(e) => *failed.entry(e.to_string().chars().take(120).collect()).or_default() += 1,
            }
        }
        (acked, failed)
    });
    let progress = Arc::new(std::sync::Mutex::new(String::new()));
    let reader = tokio::spawn(read_along(cluster.addrs.clone(), acked_total.clone(), progress.clone()));

    // Faults: one broker at a time, for `secs`.
    let started = Instant::now();
    // The fault schedule's seed: `STRATA_CHAOS_SEED` replays a run's schedule (timing still varies).
    let seed = std::env::var("STRATA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1;
    eprintln!("chaos seed {seed} (STRATA_CHAOS_SEED to replay)");
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut kills, mut pauses, mut cuts, mut delays) = (0, 0, 0, 0);
    // How often a look between faults found quiesced replicas.
    let (mut looks, mut quiet_looks) = (0u64, 0u64);
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500 + next() % 1000)).await;
        looks += 1;
        let quiet = tokio::task::block_in_place(|| {
            cluster.brokers.iter().flatten().any(|b| {
                strata_testkit::http::get(b.http, "/metrics").is_ok_and(|r| {
                    r.body
                        .lines()
                        .any(|l| l.starts_with("strata_raft_quiesced_groups ") && !l.ends_with(" 0"))
                })
            })
        });
        if quiet {
            quiet_looks += 1;
        }
        let victim = (next() % 3) as usize;
        let fault = next() % 4;
        if fault == 0 {
            cluster.kill9(victim);
            tokio::time::sleep(Duration::from_millis(200 + next() % 800)).await;
            tokio::task::block_in_place(|| cluster.restart(victim));
            kills += 1;
        } else if fault == 2 {
            // Nobody reaches the victim (its own connections out still work: an asymmetric
            // partition), then the link heals.
            cluster.proxies[victim].cut();
            tokio::time::sleep(Duration::from_millis(300 + next() % 2000)).await;
            cluster.proxies[victim].heal();
            cuts += 1;
        } else if fault == 3 {
            cluster.proxies[victim].delay(Duration::from_millis(20 + next() % 150));
            tokio::time::sleep(Duration::from_millis(500 + next() % 2000)).await;
            cluster.proxies[victim].heal();
            delays += 1;
        } else {
            let pid = cluster.brokers[victim].as_ref().expect("running").pid() as i32;
            // SAFETY: signals to our own live child process.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            tokio::time::sleep(Duration::from_millis(300 + next() % 2000)).await;
            unsafe { libc::kill(pid, libc::SIGCONT) };
            pauses += 1;
        }
    }
    stop.store(true, Ordering::Release);
    let produced = tokio::time::timeout(Duration::from_secs(90), produce)
        .await
        .expect("the producer finishes")
        .unwrap();
    let (acked, failed) = tokio::time::timeout(Duration::from_secs(90), collect)
        .await
        .expect("every delivery resolves")
        .unwrap();
    // The reader stops once it has read at least as many records as were acknowledged.
    acked_total.store(acked.len() as u64, Ordering::Release);
    let Ok(seen) = tokio::time::timeout(Duration::from_secs(90), reader).await else {
        let mut views = Vec::new();
        for a in &cluster.addrs {
            let mut c = Client::connect(*a).await;
            views.push(format!("{a}: {:?}", c.metadata("chaos").await));
        }
        panic!(
            "the reader did not catch up with {} acknowledged records: {}\n{}\n{}",
            acked.len(),
            progress.lock().unwrap_or_else(|e| e.into_inner()),
            views.join("\n"),
            cluster.logs()
        );
    };
    let seen = seen.unwrap();

    // The checker: every violation is collected, then reported together.
    let mut all = BTreeMap::new();
    let mut problems = Vec::new();
    for (p, s) in seen.iter().enumerate() {
        for (i, w) in s.values.windows(2).enumerate() {
            if w[0] >= w[1] && problems.len() < 20 {
                problems.push(format!("partition {p} offset {}: {} read after {}", i + 1, w[1], w[0]));
            }
        }
        for (offset, &n) in s.values.iter().enumerate() {
            if n % 3 != p as u64 && problems.len() < 40 {
                problems.push(format!("record {n} in partition {p} at offset {offset}"));
            }
            if let Some(first) = all.insert(n, (p, offset))
                && problems.len() < 60
            {
                problems.push(format!("record {n} read twice: {first:?} and {:?}", (p, offset)));
            }
        }
    }
    let lost: Vec<u64> = acked.iter().copied().filter(|n| !all.contains_key(n)).collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged records lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    assert!(
        problems.is_empty(),
        "{} violations:\n{}\nfailed deliveries: {failed:?}\nreader: {}",
        problems.len(),
        problems.join("\n"),
        progress.lock().unwrap_or_else(|e| e.into_inner())
    );
    eprintln!(
        "chaos for {secs} s: {kills} kill -9 + restarts, {pauses} SIGSTOP/SIGCONT pauses, {cuts} connection cuts, {delays} delayed links; {produced} records sent, {} acknowledged, {} failed {failed:?}, {} read back; none lost, duplicated or reordered; {} fetches refused by a deposed leader; quiesced replicas seen at {quiet_looks} of {looks} looks between faults",
        acked.len(),
        failed.values().sum::<u64>(),
        all.len(),
        seen.iter().map(|s| s.fenced).sum::<u64>()
    );
}
