//! The XTA ports' SOAP framing (`gateway::intake::soap`) against hostile bytes (proptest): a
//! valid MTOM request cut, spliced and flipped at random, and random bodies under both media
//! types, never panic; every refusal is a 4xx fault (never a Receiver fault), and a request
//! that still reads resolves its parts or refuses them.

use gateway::intake::soap;
use gateway::xml::prescan::Limits;
use proptest::prelude::*;
use proptest::test_runner::Config;

const MTOM: &str = "multipart/related; type=\"application/xop+xml\"; boundary=\"b1\"; start=\"<root>\"";

/// A valid MTOM request: an envelope whose body refers to one binary part.
fn valid_mtom() -> Vec<u8> {
    let env = format!(
        "<s:Envelope xmlns:s=\"{}\"><s:Header/><s:Body><m xmlns=\"urn:t\">{}</m><n xmlns=\"urn:t\">aGFsbG8=</n></s:Body></s:Envelope>",
        soap::SOAP_NS,
        soap::include("part%401")
    );
    let mut body = format!(
        "--b1\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\"\r\nContent-ID: <root>\r\n\r\n{env}\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <part@1>\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"\x00\xff\r\n--b1--\r\n");
    body
}

/// Reads, parses and resolves every element's content: must not panic; a refusal is a 4xx.
fn exercise(content_type: &str, body: &[u8]) {
    let check = |f: soap::Fault| {
        assert!(
            f.status.is_client_error(),
            "{} for hostile input: {}",
            f.status,
            f.reason
        );
        assert_ne!(f.code, "Receiver", "{}", f.reason);
    };
    let req = match soap::read(content_type, body) {
        Ok(r) => r,
        Err(f) => return check(f),
    };
    let doc = match req.parse(&Limits::default()) {
        Ok(d) => d,
        Err(f) => return check(f),
    };
    for node in doc.descendants().filter(|n| n.is_element()) {
        if let Err(f) = req.content(node) {
            check(f);
        }
    }
}

#[test]
fn the_valid_request_reads_and_resolves_its_part() {
    let body = valid_mtom();
    let req = soap::read(MTOM, &body).unwrap();
    let doc = req.parse(&Limits::default()).unwrap();
    let m = doc.descendants().find(|n| n.has_tag_name(("urn:t", "m"))).unwrap();
    assert_eq!(req.content(m).unwrap(), b"\x00\xff");
    let n = doc.descendants().find(|n| n.has_tag_name(("urn:t", "n"))).unwrap();
    assert_eq!(req.content(n).unwrap(), b"hallo");
}

proptest! {
    #![proptest_config(Config { cases: 500, ..Config::default() })]

    #[test]
    fn a_mangled_mtom_request_never_panics(
        cut in 0usize..600,
        flips in proptest::collection::vec((0usize..600, any::<u8>()), 0..8),
        splice in proptest::collection::vec(any::<u8>(), 0..40),
        at in 0usize..600,
    ) {
        let mut body = valid_mtom();
        let len = body.len();
        for (i, b) in flips {
            body[i % len] = b;
        }
        let at = at % (body.len() + 1);
        body.splice(at..at, splice);
        body.truncate(cut.max(1) * body.len() / 600 + 1);
        exercise(MTOM, &body);
    }

    #[test]
    fn random_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        multipart in any::<bool>(),
    ) {
        exercise(if multipart { MTOM } else { "application/soap+xml" }, &body);
    }
}
