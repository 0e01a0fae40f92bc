//! Enveloped XML signatures: one `ds:Signature` appended to the root element, one reference
//! `URI=""` with the enveloped-signature and exclusive-C14N transforms, SignedInfo in exclusive
//! C14N, the signer's certificate in KeyInfo (a hint for the receiver, never its trust).
//! Every other byte of the input stays as it was.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::hash;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer};
use openssl::x509::X509;

use super::dom;
use super::profile::{self, DSIG_NS, Scheme, SignatureMethod};
use crate::problem::{Code, Problem};
use crate::xml::libxml::{C14nInput, c14n};
use crate::xml::prescan::Limits;

/// A signing identity: key and certificate.
pub struct Identity {
    pub key: PKey<Private>,
    pub cert: X509,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "Identity({})", super::trust::describe(&self.cert))
    }
}

impl Identity {
    pub fn load(key: &std::path::Path, cert: &std::path::Path) -> Result<Identity, String> {
        Identity::load_with(key, cert, None)
    }

    /// [`Identity::load`] with the passphrase of an encrypted key file.
    pub fn load_with(
        key: &std::path::Path,
        cert: &std::path::Path,
        passphrase: Option<&[u8]>,
    ) -> Result<Identity, String> {
        let id = Identity {
            key: super::trust::load_private_key_with(key, passphrase)?,
            cert: super::trust::load_cert(cert)?,
        };
        let public = id.cert.public_key().map_err(|e| e.to_string())?;
        if !id.key.public_eq(&public) {
            return Err(format!("{} does not belong to {}", key.display(), cert.display()));
        }
        Ok(id)
    }

    /// The default method for this key: RSA-PSS SHA-256 for RSA; ECDSA with the hash that
    /// matches the curve's strength for EC (SHA-384 on 384-bit curves, SHA-512 on P-521,
    /// SHA-256 on the 256-bit ones).
    pub fn default_method(&self) -> &'static str {
        match self.key.id() {
            Id::EC => match self.key.bits() {
                ..=256 => profile::ECDSA_SHA256,
                257..=384 => profile::ECDSA_SHA384,
                _ => profile::ECDSA_SHA512,
            },
            _ => profile::RSA_PSS_SHA256,
        }
    }
}

/// Signs `xml` (enveloped) with `method` and `digest` (URIs from the profile).
pub fn sign_enveloped(
    xml: &[u8],
    id: &Identity,
    method_uri: &str,
    digest_uri: &str,
    limits: &Limits,
) -> Result<Vec<u8>, Problem> {
    let method = profile::signature_method(method_uri)?;
    let digest = profile::digest_method(digest_uri)?;
    let kind_ok = match method.key_kind() {
        profile::KeyKind::Rsa => id.key.id() == Id::RSA,
        profile::KeyKind::Ec => id.key.id() == Id::EC,
    };
    if !kind_ok {
        return Err(Problem::new(
            Code::AlgorithmNotAllowed,
            "the signature method does not fit the key type",
        ));
    }
    let doc = dom::parse(xml, limits)?;
    if !super::verify::signatures(&doc).is_empty() {
        return Err(Problem::new(Code::SignatureInvalid, "the document is signed already"));
    }
    let canonical = c14n(&C14nInput {
        doc: &doc,
        apex: None,
        exclude: None,
        exclusive: true,
        inclusive_prefixes: &[],
    })
    .map_err(|_| Problem::new(Code::NotWellFormed, "the document cannot be canonicalized"))?;
    let digest_value = hash(digest, &canonical).map_err(internal)?;

    let dv = B64.encode(digest_value);
    let signed_info = signed_info(method.uri, digest_uri, &dv, false);
    let canonical_si = signed_info_in_c14n(method.uri, digest_uri, &dv);
    let value = sign_bytes(&method, &id.key, &canonical_si)?;
    let cert = B64.encode(id.cert.to_der().map_err(internal)?);
    let signature = format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue>\
         <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
         </ds:Signature>",
        B64.encode(value)
    );
    super::splice::append_to_root(xml, signature.as_bytes())
}

fn internal(_: impl std::fmt::Display) -> Problem {
    Problem::new(Code::Internal, "a cryptographic operation failed")
}

/// SignedInfo with these algorithms and digest, as written into the signature, or
/// (`canonical`) in its exclusive-C14N form: the `ds` namespace declared on it, the one prefix
/// it uses (visibly), and each empty element as a start and an end tag. Nothing in it needs
/// escaping: the attribute values are allow-listed URIs (`profile`), the digest is base64.
fn signed_info(method_uri: &str, digest_uri: &str, digest_value: &str, canonical: bool) -> String {
    let empty = |name: &str, uri: &str| {
        if canonical {
            format!("<ds:{name} Algorithm=\"{uri}\"></ds:{name}>")
        } else {
            format!("<ds:{name} Algorithm=\"{uri}\"/>")
        }
    };
    format!(
        "<ds:SignedInfo{ns}>{c14n}{method}<ds:Reference URI=\"\"><ds:Transforms>{env}{c14n_t}</ds:Transforms>\
         {digest}<ds:DigestValue>{digest_value}</ds:DigestValue></ds:Reference></ds:SignedInfo>",
        ns = if canonical {
            format!(" xmlns:ds=\"{DSIG_NS}\"")
        } else {
            String::new()
        },
        c14n = empty("CanonicalizationMethod", profile::EXC_C14N),
        method = empty("SignatureMethod", method_uri),
        env = empty("Transform", profile::ENVELOPED),
        c14n_t = empty("Transform", profile::EXC_C14N),
        digest = empty("DigestMethod", digest_uri),
    )
}

/// The bytes a signature signs: the SignedInfo we write, in exclusive C14N, built as such
/// rather than parsed and canonicalised (a test holds the two to be the same).
fn signed_info_in_c14n(method_uri: &str, digest_uri: &str, digest_value: &str) -> Vec<u8> {
    signed_info(method_uri, digest_uri, digest_value, true).into_bytes()
}

/// The raw signature value (ECDSA as r‖s).
pub fn sign_bytes(method: &SignatureMethod, key: &PKey<Private>, data: &[u8]) -> Result<Vec<u8>, Problem> {
    let md = (method.digest)();
    let mut s = Signer::new(md, key).map_err(internal)?;
    match method.scheme {
        Scheme::RsaPss => {
            s.set_rsa_padding(Padding::PKCS1_PSS).map_err(internal)?;
            s.set_rsa_mgf1_md(md).map_err(internal)?;
            s.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).map_err(internal)?;
            s.sign_oneshot_to_vec(data).map_err(internal)
        }
        Scheme::RsaPkcs1 => {
            s.set_rsa_padding(Padding::PKCS1).map_err(internal)?;
            s.sign_oneshot_to_vec(data).map_err(internal)
        }
        Scheme::EcdsaRaw => {
            let der = s.sign_oneshot_to_vec(data).map_err(internal)?;
            let sig = EcdsaSig::from_der(&der).map_err(internal)?;
            // An EC key's size in bits is its group order's (P-521: 521, so 66 octets each).
            let len = (key.bits() as i32 + 7) / 8;
            let mut out = sig.r().to_vec_padded(len).map_err(internal)?;
            out.extend(sig.s().to_vec_padded(len).map_err(internal)?);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SignedInfo we write, canonicalised by libxml2 inside a `ds:Signature`, as the
    /// verifier of a signature does.
    fn canonicalised(signed_info: &str) -> Vec<u8> {
        let wrapped = format!("<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}</ds:Signature>");
        let doc = dom::parse(wrapped.as_bytes(), &Limits::default()).unwrap();
        let root = doc.get_root_element().unwrap();
        let si = dom::one_child(&root, DSIG_NS, "SignedInfo").unwrap();
        c14n(&C14nInput {
            doc: &doc,
            apex: Some(&si),
            exclude: None,
            exclusive: true,
            inclusive_prefixes: &[],
        })
        .unwrap()
    }

    #[test]
    fn the_signed_info_we_build_in_c14n_is_what_libxml2_makes_of_the_one_we_write() {
        use profile::*;
        let methods = [
            RSA_PSS_SHA256,
            RSA_PSS_SHA384,
            RSA_PSS_SHA512,
            RSA_SHA256,
            RSA_SHA384,
            RSA_SHA512,
            ECDSA_SHA256,
            ECDSA_SHA384,
            ECDSA_SHA512,
        ];
        let digest_value = B64.encode([0xfbu8; 48]);
        for method in methods {
            for digest in [SHA256, SHA384, SHA512] {
                let written = signed_info(method, digest, &digest_value, false);
                assert_eq!(
                    String::from_utf8(signed_info_in_c14n(method, digest, &digest_value)).unwrap(),
                    String::from_utf8(canonicalised(&written)).unwrap(),
                    "{method} {digest}"
                );
            }
        }
    }
}
