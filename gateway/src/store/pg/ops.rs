//! The `Store` methods on PostgreSQL: each one transaction (or one statement), with the
//! same semantics as `sqlite.rs`, statement by statement.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::*;

fn row_to_message(r: &Row) -> Message {
    let direction: String = r.get(1);
    let status: String = r.get(2);
    Message {
        id: r.get(0),
        direction: Direction::from_column(&direction),
        status: Status::parse(&status).unwrap_or(Status::Failed),
        client: r.get(3),
        xoev_uuid: r.get(4),
        digest: r.get(5),
        message_type: r.get(6),
        author: r.get(7),
        reader: r.get(8),
        partner_node: r.get(9),
        remote_id: r.get(10),
        error_code: r.get(11),
        error_detail: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
    }
}

/// Whether a lookup value cannot be in the database at all: PostgreSQL text holds no NUL, and a
/// query with one fails instead of finding nothing. Such a lookup finds nothing, as on SQLite.
fn unstorable(values: &[&str]) -> bool {
    values.iter().any(|v| v.contains('\0'))
}

async fn insert_event(
    c: &impl GenericClient,
    id: &str,
    at: Millis,
    status: Status,
    detail: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    cached::execute(
        c,
        "INSERT INTO events(message_id, at, status, detail) VALUES ($1, $2, $3, $4)",
        &[&id, &at, &status.as_str(), &detail],
    )
    .await?;
    Ok(())
}

async fn insert_job(c: &impl GenericClient, id: &str, kind: JobKind, due: Millis) -> Result<(), tokio_postgres::Error> {
    cached::execute(
        c,
        "INSERT INTO jobs(kind, message_id, due_at) VALUES ($1, $2, $3)",
        &[&kind.as_str(), &id, &due],
    )
    .await?;
    Ok(())
}

async fn put_blob(c: &impl GenericClient, id: &str, kind: Blob, data: &[u8]) -> Result<(), tokio_postgres::Error> {
    cached::execute(
        c,
        "INSERT INTO blobs(message_id, kind, data) VALUES ($1, $2, $3)
         ON CONFLICT (message_id, kind) DO UPDATE SET data = excluded.data",
        &[&id, &blob_name(kind), &data],
    )
    .await?;
    Ok(())
}

/// Whether `incoming` more bytes of new work could take the schema past `soft` bytes once every
/// message in flight has grown (as `sqlite::over_soft_limit`, over the tables' sizes).
async fn over_soft_limit(c: &impl GenericClient, soft: i64, incoming: usize) -> Result<bool, tokio_postgres::Error> {
    if soft == 0 {
        return Ok(false);
    }
    let r = cached::query_one(c,
            "SELECT
               (SELECT COALESCE(SUM(pg_total_relation_size(t.oid)), 0)::BIGINT FROM pg_class t
                  JOIN pg_namespace n ON n.oid = t.relnamespace
                  WHERE n.nspname = current_schema() AND t.relkind = 'r'),
               (SELECT COUNT(DISTINCT m.id)::BIGINT FROM messages m JOIN blobs b ON b.message_id = m.id
                  AND b.kind IN ('payload', 'envelope') WHERE m.status NOT IN ('delivered', 'rejected', 'refused', 'cancelled', 'failed')),
               (SELECT COALESCE(SUM(octet_length(b.data)), 0)::BIGINT FROM messages m JOIN blobs b ON b.message_id = m.id
                  AND b.kind IN ('payload', 'envelope') WHERE m.status NOT IN ('delivered', 'rejected', 'refused', 'cancelled', 'failed'))",
            &[],
        )
        .await?;
    let (size, n, bytes): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    let reserve = bytes * 2 + n * 32 * 1024;
    let incoming = incoming as i64 * 3 + 32 * 1024;
    Ok(size + reserve + incoming > soft)
}

/// Runs `f` in one transaction and commits it; any error rolls it back.
/// Messages per retention transaction.
const PURGE_BATCH: i64 = if cfg!(test) { 2 } else { 500 };
/// The blob kinds that retention purges first (the timeline and receipts stay longer).
const PAYLOADS: &str = "('payload', 'envelope', 'xta-metadata', 'attachments')";

macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client.transaction().await.map_err(store_error)?;
        let result = async { $body }.await;
        match result {
            Ok(v) => {
                $tx.commit().await.map_err(store_error)?;
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }};
}

#[async_trait]
impl Store for PgStore {
    async fn accept(&self, m: NewOutbound) -> Result<AcceptOutcome, StoreError> {
        let soft = self.soft_bytes;
        transaction!(self, |tx| {
            // The growth factor counts the envelope in, sealed now or later.
            if over_soft_limit(&tx, soft, m.payload.len()).await.map_err(store_error)? {
                return Err(StoreError::Full);
            }
            let (id, now, status) = m.start(|| uuid::Uuid::now_v7().to_string());
            // A unique index decides a race between two writers: the loser inserts nothing and
            // reads the winner's row below.
            let inserted = cached::execute(
                &tx,
                "INSERT INTO messages(id, direction, status, client, xoev_uuid, digest, message_type, author,
                        reader, partner_node, deadline, created_at, updated_at)
                     VALUES ($1, 'outbound', $11, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                     ON CONFLICT DO NOTHING",
                &[
                    &id,
                    &m.client,
                    &m.xoev_uuid,
                    &m.digest,
                    &m.message_type,
                    &m.author,
                    &m.reader,
                    &m.partner_node,
                    &m.deadline,
                    &now,
                    &status.as_str(),
                ],
            )
            .await
            .map_err(store_error)?;
            if inserted == 0 {
                let existing = cached::query_opt(
                    &tx,
                    "SELECT id, digest FROM messages WHERE direction = 'outbound' AND client = $1 AND xoev_uuid = $2",
                    &[&m.client, &m.xoev_uuid],
                )
                .await
                .map_err(store_error)?;
                return Ok(match existing {
                    Some(r) => {
                        let (eid, digest): (String, String) = (r.get(0), r.get(1));
                        if digest == m.digest && m.id.as_ref().is_none_or(|wanted| wanted == &eid) {
                            AcceptOutcome::Existing(eid)
                        } else {
                            AcceptOutcome::Conflict(eid)
                        }
                    }
                    // The chosen id is another message's.
                    None => AcceptOutcome::Conflict(id),
                });
            }
            put_blob(&tx, &id, Blob::Payload, &m.payload)
                .await
                .map_err(store_error)?;
            for (blob, bytes) in &m.keep {
                put_blob(&tx, &id, *blob, bytes).await.map_err(store_error)?;
            }
            insert_event(&tx, &id, now, Status::Accepted, None)
                .await
                .map_err(store_error)?;
            if let Some(sealed) = &m.sealed {
                put_blob(&tx, &id, Blob::Envelope, &sealed.envelope)
                    .await
                    .map_err(store_error)?;
                insert_event(&tx, &id, now, Status::Sealed, None)
                    .await
                    .map_err(store_error)?;
            }
            insert_job(&tx, &id, JobKind::Relay, now).await.map_err(store_error)?;
            Ok(AcceptOutcome::Created(id))
        })
    }

    async fn receive(&self, m: NewInbound) -> Result<ReceiveOutcome, StoreError> {
        let soft = self.soft_bytes;
        transaction!(self, |tx| {
            if over_soft_limit(&tx, soft, m.envelope.len())
                .await
                .map_err(store_error)?
            {
                return Err(StoreError::Full);
            }
            let id = uuid::Uuid::now_v7().to_string();
            let now = now_millis();
            let inserted = cached::execute(
                &tx,
                "INSERT INTO messages(id, direction, status, xoev_uuid, digest, message_type, author, reader,
                        partner_node, remote_id, created_at, updated_at)
                     VALUES ($1, 'inbound', 'received', $2, $3, $4, $5, $6, $7, $8, $9, $9)
                     ON CONFLICT DO NOTHING",
                &[
                    &id,
                    &m.xoev_uuid,
                    &m.digest,
                    &m.message_type,
                    &m.author,
                    &m.reader,
                    &m.sender_node,
                    &m.remote_id,
                    &now,
                ],
            )
            .await
            .map_err(store_error)?;
            if inserted == 0 {
                let r = cached::query_one(
                    &tx,
                    "SELECT m.digest, b.data, m.id FROM messages m
                         LEFT JOIN blobs b ON b.message_id = m.id AND b.kind = 'receipt'
                         WHERE m.direction = 'inbound' AND m.partner_node = $1 AND m.remote_id = $2",
                    &[&m.sender_node, &m.remote_id],
                )
                .await
                .map_err(store_error)?;
                let (digest, receipt): (String, Option<Vec<u8>>) = (r.get(0), r.get(1));
                return Ok(if digest == m.digest {
                    ReceiveOutcome::Duplicate {
                        id: r.get(2),
                        receipt: receipt.unwrap_or_default(),
                    }
                } else {
                    ReceiveOutcome::Conflict
                });
            }
            put_blob(&tx, &id, Blob::Envelope, &m.envelope)
                .await
                .map_err(store_error)?;
            put_blob(&tx, &id, Blob::Receipt, &m.receipt)
                .await
                .map_err(store_error)?;
            insert_event(&tx, &id, now, Status::Received, None)
                .await
                .map_err(store_error)?;
            insert_job(&tx, &id, JobKind::Open, now).await.map_err(store_error)?;
            Ok(ReceiveOutcome::Created(id))
        })
    }

    async fn claim(&self, kind: JobKind, lease: Duration, skip: &[String]) -> Result<Option<Job>, StoreError> {
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        let jobs = self
            .lease_due(kind, lease, "NOT (m.partner_node = ANY($5))", &skip, 1)
            .await?;
        Ok(jobs.into_iter().next())
    }

    async fn claim_more(
        &self,
        kind: JobKind,
        partner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.lease_due(kind, lease, "m.partner_node = $5", &partner, limit)
            .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        cached::execute(
            &client,
            "UPDATE jobs SET lease_until = NULL, leased_by = NULL WHERE leased_by = $1",
            &[&self.holder],
        )
        .await
        .map_err(store_error)
    }

    async fn apply(&self, c: Change) -> Result<bool, StoreError> {
        transaction!(self, |tx| {
            if let Some(job) = c.finish_job {
                cached::execute(&tx, "DELETE FROM jobs WHERE id = $1", &[&job])
                    .await
                    .map_err(store_error)?;
            }
            // The row lock orders concurrent transitions of one message.
            let status: Option<String> = cached::query_opt(
                &tx,
                "SELECT status FROM messages WHERE id = $1 FOR UPDATE",
                &[&c.message_id],
            )
            .await
            .map_err(store_error)?
            .map(|r| r.get(0));
            let Some(status) = status else { return Ok(false) };
            let current = Status::parse(&status);
            if !c.expect.is_empty() && !current.is_some_and(|s| c.expect.contains(&s)) {
                return Ok(false);
            }
            let now = now_millis();
            if c.unless_leased {
                let leased: bool = cached::query_one(
                    &tx,
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE message_id = $1 AND lease_until >= $2)",
                    &[&c.message_id, &now],
                )
                .await
                .map_err(store_error)?
                .get(0);
                if leased {
                    return Ok(false);
                }
            }
            apply_writes(&tx, &c, now).await.map_err(store_error)?;
            Ok(true)
        })
    }

    async fn retry_later(&self, job_id: i64, due: Millis, error: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        cached::execute(
            &client,
            "UPDATE jobs SET lease_until = NULL, leased_by = NULL, due_at = $1, last_error = $2 WHERE id = $3",
            &[&due, &error, &job_id],
        )
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        if unstorable(&[id]) {
            return Ok(None);
        }
        let client = self.client().await?;
        let row = cached::query_opt(
            &client,
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(store_error)?;
        Ok(row.as_ref().map(row_to_message))
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        if unstorable(&[id]) {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = cached::query(
            &client,
            "SELECT at, status, detail FROM events WHERE message_id = $1 ORDER BY seq",
            &[&id],
        )
        .await
        .map_err(store_error)?;
        Ok(rows
            .iter()
            .map(|r| Event {
                at: r.get(0),
                status: Status::parse(r.get(1)).unwrap_or(Status::Failed),
                detail: r.get(2),
            })
            .collect())
    }

    async fn blob(&self, id: &str, blob: Blob) -> Result<Option<Vec<u8>>, StoreError> {
        if unstorable(&[id]) {
            return Ok(None);
        }
        let client = self.client().await?;
        let row = cached::query_opt(
            &client,
            "SELECT data FROM blobs WHERE message_id = $1 AND kind = $2",
            &[&id, &blob_name(blob)],
        )
        .await
        .map_err(store_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn blobs_of_kind(&self, blob: Blob) -> Result<Vec<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let rows = cached::query(&client, "SELECT data FROM blobs WHERE kind = $1", &[&blob_name(blob)])
            .await
            .map_err(store_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn inbox(&self, authority: &str) -> Result<Vec<Message>, StoreError> {
        if unstorable(&[authority]) {
            return Ok(Vec::new());
        }
        self.messages(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE direction = 'inbound' AND reader = $1 AND status = 'opened' ORDER BY created_at LIMIT 1000"
            ),
            &[&authority],
        )
        .await
    }

    async fn inbound_by_remote_id(&self, reader: &str, remote_id: &str) -> Result<Vec<Message>, StoreError> {
        if unstorable(&[reader, remote_id]) {
            return Ok(Vec::new());
        }
        self.messages(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE direction = 'inbound' AND reader = $1
                 AND remote_id = $2 AND status IN ('opened', 'delivered') LIMIT 10"
            ),
            &[&reader, &remote_id],
        )
        .await
    }

    async fn counts(&self) -> Result<Vec<(Direction, Status, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = cached::query(
            &client,
            "SELECT direction, status, COUNT(*) FROM messages GROUP BY direction, status ORDER BY direction, status",
            &[],
        )
        .await
        .map_err(store_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let d: &str = r.get(0);
                let direction = Direction::from_column(d);
                let n: i64 = r.get(2);
                (direction, Status::parse(r.get(1)).unwrap_or(Status::Failed), n as u64)
            })
            .collect())
    }

    async fn queues(&self) -> Result<Vec<Queue>, StoreError> {
        let client = self.client().await?;
        let rows = cached::query(
            &client,
            "SELECT direction, partner_node, status, COUNT(*), MIN(updated_at) FROM messages
                 WHERE status IN ('accepted', 'sealed', 'sent', 'received', 'opened', 'failed')
                 GROUP BY direction, partner_node, status ORDER BY direction DESC, partner_node, status",
            &[],
        )
        .await
        .map_err(store_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let d: &str = r.get(0);
                let n: i64 = r.get(3);
                Queue {
                    direction: Direction::from_column(d),
                    partner_node: r.get(1),
                    status: Status::parse(r.get(2)).unwrap_or(Status::Failed),
                    depth: n as u64,
                    oldest: r.get(4),
                }
            })
            .collect())
    }

    async fn minutes(&self, since: Millis) -> Result<Vec<Minute>, StoreError> {
        let client = self.client().await?;
        let delivered = "e.status = 'delivered' AND m.direction = 'outbound'";
        let rows = cached::query(
            &client,
            &format!(
                "SELECT e.at / 60000 AS minute,
                       COUNT(*) FILTER (WHERE {delivered}),
                       COUNT(*) FILTER (WHERE e.status = 'failed'),
                       COUNT(*) FILTER (WHERE e.status = 'received' AND m.direction = 'inbound'),
                       AVG(e.at - m.created_at) FILTER (WHERE {delivered})::FLOAT8,
                       MAX(e.at - m.created_at) FILTER (WHERE {delivered})
                     FROM events e JOIN messages m ON m.id = e.message_id
                     WHERE e.status IN ('delivered', 'failed', 'received') AND e.at >= $1
                     GROUP BY minute ORDER BY minute"
            ),
            &[&since],
        )
        .await
        .map_err(store_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let minute: i64 = r.get(0);
                let (d, f, rcv): (i64, i64, i64) = (r.get(1), r.get(2), r.get(3));
                Minute {
                    start: minute * 60_000,
                    delivered: d as u64,
                    failed: f as u64,
                    received: rcv as u64,
                    latency_avg_ms: r.get(4),
                    latency_max_ms: r.get(5),
                }
            })
            .collect())
    }

    async fn list(&self, f: Filter) -> Result<Vec<Message>, StoreError> {
        if unstorable(&[&f.partner_node, &f.message_type, &f.xoev_uuid].map(|o| o.as_deref().unwrap_or_default())) {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if !f.status.is_empty() {
            let list: Vec<String> = f.status.iter().map(|s| format!("'{}'", s.as_str())).collect();
            clauses.push(format!("status IN ({})", list.join(", ")));
        }
        let mut bind = |clause: &str, v: Box<dyn ToSql + Sync + Send>| {
            values.push(v);
            clauses.push(clause.replace('?', &format!("${}", values.len())));
        };
        if let Some(d) = f.direction {
            bind("direction = ?", Box::new(d.as_str()));
        }
        if let Some(p) = f.partner_node {
            bind("partner_node = ?", Box::new(p));
        }
        if let Some(t) = f.message_type {
            bind("message_type = ?", Box::new(t));
        }
        if let Some(u) = f.xoev_uuid {
            bind("xoev_uuid = ?", Box::new(u));
        }
        if let Some(t) = f.since {
            bind("created_at >= ?", Box::new(t));
        }
        if let Some(t) = f.until {
            bind("created_at < ?", Box::new(t));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = if f.limit == 0 { 1000 } else { f.limit };
        let order = if f.newest_first { "DESC" } else { "ASC" };
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
        self.messages(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages {filter} ORDER BY created_at {order}, id {order} LIMIT {limit}"
            ),
            &params,
        )
        .await
    }

    async fn expire(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        transaction!(self, |tx| {
            let rows = cached::query(
                &tx,
                &format!(
                    "SELECT m.id, (SELECT last_error FROM jobs j WHERE j.message_id = m.id ORDER BY j.id LIMIT 1)
                         FROM messages m
                         WHERE m.direction = 'outbound' AND m.status IN {IN_RELAY} AND m.deadline IS NOT NULL
                           AND m.deadline < $1
                           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.message_id = m.id AND j.lease_until >= $1)
                         LIMIT 1000 FOR UPDATE OF m SKIP LOCKED"
                ),
                &[&now],
            )
            .await
            .map_err(store_error)?;
            let mut ids = Vec::with_capacity(rows.len());
            for r in rows {
                let (id, last): (String, Option<String>) = (r.get(0), r.get(1));
                let detail = format!(
                    "retry time-box ended; last error: {}",
                    last.as_deref().unwrap_or("none recorded")
                );
                cached::execute(&tx, "DELETE FROM jobs WHERE message_id = $1", &[&id])
                    .await
                    .map_err(store_error)?;
                cached::execute(
                    &tx,
                    "UPDATE messages SET status = 'failed', error_code = 'retries-exhausted', error_detail = $1,
                        updated_at = $2 WHERE id = $3",
                    &[&detail, &now, &id],
                )
                .await
                .map_err(store_error)?;
                insert_event(&tx, &id, now, Status::Failed, Some(&detail))
                    .await
                    .map_err(store_error)?;
                ids.push(id);
            }
            Ok(ids)
        })
    }

    /// In batches of [`PURGE_BATCH`] messages, each its own short transaction: a retention
    /// sweep over a large backlog never holds many row locks at once, never runs into the
    /// statement timeout, and leaves autovacuum room to reclaim the dead rows between batches.
    /// Messages whose rows another transaction has locked right now (`SKIP LOCKED`) wait for
    /// the next sweep.
    async fn purge(&self, payload_before: Millis, metadata_before: Millis) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        loop {
            let n = transaction!(self, |tx| {
                cached::execute(
                    &tx,
                    &format!(
                        "WITH batch AS (
                            SELECT id FROM messages m WHERE status IN {PURGEABLE} AND updated_at < $1
                            AND EXISTS (SELECT 1 FROM blobs b WHERE b.message_id = m.id AND b.kind IN {PAYLOADS})
                            LIMIT $2 FOR UPDATE SKIP LOCKED)
                         DELETE FROM blobs WHERE kind IN {PAYLOADS} AND message_id IN (SELECT id FROM batch)"
                    ),
                    &[&payload_before, &PURGE_BATCH],
                )
                .await
                .map_err(store_error)
            })?;
            if n == 0 {
                break;
            }
            purged.blobs += n as usize;
        }
        loop {
            let n = transaction!(self, |tx| {
                let ids: Vec<String> = cached::query(
                    &tx,
                    &format!(
                        "SELECT id FROM messages WHERE status IN {PURGEABLE} AND updated_at < $1
                             LIMIT $2 FOR UPDATE SKIP LOCKED"
                    ),
                    &[&metadata_before, &PURGE_BATCH],
                )
                .await
                .map_err(store_error)?
                .iter()
                .map(|r| r.get(0))
                .collect();
                for table in ["blobs", "events", "jobs"] {
                    cached::execute(&tx, &format!("DELETE FROM {table} WHERE message_id = ANY($1)"), &[&ids])
                        .await
                        .map_err(store_error)?;
                }
                cached::execute(&tx, "DELETE FROM messages WHERE id = ANY($1)", &[&ids])
                    .await
                    .map_err(store_error)
            })?;
            if n == 0 {
                break;
            }
            purged.messages += n as usize;
        }
        Ok(purged)
    }

    async fn size(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let r = cached::query_one(
            &client,
            "SELECT COALESCE(SUM(pg_total_relation_size(t.oid)), 0)::BIGINT FROM pg_class t
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 WHERE n.nspname = current_schema() AND t.relkind = 'r'",
            &[],
        )
        .await
        .map_err(store_error)?;
        Ok(r.get::<_, i64>(0) as u64)
    }

    fn keeps_audit(&self) -> bool {
        true
    }

    async fn audit_append(&self, entry: AuditEntry<'_>) -> Result<(), StoreError> {
        self.append_audit(entry).await
    }

    async fn audit_read(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        self.read_audit(after, limit).await
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.audit_chain_head().await
    }

    async fn heartbeat(&self, process: &Process) -> Result<(), StoreError> {
        self.beat(process).await
    }

    async fn processes(&self) -> Result<Vec<Process>, StoreError> {
        self.heartbeats().await
    }

    async fn lead(&self, task: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        self.take_lead(task, holder, lease).await
    }

    async fn status_outbox(&self, on: bool) -> Result<(), StoreError> {
        self.switch_outbox(on).await
    }

    async fn outbox_claim(&self, holder: &str, lease: Duration, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.claim_outbox(holder, lease, limit).await
    }

    async fn outbox_done(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.outbox_delete(seqs).await
    }

    fn wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<JobKind>> {
        // The first receiver exists before the listener starts (it ends when none is left).
        let mut first = None;
        let sender = self.wake.get_or_init(|| {
            let (tx, rx) = tokio::sync::broadcast::channel(64);
            first = Some(rx);
            let (config, tls, channel) = self.listen.clone();
            tokio::spawn(super::listen::listen(
                config,
                tls,
                channel,
                self.instance.clone(),
                tx.clone(),
            ));
            tx
        });
        Some(first.unwrap_or_else(|| sender.subscribe()))
    }
}

impl PgStore {
    /// Leases up to `limit` due jobs of `kind`, the oldest first, whose messages match `filter`
    /// (a condition on `m` with `partners` as `$5`); jobs other processes hold are skipped.
    async fn lease_due(
        &self,
        kind: JobKind,
        lease: Duration,
        filter: &str,
        partners: &(dyn ToSql + Sync),
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let client = self.client().await?;
        let now = now_millis();
        let until = now + lease.as_millis() as i64;
        let sql = format!(
            "WITH next AS (
                SELECT j.id FROM jobs j JOIN messages m ON m.id = j.message_id
                WHERE j.kind = $1 AND j.due_at <= $2 AND (j.lease_until IS NULL OR j.lease_until < $2)
                  AND {filter}
                ORDER BY j.due_at, j.id LIMIT $6
                FOR UPDATE OF j SKIP LOCKED)
             UPDATE jobs j SET lease_until = $3, leased_by = $4, attempts = j.attempts + 1
             FROM next, messages m
             WHERE j.id = next.id AND m.id = j.message_id
             RETURNING j.id, j.message_id, j.attempts, m.partner_node, m.deadline, m.created_at"
        );
        let limit = limit as i64;
        let rows = cached::query(
            &client,
            &sql,
            &[&kind.as_str(), &now, &until, &self.holder, partners, &limit],
        )
        .await
        .map_err(store_error)?;
        let mut jobs: Vec<Job> = rows
            .iter()
            .map(|r| Job {
                id: r.get(0),
                kind,
                message_id: r.get(1),
                attempts: r.get::<_, i32>(2) as u32,
                partner_node: r.get(3),
                deadline: r.get(4),
                created_at: r.get(5),
            })
            .collect();
        // RETURNING keeps no order.
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn messages(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Message>, StoreError> {
        let client = self.client().await?;
        // Not through the statement cache: the filter's shape and limit are part of the text,
        // so every search would leave a prepared statement on the connection for good.
        let rows = client.query(sql, params).await.map_err(store_error)?;
        Ok(rows.iter().map(row_to_message).collect())
    }
}

/// The writes of a change whose expectation held (the same order as SQLite's).
async fn apply_writes(tx: &impl GenericClient, c: &Change, now: Millis) -> Result<(), tokio_postgres::Error> {
    if c.drop_jobs {
        cached::execute(tx, "DELETE FROM jobs WHERE message_id = $1", &[&c.message_id]).await?;
    }
    if c.clear_error {
        cached::execute(
            tx,
            "UPDATE messages SET error_code = NULL, error_detail = NULL WHERE id = $1",
            &[&c.message_id],
        )
        .await?;
    }
    if let Some(d) = c.deadline {
        cached::execute(
            tx,
            "UPDATE messages SET deadline = $1 WHERE id = $2",
            &[&d, &c.message_id],
        )
        .await?;
    }
    for (s, d) in &c.events_before {
        insert_event(tx, &c.message_id, now, *s, d.as_deref()).await?;
    }
    if let Some(s) = c.status {
        cached::execute(
            tx,
            "UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3",
            &[&s.as_str(), &now, &c.message_id],
        )
        .await?;
        insert_event(tx, &c.message_id, now, s, c.detail.as_deref()).await?;
    }
    if let Some((code, detail)) = &c.error {
        cached::execute(
            tx,
            "UPDATE messages SET error_code = $1, error_detail = $2, updated_at = $3 WHERE id = $4",
            &[code, detail, &now, &c.message_id],
        )
        .await?;
    }
    for (kind, data) in &c.blobs {
        put_blob(tx, &c.message_id, *kind, data).await?;
    }
    for (kind, due) in &c.enqueue {
        insert_job(tx, &c.message_id, *kind, *due).await?;
    }
    Ok(())
}
