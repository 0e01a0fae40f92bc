//! SQLite store (rusqlite, bundled): WAL, `synchronous=FULL`, and group commit.
//!
//! All writes go through one writer thread. It takes the first waiting write, drains up to
//! [`MAX_BATCH`] more that are already queued, runs each in its own savepoint inside one
//! transaction (a batch of one needs none), commits once (one fsync for the batch) and only then
//! answers each caller. A write that fails rolls back its own savepoint (alone: the transaction)
//! and fails alone. Reads use a separate connection, which WAL lets run beside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::*;

mod conn;
mod jobs;
mod outbox;

use conn::{CachedRow, Commit, Op, Queued, Reply, exec, open, writer_loop};
use jobs::lease_due;

/// Writes waiting for the writer thread; when full, callers get `Busy` (→ 503 overloaded).
const WRITE_QUEUE: usize = 4096;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
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
    deadline INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_uuid ON messages(client, xoev_uuid) WHERE direction = 'outbound';
CREATE UNIQUE INDEX IF NOT EXISTS messages_remote ON messages(partner_node, remote_id) WHERE direction = 'inbound';
CREATE INDEX IF NOT EXISTS messages_inbox ON messages(reader, status) WHERE direction = 'inbound';
CREATE INDEX IF NOT EXISTS messages_status ON messages(status, updated_at);
CREATE INDEX IF NOT EXISTS messages_created ON messages(created_at);
CREATE TABLE IF NOT EXISTS blobs (
    message_id TEXT NOT NULL REFERENCES messages(id),
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (message_id, kind)
);
CREATE TABLE IF NOT EXISTS events (
    message_id TEXT NOT NULL REFERENCES messages(id),
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_message ON events(message_id, seq);
CREATE INDEX IF NOT EXISTS events_status_at ON events(status, at);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    due_at INTEGER NOT NULL,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(kind, due_at);
CREATE INDEX IF NOT EXISTS jobs_message ON jobs(message_id);
CREATE TABLE IF NOT EXISTS status_outbox (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0
);
"#;

/// The SQLite store. Cheap to clone behind an `Arc`.
pub struct SqliteStore {
    writes: mpsc::SyncSender<Queued>,
    reader: Arc<Mutex<Connection>>,
    soft: SoftLimit,
    /// The database file (its WAL beside it).
    path: std::path::PathBuf,
}

/// New work is refused when it would take the store past `bytes` (90 % of the size limit),
/// counting the room every message in flight still needs; `bytes == 0`: no limit.
#[derive(Debug, Clone, Copy, Default)]
struct SoftLimit {
    bytes: i64,
    page_size: i64,
}

/// Share of the size limit new work may fill; the rest is slack for estimates.
const SOFT_SHARE: f64 = 0.9;
/// The room a message still needs as it moves on, as a factor of its size plus a fixed part:
/// sealing adds the envelope (base64, signatures); opening adds the payload; receipts and
/// notices (signed XML, a few KiB each) and timeline events come on top.
const GROWTH_FACTOR: i64 = 2;
const GROWTH_FIXED: i64 = 32 * 1024;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

fn store_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => StoreError::Busy,
        _ => failed(e),
    }
}

/// A marker error: the soft size limit refuses new work.
fn soft_full() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("the store is at its size limit for new work".into()),
    )
}

/// Whether storing `incoming` more bytes of new work could take the store past `soft` bytes
/// once every message still in flight has grown (0: never). The reserve keeps room for work
/// already accepted, so a store at its limit refuses new work but never stalls. Costs one
/// scan of the messages in flight per intake, so only with a size limit.
fn over_soft_limit(conn: &Connection, soft: SoftLimit, incoming: usize) -> rusqlite::Result<bool> {
    if soft.bytes == 0 {
        return Ok(false);
    }
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let (n, bytes): (i64, i64) = conn.query_row(
        "SELECT COUNT(DISTINCT m.id), COALESCE(SUM(LENGTH(b.data)), 0) FROM messages m
         JOIN blobs b ON b.message_id = m.id AND b.kind IN ('payload', 'envelope')
         WHERE m.status NOT IN ('delivered', 'rejected', 'refused', 'cancelled', 'failed')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let reserve = bytes * GROWTH_FACTOR + n * GROWTH_FIXED;
    let incoming = incoming as i64 * (GROWTH_FACTOR + 1) + GROWTH_FIXED;
    Ok((pages - free) * soft.page_size + reserve + incoming > soft.bytes)
}

impl SqliteStore {
    /// Opens (creating if needed) `DIR/poststelle.db` and starts the writer thread.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with_limit(dir, 0)
    }

    /// Like [`open`](Self::open), with the database limited to `max_mb` MiB (0: no limit).
    pub fn open_with_limit(dir: &Path, max_mb: u64) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(failed)?;
        let path = dir.join("poststelle.db");
        let writer = open(&path).map_err(failed)?;
        writer.execute_batch(SCHEMA).map_err(failed)?;
        let mut soft = SoftLimit::default();
        if max_mb > 0 {
            let page: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(failed)?;
            let max_pages = (max_mb as i64 * 1024 * 1024 / page).max(16);
            writer
                .pragma_update(None, "max_page_count", max_pages)
                .map_err(failed)?;
            soft = SoftLimit {
                bytes: (max_pages as f64 * page as f64 * SOFT_SHARE) as i64,
                page_size: page,
            };
        }
        let reader = open(&path).map_err(failed)?;
        let (tx, rx) = mpsc::sync_channel::<Queued>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(failed)?;
        Ok(SqliteStore {
            writes: tx,
            reader: Arc::new(Mutex::new(reader)),
            soft,
            path,
        })
    }

    /// A write, answered once its commit is durable.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.queue(f, true).await
    }

    async fn queue<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        durable: bool,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel::<Result<R, StoreError>>();
        let op: Op = Box::new(move |conn| {
            let r = f(conn);
            let ok = r.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let out = match (committed, r) {
                    (Commit::Done, r) => r.map_err(store_error),
                    (Commit::Full, _) => Err(StoreError::Full),
                    (Commit::Failed, _) => Err(StoreError::Failed("commit failed".into())),
                };
                let _ = tx.send(out);
            });
            (ok, reply)
        });
        self.writes.try_send(Queued { op, durable }).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => StoreError::Busy,
            mpsc::TrySendError::Disconnected(_) => StoreError::Failed("store writer stopped".into()),
        })?;
        rx.await
            .map_err(|_| StoreError::Failed("store writer stopped".into()))?
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| StoreError::Failed("reader poisoned".into()))?;
            f(&conn).map_err(store_error)
        })
        .await
        .map_err(failed)?
    }

    /// A lookup by key (one row, an index probe): on the calling thread when the reader is
    /// free, which spares two thread hand-offs per read; else as [`Self::read`].
    async fn read_point<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let f = match self.reader.try_lock() {
            Ok(conn) => return f(&conn).map_err(store_error),
            Err(std::sync::TryLockError::WouldBlock) => f,
            Err(std::sync::TryLockError::Poisoned(_)) => return Err(StoreError::Failed("reader poisoned".into())),
        };
        self.read(f).await
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn insert_event(conn: &Connection, id: &str, at: Millis, status: Status, detail: Option<&str>) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO events(message_id, at, status, detail) VALUES (?1, ?2, ?3, ?4)",
        params![id, at, status.as_str(), detail],
    )?;
    Ok(())
}

fn insert_job(conn: &Connection, id: &str, kind: JobKind, due: Millis) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO jobs(kind, message_id, due_at) VALUES (?1, ?2, ?3)",
        params![kind.as_str(), id, due],
    )?;
    Ok(())
}

fn put_blob(conn: &Connection, id: &str, kind: Blob, data: &[u8]) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO blobs(message_id, kind, data) VALUES (?1, ?2, ?3)
         ON CONFLICT(message_id, kind) DO UPDATE SET data = excluded.data",
        params![id, blob_name(kind), data],
    )?;
    Ok(())
}

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let direction: String = row.get(1)?;
    let status: String = row.get(2)?;
    Ok(Message {
        id: row.get(0)?,
        direction: Direction::from_column(&direction),
        status: Status::parse(&status).unwrap_or(Status::Failed),
        client: row.get(3)?,
        xoev_uuid: row.get(4)?,
        digest: row.get(5)?,
        message_type: row.get(6)?,
        author: row.get(7)?,
        reader: row.get(8)?,
        partner_node: row.get(9)?,
        remote_id: row.get(10)?,
        error_code: row.get(11)?,
        error_detail: row.get(12)?,
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept(&self, m: NewOutbound) -> Result<AcceptOutcome, StoreError> {
        let soft = self.soft;
        self.write(move |conn| {
            let existing: Option<(String, String)> = conn
                .cached_row(
                    "SELECT id, digest FROM messages WHERE direction = 'outbound' AND client = ?1 AND xoev_uuid = ?2",
                    params![m.client, m.xoev_uuid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, digest)) = existing {
                return Ok(
                    if digest == m.digest && m.id.as_ref().is_none_or(|wanted| wanted == &id) {
                        AcceptOutcome::Existing(id)
                    } else {
                        AcceptOutcome::Conflict(id)
                    },
                );
            }
            if let Some(wanted) = &m.id {
                let taken = conn
                    .cached_row("SELECT 1 FROM messages WHERE id = ?1", params![wanted], |_| Ok(()))
                    .optional()?;
                if taken.is_some() {
                    return Ok(AcceptOutcome::Conflict(wanted.clone()));
                }
            }
            // The growth factor counts the envelope in, sealed now or later.
            if over_soft_limit(conn, soft, m.payload.len())? {
                return Err(soft_full());
            }
            let (id, now, status) = m.start(new_id);
            exec(
                conn,
                "INSERT INTO messages(id, direction, status, client, xoev_uuid, digest, message_type, author, reader,
                    partner_node, deadline, created_at, updated_at)
                 VALUES (?1, 'outbound', ?11, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?9)",
                params![
                    id,
                    m.client,
                    m.xoev_uuid,
                    m.digest,
                    m.message_type,
                    m.author,
                    m.reader,
                    m.partner_node,
                    now,
                    m.deadline,
                    status.as_str()
                ],
            )?;
            put_blob(conn, &id, Blob::Payload, &m.payload)?;
            for (blob, bytes) in &m.keep {
                put_blob(conn, &id, *blob, bytes)?;
            }
            insert_event(conn, &id, now, Status::Accepted, None)?;
            if let Some(sealed) = &m.sealed {
                put_blob(conn, &id, Blob::Envelope, &sealed.envelope)?;
                insert_event(conn, &id, now, Status::Sealed, None)?;
            }
            insert_job(conn, &id, JobKind::Relay, now)?;
            Ok(AcceptOutcome::Created(id))
        })
        .await
    }

    async fn receive(&self, m: NewInbound) -> Result<ReceiveOutcome, StoreError> {
        let soft = self.soft;
        self.write(move |conn| {
            let existing: Option<(String, String)> = conn
                .cached_row(
                    "SELECT id, digest FROM messages WHERE direction = 'inbound' AND partner_node = ?1 AND remote_id = ?2",
                    params![m.sender_node, m.remote_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, digest)) = existing {
                if digest != m.digest {
                    return Ok(ReceiveOutcome::Conflict);
                }
                let receipt: Vec<u8> = conn.cached_row(
                    "SELECT data FROM blobs WHERE message_id = ?1 AND kind = 'receipt'",
                    params![id],
                    |r| r.get(0),
                )?;
                return Ok(ReceiveOutcome::Duplicate { id, receipt });
            }
            if over_soft_limit(conn, soft, m.envelope.len())? {
                return Err(soft_full());
            }
            let id = new_id();
            let now = now_millis();
            exec(conn,
                "INSERT INTO messages(id, direction, status, xoev_uuid, digest, message_type, author, reader,
                    partner_node, remote_id, created_at, updated_at)
                 VALUES (?1, 'inbound', 'received', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![id, m.xoev_uuid, m.digest, m.message_type, m.author, m.reader, m.sender_node, m.remote_id, now],
            )?;
            put_blob(conn, &id, Blob::Envelope, &m.envelope)?;
            put_blob(conn, &id, Blob::Receipt, &m.receipt)?;
            insert_event(conn, &id, now, Status::Received, None)?;
            insert_job(conn, &id, JobKind::Open, now)?;
            Ok(ReceiveOutcome::Created(id))
        })
        .await
    }

    async fn claim(&self, kind: JobKind, lease: Duration, skip: &[String]) -> Result<Option<Job>, StoreError> {
        let skip = skip.to_vec();
        // Not durable (see `conn::writer_loop`): a lost lease is a released one.
        self.queue(
            move |conn| {
                let placeholders: Vec<String> = (0..skip.len()).map(|i| format!("?{}", i + 3)).collect();
                let skip_clause = if skip.is_empty() {
                    String::new()
                } else {
                    format!("AND m.partner_node NOT IN ({})", placeholders.join(", "))
                };
                let values = skip.into_iter().map(rusqlite::types::Value::from).collect();
                Ok(lease_due(conn, kind, lease, &skip_clause, values, 1)?.pop())
            },
            false,
        )
        .await
    }

    async fn claim_more(
        &self,
        kind: JobKind,
        partner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let partner = rusqlite::types::Value::from(partner.to_owned());
        self.queue(
            move |conn| lease_due(conn, kind, lease, "AND m.partner_node = ?3", vec![partner], limit),
            false,
        )
        .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.write(|conn| {
            let n = exec(
                conn,
                "UPDATE jobs SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn apply(&self, c: Change) -> Result<bool, StoreError> {
        let durable = !c.lazy;
        let change = move |conn: &Connection| {
            if let Some(job) = c.finish_job {
                exec(conn, "DELETE FROM jobs WHERE id = ?1", params![job])?;
            }
            let status: Option<String> = conn
                .cached_row(
                    "SELECT status FROM messages WHERE id = ?1",
                    params![c.message_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(status) = status else { return Ok(false) };
            let current = Status::parse(&status);
            if !c.expect.is_empty() && !current.is_some_and(|s| c.expect.contains(&s)) {
                return Ok(false);
            }
            let now = now_millis();
            if c.unless_leased {
                let leased: bool = conn.cached_row(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE message_id = ?1 AND lease_until >= ?2)",
                    params![c.message_id, now],
                    |r| r.get(0),
                )?;
                if leased {
                    return Ok(false);
                }
            }
            if c.drop_jobs {
                exec(conn, "DELETE FROM jobs WHERE message_id = ?1", params![c.message_id])?;
            }
            if c.clear_error {
                exec(
                    conn,
                    "UPDATE messages SET error_code = NULL, error_detail = NULL WHERE id = ?1",
                    params![c.message_id],
                )?;
            }
            if let Some(d) = c.deadline {
                exec(
                    conn,
                    "UPDATE messages SET deadline = ?1 WHERE id = ?2",
                    params![d, c.message_id],
                )?;
            }
            for (s, d) in &c.events_before {
                insert_event(conn, &c.message_id, now, *s, d.as_deref())?;
            }
            if let Some(s) = c.status {
                exec(
                    conn,
                    "UPDATE messages SET status = ?1, updated_at = ?2 WHERE id = ?3",
                    params![s.as_str(), now, c.message_id],
                )?;
                insert_event(conn, &c.message_id, now, s, c.detail.as_deref())?;
            }
            if let Some((code, detail)) = &c.error {
                exec(
                    conn,
                    "UPDATE messages SET error_code = ?1, error_detail = ?2, updated_at = ?3 WHERE id = ?4",
                    params![code, detail, now, c.message_id],
                )?;
            }
            for (kind, data) in &c.blobs {
                put_blob(conn, &c.message_id, *kind, data)?;
            }
            for (kind, due) in &c.enqueue {
                insert_job(conn, &c.message_id, *kind, *due)?;
            }
            Ok(true)
        };
        self.queue(change, durable).await
    }

    async fn retry_later(&self, job_id: i64, due: Millis, error: &str) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.write(move |conn| {
            exec(
                conn,
                "UPDATE jobs SET lease_until = NULL, due_at = ?1, last_error = ?2 WHERE id = ?3",
                params![due, error, job_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let id = id.to_owned();
        self.read_point(move |conn| {
            conn.cached_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
                params![id],
                row_to_message,
            )
            .optional()
        })
        .await
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut st =
                conn.prepare_cached("SELECT at, status, detail FROM events WHERE message_id = ?1 ORDER BY seq")?;
            let rows = st.query_map(params![id], |r| {
                let s: String = r.get(1)?;
                Ok(Event {
                    at: r.get(0)?,
                    status: Status::parse(&s).unwrap_or(Status::Failed),
                    detail: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn blob(&self, id: &str, blob: Blob) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.read_point(move |conn| {
            conn.cached_row(
                "SELECT data FROM blobs WHERE message_id = ?1 AND kind = ?2",
                params![id, blob_name(blob)],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn blobs_of_kind(&self, blob: Blob) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(move |conn| {
            let mut st = conn.prepare_cached("SELECT data FROM blobs WHERE kind = ?1")?;
            st.query_map(params![blob_name(blob)], |r| r.get(0))?.collect()
        })
        .await
    }

    async fn inbox(&self, authority: &str) -> Result<Vec<Message>, StoreError> {
        let authority = authority.to_owned();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE direction = 'inbound' AND reader = ?1 AND status = 'opened' ORDER BY created_at LIMIT 1000"
            ))?;
            let rows = st.query_map(params![authority], row_to_message)?;
            rows.collect()
        })
        .await
    }

    async fn inbound_by_remote_id(&self, reader: &str, remote_id: &str) -> Result<Vec<Message>, StoreError> {
        let (reader, remote_id) = (reader.to_owned(), remote_id.to_owned());
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE direction = 'inbound' AND reader = ?1
                 AND remote_id = ?2 AND status IN ('opened', 'delivered') LIMIT 10"
            ))?;
            let rows = st.query_map(params![reader, remote_id], row_to_message)?;
            rows.collect()
        })
        .await
    }

    async fn counts(&self) -> Result<Vec<(Direction, Status, u64)>, StoreError> {
        self.read(|conn| {
            let mut st =
                conn.prepare_cached("SELECT direction, status, COUNT(*) FROM messages GROUP BY direction, status")?;
            let rows = st.query_map([], |r| {
                let d: String = r.get(0)?;
                let s: String = r.get(1)?;
                let n: i64 = r.get(2)?;
                Ok((
                    Direction::from_column(&d),
                    Status::parse(&s).unwrap_or(Status::Failed),
                    n as u64,
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.read(|conn| {
            let mut st = conn.prepare_cached(
                "SELECT direction, partner_node, status, COUNT(*), MIN(updated_at) FROM messages
                 WHERE status IN ('accepted', 'sealed', 'sent', 'received', 'opened', 'failed')
                 GROUP BY direction, partner_node, status ORDER BY direction DESC, partner_node, status",
            )?;
            let rows = st.query_map([], |r| {
                let d: String = r.get(0)?;
                let s: String = r.get(2)?;
                let n: i64 = r.get(3)?;
                Ok(Queue {
                    direction: Direction::from_column(&d),
                    partner_node: r.get(1)?,
                    status: Status::parse(&s).unwrap_or(Status::Failed),
                    depth: n as u64,
                    oldest: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn minutes(&self, since: Millis) -> Result<Vec<Minute>, StoreError> {
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT e.at / 60000 AS minute,
                   SUM(e.status = 'delivered' AND m.direction = 'outbound'),
                   SUM(e.status = 'failed'),
                   SUM(e.status = 'received' AND m.direction = 'inbound'),
                   AVG(CASE WHEN e.status = 'delivered' AND m.direction = 'outbound' THEN e.at - m.created_at END),
                   MAX(CASE WHEN e.status = 'delivered' AND m.direction = 'outbound' THEN e.at - m.created_at END)
                 FROM events e JOIN messages m ON m.id = e.message_id
                 WHERE e.status IN ('delivered', 'failed', 'received') AND e.at >= ?1
                 GROUP BY minute ORDER BY minute",
            )?;
            let rows = st.query_map(params![since], |r| {
                let minute: i64 = r.get(0)?;
                let (d, f, rcv): (i64, i64, i64) = (r.get(1)?, r.get(2)?, r.get(3)?);
                Ok(Minute {
                    start: minute * 60_000,
                    delivered: d as u64,
                    failed: f as u64,
                    received: rcv as u64,
                    latency_avg_ms: r.get(4)?,
                    latency_max_ms: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn list(&self, f: Filter) -> Result<Vec<Message>, StoreError> {
        self.read(move |conn| {
            let mut clauses: Vec<String> = Vec::new();
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            if !f.status.is_empty() {
                let list: Vec<String> = f.status.iter().map(|s| format!("'{}'", s.as_str())).collect();
                clauses.push(format!("status IN ({})", list.join(", ")));
            }
            let mut bind = |clause: &str, v: rusqlite::types::Value, values: &mut Vec<rusqlite::types::Value>| {
                values.push(v);
                clauses.push(clause.replace('?', &format!("?{}", values.len())));
            };
            if let Some(d) = f.direction {
                let d = d.as_str();
                bind("direction = ?", d.to_owned().into(), &mut values);
            }
            if let Some(p) = f.partner_node {
                bind("partner_node = ?", p.into(), &mut values);
            }
            if let Some(t) = f.message_type {
                bind("message_type = ?", t.into(), &mut values);
            }
            if let Some(u) = f.xoev_uuid {
                bind("xoev_uuid = ?", u.into(), &mut values);
            }
            if let Some(t) = f.since {
                bind("created_at >= ?", t.into(), &mut values);
            }
            if let Some(t) = f.until {
                bind("created_at < ?", t.into(), &mut values);
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let limit = if f.limit == 0 { 1000 } else { f.limit };
            let order = if f.newest_first { "DESC" } else { "ASC" };
            let mut st = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages {filter} ORDER BY created_at {order}, id {order} LIMIT {limit}"
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(values), row_to_message)?;
            rows.collect()
        })
        .await
    }

    async fn expire(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        self.write(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT m.id, (SELECT last_error FROM jobs j WHERE j.message_id = m.id ORDER BY j.id LIMIT 1)
                 FROM messages m
                 WHERE m.direction = 'outbound' AND m.status IN {IN_RELAY} AND m.deadline IS NOT NULL AND m.deadline < ?1
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.message_id = m.id AND j.lease_until >= ?1)
                 LIMIT 1000"
            ))?;
            let expired: Vec<(String, Option<String>)> = st
                .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (id, last) in &expired {
                let detail = format!(
                    "retry time-box ended; last error: {}",
                    last.as_deref().unwrap_or("none recorded")
                );
                exec(conn, "DELETE FROM jobs WHERE message_id = ?1", params![id])?;
                exec(conn,
                    "UPDATE messages SET status = 'failed', error_code = 'retries-exhausted', error_detail = ?1,
                        updated_at = ?2 WHERE id = ?3",
                    params![detail, now, id],
                )?;
                insert_event(conn, id, now, Status::Failed, Some(&detail))?;
            }
            Ok(expired.into_iter().map(|(id, _)| id).collect())
        })
        .await
    }

    async fn purge(&self, payload_before: Millis, metadata_before: Millis) -> Result<Purged, StoreError> {
        self.write(move |conn| {
            let blobs = exec(conn,
                &format!(
                    "DELETE FROM blobs WHERE kind IN ('payload', 'envelope', 'xta-metadata', 'attachments') AND message_id IN
                     (SELECT id FROM messages WHERE status IN {PURGEABLE} AND updated_at < ?1)"
                ),
                params![payload_before],
            )?;
            let old = format!("SELECT id FROM messages WHERE status IN {PURGEABLE} AND updated_at < ?1");
            exec(conn,
                &format!("DELETE FROM blobs WHERE message_id IN ({old})"),
                params![metadata_before],
            )?;
            exec(conn,
                &format!("DELETE FROM events WHERE message_id IN ({old})"),
                params![metadata_before],
            )?;
            exec(conn,
                &format!("DELETE FROM jobs WHERE message_id IN ({old})"),
                params![metadata_before],
            )?;
            let messages = exec(conn,
                &format!("DELETE FROM messages WHERE id IN ({old})"),
                params![metadata_before],
            )?;
            Ok(Purged { blobs, messages })
        })
        .await
    }

    async fn size(&self) -> Result<u64, StoreError> {
        let wal = self.path.with_extension("db-wal");
        Ok([&self.path, &wal]
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum())
    }

    async fn status_outbox(&self, on: bool) -> Result<(), StoreError> {
        self.switch_outbox(on).await
    }

    async fn outbox_claim(&self, _holder: &str, lease: Duration, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.claim_outbox(lease, limit).await
    }

    async fn outbox_done(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.outbox_delete(seqs).await
    }
}
