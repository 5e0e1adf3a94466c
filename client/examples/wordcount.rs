//! Word count as a stream job on consumer groups: run several copies, and they share the work.
//!
//! ```text
//! cargo run -p strata-client --example wordcount -- [BOOTSTRAP] [INSTANCE]
//! ```
//!
//! Defaults: `127.0.0.1:9700`, no instance id. Each process is a member of two groups:
//!
//! 1. **split** (group `wordcount-split`) reads lines from the topic `lines`, splits them into
//!    words (lowercase, letters and digits) and produces each word, keyed by itself, to `words`:
//!    the key decides the partition, so every occurrence of a word lands in the same partition.
//! 2. **count** (group `wordcount-count`) reads `words` and publishes each word's running count
//!    to `word-counts` (key: the word, value: the count — the latest record per word is the
//!    answer). A member holds the counts of the `words` partitions it owns; when it is given a
//!    partition it rebuilds that partition's counts by reading it from the start up to the
//!    group's committed offset, so a partition that moves — because a member joined, left or was
//!    killed — carries on with the right counts.
//!
//! Both stages commit only what they have finished: a batch of records is processed and its
//! output acknowledged before the next `poll`, which is where the consumer commits (every
//! second, and when partitions are revoked). Delivery is at least once: after a member is
//! killed, lines it split but had not committed are split again by the member that takes over,
//! so some words may count twice.
//!
//! Try it:
//!
//! ```text
//! strata-broker &                                   # a broker on 127.0.0.1:9700
//! cargo run -p strata-client --example wordcount &  # three members …
//! cargo run -p strata-client --example wordcount &
//! cargo run -p strata-client --example wordcount &
//! cat /usr/share/common-licenses/GPL-3 | strata produce lines
//! strata group describe wordcount-count             # who owns what, and the lag
//! kill -9 %2                                        # the others take over its partitions
//! strata consume word-counts --from-beginning --print-key --timeout-ms 2000 | sort -k2 -n | tail
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, Error, NewTopic, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, RebalanceEvent, Seek, TopicPartition,
};
use tokio_util::sync::CancellationToken;

const LINES: &str = "lines";
const WORDS: &str = "words";
const COUNTS: &str = "word-counts";
const PARTITIONS: i32 = 6;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9700".to_owned());
    let instance = args.next();
    let client = Client::connect(ClientConfig::new(&bootstrap)).await?;
    for topic in [LINES, WORDS, COUNTS] {
        match client.admin().create_topic(NewTopic::new(topic, PARTITIONS, -1)).await {
            Ok(()) => println!("created topic {topic}"),
            Err(e) if e.code() == Some(strata_client::protocol::ErrorCode::TopicAlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let producer = client.producer(ProducerConfig::default())?;
    let stop = CancellationToken::new();
    let member = |group: &str| {
        client.consumer(ConsumerConfig {
            group_id: Some(group.to_owned()),
            group_instance_id: instance.as_ref().map(|i| format!("{group}-{i}")),
            auto_offset_reset: OffsetReset::Earliest,
            auto_commit_interval: Duration::from_secs(1),
            ..ConsumerConfig::default()
        })
    };
    let split = tokio::spawn(split(member("wordcount-split")?, producer.clone(), stop.clone()));
    let count = tokio::spawn(count(
        client.clone(),
        member("wordcount-count")?,
        producer,
        stop.clone(),
    ));
    println!("counting words of {LINES} into {COUNTS}; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    stop.cancel();
    split.await??;
    count.await??;
    Ok(())
}

/// The words of a line: lowercase runs of letters and digits.
fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Lines → words, keyed by the word.
async fn split(mut consumer: Consumer, producer: Producer, stop: CancellationToken) -> Result<()> {
    consumer.subscribe([LINES])?;
    while !stop.is_cancelled() {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        let mut sends = Vec::new();
        for r in &records {
            let line = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            for w in words(&line) {
                sends.push(producer.send(ProducerRecord::new(WORDS, "1").key(w)));
            }
        }
        // Every word is acknowledged before the next poll commits these lines.
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    consumer.close().await?;
    Ok(())
}

/// Words → running counts, per `words` partition this member owns.
async fn count(client: Client, mut consumer: Consumer, producer: Producer, stop: CancellationToken) -> Result<()> {
    let events: Arc<Mutex<Vec<RebalanceEvent>>> = Arc::default();
    let seen = events.clone();
    consumer.set_rebalance_listener(move |e| seen.lock().unwrap().push(e.clone()));
    consumer.subscribe([WORDS])?;
    // Counts by partition, then word.
    let mut counts: HashMap<i32, HashMap<String, u64>> = HashMap::new();
    while !stop.is_cancelled() {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        let pending = std::mem::take(&mut *events.lock().unwrap());
        for event in pending {
            match event {
                RebalanceEvent::Assigned(tps) => {
                    for tp in tps {
                        let upto = consumer.committed(std::slice::from_ref(&tp)).await?[0].1.unwrap_or(0);
                        let state = rebuild(&client, &tp, upto).await?;
                        println!("count: took {tp} ({} words rebuilt up to offset {upto})", state.len());
                        counts.insert(tp.partition, state);
                    }
                }
                RebalanceEvent::Revoked(tps) | RebalanceEvent::Lost(tps) => {
                    for tp in tps {
                        println!("count: gave up {tp}");
                        counts.remove(&tp.partition);
                    }
                }
            }
        }
        let mut changed: HashMap<String, u64> = HashMap::new();
        for r in &records {
            let Some(word) = r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                continue;
            };
            let n = counts.entry(r.partition).or_default().entry(word.clone()).or_default();
            *n += 1;
            changed.insert(word, *n);
        }
        let sends: Vec<_> = changed
            .into_iter()
            .map(|(w, n)| producer.send(ProducerRecord::new(COUNTS, n.to_string()).key(w)))
            .collect();
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    consumer.close().await?;
    Ok(())
}

/// A `words` partition's counts up to `upto` (the group's committed offset), read from the
/// start with a consumer of its own.
async fn rebuild(client: &Client, tp: &TopicPartition, upto: u64) -> std::result::Result<HashMap<String, u64>, Error> {
    let mut state: HashMap<String, u64> = HashMap::new();
    if upto == 0 {
        return Ok(state);
    }
    let mut reader = client.consumer(ConsumerConfig::default())?;
    reader.assign([tp.clone()]);
    reader.seek(tp, Seek::Earliest).await?;
    while reader.position(tp).is_none_or(|p| p < upto) {
        for r in reader.poll(Duration::from_millis(500)).await? {
            if r.offset.0 >= upto {
                break;
            }
            if let Some(k) = r.key.as_deref() {
                *state.entry(String::from_utf8_lossy(k).into_owned()).or_default() += 1;
            }
        }
    }
    Ok(state)
}
