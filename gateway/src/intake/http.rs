//! The client API (legacy systems) over HTTPS: submit, status, receipt, inbox, ack.
//!
//! Routes:
//! - `POST /v1/messages` — submit one XML message (202 new, 200 same again, 409 conflict)
//! - `GET  /v1/messages/{id}` — status and timeline of one's own message
//! - `GET  /v1/messages/{id}/receipt` — the partner's receipt (XML)
//! - `GET  /v1/inbox` — messages for the client's authority, not yet acknowledged
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
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !(mime == "application/xml" || mime == "text/xml" || mime.ends_with("+xml")) {
            return Err(Problem::new(
                Code::UnsupportedMediaType,
                format!("Content-Type {mime} is not XML; send application/xml"),
            ));
        }
    }
    // Backpressure: a bounded number of submissions at once, each holding at most one body.
    let _permit = ctx
        .intake_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::overloaded(1))?;
    let limit = ctx.config().limits.max_bytes;
    let bytes = read_body(&ctx, req.into_body(), limit).await?;
    let (status, id, state) = match crate::intake::submit(&ctx, &client, Arc::from(bytes.as_ref())).await? {
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

async fn inbox(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    let items = ctx.store.inbox(&client.authority).await.map_err(store_problem)?;
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
async fn attachments_of(ctx: &Ctx, client: &Client, id: &str) -> Result<Vec<crate::envelope::Attachment>, Problem> {
    inbox_message(ctx, client, id).await?;
    match ctx.store.blob(id, Blob::Attachments).await.map_err(store_problem)? {
        Some(b) => crate::envelope::decode_attachments(&b),
        None => Ok(Vec::new()),
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
        .iter()
        .enumerate()
        .map(|(n, a)| {
            json!({
                "content_type": a.content_type,
                "filename": a.filename,
                "size": a.data.len(),
                "href": format!("/v1/inbox/{id}/attachments/{n}"),
            })
        })
        .collect();
    Ok(axum::Json(json!({"attachments": list})).into_response())
}

async fn attachment(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, usize)>,
) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    let a = attachments_of(&ctx, client, &id)
        .await?
        .into_iter()
        .nth(n)
        .ok_or_else(|| Problem::new(Code::NotFound, format!("message {id} has no attachment {n}")))?;
    // The client's own bytes back to it: served as a download, never rendered.
    let media = axum::http::HeaderValue::from_str(&a.content_type)
        .unwrap_or(axum::http::HeaderValue::from_static("application/octet-stream"));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, media),
            (
                header::CONTENT_DISPOSITION,
                axum::http::HeaderValue::from_static("attachment"),
            ),
        ],
        a.data,
    )
        .into_response())
}

async fn ack(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let client = &authenticate(&ctx, &headers)?;
    acknowledge(&ctx, client, &id, &format!("acknowledged by client {}", client.name)).await?;
    Ok(axum::Json(json!({"id": id, "status": "delivered"})).into_response())
}
