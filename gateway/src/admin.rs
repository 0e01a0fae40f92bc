//! Admin listener (operators), plain HTTP, meant for loopback or a management network.
//!
//! Routes so far: `GET /healthz` (the process runs), `GET /readyz` (the store answers).
//! The admin API, metrics and dashboard come with the operators issue.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::node::Ctx;

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ctx)
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> (StatusCode, &'static str) {
    match ctx.store.counts().await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}
