//! The notice stage (receiving node): once a received message ended — `delivered` to its
//! client or `refused` — a receipt signed by this node tells the sender's node, which moves its
//! copy to `delivered` or `rejected`. A partner that does not know the message any more (4xx)
//! is told nothing more; no answer is retried.

use super::worker::{apply, drop_job, finishing};
use super::{Failure, Outcome};
use crate::ctx::Ctx;
use crate::envelope::{Outcome as ReceiptOutcome, Receipt, seal};
use crate::store::{Change, Job, JobKind, Message, Status, now_millis, rfc3339};

pub async fn notice(ctx: &Ctx, job: &Job, m: &Message) -> Outcome {
    let (outcome, code, detail) = match m.status {
        Status::Delivered => (ReceiptOutcome::Delivered, None, None),
        Status::Refused => (ReceiptOutcome::Refused, m.error_code.clone(), m.error_detail.clone()),
        _ => return drop_job(ctx, job).await,
    };
    let config = ctx.config();
    let Some(partner) = config.partners.iter().find(|p| p.node == m.partner_node) else {
        return drop_job(ctx, job).await;
    };
    let body = seal::signed_receipt(
        &Receipt {
            message_id: m.remote_id.clone().unwrap_or_default(),
            outcome,
            code,
            detail,
            envelope_sha256: crate::envelope::unhex(&m.digest),
            receiver_node: ctx.config().node_name.clone(),
            time: rfc3339(now_millis()),
        },
        &ctx.keys().node,
    )
    .map_err(|p| Failure::Transient(p.to_string()))?;
    let response = crate::partner::send::post(ctx, partner, body).await;
    match &response {
        Ok((status, _)) if status.is_server_error() => ctx.partners.failure(&partner.node, "notice answered 5xx"),
        Ok(_) => ctx.partners.success(&partner.node),
        Err(e) => ctx.partners.failure(&partner.node, e),
    }
    match response {
        Ok((status, _)) if status.is_success() => told(ctx, job).await,
        // The partner does not know the message (e.g. it was purged): nothing more to tell.
        Ok((status, _)) if status.is_client_error() => {
            tracing::warn!(message_id = %m.id, status = status.as_u16(), "partner refused our notice");
            told(ctx, job).await
        }
        Ok((status, _)) => Err(Failure::Transient(format!("partner answered {status}"))),
        Err(e) => Err(Failure::Transient(format!("partner unreachable: {e}"))),
    }
}

/// Ends a notice job the partner answered. Not waited for on disk (`Change::lazy`): lost to a
/// power failure, the notice goes out again and the partner answers it as before (a notice
/// it applied changes nothing the second time; one it refused, it refuses again).
async fn told(ctx: &Ctx, job: &Job) -> Outcome {
    let change = Change {
        lazy: true,
        ..finishing(job)
    };
    apply(ctx, change).await
}

/// Applies an inbound message's final change together with the notice job that tells the
/// sender, and wakes the notice worker.
pub(super) async fn end_with_notice(ctx: &Ctx, mut change: Change) -> Outcome {
    change.enqueue.push((JobKind::Notice, now_millis()));
    let r = apply(ctx, change).await;
    ctx.wake(JobKind::Notice);
    r
}
