//! The admin client: create, delete, list and describe topics; describe the cluster; move
//! partitions between brokers and empty a broker. Consumer groups: see [`crate::admin_groups`].
//!
//! Create and delete go to the controller when the metadata names one (any broker forwards
//! them otherwise). Descriptions come from the `Metadata` API: leader, replicas, in-sync
//! replicas, log start offset and high watermark per partition, effective configs per topic.
//! Result types serialize (serde) for a CLI's `--json`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use strata_protocol::ErrorCode;
use strata_protocol::api::{
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionRange, ConfigEntry, CreatableTopic, CreateTopicsRequest,
    DecommissionBrokerRequest, DeleteTopicsRequest, ListPartitionReassignmentsRequest, ReassignablePartition,
    TopicResult,
};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::metadata::{BrokerInfo, TopicInfo};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, …) overriding the broker's defaults.
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with no config overrides.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    /// Adds a config override.
    #[must_use]
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }
}

/// A topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicListing {
    /// Name.
    pub name: String,
    /// Number of partitions.
    pub partitions: usize,
}

/// The cluster as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterDescription {
    /// Cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The controller's node id, if known.
    pub controller_id: Option<i32>,
    /// Brokers, by node id.
    pub brokers: Vec<BrokerInfo>,
}

/// A partition move in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reassignment {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Its replicas now.
    pub replicas: Vec<i32>,
    /// The replicas it moves to.
    pub target: Vec<i32>,
}

/// One API a broker supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiSupport {
    /// Wire API key.
    pub api_key: i16,
    /// Its name, if this client knows the API.
    pub name: Option<&'static str>,
    /// Lowest version.
    pub min_version: i16,
    /// Highest version.
    pub max_version: i16,
}

/// Administrative operations.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> strata_client::Result<()> {
/// use strata_client::{Client, ClientConfig, NewTopic};
///
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9700")).await?;
/// let admin = client.admin();
/// admin.create_topic(NewTopic::new("events", 3, 1).config("retention.ms", "86400000")).await?;
/// for t in admin.describe_topics(&["events"]).await? {
///     for p in &t.partitions {
///         println!("{}/{} leader {:?} hw {}", t.name, p.partition, p.leader, p.high_watermark);
///     }
/// }
/// admin.delete_topic("events").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

fn topic_result(r: &TopicResult) -> Result<()> {
    if r.error.is_ok() {
        Ok(())
    } else {
        Err(Error::Topic {
            topic: r.name.clone(),
            code: r.error,
            message: r.message.clone(),
        })
    }
}

/// Matches per-topic results to the names asked for, in request order; a name the broker did
/// not answer for is an [`Error::UnexpectedResponse`].
fn per_topic(names: Vec<String>, results: &[TopicResult], api: ApiKey) -> Vec<(String, Result<()>)> {
    names
        .into_iter()
        .map(|name| {
            let result = match results.iter().find(|r| r.name == name) {
                Some(r) => topic_result(r),
                None => Err(Error::UnexpectedResponse {
                    broker: "controller".to_owned(),
                    api,
                    detail: format!("no result for topic {name}"),
                }),
            };
            (name, result)
        })
        .collect()
}

impl Admin {
    /// An admin client on `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.client.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    /// Creates topics (or, with `validate_only`, checks that they could be created), returning
    /// each topic's outcome in request order: `TOPIC_ALREADY_EXISTS`, `INVALID_PARTITIONS`, …
    /// as [`Error::Topic`].
    ///
    /// # Errors
    /// A request-level or connection error (per-topic errors are in the result).
    pub async fn create_topics(&self, topics: Vec<NewTopic>, validate_only: bool) -> Result<Vec<(String, Result<()>)>> {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let request = CreateTopicsRequest {
            topics: topics
                .into_iter()
                .map(|t| CreatableTopic {
                    name: t.name,
                    num_partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    configs: t
                        .configs
                        .into_iter()
                        .map(|(key, value)| ConfigEntry { key, value })
                        .collect(),
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            validate_only,
        };
        let response = self.client.send_to_controller(request).await?;
        Ok(per_topic(names, &response.topics, ApiKey::CreateTopics))
    }

    /// Creates one topic.
    ///
    /// # Errors
    /// [`Error::Topic`] with the broker's code (e.g. `TOPIC_ALREADY_EXISTS`), or a request
    /// error.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        one(self.create_topics(vec![topic], false).await?)
    }

    /// Deletes topics, returning each one's outcome in request order
    /// (`UNKNOWN_TOPIC_OR_PARTITION` for one that does not exist).
    ///
    /// # Errors
    /// A request-level or connection error.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let request = DeleteTopicsRequest {
            names: names.clone(),
            timeout_ms: self.timeout_ms(),
        };
        let response = self.client.send_to_controller(request).await?;
        Ok(per_topic(names, &response.topics, ApiKey::DeleteTopics))
    }

    /// Deletes one topic.
    ///
    /// # Errors
    /// [`Error::Topic`] with the broker's code, or a request error.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        one(self.delete_topics(&[name]).await?)
    }

    /// Every topic, sorted by name.
    ///
    /// # Errors
    /// A metadata error.
    pub async fn list_topics(&self) -> Result<Vec<TopicListing>> {
        let metadata = self.client.refresh_metadata(None).await?;
        Ok(metadata
            .topics
            .values()
            .map(|t| TopicListing {
                name: t.name.clone(),
                partitions: t.partition_count(),
            })
            .collect())
    }

    /// Full descriptions of the named topics (fresh metadata), in the order asked. An empty
    /// slice describes every topic.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] for a topic that does not exist; a metadata error.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicInfo>> {
        if names.is_empty() {
            let metadata = self.client.refresh_metadata(None).await?;
            return Ok(metadata.topics.values().map(|t| (**t).clone()).collect());
        }
        let requested: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let metadata = self.client.refresh_metadata(Some(requested)).await?;
        names
            .iter()
            .map(|n| {
                metadata
                    .topic(n)
                    .map(|t| (**t).clone())
                    .ok_or_else(|| Error::UnknownTopic((*n).to_owned()))
            })
            .collect()
    }

    /// The cluster id, controller and brokers.
    ///
    /// # Errors
    /// A metadata error.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let metadata = self.client.refresh_metadata(Some(Vec::new())).await?;
        Ok(ClusterDescription {
            cluster_id: metadata.cluster_id.clone(),
            controller_id: metadata.controller_id,
            brokers: metadata.brokers.values().cloned().collect(),
        })
    }

    /// The APIs and versions broker `node_id` supports (from the connection handshake).
    ///
    /// # Errors
    /// A connection error, or no such broker.
    pub async fn broker_api_versions(&self, node_id: i32) -> Result<Vec<ApiSupport>> {
        if !self.client.metadata().brokers.contains_key(&node_id) {
            self.client.refresh_metadata(Some(Vec::new())).await?;
        }
        let conn = self.client.broker_connection(node_id).await?;
        Ok(conn.api_versions().iter().map(api_support).collect())
    }

    /// Starts moving a partition to `replicas` (node ids, the preferred leader first): the
    /// partition's Raft group adds the new replicas as learners, promotes them once caught up,
    /// removes the old ones, and keeps serving throughout. Returns once the controller has
    /// taken the change; [`list_reassignments`](Self::list_reassignments) shows progress. An
    /// empty `replicas` cancels the move in progress.
    ///
    /// # Errors
    /// [`Error::Partition`] with `UNKNOWN_TOPIC_OR_PARTITION`, `BROKER_NOT_AVAILABLE` (an unknown
    /// broker id), `INVALID_REPLICA_ASSIGNMENT` (a repeated id, a decommissioned broker), …; a
    /// request error.
    pub async fn reassign_partition(&self, topic: &str, partition: i32, replicas: &[i32]) -> Result<()> {
        let request = AlterPartitionReassignmentsRequest {
            partitions: vec![ReassignablePartition {
                topic: topic.to_owned(),
                partition,
                replicas: replicas.to_vec(),
            }],
            timeout_ms: self.timeout_ms(),
        };
        let response = self.client.send_to_controller(request).await?;
        match response.results.first() {
            Some(r) if r.error.is_ok() => Ok(()),
            Some(r) => Err(Error::Partition {
                topic: topic.to_owned(),
                partition,
                code: r.error,
                message: r.message.clone(),
            }),
            None => Err(Error::UnexpectedResponse {
                broker: "controller".to_owned(),
                api: ApiKey::AlterPartitionReassignments,
                detail: "no result".to_owned(),
            }),
        }
    }

    /// The partition moves in progress.
    ///
    /// # Errors
    /// A request error (`LEADER_NOT_AVAILABLE` while the broker has not caught up with the
    /// cluster's metadata).
    pub async fn list_reassignments(&self) -> Result<Vec<Reassignment>> {
        let response = self
            .client
            .send_to_controller(ListPartitionReassignmentsRequest {})
            .await?;
        if !response.error.is_ok() {
            return Err(Error::Request {
                broker: "controller".to_owned(),
                api: ApiKey::ListPartitionReassignments,
                code: response.error,
                message: None,
            });
        }
        Ok(response
            .reassignments
            .into_iter()
            .map(|r| Reassignment {
                topic: r.topic,
                partition: r.partition,
                replicas: r.replicas,
                target: r.target,
            })
            .collect())
    }

    /// Starts moving every replica off broker `node_id` (each to the broker placement picks
    /// for it) and keeps new replicas away from it; returns how many partitions are moving.
    /// The broker can be stopped once no partition lists it (see
    /// [`list_reassignments`](Self::list_reassignments)).
    ///
    /// # Errors
    /// [`Error::Request`] with `BROKER_NOT_AVAILABLE` for an unknown broker,
    /// `INVALID_REPLICATION_FACTOR` when no other broker can take a replica; a request error.
    pub async fn decommission_broker(&self, node_id: i32) -> Result<usize> {
        let request = DecommissionBrokerRequest {
            broker_id: node_id,
            timeout_ms: self.timeout_ms(),
        };
        let response = self.client.send_to_controller(request).await?;
        if response.error.is_ok() {
            Ok(usize::try_from(response.partitions_moving).unwrap_or(0))
        } else {
            Err(Error::Request {
                broker: "controller".to_owned(),
                api: ApiKey::DecommissionBroker,
                code: response.error,
                message: response.message,
            })
        }
    }

    /// The client this admin client uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How long admin requests may take on the broker (the client's request timeout).
    pub fn timeout(&self) -> Duration {
        self.client.config().request_timeout
    }
}

fn api_support(r: &ApiVersionRange) -> ApiSupport {
    ApiSupport {
        api_key: r.api_key,
        name: ApiKey::from_i16(r.api_key).map(ApiKey::name),
        min_version: r.min_version,
        max_version: r.max_version,
    }
}

fn one(mut results: Vec<(String, Result<()>)>) -> Result<()> {
    match results.pop() {
        Some((_, r)) => r,
        None => Err(Error::Topic {
            topic: String::new(),
            code: ErrorCode::UnknownServerError,
            message: Some("no result".to_owned()),
        }),
    }
}
