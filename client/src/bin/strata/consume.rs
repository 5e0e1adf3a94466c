//! `strata consume TOPIC`: records to standard output, one per line.
//!
//! Reads every partition of the topic (or only `--partition`) from the latest offset (records
//! produced from now on), the log start (`--from-beginning`) or an offset (`--offset`), and
//! stops after `--count` records, when no record has arrived for `--timeout-ms`, or on Ctrl-C
//! (exit 130). Without either limit it waits for records forever, like Kafka's console
//! consumer. Records of different partitions interleave; each partition's come in offset order.
//! Output is flushed after every batch of records, so a reader sees them as they arrive. When
//! the reader goes away (`| head`), the command exits 0 at its next write, or within a second
//! while it waits for records.
//!
//! With `--group G` it joins consumer group G instead (every member gets a share of the topic's
//! partitions), starts where the group committed (else as `--from-beginning` says), commits as
//! it goes (every second and when partitions move), and on exit commits what it printed and
//! leaves the group.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use strata_client::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Seek, TopicPartition};
use tokio::time::Instant;

use crate::output::{self, JsonBytes, Out};
use crate::{Global, Outcome};

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Start at each partition's first record (default: only records produced from now on).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in every partition read; past the end means from the end).
    #[arg(long, value_name = "N", conflicts_with = "group")]
    offset: Option<u64>,
    /// Read only this partition (default: all).
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(i32).range(0..), conflicts_with = "group")]
    partition: Option<i32>,
    /// Join this consumer group: read the partitions it assigns, from its committed offsets,
    /// committing as records are printed.
    #[arg(long, value_name = "G")]
    group: Option<String>,
    /// With --group: a stable id for this instance (static membership: restarting within the
    /// session timeout keeps its partitions).
    #[arg(long, value_name = "ID", requires = "group")]
    instance_id: Option<String>,
    /// With --group: the session timeout to ask for (default: the broker's).
    #[arg(long, value_name = "MS", requires = "group", value_parser = clap::value_parser!(u64).range(1..))]
    session_timeout_ms: Option<u64>,
    /// Stop after this many records (`--max-messages`, as in Kafka's console consumer, works
    /// too).
    #[arg(long, visible_alias = "max-messages", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop when no record has arrived for this long (default: wait forever).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Text format: print `key<TAB>value` instead of the value alone.
    #[arg(long)]
    print_key: bool,
}

/// One record in `--format json`.
#[derive(Serialize)]
struct RecordJson<'a> {
    topic: &'a str,
    partition: i32,
    offset: u64,
    /// Milliseconds since the Unix epoch.
    timestamp: i64,
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
}

/// Longest single wait for records; between waits the loop checks the idle timeout and whether
/// the reader of stdout has gone.
const POLL_SLICE: Duration = Duration::from_secs(1);

pub async fn run(global: &Global, out: &mut Out, args: ConsumeArgs) -> anyhow::Result<Outcome> {
    if args.group.is_some() {
        return run_group(global, out, args).await;
    }
    let client = global.connect().await?;
    let topic = client
        .topic(&args.topic)
        .await
        .with_context(|| format!("cannot read topic {}", args.topic))?;
    let partitions: Vec<TopicPartition> = match args.partition {
        Some(p) if topic.partition(p).is_none() => anyhow::bail!(
            "cannot read topic {}: it has no partition {p} (partitions 0..{})",
            args.topic,
            topic.partition_count()
        ),
        Some(p) => vec![TopicPartition::new(args.topic.as_str(), p)],
        None => topic
            .partitions
            .iter()
            .map(|p| TopicPartition::new(args.topic.as_str(), p.partition))
            .collect(),
    };
    let mut consumer = client
        .consumer(ConsumerConfig {
            // Where partitions start without --offset (resolved by the consumer, which retries
            // while a new topic's partitions still elect their leaders), and where a position
            // that falls out of the log (an --offset past the end) resets to.
            auto_offset_reset: offset_reset(&args),
            ..ConsumerConfig::default()
        })
        .context("cannot start the consumer")?;
    consumer.assign(partitions.iter().cloned());
    if let Some(offset) = args.offset {
        for tp in &partitions {
            consumer
                .seek(tp, Seek::Offset(offset))
                .await
                .with_context(|| format!("cannot position {tp}"))?;
        }
    }

    let what = format!("cannot read topic {}", args.topic);
    let outcome = read(&mut consumer, out, &args, &what).await?;
    out.flush()?;
    Ok(outcome)
}

/// Polls and prints until `--count`, `--timeout-ms`, Ctrl-C or a closed stdout. Records polled
/// but not printed (the last batch past `--count`) are sought back to, so a group's commit stops
/// at what was printed.
async fn read(consumer: &mut Consumer, out: &mut Out, args: &ConsumeArgs, what: &str) -> anyhow::Result<Outcome> {
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut remaining = args.count.unwrap_or(u64::MAX);
    let mut last_record = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while remaining > 0 {
        let wait = match idle {
            Some(idle) => {
                let left = (last_record + idle).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(POLL_SLICE)
            }
            None => POLL_SLICE,
        };
        let records = tokio::select! {
            r = consumer.poll(wait) => r.with_context(|| what.to_owned())?,
            _ = &mut ctrl_c => return Ok(Outcome::Interrupted),
        };
        if records.is_empty() {
            if output::reader_gone() {
                // `| head` is satisfied: end as quietly as a failed write would.
                break;
            }
            continue;
        }
        last_record = Instant::now();
        let mut unprinted: Vec<TopicPartition> = Vec::new();
        for r in &records {
            if remaining == 0 {
                let tp = TopicPartition::new(&*r.topic, r.partition);
                if !unprinted.contains(&tp) {
                    consumer.seek(&tp, Seek::Offset(r.offset.0)).await?;
                    unprinted.push(tp);
                }
                continue;
            }
            print(out, args, r)?;
            remaining -= 1;
        }
        out.flush()?;
    }
    Ok(Outcome::Done)
}

fn print(out: &mut Out, args: &ConsumeArgs, r: &ConsumerRecord) -> anyhow::Result<()> {
    if out.json() {
        let key = JsonBytes::new(r.key.as_deref());
        let value = JsonBytes::new(r.value.as_deref());
        return out.json_line(&RecordJson {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset.0,
            timestamp: r.timestamp,
            key_encoding: key.encoding(),
            key: key.text,
            value_encoding: value.encoding(),
            value: value.text,
        });
    }
    // Text: the bytes as they are (so text in, text out); `null` for a null key or value.
    if args.print_key {
        out.bytes(r.key.as_deref().unwrap_or(b"null"))?;
        out.bytes(b"\t")?;
    }
    out.bytes(r.value.as_deref().unwrap_or(b"null"))?;
    out.bytes(b"\n")
}

/// Where a partition without a position (or a group's committed offset) starts.
fn offset_reset(args: &ConsumeArgs) -> OffsetReset {
    if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    }
}

/// `consume --group`: a member of a consumer group.
async fn run_group(global: &Global, out: &mut Out, args: ConsumeArgs) -> anyhow::Result<Outcome> {
    let group = args.group.clone().unwrap_or_default();
    let client = global.connect().await?;
    client
        .topic(&args.topic)
        .await
        .with_context(|| format!("cannot read topic {}", args.topic))?;
    let mut consumer = client
        .consumer(ConsumerConfig {
            auto_offset_reset: offset_reset(&args),
            group_id: Some(group.clone()),
            group_instance_id: args.instance_id.clone(),
            session_timeout: args.session_timeout_ms.map(Duration::from_millis),
            auto_commit_interval: Duration::from_secs(1),
            ..ConsumerConfig::default()
        })
        .context("cannot start the consumer")?;
    consumer
        .subscribe([args.topic.clone()])
        .with_context(|| format!("cannot join group {group}"))?;
    let what = format!("cannot read topic {} in group {group}", args.topic);
    let outcome = read(&mut consumer, out, &args, &what).await;
    let flushed = out.flush();
    // Leave whatever happened, so the group need not wait for this member's session to end.
    let closed = consumer
        .close()
        .await
        .with_context(|| format!("cannot commit the group's offsets before leaving group {group}"));
    let outcome = outcome?;
    flushed?;
    closed?;
    Ok(outcome)
}
