//! A TCP proxy in front of a broker, for fault injection: pass traffic through, cut every
//! connection (and refuse new ones), or delay every chunk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    /// 0: pass, 1: cut, 2: delay.
    mode: AtomicU64,
    /// Bumped by every cut: connections of an older generation close.
    generation: AtomicU64,
    delay_ms: AtomicU64,
}

/// A proxy listening on `addr` that forwards to one target.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if st.mode.load(Ordering::Acquire) == 1 {
                    continue; // cut: dropped at once
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(Ok(outbound)) =
                        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target)).await
                    else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let generation = st.generation.load(Ordering::Acquire);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::select! {
                        _ = pump(ri, wo, st.clone(), generation) => {}
                        _ = pump(ro, wi, st.clone(), generation) => {}
                    }
                });
            }
        });
        Proxy { addr, state, task }
    }

    /// Closes every connection and refuses new ones until [`Proxy::heal`].
    pub fn cut(&self) {
        self.state.mode.store(1, Ordering::Release);
        self.state.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Delays every chunk by `d` until [`Proxy::heal`].
    pub fn delay(&self, d: Duration) {
        self.state.delay_ms.store(d.as_millis() as u64, Ordering::Release);
        self.state.mode.store(2, Ordering::Release);
    }

    /// Passes traffic through again.
    pub fn heal(&self) {
        self.state.mode.store(0, Ordering::Release);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    st: Arc<State>,
    generation: u64,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // Wake now and then to notice a cut on an idle connection.
        let n = match tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await {
            Err(_) => {
                if st.generation.load(Ordering::Acquire) != generation {
                    return;
                }
                continue;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        if st.generation.load(Ordering::Acquire) != generation || st.mode.load(Ordering::Acquire) == 1 {
            return;
        }
        if st.mode.load(Ordering::Acquire) == 2 {
            tokio::time::sleep(Duration::from_millis(st.delay_ms.load(Ordering::Acquire))).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
