//! The admin client's consumer-group operations: list, describe (with lag), delete, and reset
//! committed offsets.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use strata_protocol::ErrorCode;
use strata_protocol::api::list_offsets::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use strata_protocol::api::{
    DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest, ListGroupsResponse, OffsetFetchRequest,
    TopicPartitions,
};

use crate::admin::Admin;
use crate::consumer::TopicPartition;
use crate::error::{Error, Result};
use crate::group::GroupClient;

/// A group as `list_groups` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// `empty`, `reconciling` or `stable`.
    pub state: String,
    /// Members.
    pub members: i32,
    /// The coordinator's node id.
    pub coordinator: i32,
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// The client's address as the coordinator saw it.
    pub client_host: String,
    /// Member epoch.
    pub member_epoch: i32,
    /// Subscribed topic names.
    pub subscribed_topics: Vec<String>,
    /// Subscribed regex.
    pub subscribed_regex: Option<String>,
    /// Partitions it owns now.
    pub assignment: Vec<TopicPartition>,
    /// Partitions the coordinator is moving it toward.
    pub target_assignment: Vec<TopicPartition>,
}

/// One partition of a group: committed offset, log end and lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPartitionOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed).
    pub committed: Option<u64>,
    /// The partition's high watermark (`None` if it could not be read).
    pub log_end: Option<u64>,
    /// `log_end − committed` (`log_end − log start` without a commit is not counted: `None`).
    pub lag: Option<u64>,
    /// The member that owns the partition now, if any.
    pub owner: Option<String>,
}

/// A group, described by its coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// `empty`, `reconciling` or `stable`.
    pub state: String,
    /// Group epoch.
    pub epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// Members.
    pub members: Vec<GroupMemberDescription>,
    /// Every partition the group owns or has committed, sorted.
    pub offsets: Vec<GroupPartitionOffset>,
    /// Sum of the partitions' lag.
    pub total_lag: u64,
}

/// Where `reset_offsets` moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark (skip everything so far).
    Latest,
    /// This offset in every partition (clamped into the log).
    Offset(u64),
    /// The first record at or after this time (ms since the epoch); the high watermark if none.
    Timestamp(i64),
}

fn tps(list: &[TopicPartitions]) -> Vec<TopicPartition> {
    list.iter()
        .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.topic.clone(), *p)))
        .collect()
}

impl Admin {
    fn group(&self, group: &str) -> GroupClient {
        GroupClient::new(self.client().clone(), group)
    }

    /// Every group of the cluster (each broker lists the groups it coordinates; one still loading
    /// some is asked again for up to 5 s), sorted. A group whose coordinator is moving right now
    /// may be missing.
    ///
    /// # Errors
    /// A metadata error; a broker that cannot be reached is skipped.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let metadata = self.client().refresh_metadata(Some(Vec::new())).await?;
        let mut out: BTreeMap<String, GroupListing> = BTreeMap::new();
        let mut reached = 0;
        let mut last_error = None;
        for id in metadata.brokers.keys() {
            // A broker still loading some groups says so: ask it again, for a few seconds.
            let mut r: Result<ListGroupsResponse>;
            let mut attempts = 0;
            loop {
                r = async {
                    let conn = self.client().broker_connection(*id).await?;
                    conn.send(ListGroupsRequest::default()).await
                }
                .await;
                attempts += 1;
                match &r {
                    Ok(l) if l.error == ErrorCode::CoordinatorLoadInProgress && attempts < 50 => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    _ => break,
                }
            }
            match r {
                Ok(r) => {
                    reached += 1;
                    for g in r.groups {
                        out.insert(
                            g.group_id.clone(),
                            GroupListing {
                                group_id: g.group_id,
                                state: g.state,
                                members: g.member_count,
                                coordinator: *id,
                            },
                        );
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        if reached == 0
            && let Some(e) = last_error
        {
            return Err(e);
        }
        Ok(out.into_values().collect())
    }

    /// Describes a group: members, their assignments, and per partition the committed offset,
    /// log end and lag.
    ///
    /// # Errors
    /// [`Error::Group`] (`GROUP_ID_NOT_FOUND` for an unknown group), a connection error.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let g = self.group(group);
        let r = g
            .send(
                DescribeGroupsRequest {
                    group_ids: vec![group.to_owned()],
                },
                |r| r.groups.first().map(|d| (d.error, d.message.clone())),
            )
            .await?;
        let Some(d) = r.groups.into_iter().next() else {
            return Err(Error::group(
                group,
                ErrorCode::UnknownServerError,
                Some("no answer".into()),
            ));
        };
        let offsets = g
            .send(
                OffsetFetchRequest {
                    group_id: group.to_owned(),
                    topics: None,
                },
                |r| Some((r.error, r.message.clone())),
            )
            .await?;
        let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
        let members: Vec<GroupMemberDescription> = d
            .members
            .into_iter()
            .map(|m| {
                let assignment = tps(&m.assignment);
                for tp in &assignment {
                    owner.insert(tp.clone(), m.member_id.clone());
                }
                GroupMemberDescription {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    member_epoch: m.member_epoch,
                    subscribed_topics: m.subscribed_topic_names,
                    subscribed_regex: m.subscribed_topic_regex,
                    assignment,
                    target_assignment: tps(&m.target_assignment),
                }
            })
            .collect();
        let mut committed: BTreeMap<TopicPartition, Option<u64>> = BTreeMap::new();
        for t in &offsets.topics {
            for p in &t.partitions {
                committed.insert(
                    TopicPartition::new(t.name.clone(), p.partition),
                    u64::try_from(p.committed_offset).ok(),
                );
            }
        }
        let all: BTreeSet<TopicPartition> = committed.keys().chain(owner.keys()).cloned().collect();
        let mut rows = Vec::with_capacity(all.len());
        let mut total_lag = 0;
        for tp in all {
            let log_end = self
                .client()
                .list_offset(&tp.topic, tp.partition, LATEST_TIMESTAMP)
                .await
                .ok()
                .flatten();
            let c = committed.get(&tp).copied().flatten();
            let lag = match (log_end, c) {
                (Some(e), Some(c)) => Some(e.saturating_sub(c)),
                _ => None,
            };
            total_lag += lag.unwrap_or(0);
            rows.push(GroupPartitionOffset {
                owner: owner.get(&tp).cloned(),
                topic: tp.topic,
                partition: tp.partition,
                committed: c,
                log_end,
                lag,
            });
        }
        Ok(GroupDescription {
            group_id: d.group_id,
            state: d.state,
            epoch: d.group_epoch,
            assignment_epoch: d.assignment_epoch,
            members,
            offsets: rows,
            total_lag,
        })
    }

    /// Deletes a group with no members, and its committed offsets.
    ///
    /// # Errors
    /// [`Error::Group`]: `NON_EMPTY_GROUP` while it has members, `GROUP_ID_NOT_FOUND`.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        self.group(group)
            .send(
                DeleteGroupsRequest {
                    group_ids: vec![group.to_owned()],
                },
                |r| r.results.first().map(|d| (d.error, d.message.clone())),
            )
            .await
            .map(|_| ())
    }

    /// Sets the group's committed offsets of every partition of `topic` (or only `partitions`,
    /// if given) to `to`, and returns them. With `dry_run`, only computes them. Refused with
    /// `NON_EMPTY_GROUP` while the group has members.
    ///
    /// # Errors
    /// [`Error::Group`], [`Error::UnknownTopic`], a `ListOffsets` error.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<&[i32]>,
        to: OffsetSpec,
        dry_run: bool,
    ) -> Result<Vec<(TopicPartition, u64)>> {
        let info = self.client().topic(topic).await?;
        let mut offsets = Vec::new();
        for p in &info.partitions {
            if partitions.is_some_and(|ps| !ps.contains(&p.partition)) {
                continue;
            }
            let c = self.client();
            let latest = || async { c.list_offset(topic, p.partition, LATEST_TIMESTAMP).await };
            let offset = match to {
                OffsetSpec::Earliest => c.list_offset(topic, p.partition, EARLIEST_TIMESTAMP).await?,
                OffsetSpec::Latest => latest().await?,
                OffsetSpec::Timestamp(ts) => match c.list_offset(topic, p.partition, ts).await? {
                    Some(o) => Some(o),
                    None => latest().await?,
                },
                OffsetSpec::Offset(o) => {
                    let start = c
                        .list_offset(topic, p.partition, EARLIEST_TIMESTAMP)
                        .await?
                        .unwrap_or(0);
                    let end = latest().await?.unwrap_or(0);
                    Some(o.clamp(start, end.max(start)))
                }
            };
            offsets.push((TopicPartition::new(topic, p.partition), offset.unwrap_or(0)));
        }
        if let Some(ps) = partitions
            && let Some(missing) = ps.iter().find(|p| !offsets.iter().any(|(tp, _)| tp.partition == **p))
        {
            return Err(Error::partition(
                topic,
                *missing,
                ErrorCode::UnknownTopicOrPartition,
                Some(format!("{topic} has {} partitions", info.partition_count())),
            ));
        }
        if !dry_run {
            self.group(group).commit("", -1, &offsets).await?;
        }
        Ok(offsets)
    }
}
