//! [`Client`]: the connection pool and metadata cache every producer, consumer and admin client
//! is built on.
//!
//! - **Pool.** One [`Connection`] per broker address, opened on first use and replaced when it
//!   dies. Concurrent callers asking for the same broker share one connect attempt (a shared
//!   future), so a burst of requests at start-up opens one connection, not one each. The pool
//!   holds at most one slot per address the metadata or the bootstrap list names.
//! - **Metadata.** An immutable [`ClusterMetadata`] snapshot behind an `Arc`, swapped on refresh.
//!   Partitions map to leader node ids, node ids to addresses — both from the `Metadata`
//!   response, so requests go to each partition's leader in a cluster as in a single broker.
//!   Metadata requests go to any reachable broker: pooled connections first, then the brokers
//!   the metadata lists, then the bootstrap addresses.
//!
//! No lock is held across an `.await`: the pool and the snapshot sit behind `std` mutexes taken
//! for a few instructions at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use strata_protocol::ErrorCode;
use strata_protocol::api::{ListOffsetsPartition, ListOffsetsRequest, MetadataRequest, TopicData};
use tracing::debug;

use crate::admin::Admin;
use crate::config::ClientConfig;
use crate::connection::{ApiRequest, Connection};
use crate::consumer::{Consumer, ConsumerConfig};
use crate::error::{Error, Result};
use crate::metadata::{ClusterMetadata, TopicInfo};
use crate::producer::{Producer, ProducerConfig};

type ConnectFuture = Shared<BoxFuture<'static, Result<Connection>>>;

enum Slot {
    Ready(Connection),
    Connecting(ConnectFuture),
}

/// Connections by broker address, opened on demand; concurrent callers share one connect
/// attempt. The client has one; each consumer has its own for its long-polling fetches, which
/// would otherwise hold up other responses on a shared connection (a broker answers a
/// connection's requests in order).
pub(crate) struct Pool {
    config: ClientConfig,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Pool {
    pub(crate) fn new(config: ClientConfig) -> Self {
        Self {
            config,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A pooled connection to `addr`, opened if there is none (or the last one died).
    pub(crate) async fn get(&self, addr: &str) -> Result<Connection> {
        let connecting = {
            let mut slots = lock(&self.slots);
            match slots.get(addr) {
                Some(Slot::Ready(c)) if !c.is_closed() => return Ok(c.clone()),
                Some(Slot::Connecting(f)) => f.clone(),
                _ => {
                    let config = self.config.clone();
                    let target = addr.to_owned();
                    let f = async move { Connection::connect(&target, &config).await }
                        .boxed()
                        .shared();
                    slots.insert(addr.to_owned(), Slot::Connecting(f.clone()));
                    f
                }
            }
        };
        let result = connecting.clone().await;
        let mut slots = lock(&self.slots);
        if let Some(Slot::Connecting(f)) = slots.get(addr)
            && f.ptr_eq(&connecting)
        {
            match &result {
                Ok(c) => {
                    slots.insert(addr.to_owned(), Slot::Ready(c.clone()));
                }
                Err(_) => {
                    slots.remove(addr);
                }
            }
        }
        result
    }

    /// Addresses with an open connection.
    fn open_addrs(&self) -> Vec<String> {
        lock(&self.slots)
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Ready(c) if !c.is_closed()))
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Drops connections to addresses neither the metadata nor the bootstrap list names
    /// (brokers that left), keeping the pool bounded.
    pub(crate) fn prune(&self, metadata: &ClusterMetadata) {
        lock(&self.slots).retain(|addr, _| {
            metadata.brokers.values().any(|b| &b.addr == addr) || self.config.bootstrap.contains(addr)
        });
    }
}

struct Inner {
    config: ClientConfig,
    pool: Pool,
    metadata: Mutex<Arc<ClusterMetadata>>,
    /// Bumped each time `metadata` is replaced (see [`Client::metadata_generation`]).
    generation: AtomicU64,
    /// When an error last forced a metadata refresh (rate-limited by
    /// `metadata_refresh_backoff`).
    last_forced_refresh: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // These mutexes guard plain data updated in one step; a poisoned one is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A handle to a Strata cluster: connection pool and metadata cache. Cheap to clone; clones
/// share everything.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> strata_client::Result<()> {
/// use strata_client::{Client, ClientConfig};
///
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9700")).await?;
/// let metadata = client.refresh_metadata(None).await?;
/// for broker in metadata.brokers.values() {
///     println!("broker {} at {}", broker.node_id, broker.addr);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client that has not talked to the cluster yet; the first operation connects.
    ///
    /// # Errors
    /// [`Error::Config`] if the config is invalid.
    pub fn new(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        Ok(Client {
            inner: Arc::new(Inner {
                pool: Pool::new(config.clone()),
                config,
                metadata: Mutex::new(Arc::new(ClusterMetadata::default())),
                generation: AtomicU64::new(0),
                last_forced_refresh: Mutex::new(None),
            }),
        })
    }

    /// A client that has reached the cluster: it connected to a bootstrap address and fetched
    /// the broker list.
    ///
    /// # Errors
    /// [`Error::Config`], or [`Error::NoBrokerAvailable`] if no bootstrap address answers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let client = Client::new(config)?;
        client.refresh_metadata(Some(Vec::new())).await?;
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A producer sharing this client's connections and metadata.
    ///
    /// # Errors
    /// [`Error::Config`] if the producer config is invalid.
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self.clone(), config)
    }

    /// A consumer sharing this client's connections and metadata.
    ///
    /// # Errors
    /// [`Error::Config`] if the consumer config is invalid.
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::new(self.clone(), config)
    }

    /// An admin client.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }

    /// The current metadata snapshot (possibly empty or stale; see
    /// [`Client::refresh_metadata`]).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&lock(&self.inner.metadata))
    }

    /// Fetches metadata for `topics` (`None`: every topic; `Some(vec![])`: brokers only) from any
    /// reachable broker and merges it into the cache.
    ///
    /// # Errors
    /// [`Error::NoBrokerAvailable`] if no broker answers; a request-level error.
    pub async fn refresh_metadata(&self, topics: Option<Vec<String>>) -> Result<Arc<ClusterMetadata>> {
        let request = MetadataRequest { topics: topics.clone() };
        let (conn, response) = self.send_to_any(request).await?;
        let source_host = host_of(conn.broker());
        let mut current = lock(&self.inner.metadata);
        let merged = Arc::new(current.merged(response, topics.as_deref(), source_host));
        *current = Arc::clone(&merged);
        self.inner.generation.fetch_add(1, Ordering::Release);
        drop(current);
        self.inner.pool.prune(&merged);
        Ok(merged)
    }

    /// As [`Client::refresh_metadata`] for `topics`, unless an error-driven refresh happened less
    /// than `metadata_refresh_backoff` ago (then the cached snapshot is returned). For callers
    /// reacting to `NOT_LEADER` and friends, so a storm of errors causes few refreshes.
    pub(crate) async fn refresh_after_error(&self, topics: Vec<String>) -> Result<Arc<ClusterMetadata>> {
        {
            let mut last = lock(&self.inner.last_forced_refresh);
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < self.inner.config.metadata_refresh_backoff) {
                return Ok(self.metadata());
            }
            *last = Some(now);
        }
        self.refresh_metadata(Some(topics)).await
    }

    /// The topic's metadata: cached if younger than `metadata_max_age`, fetched otherwise.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] if the broker does not know it; [`Error::Topic`] for another
    /// topic-level error; a refresh error.
    pub async fn topic(&self, name: &str) -> Result<Arc<TopicInfo>> {
        if let Some(t) = self.cached_topic(name) {
            return Ok(t);
        }
        self.fetch_topic(name).await
    }

    /// Changes whenever the metadata cache does: a caller holding a topic from
    /// [`Client::cached_topic`] may keep using it while this stays the same (and the topic is
    /// younger than `metadata_max_age`).
    pub(crate) fn metadata_generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The topic's metadata if it is cached, healthy and not older than `metadata_max_age`.
    pub(crate) fn cached_topic(&self, name: &str) -> Option<Arc<TopicInfo>> {
        self.metadata()
            .topic(name)
            .filter(|t| t.error.is_ok() && t.fetched_at.elapsed() < self.inner.config.metadata_max_age)
            .cloned()
    }

    /// The topic's metadata, always fetched.
    pub(crate) async fn fetch_topic(&self, name: &str) -> Result<Arc<TopicInfo>> {
        let metadata = self.refresh_metadata(Some(vec![name.to_owned()])).await?;
        match metadata.topic(name) {
            None => Err(Error::UnknownTopic(name.to_owned())),
            Some(t) if !t.error.is_ok() => Err(Error::Topic {
                topic: name.to_owned(),
                code: t.error,
                message: None,
            }),
            Some(t) => Ok(Arc::clone(t)),
        }
    }

    /// A connection to broker `node_id` (its address from the metadata).
    ///
    /// # Errors
    /// [`Error::NoBrokerAvailable`] if the metadata does not list the broker; a connect error.
    pub async fn broker_connection(&self, node_id: i32) -> Result<Connection> {
        let addr = self.metadata().brokers.get(&node_id).map(|b| b.addr.clone());
        let Some(addr) = addr else {
            return Err(Error::NoBrokerAvailable {
                tried: format!("node {node_id}"),
                last: Box::new(Error::config(
                    "bootstrap",
                    format!("metadata lists no broker {node_id}"),
                )),
            });
        };
        self.connection(&addr).await
    }

    /// The leader of `topic`/`partition` and a connection to it, from cached metadata (fetched
    /// first if the topic is not cached).
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::UnknownPartition`], [`Error::NoLeader`], or a connect
    /// error.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<(i32, Connection)> {
        let info = self.topic(topic).await?;
        let Some(p) = info.partition(partition) else {
            return Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partition_count: info.partition_count(),
            });
        };
        let no_leader = || Error::NoLeader {
            topic: topic.to_owned(),
            partition,
        };
        let leader = p.leader.ok_or_else(no_leader)?;
        if !self.metadata().brokers.contains_key(&leader) {
            return Err(no_leader());
        }
        Ok((leader, self.broker_connection(leader).await?))
    }

    /// A pooled connection to `addr`, opened if there is none (or the last one died).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Timeout`] or a handshake error.
    pub async fn connection(&self, addr: &str) -> Result<Connection> {
        self.inner.pool.get(addr).await
    }

    /// Sends `request` to any reachable broker: pooled connections first, then the brokers in
    /// the metadata, then the bootstrap addresses. Moves on to the next only on connection-level
    /// failures (i/o, closed, timeout).
    ///
    /// # Errors
    /// The first non-connection error, or [`Error::NoBrokerAvailable`] with the last one.
    pub async fn send_to_any<R: ApiRequest + Clone>(&self, request: R) -> Result<(Connection, R::Response)> {
        let candidates = self.candidate_addrs();
        let mut last = None;
        for addr in &candidates {
            let attempt = async {
                let conn = self.connection(addr).await?;
                let response = conn.send(request.clone()).await?;
                Ok::<_, Error>((conn, response))
            };
            match attempt.await {
                Ok(r) => return Ok(r),
                Err(e @ (Error::Io { .. } | Error::ConnectionClosed { .. } | Error::Timeout { .. })) => {
                    debug!(broker = %addr, error = %e, "broker unreachable, trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::NoBrokerAvailable {
            tried: candidates.join(", "),
            last: Box::new(last.unwrap_or_else(|| Error::config("bootstrap", "no address to try"))),
        })
    }

    /// Sends `request` to the controller if the metadata names one, else to any broker (a broker
    /// forwards admin requests to the controller).
    ///
    /// # Errors
    /// As [`Client::send_to_any`].
    pub async fn send_to_controller<R: ApiRequest + Clone>(&self, request: R) -> Result<R::Response> {
        if let Some(id) = self.metadata().controller_id
            && let Ok(conn) = self.broker_connection(id).await
        {
            match conn.send(request.clone()).await {
                Ok(r) => return Ok(r),
                Err(Error::Io { .. } | Error::ConnectionClosed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.send_to_any(request).await.map(|(_, r)| r)
    }

    /// The offset `timestamp` resolves to in `topic`/`partition` (−2 earliest, −1 latest, else
    /// ms since the epoch: the first offset whose record timestamp is ≥ it). `None` if no record
    /// has such a timestamp.
    ///
    /// # Errors
    /// The partition's error (retriable ones are retried up to 10 times, about 6 s, at the leader
    /// refreshed metadata names), a leader lookup error, or the request's error.
    pub async fn list_offset(&self, topic: &str, partition: i32, timestamp: i64) -> Result<Option<u64>> {
        self.list_offset_fenced(topic, partition, timestamp, -1)
            .await
            .map(|(offset, _)| offset)
    }

    /// [`Client::list_offset`] answered only by a leader of term `current_leader_term` or later
    /// (−1: any), with the serving leader's term (−1 from a broker too old to say). A reader
    /// passes the highest term it has been served from, so a deposed leader that has not heard
    /// of its successor cannot hand it an older end of the log: it answers
    /// `UNKNOWN_LEADER_EPOCH`, retried like `NOT_LEADER`.
    ///
    /// # Errors
    /// As [`Client::list_offset`].
    pub async fn list_offset_fenced(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        current_leader_term: i64,
    ) -> Result<(Option<u64>, i64)> {
        // Leadership moves (failover, preferred-leader restoration): retriable errors are retried
        // at the leader the refreshed metadata names, a few times with backoff.
        const ATTEMPTS: u32 = 10;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .list_offset_once(topic, partition, timestamp, current_leader_term)
                .await
            {
                Err(e) if e.is_retriable() && attempt < ATTEMPTS => {
                    if e.invalidates_metadata() {
                        let _ = self.refresh_after_error(vec![topic.to_owned()]).await;
                    }
                    tokio::time::sleep(Self::backoff(
                        Duration::from_millis(50),
                        Duration::from_secs(1),
                        attempt,
                    ))
                    .await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn list_offset_once(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        current_leader_term: i64,
    ) -> Result<(Option<u64>, i64)> {
        let (_, conn) = self.leader(topic, partition).await?;
        let response = conn
            .send(ListOffsetsRequest {
                topics: vec![TopicData {
                    name: topic.to_owned(),
                    partitions: vec![ListOffsetsPartition {
                        partition,
                        timestamp,
                        current_leader_term,
                    }],
                }],
            })
            .await?;
        let p = response
            .topics
            .iter()
            .filter(|t| t.name == topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition == partition)
            .ok_or_else(|| Error::UnexpectedResponse {
                broker: conn.broker().to_owned(),
                api: strata_protocol::api::ApiKey::ListOffsets,
                detail: format!("no entry for {topic}/{partition}"),
            })?;
        if p.error != ErrorCode::None {
            return Err(Error::partition(topic, partition, p.error, None));
        }
        Ok((u64::try_from(p.offset).ok(), p.leader_term))
    }

    fn candidate_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = Vec::new();
        addrs.extend(self.inner.pool.open_addrs());
        addrs.extend(self.metadata().brokers.values().map(|b| b.addr.clone()));
        addrs.extend(self.inner.config.bootstrap.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        addrs.retain(|a| seen.insert(a.clone()));
        addrs
    }

    /// How long to wait before the next retry: `base · 2^(attempt−1)`, capped at `max`, minus up
    /// to 20 % jitter so that clients retrying together spread out.
    pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
        let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max);
        let jitter = exp.mul_f64(0.2 * random_unit());
        exp.saturating_sub(jitter)
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub(crate) fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A random number in `[0, 1)` without a dependency: std's `RandomState` is seeded randomly per
/// instance.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let first = Client::backoff(b, max, 1);
        assert!(first <= b && first >= b.mul_f64(0.8));
        let third = Client::backoff(b, max, 3);
        assert!(third <= Duration::from_millis(400) && third >= Duration::from_millis(320));
        assert!(Client::backoff(b, max, 60) <= max);
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("a:1"), "a");
        assert_eq!(host_of("[::1]:9700"), "::1");
    }
}
