//! Status events for clients: a store decorator ([`Evented`]) that reports status changes —
//! every committed transition that sets a status is counted in the metrics and, with a broker,
//! sends the message id and the new status to a bounded channel — and the AMQP publisher that
//! reads that channel ([`publish_status_events`]). At most once: when the channel is full (the
//! broker is away) events are dropped, never the transition.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::BasicProperties;
use tokio::sync::{mpsc, watch};

use crate::ctx::Ctx;
use crate::store::*;

/// Where status events arrive: (message id, new status).
pub type StatusEvents = mpsc::Receiver<(String, Status)>;

/// Wraps a store; see the module documentation.
#[derive(Debug)]
pub struct Evented {
    inner: Arc<dyn Store>,
    tx: Option<mpsc::Sender<(String, Status)>>,
}

impl Evented {
    /// With `events`, also returns the receiving end of a channel of that capacity.
    pub fn wrap(inner: Arc<dyn Store>, events: Option<usize>) -> (Arc<dyn Store>, Option<StatusEvents>) {
        let (tx, rx) = match events {
            Some(capacity) => {
                let (tx, rx) = mpsc::channel(capacity);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        (Arc::new(Evented { inner, tx }), rx)
    }

    fn changed(&self, id: &str, status: Status) {
        crate::telemetry::transition(status);
        if let Some(tx) = &self.tx {
            let _ = tx.try_send((id.to_owned(), status));
        }
    }
}

#[async_trait]
impl Store for Evented {
    async fn accept(&self, m: NewOutbound) -> Result<AcceptOutcome, StoreError> {
        let r = self.inner.accept(m).await?;
        if let AcceptOutcome::Created(id) = &r {
            self.changed(id, Status::Accepted);
        }
        Ok(r)
    }
    async fn receive(&self, m: NewInbound) -> Result<ReceiveOutcome, StoreError> {
        let r = self.inner.receive(m).await?;
        if let ReceiveOutcome::Created(id) = &r {
            self.changed(id, Status::Received);
        }
        Ok(r)
    }
    async fn claim(&self, kind: JobKind, lease: Duration, skip: &[String]) -> Result<Option<Job>, StoreError> {
        self.inner.claim(kind, lease, skip).await
    }
    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.inner.release_leases().await
    }
    async fn apply(&self, change: Change) -> Result<bool, StoreError> {
        // The timeline entries written before the new status (e.g. `sent` on the way to
        // `received`) are transitions too.
        let mut changed: Vec<Status> = change.events_before.iter().map(|(s, _)| *s).collect();
        changed.extend(change.status);
        let id = change.message_id.clone();
        let applied = self.inner.apply(change).await?;
        if applied {
            for status in changed {
                self.changed(&id, status);
            }
        }
        Ok(applied)
    }
    async fn retry_later(&self, job_id: i64, due: Millis, error: &str) -> Result<(), StoreError> {
        self.inner.retry_later(job_id, due, error).await
    }
    async fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        self.inner.message(id).await
    }
    async fn events(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        self.inner.events(id).await
    }
    async fn blob(&self, id: &str, blob: Blob) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.blob(id, blob).await
    }
    async fn inbox(&self, authority: &str) -> Result<Vec<Message>, StoreError> {
        self.inner.inbox(authority).await
    }
    async fn inbound_by_remote_id(&self, reader: &str, remote_id: &str) -> Result<Vec<Message>, StoreError> {
        self.inner.inbound_by_remote_id(reader, remote_id).await
    }
    async fn counts(&self) -> Result<Vec<(Direction, Status, u64)>, StoreError> {
        self.inner.counts().await
    }
    async fn queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.inner.queues().await
    }
    async fn minutes(&self, since: Millis) -> Result<Vec<Minute>, StoreError> {
        self.inner.minutes(since).await
    }
    async fn list(&self, filter: Filter) -> Result<Vec<Message>, StoreError> {
        self.inner.list(filter).await
    }
    async fn expire(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let ids = self.inner.expire(now).await?;
        for id in &ids {
            self.changed(id, Status::Failed);
        }
        Ok(ids)
    }
    async fn purge(&self, payload_before: Millis, metadata_before: Millis) -> Result<Purged, StoreError> {
        self.inner.purge(payload_before, metadata_before).await
    }
    async fn size(&self) -> Result<u64, StoreError> {
        self.inner.size().await
    }
    fn wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<JobKind>> {
        self.inner.wakeups()
    }
    fn keeps_audit(&self) -> bool {
        self.inner.keeps_audit()
    }
    async fn audit_append(&self, entry: crate::store::AuditEntry<'_>) -> Result<(), StoreError> {
        self.inner.audit_append(entry).await
    }
    async fn audit_read(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        self.inner.audit_read(after, limit).await
    }
    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.inner.audit_head().await
    }
    async fn heartbeat(&self, process: &Process) -> Result<(), StoreError> {
        self.inner.heartbeat(process).await
    }
    async fn processes(&self) -> Result<Vec<Process>, StoreError> {
        self.inner.processes().await
    }
    async fn lead(&self, task: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        self.inner.lead(task, holder, lease).await
    }
}

/// Publishes a status event for every committed status change to the events exchange, routing
/// key `status.<state>`, JSON with metadata only (never the message, never an error's detail,
/// which may quote it). At most once: without a connection, events are dropped.
pub async fn publish_status_events(
    ctx: Arc<Ctx>,
    mut changes: tokio::sync::mpsc::Receiver<(String, crate::store::Status)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(settings) = ctx.config.amqp.clone() else {
        return;
    };
    loop {
        let (id, status) = tokio::select! {
            c = changes.recv() => match c { Some(c) => c, None => return },
            _ = shutdown.changed() => return,
        };
        // The status is the transition's; the rest is read now (it does not change).
        let Ok(Some(m)) = ctx.store.message(&id).await else {
            continue;
        };
        let event = serde_json::json!({
            "node": ctx.config.node_name,
            "message_id": m.id,
            "status": status.as_str(),
            "direction": m.direction,
            "message_type": m.message_type,
            "xoev_uuid": m.xoev_uuid,
            "author": m.author,
            "reader": m.reader,
            "partner": m.partner_node,
            "time": crate::store::rfc3339(crate::store::now_millis()),
        });
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(m.id.as_str().into());
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let key = format!("status.{}", status.as_str());
        if let Err(e) = ctx
            .broker
            .publish_with(&settings.events_exchange, &key, &body, properties, false)
            .await
        {
            tracing::debug!(error = %e, "status event dropped");
        }
    }
}
