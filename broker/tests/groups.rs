//! Consumer groups against real broker processes: the protocol's refusals, state surviving a
//! restart, scale-out and scale-in under continuous produce, a consumer killed with `kill -9`,
//! and the coordinator's broker killed with `kill -9`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{BROKER, Client as Raw};
use strata_client::{
    Client, ClientConfig, ConsumerConfig, NewTopic, OffsetReset, ProducerConfig, ProducerRecord, RebalanceEvent,
};
use strata_protocol::ErrorCode;
use strata_protocol::api::consumer_group_heartbeat::{JOIN_EPOCH, LEAVE_EPOCH};
use strata_protocol::api::*;
use strata_testkit::{BrokerProcess, LoggedChild};
use tokio_util::sync::CancellationToken;

const GROUP_TIMEOUT: Duration = Duration::from_secs(45);

/// The `strata` CLI next to this test's target directory, built if missing.
fn strata_cli() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current test executable");
        let dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps");
        let bin = dir.join(format!("strata{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "strata-client", "--bin", "strata"])
                .current_dir(&workspace)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the strata CLI failed: {status}");
        }
        bin
    })
}

async fn call(raw: &mut Raw, body: Request) -> Response {
    raw.call(body).await.expect("a response")
}

async fn heartbeat(raw: &mut Raw, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    // The coordinator may still be loading: retry those.
    for _ in 0..200 {
        let Response::ConsumerGroupHeartbeat(r) = call(raw, Request::ConsumerGroupHeartbeat(req.clone())).await else {
            panic!("wrong response")
        };
        if !retriable(r.error) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the coordinator never became available");
}

fn join(group: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: String::new(),
        member_epoch: JOIN_EPOCH,
        instance_id: None,
        rebalance_timeout_ms: -1,
        session_timeout_ms: -1,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: None,
        owned_partitions: None,
    }
}

fn commit(group: &str, member: &str, epoch: i32, topic: &str, partition: i32, offset: i64) -> Request {
    Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: epoch,
        topics: vec![TopicData {
            name: topic.into(),
            partitions: vec![OffsetCommitPartition {
                partition,
                committed_offset: offset,
                metadata: None,
            }],
        }],
    })
}

/// Whether a coordinator error asks the client to retry (it is loading or moving).
fn retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::CoordinatorLoadInProgress | ErrorCode::CoordinatorNotAvailable
    )
}

/// As [`call`], repeated while a group in the answer is on a coordinator still loading.
async fn call_settled(raw: &mut Raw, body: Request) -> Response {
    for _ in 0..200 {
        let r = call(raw, body.clone()).await;
        let loading = match &r {
            Response::DescribeGroups(d) => d.groups.iter().any(|g| retriable(g.error)),
            Response::DeleteGroups(d) => d.results.iter().any(|g| retriable(g.error)),
            _ => false,
        };
        if !loading {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the coordinator never became available");
}

async fn commit_error(raw: &mut Raw, req: Request) -> ErrorCode {
    for _ in 0..200 {
        let Response::OffsetCommit(r) = call(raw, req.clone()).await else {
            panic!("wrong response")
        };
        let code = r.topics[0].partitions[0].error;
        if !retriable(code) {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the coordinator never became available");
}

async fn fetch_committed(raw: &mut Raw, group: &str, topic: &str, partition: i32) -> i64 {
    for _ in 0..200 {
        let Response::OffsetFetch(r) = call(
            raw,
            Request::OffsetFetch(OffsetFetchRequest {
                group_id: group.into(),
                topics: Some(vec![OffsetFetchTopic {
                    name: topic.into(),
                    partitions: vec![partition],
                }]),
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        if retriable(r.error) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(r.error, ErrorCode::None, "{:?}", r.message);
        return r.topics[0].partitions[0].committed_offset;
    }
    panic!("the coordinator never became available");
}

/// A group as a broker's HTTP endpoint exports it: its entry in `/api/v1/groups`, and the
/// `/metrics` text.
async fn group_as_exported(http: std::net::SocketAddr, group: &str) -> Result<(serde_json::Value, String), String> {
    let api = tokio::task::spawn_blocking(move || strata_testkit::http::get(http, "/api/v1/groups"))
        .await
        .unwrap()
        .map_err(|e| e.to_string())?
        .json();
    let g = api["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["group"] == group))
        .ok_or_else(|| api.to_string())?
        .clone();
    let metrics = tokio::task::spawn_blocking(move || strata_testkit::http::get(http, "/metrics"))
        .await
        .unwrap()
        .map_err(|e| e.to_string())?
        .body;
    Ok((g, metrics))
}

async fn find_coordinator(raw: &mut Raw, group: &str) -> FindCoordinatorResponse {
    for _ in 0..200 {
        let Response::FindCoordinator(r) = call(
            raw,
            Request::FindCoordinator(FindCoordinatorRequest {
                key: group.into(),
                key_type: 0,
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        if r.error != ErrorCode::CoordinatorNotAvailable {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no coordinator for {group}");
}

/// The protocol's refusals, then the group's state and offsets surviving a broker restart, and
/// a static member coming back without a rebalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_restart_and_static_membership() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut raw = Raw::connect(broker.addr).await;
    assert_eq!(raw.create("t", 4, &[]).await.error, ErrorCode::None);
    raw.wait_for_leaders("t").await;

    // FindCoordinator: bad keys; a good one creates __consumer_offsets and names this broker.
    let Response::FindCoordinator(r) = call(
        &mut raw,
        Request::FindCoordinator(FindCoordinatorRequest {
            key: String::new(),
            key_type: 0,
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.error, ErrorCode::InvalidGroupId);
    let Response::FindCoordinator(r) = call(
        &mut raw,
        Request::FindCoordinator(FindCoordinatorRequest {
            key: "g".into(),
            key_type: 1,
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.error, ErrorCode::InvalidRequest);
    let r = find_coordinator(&mut raw, "g").await;
    assert_eq!((r.error, r.node_id), (ErrorCode::None, 1), "{:?}", r.message);

    // Heartbeats: unknown member, bad subscriptions, bad session timeout.
    let mut hb = join("g", &["t"]);
    hb.member_epoch = 3;
    hb.member_id = "nobody".into();
    assert_eq!(heartbeat(&mut raw, hb).await.error, ErrorCode::UnknownMemberId);
    // An id near the string limit, quoted in the error message: the message is cut, not the
    // connection.
    let mut hb = join("g", &["t"]);
    hb.member_epoch = 3;
    hb.member_id = "\u{1}".repeat(30_000);
    let r = heartbeat(&mut raw, hb).await;
    assert_eq!(r.error, ErrorCode::UnknownMemberId);
    assert!(r.message.is_some_and(|m| m.len() <= i16::MAX as usize));
    let mut hb = join("g", &[]);
    hb.subscribed_topic_names = None;
    assert_eq!(heartbeat(&mut raw, hb).await.error, ErrorCode::InvalidRequest);
    let mut hb = join("g", &[]);
    hb.subscribed_topic_regex = Some("(unclosed".into());
    let r = heartbeat(&mut raw, hb).await;
    assert_eq!(r.error, ErrorCode::InvalidRequest);
    assert!(r.message.unwrap().contains("regex"));
    let mut hb = join("g", &["t"]);
    hb.session_timeout_ms = 10;
    assert_eq!(heartbeat(&mut raw, hb).await.error, ErrorCode::InvalidSessionTimeout);

    // A member joins and gets all four partitions; a short session so it can time out below.
    let mut hb = join("g", &["t"]);
    hb.session_timeout_ms = 1500;
    let a = heartbeat(&mut raw, hb).await;
    assert_eq!(a.error, ErrorCode::None, "{:?}", a.message);
    let assigned: usize = a.assignment.as_ref().unwrap().iter().map(|t| t.partitions.len()).sum();
    assert_eq!(assigned, 4);
    let epoch = a.member_epoch;

    // Commits: accepted at the member's epoch; fenced at a wrong one; unknown partitions and
    // topics refused; a wrong epoch on a heartbeat fenced too.
    assert_eq!(
        commit_error(&mut raw, commit("g", &a.member_id, epoch, "t", 1, 7)).await,
        ErrorCode::None
    );
    assert_eq!(fetch_committed(&mut raw, "g", "t", 1).await, 7);
    assert_eq!(
        commit_error(&mut raw, commit("g", &a.member_id, epoch + 3, "t", 1, 9)).await,
        ErrorCode::StaleMemberEpoch
    );
    assert_eq!(
        commit_error(&mut raw, commit("g", &a.member_id, epoch, "t", 9, 1)).await,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        commit_error(&mut raw, commit("g", &a.member_id, epoch, "nope", 0, 1)).await,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        commit_error(&mut raw, commit("g", "someone-else", epoch, "t", 0, 1)).await,
        ErrorCode::UnknownMemberId
    );
    let mut hb = join("g", &["t"]);
    hb.member_id = a.member_id.clone();
    hb.member_epoch = epoch + 7;
    assert_eq!(heartbeat(&mut raw, hb).await.error, ErrorCode::FencedMemberEpoch);
    // From outside the group while it has a member: refused, with a reason.
    let Response::OffsetCommit(r) = call(&mut raw, commit("g", "", -1, "t", 0, 1)).await else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error, ErrorCode::NonEmptyGroup);
    assert!(r.message.unwrap().contains("active member"));
    let Response::DeleteGroups(r) = call_settled(
        &mut raw,
        Request::DeleteGroups(DeleteGroupsRequest {
            group_ids: vec!["g".into(), "never-seen".into()],
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error, ErrorCode::NonEmptyGroup);
    assert_eq!(r.results[1].error, ErrorCode::GroupIdNotFound);
    // The internal topic is the broker's alone.
    let p = raw.produce(OFFSETS, 0, common::batch(&["forged"], 0), -1).await;
    assert_eq!(p.error, ErrorCode::InvalidTopic);
    let Response::DeleteTopics(r) = call(
        &mut raw,
        Request::DeleteTopics(DeleteTopicsRequest {
            names: vec![OFFSETS.into()],
            timeout_ms: 5000,
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error, ErrorCode::InvalidTopic);

    // The member stops heartbeating: its session ends and a zombie commit is refused.
    strata_testkit::wait::until_async(
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || {
            let Response::DescribeGroups(d) = call_settled(
                &mut raw,
                Request::DescribeGroups(DescribeGroupsRequest {
                    group_ids: vec!["g".into()],
                }),
            )
            .await
            else {
                panic!()
            };
            match d.groups[0].members.len() {
                0 => Ok(()),
                n => Err(n),
            }
        },
        |n| format!("the silent member is still in the group ({n} members)"),
    )
    .await;
    assert_eq!(
        commit_error(&mut raw, commit("g", &a.member_id, epoch, "t", 1, 11)).await,
        ErrorCode::UnknownMemberId
    );
    assert_eq!(fetch_committed(&mut raw, "g", "t", 1).await, 7);
    // Now empty: an outside commit (reset-offsets) is accepted.
    assert_eq!(
        commit_error(&mut raw, commit("g", "", -1, "t", 2, 5)).await,
        ErrorCode::None
    );

    // A regex subscription covers the topics whose whole name matches, never internal ones.
    assert_eq!(raw.create("t2", 2, &[]).await.error, ErrorCode::None);
    raw.wait_for_leaders("t2").await;
    let mut hb = join("r", &[]);
    hb.subscribed_topic_names = None;
    hb.subscribed_topic_regex = Some("t.*|__consumer_offsets".into());
    let r = heartbeat(&mut raw, hb).await;
    assert_eq!(r.error, ErrorCode::None, "{:?}", r.message);
    let mut got: Vec<(String, usize)> = r
        .assignment
        .unwrap()
        .iter()
        .map(|t| (t.topic.clone(), t.partitions.len()))
        .collect();
    got.sort();
    assert_eq!(got, [("t".to_string(), 4), ("t2".to_string(), 2)]);
    let mut leave = join("r", &[]);
    leave.member_id = r.member_id;
    leave.member_epoch = LEAVE_EPOCH;
    assert_eq!(heartbeat(&mut raw, leave).await.error, ErrorCode::None);

    // A static member joins; the broker restarts; the group and offsets come back from the log,
    // and the member's instance rejoining gets the same partitions at the same group epoch.
    let mut hb = join("s", &["t"]);
    hb.instance_id = Some("inst-1".into());
    hb.session_timeout_ms = 60_000;
    let s1 = heartbeat(&mut raw, hb.clone()).await;
    assert_eq!(s1.error, ErrorCode::None, "{:?}", s1.message);
    let Response::DescribeGroups(before) = call_settled(
        &mut raw,
        Request::DescribeGroups(DescribeGroupsRequest {
            group_ids: vec!["s".into()],
        }),
    )
    .await
    else {
        panic!()
    };
    drop(raw);
    let status = broker.sigterm_and_wait();
    assert!(status.success(), "{status}");
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut raw = Raw::connect(broker.addr).await;
    find_coordinator(&mut raw, "s").await;
    let s2 = heartbeat(&mut raw, hb).await;
    assert_eq!(s2.error, ErrorCode::None, "{:?}", s2.message);
    assert_eq!(
        s2.assignment, s1.assignment,
        "the static member got its partitions back"
    );
    assert_eq!(s2.member_epoch, s1.member_epoch, "no rebalance");
    let Response::DescribeGroups(after) = call_settled(
        &mut raw,
        Request::DescribeGroups(DescribeGroupsRequest {
            group_ids: vec!["s".into(), "nope".into()],
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(after.groups[0].group_epoch, before.groups[0].group_epoch);
    assert_eq!(after.groups[0].members.len(), 1);
    assert_eq!(after.groups[0].members[0].client_host, "127.0.0.1");
    assert_eq!(after.groups[0].members[0].client_id, "test");
    assert_eq!(after.groups[1].error, ErrorCode::GroupIdNotFound);
    assert_eq!(fetch_committed(&mut raw, "g", "t", 1).await, 7);
    assert_eq!(fetch_committed(&mut raw, "g", "t", 2).await, 5);
    // Leaving, then deleting the group and its offsets.
    let mut leave = join("s", &["t"]);
    leave.member_id = s2.member_id.clone();
    leave.member_epoch = LEAVE_EPOCH;
    leave.subscribed_topic_names = None;
    assert_eq!(heartbeat(&mut raw, leave).await.error, ErrorCode::None);
    // Every group's shard loads after the restart; ListGroups lists the loaded ones.
    let l = strata_testkit::wait::until_async(
        Duration::from_secs(20),
        Duration::from_millis(50),
        async || match call(&mut raw, Request::ListGroups(ListGroupsRequest::default())).await {
            Response::ListGroups(l) if l.groups.len() == 3 => Ok(l),
            other => Err(format!("{other:?}")),
        },
        |e| format!("not every group listed: {e}"),
    )
    .await;
    let names: Vec<(&str, &str)> = l
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.state.as_str()))
        .collect();
    assert_eq!(names, [("g", "empty"), ("r", "empty"), ("s", "empty")]);
    let Response::DeleteGroups(r) = call_settled(
        &mut raw,
        Request::DeleteGroups(DeleteGroupsRequest {
            group_ids: vec!["g".into()],
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error, ErrorCode::None, "{:?}", r.results[0].message);
    assert_eq!(fetch_committed(&mut raw, "g", "t", 1).await, -1);
}

const OFFSETS: &str = "__consumer_offsets";

/// What the members of a test group saw.
#[derive(Default)]
struct Log {
    /// (member, partition, offset, value, when).
    consumed: Vec<(String, i32, u64, u64, Instant)>,
    /// (member, when, event).
    events: Vec<(String, Instant, RebalanceEvent)>,
}

/// One in-process group member: consumes until `stop`, then closes (commits and leaves).
fn spawn_member(
    bootstrap: String,
    topic: &'static str,
    name: String,
    log: Arc<Mutex<Log>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = Client::connect(ClientConfig {
            client_id: Some(name.clone()),
            ..ClientConfig::new(&bootstrap)
        })
        .await
        .unwrap();
        let mut c = client
            .consumer(ConsumerConfig {
                group_id: Some("scaling".into()),
                auto_offset_reset: OffsetReset::Earliest,
                session_timeout: Some(Duration::from_secs(10)),
                auto_commit_interval: Duration::from_millis(500),
                fetch_max_wait: Duration::from_millis(100),
                ..ConsumerConfig::default()
            })
            .unwrap();
        let events = log.clone();
        let me = name.clone();
        c.set_rebalance_listener(move |e| {
            events
                .lock()
                .unwrap()
                .events
                .push((me.clone(), Instant::now(), e.clone()));
        });
        c.subscribe([topic]).unwrap();
        while !stop.is_cancelled() {
            let records = c.poll(Duration::from_millis(200)).await.unwrap();
            let now = Instant::now();
            let mut l = log.lock().unwrap();
            for r in records {
                let n: u64 = std::str::from_utf8(r.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                l.consumed.push((name.clone(), r.partition, r.offset.0, n, now));
            }
        }
        c.close().await.unwrap();
    })
}

/// Each member's partitions, by client id, once the group is stable with `members` members
/// holding `partitions` partitions balanced (counts differ by at most one).
async fn wait_balanced(client: &Client, members: usize, partitions: usize) -> BTreeMap<String, BTreeSet<i32>> {
    let admin = client.admin();
    let mut last = String::new();
    let deadline = Instant::now() + GROUP_TIMEOUT;
    loop {
        if let Ok(d) = admin.describe_group("scaling").await {
            let owned: BTreeMap<String, BTreeSet<i32>> = d
                .members
                .iter()
                .map(|m| {
                    (
                        m.client_id.clone(),
                        m.assignment.iter().map(|tp| tp.partition).collect(),
                    )
                })
                .collect();
            let sizes: Vec<usize> = owned.values().map(BTreeSet::len).collect();
            let total: usize = sizes.iter().sum();
            if d.state == "stable"
                && owned.len() == members
                && total == partitions
                && sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1
            {
                return owned;
            }
            last = format!("{} {:?}", d.state, owned);
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle on {members} balanced members: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn owners(by_member: &BTreeMap<String, BTreeSet<i32>>) -> BTreeMap<i32, String> {
    by_member
        .iter()
        .flat_map(|(m, ps)| ps.iter().map(move |p| (*p, m.clone())))
        .collect()
}

/// Checks one scaling step: only partitions whose owner changed were revoked, and reports the
/// longest gap in consumption of each partition that stayed put.
fn check_step(
    log: &Log,
    step: &str,
    from: Instant,
    to: Instant,
    before: &BTreeMap<i32, String>,
    after: &BTreeMap<i32, String>,
) {
    let moved: BTreeSet<i32> = before
        .iter()
        .filter(|(p, m)| after.get(p) != Some(m))
        .map(|(p, _)| *p)
        .collect();
    for (member, at, e) in &log.events {
        if *at < from || *at > to {
            continue;
        }
        if let RebalanceEvent::Revoked(tps) | RebalanceEvent::Lost(tps) = e {
            for tp in tps {
                assert!(
                    moved.contains(&tp.partition),
                    "{step}: {member} gave up partition {} which did not move ({e:?})",
                    tp.partition
                );
            }
        }
    }
    let mut gaps = Vec::new();
    for p in before.keys().filter(|p| !moved.contains(p)) {
        let mut times: Vec<Instant> = log
            .consumed
            .iter()
            .filter(|(_, part, _, _, at)| part == p && *at >= from && *at <= to)
            .map(|r| r.4)
            .collect();
        times.sort();
        let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        gaps.push((*p, gap.as_millis()));
    }
    eprintln!("{step}: moved {moved:?}; longest gap (ms) of partitions that stayed: {gaps:?}");
}

/// 1 → 6 → 2 members on 12 partitions under continuous produce: every record consumed, none
/// twice (members leave cleanly, committing what they consumed), balanced after each change,
/// and only moved partitions revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_out_and_in_under_load() {
    const TOPIC: &str = "scaled";
    const PARTITIONS: i32 = 12;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let bootstrap = broker.addr.to_string();
    let client = Client::connect(ClientConfig::new(&bootstrap)).await.unwrap();
    client
        .admin()
        .create_topic(NewTopic::new(TOPIC, PARTITIONS, 1))
        .await
        .unwrap();

    // Continuous produce: a round of one record per partition every 20 ms.
    let (stop_producing, produced, producer_task) = produce_continuously(&client, TOPIC, PARTITIONS, 20);

    let log = Arc::new(Mutex::new(Log::default()));
    let mut members = Vec::new();
    let start = |i: usize, members: &mut Vec<(CancellationToken, tokio::task::JoinHandle<()>)>| {
        let stop = CancellationToken::new();
        let h = spawn_member(bootstrap.clone(), TOPIC, format!("m{i}"), log.clone(), stop.clone());
        members.push((stop, h));
    };
    start(0, &mut members);
    let one = wait_balanced(&client, 1, 12).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t1 = Instant::now();
    for i in 1..6 {
        start(i, &mut members);
    }
    let six = wait_balanced(&client, 6, 12).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t2 = Instant::now();
    check_step(&log.lock().unwrap(), "1 -> 6", t1, t2, &owners(&one), &owners(&six));

    // Scale in: m2..m5 close (commit, leave).
    for (stop, h) in members.drain(2..) {
        stop.cancel();
        h.await.unwrap();
    }
    let two = wait_balanced(&client, 2, 12).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t3 = Instant::now();
    {
        let l = log.lock().unwrap();
        // The survivors only gained partitions.
        for (member, at, e) in &l.events {
            if *at >= t2 && matches!(e, RebalanceEvent::Revoked(_) | RebalanceEvent::Lost(_)) {
                panic!("6 -> 2: {member} lost partitions it kept: {e:?}");
            }
        }
        let stayed: BTreeMap<i32, String> = owners(&six)
            .into_iter()
            .filter(|(_, m)| m == "m0" || m == "m1")
            .collect();
        check_step(&l, "6 -> 2", t2, t3, &stayed, &owners(&two));
    }

    stop_producing.cancel();
    producer_task.await.unwrap();
    let produced = produced.lock().unwrap().clone();
    // Everything produced is consumed.
    strata_testkit::wait::until_async(
        GROUP_TIMEOUT,
        Duration::from_millis(200),
        async || {
            let l = log.lock().unwrap();
            let seen: BTreeSet<u64> = l.consumed.iter().map(|r| r.3).collect();
            let missing = produced.difference(&seen).count();
            if missing == 0 { Ok(()) } else { Err(missing) }
        },
        |missing| format!("{missing} of {} produced records were never consumed", produced.len()),
    )
    .await;
    for (stop, h) in members {
        stop.cancel();
        h.await.unwrap();
    }
    // Lag: nothing left behind, in the admin client's view, the JSON admin API and /metrics
    // (both refresh every second).
    let d = client.admin().describe_group("scaling").await.unwrap();
    assert_eq!(d.offsets.len(), 12);
    assert_eq!(d.total_lag, 0, "{:?}", d.offsets);
    assert!(
        d.offsets
            .iter()
            .all(|o| o.committed.is_some() && o.committed == o.log_end)
    );
    let http = broker.http;
    strata_testkit::wait::until_async(
        Duration::from_secs(10),
        Duration::from_millis(200),
        async || {
            let (g, metrics) = group_as_exported(http, "scaling").await?;
            let lag_lines = metrics
                .lines()
                .filter(|l| l.starts_with("strata_group_lag{group=\"scaling\""))
                .count();
            if g["partitions"].as_array().map(Vec::len) == Some(12)
                && g["total_lag"] == 0
                && g["state"] == "empty"
                && lag_lines == 12
                && metrics.contains("strata_group_members{group=\"scaling\",state=\"empty\"} 0")
            {
                Ok(())
            } else {
                Err(format!("{g} / {lag_lines} lag series"))
            }
        },
        |e| format!("group lag not exported: {e}"),
    )
    .await;
    let l = log.lock().unwrap();
    let mut counts: HashMap<u64, Vec<&str>> = HashMap::new();
    for (m, _, _, n, _) in &l.consumed {
        counts.entry(*n).or_default().push(m);
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, ms)| ms.len() > 1).take(10).collect();
    assert!(
        dupes.is_empty(),
        "records consumed twice though every member left cleanly: {dupes:?}"
    );
    eprintln!(
        "{} records produced and consumed once each; {} rebalance events",
        produced.len(),
        l.events.len()
    );
    drop(broker);
}

/// Produced records (their values, `0, 1, 2, …`, value `v` to partition `v % partitions`).
type Produced = Arc<Mutex<BTreeSet<u64>>>;

/// Produces a round of one record per partition every `pause_ms` until cancelled (at most
/// 100,000 records); returns the stop token, the values acknowledged, and the task. A send that
/// fails (a broker killed meanwhile) is not counted as produced.
fn produce_continuously(
    client: &Client,
    topic: &'static str,
    partitions: i32,
    pause_ms: u64,
) -> (CancellationToken, Produced, tokio::task::JoinHandle<()>) {
    let produced: Produced = Arc::default();
    let stop = CancellationToken::new();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let task = {
        let produced = produced.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() && n < 100_000 {
                let sends: Vec<_> = (0..partitions as u64)
                    .map(|i| {
                        let v = n + i;
                        let p = (v % partitions as u64) as i32;
                        let sent = producer.send(ProducerRecord::new(topic, v.to_string()).partition(p));
                        async move { (v, sent.await) }
                    })
                    .collect();
                for (v, r) in futures::future::join_all(sends).await {
                    if r.is_ok() {
                        produced.lock().unwrap().insert(v);
                    }
                }
                n += partitions as u64;
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
        })
    };
    (stop, produced, task)
}

/// A `strata consume --group` process writing JSON lines to a file.
fn cli_member(dir: &Path, bootstrap: &str, name: &str) -> (LoggedChild, PathBuf) {
    let out = dir.join(format!("{name}.jsonl"));
    let mut cmd = Command::new(strata_cli());
    cmd.args([
        "--bootstrap",
        bootstrap,
        "--format",
        "json",
        "consume",
        "killed",
        "--group",
        "survivors",
        "--from-beginning",
        "--session-timeout-ms",
        "3000",
    ]);
    let stdout = Stdio::from(std::fs::File::create(&out).unwrap());
    let child = LoggedChild::spawn_with_stdout(name, &mut cmd, dir.join(format!("{name}.log")), stdout);
    (child, out)
}

fn values_in(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["value"].as_str()?.parse().ok())
        .collect()
}

/// Three brokers; two `strata consume --group` processes under continuous produce. One is killed
/// with `kill -9`: its partitions move to the other after its session timeout. Then the
/// coordinator's broker is killed with `kill -9`: the group carries on from its committed
/// offsets. Every record is consumed; a record is consumed twice only if the killed consumer
/// had printed it without committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_and_coordinator_killed() {
    const PARTITIONS: i32 = 6;
    let mut cluster = Cluster::start(3);
    let client = cluster.client().await;
    client
        .admin()
        .create_topic(NewTopic::new("killed", PARTITIONS, 3))
        .await
        .unwrap();
    let bootstrap = cluster
        .addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let work = tempfile::tempdir().unwrap();

    let (stop_producing, produced, producer_task) = produce_continuously(&client, "killed", PARTITIONS, 30);

    let (mut a, a_out) = cli_member(work.path(), &bootstrap, "a");
    let (mut b, b_out) = cli_member(work.path(), &bootstrap, "b");
    let admin = client.admin();
    let describe = async |members: usize| {
        strata_testkit::wait::until_async(
            GROUP_TIMEOUT,
            Duration::from_millis(100),
            async || match admin.describe_group("survivors").await {
                Ok(d)
                    if d.state == "stable"
                        && d.members.len() == members
                        && d.members.iter().map(|m| m.assignment.len()).sum::<usize>() == PARTITIONS as usize =>
                {
                    Ok(d)
                }
                Ok(d) => Err(format!("{} with {} members", d.state, d.members.len())),
                Err(e) => Err(e.to_string()),
            },
            |e| format!("the group did not settle on {members} members: {e}"),
        )
        .await
    };
    describe(2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 one consumer: the other takes its partitions once its session (3 s) times out.
    let killed_at = Instant::now();
    a.kill();
    let d = describe(1).await;
    eprintln!(
        "the killed consumer's partitions moved after {:?} (session timeout 3 s)",
        killed_at.elapsed()
    );
    assert_eq!(d.members[0].assignment.len(), PARTITIONS as usize);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 the coordinator's broker.
    // (A coordinator that just moved lists its groups once it has loaded them.)
    let coordinator = strata_testkit::wait::until_async(
        GROUP_TIMEOUT,
        Duration::from_millis(100),
        async || {
            let listed = admin.list_groups().await.map_err(|e| e.to_string())?;
            listed
                .into_iter()
                .find(|g| g.group_id == "survivors")
                .map(|g| g.coordinator)
                .ok_or_else(|| "not listed".to_string())
        },
        |e| format!("the group is not listed: {e}"),
    )
    .await;
    let committed_before = admin.describe_group("survivors").await.unwrap().offsets;
    cluster.kill9(coordinator as usize - 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_producing.cancel();
    producer_task.await.unwrap();
    let produced = produced.lock().unwrap().clone();

    strata_testkit::wait::until_async(
        Duration::from_secs(90),
        Duration::from_millis(250),
        async || {
            let seen: BTreeSet<u64> = values_in(&a_out).into_iter().chain(values_in(&b_out)).collect();
            let missing: Vec<u64> = produced.difference(&seen).copied().take(5).collect();
            if missing.is_empty() { Ok(()) } else { Err(missing) }
        },
        |missing| format!("records never consumed, e.g. {missing:?}"),
    )
    .await;
    // The group kept its offsets through the failover: none went backwards.
    let after = strata_testkit::wait::until_async(
        GROUP_TIMEOUT,
        Duration::from_millis(200),
        async || admin.describe_group("survivors").await.map_err(|e| e.to_string()),
        |e| format!("the group is not described after the failover: {e}"),
    )
    .await;
    for o in &committed_before {
        let now = after
            .offsets
            .iter()
            .find(|x| x.topic == o.topic && x.partition == o.partition)
            .and_then(|x| x.committed);
        assert!(
            now >= o.committed,
            "{}/{}: {:?} -> {now:?}",
            o.topic,
            o.partition,
            o.committed
        );
    }
    b.kill();

    let from_a = values_in(&a_out);
    let from_b = values_in(&b_out);
    let a_set: BTreeSet<u64> = from_a.iter().copied().collect();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for v in from_a.iter().chain(&from_b) {
        *seen.entry(*v).or_default() += 1;
    }
    let dupes: Vec<u64> = seen.iter().filter(|(_, n)| **n > 1).map(|(v, _)| *v).collect();
    for v in &dupes {
        assert!(
            a_set.contains(v),
            "record {v} consumed twice, but not by the killed consumer"
        );
    }
    for (name, values) in [("a", &from_a), ("b", &from_b)] {
        let unique: BTreeSet<u64> = values.iter().copied().collect();
        assert_eq!(unique.len(), values.len(), "consumer {name} printed a record twice");
    }
    eprintln!(
        "{} records; a printed {}, b {}; {} consumed twice (printed by the killed consumer after its last commit)",
        produced.len(),
        from_a.len(),
        from_b.len(),
        dupes.len()
    );
}

/// A committed offset that is no longer in the log (past its end here; below its start after
/// retention) resets by `auto_offset_reset` instead of looping on the committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_offset_out_of_the_log_resets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut raw = Raw::connect(broker.addr).await;
    assert_eq!(raw.create("oor", 1, &[]).await.error, ErrorCode::None);
    raw.wait_for_leaders("oor").await;
    let values: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(
        raw.produce("oor", 0, common::batch(&refs, 0), -1).await.error,
        ErrorCode::None
    );
    find_coordinator(&mut raw, "oor-group").await;
    assert_eq!(
        commit_error(&mut raw, commit("oor-group", "", -1, "oor", 0, 1000)).await,
        ErrorCode::None
    );
    let client = Client::connect(ClientConfig::new(&broker.addr.to_string()))
        .await
        .unwrap();
    let mut c = client
        .consumer(ConsumerConfig {
            group_id: Some("oor-group".into()),
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        })
        .unwrap();
    c.subscribe(["oor"]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while got.len() < 10 {
        assert!(Instant::now() < deadline, "read only {got:?}");
        for r in c.poll(Duration::from_millis(200)).await.unwrap() {
            got.push(r.offset.0);
        }
    }
    assert_eq!(got, (0..10).collect::<Vec<u64>>());
    c.close().await.unwrap();
    assert_eq!(fetch_committed(&mut raw, "oor-group", "oor", 0).await, 10);
}

/// `__consumer_offsets` stays small: coordinators snapshot their groups and every replica
/// deletes the log below the snapshot; the state survives a restart that replays from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_snapshotted_and_the_log_below_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        "[groups]\noffsets_partitions = 1\noffsets_snapshot_bytes = \"64KiB\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config_arg = config.to_str().unwrap();
    let broker = BrokerProcess::start_with(BROKER, &data, &["--config", config_arg]);
    let mut raw = Raw::connect(broker.addr).await;
    assert_eq!(raw.create("many", 50, &[]).await.error, ErrorCode::None);
    raw.wait_for_leaders("many").await;
    find_coordinator(&mut raw, "snap").await;
    // A member too, so a group record is in the snapshots.
    let member = heartbeat(&mut raw, join("member-group", &["many"])).await;
    assert_eq!(member.error, ErrorCode::None, "{:?}", member.message);
    // 300 commits of 50 partitions: ~600 KB of records, several snapshots' worth.
    for round in 0..300i64 {
        let req = Request::OffsetCommit(OffsetCommitRequest {
            group_id: "snap".into(),
            member_id: String::new(),
            member_epoch: -1,
            topics: vec![TopicData {
                name: "many".into(),
                partitions: (0..50)
                    .map(|p| OffsetCommitPartition {
                        partition: p,
                        committed_offset: round * 100 + i64::from(p),
                        metadata: Some("x".repeat(8)),
                    })
                    .collect(),
            }],
        });
        let Response::OffsetCommit(r) = call(&mut raw, req).await else {
            panic!()
        };
        assert!(r.topics[0].partitions.iter().all(|p| p.error.is_ok()), "{r:?}");
    }
    // The log below a snapshot goes.
    let deleted = strata_testkit::wait::until_async(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let m = raw.metadata(OFFSETS).await;
            let p = &m.partitions[0];
            if p.log_start_offset > 0 {
                Ok(p.log_start_offset)
            } else {
                Err(p.high_watermark)
            }
        },
        |hw| format!("nothing below a snapshot was deleted (high watermark {hw})"),
    )
    .await;
    let m = raw.metadata(OFFSETS).await;
    eprintln!(
        "{OFFSETS}: log start {deleted}, high watermark {} ({} records written)",
        m.partitions[0].high_watermark,
        300 * 50
    );
    drop(raw);
    assert!(broker.sigterm_and_wait().success());

    // Replayed from the snapshot: the latest offsets and the member.
    let broker = BrokerProcess::start_with(BROKER, &data, &["--config", config_arg]);
    let mut raw = Raw::connect(broker.addr).await;
    for p in [0, 17, 49] {
        assert_eq!(
            fetch_committed(&mut raw, "snap", "many", p).await,
            299 * 100 + i64::from(p)
        );
    }
    let Response::DescribeGroups(d) = call_settled(
        &mut raw,
        Request::DescribeGroups(DescribeGroupsRequest {
            group_ids: vec!["member-group".into()],
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(d.groups[0].members.len(), 1, "{d:?}");
    assert_eq!(d.groups[0].members[0].member_id, member.member_id);
}

/// Offsets of a group with no member expire after `groups.offsets_retention` (Kafka's
/// `offsets.retention.minutes`); a group with members keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_empty_groups_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(&config, "[groups]\noffsets_retention = \"2s\"\n").unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let broker = BrokerProcess::start_with(BROKER, &data, &["--config", config.to_str().unwrap()]);
    let mut raw = Raw::connect(broker.addr).await;
    assert_eq!(raw.create("kept", 1, &[]).await.error, ErrorCode::None);
    raw.wait_for_leaders("kept").await;
    find_coordinator(&mut raw, "old").await;
    find_coordinator(&mut raw, "live").await;
    assert_eq!(
        commit_error(&mut raw, commit("old", "", -1, "kept", 0, 4)).await,
        ErrorCode::None
    );
    let mut hb = join("live", &["kept"]);
    hb.session_timeout_ms = 60_000;
    let m = heartbeat(&mut raw, hb).await;
    assert_eq!(m.error, ErrorCode::None, "{:?}", m.message);
    assert_eq!(
        commit_error(&mut raw, commit("live", &m.member_id, m.member_epoch, "kept", 0, 9)).await,
        ErrorCode::None
    );
    strata_testkit::wait::until_async(
        Duration::from_secs(20),
        Duration::from_millis(200),
        async || match fetch_committed(&mut raw, "old", "kept", 0).await {
            -1 => Ok(()),
            o => Err(o),
        },
        |o| format!("the empty group's offset is still {o}"),
    )
    .await;
    assert_eq!(fetch_committed(&mut raw, "live", "kept", 0).await, 9);
    let Response::ListGroups(l) = call(&mut raw, Request::ListGroups(ListGroupsRequest::default())).await else {
        panic!()
    };
    let names: Vec<&str> = l.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(names, ["live"]);
}

/// Lag in the admin API and `/metrics` covers partitions with no replica on the coordinator's
/// broker: leaders announce their high watermarks, so every broker knows every partition's end.
/// Metadata from a broker that hosts no replica shows the high watermark too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_covers_partitions_the_coordinator_does_not_host() {
    const PARTITIONS: i32 = 6;
    let cluster = Cluster::start(3);
    let client = cluster.client().await;
    // RF 1: each partition lives on one broker, so the coordinator hosts only some of them.
    client
        .admin()
        .create_topic(NewTopic::new("spread", PARTITIONS, 1))
        .await
        .unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let mut deliveries = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..10 {
            let rec = ProducerRecord::new("spread", format!("{p}-{i}").into_bytes()).partition(p);
            deliveries.push(producer.enqueue(rec).await.unwrap());
        }
    }
    producer.flush().await;
    for d in deliveries {
        d.await.unwrap();
    }
    // Offset 4 committed everywhere from outside the group (it has no members). The coordinator
    // may move meanwhile (the offsets partition's leadership returns to its preferred replica
    // soon after the topic is created): ask again then.
    let coordinator_index = async || {
        let mut raw = Raw::connect(cluster.addrs[0]).await;
        let coordinator = find_coordinator(&mut raw, "far").await;
        assert_eq!(coordinator.error, ErrorCode::None);
        let index = cluster
            .addrs
            .iter()
            .position(|a| a.port() == coordinator.port as u16)
            .expect("the coordinator is one of the brokers");
        (index, coordinator.node_id)
    };
    let mut p = 0;
    for _ in 0..200 {
        if p == PARTITIONS {
            break;
        }
        let (index, _) = coordinator_index().await;
        let mut c = Raw::connect(cluster.addrs[index]).await;
        match commit_error(&mut c, commit("far", "", -1, "spread", p, 4)).await {
            ErrorCode::None => p += 1,
            ErrorCode::NotCoordinator => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("commit of partition {p}: {other:?}"),
        }
    }
    assert_eq!(p, PARTITIONS, "every partition's offset committed");

    strata_testkit::wait::until_async(
        Duration::from_secs(20),
        Duration::from_millis(200),
        async || {
            let (index, node) = coordinator_index().await;
            let topic = client
                .admin()
                .describe_topics(&["spread"])
                .await
                .map_err(|e| e.to_string())?
                .remove(0);
            let hosted = topic.partitions.iter().filter(|p| p.replicas.contains(&node)).count();
            assert!(hosted < PARTITIONS as usize, "RF 1 on 3 brokers: {topic:?}");
            let http = cluster.brokers[index].as_ref().expect("running").http;
            let (g, metrics) = group_as_exported(http, "far").await?;
            let lags: Vec<_> = g["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| &p["lag"])
                .collect();
            if lags.len() != PARTITIONS as usize || lags.iter().any(|l| l.as_i64() != Some(6)) {
                return Err(format!("lag not 6 everywhere yet: {g}"));
            }
            let lag_lines = metrics
                .lines()
                .filter(|l| l.starts_with("strata_group_lag{") && l.contains("group=\"far\""))
                .collect::<Vec<_>>();
            if lag_lines.len() != PARTITIONS as usize || !lag_lines.iter().all(|l| l.ends_with(" 6")) {
                return Err(format!("metrics: {lag_lines:?}"));
            }
            Ok(())
        },
        |e| format!("lag of partitions the coordinator does not host: {e}"),
    )
    .await;

    // Metadata from a broker without a replica names the high watermark the leader announced.
    for (i, addr) in cluster.addrs.iter().enumerate() {
        let node = i as i32 + 1;
        let mut m = Raw::connect(*addr).await;
        strata_testkit::wait::until_async(
            Duration::from_secs(10),
            Duration::from_millis(200),
            async || {
                let t = m.metadata("spread").await;
                match t.partitions.iter().find(|p| !p.replicas.contains(&node)) {
                    Some(p) if p.high_watermark == 10 => Ok(()),
                    Some(p) => Err(format!("{p:?}")),
                    None => Ok(()),
                }
            },
            |e| format!("broker {node}'s metadata of a partition it does not host: {e}"),
        )
        .await;
    }
}
