//! `POST /v1/messages` with `multipart/form-data`: one part `message` (the XML, checked exactly
//! as a plain body) and parts `attachment` (opaque files with their file name and media type)
//! that travel with it, signed and encrypted with the content, as XTA attachments do.
//!
//! Read as a stream with bounds (multer): the message and its attachments together at most
//! `limits.max_bytes` (they travel inside the encrypted content for now), at most
//! `envelope::MAX_ATTACHMENTS` attachments, within the body timeout. A malformed or truncated
//! form, no `message` part or two of them, or a part of another name is refused with
//! `invalid-request`; nothing is stored unless the whole form arrived and passed.

use crate::ctx::Ctx;
use crate::envelope::{Attachment, MAX_ATTACHMENTS};
use crate::problem::{Code, Problem};

/// A form as it arrived: the message and its attachments, in order.
pub(super) struct Upload {
    pub message: Vec<u8>,
    pub attachments: Vec<Attachment>,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(Code::InvalidRequest, detail)
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        Code::LimitExceeded,
        format!("the message and its attachments exceed {limit} bytes"),
    )
}

/// A parser error as the client's problem. A body cut off (a client that went away) ends here
/// too; no answer reaches it, and nothing was stored.
fn problem(e: multer::Error, limit: usize) -> Problem {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => too_large(limit),
        multer::Error::UnknownField { field_name } => invalid(format!(
            "unknown part {:?}: send one part \"message\" and parts \"attachment\"",
            field_name.unwrap_or_default()
        )),
        multer::Error::IncompleteStream | multer::Error::IncompleteFieldData { .. } => {
            invalid("the multipart body is cut off (no closing boundary)")
        }
        multer::Error::StreamReadFailed(_) => invalid("the body could not be read to its end"),
        other => invalid(format!("malformed multipart body: {other}")),
    }
}

/// A part's header value a client gave (file name, media type): one line of at most 255
/// printable characters, or refused.
fn short(what: &str, v: &str) -> Result<String, Problem> {
    if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "an attachment's {what} must be 1 to 255 characters without control characters"
        )));
    }
    Ok(v.to_owned())
}

/// Reads the form of a `multipart/form-data` request (`content_type` is its header).
pub(super) async fn read(ctx: &Ctx, content_type: &str, body: axum::body::Body) -> Result<Upload, Problem> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|_| invalid("multipart/form-data needs a boundary parameter"))?;
    let config = ctx.config();
    let limit = config.limits.max_bytes;
    // The parts' own headers on top of the content: a bound for the whole stream.
    let stream_limit = (limit + 64 * 1024 + MAX_ATTACHMENTS * 1024) as u64;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["message", "attachment"])
        .size_limit(multer::SizeLimit::new().whole_stream(stream_limit));
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let timeout = config.server.body_timeout();
    let parts = async {
        let (mut message, mut attachments, mut total) = (None::<Vec<u8>>, Vec::new(), 0usize);
        while let Some(mut field) = form.next_field().await.map_err(|e| problem(e, limit))? {
            let is_message = field.name() == Some("message");
            if !is_message && attachments.len() == MAX_ATTACHMENTS {
                return Err(Problem::new(
                    Code::LimitExceeded,
                    format!("at most {MAX_ATTACHMENTS} attachments per message"),
                ));
            }
            let filename = field.file_name().map(|f| short("file name", f)).transpose()?;
            let media = field
                .content_type()
                .map(|m| short("media type", m.as_ref()))
                .transpose()?;
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| problem(e, limit))? {
                total += chunk.len();
                if total > limit {
                    return Err(too_large(limit));
                }
                data.extend_from_slice(&chunk);
            }
            if is_message {
                if message.replace(data).is_some() {
                    return Err(invalid("two parts named \"message\": send exactly one"));
                }
            } else {
                attachments.push(Attachment {
                    content_type: media.unwrap_or_else(|| "application/octet-stream".into()),
                    filename,
                    data,
                });
            }
        }
        let message = message.ok_or_else(|| invalid("no part named \"message\" (the XML message)"))?;
        Ok(Upload { message, attachments })
    };
    tokio::time::timeout(timeout, parts).await.unwrap_or_else(|_| {
        Err(Problem::new(
            Code::RequestTimeout,
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        ))
    })
}
