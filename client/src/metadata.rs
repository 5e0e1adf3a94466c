//! The client's view of the cluster: brokers, topics, partitions and their leaders, as the last
//! `Metadata` response described them.
//!
//! [`ClusterMetadata`] is an immutable snapshot behind an `Arc`; a refresh builds a new one and
//! swaps it in, so readers never hold a lock while they use it. The types serialize (serde) so a
//! CLI can print them as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use strata_protocol::ErrorCode;
use strata_protocol::api::{MetadataResponse, PartitionMetadata, TopicMetadata};
use tracing::warn;

/// Serializes an [`ErrorCode`] as its stable name (`"NOT_LEADER"`).
pub(crate) fn serialize_code<S: serde::Serializer>(code: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.name())
}

fn serialize_topics<S: serde::Serializer>(topics: &BTreeMap<String, Arc<TopicInfo>>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(topics.iter().map(|(k, v)| (k, &**v)))
}

/// One broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Host as advertised.
    pub host: String,
    /// Port as advertised.
    pub port: u16,
    /// The address the client connects to: `host:port`, with IPv6 hosts bracketed, and an
    /// unspecified host (`0.0.0.0`, `::`, empty) replaced by the host of the broker that
    /// answered the metadata request (a broker that advertises its wildcard listen address is
    /// still reachable).
    pub addr: String,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// The partition's error (`NONE`, or e.g. `LEADER_NOT_AVAILABLE`).
    #[serde(serialize_with = "serialize_code")]
    pub error: ErrorCode,
    /// Leader's node id, `None` if there is none right now.
    pub leader: Option<i32>,
    /// The leader's Raft term.
    pub leader_term: i64,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub in_sync: Vec<i32>,
    /// First offset in the log.
    pub log_start_offset: i64,
    /// Offset up to which records are committed (what consumers can read).
    pub high_watermark: i64,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic-level error (`NONE` normally).
    #[serde(serialize_with = "serialize_code")]
    pub error: ErrorCode,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
    /// The topic's effective configuration.
    pub configs: BTreeMap<String, String>,
    /// When this was fetched.
    #[serde(skip)]
    pub fetched_at: Instant,
    /// Indexes of the partitions that have a leader (precomputed for partitioners).
    #[serde(skip)]
    available: Vec<i32>,
    /// `max.message.bytes` from `configs`, parsed (precomputed for the producer, which needs
    /// it for every record).
    #[serde(skip)]
    max_message_bytes: Option<usize>,
}

impl TopicInfo {
    /// A topic description (partitions are sorted by index and deduplicated).
    pub fn new(
        name: String,
        error: ErrorCode,
        mut partitions: Vec<PartitionInfo>,
        configs: BTreeMap<String, String>,
    ) -> Self {
        partitions.sort_by_key(|p| p.partition);
        partitions.dedup_by_key(|p| p.partition);
        let available = partitions
            .iter()
            .filter(|p| p.leader.is_some())
            .map(|p| p.partition)
            .collect();
        let max_message_bytes = configs.get("max.message.bytes").and_then(|v| v.parse().ok());
        Self {
            name,
            error,
            partitions,
            configs,
            fetched_at: Instant::now(),
            available,
            max_message_bytes,
        }
    }

    /// The topic's `max.message.bytes` (the largest batch it takes), if its configuration has
    /// a valid one.
    pub fn max_message_bytes(&self) -> Option<usize> {
        self.max_message_bytes
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// The partition with index `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        self.partitions
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// Indexes of the partitions that have a leader, ascending.
    pub fn available_partitions(&self) -> &[i32] {
        &self.available
    }
}

/// The whole cluster as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterMetadata {
    /// Cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The controller's node id, `None` if unknown.
    pub controller_id: Option<i32>,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics known to the client (those it asked about), by name.
    #[serde(serialize_with = "serialize_topics")]
    pub topics: BTreeMap<String, Arc<TopicInfo>>,
}

impl ClusterMetadata {
    /// The topic named `name`, if known.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.topics.get(name)
    }

    /// The leader of `topic`/`partition`, if known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<&BrokerInfo> {
        let leader = self.topic(topic)?.partition(partition)?.leader?;
        self.brokers.get(&leader)
    }

    /// A new snapshot: `self` updated with `response`, which answered a request for `requested`
    /// topics (`None`: all topics, so topics missing from it are dropped). `source_host` is the
    /// host of the broker that answered.
    pub(crate) fn merged(&self, response: MetadataResponse, requested: Option<&[String]>, source_host: &str) -> Self {
        let now = Instant::now();
        let mut brokers = BTreeMap::new();
        for b in response.brokers {
            let Ok(port) = u16::try_from(b.port) else {
                warn!(
                    node_id = b.node_id,
                    port = b.port,
                    "metadata names a broker with an invalid port; ignored"
                );
                continue;
            };
            let addr = broker_addr(&b.host, port, source_host);
            brokers.insert(
                b.node_id,
                BrokerInfo {
                    node_id: b.node_id,
                    host: b.host,
                    port,
                    addr,
                },
            );
        }
        if brokers.is_empty() {
            // A response listing no brokers cannot be right (the one answering is a broker);
            // keep what we knew rather than forget how to reach anyone.
            brokers = self.brokers.clone();
        }
        let mut topics = match requested {
            None => BTreeMap::new(),
            Some(names) => {
                let mut t = self.topics.clone();
                for n in names {
                    t.remove(n);
                }
                t
            }
        };
        for topic in response.topics {
            if topic.error == ErrorCode::UnknownTopicOrPartition {
                continue;
            }
            let info = topic_info(topic, now);
            topics.insert(info.name.clone(), Arc::new(info));
        }
        Self {
            cluster_id: response.cluster_id,
            controller_id: (response.controller_id >= 0).then_some(response.controller_id),
            brokers,
            topics,
        }
    }
}

fn topic_info(topic: TopicMetadata, now: Instant) -> TopicInfo {
    let partitions = topic.partitions.into_iter().map(partition_info).collect();
    let configs = topic.configs.into_iter().map(|c| (c.key, c.value)).collect();
    TopicInfo {
        fetched_at: now,
        ..TopicInfo::new(topic.name, topic.error, partitions, configs)
    }
}

fn partition_info(p: PartitionMetadata) -> PartitionInfo {
    PartitionInfo {
        partition: p.partition,
        error: p.error,
        leader: (p.leader >= 0).then_some(p.leader),
        leader_term: p.leader_term,
        replicas: p.replicas,
        in_sync: p.in_sync,
        log_start_offset: p.log_start_offset,
        high_watermark: p.high_watermark,
    }
}

/// `host:port` to connect to a broker that advertises `host` and `port`, learned through a
/// connection to `source_host`: a wildcard or empty host means that same host; an IPv6 literal
/// gets brackets.
pub(crate) fn broker_addr(host: &str, port: u16, source_host: &str) -> String {
    let host = if matches!(host, "" | "0.0.0.0" | "::" | "[::]") {
        source_host
    } else {
        host
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::api::BrokerMetadata;

    use super::*;

    fn response(host: &str, topics: &[(&str, i32)]) -> MetadataResponse {
        MetadataResponse {
            brokers: vec![BrokerMetadata {
                node_id: 1,
                host: host.to_owned(),
                port: 9700,
            }],
            controller_id: 1,
            cluster_id: Some("c".into()),
            topics: topics
                .iter()
                .map(|(name, n)| TopicMetadata {
                    error: ErrorCode::None,
                    name: (*name).to_owned(),
                    partitions: (0..*n)
                        .rev()
                        .map(|p| PartitionMetadata {
                            error: ErrorCode::None,
                            partition: p,
                            leader: 1,
                            leader_term: 1,
                            replicas: vec![1],
                            in_sync: vec![1],
                            log_start_offset: 0,
                            high_watermark: 0,
                        })
                        .collect(),
                    configs: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn merge_replaces_requested_topics_and_fixes_wildcard_hosts() {
        let m = ClusterMetadata::default().merged(response("0.0.0.0", &[("a", 2), ("b", 1)]), None, "10.0.0.1");
        assert_eq!(m.brokers[&1].addr, "10.0.0.1:9700");
        assert_eq!(m.topic("a").unwrap().partitions[0].partition, 0);
        assert_eq!(m.leader("a", 1).unwrap().node_id, 1);
        // A refresh of only "a" keeps "b".
        let m = m.merged(response("::1", &[("a", 3)]), Some(&["a".to_owned()]), "x");
        assert_eq!(m.topic("a").unwrap().partition_count(), 3);
        assert!(m.topic("b").is_some());
        assert_eq!(m.brokers[&1].addr, "[::1]:9700");
        // A full refresh drops topics not listed.
        let m = m.merged(response("h", &[]), None, "x");
        assert!(m.topics.is_empty());
    }
}
