//! Intake: the checks every message from a legacy system passes before it is accepted, in order:
//! pre-scan (limits, forbidden constructs, encoding) → adapter by root element → XSD validation →
//! (a legacy format: its inbound XSLT, then all of this again on the result) → code lists →
//! header extraction and consistency → permission (author = client's authority, type permitted)
//! → recipient in the directory → sealing (`pipeline::seal::at_intake`) → durable commit.
//! Shared by every inbound wire format: `http` (the REST API), `xta` (XTA 2 over SOAP, `soap`)
//! and the AMQP intake. Knows nothing about partners' transport.

pub mod amqp;
pub mod drop;
pub mod events;
pub mod http;
mod multipart;
pub mod soap;
pub mod xta;

use std::sync::Arc;

use crate::config::Client;
use crate::ctx::Ctx;
use crate::pipeline::validate::{Checked, check};
use crate::problem::{Code, Problem};
use crate::store::{AcceptOutcome, NewOutbound};

/// Result of a submission: the id and whether it is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Accepted(String),
    AlreadyAccepted(String),
}

/// Checks and durably stores a client's submission (counted in the metrics by outcome).
pub async fn submit(ctx: &Ctx, client: &Client, bytes: Arc<[u8]>) -> Result<Submitted, Problem> {
    submit_as(ctx, client, bytes, None, Vec::new(), &|_| Ok(())).await
}

/// [`submit`] for a wire format that brings more: an id the client chose, blobs to keep with
/// the message (XTA's metadata, attachments), and a check of what it brought against the
/// checked message (`agrees`), run after every other check and before the commit.
pub async fn submit_as(
    ctx: &Ctx,
    client: &Client,
    bytes: Arc<[u8]>,
    id: Option<String>,
    keep: Vec<(crate::store::Blob, Vec<u8>)>,
    agrees: &(dyn Fn(&Checked) -> Result<(), Problem> + Sync),
) -> Result<Submitted, Problem> {
    let started = std::time::Instant::now();
    let result = async {
        let checked = check(ctx, client, &bytes).await?;
        agrees(&checked)?;
        commit(ctx, client, &bytes, checked, id, keep).await
    }
    .await;
    let outcome = match &result {
        Ok(Submitted::Accepted(_)) => "accepted",
        Ok(Submitted::AlreadyAccepted(_)) => "duplicate",
        Err(p) => p.code.as_str(),
    };
    crate::telemetry::intake(outcome, started.elapsed());
    result
}

/// What a resubmission under the same message UUID must repeat to count as the same: the bytes
/// the client sent and, with attachments, each one's SHA-256, size, media type and file name in
/// order (not the folder they were written to). Without attachments it is the bytes' SHA-256,
/// as it always was.
fn digest_of(bytes: &[u8], keep: &[(crate::store::Blob, Vec<u8>)]) -> String {
    use crate::envelope::{hex, sha256};
    let manifest = keep
        .iter()
        .find(|(kind, _)| *kind == crate::store::Blob::Attachments)
        .and_then(|(_, b)| crate::files::Manifest::decode(b).ok());
    let Some(manifest) = manifest else {
        return hex(&sha256(bytes));
    };
    let mut h = openssl::sha::Sha256::new();
    h.update(&sha256(bytes));
    for e in &manifest.files {
        let size = e.size.to_string();
        let name = e.filename.as_deref().unwrap_or("");
        for field in [e.sha256.as_str(), &size, &e.content_type, name] {
            h.update(&(field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
    }
    hex(&h.finish())
}

/// Stores a checked submission durably (the digest is of what the client sent, see [`digest_of`]).
async fn commit(
    ctx: &Ctx,
    client: &Client,
    bytes: &[u8],
    checked: Checked,
    id: Option<String>,
    keep: Vec<(crate::store::Blob, Vec<u8>)>,
) -> Result<Submitted, Problem> {
    let digest = digest_of(bytes, &keep);
    // Attachments are sealed from their files by the relay.
    let sealed = if keep.iter().any(|(kind, _)| *kind == crate::store::Blob::Attachments) {
        None
    } else {
        crate::pipeline::seal::at_intake(ctx, id.as_deref(), &checked).await
    };
    crate::failpoint!("intake.before_commit");
    let deadline = crate::store::now_millis() + ctx.config().relay.retry_window.as_millis() as i64;
    let outcome = ctx
        .store
        .accept(NewOutbound {
            id,
            client: client.name.clone(),
            xoev_uuid: checked.header.message_uuid.clone(),
            digest,
            message_type: checked.message_type.to_string(),
            author: checked.header.author.clone(),
            reader: checked.header.reader.clone(),
            partner_node: checked.partner_node.clone(),
            payload: checked.payload.to_vec(),
            keep,
            deadline,
            sealed,
        })
        .await
        .map_err(crate::wire::store_problem)?;
    crate::failpoint!("intake.after_commit");
    match outcome {
        AcceptOutcome::Created(id) => {
            tracing::info!(message_id = %id, message_type = %checked.message_type, partner = %checked.partner_node, "message accepted");
            ctx.wake(crate::store::JobKind::Relay);
            Ok(Submitted::Accepted(id))
        }
        AcceptOutcome::Existing(id) => Ok(Submitted::AlreadyAccepted(id)),
        AcceptOutcome::Conflict(id) => Err(Problem::new(
            Code::DuplicateConflict,
            format!(
                "message UUID {} was accepted before as {id} with other content, or the id is taken",
                checked.header.message_uuid
            ),
        )),
    }
}
