//! Receipt- and envelope-level attacks between real nodes (issue 13): a receipt replayed for
//! another message, a receipt signed by another partner, an envelope naming an authority its
//! TLS peer does not serve, a resend under the same message id with other content, and notices
//! for messages never sent. Each is refused with its code, changes no message, and is audited.
//!
//! Forged answers to a sender come from [`FakePartner`]: a real mutual-TLS endpoint on loopback
//! holding partner b's real certificate and key, which answers what the test chooses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::envelope::seal;
use gateway::envelope::{self, EnvelopeHeader, Outcome, Receipt};
use gateway::xmlsec::Identity;
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use serde_json::Value;

use crate::faults::fast_net;
use crate::harness::{Net, authority_file, authority_identity, https_client, node_dir, node_identity, sealed_envelope};

const T: Duration = Duration::from_secs(30);

/// What the fake partner answers to a request body: HTTP status and body.
type Answer = Box<dyn Fn(&[u8]) -> (u16, Vec<u8>) + Send>;

/// A partner transport endpoint presenting node `i`'s real certificate (mutual TLS), one
/// request per connection, answering what the test set.
struct FakePartner {
    url: String,
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakePartner {
    fn start(net: &Net, i: usize) -> FakePartner {
        let acceptor = acceptor(net, i);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer: Arc<Mutex<Answer>> = Arc::new(Mutex::new(Box::new(|_| (503, Vec::new()))));
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (answer2, served2, stop2) = (answer.clone(), served.clone(), stop.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(mut tls) = acceptor.accept(tcp) else { continue };
                let Some(body) = read_request(&mut tls) else { continue };
                let (status, reply) = (answer2.lock().unwrap())(&body);
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    reply.len()
                );
                let _ = tls.write_all(head.as_bytes()).and_then(|()| tls.write_all(&reply));
                let _ = tls.shutdown();
                served2.fetch_add(1, Ordering::SeqCst);
            }
        });
        FakePartner {
            url: format!("https://{addr}/v1/transport"),
            addr,
            answer,
            served,
            stop,
        }
    }

    fn answer(&self, f: impl Fn(&[u8]) -> (u16, Vec<u8>) + Send + 'static) {
        *self.answer.lock().unwrap() = Box::new(f);
    }

    /// Waits until `n` more requests were answered than now.
    async fn serve(&self, n: usize) {
        let target = self.served.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + T;
        while self.served.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "the sender did not try again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for FakePartner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A TLS server side with node `i`'s certificate and key that requires a client certificate
/// of the network's CA.
fn acceptor(net: &Net, i: usize) -> SslAcceptor {
    let d = node_dir(net, i);
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_certificate_chain_file(d.join("node.pem")).unwrap();
    b.set_private_key_file(d.join("node.key"), SslFiletype::PEM).unwrap();
    b.set_ca_file(&net.node(i).ca).unwrap();
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    b.build()
}

/// The body of one HTTP/1.1 request with a `content-length`.
fn read_request(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())?;
            if buf.len() >= end + 4 + len {
                return Some(buf[end + 4..end + 4 + len].to_vec());
            }
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The transport URL node `from` has for node `to`.
fn transport_url(net: &Net, from: usize, to: usize) -> String {
    let config = gateway::config::Config::load(&net.node(from).config).unwrap();
    let to = &net.node(to).name;
    config.partners.iter().find(|p| &p.node == to).unwrap().transport_urls[0].clone()
}

/// Points node `from`'s directory entry of node `to` at `url`.
fn point_at(net: &Net, from: usize, to: usize, url: &str) {
    let old = transport_url(net, from, to);
    net.edit_config(from, |t| t.replace(&old, url));
}

/// An HTTPS client presenting node `i`'s certificate.
fn as_node(net: &Net, i: usize) -> reqwest::Client {
    let d = node_dir(net, i);
    https_client(&net.node(i).ca, Some((&d.join("node.pem"), &d.join("node.key"))))
}

async fn post(http: &reqwest::Client, url: &str, body: &[u8]) -> (u16, String) {
    let r = http.post(url).body(body.to_vec()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A receipt or notice about `message_id`, signed with `signer`'s node key.
fn signed(signer: &Identity, message_id: &str, outcome: Outcome, digest: Option<Vec<u8>>) -> Vec<u8> {
    let r = Receipt {
        message_id: message_id.into(),
        outcome,
        code: None,
        detail: None,
        envelope_sha256: digest,
        receiver_node: "b".into(),
        time: "2026-11-22T10:00:00Z".into(),
    };
    seal::signed_receipt(&r, signer).unwrap()
}

fn message_id(envelope: &[u8]) -> String {
    envelope::parse_header(envelope).unwrap().message_id
}

/// Node `i`'s audit entries about `message_id` with this action and code (waits up to `T`
/// for at least `min`).
async fn audited(net: &Net, i: usize, action: &str, message_id: &str, code: &str, min: usize) -> usize {
    let deadline = Instant::now() + T;
    loop {
        let (_, v) = net.admin(i).get("/admin/api/audit?limit=1000").await;
        let n = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action && e["message_id"] == message_id && e["code"] == code)
            .count();
        if n >= min {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no {action} {code} of {message_id} audited at node {i}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node `i`'s messages (admin API) matching the query.
async fn messages(net: &Net, i: usize, query: &str) -> Vec<Value> {
    let (status, v) = net.admin(i).get(&format!("/admin/api/messages?{query}")).await;
    assert_eq!(status, 200, "{v}");
    v["messages"].as_array().unwrap().clone()
}

async fn status_of(net: &Net, i: usize, id: &str) -> Value {
    net.client(i).get_json(&format!("/v1/messages/{id}")).await.1["status"].clone()
}

/// Node a, whose directory entry of b points at a fake b answering `answer`; one message
/// a → b submitted.
async fn sender_facing_fake_b(
    net: &Net,
    answer: impl Fn(&[u8]) -> (u16, Vec<u8>) + Send + 'static,
) -> (FakePartner, crate::harness::NodeProc, String) {
    let fake = FakePartner::start(net, 1);
    fake.answer(answer);
    point_at(net, 0, 1, &fake.url);
    let a = net.start(0).await;
    let (status, v) = net.client(0).submit(&net.message(0, 1).1).await;
    assert_eq!(status, 202, "{v}");
    (fake, a, v["id"].as_str().unwrap().to_owned())
}

/// A receipt `received` for the envelope in `body`, bound to it, signed with `signer`'s key.
fn receipt_for(signer: &Identity, body: &[u8]) -> (u16, Vec<u8>) {
    let digest = Some(envelope::sha256(body));
    (200, signed(signer, &message_id(body), Outcome::Received, digest))
}

/// After the refusals, the fake answers as b would (b's key, our id, our digest): the same
/// path then marks the message received, so the refusals were about the receipts.
async fn then_a_genuine_receipt_is_taken(net: &Net, fake: &FakePartner, id: &str) {
    let b = node_identity(net, 1);
    fake.answer(move |body| receipt_for(&b, body));
    net.client(0).wait_status(id, "received", T).await;
}

/// Y waits for a receipt: not received, nothing stored as its receipt.
async fn still_unreceived(net: &Net, id: &str) {
    assert_eq!(status_of(net, 0, id).await, "sealed", "message {id}");
    let (status, _) = net.client(0).get_bytes(&format!("/v1/messages/{id}/receipt")).await;
    assert_eq!(status, 404, "a receipt of {id} was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_replayed_for_another_message_is_refused() {
    let net = fast_net(2);
    // Genuine answers of the real b about message X: its receipt, and a refusal of a copy.
    let _b = net.start(1).await;
    let (as_a, to_b) = (as_node(&net, 0), transport_url(&net, 0, 1));
    let x = sealed_envelope(&net, 0, "a", &net.node(0).authorities[0], 1);
    let (status, receipt_x) = post(&as_a, &to_b, &x).await;
    assert_eq!(status, 200, "{receipt_x}");
    let tampered = String::from_utf8(x.clone()).unwrap().replace("10:00:00Z", "10:00:01Z");
    let (status, refusal_x) = post(&as_a, &to_b, tampered.as_bytes()).await;
    assert_eq!(status, 422, "{refusal_x}");
    let x_id = message_id(&x);
    assert!(refusal_x.contains(&x_id), "{refusal_x}");

    // X's receipt as the answer for Y: refused (Y is not received), audited, tried again.
    let (fake, _a, y) = sender_facing_fake_b(&net, move |_| (200, receipt_x.clone().into_bytes())).await;
    fake.serve(2).await;
    audited(&net, 0, "receipt-refused", &y, "envelope-invalid", 1).await;
    still_unreceived(&net, &y).await;
    // X's refusal as the answer for Y: Y is not rejected with X's code either. (Of the next
    // three answers, one may still be X's receipt; the rest are refusals, each audited.)
    fake.answer(move |_| (422, refusal_x.clone().into_bytes()));
    let before = audited(&net, 0, "receipt-refused", &y, "envelope-invalid", 0).await;
    fake.serve(3).await;
    audited(&net, 0, "receipt-refused", &y, "envelope-invalid", before + 2).await;
    still_unreceived(&net, &y).await;
    let v = net.client(0).get_json(&format!("/v1/messages/{y}")).await.1;
    assert!(v["error"].is_null(), "{v}");
    then_a_genuine_receipt_is_taken(&net, &fake, &y).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_signed_by_another_partner_is_refused() {
    let net = fast_net(3);
    // Node c's valid key signs a receipt naming Y with Y's digest, as if it came from b.
    let c = node_identity(&net, 2);
    let (fake, _a, y) = sender_facing_fake_b(&net, move |body| receipt_for(&c, body)).await;
    fake.serve(2).await;
    audited(&net, 0, "receipt-refused", &y, "signer-mismatch", 1).await;
    still_unreceived(&net, &y).await;
    then_a_genuine_receipt_is_taken(&net, &fake, &y).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_naming_an_authority_its_peer_does_not_serve_is_refused() {
    let net = Net::init(3);
    let _b = net.start(1).await;
    let (as_c, to_b) = (as_node(&net, 2), transport_url(&net, 2, 1));
    let a_authority = net.node(0).authorities[0].clone();
    // Node c with its own valid certificate and keys, naming a's authority as the sender, as
    // node c and as node a.
    for claimed_node in ["c", "a"] {
        let forged = sealed_envelope(&net, 2, claimed_node, &a_authority, 1);
        let id = message_id(&forged);
        let (status, body) = post(&as_c, &to_b, &forged).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("<pst:Code>sender-mismatch</pst:Code>"), "{body}");
        assert!(body.contains(&format!("<pst:MessageId>{id}</pst:MessageId>")), "{body}");
        audited(&net, 1, "refused", &id, "sender-mismatch", 1).await;
    }
    assert_eq!(messages(&net, 1, "").await, Vec::<Value>::new(), "b stored nothing");
    let (_, inbox) = net.client(1).get_json("/v1/inbox").await;
    assert_eq!(inbox["messages"], serde_json::json!([]), "{inbox}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_with_other_content_is_a_conflict_and_the_original_stays() {
    let net = Net::init(2);
    let _b = net.start(1).await;
    let (as_a, to_b) = (as_node(&net, 0), transport_url(&net, 0, 1));
    let (uuid, original) = net.message(0, 1);
    let other = String::from_utf8(original.clone())
        .unwrap()
        .replace("Mustermann", "Musterfrau");
    let header = EnvelopeHeader {
        message_id: crate::harness::uuid(),
        xoev_uuid: uuid,
        sender_node: "a".into(),
        sender: net.node(0).authorities[0].clone(),
        recipient: net.node(1).authorities[0].clone(),
        message_type: "xumzug/1.0 umzug.Rueckmeldung.0101".into(),
        created: "2026-11-22T10:00:00Z".into(),
    };
    let recipient = gateway::xmlsec::trust::load_cert(&authority_file(&net, 1, "pem")).unwrap();
    let seal_with = |content: &[u8]| {
        let (author, node) = (authority_identity(&net, 0), node_identity(&net, 0));
        let limits = gateway::xml::prescan::Limits::default().for_envelopes();
        seal::seal(&header, content, &[], &author, &recipient, &node, &limits).unwrap()
    };
    let first = seal_with(&original);
    let (status, receipt) = post(&as_a, &to_b, &first).await;
    assert_eq!(status, 200, "{receipt}");

    let (status, body) = post(&as_a, &to_b, &seal_with(other.as_bytes())).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("<pst:Code>duplicate-conflict</pst:Code>"), "{body}");
    audited(&net, 1, "refused", &header.message_id, "duplicate-conflict", 1).await;
    // The very same envelope again is a duplicate, answered with the original receipt.
    assert_eq!(post(&as_a, &to_b, &first).await, (200, receipt));

    let stored = messages(&net, 1, "direction=inbound").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["remote_id"], header.message_id.as_str());
    let b = net.client(1);
    let inbox = b.wait_inbox(1, T).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(b.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await, (200, original));
}

#[tokio::test(flavor = "multi_thread")]
async fn notices_for_messages_never_sent_are_refused() {
    let net = Net::init(3);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    let (status, v) = ca.submit(&net.message(0, 1).1).await;
    assert_eq!(status, 202, "{v}");
    let y = v["id"].as_str().unwrap().to_owned();
    let inbox = cb.wait_inbox(1, T).await;
    ca.wait_status(&y, "received", T).await;

    let to_a = transport_url(&net, 1, 0);
    let (b_key, c_key) = (node_identity(&net, 1), node_identity(&net, 2));
    let digest = Some(envelope::sha256(b"never sent"));
    let unknown = [crate::harness::uuid(), crate::harness::uuid()];
    let cases = [
        // b's notices about messages a never sent.
        (
            as_node(&net, 1),
            signed(&b_key, &unknown[0], Outcome::Delivered, digest.clone()),
            &unknown[0],
        ),
        (
            as_node(&net, 1),
            signed(&b_key, &unknown[1], Outcome::Refused, digest.clone()),
            &unknown[1],
        ),
        // c's notice about a's message to b: a never sent it to c.
        (as_node(&net, 2), signed(&c_key, &y, Outcome::Delivered, digest), &y),
    ];
    for (http, notice, id) in &cases {
        let (status, body) = post(http, &to_a, notice).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("<pst:Code>not-found</pst:Code>"), "{body}");
        audited(&net, 0, "refused", id, "not-found", 1).await;
    }
    let sent = messages(&net, 0, "").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["id"], y.as_str());
    assert_eq!(sent[0]["status"], "received", "{sent:?}");
    // b's genuine notice still applies.
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    ca.wait_status(&y, "delivered", T).await;
}
