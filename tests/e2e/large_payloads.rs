//! Large attachments (issue 27): streamed to a file at intake, encrypted as their own stream
//! (`xmlsec::stream`), sent beside the envelope with resumption after a partner's crash,
//! checked against the digest the sending node signed before `received`, decrypted and checked
//! against the author's digest at opening, fetched by the partner's client as a stream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Net, node_dir};
use crate::multipart::{form, noise, post_form};

/// Every file below `dir`, relative, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn attachments_dir(net: &Net, i: usize) -> PathBuf {
    node_dir(net, i).join("data/attachments")
}

fn sha256_hex(b: &[u8]) -> String {
    gateway::envelope::hex(&gateway::envelope::sha256(b))
}

/// Both nodes with a message limit far below the attachment's size: it cannot travel inline.
pub fn small_messages(net: &Net) {
    for i in 0..2 {
        net.edit_config(i, |t| t.replace("max_bytes = 16777216", "max_bytes = 524288"));
    }
}

/// Submits the message with one attachment from node 0's client; its id.
pub async fn submit(net: &Net, attachment: &[u8]) -> String {
    let (_, message) = net.message(0, 1);
    let parts: &[crate::multipart::Part<'_>] = &[
        ("message", None, Some("application/xml"), &message),
        ("attachment", Some("akte.pdf"), Some("application/pdf"), attachment),
    ];
    let (status, v) = post_form(net, form(parts, true)).await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Node 1's client takes the one message from its inbox with its attachment, checks the
/// listing, and returns the attachment's bytes.
pub async fn fetch(net: &Net, want: &[u8]) -> Vec<u8> {
    let cb = net.client(1);
    let inbox = cb.wait_inbox(1, Duration::from_secs(120)).await;
    let (_, list) = cb.get_json(&format!("/v1/inbox/{}/attachments", inbox[0])).await;
    let a = &list["attachments"][0];
    assert_eq!(
        (a["filename"].as_str(), a["size"].as_u64()),
        (Some("akte.pdf"), Some(want.len() as u64))
    );
    assert_eq!(a["sha256"].as_str(), Some(sha256_hex(want).as_str()), "{list}");
    let got = cb.get_bytes(&format!("/v1/inbox/{}/attachments/0", inbox[0])).await.1;
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attachment_larger_than_any_message_streams_to_the_partner_and_arrives_whole() {
    let net = Net::init(2);
    small_messages(&net);
    let a = net.start(0).await;
    let b = net.start(1).await;
    let big = noise(24 << 20);
    let id = submit(&net, &big).await;
    let got = fetch(&net, &big).await;
    assert!(got == big, "the attachment arrives byte for byte");

    // The sender keeps the client's file and the encrypted stream it sent; the stream (and
    // nothing else) crossed: the receiver took exactly its bytes, and after opening keeps only
    // the plaintext.
    let stream_len = gateway::xmlsec::stream::ciphertext_len(big.len() as u64);
    let sent = files_below(&attachments_dir(&net, 0));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[0].starts_with("out/") && sent[0].ends_with("/0") && sent[1].ends_with("/0.sealed"),
        "{sent:?}"
    );
    let sealed = attachments_dir(&net, 0).join(&sent[1]);
    assert_eq!(std::fs::metadata(&sealed).unwrap().len(), stream_len);
    assert!(
        !std::fs::read(&sealed).unwrap().windows(64).any(|w| w == &big[..64]),
        "the stream is encrypted"
    );
    let received = files_below(&attachments_dir(&net, 1));
    assert_eq!(received, vec![format!("in/{}/{id}/0", net.node(0).name)]);
    let metric = "poststelle_attachment_bytes_total";
    assert_eq!(a.metric(metric, "direction=\"sent\"").await, Some(stream_len as f64));
    assert_eq!(
        b.metric(metric, "direction=\"received\"").await,
        Some(stream_len as f64)
    );
    // Delivered: the notice reached the sender.
    net.client(0)
        .wait_status(&id, "delivered", Duration::from_secs(30))
        .await;
}

/// A transfer whose partner dies at `failpoint` (abort, like kill -9) and is started again:
/// the attachment must then arrive byte for byte. Returns how many bytes of the stream the
/// partner held at its death, the stream's length, and what the sender sent (the metric counts
/// what a request completed, so not the request the crash cut).
async fn transfer_across_a_partner_crash(failpoint: &str, size: usize) -> (u64, u64, Option<f64>) {
    let net = Net::init(2);
    small_messages(&net);
    let a = net.start(0).await;
    let mut b = net.start_env(1, &[("FAILPOINTS", failpoint)]).await;
    let big = noise(size);
    let id = submit(&net, &big).await;
    assert!(
        b.wait_exit(Duration::from_secs(60)).await,
        "the partner did not die at {failpoint}"
    );
    let part = attachments_dir(&net, 1).join(format!("in/{}/{id}/0.sealed.part", net.node(0).name));
    let held = std::fs::metadata(&part).unwrap().len();
    let _b = net.start(1).await;
    let got = fetch(&net, &big).await;
    assert!(
        got == big,
        "the attachment arrives byte for byte after the partner's restart"
    );
    let sent = a
        .metric("poststelle_attachment_bytes_total", "direction=\"sent\"")
        .await;
    (held, gateway::xmlsec::stream::ciphertext_len(size as u64), sent)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_cut_by_a_partner_crash_resumes_where_the_partner_stopped() {
    // The partner dies after 600 pieces of the stream.
    let (held, stream_len, sent) =
        transfer_across_a_partner_crash("transport.file_chunk=600*off->return(abort)", 32 << 20).await;
    assert!(held > 0 && held < stream_len, "cut mid-way: {held} of {stream_len}");
    // The sender sent only what the partner did not hold.
    assert_eq!(sent, Some((stream_len - held) as f64), "held {held} of {stream_len}");
}

/// The partner dies with every byte of a stream durable but before naming it complete: the
/// sender sends no byte again, only asks the partner to finish the stream, and it arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whole_but_not_yet_named_complete_is_finished_after_a_crash() {
    let (held, stream_len, sent) =
        transfer_across_a_partner_crash("transport.file_before_rename=return(abort)", 3 << 20).await;
    assert_eq!(held, stream_len, "every byte is there");
    assert_eq!(sent, Some(0.0), "no byte sent again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_differs_from_its_signed_digest_is_refused_and_discarded() {
    let net = Net::init(2);
    let _a = net
        .start_env(0, &[("FAILPOINTS", "relay.file_corrupt=return(corrupt)")])
        .await;
    let _b = net.start(1).await;
    let id = submit(&net, &noise(1 << 20)).await;
    let v = net
        .client(0)
        .wait_status(&id, "rejected", Duration::from_secs(60))
        .await;
    assert_eq!(v["error"]["code"], "signature-invalid", "{v}");
    // Nothing was accepted and no stream kept at the partner.
    let (_, all) = net.admin(1).get("/admin/api/messages").await;
    assert!(all["messages"].as_array().unwrap().is_empty(), "{all}");
    let left = files_below(&attachments_dir(&net, 1));
    assert!(left.iter().all(|f| !f.contains(".sealed")), "{left:?}");
}

/// A small file system of its own (tmpfs), unmounted when dropped; `None` where mounting is
/// not allowed (not root).
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A network whose node `i` keeps its attachments on an 8 MiB file system of its own; `None`
/// (the test is skipped, and says so) where it cannot be mounted.
fn on_small_disk(i: usize) -> Option<(Net, SmallDisk)> {
    let Some(disk) = SmallDisk::mount("8m") else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return None;
    };
    let net = Net::init(2);
    let folder = disk.0.path().display().to_string();
    net.edit_config(i, |t| {
        t.replace("[store]\n", &format!("[store]\nattachments_dir = {folder:?}\n"))
    });
    Some((net, disk))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_the_upload_and_leaves_nothing_behind() {
    // The sender's attachment folder on an 8 MiB file system: a 12 MiB attachment fills it.
    let Some((net, disk)) = on_small_disk(0) else { return };
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (_, message) = net.message(0, 1);
    let big = noise(12 << 20);
    let parts: &[crate::multipart::Part<'_>] = &[
        ("message", None, Some("application/xml"), &message),
        ("attachment", Some("akte.pdf"), Some("application/pdf"), &big),
    ];
    let body = form(parts, true);
    // With its length claimed, it is refused before anything is written.
    let (status, v) = post_form(&net, body.clone()).await;
    assert_eq!((status, v["code"].as_str()), (503, Some("overloaded")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("disk is full"), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("bytes needed"), "{v}");
    // Sent in chunks of unclaimed length, the disk fills while it is written.
    let c = net.client(0);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let r = c
        .http
        .post(format!("{}/v1/messages", c.api))
        .bearer_auth(&c.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={}", crate::multipart::BOUNDARY),
        )
        .body(reqwest::Body::wrap_stream(futures_lite::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!((status, v["code"].as_str()), (503, Some("overloaded")), "{v}");
    assert_eq!(v["detail"], "the attachment folder's disk is full", "{v}");
    // Nothing accepted, nothing left on the disk.
    let (_, all) = net.admin(0).get("/admin/api/messages").await;
    assert!(all["messages"].as_array().unwrap().is_empty(), "{all}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !files_below(disk.0.path()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "{:?}", files_below(disk.0.path()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The room is back: a smaller attachment is taken and arrives whole.
    let small = noise(2 << 20);
    submit(&net, &small).await;
    assert!(fetch(&net, &small).await == small);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_size_limit_counts_attachment_files() {
    // 90 % of 40 MiB: one 12 MiB attachment fits beside the database; with its file and its
    // encrypted stream on the disk (24 MiB), a second one does not.
    let net = Net::init(2);
    net.edit_config(0, |t| {
        assert!(t.contains("max_size_mb = 0\n"), "{t}");
        t.replace("max_size_mb = 0\n", "max_size_mb = 40\n")
    });
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let first = noise(12 << 20);
    submit(&net, &first).await;
    assert!(fetch(&net, &first).await == first);
    let (_, message) = net.message(0, 1);
    let second = noise(12 << 20);
    let parts: &[crate::multipart::Part<'_>] = &[
        ("message", None, Some("application/xml"), &message),
        ("attachment", Some("akte.pdf"), Some("application/pdf"), &second),
    ];
    let (status, v) = post_form(&net, form(parts, true)).await;
    assert_eq!((status, v["code"].as_str()), (503, Some("overloaded")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("max_size_mb"), "{v}");
    let (_, all) = net.admin(0).get("/admin/api/messages").await;
    assert_eq!(
        all["messages"].as_array().unwrap().len(),
        1,
        "only the first was stored: {all}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_whose_disk_is_full_takes_nothing_and_keeps_no_partial_stream() {
    // The receiver's attachment folder on an 8 MiB file system; a 12 MiB attachment's stream
    // cannot fit: b answers 503, keeps nothing, and a keeps the message to try again later.
    let Some((net, disk)) = on_small_disk(1) else { return };
    let a = net.start(0).await;
    let b = net.start(1).await;
    let id = submit(&net, &noise(12 << 20)).await;
    // Until a has failed to hand the stream over at least once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while a.metric("poststelle_relay_errors_total", "").await.unwrap_or(0.0) < 1.0 {
        assert!(std::time::Instant::now() < deadline, "a never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Refused before a byte of it was written: the stream could not have fitted.
    assert_eq!(
        b.metric("poststelle_attachment_bytes_total", "received")
            .await
            .unwrap_or(0.0),
        0.0
    );
    let (_, v) = net.client(0).get_json(&format!("/v1/messages/{id}")).await;
    assert_eq!(v["status"], "sealed", "a keeps it to try again: {v}");
    let (_, all) = net.admin(1).get("/admin/api/messages").await;
    assert!(all["messages"].as_array().unwrap().is_empty(), "{all}");
    let left = files_below(disk.0.path());
    assert!(left.is_empty(), "no partial stream kept: {left:?}");
    assert!(a.log_text().contains("answered 503"), "a names b's answer");
}

/// A node of two processes on PostgreSQL, sharing its data folder: a stream may reach one
/// process, its envelope and the open job another, and one process may die on the way.
#[tokio::test(flavor = "multi_thread")]
async fn streams_and_envelopes_may_reach_different_processes_of_the_partner() {
    let net = Net::init_on_postgres(2);
    let _a = net.start(0).await;
    let mut b1 = net.start(1).await;
    let b2 = net.start(1).await;
    let files: Vec<Vec<u8>> = (0..6).map(|_| noise(2 << 20)).collect();
    for f in &files[..3] {
        submit(&net, f).await;
    }
    b1.kill9();
    for f in &files[3..] {
        submit(&net, f).await;
    }
    let cb = net.client(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let inbox = loop {
        let (_, v) = cb.get_json("/v1/inbox").await;
        let ids: Vec<String> = v["messages"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if ids.len() >= 6 {
            break ids;
        }
        if std::time::Instant::now() > deadline {
            // What is stuck where, for the failure's reader.
            let (_, at_a) = net.admin(0).get("/admin/api/messages").await;
            let (_, at_b) = net.admin(1).get("/admin/api/messages").await;
            let log = b2.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "inbox has {} of 6\na: {at_a}\nb: {at_b}\nb2's log, last lines first: {tail:#?}",
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut have = Vec::new();
    for id in &inbox {
        let (_, got) = cb.get_bytes(&format!("/v1/inbox/{id}/attachments/0")).await;
        have.push(sha256_hex(&got));
    }
    let mut want: Vec<String> = files.iter().map(|f| sha256_hex(f)).collect();
    have.sort();
    want.sort();
    assert_eq!(have, want, "each attachment arrives once and whole");
}

/// A partner that has opened a stream (and removed it) still reports it whole, so that a
/// resend after a lost receipt does not send it again; asked as the sender's node asks.
#[tokio::test(flavor = "multi_thread")]
async fn an_opened_stream_still_counts_as_held_by_the_partner() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let big = noise(4 << 20);
    let id = submit(&net, &big).await;
    assert!(fetch(&net, &big).await == big);
    let left = files_below(&attachments_dir(&net, 1));
    assert!(left.iter().all(|f| !f.contains(".sealed")), "opened: {left:?}");
    let a_dir = node_dir(&net, 0);
    let http = crate::harness::https_client(
        &net.node(1).ca,
        Some((&a_dir.join("node.pem"), &a_dir.join("node.key"))),
    );
    let url = format!(
        "https://{}/v1/transport/files/{id}/0",
        crate::harness::transport_addr(&net, 1)
    );
    let r = http.head(url).send().await.unwrap();
    let header = |name| {
        r.headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (offset, length) = (header("upload-offset"), header("upload-length"));
    let stream_len = Some(gateway::xmlsec::stream::ciphertext_len(big.len() as u64).to_string());
    assert_eq!(
        (r.status().as_u16(), offset, length),
        (204, stream_len.clone(), stream_len),
        "complete: offset and length"
    );
}

/// One partner cannot fill the disk: past `limits.max_partner_staging_bytes` of streams
/// waiting at b, its next stream is `503 overloaded` (to be tried again) and nothing of it is
/// written; a limit below one stream of `max_attachment_bytes` is refused when checked.
#[tokio::test(flavor = "multi_thread")]
async fn a_partner_cannot_stage_more_streams_than_its_limit() {
    let net = Net::init(2);
    let limits = |attachment: u64, staging: u64| {
        move |t: String| {
            t.replace(
                "max_attachment_bytes = 4294967296",
                &format!("max_attachment_bytes = {attachment}"),
            )
            .replace(
                "max_partner_staging_bytes = 17179869184",
                &format!("max_partner_staging_bytes = {staging}"),
            )
        }
    };
    net.edit_config(1, limits(1 << 20, 1 << 20));
    let out = Command::new(crate::harness::bin())
        .arg("check-config")
        .arg(&net.node(1).config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("max_partner_staging_bytes must hold at least one attachment stream"),
        "{text}"
    );
    net.edit_config(1, |t| {
        t.replace(
            "max_partner_staging_bytes = 1048576",
            "max_partner_staging_bytes = 1572864",
        )
    });
    let _b = net.start(1).await;
    let a_dir = node_dir(&net, 0);
    let http = crate::harness::https_client(
        &net.node(1).ca,
        Some((&a_dir.join("node.pem"), &a_dir.join("node.key"))),
    );
    let patch = |id: &str| {
        http.patch(format!(
            "https://{}/v1/transport/files/{id}/0",
            crate::harness::transport_addr(&net, 1)
        ))
        .header("upload-offset", "0")
        .header("upload-length", (1u64 << 20).to_string())
        .body(noise(1 << 20))
        .send()
    };
    let (first, second) = (
        "0190a0b0-0000-7000-8000-000000000001",
        "0190a0b0-0000-7000-8000-000000000002",
    );
    let r = patch(first).await.unwrap();
    assert_eq!(r.status().as_u16(), 204, "the first stream fits");
    let r = patch(second).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "overloaded", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("hold 1048576 bytes"), "{v}");
    let staged = files_below(&attachments_dir(&net, 1));
    let a = &net.node(0).name;
    assert_eq!(
        staged,
        vec![
            format!("in/{a}/{first}/0.sealed"),
            format!("in/{a}/{first}/0.sealed.sha256")
        ],
        "nothing of the refused stream was written"
    );
    // Operators see what waits from whom (the API and `poststelle queues`).
    let (_, q) = net.admin(1).get("/admin/api/queues").await;
    let waiting = &q["partner_streams"];
    assert_eq!(waiting.as_array().map(Vec::len), Some(1), "{q}");
    assert_eq!(
        (&waiting[0]["partner"], &waiting[0]["streams"], &waiting[0]["bytes"]),
        (
            &serde_json::json!(a),
            &serde_json::json!(1),
            &serde_json::json!(1 << 20)
        ),
        "{q}"
    );
    let network = net.dir.path().join("network.json");
    let (ok, out) = crate::faults::cli(&["queues", "--network", network.to_str().unwrap(), "--node", "b"]);
    assert!(ok, "{out}");
    let row = out
        .lines()
        .skip_while(|l| !l.starts_with("streams waiting from"))
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        [a.as_str(), "1", "1048576"],
        "{out}"
    );
}
