//! Bounds on HTTP connections, so that HTTP clients — slow, stalled or hostile — cannot take
//! resources the data path needs: at most [`MAX_HTTP_CONNECTIONS`] at once (more are accepted and
//! closed at once, as the client listener does; descriptors stay for the client protocol), and a
//! connection that moves no byte in either direction for the idle timeout is closed (a client
//! that sent half a request and stopped does not hold its slot forever).
//!
//! The idle timeout is the client listener's (`listener.idle_timeout`, default 10 minutes). hyper
//! keeps reading while a handler runs (to notice a peer that hangs up), so a request that takes
//! longer than that loses its connection; create and delete still finish, as they run in their
//! own tasks.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Most HTTP connections served at once. Probes, scrapers and a few consoles need a handful.
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// A TCP listener that caps concurrent connections and closes idle ones.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl LimitedListener {
    /// Wraps `inner`: at most `max` connections, each closed after `idle_timeout` without I/O.
    pub fn new(inner: TcpListener, max: usize, idle_timeout: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            idle_timeout,
        }
    }
}

impl Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        loop {
            // axum's accept backs off on errors (out of descriptors) by itself.
            let (stream, peer) = Listener::accept(&mut self.inner).await;
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => return (LimitedStream::new(stream, permit, self.idle_timeout), peer),
                Err(_) => {
                    tracing::warn!(%peer, max = MAX_HTTP_CONNECTIONS, "HTTP connection limit reached; refusing");
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: holds its slot until dropped, and fails with `TimedOut` once it has
/// waited `idle_timeout` for the peer without moving a byte.
pub struct LimitedStream {
    stream: TcpStream,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl LimitedStream {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, idle_timeout: Duration) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            _permit: permit,
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(next);
    }

    /// Called when the socket is not ready: `Ready(TimedOut)` once the idle deadline passed
    /// (which also registers the timer's wakeup while it has not).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "HTTP connection idle")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, data) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn caps_connections_and_closes_idle_ones() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let mut l = LimitedListener::new(inner, 1, Duration::from_millis(200));
        let mut c1 = TcpStream::connect(addr).await.unwrap();
        let (mut s1, _) = l.accept().await;
        // The second connection is refused (closed) while the first holds the only slot.
        let mut c2 = TcpStream::connect(addr).await.unwrap();
        let refused = tokio::spawn(async move { l.accept().await });
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c2.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "refused connection closed: {n:?}");
        // The first connection moves bytes, then goes idle and times out.
        c1.write_all(b"x").await.unwrap();
        assert_eq!(s1.read(&mut b).await.unwrap(), 1);
        let started = std::time::Instant::now();
        let e = s1.read(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(150));
        // Its slot is free again once dropped.
        drop(s1);
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let (_s3, _) = tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .unwrap()
            .unwrap();
    }
}
