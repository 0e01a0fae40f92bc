//! A running node: the shared context, and the start/stop sequence.
//!
//! Start: schemas compile and the store opens before any port is bound; then the three
//! listeners (client API over TLS, partner transport over mutual TLS, admin over plain HTTP)
//! and the workers start. Stop: one watch signal; listeners stop accepting, connections drain,
//! workers finish their current job (a job cut short keeps its lease and is resumed later).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapters::{Registry, SchemaSet};
use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::problem::{Code, Problem};
use crate::store::sqlite::SqliteStore;
use crate::store::{JobKind, Store, StoreError};
use crate::xml::validate::ValidatorPool;

/// Everything request handlers and workers share.
pub struct Ctx {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub validator: ValidatorPool,
    /// The envelope/receipt schema (`envelope-1.0/envelope.xsd`).
    pub envelope_schema: Arc<SchemaSet>,
    /// HTTPS client for partner transport (node identity, only the configured CA trusted).
    pub relay_client: reqwest::Client,
    /// HTTP client for push delivery to legacy systems' callbacks.
    pub push_client: reqwest::Client,
    /// Keys and directory certificates for the security layer.
    pub keys: Arc<crate::xmlsec::seal::NodeKeys>,
    /// Wakes idle workers of a kind as soon as a job of that kind is enqueued.
    wakers: [Notify; 4],
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("node", &self.config.node_name)
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
    pub fn wake(&self, kind: JobKind) {
        self.wakers[waker_index(kind)].notify_one();
    }

    pub(crate) fn waker(&self, kind: JobKind) -> &Notify {
        &self.wakers[waker_index(kind)]
    }
}

/// Maps a store failure to a client-facing problem: busy → 503 overloaded, else 500 internal.
pub fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::Busy => Problem::overloaded(1),
        StoreError::Failed(detail) => {
            tracing::error!(error = %detail, "store failure");
            Problem::new(Code::Internal, "the store is unavailable")
        }
    }
}

/// The folder holding the project's own schemas for this config.
pub fn schema_root(config: &Config) -> anyhow::Result<std::path::PathBuf> {
    match &config.schema_root {
        Some(root) => Ok(root.clone()),
        None => crate::embedded::write_schemas(&config.data_dir.join("schemas"))
            .context("cannot write the embedded schemas"),
    }
}

/// The adapters a config enables, with the envelope schema.
pub fn registry(config: &Config) -> anyhow::Result<(Registry, SchemaSet)> {
    let root = schema_root(config)?;
    let mut registry = Registry::new();
    registry.register(Arc::new(adapters::xumzug(&root)))?;
    if let Some(dir) = &config.xbeteiligung {
        registry.register(Arc::new(adapters::xbeteiligung_1_2(dir, config.catalogs.clone())))?;
    }
    let envelope = SchemaSet {
        entry: root.join("envelope-1.0").join("envelope.xsd"),
        catalogs: Vec::new(),
    };
    Ok((registry, envelope))
}

/// A started node.
pub struct RunningNode {
    pub ctx: Arc<Ctx>,
    pub api_addr: SocketAddr,
    pub transport_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("api", &self.api_addr)
            .finish_non_exhaustive()
    }
}

/// How long stop waits for connections and workers before giving up on them.
const GRACE: Duration = Duration::from_secs(10);

impl RunningNode {
    /// Stops intake, lets in-flight work finish within the grace period, and returns.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(GRACE, async { while self.tasks.join_next().await.is_some() {} }).await;
        self.tasks.abort_all();
    }
}

/// Starts a node: checks everything, then binds, then serves.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let keys = crate::xmlsec::seal::NodeKeys::load(&config)
        .map_err(|errs| anyhow::anyhow!("keys and certificates:\n{}", errs.join("\n")))?;
    let (registry, envelope_schema) = registry(&config)?;
    let mut warm = vec![envelope_schema.clone()];
    warm.extend(registry.adapters().map(|a| a.schema().clone()));
    let validator = ValidatorPool::start(config.relay.validation_threads, config.relay.validation_queue, &warm)
        .map_err(|e| anyhow::anyhow!(e))?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir).map_err(|e| anyhow::anyhow!("{e}"))?);
    let tls = &config.tls;
    let api_acceptor = Arc::new(crate::tls::acceptor(&tls.cert, &tls.key, &tls.ca, false)?);
    let transport_acceptor = Arc::new(crate::tls::acceptor(&tls.cert, &tls.key, &tls.ca, true)?);
    let relay_client = crate::tls::relay_client(
        &tls.cert,
        &tls.key,
        &tls.ca,
        config.relay.connect_timeout,
        config.relay.request_timeout,
    )?;
    let push_client = reqwest::Client::builder()
        .connect_timeout(config.relay.connect_timeout)
        .timeout(config.relay.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    let api = TcpListener::bind(config.api_addr)
        .await
        .with_context(|| format!("cannot bind the API listener {}", config.api_addr))?;
    let transport = TcpListener::bind(config.transport_addr)
        .await
        .with_context(|| format!("cannot bind the transport listener {}", config.transport_addr))?;
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot bind the admin listener {}", config.admin_addr))?;
    let (api_addr, transport_addr, admin_addr) = (api.local_addr()?, transport.local_addr()?, admin.local_addr()?);

    let workers = config.relay.workers;
    let ctx = Arc::new(Ctx {
        config,
        store,
        registry,
        validator,
        envelope_schema: Arc::new(envelope_schema),
        relay_client,
        push_client,
        keys: Arc::new(keys),
        wakers: Default::default(),
    });
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::tls::serve_tls(
        api,
        api_acceptor,
        crate::intake::http::router(ctx.clone()),
        rx.clone(),
    ));
    tasks.spawn(crate::tls::serve_tls(
        transport,
        transport_acceptor,
        crate::transport::router(ctx.clone()),
        rx.clone(),
    ));
    tasks.spawn(crate::tls::serve_plain(
        admin,
        crate::admin::router(ctx.clone()),
        rx.clone(),
    ));
    for _ in 0..workers {
        tasks.spawn(crate::relay::run(ctx.clone(), JobKind::Relay, rx.clone()));
    }
    for kind in [JobKind::Open, JobKind::Notice, JobKind::Push] {
        tasks.spawn(crate::relay::run(ctx.clone(), kind, rx.clone()));
    }
    tracing::info!(node = %ctx.config.node_name, api = %api_addr, transport = %transport_addr, admin = %admin_addr, "node started");
    Ok(RunningNode {
        ctx,
        api_addr,
        transport_addr,
        admin_addr,
        shutdown,
        tasks,
    })
}
