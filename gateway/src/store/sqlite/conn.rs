//! The SQLite connections: how each is opened (WAL, `synchronous=FULL`, foreign keys, a busy
//! timeout, a statement cache for every statement of the store), statements through that
//! cache, and the writer thread that commits queued writes together (group commit).

use std::path::Path;
use std::time::Duration;

use std::sync::mpsc;

use rusqlite::Connection;

/// Opens the database at `path` with the store's settings.
pub(super) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Room for every statement of the store: each is parsed once per connection.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// `conn.execute` through the connection's statement cache (the SQL is parsed once, not on
/// every call).
pub(super) fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the connection's statement cache (rusqlite's own `query_row` parses the
/// SQL on every call).
pub(super) trait CachedRow {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl CachedRow for Connection {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Most writes committed together. Bounded so one commit's latency stays small.
const MAX_BATCH: usize = 128;
/// How a batch's commit went, told to each of its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    Done,
    Full,
    Failed,
}

pub(super) type Reply = Box<dyn FnOnce(Commit) + Send>;
pub(super) type Op = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

pub(super) fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                // Dropping the batch drops each caller's reply channel: they all see a failure.
                tracing::error!(error = %e, "store transaction could not start");
                continue;
            }
        };
        let mut replies = Vec::with_capacity(batch.len());
        for op in batch {
            let _ = exec(&tx, "SAVEPOINT op", []);
            let (ok, reply) = op(&tx);
            if !ok {
                let _ = exec(&tx, "ROLLBACK TO op", []);
            }
            let _ = exec(&tx, "RELEASE op", []);
            replies.push(reply);
        }
        let committed = match tx.commit() {
            Ok(()) => Commit::Done,
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
                tracing::error!(error = %e, "store commit failed: disk or size limit full");
                Commit::Full
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                Commit::Failed
            }
        };
        for r in replies {
            r(committed);
        }
    }
}
