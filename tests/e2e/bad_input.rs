//! Hostile and broken input gets a 4xx with the right code: never a 5xx, a hang, a crash, or an
//! outbound request (a loopback listener stands in for "the network" and must see nothing).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::{Net, fixture};

/// Counts connections to a loopback port for the test's lifetime.
fn tripwire() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if conn.is_ok() {
                h.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, hits)
}

fn valid() -> String {
    String::from_utf8(fixture("xumzug/valid/rueckmeldung-erika-mustermann.xml")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_4xx_with_their_code() {
    let net = Net::init(2);
    let a = net.start(0).await;
    let ca = net.client(0);
    let (port, hits) = tripwire();
    let remote = format!("http://127.0.0.1:{port}");
    let v = valid();

    let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>"#;
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let attrs: String = (0..50_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let many_attrs = format!("<r{attrs}/>");
    let latin1: Vec<u8> = v
        .replace("Mustermann", "Mustermänn")
        .replace("UTF-8", "ISO-8859-1")
        .into_bytes();
    let mut raw_latin1 = v.clone().into_bytes();
    let pos = raw_latin1.windows(10).position(|w| w == b"Mustermann").unwrap();
    raw_latin1[pos + 7] = 0xE4; // 'ä' in ISO-8859-1: invalid UTF-8
    let utf16: Vec<u8> = "\u{feff}<r/>".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", vec![], "not-well-formed"),
        ("not well-formed", b"<a><b></a>".to_vec(), "not-well-formed"),
        ("truncated", v[..v.len() / 2].to_owned().into_bytes(), "not-well-formed"),
        (
            "DOCTYPE with external entity",
            format!("<!DOCTYPE r [<!ENTITY e SYSTEM \"{remote}/xxe\">]><r>&e;</r>").into_bytes(),
            "forbidden-construct",
        ),
        (
            "DOCTYPE with external DTD",
            format!("<!DOCTYPE r SYSTEM \"{remote}/dtd\"><r/>").into_bytes(),
            "forbidden-construct",
        ),
        (
            "billion laughs",
            billion_laughs.as_bytes().to_vec(),
            "forbidden-construct",
        ),
        (
            "XInclude",
            format!("<r xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"{remote}/inc\"/></r>")
                .into_bytes(),
            "forbidden-construct",
        ),
        (
            "xml-stylesheet",
            format!(
                "<?xml-stylesheet href=\"{remote}/s.xsl\"?>{}",
                &v[v.find("<xumzug").unwrap()..]
            )
            .into_bytes(),
            "forbidden-construct",
        ),
        ("100 000-deep nesting", deep.into_bytes(), "limit-exceeded"),
        ("50 000 attributes", many_attrs.into_bytes(), "limit-exceeded"),
        ("declared ISO-8859-1", latin1, "unsupported-encoding"),
        ("raw Latin-1 bytes", raw_latin1, "unsupported-encoding"),
        ("UTF-16", utf16, "unsupported-encoding"),
        (
            "unknown root element",
            b"<x:r xmlns:x=\"urn:nobody\"/>".to_vec(),
            "unknown-message-type",
        ),
        (
            "schema-invalid",
            fixture("xumzug/invalid/missing-familienname.xml"),
            "schema-invalid",
        ),
        (
            "wrong author",
            fixture("xumzug/invalid/autor-not-permitted.xml"),
            "not-permitted",
        ),
        (
            "unknown recipient",
            fixture("xumzug/invalid/unknown-recipient.xml"),
            "unknown-recipient",
        ),
        (
            "header type mismatch",
            fixture("xumzug/invalid/header-nachrichtentyp-mismatch.xml"),
            "header-invalid",
        ),
        ("too large", vec![b' '; 16 * 1024 * 1024 + 1], "limit-exceeded"),
    ];
    assert!(cases.len() >= 19);
    for (name, body, expected) in &cases {
        let r = tokio::time::timeout(Duration::from_secs(20), ca.submit(body)).await;
        let (status, problem) = r.unwrap_or_else(|_| panic!("{name}: no answer within 20 s"));
        assert!((400..500).contains(&status), "{name}: status {status}, {problem}");
        assert_eq!(problem["code"], *expected, "{name}: {problem}");
        assert_eq!(problem["status"], status, "{name}");
        assert!(problem["title"].is_string() && problem["detail"].is_string(), "{name}");
    }
    // XML errors carry positions.
    let (_, p) = ca.submit(&fixture("xumzug/invalid/invalid-geburtsdatum.xml")).await;
    assert!(p["errors"][0]["line"].as_u64().unwrap() > 1, "{p}");
    let (_, p) = ca.submit(b"<r>\n<a></b></r>").await;
    assert_eq!(p["errors"][0]["line"], 2, "{p}");

    // Wrong media type, missing and wrong token.
    let denied = [
        (
            Some(ca.token.as_str()),
            "application/json",
            415,
            "unsupported-media-type",
        ),
        (None, "application/xml", 401, "unauthorized"),
        (
            Some("0123456789abcdef0123456789abcdef"),
            "application/xml",
            401,
            "unauthorized",
        ),
    ];
    for (token, content_type, status, code) in denied {
        let (s, p) = ca.submit_with(token, content_type, v.as_bytes()).await;
        assert_eq!((s, p["code"].as_str()), (status, Some(code)), "{p}");
    }

    // A valid message with a remote schemaLocation hint is accepted without fetching it.
    let hinted = v.replacen(
        "xmlns:xumzug=",
        &format!("xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"urn:poststelle:demo:xumzug:1.0 {remote}/xumzug.xsd\" xmlns:xumzug="),
        1,
    );
    assert_ne!(hinted, v);
    let (status, body) = ca.submit(hinted.as_bytes()).await;
    assert_eq!(status, 202, "{body}");

    // Still alive, and nothing reached "the network".
    let (s, _) = ca.get_json("/v1/inbox").await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "an input made the node connect out");
    assert!(!a.log_text().contains("panicked"), "{}", a.log_text());
}
