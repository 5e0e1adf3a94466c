//! The JSON admin API under `/api/v1/`: cluster, topics (list, describe, create, delete) and
//! the consumer groups this broker coordinates, with lag. README.md, "HTTP admin API", documents every endpoint and shape.
//!
//! What it refuses to do:
//!
//! - **Validate on its own.** Create and delete call the functions the binary protocol's
//!   CreateTopics and DeleteTopics call ([`api::create_topic`], [`api::delete_topic`]), so both
//!   take the same admin mutex and answer the same [`ErrorCode`]s; this module only maps a JSON
//!   body onto a [`CreatableTopic`] and an [`AdminError`] onto an HTTP status.
//! - **Touch the data path's locks.** Partition state, size on disk included, comes from the
//!   atomics the Raft driver publishes on [`Partition`]; never from `storage.with_log`, whose lock
//!   the driver may hold across an fsync, and never from the file system. The registry mutex is
//!   held only to copy what a response needs, never while talking to the HTTP client.
//! - **Answer in plain text.** Every error, including a malformed body, a wrong content type and
//!   an oversized body, is `{"error": "<snake_case name>", "code": <ErrorCode>, "message": …}`
//!   (`code` only where a wire error code describes the problem).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use strata_protocol::ErrorCode;
use strata_protocol::api::{ConfigEntry, CreatableTopic};

use super::HttpState;
use crate::api;
use crate::partition::{Partition, PartitionKey};
use crate::server::Broker;
use crate::topics::AdminError;

/// Largest request body accepted (a create request is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Replicas per partition: one until brokers form clusters (the binary protocol refuses any
/// other replication factor).
/// The cluster id, as the binary protocol's Metadata reports it.
const CLUSTER_ID: &str = "strata";

/// What the admin handlers (and the console page) share.
#[derive(Clone)]
pub struct AdminState {
    /// The broker and its lifecycle.
    pub http: HttpState,
    /// The address the HTTP listener is bound to, as `/api/v1/cluster` reports it.
    pub http_addr: Option<SocketAddr>,
}

impl AdminState {
    /// State for the admin routes of the HTTP server bound to `http_addr`.
    pub fn new(http: HttpState, http_addr: Option<SocketAddr>) -> Self {
        Self { http, http_addr }
    }

    fn broker(&self) -> &Arc<Broker> {
        &self.http.broker
    }
}

/// The `/api/v1/` routes.
pub fn router(state: AdminState) -> Router<HttpState> {
    Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/topics", get(list_topics).post(create_topic))
        .route("/api/v1/topics/{name}", get(describe_topic).delete(delete_topic))
        .route("/api/v1/groups", get(list_groups))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An error answer: an HTTP status and `{"error", "code"?, "message"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: Cow<'static, str>,
    code: Option<ErrorCode>,
    message: String,
}

impl ApiError {
    fn invalid_request(message: impl Into<String>) -> Self {
        Self::from(AdminError::new(ErrorCode::InvalidRequest, message))
    }

    fn unknown_topic(name: &str) -> Self {
        Self::from(AdminError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ))
    }

    fn shutting_down() -> Self {
        Self::from(AdminError::new(
            ErrorCode::BrokerShuttingDown,
            "the broker is shutting down",
        ))
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::from(AdminError::new(ErrorCode::UnknownServerError, message))
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        Self {
            status: http_status(e.code),
            error: Cow::Owned(e.code.name().to_ascii_lowercase()),
            code: Some(e.code),
            message: e.message,
        }
    }
}

/// The HTTP status for a wire error code.
fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidTopic
        | ErrorCode::InvalidPartitions
        | ErrorCode::InvalidReplicationFactor
        | ErrorCode::InvalidConfig
        | ErrorCode::InvalidRequest
        | ErrorCode::InvalidRequiredAcks
        | ErrorCode::CorruptBatch
        | ErrorCode::UnsupportedVersion
        | ErrorCode::UnsupportedCompressionType
        | ErrorCode::OffsetOutOfRange => StatusCode::BAD_REQUEST,
        ErrorCode::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnknownTopicOrPartition => StatusCode::NOT_FOUND,
        ErrorCode::TopicAlreadyExists => StatusCode::CONFLICT,
        ErrorCode::RequestTimedOut => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::BrokerShuttingDown
        | ErrorCode::LeaderNotAvailable
        | ErrorCode::NotLeader
        | ErrorCode::NotEnoughReplicas => StatusCode::SERVICE_UNAVAILABLE,
        // StorageError, UnknownServerError and codes added later: the server's fault.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error body, fields in this order.
#[derive(Serialize)]
struct ErrorBody {
    error: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i16>,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error,
            code: self.code.map(ErrorCode::code),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                error: Cow::Borrowed("payload_too_large"),
                code: None,
                message: format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            };
        }
        // Syntax errors, wrong field types and a missing `Content-Type: application/json` are all
        // the client's mistake; axum's own statuses (415, 422) are folded into one 400.
        Self::invalid_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::invalid_request(r.body_text())
    }
}

/// 405 for a known path with a method it does not serve (axum adds the `Allow` header).
pub async fn method_not_allowed() -> Response {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error: Cow::Borrowed("method_not_allowed"),
        code: None,
        message: "this endpoint does not serve that method".into(),
    }
    .into_response()
}

/// A JSON object body whose rejections are [`ApiError`]s, not axum's plain-text defaults.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(Object(v)) = Json::<Object<T>>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// `T`, from a JSON object only. A derived `Deserialize` also takes an array of the fields in
/// order (`["orders", 3]`), which no client means to send.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// Views: what the API and the console show, copied out of the broker's state.

/// `GET /api/v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// As the binary protocol's Metadata reports it.
    pub cluster_id: &'static str,
    /// The broker's version.
    pub version: &'static str,
    /// The controller (on a single node, this broker).
    pub controller: ControllerView,
    /// Every broker in the cluster.
    pub brokers: Vec<BrokerView>,
}

/// The cluster's controller.
#[derive(Debug, Serialize)]
pub struct ControllerView {
    /// The controller leader's node id (`null` while the controller quorum elects one).
    pub node_id: Option<u64>,
}

/// One broker.
#[derive(Debug, Serialize)]
pub struct BrokerView {
    /// Node id.
    pub node_id: u64,
    /// Advertised host for the client protocol.
    pub host: String,
    /// Advertised port for the client protocol.
    pub port: i32,
    /// The HTTP listener's address, where known.
    pub http: Option<String>,
    /// Whether this is the broker that answered.
    pub this_broker: bool,
}

/// A topic in `GET /api/v1/topics`.
#[derive(Debug, Serialize)]
pub struct TopicSummary {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: u32,
    /// The replica sets (for the console; not in the JSON).
    #[serde(skip)]
    pub replicas: Vec<Vec<u64>>,
}

/// `GET /api/v1/topics/{name}`.
#[derive(Debug, Serialize)]
pub struct TopicView {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partition_count: u32,
    /// Replicas per partition.
    pub replication_factor: u32,
    /// Effective configuration, every key (as Metadata reports it).
    pub configs: BTreeMap<String, String>,
    /// Every partition, by index.
    pub partitions: Vec<PartitionView>,
}

/// One partition of a topic, as this broker sees it.
#[derive(Debug, Serialize)]
pub struct PartitionView {
    /// Partition index.
    pub partition: u32,
    /// The leader's node id; `null` while there is none.
    pub leader: Option<u64>,
    /// The leader's Raft term (0 before the first election).
    pub leader_term: u64,
    /// Node ids of every replica.
    pub replicas: Vec<u64>,
    /// Node ids of the replicas in sync with the leader.
    pub in_sync_replicas: Vec<u64>,
    /// First offset still in the log; `null` if the replica is not open here.
    pub log_start_offset: Option<u64>,
    /// Offset up to which records are committed (readable); `null` if the replica is not open.
    pub high_watermark: Option<u64>,
    /// The offset the next record appended to this replica gets (committed or not); `null` if
    /// the replica is not open.
    pub log_end_offset: Option<u64>,
    /// Bytes of the partition's segment log files; `null` if the replica is not open.
    pub size_bytes: Option<u64>,
    /// Number of segments; `null` if the replica is not open.
    pub segment_count: Option<u64>,
    /// The replica hit an I/O error and serves nothing until the broker restarts.
    pub failed: bool,
    /// `online` (led here), `electing` (no leader yet), `failed`, or `offline` (not open on
    /// this broker: still loading, or it failed to open).
    pub status: &'static str,
}

pub(crate) fn cluster_view(s: &AdminState) -> ClusterView {
    let b = s.broker();
    let me = b.opts.node_id;
    ClusterView {
        cluster_id: CLUSTER_ID,
        version: crate::VERSION,
        controller: ControllerView {
            node_id: b.controller_id(),
        },
        brokers: crate::api::broker_list(b)
            .into_iter()
            .map(|m| {
                let this = m.node_id as u64 == me;
                BrokerView {
                    node_id: m.node_id as u64,
                    host: m.host,
                    port: m.port,
                    http: if this { s.http_addr.map(|a| a.to_string()) } else { None },
                    this_broker: this,
                }
            })
            .collect(),
    }
}

pub(crate) async fn topic_summaries(broker: &Broker) -> Vec<TopicSummary> {
    let registry = broker.registry.lock().await;
    registry
        .topics
        .iter()
        .map(|(name, meta)| TopicSummary {
            name: name.clone(),
            partitions: meta.partitions,
            replication_factor: meta.replicas.first().map_or(0, |r| r.len() as u32),
            replicas: meta.replicas.clone(),
        })
        .collect()
}

/// Every partition of `topic` (index `0..count`) this broker hosts, by index. One short read lock
/// on the partition map; nothing else.
pub(crate) fn hosted_partitions(broker: &Broker, topic: &str, count: u32) -> Vec<Option<Arc<Partition>>> {
    let mut key = PartitionKey {
        topic: topic.to_string(),
        partition: 0,
    };
    let map = broker.partitions.read().unwrap_or_else(|e| e.into_inner());
    (0..count)
        .map(|partition| {
            key.partition = partition;
            map.get(&key).cloned()
        })
        .collect()
}

/// A partition's view, from the atomics the driver publishes (`hosted`: the replica, if open).
pub(crate) fn partition_view(partition: u32, replicas: &[u64], hosted: Option<&Partition>) -> PartitionView {
    let Some(p) = hosted else {
        return PartitionView {
            partition,
            leader: None,
            leader_term: 0,
            replicas: replicas.to_vec(),
            in_sync_replicas: vec![],
            log_start_offset: None,
            high_watermark: None,
            log_end_offset: None,
            size_bytes: None,
            segment_count: None,
            failed: false,
            status: "offline",
        };
    };
    let (leader, failed) = (p.leader_id(), p.is_failed());
    PartitionView {
        partition,
        leader,
        leader_term: p.leader_term(),
        replicas: replicas.to_vec(),
        in_sync_replicas: p.in_sync_replicas(),
        log_start_offset: Some(p.log_start()),
        high_watermark: Some(p.high_watermark()),
        log_end_offset: Some(p.log_end()),
        size_bytes: Some(p.size_bytes()),
        segment_count: Some(p.segment_count()),
        failed,
        status: if failed {
            "failed"
        } else if leader.is_some() {
            "online"
        } else {
            "electing"
        },
    }
}

async fn topic_view(s: &AdminState, name: &str) -> Option<TopicView> {
    let broker = s.broker();
    let (count, configs, replicas) = {
        let registry = broker.registry.lock().await;
        let meta = registry.topics.get(name)?;
        (meta.partitions, meta.config.entries(), meta.replicas.clone())
    };
    let partitions = (0..)
        .zip(hosted_partitions(broker, name, count))
        .zip(&replicas)
        .map(|((i, p), r)| partition_view(i, r, p.as_deref()))
        .collect();
    Some(TopicView {
        name: name.to_string(),
        partition_count: count,
        replication_factor: replicas.first().map_or(0, |r| r.len() as u32),
        configs: configs.into_iter().collect(),
        partitions,
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn cluster(State(s): State<AdminState>) -> Json<ClusterView> {
    Json(cluster_view(&s))
}

async fn list_topics(State(s): State<AdminState>) -> Response {
    Json(json!({ "topics": topic_summaries(s.broker()).await })).into_response()
}

async fn describe_topic(
    State(s): State<AdminState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<TopicView>, ApiError> {
    let Path(name) = name?;
    topic_view(&s, &name)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::unknown_topic(&name))
}

/// `POST /api/v1/topics` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopicBody {
    name: String,
    /// Absent, `null` or `-1`: the broker's default.
    #[serde(default)]
    partitions: Option<i64>,
    /// Absent, `null` or `-1`: the broker's default.
    #[serde(default)]
    replication_factor: Option<i64>,
    /// Overrides; values are strings (as on the wire) or integers.
    #[serde(default)]
    configs: Option<BTreeMap<String, ConfigValue>>,
}

/// A config value: a JSON string, or an integer written as its decimal string.
#[derive(Debug)]
struct ConfigValue(String);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl CreateTopicBody {
    /// The request as the binary protocol carries it. Only the integer widths are checked here;
    /// every rule about values is [`api::create_topic`]'s.
    fn into_creatable(self) -> Result<CreatableTopic, AdminError> {
        let num_partitions = match self.partitions {
            None => -1,
            Some(n) => i32::try_from(n).map_err(|_| {
                AdminError::new(
                    ErrorCode::InvalidPartitions,
                    format!("partition count {n} is out of range"),
                )
            })?,
        };
        let replication_factor = match self.replication_factor {
            None => -1,
            Some(r) => i16::try_from(r).map_err(|_| {
                AdminError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!("replication factor {r} is out of range"),
                )
            })?,
        };
        Ok(CreatableTopic {
            name: self.name,
            num_partitions,
            replication_factor,
            configs: self
                .configs
                .unwrap_or_default()
                .into_iter()
                .map(|(key, ConfigValue(value))| ConfigEntry { key, value })
                .collect(),
        })
    }
}

fn refuse_while_shutting_down(broker: &Broker) -> Result<(), ApiError> {
    // As the binary protocol: no new admin work once draining has begun.
    if broker.shutting_down.is_cancelled() {
        return Err(ApiError::shutting_down());
    }
    Ok(())
}

async fn create_topic(State(s): State<AdminState>, body: JsonBody<CreateTopicBody>) -> Result<Response, ApiError> {
    let JsonBody(body) = body;
    refuse_while_shutting_down(s.broker())?;
    let topic = body.into_creatable()?;
    let name = topic.name.clone();
    let broker = s.broker().clone();
    // Spawned, not awaited in place: if the HTTP client goes away, hyper drops this handler,
    // and a create cut off between the registry write and the last partition start would leave
    // the topic half open. The task finishes on its own; this handler only waits for it.
    let created = tokio::spawn(async move { api::create_topic(&broker, topic, false).await })
        .await
        .map_err(|e| ApiError::internal(format!("creating topic {name}: {e}")))?;
    if let Err(e) = created {
        tracing::debug!(topic = %name, code = %e.code, message = %e.message, "http: create topic refused");
        return Err(e.into());
    }
    let location = format!("/api/v1/topics/{name}");
    // A delete racing in between leaves nothing to describe; the create itself succeeded.
    let body = match topic_view(&s, &name).await {
        Some(view) => Json(view).into_response(),
        None => Json(json!({ "name": name })).into_response(),
    };
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], body).into_response())
}

async fn delete_topic(
    State(s): State<AdminState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    refuse_while_shutting_down(s.broker())?;
    let broker = s.broker().clone();
    let n = name.clone();
    // Spawned for the same reason as create: a delete must not stop between the registry and
    // the partition directories because the HTTP client hung up.
    let deleted = tokio::spawn(async move { api::delete_topic(&broker, &n).await })
        .await
        .map_err(|e| ApiError::internal(format!("deleting topic {name}: {e}")))?;
    if let Err(e) = deleted {
        tracing::debug!(topic = %name, code = %e.code, message = %e.message, "http: delete topic refused");
        return Err(e.into());
    }
    Ok(Json(Deleted {
        name: &name,
        deleted: true,
    })
    .into_response())
}

/// `DELETE /api/v1/topics/{name}` answer.
#[derive(Serialize)]
struct Deleted<'a> {
    name: &'a str,
    deleted: bool,
}

/// The consumer groups this broker coordinates (each broker answers for its own; the
/// coordinator's summary, refreshed every second): state, members, epoch, and per partition the
/// committed offset, log end and lag.
async fn list_groups(State(s): State<AdminState>) -> Response {
    let broker = s.broker();
    let groups = broker.groups.summaries();
    let total: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| {
            let lag = g.total_lag();
            json!({
                "group": g.group,
                "state": g.state,
                "members": g.members,
                "epoch": g.epoch,
                "total_lag": lag,
                "partitions": g.partitions,
            })
        })
        .collect();
    Json(json!({ "node_id": broker.opts.node_id, "groups": total })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_and_statuses() {
        let e = ApiError::from(AdminError::new(ErrorCode::TopicAlreadyExists, "x"));
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.error, "topic_already_exists");
        assert_eq!(e.code, Some(ErrorCode::TopicAlreadyExists));
        for (code, status) in [
            (ErrorCode::InvalidTopic, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidPartitions, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidReplicationFactor, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidConfig, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidRequest, StatusCode::BAD_REQUEST),
            (ErrorCode::UnknownTopicOrPartition, StatusCode::NOT_FOUND),
            (ErrorCode::BrokerShuttingDown, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorCode::StorageError, StatusCode::INTERNAL_SERVER_ERROR),
            (ErrorCode::UnknownServerError, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert_eq!(http_status(code), status, "{code:?}");
        }
        // Every code gets a name clients can match on: lowercase snake case.
        for code in ErrorCode::ALL {
            let name = ApiError::from(AdminError::new(code, "")).error;
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
        }
    }

    #[test]
    fn create_body_maps_onto_the_wire_request() {
        let parse = |s: &str| serde_json::from_str::<Object<CreateTopicBody>>(s).map(|o| o.0);
        let t = parse(r#"{"name":"t","configs":{"retention.ms":1000,"flush.policy":"never"}}"#)
            .unwrap()
            .into_creatable()
            .unwrap();
        assert_eq!((t.num_partitions, t.replication_factor), (-1, -1));
        let mut configs: Vec<_> = t.configs.iter().map(|c| (c.key.as_str(), c.value.as_str())).collect();
        configs.sort();
        assert_eq!(configs, [("flush.policy", "never"), ("retention.ms", "1000")]);
        let t = parse(r#"{"name":"t","partitions":3,"replication_factor":1,"configs":null}"#)
            .unwrap()
            .into_creatable()
            .unwrap();
        assert_eq!((t.num_partitions, t.replication_factor), (3, 1));
        assert_eq!(
            parse(r#"{"name":"t","partitions":99999999999}"#)
                .unwrap()
                .into_creatable()
                .unwrap_err()
                .code,
            ErrorCode::InvalidPartitions
        );
        assert_eq!(
            parse(r#"{"name":"t","replication_factor":40000}"#)
                .unwrap()
                .into_creatable()
                .unwrap_err()
                .code,
            ErrorCode::InvalidReplicationFactor
        );
        for bad in [
            r#"{"name":"t","partitions":"3"}"#,
            r#"{"name":"t","partitions":1.5}"#,
            r#"{"name":"t","configs":{"retention.ms":true}}"#,
            r#"{"name":"t","configs":["retention.ms"]}"#,
            r#"{"name":"t","partition":3}"#,
            r#"{"partitions":3}"#,
            r#"[]"#,
            r#"["t", 3]"#,
            r#""t""#,
            r#"null"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
