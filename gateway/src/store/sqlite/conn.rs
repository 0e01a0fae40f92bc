//! The SQLite connections: how each is opened (WAL, `synchronous=FULL`, foreign keys, a busy
//! timeout, a statement cache for every statement of the store) and writes through that cache.

use std::path::Path;
use std::time::Duration;

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
