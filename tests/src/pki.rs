//! The one test PKI: keys, certificates and CRLs for every test file and the benches. A
//! certificate is described by a [`Cert`] (subject, issuer, validity, profile, digest) and
//! built for any public key, signed by any key, so a test can make exactly the certificate
//! its attack needs — a CA, a node (TLS), an authority (content signatures), a weak one (SHA-1,
//! RSA-2048), an expired or not yet valid one, a self-signed impostor — in one way.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, CrlNumber, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509CrlBuilder, X509NameBuilder, X509RevokedBuilder};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fresh RSA key of `bits` bits (2048 is under the profile's floor: a weak key).
pub fn rsa(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

/// A fresh ECDSA key on P-256.
pub fn ec_p256() -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&p256()).unwrap()).unwrap()
}

/// A fresh EC key on the curve `nid` (P-384, P-521, Brainpool …).
pub fn ec(nid: Nid) -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap()).unwrap()
}

/// The P-256 group.
fn p256() -> EcGroup {
    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()
}

/// What a certificate's key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A CA: basic constraints CA (critical), keyCertSign and cRLSign.
    Ca,
    /// A node: TLS server and client, valid for localhost and 127.0.0.1 (as `network init`
    /// makes them); digitalSignature and keyEncipherment.
    Node,
    /// A leaf with exactly these key usages (critical).
    Leaf(Usage),
}

/// Key usages of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub digital_signature: bool,
    pub non_repudiation: bool,
    pub key_encipherment: bool,
}

impl Usage {
    /// Content signatures only (an authority as the weak-certificate tests make it).
    pub const SIGN: Usage = Usage {
        digital_signature: true,
        non_repudiation: true,
        key_encipherment: false,
    };
    /// digitalSignature alone.
    pub const SIGN_ONLY: Usage = Usage {
        digital_signature: true,
        non_repudiation: false,
        key_encipherment: false,
    };
    /// Signatures and key transport (an authority that also receives encrypted content).
    pub const SIGN_AND_ENCRYPT: Usage = Usage {
        digital_signature: true,
        non_repudiation: true,
        key_encipherment: true,
    };
    /// digitalSignature and keyEncipherment, without nonRepudiation.
    pub const SIGN_AND_TRANSPORT: Usage = Usage {
        digital_signature: true,
        non_repudiation: false,
        key_encipherment: true,
    };
}

/// A certificate to build. [`Cert::new`] gives a self-signed-shaped leaf for signatures and
/// encryption, valid from an hour ago for 30 days, signed with SHA-256, with key identifiers;
/// each method changes one thing.
#[derive(Clone)]
pub struct Cert<'a> {
    org: Option<&'a str>,
    cn: &'a str,
    issuer: Option<&'a X509>,
    not_before: i64,
    not_after: i64,
    profile: Profile,
    critical_constraints: bool,
    key_ids: bool,
    digest: MessageDigest,
}

impl<'a> Cert<'a> {
    pub fn new(cn: &'a str) -> Cert<'a> {
        let now = now();
        Cert {
            org: Some("Poststelle tests"),
            cn,
            issuer: None,
            not_before: now - 3600,
            not_after: now + 30 * DAY,
            profile: Profile::Leaf(Usage::SIGN_AND_ENCRYPT),
            critical_constraints: false,
            key_ids: true,
            digest: MessageDigest::sha256(),
        }
    }

    /// The subject's organisation (`None`: the subject is the common name alone).
    pub fn org(mut self, org: Option<&'a str>) -> Self {
        self.org = org;
        self
    }

    /// Issued by this certificate (its key signs, see [`Cert::build`]); without, the issuer
    /// name is the subject's.
    pub fn issued_by(mut self, issuer: &'a X509) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// Valid from `from` to `to` (Unix seconds).
    pub fn valid(mut self, from: i64, to: i64) -> Self {
        self.not_before = from;
        self.not_after = to;
        self
    }

    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// A leaf's basic constraints marked critical.
    pub fn critical_constraints(mut self) -> Self {
        self.critical_constraints = true;
        self
    }

    /// No subject and authority key identifiers.
    pub fn without_key_ids(mut self) -> Self {
        self.key_ids = false;
        self
    }

    /// The digest the issuer signs with (SHA-1 or MD5: a weak certificate).
    pub fn digest(mut self, digest: MessageDigest) -> Self {
        self.digest = digest;
        self
    }

    /// The certificate for `key`, signed by `signer` (the issuer's key, or `key` itself).
    pub fn build(&self, key: &PKey<impl HasPublic>, signer: &PKey<Private>) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        if let Some(org) = self.org {
            name.append_entry_by_text("O", org).unwrap();
        }
        name.append_entry_by_text("CN", self.cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let mut serial = BigNum::new().unwrap();
        serial.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(self.issuer.map_or(&*name, |c| c.subject_name()))
            .unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(self.not_before).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(self.not_after).unwrap()).unwrap();
        let mut constraints = BasicConstraints::new();
        if self.critical_constraints {
            constraints.critical();
        }
        match self.profile {
            Profile::Ca => {
                b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                    .unwrap();
                b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap())
                    .unwrap();
            }
            Profile::Node => {
                b.append_extension(constraints.build().unwrap()).unwrap();
                b.append_extension(
                    KeyUsage::new()
                        .critical()
                        .digital_signature()
                        .key_encipherment()
                        .build()
                        .unwrap(),
                )
                .unwrap();
                b.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build().unwrap())
                    .unwrap();
                let san = SubjectAlternativeName::new()
                    .dns("localhost")
                    .ip("127.0.0.1")
                    .build(&b.x509v3_context(self.issuer.map(|c| &**c), None))
                    .unwrap();
                b.append_extension(san).unwrap();
            }
            Profile::Leaf(u) => {
                b.append_extension(constraints.build().unwrap()).unwrap();
                let mut usage = KeyUsage::new();
                usage.critical();
                if u.digital_signature {
                    usage.digital_signature();
                }
                if u.non_repudiation {
                    usage.non_repudiation();
                }
                if u.key_encipherment {
                    usage.key_encipherment();
                }
                b.append_extension(usage.build().unwrap()).unwrap();
            }
        }
        if self.key_ids {
            let ski = SubjectKeyIdentifier::new()
                .build(&b.x509v3_context(self.issuer.map(|c| &**c), None))
                .unwrap();
            b.append_extension(ski).unwrap();
            if self.issuer.is_some() {
                let aki = AuthorityKeyIdentifier::new()
                    .keyid(true)
                    .build(&b.x509v3_context(self.issuer.map(|c| &**c), None))
                    .unwrap();
                b.append_extension(aki).unwrap();
            }
        }
        b.sign(signer, self.digest).unwrap();
        b.build()
    }
}

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

/// A CRL of `issuer` (PEM), updated at `last`, next update `next` (Unix seconds), revoking
/// `revoked`.
pub fn crl(issuer: &X509, key: &PKey<Private>, last: i64, next: i64, revoked: &[&X509]) -> Vec<u8> {
    let mut b = X509CrlBuilder::new().unwrap();
    b.set_issuer_name(issuer.subject_name()).unwrap();
    b.set_last_update(&Asn1Time::from_unix(last).unwrap()).unwrap();
    b.set_next_update(&Asn1Time::from_unix(next).unwrap()).unwrap();
    for c in revoked {
        let mut r = X509RevokedBuilder::new().unwrap();
        r.set_serial_number(c.serial_number()).unwrap();
        r.set_revocation_date(&Asn1Time::from_unix(last).unwrap()).unwrap();
        b.add_revoked(r.build()).unwrap();
    }
    let tmp = X509Builder::new().unwrap();
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&tmp.x509v3_context(Some(issuer), None))
        .unwrap();
    b.append_extension(aki).unwrap();
    b.append_extension(CrlNumber::new(BigNum::from_u32(1).unwrap()).unwrap().build().unwrap())
        .unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build().unwrap().to_pem().unwrap()
}

pub fn load_key(path: &Path) -> PKey<Private> {
    PKey::private_key_from_pem(&std::fs::read(path).unwrap()).unwrap()
}

pub fn load_cert(path: &Path) -> X509 {
    X509::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes certificates as one PEM file.
pub fn write_pem(path: &Path, certs: &[&X509]) -> PathBuf {
    let mut pem = Vec::new();
    for c in certs {
        pem.extend(c.to_pem().unwrap());
    }
    std::fs::write(path, pem).unwrap();
    path.to_path_buf()
}
