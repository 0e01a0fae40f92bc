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
        match post_https(ctx, &urls[i], body.clone()).await {
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
async fn post_https(ctx: &Ctx, url: &str, body: bytes::Bytes) -> Result<(hyper::StatusCode, Vec<u8>), (String, bool)> {
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .body(http_body_util::Full::new(body))
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
