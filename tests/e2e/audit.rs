//! The audit log: operator actions and security events are recorded, hash-chained; `poststelle
//! audit verify` names the first line that was edited or deleted.

use std::process::Command;

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
    drop(a);
    let log = net.node(0).config.parent().unwrap().join("data/audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("\"action\":\"retry\"") && lines[0].contains("\"outcome\":\"not-found\""),
        "{text}"
    );
    assert!(
        lines[1].contains("\"action\":\"cancel\"") && lines[1].contains("nope-2"),
        "{text}"
    );
    assert!(lines[2].contains("\"action\":\"admin-unauthorized\""), "{text}");
    assert!(!text.contains("wrong-token"), "a presented token reached the audit log");

    let verify = || {
        let out = Command::new(bin())
            .args(["audit", "verify"])
            .arg(&log)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = verify();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("intact, 3 entries"), "{out}");
    let write = |ls: Vec<String>| std::fs::write(&log, ls.join("\n") + "\n").unwrap();
    let own = || lines.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (what, line) in [("edited", 2), ("deleted", 1), ("deleted at the end", 3)] {
        let mut ls = own();
        match what {
            "edited" => ls[1] = ls[1].replace("nope-2", "nope-9"),
            "deleted" => drop(ls.remove(0)),
            _ => drop(ls.pop()),
        }
        write(ls);
        let (code, out) = verify();
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(out.contains(&format!("audit.log:{line}: broken")), "{what}: {out}");
    }
}
