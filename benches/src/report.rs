//! `--report FILE.html`: one self-contained HTML page with inline SVG charts (plotters):
//! throughput per second, latency per second, and the latency percentile spectrum.

use plotters::prelude::*;

use crate::stats::{Sample, SideResult, VerifyResult};

/// What the report shows.
pub struct Report<'a> {
    pub title: String,
    pub result: &'a SideResult,
    pub verify: Option<&'a VerifyResult>,
    pub config: serde_json::Value,
    pub machine: serde_json::Value,
    pub samples: &'a [Sample],
    /// (percentile, ms).
    pub spectrum: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (860, 320);

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn upper(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    if m > 0.0 { m * 1.1 } else { 1.0 }
}

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A line chart as an SVG string.
fn line_chart(
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series<'_>],
    x_label: &dyn Fn(&f64) -> String,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let xs = || series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
        let x_min = xs().fold(f64::INFINITY, f64::min);
        let x_min = if x_min.is_finite() { x_min } else { 0.0 };
        let x_max = upper(xs()).max(x_min + 1.0);
        // Headroom above the highest point for the legend.
        let y_max = upper(series.iter().flat_map(|s| s.2.iter().map(|p| p.1))) * 1.25;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_min..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(x_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, color, points) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// "Nines" scale for the spectrum: percentile p → -log10(1 - p/100), so 90 → 1, 99 → 2, …
fn nines(p: f64) -> f64 {
    let rest = (1.0 - p / 100.0).max(1e-6);
    -rest.log10()
}

fn charts(r: &Report<'_>) -> Vec<(String, Result<String, String>)> {
    let seconds = |x: &f64| format!("{x:.1}");
    let throughput = line_chart(
        "Throughput per second",
        "seconds since start",
        "records/s",
        &[(
            "records/s",
            BLUE,
            r.samples.iter().map(|s| (s.t_s, s.records_per_s)).collect(),
        )],
        &seconds,
    );
    let latency = line_chart(
        "Latency per second",
        "seconds since start",
        "ms",
        &[
            (
                "p50",
                GREEN,
                r.samples.iter().map(|s| (s.t_s, s.latency_ms.p50)).collect(),
            ),
            (
                "p99",
                BLUE,
                r.samples.iter().map(|s| (s.t_s, s.latency_ms.p99)).collect(),
            ),
            (
                "max",
                RED,
                r.samples.iter().map(|s| (s.t_s, s.latency_ms.max)).collect(),
            ),
        ],
        &seconds,
    );
    let spectrum = line_chart(
        "Latency percentile spectrum",
        "percentile",
        "ms",
        &[(
            "latency",
            MAGENTA,
            r.spectrum.iter().map(|(p, ms)| (nines(*p), *ms)).collect(),
        )],
        &|x: &f64| format!("{}%", 100.0 - 100.0 * 10f64.powf(-x)),
    );
    vec![
        ("throughput".to_owned(), throughput),
        ("latency".to_owned(), latency),
        ("spectrum".to_owned(), spectrum),
    ]
}

/// The whole page.
pub fn html(r: &Report<'_>) -> String {
    let res = r.result;
    let l = res.latency_ms;
    let mut rows = vec![
        ("records", res.messages.to_string()),
        ("bytes", res.bytes.to_string()),
        ("elapsed", format!("{:.3} s", res.elapsed_s)),
        (
            "throughput",
            format!("{:.0} records/s, {:.2} MB/s", res.msgs_per_sec, res.mb_per_sec),
        ),
        (
            "latency (ms)",
            format!(
                "p50 {:.3} · p90 {:.3} · p99 {:.3} · p99.9 {:.3} · max {:.3}",
                l.p50, l.p90, l.p99, l.p999, l.max
            ),
        ),
        ("errors", res.errors.to_string()),
    ];
    if let Some(v) = r.verify {
        rows.push((
            "verify",
            format!(
                "lost {} · duplicates {} · reordered {} · corrupt {}",
                v.lost, v.duplicates, v.reordered, v.corrupt
            ),
        ));
    }
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    out.push_str(&format!("<title>{}</title>\n", escape(&r.title)));
    out.push_str(
        "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
         td,th{padding:4px 12px;border-bottom:1px solid #ddd;text-align:left}\
         pre{background:#f6f6f6;padding:1em;overflow:auto}figure{margin:1.5em 0}</style>\n</head><body>\n",
    );
    out.push_str(&format!("<h1>{}</h1>\n<table id=\"summary\">\n", escape(&r.title)));
    for (k, v) in &rows {
        out.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", escape(k), escape(v)));
    }
    out.push_str("</table>\n");
    for (id, chart) in charts(r) {
        out.push_str(&format!("<figure id=\"{id}\">\n"));
        match chart {
            Ok(svg) => out.push_str(&svg),
            Err(e) => out.push_str(&format!("<p>chart unavailable: {}</p>", escape(&e))),
        }
        out.push_str("\n</figure>\n");
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    out.push_str(&format!(
        "<h2>Configuration</h2>\n<pre>{}</pre>\n<h2>Machine</h2>\n<pre>{}</pre>\n<p>strata-bench {}</p>\n</body></html>\n",
        escape(&pretty(&r.config)),
        escape(&pretty(&r.machine)),
        env!("CARGO_PKG_VERSION")
    ));
    out
}
