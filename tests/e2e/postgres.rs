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

/// A PostgreSQL of the test's own: a cluster made with `initdb` in a temporary folder, run by
/// `pg_ctl` on its own port, so the test can take the database away under a running node and
/// bring it back. Stopped (immediately) when dropped.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl OwnPostgres {
    fn init() -> OwnPostgres {
        // Debian keeps the server tools out of PATH, under /usr/lib/postgresql/VERSION/bin.
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server tools (Debian's postgresql package)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists())
            .max()
            .expect("pg_ctl under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let pg = OwnPostgres {
            port: crate::harness::next_ports(1),
            dir,
            bin,
        };
        // initdb refuses to run as root: the cluster then belongs to the postgres user.
        if Self::as_root() {
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
        }
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"]);
        pg.start();
        pg
    }

    fn as_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A server tool, run as the postgres user when the tests run as root.
    fn tool(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        if Self::as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.tool(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// Stops the server at once, as a crash or a lost network would: open connections break.
    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_lost_while_running_gives_503_and_the_node_recovers_by_itself() {
    let pg = OwnPostgres::init();
    let net = Net::init_on(2, &pg.url());
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    let first = fixture("xumzug/valid/rueckmeldung-umlaute-andere-praefixe.xml");
    let (status, v) = ca.submit(&first).await;
    assert_eq!(status, 202, "{v}");
    let first_id = v["id"].as_str().unwrap().to_owned();
    let inbox = cb.wait_inbox(1, Duration::from_secs(60)).await;
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    ca.wait_status(&first_id, "delivered", Duration::from_secs(30)).await;

    pg.stop();
    // Without its database the node acknowledges nothing: 503 overloaded with Retry-After,
    // never another 5xx, never a 2xx.
    let (_, second) = net.message(0, 1);
    for _ in 0..3 {
        let r = ca
            .post_message(Some(&ca.token), "application/xml", &second)
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").cloned();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["code"], "overloaded", "{v}");
        assert!(retry_after.is_some(), "503 without Retry-After: {v}");
    }
    let (status, v) = ca.get_json(&format!("/v1/messages/{first_id}")).await;
    assert_eq!(status, 503, "a status query without the database: {v}");

    // The database comes back: the node reconnects by itself, takes the retried submission
    // and delivers it; nothing was stored twice.
    pg.start();
    let second_id = ca.submit_until_accepted(&second, Duration::from_secs(60)).await;
    let inbox = cb.wait_inbox(1, Duration::from_secs(60)).await;
    let (_, body) = cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await;
    assert_eq!(body, second);
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    ca.wait_status(&second_id, "delivered", Duration::from_secs(30)).await;
    let (_, all) = net.admin(0).get("/admin/api/messages?direction=outbound").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 2, "stored once each: {all}");
}
