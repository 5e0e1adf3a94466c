//! What the broker library needs to run, already validated. The `config` module builds this from
//! the TOML file, `STRATA_*` environment variables and flags; tests build it directly.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use strata_protocol::host_aliases::HostAliases;
use strata_storage::FlushPolicy;

/// Defaults applied to topics that do not override them.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDefaults {
    /// Partitions of a topic created without a count. Default 1.
    pub partitions: u32,
    /// Delete old segments once a partition is larger than this (`None`: no size limit).
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this (`None`: keep forever). Default 7 days.
    pub retention: Option<Duration>,
    /// Segment size. Default 1 GiB.
    pub segment_bytes: u64,
    /// Largest batch accepted. Default 1 MiB.
    pub max_message_bytes: u32,
    /// When appends are fsynced. Default `Always` (group commit).
    pub flush: FlushPolicy,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self {
            partitions: 1,
            retention_bytes: None,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            segment_bytes: 1 << 30,
            max_message_bytes: 1 << 20,
            flush: FlushPolicy::Always,
        }
    }
}

/// One member of the metadata controller quorum: a broker's node id and the `host:port` of its
/// client listener (its `--listen` address, or the advertised one if that differs), where the
/// other voters reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The broker's node id (≥ 1), as its own `node_id`.
    pub id: u64,
    /// `host:port`; the host is a DNS name or an IP (IPv6 in brackets), the port 1 ..= 65535.
    pub address: String,
}

/// `ID@HOST:PORT`, the form `--voters` takes.
impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.address)
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerOptions {
    /// This broker's node id (≥ 1).
    pub node_id: u64,
    /// The metadata controller quorum: every voter of the cluster, this broker among them, with
    /// unique ids and addresses, at most 9. Default empty: a cluster of one, this broker its only
    /// voter.
    pub voters: Vec<Voter>,
    /// `host:port` of a broker of a running cluster this broker joins as a data-only broker
    /// (not a voter). Default none.
    pub join: Option<String>,
    /// DNS names standing for IP addresses in the connections this broker makes (voters, join,
    /// peers), before the system resolver. Default none.
    pub host_aliases: HostAliases,
    /// Client listener. Port 0 picks a free port; the bound address is reported once listening.
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to (default: the bound listen address).
    pub advertised_address: Option<String>,
    /// HTTP listener (metrics, health, admin).
    pub http: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Largest request frame accepted. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// Most concurrent client connections. Default 10,000.
    pub max_connections: usize,
    /// Most requests read ahead of their responses on one connection. Default 64.
    pub max_in_flight_per_connection: usize,
    /// Close a connection with no request in flight that sent nothing for this long (as
    /// Kafka's `connections.max.idle.ms`). Default 10 minutes.
    pub idle_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests before exiting anyway. Default 30 s.
    pub shutdown_timeout: Duration,
    /// Raft tick interval. Default 100 ms.
    pub raft_tick: Duration,
    /// How often retention looks for segments to delete. Default 30 s.
    pub retention_check_interval: Duration,
    /// Defaults for topics.
    pub topic_defaults: TopicDefaults,
    /// Where to write the bound addresses once listening (for tests and scripts), if anywhere.
    pub ready_file: Option<PathBuf>,
    /// Export per-partition metric series (labels `topic`, `partition`). Default true; turn it
    /// off on brokers with very many partitions to keep the scrape small.
    pub metrics_per_partition: bool,
    /// Consumer group coordination.
    pub groups: GroupOptions,
}

/// Consumer group coordination settings (`[groups]`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOptions {
    /// Partitions of `__consumer_offsets` (fixed once the topic exists). Default 8.
    pub offsets_partitions: u32,
    /// Replication factor of `__consumer_offsets`, capped at the number of brokers when the topic
    /// is created. Default 3.
    pub offsets_replication_factor: u32,
    /// Session timeout of members that do not ask for one. Default 10 s.
    pub session_timeout: Duration,
    /// Shortest session timeout a member may ask for. Default 1 s.
    pub min_session_timeout: Duration,
    /// Longest session timeout a member may ask for. Default 5 minutes.
    pub max_session_timeout: Duration,
    /// How often members heartbeat (members with partitions in motion: five times as often).
    /// Default 1 s.
    pub heartbeat_interval: Duration,
    /// Longest a member may take to revoke partitions before it is removed, for members that
    /// do not say. Default 5 minutes.
    pub rebalance_timeout: Duration,
    /// Most members of one group. Default 1000.
    pub max_size: usize,
    /// A coordinator snapshots its groups into `__consumer_offsets` once it has written this
    /// much since its last snapshot, and the log below the snapshot is deleted; also the
    /// topic's segment size. Default 16 MiB.
    pub offsets_snapshot_bytes: u64,
    /// A group with no member loses its committed offsets this long after it became empty and
    /// after its last commit (`None`: never). Default 7 days.
    pub offsets_retention: Option<Duration>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            offsets_partitions: 8,
            offsets_replication_factor: 3,
            session_timeout: Duration::from_secs(10),
            min_session_timeout: Duration::from_secs(1),
            max_session_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(1),
            rebalance_timeout: Duration::from_secs(300),
            max_size: 1000,
            offsets_snapshot_bytes: 16 << 20,
            offsets_retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            node_id: 1,
            voters: Vec::new(),
            join: None,
            host_aliases: HostAliases::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9700)),
            advertised_address: None,
            http: SocketAddr::from(([127, 0, 0, 1], 9701)),
            data_dir: PathBuf::from("strata-data"),
            max_frame_bytes: strata_protocol::frame::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_in_flight_per_connection: 64,
            idle_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(30),
            raft_tick: Duration::from_millis(100),
            retention_check_interval: Duration::from_secs(30),
            topic_defaults: TopicDefaults::default(),
            ready_file: None,
            metrics_per_partition: true,
            groups: GroupOptions::default(),
        }
    }
}
