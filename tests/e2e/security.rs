//! The envelope's security layers between two real nodes: what travels is signed and encrypted,
//! receipts are signed, a tampered envelope gets a signed refusal, and only the recipient
//! authority's key opens the content.

use std::time::Duration;

use gateway::envelope::seal;
use gateway::problem::Code;
use gateway::store::Blob;
use gateway::xml::prescan::Limits;
use gateway::xmlsec::{Policy, trust};

use crate::harness::{Net, as_node_a, authority_file, authority_identity, fixture, node_dir, sealed_envelope};

const T: Duration = Duration::from_secs(30);

pub(crate) fn transport_policy(net: &Net) -> Policy {
    Policy {
        anchors: vec![net.dir.path().join("ca.pem")],
        ..Policy::default()
    }
}

pub(crate) fn node_cert(net: &Net, i: usize) -> openssl::x509::X509 {
    trust::load_cert(&node_dir(net, i).join("node.pem")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_is_signed_and_encrypted_and_receipts_are_signed() {
    let net = Net::init(3);
    let mut a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    let msg = fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml");
    let (status, v) = ca.submit(&msg).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let inbox = cb.wait_inbox(1, T).await;
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    ca.wait_status(&id, "delivered", T).await;

    // The stored notice is signed by b: it verifies against b's certificate, not a's, and not
    // after a change.
    let (_, notice) = ca.get_bytes(&format!("/v1/messages/{id}/receipt")).await;
    let limits = Limits::default();
    seal::verify_node_signed(&notice, &node_cert(&net, 1), &transport_policy(&net), &limits).unwrap();
    let e = seal::verify_node_signed(&notice, &node_cert(&net, 0), &transport_policy(&net), &limits).unwrap_err();
    assert_eq!(e.code, Code::SignerMismatch, "{e}");
    let forged = String::from_utf8(notice.clone())
        .unwrap()
        .replace(">delivered<", ">refused<");
    assert_ne!(forged.as_bytes(), notice.as_slice());
    let e =
        seal::verify_node_signed(forged.as_bytes(), &node_cert(&net, 1), &transport_policy(&net), &limits).unwrap_err();
    assert_eq!(e.code, Code::SignatureInvalid, "{e}");

    // What a sent is what travelled: read the envelope from a's store after a stops.
    a.terminate();
    let config = gateway::config::Config::load(&net.node(0).config).unwrap();
    let store = gateway::node::open_store(&config).await.unwrap();
    let envelope = store
        .blob(&id, Blob::Envelope)
        .await
        .unwrap()
        .expect("the sealed envelope is stored");
    let text = String::from_utf8(envelope.clone()).unwrap();
    assert!(
        text.contains("xmlenc11#aes256-gcm") && text.contains("xmlenc11#rsa-oaep"),
        "{text}"
    );
    assert!(text.contains("xmldsig-more#sha256-rsa-MGF1"), "{text}");
    for secret in ["Mustermann", "Erika"] {
        assert!(!text.contains(secret), "plaintext {secret} in the envelope");
    }
    seal::verify_node_signed(&envelope, &node_cert(&net, 0), &transport_policy(&net), &limits).unwrap();

    // Only b's authority key opens it, and the author's signature is checked.
    let content_policy = Policy {
        anchors: vec![net.dir.path().join("content-ca.pem")],
        ..Policy::default()
    };
    let a_cert = trust::load_cert(&authority_file(&net, 0, "pem")).unwrap();
    let b_key = authority_identity(&net, 1).key;
    let env_limits = limits.for_envelopes();
    let opened = seal::open(&envelope, &b_key, &a_cert, &content_policy, &env_limits)
        .unwrap()
        .content;
    assert_eq!(opened, msg);
    for wrong in [0, 2] {
        let key = authority_identity(&net, wrong).key;
        let e = seal::open(&envelope, &key, &a_cert, &content_policy, &env_limits).unwrap_err();
        assert_eq!(e.code, Code::DecryptionFailed, "{e}");
    }
    // A content signer who is not the author: refused.
    let c_cert = trust::load_cert(&authority_file(&net, 2, "pem")).unwrap();
    let e = seal::open(&envelope, &b_key, &c_cert, &content_policy, &env_limits).unwrap_err();
    assert_eq!(e.code, Code::SignerMismatch, "{e}");
}

/// Notices that come due together travel together: b's first notice waits (a fail point
/// lengthens its linger) while the client acknowledges the other messages, and then goes
/// with theirs in one batch signed once by b. a applies every notice of it and keeps the
/// signed batch as each message's notice; it verifies against b's certificate only, and not
/// after a change.
#[tokio::test(flavor = "multi_thread")]
async fn notices_due_together_travel_as_one_signed_batch() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net
        .start_env(1, &[("FAILPOINTS", "notice.gather=1*return(3000)")])
        .await;
    let (ca, cb) = (net.client(0), net.client(1));
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (status, v) = ca.submit(&net.message(0, 1).1).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let inbox = cb.wait_inbox(4, T).await;
    for id in &inbox {
        assert_eq!(cb.ack(id).await, 200);
    }
    let mut notices = Vec::new();
    for id in &ids {
        ca.wait_status(id, "delivered", T).await;
        notices.push(ca.get_bytes(&format!("/v1/messages/{id}/receipt")).await.1);
    }
    assert!(notices.iter().all(|n| n == &notices[0]), "one batch for all four");
    let batch = String::from_utf8(notices[0].clone()).unwrap();
    assert!(batch.contains("<pst:Notices "), "{batch}");
    assert_eq!(
        batch.matches("<pst:Outcome>delivered</pst:Outcome>").count(),
        4,
        "{batch}"
    );
    for id in &ids {
        assert!(
            batch.contains(&format!("<pst:MessageId>{id}</pst:MessageId>")),
            "{id}: {batch}"
        );
    }
    let limits = Limits::default();
    seal::verify_node_signed(&notices[0], &node_cert(&net, 1), &transport_policy(&net), &limits).unwrap();
    let e = seal::verify_node_signed(&notices[0], &node_cert(&net, 0), &transport_policy(&net), &limits).unwrap_err();
    assert_eq!(e.code, Code::SignerMismatch, "{e}");
    let forged = batch.replacen(">delivered<", ">refused<", 1);
    let e =
        seal::verify_node_signed(forged.as_bytes(), &node_cert(&net, 1), &transport_policy(&net), &limits).unwrap_err();
    assert_eq!(e.code, Code::SignatureInvalid, "{e}");
}

/// Receipts of envelopes that arrive while another receipt is being signed are signed
/// together: b holds its first signature (a fail point), a relays three more meanwhile (four
/// slots), and their answer is one `pst:Notices` document naming each of the three with its
/// envelope's digest, signed once by b. a takes its entry as each message's receipt.
#[tokio::test(flavor = "multi_thread")]
async fn receipts_signed_together_answer_each_of_their_envelopes() {
    let net = Net::init(2);
    // Each envelope in a request of its own (else a sends those due together in one).
    crate::faults::set(
        &net,
        0,
        &[("per_partner_concurrency", "4"), ("envelopes_per_request", "1")],
    );
    let _a = net.start(0).await;
    let _b = net
        .start_env(1, &[("FAILPOINTS", "receipts.hold=1*return(2000)")])
        .await;
    let ca = net.client(0);
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (status, v) = ca.submit(&net.message(0, 1).1).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut receipts = Vec::new();
    for id in &ids {
        ca.wait_status(id, "received", T).await;
        receipts.push(String::from_utf8(ca.get_bytes(&format!("/v1/messages/{id}/receipt")).await.1).unwrap());
    }
    let together: Vec<&String> = receipts.iter().filter(|r| r.contains("<pst:Notices ")).collect();
    assert_eq!(together.len(), 3, "three answered together: {receipts:#?}");
    assert!(together.iter().all(|r| *r == together[0]), "one document for the three");
    assert_eq!(receipts.iter().filter(|r| r.contains("<pst:Receipt ")).count(), 1);
    assert_eq!(together[0].matches("<pst:Outcome>received</pst:Outcome>").count(), 3);
    assert_eq!(together[0].matches("<pst:EnvelopeDigest ").count(), 3);
    for (id, r) in ids.iter().zip(&receipts) {
        assert!(r.contains(&format!("<pst:MessageId>{id}</pst:MessageId>")), "{id}: {r}");
    }
    let limits = Limits::default();
    seal::verify_node_signed(
        together[0].as_bytes(),
        &node_cert(&net, 1),
        &transport_policy(&net),
        &limits,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_envelope_gets_a_signed_refusal() {
    let net = Net::init(2);
    let _b = net.start(1).await;
    let (as_a, url) = as_node_a(&net);
    let sender = net.node(0).authorities[0].clone();

    // Untouched: received.
    let good = sealed_envelope(&net, 0, "a", &sender, 1);
    let r = as_a.post(&url).body(good.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Changed in flight (header, or one character of the ciphertext): refused with 422 and a
    // refusal that b signed.
    let text = String::from_utf8(sealed_envelope(&net, 0, "a", &sender, 1)).unwrap();
    let header_changed = text.replace("2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z");
    let at = text.find("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 10;
    let mut cipher_changed = text.clone().into_bytes();
    cipher_changed[at] = if cipher_changed[at] == b'A' { b'B' } else { b'A' };
    for tampered in [header_changed.into_bytes(), cipher_changed] {
        let r = as_a.post(&url).body(tampered).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let refusal = r.bytes().await.unwrap();
        let body = String::from_utf8_lossy(&refusal);
        assert!(body.contains("<pst:Outcome>refused</pst:Outcome>"), "{body}");
        assert!(body.contains("<pst:Code>signature-invalid</pst:Code>"), "{body}");
        seal::verify_node_signed(
            &refusal,
            &node_cert(&net, 1),
            &transport_policy(&net),
            &Limits::default(),
        )
        .expect("the refusal is signed by b");
    }

    // An unsigned envelope (signature removed) is refused by the schema already.
    let start = text.rfind("<ds:Signature xmlns").unwrap();
    let end = text.rfind("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let unsigned = format!("{}{}", &text[..start], &text[end..]);
    let r = as_a.post(&url).body(unsigned).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("envelope-invalid"), "{body}");
}
