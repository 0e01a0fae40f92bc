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

/// Room for `incoming` more bytes of attachment files, before any is written, else `503
/// overloaded`: they must fit the free space of the attachment folder's disk (a transfer that
/// cannot finish does not start, and leaves no partial file), and with `[store] max_size_mb`
/// the database and the attachment files together stay under 90 % of it (as the database
/// alone does for new work).
pub async fn room_for_files(ctx: &Ctx, incoming: u64) -> Result<(), Problem> {
    let config = ctx.config();
    if incoming > 0 {
        let files = config.files();
        let free = tokio::task::spawn_blocking(move || files.available())
            .await
            .ok()
            .flatten();
        if let Some(free) = free.filter(|&free| incoming > free) {
            tracing::warn!(
                free,
                incoming,
                "attachment folder: too little room for an incoming transfer"
            );
            let mut p = Problem::overloaded(60);
            p.detail = format!("the attachment folder's disk is full: {free} bytes free, {incoming} bytes needed");
            return Err(p);
        }
    }
    let max = config.store.max_size_mb;
    if max == 0 {
        return Ok(());
    }
    let soft = max * 1024 * 1024 / 10 * 9;
    let db = ctx.store.size().await.map_err(store_problem)?;
    let files = config.files();
    let used = tokio::task::spawn_blocking(move || files.usage()).await.unwrap_or(0);
    if db + used + incoming > soft {
        let mut p = Problem::overloaded(60);
        p.detail = format!(
            "the store is at its size limit for new work: the database and the attachment files would pass 90 % of max_size_mb ({max} MiB)"
        );
        return Err(p);
    }
    Ok(())
}

/// A request's `Content-Type` header as text (empty without one).
pub fn content_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
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
/// A body over the limit is refused with `limit-exceeded` at once; what the client still sends
/// is read and dropped by the connection as it closes (`tls::serve_tls`, lingering close), so
/// that a client still writing reads the 413 instead of a reset.
pub async fn read_body(ctx: &Ctx, body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, Problem> {
    let timeout = ctx.config().server.body_timeout();
    match tokio::time::timeout(timeout, collect_body(body, limit)).await {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(Problem::new(
            Code::LimitExceeded,
            format!("the body exceeds {limit} bytes or was cut off"),
        )),
        Err(_) => Err(Problem::new(
            Code::RequestTimeout,
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )),
    }
}

/// The whole body, or `None` past the limit or when it was cut off.
async fn collect_body(mut body: axum::body::Body, limit: usize) -> Option<axum::body::Bytes> {
    use http_body_util::BodyExt;
    let hint = usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).unwrap_or(usize::MAX);
    // A claimed length reserves at most 1 MiB ahead of the bytes that arrive.
    let mut buf = Vec::with_capacity(hint.min(limit).min(1 << 20));
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.ok()?.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            return None;
        }
        buf.extend_from_slice(&data);
    }
    Some(buf.into())
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
