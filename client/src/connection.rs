//! One pipelined TCP connection to one broker.
//!
//! A [`Connection`] is a cheap, cloneable handle. Underneath it, two tasks own the socket
//! (`Framed<TcpStream, ClientCodec>`, split in halves):
//!
//! - the **writer** takes requests from a bounded queue and writes them, batching whatever is
//!   queued into one flush;
//! - the **reader** decodes response frames and hands each to the caller waiting on its
//!   correlation id, through a map of pending requests to oneshot senders.
//!
//! A caller registers its correlation id in the pending map *before* queueing the request, so
//! the response can never arrive first. Response bodies are decoded by the caller (it knows the
//! API and version), which keeps the reader task cheap.
//!
//! # Bounds
//!
//! At most `max_in_flight_requests` requests are pending per connection (a semaphore; more
//! callers wait for a slot), so the pending map is bounded; the write queue is bounded; response
//! frames larger than `max_frame_bytes` close the connection before anything is buffered.
//!
//! # Failure
//!
//! When the connection dies — the peer closes it, a read or write fails, a frame is malformed, a
//! request times out, or the last handle is dropped — it is marked closed under the same lock as
//! the pending map, every pending request fails with [`Error::ConnectionClosed`] carrying the
//! reason, and later requests fail immediately. A request timeout closes the connection because
//! the broker answers in order: whatever is queued behind a stuck request is stuck too, and a
//! fresh connection is the quickest way out. The pool in [`crate::Client`] reconnects on demand.
//!
//! # Versions
//!
//! `connect` performs the `ApiVersions` handshake and keeps the broker's ranges; each request
//! is sent at the highest version both sides speak, or fails with [`Error::UnsupportedVersion`]
//! without being sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use strata_protocol::api::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, ApiVersionRange,
    ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    CreateTopicsRequest, CreateTopicsResponse, DecommissionBrokerRequest, DecommissionBrokerResponse,
    DeleteGroupsRequest, DeleteGroupsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ProduceRequest, ProduceResponse, Request, Response,
};
use strata_protocol::codec::{ClientCodec, OutgoingRequest};
use strata_protocol::frame::{RawResponse, RequestHeader};
use strata_protocol::wire::Reader;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Requests queued for the writer task beyond those it is writing.
const WRITE_QUEUE_LEN: usize = 64;
/// Most queued requests the writer encodes before one flush.
const MAX_WRITES_PER_FLUSH: usize = 64;

/// A request body type and the response body type it gets back. Implemented for every API's
/// request, so [`Connection::send`] is typed: a `MetadataRequest` yields a `MetadataResponse`.
pub trait ApiRequest: Send + 'static {
    /// The API.
    const KEY: ApiKey;
    /// The response body.
    type Response: Send + 'static;
    /// Wraps the body in the request enum.
    fn into_request(self) -> Request;
    /// Unwraps the matching response, `None` for another API's.
    fn from_response(response: Response) -> Option<Self::Response>;
}

macro_rules! api_request {
    ($($variant:ident: $req:ty => $resp:ty),* $(,)?) => {$(
        impl ApiRequest for $req {
            const KEY: ApiKey = ApiKey::$variant;
            type Response = $resp;
            fn into_request(self) -> Request {
                Request::$variant(self)
            }
            fn from_response(response: Response) -> Option<$resp> {
                match response {
                    Response::$variant(r) => Some(r),
                    _ => None,
                }
            }
        }
    )*};
}

api_request!(
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
    Metadata: MetadataRequest => MetadataResponse,
    CreateTopics: CreateTopicsRequest => CreateTopicsResponse,
    DeleteTopics: DeleteTopicsRequest => DeleteTopicsResponse,
    Produce: ProduceRequest => ProduceResponse,
    Fetch: FetchRequest => FetchResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    InitProducerId: InitProducerIdRequest => InitProducerIdResponse,
    AlterPartitionReassignments: AlterPartitionReassignmentsRequest => AlterPartitionReassignmentsResponse,
    ListPartitionReassignments: ListPartitionReassignmentsRequest => ListPartitionReassignmentsResponse,
    DecommissionBroker: DecommissionBrokerRequest => DecommissionBrokerResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    OffsetCommit: OffsetCommitRequest => OffsetCommitResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest => ConsumerGroupHeartbeatResponse,
    ListGroups: ListGroupsRequest => ListGroupsResponse,
    DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse,
    DeleteGroups: DeleteGroupsRequest => DeleteGroupsResponse,
);

type ResponseTx = oneshot::Sender<Result<RawResponse>>;

/// State shared by the handles and the two tasks.
struct Core {
    broker: String,
    state: Mutex<State>,
    /// Cancelled when the connection closes, for any reason; stops both tasks.
    shutdown: CancellationToken,
}

#[derive(Default)]
struct State {
    /// Why the connection closed; `Some` means no new request may register.
    closed: Option<String>,
    /// Correlation id → the caller waiting for its response.
    pending: HashMap<i32, ResponseTx>,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module; the state stays
        // consistent (a map and a flag), so keep going rather than propagate the poison.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn closed_error(&self, reason: &str) -> Error {
        Error::ConnectionClosed {
            broker: self.broker.clone(),
            reason: reason.to_owned(),
        }
    }

    /// Marks the connection closed (first reason wins), fails every pending request, and stops
    /// both tasks.
    fn close(&self, reason: &str) {
        let (drained, reason): (Vec<ResponseTx>, String) = {
            let mut state = self.lock();
            if state.closed.is_none() {
                debug!(broker = %self.broker, reason, "connection closed");
                state.closed = Some(reason.to_owned());
            }
            let reason = state.closed.clone().unwrap_or_default();
            (state.pending.drain().map(|(_, tx)| tx).collect(), reason)
        };
        for tx in drained {
            let _ = tx.send(Err(self.closed_error(&reason)));
        }
        self.shutdown.cancel();
    }
}

/// Removes a pending entry if the caller stops waiting (timeout, or its future dropped).
struct PendingGuard<'a> {
    core: &'a Core,
    id: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.core.lock().pending.remove(&self.id);
    }
}

/// A request handed to the writer task.
struct Outgoing {
    request: OutgoingRequest,
    /// For requests with no response (`acks = 0` produce): told once the bytes are flushed.
    written: Option<oneshot::Sender<Result<()>>>,
}

/// What the handles own; dropping the last one closes the connection.
struct Handle {
    core: Arc<Core>,
    writer: mpsc::Sender<Outgoing>,
    in_flight: Semaphore,
    next_correlation_id: AtomicI32,
    client_id: Option<String>,
    request_timeout: Duration,
    api_versions: OnceLock<Vec<ApiVersionRange>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.close("connection dropped by the client");
    }
}

/// A pipelined connection to one broker. Clones share the connection.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> strata_client::Result<()> {
/// use strata_client::{ClientConfig, Connection};
/// use strata_client::protocol::api::MetadataRequest;
///
/// let conn = Connection::connect("127.0.0.1:9700", &ClientConfig::default()).await?;
/// let metadata = conn.send(MetadataRequest { topics: None }).await?;
/// println!("{} brokers", metadata.brokers.len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Connection {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.handle.core.broker)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`), starts the reader and writer tasks, and performs the
    /// `ApiVersions` handshake, all within `config.connect_timeout`.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails, [`Error::Timeout`] if it takes too long, or the
    /// handshake's error.
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let target = config.host_aliases.resolve(addr);
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(target.as_str()))
            .await
            .map_err(|_| Error::Timeout {
                what: "connect",
                broker: addr.to_owned(),
                after: config.connect_timeout,
            })?
            .map_err(|e| Error::io(addr, e))?;
        stream.set_nodelay(true).map_err(|e| Error::io(addr, e))?;
        let conn = Self::from_stream(addr, stream, config);
        let handshake = conn.send_with_timeout(ApiVersionsRequest, config.connect_timeout);
        let versions = match handshake.await {
            Ok(v) => v,
            Err(Error::Timeout { broker, after, .. }) => {
                return Err(Error::Timeout {
                    what: "connect",
                    broker,
                    after,
                });
            }
            Err(e) => return Err(e),
        };
        debug!(broker = addr, apis = versions.apis.len(), "connected");
        let _ = conn.handle.api_versions.set(versions.apis);
        Ok(conn)
    }

    /// Wraps an established stream without a handshake: every API is assumed to be supported at
    /// this client's versions until [`Connection::connect`]'s handshake says otherwise.
    fn from_stream(addr: &str, stream: TcpStream, config: &ClientConfig) -> Connection {
        let core = Arc::new(Core {
            broker: addr.to_owned(),
            state: Mutex::new(State::default()),
            shutdown: CancellationToken::new(),
        });
        let framed = Framed::new(
            stream,
            ClientCodec {
                max_frame_bytes: config.max_frame_bytes,
            },
        );
        let (sink, stream) = framed.split();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_LEN);
        tokio::spawn(read_loop(Arc::clone(&core), stream));
        tokio::spawn(write_loop(Arc::clone(&core), sink, rx));
        Connection {
            handle: Arc::new(Handle {
                core,
                writer: tx,
                in_flight: Semaphore::new(config.max_in_flight_requests.max(1)),
                next_correlation_id: AtomicI32::new(0),
                client_id: config.client_id.clone(),
                request_timeout: config.request_timeout,
                api_versions: OnceLock::new(),
            }),
        }
    }

    /// The broker's address, as connected to.
    pub fn broker(&self) -> &str {
        &self.handle.core.broker
    }

    /// Whether the connection has closed (it never reopens; connect again).
    pub fn is_closed(&self) -> bool {
        self.handle.core.lock().closed.is_some()
    }

    /// Closes the connection; pending requests fail with [`Error::ConnectionClosed`].
    pub fn close(&self) {
        self.handle.core.close("connection closed by the client");
    }

    /// The API version ranges the broker advertised in the handshake.
    pub fn api_versions(&self) -> &[ApiVersionRange] {
        self.handle.api_versions.get().map_or(&[], Vec::as_slice)
    }

    /// Requests pending a response right now.
    pub fn pending_requests(&self) -> usize {
        self.handle.core.lock().pending.len()
    }

    /// The version to send `key` at: the highest both sides speak.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`] if the ranges do not overlap.
    pub fn version_for(&self, key: ApiKey) -> Result<i16> {
        let ours = key.versions();
        let Some(theirs) = self.handle.api_versions.get() else {
            return Ok(*ours.end());
        };
        let unsupported = |range: Option<&ApiVersionRange>| Error::UnsupportedVersion {
            broker: self.broker().to_owned(),
            api: key,
            client_min: *ours.start(),
            client_max: *ours.end(),
            broker_versions: range.map(|r| (r.min_version, r.max_version)),
        };
        let Some(range) = theirs.iter().find(|r| r.api_key == key as i16) else {
            return Err(unsupported(None));
        };
        let max = (*ours.end()).min(range.max_version);
        if max < (*ours.start()).max(range.min_version) {
            return Err(unsupported(Some(range)));
        }
        Ok(max)
    }

    /// Sends a request and waits for its response, with the configured request timeout.
    ///
    /// # Errors
    /// The request-level error the broker answered with ([`Error::Request`]), a malformed
    /// response ([`Error::Decode`]), [`Error::Timeout`], [`Error::ConnectionClosed`], or
    /// [`Error::UnsupportedVersion`]. Per-partition and per-topic errors are inside the response.
    pub async fn send<R: ApiRequest>(&self, request: R) -> Result<R::Response> {
        self.send_with_timeout(request, self.handle.request_timeout).await
    }

    /// As [`Connection::send`], with an explicit timeout (a fetch adds its long-poll wait).
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub async fn send_with_timeout<R: ApiRequest>(&self, request: R, timeout: Duration) -> Result<R::Response> {
        let key = R::KEY;
        let version = self.version_for(key)?;
        let raw = self.round_trip(key, version, request.into_request(), timeout).await?;
        let broker = self.broker();
        if !raw.error.is_ok() {
            let message = Reader::new(raw.body).nullable_string("error message").ok().flatten();
            return Err(Error::Request {
                broker: broker.to_owned(),
                api: key,
                code: raw.error,
                message,
            });
        }
        let response = Response::decode(key, version, raw.body).map_err(|source| Error::Decode {
            broker: broker.to_owned(),
            api: key,
            source,
        })?;
        R::from_response(response).ok_or_else(|| Error::UnexpectedResponse {
            broker: broker.to_owned(),
            api: key,
            detail: "response body is for another API".to_owned(),
        })
    }

    /// Sends a request that gets no response (a produce with `acks = 0`), returning once it is
    /// written to the socket.
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] if the connection is closed or the write fails,
    /// [`Error::Timeout`] if it cannot be written within the request timeout,
    /// [`Error::UnsupportedVersion`].
    pub async fn send_oneway<R: ApiRequest>(&self, request: R) -> Result<()> {
        let key = R::KEY;
        let version = self.version_for(key)?;
        let core = &self.handle.core;
        let (tx, rx) = oneshot::channel();
        let outgoing = Outgoing {
            request: self.outgoing(key, version, self.next_id(), request.into_request()),
            written: Some(tx),
        };
        let timeout = self.handle.request_timeout;
        let result = tokio::time::timeout(timeout, async {
            self.handle
                .writer
                .send(outgoing)
                .await
                .map_err(|_| core.closed_error(&self.close_reason()))?;
            rx.await.map_err(|_| core.closed_error(&self.close_reason()))?
        })
        .await;
        result.unwrap_or_else(|_| {
            core.close("a one-way request timed out waiting to be written");
            Err(Error::Timeout {
                what: key.name(),
                broker: core.broker.clone(),
                after: timeout,
            })
        })
    }

    fn close_reason(&self) -> String {
        self.handle
            .core
            .lock()
            .closed
            .clone()
            .unwrap_or_else(|| "writer stopped".to_owned())
    }

    fn next_id(&self) -> i32 {
        // Wraps at i32::MAX; ids only need to be unique among pending requests.
        self.handle.next_correlation_id.fetch_add(1, Ordering::Relaxed)
    }

    fn outgoing(&self, key: ApiKey, version: i16, id: i32, body: Request) -> OutgoingRequest {
        OutgoingRequest {
            header: RequestHeader {
                api_key: key as i16,
                api_version: version,
                correlation_id: id,
                client_id: self.handle.client_id.clone(),
            },
            body,
        }
    }

    /// Registers, sends and awaits one request; the whole exchange (waiting for an in-flight
    /// slot included) is bounded by `timeout`.
    async fn round_trip(&self, key: ApiKey, version: i16, body: Request, timeout: Duration) -> Result<RawResponse> {
        let core = &self.handle.core;
        let exchange = async {
            let _permit = self
                .handle
                .in_flight
                .acquire()
                .await
                .map_err(|_| core.closed_error("semaphore closed"))?;
            let (tx, rx) = oneshot::channel();
            let (id, _guard) = {
                let mut state = core.lock();
                if let Some(reason) = &state.closed {
                    return Err(core.closed_error(reason));
                }
                // Ids wrap after 2^32 requests; skip any still pending (bounded by the in-flight
                // limit, so this loop ends).
                let mut id = self.next_id();
                while state.pending.contains_key(&id) {
                    id = self.next_id();
                }
                state.pending.insert(id, tx);
                (id, PendingGuard { core, id })
            };
            trace!(broker = %core.broker, api = key.name(), correlation_id = id, "request");
            let outgoing = Outgoing {
                request: self.outgoing(key, version, id, body),
                written: None,
            };
            if self.handle.writer.send(outgoing).await.is_err() {
                return Err(core.closed_error(&self.close_reason()));
            }
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(core.closed_error(&self.close_reason())),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                core.close(&format!("{} request timed out after {timeout:?}", key.name()));
                Err(Error::Timeout {
                    what: key.name(),
                    broker: core.broker.clone(),
                    after: timeout,
                })
            }
        }
    }
}

type FramedStream = SplitStream<Framed<TcpStream, ClientCodec>>;
type FramedSink = SplitSink<Framed<TcpStream, ClientCodec>, OutgoingRequest>;

/// Routes each response frame to its waiting caller until the connection dies.
async fn read_loop(core: Arc<Core>, mut stream: FramedStream) {
    let reason = loop {
        tokio::select! {
            () = core.shutdown.cancelled() => break "connection closed".to_owned(),
            frame = stream.next() => match frame {
                None => break "closed by the broker".to_owned(),
                Some(Err(e)) => break format!("read failed: {e}"),
                Some(Ok(response)) => {
                    let waiter = core.lock().pending.remove(&response.correlation_id);
                    match waiter {
                        Some(tx) => {
                            let _ = tx.send(Ok(response));
                        }
                        // The caller timed out or gave up; its response is dropped.
                        None => trace!(
                            broker = %core.broker,
                            correlation_id = response.correlation_id,
                            "response nobody waits for"
                        ),
                    }
                }
            },
        }
    };
    core.close(&reason);
}

/// Writes queued requests, flushing once per burst, until the connection dies or every handle
/// is dropped.
async fn write_loop(core: Arc<Core>, mut sink: FramedSink, mut rx: mpsc::Receiver<Outgoing>) {
    let mut written = Vec::new();
    let reason = 'outer: loop {
        let first = tokio::select! {
            () = core.shutdown.cancelled() => break "connection closed".to_owned(),
            next = rx.recv() => match next {
                Some(out) => out,
                None => break "connection dropped by the client".to_owned(),
            },
        };
        let mut next = Some(first);
        let mut count = 0;
        while let Some(out) = next.take() {
            written.extend(out.written);
            // feed only encodes into the write buffer (flushing if it grows past its
            // backpressure boundary), so it is raced against shutdown like the flush below.
            let fed = tokio::select! {
                () = core.shutdown.cancelled() => break 'outer "connection closed".to_owned(),
                r = sink.feed(out.request) => r,
            };
            if let Err(e) = fed {
                break 'outer format!("write failed: {e}");
            }
            count += 1;
            if count < MAX_WRITES_PER_FLUSH {
                next = rx.try_recv().ok();
            }
        }
        let flushed = tokio::select! {
            () = core.shutdown.cancelled() => break "connection closed".to_owned(),
            r = sink.flush() => r,
        };
        if let Err(e) = flushed {
            break format!("write failed: {e}");
        }
        for tx in written.drain(..) {
            let _ = tx.send(Ok(()));
        }
    };
    core.close(&reason);
    let reason = core.lock().closed.clone().unwrap_or(reason);
    for tx in written.drain(..) {
        let _ = tx.send(Err(core.closed_error(&reason)));
    }
    // Requests still queued were registered as pending (and just failed by `close`) or are
    // one-way; tell the one-way senders.
    rx.close();
    while let Ok(out) = rx.try_recv() {
        if let Some(tx) = out.written {
            let _ = tx.send(Err(core.closed_error(&reason)));
        }
    }
}
