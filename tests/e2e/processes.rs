//! Several processes of one node (issue 24, first step): with a PostgreSQL store, `serve` of
//! the same configuration runs again beside a running process, shares its addresses
//! (SO_REUSEPORT), takes the next slot of the data folder and its own lease holder name; the
//! admin status lists the node's processes and which are alive; a process killed with SIGKILL
//! loses nothing, and its restart takes its slot back; one stopped with SIGTERM under load
//! loses and doubles nothing either. With a broker, the processes share the node's queues and
//! its status events go out once per transition, through the store's outbox, even when the
//! process that committed a transition is killed before it published it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{Net, node_dir};

/// Node `i`'s processes from its admin status: id → alive.
async fn processes(net: &Net, i: usize) -> BTreeMap<String, bool> {
    let (status, v) = net.admin(i).get("/admin/api/status").await;
    assert_eq!(status, 200, "{v}");
    v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_owned(), p["alive"].as_bool().unwrap()))
        .collect()
}

/// Waits until node a's status lists exactly these processes (slots) as alive and those as gone.
async fn wait_processes(net: &Net, alive: &[&str], gone: &[&str]) {
    wait_processes_of(net, 0, alive, gone).await
}

async fn wait_processes_of(net: &Net, i: usize, alive: &[&str], gone: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let folder = std::fs::read_to_string(node_dir(net, i).join("data/poststelle.id")).unwrap();
    let name = &net.node(i).name;
    let want: BTreeMap<String, bool> = alive
        .iter()
        .map(|s| (*s, true))
        .chain(gone.iter().map(|s| (*s, false)))
        .map(|(slot, a)| (format!("{name}@{}:{}#{slot}", host.trim(), folder.trim()), a))
        .collect();
    loop {
        let seen = processes(net, i).await;
        if seen == want {
            return;
        }
        assert!(Instant::now() < deadline, "processes {seen:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ten messages from a to b, each on a connection of its own (so the kernel spreads them over
/// the processes listening on a's address), retried like a careful client; their ids.
async fn submit_ten(net: &Net) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..10 {
        let (_, body) = net.message(0, 1);
        ids.push(
            net.client(0)
                .submit_until_accepted(&body, Duration::from_secs(30))
                .await,
        );
    }
    ids
}

/// Node b's client fetches and acknowledges until every one of `ids` (a's message ids) is
/// delivered; each arrives once and nothing else does.
async fn receive_exactly(net: &Net, ids: &[String]) {
    let cb = net.client(1);
    let mut fetched = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while fetched < ids.len() {
        assert!(Instant::now() < deadline, "{fetched} of {} arrived", ids.len());
        for id in cb.wait_inbox(1, Duration::from_secs(60)).await {
            assert_eq!(cb.ack(&id).await, 200);
            fetched += 1;
        }
    }
    let ca = net.client(0);
    for id in ids {
        ca.wait_status(id, "delivered", Duration::from_secs(60)).await;
    }
    assert!(
        cb.get_json("/v1/inbox").await.1["messages"]
            .as_array()
            .unwrap()
            .is_empty(),
        "each message once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_of_one_node_share_its_addresses_list_each_other_and_lose_nothing() {
    let net = Net::init_on_postgres(2);
    let mut first = net.start(0).await;
    let second = net.start(0).await;
    let _b = net.start(1).await;
    wait_processes(&net, &["0", "1"], &[]).await;
    assert!(node_dir(&net, 0).join("data/poststelle.slot-1.lock").exists());
    // `poststelle status` shows the whole node: both processes, alive.
    let network = net.dir.path().join("network.json").display().to_string();
    let (_, out) = crate::faults::cli(&["status", "--network", &network, "--node", "a"]);
    let alive: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("a@") && l.trim_end().ends_with("alive"))
        .collect();
    assert_eq!(alive.len(), 2, "{out}");

    let mut ids = submit_ten(&net).await;
    // One process dies; the other goes on serving the node's addresses and its work.
    first.kill9();
    ids.extend(submit_ten(&net).await);
    receive_exactly(&net, &ids).await;
    // The dead process's heartbeat goes stale; a restart takes its slot (and leases) back.
    wait_processes(&net, &["1"], &["0"]).await;
    let _again = net.start(0).await;
    wait_processes(&net, &["0", "1"], &[]).await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_of_one_process_under_load_loses_and_doubles_nothing() {
    let net = Net::init_on_postgres(2);
    let mut first = net.start(0).await;
    let _second = net.start(0).await;
    let _b = net.start(1).await;
    wait_processes(&net, &["0", "1"], &[]).await;
    // Four senders, each message on a client (connection) of its own, while one process of
    // a is stopped gracefully; the other goes on.
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let load: Vec<_> = (0..10).map(|_| (net.client(0), net.message(0, 1).1)).collect();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for (client, body) in load {
                    ids.push(client.submit_until_accepted(&body, Duration::from_secs(60)).await);
                }
                ids
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = first.terminate();
    assert!(stopped.success(), "a graceful stop: {stopped}");
    let mut ids = Vec::new();
    for s in senders {
        ids.extend(s.await.unwrap());
    }
    assert_eq!(ids.len(), 40);
    receive_exactly(&net, &ids).await;
}

/// Status events of node a, read off the real broker: (message id, status) → the event
/// numbers seen (a number twice would be a resend, which consumers drop by it).
#[derive(Clone, Default)]
struct Events(std::sync::Arc<std::sync::Mutex<Published>>);

/// (message id, status) → event numbers.
type Published = BTreeMap<(String, String), Vec<u64>>;

impl Events {
    /// Binds a queue of its own to the events exchange (shared with other networks' nodes,
    /// whose message ids differ) and collects node a's events in the background.
    async fn listen() -> Events {
        use lapin::options::*;
        let conn = lapin::Connection::connect(crate::harness::AMQP_URL, Default::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        // The exchange `network init --amqp` configures.
        ch.queue_bind(
            q.name().clone(),
            "poststelle.events".into(),
            "status.#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        let mut consumer = ch
            .basic_consume(
                q.name().clone(),
                "events".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        let events = Events::default();
        let into = events.clone();
        tokio::spawn(async move {
            let _keep = conn;
            use futures_lite::StreamExt;
            while let Some(Ok(d)) = consumer.next().await {
                let _ = d.ack(Default::default()).await;
                let e: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                if e["node"] != "a" {
                    continue;
                }
                let key = (
                    e["message_id"].as_str().unwrap().to_owned(),
                    e["status"].as_str().unwrap().to_owned(),
                );
                into.0
                    .lock()
                    .unwrap()
                    .entry(key)
                    .or_default()
                    .push(e["event"].as_u64().unwrap());
            }
        });
        events
    }

    /// The statuses published for `id`, each with its event numbers.
    fn of(&self, id: &str) -> BTreeMap<String, Vec<u64>> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|((m, _), _)| m == id)
            .map(|((_, s), n)| (s.clone(), n.clone()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_events_go_out_once_per_transition_from_several_processes() {
    let _broker = crate::amqp::BROKER.lock().await;
    let net = Net::init_amqp_on_postgres(2);
    let first = net.start(0).await;
    let mut second = net.start(0).await;
    let _b = net.start(1).await;
    wait_processes(&net, &["0", "1"], &[]).await;
    // (The nodes declare the exchange.)
    let events = Events::listen().await;
    let mut ids = submit_ten(&net).await;
    // One process dies, perhaps between committing transitions and publishing them: the
    // rows wait in the outbox and the other process publishes them once their lease is out.
    second.kill9();
    ids.extend(submit_ten(&net).await);
    let ca = net.client(0);
    // b's client takes its messages on its inbox queue (delivered on the broker's confirm).
    for id in &ids {
        ca.wait_status(id, "delivered", Duration::from_secs(90)).await;
    }
    // Every transition in each message's timeline is published, each exactly once.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        let (_, view) = ca.get_json(&format!("/v1/messages/{id}")).await;
        let timeline: std::collections::BTreeSet<String> = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap().to_owned())
            .collect();
        loop {
            let published = events.of(id);
            let statuses: std::collections::BTreeSet<String> = published.keys().cloned().collect();
            if statuses == timeline {
                for (status, numbers) in &published {
                    numbers
                        .iter()
                        .for_each(|n| assert_eq!(*n, numbers[0], "{id} {status}: {published:?}"));
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: timeline {timeline:?}, published {published:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(first);
    let _ = std::process::Command::new("python3")
        .arg(crate::harness::repo().join("tests/amqp/client.py"))
        .args(["cleanup", &net.dir.path().join("network.json").display().to_string()])
        .output();
}

/// Two processes of node b receive the same envelope at the same instant (each copy on a
/// connection of its own, which the kernel spreads over both): it is stored once, every answer
/// is the one receipt.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_envelope_at_two_processes_at_once_is_stored_once_with_one_receipt() {
    let net = Net::init_on_postgres(2);
    let _first = net.start(1).await;
    let _second = net.start(1).await;
    wait_processes_of(&net, 1, &["0", "1"], &[]).await;
    let envelope = crate::harness::sealed_envelope(&net, 0, "a", &net.node(0).authorities[0], 1);
    let url = gateway::config::Config::load(&net.node(0).config).unwrap().partners[0].transport_urls[0].clone();
    let d = node_dir(&net, 0);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let copies: Vec<_> = (0..16)
        .map(|_| {
            let client =
                crate::harness::https_client(&net.node(0).ca, Some((&d.join("node.pem"), &d.join("node.key"))));
            let (url, envelope, barrier) = (url.clone(), envelope.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let r = client
                    .post(&url)
                    .header("content-type", "application/xml")
                    .body(envelope)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in copies {
        answers.push(c.await.unwrap());
    }
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(
        answers.iter().all(|a| a.1 == answers[0].1),
        "one receipt for every copy"
    );
    // (The helper's envelope is refused when opened, as its content's UUID is not the
    // header's: what counts here is that it was stored once.)
    let (_, stored) = net.admin(1).get("/admin/api/messages?direction=inbound").await;
    assert_eq!(stored["messages"].as_array().unwrap().len(), 1, "stored once: {stored}");
}
