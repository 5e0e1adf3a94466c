//! `GET /metrics`: every metric of [`crate::metrics::Metrics`] in the Prometheus text exposition
//! format (version 0.0.4).
//!
//! Encoding walks every partition, so it runs on the blocking pool, and at most
//! [`MAX_CONCURRENT_SCRAPES`](crate::metrics::MAX_CONCURRENT_SCRAPES) encodings run at once:
//! a slow or hostile scraper costs an HTTP task and a bounded amount of CPU, never a stall of
//! produce or fetch (which share no lock with it beyond a moment on the partition map).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;

/// The handler.
pub(super) async fn metrics(State(s): State<HttpState>) -> Response {
    // Held until the blocking encode finishes, even if the scraper hangs up first.
    let Ok(permit) = s.broker.metrics.scrape_permits().acquire_owned().await else {
        return unavailable("the broker is shutting down");
    };
    let broker = s.broker.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        broker.metrics.encode()
    })
    .await;
    match encoded {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding metrics failed: {e}\n"),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "the metrics encoding task failed");
            unavailable("the metrics encoding task failed")
        }
    }
}

fn unavailable(reason: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response()
}
