//! Produces numbered records to a topic and prints where each landed.
//!
//! ```text
//! cargo run -p strata-client --example produce -- [BOOTSTRAP] [TOPIC] [COUNT]
//! ```
//!
//! Defaults: `127.0.0.1:9700`, `events`, 10. The topic must exist (see the `admin` example).

use strata_client::{Client, ClientConfig, Compression, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9700".to_owned());
    let topic = args.next().unwrap_or_else(|| "events".to_owned());
    let count: usize = args.next().map_or(Ok(10), |s| s.parse())?;

    let client = Client::connect(ClientConfig::new(&bootstrap)).await?;
    let producer = client.producer(ProducerConfig {
        compression: Compression::Lz4,
        ..ProducerConfig::default()
    })?;

    // Enqueue everything first (batched and pipelined), then collect the acknowledgements.
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let record = ProducerRecord::new(topic.as_str(), format!("record {i}"))
            .key(format!("key-{}", i % 4))
            .header("source", "produce-example");
        deliveries.push(producer.enqueue(record).await?);
    }
    for d in deliveries {
        let meta = d.await?;
        let offset = meta.offset.map_or_else(|| "-".to_owned(), |o| o.to_string());
        println!("{}/{} @ {offset}", meta.topic, meta.partition);
    }
    producer.close().await;
    Ok(())
}
