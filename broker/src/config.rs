//! The broker's configuration: a TOML file, `STRATA_*` environment variables and command-line flags,
//! layered and validated into the [`BrokerOptions`] the broker library runs with.
//!
//! # Layers
//!
//! Every setting has a default, so `strata-broker` with no file, no environment and no flags serves
//! clients on `127.0.0.1:9700`, keeps data in `./strata-data` and reserves `127.0.0.1:9701` for
//! HTTP. Each layer overrides the one before it, key by key:
//!
//! 1. the defaults (those of [`BrokerOptions::default`]);
//! 2. the TOML file named by `--config FILE` or `STRATA_CONFIG` (none is read otherwise);
//! 3. environment variables `STRATA_<SECTION>_<KEY>`, upper case (`STRATA_NODE_ID`,
//!    `STRATA_LISTENER_MAX_CONNECTIONS`, `STRATA_TOPIC_DEFAULTS_FLUSH`), plus the short aliases
//!    `STRATA_VOTERS`, `STRATA_LISTEN`, `STRATA_ADVERTISED_ADDRESS` and `STRATA_HTTP` that match
//!    the flags;
//! 4. flags (`--node-id`, `--voters`, `--data-dir`, `--listen`, `--advertised-address`, `--http`,
//!    `--max-connections`, `--max-frame-bytes`, `--shutdown-timeout`, `--ready-file`,
//!    `--metrics-per-partition`).
//!
//! clap's own `env` support cannot put the file between the environment and the flags, so
//! [`load`] does the layering itself: clap parses only the flags.
//!
//! Then [`Config::validate`] checks every bound and names the bad key; [`load`] adds where the
//! value came from (file, variable or flag). Unknown keys in the file are rejected, naming the
//! key and the file, so a typo never silently falls back to a default.
//!
//! # Units
//!
//! - Sizes: an integer number of bytes, or an integer with a unit: `KiB`, `MiB`, `GiB`, `TiB`
//!   (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000); `B` means bytes. Units are
//!   case-insensitive and may follow a space: `"64MiB"`, `"64 mib"`, `67108864`. No fractions.
//! - Durations: [`humantime`] syntax with a unit: `"100ms"`, `"30s"`, `"5m"`, `"1h 30m"`, `"7d"`.
//! - Unlimited (`topic_defaults.retention_bytes`, `topic_defaults.retention`): `"unlimited"` or
//!   `-1`.
//! - Flush policy: `"always"`, `"never"` or `"interval:<duration>"` (`"interval:100ms"`).
//! - Booleans: `true` or `false` (a TOML boolean in the file; the words, any case, in the
//!   environment and flags).
//! - Voters (`cluster.voters`): one string, the same in the file, the environment and `--voters`:
//!   comma-separated `ID@HOST:PORT` entries, `"1@broker-1:9700,2@broker-2:9700,3@10.0.0.3:9700"`
//!   (IPv6 hosts in brackets; spaces around entries are ignored). An empty string means unset: a
//!   cluster of one.
//!
//! Relative paths are relative to the broker's working directory, not to the config file.
//!
//! # File format
//!
//! [`EXAMPLE_CONFIG`] lists every key with its default and bounds.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};
use strata_storage::FlushPolicy;
use thiserror::Error;

use strata_protocol::host_aliases::{HostAliasError, HostAliases};

use crate::options::{BrokerOptions, TopicDefaults, Voter};

/// A complete config file: every key, set to its default, with its bounds. Keys whose default is
/// "unset" are commented out. Parsing it gives [`Config::default`] (a test checks).
pub const EXAMPLE_CONFIG: &str = r#"# strata-broker configuration. Every key is optional; the values shown are the defaults.
#
# Sizes: an integer number of bytes, or with a unit: KiB, MiB, GiB, TiB (powers of 1024) or
#   KB, MB, GB, TB (powers of 1000), e.g. "64MiB".
# Durations: a number with a unit: "100ms", "30s", "5m", "1h 30m", "7d".
# Every key can be overridden by an environment variable, and the common ones by a flag (both
# shown above each key); a flag beats the environment, which beats this file.
# Relative paths are relative to the broker's working directory.

# This broker's node id, unique in the cluster. At least 1.
# env STRATA_NODE_ID, flag --node-id
node_id = 1

# Take the node id from the host name instead: the number after its last '-', plus 1, so the
# pods strata-0, strata-1, strata-2 of a Kubernetes StatefulSet are nodes 1, 2, 3. The host name
# is the HOSTNAME environment variable (Kubernetes sets it to the pod name), else the system's.
# Not together with node_id. true or false.
# env STRATA_NODE_ID_FROM_HOSTNAME, flag --node-id-from-hostname
node_id_from_hostname = false

# Where partition logs and metadata live. Not empty.
# env STRATA_DATA_DIR, flag --data-dir
data_dir = "strata-data"

# Once listening, write the bound addresses to this file (for scripts and tests).
# Default: unset (no file).
# env STRATA_READY_FILE, flag --ready-file
# ready_file = "/run/strata/ready"

[cluster]
# The metadata controller quorum: every voter as ID@HOST:PORT, comma-separated in one string,
# where HOST:PORT is that broker's client listener address (host a DNS name or an IP, IPv6 in
# brackets). Ids at least 1 and unique, addresses unique, at most 9 voters, and this broker's
# node_id among them (unless join is set too, below). Give every broker the same list.
# Default: unset (or ""): a cluster of one, this broker its only voter (unless it joins one).
# env STRATA_CLUSTER_VOTERS or STRATA_VOTERS, flag --voters
# voters = "1@broker-1.example.com:9700,2@broker-2.example.com:9700,3@broker-3.example.com:9700"

# Join a running cluster as a data-only broker (not a voter): HOST:PORT of any of its brokers.
# Needs a node_id no other broker has. Once joined, the broker remembers the cluster in its data
# dir and restarts without contacting this address first. With voters set too, only a broker
# whose node_id is not among the voters joins; the voters ignore it (so every broker of a
# StatefulSet can share one config file).
# env STRATA_CLUSTER_JOIN or STRATA_JOIN, flag --join
# join = "broker-1.example.com:9700"

# Host aliases: DNS names and the IP address each stands for, NAME=IP comma-separated, looked
# up before the system resolver for every connection this broker makes (voters, join, peers).
# For running the brokers of a Kubernetes StatefulSet on one machine, each pod's DNS name
# standing for a loopback address; leave unset otherwise. Default: unset.
# env STRATA_CLUSTER_HOST_ALIASES or STRATA_HOST_ALIASES, flag --host-aliases
# host_aliases = "strata-0.strata-headless.default.svc.cluster.local=127.0.0.11"

[listener]
# Client listener, IP:PORT. Port 0 picks a free port.
# env STRATA_LISTENER_LISTEN or STRATA_LISTEN, flag --listen
listen = "127.0.0.1:9700"

# host:port that clients are told to connect to. Default: unset (the bound listen address).
# env STRATA_LISTENER_ADVERTISED_ADDRESS or STRATA_ADVERTISED_ADDRESS, flag --advertised-address
# advertised_address = "broker-1.example.com:9700"

# Largest request frame accepted. 1KiB ..= 1GiB.
# env STRATA_LISTENER_MAX_FRAME_BYTES, flag --max-frame-bytes
max_frame_bytes = "64MiB"

# Most concurrent client connections. 1 ..= 1000000.
# env STRATA_LISTENER_MAX_CONNECTIONS, flag --max-connections
max_connections = 10000

# Most requests read ahead of their responses on one connection. 1 ..= 1024.
# env STRATA_LISTENER_MAX_IN_FLIGHT_PER_CONNECTION
max_in_flight_per_connection = 64

# Close a connection that has sent nothing, with no request in flight, for this long
# (Kafka's connections.max.idle.ms). 1ms ..= 30d.
# env STRATA_LISTENER_IDLE_TIMEOUT
idle_timeout = "10m"

[http]
# HTTP listener (metrics, health, admin), IP:PORT. Must not overlap listener.listen
# (port 0 on both is fine).
# env STRATA_HTTP_LISTEN or STRATA_HTTP, flag --http
listen = "127.0.0.1:9701"

[metrics]
# Export per-partition series on GET /metrics (labels topic and partition: log offsets, size,
# segments, leadership, Raft term and commit index). Turn off on brokers with very many
# partitions; broker-wide and per-topic series remain. true or false.
# env STRATA_METRICS_PER_PARTITION, flag --metrics-per-partition
per_partition = true

# Consumer groups. Group state and committed offsets live in the internal topic
# __consumer_offsets, created on first use.
[groups]
# Partitions of __consumer_offsets (each a Raft group; its leader coordinates the groups that
# hash to it). Fixed once the topic exists. 1 ..= 1000.
# env STRATA_GROUPS_OFFSETS_PARTITIONS
offsets_partitions = 8

# Replication factor of __consumer_offsets, capped at the number of brokers when the topic is
# created. 1 ..= 9.
# env STRATA_GROUPS_OFFSETS_REPLICATION_FACTOR
offsets_replication_factor = 3

# Session timeout of members that do not ask for their own: a member silent this long is
# removed and its partitions move. Within min_session_timeout ..= max_session_timeout.
# env STRATA_GROUPS_SESSION_TIMEOUT
session_timeout = "10s"

# Bounds of the session timeout a member may ask for. 100ms ..= 1h.
# env STRATA_GROUPS_MIN_SESSION_TIMEOUT
min_session_timeout = "1s"
# env STRATA_GROUPS_MAX_SESSION_TIMEOUT
max_session_timeout = "5m"

# How often members heartbeat (five times as often while their partitions move). Less than
# session_timeout. 10ms ..= 1h.
# env STRATA_GROUPS_HEARTBEAT_INTERVAL
heartbeat_interval = "1s"

# Longest a member may take to give up revoked partitions before it is removed, for members
# that do not say (Kafka's max.poll.interval.ms). 1s ..= 1d.
# env STRATA_GROUPS_REBALANCE_TIMEOUT
rebalance_timeout = "5m"

# Most members of one group. 1 ..= 100000.
# env STRATA_GROUPS_MAX_SIZE
max_size = 1000

# A coordinator writes a snapshot of its groups into __consumer_offsets once it has written
# this much since its last one, and every replica deletes the log below it; also the topic's
# segment size (fixed once the topic exists). 64KiB ..= 1GiB.
# env STRATA_GROUPS_OFFSETS_SNAPSHOT_BYTES
offsets_snapshot_bytes = "16MiB"

# A group with no member loses its committed offsets this long after it became empty and after
# its last commit (Kafka's offsets.retention.minutes). Positive, or "unlimited" (also -1).
# env STRATA_GROUPS_OFFSETS_RETENTION
offsets_retention = "7d"

[raft]
# Raft tick interval (election and heartbeat timeouts count ticks). 1ms ..= 10s.
# env STRATA_RAFT_TICK
tick = "100ms"

[retention]
# How often each partition's retention (topic_defaults.retention_bytes and .retention, or the
# topic's own) looks for whole segments to delete (Kafka's log.retention.check.interval.ms).
# 10ms ..= 1d.
# env STRATA_RETENTION_CHECK_INTERVAL
check_interval = "30s"

[shutdown]
# How long SIGTERM/SIGINT waits for in-flight requests before exiting anyway. 0s ..= 1h.
# env STRATA_SHUTDOWN_TIMEOUT, flag --shutdown-timeout
timeout = "30s"

# Settings of topics created without their own.
[topic_defaults]
# Partitions of a topic created without a count. 1 ..= 10000.
# env STRATA_TOPIC_DEFAULTS_PARTITIONS
partitions = 1

# Delete a partition's oldest segments while it is larger than this.
# At least 1 byte, or "unlimited" (also -1).
# env STRATA_TOPIC_DEFAULTS_RETENTION_BYTES
retention_bytes = "unlimited"

# Delete segments whose newest record is older than this. Positive, or "unlimited" (also -1).
# env STRATA_TOPIC_DEFAULTS_RETENTION
retention = "7d"

# Roll to a new segment at this size. 4KiB ..= 2GiB.
# env STRATA_TOPIC_DEFAULTS_SEGMENT_BYTES
segment_bytes = "1GiB"

# Largest record batch accepted. 1KiB ..= 32MiB (and at most listener.max_frame_bytes).
# env STRATA_TOPIC_DEFAULTS_MAX_MESSAGE_BYTES
max_message_bytes = "1MiB"

# When appends are fsynced:
#   "always"              before acknowledging; appends waiting together share one fsync
#   "never"               left to the OS and to segment rolls
#   "interval:<duration>" once the oldest unsynced append is this old, e.g. "interval:100ms";
#                         1ms ..= 1h
# env STRATA_TOPIC_DEFAULTS_FLUSH
flush = "always"
"#;

/// Most entries in `cluster.voters`. Every metadata commit waits for a majority of the voters, so a
/// quorum larger than this only slows commits; five already survive two failures.
pub const MAX_VOTERS: usize = 9;
/// Bounds of `listener.max_frame_bytes`.
pub const MAX_FRAME_BYTES_RANGE: RangeInclusive<u64> = 1 << 10..=1 << 30;
/// Bounds of `listener.max_connections`.
pub const MAX_CONNECTIONS_RANGE: RangeInclusive<usize> = 1..=1_000_000;
/// Bounds of `listener.max_in_flight_per_connection`.
pub const MAX_IN_FLIGHT_RANGE: RangeInclusive<usize> = 1..=1024;
/// Bounds of `listener.idle_timeout`.
pub const IDLE_TIMEOUT_RANGE: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(30 * 86_400);
/// Bounds of `raft.tick`.
pub const RAFT_TICK_RANGE: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(10);
/// Bounds of `retention.check_interval`.
pub const RETENTION_CHECK_RANGE: RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(86_400);
/// Bounds of `shutdown.timeout`.
pub const SHUTDOWN_TIMEOUT_RANGE: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);
/// Bounds of `topic_defaults.partitions`.
pub const PARTITIONS_RANGE: RangeInclusive<u32> = 1..=10_000;
/// Bounds of `topic_defaults.segment_bytes` (the storage engine's limits).
pub const SEGMENT_BYTES_RANGE: RangeInclusive<u64> = 4 << 10..=strata_storage::config::MAX_SEGMENT_BYTES;
/// Smallest `topic_defaults.max_message_bytes`; the largest is 32 MiB and `listener.max_frame_bytes`.
pub const MIN_MESSAGE_BYTES: u64 = 1 << 10;
/// Bounds of the interval in `topic_defaults.flush = "interval:<duration>"`.
pub const FLUSH_INTERVAL_RANGE: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(3600);

// The smallest frame limit still admits the smallest message limit, so no frame limit in bounds
// leaves topic_defaults.max_message_bytes without a valid value.
const _: () = assert!(MIN_MESSAGE_BYTES <= *MAX_FRAME_BYTES_RANGE.start());

/// The broker's configuration as an operator writes it: the TOML file's shape, with human units.
/// [`Config::to_options`] validates it into [`BrokerOptions`]. Missing keys take their defaults;
/// unknown keys are an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This broker's node id, unique in the cluster. Default 1; at least 1.
    pub node_id: u64,
    /// Take the node id from the host name (`HOSTNAME`, else the system's): the number after
    /// its last `-`, plus 1 (a StatefulSet's pod `strata-0` is node 1). Default false; not
    /// together with an explicit `node_id`. [`load`] resolves it into `node_id`.
    pub node_id_from_hostname: bool,
    /// Data directory. Default `strata-data` (relative to the working directory); not empty.
    pub data_dir: PathBuf,
    /// Once listening, write the bound addresses to this file. Default: unset; not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_file: Option<PathBuf>,
    /// `[cluster]`: cluster membership.
    pub cluster: ClusterConfig,
    /// `[listener]`: the client listener.
    pub listener: ListenerConfig,
    /// `[http]`: the HTTP listener.
    pub http: HttpConfig,
    /// `[metrics]`: what `GET /metrics` exports.
    pub metrics: MetricsConfig,
    /// `[groups]`: consumer group coordination.
    pub groups: GroupsConfig,
    /// `[raft]`: consensus timing.
    pub raft: RaftConfig,
    /// `[retention]`: when retention runs.
    pub retention: RetentionConfig,
    /// `[shutdown]`: draining on SIGTERM/SIGINT.
    pub shutdown: ShutdownConfig,
    /// `[topic_defaults]`: settings of topics created without their own.
    pub topic_defaults: TopicDefaultsConfig,
}

/// `[cluster]`: cluster membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The metadata controller quorum, `"ID@HOST:PORT,ID@HOST:PORT,…"` in the file. Default empty
    /// (unset, or `""`): a cluster of one. Otherwise ids ≥ 1 and unique, addresses `host:port`
    /// with a port 1 ..= 65535 and unique, at most [`MAX_VOTERS`] entries, and `node_id` among
    /// the ids.
    #[serde(with = "voters", skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<Voter>,
    /// `host:port` of a broker of a running cluster to join as a data-only broker. Default
    /// unset. With `voters` too, only a broker whose `node_id` is not among them joins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// DNS names standing for IP addresses in this broker's outgoing connections,
    /// `"NAME=IP,NAME=IP"` in the file. Default empty.
    #[serde(with = "host_aliases", skip_serializing_if = "HostAliases::is_empty")]
    pub host_aliases: HostAliases,
}

/// `[listener]`: the client listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to listen on, `IP:PORT`. Default `127.0.0.1:9700`; port 0 picks a free port.
    #[serde(deserialize_with = "de_addr")]
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to. Default: unset (the bound listen address);
    /// the port must be 1 ..= 65535.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    /// Largest request frame accepted, in bytes. Default 64 MiB; 1 KiB ..= 1 GiB.
    #[serde(with = "size")]
    pub max_frame_bytes: u64,
    /// Most concurrent client connections. Default 10,000; 1 ..= 1,000,000.
    pub max_connections: usize,
    /// Most requests read ahead of their responses on one connection. Default 64; 1 ..= 1024.
    pub max_in_flight_per_connection: usize,
    /// Close a connection idle (nothing sent, nothing in flight) this long. Default 10 min;
    /// 1 ms ..= 30 d.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

/// `[http]`: the HTTP listener (metrics, health, admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, `IP:PORT`. Default `127.0.0.1:9701`; must not be the client
    /// listener's address (port 0 on both is fine).
    #[serde(deserialize_with = "de_addr")]
    pub listen: SocketAddr,
}

/// `[metrics]`: what `GET /metrics` exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Export per-partition series (labels `topic`, `partition`). Default true.
    pub per_partition: bool,
}

/// `[raft]`: consensus timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Tick interval. Default 100 ms; 1 ms ..= 10 s.
    #[serde(with = "duration")]
    pub tick: Duration,
}

/// `[groups]`: consumer group coordination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Partitions of `__consumer_offsets`. Default 8; 1 ..= 1000.
    pub offsets_partitions: u32,
    /// Replication factor of `__consumer_offsets` (capped at the broker count). Default 3; 1 ..= 9.
    pub offsets_replication_factor: u32,
    /// Default session timeout. Default 10 s; within the min/max bounds.
    #[serde(with = "duration")]
    pub session_timeout: Duration,
    /// Shortest session timeout a member may ask for. Default 1 s; 100 ms ..= 1 h.
    #[serde(with = "duration")]
    pub min_session_timeout: Duration,
    /// Longest session timeout a member may ask for. Default 5 min; 100 ms ..= 1 h.
    #[serde(with = "duration")]
    pub max_session_timeout: Duration,
    /// Heartbeat interval. Default 1 s; 10 ms ..= 1 h, below `session_timeout`.
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    /// Default rebalance timeout. Default 5 min; 1 s ..= 1 d.
    #[serde(with = "duration")]
    pub rebalance_timeout: Duration,
    /// Most members of a group. Default 1000; 1 ..= 100,000.
    pub max_size: usize,
    /// Snapshot (and segment) size of `__consumer_offsets`. Default 16 MiB; 64 KiB ..= 1 GiB.
    #[serde(with = "size")]
    pub offsets_snapshot_bytes: u64,
    /// Offsets of empty groups expire after this. Default 7 days; positive, or unlimited.
    #[serde(with = "opt_duration")]
    pub offsets_retention: Option<Duration>,
}

/// `[retention]`: when retention runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often retention looks for segments to delete. Default 30 s; 10 ms ..= 1 d.
    #[serde(with = "duration")]
    pub check_interval: Duration,
}

/// `[shutdown]`: draining on SIGTERM/SIGINT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long to wait for in-flight requests before exiting anyway. Default 30 s; 0 s ..= 1 h.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

/// `[topic_defaults]`: settings of topics created without their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaultsConfig {
    /// Partitions of a topic created without a count. Default 1; 1 ..= 10,000.
    pub partitions: u32,
    /// Delete a partition's oldest segments while it is larger than this. Default unlimited
    /// (`None`; `"unlimited"` or `-1` in the file); otherwise at least 1 byte.
    #[serde(with = "opt_size")]
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this. Default 7 days; positive, or
    /// unlimited (`None`; `"unlimited"` or `-1` in the file).
    #[serde(with = "opt_duration")]
    pub retention: Option<Duration>,
    /// Segment size. Default 1 GiB; 4 KiB ..= 2 GiB.
    #[serde(with = "size")]
    pub segment_bytes: u64,
    /// Largest record batch accepted. Default 1 MiB; 1 KiB ..= `listener.max_frame_bytes`.
    #[serde(with = "size")]
    pub max_message_bytes: u64,
    /// When appends are fsynced: `"always"` (default; group commit), `"never"` or
    /// `"interval:<duration>"` with the interval 1 ms ..= 1 h.
    #[serde(with = "flush")]
    pub flush: FlushPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config::from(&BrokerOptions::default())
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Config::default().cluster
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Config::default().listener
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Config::default().http
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Config::default().metrics
    }
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Config::default().groups
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        Config::default().raft
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Config::default().retention
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Config::default().shutdown
    }
}

impl Default for TopicDefaultsConfig {
    fn default() -> Self {
        Config::default().topic_defaults
    }
}

/// Describes options (for example ones a test built) as a config; the defaults come from here.
impl From<&BrokerOptions> for Config {
    fn from(o: &BrokerOptions) -> Self {
        let t = &o.topic_defaults;
        Config {
            node_id: o.node_id,
            node_id_from_hostname: false,
            data_dir: o.data_dir.clone(),
            ready_file: o.ready_file.clone(),
            cluster: ClusterConfig {
                voters: o.voters.clone(),
                join: o.join.clone(),
                host_aliases: o.host_aliases.clone(),
            },
            listener: ListenerConfig {
                listen: o.listen,
                advertised_address: o.advertised_address.clone(),
                max_frame_bytes: u64::try_from(o.max_frame_bytes).unwrap_or(u64::MAX),
                max_connections: o.max_connections,
                max_in_flight_per_connection: o.max_in_flight_per_connection,
                idle_timeout: o.idle_timeout,
            },
            http: HttpConfig { listen: o.http },
            metrics: MetricsConfig {
                per_partition: o.metrics_per_partition,
            },
            groups: GroupsConfig {
                offsets_partitions: o.groups.offsets_partitions,
                offsets_replication_factor: o.groups.offsets_replication_factor,
                session_timeout: o.groups.session_timeout,
                min_session_timeout: o.groups.min_session_timeout,
                max_session_timeout: o.groups.max_session_timeout,
                heartbeat_interval: o.groups.heartbeat_interval,
                rebalance_timeout: o.groups.rebalance_timeout,
                max_size: o.groups.max_size,
                offsets_snapshot_bytes: o.groups.offsets_snapshot_bytes,
                offsets_retention: o.groups.offsets_retention,
            },
            raft: RaftConfig { tick: o.raft_tick },
            retention: RetentionConfig {
                check_interval: o.retention_check_interval,
            },
            shutdown: ShutdownConfig {
                timeout: o.shutdown_timeout,
            },
            topic_defaults: TopicDefaultsConfig {
                partitions: t.partitions,
                retention_bytes: t.retention_bytes,
                retention: t.retention,
                segment_bytes: t.segment_bytes,
                max_message_bytes: u64::from(t.max_message_bytes),
                flush: t.flush,
            },
        }
    }
}

impl Config {
    /// Parses a config file's text. Missing keys take their defaults. Does not validate.
    ///
    /// # Errors
    /// The TOML error, which names the line and the key (for unknown keys and bad values).
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The config as a TOML file (every key; unset optional keys omitted).
    ///
    /// # Errors
    /// A path that is not UTF-8 cannot be written as TOML.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Checks every bound and relationship, naming the first bad key.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with the key, its value and what is wrong (`origin` is `None`;
    /// [`load`] fills it in).
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid(Box::new(InvalidSetting {
                key,
                value: value.to_string(),
                reason: reason.into(),
                origin: None,
                other_key: None,
                other_origin: None,
            })))
        }
        fn conflict(
            key: &'static str,
            value: impl fmt::Display,
            other_key: &'static str,
            reason: String,
        ) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid(Box::new(InvalidSetting {
                key,
                value: value.to_string(),
                reason,
                origin: None,
                other_key: Some(other_key),
                other_origin: None,
            })))
        }
        fn check<T: PartialOrd>(
            key: &'static str,
            value: &T,
            range: &RangeInclusive<T>,
            show: impl Fn(&T) -> String,
        ) -> Result<(), ConfigError> {
            if range.contains(value) {
                return Ok(());
            }
            bad(
                key,
                show(value),
                format!("must be in {} ..= {}", show(range.start()), show(range.end())),
            )
        }
        let fmt_int = |v: &usize| v.to_string();

        if self.node_id == 0 {
            return bad("node_id", 0, "must be at least 1");
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "\"\"", "must not be empty");
        }
        if let Some(f) = &self.ready_file
            && f.as_os_str().is_empty()
        {
            return bad("ready_file", "\"\"", "must not be empty (leave it unset instead)");
        }
        self.validate_voters()?;

        let l = &self.listener;
        if let Some(a) = &l.advertised_address {
            check_host_port(a).or_else(|reason| bad("listener.advertised_address", format!("{a:?}"), reason))?;
        }
        check(
            "listener.max_frame_bytes",
            &l.max_frame_bytes,
            &MAX_FRAME_BYTES_RANGE,
            |v| format_size(*v),
        )?;
        check(
            "listener.max_connections",
            &l.max_connections,
            &MAX_CONNECTIONS_RANGE,
            fmt_int,
        )?;
        check(
            "listener.max_in_flight_per_connection",
            &l.max_in_flight_per_connection,
            &MAX_IN_FLIGHT_RANGE,
            fmt_int,
        )?;
        check("listener.idle_timeout", &l.idle_timeout, &IDLE_TIMEOUT_RANGE, |d| {
            format_duration(*d)
        })?;
        if addresses_overlap(l.listen, self.http.listen) {
            return conflict(
                "http.listen",
                self.http.listen,
                "listener.listen",
                format!("overlaps listener.listen ({}); give HTTP its own port", l.listen),
            );
        }

        let g = &self.groups;
        let fmt_d = |d: &Duration| format_duration(*d);
        check("groups.offsets_partitions", &g.offsets_partitions, &(1..=1000), |v| {
            v.to_string()
        })?;
        check(
            "groups.offsets_replication_factor",
            &g.offsets_replication_factor,
            &(1..=MAX_VOTERS as u32),
            |v| v.to_string(),
        )?;
        let session_bounds = Duration::from_millis(100)..=Duration::from_secs(3600);
        check(
            "groups.min_session_timeout",
            &g.min_session_timeout,
            &session_bounds,
            fmt_d,
        )?;
        check(
            "groups.max_session_timeout",
            &g.max_session_timeout,
            &session_bounds,
            fmt_d,
        )?;
        if g.min_session_timeout > g.max_session_timeout {
            return conflict(
                "groups.min_session_timeout",
                format_duration(g.min_session_timeout),
                "groups.max_session_timeout",
                format!(
                    "must not exceed groups.max_session_timeout ({})",
                    format_duration(g.max_session_timeout)
                ),
            );
        }
        check(
            "groups.session_timeout",
            &g.session_timeout,
            &(g.min_session_timeout..=g.max_session_timeout),
            fmt_d,
        )?;
        check(
            "groups.heartbeat_interval",
            &g.heartbeat_interval,
            &(Duration::from_millis(10)..=Duration::from_secs(3600)),
            fmt_d,
        )?;
        if g.heartbeat_interval >= g.session_timeout {
            return conflict(
                "groups.heartbeat_interval",
                format_duration(g.heartbeat_interval),
                "groups.session_timeout",
                format!(
                    "must be less than groups.session_timeout ({}), or members time out between heartbeats",
                    format_duration(g.session_timeout)
                ),
            );
        }
        check(
            "groups.rebalance_timeout",
            &g.rebalance_timeout,
            &(Duration::from_secs(1)..=Duration::from_secs(86_400)),
            fmt_d,
        )?;
        check("groups.max_size", &g.max_size, &(1..=100_000), fmt_int)?;
        check(
            "groups.offsets_snapshot_bytes",
            &g.offsets_snapshot_bytes,
            &((64 << 10)..=(1 << 30)),
            |v| format_size(*v),
        )?;
        if g.offsets_retention == Some(Duration::ZERO) {
            return bad(
                "groups.offsets_retention",
                "0s",
                "must be positive; use \"unlimited\" to keep offsets forever",
            );
        }

        check("raft.tick", &self.raft.tick, &RAFT_TICK_RANGE, |d| format_duration(*d))?;
        check(
            "retention.check_interval",
            &self.retention.check_interval,
            &RETENTION_CHECK_RANGE,
            |d| format_duration(*d),
        )?;
        check(
            "shutdown.timeout",
            &self.shutdown.timeout,
            &SHUTDOWN_TIMEOUT_RANGE,
            |d| format_duration(*d),
        )?;

        let t = &self.topic_defaults;
        check("topic_defaults.partitions", &t.partitions, &PARTITIONS_RANGE, |v| {
            v.to_string()
        })?;
        if t.retention_bytes == Some(0) {
            return bad(
                "topic_defaults.retention_bytes",
                0,
                "must be at least 1 byte; use \"unlimited\" for no size limit",
            );
        }
        if t.retention == Some(Duration::ZERO) {
            return bad(
                "topic_defaults.retention",
                "0s",
                "must be positive; use \"unlimited\" to keep data forever",
            );
        }
        check(
            "topic_defaults.segment_bytes",
            &t.segment_bytes,
            &SEGMENT_BYTES_RANGE,
            |v| format_size(*v),
        )?;
        if t.max_message_bytes < MIN_MESSAGE_BYTES {
            return bad(
                "topic_defaults.max_message_bytes",
                format_size(t.max_message_bytes),
                format!("must be at least {}", format_size(MIN_MESSAGE_BYTES)),
            );
        }
        let cap = u64::from(crate::topics::MAX_MESSAGE_BYTES);
        if t.max_message_bytes > cap {
            return bad(
                "topic_defaults.max_message_bytes",
                format_size(t.max_message_bytes),
                format!(
                    "must be at most {} (a batch travels to followers in one Raft frame)",
                    format_size(cap)
                ),
            );
        }
        if t.max_message_bytes > l.max_frame_bytes {
            return conflict(
                "topic_defaults.max_message_bytes",
                format_size(t.max_message_bytes),
                "listener.max_frame_bytes",
                format!(
                    "must not exceed listener.max_frame_bytes ({}): a batch travels in one frame",
                    format_size(l.max_frame_bytes)
                ),
            );
        }
        if let FlushPolicy::Interval(d) = t.flush
            && !FLUSH_INTERVAL_RANGE.contains(&d)
        {
            return bad(
                "topic_defaults.flush",
                format_flush(t.flush),
                format!(
                    "the interval must be in {} ..= {}; use \"always\" to sync every append",
                    format_duration(*FLUSH_INTERVAL_RANGE.start()),
                    format_duration(*FLUSH_INTERVAL_RANGE.end())
                ),
            );
        }
        Ok(())
    }

    /// `cluster.voters`: at most [`MAX_VOTERS`], each id ≥ 1, each address `host:port`, no id or
    /// address twice, and this broker's `node_id` among them. Empty is a cluster of one.
    fn validate_voters(&self) -> Result<(), ConfigError> {
        const KEY: &str = "cluster.voters";
        let voters = &self.cluster.voters;
        if let Some(join) = &self.cluster.join {
            let invalid = |reason: String, other_key| {
                Err(ConfigError::Invalid(Box::new(InvalidSetting {
                    key: "cluster.join",
                    value: format!("{join:?}"),
                    reason,
                    origin: None,
                    other_key,
                    other_origin: None,
                })))
            };
            if let Err(reason) = check_host_port(join) {
                return invalid(reason, None);
            }
        }
        if voters.is_empty() {
            return Ok(());
        }
        let value = format!("{:?}", format_voters(voters));
        let invalid = |reason: String, other_key: Option<&'static str>| {
            Err(ConfigError::Invalid(Box::new(InvalidSetting {
                key: KEY,
                value: value.clone(),
                reason,
                origin: None,
                other_key,
                other_origin: None,
            })))
        };
        if voters.len() > MAX_VOTERS {
            return invalid(
                format!(
                    "{} voters; at most {MAX_VOTERS} (every metadata commit waits for a majority, so a larger \
                     quorum only slows commits)",
                    voters.len()
                ),
                None,
            );
        }
        let mut ids = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for v in voters {
            if v.id == 0 {
                return invalid(format!("voter {v}: the id must be at least 1"), None);
            }
            if let Err(reason) = check_host_port(&v.address) {
                return invalid(format!("voter {v}: {reason}"), None);
            }
            if !ids.insert(v.id) {
                return invalid(format!("voter id {} appears more than once", v.id), None);
            }
            // Host names are case-insensitive.
            if !addresses.insert(v.address.to_ascii_lowercase()) {
                return invalid(
                    format!(
                        "address {} appears more than once; each voter is a different broker",
                        v.address
                    ),
                    None,
                );
            }
        }
        if !ids.contains(&self.node_id) && self.cluster.join.is_none() {
            let listed: Vec<String> = ids.iter().map(u64::to_string).collect();
            return invalid(
                format!(
                    "node id {} is not among the voters (ids {}); list this broker in cluster.voters, give it \
                     one of those ids, or set cluster.join too to add it as a data-only broker",
                    self.node_id,
                    listed.join(", ")
                ),
                Some("node_id"),
            );
        }
        Ok(())
    }

    /// Validates the config and converts it to the options the broker runs with.
    ///
    /// # Errors
    /// As [`Config::validate`].
    pub fn to_options(&self) -> Result<BrokerOptions, ConfigError> {
        self.validate()?;
        let too_big = |key: &'static str, value: u64| {
            ConfigError::Invalid(Box::new(InvalidSetting {
                key,
                value: format_size(value),
                reason: "too large for this platform".into(),
                origin: None,
                other_key: None,
                other_origin: None,
            }))
        };
        let l = &self.listener;
        let t = &self.topic_defaults;
        Ok(BrokerOptions {
            node_id: self.node_id,
            voters: self.cluster.voters.clone(),
            join: self.cluster.join.clone(),
            host_aliases: self.cluster.host_aliases.clone(),
            listen: l.listen,
            advertised_address: l.advertised_address.clone(),
            http: self.http.listen,
            data_dir: self.data_dir.clone(),
            max_frame_bytes: usize::try_from(l.max_frame_bytes)
                .map_err(|_| too_big("listener.max_frame_bytes", l.max_frame_bytes))?,
            max_connections: l.max_connections,
            max_in_flight_per_connection: l.max_in_flight_per_connection,
            idle_timeout: l.idle_timeout,
            shutdown_timeout: self.shutdown.timeout,
            raft_tick: self.raft.tick,
            retention_check_interval: self.retention.check_interval,
            topic_defaults: TopicDefaults {
                partitions: t.partitions,
                retention_bytes: t.retention_bytes,
                retention: t.retention,
                segment_bytes: t.segment_bytes,
                max_message_bytes: u32::try_from(t.max_message_bytes)
                    .map_err(|_| too_big("topic_defaults.max_message_bytes", t.max_message_bytes))?,
                flush: t.flush,
            },
            ready_file: self.ready_file.clone(),
            metrics_per_partition: self.metrics.per_partition,
            groups: crate::options::GroupOptions {
                offsets_partitions: self.groups.offsets_partitions,
                offsets_replication_factor: self.groups.offsets_replication_factor,
                session_timeout: self.groups.session_timeout,
                min_session_timeout: self.groups.min_session_timeout,
                max_session_timeout: self.groups.max_session_timeout,
                heartbeat_interval: self.groups.heartbeat_interval,
                rebalance_timeout: self.groups.rebalance_timeout,
                max_size: self.groups.max_size,
                offsets_snapshot_bytes: self.groups.offsets_snapshot_bytes,
                offsets_retention: self.groups.offsets_retention,
            },
        })
    }
}

/// One line of `key=value` pairs, every key, in file order (for logs).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in SETTINGS.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", s.key, quote((s.get)(self)))?;
        }
        Ok(())
    }
}

/// Whether two listeners would fight over a port: same non-zero port, and the same IP or either
/// one a wildcard. Port 0 asks the OS for a fresh port each time, so it never conflicts.
fn addresses_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `host:port` with a non-empty host and a port 1 ..= 65535 (IPv6 hosts in brackets).
fn check_host_port(a: &str) -> Result<(), String> {
    let hint = "expected host:port, e.g. broker-1.example.com:9700 or [::1]:9700";
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(format!("no port; {hint}"));
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!("bad host; {hint}"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("an IPv6 host needs brackets; {hint}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("port must be 1 ..= 65535; {hint}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Units

/// Parses a size: an integer number of bytes, optionally followed (after optional spaces) by a
/// case-insensitive unit `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) or `KB`, `MB`, `GB`,
/// `TB` (powers of 1000).
///
/// # Errors
/// A message quoting the input: no digits, fractions, unknown units, or overflow.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let units = "an integer number of bytes, optionally with a unit: KiB, MiB, GiB, TiB (powers of 1024) \
                 or KB, MB, GB, TB (powers of 1000), e.g. \"64MiB\"";
    if digits.is_empty() {
        return Err(format!("invalid size {s:?}: expected {units}"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("invalid size {s:?}: too large"))?;
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("invalid size {s:?}: expected {units}")),
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// Formats a size in the largest binary unit that divides it exactly (`"64MiB"`), else as a
/// plain number of bytes. [`parse_size`] reads it back.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Parses a duration with [`humantime`]: `"100ms"`, `"30s"`, `"1h 30m"`, `"7d"`. A unit is
/// required.
///
/// # Errors
/// A message quoting the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e}; expected e.g. \"100ms\", \"30s\", \"7d\""))
}

/// Formats a duration the way [`parse_duration`] reads it back (`"100ms"`, `"7days"`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses a flush policy: `"always"`, `"never"` or `"interval:<duration>"`.
///
/// # Errors
/// A message quoting the input.
pub fn parse_flush(s: &str) -> Result<FlushPolicy, String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "always" => Ok(FlushPolicy::Always),
        "never" => Ok(FlushPolicy::Never),
        _ => match lower.strip_prefix("interval:") {
            // Slice the original, not the lowercased copy: humantime's `M` (months) is case-sensitive.
            Some(_) => parse_duration(&s["interval:".len()..]).map(FlushPolicy::Interval),
            None => Err(format!(
                "invalid flush policy {s:?}: expected \"always\", \"never\" or \"interval:<duration>\" \
                 (e.g. \"interval:100ms\")"
            )),
        },
    }
}

/// Parses a boolean: `true` or `false`, any case.
///
/// # Errors
/// A message quoting the input.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!("invalid boolean {s:?}: expected true or false"))
    }
}

/// Parses a voter list: comma-separated `ID@HOST:PORT` entries (spaces around entries and around
/// `@` are ignored); an empty string is the empty list. Only the shape is checked here (one `@`,
/// an integer id, something after the `@`); [`Config::validate`] checks ids, addresses and ports.
///
/// # Errors
/// A message quoting the bad entry.
pub fn parse_voters(s: &str) -> Result<Vec<Voter>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let expected = "expected ID@HOST:PORT entries separated by commas, e.g. \"1@broker-1:9700,2@broker-2:9700\"";
    s.split(',')
        .map(|entry| {
            let entry = entry.trim();
            let Some((id, address)) = entry.split_once('@') else {
                return Err(format!("invalid voter {entry:?}: {expected}"));
            };
            let id = id
                .trim()
                .parse()
                .map_err(|_| format!("invalid voter {entry:?}: the id must be an integer; {expected}"))?;
            let address = address.trim();
            if address.is_empty() {
                return Err(format!("invalid voter {entry:?}: no address; {expected}"));
            }
            if address.contains('@') {
                return Err(format!("invalid voter {entry:?}: more than one @; {expected}"));
            }
            Ok(Voter {
                id,
                address: address.to_owned(),
            })
        })
        .collect()
}

/// Formats voters the way [`parse_voters`] reads them back: `1@a:9700,2@b:9700` (empty for none).
pub fn format_voters(voters: &[Voter]) -> String {
    voters.iter().map(Voter::to_string).collect::<Vec<_>>().join(",")
}

/// Formats a flush policy the way [`parse_flush`] reads it back.
pub fn format_flush(f: FlushPolicy) -> String {
    match f {
        FlushPolicy::Always => "always".into(),
        FlushPolicy::Never => "never".into(),
        FlushPolicy::Interval(d) => format!("interval:{}", format_duration(d)),
    }
}

/// `"unlimited"` (any case) or `-1`.
fn is_unlimited(s: &str) -> bool {
    let s = s.trim();
    s == "-1" || s.eq_ignore_ascii_case("unlimited")
}

const UNLIMITED: &str = "unlimited";

/// serde for sizes: an integer or a size string; written back with a unit where exact.
mod size {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        let text = super::format_size(*v);
        match text.parse::<u64>() {
            Ok(n) => s.serialize_u64(n),
            Err(_) => s.serialize_str(&text),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(super::SizeVisitor { unlimited: false })?
            .ok_or_else(|| serde::de::Error::custom("a size is required here"))
    }
}

/// serde for sizes that may be `"unlimited"` / `-1` (`None`).
mod opt_size {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::size::serialize(v, s),
            None => s.serialize_str(super::UNLIMITED),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(super::SizeVisitor { unlimited: true })
    }
}

struct SizeVisitor {
    unlimited: bool,
}

impl serde::de::Visitor<'_> for SizeVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unlimited {
            f.write_str("a size such as 1073741824 or \"10GiB\", or \"unlimited\" (or -1)")
        } else {
            f.write_str("a size such as 1048576 or \"64MiB\"")
        }
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if self.unlimited && v == -1 {
            return Ok(None);
        }
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if self.unlimited && is_unlimited(v) {
            return Ok(None);
        }
        parse_size(v).map(Some).map_err(E::custom)
    }
}

/// serde for durations: a humantime string.
mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(super::DurationVisitor { unlimited: false })?
            .ok_or_else(|| serde::de::Error::custom("a duration is required here"))
    }
}

/// serde for durations that may be `"unlimited"` / `-1` (`None`).
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::duration::serialize(v, s),
            None => s.serialize_str(super::UNLIMITED),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(super::DurationVisitor { unlimited: true })
    }
}

struct DurationVisitor {
    unlimited: bool,
}

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unlimited {
            f.write_str("a duration with a unit such as \"7d\", or \"unlimited\" (or -1)")
        } else {
            f.write_str("a duration with a unit such as \"30s\" or \"100ms\"")
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if self.unlimited && v == -1 {
            return Ok(None);
        }
        Err(E::invalid_type(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Err(E::invalid_type(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if self.unlimited && is_unlimited(v) {
            return Ok(None);
        }
        parse_duration(v).map(Some).map_err(E::custom)
    }
}

/// serde for listen addresses: the standard parser, with a hint in the error.
fn de_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    addr(&s).map_err(serde::de::Error::custom)
}

/// serde for voters: one `"ID@HOST:PORT,…"` string.
mod voters {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::options::Voter;

    pub fn serialize<S: Serializer>(v: &[Voter], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_voters(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Voter>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_voters(&s).map_err(serde::de::Error::custom)
    }
}

/// serde for host aliases: one `"NAME=IP,…"` string.
mod host_aliases {
    use serde::{Deserialize, Deserializer, Serializer};
    use strata_protocol::host_aliases::HostAliases;

    pub fn serialize<S: Serializer>(v: &HostAliases, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HostAliases, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// serde for the flush policy: `"always"`, `"never"`, `"interval:<duration>"`.
mod flush {
    use serde::{Deserialize, Deserializer, Serializer};
    use strata_storage::FlushPolicy;

    pub fn serialize<S: Serializer>(v: &FlushPolicy, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_flush(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FlushPolicy, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_flush(&s).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// The settings table: every key, its environment variables, how to set it from a string and how
// to show it. It drives the environment layer, the log line and `--help`, so a key added to
// `Config` and here is covered by all three.

struct Setting {
    /// Dotted path in the file.
    key: &'static str,
    /// `STRATA_` + the key upper-cased with `.` as `_`.
    env: &'static str,
    /// A shorter variable matching the flag, if any.
    env_alias: Option<&'static str>,
    /// The flag that sets it, if any.
    flag: Option<&'static str>,
    set: fn(&mut Config, &str) -> Result<(), String>,
    get: fn(&Config) -> String,
}

fn int<T: std::str::FromStr>(v: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    v.parse().map_err(|e| format!("expected an integer: {e}"))
}

fn addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("invalid address {v:?}: expected IP:PORT, e.g. 127.0.0.1:9700 or [::1]:9700"))
}

fn path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn unset_or(v: Option<String>) -> String {
    v.unwrap_or_else(|| "unset".into())
}

const SETTINGS: &[Setting] = &[
    Setting {
        key: "node_id",
        env: "STRATA_NODE_ID",
        env_alias: None,
        flag: Some("--node-id"),
        set: |c, v| {
            c.node_id = int(v)?;
            Ok(())
        },
        get: |c| c.node_id.to_string(),
    },
    Setting {
        key: "node_id_from_hostname",
        env: "STRATA_NODE_ID_FROM_HOSTNAME",
        env_alias: None,
        flag: Some("--node-id-from-hostname"),
        set: |c, v| {
            c.node_id_from_hostname = parse_bool(v)?;
            Ok(())
        },
        get: |c| c.node_id_from_hostname.to_string(),
    },
    Setting {
        key: "data_dir",
        env: "STRATA_DATA_DIR",
        env_alias: None,
        flag: Some("--data-dir"),
        set: |c, v| {
            c.data_dir = PathBuf::from(v);
            Ok(())
        },
        get: |c| c.data_dir.display().to_string(),
    },
    Setting {
        key: "ready_file",
        env: "STRATA_READY_FILE",
        env_alias: None,
        flag: Some("--ready-file"),
        set: |c, v| {
            c.ready_file = path(v);
            Ok(())
        },
        get: |c| unset_or(c.ready_file.as_ref().map(|p| p.display().to_string())),
    },
    Setting {
        key: "cluster.voters",
        env: "STRATA_CLUSTER_VOTERS",
        env_alias: Some("STRATA_VOTERS"),
        flag: Some("--voters"),
        set: |c, v| {
            c.cluster.voters = parse_voters(v)?;
            Ok(())
        },
        get: |c| {
            if c.cluster.voters.is_empty() {
                "unset".into()
            } else {
                format_voters(&c.cluster.voters)
            }
        },
    },
    Setting {
        key: "cluster.join",
        env: "STRATA_CLUSTER_JOIN",
        env_alias: Some("STRATA_JOIN"),
        flag: Some("--join"),
        set: |c, v| {
            c.cluster.join = (!v.trim().is_empty()).then(|| v.trim().to_string());
            Ok(())
        },
        get: |c| unset_or(c.cluster.join.clone()),
    },
    Setting {
        key: "cluster.host_aliases",
        env: "STRATA_CLUSTER_HOST_ALIASES",
        env_alias: Some("STRATA_HOST_ALIASES"),
        flag: Some("--host-aliases"),
        set: |c, v| {
            c.cluster.host_aliases = v.parse().map_err(|e: HostAliasError| e.to_string())?;
            Ok(())
        },
        get: |c| {
            if c.cluster.host_aliases.is_empty() {
                "unset".into()
            } else {
                c.cluster.host_aliases.to_string()
            }
        },
    },
    Setting {
        key: "listener.listen",
        env: "STRATA_LISTENER_LISTEN",
        env_alias: Some("STRATA_LISTEN"),
        flag: Some("--listen"),
        set: |c, v| {
            c.listener.listen = addr(v)?;
            Ok(())
        },
        get: |c| c.listener.listen.to_string(),
    },
    Setting {
        key: "listener.advertised_address",
        env: "STRATA_LISTENER_ADVERTISED_ADDRESS",
        env_alias: Some("STRATA_ADVERTISED_ADDRESS"),
        flag: Some("--advertised-address"),
        set: |c, v| {
            c.listener.advertised_address = (!v.is_empty()).then(|| v.to_owned());
            Ok(())
        },
        get: |c| unset_or(c.listener.advertised_address.clone()),
    },
    Setting {
        key: "listener.max_frame_bytes",
        env: "STRATA_LISTENER_MAX_FRAME_BYTES",
        env_alias: None,
        flag: Some("--max-frame-bytes"),
        set: |c, v| {
            c.listener.max_frame_bytes = parse_size(v)?;
            Ok(())
        },
        get: |c| format_size(c.listener.max_frame_bytes),
    },
    Setting {
        key: "listener.max_connections",
        env: "STRATA_LISTENER_MAX_CONNECTIONS",
        env_alias: None,
        flag: Some("--max-connections"),
        set: |c, v| {
            c.listener.max_connections = int(v)?;
            Ok(())
        },
        get: |c| c.listener.max_connections.to_string(),
    },
    Setting {
        key: "listener.max_in_flight_per_connection",
        env: "STRATA_LISTENER_MAX_IN_FLIGHT_PER_CONNECTION",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.listener.max_in_flight_per_connection = int(v)?;
            Ok(())
        },
        get: |c| c.listener.max_in_flight_per_connection.to_string(),
    },
    Setting {
        key: "listener.idle_timeout",
        env: "STRATA_LISTENER_IDLE_TIMEOUT",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.listener.idle_timeout = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.listener.idle_timeout),
    },
    Setting {
        key: "http.listen",
        env: "STRATA_HTTP_LISTEN",
        env_alias: Some("STRATA_HTTP"),
        flag: Some("--http"),
        set: |c, v| {
            c.http.listen = addr(v)?;
            Ok(())
        },
        get: |c| c.http.listen.to_string(),
    },
    Setting {
        key: "metrics.per_partition",
        env: "STRATA_METRICS_PER_PARTITION",
        env_alias: None,
        flag: Some("--metrics-per-partition"),
        set: |c, v| {
            c.metrics.per_partition = parse_bool(v)?;
            Ok(())
        },
        get: |c| c.metrics.per_partition.to_string(),
    },
    Setting {
        key: "groups.offsets_partitions",
        env: "STRATA_GROUPS_OFFSETS_PARTITIONS",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.offsets_partitions = int(v)?;
            Ok(())
        },
        get: |c| c.groups.offsets_partitions.to_string(),
    },
    Setting {
        key: "groups.offsets_replication_factor",
        env: "STRATA_GROUPS_OFFSETS_REPLICATION_FACTOR",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.offsets_replication_factor = int(v)?;
            Ok(())
        },
        get: |c| c.groups.offsets_replication_factor.to_string(),
    },
    Setting {
        key: "groups.session_timeout",
        env: "STRATA_GROUPS_SESSION_TIMEOUT",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.session_timeout = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.groups.session_timeout),
    },
    Setting {
        key: "groups.min_session_timeout",
        env: "STRATA_GROUPS_MIN_SESSION_TIMEOUT",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.min_session_timeout = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.groups.min_session_timeout),
    },
    Setting {
        key: "groups.max_session_timeout",
        env: "STRATA_GROUPS_MAX_SESSION_TIMEOUT",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.max_session_timeout = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.groups.max_session_timeout),
    },
    Setting {
        key: "groups.heartbeat_interval",
        env: "STRATA_GROUPS_HEARTBEAT_INTERVAL",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.heartbeat_interval = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.groups.heartbeat_interval),
    },
    Setting {
        key: "groups.rebalance_timeout",
        env: "STRATA_GROUPS_REBALANCE_TIMEOUT",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.rebalance_timeout = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.groups.rebalance_timeout),
    },
    Setting {
        key: "groups.max_size",
        env: "STRATA_GROUPS_MAX_SIZE",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.max_size = int(v)?;
            Ok(())
        },
        get: |c| c.groups.max_size.to_string(),
    },
    Setting {
        key: "groups.offsets_snapshot_bytes",
        env: "STRATA_GROUPS_OFFSETS_SNAPSHOT_BYTES",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.offsets_snapshot_bytes = parse_size(v)?;
            Ok(())
        },
        get: |c| format_size(c.groups.offsets_snapshot_bytes),
    },
    Setting {
        key: "groups.offsets_retention",
        env: "STRATA_GROUPS_OFFSETS_RETENTION",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.groups.offsets_retention = if is_unlimited(v) {
                None
            } else {
                Some(parse_duration(v)?)
            };
            Ok(())
        },
        get: |c| c.groups.offsets_retention.map_or(UNLIMITED.into(), format_duration),
    },
    Setting {
        key: "raft.tick",
        env: "STRATA_RAFT_TICK",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.raft.tick = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.raft.tick),
    },
    Setting {
        key: "retention.check_interval",
        env: "STRATA_RETENTION_CHECK_INTERVAL",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.retention.check_interval = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.retention.check_interval),
    },
    Setting {
        key: "shutdown.timeout",
        env: "STRATA_SHUTDOWN_TIMEOUT",
        env_alias: None,
        flag: Some("--shutdown-timeout"),
        set: |c, v| {
            c.shutdown.timeout = parse_duration(v)?;
            Ok(())
        },
        get: |c| format_duration(c.shutdown.timeout),
    },
    Setting {
        key: "topic_defaults.partitions",
        env: "STRATA_TOPIC_DEFAULTS_PARTITIONS",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.topic_defaults.partitions = int(v)?;
            Ok(())
        },
        get: |c| c.topic_defaults.partitions.to_string(),
    },
    Setting {
        key: "topic_defaults.retention_bytes",
        env: "STRATA_TOPIC_DEFAULTS_RETENTION_BYTES",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.topic_defaults.retention_bytes = if is_unlimited(v) { None } else { Some(parse_size(v)?) };
            Ok(())
        },
        get: |c| c.topic_defaults.retention_bytes.map_or(UNLIMITED.into(), format_size),
    },
    Setting {
        key: "topic_defaults.retention",
        env: "STRATA_TOPIC_DEFAULTS_RETENTION",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.topic_defaults.retention = if is_unlimited(v) {
                None
            } else {
                Some(parse_duration(v)?)
            };
            Ok(())
        },
        get: |c| c.topic_defaults.retention.map_or(UNLIMITED.into(), format_duration),
    },
    Setting {
        key: "topic_defaults.segment_bytes",
        env: "STRATA_TOPIC_DEFAULTS_SEGMENT_BYTES",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.topic_defaults.segment_bytes = parse_size(v)?;
            Ok(())
        },
        get: |c| format_size(c.topic_defaults.segment_bytes),
    },
    Setting {
        key: "topic_defaults.max_message_bytes",
        env: "STRATA_TOPIC_DEFAULTS_MAX_MESSAGE_BYTES",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.topic_defaults.max_message_bytes = parse_size(v)?;
            Ok(())
        },
        get: |c| format_size(c.topic_defaults.max_message_bytes),
    },
    Setting {
        key: "topic_defaults.flush",
        env: "STRATA_TOPIC_DEFAULTS_FLUSH",
        env_alias: None,
        flag: None,
        set: |c, v| {
            c.topic_defaults.flush = parse_flush(v)?;
            Ok(())
        },
        get: |c| format_flush(c.topic_defaults.flush),
    },
];

/// The variable naming the config file (the flag `--config` beats it).
pub const CONFIG_ENV: &str = "STRATA_CONFIG";

/// Every setting as (file key, environment variables), in file order; the first variable is
/// `STRATA_<SECTION>_<KEY>`, a second one is its short alias.
pub fn env_vars() -> impl Iterator<Item = (&'static str, Vec<&'static str>)> {
    SETTINGS
        .iter()
        .map(|s| (s.key, std::iter::once(s.env).chain(s.env_alias).collect()))
}

/// Quotes a value for the `key=value` log line if it would otherwise be ambiguous.
fn quote(v: String) -> String {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
        format!("{v:?}")
    } else {
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Flags

/// The Strata broker: serves clients (default 127.0.0.1:9700) and HTTP (default 127.0.0.1:9701),
/// keeping data in ./strata-data.
#[derive(Debug, Parser)]
#[command(name = "strata-broker", version, about, long_about = None)]
struct Cli {
    /// TOML config file; without one, only defaults, environment and flags apply [env: STRATA_CONFIG]
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// This broker's node id, at least 1 [default: 1] [env: STRATA_NODE_ID]
    #[arg(long, value_name = "ID")]
    node_id: Option<u64>,

    /// Node id from the host name: the number after its last '-', plus 1 (pod strata-0 is node 1)
    /// [env: STRATA_NODE_ID_FROM_HOSTNAME=true]
    #[arg(long)]
    node_id_from_hostname: bool,

    /// Metadata controller quorum: every voter (this broker too) as ID@HOST:PORT of its client listener,
    /// comma-separated [default: none, a cluster of one] [env: STRATA_VOTERS]
    #[arg(long, value_name = "ID@HOST:PORT,...", value_parser = parse_voter_list)]
    voters: Option<VoterList>,

    /// Join a running cluster through this broker, as a data-only broker (with --voters: only if this
    /// broker is not one of them) [default: none] [env: STRATA_JOIN]
    #[arg(long, value_name = "HOST:PORT")]
    join: Option<String>,

    /// DNS names standing for IP addresses in this broker's outgoing connections, NAME=IP,... (for
    /// running a StatefulSet's brokers on one machine) [default: none] [env: STRATA_HOST_ALIASES]
    #[arg(long, value_name = "NAME=IP,...", value_parser = parse_host_aliases)]
    host_aliases: Option<HostAliases>,

    /// Data directory [default: strata-data] [env: STRATA_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Client listener, IP:PORT; port 0 picks a free port [default: 127.0.0.1:9700] [env: STRATA_LISTEN]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// host:port clients are told to connect to [default: the bound listen address] [env: STRATA_ADVERTISED_ADDRESS]
    #[arg(long, value_name = "HOST:PORT")]
    advertised_address: Option<String>,

    /// HTTP listener (metrics, health, admin), IP:PORT [default: 127.0.0.1:9701] [env: STRATA_HTTP]
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,

    /// Most concurrent client connections, 1..=1000000 [default: 10000] [env: STRATA_LISTENER_MAX_CONNECTIONS]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Largest request frame, 1KiB..=1GiB [default: 64MiB] [env: STRATA_LISTENER_MAX_FRAME_BYTES]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_frame_bytes: Option<u64>,

    /// How long SIGTERM waits for in-flight requests, 0s..=1h [default: 30s] [env: STRATA_SHUTDOWN_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    shutdown_timeout: Option<Duration>,

    /// Once listening, write the bound addresses to FILE [default: none] [env: STRATA_READY_FILE]
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,

    /// Export per-partition series on GET /metrics, true or false [default: true] [env: STRATA_METRICS_PER_PARTITION]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool)]
    metrics_per_partition: Option<bool>,
}

/// `--voters`' value. A newtype because clap's derive reads an `Option<Vec<_>>` field as a flag
/// taking several values.
#[derive(Debug, Clone)]
struct VoterList(Vec<Voter>);

fn parse_voter_list(s: &str) -> Result<VoterList, String> {
    parse_voters(s).map(VoterList)
}

fn parse_host_aliases(s: &str) -> Result<HostAliases, String> {
    s.parse().map_err(|e: HostAliasError| e.to_string())
}

impl Cli {
    /// Applies every flag given over `config`, recording each as the origin of its key.
    fn apply(self, config: &mut Config, origins: &mut BTreeMap<&'static str, Origin>) {
        let mut set = |key: &'static str, flag: &'static str, apply: &dyn Fn(&mut Config)| {
            apply(config);
            origins.insert(key, Origin::Flag(flag));
        };
        if let Some(v) = self.node_id {
            set("node_id", "--node-id", &|c| c.node_id = v);
        }
        if self.node_id_from_hostname {
            set("node_id_from_hostname", "--node-id-from-hostname", &|c| {
                c.node_id_from_hostname = true
            });
        }
        if let Some(v) = self.host_aliases {
            set("cluster.host_aliases", "--host-aliases", &|c| {
                c.cluster.host_aliases = v.clone()
            });
        }
        if let Some(VoterList(v)) = self.voters {
            set("cluster.voters", "--voters", &|c| c.cluster.voters = v.clone());
        }
        if let Some(v) = self.join {
            set("cluster.join", "--join", &|c| {
                c.cluster.join = (!v.trim().is_empty()).then(|| v.trim().to_string())
            });
        }
        if let Some(v) = self.data_dir {
            set("data_dir", "--data-dir", &|c| c.data_dir = v.clone());
        }
        if let Some(v) = self.ready_file {
            set("ready_file", "--ready-file", &|c| {
                c.ready_file = (!v.as_os_str().is_empty()).then(|| v.clone())
            });
        }
        if let Some(v) = self.listen {
            set("listener.listen", "--listen", &|c| c.listener.listen = v);
        }
        if let Some(v) = self.advertised_address {
            set("listener.advertised_address", "--advertised-address", &|c| {
                c.listener.advertised_address = (!v.is_empty()).then(|| v.clone())
            });
        }
        if let Some(v) = self.max_frame_bytes {
            set("listener.max_frame_bytes", "--max-frame-bytes", &|c| {
                c.listener.max_frame_bytes = v
            });
        }
        if let Some(v) = self.max_connections {
            set("listener.max_connections", "--max-connections", &|c| {
                c.listener.max_connections = v
            });
        }
        if let Some(v) = self.http {
            set("http.listen", "--http", &|c| c.http.listen = v);
        }
        if let Some(v) = self.shutdown_timeout {
            set("shutdown.timeout", "--shutdown-timeout", &|c| c.shutdown.timeout = v);
        }
        if let Some(v) = self.metrics_per_partition {
            set("metrics.per_partition", "--metrics-per-partition", &|c| {
                c.metrics.per_partition = v
            });
        }
    }
}

/// The long help's list of every setting.
fn settings_help() -> String {
    let defaults = Config::default();
    let mut out = String::from(
        "Every setting can be given in the --config file (TOML, key shown with its section), by an\n\
         environment variable, or for some by a flag. A flag beats the environment, which beats the\n\
         file, which beats the default. Sizes: 1048576, \"64KiB\", \"64MiB\", \"1GiB\" (KB, MB, GB are\n\
         powers of 1000). Durations: \"100ms\", \"30s\", \"7d\".\n\nSettings:\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "  {} [default: {}]\n      {}",
            s.key,
            (s.get)(&defaults),
            s.env
        ));
        if let Some(alias) = s.env_alias {
            out.push_str(&format!(" or {alias}"));
        }
        if let Some(flag) = s.flag {
            out.push_str(&format!(", {flag}"));
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it.
    Default,
    /// The config file.
    File(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// This flag.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "config file {}", p.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// What [`load`] returns: the options to run with, and the config they came from for the startup
/// log. `Display` gives one line, `key=value` for every setting, with where each non-default value
/// came from: `listener.listen=127.0.0.1:0(--listen)`, `(STRATA_NODE_ID)`, `(file)`.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated options.
    pub options: BrokerOptions,
    /// The effective config (all layers merged).
    pub config: Config,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    origins: BTreeMap<&'static str, Origin>,
}

impl Loaded {
    /// Where the setting `key` (dotted, as in the file: `listener.listen`) came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }
}

impl fmt::Display for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.config_file {
            write!(f, "config_file={} ", quote(p.display().to_string()))?;
        }
        for (i, s) in SETTINGS.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", s.key, quote((s.get)(&self.config)))?;
            match self.origins.get(s.key) {
                None | Some(Origin::Default) => {}
                Some(Origin::File(_)) => f.write_str("(file)")?,
                Some(Origin::Env(var)) => write!(f, "({var})")?,
                Some(Origin::Flag(flag)) => write!(f, "({flag})")?,
            }
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Bad flags, or `--help` / `--version`: [`clap::Error::kind`] is `DisplayHelp` or
    /// `DisplayVersion` for those. [`clap::Error::exit`] prints it to the right stream and exits
    /// with the right status (0 for help and version, 2 for a usage error).
    #[error("{0}")]
    Cli(clap::Error),
    /// The config file could not be read.
    #[error("cannot read config file {}: {error}", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a bad value; the TOML error
    /// names the line and the key.
    #[error("invalid config file {}: {error}", .path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: toml::de::Error,
    },
    /// An environment variable's value does not parse.
    #[error("invalid environment variable {var}={value:?} (setting {key}): {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// The setting it sets.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A setting's long and short environment variables are both set, to different values.
    #[error("environment variables {var}={value:?} and {alias}={alias_value:?} both set {key}; unset one")]
    EnvConflict {
        /// The setting.
        key: &'static str,
        /// `STRATA_<SECTION>_<KEY>`.
        var: &'static str,
        /// Its value.
        value: String,
        /// The short alias.
        alias: &'static str,
        /// Its value.
        alias_value: String,
    },
    /// A setting is out of bounds or conflicts with another.
    #[error("{0}")]
    Invalid(Box<InvalidSetting>),
}

/// A setting that is out of bounds or conflicts with another: what [`ConfigError::Invalid`]
/// carries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "invalid {key} = {value}{}: {reason}{}",
    from_origin(.origin),
    other_from_origin(.other_key, .other_origin)
)]
pub struct InvalidSetting {
    /// The setting, dotted as in the file (`listener.max_frame_bytes`).
    pub key: &'static str,
    /// Its value as written back (sizes and durations with units).
    pub value: String,
    /// What is wrong.
    pub reason: String,
    /// Where the value came from (set by [`load`]; `None` from [`Config::validate`]).
    pub origin: Option<Origin>,
    /// The setting it conflicts with, if the problem is between two settings.
    pub other_key: Option<&'static str>,
    /// Where that one's value came from (set by [`load`]).
    pub other_origin: Option<Origin>,
}

/// `" (from <origin>)"`, or nothing.
fn from_origin(origin: &Option<Origin>) -> String {
    origin.as_ref().map(|o| format!(" (from {o})")).unwrap_or_default()
}

/// `"; <key> is from <origin>"`, or nothing.
fn other_from_origin(key: &Option<&'static str>, origin: &Option<Origin>) -> String {
    match (key, origin) {
        (Some(key), Some(origin)) => format!("; {key} is from {origin}"),
        _ => String::new(),
    }
}

impl ConfigError {
    /// Whether this is `--help` or `--version` output rather than a failure.
    pub fn is_help_or_version(&self) -> bool {
        matches!(
            self,
            ConfigError::Cli(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
        )
    }
}

/// Builds the broker's options from flags (`args`, including the program name first, as
/// [`std::env::args_os`] gives them), the environment (`env` looks up one variable; pass
/// `&|k| std::env::var(k).ok()`) and the config file they name, in the order default < file <
/// environment < flag, and validates them.
///
/// ```no_run
/// # use strata_broker::config::{self, ConfigError};
/// let loaded = match config::load(std::env::args_os(), &|k| std::env::var(k).ok()) {
///     Ok(loaded) => loaded,
///     Err(ConfigError::Cli(e)) => e.exit(), // --help, --version (exit 0) or a usage error (exit 2)
///     Err(e) => {
///         eprintln!("strata-broker: {e}");
///         std::process::exit(2);
///     }
/// };
/// println!("starting with {loaded}");
/// ```
///
/// Empty environment variables unset optional settings (`STRATA_READY_FILE=`,
/// `STRATA_ADVERTISED_ADDRESS=`, `STRATA_VOTERS=`) and are an error for the others;
/// `STRATA_CONFIG=` means no file. Values are trimmed.
///
/// # Errors
/// [`ConfigError::Cli`] for `--help`, `--version` and bad flags; the other variants name the
/// file, variable or key at fault and the bad value.
pub fn load(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut cmd = Cli::command()
        .after_help("See --help for every setting, its environment variable and its default.")
        .after_long_help(settings_help());
    let matches = cmd.try_get_matches_from_mut(args).map_err(ConfigError::Cli)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigError::Cli(e.format(&mut cmd)))?;

    let mut origins = BTreeMap::new();
    let config_file = match &cli.config {
        Some(p) => Some(p.clone()),
        None => env(CONFIG_ENV).and_then(|v| path(v.trim())),
    };
    let mut config = match &config_file {
        Some(p) => read_file(p, &mut origins)?,
        None => Config::default(),
    };
    apply_env(&mut config, env, &mut origins)?;
    cli.apply(&mut config, &mut origins);
    if config.node_id_from_hostname {
        node_id_from_hostname(&mut config, env, &mut origins)?;
    }

    let origin_of = |key: &str| origins.get(key).cloned().unwrap_or(Origin::Default);
    let options = config.to_options().map_err(|e| match e {
        ConfigError::Invalid(mut invalid) => {
            invalid.origin = Some(origin_of(invalid.key));
            invalid.other_origin = invalid.other_key.map(origin_of);
            ConfigError::Invalid(invalid)
        }
        other => other,
    })?;
    Ok(Loaded {
        options,
        config,
        config_file,
        origins,
    })
}

/// Sets `node_id` from the host name (`HOSTNAME`, else the system's): the number after its last
/// `-`, plus 1.
fn node_id_from_hostname(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
    origins: &mut BTreeMap<&'static str, Origin>,
) -> Result<(), ConfigError> {
    let invalid = |value: String, reason: String, other_key| {
        ConfigError::Invalid(Box::new(InvalidSetting {
            key: "node_id_from_hostname",
            value,
            reason,
            origin: origins.get("node_id_from_hostname").cloned(),
            other_key,
            other_origin: other_key.and_then(|k| origins.get(k).cloned()),
        }))
    };
    if origins.contains_key("node_id") {
        return Err(invalid(
            "true".into(),
            "the node id comes either from node_id or from the host name, not both".into(),
            Some("node_id"),
        ));
    }
    let (host, source) = match env("HOSTNAME").map(|h| h.trim().to_string()).filter(|h| !h.is_empty()) {
        Some(h) => (h, "HOSTNAME"),
        None => (system_hostname().unwrap_or_default(), "the system host name"),
    };
    // A fully qualified name (a pod with setHostnameAsFQDN): its first label is the pod's name.
    let ordinal = host
        .split('.')
        .next()
        .unwrap_or_default()
        .rsplit_once('-')
        .and_then(|(_, n)| (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n < u64::MAX);
    let Some(ordinal) = ordinal else {
        return Err(invalid(
            "true".into(),
            format!(
                "host name {host:?} (from {source}) does not end in -N, a StatefulSet pod's ordinal; set node_id instead"
            ),
            None,
        ));
    };
    config.node_id = ordinal + 1;
    // Derived by the setting that asked for it (from HOSTNAME or the system's host name).
    let origin = origins
        .get("node_id_from_hostname")
        .cloned()
        .unwrap_or(Origin::Env("HOSTNAME"));
    origins.insert("node_id", origin);
    Ok(())
}

/// The kernel's host name.
fn system_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success (and we
    // stop at the buffer's end otherwise).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Reads and parses the file, recording which keys it sets.
fn read_file(path: &Path, origins: &mut BTreeMap<&'static str, Origin>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
        path: path.to_owned(),
        error,
    })?;
    let parse_error = |error| ConfigError::ParseFile {
        path: path.to_owned(),
        error,
    };
    let config = Config::from_toml(&text).map_err(parse_error)?;
    let table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
    for s in SETTINGS {
        let mut parts = s.key.split('.');
        let first = parts.next().and_then(|k| table.get(k));
        let present = parts
            .try_fold(first, |v, k| Some(v.and_then(|v| v.as_table()).and_then(|t| t.get(k))))
            .flatten()
            .is_some();
        if present {
            origins.insert(s.key, Origin::File(path.to_owned()));
        }
    }
    Ok(config)
}

/// Applies every `STRATA_*` variable that is set.
fn apply_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
    origins: &mut BTreeMap<&'static str, Origin>,
) -> Result<(), ConfigError> {
    for s in SETTINGS {
        let long = env(s.env);
        let short = s.env_alias.and_then(|alias| env(alias).map(|v| (alias, v)));
        let (var, value) = match (long, short) {
            (Some(value), Some((alias, alias_value))) if value.trim() != alias_value.trim() => {
                return Err(ConfigError::EnvConflict {
                    key: s.key,
                    var: s.env,
                    value,
                    alias,
                    alias_value,
                });
            }
            (Some(value), _) => (s.env, value),
            (None, Some((alias, value))) => (alias, value),
            (None, None) => continue,
        };
        (s.set)(config, value.trim()).map_err(|reason| ConfigError::Env {
            var,
            key: s.key,
            value: value.clone(),
            reason,
        })?;
        origins.insert(s.key, Origin::Env(var));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("strata-broker")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned())
    }

    fn voter(id: u64, address: &str) -> Voter {
        Voter {
            id,
            address: address.into(),
        }
    }

    fn invalid_key(e: &ConfigError) -> &'static str {
        match e {
            ConfigError::Invalid(invalid) => invalid.key,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_broker_options_defaults() {
        let loaded = load(args(&[]), &no_env).unwrap();
        assert_eq!(loaded.options, BrokerOptions::default());
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.config_file, None);
        assert_eq!(Config::default().to_options().unwrap(), BrokerOptions::default());
        // The issue's zero-config promise, spelled out.
        assert_eq!(loaded.options.listen.to_string(), "127.0.0.1:9700");
        assert_eq!(loaded.options.http.to_string(), "127.0.0.1:9701");
        assert_eq!(loaded.options.data_dir, PathBuf::from("strata-data"));
    }

    #[test]
    fn example_config_is_the_defaults_and_names_every_key() {
        assert_eq!(Config::from_toml(EXAMPLE_CONFIG).unwrap(), Config::default());
        for s in SETTINGS {
            let leaf = s.key.rsplit('.').next().unwrap();
            assert!(
                EXAMPLE_CONFIG.contains(&format!("{leaf} = ")),
                "{} missing from EXAMPLE_CONFIG",
                s.key
            );
            for name in std::iter::once(s.env).chain(s.env_alias).chain(s.flag) {
                assert!(EXAMPLE_CONFIG.contains(name), "{name} missing from EXAMPLE_CONFIG");
            }
        }
    }

    #[test]
    fn env_names_follow_the_key() {
        for s in SETTINGS {
            assert_eq!(
                s.env,
                format!("STRATA_{}", s.key.replace('.', "_").to_ascii_uppercase())
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size(" 64 mib "), Ok(64 << 20));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("1KB"), Ok(1_000));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5GiB",
            "64M",
            "64 XB",
            "99999999999999999999",
            "99999999TiB",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains(&format!("{:?}", bad.trim())), "{e}");
        }
        for n in [0, 1, 1000, 4096, 64 << 20, 3 << 30, (1 << 40) + 1, u64::MAX] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(2 << 30), "2GiB");
    }

    #[test]
    fn durations_and_flush() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("30").unwrap_err().contains("\"30\""));
        assert!(parse_duration("soon").is_err());
        for d in [
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(7 * 86_400),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(parse_flush("always"), Ok(FlushPolicy::Always));
        assert_eq!(parse_flush("Never"), Ok(FlushPolicy::Never));
        assert_eq!(
            parse_flush("interval:100ms"),
            Ok(FlushPolicy::Interval(Duration::from_millis(100)))
        );
        assert_eq!(
            parse_flush("interval: 2s"),
            Ok(FlushPolicy::Interval(Duration::from_secs(2)))
        );
        assert!(parse_flush("sometimes").unwrap_err().contains("interval:<duration>"));
        assert!(parse_flush("interval:").is_err());
        for f in [
            FlushPolicy::Always,
            FlushPolicy::Never,
            FlushPolicy::Interval(Duration::from_millis(250)),
        ] {
            assert_eq!(parse_flush(&format_flush(f)), Ok(f));
        }
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert_eq!(parse_bool(" False "), Ok(false));
        for bad in ["", "yes", "1", "on", "truee"] {
            let e = parse_bool(bad).unwrap_err();
            assert!(e.contains("true or false"), "{e}");
        }
        assert!(Config::from_toml("[metrics]\nper_partition = \"false\"").is_err());
        assert!(
            !Config::from_toml("[metrics]\nper_partition = false")
                .unwrap()
                .metrics
                .per_partition
        );
    }

    #[test]
    fn every_file_key_parses() {
        let text = r#"
            node_id = 7
            data_dir = "/var/lib/strata"
            ready_file = "/run/strata/ready"
            [cluster]
            voters = "7@broker-7.example.com:19700, 8@[fd00::8]:19700,9@10.0.0.9:19700"
            [listener]
            listen = "0.0.0.0:19700"
            advertised_address = "broker-7.example.com:19700"
            max_frame_bytes = "32MiB"
            max_connections = 500
            max_in_flight_per_connection = 16
            [http]
            listen = "0.0.0.0:19701"
            [metrics]
            per_partition = false
            [raft]
            tick = "50ms"
            [retention]
            check_interval = "5m"
            [shutdown]
            timeout = "1m"
            [topic_defaults]
            partitions = 3
            retention_bytes = "10GiB"
            retention = "2d"
            segment_bytes = 268435456
            max_message_bytes = "4MB"
            flush = "interval:200ms"
        "#;
        let c = Config::from_toml(text).unwrap();
        let o = c.to_options().unwrap();
        let expected = BrokerOptions {
            node_id: 7,
            voters: vec![
                voter(7, "broker-7.example.com:19700"),
                voter(8, "[fd00::8]:19700"),
                voter(9, "10.0.0.9:19700"),
            ],
            join: None,
            host_aliases: HostAliases::new(),
            listen: "0.0.0.0:19700".parse().unwrap(),
            advertised_address: Some("broker-7.example.com:19700".into()),
            http: "0.0.0.0:19701".parse().unwrap(),
            data_dir: "/var/lib/strata".into(),
            max_frame_bytes: 32 << 20,
            max_connections: 500,
            max_in_flight_per_connection: 16,
            idle_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(60),
            raft_tick: Duration::from_millis(50),
            retention_check_interval: Duration::from_secs(300),
            topic_defaults: TopicDefaults {
                partitions: 3,
                retention_bytes: Some(10 << 30),
                retention: Some(Duration::from_secs(2 * 86_400)),
                segment_bytes: 256 << 20,
                max_message_bytes: 4_000_000,
                flush: FlushPolicy::Interval(Duration::from_millis(200)),
            },
            ready_file: Some("/run/strata/ready".into()),
            metrics_per_partition: false,
            groups: crate::options::GroupOptions::default(),
        };
        assert_eq!(o, expected);
        // Written back and read again: the same config.
        let round = Config::from_toml(&c.to_toml().unwrap()).unwrap();
        assert_eq!(round, c);
        assert_eq!(
            Config::from_toml(&Config::default().to_toml().unwrap()).unwrap(),
            Config::default()
        );
        assert_eq!(Config::from(&expected), c);
    }

    #[test]
    fn unlimited_retention() {
        for text in [
            "[topic_defaults]\nretention_bytes = -1\nretention = -1",
            "[topic_defaults]\nretention_bytes = \"unlimited\"\nretention = \"Unlimited\"",
        ] {
            let t = Config::from_toml(text).unwrap().topic_defaults;
            assert_eq!((t.retention_bytes, t.retention), (None, None), "{text}");
        }
        let t = Config::from_toml("[topic_defaults]\nretention_bytes = 1000")
            .unwrap()
            .topic_defaults;
        assert_eq!(t.retention_bytes, Some(1000));
        assert!(Config::from_toml("[topic_defaults]\nretention_bytes = -2").is_err());
        assert!(Config::from_toml("[topic_defaults]\nretention = 30").is_err());
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let c = Config::from_toml("[listener]\nmax_connections = 5").unwrap();
        assert_eq!(c.listener.max_connections, 5);
        assert_eq!(c.listener.listen, Config::default().listener.listen);
        assert_eq!(c.topic_defaults, TopicDefaultsConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected_naming_the_key() {
        for (text, key) in [
            ("nodeid = 1", "nodeid"),
            ("[listener]\nlisten_addr = \"127.0.0.1:1\"", "listen_addr"),
            ("[topic_defaults]\nretention_ms = 1000", "retention_ms"),
            ("[storage]\nx = 1", "storage"),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
        }
    }

    #[test]
    fn bad_file_values_name_the_key() {
        for (text, key) in [
            ("[listener]\nmax_frame_bytes = \"64XB\"", "max_frame_bytes"),
            ("[listener]\nlisten = \"localhost\"", "listen"),
            ("[raft]\ntick = \"fast\"", "tick"),
            ("[topic_defaults]\nflush = \"sometimes\"", "flush"),
            ("node_id = \"one\"", "node_id"),
            ("[listener]\nmax_connections = -5", "max_connections"),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        type Break = fn(&mut Config);
        let cases: Vec<(&str, Break)> = vec![
            ("node_id", |c| c.node_id = 0),
            ("data_dir", |c| c.data_dir = PathBuf::new()),
            ("ready_file", |c| c.ready_file = Some(PathBuf::new())),
            ("cluster.voters", |c| {
                c.cluster.voters = vec![voter(1, "a:1"), voter(0, "b:1")]
            }),
            ("cluster.voters", |c| c.cluster.voters = vec![voter(1, "a")]),
            ("cluster.voters", |c| c.cluster.voters = vec![voter(1, "a:0")]),
            ("cluster.voters", |c| c.cluster.voters = vec![voter(1, "a:65536")]),
            ("cluster.voters", |c| c.cluster.voters = vec![voter(1, ":9700")]),
            ("cluster.voters", |c| c.cluster.voters = vec![voter(1, "::1:9700")]),
            ("cluster.voters", |c| {
                c.cluster.voters = vec![voter(1, "a:1"), voter(1, "b:1")]
            }),
            ("cluster.voters", |c| {
                c.cluster.voters = vec![voter(1, "a:1"), voter(2, "A:1")]
            }),
            ("cluster.voters", |c| {
                c.cluster.voters = (1..=10).map(|id| voter(id, &format!("b{id}:9700"))).collect()
            }),
            ("cluster.voters", |c| {
                c.cluster.voters = vec![voter(2, "b:1"), voter(3, "c:1")]
            }),
            ("listener.advertised_address", |c| {
                c.listener.advertised_address = Some("nohost".into())
            }),
            ("listener.advertised_address", |c| {
                c.listener.advertised_address = Some("h:0".into())
            }),
            ("listener.advertised_address", |c| {
                c.listener.advertised_address = Some("::1:9700".into())
            }),
            ("listener.max_frame_bytes", |c| c.listener.max_frame_bytes = 1023),
            ("listener.max_frame_bytes", |c| {
                c.listener.max_frame_bytes = (1 << 30) + 1
            }),
            ("listener.max_connections", |c| c.listener.max_connections = 0),
            ("listener.max_connections", |c| c.listener.max_connections = 1_000_001),
            ("listener.max_in_flight_per_connection", |c| {
                c.listener.max_in_flight_per_connection = 0
            }),
            ("http.listen", |c| c.http.listen = c.listener.listen),
            ("http.listen", |c| c.http.listen = "0.0.0.0:9700".parse().unwrap()),
            ("raft.tick", |c| c.raft.tick = Duration::from_micros(999)),
            ("raft.tick", |c| c.raft.tick = Duration::from_secs(11)),
            ("shutdown.timeout", |c| c.shutdown.timeout = Duration::from_secs(3601)),
            ("topic_defaults.partitions", |c| c.topic_defaults.partitions = 0),
            ("topic_defaults.partitions", |c| c.topic_defaults.partitions = 10_001),
            ("topic_defaults.retention_bytes", |c| {
                c.topic_defaults.retention_bytes = Some(0)
            }),
            ("topic_defaults.retention", |c| {
                c.topic_defaults.retention = Some(Duration::ZERO)
            }),
            ("topic_defaults.segment_bytes", |c| {
                c.topic_defaults.segment_bytes = 4095
            }),
            ("topic_defaults.segment_bytes", |c| {
                c.topic_defaults.segment_bytes = (2 << 30) + 1
            }),
            ("topic_defaults.max_message_bytes", |c| {
                c.topic_defaults.max_message_bytes = 1023
            }),
            ("topic_defaults.max_message_bytes", |c| {
                c.topic_defaults.max_message_bytes = c.listener.max_frame_bytes + 1
            }),
            ("topic_defaults.flush", |c| {
                c.topic_defaults.flush = FlushPolicy::Interval(Duration::ZERO)
            }),
            ("topic_defaults.flush", |c| {
                c.topic_defaults.flush = FlushPolicy::Interval(Duration::from_secs(3601))
            }),
        ];
        for (key, break_it) in cases {
            let mut c = Config::default();
            break_it(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(invalid_key(&e), key, "{e}");
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn bounds_are_inclusive() {
        let high = r#"
            [listener]
            listen = "127.0.0.1:0"    # port 0 on both listeners: two different free ports
            advertised_address = "[::1]:65535"
            max_frame_bytes = "1GiB"
            max_connections = 1000000
            max_in_flight_per_connection = 1024
            [http]
            listen = "127.0.0.1:0"
            [raft]
            tick = "10s"
            [shutdown]
            timeout = "1h"
            [topic_defaults]
            partitions = 10000
            segment_bytes = "2GiB"
            max_message_bytes = "32MiB"
            flush = "interval:1h"
        "#;
        let low = r#"
            [listener]
            advertised_address = "h:1"
            max_frame_bytes = "1KiB"
            max_connections = 1
            max_in_flight_per_connection = 1
            [raft]
            tick = "1ms"
            [shutdown]
            timeout = "0s"
            [topic_defaults]
            partitions = 1
            retention_bytes = 1
            retention = "1ms"
            segment_bytes = "4KiB"
            max_message_bytes = "1KiB"
            flush = "interval:1ms"
        "#;
        for text in [high, low] {
            Config::from_toml(text).unwrap().to_options().unwrap();
        }
    }

    #[test]
    fn env_sets_every_key_with_long_names() {
        let env = env_of(&[
            ("STRATA_NODE_ID", "9"),
            ("STRATA_DATA_DIR", "/data"),
            ("STRATA_READY_FILE", "/tmp/ready"),
            ("STRATA_CLUSTER_VOTERS", "9@b9:9700,10@b10:9700,11@b11:9700"),
            ("STRATA_LISTENER_LISTEN", "127.0.0.1:0"),
            ("STRATA_LISTENER_ADVERTISED_ADDRESS", "b9:9700"),
            ("STRATA_LISTENER_MAX_FRAME_BYTES", "8MiB"),
            ("STRATA_LISTENER_MAX_CONNECTIONS", " 42 "),
            ("STRATA_LISTENER_MAX_IN_FLIGHT_PER_CONNECTION", "8"),
            ("STRATA_LISTENER_IDLE_TIMEOUT", "90s"),
            ("STRATA_HTTP_LISTEN", "127.0.0.1:0"),
            ("STRATA_METRICS_PER_PARTITION", "FALSE"),
            ("STRATA_RAFT_TICK", "10ms"),
            ("STRATA_RETENTION_CHECK_INTERVAL", "2m"),
            ("STRATA_SHUTDOWN_TIMEOUT", "5s"),
            ("STRATA_TOPIC_DEFAULTS_PARTITIONS", "4"),
            ("STRATA_TOPIC_DEFAULTS_RETENTION_BYTES", "1GiB"),
            ("STRATA_TOPIC_DEFAULTS_RETENTION", "unlimited"),
            ("STRATA_TOPIC_DEFAULTS_SEGMENT_BYTES", "64MiB"),
            ("STRATA_TOPIC_DEFAULTS_MAX_MESSAGE_BYTES", "2MiB"),
            ("STRATA_TOPIC_DEFAULTS_FLUSH", "never"),
            ("STRATA_GROUPS_OFFSETS_PARTITIONS", "16"),
            ("STRATA_GROUPS_OFFSETS_REPLICATION_FACTOR", "1"),
            ("STRATA_GROUPS_SESSION_TIMEOUT", "3s"),
            ("STRATA_GROUPS_MIN_SESSION_TIMEOUT", "500ms"),
            ("STRATA_GROUPS_MAX_SESSION_TIMEOUT", "1m"),
            ("STRATA_GROUPS_HEARTBEAT_INTERVAL", "300ms"),
            ("STRATA_GROUPS_REBALANCE_TIMEOUT", "30s"),
            ("STRATA_GROUPS_MAX_SIZE", "50"),
            ("STRATA_GROUPS_OFFSETS_SNAPSHOT_BYTES", "1MiB"),
            ("STRATA_GROUPS_OFFSETS_RETENTION", "unlimited"),
        ]);
        let loaded = load(args(&[]), &env).unwrap();
        let o = &loaded.options;
        let g = &o.groups;
        assert_eq!(
            (g.offsets_partitions, g.offsets_replication_factor, g.max_size),
            (16, 1, 50)
        );
        assert_eq!(g.session_timeout, Duration::from_secs(3));
        assert_eq!(g.min_session_timeout, Duration::from_millis(500));
        assert_eq!(g.max_session_timeout, Duration::from_secs(60));
        assert_eq!(g.heartbeat_interval, Duration::from_millis(300));
        assert_eq!(g.rebalance_timeout, Duration::from_secs(30));
        assert_eq!(g.offsets_snapshot_bytes, 1 << 20);
        assert_eq!(g.offsets_retention, None);
        assert_eq!(o.node_id, 9);
        assert_eq!(o.data_dir, PathBuf::from("/data"));
        assert_eq!(o.ready_file, Some(PathBuf::from("/tmp/ready")));
        assert_eq!(
            o.voters,
            vec![voter(9, "b9:9700"), voter(10, "b10:9700"), voter(11, "b11:9700")]
        );
        assert_eq!(o.listen.port(), 0);
        assert_eq!(o.advertised_address.as_deref(), Some("b9:9700"));
        assert_eq!(o.max_frame_bytes, 8 << 20);
        assert_eq!(o.max_connections, 42);
        assert_eq!(o.max_in_flight_per_connection, 8);
        assert_eq!(o.idle_timeout, Duration::from_secs(90));
        assert_eq!(o.http.port(), 0);
        assert!(!o.metrics_per_partition);
        assert_eq!(o.raft_tick, Duration::from_millis(10));
        assert_eq!(o.retention_check_interval, Duration::from_secs(120));
        assert_eq!(o.shutdown_timeout, Duration::from_secs(5));
        let t = &o.topic_defaults;
        assert_eq!(t.partitions, 4);
        assert_eq!(t.retention_bytes, Some(1 << 30));
        assert_eq!(t.retention, None);
        assert_eq!(t.segment_bytes, 64 << 20);
        assert_eq!(t.max_message_bytes, 2 << 20);
        assert_eq!(t.flush, FlushPolicy::Never);
        for s in SETTINGS {
            // (node_id_from_hostname excludes node_id: see `node_id_from_the_host_name`.)
            if !["cluster.join", "node_id_from_hostname", "cluster.host_aliases"].contains(&s.key) {
                assert_eq!(loaded.origin(s.key), Origin::Env(s.env), "{}", s.key);
            }
        }
    }

    #[test]
    fn node_id_from_the_host_name() {
        for (host, id) in [
            ("strata-0", 1),
            ("strata-broker-11", 12),
            ("a-007", 8),
            ("strata-2.strata-headless.default.svc.cluster.local", 3),
        ] {
            let env = move |k: &str| (k == "HOSTNAME").then(|| host.to_string());
            let loaded = load(args(&["--node-id-from-hostname"]), &env).unwrap();
            assert_eq!(loaded.options.node_id, id, "{host}");
            assert_eq!(loaded.origin("node_id"), Origin::Flag("--node-id-from-hostname"));
            assert!(
                loaded
                    .to_string()
                    .contains("node_id_from_hostname=true(--node-id-from-hostname)")
            );
        }
        let env = |k: &str| match k {
            "HOSTNAME" => Some("strata-2".to_string()),
            "STRATA_NODE_ID_FROM_HOSTNAME" => Some("true".to_string()),
            _ => None,
        };
        assert_eq!(load(args(&[]), &env).unwrap().options.node_id, 3);
        // The id must come from one place.
        let err = load(args(&["--node-id", "3"]), &env).unwrap_err();
        assert_eq!(invalid_key(&err), "node_id_from_hostname");
        assert!(err.to_string().contains("not both"), "{err}");
        assert!(err.to_string().contains("node_id is from flag --node-id"), "{err}");
        for host in [
            "strata",
            "strata-",
            "strata-x",
            "strata-1a",
            "strata-18446744073709551615",
        ] {
            let env = move |k: &str| (k == "HOSTNAME").then(|| host.to_string());
            let err = load(args(&["--node-id-from-hostname"]), &env).unwrap_err();
            assert!(err.to_string().contains("does not end in -N"), "{host}: {err}");
        }
    }

    #[test]
    fn host_aliases_setting() {
        let env = env_of(&[("STRATA_HOST_ALIASES", "strata-0.s.default.svc.cluster.local=127.0.0.11")]);
        let loaded = load(args(&[]), &env).unwrap();
        assert_eq!(
            loaded
                .options
                .host_aliases
                .resolve("strata-0.s.default.svc.cluster.local:9700"),
            "127.0.0.11:9700"
        );
        let c = Config::from_toml("[cluster]\nhost_aliases = \"a=127.0.0.2,b=::1\"").unwrap();
        assert_eq!(c.cluster.host_aliases.get("b"), Some("::1".parse().unwrap()));
        assert_eq!(Config::from_toml(&c.to_toml().unwrap()).unwrap(), c);
        let err = load(args(&["--host-aliases", "a=not-an-ip"]), &no_env).unwrap_err();
        assert!(err.to_string().contains("expected an IP address"), "{err}");
        let err = Config::from_toml("[cluster]\nhost_aliases = \"a\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected NAME=IP"), "{err}");
    }

    #[test]
    fn join_is_a_data_only_broker() {
        let env = env_of(&[("STRATA_NODE_ID", "4"), ("STRATA_JOIN", "b1:9700")]);
        let loaded = load(args(&[]), &env).unwrap();
        assert_eq!(loaded.options.join.as_deref(), Some("b1:9700"));
        assert_eq!(loaded.origin("cluster.join"), Origin::Env("STRATA_JOIN"));
        let loaded = load(args(&["--node-id", "4", "--join", "b2:9700"]), &env).unwrap();
        assert_eq!(loaded.options.join.as_deref(), Some("b2:9700"));
        assert_eq!(loaded.origin("cluster.join"), Origin::Flag("--join"));
        // With voters too: a voter keeps it (and ignores it), so does a broker that is not one
        // of them (and joins); every broker of a StatefulSet shares one file.
        let voters = "1@b1:9700,2@b2:9700,3@b3:9700";
        for node in ["1", "4"] {
            let loaded = load(
                args(&["--voters", voters, "--node-id", node, "--join", "b:9700"]),
                &no_env,
            )
            .unwrap();
            assert_eq!(loaded.options.join.as_deref(), Some("b:9700"));
            assert_eq!(loaded.options.voters.len(), 3);
        }
        // Without join, a node id missing from the voters is an error (a typo, most likely).
        let err = load(args(&["--voters", voters, "--node-id", "4"]), &no_env).unwrap_err();
        assert!(err.to_string().contains("not among the voters"), "{err}");
        let err = load(args(&["--node-id", "4", "--join", "b2"]), &no_env).unwrap_err();
        assert!(err.to_string().contains("cluster.join"), "{err}");
    }

    #[test]
    fn short_env_aliases() {
        let env = env_of(&[
            ("STRATA_LISTEN", "127.0.0.1:1700"),
            ("STRATA_ADVERTISED_ADDRESS", "b:1700"),
            ("STRATA_HTTP", "127.0.0.1:1701"),
            ("STRATA_VOTERS", "1@b:1700,2@c:1700"),
        ]);
        let loaded = load(args(&[]), &env).unwrap();
        assert_eq!(loaded.options.voters, vec![voter(1, "b:1700"), voter(2, "c:1700")]);
        assert_eq!(loaded.origin("cluster.voters"), Origin::Env("STRATA_VOTERS"));
        assert_eq!(loaded.options.listen.port(), 1700);
        assert_eq!(loaded.options.advertised_address.as_deref(), Some("b:1700"));
        assert_eq!(loaded.options.http.port(), 1701);
        assert_eq!(loaded.origin("http.listen"), Origin::Env("STRATA_HTTP"));

        // Both spellings: fine if they agree, an error naming both if not.
        let agree = env_of(&[
            ("STRATA_LISTEN", "127.0.0.1:1700"),
            ("STRATA_LISTENER_LISTEN", "127.0.0.1:1700"),
        ]);
        assert_eq!(load(args(&[]), &agree).unwrap().options.listen.port(), 1700);
        let disagree = env_of(&[
            ("STRATA_LISTEN", "127.0.0.1:1700"),
            ("STRATA_LISTENER_LISTEN", "127.0.0.1:1800"),
        ]);
        let e = load(args(&[]), &disagree).unwrap_err().to_string();
        assert!(
            e.contains("STRATA_LISTEN=") && e.contains("STRATA_LISTENER_LISTEN="),
            "{e}"
        );
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        for (var, value) in [
            ("STRATA_NODE_ID", "one"),
            ("STRATA_NODE_ID", ""),
            ("STRATA_LISTEN", "localhost:9700"),
            ("STRATA_LISTENER_MAX_FRAME_BYTES", "64XB"),
            ("STRATA_RAFT_TICK", "100"),
            ("STRATA_TOPIC_DEFAULTS_FLUSH", "sometimes"),
            ("STRATA_METRICS_PER_PARTITION", "yes"),
            ("STRATA_VOTERS", "1:b:9700"),
            ("STRATA_CLUSTER_VOTERS", "one@b:9700"),
            ("STRATA_VOTERS", "1@"),
            ("STRATA_VOTERS", "1@a:9700,,2@b:9700"),
        ] {
            let e = load(args(&[]), &|k| (k == var).then(|| value.to_owned())).unwrap_err();
            assert!(matches!(e, ConfigError::Env { var: v, .. } if v == var), "{e:?}");
            assert!(e.to_string().contains(var), "{e}");
        }
        // Parsed but out of bounds: the key and the variable.
        let e = load(args(&[]), &|k| (k == "STRATA_NODE_ID").then(|| "0".to_owned())).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("node_id") && text.contains("STRATA_NODE_ID"), "{text}");
    }

    #[test]
    fn empty_env_unsets_optional_settings() {
        let env = env_of(&[
            ("STRATA_ADVERTISED_ADDRESS", ""),
            ("STRATA_READY_FILE", " "),
            ("STRATA_VOTERS", ""),
            ("STRATA_CONFIG", ""),
        ]);
        let loaded = load(args(&[]), &env).unwrap();
        assert_eq!(loaded.options, BrokerOptions::default());
    }

    #[test]
    fn flags_set_their_keys() {
        let loaded = load(
            args(&[
                "--node-id",
                "3",
                "--voters",
                "1@b1:9700,2@b2:9700,3@b3:9700",
                "--data-dir",
                "d3",
                "--listen",
                "127.0.0.1:0",
                "--advertised-address",
                "b3:9700",
                "--http",
                "[::1]:0",
                "--max-connections",
                "77",
                "--max-frame-bytes",
                "2MiB",
                "--shutdown-timeout",
                "2s",
                "--ready-file",
                "r3",
                "--metrics-per-partition",
                "false",
            ]),
            &no_env,
        )
        .unwrap();
        let o = &loaded.options;
        assert_eq!(o.node_id, 3);
        assert_eq!(
            o.voters,
            vec![voter(1, "b1:9700"), voter(2, "b2:9700"), voter(3, "b3:9700")]
        );
        assert_eq!(o.data_dir, PathBuf::from("d3"));
        assert_eq!(o.listen, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
        assert_eq!(o.advertised_address.as_deref(), Some("b3:9700"));
        assert_eq!(o.http, "[::1]:0".parse::<SocketAddr>().unwrap());
        assert_eq!(o.max_connections, 77);
        assert_eq!(o.max_frame_bytes, 2 << 20);
        assert_eq!(o.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(o.ready_file, Some(PathBuf::from("r3")));
        assert!(!o.metrics_per_partition);
        for s in SETTINGS {
            if let Some(flag) = s.flag
                && !["cluster.join", "node_id_from_hostname", "cluster.host_aliases"].contains(&s.key)
            {
                assert_eq!(loaded.origin(s.key), Origin::Flag(flag), "{}", s.key);
            }
        }
    }

    #[test]
    fn flags_beat_env() {
        let env = env_of(&[("STRATA_NODE_ID", "5"), ("STRATA_LISTEN", "127.0.0.1:5000")]);
        let loaded = load(args(&["--node-id", "6"]), &env).unwrap();
        assert_eq!(loaded.options.node_id, 6);
        assert_eq!(loaded.options.listen.port(), 5000);
        assert_eq!(loaded.origin("node_id"), Origin::Flag("--node-id"));
        assert_eq!(loaded.origin("listener.listen"), Origin::Env("STRATA_LISTEN"));
        let line = loaded.to_string();
        assert!(line.contains("node_id=6(--node-id)"), "{line}");
        assert!(line.contains("listener.listen=127.0.0.1:5000(STRATA_LISTEN)"), "{line}");
        assert!(line.contains("raft.tick=100ms "), "{line}");
    }

    #[test]
    fn bad_flags_are_clap_errors() {
        for bad in [
            &["--listen", "nope"][..],
            &["--node-id", "x"],
            &["--max-frame-bytes", "64XB"],
            &["--shutdown-timeout", "30"],
            &["--metrics-per-partition", "1"],
            &["--voters", "1=b:9700"],
            &["--bogus"],
        ] {
            let e = load(args(bad), &no_env).unwrap_err();
            let ConfigError::Cli(clap_err) = &e else {
                panic!("{e:?}")
            };
            assert!(!e.is_help_or_version());
            assert!(clap_err.to_string().contains(bad[0]), "{clap_err}");
        }
    }

    #[test]
    fn help_and_version_are_surfaced() {
        let e = load(args(&["--help"]), &no_env).unwrap_err();
        assert!(e.is_help_or_version());
        let ConfigError::Cli(clap_err) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(clap_err.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = clap_err.to_string();
        for flag in [
            "--config",
            "--node-id",
            "--voters",
            "--data-dir",
            "--listen",
            "--advertised-address",
            "--http",
            "--max-connections",
            "--max-frame-bytes",
            "--shutdown-timeout",
            "--ready-file",
            "--metrics-per-partition",
            "--help",
            "--version",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
        }
        for s in SETTINGS {
            assert!(help.contains(s.key), "{} missing from --help:\n{help}", s.key);
            assert!(help.contains(s.env), "{} missing from --help:\n{help}", s.env);
            if let Some(alias) = s.env_alias {
                assert!(help.contains(alias), "{alias} missing from --help:\n{help}");
            }
        }
        assert!(help.contains(CONFIG_ENV));

        let e = load(args(&["--version"]), &no_env).unwrap_err();
        assert!(e.is_help_or_version());
        let ConfigError::Cli(clap_err) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(clap_err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(clap_err.to_string().contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn display_is_one_line_with_every_key() {
        let line = Config::default().to_string();
        assert!(!line.contains('\n'));
        for s in SETTINGS {
            assert!(line.contains(&format!("{}=", s.key)), "{line}");
        }
        assert!(line.contains("listener.max_frame_bytes=64MiB"), "{line}");
        assert!(line.contains("topic_defaults.retention_bytes=unlimited"), "{line}");
        let c = Config {
            data_dir: "my data".into(),
            ..Config::default()
        };
        assert!(c.to_string().contains("data_dir=\"my data\""));
    }

    #[test]
    fn voters_parse_and_format() {
        assert_eq!(parse_voters(""), Ok(vec![]));
        assert_eq!(parse_voters("  "), Ok(vec![]));
        assert_eq!(parse_voters("1@a:9700"), Ok(vec![voter(1, "a:9700")]));
        assert_eq!(
            parse_voters(" 1 @ a:9700 , 2@[::1]:9700,3@10.0.0.3:9700 "),
            Ok(vec![
                voter(1, "a:9700"),
                voter(2, "[::1]:9700"),
                voter(3, "10.0.0.3:9700")
            ])
        );
        // Bounds are validate's business: id 0 and port 0 parse.
        assert_eq!(parse_voters("0@a:0"), Ok(vec![voter(0, "a:0")]));
        for (bad, entry) in [
            ("a:9700", "a:9700"),
            ("x@a:9700", "x@a:9700"),
            ("-1@a:9700", "-1@a:9700"),
            ("1@", "1@"),
            ("1@a:1;2@b:1", "1@a:1;2@b:1"),
            ("1@a:1,", ""),
            ("1@a:1,,2@b:1", ""),
            ("99999999999999999999@a:1", "99999999999999999999@a:1"),
        ] {
            let e = parse_voters(bad).unwrap_err();
            assert!(e.contains(&format!("invalid voter {entry:?}")), "{bad}: {e}");
            assert!(e.contains("ID@HOST:PORT"), "{bad}: {e}");
        }
        let list = vec![voter(1, "a:9700"), voter(2, "[::1]:9700")];
        assert_eq!(format_voters(&list), "1@a:9700,2@[::1]:9700");
        assert_eq!(parse_voters(&format_voters(&list)), Ok(list));
    }

    #[test]
    fn voters_validation_messages() {
        let three = || vec![voter(1, "a:9700"), voter(2, "b:9700"), voter(3, "c:9700")];
        let message = |node_id: u64, voters: Vec<Voter>| {
            let c = Config {
                node_id,
                cluster: ClusterConfig {
                    voters,
                    join: None,
                    host_aliases: HostAliases::new(),
                },
                ..Config::default()
            };
            let e = c.validate().unwrap_err();
            assert_eq!(invalid_key(&e), "cluster.voters", "{e}");
            e.to_string()
        };
        let m = message(4, three());
        assert!(
            m.starts_with("invalid cluster.voters = \"1@a:9700,2@b:9700,3@c:9700\": node id 4 is not among the voters (ids 1, 2, 3)"),
            "{m}"
        );
        assert!(m.contains("cluster.join"), "{m}");
        let m = message(1, vec![voter(1, "a:9700"), voter(0, "b:9700")]);
        assert!(m.contains("voter 0@b:9700: the id must be at least 1"), "{m}");
        let m = message(1, vec![voter(1, "a:9700"), voter(1, "b:9700")]);
        assert!(m.contains("voter id 1 appears more than once"), "{m}");
        let m = message(1, vec![voter(1, "a:9700"), voter(2, "a:9700")]);
        assert!(m.contains("address a:9700 appears more than once"), "{m}");
        for (address, reason) in [
            ("a:0", "port must be 1 ..= 65535"),
            ("a:65536", "port must be 1 ..= 65535"),
            ("a:x", "port must be 1 ..= 65535"),
            ("a", "no port"),
            (":1", "bad host"),
        ] {
            let m = message(1, vec![voter(1, address)]);
            assert!(m.contains(&format!("voter 1@{address}: {reason}")), "{m}");
        }
        let ten: Vec<Voter> = (1..=10).map(|id| voter(id, &format!("b{id}:9700"))).collect();
        let m = message(1, ten);
        assert!(m.contains("10 voters; at most 9"), "{m}");

        // In bounds: nine voters, one voter, DNS names and IPs, any position for this node.
        let nine: Vec<Voter> = (1..=9).map(|id| voter(id, &format!("b{id}:9700"))).collect();
        for (node_id, voters) in [(9, nine), (5, vec![voter(5, "[::1]:1")]), (3, three())] {
            let c = Config {
                node_id,
                cluster: ClusterConfig {
                    voters: voters.clone(),
                    join: None,
                    host_aliases: HostAliases::new(),
                },
                ..Config::default()
            };
            assert_eq!(c.to_options().unwrap().voters, voters);
        }
    }

    #[test]
    fn voters_in_the_file() {
        let c = Config::from_toml("node_id = 2\n[cluster]\nvoters = \"1@a:9700,2@b:9700,3@c:9700\"").unwrap();
        assert_eq!(c.cluster.voters.len(), 3);
        assert_eq!(Config::from_toml(&c.to_toml().unwrap()).unwrap(), c);
        // "" is unset; so is a missing [cluster].
        assert_eq!(
            Config::from_toml("[cluster]\nvoters = \"\"").unwrap(),
            Config::default()
        );
        let e = Config::from_toml("[cluster]\nvoters = \"1@a:9700,b:9700\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("voters") && e.contains("invalid voter \"b:9700\""), "{e}");
        assert!(Config::from_toml("[cluster]\nvoters = [\"1@a:9700\"]").is_err());
        assert!(Config::from_toml("[cluster]\nvoter = \"1@a:9700\"").is_err());
    }

    #[test]
    fn env_vars_lists_every_setting() {
        let vars: Vec<_> = env_vars().collect();
        assert_eq!(vars.len(), SETTINGS.len());
        assert!(vars.contains(&("listener.listen", vec!["STRATA_LISTENER_LISTEN", "STRATA_LISTEN"])));
        assert!(vars.contains(&("node_id", vec!["STRATA_NODE_ID"])));
    }
}
