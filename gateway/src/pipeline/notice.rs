//! The notice stage (receiving node): once a received message ended — `delivered` to its
//! client or `refused` — a receipt signed by this node tells the sender's node, which moves its
//! copy to `delivered` or `rejected`. A partner that does not know the message any more (4xx)
//! is told nothing more; no answer is retried. When more notices to the same partner are due,
//! they travel together, signed once (`envelope::build_notices`).

use super::worker::{apply, drop_job, finishing, release};
use super::{Failure, Outcome};
use crate::ctx::Ctx;
use crate::envelope::{MAX_NOTICES, Outcome as ReceiptOutcome, Receipt, seal};
use crate::store::{Change, Job, JobKind, Message, Status, now_millis, rfc3339};

pub async fn notice(ctx: &Ctx, job: &Job, m: &Message) -> Outcome {
    let Some(first) = what_to_tell(ctx, m) else {
        return drop_job(ctx, job).await;
    };
    let config = ctx.config();
    let Some(partner) = config.partners.iter().find(|p| p.node == m.partner_node) else {
        return drop_job(ctx, job).await;
    };
    // This job holds the partner's one notice batch (`Partners::take_notices`). It waits
    // `notice_linger` for more to come due (longer with the fail point `notice.gather`,
    // `return(MS)`; tests only); those due by then travel with it, under one signature.
    let linger = crate::failpoints::value("notice.gather")
        .and_then(|v| v.parse().ok())
        .map_or(config.relay.notice_linger, std::time::Duration::from_millis);
    if !linger.is_zero() {
        tokio::time::sleep(linger).await;
    }
    let (more, notices) = due_with(ctx, &partner.node, first).await;
    let signed = match notices.as_slice() {
        [one] => seal::signed_receipt(one, &ctx.keys().node),
        all => seal::signed_notices(all, &ctx.keys().node),
    };
    let body = match signed {
        Ok(b) => b,
        Err(p) => return release(ctx, &more, Failure::Transient(p.to_string())).await,
    };
    let response = crate::partner::send::post(ctx, partner, body).await;
    match &response {
        Ok((status, _)) if status.is_server_error() => ctx.partners.failure(&partner.node, "notice answered 5xx"),
        Ok(_) => ctx.partners.success(&partner.node),
        Err(e) => ctx.partners.failure(&partner.node, e),
    }
    let failure = match response {
        Ok((status, _)) if status.is_success() => None,
        // The partner does not know the message (e.g. it was purged): nothing more to tell.
        Ok((status, _)) if status.is_client_error() => {
            tracing::warn!(message_id = %m.id, notices = notices.len(), status = status.as_u16(), "partner refused our notice");
            None
        }
        Ok((status, _)) => Some(Failure::Transient(format!("partner answered {status}"))),
        Err(e) => Some(Failure::Transient(format!("partner unreachable: {e}"))),
    };
    match failure {
        Some(f) => release(ctx, &more, f).await,
        None => told(ctx, std::iter::once(job).chain(&more)).await,
    }
}

/// What the notice about `m` says, if it ended in a state the sender must learn of.
fn what_to_tell(ctx: &Ctx, m: &Message) -> Option<Receipt> {
    let (outcome, code, detail) = match m.status {
        Status::Delivered => (ReceiptOutcome::Delivered, None, None),
        Status::Refused => (ReceiptOutcome::Refused, m.error_code.clone(), m.error_detail.clone()),
        _ => return None,
    };
    Some(Receipt {
        message_id: m.remote_id.clone().unwrap_or_default(),
        outcome,
        code,
        detail,
        envelope_sha256: crate::envelope::unhex(&m.digest),
        receiver_node: ctx.config().node_name.clone(),
        time: rfc3339(now_millis()),
    })
}

/// The notice `first` and those of further due notice jobs for `partner`, claimed now (up to
/// [`MAX_NOTICES`] in all); jobs whose message has nothing to tell any more are ended. Returns
/// the further jobs beside all notices. Under load the notices that came due while the last
/// batch travelled go in the next: one signature, one request and one commit at the partner
/// for all of them.
async fn due_with(ctx: &Ctx, partner: &str, first: Receipt) -> (Vec<Job>, Vec<Receipt>) {
    let lease = ctx.config().relay.lease;
    let claimed = match ctx
        .store
        .claim_more(JobKind::Notice, partner, lease, MAX_NOTICES - 1)
        .await
    {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim more notices; this one goes alone");
            Vec::new()
        }
    };
    let mut notices = vec![first];
    let mut jobs = Vec::with_capacity(claimed.len());
    for job in claimed {
        let told = match ctx.store.message(&job.message_id).await {
            Ok(Some(m)) => what_to_tell(ctx, &m),
            Ok(None) => None,
            Err(e) => {
                // Its lease runs out and it is claimed again.
                tracing::warn!(message_id = %job.message_id, error = %e, "cannot read a message to tell its partner");
                continue;
            }
        };
        match told {
            Some(n) => {
                notices.push(n);
                jobs.push(job);
            }
            None => {
                if let Err(e) = drop_job(ctx, &job).await {
                    tracing::warn!(message_id = %job.message_id, error = %e, "cannot end a notice job");
                }
            }
        }
    }
    (jobs, notices)
}

/// Ends the notice jobs the partner answered, all at once. Not waited for on disk
/// (`Change::lazy`): lost to a power failure, the notices go out again and the partner answers
/// them as before (a notice it applied changes nothing the second time; one it refused, it
/// refuses again).
async fn told(ctx: &Ctx, jobs: impl Iterator<Item = &Job>) -> Outcome {
    let changes = jobs
        .map(|job| Change {
            lazy: true,
            ..finishing(job)
        })
        .collect();
    crate::store::apply_all(&ctx.store, changes).await?;
    Ok(())
}

/// Applies an inbound message's final change together with the notice job that tells the
/// sender, and wakes the notice worker.
pub(super) async fn end_with_notice(ctx: &Ctx, mut change: Change) -> Outcome {
    change.enqueue.push((JobKind::Notice, now_millis()));
    let r = apply(ctx, change).await;
    ctx.wake(JobKind::Notice);
    r
}
