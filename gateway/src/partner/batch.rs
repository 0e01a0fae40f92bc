//! Several envelopes of one partner in one request: a `multipart/mixed` body with one
//! `application/xml` part per envelope (at most [`MAX_NOTICES`]), sent by the relay when more
//! envelopes to a partner are due than one (`pipeline::batch`), and answered with one signed
//! `pst:Notices` holding one entry per envelope, in the order of the parts: `received` for each
//! envelope this node holds durably (stored now, or before: a resend), else `refused` with its
//! code. Each envelope is checked exactly as one sent alone (`receive::verified`,
//! `receive::acceptable`); one refused does not refuse the others.
//!
//! The answer is signed before the envelopes are written and stored with them, as their
//! receipt, in the same commit; it is sent once that is durable. A conflict that shows only
//! at the write (an envelope with the same id but other content stored meanwhile) makes the
//! answer signed again with that entry refused, and the new one replaces the first where it
//! was stored. A resend of an envelope held is answered `received` in the new answer.
//!
//! Only over HTTPS. A node of an earlier version refuses such a request as a whole, and the
//! sender then sends to it one envelope at a time (`pipeline::batch`).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::receive::{self, NotTaken};
use crate::config::Partner;
use crate::ctx::Ctx;
use crate::envelope::{self, MAX_NOTICES, UNKNOWN_ID, seal};
use crate::problem::{Code, Problem};
use crate::store::{NewInbound, ReceiveOutcome, StoreError};
use crate::wire::{store_problem, xml_response};

/// The media type of a request that carries several envelopes.
pub const MIXED: &str = "multipart/mixed";

/// Whether a request's content type says it carries several envelopes.
pub fn is_batch(content_type: &str) -> bool {
    content_type
        .parse::<mime::Mime>()
        .is_ok_and(|m| m.essence_str() == MIXED)
}

/// The body of a request that carries `envelopes`, and its content type. The boundary is
/// random and occurs in none of them.
pub fn frame(envelopes: &[&[u8]]) -> (String, Vec<u8>) {
    let boundary = loop {
        let mut r = [0u8; 16];
        openssl::rand::rand_bytes(&mut r).expect("the random generator works");
        let b = format!("pst-{}", envelope::hex(&r));
        if envelopes
            .iter()
            .all(|e| memchr::memmem::find(e, b.as_bytes()).is_none())
        {
            break b;
        }
    };
    let mut body = Vec::with_capacity(envelopes.iter().map(|e| e.len() + 100).sum::<usize>() + 64);
    for e in envelopes {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/xml\r\n\r\n").as_bytes());
        body.extend_from_slice(e);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("{MIXED}; boundary={boundary}"), body)
}

/// The envelopes a request's body carries (`content_type` is its header): at least one, at
/// most [`MAX_NOTICES`]; `limit` bounds each.
pub async fn unframe(content_type: &str, body: bytes::Bytes, limit: usize) -> Result<Vec<bytes::Bytes>, Problem> {
    let invalid = |detail: String| Problem::new(Code::EnvelopeInvalid, detail);
    let boundary = content_type
        .parse::<mime::Mime>()
        .ok()
        .and_then(|m| m.get_param(mime::BOUNDARY).map(|b| b.as_str().to_owned()))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("a multipart/mixed body needs a boundary parameter".into()))?;
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().per_field(limit as u64));
    let stream = futures_lite::stream::once(Ok::<_, std::convert::Infallible>(body));
    let mut parts = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut envelopes = Vec::new();
    while let Some(part) = parts
        .next_field()
        .await
        .map_err(|e| invalid(format!("malformed multipart body: {e}")))?
    {
        if envelopes.len() == MAX_NOTICES {
            return Err(Problem::new(
                Code::LimitExceeded,
                format!("a request carries at most {MAX_NOTICES} envelopes"),
            ));
        }
        let bytes = part
            .bytes()
            .await
            .map_err(|e| invalid(format!("malformed multipart body: {e}")))?;
        envelopes.push(bytes);
    }
    if envelopes.is_empty() {
        return Err(invalid("the multipart body carries no envelope".into()));
    }
    Ok(envelopes)
}

/// `POST /v1/transport` with several envelopes (`multipart/mixed`) from `partner`.
pub(super) async fn receive(ctx: &Arc<Ctx>, partner: &Partner, content_type: &str, body: bytes::Bytes) -> Response {
    // Fault injection (tests only), as for one envelope: `return(500)`, `return(corrupt)`.
    let injected = crate::failpoints::value("transport.answer");
    if injected.as_deref() == Some("500") {
        return Problem::new(Code::Internal, "injected fault").into_response();
    }
    let limit = ctx.config().limits.for_envelopes().max_bytes;
    let envelopes = match unframe(content_type, body, limit).await {
        Ok(e) => e,
        Err(p) => return receive::refusal(ctx, UNKNOWN_ID, &p, None).await,
    };
    let digests: Vec<Vec<u8>> = envelopes.iter().map(|e| envelope::sha256(e)).collect();
    let n = envelopes.len();
    let mut checked = match checked(ctx, partner, envelopes, &digests).await {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    // The answer as it stands when every acceptable envelope is held, signed before the write,
    // so that it is stored with them in one commit.
    let mut entries = Vec::with_capacity(n);
    for (check, digest) in checked.iter().zip(&digests) {
        entries.push(match check {
            Ok(inbound) => receive::received(ctx, &inbound.remote_id, digest),
            Err(refusal) => receive::refused(ctx, &refusal.0, &refusal.1, Some(digest.clone())).await,
        });
    }
    let signed = match seal::signed_notices(&entries, &ctx.keys().node) {
        Ok(s) => s,
        Err(p) => return p.into_response(),
    };
    crate::failpoint!("transport.before_store");
    let stored = match stored(ctx, &mut checked, &signed).await {
        Ok(s) => s,
        Err(e) => return store_problem(e).into_response(),
    };
    crate::failpoint!("transport.after_store");
    let (mut created, mut conflicts) = (Vec::new(), false);
    for (i, (check, outcome)) in checked.iter().zip(stored).enumerate() {
        let Ok(inbound) = check else { continue };
        match outcome {
            Some(ReceiveOutcome::Created(id)) => {
                tracing::info!(message_id = %id, remote_id = %inbound.remote_id, partner = %partner.node, "envelope received");
                created.push(id);
            }
            Some(ReceiveOutcome::Duplicate { .. }) => {
                tracing::info!(remote_id = %inbound.remote_id, partner = %partner.node, "duplicate envelope answered with a new receipt");
            }
            Some(ReceiveOutcome::Conflict) | None => {
                let p = receive::conflict();
                entries[i] = receive::refused(ctx, &inbound.remote_id, &p, Some(digests[i].clone())).await;
                conflicts = true;
            }
        }
    }
    if !created.is_empty() {
        ctx.wake(crate::store::JobKind::Open);
    }
    // A conflict shows only at the write (an envelope with that id but other content came
    // first): the answer is signed again with it refused, and replaces the first where it was
    // stored.
    let signed = match conflicts {
        false => signed,
        true => match seal::signed_notices(&entries, &ctx.keys().node) {
            Ok(s) => s,
            Err(p) => return p.into_response(),
        },
    };
    if conflicts {
        let changes = created
            .iter()
            .map(|id| receive::keep_receipt(id, signed.clone()))
            .collect();
        if let Err(e) = crate::store::apply_all(&ctx.store, changes).await {
            return store_problem(e).into_response();
        }
    }
    tracing::info!(envelopes = n, created = created.len(), partner = %partner.node, "envelopes received together");
    let response = xml_response(StatusCode::OK, signed);
    match injected.as_deref() == Some("corrupt") {
        true => receive::corrupt(response).await,
        false => response,
    }
}

/// Each envelope checked as one sent alone, all at once (the validation threads share them):
/// what is to be stored, or why not. `Err`: this node cannot check them now (nothing is
/// stored; the partner sends them again).
async fn checked(
    ctx: &Arc<Ctx>,
    partner: &Partner,
    envelopes: Vec<bytes::Bytes>,
    digests: &[Vec<u8>],
) -> Result<Vec<Result<NewInbound, Box<(String, Problem)>>>, Problem> {
    let mut checking = tokio::task::JoinSet::new();
    for (i, (bytes, digest)) in envelopes.into_iter().zip(digests.iter().cloned()).enumerate() {
        let (ctx, partner) = (ctx.clone(), partner.clone());
        checking.spawn(async move {
            let check = match receive::verified(&ctx, &partner, &bytes).await {
                Ok(root) if root == "Envelope" => receive::acceptable(&ctx, &partner, &bytes, &digest).await,
                Ok(other) => Err(NotTaken::Refused(
                    UNKNOWN_ID.into(),
                    Problem::new(
                        Code::EnvelopeInvalid,
                        format!("only envelopes travel together, not {other}"),
                    ),
                )),
                Err(n) => Err(n),
            };
            (i, check)
        });
    }
    let mut all = Vec::new();
    all.resize_with(checking.len(), || {
        Err(Box::new((
            UNKNOWN_ID.to_owned(),
            Problem::new(Code::Internal, "not checked"),
        )))
    });
    while let Some(done) = checking.join_next().await {
        let (i, check) = done.map_err(|e| Problem::new(Code::Internal, format!("a check ended abnormally: {e}")))?;
        all[i] = match check {
            Ok(inbound) => Ok(inbound),
            Err(NotTaken::Refused(id, p)) => Err(Box::new((id, p))),
            Err(NotTaken::Failed(p)) => return Err(p),
        };
    }
    Ok(all)
}

/// Stores every acceptable envelope with `receipt`, all at once; `None` for those refused.
async fn stored(
    ctx: &Ctx,
    checked: &mut [Result<NewInbound, Box<(String, Problem)>>],
    receipt: &[u8],
) -> Result<Vec<Option<ReceiveOutcome>>, StoreError> {
    let mut storing = tokio::task::JoinSet::new();
    for (i, check) in checked.iter_mut().enumerate() {
        if let Ok(inbound) = check {
            // The envelope's bytes move to the store; the rest stays for the answer.
            let envelope = std::mem::take(&mut inbound.envelope);
            let (store, inbound) = (
                ctx.store.clone(),
                NewInbound {
                    envelope,
                    receipt: receipt.to_vec(),
                    ..inbound.clone()
                },
            );
            storing.spawn(async move { (i, store.receive(inbound).await) });
        }
    }
    let mut outcomes = vec![None; checked.len()];
    let mut first_error = None;
    while let Some(done) = storing.join_next().await {
        match done {
            Ok((i, Ok(outcome))) => outcomes[i] = Some(outcome),
            Ok((_, Err(e))) => first_error = first_error.or(Some(e)),
            Err(e) => first_error = first_error.or(Some(StoreError::Failed(format!("a write ended abnormally: {e}")))),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(outcomes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn envelopes_framed_together_come_apart_byte_for_byte() {
        let a = b"<pst:Envelope>one\r\n--not-a-boundary</pst:Envelope>".to_vec();
        let b = vec![b'x'; 100_000];
        let c = b"\r\n".to_vec();
        let (content_type, body) = frame(&[&a, &b, &c]);
        assert!(is_batch(&content_type), "{content_type}");
        let parts = unframe(&content_type, body.into(), 1 << 20).await.unwrap();
        assert_eq!(parts, vec![a, b, c]);
    }

    #[tokio::test]
    async fn a_malformed_or_oversized_batch_is_refused_with_a_code() {
        let (content_type, body) = frame(&[b"<a/>", &[b'y'; 2000]]);
        let too_big = unframe(&content_type, body.clone().into(), 1000).await.unwrap_err();
        assert_eq!(too_big.code, Code::EnvelopeInvalid, "{too_big}");
        let cut = unframe(&content_type, body[..body.len() - 10].to_vec().into(), 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(cut.code, Code::EnvelopeInvalid);
        let none = unframe("multipart/mixed", body.into(), 1 << 20).await.unwrap_err();
        assert!(none.detail.contains("boundary"), "{none}");
        let many: Vec<&[u8]> = vec![b"<a/>"; MAX_NOTICES + 1];
        let (content_type, body) = frame(&many);
        let p = unframe(&content_type, body.into(), 1 << 20).await.unwrap_err();
        assert_eq!(p.code, Code::LimitExceeded);
        assert!(!is_batch("application/xml"));
    }
}
