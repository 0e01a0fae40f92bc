//! Partner transport, sending side: one request to a partner node's transport and its answer
//! — an HTTPS POST over mutual TLS with the node's identity (only the partner's own directory
//! certificate is accepted, `tls::relay_client`), or, for a partner reached through the broker,
//! a request/reply over its transport queue. The only code that sends to partner nodes.

use crate::ctx::Ctx;

/// One request to a partner's transport and its answer (status and body): an HTTPS POST over
/// mutual TLS (to one of its addresses, failing over between them), or, for a partner
/// reached through the broker, a request/reply over its transport queue. `Err` means no
/// answer (unreachable, timed out).
pub async fn post(
    ctx: &Ctx,
    partner: &crate::config::Partner,
    body: Vec<u8>,
) -> Result<(hyper::StatusCode, Vec<u8>), String> {
    if let Some(queue) = &partner.amqp_queue {
        let (status, answer) = ctx
            .broker
            .call_partner(&ctx.config().node_name, queue, body, ctx.config().relay.request_timeout)
            .await?;
        let status = hyper::StatusCode::from_u16(status).map_err(|e| e.to_string())?;
        return Ok((status, answer));
    }
    post_https_any(ctx, partner, "application/xml", body).await
}

/// Several envelopes to a partner in one request (`super::batch`), over HTTPS only; the
/// answer as for [`post`].
pub async fn post_together(
    ctx: &Ctx,
    partner: &crate::config::Partner,
    envelopes: &[&[u8]],
) -> Result<(hyper::StatusCode, Vec<u8>), String> {
    if partner.amqp_queue.is_some() {
        return Err("envelopes travel together over HTTPS only".into());
    }
    let (content_type, body) = super::batch::frame(envelopes);
    post_https_any(ctx, partner, &content_type, body).await
}

/// A POST to one of a partner's HTTPS transport addresses.
async fn post_https_any(
    ctx: &Ctx,
    partner: &crate::config::Partner,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(hyper::StatusCode, Vec<u8>), String> {
    // A partner on several machines: its addresses in turn, the one that answered last first.
    // The next address is tried at once only when this one took no connection; after a
    // timeout or a broken exchange the next attempt starts there (the partner may have stored
    // the envelope: a resend to any of its addresses gets the original receipt).
    let urls = &partner.transport_urls;
    let first = ctx.partners.address(&partner.node, urls.len());
    // Shared, not copied, by each address's attempt.
    let body = bytes::Bytes::from(body);
    let mut failed = Vec::new();
    for k in 0..urls.len() {
        let i = (first + k) % urls.len();
        match post_https(ctx, &urls[i], content_type, body.clone()).await {
            Ok(answer) => {
                if k > 0 {
                    ctx.partners.prefer_address(&partner.node, i);
                }
                return Ok(answer);
            }
            Err((e, connected)) => {
                failed.push(if urls.len() > 1 { format!("{}: {e}", urls[i]) } else { e });
                if connected {
                    ctx.partners.prefer_address(&partner.node, (i + 1) % urls.len());
                    break;
                }
            }
        }
    }
    Err(if failed.is_empty() {
        "the partner has no transport address".into()
    } else {
        failed.join("; ")
    })
}

/// One HTTPS exchange with a partner's transport address; an error says whether a
/// connection was made (the request may have arrived).
async fn post_https(
    ctx: &Ctx,
    url: &str,
    content_type: &str,
    body: bytes::Bytes,
) -> Result<(hyper::StatusCode, Vec<u8>), (String, bool)> {
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(whole(body))
        .map_err(|e| (format!("bad transport URL: {e}"), false))?;
    let exchange = async {
        let response = ctx
            .relay_client()
            .request(request)
            .await
            .map_err(|e| (crate::problem::error_chain(&e), !e.is_connect()))?;
        let status = response.status();
        // Receipts are small: a partner cannot make us buffer more than this.
        let answer = http_body_util::BodyExt::collect(http_body_util::Limited::new(response.into_body(), MAX_ANSWER))
            .await
            .map_err(|e| (format!("reading the answer failed: {e}"), true))?;
        Ok((status, answer.to_bytes().to_vec()))
    };
    tokio::time::timeout(ctx.config().relay.request_timeout, exchange)
        .await
        .map_err(|_| {
            let e = format!(
                "request timed out: no answer within {} ms",
                ctx.config().relay.request_timeout.as_millis()
            );
            (e, true)
        })?
}

/// The largest answer (receipt or refusal) read from a partner.
const MAX_ANSWER: usize = 1 << 20;

/// A body sent whole.
fn whole(body: bytes::Bytes) -> crate::tls::RelayBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The URL of a message's attachment `n` at a transport address (`…/v1/transport`).
fn file_url(transport: &str, message_id: &str, n: usize) -> String {
    format!("{}/files/{message_id}/{n}", transport.trim_end_matches('/'))
}

/// How many bytes of attachment `n` of a message the partner holds durably (a `HEAD`).
/// What the partner holds of a stream: its offset, and whether the stream is complete there
/// (`Upload-Length` answered too). A part with every byte but not yet complete still needs an
/// (empty) `PATCH` to be finished.
async fn partner_offset(ctx: &Ctx, url: &str) -> Result<(u64, bool), String> {
    let request = hyper::Request::head(url)
        .body(whole(bytes::Bytes::new()))
        .map_err(|e| format!("bad transport URL: {e}"))?;
    let response = tokio::time::timeout(ctx.config().relay.request_timeout, ctx.relay_client().request(request))
        .await
        .map_err(|_| "the partner did not answer in time".to_owned())?
        .map_err(|e| crate::problem::error_chain(&e))?;
    if !response.status().is_success() {
        return Err(format!(
            "the partner answered {} to the offset query",
            response.status()
        ));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    };
    let offset = header(UPLOAD_OFFSET).ok_or_else(|| "the partner's answer names no Upload-Offset".to_owned())?;
    Ok((offset, header(UPLOAD_LENGTH) == Some(offset)))
}

/// The header naming a transfer's offset (as in the tus resumable upload protocol 1.0).
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// The header naming a transfer's whole length.
pub const UPLOAD_LENGTH: &str = "upload-length";

/// Sends attachment `n` of a message (the encrypted stream at `path`, `size` bytes) to the
/// partner's transport, resuming after what the partner already holds durably: asks the
/// offset, then streams the rest from the file. Returns the bytes sent now. `Err`: no (good)
/// answer; the next attempt asks again.
pub async fn upload(
    ctx: &Ctx,
    partner: &crate::config::Partner,
    message_id: &str,
    n: usize,
    path: &std::path::Path,
    size: u64,
) -> Result<u64, String> {
    use tokio::io::AsyncSeekExt;
    let urls = &partner.transport_urls;
    let Some(transport) = urls.get(ctx.partners.address(&partner.node, urls.len())) else {
        return Err("the partner has no transport address".into());
    };
    let url = file_url(transport, message_id, n);
    let (offset, complete) = partner_offset(ctx, &url).await?;
    if complete && offset == size {
        return Ok(0);
    }
    let offset = offset.min(size);
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("sealed attachment {n}: {e}"))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| format!("sealed attachment {n}: {e}"))?;
    let rest = size - offset;
    let stream = tokio_util::io::ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(file, rest), 256 * 1024);
    // Fault injection (tests only): `return(corrupt)` flips a bit of every piece sent.
    let corrupt = crate::failpoints::value("relay.file_corrupt").is_some();
    let body = http_body_util::StreamBody::new(futures_lite::StreamExt::map(stream, move |c| {
        c.map(|piece| {
            if !corrupt {
                return hyper::body::Frame::data(piece);
            }
            let mut piece = piece.to_vec();
            piece[0] ^= 1;
            hyper::body::Frame::data(bytes::Bytes::from(piece))
        })
    }));
    let request = hyper::Request::patch(&url)
        .header(hyper::header::CONTENT_TYPE, "application/offset+octet-stream")
        .header(hyper::header::CONTENT_LENGTH, rest)
        .header(UPLOAD_OFFSET, offset)
        .header(UPLOAD_LENGTH, size)
        .body(http_body_util::combinators::UnsyncBoxBody::new(body))
        .map_err(|e| format!("bad transport URL: {e}"))?;
    // A whole exchange's timeout, plus a second for every 8 MiB (an upload's own pace).
    let timeout = ctx.config().relay.request_timeout + std::time::Duration::from_secs(rest / (8 << 20));
    let response = tokio::time::timeout(timeout, ctx.relay_client().request(request))
        .await
        .map_err(|_| format!("sending attachment {n} took longer than {} s", timeout.as_secs()))?
        .map_err(|e| crate::problem::error_chain(&e))?;
    let status = response.status();
    let held = response
        .headers()
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match held {
        Some(held) if status.is_success() && held == size => {
            crate::telemetry::attachment_sent(rest);
            Ok(rest)
        }
        _ => Err(format!("the partner answered {status} to attachment {n}")),
    }
}
