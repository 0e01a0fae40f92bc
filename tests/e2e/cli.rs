//! The command line as users run it: `demo`, `check-config`, `validate`.

use std::process::Command;

use crate::harness::{bin, repo};

#[test]
fn demo_delivers_every_valid_fixture_and_rejects_every_invalid_one() {
    let out = Command::new(bin()).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = repo().join("fixtures/messages/xumzug");
    let mut rows = 0;
    for kind in ["valid", "invalid"] {
        for entry in std::fs::read_dir(dir.join(kind)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("xml") {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let line = stdout
                .lines()
                .find(|l| l.contains(&format!("xumzug/{kind}/{name}")))
                .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"));
            let expected = if kind == "valid" {
                "delivered".to_owned()
            } else {
                let code = std::fs::read_to_string(path.with_extension("expected")).unwrap();
                format!("rejected {}", code.trim())
            };
            assert!(line.contains(&expected), "{name}: expected {expected}: {line}");
            assert!(!line.contains("✗"), "{line}");
            rows += 1;
        }
    }
    assert!(rows >= 14, "{rows} rows");
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[node]
name = "x"
data_dir = "d"
[listen]
api = "not-an-address"
transport = "127.0.0.1:1"
admin = "127.0.0.1:2"
[tls]
ca = "nope.pem"
cert = "nope.pem"
key = "nope.key"
[admin]
token = "short"
[[authorities]]
id = "psw:1"
certificate = "authority.pem"
key = "authority.key"
[[partners]]
node = "b"
transport_url = "http://insecure/v1/transport"
certificate = "missing.pem"
authorities = ["psw:1"]
"#,
    )
    .unwrap();
    let out = Command::new(bin()).arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "listen.api",
        "tls.ca",
        "tls.key",
        "admin.token",
        "partners[0].transport_url",
        "partners[0].certificate",
        "partners[0].authorities",
        "partners[0].authority_certificates",
        "authorities[0].certificate",
        "authorities[0].key",
    ] {
        assert!(err.contains(needle), "missing {needle}:\n{err}");
    }

    // A config written by network init passes.
    let net = crate::harness::Net::init(2);
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&net.node(0).config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn validate_prints_positions_and_exit_codes() {
    let fx = repo().join("fixtures/messages/xumzug");
    let out = Command::new(bin())
        .arg("validate")
        .arg(fx.join("valid/rueckmeldung mit leerzeichen.xml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("valid (xumzug/1.0 umzug.Rueckmeldung.0101)"), "{s}");

    let bad = fx.join("invalid/invalid-geburtsdatum.xml");
    let out = Command::new(bin()).arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8_lossy(&out.stdout);
    let first = s.lines().next().unwrap();
    let rest = first
        .strip_prefix(&format!("{}:", bad.display()))
        .unwrap_or_else(|| panic!("{first}"));
    let mut parts = rest.splitn(3, ':');
    let line: u32 = parts.next().unwrap().parse().unwrap();
    assert!(line > 1, "{first}");
    assert!(first.contains("schema-invalid"), "{first}");

    let out = Command::new(bin())
        .args(["validate", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problem"]["code"], "schema-invalid");

    let out = Command::new(bin())
        .args(["validate", "--adapters", "/nonexistent"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a broken adapter setup is a setup error");
}
