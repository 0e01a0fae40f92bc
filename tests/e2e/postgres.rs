//! Two real nodes whose store is PostgreSQL (`network init --store-url`, one schema per node,
//! renamed per network by the harness) on the local database `scripts/test` makes sure runs: a
//! message accepted by a node that is then killed with SIGKILL is delivered exactly once, and
//! nothing is written to SQLite; a database that cannot be reached stops the start.

use std::time::Duration;

use crate::harness::{Net, fixture, node_dir};

#[tokio::test(flavor = "multi_thread")]
async fn nodes_on_postgres_deliver_once_through_kill_9_and_write_no_sqlite() {
    let net = Net::init_on_postgres(2);
    // The partner is down: the message can only be in a's store when a dies.
    let mut a = net.start(0).await;
    let ca = net.client(0);
    let msg = fixture("xumzug/valid/rueckmeldung-umlaute-andere-praefixe.xml");
    let (status, v) = ca.submit(&msg).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // The same submission again is the same message (the unique index decides).
    let (again, v2) = ca.submit(&msg).await;
    assert_eq!((again, &v2["id"]), (200, &v["id"]), "{v2}");
    a.kill9();

    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let cb = net.client(1);
    let inbox = cb.wait_inbox(1, Duration::from_secs(60)).await;
    let (_, body) = cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await;
    assert_eq!(body, msg);
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    ca.wait_status(&id, "delivered", Duration::from_secs(30)).await;
    assert_eq!(
        cb.get_json("/v1/inbox").await.1["messages"].as_array().unwrap().len(),
        0,
        "exactly once in the partner's inbox"
    );
    for i in 0..2 {
        let db = node_dir(&net, i).join("data/poststelle.db");
        assert!(
            !db.exists(),
            "{} was written although the store is PostgreSQL",
            db.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_stops_the_start_and_names_the_url_without_its_password() {
    let net = Net::init(2);
    // Nothing listens on port 1; the password must not appear anywhere.
    net.edit_config(0, |text| {
        let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("url = \"postgres")).collect();
        kept.join("\n").replace(
            "[store]\n",
            "[store]\nurl = \"postgres://postgres:s3cret-pw@127.0.0.1:1/test?sslmode=disable\"\n",
        )
    });
    let mut child = std::process::Command::new(crate::harness::bin())
        .args(["serve", "--config"])
        .arg(&net.node(0).config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the node kept running without its database");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without its database");
    assert!(
        stderr.contains("postgres://postgres:***@127.0.0.1:1/test"),
        "the error names the URL: {stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "the password leaked: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_connects_and_reports_the_schema_version() {
    let net = Net::init_on_postgres(2);
    let check = || {
        let out = std::process::Command::new(crate::harness::bin())
            .arg("check-config")
            .arg(&net.node(0).config)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, before) = check();
    assert!(ok, "{before}");
    assert!(before.contains("not created yet"), "{before}");
    let _a = net.start(0).await;
    let (ok, after) = check();
    assert!(ok, "{after}");
    assert!(
        after.contains(&format!("version {}, current", gateway::store::pg::SCHEMA_VERSION)),
        "{after}"
    );
}
