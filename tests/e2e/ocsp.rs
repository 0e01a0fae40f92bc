//! Revocation by OCSP (issue 29): real responders (`openssl ocsp -index … -port …`) on
//! loopback, one per CA. A revoked partner node certificate refuses the TLS handshake; a
//! revoked author certificate refuses the envelope with `certificate-invalid`; a responder that
//! is down refuses by default and is accepted with a warning and a metric under `soft_fail`;
//! answers are cached and asked again when they run out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspResponse};
use openssl::x509::X509;
use serde_json::Value;

use crate::harness::{Net, authority_file, next_ports, node_dir, transport_addr};

/// An `openssl ocsp` responder for one CA, answering from an index of certificates.
struct Responder {
    port: u16,
    dir: PathBuf,
    ca: String,
    child: Option<Child>,
}

impl Responder {
    /// A responder on a free port for the CA `ca` (`DIR/ca.pem` and `DIR/ca.key`).
    fn new(net: &Net, ca: &str) -> Responder {
        let port = loop {
            let p = next_ports(1);
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                break p;
            }
        };
        Responder {
            port,
            dir: net.dir.path().to_path_buf(),
            ca: ca.to_owned(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts it answering for `certs`: (certificate, revoked?). Others are unknown.
    async fn serve(&mut self, certs: &[(&Path, bool)]) {
        self.stop();
        let mut index = String::new();
        for (path, revoked) in certs {
            let cert = X509::from_pem(&std::fs::read(path).unwrap()).unwrap();
            let serial = cert.serial_number().to_bn().unwrap().to_hex_str().unwrap().to_string();
            let (flag, when) = if *revoked { ("R", "240101000000Z") } else { ("V", "") };
            index.push_str(&format!(
                "{flag}\t351231000000Z\t{when}\t{serial}\tunknown\t/CN={serial}\n"
            ));
        }
        let index_file = self.dir.join(format!("{}-index-{}.txt", self.ca, self.port));
        std::fs::write(&index_file, index).unwrap();
        let (pem, key) = (
            self.dir.join(format!("{}.pem", self.ca)),
            self.dir.join(format!("{}.key", self.ca)),
        );
        let child = Command::new("openssl")
            .args(["ocsp", "-ignore_err", "-nmin", "60", "-port", &self.port.to_string()])
            .arg("-index")
            .arg(&index_file)
            .arg("-CA")
            .arg(&pem)
            .arg("-rsigner")
            .arg(&pem)
            .arg("-rkey")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(index_file.with_extension("log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // Bound yet? Not by connecting: `openssl ocsp` serves one connection at a time and
        // hangs on one that closes without a request.
        while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok() {
            let log = std::fs::read_to_string(index_file.with_extension("log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "the OCSP responder did not come up:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Node `i`'s `[security.revocation]` table, replacing the one before.
fn revocation(net: &Net, i: usize, table: &str) {
    net.edit_config(i, |t| {
        let base = t.split("\n# revocation\n").next().unwrap().to_owned();
        format!("{base}\n# revocation\n[security.revocation]\n{table}\n")
    });
}

/// Node `i`'s certificate list: (role, name) → revocation status.
async fn revocation_of(net: &Net, i: usize, role: &str, name: &str) -> String {
    let (_, v) = net.admin(i).get("/admin/api/certificates").await;
    v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == role && c["name"] == name)
        .map(|c| c["revocation"]["status"].as_str().unwrap_or("none").to_owned())
        .unwrap_or_default()
}

async fn wait_revocation(net: &Net, i: usize, role: &str, name: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = revocation_of(net, i, role, name).await;
        if now == status {
            return;
        }
        if Instant::now() > deadline {
            let (_, v) = net.admin(i).get("/admin/api/certificates").await;
            panic!("{role} {name}: {now}, not {status}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether node `to`'s transport listener refuses a TLS connection with node `from`'s
/// identity (the handshake, or the first read after it under TLS 1.3, fails).
fn tls_refused(net: &Net, from: usize, to: usize) -> bool {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
    use std::io::{Read, Write};
    let dir = node_dir(net, from);
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_certificate_chain_file(dir.join("node.pem")).unwrap();
    b.set_private_key_file(dir.join("node.key"), SslFiletype::PEM).unwrap();
    b.set_ca_file(net.dir.path().join("ca.pem")).unwrap();
    let tcp = std::net::TcpStream::connect(transport_addr(net, to)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match b.build().connect("localhost", tcp) {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
            let mut buf = [0u8; 1];
            !matches!(s.read(&mut buf), Ok(1))
        }
    }
}

/// The certificate status node `i` staples on its API listener, for its own node certificate:
/// `None` without a stapled answer.
fn stapled(net: &Net, i: usize) -> Option<OcspCertStatus> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, StatusType};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let mut config = b.build().configure().unwrap();
    config.set_status_type(StatusType::OCSP).unwrap();
    let addr = net.node(i).api.trim_start_matches("https://").to_owned();
    let tls = config
        .connect("localhost", std::net::TcpStream::connect(addr).unwrap())
        .unwrap();
    let der = tls.ssl().ocsp_status()?.to_vec();
    let cert = X509::from_pem(&std::fs::read(node_dir(net, i).join("node.pem")).unwrap()).unwrap();
    let ca = X509::from_pem(&std::fs::read(net.dir.path().join("ca.pem")).unwrap()).unwrap();
    let basic = OcspResponse::from_der(&der).unwrap().basic().unwrap();
    let id = OcspCertId::from_cert(MessageDigest::sha1(), &cert, &ca).unwrap();
    basic.find_status(&id).map(|s| s.status)
}

/// The message's state at its sender.
async fn status(net: &Net, id: &str) -> Value {
    net.client(0).get_json(&format!("/v1/messages/{id}")).await.1
}

#[tokio::test(flavor = "multi_thread")]
async fn ocsp_refuses_revoked_partner_certificates_in_the_handshake_and_in_the_envelope() {
    let net = Net::init(2);
    // a retries quickly, so that each phase shows within seconds.
    net.edit_config(0, |t| {
        t.replace("retry_max_ms = 60000", "retry_max_ms = 500")
            .replace("circuit_open_ms = 30000", "circuit_open_ms = 500")
    });
    let mut transport = Responder::new(&net, "ca");
    let mut content = Responder::new(&net, "content-ca");
    let (a_node, a_author) = (node_dir(&net, 0).join("node.pem"), authority_file(&net, 0, "pem"));
    let (transport_url, content_url) = (transport.url(), content.url());
    let settings = |soft_fail: &str| {
        format!(
            "mode = \"ocsp\"\nresponder = \"{transport_url}\"\ncontent_responder = \"{content_url}\"\nsoft_fail = [{soft_fail}]\nmax_cache_seconds = 1\nretry_seconds = 1"
        )
    };

    // 1. Both responders down. By default b refuses a's node certificate: a cannot reach it.
    revocation(&net, 1, &settings(""));
    let _a = net.start(0).await;
    let b = net.start(1).await;
    wait_revocation(&net, 1, "partner", "a", "failed").await;
    assert_eq!(stapled(&net, 1), None, "no answer to staple");
    assert!(
        b.metric("poststelle_revocation_checks_failing", "role=\"node\"")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    let (_, m1) = net.message(0, 1);
    let (code, v) = net.client(0).submit(&m1).await;
    assert_eq!(code, 202, "{v}");
    let id1 = v["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = status(&net, &id1).await;
    assert!(["accepted", "sealed"].contains(&s["status"].as_str().unwrap()), "{s}");
    assert!(b.log_text().contains("no OCSP answer"), "{}", b.log_text());

    // 2. soft_fail for both roles, put in force by a reload: accepted with a warning and a
    // metric; the message goes through.
    revocation(&net, 1, &settings("\"node\", \"authority\""));
    net.reload(1, &b).await;
    let done = net
        .client(0)
        .wait_status(&id1, "received", Duration::from_secs(30))
        .await;
    assert_eq!(done["status"], "received", "{done}");
    assert!(
        b.metric("poststelle_revocation_soft_fail_total", "role=\"node\"")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        b.metric("poststelle_revocation_soft_fail_total", "role=\"authority\"")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(!tls_refused(&net, 0, 1), "soft_fail lets the handshake pass");

    // 3. The responders answer: a's node certificate is revoked. No soft_fail. b refuses a's
    // TLS handshake; nothing arrives.
    let b_node = node_dir(&net, 1).join("node.pem");
    transport.serve(&[(&a_node, true), (&b_node, false)]).await;
    content.serve(&[(&a_author, false)]).await;
    revocation(&net, 1, &settings(""));
    net.reload(1, &b).await;
    wait_revocation(&net, 1, "partner", "a", "revoked").await;
    wait_revocation(&net, 1, "partner-authority", &net.node(0).authorities[0], "good").await;
    // b staples its own certificate's answer for clients that ask.
    wait_revocation(&net, 1, "node", "b", "good").await;
    assert_eq!(stapled(&net, 1), Some(OcspCertStatus::GOOD));
    // A new connection with a's identity: the handshake is refused.
    assert!(
        tls_refused(&net, 0, 1),
        "a revoked node certificate must not pass the handshake"
    );
    // A message: a's connection from before may still be open (kept alive); then the
    // envelope's transport signature is refused with the code. It never arrives.
    let (_, m2) = net.message(0, 1);
    let (code, v) = net.client(0).submit(&m2).await;
    assert_eq!(code, 202, "{v}");
    let id2 = v["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = status(&net, &id2).await;
    match s["status"].as_str().unwrap() {
        "accepted" | "sealed" => {}
        "rejected" => {
            assert_eq!(s["error"]["code"], "certificate-invalid", "{s}");
            assert!(s["error"]["detail"].as_str().unwrap().contains("revoked (OCSP"), "{s}");
        }
        _ => panic!("a message from a revoked node arrived: {s}"),
    }
    assert!(
        b.log_text().contains("the certificate is revoked (OCSP"),
        "{}",
        b.log_text()
    );
    assert!(
        b.metric("poststelle_revocation_checks_total", "outcome=\"revoked\"")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );

    // 4. a's node certificate good again, its authority's certificate revoked: the handshake
    // passes (answers are asked again after max_cache_seconds), the envelope is refused with
    // certificate-invalid, and a learns the code.
    transport.serve(&[(&a_node, false), (&b_node, false)]).await;
    content.serve(&[(&a_author, true)]).await;
    wait_revocation(&net, 1, "partner", "a", "good").await;
    wait_revocation(&net, 1, "partner-authority", &net.node(0).authorities[0], "revoked").await;
    assert!(!tls_refused(&net, 0, 1), "a's node certificate is good again");
    let (_, m3) = net.message(0, 1);
    let (code, v) = net.client(0).submit(&m3).await;
    assert_eq!(code, 202, "{v}");
    let id3 = v["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = status(&net, &id3).await;
        if s["status"] == "rejected" {
            break s;
        }
        assert!(Instant::now() < deadline, "not refused: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s["error"]["code"], "certificate-invalid", "{s}");
    let detail = s["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("the author's certificate") && detail.contains("revoked"),
        "{s}"
    );
    // a has no OCSP configured: its certificate list shows no revocation status.
    assert_eq!(revocation_of(&net, 0, "partner", "b").await, "none");
}

/// The transport listener's router with a TLS peer's certificate, as the accept loop hands it
/// on: (status, body).
async fn transport_post(ctx: &std::sync::Arc<gateway::ctx::Ctx>, peer: &Path, body: Vec<u8>) -> (u16, String) {
    use tower::ServiceExt;
    let cert = X509::from_pem(&std::fs::read(peer).unwrap()).unwrap();
    let mut req = axum::http::Request::post("/v1/transport")
        .header("content-type", "application/xml")
        .body(axum::body::Body::from(body))
        .unwrap();
    req.extensions_mut().insert(gateway::tls::PeerCert {
        fingerprint: Some(gateway::xmlsec::trust::fingerprint(&cert).unwrap()),
    });
    let resp = gateway::partner::receive::router(ctx.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Whatever the transport (a kept-alive TLS connection from before the answer, the broker):
/// an envelope whose transport signature was made with a revoked node certificate is refused
/// with `certificate-invalid`; the same envelope is taken once the responder calls it good.
#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_signed_with_a_revoked_node_certificate_is_refused_with_a_code() {
    let net = Net::init(2);
    let mut transport = Responder::new(&net, "ca");
    let a_node = node_dir(&net, 0).join("node.pem");
    transport.serve(&[(&a_node, true)]).await;
    revocation(
        &net,
        1,
        &format!(
            "mode = \"ocsp\"\nresponder = \"{}\"\nsoft_fail = [\"authority\"]\nmax_cache_seconds = 1",
            transport.url()
        ),
    );
    let config = gateway::config::Config::load(&net.node(1).config).unwrap();
    let ctx = std::sync::Arc::new(gateway::node::context(config).await.unwrap());
    let http = reqwest::Client::new();
    let targets = gateway::node::revocation_targets(&ctx.live());
    ctx.revocation.refresh(&targets, &http).await;
    let a = &net.node(0).name;
    let a_authority = &net.node(0).authorities[0];

    let (status, body) = transport_post(
        &ctx,
        &a_node,
        crate::harness::sealed_envelope(&net, 0, a, a_authority, 1),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("certificate-invalid") && body.contains("revoked (OCSP"),
        "{body}"
    );

    // Good again: once the answer runs out (max_cache_seconds) it is asked anew.
    transport.serve(&[(&a_node, false)]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ctx.revocation.refresh(&targets, &http).await;
    let (status, body) = transport_post(
        &ctx,
        &a_node,
        crate::harness::sealed_envelope(&net, 0, a, a_authority, 1),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("received"), "{body}");
}
