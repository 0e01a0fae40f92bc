//! The audit log: operator actions and security events are recorded, hash-chained, in a file
//! or in the node's PostgreSQL store; `poststelle audit verify` names the first entry that was
//! edited or deleted.

use std::process::Command;

use serde_json::json;

use crate::harness::{Net, bin};

#[tokio::test(flavor = "multi_thread")]
async fn operator_actions_are_chained_and_tampering_is_named() {
    let net = Net::init(2);
    let a = net.start(0).await;
    let admin = net.admin(0);
    let post = |path: &str, token: &str| {
        admin
            .http
            .post(format!("{}{path}", admin.base))
            .bearer_auth(token.to_owned())
            .send()
    };
    // Three recorded events: a retry and a cancel of unknown messages, a wrong admin token.
    assert_eq!(
        post("/admin/api/messages/nope-1/retry", &admin.token)
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        post("/admin/api/messages/nope-2/cancel", &admin.token)
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        post("/admin/api/messages/nope-3/retry", "wrong-token-wrong-token")
            .await
            .unwrap()
            .status(),
        401
    );
    // The entries, through the admin API, wherever the log lives.
    let (status, tail) = admin.get("/admin/api/audit?limit=10").await;
    assert_eq!(status, 200, "{tail}");
    let entries = tail["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{tail}");
    assert_eq!(
        (&entries[0]["action"], &entries[0]["outcome"]),
        (&json!("retry"), &json!("not-found")),
        "{tail}"
    );
    assert_eq!(
        (&entries[1]["action"], &entries[1]["message_id"]),
        (&json!("cancel"), &json!("nope-2")),
        "{tail}"
    );
    assert_eq!(entries[2]["action"], "admin-unauthorized", "{tail}");
    assert!(
        !tail.to_string().contains("wrong-token"),
        "a presented token reached the audit log"
    );
    drop(a);

    // `audit verify --config` finds the node's log wherever it lives: a file in the data
    // folder, or the node's PostgreSQL schema (then nothing is written to the data folder).
    let config = net.node(0).config.clone();
    let log = config.parent().unwrap().join("data/audit.log");
    let verify = |target: &[&std::ffi::OsStr]| {
        let out = Command::new(bin())
            .args(["audit", "verify"])
            .args(target)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let by_config = || verify(&["--config".as_ref(), config.as_os_str()]);
    let (code, out) = by_config();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("intact, 3 entries"), "{out}");
    let tamper: Box<dyn Tamper> = match crate::harness::test_store_url() {
        None => {
            let (code, out) = verify(&[log.as_os_str()]);
            assert_eq!((code, out.contains("intact, 3 entries")), (Some(0), true), "{out}");
            Box::new(LogFile::read(log))
        }
        Some(url) => {
            assert!(!log.exists(), "an audit file beside a PostgreSQL store");
            let text = std::fs::read_to_string(&config).unwrap();
            let schema = text
                .lines()
                .find_map(|l| l.strip_prefix("schema = \""))
                .unwrap()
                .trim_end_matches('"')
                .to_owned();
            Box::new(Table { url, schema })
        }
    };
    for (what, line) in [("edited", 2), ("deleted", 1), ("deleted at the end", 3)] {
        let undo = tamper.apply(what);
        let (code, out) = by_config();
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(out.contains(&format!(":{line}: broken")), "{what}: {out}");
        tamper.undo(undo);
        assert_eq!(by_config().0, Some(0), "{what} undone");
    }
}

/// Edits, deletes and restores audit entries where the log lives.
trait Tamper {
    /// Breaks the log as `what` says; returns what undoes it.
    fn apply(&self, what: &str) -> String;
    fn undo(&self, undo: String);
}

struct LogFile {
    path: std::path::PathBuf,
    original: String,
}

impl LogFile {
    fn read(path: std::path::PathBuf) -> LogFile {
        let original = std::fs::read_to_string(&path).unwrap();
        LogFile { path, original }
    }
}

impl Tamper for LogFile {
    fn apply(&self, what: &str) -> String {
        let mut ls: Vec<&str> = self.original.lines().collect();
        let edited;
        match what {
            "edited" => {
                edited = ls[1].replace("nope-2", "nope-9");
                ls[1] = &edited;
            }
            "deleted" => drop(ls.remove(0)),
            _ => drop(ls.pop()),
        }
        std::fs::write(&self.path, ls.join("\n") + "\n").unwrap();
        String::new()
    }

    fn undo(&self, _: String) {
        std::fs::write(&self.path, &self.original).unwrap();
    }
}

/// The audit table of a node's PostgreSQL schema, changed with `psql` as someone with
/// access to the database could.
struct Table {
    url: String,
    schema: String,
}

impl Table {
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([self.url.as_str(), "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

impl Tamper for Table {
    fn apply(&self, what: &str) -> String {
        let s = &self.schema;
        let seq = match what {
            "edited" => {
                self.sql(&format!(
                    "UPDATE {s}.audit SET entry = replace(entry, 'nope-2', 'nope-9') WHERE seq = 2"
                ));
                return format!("UPDATE {s}.audit SET entry = replace(entry, 'nope-9', 'nope-2') WHERE seq = 2");
            }
            "deleted" => 1,
            _ => 3,
        };
        let entry = self.sql(&format!("SELECT entry FROM {s}.audit WHERE seq = {seq}"));
        self.sql(&format!("DELETE FROM {s}.audit WHERE seq = {seq}"));
        format!(
            "INSERT INTO {s}.audit(seq, entry) VALUES ({seq}, '{}')",
            entry.replace('\'', "''")
        )
    }

    fn undo(&self, undo: String) {
        self.sql(&undo);
    }
}
