//! The relay stage (sending node): send the sealed envelope to the partner's node
//! (`partner::send`), check its answer — schema, the partner node's signature, our message id
//! and our envelope's digest — and store the signed receipt (`sent` → `received`) or the
//! partner's refusal (`rejected`). No answer, a 5xx, 408 or 429 count against the partner's
//! circuit and are retried; an answer that is not a receipt for our envelope is audited and the
//! same envelope is sent again later.

use std::sync::Arc;

use super::worker::{apply, drop_job};
use super::{Failure, Outcome};
use crate::ctx::Ctx;
use crate::envelope::{self, Outcome as ReceiptOutcome, Receipt, seal};
use crate::problem::{Code, Problem};
use crate::store::{Blob, Change, Job, Message, Status};

pub async fn relay(ctx: &Ctx, job: &Job, m: &Message) -> Outcome {
    if !matches!(m.status, Status::Accepted | Status::Sealed | Status::Sent) {
        return drop_job(ctx, job).await;
    }
    let config = ctx.config();
    let Some(partner) = config.partners.iter().find(|p| p.node == m.partner_node) else {
        return Err(Failure::Permanent(Problem::new(
            Code::UnknownRecipient,
            format!("partner node {} is no longer in the directory", m.partner_node),
        )));
    };
    let envelope_bytes = super::seal::sealed(ctx, m).await?;
    // Sealed at intake or just now, stored either way; not sent yet.
    crate::failpoint!("relay.after_seal");
    send_files(ctx, partner, m, &envelope_bytes).await?;
    if super::batch::may_go_together(ctx, partner) {
        let more = super::batch::gather(ctx, partner, envelope_bytes.len()).await;
        if !more.is_empty() {
            let first = super::batch::Ready {
                job: job.clone(),
                message: m.clone(),
                envelope: envelope_bytes,
            };
            return super::batch::relay_together(ctx, partner, first, more).await;
        }
    }
    let (status, body) = match crate::partner::send::post(ctx, partner, envelope_bytes.clone()).await {
        Ok(answer) => answer,
        Err(e) => {
            crate::telemetry::relay_error(crate::telemetry::no_answer_class(&e));
            return Err(partner_failed(
                ctx,
                &partner.node,
                format!("partner {} unreachable: {e}", partner.node),
            ));
        }
    };
    if let Some(failure) = unanswered(ctx, &partner.node, status) {
        return Err(failure);
    }
    crate::failpoint!("relay.after_send");
    let answer = read_receipt(ctx, &partner.node, &body)
        .await?
        .and_then(|a| a.about(&m.id));
    let digest = envelope::sha256(&envelope_bytes);
    let change = judge(ctx, job, m, &partner.node, (status, &body), answer, &digest).await?;
    apply(ctx, change).await
}

/// A 5xx, 408 or 429 (the partner could not take it now; counts against its circuit), or
/// `None` for an answer (the circuit closes).
pub(super) fn unanswered(ctx: &Ctx, partner: &str, status: hyper::StatusCode) -> Option<Failure> {
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        crate::telemetry::relay_error(crate::telemetry::status_class(status.as_u16()));
        return Some(partner_failed(
            ctx,
            partner,
            format!("partner {partner} answered {status}"),
        ));
    }
    ctx.partners.success(partner);
    None
}

/// What the partner's answer (`status`, `body`) about envelope `m` (its digest `digest`; the
/// receipt read from the answer, or why not) changes: `received`, `rejected` with the
/// partner's code, or a failure — an answer that is not a receipt for this envelope is sent
/// again later.
pub(super) async fn judge(
    ctx: &Ctx,
    job: &Job,
    m: &Message,
    partner: &str,
    (status, body): (hyper::StatusCode, &[u8]),
    answer: Result<Receipt, Problem>,
    digest: &[u8],
) -> Result<Change, Failure> {
    let receipt = match answer {
        Ok(r) => match answers(&r, &m.id, digest) {
            Ok(()) => r,
            Err(p) => return Err(bad_receipt(ctx, m, partner, &p).await),
        },
        Err(p) if status.is_success() => return Err(bad_receipt(ctx, m, partner, &p).await),
        Err(p) => {
            audit_receipt(ctx, m, partner, &p).await;
            // A 4xx without a readable refusal is still permanent.
            return Ok(Change {
                message_id: m.id.clone(),
                finish_job: Some(job.id),
                expect: vec![Status::Sealed, Status::Sent],
                status: Some(Status::Rejected),
                error: Some(("partner-refused".into(), format!("partner answered {status}: {p}"))),
                ..Change::default()
            });
        }
    };
    if receipt.code.as_deref() == Some(Code::AttachmentIncomplete.as_str()) {
        // The partner lost (part of) a stream: the next attempt sends it again, then the envelope.
        return Err(Failure::Transient(format!(
            "partner {partner}: {}",
            receipt.detail.unwrap_or_default()
        )));
    }
    let (new_status, detail, error) = match receipt.outcome {
        ReceiptOutcome::Received | ReceiptOutcome::Delivered if status.is_success() => {
            tracing::info!(message_id = %m.id, partner = %partner, "envelope received by partner");
            let detail = format!("receipt from {} at {}", receipt.receiver_node, receipt.time);
            (Status::Received, detail, None)
        }
        _ => {
            let code = receipt.code.clone().unwrap_or_else(|| "partner-refused".into());
            tracing::warn!(message_id = %m.id, partner = %partner, code = %code, "envelope refused by partner");
            let error = (code, receipt.detail.clone().unwrap_or_default());
            (Status::Rejected, format!("refused by {partner}"), Some(error))
        }
    };
    Ok(Change {
        message_id: m.id.clone(),
        finish_job: Some(job.id),
        expect: vec![Status::Sealed, Status::Sent],
        events_before: vec![(Status::Sent, Some(format!("to {partner}")))],
        status: Some(new_status),
        detail: Some(detail),
        error,
        blobs: vec![(Blob::Receipt, body.to_vec())],
        ..Change::default()
    })
}

/// The attachment streams the envelope names, each sent before the envelope (resuming after
/// what the partner already holds), so that the partner can check them when it arrives.
pub(super) async fn send_files(
    ctx: &Ctx,
    partner: &crate::config::Partner,
    m: &Message,
    envelope_bytes: &[u8],
) -> Outcome {
    let files = envelope::parse_files(envelope_bytes).map_err(|p| Failure::Transient(p.detail))?;
    if files.is_empty() {
        return Ok(());
    }
    let manifest = match ctx.store.blob(&m.id, Blob::Attachments).await? {
        Some(b) => crate::files::Manifest::decode(&b).map_err(|p| Failure::Transient(p.detail))?,
        None => return Err(Failure::transient("the attachment list is missing")),
    };
    let local = ctx.config().files();
    for f in &files {
        let path = local.sealed(&manifest.folder, f.n);
        match crate::partner::send::upload(ctx, partner, &m.id, f.n, &path, f.size).await {
            Ok(sent) => {
                tracing::info!(message_id = %m.id, partner = %partner.node, attachment = f.n, bytes = sent, of = f.size, "attachment sent")
            }
            Err(e) => {
                crate::telemetry::relay_error(crate::telemetry::no_answer_class(&e));
                return Err(partner_failed(
                    ctx,
                    &partner.node,
                    format!("partner {} did not take attachment {}: {e}", partner.node, f.n),
                ));
            }
        }
    }
    Ok(())
}

/// A transient failure talking to a partner: counts towards its circuit, retried later.
pub(super) fn partner_failed(ctx: &Ctx, partner: &str, reason: String) -> Failure {
    ctx.partners.failure(partner, &reason);
    Failure::Transient(reason)
}

/// A partner's answer, verified: one receipt, or receipts signed together (`pst:Notices`).
pub(super) enum Answer {
    One(Receipt),
    Together(Vec<Receipt>),
}

impl Answer {
    /// The receipt about message `id`: the one, or its entry among those signed together.
    fn about(self, id: &str) -> Result<Receipt, Problem> {
        match self {
            Answer::One(r) => Ok(r),
            Answer::Together(all) => all.into_iter().find(|r| r.message_id == id).ok_or_else(|| {
                Problem::new(
                    Code::EnvelopeInvalid,
                    format!("the receipts signed together name no message {id}"),
                )
            }),
        }
    }
}

/// Checks a partner's answer against the receipt schema and the partner node's signature,
/// and reads it. The inner error refuses the answer; the outer one is this node's own failure.
pub(super) async fn read_receipt(ctx: &Ctx, partner: &str, body: &[u8]) -> Result<Result<Answer, Problem>, Failure> {
    let refused = |what: &str, p: Problem| Ok(Err(Problem::new(p.code, format!("{what}: {}", p.detail))));
    let together = match crate::xml::prescan::prescan(body, &ctx.config().limits) {
        Ok(scan) => scan.root.local == "Notices",
        Err(p) => return refused("receipt unreadable", p),
    };
    let keys = ctx.keys();
    let signer = keys
        .partner_nodes
        .get(partner)
        .cloned()
        .ok_or_else(|| Failure::transient("the partner's certificate is not in the directory"))?;
    let policy = keys.transport_for(partner);
    // Schema first, then the signature, on the one tree the validation thread parsed.
    let checked = ctx
        .validator
        .validate_then(ctx.envelope_schema.clone(), Arc::from(body), move |doc| {
            seal::verify_node_signed_in(doc, &signer, &policy).map(|i| signer[i].clone())
        })
        .await
        .map_err(|p| Failure::Transient(p.to_string()))?;
    match checked {
        Err(f) => return refused("receipt invalid", f.into_problem()),
        Ok(Err(p)) => return refused("receipt signature", p),
        // Signed with a revoked certificate: no proof of anything; asked again later.
        Ok(Ok(cert)) => ctx
            .revocation
            .usable(&cert, crate::revocation::CertRole::Node)
            .map_err(|p| Failure::Transient(p.detail))?,
    }
    Ok(match together {
        false => envelope::parse_receipt(body).map(Answer::One),
        true => envelope::parse_notices(body).map(Answer::Together),
    })
}

/// Whether a receipt verified as the partner's answers for our envelope: it names our message
/// id and binds our envelope's digest. Only a refusal may name no message (the partner could
/// not read the id) or carry no digest (it could not read the body). A receipt about another
/// message (a replay) proves nothing about ours.
fn answers(r: &Receipt, id: &str, digest: &[u8]) -> Result<(), Problem> {
    let refused = r.outcome == ReceiptOutcome::Refused;
    if r.message_id != id && !(refused && r.message_id == envelope::UNKNOWN_ID) {
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
async fn audit_receipt(ctx: &Ctx, m: &Message, partner: &str, p: &Problem) {
    tracing::warn!(message_id = %m.id, partner, code = %p.code, "receipt refused");
    ctx.audit
        .note(
            "partner-transport",
            "receipt-refused",
            serde_json::json!({"message_id": m.id, "partner": partner, "code": p.code.as_str()}),
        )
        .await;
}

/// A 2xx answer that is not a receipt for our envelope: the message stays unreceived and the
/// same envelope is sent again later (the partner answers a resend with its original receipt).
pub(super) async fn bad_receipt(ctx: &Ctx, m: &Message, partner: &str, p: &Problem) -> Failure {
    crate::telemetry::relay_error("bad-receipt");
    audit_receipt(ctx, m, partner, p).await;
    Failure::Transient(format!(
        "the answer of {partner} is not a receipt for this envelope: {p}"
    ))
}
