//! The node's audit log in the database (see `audit.rs`): one hash chain per schema, entries
//! by sequence number beside a one-row head. Appends take a transaction-scoped advisory lock
//! first, so the processes of a node append one after the other and the chain has a single
//! sequence; each append is its own transaction, committed before the action it records is
//! answered.

use super::*;

/// Version 3: the audit chain.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    entry TEXT NOT NULL
);
CREATE TABLE audit_head (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
"#;

impl PgStore {
    pub(super) async fn append_audit(&self, entry: AuditEntry<'_>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        cached::execute(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':audit'))",
            &[],
        )
        .await
        .map_err(store_error)?;
        let head = cached::query_opt(&tx, "SELECT seq, hash FROM audit_head", &[])
            .await
            .map_err(store_error)?
            .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
        let seq = head.as_ref().map_or(0, |(s, _)| *s) + 1;
        let (text, hash) = entry(seq as u64, head.as_ref().map(|(_, h)| h.as_str()));
        cached::execute(&tx, "INSERT INTO audit(seq, entry) VALUES ($1, $2)", &[&seq, &text])
            .await
            .map_err(store_error)?;
        cached::execute(
            &tx,
            "INSERT INTO audit_head(seq, hash) VALUES ($1, $2)
             ON CONFLICT (one) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
            &[&seq, &hash],
        )
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    pub(super) async fn read_audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let client = self.client().await?;
        let rows = cached::query(
            &client,
            "SELECT seq, entry FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(after as i64), &(limit as i64)],
        )
        .await
        .map_err(store_error)?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))).collect())
    }

    pub(super) async fn audit_chain_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let client = self.client().await?;
        let row = cached::query_opt(&client, "SELECT seq, hash FROM audit_head", &[])
            .await
            .map_err(store_error)?;
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
    }
}
