//! Keys and certificates: loading, and the certificate policy every signer and recipient passes
//! (PRODUCT.md "Keys"): a chain to a trust anchor of the right role (or a certificate pinned by
//! the directory), the validity period at the time of use, key usage, revocation by CRL files,
//! the key-size floor (RSA ≥ 3072, 2048 only by an explicit exception; EC ≥ 256), and the
//! signature algorithms of the certificates themselves (SHA-256/384/512 only, for the leaf and
//! every intermediate).

use std::path::{Path, PathBuf};

use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::stack::Stack;
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509KeyUsage, X509Ref, X509StoreContext};

use crate::problem::{Code, Problem};

/// Reads a private key (PKCS#8 or traditional PEM, or DER). Never echoes key material.
pub fn load_private_key(path: &Path) -> Result<PKey<Private>, String> {
    load_private_key_with(path, None)
}

/// [`load_private_key`], also for an encrypted PKCS#8 PEM key (`ENCRYPTED PRIVATE KEY`) opened
/// with `passphrase`. OpenSSL never asks a terminal: without a passphrase an encrypted key is
/// refused (an empty one is passed, so no prompt can block a service).
pub fn load_private_key_with(path: &Path, passphrase: Option<&[u8]>) -> Result<PKey<Private>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let encrypted = memchr::memmem::find(&bytes, b"ENCRYPTED").is_some();
    match (encrypted, passphrase) {
        (true, None) => Err(format!("{} is encrypted and no passphrase was given", path.display())),
        (true, Some(pass)) => PKey::private_key_from_pem_passphrase(&bytes, pass)
            .map_err(|_| format!("{}: the passphrase does not open it", path.display())),
        (false, _) => PKey::private_key_from_pem_passphrase(&bytes, b"")
            .or_else(|_| PKey::private_key_from_der(&bytes))
            .map_err(|_| format!("{} holds no readable private key", path.display())),
    }
}

/// Reads every certificate of a PEM file (or one DER certificate).
pub fn load_certs(path: &Path) -> Result<Vec<X509>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = X509::stack_from_pem(&bytes).ok().filter(|c| !c.is_empty());
    match certs {
        Some(c) => Ok(c),
        None => X509::from_der(&bytes)
            .map(|c| vec![c])
            .map_err(|_| format!("{} holds no certificate", path.display())),
    }
}

/// The first certificate of a file.
pub fn load_cert(path: &Path) -> Result<X509, String> {
    load_certs(path)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} holds no certificate", path.display()))
}

/// What a certificate must satisfy to be used.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Trust anchors of the role (empty: only pinned certificates are usable).
    pub anchors: Vec<PathBuf>,
    /// CRL files (PEM); when given, every certificate of the chain must be covered and not revoked.
    pub crls: Vec<PathBuf>,
    /// Verification time (seconds since the epoch); `None` = now.
    pub at: Option<i64>,
    /// The explicit exception: accept 2048-bit RSA keys (logged by the caller).
    pub allow_rsa_2048: bool,
}

/// The purpose a certificate is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Sign,
    Encrypt,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(Code::CertificateInvalid, detail)
}

/// A printable name for a certificate (its subject's values).
pub fn describe(cert: &X509Ref) -> String {
    cert.subject_name()
        .entries()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key-size floor: RSA ≥ 3072 bits (2048 by exception); EC only on the profile's curves
/// P-256 and P-384 and the Brainpool curves BSI TR-02102 names beside them, brainpoolP256r1 and
/// brainpoolP384r1; no other key types.
pub fn check_key_strength(key: &PKey<Public>, allow_rsa_2048: bool) -> Result<(), Problem> {
    match key.id() {
        Id::RSA => {
            let bits = key.bits();
            if bits >= 3072 || (allow_rsa_2048 && bits >= 2048) {
                Ok(())
            } else {
                Err(invalid(format!("RSA key of {bits} bits is below the floor of 3072")))
            }
        }
        Id::EC => {
            let curve = key.ec_key().ok().and_then(|k| k.group().curve_name());
            match curve {
                Some(Nid::X9_62_PRIME256V1 | Nid::SECP384R1 | Nid::BRAINPOOL_P256R1 | Nid::BRAINPOOL_P384R1) => Ok(()),
                other => Err(invalid(format!(
                    "EC keys must be on P-256, P-384, brainpoolP256r1 or brainpoolP384r1, not {}",
                    other.and_then(|n| n.short_name().ok()).unwrap_or("an unnamed curve")
                ))),
            }
        }
        _ => Err(invalid("only RSA and EC keys are allowed")),
    }
}

/// A TLS (node) certificate's key beyond [`check_key_strength`]: not on a Brainpool curve.
/// OpenSSL 3.0 has no TLS 1.3 signature schemes for them (3.2 added them), and TLS 1.2 would
/// need the Brainpool groups enabled on both sides; content keys on them work (XML signatures,
/// ECDH-ES).
pub fn check_tls_key(cert: &X509Ref) -> Result<(), Problem> {
    let curve = cert
        .public_key()
        .ok()
        .and_then(|k| k.ec_key().ok())
        .and_then(|k| k.group().curve_name());
    match curve {
        Some(Nid::BRAINPOOL_P256R1 | Nid::BRAINPOOL_P384R1) => Err(invalid(format!(
            "certificate {}: TLS certificates must be RSA or on P-256 or P-384 (this OpenSSL has no TLS 1.3 \
             signature scheme for Brainpool curves; they are for authority certificates)",
            describe(cert)
        ))),
        _ => Ok(()),
    }
}

/// The signature algorithm a certificate is signed with, if the profile allows it. An
/// allow-list (BSI TR-02102): RSA PKCS#1 v1.5, RSA-PSS and ECDSA, each with SHA-256, -384 or
/// -512. SHA-1, MD5 and everything else are refused.
pub fn check_cert_signature(cert: &X509Ref) -> Result<(), Problem> {
    let nid = cert.signature_algorithm().object().nid();
    let allowed = match nid {
        Nid::SHA256WITHRSAENCRYPTION
        | Nid::SHA384WITHRSAENCRYPTION
        | Nid::SHA512WITHRSAENCRYPTION
        | Nid::ECDSA_WITH_SHA256
        | Nid::ECDSA_WITH_SHA384
        | Nid::ECDSA_WITH_SHA512 => true,
        // The hash of RSA-PSS is in the algorithm's parameters (absent = SHA-1); OpenSSL's
        // text form is the only view of them the bindings give.
        Nid::RSASSAPSS => pss_hash(cert).is_some_and(|h| matches!(h.as_str(), "sha256" | "sha384" | "sha512")),
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let name = match nid {
        Nid::RSASSAPSS => format!(
            "RSA-PSS with {}",
            pss_hash(cert).unwrap_or_else(|| "an unknown hash".into())
        ),
        n => n.long_name().unwrap_or("an unknown algorithm").to_owned(),
    };
    Err(invalid(format!(
        "certificate {} is signed with {name}, which the profile does not allow (SHA-1 and MD5 are refused)",
        describe(cert)
    )))
}

/// The hash named in an RSA-PSS signature's parameters ("sha1" when they give none).
fn pss_hash(cert: &X509Ref) -> Option<String> {
    let text = String::from_utf8(cert.to_text().ok()?).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("Hash Algorithm:"))?;
    let value = line.split_once(':')?.1.trim();
    Some(value.split_whitespace().next()?.to_ascii_lowercase())
}

/// Every certificate of a verified chain (leaf first, trust anchor last): its key passes the
/// key-size floor, and each one but the anchor is signed with an allowed algorithm (the
/// anchor's self-signature carries no trust: it is trusted because it is configured).
pub fn check_chain_algorithms(chain: &[X509], allow_rsa_2048: bool) -> Result<(), Problem> {
    for (i, c) in chain.iter().enumerate() {
        let anchor = i + 1 == chain.len() && c.issued(c) == openssl::x509::X509VerifyResult::OK;
        if !anchor {
            check_cert_signature(c)?;
        }
        let key = c
            .public_key()
            .map_err(|_| invalid(format!("the key of certificate {} is unreadable", describe(c))))?;
        check_key_strength(&key, allow_rsa_2048)
            .map_err(|p| invalid(format!("certificate {}: {}", describe(c), p.detail)))?;
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks the validity period, key usage, signature algorithm and key size of one certificate
/// (no chain).
pub fn check_leaf(cert: &X509Ref, usage: Usage, policy: &Policy) -> Result<(), Problem> {
    check_cert_signature(cert)?;
    let at = openssl::asn1::Asn1Time::from_unix(policy.at.unwrap_or_else(now))
        .map_err(|_| invalid("cannot represent the verification time"))?;
    if cert.not_before() > at {
        return Err(invalid(format!("certificate {} is not yet valid", describe(cert))));
    }
    if cert.not_after() < at {
        return Err(invalid(format!("certificate {} has expired", describe(cert))));
    }
    let key = cert
        .public_key()
        .map_err(|_| invalid("the certificate's key is unreadable"))?;
    if let Some(ku) = cert.key_usage() {
        // Encryption to an RSA key transports the content key; to an EC key it agrees one.
        let (needed, what) = match (usage, key.id()) {
            (Usage::Sign, _) => (
                X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::NON_REPUDIATION,
                "digital signatures",
            ),
            (Usage::Encrypt, Id::EC) => (X509KeyUsage::KEY_AGREEMENT, "key agreement"),
            (Usage::Encrypt, _) => (X509KeyUsage::KEY_ENCIPHERMENT, "key encipherment"),
        };
        if !ku.intersects(needed) {
            return Err(invalid(format!("certificate {} does not allow {what}", describe(cert))));
        }
    }
    check_key_strength(&key, policy.allow_rsa_2048)
}

/// Check of a pinned certificate (from the directory or `--cert`): with anchors, the full
/// chain check; without, the leaf rules only — unless CRLs are configured, which cannot be
/// checked without the issuer, so that combination is refused rather than silently ignored.
pub fn check_pinned(cert: &X509Ref, extra: &[X509], usage: Usage, policy: &Policy) -> Result<(), Problem> {
    if !policy.anchors.is_empty() {
        return check_chain(cert, extra, usage, policy);
    }
    if !policy.crls.is_empty() {
        return Err(invalid(
            "revocation lists are configured but no trust anchor to check them with; give the issuer's CA",
        ));
    }
    check_leaf(cert, usage, policy)
}

/// Full check: leaf rules, then a chain to one of the anchors (with `extra` as untrusted
/// intermediates), with revocation when CRLs are configured.
///
/// A chain that passed is remembered for at most [`CHAIN_PASS_KEPT`] and never past the
/// earliest `notAfter` of its certificates: the same few partner certificates sign every
/// message, and each full check built a store and verified the CA's signature on the leaf
/// again. What was checked is the key: the certificates' encodings, the usage, the key-size
/// exception, and the anchor and CRL files with their modification times and lengths (a
/// replaced file is checked at once). A refusal is never remembered; a fixed verification time
/// (`policy.at`) is never cached.
pub fn check_chain(cert: &X509Ref, extra: &[X509], usage: Usage, policy: &Policy) -> Result<(), Problem> {
    type Passed = std::collections::HashMap<[u8; 32], std::time::Instant>;
    static PASSED: std::sync::LazyLock<std::sync::Mutex<Passed>> = std::sync::LazyLock::new(Default::default);
    let key = policy
        .at
        .is_none()
        .then(|| chain_key(cert, extra, usage, policy))
        .flatten();
    let now = std::time::Instant::now();
    if let Some(k) = &key
        && PASSED.lock().is_ok_and(|m| m.get(k).is_some_and(|until| *until > now))
    {
        return Ok(());
    }
    let left = check_chain_now(cert, extra, usage, policy)?;
    if let (Some(k), Ok(mut m)) = (key, PASSED.lock()) {
        if m.len() >= 1024 {
            m.retain(|_, until| *until > now);
            if m.len() >= 1024 {
                m.clear();
            }
        }
        m.insert(k, now + left.min(CHAIN_PASS_KEPT));
    }
    Ok(())
}

/// How long a chain that passed [`check_chain`] is taken as passed without a new check.
pub const CHAIN_PASS_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// What a chain check depends on, hashed; `None` where a file cannot be read (no caching).
fn chain_key(cert: &X509Ref, extra: &[X509], usage: Usage, policy: &Policy) -> Option<[u8; 32]> {
    let mut h = openssl::sha::Sha256::new();
    let mut add = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    add(&cert.to_der().ok()?);
    for c in extra {
        add(&c.to_der().ok()?);
    }
    add(&[usage as u8, policy.allow_rsa_2048 as u8]);
    for (kind, files) in [(b"anchors", &policy.anchors), (b"crls\0\0\0", &policy.crls)] {
        add(kind);
        for f in files {
            let (modified, len) = file_stamp(f).ok()?;
            let modified = modified?.duration_since(std::time::UNIX_EPOCH).ok()?;
            add(f.as_os_str().as_encoded_bytes());
            add(&modified.as_nanos().to_be_bytes());
            add(&len.to_be_bytes());
        }
    }
    Some(h.finish())
}

/// The check itself; on success, how long until the first certificate of the chain expires.
fn check_chain_now(
    cert: &X509Ref,
    extra: &[X509],
    usage: Usage,
    policy: &Policy,
) -> Result<std::time::Duration, Problem> {
    check_leaf(cert, usage, policy)?;
    if policy.anchors.is_empty() {
        return Err(invalid("no trust anchor is configured for this role"));
    }
    let fail = |_| invalid("cannot set up certificate verification");
    let mut builder = X509StoreBuilder::new().map_err(fail)?;
    for path in &policy.anchors {
        for c in anchor_certs(path).map_err(invalid)? {
            builder.add_cert(c).map_err(fail)?;
        }
    }
    let mut flags = X509VerifyFlags::empty();
    if !policy.crls.is_empty() {
        let lookup = builder.add_lookup(X509Lookup::file()).map_err(fail)?;
        for crl in &policy.crls {
            lookup
                .load_crl_file(crl, openssl::ssl::SslFiletype::PEM)
                .map_err(|_| invalid(format!("cannot read CRL {}", crl.display())))?;
        }
        flags |= X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL;
    }
    let mut param = X509VerifyParam::new().map_err(fail)?;
    param.set_flags(flags).map_err(fail)?;
    // OpenSSL's own floor as a second line behind the explicit checks below: level 2 (112
    // bits) refuses SHA-1 and MD5 signatures and keys under 2048 bits anywhere in the chain.
    param.set_auth_level(2);
    param.set_time(policy.at.unwrap_or_else(now) as _);
    builder.set_param(&param).map_err(fail)?;
    let store = builder.build();
    let mut chain = Stack::new().map_err(fail)?;
    for c in extra {
        chain.push(c.clone()).map_err(fail)?;
    }
    let mut ctx = X509StoreContext::new().map_err(fail)?;
    let result = ctx
        .init(&store, cert, &chain, |c| {
            let ok = c.verify_cert()?;
            let built: Vec<X509> = c
                .chain()
                .map(|s| s.iter().map(|x| x.to_owned()).collect())
                .unwrap_or_default();
            Ok((ok, c.error(), built))
        })
        .map_err(fail)?;
    match result {
        (true, _, built) => {
            check_chain_algorithms(&built, policy.allow_rsa_2048)?;
            Ok(valid_for(&built))
        }
        (false, e, _) => Err(invalid(format!(
            "certificate {} is not trusted: {}",
            describe(cert),
            e.error_string()
        ))),
    }
}

/// How long until the first of these certificates expires (zero if one has or it cannot be told).
fn valid_for(chain: &[X509]) -> std::time::Duration {
    let Ok(now) = openssl::asn1::Asn1Time::days_from_now(0) else {
        return std::time::Duration::ZERO;
    };
    let secs = chain
        .iter()
        .map(|c| {
            now.diff(c.not_after())
                .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0);
    std::time::Duration::from_secs(secs.max(0) as u64)
}

/// The certificates of an anchor file, parsed once and kept while the file's modification time
/// and length stay the same: every message's signatures are checked against the anchors, and
/// reading and decoding the PEM file each time was a measurable part of the CPU per message
/// (OpenSSL 3's decoders fetch their algorithms per call). A replaced file is read again.
fn anchor_certs(path: &Path) -> Result<Vec<X509>, String> {
    type Cache = std::collections::HashMap<PathBuf, (Option<std::time::SystemTime>, u64, Vec<X509>)>;
    static CACHE: std::sync::OnceLock<std::sync::Mutex<Cache>> = std::sync::OnceLock::new();
    let (modified, len) = file_stamp(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cache = CACHE.get_or_init(Default::default);
    if let Some((m, l, certs)) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(path)
        && *m == modified
        && *l == len
    {
        return Ok(certs.clone());
    }
    let certs = load_certs(path)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_path_buf(), (modified, len, certs.clone()));
    Ok(certs)
}

/// What tells a file replaced under the same path: its modification time and length.
fn file_stamp(path: &Path) -> std::io::Result<(Option<std::time::SystemTime>, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified().ok(), meta.len()))
}

/// SHA-256 of a certificate's DER (how the directory and TLS peers are matched).
pub fn fingerprint(cert: &X509) -> Result<[u8; 32], openssl::error::ErrorStack> {
    let d = cert.digest(openssl::hash::MessageDigest::sha256())?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&d);
    Ok(out)
}

/// The fingerprints of every certificate in a file (a partner's certificate file holds its
/// node certificate, or the old and the new one during a rollover).
pub fn fingerprints_of_pem_file(path: &std::path::Path) -> Result<Vec<[u8; 32]>, String> {
    load_certs(path)?
        .iter()
        .map(|c| fingerprint(c).map_err(|e| e.to_string()))
        .collect()
}
