//! The broker's Prometheus metrics: every family `GET /metrics` exports, defined in one place.
//!
//! [`Metrics`] owns a [`prometheus::Registry`] (one per broker, so several brokers in one test
//! process never share series). It is created in [`crate::server::run`] and lives on the
//! [`Broker`]; the request handlers, the accept loop and the Raft driver update it, and the HTTP
//! endpoint ([`crate::http`]) encodes it.
//!
//! # Families
//!
//! Every name starts with `strata_` and carries its unit (`_seconds`, `_bytes`, `_total` for
//! counters). Labels are bounded: `api` (the 7 APIs and `unknown`), `error` (the wire error codes,
//! lower case, `none` for success), `topic` (topics that exist: a client naming an unknown topic
//! never creates a series) and `topic`+`partition` (local replicas; switched off with
//! `metrics.per_partition = false`, which leaves only broker-wide series).
//!
//! - Requests (measured once, in [`crate::api::handle`]): `strata_requests_total{api,error}`,
//!   `strata_request_duration_seconds{api}` (read to response ready; long-polling fetches wait
//!   up to their `max_wait`), `strata_requests_in_flight`, `strata_partition_errors_total{api,
//!   error}` (per-partition results of produce, fetch and list offsets that were not `none`),
//!   `strata_fetch_long_polls_waiting`.
//! - Topics: `strata_topic_{bytes,records}_{in,out}_total{topic}` (in: batches a leader accepted
//!   into its log; out: batches returned by fetch; record counts come from batch headers, nothing
//!   is decoded), `strata_produce_batch_size_bytes`.
//! - Partitions, computed at scrape time from atomics the Raft driver publishes (never from the
//!   storage lock, which the driver holds across fsyncs): `strata_partition_log_start_offset`,
//!   `_log_end_offset`, `_high_watermark`, `_size_bytes`, `_segments`, `_leader`, `_failed`,
//!   `strata_raft_term`, `strata_raft_commit_index`, all `{topic,partition}`; and always the
//!   counts `strata_partitions`, `strata_partitions_leader`, `strata_partitions_failed`.
//!   A deleted topic's partitions leave the map, so their series vanish with them; its per-topic
//!   counters are removed when the topic is deleted (`Metrics::remove_topic`).
//! - Storage (driver thread and fsync pool): `strata_storage_append_duration_seconds`,
//!   `strata_storage_fsync_duration_seconds`, `strata_storage_fsyncs_total`,
//!   `strata_storage_synced_bytes_total`.
//! - Raft (driver thread): `strata_raft_leader_changes_total`,
//!   `strata_raft_proposals_dropped_total`, `strata_raft_ready_loop_duration_seconds`,
//!   `strata_raft_quiesced_groups`, `strata_raft_quiesces_total`.
//! - Connections (accept loop): `strata_connections_open`, `strata_connections_accepted_total`,
//!   `strata_connections_refused_total`.
//! - Process (`prometheus`' process collector, Linux): `strata_process_cpu_seconds_total`,
//!   `strata_process_resident_memory_bytes`, `strata_process_virtual_memory_bytes`,
//!   `strata_process_open_fds`, `strata_process_max_fds`, `strata_process_threads`,
//!   `strata_process_start_time_seconds`.
//! - `strata_build_info{version,git_commit}`, always 1.
//!
//! Consumer group lag is not exported: consumer groups do not exist yet. The family
//! (`strata_group_lag{group,topic,partition}`, committed offset vs high watermark, computed at
//! scrape time like the partition gauges) arrives with the group coordinator. Nothing here fakes it.
//!
//! # Cost on the data path
//!
//! Nothing on the produce or fetch path allocates, formats a label or looks one up: per-API
//! histograms sit in an array indexed by API; request and error counters are resolved on first
//! use into `OnceLock` slots indexed by (API, error code); per-topic counters are resolved when a
//! partition opens and kept on it ([`TopicCounters`]). An update is a few relaxed atomic adds.
//! Scrapes run [`Metrics::encode`] on the blocking pool, at most [`MAX_CONCURRENT_SCRAPES`] at
//! once, and never touch a lock the data path waits on for longer than copying the partition map.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use strata_protocol::api::ApiKey;
use strata_protocol::{BatchHeader, ErrorCode};
use tokio::sync::Semaphore;

use crate::partition::Partition;
use crate::server::Broker;

/// The git commit the broker was built from (`broker/build.rs`), or `unknown`.
pub const GIT_COMMIT: &str = env!("STRATA_GIT_COMMIT");

/// Scrapes encoded at once; more wait their turn, so a scraping storm costs at most this many
/// blocking threads.
pub const MAX_CONCURRENT_SCRAPES: usize = 2;

/// One slot per API plus one for requests whose API key is unknown.
const API_SLOTS: usize = ApiKey::ALL.len() + 1;
const UNKNOWN_API: usize = API_SLOTS - 1;
const ERROR_SLOTS: usize = ErrorCode::ALL.len();
/// Codes missing from `ErrorCode::ALL` (none today) are counted as `unknown_server_error`.
const UNKNOWN_ERROR: usize = 0;
const _: () = assert!(matches!(ErrorCode::ALL[UNKNOWN_ERROR], ErrorCode::UnknownServerError));

/// Request latency, from 100 µs (a metadata request) to 30 s (the longest fetch long poll).
const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// One fdatasync: ~0.1 ms on a quiet disk, tens of ms on a busy one.
const FSYNC_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Writing a cycle's entries to the page cache: microseconds, unless a segment rolls (which
/// fsyncs the sealed segment).
const APPEND_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// One Raft ready cycle, fsyncs included.
const READY_LOOP_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Produce batch sizes: 64 B to 16 MiB in powers of 4.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Every metric of one broker. See the module docs for the families.
pub struct Metrics {
    registry: Registry,
    per_partition: bool,
    api_labels: [&'static str; API_SLOTS],
    error_labels: Vec<String>,
    requests_total: IntCounterVec,
    request_counters: Box<[OnceLock<IntCounter>]>,
    request_durations: Vec<Histogram>,
    partition_errors_total: IntCounterVec,
    partition_error_counters: Box<[OnceLock<IntCounter>]>,
    /// Requests being handled (read, response not yet ready).
    pub(crate) requests_in_flight: IntGauge,
    /// Fetches parked until data arrives or their wait ends.
    pub(crate) fetch_long_polls_waiting: IntGauge,
    /// Client connections open.
    pub(crate) connections_open: IntGauge,
    /// Client connections accepted and served.
    pub(crate) connections_accepted: IntCounter,
    /// Client connections closed at once because `listener.max_connections` were open.
    pub(crate) connections_refused: IntCounter,
    topic_bytes_in: IntCounterVec,
    topic_records_in: IntCounterVec,
    topic_bytes_out: IntCounterVec,
    topic_records_out: IntCounterVec,
    /// Sizes of the batches produce requests carry.
    pub(crate) produce_batch_size: Histogram,
    /// Storage timings and volumes (the driver and its fsync threads hold clones).
    pub(crate) storage: StorageMetrics,
    /// Raft driver metrics.
    pub(crate) raft: RaftMetrics,
    scrapes: Arc<Semaphore>,
}

/// Storage metrics, cloneable for the fsync threads.
#[derive(Clone)]
pub struct StorageMetrics {
    /// Writing one ready cycle's entries of one partition to its log.
    pub(crate) append_duration: Histogram,
    /// One group-commit fsync (fdatasync, plus the directory when new segment files exist).
    pub(crate) fsync_duration: Histogram,
    /// Group-commit fsyncs completed.
    pub(crate) fsyncs: IntCounter,
    /// Bytes of Raft entries made durable by group-commit fsyncs.
    pub(crate) synced_bytes: IntCounter,
}

/// Raft driver metrics.
#[derive(Clone)]
pub struct RaftMetrics {
    /// A local replica saw its group elect a new leader.
    pub(crate) leader_changes: IntCounter,
    /// Proposals that will never commit: refused (not leader, failed replica, Raft refused) or
    /// truncated away by a new leader.
    pub(crate) proposals_dropped: IntCounter,
    /// One driver cycle that handled at least one Ready or fsync.
    pub(crate) ready_loop_duration: Histogram,
    /// Local replicas whose group is quiesced (idle: no heartbeats, no ticks).
    pub(crate) quiesced_groups: IntGauge,
    /// Times a local replica's group quiesced.
    pub(crate) quiesces: IntCounter,
}

/// A topic's traffic counters, resolved once when a partition opens and kept on the
/// [`Partition`], so the data path never looks a label up.
#[derive(Debug, Clone)]
pub struct TopicCounters {
    /// Record-batch bytes accepted into the topic's logs as leader.
    pub(crate) bytes_in: IntCounter,
    /// Records in those batches.
    pub(crate) records_in: IntCounter,
    /// Record-batch bytes returned by fetches.
    pub(crate) bytes_out: IntCounter,
    /// Records in those batches.
    pub(crate) records_out: IntCounter,
}

impl TopicCounters {
    /// Counters registered nowhere: for replicas built outside a broker (tests, tools).
    pub fn detached() -> Self {
        let c = || IntCounter::new("strata_detached", "not exported").expect("a valid constant name and help");
        Self {
            bytes_in: c(),
            records_in: c(),
            bytes_out: c(),
            records_out: c(),
        }
    }
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
}

impl Metrics {
    /// Creates every family and registers it, with the process collector and build info.
    /// `per_partition` adds the per-partition gauges once [`register_partitions`] is called.
    ///
    /// [`register_partitions`]: Metrics::register_partitions
    ///
    /// # Errors
    /// A family definition prometheus rejects (a bug, caught by the unit tests).
    pub fn new(per_partition: bool) -> prometheus::Result<Self> {
        let registry = Registry::new();
        fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> prometheus::Result<C> {
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }

        let requests_total = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "strata_requests_total",
                    "Client requests handled, by API and request-level error code (none: the \
                     request was answered; per-partition errors are in strata_partition_errors_total).",
                ),
                &["api", "error"],
            )?,
        )?;
        let durations = reg(
            &registry,
            prometheus::HistogramVec::new(
                HistogramOpts::new(
                    "strata_request_duration_seconds",
                    "Time from reading a client request to its response being ready, by API. \
                     Fetches include their long-poll wait.",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["api"],
            )?,
        )?;
        let api_labels: [&'static str; API_SLOTS] =
            std::array::from_fn(|i| ApiKey::ALL.get(i).map_or("unknown", |k| k.name()));
        let request_durations = api_labels.iter().map(|a| durations.with_label_values(&[a])).collect();
        let partition_errors_total = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "strata_partition_errors_total",
                    "Per-partition results of produce, fetch and list_offsets requests that carried \
                     an error code, by API and error code.",
                ),
                &["api", "error"],
            )?,
        )?;
        let requests_in_flight = reg(
            &registry,
            IntGauge::new(
                "strata_requests_in_flight",
                "Client requests read and being handled, their responses not yet ready.",
            )?,
        )?;
        let fetch_long_polls_waiting = reg(
            &registry,
            IntGauge::new(
                "strata_fetch_long_polls_waiting",
                "Fetch requests parked until enough data arrives or their max wait passes.",
            )?,
        )?;
        let connections_open = reg(
            &registry,
            IntGauge::new("strata_connections_open", "Client connections currently open.")?,
        )?;
        let connections_accepted = reg(
            &registry,
            IntCounter::new(
                "strata_connections_accepted_total",
                "Client connections accepted and served.",
            )?,
        )?;
        let connections_refused = reg(
            &registry,
            IntCounter::new(
                "strata_connections_refused_total",
                "Client connections closed on accept because listener.max_connections were already open.",
            )?,
        )?;
        let topic_vec = |name: &str, help: &str| reg(&registry, IntCounterVec::new(Opts::new(name, help), &["topic"])?);
        let topic_bytes_in = topic_vec(
            "strata_topic_bytes_in_total",
            "Record-batch bytes this broker accepted into the topic's partition logs as leader.",
        )?;
        let topic_records_in = topic_vec(
            "strata_topic_records_in_total",
            "Records this broker accepted into the topic's partition logs as leader (from batch headers).",
        )?;
        let topic_bytes_out = topic_vec(
            "strata_topic_bytes_out_total",
            "Record-batch bytes of the topic returned to fetch requests.",
        )?;
        let topic_records_out = topic_vec(
            "strata_topic_records_out_total",
            "Records of the topic returned to fetch requests (whole batches, from batch headers).",
        )?;
        let produce_batch_size = reg(
            &registry,
            histogram(
                "strata_produce_batch_size_bytes",
                "Size of each valid record batch in produce requests to partitions this broker leads.",
                BATCH_SIZE_BUCKETS,
            )?,
        )?;
        let storage = StorageMetrics {
            append_duration: reg(
                &registry,
                histogram(
                    "strata_storage_append_duration_seconds",
                    "Time to write one ready cycle's new Raft entries to one partition's log \
                     (page cache; a segment roll's fsync included).",
                    APPEND_BUCKETS,
                )?,
            )?,
            fsync_duration: reg(
                &registry,
                histogram(
                    "strata_storage_fsync_duration_seconds",
                    "Duration of one group-commit fsync of a partition log (fdatasync, plus the \
                     directory when new segment files exist).",
                    FSYNC_BUCKETS,
                )?,
            )?,
            fsyncs: reg(
                &registry,
                IntCounter::new(
                    "strata_storage_fsyncs_total",
                    "Group-commit fsyncs of partition logs completed (failed ones included).",
                )?,
            )?,
            synced_bytes: reg(
                &registry,
                IntCounter::new(
                    "strata_storage_synced_bytes_total",
                    "Bytes of Raft entries (record batches) made durable by group-commit fsyncs.",
                )?,
            )?,
        };
        let raft = RaftMetrics {
            leader_changes: reg(
                &registry,
                IntCounter::new(
                    "strata_raft_leader_changes_total",
                    "Times a local partition replica saw its Raft group elect a new leader.",
                )?,
            )?,
            proposals_dropped: reg(
                &registry,
                IntCounter::new(
                    "strata_raft_proposals_dropped_total",
                    "Produce proposals that will never commit: refused (not leader, failed replica, \
                     refused by Raft) or truncated away by a new leader.",
                )?,
            )?,
            ready_loop_duration: reg(
                &registry,
                histogram(
                    "strata_raft_ready_loop_duration_seconds",
                    "Duration of one Raft driver cycle over every group with a Ready (appends, \
                     group-commit fsyncs, hard state, answers).",
                    READY_LOOP_BUCKETS,
                )?,
            )?,
            quiesced_groups: reg(
                &registry,
                IntGauge::new(
                    "strata_raft_quiesced_groups",
                    "Local partition replicas whose Raft group is quiesced: idle, so its leader \
                     sends no heartbeats and no replica ticks it.",
                )?,
            )?,
            quiesces: reg(
                &registry,
                IntCounter::new(
                    "strata_raft_quiesces_total",
                    "Times a local partition replica's Raft group quiesced (went idle: its leader \
                     stopped heartbeating).",
                )?,
            )?,
        };
        let build_info = reg(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "strata_build_info",
                    "Always 1; the labels name the broker's version and the git commit it was built from.",
                ),
                &["version", "git_commit"],
            )?,
        )?;
        build_info.with_label_values(&[crate::VERSION, GIT_COMMIT]).set(1);
        #[cfg(target_os = "linux")]
        if let Ok(pid) = prometheus::process_collector::pid_t::try_from(std::process::id()) {
            registry.register(Box::new(prometheus::process_collector::ProcessCollector::new(
                pid, "strata",
            )))?;
        }

        let metrics = Self {
            registry,
            per_partition,
            api_labels,
            error_labels: ErrorCode::ALL.iter().map(|c| c.name().to_ascii_lowercase()).collect(),
            requests_total,
            request_counters: (0..API_SLOTS * ERROR_SLOTS).map(|_| OnceLock::new()).collect(),
            request_durations,
            partition_errors_total,
            partition_error_counters: (0..API_SLOTS * ERROR_SLOTS).map(|_| OnceLock::new()).collect(),
            requests_in_flight,
            fetch_long_polls_waiting,
            connections_open,
            connections_accepted,
            connections_refused,
            topic_bytes_in,
            topic_records_in,
            topic_bytes_out,
            topic_records_out,
            produce_batch_size,
            storage,
            raft,
            scrapes: Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES)),
        };
        // Successes of every API show from the start (at 0), so rates work from the first scrape.
        for api in 0..UNKNOWN_API {
            metrics.request_counter(api, ErrorCode::None);
        }
        Ok(metrics)
    }

    /// Adds the scrape-time partition gauges, which walk `broker`'s partitions. A weak reference,
    /// because the broker owns these metrics.
    ///
    /// # Errors
    /// As [`Metrics::new`].
    pub fn register_partitions(&self, broker: Weak<Broker>) -> prometheus::Result<()> {
        self.registry
            .register(Box::new(PartitionCollector::new(broker.clone(), self.per_partition)?))?;
        self.registry.register(Box::new(GroupCollector::new(broker)?))
    }

    /// Whether per-partition series are exported (`metrics.per_partition`).
    pub fn per_partition(&self) -> bool {
        self.per_partition
    }

    /// The registry, for gathering.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every family in the Prometheus text format. Walks every partition: run it off the async
    /// workers.
    ///
    /// # Errors
    /// An encoding error (not expected with valid families).
    pub fn encode(&self) -> prometheus::Result<String> {
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(16 << 10);
        TextEncoder::new().encode(&families, &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Limits concurrent scrapes to [`MAX_CONCURRENT_SCRAPES`]; hold the permit while encoding.
    pub(crate) fn scrape_permits(&self) -> Arc<Semaphore> {
        self.scrapes.clone()
    }

    fn api_slot(api_key: i16) -> usize {
        ApiKey::ALL
            .iter()
            .position(|k| *k as i16 == api_key)
            .unwrap_or(UNKNOWN_API)
    }

    fn error_slot(code: ErrorCode) -> usize {
        ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(UNKNOWN_ERROR)
    }

    fn request_counter(&self, api: usize, error: ErrorCode) -> &IntCounter {
        let e = Self::error_slot(error);
        self.request_counters[api * ERROR_SLOTS + e].get_or_init(|| {
            self.requests_total
                .with_label_values(&[self.api_labels[api], self.error_labels[e].as_str()])
        })
    }

    /// Records a handled request: its API key as read from the header (unknown keys count as
    /// `unknown`), its request-level error code and how long it took.
    pub(crate) fn request_finished(&self, api_key: i16, error: ErrorCode, elapsed: Duration) {
        let api = Self::api_slot(api_key);
        self.request_durations[api].observe(elapsed.as_secs_f64());
        self.request_counter(api, error).inc();
    }

    /// Counts one per-partition result of `api` carrying `error` (nothing for `none`).
    pub(crate) fn partition_error(&self, api: ApiKey, error: ErrorCode) {
        if error.is_ok() {
            return;
        }
        let (a, e) = (Self::api_slot(api as i16), Self::error_slot(error));
        self.partition_error_counters[a * ERROR_SLOTS + e]
            .get_or_init(|| {
                self.partition_errors_total
                    .with_label_values(&[self.api_labels[a], self.error_labels[e].as_str()])
            })
            .inc();
    }

    /// A guard counting one request in flight until dropped (a cancelled request included).
    pub(crate) fn request_started(&self) -> GaugeGuard<'_> {
        GaugeGuard::new(&self.requests_in_flight)
    }

    /// The topic's counters (created at 0 on first use).
    pub(crate) fn topic_counters(&self, topic: &str) -> TopicCounters {
        TopicCounters {
            bytes_in: self.topic_bytes_in.with_label_values(&[topic]),
            records_in: self.topic_records_in.with_label_values(&[topic]),
            bytes_out: self.topic_bytes_out.with_label_values(&[topic]),
            records_out: self.topic_records_out.with_label_values(&[topic]),
        }
    }

    /// Drops a deleted topic's series. Counters still held by requests in flight on its old
    /// partitions keep counting, unexported; a topic re-created under the name starts from 0.
    pub(crate) fn remove_topic(&self, topic: &str) {
        for v in [
            &self.topic_bytes_in,
            &self.topic_records_in,
            &self.topic_bytes_out,
            &self.topic_records_out,
        ] {
            // Not found: the topic never got a partition open here.
            let _ = v.remove_label_values(&[topic]);
        }
    }
}

/// Increments a gauge now and decrements it when dropped, so a cancelled future cannot leak it.
pub(crate) struct GaugeGuard<'a>(&'a IntGauge);

impl<'a> GaugeGuard<'a> {
    pub(crate) fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Records in the whole batches of `bytes` (a fetch response's records, which storage has
/// already checked), read from each header's record count; control batches count none. Stops at
/// the first incomplete batch. Nothing is decompressed or decoded.
pub(crate) fn count_records(mut bytes: &[u8]) -> u64 {
    let mut records = 0u64;
    while let Ok(h) = BatchHeader::parse(bytes) {
        // total_len is at least the 12-byte length prefix, so every step makes progress.
        let Some(rest) = bytes.get(h.total_len()..) else {
            break;
        };
        if !h.is_control() {
            records = records.saturating_add(u64::from(h.record_count));
        }
        bytes = rest;
    }
    records
}

/// A per-partition gauge: name, help, and how to read it from the partition's atomics.
struct PartitionGauge {
    name: &'static str,
    help: &'static str,
    value: fn(&Partition) -> u64,
}

const PARTITION_GAUGES: &[PartitionGauge] = &[
    PartitionGauge {
        name: "strata_partition_log_start_offset",
        help: "First record offset still in the partition's log on this broker.",
        value: |p| p.log_start(),
    },
    PartitionGauge {
        name: "strata_partition_log_end_offset",
        help: "Offset the next record appended to the partition's log on this broker will get \
               (appended records, committed or not).",
        value: |p| p.log_end(),
    },
    PartitionGauge {
        name: "strata_partition_high_watermark",
        help: "Offset below which the partition's records are committed and visible to consumers.",
        value: |p| p.high_watermark(),
    },
    PartitionGauge {
        name: "strata_partition_size_bytes",
        help: "Bytes of the partition's segment log files on this broker's disk.",
        value: |p| p.size_bytes(),
    },
    PartitionGauge {
        name: "strata_partition_segments",
        help: "Segments in the partition's log on this broker.",
        value: |p| p.segment_count(),
    },
    PartitionGauge {
        name: "strata_partition_leader",
        help: "1 if this broker leads the partition, else 0.",
        value: |p| u64::from(p.is_leader()),
    },
    PartitionGauge {
        name: "strata_partition_failed",
        help: "1 if the replica failed on an I/O error and serves nothing until the broker restarts, else 0.",
        value: |p| u64::from(p.is_failed()),
    },
    PartitionGauge {
        name: "strata_raft_term",
        help: "Current Raft term of the partition's replica on this broker.",
        value: |p| p.leader_term(),
    },
    PartitionGauge {
        name: "strata_raft_commit_index",
        help: "Raft commit index of the partition's replica on this broker.",
        value: |p| p.commit_index(),
    },
];

/// Broker-wide partition counts, exported whatever `per_partition` says.
const PARTITION_COUNTS: [(&str, &str); 6] = [
    ("strata_partitions", "Partition replicas hosted on this broker."),
    (
        "strata_partitions_leader",
        "Partition replicas on this broker that lead their partition.",
    ),
    (
        "strata_partitions_failed",
        "Partition replicas on this broker that failed on an I/O error and serve nothing until restart.",
    ),
    (
        "strata_partitions_under_replicated",
        "Partitions led by this broker with a replica that is not caught up with the commit index.",
    ),
    (
        "strata_controller_active",
        "1 if this broker leads the controller quorum (the metadata Raft group), else 0.",
    ),
    (
        "strata_raft_peers_connected",
        "Other brokers this broker has an open Raft connection to.",
    ),
];

/// Counters of the Raft transport to other brokers (read from its atomics at scrape time).
const PEER_COUNTERS: [(&str, &str); 3] = [
    (
        "strata_raft_peer_messages_sent_total",
        "Raft messages written to other brokers' connections.",
    ),
    (
        "strata_raft_peer_messages_dropped_total",
        "Raft messages dropped (peer down, queue full, write failed); Raft retransmits.",
    ),
    (
        "strata_raft_peer_connect_failures_total",
        "Failed connection attempts to other brokers.",
    ),
];

/// Reads every local partition's published state at scrape time. It copies the partition map's
/// `Arc`s under its read lock and then reads only atomics, so a scrape never waits for, nor holds
/// up, the driver or a request.
struct PartitionCollector {
    broker: Weak<Broker>,
    per_partition: bool,
    descs: Vec<Desc>,
}

impl PartitionCollector {
    fn new(broker: Weak<Broker>, per_partition: bool) -> prometheus::Result<Self> {
        let mut descs = Vec::new();
        for (name, help) in PARTITION_COUNTS.iter().chain(&PEER_COUNTERS) {
            descs.push(Desc::new((*name).into(), (*help).into(), vec![], HashMap::new())?);
        }
        if per_partition {
            for g in PARTITION_GAUGES {
                descs.push(Desc::new(
                    g.name.into(),
                    g.help.into(),
                    vec!["topic".into(), "partition".into()],
                    HashMap::new(),
                )?);
            }
        }
        Ok(Self {
            broker,
            per_partition,
            descs,
        })
    }
}

fn gauge_family(name: &str, help: &str, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

fn gauge(labels: Vec<proto::LabelPair>, value: u64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    // Offsets and sizes stay far below 2^53 in practice; a double is what the format carries.
    g.set_value(value as f64);
    let mut m = proto::Metric::from_gauge(g);
    m.set_label(labels);
    m
}

fn label(name: &str, value: String) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.into());
    l.set_value(value);
    l
}

impl Collector for PartitionCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(broker) = self.broker.upgrade() else {
            return Vec::new();
        };
        let mut parts: Vec<Arc<Partition>> = broker
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let controller = broker.metadata.get().is_some_and(|m| m.is_leader());
        let peers = broker.peers.as_ref().map(|p| (p.connected_count(), p.stats()));
        drop(broker);
        parts.sort_by(|a, b| a.key.cmp(&b.key));
        let leaders = parts.iter().filter(|p| p.is_leader()).count();
        let failed = parts.iter().filter(|p| p.is_failed()).count();
        let under = parts
            .iter()
            .filter(|p| p.is_leader() && p.is_under_replicated())
            .count();
        let connected = peers.map_or(0, |(c, _)| c);
        let mut out: Vec<MetricFamily> = PARTITION_COUNTS
            .iter()
            .zip([parts.len(), leaders, failed, under, usize::from(controller), connected])
            .map(|((name, help), n)| gauge_family(name, help, vec![gauge(vec![], n as u64)]))
            .collect();
        let stats = peers.map(|(_, s)| s).unwrap_or_default();
        for ((name, help), n) in
            PEER_COUNTERS
                .iter()
                .zip([stats.messages_sent, stats.messages_dropped, stats.connect_failures])
        {
            let mut c = proto::Counter::default();
            c.set_value(n as f64);
            let mut m = proto::Metric::default();
            m.set_counter(c);
            let mut f = gauge_family(name, help, vec![m]);
            f.set_field_type(MetricType::COUNTER);
            out.push(f);
        }
        if self.per_partition {
            for g in PARTITION_GAUGES {
                let metrics = parts
                    .iter()
                    .map(|p| {
                        let labels = vec![
                            label("topic", p.key.topic.clone()),
                            label("partition", p.key.partition.to_string()),
                        ];
                        gauge(labels, (g.value)(p))
                    })
                    .collect();
                out.push(gauge_family(g.name, g.help, metrics));
            }
        }
        out
    }
}

/// The consumer groups this broker coordinates, from the coordinator's last summary (refreshed
/// every second): lag and committed offset per partition, members per group.
struct GroupCollector {
    broker: Weak<Broker>,
    descs: Vec<Desc>,
}

const GROUP_PARTITION_GAUGES: [(&str, &str); 2] = [
    (
        "strata_group_lag",
        "Records a consumer group has not yet committed past: the partition's high watermark minus the group's committed offset (exported by the group's coordinator; for a partition it hosts no replica of, the high watermark the leader last announced, at most half a second old).",
    ),
    (
        "strata_group_committed_offset",
        "A consumer group's committed offset (the next record it will consume) per partition.",
    ),
];

const GROUP_MEMBERS: (&str, &str) = (
    "strata_group_members",
    "Members of a consumer group this broker coordinates.",
);

impl GroupCollector {
    fn new(broker: Weak<Broker>) -> prometheus::Result<Self> {
        let labels = || vec!["group".to_string(), "topic".to_string(), "partition".to_string()];
        let mut descs = Vec::new();
        for (name, help) in GROUP_PARTITION_GAUGES {
            descs.push(Desc::new(name.into(), help.into(), labels(), HashMap::new())?);
        }
        let (members_name, members_help) = GROUP_MEMBERS;
        descs.push(Desc::new(
            members_name.into(),
            members_help.into(),
            vec!["group".into(), "state".into()],
            HashMap::new(),
        )?);
        Ok(Self { broker, descs })
    }
}

impl Collector for GroupCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(broker) = self.broker.upgrade() else {
            return Vec::new();
        };
        let groups = broker.groups.summaries();
        drop(broker);
        let tp_labels = |g: &crate::groups::GroupSummary, p: &crate::groups::PartitionLag| {
            vec![
                label("group", g.group.clone()),
                label("partition", p.partition.to_string()),
                label("topic", p.topic.clone()),
            ]
        };
        let mut lag = Vec::new();
        let mut committed = Vec::new();
        let mut members = Vec::new();
        for g in groups.iter() {
            members.push(gauge(
                vec![label("group", g.group.clone()), label("state", g.state.to_string())],
                g.members as u64,
            ));
            for p in &g.partitions {
                committed.push(gauge(tp_labels(g, p), p.committed.max(0) as u64));
                if let Some(l) = p.lag {
                    lag.push(gauge(tp_labels(g, p), l.max(0) as u64));
                }
            }
        }
        let [(lag_name, lag_help), (c_name, c_help)] = GROUP_PARTITION_GAUGES;
        vec![
            gauge_family(lag_name, lag_help, lag),
            gauge_family(c_name, c_help, committed),
            gauge_family(GROUP_MEMBERS.0, GROUP_MEMBERS.1, members),
        ]
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::{BatchBuilder, BatchOptions, ControlType, control_batch};

    use super::*;

    fn exposition(m: &Metrics) -> String {
        m.encode().unwrap()
    }

    #[test]
    fn every_family_registers_and_follows_the_naming_rules() {
        let m = Metrics::new(true).unwrap();
        let text = exposition(&m);
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split_whitespace().skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            assert!(name.starts_with("strata_"), "{line}");
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        }
        for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(line.split_whitespace().count() > 4, "a meaningful help string: {line}");
        }
        for name in [
            "strata_requests_total",
            "strata_request_duration_seconds",
            "strata_requests_in_flight",
            "strata_fetch_long_polls_waiting",
            "strata_connections_open",
            "strata_connections_accepted_total",
            "strata_produce_batch_size_bytes",
            "strata_storage_fsync_duration_seconds",
            "strata_storage_fsyncs_total",
            "strata_storage_synced_bytes_total",
            "strata_raft_leader_changes_total",
            "strata_raft_proposals_dropped_total",
            "strata_raft_ready_loop_duration_seconds",
            "strata_raft_quiesced_groups",
            "strata_raft_quiesces_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        // Label pairs come out sorted by name.
        let build = format!(
            "strata_build_info{{git_commit=\"{GIT_COMMIT}\",version=\"{}\"}} 1",
            crate::VERSION
        );
        assert!(text.contains(&build), "{build} missing:\n{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("strata_process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn requests_are_counted_by_api_and_error() {
        let m = Metrics::new(false).unwrap();
        let text = exposition(&m);
        assert!(
            text.contains("strata_requests_total{api=\"produce\",error=\"none\"} 0"),
            "{text}"
        );
        m.request_finished(ApiKey::Produce as i16, ErrorCode::None, Duration::from_millis(2));
        m.request_finished(
            ApiKey::Fetch as i16,
            ErrorCode::BrokerShuttingDown,
            Duration::from_millis(1),
        );
        m.request_finished(999, ErrorCode::InvalidRequest, Duration::ZERO);
        m.partition_error(ApiKey::Produce, ErrorCode::NotLeader);
        m.partition_error(ApiKey::Produce, ErrorCode::None);
        let text = exposition(&m);
        for want in [
            "strata_requests_total{api=\"produce\",error=\"none\"} 1",
            "strata_requests_total{api=\"fetch\",error=\"broker_shutting_down\"} 1",
            "strata_requests_total{api=\"unknown\",error=\"invalid_request\"} 1",
            "strata_request_duration_seconds_count{api=\"produce\"} 1",
            "strata_partition_errors_total{api=\"produce\",error=\"not_leader\"} 1",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        assert!(!text.contains("strata_partition_errors_total{api=\"produce\",error=\"none\"}"));
    }

    #[test]
    fn in_flight_guard_undoes_itself() {
        let m = Metrics::new(true).unwrap();
        {
            let _a = m.request_started();
            let _b = m.request_started();
            assert_eq!(m.requests_in_flight.get(), 2);
        }
        assert_eq!(m.requests_in_flight.get(), 0);
    }

    #[test]
    fn deleted_topics_lose_their_series() {
        let m = Metrics::new(true).unwrap();
        let c = m.topic_counters("orders");
        c.bytes_in.inc_by(100);
        c.records_in.inc_by(3);
        let again = m.topic_counters("orders");
        again.bytes_in.inc_by(1);
        let text = exposition(&m);
        assert!(
            text.contains("strata_topic_bytes_in_total{topic=\"orders\"} 101"),
            "{text}"
        );
        assert!(
            text.contains("strata_topic_records_out_total{topic=\"orders\"} 0"),
            "{text}"
        );
        m.remove_topic("orders");
        m.remove_topic("never-existed");
        assert!(!exposition(&m).contains("orders"));
        assert_eq!(
            m.topic_counters("orders").bytes_in.get(),
            0,
            "a re-created topic starts at 0"
        );
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        let batch = |n: usize| {
            let mut b = BatchBuilder::new(BatchOptions::default());
            for i in 0..n {
                b.append(i as i64, None, Some(b"value"), &[]).unwrap();
            }
            b.finish().unwrap()
        };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&batch(3));
        bytes.extend_from_slice(&control_batch(ControlType::Noop, b"", 0).unwrap());
        bytes.extend_from_slice(&batch(5));
        assert_eq!(count_records(&bytes), 8);
        assert_eq!(count_records(&[]), 0);
        // A torn tail stops the walk instead of reading past the end.
        let torn = &bytes[..bytes.len() - 3];
        assert_eq!(count_records(torn), 3);
        assert_eq!(count_records(&bytes[..40]), 0);
    }
}
