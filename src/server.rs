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
//!   is served a little later. Nothing in this process grows per waiting
//!   connection.
//! - **Per-address cap** ([`per_address`]). A connection from an address
//!   (not a trusted proxy) that has `max_connections_per_address` open is
//!   closed at once, before hyper sees it: one address cannot hold every
//!   slot.
//! - **Idle connections give way at the cap** ([`pressure`]). While the loop
//!   waits for a slot, connections idle for a second are closed, so idle
//!   sockets from many addresses cannot starve active clients for a whole
//!   header-read timeout either.
//! - **Owned connections.** Every connection task lives in a `JoinSet`; on
//!   shutdown the listener closes, every connection finishes its in-flight
//!   request and closes (hyper's graceful shutdown), and whatever is left
//!   when the grace period ends is aborted.
//!
//! HTTP/1.1 only: axum was built without its `http2` feature.

mod per_address;
mod pressure;

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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ServerSettings;
use crate::proxies::TrustedProxies;
use per_address::{AddressCounts, AddressSlot};
use pressure::{idle_at_cap, Activity, IDLE_AT_CAP};

/// What bounds each connection and the server as a whole.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Exempt from the per-address cap.
    pub trusted_proxies: TrustedProxies,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl From<&ServerSettings> for ConnectionLimits {
    fn from(s: &ServerSettings) -> Self {
        Self {
            header_read_timeout: s.header_read_timeout,
            max_connections: s.max_connections,
            max_connections_per_address: s.max_connections_per_address,
            trusted_proxies: s.trusted_proxies.clone(),
            shutdown_grace: s.shutdown_grace,
        }
    }
}

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    router: Router,
    http: http1::Builder,
    /// Becomes `true` when the service stops.
    stopping: watch::Receiver<bool>,
    /// `true` while the accept loop waits for a slot.
    at_cap: watch::Receiver<bool>,
    idle_at_cap: Duration,
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
    let addresses = AddressCounts::new(
        limits.max_connections_per_address,
        limits.trusted_proxies.clone(),
    );
    let (stop, stopping) = watch::channel(false);
    let (at_cap, at_cap_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let shared = Shared {
        router,
        http,
        stopping,
        at_cap: at_cap_rx,
        idle_at_cap: IDLE_AT_CAP.min(limits.header_read_timeout),
    };
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, permit) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept(&listener, &permits, &at_cap) => match accepted {
                Some(accepted) => accepted,
                None => continue,
            },
        };
        // Reap finished connections here, so the set holds at most
        // max_connections live ones plus those ended since the last accept.
        while let Some(ended) = connections.try_join_next() {
            report_panic(ended);
        }
        let Some(slot) = addresses.admit(peer.ip()) else {
            // Dropping the stream closes it; its permit goes back at once.
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        connections.spawn(connection(shared.clone(), stream, peer, (permit, slot)));
    }
    drop(listener);
    tracing::info!(target: "system", "shutdown requested; draining requests");
    stop.send_replace(true);
    let drained = async {
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

/// Serve one connection until it closes; on shutdown, or when it is idle
/// while the server is at its cap, finish the request in progress and
/// close. Its slots are given back when this returns.
async fn connection(
    shared: Shared,
    stream: TcpStream,
    peer: SocketAddr,
    slots: (OwnedSemaphorePermit, AddressSlot),
) {
    let Shared {
        router,
        http,
        mut stopping,
        at_cap,
        idle_at_cap: grace,
    } = shared;
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let (router, activity) = (router.clone(), Arc::clone(&activity));
            async move {
                activity.busy();
                let response = router.oneshot(req).await;
                activity.idle();
                response
            }
        })
    };
    let connection = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        _ = stopping.wait_for(|stopping| *stopping) => None,
        () = idle_at_cap(at_cap, &activity, grace) => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = ended {
        // Timeouts, resets, malformed requests: the client's doing.
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
    drop(slots);
}

/// Wait for a connection slot (saying so on `at_cap` while none is free),
/// then for a connection. `None` after an accept error (already handled);
/// the caller tries again.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    at_cap: &watch::Sender<bool>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = match Arc::clone(permits).try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            at_cap.send_replace(true);
            // The semaphore is never closed.
            let permit = Arc::clone(permits).acquire_owned().await.ok();
            at_cap.send_replace(false);
            permit?
        }
    };
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
