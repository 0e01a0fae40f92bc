//! The status-event outbox on PostgreSQL ([`Store::status_outbox`], migration 7): a trigger on
//! the events table, enabled while the outbox is on, writes the rows in the transaction of the
//! transition; the node's processes claim disjoint batches with `FOR UPDATE SKIP LOCKED`.

use super::*;

/// Version 7: the outbox table and its trigger (created disabled).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE status_outbox (
    seq BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    leased_by TEXT
);
CREATE FUNCTION events_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO status_outbox(seq, message_id, status, at) VALUES (NEW.seq, NEW.message_id, NEW.status, NEW.at);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_outbox AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_outbox();
ALTER TABLE events DISABLE TRIGGER events_outbox;
"#;

/// The database's clock in milliseconds: the node's processes may run on machines whose clocks
/// differ.
const DB_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

impl PgStore {
    pub(super) async fn switch_outbox(&self, on: bool) -> Result<(), StoreError> {
        let client = self.client().await?;
        let enabled: bool = client
            .query_one(
                "SELECT tgenabled <> 'D' FROM pg_trigger WHERE tgrelid = 'events'::regclass AND tgname = 'events_outbox'",
                &[],
            )
            .await
            .map_err(store_error)?
            .get(0);
        // Altering the table waits for the transactions writing it: only when it changes.
        let sql = match (on, enabled) {
            (true, false) => "ALTER TABLE events ENABLE TRIGGER events_outbox",
            (false, true) => "ALTER TABLE events DISABLE TRIGGER events_outbox; DELETE FROM status_outbox",
            _ => return Ok(()),
        };
        client.batch_execute(sql).await.map_err(store_error)
    }

    pub(super) async fn claim_outbox(
        &self,
        holder: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "UPDATE status_outbox SET lease_until = {DB_NOW} + $1, leased_by = $2
             WHERE seq IN (SELECT seq FROM status_outbox WHERE lease_until < {DB_NOW}
                           ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING seq, message_id, status, at"
        );
        let rows = cached::query(&client, &sql, &[&(lease.as_millis() as i64), &holder, &(limit as i64)])
            .await
            .map_err(store_error)?;
        let mut events: Vec<OutboxEvent> = rows
            .iter()
            .filter_map(|r| {
                Some(OutboxEvent {
                    seq: r.get(0),
                    message_id: r.get(1),
                    status: Status::parse(r.get(2))?,
                    at: r.get(3),
                })
            })
            .collect();
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    pub(super) async fn outbox_delete(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let client = self.client().await?;
        cached::execute(&client, "DELETE FROM status_outbox WHERE seq = ANY($1)", &[&seqs])
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
