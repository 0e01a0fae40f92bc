//! The security profile as allow-lists (PRODUCT.md "Security profile"). Every algorithm URI a
//! document names is looked up here before any cryptography; anything not listed is refused
//! with `algorithm-not-allowed`, whatever it is (SHA-1, MD5, DSA, HMAC, CBC, RSA 1.5, XSLT,
//! XPath, unknown URIs).

use openssl::hash::MessageDigest;

use crate::problem::{Code, Problem};

pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const XENC_NS: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const XENC11_NS: &str = "http://www.w3.org/2009/xmlenc11#";
pub const EXC_C14N_NS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// Inclusive C14N 1.0 without comments: accepted (never produced) because XMLDSig makes it the
/// default conversion of a node set and many partners' SignedInfo use it.
pub const C14N_10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
pub const SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";

pub const RSA_PSS_SHA256: &str = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1";
pub const RSA_PSS_SHA384: &str = "http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1";
pub const RSA_PSS_SHA512: &str = "http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1";
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const RSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384";
pub const RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
pub const ECDSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512";

pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const AES192_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes192-gcm";
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
pub const RSA_OAEP_11: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
/// Accepted for decryption only (its MGF is fixed to MGF1-SHA-1); never produced.
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const MGF1_SHA256: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha256";
pub const MGF1_SHA384: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha384";
pub const MGF1_SHA512: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha512";
/// Only as the OAEP label digest of `rsa-oaep-mgf1p` (the default there), never for signatures.
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

pub const DSIG11_NS: &str = "http://www.w3.org/2009/xmldsig11#";
/// Key agreement (xmlenc 1.1) for EC recipients: ECDH-ES, ConcatKDF, AES key wrap.
pub const ECDH_ES: &str = "http://www.w3.org/2009/xmlenc11#ECDH-ES";
pub const CONCAT_KDF: &str = "http://www.w3.org/2009/xmlenc11#ConcatKDF";
pub const KW_AES128: &str = "http://www.w3.org/2001/04/xmlenc#kw-aes128";
pub const KW_AES192: &str = "http://www.w3.org/2001/04/xmlenc#kw-aes192";
pub const KW_AES256: &str = "http://www.w3.org/2001/04/xmlenc#kw-aes256";

pub const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
pub const TYPE_CONTENT: &str = "http://www.w3.org/2001/04/xmlenc#Content";

/// At most this many transforms per reference (as Santuario's secure validation).
pub const MAX_TRANSFORMS: usize = 5;
/// At most this many references per signature.
pub const MAX_REFERENCES: usize = 30;

/// The key family a signature method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ec,
}

/// How the signature value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    RsaPss,
    RsaPkcs1,
    /// XMLDSig 1.1: the value is r‖s, each as long as the curve's order.
    EcdsaRaw,
}

#[derive(Debug, Clone, Copy)]
pub struct SignatureMethod {
    pub uri: &'static str,
    pub scheme: Scheme,
    pub digest: fn() -> MessageDigest,
}

impl SignatureMethod {
    pub fn key_kind(&self) -> KeyKind {
        match self.scheme {
            Scheme::EcdsaRaw => KeyKind::Ec,
            _ => KeyKind::Rsa,
        }
    }
}

const SIGNATURE_METHODS: [SignatureMethod; 9] = [
    SignatureMethod {
        uri: RSA_PSS_SHA256,
        scheme: Scheme::RsaPss,
        digest: MessageDigest::sha256,
    },
    SignatureMethod {
        uri: RSA_PSS_SHA384,
        scheme: Scheme::RsaPss,
        digest: MessageDigest::sha384,
    },
    SignatureMethod {
        uri: RSA_PSS_SHA512,
        scheme: Scheme::RsaPss,
        digest: MessageDigest::sha512,
    },
    SignatureMethod {
        uri: RSA_SHA256,
        scheme: Scheme::RsaPkcs1,
        digest: MessageDigest::sha256,
    },
    SignatureMethod {
        uri: RSA_SHA384,
        scheme: Scheme::RsaPkcs1,
        digest: MessageDigest::sha384,
    },
    SignatureMethod {
        uri: RSA_SHA512,
        scheme: Scheme::RsaPkcs1,
        digest: MessageDigest::sha512,
    },
    SignatureMethod {
        uri: ECDSA_SHA256,
        scheme: Scheme::EcdsaRaw,
        digest: MessageDigest::sha256,
    },
    SignatureMethod {
        uri: ECDSA_SHA384,
        scheme: Scheme::EcdsaRaw,
        digest: MessageDigest::sha384,
    },
    SignatureMethod {
        uri: ECDSA_SHA512,
        scheme: Scheme::EcdsaRaw,
        digest: MessageDigest::sha512,
    },
];

pub fn not_allowed(what: &str, uri: &str) -> Problem {
    let shown: String = uri.chars().take(200).collect();
    Problem::new(
        Code::AlgorithmNotAllowed,
        format!("{what} {shown:?} is not allowed by the security profile"),
    )
}

pub fn signature_method(uri: &str) -> Result<SignatureMethod, Problem> {
    SIGNATURE_METHODS
        .iter()
        .find(|m| m.uri == uri)
        .copied()
        .ok_or_else(|| not_allowed("signature method", uri))
}

/// The OAEP digest for decryption: the signature digests plus SHA-1 (the OAEP default).
pub fn oaep_digest(uri: &str) -> Result<MessageDigest, Problem> {
    match uri {
        SHA1 => Ok(MessageDigest::sha1()),
        other => digest_method(other),
    }
}

pub fn digest_method(uri: &str) -> Result<MessageDigest, Problem> {
    match uri {
        SHA256 => Ok(MessageDigest::sha256()),
        SHA384 => Ok(MessageDigest::sha384()),
        SHA512 => Ok(MessageDigest::sha512()),
        _ => Err(not_allowed("digest method", uri)),
    }
}

/// Canonicalisation: `Some(true)` exclusive, `Some(false)` inclusive 1.0.
pub fn c14n_method(uri: &str) -> Result<bool, Problem> {
    match uri {
        EXC_C14N => Ok(true),
        C14N_10 => Ok(false),
        _ => Err(not_allowed("canonicalization method", uri)),
    }
}

/// Content encryption: the AES key length in bytes.
pub fn data_cipher(uri: &str) -> Result<usize, Problem> {
    match uri {
        AES128_GCM => Ok(16),
        AES192_GCM => Ok(24),
        AES256_GCM => Ok(32),
        _ => Err(not_allowed("data encryption method", uri)),
    }
}

/// Key wrap of a content key with a key from key agreement: the wrapping key's length in
/// bytes. (We produce kw-aes256; the shorter ones are read from other implementations.)
pub fn key_wrap(uri: &str) -> Result<usize, Problem> {
    match uri {
        KW_AES128 => Ok(16),
        KW_AES192 => Ok(24),
        KW_AES256 => Ok(32),
        _ => Err(not_allowed("key transport", uri)),
    }
}

/// MGF1 with SHA-1: the default of `xmlenc11#rsa-oaep` and fixed in `rsa-oaep-mgf1p`. Accepted
/// for decryption only (OAEP's security does not rest on SHA-1's collision resistance); we
/// never produce it.
pub const MGF1_SHA1: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha1";

/// Mask generation for RSA-OAEP decryption.
pub fn mgf_digest(uri: &str) -> Result<MessageDigest, Problem> {
    match uri {
        MGF1_SHA1 => Ok(MessageDigest::sha1()),
        MGF1_SHA256 => Ok(MessageDigest::sha256()),
        MGF1_SHA384 => Ok(MessageDigest::sha384()),
        MGF1_SHA512 => Ok(MessageDigest::sha512()),
        _ => Err(not_allowed("mask generation function", uri)),
    }
}
