//! Workers: claim jobs from the store with leases and move messages on.
//!
//! - `Relay` (sender): build the envelope (`sealed`), send it to the partner's node, store its
//!   receipt (`sent` → `received`) or its refusal (`rejected`).
//! - `Open` (receiver): decode and validate the content with its adapter (`opened`), or refuse
//!   it (`refused`, with a notice to the sender).
//! - `Push` (receiver): hand the opened message to the client's callback (`delivered`).
//! - `Notice` (receiver): tell the sender's node `delivered` or `refused`.
//!
//! Transient failures (connection refused, timeout, 5xx, store busy) release the job for a
//! later attempt with capped exponential backoff and jitter; permanent ones (a signed refusal, a
//! 4xx) end the message with a code. Every step is a conditional store change, so a job run
//! twice after a lease expiry has no second effect.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::envelope::{self, EnvelopeHeader, Outcome, Receipt};
use crate::node::Ctx;
use crate::partners::Slot;
use crate::problem::{Code, Problem};
use crate::store::{Blob, Change, Job, JobKind, Message, Status, now_millis, rfc3339};
use crate::xml::prescan::Limits;
use crate::xmlsec::seal;

/// How long an idle worker sleeps before looking for due jobs again (retries come due silently).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// What became of one attempt.
enum Attempt {
    /// Done; the store change was applied.
    Done,
    /// Try again later, for this reason.
    Retry(String),
}

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
            Ok(Ok(Attempt::Done)) => "done",
            Ok(Ok(Attempt::Retry(_))) | Ok(Err(_)) => "retry",
            Err(_) => "crashed",
        };
        crate::telemetry::job(kind, outcome, started.elapsed());
        let result = attempt.unwrap_or_else(|e| {
            tracing::error!(kind = kind.as_str(), message_id = %job.message_id, panic = e.is_panic(),
                "job attempt ended abnormally");
            Err("the attempt ended abnormally (a bug); see the node's log".into())
        });
        drop(slot);
        match result {
            Ok(Attempt::Done) => {}
            Ok(Attempt::Retry(reason)) | Err(reason) => retry_or_give_up(&ctx, &job, &reason).await,
        }
    }
}

/// Claims a due job; for jobs that talk to a partner node, skips partners whose circuit is
/// open or whose concurrency slots are taken, and takes a slot of the claimed job's partner.
async fn claim(ctx: &Arc<Ctx>, kind: JobKind) -> Option<(Job, Option<Slot>)> {
    let lease = ctx.config.relay.lease;
    let claimed = if matches!(kind, JobKind::Relay | JobKind::Notice) {
        let _serial = ctx.partners.claim_lock.lock().await;
        let skip = ctx.partners.skip();
        ctx.store.claim(kind, lease, &skip).await.map(|j| {
            j.map(|j| {
                let slot = ctx.partners.take(&j.partner_node);
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

/// After a failed attempt: another one later (capped exponential backoff with jitter), or,
/// once the retry budget is spent, the end: an outbound message goes to `failed` (the
/// dead-letter state, kept for operators) with its last error; other jobs are dropped.
async fn retry_or_give_up(ctx: &Ctx, job: &Job, reason: &str) {
    let r = &ctx.config.relay;
    let now = now_millis();
    let deadline = job
        .deadline
        .unwrap_or(job.created_at + r.retry_window.as_millis() as i64);
    let spent = (r.max_attempts > 0 && job.attempts >= r.max_attempts) || now >= deadline;
    if spent {
        tracing::warn!(kind = job.kind.as_str(), message_id = %job.message_id, attempts = job.attempts,
            error = %reason, "retry budget spent");
        let change = match job.kind {
            JobKind::Relay => Change {
                message_id: job.message_id.clone(),
                finish_job: Some(job.id),
                expect: vec![Status::Accepted, Status::Sealed, Status::Sent],
                status: Some(Status::Failed),
                detail: Some(format!("gave up after {} attempts", job.attempts)),
                error: Some((
                    Code::RetriesExhausted.as_str().into(),
                    format!("after {} attempts; last error: {reason}", job.attempts),
                )),
                ..Change::default()
            },
            // The client can still fetch the message (push) / the sender learns nothing more
            // (notice); neither is worth keeping a job for past the budget.
            _ => Change {
                message_id: job.message_id.clone(),
                finish_job: Some(job.id),
                ..Change::default()
            },
        };
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
    let r = &ctx.config.relay;
    let exp = r
        .retry_initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(r.retry_max);
    let mut b = [0u8; 2];
    let _ = openssl::rand::rand_bytes(&mut b);
    let jitter = 0.5 + (u16::from_le_bytes(b) as f64 / u16::MAX as f64) / 2.0;
    exp.mul_f64(jitter)
}

async fn handle(ctx: &Ctx, job: &Job) -> Result<Attempt, String> {
    let message = ctx
        .store
        .message(&job.message_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("message vanished")?;
    match job.kind {
        JobKind::Relay => relay(ctx, job, &message).await,
        JobKind::Open => open(ctx, job, &message).await,
        JobKind::Push => push(ctx, job, &message).await,
        JobKind::Notice => notice(ctx, job, &message).await,
    }
}

/// Removes a job whose message is no longer in a state the job applies to.
async fn drop_job(ctx: &Ctx, job: &Job) -> Result<Attempt, String> {
    ctx.store
        .apply(Change {
            message_id: job.message_id.clone(),
            finish_job: Some(job.id),
            ..Change::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Attempt::Done)
}

async fn apply(ctx: &Ctx, change: Change) -> Result<Attempt, String> {
    ctx.store.apply(change).await.map_err(|e| e.to_string())?;
    Ok(Attempt::Done)
}

async fn relay(ctx: &Ctx, job: &Job, m: &Message) -> Result<Attempt, String> {
    if !matches!(m.status, Status::Accepted | Status::Sealed | Status::Sent) {
        return drop_job(ctx, job).await;
    }
    let Some(partner) = ctx.config.partners.iter().find(|p| p.node == m.partner_node) else {
        return apply(
            ctx,
            Change {
                message_id: m.id.clone(),
                finish_job: Some(job.id),
                expect: vec![Status::Accepted, Status::Sealed, Status::Sent],
                status: Some(Status::Failed),
                error: Some((
                    Code::UnknownRecipient.as_str().into(),
                    format!("partner node {} is no longer in the directory", m.partner_node),
                )),
                ..Change::default()
            },
        )
        .await;
    };
    // Seal once; a retry sends the very same envelope (same message id, same digest).
    let envelope_bytes = match ctx.store.blob(&m.id, Blob::Envelope).await.map_err(|e| e.to_string())? {
        Some(e) => e,
        None => {
            let payload = ctx
                .store
                .blob(&m.id, Blob::Payload)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("payload missing")?;
            let header = EnvelopeHeader {
                message_id: m.id.clone(),
                xoev_uuid: m.xoev_uuid.clone(),
                sender_node: ctx.config.node_name.clone(),
                sender: m.author.clone(),
                recipient: m.reader.clone(),
                message_type: m.message_type.clone(),
                created: rfc3339(m.created_at),
            };
            let attachments = match ctx
                .store
                .blob(&m.id, Blob::Attachments)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(b) => envelope::decode_attachments(&b).map_err(|p| p.detail)?,
                None => Vec::new(),
            };
            let keys = ctx.keys.clone();
            let limits = ctx.config.limits;
            let (author, reader) = (m.author.clone(), m.reader.clone());
            let sealed = tokio::task::spawn_blocking(move || {
                let author_id = keys.authorities.get(&author).ok_or_else(|| {
                    Problem::new(
                        Code::CertificateInvalid,
                        format!("no key for the local authority {author}"),
                    )
                })?;
                let recipient = keys.partner_authorities.get(&reader).ok_or_else(|| {
                    Problem::new(
                        Code::CertificateInvalid,
                        format!("the directory has no certificate of {reader}"),
                    )
                })?;
                seal::seal(
                    &header,
                    &payload,
                    &attachments,
                    author_id,
                    recipient,
                    &keys.node,
                    &envelope_limits(&limits),
                )
            })
            .await
            .map_err(|e| e.to_string())?;
            let env = match sealed {
                Ok(e) => e,
                Err(p) => {
                    tracing::error!(message_id = %m.id, code = %p.code, error = %p.detail, "cannot seal the message");
                    return apply(
                        ctx,
                        Change {
                            message_id: m.id.clone(),
                            finish_job: Some(job.id),
                            expect: vec![Status::Accepted],
                            status: Some(Status::Failed),
                            error: Some((p.code.as_str().into(), p.detail)),
                            ..Change::default()
                        },
                    )
                    .await;
                }
            };
            ctx.store
                .apply(Change {
                    message_id: m.id.clone(),
                    expect: vec![Status::Accepted],
                    status: Some(Status::Sealed),
                    blobs: vec![(Blob::Envelope, env.clone())],
                    ..Change::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            crate::failpoint!("relay.after_seal");
            env
        }
    };
    let (status, body) = match post_to_partner(ctx, partner, envelope_bytes.clone()).await {
        Ok(answer) => answer,
        Err(e) => {
            crate::telemetry::relay_error(crate::telemetry::no_answer_class(&e));
            return Ok(partner_failed(
                ctx,
                &partner.node,
                format!("partner {} unreachable: {e}", partner.node),
            ));
        }
    };
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        crate::telemetry::relay_error(crate::telemetry::status_class(status.as_u16()));
        return Ok(partner_failed(
            ctx,
            &partner.node,
            format!("partner {} answered {status}", partner.node),
        ));
    }
    ctx.partners.success(&partner.node);
    crate::failpoint!("relay.after_send");
    let expected_digest = envelope::sha256(&envelope_bytes);
    let receipt = match read_receipt(ctx, &partner.node, &body).await? {
        Ok(r) => match answers(&r, &m.id, &expected_digest) {
            Ok(()) => r,
            Err(p) => return Ok(bad_receipt(ctx, m, &partner.node, &p)),
        },
        Err(p) if status.is_success() => return Ok(bad_receipt(ctx, m, &partner.node, &p)),
        Err(p) => {
            audit_receipt(ctx, m, &partner.node, &p);
            // A 4xx without a readable refusal is still permanent.
            return apply(
                ctx,
                Change {
                    message_id: m.id.clone(),
                    finish_job: Some(job.id),
                    expect: vec![Status::Sealed, Status::Sent],
                    status: Some(Status::Rejected),
                    error: Some(("partner-refused".into(), format!("partner answered {status}: {p}"))),
                    ..Change::default()
                },
            )
            .await;
        }
    };
    let (new_status, detail, error) = match receipt.outcome {
        Outcome::Received | Outcome::Delivered if status.is_success() => {
            tracing::info!(message_id = %m.id, partner = %partner.node, "envelope received by partner");
            let detail = format!("receipt from {} at {}", receipt.receiver_node, receipt.time);
            (Status::Received, detail, None)
        }
        _ => {
            let code = receipt.code.clone().unwrap_or_else(|| "partner-refused".into());
            tracing::warn!(message_id = %m.id, partner = %partner.node, code = %code, "envelope refused by partner");
            let error = (code, receipt.detail.clone().unwrap_or_default());
            (Status::Rejected, format!("refused by {}", partner.node), Some(error))
        }
    };
    apply(
        ctx,
        Change {
            message_id: m.id.clone(),
            finish_job: Some(job.id),
            expect: vec![Status::Sealed, Status::Sent],
            events_before: vec![(Status::Sent, Some(format!("to {}", partner.node)))],
            status: Some(new_status),
            detail: Some(detail),
            error,
            blobs: vec![(Blob::Receipt, body.to_vec())],
            ..Change::default()
        },
    )
    .await
}

/// A transient failure talking to a partner: counts towards its circuit, retried later.
fn partner_failed(ctx: &Ctx, partner: &str, reason: String) -> Attempt {
    ctx.partners.failure(partner, &reason);
    Attempt::Retry(reason)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Checks a partner's answer against the receipt schema and the partner node's signature,
/// and reads it. The inner error refuses the answer; the outer one is this node's own failure.
async fn read_receipt(ctx: &Ctx, partner: &str, body: &[u8]) -> Result<Result<Receipt, Problem>, String> {
    let refused = |what: &str, p: Problem| Ok(Err(Problem::new(p.code, format!("{what}: {}", p.detail))));
    if let Err(p) = crate::xml::prescan::prescan(body, &ctx.config.limits) {
        return refused("receipt unreadable", p);
    }
    let valid = ctx
        .validator
        .validate(ctx.envelope_schema.clone(), Arc::from(body))
        .await
        .map_err(|p| p.to_string())?;
    if let Err(f) = valid {
        return refused("receipt invalid", f.into_problem());
    }
    let signer = ctx
        .keys
        .partner_nodes
        .get(partner)
        .ok_or("the partner's certificate is not in the directory")?;
    if let Err(p) = seal::verify_node_signed(body, signer, &ctx.keys.transport_for(partner), &ctx.config.limits) {
        return refused("receipt signature", p);
    }
    Ok(envelope::parse_receipt(body))
}

/// Whether a receipt verified as the partner's answers for our envelope: it names our message
/// id and binds our envelope's digest. Only a refusal may name no message (the partner could
/// not read the id) or carry no digest (it could not read the body). A receipt about another
/// message (a replay) proves nothing about ours.
fn answers(r: &Receipt, id: &str, digest: &[u8]) -> Result<(), Problem> {
    let refused = r.outcome == Outcome::Refused;
    if r.message_id != id && !(refused && r.message_id == crate::transport::UNKNOWN_ID) {
        return Err(Problem::new(
            Code::EnvelopeInvalid,
            format!("the receipt is about message {}, not {id}", r.message_id),
        ));
    }
    match r.envelope_sha256.as_deref() {
        Some(d) if d == digest => Ok(()),
        None if refused => Ok(()),
        _ => Err(Problem::new(
            Code::EnvelopeInvalid,
            "the receipt does not bind our envelope's digest",
        )),
    }
}

/// An answer refused as a receipt is a security event: audited with its code.
fn audit_receipt(ctx: &Ctx, m: &Message, partner: &str, p: &Problem) {
    tracing::warn!(message_id = %m.id, partner, code = %p.code, "receipt refused");
    ctx.audit.note(
        "partner-transport",
        "receipt-refused",
        serde_json::json!({"message_id": m.id, "partner": partner, "code": p.code.as_str()}),
    );
}

/// A 2xx answer that is not a receipt for our envelope: the message stays unreceived and the
/// same envelope is sent again later (the partner answers a resend with its original receipt).
fn bad_receipt(ctx: &Ctx, m: &Message, partner: &str, p: &Problem) -> Attempt {
    crate::telemetry::relay_error("bad-receipt");
    audit_receipt(ctx, m, partner, p);
    Attempt::Retry(format!(
        "the answer of {partner} is not a receipt for this envelope: {p}"
    ))
}

/// Limits for envelopes: the content limit plus base64 growth, encryption and signatures.
pub fn envelope_limits(l: &Limits) -> Limits {
    Limits {
        max_bytes: l.max_bytes / 3 * 4 + 64 * 1024,
        ..*l
    }
}

async fn open(ctx: &Ctx, job: &Job, m: &Message) -> Result<Attempt, String> {
    if m.status != Status::Received {
        return drop_job(ctx, job).await;
    }
    // A poison message: opening it failed (or killed the node) this often. Attempts are counted
    // when a job is claimed, so a crash counts too; refuse it instead of looping.
    let limit = ctx.config.relay.poison_attempts;
    if job.attempts > limit {
        let p = Problem::new(
            Code::Internal,
            format!("opening the message failed {limit} times; it was set aside"),
        );
        return refuse(ctx, job, m, p).await;
    }
    let env = ctx
        .store
        .blob(&m.id, Blob::Envelope)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("envelope missing")?;
    let keys = ctx.keys.clone();
    let limits = envelope_limits(&ctx.config.limits);
    let (author, reader, partner) = (m.author.clone(), m.reader.clone(), m.partner_node.clone());
    let opened = tokio::task::spawn_blocking(move || {
        let recipient = keys
            .authorities
            .get(&reader)
            .ok_or_else(crate::xmlsec::encrypt::failed)?;
        let author_cert = keys.partner_authorities.get(&author).ok_or_else(|| {
            Problem::new(
                Code::SignerMismatch,
                format!("the directory has no certificate of the author {author}"),
            )
        })?;
        seal::open(&env, &recipient.key, author_cert, &keys.content_for(&partner), &limits)
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut attachments = Vec::new();
    let checked = match opened {
        Ok((content, travelled)) => {
            attachments = travelled;
            let content: Arc<[u8]> = Arc::from(content);
            match crate::intake::identify_and_validate(ctx, &content, false).await {
                Ok(crate::intake::Validated {
                    message_type: t,
                    header: h,
                    ..
                }) => {
                    if h.author != m.author || h.reader != m.reader || h.message_uuid != m.xoev_uuid {
                        Err(Problem::new(
                            Code::HeaderInvalid,
                            "the message header does not match the envelope (author, reader or UUID)",
                        ))
                    } else if t.to_string() != m.message_type {
                        Err(Problem::new(
                            Code::HeaderInvalid,
                            "the message type does not match the envelope",
                        ))
                    } else {
                        Ok(content)
                    }
                }
                Err(p) if p.code == Code::Overloaded => return Ok(Attempt::Retry("validation pool full".into())),
                Err(p) => Err(p),
            }
        }
        Err(p) => Err(p),
    };
    match checked {
        Ok(content) => {
            let push = ctx
                .config
                .clients
                .iter()
                .any(|c| c.authority == m.reader && c.takes_pushes());
            let mut enqueue = Vec::new();
            if push {
                enqueue.push((JobKind::Push, now_millis()));
            }
            crate::failpoint!("open.before_commit");
            tracing::info!(message_id = %m.id, "message opened");
            let r = apply(
                ctx,
                Change {
                    message_id: m.id.clone(),
                    finish_job: Some(job.id),
                    expect: vec![Status::Received],
                    status: Some(Status::Opened),
                    blobs: if attachments.is_empty() {
                        vec![(Blob::Payload, content.to_vec())]
                    } else {
                        vec![
                            (Blob::Payload, content.to_vec()),
                            (Blob::Attachments, envelope::encode_attachments(&attachments)),
                        ]
                    },
                    enqueue,
                    ..Change::default()
                },
            )
            .await;
            if push {
                ctx.wake(JobKind::Push);
            }
            r
        }
        Err(p) => refuse(ctx, job, m, p).await,
    }
}

/// Ends a received message as `refused` with the problem's code; a notice tells the sender.
async fn refuse(ctx: &Ctx, job: &Job, m: &Message, p: Problem) -> Result<Attempt, String> {
    tracing::warn!(message_id = %m.id, code = %p.code, "received message refused");
    end_with_notice(
        ctx,
        Change {
            message_id: m.id.clone(),
            finish_job: Some(job.id),
            expect: vec![Status::Received],
            status: Some(Status::Refused),
            error: Some((p.code.as_str().into(), p.detail)),
            ..Change::default()
        },
    )
    .await
}

/// Applies an inbound message's final change together with the notice job that tells the
/// sender, and wakes the notice worker.
async fn end_with_notice(ctx: &Ctx, mut change: Change) -> Result<Attempt, String> {
    change.enqueue.push((JobKind::Notice, now_millis()));
    let r = apply(ctx, change).await;
    ctx.wake(JobKind::Notice);
    r
}

async fn push(ctx: &Ctx, job: &Job, m: &Message) -> Result<Attempt, String> {
    if m.status != Status::Opened {
        return drop_job(ctx, job).await;
    }
    let Some(client) = ctx
        .config
        .clients
        .iter()
        .find(|c| c.authority == m.reader && c.takes_pushes())
    else {
        return drop_job(ctx, job).await;
    };
    let payload = ctx
        .store
        .blob(&m.id, Blob::Payload)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("payload missing")?;
    // The stylesheet's messages may quote the message, so the logged error names only the code;
    // the client sees the whole problem when it fetches the message from its inbox.
    let payload = crate::intake::for_client(client, payload, &ctx.registry)
        .await
        .map_err(|p| format!("the outbound transform for client {} failed: {}", client.name, p.code))?;
    if client.amqp_inbox.is_some() {
        return match crate::amqp::deliver(ctx, client, m, &payload).await {
            Ok(()) if client.delivered_on_confirm => {
                tracing::info!(message_id = %m.id, client = %client.name, "message published to the client's queue");
                delivered(
                    ctx,
                    job,
                    m,
                    format!("confirmed by the broker for client {}", client.name),
                )
                .await
            }
            // The client acknowledges through the HTTP API.
            Ok(()) => drop_job(ctx, job).await,
            Err(e) => Ok(Attempt::Retry(format!("client queue: {e}"))),
        };
    }
    let url = client.push_url.as_deref().unwrap_or_default();
    let response = ctx
        .push_client
        .post(url)
        .header("content-type", "application/xml")
        .header("idempotency-key", m.id.as_str())
        .header("x-poststelle-message-id", m.id.as_str())
        .body(payload)
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => {
            crate::failpoint!("push.after_callback");
            tracing::info!(message_id = %m.id, client = %client.name, "message pushed to client");
            delivered(ctx, job, m, format!("pushed to client {}", client.name)).await
        }
        Ok(r) => Ok(Attempt::Retry(format!("client callback answered {}", r.status()))),
        Err(e) => Ok(Attempt::Retry(format!("client callback unreachable: {e}"))),
    }
}

/// An opened message handed to its client (push callback or confirmed queue publish): delivered,
/// and the sender is told.
async fn delivered(ctx: &Ctx, job: &Job, m: &Message, detail: String) -> Result<Attempt, String> {
    end_with_notice(
        ctx,
        Change {
            message_id: m.id.clone(),
            finish_job: Some(job.id),
            expect: vec![Status::Opened],
            status: Some(Status::Delivered),
            detail: Some(detail),
            ..Change::default()
        },
    )
    .await
}

async fn notice(ctx: &Ctx, job: &Job, m: &Message) -> Result<Attempt, String> {
    let (outcome, code, detail) = match m.status {
        Status::Delivered => (Outcome::Delivered, None, None),
        Status::Refused => (Outcome::Refused, m.error_code.clone(), m.error_detail.clone()),
        _ => return drop_job(ctx, job).await,
    };
    let Some(partner) = ctx.config.partners.iter().find(|p| p.node == m.partner_node) else {
        return drop_job(ctx, job).await;
    };
    let body = seal::signed_receipt(
        &Receipt {
            message_id: m.remote_id.clone().unwrap_or_default(),
            outcome,
            code,
            detail,
            envelope_sha256: hex_decode(&m.digest),
            receiver_node: ctx.config.node_name.clone(),
            time: rfc3339(now_millis()),
        },
        &ctx.keys.node,
    )
    .map_err(|p| p.to_string())?;
    let response = post_to_partner(ctx, partner, body).await;
    match &response {
        Ok((status, _)) if status.is_server_error() => ctx.partners.failure(&partner.node, "notice answered 5xx"),
        Ok(_) => ctx.partners.success(&partner.node),
        Err(e) => ctx.partners.failure(&partner.node, e),
    }
    match response {
        Ok((status, _)) if status.is_success() => drop_job(ctx, job).await,
        // The partner does not know the message (e.g. it was purged): nothing more to tell.
        Ok((status, _)) if status.is_client_error() => {
            tracing::warn!(message_id = %m.id, status = status.as_u16(), "partner refused our notice");
            drop_job(ctx, job).await
        }
        Ok((status, _)) => Ok(Attempt::Retry(format!("partner answered {status}"))),
        Err(e) => Ok(Attempt::Retry(format!("partner unreachable: {e}"))),
    }
}

/// One request to a partner's transport and its answer (status and body): an HTTPS POST over
/// mutual TLS, or, for a partner reached through the broker, a request/reply over its
/// transport queue. `Err` means no answer (unreachable, timed out).
async fn post_to_partner(
    ctx: &Ctx,
    partner: &crate::config::Partner,
    body: Vec<u8>,
) -> Result<(hyper::StatusCode, Vec<u8>), String> {
    if let Some(queue) = &partner.amqp_queue {
        let (status, answer) = crate::amqp::call(ctx, queue, body, ctx.config.relay.request_timeout).await?;
        let status = hyper::StatusCode::from_u16(status).map_err(|e| e.to_string())?;
        return Ok((status, answer));
    }
    let request = hyper::Request::post(&partner.transport_url)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("bad transport URL: {e}"))?;
    let exchange = async {
        let response = ctx.relay_client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        // Receipts are small: a partner cannot make us buffer more than this.
        let answer = http_body_util::BodyExt::collect(http_body_util::Limited::new(response.into_body(), MAX_ANSWER))
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        Ok((status, answer.to_bytes().to_vec()))
    };
    tokio::time::timeout(ctx.config.relay.request_timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "request timed out: no answer within {} ms",
                ctx.config.relay.request_timeout.as_millis()
            )
        })?
}

/// The largest answer (receipt or refusal) read from a partner.
const MAX_ANSWER: usize = 1 << 20;

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
