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

/// Reads a request body of at most `limit` bytes within the body timeout.
///
/// A body over the limit is refused with `limit-exceeded`, but only after a lingering read:
/// what the client still sends (at most `limit` bytes more, for at most [`LINGER`]) is read
/// and dropped, so that a client still writing reads the 413 instead of a broken pipe (nginx
/// does the same with `lingering_close`).
pub async fn read_body(ctx: &Ctx, body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, Problem> {
    let timeout = ctx.config().server.body_timeout();
    let deadline = tokio::time::Instant::now() + timeout;
    let too_large = || {
        Problem::new(
            Code::LimitExceeded,
            format!("the body exceeds {limit} bytes or was cut off"),
        )
    };
    match tokio::time::timeout_at(deadline, collect_body(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(Some(rest))) => {
            let linger = deadline.min(tokio::time::Instant::now() + LINGER);
            let _ = tokio::time::timeout_at(linger, drain_body(rest, limit)).await;
            Err(too_large())
        }
        Ok(Err(None)) => Err(too_large()),
        Err(_) => Err(Problem::new(
            Code::RequestTimeout,
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )),
    }
}

/// How long a refused body is still read and dropped.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole body, or `Err(Some(rest))` past the limit, or `Err(None)` when it was cut off.
async fn collect_body(mut body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, Option<axum::body::Body>> {
    use http_body_util::BodyExt;
    let hint = usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).unwrap_or(usize::MAX);
    // A claimed length reserves at most 1 MiB ahead of the bytes that arrive.
    let mut buf = Vec::with_capacity(hint.min(limit).min(1 << 20));
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| None)?.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            return Err(Some(body));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.into())
}

/// Reads and drops at most `budget` bytes of what is left of a body.
async fn drain_body(mut body: axum::body::Body, budget: usize) {
    use http_body_util::BodyExt;
    let mut left = budget;
    while let Some(Ok(frame)) = body.frame().await {
        let n = frame.data_ref().map_or(0, |d| d.len());
        match left.checked_sub(n) {
            Some(l) => left = l,
            None => return,
        }
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
