//! Idempotent producers against a real broker process: producer ids from InitProducerId, retried
//! batches dropped (answered with the original offset) also after a restart, gaps and old
//! epochs refused.

use bytes::Bytes;
use strata_protocol::api::*;
use strata_protocol::{BatchBuilder, BatchOptions, ErrorCode};
use strata_testkit::BrokerProcess;

mod common;
use common::{BROKER, Client, values};

fn stamped(producer_id: i64, epoch: i16, seq: i32, vals: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(BatchOptions {
        producer_id,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchOptions::default()
    });
    for v in vals {
        b.append(1, None, Some(v.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap()
}

async fn init(c: &mut Client) -> (i64, i16) {
    let Response::InitProducerId(r) = c
        .call(Request::InitProducerId(InitProducerIdRequest::default()))
        .await
        .unwrap()
    else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(r.error, ErrorCode::None, "{r:?}");
    (r.producer_id, r.producer_epoch)
}

async fn all_values(c: &mut Client, topic: &str) -> Vec<String> {
    let f = c.fetch(topic, 0, 0, 0, 0).await;
    assert_eq!(f.error, ErrorCode::None);
    values(f.records).into_iter().map(|(_, v)| v).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_dropped_gaps_and_old_epochs_refused_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(c.create("t", 1, &[]).await.error, ErrorCode::None);
    c.wait_for_leaders("t").await;

    let (pid, epoch) = init(&mut c).await;
    assert!(pid >= 1 && epoch == 0, "{pid} {epoch}");
    let (other, _) = init(&mut c).await;
    assert_ne!(pid, other, "two producers never share an id");

    let first = stamped(pid, epoch, 0, &["a", "b", "c"]);
    assert_eq!(c.produce("t", 0, first.clone(), -1).await.base_offset, 0);
    // The retry of a batch already in the log: the original's offset, nothing appended.
    let retry = c.produce("t", 0, first.clone(), -1).await;
    assert_eq!((retry.error, retry.base_offset), (ErrorCode::None, 0), "{retry:?}");
    let second = stamped(pid, epoch, 3, &["d"]);
    assert_eq!(c.produce("t", 0, second.clone(), -1).await.base_offset, 3);
    // Another producer interleaves; its sequences are its own.
    assert_eq!(c.produce("t", 0, stamped(other, 0, 0, &["x"]), -1).await.base_offset, 4);
    // A gap: sequence 5 was never written.
    let gap = c.produce("t", 0, stamped(pid, epoch, 6, &["e"]), -1).await;
    assert_eq!(gap.error, ErrorCode::OutOfOrderSequenceNumber, "{gap:?}");
    assert_eq!(all_values(&mut c, "t").await, ["a", "b", "c", "d", "x"]);

    // After a restart the state is rebuilt from the log: the retry is still recognized.
    drop(c);
    let status = broker.sigterm_and_wait();
    assert!(status.success());
    let broker = BrokerProcess::start(BROKER, dir.path());
    let mut c = Client::connect(broker.addr).await;
    c.wait_for_leaders("t").await;
    let retry = c.produce("t", 0, second, -1).await;
    assert_eq!((retry.error, retry.base_offset), (ErrorCode::None, 3), "{retry:?}");
    assert_eq!(
        c.produce("t", 0, stamped(pid, epoch, 4, &["e"]), -1).await.base_offset,
        5
    );
    // A new epoch of the id fences the old one.
    assert_eq!(
        c.produce("t", 0, stamped(pid, epoch + 1, 0, &["f"]), -1).await.error,
        ErrorCode::None
    );
    let fenced = c.produce("t", 0, stamped(pid, epoch, 5, &["g"]), -1).await;
    assert_eq!(fenced.error, ErrorCode::InvalidProducerEpoch, "{fenced:?}");
    assert_eq!(all_values(&mut c, "t").await, ["a", "b", "c", "d", "x", "e", "f"]);
    // A restart does not hand out an id twice.
    let (again, _) = init(&mut c).await;
    assert!(again != pid && again != other);
}
