//! Operators (issue 7): the admin API's queues, certificates and payload-on-request, the
//! metrics, the CLI, the dashboard in real headless Chromium, schemathesis against the OpenAPI
//! document, and a person's name that must appear in no log line, metric, error or audit entry.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::faults::{cli, fast_net, set};
use crate::harness::{Consumer, Counts, Net, node_dir, repo};

const LONG: Duration = Duration::from_secs(120);

/// The value of one sample in Prometheus text, e.g. `poststelle_intake_total{outcome="accepted"}`.
/// (Every sample carries the process's `instance` label, left out of `series`.)
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        without_instance(l)
            .strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A sample line without its `instance` label.
fn without_instance(line: &str) -> String {
    let Some(start) = line.find("instance=\"") else {
        return line.to_owned();
    };
    let end = start + "instance=\"".len() + line[start + 10..].find('"').unwrap() + 1;
    let rest = &line[end..];
    format!("{}{}", &line[..start], rest.strip_prefix(',').unwrap_or(rest)).replacen("{}", "", 1)
}

async fn metrics_text(net: &Net, i: usize) -> String {
    reqwest::get(format!("{}/metrics", net.node(i).admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn network_file(net: &Net) -> String {
    net.dir.path().join("network.json").to_str().unwrap().to_owned()
}

/// Where CI collects artefacts (screenshots); `CI_ARTIFACTS` overrides it.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A node with two dead letters, then two messages delivered once the partner is up: the
/// queues, status and metrics show it; the dashboard in real headless Chromium shows the
/// API's figures, and its retry button delivers a dead letter. Screenshots go to the
/// artefacts folder.
#[tokio::test(flavor = "multi_thread")]
async fn operators_see_the_queues_and_retry_a_dead_letter_from_the_dashboard() {
    let started = Instant::now();
    let net = fast_net(2);
    set(&net, 0, &[("retry_window_seconds", "2")]);
    // A viewer besides the network's admin token: the dashboard hides what it may not do.
    let viewer = "viewer-token-for-the-dashboard-0123";
    let entry = format!(
        "[[admin.tokens]]\nname = \"vera\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n\n[[admin.tokens]]",
        gateway::access::Secret::of(viewer).hex()
    );
    net.edit_config(0, |t| t.replacen("[[admin.tokens]]", &entry, 1));
    let _a = net.start(0).await;
    let client = net.client(0);
    let admin = net.admin(0);
    let network = network_file(&net);

    // Partner b is down past the retry window: two dead letters.
    let dead: Vec<(String, Vec<u8>)> = (0..2).map(|_| net.message(0, 1)).collect();
    let mut dead_ids = Vec::new();
    for (_, body) in &dead {
        dead_ids.push(client.submit_until_accepted(body, LONG).await);
    }
    for id in &dead_ids {
        assert_eq!(client.wait_ended(id, LONG).await, "failed");
    }
    // They have waited at least these 2 s when the queue is read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, q) = admin.get("/admin/api/queues").await;
    assert_eq!(status, 200, "{q}");
    let queues = q["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "only the dead letters wait: {q}");
    assert_eq!(
        (
            &queues[0]["direction"],
            &queues[0]["partner"],
            &queues[0]["status"],
            &queues[0]["depth"]
        ),
        (&json!("outbound"), &json!("b"), &json!("failed"), &json!(2)),
        "{q}"
    );
    let age = queues[0]["oldest_age_seconds"].as_u64().unwrap();
    assert!(
        age >= 2 && age <= started.elapsed().as_secs(),
        "oldest age {age} s: at least 2 s, not older than the test"
    );

    let (ok, out) = cli(&["status", "--network", &network, "--node", "a"]);
    assert!(!ok, "status exits 1 while there are dead letters: {out}");
    assert!(out.contains("2 dead letters"), "{out}");
    let (ok, out) = cli(&["queues", "--network", &network, "--node", "a"]);
    assert!(ok, "{out}");
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.contains("failed"))
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["outbound", "b", "failed", "2"], "{out}");

    // Partner up: two messages delivered.
    let _b = net.start(1).await;
    let consumer = Consumer::start(&net, 1);
    let live: Vec<(String, Vec<u8>)> = (0..2).map(|_| net.message(0, 1)).collect();
    for (_, body) in &live {
        let id = client.submit_until_accepted(body, LONG).await;
        assert_eq!(client.wait_ended(&id, LONG).await, "delivered");
    }

    // The dashboard, in Chromium, against this node.
    let shot = artifacts().join("dashboard.png");
    let out = Command::new("node")
        .arg(repo().join("tests/dashboard/dashboard.mjs"))
        .env("ADMIN_URL", &net.node(0).admin)
        .env("ADMIN_TOKEN", &net.node(0).admin_token)
        .env("RETRY_ID", &dead_ids[0])
        .env("VIEWER_TOKEN", viewer)
        .env("SCREENSHOT", &shot)
        .output()
        .expect("node (Node.js) runs the browser test; .ci/run installs it with chromium and playwright-core");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "dashboard test failed:\n{stdout}\n{stderr}");
    eprintln!("dashboard: {stdout}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "no screenshot at {}",
        shot.display()
    );

    assert_eq!(client.wait_ended(&dead_ids[0], LONG).await, "delivered");
    assert_eq!(client.wait_ended(&dead_ids[1], LONG).await, "failed");
    let mut uuids: Vec<String> = live.iter().map(|m| m.0.clone()).collect();
    uuids.push(dead[0].0.clone());
    consumer.wait_for(&uuids, LONG).await;
    let sent: Vec<String> = dead.iter().chain(&live).map(|m| m.0.clone()).collect();
    assert_eq!(consumer.counts(&sent, &uuids), Counts::default());
    let (_, audit) = admin.get("/admin/api/audit?limit=100").await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "retry" && e["message_id"] == json!(dead_ids[0]) && e["outcome"] == "ok"),
        "the dashboard's retry is in the audit log: {audit}"
    );

    // The last hour's figures count what happened on this node.
    let (_, stats) = admin.get("/admin/api/stats?minutes=60").await;
    let sum = |k: &str| -> u64 {
        stats["minutes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!((sum("delivered"), sum("failed"), sum("received")), (3, 2, 0), "{stats}");
    let (_, newest) = admin.get("/admin/api/messages?order=desc&limit=1").await;
    let (_, all) = admin.get("/admin/api/messages").await;
    assert_eq!(
        newest["messages"][0]["id"],
        all["messages"].as_array().unwrap().last().unwrap()["id"],
        "order=desc keeps the newest"
    );

    // Metrics agree with what happened.
    let text = metrics_text(&net, 0).await;
    let m = |s: &str| metric(&text, s).unwrap_or_else(|| panic!("no sample {s} in\n{text}"));
    // Each sample names the process it comes from, for sums over a node's processes.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // (`a@host`, on a shared store `a@host:FOLDER#slot`.)
    let instance = format!("instance=\"a@{}", host.trim());
    let samples = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty());
    assert!(samples.clone().count() > 10);
    assert!(samples.clone().all(|l| l.contains(&instance)), "{text}");
    assert_eq!(m("poststelle_intake_total{outcome=\"accepted\"}"), 4.0);
    assert_eq!(m("poststelle_messages_total{status=\"delivered\"}"), 3.0);
    assert_eq!(m("poststelle_messages_total{status=\"failed\"}"), 2.0);
    assert_eq!(
        m("poststelle_queue_depth{direction=\"outbound\",partner=\"b\",status=\"failed\"}"),
        1.0
    );
    assert!(m("poststelle_relay_errors_total{class=\"unreachable\"}") >= 2.0);
    assert!(m("poststelle_job_seconds_count{kind=\"relay\",outcome=\"done\"}") >= 3.0);
    assert!(
        metric(
            &text,
            "poststelle_job_seconds_bucket{kind=\"relay\",outcome=\"done\",le=\"0.005\"}"
        )
        .is_some()
    );
    assert!(m("poststelle_store_bytes") > 0.0);
    assert_eq!(m("poststelle_partner_circuit_open{partner=\"b\"}"), 0.0);
    let (_, certs) = admin.get("/admin/api/certificates").await;
    let node_cert = certs["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "node")
        .unwrap()
        .clone();
    assert_eq!(
        m("poststelle_certificate_days_left{role=\"node\",name=\"a\"}"),
        node_cert["days_left"].as_f64().unwrap()
    );
}

/// Certificates with days to expiry as the files say; a payload only with a reason, which
/// goes to the audit log; the OpenAPI document describes every route.
#[tokio::test(flavor = "multi_thread")]
async fn certificates_payload_on_request_and_the_openapi_document() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let admin = net.admin(0);
    let (_, body) = net.message(0, 1);
    let id = net.client(0).submit_until_accepted(&body, LONG).await;

    let pem = std::fs::read(node_dir(&net, 0).join("node.pem")).unwrap();
    let cert = openssl::x509::X509::from_pem(&pem).unwrap();
    let days = openssl::asn1::Asn1Time::days_from_now(0)
        .unwrap()
        .diff(cert.not_after())
        .unwrap()
        .days;
    let (status, certs) = admin.get("/admin/api/certificates").await;
    assert_eq!(status, 200);
    let list = certs["certificates"].as_array().unwrap();
    let node = list.iter().find(|c| c["role"] == "node").unwrap();
    assert_eq!(node["days_left"], json!(days), "{certs}");
    assert!(
        node["subject"].as_str().unwrap().contains("CN=poststelle node a"),
        "{node}"
    );
    for role in ["ca", "content-ca", "authority", "partner", "partner-authority"] {
        assert!(
            list.iter().any(|c| c["role"] == role),
            "no {role} certificate in {certs}"
        );
    }
    let sorted: Vec<i64> = list.iter().map(|c| c["days_left"].as_i64().unwrap()).collect();
    assert!(sorted.is_sorted(), "soonest expiry first: {sorted:?}");

    // Metadata never carries the payload; the payload needs a reason.
    let (_, detail) = admin.get(&format!("/admin/api/messages/{id}")).await;
    assert!(
        detail.get("payload").is_none() && detail["timeline"].is_array(),
        "{detail}"
    );
    let post = |body: Option<Value>, id: String| {
        let admin = net.admin(0);
        async move { admin.post(&format!("/admin/api/messages/{id}/payload"), body).await }
    };
    for bad in [
        None,
        Some(json!({})),
        Some(json!({"reason": "x"})),
        Some(json!({"reason": "a\nb c"})),
    ] {
        let (status, v) = post(bad.clone(), id.clone()).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("invalid-request")),
            "{bad:?}: {v}"
        );
    }
    let (status, v) = post(Some(json!({"reason": "ticket 4711"})), "nope".into()).await;
    assert_eq!((status, v["code"].as_str()), (404, Some("not-found")), "{v}");
    let reason = "Ticket 4711: Bürgeranfrage zur Zustellung";
    let (status, v) = post(Some(json!({ "reason": reason })), id.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["payload"].as_str().unwrap().as_bytes(), &body[..]);
    let (_, audit) = admin.get("/admin/api/audit?limit=10").await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "payload-viewed")
        .unwrap_or_else(|| panic!("no payload-viewed entry: {audit}"))
        .clone();
    assert_eq!((&entry["message_id"], &entry["reason"]), (&json!(id), &json!(reason)));
    assert!(
        !entry.to_string().contains("Mustermann"),
        "the audit entry holds the payload: {entry}"
    );

    let doc: Value = reqwest::get(format!("{}/admin/api/openapi.json", net.node(0).admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/admin/api/status",
        "/admin/api/queues",
        "/admin/api/stats",
        "/admin/api/messages",
        "/admin/api/messages/{id}",
        "/admin/api/messages/{id}/payload",
        "/admin/api/messages/{id}/retry",
        "/admin/api/messages/{id}/cancel",
        "/admin/api/dlq/replay",
        "/admin/api/partners",
        "/admin/api/certificates",
        "/admin/api/audit",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

/// schemathesis (PyPI) fuzzes every operation of `/admin/api/openapi.json` on a running node
/// with messages in several states: no server error, every answer as documented (status,
/// content type, schema), invalid input refused, valid input accepted.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_in_the_admin_api() {
    let net = fast_net(2);
    set(&net, 0, &[("retry_window_seconds", "2")]);
    let _a = net.start(0).await;
    let (_, body) = net.message(0, 1);
    let id = net.client(0).submit_until_accepted(&body, LONG).await;
    assert_eq!(net.client(0).wait_ended(&id, LONG).await, "failed");
    let _b = net.start(1).await;
    let _consumer = Consumer::start(&net, 1);
    let (_, body) = net.message(0, 1);
    let id = net.client(0).submit_until_accepted(&body, LONG).await;
    assert_eq!(net.client(0).wait_ended(&id, LONG).await, "delivered");

    let node = net.node(0);
    let out = tokio::process::Command::new("schemathesis")
        .args([
            "run",
            &format!("{}/admin/api/openapi.json", node.admin),
            "--url",
            &node.admin,
            "--header",
            &format!("Authorization: Bearer {}", node.admin_token),
            "--max-examples",
            "50",
            "--checks",
            "all",
        ])
        .env("NO_COLOR", "1")
        .current_dir(net.dir.path())
        .output()
        .await
        .expect("schemathesis runs (.ci/run installs it from PyPI)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    assert!(text.contains("Tested: 13"), "not every operation was tested:\n{text}");
}

/// A message about a distinctive person travels a → b and is delivered; another with the name
/// where a date belongs is refused. The name appears in neither node's log (at debug level),
/// metrics, audit log, nor in the refusal or any admin view.
#[tokio::test(flavor = "multi_thread")]
async fn a_persons_name_appears_in_no_log_metric_error_or_audit_entry() {
    const NAME: &str = "Quirinella";
    const SURNAME: &str = "Zwetschgenbaum-Oberhuber";
    let net = Net::init(2);
    let debug = [("POSTSTELLE_LOG", "debug")];
    let a = net.start_env(0, &debug).await;
    let b = net.start_env(1, &debug).await;
    let consumer = Consumer::start(&net, 1);
    let client = net.client(0);

    let (uuid, body) = net.message(0, 1);
    let text = String::from_utf8(body).unwrap();
    let person = text
        .replace("<xumzug:vornamen>Erika", &format!("<xumzug:vornamen>{NAME}"))
        .replace(
            "<xumzug:familienname>Mustermann",
            &format!("<xumzug:familienname>{SURNAME}"),
        );
    assert!(person.contains(NAME) && person.contains(SURNAME));
    let id = client.submit_until_accepted(person.as_bytes(), LONG).await;
    assert_eq!(client.wait_ended(&id, LONG).await, "delivered");
    consumer.wait_for(std::slice::from_ref(&uuid), LONG).await;

    // The name where a date and a postcode belong: libxml2 quotes such values in its errors.
    let (_, body) = net.message(0, 1);
    let wrong = String::from_utf8(body)
        .unwrap()
        .replace(
            "<xumzug:geburtsdatum>1964-08-12",
            &format!("<xumzug:geburtsdatum>{NAME} {SURNAME}"),
        )
        .replace("<xumzug:postleitzahl>23552", &format!("<xumzug:postleitzahl>{SURNAME}"));
    let (status, problem) = client.submit(wrong.as_bytes()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("schema-invalid")),
        "{problem}"
    );
    let errors = problem["errors"].as_array().unwrap();
    assert!(
        errors.len() >= 2 && errors.iter().all(|e| e["line"].is_u64()),
        "{problem}"
    );
    let mut seen = vec![("the refusal".to_owned(), problem.to_string())];

    for (i, node) in [(0, &a), (1, &b)] {
        let name = &net.node(i).name;
        seen.push((format!("node {name}'s log"), node.log_text()));
        seen.push((format!("node {name}'s metrics"), metrics_text(&net, i).await));
        let audit = node_dir(&net, i).join("data/audit.log");
        seen.push((
            format!("node {name}'s audit log"),
            std::fs::read_to_string(audit).unwrap_or_default(),
        ));
        let admin = net.admin(i);
        for path in [
            "/admin/api/messages",
            "/admin/api/queues",
            "/admin/api/status",
            "/admin/api/audit",
        ] {
            seen.push((format!("node {name}'s {path}"), admin.get(path).await.1.to_string()));
        }
        let (_, list) = admin.get("/admin/api/messages").await;
        for m in list["messages"].as_array().unwrap() {
            let path = format!("/admin/api/messages/{}", m["id"].as_str().unwrap());
            seen.push((format!("node {name}'s {path}"), admin.get(&path).await.1.to_string()));
        }
    }
    assert!(
        seen.iter()
            .any(|(w, t)| w.contains("log") && t.contains("message accepted")),
        "the logs were read"
    );
    for (what, text) in &seen {
        for word in [NAME, SURNAME] {
            assert!(!text.contains(word), "{word} appears in {what}:\n{text}");
        }
    }
}
