//! The admin client against a fake broker.

mod common;

use common::{FakeBroker, NODE_ID};
use strata_client::protocol::ErrorCode;
use strata_client::protocol::api::ApiKey;
use strata_client::{Client, ClientConfig, Error, NewTopic};

async fn admin() -> (FakeBroker, strata_client::Admin) {
    let broker = FakeBroker::start().await;
    let client = Client::connect(ClientConfig::new(&broker.bootstrap())).await.unwrap();
    (broker, client.admin())
}

#[tokio::test]
async fn create_list_describe_delete() {
    let (broker, admin) = admin().await;
    admin
        .create_topic(NewTopic::new("orders", 3, 1).config("retention.ms", "1000"))
        .await
        .unwrap();
    admin.create_topic(NewTopic::new("audit", 1, 1)).await.unwrap();
    let listing = admin.list_topics().await.unwrap();
    let names: Vec<(&str, usize)> = listing.iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    assert_eq!(names, [("audit", 1), ("orders", 3)]);

    let described = admin.describe_topics(&["orders"]).await.unwrap();
    let orders = &described[0];
    assert_eq!(orders.partition_count(), 3);
    assert_eq!(orders.configs.get("retention.ms").map(String::as_str), Some("1000"));
    let p = &orders.partitions[2];
    assert_eq!((p.partition, p.leader, p.high_watermark), (2, Some(NODE_ID), 0));
    assert_eq!(p.replicas, [NODE_ID]);
    assert_eq!(p.in_sync, [NODE_ID]);
    let json = serde_json::to_value(orders).unwrap();
    assert_eq!(json["partitions"][0]["error"], "NONE");
    assert_eq!(json["configs"]["retention.ms"], "1000");

    assert_eq!(admin.describe_topics(&[]).await.unwrap().len(), 2, "all topics");
    admin.delete_topic("orders").await.unwrap();
    assert!(matches!(admin.describe_topics(&["orders"]).await, Err(Error::UnknownTopic(t)) if t == "orders"));
    assert_eq!(broker.count(ApiKey::CreateTopics), 2);
}

#[tokio::test]
async fn per_topic_errors_carry_the_broker_code() {
    let (_broker, admin) = admin().await;
    admin.create_topic(NewTopic::new("dup", 1, 1)).await.unwrap();
    let r = admin.create_topic(NewTopic::new("dup", 1, 1)).await;
    let Err(Error::Topic { topic, code, message }) = r else {
        panic!("{r:?}")
    };
    assert_eq!((topic.as_str(), code), ("dup", ErrorCode::TopicAlreadyExists));
    assert!(message.is_some());

    let results = admin
        .create_topics(
            vec![
                NewTopic::new("zero", 0, 1),
                NewTopic::new("ok", 1, 1),
                NewTopic::new("rf", 1, 3),
            ],
            true,
        )
        .await
        .unwrap();
    let codes: Vec<(&str, Option<ErrorCode>)> = results
        .iter()
        .map(|(n, r)| (n.as_str(), r.as_ref().err().and_then(Error::code)))
        .collect();
    assert_eq!(
        codes,
        [
            ("zero", Some(ErrorCode::InvalidPartitions)),
            ("ok", None),
            ("rf", Some(ErrorCode::InvalidReplicationFactor)),
        ]
    );
    assert!(
        admin.describe_topics(&["ok"]).await.is_err(),
        "validate_only creates nothing"
    );
    let r = admin.delete_topic("never-existed").await;
    assert!(
        matches!(&r, Err(e) if e.code() == Some(ErrorCode::UnknownTopicOrPartition)),
        "{r:?}"
    );
}

#[tokio::test]
async fn cluster_and_broker_info() {
    let (broker, admin) = admin().await;
    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.cluster_id.as_deref(), Some("fake-cluster"));
    assert_eq!(cluster.controller_id, Some(NODE_ID));
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].addr, broker.bootstrap());
    let apis = admin.broker_api_versions(NODE_ID).await.unwrap();
    assert!(apis.iter().any(|a| a.name == Some("fetch") && a.max_version == 1));
    assert!(serde_json::to_string(&cluster).unwrap().contains("fake-cluster"));
}
