//! Partner transport, receiving side: `POST /v1/transport` on the mutual-TLS listener, and the
//! same pipeline for envelopes arriving through the broker ([`from_broker`], where the sending
//! node is named in a header instead of presenting a TLS certificate).
//!
//! The TLS client certificate is mapped to exactly one directory entry; an envelope is accepted
//! only if its transport signature verifies against that partner's directory certificate and
//! the partner is its sender. Answers, all signed by this node: a receipt (`received`) once
//! the envelope is durable, the original receipt for a resend, or a refusal (a receipt with
//! outcome `refused` and a code) with a 4xx status. Notices (`delivered`, `refused`) from
//! partners arrive on the same endpoint as receipts and must carry the partner's signature.
//! Knows nothing about clients' intake; decryption and the content signature are the open
//! worker's job (`relay.rs`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::config::Partner;
use crate::ctx::Ctx;
use crate::envelope::{self, Outcome, Receipt, UNKNOWN_ID, seal};
use crate::problem::{Code, Problem};
use crate::store::{Blob, Change, Direction, NewInbound, ReceiveOutcome, Status, now_millis, rfc3339};
use crate::tls::PeerCert;
use crate::wire::{read_body, store_problem, xml_response};
use crate::xml::prescan::prescan;

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/v1/transport", post(transport))
        .route(
            "/v1/transport/files/{id}/{n}",
            axum::routing::head(super::files::offset).patch(super::files::append),
        )
        .fallback(|| async { Problem::new(Code::NotFound, "no such endpoint") })
        .with_state(ctx)
}

/// A refusal: a signed receipt with outcome `refused`, under the code's HTTP status.
pub(super) async fn refusal(ctx: &Ctx, message_id: &str, problem: &Problem, digest: Option<Vec<u8>>) -> Response {
    let r = refused(ctx, message_id, problem, digest).await;
    match seal::signed_receipt(&r, &ctx.keys().node) {
        Ok(body) => xml_response(problem.code.status(), body),
        Err(p) => p.into_response(),
    }
}

/// The receipt that refuses an envelope (or notice) with a problem, audited.
pub(super) async fn refused(ctx: &Ctx, message_id: &str, problem: &Problem, digest: Option<Vec<u8>>) -> Receipt {
    ctx.audit
        .note(
            "partner-transport",
            "refused",
            serde_json::json!({"message_id": message_id, "code": problem.code.as_str()}),
        )
        .await;
    tracing::warn!(message_id = %message_id, code = %problem.code, "envelope refused");
    Receipt {
        message_id: message_id.to_owned(),
        outcome: Outcome::Refused,
        code: Some(problem.code.as_str().to_owned()),
        detail: Some(problem.detail.clone()),
        envelope_sha256: digest,
        receiver_node: ctx.config().node_name.clone(),
        time: rfc3339(now_millis()),
    }
}

/// The directory entry whose certificate the TLS peer presented.
pub(super) fn partner_of(ctx: &Ctx, peer: &PeerCert) -> Option<Partner> {
    let fp = peer.fingerprint?;
    let config = ctx.config();
    let mut matching = config.partners.iter().filter(|p| p.fingerprints.contains(&fp));
    let first = matching.next()?;
    // A certificate shared by two entries identifies neither.
    matching.next().is_none().then(|| first.clone())
}

async fn transport(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    let peer = req.extensions().get::<PeerCert>().cloned().unwrap_or_default();
    let Some(partner) = partner_of(&ctx, &peer) else {
        let p = Problem::new(
            Code::SenderMismatch,
            "the TLS client certificate is not a partner's in the directory",
        );
        return refusal(&ctx, UNKNOWN_ID, &p, None).await;
    };
    let limits = ctx.config().limits.for_envelopes();
    let content_type = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = match read_body(&ctx, req.into_body(), limits.max_bytes).await {
        Ok(b) => b,
        Err(p) => return refusal(&ctx, UNKNOWN_ID, &p, None).await,
    };
    // Fault injection (tests only): `return(refuse)` reads several envelopes in one request as
    // one document, as a node of an earlier version does (and refuses it).
    let as_one = crate::failpoints::value("transport.several").as_deref() == Some("refuse");
    if super::batch::is_batch(&content_type) && !as_one {
        return super::batch::receive(&ctx, &partner, &content_type, bytes).await;
    }
    handle(&ctx, &partner, bytes.to_vec()).await
}

/// An envelope or notice that arrived through the broker, claiming to come from partner node
/// `node`. The claim decides only whose directory certificate the transport signature must
/// verify against, so a false claim is refused like a false TLS certificate would be.
pub async fn from_broker(ctx: &Ctx, node: Option<&str>, bytes: Vec<u8>) -> Response {
    let config = ctx.config();
    let Some(partner) = node.and_then(|n| config.partners.iter().find(|p| p.node == n)) else {
        let p = Problem::new(
            Code::SenderMismatch,
            "the sending node is not a partner in the directory",
        );
        return refusal(ctx, UNKNOWN_ID, &p, None).await;
    };
    let limits = ctx.config().limits.for_envelopes();
    if bytes.len() > limits.max_bytes {
        let p = Problem::new(Code::LimitExceeded, "the envelope exceeds the size limit");
        return refusal(ctx, UNKNOWN_ID, &p, None).await;
    }
    handle(ctx, partner, bytes).await
}

/// Why a document from a partner is not taken.
pub(super) enum NotTaken {
    /// Refused with a signed refusal (4xx) about message `id` (`UNKNOWN_ID` where unreadable).
    Refused(String, Problem),
    /// This node cannot check it now (its own failure, e.g. the validation queue is full):
    /// answered unsigned (5xx, 503), and the partner tries again.
    Failed(Problem),
}

/// The answer to a document not taken.
async fn not_taken(ctx: &Ctx, n: NotTaken, digest: Vec<u8>) -> Response {
    match n {
        NotTaken::Refused(id, p) => refusal(ctx, &id, &p, Some(digest)).await,
        NotTaken::Failed(p) => p.into_response(),
    }
}

/// Everything after the partner is known and the body read: the same for both transports.
async fn handle(ctx: &Ctx, partner: &Partner, bytes: Vec<u8>) -> Response {
    // Fault injection (tests only): `return(500)` answers 500 without storing anything;
    // `return(corrupt)` stores the envelope and answers a corrupted receipt.
    let injected = crate::failpoints::value("transport.answer");
    if injected.as_deref() == Some("500") {
        return Problem::new(Code::Internal, "injected fault").into_response();
    }
    let digest = envelope::sha256(&bytes);
    let root = match verified(ctx, partner, &bytes).await {
        Ok(root) => root,
        Err(n) => return not_taken(ctx, n, digest).await,
    };
    match root.as_str() {
        "Envelope" => {
            let mut answer = receive_envelope(ctx, partner, &bytes, digest).await;
            if injected.as_deref() == Some("corrupt") {
                answer = corrupt(answer).await;
            }
            answer
        }
        "Receipt" => receive_notice(ctx, partner, &bytes, digest).await,
        "Notices" => receive_notices(ctx, partner, &bytes, digest).await,
        other => {
            let p = Problem::new(Code::EnvelopeInvalid, format!("unexpected document {other}"));
            refusal(ctx, UNKNOWN_ID, &p, Some(digest)).await
        }
    }
}

/// Reads a document from a partner and checks its transport signature — the schema first,
/// then the partner node's directory certificate, nothing else, and not revoked — and returns
/// its root element's local name.
pub(super) async fn verified(ctx: &Ctx, partner: &Partner, bytes: &[u8]) -> Result<String, NotTaken> {
    let limits = ctx.config().limits.for_envelopes();
    let unknown = |p| NotTaken::Refused(UNKNOWN_ID.into(), p);
    let scan = prescan(bytes, &limits).map_err(unknown)?;
    if scan.root.namespace.as_deref() != Some(envelope::NS) {
        let p = Problem::new(
            Code::EnvelopeInvalid,
            format!("{} is not an envelope or receipt", scan.root),
        );
        return Err(unknown(p));
    }
    let Some(signer) = ctx.keys().partner_nodes.get(&partner.node).cloned() else {
        let p = Problem::new(
            Code::SenderMismatch,
            "the partner's certificate is not in the directory",
        );
        return Err(unknown(p));
    };
    let policy = ctx.keys().transport_for(&partner.node);
    let revocation = ctx.revocation.clone();
    // Schema first, then the signature, on the one tree the validation thread parsed.
    let checked = ctx
        .validator
        .validate_then(ctx.envelope_schema.clone(), Arc::from(bytes), move |doc| {
            let i = seal::verify_node_signed_in(doc, &signer, &policy)?;
            // The certificate that signed must not be revoked (OCSP, `[security.revocation]`).
            revocation.usable(&signer[i], crate::revocation::CertRole::Node)
        })
        .await;
    match checked {
        Ok(Ok(Ok(()))) => Ok(scan.root.local),
        Ok(Err(f)) => {
            let mut p = f.into_problem();
            p.code = Code::EnvelopeInvalid;
            Err(unknown(p))
        }
        Ok(Ok(Err(p))) => {
            let id = envelope::parse_header(bytes)
                .map(|h| h.message_id)
                .unwrap_or_else(|_| UNKNOWN_ID.into());
            Err(NotTaken::Refused(id, p))
        }
        Err(p) => Err(NotTaken::Failed(p)),
    }
}

/// Flips one bit in the middle of an answer's body (fault injection).
pub(super) async fn corrupt(answer: Response) -> Response {
    let (parts, body) = answer.into_parts();
    let mut bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let mid = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(mid) {
        *b ^= 0x01;
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Whether an envelope dated `created` lies further in our future than the tolerance allows.
fn too_far_ahead(ctx: &Ctx, created: &str) -> Option<String> {
    let created_ms = crate::store::parse_rfc3339(created)?;
    let tolerance = ctx.config().security.clock_tolerance.as_millis() as i64;
    let ahead = created_ms - now_millis();
    (ahead > tolerance).then(|| {
        format!(
            "the envelope is dated {} s ahead of this node's clock; the tolerance is {} s",
            ahead / 1000,
            tolerance / 1000
        )
    })
}

/// An envelope whose transport signature verified, checked against what this node takes: the
/// partner is its sending node and serves its sender, this node serves its recipient, it is
/// not dated ahead of our clock, and the attachment streams it names are here whole. Returns
/// what is to be stored, without our receipt yet.
pub(super) async fn acceptable(
    ctx: &Ctx,
    partner: &Partner,
    bytes: &[u8],
    digest: &[u8],
) -> Result<NewInbound, NotTaken> {
    let h = envelope::parse_header(bytes).map_err(|p| NotTaken::Refused(UNKNOWN_ID.into(), p))?;
    let refused = |p| NotTaken::Refused(h.message_id.clone(), p);
    if let Some(detail) = too_far_ahead(ctx, &h.created) {
        return Err(refused(Problem::new(Code::ClockSkew, detail)));
    }
    if h.sender_node != partner.node || !partner.authorities.contains(&h.sender) {
        let p = Problem::new(
            Code::SenderMismatch,
            format!(
                "the envelope names sender {} at node {}, but the TLS peer is node {}",
                h.sender, h.sender_node, partner.node
            ),
        );
        return Err(refused(p));
    }
    if !ctx.config().authorities.contains_key(&h.recipient) {
        let p = Problem::new(
            Code::UnknownRecipient,
            format!("{} is not served by this node", h.recipient),
        );
        return Err(refused(p));
    }
    // The attachment streams the (verified) header names: here whole and as signed.
    let files = envelope::parse_files(bytes).map_err(refused)?;
    super::files::check(ctx, partner, &h.message_id, &files)
        .await
        .map_err(refused)?;
    Ok(NewInbound {
        sender_node: partner.node.clone(),
        remote_id: h.message_id,
        xoev_uuid: h.xoev_uuid,
        digest: envelope::hex(digest),
        message_type: h.message_type,
        author: h.sender,
        reader: h.recipient,
        envelope: bytes.to_vec(),
        receipt: Vec::new(),
    })
}

/// The receipt this node gives for an envelope it holds durably.
pub(super) fn received(ctx: &Ctx, message_id: &str, digest: &[u8]) -> Receipt {
    Receipt {
        message_id: message_id.to_owned(),
        outcome: Outcome::Received,
        code: None,
        detail: None,
        envelope_sha256: Some(digest.to_vec()),
        receiver_node: ctx.config().node_name.clone(),
        time: rfc3339(now_millis()),
    }
}

async fn receive_envelope(ctx: &Ctx, partner: &Partner, bytes: &[u8], digest: Vec<u8>) -> Response {
    let mut inbound = match acceptable(ctx, partner, bytes, &digest).await {
        Ok(i) => i,
        Err(n) => return not_taken(ctx, n, digest).await,
    };
    crate::failpoint!("transport.before_store");
    let remote_id = inbound.remote_id.clone();
    let receipt = received(ctx, &remote_id, &digest);
    let receipt = match ctx.receipts.sign(ctx.keys(), &partner.node, receipt).await {
        Ok(r) => r.to_vec(),
        Err(p) => return p.into_response(),
    };
    inbound.receipt = receipt.clone();
    let outcome = ctx.store.receive(inbound).await;
    crate::failpoint!("transport.after_store");
    match outcome {
        Ok(ReceiveOutcome::Created(id)) => {
            tracing::info!(message_id = %id, remote_id = %remote_id, partner = %partner.node, "envelope received");
            ctx.wake(crate::store::JobKind::Open);
            xml_response(StatusCode::OK, receipt)
        }
        Ok(ReceiveOutcome::Duplicate { receipt: original, .. }) => {
            tracing::info!(remote_id = %remote_id, partner = %partner.node, "duplicate envelope answered with its original receipt");
            xml_response(StatusCode::OK, original)
        }
        Ok(ReceiveOutcome::Conflict) => refusal(ctx, &remote_id, &conflict(), Some(digest)).await,
        Err(e) => store_problem(e).into_response(),
    }
}

/// Why an envelope is refused whose message id came before with other content.
pub(super) fn conflict() -> Problem {
    Problem::new(
        Code::DuplicateConflict,
        "an envelope with this message id but different content was received before",
    )
}

/// The change that keeps `receipt` as the one this node gave for received message `id`
/// (`batch::receive`, when a conflict made it sign its answer again).
pub(super) fn keep_receipt(id: &str, receipt: Vec<u8>) -> Change {
    Change {
        message_id: id.to_owned(),
        blobs: vec![(Blob::Receipt, receipt)],
        ..Change::default()
    }
}

/// A notice about a message we sent to this partner. A notice about any other message (one we
/// never sent, or sent to another partner) is refused like an envelope: signed and audited.
async fn receive_notice(ctx: &Ctx, partner: &Partner, bytes: &[u8], digest: Vec<u8>) -> Response {
    let notice = match envelope::parse_receipt(bytes) {
        Ok(n) => n,
        Err(p) => return refusal(ctx, UNKNOWN_ID, &p, Some(digest)).await,
    };
    let change = match notice_change(ctx, partner, &notice, bytes).await {
        Ok(Ok(c)) => c,
        Ok(Err(p)) => return refusal(ctx, &notice.message_id, &p, Some(digest)).await,
        Err(e) => return store_problem(e).into_response(),
    };
    if let Some(change) = change {
        if let Err(e) = ctx.store.apply(change).await {
            return store_problem(e).into_response();
        }
        tracing::info!(remote_id = %notice.message_id, outcome = notice.outcome.as_str(), partner = %partner.node, "notice applied");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Notices about several messages under one signature (`envelope::build_notices`), applied
/// all at once (the store commits them together). One about a message that is not ours to
/// hear about is audited and left out; the rest still count. The signed batch is kept as
/// each message's notice. A store failure answers 5xx and the partner sends the batch again:
/// a notice applied twice changes nothing the second time.
async fn receive_notices(ctx: &Ctx, partner: &Partner, bytes: &[u8], digest: Vec<u8>) -> Response {
    let notices = match envelope::parse_notices(bytes) {
        Ok(n) => n,
        Err(p) => return refusal(ctx, UNKNOWN_ID, &p, Some(digest)).await,
    };
    let mut changes = Vec::with_capacity(notices.len());
    for notice in &notices {
        match notice_change(ctx, partner, notice, bytes).await {
            Ok(Ok(Some(change))) => changes.push(change),
            Ok(Ok(None)) => {}
            Ok(Err(p)) => {
                ctx.audit
                    .note(
                        "partner-transport",
                        "refused",
                        serde_json::json!({"message_id": notice.message_id, "code": p.code.as_str()}),
                    )
                    .await;
                tracing::warn!(remote_id = %notice.message_id, code = %p.code, "notice refused");
            }
            Err(e) => return store_problem(e).into_response(),
        }
    }
    if let Err(e) = crate::store::apply_all(&ctx.store, changes).await {
        return store_problem(e).into_response();
    }
    tracing::info!(notices = notices.len(), partner = %partner.node, "notices applied");
    StatusCode::NO_CONTENT.into_response()
}

/// What a notice changes (`None` for one that changes nothing); the inner error refuses it
/// (it is not about a message of ours sent to this partner), the outer one is the store's.
async fn notice_change(
    ctx: &Ctx,
    partner: &Partner,
    notice: &Receipt,
    bytes: &[u8],
) -> Result<Result<Option<Change>, Problem>, crate::store::StoreError> {
    let message = match ctx.store.message(&notice.message_id).await? {
        Some(m) if m.direction == Direction::Outbound && m.partner_node == partner.node => m,
        _ => {
            let p = Problem::new(Code::NotFound, "no message of ours sent to this partner has that id");
            return Ok(Err(p));
        }
    };
    // A dead letter the partner delivered after all (its receipt got lost) resolves itself.
    let expect = vec![Status::Sealed, Status::Sent, Status::Received, Status::Failed];
    let (status, detail, error) = match notice.outcome {
        Outcome::Delivered => (Status::Delivered, format!("delivered at {}", partner.node), None),
        Outcome::Refused => {
            let error = (
                notice.code.clone().unwrap_or_else(|| "refused".into()),
                notice.detail.clone().unwrap_or_default(),
            );
            (Status::Rejected, format!("refused by {}", partner.node), Some(error))
        }
        Outcome::Received => return Ok(Ok(None)),
    };
    Ok(Ok(Some(Change {
        message_id: message.id,
        expect,
        status: Some(status),
        detail: Some(detail),
        error,
        blobs: vec![(Blob::Notice, bytes.to_vec())],
        ..Change::default()
    })))
}
