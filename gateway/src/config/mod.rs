//! Configuration: raw serde types from TOML, then one validation step into [`Config`].
//!
//! Validation collects every problem before returning, reads the certificate files it names
//! (so a wrong path is a config error, not a runtime one) and binds no ports. Relative paths are
//! relative to the config file's folder. Nothing here starts anything.

mod authorities;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::access::{RawAdmin, RawAdminToken};
use crate::xml::prescan::Limits;

/// The TOML file as written by people and by `network init`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub node: RawNode,
    pub listen: RawListen,
    pub tls: RawTls,
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub relay: RawRelay,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub schemas: RawSchemas,
    #[serde(default)]
    pub adapters: RawAdapters,
    /// A RabbitMQ broker for client queues (AMQP 0.9.1); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<Amqp>,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub authorities: Vec<RawAuthority>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub partners: Vec<RawPartner>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// The node's name; partners know it by this name and by its certificate.
    pub name: String,
    /// Where the store lives.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// HTTPS for legacy systems (`/v1/messages`, `/v1/inbox`).
    pub api: String,
    /// HTTPS with mandatory client certificates for partner nodes (`/v1/transport`).
    pub transport: String,
    /// Plain HTTP for operators (`/healthz`, `/readyz`, `/admin/api`); bind it to loopback.
    pub admin: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Trust anchor(s) for partner node certificates and client certificates (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), used on both listeners and as relay client identity.
    pub cert: PathBuf,
    /// This node's private key (PEM). Never logged.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRelay {
    /// Workers per kind of job (relay, open, notice, push); each handles one message at a time.
    pub workers: usize,
    /// How long a worker owns a claimed job; an expired lease is taken over after a crash.
    pub lease_seconds: u64,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// First retry delay; doubles per attempt up to `retry_max_ms`, with jitter.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// The retry time-box (store and forward): a message not received by its partner this long
    /// after acceptance ends `failed` (the dead-letter state) with its last error.
    pub retry_window_seconds: u64,
    /// Attempts before `failed`; 0 = no limit besides the time-box.
    pub max_attempts: u32,
    /// Attempts to open a received message (decrypt, verify, validate) before it is refused
    /// as poison (`internal`); crashes while opening count too.
    pub poison_attempts: u32,
    /// Messages relayed to one partner at the same time (the others wait, so one slow partner
    /// occupies at most this many workers).
    pub per_partner_concurrency: usize,
    /// How long a notice (`delivered`, `refused`) waits for others to the same partner, which
    /// then travel with it, signed once (0: it goes at once, with those due already).
    pub notice_linger_ms: u64,
    /// Envelopes to one partner that may travel in one request (1–64; 1: each alone, as
    /// nodes of earlier versions need).
    pub envelopes_per_request: usize,
    /// Consecutive transient failures that open a partner's circuit; while it is open, no
    /// worker tries that partner (no attempts are spent) until one probe after `circuit_open_ms`.
    pub circuit_failures: u32,
    pub circuit_open_ms: u64,
    /// Validation threads (libxml2) and their bounded queue.
    pub validation_threads: usize,
    pub validation_queue: usize,
}

impl Default for RawRelay {
    fn default() -> Self {
        RawRelay {
            workers: 16,
            lease_seconds: 30,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            retry_window_seconds: 72 * 3600,
            max_attempts: 0,
            poison_attempts: 20,
            per_partner_concurrency: 8,
            notice_linger_ms: 20,
            envelopes_per_request: 8,
            circuit_failures: 5,
            circuit_open_ms: 30_000,
            validation_threads: 2,
            validation_queue: 256,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemas {
    /// Folder holding the project's own schemas (`envelope-1.0/`, `xumzug-1.0/`). Default: the
    /// copies embedded in the binary, written to `<data_dir>/schemas` at start.
    pub root: Option<PathBuf>,
}

/// The adapters a node loads besides the built-in demo standard (XUmzug 1.0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdapters {
    /// Folder of the official schemas that manifests name as `{xoev}/…` (never copied into the
    /// project), e.g. `../shared/xoev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xoev_root: Option<PathBuf>,
    /// Adapter directories, each holding an `adapter.toml` (see docs/adapters.md).
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

/// The broker and the topology the node declares on it (idempotently, at every connect).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Amqp {
    /// `amqp://USER:PASS@HOST:PORT/VHOST`. Never logged (it may hold a password).
    pub url: String,
    /// Topic exchange for status events (routing key `status.<state>`).
    #[serde(default = "default_events_exchange")]
    pub events_exchange: String,
    /// Where refused client messages go, with the problem code in their headers; a fanout
    /// exchange bound to `dead_letter_queue`, and the dead-letter exchange of every intake queue.
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Unacknowledged deliveries per intake queue: the bound on in-flight intake work.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Deliveries of one message before the broker dead-letters it (a message that keeps
    /// crashing or stalling intake).
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// This node's transport queue: partners that reach it through the broker publish their
    /// envelopes and notices here (signed, as over HTTPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_queue: Option<String>,
}

fn default_events_exchange() -> String {
    "poststelle.events".into()
}
fn default_prefetch() -> u16 {
    16
}
fn default_delivery_limit() -> u32 {
    5
}

/// Listener limits and timeouts (slow-loris protection), for the client and transport listeners.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Time for a request's head (request line and headers), also the keep-alive idle time.
    pub header_timeout_ms: u64,
    /// Time for a request's whole body once its headers arrived.
    pub body_timeout_ms: u64,
    /// Time for the TLS handshake.
    pub handshake_timeout_ms: u64,
    /// Open connections per listener, and per peer IP address.
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// Client submissions processed at once; beyond, `503 overloaded` with `Retry-After`.
    /// Bounds intake memory to about this many times `limits.max_bytes`.
    pub max_concurrent_intake: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            handshake_timeout_ms: 10_000,
            max_connections: 1024,
            max_connections_per_peer: 128,
            max_concurrent_intake: 64,
        }
    }
}

impl Server {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// Where the store lives, and its own bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Largest size of the database in MiB (0: as large as the disk allows). When it is
    /// reached, new work is refused with `503 overloaded` and nothing stored is touched.
    pub max_size_mb: u64,
    /// A PostgreSQL database (`postgres://user@host:port/db`, `sslmode` as a parameter);
    /// absent: SQLite in `data_dir`. A password belongs in `PGPASSWORD` or `password_file`,
    /// not here; it is never logged.
    pub url: Option<String>,
    /// The PostgreSQL schema of this node's tables.
    pub schema: String,
    /// Connections to PostgreSQL this process keeps at most.
    pub pool_size: usize,
    /// A file holding the PostgreSQL password (used when the URL names none).
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) the database server's certificate must chain to (default: the
    /// system's roots). Whether TLS is used is the URL's `sslmode`; when it is, it is verified.
    pub ca: Option<PathBuf>,
    /// Where attachment files live (default: `attachments` in the data folder). Every
    /// process of a node on a shared store must see the same folder (`files.rs`).
    pub attachments_dir: Option<PathBuf>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            max_size_mb: 0,
            url: None,
            schema: "poststelle".into(),
            pool_size: 16,
            password_file: None,
            ca: None,
            attachments_dir: None,
        }
    }
}

/// How long data is kept once a message has ended (privacy by design).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Payloads (the XÖV message and the envelope) of ended messages are purged this long
    /// after their last change; metadata, timeline and receipts stay.
    pub payload_seconds: u64,
    /// Ended messages are deleted entirely this long after their last change. Must exceed the
    /// retry window: the metadata is what recognises a partner's late resend as a duplicate.
    pub metadata_seconds: u64,
    /// How often the purge (and the retry time-box sweep) runs.
    pub sweep_seconds: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            payload_seconds: 30 * 24 * 3600,
            metadata_seconds: 400 * 24 * 3600,
            sweep_seconds: 60,
        }
    }
}

/// XML security (PRODUCT.md "Security profile"). Trust anchors per role: `tls.ca` for node
/// certificates (TLS and transport signatures), `content_ca` for authority certificates
/// (content signatures and encryption).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    /// Trust anchor(s) for authority certificates (PEM).
    pub content_ca: Option<PathBuf>,
    /// CRL files (PEM); when given, every certificate's chain is checked for revocation.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Partner nodes (by name) whose 2048-bit RSA keys are accepted: an explicit exception,
    /// logged at start. Everyone else needs RSA ≥ 3072 or EC ≥ 256.
    #[serde(default)]
    pub allow_rsa_2048: Vec<String>,
    /// How far ahead of our clock a partner's envelope may be dated; beyond, `clock-skew`.
    #[serde(default = "default_clock_tolerance")]
    pub clock_tolerance_seconds: u64,
    /// A file whose first line is the passphrase of encrypted (PKCS#8) key files; without it,
    /// `POSTSTELLE_KEY_PASSPHRASE`. Never the passphrase itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_passphrase_file: Option<PathBuf>,
    /// `[security.revocation]`: OCSP beside the CRL files.
    #[serde(default, skip_serializing_if = "crate::revocation::Settings::is_default")]
    pub revocation: crate::revocation::Settings,
}

fn default_clock_tolerance() -> u64 {
    300
}

impl Default for RawSecurity {
    fn default() -> Self {
        RawSecurity {
            content_ca: None,
            crls: Vec::new(),
            allow_rsa_2048: Vec::new(),
            clock_tolerance_seconds: default_clock_tolerance(),
            key_passphrase_file: None,
            revocation: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthority {
    /// DVDV-style `prefix:kennung`.
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The authority's certificate (PEM): content signatures are made and messages for it are
    /// encrypted with its key.
    pub certificate: PathBuf,
    /// The authority's private key (PEM). Never logged.
    pub key: PathBuf,
    /// During a key migration (RSA → EC, or a renewal): the key before, kept only to decrypt
    /// what partners still seal for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_certificate: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: String,
    /// The local authority the client acts for; it may only author messages as this authority.
    pub authority: String,
    /// Bearer token in clear, or its SHA-256 as `token_sha256` (`poststelle token new` prints
    /// both). Kept only hashed; compared in constant time after hashing; never logged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// Message type patterns this client may send (`*`, `standard/*`, `standard/version *`, exact).
    #[serde(default = "all_types")]
    pub message_types: Vec<String>,
    /// Optional HTTP(S) callback that receives each opened message (push delivery).
    #[serde(default)]
    pub push_url: Option<String>,
    /// The adapter (a legacy format with an outbound transform) whose format this client
    /// receives its inbox in; by default the standard message as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_as: Option<String>,
    /// AMQP: the queue this client submits to (one XML message per body). Who may publish to
    /// it is the broker's permission; the node treats everything on it as this client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp_intake: Option<String>,
    /// AMQP: the queue this client receives its inbox on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp_inbox: Option<String>,
    /// Whether a publish to `amqp_inbox` confirmed by the broker counts as `delivered`; if not,
    /// the client acknowledges through the HTTP API as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delivered_on_confirm: bool,
    /// A drop folder (`out/`, `sent/`, `rejected/`, `in/`, `status/`, made at start): the
    /// client submits by renaming files into `out/` and receives into `in/`
    /// (`crate::dropdir`). Relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_dir: Option<PathBuf>,
    /// How often `out/` is scanned besides its inotify events (network file systems deliver
    /// none), in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_poll_ms: Option<u64>,
}

fn all_types() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    /// The partner node's name (informational; identity is its certificate).
    pub node: String,
    /// `https://HOST:PORT/v1/transport` of the partner's transport listener, or a list of
    /// them (the partner node run on several machines): the relay fails over between them.
    #[serde(default, skip_serializing_if = "Urls::is_empty")]
    pub transport_url: Urls,
    /// Instead of `transport_url`: the partner's transport queue on our broker (`[amqp]`);
    /// envelopes and notices are published to it, answers come back on our reply queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp_queue: Option<String>,
    /// The partner node's certificate (PEM); its TLS client certificate must be exactly this one.
    pub certificate: PathBuf,
    /// Authorities served by that node.
    pub authorities: Vec<String>,
    /// Each of those authorities' certificate (PEM), by authority id: its content signatures
    /// are verified with it and messages for it are encrypted for it.
    #[serde(default)]
    pub authority_certificates: BTreeMap<String, PathBuf>,
}

/// A validated configuration. Every path is absolute, every address parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub transport_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tls: TlsFiles,
    /// The admin listener's tokens (each with its name and role) and TLS.
    pub admin: crate::access::Admin,
    pub limits: Limits,
    pub relay: RelaySettings,
    pub server: Server,
    pub store: StoreSettings,
    pub retention: Retention,
    pub schema_root: Option<PathBuf>,
    pub xoev_root: Option<PathBuf>,
    pub adapter_dirs: Vec<PathBuf>,
    pub amqp: Option<Amqp>,
    pub authorities: BTreeMap<String, String>,
    /// Certificate and key of each local authority, by id.
    pub authority_keys: BTreeMap<String, KeyFiles>,
    pub security: Security,
    pub clients: Vec<Client>,
    pub partners: Vec<Partner>,
    /// The file this was loaded from (a reload reads it again).
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The previous certificate and key (decryption only), during a migration.
    pub previous: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, Default)]
pub struct Security {
    pub content_ca: Option<PathBuf>,
    pub crls: Vec<PathBuf>,
    pub allow_rsa_2048: Vec<String>,
    pub clock_tolerance: Duration,
    pub key_passphrase_file: Option<PathBuf>,
    pub revocation: crate::revocation::Settings,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub workers: usize,
    pub lease: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub retry_window: Duration,
    pub max_attempts: u32,
    pub poison_attempts: u32,
    pub per_partner_concurrency: usize,
    pub notice_linger: Duration,
    pub envelopes_per_request: usize,
    pub circuit_failures: u32,
    pub circuit_open: Duration,
    pub validation_threads: usize,
    pub validation_queue: usize,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub authority: String,
    pub token: crate::access::Secret,
    pub message_types: Vec<String>,
    pub push_url: Option<String>,
    pub deliver_as: Option<String>,
    pub amqp_intake: Option<String>,
    pub amqp_inbox: Option<String>,
    pub delivered_on_confirm: bool,
    /// The client's drop folder (absolute).
    pub drop_dir: Option<crate::dropdir::DropDir>,
    pub drop_poll: Duration,
}

impl Client {
    /// Whether received messages are handed to this client (push callback, inbox queue or drop
    /// folder) rather than only waiting in its HTTP inbox.
    pub fn takes_pushes(&self) -> bool {
        self.push_url.is_some() || self.amqp_inbox.is_some() || self.drop_dir.is_some()
    }
}

/// One address or several: `"https://…"` or `["https://…", …]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Default for Urls {
    fn default() -> Urls {
        Urls::One(String::new())
    }
}

impl From<String> for Urls {
    fn from(url: String) -> Urls {
        Urls::One(url)
    }
}

impl Urls {
    /// The addresses, in order (none for an empty string or list).
    pub fn list(&self) -> Vec<String> {
        match self {
            Urls::One(u) if u.is_empty() => Vec::new(),
            Urls::One(u) => vec![u.clone()],
            Urls::Many(v) => v.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.list().is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Partner {
    pub node: String,
    /// The partner's transport addresses, the relay's first choice first (empty: reached
    /// through the broker).
    pub transport_urls: Vec<String>,
    /// The partner's transport queue, when it is reached through the broker.
    pub amqp_queue: Option<String>,
    /// SHA-256 of the DER encoding of each certificate in the partner's certificate file: one,
    /// or during a certificate rollover the old and the new (either is accepted).
    pub fingerprints: Vec<[u8; 32]>,
    pub certificate: PathBuf,
    pub authorities: Vec<String>,
    /// Certificate of each of its authorities, by id.
    pub authority_certificates: BTreeMap<String, PathBuf>,
}

/// Every problem found in a config file, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl RawConfig {
    /// Reads and parses a TOML file; syntax errors carry line and column.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
        toml::from_str(&text).map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))
    }

    /// Validates everything at once. `base` is the folder relative paths are resolved against.
    pub fn validate(self, base: &Path) -> Result<Config, ConfigErrors> {
        let mut errs = Vec::new();
        let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        if self.node.name.trim().is_empty() {
            errs.push("node.name: must not be empty".into());
        }
        let mut addr = |field: &str, s: &str| -> SocketAddr {
            s.parse().unwrap_or_else(|e| {
                errs.push(format!("{field}: {s:?} is not an address like 127.0.0.1:7401 ({e})"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let api_addr = addr("listen.api", &self.listen.api);
        let transport_addr = addr("listen.transport", &self.listen.transport);
        let admin_addr = addr("listen.admin", &self.listen.admin);
        let tls = TlsFiles {
            ca: abs(&self.tls.ca),
            cert: abs(&self.tls.cert),
            key: abs(&self.tls.key),
        };
        for (field, p) in [("tls.ca", &tls.ca), ("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
            if !p.is_file() {
                errs.push(format!("{field}: {} does not exist", p.display()));
            }
        }
        self.check_settings(&mut errs);
        let (authorities, authority_keys) = self.authorities(&abs, &mut errs);
        let security = Security {
            content_ca: self.security.content_ca.as_deref().map(abs),
            crls: self.security.crls.iter().map(|c| abs(c)).collect(),
            allow_rsa_2048: self.security.allow_rsa_2048.clone(),
            clock_tolerance: Duration::from_secs(self.security.clock_tolerance_seconds),
            key_passphrase_file: self.security.key_passphrase_file.as_deref().map(abs),
            revocation: self.security.revocation.clone(),
        };
        security.revocation.check(&mut errs);
        for p in security.content_ca.iter().chain(&security.crls) {
            if !p.is_file() {
                errs.push(format!("security: {} does not exist", p.display()));
            }
        }
        if authorities.is_empty() {
            errs.push("authorities: a node serves at least one authority".into());
        }
        let admin = crate::access::admin(&self.admin, admin_addr, (&tls.cert, &tls.key), &abs, &mut errs);
        let clients = self.clients(&abs, &authorities, &mut errs);
        let partners = self.partners(&abs, &authorities, &mut errs);
        self.check_amqp_and_adapters(&abs, &mut errs);
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        let r = &self.relay;
        Ok(Config {
            node_name: self.node.name,
            data_dir: abs(&self.node.data_dir),
            api_addr,
            transport_addr,
            admin_addr,
            tls,
            admin,
            limits: self.limits,
            relay: RelaySettings {
                workers: self.relay.workers,
                lease: Duration::from_secs(r.lease_seconds),
                connect_timeout: Duration::from_millis(r.connect_timeout_ms),
                request_timeout: Duration::from_millis(r.request_timeout_ms),
                retry_initial: Duration::from_millis(r.retry_initial_ms),
                retry_max: Duration::from_millis(r.retry_max_ms),
                retry_window: Duration::from_secs(r.retry_window_seconds),
                max_attempts: r.max_attempts,
                poison_attempts: r.poison_attempts,
                per_partner_concurrency: r.per_partner_concurrency,
                notice_linger: Duration::from_millis(r.notice_linger_ms),
                envelopes_per_request: r.envelopes_per_request,
                circuit_failures: r.circuit_failures,
                circuit_open: Duration::from_millis(r.circuit_open_ms),
                validation_threads: r.validation_threads,
                validation_queue: r.validation_queue,
            },
            server: self.server,
            store: StoreSettings {
                password_file: self.store.password_file.as_deref().map(abs),
                ca: self.store.ca.as_deref().map(abs),
                attachments_dir: Some(
                    self.store
                        .attachments_dir
                        .as_deref()
                        .map(abs)
                        .unwrap_or_else(|| abs(&self.node.data_dir).join("attachments")),
                ),
                ..self.store
            },
            retention: self.retention,
            schema_root: self.schemas.root.as_deref().map(abs),
            xoev_root: self.adapters.xoev_root.as_deref().map(abs),
            adapter_dirs: self.adapters.dirs.iter().map(|d| abs(d)).collect(),
            amqp: self.amqp,
            authorities,
            authority_keys,
            security,
            clients,
            partners,
            source: None,
        })
    }

    /// Limits, relay, server and retention settings: every figure in its range.
    fn check_settings(&self, errs: &mut Vec<String>) {
        let l = &self.limits;
        if l.max_bytes == 0
            || l.max_attachment_bytes == 0
            || l.max_depth == 0
            || l.max_attributes == 0
            || l.max_elements == 0
        {
            errs.push("limits: every limit must be greater than zero".into());
        }
        if l.max_partner_staging_bytes < crate::xmlsec::stream::ciphertext_len(l.max_attachment_bytes) {
            errs.push(
                "limits: max_partner_staging_bytes must hold at least one attachment stream of max_attachment_bytes (encrypted: 16 bytes more per 64 KiB)"
                    .into(),
            );
        }
        let r = &self.relay;
        if r.workers == 0 || r.validation_threads == 0 || r.validation_queue == 0 {
            errs.push("relay: workers, validation_threads and validation_queue must be at least 1".into());
        }
        if r.lease_seconds == 0 || r.retry_initial_ms == 0 || r.retry_max_ms < r.retry_initial_ms {
            errs.push("relay: lease_seconds > 0 and 0 < retry_initial_ms <= retry_max_ms".into());
        }
        if r.per_partner_concurrency == 0 || r.circuit_failures == 0 || r.retry_window_seconds == 0 {
            errs.push("relay: per_partner_concurrency, circuit_failures, retry_window_seconds must be >= 1".into());
        }
        if !(1..=64).contains(&r.envelopes_per_request) {
            errs.push("relay: envelopes_per_request must be 1 to 64 (envelope::MAX_NOTICES)".into());
        }
        let sv = &self.server;
        if sv.header_timeout_ms == 0
            || sv.body_timeout_ms == 0
            || sv.handshake_timeout_ms == 0
            || sv.max_connections == 0
            || sv.max_connections_per_peer == 0
            || sv.max_concurrent_intake == 0
        {
            errs.push("server: every timeout and limit must be greater than zero".into());
        }
        let rt = &self.retention;
        if rt.sweep_seconds == 0 || rt.payload_seconds == 0 {
            errs.push("retention: sweep_seconds and payload_seconds must be at least 1".into());
        }
        if rt.metadata_seconds < rt.payload_seconds || rt.metadata_seconds <= r.retry_window_seconds {
            errs.push(
                "retention.metadata_seconds: must be at least payload_seconds and longer than relay.retry_window_seconds \
                 (the metadata recognises late resends)"
                    .into(),
            );
        }
    }

    /// The clients: each bound to one of the node's authorities, with a token of its own.
    fn clients(
        &self,
        abs: &dyn Fn(&Path) -> PathBuf,
        authorities: &BTreeMap<String, String>,
        errs: &mut Vec<String>,
    ) -> Vec<Client> {
        let mut tokens = BTreeSet::new();
        let mut drop_dirs = BTreeSet::new();
        let mut clients = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            if !authorities.contains_key(&c.authority) {
                errs.push(format!(
                    "clients[{i}].authority: {} is not one of this node's authorities",
                    c.authority
                ));
            }
            let token = crate::access::secret(
                &format!("clients[{i}]"),
                Some(&c.token),
                c.token_sha256.as_deref(),
                errs,
            );
            if let Some(t) = &token
                && !tokens.insert(t.clone())
            {
                errs.push(format!("clients[{i}].token: the same token is given to two clients"));
            }
            if let Some(u) = &c.push_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                errs.push(format!("clients[{i}].push_url: must be an http(s) URL"));
            }
            clients.push(Client {
                name: c.name.clone(),
                authority: c.authority.clone(),
                token: token.unwrap_or_else(|| crate::access::Secret::of("")),
                message_types: c.message_types.clone(),
                push_url: c.push_url.clone(),
                deliver_as: c.deliver_as.clone(),
                amqp_intake: c.amqp_intake.clone(),
                amqp_inbox: c.amqp_inbox.clone(),
                delivered_on_confirm: c.delivered_on_confirm,
                drop_dir: c.drop_dir.as_deref().map(|d| crate::dropdir::DropDir::new(abs(d))),
                drop_poll: Duration::from_millis(c.drop_poll_ms.unwrap_or(1000)),
            });
            let deliveries = [c.push_url.is_some(), c.amqp_inbox.is_some(), c.drop_dir.is_some()];
            if deliveries.iter().filter(|d| **d).count() > 1 {
                errs.push(format!(
                    "clients[{i}]: push_url, amqp_inbox and drop_dir are three ways to deliver; choose one"
                ));
            }
            if let Some(d) = &c.drop_dir
                && !drop_dirs.insert(abs(d))
            {
                errs.push(format!(
                    "clients[{i}].drop_dir: another client has the same drop folder"
                ));
            }
            if c.drop_poll_ms.is_some_and(|ms| !(10..=3_600_000).contains(&ms)) {
                errs.push(format!("clients[{i}].drop_poll_ms: must be between 10 and 3600000"));
            }
            if (c.amqp_intake.is_some() || c.amqp_inbox.is_some()) && self.amqp.is_none() {
                errs.push(format!("clients[{i}]: amqp_intake / amqp_inbox need an [amqp] section"));
            }
        }
        clients
    }

    /// The directory: partner nodes, their certificates and the authorities they serve (none
    /// served by two nodes, none of them ours).
    fn partners(
        &self,
        abs: &dyn Fn(&Path) -> PathBuf,
        authorities: &BTreeMap<String, String>,
        errs: &mut Vec<String>,
    ) -> Vec<Partner> {
        let mut partners = Vec::new();
        let mut partner_authorities = BTreeSet::new();
        for (i, p) in self.partners.iter().enumerate() {
            let urls = p.transport_url.list();
            match &p.amqp_queue {
                Some(_) if self.amqp.is_none() => {
                    errs.push(format!("partners[{i}].amqp_queue: needs an [amqp] section"));
                }
                Some(_) => {}
                None if urls.is_empty() => {
                    errs.push(format!("partners[{i}].transport_url: must be an https URL"));
                }
                None => {}
            }
            for u in &urls {
                if !u.starts_with("https://") || u.parse::<hyper::Uri>().is_err() {
                    errs.push(format!("partners[{i}].transport_url: {u:?} must be an https URL"));
                }
            }
            let certificate = abs(&p.certificate);
            let fingerprints = crate::xmlsec::trust::fingerprints_of_pem_file(&certificate).unwrap_or_else(|e| {
                errs.push(format!("partners[{i}].certificate: {e}"));
                Vec::new()
            });
            let mut authority_certificates = BTreeMap::new();
            for a in &p.authorities {
                match p.authority_certificates.get(a) {
                    Some(c) if abs(c).is_file() => {
                        authority_certificates.insert(a.clone(), abs(c));
                    }
                    Some(c) => errs.push(format!(
                        "partners[{i}].authority_certificates: {} does not exist",
                        abs(c).display()
                    )),
                    None => errs.push(format!("partners[{i}].authority_certificates: {a} has no certificate")),
                }
                if !adapters::is_authority(a) {
                    errs.push(format!("partners[{i}].authorities: {a:?} is not prefix:kennung"));
                } else if authorities.contains_key(a) || !partner_authorities.insert(a.clone()) {
                    errs.push(format!(
                        "partners[{i}].authorities: {a} is served by more than one node"
                    ));
                }
            }
            partners.push(Partner {
                node: p.node.clone(),
                transport_urls: urls,
                amqp_queue: p.amqp_queue.clone(),
                fingerprints,
                certificate,
                authorities: p.authorities.clone(),
                authority_certificates,
            });
        }
        partners
    }

    /// The store, the broker URL and the adapter folders.
    fn check_amqp_and_adapters(&self, abs: &dyn Fn(&Path) -> PathBuf, errs: &mut Vec<String>) {
        let st = &self.store;
        if let Some(url) = &st.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            errs.push(format!(
                "store.url: {} is not a postgres:// URL",
                crate::store::pg::redact(url)
            ));
        }
        if !crate::store::pg::is_identifier(&st.schema) {
            errs.push(format!(
                "store.schema: {:?} must be lower-case letters, digits and '_'",
                st.schema
            ));
        }
        if st.pool_size == 0 {
            errs.push("store.pool_size: must be at least 1".into());
        }
        for (field, f) in [("password_file", &st.password_file), ("ca", &st.ca)] {
            if let Some(f) = f
                && !abs(f).is_file()
            {
                errs.push(format!("store.{field}: {} does not exist", abs(f).display()));
            }
        }
        if let Some(a) = &self.amqp {
            if !(a.url.starts_with("amqp://") || a.url.starts_with("amqps://")) {
                errs.push("amqp.url: must be an amqp:// or amqps:// URL".into());
            }
            if a.prefetch == 0 {
                errs.push("amqp.prefetch: must be at least 1".into());
            }
        }
        if let Some(root) = &self.adapters.xoev_root
            && !abs(root).is_dir()
        {
            errs.push(format!("adapters.xoev_root: {} is not a folder", abs(root).display()));
        }
        for (i, d) in self.adapters.dirs.iter().enumerate() {
            if !abs(d).join(adapters::manifest::FILE).is_file() {
                errs.push(format!(
                    "adapters.dirs[{i}]: {} holds no {}",
                    abs(d).display(),
                    adapters::manifest::FILE
                ));
            }
        }
    }
}

impl Config {
    /// The node's attachment files.
    pub fn files(&self) -> crate::files::Files {
        crate::files::Files::new(
            self.store
                .attachments_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("attachments")),
        )
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let raw = RawConfig::from_file(path)?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::path::absolute(&base).unwrap_or(base);
        let mut config = raw.validate(&base)?;
        config.source = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        Ok(config)
    }

    /// The partner node serving an authority.
    pub fn partner_for(&self, authority: &str) -> Option<&Partner> {
        self.partners
            .iter()
            .find(|p| p.authorities.iter().any(|a| a == authority))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_problem_at_once() {
        let raw: RawConfig = toml::from_str(
            r#"
            [node]
            name = ""
            data_dir = "d"
            [listen]
            api = "nope"
            transport = "127.0.0.1:1"
            admin = "127.0.0.1:2"
            [tls]
            ca = "missing-ca.pem"
            cert = "missing.pem"
            key = "missing.key"
            [admin]
            token = "short"
            [[authorities]]
            id = "no-colon"
            certificate = "a.pem"
            key = "a.key"
            [[clients]]
            name = "c"
            authority = "psw:1"
            token = "x"
            push_url = "https://legacy.example/in"
            drop_dir = "drop"
            drop_poll_ms = 5
            [[clients]]
            name = "d"
            authority = "psw:1"
            token = "0123456789abcdef0123"
            drop_dir = "./drop"
            "#,
        )
        .unwrap();
        let errs = raw.validate(Path::new("/nonexistent")).unwrap_err().0;
        let text = errs.join("\n");
        for needle in [
            "node.name",
            "listen.api",
            "tls.ca",
            "tls.cert",
            "tls.key",
            "admin.token",
            "authorities[0].id",
            "authorities[0].certificate",
            "clients[0].authority",
            "clients[0].token",
            "clients[0]: push_url, amqp_inbox and drop_dir",
            "clients[0].drop_poll_ms",
            "clients[1].drop_dir: another client has the same drop folder",
        ] {
            assert!(text.contains(needle), "missing {needle} in:\n{text}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_position() {
        let e = toml::from_str::<RawConfig>("[node]\nname='a'\ndata_dir='d'\ncolour='blue'\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
