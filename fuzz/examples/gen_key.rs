//! Writes the fuzz targets' fixed key material: an RSA-3072 key and a self-signed certificate
//! (digitalSignature + keyEncipherment, valid 2000–2099) to `keys/fuzz.key` / `keys/fuzz.pem`.
//! The targets embed both with `include_bytes!`, so a seed signed or encrypted with them stays
//! valid for the fuzzer. Test material only; it protects nothing.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509Builder, X509NameBuilder};

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let key = PKey::from_rsa(Rsa::generate(3072).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "Poststelle fuzzing").unwrap();
    name.append_entry_by_text("CN", "fuzz signer and recipient").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_str("20000101000000Z").unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_str("20991231235959Z").unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()
            .unwrap(),
    )
    .unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(ski).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    std::fs::write(dir.join("fuzz.pem"), b.build().to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("fuzz.key"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    println!("wrote {}/fuzz.{{pem,key}}", dir.display());
}
