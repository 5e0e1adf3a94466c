//! Waiting on a condition with a deadline, never a bare sleep.
//!
//! A probe returns `Ok(value)` when the condition holds and `Err(seen)` while it does not, where
//! `seen` is whatever the failure message should show (the last page fetched, the last value
//! read, or `()`). The probe runs first, then every `interval`; once `within` has passed with it
//! still failing, the wait panics with the message `timed_out` makes of the last `seen`. The
//! message is only built then, so a probe stays cheap.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Ok`, sleeping the thread `interval` between attempts, and
/// returns the value. Needs no async runtime (and may run inside one, blocking its thread).
///
/// # Panics
///
/// With `timed_out(seen)` when `probe` still returns `Err(seen)` after `within`.
pub fn until<T, E>(
    within: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
    timed_out: impl FnOnce(E) -> String,
) -> T {
    // The one polling loop, given a synchronous probe and a thread sleep: nothing in it ever
    // waits on a waker, so a single poll runs it to the end.
    let wait = pin!(poll_until(
        within,
        async || probe(),
        async || std::thread::sleep(interval),
        timed_out
    ));
    match wait.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("a synchronous wait completes in one poll"),
    }
}

/// As [`until`] for an async probe, sleeping on the tokio timer between attempts. The deadline
/// is wall-clock time (`std::time::Instant`), so a paused tokio clock does not stop it.
///
/// # Panics
///
/// With `timed_out(seen)` when `probe` still returns `Err(seen)` after `within`.
pub async fn until_async<T, E>(
    within: Duration,
    interval: Duration,
    probe: impl AsyncFnMut() -> Result<T, E>,
    timed_out: impl FnOnce(E) -> String,
) -> T {
    poll_until(within, probe, async || tokio::time::sleep(interval).await, timed_out).await
}

async fn poll_until<T, E>(
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
    mut pause: impl AsyncFnMut(),
    timed_out: impl FnOnce(E) -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => panic!("{}", timed_out(seen)),
            Err(_) => pause().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_ok() {
        let mut n = 0;
        let got = until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                if n == 3 { Ok(n) } else { Err(()) }
            },
            |()| unreachable!(),
        );
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn waits_on_an_async_probe() {
        let mut n = 0;
        let got = until_async(
            Duration::from_secs(5),
            Duration::from_millis(1),
            async || {
                n += 1;
                tokio::task::yield_now().await;
                if n == 3 { Ok(n) } else { Err(()) }
            },
            |()| unreachable!(),
        )
        .await;
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "still 7")]
    fn panics_with_the_last_thing_seen() {
        until(
            Duration::ZERO,
            Duration::from_millis(1),
            || Err::<(), _>(7),
            |seen| format!("still {seen}"),
        );
    }
}
