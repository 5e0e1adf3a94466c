//! `strata topic …` and `strata cluster …`: thin wrappers over the library's [`Admin`].
//!
//! Text output is for people; `--format json` prints one JSON value (the shapes are in the
//! README). Per-topic failures (`TOPIC_ALREADY_EXISTS`, `UNKNOWN_TOPIC_OR_PARTITION`, …) are
//! errors: one line on stderr and exit 1.

use std::collections::BTreeMap;

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;
use strata_client::protocol::ErrorCode;
use strata_client::{Admin, ClusterMetadata, Error, NewTopic, TopicInfo};

use crate::Global;
use crate::output::Out;

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: 1 to 249 of `[a-zA-Z0-9._-]`.
        name: String,
        /// Number of partitions (default: the broker's `topic_defaults.partitions`).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's; a single broker allows only 1).
        #[arg(long, value_name = "R", value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: Option<i16>,
        /// A topic config override, e.g. `retention.ms=86400000`; repeat for several.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List,
    /// Describe a topic: partitions, leaders, offsets and config.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and all its records.
    Delete {
        /// Topic name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Describe the cluster: id, controller, and each broker with how many partitions it leads
    /// and how many replicas it hosts.
    Describe,
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub async fn topic(global: &Global, out: &mut Out, cmd: TopicCommand) -> anyhow::Result<()> {
    let admin = global.connect().await?.admin();
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => create(&admin, out, name, partitions, replication_factor, configs).await,
        TopicCommand::List => list(&admin, out).await,
        TopicCommand::Describe { name } => describe(&admin, out, &name).await,
        TopicCommand::Delete { name } => delete(&admin, out, &name).await,
    }
}

#[derive(Serialize)]
struct Created<'a> {
    name: &'a str,
    created: bool,
}

#[derive(Serialize)]
struct Deleted<'a> {
    name: &'a str,
    deleted: bool,
}

async fn create(
    admin: &Admin,
    out: &mut Out,
    name: String,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: Vec<(String, String)>,
) -> anyhow::Result<()> {
    // −1 on the wire: the broker's default.
    let mut topic = NewTopic::new(
        name.as_str(),
        partitions.unwrap_or(-1),
        replication_factor.unwrap_or(-1),
    );
    for (k, v) in configs {
        topic = topic.config(k, v);
    }
    admin
        .create_topic(topic)
        .await
        .map_err(|e| strip_topic(e, &name))
        .with_context(|| format!("cannot create topic {name}"))?;
    if out.json() {
        out.json_line(&Created {
            name: &name,
            created: true,
        })
    } else {
        out.line(&format!("created topic {name}"))
    }
}

async fn delete(admin: &Admin, out: &mut Out, name: &str) -> anyhow::Result<()> {
    admin
        .delete_topic(name)
        .await
        .map_err(|e| strip_topic(e, name))
        .with_context(|| format!("cannot delete topic {name}"))?;
    if out.json() {
        out.json_line(&Deleted { name, deleted: true })
    } else {
        out.line(&format!("deleted topic {name}"))
    }
}

/// A per-topic error reads `topic t: CODE (n): message`; after `cannot create topic t` the
/// name is said already, and for an unknown topic the broker's code alone says it.
fn strip_topic(e: Error, name: &str) -> anyhow::Error {
    match e {
        Error::Topic {
            code: ErrorCode::UnknownTopicOrPartition,
            ..
        } => anyhow::anyhow!("unknown topic {name}"),
        Error::Topic { code, message, .. } => match message {
            Some(m) => anyhow::anyhow!("{code}: {m}"),
            None => anyhow::anyhow!("{code}"),
        },
        e => e.into(),
    }
}

async fn list(admin: &Admin, out: &mut Out) -> anyhow::Result<()> {
    let topics = admin.list_topics().await.context("cannot list topics")?;
    if out.json() {
        return out.json_line(&topics);
    }
    for t in &topics {
        out.line(&t.name)?;
    }
    Ok(())
}

/// `topic describe --format json`.
#[derive(Serialize)]
struct TopicJson<'a> {
    name: &'a str,
    partitions: Vec<PartitionJson<'a>>,
    config: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct PartitionJson<'a> {
    partition: i32,
    /// `null` while the partition has no leader.
    leader: Option<i32>,
    replicas: &'a [i32],
    in_sync: &'a [i32],
    log_start: i64,
    high_watermark: i64,
}

async fn describe(admin: &Admin, out: &mut Out, name: &str) -> anyhow::Result<()> {
    let topics = admin
        .describe_topics(&[name])
        .await
        .with_context(|| format!("cannot describe topic {name}"))?;
    let Some(t) = topics.into_iter().find(|t| t.name == name) else {
        anyhow::bail!("cannot describe topic {name}: unknown topic {name}");
    };
    if !t.error.is_ok() {
        anyhow::bail!("cannot describe topic {name}: {}", t.error);
    }
    if out.json() {
        out.json_line(&topic_json(&t))
    } else {
        describe_text(out, &t)
    }
}

fn topic_json(t: &TopicInfo) -> TopicJson<'_> {
    TopicJson {
        name: &t.name,
        partitions: t
            .partitions
            .iter()
            .map(|p| PartitionJson {
                partition: p.partition,
                leader: p.leader,
                replicas: &p.replicas,
                in_sync: &p.in_sync,
                log_start: p.log_start_offset,
                high_watermark: p.high_watermark,
            })
            .collect(),
        config: &t.configs,
    }
}

fn describe_text(out: &mut Out, t: &TopicInfo) -> anyhow::Result<()> {
    out.line(&format!("topic {}  partitions {}", t.name, t.partition_count()))?;
    if !t.configs.is_empty() {
        let config: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.line(&format!("config {}", config.join(" ")))?;
    }
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<[String; 6]> = t
        .partitions
        .iter()
        .map(|p| {
            [
                p.partition.to_string(),
                p.leader.map_or_else(|| "none".to_owned(), |l| l.to_string()),
                ids(&p.replicas),
                ids(&p.in_sync),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
            ]
        })
        .collect();
    table(
        out,
        [
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "IN-SYNC",
            "LOG-START",
            "HIGH-WATERMARK",
        ],
        &rows,
    )
}

/// Left-aligned columns two spaces apart.
pub(crate) fn table<const N: usize>(out: &mut Out, header: [&str; N], rows: &[[String; N]]) -> anyhow::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let render = |cells: [&str; N]| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        line
    };
    out.line(&render(header))?;
    for row in rows {
        out.line(&render(row.each_ref().map(String::as_str)))?;
    }
    Ok(())
}

/// `cluster describe --format json`.
#[derive(Serialize)]
struct ClusterJson<'a> {
    cluster_id: Option<&'a str>,
    controller: Option<i32>,
    brokers: Vec<BrokerJson<'a>>,
}

#[derive(Serialize)]
struct BrokerJson<'a> {
    node_id: i32,
    host: &'a str,
    port: u16,
    addr: &'a str,
    /// Partitions this broker leads.
    leader_count: usize,
    /// Partition replicas this broker hosts (led ones included).
    replica_count: usize,
}

/// What one broker carries, counted over every partition of every topic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Load {
    leader_count: usize,
    replica_count: usize,
}

/// Each broker's [`Load`], by node id, from the partitions' `leader` and `replicas`. Node ids that
/// appear only in partitions (a broker missing from the metadata's broker list) get an entry too,
/// though `cluster describe` lists only the brokers the metadata names.
fn loads(metadata: &ClusterMetadata) -> BTreeMap<i32, Load> {
    let mut loads: BTreeMap<i32, Load> = BTreeMap::new();
    for p in metadata.topics.values().flat_map(|t| &t.partitions) {
        if let Some(leader) = p.leader {
            loads.entry(leader).or_default().leader_count += 1;
        }
        for &replica in &p.replicas {
            loads.entry(replica).or_default().replica_count += 1;
        }
    }
    loads
}

pub async fn cluster(global: &Global, out: &mut Out, cmd: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Describe = cmd;
    // One Metadata request for every topic: the brokers and controller, and the partitions'
    // leaders and replicas to count.
    let client = global.connect().await?;
    let c = client
        .refresh_metadata(None)
        .await
        .context("cannot describe the cluster")?;
    let loads = loads(&c);
    let load = |node_id: i32| loads.get(&node_id).copied().unwrap_or_default();
    if out.json() {
        return out.json_line(&ClusterJson {
            cluster_id: c.cluster_id.as_deref(),
            controller: c.controller_id,
            brokers: c
                .brokers
                .values()
                .map(|b| BrokerJson {
                    node_id: b.node_id,
                    host: &b.host,
                    port: b.port,
                    addr: &b.addr,
                    leader_count: load(b.node_id).leader_count,
                    replica_count: load(b.node_id).replica_count,
                })
                .collect(),
        });
    }
    out.line(&format!(
        "cluster {}  controller {}",
        c.cluster_id.as_deref().unwrap_or("-"),
        c.controller_id.map_or_else(|| "none".to_owned(), |id| id.to_string())
    ))?;
    let rows: Vec<[String; 4]> = c
        .brokers
        .values()
        .map(|b| {
            let l = load(b.node_id);
            [
                b.node_id.to_string(),
                b.addr.clone(),
                l.leader_count.to_string(),
                l.replica_count.to_string(),
            ]
        })
        .collect();
    table(out, ["NODE", "ADDRESS", "LEADERS", "REPLICAS"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_flags_split_at_the_first_equals_sign() {
        assert_eq!(parse_config("a.b=c=d"), Ok(("a.b".to_owned(), "c=d".to_owned())));
        assert!(parse_config("novalue").is_err());
        assert!(parse_config("=v").is_err());
    }

    #[test]
    fn loads_count_leaders_and_replicas_per_broker() {
        use std::sync::Arc;
        use strata_client::PartitionInfo;

        let partition = |partition: i32, leader: Option<i32>, replicas: &[i32]| PartitionInfo {
            partition,
            error: ErrorCode::None,
            leader,
            leader_term: 1,
            replicas: replicas.to_vec(),
            in_sync: replicas.to_vec(),
            log_start_offset: 0,
            high_watermark: 0,
        };
        let topic = |name: &str, partitions: Vec<PartitionInfo>| {
            let t = TopicInfo::new(name.to_owned(), ErrorCode::None, partitions, BTreeMap::new());
            (name.to_owned(), Arc::new(t))
        };
        let metadata = ClusterMetadata {
            topics: BTreeMap::from([
                topic(
                    "a",
                    vec![
                        partition(0, Some(1), &[1, 2, 3]),
                        partition(1, Some(2), &[2, 3, 1]),
                        partition(2, None, &[3, 1, 2]),
                    ],
                ),
                topic("b", vec![partition(0, Some(1), &[1, 4])]),
            ]),
            ..ClusterMetadata::default()
        };
        let l = loads(&metadata);
        let load = |leader_count, replica_count| Load {
            leader_count,
            replica_count,
        };
        assert_eq!(
            l,
            BTreeMap::from([(1, load(2, 4)), (2, load(1, 3)), (3, load(0, 3)), (4, load(0, 1))])
        );
        assert!(loads(&ClusterMetadata::default()).is_empty());
    }
}
