//! The node's processes in the database: one heartbeat row per process (migration 4), and
//! the periodic sweeps handed to one process at a time by a lease row per task (migration 5).

use super::*;

/// Version 4: one heartbeat row per process of the node.
pub(super) const PROCESSES: &str = r#"
CREATE TABLE processes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
"#;

/// Version 5: who runs each periodic sweep, until when.
pub(super) const LEADERS: &str = r#"
CREATE TABLE leaders (
    task TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
"#;

/// Version 6: the job trigger notifies only while the node has more than one live process
/// (a node of one process wakes its workers in-process, and a NOTIFY costs a lock at commit).
/// Every heartbeat sets the switch from the processes it sees alive.
pub(super) const WAKE_SWITCH: &str = r#"
CREATE TABLE wake_switch (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    notify BOOLEAN NOT NULL
);
INSERT INTO wake_switch(notify) VALUES (true);
CREATE OR REPLACE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT notify FROM wake_switch) THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA, NEW.kind || ' ' || COALESCE(current_setting('poststelle.instance', true), ''));
    END IF;
    RETURN NULL;
END
$$;
"#;

impl PgStore {
    /// Refreshes `p`'s heartbeat row, and turns job notifications on exactly while another
    /// process of the node is alive too.
    pub(super) async fn beat(&self, p: &Process) -> Result<(), StoreError> {
        let client = self.client().await?;
        cached::execute(
            &client,
            "INSERT INTO processes(id, host, pid, started, last_seen) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
                 started = EXCLUDED.started, last_seen = EXCLUDED.last_seen",
            &[&p.id, &p.host, &i64::from(p.pid), &p.started, &p.last_seen],
        )
        .await
        .map_err(store_error)?;
        let alive_since = p.last_seen - PROCESS_STALE_MS;
        cached::execute(
            &client,
            "UPDATE wake_switch SET notify = n.alive > 1
             FROM (SELECT count(*) AS alive FROM processes WHERE last_seen > $1) n
             WHERE notify IS DISTINCT FROM (n.alive > 1)",
            &[&alive_since],
        )
        .await
        .map_err(store_error)?;
        Ok(())
    }

    pub(super) async fn heartbeats(&self) -> Result<Vec<Process>, StoreError> {
        let client = self.client().await?;
        let day_ago = now_millis() - 86_400_000;
        cached::execute(&client, "DELETE FROM processes WHERE last_seen < $1", &[&day_ago])
            .await
            .map_err(store_error)?;
        let rows = cached::query(
            &client,
            "SELECT id, host, pid, started, last_seen FROM processes ORDER BY id",
            &[],
        )
        .await
        .map_err(store_error)?;
        Ok(rows
            .iter()
            .map(|r| Process {
                id: r.get(0),
                host: r.get(1),
                pid: r.get::<_, i64>(2) as u32,
                started: r.get(3),
                last_seen: r.get(4),
            })
            .collect())
    }

    /// Takes or renews the lease on `task` unless another holder's lease still runs.
    pub(super) async fn take_lead(&self, task: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // The database's clock, not the processes': they may run on machines whose clocks differ.
        let lease = lease.as_millis() as i64;
        let n = cached::execute(
            &client,
            "INSERT INTO leaders(task, holder, until_ms)
             VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + $3)
             ON CONFLICT (task) DO UPDATE SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
             WHERE leaders.holder = EXCLUDED.holder
                OR leaders.until_ms < (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
            &[&task, &holder, &lease],
        )
        .await
        .map_err(store_error)?;
        Ok(n == 1)
    }
}
