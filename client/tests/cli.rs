//! The `strata` binary as a user runs it, against a real `strata-broker` process.
//!
//! The broker binary belongs to another package, so Cargo does not build it for these tests:
//! it is looked up next to the test's own target directory (`…/target/debug/strata-broker`) and
//! built once with `cargo build -p strata-broker` if missing. Each test starts its own broker
//! on an ephemeral port with a temp data dir (learning the port from its ready file), kills it
//! on drop, and prints its log if the test fails. Every `strata` run has a deadline.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_testkit::process::wait_or_kill;
use strata_testkit::{BrokerProcess, wait};

/// Longest any one `strata` invocation may take before the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

fn broker_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // …/target/debug/deps/cli-HASH → …/target/debug/strata-broker
        let exe = std::env::current_exe().expect("current test executable");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in <target>/<profile>/deps");
        let bin = dir.join(format!("strata-broker{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "strata-broker"])
                .current_dir(&workspace)
                .status()
                .expect("run cargo build -p strata-broker");
            assert!(status.success(), "cargo build -p strata-broker failed: {status}");
            assert!(bin.exists(), "{} missing after building it", bin.display());
        }
        bin
    })
}

/// A `strata-broker` process in a temp dir of its own, killed on drop.
struct Broker {
    // Declared before `_dir` so that the process is stopped before its directory is removed.
    _process: BrokerProcess,
    /// The protocol address, as `strata --bootstrap` takes it.
    addr: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let process = BrokerProcess::start(broker_binary(), dir.path());
        Broker {
            addr: process.addr.to_string(),
            _process: process,
            _dir: dir,
        }
    }

    /// `strata --bootstrap <this broker> ARGS`.
    fn strata(&self, args: &[&str]) -> Run {
        strata(&self.addr, args, None)
    }

    /// As [`Broker::strata`], with `input` on stdin.
    fn strata_in(&self, args: &[&str], input: &[u8]) -> Run {
        strata(&self.addr, args, Some(input))
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.strata(args).ok()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }

    /// Describes `topic` until every partition has a leader.
    fn wait_for_leaders(&self, topic: &str) -> Value {
        wait::until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let d = self.json(&["topic", "describe", topic]);
                let parts = d["partitions"].as_array().unwrap();
                if !parts.is_empty() && parts.iter().all(|p| p["leader"].is_i64()) {
                    Ok(d)
                } else {
                    Err(d)
                }
            },
            |d| format!("{topic} has no leaders: {d}"),
        )
    }
}

/// A finished `strata` run.
#[derive(Debug)]
struct Run {
    #[allow(dead_code)] // read through `Debug`, in assertion messages
    args: Vec<String>,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn ok(self) -> String {
        assert!(self.status.success(), "{self:?}");
        assert!(self.stderr.is_empty(), "{self:?}");
        self.stdout
    }

    /// Asserts an operation failure: exit 1 and one `strata: error:` line containing each of
    /// `parts`.
    fn fails_with(&self, parts: &[&str]) {
        assert_eq!(self.status.code(), Some(1), "{self:?}");
        assert!(self.stderr.starts_with("strata: error: "), "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        for p in parts {
            assert!(self.stderr.contains(p), "stderr mentions {p:?}: {self:?}");
        }
        assert!(!self.stderr.contains("panicked"), "{self:?}");
    }
}

fn strata_command(bootstrap: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .env_remove("STRATA_BOOTSTRAP");
    cmd
}

fn strata(bootstrap: &str, args: &[&str], input: Option<&[u8]>) -> Run {
    run(strata_command(bootstrap, args), args, input)
}

fn run(mut cmd: Command, args: &[&str], input: Option<&[u8]>) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        // The CLI may stop reading early (and exit); a failed write is its business.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        stdout.read_to_end(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        stderr.read_to_end(&mut s).unwrap();
        s
    });
    let status = wait_or_kill(&mut child, RUN_DEADLINE.saturating_sub(start.elapsed()))
        .unwrap_or_else(|| panic!("strata {args:?} did not finish within {RUN_DEADLINE:?}"));
    if let Some(w) = writer {
        w.join().unwrap();
    }
    Run {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        status,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        took: start.elapsed(),
    }
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn help_lists_the_commands_and_usage_errors_exit_2() {
    let help = strata("127.0.0.1:1", &["--help"], None).ok();
    for cmd in ["topic", "cluster", "produce", "consume", "--bootstrap", "--format"] {
        assert!(help.contains(cmd), "--help lists {cmd}: {help}");
    }
    let help = strata("127.0.0.1:1", &["topic", "--help"], None).ok();
    for cmd in ["create", "list", "describe", "delete"] {
        assert!(help.contains(cmd), "topic --help lists {cmd}: {help}");
    }
    let help = strata("127.0.0.1:1", &["consume", "--help"], None).ok();
    for flag in [
        "--from-beginning",
        "--offset",
        "--partition",
        "--count",
        "--timeout-ms",
        "--print-key",
    ] {
        assert!(help.contains(flag), "consume --help lists {flag}: {help}");
    }
    for bad in [
        &["no-such-command"][..],
        &["topic", "create"],
        &["consume", "t", "--from-beginning", "--offset", "3"],
        &["produce", "t", "--acks", "some"],
        &["topic", "create", "t", "--config", "novalue"],
        &["topic", "create", "t", "--partitions", "0"],
    ] {
        let r = strata("127.0.0.1:1", bad, None);
        assert_eq!(r.status.code(), Some(2), "{r:?}");
        assert!(r.stdout.is_empty() && !r.stderr.is_empty(), "{r:?}");
    }
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let b = Broker::start();
    // Text.
    let out = b.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=60000",
    ]);
    assert_eq!(out, "created topic orders\n");
    // JSON.
    let created = b.json(&["topic", "create", "events", "--replication-factor", "1"]);
    assert_eq!(created, serde_json::json!({"name": "events", "created": true}));

    assert_eq!(b.ok(&["topic", "list"]), "events\norders\n");
    let list = b.json(&["topic", "list"]);
    assert_eq!(
        list,
        serde_json::json!([{"name": "events", "partitions": 1}, {"name": "orders", "partitions": 3}])
    );

    let d = b.wait_for_leaders("orders");
    assert_eq!(d["name"], "orders");
    assert_eq!(d["config"]["retention.ms"], "60000");
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], i);
        assert_eq!(p["leader"], 1);
        assert_eq!(p["replicas"], serde_json::json!([1]));
        assert_eq!(p["in_sync"], serde_json::json!([1]));
        assert_eq!(p["log_start"], 0);
        assert_eq!(p["high_watermark"], 0);
    }
    let text = b.ok(&["topic", "describe", "orders"]);
    assert!(text.starts_with("topic orders  partitions 3\n"), "{text}");
    assert!(text.contains("retention.ms=60000"), "{text}");
    // One row per partition: leader, replicas, in-sync replicas, log start, high watermark.
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("PARTITION"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "IN-SYNC",
            "LOG-START",
            "HIGH-WATERMARK"
        ],
        "{text}"
    );
    assert_eq!(rows.len(), 4, "{text}");
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(*row, [i.to_string().as_str(), "1", "1", "1", "0", "0"], "{text}");
    }

    // The cluster: the one broker leads every partition and hosts every replica (3 + 1).
    b.wait_for_leaders("events");
    let c = b.json(&["cluster", "describe"]);
    let brokers = c["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{c}");
    assert_eq!(brokers[0]["leader_count"], 4, "{c}");
    assert_eq!(brokers[0]["replica_count"], 4, "{c}");
    let text = b.ok(&["cluster", "describe"]);
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["NODE", "ADDRESS", "LEADERS", "REPLICAS"],
            vec!["1", b.addr.as_str(), "4", "4"]
        ],
        "{text}"
    );

    // Failures: one line, exit 1.
    b.strata(&["topic", "create", "orders"]).fails_with(&[
        "cannot create topic orders",
        "TOPIC_ALREADY_EXISTS",
        "already exists",
    ]);
    b.strata(&["--format", "json", "topic", "create", "orders"])
        .fails_with(&["TOPIC_ALREADY_EXISTS"]);
    b.strata(&["topic", "create", "bad/name"])
        .fails_with(&["INVALID_TOPIC"]);
    b.strata(&["topic", "create", "big", "--replication-factor", "3"])
        .fails_with(&["INVALID_REPLICATION_FACTOR"]);
    b.strata(&["topic", "create", "cfg", "--config", "no.such.key=1"])
        .fails_with(&["cannot create topic cfg"]);
    b.strata(&["topic", "delete", "nope"])
        .fails_with(&["cannot delete topic nope", "unknown topic nope"]);
    b.strata(&["topic", "describe", "nope"])
        .fails_with(&["unknown topic nope"]);

    assert_eq!(b.ok(&["topic", "delete", "orders"]), "deleted topic orders\n");
    assert_eq!(
        b.json(&["topic", "delete", "events"]),
        serde_json::json!({"name": "events", "deleted": true})
    );
    assert_eq!(b.json(&["topic", "list"]), serde_json::json!([]));
    assert_eq!(b.ok(&["topic", "list"]), "");

    // The cluster, bootstrapping from STRATA_BOOTSTRAP this time.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(["cluster", "describe", "--format", "json"])
        .env("STRATA_BOOTSTRAP", &b.addr);
    let c: Value = serde_json::from_str(&run(cmd, &["cluster", "describe"], None).ok()).unwrap();
    assert_eq!(c["controller"], 1);
    assert_eq!(c["brokers"][0]["node_id"], 1);
    assert_eq!(c["brokers"][0]["addr"], b.addr.as_str());
    // Every topic is gone, and with it every partition.
    assert_eq!(c["brokers"][0]["leader_count"], 0);
    assert_eq!(c["brokers"][0]["replica_count"], 0);
    let text = b.ok(&["cluster", "describe"]);
    assert!(text.contains("controller 1") && text.contains(&b.addr), "{text}");
    let last: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(last, ["1", b.addr.as_str(), "0", "0"], "{text}");
}

#[test]
fn keyed_lines_round_trip_through_produce_and_consume() {
    let b = Broker::start();
    b.ok(&["topic", "create", "keyed", "--partitions", "3"]);
    b.wait_for_leaders("keyed");
    let input: String = (0..1000).map(|i| format!("key-{i}:value {i}: colons stay\n")).collect();
    let r = b.strata_in(&["produce", "keyed", "--key-separator", ":"], input.as_bytes());
    assert_eq!(r.ok(), "", "text mode prints nothing on success");

    let out = b.ok(&[
        "consume",
        "keyed",
        "--from-beginning",
        "--count",
        "1000",
        "--format",
        "json",
        "--timeout-ms",
        "10000",
    ]);
    let records = json_lines(&out);
    assert_eq!(records.len(), 1000);
    let mut by_partition: BTreeMap<i64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut seen = vec![false; 1000];
    for r in &records {
        assert_eq!(r["topic"], "keyed");
        assert!(r["timestamp"].as_i64().unwrap() > 1_600_000_000_000, "{r}");
        let key = r["key"].as_str().unwrap();
        let i: usize = key.strip_prefix("key-").unwrap().parse().unwrap();
        assert_eq!(r["value"], format!("value {i}: colons stay"));
        assert!(r.get("key_encoding").is_none() && r.get("value_encoding").is_none());
        assert!(!seen[i], "key-{i} twice");
        seen[i] = true;
        by_partition
            .entry(r["partition"].as_i64().unwrap())
            .or_default()
            .push((r["offset"].as_u64().unwrap(), i as u64));
    }
    assert!(by_partition.len() > 1, "keys spread over partitions");
    for (p, recs) in &by_partition {
        // Dense offsets from 0, and each partition in production order.
        for (n, (offset, _)) in recs.iter().enumerate() {
            assert_eq!(*offset, n as u64, "partition {p}");
        }
        assert!(recs.windows(2).all(|w| w[0].1 < w[1].1), "partition {p} in order");
    }
    let d = b.json(&["topic", "describe", "keyed"]);
    let hw: i64 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .sum();
    assert_eq!(hw, 1000);

    // Lines without the separator are not sent; the rest are, and the count is reported.
    let r = b.strata_in(
        &["--format", "json", "produce", "keyed", "--key-separator", "::"],
        b"a::1\nno separator\nb::2\n",
    );
    r.fails_with(&["1 of 3 records not acknowledged", "line 2 has no key separator"]);
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"topic": "keyed", "records": 3, "acknowledged": 2, "failed": 1})
    );

    // A bigger pipe: 100,000 lines go through quickly.
    let many: String = (0..100_000).map(|i| format!("{i}\n")).collect();
    let r = b.strata_in(&["--format", "json", "produce", "keyed"], many.as_bytes());
    let took = r.took;
    let summary: Value = serde_json::from_str(&r.ok()).unwrap();
    assert_eq!(summary["acknowledged"], 100_000);
    eprintln!("produced 100,000 lines in {took:?}");
}

#[test]
fn offsets_partitions_keys_and_encodings() {
    let b = Broker::start();
    b.ok(&["topic", "create", "two", "--partitions", "2"]);
    b.wait_for_leaders("two");
    let input: String = (0..10).map(|i| format!("k{i}\tv{i}\n")).collect();
    b.strata_in(
        &[
            "produce",
            "two",
            "--partition",
            "1",
            "--key-separator",
            "\t",
            "--acks",
            "leader",
        ],
        input.as_bytes(),
    )
    .ok();

    // --offset and --partition, text with --print-key.
    let out = b.ok(&[
        "consume",
        "two",
        "--partition",
        "1",
        "--offset",
        "5",
        "--count",
        "5",
        "--print-key",
        "--timeout-ms",
        "10000",
    ]);
    let expected: String = (5..10).map(|i| format!("k{i}\tv{i}\n")).collect();
    assert_eq!(out, expected);
    // Values alone without --print-key.
    let out = b.ok(&["consume", "two", "--partition", "1", "--from-beginning", "--count", "2"]);
    assert_eq!(out, "v0\nv1\n");
    // Partition 0 is empty: --timeout-ms ends the wait, exit 0.
    let r = b.strata(&[
        "consume",
        "two",
        "--partition",
        "0",
        "--from-beginning",
        "--timeout-ms",
        "300",
    ]);
    assert!(r.took < Duration::from_secs(10), "{r:?}");
    assert_eq!(r.ok(), "");
    // The default start is the end of the log: the 10 records already there are not printed.
    assert_eq!(b.ok(&["consume", "two", "--timeout-ms", "300"]), "");
    // An offset past the end starts at the end.
    assert_eq!(
        b.ok(&[
            "consume",
            "two",
            "--partition",
            "1",
            "--offset",
            "1000",
            "--timeout-ms",
            "300"
        ]),
        ""
    );
    b.strata(&["consume", "two", "--partition", "7", "--timeout-ms", "100"])
        .fails_with(&["no partition 7"]);
    b.strata(&["consume", "nope", "--timeout-ms", "100"])
        .fails_with(&["unknown topic nope"]);

    // Keyless, empty and non-UTF-8 lines, acks=none; JSON shows null keys and base64.
    b.strata_in(
        &["produce", "two", "--partition", "0", "--acks", "none"],
        b"plain\n\n\xff\xfe\r\nlast",
    )
    .ok();
    let out = b.ok(&[
        "consume",
        "two",
        "--partition",
        "0",
        "--from-beginning",
        "--count",
        "4",
        "--format",
        "json",
        "--timeout-ms",
        "10000",
    ]);
    let recs = json_lines(&out);
    let values: Vec<&Value> = recs.iter().map(|r| &r["value"]).collect();
    assert_eq!(values, ["plain", "", "//4=", "last"]);
    assert!(recs.iter().all(|r| r["key"].is_null() && r["partition"] == 0));
    assert_eq!(recs[2]["value_encoding"], "base64");
    assert!(recs[0].get("value_encoding").is_none());
    let offsets: Vec<u64> = recs.iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    // Text prints `null` for a null key.
    let out = b.ok(&[
        "consume",
        "two",
        "--partition",
        "0",
        "--from-beginning",
        "--count",
        "1",
        "--print-key",
    ]);
    assert_eq!(out, "null\tplain\n");
}

#[test]
fn producing_to_an_unknown_topic_reports_every_record() {
    let b = Broker::start();
    let r = b.strata_in(&["produce", "nope"], b"a\nb\nc\n");
    r.fails_with(&["3 of 3 records not acknowledged", "unknown topic nope"]);
    b.ok(&["topic", "create", "one"]);
    let r = b.strata_in(&["produce", "one", "--partition", "4"], b"a\n");
    r.fails_with(&["1 of 1 record not acknowledged", "unknown partition one/4"]);
}

#[test]
fn lines_are_sent_as_they_arrive_not_when_input_ends() {
    let b = Broker::start();
    b.ok(&["topic", "create", "live"]);
    b.wait_for_leaders("live");
    // As `tail -f log | strata produce live`: stdin stays open.
    let mut producer = strata_command(&b.addr, &["produce", "live"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\n").unwrap();
    stdin.flush().unwrap();
    let out = b.ok(&[
        "consume",
        "live",
        "--from-beginning",
        "--count",
        "2",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(out, "one\ntwo\n");
    assert!(producer.try_wait().unwrap().is_none(), "still reading stdin");
    stdin.write_all(b"three\n").unwrap();
    drop(stdin);
    let status = wait_or_kill(&mut producer, RUN_DEADLINE).expect("produce did not end at end of input");
    assert!(status.success());
    let out = b.ok(&[
        "consume",
        "live",
        "--offset",
        "2",
        "--count",
        "1",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(out, "three\n");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t"]);
    b.wait_for_leaders("t");
    let input: String = (0..2000).map(|i| format!("{i}\n")).collect();
    b.strata_in(&["produce", "t"], input.as_bytes()).ok();
    // As `strata consume … | head -0`: the reader has gone before the first write.
    exits_quietly_without_a_reader(&b, &["consume", "t", "--from-beginning", "--count", "2000"]);
    exits_quietly_without_a_reader(&b, &["topic", "list"]);
    // Nothing to write (no new records, no limits): it notices the reader's absence while
    // waiting rather than hanging until a record arrives.
    exits_quietly_without_a_reader(&b, &["consume", "t"]);
}

fn exits_quietly_without_a_reader(b: &Broker, args: &[&str]) {
    let mut child = strata_command(&b.addr, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_or_kill(&mut child, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{args:?} did not notice the closed pipe"));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{args:?}: {status}: {stderr}");
    assert_eq!(stderr, "", "{args:?}");
}

#[test]
fn an_unreachable_broker_fails_fast_with_its_address() {
    let addr = format!("127.0.0.1:{}", closed_port());
    for args in [
        &["topic", "list"][..],
        &["cluster", "describe", "--format", "json"],
        &["consume", "t", "--timeout-ms", "100"],
    ] {
        let r = strata(&addr, args, None);
        r.fails_with(&["cannot reach the cluster at", &addr]);
        assert!(r.took < Duration::from_secs(5), "{r:?}");
    }
    let r = strata(&addr, &["produce", "t"], Some(b"a\n"));
    r.fails_with(&[&addr]);
    // A port that accepts but never answers: the connect timeout bounds the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let r = strata(&addr, &["--connect-timeout-ms", "300", "topic", "list"], None);
    r.fails_with(&["cannot reach the cluster at", &addr, "timed out"]);
    assert!(r.took < Duration::from_secs(5), "{r:?}");
}

/// `consume --group` picks up where the group left off (printing exactly `--count` records across
/// runs, none twice), `group list|describe` show it, `group reset-offsets` is refused while a
/// member runs and moves the offsets once none does, and `group delete` removes it.
#[test]
fn consumer_groups_from_the_command_line() {
    let b = Broker::start();
    b.ok(&["topic", "create", "grouped", "--partitions", "3"]);
    b.wait_for_leaders("grouped");
    let input: String = (0..30).map(|i| format!("{i}\n")).collect();
    b.strata_in(&["produce", "grouped"], input.as_bytes()).ok();
    let consume = |count: &str| {
        json_lines(&b.ok(&[
            "--format",
            "json",
            "consume",
            "grouped",
            "--group",
            "cli",
            "--from-beginning",
            "--count",
            count,
            "--timeout-ms",
            "10000",
        ]))
    };
    let first = consume("12");
    let second = consume("18");
    assert_eq!((first.len(), second.len()), (12, 18));
    let mut values: Vec<u64> = first
        .iter()
        .chain(&second)
        .map(|r| r["value"].as_str().unwrap().parse().unwrap())
        .collect();
    values.sort();
    assert_eq!(
        values,
        (0..30).collect::<Vec<u64>>(),
        "every record once across the two runs"
    );

    let listed = json_lines(&b.ok(&["--format", "json", "group", "list"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["group_id"].as_str(), listed[0]["state"].as_str()),
        (Some("cli"), Some("empty"))
    );
    let d = b.json(&["group", "describe", "cli"]);
    assert_eq!(d["total_lag"], 0, "{d}");
    assert_eq!(d["offsets"].as_array().unwrap().len(), 3, "{d}");
    let text = b.ok(&["group", "describe", "cli"]);
    assert!(text.starts_with("group cli  state empty"), "{text}");
    assert!(text.contains("COMMITTED  LOG-END  LAG"), "{text}");

    // A member runs: resetting is refused with the reason.
    let mut member = strata_command(
        &b.addr,
        &[
            "consume",
            "grouped",
            "--group",
            "cli",
            "--timeout-ms",
            "20000",
            "--session-timeout-ms",
            "2000",
        ],
    );
    let mut member = member.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let d = b.json(&["group", "describe", "cli"]);
            if d["members"].as_array().is_some_and(|m| m.len() == 1) {
                Ok(())
            } else {
                Err(d)
            }
        },
        |d| format!("the member never joined: {d}"),
    );
    b.strata(&["group", "reset-offsets", "cli", "--topic", "grouped", "--to-earliest"])
        .fails_with(&["NON_EMPTY_GROUP", "active member"]);
    b.strata(&["group", "delete", "cli"]).fails_with(&["NON_EMPTY_GROUP"]);
    let _ = member.kill();
    let _ = member.wait();
    // Killed, it leaves only when its session times out.
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let r = b.strata(&["group", "reset-offsets", "cli", "--topic", "grouped", "--to-earliest"]);
            if r.status.success() {
                Ok(r.stdout)
            } else {
                Err(r.stderr)
            }
        },
        |e| format!("reset-offsets kept failing: {e}"),
    );
    let d = b.json(&["group", "describe", "cli"]);
    assert!(
        d["offsets"].as_array().unwrap().iter().all(|o| o["committed"] == 0),
        "{d}"
    );
    assert_eq!(d["total_lag"], 30, "{d}");
    let dry = json_lines(&b.ok(&[
        "--format",
        "json",
        "group",
        "reset-offsets",
        "cli",
        "--topic",
        "grouped",
        "--to-latest",
        "--dry-run",
    ]));
    assert!(dry.iter().all(|r| r["committed"] == false), "{dry:?}");
    assert_eq!(
        b.json(&["group", "describe", "cli"])["total_lag"],
        30,
        "a dry run commits nothing"
    );
    let r = b.strata(&["group", "reset-offsets", "cli", "--topic", "grouped"]);
    assert_eq!(r.status.code(), Some(2), "no --to-…: a usage error: {r:?}");
    assert_eq!(
        b.json(&["group", "delete", "cli"]),
        serde_json::json!({"group": "cli", "deleted": true})
    );
    b.strata(&["group", "describe", "cli"])
        .fails_with(&["GROUP_ID_NOT_FOUND"]);
}
