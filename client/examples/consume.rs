//! Reads a topic from the beginning and prints each record, until `COUNT` records (or Ctrl-C).
//!
//! ```text
//! cargo run -p strata-client --example consume -- [BOOTSTRAP] [TOPIC] [COUNT]
//! ```
//!
//! Defaults: `127.0.0.1:9700`, `events`, unlimited.

use futures::StreamExt;
use strata_client::{Client, ClientConfig, ConsumerConfig, Seek};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9700".to_owned());
    let topic = args.next().unwrap_or_else(|| "events".to_owned());
    let count: usize = args.next().map_or(Ok(usize::MAX), |s| s.parse())?;

    let client = Client::connect(ClientConfig::new(&bootstrap)).await?;
    let mut consumer = client.consumer(ConsumerConfig::default())?;
    let partitions = consumer.assign_topic(&topic).await?;
    consumer.seek_all(Seek::Earliest).await?;
    println!("reading {} partitions of {topic}", partitions.len());

    let mut records = consumer.stream().take(count);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            next = records.next() => match next {
                Some(record) => {
                    let r = record?;
                    let key = r.key.as_deref().map(String::from_utf8_lossy);
                    let value = r.value.as_deref().map(String::from_utf8_lossy);
                    println!("{}/{} @ {} ts={} key={key:?} value={value:?}", r.topic, r.partition, r.offset, r.timestamp);
                }
                None => break,
            },
            _ = &mut ctrl_c => break,
        }
    }
    Ok(())
}
