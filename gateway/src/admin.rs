//! Admin listener (operators), plain HTTP, meant for loopback or a management network.
//!
//! Open routes: `GET /healthz` (the process runs), `GET /readyz` (the store answers).
//! Routes under `/admin/api/` need `Authorization: Bearer ADMIN_TOKEN` (`[admin] token`):
//! - `GET  /admin/api/messages?status=&direction=&partner=&type=&uuid=&since=&until=&limit=`
//!   message metadata, oldest first (`since`/`until`: RFC 3339)
//! - `GET  /admin/api/messages/{id}` — metadata and timeline (never the payload)
//! - `POST /admin/api/messages/{id}/retry` — a dead letter (`failed`) goes back to the relay
//!   with a fresh retry time-box
//! - `POST /admin/api/messages/{id}/cancel` — `accepted`, `sealed` or `failed` → `cancelled`
//! - `POST /admin/api/dlq/replay` — body `{"partner"?, "type"?, "since"?, "until"?}`: retry
//!   every dead letter that matches
//! - `GET  /admin/api/partners` — circuit state, in-flight count, last success and error
//!
//! The dashboard, metrics, audit log and OpenAPI document come with the operators issue.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::node::{Ctx, store_problem};
use crate::problem::{Code, Problem};
use crate::store::{Blob, Change, Direction, Filter, JobKind, Message, Millis, Status, now_millis, rfc3339};

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/admin/api/messages", get(list))
        .route("/admin/api/messages/{id}", get(show))
        .route("/admin/api/messages/{id}/retry", post(retry))
        .route("/admin/api/messages/{id}/cancel", post(cancel))
        .route("/admin/api/dlq/replay", post(replay))
        .route("/admin/api/partners", get(partners))
        .fallback(|| async { Problem::new(Code::NotFound, "no such endpoint") })
        .with_state(ctx)
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> (StatusCode, &'static str) {
    match ctx.store.counts().await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}

fn authorize(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Problem> {
    let token = crate::node::bearer(headers, "ADMIN_TOKEN")?;
    if crate::node::same_secret(token, &ctx.config.admin_token) {
        Ok(())
    } else {
        ctx.audit.note("anonymous", "admin-unauthorized", json!({}));
        Err(Problem::new(Code::Unauthorized, "wrong admin token"))
    }
}

/// A message's metadata as operators see it.
pub fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "direction": m.direction,
        "status": m.status,
        "client": m.client,
        "xoev_uuid": m.xoev_uuid,
        "message_type": m.message_type,
        "author": m.author,
        "reader": m.reader,
        "partner": m.partner_node,
        "remote_id": m.remote_id,
        "error": m.error_code.as_ref().map(|c| json!({"code": c, "detail": m.error_detail})),
        "created": rfc3339(m.created_at),
        "updated": rfc3339(m.updated_at),
    })
}

async fn find_message(ctx: &Ctx, id: &str) -> Result<Message, Problem> {
    ctx.store
        .message(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(Code::NotFound, format!("no message {id}")))
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<Millis>, Problem> {
    let Some(v) = v else { return Ok(None) };
    crate::store::parse_rfc3339(v)
        .map(Some)
        .ok_or_else(|| Problem::new(Code::InvalidRequest, format!("{name}: {v:?} is not an RFC 3339 time")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    direction: Option<String>,
    partner: Option<String>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    uuid: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

fn filter_of(q: &ListQuery) -> Result<Filter, Problem> {
    let mut status = Vec::new();
    for s in q.status.iter().flat_map(|s| s.split(',')) {
        status.push(Status::parse(s).ok_or_else(|| Problem::new(Code::InvalidRequest, format!("no status {s:?}")))?);
    }
    let direction = match q.direction.as_deref() {
        None => None,
        Some("inbound") => Some(Direction::Inbound),
        Some("outbound") => Some(Direction::Outbound),
        Some(d) => return Err(Problem::new(Code::InvalidRequest, format!("no direction {d:?}"))),
    };
    Ok(Filter {
        direction,
        status,
        partner_node: q.partner.clone(),
        message_type: q.message_type.clone(),
        xoev_uuid: q.uuid.clone(),
        since: time_param("since", &q.since)?,
        until: time_param("until", &q.until)?,
        limit: q.limit.unwrap_or(1000).min(10_000),
    })
}

async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    authorize(&ctx, &headers)?;
    // A malformed query is a problem with a code like every other rejection.
    let Query(q) = q.map_err(|e| Problem::new(Code::InvalidRequest, e.body_text()))?;
    let items = ctx.store.list(filter_of(&q)?).await.map_err(store_problem)?;
    let list: Vec<Value> = items.iter().map(message_json).collect();
    Ok(axum::Json(json!({"messages": list})).into_response())
}

async fn show(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    authorize(&ctx, &headers)?;
    let m = find_message(&ctx, &id).await?;
    let events = ctx.store.events(&id).await.map_err(store_problem)?;
    let mut v = message_json(&m);
    v["timeline"] = events
        .iter()
        .map(|e| json!({"status": e.status, "at": rfc3339(e.at), "detail": e.detail}))
        .collect();
    Ok(axum::Json(v).into_response())
}

/// Sends a dead letter back to the relay with a fresh retry time-box; returns its new state.
pub async fn retry_message(ctx: &Ctx, id: &str) -> Result<Status, Problem> {
    let m = find_message(ctx, id).await?;
    if m.direction != Direction::Outbound || m.status != Status::Failed {
        return Err(Problem::new(
            Code::WrongState,
            format!(
                "only failed outbound messages can be retried; {id} is {} {}",
                direction_name(m.direction),
                m.status
            ),
        ));
    }
    let sealed = ctx
        .store
        .blob(id, Blob::Envelope)
        .await
        .map_err(store_problem)?
        .is_some();
    let to = if sealed { Status::Sealed } else { Status::Accepted };
    let now = now_millis();
    let applied = ctx
        .store
        .apply(Change {
            message_id: id.to_owned(),
            expect: vec![Status::Failed],
            status: Some(to),
            detail: Some("retried by an operator".into()),
            drop_jobs: true,
            clear_error: true,
            deadline: Some(now + ctx.config.relay.retry_window.as_millis() as i64),
            enqueue: vec![(JobKind::Relay, now)],
            ..Change::default()
        })
        .await
        .map_err(store_problem)?;
    if !applied {
        return Err(Problem::new(Code::WrongState, format!("{id} changed state meanwhile")));
    }
    tracing::info!(message_id = %id, "operator retry");
    ctx.wake(JobKind::Relay);
    Ok(to)
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

async fn retry(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    authorize(&ctx, &headers)?;
    let result = retry_message(&ctx, &id).await;
    ctx.audit.note("admin", "retry", outcome(&id, &result));
    let status = result?;
    Ok(axum::Json(json!({"id": id, "status": status})).into_response())
}

/// An audit entry's fields for an operator action on one message: the id and what came of it.
fn outcome<T>(id: &str, result: &Result<T, Problem>) -> Value {
    match result {
        Ok(_) => json!({"message_id": id, "outcome": "ok"}),
        Err(p) => json!({"message_id": id, "outcome": p.code.as_str()}),
    }
}

async fn cancel(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    authorize(&ctx, &headers)?;
    let result = cancel_message(&ctx, &id).await;
    ctx.audit.note("admin", "cancel", outcome(&id, &result));
    result?;
    Ok(axum::Json(json!({"id": id, "status": Status::Cancelled})).into_response())
}

async fn cancel_message(ctx: &Ctx, id: &str) -> Result<(), Problem> {
    let id = id.to_owned();
    let m = find_message(ctx, &id).await?;
    let cancellable = [Status::Accepted, Status::Sealed, Status::Failed];
    if m.direction != Direction::Outbound || !cancellable.contains(&m.status) {
        return Err(Problem::new(
            Code::WrongState,
            format!(
                "only outbound messages not yet sent can be cancelled; {id} is {}",
                m.status
            ),
        ));
    }
    let applied = ctx
        .store
        .apply(Change {
            message_id: id.clone(),
            expect: cancellable.to_vec(),
            unless_leased: true,
            status: Some(Status::Cancelled),
            detail: Some("cancelled by an operator".into()),
            error: Some((Code::Cancelled.as_str().into(), "cancelled by an operator".into())),
            drop_jobs: true,
            ..Change::default()
        })
        .await
        .map_err(store_problem)?;
    if !applied {
        return Err(Problem::new(
            Code::WrongState,
            format!("{id} is being sent right now or changed state; try again"),
        ));
    }
    tracing::info!(message_id = %id, "operator cancel");
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayFilter {
    partner: Option<String>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

async fn replay(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response, Problem> {
    authorize(&ctx, &headers)?;
    let f: ReplayFilter = if body.is_empty() {
        ReplayFilter::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::new(Code::InvalidRequest, format!("the filter is not valid JSON: {e}")))?
    };
    let dead = ctx
        .store
        .list(Filter {
            direction: Some(Direction::Outbound),
            status: vec![Status::Failed],
            partner_node: f.partner,
            message_type: f.message_type,
            since: time_param("since", &f.since)?,
            until: time_param("until", &f.until)?,
            limit: 10_000,
            ..Filter::default()
        })
        .await
        .map_err(store_problem)?;
    let mut replayed = Vec::new();
    let mut skipped = Vec::new();
    for m in dead {
        match retry_message(&ctx, &m.id).await {
            Ok(_) => replayed.push(m.id),
            Err(p) => skipped.push(json!({"id": m.id, "reason": p.detail})),
        }
    }
    ctx.audit.note(
        "admin",
        "dlq-replay",
        json!({"replayed": replayed.len(), "skipped": skipped.len()}),
    );
    Ok(axum::Json(json!({"replayed": replayed, "skipped": skipped})).into_response())
}

async fn partners(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, Problem> {
    authorize(&ctx, &headers)?;
    let known: Vec<crate::partners::Health> = ctx
        .config
        .partners
        .iter()
        .map(|p| ctx.partners.health_of(&p.node))
        .collect();
    Ok(axum::Json(json!({"partners": known})).into_response())
}
