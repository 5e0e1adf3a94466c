//! Three real `strata-broker` processes on 127.0.0.1 forming one cluster: the controller quorum
//! commits topics that every broker applies, partitions are replicated by their own Raft groups,
//! and killing a partition's leader with `kill -9` loses no write acknowledged with `acks=all`.

use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::api::*;

mod common;
use common::cluster::{Cluster, all_led, create, wait_metadata};
use common::{Client, values};

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
    // SIGTERM drains a cluster member and exits cleanly (its peers' connections do not hold
    // it until the shutdown timeout).
    let mut cluster = cluster;
    let member = cluster.brokers[2].take().unwrap();
    let started = Instant::now();
    assert!(member.sigterm_and_wait().success());
    eprintln!("a cluster member exited {:?} after SIGTERM", started.elapsed());
}

/// Produces `n` single-record batches with `acks=all` to partition 0's current leader, learnt
/// through `meta`, as an idempotent producer (its own producer id): a batch refused with a
/// retriable error (leadership moving: failover, preferred-leader restoration) or cut off with
/// its connection is sent again, unchanged, to the then leader, so each value is written once.
/// Returns the values, all acknowledged.
async fn produce_acked(cluster: &Cluster, meta: &mut Client, topic: &str, from: usize, n: usize) -> Vec<String> {
    // A producer id, retried while the controller elects a leader (as the client does).
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let Response::InitProducerId(id) = meta
            .call(Request::InitProducerId(InitProducerIdRequest::default()))
            .await
            .unwrap()
        else {
            panic!("not an InitProducerId response")
        };
        if id.error == ErrorCode::None {
            break id;
        }
        assert!(id.error.is_retriable() && Instant::now() < deadline, "{id:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut conn: Option<(i32, Client)> = None;
    let mut acked = Vec::new();
    for (seq, i) in (from..from + n).enumerate() {
        let v = format!("v{i}");
        let mut b = strata_protocol::BatchBuilder::new(strata_protocol::BatchOptions {
            producer_id: id.producer_id,
            producer_epoch: id.producer_epoch,
            base_sequence: seq as i32,
            ..Default::default()
        });
        b.append(1, None, Some(v.as_bytes()), &[]).unwrap();
        let batch = b.finish().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "{v} not acknowledged within 20 s");
            if conn.is_none() {
                let t = wait_metadata(meta, topic, "a leader", all_led).await;
                let leader = t.partitions[0].leader;
                conn = Client::try_connect(cluster.addr_of(leader)).await.map(|c| (leader, c));
            }
            let Some((_, c)) = conn.as_mut() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match c.try_produce(topic, 0, batch.clone(), -1).await {
                Some(r) if r.error == ErrorCode::None => {
                    acked.push(v);
                    break;
                }
                Some(r) if r.error.is_retriable() => {}
                Some(r) => panic!("produce {v} failed: {r:?}"),
                None => {}
            }
            conn = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
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
    // ...and retried at the new leader after the failover is not written twice. (Retried, as a
    // client does, while the new leadership settles: a just-elected leader can still lose it.)
    let mut leader = t.partitions[0].leader;
    let mut r = None;
    for _ in 0..100 {
        let mut at_new = Client::connect(cluster.addr_of(leader)).await;
        let answer = at_new.produce("ledger", 0, stamped.clone(), -1).await;
        if !answer.error.is_retriable() {
            r = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        leader = wait_metadata(&mut meta, "ledger", "a new leader", |t| {
            all_led(t) && t.partitions[0].leader != old
        })
        .await
        .partitions[0]
            .leader;
    }
    let r = r.expect("the retry was answered within 10 s");
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
    use strata_client::{NewTopic, ProducerConfig, ProducerRecord};

    const RECORDS: u32 = 3000;
    let mut cluster = Cluster::start(3);
    let c = cluster.client().await;
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

    common::cluster::read_back(&c, "load", 3, RECORDS as usize).await;
}

/// Anyone who can reach a broker's port can send RaftMessages. Messages no correct peer sends
/// (which make raft-rs panic or would mislead it) are dropped, and the cluster keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_raft_messages_do_not_break_a_broker() {
    use futures::SinkExt;
    use protobuf::Message as _;
    use raft::eraftpb::{ConfState, Entry, Message, MessageType, Snapshot};
    use strata_protocol::codec::OutgoingRequest;
    use strata_protocol::frame::RequestHeader;

    let cluster = Cluster::start(3);
    let mut c = Client::connect(cluster.addrs[0]).await;
    assert_eq!(create(&mut c, "target", 1, 3).await.error, ErrorCode::None);
    let t = wait_metadata(&mut c, "target", "a leader", all_led).await;
    let leader = t.partitions[0].leader;
    let follower = (1..=3).find(|&n| n != leader).unwrap();

    let msg = |kind: MessageType, from: u64, to: u64, term: u64| {
        let mut m = Message::default();
        m.set_msg_type(kind);
        (m.from, m.to, m.term) = (from, to, term);
        m
    };
    let entry = |index: u64, term: u64| Entry {
        index,
        term,
        data: bytes::Bytes::from_static(b"not a batch"),
        ..Entry::default()
    };
    let mut forged = Vec::new();
    for to in [leader as u64, follower as u64] {
        let from = (1..=3u64).find(|&n| n != to).unwrap();
        let mut hb = msg(MessageType::MsgHeartbeat, from, to, 0);
        hb.commit = u64::MAX / 2;
        forged.push(hb.clone());
        hb.term = 1000;
        forged.push(hb);
        let mut app = msg(MessageType::MsgAppend, from, to, 1000);
        (app.index, app.log_term, app.commit) = (5, 0, 1 << 40);
        forged.push(app.clone());
        app.log_term = 1;
        app.entries = vec![entry(100, 1000)].into();
        forged.push(app);
        forged.push(msg(MessageType::MsgPropose, from, to, 1000));
        forged.push(msg(MessageType::MsgReadIndex, from, to, 1000));
        forged.push(msg(MessageType::MsgTimeoutNow, from, to, 1000));
        let mut ack = msg(MessageType::MsgAppendResponse, from, to, 1);
        ack.index = 1 << 40;
        forged.push(ack);
        let mut snap = msg(MessageType::MsgSnapshot, from, to, 1000);
        let mut s = Snapshot {
            data: bytes::Bytes::from_static(&[0; 8]),
            ..Snapshot::default()
        };
        s.mut_metadata().index = 1 << 30;
        s.mut_metadata().term = 1000;
        s.mut_metadata().set_conf_state(ConfState {
            voters: vec![to],
            learners: vec![to],
            ..ConfState::default()
        });
        snap.set_snapshot(s);
        forged.push(snap);
        // From a node that is not a replica, and to a node that is not this one.
        forged.push(msg(MessageType::MsgHeartbeat, 99, to, 1000));
        forged.push(msg(MessageType::MsgHeartbeat, from, 99, 1000));
    }
    for m in forged {
        let (to, from) = (m.to, m.from);
        let mut raw = Client::connect(cluster.addr_of(to.min(3) as i32)).await;
        let body = Request::RaftMessages(RaftMessagesRequest {
            from_node: from,
            to_node: to,
            messages: vec![
                RaftMessage {
                    topic: "target".into(),
                    partition: 0,
                    topic_id: 0,
                    message: bytes::Bytes::from_static(b"\xff\xff garbage"),
                },
                RaftMessage {
                    topic: "target".into(),
                    partition: 0,
                    topic_id: t_id(&cluster).await,
                    message: m.write_to_bytes().unwrap().into(),
                },
                RaftMessage {
                    topic: "__cluster_metadata".into(),
                    partition: 0,
                    topic_id: 0,
                    message: m.write_to_bytes().unwrap().into(),
                },
            ],
        });
        let header = RequestHeader {
            api_key: ApiKey::RaftMessages as i16,
            api_version: 0,
            correlation_id: 1,
            client_id: None,
        };
        raw.framed.send(OutgoingRequest { header, body }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Still one healthy cluster: writes commit, nothing failed, and the metadata group works.
    let mut meta = Client::connect(cluster.addrs[1]).await;
    let acked = produce_acked(&cluster, &mut meta, "target", 0, 20).await;
    assert_eq!(acked.len(), 20);
    assert_eq!(read_all(&cluster, &mut meta, "target").await, acked);
    assert_eq!(create(&mut meta, "after", 1, 3).await.error, ErrorCode::None);
    for b in cluster.brokers.iter().flatten() {
        let text = strata_testkit::http::get(b.http, "/metrics").unwrap().body;
        assert!(
            text.contains("\nstrata_partitions_failed 0\n"),
            "a replica failed:\n{}",
            b.logs()
        );
    }
}

/// The topic id of `target` (the index of its creation in the metadata log), read from a
/// partition directory's marker (the admin API does not show it).
async fn t_id(cluster: &Cluster) -> u64 {
    let path = cluster.dirs[0].path().join("data/partitions/target-0/topic-id");
    let raw = strata_storage::durable::read(&path)
        .unwrap()
        .expect("a topic id marker");
    String::from_utf8(raw).unwrap().trim().parse().unwrap()
}

/// After a failover, leadership goes back to the preferred replica (the first of the replica
/// set) once it has caught up, by Raft leadership transfer; nothing acknowledged is lost on the
/// way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_returns_to_the_preferred_replica_after_a_failover() {
    let mut cluster = Cluster::start(3);
    let mut meta = Client::connect(cluster.addrs[0]).await;
    assert_eq!(create(&mut meta, "pref", 1, 3).await.error, ErrorCode::None);
    let t = wait_metadata(&mut meta, "pref", "the preferred leader", |t| {
        all_led(t) && t.partitions[0].leader == t.partitions[0].replicas[0]
    })
    .await;
    let preferred = t.partitions[0].replicas[0];
    let mut acked = produce_acked(&cluster, &mut meta, "pref", 0, 50).await;

    cluster.kill9(preferred as usize - 1);
    let alive = (1..=3).find(|&n| n != preferred).unwrap();
    let mut meta = Client::connect(cluster.addr_of(alive)).await;
    wait_metadata(&mut meta, "pref", "a stand-in leader", |t| {
        all_led(t) && t.partitions[0].leader != preferred
    })
    .await;
    acked.extend(produce_acked(&cluster, &mut meta, "pref", 50, 50).await);

    cluster.restart(preferred as usize - 1);
    let started = Instant::now();
    loop {
        let t = meta.metadata("pref").await;
        if all_led(&t) && t.partitions[0].leader == preferred {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "leadership did not return to {preferred}: {t:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("leadership returned {:?} after the restart", started.elapsed());
    acked.extend(produce_acked(&cluster, &mut meta, "pref", 100, 50).await);
    assert_eq!(read_all(&cluster, &mut meta, "pref").await, acked);

    // SIGTERM of the leader hands leadership over before it exits; nothing is lost. (Leading
    // right before the signal: on a loaded machine an election may have moved it meanwhile,
    // and it returns to the preferred replica.)
    wait_metadata(&mut meta, "pref", "the preferred leader again", |t| {
        all_led(t) && t.partitions[0].leader == preferred
    })
    .await;
    let leader = cluster.brokers[preferred as usize - 1].take().unwrap();
    let started = Instant::now();
    assert!(leader.sigterm_and_wait().success());
    let mut meta = Client::connect(cluster.addr_of(alive)).await;
    let t = wait_metadata(&mut meta, "pref", "a leader after SIGTERM", |t| {
        all_led(t) && t.partitions[0].leader != preferred
    })
    .await;
    eprintln!(
        "broker {} leads {:?} after SIGTERM of the leader",
        t.partitions[0].leader,
        started.elapsed()
    );
    let log = std::fs::read_dir(cluster.dirs[preferred as usize - 1].path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(log.contains("handing leadership over before stopping"), "{log}");
    acked.extend(produce_acked(&cluster, &mut meta, "pref", 150, 20).await);
    assert_eq!(read_all(&cluster, &mut meta, "pref").await, acked);
}

/// Broker `i`'s `strata_raft_quiesced_groups` and `strata_raft_quiesces_total`, `None` if it is
/// not running. Panics if a running broker does not export them.
fn quiesced(cluster: &Cluster, i: usize) -> Option<(u64, u64)> {
    let b = cluster.brokers[i].as_ref()?;
    let text = tokio::task::block_in_place(|| strata_testkit::http::get(b.http, "/metrics"))
        .expect("GET /metrics")
        .body;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}")) as u64
    };
    Some((
        value("strata_raft_quiesced_groups"),
        value("strata_raft_quiesces_total"),
    ))
}

/// Waits until every running broker reports `want` quiesced groups, each having quiesced more
/// often than `before` says (the counters of an earlier look; empty: any).
async fn wait_quiesced(
    cluster: &Cluster,
    want: u64,
    before: &[Option<(u64, u64)>],
    what: &str,
) -> Vec<Option<(u64, u64)>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: Vec<Option<(u64, u64)>> = (0..cluster.brokers.len()).map(|i| quiesced(cluster, i)).collect();
        let done = seen.iter().enumerate().all(|(i, s)| {
            s.is_none_or(|(n, total)| {
                n == want
                    && before
                        .get(i)
                        .copied()
                        .flatten()
                        .is_none_or(|(_, earlier)| total > earlier)
            })
        });
        if done {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: quiesced groups per broker {seen:?}, want {want}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes record `n` to partition `n % partitions` for each `n` in `range` and waits for every
/// acknowledgement (`acks=all`).
async fn write_each(c: &strata_client::Client, topic: &str, partitions: u32, range: std::ops::Range<u32>) {
    use strata_client::{ProducerConfig, ProducerRecord};
    let producer = c.producer(ProducerConfig::default()).unwrap();
    let mut deliveries = Vec::new();
    for n in range {
        let rec = ProducerRecord::new(topic, n.to_string().into_bytes()).partition((n % partitions) as i32);
        deliveries.push(producer.enqueue(rec).await.unwrap());
    }
    producer.flush().await;
    for (i, d) in deliveries.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(60), d)
            .await
            .expect("delivery in time");
        assert!(r.is_ok(), "record {i} not acknowledged: {r:?}");
    }
    producer.close().await;
}

/// Idle partitions quiesce: once every replica has every entry, the leader sends one marked
/// heartbeat and then none, and no replica ticks the group. A write wakes the group; so does a
/// replica's broker dying: after `kill -9` of the broker leading partition 0, every partition
/// (idle ones included) elects a leader among the survivors and takes writes; groups with a
/// replica down stay awake; once the broker is back, everything quiesces again. A paused leader
/// (connections open, silent) is replaced too. Every record reads back once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_quiesce_and_wake_for_writes_and_failures() {
    use strata_client::NewTopic;
    const PARTITIONS: u32 = 6;
    let mut cluster = Cluster::start(3);
    let c = cluster.client().await;
    c.admin()
        .create_topic(NewTopic::new("quiet", PARTITIONS as i32, 3))
        .await
        .unwrap();
    let mut meta = Client::connect(cluster.addrs[0]).await;
    wait_metadata(&mut meta, "quiet", "leaders", all_led).await;
    // Every replica of every partition (the metadata group never quiesces).
    let seen = wait_quiesced(&cluster, u64::from(PARTITIONS), &[], "after creation").await;

    write_each(&c, "quiet", PARTITIONS, 0..PARTITIONS).await;
    wait_quiesced(
        &cluster,
        u64::from(PARTITIONS),
        &seen,
        "after a write to each partition",
    )
    .await;

    let t = wait_metadata(&mut meta, "quiet", "leaders", all_led).await;
    let victim = t.partitions[0].leader as usize - 1;
    cluster.kill9(victim);
    let killed = Instant::now();
    write_each(&c, "quiet", PARTITIONS, PARTITIONS..2 * PARTITIONS).await;
    eprintln!(
        "every partition took a write {:?} after kill -9 of broker {}",
        killed.elapsed(),
        victim + 1
    );
    // Every group has a replica on the dead broker: none quiesces without it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_quiesced(&cluster, 0, &[], "with a replica's broker down").await;

    cluster.restart(victim);
    wait_quiesced(&cluster, u64::from(PARTITIONS), &[], "after the restart").await;

    // A paused (not killed) broker keeps its connections open: the followers of the quiesced
    // partitions it leads notice only its silence, then elect leaders among themselves.
    let mut meta = Client::connect(cluster.addrs[victim]).await;
    let t = wait_metadata(&mut meta, "quiet", "leaders", all_led).await;
    let paused = t.partitions[0].leader;
    let mut watch = Client::connect(cluster.addrs[paused as usize % 3]).await;
    let pid = cluster.brokers[paused as usize - 1].as_ref().expect("running").pid() as i32;
    // SAFETY: signals to our own live child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Instant::now();
    loop {
        let t = watch.metadata("quiet").await;
        if t.partitions.iter().all(|p| p.leader > 0 && p.leader != paused) {
            break;
        }
        if stopped.elapsed() > Duration::from_secs(30) {
            unsafe { libc::kill(pid, libc::SIGCONT) };
            panic!("partitions still led by paused broker {paused}: {t:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "every partition led elsewhere {:?} after SIGSTOP of broker {paused}",
        stopped.elapsed()
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    write_each(&c, "quiet", PARTITIONS, 2 * PARTITIONS..3 * PARTITIONS).await;
    common::cluster::read_back(&c, "quiet", PARTITIONS, 3 * PARTITIONS as usize).await;
}
