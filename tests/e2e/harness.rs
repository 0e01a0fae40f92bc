//! Test harness: real local networks (`network init`), real node processes (`serve`), and a
//! legacy-system client over real HTTPS. Nothing is mocked; every address is on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::network::{NetworkFile, NetworkNode};
use serde_json::Value;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_poststelle-node"))
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn shared() -> PathBuf {
    repo().join("../shared")
}

pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(repo().join("fixtures/messages").join(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// The first of `n` consecutive free-to-use ports, never handed out twice while this process
/// runs, nor to another test process running at the same time (say, under cargo-nextest):
/// the range `network::port_ranges().1` is cut into blocks, and a process owns a block while it
/// holds a lock on the block's file (released by the kernel when the process exits).
pub fn next_ports(n: usize) -> u16 {
    use std::sync::Mutex;
    const BLOCK: usize = 64;
    struct Owned {
        /// Lock files of the blocks this process owns, held open until it exits.
        locks: Vec<std::fs::File>,
        next: usize,
        end: usize,
    }
    static OWNED: Mutex<Owned> = Mutex::new(Owned {
        locks: Vec::new(),
        next: 0,
        end: 0,
    });
    assert!(n <= BLOCK, "at most {BLOCK} ports per network");
    let range = gateway::network::port_ranges().1;
    let blocks = range.len() / BLOCK;
    let mut owned = OWNED.lock().unwrap_or_else(|e| e.into_inner());
    if owned.next + n > owned.end {
        let dir = std::env::temp_dir().join("poststelle-test-ports");
        std::fs::create_dir_all(&dir).unwrap();
        let first = std::process::id() as usize + owned.locks.len();
        let claimed = (0..blocks).map(|i| (first + i) % blocks).find_map(|k| {
            let file = std::fs::File::create(dir.join(format!("block-{k}.lock"))).ok()?;
            file.try_lock().ok()?;
            Some((k, file))
        });
        let (k, file) = claimed.expect("every block of test ports is owned by a running test process");
        owned.locks.push(file);
        owned.next = range.start as usize + k * BLOCK;
        owned.end = owned.next + BLOCK;
    }
    let first = owned.next;
    owned.next += n;
    first as u16
}

/// A local network written by `poststelle network init`.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub file: NetworkFile,
    /// With a PostgreSQL store: the schemas of its nodes, dropped with the network.
    _pg: Option<PgSchemas>,
}

/// The database every test network's store lives in when the suite runs on PostgreSQL
/// (`POSTSTELLE_TEST_STORE_URL`, as `scripts/test`'s second pass sets it); unset: SQLite.
pub fn test_store_url() -> Option<String> {
    std::env::var("POSTSTELLE_TEST_STORE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The local PostgreSQL (`scripts/test` makes sure it runs), for tests that need it always.
pub fn local_pg_url() -> String {
    test_store_url().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// Schemas of one network on PostgreSQL, dropped when it goes (also when a test fails).
struct PgSchemas {
    url: String,
    schemas: Vec<String>,
}

impl Drop for PgSchemas {
    fn drop(&mut self) {
        let _ = gateway::store::pg::drop_schemas(&self.url, &self.schemas);
    }
}

/// The local RabbitMQ every AMQP test uses (`.ci/run` makes sure it is running).
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Net {
    pub fn init(nodes: usize) -> Net {
        Self::init_with(nodes, &[], test_store_url())
    }

    /// A network whose clients submit and receive through queues on the local broker.
    pub fn init_amqp(nodes: usize) -> Net {
        Self::init_with(nodes, &["--amqp", AMQP_URL], test_store_url())
    }

    /// A network whose nodes keep their stores in PostgreSQL, whatever the suite runs on.
    pub fn init_on_postgres(nodes: usize) -> Net {
        Self::init_with(nodes, &[], Some(local_pg_url()))
    }

    /// A network whose keys are EC P-256 (`network init --key-type ec`).
    pub fn init_ec(nodes: usize) -> Net {
        Self::init_with(nodes, &["--key-type", "ec"], test_store_url())
    }

    /// A network whose clients have drop folders (`network init --file-drop`).
    pub fn init_drop(nodes: usize) -> Net {
        Self::init_with(nodes, &["--file-drop"], test_store_url())
    }

    /// A network on the local broker whose nodes keep their stores in PostgreSQL.
    pub fn init_amqp_on_postgres(nodes: usize) -> Net {
        Self::init_with(nodes, &["--amqp", AMQP_URL], Some(local_pg_url()))
    }

    /// A network whose nodes keep their stores in the PostgreSQL at `url`.
    pub fn init_on(nodes: usize, url: &str) -> Net {
        Self::init_with(nodes, &[], Some(url.to_owned()))
    }

    fn init_with(nodes: usize, extra: &[&str], store_url: Option<String>) -> Net {
        let dir = tempfile::tempdir().unwrap();
        // Ports come from this process's own block outside the ephemeral range, each handed
        // out once per test run, so no test's node finds its port taken by another test's
        // outbound connection or by another test's network (`network::port_ranges`).
        let mut base = next_ports(3 * nodes);
        if extra.is_empty() {
            // Key generation is most of `network init` (six RSA-3072 keys, 3.7 s of CPU for
            // two nodes): the networks of one test process are copies of one template per
            // shape, each at its own folder and ports. AMQP networks carry a network id in
            // their queue names and are made afresh.
            let (template, template_base) = template(nodes, store_url.as_deref());
            // A port of the block may be taken by a service outside the tests (PostgreSQL's
            // 5432, RabbitMQ's 5672 lie in the range): then the next block, as `network init`
            // would refuse it.
            let free = |base: u16| {
                (base..base + 3 * nodes as u16).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            };
            while !free(base) {
                base = next_ports(3 * nodes);
            }
            copy_network(&template, dir.path(), template_base, base, 3 * nodes);
        } else {
            let mut tries = 0;
            while let Err(e) = network_init(dir.path(), nodes, base, extra, store_url.as_deref()) {
                // A port of the block is taken by something outside the tests: the next block.
                tries += 1;
                assert!(e.contains("is not free") && tries < 20, "{e}");
                base = next_ports(3 * nodes);
            }
        }
        let file: NetworkFile =
            serde_json::from_slice(&std::fs::read(dir.path().join("network.json")).unwrap()).unwrap();
        // Networks share the database: each node's schema gets this network's own name.
        let pg = store_url.map(|url| {
            let run = uuid().replace('-', "");
            let mut schemas = Vec::new();
            for n in &file.nodes {
                let schema = format!("t{run}_{}", n.name);
                let text = std::fs::read_to_string(&n.config).unwrap();
                // Tests run side by side on one database server: a few connections each.
                let text = text
                    .replace(
                        &format!("schema = \"poststelle_{}\"", n.name),
                        &format!("schema = \"{schema}\""),
                    )
                    .replace("pool_size = 16", "pool_size = 4");
                std::fs::write(&n.config, text).unwrap();
                schemas.push(schema);
            }
            PgSchemas { url, schemas }
        });
        Net { dir, file, _pg: pg }
    }

    pub fn node(&self, i: usize) -> &NetworkNode {
        &self.file.nodes[i]
    }

    /// Rewrites node `i`'s config file.
    pub fn edit_config(&self, i: usize, f: impl FnOnce(String) -> String) {
        let path = &self.node(i).config;
        let text = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, f(text)).unwrap();
    }

    pub async fn start(&self, i: usize) -> NodeProc {
        NodeProc::start(self.node(i).clone(), self.dir.path()).await
    }

    /// Makes node `i` load these adapter directories, with `{xoev}` = `../shared/xoev`.
    pub fn use_adapters(&self, i: usize, dirs: &[PathBuf]) {
        let section = format!(
            "[adapters]\nxoev_root = {:?}\ndirs = {:?}\n",
            shared().join("xoev").display().to_string(),
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>()
        );
        self.edit_config(i, |t| {
            assert!(
                t.contains("[adapters]\ndirs = []\n"),
                "no empty [adapters] section in:\n{t}"
            );
            t.replace("[adapters]\ndirs = []\n", &section)
        });
    }

    pub fn client(&self, i: usize) -> Client {
        let n = self.node(i);
        Client {
            http: https_client(&n.ca, None),
            api: n.api.clone(),
            token: n.clients[0].token.clone(),
        }
    }
}

/// A node running as its own process (`poststelle serve --config`).
pub struct NodeProc {
    pub info: NetworkNode,
    child: Option<Child>,
    log: PathBuf,
}

impl NodeProc {
    pub async fn start(info: NetworkNode, log_dir: &Path) -> NodeProc {
        Self::start_env(info, log_dir, &[]).await
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/readyz", self.info.admin);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        while Instant::now() < deadline {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {} not ready; log:\n{}", self.info.name, self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The value of the first sample of metric `name` whose labels contain `labels`, from the
    /// node's `/metrics`.
    pub async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.info.admin))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// SIGHUP: the node reloads its configuration file.
    pub fn hangup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().unwrap()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `poststelle token new`: (token, token_sha256).
pub fn new_token() -> (String, String) {
    let out = Command::new(bin()).args(["token", "new"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{key} in {text}"))
            .to_owned()
    };
    (value("token"), value("token_sha256"))
}

/// An HTTPS client trusting the network's CA, optionally presenting a client identity.
pub fn https_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let mut b = gateway::tls::trusting(ca).unwrap().timeout(Duration::from_secs(20));
    if let Some((cert, key)) = identity {
        let id =
            reqwest::Identity::from_pkcs8_pem(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap()).unwrap();
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// A legacy system talking to one node's client API.
pub struct Client {
    pub http: reqwest::Client,
    pub api: String,
    pub token: String,
}

impl Client {
    /// POSTs a message as this client; returns the HTTP status and the JSON body.
    pub async fn submit(&self, body: &[u8]) -> (u16, Value) {
        self.submit_with(Some(&self.token), "application/xml", body).await
    }

    /// POSTs a message with any (or no) token and any content type.
    pub async fn submit_with(&self, token: Option<&str>, content_type: &str, body: &[u8]) -> (u16, Value) {
        let r = self.post_message(token, content_type, body).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs a message and hands back the whole response (headers included), or the
    /// connection error.
    pub async fn post_message(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = self
            .http
            .post(format!("{}/v1/messages", self.api))
            .header("content-type", content_type)
            .body(body.to_vec());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    pub async fn ack(&self, id: &str) -> u16 {
        self.http
            .post(format!("{}/v1/inbox/{id}/ack", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits until the message reaches `status`; panics with the last view after `timeout`.
    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let (_, v) = self.get_json(&format!("/v1/messages/{id}")).await;
            if v["status"] == status {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("message {id} did not reach {status}; last: {last:#}");
    }

    /// Waits until the inbox holds at least `n` messages and returns their ids.
    pub async fn wait_inbox(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, v) = self.get_json("/v1/inbox").await;
            let ids: Vec<String> = v["messages"]
                .as_array()
                .map(|a| a.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            if ids.len() >= n {
                return ids;
            }
            assert!(Instant::now() < deadline, "inbox has {} of {n} messages", ids.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Node a's side of the transport, by hand: a client with a's node certificate, and the
/// transport address of a's first partner.
pub fn as_node_a(net: &Net) -> (reqwest::Client, String) {
    let d = node_dir(net, 0);
    let client = https_client(&net.node(0).ca, Some((&d.join("node.pem"), &d.join("node.key"))));
    let url = gateway::config::Config::load(&net.node(0).config).unwrap().partners[0].transport_urls[0].clone();
    (client, url)
}

/// The folder of node `i`'s config and keys.
pub fn node_dir(net: &Net, i: usize) -> PathBuf {
    net.node(i).config.parent().unwrap().to_path_buf()
}

/// Node `i`'s transport listener address (`host:port`), from its config.
pub fn transport_addr(net: &Net, i: usize) -> String {
    let text = std::fs::read_to_string(&net.node(i).config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("transport = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_owned()
}

/// Node `i`'s authority certificate (`pem`) or key (`key`).
pub fn authority_file(net: &Net, i: usize, ext: &str) -> PathBuf {
    let a = &net.node(i).authorities[0];
    node_dir(net, i).join(format!("authorities/{}.{ext}", gateway::pki::authority_file_name(a)))
}

pub fn node_identity(net: &Net, i: usize) -> gateway::xmlsec::Identity {
    let d = node_dir(net, i);
    gateway::xmlsec::Identity::load(&d.join("node.key"), &d.join("node.pem")).unwrap()
}

pub fn authority_identity(net: &Net, i: usize) -> gateway::xmlsec::Identity {
    gateway::xmlsec::Identity::load(&authority_file(net, i, "key"), &authority_file(net, i, "pem")).unwrap()
}

pub fn uuid() -> String {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).unwrap();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A sealed envelope made with node `signer`'s keys (its node key and its authority's key),
/// claiming to come from node `sender_node` / authority `sender`, for node `to`'s authority.
pub fn sealed_envelope(net: &Net, signer: usize, sender_node: &str, sender: &str, to: usize) -> Vec<u8> {
    sealed_envelope_with_id(net, signer, sender_node, sender, to, &uuid())
}

/// [`sealed_envelope`] under the message id `id` (each call another XÖV UUID, so another digest).
pub fn sealed_envelope_with_id(
    net: &Net,
    signer: usize,
    sender_node: &str,
    sender: &str,
    to: usize,
    id: &str,
) -> Vec<u8> {
    let recipient = gateway::xmlsec::trust::load_cert(&authority_file(net, to, "pem")).unwrap();
    gateway::envelope::seal::seal(
        &gateway::envelope::EnvelopeHeader {
            message_id: id.into(),
            xoev_uuid: uuid(),
            sender_node: sender_node.into(),
            sender: sender.into(),
            recipient: net.node(to).authorities[0].clone(),
            message_type: "xumzug/1.0 umzug.Rueckmeldung.0101".into(),
            created: "2026-11-22T10:00:00Z".into(),
        },
        &fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml"),
        &[],
        &authority_identity(net, signer),
        &recipient,
        &node_identity(net, signer),
        &gateway::xml::prescan::Limits::default(),
    )
    .unwrap()
}

impl Net {
    /// Starts node `i` with extra environment (e.g. `FAILPOINTS`).
    pub async fn start_env(&self, i: usize, env: &[(&str, &str)]) -> NodeProc {
        NodeProc::start_env(self.node(i).clone(), self.dir.path(), env).await
    }

    /// A fresh demo message from node `from`'s authority to node `to`'s: (XÖV UUID, bytes).
    pub fn message(&self, from: usize, to: usize) -> (String, Vec<u8>) {
        let template = String::from_utf8(fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml")).unwrap();
        let id = uuid();
        let text = template
            .replace("dfef3ee4-72a5-465b-9373-a31f18e85d70", &id)
            // Through a placeholder, so that a message from node 1 to node 0 swaps the two.
            .replace(&gateway::network::authority_of(0), "\u{0}author\u{0}")
            .replace(&gateway::network::authority_of(1), &self.node(to).authorities[0])
            .replace("\u{0}author\u{0}", &self.node(from).authorities[0]);
        (id, text.into_bytes())
    }

    /// SIGHUP to node `i`'s process; waits until the reloaded configuration took over (a
    /// refused reload fails the test with its problems once it was answered).
    pub async fn reload(&self, i: usize, node: &NodeProc) {
        let admin = self.admin(i);
        let (_, before) = admin.get("/admin/api/status").await;
        let (loaded, refused_at) = (
            before["configuration"]["loaded"].clone(),
            before["configuration"]["reload_refused"]["at"].clone(),
        );
        node.hangup();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = admin.get("/admin/api/status").await;
            let refused = &v["configuration"]["reload_refused"];
            assert!(refused.is_null() || refused["at"] == refused_at, "reload refused: {v}");
            if v["configuration"]["loaded"] != loaded {
                return;
            }
            assert!(Instant::now() < deadline, "no reload took effect: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `i`'s admin API with its token.
    pub fn admin(&self, i: usize) -> Admin {
        let n = self.node(i);
        Admin {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base: n.admin.clone(),
            token: n.admin_token.clone(),
        }
    }
}

impl NodeProc {
    pub async fn start_env(info: NetworkNode, log_dir: &Path, env: &[(&str, &str)]) -> NodeProc {
        let node = Self::spawn_env(info, log_dir, env);
        node.wait_ready().await;
        node
    }

    /// Starts the process without waiting for it to be ready (it may die at once).
    pub fn spawn_env(info: NetworkNode, log_dir: &Path, env: &[(&str, &str)]) -> NodeProc {
        let log = log_dir.join(format!("{}.log", info.name));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--config"])
            .arg(&info.config)
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        NodeProc {
            info,
            child: Some(cmd.spawn().unwrap()),
            log,
        }
    }

    /// Waits until the process ended by itself (e.g. a fail point aborted it).
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().unwrap().is_some()
            {
                self.child = None;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// A node's admin API.
pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Admin {
    /// `POST path` with an optional JSON body.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The newest audit entries (`GET /admin/api/audit?limit=100`; an auditor's token), parsed.
    pub async fn audit_entries(&self) -> Vec<Value> {
        let (_, audit) = self.get("/admin/api/audit?limit=100").await;
        audit["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("no audit entries: {audit}"))
            .iter()
            .map(|e| match e {
                Value::String(s) => serde_json::from_str(s).unwrap(),
                other => other.clone(),
            })
            .collect()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

impl Client {
    /// Submits like a careful legacy system: retries the same bytes (same UUID) through
    /// connection errors, timeouts and 503 until the node answers 2xx; returns the id.
    pub async fn submit_until_accepted(&self, body: &[u8], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.post_message(Some(&self.token), "application/xml", body).await {
                let status = r.status();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    return v["id"].as_str().unwrap().to_owned();
                }
                assert!(
                    status.as_u16() == 503 || status.is_server_error(),
                    "submission refused: {status} {v}"
                );
            }
            assert!(Instant::now() < deadline, "no 2xx for a submission within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the message is in a terminal state (tolerating a node that restarts).
    pub async fn wait_ended(&self, id: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(r) = self
                .http
                .get(format!("{}/v1/messages/{id}", self.api))
                .bearer_auth(&self.token)
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                last = v["status"].as_str().unwrap_or_default().to_owned();
                if ["delivered", "rejected", "failed", "cancelled"].contains(&last.as_str()) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("message {id} did not end within {timeout:?}; last state {last:?}");
    }
}

/// Jepsen-style counters over one run (RELIABILITY-SECURITY.md §3).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Accepted (2xx) but never delivered to the receiving client.
    pub lost: usize,
    /// Delivered to the client under two inbox ids, or fetched again after its ack.
    pub duplicated: usize,
    /// Delivered but never sent.
    pub unexpected: usize,
}

#[derive(Default)]
struct Seen {
    /// XÖV UUID → inbox ids it arrived under.
    ids: std::collections::HashMap<String, std::collections::HashSet<String>>,
    acked: std::collections::HashSet<String>,
    after_ack: usize,
}

/// The receiving legacy system: fetches and acknowledges everything in its inbox, tolerating
/// a node that comes and goes, and records what arrived.
pub struct Consumer {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    pub fn start(net: &Net, i: usize) -> Consumer {
        let client = net.client(i);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let list = client
                    .http
                    .get(format!("{}/v1/inbox", client.api))
                    .bearer_auth(&client.token)
                    .send()
                    .await;
                let Ok(list) = list else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let v: Value = list.json().await.unwrap_or(Value::Null);
                let items = v["messages"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                for m in items {
                    let id = m["id"].as_str().unwrap_or_default().to_owned();
                    let uuid = m["xoev_uuid"].as_str().unwrap_or_default().to_owned();
                    let got = client
                        .http
                        .get(format!("{}/v1/inbox/{id}", client.api))
                        .bearer_auth(&client.token)
                        .send()
                        .await;
                    if !got.is_ok_and(|r| r.status().is_success()) {
                        continue;
                    }
                    {
                        let mut s = s.lock().unwrap();
                        if s.acked.contains(&id) {
                            s.after_ack += 1;
                        }
                        s.ids.entry(uuid).or_default().insert(id.clone());
                    }
                    let ack = client
                        .http
                        .post(format!("{}/v1/inbox/{id}/ack", client.api))
                        .bearer_auth(&client.token)
                        .send()
                        .await;
                    if ack.is_ok_and(|r| r.status().is_success()) {
                        s.lock().unwrap().acked.insert(id);
                    }
                }
            }
        });
        Consumer { seen, task }
    }

    /// Waits until every UUID in `expected` arrived; panics naming how many are missing.
    pub async fn wait_for(&self, expected: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = {
                let s = self.seen.lock().unwrap();
                expected.iter().filter(|u| !s.ids.contains_key(*u)).count()
            };
            if missing == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} of {} messages never arrived",
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many of `uuids` arrived so far.
    pub fn arrived(&self, uuids: &[String]) -> usize {
        let s = self.seen.lock().unwrap();
        uuids.iter().filter(|u| s.ids.contains_key(*u)).count()
    }

    /// The counters for a run in which `sent` were sent and `accepted` answered 2xx.
    pub fn counts(&self, sent: &[String], accepted: &[String]) -> Counts {
        let s = self.seen.lock().unwrap();
        Counts {
            lost: accepted.iter().filter(|u| !s.ids.contains_key(*u)).count(),
            duplicated: s.ids.values().filter(|ids| ids.len() > 1).count() + s.after_ack,
            unexpected: s.ids.keys().filter(|u| !sent.contains(u)).count(),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `poststelle network init DIR` with `nodes` nodes from port `base`.
fn network_init(dir: &Path, nodes: usize, base: u16, extra: &[&str], store_url: Option<&str>) -> Result<(), String> {
    let out = Command::new(bin())
        .args(["network", "init"])
        .arg(dir)
        .args(["--nodes", &nodes.to_string()])
        .args(["--base-port", &base.to_string()])
        .args(extra)
        .args(store_url.iter().flat_map(|u| ["--store-url", u]))
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(()),
        false => Err(format!("network init failed: {}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// This process's template network of `nodes` nodes (made on first use), and its base port.
/// Templates live under the target folder, one folder per test process; those of processes
/// that are gone are removed.
fn template(nodes: usize, store_url: Option<&str>) -> (PathBuf, u16) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static TEMPLATES: Mutex<Option<HashMap<String, (PathBuf, u16)>>> = Mutex::new(None);
    let mut templates = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("network-templates");
    let templates = templates.get_or_insert_with(|| {
        for old in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let pid = old.file_name().to_string_lossy().into_owned();
            if !Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        HashMap::new()
    });
    let key = format!("{nodes}-{}", store_url.unwrap_or("sqlite"));
    if let Some(t) = templates.get(&key) {
        return t.clone();
    }
    let dir = root
        .join(std::process::id().to_string())
        .join(templates.len().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let mut tries = 0;
    let base = loop {
        let base = next_ports(3 * nodes);
        match network_init(&dir, nodes, base, &[], store_url) {
            Ok(()) => break base,
            // A port of the block is taken by something outside the tests: the next block.
            Err(e) if e.contains("is not free") && tries < 20 => tries += 1,
            Err(e) => panic!("{e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    };
    templates.insert(key, (dir.clone(), base));
    (dir, base)
}

/// Copies the network in `from` (ports from `from_base`) to `to` with its ports from
/// `to_base`: files as they are (keys keep their modes), the configurations and
/// `network.json` with the new folder and ports.
fn copy_network(from: &Path, to: &Path, from_base: u16, to_base: u16, ports: usize) {
    fn walk(dir: &Path, from: &Path, to: &Path, rewrite: &dyn Fn(&str) -> String) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let target = to.join(path.strip_prefix(from).unwrap());
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                walk(&path, from, to, rewrite);
            } else if name.ends_with(".toml") || name.ends_with(".json") {
                std::fs::write(&target, rewrite(&std::fs::read_to_string(&path).unwrap())).unwrap();
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let (old, new) = (from.display().to_string(), to.display().to_string());
    walk(from, from, to, &|text| {
        readdress(&text.replace(&old, &new), from_base, to_base, ports)
    });
}

/// `text` with every `127.0.0.1:PORT` of the `ports` ports from `from` moved to the same
/// place from `to`.
fn readdress(text: &str, from: u16, to: u16, ports: usize) -> String {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(HOST) {
        out.push_str(&rest[..at + HOST.len()]);
        rest = &rest[at + HOST.len()..];
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        match rest[..digits].parse::<u16>() {
            Ok(p) if p >= from && usize::from(p - from) < ports => out.push_str(&(to + (p - from)).to_string()),
            _ => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}
