//! Workers: claim jobs from the store with leases and run the stage each job stands for.
//!
//! - `Relay` (sender): [`super::seal`] then [`super::relay`] — send the envelope to the
//!   partner's node, store its receipt (`sent` → `received`) or its refusal (`rejected`).
//! - `Open` (receiver): [`super::open`] — decrypt, verify and validate (`opened`), or refuse
//!   (`refused`, with a notice to the sender).
//! - `Push` (receiver): [`super::deliver`] — hand the opened message to the client's callback or
//!   inbox queue (`delivered`).
//! - `Notice` (receiver): [`super::notice`] — tell the sender's node `delivered` or `refused`.
//!
//! Each stage returns a [`Failure`] when it did not finish; [`settle`] is the one place that
//! maps it: transient failures release the job for a later attempt with capped exponential
//! backoff and jitter; permanent ones end the message with a code. Every step is a conditional
//! store change, so a job run twice after a lease expiry has no second effect.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Failure, Outcome};
use crate::ctx::Ctx;
use crate::health::Slot;
use crate::problem::{Code, Problem};
use crate::store::{Change, Job, JobKind, Status, now_millis};

/// How long an idle worker sleeps before looking for due jobs again (retries come due silently).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs one worker of `kind` until shutdown.
pub async fn run(ctx: Arc<Ctx>, kind: JobKind, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some((job, slot)) = claim(&ctx, kind).await else {
            tokio::select! {
                _ = ctx.waker(kind).notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        };
        // Each attempt runs in its own task: a message that makes its handler panic costs an
        // attempt (and, past the budget, ends as a dead letter), never a worker.
        let started = std::time::Instant::now();
        let attempt = {
            let (ctx, job) = (ctx.clone(), job.clone());
            tokio::spawn(async move { handle(&ctx, &job).await }).await
        };
        let outcome = match &attempt {
            Ok(Ok(())) | Ok(Err(Failure::Permanent(_) | Failure::Poison(_))) => "done",
            Ok(Err(Failure::Transient(_))) => "retry",
            Err(_) => "crashed",
        };
        crate::telemetry::job(kind, outcome, started.elapsed());
        let result = attempt.unwrap_or_else(|e| {
            tracing::error!(kind = kind.as_str(), message_id = %job.message_id, panic = e.is_panic(),
                "job attempt ended abnormally");
            Err(Failure::transient(
                "the attempt ended abnormally (a bug); see the node's log",
            ))
        });
        drop(slot);
        if let Err(failure) = result {
            settle(&ctx, &job, failure).await;
        }
    }
}

/// Claims a due job; for jobs that talk to a partner node, skips partners whose circuit is
/// open or whose concurrency slots are taken (for notices: whose one batch is on its way), and
/// takes a slot of the claimed job's partner.
async fn claim(ctx: &Arc<Ctx>, kind: JobKind) -> Option<(Job, Option<Slot>)> {
    let lease = ctx.config().relay.lease;
    let claimed = if matches!(kind, JobKind::Relay | JobKind::Notice) {
        let _serial = ctx.partners.claim_lock.lock().await;
        let notices = kind == JobKind::Notice;
        let skip = if notices {
            ctx.partners.skip_notices()
        } else {
            ctx.partners.skip()
        };
        ctx.store.claim(kind, lease, &skip).await.map(|j| {
            j.map(|j| {
                let slot = match notices {
                    true => ctx.partners.take_notices(&j.partner_node),
                    false => ctx.partners.take(&j.partner_node),
                };
                (j, Some(slot))
            })
        })
    } else {
        ctx.store.claim(kind, lease, &[]).await.map(|j| j.map(|j| (j, None)))
    };
    claimed.unwrap_or_else(|e| {
        tracing::warn!(kind = kind.as_str(), error = %e, "claim failed");
        None
    })
}

async fn handle(ctx: &Ctx, job: &Job) -> Outcome {
    let message = ctx
        .store
        .message(&job.message_id)
        .await?
        .ok_or_else(|| Failure::transient("message vanished"))?;
    match job.kind {
        JobKind::Relay => super::relay::relay(ctx, job, &message).await,
        JobKind::Open => super::open::open(ctx, job, &message).await,
        JobKind::Push => super::deliver::push(ctx, job, &message).await,
        JobKind::Notice => super::notice::notice(ctx, job, &message).await,
    }
}

/// What becomes of a message whose attempt failed: the one place a [`Failure`] is mapped.
pub(super) async fn settle(ctx: &Ctx, job: &Job, failure: Failure) {
    let result = match failure {
        Failure::Transient(reason) => {
            retry_or_give_up(ctx, job, &reason).await;
            return;
        }
        Failure::Permanent(p) => end(ctx, job, p).await,
        Failure::Poison(limit) => {
            let p = Problem::new(
                Code::Internal,
                format!("opening the message failed {limit} times; it was set aside"),
            );
            end(ctx, job, p).await
        }
    };
    if let Err(e) = result {
        tracing::error!(kind = job.kind.as_str(), message_id = %job.message_id, error = %e,
            "cannot end the job; its lease will expire");
    }
}

/// Ends a message for good with a problem: outbound → `failed`; received → `refused` with a
/// notice to the sender; a push or notice job is dropped (the message keeps its state).
async fn end(ctx: &Ctx, job: &Job, p: Problem) -> Outcome {
    match job.kind {
        JobKind::Relay => {
            ctx.store
                .apply(Change {
                    message_id: job.message_id.clone(),
                    finish_job: Some(job.id),
                    expect: vec![Status::Accepted, Status::Sealed, Status::Sent],
                    status: Some(Status::Failed),
                    error: Some((p.code.as_str().into(), p.detail)),
                    ..Change::default()
                })
                .await?;
        }
        JobKind::Open => {
            tracing::warn!(message_id = %job.message_id, code = %p.code, "received message refused");
            super::notice::end_with_notice(
                ctx,
                Change {
                    message_id: job.message_id.clone(),
                    finish_job: Some(job.id),
                    expect: vec![Status::Received],
                    status: Some(Status::Refused),
                    error: Some((p.code.as_str().into(), p.detail)),
                    ..Change::default()
                },
            )
            .await?;
        }
        JobKind::Push | JobKind::Notice => {
            tracing::warn!(kind = job.kind.as_str(), message_id = %job.message_id, code = %p.code,
                error = %p.detail, "job dropped");
            drop_job(ctx, job).await?;
        }
    }
    Ok(())
}

/// After a failed attempt: another one later (capped exponential backoff with jitter), or,
/// once the retry budget is spent, the end: an outbound message goes to `failed` (the
/// dead-letter state, kept for operators) with its last error; other jobs are dropped.
async fn retry_or_give_up(ctx: &Ctx, job: &Job, reason: &str) {
    let r = &ctx.config().relay;
    let now = now_millis();
    let deadline = job
        .deadline
        .unwrap_or(job.created_at + r.retry_window.as_millis() as i64);
    let spent = (r.max_attempts > 0 && job.attempts >= r.max_attempts) || now >= deadline;
    if spent {
        tracing::warn!(kind = job.kind.as_str(), message_id = %job.message_id, attempts = job.attempts,
            error = %reason, "retry budget spent");
        let mut change = Change {
            message_id: job.message_id.clone(),
            finish_job: Some(job.id),
            ..Change::default()
        };
        // The client can still fetch the message (push) / the sender learns nothing more
        // (notice); neither is worth keeping a job for past the budget.
        if job.kind == JobKind::Relay {
            change.expect = vec![Status::Accepted, Status::Sealed, Status::Sent];
            change.status = Some(Status::Failed);
            change.detail = Some(format!("gave up after {} attempts", job.attempts));
            change.error = Some((
                Code::RetriesExhausted.as_str().into(),
                format!("after {} attempts; last error: {reason}", job.attempts),
            ));
        }
        if let Err(e) = ctx.store.apply(change).await {
            tracing::error!(error = %e, "cannot end the job; its lease will expire");
        }
        return;
    }
    let delay = backoff(ctx, job.attempts);
    tracing::warn!(kind = job.kind.as_str(), message_id = %job.message_id, attempt = job.attempts,
        retry_in_ms = delay.as_millis() as u64, error = %reason, "job attempt failed");
    if let Err(e) = ctx
        .store
        .retry_later(job.id, now + delay.as_millis() as i64, reason)
        .await
    {
        tracing::error!(error = %e, "cannot reschedule job; its lease will expire");
    }
}

/// Capped exponential backoff with jitter (50–100 % of the nominal delay).
fn backoff(ctx: &Ctx, attempts: u32) -> Duration {
    let r = &ctx.config().relay;
    let exp = r
        .retry_initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(r.retry_max);
    let mut b = [0u8; 2];
    let _ = openssl::rand::rand_bytes(&mut b);
    let jitter = 0.5 + (u16::from_le_bytes(b) as f64 / u16::MAX as f64) / 2.0;
    exp.mul_f64(jitter)
}

/// After a batch was not sent or not answered: each further job of the batch is retried as
/// its own would be; the first job's failure is returned to the worker.
pub(super) async fn release(ctx: &Ctx, more: &[Job], failure: Failure) -> Outcome {
    let reason = failure.to_string();
    for job in more {
        settle(ctx, job, Failure::Transient(reason.clone())).await;
    }
    Err(failure)
}

/// Removes a job whose message is no longer in a state the job applies to.
pub(super) async fn drop_job(ctx: &Ctx, job: &Job) -> Outcome {
    apply(ctx, finishing(job)).await
}

/// The change that only ends `job`.
pub(super) fn finishing(job: &Job) -> Change {
    Change {
        message_id: job.message_id.clone(),
        finish_job: Some(job.id),
        ..Change::default()
    }
}

/// Applies a stage's store change.
pub(super) async fn apply(ctx: &Ctx, change: Change) -> Outcome {
    ctx.store.apply(change).await?;
    Ok(())
}
