//! `strata produce TOPIC`: one record per line of standard input.
//!
//! A reader thread reads stdin in chunks of lines and hands them over a bounded channel, so
//! memory stays bounded however long the input is. The main task turns each line into a record
//! and [`Producer::enqueue`]s it (the producer batches and pipelines; its `buffer_memory` is the
//! back-pressure); a collector task awaits the [`Delivery`] futures in order, at most
//! `MAX_PENDING` outstanding, and counts failures. At end of input the producer is closed (which
//! sends everything buffered) and the command fails, with the count, unless every record was
//! acknowledged.
//!
//! Line handling: the terminating `\n` (and a `\r` before it) is removed; an empty line is a
//! record with an empty value; a last line without `\n` is a record too. With
//! `--key-separator`, the part before the first separator is the key and the rest the value; a
//! line without the separator is not sent and counts as a failure.

use std::io::BufRead;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde::Serialize;
use strata_client::{Acks, Delivery, Error, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use crate::Global;
use crate::output::Out;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    topic: String,
    /// Split each line at the first SEP: key before, value after (else: no key).
    #[arg(long, value_name = "SEP", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// Write every record to this partition (else: by key hash, keyless records spread).
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// When a record counts as written: `all` (committed; retries never duplicate records),
    /// `leader` (appended by the leader), `none` (sent; the broker does not answer). Only `all`
    /// uses the idempotent producer.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Longest a record may take to be acknowledged, retries included; then it counts as
    /// failed.
    #[arg(long, value_name = "MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    delivery_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AcksArg {
    All,
    Leader,
    None,
}

impl From<AcksArg> for Acks {
    fn from(a: AcksArg) -> Acks {
        match a {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
            AcksArg::None => Acks::None,
        }
    }
}

/// Lines per chunk handed from the reader thread, and chunks queued: at most
/// `CHUNK_LINES · CHUNKS_QUEUED` lines (or `CHUNK_BYTES · CHUNKS_QUEUED` bytes) read ahead.
const CHUNK_LINES: usize = 1024;
const CHUNK_BYTES: usize = 256 << 10;
const CHUNKS_QUEUED: usize = 4;
/// Most records enqueued but not yet resolved (each costs a few words while it waits).
const MAX_PENDING: usize = 65_536;

/// `produce --format json`: the summary printed at the end.
#[derive(Debug, Default, Serialize)]
struct Summary {
    topic: String,
    /// Lines read.
    records: u64,
    /// Records acknowledged as `--acks` asked.
    acknowledged: u64,
    /// Records not acknowledged (never sent, or failed).
    failed: u64,
}

/// The first failure and how many there were.
#[derive(Debug, Default)]
struct Failures {
    count: u64,
    first: Option<String>,
}

impl Failures {
    fn add(&mut self, why: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(why());
        }
    }
}

/// A chunk of lines, or the error that stopped reading.
type Chunk = std::io::Result<Vec<Vec<u8>>>;

pub async fn run(global: &Global, out: &mut Out, args: ProduceArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let producer = client
        .producer(ProducerConfig {
            acks: args.acks.into(),
            // Idempotence (no duplicates from retries) needs acks=all; weaker acks go without.
            idempotence: args.acks == AcksArg::All,
            request_timeout: client.config().request_timeout,
            // Waiting for buffer memory (a stalled broker) is bounded by the same limit.
            max_block: std::time::Duration::from_millis(args.delivery_timeout_ms),
            delivery_timeout: std::time::Duration::from_millis(args.delivery_timeout_ms),
            ..ProducerConfig::default()
        })
        .context("cannot start the producer")?;

    let (chunks_tx, mut chunks) = mpsc::channel::<Chunk>(CHUNKS_QUEUED);
    // A plain thread: stdin reads block. When this function returns early it drops the
    // receiver, and the thread stops at its next send.
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_lines(&chunks_tx))
        .context("cannot start the stdin reader")?;

    let (deliveries_tx, mut deliveries) = mpsc::channel::<Delivery>(MAX_PENDING);
    let collector = tokio::spawn(async move {
        let mut acknowledged = 0u64;
        let mut failures = Failures::default();
        while let Some(d) = deliveries.recv().await {
            match d.await {
                Ok(_) => acknowledged += 1,
                Err(e) => failures.add(|| e.to_string()),
            }
        }
        (acknowledged, failures)
    });

    let mut summary = Summary {
        topic: args.topic.clone(),
        ..Summary::default()
    };
    // Records that never reached the producer.
    let mut unsent = Failures::default();
    // An enqueue error that every later record would hit too (unknown topic, …): the rest of
    // the input is read and counted but not sent.
    let mut fatal = false;
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut read_error = None;
    while let Some(chunk) = chunks.recv().await {
        let lines = match chunk {
            Ok(lines) => lines,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        for line in lines {
            summary.records += 1;
            let line_no = summary.records;
            if fatal {
                unsent.count += 1;
                continue;
            }
            let line = Bytes::from(line);
            let (key, value) = match separator {
                None => (None, line),
                Some(sep) => match find(&line, sep) {
                    Some(at) => (Some(line.slice(..at)), line.slice(at + sep.len()..)),
                    None => {
                        unsent.add(|| format!("line {line_no} has no key separator"));
                        continue;
                    }
                },
            };
            let record = ProducerRecord {
                key,
                partition: args.partition,
                ..ProducerRecord::new(args.topic.as_str(), value)
            };
            match producer.enqueue(record).await {
                Ok(d) => {
                    if deliveries_tx.send(d).await.is_err() {
                        anyhow::bail!("the delivery collector stopped");
                    }
                }
                Err(e) => {
                    fatal = !matches!(e, Error::RecordTooLarge { .. });
                    unsent.add(|| format!("line {line_no}: {e}"));
                }
            }
        }
    }
    drop(deliveries_tx);
    // Sends everything buffered; every delivery resolves by `delivery_timeout` at the latest.
    producer.close().await;
    let (acknowledged, failed) = collector.await.context("the delivery collector failed")?;
    if let Some(e) = read_error {
        return Err(anyhow::Error::new(e).context(format!(
            "cannot read standard input after {} lines ({acknowledged} records acknowledged)",
            summary.records
        )));
    }
    summary.acknowledged = acknowledged;
    summary.failed = unsent.count + failed.count;
    if out.json() {
        out.json_line(&summary)?;
    }
    if summary.failed > 0 {
        let first = unsent.first.or(failed.first).unwrap_or_default();
        let noun = if summary.records == 1 { "record" } else { "records" };
        anyhow::bail!(
            "{} of {} {noun} not acknowledged (first failure: {first})",
            summary.failed,
            summary.records
        );
    }
    Ok(())
}

/// Reads stdin line by line into chunks until end of input, an error, or the receiver going
/// away. A chunk is handed over when full, or as soon as no more input is buffered (the next
/// read may block), so lines arriving slowly (`tail -f … | strata produce`) are sent as they
/// come rather than when a chunk fills.
fn read_lines(tx: &mpsc::Sender<Chunk>) {
    // Our own buffer (reads this large bypass stdin's) so we can see when it runs dry.
    let mut input = std::io::BufReader::with_capacity(CHUNK_BYTES, std::io::stdin());
    loop {
        let mut lines = Vec::with_capacity(CHUNK_LINES);
        let mut bytes = 0;
        let mut eof = false;
        while lines.len() < CHUNK_LINES && bytes < CHUNK_BYTES {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    bytes += n;
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    lines.push(line);
                    if input.buffer().is_empty() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !lines.is_empty() {
                        let _ = tx.blocking_send(Ok(lines));
                    }
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if !lines.is_empty() && tx.blocking_send(Ok(lines)).is_err() {
            return;
        }
        if eof {
            return;
        }
    }
}

/// Position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return haystack.iter().position(|b| *b == needle[0]);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_separator_is_found_first_from_the_left() {
        assert_eq!(find(b"k:v:w", b":"), Some(1));
        assert_eq!(find(b"k::v", b"::"), Some(1));
        assert_eq!(find(b"kv", b"::"), None);
        assert_eq!(find(b"", b":"), None);
    }
}
