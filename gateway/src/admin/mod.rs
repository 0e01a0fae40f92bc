//! Admin listener (operators), plain HTTP, meant for loopback or a management network.
//!
//! Open routes: `GET /healthz` (the process runs), `GET /readyz` (the store answers),
//! `GET /metrics` (Prometheus; see [`crate::telemetry`]), `GET /admin/` (the dashboard, one
//! embedded page that asks for the token) and `GET /admin/api/openapi.json` (this API's
//! OpenAPI 3.1 document, generated from the handlers below).
//! Every other route under `/admin/api/` needs `Authorization: Bearer ADMIN_TOKEN`
//! (`[admin] token`); see the OpenAPI document for the full list. Message views are metadata
//! only: a payload is shown only on `POST …/payload` with a reason, which goes to the audit log.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::access::{AdminToken, Role};
use crate::actions::{cancel_message, find_message, retry_message};
use crate::certs::{CertificateView, certificates};
use crate::ctx::Ctx;
use crate::health::Health;
use crate::problem::{Code, Problem};
use crate::store::{Blob, Direction, Filter, Message, Millis, Status, now_millis, rfc3339};
use crate::wire::store_problem;

mod metrics;
mod reload;

const DASHBOARD: &str = include_str!("dashboard.html");

pub fn router(ctx: Arc<Ctx>) -> Router {
    let metrics = crate::telemetry::install();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(move |State(ctx): State<Arc<Ctx>>| async move {
                let text = metrics::render(&ctx, &metrics).await;
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
            }),
        )
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(dashboard))
        .route(
            "/admin/api/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .route("/admin/api/status", get(status))
        .route("/admin/api/queues", get(queues))
        .route("/admin/api/stats", get(stats))
        .route("/admin/api/messages", get(list))
        .route("/admin/api/messages/{id}", get(show))
        .route("/admin/api/messages/{id}/payload", post(payload))
        .route("/admin/api/reload", post(reload::reload))
        .route("/admin/api/messages/{id}/retry", post(retry))
        .route("/admin/api/messages/{id}/cancel", post(cancel))
        .route("/admin/api/dlq/replay", post(replay))
        .route("/admin/api/partners", get(partners))
        .route("/admin/api/certificates", get(certificates_route))
        .route("/admin/api/audit", get(audit_tail))
        .fallback(|| async { Problem::new(Code::NotFound, "no such endpoint") })
        .with_state(ctx)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Poststelle admin API", description = "Operators' view of one node: queues, messages, dead letters, partners, certificates, audit."),
    paths(status, queues, stats, list, show, payload, retry, cancel, replay, partners, certificates_route, audit_tail, reload::reload),
    components(schemas(Problem, crate::problem::Code, crate::problem::Diagnostic), responses(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The dashboard page (assets inline, nothing fetched from elsewhere).
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DASHBOARD,
    )
        .into_response()
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> (StatusCode, String) {
    match ctx.store.counts().await {
        // A refused reload leaves the node serving on the configuration loaded before: ready,
        // and it says so.
        Ok(_) => (StatusCode::OK, format!("ready\n{}", reload::readiness_note(&ctx))),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n".into()),
    }
}

/// The admin token of a request, if its role allows `need`. A wrong token is audited under the
/// name `unknown` with no hint which part was wrong; a role that may not is audited under the
/// token's name and answered `403 not-permitted`.
async fn authorize(ctx: &Ctx, headers: &HeaderMap, need: Role) -> Result<AdminToken, Problem> {
    let token = crate::wire::bearer(headers, "ADMIN_TOKEN")?;
    let config = ctx.config();
    let Some(t) = config.admin.tokens.iter().find(|t| t.secret.matches(token)) else {
        ctx.audit.note("unknown", "admin-unauthorized", json!({})).await;
        return Err(Problem::new(Code::Unauthorized, "wrong admin token"));
    };
    if t.role < need {
        ctx.audit
            .note(&t.name, "admin-not-permitted", json!({"role": t.role, "needs": need}))
            .await;
        return Err(Problem::new(
            Code::NotPermitted,
            format!(
                "the admin token {:?} has the role {}; this needs {need}",
                t.name, t.role
            ),
        ));
    }
    Ok(t.clone())
}

/// A problem's code and detail, as recorded on a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorView {
    pub code: String,
    pub detail: Option<String>,
}

/// A message's metadata as operators see it (never the payload).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub direction: Direction,
    pub status: Status,
    /// Outbound: the submitting client.
    pub client: Option<String>,
    pub xoev_uuid: String,
    pub message_type: String,
    /// DVDV id of the author and reader authorities.
    pub author: String,
    pub reader: String,
    /// The partner node: recipient's (outbound) or sender's (inbound).
    pub partner: String,
    /// Inbound: the sender node's id for the message.
    pub remote_id: Option<String>,
    pub error: Option<ErrorView>,
    /// RFC 3339.
    pub created: String,
    pub updated: String,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.id.clone(),
            direction: m.direction,
            status: m.status,
            client: m.client.clone(),
            xoev_uuid: m.xoev_uuid.clone(),
            message_type: m.message_type.clone(),
            author: m.author.clone(),
            reader: m.reader.clone(),
            partner: m.partner_node.clone(),
            remote_id: m.remote_id.clone(),
            error: m.error_code.as_ref().map(|c| ErrorView {
                code: c.clone(),
                detail: m.error_detail.clone(),
            }),
            created: rfc3339(m.created_at),
            updated: rfc3339(m.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub status: Status,
    pub at: String,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageView,
    /// Every state the message went through, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    /// Oldest first, or newest first with `order=desc`.
    pub messages: Vec<MessageView>,
}

/// An optional text filter; empty counts as absent (as a search form sends it). Times and
/// states are checked strictly.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|v| !v.is_empty())
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<Millis>, Problem> {
    let Some(v) = v else { return Ok(None) };
    crate::store::parse_rfc3339(v)
        .map(Some)
        .ok_or_else(|| Problem::new(Code::InvalidRequest, format!("{name}: {v:?} is not an RFC 3339 time")))
}

/// `value`, or an `invalid-request` problem when it is outside `range`.
fn within<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, Problem> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(Problem::new(
            Code::InvalidRequest,
            format!("{name}: between {} and {}", range.start(), range.end()),
        ))
    }
}

/// A query string, or an `invalid-request` problem saying what is wrong with it.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(q)| q)
        .map_err(|e| Problem::new(Code::InvalidRequest, e.body_text()))
}

/// Counts per state, summed up the way the overview shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub node: String,
    pub version: String,
    /// RFC 3339.
    pub started: String,
    pub uptime_seconds: u64,
    /// Messages per direction and state (states without messages left out).
    #[schema(value_type = Object)]
    pub counts: Value,
    /// Outbound messages in `failed`.
    pub dead_letters: u64,
    /// Outbound messages accepted, sealed or sent (not yet received by the partner).
    pub in_flight: u64,
    /// Inbound messages received or opened, not yet delivered to the client.
    pub inbound_pending: u64,
    /// Outbound messages the partner rejected, inbound ones we refused.
    pub rejected: u64,
    pub partners: Vec<Health>,
    /// The configured certificate that expires first.
    pub next_certificate_expiry: Option<CertificateView>,
    /// The process that answered (its id among `processes`).
    pub instance: String,
    /// The node's processes: with a shared store every one that sent a heartbeat in the last
    /// day, alive if within the last 15 s; with SQLite this process alone.
    pub processes: Vec<ProcessView>,
    /// The admin token that asked: its name and role (the dashboard hides what it may not do).
    pub token: TokenView,
    /// The configuration in force and a refused reload, if the last one was.
    pub configuration: reload::ConfigView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessView {
    /// Lease holder name: `node@host`, on a shared store `node@host:FOLDER#slot` (FOLDER: the data folder's id).
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339.
    pub started: String,
    /// The last heartbeat (RFC 3339).
    pub last_seen: String,
    pub alive: bool,
}

/// The node's processes as its store's heartbeat rows show them (this one alone without).
async fn processes(ctx: &Ctx) -> Result<Vec<ProcessView>, Problem> {
    let now = now_millis();
    let mut rows = ctx.store.processes().await.map_err(store_problem)?;
    if rows.is_empty() {
        rows.push(ctx.process(now));
    }
    Ok(rows
        .into_iter()
        .map(|p| ProcessView {
            alive: now - p.last_seen < crate::store::PROCESS_STALE_MS,
            id: p.id,
            host: p.host,
            pid: p.pid,
            started: rfc3339(p.started),
            last_seen: rfc3339(p.last_seen),
        })
        .collect())
}

#[utoipa::path(get, path = "/admin/api/status", tag = "overview",
    responses((status = 200, body = StatusView), (status = 401, response = Problem)))]
async fn status(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, Problem> {
    let caller = authorize(&ctx, &headers, Role::Viewer).await?;
    let counts = ctx.store.counts().await.map_err(store_problem)?;
    let mut by_direction = json!({"outbound": {}, "inbound": {}});
    let (mut dead, mut in_flight, mut pending, mut rejected) = (0, 0, 0, 0);
    for (d, s, n) in counts {
        by_direction[d.as_str()][s.as_str()] = json!(n);
        match (d, s) {
            (Direction::Outbound, Status::Failed) => dead += n,
            (Direction::Outbound, Status::Accepted | Status::Sealed | Status::Sent) => in_flight += n,
            (Direction::Inbound, Status::Received | Status::Opened) => pending += n,
            (Direction::Outbound, Status::Rejected) | (Direction::Inbound, Status::Refused) => rejected += n,
            _ => {}
        }
    }
    let now = now_millis();
    Ok(axum::Json(StatusView {
        node: ctx.config().node_name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: rfc3339(ctx.started),
        uptime_seconds: ((now - ctx.started).max(0) / 1000) as u64,
        counts: by_direction,
        dead_letters: dead,
        in_flight,
        inbound_pending: pending,
        rejected,
        partners: partner_health(&ctx),
        next_certificate_expiry: certificates(&ctx.live().certificates, &ctx.revocation)
            .into_iter()
            .next(),
        instance: ctx.instance.clone(),
        processes: processes(&ctx).await?,
        token: TokenView {
            name: caller.name,
            role: caller.role,
        },
        configuration: reload::config_view(&ctx),
    })
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub direction: Direction,
    pub partner: String,
    pub status: Status,
    pub depth: u64,
    /// Since when the longest-waiting message has been in this state (RFC 3339).
    pub oldest: String,
    pub oldest_age_seconds: u64,
}

/// A drop-folder client's folder: files not yet picked up, and files refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct DropFolderView {
    pub client: String,
    pub path: String,
    /// Finished files in `out/` not yet picked up.
    pub waiting: u64,
    pub oldest_age_seconds: u64,
    /// Files in `rejected/` (each with its problem in `NAME.json`).
    pub rejected: u64,
}

/// A partner's attachment streams waiting at this node (arriving, or arrived and not yet
/// opened), at most `limits.max_partner_staging_bytes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerStreamsView {
    pub partner: String,
    pub streams: u64,
    pub bytes: u64,
    /// Since the least recently written stream was last written.
    pub oldest_age_seconds: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Every state but the ended ones (dead letters included), per direction and partner.
    pub queues: Vec<QueueView>,
    /// The drop folders of clients that have one.
    pub drop_folders: Vec<DropFolderView>,
    /// Partners with attachment streams waiting here.
    pub partner_streams: Vec<PartnerStreamsView>,
}

/// Each drop-folder client's folder and its summary (read off the file system, off the async
/// threads).
pub(crate) async fn drop_summaries(ctx: &Ctx) -> Vec<(String, crate::dropdir::DropDir, crate::dropdir::Summary)> {
    let dirs: Vec<(String, crate::dropdir::DropDir)> = ctx
        .config()
        .clients
        .iter()
        .filter_map(|c| Some((c.name.clone(), c.drop_dir.clone()?)))
        .collect();
    if dirs.is_empty() {
        return Vec::new();
    }
    tokio::task::spawn_blocking(move || {
        dirs.into_iter()
            .map(|(c, d)| {
                let s = d.summary();
                (c, d, s)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

#[utoipa::path(get, path = "/admin/api/queues", tag = "overview",
    responses((status = 200, body = QueueList), (status = 401, response = Problem)))]
async fn queues(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, Problem> {
    authorize(&ctx, &headers, Role::Viewer).await?;
    let now = now_millis();
    let queues = ctx.store.queues().await.map_err(store_problem)?;
    let queues = queues
        .into_iter()
        .map(|q| QueueView {
            direction: q.direction,
            partner: q.partner_node,
            status: q.status,
            depth: q.depth,
            oldest: rfc3339(q.oldest),
            oldest_age_seconds: ((now - q.oldest).max(0) / 1000) as u64,
        })
        .collect();
    let drop_folders = drop_summaries(&ctx)
        .await
        .into_iter()
        .map(|(client, dir, s)| DropFolderView {
            path: dir.root.display().to_string(),
            client,
            waiting: s.waiting,
            oldest_age_seconds: s.oldest_age_seconds,
            rejected: s.rejected,
        })
        .collect();
    let files = ctx.config().files();
    let staged = tokio::task::spawn_blocking(move || crate::files::staged_by_partner(&files))
        .await
        .unwrap_or_default();
    let partner_streams = staged
        .into_iter()
        .map(|(partner, s)| PartnerStreamsView {
            partner,
            streams: s.streams,
            bytes: s.bytes,
            oldest_age_seconds: s.oldest_age_seconds,
        })
        .collect();
    Ok(axum::Json(QueueList {
        queues,
        drop_folders,
        partner_streams,
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// How far back, in minutes (1–1440, default 60).
    #[param(minimum = 1, maximum = 1440)]
    minutes: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteView {
    /// The minute's start (RFC 3339).
    pub minute: String,
    pub delivered: u64,
    pub failed: u64,
    pub received: u64,
    pub latency_ms_avg: Option<f64>,
    pub latency_ms_max: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Minutes with activity, oldest first (outbound delivered and failed, inbound received;
    /// latency: acceptance to delivery).
    pub minutes: Vec<MinuteView>,
}

#[utoipa::path(get, path = "/admin/api/stats", tag = "overview", params(StatsQuery),
    responses((status = 200, body = Stats), (status = 400, response = Problem), (status = 401, response = Problem)))]
async fn stats(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    authorize(&ctx, &headers, Role::Viewer).await?;
    let q = query(q)?;
    let minutes = within("minutes", q.minutes.unwrap_or(60), 1..=1440)?;
    let since = now_millis() - i64::from(minutes) * 60_000;
    let rows = ctx.store.minutes(since).await.map_err(store_problem)?;
    let minutes = rows
        .into_iter()
        .map(|m| MinuteView {
            minute: rfc3339(m.start),
            delivered: m.delivered,
            failed: m.failed,
            received: m.received,
            latency_ms_avg: m.latency_avg_ms,
            latency_ms_max: m.latency_max_ms,
        })
        .collect();
    Ok(axum::Json(Stats { minutes }).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// State(s), comma-separated.
    #[param(
        pattern = "^((accepted|sealed|sent|received|opened|delivered|rejected|refused|failed|cancelled)(,(accepted|sealed|sent|received|opened|delivered|rejected|refused|failed|cancelled))*)?$"
    )]
    status: Option<String>,
    #[param(value_type = Option<Direction>)]
    direction: Option<String>,
    partner: Option<String>,
    /// The XÖV message type code.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    message_type: Option<String>,
    /// The XÖV message UUID.
    uuid: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// At most this many (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// `asc` (default): oldest first; `desc`: newest first (the limit keeps the newest).
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
}

fn filter_of(q: &ListQuery) -> Result<Filter, Problem> {
    let mut status = Vec::new();
    for s in given(&q.status).iter().flat_map(|s| s.split(',')) {
        status.push(Status::parse(s).ok_or_else(|| Problem::new(Code::InvalidRequest, format!("no status {s:?}")))?);
    }
    let direction = match q.direction.as_deref() {
        None => None,
        Some("inbound") => Some(Direction::Inbound),
        Some("outbound") => Some(Direction::Outbound),
        Some(d) => return Err(Problem::new(Code::InvalidRequest, format!("no direction {d:?}"))),
    };
    let newest_first = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err(Problem::new(
                Code::InvalidRequest,
                format!("order: asc or desc, not {o:?}"),
            ));
        }
    };
    let limit = within("limit", q.limit.unwrap_or(1000), 1..=10_000)?;
    Ok(Filter {
        direction,
        status,
        partner_node: given(&q.partner).map(str::to_owned),
        message_type: given(&q.message_type).map(str::to_owned),
        xoev_uuid: given(&q.uuid).map(str::to_owned),
        since: time_param("since", &q.since)?,
        until: time_param("until", &q.until)?,
        limit,
        newest_first,
    })
}

#[utoipa::path(get, path = "/admin/api/messages", tag = "messages", params(ListQuery),
    responses((status = 200, body = MessageList), (status = 400, response = Problem), (status = 401, response = Problem)))]
async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    authorize(&ctx, &headers, Role::Viewer).await?;
    let q = query(q)?;
    let items = ctx.store.list(filter_of(&q)?).await.map_err(store_problem)?;
    let messages = items.iter().map(MessageView::from).collect();
    Ok(axum::Json(MessageList { messages }).into_response())
}

#[utoipa::path(get, path = "/admin/api/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "The node's message id")),
    responses((status = 200, body = MessageDetail), (status = 401, response = Problem), (status = 404, response = Problem)))]
async fn show(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    authorize(&ctx, &headers, Role::Viewer).await?;
    let m = find_message(&ctx, &id).await?;
    let events = ctx.store.events(&id).await.map_err(store_problem)?;
    let timeline = events
        .iter()
        .map(|e| TimelineEntry {
            status: e.status,
            at: rfc3339(e.at),
            detail: e.detail.clone(),
        })
        .collect();
    Ok(axum::Json(MessageDetail {
        message: MessageView::from(&m),
        timeline,
    })
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadRequest {
    /// Why the payload is needed (recorded in the audit log; 3–500 characters, one line).
    #[schema(min_length = 3, max_length = 500, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayloadView {
    pub id: String,
    /// `payload`: the XÖV message (outbound: as submitted; inbound: as opened).
    pub kind: String,
    pub payload: String,
}

/// The payload of one message, on explicit request: the reason and who asked go to the audit
/// log before anything is shown.
#[utoipa::path(post, path = "/admin/api/messages/{id}/payload", tag = "messages",
    params(("id" = String, Path, description = "The node's message id")),
    request_body = PayloadRequest,
    responses((status = 200, body = PayloadView), (status = 400, response = Problem), (status = 401, response = Problem), (status = 403, response = Problem), (status = 404, response = Problem)))]
async fn payload(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<axum::Json<PayloadRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    let caller = authorize(&ctx, &headers, Role::Auditor).await?;
    let axum::Json(req) = body.map_err(|e| Problem::new(Code::InvalidRequest, e.body_text()))?;
    let reason = req.reason.as_str();
    let chars = reason.chars().count();
    if !(3..=500).contains(&chars) || reason.chars().any(char::is_control) {
        return Err(Problem::new(
            Code::InvalidRequest,
            "reason: 3 to 500 characters on one line, saying why the payload is needed",
        ));
    }
    find_message(&ctx, &id).await?;
    let blob = ctx.store.blob(&id, Blob::Payload).await.map_err(store_problem)?;
    let outcome = if blob.is_some() { "shown" } else { "no-payload" };
    // The reason is the operator's own words: recorded, never logged. No record, no payload.
    ctx.audit
        .record(
            &caller.name,
            "payload-viewed",
            json!({"message_id": id, "reason": reason, "outcome": outcome}),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log; payload not shown");
            Problem::new(
                Code::Internal,
                "the audit log cannot be written, so the payload is not shown",
            )
        })?;
    let Some(blob) = blob else {
        return Err(Problem::new(
            Code::NotFound,
            format!("{id} has no payload (not opened yet, or purged after the retention time)"),
        ));
    };
    Ok(axum::Json(PayloadView {
        id,
        kind: "payload".into(),
        payload: String::from_utf8_lossy(&blob).into_owned(),
    })
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Action {
    pub id: String,
    /// The message's state after the action.
    pub status: Status,
}

/// Retries a dead letter (`failed`, outbound) with a fresh retry time-box.
#[utoipa::path(post, path = "/admin/api/messages/{id}/retry", tag = "dead letters",
    params(("id" = String, Path, description = "The node's message id")),
    responses((status = 200, body = Action), (status = 401, response = Problem), (status = 403, response = Problem), (status = 404, response = Problem), (status = 409, response = Problem)))]
async fn retry(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let caller = authorize(&ctx, &headers, Role::Operator).await?;
    let result = retry_message(&ctx, &id).await;
    ctx.audit.note(&caller.name, "retry", outcome(&id, &result)).await;
    let status = result?;
    Ok(axum::Json(Action { id, status }).into_response())
}

/// An audit entry's fields for an operator action on one message: the id and what came of it.
fn outcome<T>(id: &str, result: &Result<T, Problem>) -> Value {
    match result {
        Ok(_) => json!({"message_id": id, "outcome": "ok"}),
        Err(p) => json!({"message_id": id, "outcome": p.code.as_str()}),
    }
}

/// Cancels an outbound message not yet sent (`accepted`, `sealed`) or a dead letter.
#[utoipa::path(post, path = "/admin/api/messages/{id}/cancel", tag = "dead letters",
    params(("id" = String, Path, description = "The node's message id")),
    responses((status = 200, body = Action), (status = 401, response = Problem), (status = 403, response = Problem), (status = 404, response = Problem), (status = 409, response = Problem)))]
async fn cancel(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let caller = authorize(&ctx, &headers, Role::Operator).await?;
    let result = cancel_message(&ctx, &id, "cancelled by an operator").await;
    ctx.audit.note(&caller.name, "cancel", outcome(&id, &result)).await;
    result?;
    Ok(axum::Json(Action {
        id,
        status: Status::Cancelled,
    })
    .into_response())
}

/// Which dead letters to replay (all given fields must match; none: every dead letter).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    partner: Option<String>,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    message_type: Option<String>,
    /// Created at or after (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Created before (RFC 3339).
    #[schema(format = DateTime)]
    until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// Retries every dead letter matching the filter.
#[utoipa::path(post, path = "/admin/api/dlq/replay", tag = "dead letters",
    request_body(content = Option<ReplayFilter>),
    responses((status = 200, body = Replayed), (status = 400, response = Problem), (status = 401, response = Problem), (status = 403, response = Problem)))]
async fn replay(State(ctx): State<Arc<Ctx>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response, Problem> {
    let caller = authorize(&ctx, &headers, Role::Operator).await?;
    let f: ReplayFilter = if body.is_empty() {
        ReplayFilter::default()
    } else {
        serde_json::from_slice::<Option<ReplayFilter>>(&body)
            .map_err(|e| Problem::new(Code::InvalidRequest, format!("the filter is not valid JSON: {e}")))?
            .unwrap_or_default()
    };
    let dead = ctx
        .store
        .list(Filter {
            direction: Some(Direction::Outbound),
            status: vec![Status::Failed],
            partner_node: given(&f.partner).map(str::to_owned),
            message_type: given(&f.message_type).map(str::to_owned),
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
            Err(p) => skipped.push(Skipped {
                id: m.id,
                reason: p.detail,
            }),
        }
    }
    ctx.audit
        .note(
            &caller.name,
            "dlq-replay",
            json!({"replayed": replayed.len(), "skipped": skipped.len()}),
        )
        .await;
    Ok(axum::Json(Replayed { replayed, skipped }).into_response())
}

fn partner_health(ctx: &Ctx) -> Vec<Health> {
    ctx.config()
        .partners
        .iter()
        .map(|p| ctx.partners.health_of(&p.node))
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerList {
    pub partners: Vec<Health>,
}

#[utoipa::path(get, path = "/admin/api/partners", tag = "overview",
    responses((status = 200, body = PartnerList), (status = 401, response = Problem)))]
async fn partners(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, Problem> {
    authorize(&ctx, &headers, Role::Viewer).await?;
    Ok(axum::Json(PartnerList {
        partners: partner_health(&ctx),
    })
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateList {
    pub certificates: Vec<CertificateView>,
}

#[utoipa::path(get, path = "/admin/api/certificates", tag = "overview",
    responses((status = 200, body = CertificateList), (status = 401, response = Problem)))]
async fn certificates_route(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, Problem> {
    authorize(&ctx, &headers, Role::Viewer).await?;
    Ok(axum::Json(CertificateList {
        certificates: certificates(&ctx.live().certificates, &ctx.revocation),
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// The last this many entries (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditTail {
    /// The newest entries of the audit log, oldest first, as written (hash chain included).
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Value>,
}

#[utoipa::path(get, path = "/admin/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditTail), (status = 400, response = Problem), (status = 401, response = Problem), (status = 403, response = Problem)))]
async fn audit_tail(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    authorize(&ctx, &headers, Role::Auditor).await?;
    let limit = within("limit", query(q)?.limit.unwrap_or(100), 1..=1000)?;
    let entries = ctx.audit.tail(limit).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read the audit log");
        Problem::new(Code::Internal, "cannot read the audit log")
    })?;
    Ok(axum::Json(AuditTail { entries }).into_response())
}
