//! Joining a running cluster as a data-only broker (`--join HOST:PORT`; with `--voters` too, only
//! a broker that is not one of the voters joins).
//!
//! The new broker sends `BrokerRegistration` (its node id and client address) to the given
//! broker, which commits a `RegisterBroker` metadata command through the controller and answers
//! with the controller voters. Every broker then knows where to reach the newcomer; the metadata
//! leader adds it as a learner of the metadata group, so it applies the metadata log like
//! everyone else, and placement, reassignment and decommissioning may use it.
//!
//! The voters are remembered in `DATA_DIR/cluster.json`: a restart needs no reachable join
//! address, and re-registers in the background (its address may have changed).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use strata_protocol::api::{ApiKey, BrokerRegistrationRequest, BrokerRegistrationResponse, Request, Response};
use strata_protocol::codec::{ClientCodec, OutgoingRequest};
use strata_protocol::frame::RequestHeader;
use strata_protocol::host_aliases::HostAliases;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::controller::Voters;
use crate::options::BrokerOptions;

/// Where a joined broker keeps the cluster's voters.
pub const CLUSTER_FILE: &str = "cluster.json";
/// Longest one registration attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// The controller voters of the cluster this broker joins through `join`: remembered from an
/// earlier join (then re-registered in the background), or learned by registering now, retrying
/// until the cluster answers.
///
/// # Errors
/// The cluster refused the registration (e.g. this node id is a voter's), or the remembered
/// voters cannot be read or saved.
pub async fn voters(opts: &BrokerOptions, join: &str, my_address: &str) -> anyhow::Result<Voters> {
    let path = opts.data_dir.join(CLUSTER_FILE);
    let p = path.clone();
    if let Some(known) = tokio::task::spawn_blocking(move || read(&p)).await?? {
        let (node, join, address) = (opts.node_id, join.to_string(), my_address.to_string());
        let aliases = opts.host_aliases.clone();
        tokio::spawn(async move {
            if let Err(e) = register_until_done(node, &join, &address, &aliases).await {
                tracing::error!(error = %format!("{e:#}"), "re-registering with the cluster failed");
            }
        });
        return Ok(known);
    }
    let voters = register_until_done(opts.node_id, join, my_address, &opts.host_aliases).await?;
    let json = serde_json::to_vec_pretty(&voters)?;
    let p = path.clone();
    tokio::task::spawn_blocking(move || strata_storage::durable::write_atomic(&p, &json))
        .await?
        .with_context(|| format!("saving {}", path.display()))?;
    tracing::info!(?voters, "joined the cluster as a data-only broker");
    Ok(voters)
}

fn read(path: &Path) -> anyhow::Result<Option<Voters>> {
    strata_storage::durable::remove_stale_tmp(path);
    let Some(bytes) = strata_storage::durable::read(path).with_context(|| format!("reading {}", path.display()))?
    else {
        return Ok(None);
    };
    let voters: BTreeMap<u64, String> =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))?;
    anyhow::ensure!(!voters.is_empty(), "{} names no voters", path.display());
    Ok(Some(voters))
}

/// Registers, retrying (with a warning now and then) while the cluster cannot be reached or has
/// no controller; a refusal is final.
async fn register_until_done(node: u64, join: &str, address: &str, aliases: &HostAliases) -> anyhow::Result<Voters> {
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, register(node, &aliases.resolve(join), address)).await;
        let error = match outcome {
            Ok(Ok(r)) if r.error.is_ok() => {
                return Ok(r
                    .voters
                    .into_iter()
                    .filter_map(|v| Some((u64::try_from(v.node_id).ok()?, v.address)))
                    .collect());
            }
            Ok(Ok(r)) if !r.error.is_retriable() => anyhow::bail!(
                "the cluster at {join} refused to register broker {node}: {}: {}",
                r.error,
                r.message.unwrap_or_default()
            ),
            Ok(Ok(r)) => format!("{}: {}", r.error, r.message.unwrap_or_default()),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "timed out".to_string(),
        };
        if attempts == 1 || attempts.is_multiple_of(10) {
            tracing::warn!(%join, attempts, %error, "cannot register with the cluster yet; retrying");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn register(node: u64, join: &str, address: &str) -> anyhow::Result<BrokerRegistrationResponse> {
    let stream = TcpStream::connect(join)
        .await
        .with_context(|| format!("connecting to {join}"))?;
    let mut framed = Framed::new(
        stream,
        ClientCodec {
            max_frame_bytes: 1 << 20,
        },
    );
    let header = RequestHeader {
        api_key: ApiKey::BrokerRegistration as i16,
        api_version: 0,
        correlation_id: 1,
        client_id: Some(format!("broker-{node}")),
    };
    let body = Request::BrokerRegistration(BrokerRegistrationRequest {
        node_id: i32::try_from(node).context("node id too large")?,
        address: address.to_string(),
    });
    framed.send(OutgoingRequest { header, body }).await?;
    let raw = framed.next().await.context("the broker closed the connection")??;
    match raw.decode(ApiKey::BrokerRegistration, 0) {
        Ok(Response::BrokerRegistration(r)) => Ok(r),
        Ok(_) => anyhow::bail!("unexpected response"),
        Err(e) => anyhow::bail!("{}: {}", e.code, e.message),
    }
}
