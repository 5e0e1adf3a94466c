//! `GET /metrics` on the real `strata-broker` binary: the series move as records are produced and
//! fetched, a deleted topic's series disappear, `metrics.per_partition = false` leaves no
//! `partition` label, the exposition passes `promtool check metrics`, and a real Prometheus server
//! scrapes the broker and answers queries about what was produced.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package (`.ci/run` installs it);
//! where they are missing, the tests that need them print `skipped: ... not installed` and pass.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use strata_protocol::ErrorCode;
use strata_testkit::process::read_log;
use strata_testkit::{BrokerProcess, LoggedChild, http, wait};

mod common;
use common::*;

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn scrape(broker: &BrokerProcess) -> String {
    let r = http::get(broker.http, "/metrics").expect("GET /metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The exposition's samples: series (name and labels as printed) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {l:?}"));
            (
                series.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect()
}

fn value(s: &BTreeMap<String, f64>, series: &str, text: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("{series} missing from the exposition:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_follow_produce_fetch_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("orders", 2, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("orders").await;

    let first = batch(&["a", "b", "c"], 1_000);
    let second = batch(&["d", "e"], 2_000);
    let bytes_in = (first.len() + second.len()) as f64;
    assert_eq!(c.produce("orders", 0, first.clone(), -1).await.error, ErrorCode::None);
    assert_eq!(c.produce("orders", 1, second, -1).await.error, ErrorCode::None);
    let fetched = c.fetch("orders", 0, 0, 0, 0).await;
    assert_eq!(fetched.error, ErrorCode::None);
    assert_eq!(values(fetched.records.clone()).len(), 3);
    // A produce to a topic that does not exist: a per-partition error, and no series for it.
    let missing = c.produce("no-such-topic", 0, batch(&["x"], 0), -1).await;
    assert_eq!(missing.error, ErrorCode::UnknownTopicOrPartition);

    let text = scrape(&broker);
    let s = samples(&text);
    let v = |series: &str| value(&s, series, &text);
    assert_eq!(v("strata_topic_records_in_total{topic=\"orders\"}"), 5.0);
    assert_eq!(v("strata_topic_bytes_in_total{topic=\"orders\"}"), bytes_in);
    assert_eq!(v("strata_topic_records_out_total{topic=\"orders\"}"), 3.0);
    assert_eq!(
        v("strata_topic_bytes_out_total{topic=\"orders\"}"),
        fetched.records.len() as f64
    );
    assert_eq!(v("strata_requests_total{api=\"produce\",error=\"none\"}"), 3.0);
    assert_eq!(v("strata_requests_total{api=\"fetch\",error=\"none\"}"), 1.0);
    assert_eq!(v("strata_requests_total{api=\"create_topics\",error=\"none\"}"), 1.0);
    assert_eq!(v("strata_request_duration_seconds_count{api=\"produce\"}"), 3.0);
    assert_eq!(
        v("strata_partition_errors_total{api=\"produce\",error=\"unknown_topic_or_partition\"}"),
        1.0
    );
    assert_eq!(v("strata_produce_batch_size_bytes_count"), 2.0);
    assert_eq!(v("strata_produce_batch_size_bytes_sum"), bytes_in);
    assert_eq!(
        v("strata_partition_high_watermark{topic=\"orders\",partition=\"0\"}"),
        3.0
    );
    assert_eq!(
        v("strata_partition_high_watermark{topic=\"orders\",partition=\"1\"}"),
        2.0
    );
    assert_eq!(
        v("strata_partition_log_end_offset{topic=\"orders\",partition=\"0\"}"),
        3.0
    );
    assert_eq!(
        v("strata_partition_log_start_offset{topic=\"orders\",partition=\"0\"}"),
        0.0
    );
    assert_eq!(v("strata_partition_leader{topic=\"orders\",partition=\"0\"}"), 1.0);
    assert_eq!(v("strata_partition_failed{topic=\"orders\",partition=\"0\"}"), 0.0);
    assert_eq!(v("strata_partition_segments{topic=\"orders\",partition=\"0\"}"), 1.0);
    assert!(v("strata_partition_size_bytes{topic=\"orders\",partition=\"0\"}") >= first.len() as f64);
    assert!(v("strata_raft_term{topic=\"orders\",partition=\"0\"}") >= 1.0);
    // The election's empty entry, then the batch.
    assert!(v("strata_raft_commit_index{topic=\"orders\",partition=\"0\"}") >= 2.0);
    assert_eq!(v("strata_partitions"), 2.0);
    assert_eq!(v("strata_partitions_leader"), 2.0);
    assert_eq!(v("strata_partitions_failed"), 0.0);
    assert!(v("strata_raft_leader_changes_total") >= 2.0);
    assert!(v("strata_raft_ready_loop_duration_seconds_count") >= 2.0);
    assert!(
        v("strata_storage_fsyncs_total") >= 2.0,
        "flush policy always: every append synced"
    );
    assert!(v("strata_storage_fsync_duration_seconds_count") >= 2.0);
    assert!(v("strata_storage_append_duration_seconds_count") >= 2.0);
    assert!(v("strata_storage_synced_bytes_total") >= bytes_in);
    assert!(v("strata_connections_accepted_total") >= 1.0);
    assert!(v("strata_connections_open") >= 1.0, "the test's connection is open");
    assert_eq!(v("strata_requests_in_flight"), 0.0);
    assert_eq!(v("strata_fetch_long_polls_waiting"), 0.0);
    assert!(v("strata_process_resident_memory_bytes") > 0.0);
    assert!(v("strata_process_open_fds") > 0.0);
    assert!(s.contains_key("strata_process_cpu_seconds_total"), "{text}");
    let build = s
        .iter()
        .find(|(k, _)| k.starts_with("strata_build_info{"))
        .unwrap_or_else(|| panic!("no strata_build_info:\n{text}"));
    assert_eq!(*build.1, 1.0);
    assert!(
        build.0.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{}",
        build.0
    );
    assert!(build.0.contains("git_commit=\""), "{}", build.0);
    assert!(!build.0.contains("git_commit=\"\""), "{}", build.0);
    assert!(
        !text.contains("no-such-topic"),
        "an unknown topic must not become a label"
    );
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(line["# TYPE ".len()..].starts_with("strata_"), "{line}");
    }

    // A long poll waiting for data shows while it waits.
    let mut waiter = Client::connect(broker.addr).await;
    let poll = tokio::spawn(async move { waiter.fetch("orders", 1, 2, 20_000, 1).await });
    wait::until_async(
        Duration::from_secs(10),
        Duration::from_millis(20),
        async || {
            let text = scrape(&broker);
            if value(&samples(&text), "strata_fetch_long_polls_waiting", &text) == 1.0 {
                Ok(())
            } else {
                Err(text)
            }
        },
        |text| format!("the long poll never showed:\n{text}"),
    )
    .await;
    assert_eq!(
        c.produce("orders", 1, batch(&["f"], 3_000), -1).await.error,
        ErrorCode::None
    );
    let woken = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(values(woken.records).len(), 1);

    // Deleting the topic removes every series that names it.
    let r = c
        .call(strata_protocol::api::Request::DeleteTopics(
            strata_protocol::api::DeleteTopicsRequest {
                names: vec!["orders".into()],
                timeout_ms: 5_000,
            },
        ))
        .await
        .unwrap();
    let strata_protocol::api::Response::DeleteTopics(r) = r else {
        panic!("wrong response {r:?}")
    };
    assert_eq!(r.topics[0].error, ErrorCode::None);
    let text = scrape(&broker);
    assert!(!text.contains("orders"), "series of the deleted topic remain:\n{text}");
    let s = samples(&text);
    assert_eq!(value(&s, "strata_partitions", &text), 0.0);
    assert_eq!(
        value(&s, "strata_requests_total{api=\"delete_topics\",error=\"none\"}", &text),
        1.0
    );

    // Re-created under the same name, its counters start over.
    assert_eq!(c.create("orders", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("orders").await;
    let text = scrape(&broker);
    let s = samples(&text);
    assert_eq!(value(&s, "strata_topic_records_in_total{topic=\"orders\"}", &text), 0.0);
    assert_eq!(value(&s, "strata_partitions", &text), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_partition_off_leaves_no_partition_label() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with(BROKER, dir.path(), &["--metrics-per-partition", "false"]);
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("quiet", 3, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("quiet").await;
    for p in 0..3 {
        assert_eq!(c.produce("quiet", p, batch(&["r"], 0), -1).await.error, ErrorCode::None);
    }
    let text = scrape(&broker);
    assert!(
        !text.contains("partition=\""),
        "a series carries a partition label:\n{text}"
    );
    let s = samples(&text);
    assert_eq!(value(&s, "strata_topic_records_in_total{topic=\"quiet\"}", &text), 3.0);
    assert_eq!(value(&s, "strata_partitions", &text), 3.0);
    assert_eq!(value(&s, "strata_partitions_leader", &text), 3.0);
    assert!(!text.contains("strata_partition_high_watermark"), "{text}");
    assert!(!text.contains("strata_raft_term"), "{text}");
}

/// `None` (after saying so) when the tool is not installed.
fn installed(tool: &str) -> Option<PathBuf> {
    let found = strata_testkit::which(&[tool]);
    if found.is_none() {
        eprintln!("skipped: {tool} not installed (Debian package `prometheus`; .ci/run installs it)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_passes_promtool() {
    let Some(promtool) = installed("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("linted", 2, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("linted").await;
    assert_eq!(
        c.produce("linted", 0, batch(&["a", "b"], 0), -1).await.error,
        ErrorCode::None
    );
    assert_eq!(c.fetch("linted", 0, 0, 0, 0).await.error, ErrorCode::None);
    // Error series too: an unknown topic and an offset out of range.
    c.produce("missing", 0, batch(&["a"], 0), -1).await;
    assert_eq!(c.fetch("linted", 0, -5, 0, 0).await.error, ErrorCode::OffsetOutOfRange);
    let text = scrape(&broker);
    assert!(text.contains("strata_partition_errors_total{"), "{text}");

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}\n---\n{text}"
    );
    // promtool prints nothing for a clean exposition; lint findings would be listed.
    assert!(report.trim().is_empty(), "promtool findings:\n{report}");
}

/// A Prometheus server process, killed (and its log printed on failure) when dropped.
struct PrometheusServer {
    process: LoggedChild,
    addr: SocketAddr,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `target` every second. The port is found by binding port 0
    /// and releasing it, which can race with another process; a server that exits at once is
    /// retried on a new port.
    fn start(binary: &Path, dir: &Path, target: SocketAddr) -> PrometheusServer {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        for attempt in 0..3 {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let mut cmd = Command::new(binary);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("tsdb-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={addr}"));
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let mut process = LoggedChild::spawn("prometheus", &mut cmd, log.clone());
            // Ready (true), or exited at once (false: try another port).
            let ready = wait::until(
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    if let Some(status) = process.try_wait() {
                        eprintln!(
                            "prometheus exited with {status} (attempt {attempt}):\n{}",
                            process.logs()
                        );
                        return Ok(false);
                    }
                    match http::get(addr, "/-/ready") {
                        Ok(r) if r.status == 200 => Ok(true),
                        _ => Err(()),
                    }
                },
                |()| format!("prometheus not ready:\n{}", read_log(&log)),
            );
            if ready {
                return PrometheusServer { process, addr };
            }
        }
        panic!("prometheus did not start in 3 attempts");
    }

    /// The instant query's first sample value, if any.
    fn query(&self, promql: &str) -> Option<f64> {
        let r = http::get(self.addr, &format!("/api/v1/query?query={}", encode(promql))).ok()?;
        if r.status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        assert_eq!(v["status"], "success", "{}", r.body);
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until `ok` accepts its value, for up to `limit`.
    fn wait_for(&self, promql: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        wait::until(
            limit,
            Duration::from_millis(250),
            || match self.query(promql) {
                Some(v) if ok(v) => Ok(v),
                got => Err(got),
            },
            |got| {
                format!(
                    "{promql} is {got:?} after {limit:?}; prometheus log:\n{}",
                    self.process.logs()
                )
            },
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_broker() {
    let Some(binary) = installed("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = {
        let (binary, target) = (binary.clone(), broker.http);
        tokio::task::spawn_blocking(move || PrometheusServer::start(&binary, &prom_dir, target))
            .await
            .unwrap()
    };
    let up = format!("up{{job=\"strata\",instance=\"{}\"}}", broker.http);
    let limit = Duration::from_secs(60);
    let prom = tokio::task::spawn_blocking(move || {
        prom.wait_for(&up, limit, |v| v == 1.0);
        prom
    })
    .await
    .unwrap();

    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("scraped", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("scraped").await;
    assert_eq!(
        c.produce("scraped", 0, batch(&["1", "2", "3", "4"], 0), -1).await.error,
        ErrorCode::None
    );
    assert_eq!(
        c.produce("scraped", 0, batch(&["5", "6", "7"], 0), -1).await.error,
        ErrorCode::None
    );
    let prom = tokio::task::spawn_blocking(move || {
        let records = prom.wait_for("strata_topic_records_in_total{topic=\"scraped\"}", limit, |v| v == 7.0);
        assert_eq!(records, 7.0);
        let hw = prom.wait_for(
            "strata_partition_high_watermark{topic=\"scraped\",partition=\"0\"}",
            limit,
            |v| v == 7.0,
        );
        assert_eq!(hw, 7.0);
        let produced = prom.wait_for(
            "sum(strata_requests_total{api=\"produce\",error=\"none\"})",
            limit,
            |v| v >= 2.0,
        );
        assert_eq!(produced, 2.0);
        prom
    })
    .await
    .unwrap();
    drop(prom);
    drop(broker);
}
