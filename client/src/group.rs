//! Consumer groups, client side: finding a group's coordinator, sending it requests (retrying
//! coordinator moves), and the membership task a subscribed [`Consumer`](crate::Consumer) runs.
//!
//! # Membership
//!
//! A subscribed consumer spawns one task that heartbeats the coordinator
//! (`ConsumerGroupHeartbeat`): it joins (epoch 0), then every heartbeat interval the coordinator
//! returns (shorter while partitions move) sends the member epoch, the subscription and the
//! partitions the consumer owns, and publishes each new assignment on a `watch` channel. The
//! consumer applies it in `poll` — revoking first (committing the revoked partitions' positions
//! if auto-commit is on), then taking the new partitions — and wakes the task so the
//! coordinator learns at once that the revocation is done.
//!
//! Heartbeats do not depend on the application calling `poll`: a member slow to process records
//! keeps its session (but not its partitions: a revocation waits for `poll`, up to the rebalance
//! timeout).
//!
//! - Coordinator errors (`NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`,
//!   `COORDINATOR_LOAD_IN_PROGRESS`) and broken connections: find the coordinator again and
//!   retry; the partitions stay owned meanwhile.
//! - `UNKNOWN_MEMBER_ID`, `FENCED_MEMBER_EPOCH` (the member timed out or was replaced): its
//!   partitions are *lost* — dropped without a commit, since another member may own them now —
//!   and it joins again.
//! - Anything else (an invalid subscription, a full group): `poll` returns the error.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_protocol::ErrorCode;
use strata_protocol::api::consumer_group_heartbeat::{JOIN_EPOCH, LEAVE_EPOCH, STATIC_LEAVE_EPOCH};
use strata_protocol::api::find_coordinator::KEY_TYPE_GROUP;
use strata_protocol::api::{
    ConsumerGroupHeartbeatRequest, FindCoordinatorRequest, OffsetCommitPartition, OffsetCommitRequest,
    OffsetFetchRequest, OffsetFetchTopic, TopicData, TopicPartitions,
};
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::client::Client;
use crate::connection::{ApiRequest, Connection};
use crate::consumer::TopicPartition;
use crate::error::{Error, Result};

/// Longest a group request keeps retrying coordinator errors.
const COORDINATOR_RETRY_FOR: Duration = Duration::from_secs(30);

/// A group's coordinator, found on first use and again after it moves.
#[derive(Clone)]
pub(crate) struct GroupClient {
    client: Client,
    group: Arc<str>,
    coordinator: Arc<Mutex<Option<Connection>>>,
}

fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::CoordinatorLoadInProgress
    )
}

impl GroupClient {
    pub(crate) fn new(client: Client, group: &str) -> Self {
        Self {
            client,
            group: Arc::from(group),
            coordinator: Arc::new(Mutex::new(None)),
        }
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    fn forget(&self) {
        *self.coordinator.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The coordinator's connection (cached, else FindCoordinator once).
    async fn coordinator(&self) -> Result<Connection> {
        if let Some(c) = self.coordinator.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let (via, r) = self
            .client
            .send_to_any(FindCoordinatorRequest {
                key: self.group.to_string(),
                key_type: KEY_TYPE_GROUP,
            })
            .await?;
        if !r.error.is_ok() {
            return Err(Error::group(&self.group, r.error, r.message));
        }
        let Ok(port) = u16::try_from(r.port) else {
            return Err(Error::group(
                &self.group,
                ErrorCode::CoordinatorNotAvailable,
                Some(format!("the coordinator's port {} is invalid", r.port)),
            ));
        };
        let addr = crate::metadata::broker_addr(&r.host, port, crate::client::host_of(via.broker()));
        let conn = self.client.connection(&addr).await?;
        *self.coordinator.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        debug!(group = %self.group, coordinator = r.node_id, %addr, "found the group coordinator");
        Ok(conn)
    }

    /// Sends one request to the coordinator, once (no retries). `code` extracts the response's
    /// group-level error (if it has one): a coordinator error forgets the coordinator.
    pub(crate) async fn send_once<R: ApiRequest>(
        &self,
        request: R,
        code: impl Fn(&R::Response) -> Option<(ErrorCode, Option<String>)>,
    ) -> Result<R::Response> {
        let conn = match self.coordinator().await {
            Ok(c) => c,
            Err(e) => {
                self.forget();
                return Err(e);
            }
        };
        match conn.send(request).await {
            Ok(r) => {
                if let Some((c, message)) = code(&r)
                    && !c.is_ok()
                {
                    if coordinator_moved(c) {
                        self.forget();
                    }
                    return Err(Error::group(&self.group, c, message));
                }
                Ok(r)
            }
            Err(e) => {
                if e.is_retriable() {
                    self.forget();
                }
                Err(e)
            }
        }
    }

    /// As [`send_once`](Self::send_once), retrying retriable errors (coordinator moves, broken
    /// connections) with backoff for up to 30 s.
    pub(crate) async fn send<R: ApiRequest + Clone>(
        &self,
        request: R,
        code: impl Fn(&R::Response) -> Option<(ErrorCode, Option<String>)>,
    ) -> Result<R::Response> {
        let deadline = tokio::time::Instant::now() + COORDINATOR_RETRY_FOR;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let backoff = Client::backoff(Duration::from_millis(50), Duration::from_secs(1), attempt);
            match self.send_once(request.clone(), &code).await {
                Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < deadline => {
                    debug!(group = %self.group, error = %e, "group request failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                r => return r,
            }
        }
    }

    /// Commits `offsets` (the next offset to consume, per partition) as `member_id` at
    /// `member_epoch` ("" and −1 from outside group membership).
    pub(crate) async fn commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut topics: Vec<TopicData<OffsetCommitPartition>> = Vec::new();
        for (tp, offset) in offsets {
            let p = OffsetCommitPartition {
                partition: tp.partition,
                committed_offset: i64::try_from(*offset).unwrap_or(i64::MAX),
                metadata: None,
            };
            match topics.iter_mut().find(|t| t.name == tp.topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(TopicData {
                    name: tp.topic.clone(),
                    partitions: vec![p],
                }),
            }
        }
        let req = OffsetCommitRequest {
            group_id: self.group.to_string(),
            member_id: member_id.to_owned(),
            member_epoch,
            topics,
        };
        // A group-level refusal comes back on every partition: the first error decides.
        let r = self
            .send(req, |r| {
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .find(|p| !p.error.is_ok() && coordinator_moved(p.error))
                    .map(|p| (p.error, r.message.clone()))
            })
            .await?;
        for t in &r.topics {
            for p in &t.partitions {
                if !p.error.is_ok() {
                    return Err(match p.error {
                        ErrorCode::UnknownTopicOrPartition => {
                            Error::partition(&t.name, p.partition, p.error, r.message.clone())
                        }
                        code => Error::group(&self.group, code, r.message.clone()),
                    });
                }
            }
        }
        Ok(())
    }

    /// The committed offsets of `partitions` (`None` where the group has none).
    pub(crate) async fn committed(&self, partitions: &[TopicPartition]) -> Result<Vec<(TopicPartition, Option<u64>)>> {
        let mut topics: Vec<OffsetFetchTopic> = Vec::new();
        for tp in partitions {
            match topics.iter_mut().find(|t| t.name == tp.topic) {
                Some(t) => t.partitions.push(tp.partition),
                None => topics.push(OffsetFetchTopic {
                    name: tp.topic.clone(),
                    partitions: vec![tp.partition],
                }),
            }
        }
        let r = self
            .send(
                OffsetFetchRequest {
                    group_id: self.group.to_string(),
                    topics: Some(topics),
                },
                |r| Some((r.error, r.message.clone())),
            )
            .await?;
        let mut out = Vec::with_capacity(partitions.len());
        for t in r.topics {
            for p in t.partitions {
                if !p.error.is_ok() {
                    return Err(Error::partition(&t.name, p.partition, p.error, None));
                }
                let offset = u64::try_from(p.committed_offset).ok();
                out.push((TopicPartition::new(t.name.clone(), p.partition), offset));
            }
        }
        Ok(out)
    }
}

/// What a consumer subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Subscription {
    pub topics: BTreeSet<String>,
    pub regex: Option<String>,
}

/// The assignment the coordinator last gave, as the membership task publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AssignmentUpdate {
    /// Partitions the member may own now.
    pub partitions: BTreeSet<TopicPartition>,
    /// Bumped each time the member lost its partitions (fenced or timed out): everything owned
    /// before must be dropped without a commit.
    pub generation: u64,
}

/// Shared between the consumer and its membership task.
#[derive(Debug, Default)]
pub(crate) struct MemberState {
    pub member_id: String,
    pub epoch: i32,
    pub owned: BTreeSet<TopicPartition>,
    pub subscription: Subscription,
    /// A fatal error for `poll` to return.
    pub error: Option<Error>,
}

/// Membership settings.
#[derive(Debug, Clone)]
pub(crate) struct MembershipConfig {
    pub instance_id: Option<String>,
    pub session_timeout: Option<Duration>,
    pub rebalance_timeout: Option<Duration>,
}

/// A running membership: the task and its channels.
pub(crate) struct Membership {
    pub state: Arc<Mutex<MemberState>>,
    pub updates: watch::Receiver<AssignmentUpdate>,
    pub wake: Arc<Notify>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
    _task: AbortOnDropHandle<()>,
}

impl Membership {
    pub(crate) fn start(group: GroupClient, subscription: Subscription, config: MembershipConfig) -> Self {
        // The member id is the client's (KIP-1082): a join retried after its response was lost
        // finds the member it created instead of adding a second one.
        let state = Arc::new(Mutex::new(MemberState {
            member_id: new_member_id(),
            subscription,
            ..MemberState::default()
        }));
        let (tx, updates) = watch::channel(AssignmentUpdate::default());
        let wake = Arc::new(Notify::new());
        let (leave_tx, leave_rx) = oneshot::channel();
        let task = tokio::spawn(run(group.clone(), state.clone(), tx, wake.clone(), leave_rx, config));
        Self {
            state,
            updates,
            wake,
            leave: Some(leave_tx),
            _task: AbortOnDropHandle::new(task),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, MemberState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves the group (waits for the coordinator's answer, bounded by the request timeout).
    pub(crate) async fn leave(&mut self) {
        if let Some(tx) = self.leave.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
    }
}

/// A member id unique enough for a group: time, process and a counter.
fn new_member_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("c-{:x}-{nanos:x}-{n}", std::process::id())
}

fn to_wire(set: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for tp in set {
        match out.last_mut() {
            Some(t) if t.topic == tp.topic => t.partitions.push(tp.partition),
            _ => out.push(TopicPartitions {
                topic: tp.topic.clone(),
                partitions: vec![tp.partition],
            }),
        }
    }
    out
}

fn from_wire(list: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    list.iter()
        .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.topic.clone(), *p)))
        .collect()
}

fn millis(d: Option<Duration>) -> i32 {
    d.map_or(-1, |d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX))
}

async fn run(
    group: GroupClient,
    state: Arc<Mutex<MemberState>>,
    updates: watch::Sender<AssignmentUpdate>,
    wake: Arc<Notify>,
    mut leave: oneshot::Receiver<oneshot::Sender<()>>,
    config: MembershipConfig,
) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let mut interval = Duration::from_millis(1000);
    // Failed heartbeats in a row, for the retry backoff.
    let mut failures = 0;
    loop {
        let request = {
            let s = lock();
            ConsumerGroupHeartbeatRequest {
                group_id: group.group().to_owned(),
                member_id: s.member_id.clone(),
                member_epoch: s.epoch,
                instance_id: config.instance_id.clone(),
                rebalance_timeout_ms: millis(config.rebalance_timeout),
                session_timeout_ms: millis(config.session_timeout),
                subscribed_topic_names: Some(s.subscription.topics.iter().cloned().collect()),
                subscribed_topic_regex: Some(s.subscription.regex.clone().unwrap_or_default()),
                owned_partitions: Some(to_wire(&s.owned)),
            }
        };
        let sent_epoch = request.member_epoch;
        let result = tokio::select! {
            r = group.send_once(request, |r| Some((r.error, r.message.clone()))) => r,
            done = &mut leave => {
                leave_group(&group, &state, &config, done.ok()).await;
                return;
            }
        };
        let wait = match result {
            Ok(r) => {
                failures = 0;
                interval = Duration::from_millis(r.heartbeat_interval_ms.clamp(10, 60_000) as u64);
                let mut s = lock();
                if s.epoch == JOIN_EPOCH && sent_epoch == JOIN_EPOCH {
                    info!(group = %group.group(), member = %r.member_id, epoch = r.member_epoch, "joined the group");
                }
                s.member_id = r.member_id;
                s.epoch = r.member_epoch;
                s.error = None;
                drop(s);
                if let Some(a) = r.assignment {
                    let partitions = from_wire(&a);
                    updates.send_if_modified(|u| {
                        if u.partitions == partitions {
                            return false;
                        }
                        u.partitions = partitions;
                        true
                    });
                }
                interval
            }
            Err(e) => match e.code() {
                Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch) => {
                    warn!(group = %group.group(), error = %e, "lost the group's partitions; rejoining");
                    drop_partitions(&state, &updates, None);
                    Duration::ZERO
                }
                _ if e.is_retriable() => {
                    debug!(group = %group.group(), error = %e, "heartbeat failed; retrying");
                    failures += 1;
                    Client::backoff(Duration::from_millis(100), Duration::from_secs(1), failures)
                }
                _ => {
                    // Its session is not refreshed: the coordinator will give its partitions
                    // away, so it lets go of them now, and `poll` reports why.
                    warn!(group = %group.group(), error = %e, "the group refused this member");
                    drop_partitions(&state, &updates, Some(e));
                    Duration::from_secs(5).max(interval)
                }
            },
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            done = &mut leave => {
                leave_group(&group, &state, &config, done.ok()).await;
                return;
            }
        }
    }
}

/// The member lost its partitions (fenced, or refused): everything it owned is dropped without
/// a commit and it joins again (same member id, epoch 0). `error` is for `poll` to return.
fn drop_partitions(state: &Mutex<MemberState>, updates: &watch::Sender<AssignmentUpdate>, error: Option<Error>) {
    {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.epoch = JOIN_EPOCH;
        s.owned.clear();
        if error.is_some() {
            s.error = error;
        }
    }
    updates.send_modify(|u| {
        u.partitions.clear();
        u.generation += 1;
    });
}

async fn leave_group(
    group: &GroupClient,
    state: &Arc<Mutex<MemberState>>,
    config: &MembershipConfig,
    done: Option<oneshot::Sender<()>>,
) {
    let member_id = state.lock().unwrap_or_else(|e| e.into_inner()).member_id.clone();
    // Also at epoch 0: a join may have been in flight, and the coordinator made the member.
    if !member_id.is_empty() {
        let leave_epoch = if config.instance_id.is_some() {
            STATIC_LEAVE_EPOCH
        } else {
            LEAVE_EPOCH
        };
        let req = ConsumerGroupHeartbeatRequest {
            group_id: group.group().to_owned(),
            member_id: member_id.clone(),
            member_epoch: leave_epoch,
            instance_id: config.instance_id.clone(),
            rebalance_timeout_ms: -1,
            session_timeout_ms: -1,
            subscribed_topic_names: None,
            subscribed_topic_regex: None,
            owned_partitions: None,
        };
        match group.send_once(req, |r| Some((r.error, r.message.clone()))).await {
            Ok(_) => info!(group = %group.group(), member = %member_id, "left the group"),
            Err(e) => warn!(group = %group.group(), error = %e, "leaving the group failed (its session will time out)"),
        }
    }
    if let Some(d) = done {
        let _ = d.send(());
    }
}
