//! PostgreSQL store (tokio-postgres over a deadpool pool, TLS through postgres-openssl), for a
//! node whose state lives in a shared, replicated database instead of a file.
//!
//! Every constraint of `store/mod.rs` holds: each method is one transaction, committed with
//! `synchronous_commit` as the server has it (on, the default) before it returns; idempotency
//! and duplicate elimination are unique indexes, so two writers racing with the same
//! submission get the same answers as SQLite gives one after the other; jobs are claimed with
//! `FOR UPDATE SKIP LOCKED` and a lease naming its holder; a process releases at start only
//! the leases it held itself (its holder name), others expire.
//!
//! The schema lives in its own PostgreSQL schema (`[store] schema`), created and migrated at
//! open inside one transaction under an advisory lock, so processes starting at once migrate
//! once; a schema newer than this binary knows is refused. Every connection runs with a
//! statement and a lock timeout, so one stuck transaction cannot stall intake; a database that
//! is away answers `Busy` (503 overloaded), never an acknowledgement without a commit.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::*;

mod audit;
mod cached;
mod listen;
mod ops;
mod outbox;
mod processes;

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i32 = 7;

/// Migrations by version: migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    TABLES,
    listen::MIGRATION,
    audit::MIGRATION,
    processes::PROCESSES,
    processes::LEADERS,
    processes::WAKE_SWITCH,
    outbox::MIGRATION,
];

/// Version 1: the tables.
const TABLES: &str = r#"
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    client TEXT,
    xoev_uuid TEXT NOT NULL,
    digest TEXT NOT NULL,
    message_type TEXT NOT NULL,
    author TEXT NOT NULL,
    reader TEXT NOT NULL,
    partner_node TEXT NOT NULL,
    remote_id TEXT,
    error_code TEXT,
    error_detail TEXT,
    deadline BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_client_uuid ON messages(client, xoev_uuid) WHERE direction = 'outbound';
CREATE UNIQUE INDEX messages_remote ON messages(partner_node, remote_id) WHERE direction = 'inbound';
CREATE INDEX messages_inbox ON messages(reader, status) WHERE direction = 'inbound';
CREATE INDEX messages_status ON messages(status, updated_at);
CREATE INDEX messages_created ON messages(created_at);
CREATE TABLE blobs (
    message_id TEXT NOT NULL REFERENCES messages(id),
    kind TEXT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (message_id, kind)
);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id),
    at BIGINT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX events_message ON events(message_id, seq);
CREATE INDEX events_status_at ON events(status, at);
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    due_at BIGINT NOT NULL,
    lease_until BIGINT,
    leased_by TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX jobs_due ON jobs(kind, due_at);
CREATE INDEX jobs_message ON jobs(message_id);
"#;

/// How long one statement may run, and how long it may wait for a lock.
const STATEMENT_TIMEOUT_MS: u64 = 30_000;
const LOCK_TIMEOUT_MS: u64 = 5_000;
/// How long a caller waits for a pooled connection before the store answers `Busy`.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user[:password]@host:port/db[?sslmode=…]`.
    pub url: String,
    /// The PostgreSQL schema holding this node's tables (an SQL identifier).
    pub schema: String,
    pub pool_size: usize,
    /// A password from elsewhere than the URL (`PGPASSWORD`, a password file).
    pub password: Option<String>,
    /// Who holds this process's leases: stable across restarts of the same process slot.
    pub holder: String,
    /// Largest size of the schema's tables in MiB (0: no limit).
    pub max_size_mb: u64,
    /// The CA certificates (PEM) the database server's TLS certificate must chain to; none:
    /// the system's roots. TLS is used as the URL's `sslmode` says (`prefer` by default,
    /// `require`, `disable`), and when it is used, the server's certificate is verified.
    pub ca: Option<std::path::PathBuf>,
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    holder: String,
    /// This process's id among all that share the schema (new at every open): notifications
    /// carry it so a process does not wake itself twice.
    instance: String,
    /// How to open the listening connection, and its channel (the schema's name).
    listen: (tokio_postgres::Config, postgres_openssl::MakeTlsConnector, String),
    /// Wake-ups from other processes, once [`Store::wakeups`] started listening.
    wake: std::sync::OnceLock<tokio::sync::broadcast::Sender<JobKind>>,
    /// New work is refused past this many bytes (0: no limit); see `SOFT_SHARE` in sqlite.rs.
    soft_bytes: i64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// A URL with its password (in the user part or a `password=` parameter) replaced, for
/// messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Whether `s` is a plain SQL identifier (the schema name is spliced into SQL).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// Maps a database error: the database away, a timeout or a lock conflict is `Busy` (the
/// caller answers 503 and retries); a full disk is `Full`; everything else `Failed`.
fn store_error(e: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::PROGRAM_LIMIT_EXCEEDED => StoreError::Full,
        Some(c)
            if *c == SqlState::QUERY_CANCELED
                || *c == SqlState::LOCK_NOT_AVAILABLE
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08") =>
        {
            StoreError::Busy
        }
        Some(_) => failed(e),
        // No SQLSTATE: the connection itself failed (closed, reset, unreachable).
        None => StoreError::Busy,
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => store_error(e),
        _ => StoreError::Busy,
    }
}

fn tls(ca: Option<&std::path::Path>) -> Result<postgres_openssl::MakeTlsConnector, StoreError> {
    let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).map_err(failed)?;
    builder
        .set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
        .map_err(failed)?;
    if let Some(ca) = ca {
        builder
            .set_ca_file(ca)
            .map_err(|e| StoreError::Failed(format!("store CA {}: {e}", ca.display())))?;
    }
    Ok(postgres_openssl::MakeTlsConnector::new(builder.build()))
}

impl PgStore {
    /// Connects, migrates the schema (once, under an advisory lock) and returns the store. Every
    /// error names the URL without its password.
    pub async fn open(settings: &PgSettings) -> Result<PgStore, StoreError> {
        let where_ = redact(&settings.url);
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let (config, tls) = pg_config(settings, &instance)?;
        let (pool, mut client) = connect(settings, config.clone(), tls.clone()).await?;
        migrate(&mut client, &settings.schema)
            .await
            .map_err(|e| StoreError::Failed(format!("store {where_}: {e}")))?;
        Ok(PgStore {
            pool,
            holder: settings.holder.clone(),
            instance,
            listen: (config, tls, settings.schema.clone()),
            wake: std::sync::OnceLock::new(),
            soft_bytes: (settings.max_size_mb as f64 * 1024.0 * 1024.0 * 0.9) as i64,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// Drops these schemas and everything in them (tests and tools that clean up after
/// themselves). Blocking, from a thread of its own, so it works inside a runtime and in `Drop`.
pub fn drop_schemas(url: &str, schemas: &[String]) -> Result<(), String> {
    let (url, schemas) = (url.to_owned(), schemas.to_vec());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tls(None).map_err(|e| e.to_string())?)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            for s in schemas.iter().filter(|s| is_identifier(s)) {
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| "the cleanup thread panicked".to_owned())?
}

/// The connection settings of `settings` for the process `instance`: every connection runs
/// in the node's schema with the statement and lock timeouts, and names its instance (which
/// the job trigger puts into its notifications).
fn pg_config(
    settings: &PgSettings,
    instance: &str,
) -> Result<(tokio_postgres::Config, postgres_openssl::MakeTlsConnector), StoreError> {
    let where_ = redact(&settings.url);
    if !is_identifier(&settings.schema) {
        return Err(StoreError::Failed(format!(
            "store schema {:?} is not a plain SQL identifier",
            settings.schema
        )));
    }
    let mut config: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|e| StoreError::Failed(format!("store URL {where_}: {e}")))?;
    if config.get_password().is_none()
        && let Some(p) = &settings.password
    {
        config.password(p.as_str());
    }
    config.options(format!(
        "-c search_path={} -c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS} \
         -c poststelle.instance={instance}",
        settings.schema
    ));
    config.application_name("poststelle");
    config.connect_timeout(POOL_WAIT);
    Ok((config, tls(settings.ca.as_deref())?))
}

/// A pool and its first connection (which proves the database answers).
async fn connect(
    settings: &PgSettings,
    config: tokio_postgres::Config,
    tls: postgres_openssl::MakeTlsConnector,
) -> Result<(Pool, deadpool_postgres::Object), StoreError> {
    let where_ = redact(&settings.url);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .build()
        .map_err(|e| StoreError::Failed(format!("store {where_}: {e}")))?;
    let client = pool.get().await.map_err(|e| {
        let reason = match e {
            deadpool_postgres::PoolError::Backend(e) => e.to_string(),
            other => other.to_string(),
        };
        StoreError::Failed(format!("cannot connect to the store {where_}: {reason}"))
    })?;
    Ok((pool, client))
}

/// The version of the schema `settings` names (0: not created yet), read without changing
/// anything (`poststelle check-config`).
pub async fn schema_version(settings: &PgSettings) -> Result<i32, StoreError> {
    let (config, tls) = pg_config(settings, "check")?;
    let (_, client) = connect(settings, config, tls).await?;
    let schema = &settings.schema;
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'schema_version')",
            &[schema],
        )
        .await
        .map_err(store_error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version"),
            &[],
        )
        .await
        .map_err(store_error)?;
    Ok(row.get(0))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction under an advisory lock.
async fn migrate(client: &mut deadpool_postgres::Object, schema: &str) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("poststelle:{schema}")],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (version INTEGER NOT NULL);"
    ))
    .await
    .map_err(|e| e.to_string())?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version"),
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(format!(
            "schema {schema} is at version {current}, newer than this binary knows ({SCHEMA_VERSION}); \
             run a newer poststelle"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_version(version) VALUES ($1)"),
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())
}
