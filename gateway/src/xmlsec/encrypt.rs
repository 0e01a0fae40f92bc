//! XML Encryption 1.1: AES-GCM content encryption with a fresh key per document, the key
//! transported with RSA-OAEP (xmlenc11, SHA-256, MGF1-SHA-256) for the recipient's certificate.
//!
//! Decryption checks every algorithm against the allow-list first (that answer reveals nothing
//! secret), then answers every cryptographic failure — unwrapping, key length, tag, base64 of
//! the cipher value — with one and the same `decryption-failed`, so the answer is no oracle.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libxml::tree::{Document, Node};
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use openssl::x509::X509;

use super::dom::{self, attr, elements, is};
use super::profile::{self, DSIG_NS, XENC_NS, XENC11_NS, not_allowed};
use super::splice;
use crate::problem::{Code, Problem};
use crate::xml::prescan::Limits;

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The one answer for every decryption failure.
pub fn failed() -> Problem {
    Problem::new(Code::DecryptionFailed, "the data cannot be decrypted")
}

fn gcm(key_len: usize) -> Option<Cipher> {
    match key_len {
        16 => Some(Cipher::aes_128_gcm()),
        24 => Some(Cipher::aes_192_gcm()),
        32 => Some(Cipher::aes_256_gcm()),
        _ => None,
    }
}

fn internal(_: impl std::fmt::Display) -> Problem {
    Problem::new(Code::Internal, "a cryptographic operation failed")
}

/// `xenc:EncryptedData` (Type Element) holding `plaintext` (an element's serialization),
/// encrypted for `recipient`. The element declares every namespace it uses.
pub fn encrypted_data(plaintext: &[u8], recipient: &X509, cipher_uri: &str) -> Result<String, Problem> {
    let key_len = profile::data_cipher(cipher_uri)?;
    let public = recipient
        .public_key()
        .map_err(|_| Problem::new(Code::CertificateInvalid, "the recipient's key is unreadable"))?;
    if public.id() != Id::RSA {
        return Err(Problem::new(
            Code::CertificateInvalid,
            "key transport needs an RSA recipient key",
        ));
    }
    let mut key = vec![0u8; key_len];
    let mut iv = [0u8; IV_LEN];
    openssl::rand::rand_bytes(&mut key).map_err(internal)?;
    openssl::rand::rand_bytes(&mut iv).map_err(internal)?;
    let mut tag = [0u8; TAG_LEN];
    let cipher = gcm(key_len).ok_or_else(|| internal(""))?;
    let ct = encrypt_aead(cipher, &key, Some(&iv), &[], plaintext, &mut tag).map_err(internal)?;
    let mut value = Vec::with_capacity(IV_LEN + ct.len() + TAG_LEN);
    value.extend_from_slice(&iv);
    value.extend_from_slice(&ct);
    value.extend_from_slice(&tag);

    let mut enc = Encrypter::new(&public).map_err(internal)?;
    enc.set_rsa_padding(Padding::PKCS1_OAEP).map_err(internal)?;
    enc.set_rsa_oaep_md(MessageDigest::sha256()).map_err(internal)?;
    enc.set_rsa_mgf1_md(MessageDigest::sha256()).map_err(internal)?;
    let mut wrapped = vec![0u8; enc.encrypt_len(&key).map_err(internal)?];
    let n = enc.encrypt(&key, &mut wrapped).map_err(internal)?;
    wrapped.truncate(n);
    let cert = B64.encode(recipient.to_der().map_err(internal)?);

    Ok(format!(
        "<xenc:EncryptedData xmlns:xenc=\"{XENC_NS}\" Type=\"{ty}\">\
         <xenc:EncryptionMethod Algorithm=\"{cipher_uri}\"/>\
         <ds:KeyInfo xmlns:ds=\"{DSIG_NS}\"><xenc:EncryptedKey>\
         <xenc:EncryptionMethod Algorithm=\"{oaep}\"><ds:DigestMethod Algorithm=\"{sha256}\"/>\
         <xenc11:MGF xmlns:xenc11=\"{XENC11_NS}\" Algorithm=\"{mgf}\"/></xenc:EncryptionMethod>\
         <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
         <xenc:CipherData><xenc:CipherValue>{wrapped}</xenc:CipherValue></xenc:CipherData>\
         </xenc:EncryptedKey></ds:KeyInfo>\
         <xenc:CipherData><xenc:CipherValue>{value}</xenc:CipherValue></xenc:CipherData>\
         </xenc:EncryptedData>",
        ty = profile::TYPE_ELEMENT,
        oaep = profile::RSA_OAEP_11,
        sha256 = profile::SHA256,
        mgf = profile::MGF1_SHA256,
        wrapped = B64.encode(wrapped),
        value = B64.encode(value),
    ))
}

/// Encrypts the root element of `xml` for `recipient`; prolog and epilog stay as they were.
pub fn encrypt_root(xml: &[u8], recipient: &X509, cipher_uri: &str, limits: &Limits) -> Result<Vec<u8>, Problem> {
    dom::parse(xml, limits)?;
    let root = splice::root(xml)?;
    let data = encrypted_data(&xml[root.start..root.end], recipient, cipher_uri)?;
    Ok(splice::replace(xml, &[(root, data.into_bytes())]))
}

/// How one EncryptedData is to be decrypted, read and allow-listed before any cryptography.
struct Plan {
    key_len: usize,
    cipher_value: String,
    oaep_digest: MessageDigest,
    mgf_digest: MessageDigest,
    oaep_label: Option<Vec<u8>>,
    wrapped_key: String,
    element_type: bool,
}

fn the_child(node: &Node, ns: &str, local: &str) -> Result<Node, Problem> {
    let mut found = elements(node).into_iter().filter(|c| is(c, ns, local));
    match (found.next(), found.next()) {
        (Some(n), None) => Ok(n),
        _ => Err(failed()),
    }
}

fn cipher_value(node: &Node) -> Result<String, Problem> {
    let cd = the_child(node, XENC_NS, "CipherData")?;
    if elements(&cd).iter().any(|c| is(c, XENC_NS, "CipherReference")) {
        return Err(not_allowed("cipher data", "CipherReference"));
    }
    Ok(dom::compact_text(&the_child(&cd, XENC_NS, "CipherValue")?))
}

fn method(node: &Node) -> Result<(Node, String), Problem> {
    let m = the_child(node, XENC_NS, "EncryptionMethod")?;
    let alg = attr(&m, "Algorithm").ok_or_else(failed)?;
    Ok((m, alg))
}

fn plan(data: &Node) -> Result<Plan, Problem> {
    let (_, data_alg) = method(data)?;
    let key_len = profile::data_cipher(&data_alg)?;
    let data_value = cipher_value(data)?;
    let key_info = the_child(data, DSIG_NS, "KeyInfo")?;
    for c in elements(&key_info) {
        if is(&c, DSIG_NS, "RetrievalMethod") {
            return Err(not_allowed("KeyInfo element", "RetrievalMethod"));
        }
        if is(&c, XENC_NS, "AgreementMethod") {
            return Err(not_allowed("key agreement", &attr(&c, "Algorithm").unwrap_or_default()));
        }
        if is(&c, XENC11_NS, "DerivedKey") {
            return Err(not_allowed("key derivation", "DerivedKey"));
        }
    }
    let ek = the_child(&key_info, XENC_NS, "EncryptedKey")?;
    let (m, key_alg) = method(&ek)?;
    let digest_uri = elements(&m)
        .into_iter()
        .find(|c| is(c, DSIG_NS, "DigestMethod"))
        .and_then(|d| attr(&d, "Algorithm"));
    let mgf_uri = elements(&m)
        .into_iter()
        .find(|c| is(c, XENC11_NS, "MGF"))
        .and_then(|d| attr(&d, "Algorithm"));
    let oaep_label = match elements(&m).into_iter().find(|c| is(c, XENC_NS, "OAEPparams")) {
        Some(p) => Some(B64.decode(dom::compact_text(&p)).map_err(|_| failed())?),
        None => None,
    };
    let (oaep_digest, mgf_digest) = match key_alg.as_str() {
        profile::RSA_OAEP_11 => (
            profile::oaep_digest(digest_uri.as_deref().unwrap_or(profile::SHA1))?,
            profile::mgf_digest(mgf_uri.as_deref().unwrap_or(profile::MGF1_SHA1))?,
        ),
        profile::RSA_OAEP_MGF1P => (
            profile::oaep_digest(digest_uri.as_deref().unwrap_or(profile::SHA1))?,
            MessageDigest::sha1(),
        ),
        other => return Err(not_allowed("key transport", other)),
    };
    let element_type = match attr(data, "Type").as_deref() {
        None | Some(profile::TYPE_ELEMENT) => true,
        Some(profile::TYPE_CONTENT) => false,
        Some(other) => return Err(not_allowed("encrypted data type", other)),
    };
    Ok(Plan {
        key_len,
        cipher_value: data_value,
        oaep_digest,
        mgf_digest,
        oaep_label,
        wrapped_key: cipher_value(&ek)?,
        element_type,
    })
}

fn run(plan: &Plan, key: &PKey<Private>) -> Result<Vec<u8>, Problem> {
    let wrapped = B64.decode(&plan.wrapped_key).map_err(|_| failed())?;
    let value = B64.decode(&plan.cipher_value).map_err(|_| failed())?;
    let mut dec = Decrypter::new(key).map_err(|_| failed())?;
    dec.set_rsa_padding(Padding::PKCS1_OAEP).map_err(|_| failed())?;
    dec.set_rsa_oaep_md(plan.oaep_digest).map_err(|_| failed())?;
    dec.set_rsa_mgf1_md(plan.mgf_digest).map_err(|_| failed())?;
    if let Some(label) = &plan.oaep_label {
        dec.set_rsa_oaep_label(label).map_err(|_| failed())?;
    }
    let mut aes_key = vec![0u8; dec.decrypt_len(&wrapped).map_err(|_| failed())?];
    let n = dec.decrypt(&wrapped, &mut aes_key).map_err(|_| failed())?;
    aes_key.truncate(n);
    if aes_key.len() != plan.key_len || value.len() < IV_LEN + TAG_LEN {
        return Err(failed());
    }
    let cipher = gcm(plan.key_len).ok_or_else(failed)?;
    let (iv, rest) = value.split_at(IV_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    decrypt_aead(cipher, &aes_key, Some(iv), &[], ct, tag).map_err(|_| failed())
}

/// Decrypts one `xenc:EncryptedData` element; returns the plaintext and whether it is an element.
pub fn decrypt_node(data: &Node, key: &PKey<Private>) -> Result<(Vec<u8>, bool), Problem> {
    let p = plan(data)?;
    let plain = run(&p, key)?;
    Ok((plain, p.element_type))
}

/// All outermost `xenc:EncryptedData` elements of a document.
pub fn encrypted_data_nodes(doc: &Document) -> Vec<Node> {
    let mut found = Vec::new();
    if let Some(root) = doc.get_root_element() {
        collect(&root, &mut found);
    }
    found
}

fn collect(node: &Node, found: &mut Vec<Node>) {
    if is(node, XENC_NS, "EncryptedData") {
        found.push(node.clone());
        return;
    }
    for c in elements(node) {
        collect(&c, found);
    }
}

/// Decrypts every EncryptedData of the document in place (outermost ones).
pub fn decrypt_document(xml: &[u8], key: &PKey<Private>, limits: &Limits) -> Result<Vec<u8>, Problem> {
    let doc = dom::parse(xml, limits)?;
    let nodes = encrypted_data_nodes(&doc);
    if nodes.is_empty() {
        return Err(Problem::new(
            Code::DecryptionFailed,
            "the document holds no EncryptedData",
        ));
    }
    // Allow-list every element before decrypting any.
    let plans = nodes.iter().map(plan).collect::<Result<Vec<_>, _>>()?;
    let spans = splice::find(xml, Some((XENC_NS, "EncryptedData")))?;
    if spans.len() != plans.len() {
        return Err(failed());
    }
    let mut parts = Vec::with_capacity(plans.len());
    for (p, span) in plans.iter().zip(spans) {
        parts.push((span, run(p, key)?));
    }
    Ok(splice::replace(xml, &parts))
}
