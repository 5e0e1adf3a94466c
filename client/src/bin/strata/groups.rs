//! `strata group list|describe|reset-offsets|delete`: consumer groups.

use anyhow::Context as _;
use clap::{ArgGroup, Subcommand};
use serde::Serialize;
use strata_client::{Admin, OffsetSpec};

use crate::Global;
use crate::admin::table;
use crate::output::Out;

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the cluster's consumer groups with their state and member count.
    List,
    /// Describe a group: members and their partitions, and per partition the committed
    /// offset, the log end and the lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Set a group's committed offsets for a topic. Only while the group has no members
    /// (stop its consumers first).
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions to reset.
        #[arg(long)]
        topic: String,
        /// Only these partitions (comma-separated; default all).
        #[arg(long, value_delimiter = ',', value_name = "P,...")]
        partitions: Option<Vec<i32>>,
        /// To each partition's first offset.
        #[arg(long)]
        to_earliest: bool,
        /// To each partition's end (skip everything so far).
        #[arg(long)]
        to_latest: bool,
        /// To this offset (clamped into each partition's log).
        #[arg(long, value_name = "N")]
        to_offset: Option<u64>,
        /// To the first record at or after this time: RFC 3339 / ISO 8601, UTC, e.g.
        /// 2026-12-07T10:00:00Z.
        #[arg(long, value_name = "ISO8601", value_parser = parse_datetime)]
        to_datetime: Option<i64>,
        /// Show the offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        /// Group id.
        group: String,
    },
}

/// An ISO 8601 / RFC 3339 date-time as ms since the Unix epoch (UTC; a trailing `Z` or none).
fn parse_datetime(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .map_err(|e| format!("{s:?} is not a date-time like 2026-12-07T10:00:00Z: {e}"))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| format!("{s:?} is too far in the future"))
}

pub async fn group(global: &Global, out: &mut Out, cmd: GroupCommand) -> anyhow::Result<()> {
    let admin = global.connect().await?.admin();
    match cmd {
        GroupCommand::List => list(&admin, out).await,
        GroupCommand::Describe { group } => describe(&admin, out, &group).await,
        GroupCommand::ResetOffsets {
            group,
            topic,
            partitions,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            dry_run,
        } => {
            let to = match (to_earliest, to_latest, to_offset, to_datetime) {
                (true, ..) => OffsetSpec::Earliest,
                (_, true, ..) => OffsetSpec::Latest,
                (_, _, Some(o), _) => OffsetSpec::Offset(o),
                (_, _, _, Some(ts)) => OffsetSpec::Timestamp(ts),
                _ => anyhow::bail!("say where to: --to-earliest, --to-latest, --to-offset or --to-datetime"),
            };
            reset(&admin, out, &group, &topic, partitions.as_deref(), to, dry_run).await
        }
        GroupCommand::Delete { group } => {
            admin
                .delete_group(&group)
                .await
                .with_context(|| format!("cannot delete group {group}"))?;
            if out.json() {
                out.json_line(&serde_json::json!({ "group": group, "deleted": true }))
            } else {
                out.line(&format!("deleted group {group}"))
            }
        }
    }
}

async fn list(admin: &Admin, out: &mut Out) -> anyhow::Result<()> {
    let groups = admin.list_groups().await.context("cannot list groups")?;
    if out.json() {
        for g in &groups {
            out.json_line(g)?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> = groups
        .iter()
        .map(|g| {
            [
                g.group_id.clone(),
                g.state.clone(),
                g.members.to_string(),
                g.coordinator.to_string(),
            ]
        })
        .collect();
    table(out, ["GROUP", "STATE", "MEMBERS", "COORDINATOR"], &rows)
}

async fn describe(admin: &Admin, out: &mut Out, group: &str) -> anyhow::Result<()> {
    let d = admin
        .describe_group(group)
        .await
        .with_context(|| format!("cannot describe group {group}"))?;
    if out.json() {
        return out.json_line(&d);
    }
    out.line(&format!(
        "group {}  state {}  epoch {}  members {}  total lag {}",
        d.group_id,
        d.state,
        d.epoch,
        d.members.len(),
        d.total_lag
    ))?;
    if !d.members.is_empty() {
        out.line("")?;
        let rows: Vec<[String; 5]> = d
            .members
            .iter()
            .map(|m| {
                let subs = match &m.subscribed_regex {
                    Some(re) if m.subscribed_topics.is_empty() => format!("/{re}/"),
                    Some(re) => format!("{},/{re}/", m.subscribed_topics.join(",")),
                    None => m.subscribed_topics.join(","),
                };
                let parts: Vec<String> = m.assignment.iter().map(ToString::to_string).collect();
                [
                    m.member_id.clone(),
                    m.instance_id.clone().unwrap_or_else(|| "-".into()),
                    m.member_epoch.to_string(),
                    subs,
                    if parts.is_empty() { "-".into() } else { parts.join(",") },
                ]
            })
            .collect();
        table(out, ["MEMBER", "INSTANCE", "EPOCH", "SUBSCRIBED", "PARTITIONS"], &rows)?;
    }
    if !d.offsets.is_empty() {
        out.line("")?;
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let rows: Vec<[String; 6]> = d
            .offsets
            .iter()
            .map(|o| {
                [
                    o.topic.clone(),
                    o.partition.to_string(),
                    opt(o.committed),
                    opt(o.log_end),
                    opt(o.lag),
                    o.owner.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            out,
            ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"],
            &rows,
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ResetJson<'a> {
    group: &'a str,
    topic: &'a str,
    partition: i32,
    offset: u64,
    committed: bool,
}

async fn reset(
    admin: &Admin,
    out: &mut Out,
    group: &str,
    topic: &str,
    partitions: Option<&[i32]>,
    to: OffsetSpec,
    dry_run: bool,
) -> anyhow::Result<()> {
    let offsets = admin
        .reset_offsets(group, topic, partitions, to, dry_run)
        .await
        .with_context(|| format!("cannot reset the offsets of group {group}"))?;
    if out.json() {
        for (tp, offset) in &offsets {
            out.json_line(&ResetJson {
                group,
                topic,
                partition: tp.partition,
                offset: *offset,
                committed: !dry_run,
            })?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 3]> = offsets
        .iter()
        .map(|(tp, o)| [tp.topic.clone(), tp.partition.to_string(), o.to_string()])
        .collect();
    table(out, ["TOPIC", "PARTITION", "NEW-OFFSET"], &rows)?;
    if dry_run {
        out.line("(dry run: nothing committed)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_datetime("2026-12-07T10:00:00"), Ok(1_796_637_600_000));
        assert!(parse_datetime("yesterday").is_err());
    }
}
