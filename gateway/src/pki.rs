//! A development PKI for local networks, made with the `openssl` crate: a transport CA with
//! node certificates, and a content CA with authority certificates (one trust anchor per
//! role); every key RSA-3072, or EC P-256 with `--key-type ec` (signatures SHA-256: with
//! RSA or ECDSA). Not for production: real deployments use certificates from
//! their administration PKI (e.g. the DOI/V-PKI) and only point the config at the files.

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder};

/// RSA modulus size for new keys (PRODUCT.md: at least 3072).
pub const RSA_BITS: u32 = 3072;
/// Validity of development certificates in days.
const DEV_DAYS: u32 = 825;

/// A certificate with its private key.
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("subject", &self.cert.subject_name())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes `NAME.pem` (certificate) and `NAME.key` (PKCS#8 key, mode 0600) into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        std::fs::write(dir.join(format!("{name}.pem")), self.cert.to_pem()?)?;
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&key_path, self.key.private_key_to_pem_pkcs8()?)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}

/// The key type of a development network's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyType {
    /// RSA-3072: signatures RSA-PSS, encryption RSA-OAEP.
    #[default]
    Rsa,
    /// EC P-256: signatures ECDSA, encryption ECDH-ES.
    Ec,
}

fn new_key(kind: KeyType) -> anyhow::Result<PKey<Private>> {
    Ok(match kind {
        KeyType::Rsa => PKey::from_rsa(Rsa::generate(RSA_BITS)?)?,
        KeyType::Ec => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)?
        }
    })
}

fn base(cn: &str, key: &PKey<Private>) -> anyhow::Result<X509Builder> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("O", "Poststelle development network")?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(DEV_DAYS)?)?;
    Ok(b)
}

/// A self-signed CA.
pub fn new_ca(cn: &str, kind: KeyType) -> anyhow::Result<Issued> {
    let key = new_key(kind)?;
    let mut b = base(cn, &key)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("O", "Poststelle development network")?;
    name.append_entry_by_text("CN", cn)?;
    b.set_issuer_name(&name.build())?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok(Issued { cert: b.build(), key })
}

/// An end-entity certificate issued by `ca` with the given key usage; `extra` adds extensions.
fn new_leaf(
    ca: &Issued,
    cn: &str,
    key: PKey<Private>,
    usage: &mut KeyUsage,
    extra: impl FnOnce(&mut X509Builder) -> anyhow::Result<()>,
) -> anyhow::Result<Issued> {
    let mut b = base(cn, &key)?;
    b.set_issuer_name(ca.cert.subject_name())?;
    b.append_extension(BasicConstraints::new().build()?)?;
    b.append_extension(usage.critical().build()?)?;
    extra(&mut b)?;
    key_ids(&mut b, ca)?;
    b.sign(&ca.key, MessageDigest::sha256())?;
    Ok(Issued { cert: b.build(), key })
}

/// A node certificate for TLS server and client use, valid for 127.0.0.1, ::1 and localhost.
pub fn new_node_cert(ca: &Issued, node: &str, kind: KeyType) -> anyhow::Result<Issued> {
    new_node_cert_for(ca, node, new_key(kind)?)
}

/// [`new_node_cert`] for a key of the caller's (any curve, for tests of the certificate policy).
pub fn new_node_cert_for(ca: &Issued, node: &str, key: PKey<Private>) -> anyhow::Result<Issued> {
    let mut usage = KeyUsage::new();
    usage.digital_signature();
    if key.rsa().is_ok() {
        usage.key_encipherment();
    }
    new_leaf(ca, &format!("poststelle node {node}"), key, &mut usage, |b| {
        b.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build()?)?;
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .ip("::1")
            .build(&b.x509v3_context(Some(&ca.cert), None))?;
        b.append_extension(san)?;
        Ok(())
    })
}

/// An authority certificate: content signatures, and the key of messages to it (RSA: key
/// transport, key encipherment; EC: ECDH-ES, key agreement).
pub fn new_authority_cert(ca: &Issued, authority: &str, kind: KeyType) -> anyhow::Result<Issued> {
    new_authority_cert_for(ca, authority, new_key(kind)?)
}

/// [`new_authority_cert`] for a key of the caller's (e.g. on a Brainpool curve).
pub fn new_authority_cert_for(ca: &Issued, authority: &str, key: PKey<Private>) -> anyhow::Result<Issued> {
    let mut usage = KeyUsage::new();
    usage.digital_signature().non_repudiation();
    match key.rsa().is_ok() {
        true => usage.key_encipherment(),
        false => usage.key_agreement(),
    };
    new_leaf(ca, &format!("authority {authority}"), key, &mut usage, |_| Ok(()))
}

/// Subject and authority key identifiers (RFC 5280 §4.2.1.1–2), so chains build unambiguously.
fn key_ids(b: &mut X509Builder, ca: &Issued) -> anyhow::Result<()> {
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca.cert), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(&ca.cert), None))?;
    b.append_extension(aki)?;
    Ok(())
}

/// File name (without extension) for an authority's certificate and key.
pub fn authority_file_name(authority: &str) -> String {
    authority
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
