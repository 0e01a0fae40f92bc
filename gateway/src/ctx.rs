//! The context every request handler and worker shares. It names no listener or worker
//! module: what it holds (store, validator, keys, partner health, broker handle, audit log)
//! lives in the layers below.

use std::sync::Arc;

use adapters::{Registry, SchemaSet};
use tokio::sync::Notify;

use crate::config::Config;
use crate::store::{JobKind, Store};
use crate::xml::validate::ValidatorPool;

/// Everything request handlers and workers share.
pub struct Ctx {
    /// What a reload replaces (configuration, keys, TLS material), read with [`Ctx::live`],
    /// [`Ctx::config`] or [`Ctx::keys`]: a version in hand stays whole until dropped.
    live: std::sync::RwLock<Arc<Live>>,
    /// The last reload's outcome, while it was a refusal (`/readyz` shows it).
    pub(crate) reload_refused: std::sync::Mutex<Option<Refused>>,
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub validator: ValidatorPool,
    /// The envelope/receipt schema (`envelope-1.0/envelope.xsd`).
    pub envelope_schema: Arc<SchemaSet>,
    /// HTTP client for push delivery to legacy systems' callbacks.
    pub push_client: reqwest::Client,
    /// Circuit breakers and concurrency slots per partner node.
    pub partners: Arc<crate::health::Partners>,
    /// Client submissions in progress (`server.max_concurrent_intake`); none free → 503.
    pub intake_permits: Arc<tokio::sync::Semaphore>,
    /// OCSP answers about the directory's certificates (kept across reloads).
    pub revocation: Arc<crate::revocation::Checker>,
    /// The AMQP broker connection's publishing side (idle without `[amqp]`).
    pub broker: Arc<crate::amqp::Broker>,
    /// The hash-chained audit log (`<data_dir>/audit.log`, or in a shared store).
    pub audit: crate::audit::AuditLog,
    /// When this process started (milliseconds).
    pub started: crate::store::Millis,
    /// This process among the node's processes: its lease holder name (`node@host`, with
    /// `#slot` on a shared store) and host.
    pub instance: String,
    pub host: String,
    /// Wakes idle workers of a kind as soon as a job of that kind is enqueued.
    pub(crate) wakers: [Notify; 4],
    /// Wakes clients' long polls (`GET /v1/inbox?wait=`) when a message was opened.
    pub(crate) inbox_arrivals: Notify,
    /// The transport listener's receipts, signed together under load.
    pub(crate) receipts: Arc<crate::envelope::together::Signer>,
}

/// The part of a node's context that a reload (`SIGHUP`, `POST /admin/api/reload`) replaces
/// whole: built from one configuration and checked completely before it takes over. Requests,
/// connections and jobs that hold the previous version finish with it.
pub struct Live {
    pub config: Arc<Config>,
    /// Keys and directory certificates for the security layer.
    pub keys: Arc<crate::certs::NodeKeys>,
    /// HTTPS client for partner transport (node identity, only the configured CA trusted, each
    /// partner's certificate pinned).
    pub relay_client: crate::tls::RelayClient,
    /// Every configured certificate (operators' expiry views).
    pub certificates: Arc<Vec<crate::certs::LoadedCertificate>>,
    /// The TLS listeners' contexts: new connections take the current one.
    pub api_tls: Arc<openssl::ssl::SslAcceptor>,
    pub transport_tls: Arc<openssl::ssl::SslAcceptor>,
    /// With `[admin] tls = true`.
    pub admin_tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    /// When this version took over (milliseconds).
    pub since: crate::store::Millis,
}

fn configure_revocation(checker: &crate::revocation::Checker, config: &Config) {
    checker.configure(&config.security.revocation, !config.security.crls.is_empty());
}

/// A refused reload: when, and every problem found.
#[derive(Debug, Clone)]
pub struct Refused {
    pub at: crate::store::Millis,
    pub problems: Vec<String>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("node", &self.config().node_name)
            .finish_non_exhaustive()
    }
}

fn waker_index(kind: JobKind) -> usize {
    match kind {
        JobKind::Relay => 0,
        JobKind::Open => 1,
        JobKind::Notice => 2,
        JobKind::Push => 3,
    }
}

impl Ctx {
    /// A context over `live`; the rest as given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        live: Live,
        store: Arc<dyn Store>,
        registry: Registry,
        validator: ValidatorPool,
        envelope_schema: Arc<SchemaSet>,
        push_client: reqwest::Client,
        partners: Arc<crate::health::Partners>,
        intake_permits: Arc<tokio::sync::Semaphore>,
        audit: crate::audit::AuditLog,
        (instance, host): (String, String),
        revocation: Arc<crate::revocation::Checker>,
    ) -> Ctx {
        configure_revocation(&revocation, &live.config);
        Ctx {
            revocation,
            live: std::sync::RwLock::new(Arc::new(live)),
            reload_refused: std::sync::Mutex::new(None),
            store,
            registry,
            validator,
            envelope_schema,
            push_client,
            partners,
            intake_permits,
            broker: Arc::default(),
            audit,
            started: crate::store::now_millis(),
            instance,
            host,
            wakers: Default::default(),
            inbox_arrivals: Notify::new(),
            receipts: Arc::default(),
        }
    }

    /// The current configuration, keys and TLS material, as one version.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.live().config.clone()
    }

    /// The current keys and directory certificates.
    pub fn keys(&self) -> Arc<crate::certs::NodeKeys> {
        self.live().keys.clone()
    }

    /// The current relay client (cheap to clone: its connection pool is shared).
    pub fn relay_client(&self) -> crate::tls::RelayClient {
        self.live().relay_client.clone()
    }

    /// Puts `live` in force for every new request, connection and job.
    pub(crate) fn replace(&self, live: Live) {
        configure_revocation(&self.revocation, &live.config);
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }

    /// This process as a heartbeat row shows it, seen at `last_seen`.
    pub fn process(&self, last_seen: crate::store::Millis) -> crate::store::Process {
        crate::store::Process {
            id: self.instance.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            started: self.started,
            last_seen,
        }
    }

    pub fn wake(&self, kind: JobKind) {
        self.wakers[waker_index(kind)].notify_one();
    }

    pub(crate) fn waker(&self, kind: JobKind) -> &Notify {
        &self.wakers[waker_index(kind)]
    }
}
