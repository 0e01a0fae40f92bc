//! Untrusted bytes → `dom::parse` → `verify::verify` with a fixed pinned certificate
//! (`keys/fuzz.pem`), then the whole-document rule of the envelope pipeline
//! (`seal::verify_node_signed`). Any panic, crash, hang or leak is a finding.
//!
//! Seeds (`corpus/verify/seed-*`) are signed with the same key, so mutations that leave
//! SignedInfo intact get past the signature value into reference resolution and C14N.

#![no_main]

use std::sync::LazyLock;

use gateway::xml::prescan::Limits;
use gateway::xmlsec::verify::{self, Expect};
use gateway::envelope::seal;
use gateway::xmlsec::{Policy, dom};
use libfuzzer_sys::fuzz_target;
use openssl::x509::X509;

static CERT: LazyLock<X509> = LazyLock::new(|| X509::from_pem(include_bytes!("../keys/fuzz.pem")).unwrap());

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let policy = Policy::default();
    if let Ok(doc) = dom::parse(data, &limits) {
        let verified = verify::verify(&doc, Expect::Pinned(&CERT), &policy);
        let whole = seal::verify_node_signed(data, &CERT, &policy, &limits);
        // A document that passes the whole-document rule has passed verification.
        assert!(whole.is_err() || verified.is_ok());
    }
});
