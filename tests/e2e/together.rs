//! Several envelopes of one partner in one request (issue 25): the relay sends the envelopes
//! due for a partner together (`multipart/mixed`), and the partner answers each of them in one
//! signed `pst:Notices`. Real nodes on loopback; fail points make the batches form on cue.

use std::time::Duration;

use gateway::envelope::seal;
use gateway::xml::prescan::Limits;

use crate::faults::set;
use crate::harness::{Net, as_node_a, sealed_envelope, sealed_envelope_with_id, uuid};
use crate::security::{node_cert, transport_policy};

const T: Duration = Duration::from_secs(30);

/// a with one relay slot for b, whose first relay job waits (a fail point) until the others
/// are due, so that they travel with it.
async fn one_slot_and_a_wait(net: &Net) -> crate::harness::NodeProc {
    set(net, 0, &[("per_partner_concurrency", "1")]);
    net.start_env(0, &[("FAILPOINTS", "relay.gather=1*return(2000)")]).await
}

/// Submits `n` messages a → b; their ids.
async fn submit(net: &Net, n: usize) -> Vec<String> {
    let ca = net.client(0);
    let mut ids = Vec::new();
    for _ in 0..n {
        let (status, v) = ca.submit(&net.message(0, 1).1).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Each message's receipt at a, once it is `received`.
async fn receipts(net: &Net, ids: &[String]) -> Vec<String> {
    let ca = net.client(0);
    let mut all = Vec::new();
    for id in ids {
        ca.wait_status(id, "received", T).await;
        let (status, r) = ca.get_bytes(&format!("/v1/messages/{id}/receipt")).await;
        assert_eq!(status, 200);
        all.push(String::from_utf8(r).unwrap());
    }
    all
}

/// Five envelopes due together go in one request; b checks and stores each, and answers all
/// five with one `pst:Notices` signed once, an entry per envelope with its digest. a takes it
/// as each message's receipt, and b's client gets each message once.
#[tokio::test(flavor = "multi_thread")]
async fn envelopes_due_together_travel_in_one_request_answered_by_one_signature() {
    let net = Net::init(2);
    let a = one_slot_and_a_wait(&net).await;
    let b = net.start(1).await;
    let ids = submit(&net, 5).await;
    let receipts = receipts(&net, &ids).await;
    assert!(receipts.iter().all(|r| r == &receipts[0]), "one answer for all five");
    let batch = &receipts[0];
    assert!(batch.contains("<pst:Notices "), "{batch}");
    assert_eq!(
        batch.matches("<pst:Outcome>received</pst:Outcome>").count(),
        5,
        "{batch}"
    );
    assert_eq!(batch.matches("<pst:EnvelopeDigest ").count(), 5, "{batch}");
    for id in &ids {
        assert!(
            batch.contains(&format!("<pst:MessageId>{id}</pst:MessageId>")),
            "{id}: {batch}"
        );
    }
    let limits = Limits::default();
    seal::verify_node_signed(batch.as_bytes(), &node_cert(&net, 1), &transport_policy(&net), &limits).unwrap();
    assert!(
        a.log_text()
            .lines()
            .any(|l| l.contains("sending envelopes together") && l.contains("\"envelopes\":5")),
        "{}",
        a.log_text()
    );
    assert!(b.log_text().contains("envelopes received together"));
    let (_, v) = net.admin(0).get("/admin/api/partners").await;
    assert!(v["partners"][0]["one_envelope_per_request_until"].is_null(), "{v}");
    let cb = net.client(1);
    let inbox = cb.wait_inbox(5, T).await;
    assert_eq!(inbox.len(), 5, "each message once");
    for id in &inbox {
        assert_eq!(cb.ack(id).await, 200);
    }
    for id in &ids {
        net.client(0).wait_status(id, "delivered", T).await;
    }
}

/// A partner that reads several envelopes in one request as one document (a node of an earlier
/// version, played by a fail point) refuses it: a sends the same envelopes one at a time, and
/// each arrives, with a receipt of its own; none is rejected.
#[tokio::test(flavor = "multi_thread")]
async fn a_partner_that_takes_one_envelope_per_request_gets_them_one_at_a_time() {
    let net = Net::init(2);
    let a = one_slot_and_a_wait(&net).await;
    let b = net
        .start_env(1, &[("FAILPOINTS", "transport.several=return(refuse)")])
        .await;
    let ids = submit(&net, 4).await;
    let receipts = receipts(&net, &ids).await;
    for (id, r) in ids.iter().zip(&receipts) {
        assert!(r.contains("<pst:Receipt "), "{r}");
        assert!(r.contains(&format!("<pst:MessageId>{id}</pst:MessageId>")), "{id}: {r}");
        assert!(r.contains("<pst:Outcome>received</pst:Outcome>"), "{r}");
    }
    assert!(a.log_text().contains("sending envelopes together"));
    assert!(a.log_text().contains("sending them one at a time"), "{}", a.log_text());
    assert!(!b.log_text().contains("envelopes received together"));
    assert_eq!(net.client(1).wait_inbox(4, T).await.len(), 4);
    // Operators see why, and until when.
    let (_, v) = net.admin(0).get("/admin/api/partners").await;
    let until = v["partners"][0]["one_envelope_per_request_until"]
        .as_str()
        .unwrap_or_default();
    assert!(until.ends_with('Z'), "{v}");
}

/// Several envelopes in one request, sent by hand: each is checked as if it came alone and
/// answered in the order sent — one already held (a resend), one changed in flight (refused,
/// signature), a new one, the same new one again, and one that reuses a held message id with
/// other content (a conflict). b keeps the signed answer as the receipt of what it stored, and
/// answers a later resend of it with those very bytes.
#[tokio::test(flavor = "multi_thread")]
async fn several_envelopes_in_one_request_are_each_checked_and_answered_in_order() {
    let net = Net::init(2);
    let _b = net.start(1).await;
    let (as_a, url) = as_node_a(&net);
    let sender = net.node(0).authorities[0].clone();
    let held_id = uuid();
    let held = sealed_envelope_with_id(&net, 0, "a", &sender, 1, &held_id);
    let r = as_a.post(&url).body(held.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let text = String::from_utf8(sealed_envelope(&net, 0, "a", &sender, 1)).unwrap();
    let at = text.find("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 10;
    let mut changed = text.into_bytes();
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let new = sealed_envelope(&net, 0, "a", &sender, 1);
    let conflict = sealed_envelope_with_id(&net, 0, "a", &sender, 1, &held_id);
    let sent: [&[u8]; 5] = [&held, &changed, &new, &new, &conflict];
    let (content_type, body) = gateway::partner::batch::frame(&sent);
    let r = as_a
        .post(&url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer = r.bytes().await.unwrap().to_vec();
    let limits = Limits::default();
    seal::verify_node_signed(&answer, &node_cert(&net, 1), &transport_policy(&net), &limits).unwrap();
    let entries = gateway::envelope::parse_notices(&answer).unwrap();
    let outcomes: Vec<(&str, Option<&str>)> = entries
        .iter()
        .map(|e| (e.outcome.as_str(), e.code.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("received", None),
            ("refused", Some("signature-invalid")),
            ("received", None),
            ("received", None),
            ("refused", Some("duplicate-conflict")),
        ]
    );
    for (entry, envelope) in entries.iter().zip(sent) {
        assert_eq!(
            entry.envelope_sha256.as_deref(),
            Some(gateway::envelope::sha256(envelope).as_slice())
        );
    }
    assert_eq!(entries[0].message_id, held_id);
    assert_eq!(entries[4].message_id, held_id);
    // Stored once each: the held one and the new one.
    let (_, all) = net.admin(1).get("/admin/api/messages").await;
    let mut stored: Vec<&str> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["remote_id"].as_str().unwrap())
        .collect();
    stored.sort();
    let mut expected = vec![held_id.as_str(), entries[2].message_id.as_str()];
    expected.sort();
    assert_eq!(stored, expected, "{all}");
    let r = as_a.post(&url).body(new).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        answer,
        "the kept receipt answers a resend"
    );
}
