//! Request handlers: one function per API, each turning a decoded request into its response.
//!
//! Handlers never block: log reads and file-system work go through `spawn_blocking`, appends go
//! to the Raft driver thread. Every per-partition problem is answered with its error code in the
//! response; only a broken connection ends a request without one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use strata_protocol::api::list_offsets::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use strata_protocol::api::*;
use strata_protocol::codec::OutgoingResponse;
use strata_protocol::frame::{IncomingRequest, RequestError, RequestHeader};
use strata_protocol::{BatchIter, BatchLimits, DecodeError, ErrorCode, Offset};
use strata_storage::Error as StorageError;
use tokio::sync::oneshot;

use crate::controller::MetadataCommand;
use crate::driver::Command;
use crate::groups;
use crate::metrics::{GaugeGuard, Metrics, count_records};
use crate::partition::Partition;
use crate::server::Broker;
use crate::topics::{AdminError, MAX_PARTITIONS, TopicConfig, validate_name};

/// Longest a fetch may long-poll, whatever it asks for.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Longest a produce may wait for its acks, whatever it asks for.
const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);

/// Handles one request; `None` means no response is sent (`acks=0` produce).
///
/// Every request is counted, timed and tracked in flight here, once, by API and request-level
/// error code (per-partition errors are counted by the handlers that produce them).
pub async fn handle(broker: Arc<Broker>, req: IncomingRequest, peer: std::net::SocketAddr) -> Option<OutgoingResponse> {
    let started = Instant::now();
    let api_key = req.header.api_key;
    let in_flight = broker.metrics.request_started();
    let response = dispatch(&broker, req, peer).await;
    drop(in_flight);
    let error = match &response {
        Some(OutgoingResponse { body: Err(e), .. }) => e.code,
        _ => ErrorCode::None,
    };
    broker.metrics.request_finished(api_key, error, started.elapsed());
    response
}

async fn dispatch(broker: &Arc<Broker>, req: IncomingRequest, peer: std::net::SocketAddr) -> Option<OutgoingResponse> {
    let IncomingRequest { header, body } = req;
    let RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
    } = header;
    let respond = |body| {
        Some(OutgoingResponse {
            correlation_id,
            api_version,
            body,
        })
    };
    let request = match body {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(api_key, code = %e.code, message = %e.message, "request rejected");
            return respond(Err(e));
        }
    };
    if broker.shutting_down.is_cancelled() && !matches!(request, Request::ApiVersions(_) | Request::Metadata(_)) {
        return respond(Err(RequestError {
            code: ErrorCode::BrokerShuttingDown,
            message: "the broker is shutting down".into(),
        }));
    }
    let response = match request {
        Request::ApiVersions(_) => Response::ApiVersions(ApiVersionsResponse::supported()),
        Request::Metadata(r) => Response::Metadata(metadata(broker, r).await),
        Request::CreateTopics(r) => Response::CreateTopics(create_topics(broker, r).await),
        Request::DeleteTopics(r) => Response::DeleteTopics(delete_topics(broker, r).await),
        Request::Produce(r) => {
            let silent = r.acks == 0;
            let resp = produce(broker, r).await;
            if silent {
                return None;
            }
            Response::Produce(resp)
        }
        Request::Fetch(r) => Response::Fetch(fetch(broker, r).await),
        Request::ListOffsets(r) => Response::ListOffsets(list_offsets(broker, r).await),
        Request::InitProducerId(r) => Response::InitProducerId(init_producer_id(broker, r).await),
        Request::RaftMessages(r) => {
            raft_messages(broker, r);
            return None;
        }
        Request::LeaderAnnouncements(r) => {
            // (Only over a connection that is not a peer's: serve_connection takes them first.)
            leader_announcements(broker, r, u64::MAX);
            return None;
        }
        Request::AlterPartitionReassignments(r) => {
            Response::AlterPartitionReassignments(alter_reassignments(broker, r).await)
        }
        Request::ListPartitionReassignments(_) => {
            Response::ListPartitionReassignments(list_reassignments(broker).await)
        }
        Request::DecommissionBroker(r) => Response::DecommissionBroker(decommission_broker(broker, r).await),
        Request::BrokerRegistration(r) => Response::BrokerRegistration(register_broker(broker, r).await),
        Request::FindCoordinator(r) => Response::FindCoordinator(groups::find_coordinator(broker, r).await),
        Request::ConsumerGroupHeartbeat(r) => {
            Response::ConsumerGroupHeartbeat(groups::heartbeat(broker, r, client_id, peer.ip()).await)
        }
        Request::OffsetCommit(r) => Response::OffsetCommit(groups::offset_commit(broker, r).await),
        Request::OffsetFetch(r) => Response::OffsetFetch(groups::offset_fetch(broker, r).await),
        Request::ListGroups(r) => Response::ListGroups(groups::list_groups(broker, r).await),
        Request::DescribeGroups(r) => Response::DescribeGroups(groups::describe_groups(broker, r).await),
        Request::DeleteGroups(r) => Response::DeleteGroups(groups::delete_groups(broker, r).await),
    };
    respond(Ok(response))
}

/// Records the partitions another broker leads (never answered), and that it was heard from: a
/// newer term replaces an older one; announcements from unknown brokers are dropped. Returns the
/// sender, if it is a peer. `conn` tells the connection it came over.
pub(crate) fn leader_announcements(broker: &Broker, req: LeaderAnnouncementsRequest, conn: u64) -> Option<u64> {
    let from = req.from_node;
    if from == broker.opts.node_id || !broker.knows(from) {
        return None;
    }
    let now = std::time::Instant::now();
    // Bounded: names arrive from the network, and only topics that exist matter.
    const MAX_TOPICS: usize = 100_000;
    const MAX_PARTITIONS_PER_TOPIC: usize = crate::topics::MAX_PARTITIONS as usize;
    let mut table = broker.news.leaders.write().unwrap_or_else(|e| e.into_inner());
    for l in req.leaders {
        if !table.contains_key(&l.topic) && table.len() >= MAX_TOPICS {
            continue;
        }
        let partitions = table.entry(l.topic).or_default();
        if !partitions.contains_key(&l.partition) && partitions.len() >= MAX_PARTITIONS_PER_TOPIC {
            continue;
        }
        match partitions.get(&l.partition) {
            Some(a) if a.topic_id == l.topic_id && a.term > l.term => {}
            Some(a) if a.topic_id > l.topic_id => {}
            _ => {
                partitions.insert(
                    l.partition,
                    crate::server::Announced {
                        topic_id: l.topic_id,
                        term: l.term,
                        leader: from,
                        high_watermark: u64::try_from(l.high_watermark).ok(),
                        at: now,
                    },
                );
            }
        }
    }
    drop(table);
    // After the table: a reader that sees the peer heard from sees what it announced.
    broker.news.heard_from(from, now, conn);
    Some(from)
}

/// Hands Raft messages from another broker to the driver (never answered). Messages from a node
/// that is not a voter, or meant for another node, are dropped; so is everything when the
/// driver's queue is full (Raft retransmits).
pub(crate) fn raft_messages(broker: &Broker, req: RaftMessagesRequest) {
    let me = broker.opts.node_id;
    if req.to_node != me || req.from_node == me || !broker.knows(req.from_node) {
        tracing::debug!(
            from = req.from_node,
            to = req.to_node,
            "dropping raft messages not meant for this broker"
        );
        return;
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in req.messages {
        // Entry data are slices of the frame, not copies.
        let message: ::raft::eraftpb::Message = match protobuf::Message::parse_from_carllerche_bytes(&m.message) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(from = req.from_node, error = %e, "dropping an undecodable raft message");
                continue;
            }
        };
        messages.push(crate::driver::InboundMessage {
            key: crate::partition::PartitionKey {
                topic: m.topic,
                partition: m.partition,
            },
            topic_id: m.topic_id,
            message,
        });
    }
    if !messages.is_empty() {
        let _ = broker.driver.try_send(Command::Step {
            from: req.from_node,
            messages,
        });
    }
}

/// Producer ids a broker takes from the controller at a time.
const PRODUCER_ID_BLOCK: u64 = 1000;

/// Hands out a producer id (epoch 0) from this broker's block, taking a new block from the
/// controller when it runs out.
async fn init_producer_id(broker: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let fail = |error, message: String| InitProducerIdResponse {
        error,
        message: Some(message),
        ..InitProducerIdResponse::default()
    };
    if req.transactional_id.is_some() {
        return fail(ErrorCode::InvalidRequest, "transactions are not supported".into());
    }
    let mut ids = broker.producer_ids.lock().await;
    if ids.0 >= ids.1 {
        let count = PRODUCER_ID_BLOCK;
        match crate::controller::submit(broker, |request| MetadataCommand::AllocateProducerIds {
            request,
            count,
        })
        .await
        {
            Ok(first) => *ids = (first, first + count),
            Err(e) => return fail(e.code, format!("allocating producer ids: {}", e.message)),
        }
    }
    let id = ids.0;
    ids.0 += 1;
    InitProducerIdResponse {
        producer_id: id as i64,
        producer_epoch: 0,
        ..InitProducerIdResponse::default()
    }
}

/// The code for a topic or partition this broker does not know: `UNKNOWN_TOPIC_OR_PARTITION`
/// once it has applied the metadata known committed, `LEADER_NOT_AVAILABLE` (retriable) while it
/// is still catching up (just restarted), when it cannot tell.
fn missing(broker: &Broker) -> ErrorCode {
    if broker.metadata_ready.load(std::sync::atomic::Ordering::Acquire) {
        ErrorCode::UnknownTopicOrPartition
    } else {
        ErrorCode::LeaderNotAvailable
    }
}

/// The partition's leader as this replica knows it (-1: none known).
fn leader_id(p: &Partition) -> i32 {
    p.leader_id().map_or(-1, |id| id as i32)
}

/// The term a leading replica serves a reader at, or `None` if the reader was already served
/// at a later term (`current_leader_term`, −1 for no check): then this replica was deposed and
/// has not heard yet, and its high watermark may be behind what the reader saw.
fn serving_term(p: &Partition, current_leader_term: i64) -> Option<i64> {
    let term = i64::try_from(p.leader_term()).unwrap_or(i64::MAX);
    (current_leader_term <= term).then_some(term)
}

fn not_leader(p: &Partition) -> ErrorCode {
    // A failed replica is not going to lead again until the broker restarts: retrying the same
    // broker for NOT_LEADER would never end.
    if p.is_failed() {
        return ErrorCode::StorageError;
    }
    // No leader known: an election is under way.
    if p.leader_id().is_none() {
        ErrorCode::LeaderNotAvailable
    } else {
        ErrorCode::NotLeader
    }
}

fn ids(nodes: &[u64]) -> Vec<i32> {
    nodes.iter().map(|&n| n as i32).collect()
}

fn log_start(p: &Partition) -> i64 {
    p.log_start() as i64
}

async fn metadata(broker: &Broker, req: MetadataRequest) -> MetadataResponse {
    // Building the response is synchronous, so it reads under the guard instead of cloning the registry.
    let registry = broker.registry.lock().await;
    let names: Vec<String> = req.topics.unwrap_or_else(|| registry.topics.keys().cloned().collect());
    let topics = names
        .into_iter()
        .map(|name| match registry.topics.get(&name) {
            None => TopicMetadata {
                error: missing(broker),
                name,
                partitions: vec![],
                configs: vec![],
            },
            Some(meta) => {
                // (A short read lock per topic; the table changes twice a second.)
                let leaders = broker.news.leaders.read().unwrap_or_else(|e| e.into_inner());
                let announced = leaders.get(&name);
                TopicMetadata {
                    error: ErrorCode::None,
                    partitions: (0..meta.partitions)
                        .map(|i| (i, meta.assignment(i).map(|a| a.members()).unwrap_or_default()))
                        .map(|(i, replicas)| match broker.partition(&name, i as i32) {
                            Some(p) => PartitionMetadata {
                                error: if p.leader_id().is_some() && !p.is_failed() {
                                    ErrorCode::None
                                } else {
                                    not_leader(&p)
                                },
                                partition: i as i32,
                                leader: leader_id(&p),
                                leader_term: p.leader_term() as i64,
                                replicas: ids(&replicas),
                                in_sync: ids(&p.in_sync_replicas()),
                                log_start_offset: log_start(&p),
                                high_watermark: p.high_watermark() as i64,
                            },
                            // Not hosted here: this broker does not follow the partition's Raft
                            // group; it names the leader that last announced itself, else the
                            // preferred one (a produce there answers NOT_LEADER with the actual
                            // leader).
                            None => {
                                let a = announced.and_then(|t| t.get(&i)).filter(|a| a.topic_id == meta.id);
                                PartitionMetadata {
                                    error: ErrorCode::None,
                                    partition: i as i32,
                                    leader: a.map_or_else(
                                        || replicas.first().map_or(-1, |&l| l as i32),
                                        |a| a.leader as i32,
                                    ),
                                    leader_term: a.map_or(0, |a| a.term as i64),
                                    replicas: ids(&replicas),
                                    in_sync: ids(&replicas),
                                    log_start_offset: -1,
                                    // As the leader last announced it (at most half a second old).
                                    high_watermark: a
                                        .and_then(|a| a.high_watermark)
                                        .map_or(-1, |hw| i64::try_from(hw).unwrap_or(i64::MAX)),
                                }
                            }
                        })
                        .collect(),
                    configs: meta
                        .config
                        .entries()
                        .into_iter()
                        .map(|(key, value)| ConfigEntry { key, value })
                        .collect(),
                    name,
                }
            }
        })
        .collect();
    MetadataResponse {
        brokers: broker_list(broker),
        controller_id: broker.controller_id().map_or(-1, |id| id as i32),
        cluster_id: Some("strata".into()),
        topics,
    }
}

/// Every broker of the cluster with the address clients should use: this one's advertised
/// address, the others' voter addresses.
pub(crate) fn broker_list(broker: &Broker) -> Vec<BrokerMetadata> {
    broker
        .brokers()
        .iter()
        .map(|(&id, addr)| {
            let (host, port) = if id == broker.opts.node_id {
                broker.advertised.clone()
            } else {
                let (h, p) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
                (h.to_string(), p.parse().unwrap_or(0))
            };
            BrokerMetadata {
                node_id: id as i32,
                host,
                port,
            }
        })
        .collect()
}

fn topic_result(name: String, r: Result<(), AdminError>) -> TopicResult {
    match r {
        Ok(()) => TopicResult {
            name,
            error: ErrorCode::None,
            message: None,
        },
        Err(e) => TopicResult {
            name,
            error: e.code,
            message: Some(e.message),
        },
    }
}

async fn create_topics(broker: &Arc<Broker>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.clone();
        let r = if !seen.insert(name.clone()) {
            Err(AdminError::new(
                ErrorCode::InvalidRequest,
                format!("topic {name} appears twice in the request"),
            ))
        } else {
            create_topic(broker, t, req.validate_only).await
        };
        if let Err(e) = &r {
            tracing::debug!(topic = %name, code = %e.code, message = %e.message, "create topic refused");
        }
        results.push(topic_result(name, r));
    }
    CreateTopicsResponse { topics: results }
}

/// Creates one topic: validation, placement, then the controller commits it and every replica
/// broker opens its replicas. Returns once this broker has applied it (and opened its own
/// replicas). The binary protocol's CreateTopics and the HTTP admin API both call this.
pub(crate) async fn create_topic(
    broker: &Arc<Broker>,
    t: CreatableTopic,
    validate_only: bool,
) -> Result<(), AdminError> {
    validate_name(&t.name)?;
    if crate::topics::is_internal(&t.name) {
        return Err(AdminError::new(
            ErrorCode::InvalidTopic,
            format!(
                "invalid topic name {:?}: names starting with \"__\" are internal",
                t.name
            ),
        ));
    }
    let defaults = &broker.opts.topic_defaults;
    let partitions = match t.num_partitions {
        -1 => defaults.partitions,
        n if n >= 1 && n as u32 <= MAX_PARTITIONS => n as u32,
        n => {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!("partition count {n} is not in 1..={MAX_PARTITIONS}"),
            ));
        }
    };
    let brokers = {
        let registry = broker.registry.lock().await;
        crate::controller::placeable(broker, &registry)
    };
    let rf = match t.replication_factor {
        -1 => brokers.len().min(3),
        r if r >= 1 && r as usize <= brokers.len() => r as usize,
        r => {
            return Err(AdminError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {r} is not between 1 and the {} broker{} available",
                    brokers.len(),
                    if brokers.len() == 1 { "" } else { "s" }
                ),
            ));
        }
    };
    let config = TopicConfig::from_defaults(defaults)
        .with_overrides(t.configs.iter().map(|c| (c.key.as_str(), c.value.as_str())))?;
    // Refused here when already known; the controller refuses a create that races another.
    if broker.registry.lock().await.topics.contains_key(&t.name) {
        return Err(AdminError::new(
            ErrorCode::TopicAlreadyExists,
            format!("topic {} already exists", t.name),
        ));
    }
    if validate_only {
        return Ok(());
    }
    let replicas = crate::controller::place(&brokers, &t.name, partitions, rf);
    let name = t.name.clone();
    let created = crate::controller::submit(broker, |request| MetadataCommand::CreateTopic {
        request,
        name,
        config,
        replicas,
    })
    .await;
    match created {
        Err(e) if e.code == ErrorCode::StorageError => {
            // A replica here could not be opened: no half-created topic, so the client can
            // retry once the cause is fixed.
            tracing::error!(topic = %t.name, error = %e.message, "creating topic failed; rolling it back");
            let outcome = match delete_topic(broker, &t.name).await {
                Ok(()) => "the topic was rolled back".to_string(),
                Err(undo) => format!(
                    "rolling the topic back failed too ({}); it exists without running partitions: delete it",
                    undo.message
                ),
            };
            Err(AdminError::new(e.code, format!("{} ({outcome})", e.message)))
        }
        Err(e) => Err(e),
        Ok(_) => {
            tracing::info!(topic = %t.name, partitions, replication_factor = rf, "created topic");
            Ok(())
        }
    }
}

async fn delete_topics(broker: &Arc<Broker>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut results = Vec::with_capacity(req.names.len());
    for name in req.names {
        let r = delete_topic(broker, &name).await;
        results.push(topic_result(name, r));
    }
    DeleteTopicsResponse { topics: results }
}

/// Deletes one topic through the controller (binary DeleteTopics and the HTTP admin API);
/// returns once this broker has applied it and removed its replicas.
pub(crate) async fn delete_topic(broker: &Arc<Broker>, name: &str) -> Result<(), AdminError> {
    if crate::topics::is_internal(name) {
        return Err(AdminError::new(
            ErrorCode::InvalidTopic,
            format!("{name} is internal and cannot be deleted"),
        ));
    }
    let n = name.to_string();
    crate::controller::submit(broker, |request| MetadataCommand::DeleteTopic { request, name: n }).await?;
    tracing::info!(topic = %name, "deleted topic");
    Ok(())
}

/// Starts (or cancels) partition reassignments: validated here against the brokers this broker
/// knows, then one controller command for all of them (all or nothing).
async fn alter_reassignments(
    broker: &Arc<Broker>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let results = |error: ErrorCode, message: Option<String>| AlterPartitionReassignmentsResponse {
        results: req
            .partitions
            .iter()
            .map(|p| PartitionResult {
                topic: p.topic.clone(),
                partition: p.partition,
                error,
                message: message.clone(),
            })
            .collect(),
    };
    let moves = match reassignment_moves(broker, &req.partitions).await {
        Ok(m) => m,
        Err(e) => return results(e.code, Some(e.message)),
    };
    let n = moves.len();
    match crate::controller::submit(broker, |request| MetadataCommand::ReassignPartitions { request, moves }).await {
        Ok(_) => {
            tracing::info!(partitions = n, "reassignment started");
            results(ErrorCode::None, None)
        }
        Err(e) => results(e.code, Some(e.message)),
    }
}

/// Checks the requested moves: known topics and partitions, replica sets of known, placeable
/// brokers.
async fn reassignment_moves(
    broker: &Broker,
    partitions: &[ReassignablePartition],
) -> Result<Vec<crate::controller::PartitionMove>, AdminError> {
    let brokers = crate::controller::brokers(broker);
    let registry = broker.registry.lock().await;
    let mut moves = Vec::with_capacity(partitions.len());
    let mut seen = std::collections::HashSet::new();
    for p in partitions {
        let meta = registry.topics.get(&p.topic).ok_or_else(|| {
            AdminError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {} does not exist", p.topic),
            )
        })?;
        let partition = u32::try_from(p.partition)
            .ok()
            .filter(|&i| i < meta.partitions)
            .ok_or_else(|| {
                AdminError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {} has no partition {}", p.topic, p.partition),
                )
            })?;
        if !seen.insert((p.topic.clone(), partition)) {
            return Err(AdminError::new(
                ErrorCode::InvalidRequest,
                format!("{}-{partition} appears twice in the request", p.topic),
            ));
        }
        let replicas: Vec<u64> = p.replicas.iter().map(|&r| u64::try_from(r).unwrap_or(0)).collect();
        crate::controller::check_replica_set(&replicas, true)?;
        for r in &replicas {
            if !brokers.contains(r) {
                return Err(AdminError::new(
                    ErrorCode::BrokerNotAvailable,
                    format!("broker {r} is not part of the cluster (brokers: {brokers:?})"),
                ));
            }
            if registry.decommissioned.contains(r) && !meta.replicas[partition as usize].contains(r) {
                return Err(AdminError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    format!("broker {r} is being decommissioned"),
                ));
            }
        }
        moves.push(crate::controller::PartitionMove {
            topic: p.topic.clone(),
            partition,
            replicas,
        });
    }
    Ok(moves)
}

async fn list_reassignments(broker: &Broker) -> ListPartitionReassignmentsResponse {
    if !broker.metadata_ready.load(std::sync::atomic::Ordering::Acquire) {
        return ListPartitionReassignmentsResponse {
            error: ErrorCode::LeaderNotAvailable,
            reassignments: Vec::new(),
        };
    }
    let registry = broker.registry.lock().await;
    let reassignments = registry
        .topics
        .iter()
        .flat_map(|(name, meta)| {
            meta.targets.iter().map(move |(&p, target)| OngoingReassignment {
                topic: name.clone(),
                partition: p as i32,
                replicas: ids(&meta.replicas[p as usize]),
                target: ids(target),
            })
        })
        .collect();
    ListPartitionReassignmentsResponse {
        error: ErrorCode::None,
        reassignments,
    }
}

/// Moves every replica off a broker: for each partition holding one, the broker is replaced
/// (in the same position) by the placeable broker with the best rendezvous score that does not
/// hold the partition yet. The controller then keeps new replicas away from it.
async fn decommission_broker(broker: &Arc<Broker>, req: DecommissionBrokerRequest) -> DecommissionBrokerResponse {
    let fail = |e: AdminError| DecommissionBrokerResponse {
        error: e.code,
        message: Some(e.message),
        partitions_moving: 0,
    };
    let brokers = crate::controller::brokers(broker);
    let Some(leaving) = u64::try_from(req.broker_id).ok().filter(|b| brokers.contains(b)) else {
        return fail(AdminError::new(
            ErrorCode::BrokerNotAvailable,
            format!(
                "broker {} is not part of the cluster (brokers: {brokers:?})",
                req.broker_id
            ),
        ));
    };
    let moves = {
        let registry = broker.registry.lock().await;
        let candidates: Vec<u64> = crate::controller::placeable(broker, &registry)
            .into_iter()
            .filter(|&b| b != leaving)
            .collect();
        let mut moves = Vec::new();
        for (name, meta) in &registry.topics {
            for p in 0..meta.partitions {
                let Some(a) = meta.assignment(p) else { continue };
                if !a.desired().contains(&leaving) {
                    continue;
                }
                let Some(to) = crate::controller::replacement(&candidates, name, p, &a.members()) else {
                    return fail(AdminError::new(
                        ErrorCode::InvalidReplicationFactor,
                        format!(
                            "{name}-{p} has replicas {:?}: no other broker can take the one on broker {leaving}",
                            a.desired()
                        ),
                    ));
                };
                let replicas = a.desired().iter().map(|&r| if r == leaving { to } else { r }).collect();
                moves.push(crate::controller::PartitionMove {
                    topic: name.clone(),
                    partition: p,
                    replicas,
                });
            }
        }
        moves
    };
    let n = moves.len();
    match crate::controller::submit(broker, |request| MetadataCommand::DecommissionBroker {
        request,
        broker: leaving,
        moves,
    })
    .await
    {
        Ok(_) => {
            tracing::info!(broker = leaving, partitions = n, "decommissioning broker");
            DecommissionBrokerResponse {
                error: ErrorCode::None,
                message: None,
                partitions_moving: n as i32,
            }
        }
        Err(e) => fail(e),
    }
}

/// A data-only broker joins (or re-registers with a new address): committed through the
/// controller, answered with the controller voters.
async fn register_broker(broker: &Arc<Broker>, req: BrokerRegistrationRequest) -> BrokerRegistrationResponse {
    let fail = |error: ErrorCode, message: String| BrokerRegistrationResponse {
        error,
        message: Some(message),
        voters: Vec::new(),
    };
    let Some(node) = u64::try_from(req.node_id).ok().filter(|&n| n > 0) else {
        return fail(
            ErrorCode::InvalidRequest,
            format!("node id {} is not at least 1", req.node_id),
        );
    };
    if broker.voters.contains_key(&node) {
        return fail(
            ErrorCode::InvalidRequest,
            format!("node id {node} belongs to a controller voter; give the joining broker an unused id"),
        );
    }
    let valid_address = req
        .address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid_address {
        return fail(
            ErrorCode::InvalidRequest,
            format!("{:?} is not a host:port address", req.address),
        );
    }
    let known = broker.registry.lock().await.brokers.get(&node) == Some(&req.address);
    if !known {
        let address = req.address.clone();
        if let Err(e) = crate::controller::submit(broker, |request| MetadataCommand::RegisterBroker {
            request,
            node,
            address,
        })
        .await
        {
            return fail(e.code, e.message);
        }
        tracing::info!(node, address = %req.address, "registered a data-only broker");
    }
    BrokerRegistrationResponse {
        error: ErrorCode::None,
        message: None,
        voters: broker
            .voters
            .iter()
            .map(|(&id, address)| BrokerAddress {
                node_id: id as i32,
                address: address.clone(),
            })
            .collect(),
    }
}

fn produce_error(partition: i32, error: ErrorCode, message: String, leader_id: i32) -> ProducePartitionResponse {
    ProducePartitionResponse {
        partition,
        error,
        base_offset: -1,
        log_append_time: -1,
        log_start_offset: -1,
        leader_id,
        message: Some(message),
    }
}

/// Validates the batches of one partition, returning them as raft entry payloads.
fn validate_batches(records: Bytes, config: &TopicConfig) -> Result<Vec<Bytes>, (ErrorCode, String)> {
    let max = config.max_message_bytes as usize;
    let limits = BatchLimits {
        max_batch_bytes: max,
        ..BatchLimits::default()
    };
    let mut out = Vec::new();
    for b in BatchIter::new(records, limits) {
        let b = b.map_err(|e| match e {
            DecodeError::InvalidBatchLength { length, .. } if length > max as u64 => (
                ErrorCode::MessageTooLarge,
                format!("batch of {length} bytes exceeds max.message.bytes {max}"),
            ),
            e => (ErrorCode::CorruptBatch, e.to_string()),
        })?;
        let h = b.header();
        if h.is_control() {
            return Err((
                ErrorCode::InvalidRequest,
                "control batches are written by the broker only".into(),
            ));
        }
        let codec = h
            .attributes
            .compression()
            .map_err(|e| (ErrorCode::CorruptBatch, e.to_string()))?;
        if !config.allows(codec) {
            return Err((
                ErrorCode::UnsupportedCompressionType,
                format!("compression {} is not allowed for this topic", codec.name()),
            ));
        }
        out.push(b.into_bytes());
    }
    if out.is_empty() {
        return Err((ErrorCode::CorruptBatch, "no record batch in the request".into()));
    }
    Ok(out)
}

async fn produce(broker: &Arc<Broker>, req: ProduceRequest) -> ProduceResponse {
    let acks = Acks::from_i16(req.acks);
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64).min(MAX_PRODUCE_TIMEOUT);
    // Every partition's batches are proposed before any is awaited: the futures are polled (and
    // so proposed) in request order, then the request waits once for all of them.
    let mut names = Vec::with_capacity(req.topics.len());
    let mut futs = Vec::new();
    for t in req.topics {
        names.push((t.name.clone(), t.partitions.len()));
        futs.extend(t.partitions.into_iter().map(|pp| {
            let name = t.name.clone();
            async move {
                let Some(acks) = acks else {
                    return produce_error(
                        pp.partition,
                        ErrorCode::InvalidRequiredAcks,
                        format!("acks must be -1, 0 or 1, not {}", req.acks),
                        -1,
                    );
                };
                let Some(p) = broker.partition(&name, pp.partition) else {
                    return produce_error(
                        pp.partition,
                        missing(broker),
                        format!("{name}-{} is not hosted here", pp.partition),
                        -1,
                    );
                };
                if crate::topics::is_internal(&name) {
                    return produce_error(
                        pp.partition,
                        ErrorCode::InvalidTopic,
                        format!("{name} is internal: only the broker writes to it"),
                        -1,
                    );
                }
                if !p.is_leader() {
                    return produce_error(
                        pp.partition,
                        not_leader(&p),
                        "this broker is not the leader".into(),
                        leader_id(&p),
                    );
                }
                let batches = match validate_batches(pp.records, &p.config) {
                    Ok(b) => b,
                    Err((code, msg)) => return produce_error(pp.partition, code, msg, leader_id(&p)),
                };
                for b in &batches {
                    broker.metrics.produce_batch_size.observe(b.len() as f64);
                }
                let (tx, rx) = oneshot::channel();
                if let Err((code, message)) = broker.driver.try_send(Command::Propose {
                    key: p.key.clone(),
                    batches,
                    acks,
                    term: None,
                    reply: tx,
                }) {
                    return produce_error(pp.partition, code, message, leader_id(&p));
                }
                // As in Kafka, the request timeout bounds waiting for replication (acks=all); an
                // acks=leader produce waits for its local append, which a 0 ms timeout must not
                // turn into a failure that a retry would duplicate.
                let wait = if acks == Acks::All {
                    timeout
                } else {
                    MAX_PRODUCE_TIMEOUT
                };
                match tokio::time::timeout(wait, rx).await {
                    Err(_) => produce_error(
                        pp.partition,
                        ErrorCode::RequestTimedOut,
                        format!("not acknowledged within {wait:?}"),
                        leader_id(&p),
                    ),
                    Ok(Err(_)) => produce_error(
                        pp.partition,
                        ErrorCode::BrokerShuttingDown,
                        "the broker is shutting down".into(),
                        -1,
                    ),
                    Ok(Ok(Err((code, msg)))) => produce_error(pp.partition, code, msg, leader_id(&p)),
                    Ok(Ok(Ok(base))) => ProducePartitionResponse {
                        partition: pp.partition,
                        error: ErrorCode::None,
                        base_offset: base.0 as i64,
                        log_append_time: -1,
                        log_start_offset: log_start(&p),
                        leader_id: leader_id(&p),
                        message: None,
                    },
                }
            }
        }));
    }
    let results = join_all(futs).await;
    for r in &results {
        broker.metrics.partition_error(ApiKey::Produce, r.error);
    }
    let mut results = results.into_iter();
    let topics = names
        .into_iter()
        .map(|(name, n)| TopicData {
            name,
            partitions: results.by_ref().take(n).collect(),
        })
        .collect();
    ProduceResponse { topics }
}

fn storage_code(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        _ => ErrorCode::StorageError,
    }
}

/// The most record bytes one fetch response carries: half the broker's frame limit, leaving room
/// for one batch larger than the rest (returned whole so a consumer always progresses).
fn response_bytes_cap(broker: &Broker) -> usize {
    broker.opts.max_frame_bytes / 2
}

/// Reads every requested partition once (blocking; run on the blocking pool).
fn read_partitions(broker: &Broker, req: &FetchRequest) -> (Vec<TopicData<FetchPartitionResponse>>, usize) {
    // Whatever the client asks for, a response stays well inside the broker's own frame limit:
    // a hostile max_bytes must not make the broker assemble gigabytes in memory.
    let cap = response_bytes_cap(broker);
    let mut budget = (req.max_bytes.max(0) as usize).min(cap);
    let mut total = 0;
    let topics = req
        .topics
        .iter()
        .map(|t| TopicData {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|fp| {
                    let empty = |error, hw, start, leader| FetchPartitionResponse {
                        partition: fp.partition,
                        error,
                        high_watermark: hw,
                        log_start_offset: start,
                        leader_id: leader,
                        leader_term: -1,
                        records: Bytes::new(),
                    };
                    let Some(p) = broker.partition(&t.name, fp.partition) else {
                        return empty(missing(broker), -1, -1, -1);
                    };
                    // Leadership first: the driver publishes the high watermark before it, so a
                    // replica seen leading has the commit point that made it leader.
                    let leading = p.is_leader();
                    let (hw, start, leader) = (p.high_watermark(), log_start(&p), leader_id(&p));
                    if !leading {
                        return empty(not_leader(&p), hw as i64, start, leader);
                    }
                    let Some(term) = serving_term(&p, fp.current_leader_term) else {
                        return empty(ErrorCode::UnknownLeaderEpoch, -1, start, -1);
                    };
                    let empty = |error, hw, start, leader| FetchPartitionResponse {
                        leader_term: term,
                        ..empty(error, hw, start, leader)
                    };
                    if fp.fetch_offset < 0 {
                        return empty(ErrorCode::OffsetOutOfRange, hw as i64, start, leader);
                    }
                    // The first partition with data always gets at least one whole batch.
                    // (read returns that first batch whole even if it is larger than `max`). Once the
                    // budget is spent, later partitions get nothing: the whole-batch guarantee is for
                    // the first only, or a request naming one partition a million times would
                    // assemble a million batches.
                    if total > 0 && budget == 0 {
                        return empty(ErrorCode::None, hw as i64, start, leader);
                    }
                    let max = (fp.partition_max_bytes.max(0) as usize).min(if total == 0 { cap } else { budget });
                    let read = p
                        .storage
                        .with_log(|l| l.read(Offset(fp.fetch_offset as u64), max.max(1), Offset(hw)));
                    match read {
                        Ok(Ok(r)) => {
                            total += r.bytes.len();
                            budget = budget.saturating_sub(r.bytes.len());
                            FetchPartitionResponse {
                                partition: fp.partition,
                                error: ErrorCode::None,
                                high_watermark: hw as i64,
                                log_start_offset: start,
                                leader_id: leader,
                                leader_term: term,
                                records: r.bytes,
                            }
                        }
                        Ok(Err(e)) => empty(storage_code(&e), hw as i64, start, leader),
                        Err(_) => empty(ErrorCode::StorageError, hw as i64, start, leader),
                    }
                })
                .collect(),
        })
        .collect();
    (topics, total)
}

async fn fetch(broker: &Arc<Broker>, req: FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let req = Arc::new(req);
    // Every requested partition, in request order (as the response lists them), resolved once.
    let parts: Vec<Option<Arc<Partition>>> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|fp| broker.partition(&t.name, fp.partition)))
        .collect();
    // Subscribe before the first read so an append between the read and the wait still wakes us.
    let mut watches: Vec<_> = parts.iter().flatten().map(|p| p.watch_high_watermark()).collect();
    loop {
        let (b, r) = (broker.clone(), req.clone());
        let read = tokio::task::spawn_blocking(move || {
            let (topics, total) = read_partitions(&b, &r);
            // Counted here, on the blocking pool: a response of many small batches has many
            // headers to walk.
            let records: Vec<u64> = topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| count_records(&p.records))
                .collect();
            (topics, total, records)
        });
        let Ok((topics, total, records)) = read.await else {
            return FetchResponse::default();
        };
        let any_error = topics.iter().flat_map(|t| &t.partitions).any(|p| !p.error.is_ok());
        if total >= req.min_bytes.max(0) as usize
            || any_error
            || Instant::now() >= deadline
            || watches.is_empty()
            || broker.shutting_down.is_cancelled()
        {
            count_fetched(&broker.metrics, &parts, &topics, &records);
            return FetchResponse { topics };
        }
        let changed = futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        let waiting = GaugeGuard::new(&broker.metrics.fetch_long_polls_waiting);
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = broker.shutting_down.cancelled() => {}
        }
        drop(waiting);
        for w in &mut watches {
            w.mark_unchanged();
        }
    }
}

/// Counts what a fetch response carries: each partition's error, and the bytes and `records`
/// (counted from batch headers) returned, against the topic counters of `parts`. All three list
/// the requested partitions in request order.
fn count_fetched(
    metrics: &Metrics,
    parts: &[Option<Arc<Partition>>],
    topics: &[TopicData<FetchPartitionResponse>],
    records: &[u64],
) {
    let responses = topics.iter().flat_map(|t| &t.partitions);
    for ((p, r), n) in parts.iter().zip(responses).zip(records) {
        metrics.partition_error(ApiKey::Fetch, r.error);
        if let Some(p) = p
            && !r.records.is_empty()
        {
            p.counters.bytes_out.inc_by(r.records.len() as u64);
            p.counters.records_out.inc_by(*n);
        }
    }
}

async fn list_offsets(broker: &Arc<Broker>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for lp in t.partitions {
            let unserved = |error, leader_id| ListOffsetsPartitionResponse {
                partition: lp.partition,
                error,
                timestamp: -1,
                offset: -1,
                leader_id,
                leader_term: -1,
            };
            let Some(p) = broker.partition(&t.name, lp.partition) else {
                partitions.push(unserved(missing(broker), -1));
                continue;
            };
            // Leadership before the high watermark, as in fetch.
            let leading = p.is_leader();
            let (hw, leader) = (p.high_watermark(), leader_id(&p));
            if !leading {
                partitions.push(unserved(not_leader(&p), leader));
                continue;
            }
            let Some(term) = serving_term(&p, lp.current_leader_term) else {
                partitions.push(unserved(ErrorCode::UnknownLeaderEpoch, -1));
                continue;
            };
            let answer = |error, timestamp, offset, leader_id| ListOffsetsPartitionResponse {
                partition: lp.partition,
                error,
                timestamp,
                offset,
                leader_id,
                leader_term: term,
            };
            let r = match lp.timestamp {
                EARLIEST_TIMESTAMP => answer(ErrorCode::None, -1, log_start(&p), leader),
                LATEST_TIMESTAMP => answer(ErrorCode::None, -1, hw as i64, leader),
                ts if ts < 0 => answer(ErrorCode::InvalidRequest, -1, -1, leader),
                ts => {
                    let p2 = p.clone();
                    let found =
                        tokio::task::spawn_blocking(move || p2.storage.with_log(|l| l.offset_for_timestamp(ts))).await;
                    match found {
                        Ok(Ok(Ok(Some(o)))) if o.0 < hw => answer(ErrorCode::None, ts, o.0 as i64, leader),
                        Ok(Ok(Ok(_))) => answer(ErrorCode::None, -1, -1, leader),
                        _ => answer(ErrorCode::StorageError, -1, -1, leader),
                    }
                }
            };
            partitions.push(r);
        }
        for r in &partitions {
            broker.metrics.partition_error(ApiKey::ListOffsets, r.error);
        }
        topics.push(TopicData {
            name: t.name,
            partitions,
        });
    }
    ListOffsetsResponse { topics }
}
