//! The read-only console page at `GET /`: brokers, topics, partitions with their leader and
//! high watermark, and the consumer groups this broker coordinates with their lag, rendered on the server as one self-contained HTML document (inline CSS, no
//! scripts, no external assets, no build step) that reloads itself every few seconds.
//!
//! Every value that reaches the page goes through [`escape`]: topic names are restricted to
//! `[a-zA-Z0-9._-]` today, but the advertised host comes from configuration and the page must
//! stay safe if either rule ever loosens. A `Content-Security-Policy` that allows nothing but the
//! inline style backs that up.
//!
//! It reads what the admin API reads ([`super::admin`]'s views): the atomics the Raft driver
//! publishes and a brief copy of the registry, never a partition's storage lock.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::admin::{self, AdminState, PartitionView};
use super::{HttpState, READY, STARTING};

/// Seconds between the page's own reloads.
const REFRESH_SECS: u32 = 5;
/// Most rows rendered in the topics table and in the partitions table; the JSON API has the rest.
const MAX_ROWS: usize = 1000;

/// The `/` route.
pub fn router(state: AdminState) -> Router<HttpState> {
    Router::new()
        .route("/", get(page))
        .method_not_allowed_fallback(admin::method_not_allowed)
        .with_state(state)
}

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
header { background: #1d2330; color: #fff; padding: 12px 24px; display: flex; gap: 24px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header span { color: #b8bfcc; }
main { padding: 8px 24px 24px; max-width: 1200px; }
h2 { font-size: 15px; margin: 24px 0 8px; }
table { border-collapse: collapse; background: #fff; width: 100%; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
th, td { text-align: left; padding: 6px 12px; border-bottom: 1px solid #e4e7ec; }
th { background: #eef0f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; }
.online { color: #1a7f37; } .electing, .offline, .starting, .stopping { color: #9a6700; } .failed { color: #cf222e; }
.ready { color: #7ee787; }
p.note { color: #57606a; }
footer { color: #57606a; padding: 0 24px 24px; font-size: 12px; }
";

fn readiness(s: &HttpState) -> &'static str {
    match s.readiness.0.load(Ordering::Acquire) {
        READY => "ready",
        STARTING => "starting",
        _ => "stopping",
    }
}

/// `1234567` → `1.2 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

async fn page(State(s): State<AdminState>) -> Response {
    let broker = &s.http.broker;
    let cluster = admin::cluster_view(&s);
    let topics = admin::topic_summaries(broker).await;

    // The first MAX_ROWS partitions in topic order; only those are looked up.
    let mut rows = Vec::new();
    let mut hidden_partitions = 0u64;
    for t in &topics {
        let room = MAX_ROWS - rows.len();
        let shown = t.partitions.min(u32::try_from(room).unwrap_or(u32::MAX));
        hidden_partitions += u64::from(t.partitions - shown);
        let hosted = admin::hosted_partitions(broker, &t.name, shown);
        for ((i, p), r) in (0..).zip(hosted).zip(&t.replicas) {
            rows.push((t.name.as_str(), admin::partition_view(i, r, p.as_deref())));
        }
    }

    let mut h = String::with_capacity(4096 + rows.len() * 200);
    let state = readiness(&s.http);
    // `write!` into a String cannot fail.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Strata console</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>Strata</h1><span>cluster {}</span><span>version {}</span>\
         <span>broker {} is <b class=\"{state}\" id=\"readiness\">{state}</b></span></header>\n<main>\n",
        escape(cluster.cluster_id),
        escape(cluster.version),
        broker.opts.node_id,
    );

    h.push_str(
        "<h2>Brokers</h2>\n<table id=\"brokers\">\n<thead><tr><th class=\"num\">node</th><th>address</th>\
         <th>HTTP</th><th>role</th></tr></thead>\n<tbody>\n",
    );
    for b in &cluster.brokers {
        let role = if Some(b.node_id) == cluster.controller.node_id {
            "controller"
        } else {
            "broker"
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td>{}:{}</td><td>{}</td><td>{role}{}</td></tr>",
            b.node_id,
            escape(&b.host),
            b.port,
            escape(b.http.as_deref().unwrap_or("–")),
            if b.this_broker { " (this broker)" } else { "" },
        );
    }
    h.push_str("</tbody>\n</table>\n");

    let _ = writeln!(h, "<h2>Topics ({})</h2>", topics.len());
    if topics.is_empty() {
        h.push_str("<p class=\"note\" id=\"no-topics\">No topics yet.</p>\n");
    } else {
        h.push_str(
            "<table id=\"topics\">\n<thead><tr><th>topic</th><th class=\"num\">partitions</th>\
             <th class=\"num\">replication factor</th></tr></thead>\n<tbody>\n",
        );
        for t in topics.iter().take(MAX_ROWS) {
            let _ = writeln!(
                h,
                "<tr><td class=\"topic\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&t.name),
                t.partitions,
                t.replication_factor,
            );
        }
        h.push_str("</tbody>\n</table>\n");
        if topics.len() > MAX_ROWS {
            let _ = writeln!(
                h,
                "<p class=\"note\">{} more topics not shown; <code>GET /api/v1/topics</code> lists every one.</p>",
                topics.len() - MAX_ROWS
            );
        }

        h.push_str(
            "<h2>Partitions</h2>\n<table id=\"partitions\">\n<thead><tr><th>topic</th>\
             <th class=\"num\">partition</th><th class=\"num\">leader</th><th class=\"num\">log start</th>\
             <th class=\"num\">high watermark</th><th class=\"num\">size</th><th>status</th></tr></thead>\n\
             <tbody>\n",
        );
        for (topic, p) in &rows {
            partition_row(&mut h, topic, p);
        }
        h.push_str("</tbody>\n</table>\n");
        if hidden_partitions > 0 {
            let _ = writeln!(
                h,
                "<p class=\"note\">{hidden_partitions} more partitions not shown; \
                 <code>GET /api/v1/topics/&lt;name&gt;</code> lists every one.</p>"
            );
        }
    }

    let groups = broker.groups.summaries();
    let _ = writeln!(h, "<h2>Consumer groups coordinated here ({})</h2>", groups.len());
    if groups.is_empty() {
        h.push_str(
            "<p class=\"note\" id=\"groups\">No consumer group is coordinated by this broker (each \
             group's coordinator lists it; <code>strata group list</code> asks every broker).</p>\n",
        );
    } else {
        h.push_str(
            "<table id=\"groups\">\n<thead><tr><th>group</th><th>state</th><th class=\"num\">members</th>\
             <th class=\"num\">partitions</th><th class=\"num\">lag</th></tr></thead>\n<tbody>\n",
        );
        for g in groups.iter().take(MAX_ROWS) {
            let lag = g.total_lag();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&g.group),
                g.state,
                g.members,
                g.partitions.len(),
                lag,
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</main>\n");
    let _ = write!(
        h,
        "<footer>Refreshes every {REFRESH_SECS} s. JSON: <code>/api/v1/cluster</code>, \
         <code>/api/v1/topics</code>, <code>/api/v1/groups</code>.</footer>\n</body>\n</html>\n"
    );

    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(h),
    )
        .into_response()
}

fn partition_row(h: &mut String, topic: &str, p: &PartitionView) {
    let _ = writeln!(
        h,
        "<tr><td class=\"topic\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num hw\">{}</td><td class=\"num\">{}</td>\
         <td class=\"status {}\">{}</td></tr>",
        escape(topic),
        p.partition,
        opt(p.leader),
        opt(p.log_start_offset),
        opt(p.high_watermark),
        p.size_bytes.map_or_else(|| "–".to_string(), human_bytes),
        p.status,
        p.status,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
        assert_eq!(escape("orders.v1_eu-west"), "orders.v1_eu-west");
    }

    #[test]
    fn sizes_read_as_humans_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1_234_567), "1.2 MiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn a_hostile_name_renders_as_text() {
        let mut h = String::new();
        let p = PartitionView {
            partition: 0,
            leader: Some(1),
            leader_term: 1,
            replicas: vec![1],
            in_sync_replicas: vec![1],
            log_start_offset: Some(0),
            high_watermark: Some(7),
            log_end_offset: Some(7),
            size_bytes: None,
            segment_count: None,
            failed: false,
            status: "online",
        };
        partition_row(&mut h, "<img src=x onerror=alert(1)>", &p);
        assert!(!h.contains("<img"), "{h}");
        assert!(h.contains("&lt;img src=x onerror=alert(1)&gt;"), "{h}");
        assert!(h.contains("<td class=\"num hw\">7</td>"), "{h}");
    }
}
