//! AMQP against the real local RabbitMQ: client intake and inbox queues, driven by an external
//! client we did not write (Python `pika`, `tests/amqp/client.py`), through two real nodes.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Net, NodeProc, repo};

const T: Duration = Duration::from_secs(60);

/// The broker-restart test stops the broker every AMQP test uses: they take turns.
pub static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the pika client; returns what it printed.
fn pika(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(repo().join("tests/amqp/client.py"))
        .args(args)
        .output()
        .expect("python3 with pika (installed by .ci/run)");
    assert!(
        out.status.success(),
        "pika client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).unwrap()
}

/// A two-node network on the local broker (`network init --amqp`), its nodes running. Dropping
/// it stops the nodes, then deletes the network's queues, so runs leave the broker as they found it.
struct BrokerNet {
    net: Net,
    nodes: Vec<NodeProc>,
    network: String,
}

impl BrokerNet {
    /// `prepare` may edit the configs before the nodes start; node a gets `env_a`.
    async fn start(prepare: impl Fn(&Net), env_a: &[(&str, &str)]) -> BrokerNet {
        let net = Net::init_amqp(2);
        prepare(&net);
        let nodes = vec![net.start_env(0, env_a).await, net.start(1).await];
        let network = net.dir.path().join("network.json").display().to_string();
        BrokerNet { net, nodes, network }
    }

    /// Runs the pika client in `mode` on this network (off the async threads).
    async fn pika(&self, mode: &str, rest: &[&str]) -> Value {
        let mut args = vec![mode.to_owned(), self.network.clone()];
        args.extend(rest.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || pika(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap()
    }
}

impl Drop for BrokerNet {
    fn drop(&mut self) {
        self.nodes.clear();
        // Best effort, and never a panic: this may run while a failed test unwinds.
        let _ = Command::new("python3")
            .arg(repo().join("tests/amqp/client.py"))
            .args(["cleanup", &self.network])
            .output();
    }
}

fn fixture(rel: &str) -> String {
    repo().join("fixtures/messages/xumzug").join(rel).display().to_string()
}

/// A valid message published to node a's intake queue reaches node b's client on its inbox
/// queue (and counts as delivered there, so the sender sees `delivered`); an invalid one lands
/// in the dead-letter queue with its problem code, and `reply_to` gets the JSON problem with the
/// same correlation id. Both nodes publish a status event for every state the message passes.
#[tokio::test(flavor = "multi_thread")]
async fn an_external_pika_client_round_trips_through_queues() {
    let _broker = BROKER.lock().await;
    let bn = BrokerNet::start(|_| {}, &[]).await;
    let valid = fixture("valid/rueckmeldung-erika-mustermann.xml");
    let out = bn
        .pika("round-trip", &[&valid, &fixture("invalid/invalid-geburtsdatum.xml")])
        .await;
    let accepted = &out["replies"]["valid-1"];
    assert_eq!(accepted["status"], "accepted", "{out:#}");
    let problem = &out["replies"]["invalid-1"];
    assert_eq!(
        (problem["status"].as_u64(), problem["code"].as_str()),
        (Some(422), Some("schema-invalid")),
        "{out:#}"
    );
    assert!(problem["errors"][0]["line"].as_u64().is_some(), "{out:#}");
    assert_eq!(out["inbox"]["same_bytes"], true, "{out:#}");
    assert_eq!(
        out["inbox"]["headers"]["x-poststelle-message-type"],
        "xumzug/1.0 umzug.Rueckmeldung.0101"
    );
    assert_eq!(out["dead"]["code"], "schema-invalid", "{out:#}");
    assert_eq!(out["dead"]["correlation_id"], "invalid-1");
    assert_eq!(out["dead"]["same_bytes"], true);
    // The broker's confirm of the inbox publish counted as delivery: the sender is told.
    let id = accepted["id"].as_str().unwrap();
    let view = bn.net.client(0).wait_status(id, "delivered", T).await;
    assert_eq!(view["xoev_uuid"], "dfef3ee4-72a5-465b-9373-a31f18e85d70");
    // Status events: every state of both sides, routed by state, metadata only.
    let events = out["events"].as_array().unwrap();
    let states = |node: &str| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e["node"] == node)
            .filter_map(|e| e["status"].as_str())
            .collect()
    };
    let (sender, receiver) = (states("a"), states("b"));
    // (`sent` / `received` on the sender's side may be skipped: the receiver's `delivered`
    // notice can overtake the receipt, and then the message goes from sealed to delivered.)
    for s in ["accepted", "sealed", "delivered"] {
        assert!(sender.contains(&s), "sender events {sender:?}: {out:#}");
    }
    for s in ["received", "opened", "delivered"] {
        assert!(receiver.contains(&s), "receiver events {receiver:?}");
    }
    let raw = out["events_raw"].to_string();
    assert!(
        !raw.contains("Mustermann") && !raw.contains("Erika"),
        "an event carries content: {raw}"
    );
}

/// A message that crashes intake every time it is delivered is dead-lettered by the broker after
/// the queue's delivery limit; the messages behind it are delivered meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_is_dead_lettered_and_the_queue_keeps_flowing() {
    let _broker = BROKER.lock().await;
    let marker = "POISON-9f1c";
    let bn = BrokerNet::start(|_| {}, &[("FAILPOINTS", &format!("amqp.poison=return({marker})"))]).await;
    let valid = fixture("valid/rueckmeldung-erika-mustermann.xml");
    let out = bn.pika("poison", &[&valid, marker, "5"]).await;
    let mut sent: Vec<&str> = out["sent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut arrived: Vec<&str> = out["arrived"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    sent.sort_unstable();
    arrived.sort_unstable();
    assert_eq!(sent.len(), 5);
    assert_eq!(
        arrived, sent,
        "every message behind the poison one arrives, once: {out:#}"
    );
    assert_eq!(out["dead"]["poison"], true, "{out:#}");
    assert_eq!(out["dead"]["reason"], "delivery_limit", "{out:#}");
}

/// The broker restarts (`rabbitmqctl stop_app` / `start_app`) a third of the way through 1 000
/// messages published to node a's intake queue: the nodes reconnect, redeclare and resume;
/// nothing is lost, nothing unexpected arrives, and no message reaches node b's client twice as
/// two messages. An inbox publish whose confirm the broker's shutdown swallowed is published
/// again under the same AMQP `message_id` (at-least-once; an idempotent client drops it): such
/// redeliveries are counted and printed, not forbidden — exactly-once into a queue needs the
/// consumer's help.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_loses_nothing_and_creates_no_second_message() {
    let _broker = BROKER.lock().await;
    let bn = BrokerNet::start(|_| {}, &[]).await;
    let valid = fixture("valid/rueckmeldung-erika-mustermann.xml");
    let out = bn.pika("restart", &[&valid, "1000"]).await;
    eprintln!("broker restart: {out}");
    assert_eq!(
        (
            out["lost"].as_u64(),
            out["second_messages"].as_u64(),
            out["unexpected"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{out:#}"
    );
    // Redeliveries of one inbox message come only from publishes the restart cut off: at most
    // the few in flight at that moment.
    assert!(out["duplicated"].as_u64().unwrap() <= 16, "{out:#}");
    let (log_a, log_b) = (bn.nodes[0].log_text(), bn.nodes[1].log_text());
    assert!(
        log_a.contains("broker connection lost") || log_b.contains("broker connection lost"),
        "the restart did not reach the nodes:\n{log_a}\n{log_b}"
    );
}

/// Partners reached through the broker: with both nodes' HTTPS transport addresses made
/// unreachable, envelopes, receipts and notices travel over the nodes' transport queues, and a
/// message is delivered and its sender told. A document that only claims to come from a
/// partner is refused, as over HTTPS.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_exchange_envelopes_through_the_broker() {
    let _broker = BROKER.lock().await;
    let bn = BrokerNet::start(
        |net| {
            for i in 0..2 {
                net.edit_config(i, |t| {
                    let broken = break_https_transport(&t);
                    assert_ne!(broken, t, "no transport_url to break");
                    broken
                });
            }
        },
        &[],
    )
    .await;
    let ca = bn.net.client(0);
    let message = std::fs::read(fixture("valid/widerspruch-person-nicht-gefunden.xml")).unwrap();
    let (status, v) = ca.submit(&message).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let view = ca.wait_status(&id, "delivered", T).await;
    assert_eq!(view["message_type"], "xumzug/1.0 umzug.Widerspruch.0103");
    let forged = bn.pika("forge", &[]).await;
    let code: u16 = forged["status"].as_str().unwrap_or("0").parse().unwrap();
    assert!((400..500).contains(&code), "{forged:#}");
    assert!(forged["body"].as_str().unwrap().contains("refused"), "{forged:#}");
}

/// Points every `transport_url` of a config at a closed port.
fn break_https_transport(config: &str) -> String {
    config
        .lines()
        .map(|l| {
            if l.starts_with("transport_url = ") {
                "transport_url = \"https://127.0.0.1:9/v1/transport\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
