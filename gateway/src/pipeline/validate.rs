//! The validate stage: identify a message by its root element, validate it against its
//! adapter's schemas (a legacy format: its inbound XSLT, then all of it again on the result),
//! check code lists, read and check the header; for a client's submission also permission and
//! recipient. Used for client intake and for opening received messages alike; `for_client`
//! is the outbound transform for a client with `deliver_as`.

use std::sync::Arc;

use adapters::{Header, MessageType};

use crate::config::Client;
use crate::ctx::Ctx;
use crate::problem::{Code, Problem};
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
        let scan = prescan(&bytes, &ctx.config().limits)?;
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
            let max = ctx.config().limits.max_bytes;
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
    let config = ctx.config();
    let Some(partner) = config.partner_for(&header.reader) else {
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
