//! Untrusted bytes → `encrypt::decrypt_document` with a fixed RSA-3072 key (`keys/fuzz.key`).
//! Besides crashes, hangs and leaks, the target checks the no-oracle rule: every
//! `decryption-failed` answer carries one of the two fixed details.
//!
//! Seeds (`corpus/decrypt/seed-*`) are encrypted for the same key (`keys/fuzz.pem`).

#![no_main]

use std::sync::LazyLock;

use gateway::problem::Code;
use gateway::xml::prescan::Limits;
use gateway::xmlsec::encrypt;
use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private};

static KEY: LazyLock<PKey<Private>> =
    LazyLock::new(|| PKey::private_key_from_pem(include_bytes!("../keys/fuzz.key")).unwrap());

fuzz_target!(|data: &[u8]| {
    if let Err(p) = encrypt::decrypt_document(data, &KEY, &Limits::default())
        && p.code == Code::DecryptionFailed
    {
        assert!(
            p.detail == encrypt::failed().detail || p.detail == "the document holds no EncryptedData",
            "a decryption failure with its own detail: {}",
            p.detail
        );
    }
});
