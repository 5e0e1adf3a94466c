//! `strata partition …` and `strata broker …`: moving replicas between brokers.
//!
//! Both commands start the move and, unless `--no-wait`, wait for it to finish, printing a line
//! as partitions complete. The partition keeps serving throughout (see the README's "Moving
//! partitions").

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;
use strata_client::{Admin, Error, Reassignment};

use crate::Global;
use crate::output::Out;

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Move a partition to other brokers (Raft configuration change: the new replicas are added
    /// as learners, catch up, are promoted, and the old ones are removed; the partition keeps
    /// serving). Waits until done unless `--no-wait`.
    Reassign {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The new replicas' node ids, the preferred leader first, e.g. `1,2,4`.
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "cancel",
            conflicts_with = "cancel"
        )]
        replicas: Vec<i32>,
        /// Cancel the move in progress (the partition returns to its current replicas).
        #[arg(long)]
        cancel: bool,
        /// Return once the controller has taken the change.
        #[arg(long)]
        no_wait: bool,
        /// Longest to wait for the move to finish.
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        timeout_s: u64,
    },
    /// List the partition moves in progress.
    Reassignments,
}

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Move every replica off a broker (and keep new ones away from it); once it hosts none it
    /// can be stopped. Waits until done unless `--no-wait`.
    Decommission {
        /// The broker's node id.
        node_id: i32,
        /// Return once the controller has taken the change.
        #[arg(long)]
        no_wait: bool,
        /// Longest to wait for the moves to finish.
        #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
        timeout_s: u64,
    },
}

#[derive(Serialize)]
struct Moved<'a> {
    topic: &'a str,
    partition: i32,
    replicas: &'a [i32],
    done: bool,
}

#[derive(Serialize)]
struct Decommissioned {
    node_id: i32,
    partitions_moved: usize,
    done: bool,
}

pub async fn partition(global: &Global, out: &mut Out, cmd: PartitionCommand) -> anyhow::Result<()> {
    let admin = global.connect().await?.admin();
    match cmd {
        PartitionCommand::Reassign {
            topic,
            partition,
            replicas,
            cancel,
            no_wait,
            timeout_s,
        } => {
            let replicas = if cancel { Vec::new() } else { replicas };
            admin
                .reassign_partition(&topic, partition, &replicas)
                .await
                .map_err(strip)
                .with_context(|| format!("cannot reassign {topic}/{partition}"))?;
            let done = !no_wait && !cancel;
            if done {
                if !out.json() {
                    out.line(&format!("moving {topic}/{partition} to {}", ids(&replicas)))?;
                    out.flush()?;
                }
                let deadline = Instant::now() + Duration::from_secs(timeout_s);
                wait(&admin, deadline, |r| r.topic == topic && r.partition == partition).await?;
            }
            if out.json() {
                out.json_line(&Moved {
                    topic: &topic,
                    partition,
                    replicas: &replicas,
                    done,
                })
            } else if cancel {
                out.line(&format!("cancelled the move of {topic}/{partition}"))
            } else if done {
                out.line(&format!("{topic}/{partition} now on {}", ids(&replicas)))
            } else {
                out.line(&format!("moving {topic}/{partition} to {}", ids(&replicas)))
            }
        }
        PartitionCommand::Reassignments => {
            let moves = admin.list_reassignments().await.context("cannot list reassignments")?;
            if out.json() {
                return out.json_line(&moves);
            }
            if moves.is_empty() {
                return out.line("no reassignments in progress");
            }
            for m in &moves {
                out.line(&format!(
                    "{}/{}  {} -> {}",
                    m.topic,
                    m.partition,
                    ids(&m.replicas),
                    ids(&m.target)
                ))?;
            }
            Ok(())
        }
    }
}

pub async fn broker(global: &Global, out: &mut Out, cmd: BrokerCommand) -> anyhow::Result<()> {
    let BrokerCommand::Decommission {
        node_id,
        no_wait,
        timeout_s,
    } = cmd;
    let admin = global.connect().await?.admin();
    let n = admin
        .decommission_broker(node_id)
        .await
        .map_err(strip)
        .with_context(|| format!("cannot decommission broker {node_id}"))?;
    if !out.json() {
        out.line(&format!("moving {n} partition replicas off broker {node_id}"))?;
        out.flush()?;
    }
    if !no_wait {
        let deadline = Instant::now() + Duration::from_secs(timeout_s);
        wait(&admin, deadline, |r| {
            r.replicas.contains(&node_id) && !r.target.contains(&node_id)
        })
        .await?;
    }
    if out.json() {
        out.json_line(&Decommissioned {
            node_id,
            partitions_moved: n,
            done: !no_wait,
        })
    } else if no_wait {
        Ok(())
    } else {
        out.line(&format!("broker {node_id} hosts no replicas; it can be stopped"))
    }
}

/// Waits until no reassignment `matches` is in progress.
async fn wait(admin: &Admin, deadline: Instant, matches: impl Fn(&Reassignment) -> bool) -> anyhow::Result<()> {
    loop {
        match admin.list_reassignments().await {
            Ok(moves) if !moves.iter().any(&matches) => return Ok(()),
            Ok(_) => {}
            // The controller may be moving too; keep asking.
            Err(e) if e.is_retriable() => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot follow the move")),
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the move did not finish in time; it continues in the background (see `strata partition reassignments`)"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// `CODE: message` without the client's "topic/partition:" prefix the context repeats.
fn strip(e: Error) -> anyhow::Error {
    match e {
        Error::Partition { code, message, .. } | Error::Request { code, message, .. } => match message {
            Some(m) => anyhow::anyhow!("{code}: {m}"),
            None => anyhow::anyhow!("{code}"),
        },
        e => e.into(),
    }
}
