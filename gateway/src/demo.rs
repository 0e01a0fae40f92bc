//! `poststelle demo`: a throw-away two-node network, in-process, over real HTTPS.
//!
//! Node a's legacy system submits every embedded demo fixture — one of them through the XTA 2
//! Send port (MTOM), the others through the REST API; node b's legacy system (played by the
//! demo) fetches and acknowledges its inbox. One row per fixture; success means every valid
//! fixture reached `delivered` and every invalid one was rejected with its expected code.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;

/// The fixture that goes through XTA 2 instead of the REST API, and its type code.
const VIA_XTA: (&str, &str) = (
    "fixtures/messages/xumzug/valid/fortschreibung-lieschen-mueller.xml",
    "0102",
);

/// How long the demo waits for all deliveries.
const DEADLINE: Duration = Duration::from_secs(60);

struct Row {
    file: String,
    message_type: String,
    route: String,
    outcome: String,
    ms: u128,
    ok: bool,
}

/// Runs the demo; returns whether every fixture ended as expected.
pub async fn run() -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let net = crate::network::init(dir.path(), 2, crate::network::Ports::Free)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let node_a = crate::node::start(Config::load(&a.config)?).await?;
    let node_b = crate::node::start(Config::load(&b.config)?).await?;
    let http = crate::tls::trusting(&a.ca)?.timeout(Duration::from_secs(30)).build()?;
    let token_a = a.clients[0].token.clone();
    let token_b = b.clients[0].token.clone();

    // Node b's legacy system: fetch and acknowledge whatever arrives.
    let consumer = acknowledge_everything(http.clone(), b.api.clone(), token_b);

    let mut rows = Vec::new();
    let mut pending = Vec::new();
    let started = Instant::now();
    for (path, bytes) in crate::embedded::fixtures("fixtures/messages/xumzug/") {
        if !path.ends_with(".xml") {
            continue;
        }
        let file = path.trim_start_matches("fixtures/messages/").to_owned();
        let expected_code = crate::embedded::fixtures(&path.replace(".xml", ".expected"))
            .first()
            .map(|(_, b)| String::from_utf8_lossy(b).trim().to_owned());
        let t0 = Instant::now();
        if path == VIA_XTA.0 {
            let xta = crate::xta_client::XtaClient {
                http: http.clone(),
                api: a.api.clone(),
                token: token_a.clone(),
                author: a.authorities[0].clone(),
            };
            let kind = crate::xta_client::MessageKind::xumzug(VIA_XTA.1);
            let sent = match xta.create_id().await? {
                Ok(xta_id) => xta
                    .send(bytes.to_vec(), &b.authorities[0], &kind, &xta_id)
                    .await?
                    .map(|_| xta_id),
                Err(e) => Err(e),
            };
            let (id, status) = match sent {
                Ok(xta_id) => (
                    xta_id.trim_start_matches(crate::intake::xta::ID_PREFIX).to_owned(),
                    reqwest::StatusCode::OK,
                ),
                Err((status, _)) => (String::new(), reqwest::StatusCode::from_u16(status)?),
            };
            pending.push((format!("{file} (XTA 2)"), id, t0, status));
            continue;
        }
        let resp = http
            .post(format!("{}/v1/messages", a.api))
            .bearer_auth(&token_a)
            .header("content-type", "application/xml")
            .body(bytes.to_vec())
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        match expected_code {
            Some(expected) => {
                let code = v["code"].as_str().unwrap_or("(accepted)").to_owned();
                rows.push(Row {
                    file,
                    message_type: "-".into(),
                    route: format!("{} → ?", a.authorities[0]),
                    ok: code == expected && status.is_client_error(),
                    outcome: format!("rejected {code} ({status})"),
                    ms: t0.elapsed().as_millis(),
                });
            }
            None => {
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                pending.push((file, id, t0, status));
            }
        }
    }
    for (file, id, t0, status) in pending {
        let mut last = Value::Null;
        while started.elapsed() < DEADLINE && !id.is_empty() {
            let r = http
                .get(format!("{}/v1/messages/{id}", a.api))
                .bearer_auth(&token_a)
                .send()
                .await?;
            last = r.json().await.unwrap_or(Value::Null);
            if matches!(
                last["status"].as_str(),
                Some("delivered" | "rejected" | "failed" | "cancelled")
            ) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = last["status"].as_str().unwrap_or("not accepted").to_owned();
        rows.push(Row {
            file,
            message_type: last["message_type"].as_str().unwrap_or("-").to_owned(),
            route: format!(
                "{} → {}",
                last["author"].as_str().unwrap_or("?"),
                last["reader"].as_str().unwrap_or("?")
            ),
            ok: state == "delivered",
            outcome: if id.is_empty() {
                format!("not accepted ({status})")
            } else {
                state
            },
            ms: t0.elapsed().as_millis(),
        });
    }
    consumer.abort();
    node_a.stop().await;
    node_b.stop().await;

    Ok(print_table(&rows))
}

/// A legacy system that fetches and acknowledges whatever arrives in its inbox.
fn acknowledge_everything(http: reqwest::Client, api: String, token: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(r) = http.get(format!("{api}/v1/inbox")).bearer_auth(&token).send().await
                && let Ok(v) = r.json::<Value>().await
            {
                for m in v["messages"].as_array().cloned().unwrap_or_default() {
                    let id = m["id"].as_str().unwrap_or_default();
                    let got = http
                        .get(format!("{api}/v1/inbox/{id}"))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    if got.is_ok_and(|r| r.status().is_success()) {
                        let _ = http
                            .post(format!("{api}/v1/inbox/{id}/ack"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Prints the table of outcomes; whether every fixture ended as expected.
fn print_table(rows: &[Row]) -> bool {
    let w = |f: fn(&Row) -> usize| rows.iter().map(f).max().unwrap_or(0);
    let (wf, wt, wr, wo) = (
        w(|r| r.file.chars().count()).max(4),
        w(|r| r.message_type.chars().count()).max(4),
        w(|r| r.route.chars().count()).max(9),
        w(|r| r.outcome.chars().count()).max(6),
    );
    println!(
        "{:wf$}  {:wt$}  {:wr$}  {:wo$}  {:>6}",
        "file", "type", "from → to", "status", "ms"
    );
    for r in rows {
        println!(
            "{:wf$}  {:wt$}  {:wr$}  {:wo$}  {:>6}{}",
            r.file,
            r.message_type,
            r.route,
            r.outcome,
            r.ms,
            if r.ok { "" } else { "  ✗ unexpected" }
        );
    }
    let all_ok = rows.iter().all(|r| r.ok);
    println!(
        "\n{} of {} fixtures ended as expected (valid → delivered, invalid → rejected with their code)",
        rows.iter().filter(|r| r.ok).count(),
        rows.len()
    );
    all_ok
}
