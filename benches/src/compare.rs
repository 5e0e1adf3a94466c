//! `compare FILE...`: saved `--json` results side by side, with each one's difference from the
//! first in %.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

/// (label, JSON pointer) of each row.
const ROWS: &[(&str, &str)] = &[
    ("mode", "/mode"),
    ("messages", "/messages"),
    ("elapsed_s", "/elapsed_s"),
    ("msgs_per_sec", "/msgs_per_sec"),
    ("mb_per_sec", "/mb_per_sec"),
    ("p50 ms", "/latency_ms/p50"),
    ("p90 ms", "/latency_ms/p90"),
    ("p99 ms", "/latency_ms/p99"),
    ("p99.9 ms", "/latency_ms/p999"),
    ("max ms", "/latency_ms/max"),
    ("errors", "/errors"),
    ("violations", "/verify/violations"),
    ("message_size", "/config/message_size"),
    ("producers", "/config/producers"),
    ("consumers", "/config/consumers"),
    ("partitions", "/config/partitions"),
    ("rate", "/config/rate"),
    ("acks", "/config/acks"),
    ("idempotence", "/config/idempotence"),
    ("compression", "/config/compression"),
    ("version", "/version"),
];

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(u) => u.to_string(),
            None => format!("{:.3}", n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(v) => v.to_string(),
    }
}

/// The difference of `v` from `base` in %, if both are numbers and `base` is not zero.
fn diff(base: Option<&Value>, v: Option<&Value>) -> Option<String> {
    let (b, x) = (base?.as_f64()?, v?.as_f64()?);
    if b == 0.0 {
        return (x != 0.0).then(|| "(new)".to_owned());
    }
    Some(format!("({:+.1}%)", (x - b) / b * 100.0))
}

/// Builds the table as lines.
pub fn table(results: &[(String, Value)]) -> Vec<String> {
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("metric".to_owned())
            .chain(results.iter().map(|(name, _)| name.clone()))
            .collect(),
    ];
    for (label, ptr) in ROWS {
        let base = results.first().and_then(|(_, v)| v.pointer(ptr));
        let mut row = vec![(*label).to_owned()];
        for (i, (_, v)) in results.iter().enumerate() {
            let x = v.pointer(ptr);
            let mut c = cell(x);
            if i > 0
                && let Some(d) = diff(base, x)
            {
                c = format!("{c} {d}");
            }
            row.push(c);
        }
        rows.push(row);
    }
    let cols = results.len() + 1;
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(c, s)| {
                    if c == 0 {
                        format!("{s:<w$}", w = widths[c])
                    } else {
                        format!("{s:>w$}", w = widths[c])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

pub fn run(files: &[PathBuf]) -> Result<()> {
    let mut results = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        // The last non-empty line holds the JSON object (earlier lines may be progress output).
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or(&text);
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a strata-bench --json result", f.display()))?;
        let name = f
            .file_name()
            .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned());
        results.push((name, v));
    }
    for line in table(&results) {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_in_percent() {
        let a = serde_json::json!({"msgs_per_sec": 100.0, "latency_ms": {"p99": 2.0}, "errors": 0});
        let b = serde_json::json!({"msgs_per_sec": 150.0, "latency_ms": {"p99": 1.0}, "errors": 0});
        let t = table(&[("a".into(), a), ("b".into(), b)]).join("\n");
        assert!(t.contains("(+50.0%)"), "{t}");
        assert!(t.contains("(-50.0%)"), "{t}");
    }
}
