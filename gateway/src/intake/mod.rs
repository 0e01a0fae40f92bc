//! Intake: the checks every message from a legacy system passes before it is accepted, in order:
//! pre-scan (limits, forbidden constructs, encoding) → adapter by root element → XSD validation →
//! header extraction and consistency → permission (author = client's authority, type permitted)
//! → recipient in the directory → durable commit. Shared by every inbound wire format; `http`
//! is the only one so far. Knows nothing about partners' transport.

pub mod http;

use std::sync::Arc;

use adapters::{Header, MessageType};

use crate::config::Client;
use crate::node::Ctx;
use crate::problem::{Code, Problem};
use crate::store::{AcceptOutcome, NewOutbound};
use crate::xml::prescan::prescan;

/// A message that passed every check except storage.
#[derive(Debug, Clone)]
pub struct Checked {
    pub message_type: MessageType,
    pub header: Header,
    pub partner_node: String,
}

/// Identifies, validates and reads the header of an XÖV message (no permission checks).
/// Used for client intake and for opening received messages alike.
pub async fn identify_and_validate(ctx: &Ctx, bytes: &Arc<[u8]>) -> Result<(MessageType, Header), Problem> {
    let scan = prescan(bytes, &ctx.config.limits)?;
    let Some((adapter, message_type)) = ctx.registry.identify(&scan.root) else {
        return Err(Problem::new(
            Code::UnknownMessageType,
            format!("no adapter handles root element {}", scan.root),
        ));
    };
    let schema = Arc::new(adapter.schema().clone());
    ctx.validator
        .validate(schema, bytes.clone())
        .await?
        .map_err(|f| f.into_problem())?;
    let header = adapter
        .extract_header(bytes)
        .map_err(|e| Problem::new(Code::HeaderInvalid, e.to_string()))?;
    adapter
        .check_header(&message_type, &header)
        .map_err(|e| Problem::new(Code::HeaderInvalid, e.to_string()))?;
    Ok((message_type, header))
}

/// All checks for a client's submission.
pub async fn check(ctx: &Ctx, client: &Client, bytes: &Arc<[u8]>) -> Result<Checked, Problem> {
    let (message_type, header) = identify_and_validate(ctx, bytes).await?;
    if header.author != client.authority {
        return Err(Problem::new(
            Code::NotPermitted,
            format!(
                "the message's author {} is not the client's authority {}",
                header.author, client.authority
            ),
        ));
    }
    if !client.message_types.iter().any(|p| message_type.matches(p)) {
        return Err(Problem::new(
            Code::NotPermitted,
            format!("the client may not send {message_type}"),
        ));
    }
    let Some(partner) = ctx.config.partner_for(&header.reader) else {
        return Err(Problem::new(
            Code::UnknownRecipient,
            format!("no partner in the directory serves {}", header.reader),
        ));
    };
    Ok(Checked {
        message_type,
        header,
        partner_node: partner.node.clone(),
    })
}

/// Result of a submission: the id and whether it is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Accepted(String),
    AlreadyAccepted(String),
}

/// Checks and durably stores a client's submission.
pub async fn submit(ctx: &Ctx, client: &Client, bytes: Arc<[u8]>) -> Result<Submitted, Problem> {
    let checked = check(ctx, client, &bytes).await?;
    let digest = crate::envelope::hex(&crate::envelope::sha256(&bytes));
    crate::failpoint!("intake.before_commit");
    let deadline = crate::store::now_millis() + ctx.config.relay.retry_window.as_millis() as i64;
    let outcome = ctx
        .store
        .accept(NewOutbound {
            client: client.name.clone(),
            xoev_uuid: checked.header.message_uuid.clone(),
            digest,
            message_type: checked.message_type.to_string(),
            author: checked.header.author.clone(),
            reader: checked.header.reader.clone(),
            partner_node: checked.partner_node.clone(),
            payload: bytes.to_vec(),
            deadline,
        })
        .await
        .map_err(crate::node::store_problem)?;
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
                "message UUID {} was accepted before as {id} with different content",
                checked.header.message_uuid
            ),
        )),
    }
}
