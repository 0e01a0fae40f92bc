//! The status-event outbox on SQLite ([`Store::status_outbox`]): a trigger on the events table
//! writes the rows while it exists; one process uses the store, so claiming needs no locks.

use super::*;

/// Present while the outbox is on.
const TRIGGER: &str = "CREATE TRIGGER IF NOT EXISTS events_outbox AFTER INSERT ON events BEGIN
    INSERT INTO status_outbox(seq, message_id, status, at) VALUES (NEW.seq, NEW.message_id, NEW.status, NEW.at);
END";

impl SqliteStore {
    pub(super) async fn switch_outbox(&self, on: bool) -> Result<(), StoreError> {
        self.write(move |conn| match on {
            true => conn.execute_batch(TRIGGER),
            false => conn.execute_batch("DROP TRIGGER IF EXISTS events_outbox; DELETE FROM status_outbox"),
        })
        .await
    }

    pub(super) async fn claim_outbox(&self, lease: Duration, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        let now = now_millis();
        let until = now + lease.as_millis() as i64;
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE status_outbox SET lease_until = ?1
                 WHERE seq IN (SELECT seq FROM status_outbox WHERE lease_until < ?2 ORDER BY seq LIMIT ?3)
                 RETURNING seq, message_id, status, at",
            )?;
            let rows = stmt.query_map(params![until, now, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                ))
            })?;
            let mut events = Vec::new();
            for row in rows {
                let (seq, message_id, status, at) = row?;
                if let Some(status) = Status::parse(&status) {
                    events.push(OutboxEvent {
                        seq,
                        message_id,
                        status,
                        at,
                    });
                }
            }
            events.sort_by_key(|e| e.seq);
            Ok(events)
        })
        .await
    }

    pub(super) async fn outbox_delete(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let seqs = seqs.to_vec();
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM status_outbox WHERE seq = ?1")?;
            for seq in seqs {
                stmt.execute([seq])?;
            }
            Ok(())
        })
        .await
    }
}
