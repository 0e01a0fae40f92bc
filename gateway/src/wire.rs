//! What the HTTP listeners share: bearer-token authentication, bounded body reading, XML and
//! problem responses.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ctx::Ctx;
use crate::problem::{Code, Problem};
use crate::store::StoreError;

/// Maps a store failure to a client-facing problem: busy → 503 overloaded, full → 503
/// overloaded with a longer wait, else 500 internal.
pub fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::Busy => Problem::overloaded(1),
        StoreError::Full => {
            tracing::warn!("store at its size limit: new work refused");
            let mut p = Problem::overloaded(30);
            p.detail = "the node's store is full; retry later".into();
            p
        }
        StoreError::Failed(detail) => {
            tracing::error!(error = %detail, "store failure");
            Problem::new(Code::Internal, "the store is unavailable")
        }
    }
}

/// The bearer token of a request (`Authorization: Bearer TOKEN`); `usage` names what to send.
pub fn bearer<'h>(headers: &'h axum::http::HeaderMap, usage: &str) -> Result<&'h str, Problem> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Problem::new(Code::Unauthorized, format!("send Authorization: Bearer {usage}")))
}

/// Compares a presented secret with an expected one in constant time.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len() && openssl::memcmp::eq(presented.as_bytes(), expected.as_bytes())
}

/// Reads a request body of at most `limit` bytes within the body timeout.
pub async fn read_body(ctx: &Ctx, body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, Problem> {
    let timeout = ctx.config.server.body_timeout();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(Problem::new(
            Code::LimitExceeded,
            format!("the body exceeds {limit} bytes or was cut off"),
        )),
        Err(_) => Err(Problem::new(
            Code::RequestTimeout,
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )),
    }
}

/// An XML answer.
pub fn xml_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        bytes,
    )
        .into_response()
}
