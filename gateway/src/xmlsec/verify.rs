//! XML Signature verification under the profile.
//!
//! Order of work: find exactly one `ds:Signature`; index every ID and refuse duplicates; read
//! the whole `SignedInfo` and `KeyInfo` and check every algorithm, transform and URI against
//! the allow-lists; only then resolve the key (a pinned certificate from the directory, or a
//! KeyInfo certificate that must chain to a trust anchor — never a bare key from KeyInfo),
//! verify the signature value over the canonical `SignedInfo`, and recompute every reference.
//! The result names the nodes the references covered; callers process exactly those and never
//! look an ID up a second time.

use std::collections::HashMap;

use libxml::tree::{Document, Node};
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};
use openssl::x509::X509;

use super::dom::{self, attr, elements, is, structure};
use super::profile::{self, DSIG_NS, EXC_C14N_NS, KeyKind, Scheme, SignatureMethod, not_allowed};
use super::trust::{self, Policy, Usage};
use crate::problem::{Code, Problem};
use crate::xml::libxml::{C14nInput, c14n};

/// Who may have signed.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// This certificate (from the directory) and no other; it is also checked against the
    /// policy's anchors when there are any.
    Pinned(&'a X509),
    /// Any signer whose KeyInfo certificate chains to one of the policy's anchors.
    Anchored,
}

/// What a reference covered.
#[derive(Debug, Clone)]
pub enum Covered {
    /// `URI=""`: the whole document (minus the signature, if enveloped).
    Document,
    /// `URI="#id"`: this element.
    Element(Node),
}

/// A verified signature.
#[derive(Debug)]
pub struct Verified {
    pub signer: X509,
    /// In reference order.
    pub covered: Vec<Covered>,
    /// The `ds:Signature` element.
    pub signature: Node,
}

impl Verified {
    /// True when a reference covered the whole document.
    pub fn covers_document(&self) -> bool {
        self.covered.iter().any(|c| matches!(c, Covered::Document))
    }
}

/// How one reference is turned into octets.
struct RefPlan {
    target: Covered,
    enveloped: bool,
    exclusive: bool,
    prefixes: Vec<String>,
    digest: MessageDigest,
    digest_value: Vec<u8>,
    uri: String,
}

struct C14nSpec {
    exclusive: bool,
    prefixes: Vec<String>,
}

/// Reads a canonicalisation element (CanonicalizationMethod or a c14n Transform).
fn c14n_spec(node: &Node, uri: &str) -> Result<C14nSpec, Problem> {
    let exclusive = profile::c14n_method(uri)?;
    let mut prefixes = Vec::new();
    for child in elements(node) {
        if exclusive && is(&child, EXC_C14N_NS, "InclusiveNamespaces") {
            prefixes.extend(
                attr(&child, "PrefixList")
                    .unwrap_or_default()
                    .split_ascii_whitespace()
                    .map(|p| if p == "#default" { String::new() } else { p.to_owned() }),
            );
        } else {
            return Err(not_allowed("canonicalization parameter", &child.get_name()));
        }
    }
    Ok(C14nSpec { exclusive, prefixes })
}

fn algorithm(node: &Node) -> Result<String, Problem> {
    attr(node, "Algorithm").ok_or_else(|| structure(format!("{} has no Algorithm", node.get_name())))
}

/// Every ID in the document; a value used twice is an error (wrapping attacks rely on it).
fn index_ids(doc: &Document) -> Result<HashMap<String, Node>, Problem> {
    let root = doc
        .get_root_element()
        .ok_or_else(|| structure("the document is empty"))?;
    let mut ids = HashMap::new();
    let mut dup = None;
    dom::walk(&root, &mut |n| {
        for id in dom::id_of(n) {
            if ids.insert(id.clone(), n.clone()).is_some() && dup.is_none() {
                dup = Some(id);
            }
        }
    });
    match dup {
        Some(id) => Err(structure(format!("the ID {:?} occurs more than once", clip(&id)))),
        None => Ok(ids),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// All `ds:Signature` elements of the document.
pub fn signatures(doc: &Document) -> Vec<Node> {
    let mut found = Vec::new();
    if let Some(root) = doc.get_root_element() {
        dom::walk(&root, &mut |n| {
            if is(n, DSIG_NS, "Signature") {
                found.push(n.clone());
            }
        });
    }
    found
}

/// The one signature of the document.
pub fn the_signature(doc: &Document) -> Result<Node, Problem> {
    let mut sigs = signatures(doc);
    match sigs.len() {
        1 => Ok(sigs.remove(0)),
        0 => Err(structure("the document carries no signature")),
        n => Err(structure(format!(
            "the document carries {n} signatures; the profile allows exactly one"
        ))),
    }
}

/// Verifies the document's one signature.
pub fn verify(doc: &Document, expect: Expect<'_>, policy: &Policy) -> Result<Verified, Problem> {
    let sig = the_signature(doc)?;
    let ids = index_ids(doc)?;

    // 1. Structure and allow-lists, before any cryptography.
    let kids = elements(&sig);
    let signed_info = kids
        .first()
        .filter(|n| is(n, DSIG_NS, "SignedInfo"))
        .cloned()
        .ok_or_else(|| structure("Signature must start with SignedInfo"))?;
    let value_node = kids
        .get(1)
        .filter(|n| is(n, DSIG_NS, "SignatureValue"))
        .cloned()
        .ok_or_else(|| structure("SignedInfo must be followed by SignatureValue"))?;
    let key_info = kids.get(2).filter(|n| is(n, DSIG_NS, "KeyInfo")).cloned();
    for extra in kids.iter().skip(if key_info.is_some() { 3 } else { 2 }) {
        if !is(extra, DSIG_NS, "Object") {
            return Err(structure(format!("unexpected {} in Signature", extra.get_name())));
        }
    }

    let si = elements(&signed_info);
    let c14n_node = si
        .first()
        .filter(|n| is(n, DSIG_NS, "CanonicalizationMethod"))
        .ok_or_else(|| structure("SignedInfo must start with CanonicalizationMethod"))?;
    let si_c14n = c14n_spec(c14n_node, &algorithm(c14n_node)?)?;
    let method_node = si
        .get(1)
        .filter(|n| is(n, DSIG_NS, "SignatureMethod"))
        .ok_or_else(|| structure("CanonicalizationMethod must be followed by SignatureMethod"))?;
    let method = profile::signature_method(&algorithm(method_node)?)?;
    if let Some(p) = elements(method_node).first() {
        return Err(not_allowed("signature method parameter", &p.get_name()));
    }
    let refs = &si[2..];
    if refs.is_empty() {
        return Err(structure("SignedInfo has no Reference"));
    }
    if refs.len() > profile::MAX_REFERENCES {
        return Err(not_allowed("number of references", &refs.len().to_string()));
    }
    let mut plans = Vec::with_capacity(refs.len());
    for r in refs {
        if !is(r, DSIG_NS, "Reference") {
            return Err(structure(format!("unexpected {} in SignedInfo", r.get_name())));
        }
        plans.push(plan_reference(r, &ids)?);
    }
    let key_certs = read_key_info(key_info.as_ref())?;

    // 2. The signer's certificate and key.
    let signer = match expect {
        Expect::Pinned(cert) => {
            if !key_certs.is_empty() && !key_certs.iter().any(|c| same_cert(c, cert)) {
                return Err(Problem::new(
                    Code::SignerMismatch,
                    format!(
                        "KeyInfo names {}, not the expected signer {}",
                        trust::describe(&key_certs[0]),
                        trust::describe(cert)
                    ),
                ));
            }
            trust::check_pinned(cert, &key_certs, Usage::Sign, policy)?;
            cert.clone()
        }
        Expect::Anchored => {
            let leaf = key_certs
                .first()
                .cloned()
                .ok_or_else(|| Problem::new(Code::CertificateInvalid, "KeyInfo carries no X509Certificate"))?;
            trust::check_chain(&leaf, &key_certs[1..], Usage::Sign, policy)?;
            leaf
        }
    };
    let key = signer
        .public_key()
        .map_err(|_| Problem::new(Code::CertificateInvalid, "the signer's key is unreadable"))?;
    let kind_ok = match method.key_kind() {
        KeyKind::Rsa => key.id() == Id::RSA,
        KeyKind::Ec => key.id() == Id::EC,
    };
    if !kind_ok {
        return Err(structure("the signature method does not fit the signer's key type"));
    }

    // 3. Signature value over the canonical SignedInfo.
    let value = dom::b64(&value_node, "SignatureValue", Code::SignatureInvalid)?;
    let canonical = c14n(&C14nInput {
        doc,
        apex: Some(&signed_info),
        exclude: None,
        exclusive: si_c14n.exclusive,
        inclusive_prefixes: &si_c14n.prefixes,
    })
    .map_err(|_| structure("SignedInfo cannot be canonicalized"))?;
    if !check_value(&method, &key, &canonical, &value) {
        return Err(structure("the signature value does not match SignedInfo"));
    }

    // 4. Every reference.
    let mut covered = Vec::with_capacity(plans.len());
    for p in plans {
        let apex = match &p.target {
            Covered::Document => None,
            Covered::Element(n) => Some(n),
        };
        let octets = c14n(&C14nInput {
            doc,
            apex,
            exclude: p.enveloped.then_some(&sig),
            exclusive: p.exclusive,
            inclusive_prefixes: &p.prefixes,
        })
        .map_err(|_| structure(format!("reference {:?} cannot be canonicalized", clip(&p.uri))))?;
        let digest = hash(p.digest, &octets).map_err(|_| structure("digest failed"))?;
        if digest.len() != p.digest_value.len() || !openssl::memcmp::eq(&digest, &p.digest_value) {
            return Err(structure(format!(
                "the digest of reference {:?} does not match",
                clip(&p.uri)
            )));
        }
        covered.push(p.target);
    }
    Ok(Verified {
        signer,
        covered,
        signature: sig,
    })
}

fn same_cert(a: &X509, b: &X509) -> bool {
    matches!((a.to_der(), b.to_der()), (Ok(x), Ok(y)) if x == y)
}

fn plan_reference(r: &Node, ids: &HashMap<String, Node>) -> Result<RefPlan, Problem> {
    let uri = attr(r, "URI").ok_or_else(|| not_allowed("reference without URI", ""))?;
    let target = if uri.is_empty() {
        Covered::Document
    } else if let Some(id) = uri.strip_prefix('#').filter(|id| is_ncname(id)) {
        Covered::Element(
            ids.get(id)
                .cloned()
                .ok_or_else(|| structure(format!("no element has the ID {:?}", clip(id))))?,
        )
    } else {
        return Err(not_allowed("reference URI", &uri));
    };
    let kids = elements(r);
    let mut i = 0;
    let mut enveloped = false;
    let mut c14n_spec_ = None;
    if let Some(t) = kids.first().filter(|n| is(n, DSIG_NS, "Transforms")) {
        i = 1;
        let transforms = elements(t);
        if transforms.len() > profile::MAX_TRANSFORMS {
            return Err(not_allowed("number of transforms", &transforms.len().to_string()));
        }
        for tr in &transforms {
            if !is(tr, DSIG_NS, "Transform") {
                return Err(structure(format!("unexpected {} in Transforms", tr.get_name())));
            }
            let alg = algorithm(tr)?;
            if c14n_spec_.is_some() {
                return Err(not_allowed("transform after canonicalization", &alg));
            }
            if alg == profile::ENVELOPED {
                if let Some(p) = elements(tr).first() {
                    return Err(not_allowed("transform parameter", &p.get_name()));
                }
                enveloped = true;
            } else {
                c14n_spec_ = Some(c14n_spec(tr, &alg).map_err(|_| not_allowed("transform", &alg))?);
            }
        }
    }
    let dm = kids
        .get(i)
        .filter(|n| is(n, DSIG_NS, "DigestMethod"))
        .ok_or_else(|| structure("Reference lacks DigestMethod"))?;
    let digest = profile::digest_method(&algorithm(dm)?)?;
    let dv = kids
        .get(i + 1)
        .filter(|n| is(n, DSIG_NS, "DigestValue"))
        .ok_or_else(|| structure("Reference lacks DigestValue"))?;
    if kids.len() > i + 2 {
        return Err(structure("unexpected content in Reference"));
    }
    let spec = c14n_spec_.unwrap_or(C14nSpec {
        exclusive: false,
        prefixes: Vec::new(),
    });
    Ok(RefPlan {
        target,
        enveloped,
        exclusive: spec.exclusive,
        prefixes: spec.prefixes,
        digest,
        digest_value: dom::b64(dv, "DigestValue", Code::SignatureInvalid)?,
        uri,
    })
}

/// An XML NCName as used in bare-name pointers (`#id`), conservatively ASCII plus non-ASCII letters.
fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Reads KeyInfo: refuses what the profile forbids, returns the X509 certificates (hints).
fn read_key_info(key_info: Option<&Node>) -> Result<Vec<X509>, Problem> {
    let Some(ki) = key_info else { return Ok(Vec::new()) };
    let mut certs = Vec::new();
    for child in elements(ki) {
        if is(&child, DSIG_NS, "RetrievalMethod") {
            return Err(not_allowed("KeyInfo element", "RetrievalMethod"));
        }
        if is(&child, DSIG_NS, "X509Data") {
            for d in elements(&child) {
                if is(&d, DSIG_NS, "X509Certificate") {
                    let der = dom::b64(&d, "X509Certificate", Code::CertificateInvalid)?;
                    certs.push(
                        parsed(&der)
                            .map_err(|_| Problem::new(Code::CertificateInvalid, "X509Certificate is unreadable"))?,
                    );
                }
            }
        }
    }
    Ok(certs)
}

/// How many parsed KeyInfo certificates are kept; past it the cache starts again.
const PARSED_CERTS: usize = 256;

/// A KeyInfo certificate, parsed once per distinct DER encoding and kept (up to
/// [`PARSED_CERTS`]): the same few partner certificates arrive with every message, and parsing
/// one (OpenSSL 3 decodes its public key through the provider decoders) cost more than the
/// ECDSA verification it serves. Only the parse is kept: the chain, validity and revocation
/// are checked for every signature, and the key is the one the bytes encode, whoever sent them.
fn parsed(der: &[u8]) -> Result<X509, openssl::error::ErrorStack> {
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<Vec<u8>, X509>>> = LazyLock::new(Default::default);
    if let Some(c) = CACHE.lock().ok().and_then(|m| m.get(der).cloned()) {
        return Ok(c);
    }
    let cert = X509::from_der(der)?;
    if let Ok(mut m) = CACHE.lock() {
        if m.len() >= PARSED_CERTS {
            m.clear();
        }
        m.insert(der.to_vec(), cert.clone());
    }
    Ok(cert)
}

fn check_value(method: &SignatureMethod, key: &PKey<Public>, data: &[u8], value: &[u8]) -> bool {
    let md = (method.digest)();
    let run = || -> Result<bool, openssl::error::ErrorStack> {
        match method.scheme {
            Scheme::RsaPss => {
                let mut v = Verifier::new(md, key)?;
                v.set_rsa_padding(Padding::PKCS1_PSS)?;
                v.set_rsa_mgf1_md(md)?;
                v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
                v.verify_oneshot(value, data)
            }
            Scheme::RsaPkcs1 => {
                let mut v = Verifier::new(md, key)?;
                v.set_rsa_padding(Padding::PKCS1)?;
                v.verify_oneshot(value, data)
            }
            Scheme::EcdsaRaw => {
                if value.is_empty() || !value.len().is_multiple_of(2) {
                    return Ok(false);
                }
                let (r, s) = value.split_at(value.len() / 2);
                let sig = EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?)?;
                let der = sig.to_der()?;
                let mut v = Verifier::new(md, key)?;
                v.verify_oneshot(&der, data)
            }
        }
    };
    run().unwrap_or(false)
}
