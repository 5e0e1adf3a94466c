//! The console page at `GET /`, rendered by a real headless Chromium (Debian `chromium`) against a
//! real `strata-broker`: the DOM shows the broker, every topic and each partition with its leader
//! and high watermark, and a screenshot renders. Skipped, saying so, where Chromium is absent.
//! (Escaping of names is unit-tested in `broker/src/http/console.rs`: topic names cannot carry
//! markup, so no broker can be made to serve a hostile one.)

use std::net::SocketAddr;
use std::time::Duration;

use strata_protocol::ErrorCode;
use strata_testkit::{BrokerProcess, chromium, http, wait};

mod common;
use common::*;

/// The browser window, and so the screenshot's size.
const WINDOW_SIZE: &str = "--window-size=1280,900";

/// The page at `path`, which must be served with status 200.
fn http_get_body(addr: SocketAddr, path: &str) -> String {
    let r = http::get(addr, path).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// The `<tr>` rows of the table with id `id` in `dom`, each as its cells' text.
fn table_rows(dom: &str, id: &str) -> Vec<Vec<String>> {
    let start = dom
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id} in {dom}"));
    let table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()];
                    text.to_string()
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_renders_brokers_topics_and_partitions_in_chromium() {
    let Some(chromium) = chromium::find() else {
        eprintln!("chromium not installed: skipping the console rendering check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("alpha.orders", 2, &[]).await.error, ErrorCode::None);
    assert_eq!(c.create("beta_clicks-v2", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("alpha.orders").await;
    c.wait_for_leaders("beta_clicks-v2").await;
    for (topic, partition, count) in [("alpha.orders", 0, 3), ("alpha.orders", 1, 1), ("beta_clicks-v2", 0, 7)] {
        for i in 0..count {
            let r = c.produce(topic, partition, batch(&[&format!("v{i}")], 0), -1).await;
            assert_eq!(r.error, ErrorCode::None, "{r:?}");
        }
    }
    // The high watermark is published to the HTTP side once committed; wait until the served page
    // shows it (bounded) so the browser's copy is deterministic.
    let http_addr = broker.http;
    wait::until_async(
        Duration::from_secs(30),
        Duration::from_millis(20),
        async || {
            let page = tokio::task::spawn_blocking(move || http_get_body(http_addr, "/"))
                .await
                .unwrap();
            if page.contains("<td class=\"num hw\">7</td>") && page.contains("<td class=\"num hw\">3</td>") {
                Ok(())
            } else {
                Err(page)
            }
        },
        |page| format!("high watermarks never shown: {page}"),
    )
    .await;

    let url = format!("http://{}/", broker.http);
    let (chromium2, url2) = (chromium.clone(), url.clone());
    let dom =
        tokio::task::spawn_blocking(move || chromium::run_headless(&chromium2, &[WINDOW_SIZE, "--dump-dom"], &url2))
            .await
            .unwrap();
    assert!(dom.contains("<title>Strata console</title>"), "{dom}");
    assert!(dom.contains("id=\"readiness\">ready</b>"), "{dom}");

    let brokers = table_rows(&dom, "brokers");
    assert_eq!(brokers.len(), 1, "{dom}");
    assert_eq!(brokers[0][0], "1");
    assert_eq!(brokers[0][1], broker.addr.to_string());
    assert_eq!(brokers[0][2], broker.http.to_string());
    assert_eq!(brokers[0][3], "controller (this broker)");

    assert_eq!(
        table_rows(&dom, "topics"),
        [["alpha.orders", "2", "1"], ["beta_clicks-v2", "1", "1"]],
        "{dom}"
    );
    // topic, partition, leader, log start, high watermark, size, status
    let partitions = table_rows(&dom, "partitions");
    let without_size: Vec<Vec<&str>> = partitions
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .filter(|(i, _)| *i != 5)
                .map(|(_, c)| c.as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        without_size,
        [
            ["alpha.orders", "0", "1", "0", "3", "online"],
            ["alpha.orders", "1", "1", "0", "1", "online"],
            ["beta_clicks-v2", "0", "1", "0", "7", "online"],
        ],
        "{dom}"
    );
    for r in &partitions {
        assert!(r[5].ends_with(" B") || r[5].ends_with(" KiB"), "a size: {r:?}");
    }
    assert!(dom.contains("No consumer group is coordinated by this broker"), "{dom}");
    // Nothing loaded from elsewhere, nothing scripted.
    assert!(
        !dom.contains("<script") && !dom.contains("<link") && !dom.contains("src="),
        "{dom}"
    );

    // And it paints: a real PNG of the requested size with more than a blank page in it.
    let shots = tempfile::tempdir().unwrap();
    let png = shots.path().join("console.png");
    let arg = format!("--screenshot={}", png.display());
    tokio::task::spawn_blocking(move || chromium::run_headless(&chromium, &[WINDOW_SIZE, &arg], &url))
        .await
        .unwrap();
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (1280, 900), "IHDR width and height");
    assert!(
        bytes.len() > 10_000,
        "a rendered page, not a blank one: {} bytes",
        bytes.len()
    );
    assert_eq!(broker.sigterm_and_wait().code(), Some(0));
}
