//! Two real nodes (`network init` + `serve`) exchange messages over mutual TLS.

use std::time::Duration;

use crate::harness::{Net, fixture};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_exchange_a_message_end_to_end() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    let msg = fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml");

    let (status, v) = ca.submit(&msg).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "accepted");
    let id = v["id"].as_str().unwrap().to_owned();

    // The partner's legacy system finds it in its inbox, byte for byte.
    let inbox = cb.wait_inbox(1, T).await;
    assert_eq!(inbox.len(), 1);
    let (s, body) = cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await;
    assert_eq!(s, 200);
    assert_eq!(body, msg, "the delivered message must be the submitted bytes");
    assert_eq!(ca.wait_status(&id, "received", T).await["status"], "received");

    // Acknowledging makes it `delivered` on the sender's side, through a notice.
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    let view = ca.wait_status(&id, "delivered", T).await;
    let timeline: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, ["accepted", "sealed", "sent", "received", "delivered"]);
    assert!(view["timeline"][0]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(view["author"], net.node(0).authorities[0]);
    assert_eq!(view["reader"], net.node(1).authorities[0]);
    assert_eq!(
        cb.get_json("/v1/inbox").await.1["messages"].as_array().unwrap().len(),
        0
    );

    // The partner's notice is kept as proof.
    let (s, receipt) = ca.get_bytes(&format!("/v1/messages/{id}/receipt")).await;
    assert_eq!(s, 200);
    let receipt = String::from_utf8(receipt).unwrap();
    assert!(receipt.contains("<pst:Outcome>delivered</pst:Outcome>"), "{receipt}");
    assert!(receipt.contains("<pst:ReceiverNode>b</pst:ReceiverNode>"), "{receipt}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resubmission_is_idempotent_and_conflicting_content_is_refused() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let ca = net.client(0);
    let msg = fixture("xumzug/valid/fortschreibung-lieschen-mueller.xml");
    let (s1, v1) = ca.submit(&msg).await;
    assert_eq!(s1, 202, "{v1}");
    let (s2, v2) = ca.submit(&msg).await;
    assert_eq!(s2, 200, "{v2}");
    assert_eq!(v1["id"], v2["id"]);
    let text = String::from_utf8(msg).unwrap();
    let changed = text.replacen("<xumzug:vornamen>Lieschen", "<xumzug:vornamen>Liese", 1);
    assert_ne!(changed, text, "the fixture must contain the first name to change");
    let (s3, v3) = ca.submit(changed.as_bytes()).await;
    assert_eq!(s3, 409, "{v3}");
    assert_eq!(v3["code"], "duplicate-conflict");
    // Someone else's message is not visible.
    let (s4, v4) = ca.get_json("/v1/messages/00000000-0000-0000-0000-000000000000").await;
    assert_eq!((s4, v4["code"].as_str()), (404, Some("not-found")));
}

/// A real standard through two real nodes: XBeteiligung 1.2 with the official schemas from
/// `../shared` (never copied into the project), authorities as in the sample messages.
#[tokio::test(flavor = "multi_thread")]
async fn xbeteiligung_sample_travels_between_nodes() {
    let net = Net::init(2);
    for i in 0..2 {
        net.edit_config(i, |t| {
            t.replace("psw:01003110", "xyz:0001")
                .replace("psw:09162000", "xyz:0002")
        });
        net.use_adapters(i, &[crate::harness::repo().join("manifests/xbeteiligung-1.2")]);
    }
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    let sample = std::fs::read(
        crate::harness::shared()
            .join("xoev/xbeteiligung-1.2/tests/res/xmlv14/xbeteiligung-test-kommunal.Initiieren.0401.xml"),
    )
    .unwrap();
    let (status, v) = ca.submit(&sample).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let inbox = cb.wait_inbox(1, T).await;
    assert_eq!(cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await.1, sample);
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    let view = ca.wait_status(&id, "delivered", T).await;
    assert_eq!(view["message_type"], "xbeteiligung/1.2 kommunal.Initiieren.0401");
    assert_eq!(view["xoev_uuid"], "60f6667b-fa45-4bd7-b717-f4d6c65e5edb");
}

/// SIGTERM stops a node cleanly (exit 0); what it had accepted is delivered after restart.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_keeps_accepted_messages() {
    let net = Net::init(2);
    let mut a = net.start(0).await;
    let ca = net.client(0);
    let (status, v) = ca
        .submit(&fixture("xumzug/valid/widerspruch-person-nicht-gefunden.xml"))
        .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let exit = a.terminate();
    assert!(exit.success(), "{exit:?}\n{}", a.log_text());
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let cb = net.client(1);
    let inbox = cb.wait_inbox(1, T).await;
    assert_eq!(inbox.len(), 1);
    cb.ack(&inbox[0]).await;
    ca.wait_status(&id, "delivered", T).await;
}

/// `GET /v1/inbox?wait=S`: an empty inbox answers when a message arrives (not at the end of
/// the wait), or empty after the wait; a wait out of range is `400 invalid-request`.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_answers_when_a_message_arrives() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let cb = net.client(1);
    let started = std::time::Instant::now();
    let (status, v) = cb.get_json("/v1/inbox?wait=1").await;
    assert_eq!((status, v["messages"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    assert!(started.elapsed() >= Duration::from_secs(1), "an empty inbox waits");
    for bad in ["wait=61", "wait=soon", "wait=1&other=2"] {
        let (status, v) = cb.get_json(&format!("/v1/inbox?{bad}")).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("invalid-request")),
            "{bad}: {v}"
        );
    }
    // A poll waiting before the message is even submitted answers with it.
    let poll = {
        let cb = net.client(1);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let answer = cb.get_json("/v1/inbox?wait=15").await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, msg) = net.message(0, 1);
    assert_eq!(net.client(0).submit(&msg).await.0, 202);
    let ((status, v), took) = poll.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        took < Duration::from_secs(14),
        "answered on arrival, not at the end: {took:?}"
    );
}
