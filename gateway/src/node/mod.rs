//! A running node: the start/stop sequence (the shared context it builds is `crate::ctx`).
//!
//! Start: schemas compile and the store opens before any port is bound; then the three
//! listeners (client API over TLS, partner transport over mutual TLS, admin over plain HTTP)
//! and the workers start. Stop: one watch signal; listeners stop accepting, connections drain,
//! workers finish their current job (a job cut short keeps its lease and is resumed later).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapters::{Registry, SchemaSet};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::ctx::Ctx;
use crate::store::sqlite::SqliteStore;
use crate::store::{JobKind, Store};
use crate::xml::validate::ValidatorPool;

mod amqp;

/// Why a node did not start: what it was doing, and why that failed (every problem at once
/// where there are several, as for keys and adapters).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

fn start_error(e: impl std::fmt::Display) -> StartError {
    StartError(e.to_string())
}

/// Names what failed in front of the cause, as `anyhow`'s context does.
trait Because<T> {
    fn because(self, what: impl FnOnce() -> String) -> Result<T, StartError>;
}

impl<T, E: std::fmt::Display> Because<T> for Result<T, E> {
    fn because(self, what: impl FnOnce() -> String) -> Result<T, StartError> {
        self.map_err(|e| StartError(format!("{}: {e}", what())))
    }
}

/// The folder holding the project's own schemas for this config.
pub fn schema_root(config: &Config) -> Result<std::path::PathBuf, StartError> {
    match &config.schema_root {
        Some(root) => Ok(root.clone()),
        None => crate::embedded::write_schemas(&config.data_dir.join("schemas"))
            .because(|| "cannot write the embedded schemas".into()),
    }
}

/// The adapters a config enables (the built-in demo standard, then every configured adapter
/// directory), with the envelope schema. Fails, naming every problem, if an adapter does not
/// load or compile or a client's `deliver_as` names no adapter with an outbound transform.
pub fn registry(config: &Config) -> Result<(Registry, SchemaSet), StartError> {
    let root = schema_root(config)?;
    let builtin = crate::embedded::write_builtin_adapters(&config.data_dir.join("adapters"))
        .because(|| "cannot write the built-in adapter manifests".into())?;
    let roots = adapters::Roots {
        xoev: config.xoev_root.clone(),
        schemas: Some(root.clone()),
    };
    let (registry, _) = crate::adapter_tools::load_registry(&builtin, &config.adapter_dirs, &roots, false)
        .map_err(|problems| StartError(format!("adapters do not load:\n  {}", problems.join("\n  "))))?;
    for c in &config.clients {
        if let Some(name) = &c.deliver_as
            && registry.get(name).is_none_or(|a| a.transforms().outbound.is_none())
        {
            return Err(StartError(format!(
                "clients {}: deliver_as = {name:?} names no loaded adapter with an outbound transform",
                c.name
            )));
        }
    }
    let envelope = SchemaSet {
        entry: root.join("envelope-1.0").join("envelope.xsd"),
        catalogs: Vec::new(),
    };
    Ok((registry, envelope))
}

/// Takes the exclusive lock on the data folder: two processes on one SQLite store would share
/// its leases. (With a shared store, see [`lock_slot`].)
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    try_lock(&dir.join("poststelle.lock"))?
        .ok_or_else(|| StartError(format!("another node process uses the data folder {}", dir.display())))
}

/// The lock file at `path`, locked exclusively; `None` while another process holds it.
fn try_lock(path: &std::path::Path) -> Result<Option<std::fs::File>, StartError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .because(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e).because(|| format!("cannot lock {}", path.display())),
    }
}

/// With a shared store several processes of a node may run on one machine from one
/// configuration: each takes the first free slot (`poststelle.slot-N.lock` in the data folder,
/// held until it exits, released by the kernel when it dies). The slot names the process's
/// leases (`node@host:FOLDER#N`), so a process restarted after a crash takes its predecessor's slot
/// and frees that one's leases at once, and never those of a sibling that is alive.
fn lock_slot(dir: &std::path::Path) -> Result<(std::fs::File, u32), StartError> {
    for slot in 0..MAX_SLOTS {
        if let Some(file) = try_lock(&dir.join(format!("poststelle.slot-{slot}.lock")))? {
            return Ok((file, slot));
        }
    }
    Err(StartError(format!(
        "{MAX_SLOTS} processes of this node already run from the data folder {}",
        dir.display()
    )))
}

/// The data folder's own id (made once, kept in `poststelle.id`): the slots of two data
/// folders on one host (two containers with the host's name, say) never share a name.
fn folder_id(dir: &std::path::Path) -> Result<String, StartError> {
    let path = dir.join("poststelle.id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let tmp = dir.join(format!("poststelle.id.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &id)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .because(|| format!("cannot write {}", path.display()))?;
    // Two processes starting at once: the file that won the rename is the id.
    Ok(std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .unwrap_or(id))
}

/// Processes of one node per machine (per data folder).
const MAX_SLOTS: u32 = 64;

/// How often a process refreshes its heartbeat row (gone after `store::PROCESS_STALE_MS`).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Keeps this process's heartbeat row fresh (a shared store lists the node's processes).
async fn heartbeat(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let now = crate::store::now_millis();
        let process = ctx.process(now);
        if let Err(e) = ctx.store.heartbeat(&process).await {
            tracing::warn!(error = %e, "heartbeat not recorded");
        }
        // The node's per-partner bound is split over its live processes.
        if let Ok(all) = ctx.store.processes().await {
            let alive = all
                .iter()
                .filter(|p| p.last_seen > now - crate::store::PROCESS_STALE_MS)
                .count();
            ctx.partners.set_processes(alive);
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The certificates the OCSP checker asks about: our node certificate (its answer is stapled),
/// every partner node's and every partner authority's, each with its role's anchors.
pub fn revocation_targets(live: &crate::ctx::Live) -> Vec<crate::revocation::Target> {
    use crate::revocation::{CertRole, Target};
    let (config, keys) = (&live.config, &live.keys);
    let node = |cert: &openssl::x509::X509| Target {
        cert: cert.clone(),
        role: CertRole::Node,
        anchors: vec![config.tls.ca.clone()],
    };
    let mut targets = vec![node(&keys.node.cert)];
    targets.extend(keys.partner_nodes.values().flatten().map(node));
    targets.extend(keys.partner_authorities.values().flatten().map(|cert| Target {
        cert: cert.clone(),
        role: CertRole::Authority,
        anchors: config.security.content_ca.iter().cloned().collect(),
    }));
    targets
}

/// Keeps the OCSP answers about the directory's certificates current (`revocation::Checker`):
/// each certificate is asked about when its answer runs out, the set follows reloads.
async fn revocation_checks(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let Ok(http) = http else { return };
    loop {
        let targets = revocation_targets(&ctx.live());
        let due = ctx.revocation.refresh(&targets, &http).await;
        // At most a second: certificates a reload brings are asked about at once.
        tokio::select! {
            _ = tokio::time::sleep(due.min(Duration::from_secs(1))) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Retention and the retry time-box: every `retention.sweep_seconds`, ended messages' payloads
/// and old metadata are purged and outbound messages past their deadline go to `failed`.
/// Wakes this process's workers for jobs that other processes sharing the store enqueued.
async fn forward_wakeups(
    ctx: Arc<Ctx>,
    mut wakeups: tokio::sync::broadcast::Receiver<JobKind>,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            r = wakeups.recv() => match r {
                Ok(kind) => ctx.wake(kind),
                Err(RecvError::Lagged(_)) => {
                    for kind in JobKind::ALL {
                        ctx.wake(kind);
                    }
                }
                Err(RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn maintenance(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(ctx.config().retention.sweep_seconds);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        // One process of the node sweeps at a time; another takes over when it is gone.
        match ctx.store.lead("maintenance", &ctx.instance, every * 3).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which process sweeps");
                continue;
            }
        }
        let now = crate::store::now_millis();
        match ctx.store.expire(now).await {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(message_id = %id, "retry time-box ended: message failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "deadline sweep failed"),
        }
        let r = &ctx.config().retention;
        let payload_before = now - (r.payload_seconds as i64).saturating_mul(1000);
        let metadata_before = now - (r.metadata_seconds as i64).saturating_mul(1000);
        match ctx.store.purge(payload_before, metadata_before).await {
            Ok(p) if p.blobs + p.messages > 0 => {
                tracing::info!(blobs = p.blobs, messages = p.messages, "retention purge")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
        crate::pipeline::attachments::sweep(&ctx).await;
    }
}

/// A started node.
pub struct RunningNode {
    pub ctx: Arc<Ctx>,
    pub api_addr: SocketAddr,
    pub transport_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    _lock: std::fs::File,
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

/// The configured store: PostgreSQL at `[store] url`, else SQLite in the data folder. (Also
/// for tools and tests that read a stopped node's store.)
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    open_store_as(config, None).await
}

/// The configured store, for the process named `holder` (which names its leases; `None`:
/// `node@host`).
async fn open_store_as(config: &Config, holder: Option<&str>) -> Result<Arc<dyn Store>, StartError> {
    let Some(mut settings) = pg_settings(config)? else {
        let sqlite = SqliteStore::open_with_limit(&config.data_dir, config.store.max_size_mb).map_err(start_error)?;
        return Ok(Arc::new(sqlite));
    };
    if let Some(holder) = holder {
        settings.holder = holder.to_owned();
    }
    let pg = crate::store::pg::PgStore::open(&settings).await.map_err(start_error)?;
    Ok(Arc::new(pg))
}

/// The PostgreSQL settings of a config with `[store] url` (the password from `password_file`
/// or `PGPASSWORD`; the lease holder `node@host`).
pub fn pg_settings(config: &Config) -> Result<Option<crate::store::pg::PgSettings>, StartError> {
    let st = &config.store;
    let Some(url) = &st.url else { return Ok(None) };
    let password = match &st.password_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .because(|| format!("cannot read store.password_file {}", f.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => std::env::var("PGPASSWORD").ok(),
    };
    Ok(Some(crate::store::pg::PgSettings {
        url: url.clone(),
        schema: st.schema.clone(),
        pool_size: st.pool_size,
        password,
        // This node's leases, on this machine: what a restart of this process takes back.
        holder: format!("{}@{}", config.node_name, hostname()),
        max_size_mb: st.max_size_mb,
        ca: st.ca.clone(),
    }))
}

/// A listening socket on `addr`, shared with other processes when `reuse_port`.
fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// This machine's name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// What `start` builds before it binds anything.
struct Prepared {
    ctx: Ctx,
    status_events: Option<Arc<tokio::sync::Notify>>,
    lock: std::fs::File,
}

/// A node's shared context, built from its config and started nowhere: tests drive the
/// routers over it directly (`router(ctx).oneshot(request)`). The data folder's lock is held
/// only while this runs, so use it on a folder no node process serves.
pub async fn context(config: Config) -> Result<Ctx, StartError> {
    Ok(prepare(config).await?.ctx)
}

/// Checks everything and builds the context: the data folder locked, keys and certificates
/// checked, adapters and schemas compiled, the store opened (the previous run's leases
/// released), the TLS acceptors and the clients for partners and push callbacks made.
async fn prepare(config: Config) -> Result<Prepared, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .because(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    // One process per data folder on SQLite; with a shared store, one slot per process.
    let (lock, slot) = if config.store.url.is_some() {
        let (lock, slot) = lock_slot(&config.data_dir)?;
        (lock, Some(slot))
    } else {
        (lock_data_dir(&config.data_dir)?, None)
    };
    for c in &config.clients {
        if let Some(d) = &c.drop_dir {
            d.create().because(|| {
                format!(
                    "cannot create the drop folder {} of client {}",
                    d.root.display(),
                    c.name
                )
            })?;
        }
    }
    let config = Arc::new(config);
    let revocation = Arc::new(crate::revocation::Checker::default());
    let live = crate::reload::build(config.clone(), &revocation)
        .map_err(|errs| StartError(format!("keys and certificates:\n{}", errs.join("\n"))))?;
    let (registry, envelope_schema) = registry(&config)?;
    let mut warm = vec![envelope_schema.clone()];
    warm.extend(registry.adapters().map(|a| a.schema().clone()));
    let validator = ValidatorPool::start(config.relay.validation_threads, config.relay.validation_queue, &warm)
        .map_err(StartError)?;
    // The process's name: its lease holder and heartbeat id.
    let instance = match slot {
        Some(slot) => format!(
            "{}@{}:{}#{slot}",
            config.node_name,
            hostname(),
            folder_id(&config.data_dir)?
        ),
        None => format!("{}@{}", config.node_name, hostname()),
    };
    let store = open_store_as(&config, slot.map(|_| instance.as_str())).await?;
    // A shared store keeps the audit chain of the whole logical node; else it is a file.
    let audit = if store.keeps_audit() {
        crate::audit::AuditLog::in_store(store.clone(), &instance)
    } else {
        crate::audit::AuditLog::open(&config.data_dir.join("audit.log"))
            .because(|| "cannot open the audit log".into())?
    };
    // Committed status changes are counted; with a broker they also become status events.
    // The outbox they wait in is on exactly while a broker is configured.
    store.status_outbox(config.amqp.is_some()).await.map_err(start_error)?;
    let (store, status_events) = crate::intake::events::Evented::wrap(store, config.amqp.is_some());
    // This process holds the data folder's lock (SQLite: every lease in the store is a dead
    // process's) or its slot's (a shared store: the leases of the slot's previous process).
    let released = store.release_leases().await.map_err(start_error)?;
    if released > 0 {
        tracing::info!(jobs = released, "resuming jobs of the previous run");
    }
    let push_client = reqwest::Client::builder()
        .connect_timeout(config.relay.connect_timeout)
        .timeout(config.relay.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .because(|| "the push client".into())?;
    let partners = Arc::new(crate::health::Partners::new(
        config.relay.per_partner_concurrency,
        config.relay.circuit_failures,
        config.relay.circuit_open,
    ));
    let intake_permits = Arc::new(tokio::sync::Semaphore::new(config.server.max_concurrent_intake));
    let ctx = Ctx::new(
        live,
        store,
        registry,
        validator,
        Arc::new(envelope_schema),
        push_client,
        partners,
        intake_permits,
        audit,
        (instance, hostname()),
        revocation,
    );
    Ok(Prepared {
        ctx,
        status_events,
        lock,
    })
}

/// Starts a node: checks everything, then binds, then serves.
pub async fn start(config: Config) -> Result<RunningNode, StartError> {
    let Prepared {
        ctx,
        status_events,
        lock,
    } = prepare(config).await?;
    // With a shared store the node's processes on one machine share its addresses
    // (SO_REUSEPORT: the kernel spreads the connections over them).
    let shared = ctx.config().store.url.is_some();
    let bind = |what: &'static str, addr: SocketAddr| async move {
        listen(addr, shared).because(|| format!("cannot bind the {what} listener {addr}"))
    };
    let api = bind("API", ctx.config().api_addr).await?;
    let transport = bind("transport", ctx.config().transport_addr).await?;
    let admin = bind("admin", ctx.config().admin_addr).await?;
    let local = |l: &TcpListener| l.local_addr().because(|| "the listener's address".into());
    let (api_addr, transport_addr, admin_addr) = (local(&api)?, local(&transport)?, local(&admin)?);

    let ctx = Arc::new(ctx);
    let server = ctx.config().server;
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let tls = |pick: fn(&crate::ctx::Live) -> Arc<openssl::ssl::SslAcceptor>| {
        let ctx = ctx.clone();
        move || pick(&ctx.live())
    };
    tasks.spawn(crate::tls::serve_tls(
        api,
        tls(|l| l.api_tls.clone()),
        crate::intake::http::router(ctx.clone()),
        server,
        rx.clone(),
    ));
    tasks.spawn(crate::tls::serve_tls(
        transport,
        tls(|l| l.transport_tls.clone()),
        crate::partner::receive::router(ctx.clone()),
        server,
        rx.clone(),
    ));
    tasks.spawn(maintenance(ctx.clone(), rx.clone()));
    tasks.spawn(heartbeat(ctx.clone(), rx.clone()));
    tasks.spawn(revocation_checks(ctx.clone(), rx.clone()));
    if let Some(wakeups) = ctx.store.wakeups() {
        tasks.spawn(forward_wakeups(ctx.clone(), wakeups, rx.clone()));
    }
    tasks.spawn(amqp::supervise(ctx.clone(), rx.clone()));
    if let Some(events) = status_events {
        tasks.spawn(crate::intake::events::publish_status_events(
            ctx.clone(),
            events,
            rx.clone(),
        ));
    }
    // Whether the admin listener speaks TLS is decided at start; its certificate reloads.
    match ctx.live().admin_tls.clone() {
        Some(first) => tasks.spawn(crate::tls::serve_tls(
            admin,
            {
                let ctx = ctx.clone();
                move || ctx.live().admin_tls.clone().unwrap_or_else(|| first.clone())
            },
            crate::admin::router(ctx.clone()),
            server,
            rx.clone(),
        )),
        None => tasks.spawn(crate::tls::serve_plain(
            admin,
            crate::admin::router(ctx.clone()),
            rx.clone(),
        )),
    };
    for client in ctx.config().clients.iter().filter(|c| c.drop_dir.is_some()) {
        tasks.spawn(crate::intake::drop::run(ctx.clone(), client.clone(), rx.clone()));
    }
    // Every kind of job gets `relay.workers` workers: opening (decrypt, verify, validate) is as
    // CPU-bound as sealing, and notices and pushes wait on the network like relays do.
    for kind in JobKind::ALL {
        for _ in 0..ctx.config().relay.workers {
            tasks.spawn(crate::pipeline::worker::run(ctx.clone(), kind, rx.clone()));
        }
    }
    tracing::info!(node = %ctx.config().node_name, api = %api_addr, transport = %transport_addr, admin = %admin_addr, "node started");
    Ok(RunningNode {
        ctx,
        api_addr,
        transport_addr,
        admin_addr,
        shutdown,
        tasks,
        _lock: lock,
    })
}
