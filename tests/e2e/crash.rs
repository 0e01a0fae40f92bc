//! Durability: a message acknowledged with 202 survives `kill -9` of its node.

use std::time::Duration;

use crate::harness::{Net, fixture};

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_right_after_202_loses_nothing() {
    let net = Net::init(2);
    // The partner is down: the message can only be in a's store when a dies.
    let mut a = net.start(0).await;
    let ca = net.client(0);
    let msg = fixture("xumzug/valid/rueckmeldung-umlaute-andere-praefixe.xml");
    let (status, v) = ca.submit(&msg).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    a.kill9();

    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let cb = net.client(1);
    let inbox = cb.wait_inbox(1, Duration::from_secs(60)).await;
    let (_, body) = cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await;
    assert_eq!(body, msg);
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    ca.wait_status(&id, "delivered", Duration::from_secs(30)).await;
    // Exactly once in the partner's inbox, even though a retried after its restart.
    assert_eq!(
        cb.get_json("/v1/inbox").await.1["messages"].as_array().unwrap().len(),
        0
    );
}
