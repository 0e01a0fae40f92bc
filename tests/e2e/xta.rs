//! XTA 2.1.1 through two real nodes, driven by an independent SOAP client: Python zeep
//! (`tests/xta/xta_client.py`) loading the standard's real WSDL from `../shared` offline and
//! sending with MTOM. A message sent through node a's Send port arrives in node b's MsgBox, is
//! fetched and closed there, and node a's transport report then shows it delivered; the same
//! for a real XBeteiligung sample. Refusals are the WSDL's faults with the REST API's problem
//! codes, and bad SOAP gets a SOAP fault and a 4xx without anything being stored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Net, fixture, repo, shared, uuid};

const T: Duration = Duration::from_secs(60);

/// The zeep client, bound to one node's client listener as one client.
struct Zeep {
    base: String,
    ca: PathBuf,
    token: String,
    author: String,
    dir: PathBuf,
}

impl Zeep {
    fn of(net: &Net, i: usize) -> Zeep {
        let n = net.node(i);
        Zeep {
            base: n.api.clone(),
            ca: n.ca.clone(),
            token: n.clients[0].token.clone(),
            author: n.authorities[0].clone(),
            dir: net.dir.path().to_path_buf(),
        }
    }

    /// Runs one subcommand: (exit code, the JSON it printed).
    fn run(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new("python3")
            .arg(repo().join("tests/xta/xta_client.py"))
            .arg("--wsdl")
            .arg(shared().join("xoev/xta-2.1.1/schema/XTA.wsdl"))
            .args(["--base", &self.base, "--token", &self.token, "--author", &self.author])
            .arg("--ca")
            .arg(&self.ca)
            .args(args)
            .output()
            .expect("python3 runs tests/xta/xta_client.py (scripts/test installs zeep)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
            panic!(
                "xta_client {args:?} printed no JSON:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), v)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.run(args);
        assert_eq!(code, 0, "xta_client {args:?}: {v}");
        v
    }

    fn create_id(&self) -> String {
        self.ok(&["create-id"])["message_id"].as_str().unwrap().to_owned()
    }

    /// sendMessage of `file` to `reader` with the metadata of `meta`.
    fn send(&self, file: &Path, reader: &str, meta: &Meta, id: &str, extra: &[&str]) -> (i32, Value) {
        let mut args = vec![
            "send",
            "--file",
            file.to_str().unwrap(),
            "--reader",
            reader,
            "--message-type",
            &meta.code,
            "--list-uri",
            &meta.list_uri,
            "--list-version",
            &meta.list_version,
            "--payload-schema",
            &meta.payload_schema,
            "--service",
            &meta.service,
            "--message-id",
            id,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Waits until the MsgBox lists `id`.
    fn wait_listed(&self, id: &str) -> Value {
        let deadline = Instant::now() + T;
        loop {
            let v = self.ok(&["status-list"]);
            if v["messages"]
                .as_array()
                .is_some_and(|l| l.iter().any(|m| m["message_id"] == id))
            {
                return v;
            }
            assert!(Instant::now() < deadline, "{id} never reached the MsgBox: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the transport report's traffic light is `status`.
    fn wait_report(&self, id: &str, status: i64) -> Value {
        let deadline = Instant::now() + T;
        loop {
            let v = self.ok(&["report", "--message-id", id]);
            if v["status"] == status {
                return v;
            }
            assert!(Instant::now() < deadline, "report of {id} never reached {status}: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// `MessageMetaData/Qualifier` values for a message.
struct Meta {
    code: String,
    list_uri: String,
    list_version: String,
    payload_schema: String,
    service: String,
}

fn xumzug_meta(code: &str) -> Meta {
    Meta {
        code: code.into(),
        list_uri: "urn:poststelle:demo:codeliste:xumzug-nachrichten".into(),
        list_version: "1.0".into(),
        payload_schema: "urn:poststelle:demo:xumzug:1.0".into(),
        service: "urn:poststelle:demo:xumzug".into(),
    }
}

/// A demo message with a fresh message UUID (so that every send is a new message).
fn fresh(file: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(file)).unwrap();
    let start = text.find("<kopf:nachrichtenUUID>").unwrap() + "<kopf:nachrichtenUUID>".len();
    let end = start + text[start..].find('<').unwrap();
    format!("{}{}{}", &text[..start], uuid(), &text[end..]).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_over_xta_is_fetched_from_the_partners_msgbox_and_reported_delivered() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (za, zb) = (Zeep::of(&net, 0), Zeep::of(&net, 1));
    assert_eq!(za.ok(&["check-account"])["ok"], true);
    let reader = net.node(1).authorities[0].clone();
    let lookup = za.ok(&["lookup", "--reader", &reader, "--service", "urn:poststelle:demo:xumzug"]);
    assert_eq!(lookup["available"], true, "{lookup}");
    let unknown = za.ok(&["lookup", "--reader", "psw:99999999", "--service", "urn:x"]);
    assert_eq!(unknown["available"], false, "{unknown}");

    let bytes = fresh("xumzug/valid/rueckmeldung-erika-mustermann.xml");
    let file = za.file("erika.xml", &bytes);
    // An attachment with bytes that text handling would break: CR LF, NUL, 0xff.
    let scan = b"%PDF-1.4\r\n\x00\xff binary\r\n".to_vec();
    let beilage = za.file("beilage.pdf", &scan);
    let with_attachment = ["--attachment", beilage.to_str().unwrap()];
    let id = za.create_id();
    assert!(id.starts_with("urn:de:xta:messageid:"), "{id}");
    let (code, v) = za.send(&file, &reader, &xumzug_meta("0101"), &id, &with_attachment);
    assert_eq!(code, 0, "MTOM sendMessage: {v}");
    // A retry of the same sendMessage is idempotent: no second message.
    let (code, v) = za.send(&file, &reader, &xumzug_meta("0101"), &id, &with_attachment);
    assert_eq!(code, 0, "the retried sendMessage: {v}");
    let report = za.ok(&["report", "--message-id", &id]);
    assert_eq!(report["status"], 0, "in progress: {report}");

    let listed = zb.wait_listed(&id);
    let entry = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["author"], net.node(0).authorities[0].as_str(), "{entry}");
    assert_eq!(entry["reader"], reader.as_str(), "{entry}");
    let out = zb.dir.join("fetched.xml");
    let attachments = zb.dir.join("fetched-attachments");
    let got = zb.ok(&[
        "get",
        "--message-id",
        &id,
        "--out",
        out.to_str().unwrap(),
        "--attachments-dir",
        attachments.to_str().unwrap(),
    ]);
    assert_eq!(got["message_id"], id.as_str(), "{got}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        bytes,
        "the reader gets the very bytes sent"
    );
    assert_eq!(got["attachments"], 1, "{got}");
    assert_eq!(
        std::fs::read(attachments.join("beilage.pdf")).unwrap(),
        scan,
        "the attachment travelled signed and encrypted, byte for byte"
    );
    // A REST client of b sees the same attachment.
    let rest = net.client(1);
    let (_, inbox) = rest.get_json("/v1/inbox").await;
    let local = inbox["messages"][0]["id"].as_str().unwrap().to_owned();
    let (_, list) = rest.get_json(&format!("/v1/inbox/{local}/attachments")).await;
    assert_eq!(list["attachments"][0]["filename"], "beilage.pdf", "{list}");
    let href = list["attachments"][0]["href"].as_str().unwrap().to_owned();
    assert_eq!(rest.get_bytes(&href).await, (200, scan.clone()));
    zb.ok(&["close", "--message-id", &id]);

    let report = za.wait_report(&id, 1);
    let raw = report["raw"].as_str().unwrap();
    assert!(raw.contains("delivered") && raw.contains("receipt"), "{raw}");
    // The XTA id is the Poststelle id: the REST API tells the same story, once.
    let plain = id.trim_start_matches("urn:de:xta:messageid:");
    let (status, view) = net.client(0).get_json(&format!("/v1/messages/{plain}")).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("delivered")), "{view}");
    let (_, all) = net.admin(0).get("/admin/api/messages?direction=outbound").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 1, "one message: {all}");
    // Closed: no longer in the MsgBox.
    let after = zb.ok(&["status-list"]);
    assert!(
        !after["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["message_id"] == id.as_str()),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xbeteiligung_sample_travels_over_xta_inline_and_mtom() {
    let net = Net::init(2);
    for i in 0..2 {
        net.edit_config(i, |t| {
            t.replace("psw:01003110", "xyz:0001")
                .replace("psw:09162000", "xyz:0002")
        });
        net.use_adapters(i, &[repo().join("manifests/xbeteiligung-1.2")]);
    }
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let mut za = Zeep::of(&net, 0);
    let mut zb = Zeep::of(&net, 1);
    za.author = "xyz:0001".into();
    zb.author = "xyz:0002".into();
    let sample = shared().join("xoev/xbeteiligung-1.2/tests/res/xmlv14/xbeteiligung-test-kommunal.Initiieren.0401.xml");
    let meta = Meta {
        code: "0401".into(),
        list_uri: "urn:xoev-de:xleitstelle:codeliste:xbeteiligung-nachrichten".into(),
        list_version: "1.2".into(),
        payload_schema: "https://www.xleitstelle.de/xbeteiligung/12".into(),
        service: "urn:xoev-de:xleitstelle:xbeteiligung".into(),
    };
    let id = za.create_id();
    let (code, v) = za.send(&sample, "xyz:0002", &meta, &id, &["--inline"]);
    assert_eq!(code, 0, "inline base64 sendMessage: {v}");
    zb.wait_listed(&id);
    let out = zb.dir.join("sample.xml");
    zb.ok(&["next", "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&sample).unwrap());
    zb.ok(&["close", "--message-id", &id]);
    za.wait_report(&id, 1);
}

/// Asserts a fault with this XTA exception and problem code; returns it.
#[track_caller]
fn fault(r: (i32, Value), exception: &str, problem: &str) -> Value {
    let (code, v) = r;
    assert_eq!(code, 3, "expected a fault {exception}/{problem}: {v}");
    assert_eq!(v["exception"], exception, "{v}");
    assert_eq!(v["problem"], problem, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_the_wsdls_faults_with_the_rest_apis_problem_codes() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let za = Zeep::of(&net, 0);
    let reader = net.node(1).authorities[0].clone();
    let meta = xumzug_meta("0101");
    let valid = za.file("valid.xml", &fresh("xumzug/valid/rueckmeldung-erika-mustermann.xml"));

    // Acting for another authority.
    let other = Zeep {
        author: reader.clone(),
        ..Zeep::of(&net, 0)
    };
    let v = fault(
        other.run(&["check-account"]),
        "PermissionDeniedException",
        "not-permitted",
    );
    assert_eq!(
        v["error_code"], "9014",
        "Authentisierung passt nicht zur Absenderkennung: {v}"
    );
    let v = fault(
        Zeep {
            token: "wrong".into(),
            ..Zeep::of(&net, 0)
        }
        .run(&["check-account"]),
        "PermissionDeniedException",
        "unauthorized",
    );
    assert_eq!(
        (v["error_code"].as_str(), v["http_status"].as_i64()),
        (Some("9012"), Some(401)),
        "{v}"
    );
    // Metadata that disagrees with the message's own header.
    let v = fault(
        za.send(&valid, "psw:05315000", &meta, &za.create_id(), &[]),
        "MessageSchemaViolationException",
        "header-invalid",
    );
    assert!(v["reason"].as_str().unwrap().contains("reader"), "{v}");
    fault(
        za.send(&valid, &reader, &xumzug_meta("0103"), &za.create_id(), &[]),
        "MessageSchemaViolationException",
        "header-invalid",
    );
    // Schema errors keep their position.
    let invalid = za.file("invalid.xml", &fixture("xumzug/invalid/invalid-geburtsdatum.xml"));
    let v = fault(
        za.send(&invalid, &reader, &meta, &za.create_id(), &[]),
        "MessageSchemaViolationException",
        "schema-invalid",
    );
    assert_eq!(
        (v["error_code"].as_str(), v["http_status"].as_i64()),
        (Some("9050"), Some(400)),
        "{v}"
    );
    assert!(v["reason"].as_str().unwrap().contains("line"), "{v}");
    // A DOCTYPE in the content.
    let doctype = za.file("doctype.xml", &fixture("xumzug/invalid/doctype-external-entity.xml"));
    fault(
        za.send(&doctype, &reader, &meta, &za.create_id(), &[]),
        "MessageSchemaViolationException",
        "forbidden-construct",
    );
    // Message ids this node did not make, and an id reused for other content.
    fault(
        za.send(&valid, &reader, &meta, "urn:other:1", &[]),
        "ParameterIsNotValidException",
        "invalid-request",
    );
    let id = za.create_id();
    assert_eq!(za.send(&valid, &reader, &meta, &id, &[]).0, 0);
    let second = za.file("second.xml", &fresh("xumzug/valid/rueckmeldung-erika-mustermann.xml"));
    let v = fault(
        za.send(&second, &reader, &meta, &id, &[]),
        "ParameterIsNotValidException",
        "duplicate-conflict",
    );
    assert_eq!(v["error_code"], "9024", "MessageID ist bereits vergeben: {v}");
    // Reports only for one's own messages.
    fault(
        za.run(&["report", "--message-id", &za.create_id()]),
        "InvalidMessageIDException",
        "not-found",
    );
    let (_, all) = net.admin(0).get("/admin/api/messages?direction=outbound").await;
    assert_eq!(
        all["messages"].as_array().unwrap().len(),
        1,
        "only the one valid send: {all}"
    );
}

/// A raw request to a port: (HTTP status, body).
async fn raw(net: &Net, port: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let c = net.client(0);
    let r = c
        .http
        .post(format!("{}/xta/{port}", c.api))
        .bearer_auth(&c.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn envelope(action: Option<&str>, header: &str, body: &str) -> Vec<u8> {
    let action = action
        .map(|a| {
            format!(
                "<wsa:Action>{a}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID>",
                uuid()
            )
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:wsa=\"http://www.w3.org/2005/08/addressing\" xmlns:m=\"http://www.osci.eu/ws/2014/10/transport\">\
         <s:Header>{action}{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_soap_gets_a_soap_fault_and_a_4xx_and_nothing_is_stored() {
    let net = Net::init(2);
    // Binary MTOM parts are attachment files, each at most limits.max_attachment_bytes.
    net.edit_config(0, |t| {
        t.replace("max_attachment_bytes = 4294967296", "max_attachment_bytes = 16777216")
    });
    let _a = net.start(0).await;
    let soap = "application/soap+xml; charset=utf-8";
    let author = format!(
        "<m:Author><m:Identifier type=\"xoev\">{}</m:Identifier></m:Author>",
        net.node(0).authorities[0]
    );
    let fault_with = |(status, body): (u16, String), want_status: u16, needle: &str| {
        assert_eq!(status, want_status, "{body}");
        assert!(body.contains("Fault") && body.contains(needle), "{needle} in {body}");
    };
    fault_with(
        raw(
            &net,
            "management",
            soap,
            b"<s:Envelope xmlns:s=\"x\"><unclosed>".to_vec(),
        )
        .await,
        400,
        "not-well-formed",
    );
    let mut doctype = b"<!DOCTYPE s:Envelope [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>".to_vec();
    doctype.extend(envelope(
        Some("http://www.xta.de/XTA/CheckAccountActive"),
        &author,
        "&x;",
    ));
    fault_with(raw(&net, "management", soap, doctype).await, 400, "forbidden-construct");
    fault_with(
        raw(&net, "management", soap, envelope(Some("urn:wrong"), &author, "")).await,
        400,
        "ActionNotSupported",
    );
    fault_with(
        raw(&net, "management", soap, envelope(None, &author, "")).await,
        400,
        "MessageAddressingHeaderRequired",
    );
    fault_with(
        raw(
            &net,
            "msgbox",
            soap,
            envelope(Some("http://www.xta.de/XTA/CheckAccountActive"), &author, ""),
        )
        .await,
        400,
        "ActionNotSupported",
    );
    fault_with(
        raw(
            &net,
            "management",
            soap,
            envelope(Some("http://www.xta.de/XTA/CheckAccountActive"), "", ""),
        )
        .await,
        400,
        "oscimeta:Author",
    );
    fault_with(
        raw(&net, "management", "text/xml", envelope(Some("x"), "", "")).await,
        415,
        "SOAP 1.2",
    );
    let soap11 = String::from_utf8(envelope(Some("http://www.xta.de/XTA/CheckAccountActive"), &author, ""))
        .unwrap()
        .replace(
            "http://www.w3.org/2003/05/soap-envelope",
            "http://schemas.xmlsoap.org/soap/envelope/",
        );
    fault_with(
        raw(&net, "management", soap, soap11.into_bytes()).await,
        400,
        "VersionMismatch",
    );
    let must = format!("{author}<w:Security xmlns:w=\"urn:wss\" s:mustUnderstand=\"true\"/>");
    fault_with(
        raw(
            &net,
            "management",
            soap,
            envelope(Some("http://www.xta.de/XTA/CheckAccountActive"), &must, ""),
        )
        .await,
        400,
        "MustUnderstand",
    );
    // sendMessageSync is in the WSDL but not offered: its own fault.
    fault_with(
        raw(
            &net,
            "send",
            soap,
            envelope(Some("http://www.xta.de/XTA/SendMessageSync"), "", ""),
        )
        .await,
        400,
        "SyncAsyncException",
    );
    // An oversized MTOM part (over limits.max_attachment_bytes, here 16 MiB): 413 while it
    // streams, before the envelope is parsed, and its file is gone.
    let big = vec![b'a'; 24 * 1024 * 1024];
    let mut body = b"--b\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\"\r\n\r\n".to_vec();
    body.extend(envelope(Some("http://www.xta.de/XTA/SendMessage"), "", ""));
    body.extend(b"\r\n--b\r\nContent-ID: <p>\r\n\r\n");
    body.extend(&big);
    body.extend(b"\r\n--b--\r\n");
    let (status, text) = raw(
        &net,
        "send",
        "multipart/related; type=\"application/xop+xml\"; boundary=b",
        body,
    )
    .await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("Fault") && text.contains("limit-exceeded"), "{text}");
    let (_, all) = net.admin(0).get("/admin/api/messages").await;
    assert!(all["messages"].as_array().unwrap().is_empty(), "nothing stored: {all}");
    // Parts sent as base64 are decoded in memory: with the envelope at most the port's bound
    // (about 22 MiB here), however they are split.
    let base64 = vec![b'Q'; 12 * 1024 * 1024];
    let mut body = b"--b\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\"\r\n\r\n".to_vec();
    body.extend(envelope(Some("http://www.xta.de/XTA/SendMessage"), "", ""));
    for p in ["p1", "p2"] {
        body.extend(format!("\r\n--b\r\nContent-ID: <{p}>\r\nContent-Transfer-Encoding: base64\r\n\r\n").as_bytes());
        body.extend(&base64);
    }
    body.extend(b"\r\n--b--\r\n");
    let (status, text) = raw(&net, "send", "multipart/related; boundary=b", body).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("base64 parts exceed"), "{text}");
    let uploads = crate::harness::node_dir(&net, 0).join("data/attachments/out");
    assert_eq!(
        std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0),
        0,
        "no upload left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_sending_ends_the_message_and_the_report_says_so() {
    let net = Net::init(2);
    // Node b stays down: the message waits at node a, where it can still be cancelled.
    let _a = net.start(0).await;
    let za = Zeep::of(&net, 0);
    let reader = net.node(1).authorities[0].clone();
    let file = za.file("m.xml", &fresh("xumzug/valid/rueckmeldung-erika-mustermann.xml"));
    let id = za.create_id();
    assert_eq!(za.send(&file, &reader, &xumzug_meta("0101"), &id, &[]).0, 0);
    // A cancel that meets a relay attempt in progress is told to try again, as a client would.
    let deadline = Instant::now() + T;
    loop {
        let (code, v) = za.run(&["cancel", "--message-id", &id]);
        if code == 0 {
            break;
        }
        let busy = v["reason"].as_str().is_some_and(|r| r.contains("being sent right now"));
        assert!(busy && Instant::now() < deadline, "cancel: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = za.wait_report(&id, 3);
    assert!(report["raw"].as_str().unwrap().contains("cancelled"), "{report}");
    fault(
        za.run(&["cancel", "--message-id", &id]),
        "CancelDeniedException",
        "wrong-state",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_msgbox_pages_by_arrival_and_a_retried_close_succeeds() {
    let net = Net::init(2);
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (za, zb) = (Zeep::of(&net, 0), Zeep::of(&net, 1));
    let reader = net.node(1).authorities[0].clone();
    // Ids the client chose, whose text order is not their arrival order.
    let ids: Vec<String> = [
        "ffffffff-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "80000000-0000-4000-8000-000000000003",
    ]
    .iter()
    .map(|u| format!("urn:de:xta:messageid:{u}"))
    .collect();
    for (i, id) in ids.iter().enumerate() {
        let file = za.file(
            &format!("m{i}.xml"),
            &fresh("xumzug/valid/rueckmeldung-erika-mustermann.xml"),
        );
        let (code, v) = za.send(&file, &reader, &xumzug_meta("0101"), id, &[]);
        assert_eq!(code, 0, "{v}");
        // One at a time, so that they arrive in this order.
        zb.wait_listed(id);
    }
    let listed = zb.ok(&["status-list", "--max", "2"]);
    assert_eq!(listed["messages"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["items_pending"], 1, "{listed}");
    // getNextMessage walks the MsgBox in arrival order, whatever the ids' text order.
    let out = zb.dir.join("next.xml");
    let mut request_id = "urn:poststelle:msgbox:start".to_owned();
    for want in &ids {
        let v = zb.ok(&["next", "--out", out.to_str().unwrap(), "--request-id", &request_id]);
        assert_eq!(&v["message_id"], want.as_str(), "{v}");
        request_id = v["request_id"].as_str().unwrap().to_owned();
    }
    let (code, v) = zb.run(&["next", "--out", out.to_str().unwrap(), "--request-id", &request_id]);
    assert!(code == 0 && v["none"] == true || code == 3, "an empty remainder: {v}");
    // A close whose answer was lost is retried: the second one succeeds too.
    zb.ok(&["close", "--message-id", &ids[0]]);
    zb.ok(&["close", "--message-id", &ids[0]]);
    za.wait_report(&ids[0], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_only_its_own_messages() {
    let net = Net::init(2);
    net.edit_config(0, |t| {
        t.replace(
            "[[partners]]",
            "[[clients]]\nname = \"second\"\nauthority = \"psw:01003110\"\ntoken = \"second-client-token-0123456789\"\nmessage_types = [\"*\"]\n\n[[partners]]",
        )
    });
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let za = Zeep::of(&net, 0);
    let second = Zeep {
        token: "second-client-token-0123456789".into(),
        ..Zeep::of(&net, 0)
    };
    let zb = Zeep::of(&net, 1);
    let reader = net.node(1).authorities[0].clone();
    let file = za.file("m.xml", &fresh("xumzug/valid/rueckmeldung-erika-mustermann.xml"));
    let id = za.create_id();
    assert_eq!(za.send(&file, &reader, &xumzug_meta("0101"), &id, &[]).0, 0);
    let v = fault(
        second.run(&["report", "--message-id", &id]),
        "InvalidMessageIDException",
        "not-found",
    );
    assert_eq!(v["error_code"], "9070", "{v}");
    let (code, v) = second.run(&["cancel", "--message-id", &id]);
    assert_eq!((code, v["problem"].as_str()), (3, Some("not-found")), "{v}");
    // The sender's own client cannot fetch or close it from its MsgBox: it is b's.
    zb.wait_listed(&id);
    let out = za.dir.join("x.xml");
    fault(
        za.run(&["get", "--message-id", &id, "--out", out.to_str().unwrap()]),
        "InvalidMessageIDException",
        "not-found",
    );
    fault(
        za.run(&["close", "--message-id", &id]),
        "InvalidMessageIDException",
        "not-found",
    );
    // Still open at b: nobody but b's client closed it.
    zb.ok(&["get", "--message-id", &id, "--out", out.to_str().unwrap()]);
    let report = za.ok(&["report", "--message-id", &id]);
    assert_eq!(report["status"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_format_goes_over_xta_as_the_standard_it_maps_to() {
    let net = Net::init(2);
    for i in 0..2 {
        net.use_adapters(i, &[repo().join("manifests/umzug-legacy")]);
    }
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    // b's client speaks the flat legacy format (in no namespace); the Fortschreibung goes to a.
    let zb = Zeep::of(&net, 1);
    let za = Zeep::of(&net, 0);
    let legacy = repo().join("manifests/umzug-legacy/fixtures/valid/fortschreibung-umlaute-eszett.xml");
    let reader = net.node(0).authorities[0].clone();
    let id = zb.create_id();
    // payloadSchema names the standard the legacy document maps to (it has no namespace).
    let (code, v) = zb.send(&legacy, &reader, &xumzug_meta("0102"), &id, &[]);
    assert_eq!(code, 0, "a legacy document over XTA: {v}");
    za.wait_listed(&id);
    let out = za.dir.join("standard.xml");
    za.ok(&["get", "--message-id", &id, "--out", out.to_str().unwrap()]);
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(
        got.contains("urn:poststelle:demo:xumzug:1.0") && got.contains("umzug.Fortschreibung.0102"),
        "XUmzug travelled, not the legacy format: {got}"
    );
    // A payloadSchema that is neither the document's nor its standard's is refused.
    let wrong = Meta {
        payload_schema: "urn:something:else".into(),
        ..xumzug_meta("0102")
    };
    fault(
        zb.send(&legacy, &reader, &wrong, &zb.create_id(), &[]),
        "MessageSchemaViolationException",
        "header-invalid",
    );
}

/// An attachment far larger than any message (limits.max_bytes 512 KiB), sent over REST,
/// comes out of the reader's MsgBox as an MTOM part streamed from its file, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_attachment_is_fetched_over_xta_as_a_streamed_mtom_part() {
    let net = Net::init(2);
    crate::large_payloads::small_messages(&net);
    let _a = net.start(0).await;
    let b = net.start(1).await;
    let big = crate::multipart::noise(32 << 20);
    crate::large_payloads::submit(&net, &big).await;
    let zb = Zeep::of(&net, 1);
    let deadline = Instant::now() + T;
    while zb.ok(&["status-list"])["messages"]
        .as_array()
        .is_none_or(|l| l.is_empty())
    {
        assert!(Instant::now() < deadline, "nothing reached b's MsgBox");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (out, dir) = (zb.dir.join("next.xml"), zb.dir.join("next-attachments"));
    let got = zb.ok(&[
        "next",
        "--out",
        out.to_str().unwrap(),
        "--attachments-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(got["attachments"], 1, "{got}");
    assert!(
        std::fs::read(dir.join("akte.pdf")).unwrap() == big,
        "the attachment arrives whole over XTA"
    );
    // Streamed: b's memory did not hold the attachment (32 MiB) on top of its own.
    let status = std::fs::read_to_string(format!("/proc/{}/status", b.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(hwm_kib < 64 * 1024, "b peaked at {hwm_kib} KiB");
}

/// An attachment far larger than any message, sent with zeep as a binary MTOM part: written to
/// a file while the request arrives, it reaches the reader's REST client byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_attachment_sent_over_xta_streams_to_a_file_and_arrives_whole() {
    let net = Net::init(2);
    crate::large_payloads::small_messages(&net);
    let a = net.start(0).await;
    let _b = net.start(1).await;
    let za = Zeep::of(&net, 0);
    let reader = net.node(1).authorities[0].clone();
    let file = za.file("erika.xml", &fresh("xumzug/valid/rueckmeldung-erika-mustermann.xml"));
    let big = crate::multipart::noise(24 << 20);
    let akte = za.file("akte.pdf", &big);
    let id = za.create_id();
    let (code, v) = za.send(
        &file,
        &reader,
        &xumzug_meta("0101"),
        &id,
        &["--attachment", akte.to_str().unwrap()],
    );
    assert_eq!(code, 0, "MTOM sendMessage with 24 MiB: {v}");
    assert!(crate::large_payloads::fetch(&net, &big).await == big);
    // It went as a stream beside the envelope, not inside it.
    let sent = a
        .metric("poststelle_attachment_bytes_total", "direction=\"sent\"")
        .await;
    assert_eq!(
        sent,
        Some(gateway::xmlsec::stream::ciphertext_len(big.len() as u64) as f64)
    );
}
