//! The broker's HTTP endpoint (its own port, default `127.0.0.1:9701`), served on the same runtime
//! as the client listener but sharing nothing with the data path: handlers only read atomics.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 once storage is recovered and every local partition is loaded; 503 with
//!   the reason in a JSON body before that and while shutting down.
//!
//! - `GET /metrics` (module `metrics`): every `strata_*` Prometheus metric in the text exposition
//!   format, encoded on the blocking pool, at most two scrapes at once.
//!
//! - The JSON admin API under `/api/v1/` and the console page at `/` live in their own modules;
//!   all of them share [`HttpState`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::Broker;

mod admin;
mod conn;
mod console;
mod metrics;

/// What every HTTP handler can see: the broker (read-only views of its registry and partitions)
/// and its lifecycle.
#[derive(Clone)]
pub struct HttpState {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Lifecycle for `/readyz`.
    pub readiness: Arc<Readiness>,
}

/// Lifecycle the readiness probe reports.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

impl Readiness {
    /// Storage is recovered and every partition loaded.
    pub fn set_ready(&self) {
        self.0.store(READY, Ordering::Release);
    }

    /// The broker is draining.
    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::Release);
    }
}

async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

async fn readyz(State(s): State<HttpState>) -> Response {
    match s.readiness.0.load(Ordering::Acquire) {
        READY => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        STARTING => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "reason": "recovering storage and loading partitions" })),
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "stopping", "reason": "the broker is shutting down" })),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "message": "no such endpoint" })),
    )
        .into_response()
}

/// Serves HTTP on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: HttpState, stop: CancellationToken) {
    let admin = admin::AdminState::new(state.clone(), listener.local_addr().ok());
    let idle_timeout = state.broker.opts.idle_timeout;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(admin::router(admin.clone()))
        .merge(console::router(admin))
        .method_not_allowed_fallback(admin::method_not_allowed)
        .fallback(not_found)
        .with_state(state);
    let listener = conn::LimitedListener::new(listener, conn::MAX_HTTP_CONNECTIONS, idle_timeout);
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    if let Err(e) = served.await {
        tracing::warn!(error = %e, "http server stopped");
    }
}
