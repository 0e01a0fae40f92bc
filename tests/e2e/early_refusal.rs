//! Refusals that come before the body is read (413 by size, 415, 401) reach the client as their
//! status, not as a connection reset while it is still sending, and the client's connection
//! pool stays usable (issue 27). XTA size refusals carry the XTA error 9023.

use std::time::Duration;

use crate::harness::Net;

/// POSTs `body`; the answer's status and text, or the transport error (a reset connection).
async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let mut req = http.post(url).header("content-type", content_type).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.map_err(|e| gateway::problem::error_chain(&e))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| e.to_string())?))
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_before_the_body_is_read_reach_the_client_and_its_connections_stay_usable() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let c = net.client(0);
    let http = crate::harness::https_client(&net.node(0).ca, None);
    let mib = |n: usize| vec![b'x'; n << 20];
    let soap = "application/soap+xml; charset=utf-8";
    for round in 0..3 {
        // XTA management and msgbox ports take 256 KiB: 413 with the XTA error 9023.
        for port in ["management", "msgbox"] {
            let url = format!("{}/xta/{port}", c.api);
            let (status, text) = post(&http, &url, Some(&c.token), soap, mib(4))
                .await
                .unwrap_or_else(|e| panic!("round {round}, {port}: no answer: {e}"));
            assert_eq!(status, 413, "{port}: {text}");
            assert!(
                text.contains("<code>9023</code>") && text.contains("limit-exceeded"),
                "{port}: {text}"
            );
        }
        // The Send port takes about 22 MiB (16 MiB of XML as base64 in SOAP): 24 MiB is 413.
        let url = format!("{}/xta/send", c.api);
        let (status, text) = post(&http, &url, Some(&c.token), soap, mib(24))
            .await
            .unwrap_or_else(|e| panic!("round {round}, send: no answer: {e}"));
        assert_eq!(status, 413, "send: {text}");
        assert!(text.contains("<code>9023</code>"), "send: {text}");
        let url = format!("{}/v1/messages", c.api);
        // REST over limits.max_bytes (16 MiB).
        let (status, text) = post(&http, &url, Some(&c.token), "application/xml", mib(20))
            .await
            .unwrap_or_else(|e| panic!("round {round}, 413: no answer: {e}"));
        assert_eq!(status, 413, "{text}");
        // A media type the endpoint does not take, with a large body.
        let (status, text) = post(&http, &url, Some(&c.token), "application/octet-stream", mib(4))
            .await
            .unwrap_or_else(|e| panic!("round {round}, 415: no answer: {e}"));
        assert_eq!(status, 415, "{text}");
        // No token, with a large body.
        let (status, text) = post(&http, &url, None, "application/xml", mib(4))
            .await
            .unwrap_or_else(|e| panic!("round {round}, 401: no answer: {e}"));
        assert_eq!(status, 401, "{text}");
        // The same client's next request goes through: no connection was left half-closed
        // in its pool.
        let r = http
            .get(format!("{}/v1/inbox", c.api))
            .bearer_auth(&c.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: the next request failed: {e}"));
        assert_eq!(r.status().as_u16(), 200);
    }
}
