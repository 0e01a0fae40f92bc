//! Several processes of one node (issue 24, first step): with a PostgreSQL store, `serve` of
//! the same configuration runs again beside a running process, shares its addresses
//! (SO_REUSEPORT), takes the next slot of the data folder and its own lease holder name; the
//! admin status lists the node's processes and which are alive; a process killed with SIGKILL
//! loses nothing, and its restart takes its slot back; one stopped with SIGTERM under load
//! loses and doubles nothing either.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{Net, node_dir};

/// The node's processes from its admin status: id → alive.
async fn processes(net: &Net) -> BTreeMap<String, bool> {
    let (status, v) = net.admin(0).get("/admin/api/status").await;
    assert_eq!(status, 200, "{v}");
    v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_owned(), p["alive"].as_bool().unwrap()))
        .collect()
}

/// Waits until the status lists exactly these processes as alive and those as gone.
async fn wait_processes(net: &Net, alive: &[&str], gone: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let folder = std::fs::read_to_string(node_dir(net, 0).join("data/poststelle.id")).unwrap();
    let want: BTreeMap<String, bool> = alive
        .iter()
        .map(|s| (*s, true))
        .chain(gone.iter().map(|s| (*s, false)))
        .map(|(slot, a)| (format!("a@{}:{}#{slot}", host.trim(), folder.trim()), a))
        .collect();
    loop {
        let seen = processes(net).await;
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
