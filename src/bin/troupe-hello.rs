//! `troupe-hello`: the reference row of `scripts/bench --cache` — a plain
//! axum hello-world with the service's runtime and allocator and nothing
//! else (no layers, no accept-loop limits, no logging), answering
//! `GET /health/live` with the service's body. The gap between it and the
//! service's own `/health/live` is what the real stack costs per request.
//!
//! `PORT` (default 3000) on 127.0.0.1. Stops on SIGINT or SIGTERM.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// The service's allocator (src/main.rs), so the reference differs from it
/// only in what runs per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    // The service's runtime: tokio's defaults (one worker per core).
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(port))
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let app = Router::new().route("/health/live", get(live));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await?;
    Ok(())
}

/// The body of the service's `/health/live`.
#[derive(Serialize)]
struct Live {
    status: &'static str,
}

async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// SIGINT or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
