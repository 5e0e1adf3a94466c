//! Creates a topic if it is missing, then describes the cluster and every topic.
//!
//! ```text
//! cargo run -p strata-client --example admin -- [BOOTSTRAP] [TOPIC] [PARTITIONS]
//! ```
//!
//! Defaults: `127.0.0.1:9700`, `events`, 3.

use strata_client::protocol::ErrorCode;
use strata_client::{Client, ClientConfig, NewTopic};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9700".to_owned());
    let topic = args.next().unwrap_or_else(|| "events".to_owned());
    let partitions: i32 = args.next().map_or(Ok(3), |s| s.parse())?;

    let client = Client::connect(ClientConfig::new(&bootstrap)).await?;
    let admin = client.admin();
    match admin.create_topic(NewTopic::new(topic.as_str(), partitions, 1)).await {
        Ok(()) => println!("created {topic}"),
        Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => println!("{topic} exists"),
        Err(e) => return Err(e.into()),
    }

    let cluster = admin.describe_cluster().await?;
    println!(
        "cluster {} controller {:?}",
        cluster.cluster_id.as_deref().unwrap_or("?"),
        cluster.controller_id
    );
    for b in &cluster.brokers {
        println!("  broker {} at {}", b.node_id, b.addr);
    }
    for t in admin.describe_topics(&[]).await? {
        println!("topic {} ({} partitions) {:?}", t.name, t.partition_count(), t.configs);
        for p in &t.partitions {
            println!(
                "  {} leader={:?} replicas={:?} isr={:?} log_start={} hw={}",
                p.partition, p.leader, p.replicas, p.in_sync, p.log_start_offset, p.high_watermark
            );
        }
    }
    Ok(())
}
