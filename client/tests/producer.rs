//! The producer against a fake broker: offsets, batching, compression, retries without
//! reordering, errors, acks, back-pressure, partitioning, close.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::FakeBroker;
use strata_client::protocol::api::{ApiKey, ConfigEntry};
use strata_client::protocol::batch::BatchHeader;
use strata_client::protocol::{Compression, ErrorCode, Offset};
use strata_client::{Acks, Client, ClientConfig, Error, KeylessStrategy, Producer, ProducerConfig, ProducerRecord};

async fn setup(partitions: usize, config: ProducerConfig) -> (FakeBroker, Producer) {
    let (broker, client) = common::topic_t_and_client(partitions).await;
    let producer = client.producer(config).unwrap();
    (broker, producer)
}

fn fast() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(1),
        retry_backoff: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(50),
        delivery_timeout: Duration::from_secs(10),
        ..ProducerConfig::default()
    }
}

fn values(broker: &FakeBroker, partition: usize) -> Vec<Bytes> {
    broker
        .records("t", partition)
        .into_iter()
        .filter_map(|(_, v)| v)
        .collect()
}

#[tokio::test]
async fn send_resolves_to_partition_and_offset() {
    let (broker, producer) = setup(1, fast()).await;
    for i in 0..3u64 {
        let meta = producer.send(ProducerRecord::new("t", format!("v{i}"))).await.unwrap();
        assert_eq!(&*meta.topic, "t");
        assert_eq!(meta.partition, 0);
        assert_eq!(meta.offset, Some(Offset(i)));
    }
    assert_eq!(values(&broker, 0), ["v0", "v1", "v2"]);
    producer.close().await;
}

#[tokio::test]
async fn records_within_linger_share_one_request_and_one_batch() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            linger: Duration::from_millis(200),
            ..fast()
        },
    )
    .await;
    let mut deliveries = Vec::new();
    for i in 0..50 {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("t", format!("r{i}")))
                .await
                .unwrap(),
        );
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, Some(Offset(i as u64)));
    }
    let log = broker.with(|s| s.produce_log.clone());
    assert_eq!(log, [vec![("t".to_owned(), 0, 1)]], "one request, one batch");
}

#[tokio::test]
async fn a_full_batch_goes_without_waiting_for_linger() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            batch_size: 1024,
            linger: Duration::from_secs(30),
            ..fast()
        },
    )
    .await;
    // 200-byte records: four fill a 1 KiB batch; the fifth opens the next one.
    let batches = send_200_byte_records(&producer, &broker, 5, 0, "not held for linger").await;
    assert!(batches >= 2, "{batches}");
    assert_eq!(values(&broker, 0).len(), 5);
}

/// Enqueues `n` records of 200 B to partition 0 of "t" with linger far away: the first, at
/// `offset`, must be acknowledged within 5 s (its batch filled, `why` otherwise), the rest once
/// flushed. Returns how many batches the broker received in all.
async fn send_200_byte_records(producer: &Producer, broker: &FakeBroker, n: usize, offset: u64, why: &str) -> usize {
    let value = vec![b'x'; 200];
    let mut deliveries = Vec::new();
    for _ in 0..n {
        deliveries.push(producer.enqueue(ProducerRecord::new("t", value.clone())).await.unwrap());
    }
    let first = deliveries.remove(0);
    let meta = tokio::time::timeout(Duration::from_secs(5), first).await.expect(why);
    assert_eq!(meta.unwrap().offset, Some(Offset(offset)));
    producer.flush().await;
    for d in deliveries {
        d.await.unwrap();
    }
    broker.with(|s| s.produce_log.iter().flatten().map(|(_, _, n)| n).sum())
}

#[tokio::test]
async fn compressed_batches_round_trip() {
    for compression in [Compression::Lz4, Compression::Zstd] {
        let (broker, producer) = setup(
            1,
            ProducerConfig {
                compression,
                linger: Duration::from_millis(50),
                ..fast()
            },
        )
        .await;
        let mut deliveries = Vec::new();
        for i in 0..100 {
            let record = ProducerRecord::new("t", format!("compressible value number {i}")).header("h", "x");
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
        for d in deliveries {
            d.await.unwrap();
        }
        let expected: Vec<String> = (0..100).map(|i| format!("compressible value number {i}")).collect();
        assert_eq!(values(&broker, 0), expected);
        let stored = broker.with(|s| s.topics["t"].partitions[0].batches.clone());
        for b in stored {
            let h = BatchHeader::parse(&b).unwrap();
            assert_eq!(h.attributes.compression().unwrap(), compression);
        }
    }
}

#[tokio::test]
async fn a_retriable_error_is_retried_without_reordering() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            batch_size: 256,
            max_request_size: 512,
            ..fast()
        },
    )
    .await;
    broker.with(|s| {
        s.produce_errors
            .extend([ErrorCode::NotLeader, ErrorCode::RequestTimedOut]);
        // Slow acks, so records pile up behind the failing send.
        s.produce_delay = Duration::from_millis(30);
    });
    let metadata_before = broker.count(ApiKey::Metadata);
    let mut deliveries = Vec::new();
    for i in 0..60 {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("t", format!("{i:03}")))
                .await
                .unwrap(),
        );
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = d.await.unwrap();
        assert_eq!(meta.offset, Some(Offset(i as u64)), "record {i}");
    }
    let expected: Vec<String> = (0..60).map(|i| format!("{i:03}")).collect();
    assert_eq!(values(&broker, 0), expected, "log order is enqueue order");
    assert!(broker.count(ApiKey::Produce) >= 3, "two failures, then success");
    assert!(
        broker.count(ApiKey::Metadata) > metadata_before,
        "NOT_LEADER refreshes metadata"
    );
}

#[tokio::test]
async fn not_leader_moves_the_partition_to_the_leader_the_metadata_names() {
    let a = FakeBroker::start_node(1).await;
    let b = FakeBroker::start_node(2).await;
    let node = |id: i32, broker: &FakeBroker| strata_client::protocol::api::BrokerMetadata {
        node_id: id,
        host: "127.0.0.1".into(),
        port: i32::from(broker.addr.port()),
    };
    for (this, other_id, other) in [(&a, 2, &b), (&b, 1, &a)] {
        this.create_topic("t", 1);
        this.with(|s| s.peers.push(node(other_id, other)));
    }
    let client = Client::connect(ClientConfig::new(&a.bootstrap())).await.unwrap();
    let producer = client.producer(fast()).unwrap();
    assert_eq!(
        producer.send(ProducerRecord::new("t", "on a")).await.unwrap().offset,
        Some(Offset(0))
    );
    // Leadership moves to node 2: a answers NOT_LEADER and both now say so in metadata.
    for broker in [&a, &b] {
        broker.with(|s| {
            s.leaders.insert(("t".into(), 0), 2);
        });
    }
    a.with(|s| s.produce_errors.push_back(ErrorCode::NotLeader));
    let meta = producer.send(ProducerRecord::new("t", "on b")).await.unwrap();
    assert_eq!(meta.offset, Some(Offset(0)), "b's log");
    assert_eq!(values(&b, 0), ["on b"]);
    assert_eq!(values(&a, 0), ["on a"]);
}

#[tokio::test]
async fn a_non_retriable_error_fails_the_records_and_later_sends_go_on() {
    let (broker, producer) = setup(1, fast()).await;
    broker.with(|s| s.produce_errors.push_back(ErrorCode::MessageTooLarge));
    let r = producer
        .send(ProducerRecord::new("t", "too big, says the broker"))
        .await;
    let Err(Error::Partition {
        topic,
        partition,
        code,
        message,
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!((topic.as_str(), partition, code), ("t", 0, ErrorCode::MessageTooLarge));
    assert!(message.unwrap().contains("injected"));
    assert_eq!(broker.count(ApiKey::Produce), 1, "not retried");
    let ok = producer.send(ProducerRecord::new("t", "fine")).await.unwrap();
    assert_eq!(ok.offset, Some(Offset(0)));
}

#[tokio::test]
async fn retries_are_bounded() {
    let (broker, producer) = setup(1, ProducerConfig { retries: 2, ..fast() }).await;
    broker.with(|s| s.produce_errors.extend([ErrorCode::NotEnoughReplicas; 5]));
    let r = producer.send(ProducerRecord::new("t", "x")).await;
    assert!(
        matches!(&r, Err(e) if e.code() == Some(ErrorCode::NotEnoughReplicas)),
        "{r:?}"
    );
    assert_eq!(broker.count(ApiKey::Produce), 3, "first attempt and two retries");
}

#[tokio::test]
async fn a_partition_without_leader_times_out_after_delivery_timeout() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            delivery_timeout: Duration::from_millis(300),
            ..fast()
        },
    )
    .await;
    broker.with(|s| s.topics.get_mut("t").unwrap().partitions[0].leaderless = true);
    let started = Instant::now();
    let r = producer.send(ProducerRecord::new("t", "x").partition(0)).await;
    assert!(matches!(r, Err(Error::Timeout { what: "delivery", .. })), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(300) && started.elapsed() < Duration::from_secs(5));
    assert_eq!(broker.count(ApiKey::Produce), 0, "nothing sent without a leader");
    assert!(
        broker.count(ApiKey::Metadata) >= 2,
        "metadata refreshed while waiting for a leader"
    );
}

#[tokio::test]
async fn acks_none_resolves_without_offsets() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            acks: Acks::None,
            idempotence: false,
            ..fast()
        },
    )
    .await;
    let meta = producer
        .send(ProducerRecord::new("t", "fire and forget"))
        .await
        .unwrap();
    assert_eq!(meta.offset, None);
    assert!(common::eventually(Duration::from_secs(5), || broker.records("t", 0).len() == 1).await);
}

#[tokio::test]
async fn keys_hash_to_kafka_compatible_partitions() {
    let (_broker, producer) = setup(12, fast()).await;
    for (key, partition) in [("foobar", 6), ("21", 0), ("abc", 3)] {
        let meta = producer.send(ProducerRecord::new("t", "v").key(key)).await.unwrap();
        assert_eq!(meta.partition, partition, "key {key}");
    }
}

#[tokio::test]
async fn round_robin_spreads_keyless_records() {
    let (_broker, producer) = setup(
        3,
        ProducerConfig {
            keyless: KeylessStrategy::RoundRobin,
            ..fast()
        },
    )
    .await;
    let mut partitions = Vec::new();
    for _ in 0..6 {
        partitions.push(producer.send(ProducerRecord::new("t", "v")).await.unwrap().partition);
    }
    assert_eq!(partitions, [0, 1, 2, 0, 1, 2]);
}

#[tokio::test]
async fn bad_records_and_topics_are_refused_up_front() {
    let (_broker, producer) = setup(2, fast()).await;
    let r = producer.send(ProducerRecord::new("missing", "v")).await;
    assert!(matches!(r, Err(Error::UnknownTopic(ref t)) if t == "missing"), "{r:?}");
    let r = producer.send(ProducerRecord::new("t", "v").partition(7)).await;
    assert!(
        matches!(
            r,
            Err(Error::UnknownPartition {
                partition: 7,
                partition_count: 2,
                ..
            })
        ),
        "{r:?}"
    );
    let r = producer.send(ProducerRecord::new("t", vec![0u8; 2 << 20])).await;
    assert!(
        matches!(
            r,
            Err(Error::RecordTooLarge {
                limit: "max_request_size",
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn enqueue_waits_when_buffer_memory_is_used_up() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            batch_size: 2048,
            buffer_memory: 4096,
            ..fast()
        },
    )
    .await;
    broker.with(|s| s.produce_delay = Duration::from_millis(300));
    let value = vec![7u8; 1000];
    let mut deliveries = Vec::new();
    // Fill the budget (each record reserves a bit over 1000 bytes).
    for _ in 0..3 {
        deliveries.push(producer.enqueue(ProducerRecord::new("t", value.clone())).await.unwrap());
    }
    let blocked = tokio::time::timeout(
        Duration::from_millis(100),
        producer.enqueue(ProducerRecord::new("t", value.clone())),
    )
    .await;
    assert!(blocked.is_err(), "enqueue waits while the budget is in use");
    // Once the slow broker acknowledges, memory comes back and enqueue proceeds.
    let d = tokio::time::timeout(
        Duration::from_secs(5),
        producer.enqueue(ProducerRecord::new("t", value.clone())),
    )
    .await
    .expect("memory freed by the acknowledgement")
    .unwrap();
    deliveries.push(d);
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, Some(Offset(i as u64)));
    }
}

#[tokio::test]
async fn max_block_bounds_the_wait_for_memory() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            batch_size: 2048,
            buffer_memory: 2048,
            max_block: Duration::from_millis(100),
            ..fast()
        },
    )
    .await;
    broker.with(|s| s.silent.insert(ApiKey::Produce as i16));
    let _held = producer
        .enqueue(ProducerRecord::new("t", vec![0u8; 1500]))
        .await
        .unwrap();
    let r = producer.enqueue(ProducerRecord::new("t", vec![0u8; 1500])).await;
    assert!(
        matches!(
            r,
            Err(Error::Timeout {
                what: "buffer memory",
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn close_sends_what_is_buffered_and_refuses_more() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            linger: Duration::from_secs(30),
            ..fast()
        },
    )
    .await;
    let d = producer.enqueue(ProducerRecord::new("t", "last words")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), producer.close())
        .await
        .expect("close does not wait for linger");
    assert_eq!(d.await.unwrap().offset, Some(Offset(0)));
    assert_eq!(values(&broker, 0), ["last words"]);
    let r = producer.send(ProducerRecord::new("t", "too late")).await;
    assert!(matches!(r, Err(Error::ProducerClosed)), "{r:?}");
}

#[tokio::test]
async fn many_concurrent_senders_over_several_partitions() {
    let (broker, producer) = setup(
        4,
        ProducerConfig {
            keyless: KeylessStrategy::LeastLoaded,
            ..fast()
        },
    )
    .await;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let producer = producer.clone();
            tokio::spawn(async move {
                let mut deliveries = Vec::new();
                for i in 0..100 {
                    let record = ProducerRecord::new("t", format!("{t}-{i}")).key(format!("task-{t}"));
                    deliveries.push(producer.enqueue(record).await.unwrap());
                }
                let mut last = None;
                for d in deliveries {
                    let meta = d.await.unwrap();
                    // One key → one partition, offsets increasing in send order.
                    if let Some((p, o)) = last {
                        assert_eq!(p, meta.partition);
                        assert!(meta.offset.unwrap() > o);
                    }
                    last = Some((meta.partition, meta.offset.unwrap()));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total: usize = (0..4).map(|p| broker.records("t", p).len()).sum();
    assert_eq!(total, 800);
}

/// The batches the fake broker received for partition `p` of `t`: (producer id, epoch, base
/// sequence, record count).
fn produced(broker: &FakeBroker, p: i32) -> Vec<(i64, i16, i32, u32)> {
    broker.with(|s| {
        s.produced
            .iter()
            .filter(|b| b.topic == "t" && b.partition == p)
            .map(|b| (b.producer_id, b.producer_epoch, b.base_sequence, b.record_count))
            .collect()
    })
}

#[tokio::test]
async fn idempotent_batches_carry_the_producer_id_and_sequences_counting_records_per_partition() {
    let (broker, producer) = setup(
        2,
        ProducerConfig {
            batch_size: 256,
            ..fast()
        },
    )
    .await;
    let mut deliveries = Vec::new();
    for round in 0..4 {
        for i in 0..=round * 3 {
            for p in 0..2 {
                let record = ProducerRecord::new("t", format!("{round}-{i:02}-{p}")).partition(p);
                deliveries.push(producer.enqueue(record).await.unwrap());
            }
        }
        producer.flush().await;
    }
    for d in deliveries {
        d.await.unwrap();
    }
    assert_eq!(
        broker.count(ApiKey::InitProducerId),
        1,
        "one producer id for all partitions"
    );
    for p in 0..2 {
        let batches = produced(&broker, p);
        assert!(batches.len() >= 4, "{batches:?}");
        let mut next = 0;
        for &(id, epoch, base_sequence, count) in &batches {
            assert_eq!((id, epoch), (common::FIRST_PRODUCER_ID, 0));
            assert_eq!(base_sequence, next, "partition {p}: {batches:?}");
            next += i32::try_from(count).unwrap();
        }
        assert_eq!(next, 1 + 4 + 7 + 10, "every record counted once");
        assert_eq!(values(&broker, p as usize).len(), 22);
    }
}

#[tokio::test]
async fn a_retry_after_a_lost_response_reuses_the_sequence_and_is_not_appended_twice() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            linger: Duration::from_millis(20),
            ..fast()
        },
    )
    .await;
    // The broker appends the first produce request, then closes the connection unanswered.
    broker.with(|s| s.close_after_produce = 1);
    let mut deliveries = Vec::new();
    for v in ["a", "b", "c"] {
        deliveries.push(producer.enqueue(ProducerRecord::new("t", v)).await.unwrap());
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, Some(Offset(i as u64)), "the original offsets");
    }
    let id = common::FIRST_PRODUCER_ID;
    assert_eq!(
        produced(&broker, 0),
        [(id, 0, 0, 3), (id, 0, 0, 3)],
        "the retry is the same batch, same sequence"
    );
    assert_eq!(values(&broker, 0), ["a", "b", "c"], "appended once");
    // The partition goes on from there.
    let meta = producer.send(ProducerRecord::new("t", "d")).await.unwrap();
    assert_eq!(meta.offset, Some(Offset(3)));
    assert_eq!(produced(&broker, 0).last(), Some(&(id, 0, 3, 1)));
}

#[tokio::test]
async fn without_idempotence_a_retry_after_a_lost_response_duplicates_records() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            idempotence: false,
            ..fast()
        },
    )
    .await;
    broker.with(|s| s.close_after_produce = 1);
    producer.send(ProducerRecord::new("t", "twice")).await.unwrap();
    assert_eq!(broker.count(ApiKey::InitProducerId), 0);
    assert_eq!(produced(&broker, 0), [(-1, -1, -1, 1), (-1, -1, -1, 1)]);
    assert_eq!(values(&broker, 0), ["twice", "twice"]);
}

#[tokio::test]
async fn idempotence_needs_acks_all() {
    let (_broker, client) = common::topic_t_and_client(1).await;
    for acks in [Acks::Leader, Acks::None] {
        let r = client.producer(ProducerConfig { acks, ..fast() });
        let Err(Error::Config { key, reason }) = r else {
            panic!("{acks:?}: {r:?}")
        };
        assert_eq!(key, "idempotence");
        assert!(reason.contains("acks = all"), "{reason}");
        client
            .producer(ProducerConfig {
                acks,
                idempotence: false,
                ..fast()
            })
            .unwrap();
    }
    let default = client.producer(ProducerConfig::default()).unwrap();
    assert!(default.config().idempotence && default.config().acks == Acks::All);
}

#[tokio::test]
async fn a_refused_sequence_fails_the_batch_and_later_records_go_under_a_new_producer_id() {
    for (code, tamper) in [
        (
            ErrorCode::OutOfOrderSequenceNumber,
            // As if the broker had appended 10 more records from this producer: a gap.
            (|e: &mut common::ProducerEntry| e.last_sequence += 10) as fn(&mut common::ProducerEntry),
        ),
        // As if another instance with a newer epoch had written: fenced.
        (ErrorCode::InvalidProducerEpoch, |e| e.epoch = 5),
    ] {
        let (broker, producer) = setup(
            1,
            ProducerConfig {
                max_in_flight_per_partition: 5,
                ..fast()
            },
        )
        .await;
        producer.send(ProducerRecord::new("t", "first")).await.unwrap();
        broker.with(|s| {
            let entry = s.producers.get_mut(&("t".to_owned(), 0, common::FIRST_PRODUCER_ID));
            tamper(entry.expect("the broker tracks the producer"));
            // Slow answers, so records queue up behind the refused one.
            s.produce_delay = Duration::from_millis(100);
        });
        let refused = producer.enqueue(ProducerRecord::new("t", "refused")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let later = producer.enqueue(ProducerRecord::new("t", "later")).await.unwrap();
        let r = refused.await;
        assert!(
            matches!(&r, Err(e) if e.code() == Some(code) && !e.is_retriable()),
            "{r:?}"
        );
        assert_eq!(
            later.await.unwrap().offset,
            Some(Offset(1)),
            "{code}: later records go on"
        );
        assert_eq!(values(&broker, 0), ["first", "later"]);
        // first; refused; later, pipelined behind refused under the same id and refused too
        // (so it is not in the log); later again, under the new id. The refused
        // batch itself is not retried.
        assert_eq!(
            broker.count(ApiKey::Produce),
            4,
            "{code}: the refused batch is not retried"
        );
        assert_eq!(broker.count(ApiKey::InitProducerId), 2, "{code}: a new producer id");
        assert_eq!(
            produced(&broker, 0).last(),
            Some(&(common::FIRST_PRODUCER_ID + 1, 0, 0, 1)),
            "{code}: the new id starts at sequence 0"
        );
    }
}

#[tokio::test]
async fn init_producer_id_is_retried_while_the_broker_cannot_answer() {
    let (broker, producer) = setup(1, fast()).await;
    let init = ApiKey::InitProducerId as i16;
    broker.with(|s| s.reject.insert(init, ErrorCode::LeaderNotAvailable));
    let pending = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send(ProducerRecord::new("t", "waits for an id")).await }
    });
    assert!(common::eventually(Duration::from_secs(5), || broker.count(ApiKey::InitProducerId) >= 3).await);
    assert_eq!(broker.count(ApiKey::Produce), 0, "nothing sent without an id");
    broker.with(|s| s.reject.remove(&init));
    let meta = pending.await.unwrap().unwrap();
    assert_eq!(meta.offset, Some(Offset(0)));
    assert_eq!(produced(&broker, 0), [(common::FIRST_PRODUCER_ID, 0, 0, 1)]);
}

#[tokio::test]
async fn a_non_retriable_init_producer_id_error_fails_the_records() {
    let (broker, producer) = setup(1, fast()).await;
    broker.with(|s| {
        s.reject
            .insert(ApiKey::InitProducerId as i16, ErrorCode::InvalidRequest)
    });
    let r = producer.send(ProducerRecord::new("t", "x")).await;
    assert!(
        matches!(
            &r,
            Err(Error::Request {
                api: ApiKey::InitProducerId,
                code: ErrorCode::InvalidRequest,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(broker.count(ApiKey::InitProducerId), 1);
    assert_eq!(broker.count(ApiKey::Produce), 0);
}

#[tokio::test]
async fn pipelined_sends_keep_their_order_when_they_wait_for_a_producer_id_and_when_slow() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            max_in_flight_per_partition: 5,
            ..fast()
        },
    )
    .await;
    let init = ApiKey::InitProducerId as i16;
    broker.with(|s| {
        s.reject.insert(init, ErrorCode::LeaderNotAvailable);
        // Slow answers: several sends of the partition are in flight at once.
        s.produce_delay = Duration::from_millis(40);
    });
    let mut deliveries = Vec::new();
    for i in 0..60u32 {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("t", format!("{i}")))
                .await
                .unwrap(),
        );
        if i == 20 {
            broker.with(|s| s.reject.remove(&init));
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, Some(Offset(i as u64)), "record {i}");
    }
    let expected: Vec<Bytes> = (0..60u32).map(|i| Bytes::from(i.to_string())).collect();
    assert_eq!(values(&broker, 0), expected, "enqueue order");
    let batches = produced(&broker, 0);
    assert!(batches.len() > 2, "several sends: {batches:?}");
    let mut next = 0;
    for (_, _, base, count) in batches {
        assert_eq!(base, next, "sequences follow each other");
        next += count as i32;
    }
}

/// Sends one 1000-byte record to `t`, which fills a batch at a 1 KiB `max.message.bytes` on its
/// own, and checks it is acknowledged at `offset` well before any linger would end.
async fn send_full_batch(producer: &Producer, offset: u64, what: &str) {
    let alone = producer
        .enqueue(ProducerRecord::new("t", vec![b'y'; 1000]))
        .await
        .unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(5), alone).await.expect(what);
    assert_eq!(meta.unwrap().offset, Some(Offset(offset)));
}

#[tokio::test]
async fn a_topic_change_reaches_the_producer_with_the_next_metadata() {
    let (broker, client) = common::topic_t_and_client(1).await;
    let producer = client
        .producer(ProducerConfig {
            linger: Duration::from_secs(30),
            ..fast()
        })
        .unwrap();
    // Records to `t` while its metadata says nothing of a batch limit: held for linger. (The
    // first may look the topic up; the second takes the producer's shortcut.)
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            producer
                .enqueue(ProducerRecord::new("t", vec![b'x'; 1000]))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(broker.records("t", 0).is_empty(), "held for linger");
    producer.flush().await;
    for (i, d) in held.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, Some(Offset(i as u64)));
    }
    // The topic now takes batches of at most 1 KiB; once the client's metadata has it, the
    // producer's next record uses it (its per-topic shortcut does not outlive a refresh).
    broker.with(|s| {
        s.topics.get_mut("t").unwrap().configs = vec![ConfigEntry {
            key: "max.message.bytes".into(),
            value: "1024".into(),
        }]
    });
    client.refresh_metadata(Some(vec!["t".into()])).await.unwrap();
    send_full_batch(
        &producer,
        2,
        "a batch full at the refreshed limit is not held for linger",
    )
    .await;
}

#[tokio::test]
async fn the_producer_sees_a_topics_new_partitions_once_its_metadata_is_old() {
    let broker = FakeBroker::start().await;
    broker.create_topic("t", 1);
    let client = Client::connect(ClientConfig {
        request_timeout: Duration::from_secs(5),
        metadata_max_age: Duration::from_millis(300),
        ..ClientConfig::new(&broker.bootstrap())
    })
    .await
    .unwrap();
    let producer = client.producer(fast()).unwrap();
    let to = |p: i32| ProducerRecord::new("t", "v").partition(p);
    for _ in 0..2 {
        producer.enqueue(to(0)).await.unwrap().await.unwrap();
    }
    // A partition is added; nothing refreshes the metadata but its age. Until then partition 1
    // is unknown to the producer; once the metadata is older than metadata_max_age, known.
    broker.with(|s| s.topics.get_mut("t").unwrap().partitions.push(Default::default()));
    let early = producer.enqueue(to(1)).await;
    assert!(matches!(early, Err(Error::UnknownPartition { .. })), "{early:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let meta = producer.enqueue(to(1)).await.unwrap().await.unwrap();
    assert_eq!((meta.partition, meta.offset), (1, Some(Offset(0))));
}

#[tokio::test]
async fn batches_stay_within_the_topics_max_message_bytes() {
    let (broker, producer) = setup(
        1,
        ProducerConfig {
            linger: Duration::from_secs(30),
            ..fast()
        },
    )
    .await;
    // The topic takes batches of at most 1 KiB, far below the default batch size (256 KiB).
    broker.with(|s| {
        s.topics.get_mut("t").unwrap().configs = vec![ConfigEntry {
            key: "max.message.bytes".into(),
            value: "1024".into(),
        }]
    });
    // One record that fills a batch at the topic's limit on its own: sent without waiting for
    // linger (full at 1 KiB, not at the producer's 256 KiB).
    send_full_batch(&producer, 0, "a batch full at the topic's limit is not held for linger").await;
    // Batches fill at the topic's limit, so the first goes without waiting for linger.
    let batches = send_200_byte_records(&producer, &broker, 10, 1, "a full batch is not held for linger").await;
    assert!(batches >= 4, "1 + 10 records of 200 B in 1 KiB batches: {batches}");
    assert_eq!(values(&broker, 0).len(), 11);
}
