//! Keys and certificates for the XML security tests, made with the `openssl` crate into a
//! temporary directory: a CA (RSA-3072), an RSA-3072 leaf (digitalSignature, keyEncipherment), an
//! EC P-256 leaf (digitalSignature), and a second RSA-3072 leaf ("other") for wrong-key cases.
//! Every certificate is valid from an hour ago for 30 days. Keys are written as PKCS#8 PEM
//! (`.key`, what our CLI and python-xmlsec read) and PKCS#8 DER (`.pk8.der`, what Java reads).

use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};
use poststelle_tests::pki::{self, Cert, Issued, Profile, Usage, ec_p256, rsa};
use tempfile::TempDir;

/// The subject organisation of every certificate here.
const ORG: &str = "Poststelle interop tests";

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

fn new_ca() -> Issued {
    let key = rsa(3072);
    let cert = Cert::new("Interop Test CA")
        .org(Some(ORG))
        .profile(Profile::Ca)
        .build(&key, &key);
    Issued { cert, key }
}

fn new_leaf(ca: &Issued, cn: &str, key: PKey<Private>, usage: Usage) -> Issued {
    let cert = Cert::new(cn)
        .org(Some(ORG))
        .issued_by(&ca.cert)
        .critical_constraints()
        .profile(Profile::Leaf(usage))
        .build(&key, &ca.key);
    Issued { cert, key }
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

    let rsa = new_leaf(&ca, "Interop RSA", pki::rsa(3072), Usage::SIGN_AND_TRANSPORT);
    let ec = new_leaf(&ca, "Interop EC", ec_p256(), Usage::SIGN_ONLY);
    let other = new_leaf(&ca, "Interop other RSA", pki::rsa(3072), Usage::SIGN_AND_TRANSPORT);
    TestKeys {
        ca: ca_path,
        rsa: write(dir.path(), "rsa", &rsa),
        ec: write(dir.path(), "ec", &ec),
        other: write(dir.path(), "other", &other),
        dir,
    }
}
