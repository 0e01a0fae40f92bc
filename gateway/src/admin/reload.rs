//! `POST /admin/api/reload` (operators): the configuration file read again and put in force, as
//! `SIGHUP` does; and the configuration's state for the status answer and `/readyz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::Role;
use crate::ctx::Ctx;
use crate::problem::{Code, Diagnostic, Problem};
use crate::store::rfc3339;

/// The configuration in force, and a refused reload while it is the last one.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigView {
    /// The file it was read from.
    pub source: Option<String>,
    /// When it took over (start or last reload), RFC 3339.
    pub loaded: String,
    /// The last reload, if it was refused: when, and every problem.
    pub reload_refused: Option<RefusedView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedView {
    /// RFC 3339.
    pub at: String,
    pub problems: Vec<String>,
}

pub(super) fn config_view(ctx: &Ctx) -> ConfigView {
    let live = ctx.live();
    let refused = ctx.reload_refused.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ConfigView {
        source: live.config.source.as_ref().map(|p| p.display().to_string()),
        loaded: rfc3339(live.since),
        reload_refused: refused.map(|r| RefusedView {
            at: rfc3339(r.at),
            problems: r.problems,
        }),
    }
}

/// `/readyz`'s line about the configuration: empty while the last reload (if any) took effect.
pub(super) fn readiness_note(ctx: &Ctx) -> String {
    match &*ctx.reload_refused.lock().unwrap_or_else(|e| e.into_inner()) {
        None => String::new(),
        Some(r) => format!(
            "configuration reload refused at {} ({} problems); the configuration loaded before stays in force\n",
            rfc3339(r.at),
            r.problems.len()
        ),
    }
}

/// Reads the node's configuration file again and puts it in force (as `SIGHUP` does): TLS
/// certificate and key, CA, authority keys, partners and their certificates, CRLs, clients,
/// tokens, limits. A configuration with any problem is refused whole with every problem in
/// `errors` (`422 config-invalid`), and the one loaded before stays in force. Settings that
/// only a restart changes are listed in `restart_needed`. Reloads the process that answers.
#[utoipa::path(post, path = "/admin/api/reload", tag = "operations",
    responses((status = 200, body = crate::reload::Reloaded), (status = 401, response = Problem), (status = 403, response = Problem), (status = 422, response = Problem)))]
pub(super) async fn reload(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, Problem> {
    let caller = super::authorize(&ctx, &headers, Role::Operator).await?;
    match crate::reload::reload(&ctx, &caller.name).await {
        Ok(r) => Ok(axum::Json(r).into_response()),
        Err(problems) => Err(Problem::new(
            Code::ConfigInvalid,
            format!(
                "the new configuration has {} problem(s); nothing was changed",
                problems.len()
            ),
        )
        .with_errors(
            problems
                .into_iter()
                .map(|message| Diagnostic {
                    line: None,
                    column: None,
                    message,
                })
                .collect(),
        )),
    }
}
