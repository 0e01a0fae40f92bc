//! Keys and certificates for the XML security tests, made with the `openssl` crate into a
//! temporary directory: a CA (RSA-3072), an RSA-3072 leaf (digitalSignature, keyEncipherment), an
//! EC P-256 leaf (digitalSignature), and a second RSA-3072 leaf ("other") for wrong-key cases.
//! Every certificate is valid from an hour ago for 30 days. Keys are written as PKCS#8 PEM
//! (`.key`, what our CLI and python-xmlsec read) and PKCS#8 DER (`.pk8.der`, what Java reads).

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use tempfile::TempDir;

/// One certificate with its private key, as files.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key, PKCS#8 PEM.
    pub key: PathBuf,
    /// The private key, PKCS#8 DER.
    pub der: PathBuf,
}

/// The test PKI. The files live as long as `dir`.
#[derive(Debug)]
pub struct TestKeys {
    pub dir: TempDir,
    /// `CA.pem`, the trust anchor (self-signed, CA:true, keyCertSign).
    pub ca: PathBuf,
    /// `rsa.pem` / `rsa.key` / `rsa.pk8.der`: RSA-3072, digitalSignature + keyEncipherment.
    pub rsa: KeyFiles,
    /// `ec.pem` / `ec.key` / `ec.pk8.der`: EC P-256, digitalSignature.
    pub ec: KeyFiles,
    /// `other.pem` / `other.key` / `other.pk8.der`: another RSA-3072 leaf of the same CA.
    pub other: KeyFiles,
}

struct Issued {
    cert: X509,
    key: PKey<Private>,
}

fn builder(cn: &str, key: &PKey<Private>) -> X509Builder {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "Poststelle interop tests").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    b
}

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(3072).unwrap()).unwrap()
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn new_ca() -> Issued {
    let key = rsa_key();
    let mut b = builder("Interop Test CA", &key);
    let subject = b.x509v3_context(None, None);
    let ski = SubjectKeyIdentifier::new().build(&subject).unwrap();
    // The CA is self-signed: issuer = subject.
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "Poststelle interop tests").unwrap();
    name.append_entry_by_text("CN", "Interop Test CA").unwrap();
    b.set_issuer_name(&name.build()).unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap())
        .unwrap();
    b.append_extension(ski).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    Issued { cert: b.build(), key }
}

fn new_leaf(ca: &Issued, cn: &str, key: PKey<Private>, usage: &KeyUsage) -> Issued {
    let mut b = builder(cn, &key);
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap())
        .unwrap();
    b.append_extension(usage.build().unwrap()).unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(Some(&ca.cert), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(&ca.cert), None))
        .unwrap();
    b.append_extension(aki).unwrap();
    b.sign(&ca.key, MessageDigest::sha256()).unwrap();
    Issued { cert: b.build(), key }
}

fn write(dir: &Path, name: &str, issued: &Issued) -> KeyFiles {
    let files = KeyFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        der: dir.join(format!("{name}.pk8.der")),
    };
    std::fs::write(&files.cert, issued.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&files.key, issued.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(&files.der, issued.key.private_key_to_pkcs8().unwrap()).unwrap();
    files
}

/// Builds a fresh test PKI in a new temporary directory.
pub fn test_keys() -> TestKeys {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    let ca_path = dir.path().join("CA.pem");
    std::fs::write(&ca_path, ca.cert.to_pem().unwrap()).unwrap();

    let mut sign_and_encrypt = KeyUsage::new();
    sign_and_encrypt.critical().digital_signature().key_encipherment();
    let mut sign_only = KeyUsage::new();
    sign_only.critical().digital_signature();

    let rsa = new_leaf(&ca, "Interop RSA", rsa_key(), &sign_and_encrypt);
    let ec = new_leaf(&ca, "Interop EC", ec_key(), &sign_only);
    let other = new_leaf(&ca, "Interop other RSA", rsa_key(), &sign_and_encrypt);
    TestKeys {
        ca: ca_path,
        rsa: write(dir.path(), "rsa", &rsa),
        ec: write(dir.path(), "ec", &ec),
        other: write(dir.path(), "other", &other),
        dir,
    }
}
