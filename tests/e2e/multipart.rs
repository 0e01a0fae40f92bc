//! REST intake with attachments (issue 27, first part): `POST /v1/messages` as
//! `multipart/form-data` with one `message` part and `attachment` parts; the attachments travel
//! with the message to the partner's client, which fetches them whole or by `Range`. Bad forms
//! are refused with a code and store nothing.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::harness::Net;

pub const BOUNDARY: &str = "pst-7d1f0c2a9b8e4f6a";

/// A form part: (part name, file name, media type, bytes).
pub type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A form of `parts`; `close` adds the final boundary.
pub fn form(parts: &[Part<'_>], close: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, media, data) in parts {
        write!(out, "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").unwrap();
        if let Some(f) = filename {
            write!(out, "; filename=\"{f}\"").unwrap();
        }
        out.extend_from_slice(b"\r\n");
        if let Some(m) = media {
            write!(out, "Content-Type: {m}\r\n").unwrap();
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        write!(out, "--{BOUNDARY}--\r\n").unwrap();
    }
    out
}

/// Bytes that look like nothing in particular (never the boundary).
pub fn noise(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b
}

pub async fn post_form(net: &Net, body: Vec<u8>) -> (u16, Value) {
    let c = net.client(0);
    let r = c
        .http
        .post(format!("{}/v1/messages", c.api))
        .bearer_auth(&c.token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits (10 s at most) until node 0 keeps at most `n` upload folders: those of refused or
/// repeated forms go once their request ends.
async fn uploads_at_most(net: &Net, n: usize) {
    let uploads = crate::harness::node_dir(net, 0).join("data/attachments/out");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0) > n {
        assert!(
            std::time::Instant::now() < deadline,
            "upload folders left behind in {uploads:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attachments_travel_with_the_message_and_are_fetched_whole_or_by_range() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (_, message) = net.message(0, 1);
    let plan = noise(1 << 20);
    let parts: &[Part<'_>] = &[
        ("message", None, Some("application/xml"), &message),
        ("attachment", Some("plan.pdf"), Some("application/pdf"), &plan),
        ("attachment", Some("notes.txt"), Some("text/plain"), b"hello, b"),
    ];
    let (status, v) = post_form(&net, form(parts, true)).await;
    assert_eq!(status, 202, "{v}");

    let cb = net.client(1);
    let inbox = cb.wait_inbox(1, Duration::from_secs(30)).await;
    let (_, list) = cb.get_json(&format!("/v1/inbox/{}/attachments", inbox[0])).await;
    let list = list["attachments"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        (&list[0]["filename"], &list[0]["content_type"], &list[0]["size"]),
        (&"plan.pdf".into(), &"application/pdf".into(), &(1 << 20).into())
    );
    assert_eq!(list[1]["filename"], "notes.txt");
    let (_, got) = cb.get_bytes(&format!("/v1/inbox/{}/attachments/0", inbox[0])).await;
    assert!(got == plan, "the attachment arrives byte for byte");
    // The XML is the message alone.
    let (_, xml) = cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await;
    assert_eq!(xml, message);

    // Ranges: a slice, the last bytes, and one past the end.
    let range = |n: usize, spec: &'static str| {
        let url = format!("{}/v1/inbox/{}/attachments/{n}", cb.api, inbox[0]);
        let req = cb.http.get(url).bearer_auth(&cb.token).header("range", spec);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let content_range = r
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (status, content_range, r.bytes().await.unwrap().to_vec())
        }
    };
    let (status, content_range, body) = range(0, "bytes=100-199").await;
    assert_eq!((status, content_range.as_str()), (206, "bytes 100-199/1048576"));
    assert!(body == plan[100..200]);
    let (status, content_range, body) = range(1, "bytes=-1").await;
    assert_eq!(
        (status, content_range.as_str(), body.as_slice()),
        (206, "bytes 7-7/8", &b"b"[..])
    );
    let (status, content_range, _) = range(0, "bytes=2000000-").await;
    assert_eq!((status, content_range.as_str()), (416, "bytes */1048576"));
}

/// A client that sends part of a body and goes away (TLS to node `i`'s API, raw).
fn disconnect_mid_upload(net: &Net, i: usize, head: &str, part: &[u8]) {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(&net.node(i).ca).unwrap();
    let addr = net.node(i).api.trim_start_matches("https://").to_owned();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = b.build().connect("localhost", tcp).unwrap();
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(part).unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_forms_are_refused_with_a_code_and_store_nothing() {
    let net = Net::init(2);
    net.edit_config(0, |t| {
        t.replace("max_bytes = 16777216", "max_bytes = 524288")
            .replace("max_attachment_bytes = 4294967296", "max_attachment_bytes = 524288")
    });
    let _a = net.start(0).await;
    let (_, message) = net.message(0, 1);
    let m: &[u8] = &message;
    let refused = |(status, v): (u16, Value), want: (u16, &str), what: &str| {
        assert_eq!((status, v["code"].as_str().unwrap_or_default()), want, "{what}: {v}");
        assert!(!v["detail"].as_str().unwrap_or_default().is_empty(), "{what}: {v}");
        v
    };
    let invalid = (400, "invalid-request");
    let cut = form(&[("message", None, None, m)], false);
    let v = refused(post_form(&net, cut).await, invalid, "no closing boundary");
    assert!(v["detail"].as_str().unwrap().contains("cut off"), "{v}");
    let only_files = form(&[("attachment", Some("a.bin"), None, b"x")], true);
    let v = refused(post_form(&net, only_files).await, invalid, "no message part");
    assert!(v["detail"].as_str().unwrap().contains("\"message\""), "{v}");
    let two = form(&[("message", None, None, m), ("message", None, None, m)], true);
    refused(post_form(&net, two).await, invalid, "two message parts");
    let other = form(&[("message", None, None, m), ("extra", None, None, b"x")], true);
    refused(post_form(&net, other).await, invalid, "a part of another name");
    // The message part gets the checks a plain body gets, with line and column.
    let broken = form(&[("message", None, None, b"<a>\n<b></a>")], true);
    let v = refused(post_form(&net, broken).await, (400, "not-well-formed"), "not XML");
    assert_eq!(v["errors"][0]["line"], 2, "{v}");
    // Over the limits: the message part at most limits.max_bytes, each attachment at most
    // limits.max_attachment_bytes (a second one after a good first one too).
    let big = noise(600 * 1024);
    let over = form(
        &[("message", None, None, m), ("attachment", Some("big"), None, &big)],
        true,
    );
    refused(
        post_form(&net, over).await,
        (413, "limit-exceeded"),
        "over max_attachment_bytes",
    );
    let second = form(
        &[
            ("message", None, None, m),
            ("attachment", Some("small"), None, b"x"),
            ("attachment", Some("big"), None, &big),
        ],
        true,
    );
    refused(
        post_form(&net, second).await,
        (413, "limit-exceeded"),
        "a second one too large",
    );
    let long_message = [m, &noise(600 * 1024)].concat();
    refused(
        post_form(&net, form(&[("message", None, None, &long_message)], true)).await,
        (413, "limit-exceeded"),
        "over max_bytes",
    );
    let many: Vec<Part<'_>> = std::iter::once(("message", None, None, m))
        .chain((0..101).map(|_| ("attachment", Some("a"), None, &b"x"[..])))
        .collect();
    refused(
        post_form(&net, form(&many, true)).await,
        (413, "limit-exceeded"),
        "101 attachments",
    );
    let control = form(
        &[("message", None, None, m), ("attachment", Some("a\u{7}b"), None, b"x")],
        true,
    );
    refused(
        post_form(&net, control).await,
        invalid,
        "a control character in a file name",
    );
    // A client that goes away in the middle of its upload.
    let c = net.client(0);
    let body = form(
        &[
            ("message", None, None, m),
            ("attachment", Some("a"), None, &noise(200_000)),
        ],
        true,
    );
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        c.token,
        body.len()
    );
    disconnect_mid_upload(&net, 0, &head, &body[..body.len() / 2]);

    // Nothing was stored, no file left behind; the node takes the next good form.
    let (_, all) = net.admin(0).get("/admin/api/messages").await;
    assert!(all["messages"].as_array().unwrap().is_empty(), "nothing stored: {all}");
    uploads_at_most(&net, 0).await;
    let good = form(
        &[("message", None, None, m), ("attachment", Some("a.txt"), None, b"x")],
        true,
    );
    let (status, v) = post_form(&net, good).await;
    assert_eq!(status, 202, "{v}");
    // A plain XML body still works as before, and a message without attachments as a form too.
    let (_, plain) = net.message(0, 1);
    assert_eq!(c.submit(&plain).await.0, 202);
    let (_, alone) = net.message(0, 1);
    let (status, v) = post_form(&net, form(&[("message", None, Some("text/xml"), &alone)], true)).await;
    assert_eq!(status, 202, "{v}");
}

/// A resubmission under the same message UUID is the same only with the same attachments: the
/// identical form is answered as the first (`200`, its id, its files kept); the same message
/// with another attachment, another file name or one attachment fewer is `409
/// duplicate-conflict`, and none of the resubmissions leaves an upload folder behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_resubmission_with_other_attachments_is_a_conflict() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let (_, message) = net.message(0, 1);
    let (plan, other) = (noise(64 << 10), noise(64 << 10));
    let with = |file: &[u8], name: &'static str, extra: bool| {
        let mut parts: Vec<Part<'_>> = vec![("message", None, Some("application/xml"), &message)];
        parts.push(("attachment", Some(name), Some("application/pdf"), file));
        if extra {
            parts.push(("attachment", Some("notes.txt"), Some("text/plain"), b"hello"));
        }
        form(&parts, true)
    };
    let (status, first) = post_form(&net, with(&plan, "plan.pdf", true)).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = post_form(&net, with(&plan, "plan.pdf", true)).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");
    for (what, body) in [
        ("another attachment", with(&other, "plan.pdf", true)),
        ("another file name", with(&plan, "plan-2.pdf", true)),
        ("one attachment fewer", with(&plan, "plan.pdf", false)),
    ] {
        let (status, v) = post_form(&net, body).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (409, Some("duplicate-conflict")),
            "{what}: {v}"
        );
    }
    // Only the first submission's folder stays.
    uploads_at_most(&net, 1).await;
    let (_, all) = net.admin(0).get("/admin/api/messages").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 1, "{all}");
}
