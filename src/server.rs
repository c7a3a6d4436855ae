//! The HTTP/1.1 accept loop, with the connection limits `axum::serve` lacks.
//!
//! - **Header-read timeout.** hyper's `header_read_timeout` (with a timer)
//!   closes a connection whose request head is not complete in time. In
//!   hyper 1.12 the timer starts when the connection is ready for a head: at
//!   accept, and again when the previous response is done, so it also bounds
//!   a client that sends nothing and an idle keep-alive connection.
//! - **Connection cap.** A permit is taken *before* `accept`, so past
//!   `max_connections` new connections wait in the kernel's accept backlog
//!   (which the kernel bounds) rather than being refused: a legitimate burst
//!   is served a little later, and an idle attacker's slots free themselves
//!   within the header-read timeout. Nothing in this process grows per
//!   waiting connection.
//! - **Owned connections.** Every connection task lives in a `JoinSet`; on
//!   shutdown the listener closes, every connection finishes its in-flight
//!   request and closes ([`GracefulShutdown`]), and whatever is left when the
//!   grace period ends is aborted.
//!
//! HTTP/1.1 only, as before: axum was built without its `http2` feature.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ServerSettings;

/// What bounds each connection and the server as a whole.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl From<&ServerSettings> for ConnectionLimits {
    fn from(s: &ServerSettings) -> Self {
        Self {
            header_read_timeout: s.header_read_timeout,
            max_connections: s.max_connections,
            shutdown_grace: s.shutdown_grace,
        }
    }
}

/// Serve `router` on `listener` until `shutdown` resolves; then stop
/// accepting, let in-flight requests finish within the grace period, and
/// return once every connection is closed (or aborted at the deadline).
/// Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, permit) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept(&listener, &permits) => match accepted {
                Some(accepted) => accepted,
                None => continue,
            },
        };
        // Reap finished connections here, so the set holds at most
        // max_connections live ones plus those ended since the last accept.
        while let Some(ended) = connections.try_join_next() {
            report_panic(ended);
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(err) = connection.await {
                // Timeouts, resets, malformed requests: the client's doing.
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(target: "system", "shutdown requested; draining requests");
    let drained = async {
        graceful.shutdown().await;
        while let Some(ended) = connections.join_next().await {
            report_panic(ended);
        }
    };
    if tokio::time::timeout(limits.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!(target: "system", "grace period over; dropping unfinished requests");
        connections.shutdown().await;
    }
}

/// Wait for a connection slot, then for a connection. `None` after an accept
/// error (already handled); the caller tries again.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    // The semaphore is never closed.
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, permit)),
        Err(err) => {
            handle_accept_error(err).await;
            None
        }
    }
}

/// A connection the peer aborted before we took it is no error. Anything
/// else (EMFILE: out of file descriptors) is logged and waited out for a
/// second, as hyper 0.14 and axum::serve do, instead of spinning.
async fn handle_accept_error(err: io::Error) {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(target: "system", error = %err, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn report_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(err) = ended {
        if err.is_panic() {
            tracing::error!(target: "system", error = %err, "a connection task panicked");
        }
    }
}
