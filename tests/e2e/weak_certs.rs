//! No weak certificate is accepted on any path that checks certificates (BSI TR-02102, the
//! profile in PRODUCT.md): a certificate signed with SHA-1 or MD5 — the leaf or any
//! intermediate — or carrying a key below the floor (RSA 3072 without the per-partner
//! exception) is refused by `poststelle xml verify`, by a node at start (its directory), by the
//! transport listener in the TLS handshake, and by the relay client in its handshake with a
//! partner. Each refusal has a positive control: the same key and chain signed with SHA-256.
//!
//! The weak certificates are issued here by the network's real CAs (written by
//! `network init`), so they chain to a trusted anchor and only their algorithm is wrong.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use poststelle_tests::pki::{self, Cert, Profile, Usage, load_cert, load_key, rsa, write_pem};

use crate::harness::{Net, bin, fixture, node_dir};

/// What a test certificate is for.
#[derive(Clone, Copy)]
enum Kind {
    Ca,
    /// A node: TLS server and client, valid for 127.0.0.1 (as `network init` makes them).
    Node,
    /// An authority: content signatures.
    Authority,
}

/// A certificate for `key` with subject `cn`, issued by `issuer` and signed with `digest`.
fn issue(cn: &str, key: &PKey<Private>, issuer: (&X509, &PKey<Private>), kind: Kind, digest: MessageDigest) -> X509 {
    let profile = match kind {
        Kind::Ca => Profile::Ca,
        Kind::Node => Profile::Node,
        Kind::Authority => Profile::Leaf(Usage::SIGN),
    };
    let now = pki::now();
    Cert::new(cn)
        .org(Some("Poststelle weak-certificate tests"))
        .issued_by(issuer.0)
        .valid(now, now + 30 * pki::DAY)
        .profile(profile)
        .digest(digest)
        .build(key, issuer.1)
}

/// A node certificate "poststelle node b" for `key`, issued by the network's transport CA.
fn node_b_cert(key: &PKey<Private>, ca: &(X509, PKey<Private>), digest: MessageDigest) -> X509 {
    issue("poststelle node b", key, (&ca.0, &ca.1), Kind::Node, digest)
}

/// `poststelle xml verify --trust TRUST FILE`: (exit code, stderr).
fn cli_verify(trust: &Path, file: &Path) -> (i32, String) {
    let out = Command::new(bin())
        .args(["xml", "verify", "--trust"])
        .arg(trust)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signs a small document with `key` and `cert` through `poststelle xml sign`.
fn cli_sign(dir: &Path, key: &Path, cert: &Path, name: &str) -> PathBuf {
    let input = dir.join("doc.xml");
    std::fs::write(&input, "<doc xmlns=\"urn:test\"><v>1</v></doc>").unwrap();
    let out = Command::new(bin())
        .args(["xml", "sign", "--key"])
        .arg(key)
        .arg("--cert")
        .arg(cert)
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "sign: {}", String::from_utf8_lossy(&out.stderr));
    let signed = dir.join(format!("{name}.signed.xml"));
    std::fs::write(&signed, out.stdout).unwrap();
    signed
}

#[test]
fn xml_verify_refuses_sha1_and_md5_certificates_and_weak_intermediates() {
    let net = Net::init(1);
    let dir = net.dir.path();
    let ca = (
        load_cert(&dir.join("content-ca.pem")),
        load_key(&dir.join("content-ca.key")),
    );
    let ca_ref = (&ca.0, &ca.1);
    let key_path = dir.join("signer.key");
    let key = rsa(3072);
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let anchor = dir.join("content-ca.pem");

    // The signer's certificate, directly under the trusted CA.
    let leaf = |name: &str, digest| {
        let cert = issue("authority psw:01003110", &key, ca_ref, Kind::Authority, digest);
        let path = write_pem(&dir.join(format!("{name}.pem")), &[&cert]);
        cli_sign(dir, &key_path, &path, name)
    };
    let (code, err) = cli_verify(&anchor, &leaf("sha256", MessageDigest::sha256()));
    assert_eq!(code, 0, "control: a SHA-256 certificate verifies: {err}");
    for (name, digest, named) in [
        ("sha1", MessageDigest::sha1(), "sha1WithRSAEncryption"),
        ("md5", MessageDigest::md5(), "md5WithRSAEncryption"),
    ] {
        let (code, err) = cli_verify(&anchor, &leaf(name, digest));
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains("certificate-invalid") && err.contains(named),
            "{name}: the refusal names the algorithm: {err}"
        );
    }

    // An intermediate CA in the trust bundle (root + intermediate), the signer under it.
    let via = |name: &str, inter_key: &PKey<Private>, digest| {
        let inter = issue("intermediate CA", inter_key, ca_ref, Kind::Ca, digest);
        let cert = issue(
            "authority psw:01003110",
            &key,
            (&inter, inter_key),
            Kind::Authority,
            MessageDigest::sha256(),
        );
        let trust = write_pem(&dir.join(format!("{name}-trust.pem")), &[&ca.0, &inter]);
        let path = write_pem(&dir.join(format!("{name}.pem")), &[&cert]);
        (trust, cli_sign(dir, &key_path, &path, name))
    };
    let strong = rsa(3072);
    let (trust, signed) = via("inter-sha256", &strong, MessageDigest::sha256());
    let (code, err) = cli_verify(&trust, &signed);
    assert_eq!(code, 0, "control: a SHA-256 intermediate verifies: {err}");
    let (trust, signed) = via("inter-sha1", &strong, MessageDigest::sha1());
    let (code, err) = cli_verify(&trust, &signed);
    assert_eq!(code, 1, "SHA-1 intermediate: {err}");
    assert!(err.contains("certificate-invalid"), "SHA-1 intermediate: {err}");
    let (trust, signed) = via("inter-2048", &rsa(2048), MessageDigest::sha256());
    let (code, err) = cli_verify(&trust, &signed);
    assert_eq!(code, 1, "RSA-2048 intermediate: {err}");
    assert!(
        err.contains("certificate-invalid") && err.contains("2048 bits"),
        "RSA-2048 intermediate: {err}"
    );
}

/// Runs `poststelle serve` and waits for it to exit; a node that is still running after 60 s
/// has accepted its configuration, which fails the test.
fn serve_must_refuse(config: &Path) -> String {
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert!(!status.success(), "serve exited 0: {err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started although its directory holds a weak certificate");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_refuses_to_start_with_a_weak_partner_certificate_and_names_the_file() {
    let net = Net::init(2);
    let dir = net.dir.path();
    let ca = (load_cert(&dir.join("ca.pem")), load_key(&dir.join("ca.key")));
    let b_key = load_key(&node_dir(&net, 1).join("node.key"));
    let cases = [
        (
            "partner-b-sha1.pem",
            &b_key,
            MessageDigest::sha1(),
            "sha1WithRSAEncryption",
        ),
        (
            "partner-b-rsa2048.pem",
            &rsa(2048),
            MessageDigest::sha256(),
            "2048 bits",
        ),
    ];
    let mut current = "../b/node.pem".to_string();
    for (file, key, digest, named) in cases {
        let cert = node_b_cert(key, &ca, digest);
        write_pem(&node_dir(&net, 0).join(file), &[&cert]);
        net.edit_config(0, |t| {
            let from = format!("certificate = \"{current}\"");
            assert!(t.contains(&from), "no partner certificate line {from:?}");
            t.replace(&from, &format!("certificate = \"{file}\""))
        });
        current = file.to_string();
        let err = serve_must_refuse(&net.node(0).config);
        assert!(
            err.contains("partner b") && err.contains(file) && err.contains(named),
            "the start error names the partner, the file and the cause: {err}"
        );
    }
}

/// One HTTPS request by hand with OpenSSL at security level 0 (so that the client itself
/// may present a weak certificate): the answer's first line, or the error.
fn raw_post(addr: &str, ca: &Path, cert: &X509, key: &PKey<Private>) -> Result<String, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_security_level(0);
    b.set_ca_file(ca).unwrap();
    b.set_certificate(cert).unwrap();
    b.set_private_key(key).unwrap();
    let connector = b.build();
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = connector.connect("127.0.0.1", tcp).map_err(|e| e.to_string())?;
    let body = "<not-an-envelope/>";
    let head = format!(
        "POST /v1/transport HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) if !answer.is_empty() => Ok(String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()),
        Ok(_) => Err("closed without an answer".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The transport address of node `i` (from its partner's directory entry).
fn transport_addr(net: &Net, partner_of: usize) -> String {
    let text = std::fs::read_to_string(&net.node(partner_of).config).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("transport_url = \""))
        .unwrap()
        .trim_end_matches('"');
    url.trim_start_matches("https://")
        .trim_end_matches("/v1/transport")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_listener_refuses_weak_client_certificates_in_the_handshake() {
    let net = Net::init(2);
    let a = net.start(0).await;
    let dir = net.dir.path().to_path_buf();
    let addr = transport_addr(&net, 1);
    let ca = (load_cert(&dir.join("ca.pem")), load_key(&dir.join("ca.key")));
    let b_dir = node_dir(&net, 1);
    let b_key = load_key(&b_dir.join("node.key"));
    let genuine = load_cert(&b_dir.join("node.pem"));
    let weak_key = rsa(2048);
    let sha1 = node_b_cert(&b_key, &ca, MessageDigest::sha1());
    let md5 = node_b_cert(&b_key, &ca, MessageDigest::md5());
    let small = node_b_cert(&weak_key, &ca, MessageDigest::sha256());
    let ca_file = dir.join("ca.pem");
    let attempts = tokio::task::spawn_blocking(move || {
        [
            ("genuine", raw_post(&addr, &ca_file, &genuine, &b_key)),
            ("sha1", raw_post(&addr, &ca_file, &sha1, &b_key)),
            ("md5", raw_post(&addr, &ca_file, &md5, &b_key)),
            ("rsa2048", raw_post(&addr, &ca_file, &small, &weak_key)),
        ]
    })
    .await
    .unwrap();
    for (name, result) in attempts {
        match (name, result) {
            ("genuine", Ok(line)) => assert!(line.starts_with("HTTP/1.1 4"), "control answered: {line}"),
            ("genuine", Err(e)) => panic!("control: the genuine certificate is refused: {e}"),
            (_, Ok(line)) => panic!("{name}: the listener answered {line:?} to a weak client certificate"),
            (_, Err(_)) => {}
        }
    }
    let log = a.log_text();
    let refusals = log.matches("TLS peer certificate refused").count();
    assert!(refusals >= 3, "each refusal is logged ({refusals}):\n{log}");
    assert!(
        log.contains("2048 bits"),
        "the key-size refusal names the cause:\n{log}"
    );
}

/// A certificate and its key, as a TLS server presents them.
type Presented = Arc<Mutex<(X509, PKey<Private>)>>;

/// A TLS server on `listener` standing in for partner b's transport listener: it presents
/// whatever `presented` holds at the moment and counts the handshakes that succeeded and
/// failed; it answers every request with 503.
fn fake_partner(listener: TcpListener, ca: PathBuf, presented: Presented, counts: Arc<Mutex<(usize, usize)>>) {
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
            b.set_security_level(0);
            let (cert, key) = presented.lock().unwrap().clone();
            b.set_certificate(&cert).unwrap();
            b.set_private_key(&key).unwrap();
            b.set_ca_file(&ca).unwrap();
            b.set_verify(SslVerifyMode::PEER);
            let acceptor = b.build();
            let counts = counts.clone();
            std::thread::spawn(move || match acceptor.accept(tcp) {
                Ok(mut tls) => {
                    let mut buf = [0u8; 8192];
                    if tls.read(&mut buf).is_ok_and(|n| n > 0) {
                        counts.lock().unwrap().0 += 1;
                        let _ = tls.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
                    } else {
                        counts.lock().unwrap().1 += 1;
                    }
                }
                Err(_) => counts.lock().unwrap().1 += 1,
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_a_partner_presenting_a_weak_or_another_nodes_certificate() {
    let net = Net::init(3);
    let dir = net.dir.path().to_path_buf();
    // Retry quickly and keep the circuit closed, so every phase sees fresh attempts.
    net.edit_config(0, |t| {
        t.replace("retry_initial_ms = 500", "retry_initial_ms = 100")
            .replace("retry_max_ms = 60000", "retry_max_ms = 300")
            .replace("circuit_failures = 5", "circuit_failures = 1000")
    });
    let addr = transport_addr(&net, 0);
    let listener = TcpListener::bind(&addr).unwrap();
    let ca = (load_cert(&dir.join("ca.pem")), load_key(&dir.join("ca.key")));
    let b_dir = node_dir(&net, 1);
    let b_key = load_key(&b_dir.join("node.key"));
    let genuine = load_cert(&b_dir.join("node.pem"));
    let sha1 = node_b_cert(&b_key, &ca, MessageDigest::sha1());
    let weak_key = rsa(2048);
    let small = node_b_cert(&weak_key, &ca, MessageDigest::sha256());
    let presented: Presented = Arc::new(Mutex::new((sha1, b_key.clone())));
    let counts = Arc::new(Mutex::new((0usize, 0usize)));
    fake_partner(listener, dir.join("ca.pem"), presented.clone(), counts.clone());

    let a = net.start(0).await;
    let client = net.client(0);
    let (status, v) = client
        .submit(&fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml"))
        .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();

    let wait = |what: &str, done: &dyn Fn(usize, usize, &str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, failed) = *counts.lock().unwrap();
            if done(ok, failed, &a.log_text()) {
                return (ok, failed);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: ok {ok}, failed {failed}\n{}",
                a.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (ok, failed) = wait("SHA-1 refused", &|_, failed, log| {
        failed >= 2 && log.contains("TLS peer certificate refused")
    });
    assert_eq!(ok, 0, "no request reached the partner presenting a SHA-1 certificate");

    // A 2048-bit key (the partner has no exception): only the profile's own check refuses it.
    *presented.lock().unwrap() = (small, weak_key);
    let (ok, _) = wait("RSA-2048 refused", &|_, f, log| {
        f >= failed + 2 && log.contains("2048 bits")
    });
    assert_eq!(ok, 0, "no request reached the partner presenting a 2048-bit key");
    let (_, v) = client.get_json(&format!("/v1/messages/{id}")).await;
    assert_eq!(v["status"], "sealed", "the message waits, not sent: {v:#}");

    // Node c's genuine certificate (same CA, valid for 127.0.0.1) is not b's: refused too.
    let before = counts.lock().unwrap().1;
    let c_dir = node_dir(&net, 2);
    *presented.lock().unwrap() = (load_cert(&c_dir.join("node.pem")), load_key(&c_dir.join("node.key")));
    let (ok, _) = wait("c's certificate refused", &|_, f, log| {
        f >= before + 2 && log.contains("not the certificate of the partner")
    });
    assert_eq!(
        ok, 0,
        "no request reached a server presenting another node's certificate"
    );

    // Control: the same partner with its genuine certificate gets the request.
    *presented.lock().unwrap() = (genuine, b_key);
    wait("genuine accepted", &|ok, _, _| ok >= 1);
}
