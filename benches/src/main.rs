//! `strata-bench`, the Strata load benchmark tool.
//!
//! `produce`, `consume` and `e2e` drive a broker (`--bootstrap`, or `--embedded`: one broker
//! in-process in a temp dir) and report throughput and HdrHistogram latency percentiles;
//! `compare` prints saved `--json` results side by side. Producers run open loop at `--rate`:
//! each record has an intended send time on a fixed schedule and latency counts from that time,
//! so a stall shows up as latency instead of being hidden (no coordinated omission).
//!
//! The storage and codec micro-benchmarks live in `storage/benches` and `protocol/benches`.

mod compare;
mod payload;
mod report;
mod stats;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use strata_client::protocol::ErrorCode;
use strata_client::{
    Acks, Client, ClientConfig, Compression, ConsumerConfig, Error as ClientError, NewTopic, Producer, ProducerConfig,
    ProducerRecord, Seek, TopicPartition,
};
use tokio::sync::{mpsc, oneshot};

use crate::payload::{HEADER_LEN, Header, SplitMix};
use crate::stats::{Bits, Sample, SideResult, Stats, Verifier, VerifyResult, now_ns};

#[derive(Parser, Debug)]
#[command(name = "strata-bench", version, about = "Load benchmark for Strata")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Producers only: latency is intended send time → acknowledgement.
    Produce(RunArgs),
    /// Consumers only, reading the topic from the beginning (with `--messages N`, first fills
    /// the topic up to N records, unmeasured); latency is each poll's wait.
    Consume(RunArgs),
    /// Producers and consumers together: latency is intended send time → consumer receipt.
    E2e(RunArgs),
    /// Prints saved `--json` results side by side, with differences from the first in %.
    Compare {
        /// Files holding one `--json` output each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum KeyDistribution {
    /// Random keys.
    Uniform,
    /// The record's number as its key.
    Sequential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum CompressionArg {
    None,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum AcksArg {
    All,
    Leader,
    None,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

#[derive(Args, Debug, Clone, Serialize)]
struct RunArgs {
    /// Broker address(es), comma-separated.
    #[arg(long, env = "STRATA_BOOTSTRAP", conflicts_with = "embedded")]
    bootstrap: Option<String>,
    /// Start one broker in this process, with its data in a temp dir.
    #[arg(long)]
    embedded: bool,
    /// Topic; created if missing.
    #[arg(long, default_value = "strata-bench")]
    topic: String,
    /// Partitions of a topic created by the tool.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor of a topic created by the tool.
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    /// Topic setting for a topic created by the tool, KEY=VALUE (repeat), e.g. flush.policy=never.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    topic_config: Vec<String>,
    /// Producer tasks, each with its own connection.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Consumer tasks, each with its own connection; partitions are split among them.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Value bytes per record (at least 32: the payload header).
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Key bytes per record; 0 sends keyless records.
    #[arg(long, default_value_t = 0)]
    key_size: usize,
    /// How keys are chosen.
    #[arg(long, value_enum, default_value_t = KeyDistribution::Uniform)]
    key_distribution: KeyDistribution,
    /// Producer batch size in bytes (the client's default).
    #[arg(long, default_value_t = 256 << 10)]
    batch_bytes: usize,
    /// Producer linger in ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Most produce requests of one partition in flight at once per producer (idempotent
    /// producers only; without idempotence it is 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    max_in_flight: u64,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Consumer: most bytes fetched per partition per request (the broker always returns at
    /// least one whole batch).
    #[arg(long, default_value_t = 1 << 20)]
    fetch_partition_bytes: usize,
    /// Acknowledgement level.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Idempotent producer (retries never duplicate records); needs `--acks all`. Default: true
    /// with `--acks all`, false otherwise.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    idempotence: Option<bool>,
    /// Total records/s over all producers, open loop; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total records to send (or, for consume, to read).
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// How long to run (after warmup), e.g. 10s. Default 10s unless --messages is given.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "ser_opt_duration")]
    duration: Option<Duration>,
    /// Time at the start excluded from the results, e.g. 2s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    #[serde(serialize_with = "ser_duration")]
    warmup: Duration,
    /// Check every payload: loss, duplicates, reordering within a partition, corruption.
    #[arg(long)]
    verify: bool,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Testing aid: send every Nth record twice, so `--verify` must report duplicates.
    #[arg(long, hide = true, default_value_t = 0)]
    inject_duplicates: u64,
    /// Also write a self-contained HTML report with SVG charts to this file.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Consumers join this consumer group (the coordinator assigns partitions; they start at
    /// the group's committed offsets, else at the start (consume) or end (e2e) and commit as
    /// they go) instead of splitting the partitions among themselves. Use a new group id per run.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// With --group: one more consumer joins the group this long after the start (after
    /// warmup), and the summary reports the longest pause in each partition's flow after it,
    /// for partitions that moved to another consumer and for those that stayed.
    #[arg(long, requires = "group", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "ser_opt_duration")]
    join_at: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Produce,
    Consume,
    E2e,
}

fn main() {
    // The broker's malloc settings (strata_broker::allocator): for `--embedded`, and for the
    // tool's own batch buffers.
    let _ = strata_broker::allocator::keep_freed_memory(&|k| std::env::var(k).ok());
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Compare { files } => match compare::run(&files) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("strata-bench: error: {e:#}");
                1
            }
        },
        Command::Produce(a) => run_mode(Mode::Produce, a),
        Command::Consume(a) => run_mode(Mode::Consume, a),
        Command::E2e(a) => run_mode(Mode::E2e, a),
    };
    std::process::exit(code);
}

fn run_mode(mode: Mode, args: RunArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata-bench: error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(mode, args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata-bench: error: {e:#}");
            1
        }
    }
}

/// One broker in this process.
struct Embedded {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Embedded {
    async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("strata-bench-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let ready = dir.path().join("ready.json");
        let opts = strata_broker::BrokerOptions {
            listen: "127.0.0.1:0".parse()?,
            http: "127.0.0.1:0".parse()?,
            data_dir: dir.path().join("data"),
            ready_file: Some(ready.clone()),
            ..strata_broker::BrokerOptions::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(strata_broker::run(opts, async move {
            let _ = rx.await;
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
                && let Some(a) = v["listen"].as_str()
            {
                break a.to_owned();
            }
            if task.is_finished() {
                match task.await {
                    Ok(Err(e)) => bail!("embedded broker failed: {e:#}"),
                    _ => bail!("embedded broker exited early"),
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("embedded broker did not become ready in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Ok(Self {
            addr,
            stop: Some(tx),
            task,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(30), &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("strata-bench: embedded broker: {e:#}"),
            Ok(Err(e)) => eprintln!("strata-bench: embedded broker: {e}"),
            Err(_) => eprintln!("strata-bench: embedded broker did not stop in 30 s"),
        }
    }
}

/// Everything the tasks share.
struct Ctx {
    args: RunArgs,
    mode: Mode,
    /// ns: when the run started, and when warmup ends.
    start_ns: u64,
    warmup_end_ns: u64,
    /// ns: when producers stop scheduling (duration mode).
    end_ns: Option<u64>,
    /// Records each producer sends (messages mode).
    per_producer: Vec<Option<u64>>,
    /// Random id of this run, in every payload.
    run_id: u64,
    value_size: usize,
    produced: Stats,
    consumed: Stats,
    /// Records consumers should receive before stopping (u64::MAX until known).
    consume_target: AtomicU64,
    stop_consumers: AtomicBool,
    /// With --group: each partition's flow, to measure pauses around a member joining.
    flows: std::sync::Mutex<HashMap<i32, Flow>>,
    /// ns: when the extra member joins (--join-at).
    join_ns: Option<u64>,
}

/// One partition's flow of records to consumers (group runs).
#[derive(Default)]
struct Flow {
    /// ns: the last receipt.
    last_ns: u64,
    /// Consumer tasks that received it.
    consumers: u64,
    /// Longest pause since the extra member joined, ns.
    longest_after_join_ns: u64,
}

/// Pauses around the extra member's join (--join-at).
#[derive(Debug, Clone, Serialize)]
struct JoinPauses {
    /// Partitions that moved to another consumer, and their longest pause after the join.
    moved: usize,
    moved_longest_pause_ms: f64,
    /// Partitions that stayed, and their longest pause after the join.
    stayed: usize,
    stayed_longest_pause_ms: f64,
}

async fn run(mode: Mode, mut args: RunArgs) -> Result<i32> {
    // Resolved here so the report's config shows the value used.
    let idempotence = *args.idempotence.get_or_insert(args.acks == AcksArg::All);
    if idempotence && args.acks != AcksArg::All {
        bail!("--idempotence true needs --acks all");
    }
    if args.producers == 0 || args.consumers == 0 {
        bail!("--producers and --consumers must be at least 1");
    }
    if args.verify && mode == Mode::Produce {
        eprintln!("strata-bench: --verify checks what consumers receive: use it with e2e or consume");
    }
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    stats::base();
    let embedded = if args.embedded {
        Some(Embedded::start().await?)
    } else {
        None
    };
    let bootstrap = match (&embedded, &args.bootstrap) {
        (Some(e), _) => e.addr.clone(),
        (None, Some(b)) => b.clone(),
        (None, None) => "127.0.0.1:9700".to_owned(),
    };
    let outcome = bench(mode, args, &bootstrap).await;
    if let Some(e) = embedded {
        e.stop().await;
    }
    outcome
}

async fn connect(bootstrap: &str) -> Result<Client> {
    Client::connect(ClientConfig::new(bootstrap))
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))
}

/// Creates the topic if missing and waits until every partition has a leader; returns the
/// partition count.
async fn ensure_topic(client: &Client, args: &RunArgs) -> Result<i32> {
    let mut topic = NewTopic::new(&args.topic, args.partitions, args.replication_factor);
    for kv in &args.topic_config {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--topic-config {kv}: expected KEY=VALUE");
        };
        topic = topic.config(k, v);
    }
    match client.admin().create_topic(topic).await {
        Ok(()) => {}
        Err(ClientError::Topic {
            code: ErrorCode::TopicAlreadyExists,
            ..
        }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create topic {}", args.topic)),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let meta = client.refresh_metadata(Some(vec![args.topic.clone()])).await?;
        if let Some(t) = meta.topic(&args.topic)
            && t.error == ErrorCode::None
            && !t.partitions.is_empty()
            && t.partitions.iter().all(|p| p.leader.is_some())
        {
            return Ok(i32::try_from(t.partitions.len())?);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("topic {} has no leader for every partition after 30 s", args.topic);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn producer_config(args: &RunArgs) -> ProducerConfig {
    ProducerConfig {
        acks: match args.acks {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
            AcksArg::None => Acks::None,
        },
        idempotence: args.idempotence.unwrap_or(args.acks == AcksArg::All),
        compression: match args.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        },
        batch_size: args.batch_bytes,
        linger: Duration::from_millis(args.linger_ms),
        buffer_memory: (32 << 20).max(args.batch_bytes),
        max_request_size: (1 << 20).max(args.batch_bytes),
        max_in_flight_per_partition: args.max_in_flight as usize,
        ..ProducerConfig::default()
    }
}

async fn bench(mode: Mode, args: RunArgs, bootstrap: &str) -> Result<i32> {
    let admin_client = connect(bootstrap).await?;
    let partitions = ensure_topic(&admin_client, &args).await?;
    let value_size = args.message_size.max(HEADER_LEN);
    if args.message_size < HEADER_LEN {
        eprintln!("strata-bench: --message-size raised to {HEADER_LEN} (the payload header)");
    }
    let duration = match (args.messages, args.duration) {
        (None, None) => Some(Duration::from_secs(10)),
        (_, d) => d,
    };

    // consume: fill the topic up to --messages first (unmeasured).
    let mut consume_start: Vec<(i32, u64)> = Vec::new();
    if mode == Mode::Consume {
        let mut total = 0u64;
        for p in 0..partitions {
            let lo = admin_client.list_offset(&args.topic, p, -2).await?.unwrap_or(0);
            let hi = admin_client.list_offset(&args.topic, p, -1).await?.unwrap_or(0);
            total += hi.saturating_sub(lo);
            consume_start.push((p, lo));
        }
        if let Some(n) = args.messages
            && total < n
        {
            eprintln!("strata-bench: filling {} with {} records", args.topic, n - total);
            prefill(&admin_client, &args, value_size, n - total).await?;
        } else if total == 0 {
            bail!("topic {} is empty: pass --messages N to fill it first", args.topic);
        }
    }

    let producers = if mode == Mode::Consume { 0 } else { args.producers };
    let per_producer = (0..producers)
        .map(|i| {
            args.messages
                .map(|n| n / u64::from(producers) + u64::from(u64::from(i) < n % u64::from(producers)))
        })
        .collect();
    let run_id = SplitMix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()),
    )
    .next_u64();
    let start_ns = now_ns();
    let warmup_ns = u64::try_from(args.warmup.as_nanos())?;
    let ctx = Arc::new(Ctx {
        mode,
        start_ns,
        warmup_end_ns: start_ns + warmup_ns,
        end_ns: duration.map(|d| start_ns + warmup_ns + u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)),
        per_producer,
        run_id,
        value_size,
        produced: Stats::new(),
        consumed: Stats::new(),
        consume_target: AtomicU64::new(match (mode, args.messages) {
            (Mode::Consume, Some(n)) => n,
            _ => u64::MAX,
        }),
        stop_consumers: AtomicBool::new(false),
        flows: std::sync::Mutex::new(HashMap::new()),
        join_ns: args
            .join_at
            .map(|d| start_ns + warmup_ns + u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)),
        args,
    });

    // Consumers first (e2e: positioned at the end before anything is sent).
    let mut consumer_tasks = Vec::new();
    if mode != Mode::Produce {
        let n = if ctx.args.group.is_some() {
            ctx.args.consumers
        } else {
            ctx.args.consumers.min(u32::try_from(partitions)?)
        };
        if n < ctx.args.consumers {
            eprintln!("strata-bench: only {n} consumers: the topic has {partitions} partitions");
        }
        let (ready_tx, mut ready_rx) = mpsc::channel::<()>(n as usize);
        for c in 0..n {
            let parts: Vec<i32> = (0..partitions).filter(|p| (*p as u32) % n == c).collect();
            let client = connect(bootstrap).await?;
            let ctx = Arc::clone(&ctx);
            let ready = ready_tx.clone();
            let starts = consume_start.clone();
            consumer_tasks.push(tokio::spawn(async move {
                consumer_task(ctx, client, c, parts, starts, ready).await
            }));
        }
        if let Some(join_ns) = ctx.join_ns {
            // The extra member: joins the group at --join-at.
            let client = connect(bootstrap).await?;
            let ctx = Arc::clone(&ctx);
            let (ready, _) = mpsc::channel::<()>(1);
            consumer_tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_nanos(join_ns.saturating_sub(now_ns()))).await;
                eprintln!("strata-bench: one more consumer joins the group");
                consumer_task(ctx, client, n, Vec::new(), Vec::new(), ready).await
            }));
        }
        drop(ready_tx);
        while ready_rx.recv().await.is_some() {}
    }

    let (stop_progress, progress_stopped) = oneshot::channel();
    let progress = tokio::spawn(progress_task(Arc::clone(&ctx), progress_stopped));

    let mut producer_tasks = Vec::new();
    for id in 0..producers {
        let client = connect(bootstrap).await?;
        let producer = client.producer(producer_config(&ctx.args))?;
        let ctx = Arc::clone(&ctx);
        producer_tasks.push(tokio::spawn(producer_task(ctx, producer, id)));
    }
    let mut acked: Vec<Bits> = Vec::new();
    for t in producer_tasks {
        acked.push(t.await?);
    }

    if mode != Mode::Produce {
        if mode == Mode::E2e {
            ctx.consume_target
                .store(ctx.produced.done.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        // Stop when the target is reached, at the end of the duration (consume), or after 10 s
        // without progress.
        let mut last = ctx.consumed.done.load(Ordering::Relaxed);
        let mut idle_since = tokio::time::Instant::now();
        loop {
            if consumer_tasks.iter().all(|t| t.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = ctx.consumed.done.load(Ordering::Relaxed);
            if mode == Mode::Consume
                && let Some(end) = ctx.end_ns
                && now_ns() >= end
            {
                break;
            }
            if now != last {
                last = now;
                idle_since = tokio::time::Instant::now();
            } else if idle_since.elapsed() > Duration::from_secs(10) {
                eprintln!("strata-bench: consumers received nothing for 10 s; stopping");
                break;
            }
        }
        ctx.stop_consumers.store(true, Ordering::Relaxed);
    }
    let mut verifier = Verifier::default();
    for t in consumer_tasks {
        verifier.merge(t.await?);
    }
    let _ = stop_progress.send(());
    let samples = progress.await.unwrap_or_default();

    let verify = ctx.args.verify.then(|| {
        let mut v = VerifyResult {
            checked: true,
            duplicates: verifier.duplicates,
            reordered: verifier.reordered,
            corrupt: verifier.corrupt,
            ..VerifyResult::default()
        };
        if mode == Mode::E2e {
            for (id, bits) in acked.iter().enumerate() {
                let seen = verifier.seen.get(&(ctx.run_id, id as u32));
                v.lost += bits.iter().filter(|s| !seen.is_some_and(|b| b.get(*s))).count() as u64;
            }
        }
        v.violations = v.lost + v.duplicates + v.reordered + v.corrupt;
        v
    });
    let produced = ctx.produced.result(ctx.warmup_end_ns);
    let consumed = ctx.consumed.result(ctx.warmup_end_ns);
    let main = if mode == Mode::Produce { &produced } else { &consumed };
    let pauses = ctx.join_ns.map(|_| {
        let flows = ctx.flows.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |ns: u64| ns as f64 / 1e6;
        let (moved, stayed): (Vec<&Flow>, Vec<&Flow>) = flows.values().partition(|f| f.consumers.count_ones() > 1);
        JoinPauses {
            moved: moved.len(),
            moved_longest_pause_ms: ms(moved.iter().map(|f| f.longest_after_join_ns).max().unwrap_or(0)),
            stayed: stayed.len(),
            stayed_longest_pause_ms: ms(stayed.iter().map(|f| f.longest_after_join_ns).max().unwrap_or(0)),
        }
    });
    let violations = verify.as_ref().map_or(0, |v| v.violations);
    if let Some(path) = &ctx.args.report {
        let side = if mode == Mode::Produce {
            &ctx.produced
        } else {
            &ctx.consumed
        };
        let html = report::html(&report::Report {
            title: format!("strata-bench {}", mode_name(mode)),
            result: main,
            verify: verify.as_ref(),
            config: serde_json::to_value(&ctx.args)?,
            machine: machine(),
            samples: &samples,
            spectrum: side.spectrum(),
        });
        std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if ctx.args.json {
        let mut out = serde_json::to_value(main)?;
        let obj = out.as_object_mut().context("result is an object")?;
        obj.insert("mode".into(), serde_json::to_value(mode)?);
        if mode == Mode::E2e {
            obj.insert("producer".into(), serde_json::to_value(&produced)?);
        }
        if let Some(v) = &verify {
            obj.insert("verify".into(), serde_json::to_value(v)?);
        }
        if let Some(p) = &pauses {
            obj.insert("join_pauses".into(), serde_json::to_value(p)?);
        }
        obj.insert("config".into(), serde_json::to_value(&ctx.args)?);
        obj.insert("machine".into(), machine());
        obj.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        println!("{out}");
    } else {
        print_summary(mode, &produced, &consumed, verify.as_ref());
        if let Some(p) = &pauses {
            println!(
                "member joined: {} partitions moved, longest pause {:.1} ms; {} stayed, longest pause {:.1} ms",
                p.moved, p.moved_longest_pause_ms, p.stayed, p.stayed_longest_pause_ms
            );
        }
    }
    Ok(if violations > 0 { 1 } else { 0 })
}

/// Sends `n` records as fast as possible (consume's fill), without measuring.
async fn prefill(client: &Client, args: &RunArgs, value_size: usize, n: u64) -> Result<()> {
    let producer = client.producer(producer_config(args))?;
    let fill = payload::filler(value_size, 0xF111);
    let mut deliveries = FuturesUnordered::new();
    for seq in 0..n {
        let mut value = fill.clone();
        payload::write(
            &mut value,
            Header {
                intended_ns: now_ns(),
                run: 0,
                producer: u32::MAX,
                seq,
            },
        );
        let mut record = ProducerRecord::new(args.topic.as_str(), value);
        if args.key_size > 0 {
            record = record.key(payload::key(args.key_size, seq));
        }
        deliveries.push(producer.enqueue(record).await?);
        while deliveries.len() > 100_000 {
            if let Some(r) = deliveries.next().await {
                r?;
            }
        }
    }
    while let Some(r) = deliveries.next().await {
        r?;
    }
    producer.close().await;
    Ok(())
}

/// One producer: schedules records, enqueues them, and measures each acknowledgement from its
/// intended send time. Returns the sequence numbers acknowledged.
async fn producer_task(ctx: Arc<Ctx>, producer: Producer, id: u32) -> Bits {
    let (tx, rx) = mpsc::unbounded_channel::<Pending>();
    let collector = tokio::spawn(collect_acks(Arc::clone(&ctx), rx));
    let mut source = RecordSource::new(&ctx, id);
    if ctx.args.rate > 0 {
        // Paced: Tokio's timer has a 1 ms granularity, which would add up to a millisecond of
        // the tool's own lateness to every record's latency. A dedicated thread sleeps with the
        // OS's high-resolution timer instead and enqueues through the runtime handle.
        let handle = tokio::runtime::Handle::current();
        let (ctx2, producer2) = (Arc::clone(&ctx), producer.clone());
        let min_sleep = min_sleep_ns(ctx.args.rate, ctx.args.producers);
        let paced = tokio::task::spawn_blocking(move || {
            let mut due = source.due(&ctx2);
            while let Some(first) = due {
                let wait = first.saturating_sub(now_ns());
                if wait > 0 {
                    std::thread::sleep(Duration::from_nanos(wait.max(min_sleep)));
                }
                // Every record due by now, enqueued in one visit to the runtime: a `block_on`
                // per record (entering the runtime, a waker, a seed) cost more than most
                // enqueues.
                let now = now_ns().max(first);
                due = handle.block_on(async {
                    let mut next = Some(first);
                    while let Some(intended) = next.filter(|&t| t <= now) {
                        if !source.send(&ctx2, &producer2, &tx, intended).await {
                            return None;
                        }
                        next = source.due(&ctx2);
                    }
                    next
                });
            }
        });
        let _ = paced.await;
    } else {
        while let Some(intended) = source.due(&ctx) {
            if source.seq % 64 == 63 {
                // Enqueue may never wait: let the collector (which timestamps the acks) and the
                // rest of the runtime run.
                tokio::task::yield_now().await;
            }
            if !source.send(&ctx, &producer, &tx, intended).await {
                break;
            }
        }
        drop(tx);
    }
    producer.flush().await;
    let acked = collector.await.unwrap_or_default();
    producer.close().await;
    acked
}

/// Records per second of one paced producer above which it sleeps at least
/// [`PACE_QUANTUM_NS`] at a time.
const PACE_FINE_MAX_RATE: u64 = 10_000;
/// The shortest sleep of a fast paced producer. Waking for every record costs a context switch
/// each: at tens of thousands of records/s per producer that is a large part of a core, taken
/// from the brokers under test on a small machine. A producer above [`PACE_FINE_MAX_RATE`]
/// sleeps at least this long and then sends every record due meanwhile. Each record is still
/// measured from its own due time, so up to this much of the tool's lateness counts against the
/// broker, never for it.
const PACE_QUANTUM_NS: u64 = 200_000;

/// How long a paced producer sleeps at least, given the total rate and the producer count.
fn min_sleep_ns(rate: u64, producers: u32) -> u64 {
    if rate / u64::from(producers.max(1)) > PACE_FINE_MAX_RATE {
        PACE_QUANTUM_NS
    } else {
        0
    }
}

/// Builds one producer's records: payloads with the header, keys, and due times.
struct RecordSource {
    id: u32,
    producers: u64,
    fill: Vec<u8>,
    rng: SplitMix,
    limit: Option<u64>,
    seq: u64,
    arena: BytesMut,
    topic: Arc<str>,
    last_now: u64,
}

impl RecordSource {
    fn new(ctx: &Ctx, id: u32) -> Self {
        Self {
            id,
            producers: u64::from(ctx.args.producers),
            fill: payload::filler(ctx.value_size, u64::from(id) + 1),
            rng: SplitMix(0x5EED ^ u64::from(id)),
            limit: ctx.per_producer[id as usize],
            seq: 0,
            arena: BytesMut::new(),
            topic: Arc::from(ctx.args.topic.as_str()),
            last_now: 0,
        }
    }

    /// When the next record is due (ns on the bench clock), or `None` when the run is over.
    fn due(&mut self, ctx: &Ctx) -> Option<u64> {
        if self.limit.is_some_and(|n| self.seq >= n) {
            return None;
        }
        let intended = if ctx.args.rate > 0 {
            // Record k overall (k = seq * producers + id) is due at k / rate seconds.
            let k = self.seq * self.producers + u64::from(self.id);
            ctx.start_ns + (k as f64 * 1e9 / ctx.args.rate as f64) as u64
        } else {
            // Unthrottled, a record is due when it is built; reading the clock every 16th
            // record is close enough (it only ever overstates latency) and much cheaper.
            if self.seq.is_multiple_of(16) {
                self.last_now = now_ns();
            }
            self.last_now
        };
        ctx.end_ns.is_none_or(|end| intended < end).then_some(intended)
    }

    /// The next record, due at `intended`, and a second copy of it if `--inject-duplicates`
    /// picks this one (to be sent first).
    fn records(&mut self, ctx: &Ctx, intended: u64) -> (Option<ProducerRecord>, ProducerRecord) {
        // Payloads are carved out of a shared arena: no allocation per record.
        if self.arena.capacity() < self.fill.len() {
            self.arena.reserve((self.fill.len() * 64).max(ARENA_BYTES));
        }
        self.arena.extend_from_slice(&self.fill);
        let mut value = self.arena.split();
        payload::write(
            &mut value,
            Header {
                intended_ns: intended,
                run: ctx.run_id,
                producer: self.id,
                seq: self.seq,
            },
        );
        let mut record = ProducerRecord::new(Arc::clone(&self.topic), value.freeze());
        if ctx.args.key_size > 0 {
            let n = match ctx.args.key_distribution {
                KeyDistribution::Uniform => self.rng.next_u64(),
                KeyDistribution::Sequential => self.seq * self.producers + u64::from(self.id),
            };
            record = record.key(payload::key(ctx.args.key_size, n));
        }
        let dup = (ctx.args.inject_duplicates > 0 && self.seq.is_multiple_of(ctx.args.inject_duplicates))
            .then(|| record.clone());
        (dup, record)
    }

    /// Builds the record due at `intended` and enqueues it (after its duplicate, if one is
    /// injected). `false` once the producer is closed.
    async fn send(
        &mut self,
        ctx: &Ctx,
        producer: &Producer,
        tx: &mpsc::UnboundedSender<Pending>,
        intended: u64,
    ) -> bool {
        let (dup, record) = self.records(ctx, intended);
        if let Some(d) = dup {
            let r = producer.enqueue(d).await;
            self.sent(ctx, tx, intended, r, false);
        }
        let r = producer.enqueue(record).await;
        self.sent(ctx, tx, intended, r, true)
    }

    /// Records an enqueue's outcome; `last` is the record's final copy (advances the sequence).
    /// `false` once the producer is closed.
    fn sent(
        &mut self,
        ctx: &Ctx,
        tx: &mpsc::UnboundedSender<Pending>,
        intended: u64,
        r: strata_client::Result<strata_client::Delivery>,
        last: bool,
    ) -> bool {
        let seq = self.seq;
        if last {
            self.seq += 1;
        }
        match r {
            Ok(delivery) => {
                let _ = tx.send(Pending {
                    intended,
                    seq,
                    delivery,
                });
                true
            }
            Err(ClientError::ProducerClosed) => {
                ctx.produced.error(ClientError::ProducerClosed);
                false
            }
            Err(e) => {
                ctx.produced.error(e);
                true
            }
        }
    }
}

/// Bytes a producer's payload arena grows by.
const ARENA_BYTES: usize = 1 << 20;

/// A record waiting for its acknowledgement.
struct Pending {
    intended: u64,
    seq: u64,
    delivery: strata_client::Delivery,
}

/// Times every acknowledgement of one producer. Records of a partition are acknowledged in
/// order, so each partition is a FIFO and only its front needs watching; a batch's records
/// resolve together and are timed with one clock read.
async fn collect_acks(ctx: Arc<Ctx>, mut rx: mpsc::UnboundedReceiver<Pending>) -> Bits {
    let record_bytes = (ctx.value_size + ctx.args.key_size) as u64;
    let mut acked = Bits::default();
    let mut queues: BTreeMap<i32, VecDeque<Pending>> = BTreeMap::new();
    let mut waiting = 0usize;
    let mut open = true;
    let mut latencies: Vec<u64> = Vec::new();
    while open || waiting > 0 {
        tokio::select! {
            m = rx.recv(), if open => match m {
                Some(p) => {
                    queues.entry(p.delivery.partition()).or_default().push_back(p);
                    waiting += 1;
                }
                None => open = false,
            },
            () = std::future::poll_fn(|cx| {
                let mut now = None;
                let (mut done, mut measured) = (0u64, 0u64);
                latencies.clear();
                for q in queues.values_mut() {
                    while let Some(front) = q.front_mut() {
                        let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut front.delivery).poll(cx) else {
                            break;
                        };
                        let now = *now.get_or_insert_with(now_ns);
                        match r {
                            Ok(_) => {
                                done += 1;
                                if front.intended >= ctx.warmup_end_ns {
                                    measured += 1;
                                    latencies.push(now.saturating_sub(front.intended));
                                }
                                acked.set(front.seq);
                            }
                            Err(e) => ctx.produced.error(e),
                        }
                        q.pop_front();
                        waiting -= 1;
                    }
                }
                match now {
                    Some(now) => {
                        // One tally per wake-up, not per record.
                        ctx.produced.record_many(
                            done,
                            done * record_bytes,
                            measured,
                            measured * record_bytes,
                            &latencies,
                            now,
                        );
                        std::task::Poll::Ready(())
                    }
                    None => std::task::Poll::Pending,
                }
            }), if waiting > 0 => {}
        }
    }
    acked
}

/// One consumer over `parts`; signals `ready` once positioned. Returns what it verified.
async fn consumer_task(
    ctx: Arc<Ctx>,
    client: Client,
    index: u32,
    parts: Vec<i32>,
    starts: Vec<(i32, u64)>,
    ready: mpsc::Sender<()>,
) -> Verifier {
    let mut verifier = Verifier::default();
    let config = ConsumerConfig {
        fetch_max_wait: Duration::from_millis(100),
        partition_max_bytes: ctx.args.fetch_partition_bytes,
        fetch_max_bytes: ConsumerConfig::default()
            .fetch_max_bytes
            .max(ctx.args.fetch_partition_bytes),
        group_id: ctx.args.group.clone(),
        auto_offset_reset: if ctx.mode == Mode::E2e {
            strata_client::OffsetReset::Latest
        } else {
            strata_client::OffsetReset::Earliest
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = match client.consumer(config) {
        Ok(c) => c,
        Err(e) => {
            ctx.consumed.error(e);
            return verifier;
        }
    };
    let tps: Vec<TopicPartition> = parts.iter().map(|p| TopicPartition::new(&ctx.args.topic, *p)).collect();
    let mut ready = Some(ready);
    if ctx.args.group.is_some() {
        if let Err(e) = consumer.subscribe([ctx.args.topic.clone()]) {
            ctx.consumed.error(e);
            return verifier;
        }
    } else {
        consumer.assign(tps.clone());
    }
    for tp in tps.iter().filter(|_| ctx.args.group.is_none()) {
        let to = match ctx.mode {
            Mode::E2e => Seek::Latest,
            _ => starts
                .iter()
                .find(|(p, _)| *p == tp.partition)
                .map_or(Seek::Earliest, |(_, o)| Seek::Offset(*o)),
        };
        if let Err(e) = consumer.seek(tp, to).await {
            ctx.consumed.error(e);
        }
    }
    if ctx.args.group.is_none() {
        ready = None;
    }
    // A group member is ready once it has partitions, all positioned (or after 30 s).
    let ready_by = tokio::time::Instant::now() + Duration::from_secs(30);
    let record_overhead = ctx.args.key_size as u64;
    let mut latencies: Vec<u64> = Vec::new();
    while !ctx.stop_consumers.load(Ordering::Relaxed)
        && ctx.consumed.done.load(Ordering::Relaxed) < ctx.consume_target.load(Ordering::Relaxed)
    {
        let polled_at = now_ns();
        let records = match consumer.poll(Duration::from_millis(100)).await {
            Ok(r) => r,
            Err(e) => {
                ctx.consumed.error(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if ready.is_some() {
            let assigned = consumer.assignment();
            if (!assigned.is_empty() && assigned.iter().all(|tp| consumer.position(tp).is_some()))
                || tokio::time::Instant::now() >= ready_by
            {
                ready = None;
            }
        }
        if records.is_empty() {
            continue;
        }
        let now = now_ns();
        if ctx.args.group.is_some() {
            let mut flows = ctx.flows.lock().unwrap_or_else(|e| e.into_inner());
            for r in &records {
                let f = flows.entry(r.partition).or_default();
                if let Some(join) = ctx.join_ns
                    && f.last_ns > 0
                    && now >= join
                {
                    // The pause that spans the join counts from the join.
                    let gap = now - f.last_ns.max(join);
                    f.longest_after_join_ns = f.longest_after_join_ns.max(gap);
                }
                f.last_ns = now;
                // Who reads it from the join on: owner changes while the group formed are not
                // moves caused by the join.
                if ctx.join_ns.is_some_and(|join| now >= join) {
                    f.consumers |= 1u64 << index.min(63);
                }
            }
        }
        if ctx.mode == Mode::Consume && now >= ctx.warmup_end_ns {
            ctx.consumed.record_latency(now.saturating_sub(polled_at));
        }
        // Tallied per poll, so the bench's own bookkeeping (locks, atomics) is not per record.
        latencies.clear();
        let (mut done, mut done_bytes, mut measured, mut measured_bytes) = (0u64, 0u64, 0u64, 0u64);
        for r in &records {
            let value = r.value.as_deref().unwrap_or_default();
            let bytes = (value.len() as u64) + r.key.as_ref().map_or(record_overhead, |k| k.len() as u64);
            // The payload checksum is only needed to report corruption (--verify); the batch
            // CRC the client already checked covers the bytes either way.
            let header = if ctx.args.verify {
                let header = payload::read(value);
                match header {
                    Some(h) if h.producer != u32::MAX => verifier.observe(r.partition, h.run, h.producer, h.seq),
                    Some(_) => {}
                    None => verifier.corrupt += 1,
                }
                header
            } else {
                payload::read_unchecked(value)
            };
            done += 1;
            done_bytes += bytes;
            let is_measured = match ctx.mode {
                Mode::E2e => {
                    let intended = header.map_or(now, |h| h.intended_ns);
                    let m = intended >= ctx.warmup_end_ns;
                    if m {
                        latencies.push(now.saturating_sub(intended));
                    }
                    m
                }
                // Consume: the latency is the poll wait, recorded above, not per record.
                _ => now >= ctx.warmup_end_ns,
            };
            if is_measured {
                measured += 1;
                measured_bytes += bytes;
            }
        }
        ctx.consumed
            .record_many(done, done_bytes, measured, measured_bytes, &latencies, now);
    }
    verifier
}

/// Once a second: a line on stderr (a live line with indicatif on a terminal), and a sample
/// for the report. Runs until `stop` fires; returns the samples.
async fn progress_task(ctx: Arc<Ctx>, mut stop: oneshot::Receiver<()>) -> Vec<Sample> {
    let side = if ctx.mode == Mode::Produce {
        &ctx.produced
    } else {
        &ctx.consumed
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut samples = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    let (mut last_n, mut last_b, mut last_ns) = (0u64, 0u64, ctx.start_ns);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = &mut stop => break,
        }
        let now = now_ns();
        let n = side.done.load(Ordering::Relaxed);
        let b = side.done_bytes.load(Ordering::Relaxed);
        let dt = (now.saturating_sub(last_ns) as f64 / 1e9).max(1e-9);
        let secs = now.saturating_sub(ctx.start_ns) as f64 / 1e9;
        let errors = ctx.produced.errors.load(Ordering::Relaxed) + ctx.consumed.errors.load(Ordering::Relaxed);
        let sample = Sample {
            t_s: secs,
            records_per_s: (n - last_n) as f64 / dt,
            mb_per_s: (b - last_b) as f64 / 1e6 / dt,
            latency_ms: side.take_interval(),
            errors,
        };
        samples.push(sample);
        let warm = if now < ctx.warmup_end_ns { " (warmup)" } else { "" };
        let acked = if ctx.mode == Mode::E2e {
            format!("  acked {}", ctx.produced.done.load(Ordering::Relaxed))
        } else {
            String::new()
        };
        let line = format!(
            "{:.0} records/s  {:.2} MB/s  p99 {:.3} ms  errors {errors}{acked}{warm}",
            sample.records_per_s,
            sample.mb_per_s,
            side.latency().p99,
        );
        match &bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("[{secs:6.1}s] {line}"),
        }
        (last_n, last_b, last_ns) = (n, b, now);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    samples
}

fn print_side(name: &str, r: &SideResult) {
    println!(
        "{name}: {} records, {:.1} MB in {:.2} s: {:.0} records/s, {:.2} MB/s",
        r.messages,
        r.bytes as f64 / 1e6,
        r.elapsed_s,
        r.msgs_per_sec,
        r.mb_per_sec
    );
    let l = r.latency_ms;
    println!(
        "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    match &r.first_error {
        Some(e) => println!("  errors: {} (first: {e})", r.errors),
        None => println!("  errors: {}", r.errors),
    }
}

fn print_summary(mode: Mode, produced: &SideResult, consumed: &SideResult, verify: Option<&VerifyResult>) {
    match mode {
        Mode::Produce => print_side("produce (intended send → ack)", produced),
        Mode::Consume => print_side("consume (latency: poll wait)", consumed),
        Mode::E2e => {
            print_side("produce (intended send → ack)", produced);
            print_side("e2e (intended send → receipt)", consumed);
        }
    }
    if let Some(v) = verify {
        println!(
            "verify: lost {}  duplicates {}  reordered {}  corrupt {}  → {}",
            v.lost,
            v.duplicates,
            v.reordered,
            v.corrupt,
            if v.violations == 0 { "OK" } else { "VIOLATIONS" }
        );
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Produce => "produce",
        Mode::Consume => "consume",
        Mode::E2e => "e2e",
    }
}

/// Cores, memory and CPU model of this machine.
fn machine() -> serde_json::Value {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        });
    serde_json::json!({
        "cores": cores,
        "memory_bytes": memory_bytes,
        "cpu": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fast_paced_producers_sleep_in_quanta() {
        // The README's latency rows (1,000 and 10,000 records/s, one producer) keep exact pacing.
        assert_eq!(min_sleep_ns(1_000, 1), 0);
        assert_eq!(min_sleep_ns(10_000, 1), 0);
        assert_eq!(min_sleep_ns(40_000, 4), 0);
        assert_eq!(min_sleep_ns(97_000, 4), PACE_QUANTUM_NS);
        assert_eq!(min_sleep_ns(20_000, 1), PACE_QUANTUM_NS);
        assert_eq!(min_sleep_ns(20_000, 0), PACE_QUANTUM_NS);
    }
}
