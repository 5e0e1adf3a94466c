//! A cluster of real broker processes for the multi-broker suites (cluster, chaos).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::api::*;
use strata_testkit::{BrokerProcess, free_port};

use super::{BROKER, Client};

/// A cluster of `n` brokers, each in its own directory, all voters.
pub struct Cluster {
    pub dirs: Vec<tempfile::TempDir>,
    pub addrs: Vec<SocketAddr>,
    pub voters: String,
    pub brokers: Vec<Option<BrokerProcess>>,
}

impl Cluster {
    pub fn start(n: usize) -> Self {
        let addrs: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let voters = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}@{a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut c = Cluster {
            dirs,
            addrs,
            voters,
            brokers: (0..n).map(|_| None).collect(),
        };
        let starting: Vec<_> = (0..n).map(|i| c.launch(i)).collect();
        for (i, s) in starting.into_iter().enumerate() {
            c.brokers[i] = Some(s.wait());
        }
        c
    }

    pub fn launch(&self, i: usize) -> strata_testkit::Starting {
        let id = (i + 1).to_string();
        BrokerProcess::launch(
            BROKER,
            self.dirs[i].path(),
            self.addrs[i],
            &["--node-id", &id, "--voters", &self.voters],
        )
    }

    pub fn restart(&mut self, i: usize) {
        self.brokers[i] = Some(self.launch(i).wait());
    }

    pub fn kill9(&mut self, i: usize) {
        self.brokers[i].take().expect("running").kill9();
    }

    pub fn addr_of(&self, node: i32) -> SocketAddr {
        self.addrs[node as usize - 1]
    }

    pub fn logs(&self) -> String {
        self.brokers
            .iter()
            .flatten()
            .map(|b| b.logs())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    }
}

pub async fn create(c: &mut Client, name: &str, partitions: i32, rf: i16) -> TopicResult {
    let Response::CreateTopics(r) = c
        .call(Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: rf,
                configs: vec![],
            }],
            timeout_ms: 10_000,
            validate_only: false,
        }))
        .await
        .unwrap()
    else {
        panic!("not a create response")
    };
    r.topics.into_iter().next().unwrap()
}

/// Polls metadata through `c` until `ok` accepts the topic's, for up to 20 s.
pub async fn wait_metadata(
    c: &mut Client,
    topic: &str,
    what: &str,
    ok: impl Fn(&TopicMetadata) -> bool,
) -> TopicMetadata {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = c.metadata(topic).await;
        if ok(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last metadata: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn all_led(t: &TopicMetadata) -> bool {
    t.error == ErrorCode::None && !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader > 0)
}
