//! Topics: names, per-topic configuration, and the registry: the cluster's topics as this broker
//! has applied them from the metadata log (see [`crate::controller`]). The registry is not
//! persisted on its own: the metadata log is, and is replayed at startup.
//!
//! Topic config keys (Kafka's names where Kafka has the setting):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `retention.bytes` | broker default (unlimited) | delete old segments once a partition is larger; `-1` = unlimited |
//! | `retention.ms` | broker default (7 days) | delete segments whose newest record is older; `-1` = forever |
//! | `segment.bytes` | broker default (1 GiB) | roll segments at this size (4 KiB ..= 2 GiB) |
//! | `max.message.bytes` | broker default (1 MiB) | largest batch accepted (1 KiB ..= 32 MiB: a batch must fit one Raft frame between brokers) |
//! | `flush.policy` | `always` | `always` (fsync before acknowledging, group commit), `interval`, `never` |
//! | `flush.interval.ms` | 1000 | with `flush.policy=interval`: longest data stays unsynced |
//! | `compression.allowed` | `none,lz4,zstd` | codecs producers may use (comma-separated) |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_protocol::{Compression, ErrorCode};
use strata_storage::FlushPolicy;

use crate::options::TopicDefaults;

/// Longest topic name (as Kafka).
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Largest `max.message.bytes`: a batch travels to followers inside one Raft frame, which the
/// transport keeps under 64 MiB.
pub const MAX_MESSAGE_BYTES: u32 = 32 << 20;
/// Most partitions per topic.
pub const MAX_PARTITIONS: u32 = 10_000;

/// A rejected admin request: the wire code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    /// Wire error code.
    pub code: ErrorCode,
    /// Detail.
    pub message: String,
}

impl AdminError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Whether a topic is internal (its name starts with `__`): only the broker creates, writes and
/// deletes those (`__cluster_metadata`, `__consumer_offsets`).
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// Checks a topic name: 1..=249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// `INVALID_TOPIC` with the reason.
pub fn validate_name(name: &str) -> Result<(), AdminError> {
    let bad = |why: &str| {
        Err(AdminError::new(
            ErrorCode::InvalidTopic,
            format!("invalid topic name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A topic's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// `retention.bytes`.
    pub retention_bytes: Option<u64>,
    /// `retention.ms`.
    pub retention_ms: Option<u64>,
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `max.message.bytes`.
    pub max_message_bytes: u32,
    /// `flush.policy`: `always`, `interval` or `never`.
    pub flush_policy: String,
    /// `flush.interval.ms`.
    pub flush_interval_ms: u64,
    /// `compression.allowed`.
    pub compression_allowed: Vec<String>,
}

impl TopicConfig {
    /// The configuration a topic gets from the broker defaults.
    pub fn from_defaults(d: &TopicDefaults) -> Self {
        let (flush_policy, flush_interval_ms) = match d.flush {
            FlushPolicy::Always => ("always", 1000),
            FlushPolicy::Never => ("never", 1000),
            FlushPolicy::Interval(i) => ("interval", i.as_millis() as u64),
        };
        Self {
            retention_bytes: d.retention_bytes,
            retention_ms: d.retention.map(|r| r.as_millis() as u64),
            segment_bytes: d.segment_bytes,
            max_message_bytes: d.max_message_bytes,
            flush_policy: flush_policy.into(),
            flush_interval_ms,
            compression_allowed: ["none", "lz4", "zstd"].map(String::from).to_vec(),
        }
    }

    /// Applies `key = value` overrides on top of `self`, validating each.
    ///
    /// # Errors
    /// `INVALID_CONFIG` naming the key and value.
    pub fn with_overrides<'a>(
        mut self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AdminError> {
        for (key, value) in overrides {
            let bad = |why: &str| {
                AdminError::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid value {value:?} for {key}: {why}"),
                )
            };
            let int = || value.trim().parse::<i64>().map_err(|_| bad("not an integer"));
            match key {
                "retention.bytes" => {
                    self.retention_bytes = non_negative_or_unlimited(int()?).ok_or_else(|| bad("must be ≥ 0 or -1"))?
                }
                "retention.ms" => {
                    self.retention_ms = non_negative_or_unlimited(int()?).ok_or_else(|| bad("must be ≥ 0 or -1"))?
                }
                "segment.bytes" => {
                    let v = int()?;
                    if !(4096..=strata_storage::config::MAX_SEGMENT_BYTES as i64).contains(&v) {
                        return Err(bad("must be between 4096 and 2147483648"));
                    }
                    self.segment_bytes = v as u64;
                }
                "max.message.bytes" => {
                    let v = int()?;
                    if !(1024..=i64::from(MAX_MESSAGE_BYTES)).contains(&v) {
                        return Err(bad("must be between 1024 and 33554432 (32 MiB)"));
                    }
                    self.max_message_bytes = v as u32;
                }
                "flush.policy" => {
                    if !["always", "interval", "never"].contains(&value) {
                        return Err(bad("must be always, interval or never"));
                    }
                    self.flush_policy = value.into();
                }
                "flush.interval.ms" => {
                    let v = int()?;
                    if !(1..=3_600_000).contains(&v) {
                        return Err(bad("must be between 1 and 3600000"));
                    }
                    self.flush_interval_ms = v as u64;
                }
                "compression.allowed" => {
                    let codecs: Vec<String> = value
                        .split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if codecs.is_empty() || codecs.iter().any(|c| Compression::from_name(c).is_none()) {
                        return Err(bad("must be a comma-separated list of none, lz4, zstd"));
                    }
                    self.compression_allowed = codecs;
                }
                _ => {
                    return Err(AdminError::new(
                        ErrorCode::InvalidConfig,
                        format!("unknown topic config {key:?}"),
                    ));
                }
            }
        }
        Ok(self)
    }

    /// The flush policy as the storage engine takes it.
    pub fn flush(&self) -> FlushPolicy {
        match self.flush_policy.as_str() {
            "never" => FlushPolicy::Never,
            "interval" => FlushPolicy::Interval(Duration::from_millis(self.flush_interval_ms.max(1))),
            _ => FlushPolicy::Always,
        }
    }

    /// Whether producers may use `codec`.
    pub fn allows(&self, codec: Compression) -> bool {
        self.compression_allowed.iter().any(|c| c == codec.name())
    }

    /// The configuration as `key = value` pairs, as Metadata reports it.
    pub fn entries(&self) -> Vec<(String, String)> {
        let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        vec![
            ("retention.bytes".into(), opt(self.retention_bytes)),
            ("retention.ms".into(), opt(self.retention_ms)),
            ("segment.bytes".into(), self.segment_bytes.to_string()),
            ("max.message.bytes".into(), self.max_message_bytes.to_string()),
            ("flush.policy".into(), self.flush_policy.clone()),
            ("flush.interval.ms".into(), self.flush_interval_ms.to_string()),
            ("compression.allowed".into(), self.compression_allowed.join(",")),
        ]
    }
}

fn non_negative_or_unlimited(v: i64) -> Option<Option<u64>> {
    match v {
        -1 => Some(None),
        v if v >= 0 => Some(Some(v as u64)),
        _ => None,
    }
}

/// A topic in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// The topic's id: the metadata log index of its creation.
    pub id: u64,
    /// Partition count.
    pub partitions: u32,
    /// Configuration.
    pub config: TopicConfig,
    /// Replica node ids per partition, the preferred leader first.
    pub replicas: Vec<Vec<u64>>,
    /// Each partition's replicas at creation (its Raft group's bootstrap configuration).
    #[serde(default)]
    pub initial: Vec<Vec<u64>>,
    /// Reassignments in progress: the replicas a partition moves to.
    #[serde(default)]
    pub targets: BTreeMap<u32, Vec<u64>>,
}

impl TopicMeta {
    /// Partition `p`'s assignment (`None` past the partition count).
    pub fn assignment(&self, p: u32) -> Option<crate::partition::Assignment> {
        let replicas = self.replicas.get(p as usize)?.clone();
        Some(crate::partition::Assignment {
            initial: self
                .initial
                .get(p as usize)
                .cloned()
                .unwrap_or_else(|| replicas.clone()),
            target: self.targets.get(&p).cloned(),
            replicas,
            learners: Vec::new(),
        })
    }
}

/// The cluster's metadata, as applied from the metadata log.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// The last metadata log index applied.
    #[serde(default)]
    pub index: u64,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next producer id the controller hands out (ids start at 1).
    #[serde(default)]
    pub next_producer_id: u64,
    /// Brokers being emptied: placement skips them.
    #[serde(default)]
    pub decommissioned: std::collections::BTreeSet<u64>,
    /// Data-only brokers that joined (not voters), with their client addresses.
    #[serde(default)]
    pub brokers: BTreeMap<u64, String>,
    /// The request ids of the newest commands applied, so a command proposed twice (a proposal
    /// retried after it seemed lost) applies once. Part of snapshots: every broker must skip
    /// the same copies.
    #[serde(default)]
    pub recent: RecentRequests,
}

/// The newest request ids applied (a bounded window, the same on every broker: it is rebuilt
/// by applying the same log). Serialized as the list, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(u64, u64, u64)>", into = "Vec<(u64, u64, u64)>")]
pub struct RecentRequests {
    order: std::collections::VecDeque<(u64, u64, u64)>,
    set: std::collections::HashSet<(u64, u64, u64)>,
}

impl From<Vec<(u64, u64, u64)>> for RecentRequests {
    fn from(ids: Vec<(u64, u64, u64)>) -> Self {
        let mut r = Self::default();
        for id in ids {
            r.insert(id);
        }
        r
    }
}

impl From<RecentRequests> for Vec<(u64, u64, u64)> {
    fn from(r: RecentRequests) -> Self {
        r.order.into_iter().collect()
    }
}

impl RecentRequests {
    /// Requests remembered.
    const WINDOW: usize = 4096;

    /// Records a request id; `false` if it was applied already.
    pub fn insert(&mut self, id: (u64, u64, u64)) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// The directory of a partition.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join("partitions").join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(250)] {
            assert_eq!(validate_name(bad).unwrap_err().code, ErrorCode::InvalidTopic, "{bad:?}");
        }
    }

    #[test]
    fn overrides_are_validated_and_round_trip() {
        let base = TopicConfig::from_defaults(&TopicDefaults::default());
        let c = base
            .clone()
            .with_overrides([
                ("retention.bytes", "1000"),
                ("retention.ms", "-1"),
                ("flush.policy", "interval"),
                ("compression.allowed", "lz4"),
            ])
            .unwrap();
        assert_eq!(c.retention_bytes, Some(1000));
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.flush(), FlushPolicy::Interval(Duration::from_millis(1000)));
        assert!(c.allows(Compression::Lz4) && !c.allows(Compression::None));
        let again = base
            .clone()
            .with_overrides(c.entries().iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap();
        assert_eq!(again, c);
        for (k, v) in [
            ("segment.bytes", "10"),
            ("max.message.bytes", "x"),
            ("flush.policy", "sometimes"),
            ("nope", "1"),
            ("retention.ms", "-5"),
            ("compression.allowed", "gzip"),
        ] {
            assert_eq!(
                base.clone().with_overrides([(k, v)]).unwrap_err().code,
                ErrorCode::InvalidConfig,
                "{k}={v}"
            );
        }
    }
}
