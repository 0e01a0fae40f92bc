//! Operations security (issue 29, first parts): admin tokens with names and roles, tokens kept
//! only as hashes in the configuration, `poststelle token new`, configurations with bad tokens
//! refused with every problem at once, the admin listener over TLS, encrypted key files.

use std::process::Command;

use serde_json::Value;

use crate::harness::{Admin, Net, authority_file, bin, new_token, node_dir};

fn as_token(net: &Net, token: &str) -> Admin {
    let mut admin = net.admin(0);
    admin.token = token.to_owned();
    admin
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_tokens_act_by_role_are_audited_by_name_and_configs_hold_only_hashes() {
    let net = Net::init(2);
    let node = net.node(0).clone();
    // `network init` wrote the tokens' hashes into the config, the tokens only to network.json.
    let text = std::fs::read_to_string(&node.config).unwrap();
    assert!(
        !text.contains(&node.admin_token) && !text.contains(&node.clients[0].token),
        "{text}"
    );
    assert_eq!(text.matches("token_sha256").count(), 2, "{text}");

    let (viewer, viewer_hash) = new_token();
    let (operator, operator_hash) = new_token();
    let (auditor, _) = new_token();
    assert_ne!(viewer, operator);
    let mine = format!(
        "[[admin.tokens]]\nname = \"vera\"\nrole = \"viewer\"\ntoken_sha256 = \"{viewer_hash}\"\n\n\
         [[admin.tokens]]\nname = \"otto\"\nrole = \"operator\"\ntoken_sha256 = \"{operator_hash}\"\n\n\
         [[admin.tokens]]\nname = \"anna\"\nrole = \"auditor\"\ntoken = \"{auditor}\"\n\n"
    );
    net.edit_config(0, |t| {
        t.replacen("[[admin.tokens]]", &format!("{mine}[[admin.tokens]]"), 1)
    });
    let _a = net.start(0).await;
    let (vera, otto, anna) = (
        as_token(&net, &viewer),
        as_token(&net, &operator),
        as_token(&net, &auditor),
    );

    // A viewer sees everything there is to GET, and is told who it is.
    let (status, v) = vera.get("/admin/api/status").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["token"]["name"], &v["token"]["role"]),
        (&"vera".into(), &"viewer".into())
    );
    for path in [
        "/admin/api/queues",
        "/admin/api/messages",
        "/admin/api/partners",
        "/admin/api/certificates",
    ] {
        assert_eq!(vera.get(path).await.0, 200, "{path}");
    }
    // … and may do nothing: 403 not-permitted, naming its role and what was needed.
    let refused = |(status, v): (u16, Value), what: &str| {
        assert_eq!(status, 403, "{what}: {v}");
        assert_eq!(v["code"], "not-permitted", "{what}: {v}");
    };
    refused(vera.post("/admin/api/messages/x/retry", None).await, "viewer retry");
    refused(vera.post("/admin/api/messages/x/cancel", None).await, "viewer cancel");
    refused(vera.post("/admin/api/dlq/replay", None).await, "viewer replay");
    let reason = Some(serde_json::json!({"reason": "checking a complaint"}));
    refused(
        vera.post("/admin/api/messages/x/payload", reason.clone()).await,
        "viewer payload",
    );
    refused(vera.get("/admin/api/audit").await, "viewer audit");
    let (_, v) = vera.post("/admin/api/messages/x/retry", None).await;
    assert!(v["detail"].as_str().unwrap().contains("viewer"), "{v}");

    // An operator retries (an unknown id: 404, past the role check) but sees no payload.
    assert_eq!(otto.post("/admin/api/messages/no-such-id/retry", None).await.0, 404);
    assert_eq!(otto.post("/admin/api/dlq/replay", None).await.0, 200);
    refused(
        otto.post("/admin/api/messages/x/payload", reason.clone()).await,
        "operator payload",
    );
    refused(otto.get("/admin/api/audit").await, "operator audit");

    // An auditor (configured in clear) may ask for payloads (an unknown id: 404, past the role
    // check) and read the audit log.
    assert_eq!(anna.post("/admin/api/messages/no-such-id/payload", reason).await.0, 404);
    let (status, audit) = anna.get("/admin/api/audit?limit=100").await;
    assert_eq!(status, 200, "{audit}");

    // A wrong token: 401, audited as `unknown`, without a hint or the token.
    let wrong = format!("{}x", &viewer[..viewer.len() - 1]);
    let (status, v) = as_token(&net, &wrong).get("/admin/api/status").await;
    assert_eq!((status, v["code"].as_str()), (401, Some("unauthorized")), "{v}");
    assert_eq!(v["detail"], "wrong admin token");

    // The audit log names the token of every action and refusal.
    let entries = net.admin(0).audit_entries().await;
    let audit = Value::Array(entries.clone());
    let has = |actor: &str, action: &str| entries.iter().any(|e| e["actor"] == actor && e["action"] == action);
    assert!(has("vera", "admin-not-permitted"), "{audit}");
    assert!(has("otto", "retry") && has("otto", "dlq-replay"), "{audit}");
    assert!(has("otto", "admin-not-permitted"), "{audit}");
    assert!(has("unknown", "admin-unauthorized"), "{audit}");
    let text = audit.to_string();
    for secret in [&viewer, &operator, &auditor, &wrong] {
        assert!(!text.contains(secret.as_str()), "a token in the audit log");
    }
}

#[test]
fn a_config_with_bad_tokens_is_refused_with_every_problem_at_once() {
    let net = Net::init(2);
    let node = net.node(0);
    let (_, hash) = new_token();
    net.edit_config(0, |t| {
        t.replacen(
            "[[admin.tokens]]",
            &format!(
                "[[admin.tokens]]\nname = \"root\"\nrole = \"superuser\"\ntoken = \"short\"\n\n\
                 [[admin.tokens]]\nname = \"both\"\nrole = \"viewer\"\ntoken = \"0123456789abcdef0\"\ntoken_sha256 = \"{hash}\"\n\n\
                 [[admin.tokens]]\nname = \"admin\"\nrole = \"operator\"\ntoken_sha256 = \"not-hex\"\n\n\
                 [[admin.tokens]]"
            ),
            1,
        )
    });
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&node.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for needle in [
        "admin.tokens[0].role: \"superuser\" is not a role",
        "admin.tokens[0].token: must be at least 16 characters",
        "admin.tokens[1]: give token or token_sha256, not both",
        "admin.tokens[2].token_sha256: must be 64 hex digits",
        "admin.tokens[3].name: \"admin\" is taken",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_speaks_tls_when_asked_and_plain_http_only_on_loopback() {
    let net = Net::init(2);
    let node = net.node(0).clone();
    let port = node.admin.rsplit(':').next().unwrap().to_owned();
    let check = || {
        let out = Command::new(bin())
            .arg("check-config")
            .arg(&node.config)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Plain HTTP reachable from other machines: refused, unless on purpose. (Checked only:
    // the tests bind nothing but loopback.)
    let original = std::fs::read_to_string(&node.config).unwrap();
    let everywhere = original.replace(
        &format!("admin = \"127.0.0.1:{port}\""),
        &format!("admin = \"0.0.0.0:{port}\""),
    );
    assert_ne!(everywhere, original);
    std::fs::write(&node.config, &everywhere).unwrap();
    let (ok, err) = check();
    assert!(!ok && err.contains(&format!("plain HTTP on 0.0.0.0:{port}")), "{err}");
    std::fs::write(
        &node.config,
        everywhere.replacen("[[admin.tokens]]", "[admin]\nallow_plain = true\n\n[[admin.tokens]]", 1),
    )
    .unwrap();
    assert!(check().0, "allow_plain says it is on purpose");
    // A key without a certificate, and a certificate without TLS: refused, both named.
    std::fs::write(
        &node.config,
        original.replacen("[[admin.tokens]]", "[admin]\nkey = \"node.key\"\n\n[[admin.tokens]]", 1),
    )
    .unwrap();
    let (ok, err) = check();
    assert!(
        !ok && err.contains("give both or neither") && err.contains("only with tls = true"),
        "{err}"
    );

    // TLS with the node's certificate, on loopback.
    std::fs::write(
        &node.config,
        original.replacen("[[admin.tokens]]", "[admin]\ntls = true\n\n[[admin.tokens]]", 1),
    )
    .unwrap();
    let _a = crate::harness::NodeProc::spawn_env(node.clone(), net.dir.path(), &[]);
    let https = crate::harness::https_client(&node.ca, None);
    let url = format!("https://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match https.get(format!("{url}/readyz")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ => assert!(
                std::time::Instant::now() < deadline,
                "the admin listener never answered over TLS"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Plain HTTP gets no answer from it.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // The API over TLS, and the operator commands with the network's CA.
    let r = https
        .get(format!("{url}/admin/api/status"))
        .bearer_auth(&node.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let network = net.dir.path().join("network.json");
    let text = std::fs::read_to_string(&network).unwrap();
    std::fs::write(&network, text.replace(&format!("http://127.0.0.1:{port}"), &url)).unwrap();
    let (ok, out) = crate::faults::cli(&["queues", "--network", network.to_str().unwrap(), "--node", "a"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_key_files_open_with_a_passphrase_from_the_environment_or_a_file() {
    let net = Net::init(2);
    let node = net.node(0).clone();
    let pass = "correct horse battery staple";
    // The node's TLS key and its authority's key, encrypted by the openssl tool (PKCS#8,
    // PBES2 with AES-256-CBC).
    for key in [node_dir(&net, 0).join("node.key"), authority_file(&net, 0, "key")] {
        let enc = key.with_extension("enc");
        let out = Command::new("openssl")
            .args([
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-passout",
                &format!("pass:{pass}"),
                "-in",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&enc)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::rename(&enc, &key).unwrap();
        assert!(
            std::fs::read_to_string(&key)
                .unwrap()
                .contains("BEGIN ENCRYPTED PRIVATE KEY")
        );
    }
    let check = |env: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.arg("check-config")
            .arg(&node.config)
            .env_remove("POSTSTELLE_KEY_PASSPHRASE");
        if let Some(p) = env {
            cmd.env("POSTSTELLE_KEY_PASSPHRASE", p);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // No passphrase, a wrong one: refused, each key file named, nothing of the key or the
    // passphrase in the answer.
    let (ok, err) = check(None);
    assert!(
        !ok && err.matches("is encrypted and no passphrase was given").count() == 2,
        "{err}"
    );
    let (ok, err) = check(Some("wrong horse"));
    assert!(
        !ok && err.matches("the passphrase does not open it").count() == 2,
        "{err}"
    );
    assert!(!err.contains("wrong horse") && !err.contains("PRIVATE KEY"), "{err}");
    assert!(check(Some(pass)).0);
    // From a file named in the config (its first line), no environment: the node runs, signs,
    // decrypts and speaks TLS with the encrypted keys.
    let file = node_dir(&net, 0).join("key-passphrase");
    std::fs::write(&file, format!("{pass}\n")).unwrap();
    net.edit_config(0, |t| {
        t.replacen(
            "[security]\n",
            "[security]\nkey_passphrase_file = \"key-passphrase\"\n",
            1,
        )
    });
    assert!(check(None).0, "{}", check(None).1);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (_, there) = net.message(0, 1);
    let (status, v) = net.client(0).submit(&there).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let cb = net.client(1);
    let inbox = cb.wait_inbox(1, std::time::Duration::from_secs(60)).await;
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    net.client(0)
        .wait_status(&id, "delivered", std::time::Duration::from_secs(60))
        .await;
    // And the way back: b encrypts for a's authority, a decrypts with its encrypted key.
    let (_, back) = net.message(1, 0);
    assert_eq!(cb.submit(&back).await.0, 202);
    net.client(0).wait_inbox(1, std::time::Duration::from_secs(60)).await;
}
