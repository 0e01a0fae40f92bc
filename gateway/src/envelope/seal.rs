//! The envelope's two security layers, as in OSCI:
//! - content (end to end): the XÖV message, base64 in a `pst:SignedContent`, signed for its
//!   author authority, then encrypted for the recipient authority's certificate; the result
//!   is the envelope body's `xenc:EncryptedData`;
//! - transport (hop by hop): the whole envelope signed by the sending node.
//!
//! Receipts and notices carry the receiving node's signature. Opening reverses the order:
//! transport signature (its signer must be the TLS peer's directory certificate), decryption
//! with the recipient authority's key, content signature (its signer must be the author's
//! directory certificate); only the nodes those signatures covered are read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libxml::tree::Document;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::envelope::{self, EnvelopeHeader};
use crate::problem::{Code, Problem};
use crate::xml::prescan::Limits;
use crate::xmlsec::dom::{self, elements, is};
use crate::xmlsec::profile::{self, DSIG_NS, XENC_NS};
use crate::xmlsec::trust::Policy;
use crate::xmlsec::verify::{self, Expect, Verified};
use crate::xmlsec::{Identity, encrypt, sign};

/// Signs a document we built (envelope, receipt, signed content) with RSA-PSS / SHA-256.
pub fn sign_own(xml: &[u8], id: &Identity, limits: &Limits) -> Result<Vec<u8>, Problem> {
    sign::sign_enveloped(xml, id, id.default_method(), profile::SHA256, limits)
}

/// Builds the sealed envelope: signed content, encrypted for `recipient`, in an envelope
/// signed by `node`.
pub fn seal(
    header: &EnvelopeHeader,
    content: &[u8],
    attachments: &[envelope::Attachment],
    author: &Identity,
    recipient: &X509,
    node: &Identity,
    limits: &Limits,
) -> Result<Vec<u8>, Problem> {
    let parties = Parties {
        author,
        recipient,
        node,
    };
    seal_with_files(header, content, attachments, &parties, limits, |_| Ok(Vec::new()))
}

/// Who seals for whom: the author authority signs, the recipient authority's certificate
/// encrypts, the node signs the envelope.
pub struct Parties<'a> {
    pub author: &'a Identity,
    pub recipient: &'a X509,
    pub node: &'a Identity,
}

/// [`seal`] for a message whose streamed attachments travel beside the envelope:
/// `seal_files` gets the content key, encrypts each streamed attachment with it and returns
/// what the envelope's header names of them.
pub fn seal_with_files(
    header: &EnvelopeHeader,
    content: &[u8],
    attachments: &[envelope::Attachment],
    parties: &Parties<'_>,
    limits: &Limits,
    seal_files: impl FnOnce(&[u8]) -> Result<Vec<envelope::SealedFile>, Problem>,
) -> Result<Vec<u8>, Problem> {
    let signed_content = format!(
        "<pst:SignedContent xmlns:pst=\"{}\"><pst:Content mediaType=\"application/xml\">{}</pst:Content>{}</pst:SignedContent>",
        envelope::NS,
        B64.encode(content),
        envelope::attachments_xml(attachments)
    );
    let signed_content = sign_own(signed_content.as_bytes(), parties.author, limits)?;
    let (body, content_key) = encrypt::encrypted_data_keyed(&signed_content, parties.recipient, profile::AES256_GCM)?;
    let files = seal_files(&content_key)?;
    let env = envelope::build_with_files(header, &files, &body);
    sign_own(&env, parties.node, limits)
}

/// What an opened envelope holds: the XÖV bytes, the attachments (all covered by the author's
/// signature) and the content key the streamed ones are encrypted under.
#[derive(Debug)]
pub struct Opened {
    pub content: Vec<u8>,
    pub attachments: Vec<envelope::Attachment>,
    pub content_key: Vec<u8>,
}

/// Requires that the document's one signature is a child of the root and covers the whole
/// document, so that everything read from it afterwards is signed.
fn require_whole(doc: &Document, v: &Verified) -> Result<(), Problem> {
    let root = doc.get_root_element().ok_or_else(|| dom::structure("empty document"))?;
    let parent_is_root = v
        .signature
        .get_parent()
        .is_some_and(|p| p.node_ptr() == root.node_ptr());
    if !parent_is_root || !v.covers_document() {
        return Err(dom::structure(
            "the signature must be enveloped in the root and cover the whole document",
        ));
    }
    Ok(())
}

/// Verifies a document signed by a node (envelope, receipt, notice) against its directory
/// certificate.
pub fn verify_node_signed(xml: &[u8], signer: &X509, policy: &Policy, limits: &Limits) -> Result<(), Problem> {
    verify_node_signed_by_any(xml, std::slice::from_ref(signer), policy, limits).map(drop)
}

/// Verifies a document signed by a node (envelope, receipt, notice) against any of its
/// directory certificates (two during a rollover): the first that verifies counts (its index is
/// returned); if none does, the last one's problem. The document is parsed once.
pub fn verify_node_signed_by_any(
    xml: &[u8],
    signers: &[X509],
    policy: &Policy,
    limits: &Limits,
) -> Result<usize, Problem> {
    verify_node_signed_in(&dom::parse(xml, limits)?, signers, policy)
}

/// [`verify_node_signed_by_any`] on a document already parsed (by the validation pool, after
/// the same pre-scan and with the same parser options as `dom::parse`).
pub fn verify_node_signed_in(doc: &Document, signers: &[X509], policy: &Policy) -> Result<usize, Problem> {
    let mut last = None;
    for (i, signer) in signers.iter().enumerate() {
        match verify::verify(doc, Expect::Pinned(signer), policy).and_then(|v| require_whole(doc, &v)) {
            Ok(()) => return Ok(i),
            Err(p) => last = Some(p),
        }
    }
    Err(last.unwrap_or_else(|| Problem::new(Code::SignerMismatch, "the partner has no certificate in the directory")))
}

/// Opens a verified envelope: decrypts the body with the recipient authority's key and
/// verifies the content signature against the author's certificate.
pub fn open(
    envelope_xml: &[u8],
    recipient_key: &PKey<Private>,
    author: &X509,
    policy: &Policy,
    limits: &Limits,
) -> Result<Opened, Problem> {
    let doc = dom::parse(envelope_xml, limits)?;
    let root = doc.get_root_element().ok_or_else(|| dom::structure("empty envelope"))?;
    let body =
        dom::one_child(&root, envelope::NS, "Body").map_err(|p| Problem::new(Code::EnvelopeInvalid, p.detail))?;
    let data = match elements(&body).as_slice() {
        [d] if is(d, XENC_NS, "EncryptedData") => d.clone(),
        _ => {
            return Err(Problem::new(
                Code::EnvelopeInvalid,
                "the envelope body must hold exactly one EncryptedData (content encryption is required)",
            ));
        }
    };
    let (plain, is_element, content_key) = encrypt::decrypt_node_keyed(&data, recipient_key)?;
    if !is_element {
        return Err(encrypt::failed());
    }
    let content_doc = dom::parse(&plain, limits)?;
    let v = verify::verify(&content_doc, Expect::Pinned(author), policy)?;
    require_whole(&content_doc, &v)?;
    let sc = content_doc
        .get_root_element()
        .filter(|r| is(r, envelope::NS, "SignedContent"))
        .ok_or_else(|| Problem::new(Code::EnvelopeInvalid, "the decrypted content is not a SignedContent"))?;
    let kids = elements(&sc);
    let (content, attachments) = match kids.as_slice() {
        [c, middle @ .., s]
            if is(c, envelope::NS, "Content")
                && is(s, DSIG_NS, "Signature")
                && middle
                    .iter()
                    .all(|a| is(a, envelope::NS, "Attachment") || is(a, envelope::NS, "AttachmentFile"))
                && middle.len() <= envelope::MAX_ATTACHMENTS =>
        {
            (c.clone(), middle.to_vec())
        }
        _ => {
            return Err(Problem::new(
                Code::EnvelopeInvalid,
                "SignedContent must hold Content, then attachments, then Signature",
            ));
        }
    };
    let not_base64 = |what: &str| Problem::new(Code::EnvelopeInvalid, format!("the {what} is not base64"));
    let content = B64
        .decode(dom::compact_text(&content).as_bytes())
        .map_err(|_| not_base64("content"))?;
    let attachments = attachments
        .iter()
        .map(|a| {
            let body = if is(a, envelope::NS, "AttachmentFile") {
                let bad = || Problem::new(Code::EnvelopeInvalid, "an AttachmentFile needs its size and SHA-256");
                let size = a.get_attribute("size").and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let sha256 = a
                    .get_attribute("sha256")
                    .and_then(|d| B64.decode(d).ok())
                    .filter(|d| d.len() == 32)
                    .ok_or_else(bad)?;
                envelope::Carried::Streamed { size, sha256 }
            } else {
                envelope::Carried::Inline(
                    B64.decode(dom::compact_text(a).as_bytes())
                        .map_err(|_| not_base64("attachment"))?,
                )
            };
            Ok(envelope::Attachment {
                content_type: a
                    .get_attribute("contentType")
                    .unwrap_or_else(|| "application/octet-stream".into()),
                filename: a.get_attribute("filename"),
                body,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    Ok(Opened {
        content,
        attachments,
        content_key,
    })
}

/// A receipt or notice, signed by the receiving node.
pub fn signed_receipt(r: &envelope::Receipt, node: &Identity) -> Result<Vec<u8>, Problem> {
    sign_own(&envelope::build_receipt(r), node, &Limits::default())
}

/// Notices about several messages, signed once by the receiving node (`envelope::build_notices`).
pub fn signed_notices(notices: &[envelope::Receipt], node: &Identity) -> Result<Vec<u8>, Problem> {
    sign_own(&envelope::build_notices(notices), node, &Limits::default())
}
