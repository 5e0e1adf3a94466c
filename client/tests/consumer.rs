//! The consumer against a fake broker: seeking, skipping, control batches, long-poll,
//! prefetch, corrupt batches, offset resets, streams.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::FakeBroker;
use futures::StreamExt;
use strata_client::protocol::api::ApiKey;
use strata_client::protocol::{Compression, ErrorCode, Offset};
use strata_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Error, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, Seek, TopicPartition,
};

struct Setup {
    broker: FakeBroker,
    client: Client,
    producer: Producer,
}

async fn setup(partitions: usize) -> Setup {
    let (broker, client) = common::topic_t_and_client(partitions).await;
    let producer = client
        .producer(ProducerConfig {
            linger: Duration::from_millis(20),
            ..ProducerConfig::default()
        })
        .unwrap();
    Setup {
        broker,
        client,
        producer,
    }
}

fn config() -> ConsumerConfig {
    ConsumerConfig {
        fetch_max_wait: Duration::from_millis(100),
        retry_backoff: Duration::from_millis(10),
        ..ConsumerConfig::default()
    }
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

/// Produces `values` to partition 0 as one batch.
async fn produce(producer: &Producer, values: impl IntoIterator<Item = String>) {
    let mut deliveries = Vec::new();
    for v in values {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("t", v).partition(0))
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    for d in deliveries {
        d.await.unwrap();
    }
}

async fn poll_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} records",
            out.len()
        );
        out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

fn offsets(records: &[ConsumerRecord]) -> Vec<u64> {
    records.iter().map(|r| r.offset.0).collect()
}

fn value(r: &ConsumerRecord) -> &[u8] {
    r.value.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn reads_from_the_earliest_offset_in_order() {
    let s = setup(1).await;
    produce(&s.producer, (0..10).map(|i| format!("v{i}"))).await;
    let mut c = s.client.consumer(config()).unwrap();
    c.assign([tp(0)]);
    assert_eq!(c.seek(&tp(0), Seek::Earliest).await.unwrap(), 0);
    let records = poll_n(&mut c, 10).await;
    assert_eq!(offsets(&records), (0..10).collect::<Vec<_>>());
    assert_eq!(value(&records[3]), b"v3");
    assert_eq!(&*records[0].topic, "t");
    assert_eq!(c.position(&tp(0)), Some(10));
    assert_eq!(c.high_watermark(&tp(0)), Some(10));
}

#[tokio::test]
async fn seeking_into_a_batch_skips_the_records_before_the_offset() {
    let s = setup(1).await;
    produce(&s.producer, (0..10).map(|i| format!("v{i}"))).await;
    assert_eq!(
        s.broker.with(|st| st.topics["t"].partitions[0].batches.len()),
        1,
        "one batch"
    );
    let mut c = s.client.consumer(config()).unwrap();
    c.assign([tp(0)]);
    c.seek(&tp(0), Seek::Offset(4)).await.unwrap();
    let records = poll_n(&mut c, 6).await;
    assert_eq!(offsets(&records), [4, 5, 6, 7, 8, 9]);
    assert_eq!(value(&records[0]), b"v4");
}

#[tokio::test]
async fn control_batches_are_skipped() {
    let s = setup(1).await;
    produce(&s.producer, (0..3).map(|i| format!("a{i}"))).await;
    s.broker.append_control("t", 0);
    produce(&s.producer, (0..2).map(|i| format!("b{i}"))).await;
    s.broker.append_control("t", 0);
    let mut c = s.client.consumer(config()).unwrap();
    c.assign([tp(0)]);
    c.seek(&tp(0), Seek::Earliest).await.unwrap();
    let records = poll_n(&mut c, 5).await;
    assert_eq!(offsets(&records), [0, 1, 2, 3, 4]);
    assert_eq!(value(&records[3]), b"b0");
    // Nothing more, and the trailing control batch does not make the consumer spin.
    assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    assert_eq!(c.position(&tp(0)), Some(5));
}

#[tokio::test]
async fn latest_waits_for_new_records_with_a_long_poll() {
    let s = setup(1).await;
    produce(&s.producer, (0..5).map(|i| format!("old{i}"))).await;
    let mut c = s.client.consumer(config()).unwrap();
    c.assign([tp(0)]);
    assert_eq!(c.seek(&tp(0), Seek::Latest).await.unwrap(), 5);
    assert!(c.poll(Duration::from_millis(150)).await.unwrap().is_empty());
    let producer = s.producer.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        producer.send(ProducerRecord::new("t", "new")).await.unwrap();
    });
    let records = poll_n(&mut c, 1).await;
    assert_eq!(offsets(&records), [5]);
    assert_eq!(value(&records[0]), b"new");
}

#[tokio::test]
async fn an_unpositioned_partition_follows_auto_offset_reset() {
    let s = setup(1).await;
    produce(&s.producer, (0..3).map(|i| format!("v{i}"))).await;
    let mut latest = s.client.consumer(config()).unwrap();
    latest.assign([tp(0)]);
    assert!(latest.poll(Duration::from_millis(150)).await.unwrap().is_empty());
    assert_eq!(latest.position(&tp(0)), Some(3));

    let mut earliest = s
        .client
        .consumer(ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..config()
        })
        .unwrap();
    earliest.assign([tp(0)]);
    assert_eq!(offsets(&poll_n(&mut earliest, 3).await), [0, 1, 2]);
}

#[tokio::test]
async fn out_of_range_resets_or_fails_as_configured() {
    let s = setup(1).await;
    produce(&s.producer, (0..3).map(|i| format!("v{i}"))).await;
    let mut c = s
        .client
        .consumer(ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..config()
        })
        .unwrap();
    c.assign([tp(0)]);
    c.seek(&tp(0), Seek::Offset(100)).await.unwrap();
    assert_eq!(offsets(&poll_n(&mut c, 3).await), [0, 1, 2], "reset to earliest");

    let mut strict = s
        .client
        .consumer(ConsumerConfig {
            auto_offset_reset: OffsetReset::Error,
            ..config()
        })
        .unwrap();
    strict.assign([tp(0)]);
    strict.seek(&tp(0), Seek::Offset(100)).await.unwrap();
    let mut result = Ok(Vec::new());
    for _ in 0..20 {
        result = strict.poll(Duration::from_millis(100)).await;
        if result.is_err() {
            break;
        }
    }
    let Err(e) = result else { panic!("no error") };
    assert_eq!(e.code(), Some(ErrorCode::OffsetOutOfRange), "{e}");
}

#[tokio::test]
async fn seek_by_timestamp_finds_the_first_record_at_or_after_it() {
    let s = setup(1).await;
    for (i, ts) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        s.producer
            .send(ProducerRecord::new("t", format!("v{i}")).timestamp(ts))
            .await
            .unwrap();
    }
    let mut c = s.client.consumer(config()).unwrap();
    c.assign([tp(0)]);
    assert_eq!(c.seek(&tp(0), Seek::Timestamp(1_500)).await.unwrap(), 1);
    let records = poll_n(&mut c, 2).await;
    assert_eq!(offsets(&records), [1, 2]);
    assert_eq!(records[0].timestamp, 2_000);
    assert_eq!(
        c.seek(&tp(0), Seek::Timestamp(9_999)).await.unwrap(),
        3,
        "none that late: the end"
    );
}

#[tokio::test]
async fn the_next_fetch_is_started_before_the_application_polls_again() {
    let s = setup(1).await;
    // Two batches, and a partition limit that returns one batch per fetch.
    produce(&s.producer, (0..50).map(|i| format!("first-{i:03}"))).await;
    produce(&s.producer, (0..50).map(|i| format!("second-{i:03}"))).await;
    let mut c = s
        .client
        .consumer(ConsumerConfig {
            partition_max_bytes: 100,
            ..config()
        })
        .unwrap();
    c.assign([tp(0)]);
    c.seek(&tp(0), Seek::Earliest).await.unwrap();
    let first = poll_n(&mut c, 1).await;
    assert_eq!(first.len(), 50, "one batch per fetch");
    let fetches = s.broker.count(ApiKey::Fetch);
    // The application is "busy": no poll. The second batch is fetched meanwhile.
    assert!(
        common::eventually(Duration::from_secs(5), || s.broker.count(ApiKey::Fetch) > fetches).await,
        "prefetch"
    );
    let second = tokio::time::timeout(Duration::from_millis(50), c.poll(Duration::ZERO))
        .await
        .expect("already buffered")
        .unwrap();
    assert_eq!(offsets(&second), (50..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_corrupt_batch_is_reported_after_the_good_ones() {
    let s = setup(1).await;
    produce(&s.producer, (0..3).map(|i| format!("good{i}"))).await;
    produce(&s.producer, (0..3).map(|i| format!("bad{i}"))).await;
    s.broker.corrupt_last_batch("t", 0);
    let mut c = s.client.consumer(config()).unwrap();
    c.assign([tp(0)]);
    c.seek(&tp(0), Seek::Earliest).await.unwrap();
    let mut records = Vec::new();
    let error = loop {
        match c.poll(Duration::from_millis(200)).await {
            Ok(r) => records.extend(r),
            Err(e) => break e,
        }
    };
    assert_eq!(offsets(&records), [0, 1, 2]);
    let Error::CorruptBatch {
        topic,
        partition,
        offset,
        ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!((topic.as_str(), *partition, *offset), ("t", 0, 3));
    assert_eq!(c.position(&tp(0)), Some(3), "stays at the bad batch");
    // The caller can skip it.
    c.seek(&tp(0), Seek::Offset(6)).await.unwrap();
    assert!(c.poll(Duration::from_millis(100)).await.unwrap().is_empty());
}

#[tokio::test]
async fn compressed_batches_from_several_partitions_stream_in() {
    let broker = FakeBroker::start().await;
    broker.create_topic("t", 3);
    let client = Client::connect(ClientConfig::new(&broker.bootstrap())).await.unwrap();
    let producer = client
        .producer(ProducerConfig {
            compression: Compression::Zstd,
            ..ProducerConfig::default()
        })
        .unwrap();
    for i in 0..30 {
        producer
            .send(ProducerRecord::new("t", format!("v{i}")).key(format!("k{i}")))
            .await
            .unwrap();
    }
    let mut c = client.consumer(config()).unwrap();
    let assigned = c.assign_topic("t").await.unwrap();
    assert_eq!(assigned, [tp(0), tp(1), tp(2)]);
    c.seek_all(Seek::Earliest).await.unwrap();
    let records: Vec<ConsumerRecord> = c.into_stream().take(30).map(|r| r.unwrap()).collect().await;
    let mut values: Vec<Bytes> = records.iter().filter_map(|r| r.value.clone()).collect();
    values.sort();
    let mut expected: Vec<Bytes> = (0..30).map(|i| Bytes::from(format!("v{i}"))).collect();
    expected.sort();
    assert_eq!(values, expected);
    for p in 0..3 {
        let o: Vec<Offset> = records.iter().filter(|r| r.partition == p).map(|r| r.offset).collect();
        assert!(o.windows(2).all(|w| w[0] < w[1]), "partition {p} in order");
    }
}

#[tokio::test]
async fn seek_on_an_unassigned_partition_is_an_error() {
    let s = setup(1).await;
    let mut c = s.client.consumer(config()).unwrap();
    let r = c.seek(&tp(0), Seek::Earliest).await;
    assert!(matches!(r, Err(Error::NotAssigned { partition: 0, .. })), "{r:?}");
    c.assign([tp(0)]);
    c.assign(Vec::new());
    assert!(c.assignment().is_empty());
}

#[tokio::test]
async fn the_stream_borrows_and_positions_survive_it() {
    let s = setup(1).await;
    produce(&s.producer, (0..4).map(|i| format!("v{i}"))).await;
    let mut c = s.client.consumer(config()).unwrap();
    c.assign([tp(0)]);
    c.seek(&tp(0), Seek::Earliest).await.unwrap();
    {
        let stream = c.stream();
        let first: Vec<_> = stream.take(2).collect().await;
        assert_eq!(first.len(), 2);
    }
    assert_eq!(c.position(&tp(0)), Some(2));
    assert_eq!(offsets(&poll_n(&mut c, 2).await), [2, 3]);
}

/// One partition at leader term 5 holding v0..v4, and a consumer with `config` assigned to it.
async fn five_records_at_term_5(config: ConsumerConfig) -> (Setup, Consumer) {
    let s = setup(1).await;
    s.broker
        .with(|st| st.topics.get_mut("t").unwrap().partitions[0].leader_term = 5);
    produce(&s.producer, (0..5).map(|i| format!("v{i}"))).await;
    let mut c = s.client.consumer(config).unwrap();
    c.assign([tp(0)]);
    (s, c)
}

#[tokio::test]
async fn a_deposed_leader_is_not_read_from() {
    let (s, mut c) = five_records_at_term_5(config()).await;
    c.seek(&tp(0), Seek::Earliest).await.unwrap();
    assert_eq!(offsets(&poll_n(&mut c, 5).await), (0..5).collect::<Vec<_>>());

    // The partition's replica now answers as a leader of an older term (deposed, not knowing
    // yet): the consumer was served at term 5, so it reads nothing there and its high
    // watermark stays.
    s.broker
        .with(|st| st.topics.get_mut("t").unwrap().partitions[0].leader_term = 3);
    produce(&s.producer, (5..10).map(|i| format!("v{i}"))).await;
    let fetches = |b: &FakeBroker| b.with(|st| st.requests.iter().filter(|k| **k == ApiKey::Fetch as i16).count());
    let before = fetches(&s.broker);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < deadline {
        assert!(c.poll(Duration::from_millis(100)).await.unwrap().is_empty());
    }
    assert!(fetches(&s.broker) > before + 1, "the consumer keeps asking");
    assert_eq!(c.high_watermark(&tp(0)), Some(5));

    // The new leader (a later term) serves it.
    s.broker
        .with(|st| st.topics.get_mut("t").unwrap().partitions[0].leader_term = 6);
    assert_eq!(offsets(&poll_n(&mut c, 5).await), (5..10).collect::<Vec<_>>());
    assert_eq!(c.high_watermark(&tp(0)), Some(10));
}

/// `config()` following a partition's new terms after half a second of refusals.
fn resetting_config() -> ConsumerConfig {
    ConsumerConfig {
        leader_term_reset_after: Duration::from_millis(500),
        ..config()
    }
}

#[tokio::test]
async fn a_consumer_follows_a_recreated_topics_lower_terms() {
    let (s, mut c) = five_records_at_term_5(resetting_config()).await;
    c.seek(&tp(0), Seek::Earliest).await.unwrap();
    assert_eq!(offsets(&poll_n(&mut c, 5).await), (0..5).collect::<Vec<_>>());
    // The terms start over for good (the topic was re-created): refused at first, then
    // followed once refusals outlast `leader_term_reset_after`.
    s.broker
        .with(|st| st.topics.get_mut("t").unwrap().partitions[0].leader_term = 1);
    produce(&s.producer, (5..8).map(|i| format!("v{i}"))).await;
    assert_eq!(offsets(&poll_n(&mut c, 3).await), (5..8).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_seek_follows_a_recreated_topics_lower_terms() {
    let (s, mut c) = five_records_at_term_5(resetting_config()).await;
    assert_eq!(c.seek(&tp(0), Seek::Latest).await.unwrap(), 5);
    // No polls, so no fetches: the seeks alone must notice that the terms started over. The
    // first is refused throughout its retries; the next, past `leader_term_reset_after`,
    // follows the new terms.
    s.broker
        .with(|st| st.topics.get_mut("t").unwrap().partitions[0].leader_term = 1);
    let refused = c.seek(&tp(0), Seek::Latest).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::UnknownLeaderEpoch), "{refused}");
    assert_eq!(c.seek(&tp(0), Seek::Earliest).await.unwrap(), 0);
}

#[tokio::test]
async fn a_deposed_leader_does_not_answer_a_seek() {
    let (s, mut c) = five_records_at_term_5(config()).await;
    // The seek itself learns the term: a fresh consumer was served at term 5 by ListOffsets.
    assert_eq!(c.seek(&tp(0), Seek::Latest).await.unwrap(), 5);
    // Now a deposed leader (term 3, with a shorter log) answers: a seek to the latest offset is
    // refused there and retried until the leader of a later term answers.
    s.broker.with(|st| {
        let p = &mut st.topics.get_mut("t").unwrap().partitions[0];
        p.leader_term = 3;
        p.next_offset = 4;
    });
    let restore = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.broker.with(|st| {
            let p = &mut st.topics.get_mut("t").unwrap().partitions[0];
            p.leader_term = 6;
            p.next_offset = 5;
        });
    };
    let started = tokio::time::Instant::now();
    let tp0 = tp(0);
    let (sought, ()) = tokio::join!(c.seek(&tp0, Seek::Latest), restore);
    assert_eq!(sought.unwrap(), 5, "never the deposed leader's 4");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered only after the new leader"
    );
    // And the consumer now holds term 6: term 5 is refused as deposed too.
    s.broker
        .with(|st| st.topics.get_mut("t").unwrap().partitions[0].leader_term = 5);
    let seek = tokio::time::timeout(Duration::from_millis(300), c.seek(&tp(0), Seek::Earliest)).await;
    assert!(
        seek.is_err(),
        "a term-5 replica answered a consumer served at term 6: {seek:?}"
    );
}
