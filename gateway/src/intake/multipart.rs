//! `POST /v1/messages` with `multipart/form-data`: one part `message` (the XML, checked exactly
//! as a plain body) and parts `attachment` (opaque files with their file name and media type)
//! that travel with it, signed and encrypted with the content, as XTA attachments do.
//!
//! Read as a stream with bounds (multer): the message at most `limits.max_bytes` (it is held
//! in memory and checked like a plain body), each attachment at most
//! `limits.max_attachment_bytes`, written straight to a file of a new upload folder as it
//! arrives (`files.rs`), at most `envelope::MAX_ATTACHMENTS` of them; no piece may take longer
//! than the body timeout to arrive. A malformed or truncated form, no `message` part or two of
//! them, or a part of another name is refused with `invalid-request`; the upload folder is
//! removed unless the message is committed (the caller keeps it then).

use crate::ctx::Ctx;
use crate::envelope::MAX_ATTACHMENTS;
use crate::files::{Entry, Manifest, WriteError};
use crate::problem::{Code, Problem};

/// A form as it arrived: the message, and its attachments as durable files.
pub(super) struct Form {
    pub message: Vec<u8>,
    /// The folder (removed when dropped unless kept) and what it holds; none without attachments.
    pub files: Option<(crate::files::Upload, Manifest)>,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(Code::InvalidRequest, detail)
}

fn too_large(what: &str, limit: u64) -> Problem {
    Problem::new(Code::LimitExceeded, format!("{what} exceeds {limit} bytes"))
}

/// A parser error as the client's problem. A body cut off (a client that went away) ends here
/// too; no answer reaches it, and nothing was stored.
fn problem(e: multer::Error) -> Problem {
    match e {
        multer::Error::StreamSizeExceeded { limit } | multer::Error::FieldSizeExceeded { limit, .. } => {
            too_large("the form", limit)
        }
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
pub(super) async fn read(ctx: &Ctx, content_type: &str, body: axum::body::Body) -> Result<Form, Problem> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|_| invalid("multipart/form-data needs a boundary parameter"))?;
    let config = ctx.config();
    let (limit, file_limit) = (config.limits.max_bytes, config.limits.max_attachment_bytes);
    // The parts' own headers on top of the content: a bound for the whole stream.
    let stream_limit = (limit as u64 + 64 * 1024)
        .saturating_add((file_limit.saturating_add(1024)).saturating_mul(MAX_ATTACHMENTS as u64));
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["message", "attachment"])
        .size_limit(multer::SizeLimit::new().whole_stream(stream_limit));
    // The claimed length must fit the store's size limit before anything is written.
    let claimed = axum::body::HttpBody::size_hint(&body).lower();
    crate::wire::room_for_files(ctx, claimed).await?;
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    // An idle bound: every piece of the body within the body timeout, however large the whole.
    let timeout = config.server.body_timeout();
    let idle = || {
        Problem::new(
            Code::RequestTimeout,
            format!("the body stalled for {} ms", timeout.as_millis()),
        )
    };
    let files = config.files();
    let (mut message, mut upload, mut entries) = (None::<Vec<u8>>, None, Vec::new());
    loop {
        let next = tokio::time::timeout(timeout, form.next_field())
            .await
            .map_err(|_| idle())?;
        let Some(mut field) = next.map_err(problem)? else { break };
        if field.name() == Some("message") {
            let mut data = Vec::new();
            while let Some(chunk) = tokio::time::timeout(timeout, field.chunk())
                .await
                .map_err(|_| idle())?
                .map_err(problem)?
            {
                if data.len() + chunk.len() > limit {
                    return Err(too_large("the message part", limit as u64));
                }
                data.extend_from_slice(&chunk);
            }
            if message.replace(data).is_some() {
                return Err(invalid("two parts named \"message\": send exactly one"));
            }
            continue;
        }
        if entries.len() == MAX_ATTACHMENTS {
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
        if upload.is_none() {
            upload = Some(files.upload().await?);
        }
        let folder = upload.as_ref().expect("made above");
        let mut w = folder.create(entries.len(), file_limit).await?;
        while let Some(chunk) = tokio::time::timeout(timeout, field.chunk())
            .await
            .map_err(|_| idle())?
            .map_err(problem)?
        {
            w.write(&chunk).await.map_err(|e| match e {
                WriteError::TooLarge(l) => too_large("an attachment", l),
                WriteError::Io(p) => p,
            })?;
        }
        let (size, sha256) = w.finish().await?;
        entries.push(Entry {
            content_type: media.unwrap_or_else(|| "application/octet-stream".into()),
            filename,
            size,
            sha256: crate::envelope::hex(&sha256),
        });
    }
    let message = message.ok_or_else(|| invalid("no part named \"message\" (the XML message)"))?;
    let files = match upload {
        Some(u) => {
            // A body of unclaimed length: its files are counted now (they are on the disk).
            if claimed == 0 {
                crate::wire::room_for_files(ctx, 0).await?;
            }
            u.sync().await?;
            let manifest = Manifest {
                folder: u.name().to_owned(),
                files: entries,
            };
            Some((u, manifest))
        }
        None => None,
    };
    Ok(Form { message, files })
}
