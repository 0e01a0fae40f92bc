//! `poststelle bench`: a load generator against a network written by `network init`.
//!
//! `--clients N` legacy systems at node `--from` submit `--messages M` unique demo messages
//! (each retried with its same UUID until the node answers 2xx, as a careful client does);
//! a consumer at node `--to` fetches and acknowledges its inbox. At the end it reports
//! throughput, latency percentiles (submit → fetched by the receiving client), errors, peak
//! resident memory of the nodes it runs, and the Jepsen-style counters:
//! - **lost**: accepted (2xx) but never delivered to the receiving client;
//! - **duplicated**: one sent message delivered to the client under two inbox ids, or again
//!   after its acknowledgement;
//! - **unexpected**: delivered but never sent;
//! - **not ended**: accepted but not in a terminal state at the sender when the run ends.
//!
//! With `--spawn` the bench runs the nodes itself (`poststelle serve --config`, logs beside
//! network.json), `--procs A,B` processes of each (a PostgreSQL store for more than one);
//! `--chaos` then kills a random node process with SIGKILL every few seconds and starts it
//! again, at least `--kills` times per node. Exit code 0 only if lost, duplicated,
//! unexpected and not-ended are all zero.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use crate::network::{NetworkFile, NetworkNode};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// network.json written by `poststelle network init`.
    #[arg(long)]
    network: PathBuf,
    /// Sending node (name).
    #[arg(long, default_value = "a")]
    from: String,
    /// Receiving node (name).
    #[arg(long, default_value = "b")]
    to: String,
    /// Messages to send.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Concurrent submitting clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Run the network's nodes as child processes of the bench.
    #[arg(long)]
    spawn: bool,
    /// With --spawn: processes per node, in the network's order (`--procs 3,2`: three of a,
    /// two of b; default one each). More than one needs a PostgreSQL store.
    #[arg(long, value_delimiter = ',')]
    procs: Vec<usize>,
    /// With --spawn: kill -9 and restart node processes at random during the run.
    #[arg(long)]
    chaos: bool,
    /// With --chaos: at least this many kills per node.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The poststelle binary for --spawn (default: this one).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// How the senders submit: the REST API, or XTA 2 (createMessageId, then sendMessage with
    /// the content as an MTOM part).
    #[arg(long, value_enum, default_value_t = Via::Rest)]
    via: Via,
    /// Open loop: submit at this fixed rate (messages per second) whatever the answers, and
    /// measure latency from each message's scheduled time (so a stalled submit counts); without
    /// it the clients submit as fast as they are answered (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// How often the receiving client polls its empty inbox (milliseconds).
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// The receiving client long-polls (`GET /v1/inbox?wait=1`) instead of polling.
    #[arg(long)]
    long_poll: bool,
    /// Messages of one inbox listing the receiving client fetches and acknowledges at the same
    /// time (1: one after the other).
    #[arg(long, default_value_t = 1)]
    fetchers: usize,
}

/// The sending clients' wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Rest,
    Xta,
}

/// One REST submission: the message id, or the HTTP status (0: no answer).
async fn submit_rest(https: &reqwest::Client, api: &str, token: &str, body: &str) -> Result<String, u16> {
    let r = https
        .post(format!("{api}/v1/messages"))
        .bearer_auth(token)
        .header("content-type", "application/xml")
        .body(body.to_owned())
        .send()
        .await
        .map_err(|_| 0u16)?;
    if !r.status().is_success() {
        return Err(r.status().as_u16());
    }
    let v: Value = r.json().await.unwrap_or(Value::Null);
    Ok(v["id"].as_str().unwrap_or_default().to_owned())
}

/// One XTA submission: createMessageId once per message (`id` keeps it, so a retry sends the
/// same id again, which is idempotent), then sendMessage with MTOM. The Poststelle id, or the
/// HTTP status (0: no answer).
async fn submit_xta(
    xta: &crate::xta_client::XtaClient,
    id: &mut Option<String>,
    body: &str,
    reader: &str,
    kind: &crate::xta_client::MessageKind,
) -> Result<String, u16> {
    let xta_id = match id {
        Some(i) => i.clone(),
        None => match xta.create_id().await {
            Ok(Ok(i)) => id.insert(i).clone(),
            Ok(Err((status, _))) => return Err(status),
            Err(_) => return Err(0),
        },
    };
    match xta.send(body.as_bytes().to_vec(), reader, kind, &xta_id).await {
        Ok(Ok(_)) => Ok(xta_id.trim_start_matches(crate::intake::xta::ID_PREFIX).to_owned()),
        Ok(Err((status, _))) => Err(status),
        Err(_) => Err(0),
    }
}

/// The demo message every bench message is made from (a → b in the demo network).
const TEMPLATE: &str = "fixtures/messages/xumzug/valid/rueckmeldung-erika-mustermann.xml";
const TEMPLATE_UUID: &str = "dfef3ee4-72a5-465b-9373-a31f18e85d70";
/// Its message type code (for XTA's `MessageMetaData`).
const TEMPLATE_CODE: &str = "0101";

#[derive(Debug, Default)]
struct Ledger {
    /// XÖV UUID → (gateway id, submit start) for every message answered 2xx.
    accepted: HashMap<String, (String, Instant)>,
    /// Every UUID the bench sent (accepted or not).
    sent: HashSet<String>,
    /// XÖV UUID → inbox ids it was delivered under.
    delivered: HashMap<String, HashSet<String>>,
    /// Inbox ids acknowledged successfully.
    acked: HashSet<String>,
    /// Latency (submit start → first fetch), ms.
    latencies: Vec<f64>,
    /// Fetches after the id's acknowledgement (a delivery to the application again).
    after_ack: u64,
    /// Fetches of the same id before any acknowledgement succeeded (ack lost in a crash).
    refetched: u64,
    /// Messages accepted and not yet fetched by the receiving client, now and at most.
    in_flight: usize,
    peak_in_flight: usize,
    /// The slowest messages: latency (ms), the sender's id, the receiver's inbox id — whose
    /// timelines (`/admin/api/messages/{id}` at each node) show where the time went.
    slowest: Vec<(f64, String, String)>,
}

impl Ledger {
    /// A submission answered 2xx.
    fn accept(&mut self, uuid: String, id: String, t0: Instant) {
        if self.accepted.insert(uuid, (id, t0)).is_none() {
            self.in_flight += 1;
            self.peak_in_flight = self.peak_in_flight.max(self.in_flight);
        }
    }

    /// A fetch of inbox item `id`, which carries `uuid`: a delivery (its latency, and one
    /// message less in flight), a fetch again before the acknowledgement, or one after it.
    fn fetched(&mut self, uuid: &str, id: &str) {
        let ids = self.delivered.entry(uuid.to_owned()).or_default();
        let first_for_id = ids.insert(id.to_owned());
        let first_for_uuid = ids.len() == 1;
        if self.acked.contains(id) {
            self.after_ack += 1;
        } else if !first_for_id {
            self.refetched += 1;
        } else if let Some((sent_as, t0)) = self.accepted.get(uuid) {
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let sent_as = sent_as.clone();
            self.latencies.push(ms);
            self.note_slow(ms, sent_as, id);
            if first_for_uuid {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
    }

    /// Keeps the five slowest deliveries.
    fn note_slow(&mut self, ms: f64, sent_as: String, delivered_as: &str) {
        if self.slowest.len() == 5 && self.slowest.last().is_some_and(|(m, ..)| *m >= ms) {
            return;
        }
        self.slowest.push((ms, sent_as, delivered_as.to_owned()));
        self.slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.slowest.truncate(5);
    }
}

#[derive(Debug, Default)]
struct Counters {
    submits: AtomicU64,
    retries: AtomicU64,
    overloaded: AtomicU64,
    refused: AtomicU64,
}

struct Nodes {
    bin: PathBuf,
    dir: PathBuf,
    /// Running processes by node name and number (`a#0`).
    procs: Mutex<HashMap<String, Child>>,
    peak_rss_kib: Mutex<HashMap<String, u64>>,
    kills: Mutex<HashMap<String, usize>>,
    /// Admin addresses of processes past the first of their node (`serve --admin`), so that
    /// readiness is asked of the process itself, not of a sibling sharing the node's address.
    admins: Mutex<HashMap<String, String>>,
    /// CPU seconds (user + system) of the node processes by node, summed over every process
    /// as it is killed or stopped.
    cpu_seconds: Mutex<HashMap<String, f64>>,
}

/// A node process's key in [`Nodes::procs`].
fn proc_key(node: &str, i: usize) -> String {
    format!("{node}#{i}")
}

impl Nodes {
    /// The admin address of process `i` of node `n` (the node's own for the first).
    fn admin(&self, n: &NetworkNode, i: usize) -> anyhow::Result<String> {
        if i == 0 {
            return Ok(n.admin.clone());
        }
        let mut admins = self.admins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = admins.get(&proc_key(&n.name, i)) {
            return Ok(a.clone());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let a = format!("http://127.0.0.1:{port}");
        eprintln!("bench: node {} process {i}: admin {a}", n.name);
        admins.insert(proc_key(&n.name, i), a.clone());
        Ok(a)
    }

    fn start(&self, n: &NetworkNode, i: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.bench.log", n.name)))?;
        let mut command = Command::new(&self.bin);
        command.args(["serve", "--config"]).arg(&n.config);
        if i > 0 {
            let admin = self.admin(n, i)?;
            command.arg("--admin").arg(admin.trim_start_matches("http://"));
        }
        let child = command.stdout(Stdio::null()).stderr(log).spawn()?;
        self.procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(proc_key(&n.name, i), child);
        Ok(())
    }

    fn kill9(&self, name: &str, i: usize) {
        let removed = self
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&proc_key(name, i));
        if let Some(mut c) = removed {
            self.count_cpu(name, c.id());
            let _ = c.kill();
            let _ = c.wait();
            *self
                .kills
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name.to_owned())
                .or_default() += 1;
        }
    }

    fn sample_rss(&self) {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let mut peak = self.peak_rss_kib.lock().unwrap_or_else(|e| e.into_inner());
        for (key, c) in procs.iter() {
            if let Some(kib) = rss_kib(c.id()) {
                let node = key.split('#').next().unwrap_or(key);
                let e = peak.entry(node.to_owned()).or_default();
                *e = (*e).max(kib);
            }
        }
    }

    /// Adds a process's CPU time so far to its node's.
    fn count_cpu(&self, node: &str, pid: u32) {
        if let Some(s) = cpu_seconds(pid) {
            *self
                .cpu_seconds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(node.to_owned())
                .or_default() += s;
        }
    }

    /// Counts CPU from now on: the processes' start-up is not the messages' cost.
    fn start_cpu_clock(&self) {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let mut cpu = self.cpu_seconds.lock().unwrap_or_else(|e| e.into_inner());
        for (key, c) in procs.iter() {
            let node = key.split('#').next().unwrap_or(key).to_owned();
            *cpu.entry(node).or_default() -= cpu_seconds(c.id()).unwrap_or(0.0);
        }
    }

    fn stop_all(&self) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        for (key, c) in procs.iter_mut() {
            self.count_cpu(key.split('#').next().unwrap_or(key), c.id());
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        for (_, c) in procs.iter_mut() {
            let _ = c.wait();
        }
        procs.clear();
    }
}

/// Waits until every accepted message reached the client, or the deadline.
async fn wait_delivered(ledger: &Mutex<Ledger>, deadline: Instant) {
    loop {
        let all = {
            let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            l.accepted.keys().all(|u| l.delivered.contains_key(u))
        };
        if all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets chaos finish its minimum of kills, then restarts what is down and lets it settle.
async fn end_chaos(
    c: tokio::task::JoinHandle<()>,
    nodes: &Nodes,
    all: &[(NetworkNode, usize)],
    plain: &reqwest::Client,
    deadline: Instant,
) -> anyhow::Result<()> {
    while !c.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.abort();
    for (n, i) in all {
        let down = !nodes
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&proc_key(&n.name, *i));
        if down {
            nodes.start(n, *i)?;
        }
        wait_ready(plain, &nodes.admin(n, *i)?, Duration::from_secs(60)).await;
    }
    Ok(())
}

/// The run's report (what `--json` prints) and the sorted latencies.
fn summarize(
    args: &BenchArgs,
    counters: &Counters,
    l: &Ledger,
    final_states: &HashMap<String, usize>,
    kills: &HashMap<String, usize>,
    rss: &HashMap<String, u64>,
    (sent_in, delivered_in): (Duration, Duration),
) -> (Value, Vec<f64>) {
    let lost = l.accepted.keys().filter(|u| !l.delivered.contains_key(*u)).count();
    let unexpected = l.delivered.keys().filter(|u| !l.sent.contains(*u)).count();
    let duplicated = l.delivered.values().filter(|ids| ids.len() > 1).count() as u64 + l.after_ack;
    let terminal = ["delivered", "rejected", "failed", "cancelled"];
    let not_ended: usize = final_states
        .iter()
        .filter(|(s, _)| !terminal.contains(&s.as_str()))
        .map(|(_, n)| n)
        .sum();
    let mut lat = l.latencies.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let accepted = l.accepted.len();
    let report = json!({
        "messages": args.messages,
        "clients": args.clients,
        "rate": args.rate,
        "accepted": accepted,
        "refused": counters.refused.load(Ordering::Relaxed),
        "submit_attempts": counters.submits.load(Ordering::Relaxed),
        "submit_retries": counters.retries.load(Ordering::Relaxed),
        "overloaded_503": counters.overloaded.load(Ordering::Relaxed),
        "submit_seconds": sent_in.as_secs_f64(),
        "intake_per_second": accepted as f64 / sent_in.as_secs_f64().max(1e-9),
        "delivered_seconds": delivered_in.as_secs_f64(),
        "end_to_end_per_second": l.delivered.len() as f64 / delivered_in.as_secs_f64().max(1e-9),
        "latency_ms": {
            "p50": percentile(&lat, 0.5), "p90": percentile(&lat, 0.9),
            "p99": percentile(&lat, 0.99), "max": lat.last().copied().unwrap_or(0.0),
        },
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "refetched_before_ack": l.refetched,
        "peak_in_flight": l.peak_in_flight,
        "slowest": l.slowest.iter().map(|(ms, a, b)| json!({"ms": ms, "sender_id": a, "receiver_id": b})).collect::<Vec<_>>(),
        "delivered": l.delivered.len(),
        "final_states": final_states,
        "not_ended": not_ended,
        "kills": kills,
        "peak_rss_mib": rss.iter().map(|(k, v)| (k.clone(), json!(*v as f64 / 1024.0))).collect::<serde_json::Map<_, _>>(),
    });
    (report, lat)
}

/// Chaos: kill -9 a random node process, restart it, pause; until every node was killed
/// `min_kills` times and the run is over.
fn chaos(
    nodes: Arc<Nodes>,
    finished: Arc<AtomicBool>,
    all: Vec<(NetworkNode, usize)>,
    plain: reqwest::Client,
    min_kills: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let enough = {
                let k = nodes.kills.lock().unwrap_or_else(|e| e.into_inner());
                all.iter()
                    .all(|(n, _)| k.get(&n.name).copied().unwrap_or(0) >= min_kills)
            };
            if finished.load(Ordering::Relaxed) || (enough && random_below(4) == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500 + random_below(2500))).await;
            let (victim, i) = &all[random_below(all.len() as u64) as usize];
            nodes.kill9(&victim.name, *i);
            tokio::time::sleep(Duration::from_millis(random_below(1000))).await;
            let ready = match (nodes.start(victim, *i), nodes.admin(victim, *i)) {
                (Ok(()), Ok(admin)) => wait_ready(&plain, &admin, Duration::from_secs(60)).await,
                _ => false,
            };
            if !ready {
                eprintln!("bench: node {} process {i} did not come back", victim.name);
            }
        }
    })
}

/// The receiving legacy system: fetch, then acknowledge, everything in its inbox (`fetchers`
/// items of a listing at a time).
fn consumer(
    ledger: Arc<Mutex<Ledger>>,
    finished: Arc<AtomicBool>,
    https: reqwest::Client,
    to: NetworkNode,
    poll: Option<u64>,
    fetchers: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let token = to.clients[0].token.clone();
        // A long poll answers at the latest after a second, so that the end is noticed.
        let inbox = match poll {
            Some(_) => format!("{}/v1/inbox", to.api),
            None => format!("{}/v1/inbox?wait=1", to.api),
        };
        while !finished.load(Ordering::Relaxed) {
            let list = match https.get(&inbox).bearer_auth(&token).send().await {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.unwrap_or(Value::Null),
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let items = list["messages"].as_array().cloned().unwrap_or_default();
            if let (true, Some(ms)) = (items.is_empty(), poll) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            // Each item of the listing handed to one fetcher; the next listing once all are done.
            let mut handling = tokio::task::JoinSet::new();
            for m in items {
                let (Some(id), Some(uuid)) = (m["id"].as_str(), m["xoev_uuid"].as_str()) else {
                    continue;
                };
                if handling.len() >= fetchers.max(1) {
                    handling.join_next().await;
                }
                let (https, ledger, token) = (https.clone(), ledger.clone(), token.clone());
                let (api, id, uuid) = (to.api.clone(), id.to_owned(), uuid.to_owned());
                handling.spawn(async move { fetch_and_ack(&https, &api, &token, &id, &uuid, &ledger).await });
            }
            handling.join_all().await;
        }
    })
}

/// The receiving client's fetch of inbox item `id` (carrying `uuid`) and its acknowledgement,
/// each recorded in the ledger.
async fn fetch_and_ack(https: &reqwest::Client, api: &str, token: &str, id: &str, uuid: &str, ledger: &Mutex<Ledger>) {
    let ledger = || ledger.lock().unwrap_or_else(|e| e.into_inner());
    let (item, ack) = (format!("{api}/v1/inbox/{id}"), format!("{api}/v1/inbox/{id}/ack"));
    let got = https.get(item).bearer_auth(token).send().await;
    if !got.is_ok_and(|r| r.status().is_success()) {
        return;
    }
    ledger().fetched(uuid, id);
    let acked = https.post(ack).bearer_auth(token).send().await;
    if acked.is_ok_and(|r| r.status().is_success()) {
        ledger().acked.insert(id.to_owned());
    }
}

/// One sending legacy system's share of the load: messages are taken from a shared counter.
#[derive(Clone)]
struct Load {
    next: Arc<AtomicUsize>,
    ledger: Arc<Mutex<Ledger>>,
    counters: Arc<Counters>,
    https: reqwest::Client,
    from: NetworkNode,
    reader: String,
    template: String,
    total: usize,
    rate: Option<f64>,
    via: Via,
    started: Instant,
}

impl Load {
    /// Sends messages until the counter reaches `total`, retrying each until it is answered.
    async fn send(self) {
        let Load {
            next,
            ledger,
            counters,
            https,
            from,
            reader,
            template,
            total,
            rate,
            via,
            started,
        } = self;
        let xta = (via == Via::Xta).then(|| crate::xta_client::XtaClient {
            http: https.clone(),
            api: from.api.clone(),
            token: from.clients[0].token.clone(),
            author: from.authorities[0].clone(),
        });
        let token = from.clients[0].token.clone();
        let kind = crate::xta_client::MessageKind::xumzug(TEMPLATE_CODE);
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= total {
                break;
            }
            // Open loop: message i is due at i / rate seconds after the start.
            let due = rate.map(|r| started + Duration::from_secs_f64(i as f64 / r));
            if let Some(due) = due {
                tokio::time::sleep_until(due.into()).await;
            }
            let uuid = uuid::Uuid::new_v4().to_string();
            let body = template.replace(TEMPLATE_UUID, &uuid);
            ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sent
                .insert(uuid.clone());
            let t0 = due.unwrap_or_else(Instant::now);
            let mut xta_id: Option<String> = None;
            loop {
                counters.submits.fetch_add(1, Ordering::Relaxed);
                let outcome = match &xta {
                    Some(xta) => submit_xta(xta, &mut xta_id, &body, &reader, &kind).await,
                    None => submit_rest(&https, &from.api, &token, &body).await,
                };
                match outcome {
                    Ok(id) => {
                        ledger
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .accept(uuid.clone(), id, t0);
                        break;
                    }
                    Err(503) => {
                        counters.overloaded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) if (400..500).contains(&status) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(_) => {}
                }
                counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 + random_below(200))).await;
            }
        }
    }
}

/// The state each message ended in at the sender, waiting up to a minute past the deadline
/// for each to end.
async fn final_states(
    https: &reqwest::Client,
    from: &NetworkNode,
    ids: &[String],
    deadline: Instant,
) -> HashMap<String, usize> {
    let mut final_states: HashMap<String, usize> = HashMap::new();
    let token = from.clients[0].token.clone();
    for id in ids {
        let mut state = String::from("unknown");
        while Instant::now() < deadline + Duration::from_secs(60) {
            if let Ok(r) = https
                .get(format!("{}/v1/messages/{id}", from.api))
                .bearer_auth(&token)
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                state = v["status"].as_str().unwrap_or("unknown").to_owned();
                if matches!(state.as_str(), "delivered" | "rejected" | "failed" | "cancelled") {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *final_states.entry(state).or_default() += 1;
    }
    final_states
}

/// The report for a person.
fn print_report(
    args: &BenchArgs,
    report: &Value,
    final_states: &HashMap<String, usize>,
    kills: &HashMap<String, usize>,
    rss: &HashMap<String, u64>,
    lat: &[f64],
) {
    let accepted = &report["accepted"];
    let delivered = report["delivered"].as_u64().unwrap_or(0);
    let (sent_in, delivered_in) = (
        report["submit_seconds"].as_f64().unwrap_or(0.0),
        report["delivered_seconds"].as_f64().unwrap_or(0.0),
    );
    let refetched = &report["refetched_before_ack"];
    let (lost, duplicated, unexpected, not_ended) = (
        &report["lost"],
        &report["duplicated"],
        &report["unexpected"],
        &report["not_ended"],
    );
    println!(
        "bench: {accepted}/{} accepted by {} from {} clients in {:.1} s ({:.0}/s intake); {} delivered to {} in {:.1} s ({:.0}/s end to end)",
        args.messages,
        args.from,
        args.clients,
        sent_in,
        report["intake_per_second"].as_f64().unwrap_or(0.0),
        delivered,
        args.to,
        delivered_in,
        report["end_to_end_per_second"].as_f64().unwrap_or(0.0),
    );
    println!(
        "latency submit → client: p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        percentile(lat, 0.5),
        percentile(lat, 0.9),
        percentile(lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    println!(
        "submit retries {}  503 overloaded {}  refused {}  refetched before ack {}  peak in flight {}",
        report["submit_retries"], report["overloaded_503"], report["refused"], refetched, report["peak_in_flight"]
    );
    println!("final states at {}: {:?}", args.from, final_states);
    if !kills.is_empty() {
        println!("kill -9: {kills:?}");
    }
    if !rss.is_empty() {
        let mut r: Vec<_> = rss.iter().collect();
        r.sort();
        let r: Vec<String> = r
            .iter()
            .map(|(k, v)| format!("{k} {:.0} MiB", **v as f64 / 1024.0))
            .collect();
        println!("peak RSS: {}", r.join(", "));
    }
    println!("lost {lost}  duplicated {duplicated}  unexpected {unexpected}  not ended {not_ended}");
}

/// CPU time (user + system) of a process so far (Linux `/proc`), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the first, utime and
    // stime the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // In USER_HZ, which Linux fixes at 100 for user space (`getconf CLK_TCK`).
    Some(ticks as f64 / 100.0)
}

/// Resident set size of a process (Linux `/proc`), in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = openssl::rand::rand_bytes(&mut b);
    u64::from_le_bytes(b) % n.max(1)
}

fn find<'a>(net: &'a NetworkFile, name: &str) -> anyhow::Result<&'a NetworkNode> {
    net.nodes
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| anyhow::anyhow!("the network has no node {name}"))
}

async fn wait_ready(http: &reqwest::Client, admin: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{admin}/readyz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// With `--spawn`, starts the network's node processes (`--procs` per node); waits until every
/// node answers. Returns the processes' owner and the list of (node, number) it runs.
async fn start_nodes(
    args: &BenchArgs,
    net: &NetworkFile,
    plain: &reqwest::Client,
) -> anyhow::Result<(Arc<Nodes>, Vec<(NetworkNode, usize)>)> {
    let nodes = Arc::new(Nodes {
        bin: match &args.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe()?,
        },
        dir: args.network.parent().unwrap_or(Path::new(".")).to_path_buf(),
        procs: Mutex::new(HashMap::new()),
        peak_rss_kib: Mutex::new(HashMap::new()),
        kills: Mutex::new(HashMap::new()),
        admins: Mutex::new(HashMap::new()),
        cpu_seconds: Mutex::new(HashMap::new()),
    });
    // Every node process the bench runs: (node, number).
    let processes: Vec<(NetworkNode, usize)> = net
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(k, n)| (0..args.procs.get(k).copied().unwrap_or(1).max(1)).map(move |i| (n.clone(), i)))
        .collect();
    if args.spawn {
        for (n, i) in &processes {
            nodes.start(n, *i)?;
        }
    }
    for (n, i) in processes.iter().filter(|(_, i)| args.spawn || *i == 0) {
        let admin = nodes.admin(n, *i)?;
        anyhow::ensure!(
            wait_ready(plain, &admin, Duration::from_secs(60)).await,
            "node {} process {i} is not ready at {admin}",
            n.name,
        );
    }
    nodes.start_cpu_clock();
    Ok((nodes, processes))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.chaos || args.spawn,
        "--chaos needs --spawn (the bench must own the nodes it kills)"
    );
    let net: NetworkFile = serde_json::from_slice(&std::fs::read(&args.network)?)?;
    let from = find(&net, &args.from)?.clone();
    let to = find(&net, &args.to)?.clone();
    let template = crate::embedded::fixtures(TEMPLATE)
        .first()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| anyhow::anyhow!("the demo template is missing"))?;
    let template = template
        .replace(&crate::network::authority_of(0), &from.authorities[0])
        .replace(&crate::network::authority_of(1), &to.authorities[0]);
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let https = crate::tls::trusting(&from.ca)?
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.clients)
        .build()?;

    let (nodes, processes) = start_nodes(&args, &net, &plain).await?;

    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0, "--rate must be positive");
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let counters = Arc::new(Counters::default());
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();

    // Resident memory of the spawned nodes, sampled every 200 ms.
    let sampler = {
        let (nodes, finished) = (nodes.clone(), finished.clone());
        tokio::spawn(async move {
            while !finished.load(Ordering::Relaxed) {
                nodes.sample_rss();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // Chaos: kill -9 a random node process, restart it, pause; until every node was killed
    // often enough and the run is over.
    let chaos = args.chaos.then(|| {
        chaos(
            nodes.clone(),
            finished.clone(),
            processes.clone(),
            plain.clone(),
            args.kills,
        )
    });

    // The receiving legacy system: fetch, then acknowledge, everything in its inbox.
    let consumer = consumer(
        ledger.clone(),
        finished.clone(),
        https.clone(),
        to.clone(),
        (!args.long_poll).then_some(args.poll_ms),
        args.fetchers,
    );

    // The sending legacy systems.
    let load = Load {
        next: Arc::new(AtomicUsize::new(0)),
        ledger: ledger.clone(),
        counters: counters.clone(),
        https: https.clone(),
        from: from.clone(),
        reader: to.authorities[0].clone(),
        template: template.clone(),
        total: args.messages,
        rate: args.rate,
        via: args.via,
        started,
    };
    let senders: Vec<_> = (0..args.clients).map(|_| tokio::spawn(load.clone().send())).collect();
    for s in senders {
        let _ = s.await;
    }
    let sent_in = started.elapsed();

    // Wait until every accepted message reached the client, or the timeout.
    let deadline = started + Duration::from_secs(args.timeout);
    wait_delivered(&ledger, deadline).await;
    let delivered_in = started.elapsed();
    if let Some(c) = chaos {
        end_chaos(c, &nodes, &processes, &plain, deadline).await?;
    }

    // Every accepted message must end in a terminal state at the sender (delivery notices
    // travel back after the client's acknowledgement).
    let ids: Vec<String> = {
        let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.accepted.values().map(|(id, _)| id.clone()).collect()
    };
    let final_states = final_states(&https, &from, &ids, deadline).await;
    finished.store(true, Ordering::Relaxed);
    let _ = consumer.await;
    let _ = sampler.await;
    if args.spawn {
        nodes.stop_all();
    }

    let kills = nodes.kills.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let rss = nodes.peak_rss_kib.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
    let times = (sent_in, delivered_in);
    let (mut report, lat) = summarize(&args, &counters, &l, &final_states, &kills, &rss, times);
    // The nodes' CPU per delivered message: what decides how far more cores carry.
    let cpu = nodes.cpu_seconds.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let per_message = |s: f64| 1000.0 * s / (l.delivered.len().max(1) as f64);
    report["node_cpu_ms_per_message"] =
        Value::Object(cpu.iter().map(|(k, s)| (k.clone(), json!(per_message(*s)))).collect());
    if !cpu.is_empty() && !args.json {
        let mut c: Vec<_> = cpu
            .iter()
            .map(|(k, s)| format!("{k} {:.2} ms", per_message(*s)))
            .collect();
        c.sort();
        println!("node CPU per message (all its processes): {}", c.join(", "));
    }
    if args.json {
        println!("{report:#}");
    } else {
        print_report(&args, &report, &final_states, &kills, &rss, &lat);
    }
    let zero = |k: &str| report[k].as_u64() == Some(0);
    let all_accepted = report["accepted"].as_u64() == Some(args.messages as u64);
    Ok(
        if zero("lost") && zero("duplicated") && zero("unexpected") && zero("not_ended") && all_accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_counts_messages_in_flight_and_keeps_the_slowest() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        for u in ["u1", "u2", "u3"] {
            l.accept(u.into(), format!("a-{u}"), t0);
        }
        l.fetched("u1", "b-1");
        l.fetched("u1", "b-1"); // fetched again before its acknowledgement: still one delivery
        l.accept("u4".into(), "a-u4".into(), t0);
        assert_eq!((l.in_flight, l.peak_in_flight, l.refetched), (3, 3, 1));
        for (u, id) in [("u2", "b-2"), ("u3", "b-3"), ("u4", "b-4")] {
            l.fetched(u, id);
        }
        assert_eq!((l.in_flight, l.peak_in_flight), (0, 3));
        assert_eq!(l.slowest.len(), 4);
        assert!(l.slowest.windows(2).all(|w| w[0].0 >= w[1].0), "slowest first");
        assert_eq!(l.slowest[0].1, "a-u4", "the last fetched waited longest");
    }
}
