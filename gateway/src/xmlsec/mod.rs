//! XML security, our own implementation over libxml2 (DOM, C14N) and OpenSSL: enveloped XML
//! Signatures (`sign`, `verify`), XML Encryption 1.1 (`encrypt`; ECDH-ES key agreement for EC
//! recipients in `agree`), the certificate policy
//! (`trust`) and the allow-lists (`profile`), plus the envelope's two layers (`seal`).
//!
//! Rules that hold everywhere in this module:
//! - algorithms are allow-listed before any cryptography (`algorithm-not-allowed`);
//! - a signature's key comes from the directory or a trust anchor, never from KeyInfo alone;
//! - exactly one signature per document; IDs are unique; the verifier returns the nodes it
//!   covered and callers process exactly those;
//! - every decryption failure gives the same `decryption-failed`;
//! - no key material or payload is ever logged or put into an error.

pub mod agree;
pub mod dom;
pub mod encrypt;
pub mod profile;
pub mod sign;
pub mod splice;
pub mod stream;
pub mod tool;
pub mod trust;
pub mod verify;

pub use sign::Identity;
pub use trust::Policy;
pub use verify::{Covered, Expect, Verified};
