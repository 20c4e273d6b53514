//! Serves the HTTP API on a listener with the node's bounds on clients:
//! at most `--http-connections-max` connections at once (the next one waits
//! in the kernel's accept backlog until one closes), and
//! `--http-read-timeout-ms` for a client to send a request's headers — which
//! also closes a connection idle between requests — and then its body.
//!
//! The same timeout bounds a write that makes no progress (a client that
//! stops reading its responses). A client that opens connections and sends
//! nothing (or a byte a minute), or reads nothing, therefore holds a slot
//! for about one timeout at most.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// The client-facing bounds of one node's HTTP server.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub connections_max: usize,
    pub read_timeout_ms: u64,
    pub body_bytes_max: usize,
}

/// Accepts connections until `stop` changes, each served on its own task;
/// then asks every open connection to finish its request in flight and
/// returns when all have closed.
pub async fn serve(listener: TcpListener, app: axum::Router, limits: HttpLimits, mut stop: watch::Receiver<bool>) {
    assert!(limits.connections_max > 0 && limits.read_timeout_ms > 0);
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let mut open = tokio::task::JoinSet::new();
    loop {
        // A slot first: at the bound, connections wait unaccepted.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin.
                    tracing::warn!("accepting an HTTP connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, stop) = (app.clone(), stop.clone());
        open.spawn(async move {
            connection(stream, app, limits.read_timeout_ms, stop).await;
            drop(slot);
        });
        while open.try_join_next().is_some() {}
    }
    while open.join_next().await.is_some() {}
}

/// Serves one connection (HTTP/1.1, keep-alive) until the client closes
/// it, a read times out, or the node stops.
async fn connection(
    stream: tokio::net::TcpStream,
    app: axum::Router,
    read_timeout_ms: u64,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(app);
    let timeout = Duration::from_millis(read_timeout_ms);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeout);
    let io = Progressing { io: stream, stall: timeout, deadline: None };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = tokio::time::timeout(timeout, conn).await;
}

/// A connection whose writes must make progress: one blocked for `stall`
/// (the client stopped reading) fails, which ends the connection.
struct Progressing<T> {
    io: T,
    stall: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T: AsyncWrite + Unpin> Progressing<T> {
    /// `polled` was `Pending`: arms the stall timer (once per blocked
    /// write) and fails once it fires.
    fn blocked<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.deadline = None;
            return polled;
        }
        let stall = self.stall;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Progressing<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Progressing<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.blocked(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.blocked(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.blocked(cx, polled)
    }
}
