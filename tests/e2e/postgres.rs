//! Two real nodes whose store is PostgreSQL (`[store] url`, one schema per node), on the
//! database at `POSTSTELLE_TEST_PG_URL` (default: the local one `scripts/test` makes sure
//! runs): a message accepted by a node that is then killed with SIGKILL is delivered exactly
//! once, and nothing is written to SQLite.

use std::time::Duration;

use crate::harness::{Net, fixture, node_dir};

fn pg_url() -> String {
    std::env::var("POSTSTELLE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// The schemas of one test, dropped when it ends (also when it fails).
struct Schemas(Vec<String>);

impl Drop for Schemas {
    fn drop(&mut self) {
        let (url, schemas) = (pg_url(), self.0.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
                    return;
                };
                tokio::spawn(conn);
                for s in schemas {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Points every node of `net` at PostgreSQL, each in a schema of its own.
fn on_postgres(net: &Net, nodes: usize) -> Schemas {
    let run = uuid_simple();
    let mut schemas = Vec::new();
    for i in 0..nodes {
        let schema = format!("pst_e2e_{run}_{i}");
        let url = pg_url();
        net.edit_config(i, |text| {
            text.replace(
                "schema = \"poststelle\"\n",
                &format!("url = \"{url}\"\nschema = \"{schema}\"\n"),
            )
        });
        schemas.push(schema);
    }
    Schemas(schemas)
}

fn uuid_simple() -> String {
    crate::harness::uuid().replace('-', "")
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_on_postgres_deliver_once_through_kill_9_and_write_no_sqlite() {
    let net = Net::init(2);
    let _schemas = on_postgres(&net, 2);
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
        text.replace(
            "schema = \"poststelle\"\n",
            "schema = \"poststelle\"\nurl = \"postgres://postgres:s3cret-pw@127.0.0.1:1/test?sslmode=disable\"\n",
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
