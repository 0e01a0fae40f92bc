//! The SQLite connections: how each is opened (WAL, `synchronous=FULL`, foreign keys, temporary
//! files in memory, a busy timeout, a statement cache for every statement of the store),
//! statements through that cache, and the writer thread that commits queued writes together
//! (group commit).

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
    // Temporary files in memory. Above all the sub-journal of the savepoint each write of a
    // batch runs in (the writer's group commit rolls back one failed write, not its batch):
    // SQLite keeps it in memory only up to 64 KiB and then creates, writes and deletes a file in
    // /tmp, holding the pages' old contents — about 3 % of the nodes' CPU in the EC profile, and
    // payload bytes in a shared folder. A sub-journal holds at most the pages one write changes.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Room for every statement of the store: each is parsed once per connection.
    conn.set_prepared_statement_cache_capacity(128);
    // The bundled SQLite is built with STAT4, under which a statement that compares a bound
    // value with an indexed column is parsed and planned again whenever that value changes:
    // the job claim (`due_at <= now`) was re-prepared on every call (≈ 3 % of the nodes' CPU).
    // The query planner stability guarantee keeps one plan per statement; there are no STAT4
    // statistics (no ANALYZE) that a value-dependent plan could use anyway.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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

/// A queued write and whether its commit must reach the disk before it is answered.
pub(super) struct Queued {
    pub op: Op,
    pub durable: bool,
}

/// Commits queued writes together. A batch of only non-durable writes (job claims: a lease and
/// an attempt count; `Change::lazy`: a notice job's end) commits without an fsync
/// (`synchronous=NORMAL`): its WAL frames reach the disk with the next durable commit, whose
/// fsync covers every frame before it. Losing them to a power failure loses only leases, which
/// a restart releases anyway, or repeats a notice the partner answers as before; a process
/// crash loses nothing (they are in the OS's cache).
pub(super) fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Queued>) {
    let mut synced = true;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(|q| q.durable);
        if durable != synced {
            let level = if durable { "FULL" } else { "NORMAL" };
            match conn.pragma_update(None, "synchronous", level) {
                Ok(()) => synced = durable,
                Err(e) if durable => {
                    // Not committed rather than answered as durable when it may not be: the
                    // dropped replies tell each caller the write failed.
                    tracing::error!(error = %e, "store: cannot set synchronous=FULL; the batch is not committed");
                    continue;
                }
                Err(e) => tracing::error!(error = %e, "store: cannot set synchronous={level}"),
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
        // Each write of a batch in a savepoint, so that a failed one is undone alone. A batch
        // of one (the common case) needs none — two statements and the savepoint's bookkeeping
        // less: its transaction is rolled back instead.
        let savepoints = batch.len() > 1;
        let mut undo = false;
        let mut replies = Vec::with_capacity(batch.len());
        for Queued { op, .. } in batch {
            if savepoints {
                let _ = exec(&tx, "SAVEPOINT op", []);
            }
            let (ok, reply) = op(&tx);
            if savepoints {
                if !ok {
                    let _ = exec(&tx, "ROLLBACK TO op", []);
                }
                let _ = exec(&tx, "RELEASE op", []);
            } else {
                undo = !ok;
            }
            replies.push(reply);
        }
        let committed = if undo {
            // The one write failed and answers its own error; nothing is to be committed.
            if let Err(e) = tx.rollback() {
                tracing::error!(error = %e, "store rollback failed");
            }
            Commit::Done
        } else {
            match tx.commit() {
                Ok(()) => Commit::Done,
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
                    tracing::error!(error = %e, "store commit failed: disk or size limit full");
                    Commit::Full
                }
                Err(e) => {
                    tracing::error!(error = %e, "store commit failed");
                    Commit::Failed
                }
            }
        };
        for r in replies {
            r(committed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `op` through a writer thread as a batch of its own and returns whether it succeeded.
    fn one_write(tx: &mpsc::SyncSender<Queued>, op: impl FnOnce(&Connection) -> bool + Send + 'static) -> bool {
        let (done, rx) = mpsc::channel();
        let op: Op = Box::new(move |conn| {
            let ok = op(conn);
            let reply: Reply = Box::new(move |c| {
                let _ = done.send(ok && c == Commit::Done);
            });
            (ok, reply)
        });
        tx.send(Queued { op, durable: true }).unwrap();
        rx.recv().unwrap()
    }

    /// Queues a write that reports the `synchronous` level it ran under; `wait`: until its
    /// batch is committed.
    fn level_write(tx: &mpsc::SyncSender<Queued>, durable: bool, wait: bool) -> mpsc::Receiver<i64> {
        let (level_tx, level) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let op: Op = Box::new(move |conn| {
            let l: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
            let _ = level_tx.send(l);
            let reply: Reply = Box::new(move |_| {
                let _ = done_tx.send(());
            });
            (true, reply)
        });
        tx.send(Queued { op, durable }).unwrap();
        if wait {
            done.recv().unwrap();
        }
        level
    }

    /// A batch commits as durably as its most durable write: only non-durable writes (job
    /// claims, lazy changes) without an fsync (`synchronous=NORMAL`, 1), else FULL (2).
    #[test]
    fn a_batch_is_synced_as_its_most_durable_write() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db")).unwrap();
        let (tx, rx) = mpsc::sync_channel(8);
        // Queued before the writer runs: one batch of a non-durable and a durable write.
        let mixed = [level_write(&tx, false, false), level_write(&tx, true, false)];
        let writer = std::thread::spawn(move || writer_loop(conn, rx));
        let mixed: Vec<i64> = mixed.iter().map(|l| l.recv().unwrap()).collect();
        assert_eq!(mixed, [2, 2]);
        assert_eq!(level_write(&tx, false, true).recv().unwrap(), 1);
        assert_eq!(level_write(&tx, false, true).recv().unwrap(), 1);
        assert_eq!(level_write(&tx, true, true).recv().unwrap(), 2);
        drop(tx);
        writer.join().unwrap();
    }

    #[test]
    fn a_failed_write_alone_in_its_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db")).unwrap();
        let temp_store: i64 = conn.query_row("PRAGMA temp_store", [], |r| r.get(0)).unwrap();
        assert_eq!(temp_store, 2, "temporary files (sub-journals) in memory");
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let (tx, rx) = mpsc::sync_channel(8);
        let writer = std::thread::spawn(move || writer_loop(conn, rx));
        let insert = |x: i64, ok: bool| move |c: &Connection| c.execute("INSERT INTO t VALUES (?1)", [x]).is_ok() && ok;
        assert!(one_write(&tx, insert(1, true)));
        // Written, then failed: its row must not be committed (no savepoint: the transaction is
        // rolled back).
        assert!(!one_write(&tx, insert(2, false)));
        assert!(one_write(&tx, insert(3, true)));
        drop(tx);
        writer.join().unwrap();
        let check = open(&dir.path().join("t.db")).unwrap();
        let mut rows = check.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let xs: Vec<i64> = rows.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(xs, [1, 3]);
    }
}
