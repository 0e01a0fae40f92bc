//! The client API and admin API routers without sockets: `router(ctx).oneshot(request)` over a
//! `Ctx` built from a real `network init` config on a temporary store (no port is bound), for
//! the error paths a legacy system or an operator meets first.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gateway::ctx::Ctx;
use serde_json::Value;
use tower::ServiceExt;

use crate::harness::{Net, fixture};

struct Setup {
    _net: Net,
    ctx: Arc<Ctx>,
    token: String,
    admin_token: String,
}

async fn setup() -> Setup {
    let net = Net::init(2);
    let info = net.node(0).clone();
    let config = gateway::config::Config::load(&info.config).unwrap();
    let ctx = gateway::node::context(config).await.unwrap();
    Setup {
        token: info.clients[0].token.clone(),
        admin_token: info.admin_token.clone(),
        ctx: Arc::new(ctx),
        _net: net,
    }
}

/// Sends one request through a router; the status, the content type and the body as JSON.
async fn call(router: axum::Router, req: Request<Body>) -> (StatusCode, String, Value) {
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, ct, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn submit(token: Option<&str>, content_type: &str, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::post("/v1/messages").header(header::CONTENT_TYPE, content_type);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body)).unwrap()
}

fn get(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// Every refusal is a problem document with the code the status stands for.
fn assert_problem(got: &(StatusCode, String, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "status of {:?}", got.2);
    assert_eq!(got.1, "application/problem+json");
    assert_eq!(got.2["code"], code, "problem {:?}", got.2);
    assert!(
        got.2["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "a problem says what went wrong: {:?}",
        got.2
    );
}

/// A submission is sealed before its acceptance is stored, in the same write: with no worker
/// running here (no relay could have sealed it), the message is `sealed` once the 202 is out,
/// its envelope stored, naming the message's id and creation time, and opened by the reader.
#[tokio::test]
async fn a_submission_is_stored_sealed_in_its_acceptance_write() {
    use gateway::store::{Blob, Status, rfc3339};
    let s = setup().await;
    let api = gateway::intake::http::router(s.ctx.clone());
    let valid = fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml");
    let got = call(api, submit(Some(&s.token), "application/xml", valid.clone())).await;
    assert_eq!(
        (got.0.as_u16(), got.2["status"].as_str()),
        (202, Some("accepted")),
        "{:?}",
        got.2
    );
    let id = got.2["id"].as_str().unwrap();
    let m = s.ctx.store.message(id).await.unwrap().unwrap();
    assert_eq!(m.status, Status::Sealed);
    let timeline: Vec<Status> = s.ctx.store.events(id).await.unwrap().iter().map(|e| e.status).collect();
    assert_eq!(timeline, [Status::Accepted, Status::Sealed]);
    let envelope = s
        .ctx
        .store
        .blob(id, Blob::Envelope)
        .await
        .unwrap()
        .expect("the envelope is stored");
    let header = gateway::envelope::parse_header(&envelope).unwrap();
    assert_eq!(
        (header.message_id.as_str(), header.created),
        (id, rfc3339(m.created_at))
    );
    assert_eq!(header.recipient, m.reader);
    // The reader's node opens it to the very bytes submitted.
    let b = gateway::config::Config::load(&s._net.node(1).config).unwrap();
    let b = gateway::node::context(b).await.unwrap();
    let keys = b.keys();
    let author = s.ctx.keys().authorities[&m.author].cert.clone();
    let opened = gateway::envelope::seal::open(
        &envelope,
        &keys.authorities[&m.reader].key,
        &author,
        &keys.content_for("a"),
        &b.config().limits.for_envelopes(),
    )
    .unwrap();
    assert_eq!(opened.content, valid);
}

#[tokio::test]
async fn client_api_error_paths_without_a_socket() {
    let s = setup().await;
    let api = || gateway::intake::http::router(s.ctx.clone());
    let valid = fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml");

    let r = call(api(), submit(None, "application/xml", valid.clone())).await;
    assert_problem(&r, 401, "unauthorized");
    let r = call(
        api(),
        submit(Some("not-a-token-of-this-node"), "application/xml", valid.clone()),
    )
    .await;
    assert_problem(&r, 401, "unauthorized");
    let r = call(api(), submit(Some(&s.token), "text/plain", valid.clone())).await;
    assert_problem(&r, 415, "unsupported-media-type");
    let too_big = vec![b' '; s.ctx.config().limits.max_bytes + 1];
    let r = call(api(), submit(Some(&s.token), "application/xml", too_big)).await;
    assert_problem(&r, 413, "limit-exceeded");
    let r = call(api(), submit(Some(&s.token), "application/xml", b"<a><b></a>".to_vec())).await;
    assert_problem(&r, 400, "not-well-formed");
    assert_eq!(r.2["errors"][0]["line"], 1, "XML errors name their line: {:?}", r.2);
    assert_eq!(r.2["errors"][0]["column"], 7, "and column: {:?}", r.2);
    let r = call(
        api(),
        submit(
            Some(&s.token),
            "application/xml",
            b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>".to_vec(),
        ),
    )
    .await;
    assert_problem(&r, 400, "forbidden-construct");

    let r = call(
        api(),
        get("/v1/messages/00000000-0000-0000-0000-000000000001", &s.token),
    )
    .await;
    assert_problem(&r, 404, "not-found");
    let r = call(api(), get("/v1/inbox/00000000-0000-0000-0000-000000000001", &s.token)).await;
    assert_problem(&r, 404, "not-found");
    let r = call(api(), get("/no/such/endpoint", &s.token)).await;
    assert_problem(&r, 404, "not-found");
    // Nothing refused reached the store.
    assert!(s.ctx.store.queues().await.unwrap().is_empty());

    // And the accepted path, through the same router: 202, then 200 with the same id.
    let first = call(api(), submit(Some(&s.token), "application/xml", valid.clone())).await;
    assert_eq!(first.0, StatusCode::ACCEPTED, "{:?}", first.2);
    let again = call(api(), submit(Some(&s.token), "application/xml", valid)).await;
    assert_eq!(again.0, StatusCode::OK, "{:?}", again.2);
    assert_eq!(first.2["id"], again.2["id"]);
}

#[tokio::test]
async fn admin_api_error_paths_without_a_socket() {
    let s = setup().await;
    let admin = || gateway::admin::router(s.ctx.clone());
    let unknown = "/admin/api/messages/00000000-0000-0000-0000-000000000001";

    let r = call(admin(), Request::get("/admin/api/status").body(Body::empty()).unwrap()).await;
    assert_problem(&r, 401, "unauthorized");
    let r = call(admin(), get("/admin/api/status", "wrong-admin-token-0000")).await;
    assert_problem(&r, 401, "unauthorized");
    let r = call(admin(), get(unknown, &s.admin_token)).await;
    assert_problem(&r, 404, "not-found");
    let retry = Request::post(format!("{unknown}/retry"))
        .header(header::AUTHORIZATION, format!("Bearer {}", s.admin_token))
        .body(Body::empty())
        .unwrap();
    let r = call(admin(), retry).await;
    assert_problem(&r, 404, "not-found");
    let r = call(admin(), get("/admin/api/messages?status=no-such-state", &s.admin_token)).await;
    assert_problem(&r, 400, "invalid-request");

    let ok = call(admin(), get("/admin/api/status", &s.admin_token)).await;
    assert_eq!(ok.0, StatusCode::OK, "{:?}", ok.2);
    assert_eq!(ok.2["node"], s.ctx.config().node_name.as_str(), "{:?}", ok.2);
}
