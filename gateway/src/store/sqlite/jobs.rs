//! Claiming jobs on SQLite ([`Store::claim`], [`Store::claim_more`]): one writer, so a claim
//! needs no locks; its lease is written in the writer's batch without an fsync of its own.

use super::*;

/// Leases up to `limit` due jobs of `kind`, the oldest first, whose messages match `filter` (a
/// condition on `m` whose parameters, from `?3` on, are `values`).
pub(super) fn lease_due(
    conn: &Connection,
    kind: JobKind,
    lease: Duration,
    filter: &str,
    values: Vec<rusqlite::types::Value>,
    limit: usize,
) -> rusqlite::Result<Vec<Job>> {
    let now = now_millis();
    let sql = format!(
        "SELECT j.id, j.message_id, j.attempts, m.partner_node, m.deadline, m.created_at
         FROM jobs j JOIN messages m ON m.id = j.message_id
         WHERE j.kind = ?1 AND j.due_at <= ?2 AND (j.lease_until IS NULL OR j.lease_until < ?2) {filter}
         ORDER BY j.due_at, j.id LIMIT {limit}"
    );
    let mut all: Vec<rusqlite::types::Value> = vec![kind.as_str().to_owned().into(), now.into()];
    all.extend(values);
    let jobs = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(all), |r| {
            Ok(Job {
                id: r.get(0)?,
                kind,
                message_id: r.get(1)?,
                attempts: r.get::<_, u32>(2)? + 1,
                partner_node: r.get(3)?,
                deadline: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<Job>>>()?;
    for job in &jobs {
        exec(
            conn,
            "UPDATE jobs SET lease_until = ?1, attempts = attempts + 1 WHERE id = ?2",
            params![now + lease.as_millis() as i64, job.id],
        )?;
    }
    Ok(jobs)
}
