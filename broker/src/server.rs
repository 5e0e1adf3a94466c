//! The broker: opens the data directory, starts the Raft driver and every local partition,
//! serves clients, and shuts down gracefully.
//!
//! Connections: each is one task reading frames with [`ServerCodec`]. Requests are handled
//! concurrently (up to `max_in_flight_per_connection` per connection) and answered strictly in
//! arrival order — a `FuturesOrdered` queue — so pipelining clients can match responses by order
//! as well as by correlation id. A frame over the size limit or with an unreadable header closes
//! that connection (after answering what was already read); anything else gets an error response.
//!
//! Shutdown (SIGTERM/SIGINT or the `shutdown` future): stop accepting, let every connection
//! finish the requests it has read (new ones are not read), wait up to `shutdown_timeout`, then
//! stop the driver, which syncs every partition, and return.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, SinkExt, StreamExt};
use strata_protocol::BatchLimits;
use strata_protocol::codec::{OutgoingResponse, ServerCodec};
use strata_storage::LogConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::controller::{self, Controller, METADATA_TOPIC, Voters};
use crate::driver::{self, Command, DriverHandle};
use crate::metrics::{GaugeGuard, Metrics};
use crate::options::BrokerOptions;
use crate::partition::{Partition, PartitionKey};
use crate::raft::PartitionRaftStorage;
use crate::topics::{Registry, TopicConfig, partition_dir};

/// Directory (under the data dir) of the metadata group's log.
pub const METADATA_DIR: &str = "metadata";

/// Announced leaders: topic → partition → what its leader last announced.
pub(crate) type LeaderTable = HashMap<String, HashMap<u32, Announced>>;

/// How often every broker tells its peers which partitions it leads.
pub(crate) const ANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A peer unheard of this long (three announcements missed) is taken for gone: quiesced groups
/// it leads or follows wake up (see [`crate::driver`]).
pub(crate) const PEER_SILENCE: std::time::Duration = std::time::Duration::from_millis(1500);

/// What this broker hears from its peers: the partitions they lead, and when each last spoke.
/// Shared with the Raft driver, which lets an idle group stop heartbeating only while the
/// brokers it involves are heard from.
pub(crate) struct PeerNews {
    /// Every peer's announced leaderships.
    pub(crate) leaders: RwLock<LeaderTable>,
    /// When each peer's last announcement arrived, and over which connection; a peer whose
    /// connection closed is removed.
    heard: std::sync::Mutex<HashMap<u64, (std::time::Instant, u64)>>,
    /// When this broker's Raft driver last went round its loop (milliseconds since `started`):
    /// a broker whose driver is stuck announces no leadership, so followers do not wait on it.
    driver_beat: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

impl Default for PeerNews {
    fn default() -> Self {
        Self {
            leaders: RwLock::default(),
            heard: std::sync::Mutex::default(),
            driver_beat: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }
}

impl PeerNews {
    /// Records that `node` just announced over connection `conn`.
    pub(crate) fn heard_from(&self, node: u64, at: std::time::Instant, conn: u64) {
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, (at, conn));
    }

    /// Forgets when `node` was heard from, if it was over connection `conn`, which closed (e.g.
    /// the broker was killed; a newer connection's news stands).
    pub(crate) fn lost(&self, node: u64, conn: u64) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        if heard.get(&node).is_some_and(|&(_, c)| c == conn) {
            heard.remove(&node);
        }
    }

    /// What the leader of `topic`/`partition` last announced, if it was about the topic's
    /// incarnation `topic_id`.
    pub(crate) fn announced(&self, topic: &str, partition: u32, topic_id: u64) -> Option<Announced> {
        self.leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .and_then(|t| t.get(&partition))
            .filter(|a| a.topic_id == topic_id)
            .copied()
    }

    /// When each peer was last heard from.
    pub(crate) fn heard(&self) -> HashMap<u64, std::time::Instant> {
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(&n, &(at, _))| (n, at))
            .collect()
    }

    /// Called by the Raft driver every time round its loop (at least once a tick).
    pub(crate) fn driver_beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.driver_beat.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the driver went round its loop within `within`.
    fn driver_alive(&self, within: std::time::Duration) -> bool {
        let beat = std::time::Duration::from_millis(self.driver_beat.load(std::sync::atomic::Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat) < within
    }
}

/// Whether `node` was heard from within [`PEER_SILENCE`] of `now`.
pub(crate) fn heard_lately(heard: &HashMap<u64, std::time::Instant>, node: u64, now: std::time::Instant) -> bool {
    heard
        .get(&node)
        .is_some_and(|t| now.saturating_duration_since(*t) < PEER_SILENCE)
}

/// What a broker last announced about a partition it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Announced {
    /// The topic's id (a re-created topic's announcements never stand for the old one's).
    pub topic_id: u64,
    /// The leader's term.
    pub term: u64,
    /// The leader's node id.
    pub leader: u64,
    /// Its high watermark then, if it said (an older broker does not).
    pub high_watermark: Option<u64>,
    /// When the announcement arrived.
    pub at: std::time::Instant,
}

/// Shared broker state, as the request handlers see it.
pub struct Broker {
    pub(crate) opts: BrokerOptions,
    /// The cluster's topics as applied from the metadata log (see [`crate::controller`]).
    pub(crate) registry: tokio::sync::Mutex<Registry>,
    pub(crate) partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    pub(crate) driver: DriverHandle,
    /// Host and port clients are told to use.
    pub(crate) advertised: (String, i32),
    pub(crate) shutting_down: CancellationToken,
    /// Every Prometheus metric of this broker.
    pub(crate) metrics: Arc<Metrics>,
    /// The controller voters (node id → client address); on a cluster of one, this broker.
    pub(crate) voters: Voters,
    /// Every broker of the cluster (node id → client address): the voters and the data brokers
    /// that registered (kept current by the metadata reconciler).
    pub(crate) brokers: RwLock<Voters>,
    /// Leaders of partitions, as their leaders announce them (Metadata names them for
    /// partitions not hosted here), and when each peer last announced.
    pub(crate) news: Arc<PeerNews>,
    /// Proposing metadata changes and waiting for them.
    pub(crate) controller: Controller,
    /// The metadata group's replica on this broker (its leadership is the controller's).
    pub(crate) metadata: std::sync::OnceLock<Arc<Partition>>,
    /// Whether this broker has applied the metadata known committed when it started (until then
    /// an unknown topic may just not be replayed yet).
    pub(crate) metadata_ready: std::sync::atomic::AtomicBool,
    /// The Raft transport to the other brokers (`None` on a cluster of one that nobody can
    /// join), for metrics.
    pub(crate) peers: Option<crate::peer::Peers>,
    /// The producer ids this broker may hand out: `[next, end)`, a block from the controller.
    pub(crate) producer_ids: tokio::sync::Mutex<(u64, u64)>,
    /// The consumer group coordinator (the `__consumer_offsets` partitions this broker leads).
    pub(crate) groups: crate::groups::Coordinator,
}

impl Broker {
    /// Every broker of the cluster and its client address.
    pub(crate) fn brokers(&self) -> Voters {
        self.brokers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `node` is a broker of the cluster.
    pub(crate) fn knows(&self, node: u64) -> bool {
        self.brokers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&node)
    }

    /// The partition, if hosted here.
    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let p = u32::try_from(partition).ok()?;
        let map = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        map.get(&PartitionKey {
            topic: topic.to_string(),
            partition: p,
        })
        .cloned()
    }

    /// Whether this broker leads any partition or the controller.
    pub(crate) fn leads_any(&self) -> bool {
        self.metadata.get().is_some_and(|m| m.is_leader())
            || self
                .partitions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .any(|p| p.is_leader())
    }

    /// The controller leader's node id, if known.
    pub(crate) fn controller_id(&self) -> Option<u64> {
        self.metadata.get().and_then(|p| p.leader_id())
    }

    /// Opens a partition replica's storage (blocking: call from `spawn_blocking`).
    pub(crate) fn open_partition(
        &self,
        topic: &str,
        partition: u32,
        topic_id: u64,
        assignment: crate::partition::Assignment,
        config: &TopicConfig,
    ) -> anyhow::Result<Arc<Partition>> {
        let dir = if topic == METADATA_TOPIC {
            self.opts.data_dir.join(METADATA_DIR)
        } else {
            partition_dir(&self.opts.data_dir, topic, partition)
        };
        let log_cfg = LogConfig {
            segment_bytes: config.segment_bytes,
            flush: config.flush(),
            ..LogConfig::default()
        };
        let limits = BatchLimits {
            max_batch_bytes: (config.max_message_bytes as usize).max(1 << 20) * 2,
            ..BatchLimits::default()
        };
        let (storage, report) = PartitionRaftStorage::open(&dir, log_cfg, limits)
            .with_context(|| format!("opening partition {topic}-{partition} in {}", dir.display()))?;
        if !report.cuts.is_empty() || !report.removed_segments.is_empty() {
            tracing::warn!(topic, partition, ?report, "recovered partition log");
        }
        Ok(Arc::new(Partition::new(
            PartitionKey {
                topic: topic.to_string(),
                partition,
            },
            topic_id,
            assignment,
            config.clone(),
            storage,
            self.metrics.topic_counters(topic),
        )?))
    }

    /// Registers an opened partition with the driver and the handlers.
    pub(crate) async fn start_partition(&self, p: Arc<Partition>) -> anyhow::Result<()> {
        self.start_group(p.clone()).await?;
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.key.clone(), p);
        Ok(())
    }

    /// Starts a replica's Raft group in the driver.
    async fn start_group(&self, p: Arc<Partition>) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        anyhow::ensure!(
            self.driver
                .send(Command::Add {
                    partition: p.clone(),
                    reply: tx
                })
                .await,
            "the raft driver has stopped"
        );
        rx.await
            .context("the raft driver has stopped")?
            .map_err(|e| anyhow::anyhow!("starting {}-{}: {e}", p.key.topic, p.key.partition))
    }
}

/// Twice a second, tells every peer which partitions this broker leads (with their terms and
/// high watermarks), so brokers without a replica of a partition still name its actual leader in
/// Metadata, and followers of a quiesced group know its leader is still there.
async fn announce_leaders(broker: Arc<Broker>) {
    use strata_protocol::api::{ApiKey, LeaderAnnouncementsRequest, LedPartition, Request};
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut correlation_id = 0i32;
    loop {
        tick.tick().await;
        let Some(peers) = &broker.peers else {
            return;
        };
        // A driver that has not gone round its loop for the longest election timeout is stuck
        // (a hung disk, say): its groups lead nothing meanwhile, so this broker claims none of
        // them and the followers of its quiesced groups wake and elect another leader (within
        // ~2 s + an announcement interval + PEER_SILENCE + the election spread, ~4-5 s at the
        // default tick). Not sooner: by then the followers of its active groups have elected
        // elsewhere anyway (raft-rs draws their timeouts from 10 to 20 ticks), while one
        // slow pass (an fsync stall, retention deleting many segments) must not move the
        // leadership of every idle partition.
        let stuck_after = broker.opts.raft_tick * (2 * crate::driver::ELECTION_TICKS as u32);
        let driver_alive = broker.news.driver_alive(stuck_after.max(ANNOUNCE_EVERY * 2));
        if !driver_alive {
            tracing::warn!("the raft driver has not run for a while; announcing no leadership");
        }
        let leaders: Vec<LedPartition> = broker
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| driver_alive && p.is_leader())
            .map(|p| LedPartition {
                topic: p.key.topic.clone(),
                partition: p.key.partition,
                topic_id: p.topic_id,
                term: p.leader_term(),
                high_watermark: i64::try_from(p.high_watermark()).unwrap_or(i64::MAX),
            })
            .collect();
        // Frames stay well under a peer's frame limit. A broker that leads nothing still
        // announces (an empty list): peers take its silence for its death.
        let mut chunks: Vec<&[LedPartition]> = leaders.chunks(20_000).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            correlation_id = correlation_id.wrapping_add(1);
            let header = strata_protocol::frame::RequestHeader {
                api_key: ApiKey::LeaderAnnouncements as i16,
                api_version: *ApiKey::LeaderAnnouncements.versions().end(),
                correlation_id,
                client_id: None,
            };
            let body = Request::LeaderAnnouncements(LeaderAnnouncementsRequest {
                from_node: broker.opts.node_id,
                leaders: chunk.to_vec(),
            });
            let mut buf = bytes::BytesMut::new();
            strata_protocol::frame::encode_request(&mut buf, &header, &body);
            peers.broadcast(buf.freeze());
        }
    }
}

/// Takes an exclusive lock on the data directory so two brokers never share it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    anyhow::ensure!(
        rc == 0,
        "data directory {} is in use by another strata-broker",
        dir.display()
    );
    Ok(f)
}

/// Runs the broker until `shutdown` completes (or SIGTERM/SIGINT), then drains and returns.
///
/// # Errors
/// Startup failures (data directory, binding, recovery) and a failed final sync.
pub async fn run(opts: BrokerOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    fs::create_dir_all(opts.data_dir.join("partitions"))
        .with_context(|| format!("creating data directory {}", opts.data_dir.display()))?;
    let _lock = lock_data_dir(&opts.data_dir)?;

    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding the client listener {}", opts.listen))?;
    let bound = listener.local_addr()?;
    let http_listener = TcpListener::bind(opts.http)
        .await
        .with_context(|| format!("binding the HTTP listener {}", opts.http))?;
    let http_bound = http_listener.local_addr()?;
    let advertised = advertised(&opts, bound)?;
    let metrics = Arc::new(Metrics::new(opts.metrics_per_partition).context("defining the metrics")?);
    let my_address = format!("{}:{}", advertised.0, advertised.1);
    let is_voter = opts.voters.iter().any(|v| v.id == opts.node_id);
    let joined_file = opts.data_dir.join(crate::join::CLUSTER_FILE);
    if is_voter && joined_file.exists() {
        // The voters are fixed when the cluster first forms; a broker that joined as a
        // data-only broker cannot become one by a changed list (in a StatefulSet: a changed
        // controller.voters).
        anyhow::bail!(
            "broker {} joined this cluster as a data-only broker ({} exists), but cluster.voters now lists it as a voter: the voters cannot change after the cluster formed; restore the original voter list",
            opts.node_id,
            joined_file.display()
        );
    }
    let voters: Voters = if let Some(join) = opts.join.as_ref().filter(|_| !is_voter) {
        crate::join::voters(&opts, join, &my_address).await?
    } else if opts.voters.is_empty() {
        [(opts.node_id, my_address.clone())].into()
    } else {
        opts.voters.iter().map(|v| (v.id, v.address.clone())).collect()
    };
    let joined = !voters.contains_key(&opts.node_id);
    if let Some(me) = opts.voters.iter().find(|v| v.id == opts.node_id) {
        let listen = bound.to_string();
        let adv = format!("{}:{}", advertised.0, advertised.1);
        if me.address != listen && me.address != adv && !me.address.ends_with(&format!(":{}", bound.port())) {
            tracing::warn!(voter_address = %me.address, listen = %listen, advertised = %adv, "this broker's address in --voters matches neither its listen nor its advertised address: peers will not reach it");
        }
    }
    let peer_stop = CancellationToken::new();
    // Always running, even alone: a data-only broker may join a cluster of one.
    let peers = Some({
        let others = voters
            .iter()
            .filter(|(id, _)| **id != opts.node_id)
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        crate::peer::Peers::start(
            opts.node_id,
            others,
            opts.host_aliases.clone(),
            tokio::runtime::Handle::current(),
            peer_stop.clone(),
        )
    });
    let (applied_tx, applied_rx) = tokio::sync::mpsc::unbounded_channel();
    let news = Arc::new(PeerNews::default());
    let (driver, driver_thread) = driver::spawn(
        opts.node_id,
        opts.raft_tick,
        opts.retention_check_interval,
        metrics.clone(),
        peers.clone().map(|p| (p, news.clone())),
        applied_tx,
    );
    let broker = Arc::new(Broker {
        opts: opts.clone(),
        registry: tokio::sync::Mutex::new(Registry::default()),
        partitions: RwLock::new(HashMap::new()),
        driver: driver.clone(),
        advertised,
        shutting_down: CancellationToken::new(),
        metrics,
        brokers: RwLock::new({
            let mut all = voters.clone();
            all.insert(opts.node_id, my_address.clone());
            all
        }),
        news,
        voters,
        controller: Controller::new(opts.node_id),
        metadata: std::sync::OnceLock::new(),
        producer_ids: tokio::sync::Mutex::new((0, 0)),
        groups: crate::groups::Coordinator::default(),
        metadata_ready: std::sync::atomic::AtomicBool::new(false),
        peers,
    });
    broker
        .metrics
        .register_partitions(Arc::downgrade(&broker))
        .context("registering the partition metrics")?;
    let readiness = Arc::new(crate::http::Readiness::default());
    let http_stop = CancellationToken::new();
    let http_state = crate::http::HttpState {
        broker: broker.clone(),
        readiness: readiness.clone(),
    };
    let http_task = tokio::spawn(crate::http::serve(http_listener, http_state, http_stop.clone()));

    // The metadata group: its committed commands (replayed from the start of its log) open this
    // broker's replicas as they are applied.
    let metadata = {
        let b = broker.clone();
        let replicas: Vec<u64> = broker.voters.keys().copied().collect();
        let mut assignment = crate::partition::Assignment::fixed(replicas);
        if joined {
            // A data-only broker follows the metadata group as a learner.
            assignment.learners.push(opts.node_id);
        }
        tokio::task::spawn_blocking(move || {
            b.open_partition(METADATA_TOPIC, 0, 0, assignment, &metadata_config(&b.opts))
        })
        .await??
    };
    // The registry as of the last metadata snapshot (the log below it is deleted); the log
    // replays from there.
    let snapshot = {
        let dir = metadata.storage.dir().to_path_buf();
        tokio::task::spawn_blocking(move || controller::read_snapshot(&dir)).await??
    };
    if let Some((registry, bytes)) = snapshot {
        let index = registry.index;
        tracing::info!(index, topics = registry.topics.len(), "loaded the metadata snapshot");
        *broker.registry.lock().await = registry;
        broker.controller.set_applied(index);
        metadata.storage.set_snapshot_state(index, bytes);
    }
    // What this broker knew committed when it stopped: replayed as a whole before any replica
    // is opened, so a topic created and later deleted is never brought back to life meanwhile.
    let replay_until = metadata.storage.state().map_or(0, |s| s.hard_state.commit);
    let reconciler = tokio::spawn(controller::reconcile(broker.clone(), applied_rx, replay_until));
    let completer = tokio::spawn(controller::complete_reassignments(broker.clone()));
    let announcer = tokio::spawn(announce_leaders(broker.clone()));
    let coordinator = tokio::spawn(crate::groups::maintain(broker.clone()));
    let _ = broker.metadata.set(metadata.clone());
    broker.start_group(metadata).await?;
    // Ready once the metadata known committed is applied (every local replica it names is open).
    // That needs a controller quorum, whose messages arrive through the listener: so serve first.
    let ready_task = {
        let (b, readiness) = (broker.clone(), readiness.clone());
        let ready_file = opts.ready_file.clone();
        tokio::spawn(async move {
            let mut applied = b.controller.watch_applied();
            loop {
                let m = b.metadata.get().expect("set above");
                if m.leader_id().is_some() && *applied.borrow_and_update() >= m.commit_index() {
                    break;
                }
                let _ = tokio::time::timeout(std::time::Duration::from_millis(50), applied.changed()).await;
            }
            b.metadata_ready.store(true, std::sync::atomic::Ordering::Release);
            if let Some(path) = &ready_file {
                let body = serde_json::json!({ "listen": bound.to_string(), "http": http_bound.to_string(), "node_id": b.opts.node_id });
                if let Err(e) = fs::write(path, body.to_string()) {
                    tracing::error!(path = %path.display(), error = %e, "writing the ready file failed");
                }
            }
            readiness.set_ready();
            let topics = b.registry.lock().await.topics.len();
            tracing::info!(listen = %bound, http = %http_bound, advertised = %format!("{}:{}", b.advertised.0, b.advertised.1), data_dir = %b.opts.data_dir.display(), topics, voters = ?b.voters, "strata-broker serving");
        })
    };

    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let signals = shutdown_signal();
    tokio::pin!(shutdown, signals);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut signals => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        broker.metrics.connections_refused.inc();
                        tracing::warn!(%peer, max = opts.max_connections, "connection limit reached; refusing");
                        drop(stream);
                        continue;
                    };
                    broker.metrics.connections_accepted.inc();
                    let b = broker.clone();
                    tracker.spawn(async move {
                        let metrics = b.metrics.clone();
                        let open = GaugeGuard::new(&metrics.connections_open);
                        serve_connection(b, stream, peer).await;
                        drop(open);
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning or exiting.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    drop(listener);
    ready_task.abort();
    readiness.set_stopping();
    broker.shutting_down.cancel();
    if broker.brokers().len() > 1 {
        // Leadership moves to followers first, so this broker's partitions keep serving; peer
        // connections stay open (see `serve_connection`) until the transfers have happened.
        let (tx, rx) = oneshot::channel();
        if driver.send(Command::HandOver { reply: tx }).await
            && let Ok(n) = rx.await
            && n > 0
        {
            tracing::info!(groups = n, "handing leadership over before stopping");
        }
    }
    tracker.close();
    if tokio::time::timeout(opts.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?opts.shutdown_timeout, "in-flight requests did not finish in time");
    }
    let (tx, rx) = oneshot::channel();
    if driver.send(Command::Shutdown { reply: tx }).await {
        let _ = rx.await;
    }
    drop(driver);
    peer_stop.cancel();
    reconciler.abort();
    completer.abort();
    announcer.abort();
    coordinator.abort();
    drop(broker);
    tokio::task::spawn_blocking(move || driver_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the raft driver panicked"))?;
    // Graceful HTTP shutdown waits for open HTTP connections; a slow or hostile HTTP client must
    // not hold the broker's exit hostage.
    http_stop.cancel();
    let abort = http_task.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(2), http_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    tracing::info!("shutdown complete");
    Ok(())
}

fn advertised(opts: &BrokerOptions, bound: SocketAddr) -> anyhow::Result<(String, i32)> {
    match &opts.advertised_address {
        None => Ok((bound.ip().to_string(), i32::from(bound.port()))),
        Some(a) => {
            let (host, port) = a
                .rsplit_once(':')
                .with_context(|| format!("advertised address {a:?} is not host:port"))?;
            let port: u16 = port
                .parse()
                .with_context(|| format!("advertised address {a:?} has a bad port"))?;
            Ok((host.to_string(), i32::from(port)))
        }
    }
}

/// The metadata log's configuration: always synced before acknowledging, never deleted by age
/// or size (it is replayed from its start), smallish segments.
fn metadata_config(opts: &BrokerOptions) -> TopicConfig {
    let mut c = TopicConfig::from_defaults(&opts.topic_defaults);
    c.retention_bytes = None;
    c.retention_ms = None;
    // Small segments, so the log below a registry snapshot can be deleted (whole segments
    // only) soon after: an entry is a few hundred bytes.
    c.segment_bytes = 64 << 10;
    c.max_message_bytes = 1 << 20;
    c.flush_policy = "always".into();
    c
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Longest a peer broker's connection is read after shutdown starts (waiting for in-flight
/// requests to commit and for leadership to move to other brokers).
const PEER_DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(3);

async fn serve_connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let max_in_flight = broker.opts.max_in_flight_per_connection;
    let mut framed = Framed::new(
        stream,
        ServerCodec {
            max_frame_bytes: broker.opts.max_frame_bytes,
        },
    );
    let mut in_flight = FuturesOrdered::new();
    let mut reading = true;
    // Whether the other end is a broker sending Raft traffic (never answered).
    let mut is_peer = false;
    static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let conn = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The broker at the other end, once it announced itself: when the connection closes, however
    // that happens, its silence is not waited out (quiesced groups it leads wake at once).
    let mut peer_link = PeerLink {
        news: &broker.news,
        node: None,
        conn,
    };
    let mut drain_check = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut draining_since = None;
    // Idle: no complete request read and nothing in flight for `idle_timeout`. A peer trickling
    // a frame byte by byte is idle too, since only whole requests count as activity.
    let idle_timeout = broker.opts.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            biased;
            Some(resp) = in_flight.next(), if !in_flight.is_empty() => {
                // A client that stops reading must not pin this connection and its buffered
                // responses forever.
                let written = tokio::time::timeout(idle_timeout, write_responses(&mut framed, &mut in_flight, resp)).await;
                if !matches!(written, Ok(true)) {
                    return;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
            }
            _ = &mut idle, if reading && in_flight.is_empty() => {
                tracing::debug!(%peer, timeout = ?idle_timeout, "closing idle connection");
                reading = false;
            }
            // Before reading: a connection with frames always waiting must still see shutdown.
            // A peer broker's connection keeps being read while this broker drains: its Raft
            // traffic is what commits the client requests still in flight. It closes once none
            // is (checked on a timer: a peer with nothing to say sends no frame to wake us).
            _ = broker.shutting_down.cancelled(), if reading && draining_since.is_none() => {
                if is_peer {
                    draining_since = Some(std::time::Instant::now());
                } else {
                    reading = false;
                }
            }
            _ = drain_check.tick(), if reading && draining_since.is_some() => {
                let waited = draining_since.map_or(std::time::Duration::ZERO, |t| t.elapsed());
                if (broker.metrics.requests_in_flight.get() == 0 && !broker.leads_any()) || waited > PEER_DRAIN_MAX {
                    reading = false;
                }
            }
            req = framed.next(), if reading && in_flight.len() < max_in_flight => match req {
                Some(Ok(incoming)) => {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    // Raft traffic from another broker: handed over at once, in arrival order,
                    // and never answered.
                    if let Ok(strata_protocol::api::Request::RaftMessages(_)) = &incoming.body {
                        is_peer = true;
                        if let Ok(strata_protocol::api::Request::RaftMessages(r)) = incoming.body {
                            crate::api::raft_messages(&broker, r);
                        }
                        continue;
                    }
                    if let Ok(strata_protocol::api::Request::LeaderAnnouncements(r)) = incoming.body {
                        if let Some(from) = crate::api::leader_announcements(&broker, r, conn) {
                            peer_link.node = Some(from);
                        }
                        continue;
                    }
                    in_flight.push_back(crate::api::handle(broker.clone(), incoming, peer));
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "closing connection after a bad frame");
                    reading = false;
                }
                None => reading = false,
            },
        }
        if !reading && in_flight.is_empty() {
            peer_link.closed();
            let _ = tokio::time::timeout(idle_timeout, framed.flush()).await;
            return;
        }
    }
}

/// The peer broker at the other end of a connection, if it announced itself: forgotten by
/// [`PeerNews::lost`] when the connection closes (on every path out of `serve_connection`).
struct PeerLink<'a> {
    news: &'a PeerNews,
    node: Option<u64>,
    conn: u64,
}

impl PeerLink<'_> {
    fn closed(&mut self) {
        if let Some(node) = self.node.take() {
            self.news.lost(node, self.conn);
        }
    }
}

impl Drop for PeerLink<'_> {
    fn drop(&mut self) {
        self.closed();
    }
}

/// Writes `first` and every other response already finished, then flushes once.
async fn write_responses<F>(
    framed: &mut Framed<TcpStream, ServerCodec>,
    in_flight: &mut FuturesOrdered<F>,
    first: Option<OutgoingResponse>,
) -> bool
where
    F: Future<Output = Option<OutgoingResponse>>,
{
    let mut next = Some(first);
    while let Some(resp) = next {
        if let Some(r) = resp
            && framed.feed(r).await.is_err()
        {
            return false;
        }
        next = in_flight.next().now_or_never().flatten();
    }
    framed.flush().await.is_ok()
}
