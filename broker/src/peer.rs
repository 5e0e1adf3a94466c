//! The broker-to-broker Raft transport, sending side.
//!
//! The Raft driver (a plain OS thread) hands each loop's messages to [`Peers::send`], one batch per
//! destination broker. Each peer broker gets one sender task and one TCP connection to its client
//! listener; the task writes the messages of every group as `RaftMessages` requests
//! (`strata_protocol::api::raft_messages`), several groups per frame, frames of about
//! [`FRAME_BYTES_TARGET`], one flush per drain of the queue. The receiver never answers.
//!
//! Losing messages is normal here, and cheap: Raft retransmits (heartbeats, append retries,
//! elections), so this module never blocks the driver and never retries a message. A message is
//! dropped, and counted in [`PeerStats::messages_dropped`], when its peer is unknown, the peer's
//! queue is full, the connection is down, or a write fails. While a peer is unreachable its task
//! keeps emptying the queue (dropping what it takes) so memory stays bounded, and reconnects with
//! a backoff from [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`].
//!
//! Every network await is bounded ([`CONNECT_TIMEOUT`], [`WRITE_TIMEOUT`]). The task also reads
//! the connection and discards what arrives (the peer should send nothing, but an error response
//! from a broker that is shutting down or does not speak the API must not fill a buffer and stall
//! it), and notices from the read side when the peer closes the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use protobuf::{CodedOutputStream, Message as _};
use raft::eraftpb::{Message, MessageType};
use strata_protocol::ErrorCode;
use strata_protocol::api::{ApiKey, MinLen, RaftMessage, RaftMessagesEncoder};
use strata_protocol::codec::ClientCodec;
use strata_protocol::frame::{DEFAULT_MAX_FRAME_BYTES, LENGTH_LEN, RequestHeader};
use strata_protocol::host_aliases::HostAliases;
use strata_protocol::wire::Reader;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Batches ([`Peers::send`] calls) queued per peer before new ones are dropped.
pub const QUEUE_BATCHES: usize = 4096;
/// A frame is closed once adding the next message would take it past this size (a single larger
/// message gets a frame of its own).
pub const FRAME_BYTES_TARGET: usize = 4 << 20;
/// Largest frame written: the default `listener.max_frame_bytes`. A message that does not fit a
/// frame this size alone is dropped, since the receiver would close the connection on it.
pub const FRAME_BYTES_MAX: usize = DEFAULT_MAX_FRAME_BYTES;
/// The task stops taking batches off the queue for one write once this much is encoded.
pub const WRITE_BYTES_TARGET: usize = 16 << 20;
/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bound on one connect attempt (DNS resolution included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one write (and flush); a peer that reads slower than this is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// While a peer stays unreachable, a warning at most this often (the rest go to debug).
const UNREACHABLE_WARN_INTERVAL: Duration = Duration::from_secs(60);
/// A connection that ends sooner than this counts as a failed attempt for the backoff, so a peer
/// that accepts and at once closes (e.g. at its connection limit) is not hammered.
const SHORT_CONNECTION: Duration = Duration::from_secs(1);
/// Largest frame read back from a peer (only error responses are expected, and small).
const READ_FRAME_BYTES_MAX: usize = 1 << 20;
/// The write buffer is released rather than kept when a drain grew it past this.
const BUFFER_BYTES_KEEP: usize = 2 * WRITE_BYTES_TARGET;

const _: () = assert!(FRAME_BYTES_TARGET <= FRAME_BYTES_MAX && FRAME_BYTES_TARGET <= WRITE_BYTES_TARGET);
const _: () = assert!(BACKOFF_MIN.as_nanos() <= BACKOFF_MAX.as_nanos());

/// One Raft message for a group on another broker.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// The group's topic.
    pub topic: Arc<str>,
    /// The group's partition.
    pub partition: u32,
    /// The topic's incarnation id.
    pub topic_id: u64,
    /// The message (its `to` is a Raft peer id, which is the broker's node id).
    pub message: Message,
}

/// Counters since [`Peers::start`], over all peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStats {
    /// Messages written to a peer's socket.
    pub messages_sent: u64,
    /// Messages dropped: unknown peer, full queue, connection down, write failed, too large.
    pub messages_dropped: u64,
    /// Connect attempts that failed (refused, timed out, name not resolved).
    pub connect_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    connect_failures: AtomicU64,
}

impl Counters {
    fn dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The queue into one peer's sender task.
#[derive(Debug)]
struct Link {
    tx: mpsc::Sender<Vec<OutboundMessage>>,
    /// Whole frames of other internal APIs (leader announcements), written as they are.
    ctl: mpsc::Sender<Bytes>,
    connected: Arc<AtomicBool>,
    /// Where the peer listens (changes if it re-registers elsewhere).
    address: Arc<std::sync::Mutex<String>>,
}

#[derive(Debug)]
struct Inner {
    node_id: u64,
    /// By node id; brokers that join later are added (see [`Peers::add`]).
    links: std::sync::RwLock<HashMap<u64, Link>>,
    counters: Arc<Counters>,
    tasks: TaskTracker,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    /// Names looked up before the system resolver.
    aliases: Arc<HostAliases>,
}

/// The connections to the other brokers. Cheap to clone; the sender tasks stop when `shutdown`
/// is cancelled or every clone is dropped.
#[derive(Debug, Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

impl Peers {
    /// Spawns one sender task per peer on `runtime` (a handle, since the caller of
    /// [`Peers::send`] is a plain OS thread, the Raft driver). `peers` are (node id,
    /// `"host:port"`); the host may be a DNS name, resolved at each connect attempt (through
    /// `aliases` first). An entry for `node_id` itself, or a repeated id, is ignored.
    pub fn start(
        node_id: u64,
        peers: Vec<(u64, String)>,
        aliases: HostAliases,
        runtime: tokio::runtime::Handle,
        shutdown: CancellationToken,
    ) -> Peers {
        let tasks = TaskTracker::new();
        tasks.close();
        let p = Peers {
            inner: Arc::new(Inner {
                node_id,
                links: std::sync::RwLock::new(HashMap::new()),
                counters: Arc::new(Counters::default()),
                tasks,
                runtime,
                shutdown,
                aliases: Arc::new(aliases),
            }),
        };
        for (to, address) in peers {
            if !p.add(to, address.clone()) {
                tracing::warn!(peer = to, %address, "ignoring a peer entry for this node or a repeated id");
            }
        }
        p
    }

    /// Starts a sender task for node `to` at `address` (a broker that joined); `false` (and
    /// nothing changes) for this node or a node already known. A known node's new address takes
    /// effect when [`Peers::readdress`] is called.
    pub fn add(&self, to: u64, address: String) -> bool {
        let inner = &self.inner;
        let mut links = inner.links.write().unwrap_or_else(|e| e.into_inner());
        if to == inner.node_id || links.contains_key(&to) {
            return false;
        }
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        // Room for a few announcement frames (a broker leading very many partitions sends
        // several per round).
        let (ctl, ctl_rx) = mpsc::channel(8);
        let connected = Arc::new(AtomicBool::new(false));
        let address = Arc::new(std::sync::Mutex::new(address));
        let sender = Sender {
            node_id: inner.node_id,
            to,
            address: address.clone(),
            aliases: inner.aliases.clone(),
            rx,
            ctl_rx,
            connected: connected.clone(),
            counters: inner.counters.clone(),
            shutdown: inner.shutdown.clone(),
            buf: BytesMut::new(),
            parts: Vec::new(),
            parts_bytes: 0,
            header: RequestHeader {
                api_key: ApiKey::RaftMessages as i16,
                api_version: 0,
                correlation_id: 0,
                client_id: Some(format!("broker-{}", inner.node_id)),
            },
        };
        inner.tasks.spawn_on(sender.run(), &inner.runtime);
        links.insert(
            to,
            Link {
                tx,
                ctl,
                connected,
                address,
            },
        );
        true
    }

    /// Queues a whole frame (another internal API than RaftMessages) for every peer; dropped
    /// for a peer whose queue is full or that is not connected (the next one follows).
    pub fn broadcast(&self, frame: Bytes) {
        for link in self.inner.links.read().unwrap_or_else(|e| e.into_inner()).values() {
            if link.connected.load(Ordering::Relaxed) {
                let _ = link.ctl.try_send(frame.clone());
            }
        }
    }

    /// Points node `to`'s connection at a new address (a broker that re-registered from
    /// elsewhere); used from the next connect attempt.
    pub fn readdress(&self, to: u64, address: &str) {
        if let Some(link) = self.inner.links.read().unwrap_or_else(|e| e.into_inner()).get(&to) {
            let mut a = link.address.lock().unwrap_or_else(|e| e.into_inner());
            if *a != address {
                tracing::info!(peer = to, from = %a, to = %address, "peer broker moved");
                *a = address.to_string();
            }
        }
    }

    /// Queues messages for node `to`. Never blocks and never fails loudly: an unknown node or a
    /// full queue drops the messages (Raft retransmits) and counts them, and hands them back
    /// (so the caller can tell Raft the peer is unreachable).
    pub fn send(&self, to: u64, msgs: Vec<OutboundMessage>) -> Result<(), Vec<OutboundMessage>> {
        if msgs.is_empty() {
            return Ok(());
        }
        let links = self.inner.links.read().unwrap_or_else(|e| e.into_inner());
        let Some(link) = links.get(&to) else {
            tracing::debug!(
                peer = to,
                count = msgs.len(),
                "dropping raft messages for an unknown node"
            );
            self.inner.counters.dropped(msgs.len());
            return Err(msgs);
        };
        match link.tx.try_send(msgs) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msgs) | TrySendError::Closed(msgs)) => {
                tracing::trace!(peer = to, count = msgs.len(), "peer queue full or closed; dropping");
                self.inner.counters.dropped(msgs.len());
                Err(msgs)
            }
        }
    }

    /// Whether the connection to `to` is currently up (for reporting).
    pub fn is_connected(&self, to: u64) -> bool {
        self.inner
            .links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&to)
            .is_some_and(|l| l.connected.load(Ordering::Relaxed))
    }

    /// How many peers have an open connection.
    pub fn connected_count(&self) -> usize {
        self.inner
            .links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|l| l.connected.load(Ordering::Relaxed))
            .count()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> PeerStats {
        let c = &self.inner.counters;
        PeerStats {
            messages_sent: c.sent.load(Ordering::Relaxed),
            messages_dropped: c.dropped.load(Ordering::Relaxed),
            connect_failures: c.connect_failures.load(Ordering::Relaxed),
        }
    }

    /// Completes once every sender task has ended (after `shutdown` is cancelled).
    pub async fn stopped(&self) {
        self.inner.tasks.wait().await;
    }
}

/// Why a connection ended.
enum Ended {
    /// Shutdown, or every [`Peers`] dropped: the task ends.
    Stop,
    /// Reconnect.
    Lost(String),
}

/// One peer's sender task.
struct Sender {
    node_id: u64,
    to: u64,
    address: Arc<std::sync::Mutex<String>>,
    aliases: Arc<HostAliases>,
    rx: mpsc::Receiver<Vec<OutboundMessage>>,
    ctl_rx: mpsc::Receiver<Bytes>,
    connected: Arc<AtomicBool>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    /// Encoded frames of the current drain (kept between drains to reuse its memory).
    buf: BytesMut,
    /// Large entry payloads of the current drain, not copied into `buf`: each is written where
    /// `buf` had reached when it was noted (see [`encode_message_parts`]).
    parts: Vec<(usize, Bytes)>,
    /// Their total size.
    parts_bytes: usize,
    /// The header of every frame; only the correlation id changes.
    header: RequestHeader,
}

impl Sender {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        // The current streak of failed attempts, and when it last got a warning.
        let mut failures = 0u64;
        let mut warned_at: Option<Instant> = None;
        // Whether the last connection ended within `SHORT_CONNECTION`.
        let mut flapping = false;
        loop {
            // Whatever is queued predates this attempt; Raft has or will have newer messages.
            self.drop_queued();
            let address = self.address.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let target = self.aliases.resolve(&address);
            let attempt = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return,
                r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str())) => r,
            };
            let stream = match attempt {
                Ok(Ok(stream)) => stream,
                failed => {
                    self.counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("timed out after {CONNECT_TIMEOUT:?}"),
                    };
                    if warned_at.is_none_or(|at| at.elapsed() >= UNREACHABLE_WARN_INTERVAL) {
                        tracing::warn!(peer = self.to, %address, %error, failures, "cannot connect to peer broker");
                        warned_at = Some(Instant::now());
                    } else {
                        tracing::debug!(peer = self.to, %address, %error, failures, "cannot connect to peer broker");
                    }
                    if !self.wait_dropping(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(peer = self.to, error = %e, "cannot set TCP_NODELAY");
            }
            // A peer that accepts and at once hangs up, again and again, is logged at debug.
            if flapping {
                tracing::debug!(peer = self.to, %address, "connected to peer broker");
            } else {
                tracing::info!(peer = self.to, %address, "connected to peer broker");
            }
            failures = 0;
            warned_at = None;
            let since = Instant::now();
            self.connected.store(true, Ordering::Relaxed);
            let ended = self.serve(stream).await;
            self.connected.store(false, Ordering::Relaxed);
            let Ended::Lost(reason) = ended else {
                return;
            };
            let short = since.elapsed() < SHORT_CONNECTION;
            if short && flapping {
                tracing::debug!(peer = self.to, %address, %reason, "lost the connection to peer broker");
            } else {
                tracing::warn!(peer = self.to, %address, %reason, "lost the connection to peer broker");
            }
            flapping = short;
            if short {
                if !self.wait_dropping(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            } else {
                backoff = BACKOFF_MIN;
            }
        }
    }

    /// Sends everything queued over `stream` until it fails, the peer closes it, or shutdown.
    async fn serve(&mut self, stream: TcpStream) -> Ended {
        let (read, mut write) = stream.into_split();
        let mut read = FramedRead::new(
            read,
            ClientCodec {
                max_frame_bytes: READ_FRAME_BYTES_MAX,
            },
        );
        let mut warned = false;
        loop {
            let first = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ended::Stop,
                reason = discard_until_closed(&mut read, self.to, &mut warned) => return Ended::Lost(reason),
                // Announcements first: a link busy with Raft traffic must not starve them (the
                // peer would take this broker's silence for its death; see `driver`).
                Some(frame) = self.ctl_rx.recv() => {
                    self.buf.extend_from_slice(&frame);
                    Vec::new()
                }
                batch = self.rx.recv() => match batch {
                    Some(batch) => batch,
                    None => return Ended::Stop,
                },
            };
            let count = self.encode_drain(first);
            if self.buf.is_empty() {
                continue;
            }
            // Keep reading while writing: a peer blocked on writing to us would stop reading.
            let written = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ended::Stop,
                reason = discard_until_closed(&mut read, self.to, &mut warned) => Err(reason),
                r = tokio::time::timeout(WRITE_TIMEOUT, write_all(&mut write, &self.buf, &self.parts)) => match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("write failed: {e}")),
                    Err(_) => Err(format!("write timed out after {WRITE_TIMEOUT:?}")),
                },
            };
            self.reset_buffer();
            match written {
                Ok(()) => {
                    self.counters.sent.fetch_add(count as u64, Ordering::Relaxed);
                }
                Err(reason) => {
                    self.counters.dropped(count);
                    return Ended::Lost(reason);
                }
            }
        }
    }

    /// Encodes `first` and whatever else is queued (up to [`WRITE_BYTES_TARGET`]) into
    /// `self.buf` as RaftMessages frames; returns how many messages were encoded.
    fn encode_drain(&mut self, first: Vec<OutboundMessage>) -> usize {
        let mut frame = None;
        let mut count = self.encode_batch(&mut frame, first);
        while self.buf.len() + self.parts_bytes < WRITE_BYTES_TARGET {
            match self.rx.try_recv() {
                Ok(batch) => count += self.encode_batch(&mut frame, batch),
                Err(_) => break,
            }
        }
        if let Some(f) = frame {
            f.finish(&mut self.buf);
        }
        count
    }

    fn encode_batch(&mut self, frame: &mut Option<RaftMessagesEncoder>, batch: Vec<OutboundMessage>) -> usize {
        let mut count = 0;
        for mut m in batch {
            // Also caches the sizes of nested messages for `write_to_with_cached_sizes`.
            let size = usize::try_from(m.message.compute_size()).unwrap_or(usize::MAX);
            // An entry's fixed fields are its smallest encoding; then the topic name and payload.
            let entry = RaftMessage::MIN_LEN.saturating_add(m.topic.len()).saturating_add(size);
            if let Some(f) = frame.as_ref()
                && f.count() > 0
                && f.frame_bytes(&self.buf).saturating_add(entry) > FRAME_BYTES_TARGET
            {
                frame.take().expect("checked just above").finish(&mut self.buf);
            }
            let f = match frame {
                Some(f) => f,
                None => {
                    self.header.correlation_id = self.header.correlation_id.wrapping_add(1);
                    frame.insert(RaftMessagesEncoder::begin(
                        &mut self.buf,
                        &self.header,
                        self.node_id,
                        self.to,
                    ))
                }
            };
            if (f.frame_bytes(&self.buf) - LENGTH_LEN).saturating_add(entry) > FRAME_BYTES_MAX {
                tracing::warn!(
                    peer = self.to,
                    topic = %m.topic,
                    partition = m.partition,
                    bytes = size,
                    max = FRAME_BYTES_MAX,
                    "dropping a raft message too large for a frame"
                );
                self.counters.dropped(1);
                continue;
            }
            let parts = &mut self.parts;
            let parts_before = parts.len();
            let mut left_out = 0;
            match f.push_parts(&mut self.buf, &m.topic, m.partition, m.topic_id, |out| {
                left_out = encode_message_parts(out, parts, &mut m.message, size)?;
                Ok::<_, protobuf::ProtobufError>(left_out)
            }) {
                Ok(()) => {
                    self.parts_bytes += left_out;
                    count += 1;
                }
                Err(e) => {
                    self.parts.truncate(parts_before);
                    tracing::warn!(peer = self.to, topic = %m.topic, partition = m.partition, error = %e, "cannot encode a raft message");
                    self.counters.dropped(1);
                }
            }
        }
        count
    }

    /// Empties the write buffer, releasing it if one huge drain grew it.
    fn reset_buffer(&mut self) {
        self.parts.clear();
        self.parts_bytes = 0;
        if self.buf.capacity() > BUFFER_BYTES_KEEP {
            self.buf = BytesMut::new();
        } else {
            self.buf.clear();
        }
    }

    /// Drops everything queued right now.
    fn drop_queued(&mut self) {
        while let Ok(batch) = self.rx.try_recv() {
            self.counters.dropped(batch.len());
        }
    }

    /// Waits `delay`, dropping what arrives meanwhile; false if the task should end.
    async fn wait_dropping(&mut self, delay: Duration) -> bool {
        let until = tokio::time::sleep(delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return false,
                _ = &mut until => return true,
                batch = self.rx.recv() => match batch {
                    Some(batch) => self.counters.dropped(batch.len()),
                    None => return false,
                },
            }
        }
    }
}

/// Writes `m` (whose encoded size `compute_size` just returned as `size`) into `out`, with no
/// intermediate buffer.
fn encode_message(out: &mut BytesMut, m: &Message, size: usize) -> protobuf::ProtobufResult<()> {
    let start = out.len();
    out.resize(start + size, 0);
    let mut os = CodedOutputStream::bytes(&mut out[start..]);
    m.write_to_with_cached_sizes(&mut os)?;
    // Holds: the sizes were computed from this very message an instant ago.
    os.check_eof();
    Ok(())
}

/// Entry payloads at least this large are written from where they are rather than copied into
/// the write buffer (a produce batch: the leader would otherwise copy every byte once per peer).
const PART_BYTES_MIN: usize = 4 << 10;
/// Most slices handed to one vectored write.
const WRITE_SLICES_MAX: usize = 256;

/// Like [`encode_message`], but the payloads of an append's large entries are not copied into
/// `out`: each is noted in `parts` with the position in `out` it belongs at, and the number of
/// bytes left out is returned. The bytes sent are those protobuf's encoder would write, except
/// that the entries (field 7) come after the other fields, which protobuf decoders accept in any
/// order. `size` is the message's `compute_size`, which also cached each entry's size. The
/// entries of an append encoded this way are moved out of `m`.
fn encode_message_parts(
    out: &mut BytesMut,
    parts: &mut Vec<(usize, Bytes)>,
    m: &mut Message,
    size: usize,
) -> protobuf::ProtobufResult<usize> {
    // (Entries carrying fields this build does not know are left to protobuf, which keeps them.)
    if m.get_msg_type() != MessageType::MsgAppend
        || !m.entries.iter().any(|e| e.data.len() >= PART_BYTES_MIN)
        || m.entries.iter().any(|e| e.get_unknown_fields().iter().next().is_some())
    {
        return encode_message(out, m, size).map(|()| 0);
    }
    let start = out.len();
    // The message without its entries, by protobuf; then the entries by hand.
    let entries = std::mem::take(&mut m.entries);
    let head_size = usize::try_from(m.compute_size()).unwrap_or(usize::MAX);
    encode_message(out, m, head_size)?;
    let mut left_out = 0;
    for e in entries {
        // Entry fields, proto3: defaults are not written.
        let kind = u64::try_from(protobuf::ProtobufEnum::value(&e.get_entry_type())).unwrap_or(0);
        out.put_u8(7 << 3 | 2); // entries: field 7, length-delimited
        put_varint(out, u64::from(e.get_cached_size()));
        for (tag, v) in [(1u8, kind), (2, e.term), (3, e.index)] {
            if v != 0 {
                out.put_u8(tag << 3);
                put_varint(out, v);
            }
        }
        if !e.data.is_empty() {
            out.put_u8(4 << 3 | 2);
            put_varint(out, e.data.len() as u64);
            if e.data.len() >= PART_BYTES_MIN {
                left_out += e.data.len();
                parts.push((out.len(), e.data));
            } else {
                out.extend_from_slice(&e.data);
            }
        }
        if e.sync_log {
            out.put_u8(5 << 3);
            out.put_u8(1);
        }
        if !e.context.is_empty() {
            out.put_u8(6 << 3 | 2);
            put_varint(out, e.context.len() as u64);
            out.extend_from_slice(&e.context);
        }
    }
    debug_assert_eq!(
        out.len() - start + left_out,
        size,
        "the same size as protobuf's encoding"
    );
    Ok(left_out)
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// The bytes to send, in order: `buf` cut where `parts` belong, with them in between (no empty
/// pieces).
fn pieces<'a>(buf: &'a [u8], parts: &'a [(usize, Bytes)]) -> Vec<&'a [u8]> {
    let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * parts.len() + 1);
    let mut from = 0;
    for (at, part) in parts {
        pieces.push(&buf[from..*at]);
        pieces.push(part);
        from = *at;
    }
    pieces.push(&buf[from..]);
    pieces.retain(|p| !p.is_empty());
    pieces
}

/// Writes `buf` with `parts` put back in (each before `buf`'s byte at its position), with
/// vectored writes, then flushes.
async fn write_all(write: &mut OwnedWriteHalf, buf: &[u8], parts: &[(usize, Bytes)]) -> std::io::Result<()> {
    if parts.is_empty() {
        write.write_all(buf).await?;
        return write.flush().await;
    }
    let pieces = pieces(buf, parts);
    // The first unwritten piece, and how much of it was written.
    let (mut i, mut done) = (0, 0);
    while i < pieces.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&pieces[i][done..])
            .chain(pieces[i + 1..].iter().copied())
            .take(WRITE_SLICES_MAX)
            .map(std::io::IoSlice::new)
            .collect();
        let mut n = write.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = pieces[i].len() - done;
            if n < left {
                done += n;
                n = 0;
            } else {
                n -= left;
                i += 1;
                done = 0;
            }
        }
    }
    write.flush().await
}

/// Reads and discards until the connection closes; returns why. Cancellation-safe (partial
/// frames stay in `read`'s buffer).
async fn discard_until_closed(read: &mut FramedRead<OwnedReadHalf, ClientCodec>, to: u64, warned: &mut bool) -> String {
    loop {
        match read.next().await {
            None => return "the peer closed the connection".to_owned(),
            Some(Err(e)) => return format!("unreadable data from the peer: {e}"),
            Some(Ok(response)) => {
                // A broker that is shutting down, or does not know the API, answers with a
                // request-level error; say so once per connection.
                if !*warned && response.error != ErrorCode::None {
                    let message = Reader::new(response.body)
                        .nullable_string("error message")
                        .ok()
                        .flatten();
                    tracing::warn!(peer = to, code = %response.error, message = message.as_deref().unwrap_or(""), "peer broker rejected raft messages");
                    *warned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, EntryType};
    use strata_protocol::api::{RaftMessagesRequest, Request};
    use strata_protocol::codec::ServerCodec;
    use tokio::net::TcpListener;

    /// Bound on every wait in these tests.
    const WAIT: Duration = Duration::from_secs(10);

    fn message(to: u64, index: u64, data: &'static [u8]) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = to;
        m.from = 1;
        m.term = 3;
        m.index = index;
        m.commit = index;
        m.entries.push(Entry {
            term: 3,
            index: index + 1,
            data: bytes::Bytes::from_static(data),
            ..Entry::default()
        });
        m
    }

    fn outbound(topic: &Arc<str>, partition: u32, message: Message) -> OutboundMessage {
        OutboundMessage {
            topic: topic.clone(),
            partition,
            topic_id: 40 + u64::from(partition),
            message,
        }
    }

    /// Accepts one connection and returns its frames as decoded requests.
    async fn accept(listener: &TcpListener) -> FramedRead<TcpStream, ServerCodec> {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("peer connects in time")
            .unwrap();
        FramedRead::new(
            stream,
            ServerCodec {
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            },
        )
    }

    /// Links from broker 1 to a listener standing in for broker 2, connected: the links, the
    /// listener, the first connection's frames, and the links' shutdown.
    async fn linked_to_broker_2() -> (
        Peers,
        TcpListener,
        FramedRead<TcpStream, ServerCodec>,
        CancellationToken,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let peers = Peers::start(
            1,
            vec![(2, address)],
            HostAliases::new(),
            tokio::runtime::Handle::current(),
            shutdown.clone(),
        );
        let frames = accept(&listener).await;
        wait_until(|| peers.is_connected(2)).await;
        (peers, listener, frames, shutdown)
    }

    async fn next_request(frames: &mut FramedRead<TcpStream, ServerCodec>) -> RaftMessagesRequest {
        let incoming = tokio::time::timeout(WAIT, frames.next())
            .await
            .expect("a frame arrives in time")
            .expect("the connection stays open")
            .expect("the frame is well formed");
        assert_eq!(incoming.header.api_key, ApiKey::RaftMessages as i16);
        assert_eq!(incoming.header.client_id.as_deref(), Some("broker-1"));
        match incoming.body {
            Ok(Request::RaftMessages(r)) => r,
            other => panic!("not a RaftMessages request: {other:?}"),
        }
    }

    async fn wait_until(mut cond: impl FnMut() -> bool) {
        tokio::time::timeout(WAIT, async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("condition holds in time");
    }

    /// An entry of `len` bytes, each byte derived from `seed` and its position.
    fn entry(index: u64, len: usize, seed: u8) -> Entry {
        Entry {
            term: 3,
            index,
            data: (0..len)
                .map(|i| seed.wrapping_add((i % 251) as u8))
                .collect::<Vec<u8>>()
                .into(),
            ..Entry::default()
        }
    }

    /// An append of large and small entries and every kind of entry field.
    fn mixed_append(seed: u8) -> Message {
        let mut m = message(2, 1 << 40, b"");
        m.entries.clear();
        m.entries.push(entry(1 << 40, 64 << 10, seed));
        m.entries.push(entry((1 << 40) + 1, 100, seed));
        m.entries.push(entry((1 << 40) + 2, PART_BYTES_MIN, seed));
        let mut conf = entry((1 << 40) + 3, PART_BYTES_MIN - 1, seed);
        conf.set_entry_type(EntryType::EntryConfChangeV2);
        conf.context = Bytes::from_static(b"context");
        conf.sync_log = true;
        m.entries.push(conf);
        m.entries.push(Entry::default());
        m.commit_term = 3;
        m.priority = -1;
        m.context = Bytes::from_static(b"message context");
        m
    }

    #[test]
    fn appends_with_large_entries_leave_the_payloads_out_and_decode_the_same() {
        let m = mixed_append(7);
        let size = m.compute_size() as usize;
        let (mut out, mut parts) = (BytesMut::from(&b"before"[..]), Vec::new());
        let left_out = encode_message_parts(&mut out, &mut parts, &mut m.clone(), size).unwrap();
        // The 64 KiB entry and the one of exactly PART_BYTES_MIN; not the smaller ones.
        assert_eq!(parts.len(), 2);
        assert_eq!(left_out, (64 << 10) + PART_BYTES_MIN);
        assert_eq!(out.len() - 6 + left_out, size, "as many bytes as protobuf's encoding");
        let sent = pieces(&out, &parts).concat();
        assert_eq!(&sent[..6], b"before");
        let sent = &sent[6..];
        assert_eq!(Message::parse_from_bytes(sent).unwrap(), m);

        // Anything else is protobuf's own encoding, whole in `out`.
        let mut vote = mixed_append(1);
        vote.set_msg_type(MessageType::MsgRequestVote);
        let mut small = message(2, 5, b"small");
        small.entries.push(entry(7, PART_BYTES_MIN - 1, 3));
        // An entry with a field this build does not know: protobuf keeps it.
        let mut unknown = mixed_append(2);
        unknown.entries[1].mut_unknown_fields().add_varint(99, 5);
        for m in [vote, small, unknown] {
            let (mut out, mut parts) = (BytesMut::new(), Vec::new());
            let size = m.compute_size() as usize;
            assert_eq!(
                encode_message_parts(&mut out, &mut parts, &mut m.clone(), size).unwrap(),
                0
            );
            assert!(parts.is_empty());
            assert_eq!(&out[..], &m.write_to_bytes().unwrap()[..]);
        }
    }

    #[tokio::test]
    async fn large_appends_arrive_whole_over_vectored_writes() {
        let (peers, _listener, mut frames, shutdown) = linked_to_broker_2().await;
        // 300 appends of two large entries each: over WRITE_SLICES_MAX pieces per drain, and
        // several frames (~21 MiB).
        let topic: Arc<str> = "big".into();
        let sent: Vec<OutboundMessage> = (0..300u32)
            .map(|i| outbound(&topic, i % 3, mixed_append(i as u8)))
            .collect();
        for chunk in sent.chunks(50) {
            peers.send(2, chunk.to_vec()).expect("queued");
        }
        let mut got = Vec::new();
        while got.len() < sent.len() {
            got.extend(next_request(&mut frames).await.messages);
        }
        assert_eq!(got.len(), sent.len());
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!((g.partition, g.topic_id), (s.partition, s.topic_id));
            assert_eq!(Message::parse_from_carllerche_bytes(&g.message).unwrap(), s.message);
        }
        shutdown.cancel();
        tokio::time::timeout(WAIT, peers.stopped())
            .await
            .expect("sender tasks stop");
    }

    #[tokio::test]
    async fn batches_for_several_groups_arrive_in_order_and_decode() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let peers = Peers::start(
            1,
            vec![(1, "127.0.0.1:1".into()), (2, address)],
            HostAliases::new(),
            tokio::runtime::Handle::current(),
            shutdown.clone(),
        );
        let mut frames = accept(&listener).await;
        wait_until(|| peers.is_connected(2)).await;
        assert!(!peers.is_connected(1), "no link to itself");

        let (orders, audit): (Arc<str>, Arc<str>) = ("orders".into(), "audit".into());
        let mut sent = Vec::new();
        for round in 0..3u64 {
            let batch = vec![
                outbound(&orders, 0, message(2, round, b"order")),
                outbound(&audit, 7, message(2, 10 + round, b"audit")),
            ];
            sent.extend(batch.iter().cloned());
            let _ = peers.send(2, batch);
        }
        assert!(
            peers
                .send(9, vec![outbound(&orders, 0, message(9, 0, b"nobody"))])
                .is_err()
        );

        let mut got = Vec::new();
        while got.len() < sent.len() {
            let r = next_request(&mut frames).await;
            assert_eq!((r.from_node, r.to_node), (1, 2));
            got.extend(r.messages);
        }
        assert_eq!(got.len(), sent.len());
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(
                (g.topic.as_str(), g.partition, g.topic_id),
                (&*s.topic, s.partition, s.topic_id)
            );
            assert_eq!(Message::parse_from_carllerche_bytes(&g.message).unwrap(), s.message);
        }
        wait_until(|| peers.stats().messages_sent == 6).await;
        assert_eq!(
            peers.stats(),
            PeerStats {
                messages_sent: 6,
                messages_dropped: 1,
                connect_failures: 0,
            }
        );

        shutdown.cancel();
        tokio::time::timeout(WAIT, peers.stopped())
            .await
            .expect("sender tasks stop");
        assert!(!peers.is_connected(2));
    }

    #[tokio::test]
    async fn large_drains_are_split_into_frames_under_the_target() {
        let (peers, _listener, mut frames, shutdown) = linked_to_broker_2().await;

        static DATA: [u8; 1 << 20] = [7; 1 << 20];
        let topic: Arc<str> = "big".into();
        // Ten 1 MiB messages in one batch: at least three frames of at most 4 MiB each.
        let batch: Vec<_> = (0..10).map(|i| outbound(&topic, 0, message(2, i, &DATA))).collect();
        let _ = peers.send(2, batch);
        let (mut count, mut frames_seen, mut index) = (0, 0, 0);
        while count < 10 {
            let r = next_request(&mut frames).await;
            frames_seen += 1;
            let bytes: usize = r.messages.iter().map(|m| m.message.len() + m.topic.len() + 18).sum();
            assert!(bytes <= FRAME_BYTES_TARGET, "frame of {bytes} bytes");
            for m in r.messages {
                let decoded = Message::parse_from_carllerche_bytes(&m.message).unwrap();
                assert_eq!(decoded.index, index);
                assert_eq!(decoded.entries[0].data.len(), DATA.len());
                index += 1;
                count += 1;
            }
        }
        assert!(frames_seen >= 3, "{frames_seen} frames");
        shutdown.cancel();
        tokio::time::timeout(WAIT, peers.stopped())
            .await
            .expect("sender tasks stop");
    }

    #[tokio::test]
    async fn messages_arrive_once_a_late_peer_starts_listening() {
        // A port nobody listens on (for now).
        let address = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let shutdown = CancellationToken::new();
        let peers = Peers::start(
            1,
            vec![(2, address.to_string())],
            HostAliases::new(),
            tokio::runtime::Handle::current(),
            shutdown.clone(),
        );
        let topic: Arc<str> = "late".into();
        let _ = peers.send(2, vec![outbound(&topic, 0, message(2, 0, b"too early"))]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!peers.is_connected(2));
        assert!(peers.stats().connect_failures > 0);

        let listener = TcpListener::bind(address).await.unwrap();
        let accepted = tokio::spawn(async move { accept(&listener).await });
        wait_until(|| peers.is_connected(2)).await;
        let mut frames = tokio::time::timeout(WAIT, accepted).await.unwrap().unwrap();
        let _ = peers.send(2, vec![outbound(&topic, 3, message(2, 5, b"on time"))]);
        let r = next_request(&mut frames).await;
        assert_eq!((r.from_node, r.to_node), (1, 2));
        // Messages queued while the peer was down were dropped, not delivered late.
        assert_eq!(r.messages.len(), 1);
        let m = &r.messages[0];
        assert_eq!((m.topic.as_str(), m.partition, m.topic_id), ("late", 3, 43));
        assert_eq!(
            Message::parse_from_carllerche_bytes(&m.message).unwrap(),
            message(2, 5, b"on time")
        );
        assert!(peers.stats().messages_dropped >= 1);
        shutdown.cancel();
        tokio::time::timeout(WAIT, peers.stopped())
            .await
            .expect("sender tasks stop");
    }

    #[tokio::test]
    async fn a_dropped_connection_is_re_established() {
        let (peers, listener, frames, shutdown) = linked_to_broker_2().await;
        drop(frames);
        wait_until(|| !peers.is_connected(2)).await;
        let mut frames = accept(&listener).await;
        wait_until(|| peers.is_connected(2)).await;
        let topic: Arc<str> = "again".into();
        let _ = peers.send(2, vec![outbound(&topic, 1, message(2, 1, b"x"))]);
        let r = next_request(&mut frames).await;
        assert_eq!(r.messages.len(), 1);
        shutdown.cancel();
        tokio::time::timeout(WAIT, peers.stopped())
            .await
            .expect("sender tasks stop");
    }
}
