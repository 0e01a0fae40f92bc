//! XML Encryption 1.1: AES-GCM content encryption with a fresh key per document, the key
//! transported with RSA-OAEP (xmlenc11, SHA-256, MGF1-SHA-256) for an RSA recipient, or wrapped
//! (kw-aes256) with a key agreed by ECDH-ES with an ephemeral key and derived by ConcatKDF
//! (SHA-256) for an EC recipient (`agree.rs`).
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

use super::agree;
use super::dom::{self, attr, elements, is};
use super::profile::{self, DSIG_NS, DSIG11_NS, XENC_NS, XENC11_NS, not_allowed};
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
    encrypted_data_keyed(plaintext, recipient, cipher_uri).map(|(xml, _)| xml)
}

/// [`encrypted_data`] and the content key it made (for the streams that travel with it,
/// `xmlsec::stream::derive_key`).
pub fn encrypted_data_keyed(
    plaintext: &[u8],
    recipient: &X509,
    cipher_uri: &str,
) -> Result<(String, Vec<u8>), Problem> {
    let key_len = profile::data_cipher(cipher_uri)?;
    let public = recipient
        .public_key()
        .map_err(|_| Problem::new(Code::CertificateInvalid, "the recipient's key is unreadable"))?;
    if public.id() != Id::RSA && public.id() != Id::EC {
        return Err(Problem::new(
            Code::CertificateInvalid,
            "encryption needs an RSA or EC recipient key",
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
    let cert = B64.encode(recipient.to_der().map_err(internal)?);
    let key_info = match public.id() {
        Id::EC => agreed_key(&public, &key, &cert)?,
        _ => transported_key(&public, &key, &cert)?,
    };
    let xml = format!(
        "<xenc:EncryptedData xmlns:xenc=\"{XENC_NS}\" Type=\"{ty}\">\
         <xenc:EncryptionMethod Algorithm=\"{cipher_uri}\"/>\
         <ds:KeyInfo xmlns:ds=\"{DSIG_NS}\">{key_info}</ds:KeyInfo>\
         <xenc:CipherData><xenc:CipherValue>{value}</xenc:CipherValue></xenc:CipherData>\
         </xenc:EncryptedData>",
        ty = profile::TYPE_ELEMENT,
        value = B64.encode(value),
    );
    Ok((xml, key))
}

/// The `xenc:EncryptedKey` carrying `key` by RSA-OAEP to `public` (the certificate `cert`,
/// base64), within a `ds:KeyInfo` that binds the `ds` prefix.
fn transported_key(public: &PKey<openssl::pkey::Public>, key: &[u8], cert: &str) -> Result<String, Problem> {
    let mut enc = Encrypter::new(public).map_err(internal)?;
    enc.set_rsa_padding(Padding::PKCS1_OAEP).map_err(internal)?;
    enc.set_rsa_oaep_md(MessageDigest::sha256()).map_err(internal)?;
    enc.set_rsa_mgf1_md(MessageDigest::sha256()).map_err(internal)?;
    let mut wrapped = vec![0u8; enc.encrypt_len(key).map_err(internal)?];
    let n = enc.encrypt(key, &mut wrapped).map_err(internal)?;
    wrapped.truncate(n);
    Ok(format!(
        "<xenc:EncryptedKey>\
         <xenc:EncryptionMethod Algorithm=\"{oaep}\"><ds:DigestMethod Algorithm=\"{sha256}\"/>\
         <xenc11:MGF xmlns:xenc11=\"{XENC11_NS}\" Algorithm=\"{mgf}\"/></xenc:EncryptionMethod>\
         <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
         <xenc:CipherData><xenc:CipherValue>{wrapped}</xenc:CipherValue></xenc:CipherData>\
         </xenc:EncryptedKey>",
        oaep = profile::RSA_OAEP_11,
        sha256 = profile::SHA256,
        mgf = profile::MGF1_SHA256,
        wrapped = B64.encode(wrapped),
    ))
}

/// The `xenc:EncryptedKey` carrying `key` wrapped (kw-aes256) with a key agreed with `public`
/// (ECDH-ES, an ephemeral key of this document, ConcatKDF with SHA-256 whose AlgorithmID is
/// the wrap algorithm's URI); the recipient named by its certificate `cert` (base64).
fn agreed_key(public: &PKey<openssl::pkey::Public>, key: &[u8], cert: &str) -> Result<String, Problem> {
    let curve = agree::curve_uri(public).ok_or_else(|| {
        Problem::new(
            Code::CertificateInvalid,
            "the recipient's EC key is on a curve key agreement does not use (P-256, P-384, P-521, brainpoolP256r1, brainpoolP384r1)",
        )
    })?;
    let public = agree::peer(public).ok_or_else(|| internal(""))?;
    let ephemeral = agree::ephemeral_for(&public).ok_or_else(|| internal(""))?;
    let z = agree::shared_secret(&ephemeral, &public).ok_or_else(|| internal(""))?;
    let algorithm_id: Vec<u8> = profile::KW_AES256.bytes().collect();
    let kek = agree::concat_kdf(MessageDigest::sha256(), &z, &algorithm_id, 32).ok_or_else(|| internal(""))?;
    let wrapped = agree::wrap(&kek, key).ok_or_else(|| internal(""))?;
    let point = agree::public_point(&ephemeral).ok_or_else(|| internal(""))?;
    let algorithm_id: String = algorithm_id.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "<xenc:EncryptedKey>\
         <xenc:EncryptionMethod Algorithm=\"{kw}\"/>\
         <ds:KeyInfo><xenc:AgreementMethod Algorithm=\"{ecdh}\">\
         <xenc11:KeyDerivationMethod xmlns:xenc11=\"{XENC11_NS}\" Algorithm=\"{kdf}\">\
         <xenc11:ConcatKDFParams AlgorithmID=\"00{algorithm_id}\" PartyUInfo=\"\" PartyVInfo=\"\">\
         <ds:DigestMethod Algorithm=\"{sha256}\"/></xenc11:ConcatKDFParams></xenc11:KeyDerivationMethod>\
         <xenc:OriginatorKeyInfo><ds:KeyValue><dsig11:ECKeyValue xmlns:dsig11=\"{DSIG11_NS}\">\
         <dsig11:NamedCurve URI=\"{curve}\"/><dsig11:PublicKey>{point}</dsig11:PublicKey>\
         </dsig11:ECKeyValue></ds:KeyValue></xenc:OriginatorKeyInfo>\
         <xenc:RecipientKeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></xenc:RecipientKeyInfo>\
         </xenc:AgreementMethod></ds:KeyInfo>\
         <xenc:CipherData><xenc:CipherValue>{wrapped}</xenc:CipherValue></xenc:CipherData>\
         </xenc:EncryptedKey>",
        kw = profile::KW_AES256,
        ecdh = profile::ECDH_ES,
        kdf = profile::CONCAT_KDF,
        sha256 = profile::SHA256,
        point = B64.encode(point),
        wrapped = B64.encode(wrapped),
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
    unwrap: Unwrap,
    wrapped_key: String,
    element_type: bool,
}

/// How the content key is recovered.
enum Unwrap {
    /// RSA-OAEP key transport.
    Oaep {
        digest: MessageDigest,
        mgf: MessageDigest,
        label: Option<Vec<u8>>,
    },
    /// AES key wrap with a key agreed by ECDH-ES with the originator's ephemeral key and
    /// derived by ConcatKDF.
    Agreed {
        kek_len: usize,
        kdf_digest: MessageDigest,
        fixed_info: Vec<u8>,
        curve: openssl::nid::Nid,
        point: Vec<u8>,
    },
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
    let unwrap = match key_alg.as_str() {
        profile::RSA_OAEP_11 => Unwrap::Oaep {
            digest: profile::oaep_digest(digest_uri.as_deref().unwrap_or(profile::SHA1))?,
            mgf: profile::mgf_digest(mgf_uri.as_deref().unwrap_or(profile::MGF1_SHA1))?,
            label: oaep_label,
        },
        profile::RSA_OAEP_MGF1P => Unwrap::Oaep {
            digest: profile::oaep_digest(digest_uri.as_deref().unwrap_or(profile::SHA1))?,
            mgf: MessageDigest::sha1(),
            label: oaep_label,
        },
        other => agreement(&ek, other, profile::key_wrap(other)?)?,
    };
    let element_type = match attr(data, "Type").as_deref() {
        None | Some(profile::TYPE_ELEMENT) => true,
        Some(profile::TYPE_CONTENT) => false,
        Some(other) => return Err(not_allowed("encrypted data type", other)),
    };
    Ok(Plan {
        key_len,
        cipher_value: data_value,
        unwrap,
        wrapped_key: cipher_value(&ek)?,
        element_type,
    })
}

/// Reads the key agreement of an `EncryptedKey` wrapped (`wrap_uri`) with a `kek_len`-byte AES key: its
/// `ds:KeyInfo` holds exactly one `xenc:AgreementMethod` — ECDH-ES, ConcatKDF with an
/// allowed digest, the originator's ephemeral key as an `ECKeyValue` on an allowed named curve.
/// (The `RecipientKeyInfo` only names the key the caller decrypts with.)
fn agreement(ek: &Node, wrap_uri: &str, kek_len: usize) -> Result<Unwrap, Problem> {
    // A key wrapped with a symmetric key from anywhere but an agreement (a KeyName, a
    // pre-shared key) is not in the profile.
    let key_info = the_child(ek, DSIG_NS, "KeyInfo").map_err(|_| not_allowed("key transport", wrap_uri))?;
    let am = the_child(&key_info, XENC_NS, "AgreementMethod").map_err(|_| not_allowed("key transport", wrap_uri))?;
    if elements(&key_info).len() != 1 {
        return Err(failed());
    }
    match attr(&am, "Algorithm").as_deref() {
        Some(profile::ECDH_ES) => {}
        other => return Err(not_allowed("key agreement", other.unwrap_or(""))),
    }
    let kdm = the_child(&am, XENC11_NS, "KeyDerivationMethod")?;
    match attr(&kdm, "Algorithm").as_deref() {
        Some(profile::CONCAT_KDF) => {}
        other => return Err(not_allowed("key derivation", other.unwrap_or(""))),
    }
    let params = the_child(&kdm, XENC11_NS, "ConcatKDFParams")?;
    let digest = the_child(&params, DSIG_NS, "DigestMethod")?;
    let kdf_digest = profile::digest_method(&attr(&digest, "Algorithm").unwrap_or_default())?;
    let mut fixed_info = Vec::new();
    for name in ["AlgorithmID", "PartyUInfo", "PartyVInfo", "SuppPubInfo", "SuppPrivInfo"] {
        fixed_info.extend(agree::bit_string(attr(&params, name).as_deref()).ok_or_else(failed)?);
    }
    let originator = the_child(&am, XENC_NS, "OriginatorKeyInfo")?;
    // Only an ephemeral key carried in the document as a KeyValue (a KeyName beside it is a
    // hint, ignored): a key referenced instead (X509Data, RetrievalMethod, a KeyName alone)
    // would be a static key looked up elsewhere.
    let kinds = elements(&originator);
    if let Some(other) = kinds
        .iter()
        .find(|c| !is(c, DSIG_NS, "KeyValue") && !is(c, DSIG_NS, "KeyName"))
    {
        return Err(not_allowed("originator key", &other.get_name()));
    }
    if !kinds.iter().any(|c| is(c, DSIG_NS, "KeyValue")) {
        return Err(not_allowed("originator key", "KeyName"));
    }
    let value = the_child(&originator, DSIG_NS, "KeyValue")?;
    let ec = the_child(&value, DSIG11_NS, "ECKeyValue")?;
    if elements(&ec).iter().any(|c| is(c, DSIG11_NS, "ECParameters")) {
        return Err(not_allowed("EC parameters", "explicit curve parameters"));
    }
    let named = the_child(&ec, DSIG11_NS, "NamedCurve")?;
    let uri = attr(&named, "URI").unwrap_or_default();
    let curve = agree::curve(&uri).ok_or_else(|| not_allowed("elliptic curve", &uri))?;
    let point = B64
        .decode(dom::compact_text(&the_child(&ec, DSIG11_NS, "PublicKey")?))
        .map_err(|_| failed())?;
    Ok(Unwrap::Agreed {
        kek_len,
        kdf_digest,
        fixed_info,
        curve,
        point,
    })
}

/// The content key of `plan`, recovered with our private key.
fn content_key(plan: &Plan, key: &PKey<Private>) -> Result<Vec<u8>, Problem> {
    let wrapped = B64.decode(&plan.wrapped_key).map_err(|_| failed())?;
    match &plan.unwrap {
        Unwrap::Oaep { digest, mgf, label } => {
            let mut dec = Decrypter::new(key).map_err(|_| failed())?;
            dec.set_rsa_padding(Padding::PKCS1_OAEP).map_err(|_| failed())?;
            dec.set_rsa_oaep_md(*digest).map_err(|_| failed())?;
            dec.set_rsa_mgf1_md(*mgf).map_err(|_| failed())?;
            if let Some(label) = label {
                dec.set_rsa_oaep_label(label).map_err(|_| failed())?;
            }
            let mut aes_key = vec![0u8; dec.decrypt_len(&wrapped).map_err(|_| failed())?];
            let n = dec.decrypt(&wrapped, &mut aes_key).map_err(|_| failed())?;
            aes_key.truncate(n);
            Ok(aes_key)
        }
        Unwrap::Agreed {
            kek_len,
            kdf_digest,
            fixed_info,
            curve,
            point,
        } => {
            let ephemeral = agree::public_key(*curve, point).ok_or_else(failed)?;
            let z = agree::shared_secret(key, &ephemeral).ok_or_else(failed)?;
            let kek = agree::concat_kdf(*kdf_digest, &z, fixed_info, *kek_len).ok_or_else(failed)?;
            agree::unwrap(&kek, &wrapped).ok_or_else(failed)
        }
    }
}

fn run(plan: &Plan, key: &PKey<Private>) -> Result<(Vec<u8>, Vec<u8>), Problem> {
    let value = B64.decode(&plan.cipher_value).map_err(|_| failed())?;
    let aes_key = content_key(plan, key)?;
    if aes_key.len() != plan.key_len || value.len() < IV_LEN + TAG_LEN {
        return Err(failed());
    }
    let cipher = gcm(plan.key_len).ok_or_else(failed)?;
    let (iv, rest) = value.split_at(IV_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let plain = decrypt_aead(cipher, &aes_key, Some(iv), &[], ct, tag).map_err(|_| failed())?;
    Ok((plain, aes_key))
}

/// Decrypts one `xenc:EncryptedData` element; returns the plaintext and whether it is an element.
pub fn decrypt_node(data: &Node, key: &PKey<Private>) -> Result<(Vec<u8>, bool), Problem> {
    decrypt_node_keyed(data, key).map(|(plain, element, _)| (plain, element))
}

/// [`decrypt_node`] and the content key it recovered.
pub fn decrypt_node_keyed(data: &Node, key: &PKey<Private>) -> Result<(Vec<u8>, bool, Vec<u8>), Problem> {
    let p = plan(data)?;
    let (plain, content_key) = run(&p, key)?;
    Ok((plain, p.element_type, content_key))
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
        parts.push((span, run(p, key)?.0));
    }
    Ok(splice::replace(xml, &parts))
}
