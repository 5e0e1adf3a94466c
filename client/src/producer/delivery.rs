//! Record deliveries without a per-record channel: every record of a batch shares the batch's
//! [`BatchOutcome`], and a [`Delivery`] is that `Arc` plus the record's index in the batch.
//!
//! Enqueueing a record therefore costs an `Arc` clone, not an allocation; a waiting delivery
//! parks its waker in a slot of the batch's waker list (amortized, reused when polled again),
//! and completing the batch wakes them all at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use strata_protocol::Offset;

use crate::error::{Error, Result};
use crate::producer::RecordMetadata;

/// How a batch ended: `Ok(Some(base_offset))`, `Ok(None)` with `acks = none`, or the error.
type Resolution = Result<Option<u64>>;

#[derive(Default)]
struct OutcomeState {
    resolution: Option<Resolution>,
    wakers: Vec<Option<Waker>>,
}

/// The outcome every record of one batch waits on.
#[derive(Default)]
pub(crate) struct BatchOutcome {
    state: Mutex<OutcomeState>,
}

impl std::fmt::Debug for BatchOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchOutcome")
            .field("resolved", &self.lock().resolution.is_some())
            .finish()
    }
}

impl BatchOutcome {
    fn lock(&self) -> MutexGuard<'_, OutcomeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves the batch (the first resolution wins) and wakes every waiting delivery.
    pub(crate) fn resolve(&self, resolution: Resolution) {
        let wakers = {
            let mut s = self.lock();
            if s.resolution.is_some() {
                return;
            }
            s.resolution = Some(resolution);
            std::mem::take(&mut s.wakers)
        };
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

/// The eventual outcome of one enqueued record: a future resolving to its [`RecordMetadata`]
/// or the error that stopped it. Dropping it does not cancel the record.
#[must_use = "a Delivery resolves to the record's offset or error"]
pub struct Delivery {
    outcome: Arc<BatchOutcome>,
    topic: Arc<str>,
    partition: i32,
    /// The record's position in its batch: its offset is the batch's base offset plus this.
    index: u32,
    timestamp: i64,
    /// This delivery's slot in the batch's waker list, once it has waited.
    slot: Option<usize>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub(crate) fn new(outcome: Arc<BatchOutcome>, topic: Arc<str>, partition: i32, index: u32, timestamp: i64) -> Self {
        Self {
            outcome,
            topic,
            partition,
            index,
            timestamp,
            slot: None,
        }
    }

    /// The partition the record was appended to (known as soon as it is enqueued).
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn metadata(&self, resolution: &Resolution) -> Result<RecordMetadata> {
        match resolution {
            Ok(base) => Ok(RecordMetadata {
                topic: Arc::clone(&self.topic),
                partition: self.partition,
                offset: base.map(|b| Offset(b.saturating_add(u64::from(self.index)))),
                timestamp: self.timestamp,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut s = this.outcome.lock();
        if let Some(r) = &s.resolution {
            let out = this.metadata(r);
            return Poll::Ready(out);
        }
        match this.slot {
            Some(i) if i < s.wakers.len() => match &mut s.wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            _ => {
                this.slot = Some(s.wakers.len());
                s.wakers.push(Some(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Free the waker slot so a dropped delivery does not keep its task's waker alive.
        if let Some(i) = self.slot {
            let mut s = self.outcome.lock();
            if let Some(w) = s.wakers.get_mut(i) {
                *w = None;
            }
        }
    }
}

/// Resolves `outcome` with [`Error::ProducerClosed`] if nobody resolved it (a batch dropped
/// with the producer).
pub(crate) fn resolve_dropped(outcome: &BatchOutcome) {
    outcome.resolve(Err(Error::ProducerClosed));
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn deliveries_share_one_outcome() {
        let outcome = Arc::new(BatchOutcome::default());
        let topic: Arc<str> = Arc::from("t");
        let mut a = Delivery::new(outcome.clone(), topic.clone(), 3, 0, 10);
        let mut b = Delivery::new(outcome.clone(), topic, 3, 1, 11);
        assert!((&mut a).now_or_never().is_none());
        assert!((&mut a).now_or_never().is_none(), "polling twice reuses the slot");
        assert!((&mut b).now_or_never().is_none());
        assert_eq!(outcome.lock().wakers.len(), 2);
        outcome.resolve(Ok(Some(100)));
        outcome.resolve(Err(Error::ProducerClosed));
        let ma = a.now_or_never().unwrap().unwrap();
        let mb = b.now_or_never().unwrap().unwrap();
        assert_eq!((ma.offset, ma.partition, ma.timestamp), (Some(Offset(100)), 3, 10));
        assert_eq!((mb.offset, mb.timestamp), (Some(Offset(101)), 11));
    }

    #[tokio::test]
    async fn a_waiting_delivery_is_woken() {
        let outcome = Arc::new(BatchOutcome::default());
        let d = Delivery::new(outcome.clone(), Arc::from("t"), 0, 0, 0);
        let waiter = tokio::spawn(d);
        tokio::task::yield_now().await;
        outcome.resolve(Err(Error::ProducerClosed));
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(matches!(r, Ok(Ok(Err(Error::ProducerClosed)))));
    }
}
