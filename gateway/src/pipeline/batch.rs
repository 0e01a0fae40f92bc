//! The relay stage for several envelopes of one partner in one request (`partner::batch`):
//! when a relay job runs and more envelopes to the same partner are due, the job claims them
//! (`Store::claim_more`, up to `[relay] envelopes_per_request` in all and the envelope size
//! limit in bytes) and sends them together. The partner answers with one signed `pst:Notices`,
//! an entry per envelope in the order sent; each entry is judged exactly as the receipt of an
//! envelope sent alone (`relay::judge`), and the messages' changes are applied at once.
//!
//! No answer, a 5xx, 408 or 429 count once against the partner's circuit, and every envelope
//! of the request is retried. A 4xx answer that is not such a batch comes from a node that
//! takes no several envelopes in one request (an earlier version): for
//! [`SINGLY_FOR`] each goes alone, and these are retried so.

use std::time::Duration;

use super::relay::{self, Answer};
use super::worker::{drop_job, release};
use super::{Failure, Outcome};
use crate::config::Partner;
use crate::ctx::Ctx;
use crate::problem::{Code, Problem};
use crate::store::{Job, JobKind, Message, Status, now_millis};

/// How long envelopes go to a partner one at a time after it refused several in one request.
pub const SINGLY_FOR: Duration = Duration::from_secs(600);

/// An envelope ready to go to the partner (sealed, its attachment streams sent): its job and
/// its message.
pub(super) struct Ready {
    pub job: Job,
    pub message: Message,
    pub envelope: Vec<u8>,
}

/// Whether envelopes may travel to `partner` several in one request: allowed by the
/// configuration, over HTTPS, and not refused by the partner lately.
pub(super) fn may_go_together(ctx: &Ctx, partner: &Partner) -> bool {
    ctx.config().relay.envelopes_per_request > 1
        && partner.amqp_queue.is_none()
        && ctx.partners.takes_several(&partner.node)
}

/// Further due envelopes to `partner`, claimed now and made ready, to travel with one of
/// `first_len` bytes. A message that cannot go (its attempt failed) is settled as its own
/// attempt would be; one past the size limit is released for the next request.
pub(super) async fn gather(ctx: &Ctx, partner: &Partner, first_len: usize) -> Vec<Ready> {
    // Fault injection (tests only): `return(MS)` waits MS milliseconds for more to come due.
    if let Some(ms) = crate::failpoints::value("relay.gather").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let config = ctx.config();
    let limit = config.relay.envelopes_per_request.min(crate::envelope::MAX_NOTICES) - 1;
    let jobs = match ctx
        .store
        .claim_more(JobKind::Relay, &partner.node, config.relay.lease, limit)
        .await
    {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim more envelopes; this one goes alone");
            return Vec::new();
        }
    };
    let room = config.limits.for_envelopes().max_bytes;
    let mut size = first_len;
    let mut ready = Vec::with_capacity(jobs.len());
    for job in jobs {
        match made_ready(ctx, partner, &job).await {
            Ok(Some((message, envelope))) if size + envelope.len() + PART_OVERHEAD <= room => {
                size += envelope.len() + PART_OVERHEAD;
                ready.push(Ready { job, message, envelope });
            }
            Ok(Some(_)) => {
                // For the next request, at once.
                if let Err(e) = ctx
                    .store
                    .retry_later(job.id, now_millis(), "waits for the next request")
                    .await
                {
                    tracing::warn!(message_id = %job.message_id, error = %e, "cannot release a job; its lease will expire");
                }
            }
            Ok(None) => {}
            Err(f) => super::worker::settle(ctx, &job, f).await,
        }
    }
    ready
}

/// What each envelope adds to a request beside its bytes (the part's boundary and header).
const PART_OVERHEAD: usize = 96;

/// A claimed job's message and envelope, sealed and with its attachment streams sent; `None`
/// when there is nothing (more) to send (its job is ended).
async fn made_ready(ctx: &Ctx, partner: &Partner, job: &Job) -> Result<Option<(Message, Vec<u8>)>, Failure> {
    let m = ctx
        .store
        .message(&job.message_id)
        .await?
        .ok_or_else(|| Failure::transient("message vanished"))?;
    if !matches!(m.status, Status::Accepted | Status::Sealed | Status::Sent) {
        drop_job(ctx, job).await?;
        return Ok(None);
    }
    let envelope = super::seal::sealed(ctx, &m).await?;
    relay::send_files(ctx, partner, &m, &envelope).await?;
    Ok(Some((m, envelope)))
}

/// Sends `first` and `more` to `partner` in one request and applies what the answer says of
/// each. Returns the first job's outcome (its worker settles it); the others are settled here.
pub(super) async fn relay_together(ctx: &Ctx, partner: &Partner, first: Ready, more: Vec<Ready>) -> Outcome {
    let all: Vec<Ready> = std::iter::once(first).chain(more).collect();
    let jobs: Vec<Job> = all[1..].iter().map(|r| r.job.clone()).collect();
    let envelopes: Vec<&[u8]> = all.iter().map(|r| r.envelope.as_slice()).collect();
    tracing::info!(envelopes = all.len(), partner = %partner.node, "sending envelopes together");
    let (status, body) = match crate::partner::send::post_together(ctx, partner, &envelopes).await {
        Ok(answer) => answer,
        Err(e) => {
            crate::telemetry::relay_error(crate::telemetry::no_answer_class(&e));
            let reason = format!("partner {} unreachable: {e}", partner.node);
            return release(ctx, &jobs, relay::partner_failed(ctx, &partner.node, reason)).await;
        }
    };
    if let Some(failure) = relay::unanswered(ctx, &partner.node, status) {
        return release(ctx, &jobs, failure).await;
    }
    crate::failpoint!("relay.after_send");
    let entries = match relay::read_receipt(ctx, &partner.node, &body).await {
        Ok(Ok(Answer::Together(entries))) if status.is_success() && entries.len() == all.len() => entries,
        Ok(answer) if status.is_client_error() => {
            // Not a batch's answer: a node that takes one envelope per request refused ours.
            let why = answer.err().map_or_else(|| status.to_string(), |p| p.to_string());
            tracing::warn!(partner = %partner.node, status = status.as_u16(), answer = %why,
                "the partner refused several envelopes in one request; sending them one at a time");
            ctx.partners.send_singly(&partner.node, SINGLY_FOR);
            let reason = format!("partner {} takes one envelope per request", partner.node);
            return release(ctx, &jobs, Failure::Transient(reason)).await;
        }
        Ok(answer) => {
            let p = match answer {
                Ok(a) => Problem::new(
                    Code::EnvelopeInvalid,
                    format!(
                        "the answer to {} envelopes holds {}",
                        all.len(),
                        match a {
                            Answer::One(_) => 1,
                            Answer::Together(e) => e.len(),
                        }
                    ),
                ),
                Err(p) => p,
            };
            let failure = relay::bad_receipt(ctx, &all[0].message, &partner.node, &p).await;
            return release(ctx, &jobs, failure).await;
        }
        Err(f) => return release(ctx, &jobs, f).await,
    };
    conclude(ctx, partner, (status, &body), all, entries).await
}

/// Judges each envelope's entry of the answer and applies the messages' changes at once.
async fn conclude(
    ctx: &Ctx,
    partner: &Partner,
    answer: (hyper::StatusCode, &[u8]),
    all: Vec<Ready>,
    entries: Vec<crate::envelope::Receipt>,
) -> Outcome {
    let mut changes = Vec::with_capacity(all.len());
    let mut first = Ok(());
    for (i, (ready, entry)) in all.iter().zip(entries).enumerate() {
        let digest = crate::envelope::sha256(&ready.envelope);
        let judged = relay::judge(
            ctx,
            &ready.job,
            &ready.message,
            &partner.node,
            answer,
            Ok(entry),
            &digest,
        )
        .await;
        match judged {
            Ok(change) => changes.push(change),
            Err(f) if i == 0 => first = Err(f),
            Err(f) => super::worker::settle(ctx, &ready.job, f).await,
        }
    }
    crate::store::apply_all(&ctx.store, changes).await?;
    first
}
