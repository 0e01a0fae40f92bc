//! Push delivery to a legacy system's HTTP callback: retried until it answers 2xx, with an
//! idempotency key, then `delivered` on both sides.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Net, fixture};

/// A minimal HTTP callback: the first `fail_first` requests get 503, later ones 200.
/// Records (idempotency key, body) of every request.
async fn callback(fail_first: usize) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/inbox", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Read head, then the body by Content-Length.
            let (head_end, len) = loop {
                let n = c.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    break (p + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let n = c.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("idempotency-key:").map(|v| v.trim().to_owned()))
                .unwrap_or_default();
            let n = {
                let mut v = s.lock().unwrap();
                v.push((key, buf[head_end..].to_vec()));
                v.len()
            };
            let status = if n <= fail_first {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = c
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn push_is_retried_until_the_callback_takes_it() {
    let net = Net::init(2);
    let (url, seen) = callback(1).await;
    net.edit_config(1, |t| {
        t.replace(
            "message_types = [\"*\"]",
            &format!("message_types = [\"*\"]\npush_url = {url:?}"),
        )
    });
    net.edit_config(1, |t| t.replace("retry_initial_ms = 500", "retry_initial_ms = 100"));
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let ca = net.client(0);
    let msg = fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml");
    let (status, v) = ca.submit(&msg).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    ca.wait_status(&id, "delivered", Duration::from_secs(30)).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one refused push, one accepted");
    assert_eq!(seen[0].0, seen[1].0, "the retry carries the same idempotency key");
    assert!(!seen[0].0.is_empty());
    assert_eq!(seen[1].1, msg, "the callback receives the exact message");
    // Pushed messages do not linger in the pull inbox.
    let (_, inbox) = net.client(1).get_json("/v1/inbox").await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 0);
}
