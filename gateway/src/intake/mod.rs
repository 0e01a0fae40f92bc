//! Intake: the checks every message from a legacy system passes before it is accepted, in order:
//! pre-scan (limits, forbidden constructs, encoding) → adapter by root element → XSD validation →
//! (a legacy format: its inbound XSLT, then all of this again on the result) → code lists →
//! header extraction and consistency → permission (author = client's authority, type permitted)
//! → recipient in the directory → durable commit. Shared by every inbound wire format: `http`
//! (the REST API), `xta` (XTA 2 over SOAP, `soap`) and the AMQP intake. Knows nothing about
//! partners' transport.

pub mod http;
pub mod soap;
pub mod xta;

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
    /// What is stored and sent: the submitted bytes, or the standard message an adapter's
    /// inbound transform made of a legacy document.
    pub payload: Arc<[u8]>,
}

/// A message identified, schema-valid and with its header read.
#[derive(Debug, Clone)]
pub struct Validated {
    pub message_type: MessageType,
    pub header: Header,
    pub payload: Arc<[u8]>,
}

/// Identifies, validates and reads the header of an XÖV message (no permission checks). At the
/// node's own edge (`edge`: a client's submission) a legacy document is validated against its
/// own schema, transformed by its adapter's inbound stylesheet, and the result checked again
/// from the start; from a partner, a legacy format is refused before any transform runs. Used
/// for client intake and for opening received messages alike.
pub async fn identify_and_validate(ctx: &Ctx, bytes: &Arc<[u8]>, edge: bool) -> Result<Validated, Problem> {
    let mut bytes = bytes.clone();
    let mut transformed_by: Option<String> = None;
    loop {
        let scan = prescan(&bytes, &ctx.config.limits)?;
        let Some((adapter, message_type)) = ctx.registry.identify(&scan.root) else {
            return Err(Problem::new(
                Code::UnknownMessageType,
                match &transformed_by {
                    Some(a) => format!(
                        "adapter {a}'s transform produced {}, which no adapter handles",
                        scan.root
                    ),
                    None => format!("no adapter handles root element {}", scan.root),
                },
            ));
        };
        if !edge && adapter.transforms().inbound.is_some() {
            return Err(Problem::new(
                Code::UnknownMessageType,
                format!(
                    "partners send standard messages, not a legacy format ({})",
                    adapter.name()
                ),
            ));
        }
        let schema = Arc::new(adapter.schema().clone());
        ctx.validator
            .validate(schema, bytes.clone())
            .await?
            .map_err(|f| f.into_problem())?;
        if let Some(stylesheet) = adapter.transforms().inbound.clone() {
            if let Some(first) = &transformed_by {
                return Err(Problem::new(
                    Code::TransformFailed,
                    format!(
                        "adapter {first}'s transform produced another legacy document ({})",
                        adapter.name()
                    ),
                ));
            }
            let name = adapter.name().to_owned();
            let input = bytes.clone();
            let max = ctx.config.limits.max_bytes;
            let out = tokio::task::spawn_blocking(move || {
                crate::xml::xslt::transform_bounded(&name, &stylesheet, &input, max)
            })
            .await
            .map_err(|e| Problem::new(Code::Internal, format!("transform task failed: {e}")))??;
            transformed_by = Some(adapter.name().to_owned());
            bytes = out.into();
            continue;
        }
        // Code lists and header read the whole document: off the async threads.
        let (header, message_type) = {
            let (adapter, input) = (adapter.clone(), bytes.clone());
            tokio::task::spawn_blocking(move || {
                read_header(adapter.as_ref(), &message_type, &input).map(|h| (h, message_type))
            })
            .await
            .map_err(|e| Problem::new(Code::Internal, format!("header task failed: {e}")))??
        };
        return Ok(Validated {
            message_type,
            header,
            payload: bytes,
        });
    }
}

/// A received standard message in the form its client takes: as sent, or mapped by the
/// outbound transform of the client's `deliver_as` adapter (on a blocking thread).
pub async fn for_client(client: &Client, payload: Vec<u8>, registry: &adapters::Registry) -> Result<Vec<u8>, Problem> {
    let Some(name) = &client.deliver_as else {
        return Ok(payload);
    };
    let sheet = registry
        .get(name)
        .and_then(|a| a.transforms().outbound.clone())
        .ok_or_else(|| Problem::new(Code::Internal, format!("adapter {name} has no outbound transform")))?;
    let name = name.clone();
    tokio::task::spawn_blocking(move || crate::xml::xslt::transform(&name, &sheet, &payload))
        .await
        .map_err(|e| Problem::new(Code::Internal, format!("transform task failed: {e}")))?
}

/// The checks after schema validation: code lists (reported like schema errors), header
/// extraction, header consistency.
pub fn read_header(
    adapter: &dyn adapters::Adapter,
    message_type: &MessageType,
    bytes: &[u8],
) -> Result<Header, Problem> {
    check_codes(adapter, bytes)?;
    let header = adapter
        .extract_header(bytes)
        .map_err(|e| Problem::new(Code::HeaderInvalid, e.to_string()))?;
    adapter
        .check_header(message_type, &header)
        .map_err(|e| Problem::new(Code::HeaderInvalid, e.to_string()))?;
    Ok(header)
}

/// The adapter's checks beyond the schema (code lists), as a schema-invalid problem.
pub fn check_codes(adapter: &dyn adapters::Adapter, bytes: &[u8]) -> Result<(), Problem> {
    let findings = adapter.check_document(bytes);
    if let Some(first) = findings.first() {
        let detail = format!(
            "the document is not valid against its code lists: line {}, column {}: {}",
            first.line, first.column, first.message
        );
        let errors = findings
            .into_iter()
            .map(|f| crate::problem::Diagnostic {
                line: Some(f.line),
                column: Some(f.column),
                message: f.message,
            })
            .collect();
        return Err(Problem::new(Code::SchemaInvalid, detail).with_errors(errors));
    }
    Ok(())
}

/// All checks for a client's submission.
pub async fn check(ctx: &Ctx, client: &Client, bytes: &Arc<[u8]>) -> Result<Checked, Problem> {
    let Validated {
        message_type,
        header,
        payload,
    } = identify_and_validate(ctx, bytes, true).await?;
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
        payload,
    })
}

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

/// Stores a checked submission durably (the digest is of what the client sent).
async fn commit(
    ctx: &Ctx,
    client: &Client,
    bytes: &[u8],
    checked: Checked,
    id: Option<String>,
    keep: Vec<(crate::store::Blob, Vec<u8>)>,
) -> Result<Submitted, Problem> {
    let digest = crate::envelope::hex(&crate::envelope::sha256(bytes));
    crate::failpoint!("intake.before_commit");
    let deadline = crate::store::now_millis() + ctx.config.relay.retry_window.as_millis() as i64;
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
                "message UUID {} was accepted before as {id} with other content, or the id is taken",
                checked.header.message_uuid
            ),
        )),
    }
}
