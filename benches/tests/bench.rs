//! Runs the real `strata-bench` binary against an embedded broker with tiny workloads and checks
//! that its JSON is well formed with sane values. No timing assertions: a benchmark is never a
//! timed test.

use std::process::{Command, Output};

use serde_json::Value;
use strata_testkit::chromium;

fn bench(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("STRATA_BOOTSTRAP")
        .output()
        .expect("strata-bench runs")
}

fn json(args: &[&str]) -> Value {
    let out = bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?} exited {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout: {stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn check_result(v: &Value, messages: u64) {
    assert_eq!(v["messages"].as_u64(), Some(messages), "{v}");
    assert!(v["bytes"].as_u64().unwrap() >= messages * 32, "{v}");
    assert!(v["elapsed_s"].as_f64().unwrap() >= 0.0, "{v}");
    assert!(v["msgs_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["mb_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{v}");
    let l = &v["latency_ms"];
    let p: Vec<f64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|k| l[*k].as_f64().unwrap_or_else(|| panic!("latency_ms.{k} in {v}")))
        .collect();
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "percentiles ordered: {l}");
    assert!(p[0] >= 0.0);
}

fn check_envelope(v: &Value) {
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["version"].is_string(), "{v}");
    let c = &v["config"];
    for key in [
        "bootstrap",
        "embedded",
        "topic",
        "partitions",
        "replication_factor",
        "producers",
        "consumers",
        "message_size",
        "key_size",
        "key_distribution",
        "batch_bytes",
        "linger_ms",
        "compression",
        "acks",
        "rate",
        "messages",
        "duration",
        "warmup",
        "verify",
        "json",
    ] {
        assert!(c.get(key).is_some(), "config.{key} in {c}");
    }
}

#[test]
fn produce_json() {
    let v = json(&[
        "produce",
        "--embedded",
        "--messages",
        "2000",
        "--message-size",
        "100",
        "--json",
    ]);
    assert_eq!(v["mode"], "produce");
    check_result(&v, 2000);
    assert_eq!(v["bytes"].as_u64(), Some(200_000));
    check_envelope(&v);
    assert_eq!(v["config"]["message_size"], 100);
}

#[test]
fn e2e_verify_json() {
    let v = json(&[
        "e2e",
        "--embedded",
        "--messages",
        "1000",
        "--rate",
        "2000",
        "--partitions",
        "2",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--key-size",
        "8",
        "--compression",
        "lz4",
        "--verify",
        "--json",
    ]);
    assert_eq!(v["mode"], "e2e");
    check_result(&v, 1000);
    check_result(&v["producer"], 1000);
    check_envelope(&v);
    let verify = &v["verify"];
    assert_eq!(verify["checked"], true, "{v}");
    for k in ["lost", "duplicates", "reordered", "corrupt", "violations"] {
        assert_eq!(verify[k].as_u64(), Some(0), "verify.{k} in {v}");
    }
}

#[test]
fn verify_violations_exit_nonzero() {
    let out = bench(&[
        "e2e",
        "--embedded",
        "--messages",
        "300",
        "--inject-duplicates",
        "100",
        "--verify",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verify"]["duplicates"].as_u64(), Some(3), "{v}");
    assert_eq!(v["verify"]["violations"].as_u64(), Some(3), "{v}");
    assert_eq!(v["verify"]["lost"].as_u64(), Some(0), "{v}");
}

#[test]
fn consume_json_and_compare() {
    let v = json(&[
        "consume",
        "--embedded",
        "--messages",
        "1000",
        "--message-size",
        "200",
        "--json",
    ]);
    assert_eq!(v["mode"], "consume");
    check_result(&v, 1000);
    check_envelope(&v);

    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(&a, v.to_string()).unwrap();
    let mut faster = v.clone();
    faster["msgs_per_sec"] = Value::from(v["msgs_per_sec"].as_f64().unwrap() * 2.0);
    std::fs::write(&b, faster.to_string()).unwrap();
    let out = bench(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("msgs_per_sec"), "{text}");
    assert!(text.contains("(+100.0%)"), "{text}");
}

#[test]
fn usage_errors_exit_2() {
    let out = bench(&["produce", "--acks", "maybe"]);
    assert_eq!(out.status.code(), Some(2));
    let out = bench(&["compare"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn html_report_with_svg_charts() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let v = json(&[
        "produce",
        "--embedded",
        "--messages",
        "1500",
        "--rate",
        "1000",
        "--message-size",
        "100",
        "--report",
        report.to_str().unwrap(),
        "--json",
    ]);
    check_result(&v, 1500);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for id in ["throughput", "latency", "spectrum"] {
        assert!(html.contains(&format!("<figure id=\"{id}\">\n<svg")), "chart {id}");
    }
    assert!(!html.contains("chart unavailable"));

    // It must render in headless Chromium (Debian `chromium`) where that is installed.
    let Some(chromium) = chromium::find() else {
        eprintln!("chromium not installed: skipping the rendering check");
        return;
    };
    let dom = chromium::run_headless(&chromium, &["--dump-dom"], &format!("file://{}", report.display()));
    assert_eq!(dom.matches("<svg").count(), 3, "three SVG charts in the rendered DOM");
    assert!(dom.contains("Throughput per second"), "{dom}");
}
