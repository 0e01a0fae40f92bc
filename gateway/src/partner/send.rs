//! Partner transport, sending side: one request to a partner node's transport and its answer
//! — an HTTPS POST over mutual TLS with the node's identity (only the partner's own directory
//! certificate is accepted, `tls::relay_client`), or, for a partner reached through the broker,
//! a request/reply over its transport queue. The only code that sends to partner nodes.

use crate::ctx::Ctx;

/// One request to a partner's transport and its answer (status and body): an HTTPS POST over
/// mutual TLS, or, for a partner reached through the broker, a request/reply over its
/// transport queue. `Err` means no answer (unreachable, timed out).
pub async fn post(
    ctx: &Ctx,
    partner: &crate::config::Partner,
    body: Vec<u8>,
) -> Result<(hyper::StatusCode, Vec<u8>), String> {
    if let Some(queue) = &partner.amqp_queue {
        let (status, answer) = ctx
            .broker
            .call_partner(&ctx.config.node_name, queue, body, ctx.config.relay.request_timeout)
            .await?;
        let status = hyper::StatusCode::from_u16(status).map_err(|e| e.to_string())?;
        return Ok((status, answer));
    }
    let request = hyper::Request::post(&partner.transport_url)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("bad transport URL: {e}"))?;
    let exchange = async {
        let response = ctx.relay_client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        // Receipts are small: a partner cannot make us buffer more than this.
        let answer = http_body_util::BodyExt::collect(http_body_util::Limited::new(response.into_body(), MAX_ANSWER))
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        Ok((status, answer.to_bytes().to_vec()))
    };
    tokio::time::timeout(ctx.config.relay.request_timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "request timed out: no answer within {} ms",
                ctx.config.relay.request_timeout.as_millis()
            )
        })?
}

/// The largest answer (receipt or refusal) read from a partner.
const MAX_ANSWER: usize = 1 << 20;

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
