//! The bundled client library against the real `strata-broker` binary: keyed and keyless
//! production with compression and every acks level, consumption from earliest / timestamp,
//! admin, and the long poll waking a waiting consumer.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use strata_client::{
    Acks, Client, ClientConfig, Compression, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, Seek,
};
use strata_testkit::BrokerProcess;

mod common;
use common::BROKER;

async fn client(p: &BrokerProcess) -> Client {
    Client::connect(ClientConfig::new(&p.addr.to_string()))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_keep_their_order_per_key_and_come_back_intact() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let c = client(&broker).await;
    c.admin().create_topic(NewTopic::new("events", 4, 1)).await.unwrap();

    for (i, (acks, compression)) in [
        (Acks::All, Compression::Lz4),
        (Acks::Leader, Compression::Zstd),
        (Acks::All, Compression::None),
    ]
    .into_iter()
    .enumerate()
    {
        let producer = c
            .producer(ProducerConfig {
                acks,
                compression,
                linger: Duration::from_millis(2),
                idempotence: acks == Acks::All,
                ..ProducerConfig::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for n in 0..3000u32 {
            let key = format!("key-{}", n % 17);
            let value = format!("{i}:{n}");
            let rec = ProducerRecord::new("events", value.into_bytes()).key(key.into_bytes());
            deliveries.push(producer.enqueue(rec).await.unwrap());
        }
        producer.flush().await;
        for d in deliveries {
            let md = d.await.unwrap();
            assert!(md.offset.is_some());
        }
        producer.close().await;
    }

    let mut consumer = c.consumer(ConsumerConfig::default()).unwrap();
    assert_eq!(consumer.assign_topic("events").await.unwrap().len(), 4);
    consumer.seek_all(Seek::Earliest).await.unwrap();
    let mut stream = consumer.stream();
    let mut last: HashMap<String, (u32, u32, i32)> = HashMap::new();
    let mut seen = 0;
    while seen < 9000 {
        let r = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("records arrive")
            .unwrap()
            .unwrap();
        let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
        let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
        let (round, n) = value.split_once(':').unwrap();
        let (round, n): (u32, u32) = (round.parse().unwrap(), n.parse().unwrap());
        if let Some((pr, pn, pp)) = last.get(&key) {
            assert_eq!(*pp, r.partition, "a key always maps to one partition");
            assert!(
                (round, n) > (*pr, *pn),
                "per-key order: {key} {round}:{n} after {pr}:{pn}"
            );
        }
        last.insert(key, (round, n, r.partition));
        seen += 1;
    }
    drop(stream);
    let described = c.admin().describe_topics(&["events"]).await.unwrap();
    let total: i64 = described[0].partitions.iter().map(|p| p.high_watermark).sum();
    assert_eq!(total, 9000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_consumer_is_woken_and_timestamps_seek() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let c = client(&broker).await;
    c.admin().create_topic(NewTopic::new("live", 1, 1)).await.unwrap();
    let producer = c.producer(ProducerConfig::default()).unwrap();
    for ts in [1_000i64, 2_000, 3_000] {
        producer
            .send(ProducerRecord::new("live", format!("t{ts}").into_bytes()).timestamp(ts))
            .await
            .unwrap();
    }
    let mut consumer = c.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign_topic("live").await.unwrap();
    consumer.seek_all(Seek::Timestamp(1_500)).await.unwrap();
    let r = consumer.next_record().await.unwrap();
    assert_eq!((r.offset.0, r.value.as_deref()), (1, Some(&b"t2000"[..])));
    let r = consumer.next_record().await.unwrap();
    assert_eq!(r.offset.0, 2);

    // At the end of the log the consumer long-polls; a new record wakes it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let r = consumer.next_record().await.unwrap();
        let _ = tx.send(());
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    producer
        .send(ProducerRecord::new("live", b"late".to_vec()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("woken")
        .unwrap();
    let r = handle.await.unwrap();
    assert_eq!((r.offset.0, r.value.as_deref()), (3, Some(&b"late"[..])));
}
