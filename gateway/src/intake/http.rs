//! The client API (legacy systems) over HTTPS: submit, status, receipt, inbox, ack.
//!
//! Routes:
//! - `POST /v1/messages` — submit one XML message (202 new, 200 same again, 409 conflict)
//! - `GET  /v1/messages/{id}` — status and timeline of one's own message
//! - `GET  /v1/messages/{id}/receipt` — the partner's receipt (XML)
//! - `GET  /v1/inbox[?wait=S]` — messages for the client's authority, not yet acknowledged;
//!   with `wait`, an empty inbox answers when a message arrives or after S seconds (≤ 60)
//! - `GET  /v1/inbox/{id}` — one opened message (XML)
//! - `POST /v1/inbox/{id}/ack` — the client took it: `delivered`, notice to the sender
//! - `GET  /v1/inbox/{id}/attachments` and `…/attachments/{n}` — files that travelled with it
//! - `POST /xta/{management,send,msgbox}` — the XTA 2 ports (`xta.rs`)
//!
//! Every error is a [`Problem`]. Authentication: `Authorization: Bearer TOKEN`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::actions::{acknowledge, inbox_message, own_message};
use crate::config::Client;
use crate::ctx::Ctx;
use crate::problem::{Code, Problem};
use crate::store::{Blob, rfc3339};
use crate::wire::{read_body, store_problem, xml_response};

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/v1/messages", post(submit))
        .route("/v1/messages/{id}", get(status))
        .route("/v1/messages/{id}/receipt", get(receipt))
        .route("/v1/inbox", get(inbox))
        .route("/v1/inbox/{id}", get(inbox_item))
        .route("/v1/inbox/{id}/ack", post(ack))
        .route("/v1/inbox/{id}/attachments", get(attachment_list))
        .route("/v1/inbox/{id}/attachments/{n}", get(attachment))
        .merge(super::xta::routes())
        .fallback(|| async { Problem::new(Code::NotFound, "no such endpoint") })
        .with_state(ctx)
}

/// The authenticated client of a request.
pub(crate) fn authenticate(ctx: &Ctx, headers: &HeaderMap) -> Result<Client, Problem> {
    let token = crate::wire::bearer(headers, "TOKEN")?;
    ctx.config()
        .clients
        .iter()
        .find(|c| c.token.matches(token))
        .cloned()
        .ok_or_else(|| Problem::new(Code::Unauthorized, "unknown token"))
}

async fn submit(State(ctx): State<Arc<Ctx>>, req: Request) -> Result<Response, Problem> {
    let client = authenticate(&ctx, req.headers())?;
    let content_type = crate::wire::content_type(req.headers());
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let form = mime == "multipart/form-data";
    let xml = mime.is_empty() || mime == "application/xml" || mime == "text/xml" || mime.ends_with("+xml");
    if !(xml || form) {
        return Err(Problem::new(
            Code::UnsupportedMediaType,
            format!(
                "Content-Type {mime} is neither XML nor a form; send application/xml, or multipart/form-data with attachments"
            ),
        ));
    }
    // Backpressure: a bounded number of submissions at once, each holding at most one body.
    let _permit = ctx
        .intake_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::overloaded(1))?;
    let submitted = if form {
        let form = super::multipart::read(&ctx, &content_type, req.into_body()).await?;
        let (folder, keep) = match form.files {
            Some((folder, manifest)) => (Some(folder), vec![(Blob::Attachments, manifest.encode())]),
            None => (None, Vec::new()),
        };
        let submitted =
            crate::intake::submit_as(&ctx, &client, Arc::from(form.message), None, keep, &|_| Ok(())).await?;
        // A resubmission keeps the files of the message it repeats; these go.
        if let (Some(folder), crate::intake::Submitted::Accepted(_)) = (folder, &submitted) {
            folder.keep();
        }
        submitted
    } else {
        let limit = ctx.config().limits.max_bytes;
        let bytes = read_body(&ctx, req.into_body(), limit).await?;
        crate::intake::submit(&ctx, &client, Arc::from(bytes.as_ref())).await?
    };
    let (status, id, state) = match submitted {
        crate::intake::Submitted::Accepted(id) => (StatusCode::ACCEPTED, id, "accepted".to_owned()),
        crate::intake::Submitted::AlreadyAccepted(id) => {
            let state = ctx
                .store
                .message(&id)
                .await
                .map_err(store_problem)?
                .map(|m| m.status.to_string())
                .unwrap_or_else(|| "accepted".into());
            (StatusCode::OK, id, state)
        }
    };
    let location = format!("/v1/messages/{id}");
    Ok((
        status,
        [(header::LOCATION, location)],
        axum::Json(json!({"id": id, "status": state})),
    )
        .into_response())
}

async fn status(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    let m = own_message(&ctx, client, &id).await?;
    Ok(axum::Json(status_json(&ctx, &m).await?).into_response())
}

/// An outbound message's status as `GET /v1/messages/{id}` answers it (and a drop folder's
/// `status/<id>.json` holds it).
pub(crate) async fn status_json(ctx: &Ctx, m: &crate::store::Message) -> Result<serde_json::Value, Problem> {
    let events = ctx.store.events(&m.id).await.map_err(store_problem)?;
    let has_receipt = ctx
        .store
        .blob(&m.id, Blob::Receipt)
        .await
        .map_err(store_problem)?
        .is_some();
    Ok(json!({
        "id": m.id,
        "status": m.status,
        "xoev_uuid": m.xoev_uuid,
        "message_type": m.message_type,
        "author": m.author,
        "reader": m.reader,
        "partner_node": m.partner_node,
        "created": rfc3339(m.created_at),
        "updated": rfc3339(m.updated_at),
        "error": m.error_code.as_ref().map(|c| json!({"code": c, "detail": m.error_detail})),
        "receipt": has_receipt.then(|| format!("/v1/messages/{}/receipt", m.id)),
        "timeline": events.iter().map(|e| json!({
            "status": e.status, "at": rfc3339(e.at), "detail": e.detail,
        })).collect::<Vec<_>>(),
    }))
}

async fn receipt(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    own_message(&ctx, client, &id).await?;
    // The latest word from the partner: its delivery notice if there is one, else its receipt.
    for blob in [Blob::Notice, Blob::Receipt] {
        if let Some(r) = ctx.store.blob(&id, blob).await.map_err(store_problem)? {
            return Ok(xml_response(StatusCode::OK, r));
        }
    }
    Err(Problem::new(Code::NotFound, "no receipt yet"))
}

/// `GET /v1/inbox` parameters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    /// Long poll: seconds to wait for a message while the inbox is empty (0–60).
    wait: Option<u64>,
}

/// The longest long poll.
const MAX_WAIT_SECONDS: u64 = 60;

async fn inbox(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<InboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    let wait = match query {
        Ok(q) => q.0.wait.unwrap_or(0),
        Err(e) => return Err(Problem::new(Code::InvalidRequest, e.body_text())),
    };
    if wait > MAX_WAIT_SECONDS {
        return Err(Problem::new(
            Code::InvalidRequest,
            format!("wait is at most {MAX_WAIT_SECONDS} seconds"),
        ));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    let items = loop {
        // Registered before the store is asked, so that an arrival in between is not missed.
        let arrival = ctx.inbox_arrivals.notified();
        tokio::pin!(arrival);
        arrival.as_mut().enable();
        let items = ctx.store.inbox(&client.authority).await.map_err(store_problem)?;
        let now = tokio::time::Instant::now();
        if !items.is_empty() || now >= deadline {
            break items;
        }
        // Another process of the node (shared store) may open it: look again every second.
        let next = deadline.min(now + std::time::Duration::from_secs(1));
        tokio::select! {
            _ = arrival => {}
            _ = tokio::time::sleep_until(next) => {}
        }
    };
    let list: Vec<_> = items
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "xoev_uuid": m.xoev_uuid,
                "message_type": m.message_type,
                "author": m.author,
                "reader": m.reader,
                "received": rfc3339(m.created_at),
                "href": format!("/v1/inbox/{}", m.id),
            })
        })
        .collect();
    Ok(axum::Json(json!({"messages": list})).into_response())
}

async fn inbox_item(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    inbox_message(&ctx, client, &id).await?;
    let payload = ctx
        .store
        .blob(&id, Blob::Payload)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(Code::NotFound, "the payload was purged"))?;
    let payload = crate::pipeline::validate::for_client(client, payload, &ctx.registry).await?;
    Ok(xml_response(StatusCode::OK, payload))
}

/// The attachments that travelled with an inbox message (none for most).
async fn attachments_of(ctx: &Ctx, client: &Client, id: &str) -> Result<crate::files::Manifest, Problem> {
    inbox_message(ctx, client, id).await?;
    match ctx.store.blob(id, Blob::Attachments).await.map_err(store_problem)? {
        Some(b) => crate::files::Manifest::decode(&b),
        None => Ok(crate::files::Manifest {
            folder: String::new(),
            files: Vec::new(),
        }),
    }
}

async fn attachment_list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    let list: Vec<_> = attachments_of(&ctx, client, &id)
        .await?
        .files
        .iter()
        .enumerate()
        .map(|(n, a)| {
            json!({
                "content_type": a.content_type,
                "filename": a.filename,
                "size": a.size,
                "sha256": a.sha256,
                "href": format!("/v1/inbox/{id}/attachments/{n}"),
            })
        })
        .collect();
    Ok(axum::Json(json!({"attachments": list})).into_response())
}

/// One attachment, streamed from its file (a `Range` of it on request).
async fn attachment(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, usize)>,
) -> Result<Response, Problem> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let client = &authenticate(&ctx, &headers)?;
    let manifest = attachments_of(&ctx, client, &id).await?;
    let a = manifest
        .files
        .get(n)
        .ok_or_else(|| Problem::new(Code::NotFound, format!("message {id} has no attachment {n}")))?;
    // The client's own bytes back to it: served as a download, never rendered.
    let media = axum::http::HeaderValue::from_str(&a.content_type)
        .unwrap_or(axum::http::HeaderValue::from_static("application/octet-stream"));
    let len = a.size as usize;
    let (status, range) = match byte_range(headers.get(header::RANGE), len) {
        Ok(None) => (StatusCode::OK, None),
        Ok(Some(r)) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        Err(()) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response());
        }
    };
    let path = ctx.config().files().plain(&manifest.folder, n);
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(message_id = %id, attachment = n, error = %e, "attachment file unreadable");
        Problem::new(Code::NotFound, format!("attachment {n} of message {id} was purged"))
    })?;
    let span = range.clone().unwrap_or(0..len);
    file.seek(std::io::SeekFrom::Start(span.start as u64))
        .await
        .map_err(|_| Problem::new(Code::Internal, "the attachment file cannot be read"))?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(span.len() as u64),
        256 * 1024,
    ));
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, media),
            (
                header::CONTENT_DISPOSITION,
                axum::http::HeaderValue::from_static("attachment"),
            ),
            (header::ACCEPT_RANGES, axum::http::HeaderValue::from_static("bytes")),
        ],
        [(header::CONTENT_LENGTH, span.len().to_string())],
        body,
    )
        .into_response();
    if let Some(r) = range
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!("bytes {}-{}/{len}", r.start, r.end - 1))
    {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// A `Range: bytes=…` header (RFC 9110 §14.1.2) over a body of `len` bytes: `Ok(None)` for the
/// whole body (no header, another unit, several ranges: answered whole), `Ok(Some(range))` for
/// one satisfiable range, `Err(())` for one that is not (416).
fn byte_range(header: Option<&axum::http::HeaderValue>, len: usize) -> Result<Option<std::ops::Range<usize>>, ()> {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last `n` bytes.
        let n: usize = last.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        len.saturating_sub(n)..len
    } else {
        let start: usize = first.parse().map_err(|_| ())?;
        let end = match last {
            "" => len,
            l => l.parse::<usize>().map_err(|_| ())?.saturating_add(1).min(len),
        };
        if start >= end {
            return Err(());
        }
        start..end
    };
    if range.start >= len {
        return Err(());
    }
    Ok(Some(range))
}

async fn ack(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    acknowledge(&ctx, client, &id, &format!("acknowledged by client {}", client.name)).await?;
    Ok(axum::Json(json!({"id": id, "status": "delivered"})).into_response())
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    fn r(h: &str, len: usize) -> Result<Option<std::ops::Range<usize>>, ()> {
        byte_range(Some(&axum::http::HeaderValue::from_str(h).unwrap()), len)
    }

    #[test]
    fn byte_ranges_as_rfc_9110_reads_them() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(r("bytes=0-0", 10), Ok(Some(0..1)));
        assert_eq!(r("bytes=2-5", 10), Ok(Some(2..6)));
        assert_eq!(r("bytes=7-", 10), Ok(Some(7..10)));
        assert_eq!(r("bytes=7-100", 10), Ok(Some(7..10)), "the end is clipped");
        assert_eq!(r("bytes=-3", 10), Ok(Some(7..10)), "the last three");
        assert_eq!(r("bytes=-30", 10), Ok(Some(0..10)));
        assert_eq!(r("bytes=10-", 10), Err(()), "starts past the end");
        assert_eq!(r("bytes=-0", 10), Err(()));
        assert_eq!(r("bytes=x-1", 10), Err(()));
        assert_eq!(r("bytes=0-1,4-5", 10), Ok(None), "several ranges: the whole body");
        assert_eq!(r("items=0-1", 10), Ok(None), "another unit: the whole body");
    }
}
