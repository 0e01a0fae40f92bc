//! Configuration reload without a restart (issue 29): `SIGHUP`, `POST /admin/api/reload` and
//! `poststelle reload`. A configuration with problems is refused whole with every problem and
//! the old one stays in force (`/readyz` says so); a good one takes over at once for new
//! connections and requests; a partner's node certificate rotates under load with nothing
//! lost or doubled.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Consumer, Net, NodeProc, bin, new_token, node_dir, transport_addr};

/// `/readyz`: (status, text).
async fn readyz(node: &NodeProc) -> (u16, String) {
    let r = reqwest::get(format!("{}/readyz", node.info.admin)).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `poststelle reload --network … --node …`: (exit code, stdout, stderr).
fn reload_cli(net: &Net, node: &str) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["reload", "--network"])
        .arg(net.dir.path().join("network.json"))
        .args(["--node", node])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_problems_is_refused_whole_and_a_good_one_takes_over_without_a_restart() {
    let net = Net::init(2);
    let a = net.start(0).await;
    let pid = a.pid();
    let admin = net.admin(0);
    let client = net.client(0);
    let good = std::fs::read_to_string(&net.node(0).config).unwrap();
    let (_, v) = admin.get("/admin/api/status").await;
    let loaded_at_start = v["configuration"]["loaded"].as_str().unwrap().to_owned();
    assert!(v["configuration"]["reload_refused"].is_null(), "{v}");

    // Three problems in one file: a missing certificate, a role that does not exist, a token
    // shorter than 16 characters. All three are named at once; nothing changes.
    let (new_client_token, new_client_hash) = new_token();
    net.edit_config(0, |t| {
        t.replace("cert = \"node.pem\"", "cert = \"missing.pem\"").replacen(
            "[[admin.tokens]]",
            "[[admin.tokens]]\nname = \"x\"\nrole = \"boss\"\ntoken = \"short\"\n\n[[admin.tokens]]",
            1,
        )
    });
    let (status, v) = admin.post("/admin/api/reload", None).await;
    assert_eq!((status, v["code"].as_str()), (422, Some("config-invalid")), "{v}");
    let problems: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    for expected in ["missing.pem", "\"boss\" is not a role", "at least 16 characters"] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
    let (code, _, err) = reload_cli(&net, "a");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("config-invalid") && err.contains("missing.pem") && err.contains("boss"),
        "{err}"
    );
    let (status, text) = readyz(&a).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("reload refused") && text.contains("3 problems"), "{text}");

    // A key that does not belong to its certificate: refused too, the old TLS identity serves.
    std::fs::write(
        &net.node(0).config,
        good.replace("key = \"node.key\"", "key = \"../b/node.key\""),
    )
    .unwrap();
    a.hangup();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (_, v) = loop {
        let (s, v) = admin.get("/admin/api/status").await;
        let refused = &v["configuration"]["reload_refused"]["problems"];
        if refused.as_array().is_some_and(|p| p.len() == 1) {
            break (s, v);
        }
        assert!(Instant::now() < deadline, "the SIGHUP reload was not refused: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let problem = v["configuration"]["reload_refused"]["problems"][0].as_str().unwrap();
    assert!(problem.contains("does not belong"), "{problem}");
    assert_eq!(v["configuration"]["loaded"], loaded_at_start.as_str());
    // The configuration loaded at start still serves: its client token, its TLS identity.
    let (_, body) = net.message(0, 1);
    let (status, v) = client.submit(&body).await;
    assert_eq!(status, 202, "{v}");
    let refused = a.metric("poststelle_config_reloads_total", "outcome=\"refused\"").await;
    assert_eq!(refused, Some(3.0));
    assert_eq!(a.metric("poststelle_config_reload_refused", "").await, Some(1.0));

    // A good configuration: the client's token replaced. SIGHUP; the old token stops working
    // and the new one works at once, in the same process.
    let old_hash = good
        .lines()
        .filter(|l| l.starts_with("token_sha256"))
        .nth(1)
        .expect("the client's token hash")
        .to_owned();
    std::fs::write(
        &net.node(0).config,
        good.replace(&old_hash, &format!("token_sha256 = \"{new_client_hash}\"")),
    )
    .unwrap();
    net.reload(0, &a).await;
    let (_, v) = admin.get("/admin/api/status").await;
    assert!(v["configuration"]["reload_refused"].is_null(), "{v}");
    assert_ne!(v["configuration"]["loaded"], loaded_at_start.as_str());
    assert_eq!(readyz(&a).await, (200, "ready\n".to_owned()));
    let (_, body) = net.message(0, 1);
    let (status, v) = client.submit(&body).await;
    assert_eq!((status, v["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let (status, v) = client
        .submit_with(Some(&new_client_token), "application/xml", &body)
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(a.pid(), pid);

    // A setting only a restart changes is named, and the reload still applies the rest (the
    // command answers once it is in force).
    net.edit_config(0, |t| t.replace("workers = 16", "workers = 3"));
    let (code, out, err) = reload_cli(&net, "a");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reloaded") && out.contains("relay (workers"), "{out}");
    let applied = a.metric("poststelle_config_reloads_total", "outcome=\"applied\"").await;
    assert_eq!(applied, Some(2.0));
    assert_eq!(a.metric("poststelle_config_reload_refused", "").await, Some(0.0));

    // Every reload is audited with who asked.
    let entries = admin.audit_entries().await;
    let audit = Value::Array(entries.clone());
    let count = |actor: &str, action: &str| {
        entries
            .iter()
            .filter(|e| e["actor"] == actor && e["action"] == action)
            .count()
    };
    assert_eq!(count("admin", "config-reload-refused"), 2, "{audit}");
    assert_eq!(count("SIGHUP", "config-reload-refused"), 1, "{audit}");
    assert_eq!(count("SIGHUP", "config-reloaded"), 1, "{audit}");
    assert_eq!(count("admin", "config-reloaded"), 1, "{audit}");
}

/// The SHA-256 fingerprint of the certificate a TLS server presents.
fn presented_fingerprint(addr: &str) -> Vec<u8> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let s = b.build().configure().unwrap().connect("localhost", tcp);
    // The transport listener wants a client certificate: the handshake may fail after the
    // server's certificate arrived, so read it off the error's stream too.
    let cert = match s {
        Ok(s) => s.ssl().peer_certificate(),
        Err(openssl::ssl::HandshakeError::Failure(m)) => m.ssl().peer_certificate(),
        Err(e) => panic!("{e}"),
    };
    cert.unwrap()
        .digest(openssl::hash::MessageDigest::sha256())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_node_certificate_rotates_under_load_without_losing_or_doubling_a_message() {
    let net = Net::init(2);
    let a = net.start(0).await;
    let b = net.start(1).await;
    let (pid_a, pid_b) = (a.pid(), b.pid());
    let (dir_a, dir_b) = (node_dir(&net, 0), node_dir(&net, 1));
    let old_fp = presented_fingerprint(&transport_addr(&net, 1));

    // b's new node certificate from the network's CA (as its PKI would issue it).
    let ca = gateway::pki::Issued {
        cert: openssl::x509::X509::from_pem(&std::fs::read(net.dir.path().join("ca.pem")).unwrap()).unwrap(),
        key: openssl::pkey::PKey::private_key_from_pem(&std::fs::read(net.dir.path().join("ca.key")).unwrap()).unwrap(),
    };
    let new = gateway::pki::new_node_cert(&ca, "b", gateway::pki::KeyType::Rsa).unwrap();
    new.write(&dir_b, "node-2025").unwrap();
    let new_fp = new
        .cert
        .digest(openssl::hash::MessageDigest::sha256())
        .unwrap()
        .to_vec();
    assert_ne!(old_fp, new_fp);

    // b's legacy system fetches and acknowledges everything (a message is `delivered` then).
    let at_b = Consumer::start(&net, 1);
    // The load: a's client sends to b all through the rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, client) = (stop.clone(), net.client(0));
        let messages: Vec<(String, Vec<u8>)> = (0..2000).map(|_| net.message(0, 1)).collect();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for (uuid, body) in messages {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = client.submit_until_accepted(&body, Duration::from_secs(60)).await;
                sent.push((uuid, id));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    // One message per step, delivered before the next step: relaying goes on at every stage.
    let client_a = net.client(0);
    let through = |what: &'static str| {
        let client = net.client(0);
        let (_, body) = net.message(0, 1);
        async move {
            let id = client.submit_until_accepted(&body, Duration::from_secs(30)).await;
            let status = client.wait_ended(&id, Duration::from_secs(60)).await;
            assert_eq!(status, "delivered", "{what}");
        }
    };
    through("before the rotation").await;

    // 1. a takes b's new certificate beside the old one (the rollover file).
    let rollover = [
        std::fs::read(dir_b.join("node.pem")).unwrap(),
        std::fs::read(dir_b.join("node-2025.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir_a.join("b-rollover.pem"), rollover).unwrap();
    net.edit_config(0, |t| {
        t.replace("certificate = \"../b/node.pem\"", "certificate = \"b-rollover.pem\"")
    });
    net.reload(0, &a).await;
    through("a trusts old and new").await;

    // 2. b switches to its new certificate and key.
    net.edit_config(1, |t| {
        t.replace("cert = \"node.pem\"", "cert = \"node-2025.pem\"")
            .replace("key = \"node.key\"", "key = \"node-2025.key\"")
    });
    net.reload(1, &b).await;
    assert_eq!(presented_fingerprint(&transport_addr(&net, 1)), new_fp);
    through("b presents its new certificate").await;

    // 3. a drops b's old certificate.
    net.edit_config(0, |t| {
        t.replace(
            "certificate = \"b-rollover.pem\"",
            "certificate = \"../b/node-2025.pem\"",
        )
    });
    net.reload(0, &a).await;
    through("a knows only the new certificate").await;

    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    assert!(sent.len() >= 10, "the load ran: {} messages", sent.len());
    // Every message of the load is delivered, and b's client gets each exactly once.
    for (_, id) in &sent {
        assert_eq!(
            client_a.wait_ended(id, Duration::from_secs(60)).await,
            "delivered",
            "{id}"
        );
    }
    let uuids: Vec<String> = sent.iter().map(|(u, _)| u.clone()).collect();
    at_b.wait_for(&uuids, Duration::from_secs(60)).await;
    assert_eq!(at_b.counts(&uuids, &uuids).duplicated, 0, "a message delivered twice");
    // No restart: the same processes all along.
    assert_eq!((a.pid(), b.pid()), (pid_a, pid_b));
}
