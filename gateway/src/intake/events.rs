//! Status events for clients: a store decorator ([`Evented`]) that counts every committed
//! transition that sets a status in the metrics and wakes the publisher, and the AMQP
//! publisher ([`publish_status_events`]), which drains the store's status-event outbox: the
//! rows a transition commits with itself ([`Store::status_outbox`]), claimed in batches by
//! whichever process of the node gets them (`SKIP LOCKED`), published with confirms, deleted
//! once confirmed. So each transition goes out once — not once per process, and not lost when
//! a process dies between commit and publish or the broker is away; only a process dying
//! between the broker's confirm and the delete sends one again (after the claim's lease runs
//! out), with the same `event` number, by which consumers drop it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::BasicProperties;
use tokio::sync::{Notify, watch};

use crate::ctx::Ctx;
use crate::store::*;

/// Wraps a store; see the module documentation.
#[derive(Debug)]
pub struct Evented {
    inner: Arc<dyn Store>,
    wake: Option<Arc<Notify>>,
}

impl Evented {
    /// With `publish`, also returns what wakes the publisher when a status change commits.
    pub fn wrap(inner: Arc<dyn Store>, publish: bool) -> (Arc<dyn Store>, Option<Arc<Notify>>) {
        let wake = publish.then(|| Arc::new(Notify::new()));
        (
            Arc::new(Evented {
                inner,
                wake: wake.clone(),
            }),
            wake,
        )
    }

    fn changed(&self, status: Status) {
        crate::telemetry::transition(status);
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
    }
}

#[async_trait]
impl Store for Evented {
    async fn accept(&self, m: NewOutbound) -> Result<AcceptOutcome, StoreError> {
        let sealed = m.sealed.is_some();
        let r = self.inner.accept(m).await?;
        if let AcceptOutcome::Created(_) = &r {
            self.changed(Status::Accepted);
            if sealed {
                self.changed(Status::Sealed);
            }
        }
        Ok(r)
    }
    async fn receive(&self, m: NewInbound) -> Result<ReceiveOutcome, StoreError> {
        let r = self.inner.receive(m).await?;
        if let ReceiveOutcome::Created(_) = &r {
            self.changed(Status::Received);
        }
        Ok(r)
    }
    async fn claim(&self, kind: JobKind, lease: Duration, skip: &[String]) -> Result<Option<Job>, StoreError> {
        self.inner.claim(kind, lease, skip).await
    }
    async fn claim_more(
        &self,
        kind: JobKind,
        partner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.inner.claim_more(kind, partner, lease, limit).await
    }
    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.inner.release_leases().await
    }
    async fn apply(&self, change: Change) -> Result<bool, StoreError> {
        // The timeline entries written before the new status (e.g. `sent` on the way to
        // `received`) are transitions too.
        let mut changed: Vec<Status> = change.events_before.iter().map(|(s, _)| *s).collect();
        changed.extend(change.status);
        let applied = self.inner.apply(change).await?;
        if applied {
            for status in changed {
                self.changed(status);
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
    async fn blobs_of_kind(&self, blob: Blob) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.blobs_of_kind(blob).await
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
        for _ in &ids {
            self.changed(Status::Failed);
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
    async fn status_outbox(&self, on: bool) -> Result<(), StoreError> {
        self.inner.status_outbox(on).await
    }
    async fn outbox_claim(&self, holder: &str, lease: Duration, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner.outbox_claim(holder, lease, limit).await
    }
    async fn outbox_done(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.inner.outbox_done(seqs).await
    }
}

/// How long a claimed batch of outbox rows is this process's to publish.
const OUTBOX_LEASE: Duration = Duration::from_secs(30);
/// Outbox rows claimed at once.
const OUTBOX_BATCH: usize = 200;
/// How often the outbox is looked at without a wake-up (rows another process committed).
const OUTBOX_POLL: Duration = Duration::from_millis(500);

/// Publishes the status events in the store's outbox to the events exchange, routing key
/// `status.<state>`, JSON with metadata only (never the message, never an error's detail,
/// which may quote it); see the module documentation. Without a broker the rows wait.
pub async fn publish_status_events(ctx: Arc<Ctx>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let Some(settings) = ctx.config().amqp.clone() else {
        return;
    };
    let mut pause = None;
    loop {
        if let Some(p) = pause.take() {
            tokio::select! {
                _ = tokio::time::sleep(p) => {}
                _ = shutdown.changed() => return,
            }
        }
        if *shutdown.borrow() {
            return;
        }
        let batch = match ctx.store.outbox_claim(&ctx.instance, OUTBOX_LEASE, OUTBOX_BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "status events: cannot read the outbox");
                pause = Some(Duration::from_secs(1));
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(OUTBOX_POLL) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let mut done = Vec::with_capacity(batch.len());
        // A message's metadata once per batch, however many of its transitions the batch holds.
        let mut metadata = std::collections::HashMap::new();
        for event in &batch {
            let m = match metadata.get(&event.message_id) {
                Some(m) => Ok(Option::clone(m)),
                None => ctx.store.message(&event.message_id).await,
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "status events: cannot read a message's metadata");
                    pause = Some(Duration::from_secs(1));
                    break;
                }
            };
            metadata.insert(event.message_id.clone(), m.clone());
            match publish_one(&ctx, &settings.events_exchange, event, m).await {
                Ok(()) => done.push(event.seq),
                Err(e) => {
                    // The rest of the batch is claimed again when its lease runs out.
                    tracing::debug!(error = %e, "status events wait for the broker");
                    pause = Some(Duration::from_secs(1));
                    break;
                }
            }
        }
        if let Err(e) = ctx.store.outbox_done(&done).await {
            tracing::debug!(error = %e, "status events: outbox rows not deleted (sent again later)");
        }
    }
}

/// One status event, confirmed by the broker.
async fn publish_one(ctx: &Ctx, exchange: &str, e: &OutboxEvent, m: Option<Message>) -> Result<(), String> {
    // The status and time are the transition's; the rest of the metadata (`m`) does not change
    // (a message already purged goes out with what the outbox row holds).
    let mut event = serde_json::json!({
        "node": ctx.config().node_name,
        "event": e.seq,
        "message_id": e.message_id,
        "status": e.status.as_str(),
        "time": crate::store::rfc3339(e.at),
    });
    if let Some(m) = m {
        let more = serde_json::json!({
            "direction": m.direction,
            "message_type": m.message_type,
            "xoev_uuid": m.xoev_uuid,
            "author": m.author,
            "reader": m.reader,
            "partner": m.partner_node,
        });
        if let (Some(event), serde_json::Value::Object(more)) = (event.as_object_mut(), more) {
            event.extend(more);
        }
    }
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(e.message_id.as_str().into());
    let body = serde_json::to_vec(&event).unwrap_or_default();
    let key = format!("status.{}", e.status.as_str());
    ctx.broker.publish_with(exchange, &key, &body, properties, false).await
}
