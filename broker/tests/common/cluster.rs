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
    /// The address everyone (peers and clients) uses for each broker: its listener, or the
    /// proxy in front of it.
    pub addrs: Vec<SocketAddr>,
    /// Each broker's own listener.
    pub listen: Vec<SocketAddr>,
    pub voters: String,
    pub brokers: Vec<Option<BrokerProcess>>,
    /// The proxies in front of the brokers (empty without).
    pub proxies: Vec<super::proxy::Proxy>,
}

impl Cluster {
    pub fn start(n: usize) -> Self {
        let listen: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        Self::start_with(listen.clone(), listen, Vec::new())
    }

    /// A cluster whose brokers are reached, by each other and by clients, only through a TCP
    /// proxy each (which a test can cut or slow down).
    pub async fn start_proxied(n: usize) -> Self {
        let listen: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let mut proxies = Vec::new();
        for l in &listen {
            proxies.push(super::proxy::Proxy::start(*l).await);
        }
        let addrs = proxies.iter().map(|p| p.addr).collect();
        tokio::task::block_in_place(|| Self::start_with(addrs, listen, proxies))
    }

    fn start_with(addrs: Vec<SocketAddr>, listen: Vec<SocketAddr>, proxies: Vec<super::proxy::Proxy>) -> Self {
        let n = addrs.len();
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
            listen,
            voters,
            brokers: (0..n).map(|_| None).collect(),
            proxies,
        };
        let starting: Vec<_> = (0..n).map(|i| c.launch(i)).collect();
        for (i, s) in starting.into_iter().enumerate() {
            c.brokers[i] = Some(s.wait());
        }
        c
    }

    pub fn launch(&self, i: usize) -> strata_testkit::Starting {
        let id = (i + 1).to_string();
        let advertised = self.addrs[i].to_string();
        BrokerProcess::launch(
            BROKER,
            self.dirs[i].path(),
            self.listen[i],
            &[
                "--node-id",
                &id,
                "--voters",
                &self.voters,
                "--advertised-address",
                &advertised,
            ],
        )
    }

    pub fn restart(&mut self, i: usize) {
        self.brokers[i] = Some(self.launch(i).wait());
    }

    pub fn kill9(&mut self, i: usize) {
        self.brokers[i].take().expect("running").kill9();
    }

    /// A `strata-client` bootstrapped from every broker.
    pub async fn client(&self) -> strata_client::Client {
        let bootstrap = self.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
        strata_client::Client::connect(strata_client::ClientConfig::new(&bootstrap))
            .await
            .unwrap()
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

/// Reads the topic from the start: records `0..total`, each once, in order per partition.
pub async fn read_back(c: &strata_client::Client, topic: &str, partitions: u32, total: usize) {
    let mut consumer = c.consumer(strata_client::ConsumerConfig::default()).unwrap();
    consumer.assign_topic(topic).await.unwrap();
    consumer.seek_all(strata_client::Seek::Earliest).await.unwrap();
    let mut stream = consumer.stream();
    let mut seen = std::collections::HashSet::new();
    let mut last = vec![None::<u32>; partitions as usize];
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < total {
        assert!(Instant::now() < deadline, "only {} of {total} read back", seen.len());
        let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(&mut stream)).await
        else {
            panic!("the consumer stalled after {} records", seen.len());
        };
        let r = r.unwrap();
        let n: u32 = std::str::from_utf8(r.value.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            n % partitions,
            r.partition as u32,
            "record {n} in partition {}",
            r.partition
        );
        assert!(
            (n as usize) < total && seen.insert(n),
            "record {n} unexpected or read twice"
        );
        let p = r.partition as usize;
        assert!(
            last[p].is_none_or(|prev| prev < n),
            "partition {p}: {n} after {:?}",
            last[p]
        );
        last[p] = Some(n);
    }
}
